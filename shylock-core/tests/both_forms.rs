//! One backend serves both forms: a handle made from an async backend
//! serves blocking locks, one made from a sync backend serves async locks,
//! and no blocking call panics inside a tokio runtime of either flavor.

use std::time::Duration;

use shylock_core::{AsyncLock, Backend, Lock, MemoryBackend};

fn blocking_round(backend: &Backend, name: &str) -> Result<u64, shylock_core::Error> {
    let lock = Lock::with_backend(name, backend).timeout(Duration::from_secs(10));
    let guard = lock.acquire()?;
    assert!(lock.try_acquire()?.is_none(), "one holder at a time");
    let token = guard.token().get();
    guard.release()?;
    assert!(lock.inspect()?.is_none(), "released");
    Ok(token)
}

#[test]
fn an_async_backend_made_outside_a_runtime_serves_blocking_locks() {
    let backend = Backend::from_async(MemoryBackend::new());
    let first = blocking_round(&backend, "bridge-plain").expect("blocking round");
    let second = blocking_round(&backend, "bridge-plain").expect("again");
    assert!(second > first, "tokens rise: {first} then {second}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_async_backend_serves_blocking_locks_beside_async_ones() {
    let backend = Backend::from_async(MemoryBackend::new());
    let held = AsyncLock::with_backend("bridge-both", &backend)
        .acquire()
        .await
        .expect("async holder");
    let handle = backend.clone();
    let blocked = tokio::task::spawn_blocking(move || {
        Lock::with_backend("bridge-both", &handle)
            .try_acquire()
            .map(|g| g.is_none())
    })
    .await
    .expect("join");
    assert!(
        matches!(blocked, Ok(true)),
        "the async holder excludes a blocking one: {blocked:?}"
    );
    held.release().await.expect("release");
    let handle = backend.clone();
    let round = tokio::task::spawn_blocking(move || blocking_round(&handle, "bridge-both"))
        .await
        .expect("join");
    assert!(round.is_ok(), "{round:?}");
    // On a worker thread of a multi-thread runtime itself: it works (the
    // worker announces that it blocks).
    assert!(blocking_round(&backend, "bridge-worker").is_ok());
}

#[test]
fn a_blocking_lock_on_a_current_thread_runtime_thread_is_refused_not_hung() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let backend = Backend::from_async(MemoryBackend::new());
        let started = std::time::Instant::now();
        let result = Lock::with_backend("bridge-current", &backend)
            .timeout(Duration::from_secs(2))
            .acquire();
        let error = result.map(drop).expect_err("cannot wait here");
        assert!(
            error.to_string().contains("current-thread"),
            "a clear reason: {error}"
        );
        assert!(started.elapsed() < Duration::from_secs(10), "no hang");
        // ... and from a blocking thread of the same runtime it works.
        let handle = backend.clone();
        let round = tokio::task::spawn_blocking(move || blocking_round(&handle, "bridge-current"))
            .await
            .expect("join");
        assert!(round.is_ok(), "{round:?}");
    });
}

#[tokio::test(flavor = "current_thread")]
async fn a_sync_backend_serves_async_locks() {
    let backend = Backend::from_sync(MemoryBackend::new());
    let lock = AsyncLock::with_backend("bridge-async", &backend);
    let guard = lock.acquire().await.expect("acquire");
    assert!(lock.try_acquire().await.expect("try").is_none());
    let token = guard.token();
    guard.release().await.expect("release");
    let again = lock.acquire().await.expect("again");
    assert!(again.token() > token);
    again.release().await.expect("release");
    assert!(backend.settle(Duration::from_secs(5)).await);
}

/// A handle made on a runtime that has shut down still serves blocking
/// locks: their work runs on shylock's own runtime, not on the runtime the
/// handle was made on (before issue 18 this was an error at once; an
/// endless retry before that).
#[test]
fn a_backend_made_on_a_runtime_that_has_shut_down_still_works() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let backend = runtime.block_on(async { Backend::from_async(MemoryBackend::new()) });
    drop(runtime);
    let guard = Lock::with_backend("bridge-gone", &backend)
        .timeout(Duration::from_secs(10))
        .acquire()
        .expect("acquire");
    assert!(guard.is_held());
    guard.release().expect("release");
}
