//! A server restart in the middle of a held lease (after a crash, SIGKILL,
//! and after a clean stop): the lock record survives (FerretDB keeps it in
//! SQLite files in the test's temporary directory), no
//! second owner gets the lock while the lease is live, and the holder's
//! renewals work again after the restart.
//!
//! Server: a FerretDB v1.24.2 of this test alone (it is stopped and started
//! again on the same port and data). One connection per client; holder and
//! contender never send overlapping commands, so FerretDB's non-atomic
//! updates play no part. With `SHYLOCK_MONGODB_URI` set, these tests cannot
//! restart the user's server and are skipped with a printed reason.

mod support;

use std::time::{Duration, Instant};

use shylock_core::backend::{
    AcquireOutcome, AcquireRequest, AsyncBackend, InspectRequest, ReleaseOutcome, ReleaseRequest,
    RenewOutcome, RenewRequest,
};
use shylock_core::{AsyncLock, Backend, BackendErrorKind, LockName, OwnerId};
use shylock_mongo::MongoBackend;

fn skip_if_external(test: &str) -> bool {
    if std::env::var(support::URI_ENV).is_ok_and(|v| !v.trim().is_empty()) {
        println!(
            "SKIPPED {test}: {} is set, and this test must stop and restart the server, \
             which it only does with its own FerretDB",
            support::URI_ENV
        );
        return true;
    }
    false
}

fn deadline(secs: u64) -> Option<Instant> {
    Some(Instant::now() + Duration::from_secs(secs))
}

// Shows (FerretDB killed with SIGKILL, primitive level): the record survives a crash and restart; Busy for
// another owner while the lease is live; the owner renews after restart;
// tokens keep rising.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_keeps_the_record_and_the_lease() {
    if skip_if_external("restart_keeps_the_record_and_the_lease") {
        return;
    }
    let mut server = support::FerretDb::start(false);
    let client = support::async_client(&server.uri(), true);
    let b = MongoBackend::create_with(&client, "restartdb", support::options())
        .await
        .expect("create");
    let (n, a, other) = (
        LockName::new("survivor").expect("name"),
        OwnerId::random(),
        OwnerId::random(),
    );
    let lease = Duration::from_secs(20);

    let t0 = b.server_time(deadline(10)).await.expect("time");
    let req = AcquireRequest {
        name: &n,
        owner: &a,
        lease,
        now: t0,
        deadline: deadline(10),
    };
    let AcquireOutcome::Acquired(grant) = b.try_acquire(req).await.expect("acquire") else {
        panic!("a free lock must be granted");
    };

    server.crash();
    // While it is down: a transient error within the deadline, no grant.
    let started = Instant::now();
    let now = t0.saturating_add(started.elapsed());
    let req = AcquireRequest {
        name: &n,
        owner: &other,
        lease,
        now,
        deadline: Some(Instant::now() + Duration::from_millis(700)),
    };
    let err = b.try_acquire(req).await.expect_err("the server is down");
    assert!(
        matches!(
            err.kind(),
            BackendErrorKind::Timeout | BackendErrorKind::Unavailable
        ),
        "{err}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "gave up in {:?}",
        started.elapsed()
    );

    server.restart();

    // After the restart: the record is there, the lease is live, the other
    // owner is refused.
    let now = b
        .server_time(deadline(30))
        .await
        .expect("time after restart");
    assert!(now < grant.expires_at, "the test ran within the lease");
    let rec = b
        .inspect(InspectRequest {
            name: &n,
            now,
            deadline: deadline(10),
        })
        .await
        .expect("inspect")
        .expect("the record survived the restart");
    assert_eq!(rec.owner, a);
    assert_eq!(rec.token, grant.token);
    let req = AcquireRequest {
        name: &n,
        owner: &other,
        lease,
        now,
        deadline: deadline(10),
    };
    assert!(matches!(
        b.try_acquire(req).await.expect("acquire"),
        AcquireOutcome::Busy { .. }
    ));

    // The holder renews.
    let req = RenewRequest {
        name: &n,
        owner: &a,
        token: grant.token,
        lease,
        now,
        deadline: deadline(10),
    };
    assert!(matches!(
        b.renew(req).await.expect("renew"),
        RenewOutcome::Renewed { .. }
    ));

    // Released, the other owner gets it with a larger token.
    let req = ReleaseRequest {
        name: &n,
        owner: &a,
        token: grant.token,
        now,
        deadline: deadline(10),
    };
    assert_eq!(
        b.release(req).await.expect("release"),
        ReleaseOutcome::Released
    );
    let req = AcquireRequest {
        name: &n,
        owner: &other,
        lease,
        now,
        deadline: deadline(10),
    };
    let AcquireOutcome::Acquired(next) = b.try_acquire(req).await.expect("acquire") else {
        panic!("released lock must be granted");
    };
    assert!(next.token > grant.token);
}

// Shows (FerretDB stopped cleanly, which takes it about 3 s, through the
// core's AsyncLock): a guard with a 10 s lease,
// renewed every 1 s, stays held across a restart (its failed renewals are
// retried within the lease); a contender's try_acquire after the restart
// gets nothing; the guard renews after the restart and releases normally.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_under_a_renewed_guard() {
    if skip_if_external("restart_under_a_renewed_guard") {
        return;
    }
    let mut server = support::FerretDb::start(false);
    let holder_client = support::async_client(&server.uri(), true);
    let holder = Backend::from(
        MongoBackend::create_with(&holder_client, "restartdb", support::options())
            .await
            .expect("create"),
    );
    let contender_client = support::async_client(&server.uri(), true);
    let contender = Backend::from(
        MongoBackend::new(&contender_client, "restartdb", support::options()).expect("backend"),
    );

    let lock = AsyncLock::with_backend("guarded", &holder)
        .lease(Duration::from_secs(10))
        .renewal(shylock_core::Renewal::Every(Duration::from_secs(1)));
    let guard = lock.acquire().await.expect("acquire");
    let token = guard.token();

    let stopping = Instant::now();
    server.stop();
    // Counted after the server is down: any further renewal happens after
    // the restart.
    let while_down = guard.renewals();
    println!("stopped in {:?}", stopping.elapsed());
    tokio::time::sleep(Duration::from_millis(1500)).await;
    server.restart();
    let restarted = Instant::now();

    let other = AsyncLock::with_backend("guarded", &contender).timeout(Duration::from_secs(10));
    assert!(
        other
            .try_acquire()
            .await
            .expect("try_acquire after restart")
            .is_none(),
        "no second holder while the lease is live"
    );
    // Wait for a renewal after the restart.
    let renewed_at = loop {
        if guard.renewals() > while_down {
            break restarted.elapsed();
        }
        assert!(
            restarted.elapsed() < Duration::from_secs(4),
            "no renewal after the restart"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        guard.is_held(),
        "the guard is still held: {:?}",
        guard.lost_reason()
    );
    let rec = other.inspect().await.expect("inspect").expect("held");
    assert_eq!(rec.token, token);
    println!(
        "renewed {renewed_at:?} after the restart; {while_down} renewals before the stop, {} in all",
        guard.renewals()
    );
    guard.release().await.expect("release");
    let next = other
        .try_acquire()
        .await
        .expect("try_acquire")
        .expect("free after release");
    assert!(next.token() > token);
    next.release().await.expect("release");
}
