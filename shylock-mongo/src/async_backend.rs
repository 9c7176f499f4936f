//! The async backend over [`mongodb::Client`].

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use mongodb::bson::Document;
use mongodb::{Client, Collection, Database};
use shylock_core::backend::{
    AcquireOutcome, AcquireRequest, AsyncBackend, BoxFuture, ClockSource, InspectRequest,
    LockRecord, ReleaseOutcome, ReleaseRequest, RenewOutcome, RenewRequest,
};
use shylock_core::{BackendError, Error, Timestamp};

use crate::commands::{self, Command, Ctx, FindAndModify, ServerCheck, Spec};
use crate::options::MongoOptions;

/// The async MongoDB backend: lock records in one collection, reached
/// through the application's own [`mongodb::Client`] (as the Python
/// original's motor backend).
///
/// Make it with [`create`](Self::create) (collection `shylock`) or
/// [`create_with`](Self::create_with), then hand it to
/// `shylock::configure` or to a lock. Cheap to clone: clones share the
/// client's connection pool. See the [crate docs](crate) for the algorithm.
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use shylock_mongo::MongoBackend;
/// let client = mongodb::Client::with_uri_str("mongodb://127.0.0.1:27017/").await?;
/// let backend = MongoBackend::create(&client, "projectdb").await?;
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
        f.debug_struct("MongoBackend")
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
    /// [`Error::InvalidConfig`] for a bad database name, before anything is
    /// sent, or for a server that can grant a lock twice (FerretDB v1,
    /// unless [`MongoOptions::allow_non_atomic_server`]) or a collection
    /// that breaks the locks (sharded on another key than `_id`, a unique
    /// index on another field); [`Error::Backend`] if the server could not
    /// prepare the collection (unreachable within the set-up deadline,
    /// unauthorized).
    pub async fn create(client: &Client, db: &str) -> Result<Self, Error> {
        Self::create_with(client, db, MongoOptions::default()).await
    }

    /// A backend on database `db` with `options` (collection name, write
    /// concern, TTL grace, deadlines), prepared with [`prepare`](Self::prepare).
    ///
    /// # Errors
    /// As [`create`](Self::create); also [`Error::InvalidConfig`] for a bad
    /// collection name, TTL grace or timeout.
    pub async fn create_with(
        client: &Client,
        db: &str,
        options: MongoOptions,
    ) -> Result<Self, Error> {
        let backend = Self::new(client, db, options)?;
        backend.prepare().await?;
        Ok(backend)
    }

    /// A backend on database `db` with `options`, without contacting the
    /// server: for a collection an administrator prepared (for example when
    /// the application's user may not create indexes). The collection is
    /// also created implicitly by the first acquisition.
    ///
    /// Since nothing is sent here, the check that refuses servers which can
    /// grant a lock twice (FerretDB v1, see
    /// [`MongoOptions::allow_non_atomic_server`]) runs lazily: the first
    /// acquisition through this backend (or a clone) sends one `buildInfo`
    /// first, and on such a server, without the opt-in, fails with a
    /// [`BackendErrorKind::InvalidConfig`](shylock_core::BackendErrorKind::InvalidConfig)
    /// error; later acquisitions reuse the verdict (no extra command). The
    /// sharding check runs only in [`prepare`](Self::prepare).
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

    /// Check the server and the collection, and create the collection and
    /// its TTL index if they are missing, all within
    /// [`MongoOptions::setup_timeout`].
    ///
    /// In order: one `buildInfo` (a server known not to make conditional
    /// single-document updates atomic across connections, FerretDB v1,
    /// recognized by the reply's `ferretdbVersion` field, is refused with
    /// [`Error::InvalidConfig`] unless
    /// [`MongoOptions::allow_non_atomic_server`] is set, then a `tracing`
    /// warning is logged); one `hello` (the server must give its clock,
    /// `localTime`); `create` of the collection; the sharding check (the
    /// collection's entry in `config.collections`, and Azure Cosmos DB's
    /// `customAction: GetCollection`): a collection sharded or partitioned
    /// on anything but `_id` is refused; `createIndexes` of the TTL index
    /// (with `maxTimeMS` and, on replica sets and sharded clusters, commit
    /// quorum `majority`); `listIndexes`. Idempotent and safe when many
    /// processes do it at once: "already exists" answers are expected. A
    /// server that refuses TTL indexes (FerretDB) gets a `tracing` warning,
    /// not an error, since expiry is enforced by the acquisition itself.
    ///
    /// # Errors
    /// [`Error::Backend`] if the server is unreachable (a
    /// [`Timeout`](shylock_core::BackendErrorKind::Timeout) at the set-up
    /// deadline, saying what it waited for) or refuses the commands;
    /// [`Error::InvalidConfig`] for a server that can grant a lock twice or
    /// gives no clock, a collection sharded on another key than `_id`, or an
    /// index that would break the locks (a unique index on anything but
    /// `_id`, or a TTL index on `expiresAt` shorter than
    /// [`MIN_TTL_GRACE`](crate::MIN_TTL_GRACE)).
    pub async fn prepare(&self) -> Result<(), Error> {
        let spec = &self.inner.spec;
        let deadline = spec.setup_deadline();
        let cap = spec.setup_timeout;
        let fail = |e| commands::setup_error(spec, e);
        self.check_server(Some(deadline), cap)
            .await
            .map_err(fail)?
            .into_setup_result()?;
        let hello = self.hello(Some(deadline), cap).await.map_err(fail)?;
        let topology = commands::Topology::from_hello(&hello);
        let ctx = spec_ctx(spec, "create collection");
        let created = within(
            deadline,
            &ctx,
            self.inner
                .db
                .create_collection(&spec.collection)
                .with_options(commands::create_collection_options(spec, deadline))
                .into_future(),
        )
        .await
        .map_err(fail)?;
        commands::create_collection_reply(spec, created)?;
        let lookup = commands::shard_key_lookup(spec, deadline);
        let found = within(
            deadline,
            &lookup.ctx,
            self.inner
                .config_collections
                .find_one(lookup.filter)
                .with_options(lookup.options)
                .into_future(),
        )
        .await
        .map_err(fail)?;
        commands::shard_key_reply(spec, found)?;
        let cosmos = commands::cosmos_get_collection(spec, deadline);
        let answer = self.run_command(cosmos).await.map_err(fail)?;
        commands::cosmos_get_collection_reply(spec, answer)?;
        let ctx = spec_ctx(spec, "create TTL index");
        let indexed = within(
            deadline,
            &ctx,
            self.inner
                .coll
                .create_index(commands::ttl_index(spec))
                .with_options(commands::ttl_index_options(spec, topology, deadline))
                .into_future(),
        )
        .await
        .map_err(fail)?
        .map(|_| ());
        commands::ttl_index_reply(spec, indexed)?;
        let ctx = commands::list_indexes_ctx(spec);
        let listed = within(deadline, &ctx, async {
            let mut cursor = self
                .inner
                .coll
                .list_indexes()
                .with_options(commands::list_indexes_options(deadline))
                .await?;
            let mut indexes = Vec::new();
            while cursor.advance().await? {
                indexes.push(cursor.deserialize_current()?);
            }
            Ok(indexes)
        })
        .await
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

    /// The verdict of the server check: the remembered one, or a
    /// `buildInfo` (within `deadline` and `cap`) read by
    /// [`commands::server_check_reply`] and remembered.
    async fn check_server(
        &self,
        deadline: Option<Instant>,
        cap: Duration,
    ) -> Result<ServerCheck, BackendError> {
        if let Some(verdict) = self.inner.server_check.get() {
            return Ok(verdict.clone());
        }
        let cmd = commands::build_info(&self.inner.spec, deadline, cap)?;
        let ctx = cmd.ctx.clone();
        let reply = self.run_command(cmd).await?;
        let verdict = commands::server_check_reply(&self.inner.spec, &ctx, reply)?;
        Ok(self.inner.server_check.get_or_init(|| verdict).clone())
    }

    /// `hello` (or `isMaster`, remembered, where `hello` is refused or
    /// gives no clock): a reply with the server's `localTime`.
    async fn hello(
        &self,
        deadline: Option<Instant>,
        cap: Duration,
    ) -> Result<Document, BackendError> {
        loop {
            let legacy = self.inner.legacy_hello.load(Ordering::Relaxed);
            let cmd = commands::server_time(&self.inner.spec, legacy, deadline, cap)?;
            let ctx = cmd.ctx.clone();
            let reply = self.run_command(cmd).await?;
            if !legacy && commands::hello_unsupported(&reply) {
                self.inner.legacy_hello.store(true, Ordering::Relaxed);
                continue;
            }
            commands::server_time_reply(&ctx, reply.clone())?;
            return reply.map_err(|e| commands::map_error(&ctx, e));
        }
    }

    /// Run a database command, within its deadline.
    async fn run_command(
        &self,
        cmd: Command,
    ) -> Result<Result<Document, mongodb::error::Error>, BackendError> {
        within(
            cmd.deadline,
            &cmd.ctx,
            self.inner
                .db
                .run_command(cmd.command)
                .with_options(cmd.options)
                .into_future(),
        )
        .await
    }

    async fn find_and_modify(
        &self,
        cmd: FindAndModify,
    ) -> Result<Result<Option<Document>, mongodb::error::Error>, BackendError> {
        let FindAndModify {
            filter,
            update,
            options,
            ctx,
            deadline,
        } = cmd;
        within(
            deadline,
            &ctx,
            self.inner
                .coll
                .find_one_and_update(filter, update)
                .with_options(options)
                .into_future(),
        )
        .await
    }
}

