//! Faults on the wire (issue 11): servers that stop answering, die, refuse
//! `hello`, refuse retryable writes, report a sharded collection, answer
//! transient errors; and what every command carries so that nothing hangs.
//!
//! The faults come from `shylock_testkit::proxy` (a MongoDB wire proxy that
//! can hold every request, answer a named command with a chosen reply, or
//! lose an answer) in front of the tests' server, or from a DocumentDB whose
//! gateway the test kills. Server: DocumentDB started by the test support, or
//! the real MongoDB at `SHYLOCK_MONGODB_URI` (single host) behind the proxy;
//! the killed-server tests always kill a DocumentDB of their own.
//!
//! Time bounds are generous ("returned within the limit plus slack") so that
//! the tests pass on a loaded machine.

mod support;

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mongodb::bson::{Document, doc};
use mongodb::event::EventHandler;
use mongodb::event::command::CommandEvent;
use shylock_core::backend::{
    AcquireOutcome, AcquireRequest, AsyncBackend, InspectRequest, LockRecord, ReleaseOutcome,
    ReleaseRequest, RenewOutcome, RenewRequest, SyncBackend,
};
use shylock_core::{
    AsyncLock, Backend, BackendError, BackendErrorKind, Error, FencingToken, Lock, LockName,
    OwnerId, Timestamp,
};
use shylock_mongo::{MongoBackend, MongoOptions};
use shylock_testkit::proxy::Proxy;

/// The caller's limit in the hang tests.
const LIMIT: Duration = Duration::from_secs(2);
/// What a loaded machine may add to it.
const SLACK: Duration = Duration::from_secs(8);
const LEASE: Duration = Duration::from_secs(30);

/// The address of the tests' server (for the proxy's upstream).
fn upstream() -> SocketAddr {
    let uri = support::server().uri();
    let rest = uri.trim_start_matches("mongodb://");
    let hosts = rest.split(['/', '?']).next().unwrap_or(rest);
    let host = hosts.rsplit('@').next().unwrap_or(hosts);
    let host = host.split(',').next().unwrap_or(host);
    let host = if host.contains(':') {
        host.to_owned()
    } else {
        format!("{host}:27017")
    };
    host.to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .unwrap_or_else(|| panic!("cannot resolve {host} (from {uri}) for the proxy"))
}

/// A proxy in front of the tests' server: serializing on FerretDB,
/// pass-through (each client connection its own upstream connection, which
/// authenticates itself) on DocumentDB and MongoDB.
fn proxy() -> Proxy {
    Proxy::start(upstream(), support::proxy_mode()).expect("the proxy")
}

/// The connection string through `proxy`, with the server's credentials.
fn through(proxy: &Proxy) -> String {
    support::via(&support::server().uri(), proxy.addr())
}

/// Options of the tests: the support's, with the limits of the hang tests.
fn options() -> MongoOptions {
    support::options()
        .setup_timeout(LIMIT)
        .request_timeout(LIMIT)
}

/// [`options`], with room for the set-up itself on a loaded machine (a
/// DocumentDB index build can take seconds): for the `create` before the
/// fault, whose calls are then held to `LIMIT`.
fn setup_options() -> MongoOptions {
    options().setup_timeout(LIMIT + SLACK)
}

fn within_limit(what: &str, started: Instant) {
    let took = started.elapsed();
    assert!(
        took <= LIMIT + SLACK,
        "{what} took {took:?}, more than the limit {LIMIT:?} plus {SLACK:?} of slack"
    );
}

/// A client (one connection) with a rare heartbeat, so that the monitor's
/// `hello` does not meet a fault meant for the backend's.
fn client_options(uri: &str) -> mongodb::options::ClientOptions {
    let mut options = support::client_options(uri, Some(1));
    options.heartbeat_freq = Some(Duration::from_secs(60));
    options
}

/// Call the primitive `$method` of either form, blocking.
macro_rules! dispatch {
    ($form:expr, $method:ident, $arg:expr) => {
        match $form {
            Form::Async(b, rt) => rt.block_on(AsyncBackend::$method(b, $arg)),
            Form::Sync(b) => SyncBackend::$method(b, $arg),
        }
    };
}

/// One backend form behind a uniform blocking interface.
enum Form {
    Async(MongoBackend, tokio::runtime::Runtime),
    Sync(shylock_mongo::sync::MongoBackend),
}

