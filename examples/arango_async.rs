//! The Python original's `examples/arangodb_aio_example.py`, carried over:
//! a lock as a guard (released also when the critical section fails), the
//! non-blocking try (`acquire(block=False)`), and waiters that get locks
//! whose holders went away once their leases end.
//!
//! ```sh
//! cargo run -p shylock-examples --features arango --example arango_async -- \
//!     http://localhost:8529 root "" shylock_test
//! ```
//! Arguments (all optional, defaults as in the Python example): URL, user,
//! password, database. The database must exist; the collection `shylock` is
//! created with its TTL index if missing.

use std::time::{Duration, Instant};

use shylock::arango::{ArangoBackend, ArangoOptions};
use shylock::{AsyncLock, Renewal, configure};

const LOCK_NAME: &str = "test-lock";

fn main() -> std::process::ExitCode {
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    shylock_examples::report(runtime.block_on(run()))
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize, default: &str| args.get(i).cloned().unwrap_or_else(|| default.to_owned());
    let (url, user, password, db) = (
        arg(0, "http://localhost:8529"),
        arg(1, "root"),
        arg(2, ""),
        arg(3, "shylock_test"),
    );
    println!("Start");

    // Python: configure(await ShylockAioArangoDBBackend.create(db, "shylock")).
    // With an `arangors::Database` at hand, `ArangoBackend::create(&db, "shylock")`
    // does the same.
    let backend = ArangoBackend::connect_with(
        &url,
        &user,
        &password,
        &db,
        ArangoOptions::new().collection("shylock"),
    )
    .await?;
    configure(backend);

    let test_lock = AsyncLock::new(LOCK_NAME);
    // Python: `async with Lock(lock_name): ... raise ValueError()`.
    if let Err(e) = failing_critical_section(&test_lock).await {
        println!("Caught error ({e}), lock should be released");
    }

    // Python: `assert await test_lock.acquire(False)`.
    let guard = test_lock
        .try_acquire()
        .await?
        .ok_or("the lock should be free again")?;
    guard.release().await?;

    // Python acquires three locks, never releases them and waits for the
    // TTL monitor (5 minutes and more). Here the holders "go away" (their
    // guards are forgotten, renewal off) and the waiters get the locks as
    // soon as the 3 s leases end, judged by the server's clock.
    let mut waits = Vec::new();
    for i in 0..3 {
        let name = format!("test-lock-a{i}");
        let abandoned = AsyncLock::new(name.clone())
            .lease(Duration::from_secs(3))
            .renewal(Renewal::Off)
            .acquire()
            .await?;
        std::mem::forget(abandoned); // a holder that crashed
        waits.push(tokio::spawn(async move {
            let start = Instant::now();
            println!("Waiting for release of {name}, this might take a while.");
            let guard = AsyncLock::new(name.clone()).acquire().await?;
            println!(
                "Release of {name} took {:.3}s (fencing token {})",
                start.elapsed().as_secs_f64(),
                guard.token()
            );
            guard.release().await?;
            Ok::<(), shylock::Error>(())
        }));
    }
    for wait in waits {
        wait.await??;
    }
    Ok(())
}

async fn failing_critical_section(test_lock: &AsyncLock) -> Result<(), Box<dyn std::error::Error>> {
    let guard = AsyncLock::new(LOCK_NAME).acquire().await?;
    println!("Got lock (fencing token {})", guard.token());
    println!("Testing re-lock");
    assert!(test_lock.try_acquire().await?.is_none());
    let work: Result<(), std::io::Error> = Err(std::io::Error::other("ValueError"));
    // Released on every path, as `async with` does.
    guard.release().await?;
    work?;
    Ok(())
}
