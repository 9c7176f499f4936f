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
//!   which gives a single server's atomicity; `_rev` changes on every write;
//!   the query's clock (`DATE_NOW()`) is read before its lock is waited for,
//!   and the wait is bounded by `options.lockTimeout` (default 900 s; 500 /
//!   18 beyond it), as the server plans, then locks.
//!
//! * `POST /_open/auth` issues JWTs that expire on the emulated clock
//!   (400 / 400 when `username` or `password` is missing);
//!   `Basic` / `Bearer` matched case-insensitively;
//!   users with per-database and per-collection access levels ([`Level`]),
//!   resolved as `auth::User` does (explicit, then the `*` database's,
//!   `_system`'s and the `*` collection's levels), 403 / 11 beyond them,
//!   401 / 11 for a database a non-root user cannot see (whether or not it
//!   exists);
//! * `GET /_api/collection/{name}`, `GET /_api/collection/{name}/properties`
//!   (`type`, `keyOptions`; `shardKeys` when given at creation, as a
//!   cluster answers), `GET /_api/index?collection=`;
//! * a query writing a collection the user may only read: 403 / 1004
//!   `AQL: read only: <collection> [exclusive] (while parsing)`, as
//!   `TransactionState::checkCollectionPermission` answers;
//! * a TTL collector every 30 s that selects `0 <= value <= now - expireAfter`
//!   and removes by `_key` and `_rev`;
//! * durability: writes without `waitForSync` are lost by [`Emulator::crash`]
//!   until a synced write syncs them.
//!
//! The table in `shylock-arango/README.md` cites the page each behaviour
//! follows. Test controls: a request log, a clock offset, running the TTL
//! collector in one or two steps, injected delays, hangs (no answer at all),
//! commit-then-hang, read-only mode, a modelled fsync latency, crashes,
//! injected cursor errors, a TTL index created by another process just
//! before the next index creation ([`Emulator::race_next_index`]) and a
//! query made to wait for its lock, writing even after its client gave up
//! ([`Emulator::delay_lock`]).
//!
//! This module holds the emulator's state and those controls; the HTTP
//! server (routing, authentication, the handlers and their answers) is in
//! the crate's `http.rs`.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value};

use crate::http;

/// One request as the emulator saw it.
#[derive(Debug, Clone)]
pub struct Logged {
    pub method: String,
    /// Path and query string, as sent.
    pub path: String,
    /// For `POST /_api/cursor` with a known query: `acquire`, `renew`,
    /// `release` or `inspect`.
    pub query: Option<&'static str>,
    /// The request's body, when it was JSON.
    pub body: Option<Value>,
}

#[derive(Debug, Default)]
pub(crate) struct Collection {
    pub(crate) id: u64,
    pub(crate) kind: u64,
    pub(crate) docs: BTreeMap<String, Map<String, Value>>,
    pub(crate) indexes: Vec<Value>,
    /// `keyOptions.allowUserKeys: false` (the default allows them).
    pub(crate) user_keys_refused: bool,
    /// `shardKeys`, when given at creation (a cluster's; a single server
    /// answers none).
    pub(crate) shard_keys: Option<Value>,
}

#[derive(Debug, Default)]
pub(crate) struct Database {
    pub(crate) collections: HashMap<String, Collection>,
    /// Writes not yet synced to disk: (collection, key) → the document as it
    /// was on disk before them. A write with `waitForSync` syncs the whole
    /// write-ahead log (RocksDB syncs the WAL in order), which empties this.
    pub(crate) unsynced: HashMap<(String, String), Option<Map<String, Value>>>,
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
pub(crate) struct User {
    pub(crate) password: String,
    /// Root-like: Administrate on every database, Read-Write on every collection.
    pub(crate) admin: bool,
    pub(crate) databases: HashMap<String, Level>,
    /// (database, collection or `*`) → level.
    pub(crate) collections: HashMap<(String, String), Level>,
}

#[derive(Debug, Default)]
pub(crate) struct Faults {
    pub(crate) delay: Duration,
    pub(crate) hang: bool,
    /// Run the request (commit its writes), then never answer.
    pub(crate) commit_then_hang: bool,
    pub(crate) read_only: bool,
    /// How long a write with `waitForSync` takes to reach the disk, spent
    /// while the query holds its lock (a model of the fsync).
    pub(crate) sync_latency: Duration,
    pub(crate) cursor_errors: VecDeque<(u16, i64, String)>,
    /// Lock waits for the next writing cursor queries, one each: the query
    /// reads its clock (plans), then waits this long for the collection's
    /// lock (another transaction holds it), bounded by its `lockTimeout`.
    pub(crate) lock_waits: VecDeque<Duration>,
    /// Before the next `POST /_api/index`, another process's TTL index with
    /// this `expireAfter` (on the requested fields) is created first.
    pub(crate) index_race: Option<Value>,
}

pub(crate) struct State {
    pub(crate) users: Mutex<HashMap<String, User>>,
    /// Issued JWTs: token → (user, expiry in ms of the emulated clock).
    pub(crate) tokens: Mutex<HashMap<String, (String, i64)>>,
    pub(crate) token_lifetime_ms: AtomicI64,
    pub(crate) logins: AtomicU64,
    pub(crate) databases: Mutex<HashMap<String, Arc<Mutex<Database>>>>,
    pub(crate) faults: Mutex<Faults>,
    pub(crate) log: Mutex<Vec<Logged>>,
    clock_offset_ms: AtomicI64,
    ids: AtomicU64,
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl State {
    pub(crate) fn now_ms(&self) -> i64 {
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        wall + self.clock_offset_ms.load(Ordering::SeqCst)
    }

    pub(crate) fn next_id(&self) -> u64 {
        self.ids.fetch_add(1, Ordering::SeqCst)
    }

    pub(crate) fn new_rev(&self) -> String {
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
                    let serve = http::serve(listener, Arc::clone(&st));
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
                    // Dropping `serve` aborts the connections' tasks.
                    tokio::select! {
                        _ = serve => {}
                        _ = ttl => {}
                        _ = stopped => {}
                    }
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

    /// Make the next writing cursor query (acquire, renew, release) wait
    /// `d` for its collection's lock, as if another transaction held it:
    /// the query has read its clock already (the server folds `DATE_NOW()`
    /// while planning, before it locks), and it goes on after the wait even
    /// if its client gave up meanwhile (a server does not notice), so its
    /// write lands late. A wait longer than the query's `lockTimeout`
    /// (default 900 s) ends at that bound with 500 / 18 and no write.
    /// Calls queue up: one wait per query.
    pub fn delay_lock(&self, d: Duration) {
        lock(&self.state.faults).lock_waits.push_back(d);
    }

    /// Make the next `POST /_api/index` lose a race: just before it runs,
    /// another process creates a TTL index on the same fields with
    /// `expire_after` (when the collection has no TTL index yet). The
    /// request then meets that index as the server would: the same
    /// definition is answered 200 (existing), another one 400 / 10.
    pub fn race_next_index(&self, expire_after: Value) {
        lock(&self.state.faults).index_race = Some(expire_after);
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
    /// Remove a document, as an operator would (`true` if it was there).
    pub fn remove_document(&self, db: &str, collection: &str, key: &str) -> bool {
        let db = self.db(db);
        let mut db = lock(&db);
        db.collections
            .get_mut(collection)
            .is_some_and(|coll| coll.docs.remove(key).is_some())
    }

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
