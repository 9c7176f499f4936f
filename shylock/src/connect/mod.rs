//! Connecting to the backend a URL names: [`connect`], [`connect_blocking`],
//! [`ConnectOptions`], [`Connection`].

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use shylock_core::backend::{AsyncBackend, SyncBackend};
use shylock_core::{Backend, MemoryBackend};

use crate::url::{BackendKind, BackendUrl};

/// Why a backend could not be connected.
///
/// No variant's `Display` or `Debug` shows a password.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// The URL is not a backend URL (see [`BackendUrl`]); nothing was sent.
    #[error("bad backend URL `{url}`: {reason}")]
    BadUrl {
        /// The URL, its password shown as `***`.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The [`ConnectOptions`] do not fit the backend (for example a
    /// password for MongoDB without a user name); nothing was sent.
    #[error("bad options for {backend}: {reason}")]
    BadOptions {
        /// `MongoDB`, `ArangoDB` or `memory`.
        backend: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The URL names a backend (or a driver form, see [`Driver`]) this
    /// build of shylock leaves out; nothing was sent.
    #[error("{backend} needs shylock's `{feature}` feature, which this build leaves out")]
    FeatureDisabled {
        /// `MongoDB` or `ArangoDB`.
        backend: &'static str,
        /// The Cargo feature to turn on (for example `mongo-async`, or
        /// `mongo-async` or `mongo-sync`).
        feature: &'static str,
    },
    /// The backend refused the configuration, or the server could not be
    /// reached or refused the connection: see
    /// [`Error::backend_kind`](shylock_core::Error::backend_kind) (for
    /// example [`Unauthorized`](shylock_core::BackendErrorKind::Unauthorized)
    /// or [`Unavailable`](shylock_core::BackendErrorKind::Unavailable)).
    #[error(transparent)]
    Backend(#[from] shylock_core::Error),
}

/// For `?` in functions that return [`shylock::Error`](shylock_core::Error):
/// the errors found before anything was sent become
/// [`Error::InvalidConfig`](shylock_core::Error::InvalidConfig).
impl From<ConnectError> for shylock_core::Error {
    fn from(e: ConnectError) -> Self {
        match e {
            ConnectError::Backend(e) => e,
            other => shylock_core::Error::InvalidConfig {
                reason: other.to_string(),
            },
        }
    }
}

/// Which driver form connects, where a backend has both (features
/// `mongo-async` and `mongo-sync`, or `arango-async` and `arango-sync`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Driver {
    /// The form that suits the call: [`connect`] uses the async driver if
    /// its feature is on (else the sync one), [`connect_blocking`] the sync
    /// driver if its feature is on (else the async one, on shylock's
    /// runtime).
    #[default]
    Auto,
    /// The async driver (`mongodb::Client`, the async ArangoDB backend);
    /// [`ConnectError::FeatureDisabled`] without `mongo-async` /
    /// `arango-async`.
    Async,
    /// The sync driver (`mongodb::sync::Client`, the sync ArangoDB backend);
    /// [`ConnectError::FeatureDisabled`] without `mongo-sync` /
    /// `arango-sync`.
    Sync,
}

/// A hook that adjusts the MongoDB driver's client options.
#[cfg(any(feature = "mongo-async", feature = "mongo-sync"))]
type MongoHook = Arc<dyn Fn(&mut shylock_mongo::mongodb::options::ClientOptions) + Send + Sync>;

/// A hook that adjusts the ArangoDB backend's options.
#[cfg(any(feature = "arango-async", feature = "arango-sync"))]
type ArangoHook =
    Arc<dyn Fn(shylock_arango::ArangoOptions) -> shylock_arango::ArangoOptions + Send + Sync>;

/// Settings for [`connect_with`] beyond the URL. Each one set here wins over
/// the URL's `shylock.` parameter of the same name (see [`BackendUrl`]);
/// settings a backend has no use for are ignored by it.
///
/// ```
/// use std::time::Duration;
/// use shylock::ConnectOptions;
/// let options = ConnectOptions::new()
///     .database("app")
///     .collection("locks")
///     .user("locker")
///     .password("s3cret")
///     .connect_timeout(Duration::from_secs(5));
/// assert!(!format!("{options:?}").contains("s3cret"));
/// ```
#[derive(Clone, Default)]
pub struct ConnectOptions {
    database: Option<String>,
    collection: Option<String>,
    user: Option<String>,
    password: Option<String>,
    ttl_grace: Option<Duration>,
    connect_timeout: Option<Duration>,
    request_timeout: Option<Duration>,
    allow_non_atomic_server: Option<bool>,
    prepare: Option<bool>,
    driver: Driver,
    #[cfg(any(feature = "mongo-async", feature = "mongo-sync"))]
    mongo_client: Option<MongoHook>,
    #[cfg(any(feature = "arango-async", feature = "arango-sync"))]
    arango: Option<ArangoHook>,
}

/// Never the password, nor the hooks.
impl fmt::Debug for ConnectOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("ConnectOptions");
        d.field("database", &self.database)
            .field("collection", &self.collection)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("ttl_grace", &self.ttl_grace)
            .field("connect_timeout", &self.connect_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("allow_non_atomic_server", &self.allow_non_atomic_server)
            .field("prepare", &self.prepare)
            .field("driver", &self.driver);
        #[cfg(any(feature = "mongo-async", feature = "mongo-sync"))]
        d.field(
            "mongo_client_options",
            &self.mongo_client.as_ref().map(|_| "<given>"),
        );
        #[cfg(any(feature = "arango-async", feature = "arango-sync"))]
        d.field("arango_options", &self.arango.as_ref().map(|_| "<given>"));
        d.finish()
    }
}

