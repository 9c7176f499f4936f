//! An emulator of the small part of ArangoDB's HTTP API that shylock-arango
//! uses. Test support only, never shipped.
//!
//! It listens on 127.0.0.1 on a free port, runs on its own thread and
//! runtime (so async and plain sync tests can use it alike) and stops when
//! dropped. Behaviour follows ArangoDB's documentation; each test in
//! `emulator_docs.rs` replays a documented request/response and names the
//! page it was checked against:
//!
//! * every answer carries `server: ArangoDB` and `content-type:
//!   application/json`, as in the documentation's recorded examples;
//! * errors are `{error: true, code, errorNum, errorMessage}`;
//! * basic authentication: a wrong or missing password gives HTTP 401 with
//!   errorNum 11 ("not authorized to execute this request");
//! * database routing by `/_db/{name}/...` (default `_system`); an unknown
//!   database gives HTTP 404 with errorNum 1228 ("database not found");
//! * `GET /` redirects to the web interface (arangors checks the `Server`
//!   header there before it connects);
//! * `GET /_api/version`, `GET /_api/database/current`, `GET /_admin/time`;
//! * `POST /_api/collection` (200; 409/1207 for a duplicate name, 400/1208
//!   for an illegal one), `DELETE /_api/collection/{name}`;
//! * `POST /_api/index?collection=` for `ttl` indexes (201 new, 200 existing,
//!   400 for a second TTL index, 404/1203 unknown collection);
//! * `POST /_api/cursor` for the backend's four fixed queries only (anything
//!   else: 400/1501; no body: 400/1502; bind parameter missing 1551,
//!   undeclared 1552, wrong type 1553; unknown collection 404/1203; illegal
//!   document key 400/1221), executed natively under one mutex per database,
//!   which gives a single server's atomicity; `_rev` changes on every write.
//!
//! * `POST /_open/auth` issues JWTs that expire on the emulated clock;
//!   users with per-database and per-collection access levels ([`Level`]),
//!   403 / 11 beyond them, 401 / 11 for a database a non-root user cannot
//!   see (whether or not it exists);
//! * `GET /_api/collection/{name}`, `GET /_api/index?collection=`;
//! * a TTL collector every 30 s that selects `0 <= value <= now - expireAfter`
//!   and removes by `_key` and `_rev`;
//! * durability: writes without `waitForSync` are lost by [`Emulator::crash`]
//!   until a synced write syncs them.
//!
//! The table in `shylock-arango/README.md` cites the page each behaviour
//! follows. Test controls: a request log, a clock offset, running the TTL
//! collector in one or two steps, injected delays, hangs (no answer at all),
//! commit-then-hang, read-only mode, a modelled fsync latency, crashes and
//! injected cursor errors.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderMap, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Map, Value, json};

use crate::aql::{self, Known};

/// One request as the emulator saw it.
#[derive(Debug, Clone)]
pub struct Logged {
    pub method: String,
    /// Path and query string, as sent.
    pub path: String,
    /// For `POST /_api/cursor` with a known query: `acquire`, `renew`,
    /// `release` or `inspect`.
    pub query: Option<&'static str>,
}

#[derive(Debug, Default)]
struct Collection {
    id: u64,
    kind: u64,
    docs: BTreeMap<String, Map<String, Value>>,
    indexes: Vec<Value>,
}

#[derive(Debug, Default)]
struct Database {
    collections: HashMap<String, Collection>,
    /// Writes not yet synced to disk: (collection, key) → the document as it
    /// was on disk before them. A write with `waitForSync` syncs the whole
    /// write-ahead log (RocksDB syncs the WAL in order), which empties this.
    unsynced: HashMap<(String, String), Option<Map<String, Value>>>,
}

/// An access level of a user on a database or a collection
/// (docs.arango.ai/arangodb/3.12/operations/administration/user-management/:
/// `rw` Administrate / Read-Write, `ro` Access / Read Only, `none`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// No access.
    None,
    /// Access (database) / Read Only (collection).
    Ro,
    /// Administrate (database) / Read-Write (collection).
    Rw,
}

#[derive(Debug, Clone)]
struct User {
    password: String,
    /// Root-like: Administrate on every database, Read-Write on every collection.
    admin: bool,
    databases: HashMap<String, Level>,
    /// (database, collection or `*`) → level.
    collections: HashMap<(String, String), Level>,
}

#[derive(Debug, Default)]
struct Faults {
    delay: Duration,
    hang: bool,
    /// Run the request (commit its writes), then never answer.
    commit_then_hang: bool,
    read_only: bool,
    /// How long a write with `waitForSync` takes to reach the disk, spent
    /// while the query holds its lock (a model of the fsync).
    sync_latency: Duration,
    cursor_errors: VecDeque<(u16, i64, String)>,
}

