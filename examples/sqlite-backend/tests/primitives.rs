//! The SQLite backend's primitives, called directly: the rules of
//! `shylock_core::backend` that the lock-level suite reaches only through
//! the core, the fixtures' cases (a deleted record, a malformed one), bad
//! input and deadlines.

mod support;

use std::time::{Duration, Instant};

use shylock_core::backend::{
    AcquireOutcome, AcquireRequest, ClockSource, Grant, InspectRequest, RELEASERS_REMEMBERED,
    ReleaseOutcome, ReleaseRequest, RenewOutcome, RenewRequest, SyncBackend,
};
use shylock_core::{BackendErrorKind, Error, LockName, OwnerId, Timestamp};
use shylock_sqlite_example::SqliteBackend;
use support::{RawRecord, TempDb};

const LEASE: Duration = Duration::from_secs(20);

fn acquire(b: &SqliteBackend, name: &LockName, owner: &OwnerId, lease: Duration) -> AcquireOutcome {
    try_acquire(b, name, owner, lease).expect("try_acquire")
}

fn try_acquire(
    b: &SqliteBackend,
    name: &LockName,
    owner: &OwnerId,
    lease: Duration,
) -> Result<AcquireOutcome, shylock_core::BackendError> {
    b.try_acquire(AcquireRequest {
        name,
        owner,
        lease,
        // Ignored: the backend reads its own clock.
        now: Timestamp::EPOCH,
        deadline: Some(Instant::now() + Duration::from_secs(10)),
    })
}

fn granted(outcome: AcquireOutcome) -> Grant {
    match outcome {
        AcquireOutcome::Acquired(grant) => grant,
        busy => panic!("expected a grant: {busy:?}"),
    }
}

fn renew(b: &SqliteBackend, name: &LockName, owner: &OwnerId, lease: Duration) -> RenewOutcome {
    b.renew(RenewRequest {
        name,
        owner,
        token: shylock_core::FencingToken(1),
        lease,
        now: Timestamp::EPOCH,
        deadline: None,
    })
    .expect("renew")
}

fn release(b: &SqliteBackend, name: &LockName, owner: &OwnerId) -> ReleaseOutcome {
    b.release(ReleaseRequest {
        name,
        owner,
        token: shylock_core::FencingToken(1),
        now: Timestamp::EPOCH,
        deadline: None,
    })
    .expect("release")
}

fn inspect(
    b: &SqliteBackend,
    name: &LockName,
) -> Result<Option<shylock_core::LockRecord>, shylock_core::BackendError> {
    b.inspect(InspectRequest {
        name,
        now: Timestamp::EPOCH,
        deadline: None,
    })
}

#[test]
fn the_clock_is_the_databases() {
    let db = TempDb::new();
    let b = db.backend();
    assert_eq!(b.clock(), ClockSource::Server);
    let local = Timestamp::local_now();
    let server = b.server_time(None).expect("server time");
    // The same machine's wall clock, read by SQLite.
    assert!(
        server.since(local) < Duration::from_secs(60)
            && local.since(server) < Duration::from_secs(60)
    );
    assert!(b.describe().starts_with("sqlite "), "{}", b.describe());
}

#[test]
fn a_grant_is_exclusive_across_backends_on_one_file() {
    let db = TempDb::new();
    let (a, b) = (db.backend(), db.backend());
    let name = support::name("exclusive");
    let (first, second) = (OwnerId::random(), OwnerId::random());
    let grant = granted(acquire(&a, &name, &first, LEASE));
    match acquire(&b, &name, &second, LEASE) {
        AcquireOutcome::Busy { expires_at } => assert_eq!(expires_at, Some(grant.expires_at)),
        other => panic!("a live holding is not granted twice: {other:?}"),
    }
    let seen = inspect(&b, &name).expect("inspect").expect("held");
    assert_eq!((seen.owner, seen.token), (first.clone(), grant.token));
    assert_eq!(release(&b, &name, &second), ReleaseOutcome::NotOwner);
    assert!(
        inspect(&a, &name).expect("inspect").is_some(),
        "nobody else's holding is released"
    );
    assert_eq!(release(&b, &name, &first), ReleaseOutcome::Released);
    assert!(inspect(&a, &name).expect("inspect").is_none());
    let next = granted(acquire(&a, &name, &second, LEASE));
    assert!(next.token > grant.token);
}

