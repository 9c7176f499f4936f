//! The one implementation of both forms: set-up, server checks and the six
//! lock commands, written once as async code over a [`Driver`] (the I/O of
//! one driver form). The async form's driver is in `async_backend.rs`, the
//! sync form's (its calls on shylock's blocking threads) in `sync.rs`.
//! What is sent and why: the README.

use std::future::Future;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use mongodb::IndexModel;
use mongodb::bson::Document;
use mongodb::error::Error as MongoError;
use mongodb::options::{CreateCollectionOptions, CreateIndexOptions, ListIndexesOptions};
use shylock_core::backend::{
    AcquireOutcome, AcquireRequest, AsyncBackend, AuditRequest, BoxFuture, ClockSource,
    ForceReleaseOutcome, ForceReleaseRequest, ForcedRelease, HandOverOutcome, HandOverRequest,
    InspectRequest, ListPage, ListRequest, LockRecord, ReleaseOutcome, ReleaseRequest,
    RenewOutcome, RenewRequest,
};
use shylock_core::{BackendError, BackendErrorKind, Error, Timestamp};

use crate::errors::{map_error, setup_error, timeout_error};
use crate::lock_commands;
use crate::options::MongoOptions;
use crate::setup::{self, ServerCheck, Topology};
use crate::spec::{Command, Ctx, FindAndModify, FindMany, FindOne, Spec};

/// How many times a forced release reads the holding and tries to free
/// it, when the holding changes in between.
const FORCE_ATTEMPTS: usize = 3;

/// The answer of one driver call: the driver's own result, or an error of
/// the way to it (the sync form's bridge: no thread by the deadline, a
/// panic).
pub(crate) type Reply<'a, T> = BoxFuture<'a, Result<Result<T, MongoError>, BackendError>>;

/// Which collection a `find` reads.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Target {
    /// The lock collection.
    Locks,
    /// `config.collections`, read by the sharding check.
    ConfigCollections,
}

/// The I/O of one driver form: each method sends one prepared command as
/// it is (the same bytes in both forms). `deadline` is the command's; the
/// core also stops waiting at it.
pub(crate) trait Driver: Send + Sync + 'static {
    /// A database command (`hello`, `isMaster`, `buildInfo`, `customAction`).
    fn run_command(&self, cmd: Command) -> Reply<'_, Document>;
    /// A `findAndModify` on the lock collection.
    fn find_and_modify(&self, cmd: FindAndModify) -> Reply<'_, Option<Document>>;
    /// A `find` of one document in `target`.
    fn find_one(&self, target: Target, cmd: FindOne) -> Reply<'_, Option<Document>>;
    /// A `find` of many documents in the lock collection, every batch.
    fn find_many(&self, cmd: FindMany) -> Reply<'_, Vec<Document>>;
    /// `create` of the lock collection.
    fn create_collection(
        &self,
        options: CreateCollectionOptions,
        deadline: Instant,
    ) -> Reply<'_, ()>;
    /// `createIndexes` of one index on the lock collection.
    fn create_index(
        &self,
        model: IndexModel,
        options: CreateIndexOptions,
        deadline: Instant,
    ) -> Reply<'_, ()>;
    /// `listIndexes` of the lock collection, every batch.
    fn list_indexes(
        &self,
        options: ListIndexesOptions,
        deadline: Instant,
    ) -> Reply<'_, Vec<IndexModel>>;
}

/// The backend of both forms over a [`Driver`].
pub(crate) struct Core<D> {
    driver: D,
    spec: Spec,
    /// The server refused `hello` (or gave no clock with it): use `isMaster`.
    legacy_hello: AtomicBool,
    /// The verdict of the `buildInfo` check (see
    /// [`MongoOptions::allow_non_atomic_server`]), once made.
    server_check: OnceLock<ServerCheck>,
}

impl<D: Driver> Core<D> {
    /// Validate `db` and `options` (nothing is sent), then make the driver
    /// for them with `driver`.
    pub(crate) fn new(
        db: &str,
        options: &MongoOptions,
        driver: impl FnOnce(&Spec) -> D,
    ) -> Result<Self, Error> {
        let spec = Spec::new(db, options)?;
        Ok(Core {
            driver: driver(&spec),
            spec,
            legacy_hello: AtomicBool::new(false),
            server_check: OnceLock::new(),
        })
    }