struct State {
    users: Mutex<HashMap<String, User>>,
    /// Issued JWTs: token → (user, expiry in ms of the emulated clock).
    tokens: Mutex<HashMap<String, (String, i64)>>,
    token_lifetime_ms: AtomicI64,
    logins: AtomicU64,
    databases: Mutex<HashMap<String, Arc<Mutex<Database>>>>,
    faults: Mutex<Faults>,
    log: Mutex<Vec<Logged>>,
    clock_offset_ms: AtomicI64,
    ids: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl State {
    fn now_ms(&self) -> i64 {
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        wall + self.clock_offset_ms.load(Ordering::SeqCst)
    }

    fn next_id(&self) -> u64 {
        self.ids.fetch_add(1, Ordering::SeqCst)
    }

    fn new_rev(&self) -> String {
        // Opaque, unique, server-generated (format not specified by ArangoDB).
        format!("_{:x}-emu", self.next_id())
    }
}

/// A running emulator.
pub struct Emulator {
    addr: SocketAddr,
    state: Arc<State>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Emulator {
    /// Start an emulator with one user and the given databases (plus
    /// `_system`).
    pub fn start(user: &str, password: &str, databases: &[&str]) -> Emulator {
        let mut dbs = HashMap::new();
        dbs.insert(
            "_system".to_owned(),
            Arc::new(Mutex::new(Database::default())),
        );
        for db in databases {
            dbs.insert((*db).to_owned(), Arc::new(Mutex::new(Database::default())));
        }
        let mut users = HashMap::new();
        users.insert(
            user.to_owned(),
            User {
                password: password.to_owned(),
                admin: true,
                databases: HashMap::new(),
                collections: HashMap::new(),
            },
        );
        let state = Arc::new(State {
            users: Mutex::new(users),
            tokens: Mutex::new(HashMap::new()),
            // `--server.session-timeout`, default one hour.
            token_lifetime_ms: AtomicI64::new(3_600_000),
            logins: AtomicU64::new(0),
            databases: Mutex::new(dbs),
            faults: Mutex::new(Faults::default()),
            log: Mutex::new(Vec::new()),
            clock_offset_ms: AtomicI64::new(0),
            ids: AtomicU64::new(1000),
        });
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let st = Arc::clone(&state);
        let thread = std::thread::Builder::new()
            .name("arango-emulator".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .expect("emulator runtime");
                rt.block_on(async move {
                    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                        .await
                        .expect("emulator bind");
                    addr_tx
                        .send(listener.local_addr().expect("emulator addr"))
                        .expect("emulator start");
                    let mut conns = tokio::task::JoinSet::new();
                    let serve = async {
                        loop {
                            let Ok((stream, _)) = listener.accept().await else {
                                continue;
                            };
                            let st = Arc::clone(&st);
                            conns.spawn(async move {
                                let svc = service_fn(move |req| {
                                    let st = Arc::clone(&st);
                                    async move { Ok::<_, Infallible>(handle(&st, req).await) }
                                });
                                let _ = http1::Builder::new()
                                    .serve_connection(TokioIo::new(stream), svc)
                                    .await;
                            });
                            while conns.try_join_next().is_some() {}
                        }
                    };
                    // The TTL background thread runs every 30 s by default
                    // (`--ttl.frequency`, 30000 ms).
                    let ttl_state = Arc::clone(&st);
                    let ttl = async move {
                        loop {
                            tokio::time::sleep(Duration::from_secs(30)).await;
                            let found = ttl_candidates(&ttl_state);
                            ttl_remove(&ttl_state, &found);
                        }
                    };
                    tokio::select! {
                        _ = serve => {}
                        _ = ttl => {}
                        _ = stopped => {}
                    }
                    conns.abort_all();
                });
                rt.shutdown_timeout(Duration::from_millis(100));
            })
            .expect("emulator thread");
        let addr = addr_rx.recv().expect("emulator address");
        Emulator {
            addr,
            state,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every request seen so far.
    pub fn requests(&self) -> Vec<Logged> {
        lock(&self.state.log).clone()
    }

    /// Forget the request log.
    pub fn clear_requests(&self) {
        lock(&self.state.log).clear();
    }

    /// Move the emulated server clock forward (or back, if negative).
    pub fn advance_clock(&self, ms: i64) {
        self.state.clock_offset_ms.fetch_add(ms, Ordering::SeqCst);
    }

    /// The emulated server clock, in ms.
    pub fn now_ms(&self) -> i64 {
        self.state.now_ms()
    }

    /// Delay every answer by `d`.
    pub fn set_delay(&self, d: Duration) {
        lock(&self.state.faults).delay = d;
    }

    /// Stop answering (requests are read, never answered) or resume.
    pub fn set_hang(&self, hang: bool) {
        lock(&self.state.faults).hang = hang;
    }

    /// Answer the next `times` cursor requests with this error.
    pub fn inject_cursor_error(&self, status: u16, error_num: i64, message: &str, times: usize) {
        let mut f = lock(&self.state.faults);
        for _ in 0..times {
            f.cursor_errors
                .push_back((status, error_num, message.to_owned()));
        }
    }

    /// Create a database.
    pub fn create_database(&self, name: &str) {
        lock(&self.state.databases)
            .entry(name.to_owned())
            .or_insert_with(|| Arc::new(Mutex::new(Database::default())));
    }

    /// Drop a database.
    pub fn drop_database(&self, name: &str) {
        lock(&self.state.databases).remove(name);
    }

    fn db(&self, db: &str) -> Arc<Mutex<Database>> {
        Arc::clone(
            lock(&self.state.databases)
                .get(db)
                .expect("no such database"),
        )
    }

    /// A document, if present.
    pub fn document(&self, db: &str, collection: &str, key: &str) -> Option<Map<String, Value>> {
        let db = self.db(db);
        let db = lock(&db);
        db.collections.get(collection)?.docs.get(key).cloned()
    }

    /// Store a document as another program might have.
    pub fn put_document(&self, db: &str, collection: &str, doc: Map<String, Value>) {
        let key = doc
            .get("_key")
            .and_then(Value::as_str)
            .expect("_key")
            .to_owned();
        let db = self.db(db);
        let mut db = lock(&db);
        let coll = db.collections.entry(collection.to_owned()).or_default();
        coll.docs.insert(key, doc);
    }

    /// The indexes of a collection (as `POST /_api/index` answered them).
    pub fn indexes(&self, db: &str, collection: &str) -> Vec<Value> {
        let db = self.db(db);
        let db = lock(&db);
        db.collections
            .get(collection)
            .map(|c| c.indexes.clone())
            .unwrap_or_default()
    }

    /// The collections of a database.
    pub fn collections(&self, db: &str) -> Vec<String> {
        let db = self.db(db);
        let db = lock(&db);
        db.collections.keys().cloned().collect()
    }

    /// Run the TTL collector once, as the server's background thread does:
    /// select the documents whose TTL attribute is a number of seconds with
    /// `0 <= value <= now - expireAfter`, then remove each by `_key` and
    /// `_rev` (a document written in between is kept). Returns how many
    /// documents were removed.
    pub fn run_ttl(&self) -> usize {
        let found = ttl_candidates(&self.state);
        ttl_remove(&self.state, &found)
    }

    /// The first half of [`run_ttl`](Self::run_ttl): the documents the
    /// collector would remove now.
    pub fn ttl_candidates(&self) -> Vec<TtlCandidate> {
        ttl_candidates(&self.state)
    }

    /// The second half of [`run_ttl`](Self::run_ttl): remove the candidates
    /// whose `_rev` is unchanged.
    pub fn ttl_remove(&self, found: &[TtlCandidate]) -> usize {
        ttl_remove(&self.state, found)
    }

    /// Add a user with no access at all (`POST /_api/user` without grants).
    pub fn add_user(&self, user: &str, password: &str) {
        lock(&self.state.users).insert(
            user.to_owned(),
            User {
                password: password.to_owned(),
                admin: false,
                databases: HashMap::new(),
                collections: HashMap::new(),
            },
        );
    }

    /// Grant `user` a database access level (`PUT /_api/user/{user}/database/{db}`).
    pub fn grant_database(&self, user: &str, db: &str, level: Level) {
        if let Some(u) = lock(&self.state.users).get_mut(user) {
            u.databases.insert(db.to_owned(), level);
        }
    }

    /// Grant `user` a collection access level (`collection` may be `*`, the
    /// database's default collection level).
    pub fn grant_collection(&self, user: &str, db: &str, collection: &str, level: Level) {
        if let Some(u) = lock(&self.state.users).get_mut(user) {
            u.collections
                .insert((db.to_owned(), collection.to_owned()), level);
        }
    }

    /// How long JWTs issued by `POST /_open/auth` are valid (on the emulated
    /// clock; the server's `--server.session-timeout`, default one hour).
    pub fn set_token_lifetime(&self, d: Duration) {
        self.state.token_lifetime_ms.store(
            i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
            Ordering::SeqCst,
        );
    }

    /// How many successful `POST /_open/auth` logins there were.
    pub fn logins(&self) -> u64 {
        self.state.logins.load(Ordering::SeqCst)
    }

    /// Every JWT issued so far.
    pub fn issued_tokens(&self) -> Vec<String> {
        lock(&self.state.tokens).keys().cloned().collect()
    }

    /// Make every write with `waitForSync` take `d` longer, inside the
    /// query's lock (a model of the fsync under `exclusive: true`; default 0).
    pub fn set_sync_latency(&self, d: Duration) {
        lock(&self.state.faults).sync_latency = d;
    }

    /// Put the server in read-only mode (`PUT /_admin/server/mode`
    /// `{"mode": "readonly"}`): writes are refused with 403 / 1004.
    pub fn set_read_only(&self, on: bool) {
        lock(&self.state.faults).read_only = on;
    }

    /// Run requests (commit their writes), then never answer them: a server
    /// that committed after the client gave up.
    pub fn set_commit_then_hang(&self, on: bool) {
        lock(&self.state.faults).commit_then_hang = on;
    }

    /// Crash and restart: every write not yet synced to disk is lost
    /// (the worst case of RocksDB's WAL sync interval, 100 ms by default).
    /// A write made with `waitForSync` syncs every write before it.
    /// Returns how many documents were rolled back.
    pub fn crash(&self) -> usize {
        let dbs: Vec<_> = lock(&self.state.databases).values().cloned().collect();
        let mut lost = 0;
        for db in dbs {
            let mut db = lock(&db);
            let unsynced = std::mem::take(&mut db.unsynced);
            for ((coll, key), before) in unsynced {
                if let Some(c) = db.collections.get_mut(&coll) {
                    lost += 1;
                    match before {
                        Some(doc) => c.docs.insert(key, doc),
                        None => c.docs.remove(&key),
                    };
                }
            }
        }
        lost
    }
}

/// A document the TTL collector selected: database, collection, key, `_rev`.
#[derive(Debug, Clone)]
pub struct TtlCandidate {
    db: String,
    collection: String,
    key: String,
    rev: Value,
}

fn ttl_candidates(state: &State) -> Vec<TtlCandidate> {
    let now_s = state.now_ms() as f64 / 1000.0;
    let dbs: Vec<_> = lock(&state.databases)
        .iter()
        .map(|(n, d)| (n.clone(), Arc::clone(d)))
        .collect();
    let mut found = Vec::new();
    for (db_name, db) in dbs {
        let db = lock(&db);
        for (coll_name, coll) in &db.collections {
            let Some(ttl) = coll.indexes.iter().find(|i| i["type"] == "ttl") else {
                continue;
            };
            let field = ttl["fields"][0].as_str().unwrap_or("");
            let after = ttl["expireAfter"].as_f64().unwrap_or(0.0);
            for (key, doc) in &coll.docs {
                if let Some(t) = doc.get(field).and_then(Value::as_f64)
                    && t >= 0.0
                    && t <= now_s - after
                {
                    found.push(TtlCandidate {
                        db: db_name.clone(),
                        collection: coll_name.clone(),
                        key: key.clone(),
                        rev: doc.get("_rev").cloned().unwrap_or(Value::Null),
                    });
                }
            }
        }
    }
    found
}

fn ttl_remove(state: &State, found: &[TtlCandidate]) -> usize {
    let mut removed = 0;
    for c in found {
        let Some(db) = lock(&state.databases).get(&c.db).cloned() else {
            continue;
        };
        let mut db = lock(&db);
        let Some(coll) = db.collections.get_mut(&c.collection) else {
            continue;
        };
        if coll.docs.get(&c.key).and_then(|d| d.get("_rev")) == Some(&c.rev) {
            coll.docs.remove(&c.key);
            removed += 1;
        }
    }
    removed
}

impl Drop for Emulator {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

// ---------------------------------------------------------------------------
// HTTP

type Resp = Response<Full<Bytes>>;

fn base_headers(h: &mut HeaderMap) {
    // As recorded in the documentation's examples (e.g. RestVersion).
    h.insert("server", HeaderValue::from_static("ArangoDB"));
    h.insert(
        "x-arango-queue-time-seconds",
        HeaderValue::from_static("0.000000"),
    );
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        "cache-control",
        HeaderValue::from_static(
            "no-cache, no-store, must-revalidate, pre-check=0, post-check=0, max-age=0, s-maxage=0",
        ),
    );
    h.insert("expires", HeaderValue::from_static("0"));
    h.insert("pragma", HeaderValue::from_static("no-cache"));
}

fn json_response(status: u16, body: Value) -> Resp {
    let mut resp = Response::new(Full::new(Bytes::from(body.to_string())));
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    base_headers(resp.headers_mut());
    resp.headers_mut()
        .insert("content-type", HeaderValue::from_static("application/json"));
    resp
}

fn error(status: u16, error_num: i64, message: impl Into<String>) -> Resp {
    json_response(
        status,
        json!({ "code": status, "error": true, "errorMessage": message.into(), "errorNum": error_num }),
    )
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 3 <= bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
            if let Some(v) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn authenticate(state: &State, headers: &HeaderMap) -> Option<Caller> {
    let value = headers.get("authorization").and_then(|v| v.to_str().ok())?;
    if let Some(token) = value
        .strip_prefix("bearer ")
        .or_else(|| value.strip_prefix("Bearer "))
    {
        // docs.arango.ai/arangodb/3.12/develop/http-api/authentication/:
        // an expired token is refused with 401.
        let (user, exp_ms) = lock(&state.tokens).get(token.trim()).cloned()?;
        if exp_ms <= state.now_ms() {
            return None;
        }
        let user = lock(&state.users).get(&user).cloned()?;
        return Some(Caller { user });
    }
    let encoded = value.strip_prefix("Basic ")?;
    // arangors sends base64 without padding; curl and others pad.
    let engine = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
    );
    let decoded = engine.decode(encoded.trim()).ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (u, p) = text.split_once(':')?;
    let user = lock(&state.users).get(u).cloned()?;
    (user.password == p).then_some(Caller { user })
}

fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    query
        .unwrap_or("")
        .split('&')
        .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
        .map(percent_decode)
}

fn collection_answer(name: &str, c: &Collection) -> Resp {
    json_response(
        200,
        json!({
            "error": false,
            "code": 200,
            "id": c.id.to_string(),
            "name": name,
            "status": 3,
            "type": c.kind,
            "isSystem": false,
            "globallyUniqueId": format!("hEMU/{}", c.id),
        }),
    )
}

async fn handle(state: &State, req: Request<Incoming>) -> Resp {
    let method = req.method().clone();
    let uri = req.uri().clone();
    let headers = req.headers().clone();
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => Bytes::new(),
    };
    let path_and_query = uri
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| uri.path().to_owned());
    let known = if uri.path().ends_with("/_api/cursor") {
        serde_json::from_slice::<Value>(&body)
            .ok()
            .and_then(|v| {
                v.get("query")
                    .and_then(Value::as_str)
                    .and_then(aql::recognise)
            })
            .map(Known::label)
    } else {
        None
    };
    lock(&state.log).push(Logged {
        method: method.to_string(),
        path: path_and_query,
        query: known,
    });
    let (delay, hang, commit_then_hang) = {
        let f = lock(&state.faults);
        (f.delay, f.hang, f.commit_then_hang)
    };
    if hang {
        // Never answer: the connection stays open until the client gives up
        // or the emulator stops.
        std::future::pending::<()>().await;
    }
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let answer = route(state, &method, uri.path(), uri.query(), &headers, &body);
    if commit_then_hang {
        // The request ran (and committed); its answer never comes.
        std::future::pending::<()>().await;
    }
    answer
}