#[test]
fn tokens_rise_across_deletion_of_the_record() {
    let db = TempDb::new();
    let b = db.backend();
    let name = support::name("deleted");
    let mut last = granted(acquire(&b, &name, &OwnerId::random(), LEASE)).token;
    for _ in 0..3 {
        assert!(support::delete_record(&b, &name), "there was a record");
        let next = granted(acquire(&b, &name, &OwnerId::random(), LEASE)).token;
        assert!(
            next > last,
            "{next} after {last}, across the record's deletion"
        );
        last = next;
    }
    // A record written by hand with a larger token: the sequence follows it.
    support::write_record(&b, &name, &RawRecord::free(1_000));
    assert!(support::delete_record(&b, &name));
    let next = granted(acquire(&b, &name, &OwnerId::random(), LEASE)).token;
    assert!(next.get() > 1_000, "{next}");
}

#[test]
fn garbage_collection_keeps_recent_records() {
    let db = TempDb::new();
    let b = db.backend();
    let name = support::name("gc");
    let owner = OwnerId::random();
    granted(acquire(&b, &name, &owner, Duration::from_millis(1)));
    assert_eq!(release(&b, &name, &owner), ReleaseOutcome::Released);
    // Released just now: its releasers are kept at least a minute.
    assert_eq!(b.collect_garbage(Duration::ZERO).expect("collect"), 0);
    assert!(matches!(
        acquire(&b, &name, &owner, LEASE),
        AcquireOutcome::Busy { .. }
    ));
    // Released (by hand) two minutes ago: gone.
    let old = b.server_time(None).expect("now").as_millis() - 120_000;
    support::write_record(
        &b,
        &name,
        &RawRecord {
            expires_at: old,
            ..RawRecord::free(7)
        },
    );
    assert_eq!(b.collect_garbage(Duration::ZERO).expect("collect"), 1);
}

#[test]
fn the_owners_retry_gets_a_new_token_and_never_a_shorter_lease() {
    let db = TempDb::new();
    let b = db.backend();
    let name = support::name("retry");
    let owner = OwnerId::random();
    let first = granted(acquire(&b, &name, &owner, LEASE));
    let retry = granted(acquire(&b, &name, &owner, Duration::from_secs(1)));
    assert!(retry.token > first.token);
    assert!(
        retry.expires_at >= first.expires_at,
        "{retry:?} after {first:?}"
    );
    match renew(&b, &name, &owner, Duration::from_secs(1)) {
        RenewOutcome::Renewed { expires_at } => assert!(expires_at >= first.expires_at),
        lost => panic!("{lost:?}"),
    }
}

#[test]
fn an_expired_record_not_taken_is_renewed_and_a_taken_one_is_lost() {
    let db = TempDb::new();
    let b = db.backend();
    let name = support::name("expired");
    let (owner, other) = (OwnerId::random(), OwnerId::random());
    granted(acquire(&b, &name, &owner, Duration::from_millis(30)));
    std::thread::sleep(Duration::from_millis(80));
    assert!(
        inspect(&b, &name).expect("inspect").is_none(),
        "inspect shows live holdings only"
    );
    assert!(matches!(
        renew(&b, &name, &owner, LEASE),
        RenewOutcome::Renewed { .. }
    ));
    assert!(inspect(&b, &name).expect("inspect").is_some());
    // Another record, expired and taken over this time.
    let name = support::name("taken");
    granted(acquire(&b, &name, &owner, Duration::from_secs(1)));
    assert!(matches!(
        acquire(&b, &name, &other, LEASE),
        AcquireOutcome::Busy { .. }
    ));
    std::thread::sleep(Duration::from_millis(1_200));
    granted(acquire(&b, &name, &other, LEASE));
    assert_eq!(renew(&b, &name, &owner, LEASE), RenewOutcome::Lost);
    assert_eq!(release(&b, &name, &owner), ReleaseOutcome::NotOwner);
    assert_eq!(
        inspect(&b, &name).expect("inspect").map(|r| r.owner),
        Some(other)
    );
}

