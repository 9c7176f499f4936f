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
//! ```
//! The argument is a MongoDB connection string (default
//! `mongodb://127.0.0.1:27017/`); the example uses the database
//! `shylock_example` and its collection `shylock` (created with its TTL
//! index if missing).

use std::time::Duration;

use shylock::mongo::{mongodb, sync::MongoBackend};
use shylock::{Lock, configure};

const LOCK_NAME: &str = "test-lock";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let uri = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "mongodb://127.0.0.1:27017/".to_owned());
    println!("Connecting to {uri}");

    // Python: client = MongoClient(CONNECTION_STRING)
    //         configure(ShylockPymongoBackend.create(client, "projectdb"))
    let client = mongodb::sync::Client::with_uri_str(&uri)?;
    configure(MongoBackend::create(&client, "shylock_example")?);

    // 1. `with Lock("test-lock"):` — the guard's scope is the critical
    //    section; a failing section still releases the lock (on drop).
    let test_lock = Lock::new(LOCK_NAME);
    if let Err(e) = guarded_section(&test_lock) {
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

/// The `with` block: the guard lives for the section and is released when
/// it is dropped, whichever way the section ends.
fn guarded_section(test_lock: &Lock) -> Result<(), Box<dyn std::error::Error>> {
    let _guard = test_lock.acquire()?;
    println!("Got {LOCK_NAME}");
    // While it is held, a second, non-blocking try fails at once.
    assert!(Lock::new(LOCK_NAME).try_acquire()?.is_none());
    Err(Box::new(std::io::Error::other("ValueError")))
}

fn do_something() {
    std::thread::sleep(Duration::from_millis(20));
}
