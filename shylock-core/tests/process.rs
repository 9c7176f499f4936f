//! Regression tests that look at the whole process (its threads, its
//! `tracing` events), for items 5, 10 and 11 of the core's hardening issue.
//! Their own test binary: they install a global `tracing` subscriber and
//! count the process's threads, so they run one at a time.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use shylock_core::backend::{
    AcquireOutcome, AcquireRequest, ClockSource, InspectRequest, LockRecord, ReleaseOutcome,
    ReleaseRequest, RenewOutcome, RenewRequest, SyncBackend,
};
use shylock_core::{
    AsyncLock, Backend, BackendError, BackendErrorKind, Lock, LockOptions, MemoryBackend, Renewal,
    Timestamp,
};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata, Subscriber};

/// One test at a time.
static SERIAL: Mutex<()> = Mutex::new(());

/// A warning as the subscriber saw it: its `lock` field and its message.
type Warning = (String, String);

/// A pause of the thread that emits a given warning, until the test says go.
struct Pause {
    message: &'static str,
    lock: String,
    reached: SyncSender<()>,
    go: Mutex<Receiver<()>>,
}

#[derive(Default)]
struct Recorder {
    warnings: Mutex<Vec<Warning>>,
    pause: Mutex<Option<Arc<Pause>>>,
}

#[derive(Default)]
struct Fields {
    lock: String,
    message: String,
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        match field.name() {
            "lock" => self.lock = format!("{value:?}"),
            "message" => self.message = format!("{value:?}"),
            _ => {}
        }
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.record_debug(field, &value);
    }
}

impl Subscriber for &'static Recorder {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        *metadata.level() <= Level::WARN
    }
    fn new_span(&self, _: &Attributes<'_>) -> Id {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        Id::from_u64(NEXT.fetch_add(1, Ordering::Relaxed))
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let pause = self.pause.lock().expect("pause").clone();
        if let Some(pause) = pause
            && fields.message.contains(pause.message)
            && fields.lock.contains(&pause.lock)
        {
            let _ = pause.reached.send(());
            let _ = pause
                .go
                .lock()
                .expect("go")
                .recv_timeout(Duration::from_secs(10));
        }
        self.warnings
            .lock()
            .expect("warnings")
            .push((fields.lock, fields.message));
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

fn recorder() -> &'static Recorder {
    static RECORDER: OnceLock<&'static Recorder> = OnceLock::new();
    RECORDER.get_or_init(|| {
        let recorder: &'static Recorder = Box::leak(Box::default());
        tracing::subscriber::set_global_default(recorder).expect("the only global subscriber");
        recorder
    })
}

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

/// Item 10: an async guard dropped while its runtime shuts down says that
/// its release was abandoned (instead of nothing at all).
#[test]
fn item10_a_release_abandoned_at_runtime_shutdown_is_reported() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let rec = recorder();
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
    let warnings = rec.warnings.lock().expect("warnings").clone();
    assert!(
        warnings
            .iter()
            .any(|(lock, message)| lock.contains("shutdown") && message.contains("abandoned")),
        "no warning about the abandoned release: {warnings:?}"
    );
}

/// A sync backend whose renewals fail with a long retry delay.
struct FailingRenewals(MemoryBackend);

impl SyncBackend for FailingRenewals {
    fn try_acquire(&self, req: AcquireRequest<'_>) -> Result<AcquireOutcome, BackendError> {
        self.0.try_acquire(req)
    }
    fn renew(&self, _: RenewRequest<'_>) -> Result<RenewOutcome, BackendError> {
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

/// Item 11: a release that comes while a failed renewal is being handled
/// ends the renewal at once, not after the renewal's retry delay.
#[test]
fn item11_a_stop_during_a_failed_renewal_ends_the_renewal_at_once() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let rec = recorder();
    let backend = Arc::new(FailingRenewals(MemoryBackend::new()));
    let handle = Backend::from_sync_arc(backend.clone());
    let baseline = Arc::strong_count(&backend);
    let (reached_tx, reached_rx) = sync_channel(1);
    let (go_tx, go_rx) = sync_channel(1);
    *rec.pause.lock().expect("pause") = Some(Arc::new(Pause {
        message: "renewal failed",
        lock: "stop-race".into(),
        reached: reached_tx,
        go: Mutex::new(go_rx),
    }));
    let guard = Lock::with_backend("stop-race", &handle)
        .options(
            LockOptions::default()
                .lease(Duration::from_secs(30))
                .renewal(Renewal::Every(Duration::from_millis(100))),
        )
        .acquire()
        .expect("acquire");
    reached_rx
        .recv_timeout(Duration::from_secs(5))
        .expect("a renewal failed");
    // The renewal is between its failure and its wait: release now.
    let released = guard.release();
    *rec.pause.lock().expect("pause") = None;
    go_tx.send(()).expect("go");
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
