//! The metrics (feature `metrics`, issue 20 part 1) on the real backends:
//! DocumentDB through the MongoDB driver and the ArangoDB emulator through
//! the ArangoDB client, each in both forms. `shylock-core/tests/metrics.rs`
//! checks every metric and label value on the memory backend (failures
//! switched on at will); this checks that the same events are recorded,
//! labelled with the right backend, when a real backend answers: grants,
//! a busy try, waits, held locks back to zero, hold times, renewals, a
//! forced loss, releases and the backend calls with their latency.
//!
//! One test: the recorder is global to the process.

use std::collections::BTreeSet;
use std::time::Duration;

use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use shylock::metrics::{
    ACQUIRE_WAIT, ACQUISITIONS, BACKEND_CALL_TIME, BACKEND_CALLS, HOLD_TIME, LOCKS_HELD, LOSSES,
    RELEASES, RENEWALS,
};
use shylock::{AsyncLock, Backend, Lock, LockOptions, LossReason, Renewal};
use shylock_arango_emulator::Emulator;

/// One recorded series: metric name, labels, value.
struct Sample {
    name: String,
    labels: BTreeSet<(String, String)>,
    value: DebugValue,
}

fn snapshot(snapshotter: &Snapshotter) -> Vec<Sample> {
    snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, _, _, value)| {
            let key = key.key();
            Sample {
                name: key.name().to_owned(),
                labels: key
                    .labels()
                    .map(|l| (l.key().to_owned(), l.value().to_owned()))
                    .collect(),
                value,
            }
        })
        .collect()
}

/// The series of `metric` for `backend` whose labels include `with`.
fn find<'a>(
    samples: &'a [Sample],
    metric: &str,
    backend: &str,
    with: &[(&str, &str)],
) -> Vec<&'a Sample> {
    samples
        .iter()
        .filter(|s| s.name == metric)
        .filter(|s| {
            s.labels
                .contains(&("backend".to_owned(), backend.to_owned()))
        })
        .filter(|s| {
            with.iter()
                .all(|(k, v)| s.labels.contains(&((*k).to_owned(), (*v).to_owned())))
        })
        .collect()
}

/// Counters of the series summed; histograms' sample counts summed.
fn total(samples: &[&Sample]) -> u64 {
    samples
        .iter()
        .map(|s| match &s.value {
            DebugValue::Counter(n) => *n,
            DebugValue::Histogram(values) => values.len() as u64,
            DebugValue::Gauge(_) => 0,
        })
        .sum()
}

fn options() -> LockOptions {
    LockOptions::default()
        .lease(Duration::from_secs(6))
        .renewal(Renewal::Every(Duration::from_millis(300)))
}

/// Both forms on one backend: for each, a grant, a busy try, renewals
/// while held, a release, then a second holding forced free (a loss).
fn exercise(url: &str) {
    let blocking = shylock::connect_blocking(url).expect("connect (blocking)");
    let lock = Lock::with_backend("metrics-blocking", &blocking).options(options());
    let guard = lock.acquire().expect("acquire");
    assert!(lock.try_acquire().expect("busy try").is_none());
    std::thread::sleep(Duration::from_millis(1_000));
    guard.release().expect("release");
    let guard = lock.acquire().expect("acquire again");
    blocking
        .force_release_blocking("metrics-blocking", "the test", "a forced loss")
        .expect("force");
    // The next renewal (within 300 ms) finds the holding forced free.
    let until = std::time::Instant::now() + Duration::from_secs(30);
    while guard.lost_reason().is_none() && std::time::Instant::now() < until {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(guard.lost_reason(), Some(LossReason::Forced));
    drop(guard);

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let backend: Backend = shylock::connect(url).await.expect("connect (async)");
        let lock = AsyncLock::with_backend("metrics-async", &backend).options(options());
        let guard = lock.acquire().await.expect("acquire");
        assert!(lock.try_acquire().await.expect("busy try").is_none());
        tokio::time::sleep(Duration::from_millis(1_000)).await;
        guard.release().await.expect("release");
        let guard = lock.acquire().await.expect("acquire again");
        backend
            .force_release("metrics-async", "the test", "a forced loss")
            .await
            .expect("force");
        let lost = tokio::time::timeout(Duration::from_secs(30), guard.lost())
            .await
            .expect("lost in time");
        assert_eq!(lost, LossReason::Forced);
        drop(guard);
        backend.settle(Duration::from_secs(5)).await;
    });
}

/// `primitives`: the backend calls both forms make (`server_time` only
/// where the core estimates the server's clock).
fn check(samples: &[Sample], backend: &str, primitives: &[&str]) {
    let at_least = |metric: &str, with: &[(&str, &str)], n: u64| {
        let got = total(&find(samples, metric, backend, with));
        assert!(
            got >= n,
            "{backend}: {metric} {with:?}: {got} recorded, at least {n} expected"
        );
    };
    // Two forms × two grants, and one busy try each.
    at_least(ACQUISITIONS, &[("outcome", "granted")], 4);
    at_least(ACQUISITIONS, &[("outcome", "busy")], 2);
    at_least(ACQUIRE_WAIT, &[], 4);
    // A second of holding renewed every 300 ms, in each form.
    at_least(RENEWALS, &[], 4);
    at_least(HOLD_TIME, &[], 2);
    at_least(RELEASES, &[("outcome", "released")], 2);
    at_least(LOSSES, &[("reason", "forced")], 2);
    for primitive in primitives {
        at_least(
            BACKEND_CALLS,
            &[("primitive", primitive), ("outcome", "ok")],
            1,
        );
        at_least(BACKEND_CALL_TIME, &[("primitive", primitive)], 1);
    }
    // Every guard ended: the held-locks gauge is back to zero.
    let held = find(samples, LOCKS_HELD, backend, &[]);
    assert!(!held.is_empty(), "{backend}: {LOCKS_HELD} never recorded");
    for s in held {
        assert_eq!(
            s.value,
            DebugValue::Gauge(0.0.into()),
            "{backend}: {LOCKS_HELD}"
        );
    }
    // No series names a lock: none of these locks asked for it.
    assert!(
        samples
            .iter()
            .all(|s| !s.labels.iter().any(|(k, _)| k == "name")),
        "a name label without the opt-in"
    );
}

#[test]
fn the_metrics_are_recorded_on_documentdb_and_arangodb_in_both_forms() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder
        .install()
        .expect("the only recorder of this test binary");

    let server = shylock_testkit::documentdb::DocumentDb::start();
    let mongo = format!(
        "{}{}shylock.database=metrics_test&shylock.collection=locks",
        server.uri(),
        if server.uri().contains('?') { '&' } else { '?' }
    );
    exercise(&mongo);
    check(
        &snapshot(&snapshotter),
        "mongodb",
        &["try_acquire", "renew", "release", "server_time"],
    );

    let emu = Emulator::start("locker", "metrics-pw", &["locks"]);
    let arango = format!(
        "{}/?shylock.database=locks&shylock.collection=metrics",
        emu.url().replace("http://", "http://locker:metrics-pw@")
    );
    exercise(&arango);
    check(
        &snapshot(&snapshotter),
        "arangodb",
        &["try_acquire", "renew", "release"],
    );
}
