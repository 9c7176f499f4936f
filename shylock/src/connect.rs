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
    /// these options: for example `wait_for_sync`, or an `http_client` that
    /// trusts your own certificate authority (`reqwest::Client::builder()
    /// .add_root_certificate(…)`). Ignored by the other backends.
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
mod mongo {
    use shylock_core::{BackendError, BackendErrorKind};
    use shylock_mongo::MongoOptions;
    use shylock_mongo::mongodb::error::{Error as MongoError, ErrorKind};
    use shylock_mongo::mongodb::options::{ClientOptions, Credential};

    use super::{ConnectError, Settings};
    #[allow(unused_imports)]
    use super::{Connection, RawBackend};
    #[allow(unused_imports)]
    use crate::url::BackendKind;

    /// A driver error as a backend error, one line, without the raw reply.
    fn driver_error(what: &str, e: &MongoError) -> ConnectError {
        let kind = match &*e.kind {
            ErrorKind::Authentication { .. } => BackendErrorKind::Unauthorized,
            ErrorKind::InvalidArgument { .. } | ErrorKind::InvalidTlsConfig { .. } => {
                BackendErrorKind::InvalidConfig
            }
            ErrorKind::Command(c) if c.code == 13 || c.code == 18 => BackendErrorKind::Unauthorized,
            _ => BackendErrorKind::Unavailable,
        };
        let said = e.kind.to_string();
        let said = said.split_whitespace().collect::<Vec<_>>().join(" ");
        ConnectError::Backend(BackendError::new(kind, format!("MongoDB: {what}: {said}")).into())
    }

    /// The client options: the connection string's, then the settings,
    /// then the caller's hook.
    fn client_options(s: &Settings, mut o: ClientOptions) -> Result<ClientOptions, ConnectError> {
        if let Some(timeout) = s.connect_timeout {
            o.server_selection_timeout = Some(timeout);
            o.connect_timeout = Some(timeout);
        }
        if let Some(user) = &s.user {
            o.credential
                .get_or_insert_with(Credential::default)
                .username = Some(user.clone());
        }
        if let Some(password) = &s.password {
            match o.credential.as_mut() {
                Some(c) if c.username.is_some() => c.password = Some(password.clone()),
                _ => {
                    return Err(ConnectError::BadOptions {
                        backend: "MongoDB",
                        reason: "a password needs a user name in the connection string (mongodb://USER@host/)".into(),
                    });
                }
            }
        }
        if let Some(hook) = &s.mongo_client {
            hook(&mut o);
        }
        Ok(o)
    }

    fn backend_options(s: &Settings) -> MongoOptions {
        let mut o = MongoOptions::new().allow_non_atomic_server(s.allow_non_atomic_server);
        if let Some(c) = &s.collection {
            o = o.collection(c.clone());
        }
        if let Some(g) = s.ttl_grace {
            o = o.ttl_grace(g);
        }
        if let Some(t) = s.connect_timeout {
            o = o.setup_timeout(t.max(std::time::Duration::from_millis(1)));
        }
        if let Some(t) = s.request_timeout {
            o = o.request_timeout(t);
        }
        o
    }

    fn database(s: &Settings, o: &ClientOptions) -> String {
        s.database
            .clone()
            .or_else(|| o.default_database.clone())
            .unwrap_or_else(|| "shylock".to_owned())
    }

    #[cfg(feature = "mongo-async")]
    pub(super) async fn connect_async(s: &Settings) -> Result<Connection, ConnectError> {
        use shylock_mongo::MongoBackend;
        use shylock_mongo::mongodb::{Client, bson::doc};
        let parsed = ClientOptions::parse(s.url.driver_url())
            .await
            .map_err(|e| driver_error("bad connection string", &e))?;
        let options = client_options(s, parsed)?;
        let db = database(s, &options);
        let client =
            Client::with_options(options).map_err(|e| driver_error("bad client settings", &e))?;
        let backend = if s.prepare {
            MongoBackend::create_with(&client, &db, backend_options(s)).await?
        } else {
            let backend = MongoBackend::new(&client, &db, backend_options(s))?;
            client
                .database(&db)
                .run_command(doc! { "ping": 1 })
                .await
                .map_err(|e| driver_error("cannot reach the server", &e))?;
            backend
        };
        Ok(Connection::from_async(BackendKind::Mongo, backend))
    }

