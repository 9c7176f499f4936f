//! The sync backend over [`mongodb::sync::Client`] (as the Python original's
//! pymongo backend). The commands are the same as the async backend's (one
//! shared definition); only the call style differs.
//!
//! # Where the driver calls run, and deadlines
//!
//! The sync driver runs each call on its own tokio runtime and panics if it
//! is called from a thread that is inside another runtime. So every driver
//! call of this backend (set-up included) runs on a blocking thread of
//! shylock's runtime ([`shylock_core::bridge::run_blocking`]; at most
//! [`MAX_BLOCKING_THREADS`](shylock_core::bridge::MAX_BLOCKING_THREADS) in
//! the process, started when needed, gone after 10 s idle); the calling
//! thread only waits for the answer. Every public call therefore works the
//! same on a plain thread, inside a current-thread runtime and inside a
//! multi-thread runtime (where it blocks its worker thread until it
//! returns: prefer the async backend there).
//!
//! Make the `mongodb::sync::Client` outside any runtime (or on a thread
//! outside it): the driver runs a client's background monitoring on the
//! runtime the client was made in, if any. A sync client made on the thread
//! of a current-thread runtime that a blocking call then blocks cannot learn
//! that its server is up; its calls end at their deadlines with `Timeout`.
//!
//! The sync driver cannot abandon a call once it is made, so the caller
//! stops waiting at the call's deadline (the caller's limit, the lease, or
//! [`MongoOptions::request_timeout`](crate::MongoOptions::request_timeout);
//! for set-up [`MongoOptions::setup_timeout`](crate::MongoOptions::setup_timeout))
//! and gets a [`Timeout`](shylock_core::BackendErrorKind::Timeout) error
//! (the outcome of the command is then unknown, as with any timeout). A
//! call not started on a thread by its deadline is never sent. A call
//! already sent is left to its thread: it ends when the server answers or
//! gives up (every command carries `maxTimeMS` and, for writes, `wtimeout`
//! = its bound), when the driver's server selection gives up
//! (`serverSelectionTimeoutMS`, 30 s by default), or when the connection
//! fails. The 3.x driver has **no socket timeout** (`socketTimeoutMS` is
//! parsed but not applied), so on a connection whose peer silently
//! vanished only TCP keepalive ends it (the driver turns it on with a
//! 120 s idle time; Linux then probes for about 11 more minutes by
//! default). Meanwhile that thread is busy; with all of them busy, calls
//! wait in a queue and end at their deadlines with `Timeout`, never later.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use mongodb::bson::Document;
use mongodb::sync::{Client, Collection, Database};
use shylock_core::backend::{
    AcquireOutcome, AcquireRequest, ClockSource, InspectRequest, LockRecord, ReleaseOutcome,
    ReleaseRequest, RenewOutcome, RenewRequest, SyncBackend,
};
use shylock_core::{BackendError, BackendErrorKind, Error, Timestamp};

