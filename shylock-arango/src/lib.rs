//! ArangoDB backend for [shylock](https://crates.io/crates/shylock)
//! distributed locks, async (`async` feature, the default) and sync (`sync`
//! feature).
//!
//! ```no_run
//! # #[cfg(feature = "async")]
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use shylock_arango::ArangoBackend;
//!
//! // As in Python: `ShylockAioArangoDBBackend.create(db, "shylock")`.
//! let conn = arangors::Connection::establish_basic_auth("http://localhost:8529", "root", "").await?;
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
//!     "http://localhost:8529", "root", "", "projectdb",
//! )?;
//! # let _ = backend;
//! # Ok(())
//! # }
//! ```
//!
//! # How it works
//!
//! * One document per lock name in the collection (default `shylock`):
//!   `{_key, name, owner, epoch, seq, expiresAt}`; see [`lock_key`] for how a
//!   name becomes a `_key` and [`aql`] for the queries.
//! * Acquire, renew and release are **one HTTP request each**
//!   (`POST /_api/cursor`, one AQL query that reads, decides and writes
//!   atomically; expiry judged by the server clock `DATE_NOW()`).
//! * Fencing tokens are `epoch * 1000 + seq`: `epoch` is the server time (ms)
//!   when the record was created, `seq` counts its grants. Release keeps the
//!   record; the TTL index deletes a record only [`ArangoOptions::gc_grace`]
//!   (default 1 hour) after its last lease ended. A record created again
//!   later has an epoch at least that grace later (`E' − E ≥ grace`), so its
//!   first token `E'·1000 + 1` is above every token `E·1000 + seq` of the
//!   deleted one as long as `seq < grace in ms × 1000` (3.6 billion grants
//!   for one hour) and the server clock never stepped back by more than the
//!   grace.
//! * [`create`](ArangoBackend::create) makes the collection and the TTL
//!   index; both steps are idempotent and safe when many processes start at
//!   once.

#![cfg_attr(not(any(feature = "async", feature = "sync")), allow(dead_code))]

use std::time::Duration;

pub mod aql;
mod core;
mod http;
pub mod names;
#[cfg(feature = "sync")]
pub mod sync;

pub use names::lock_key;

#[cfg(feature = "async")]
mod async_backend;
#[cfg(feature = "async")]
pub use async_backend::ArangoBackend;

/// The collection name used when none is given (as in the Python original).
pub const DEFAULT_COLLECTION: &str = "shylock";

/// Settings of a backend.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ArangoOptions {
    /// The collection holding the lock records (default `shylock`). Must
    /// follow ArangoDB's traditional naming rules: 1 to 256 bytes, a letter
    /// first, then letters, digits, `_` or `-`. Refused before any request
    /// otherwise.
    pub collection: String,
    /// How long after a record's lease ended the TTL index may delete it
    /// (default 1 hour, the TTL index's `expireAfter`). The fencing tokens of
    /// a name keep rising across such deletions as long as the server clock
    /// never steps back by more than this.
    pub gc_grace: Duration,
    /// The time limit of a request made without a caller's deadline, and of
    /// each request of `create` / `connect` (default 10 s).
    pub request_timeout: Duration,
}

impl Default for ArangoOptions {
    fn default() -> Self {
        ArangoOptions {
            collection: DEFAULT_COLLECTION.to_owned(),
            gc_grace: Duration::from_secs(3600),
            request_timeout: Duration::from_secs(10),
        }
    }
}

impl ArangoOptions {
    /// The defaults with another collection name.
    pub fn with_collection(collection: impl Into<String>) -> Self {
        ArangoOptions {
            collection: collection.into(),
            ..Self::default()
        }
    }

    /// Set the collection name.
    pub fn collection(mut self, collection: impl Into<String>) -> Self {
        self.collection = collection.into();
        self
    }

    /// Set the grace period before the TTL index collects a record.
    pub fn gc_grace(mut self, grace: Duration) -> Self {
        self.gc_grace = grace;
        self
    }

    /// Set the time limit of requests made without a caller's deadline.
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }
}

/// Connect through `arangors` with basic authentication and open `db`,
/// mapping failures to [`shylock_core::BackendError`] kinds.
pub(crate) async fn connect_db(
    url: &str,
    user: &str,
    password: &str,
    db: &str,
    timeout: Duration,
) -> Result<arangors::Database<arangors::client::reqwest::ReqwestClient>, shylock_core::BackendError>
{
    use shylock_core::{BackendError, BackendErrorKind};
    let what = format!("connecting to ArangoDB at {url}");
    let fut = async {
        let conn = arangors::Connection::establish_basic_auth(url, user, password)
            .await
            .map_err(|e| client_error(&what, e))?;
        conn.db(db)
            .await
            .map_err(|e| client_error(&format!("opening database `{db}`"), e))
    };
    match tokio::time::timeout(timeout, fut).await {
        Ok(r) => r,
        Err(_) => Err(BackendError::new(
            BackendErrorKind::Timeout,
            format!("{what}: no answer within {timeout:?}"),
        )),
    }
}

/// Map an `arangors` error to a [`shylock_core::BackendError`].
pub(crate) fn client_error(what: &str, e: arangors::ClientError) -> shylock_core::BackendError {
    use arangors::ClientError;
    use shylock_core::{BackendError, BackendErrorKind};
    let kind = match &e {
        ClientError::Arango(a) => match (a.code(), i64::from(a.error_num())) {
            (401 | 403, _) => BackendErrorKind::Unauthorized,
            (_, http::errnum::DATABASE_NOT_FOUND) | (404, _) => BackendErrorKind::InvalidConfig,
            (502..=504, _) => BackendErrorKind::Unavailable,
            _ => BackendErrorKind::Unexpected,
        },
        ClientError::InsufficientPermission { .. } => BackendErrorKind::Unauthorized,
        ClientError::InvalidServer(_) => BackendErrorKind::InvalidConfig,
        ClientError::Serde(_) => BackendErrorKind::Unexpected,
        ClientError::HttpClient(msg) => {
            if msg.contains("TimedOut") || msg.contains("timed out") {
                BackendErrorKind::Timeout
            } else if msg.contains("RelativeUrlWithoutBase") || msg.contains("InvalidUrl") {
                BackendErrorKind::InvalidConfig
            } else {
                BackendErrorKind::Unavailable
            }
        }
    };
    let hint = match kind {
        BackendErrorKind::Unauthorized => " (check the user name and password)",
        BackendErrorKind::InvalidConfig => " (check the URL and the database name)",
        _ => "",
    };
    BackendError::new(kind, format!("{what}: {e}{hint}"))
}

#[cfg(feature = "async")]
impl From<ArangoBackend> for shylock_core::Backend {
    /// A handle for async locks ([`shylock_core::AsyncLock`]).
    fn from(backend: ArangoBackend) -> Self {
        shylock_core::Backend::from_async(backend)
    }
}

#[cfg(feature = "sync")]
impl From<sync::ArangoBackend> for shylock_core::Backend {
    /// A handle for sync locks ([`shylock_core::Lock`]).
    fn from(backend: sync::ArangoBackend) -> Self {
        shylock_core::Backend::from_sync(backend)
    }
}
