//! [`ArangoOptions`]: the settings of a backend.

use std::fmt;
use std::time::Duration;

/// The collection name used when none is given (as in the Python original).
pub const DEFAULT_COLLECTION: &str = "shylock";

/// The default [`ArangoOptions::ttl_grace`]: one hour.
pub const DEFAULT_TTL_GRACE: Duration = Duration::from_secs(3600);

/// The smallest [`ArangoOptions::ttl_grace`] accepted, and the smallest
/// `expireAfter` of an existing TTL index that the backend adopts: one
/// minute. Fencing tokens keep rising across the deletion of a record only
/// if the server clock never steps back by more than the grace.
pub const MIN_TTL_GRACE: Duration = Duration::from_secs(60);

/// The default [`ArangoOptions::request_timeout`]: 10 seconds.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The default [`ArangoOptions::lock_timeout`]: 5 seconds.
pub const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(5);

/// The largest [`ArangoOptions::lock_timeout`] accepted: half of
/// [`MIN_TTL_GRACE`], so that the TTL grace always exceeds the lock wait
/// by at least as much (see the crate docs on fencing tokens).
pub const MAX_LOCK_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a lock query is assumed to run once it has its collection's
/// lock (reading, writing and syncing one small document): with
/// [`ArangoOptions::lock_timeout`], the longest an unanswered acquire can
/// still commit after it was sent, and so how long after an acquisition
/// given up with an unknown outcome its clean-up release is repeated.
pub const QUERY_RUN_ALLOWANCE: Duration = Duration::from_secs(5);

/// A user name and password, never shown by `Debug`.
#[derive(Clone)]
pub(crate) struct Credentials {
    pub user: String,
    pub password: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// Settings of an ArangoDB backend: build with [`ArangoOptions::new`] (or
/// `default()`) and the setters, read with the `get_*` getters.
///
/// ```
/// use std::time::Duration;
/// use shylock_arango::ArangoOptions;
///
/// let options = ArangoOptions::new()
///     .collection("locks")
///     .ttl_grace(Duration::from_secs(2 * 3600))
///     .request_timeout(Duration::from_secs(5));
/// assert_eq!(options.get_collection(), "locks");
/// assert!(options.get_wait_for_sync());
/// ```
#[derive(Clone)]
pub struct ArangoOptions {
    collection: String,
    ttl_grace: Duration,
    request_timeout: Duration,
    lock_timeout: Duration,
    wait_for_sync: bool,
    credentials: Option<Credentials>,
    http_client: Option<reqwest::Client>,
    ca_certificates: Vec<Vec<u8>>,
}

impl fmt::Debug for ArangoOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // By hand: never the password, nor a client's default headers.
        f.debug_struct("ArangoOptions")
            .field("collection", &self.collection)
            .field("ttl_grace", &self.ttl_grace)
            .field("request_timeout", &self.request_timeout)
            .field("lock_timeout", &self.lock_timeout)
            .field("wait_for_sync", &self.wait_for_sync)
            .field("credentials", &self.credentials)
            .field("http_client", &self.http_client.as_ref().map(|_| "<given>"))
            .field("ca_certificates", &self.ca_certificates.len())
            .finish()
    }
}

impl Default for ArangoOptions {
    fn default() -> Self {
        ArangoOptions {
            collection: DEFAULT_COLLECTION.to_owned(),
            ttl_grace: DEFAULT_TTL_GRACE,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            lock_timeout: DEFAULT_LOCK_TIMEOUT,
            wait_for_sync: true,
            credentials: None,
            http_client: None,
            ca_certificates: Vec::new(),
        }
    }
}

impl ArangoOptions {
    /// The defaults: collection [`DEFAULT_COLLECTION`], TTL grace
    /// [`DEFAULT_TTL_GRACE`], request timeout [`DEFAULT_REQUEST_TIMEOUT`],
    /// writes synced to disk.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Set the collection holding the lock records (default `shylock`). It
    /// must follow ArangoDB's traditional naming rules: 1 to 256 bytes, a
    /// letter first, then letters, digits, `_` or `-`; refused before any
    /// request otherwise.
    #[must_use]
    pub fn collection(mut self, collection: impl Into<String>) -> Self {
        self.collection = collection.into();
        self
    }

    /// Set how long after a record's lease ended the TTL index may delete it
    /// (the index's `expireAfter`; default one hour, at least
    /// [`MIN_TTL_GRACE`]). The fencing tokens of a name keep rising across
    /// such deletions as long as the server clock never steps back by more
    /// than this.
    #[must_use]
    pub fn ttl_grace(mut self, grace: Duration) -> Self {
        self.ttl_grace = grace;
        self
    }

    /// Set the time limit of a request made without a caller's deadline, and
    /// of each set-up request (default 10 s).
    #[must_use]
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Set how long the server may wait for the collection's exclusive lock
    /// before a lock query gives up with error 18, "lock timeout" (a
    /// transient `Unavailable`; default [`DEFAULT_LOCK_TIMEOUT`], 5 s, at
    /// most [`MAX_LOCK_TIMEOUT`], 30 s). Sent with every lock query as the
    /// cursor option `lockTimeout` (without it the server waits up to
    /// 900 s).
    ///
    /// The server reads `DATE_NOW()` while it plans a query, before it
    /// waits for the lock, so a query's `now` can be older than its write
    /// by this much: this bounds how much a grant's server-side lease is
    /// shortened, how much of the TTL grace the fencing-token argument
    /// loses, and (with [`QUERY_RUN_ALLOWANCE`]) how late an unanswered
    /// acquire can still be granted.
    #[must_use]
    pub fn lock_timeout(mut self, timeout: Duration) -> Self {
        self.lock_timeout = timeout;
        self
    }