    #[cfg(feature = "mongo-sync")]
    pub(super) fn connect_sync(s: &Settings) -> Result<Connection, ConnectError> {
        use std::sync::Arc;

        use shylock_mongo::mongodb::{bson::doc, sync::Client};
        use shylock_mongo::sync::MongoBackend;
        let parsed = ClientOptions::parse(s.url.driver_url())
            .run()
            .map_err(|e| driver_error("bad connection string", &e))?;
        let options = client_options(s, parsed)?;
        let db = database(s, &options);
        let client =
            Client::with_options(options).map_err(|e| driver_error("bad client settings", &e))?;
        let backend = if s.prepare {
            MongoBackend::create_with(&client, &db, backend_options(s))?
        } else {
            let backend = MongoBackend::new(&client, &db, backend_options(s))?;
            client
                .database(&db)
                .run_command(doc! { "ping": 1 })
                .run()
                .map_err(|e| driver_error("cannot reach the server", &e))?;
            backend
        };
        let raw: Arc<MongoBackend> = Arc::new(backend);
        Ok(Connection {
            handle: shylock_core::Backend::from_sync_arc(raw.clone()),
            raw: RawBackend::Sync(raw),
            kind: BackendKind::Mongo,
        })
    }
}

#[cfg(any(feature = "arango-async", feature = "arango-sync"))]
mod arango {
    use shylock_arango::ArangoOptions;

    #[allow(unused_imports)]
    use super::{ConnectError, Connection, RawBackend, Settings};
    #[allow(unused_imports)]
    use crate::url::BackendKind;

    /// URL, user, password, database and options.
    fn parts(s: &Settings) -> (String, String, String, String, ArangoOptions) {
        let mut o = ArangoOptions::new();
        if let Some(c) = &s.collection {
            o = o.collection(c.clone());
        }
        if let Some(g) = s.ttl_grace {
            o = o.ttl_grace(g);
        }
        if let Some(t) = s.request_timeout.or(s.connect_timeout) {
            o = o.request_timeout(t);
        }
        if let Some(hook) = &s.arango {
            o = hook(o);
        }
        (
            s.url.driver_url().to_owned(),
            s.user.clone().unwrap_or_else(|| "root".to_owned()),
            s.password.clone().unwrap_or_default(),
            s.database.clone().unwrap_or_else(|| "_system".to_owned()),
            o,
        )
    }

    #[cfg(feature = "arango-async")]
    pub(super) async fn connect_async(s: &Settings) -> Result<Connection, ConnectError> {
        let (url, user, password, db, options) = parts(s);
        let backend =
            shylock_arango::ArangoBackend::connect_with(&url, &user, &password, &db, options)
                .await?;
        Ok(Connection::from_async(BackendKind::Arango, backend))
    }

