//! What is specific to the MongoDB backend's primitives, in both forms
//! (async `MongoBackend`, sync `sync::MongoBackend`): the record's shape
//! (`epoch`/`seq` tokens, `releasers`, old records, malformed shapes),
//! MongoDB's answer to a release sent again, configuration refused before
//! anything is sent, a server that is down, `create`, and FerretDB's
//! opt-in. The contract every backend keeps (one clause per test) is the
//! core's primitive conformance checks, run in tests/conformance.rs.
//!
//! Server: DocumentDB started by the test support, or the real MongoDB at
//! `SHYLOCK_MONGODB_URI` (or FerretDB with `SHYLOCK_TEST_SERVER=ferretdb`,
//! where each backend is funnelled through ONE connection because FerretDB v1
//! is not atomic across connections, its issue 2168).

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use mongodb::bson::{DateTime, doc};
use mongodb::event::EventHandler;
use shylock_core::backend::{
    AcquireOutcome, AcquireRequest, AsyncBackend, InspectRequest, LockRecord, ReleaseOutcome,
    ReleaseRequest, RenewRequest, SyncBackend,
};
use shylock_core::{
    BackendError, BackendErrorKind, Error, FencingToken, LockName, OwnerId, Timestamp,
};
use shylock_mongo::{MongoBackend, MongoOptions};

const LEASE: Duration = Duration::from_secs(10);

/// One backend form, with a uniform blocking interface for the scenarios.
enum Form {
    Async(MongoBackend, tokio::runtime::Runtime),
    Sync(shylock_mongo::sync::MongoBackend),
}

struct Prims {
    form: Form,
    db: support::TestDb,
    uri: String,
}

impl Prims {
    fn new_async(test: &str) -> Prims {
        let uri = support::server().uri();
        let db = support::unique_db(test);
        let rt = tokio::runtime::Runtime::new().expect("runtime");
        let backend = rt.block_on(async {
            let client = support::async_client(&uri, true);
            MongoBackend::create_with(&client, &db, support::options())
                .await
                .expect("create the async backend")
        });
        Prims {
            form: Form::Async(backend, rt),
            db,
            uri,
        }
    }

    fn new_sync(test: &str) -> Prims {
        let uri = support::server().uri();
        let db = support::unique_db(test);
        let client = support::sync_client(&uri, true);
        let backend =
            shylock_mongo::sync::MongoBackend::create_with(&client, &db, support::options())
                .expect("create the sync backend");
        Prims {
            form: Form::Sync(backend),
            db,
            uri,
        }
    }

    fn label(&self) -> &'static str {
        match self.form {
            Form::Async(..) => "async",
            Form::Sync(..) => "sync",
        }
    }

    fn deadline() -> Option<Instant> {
        Some(Instant::now() + Duration::from_secs(20))
    }

    fn now(&self) -> Timestamp {
        let deadline = Self::deadline();
        match &self.form {
            Form::Async(b, rt) => rt.block_on(AsyncBackend::server_time(b, deadline)),
            Form::Sync(b) => SyncBackend::server_time(b, deadline),
        }
        .expect("server time")
    }

    fn acquire_at(
        &self,
        name: &LockName,
        owner: &OwnerId,
        lease: Duration,
        now: Timestamp,
    ) -> Result<AcquireOutcome, BackendError> {
        let req = AcquireRequest {
            name,
            owner,
            lease,
            now,
            deadline: Self::deadline(),
        };
        match &self.form {
            Form::Async(b, rt) => rt.block_on(AsyncBackend::try_acquire(b, req)),
            Form::Sync(b) => SyncBackend::try_acquire(b, req),
        }
    }

    fn acquire(&self, name: &LockName, owner: &OwnerId) -> AcquireOutcome {
        self.acquire_at(name, owner, LEASE, self.now())
            .expect("acquire")
    }

    fn release(&self, name: &LockName, owner: &OwnerId) -> ReleaseOutcome {
        let req = ReleaseRequest {
            name,
            owner,
            token: FencingToken(0),
            now: self.now(),
            deadline: Self::deadline(),
        };
        match &self.form {
            Form::Async(b, rt) => rt.block_on(AsyncBackend::release(b, req)),
            Form::Sync(b) => SyncBackend::release(b, req),
        }
        .expect("release")
    }

    fn inspect_at(
        &self,
        name: &LockName,
        now: Timestamp,
    ) -> Result<Option<LockRecord>, BackendError> {
        let req = InspectRequest {
            name,
            now,
            deadline: Self::deadline(),
        };
        match &self.form {
            Form::Async(b, rt) => rt.block_on(AsyncBackend::inspect(b, req)),
            Form::Sync(b) => SyncBackend::inspect(b, req),
        }
    }

    /// Read a lock record as it is stored, through a separate sync client.
    fn find_raw(&self, id: &str) -> Option<mongodb::bson::Document> {
        let client = support::sync_client(&self.uri, true);
        client
            .database(&self.db)
            .collection::<mongodb::bson::Document>("shylock")
            .find_one(doc! { "_id": id })
            .run()
            .expect("read a raw document")
    }

    /// Write a raw document into the lock collection (for shape tests),
    /// through a separate sync client.
    fn insert_raw(&self, doc: mongodb::bson::Document) {
        let client = support::sync_client(&self.uri, true);
        client
            .database(&self.db)
            .collection::<mongodb::bson::Document>("shylock")
            .insert_one(doc)
            .run()
            .expect("insert a raw document");
    }
}

