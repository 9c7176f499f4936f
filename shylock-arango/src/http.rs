//! The HTTP transport: the `reqwest` client and authorization headers taken
//! from an `arangors` connection, per-request timeouts from the caller's
//! deadline, and the mapping of failures to [`BackendError`] kinds.

use std::fmt;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode, Url};
use serde_json::Value;
use shylock_core::{BackendError, BackendErrorKind};

use crate::options::Credentials;

/// ArangoDB error numbers the backend reacts to (see the error-code page:
/// <https://docs.arango.ai/arangodb/stable/develop/error-codes-and-meanings/>).
pub(crate) mod errnum {
    /// `ERROR_BAD_PARAMETER` (HTTP 400; among others, a second TTL index).
    pub const BAD_PARAMETER: i64 = 10;
    /// `ERROR_FORBIDDEN` (also sent with HTTP 401).
    pub const FORBIDDEN: i64 = 11;
    /// `ERROR_LOCK_TIMEOUT` (the exclusive lock was not had in time; HTTP 500).
    pub const LOCK_TIMEOUT: i64 = 18;
    /// `ERROR_LOCKED` (a resource is locked by another operation; HTTP 500).
    pub const LOCKED: i64 = 28;
    /// `ERROR_DEADLOCK` (the transaction was aborted to break a deadlock;
    /// HTTP 500).
    pub const DEADLOCK: i64 = 29;
    /// `ERROR_SHUTTING_DOWN`.
    pub const SHUTTING_DOWN: i64 = 30;
    /// `ERROR_ARANGO_READ_ONLY` (HTTP 403): the server is in read-only mode,
    /// a cluster's write concern is not met, or (with a message ending in
    /// the access wanted, such as `[exclusive]`) the user has only Read Only
    /// access to a collection the request writes.
    pub const READ_ONLY: i64 = 1004;
    /// `ERROR_ARANGO_CONFLICT` (write-write conflict).
    pub const CONFLICT: i64 = 1200;
    /// `ERROR_ARANGO_DATA_SOURCE_NOT_FOUND` (collection or view not found).
    pub const DATA_SOURCE_NOT_FOUND: i64 = 1203;
    /// `ERROR_ARANGO_DUPLICATE_NAME`.
    pub const DUPLICATE_NAME: i64 = 1207;
    /// `ERROR_ARANGO_UNIQUE_CONSTRAINT_VIOLATED`.
    pub const UNIQUE_CONSTRAINT_VIOLATED: i64 = 1210;
    /// `ERROR_ARANGO_DATABASE_NOT_FOUND`.
    pub const DATABASE_NOT_FOUND: i64 = 1228;
    /// `ERROR_ARANGO_TRY_AGAIN`.
    pub const TRY_AGAIN: i64 = 1302;
    /// `ERROR_ARANGO_BUSY`.
    pub const BUSY: i64 = 1303;
    /// `ERROR_QUERY_KILLED` (HTTP 410).
    pub const QUERY_KILLED: i64 = 1500;
    /// `ERROR_CLUSTER_TIMEOUT`.
    pub const CLUSTER_TIMEOUT: i64 = 1457;
    /// `ERROR_CLUSTER_BACKEND_UNAVAILABLE`.
    pub const CLUSTER_BACKEND_UNAVAILABLE: i64 = 1478;
}

/// A parsed answer: HTTP status and JSON body.
#[derive(Debug)]
pub(crate) struct Reply {
    pub status: StatusCode,
    pub body: Value,
    /// What to say about a 401 that no login could answer.
    hint: Option<&'static str>,
}

impl Reply {
    fn with_hint(mut self, scheme: Scheme) -> Reply {
        self.hint = Some(match scheme {
            Scheme::Bearer => {
                " (the JWT of the arangors handle was refused: it has probably expired, \
                 and arangors does not renew it; give the backend credentials with \
                 `ArangoOptions::credentials`, or make it with `connect`)"
            }
            _ => {
                " (check the user name and password; a user without access to the database \
                 is told this also when the database does not exist)"
            }
        });
        self
    }

