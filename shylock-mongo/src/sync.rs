//! The sync backend over [`mongodb::sync::Client`] (as the Python original's
//! pymongo backend). The commands are the same as the async backend's (one
//! shared definition); only the call style differs.
//!
//! # Deadlines
//!
//! The sync driver cannot abandon a call once it is made, so a primitive
//! with a deadline runs its driver call on a helper thread and stops waiting
//! for it at the deadline, answering a
//! [`Timeout`](shylock_core::BackendErrorKind::Timeout) error (the outcome
//! of the command is then unknown, as with any timeout). The abandoned call
//! finishes in the background, bounded by the client's own timeouts
//! (`serverSelectionTimeoutMS`, 30 s by default, `connectTimeoutMS`,
//! `socketTimeoutMS`); its late result is dropped. Commands also carry
//! `maxTimeMS` (the time left), so the server stops working on them too.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use mongodb::bson::Document;
use mongodb::sync::{Client, Collection, Database};
use shylock_core::backend::{
    AcquireOutcome, AcquireRequest, ClockSource, InspectRequest, LockRecord, ReleaseOutcome,
    ReleaseRequest, RenewOutcome, RenewRequest, SyncBackend,
};
use shylock_core::{BackendError, BackendErrorKind, Error, Timestamp};

use crate::commands::{self, Ctx, FindAndModify, ServerCheck, Spec};
use crate::options::MongoOptions;

/// The sync MongoDB backend: lock records in one collection, reached through
/// the application's own [`mongodb::sync::Client`].
///
/// Make it with [`create`](Self::create) (collection `shylock`) or
/// [`create_with`](Self::create_with), then hand it to `shylock::configure`
/// or to a lock. Cheap to clone. See the [crate docs](crate) for the
/// algorithm and the [module docs](self) for how deadlines are kept.
///
/// ```no_run
/// # fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use shylock_mongo::sync::MongoBackend;
/// let client = mongodb::sync::Client::with_uri_str("mongodb://127.0.0.1:27017/")?;
/// let backend = MongoBackend::create(&client, "projectdb")?;
/// let handle = shylock_core::Backend::from(backend);
/// # drop(handle);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct MongoBackend {
    inner: Arc<Inner>,
}

struct Inner {
    db: Database,
    coll: Collection<Document>,
    spec: Spec,
    /// The server answered `hello` with CommandNotFound: use `isMaster`.
    legacy_hello: AtomicBool,
    /// The verdict of the `buildInfo` check (see
    /// [`MongoOptions::allow_non_atomic_server`]), once made.
    server_check: OnceLock<ServerCheck>,
}

impl std::fmt::Debug for MongoBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("sync::MongoBackend")
            .field("namespace", &self.inner.spec.namespace())
            .field("write_concern", &self.inner.spec.write_concern)
            .finish_non_exhaustive()
    }
}

impl MongoBackend {
    /// A backend on the collection `shylock` of database `db`, prepared with
    /// [`prepare`](Self::prepare).
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for a bad database name, before anything is
    /// sent, or for a server that can grant a lock twice (FerretDB v1,
    /// unless [`MongoOptions::allow_non_atomic_server`]); [`Error::Backend`]
    /// if the server could not prepare the collection (unreachable,
    /// unauthorized, or a conflicting index).
    pub fn create(client: &Client, db: &str) -> Result<Self, Error> {
        Self::create_with(client, db, MongoOptions::default())
    }

    /// A backend on database `db` with `options` (collection name, write
    /// concern, TTL grace), prepared with [`prepare`](Self::prepare).
    ///
    /// # Errors
    /// As [`create`](Self::create); also [`Error::InvalidConfig`] for a bad
    /// collection name or TTL grace.
    pub fn create_with(client: &Client, db: &str, options: MongoOptions) -> Result<Self, Error> {
        let backend = Self::new(client, db, options)?;
        backend.prepare()?;
        Ok(backend)
    }