/// Who a request is, after authentication.
struct Caller {
    user: User,
}

impl Caller {
    fn database(&self, db: &str) -> Level {
        if self.user.admin {
            return Level::Rw;
        }
        self.user
            .databases
            .get(db)
            .or_else(|| self.user.databases.get("*"))
            .copied()
            .unwrap_or(Level::None)
    }

    fn collection(&self, db: &str, collection: &str) -> Level {
        if self.user.admin {
            return Level::Rw;
        }
        let key = |c: &str| (db.to_owned(), c.to_owned());
        self.user
            .collections
            .get(&key(collection))
            .or_else(|| self.user.collections.get(&key("*")))
            .copied()
            .unwrap_or(Level::None)
    }
}

fn forbidden() -> Resp {
    error(403, 11, "forbidden")
}

fn read_only(state: &State) -> Option<Resp> {
    lock(&state.faults)
        .read_only
        .then(|| error(403, 1004, "read only"))
}

/// `POST /_open/auth` (docs.arango.ai/arangodb/3.12/develop/http-api/authentication/#create-a-jwt-session-token):
/// `{username, password}` → 200 `{jwt}`; wrong credentials 401 / errorNum 401.
fn open_auth(state: &State, body: &[u8]) -> Resp {
    let spec = serde_json::from_slice::<Value>(body).unwrap_or(Value::Null);
    let user = spec.get("username").and_then(Value::as_str).unwrap_or("");
    let password = spec.get("password").and_then(Value::as_str).unwrap_or("");
    let ok = lock(&state.users)
        .get(user)
        .is_some_and(|u| u.password == password);
    if !ok {
        return error(401, 401, "Wrong credentials");
    }
    let n = state.next_id();
    let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let header = engine.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let exp_ms = state.now_ms() + state.token_lifetime_ms.load(Ordering::SeqCst);
    let payload = engine.encode(
        json!({ "preferred_username": user, "iss": "arangodb", "iat": state.now_ms() / 1000, "exp": exp_ms / 1000, "n": n })
            .to_string(),
    );
    let signature = engine.encode(format!("emulator-signature-{n}-{}", state.now_ms()));
    let token = format!("{header}.{payload}.{signature}");
    lock(&state.tokens).insert(token.clone(), (user.to_owned(), exp_ms));
    state.logins.fetch_add(1, Ordering::SeqCst);
    json_response(200, json!({ "jwt": token }))
}

