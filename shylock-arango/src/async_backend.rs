//! The async backend.

use std::sync::Arc;
use std::time::Instant;

use arangors::client::reqwest::ReqwestClient;
use shylock_core::backend::{
    AcquireOutcome, AcquireRequest, AsyncBackend, BoxFuture, ClockSource, InspectRequest,
    LockRecord, ReleaseOutcome, ReleaseRequest, RenewOutcome, RenewRequest,
};
use shylock_core::{BackendError, Timestamp};

use crate::ArangoOptions;
use crate::core::Core;

/// The async ArangoDB backend (feature `async`).
///
/// Made from the caller's `arangors` database handle, like the Python
/// original's `ShylockAioArangoDBBackend.create(db, collection_name)`. It
/// uses that handle's HTTP client and credentials; cheap to clone (one shared
/// state).
#[derive(Debug, Clone)]
pub struct ArangoBackend {
    core: Arc<Core>,
}

impl ArangoBackend {
    /// Prepare `collection` in `db` (create it and its TTL index if missing;
    /// safe when many processes do it at once) and return the backend.
    ///
    /// # Errors
    /// * [`InvalidConfig`](shylock_core::BackendErrorKind::InvalidConfig): the
    ///   collection name breaks ArangoDB's naming rules (refused before any
    ///   request), or the database does not exist (errorNum 1228);
    /// * [`Unauthorized`](shylock_core::BackendErrorKind::Unauthorized): HTTP
    ///   401/403;
    /// * [`Unavailable`](shylock_core::BackendErrorKind::Unavailable) /
    ///   [`Timeout`](shylock_core::BackendErrorKind::Timeout): the server
    ///   cannot be reached or does not answer in
    ///   [`ArangoOptions::request_timeout`];
    /// * [`Unexpected`](shylock_core::BackendErrorKind::Unexpected): any other
    ///   answer.
    pub async fn create(
        db: &arangors::Database<ReqwestClient>,
        collection: &str,
    ) -> Result<Self, shylock_core::Error> {
        Self::create_with(db, ArangoOptions::with_collection(collection)).await
    }

    /// [`create`](Self::create) with all options.
    ///
    /// # Errors
    /// As for [`create`](Self::create).
    pub async fn create_with(
        db: &arangors::Database<ReqwestClient>,
        options: ArangoOptions,
    ) -> Result<Self, shylock_core::Error> {
        Ok(ArangoBackend {
            core: Arc::new(Core::create(db, options).await?),
        })
    }

    /// Connect with basic authentication through `arangors`, open database
    /// `db` and [`create`](Self::create_with) the backend.
    ///
    /// # Errors
    /// As for [`create`](Self::create); a wrong URL or a missing database is
    /// [`InvalidConfig`](shylock_core::BackendErrorKind::InvalidConfig).
    pub async fn connect(
        url: &str,
        user: &str,
        password: &str,
        db: &str,
        options: ArangoOptions,
    ) -> Result<Self, shylock_core::Error> {
        if let Err(reason) = crate::names::validate_collection_name(&options.collection) {
            return Err(shylock_core::Error::InvalidConfig { reason });
        }
        let db = crate::connect_db(url, user, password, db, options.request_timeout).await?;
        Self::create_with(&db, options).await
    }

    /// The collection holding the lock records.
    pub fn collection(&self) -> &str {
        self.core.collection()
    }
}

impl AsyncBackend for ArangoBackend {
    fn try_acquire<'a>(
        &'a self,
        req: AcquireRequest<'a>,
    ) -> BoxFuture<'a, Result<AcquireOutcome, BackendError>> {
        Box::pin(async move { self.core.try_acquire(&req).await })
    }

    fn renew<'a>(
        &'a self,
        req: RenewRequest<'a>,
    ) -> BoxFuture<'a, Result<RenewOutcome, BackendError>> {
        Box::pin(async move { self.core.renew(&req).await })
    }

    fn release<'a>(
        &'a self,
        req: ReleaseRequest<'a>,
    ) -> BoxFuture<'a, Result<ReleaseOutcome, BackendError>> {
        Box::pin(async move { self.core.release(&req).await })
    }

    fn inspect<'a>(
        &'a self,
        req: InspectRequest<'a>,
    ) -> BoxFuture<'a, Result<Option<LockRecord>, BackendError>> {
        Box::pin(async move { self.core.inspect(&req).await })
    }

    fn server_time(
        &self,
        deadline: Option<Instant>,
    ) -> BoxFuture<'_, Result<Timestamp, BackendError>> {
        Box::pin(async move { self.core.server_time(deadline).await })
    }

    fn clock(&self) -> ClockSource {
        ClockSource::Server
    }

    fn describe(&self) -> String {
        self.core.describe()
    }
}
