//! Regression tests that look at the whole process (its threads, its
//! runtimes), for items 5, 10 and 11 of the core's hardening issue. Their
//! own test binary: they count the process's threads, so they run one at a
//! time.

use std::sync::mpsc::sync_channel;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use shylock_core::backend::{
    AcquireOutcome, AcquireRequest, ClockSource, InspectRequest, LockRecord, ReleaseOutcome,
    ReleaseRequest, RenewOutcome, RenewRequest, SyncBackend,
};
use shylock_core::{
    AsyncLock, Backend, BackendError, BackendErrorKind, Lock, LockOptions, MemoryBackend, Renewal,
    Timestamp,
};

/// One test at a time.
static SERIAL: Mutex<()> = Mutex::new(());

/// The threads of this process now.
fn threads() -> usize {
    std::fs::read_to_string("/proc/self/status")
        .expect("/proc/self/status")
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|n| n.trim().parse().ok())
        .expect("a Threads: line")
}

/// Item 5: blocking guards with renewal on do not take a thread each.
#[test]
fn item05_blocking_guards_share_their_renewal_threads() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let backend = Backend::from(MemoryBackend::new());
    let before = threads();
    let guards: Vec<_> = (0..2000)
        .map(|i| {
            Lock::with_backend(format!("many-{i}"), &backend)
                .acquire()
                .expect("acquire")
        })
        .collect();
    let during = threads();
    assert!(guards.iter().all(|g| g.is_held()));
    drop(guards);
    assert!(
        during <= before + 4,
        "2000 renewed blocking guards took {} threads",
        during - before
    );
}

/// Item 10 (first review): an async guard dropped while its runtime shut
/// down had its release abandoned (with a warning). Since issue 18 the
/// release runs on shylock's own runtime, which outlives the caller's: the
/// lock is released.
#[test]
fn item10_a_guard_dropped_at_runtime_shutdown_is_released() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let backend = Backend::from(MemoryBackend::new());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let (held_tx, held_rx) = sync_channel(1);
    let b = backend.clone();
    rt.spawn(async move {
        let _guard = AsyncLock::with_backend("shutdown", &b)
            .acquire()
            .await
            .expect("acquire");
        let _ = held_tx.send(());
        std::future::pending::<()>().await;
    });
    held_rx
        .recv_timeout(Duration::from_secs(5))
        .expect("the guard is held");
    drop(rt);
    let free = Lock::with_backend("shutdown", &backend)
        .acquire_timeout(Duration::from_secs(5))
        .expect("the dropped guard was released");
    drop(free);
}

/// A sync backend whose renewals fail with a long retry delay.
struct FailingRenewals(MemoryBackend, std::sync::atomic::AtomicUsize);

impl SyncBackend for FailingRenewals {
    fn try_acquire(&self, req: AcquireRequest<'_>) -> Result<AcquireOutcome, BackendError> {
        self.0.try_acquire(req)
    }
    fn renew(&self, _: RenewRequest<'_>) -> Result<RenewOutcome, BackendError> {
        self.1.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Err(
            BackendError::new(BackendErrorKind::Unavailable, "test: renewals fail")
                .with_retry_after(Duration::from_secs(10)),
        )
    }
    fn release(&self, req: ReleaseRequest<'_>) -> Result<ReleaseOutcome, BackendError> {
        self.0.release(req)
    }
    fn inspect(&self, req: InspectRequest<'_>) -> Result<Option<LockRecord>, BackendError> {
        self.0.inspect(req)
    }
    fn server_time(&self, deadline: Option<Instant>) -> Result<Timestamp, BackendError> {
        self.0.server_time(deadline)
    }
    fn clock(&self) -> ClockSource {
        ClockSource::Server
    }
    fn describe(&self) -> String {
        "failing renewals".into()
    }
}

/// Item 11: a release that comes while a failed renewal waits for its
/// retry ends the renewal at once, not after the renewal's retry delay.
#[test]
fn item11_a_stop_during_a_failed_renewal_ends_the_renewal_at_once() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let backend = Arc::new(FailingRenewals(MemoryBackend::new(), Default::default()));
    let handle = Backend::from_sync_arc(backend.clone());
    let baseline = Arc::strong_count(&backend);
    let guard = Lock::with_backend("stop-race", &handle)
        .options(
            LockOptions::default()
                .lease(Duration::from_secs(30))
                .renewal(Renewal::Every(Duration::from_millis(100))),
        )
        .acquire()
        .expect("acquire");
    let until = Instant::now() + Duration::from_secs(5);
    while backend.1.load(std::sync::atomic::Ordering::SeqCst) == 0 && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(
        backend.1.load(std::sync::atomic::Ordering::SeqCst) > 0,
        "a renewal failed"
    );
    // The renewal now waits 10 s for its retry: release now.
    let released = guard.release();
    assert!(released.is_ok(), "{released:?}");
    let until = Instant::now() + Duration::from_secs(2);
    while Arc::strong_count(&backend) > baseline && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(
        Arc::strong_count(&backend),
        baseline,
        "the renewal still holds the backend 2 s after the release"
    );
}
