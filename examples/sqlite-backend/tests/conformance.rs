//! The core's lock-level conformance suite against the SQLite backend, in
//! both forms: the sync form is the backend itself, the async form is the
//! core's bridge over it (`Backend::from_sync`). The backend gives every
//! overlapping request a connection of its own, so the contenders of a run
//! meet in SQLite's locking as processes would.

mod support;

use shylock_core::conformance::{run_async, run_sync};
use support::TempDb;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_async_form_passes_the_conformance_suite() {
    let db = TempDb::new();
    let report = run_async(&support::suite(&db, "sqlite-async")).await;
    println!("async conformance on sqlite: {report:?}");
}

#[test]
fn the_sync_form_passes_the_conformance_suite() {
    let db = TempDb::new();
    let report = run_sync(&support::suite(&db, "sqlite-sync"));
    println!("sync conformance on sqlite: {report:?}");
}