fn route(
    state: &State,
    method: &Method,
    path: &str,
    query: Option<&str>,
    headers: &HeaderMap,
    body: &[u8],
) -> Resp {
    // The web interface (no authentication): arangors' connect checks the
    // `Server` header of `GET /`.
    if path == "/" {
        let mut resp = json_response(301, json!({}));
        resp.headers_mut().insert(
            "location",
            HeaderValue::from_static("/_db/_system/_admin/aardvark/index.html"),
        );
        return resp;
    }
    if path == "/_db/_system/_admin/aardvark/index.html" {
        let mut resp = Response::new(Full::new(Bytes::from_static(
            b"<!doctype html><title>ArangoDB Web Interface</title>",
        )));
        base_headers(resp.headers_mut());
        resp.headers_mut()
            .insert("content-type", HeaderValue::from_static("text/html"));
        return resp;
    }

    let (db_name, rest) = match path.strip_prefix("/_db/") {
        Some(tail) => match tail.split_once('/') {
            Some((db, rest)) => (percent_decode(db), format!("/{rest}")),
            None => (percent_decode(tail), "/".to_owned()),
        },
        None => ("_system".to_owned(), path.to_owned()),
    };

    if *method == Method::POST && rest == "/_open/auth" {
        return open_auth(state, body);
    }
    let Some(caller) = authenticate(state, headers) else {
        return error(401, 11, "not authorized to execute this request");
    };
    let db = lock(&state.databases).get(&db_name).cloned();
    // A user without access to a database is not told whether it exists:
    // 401 / 11 for both (RestVocbaseBaseHandler / GeneralServerFeature's
    // database check); only a user who may see every database learns 1228.
    if caller.database(&db_name) == Level::None {
        return error(401, 11, "not authorized to execute this request");
    }
    let Some(db) = db else {
        return error(404, 1228, "database not found");
    };
    let dbl = caller.database(&db_name);

    match (method, rest.as_str()) {
        (&Method::GET, "/_api/version") => json_response(
            200,
            json!({ "server": "arango", "license": "community", "version": "3.12.4" }),
        ),
        (&Method::GET, "/_api/database/current") => json_response(
            200,
            json!({
                "error": false,
                "code": 200,
                "result": {
                    "id": if db_name == "_system" { "1".to_owned() } else { state.next_id().to_string() },
                    "name": db_name,
                    "isSystem": db_name == "_system",
                    "path": "none",
                }
            }),
        ),
        (&Method::GET, "/_admin/time") => json_response(
            200,
            json!({ "error": false, "code": 200, "time": state.now_ms() as f64 / 1000.0 }),
        ),
        (&Method::POST, "/_api/collection") => {
            if dbl < Level::Rw {
                return forbidden();
            }
            if let Some(r) = read_only(state) {
                return r;
            }
            create_collection(state, &db, body)
        }
        (&Method::GET, p) if p.starts_with("/_api/collection/") => {
            let name = percent_decode(&p["/_api/collection/".len()..]);
            if caller.collection(&db_name, &name) == Level::None {
                return forbidden();
            }
            let db = lock(&db);
            match db.collections.get(&name) {
                Some(c) => collection_answer(&name, c),
                None => error(404, 1203, "collection or view not found"),
            }
        }
        (&Method::GET, "/_api/index") => {
            let Some(collection) = query_param(query, "collection") else {
                return error(400, 1204, "parameter 'collection' not found");
            };
            if caller.collection(&db_name, &collection) == Level::None {
                return forbidden();
            }
            let db = lock(&db);
            match db.collections.get(&collection) {
                Some(c) => {
                    let mut indexes = vec![json!({
                        "fields": ["_key"], "id": format!("{collection}/0"), "name": "primary",
                        "selectivityEstimate": 1, "sparse": false, "type": "primary", "unique": true,
                    })];
                    indexes.extend(c.indexes.iter().cloned());
                    let identifiers: Map<String, Value> = indexes
                        .iter()
                        .map(|i| (i["id"].as_str().unwrap_or("").to_owned(), i.clone()))
                        .collect();
                    json_response(
                        200,
                        json!({ "error": false, "code": 200, "indexes": indexes, "identifiers": identifiers }),
                    )
                }
                None => error(
                    404,
                    1203,
                    format!("collection or view not found: {collection}"),
                ),
            }
        }
        (&Method::DELETE, p) if p.starts_with("/_api/collection/") => {
            let name = percent_decode(&p["/_api/collection/".len()..]);
            let mut db = lock(&db);
            match db.collections.remove(&name) {
                Some(c) => json_response(
                    200,
                    json!({ "error": false, "code": 200, "id": c.id.to_string() }),
                ),
                None => error(404, 1203, "collection or view not found"),
            }
        }
        (&Method::POST, "/_api/index") => {
            if dbl < Level::Rw {
                return forbidden();
            }
            if let Some(r) = read_only(state) {
                return r;
            }
            create_index(state, &db, query, body)
        }
        (&Method::POST, "/_api/cursor") => cursor(state, &caller, &db_name, &db, body),
        (
            _,
            "/_api/version"
            | "/_api/database/current"
            | "/_admin/time"
            | "/_api/collection"
            | "/_api/index"
            | "/_api/cursor",
        ) => error(405, 405, "method not supported"),
        _ => error(404, 404, format!("unknown path '{path}'")),
    }
}

