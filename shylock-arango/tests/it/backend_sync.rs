//! What is specific to the sync backend: plain threads, no runtime of the
//! caller's, no panic inside an async context, one request per operation,
//! typed errors and deadlines. The contract every backend keeps is the
//! core's primitive conformance checks, run in conformance.rs.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use shylock_arango::{ArangoOptions, sync::ArangoBackend};
use shylock_core::backend::{
    AcquireOutcome, AcquireRequest, ClockSource, ReleaseOutcome, ReleaseRequest, SyncBackend,
};
use shylock_core::{BackendErrorKind, FencingToken, LockName, OwnerId, Timestamp};

use crate::support::target::{Target, dead_url, emulated, target, unique_collection};

fn deadline() -> Option<Instant> {
    Some(Instant::now() + Duration::from_secs(10))
}

fn connect(t: &Target) -> ArangoBackend {
    ArangoBackend::connect_with(
        &t.url,
        &t.user,
        &t.password,
        &t.db,
        ArangoOptions::new().collection(unique_collection("sync")),
    )
    .unwrap()
}

fn acquire(b: &ArangoBackend, name: &LockName, owner: &OwnerId) -> AcquireOutcome {
    b.try_acquire(AcquireRequest {
        name,
        owner,
        lease: Duration::from_secs(30),
        now: Timestamp::EPOCH,
        deadline: deadline(),
    })
    .unwrap()
}

fn release(b: &ArangoBackend, name: &LockName, owner: &OwnerId) -> ReleaseOutcome {
    b.release(ReleaseRequest {
        name,
        owner,
        token: FencingToken(0),
        now: Timestamp::EPOCH,
        deadline: deadline(),
    })
    .unwrap()
}

fn cleanup(t: &Target, b: &ArangoBackend) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(t.drop_collection(b.collection()));
}

/// The clock is the server's, read from a plain thread.
#[test]
fn clock_from_a_plain_thread() {
    let t = target();
    let b = connect(&t);
    assert_eq!(b.clock(), ClockSource::Server);
    assert!(b.server_time(deadline()).unwrap() > Timestamp::EPOCH);
    cleanup(&t, &b);
}

/// Called from inside a tokio runtime (even a single-threaded one) the sync
/// backend blocks that thread but works and never panics.
#[tokio::test(flavor = "current_thread")]
async fn works_inside_an_async_context() {
    let t = target();
    let b = connect(&t);
    let name = LockName::new("sync-in-async").unwrap();
    let a = OwnerId::random();
    assert!(matches!(
        acquire(&b, &name, &a),
        AcquireOutcome::Acquired(_)
    ));
    assert_eq!(release(&b, &name, &a), ReleaseOutcome::Released);
    t.drop_collection(b.collection()).await;
    drop(b); // dropping inside the runtime is fine too
}

#[test]
fn one_request_per_operation() {
    let t = emulated();
    let b = connect(&t);
    let emu = t.emu();
    let name = LockName::new("sync-counted").unwrap();
    let a = OwnerId::random();
    emu.clear_requests();
    assert!(matches!(
        acquire(&b, &name, &a),
        AcquireOutcome::Acquired(_)
    ));
    assert_eq!(emu.requests().len(), 1);
    emu.clear_requests();
    assert_eq!(release(&b, &name, &a), ReleaseOutcome::Released);
    assert_eq!(emu.requests().len(), 1);
}

#[test]
fn racing_threads_never_share_the_lock() {
    let t = target();
    let b = Arc::new(connect(&t));
    let holders = Arc::new(AtomicUsize::new(0));
    let threads: Vec<_> = (0..6)
        .map(|_| {
            let (b, holders) = (Arc::clone(&b), Arc::clone(&holders));
            std::thread::spawn(move || {
                let name = LockName::new("sync-race").unwrap();
                let mut won = 0;
                let end = Instant::now() + Duration::from_secs(2);
                while Instant::now() < end {
                    let owner = OwnerId::random();
                    if let AcquireOutcome::Acquired(_) = acquire(&b, &name, &owner) {
                        assert_eq!(holders.fetch_add(1, Ordering::SeqCst), 0, "two holders");
                        std::thread::sleep(Duration::from_millis(2));
                        holders.fetch_sub(1, Ordering::SeqCst);
                        assert_eq!(release(&b, &name, &owner), ReleaseOutcome::Released);
                        won += 1;
                    }
                }
                won
            })
        })
        .collect();
    let total: usize = threads.into_iter().map(|h| h.join().unwrap()).sum();
    assert!(total > 6, "only {total} grants");
    cleanup(&t, &b);
}

#[test]
fn errors_are_typed() {
    let t = target();
    let err = ArangoBackend::connect(&t.url, &t.user, "wrong-password-x", &t.db).unwrap_err();
    assert_eq!(
        err.backend_kind(),
        Some(BackendErrorKind::Unauthorized),
        "{err}"
    );
    let err =
        ArangoBackend::connect(&t.url, &t.user, &t.password, "no_such_db_shylock").unwrap_err();
    assert_eq!(
        err.backend_kind(),
        Some(BackendErrorKind::InvalidConfig),
        "{err}"
    );
    let err = ArangoBackend::connect_with(
        &t.url,
        &t.user,
        &t.password,
        &t.db,
        ArangoOptions::new().collection("no spaces allowed"),
    )
    .unwrap_err();
    assert_eq!(
        err.backend_kind(),
        Some(BackendErrorKind::InvalidConfig),
        "{err}"
    );
    let err = ArangoBackend::connect(&dead_url(), "root", "", "db").unwrap_err();
    assert_eq!(
        err.backend_kind(),
        Some(BackendErrorKind::Unavailable),
        "{err}"
    );
}

#[test]
fn hanging_server_times_out_by_the_deadline() {
    let t = emulated();
    let b = connect(&t);
    t.emu().set_hang(true);
    let name = LockName::new("sync-hang").unwrap();
    let owner = OwnerId::random();
    let started = Instant::now();
    let err = b
        .try_acquire(AcquireRequest {
            name: &name,
            owner: &owner,
            lease: Duration::from_secs(5),
            now: Timestamp::EPOCH,
            deadline: Some(Instant::now() + Duration::from_millis(300)),
        })
        .unwrap_err();
    assert_eq!(err.kind(), BackendErrorKind::Timeout, "{err}");
    assert!(
        started.elapsed() < Duration::from_millis(700),
        "{:?}",
        started.elapsed()
    );
}