impl ConnectOptions {
    /// Nothing set: the URL's parameters and the backends' defaults.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// The database (`shylock.database`). MongoDB: default the connection
    /// string's default database, else `shylock`; ArangoDB: default
    /// `_system`.
    #[must_use]
    pub fn database(mut self, name: impl Into<String>) -> Self {
        self.database = Some(name.into());
        self
    }

    /// The collection of lock records (`shylock.collection`; default
    /// `shylock`).
    #[must_use]
    pub fn collection(mut self, name: impl Into<String>) -> Self {
        self.collection = Some(name.into());
        self
    }

    /// The user name (`shylock.user`; wins over the URL's). ArangoDB:
    /// default `root`. MongoDB: replaces the connection string's.
    #[must_use]
    pub fn user(mut self, user: impl Into<String>) -> Self {
        self.user = Some(user.into());
        self
    }

    /// The password (wins over the URL's; never shown). ArangoDB: default
    /// empty. MongoDB: needs a user name (in the connection string or from
    /// [`user`](Self::user)).
    #[must_use]
    pub fn password(mut self, password: impl Into<String>) -> Self {
        self.password = Some(password.into());
        self
    }

    /// How long a released or expired lock record is kept before the
    /// server may delete it (`shylock.ttl_grace_ms`; MongoDB's
    /// `MongoOptions::ttl_grace`, ArangoDB's `ArangoOptions::ttl_grace`).
    #[must_use]
    pub fn ttl_grace(mut self, grace: Duration) -> Self {
        self.ttl_grace = Some(grace);
        self
    }