    /// A backend on database `db` with `options`, without contacting the
    /// server: for a collection an administrator prepared. The collection is
    /// also created implicitly by the first acquisition.
    ///
    /// As with the async [`MongoBackend::new`](crate::MongoBackend::new),
    /// the server check (FerretDB v1 refused, see
    /// [`MongoOptions::allow_non_atomic_server`]) then runs before the first
    /// acquisition, once.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for a bad database or collection name or
    /// TTL grace.
    pub fn new(client: &Client, db: &str, options: MongoOptions) -> Result<Self, Error> {
        let spec = Spec::new(db, options)?;
        let database = client.database(&spec.db);
        let coll = database.collection::<Document>(&spec.collection);
        Ok(MongoBackend {
            inner: Arc::new(Inner {
                db: database,
                coll,
                spec,
                legacy_hello: AtomicBool::new(false),
                server_check: OnceLock::new(),
            }),
        })
    }

    /// Check the server (one `buildInfo`: FerretDB v1 is refused unless
    /// [`MongoOptions::allow_non_atomic_server`]), create the collection and
    /// its TTL index if they are missing, and check its indexes; see the async
    /// [`MongoBackend::prepare`](crate::MongoBackend::prepare) (same
    /// commands, same errors).
    ///
    /// # Errors
    /// As the async form's.
    pub fn prepare(&self) -> Result<(), Error> {
        self.check_server(None)?.into_setup_result()?;
        let spec = &self.inner.spec;
        let created = self
            .inner
            .db
            .create_collection(&spec.collection)
            .with_options(commands::create_collection_options(spec))
            .run();
        commands::create_collection_reply(spec, created)?;
        let indexed = self
            .inner
            .coll
            .create_index(commands::ttl_index(spec))
            .write_concern(commands::ttl_index_write_concern(spec))
            .run()
            .map(|_| ());
        commands::ttl_index_reply(spec, indexed)?;
        let list = commands::list_indexes(spec);
        let listed = self
            .inner
            .db
            .run_command(list.command)
            .with_options(list.options)
            .run();
        commands::check_indexes(spec, listed)
    }

    /// The database name.
    pub fn database_name(&self) -> &str {
        &self.inner.spec.db
    }

    /// The collection name.
    pub fn collection_name(&self) -> &str {
        &self.inner.spec.collection
    }

    /// The verdict of the server check: the remembered one, or a
    /// `buildInfo` (within `deadline`) read by
    /// [`commands::server_check_reply`] and remembered.
    fn check_server(&self, deadline: Option<Instant>) -> Result<ServerCheck, BackendError> {
        if let Some(verdict) = self.inner.server_check.get() {
            return Ok(verdict.clone());
        }
        let cmd = commands::build_info(&self.inner.spec, deadline)?;
        let db = self.inner.db.clone();
        let (command, options) = (cmd.command, cmd.options);
        let reply = within(deadline, &cmd.ctx, move || {
            db.run_command(command).with_options(options).run()
        })?;
        let verdict = commands::server_check_reply(&self.inner.spec, &cmd.ctx, reply)?;
        Ok(self.inner.server_check.get_or_init(|| verdict).clone())
    }

    fn find_and_modify(
        &self,
        cmd: FindAndModify,
        deadline: Option<Instant>,
    ) -> Result<(Ctx, Result<Option<Document>, mongodb::error::Error>), BackendError> {
        let FindAndModify {
            filter,
            update,
            options,
            ctx,
        } = cmd;
        let coll = self.inner.coll.clone();
        let reply = within(deadline, &ctx, move || {
            coll.find_one_and_update(filter, update)
                .with_options(options)
                .run()
        })?;
        Ok((ctx, reply))
    }
}

