//! The cases where shylock used panics as answers (issue 18, item 5), run
//! in a build with `panic = "abort"` (the workspace's `panic-abort`
//! profile), where a caught panic would abort the process instead:
//!
//! ```text
//! cargo run --profile panic-abort -p shylock-core --example panic_abort
//! ```
//!
//! Exits 0 when every case gave its documented answer; any panic aborts it.

use std::time::Duration;

use shylock_core::{AsyncLock, Backend, Error, Lock, LockOptions, MemoryBackend, Renewal};

fn main() {
    if !cfg!(panic = "abort") {
        eprintln!("build this with `--profile panic-abort`: panics must abort");
        std::process::exit(2);
    }
    let opts = LockOptions::default()
        .lease(Duration::from_millis(300))
        .renewal(Renewal::Every(Duration::from_millis(100)));

    // 1. An async lock on a runtime without timers (once refused after a
    //    caught panic of tokio's timer; now timed by shylock's runtime).
    let no_timers = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let memory = Backend::from(MemoryBackend::new());
    no_timers.block_on(async {
        let lock = AsyncLock::with_backend("abort-no-timers", &memory).options(opts.clone());
        let guard = lock.acquire().await.expect("acquire without timers");
        let waited = lock.acquire_timeout(Duration::from_millis(200)).await;
        assert!(matches!(waited, Err(Error::Timeout { .. })), "{waited:?}");
        assert!(guard.is_held());
        guard.release().await.expect("release");
    });
    println!("ok: an async lock on a runtime without timers");

    // 2. A blocking lock on the thread of the current-thread runtime its
    //    async backend was made on (once a caught panic of
    //    `block_in_place`): refused with `Error::Runtime`, nothing sent.
    let current = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    current.block_on(async {
        let backend = Backend::from_async(MemoryBackend::new());
        let refused = Lock::with_backend("abort-current", &backend).try_acquire();
        assert!(matches!(refused, Err(Error::Runtime { .. })), "{refused:?}");
        let free = AsyncLock::with_backend("abort-current", &backend)
            .try_acquire()
            .await
            .expect("try");
        assert!(free.is_some(), "the refused call sent nothing");
    });
    println!("ok: a blocking lock refused on its backend's current-thread runtime");

    // 3. A blocking lock on a worker of a multi-thread runtime, dropped
    //    there too (`block_in_place`, no probe).
    let multi = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    multi.block_on(async {
        let backend = Backend::from_async(MemoryBackend::new());
        let guard = Lock::with_backend("abort-multi", &backend)
            .options(opts.clone())
            .acquire()
            .expect("acquire on a worker");
        drop(guard);
        let again = Lock::with_backend("abort-multi", &backend)
            .try_acquire()
            .expect("try");
        assert!(again.is_some(), "released on drop");
    });
    println!("ok: a blocking lock on a multi-thread runtime's worker");
    println!("all cases answered without a panic");
}
