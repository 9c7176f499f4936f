//! Unit tests of `connect`: memory round trips, features, redaction.

use super::*;

#[tokio::test]
async fn memory_round_trip_shares_locks_by_name() {
    use shylock_core::AsyncLock;
    let a = connect("memory://round-trip").await.expect("memory a");
    let b = connect("memory://round-trip").await.expect("memory b");
    let alone = connect("memory://").await.expect("memory alone");
    let guard = AsyncLock::with_backend("x", &a)
        .acquire()
        .await
        .expect("acquire");
    assert!(
        AsyncLock::with_backend("x", &b)
            .try_acquire()
            .await
            .expect("try b")
            .is_none(),
        "the same name shares the locks"
    );
    let other = AsyncLock::with_backend("x", &alone)
        .try_acquire()
        .await
        .expect("try alone");
    assert!(other.is_some(), "memory:// is a backend of its own");
    if let Some(g) = other {
        g.release().await.expect("release other");
    }
    let token = guard.token();
    guard.release().await.expect("release");
    let again = AsyncLock::with_backend("x", &b)
        .acquire()
        .await
        .expect("acquire b");
    assert!(again.token() > token);
    again.release().await.expect("release b");
}

#[test]
fn memory_blocking_round_trip() {
    use shylock_core::Lock;
    let a = connect_blocking("memory://blocking-round-trip").expect("a");
    let b = connect_blocking_with(
        "memory://blocking-round-trip?shylock.collection=ignored",
        &ConnectOptions::new().driver(Driver::Sync),
    )
    .expect("b");
    let guard = Lock::with_backend("y", &a).acquire().expect("acquire");
    assert!(
        Lock::with_backend("y", &b)
            .try_acquire()
            .expect("try")
            .is_none()
    );
    guard.release().expect("release");
}

#[test]
fn features_that_are_off_give_a_typed_error() {
    let check = |url: &str, driver: Driver, feature: &str| {
        let e = BackendUrl::parse(url)
            .expect("a good URL")
            .connect_blocking(&ConnectOptions::new().driver(driver))
            .expect_err("feature off");
        match &e {
            ConnectError::FeatureDisabled { feature: f, .. } => {
                assert_eq!(*f, feature, "{e}");
            }
            other => panic!("{url}: {other:?}"),
        }
        assert!(e.to_string().contains(feature), "{e}");
    };
    if !cfg!(feature = "mongo-async") {
        check("mongodb://127.0.0.1:1/", Driver::Async, "mongo-async");
    }
    if !cfg!(feature = "mongo-sync") {
        check("mongodb://127.0.0.1:1/", Driver::Sync, "mongo-sync");
    }
    if !cfg!(any(feature = "mongo-async", feature = "mongo-sync")) {
        check(
            "mongodb://127.0.0.1:1/",
            Driver::Auto,
            "mongo-async` or `mongo-sync",
        );
    }
    if !cfg!(feature = "arango-async") {
        check("http://127.0.0.1:1", Driver::Async, "arango-async");
    }
    if !cfg!(feature = "arango-sync") {
        check("http://127.0.0.1:1", Driver::Sync, "arango-sync");
    }
    if !cfg!(any(feature = "arango-async", feature = "arango-sync")) {
        check(
            "http://127.0.0.1:1",
            Driver::Auto,
            "arango-async` or `arango-sync",
        );
    }
    // The pick itself, whatever this build has.
    let pick = |driver, prefer, have| {
        pick("X", driver, prefer, have, ("a", "s", "either")).map_err(|e| e.to_string())
    };
    assert_eq!(pick(Driver::Auto, true, (true, true)), Ok(true));
    assert_eq!(pick(Driver::Auto, false, (true, true)), Ok(false));
    assert_eq!(pick(Driver::Auto, false, (true, false)), Ok(true));
    assert_eq!(pick(Driver::Auto, true, (false, true)), Ok(false));
    assert_eq!(pick(Driver::Sync, true, (true, true)), Ok(false));
    assert!(pick(Driver::Sync, true, (true, false)).is_err_and(|e| e.contains("`s`")));
    assert!(pick(Driver::Async, true, (false, true)).is_err_and(|e| e.contains("`a`")));
    assert!(pick(Driver::Auto, true, (false, false)).is_err_and(|e| e.contains("`either`")));
}

