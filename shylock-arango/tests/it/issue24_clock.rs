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
