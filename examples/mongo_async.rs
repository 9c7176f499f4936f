//! The Python original's `examples/aio_example.py` (motor), carried over:
//! configure the MongoDB backend once, then take locks three ways — as a
//! guard around a critical section (released also when the section fails,
//! as `async with Lock(...)`), with an explicit acquire/release (the
//! `try: acquire() ... finally: release()` form), and with a non-blocking
//! try (`acquire(block=False)`) — and finally a few tasks contending for one
//! lock, with their fencing tokens.
//!
//! ```sh
//! cargo run -p shylock-examples --features mongo --example mongo_async -- mongodb://127.0.0.1:27017/
//! # against FerretDB v1 (refused without the flag, see below):
//! cargo run -p shylock-examples --features mongo --example mongo_async -- --allow-non-atomic-server mongodb://127.0.0.1:27017/
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

use shylock::mongo::{MongoBackend, MongoOptions, mongodb};
use shylock::{AsyncLock, AsyncLockGuard, configure};

const LOCK_NAME: &str = "test-lock";

fn main() -> std::process::ExitCode {
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    shylock_examples::report(runtime.block_on(run()))
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
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

    // Python: client = AsyncIOMotorClient(CONNECTION_STRING)
    //         configure(await ShylockMotorAsyncIOBackend.create(client, "projectdb"))
    let mut client_options = mongodb::options::ClientOptions::parse(&uri).await?;
    // Against FerretDB v1 only (tests, one process): one connection, and
    // the opt-in; plain `MongoBackend::create(&client, db)` refuses it.
    //     MongoOptions::new().allow_non_atomic_server(true)
    if allow_non_atomic_server {
        client_options.max_pool_size = Some(1);
    }
    let client = mongodb::Client::with_options(client_options)?;
    let options = MongoOptions::new().allow_non_atomic_server(allow_non_atomic_server);
    configure(MongoBackend::create_with(&client, "shylock_example", options).await?);

    // 1. `async with Lock("test-lock"):` — `run` holds the lock for a
    //    critical section, and releases it however the section ends.
    let test_lock = AsyncLock::new(LOCK_NAME);
    let section = test_lock.run(guarded_section).await?;
    if let Err(e) = section {
        println!("The critical section failed ({e}); the lock was released");
    }

    // 2. try: await lock.acquire(); do_something() finally: await lock.release()
    let guard = test_lock.acquire().await?;
    println!(
        "Acquired {LOCK_NAME} again (fencing token {})",
        guard.token()
    );
    do_something().await;
    guard.release().await?;

    // 3. locked = await lock.acquire(block=False)
    match test_lock.try_acquire().await? {
        Some(guard) => {
            println!("Non-blocking try: got it (fencing token {})", guard.token());
            do_something().await;
            guard.release().await?;
        }
        None => println!("Non-blocking try: somebody else holds it"),
    }

    // 4. Three tasks contend for one lock; each gets it in turn, with a
    //    larger fencing token every time.
    let mut tasks = Vec::new();
    for worker in 0..3 {
        tasks.push(tokio::spawn(async move {
            for _ in 0..2 {
                let guard = AsyncLock::new("test-lock-shared").acquire().await?;
                println!(
                    "task {worker} holds test-lock-shared, token {}",
                    guard.token()
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
                guard.release().await?;
            }
            Ok::<(), shylock::Error>(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    println!("Done");
    Ok(())
}

/// The body of the `async with` block: it runs while `run` holds the lock,
/// and fails (as the Python example's `raise ValueError()`).
async fn guarded_section(guard: &AsyncLockGuard) -> Result<(), std::io::Error> {
    println!("Got {LOCK_NAME} (fencing token {})", guard.token());
    // While it is held, a second, non-blocking try fails at once.
    let again = AsyncLock::new(LOCK_NAME).try_acquire().await;
    assert!(matches!(again, Ok(None)), "{again:?}");
    Err(std::io::Error::other("ValueError"))
}

async fn do_something() {
    tokio::time::sleep(Duration::from_millis(20)).await;
}
