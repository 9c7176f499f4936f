//! The Python original's `examples/sync_example.py` (pymongo), carried over:
//! configure the MongoDB backend once, then take locks three ways — as a
//! guard whose scope is the critical section (released when it ends, also
//! by an error or a panic, as `with Lock(...)`), with an explicit
//! acquire/release (the `try: acquire() ... finally: release()` form), and
//! with a non-blocking try (`acquire(block=False)`) — and finally a few
//! threads contending for one lock, with their fencing tokens.
//!
//! ```sh
//! cargo run -p shylock-examples --features mongo --example mongo_sync -- mongodb://127.0.0.1:27017/
//! # against FerretDB v1 (refused without the flag, see below):
//! cargo run -p shylock-examples --features mongo --example mongo_sync -- --allow-non-atomic-server mongodb://127.0.0.1:27017/
//! ```
//! The argument is a MongoDB connection string (default
//! `mongodb://127.0.0.1:27017/`); the example uses the database
//! `shylock_example` and its collection `shylock` (created with its TTL
//! index if missing).
//!
//! FerretDB v1 can grant a lock twice to contenders on different connections
//! (its issue 2168), so `create` refuses it unless
//! `MongoOptions::allow_non_atomic_server(true)` is set. The flag
//! `--allow-non-atomic-server` sets it AND limits the client to one
//! connection (`max_pool_size(1)`), which is what makes that server safe
//! within this one process.

use std::time::Duration;

use shylock::mongo::{MongoOptions, mongodb, sync::MongoBackend};
use shylock::{Lock, LockGuard, configure};

const LOCK_NAME: &str = "test-lock";

fn main() -> std::process::ExitCode {
    shylock_examples::report(run())
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let mut allow_non_atomic_server = false;
    let mut uri = "mongodb://127.0.0.1:27017/".to_owned();
    for arg in std::env::args().skip(1) {
        if arg == "--allow-non-atomic-server" {
            allow_non_atomic_server = true;
        } else {
            uri = arg;
        }
    }
    println!(
        "Connecting to {uri} (the driver gives up after its server selection timeout, 30 s unless the URI sets serverSelectionTimeoutMS)"
    );

    // Python: client = MongoClient(CONNECTION_STRING)
    //         configure(ShylockPymongoBackend.create(client, "projectdb"))
    let mut client_options = mongodb::options::ClientOptions::parse(&uri).run()?;
    // Against FerretDB v1 only (tests, one process): one connection, and
    // the opt-in; plain `MongoBackend::create(&client, db)` refuses it.
    //     MongoOptions::new().allow_non_atomic_server(true)
    if allow_non_atomic_server {
        client_options.max_pool_size = Some(1);
    }
    let client = mongodb::sync::Client::with_options(client_options)?;
    let options = MongoOptions::new().allow_non_atomic_server(allow_non_atomic_server);
    configure(MongoBackend::create_with(
        &client,
        "shylock_example",
        options,
    )?);

    // 1. `with Lock("test-lock"):` — `run` holds the lock for a critical
    //    section, and releases it however the section ends.
    let test_lock = Lock::new(LOCK_NAME);
    if let Err(e) = test_lock.run(guarded_section)? {
        println!("The critical section failed ({e}); the lock was released");
    }

    // 2. try: lock.acquire(); do_something() finally: lock.release()
    let guard = test_lock.acquire()?;
    println!(
        "Acquired {LOCK_NAME} again (fencing token {})",
        guard.token()
    );
    do_something();
    guard.release()?; // or just let it drop

    // 3. locked = lock.acquire(block=False)
    match test_lock.try_acquire()? {
        Some(guard) => {
            println!("Non-blocking try: got it (fencing token {})", guard.token());
            do_something();
        } // released here
        None => println!("Non-blocking try: somebody else holds it"),
    }

    // 4. Three threads contend for one lock; each gets it in turn, with a
    //    larger fencing token every time.
    let threads: Vec<_> = (0..3)
        .map(|worker| {
            std::thread::spawn(move || -> Result<(), shylock::Error> {
                for _ in 0..2 {
                    let guard = Lock::new("test-lock-shared").acquire()?;
                    println!(
                        "thread {worker} holds test-lock-shared, token {}",
                        guard.token()
                    );
                    std::thread::sleep(Duration::from_millis(50));
                }
                Ok(())
            })
        })
        .collect();
    for thread in threads {
        thread.join().map_err(|_| "a worker thread panicked")??;
    }
    println!("Done");
    Ok(())
}

/// The body of the `with` block: it runs while `run` holds the lock, and
/// fails (as the Python example's `raise ValueError()`). A guard kept in a
/// scope works the same way: it is released when dropped.
fn guarded_section(guard: &LockGuard) -> Result<(), std::io::Error> {
    println!("Got {LOCK_NAME} (fencing token {})", guard.token());
    // While it is held, a second, non-blocking try fails at once.
    let again = Lock::new(LOCK_NAME).try_acquire();
    assert!(matches!(again, Ok(None)), "{again:?}");
    Err(std::io::Error::other("ValueError"))
}

fn do_something() {
    std::thread::sleep(Duration::from_millis(20));
}