fn name(s: &str) -> LockName {
    LockName::new(s).expect("valid lock name")
}

fn granted(outcome: AcquireOutcome) -> shylock_core::backend::Grant {
    match outcome {
        AcquireOutcome::Acquired(g) => g,
        AcquireOutcome::Busy { .. } => panic!("expected a grant, got Busy"),
    }
}

macro_rules! both_forms {
    ($scenario:ident: $async_test:ident, $sync_test:ident) => {
        #[test]
        fn $async_test() {
            $scenario(&Prims::new_async(stringify!($scenario)));
        }
        #[test]
        fn $sync_test() {
            $scenario(&Prims::new_sync(stringify!($scenario)));
        }
    };
}

// Issue 11 item 4 (MongoDB's answer: the contract allows it, and
// NotOwner, but does not ask for it): a release sent again (its answer
// lost, on a deployment without retryable writes) finds its own release in
// the record's `releasers` and answers Released, also after other owners
// released; it never frees a later holding. (What every backend must do is
// the core's `release_is_idempotent` check, in tests/conformance.rs.)
fn a_release_sent_again_finds_its_own_release(p: &Prims) {
    let n = name("release-again");
    let (a, b, c) = (OwnerId::random(), OwnerId::random(), OwnerId::random());
    granted(p.acquire(&n, &a));
    assert_eq!(p.release(&n, &a), ReleaseOutcome::Released);
    assert_eq!(
        p.release(&n, &a),
        ReleaseOutcome::Released,
        "{}: a release sent again finds its own release",
        p.label()
    );
    granted(p.acquire(&n, &b));
    assert_eq!(p.release(&n, &a), ReleaseOutcome::NotOwner, "not b's");
    assert_eq!(p.release(&n, &b), ReleaseOutcome::Released);
    assert_eq!(
        p.release(&n, &a),
        ReleaseOutcome::Released,
        "{}: once b released, a's old release is still recognised as a's",
        p.label()
    );
    granted(p.acquire(&n, &c));
    assert_eq!(p.release(&n, &a), ReleaseOutcome::NotOwner, "not c's");
    assert_eq!(p.release(&n, &c), ReleaseOutcome::Released);
}
both_forms!(a_release_sent_again_finds_its_own_release: a_release_sent_again_finds_its_own_release_async, a_release_sent_again_finds_its_own_release_sync);

// The fencing token of a grant is the record's `epoch * 1000 + seq` (see
// src/commands.rs): a new record starts at seq 1, each grant adds one.
fn tokens_are_epoch_and_seq(p: &Prims) {
    let n = name("epoch-seq");
    let a = OwnerId::random();
    let int = |raw: &mongodb::bson::Document, field: &str| match raw.get(field) {
        Some(mongodb::bson::Bson::Int64(v)) => *v,
        Some(mongodb::bson::Bson::Int32(v)) => i64::from(*v),
        other => panic!("{field}: {other:?}"),
    };
    let first = granted(p.acquire(&n, &a));
    let raw = p.find_raw("epoch-seq").expect("the record");
    assert_eq!(int(&raw, "seq"), 1, "{}: {raw}", p.label());
    let epoch = u64::try_from(int(&raw, "epoch")).expect("a positive epoch");
    assert_eq!(first.token.get(), epoch * 1000 + 1, "{}: {raw}", p.label());
    let retry = granted(p.acquire(&n, &a));
    assert_eq!(retry.token.get(), first.token.get() + 1, "{}", p.label());
    assert_eq!(p.release(&n, &a), ReleaseOutcome::Released);
}
both_forms!(tokens_are_epoch_and_seq: tokens_are_epoch_and_seq_async, tokens_are_epoch_and_seq_sync);

