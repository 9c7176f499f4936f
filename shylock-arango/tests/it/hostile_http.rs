//! Hostile or misconfigured HTTP servers (issue 23): redirects are not
//! followed, the re-login keeps the base path, a server that never answers
//! bounds `Connection::establish_basic_auth`, and durations or `expireAfter`
//! values far out of range do not panic.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use shylock_arango::{ArangoBackend, ArangoOptions};
use shylock_core::BackendErrorKind;
use shylock_core::backend::{AcquireRequest, AsyncBackend};
use shylock_core::{LockName, OwnerId, Timestamp};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::support::target::{emulated, unique_collection};

/// One request a fake server got: method, path (with query) and body.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    body: String,
}

/// An answer: status, extra headers and body.
type Answer = (u16, Vec<(String, String)>, String);

/// A tiny HTTP/1.1 server on 127.0.0.1 answering each request with
/// `answer(method, path)` and recording it; one request per connection.
struct FakeServer {
    url: String,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl FakeServer {
    async fn start(answer: impl Fn(&str, &str) -> Answer + Send + Sync + 'static) -> FakeServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let answer = Arc::new(answer);
        let log = seen.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (answer, log) = (answer.clone(), log.clone());
                tokio::spawn(async move {
                    let _ = serve_one(stream, &*answer, &log).await;
                });
            }
        });
        FakeServer { url, seen }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

async fn serve_one(
    mut stream: TcpStream,
    answer: &(dyn Fn(&str, &str) -> Answer + Send + Sync),
    log: &Mutex<Vec<Seen>>,
) -> std::io::Result<()> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let length = head
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse::<usize>().ok())
        .unwrap_or(0);
    while buf.len() < head_end + length {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let mut words = head.split_whitespace();
    let method = words.next().unwrap_or("").to_owned();
    let path = words.next().unwrap_or("").to_owned();
    let body = String::from_utf8_lossy(&buf[head_end..]).into_owned();
    log.lock().unwrap().push(Seen {
        method: method.clone(),
        path: path.clone(),
        body,
    });
    let (status, headers, body) = answer(&method, &path);
    let mut out = format!(
        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n",
        body.len()
    );
    for (k, v) in headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str("\r\n");
    out.push_str(&body);
    stream.write_all(out.as_bytes()).await?;
    stream.shutdown().await
}

fn ok(body: &str) -> Answer {
    (200, Vec::new(), body.to_owned())
}