    /// `errorNum` of an error body, if any.
    pub fn error_num(&self) -> Option<i64> {
        self.body.get("errorNum").and_then(Value::as_i64)
    }

    /// `errorMessage` of an error body, or an empty string.
    pub fn error_message(&self) -> &str {
        self.body
            .get("errorMessage")
            .and_then(Value::as_str)
            .unwrap_or("")
    }

    /// Whether this is the 1004 of a user with Read Only access to a
    /// collection it writes: `TransactionState::checkCollectionPermission`
    /// answers `read only: <collection> [<access>]` (`[exclusive]` for the
    /// backend's queries, `[write]` otherwise), which AQL wraps as
    /// `AQL: … (while parsing)`. Read-only mode and an unmet write concern
    /// name no access type.
    pub fn is_read_only_permission(&self) -> bool {
        let message = self.error_message();
        self.error_num() == Some(errnum::READ_ONLY)
            && ["[exclusive]", "[write]"]
                .iter()
                .any(|access| message.contains(access))
    }

    /// Whether this is an ArangoDB write-write conflict (1200) or unique
    /// constraint violation (1210).
    pub fn is_conflict(&self) -> bool {
        matches!(
            self.error_num(),
            Some(errnum::CONFLICT | errnum::UNIQUE_CONSTRAINT_VIOLATED)
        )
    }

    /// The [`BackendError`] for an unexpected answer to `what`.
    pub fn to_error(&self, what: &str) -> BackendError {
        let num = self.error_num();
        let code = self.status.as_u16();
        let read_only_user = self.is_read_only_permission();
        let kind = match (code, num) {
            // A Read Only user: permanent until an administrator grants more.
            _ if read_only_user => BackendErrorKind::Unauthorized,
            // Read-only mode or an unmet write concern, a lock timeout, a
            // resource locked by another operation, a deadlock broken by
            // aborting this transaction, a killed query: nothing is wrong
            // with the request, the server cannot take it now (nothing was
            // written: the transaction was aborted).
            (
                _,
                Some(
                    errnum::READ_ONLY
                    | errnum::LOCK_TIMEOUT
                    | errnum::LOCKED
                    | errnum::DEADLOCK
                    | errnum::QUERY_KILLED,
                ),
            )
            | (410, _) => BackendErrorKind::Unavailable,
            (401, _) => BackendErrorKind::Unauthorized,
            (403, _) | (_, Some(errnum::FORBIDDEN)) => BackendErrorKind::Unauthorized,
            (_, Some(errnum::DATABASE_NOT_FOUND | errnum::DATA_SOURCE_NOT_FOUND)) => {
                BackendErrorKind::InvalidConfig
            }
            (408 | 504, _) | (_, Some(errnum::CLUSTER_TIMEOUT)) => BackendErrorKind::Timeout,
            (420 | 429, _) => BackendErrorKind::RateLimited,
            (502 | 503, _)
            | (
                _,
                Some(
                    errnum::SHUTTING_DOWN
                    | errnum::TRY_AGAIN
                    | errnum::BUSY
                    | errnum::CLUSTER_BACKEND_UNAVAILABLE,
                ),
            ) => BackendErrorKind::Unavailable,
            _ => BackendErrorKind::Unexpected,
        };
        let detail = match num {
            Some(n) => format!("HTTP {code}, errorNum {n}: {}", self.error_message()),
            None => format!("HTTP {code}: {}", truncate(&self.body.to_string(), 300)),
        };
        let hint = match (kind, num) {
            _ if read_only_user => {
                " (the user has Read Only access to the collection; locks need Read/Write: \
                 grant it, for example with `PUT /_api/user/{user}/database/{db}/{collection}` \
                 `{\"grant\": \"rw\"}`)"
            }
            (_, Some(errnum::READ_ONLY)) => {
                " (the server is in read-only mode, or a cluster's write concern is not met; \
                 try again later)"
            }
            (_, Some(errnum::LOCKED | errnum::DEADLOCK)) => {
                " (the transaction met another one's locks and was aborted; try again)"
            }
            (_, Some(errnum::LOCK_TIMEOUT)) => {
                " (the collection's exclusive lock was busy for too long; try again later)"
            }
            (_, Some(errnum::QUERY_KILLED)) => " (the query was killed; try again)",
            (BackendErrorKind::Unauthorized, _) if code == 401 => {
                " (check the user name and password, and the user's access to the database)"
            }
            (BackendErrorKind::Unauthorized, _) => {
                " (the user lacks the access level this needs: read/write on the collection, \
                 Administrate on the database to create the collection or its index)"
            }
            (_, Some(errnum::DATABASE_NOT_FOUND)) => " (the database does not exist)",
            (_, Some(errnum::DATA_SOURCE_NOT_FOUND)) => {
                " (the collection does not exist: was it dropped after create()?)"
            }
            _ => "",
        };
        let hint = self.hint.filter(|_| code == 401).unwrap_or(hint);
        BackendError::new(kind, format!("{what}: {detail}{hint}"))
    }
}

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// How the backend authenticates its requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scheme {
    Basic,
    Bearer,
    Other,
}

