//! [`RustlsClient`]: an HTTP client for `arangors` on `reqwest` with rustls.

use std::fmt;

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
        let resp = self
            .client
            .execute(request)
            .await
            .map_err(|e| client_error(e.without_url()))?;
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