impl Form {
    fn label(&self) -> &'static str {
        match self {
            Form::Async(..) => "async",
            Form::Sync(_) => "sync",
        }
    }

    /// `create_with` through a new client of `uri`.
    fn create(
        sync: bool,
        uri: &str,
        db: &str,
        options: MongoOptions,
        handler: Option<EventHandler<CommandEvent>>,
    ) -> Result<Form, Error> {
        let mut client_options = client_options(uri);
        client_options.command_event_handler = handler;
        if sync {
            let client = mongodb::sync::Client::with_options(client_options).expect("client");
            shylock_mongo::sync::MongoBackend::create_with(&client, db, options).map(Form::Sync)
        } else {
            let rt = tokio::runtime::Runtime::new().expect("runtime");
            let backend = rt.block_on(async {
                let client = mongodb::Client::with_options(client_options).expect("client");
                MongoBackend::create_with(&client, db, options).await
            });
            backend.map(|b| Form::Async(b, rt))
        }
    }

    /// The lock API's `acquire_timeout` of lock `name` in this form; the
    /// guard's token.
    fn lock_acquire(&self, name: &str, timeout: Duration) -> Result<FencingToken, Error> {
        let handle = self.handle();
        match self {
            Form::Async(_, rt) => rt.block_on(async {
                AsyncLock::with_backend(name, &handle)
                    .acquire_timeout(timeout)
                    .await
                    .map(|g| g.token())
            }),
            Form::Sync(_) => Lock::with_backend(name, &handle)
                .acquire_timeout(timeout)
                .map(|g| g.token()),
        }
    }

    fn handle(&self) -> Backend {
        match self {
            Form::Async(b, _) => Backend::from(b.clone()),
            Form::Sync(b) => Backend::from(b.clone()),
        }
    }

    fn acquire(
        &self,
        name: &LockName,
        owner: &OwnerId,
        deadline: Option<Instant>,
    ) -> Result<AcquireOutcome, BackendError> {
        let req = AcquireRequest {
            name,
            owner,
            lease: LEASE,
            now: Timestamp::local_now(),
            deadline,
        };
        dispatch!(self, try_acquire, req)
    }

    fn renew(
        &self,
        name: &LockName,
        owner: &OwnerId,
        deadline: Option<Instant>,
    ) -> Result<RenewOutcome, BackendError> {
        let req = RenewRequest {
            name,
            owner,
            token: shylock_core::FencingToken(1),
            lease: LEASE,
            now: Timestamp::local_now(),
            deadline,
        };
        dispatch!(self, renew, req)
    }

    fn release(
        &self,
        name: &LockName,
        owner: &OwnerId,
        deadline: Option<Instant>,
    ) -> Result<ReleaseOutcome, BackendError> {
        let req = ReleaseRequest {
            name,
            owner,
            token: shylock_core::FencingToken(1),
            now: Timestamp::local_now(),
            deadline,
        };
        dispatch!(self, release, req)
    }

    fn inspect(
        &self,
        name: &LockName,
        deadline: Option<Instant>,
    ) -> Result<Option<LockRecord>, BackendError> {
        let req = InspectRequest {
            name,
            now: Timestamp::local_now(),
            deadline,
        };
        dispatch!(self, inspect, req)
    }

    fn server_time(&self, deadline: Option<Instant>) -> Result<Timestamp, BackendError> {
        dispatch!(self, server_time, deadline)
    }
}

fn name(s: &str) -> LockName {
    LockName::new(s.to_owned()).expect("lock name")
}