/// The authorization headers (marked sensitive), and the credentials to log
/// in again with when the server refuses them.
struct Auth {
    headers: RwLock<(HeaderMap, u64)>,
    credentials: Option<Credentials>,
    /// One login at a time.
    login: tokio::sync::Mutex<()>,
}

impl Auth {
    fn new(mut headers: HeaderMap, credentials: Option<Credentials>) -> Auth {
        for value in headers.values_mut() {
            value.set_sensitive(true);
        }
        Auth {
            headers: RwLock::new((headers, 0)),
            credentials,
            login: tokio::sync::Mutex::new(()),
        }
    }

    fn current(&self) -> (HeaderMap, u64) {
        self.headers
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn scheme(&self) -> Scheme {
        let (headers, _) = self.current();
        match headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_ascii_lowercase)
        {
            Some(v) if v.starts_with("basic ") => Scheme::Basic,
            Some(v) if v.starts_with("bearer ") => Scheme::Bearer,
            _ => Scheme::Other,
        }
    }
}

/// The HTTP side of a backend: one database's base URL, the client and the
/// authorization. Its `Debug` shows the server and database only.
#[derive(Clone)]
pub(crate) struct Http {
    client: reqwest::Client,
    root_url: Url,
    db_url: Url,
    auth: Arc<Auth>,
    default_timeout: Duration,
    db_name: String,
}

impl fmt::Debug for Http {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Http")
            .field("server", &self.server())
            .field("database", &self.db_name)
            .field("authorization", &self.auth.scheme())
            .field("can_log_in_again", &self.auth.credentials.is_some())
            .field("default_timeout", &self.default_timeout)
            .finish()
    }
}

/// A distance that stands for "no deadline" (about 30 years): what a
/// timeout too long for an `Instant` saturates to.
const FAR: Duration = Duration::from_secs(30 * 365 * 24 * 3600);

/// `now + d`, saturating at 30 years from now instead of panicking on a
/// duration too long for an `Instant` (`request_timeout(Duration::MAX)`).
pub(crate) fn deadline_after(d: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(d.min(FAR)).unwrap_or(now)
}

