//! # shylock
//!
//! Distributed locks on MongoDB and ArangoDB, with an async (tokio) API and a
//! blocking API: a Rust carry-over of the Python library *shylock*, with
//! fencing tokens, lease renewal, server-clock expiry and owner-checked
//! releases.
//!
//! Pick a backend with a feature in `Cargo.toml`:
//!
//! | feature | backend | Python extra |
//! |---|---|---|
//! | *(none)* | [`MemoryBackend`] (one process) | |
//! | `mongo-async` | `mongo::MongoBackend` over `mongodb::Client` | `motor` |
//! | `mongo-sync` | `mongo::sync::MongoBackend` over `mongodb::sync::Client` | `pymongo` |
//! | `arango-async` | `arango::ArangoBackend` on `arangors` | `aioarangodb` |
//! | `arango-sync` | `arango::sync::ArangoBackend` | `python-arango` |
//!
//! and, with any of them, `metrics` to record [`metrics`] (acquisitions,
//! waits, holdings, renewals, losses, releases, backend calls) through the
//! `metrics` crate's facade.
//!
//! then configure it as the default and take locks:
//!
//! ```
//! use shylock::{configure, AsyncLock, Lock, MemoryBackend};
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), shylock::Error> {
//! configure(MemoryBackend::new());
//!
//! // async: waits without blocking the runtime
//! let guard = AsyncLock::new("nightly-report").acquire().await?;
//! println!("fencing token {}", guard.token());
//! guard.release().await?;
//!
//! // sync: waits on the thread, released on drop
//! {
//!     let _guard = Lock::new("nightly-report").acquire()?;
//! }
//!
//! // the Python `acquire(block=False)`
//! if let Some(guard) = Lock::new("nightly-report").try_acquire()? {
//!     guard.release()?;
//! }
//! # Ok(())
//! # }
//! ```
//!
//! Or name the backend by URL, as a command line or a configuration file
//! would, with [`connect`] (async) or [`connect_blocking`]: `mongodb://…`
//! and `mongodb+srv://…` pick MongoDB, `http://…` and `https://…`
//! ArangoDB, `memory://NAME` the in-process backend (see [`BackendUrl`] for
//! the forms and shylock's `shylock.` parameters, [`ConnectOptions`] for the
//! settings beyond the URL). A scheme whose feature is off is a
//! [`ConnectError::FeatureDisabled`] naming the feature.
//!
//! ```
//! # fn main() -> Result<(), shylock::Error> {
//! let backend = shylock::connect_blocking("memory://app")?;
//! let guard = shylock::Lock::with_backend("nightly-report", &backend).acquire()?;
//! # drop(guard);
//! # Ok(())
//! # }
//! ```
//!
//! Leader election on a lock: [`Election`] and [`AsyncElection`] (campaign,
//! resign, the loss signal, observers of leader changes; the term is the
//! leadership's fencing token).
//!
//! Everything in [`shylock_core`] is re-exported here; see its docs for the
//! lock semantics and the backend traits.

#![cfg_attr(docsrs, feature(doc_cfg))]

pub use shylock_core::*;

mod connect;
mod url;

pub use connect::{
    ConnectError, ConnectOptions, Connection, Driver, RawBackend, connect, connect_blocking,
    connect_blocking_with, connect_with,
};
pub use url::{BackendKind, BackendUrl, PARAM_PREFIX};

/// The MongoDB backend (features `mongo-async`, `mongo-sync`); the
/// `mongodb` driver is re-exported as `mongo::mongodb`.
#[cfg(any(feature = "mongo-async", feature = "mongo-sync"))]
#[cfg_attr(docsrs, doc(cfg(any(feature = "mongo-async", feature = "mongo-sync"))))]
pub mod mongo {
    pub use shylock_mongo::*;
}

/// The ArangoDB backend (features `arango-async`, `arango-sync`); the
/// `arangors` client is re-exported as `arango::arangors`.
#[cfg(any(feature = "arango-async", feature = "arango-sync"))]
#[cfg_attr(
    docsrs,
    doc(cfg(any(feature = "arango-async", feature = "arango-sync")))
)]
pub mod arango {
    pub use shylock_arango::*;
}

/// The README's examples, compiled as doctests (with all four features).
#[cfg(all(
    doctest,
    feature = "mongo-async",
    feature = "mongo-sync",
    feature = "arango-async",
    feature = "arango-sync"
))]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