/// Every primitive, with the caller's deadline and with none (then
/// `request_timeout` bounds it), returns within the limit with an error
/// while the server does not answer; `create` too (`setup_timeout`).
fn every_call_returns_within_the_limit(form: &Form, uri: &str, db: &str, sync: bool, case: &str) {
    let label = format!("{} {case}", form.label());
    let (n, me) = (name("held"), OwnerId::random());
    for deadline in [Some(LIMIT), None] {
        let at = || deadline.map(|d| Instant::now() + d);
        let tag = if deadline.is_some() {
            "with a deadline"
        } else {
            "without a deadline"
        };
        let started = Instant::now();
        let r = form.acquire(&name("other"), &OwnerId::random(), at());
        within_limit(&format!("{label}: acquire {tag} ({r:?})"), started);
        assert!(r.is_err(), "{label}: acquire {tag}: {r:?}");
        let started = Instant::now();
        let r = form.renew(&n, &me, at());
        within_limit(&format!("{label}: renew {tag} ({r:?})"), started);
        assert!(r.is_err(), "{label}: renew {tag}: {r:?}");
        let started = Instant::now();
        let r = form.release(&n, &me, at());
        within_limit(&format!("{label}: release {tag} ({r:?})"), started);
        assert!(r.is_err(), "{label}: release {tag}: {r:?}");
        let started = Instant::now();
        let r = form.inspect(&n, at());
        within_limit(&format!("{label}: inspect {tag} ({r:?})"), started);
        assert!(r.is_err(), "{label}: inspect {tag}: {r:?}");
        let started = Instant::now();
        let r = form.server_time(at());
        within_limit(&format!("{label}: server time {tag} ({r:?})"), started);
        assert!(r.is_err(), "{label}: server time {tag}: {r:?}");
    }
    // The lock API: acquire_timeout and inspect with a timeout.
    let started = Instant::now();
    let r = form.lock_acquire("api", LIMIT);
    within_limit(&format!("{label}: acquire_timeout ({r:?})"), started);
    assert!(r.is_err(), "{label}: acquire_timeout: {r:?}");
    // `create` through a new client: the cause comes first.
    let started = Instant::now();
    let r = Form::create(sync, uri, db, options(), None).map(|_| ());
    within_limit(&format!("{label}: create ({r:?})"), started);
    let err = r.expect_err("create must fail");
    assert!(
        err.to_string()
            .contains("no answer from the MongoDB server")
            && err.to_string().contains("setup_timeout"),
        "{label}: create says what it waited for: {err}"
    );
}

fn blackhole_case(sync: bool) {
    let db = support::unique_db(if sync { "bh_sync" } else { "bh_async" });
    let proxy = proxy();
    let form = Form::create(sync, &through(&proxy), &db, setup_options(), None).expect("create");
    let (n, me) = (name("held"), OwnerId::random());
    assert!(matches!(
        form.acquire(&n, &me, None),
        Ok(AcquireOutcome::Acquired(_))
    ));
    proxy.blackhole(Duration::from_secs(600));
    every_call_returns_within_the_limit(&form, &through(&proxy), &db, sync, "blackhole");
    proxy.clear_faults();
}

// Done when: every call returns within the caller's limit while the server
// stops answering (a blackhole: requests and replies held).
#[test]
fn async_calls_return_within_the_limit_when_the_server_stops_answering() {
    blackhole_case(false);
}

#[test]
fn sync_calls_return_within_the_limit_when_the_server_stops_answering() {
    blackhole_case(true);
}

fn killed_case(sync: bool) {
    // A DocumentDB of the test's own: its gateway is killed.
    let mut server = support::own_server();
    let db = support::unique_db(if sync { "kill_sync" } else { "kill_async" });
    let form = Form::create(sync, &server.uri(), &db, setup_options(), None).expect("create");
    let (n, me) = (name("held"), OwnerId::random());
    assert!(matches!(
        form.acquire(&n, &me, None),
        Ok(AcquireOutcome::Acquired(_))
    ));
    server.kill_gateway();
    every_call_returns_within_the_limit(&form, &server.uri(), &db, sync, "killed");
}

// Done when: every call returns within the caller's limit when the server is
// killed.
#[test]
fn async_calls_return_within_the_limit_when_the_server_is_killed() {
    killed_case(false);
}

#[test]
fn sync_calls_return_within_the_limit_when_the_server_is_killed() {
    killed_case(true);
}

// Issue 12 item 5: a closed port fails within the set-up deadline (default
// 10 s, not the driver's 30 s), saying what it waited for.
#[test]
fn closed_port_fails_within_the_setup_deadline() {
    for sync in [false, true] {
        let started = Instant::now();
        let r = Form::create(sync, &support::dead_uri(), "db", support::options(), None);
        let took = started.elapsed();
        let err = r.map(|_| ()).expect_err("nothing listens");
        assert!(
            took <= shylock_mongo::DEFAULT_SETUP_TIMEOUT + SLACK,
            "create took {took:?}"
        );
        assert_eq!(err.backend_kind(), Some(BackendErrorKind::Timeout), "{err}");
        assert!(err.to_string().contains("is the server running"), "{err}");
    }
}

