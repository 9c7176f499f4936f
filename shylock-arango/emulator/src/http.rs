//! The emulator's HTTP server: the accept loop, request logging and the
//! injected faults, authentication, routing, the handlers and the answers
//! in ArangoDB's format (what it answers is listed in the docs of
//! [`emulator`](crate::emulator)). The state it serves, and the test
//! controls, are in [`Emulator`](crate::Emulator).

use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

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
use crate::emulator::{Collection, Database, Level, Logged, State, User, lock};

/// Accept connections on `listener` and serve each on a task of its own,
/// forever; dropping the future aborts the connections' tasks.
pub(crate) async fn serve(listener: tokio::net::TcpListener, st: Arc<State>) {
    let mut conns = tokio::task::JoinSet::new();
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let st = Arc::clone(&st);
        conns.spawn(async move {
            let svc = service_fn(move |req| {
                let st = Arc::clone(&st);
                async move { Ok::<_, Infallible>(handle(st, req).await) }
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
        while conns.try_join_next().is_some() {}
    }
}

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
    // The scheme is matched case-insensitively, as the server's
    // `strncasecmp` on `basic ` / `bearer ` (HttpCommTask's auth check).
    let scheme = |name: &str| {
        value
            .get(..name.len())
            .filter(|s| s.eq_ignore_ascii_case(name))
            .map(|_| &value[name.len()..])
    };
    if let Some(token) = scheme("bearer ") {
        // docs.arango.ai/arangodb/3.12/develop/http-api/authentication/:
        // an expired token is refused with 401.
        let (user, exp_ms) = lock(&state.tokens).get(token.trim()).cloned()?;
        if exp_ms <= state.now_ms() {
            return None;
        }
        let user = lock(&state.users).get(&user).cloned()?;
        return Some(Caller { user });
    }
    let encoded = scheme("basic ")?;
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

async fn handle(state: Arc<State>, req: Request<Incoming>) -> Resp {
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
        body: serde_json::from_slice(&body).ok(),
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
    // A request may wait for a collection's lock (as a server thread does):
    // off the runtime's workers, so that other requests go on meanwhile.
    let st = Arc::clone(&state);
    let answer = tokio::task::spawn_blocking(move || {
        route(&st, &method, uri.path(), uri.query(), &headers, &body)
    })
    .await
    .unwrap_or_else(|_| error(500, 4, "emulator: the request's handler panicked"));
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
    /// The level explicitly configured for a database, if any.
    fn configured(&self, db: &str) -> Option<Level> {
        self.user.databases.get(db).copied()
    }

    /// `auth::User::databaseAuthLevel` (arangod/Auth/User.cpp, 3.11/3.12):
    /// the database's own level; when none is configured, the best of the
    /// `*` database's and `_system`'s.
    fn database(&self, db: &str) -> Level {
        if self.user.admin {
            return Level::Rw;
        }
        if let Some(level) = self.configured(db) {
            return level;
        }
        let mut level = self.configured("*").unwrap_or(Level::None);
        if db != "_system" {
            level = level.max(self.configured("_system").unwrap_or(Level::None));
        }
        level
    }

    /// `auth::User::collectionAuthLevel` (same file) for a non-system
    /// collection: an explicit grant on the collection wins; otherwise the
    /// best of the database's level, its `*` collection level, `_system`'s
    /// database level, and the `*` database's level and `*` collection level.
    fn collection(&self, db: &str, collection: &str) -> Level {
        if self.user.admin {
            return Level::Rw;
        }
        let grant = |d: &str, c: &str| {
            self.user
                .collections
                .get(&(d.to_owned(), c.to_owned()))
                .copied()
        };
        if let Some(level) = grant(db, collection) {
            return level;
        }
        let mut level = Level::None;
        for l in [
            self.configured(db),
            grant(db, "*"),
            (db != "_system")
                .then(|| self.configured("_system"))
                .flatten(),
            self.configured("*"),
            grant("*", "*"),
        ]
        .into_iter()
        .flatten()
        {
            level = level.max(l);
        }
        level
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
    // RestAuthHandler: a body that is not an object, or a `username` or
    // `password` that is missing or not a string, is `badRequest()`:
    // 400 / 400 "invalid JSON" (not a credentials error).
    let (Some(user), Some(password)) = (
        spec.get("username").and_then(Value::as_str),
        spec.get("password").and_then(Value::as_str),
    ) else {
        return error(400, 400, "invalid JSON");
    };
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
        (&Method::GET, p) if p.starts_with("/_api/collection/") && p.ends_with("/properties") => {
            let name = percent_decode(&p["/_api/collection/".len()..p.len() - "/properties".len()]);
            if caller.collection(&db_name, &name) == Level::None {
                return forbidden();
            }
            let db = lock(&db);
            match db.collections.get(&name) {
                Some(c) => properties_answer(&name, c),
                None => error(404, 1203, "collection or view not found"),
            }
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
    let user_keys_refused = spec["keyOptions"]
        .get("allowUserKeys")
        .and_then(Value::as_bool)
        == Some(false);
    let shard_keys = spec.get("shardKeys").filter(|v| v.is_array()).cloned();
    let mut db = lock(db);
    if db.collections.contains_key(name) {
        return error(409, 1207, "duplicate name");
    }
    let id = state.next_id();
    let coll = Collection {
        id,
        kind,
        user_keys_refused,
        shard_keys,
        ..Collection::default()
    };
    let answer = properties_answer(name, &coll);
    db.collections.insert(name.to_owned(), coll);
    answer
}

/// The collection's properties, as `POST /_api/collection` and
/// `GET /_api/collection/{name}/properties` answer them
/// (docs.arango.ai/arangodb/3.12/develop/http-api/collections/#get-the-properties-of-a-collection);
/// `shardKeys` only when given at creation, as a cluster answers them.
fn properties_answer(name: &str, c: &Collection) -> Resp {
    let id = c.id;
    let mut answer = json!({
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
        "type": c.kind,
        "status": 3,
        "cacheEnabled": false,
        "isSystem": false,
        "internalValidatorType": 0,
        "globallyUniqueId": format!("hEMU/{id}"),
        "keyOptions": { "allowUserKeys": !c.user_keys_refused, "type": "traditional", "lastValue": 0 },
        "computedValues": null,
        "objectId": (id + 1).to_string(),
    });
    if let Some(keys) = &c.shard_keys {
        answer["shardKeys"] = keys.clone();
        answer["numberOfShards"] = json!(1);
    }
    json_response(200, answer)
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
    let race = lock(&state.faults).index_race.take();
    if let Some(theirs) = race
        && !coll.indexes.iter().any(|i| i["type"] == "ttl")
    {
        let id = state.next_id();
        coll.indexes.push(json!({
            "estimates": false,
            "expireAfter": theirs,
            "fields": fields.clone(),
            "id": format!("{collection}/{id}"),
            "name": format!("idx_{id}"),
            "sparse": true,
            "type": "ttl",
            "unique": false,
        }));
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

/// Take `m` within `timeout`, retrying a try-lock as the server's
/// `RocksDBMetaCollection::doLock` does (no queue: whoever tries when the
/// lock is free gets it).
fn lock_within(
    m: &Mutex<Database>,
    timeout: std::time::Duration,
) -> Option<std::sync::MutexGuard<'_, Database>> {
    let until = std::time::Instant::now() + timeout;
    loop {
        match m.try_lock() {
            Ok(g) => return Some(g),
            Err(std::sync::TryLockError::Poisoned(e)) => return Some(e.into_inner()),
            Err(std::sync::TryLockError::WouldBlock) => {}
        }
        if std::time::Instant::now() >= until {
            return None;
        }
        std::thread::sleep(std::time::Duration::from_micros(500));
    }
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
    let writes_collection = !matches!(known, Known::Inspect | Known::List);
    // Access is checked when the query is set up, for every collection it
    // names: read/write for the modified one (ERROR_FORBIDDEN, 403).
    let needed = if writes_collection {
        Level::Rw
    } else {
        Level::Ro
    };
    // TransactionState::checkCollectionPermission, while the query's
    // transaction is made (still "parsing"): no access at all is 403 / 11
    // `forbidden`; read-only access to a collection the query writes is
    // 403 / 1004 `read only`, the message naming the access wanted
    // (`[exclusive]` for the backend's writes, which take the collection
    // exclusively). Query::execute adds the `AQL: ` and `(while …)` parts.
    let level = caller.collection(db_name, collection);
    if level < needed {
        let access = if writes_collection {
            aql::access_type(text)
        } else {
            "read"
        };
        let (num, what) = if level == Level::None {
            (11, "forbidden")
        } else {
            (1004, "read only")
        };
        return error(
            403,
            num,
            format!("AQL: {what}: {collection} [{access}] (while parsing)"),
        );
    }
    if writes_collection && let Some(r) = read_only(state) {
        return r;
    }
    let synced = aql::wait_for_sync(text);
    let started = std::time::Instant::now();
    // `DATE_NOW()` is folded to a constant while the server plans the query
    // (Ast::optimizeFunctionCall from Query::preparePlan), before the
    // transaction takes the collection's lock: the clock is read first.
    let now = state.now_ms();
    // The lock wait is bounded by the query's `options.lockTimeout`
    // (transaction::Options, read by QueryOptions; RocksDBMetaCollection::doLock
    // retries a try-lock until then, then fails with 18). Without it, or
    // when not positive: the server's default, 900 s. Reads take no lock.
    let lock_timeout = request["options"]["lockTimeout"]
        .as_f64()
        .filter(|t| *t > 0.0 && t.is_finite())
        .unwrap_or(900.0);
    let lock_timeout = std::time::Duration::from_secs_f64(lock_timeout.min(1e9));
    let lock_timed_out = || {
        error(
            500,
            18,
            format!(
                "timed out after {:.6} s waiting for exclusive-lock on collection {db_name}/{collection}",
                lock_timeout.as_secs_f64()
            ),
        )
    };
    let mut guard = if writes_collection {
        // An injected wait: another transaction holds the lock for this long.
        let wait = lock(&state.faults).lock_waits.pop_front();
        if let Some(wait) = wait {
            if wait > lock_timeout {
                std::thread::sleep(lock_timeout);
                return lock_timed_out();
            }
            std::thread::sleep(wait);
        }
        let remaining = lock_timeout.saturating_sub(started.elapsed());
        match lock_within(db, remaining) {
            Some(g) => g,
            None => return lock_timed_out(),
        }
    } else {
        lock(db)
    };
    // One mutex per database: the query runs as one transaction.
    let db = &mut *guard;
    let Some(coll) = db.collections.get_mut(collection) else {
        return error(
            404,
            1203,
            format!("AQL: collection or view not found: {collection} (while parsing)"),
        );
    };
    let executed = if known == Known::List {
        aql::list(bind, coll.docs.values(), now)
    } else {
        let current = key_value.as_str().and_then(|k| coll.docs.get(k));
        aql::execute(known, bind, current, now)
    };
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
        // Only the INSERT gives a `_key`; UPDATE finds the document by it.
        if known == Known::Acquire && coll.user_keys_refused {
            return error(400, 1222, "AQL: unexpected document key (while executing)");
        }
        if known == Known::Acquire
            && coll
                .shard_keys
                .as_ref()
                .is_some_and(|k| *k != json!(["_key"]))
        {
            return error(
                400,
                1466,
                "AQL: must not specify _key for this collection (while executing)",
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
