//! The sync backend (feature `sync`): a thin blocking layer over the one
//! async implementation, through the core's bridge
//! ([`shylock_core::bridge`]): each call runs on shylock's runtime thread
//! and the calling thread waits for the answer until the request's
//! deadline. It works from plain threads and never needs (or disturbs) a
//! runtime of the caller's: called from inside an async context it blocks
//! that thread for the request's duration, but never panics. Locks handed
//! this backend use its async form directly. It does not use `arangors`'
//! `blocking` feature, so it builds together with the async form.

use std::sync::Arc;

use shylock_core::backend::AsyncBackend;
use shylock_core::bridge::{self, SyncOverAsync};
use shylock_core::{BackendError, BackendErrorKind};

use arangors::client::ClientExt;

use crate::ArangoOptions;
use crate::core::Core;

/// The sync ArangoDB backend (feature `sync`). Cheap to clone: clones share
/// one connection. Its `Debug` never shows a credential.
///
/// ```no_run
/// # fn demo() -> Result<(), shylock_core::Error> {
/// use shylock_arango::ArangoOptions;
/// use shylock_arango::sync::ArangoBackend;
///
/// let backend = ArangoBackend::connect_with(
///     "http://localhost:8529", "app", "secret", "projectdb",
///     ArangoOptions::new().collection("locks"),
/// )?;
/// shylock_core::configure(backend);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct ArangoBackend {
    pub(crate) core: Arc<Core>,
    /// The core's sync form of `core`.
    sync_form: Arc<SyncOverAsync>,
}

impl std::fmt::Debug for ArangoBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArangoBackend")
            .field("core", &self.core)
            .finish()
    }
}

impl ArangoBackend {
    fn start(core: Core) -> Self {
        let core = Arc::new(core);
        let async_form: Arc<dyn AsyncBackend> = core.clone();
        ArangoBackend {
            sync_form: Arc::new(SyncOverAsync::new(async_form)),
            core,
        }
    }

    /// Connect to the ArangoDB server at `url` (such as
    /// `http://localhost:8529`) with basic authentication, open database
    /// `db` and prepare the default collection `shylock` (created with its
    /// TTL index if missing, after looking: a user with only read/write
    /// access on an existing collection passes; safe when many processes do
    /// it at once).
    ///
    /// # Errors
    /// * [`InvalidConfig`](BackendErrorKind::InvalidConfig): bad URL, missing
    ///   database (for a user who may see every database), a collection name
    ///   that breaks ArangoDB's rules or a TTL grace below the minimum
    ///   (refused before any request), or an existing TTL index whose
    ///   `expireAfter` is below [`MIN_TTL_GRACE`](crate::MIN_TTL_GRACE), or
    ///   an existing collection that cannot hold the lock records (an edge
    ///   collection, one refusing user keys, or one sharded on other keys
    ///   than `_key`);
    /// * [`Unauthorized`](BackendErrorKind::Unauthorized): wrong credentials,
    ///   or a missing database for a user who may not see every database
    ///   (ArangoDB answers both with 401), or a missing collection the user
    ///   may not create;
    /// * [`Unavailable`](BackendErrorKind::Unavailable) /
    ///   [`Timeout`](BackendErrorKind::Timeout): server down or slow;
    /// * [`Unexpected`](BackendErrorKind::Unexpected): any other answer.
    pub fn connect(
        url: &str,
        user: &str,
        password: &str,
        db: &str,
    ) -> Result<Self, shylock_core::Error> {
        Self::connect_with(url, user, password, db, ArangoOptions::new())
    }

    /// [`connect`](Self::connect) with options (collection name, TTL grace,
    /// request time limit, `waitForSync`).
    ///
    /// # Errors
    /// As for [`connect`](Self::connect).
    pub fn connect_with(
        url: &str,
        user: &str,
        password: &str,
        db: &str,
        options: ArangoOptions,
    ) -> Result<Self, shylock_core::Error> {
        options
            .validate()
            .map_err(|reason| BackendError::new(BackendErrorKind::InvalidConfig, reason))?;
        let (url, user, password, db) = (
            url.to_owned(),
            user.to_owned(),
            password.to_owned(),
            db.to_owned(),
        );
        let core = bridge::block_on(None, async move {
            let core = Core::connect(&url, &user, &password, &db, options).await?;
            core.prepare().await?;
            Ok(core)
        })?;
        Ok(Self::start(core))
    }

    /// From an `arangors` database handle you already have (any
    /// authentication, any client: [`Database`](crate::Database) on rustls,
    /// or arangors' own), as the Python
    /// original's `ShylockPythonArangoBackend.create(db, collection_name)`:
    /// prepare `collection` as [`connect`](Self::connect) does. The handle's
    /// URL, database and authorization are used; its requests run on this
    /// backend's own thread.
    ///
    /// # Errors
    /// As for [`connect`](Self::connect).
    pub fn create<C: ClientExt>(
        db: &arangors::Database<C>,
        collection: &str,
    ) -> Result<Self, shylock_core::Error> {
        Self::create_with(db, ArangoOptions::new().collection(collection))
    }

    /// [`create`](Self::create) with all options.
    ///
    /// # Errors
    /// As for [`connect`](Self::connect).
    pub fn create_with<C: ClientExt>(
        db: &arangors::Database<C>,
        options: ArangoOptions,
    ) -> Result<Self, shylock_core::Error> {
        let backend = Self::new(db, options)?;
        backend.prepare()?;
        Ok(backend)
    }

    /// Open an existing collection with no set-up and no request at all.
    ///
    /// # Errors
    /// [`InvalidConfig`](BackendErrorKind::InvalidConfig) for a bad
    /// collection name or TTL grace; [`Other`](BackendErrorKind::Other) if
    /// the HTTP client or the backend's thread cannot be started.
    pub fn new<C: ClientExt>(
        db: &arangors::Database<C>,
        options: ArangoOptions,
    ) -> Result<Self, shylock_core::Error> {
        Ok(Self::start(Core::from_handle(db, options)?))
    }

    /// Make sure the collection and its TTL index exist, creating only what
    /// is missing.
    ///
    /// # Errors
    /// As for [`connect`](Self::connect).
    pub fn prepare(&self) -> Result<(), shylock_core::Error> {
        let core = Arc::clone(&self.core);
        Ok(bridge::block_on(None, async move { core.prepare().await })?)
    }

    /// The collection holding the lock records.
    pub fn collection(&self) -> &str {
        self.core.collection()
    }

    /// The database's name.
    pub fn database(&self) -> &str {
        self.core.database()
    }

    /// The TTL grace in force (the option's, or an adopted index's).
    pub fn ttl_grace(&self) -> std::time::Duration {
        self.core.ttl_grace()
    }
}

shylock_core::forward_sync_backend!(ArangoBackend, |backend| &*backend.sync_form);
