//! The async backend.

use std::sync::Arc;

use arangors::client::ClientExt;

use crate::ArangoOptions;
use crate::core::Core;

/// The async ArangoDB backend (feature `async`).
///
/// Made from an `arangors` database handle, like the Python original's
/// `ShylockAioArangoDBBackend.create(db, collection_name)`, or from a URL
/// and credentials. Cheap to clone (one shared state). Its `Debug` shows
/// the server, database and collection, never a credential.
///
/// ```no_run
/// # async fn demo() -> Result<(), shylock_core::Error> {
/// use shylock_arango::{ArangoBackend, ArangoOptions};
///
/// let backend = ArangoBackend::connect_with(
///     "http://localhost:8529", "app", "secret", "projectdb",
///     ArangoOptions::new().collection("locks"),
/// ).await?;
/// assert_eq!(backend.collection(), "locks");
/// shylock_core::configure(backend);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct ArangoBackend {
    core: Arc<Core>,
}

impl ArangoBackend {
    /// Open `collection` in `db`, creating it and its TTL index if missing
    /// (it looks first, so a user with only read/write access on an
    /// existing collection passes; safe when many processes start at once).
    ///
    /// `db` is a handle on any arangors client: [`Database`](crate::Database)
    /// (rustls) or arangors' own `arangors::Database<ReqwestClient>` (its `reqwest_async` feature).
    /// The backend sends that handle's authorization headers; see
    /// [`ArangoOptions::credentials`] for handles whose JWT expires.
    ///
    /// # Errors
    /// * [`InvalidConfig`](shylock_core::BackendErrorKind::InvalidConfig): the
    ///   collection name breaks ArangoDB's naming rules or the TTL grace is
    ///   below [`MIN_TTL_GRACE`](crate::MIN_TTL_GRACE) (both refused before
    ///   any request), the database does not exist (errorNum 1228), or the
    ///   collection has a TTL index whose `expireAfter` is below the minimum,
    ///   or cannot hold the lock records (an edge collection, one refusing
    ///   user keys, or one sharded on other keys than `_key`);
    /// * [`Unauthorized`](shylock_core::BackendErrorKind::Unauthorized): HTTP
    ///   401, or 403 when the collection is missing and the user may not
    ///   create it;
    /// * [`Unavailable`](shylock_core::BackendErrorKind::Unavailable) /
    ///   [`Timeout`](shylock_core::BackendErrorKind::Timeout): the server
    ///   cannot be reached or does not answer within
    ///   [`ArangoOptions::request_timeout`];
    /// * [`Unexpected`](shylock_core::BackendErrorKind::Unexpected): any other
    ///   answer.
    pub async fn create<C: ClientExt>(
        db: &arangors::Database<C>,
        collection: &str,
    ) -> Result<Self, shylock_core::Error> {
        Self::create_with(db, ArangoOptions::new().collection(collection)).await
    }

    /// [`create`](Self::create) with all options.
    ///
    /// # Errors
    /// As for [`create`](Self::create).
    pub async fn create_with<C: ClientExt>(
        db: &arangors::Database<C>,
        options: ArangoOptions,
    ) -> Result<Self, shylock_core::Error> {
        let backend = Self::new(db, options)?;
        backend.prepare().await?;
        Ok(backend)
    }

    /// Open an existing collection with no set-up and no request at all
    /// (the first request is the first lock operation): for users who may
    /// read and write the collection's documents and nothing else, or who
    /// prepared it beforehand.
    ///
    /// # Errors
    /// [`InvalidConfig`](shylock_core::BackendErrorKind::InvalidConfig) for a
    /// bad collection name or TTL grace;
    /// [`Other`](shylock_core::BackendErrorKind::Other) if the HTTP client
    /// cannot be built.
    pub fn new<C: ClientExt>(
        db: &arangors::Database<C>,
        options: ArangoOptions,
    ) -> Result<Self, shylock_core::Error> {
        Ok(ArangoBackend {
            core: Arc::new(Core::from_handle(db, options)?),
        })
    }

    /// Connect to the server at `url` (such as `http://localhost:8529`)
    /// with basic authentication, open database `db` and prepare the default
    /// collection `shylock` as [`create`](Self::create) does.
    ///
    /// # Errors
    /// As for [`create`](Self::create); a bad URL is
    /// [`InvalidConfig`](shylock_core::BackendErrorKind::InvalidConfig), and
    /// a missing database is `Unauthorized` for a user who may not see every
    /// database (ArangoDB answers 401 then; the message says so).
    pub async fn connect(
        url: &str,
        user: &str,
        password: &str,
        db: &str,
    ) -> Result<Self, shylock_core::Error> {
        Self::connect_with(url, user, password, db, ArangoOptions::new()).await
    }

    /// [`connect`](Self::connect) with options.
    ///
    /// # Errors
    /// As for [`connect`](Self::connect).
    pub async fn connect_with(
        url: &str,
        user: &str,
        password: &str,
        db: &str,
        options: ArangoOptions,
    ) -> Result<Self, shylock_core::Error> {
        let core = Core::connect(url, user, password, db, options).await?;
        core.prepare().await?;
        Ok(ArangoBackend {
            core: Arc::new(core),
        })
    }

    /// Make sure the collection and its TTL index exist, creating only what
    /// is missing (what [`create`](Self::create) does after
    /// [`new`](Self::new)).
    ///
    /// # Errors
    /// As for [`create`](Self::create).
    pub async fn prepare(&self) -> Result<(), shylock_core::Error> {
        Ok(self.core.prepare().await?)
    }

    /// The collection holding the lock records.
    pub fn collection(&self) -> &str {
        self.core.collection()
    }

    /// The database's name.
    pub fn database(&self) -> &str {
        self.core.database()
    }

    /// The TTL grace in force: [`ArangoOptions::ttl_grace`], or the
    /// `expireAfter` of the collection's existing TTL index when
    /// `create`/`prepare` adopted it. An `expireAfter` too long for a
    /// `Duration` (such as `1e300`) is adopted as the longest one there is
    /// (about `u64::MAX` seconds): that index never collects a record, which
    /// fencing tokens tolerate.
    pub fn ttl_grace(&self) -> std::time::Duration {
        self.core.ttl_grace()
    }
}

shylock_core::forward_async_backend!(ArangoBackend, |backend| &*backend.core);