// Issue 11 item 1: a server that refuses `hello` (Azure Cosmos DB for
// MongoDB RU answers 115 CommandNotSupported) is asked `isMaster`.
#[test]
fn hello_refused_falls_back_to_is_master() {
    for sync in [false, true] {
        let db = support::unique_db("hello115");
        let proxy = proxy();
        let form =
            Form::create(sync, &through(&proxy), &db, support::options(), None).expect("create");
        proxy.fail_command(
            "hello",
            doc! { "ok": 0, "code": 115, "codeName": "CommandNotSupported",
            "errmsg": "Command hello not supported" },
            Some(1),
        );
        let t = form
            .server_time(Some(Instant::now() + Duration::from_secs(10)))
            .expect("server time through isMaster");
        assert!(t.as_millis() > 0);
        let guard = form.lock_acquire("cosmos", Duration::from_secs(10));
        guard.expect("acquire when hello is refused");
        assert!(proxy.stats().injected >= 1, "the fault was met");
    }
}

// Issue 11 item 2: DocumentDB before 8.0.2 refuses retryable writes; the
// error is a configuration error that says to add `retryWrites=false`.
#[test]
fn retryable_writes_refused_says_what_to_add() {
    for sync in [false, true] {
        let db = support::unique_db("noretry");
        let proxy = proxy();
        let form =
            Form::create(sync, &through(&proxy), &db, support::options(), None).expect("create");
        proxy.fail_command(
            "findAndModify",
            doc! { "ok": 0, "code": 301, "errmsg": "Retryable writes are not supported" },
            None,
        );
        let started = Instant::now();
        let r = form.lock_acquire("docdb", Duration::from_secs(20));
        let err = r.expect_err("refused");
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "not retried until the timeout"
        );
        assert_eq!(
            err.backend_kind(),
            Some(BackendErrorKind::InvalidConfig),
            "{err}"
        );
        let text = format!("{err} {:?}", err.backend_error().map(ToString::to_string));
        assert!(text.contains("retryWrites=false"), "{text}");
        proxy.clear_faults();
    }
}

// Issue 11 item 3: a collection sharded on another key than `_id` is
// refused by `create`; sharded on `_id` passes. (The proxy answers the
// `config.collections` lookup as a mongos of a sharded cluster would.)
#[test]
fn collection_sharded_on_another_key_is_refused() {
    for sync in [false, true] {
        let db = support::unique_db("sharded");
        let proxy = proxy();
        let ns = format!("{}.shylock", &*db);
        let entry = |key: Document| {
            doc! { "cursor": { "firstBatch": [ { "_id": ns.clone(), "key": key, "unique": false } ],
            "id": 0_i64, "ns": "config.collections" }, "ok": 1 }
        };
        proxy.fail_command("find", entry(doc! { "tenant": 1 }), Some(1));
        let err = Form::create(sync, &through(&proxy), &db, support::options(), None)
            .map(|_| ())
            .expect_err("sharded on tenant");
        assert!(matches!(err, Error::InvalidConfig { .. }), "{err}");
        assert!(
            err.to_string().contains("unique only within each shard"),
            "{err}"
        );
        proxy.fail_command("find", entry(doc! { "_id": "hashed" }), Some(1));
        Form::create(sync, &through(&proxy), &db, support::options(), None)
            .map(|_| ())
            .expect("sharded on _id passes");
    }
}

// Issue 11 item 7: transient errors are retried (Cosmos DB's passing
// InternalError, mongos' FailedToSatisfyReadPreference during an election).
#[test]
fn transient_server_errors_are_retried() {
    waits_through_answers(
        "transient",
        support::options(),
        &[
            (1, "InternalError", "try again"),
            (133, "FailedToSatisfyReadPreference", "no primary"),
        ],
    );
}

// Issue 17: DocumentDB's gateway answers with PostgreSQL's state packed in
// the code while PostgreSQL restarts (50463173 = 57P03, "the database system
// is starting up" / "not yet accepting connections"), and 112 when its
// PostgreSQL detects a deadlock under contention: all are waited through by
// an acquisition without a time limit, in both forms. (Before: the first
// 50463173 ended `acquire()` with a fatal `Other` error.)
#[test]
fn documentdb_restart_and_deadlock_answers_are_waited_through() {
    waits_through_answers(
        "docdb_transient",
        setup_options(),
        &[
            (
                50463173,
                "DocumentDB error.",
                "the database system is starting up",
            ),
            (
                50463173,
                "DocumentDB error.",
                "the database system is not yet accepting connections",
            ),
            (112, "DocumentDB error.", "deadlock detected"),
        ],
    );
}