/// A context for a set-up step's messages.
fn spec_ctx(spec: &Spec, op: &'static str) -> Ctx {
    spec.context(op, None)
}

/// Run `fut`, giving up at `deadline` with a timeout error.
async fn within<T>(
    deadline: Instant,
    ctx: &Ctx,
    fut: impl Future<Output = T>,
) -> Result<T, BackendError> {
    tokio::time::timeout_at(deadline.into(), fut)
        .await
        .map_err(|_| commands::timeout_error(ctx))
}

impl AsyncBackend for MongoBackend {
    fn try_acquire<'a>(
        &'a self,
        req: AcquireRequest<'a>,
    ) -> BoxFuture<'a, Result<AcquireOutcome, BackendError>> {
        Box::pin(async move {
            // One atomic load once checked; a `buildInfo` before the first
            // acquisition of a backend made with `new`.
            if !matches!(self.inner.server_check.get(), Some(ServerCheck::Allowed)) {
                self.check_server(req.deadline, self.inner.spec.request_timeout)
                    .await?
                    .into_backend_result()?;
            }
            let cmd = commands::acquire(&self.inner.spec, &req)?;
            let ctx = cmd.ctx.clone();
            let reply = self.find_and_modify(cmd).await?;
            commands::acquire_reply(&ctx, req.owner, reply)
        })
    }

    fn renew<'a>(
        &'a self,
        req: RenewRequest<'a>,
    ) -> BoxFuture<'a, Result<RenewOutcome, BackendError>> {
        Box::pin(async move {
            let cmd = commands::renew(&self.inner.spec, &req)?;
            let ctx = cmd.ctx.clone();
            let reply = self.find_and_modify(cmd).await?;
            commands::renew_reply(&ctx, reply)
        })
    }

    fn release<'a>(
        &'a self,
        req: ReleaseRequest<'a>,
    ) -> BoxFuture<'a, Result<ReleaseOutcome, BackendError>> {
        Box::pin(async move {
            let cmd = commands::release(&self.inner.spec, &req)?;
            let ctx = cmd.ctx.clone();
            let reply = self.find_and_modify(cmd).await?;
            commands::release_reply(&ctx, reply)
        })
    }

    fn inspect<'a>(
        &'a self,
        req: InspectRequest<'a>,
    ) -> BoxFuture<'a, Result<Option<LockRecord>, BackendError>> {
        Box::pin(async move {
            let cmd = commands::inspect(&self.inner.spec, &req)?;
            let reply = within(
                cmd.deadline,
                &cmd.ctx,
                self.inner
                    .coll
                    .find_one(cmd.filter)
                    .with_options(cmd.options)
                    .into_future(),
            )
            .await?;
            commands::inspect_reply(&cmd.ctx, req.now, reply)
        })
    }

    fn server_time(
        &self,
        deadline: Option<Instant>,
    ) -> BoxFuture<'_, Result<Timestamp, BackendError>> {
        Box::pin(async move {
            let hello = self
                .hello(deadline, self.inner.spec.request_timeout)
                .await?;
            let ctx = spec_ctx(&self.inner.spec, "server time");
            commands::server_time_reply(&ctx, Ok(hello))
        })
    }

    fn clock(&self) -> ClockSource {
        ClockSource::Estimated
    }

    fn describe(&self) -> String {
        self.inner.spec.describe()
    }
}

impl From<MongoBackend> for shylock_core::Backend {
    /// A lock handle over the async backend (for `shylock::configure` and
    /// [`AsyncLock`](shylock_core::AsyncLock)).
    fn from(backend: MongoBackend) -> Self {
        shylock_core::Backend::from_async(backend)
    }
}
