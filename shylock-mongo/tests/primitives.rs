//! The backend primitives, called directly through the core's traits, in
//! both forms (async `MongoBackend`, sync `sync::MongoBackend`).
//!
//! Server: DocumentDB started by the test support, or the real MongoDB at
//! `SHYLOCK_MONGODB_URI` (or FerretDB with `SHYLOCK_TEST_SERVER=ferretdb`,
//! where each backend is funnelled through ONE connection because FerretDB v1
//! is not atomic across connections, its issue 2168). These tests show the
//! per-command semantics (what each command does to the record and what it
//! answers); atomicity under concurrency is shown by the conformance suite,
//! the liveness tests and the chaos suite, with contenders on connections of
//! their own.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use mongodb::bson::{DateTime, doc};
use mongodb::event::EventHandler;
use shylock_core::backend::{
    AcquireOutcome, AcquireRequest, AsyncBackend, InspectRequest, LockRecord, ReleaseOutcome,
    ReleaseRequest, RenewOutcome, RenewRequest, SyncBackend,
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

    fn renew_at(
        &self,
        name: &LockName,
        owner: &OwnerId,
        lease: Duration,
        now: Timestamp,
    ) -> RenewOutcome {
        let req = RenewRequest {
            name,
            owner,
            token: FencingToken(0),
            lease,
            now,
            deadline: Self::deadline(),
        };
        match &self.form {
            Form::Async(b, rt) => rt.block_on(AsyncBackend::renew(b, req)),
            Form::Sync(b) => SyncBackend::renew(b, req),
        }
        .expect("renew")
    }

    fn release_at(&self, name: &LockName, owner: &OwnerId, now: Timestamp) -> ReleaseOutcome {
        let req = ReleaseRequest {
            name,
            owner,
            token: FencingToken(0),
            now,
            deadline: Self::deadline(),
        };
        match &self.form {
            Form::Async(b, rt) => rt.block_on(AsyncBackend::release(b, req)),
            Form::Sync(b) => SyncBackend::release(b, req),
        }
        .expect("release")
    }

    fn release(&self, name: &LockName, owner: &OwnerId) -> ReleaseOutcome {
        self.release_at(name, owner, self.now())
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

    fn inspect(&self, name: &LockName) -> Option<LockRecord> {
        self.inspect_at(name, self.now()).expect("inspect")
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

// Shows (one backend): acquire grants a free name,
// answers Busy to another owner while the lease is live, renew/release act
// only for the owner, a released name is granted again with a larger token.
fn basic_cycle(p: &Prims) {
    let n = name("basic");
    let (a, b) = (OwnerId::random(), OwnerId::random());
    let now = p.now();
    let g1 = granted(p.acquire_at(&n, &a, LEASE, now).expect("acquire"));
    assert_eq!(g1.expires_at, now.saturating_add(LEASE), "{}", p.label());
    assert!(
        matches!(p.acquire(&n, &b), AcquireOutcome::Busy { .. }),
        "a second owner must get Busy"
    );
    let rec = p.inspect(&n).expect("held");
    assert_eq!(rec.owner, a);
    assert_eq!(rec.token, g1.token);
    assert_eq!(rec.expires_at, g1.expires_at);

    let later = p.now().saturating_add(Duration::from_millis(5));
    match p.renew_at(&n, &a, Duration::from_secs(20), later) {
        RenewOutcome::Renewed { expires_at } => {
            assert_eq!(expires_at, later.saturating_add(Duration::from_secs(20)))
        }
        RenewOutcome::Lost => panic!("the owner's renewal must succeed"),
    }
    assert_eq!(p.renew_at(&n, &b, LEASE, p.now()), RenewOutcome::Lost);
    assert_eq!(p.release(&n, &b), ReleaseOutcome::NotOwner);
    assert_eq!(
        p.inspect(&n).map(|r| r.owner),
        Some(a.clone()),
        "a non-owner's release changed nothing"
    );

    assert_eq!(p.release(&n, &a), ReleaseOutcome::Released);
    // Issue 11 item 4: the same release sent again (its answer lost, on a
    // deployment without retryable writes) finds its own release.
    assert_eq!(
        p.release(&n, &a),
        ReleaseOutcome::Released,
        "a release sent again finds its own release"
    );
    assert_eq!(
        p.release(&n, &b),
        ReleaseOutcome::NotOwner,
        "not b's release"
    );
    assert_eq!(
        p.renew_at(&n, &a, LEASE, p.now()),
        RenewOutcome::Lost,
        "no renewal after release"
    );
    assert_eq!(p.inspect(&n), None);

    let g2 = granted(p.acquire(&n, &b));
    assert!(g2.token > g1.token, "{} > {}", g2.token, g1.token);
    assert_eq!(
        p.release(&n, &a),
        ReleaseOutcome::NotOwner,
        "a's late release never frees b's holding"
    );
    assert_eq!(p.inspect(&n).map(|r| r.owner), Some(b.clone()));
    assert_eq!(p.release(&n, &b), ReleaseOutcome::Released);
    // The record remembers its last releasers (issue 18 item 7), not only
    // the last one: a's release sent again still finds a's own release
    // (nothing changes: the record stays free).
    assert_eq!(
        p.release(&n, &a),
        ReleaseOutcome::Released,
        "once b released, a's old release is still recognised as a's"
    );
    assert_eq!(p.inspect(&n), None);
    let c = OwnerId::random();
    granted(p.acquire(&n, &c));
    assert_eq!(
        p.release(&n, &a),
        ReleaseOutcome::NotOwner,
        "a's old release never frees c's holding"
    );
    assert_eq!(p.release(&n, &c), ReleaseOutcome::Released);
}
both_forms!(basic_cycle: basic_cycle_async, basic_cycle_sync);

// Shows (both servers, one connection): tokens only rise for a name, across
// releases, re-acquisition by the same owner (a retry after an unknown
// outcome is granted again, with a new token) and takeovers after expiry;
// names do not share tokens' records.
fn tokens_rise(p: &Prims) {
    let n = name("tokens");
    let other = name("tokens-other");
    let mut last = FencingToken(0);
    for i in 0..15 {
        let owner = OwnerId::random();
        let g = granted(p.acquire(&n, &owner));
        assert!(g.token > last, "round {i}: {} > {}", g.token, last);
        last = g.token;
        // A retry by the same owner (as after a lost reply) is granted again.
        let again = granted(p.acquire(&n, &owner));
        assert!(again.token > last, "retry: {} > {}", again.token, last);
        last = again.token;
        if i % 3 == 0 {
            // Left to expire, then taken over.
            let after = p
                .now()
                .saturating_add(LEASE)
                .saturating_add(Duration::from_millis(1));
            let g = granted(
                p.acquire_at(&n, &OwnerId::random(), LEASE, after)
                    .expect("takeover"),
            );
            assert!(g.token > last, "takeover: {} > {}", g.token, last);
            last = g.token;
            // Free it (through the record's owner, read back).
            let rec = p.inspect_at(&n, p.now()).expect("inspect").expect("held");
            assert_eq!(p.release(&n, &rec.owner), ReleaseOutcome::Released);
        } else {
            assert_eq!(p.release(&n, &owner), ReleaseOutcome::Released);
        }
    }
    let o = OwnerId::random();
    let g = granted(p.acquire(&other, &o));
    assert!(
        g.token.get() % 1000 == 1,
        "a new record starts at seq 1: {}",
        g.token
    );
    assert_eq!(p.release(&other, &o), ReleaseOutcome::Released);
}
both_forms!(tokens_rise: tokens_rise_async, tokens_rise_sync);

// Shows (both servers, one connection): expiry is judged by the request's
// `now` (the core's estimate of the server clock): at the expiry instant the
// lock is free for others; the old owner's renew and release then fail and
// do not touch the new holding. An expired lease that nobody took is still
// renewable by its owner (nobody held the lock in between).
fn expiry_and_takeover(p: &Prims) {
    let n = name("expiry");
    let (a, b) = (OwnerId::random(), OwnerId::random());
    let lease = Duration::from_secs(2);
    let t0 = p.now();
    let ga = granted(p.acquire_at(&n, &a, lease, t0).expect("acquire"));
    let just_before = t0
        .saturating_add(lease)
        .saturating_sub(Duration::from_millis(1));
    assert!(matches!(
        p.acquire_at(&n, &b, lease, just_before).expect("acquire"),
        AcquireOutcome::Busy { .. }
    ));
    assert!(p.inspect_at(&n, just_before).expect("inspect").is_some());
    let at_expiry = t0.saturating_add(lease);
    assert_eq!(
        p.inspect_at(&n, at_expiry).expect("inspect"),
        None,
        "expired at its expiry"
    );

    // Expired, not taken: the owner may still renew.
    match p.renew_at(&n, &a, lease, at_expiry) {
        RenewOutcome::Renewed { expires_at } => {
            assert_eq!(expires_at, at_expiry.saturating_add(lease))
        }
        RenewOutcome::Lost => panic!("an expired lease nobody took is renewable"),
    }

    let t1 = at_expiry.saturating_add(lease);
    let gb = granted(p.acquire_at(&n, &b, lease, t1).expect("takeover"));
    assert!(gb.token > ga.token);
    assert_eq!(p.renew_at(&n, &a, lease, t1), RenewOutcome::Lost);
    assert_eq!(p.release_at(&n, &a, t1), ReleaseOutcome::NotOwner);
    assert_eq!(
        p.inspect_at(&n, t1).expect("inspect").map(|r| r.owner),
        Some(b.clone())
    );
    assert_eq!(p.release_at(&n, &b, t1), ReleaseOutcome::Released);

    // And in real time: a 300 ms lease, 600 ms of waiting, the server's
    // clock. (A fresh name: the record above was released at the made-up
    // time t1, seconds ahead of the server's clock, and a grant never sets
    // an expiry earlier than the one a record has.)
    let n = name("expiry-real-time");
    let c = OwnerId::random();
    granted(
        p.acquire_at(&n, &c, Duration::from_millis(300), p.now())
            .expect("acquire"),
    );
    assert!(matches!(p.acquire(&n, &a), AcquireOutcome::Busy { .. }));
    std::thread::sleep(Duration::from_millis(600));
    granted(p.acquire(&n, &a));
    assert_eq!(p.release(&n, &c), ReleaseOutcome::NotOwner);
    assert_eq!(p.release(&n, &a), ReleaseOutcome::Released);
}
both_forms!(expiry_and_takeover: expiry_and_takeover_async, expiry_and_takeover_sync);

// Found by the fault-injection suite (overlapping holders after connection
// resets): a request of an owner that arrives late (sent earlier, so with an
// older `now`, for example held up on a connection that was then reset,
// while the owner's retry was granted first) must never shorten the lease
// the later request granted or renewed: the holder counts its lease from the
// later request. Before the fix (`$set` of `expiresAt`), the late acquire
// set the expiry back and another owner was granted the lock inside the
// holder's lease.
fn late_duplicates_never_shorten_a_lease(p: &Prims) {
    let n = name("late");
    let (a, b) = (OwnerId::random(), OwnerId::random());
    let lease = Duration::from_secs(2);
    let t0 = p.now();
    let earlier = Timestamp::from_millis(t0.as_millis().saturating_sub(1_500));
    let granted_now = granted(p.acquire_at(&n, &a, lease, t0).expect("acquire"));
    assert_eq!(granted_now.expires_at, t0.saturating_add(lease));
    // The late duplicate of the same owner's acquisition.
    let late = granted(p.acquire_at(&n, &a, lease, earlier).expect("late acquire"));
    assert_eq!(
        late.expires_at,
        t0.saturating_add(lease),
        "{}: not shortened",
        p.label()
    );
    let just_before = t0
        .saturating_add(lease)
        .saturating_sub(Duration::from_millis(1));
    assert!(
        matches!(
            p.acquire_at(&n, &b, lease, just_before).expect("acquire"),
            AcquireOutcome::Busy { .. }
        ),
        "{}: another owner inside the lease",
        p.label()
    );
    // A late renewal neither.
    match p.renew_at(&n, &a, lease, earlier) {
        RenewOutcome::Renewed { expires_at } => {
            assert_eq!(expires_at, t0.saturating_add(lease), "{}", p.label())
        }
        RenewOutcome::Lost => panic!("{}: the owner's record", p.label()),
    }
    assert!(matches!(
        p.acquire_at(&n, &b, lease, just_before).expect("acquire"),
        AcquireOutcome::Busy { .. }
    ));
    assert_eq!(p.release_at(&n, &a, t0), ReleaseOutcome::Released);
}
both_forms!(late_duplicates_never_shorten_a_lease: late_duplicates_never_shorten_a_lease_async, late_duplicates_never_shorten_a_lease_sync);

// Issue 18 item 7: a late duplicate of an owner's acquisition (sent before
// the owner released, held up on its way while the owner's retry was
// granted) that lands after the owner released must not be granted: the
// owner is gone, so the lock would stay held by nobody for a lease. The
// record stays free for the next owner, also when another owner acquired
// and released in between (more than the last releaser is remembered).
fn late_duplicate_of_a_released_owner_is_not_granted(p: &Prims) {
    let n = name("regrant");
    let (o, q, r) = (OwnerId::random(), OwnerId::random(), OwnerId::random());
    let t0 = p.now();
    let earlier = Timestamp::from_millis(t0.as_millis().saturating_sub(500));
    granted(p.acquire_at(&n, &o, LEASE, t0).expect("acquire"));
    assert_eq!(p.release(&n, &o), ReleaseOutcome::Released);
    for now in [t0, earlier] {
        let late = p.acquire_at(&n, &o, LEASE, now).expect("late acquire");
        assert!(
            matches!(late, AcquireOutcome::Busy { .. }),
            "{}: the late duplicate (now {now}) of a released owner's acquisition was granted: {late:?}",
            p.label()
        );
    }
    assert_eq!(p.inspect(&n), None, "{}: the record stays free", p.label());
    let gq = granted(p.acquire(&n, &q));
    assert_eq!(p.release(&n, &q), ReleaseOutcome::Released);
    // `o` is no longer the last releaser.
    let late = p.acquire_at(&n, &o, LEASE, t0).expect("late acquire");
    assert!(
        matches!(late, AcquireOutcome::Busy { .. }),
        "{}: the late duplicate of a released owner's acquisition was granted after another owner released: {late:?}",
        p.label()
    );
    let gr = granted(p.acquire(&n, &r));
    assert!(gr.token > gq.token, "{} > {}", gr.token, gq.token);
    assert_eq!(p.release(&n, &r), ReleaseOutcome::Released);
}
both_forms!(late_duplicate_of_a_released_owner_is_not_granted: late_duplicate_of_a_released_owner_is_not_granted_async, late_duplicate_of_a_released_owner_is_not_granted_sync);

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

// Shows (both servers): any lock name is a valid record id: Unicode, NUL,
// operator-looking strings, the maximum of 1024 bytes; distinct names never
// share a record.
fn odd_names(p: &Prims) {
    let names = [
        "ロック/ü 🔒".to_owned(),
        "with\0nul".to_owned(),
        "with".to_owned(),
        "$where".to_owned(),
        "{\"$gt\": \"\"}".to_owned(),
        ".".to_owned(),
        "x".repeat(1024),
        "é".repeat(512),
        "a.b.c".to_owned(),
    ];
    let owners: Vec<OwnerId> = names.iter().map(|_| OwnerId::random()).collect();
    for (s, o) in names.iter().zip(&owners) {
        assert_eq!(s.len().min(1024), s.len());
        granted(p.acquire(&name(s), o));
    }
    for (s, o) in names.iter().zip(&owners) {
        let rec = p.inspect(&name(s)).unwrap_or_else(|| panic!("{s:?} held"));
        assert_eq!(&rec.owner, o, "{s:?} has its own record");
        assert!(matches!(
            p.acquire(&name(s), &OwnerId::random()),
            AcquireOutcome::Busy { .. }
        ));
    }
    for (s, o) in names.iter().zip(&owners) {
        assert_eq!(p.release(&name(s), o), ReleaseOutcome::Released, "{s:?}");
    }
}
both_forms!(odd_names: odd_names_async, odd_names_sync);

// Shows (both servers): a record that is not shaped as expected gives an
// `Unexpected` error (never a grant or a panic); a record held by somebody
// else in an unknown shape is Busy, not overwritten.
fn malformed_records(p: &Prims) {
    let future = DateTime::from_millis(p.now().as_millis() + 600_000);
    let past = DateTime::from_millis(p.now().as_millis() - 600_000);
    p.insert_raw(
        doc! { "_id": "bad-owner", "owner": 5, "epoch": 1_i64, "seq": 1_i64, "expiresAt": future },
    );
    p.insert_raw(doc! { "_id": "bad-seq", "owner": "someone", "epoch": 1_i64, "seq": "one", "expiresAt": past });
    p.insert_raw(doc! { "_id": "no-expiry", "owner": "someone", "epoch": 1_i64, "seq": 1_i64 });
    let kind = |r: Result<Option<LockRecord>, BackendError>| r.err().map(|e| e.kind());
    assert_eq!(
        kind(p.inspect_at(&name("bad-owner"), p.now())),
        Some(BackendErrorKind::Unexpected)
    );
    assert_eq!(
        kind(p.inspect_at(&name("bad-seq"), p.now())),
        Some(BackendErrorKind::Unexpected)
    );
    assert_eq!(
        kind(p.inspect_at(&name("no-expiry"), p.now())),
        Some(BackendErrorKind::Unexpected)
    );
    // Held by "someone" with no expiry: never granted to another.
    assert!(matches!(
        p.acquire(&name("no-expiry"), &OwnerId::random()),
        AcquireOutcome::Busy { .. }
    ));
    // An expired record whose seq is not a number: the update fails.
    let err = p
        .acquire_at(&name("bad-seq"), &OwnerId::random(), LEASE, p.now())
        .expect_err("a string seq cannot be incremented");
    assert_eq!(err.kind(), BackendErrorKind::Unexpected, "{err}");
}
both_forms!(malformed_records: malformed_records_async, malformed_records_sync);

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
