//! Regression tests for the defects reproduced in the core's hardening
//! issue, one test per numbered item (and the others it names), each on
//! the in-memory backend or a thin wrapper around it, through the public
//! API only. Each of these failed before the fix it covers.

mod support;

use std::time::{Duration, Instant};

use shylock_core::{AsyncLock, Backend, Backoff, Lock, LockOptions, MemoryBackend, Renewal};
use support::{Faults, async_handle, sync_handle, wrap};

/// "Another process": a separate handle on the same memory backend.
fn other(mem: &MemoryBackend) -> Backend {
    Backend::from(mem.clone())
}

const SLACK: Duration = Duration::from_secs(3);

/// Item 1: with a zero safety margin (and a 50 ms lease, no renewal), the
/// old holder must count its lease as ended before a second handle is
/// granted the lock, in every round.
#[test]
fn item01_a_zero_margin_never_gives_two_holders() {
    let mem = MemoryBackend::new();
    let (a, b) = (other(&mem), other(&mem));
    let opts = LockOptions::default()
        .lease(Duration::from_millis(50))
        .renewal(Renewal::Off)
        .safety_margin(Duration::ZERO)
        .backoff(Backoff::fixed(Duration::from_micros(200)));
    let mut overlaps = 0;
    for round in 0..100 {
        let name = format!("margin-{round}");
        let first = Lock::with_backend(&name, &a)
            .options(opts.clone())
            .acquire()
            .expect("A");
        let second = Lock::with_backend(&name, &b)
            .options(opts.clone())
            .acquire_timeout(SLACK)
            .expect("B after A's lease");
        if first.is_held() {
            overlaps += 1;
        }
        drop(second);
        drop(first);
    }
    assert_eq!(
        overlaps, 0,
        "A still counted itself holder after B was granted"
    );
}

/// Item 2: a waiter whose `acquire()` future is kept but no longer polled
/// must not hold the other waiters of the name back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item02_an_unpolled_waiter_does_not_starve_the_others() {
    let mem = MemoryBackend::new();
    let h = other(&mem);
    let holder = AsyncLock::with_backend("starve", &other(&mem))
        .acquire()
        .await
        .expect("holder");
    // The first waiter: polled for a while (it becomes the poller), then kept
    // but never polled again.
    // (If its request was on its way when it stopped being polled, it may
    // still be granted: then the others wait for its short lease to end,
    // never for it to be polled.)
    let stuck_lock = AsyncLock::with_backend("starve", &h)
        .lease(Duration::from_millis(400))
        .renewal(Renewal::Off);
    let mut stuck = Box::pin(stuck_lock.acquire());
    assert!(
        tokio::time::timeout(Duration::from_millis(100), &mut stuck)
            .await
            .is_err()
    );
    holder.release().await.expect("release");
    let started = Instant::now();
    let waiter = AsyncLock::with_backend("starve", &h)
        .acquire_timeout(SLACK)
        .await;
    assert!(
        waiter.is_ok(),
        "async waiter: {waiter:?} after {:?}",
        started.elapsed()
    );
    waiter.expect("checked").release().await.expect("release");
    let h2 = h.clone();
    let sync = tokio::task::spawn_blocking(move || {
        Lock::with_backend("starve", &h2)
            .acquire_timeout(SLACK)
            .map(|g| g.token())
    })
    .await
    .expect("join");
    assert!(sync.is_ok(), "sync waiter: {sync:?}");
    drop(stuck);
}

/// Item 3: a blocking acquire inside a current-thread runtime, where an
/// async waiter of the same name cannot run, returns once the lock is free.
#[test]
fn item03_a_sync_acquire_inside_a_runtime_returns() {
    let mem = MemoryBackend::new();
    let h = other(&mem);
    let holder = Lock::with_backend("in-runtime", &other(&mem))
        .acquire()
        .expect("holder");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let result = rt.block_on(async {
        let h2 = h.clone();
        let waiter = tokio::spawn(async move {
            AsyncLock::with_backend("in-runtime", &h2)
                .acquire_timeout(Duration::from_secs(20))
                .await
                .map(|g| g.token())
        });
        tokio::time::sleep(Duration::from_millis(100)).await; // the waiter polls
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(200));
            drop(holder);
        });
        let started = Instant::now();
        let r = Lock::with_backend("in-runtime", &h)
            .acquire_timeout(Duration::from_secs(5))
            .map(|g| g.token());
        let took = started.elapsed();
        drop(waiter);
        (r, took)
    });
    assert!(result.0.is_ok() && result.1 < SLACK, "{result:?}");
}