    /// The validated options and names.
    pub(crate) fn spec(&self) -> &Spec {
        &self.spec
    }

    /// `prepare` of both forms (README: Set-up and server checks).
    pub(crate) async fn prepare(&self) -> Result<(), Error> {
        let spec = &self.spec;
        let deadline = spec.setup_deadline();
        let cap = spec.setup_timeout;
        let fail = |e| setup_error(spec, e);
        self.check_server(Some(deadline), cap)
            .await
            .map_err(fail)?
            .into_setup_result()?;
        let hello = self.hello(Some(deadline), cap).await.map_err(fail)?;
        let topology = Topology::from_hello(&hello);

        let ctx = spec.context("create collection", None);
        let options = setup::create_collection_options(spec, deadline);
        let created = call(
            deadline,
            &ctx,
            self.driver.create_collection(options, deadline),
        )
        .await
        .map_err(fail)?;
        setup::create_collection_reply(spec, created)?;

        let lookup = setup::shard_key_lookup(spec, deadline);
        let ctx = lookup.ctx.clone();
        let found = call(
            deadline,
            &ctx,
            self.driver.find_one(Target::ConfigCollections, lookup),
        )
        .await
        .map_err(fail)?;
        setup::shard_key_reply(spec, found)?;

        let cosmos = setup::cosmos_get_collection(spec, deadline);
        let answer = self.run_command(cosmos).await.map_err(fail)?;
        setup::cosmos_get_collection_reply(spec, answer)?;

        let ctx = spec.context("create TTL index", None);
        let (model, options) = (
            setup::ttl_index(spec),
            setup::ttl_index_options(spec, topology, deadline),
        );
        let indexed = call(
            deadline,
            &ctx,
            self.driver.create_index(model, options, deadline),
        )
        .await
        .map_err(fail)?;
        setup::ttl_index_reply(spec, indexed)?;

        let ctx = setup::list_indexes_ctx(spec);
        let options = setup::list_indexes_options(deadline);
        let listed = call(deadline, &ctx, self.driver.list_indexes(options, deadline))
            .await
            .map_err(fail)?;
        setup::check_indexes(spec, listed)
    }

    /// The verdict of the server check: the remembered one, or a
    /// `buildInfo` (within `deadline` and `cap`) read by
    /// [`setup::server_check_reply`] and remembered.
    async fn check_server(
        &self,
        deadline: Option<Instant>,
        cap: Duration,
    ) -> Result<ServerCheck, BackendError> {
        if let Some(verdict) = self.server_check.get() {
            return Ok(verdict.clone());
        }
        let cmd = setup::build_info(&self.spec, deadline, cap)?;
        let ctx = cmd.ctx.clone();
        let reply = self.run_command(cmd).await?;
        let verdict = setup::server_check_reply(&self.spec, &ctx, reply)?;
        Ok(self.server_check.get_or_init(|| verdict).clone())
    }

    /// `hello` (or `isMaster`, remembered, where `hello` is refused or
    /// gives no clock): a reply with the server's `localTime`.
    async fn hello(
        &self,
        deadline: Option<Instant>,
        cap: Duration,
    ) -> Result<Document, BackendError> {
        loop {
            let legacy = self.legacy_hello.load(Ordering::Relaxed);
            let cmd = setup::server_time(&self.spec, legacy, deadline, cap)?;
            let ctx = cmd.ctx.clone();
            let reply = self.run_command(cmd).await?;
            if !legacy && setup::hello_unsupported(&reply) {
                self.legacy_hello.store(true, Ordering::Relaxed);
                continue;
            }
            setup::server_time_reply(&ctx, reply.clone())?;
            return reply.map_err(|e| map_error(&ctx, e));
        }
    }

    /// A database command, within its deadline.
    async fn run_command(
        &self,
        cmd: Command,
    ) -> Result<Result<Document, MongoError>, BackendError> {
        let (deadline, ctx) = (cmd.deadline, cmd.ctx.clone());
        call(deadline, &ctx, self.driver.run_command(cmd)).await
    }

    /// The record of `name` (the `find` of inspect), within `deadline`;
    /// with its context.
    async fn read_record(
        &self,
        name: &shylock_core::LockName,
        now: Timestamp,
        deadline: Option<Instant>,
    ) -> Result<(Ctx, Result<Option<Document>, MongoError>), BackendError> {
        let cmd = lock_commands::inspect(
            &self.spec,
            &InspectRequest {
                name,
                now,
                deadline,
            },
        )?;
        let (deadline, ctx) = (cmd.deadline, cmd.ctx.clone());
        let reply = call(deadline, &ctx, self.driver.find_one(Target::Locks, cmd)).await?;
        Ok((ctx, reply))
    }