#[test]
fn released_owners_are_refused_and_their_release_is_answered_again() {
    let db = TempDb::new();
    let b = db.backend();
    let name = support::name("releasers");
    let first = OwnerId::random();
    granted(acquire(&b, &name, &first, LEASE));
    assert_eq!(release(&b, &name, &first), ReleaseOutcome::Released);
    assert_eq!(
        release(&b, &name, &first),
        ReleaseOutcome::Released,
        "a release sent again"
    );
    for _ in 1..RELEASERS_REMEMBERED {
        let other = OwnerId::random();
        granted(acquire(&b, &name, &other, LEASE));
        assert_eq!(release(&b, &name, &other), ReleaseOutcome::Released);
        assert!(matches!(
            acquire(&b, &name, &first, LEASE),
            AcquireOutcome::Busy { .. }
        ));
    }
    // One more releaser: the first one is forgotten.
    let other = OwnerId::random();
    granted(acquire(&b, &name, &other, LEASE));
    assert_eq!(release(&b, &name, &other), ReleaseOutcome::Released);
    assert_eq!(release(&b, &name, &first), ReleaseOutcome::NotOwner);
    granted(acquire(&b, &name, &first, LEASE));
}

#[test]
fn malformed_records_are_errors_not_panics() {
    let db = TempDb::new();
    let b = db.backend();
    let name = support::name("malformed");
    let owner = OwnerId::random();
    let unexpected = |r: Result<_, shylock_core::BackendError>, what: &str| match r {
        Err(e) => assert_eq!(e.kind(), BackendErrorKind::Unexpected, "{what}: {e}"),
        Ok(answer) => panic!("{what}: {answer:?}"),
    };
    // Releasers that are not JSON.
    support::write_record(
        &b,
        &name,
        &RawRecord {
            releasers: "not json".into(),
            ..RawRecord::free(3)
        },
    );
    unexpected(
        try_acquire(&b, &name, &owner, LEASE).map(|_| ()),
        "releasers that are not JSON",
    );
    // A live holding with a token that is not positive.
    let later = b.server_time(None).expect("now").as_millis() + 60_000;
    let bad_token = RawRecord {
        owner: Some("someone".into()),
        token: -4,
        expires_at: later,
        releasers: "[]".into(),
    };
    support::write_record(&b, &name, &bad_token);
    unexpected(inspect(&b, &name).map(|_| ()), "a negative token");
    // The token sequence deleted: no grant, and no reuse of tokens.
    support::delete_record(&b, &name);
    support::delete_token_sequence(&b);
    unexpected(
        try_acquire(&b, &name, &owner, LEASE).map(|_| ()),
        "no token sequence",
    );
    assert!(
        inspect(&b, &name).expect("inspect").is_none(),
        "the failed grant left nothing"
    );
}

#[test]
fn bad_configuration_is_refused_with_typed_errors() {
    let db = TempDb::new();
    for prefix in ["", "1abc", "a-b", "sqlite_x", "a b", &"x".repeat(65)] {
        let refused = SqliteBackend::open_with_prefix(db.path(), prefix);
        assert!(
            matches!(refused, Err(Error::InvalidConfig { .. })),
            "{prefix:?}: {refused:?}"
        );
    }
    for path in ["", ":memory:"] {
        let refused = SqliteBackend::open(path);
        assert!(
            matches!(refused, Err(Error::InvalidConfig { .. })),
            "{path:?}: {refused:?}"
        );
    }
    let missing = SqliteBackend::open(db.path().join("no-such-dir").join("locks.db"));
    assert_eq!(
        missing.err().and_then(|e| e.backend_kind()),
        Some(BackendErrorKind::InvalidConfig)
    );
    let not_a_db = db.path().with_file_name("garbage.db");
    std::fs::write(&not_a_db, vec![0x5a_u8; 8192]).expect("write");
    let refused = SqliteBackend::open(&not_a_db);
    assert_eq!(
        refused.err().and_then(|e| e.backend_kind()),
        Some(BackendErrorKind::InvalidConfig)
    );
    // Two prefixes in one file are two sets of locks.
    let (a, b) = (
        db.backend(),
        SqliteBackend::open_with_prefix(db.path(), "other").expect("open"),
    );
    let name = support::name("prefixes");
    granted(acquire(&a, &name, &OwnerId::random(), LEASE));
    granted(acquire(&b, &name, &OwnerId::random(), LEASE));
    let too_long = try_acquire(&a, &name, &OwnerId::random(), Duration::MAX);
    assert_eq!(
        too_long.err().map(|e| e.kind()),
        Some(BackendErrorKind::Other)
    );
}