/// Item 4: a `release()` future dropped before it finishes releases all the
/// same (as a dropped guard does).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item04_a_dropped_release_still_releases() {
    let mem = MemoryBackend::new();
    let slow = wrap(
        &mem,
        Faults {
            release_delay: Duration::from_millis(300),
            ..Faults::default()
        },
    );
    let guard = AsyncLock::with_backend("cancel-release", &async_handle(&slow))
        .acquire()
        .await
        .expect("acquire");
    let dropped = tokio::time::timeout(Duration::from_millis(50), guard.release()).await;
    assert!(dropped.is_err(), "the release was still on its way");
    let next = AsyncLock::with_backend("cancel-release", &other(&mem))
        .acquire_timeout(SLACK)
        .await;
    assert!(next.is_ok(), "the lock stayed held: {next:?}");
}

/// Item 6: a rate-limited retry must not cancel the clean-up of an earlier
/// request whose answer was lost (it was applied).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item06_rate_limited_retries_keep_the_clean_up() {
    let mem = MemoryBackend::new();
    for (form, handle) in [("async", true), ("sync", false)] {
        let name = format!("rate-limited-{form}");
        let w = wrap(
            &mem,
            Faults {
                lose_first_answer_then_rate_limit: true,
                ..Faults::default()
            },
        );
        let r = if handle {
            AsyncLock::with_backend(&name, &async_handle(&w))
                .acquire_timeout(Duration::from_millis(300))
                .await
                .map(drop)
        } else {
            let (h, n) = (sync_handle(&w), name.clone());
            tokio::task::spawn_blocking(move || {
                Lock::with_backend(n, &h)
                    .acquire_timeout(Duration::from_millis(300))
                    .map(drop)
            })
            .await
            .expect("join")
        };
        assert!(r.is_err(), "{form}: the acquisition gave up: {r:?}");
        let next = AsyncLock::with_backend(&name, &other(&mem))
            .acquire_timeout(SLACK)
            .await;
        assert!(
            next.is_ok(),
            "{form}: the lost grant was left held: {next:?}"
        );
    }
}

/// Item 7: an acquisition dropped while its request is on its way: the
/// clean-up comes after the request, so nothing is left held.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item07_a_dropped_acquire_is_cleaned_up_after_its_request_lands() {
    let mem = MemoryBackend::new();
    let w = wrap(
        &mem,
        Faults {
            acquire_delay: Duration::from_millis(300),
            ..Faults::default()
        },
    );
    let dropped = tokio::time::timeout(
        Duration::from_millis(100),
        AsyncLock::with_backend("in-flight", &async_handle(&w)).acquire(),
    )
    .await;
    assert!(dropped.is_err(), "dropped while on its way");
    // Look after the request has reached the backend.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let next = AsyncLock::with_backend("in-flight", &other(&mem))
        .acquire_timeout(SLACK)
        .await;
    assert!(next.is_ok(), "the late grant was left held: {next:?}");
}

/// Item 8: values that validate never make the library panic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item08_huge_values_that_validate_do_not_panic() {
    let mem = MemoryBackend::new();
    let h = other(&mem);
    let huge = LockOptions::default()
        .timeout(Duration::MAX)
        .release_timeout(Duration::MAX);
    assert!(huge.validate().is_ok());
    let lock = AsyncLock::with_backend("huge", &h).options(huge.clone());
    assert!(lock.inspect().await.expect("inspect").is_none());
    lock.acquire()
        .await
        .expect("acquire")
        .release()
        .await
        .expect("release");
    drop(lock.acquire().await.expect("acquire"));
    let h2 = h.clone();
    tokio::task::spawn_blocking(move || {
        let lock = Lock::with_backend("huge-sync", &h2).options(huge);
        assert!(lock.inspect().expect("inspect").is_none());
        lock.acquire().expect("acquire").release().expect("release");
        drop(lock.acquire().expect("acquire"));
    })
    .await
    .expect("no panic in the sync form");
    let fast = LockOptions::default().backoff(Backoff {
        initial: Duration::from_millis(1),
        max: Duration::from_millis(20),
        factor: 1e300,
    });
    let holder = AsyncLock::with_backend("factor", &h)
        .acquire()
        .await
        .expect("holder");
    let r = AsyncLock::with_backend("factor", &other(&mem))
        .options(fast)
        .acquire_timeout(Duration::from_millis(100))
        .await;
    assert!(r.is_err(), "held: times out, without a panic");
    holder.release().await.expect("release");
}