/// In both forms: the proxy answers the next `findAndModify`s with these
/// errors (code, code name, message), one each; a lock acquisition gets the
/// lock after them, and every one was injected.
fn waits_through_answers(test: &str, options: MongoOptions, answers: &[(i32, &str, &str)]) {
    for sync in [false, true] {
        let db = support::unique_db(test);
        let proxy = proxy();
        let form =
            Form::create(sync, &through(&proxy), &db, options.clone(), None).expect("create");
        for (code, name, msg) in answers {
            proxy.fail_command(
                "findAndModify",
                doc! { "ok": 0, "code": code, "codeName": name, "errmsg": msg },
                Some(1),
            );
        }
        let r = form.lock_acquire(&test.replace('_', "-"), Duration::from_secs(20));
        r.expect("acquired after the transient errors");
        assert_eq!(proxy.stats().injected, answers.len() as u64);
    }
}

// Issue 11 item 7, the reverse: a misconfiguration that waiting does not
// cure (here a host name that does not exist; a TLS failure is read the same
// way, see the unit tests) arrives as a server-selection error; it ends an
// acquisition without a timeout instead of being retried for ever.
#[test]
fn dns_misconfiguration_is_not_retried_for_ever() {
    let uri = "mongodb://no-such-host.invalid:27017/";
    let mut client_options = support::client_options(uri, Some(1));
    client_options.server_selection_timeout = Some(Duration::from_millis(1500));
    let client = mongodb::sync::Client::with_options(client_options).expect("client");
    let backend =
        shylock_mongo::sync::MongoBackend::new(&client, "dnsdb", support::options()).expect("new");
    let handle = Backend::from(backend);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(Lock::with_backend("dns", &handle).acquire().map(drop));
    });
    let r = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("acquire() without a timeout ended (not retried for ever)");
    let err = r.expect_err("the name does not resolve");
    assert_eq!(
        err.backend_kind(),
        Some(BackendErrorKind::InvalidConfig),
        "{err}"
    );
}

/// The commands a client sent, by name.
#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<(String, Document)>>>);

impl Seen {
    fn handler(&self) -> EventHandler<CommandEvent> {
        let seen = self.0.clone();
        EventHandler::callback(move |e| {
            if let CommandEvent::Started(s) = e {
                seen.lock()
                    .expect("seen")
                    .push((s.command_name.clone(), s.command.clone()));
            }
        })
    }

    fn last(&self, command: &str) -> Document {
        self.0
            .lock()
            .expect("seen")
            .iter()
            .rev()
            .find(|(n, _)| n == command)
            .map(|(_, d)| d.clone())
            .unwrap_or_else(|| panic!("no {command} was sent"))
    }
}

// Issue 11 items 5 and 9: every command carries a bound, also when the
// caller gave none (an acquisition's bound is at most its lease); writes
// carry `wtimeout`; `createIndexes` carries `maxTimeMS`; `inspect` reads
// with read concern `majority`.
#[test]
fn every_command_carries_a_bound() {
    for sync in [false, true] {
        let db = support::unique_db("bounds");
        let seen = Seen::default();
        let form = Form::create(
            sync,
            &support::server().uri(),
            &db,
            support::options(),
            Some(seen.handler()),
        )
        .expect("create");
        let ms = |d: &Document, key: &str| -> i64 {
            d.get(key)
                .and_then(|v| match v {
                    mongodb::bson::Bson::Int32(i) => Some(i64::from(*i)),
                    mongodb::bson::Bson::Int64(i) => Some(*i),
                    mongodb::bson::Bson::Double(f) => Some(*f as i64),
                    _ => None,
                })
                .unwrap_or_else(|| panic!("no {key} in {d}"))
        };
        let created = seen.last("createIndexes");
        assert!(ms(&created, "maxTimeMS") > 0, "{created}");
        let (n, me) = (name("bounded"), OwnerId::random());
        assert!(matches!(
            form.acquire(&n, &me, None),
            Ok(AcquireOutcome::Acquired(_))
        ));
        let fam = seen.last("findAndModify");
        let max = ms(&fam, "maxTimeMS");
        assert!(
            max > 0 && max <= i64::try_from(LEASE.as_millis()).expect("ms"),
            "{fam}"
        );
        let wc = fam.get_document("writeConcern").expect("writeConcern");
        assert!(ms(wc, "wtimeout") > 0, "{fam}");
        assert_eq!(form.renew(&n, &me, None).map(|_| ()).ok(), Some(()));
        assert!(ms(&seen.last("findAndModify"), "maxTimeMS") > 0);
        form.inspect(&n, None).expect("inspect");
        let find = seen.last("find");
        assert!(ms(&find, "maxTimeMS") > 0, "{find}");
        assert_eq!(
            find.get_document("readConcern")
                .ok()
                .and_then(|r| r.get_str("level").ok()),
            Some("majority"),
            "{find}"
        );
        assert_eq!(
            form.release(&n, &me, None).expect("release"),
            ReleaseOutcome::Released
        );
        assert!(ms(&seen.last("findAndModify"), "maxTimeMS") > 0);
    }
}

