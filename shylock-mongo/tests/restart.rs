//! A server restart in the middle of a held lease (after a crash, SIGKILL of
//! the gateway and of PostgreSQL, and after a clean stop; and PostgreSQL
//! alone restarting under a live gateway): the lock record survives
//! (PostgreSQL keeps it in the test's temporary directory), no second owner
//! gets the lock while the lease is live, the holder's renewals work again
//! after the restart, and an acquisition without a time limit waits through
//! the outage.
//!
//! Server: a DocumentDB of each test alone (killed and started again on the
//! same ports and data), also when `SHYLOCK_MONGODB_URI` names a server: a
//! user's server is not ours to kill.

mod support;

use std::time::{Duration, Instant};

use shylock_core::backend::{
    AcquireOutcome, AcquireRequest, AsyncBackend, InspectRequest, ReleaseOutcome, ReleaseRequest,
    RenewOutcome, RenewRequest,
};
use shylock_core::{AsyncLock, Backend, BackendErrorKind, LockName, OwnerId};
use shylock_mongo::MongoBackend;

fn deadline(secs: u64) -> Option<Instant> {
    Some(Instant::now() + Duration::from_secs(secs))
}

// Shows (DocumentDB killed with SIGKILL, primitive level): the record survives a crash and restart; Busy for
// another owner while the lease is live; the owner renews after restart;
// tokens keep rising.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_keeps_the_record_and_the_lease() {
    let mut server = support::own_server();
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

    server.kill_postgres();
    server.kill_gateway();
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

// Shows (DocumentDB stopped cleanly, through the
// core's AsyncLock): a guard with a 10 s lease,
// renewed every 1 s, stays held across a restart (its failed renewals are
// retried within the lease); a contender's try_acquire after the restart
// gets nothing; the guard renews after the restart and releases normally.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_under_a_renewed_guard() {
    let mut server = support::own_server();
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

// Shows (PostgreSQL killed with SIGKILL under a live gateway, then started
// again while acquisitions without a time limit wait, both forms): the
// gateway answers "the database system is starting up" / "not yet accepting
// connections" (code 50463173, SQLSTATE 57P03) or a lost connection while
// PostgreSQL recovers; each acquisition waits through that as through any
// outage and is granted once PostgreSQL is back, with tokens rising; so is
// one through a client made during the outage, whose SCRAM handshake fails
// with the gateway's "error connecting to server" (not a credentials error).
// Before: `Error::Backend` of kind `Other` (57P03) or `Unauthorized` (the
// handshake), fatal.
#[test]
fn acquire_without_a_limit_waits_while_postgres_restarts() {
    let mut server = support::own_server();
    let uri = server.uri();
    let sclient = support::sync_client(&uri, false);
    let sync_backend = Backend::from(
        shylock_mongo::sync::MongoBackend::create_with(&sclient, "pgrestart", support::options())
            .expect("sync create"),
    );
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let aclient = rt.block_on(async { support::async_client(&uri, false) });
    let async_backend = Backend::from(
        rt.block_on(MongoBackend::create_with(
            &aclient,
            "pgrestart",
            support::options(),
        ))
        .expect("async create"),
    );
    let lease = Duration::from_secs(10);
    let sync_lock = shylock_core::Lock::with_backend("pg-sync", &sync_backend).lease(lease);
    let async_lock = AsyncLock::with_backend("pg-async", &async_backend).lease(lease);
    // Acquire, then release explicitly (a dropped async guard releases in
    // the background, on a runtime that may be gone by then).
    let sync_cycle = || -> Result<shylock_core::FencingToken, shylock_core::Error> {
        let guard = sync_lock.acquire()?;
        let token = guard.token();
        guard.release()?;
        Ok(token)
    };
    let async_cycle = || -> Result<shylock_core::FencingToken, shylock_core::Error> {
        let rt = tokio::runtime::Runtime::new().expect("runtime");
        rt.block_on(async {
            let guard = async_lock.acquire().await?;
            let token = guard.token();
            guard.release().await?;
            Ok(token)
        })
    };
    let mut last_sync = sync_cycle().expect("sync cycle");
    let mut last_async = async_cycle().expect("async cycle");
    for round in 0..3 {
        server.kill_postgres();
        let waiters = std::thread::scope(|s| {
            let sync_waiter = s.spawn(sync_cycle);
            let async_waiter = s.spawn(async_cycle);
            // A client made during the outage: its connections authenticate
            // (SCRAM) while the gateway cannot reach PostgreSQL.
            let fresh_waiter = s.spawn(|| {
                let client = support::sync_client(&uri, false);
                let backend = Backend::from(
                    shylock_mongo::sync::MongoBackend::new(
                        &client,
                        "pgrestart",
                        support::options(),
                    )
                    .expect("new"),
                );
                let guard = shylock_core::Lock::with_backend("pg-fresh", &backend)
                    .lease(lease)
                    .acquire()?;
                guard.release()
            });
            // Let them meet the outage, then bring PostgreSQL back.
            std::thread::sleep(Duration::from_millis(1500));
            server.restart();
            fresh_waiter
                .join()
                .expect("fresh waiter")
                .unwrap_or_else(|e| panic!("round {round}: a client made during the outage: {e}"));
            (
                sync_waiter.join().expect("sync waiter"),
                async_waiter.join().expect("async waiter"),
            )
        });
        let (sync_token, async_token) = waiters;
        let sync_token = sync_token.unwrap_or_else(|e| panic!("round {round}: sync: {e}"));
        let async_token = async_token.unwrap_or_else(|e| panic!("round {round}: async: {e}"));
        assert!(sync_token > last_sync, "round {round}: tokens rise");
        assert!(async_token > last_async, "round {round}: tokens rise");
        (last_sync, last_async) = (sync_token, async_token);
    }
}
