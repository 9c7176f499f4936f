//! The MongoDB backend of [shylock](https://crates.io/crates/shylock)
//! distributed locks, on the official [`mongodb`] driver: an async backend
//! over [`mongodb::Client`] (feature `async`, as the Python original's motor
//! backend) and a sync backend over `mongodb::sync::Client` (feature `sync`,
//! as its pymongo backend). Both can be enabled at once; both are one
//! implementation and send the same commands. Most users reach them through
//! the `shylock` facade (features `mongo-async`, `mongo-sync`, module
//! `shylock::mongo`).
//!
//! How it works (the lock record, the exact commands, fencing tokens, the
//! set-up and server checks, errors and time limits, the deployments it was
//! verified on) is described in one place, the crate's
//! [README](https://github.com/shylock-rs/shylock/blob/main/shylock-mongo/README.md).
//!
//! ```no_run
//! # #[cfg(feature = "async")]
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use shylock_core::{configure, AsyncLock};
//! use shylock_mongo::MongoBackend;
//!
//! let client = mongodb::Client::with_uri_str("mongodb://127.0.0.1:27017/").await?;
//! configure(MongoBackend::create(&client, "projectdb").await?); // collection `shylock`
//!
//! let guard = AsyncLock::new("nightly-report").acquire().await?;
//! println!("fencing token {}", guard.token());
//! guard.release().await?;
//! # Ok(()) }
//! ```
//!
//! ```no_run
//! # #[cfg(feature = "sync")]
//! # fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use shylock_core::{configure, Lock};
//! use shylock_mongo::{sync::MongoBackend, MongoOptions};
//!
//! // Make the sync client outside any tokio runtime.
//! let client = mongodb::sync::Client::with_uri_str("mongodb://127.0.0.1:27017/")?;
//! configure(MongoBackend::create_with(&client, "projectdb", MongoOptions::new().collection("locks"))?);
//!
//! if let Some(guard) = Lock::new("nightly-report").try_acquire()? {
//!     // ... the lock is held (and renewed) while `guard` lives
//!     guard.release()?;
//! }
//! # Ok(()) }
//! ```
//!
//! `create` prepares the collection and checks the server within
//! [`MongoOptions::setup_timeout`]; `new` makes a backend without contacting
//! the server. [`MongoOptions`] sets the collection name, the write concern,
//! the garbage-collection grace and the time limits. Driver errors become
//! [`shylock_core::BackendError`]s of the right kind, with the driver's error
//! as their source ([`DriverError`]).
#![cfg_attr(
    not(any(feature = "async", feature = "sync")),
    allow(dead_code, unused_imports)
)]

#[cfg(feature = "async")]
mod async_backend;
#[cfg(any(feature = "async", feature = "sync"))]
mod core;
mod errors;
mod lock_commands;
mod options;
mod setup;
mod spec;
#[cfg(feature = "sync")]
pub mod sync;

#[cfg(feature = "async")]
pub use async_backend::MongoBackend;
pub use errors::DriverError;
/// The MongoDB driver this backend is built on, re-exported so that an
/// application can make its client with the very same driver version.
pub use mongodb;
pub use options::{
    DEFAULT_COLLECTION, DEFAULT_REQUEST_TIMEOUT, DEFAULT_SETUP_TIMEOUT, DEFAULT_TTL_GRACE,
    MIN_TTL_GRACE, MongoOptions,
};
