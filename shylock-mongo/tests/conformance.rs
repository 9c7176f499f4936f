//! The core's conformance suites against the MongoDB backend, async and sync.
//!
//! Server: DocumentDB started by the test support (atomic across
//! connections), or the real MongoDB at `SHYLOCK_MONGODB_URI`. (With
//! `SHYLOCK_TEST_SERVER=ferretdb` every backend funnels its commands through
//! ONE connection instead, and the tests show only the semantics of
//! commands that do not overlap.)
//!
//! * The primitive-level checks (`primitives_async::*`,
//!   `primitives_sync::*`, one test per clause of the backend contract):
//!   the first owner's requests on one client, other owners' on a client of
//!   their own, and a fixture writing raw documents (support/targets.rs).
//! * The lock-level suite: the contenders of a run share one pooled client,
//!   so overlapping commands run on connections of their own and meet on
//!   the server: exclusion, rising tokens, expiry, takeover, renewal, loss
//!   reporting, cancellation, odd names and timeouts are shown with the
//!   server's own atomicity.

mod support;

use shylock_core::Backend;
use shylock_core::conformance::{Suite, run_async, run_sync};
use shylock_mongo::MongoBackend;

shylock_core::primitive_conformance_tests!(primitives_async, || {
    support::targets::async_target("prim_async")
});
shylock_core::primitive_conformance_tests!(primitives_sync, || {
    support::targets::sync_target("prim_sync")
});

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
