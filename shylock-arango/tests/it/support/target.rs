//! Which server the tests run against: a real ArangoDB when
//! `SHYLOCK_ARANGO_URL` is set (with `SHYLOCK_ARANGO_USER`, default `root`,
//! `SHYLOCK_ARANGO_PASSWORD`, default empty, and `SHYLOCK_ARANGO_DB`, default
//! `_system`), otherwise a fresh emulator per test.

use std::sync::atomic::{AtomicU64, Ordering};

use super::emulator::Emulator;

pub const EMU_USER: &str = "root";
pub const EMU_PASSWORD: &str = "emu-secret";
pub const EMU_DB: &str = "shylock_test";

/// A server to test against.
pub struct Target {
    pub url: String,
    pub user: String,
    pub password: String,
    pub db: String,
    /// The emulator, when not testing a real server.
    pub emu: Option<Emulator>,
}

/// Whether the tests run against a real ArangoDB.
pub fn real_server() -> bool {
    std::env::var_os("SHYLOCK_ARANGO_URL").is_some_and(|v| !v.is_empty())
}

/// The server for a test: the real one if configured, else a new emulator.
pub fn target() -> Target {
    if real_server() {
        let var =
            |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.to_owned());
        Target {
            url: var("SHYLOCK_ARANGO_URL", ""),
            user: var("SHYLOCK_ARANGO_USER", "root"),
            password: var("SHYLOCK_ARANGO_PASSWORD", ""),
            db: var("SHYLOCK_ARANGO_DB", "_system"),
            emu: None,
        }
    } else {
        emulated()
    }
}

/// Always a new emulator (for tests that script the server's behaviour).
pub fn emulated() -> Target {
    let emu = Emulator::start(EMU_USER, EMU_PASSWORD, &[EMU_DB]);
    Target {
        url: emu.url(),
        user: EMU_USER.to_owned(),
        password: EMU_PASSWORD.to_owned(),
        db: EMU_DB.to_owned(),
        emu: Some(emu),
    }
}

impl Target {
    /// The emulator (panics for a real server: only for emulator-only tests).
    pub fn emu(&self) -> &Emulator {
        self.emu.as_ref().expect("this test needs the emulator")
    }

    /// An arangors database handle.
    pub async fn db(&self) -> shylock_arango::Database {
        let conn =
            shylock_arango::Connection::establish_basic_auth(&self.url, &self.user, &self.password)
                .await
                .unwrap_or_else(|e| panic!("cannot connect to ArangoDB at {}: {e}", self.url));
        conn.db(&self.db)
            .await
            .unwrap_or_else(|e| panic!("cannot open database {} at {}: {e}", self.db, self.url))
    }

    /// A raw HTTP request to the server with this target's credentials.
    pub async fn raw(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> (u16, reqwest::header::HeaderMap, serde_json::Value) {
        self.raw_as(
            &self.user.clone(),
            &self.password.clone(),
            method,
            path,
            body,
        )
        .await
    }

    /// A raw HTTP request with the given credentials.
    pub async fn raw_as(
        &self,
        user: &str,
        password: &str,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> (u16, reqwest::header::HeaderMap, serde_json::Value) {
        let client = reqwest::Client::new();
        let mut req = client
            .request(
                method,
                format!("{}{}", self.url.trim_end_matches('/'), path),
            )
            .basic_auth(user, Some(password));
        if let Some(body) = body {
            req = req
                .header("content-type", "application/json")
                .body(body.to_string());
        }
        let resp = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("request to {} failed: {e}", self.url));
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().await.expect("response body");
        let body = serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
        (status, headers, body)
    }

    /// `POST /_api/collection` `{name}` → 200.
    pub async fn create_collection(&self, name: &str) {
        let path = format!("/_db/{}/_api/collection", self.db);
        let body = serde_json::json!({ "name": name });
        let (status, _, answer) = self.raw(reqwest::Method::POST, &path, Some(body)).await;
        assert_eq!(status, 200, "{answer}");
    }

    /// Drop a collection (best effort; cleans up after tests on a real server).
    pub async fn drop_collection(&self, name: &str) {
        let path = format!("/_db/{}/_api/collection/{name}", self.db);
        let _ = self.raw(reqwest::Method::DELETE, &path, None).await;
    }
}

/// A collection name unique to this test run.
pub fn unique_collection(prefix: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let pid = std::process::id();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{prefix}_{pid}_{nanos}_{}",
        N.fetch_add(1, Ordering::SeqCst)
    )
}

/// A free local port with nothing listening on it (connection refused).
pub fn dead_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    format!("http://{addr}")
}