fn valid_collection_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic())
        && name.len() <= 256
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn valid_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= 254
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-.@()+,=;$!*'%:".contains(&b))
}

fn create_collection(state: &State, db: &Mutex<Database>, body: &[u8]) -> Resp {
    let Ok(spec) = serde_json::from_slice::<Value>(body) else {
        return error(400, 600, "invalid JSON object");
    };
    let Some(name) = spec.get("name").and_then(Value::as_str) else {
        return error(400, 1208, "illegal name");
    };
    if !valid_collection_name(name) {
        return error(400, 1208, "illegal name");
    }
    let kind = spec.get("type").and_then(Value::as_u64).unwrap_or(2);
    let mut db = lock(db);
    if db.collections.contains_key(name) {
        return error(409, 1207, "duplicate name");
    }
    let id = state.next_id();
    db.collections.insert(
        name.to_owned(),
        Collection {
            id,
            kind,
            ..Collection::default()
        },
    );
    json_response(
        200,
        json!({
            "error": false,
            "code": 200,
            "writeConcern": 1,
            "waitForSync": false,
            "usesRevisionsAsDocumentIds": true,
            "syncByRevision": true,
            "statusString": "loaded",
            "id": id.to_string(),
            "isSmartChild": false,
            "schema": null,
            "name": name,
            "type": kind,
            "status": 3,
            "cacheEnabled": false,
            "isSystem": false,
            "internalValidatorType": 0,
            "globallyUniqueId": format!("hEMU/{id}"),
            "keyOptions": { "allowUserKeys": true, "type": "traditional", "lastValue": 0 },
            "computedValues": null,
            "objectId": (id + 1).to_string(),
        }),
    )
}

