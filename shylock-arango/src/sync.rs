//! The sync backend (feature `sync`): a thin blocking layer over the async
//! implementation.
//!
//! The backend owns one thread running a single-threaded tokio runtime.
//! Each call hands its work to that thread and blocks on a channel for the
//! answer, so it works from plain threads and never needs (or disturbs) a
//! runtime of the caller's: called from inside an async context it blocks
//! that thread for the request's duration, but never panics. Calls from many
//! threads run concurrently on the backend's thread. It does not use
//! `arangors`' `blocking` feature, so it builds together with the async form.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use shylock_core::backend::{
    AcquireOutcome, AcquireRequest, ClockSource, InspectRequest, LockRecord, ReleaseOutcome,
    ReleaseRequest, RenewOutcome, RenewRequest, SyncBackend,
};
use shylock_core::{BackendError, BackendErrorKind, Timestamp};

use arangors::client::ClientExt;

use crate::ArangoOptions;
use crate::core::Core;

type Job = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// The sync ArangoDB backend (feature `sync`). Cheap to clone: clones share
/// one connection and one worker thread, which stops when the last clone is
/// dropped. Its `Debug` never shows a credential.
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
#[derive(Debug, Clone)]
pub struct ArangoBackend {
    core: Arc<Core>,
    worker: Worker,
}

#[derive(Debug, Clone)]
struct Worker {
    jobs: tokio::sync::mpsc::UnboundedSender<Job>,
}

fn stopped() -> BackendError {
    BackendError::new(
        BackendErrorKind::Unexpected,
        "the shylock-arango worker thread stopped",
    )
}

impl Worker {
    fn start() -> Result<Worker, BackendError> {
        let (jobs, mut queue) = tokio::sync::mpsc::unbounded_channel::<Job>();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| {
                BackendError::new(
                    BackendErrorKind::Other,
                    "cannot start the runtime of the sync ArangoDB backend",
                )
                .with_source(e)
            })?;
        std::thread::Builder::new()
            .name("shylock-arango-sync".into())
            .spawn(move || {
                runtime.block_on(async move {
                    while let Some(job) = queue.recv().await {
                        tokio::spawn(job);
                    }
                });
            })
            .map_err(|e| {
                BackendError::new(
                    BackendErrorKind::Other,
                    "cannot start the thread of the sync ArangoDB backend",
                )
                .with_source(e)
            })?;
        Ok(Worker { jobs })
    }

    /// Run `work` on the worker thread and wait for its result, giving up
    /// with a Timeout at `deadline`.
    fn call<T, F>(&self, work: F, deadline: Option<Instant>) -> Result<T, BackendError>
    where
        T: Send + 'static,
        F: Future<Output = Result<T, BackendError>> + Send + 'static,
    {
        let (reply, answer) = std::sync::mpsc::sync_channel(1);
        let job: Job = Box::pin(async move {
            let result = match deadline {
                Some(d) => {
                    match tokio::time::timeout_at(tokio::time::Instant::from_std(d), work).await {
                        Ok(r) => r,
                        Err(_) => Err(BackendError::new(
                            BackendErrorKind::Timeout,
                            "the ArangoDB request did not finish before the deadline",
                        )),
                    }
                }
                None => work.await,
            };
            let _ = reply.send(result);
        });
        self.jobs.send(job).map_err(|_| stopped())?;
        // A panicking job drops `reply`: `recv` then fails instead of hanging.
        answer.recv().map_err(|_| stopped())?
    }
}

impl ArangoBackend {
    fn start(core: Core) -> Result<Self, BackendError> {
        Ok(ArangoBackend {
            core: Arc::new(core),
            worker: Worker::start()?,
        })
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
    ///   `expireAfter` is below [`MIN_TTL_GRACE`](crate::MIN_TTL_GRACE);
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
        let worker = Worker::start()?;
        let (url, user, password, db) = (
            url.to_owned(),
            user.to_owned(),
            password.to_owned(),
            db.to_owned(),
        );
        let core = worker.call(
            async move {
                let core = Core::connect(&url, &user, &password, &db, options).await?;
                core.prepare().await?;
                Ok(core)
            },
            None,
        )?;
        Ok(ArangoBackend {
            core: Arc::new(core),
            worker,
        })
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
        Ok(Self::start(Core::from_handle(db, options)?)?)
    }

    /// Make sure the collection and its TTL index exist, creating only what
    /// is missing.
    ///
    /// # Errors
    /// As for [`connect`](Self::connect).
    pub fn prepare(&self) -> Result<(), shylock_core::Error> {
        let core = Arc::clone(&self.core);
        Ok(self
            .worker
            .call(async move { core.prepare().await }, None)?)
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

impl SyncBackend for ArangoBackend {
    fn try_acquire(&self, req: AcquireRequest<'_>) -> Result<AcquireOutcome, BackendError> {
        let core = Arc::clone(&self.core);
        let (name, owner) = (req.name.clone(), req.owner.clone());
        let (lease, now, deadline) = (req.lease, req.now, req.deadline);
        self.worker.call(
            async move {
                let req = AcquireRequest {
                    name: &name,
                    owner: &owner,
                    lease,
                    now,
                    deadline,
                };
                core.try_acquire(&req).await
            },
            deadline,
        )
    }

    fn renew(&self, req: RenewRequest<'_>) -> Result<RenewOutcome, BackendError> {
        let core = Arc::clone(&self.core);
        let (name, owner) = (req.name.clone(), req.owner.clone());
        let (token, lease, now, deadline) = (req.token, req.lease, req.now, req.deadline);
        self.worker.call(
            async move {
                let req = RenewRequest {
                    name: &name,
                    owner: &owner,
                    token,
                    lease,
                    now,
                    deadline,
                };
                core.renew(&req).await
            },
            deadline,
        )
    }

    fn release(&self, req: ReleaseRequest<'_>) -> Result<ReleaseOutcome, BackendError> {
        let core = Arc::clone(&self.core);
        let (name, owner) = (req.name.clone(), req.owner.clone());
        let (token, now, deadline) = (req.token, req.now, req.deadline);
        self.worker.call(
            async move {
                let req = ReleaseRequest {
                    name: &name,
                    owner: &owner,
                    token,
                    now,
                    deadline,
                };
                core.release(&req).await
            },
            deadline,
        )
    }

    fn inspect(&self, req: InspectRequest<'_>) -> Result<Option<LockRecord>, BackendError> {
        let core = Arc::clone(&self.core);
        let name = req.name.clone();
        let (now, deadline) = (req.now, req.deadline);
        self.worker.call(
            async move {
                let req = InspectRequest {
                    name: &name,
                    now,
                    deadline,
                };
                core.inspect(&req).await
            },
            deadline,
        )
    }

    fn server_time(&self, deadline: Option<Instant>) -> Result<Timestamp, BackendError> {
        let core = Arc::clone(&self.core);
        self.worker
            .call(async move { core.server_time(deadline).await }, deadline)
    }

    fn clock(&self) -> ClockSource {
        ClockSource::Server
    }

    fn describe(&self) -> String {
        self.core.describe()
    }
}
