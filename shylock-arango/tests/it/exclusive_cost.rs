//! Issue 10 item 9: what `exclusive: true` costs when many lock names share
//! one collection. Not part of the normal run (`#[ignore]`): it measures.
//!
//! ```sh
//! cargo test --release -p shylock-arango --all-features --test it -- --ignored exclusive_cost --nocapture
//! # against a real server: SHYLOCK_ARANGO_URL=… SHYLOCK_ARANGO_PASSWORD=… (see support/target.rs)
//! ```
//!
//! For 1, 4, 16 and 64 tasks, each on a name of its own (no contention at
//! all), it runs acquire + release cycles for a fixed time and prints the
//! cycles per second of all tasks together. With `exclusive: true` every
//! lock operation of the collection runs one after another, so the total
//! stays near that of one task whatever the number of names. On the
//! emulator, each synced write spends `SHYLOCK_EMU_SYNC_MS` (default 2 ms,
//! a model of the fsync) inside the lock.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use shylock_arango::{ArangoBackend, ArangoOptions};

use crate::backend_async::{acquire, granted, release};
use crate::support::target::{target, unique_collection};

const RUN: Duration = Duration::from_secs(3);

async fn cycles(backends: &[ArangoBackend], tasks: usize) -> f64 {
    let done = Arc::new(AtomicU64::new(0));
    let stop = Instant::now() + RUN;
    let mut handles = Vec::new();
    for i in 0..tasks {
        let b = backends[i % backends.len()].clone();
        let done = Arc::clone(&done);
        handles.push(tokio::spawn(async move {
            let name = shylock_core::LockName::new(format!("name-{i}")).unwrap();
            let owner = shylock_core::OwnerId::random();
            while Instant::now() < stop {
                granted(acquire(&b, &name, &owner, Duration::from_secs(60)).await);
                release(&b, &name, &owner).await;
                done.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
    done.load(Ordering::Relaxed) as f64 / RUN.as_secs_f64()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "a measurement; run it with --ignored --nocapture"]
async fn exclusive_cost() {
    let t = target();
    let mut spread = Vec::new();
    for _ in 0..4 {
        spread.push(
            ArangoBackend::connect_with(
                &t.url,
                &t.user,
                &t.password,
                &t.db,
                ArangoOptions::new().collection(unique_collection("x")),
            )
            .await
            .unwrap(),
        );
    }
    let one = [spread[0].clone()];
    let sync_ms: u64 = std::env::var("SHYLOCK_EMU_SYNC_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2);
    match &t.emu {
        Some(emu) => {
            emu.set_sync_latency(Duration::from_millis(sync_ms));
            println!("server: the emulator, {sync_ms} ms per synced write");
        }
        None => println!("server: {}", t.url),
    }
    println!("tasks (one name each) | acquire+release cycles/s, one collection | 4 collections");
    for tasks in [1, 4, 16, 64] {
        let a = cycles(&one, tasks).await;
        let b = cycles(&spread, tasks).await;
        println!("{tasks:>21} | {a:>41.0} | {b:>13.0}");
    }
    for b in &spread {
        t.drop_collection(b.collection()).await;
    }
}
