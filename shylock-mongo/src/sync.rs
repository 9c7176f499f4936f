//! The sync backend over [`mongodb::sync::Client`] (as the Python original's
//! pymongo backend): the same core as the async backend,
//! over the sync driver's handles, with its blocking form from
//! [`SyncOverAsync`]. Every driver call runs on a blocking thread of
//! shylock's runtime ([`shylock_core::bridge::run_blocking`]), never on the
//! caller's thread, so every call works on a plain thread and inside any
//! tokio runtime; make the `mongodb::sync::Client` outside a runtime. How
//! deadlines are kept and what a call that times out leaves behind: the
//! crate's README (The sync form).

use std::sync::Arc;
use std::time::Instant;

use mongodb::IndexModel;
use mongodb::bson::Document;
use mongodb::error::Error as MongoError;
use mongodb::options::{CreateCollectionOptions, CreateIndexOptions, ListIndexesOptions};
use mongodb::sync::{Client, Collection, Database};
use shylock_core::backend::AsyncBackend;
use shylock_core::bridge::{self, SyncOverAsync};
use shylock_core::{BackendError, BackendErrorKind, Error};

use crate::core::{Core, Driver, Reply, Target};
use crate::options::MongoOptions;
use crate::spec::{Command, FindAndModify, FindMany, FindOne};

/// The sync MongoDB backend: lock records in one collection, reached through
/// the application's own [`mongodb::sync::Client`].
///
/// Make it with [`create`](Self::create) (collection `shylock`) or
/// [`create_with`](Self::create_with), then hand it to `shylock::configure`
/// or to a lock. Cheap to clone. How it works: the crate's README.
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
    core: Arc<Core<SyncDriver>>,
    /// The blocking form of `core`.
    sync_form: Arc<SyncOverAsync>,
}

impl std::fmt::Debug for MongoBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.core.spec().debug_as("sync::MongoBackend", f)
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
        let core = Arc::new(Core::new(db, &options, |spec| {
            let db = client.database(&spec.db);
            SyncDriver {
                coll: db.collection(&spec.collection),
                config_collections: client.database("config").collection("collections"),
                db,
            }
        })?);
        let async_form: Arc<dyn AsyncBackend> = core.clone();
        Ok(MongoBackend {
            sync_form: Arc::new(SyncOverAsync::new(async_form)),
            core,
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
        let core = Arc::clone(&self.core);
        bridge::block_on(None, async move { Ok(core.prepare().await) })?
    }

    crate::core::names_of_the_collection!();
}

shylock_core::forward_sync_backend!(MongoBackend, |backend| &*backend.sync_form);

impl From<MongoBackend> for shylock_core::Backend {
    /// A lock handle over the sync backend (for `shylock::configure` and
    /// [`Lock`](shylock_core::Lock)): locks of both forms use the core's
    /// async form on shylock's runtime; the blocking form serves callers of
    /// the raw primitives.
    fn from(backend: MongoBackend) -> Self {
        shylock_core::Backend::from_forms(backend.core.clone(), Arc::new(backend))
    }
}

/// The sync driver's handles: each call is made on a blocking thread (see
/// [`blocking`]).
struct SyncDriver {
    db: Database,
    coll: Collection<Document>,
    /// `config.collections`, read by the sharding check.
    config_collections: Collection<Document>,
}

/// A future of the blocking driver `call`: made through
/// [`bridge::run_blocking`] on a blocking thread of the runtime that polls
/// it (shylock's, for locks and for the blocking form), never on the
/// caller's thread. Not started by `deadline` (or before the future is
/// dropped), it is never started; once started it cannot be abandoned and
/// its answer is dropped.
fn blocking<T: Send + 'static>(
    deadline: Instant,
    call: impl FnOnce() -> Result<T, MongoError> + Send + 'static,
) -> Reply<'static, T> {
    let run = move || {
        if Instant::now() >= deadline {
            return Err(BackendError::new(BackendErrorKind::Timeout, "not started"));
        }
        bridge::run_blocking(Some(deadline), call)
    };
    Box::pin(async move {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return run();
        };
        let mut task = AbortOnDrop(runtime.spawn_blocking(run));
        match (&mut task.0).await {
            Ok(answer) => answer,
            Err(e) => Err(BackendError::new(
                BackendErrorKind::Other,
                "a blocking driver call ended without an answer (it panicked)",
            )
            .with_source(e)),
        }
    })
}

/// A blocking task that is aborted when this is dropped (not started yet,
/// it then never starts).
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Driver for SyncDriver {
    fn run_command(&self, cmd: Command) -> Reply<'_, Document> {
        let db = self.db.clone();
        let (command, options) = (cmd.command, cmd.options);
        blocking(cmd.deadline, move || {
            db.run_command(command).with_options(options).run()
        })
    }

    fn find_and_modify(&self, cmd: FindAndModify) -> Reply<'_, Option<Document>> {
        let coll = self.coll.clone();
        let (filter, update, options) = (cmd.filter, cmd.update, cmd.options);
        blocking(cmd.deadline, move || {
            coll.find_one_and_update(filter, update)
                .with_options(options)
                .run()
        })
    }

    fn find_one(&self, target: Target, cmd: FindOne) -> Reply<'_, Option<Document>> {
        let coll = match target {
            Target::Locks => self.coll.clone(),
            Target::ConfigCollections => self.config_collections.clone(),
        };
        let (filter, options) = (cmd.filter, cmd.options);
        blocking(cmd.deadline, move || {
            coll.find_one(filter).with_options(options).run()
        })
    }

    fn find_many(&self, cmd: FindMany) -> Reply<'_, Vec<Document>> {
        let coll = self.coll.clone();
        let (filter, options) = (cmd.filter, cmd.options);
        blocking(cmd.deadline, move || {
            coll.find(filter)
                .with_options(options)
                .run()
                .and_then(|cursor| cursor.collect::<Result<Vec<_>, _>>())
        })
    }

    fn create_collection(
        &self,
        options: CreateCollectionOptions,
        deadline: Instant,
    ) -> Reply<'_, ()> {
        let (db, name) = (self.db.clone(), self.coll.name().to_owned());
        blocking(deadline, move || {
            db.create_collection(name).with_options(options).run()
        })
    }

    fn create_index(
        &self,
        model: IndexModel,
        options: CreateIndexOptions,
        deadline: Instant,
    ) -> Reply<'_, ()> {
        let coll = self.coll.clone();
        blocking(deadline, move || {
            coll.create_index(model)
                .with_options(options)
                .run()
                .map(|_| ())
        })
    }

    fn list_indexes(
        &self,
        options: ListIndexesOptions,
        deadline: Instant,
    ) -> Reply<'_, Vec<IndexModel>> {
        let coll = self.coll.clone();
        blocking(deadline, move || {
            coll.list_indexes()
                .with_options(options)
                .run()
                .and_then(|cursor| cursor.collect::<Result<Vec<_>, _>>())
        })
    }
}
