//! The metrics (feature `metrics`): a recording sink installed as the
//! global recorder sees every metric of `shylock_core::metrics::ALL`, from
//! both forms of lock on the memory backend, with the labels the table
//! documents (`name` only on locks that ask for it).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use metrics::{
    Counter, CounterFn, Gauge, GaugeFn, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder,
    SharedString, Unit,
};
use shylock_core::backend::{
    AcquireOutcome, AcquireRequest, AsyncBackend, BoxFuture, ClockSource, InspectRequest,
    LockRecord, ReleaseOutcome, ReleaseRequest, RenewOutcome, RenewRequest,
};
use shylock_core::{
    AsyncLock, Backend, BackendError, BackendErrorKind, Error, Lock, LockOptions, MemoryBackend,
    Renewal, Timestamp,
};

// ------------------------------------------------------------ the sink --

/// One series: the metric's name and its labels.
type Series = (String, BTreeSet<(String, String)>);

#[derive(Default)]
struct Values {
    counters: BTreeMap<Series, u64>,
    gauges: BTreeMap<Series, f64>,
    histograms: BTreeMap<Series, Vec<f64>>,
}

#[derive(Default, Clone)]
struct Sink(Arc<Mutex<Values>>);

struct Handle {
    sink: Sink,
    series: Series,
}

fn series(key: &Key) -> Series {
    let labels = key
        .labels()
        .map(|l| (l.key().to_owned(), l.value().to_owned()))
        .collect();
    (key.name().to_owned(), labels)
}

impl Sink {
    fn values(&self) -> std::sync::MutexGuard<'_, Values> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn handle(&self, key: &Key) -> Arc<Handle> {
        Arc::new(Handle {
            sink: self.clone(),
            series: series(key),
        })
    }
}

impl CounterFn for Handle {
    fn increment(&self, value: u64) {
        *self
            .sink
            .values()
            .counters
            .entry(self.series.clone())
            .or_default() += value;
    }
    fn absolute(&self, value: u64) {
        self.sink
            .values()
            .counters
            .insert(self.series.clone(), value);
    }
}

impl GaugeFn for Handle {
    fn increment(&self, value: f64) {
        *self
            .sink
            .values()
            .gauges
            .entry(self.series.clone())
            .or_default() += value;
    }
    fn decrement(&self, value: f64) {
        *self
            .sink
            .values()
            .gauges
            .entry(self.series.clone())
            .or_default() -= value;
    }
    fn set(&self, value: f64) {
        self.sink.values().gauges.insert(self.series.clone(), value);
    }
}

impl HistogramFn for Handle {
    fn record(&self, value: f64) {
        self.sink
            .values()
            .histograms
            .entry(self.series.clone())
            .or_default()
            .push(value);
    }
}

impl Recorder for Sink {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        Counter::from_arc(self.handle(key))
    }
    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::from_arc(self.handle(key))
    }
    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::from_arc(self.handle(key))
    }
}

impl Values {
    /// Every series of `metric`, with its labels as a map.
    fn of(&self, metric: &str) -> Vec<BTreeMap<String, String>> {
        let keys = self
            .counters
            .keys()
            .chain(self.gauges.keys())
            .chain(self.histograms.keys());
        keys.filter(|(name, _)| name == metric)
            .map(|(_, labels)| labels.iter().cloned().collect())
            .collect()
    }

    /// Whether `metric` has a series with all of `labels`.
    fn has(&self, metric: &str, labels: &[(&str, &str)]) -> bool {
        self.of(metric).iter().any(|series| {
            labels
                .iter()
                .all(|(k, v)| series.get(*k).map(String::as_str) == Some(*v))
        })
    }
}

// ------------------------------------------------------- the backend --

/// The memory backend with switches that make a primitive fail; its clock
/// is estimated, so the core reads `server_time` too.
#[derive(Clone, Default)]
struct Switched {
    inner: MemoryBackend,
    acquire_refused: Arc<AtomicBool>,
    renew_fails: Arc<AtomicBool>,
    renew_lost: Arc<AtomicBool>,
    release_refused: Arc<AtomicBool>,
}

fn refused() -> BackendError {
    BackendError::new(BackendErrorKind::Unauthorized, "test: refused")
}

