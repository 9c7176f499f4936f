//! Quickstart: several workers, threads and tokio tasks, contend for one lock
//! on the in-memory backend and print who holds it, with fencing tokens.
//!
//! Run it with `cargo run -p shylock-examples --example quickstart`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use shylock::{AsyncLock, Lock, MemoryBackend, configure};

const WORKERS: usize = 3;
const ROUNDS: usize = 3;

#[tokio::main]
async fn main() -> Result<(), shylock::Error> {
    // One in-memory backend for the whole process; async and sync locks
    // through it see each other at once.
    configure(MemoryBackend::new());
    let started = Instant::now();
    let last_token = Arc::new(AtomicU64::new(0));

    // Blocking workers on plain threads.
    let mut threads = Vec::new();
    for worker in 0..WORKERS {
        let last_token = Arc::clone(&last_token);
        threads.push(std::thread::spawn(move || -> Result<(), shylock::Error> {
            for _ in 0..ROUNDS {
                let guard = Lock::new("quickstart").acquire()?; // waits
                report(
                    &format!("thread {worker}"),
                    guard.token().get(),
                    &last_token,
                    started,
                );
                std::thread::sleep(Duration::from_millis(20)); // the critical section
            } // released on drop
            Ok(())
        }));
    }

    // Async workers on tokio tasks.
    let mut tasks = Vec::new();
    for worker in 0..WORKERS {
        let last_token = Arc::clone(&last_token);
        tasks.push(tokio::spawn(async move {
            for _ in 0..ROUNDS {
                let guard = AsyncLock::new("quickstart").acquire().await?;
                report(
                    &format!("task {worker}"),
                    guard.token().get(),
                    &last_token,
                    started,
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
                guard.release().await?;
            }
            Ok::<(), shylock::Error>(())
        }));
    }

    for thread in threads {
        thread.join().expect("worker thread")?;
    }
    for task in tasks {
        task.await.expect("worker task")?;
    }

    // The Python `acquire(block=False)`: one attempt, no waiting.
    let lock = Lock::new("quickstart");
    let held = lock.acquire()?;
    match lock.try_acquire()? {
        Some(_) => println!("try_acquire: got it (unexpected: it is held)"),
        None => println!("try_acquire while held: busy, returned at once"),
    }
    let info = lock.inspect()?.expect("held");
    println!(
        "inspect: held by owner {} with fencing token {}",
        info.owner, info.token
    );
    held.release()?;
    println!(
        "{} acquisitions, fencing tokens rose every time, no two holders at once.",
        2 * WORKERS * ROUNDS + 1
    );
    Ok(())
}

fn report(who: &str, token: u64, last_token: &AtomicU64, started: Instant) {
    let previous = last_token.swap(token, Ordering::SeqCst);
    assert!(token > previous, "fencing tokens only rise");
    println!(
        "{:>6.1} ms  {who:<8} holds the lock  fencing token {token}",
        started.elapsed().as_secs_f64() * 1000.0
    );
}
