//! Issue 12 item 1: the sync backend makes its driver calls on a bounded set
//! of threads (since issue 18: shylock's runtime's blocking threads), not
//! one new OS thread per call: calls against a server that stopped
//! answering (each abandoned at its deadline, its driver call still
//! pending) leave at most `MAX_BLOCKING_THREADS` threads.
//!
//! Alone in its test binary, so that no other test's threads are counted.
//! Server: DocumentDB (or `SHYLOCK_MONGODB_URI`) behind the
//! `shylock-testkit` proxy, which holds every request.

mod support;

use std::net::ToSocketAddrs;
use std::time::{Duration, Instant};

use shylock_core::backend::{InspectRequest, SyncBackend};
use shylock_core::bridge::MAX_BLOCKING_THREADS;
use shylock_core::{LockName, Timestamp};
use shylock_mongo::sync::MongoBackend;
use shylock_testkit::proxy::Proxy;

/// Threads of this process named like shylock's blocking threads (`comm`
/// keeps 15 bytes of `shylock-blocking`).
fn helper_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .map(|tasks| {
            tasks
                .filter_map(Result::ok)
                .filter(|t| {
                    std::fs::read_to_string(t.path().join("comm"))
                        .is_ok_and(|c| c.trim() == "shylock-blockin")
                })
                .count()
        })
        .unwrap_or(0)
}

#[test]
fn abandoned_calls_do_not_pile_up_threads() {
    if !std::path::Path::new("/proc/self/task").exists() {
        eprintln!("skipped: no /proc to count threads");
        return;
    }
    let uri = support::server().uri();
    let host = uri
        .trim_start_matches("mongodb://")
        .split(['/', '?'])
        .next()
        .unwrap_or_default()
        .rsplit('@')
        .next()
        .unwrap_or_default()
        .to_owned();
    let upstream = host
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .expect("the server's address");
    let proxy = Proxy::start(upstream, support::proxy_mode()).expect("proxy");
    let db = support::unique_db("helpers");
    let client = support::sync_client(&support::via(&uri, proxy.addr()), false);
    let backend = MongoBackend::create_with(&client, &db, support::options()).expect("create");
    proxy.blackhole(Duration::from_secs(600));
    let name = LockName::new("x".to_owned()).expect("name");
    let calls = MAX_BLOCKING_THREADS + 16;
    for _ in 0..calls {
        let r = backend.inspect(InspectRequest {
            name: &name,
            now: Timestamp::local_now(),
            deadline: Some(Instant::now() + Duration::from_millis(100)),
        });
        assert!(r.is_err(), "{r:?}");
    }
    let n = helper_threads();
    assert!(n >= 1, "the helper threads are counted");
    assert!(
        n <= MAX_BLOCKING_THREADS,
        "{n} blocking threads for {calls} abandoned calls (at most {MAX_BLOCKING_THREADS})"
    );
    proxy.clear_faults();
}