// Shows the record's `releasers` (issue 18 item 7): a release appends its
// owner and keeps the last RELEASERS_REMEMBERED; the oldest owner beyond
// them is forgotten (granted again: the bound is a documented choice). A
// record written before `releasers` existed, with the single last releaser
// as the string `releasedBy`, is released (the old field goes) and
// acquired normally.
fn releasers_are_bounded_and_old_records_work(p: &Prims) {
    use shylock_core::backend::RELEASERS_REMEMBERED;
    let future = DateTime::from_millis(p.now().as_millis() + 600_000);
    let holder = OwnerId::random();
    p.insert_raw(doc! {
        "_id": "old-shape",
        "owner": holder.as_str(),
        "releasedBy": OwnerId::random().as_str(),
        "epoch": 1_i64,
        "seq": 7_i64,
        "expiresAt": future,
    });
    let n = name("old-shape");
    assert_eq!(p.release(&n, &holder), ReleaseOutcome::Released);
    let raw = p.find_raw("old-shape").expect("the record stays");
    assert!(!raw.contains_key("releasedBy"), "{}: {raw}", p.label());
    assert_eq!(
        raw.get_array("releasers").expect("releasers").len(),
        1,
        "{}: {raw}",
        p.label()
    );
    let owners: Vec<OwnerId> = (0..RELEASERS_REMEMBERED + 2)
        .map(|_| OwnerId::random())
        .collect();
    for o in &owners {
        granted(p.acquire(&n, o));
        assert_eq!(p.release(&n, o), ReleaseOutcome::Released);
    }
    let raw = p.find_raw("old-shape").expect("the record stays");
    let kept: Vec<&str> = raw
        .get_array("releasers")
        .expect("releasers")
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    if support::on_ferretdb() {
        // FerretDB v1 ignores `$slice` in `$push`: the list grows.
        eprintln!("FerretDB kept {} releasers", kept.len());
        return;
    }
    let expected: Vec<&str> = owners[owners.len() - RELEASERS_REMEMBERED..]
        .iter()
        .map(OwnerId::as_str)
        .collect();
    assert_eq!(
        kept,
        expected,
        "{}: the last releasers, oldest first",
        p.label()
    );
    for o in &owners[owners.len() - RELEASERS_REMEMBERED..] {
        assert!(
            matches!(p.acquire(&n, o), AcquireOutcome::Busy { .. }),
            "{}: a remembered releaser is refused",
            p.label()
        );
    }
    let forgotten = granted(p.acquire(&n, &owners[0]));
    assert!(forgotten.token.get() > 7);
    assert_eq!(p.release(&n, &owners[0]), ReleaseOutcome::Released);
}
both_forms!(releasers_are_bounded_and_old_records_work: releasers_are_bounded_and_old_records_work_async, releasers_are_bounded_and_old_records_work_sync);

// Record shapes other than the one the core's
// `malformed_records_are_errors_not_grants` check writes (a string `seq`):
// an owner that is not a string, a record without `expiresAt`. inspect
// answers `Unexpected` (never a panic); a record held by somebody with no
// expiry is an Unexpected error naming the record for another owner (issue
// 23.3: it was Busy for ever), not overwritten.
fn malformed_shapes(p: &Prims) {
    let future = DateTime::from_millis(p.now().as_millis() + 600_000);
    p.insert_raw(
        doc! { "_id": "bad-owner", "owner": 5, "epoch": 1_i64, "seq": 1_i64, "expiresAt": future },
    );
    p.insert_raw(doc! { "_id": "no-expiry", "owner": "someone", "epoch": 1_i64, "seq": 1_i64 });
    let kind = |r: Result<Option<LockRecord>, BackendError>| r.err().map(|e| e.kind());
    assert_eq!(
        kind(p.inspect_at(&name("bad-owner"), p.now())),
        Some(BackendErrorKind::Unexpected)
    );
    assert_eq!(
        kind(p.inspect_at(&name("no-expiry"), p.now())),
        Some(BackendErrorKind::Unexpected)
    );
    for id in ["no-expiry", "bad-owner"] {
        let got = p.acquire_at(&name(id), &OwnerId::random(), LEASE, p.now());
        let err = got.expect_err("an unreadable record is an error at acquire");
        assert_eq!(err.kind(), BackendErrorKind::Unexpected, "{err}");
        assert!(err.to_string().contains(id), "names the record: {err}");
    }
    assert_eq!(
        p.find_raw("no-expiry").expect("kept").get_str("owner"),
        Ok("someone")
    );
}
both_forms!(malformed_shapes: malformed_shapes_async, malformed_shapes_sync);