impl AsyncBackend for Switched {
    fn try_acquire<'a>(
        &'a self,
        req: AcquireRequest<'a>,
    ) -> BoxFuture<'a, Result<AcquireOutcome, BackendError>> {
        if self.acquire_refused.load(Ordering::SeqCst) {
            return Box::pin(std::future::ready(Err(refused())));
        }
        AsyncBackend::try_acquire(&self.inner, req)
    }
    fn renew<'a>(
        &'a self,
        req: RenewRequest<'a>,
    ) -> BoxFuture<'a, Result<RenewOutcome, BackendError>> {
        if self.renew_fails.load(Ordering::SeqCst) {
            let down = BackendError::new(BackendErrorKind::Unavailable, "test: down");
            return Box::pin(std::future::ready(Err(down)));
        }
        if self.renew_lost.load(Ordering::SeqCst) {
            return Box::pin(std::future::ready(Ok(RenewOutcome::Lost)));
        }
        AsyncBackend::renew(&self.inner, req)
    }
    fn release<'a>(
        &'a self,
        req: ReleaseRequest<'a>,
    ) -> BoxFuture<'a, Result<ReleaseOutcome, BackendError>> {
        if self.release_refused.load(Ordering::SeqCst) {
            return Box::pin(std::future::ready(Err(refused())));
        }
        AsyncBackend::release(&self.inner, req)
    }
    fn inspect<'a>(
        &'a self,
        req: InspectRequest<'a>,
    ) -> BoxFuture<'a, Result<Option<LockRecord>, BackendError>> {
        AsyncBackend::inspect(&self.inner, req)
    }
    fn server_time(
        &self,
        deadline: Option<Instant>,
    ) -> BoxFuture<'_, Result<Timestamp, BackendError>> {
        AsyncBackend::server_time(&self.inner, deadline)
    }
    fn clock(&self) -> ClockSource {
        ClockSource::Estimated
    }
    fn describe(&self) -> String {
        AsyncBackend::describe(&self.inner)
    }
}

// ------------------------------------------------------ the scenarios --

/// Labelled options: every lock of the scenarios carries its name.
fn opts(lease_ms: u64) -> LockOptions {
    LockOptions::default()
        .lease(Duration::from_millis(lease_ms))
        .metrics_name_label(true)
}

fn renewing(lease_ms: u64) -> LockOptions {
    opts(lease_ms).renewal(Renewal::Every(Duration::from_millis(lease_ms / 6)))
}

