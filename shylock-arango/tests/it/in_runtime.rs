//! Issue 12: every public blocking call of the sync ArangoDB backend, and
//! blocking locks over the async backend, called on a thread that is inside
//! a tokio runtime (current-thread and multi-thread): no panic, the right
//! answers. The sync backend runs its requests on a thread of its own, so
//! the caller's runtime is never entered.

use std::time::Duration;

use shylock_arango::ArangoOptions;
use shylock_arango::sync::ArangoBackend;
use shylock_core::{Backend, Lock};

use crate::support::target::{Target, target, unique_collection};

/// Every public blocking call, in the order a user makes them.
fn every_blocking_call(t: &Target, prefix: &str) -> String {
    let collection = unique_collection(prefix);
    let backend = ArangoBackend::connect_with(
        &t.url,
        &t.user,
        &t.password,
        &t.db,
        ArangoOptions::new().collection(&collection),
    )
    .expect("connect_with");
    assert_eq!(backend.collection(), collection);
    assert_eq!(backend.database(), t.db);
    backend.prepare().expect("prepare");
    let handle = Backend::from(backend.clone());
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
    let token = lock.run(|guard| guard.token()).expect("run");
    assert!(token.get() > 0);
    assert!(lock.inspect().expect("inspect").is_none());
    collection
}

#[test]
fn sync_backend_inside_a_current_thread_runtime() {
    let t = target();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let collection = runtime.block_on(async { every_blocking_call(&t, "rt_current") });
    runtime.block_on(t.drop_collection(&collection));
}

#[test]
fn sync_backend_inside_a_multi_thread_runtime() {
    let t = target();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let collection = runtime.block_on(async { every_blocking_call(&t, "rt_multi") });
    runtime.block_on(t.drop_collection(&collection));
}

/// A blocking lock over the *async* backend, on a worker of a multi-thread
/// runtime: the core's bridge runs each request on that runtime.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocking_locks_over_the_async_backend_inside_a_runtime() {
    let t = target();
    let collection = unique_collection("rt_bridge");
    let backend = shylock_arango::ArangoBackend::connect_with(
        &t.url,
        &t.user,
        &t.password,
        &t.db,
        ArangoOptions::new().collection(&collection),
    )
    .await
    .expect("connect_with");
    let handle = Backend::from(backend);
    let lock = Lock::with_backend("bridged", &handle).lease(Duration::from_secs(5));
    let guard = lock.acquire().expect("acquire");
    assert!(lock.try_acquire().expect("try").is_none());
    guard.release().expect("release");
    t.drop_collection(&collection).await;
}
