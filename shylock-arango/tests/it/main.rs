//! shylock-arango's tests: against the in-repository ArangoDB emulator, or a
//! real ArangoDB when `SHYLOCK_ARANGO_URL` is set (see `support/target.rs`).
#![allow(clippy::unwrap_used, missing_docs)]

mod support;

mod backend_async;
#[cfg(feature = "sync")]
mod backend_sync;
mod conformance;
mod deployed;
mod emulator_docs;
mod errors;
mod exclusive_cost;
mod hostile_http;
#[cfg(feature = "sync")]
mod in_runtime;
mod issue23;
mod issue24;
mod issue24_clock;
mod issue24_emulator;
mod tls;
