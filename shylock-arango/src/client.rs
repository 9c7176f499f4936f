//! [`RustlsClient`]: an HTTP client for `arangors` on `reqwest` with rustls.

use std::fmt;
use std::time::Duration;

use arangors::ClientError;
use arangors::client::ClientExt;
use reqwest::header::HeaderMap;

/// An `arangors` HTTP client ([`ClientExt`]) on `reqwest` with rustls, so
/// that an application needs no OpenSSL for ArangoDB: make connections
/// with [`Connection`](crate::Connection) (`arangors::GenericConnection<RustlsClient>`).
///
/// arangors' own `reqwest_async` client turns on reqwest's native-tls
/// (OpenSSL on Linux); this crate builds arangors without it (depend on
/// arangors with its `reqwest_async` feature to bring it back). Its `Debug` never
/// shows the authorization header.
///
/// Every request is bounded: connecting by
/// [`CONNECT_TIMEOUT`](Self::CONNECT_TIMEOUT), the whole request (answer
/// read included) by [`REQUEST_TIMEOUT`](Self::REQUEST_TIMEOUT), so that
/// `Connection::establish_*` against a server that accepts and never
/// answers fails instead of waiting for ever. It follows no redirect (a
/// redirect would carry the credentials to wherever it points): a 3xx
/// answer to a request with credentials or a body is an error naming the
/// redirect's location (arangors' server check, `GET /` with neither,
/// gets ArangoDB's redirect to its web interface as it is).
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let conn = shylock_arango::Connection::establish_basic_auth(
///     "https://arangodb.example:8529", "app", "secret",
/// ).await?;
/// let db: shylock_arango::Database = conn.db("projectdb").await?;
/// # let _ = db;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct RustlsClient {
    client: reqwest::Client,
    headers: HeaderMap,
}

impl fmt::Debug for RustlsClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RustlsClient")
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl RustlsClient {
    /// How long connecting to the server may take: 10 seconds.
    pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
    /// How long one request may take, from sending it to having read the
    /// whole answer: 30 seconds.
    pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
}

fn client_error(e: impl fmt::Display) -> ClientError {
    ClientError::HttpClient(e.to_string())
}

#[async_trait::async_trait]
impl ClientExt for RustlsClient {
    fn new<U: Into<Option<HeaderMap>>>(headers: U) -> Result<Self, ClientError> {
        let mut headers = headers.into().unwrap_or_default();
        for value in headers.values_mut() {
            value.set_sensitive(true);
        }
        let client = reqwest::Client::builder()
            .use_rustls_tls()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Self::CONNECT_TIMEOUT)
            .timeout(Self::REQUEST_TIMEOUT)
            .build()
            .map_err(|e| client_error(e.without_url()))?;
        Ok(RustlsClient { client, headers })
    }

    fn headers(&mut self) -> &mut HeaderMap {
        &mut self.headers
    }

    async fn request(
        &self,
        mut request: http::Request<String>,
    ) -> Result<http::Response<String>, ClientError> {
        let headers = request.headers_mut();
        for (name, value) in &self.headers {
            if !headers.contains_key(name) {
                headers.insert(name, value.clone());
            }
        }
        let request = reqwest::Request::try_from(request).map_err(client_error)?;
        let asked = request.url().clone();
        // Only what carries nothing to hand on may see a redirect unfollowed:
        // arangors' server check (`GET /` without credentials, which
        // ArangoDB answers with a redirect to its web interface) reads the
        // answer's `Server` header only.
        let carries = request
            .headers()
            .contains_key(reqwest::header::AUTHORIZATION)
            || request
                .body()
                .is_some_and(|b| b.as_bytes().is_none_or(|b| !b.is_empty()));
        let resp = self
            .client
            .execute(request)
            .await
            .map_err(|e| client_error(e.without_url()))?;
        let status = resp.status();
        if carries && status.is_redirection() && status != reqwest::StatusCode::NOT_MODIFIED {
            let location = resp
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|v| v.to_str().ok());
            return Err(client_error(crate::http::redirect_error(
                "ArangoDB request",
                status.as_u16(),
                &asked,
                location,
            )));
        }
        let mut answer = http::Response::builder()
            .status(resp.status())
            .version(resp.version());
        for (name, value) in resp.headers() {
            answer = answer.header(name, value);
        }
        let text = resp
            .text()
            .await
            .map_err(|e| client_error(e.without_url()))?;
        answer.body(text).map_err(client_error)
    }
}