    #[cfg(feature = "arango-sync")]
    pub(super) fn connect_sync(s: &Settings) -> Result<Connection, ConnectError> {
        let (url, user, password, db, options) = parts(s);
        let backend = shylock_arango::sync::ArangoBackend::connect_with(
            &url, &user, &password, &db, options,
        )?;
        Ok(Connection {
            handle: shylock_core::Backend::from(backend.clone()),
            raw: RawBackend::Sync(std::sync::Arc::new(backend)),
            kind: BackendKind::Arango,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn memory_round_trip_shares_locks_by_name() {
        use shylock_core::AsyncLock;
        let a = connect("memory://round-trip").await.expect("memory a");
        let b = connect("memory://round-trip").await.expect("memory b");
        let alone = connect("memory://").await.expect("memory alone");
        let guard = AsyncLock::with_backend("x", &a)
            .acquire()
            .await
            .expect("acquire");
        assert!(
            AsyncLock::with_backend("x", &b)
                .try_acquire()
                .await
                .expect("try b")
                .is_none(),
            "the same name shares the locks"
        );
        let other = AsyncLock::with_backend("x", &alone)
            .try_acquire()
            .await
            .expect("try alone");
        assert!(other.is_some(), "memory:// is a backend of its own");
        if let Some(g) = other {
            g.release().await.expect("release other");
        }
        let token = guard.token();
        guard.release().await.expect("release");
        let again = AsyncLock::with_backend("x", &b)
            .acquire()
            .await
            .expect("acquire b");
        assert!(again.token() > token);
        again.release().await.expect("release b");
    }

    #[test]
    fn memory_blocking_round_trip() {
        use shylock_core::Lock;
        let a = connect_blocking("memory://blocking-round-trip").expect("a");
        let b = connect_blocking_with(
            "memory://blocking-round-trip?shylock.collection=ignored",
            &ConnectOptions::new().driver(Driver::Sync),
        )
        .expect("b");
        let guard = Lock::with_backend("y", &a).acquire().expect("acquire");
        assert!(
            Lock::with_backend("y", &b)
                .try_acquire()
                .expect("try")
                .is_none()
        );
        guard.release().expect("release");
    }

    #[test]
    fn features_that_are_off_give_a_typed_error() {
        let check = |url: &str, driver: Driver, feature: &str| {
            let e = BackendUrl::parse(url)
                .expect("a good URL")
                .connect_blocking(&ConnectOptions::new().driver(driver))
                .expect_err("feature off");
            match &e {
                ConnectError::FeatureDisabled { feature: f, .. } => {
                    assert_eq!(*f, feature, "{e}");
                }
                other => panic!("{url}: {other:?}"),
            }
            assert!(e.to_string().contains(feature), "{e}");
        };
        if !cfg!(feature = "mongo-async") {
            check("mongodb://127.0.0.1:1/", Driver::Async, "mongo-async");
        }
        if !cfg!(feature = "mongo-sync") {
            check("mongodb://127.0.0.1:1/", Driver::Sync, "mongo-sync");
        }
        if !cfg!(any(feature = "mongo-async", feature = "mongo-sync")) {
            check(
                "mongodb://127.0.0.1:1/",
                Driver::Auto,
                "mongo-async` or `mongo-sync",
            );
        }
        if !cfg!(feature = "arango-async") {
            check("http://127.0.0.1:1", Driver::Async, "arango-async");
        }
        if !cfg!(feature = "arango-sync") {
            check("http://127.0.0.1:1", Driver::Sync, "arango-sync");
        }
        if !cfg!(any(feature = "arango-async", feature = "arango-sync")) {
            check(
                "http://127.0.0.1:1",
                Driver::Auto,
                "arango-async` or `arango-sync",
            );
        }
        // The pick itself, whatever this build has.
        let pick = |driver, prefer, have| {
            pick("X", driver, prefer, have, ("a", "s", "either")).map_err(|e| e.to_string())
        };
        assert_eq!(pick(Driver::Auto, true, (true, true)), Ok(true));
        assert_eq!(pick(Driver::Auto, false, (true, true)), Ok(false));
        assert_eq!(pick(Driver::Auto, false, (true, false)), Ok(true));
        assert_eq!(pick(Driver::Auto, true, (false, true)), Ok(false));
        assert_eq!(pick(Driver::Sync, true, (true, true)), Ok(false));
        assert!(pick(Driver::Sync, true, (true, false)).is_err_and(|e| e.contains("`s`")));
        assert!(pick(Driver::Async, true, (false, true)).is_err_and(|e| e.contains("`a`")));
        assert!(pick(Driver::Auto, true, (false, false)).is_err_and(|e| e.contains("`either`")));
    }

    #[test]
    fn url_parameters_and_options_merge() {
        let url = BackendUrl::parse(
            "http://u:pw@127.0.0.1:1/?shylock.database=d&shylock.collection=c&shylock.request_timeout_ms=250&shylock.prepare=false",
        )
        .expect("url");
        let s = Settings::new(&url, &ConnectOptions::new().collection("mine").user("v"))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.database.as_deref(), Some("d"));
        assert_eq!(s.collection.as_deref(), Some("mine"));
        assert_eq!(s.user.as_deref(), Some("v"));
        assert_eq!(s.password.as_deref(), Some("pw"));
        assert_eq!(s.request_timeout, Some(Duration::from_millis(250)));
        assert!(!s.prepare && !s.allow_non_atomic_server);
        let s = Settings::new(&url, &ConnectOptions::new().password("other"))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.password.as_deref(), Some("other"));
        assert_eq!(s.user.as_deref(), Some("u"));
    }

    /// A server that refuses the connection: the errors are typed and show
    /// no password (nothing listens on port 1 of the loopback).
    #[cfg(any(feature = "mongo-async", feature = "arango-async"))]
    #[tokio::test]
    async fn unreachable_servers_fail_without_showing_the_password() {
        let options = ConnectOptions::new().connect_timeout(Duration::from_millis(300));
        let mut urls = Vec::new();
        if cfg!(feature = "mongo-async") {
            urls.push("mongodb://user:hunter2@127.0.0.1:1/?shylock.prepare=false");
            urls.push("mongodb://user:hunter2@127.0.0.1:1/");
        }
        if cfg!(feature = "arango-async") {
            urls.push("http://root:hunter2@127.0.0.1:1");
        }
        for url in urls {
            let e = connect_with(url, &options).await.expect_err(url);
            assert!(matches!(e, ConnectError::Backend(_)), "{url}: {e:?}");
            assert!(!e.to_string().contains("hunter2"), "{e}");
            assert!(!format!("{e:?}").contains("hunter2"), "{e:?}");
            assert!(!format!("{e:#?}").contains("hunter2"), "{e:#?}");
        }
    }

    #[cfg(any(feature = "mongo-async", feature = "mongo-sync"))]
    #[test]
    fn a_mongodb_password_needs_a_user() {
        let e = connect_blocking_with(
            "mongodb://127.0.0.1:1/",
            &ConnectOptions::new().password("hunter2"),
        )
        .expect_err("no user");
        assert!(matches!(e, ConnectError::BadOptions { .. }), "{e:?}");
        assert!(!e.to_string().contains("hunter2"), "{e}");
    }
}