    /// Whether lock writes wait until they are on disk (`waitForSync: true`
    /// on the AQL modification; default `true`).
    ///
    /// Turned off, acquire, renew and release answer before their write is
    /// synced (RocksDB syncs its write-ahead log every 100 ms by default). A
    /// server crash (power loss, kill -9 of the server, not of a client) can
    /// then roll back a grant or renewal that its holder already has, and
    /// the next acquire hands the lock to another owner while the first
    /// still believes it holds it, possibly with the same fencing token.
    /// Only turn it off when the lock protects nothing that a crash of the
    /// database must not break.
    #[must_use]
    pub fn wait_for_sync(mut self, wait: bool) -> Self {
        self.wait_for_sync = wait;
        self
    }

    /// Credentials to log in with again (`POST /_open/auth`, a new JWT)
    /// when the server refuses the backend's authorization with HTTP 401, as
    /// it does once the JWT of a handle made by arangors' `establish_jwt`
    /// has expired (after `--server.session-timeout`, one hour by default).
    ///
    /// Without them, a backend made from a JWT handle fails with
    /// `Unauthorized` once the token expires. `connect`/`connect_with` set
    /// them from their arguments. The password is never shown by `Debug`.
    #[must_use]
    pub fn credentials(mut self, user: impl Into<String>, password: impl Into<String>) -> Self {
        self.credentials = Some(Credentials {
            user: user.into(),
            password: password.into(),
        });
        self
    }

    /// The `reqwest` client for the backend's requests (default: a client
    /// of its own on rustls with the Web PKI roots). Give one to trust your
    /// own certificate authority, to use a client certificate or a proxy,
    /// or to use the system's TLS (OpenSSL on Linux): depend on `reqwest`
    /// with its `native-tls` feature and pass
    /// `reqwest::Client::builder().use_native_tls().build()?`.
    ///
    /// Build it with `.redirect(reqwest::redirect::Policy::none())`, as the
    /// default client is: reqwest follows redirects unless told not to, and
    /// a redirect carries the re-login's password or the lock queries to
    /// wherever it points. The backend answers a redirect, or an answer
    /// from another URL than asked, with an
    /// [`InvalidConfig`](shylock_core::BackendErrorKind::InvalidConfig) error.
    #[must_use]
    pub fn http_client(mut self, client: reqwest::Client) -> Self {
        self.http_client = Some(client);
        self
    }

    /// Trust the certificate authorities of `pem` (one or more PEM
    /// certificates, e.g. the contents of a `ca.pem`) besides the bundled
    /// Web PKI roots: for an ArangoDB whose certificate a private CA signed.
    /// Bad PEM is an
    /// [`InvalidConfig`](shylock_core::BackendErrorKind::InvalidConfig)
    /// error at connect, and so is giving both this and
    /// [`http_client`](Self::http_client) (add the CA to that client).
    #[must_use]
    pub fn ca_certificate(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.ca_certificates.push(pem.into());
        self
    }

    /// The collection name.
    pub fn get_collection(&self) -> &str {
        &self.collection
    }

    /// The TTL grace.
    pub fn get_ttl_grace(&self) -> Duration {
        self.ttl_grace
    }

    /// The time limit of requests made without a caller's deadline.
    pub fn get_request_timeout(&self) -> Duration {
        self.request_timeout
    }

    /// The bound on the server's wait for the collection's lock.
    pub fn get_lock_timeout(&self) -> Duration {
        self.lock_timeout
    }

    /// The longest an acquire can still commit after it was sent:
    /// [`lock_timeout`](Self::lock_timeout) + [`QUERY_RUN_ALLOWANCE`].
    pub fn max_commit_delay(&self) -> Duration {
        self.lock_timeout.saturating_add(QUERY_RUN_ALLOWANCE)
    }

    /// Whether lock writes wait until they are on disk.
    pub fn get_wait_for_sync(&self) -> bool {
        self.wait_for_sync
    }

    pub(crate) fn get_credentials(&self) -> Option<&Credentials> {
        self.credentials.as_ref()
    }

    /// The client for the backend's requests: the one given, or one of its
    /// own trusting [`ca_certificate`](Self::ca_certificate)s.
    pub(crate) fn client(&self) -> Result<reqwest::Client, shylock_core::BackendError> {
        match &self.http_client {
            Some(c) => Ok(c.clone()),
            None => crate::http::default_client(&self.ca_certificates),
        }
    }

    /// Check what can be checked before any request.
    pub(crate) fn validate(&self) -> Result<(), String> {
        crate::names::validate_collection_name(&self.collection)?;
        if self.http_client.is_some() && !self.ca_certificates.is_empty() {
            return Err(
                "ca_certificate has no effect with http_client: add the CA to that client"
                    .to_owned(),
            );
        }
        if self.ttl_grace < MIN_TTL_GRACE {
            return Err(format!(
                "ttl_grace must be at least {MIN_TTL_GRACE:?} (fencing tokens rely on it), got {:?}",
                self.ttl_grace
            ));
        }
        if self.lock_timeout < Duration::from_millis(1) || self.lock_timeout > MAX_LOCK_TIMEOUT {
            return Err(format!(
                "lock_timeout must be between 1 ms and {MAX_LOCK_TIMEOUT:?} (the TTL grace must exceed it), got {:?}",
                self.lock_timeout
            ));
        }
        Ok(())
    }
}
