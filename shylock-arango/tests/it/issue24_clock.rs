//! Issue 24, item 1: `DATE_NOW()` is folded while the server plans a query,
//! before the collection's exclusive lock is taken, so a query that waits
//! for the lock writes a `now` that is older by the wait; the backend
//! bounds that wait with the cursor option `lockTimeout`.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::json;
use shylock_arango::{ArangoBackend, ArangoOptions, DEFAULT_LOCK_TIMEOUT};
use shylock_core::{BackendErrorKind, LockName, OwnerId};

use crate::backend_async::{acquire, attempt, granted};
use crate::support::target::{EMU_DB, emulated, unique_collection};

const LEASE: Duration = Duration::from_secs(30);

async fn connect(
    t: &crate::support::target::Target,
    options: ArangoOptions,
) -> Result<ArangoBackend, shylock_core::Error> {
    ArangoBackend::connect_with(&t.url, &t.user, &t.password, &t.db, options).await
}

/// (a) A grant that waited D for the lock: its `expiresAt` is the time
/// before the wait plus the lease, not the time of the write plus the
/// lease. (Before: the emulator read its clock after its lock, and the
/// stored expiry was D later.)
#[tokio::test]
async fn a_grant_that_waited_for_the_lock_counts_its_lease_from_before_the_wait() {
    let t = emulated();
    let emu = t.emu();
    let coll = unique_collection("now24");
    let b = connect(&t, ArangoOptions::new().collection(&coll))
        .await
        .unwrap();
    let wait = Duration::from_millis(1500);
    emu.delay_lock(wait);
    let before = emu.now_ms();
    let g = granted(
        acquire(
            &b,
            &LockName::new("now24").unwrap(),
            &OwnerId::random(),
            LEASE,
        )
        .await,
    );
    let after = emu.now_ms();
    assert!(after - before >= 1500, "the query waited for the lock");
    let doc = emu.document(EMU_DB, &coll, "n-now24").unwrap();
    let stored = (doc["expiresAt"].as_f64().unwrap() * 1000.0).round() as i64;
    let lease = LEASE.as_millis() as i64;
    // `now` was read before the wait: the lease is shortened by it.
    assert!(
        stored - before - lease < 500,
        "expiresAt {stored} should be (time before the wait {before}) + lease, not + the wait"
    );
    assert_eq!(g.expires_at.as_millis(), stored);
}

/// (b) The backend sends `options.lockTimeout` with every lock query, and
/// the emulator honours it: a wait beyond it ends at the bound with 500 /
/// 18, which the backend reports as transient (`Unavailable`).
#[tokio::test]
async fn lock_waits_are_bounded_by_the_lock_timeout_sent_with_each_query() {
    let t = emulated();
    let emu = t.emu();
    let coll = unique_collection("lt24");
    let b = connect(
        &t,
        ArangoOptions::new()
            .collection(&coll)
            .lock_timeout(Duration::from_millis(400)),
    )
    .await
    .unwrap();
    let name = LockName::new("lt24").unwrap();
    granted(acquire(&b, &name, &OwnerId::random(), LEASE).await);
    let sent: Vec<_> = emu
        .requests()
        .into_iter()
        .filter(|r| r.query.is_some())
        .collect();
    assert!(!sent.is_empty());
    for r in &sent {
        let body = r.body.as_ref().unwrap();
        assert_eq!(body["options"]["lockTimeout"], json!(0.4), "{body}");
    }

    // The emulator: a wait beyond the query's lockTimeout ends at it.
    emu.delay_lock(Duration::from_secs(3));
    let started = Instant::now();
    let (status, _, answer) = t
        .raw(
            Method::POST,
            &format!("/_db/{}/_api/cursor", t.db),
            Some(json!({
                "query": shylock_arango::aql::ACQUIRE,
                "bindVars": { "@collection": coll, "key": "n-raw", "name": "raw", "owner": "o", "leaseMs": 1000 },
                "options": { "lockTimeout": 0.3 },
            })),
        )
        .await;
    assert_eq!(
        (status, answer["errorNum"].as_i64()),
        (500, Some(18)),
        "{answer}"
    );
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(emu.document(EMU_DB, &coll, "n-raw").is_none(), "no write");

    // The backend: 18 is transient.
    emu.delay_lock(Duration::from_secs(3));
    let err = attempt(&b, &name, &OwnerId::random(), LEASE)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), BackendErrorKind::Unavailable, "{err}");
    assert!(err.to_string().contains("errorNum 18"), "{err}");
}

