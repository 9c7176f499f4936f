//! The Python original's `examples/arangodb_sync_example.py`, carried over:
//! a lock as a guard (released also when the critical section fails), the
//! non-blocking try (`acquire(block=False)`), and the automatic release of
//! a lock whose holder stopped renewing it. No async code and no runtime.
//!
//! ```sh
//! cargo run -p shylock-examples --features arango --example arango_sync -- \
//!     http://localhost:8529 root "" shylock_test
//! ```
//! Arguments (all optional, defaults as in the Python example): URL, user,
//! password, database. The database must exist; the collection `shylock` is
//! created with its TTL index if missing.

use std::time::{Duration, Instant};

use shylock::arango::{ArangoOptions, sync::ArangoBackend};
use shylock::{Lock, Renewal, configure};

const LOCK_NAME: &str = "test-lock";

fn main() -> std::process::ExitCode {
    shylock_examples::report(run())
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize, default: &str| args.get(i).cloned().unwrap_or_else(|| default.to_owned());
    let (url, user, password, db) = (
        arg(0, "http://localhost:8529"),
        arg(1, "root"),
        arg(2, ""),
        arg(3, "shylock_test"),
    );
    println!("Start");

    // Python: configure(ShylockPythonArangoBackend.create(db, "shylock")).
    let backend = ArangoBackend::connect_with(
        &url,
        &user,
        &password,
        &db,
        ArangoOptions::new().collection("shylock"),
    )?;
    configure(backend);

    let test_lock = Lock::new(LOCK_NAME).lease(Duration::from_secs(3));
    // Python: `with Lock(lock_name): ... raise ValueError()`.
    if let Err(e) = failing_critical_section(&test_lock) {
        println!("Caught error ({e}), lock should be released");
    }

    // Python: `assert test_lock.acquire(False)`.
    let guard = test_lock
        .try_acquire()?
        .ok_or("the lock should be free again")?;
    guard.release()?;

    println!("Testing automatic release, this might take a while.");
    // Python waits for the TTL monitor (5 minutes and more). Here the first
    // holder stops renewing and the second gets the lock when the 3 s lease
    // ends on the server's clock.
    let start = Instant::now();
    let holder = Lock::new(LOCK_NAME)
        .lease(Duration::from_secs(3))
        .renewal(Renewal::Off)
        .acquire()?;
    let lock2 = Lock::new(LOCK_NAME);
    let guard2 = lock2.acquire()?; // waits for the lease to end
    let released = start.elapsed();
    guard2.release()?;
    // Releasing the expired holding changes nothing and says so.
    if let Err(e) = holder.release() {
        println!("First holder: {e}");
    }
    println!(
        "Lock automatically released after {:.3}s",
        released.as_secs_f64()
    );
    Ok(())
}

fn failing_critical_section(test_lock: &Lock) -> Result<(), Box<dyn std::error::Error>> {
    let guard = Lock::new(LOCK_NAME).acquire()?;
    println!("Got lock (fencing token {})", guard.token());
    println!("Testing re-lock");
    assert!(test_lock.try_acquire()?.is_none());
    let work: Result<(), std::io::Error> = Err(std::io::Error::other("ValueError"));
    drop(guard); // released on every path, as `with` does (also on `?` and panics)
    work?;
    Ok(())
}
