//! The core's conformance suite, async and sync, against the emulator (or a
//! real ArangoDB when `SHYLOCK_ARANGO_URL` is set).

use shylock_arango::ArangoBackend;
use shylock_core::Backend;
use shylock_core::conformance::{Suite, run_async};

use crate::support::target::{target, unique_collection};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn conformance_async() {
    let t = target();
    let db = t.db().await;
    let coll = unique_collection("conf_async");
    let backend = ArangoBackend::create(&db, &coll).await.unwrap();
    let suite = Suite::new(Backend::from(backend), "arango-async");
    let report = run_async(&suite).await;
    assert!(report.checks > 50, "{report:?}");
    eprintln!("conformance (async) against {}: {report:?}", t.url);
    t.drop_collection(&coll).await;
}

#[cfg(feature = "sync")]
#[test]
fn conformance_sync() {
    use shylock_arango::{ArangoOptions, sync};
    use shylock_core::conformance::run_sync;

    let t = target();
    let coll = unique_collection("conf_sync");
    let backend = sync::ArangoBackend::connect_with(
        &t.url,
        &t.user,
        &t.password,
        &t.db,
        ArangoOptions::new().collection(&coll),
    )
    .unwrap();
    let suite = Suite::new(Backend::from(backend), "arango-sync");
    let report = run_sync(&suite);
    assert!(report.checks > 50, "{report:?}");
    eprintln!("conformance (sync) against {}: {report:?}", t.url);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(t.drop_collection(&coll));
}
