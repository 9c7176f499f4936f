//! The core's conformance suite against the MongoDB backend, async and sync.
//!
//! Server: FerretDB v1.24.2 started by the test support, or the real MongoDB
//! at `SHYLOCK_MONGODB_URI`. All contenders of a run share ONE connection
//! (`max_pool_size(1)`): commands reach the server one after another, so
//! FerretDB's non-atomic updates across connections (its issue 2168) cannot
//! fake a pass or a failure. On FerretDB this shows the lock semantics
//! (exclusion, rising tokens, expiry, takeover, renewal, loss reporting,
//! cancellation, odd names, timeouts) for commands that do not overlap on
//! the server; atomicity of overlapping commands is MongoDB's
//! single-document atomicity and is only exercised with a real MongoDB.

mod support;

use shylock_core::Backend;
use shylock_core::conformance::{Suite, run_async, run_sync};
use shylock_mongo::MongoBackend;

fn suite(backend: Backend, prefix: &str) -> Suite {
    let mut suite = Suite::new(backend, prefix);
    suite.contenders = 8;
    suite.rounds = 20;
    suite
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn async_backend_passes_the_conformance_suite() {
    let server = support::server();
    let client = support::async_client(&server.uri(), true);
    let db = support::unique_db("conformance_async");
    let backend = MongoBackend::create_with(&client, &db, support::options())
        .await
        .expect("create");
    let report = run_async(&suite(Backend::from(backend), "mongo-async")).await;
    println!("async conformance on {}: {report:?}", server.kind());
}

#[test]
fn sync_backend_passes_the_conformance_suite() {
    let server = support::server();
    let client = support::sync_client(&server.uri(), true);
    let db = support::unique_db("conformance_sync");
    let backend = shylock_mongo::sync::MongoBackend::create_with(&client, &db, support::options())
        .expect("create");
    let report = run_sync(&suite(Backend::from(backend), "mongo-sync"));
    println!("sync conformance on {}: {report:?}", server.kind());
}
