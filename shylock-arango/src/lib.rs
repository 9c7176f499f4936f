//! ArangoDB backend for [shylock](https://crates.io/crates/shylock)
//! distributed locks, async (`async` feature, the default) and sync (`sync`
//! feature).
//!
//! ```no_run
//! # #[cfg(feature = "async")]
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use shylock_arango::ArangoBackend;
//!
//! // With a URL and credentials (basic authentication, never expires):
//! let backend = ArangoBackend::connect("http://localhost:8529", "app", "secret", "projectdb").await?;
//!
//! // Or, as in Python (`ShylockAioArangoDBBackend.create(db, "shylock")`),
//! // from an arangors database handle you already have:
//! let conn = shylock_arango::Connection::establish_basic_auth("http://localhost:8529", "app", "secret").await?;
//! let db = conn.db("projectdb").await?;
//! let backend = ArangoBackend::create(&db, "shylock").await?;
//! # let _ = backend;
//! # Ok(())
//! # }
//! ```
//!
//! The sync form needs neither async types nor a runtime of the caller's:
//!
//! ```no_run
//! # #[cfg(feature = "sync")]
//! # fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let backend = shylock_arango::sync::ArangoBackend::connect(
//!     "http://localhost:8529", "app", "secret", "projectdb",
//! )?;
//! # let _ = backend;
//! # Ok(())
//! # }
//! ```
//!
//! # Constructors
//!
//! Both forms have the same five:
//!
//! | constructor | what it does |
//! |---|---|
//! | `connect(url, user, password, db)` / `connect_with(.., options)` | basic authentication, then as `create` |
//! | `create(&db, collection)` / `create_with(&db, options)` | from an arangors database handle; makes the collection and its TTL index if missing (looks first: a user with only read/write access on an existing collection passes) |
//! | `new(&db, options)` | no request, no set-up: opens an existing collection |
//!
//! and `prepare()` does the set-up of `create` later.
//!
//! # Authentication
//!
//! A backend sends the authorization of the handle it was made from (or
//! basic authentication, from `connect`). A handle made with arangors'
//! `establish_jwt` carries a token that expires (after the server's
//! `--server.session-timeout`, one hour by default) and that arangors does
//! not renew: give the backend [`ArangoOptions::credentials`] and it logs in
//! again (`POST /_open/auth`) when the server answers 401; `connect` does
//! so by itself. No `Debug` or `Display` of this crate shows a password or
//! token, and its own logins log no token; arangors' `establish_jwt` does:
//! it logs the login response, JWT included, at TRACE (target `arangors`).
//! Prefer `connect`, or `Connection::establish_basic_auth`, or keep
//! `arangors=trace` out of logs that leave the process.
//!
//! # TLS
//!
//! The backend's requests go through `reqwest` with rustls (Web PKI roots),
//! and so do arangors connections made with [`Connection`] (on
//! [`RustlsClient`]); no OpenSSL, one TLS stack with the MongoDB backend.
//! [`ArangoOptions::http_client`] takes a `reqwest` client of your own
//! (your CA, a client certificate, a proxy, or the system's TLS through
//! reqwest's `native-tls` feature); arangors' own client
//! (`arangors::Connection`, native-tls) comes back if you depend on
//! arangors with its `reqwest_async` feature, and its handles are accepted
//! too.
//!
//! # How it works
//!
//! * One document per lock name in the collection (default `shylock`):
//!   `{_key, name, owner, epoch, seq, expiresAt, releasers}`; see
//!   [`lock_key`] for how a name becomes a `_key` and [`aql`] for the
//!   queries.
//! * Release appends its owner to `releasers` (the last 16 are kept), and
//!   acquire refuses an owner among them (busy): such a request is a late
//!   duplicate of one sent before that owner's release, and granting it
//!   would leave the lock held by an owner that is gone, for a lease. A
//!   bounded list is enough because the defect costs liveness, never safety
//!   (see [`shylock_core::backend::RELEASERS_REMEMBERED`]).
//! * Acquire, renew and release are **one HTTP request each**
//!   (`POST /_api/cursor`, one AQL query that reads, decides and writes
//!   atomically; expiry judged by the server clock `DATE_NOW()`). Writes
//!   wait for the disk (`waitForSync`) unless
//!   [`ArangoOptions::wait_for_sync`] turns it off.
//! * Fencing tokens are `epoch * 1000 + seq`: `epoch` is the server time (ms)
//!   when the record was created, `seq` counts its grants. Release keeps the
//!   record; the TTL index deletes a record only [`ArangoOptions::ttl_grace`]
//!   (default 1 hour) after its last lease ended. A record created again
//!   later has an epoch at least that grace later, less the lock-wait bound
//!   below (`E' − E ≥ grace − lock_timeout`), so its first token
//!   `E'·1000 + 1` is above every token `E·1000 + seq` of the deleted one
//!   as long as `seq < (grace − lock_timeout) in ms × 1000` (3.6 billion
//!   grants for one hour) and the server clock never stepped back by more
//!   than that.
//! * **`DATE_NOW()` is read before the lock.** The server folds `DATE_NOW()`
//!   into a constant while it plans the query, before the transaction waits
//!   for the collection's exclusive lock, so under contention a query's
//!   `now` is older than its write by the lock wait. Every lock query is
//!   sent with the cursor option `lockTimeout`
//!   ([`ArangoOptions::lock_timeout`], default 5 s, at most 30 s; the
//!   server's own default is 900 s), which bounds that wait (error 18
//!   beyond it, a transient `Unavailable`). An old `now` only shortens the
//!   server-side lease: the core counts a grant's validity from the time
//!   the request was sent, which is before the server planned it, so the
//!   holder's view of its lease still ends first. The TTL grace floor
//!   ([`MIN_TTL_GRACE`], 60 s) exceeds the largest lock-wait bound
//!   ([`MAX_LOCK_TIMEOUT`], 30 s), which keeps `E' − E` positive.

