//! The process-wide default backend (its own test binary: global state).

use shylock_core::{AsyncLock, Backend, Error, Lock, MemoryBackend, configure};

#[tokio::test]
async fn no_default_is_a_clear_error_then_configure_sets_it() {
    let r = Lock::new("no-default").acquire();
    assert!(matches!(r, Err(Error::NotConfigured)), "{r:?}");
    let r = AsyncLock::new("no-default").try_acquire().await;
    assert!(matches!(r, Err(Error::NotConfigured)), "{r:?}");

    configure(MemoryBackend::new());
    let g = AsyncLock::new("with-default")
        .acquire()
        .await
        .expect("async lock on the default");
    assert!(
        Lock::new("with-default")
            .try_acquire()
            .expect("try")
            .is_none(),
        "one state for both forms"
    );
    g.release().await.expect("release");

    // An async backend as the default serves blocking locks too.
    configure(Backend::from_async(MemoryBackend::new()));
    let r = tokio::task::spawn_blocking(|| Lock::new("x").try_acquire().map(|g| g.is_some()))
        .await
        .expect("join");
    assert!(matches!(r, Ok(true)), "{r:?}");
}