// Issue 12 (item 0-style check): `{:?}` and `{}` of every public MongoDB
// type made from a client whose connection string has a password, and of
// the errors such a client gives, never show the password.
#[test]
fn debug_never_shows_the_password() {
    const SECRET: &str = "s3cr3t-Pa55word";
    let uri = format!(
        "mongodb://locker:{SECRET}@{}/?serverSelectionTimeoutMS=2000",
        upstream()
    );
    let options = support::options().setup_timeout(Duration::from_secs(3));
    let mut shown = vec![format!("{options:?}")];
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let client_options = mongodb::options::ClientOptions::parse(&uri)
            .await
            .expect("parse");
        let client = mongodb::Client::with_options(client_options).expect("client");
        let backend = MongoBackend::new(&client, "pwdb", options.clone()).expect("new");
        shown.push(format!("{backend:?}"));
        shown.push(format!("{:?}", Backend::from(backend)));
        match MongoBackend::create_with(&client, "pwdb", options.clone()).await {
            Ok(b) => shown.push(format!("{b:?}")),
            Err(e) => shown.push(format!("{e} {e:?}")),
        }
    });
    let uri2 = uri.clone();
    let options2 = options.clone();
    let sync_shown = std::thread::spawn(move || {
        let client = mongodb::sync::Client::with_uri_str(&uri2).expect("sync client");
        let mut shown = Vec::new();
        let backend =
            shylock_mongo::sync::MongoBackend::new(&client, "pwdb", options2.clone()).expect("new");
        shown.push(format!("{backend:?}"));
        shown.push(format!("{:?}", Backend::from(backend)));
        match shylock_mongo::sync::MongoBackend::create_with(&client, "pwdb", options2) {
            Ok(b) => shown.push(format!("{b:?}")),
            Err(e) => shown.push(format!("{e} {e:?}")),
        }
        shown
    })
    .join()
    .expect("sync thread");
    shown.extend(sync_shown);
    for text in &shown {
        assert!(!text.contains(SECRET), "the password shows in {text}");
    }
}

// Issue 11 item 4: a release whose answer is lost (the proxy forwards it,
// then closes the connection; FerretDB has no retryable writes, as a
// standalone server or DocumentDB before 8.0.2) is sent again, finds its
// own release and answers `Released`: the caller gets `Ok`, not
// `LeaseLost`. (The primitive-level check is `basic_cycle` in
// primitives.rs: the same release twice answers `Released` both times.)
#[test]
fn a_release_whose_answer_was_lost_is_ok() {
    for sync in [false, true] {
        let db = support::unique_db("lostrelease");
        let proxy = proxy();
        let form =
            Form::create(sync, &through(&proxy), &db, support::options(), None).expect("create");
        let handle = form.handle();
        let r = match &form {
            Form::Async(_, rt) => rt.block_on(async {
                let guard = AsyncLock::with_backend("lost", &handle)
                    .acquire_timeout(Duration::from_secs(10))
                    .await?;
                proxy.forward_then_drop("findAndModify", Some(1));
                guard.release().await
            }),
            Form::Sync(_) => {
                let guard = Lock::with_backend("lost", &handle)
                    .acquire_timeout(Duration::from_secs(10))
                    .expect("acquire");
                proxy.forward_then_drop("findAndModify", Some(1));
                guard.release()
            }
        };
        r.unwrap_or_else(|e| panic!("{}: the release worked: {e}", form.label()));
        assert_eq!(proxy.stats().injected, 1, "the answer was lost once");
        let seen = form
            .inspect(
                &name("lost"),
                Some(Instant::now() + Duration::from_secs(10)),
            )
            .expect("inspect");
        assert_eq!(seen, None, "released");
    }
}