#![cfg_attr(not(any(feature = "async", feature = "sync")), allow(dead_code))]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod aql;
mod client;
mod core;
mod http;
mod names;
mod options;
#[cfg(feature = "sync")]
#[cfg_attr(docsrs, doc(cfg(feature = "sync")))]
pub mod sync;

/// The `arangors` crate this backend is built on (built without its own
/// HTTP client: see [`RustlsClient`]), so that you need not depend on a
/// matching version yourself.
pub use arangors;

pub use client::RustlsClient;
pub use names::{MAX_COLLECTION_NAME_BYTES, MAX_KEY_BYTES, lock_key};
pub use options::{
    ArangoOptions, DEFAULT_COLLECTION, DEFAULT_LOCK_TIMEOUT, DEFAULT_REQUEST_TIMEOUT,
    DEFAULT_TTL_GRACE, MAX_LOCK_TIMEOUT, MIN_TTL_GRACE, QUERY_RUN_ALLOWANCE,
};

/// An arangors connection on [`RustlsClient`].
pub type Connection = arangors::GenericConnection<RustlsClient>;

/// An arangors database handle on [`RustlsClient`].
pub type Database = arangors::Database<RustlsClient>;

#[cfg(feature = "async")]
mod async_backend;
#[cfg(feature = "async")]
#[cfg_attr(docsrs, doc(cfg(feature = "async")))]
pub use async_backend::ArangoBackend;

#[cfg(feature = "async")]
impl From<ArangoBackend> for shylock_core::Backend {
    /// A handle for async locks ([`shylock_core::AsyncLock`]).
    fn from(backend: ArangoBackend) -> Self {
        shylock_core::Backend::from_async(backend)
    }
}

#[cfg(feature = "sync")]
impl From<sync::ArangoBackend> for shylock_core::Backend {
    /// A handle for sync locks ([`shylock_core::Lock`]); the locks run on
    /// the backend's async form.
    fn from(backend: sync::ArangoBackend) -> Self {
        shylock_core::Backend::from_forms(backend.core.clone(), std::sync::Arc::new(backend))
    }
}