// Issue 23.3: a record held until far beyond the server time plus the
// longest lease (a restore, another program) was Busy for ever; it is
// treated as expired: taken over with a higher token and a lease of the
// request's length.
fn far_future_expiry_is_taken_over(p: &Prims) {
    let year_9999 = DateTime::from_millis(253_402_300_799_000);
    let ahead = DateTime::from_millis(
        p.now().as_millis() + shylock_core::RECORD_HORIZON.as_millis() as i64 + 60_000,
    );
    for (id, expires) in [("far-9999", year_9999), ("far-horizon", ahead)] {
        p.insert_raw(doc! { "_id": id, "owner": "someone", "epoch": 5_i64, "seq": 7_i64, "expiresAt": expires });
        let now = p.now();
        let g = granted(p.acquire(&name(id), &OwnerId::random()));
        assert!(g.token > FencingToken(5007), "{id}: the token rises: {g:?}");
        assert!(
            g.expires_at <= now.saturating_add(LEASE + Duration::from_secs(5)),
            "{id}: the grant's lease is the request's, not the record's: {g:?}"
        );
        let busy = p.acquire(&name(id), &OwnerId::random());
        assert!(
            matches!(busy, AcquireOutcome::Busy { .. }),
            "{id}: then held: {busy:?}"
        );
    }
}
both_forms!(far_future_expiry_is_taken_over: far_future_expiry_is_taken_over_async, far_future_expiry_is_taken_over_sync);

// Issue 23.3: a record whose `epoch` lies in the future (year 2100) gave
// token 4102444800000004, and after the record was deleted the next token
// was lower: tokens fell. Such an epoch never feeds a token: acquire is an
// Unexpected error naming the record, and nothing is written.
fn future_epoch_never_feeds_a_token(p: &Prims) {
    p.insert_raw(doc! { "_id": "future-epoch", "owner": null, "epoch": 4_102_444_800_000_i64, "seq": 3_i64, "expiresAt": DateTime::from_millis(0) });
    let got = p.acquire_at(&name("future-epoch"), &OwnerId::random(), LEASE, p.now());
    let err = got.expect_err("no token from a future epoch");
    assert_eq!(err.kind(), BackendErrorKind::Unexpected, "{err}");
    assert!(
        err.to_string().contains("future-epoch"),
        "names the record: {err}"
    );
    assert!(
        err.to_string().contains("epoch"),
        "says what is wrong: {err}"
    );
    let raw = p.find_raw("future-epoch").expect("kept");
    assert_eq!(raw.get_i64("seq"), Ok(3), "nothing written: {raw}");
    let inspected = p.inspect_at(&name("future-epoch"), p.now());
    assert!(
        inspected.is_err(),
        "inspect shows no such token: {inspected:?}"
    );
}
both_forms!(future_epoch_never_feeds_a_token: future_epoch_never_feeds_a_token_async, future_epoch_never_feeds_a_token_sync);

/// A client that counts the commands it sends.
fn counting_async_client(uri: &str) -> (mongodb::Client, Arc<AtomicUsize>) {
    let count = Arc::new(AtomicUsize::new(0));
    let c = count.clone();
    let mut options = support::client_options(uri, Some(1));
    options.command_event_handler = Some(EventHandler::callback(move |ev| {
        if let mongodb::event::command::CommandEvent::Started(_) = ev {
            c.fetch_add(1, Ordering::SeqCst);
        }
    }));
    (
        mongodb::Client::with_options(options).expect("client"),
        count,
    )
}

fn counting_sync_client(uri: &str) -> (mongodb::sync::Client, Arc<AtomicUsize>) {
    let count = Arc::new(AtomicUsize::new(0));
    let c = count.clone();
    let mut options = support::client_options(uri, Some(1));
    options.command_event_handler = Some(EventHandler::callback(move |ev| {
        if let mongodb::event::command::CommandEvent::Started(_) = ev {
            c.fetch_add(1, Ordering::SeqCst);
        }
    }));
    (
        mongodb::sync::Client::with_options(options).expect("client"),
        count,
    )
}

fn assert_invalid_config(r: Result<impl std::fmt::Debug, Error>, what: &str) {
    match r {
        Err(Error::InvalidConfig { reason }) => eprintln!("refused as expected ({what}): {reason}"),
        other => panic!("{what}: expected InvalidConfig, got {other:?}"),
    }
}