fn create_index(state: &State, db: &Mutex<Database>, query: Option<&str>, body: &[u8]) -> Resp {
    let Some(collection) = query_param(query, "collection") else {
        return error(400, 1204, "parameter 'collection' not found");
    };
    let Ok(spec) = serde_json::from_slice::<Value>(body) else {
        return error(400, 600, "invalid JSON object");
    };
    let mut db = lock(db);
    let Some(coll) = db.collections.get_mut(&collection) else {
        return error(
            404,
            1203,
            format!("collection or view not found: {collection}"),
        );
    };
    if spec.get("type").and_then(Value::as_str) != Some("ttl") {
        return error(400, 10, "emulator: only ttl indexes are emulated");
    }
    let fields = match spec.get("fields").and_then(Value::as_array) {
        Some(f) if f.len() == 1 && f[0].is_string() => f.clone(),
        _ => return error(400, 10, "ttl index needs exactly one attribute path"),
    };
    let Some(expire_after) = spec.get("expireAfter").filter(|v| v.is_number()).cloned() else {
        return error(400, 10, "expireAfter attribute must be a number");
    };
    // arangod's TtlIndex / index factory: "expireAfter attribute must be a
    // number >= 0".
    if expire_after.as_f64().is_some_and(|v| v < 0.0) {
        return error(400, 10, "expireAfter attribute must be a number >= 0");
    }
    if let Some(existing) = coll.indexes.iter().find(|i| i["type"] == "ttl") {
        if existing["fields"] == Value::Array(fields.clone())
            && existing["expireAfter"].as_f64() == expire_after.as_f64()
        {
            let mut answer = existing.clone();
            answer["isNewlyCreated"] = json!(false);
            answer["code"] = json!(200);
            answer["error"] = json!(false);
            return json_response(200, answer);
        }
        return error(400, 10, "there can only be one ttl index per collection");
    }
    let id = state.next_id();
    let index = json!({
        "estimates": false,
        "expireAfter": expire_after,
        "fields": fields,
        "id": format!("{collection}/{id}"),
        "name": format!("idx_{id}"),
        "sparse": true,
        "type": "ttl",
        "unique": false,
    });
    coll.indexes.push(index.clone());
    let mut answer = index;
    answer["isNewlyCreated"] = json!(true);
    answer["code"] = json!(201);
    answer["error"] = json!(false);
    json_response(201, answer)
}