    /// How long connecting may take (`shylock.connect_timeout_ms`).
    /// MongoDB: the driver's server selection and connection time-outs and
    /// the set-up deadline (`MongoOptions::setup_timeout`). ArangoDB, which
    /// has a single limit: its request time limit, unless
    /// [`request_timeout`](Self::request_timeout) is set.
    #[must_use]
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = Some(timeout);
        self
    }

    /// How long each request of the locks may take
    /// (`shylock.request_timeout_ms`; `MongoOptions::request_timeout`,
    /// `ArangoOptions::request_timeout`).
    #[must_use]
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = Some(timeout);
        self
    }

    /// TESTS ONLY (`shylock.allow_non_atomic_server`): accept a
    /// MongoDB-compatible server that can grant a lock twice across
    /// connections (FerretDB v1); see `MongoOptions::allow_non_atomic_server`.
    /// Ignored by the other backends.
    #[must_use]
    pub fn allow_non_atomic_server(mut self, allow: bool) -> Self {
        self.allow_non_atomic_server = Some(allow);
        self
    }

    /// Whether to prepare the collection (`shylock.prepare`; default
    /// `true`). MongoDB: `true` creates the collection and its TTL index and
    /// checks the server (`MongoBackend::create_with`); `false` only checks
    /// that the server answers (a `ping`), for a collection an administrator
    /// prepared (`MongoBackend::new`). ArangoDB always prepares.
    #[must_use]
    pub fn prepare(mut self, prepare: bool) -> Self {
        self.prepare = Some(prepare);
        self
    }

    /// Which driver form connects; see [`Driver`].
    #[must_use]
    pub fn driver(mut self, driver: Driver) -> Self {
        self.driver = driver;
        self
    }

    /// MongoDB: adjust the driver's client options after they were parsed
    /// from the connection string and set from these options (app name,
    /// pool size, heartbeat, command monitoring, …). Ignored by the other
    /// backends.
    #[cfg(any(feature = "mongo-async", feature = "mongo-sync"))]
    #[cfg_attr(docsrs, doc(cfg(any(feature = "mongo-async", feature = "mongo-sync"))))]
    #[must_use]
    pub fn mongo_client_options(
        mut self,
        hook: impl Fn(&mut shylock_mongo::mongodb::options::ClientOptions) + Send + Sync + 'static,
    ) -> Self {
        self.mongo_client = Some(Arc::new(hook));
        self
    }

    /// ArangoDB: adjust the backend's options after they were set from
    /// these options: for example `wait_for_sync`, or `ca_certificate(pem)`
    /// to trust your own certificate authority. Ignored by the other
    /// backends.
    ///
    /// ```
    /// use shylock::ConnectOptions;
    /// let options = ConnectOptions::new().arango_options(|o| o.wait_for_sync(true));
    /// ```
    #[cfg(any(feature = "arango-async", feature = "arango-sync"))]
    #[cfg_attr(
        docsrs,
        doc(cfg(any(feature = "arango-async", feature = "arango-sync")))
    )]
    #[must_use]
    pub fn arango_options(
        mut self,
        hook: impl Fn(shylock_arango::ArangoOptions) -> shylock_arango::ArangoOptions
        + Send
        + Sync
        + 'static,
    ) -> Self {
        self.arango = Some(Arc::new(hook));
        self
    }
}

/// The settings of one connect: the options over the URL's parameters.
#[derive(Clone)]
#[cfg_attr(
    not(any(feature = "mongo-async", feature = "mongo-sync")),
    allow(dead_code)
)]
struct Settings {
    url: BackendUrl,
    database: Option<String>,
    collection: Option<String>,
    user: Option<String>,
    password: Option<String>,
    ttl_grace: Option<Duration>,
    connect_timeout: Option<Duration>,
    request_timeout: Option<Duration>,
    allow_non_atomic_server: bool,
    prepare: bool,
    #[cfg(any(feature = "mongo-async", feature = "mongo-sync"))]
    mongo_client: Option<MongoHook>,
    #[cfg(any(feature = "arango-async", feature = "arango-sync"))]
    arango: Option<ArangoHook>,
}

