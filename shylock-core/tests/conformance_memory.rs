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