// Shows (no server contact at all): bad database and collection names and a
// too short TTL grace are refused with `InvalidConfig` before any command
// is sent (counted by the driver's command monitoring).
#[test]
fn bad_names_refused_before_sending() {
    let uri = support::server().uri();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let (aclient, acount) = rt.block_on(async { counting_async_client(&uri) });
    let (sclient, scount) = counting_sync_client(&uri);
    let bad_dbs = [
        "",
        "a.b",
        "a b",
        "a/b",
        "a\\b",
        "a$b",
        "a\"b",
        "a\0b",
        &"d".repeat(64),
    ];
    for db in bad_dbs {
        assert_invalid_config(rt.block_on(MongoBackend::create(&aclient, db)), db);
        assert_invalid_config(shylock_mongo::sync::MongoBackend::create(&sclient, db), db);
    }
    let long = "c".repeat(251); // okdb. + 251 = 256 bytes > 255
    let bad_colls = ["", "a$b", "a\0b", "system.locks", ".hidden", long.as_str()];
    for coll in bad_colls {
        let options = MongoOptions::new().collection(coll);
        assert_invalid_config(
            rt.block_on(MongoBackend::create_with(&aclient, "okdb", options.clone())),
            coll,
        );
        assert_invalid_config(
            shylock_mongo::sync::MongoBackend::create_with(&sclient, "okdb", options.clone()),
            coll,
        );
        assert_invalid_config(MongoBackend::new(&aclient, "okdb", options), coll);
    }
    let short = MongoOptions::new().ttl_grace(Duration::from_secs(5));
    assert_invalid_config(
        rt.block_on(MongoBackend::create_with(&aclient, "okdb", short.clone())),
        "ttl",
    );
    assert_invalid_config(
        shylock_mongo::sync::MongoBackend::create_with(&sclient, "okdb", short),
        "ttl",
    );
    assert_eq!(
        acount.load(Ordering::SeqCst),
        0,
        "nothing sent by the async form"
    );
    assert_eq!(
        scount.load(Ordering::SeqCst),
        0,
        "nothing sent by the sync form"
    );
}

fn assert_fails_fast(
    label: &str,
    started: Instant,
    limit: Duration,
    r: Result<impl std::fmt::Debug, BackendError>,
    kinds: &[BackendErrorKind],
) {
    let took = started.elapsed();
    match r {
        Err(e) => {
            assert!(
                kinds.contains(&e.kind()),
                "{label}: kind {:?} not in {kinds:?}: {e}",
                e.kind()
            );
            assert!(
                e.is_transient(),
                "{label}: a down server is a transient failure"
            );
            eprintln!("{label}: {:?} after {took:?}: {e}", e.kind());
        }
        Ok(v) => panic!("{label}: a down server answered {v:?}"),
    }
    assert!(took <= limit, "{label}: took {took:?}, more than {limit:?}");
}