    /// A `findAndModify`, within its deadline; with its context.
    async fn find_and_modify(
        &self,
        cmd: FindAndModify,
    ) -> Result<(Ctx, Result<Option<Document>, MongoError>), BackendError> {
        let (deadline, ctx) = (cmd.deadline, cmd.ctx.clone());
        let reply = call(deadline, &ctx, self.driver.find_and_modify(cmd)).await?;
        Ok((ctx, reply))
    }
}

/// Wait for the driver call `reply` until `deadline`: a timeout error then;
/// an error of the way to the driver, said with `ctx`.
async fn call<T>(
    deadline: Instant,
    ctx: &Ctx,
    reply: impl Future<Output = Result<Result<T, MongoError>, BackendError>>,
) -> Result<Result<T, MongoError>, BackendError> {
    match tokio::time::timeout_at(deadline.into(), reply).await {
        Err(_) => Err(timeout_error(ctx)),
        Ok(Err(e)) if e.kind() == BackendErrorKind::Timeout => Err(timeout_error(ctx)),
        Ok(Err(e)) => Err(BackendError::new(e.kind(), format!("{ctx}: {e}"))),
        Ok(Ok(reply)) => Ok(reply),
    }
}

impl<D: Driver> AsyncBackend for Core<D> {
    fn try_acquire<'a>(
        &'a self,
        req: AcquireRequest<'a>,
    ) -> BoxFuture<'a, Result<AcquireOutcome, BackendError>> {
        Box::pin(async move {
            // One atomic load once checked; a `buildInfo` before the first
            // acquisition of a backend made with `new`.
            if !matches!(self.server_check.get(), Some(ServerCheck::Allowed)) {
                self.check_server(req.deadline, self.spec.request_timeout)
                    .await?
                    .into_backend_result()?;
            }
            let mut repaired = false;
            loop {
                let cmd = lock_commands::acquire(&self.spec, &req)?;
                let (ctx, reply) = self.find_and_modify(cmd).await?;
                let outcome = lock_commands::acquire_reply(&ctx, req.owner, reply)?;
                if matches!(outcome, AcquireOutcome::Acquired(_)) || repaired {
                    return Ok(outcome);
                }
                // Not granted: read the record, to name one this library
                // did not write, or repair a far-future expiry and try once
                // more (README: Records this library did not write).
                let read = lock_commands::inspect(
                    &self.spec,
                    &InspectRequest {
                        name: req.name,
                        now: req.now,
                        deadline: req.deadline,
                    },
                )?;
                let (deadline, read_ctx) = (read.deadline, read.ctx.clone());
                let record = call(
                    deadline,
                    &read_ctx,
                    self.driver.find_one(Target::Locks, read),
                )
                .await?;
                match lock_commands::busy(&self.spec, &req, &ctx, record)? {
                    lock_commands::Busy::Answer(outcome) => return Ok(outcome),
                    lock_commands::Busy::Repair(cmd) => {
                        let (repair_ctx, reply) = self.find_and_modify(*cmd).await?;
                        reply.map_err(|e| map_error(&repair_ctx, e))?;
                        repaired = true;
                    }
                }
            }
        })
    }

    fn renew<'a>(
        &'a self,
        req: RenewRequest<'a>,
    ) -> BoxFuture<'a, Result<RenewOutcome, BackendError>> {
        Box::pin(async move {
            let cmd = lock_commands::renew(&self.spec, &req)?;
            let (ctx, reply) = self.find_and_modify(cmd).await?;
            let outcome = lock_commands::renew_reply(&ctx, reply)?;
            if outcome != RenewOutcome::Lost {
                return Ok(outcome);
            }
            // The rare loss: one read, to tell a forced release (README:
            // Forced release). A failed read leaves it Lost.
            match self.read_record(req.name, req.now, req.deadline).await {
                Ok((_, Ok(Some(record)))) if lock_commands::forced_owner_is(&record, req.owner) => {
                    Ok(RenewOutcome::Forced)
                }
                _ => Ok(RenewOutcome::Lost),
            }
        })
    }

    fn release<'a>(
        &'a self,
        req: ReleaseRequest<'a>,
    ) -> BoxFuture<'a, Result<ReleaseOutcome, BackendError>> {
        Box::pin(async move {
            let cmd = lock_commands::release(&self.spec, &req)?;
            let (ctx, reply) = self.find_and_modify(cmd).await?;
            lock_commands::release_reply(&ctx, reply)
        })
    }

    fn hand_over<'a>(
        &'a self,
        req: HandOverRequest<'a>,
    ) -> BoxFuture<'a, Result<HandOverOutcome, BackendError>> {
        Box::pin(async move {
            let cmd = lock_commands::hand_over(&self.spec, &req)?;
            let (ctx, reply) = self.find_and_modify(cmd).await?;
            lock_commands::hand_over_reply(&ctx, req.to, reply)
        })
    }

    fn supports_hand_over(&self) -> bool {
        true
    }

    fn inspect<'a>(
        &'a self,
        req: InspectRequest<'a>,
    ) -> BoxFuture<'a, Result<Option<LockRecord>, BackendError>> {
        Box::pin(async move {
            let cmd = lock_commands::inspect(&self.spec, &req)?;
            let (deadline, ctx) = (cmd.deadline, cmd.ctx.clone());
            let reply = call(deadline, &ctx, self.driver.find_one(Target::Locks, cmd)).await?;
            lock_commands::inspect_reply(&ctx, req.now, reply)
        })
    }

    fn list<'a>(&'a self, req: ListRequest<'a>) -> BoxFuture<'a, Result<ListPage, BackendError>> {
        Box::pin(async move {
            let cmd = lock_commands::list(&self.spec, &req)?;
            let (deadline, ctx) = (cmd.deadline, cmd.ctx.clone());
            let reply = call(deadline, &ctx, self.driver.find_many(cmd)).await?;
            lock_commands::list_reply(&ctx, &req, reply)
        })
    }

    fn force_release<'a>(
        &'a self,
        req: ForceReleaseRequest<'a>,
    ) -> BoxFuture<'a, Result<ForceReleaseOutcome, BackendError>> {
        Box::pin(async move {
            // Read the holding, then free it if it is still that holding
            // (README: Forced release); a holding that changed in between
            // is read again.
            for _ in 0..FORCE_ATTEMPTS {
                let (ctx, reply) = self.read_record(req.name, req.now, req.deadline).await?;
                let Some(held) = lock_commands::held(&ctx, req.now, reply)? else {
                    return Ok(ForceReleaseOutcome::NotHeld);
                };
                let cmd = lock_commands::force_release(&self.spec, &req, &held)?;
                let (ctx, reply) = self.find_and_modify(cmd).await?;
                if reply.map_err(|e| map_error(&ctx, e))?.is_some() {
                    return Ok(ForceReleaseOutcome::Released {
                        owner: held.owner,
                        token: held.token,
                    });
                }
            }
            Ok(ForceReleaseOutcome::NotHeld)
        })
    }

    fn audit<'a>(
        &'a self,
        req: AuditRequest<'a>,
    ) -> BoxFuture<'a, Result<Option<ForcedRelease>, BackendError>> {
        Box::pin(async move {
            let now = Timestamp::local_now();
            let (ctx, reply) = self.read_record(req.name, now, req.deadline).await?;
            lock_commands::audit_reply(&ctx, reply)
        })
    }

    fn server_time(
        &self,
        deadline: Option<Instant>,
    ) -> BoxFuture<'_, Result<Timestamp, BackendError>> {
        Box::pin(async move {
            let hello = self.hello(deadline, self.spec.request_timeout).await?;
            let ctx = self.spec.context("server time", None);
            setup::server_time_reply(&ctx, Ok(hello))
        })
    }

    fn clock(&self) -> ClockSource {
        ClockSource::Estimated
    }

    fn describe(&self) -> String {
        self.spec.describe()
    }
}

/// The accessors both forms' backend types have (`self.core` is their
/// [`Core`]): the names of the database and the collection.
macro_rules! names_of_the_collection {
    () => {
        /// The database's name.
        pub fn database(&self) -> &str {
            &self.core.spec().db
        }

        /// The collection's name.
        pub fn collection(&self) -> &str {
            &self.core.spec().collection
        }
    };
}
pub(crate) use names_of_the_collection;