/// Run the blocking driver call `call`, giving up waiting for it at
/// `deadline` with a timeout error (see the [module docs](self)).
fn within<T: Send + 'static>(
    deadline: Option<Instant>,
    ctx: &Ctx,
    call: impl FnOnce() -> T + Send + 'static,
) -> Result<T, BackendError> {
    let Some(left) = commands::time_left(deadline, ctx)? else {
        return Ok(call());
    };
    let (tx, rx) = mpsc::sync_channel(1);
    std::thread::Builder::new()
        .name("shylock-mongo-call".into())
        .spawn(move || {
            // The receiver is gone if the caller gave up: drop the result.
            let _ = tx.send(call());
        })
        .map_err(|e| {
            BackendError::new(
                BackendErrorKind::Unavailable,
                format!("{ctx}: could not start a thread for the call"),
            )
            .with_source(e)
        })?;
    match rx.recv_timeout(left) {
        Ok(value) => Ok(value),
        Err(mpsc::RecvTimeoutError::Timeout) => Err(commands::timeout_error(ctx)),
        Err(mpsc::RecvTimeoutError::Disconnected) => Err(BackendError::new(
            BackendErrorKind::Other,
            format!("{ctx}: the driver call panicked"),
        )),
    }
}

impl SyncBackend for MongoBackend {
    fn try_acquire(&self, req: AcquireRequest<'_>) -> Result<AcquireOutcome, BackendError> {
        // One atomic load once checked; a `buildInfo` before the first
        // acquisition of a backend made with `new`.
        if !matches!(self.inner.server_check.get(), Some(ServerCheck::Allowed)) {
            self.check_server(req.deadline)?.into_backend_result()?;
        }
        let cmd = commands::acquire(&self.inner.spec, &req)?;
        let (ctx, reply) = self.find_and_modify(cmd, req.deadline)?;
        commands::acquire_reply(&ctx, req.owner, reply)
    }

    fn renew(&self, req: RenewRequest<'_>) -> Result<RenewOutcome, BackendError> {
        let cmd = commands::renew(&self.inner.spec, &req)?;
        let (ctx, reply) = self.find_and_modify(cmd, req.deadline)?;
        commands::renew_reply(&ctx, reply)
    }

    fn release(&self, req: ReleaseRequest<'_>) -> Result<ReleaseOutcome, BackendError> {
        let cmd = commands::release(&self.inner.spec, &req)?;
        let (ctx, reply) = self.find_and_modify(cmd, req.deadline)?;
        commands::release_reply(&ctx, reply)
    }

    fn inspect(&self, req: InspectRequest<'_>) -> Result<Option<LockRecord>, BackendError> {
        let cmd = commands::inspect(&self.inner.spec, &req)?;
        let coll = self.inner.coll.clone();
        let (filter, options) = (cmd.filter, cmd.options);
        let reply = within(req.deadline, &cmd.ctx, move || {
            coll.find_one(filter).with_options(options).run()
        })?;
        commands::inspect_reply(&cmd.ctx, req.now, reply)
    }

    fn server_time(&self, deadline: Option<Instant>) -> Result<Timestamp, BackendError> {
        loop {
            let legacy = self.inner.legacy_hello.load(Ordering::Relaxed);
            let cmd = commands::server_time(&self.inner.spec, legacy, deadline)?;
            let db = self.inner.db.clone();
            let (command, options) = (cmd.command, cmd.options);
            let reply = within(deadline, &cmd.ctx, move || {
                db.run_command(command).with_options(options).run()
            })?;
            if !legacy && commands::hello_unsupported(&reply) {
                self.inner.legacy_hello.store(true, Ordering::Relaxed);
                continue;
            }
            return commands::server_time_reply(&cmd.ctx, reply);
        }
    }

    fn clock(&self) -> ClockSource {
        ClockSource::Estimated
    }

    fn describe(&self) -> String {
        self.inner.spec.describe()
    }
}

impl From<MongoBackend> for shylock_core::Backend {
    /// A lock handle over the sync backend (for `shylock::configure` and
    /// [`Lock`](shylock_core::Lock)).
    fn from(backend: MongoBackend) -> Self {
        shylock_core::Backend::from_sync(backend)
    }
}