// Shows (no server; a loopback port where nothing listens): every primitive
// of both forms gives up by the request's deadline with a Timeout error, or
// earlier with Unavailable when the client's own server selection gives up
// first; never a hang.
#[test]
fn server_down_gives_up_by_the_deadline() {
    let uri = support::dead_uri();
    let n = name("down");
    let o = OwnerId::random();
    let now = Timestamp::local_now();
    let deadline_in = Duration::from_millis(800);
    let limit = Duration::from_millis(1500);
    let rt = tokio::runtime::Runtime::new().expect("runtime");

    // Default client settings (server selection would wait 30 s): the
    // request's deadline cuts the call off.
    let aclient = rt.block_on(async { support::async_client(&uri, true) });
    let ab = MongoBackend::new(&aclient, "downdb", MongoOptions::new()).expect("backend");
    let sclient = support::sync_client(&uri, true);
    let sb = shylock_mongo::sync::MongoBackend::new(&sclient, "downdb", MongoOptions::new())
        .expect("backend");
    let timeout = [BackendErrorKind::Timeout];
    for form in ["async", "sync"] {
        let d = || Some(Instant::now() + deadline_in);
        macro_rules! run {
            ($label:expr, $call_async:expr, $call_sync:expr) => {{
                let t = Instant::now();
                if form == "async" {
                    assert_fails_fast(
                        &format!("{form} {}", $label),
                        t,
                        limit,
                        rt.block_on($call_async),
                        &timeout,
                    );
                } else {
                    assert_fails_fast(
                        &format!("{form} {}", $label),
                        t,
                        limit,
                        $call_sync,
                        &timeout,
                    );
                }
            }};
        }
        run!(
            "acquire",
            AsyncBackend::try_acquire(
                &ab,
                AcquireRequest {
                    name: &n,
                    owner: &o,
                    lease: LEASE,
                    now,
                    deadline: d()
                }
            ),
            SyncBackend::try_acquire(
                &sb,
                AcquireRequest {
                    name: &n,
                    owner: &o,
                    lease: LEASE,
                    now,
                    deadline: d()
                }
            )
        );
        run!(
            "renew",
            AsyncBackend::renew(
                &ab,
                RenewRequest {
                    name: &n,
                    owner: &o,
                    token: FencingToken(1),
                    lease: LEASE,
                    now,
                    deadline: d()
                }
            ),
            SyncBackend::renew(
                &sb,
                RenewRequest {
                    name: &n,
                    owner: &o,
                    token: FencingToken(1),
                    lease: LEASE,
                    now,
                    deadline: d()
                }
            )
        );
        run!(
            "release",
            AsyncBackend::release(
                &ab,
                ReleaseRequest {
                    name: &n,
                    owner: &o,
                    token: FencingToken(1),
                    now,
                    deadline: d()
                }
            ),
            SyncBackend::release(
                &sb,
                ReleaseRequest {
                    name: &n,
                    owner: &o,
                    token: FencingToken(1),
                    now,
                    deadline: d()
                }
            )
        );
        run!(
            "inspect",
            AsyncBackend::inspect(
                &ab,
                InspectRequest {
                    name: &n,
                    now,
                    deadline: d()
                }
            ),
            SyncBackend::inspect(
                &sb,
                InspectRequest {
                    name: &n,
                    now,
                    deadline: d()
                }
            )
        );
        run!(
            "server_time",
            AsyncBackend::server_time(&ab, d()),
            SyncBackend::server_time(&sb, d())
        );
    }

    // A deadline already passed: Timeout at once, nothing sent.
    let t = Instant::now();
    let past = Some(Instant::now() - Duration::from_millis(1));
    assert_fails_fast(
        "sync acquire, deadline passed",
        t,
        Duration::from_millis(50),
        SyncBackend::try_acquire(
            &sb,
            AcquireRequest {
                name: &n,
                owner: &o,
                lease: LEASE,
                now,
                deadline: past,
            },
        ),
        &timeout,
    );

    // A client with a short server selection timeout and no deadline: the
    // driver gives up first, with Unavailable.
    let mut options = support::client_options(&uri, Some(1));
    options.server_selection_timeout = Some(Duration::from_millis(500));
    let aclient =
        rt.block_on(async { mongodb::Client::with_options(options.clone()).expect("client") });
    let ab = MongoBackend::new(&aclient, "downdb", MongoOptions::new()).expect("backend");
    let sclient = mongodb::sync::Client::with_options(options).expect("client");
    let sb = shylock_mongo::sync::MongoBackend::new(&sclient, "downdb", MongoOptions::new())
        .expect("backend");
    let unavailable = [BackendErrorKind::Unavailable];
    let t = Instant::now();
    assert_fails_fast(
        "async acquire, no deadline",
        t,
        limit,
        rt.block_on(AsyncBackend::try_acquire(
            &ab,
            AcquireRequest {
                name: &n,
                owner: &o,
                lease: LEASE,
                now,
                deadline: None,
            },
        )),
        &unavailable,
    );
    let t = Instant::now();
    assert_fails_fast(
        "sync acquire, no deadline",
        t,
        limit,
        SyncBackend::try_acquire(
            &sb,
            AcquireRequest {
                name: &n,
                owner: &o,
                lease: LEASE,
                now,
                deadline: None,
            },
        ),
        &unavailable,
    );
    // And `create` reports it as a backend error of kind Unavailable.
    let t = Instant::now();
    match rt.block_on(MongoBackend::create(&aclient, "downdb")) {
        Err(Error::Backend { source, .. }) => {
            assert_eq!(source.kind(), BackendErrorKind::Unavailable, "{source}")
        }
        other => panic!("create against a down server: {other:?}"),
    }
    match shylock_mongo::sync::MongoBackend::create(&sclient, "downdb") {
        Err(Error::Backend { source, .. }) => {
            assert_eq!(source.kind(), BackendErrorKind::Unavailable, "{source}")
        }
        other => panic!("create against a down server: {other:?}"),
    }
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "create gave up in {:?}",
        t.elapsed()
    );
}

