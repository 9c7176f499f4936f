//! Issue 12 item 1: every public blocking call of the sync MongoDB backend
//! works (no panic, the right answer) on a thread that is inside a tokio
//! runtime, current-thread and multi-thread. The sync driver runs each call
//! on its own runtime and panics ("Cannot start a runtime from within a
//! runtime") when called from such a thread; the backend must never make a
//! driver call on the caller's thread.
//!
//! Server: DocumentDB started by the test support, or the real MongoDB at
//! `SHYLOCK_MONGODB_URI`.

mod support;

use std::time::Duration;

use shylock_core::{Backend, Lock};
use shylock_mongo::MongoOptions;
use shylock_mongo::sync::MongoBackend;

/// Every public blocking call, in the order a user makes them.
fn every_blocking_call(test: &str) {
    let db = support::unique_db(test);
    // The client is made outside the runtime (as an application does before
    // it starts one): a sync client made inside a runtime runs its
    // monitoring tasks on that runtime, which a blocking call then blocks
    // (see the `sync` module docs).
    let uri = support::server().uri();
    let client = std::thread::spawn(move || support::sync_client(&uri, true))
        .join()
        .expect("the client thread");
    let backend = MongoBackend::create_with(&client, &db, support::options()).expect("create_with");
    assert_eq!(backend.database(), &*db);
    assert_eq!(backend.collection(), "shylock");
    backend.prepare().expect("prepare");
    let other = MongoBackend::new(
        &client,
        &db,
        support::options()
            .collection("other")
            .allow_non_atomic_server(true),
    )
    .expect("new");
    other.prepare().expect("prepare of new");
    if support::on_ferretdb() {
        // `create` without the opt-in refuses FerretDB v1 (and says so):
        // the call itself must still return, not panic.
        let refused = MongoBackend::create(&client, &db).expect_err("FerretDB is refused");
        assert!(refused.to_string().contains("FerretDB"), "{refused}");
    } else {
        MongoBackend::create(&client, &db).expect("create");
    }

    let handle = Backend::from(backend);
    // No timeout: the call that panicked.
    let lock = Lock::with_backend("in-runtime", &handle).lease(Duration::from_secs(5));
    let guard = lock.acquire().expect("acquire without a timeout");
    let seen = lock.inspect().expect("inspect").expect("held");
    assert_eq!(seen.token, guard.token());
    assert!(lock.try_acquire().expect("try_acquire").is_none());
    guard.ensure_held().expect("held");
    guard.release().expect("release");
    let guard = lock
        .acquire_timeout(Duration::from_secs(10))
        .expect("acquire_timeout");
    drop(guard); // releases
    let guard = lock
        .try_acquire()
        .expect("try_acquire")
        .expect("free after the drop");
    guard.release().expect("release");
    assert!(lock.inspect().expect("inspect").is_none());
    let _ = MongoOptions::new();
}

#[tokio::test(flavor = "current_thread")]
async fn sync_backend_inside_a_current_thread_runtime() {
    every_blocking_call("rt_current");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_backend_inside_a_multi_thread_runtime() {
    every_blocking_call("rt_multi");
}

#[test]
fn sync_backend_outside_any_runtime() {
    every_blocking_call("rt_none");
}