#[test]
fn url_parameters_and_options_merge() {
    let url = BackendUrl::parse(
        "http://u:pw@127.0.0.1:1/?shylock.database=d&shylock.collection=c&shylock.request_timeout_ms=250&shylock.prepare=false",
    )
    .expect("url");
    let s = Settings::new(&url, &ConnectOptions::new().collection("mine").user("v"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(s.database.as_deref(), Some("d"));
    assert_eq!(s.collection.as_deref(), Some("mine"));
    assert_eq!(s.user.as_deref(), Some("v"));
    assert_eq!(s.password.as_deref(), Some("pw"));
    assert_eq!(s.request_timeout, Some(Duration::from_millis(250)));
    assert!(!s.prepare && !s.allow_non_atomic_server);
    let s = Settings::new(&url, &ConnectOptions::new().password("other"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(s.password.as_deref(), Some("other"));
    assert_eq!(s.user.as_deref(), Some("u"));
}

/// A server that refuses the connection: the errors are typed and show
/// no password (nothing listens on port 1 of the loopback).
#[cfg(any(feature = "mongo-async", feature = "arango-async"))]
#[tokio::test]
async fn unreachable_servers_fail_without_showing_the_password() {
    let options = ConnectOptions::new().connect_timeout(Duration::from_millis(300));
    let mut urls = Vec::new();
    if cfg!(feature = "mongo-async") {
        urls.push("mongodb://user:hunter2@127.0.0.1:1/?shylock.prepare=false");
        urls.push("mongodb://user:hunter2@127.0.0.1:1/");
    }
    if cfg!(feature = "arango-async") {
        urls.push("http://root:hunter2@127.0.0.1:1");
    }
    for url in urls {
        let e = connect_with(url, &options).await.expect_err(url);
        assert!(matches!(e, ConnectError::Backend(_)), "{url}: {e:?}");
        assert!(!e.to_string().contains("hunter2"), "{e}");
        assert!(!format!("{e:?}").contains("hunter2"), "{e:?}");
        assert!(!format!("{e:#?}").contains("hunter2"), "{e:#?}");
    }
}

#[cfg(any(feature = "mongo-async", feature = "mongo-sync"))]
#[test]
fn a_mongodb_password_needs_a_user() {
    let e = connect_blocking_with(
        "mongodb://127.0.0.1:1/",
        &ConnectOptions::new().password("hunter2"),
    )
    .expect_err("no user");
    assert!(matches!(e, ConnectError::BadOptions { .. }), "{e:?}");
    assert!(!e.to_string().contains("hunter2"), "{e}");
}

/// Issue 23 item 10: the options' password is in the connection string
/// when the driver checks it, so `authMechanism=PLAIN` (which refuses a
/// user without a password) takes it: the connect is tried and fails as
/// unreachable, not as a bad connection string.
#[cfg(feature = "mongo-async")]
#[tokio::test]
async fn a_mongodb_password_from_the_options_works_with_plain() {
    let options = ConnectOptions::new()
        .password("hunter2/:@?")
        .connect_timeout(Duration::from_millis(300));
    let url = "mongodb://alice@127.0.0.1:1/?authMechanism=PLAIN&authSource=$external";
    let e = connect_with(url, &options).await.expect_err("unreachable");
    let ConnectError::Backend(backend) = &e else {
        panic!("{e:?}");
    };
    // Refused port: `Unavailable`, or `Timeout` when the 300 ms ran out
    // first on a busy machine; never a refused connection string.
    assert!(
        matches!(
            backend.backend_kind(),
            Some(
                shylock_core::BackendErrorKind::Unavailable
                    | shylock_core::BackendErrorKind::Timeout
            )
        ),
        "{e}"
    );
    assert!(!e.to_string().contains("hunter2"), "{e}");
}