#[test]
fn a_locked_file_ends_in_a_timeout_at_the_deadline() {
    let db = TempDb::new();
    let b = db.backend();
    let name = support::name("deadline");
    let owner = OwnerId::random();
    // Another connection holds the file's write lock.
    let mut blocker = support::raw_connection(&db.path());
    let tx = blocker
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .expect("hold the write lock");
    let started = Instant::now();
    let answer = b.try_acquire(AcquireRequest {
        name: &name,
        owner: &owner,
        lease: LEASE,
        now: Timestamp::EPOCH,
        deadline: Some(started + Duration::from_millis(300)),
    });
    let waited = started.elapsed();
    let error = answer.expect_err("the file stays locked");
    assert_eq!(error.kind(), BackendErrorKind::Timeout, "{error}");
    assert!(error.is_transient());
    assert!(
        waited >= Duration::from_millis(250),
        "gave up early: {waited:?}"
    );
    // Loaded machine: a generous bound.
    assert!(waited < Duration::from_secs(5), "gave up late: {waited:?}");
    // Reads go on beside the writer (WAL).
    assert!(inspect(&b, &name).expect("inspect").is_none());
    // A deadline already passed: nothing is sent.
    let passed = b.server_time(Some(Instant::now() - Duration::from_millis(1)));
    assert_eq!(
        passed.err().map(|e| e.kind()),
        Some(BackendErrorKind::Timeout)
    );
    drop(tx);
    granted(acquire(&b, &name, &owner, LEASE));
}

// Issue 23.3 (hostile records): the largest token SQLite holds, written by
// another program. The sequence follows it, so no later token can rise:
// acquire is an error (never a panic, never a lower token), also after the
// record is deleted, until an operator decides what the protected resources
// accept. A record held far beyond now + RECORD_HORIZON is taken over.
#[test]
fn a_huge_token_is_an_error_never_a_lower_token() {
    let db = TempDb::new();
    let b = db.backend();
    let n = LockName::new("huge").unwrap();
    support::write_record(&b, &n, &RawRecord::free(i64::MAX));
    let got = try_acquire(&b, &n, &OwnerId::random(), LEASE);
    let err = got.expect_err("no token above i64::MAX");
    eprintln!("acquire over token i64::MAX: {:?}: {err}", err.kind());
    assert!(support::delete_record(&b, &n));
    let got = try_acquire(&b, &n, &OwnerId::random(), LEASE);
    assert!(got.is_err(), "still no lower token after deletion: {got:?}");
    let other = LockName::new("other").unwrap();
    let got = try_acquire(&b, &other, &OwnerId::random(), LEASE);
    assert!(got.is_err(), "nor for another name (one sequence): {got:?}");
}

#[test]
fn a_far_future_expiry_is_taken_over() {
    let db = TempDb::new();
    let b = db.backend();
    let n = LockName::new("far").unwrap();
    let record = RawRecord {
        owner: Some("someone".into()),
        token: 9,
        expires_at: 253_402_300_799_000,
        releasers: "[]".into(),
    };
    support::write_record(&b, &n, &record);
    let g = granted(acquire(&b, &n, &OwnerId::random(), LEASE));
    assert!(g.token.0 > 9, "{g:?}");
    assert!(g.expires_at.as_millis() < 253_402_300_799_000, "{g:?}");
}