impl Settings {
    fn new(url: &BackendUrl, o: &ConnectOptions) -> Result<Settings, ConnectError> {
        let text = |name: &str| url.param(name).map(str::to_owned);
        Ok(Settings {
            url: url.clone(),
            database: o.database.clone().or_else(|| text("database")),
            collection: o.collection.clone().or_else(|| text("collection")),
            user: o
                .user
                .clone()
                .or_else(|| text("user"))
                .or_else(|| url.user().map(str::to_owned)),
            password: o
                .password
                .clone()
                .or_else(|| url.password().map(str::to_owned)),
            ttl_grace: o.ttl_grace.or(url.duration_param("ttl_grace_ms")?),
            connect_timeout: o
                .connect_timeout
                .or(url.duration_param("connect_timeout_ms")?),
            request_timeout: o
                .request_timeout
                .or(url.duration_param("request_timeout_ms")?),
            allow_non_atomic_server: o
                .allow_non_atomic_server
                .or(url.bool_param("allow_non_atomic_server")?)
                .unwrap_or(false),
            prepare: o.prepare.or(url.bool_param("prepare")?).unwrap_or(true),
            #[cfg(any(feature = "mongo-async", feature = "mongo-sync"))]
            mongo_client: o.mongo_client.clone(),
            #[cfg(any(feature = "arango-async", feature = "arango-sync"))]
            arango: o.arango.clone(),
        })
    }
}

/// A backend's primitives as the driver form made them, for wrapping them
/// (to count or delay calls, say) before making a [`Backend`] handle with
/// [`Backend::from_async_arc`] or [`Backend::from_sync_arc`].
#[derive(Clone)]
#[non_exhaustive]
pub enum RawBackend {
    /// Made by an async driver (and the in-memory backend's async form).
    Async(Arc<dyn AsyncBackend>),
    /// Made by a sync driver.
    Sync(Arc<dyn SyncBackend>),
}

impl fmt::Debug for RawBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RawBackend::Async(b) => f.debug_tuple("Async").field(&b.describe()).finish(),
            RawBackend::Sync(b) => f.debug_tuple("Sync").field(&b.describe()).finish(),
        }
    }
}

/// A connected backend: its [`Backend`] handle for locks, and its
/// [`RawBackend`] primitives.
#[derive(Clone, Debug)]
pub struct Connection {
    handle: Backend,
    raw: RawBackend,
    kind: BackendKind,
}

impl Connection {
    /// The handle for locks, made as the backend's crate makes it (`From`).
    pub fn backend(&self) -> &Backend {
        &self.handle
    }

    /// The handle for locks.
    pub fn into_backend(self) -> Backend {
        self.handle
    }

    /// The primitives, for wrapping; the same instance the handle uses.
    pub fn raw(&self) -> &RawBackend {
        &self.raw
    }

    /// The backend connected.
    pub fn kind(&self) -> BackendKind {
        self.kind
    }

    #[cfg(any(feature = "mongo-async", feature = "arango-async"))]
    fn from_async<B: AsyncBackend>(kind: BackendKind, backend: B) -> Connection {
        let raw: Arc<dyn AsyncBackend> = Arc::new(backend);
        Connection {
            handle: Backend::from_async_arc(Arc::clone(&raw)),
            raw: RawBackend::Async(raw),
            kind,
        }
    }
}

