//! `shylock::connect` on real servers (DocumentDB, the ArangoDB emulator), in
//! every driver form: each handle takes a lock that the others see.

use std::time::Duration;

use shylock::{
    AsyncLock, Backend, BackendErrorKind, BackendUrl, ConnectError, ConnectOptions, Driver, Lock,
    RawBackend,
};
use shylock_arango_emulator::Emulator;
use shylock_testkit::documentdb::DocumentDb;

/// A handle of each form: async connect with each driver, blocking connect
/// with each driver.
async fn four_handles(url: &str, options: &ConnectOptions) -> Vec<(String, Backend)> {
    let parsed = BackendUrl::parse(url).expect("a good URL");
    let mut handles = Vec::new();
    for driver in [Driver::Async, Driver::Sync] {
        let options = options.clone().driver(driver);
        let connection = parsed.connect(&options).await.expect("async connect");
        let raw_is_async = matches!(connection.raw(), RawBackend::Async(_));
        assert_eq!(raw_is_async, driver == Driver::Async, "{driver:?}");
        handles.push((format!("connect {driver:?}"), connection.into_backend()));
        let (parsed, options) = (parsed.clone(), options.clone());
        let backend = tokio::task::spawn_blocking(move || parsed.connect_blocking(&options))
            .await
            .expect("no panic")
            .expect("blocking connect");
        handles.push((
            format!("connect_blocking {driver:?}"),
            backend.into_backend(),
        ));
    }
    handles
}

/// Each handle takes the lock; every other handle finds it held.
async fn share_locks(handles: &[(String, Backend)], name: &str) {
    for (i, (what, handle)) in handles.iter().enumerate() {
        let guard = AsyncLock::with_backend(name, handle)
            .acquire()
            .await
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        for (j, (other, h)) in handles.iter().enumerate() {
            if i == j {
                continue;
            }
            let (name, h) = (name.to_owned(), h.clone());
            let free = tokio::task::spawn_blocking(move || {
                Lock::with_backend(&*name, &h)
                    .try_acquire()
                    .map(|g| g.is_some())
            })
            .await
            .expect("no panic")
            .unwrap_or_else(|e| panic!("{other}: {e}"));
            assert!(!free, "{other} got the lock {what} holds");
        }
        guard
            .release()
            .await
            .unwrap_or_else(|e| panic!("{what}: {e}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mongodb_urls_connect_in_every_form() {
    let server = DocumentDb::start();
    let url = format!(
        "{}{}shylock.database=connect_test&shylock.collection=by_url",
        server.uri(),
        if server.uri().contains('?') { '&' } else { '?' }
    );
    let options = ConnectOptions::new().connect_timeout(Duration::from_secs(10));
    let handles = four_handles(&url, &options).await;
    assert!(
        handles[0].1.describe().contains("by_url"),
        "{:?}",
        handles[0].1
    );
    share_locks(&handles, "mongo-by-url").await;
    // Without preparing: only a ping.
    let unprepared = shylock::connect_with(&url, &options.clone().prepare(false))
        .await
        .expect("unprepared");
    share_locks(
        &[handles[0].clone(), ("unprepared".into(), unprepared)],
        "mongo-ping",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arangodb_urls_connect_in_every_form_and_hide_the_password() {
    let emu = Emulator::start("locker", "hunter2-pw", &["locks"]);
    let with_credentials = emu.url().replace("http://", "http://locker:hunter2-pw@");
    let url = format!("{with_credentials}/?shylock.database=locks&shylock.collection=by_url");
    let handles = four_handles(&url, &ConnectOptions::new()).await;
    share_locks(&handles, "arango-by-url").await;

    // The same through options, and a wrong password: refused, not shown.
    let options = ConnectOptions::new()
        .user("locker")
        .database("locks")
        .collection("by_url");
    let right = shylock::connect_with(&emu.url(), &options.clone().password("hunter2-pw"))
        .await
        .expect("by options");
    share_locks(
        &[handles[0].clone(), ("options".into(), right)],
        "arango-options",
    )
    .await;
    let e = shylock::connect_with(&emu.url(), &options.password("wrong-hunter2"))
        .await
        .expect_err("a wrong password");
    assert!(matches!(e, ConnectError::Backend(_)), "{e:?}");
    let ConnectError::Backend(inner) = &e else {
        unreachable!()
    };
    assert_eq!(
        inner.backend_kind(),
        Some(BackendErrorKind::Unauthorized),
        "{e}"
    );
    for text in [e.to_string(), format!("{e:?}"), format!("{e:#?}")] {
        assert!(!text.contains("hunter2"), "{text}");
    }
}
