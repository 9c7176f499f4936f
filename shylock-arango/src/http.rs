//! The HTTP transport: the `reqwest` client and authorization headers taken
//! from an `arangors` connection, per-request timeouts from the caller's
//! deadline, and the mapping of failures to [`BackendError`] kinds.

use std::time::{Duration, Instant};

use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode, Url};
use serde_json::Value;
use shylock_core::{BackendError, BackendErrorKind};

/// ArangoDB error numbers the backend reacts to (see the error-code page:
/// <https://docs.arango.ai/arangodb/stable/develop/error-codes-and-meanings/>).
pub(crate) mod errnum {
    /// `ERROR_FORBIDDEN` (also sent with HTTP 401).
    pub const FORBIDDEN: i64 = 11;
    /// `ERROR_SHUTTING_DOWN`.
    pub const SHUTTING_DOWN: i64 = 30;
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
}

impl Reply {
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
        let kind = match (code, num) {
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
            (BackendErrorKind::Unauthorized, _) => {
                " (check the user name, password and the user's access to the database)"
            }
            (_, Some(errnum::DATABASE_NOT_FOUND)) => " (the database does not exist)",
            (_, Some(errnum::DATA_SOURCE_NOT_FOUND)) => {
                " (the collection does not exist: was it dropped after create()?)"
            }
            _ => "",
        };
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

/// The HTTP side of a backend: one database's base URL, the client and the
/// authorization headers of the `arangors` connection it came from.
#[derive(Debug, Clone)]
pub(crate) struct Http {
    client: reqwest::Client,
    db_url: Url,
    headers: HeaderMap,
    default_timeout: Duration,
    db_name: String,
}

impl Http {
    pub fn new(
        client: reqwest::Client,
        db_url: Url,
        headers: HeaderMap,
        db_name: String,
        default_timeout: Duration,
    ) -> Self {
        Http {
            client,
            db_url,
            headers,
            default_timeout,
            db_name,
        }
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

    /// Send one request to `path` (relative to the database URL, such as
    /// `_api/cursor`) and read its JSON answer, giving up by `deadline`
    /// (or after the default timeout when there is none).
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        deadline: Option<Instant>,
        what: &str,
    ) -> Result<Reply, BackendError> {
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
        let url = self.db_url.join(path).map_err(|e| {
            BackendError::new(
                BackendErrorKind::InvalidConfig,
                format!("{what}: cannot build a URL from {} and {path}", self.db_url),
            )
            .with_source(e)
        })?;
        let mut req = self
            .client
            .request(method, url)
            .headers(self.headers.clone())
            .header(reqwest::header::ACCEPT, "application/json")
            .timeout(timeout);
        if let Some(body) = body {
            req = req
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.to_string());
        }
        let resp = req.send().await.map_err(|e| transport_error(what, e))?;
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
        Ok(Reply { status, body })
    }
}

/// Map a `reqwest` failure to a transient [`BackendError`] kind.
pub(crate) fn transport_error(what: &str, e: reqwest::Error) -> BackendError {
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
    BackendError::new(kind, msg).with_source(e)
}