use crate::commands::{self, Command, Ctx, FindAndModify, ServerCheck, Spec};
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
    /// `config.collections`, read by the sharding check.
    config_collections: Collection<Document>,
    spec: Spec,
    /// The server refused `hello` (or gave no clock with it): use `isMaster`.
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
    /// [`prepare`](Self::prepare) within [`DEFAULT_SETUP_TIMEOUT`](crate::DEFAULT_SETUP_TIMEOUT).
    ///
    /// # Errors
    /// As the async [`MongoBackend::create`](crate::MongoBackend::create).
    pub fn create(client: &Client, db: &str) -> Result<Self, Error> {
        Self::create_with(client, db, MongoOptions::default())
    }

    /// A backend on database `db` with `options` (collection name, write
    /// concern, TTL grace, deadlines), prepared with [`prepare`](Self::prepare).
    ///
    /// # Errors
    /// As [`create`](Self::create); also [`Error::InvalidConfig`] for a bad
    /// collection name, TTL grace or timeout.
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
    /// [`Error::InvalidConfig`] for a bad database or collection name, TTL
    /// grace or timeout.
    pub fn new(client: &Client, db: &str, options: MongoOptions) -> Result<Self, Error> {
        let spec = Spec::new(db, &options)?;
        let database = client.database(&spec.db);
        let coll = database.collection::<Document>(&spec.collection);
        let config_collections = client
            .database("config")
            .collection::<Document>("collections");
        Ok(MongoBackend {
            inner: Arc::new(Inner {
                db: database,
                coll,
                config_collections,
                spec,
                legacy_hello: AtomicBool::new(false),
                server_check: OnceLock::new(),
            }),
        })
    }

    /// Check the server and the collection and create the collection and
    /// its TTL index if they are missing, within
    /// [`MongoOptions::setup_timeout`]; see the async
    /// [`MongoBackend::prepare`](crate::MongoBackend::prepare) (same
    /// commands, same errors).
    ///
    /// # Errors
    /// As the async form's.
    pub fn prepare(&self) -> Result<(), Error> {
        let spec = &self.inner.spec;
        let deadline = spec.setup_deadline();
        let cap = spec.setup_timeout;
        let fail = |e| commands::setup_error(spec, e);
        self.check_server(Some(deadline), cap)
            .map_err(fail)?
            .into_setup_result()?;
        let hello = self.hello(Some(deadline), cap).map_err(fail)?;
        let topology = commands::Topology::from_hello(&hello);

        let (db, name) = (self.inner.db.clone(), spec.collection.clone());
        let options = commands::create_collection_options(spec, deadline);
        let created = driver_call(
            deadline,
            &spec.context("create collection", None),
            move || db.create_collection(name).with_options(options).run(),
        )
        .map_err(fail)?;
        commands::create_collection_reply(spec, created)?;

        let lookup = commands::shard_key_lookup(spec, deadline);
        let config = self.inner.config_collections.clone();
        let (filter, options) = (lookup.filter, lookup.options);
        let found = driver_call(deadline, &lookup.ctx, move || {
            config.find_one(filter).with_options(options).run()
        })
        .map_err(fail)?;
        commands::shard_key_reply(spec, found)?;

        let cosmos = commands::cosmos_get_collection(spec, deadline);
        let answer = self.run_command(cosmos).map_err(fail)?;
        commands::cosmos_get_collection_reply(spec, answer)?;

        let coll = self.inner.coll.clone();
        let (model, options) = (
            commands::ttl_index(spec),
            commands::ttl_index_options(spec, topology, deadline),
        );
        let indexed = driver_call(
            deadline,
            &spec.context("create TTL index", None),
            move || {
                coll.create_index(model)
                    .with_options(options)
                    .run()
                    .map(|_| ())
            },
        )
        .map_err(fail)?;
        commands::ttl_index_reply(spec, indexed)?;

        let coll = self.inner.coll.clone();
        let options = commands::list_indexes_options(deadline);
        let listed = driver_call(deadline, &commands::list_indexes_ctx(spec), move || {
            coll.list_indexes()
                .with_options(options)
                .run()
                .and_then(|cursor| cursor.collect::<Result<Vec<_>, _>>())
        })
        .map_err(fail)?;
        commands::check_indexes(spec, listed)
    }

    /// The database's name.
    pub fn database(&self) -> &str {
        &self.inner.spec.db
    }

    /// The collection's name.
    pub fn collection(&self) -> &str {
        &self.inner.spec.collection
    }

    /// Run a database command on a blocking thread.
    fn run_command(
        &self,
        cmd: Command,
    ) -> Result<Result<Document, mongodb::error::Error>, BackendError> {
        let db = self.inner.db.clone();
        let (command, options) = (cmd.command, cmd.options);
        driver_call(cmd.deadline, &cmd.ctx, move || {
            db.run_command(command).with_options(options).run()
        })
    }

    /// The verdict of the server check: the remembered one, or a
    /// `buildInfo` (within `deadline` and `cap`) read by
    /// [`commands::server_check_reply`] and remembered.
    fn check_server(
        &self,
        deadline: Option<Instant>,
        cap: Duration,
    ) -> Result<ServerCheck, BackendError> {
        if let Some(verdict) = self.inner.server_check.get() {
            return Ok(verdict.clone());
        }
        let cmd = commands::build_info(&self.inner.spec, deadline, cap)?;
        let ctx = cmd.ctx.clone();
        let reply = self.run_command(cmd)?;
        let verdict = commands::server_check_reply(&self.inner.spec, &ctx, reply)?;
        Ok(self.inner.server_check.get_or_init(|| verdict).clone())
    }

    /// `hello` (or `isMaster`, remembered, where `hello` is refused or
    /// gives no clock): a reply with the server's `localTime`.
    fn hello(&self, deadline: Option<Instant>, cap: Duration) -> Result<Document, BackendError> {
        loop {
            let legacy = self.inner.legacy_hello.load(Ordering::Relaxed);
            let cmd = commands::server_time(&self.inner.spec, legacy, deadline, cap)?;
            let ctx = cmd.ctx.clone();
            let reply = self.run_command(cmd)?;
            if !legacy && commands::hello_unsupported(&reply) {
                self.inner.legacy_hello.store(true, Ordering::Relaxed);
                continue;
            }
            commands::server_time_reply(&ctx, reply.clone())?;
            return reply.map_err(|e| commands::map_error(&ctx, e));
        }
    }

    fn find_and_modify(
        &self,
        cmd: FindAndModify,
    ) -> Result<(Ctx, Result<Option<Document>, mongodb::error::Error>), BackendError> {
        let FindAndModify {
            filter,
            update,
            options,
            ctx,
            deadline,
        } = cmd;
        let coll = self.inner.coll.clone();
        let reply = driver_call(deadline, &ctx, move || {
            coll.find_one_and_update(filter, update)
                .with_options(options)
                .run()
        })?;
        Ok((ctx, reply))
    }
}