/// Wait until `cond` holds, at most 20 s (a loaded machine).
fn eventually(what: &str, cond: impl Fn() -> bool) {
    let end = Instant::now() + Duration::from_secs(20);
    while !cond() {
        assert!(Instant::now() < end, "never: {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn blocking_scenarios(sink: &Sink, sw: &Switched, handle: &Backend) {
    let lock = |name: &str, o: LockOptions| Lock::with_backend(name, handle).options(o);
    // Granted, renewed, held (gauge), released.
    let guard = lock("sync-held", renewing(600)).acquire().expect("acquire");
    eventually("a renewal (sync)", || guard.renewals() >= 1);
    let held = [("name", "sync-held")];
    assert_eq!(
        sink.values()
            .gauges
            .iter()
            .find(|((n, l), _)| n == shylock_core::metrics::LOCKS_HELD
                && l.contains(&("name".into(), "sync-held".into())))
            .map(|(_, v)| *v),
        Some(1.0),
        "the gauge counts the held lock"
    );
    // Busy and timeout while held.
    assert!(
        lock("sync-held", opts(600))
            .try_acquire()
            .expect("try")
            .is_none()
    );
    let timed_out = lock("sync-held", opts(600)).acquire_timeout(Duration::from_millis(30));
    assert!(
        matches!(timed_out, Err(Error::Timeout { .. })),
        "{timed_out:?}"
    );
    let _ = lock("sync-held", opts(600)).inspect().expect("inspect");
    guard.release().expect("release");
    assert!(sink.values().has(shylock_core::metrics::HOLD_TIME, &held));

    // A refused acquisition.
    sw.acquire_refused.store(true, Ordering::SeqCst);
    let refused = lock("sync-refused", opts(600)).acquire();
    sw.acquire_refused.store(false, Ordering::SeqCst);
    assert!(matches!(refused, Err(Error::Backend { .. })), "{refused:?}");

    // Renewals failing until the lease runs out; the release says lost.
    let guard = lock("sync-renewal-failed", renewing(300))
        .acquire()
        .expect("acquire");
    sw.renew_fails.store(true, Ordering::SeqCst);
    eventually("renewal failure loss (sync)", || !guard.is_held());
    sw.renew_fails.store(false, Ordering::SeqCst);
    assert!(matches!(guard.release(), Err(Error::LeaseLost { .. })));

    // A renewal that finds the lock taken.
    let guard = lock("sync-taken", renewing(600))
        .acquire()
        .expect("acquire");
    sw.renew_lost.store(true, Ordering::SeqCst);
    eventually("taken (sync)", || !guard.is_held());
    sw.renew_lost.store(false, Ordering::SeqCst);
    drop(guard);

    // Expired without renewal: the loss is counted at the release.
    let guard = lock("sync-expired", opts(100).renewal(Renewal::Off))
        .acquire()
        .expect("acquire");
    std::thread::sleep(Duration::from_millis(150));
    assert!(matches!(guard.release(), Err(Error::LeaseLost { .. })));

    // A release refused by the backend.
    let guard = lock("sync-release-refused", opts(600))
        .acquire()
        .expect("acquire");
    sw.release_refused.store(true, Ordering::SeqCst);
    let released = guard.release();
    sw.release_refused.store(false, Ordering::SeqCst);
    assert!(
        matches!(released, Err(Error::Backend { .. })),
        "{released:?}"
    );

    // A lock that does not ask for its name as a label.
    let plain = Lock::with_backend("sync-plain", handle)
        .acquire()
        .expect("acquire");
    plain.release().expect("release");
}

async fn async_scenarios(sink: &Sink, sw: &Switched, handle: &Backend) {
    let lock = |name: &str, o: LockOptions| AsyncLock::with_backend(name, handle).options(o);
    let guard = lock("async-held", renewing(600))
        .acquire()
        .await
        .expect("acquire");
    let end = Instant::now() + Duration::from_secs(20);
    while guard.renewals() == 0 {
        assert!(Instant::now() < end, "no renewal (async)");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        lock("async-held", opts(600))
            .try_acquire()
            .await
            .expect("try")
            .is_none()
    );
    let timed_out = lock("async-held", opts(600))
        .acquire_timeout(Duration::from_millis(30))
        .await;
    assert!(
        matches!(timed_out, Err(Error::Timeout { .. })),
        "{timed_out:?}"
    );
    // An acquisition whose future is dropped while it waits.
    let waiting = lock("async-held", opts(600));
    let cancelled = tokio::time::timeout(Duration::from_millis(30), waiting.acquire()).await;
    assert!(cancelled.is_err(), "the wait was cut off");
    let _ = lock("async-held", opts(600))
        .inspect()
        .await
        .expect("inspect");
    guard.release().await.expect("release");
    assert!(
        sink.values()
            .has(shylock_core::metrics::HOLD_TIME, &[("name", "async-held")])
    );

    sw.acquire_refused.store(true, Ordering::SeqCst);
    let refused = lock("async-refused", opts(600)).acquire().await;
    sw.acquire_refused.store(false, Ordering::SeqCst);
    assert!(matches!(refused, Err(Error::Backend { .. })), "{refused:?}");

    let guard = lock("async-renewal-failed", renewing(300))
        .acquire()
        .await
        .expect("acquire");
    sw.renew_fails.store(true, Ordering::SeqCst);
    let reason = guard.lost().await;
    sw.renew_fails.store(false, Ordering::SeqCst);
    assert_eq!(reason, shylock_core::LossReason::RenewalFailed);
    assert!(matches!(
        guard.release().await,
        Err(Error::LeaseLost { .. })
    ));

    let guard = lock("async-taken", renewing(600))
        .acquire()
        .await
        .expect("acquire");
    sw.renew_lost.store(true, Ordering::SeqCst);
    let reason = guard.lost().await;
    sw.renew_lost.store(false, Ordering::SeqCst);
    assert_eq!(reason, shylock_core::LossReason::Taken);
    drop(guard);

    let guard = lock("async-expired", opts(100).renewal(Renewal::Off))
        .acquire()
        .await
        .expect("acquire");
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert!(matches!(
        guard.release().await,
        Err(Error::LeaseLost { .. })
    ));

    let guard = lock("async-release-refused", opts(600))
        .acquire()
        .await
        .expect("acquire");
    sw.release_refused.store(true, Ordering::SeqCst);
    let released = guard.release().await;
    sw.release_refused.store(false, Ordering::SeqCst);
    assert!(
        matches!(released, Err(Error::Backend { .. })),
        "{released:?}"
    );
}

#[test]
fn every_metric_of_the_table_is_recorded_with_its_labels() {
    let sink = Sink::default();
    metrics::set_global_recorder(sink.clone()).expect("the only recorder of this binary");
    let sw = Switched::default();
    let handle = Backend::from_async(sw.clone());

    blocking_scenarios(&sink, &sw, &handle);
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(async_scenarios(&sink, &sw, &handle));
    assert!(settle(&handle), "the background releases finished");

    let values = sink.values();
    use shylock_core::metrics::*;
    // Every metric of the table, from both forms, labelled by backend (and
    // by name where asked, the backend calls never).
    for metric in ALL {
        assert!(
            values.has(metric, &[("backend", "memory")]),
            "{metric} was never recorded; recorded: {:?}",
            values
                .counters
                .keys()
                .chain(values.gauges.keys())
                .chain(values.histograms.keys())
                .map(|(name, _)| name)
                .collect::<BTreeSet<_>>()
        );
        let per_lock = !matches!(metric, BACKEND_CALLS | BACKEND_CALL_TIME);
        for form in ["sync", "async"] {
            let of_form = values.of(metric).iter().any(|s| {
                s.get("name")
                    .is_some_and(|n| n.starts_with(&format!("{form}-")))
            });
            assert_eq!(
                of_form, per_lock,
                "{metric} labelled with a {form} lock's name"
            );
        }
    }
    // The lock without the option has no name label.
    assert!(!values.has(ACQUISITIONS, &[("name", "sync-plain")]));
    assert!(
        values
            .of(ACQUISITIONS)
            .iter()
            .any(|s| !s.contains_key("name"))
    );

    for form in ["sync", "async"] {
        let name = |n: &str| format!("{form}-{n}");
        let held = name("held");
        for outcome in ["granted", "busy", "timeout"] {
            assert!(
                values.has(ACQUISITIONS, &[("name", &held), ("outcome", outcome)]),
                "{form}: acquisition {outcome}"
            );
            assert!(
                values.has(ACQUIRE_WAIT, &[("name", &held), ("outcome", outcome)]),
                "{form}: wait {outcome}"
            );
        }
        assert!(values.has(
            ACQUISITIONS,
            &[
                ("name", &name("refused")),
                ("outcome", "error"),
                ("error", "unauthorized")
            ]
        ));
        assert!(values.has(RENEWALS, &[("name", &held)]), "{form}: renewals");
        assert!(values.has(
            RENEWAL_FAILURES,
            &[("name", &name("renewal-failed")), ("error", "unavailable")]
        ));
        for (lock, reason) in [
            ("renewal-failed", "renewal_failed"),
            ("taken", "taken"),
            ("expired", "expired"),
        ] {
            assert!(
                values.has(LOSSES, &[("name", &name(lock)), ("reason", reason)]),
                "{form}: loss {reason}"
            );
        }
        assert!(values.has(RELEASES, &[("name", &held), ("outcome", "released")]));
        assert!(values.has(RELEASES, &[("name", &name("expired")), ("outcome", "lost")]));
        assert!(values.has(
            RELEASES,
            &[
                ("name", &name("release-refused")),
                ("outcome", "error"),
                ("error", "unauthorized")
            ]
        ));
        assert!(values.has(HOLD_TIME, &[("name", &held)]));
        assert!(values.has(LOCKS_HELD, &[("name", &held)]));
    }
    assert!(values.has(
        ACQUISITIONS,
        &[("name", "async-held"), ("outcome", "cancelled")]
    ));
    // Each loss counted once.
    let losses: u64 = values
        .counters
        .iter()
        .filter(|((n, _), _)| n == LOSSES)
        .map(|(_, v)| *v)
        .sum();
    assert_eq!(losses, 6, "three losses per form, each counted once");
    // Every guard ended: the gauge is back to zero in every series.
    for ((metric, labels), value) in &values.gauges {
        assert_eq!(*value, 0.0, "{metric} {labels:?}");
    }
    for primitive in ["try_acquire", "renew", "release", "inspect", "server_time"] {
        assert!(
            values.has(
                BACKEND_CALLS,
                &[("primitive", primitive), ("outcome", "ok")]
            ),
            "{primitive} ok"
        );
        assert!(values.has(BACKEND_CALL_TIME, &[("primitive", primitive)]));
    }
    for (primitive, error) in [
        ("try_acquire", "unauthorized"),
        ("renew", "unavailable"),
        ("release", "unauthorized"),
    ] {
        assert!(
            values.has(
                BACKEND_CALLS,
                &[
                    ("primitive", primitive),
                    ("outcome", "error"),
                    ("error", error)
                ]
            ),
            "{primitive} {error}"
        );
    }
}

/// `Backend::settle` waited for on this thread.
fn settle(handle: &Backend) -> bool {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(handle.settle(Duration::from_secs(10)))
}