// Shows (both servers): `server_time` reads the server's clock (`hello`'s
// `localTime`); the test server runs on this machine, so it is this machine's time
// to within a second; a real MongoDB elsewhere is only checked for sanity.
#[test]
fn server_time_is_the_servers_clock() {
    let p = Prims::new_sync("clock");
    let t = p.now();
    let local = Timestamp::local_now();
    let skew = (t.as_millis() - local.as_millis()).abs();
    if support::server().is_external() {
        assert!(skew < 3_600_000, "server clock {t} vs local {local}");
    } else {
        assert!(skew < 1_000, "test server's clock {t} vs local {local}");
    }
    let q = Prims::new_async("clock_async");
    let u = q.now();
    assert!(u >= t, "the clock does not go back: {u} >= {t}");
}

// Shows (several separate connections): `create` is
// idempotent and safe when many processes prepare the same collection at
// once (each thread has its own client, as separate processes would).
#[test]
fn create_is_idempotent_and_concurrent_safe() {
    let uri = support::server().uri();
    let db = support::unique_db("create_concurrent");
    let threads: Vec<_> = (0..6)
        .map(|i| {
            let (uri, db) = (uri.clone(), db.to_string());
            std::thread::spawn(move || {
                if i % 2 == 0 {
                    let client = support::sync_client(&uri, false);
                    shylock_mongo::sync::MongoBackend::create_with(&client, &db, support::options())
                        .map(|_| ())
                } else {
                    let rt = tokio::runtime::Runtime::new().expect("runtime");
                    rt.block_on(async {
                        let client = support::async_client(&uri, false);
                        MongoBackend::create_with(&client, &db, support::options())
                            .await
                            .map(|_| ())
                    })
                }
            })
        })
        .collect();
    for t in threads {
        t.join()
            .expect("thread")
            .expect("create succeeds in every process");
    }
    // Once more, sequentially.
    let client = support::sync_client(&uri, true);
    shylock_mongo::sync::MongoBackend::create_with(&client, &db, support::options())
        .expect("create again");
    let indexes: Vec<String> = client
        .database(&db)
        .collection::<mongodb::bson::Document>("shylock")
        .list_index_names()
        .run()
        .expect("list indexes");
    eprintln!(
        "indexes on {} {db}.shylock: {indexes:?}",
        support::server().kind()
    );
    assert!(indexes.contains(&"_id_".to_owned()));
    if !support::on_ferretdb() {
        assert!(
            indexes.contains(&"shylock_expiresAt_ttl".to_owned()),
            "MongoDB and DocumentDB make the TTL index"
        );
    }
}

// Shows (both servers): a collection with a unique index on another field
// (as the Python shylock's `name` index) is refused by `create` with a
// clear InvalidConfig error instead of making every acquisition Busy.
#[test]
fn foreign_unique_index_is_refused() {
    let uri = support::server().uri();
    let db = support::unique_db("foreign_index");
    let client = support::sync_client(&uri, true);
    let coll = client
        .database(&db)
        .collection::<mongodb::bson::Document>("shylock");
    let mut opts = mongodb::options::IndexOptions::default();
    opts.unique = Some(true);
    let mut model = mongodb::IndexModel::default();
    model.keys = doc! { "name": 1 };
    model.options = Some(opts);
    coll.create_index(model)
        .run()
        .expect("create the foreign index");
    let err = shylock_mongo::sync::MongoBackend::create_with(&client, &db, support::options())
        .expect_err("refused");
    match err {
        Error::InvalidConfig { reason } => assert!(reason.contains("name_1"), "{reason}"),
        other => panic!("expected InvalidConfig, got {other:?}"),
    }
    // Another collection name in the same database is fine.
    shylock_mongo::sync::MongoBackend::create_with(
        &client,
        &db,
        support::options().collection("shylock2"),
    )
    .expect("another collection");
}

// Shows (both servers): the backend describes itself for logs.
#[test]
fn describe_names_the_namespace() {
    let p = Prims::new_async("describe");
    if let Form::Async(b, _) = &p.form {
        assert_eq!(
            AsyncBackend::describe(b),
            format!("mongodb {}.shylock", p.db)
        );
        assert_eq!(b.collection(), "shylock");
        assert_eq!(b.database(), &*p.db);
    }
}