/// What a server answers to `connect_with` and its set-up: the database
/// opens, the collection and its TTL index exist.
fn setup_answer(method: &str, path: &str) -> Option<Answer> {
    if path.ends_with("/_api/database/current") {
        return Some(ok(r#"{"error":false,"code":200,"result":{"name":"db"}}"#));
    }
    if method == "GET" && path.contains("/_api/collection/") {
        return Some(ok(r#"{"error":false,"code":200,"name":"locks","type":2}"#));
    }
    if method == "GET" && path.contains("/_api/index") {
        return Some(ok(
            r#"{"error":false,"code":200,"indexes":[{"id":"locks/1","type":"ttl","fields":["expiresAt"],"expireAfter":3600}]}"#,
        ));
    }
    None
}

fn acquire_request<'a>(name: &'a LockName, owner: &'a OwnerId) -> AcquireRequest<'a> {
    AcquireRequest {
        name,
        owner,
        lease: Duration::from_secs(5),
        now: Timestamp::EPOCH,
        deadline: Some(Instant::now() + Duration::from_secs(5)),
    }
}

fn options() -> ArangoOptions {
    ArangoOptions::new()
        .collection("locks")
        .request_timeout(Duration::from_secs(5))
}

/// A second server that only records whether anything reached it.
async fn elsewhere() -> FakeServer {
    FakeServer::start(|_, _| ok("{}")).await
}

#[tokio::test]
async fn a_redirect_on_the_cursor_is_a_config_error_and_not_followed() {
    let other = elsewhere().await;
    let location = format!("{}/_db/db/_api/cursor", other.url);
    let server = FakeServer::start(move |method, path| {
        setup_answer(method, path).unwrap_or_else(|| {
            (
                308,
                vec![("location".to_owned(), location.clone())],
                String::new(),
            )
        })
    })
    .await;
    let b = ArangoBackend::connect_with(&server.url, "root", "pw-secret", "db", options())
        .await
        .unwrap();
    let (name, owner) = (LockName::new("x").unwrap(), OwnerId::random());
    let err = b
        .try_acquire(acquire_request(&name, &owner))
        .await
        .unwrap_err();
    assert!(other.seen().is_empty(), "followed: {:?}", other.seen());
    assert_eq!(err.kind(), BackendErrorKind::InvalidConfig, "{err}");
    let msg = format!("{err:#}");
    assert!(msg.contains("redirect"), "{msg}");
    assert!(msg.contains(&other.url), "{msg}");
    assert!(!msg.contains("pw-secret"), "{msg}");
}

#[tokio::test]
async fn a_redirect_on_the_relogin_is_a_config_error_and_not_followed() {
    let other = elsewhere().await;
    let location = format!("{}/_open/auth", other.url);
    let server = FakeServer::start(move |method, path| {
        if let Some(a) = setup_answer(method, path) {
            return a;
        }
        if path.ends_with("/_open/auth") {
            return (
                307,
                vec![("location".to_owned(), location.clone())],
                String::new(),
            );
        }
        (
            401,
            Vec::new(),
            r#"{"error":true,"code":401,"errorNum":11,"errorMessage":"not authorized"}"#.to_owned(),
        )
    })
    .await;
    let b = ArangoBackend::connect_with(&server.url, "root", "pw-secret", "db", options())
        .await
        .unwrap();
    let (name, owner) = (LockName::new("x").unwrap(), OwnerId::random());
    let err = b
        .try_acquire(acquire_request(&name, &owner))
        .await
        .unwrap_err();
    assert!(
        server
            .seen()
            .iter()
            .any(|s| s.path.ends_with("/_open/auth")),
        "{:?}",
        server.seen()
    );
    assert!(other.seen().is_empty(), "followed: {:?}", other.seen());
    assert_eq!(err.kind(), BackendErrorKind::InvalidConfig, "{err}");
    let msg = format!("{err:#}");
    assert!(msg.contains("redirect"), "{msg}");
    assert!(!msg.contains("pw-secret"), "{msg}");
}

#[tokio::test]
async fn the_relogin_keeps_the_base_path() {
    let server = FakeServer::start(|method, path| {
        if let Some(a) = setup_answer(method, path) {
            return a;
        }
        if path.ends_with("/_open/auth") {
            return ok(r#"{"jwt":"not-a-real-jwt"}"#);
        }
        (
            401,
            Vec::new(),
            r#"{"error":true,"code":401,"errorNum":11,"errorMessage":"not authorized"}"#.to_owned(),
        )
    })
    .await;
    let url = format!("{}/prefix/", server.url);
    let b = ArangoBackend::connect_with(&url, "root", "pw-secret", "db", options())
        .await
        .unwrap();
    let (name, owner) = (LockName::new("x").unwrap(), OwnerId::random());
    let _ = b.try_acquire(acquire_request(&name, &owner)).await;
    let seen = server.seen();
    let logins: Vec<&Seen> = seen
        .iter()
        .filter(|s| s.path.ends_with("/_open/auth"))
        .collect();
    assert_eq!(logins.len(), 1, "{seen:?}");
    assert_eq!(logins[0].method, "POST");
    assert_eq!(logins[0].path, "/prefix/_open/auth", "{seen:?}");
    assert!(logins[0].body.contains("pw-secret"));
    for s in &seen {
        assert!(s.path.starts_with("/prefix/"), "left the base path: {s:?}");
    }
}

#[tokio::test]
async fn establish_basic_auth_fails_in_time_on_a_server_that_never_answers() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    let started = Instant::now();
    let outcome = tokio::time::timeout(
        Duration::from_secs(60),
        shylock_arango::Connection::establish_basic_auth(&url, "root", "pw"),
    )
    .await;
    let took = started.elapsed();
    let Ok(result) = outcome else {
        panic!("establish_basic_auth still pending after {took:?}");
    };
    assert!(result.is_err(), "connected to a silent server?");
    assert!(
        took <= shylock_arango::RustlsClient::REQUEST_TIMEOUT + Duration::from_secs(5),
        "{took:?}"
    );
}

#[tokio::test]
async fn the_rustls_client_does_not_follow_redirects() {
    let other = elsewhere().await;
    let location = format!("{}/_db/db/_api/database/current", other.url);
    let server = FakeServer::start(move |_, path| {
        if path == "/" {
            // arangors' server check.
            return (
                200,
                vec![("server".to_owned(), "ArangoDB".to_owned())],
                "{}".to_owned(),
            );
        }
        (
            307,
            vec![("location".to_owned(), location.clone())],
            String::new(),
        )
    })
    .await;
    let conn = shylock_arango::Connection::establish_basic_auth(&server.url, "root", "pw-secret")
        .await
        .unwrap();
    let err = conn.db("db").await.unwrap_err();
    assert!(other.seen().is_empty(), "followed: {:?}", other.seen());
    let msg = err.to_string();
    assert!(msg.contains("redirect"), "{msg}");
    assert!(!msg.contains("pw-secret"), "{msg}");
}

#[tokio::test]
async fn a_request_timeout_beyond_any_instant_does_not_panic() {
    let t = emulated();
    let collection = unique_collection("huge_timeout");
    let b = ArangoBackend::connect_with(
        &t.url,
        &t.user,
        &t.password,
        &t.db,
        ArangoOptions::new()
            .collection(collection)
            .request_timeout(Duration::MAX),
    )
    .await
    .unwrap();
    let (name, owner) = (LockName::new("x").unwrap(), OwnerId::random());
    let mut req = acquire_request(&name, &owner);
    req.deadline = None;
    b.try_acquire(req).await.unwrap();
}

#[tokio::test]
async fn a_ttl_index_expire_after_beyond_any_duration_does_not_panic() {
    let t = emulated();
    let collection = unique_collection("huge_ttl");
    t.create_collection(&collection).await;
    let path = format!("/_db/{}/_api/index?collection={collection}", t.db);
    let body = serde_json::json!({ "type": "ttl", "fields": ["expiresAt"], "expireAfter": 1e300 });
    let (status, _, answer) = t.raw(reqwest::Method::POST, &path, Some(body)).await;
    assert!(status == 200 || status == 201, "{answer}");
    let db = t.db().await;
    for b in [
        ArangoBackend::create(&db, &collection).await.unwrap(),
        ArangoBackend::connect_with(
            &t.url,
            &t.user,
            &t.password,
            &t.db,
            ArangoOptions::new().collection(collection.clone()),
        )
        .await
        .unwrap(),
    ] {
        // Adopted as "never collected": the longest grace there is.
        assert!(b.ttl_grace() >= Duration::from_secs(u64::MAX / 2));
    }
}