/// Item 9 (first review): a runtime without timers was refused at
/// acquire. Since issue 18 every wait is timed by shylock's own runtime, so
/// an async lock works there: waiting, time limits and renewal included.
#[test]
fn item09_a_runtime_without_timers_runs_async_locks() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let h = Backend::from(MemoryBackend::new());
    rt.block_on(async {
        let lock = AsyncLock::with_backend("no-timers", &h).options(
            LockOptions::default()
                .lease(Duration::from_millis(300))
                .renewal(Renewal::Every(Duration::from_millis(100))),
        );
        let guard = lock.acquire().await.expect("acquire");
        let waited = lock.acquire_timeout(Duration::from_millis(500)).await;
        assert!(waited.is_err(), "the time limit is kept: {waited:?}");
        assert!(guard.is_held() && guard.renewals() >= 2, "renewed");
        guard.release().await.expect("release");
    });
}

/// The guard `acquire` returns is held: a grant whose answer came after its
/// lease is asked for again instead of being returned dead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grant_answered_after_its_lease_is_not_returned() {
    let mem = MemoryBackend::new();
    let w = wrap(
        &mem,
        Faults {
            first_answer_delay: Duration::from_millis(400),
            ..Faults::default()
        },
    );
    let opts = LockOptions::default()
        .lease(Duration::from_millis(200))
        .renewal(Renewal::Off);
    let g = AsyncLock::with_backend("late", &async_handle(&w))
        .options(opts.clone())
        .acquire()
        .await
        .expect("acquire");
    assert!(g.is_held(), "acquire returned a lost guard");
    let w = wrap(
        &mem,
        Faults {
            first_answer_delay: Duration::from_millis(400),
            ..Faults::default()
        },
    );
    let h = sync_handle(&w);
    let held = tokio::task::spawn_blocking(move || {
        Lock::with_backend("late-sync", &h)
            .options(opts)
            .acquire()
            .map(|g| g.is_held())
    })
    .await
    .expect("join");
    assert!(matches!(held, Ok(true)), "sync: {held:?}");
}

/// A release whose answer was lost (it was applied) is retried and
/// reported as released, not as a lost lease.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_whose_answer_was_lost_is_released() {
    let mem = MemoryBackend::new();
    let w = wrap(
        &mem,
        Faults {
            lose_first_release_answer: true,
            ..Faults::default()
        },
    );
    let g = AsyncLock::with_backend("idem", &async_handle(&w))
        .acquire()
        .await
        .expect("acquire");
    let r = g.release().await;
    assert!(r.is_ok(), "async: {r:?}");
    let w = wrap(
        &mem,
        Faults {
            lose_first_release_answer: true,
            ..Faults::default()
        },
    );
    let h = sync_handle(&w);
    let r = tokio::task::spawn_blocking(move || {
        Lock::with_backend("idem-sync", &h)
            .acquire()
            .expect("acquire")
            .release()
    })
    .await
    .expect("join");
    assert!(r.is_ok(), "sync: {r:?}");
}

/// A server-clock sample taken during a stall longer than the lease must
/// not make guards start out lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clock_sample_from_a_stall_does_not_make_guards_lost() {
    let mem = MemoryBackend::new();
    let w = wrap(
        &mem,
        Faults {
            first_clock_read_delay: Duration::from_millis(600),
            estimated_clock: true,
            ..Faults::default()
        },
    );
    let h = async_handle(&w);
    let opts = LockOptions::default().lease(Duration::from_millis(400));
    let g = AsyncLock::with_backend("stall", &h)
        .options(opts.clone())
        .acquire()
        .await
        .expect("acquire");
    assert!(g.is_held(), "the first guard started out lost");
    g.release().await.expect("release");
    let g = AsyncLock::with_backend("stall-2", &h)
        .options(opts)
        .acquire()
        .await
        .expect("acquire");
    assert!(g.is_held(), "the next guard started out lost");
    g.release().await.expect("release");
}