/// The lock timeout is checked before any request: at most 30 s, so that
/// the 60 s minimum TTL grace always exceeds it.
#[tokio::test]
async fn lock_timeout_is_bounded_by_the_grace_floor() {
    assert_eq!(
        ArangoOptions::new().get_lock_timeout(),
        DEFAULT_LOCK_TIMEOUT
    );
    let t = emulated();
    for bad in [Duration::ZERO, Duration::from_secs(31)] {
        let err = connect(&t, ArangoOptions::new().lock_timeout(bad))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("lock_timeout"), "{err}");
    }
    assert!(t.emu().requests().is_empty(), "refused before any request");
}

/// Item 3: an acquire held up on the server (waiting for the collection's
/// lock) commits after its client gave up and after the clean-up release
/// found nothing. The clean-up releases again once the acquire can no
/// longer commit (`lock_timeout` + `QUERY_RUN_ALLOWANCE` after it was
/// sent), so the late grant is freed within that bound, not after a whole
/// lease. (Before: the lock stayed held by the gone owner for the lease.)
#[tokio::test]
async fn an_acquire_that_commits_after_its_clean_up_is_released_within_the_bound() {
    use shylock_core::{AsyncLock, Backend};
    let t = emulated();
    let emu = t.emu();
    let coll = unique_collection("late24");
    let options = ArangoOptions::new()
        .collection(&coll)
        .lock_timeout(Duration::from_secs(1));
    let bound = options.max_commit_delay();
    let b = connect(&t, options).await.unwrap();
    let backend = Backend::from(b);
    let lock = AsyncLock::with_backend("late24", &backend).lease(Duration::from_secs(120));
    let key = shylock_arango::lock_key("late24");

    // The acquire waits 800 ms for the lock on the server (within its
    // lockTimeout); its client gives up after 300 ms.
    emu.delay_lock(Duration::from_millis(800));
    let sent = Instant::now();
    let err = lock
        .acquire_timeout(Duration::from_millis(300))
        .await
        .unwrap_err();
    assert!(matches!(err, shylock_core::Error::Timeout { .. }), "{err}");

    // The write lands after the client gave up ...
    while emu
        .document(EMU_DB, &coll, &key)
        .is_none_or(|d| d["owner"].is_null())
    {
        assert!(sent.elapsed() < Duration::from_secs(5), "no late commit");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // ... after the clean-up's first release, which found nothing.
    let log = emu.requests();
    let first_release = log
        .iter()
        .position(|r| r.query == Some("release"))
        .expect("a clean-up release before the late commit");
    assert!(first_release > 0);

    // The clean-up releases again once the acquire cannot commit any more.
    assert!(backend.settle(Duration::from_secs(30)).await);
    assert!(
        lock.inspect().await.unwrap().is_none(),
        "the late grant is still held: {:?}",
        emu.document(EMU_DB, &coll, &key)
    );
    assert!(
        sent.elapsed() < bound + Duration::from_secs(3),
        "freed within the bound ({bound:?}), after {:?}",
        sent.elapsed()
    );
    let releases = emu
        .requests()
        .iter()
        .filter(|r| r.query == Some("release"))
        .count();
    assert_eq!(
        releases, 2,
        "one clean-up release, then one after the bound"
    );
}