/// Connect to the backend `url` names (see [`BackendUrl`] for the URL forms
/// and parameters), with the driver's async form where there is one (see
/// [`Driver::Auto`]), and return its handle for locks.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), shylock::Error> {
/// use shylock::AsyncLock;
/// let backend = shylock::connect("memory://docs-connect").await?;
/// // Another connect to the same name shares the locks.
/// let other = shylock::connect("memory://docs-connect").await?;
/// let guard = AsyncLock::with_backend("job", &backend).acquire().await?;
/// assert!(AsyncLock::with_backend("job", &other).try_acquire().await?.is_none());
/// guard.release().await?;
/// # Ok(())
/// # }
/// ```
///
/// With a server (`no_run`):
///
/// ```no_run
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), shylock::Error> {
/// shylock::configure(shylock::connect("mongodb://127.0.0.1:27017/app").await?);
/// # Ok(())
/// # }
/// ```
///
/// # Errors
/// See [`ConnectError`].
pub async fn connect(url: &str) -> Result<Backend, ConnectError> {
    connect_with(url, &ConnectOptions::new()).await
}

/// [`connect`] with options.
///
/// ```no_run
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), shylock::Error> {
/// use shylock::ConnectOptions;
/// let backend = shylock::connect_with(
///     "http://127.0.0.1:8529",
///     &ConnectOptions::new().user("root").password("secret").database("app"),
/// )
/// .await?;
/// # Ok(())
/// # }
/// ```
///
/// # Errors
/// See [`ConnectError`].
pub async fn connect_with(url: &str, options: &ConnectOptions) -> Result<Backend, ConnectError> {
    Ok(BackendUrl::parse(url)?
        .connect(options)
        .await?
        .into_backend())
}

/// The blocking counterpart of [`connect`]: with the driver's sync form
/// where there is one (see [`Driver::Auto`]). Not on shylock's runtime
/// thread; in async code, use [`connect`].
///
/// ```
/// use shylock::Lock;
/// let backend = shylock::connect_blocking("memory://docs-blocking")?;
/// let guard = Lock::with_backend("job", &backend).acquire()?;
/// guard.release()?;
/// # Ok::<(), shylock::Error>(())
/// ```
///
/// # Errors
/// See [`ConnectError`].
pub fn connect_blocking(url: &str) -> Result<Backend, ConnectError> {
    connect_blocking_with(url, &ConnectOptions::new())
}

/// [`connect_blocking`] with options.
///
/// # Errors
/// See [`ConnectError`].
pub fn connect_blocking_with(url: &str, options: &ConnectOptions) -> Result<Backend, ConnectError> {
    Ok(BackendUrl::parse(url)?
        .connect_blocking(options)?
        .into_backend())
}

/// The `memory://NAME` backends, by name.
static MEMORY: Mutex<BTreeMap<String, MemoryBackend>> = Mutex::new(BTreeMap::new());

fn memory(url: &BackendUrl) -> Connection {
    let name = url.memory_name();
    let backend = if name.is_empty() {
        MemoryBackend::new()
    } else {
        MEMORY
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(name.to_owned())
            .or_default()
            .clone()
    };
    Connection {
        handle: Backend::from(backend.clone()),
        raw: RawBackend::Async(Arc::new(backend)),
        kind: BackendKind::Memory,
    }
}

/// The driver form to use: `true` for async.
fn pick(
    backend: &'static str,
    driver: Driver,
    prefer_async: bool,
    (has_async, has_sync): (bool, bool),
    (async_feature, sync_feature, either): (&'static str, &'static str, &'static str),
) -> Result<bool, ConnectError> {
    let off = |feature| ConnectError::FeatureDisabled { backend, feature };
    match driver {
        Driver::Async if has_async => Ok(true),
        Driver::Async => Err(off(async_feature)),
        Driver::Sync if has_sync => Ok(false),
        Driver::Sync => Err(off(sync_feature)),
        Driver::Auto => match (has_async, has_sync) {
            (false, false) => Err(off(either)),
            (true, false) => Ok(true),
            (false, true) => Ok(false),
            (true, true) => Ok(prefer_async),
        },
    }
}

fn pick_for(kind: BackendKind, driver: Driver, prefer_async: bool) -> Result<bool, ConnectError> {
    match kind {
        BackendKind::Mongo => pick(
            kind.name(),
            driver,
            prefer_async,
            (cfg!(feature = "mongo-async"), cfg!(feature = "mongo-sync")),
            ("mongo-async", "mongo-sync", "mongo-async` or `mongo-sync"),
        ),
        BackendKind::Arango => pick(
            kind.name(),
            driver,
            prefer_async,
            (
                cfg!(feature = "arango-async"),
                cfg!(feature = "arango-sync"),
            ),
            (
                "arango-async",
                "arango-sync",
                "arango-async` or `arango-sync",
            ),
        ),
        BackendKind::Memory => Ok(prefer_async),
    }
}

impl BackendUrl {
    /// Connect (see [`connect`]), returning the handle and the primitives.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), shylock::ConnectError> {
    /// use shylock::{BackendKind, BackendUrl, ConnectOptions};
    /// let url: BackendUrl = "memory://docs-open".parse()?;
    /// let connection = url.connect(&ConnectOptions::new()).await?;
    /// assert_eq!(connection.kind(), BackendKind::Memory);
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// See [`ConnectError`].
    pub async fn connect(&self, options: &ConnectOptions) -> Result<Connection, ConnectError> {
        let use_async = pick_for(self.kind(), options.driver, true)?;
        if self.kind() == BackendKind::Memory {
            return Ok(memory(self));
        }
        let settings = Settings::new(self, options)?;
        if use_async {
            connect_async(settings).await
        } else {
            off_thread(move || connect_sync(settings)).await
        }
    }

    /// Connect without async (see [`connect_blocking`]), returning the
    /// handle and the primitives.
    ///
    /// # Errors
    /// See [`ConnectError`].
    pub fn connect_blocking(&self, options: &ConnectOptions) -> Result<Connection, ConnectError> {
        let use_async = pick_for(self.kind(), options.driver, false)?;
        if self.kind() == BackendKind::Memory {
            return Ok(memory(self));
        }
        let settings = Settings::new(self, options)?;
        if use_async {
            shylock_core::bridge::block_on(None, async move { Ok(connect_async(settings).await) })
                .map_err(|e| ConnectError::Backend(e.into()))?
        } else {
            connect_sync(settings)
        }
    }
}

/// Run a blocking connect on a thread of its own and wait for it without
/// blocking (any runtime).
async fn off_thread<F>(f: F) -> Result<Connection, ConnectError>
where
    F: FnOnce() -> Result<Connection, ConnectError> + Send + 'static,
{
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("shylock-connect".into())
        .spawn(move || {
            let _ = tx.send(f());
        })
        .map_err(|e| runtime_error(&format!("cannot start a thread to connect: {e}")))?;
    rx.await
        .unwrap_or_else(|_| Err(runtime_error("the connecting thread panicked")))
}

fn runtime_error(reason: &str) -> ConnectError {
    ConnectError::Backend(shylock_core::Error::Runtime {
        reason: reason.to_owned(),
    })
}

/// Connect with the async driver (whose feature [`pick_for`] checked).
async fn connect_async(s: Settings) -> Result<Connection, ConnectError> {
    match s.url.kind() {
        #[cfg(feature = "mongo-async")]
        BackendKind::Mongo => mongo::connect_async(&s).await,
        #[cfg(feature = "arango-async")]
        BackendKind::Arango => arango::connect_async(&s).await,
        kind => Err(unreachable_form(kind)),
    }
}

/// Connect with the sync driver (whose feature [`pick_for`] checked).
fn connect_sync(s: Settings) -> Result<Connection, ConnectError> {
    match s.url.kind() {
        #[cfg(feature = "mongo-sync")]
        BackendKind::Mongo => mongo::connect_sync(&s),
        #[cfg(feature = "arango-sync")]
        BackendKind::Arango => arango::connect_sync(&s),
        kind => Err(unreachable_form(kind)),
    }
}

/// A form [`pick_for`] would have refused.
fn unreachable_form(kind: BackendKind) -> ConnectError {
    ConnectError::FeatureDisabled {
        backend: kind.name(),
        feature: match kind {
            BackendKind::Mongo => "mongo-async` or `mongo-sync",
            _ => "arango-async` or `arango-sync",
        },
    }
}

#[cfg(any(feature = "mongo-async", feature = "mongo-sync"))]
mod mongo;

#[cfg(any(feature = "arango-async", feature = "arango-sync"))]
mod arango;

#[cfg(test)]
mod tests;