/// A `reqwest` client for the backend's own requests, on rustls. It
/// follows no redirect: a redirect would carry the credentials (the
/// re-login body) or the lock queries to wherever it points; it is
/// reported as a configuration error instead (see [`redirect_error`]).
pub(crate) fn default_client(ca_certificates: &[Vec<u8>]) -> Result<reqwest::Client, BackendError> {
    let mut builder = reqwest::Client::builder()
        .use_rustls_tls()
        .redirect(reqwest::redirect::Policy::none());
    for pem in ca_certificates {
        let bad = |reason: String| {
            BackendError::new(
                BackendErrorKind::InvalidConfig,
                format!("the CA certificate given to ArangoOptions::ca_certificate: {reason}"),
            )
        };
        let certificates = reqwest::Certificate::from_pem_bundle(pem)
            .map_err(|e| bad(format!("not PEM ({e})")))?;
        if certificates.is_empty() {
            return Err(bad("no certificate in it".to_owned()));
        }
        for certificate in certificates {
            builder = builder.add_root_certificate(certificate);
        }
    }
    builder.build().map_err(|e| {
        BackendError::new(BackendErrorKind::Other, "cannot build the HTTP client")
            .with_source(e.without_url())
    })
}

/// `Basic base64(user:password)`, marked sensitive.
pub(crate) fn basic_auth(user: &str, password: &str) -> HeaderMap {
    use base64::Engine as _;
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    let mut headers = HeaderMap::new();
    if let Ok(mut value) = HeaderValue::from_str(&format!("Basic {token}")) {
        value.set_sensitive(true);
        headers.insert(AUTHORIZATION, value);
    }
    headers
}

impl Http {
    /// `db_url` is the database's URL (`http://host:8529/_db/name/`).
    pub fn new(
        client: reqwest::Client,
        db_url: Url,
        headers: HeaderMap,
        credentials: Option<Credentials>,
        db_name: String,
        default_timeout: Duration,
    ) -> Self {
        let root_url = root_of(&db_url);
        Http {
            client,
            root_url,
            db_url,
            auth: Arc::new(Auth::new(headers, credentials)),
            default_timeout,
            db_name,
        }
    }

    /// The client.
    pub fn client(&self) -> reqwest::Client {
        self.client.clone()
    }

    /// The database's URL.
    pub fn db_url(&self) -> &Url {
        &self.db_url
    }

    /// The database's name.
    pub fn db_name(&self) -> &str {
        &self.db_name
    }

    /// The server's address (scheme, host and port) for messages.
    pub fn server(&self) -> String {
        let mut s = format!(
            "{}://{}",
            self.db_url.scheme(),
            self.db_url.host_str().unwrap_or("?")
        );
        if let Some(port) = self.db_url.port() {
            s.push_str(&format!(":{port}"));
        }
        s
    }

    fn timeout(&self, deadline: Option<Instant>, what: &str) -> Result<Duration, BackendError> {
        let timeout = match deadline {
            Some(d) => d.saturating_duration_since(Instant::now()),
            None => self.default_timeout,
        };
        if timeout.is_zero() {
            return Err(BackendError::new(
                BackendErrorKind::Timeout,
                format!("{what}: the deadline passed before the request was sent"),
            ));
        }
        Ok(timeout)
    }