// Shows (a FerretDB of its own): a server that can grant a lock twice across connections
// (FerretDB v1, its issue 2168) is refused without the opt-in: `create`
// (both forms) answers InvalidConfig naming FerretDB, its version, the issue
// and the opt-in; a backend made with `new` (no server contact) refuses at
// its first acquisition, and nothing is written. With
// `allow_non_atomic_server(true)` all of them work. (DocumentDB, MongoDB:
// `create` without the opt-in works, so the check does not get in its way.)
#[test]
fn non_atomic_server_needs_the_opt_in() {
    let db = support::unique_db("non_atomic");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let plain = MongoOptions::new();
    if !support::on_ferretdb() {
        // The shared server (DocumentDB or MongoDB) is atomic: `create`
        // without the opt-in works, so the check does not get in its way.
        let uri = support::server().uri();
        let aclient = rt.block_on(async { support::async_client(&uri, false) });
        let sclient = support::sync_client(&uri, false);
        rt.block_on(MongoBackend::create_with(&aclient, &db, plain.clone()))
            .expect("async create without the opt-in");
        shylock_mongo::sync::MongoBackend::create_with(&sclient, &db, plain.clone())
            .expect("sync create without the opt-in");
    }
    // The refusal, on a FerretDB of this test's own.
    let ferret = support::FerretDb::start(false);
    let uri = ferret.uri();
    let aclient = rt.block_on(async {
        mongodb::Client::with_options(support::client_options(&uri, Some(1))).expect("client")
    });
    let sclient = mongodb::sync::Client::with_options(support::client_options(&uri, Some(1)))
        .expect("client");
    let allowed = MongoOptions::new().allow_non_atomic_server(true);
    let n = name("opt-in");
    let request = |owner| AcquireRequest {
        name: &n,
        owner,
        lease: LEASE,
        now: Timestamp::local_now(),
        deadline: Some(Instant::now() + Duration::from_secs(10)),
    };

    let check = |r: Result<(), Error>, form: &str| match r {
        Err(Error::InvalidConfig { reason }) => {
            eprintln!("{form} refused as expected: {reason}");
            for part in ["FerretDB v1.", "2168", "allow_non_atomic_server", "twice"] {
                assert!(
                    reason.contains(part),
                    "{form}: {part:?} missing in {reason:?}"
                );
            }
        }
        other => panic!("{form}: expected InvalidConfig, got {other:?}"),
    };
    check(
        rt.block_on(MongoBackend::create_with(&aclient, &db, plain.clone()))
            .map(|_| ()),
        "async create",
    );
    check(
        shylock_mongo::sync::MongoBackend::create(&sclient, &db).map(|_| ()),
        "sync create",
    );

    // `new` sends nothing; the first acquisition checks, then refuses.
    let ab = MongoBackend::new(&aclient, &db, plain.clone()).expect("async new");
    let sb = shylock_mongo::sync::MongoBackend::new(&sclient, &db, plain).expect("sync new");
    let o = OwnerId::random();
    for (form, r) in [
        (
            "async new",
            rt.block_on(AsyncBackend::try_acquire(&ab, request(&o))),
        ),
        ("sync new", SyncBackend::try_acquire(&sb, request(&o))),
    ] {
        let err = r.expect_err("refused at the first acquisition");
        assert_eq!(err.kind(), BackendErrorKind::InvalidConfig, "{form}: {err}");
        assert!(err.to_string().contains("FerretDB v1."), "{form}: {err}");
        // Refused again, from the remembered verdict.
        let again = if form == "async new" {
            rt.block_on(AsyncBackend::try_acquire(&ab, request(&o)))
        } else {
            SyncBackend::try_acquire(&sb, request(&o))
        };
        assert_eq!(
            again.expect_err("still refused").kind(),
            BackendErrorKind::InvalidConfig
        );
    }
    // Nothing was ever granted.
    let inspect = InspectRequest {
        name: &n,
        now: Timestamp::local_now(),
        deadline: Some(Instant::now() + Duration::from_secs(10)),
    };
    assert_eq!(
        SyncBackend::inspect(&sb, inspect).expect("inspect"),
        None,
        "no record was written"
    );

    // With the opt-in: create works in both forms, and so does `new`.
    let ab = rt
        .block_on(MongoBackend::create_with(&aclient, &db, allowed.clone()))
        .expect("async create with the opt-in");
    let sb = shylock_mongo::sync::MongoBackend::create_with(&sclient, &db, allowed.clone())
        .expect("sync create with the opt-in");
    let a = OwnerId::random();
    assert!(matches!(
        rt.block_on(AsyncBackend::try_acquire(&ab, request(&a))),
        Ok(AcquireOutcome::Acquired(_))
    ));
    let b = OwnerId::random();
    assert!(matches!(
        SyncBackend::try_acquire(&sb, request(&b)),
        Ok(AcquireOutcome::Busy { .. })
    ));
    let lazy = shylock_mongo::sync::MongoBackend::new(&sclient, &db, allowed).expect("new");
    assert!(matches!(
        SyncBackend::try_acquire(&lazy, request(&a)),
        Ok(AcquireOutcome::Acquired(_))
    ));
}
