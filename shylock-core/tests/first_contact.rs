//! What a new user meets first: names, errors that read well, the closure
//! helpers, a backend as its constructor returned it, and the `lock` span.

use std::time::Duration;

use shylock_core::{AsyncLock, Backend, Error, Lock, MemoryBackend, Renewal};

#[test]
fn a_bad_name_is_explained_once() {
    let error = Lock::new("").acquire().map(drop).expect_err("empty name");
    let message = error.to_string();
    assert_eq!(
        message.matches("invalid lock name").count(),
        1,
        "the prefix once: {message}"
    );
    assert!(message.contains("must not be empty"), "{message}");
}

#[test]
fn a_lock_has_its_name_and_takes_a_backend_as_created() {
    let memory = MemoryBackend::new();
    let lock = Lock::with_backend("as-created", &memory);
    assert_eq!(lock.name(), "as-created");
    let handle = Backend::from(memory.clone());
    let guard = lock.acquire().expect("acquire");
    assert!(
        Lock::with_backend("as-created", &handle)
            .try_acquire()
            .expect("try")
            .is_none(),
        "the same records"
    );
    drop(guard);
    assert_eq!(Lock::new("").name(), "", "an invalid name is kept as given");
}

#[test]
fn run_holds_the_lock_for_the_closure_then_releases() {
    let backend = Backend::from(MemoryBackend::new());
    let lock = Lock::with_backend("run-sync", &backend);
    let inside = lock
        .run(|guard| {
            assert!(guard.is_held());
            lock.try_acquire().expect("try").is_none()
        })
        .expect("run");
    assert!(inside, "held during the closure");
    assert!(lock.try_acquire().expect("try").is_some(), "released after");
}

#[test]
fn run_reports_a_lease_lost_during_the_closure() {
    let backend = Backend::from(MemoryBackend::new());
    let lock = Lock::with_backend("run-lost", &backend)
        .lease(Duration::from_millis(200))
        .renewal(Renewal::Off);
    let result = lock.run(|_| std::thread::sleep(Duration::from_millis(400)));
    assert!(matches!(result, Err(Error::LeaseLost { .. })), "{result:?}");
}

#[tokio::test(flavor = "current_thread")]
async fn async_run_holds_the_lock_for_the_closure_then_releases() {
    let backend = Backend::from(MemoryBackend::new());
    let lock = AsyncLock::with_backend("run-async", &backend);
    let inside = lock
        .run(async |guard| {
            assert!(guard.is_held());
            lock.try_acquire().await.expect("try").is_none()
        })
        .await
        .expect("run");
    assert!(inside, "held during the closure");
    assert!(lock.try_acquire().await.expect("try").is_some());
}

#[test]
fn a_set_up_error_keeps_its_source() {
    use shylock_core::{BackendError, BackendErrorKind};
    let io = std::io::Error::new(std::io::ErrorKind::PermissionDenied, "the root cause");
    let backend =
        BackendError::new(BackendErrorKind::InvalidConfig, "collection refused").with_source(io);
    let error = Error::from(backend);
    assert_eq!(error.backend_kind(), Some(BackendErrorKind::InvalidConfig));
    let mut chain = Vec::new();
    let mut next: Option<&dyn std::error::Error> = Some(&error);
    while let Some(e) = next {
        chain.push(e.to_string());
        next = e.source();
    }
    assert!(
        chain.last().is_some_and(|e| e == "the root cause"),
        "the whole chain: {chain:?}"
    );
}
