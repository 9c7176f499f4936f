//! The conformance suite against the in-memory backend, in both forms.

use shylock_core::conformance::{Suite, run_async, run_sync};
use shylock_core::{Backend, MemoryBackend};

fn suite() -> Suite {
    let mut suite = Suite::new(Backend::from(MemoryBackend::new()), "memory");
    suite.contenders = 16;
    suite.rounds = 50;
    suite
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memory_backend_passes_the_async_suite() {
    let report = run_async(&suite()).await;
    println!("async conformance on memory: {report:?}");
}

#[test]
fn memory_backend_passes_the_sync_suite() {
    let report = run_sync(&suite());
    println!("sync conformance on memory: {report:?}");
}

/// A handle made from an async backend serves blocking locks through the
/// core's bridge: the sync suite holds for it too.
#[test]
fn the_blocking_form_of_an_async_backend_passes_the_sync_suite() {
    let mut suite = suite();
    suite.backend = Backend::from_async(MemoryBackend::new());
    let report = run_sync(&suite);
    println!("sync conformance on memory through the bridge: {report:?}");
}

/// A handle made from a sync backend serves async locks on tokio's blocking
/// threads: the async suite holds for it too.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_async_form_of_a_sync_backend_passes_the_async_suite() {
    let mut suite = suite();
    suite.backend = Backend::from_sync(MemoryBackend::new());
    let report = run_async(&suite).await;
    println!("async conformance on memory through the bridge: {report:?}");
}