fn cursor(
    state: &State,
    caller: &Caller,
    db_name: &str,
    db: &Mutex<Database>,
    body: &[u8],
) -> Resp {
    if body.iter().all(u8::is_ascii_whitespace) {
        return error(400, 1502, "query is empty");
    }
    let Ok(request) = serde_json::from_slice::<Value>(body) else {
        return error(400, 600, "invalid JSON object");
    };
    let text = request.get("query").and_then(Value::as_str).unwrap_or("");
    if text.trim().is_empty() {
        return error(400, 1502, "query is empty");
    }
    if let Some((status, num, msg)) = lock(&state.faults).cursor_errors.pop_front() {
        return error(status, num, msg);
    }
    let Some(known) = aql::recognise(text) else {
        return error(
            400,
            1501,
            "AQL: syntax error: the emulator runs only shylock's fixed queries (while parsing)",
        );
    };
    let empty = Map::new();
    let bind = match request.get("bindVars") {
        None | Some(Value::Null) => &empty,
        Some(Value::Object(m)) => m,
        Some(_) => return error(400, 1550, "invalid structure of bind parameters"),
    };
    for declared in known.bind_params() {
        if !bind.contains_key(*declared) {
            return error(
                400,
                1551,
                format!(
                    "AQL: no value specified for declared bind parameter '{declared}' (while parsing)"
                ),
            );
        }
    }
    for given in bind.keys() {
        if !known.bind_params().contains(&given.as_str()) {
            return error(
                400,
                1552,
                format!(
                    "AQL: bind parameter '{given}' was not declared in the query (while parsing)"
                ),
            );
        }
    }
    let Some(collection) = bind.get("@collection").and_then(Value::as_str) else {
        return error(
            400,
            1553,
            "AQL: bind parameter '@collection' has an invalid value or type (while parsing)",
        );
    };
    // A value of any type is valid for `@key`: the query compares it with
    // `_key` (no match unless a string) and the INSERT fails with 1221 if it
    // is not a valid key string.
    let key_value = bind.get("key").cloned().unwrap_or(Value::Null);
    let key = key_value.as_str().unwrap_or("");
    let writes_collection = known != Known::Inspect;
    // Access is checked when the query is set up, for every collection it
    // names: read/write for the modified one (ERROR_FORBIDDEN, 403).
    let needed = if writes_collection {
        Level::Rw
    } else {
        Level::Ro
    };
    if caller.collection(db_name, collection) < needed {
        return error(
            403,
            11,
            format!(
                "AQL: forbidden: no {needed:?} access to collection '{collection}' (while parsing)"
            ),
        );
    }
    if writes_collection && let Some(r) = read_only(state) {
        return r;
    }
    let synced = aql::wait_for_sync(text);
    let started = std::time::Instant::now();
    // One mutex per database: the query runs as one transaction.
    let mut guard = lock(db);
    let db = &mut *guard;
    let Some(coll) = db.collections.get_mut(collection) else {
        return error(
            404,
            1203,
            format!("AQL: collection or view not found: {collection} (while parsing)"),
        );
    };
    let now = state.now_ms();
    let current = key_value.as_str().and_then(|k| coll.docs.get(k));
    let executed = aql::execute(known, bind, current, now);
    let mut writes = 0;
    if let Some(mut doc) = executed.write {
        if !key_value.is_string() || !valid_key(key) {
            return error(400, 1221, "AQL: illegal document key (while executing)");
        }
        if coll.kind == 3 {
            return error(
                400,
                1233,
                "AQL: edge attribute missing or invalid (while executing)",
            );
        }
        doc.insert("_key".into(), json!(key));
        doc.insert("_id".into(), json!(format!("{collection}/{key}")));
        doc.insert("_rev".into(), json!(state.new_rev()));
        let before = coll.docs.insert(key.to_owned(), doc);
        if synced {
            // The WAL is synced in order: this sync makes every earlier write
            // durable too.
            db.unsynced.clear();
            let latency = lock(&state.faults).sync_latency;
            if !latency.is_zero() {
                std::thread::sleep(latency);
            }
        } else {
            db.unsynced
                .entry((collection.to_owned(), key.to_owned()))
                .or_insert(before);
        }
        writes = 1;
    }
    json_response(
        201,
        json!({
            "result": [executed.row],
            "hasMore": false,
            "cached": false,
            "extra": {
                "warnings": [],
                "stats": {
                    "writesExecuted": writes,
                    "writesIgnored": 0,
                    "documentLookups": 0,
                    "seeks": 0,
                    "scannedFull": 0,
                    "scannedIndex": 1,
                    "cursorsCreated": 1,
                    "cursorsRearmed": 0,
                    "cacheHits": 0,
                    "cacheMisses": 0,
                    "filtered": 0,
                    "httpRequests": 0,
                    "executionTime": started.elapsed().as_secs_f64(),
                    "peakMemoryUsage": 32768,
                    "intermediateCommits": 0,
                }
            },
            "error": false,
            "code": 201,
        }),
    )
}
