//! The async backend over [`mongodb::Client`]: the [core](crate::core) over
//! the async driver's handles.

use std::sync::Arc;
use std::time::Instant;

use mongodb::bson::Document;
use mongodb::options::{CreateCollectionOptions, CreateIndexOptions, ListIndexesOptions};
use mongodb::{Client, Collection, Database, IndexModel};
use shylock_core::Error;

use crate::core::{Core, Driver, Reply, Target};
use crate::options::MongoOptions;
use crate::spec::{Command, FindAndModify, FindMany, FindOne};

/// The async MongoDB backend: lock records in one collection, reached
/// through the application's own [`mongodb::Client`] (as the Python
/// original's motor backend).
///
/// Make it with [`create`](Self::create) (collection `shylock`) or
/// [`create_with`](Self::create_with), then hand it to
/// `shylock::configure` or to a lock. Cheap to clone: clones share the
/// client's connection pool. How it works: the crate's README.
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
    core: Arc<Core<AsyncDriver>>,
}

impl std::fmt::Debug for MongoBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.core.spec().debug_as("MongoBackend", f)
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
        let core = Core::new(db, &options, |spec| {
            let db = client.database(&spec.db);
            AsyncDriver {
                coll: db.collection(&spec.collection),
                config_collections: client.database("config").collection("collections"),
                db,
            }
        })?;
        Ok(MongoBackend {
            core: Arc::new(core),
        })
    }

    /// Check the server and the collection, and create the collection and
    /// its TTL index if they are missing, all within
    /// [`MongoOptions::setup_timeout`]. The commands, in order, are listed
    /// in the README (Set-up and server checks). Idempotent and safe when
    /// many processes do it at once. A server that refuses TTL indexes
    /// (FerretDB) gets a `tracing` warning, not an error.
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
        self.core.prepare().await
    }

    crate::core::names_of_the_collection!();
}

shylock_core::forward_async_backend!(MongoBackend, |backend| &*backend.core);

impl From<MongoBackend> for shylock_core::Backend {
    /// A lock handle over the async backend (for `shylock::configure` and
    /// [`AsyncLock`](shylock_core::AsyncLock)).
    fn from(backend: MongoBackend) -> Self {
        shylock_core::Backend::from_async(backend)
    }
}

/// The async driver's handles: each call is the driver's own future (the
/// core stops waiting for it at its deadline, which drops it).
struct AsyncDriver {
    db: Database,
    coll: Collection<Document>,
    /// `config.collections`, read by the sharding check.
    config_collections: Collection<Document>,
}

impl Driver for AsyncDriver {
    fn run_command(&self, cmd: Command) -> Reply<'_, Document> {
        let call = self.db.run_command(cmd.command).with_options(cmd.options);
        Box::pin(async move { Ok(call.await) })
    }

    fn find_and_modify(&self, cmd: FindAndModify) -> Reply<'_, Option<Document>> {
        let call = (self.coll)
            .find_one_and_update(cmd.filter, cmd.update)
            .with_options(cmd.options);
        Box::pin(async move { Ok(call.await) })
    }

    fn find_one(&self, target: Target, cmd: FindOne) -> Reply<'_, Option<Document>> {
        let coll = match target {
            Target::Locks => &self.coll,
            Target::ConfigCollections => &self.config_collections,
        };
        let call = coll.find_one(cmd.filter).with_options(cmd.options);
        Box::pin(async move { Ok(call.await) })
    }

    fn find_many(&self, cmd: FindMany) -> Reply<'_, Vec<Document>> {
        let coll = &self.coll;
        Box::pin(async move {
            let found = async {
                let mut cursor = coll.find(cmd.filter).with_options(cmd.options).await?;
                let mut docs = Vec::new();
                while cursor.advance().await? {
                    docs.push(cursor.deserialize_current()?);
                }
                Ok(docs)
            };
            Ok(found.await)
        })
    }

    fn create_collection(
        &self,
        options: CreateCollectionOptions,
        _deadline: Instant,
    ) -> Reply<'_, ()> {
        let call = (self.db)
            .create_collection(self.coll.name())
            .with_options(options);
        Box::pin(async move { Ok(call.await) })
    }

    fn create_index(
        &self,
        model: IndexModel,
        options: CreateIndexOptions,
        _deadline: Instant,
    ) -> Reply<'_, ()> {
        let call = self.coll.create_index(model).with_options(options);
        Box::pin(async move { Ok(call.await.map(|_| ())) })
    }

    fn list_indexes(
        &self,
        options: ListIndexesOptions,
        _deadline: Instant,
    ) -> Reply<'_, Vec<IndexModel>> {
        let coll = &self.coll;
        Box::pin(async move {
            let listed = async {
                let mut cursor = coll.list_indexes().with_options(options).await?;
                let mut indexes = Vec::new();
                while cursor.advance().await? {
                    indexes.push(cursor.deserialize_current()?);
                }
                Ok(indexes)
            };
            Ok(listed.await)
        })
    }
}
