//! An emulator of the small part of ArangoDB's HTTP API that
//! `shylock-arango` uses, for its tests and the benchmarks. Test support
//! only: never published, never a dependency of the library.
//!
//! See [`emulator`] for what it answers and how it was checked against the
//! ArangoDB documentation.
#![allow(missing_docs, clippy::unwrap_used)]

pub mod aql;
pub mod emulator;
mod http;

pub use emulator::Emulator;