    /// Send one request to `path` (relative to the database URL, such as
    /// `_api/cursor`) and read its JSON answer, giving up by `deadline`
    /// (or after the default timeout when there is none). A 401 is answered
    /// by logging in again once, when the backend has credentials.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        deadline: Option<Instant>,
        what: &str,
    ) -> Result<Reply, BackendError> {
        let deadline = deadline.or_else(|| Some(deadline_after(self.default_timeout)));
        let (headers, generation) = self.auth.current();
        let reply = self
            .send_once(method.clone(), path, body, deadline, headers, what)
            .await?;
        if reply.status != StatusCode::UNAUTHORIZED {
            return Ok(reply);
        }
        let Some(credentials) = &self.auth.credentials else {
            return Ok(reply.with_hint(self.auth.scheme()));
        };
        self.log_in(credentials, generation, deadline, what).await?;
        let (headers, _) = self.auth.current();
        self.send_once(method, path, body, deadline, headers, what)
            .await
    }

    /// Log in (`POST /_open/auth`) for a new JWT, unless another request
    /// did since `seen` (the headers' generation when ours was sent).
    async fn log_in(
        &self,
        credentials: &Credentials,
        seen: u64,
        deadline: Option<Instant>,
        what: &str,
    ) -> Result<(), BackendError> {
        let _one = self.auth.login.lock().await;
        if self.auth.current().1 != seen {
            return Ok(());
        }
        let what = format!("{what}: logging in again as `{}`", credentials.user);
        let timeout = self.timeout(deadline, &what)?;
        let url = self.root_url.join("_open/auth").map_err(|e| {
            BackendError::new(BackendErrorKind::InvalidConfig, format!("{what}: {e}"))
        })?;
        let body =
            serde_json::json!({ "username": credentials.user, "password": credentials.password });
        let resp = self
            .client
            .post(url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_string())
            .timeout(timeout)
            .send()
            .await
            .map_err(|e| transport_error(&what, e))?;
        check_not_redirected(&url, &resp, &what)?;
        let status = resp.status();
        let text = resp.text().await.map_err(|e| transport_error(&what, e))?;
        let jwt = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| v.get("jwt").and_then(Value::as_str).map(str::to_owned));
        let value = match (status, jwt) {
            (StatusCode::OK, Some(jwt)) => HeaderValue::from_str(&format!("bearer {jwt}")).ok(),
            _ => None,
        };
        let Some(mut value) = value else {
            let kind = if status == StatusCode::UNAUTHORIZED {
                BackendErrorKind::Unauthorized
            } else if status.is_server_error() {
                BackendErrorKind::Unavailable
            } else {
                BackendErrorKind::Unexpected
            };
            return Err(BackendError::new(
                kind,
                format!(
                    "{what}: HTTP {} (check the user name and password)",
                    status.as_u16()
                ),
            ));
        };
        value.set_sensitive(true);
        let mut guard = self.auth.headers.write().unwrap_or_else(|e| e.into_inner());
        guard.0.insert(AUTHORIZATION, value);
        guard.1 += 1;
        tracing::debug!(user = %credentials.user, "shylock-arango logged in again (new JWT)");
        Ok(())
    }

    async fn send_once(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        deadline: Option<Instant>,
        headers: HeaderMap,
        what: &str,
    ) -> Result<Reply, BackendError> {
        let timeout = self.timeout(deadline, what)?;
        let url = self.db_url.join(path).map_err(|e| {
            BackendError::new(
                BackendErrorKind::InvalidConfig,
                format!(
                    "{what}: cannot build a URL from {} and {path}",
                    self.server()
                ),
            )
            .with_source(e)
        })?;
        let mut req = self
            .client
            .request(method, url.clone())
            .headers(headers)
            .header(reqwest::header::ACCEPT, "application/json")
            .timeout(timeout);
        if let Some(body) = body {
            req = req
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.to_string());
        }
        let resp = req.send().await.map_err(|e| transport_error(what, e))?;
        check_not_redirected(&url, &resp, what)?;
        let status = resp.status();
        let text = resp.text().await.map_err(|e| transport_error(what, e))?;
        let body = match serde_json::from_str::<Value>(&text) {
            Ok(v) => v,
            Err(e) => {
                // A proxy or load balancer in front of ArangoDB may answer
                // with HTML or plain text; 5xx are transient.
                let kind = if status.is_server_error() {
                    BackendErrorKind::Unavailable
                } else if status == StatusCode::UNAUTHORIZED {
                    BackendErrorKind::Unauthorized
                } else {
                    BackendErrorKind::Unexpected
                };
                return Err(BackendError::new(
                    kind,
                    format!(
                        "{what}: HTTP {} with a body that is not JSON: {}",
                        status.as_u16(),
                        truncate(&text, 200)
                    ),
                )
                .with_source(e));
            }
        };
        Ok(Reply {
            status,
            body,
            hint: None,
        })
    }
}