/// Run the driver `call` on a blocking thread of shylock's runtime (see the
/// [module docs](self)); wait for it until `deadline`.
fn driver_call<T: Send + 'static>(
    deadline: Instant,
    ctx: &Ctx,
    call: impl FnOnce() -> T + Send + 'static,
) -> Result<T, BackendError> {
    shylock_core::bridge::run_blocking(Some(deadline), call).map_err(|e| {
        if e.kind() == BackendErrorKind::Timeout {
            commands::timeout_error(ctx)
        } else {
            BackendError::new(e.kind(), format!("{ctx}: {e}"))
        }
    })
}

impl SyncBackend for MongoBackend {
    fn try_acquire(&self, req: AcquireRequest<'_>) -> Result<AcquireOutcome, BackendError> {
        // One atomic load once checked; a `buildInfo` before the first
        // acquisition of a backend made with `new`.
        if !matches!(self.inner.server_check.get(), Some(ServerCheck::Allowed)) {
            self.check_server(req.deadline, self.inner.spec.request_timeout)?
                .into_backend_result()?;
        }
        let cmd = commands::acquire(&self.inner.spec, &req)?;
        let (ctx, reply) = self.find_and_modify(cmd)?;
        commands::acquire_reply(&ctx, req.owner, reply)
    }

    fn renew(&self, req: RenewRequest<'_>) -> Result<RenewOutcome, BackendError> {
        let cmd = commands::renew(&self.inner.spec, &req)?;
        let (ctx, reply) = self.find_and_modify(cmd)?;
        commands::renew_reply(&ctx, reply)
    }

    fn release(&self, req: ReleaseRequest<'_>) -> Result<ReleaseOutcome, BackendError> {
        let cmd = commands::release(&self.inner.spec, &req)?;
        let (ctx, reply) = self.find_and_modify(cmd)?;
        commands::release_reply(&ctx, reply)
    }

    fn inspect(&self, req: InspectRequest<'_>) -> Result<Option<LockRecord>, BackendError> {
        let cmd = commands::inspect(&self.inner.spec, &req)?;
        let coll = self.inner.coll.clone();
        let (filter, options) = (cmd.filter, cmd.options);
        let reply = driver_call(cmd.deadline, &cmd.ctx, move || {
            coll.find_one(filter).with_options(options).run()
        })?;
        commands::inspect_reply(&cmd.ctx, req.now, reply)
    }

    fn server_time(&self, deadline: Option<Instant>) -> Result<Timestamp, BackendError> {
        let hello = self.hello(deadline, self.inner.spec.request_timeout)?;
        commands::server_time_reply(&self.inner.spec.context("server time", None), Ok(hello))
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