/// The server's root URL from a database URL: `…/prefix/_db/name/` gives
/// `…/prefix/` (the base path kept, so that `_open/auth` goes where the
/// data requests go, behind a gateway that routes by path).
fn root_of(db_url: &Url) -> Url {
    let mut root = db_url.clone();
    let path = db_url.path();
    let base = match path.rfind("/_db/") {
        Some(i) => &path[..=i],
        None => "/",
    };
    root.set_path(base);
    root.set_query(None);
    root.set_fragment(None);
    root
}

/// A URL for messages: no user name, password, query or fragment.
pub(crate) fn redact(url: &Url) -> String {
    let mut url = url.clone();
    let _ = url.set_username("");
    let _ = url.set_password(None);
    url.set_query(None);
    url.set_fragment(None);
    url.to_string()
}

/// The configuration error for a redirect to `location` (as the server
/// wrote it, resolved against `from`), never followed.
pub(crate) fn redirect_error(
    what: &str,
    status: u16,
    from: &Url,
    location: Option<&str>,
) -> String {
    let to = match location.map(|l| from.join(l)) {
        Some(Ok(to)) => redact(&to),
        Some(Err(_)) => "a location that is not a URL".to_owned(),
        None => "no location".to_owned(),
    };
    format!(
        "{what}: the server answered HTTP {status}, a redirect to {to}; redirects are not \
         followed (they would carry the credentials or the lock requests elsewhere): \
         give the server's own URL"
    )
}

/// A redirect answer, or a response from another URL than asked (a client
/// given with `ArangoOptions::http_client` that follows redirects), is a
/// configuration error.
fn check_not_redirected(
    asked: &Url,
    resp: &reqwest::Response,
    what: &str,
) -> Result<(), BackendError> {
    let status = resp.status();
    if status.is_redirection() && status != StatusCode::NOT_MODIFIED {
        let location = resp
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok());
        return Err(BackendError::new(
            BackendErrorKind::InvalidConfig,
            redirect_error(what, status.as_u16(), asked, location),
        ));
    }
    if resp.url() != asked {
        return Err(BackendError::new(
            BackendErrorKind::InvalidConfig,
            format!(
                "{what}: the HTTP client followed a redirect to {}: build the client given \
                 to `ArangoOptions::http_client` with `redirect(reqwest::redirect::Policy::none())`, \
                 and give the server's own URL",
                redact(resp.url())
            ),
        ));
    }
    Ok(())
}

/// The TLS certificate failure in `e`'s chain of causes, if any: such as
/// `invalid peer certificate: UnknownIssuer` (rustls's words).
fn certificate_failure(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut next = Some(e);
    while let Some(e) = next {
        let said = e.to_string();
        if said.to_ascii_lowercase().contains("certificate") {
            return Some(said);
        }
        next = e.source();
    }
    None
}

/// Map a `reqwest` failure to a [`BackendError`] kind: transient, but a
/// server certificate that does not verify is a configuration error (it
/// will not verify on the next try either), with its cause in the message.
pub(crate) fn transport_error(what: &str, e: reqwest::Error) -> BackendError {
    if let Some(cause) = certificate_failure(&e) {
        return BackendError::new(
            BackendErrorKind::InvalidConfig,
            format!(
                "{what}: the server's TLS certificate does not verify: {cause} (for a private \
                 certificate authority, see ArangoOptions::ca_certificate)"
            ),
        )
        .with_source(e.without_url());
    }
    let kind = if e.is_timeout() {
        BackendErrorKind::Timeout
    } else if e.is_builder() {
        BackendErrorKind::InvalidConfig
    } else {
        // Connection refused or reset, DNS failure, broken body: transient.
        BackendErrorKind::Unavailable
    };
    let msg = if e.is_timeout() {
        format!("{what}: no answer from the server within the time limit")
    } else if e.is_connect() {
        format!("{what}: cannot connect to the server")
    } else {
        format!("{what}: the request failed")
    };
    // Without the URL: it may carry credentials a user wrote into it.
    BackendError::new(kind, msg).with_source(e.without_url())
}
