//! Typed errors: bad collection names (refused before any request), wrong
//! credentials, missing database, server down or slow (within the deadline).

use std::time::{Duration, Instant};

use shylock_arango::{ArangoBackend, ArangoOptions};
use shylock_core::BackendErrorKind;
use shylock_core::backend::{AcquireRequest, AsyncBackend};
use shylock_core::{LockName, OwnerId, Timestamp};

use crate::support::emulator::Emulator;
use crate::support::target::{
    EMU_DB, EMU_PASSWORD, EMU_USER, dead_url, emulated, target, unique_collection,
};

const BAD_NAMES: &[&str] = &[
    "", "_system", "1abc", "-x", "a b", "a/b", "a.b", "lås", "x;DROP",
];

#[tokio::test]
async fn bad_collection_names_are_refused_before_any_request() {
    let t = emulated();
    let emu = t.emu();
    let db = t.db().await;
    let long = "a".repeat(257);
    for bad in BAD_NAMES.iter().copied().chain([long.as_str()]) {
        emu.clear_requests();
        let err = ArangoBackend::create(&db, bad).await.unwrap_err();
        assert_eq!(
            err.backend_kind().expect("a backend error"),
            BackendErrorKind::InvalidConfig,
            "{bad:?}: {err}"
        );
        let err = ArangoBackend::connect_with(
            &t.url,
            &t.user,
            &t.password,
            &t.db,
            ArangoOptions::new().collection(bad),
        )
        .await
        .unwrap_err();
        assert_eq!(
            err.backend_kind().expect("a backend error"),
            BackendErrorKind::InvalidConfig,
            "{bad:?}: {err}"
        );
        assert!(emu.requests().is_empty(), "{bad:?}: {:?}", emu.requests());
    }
}

#[tokio::test]
async fn wrong_password_is_unauthorized() {
    let t = target();
    let err = ArangoBackend::connect(&t.url, &t.user, "definitely-not-the-password", &t.db)
        .await
        .unwrap_err();
    assert_eq!(
        err.backend_kind(),
        Some(BackendErrorKind::Unauthorized),
        "{err}"
    );
}

#[tokio::test]
async fn missing_database_is_invalid_config() {
    let t = target();
    let err = ArangoBackend::connect(&t.url, &t.user, &t.password, "no_such_database_shylock")
        .await
        .unwrap_err();
    assert_eq!(
        err.backend_kind(),
        Some(BackendErrorKind::InvalidConfig),
        "{err}"
    );
}

/// The backend's own requests map 1228 to InvalidConfig too (database
/// dropped after the backend was made), and 401 to Unauthorized.
#[tokio::test]
async fn backend_requests_map_server_errors() {
    let t = emulated();
    let emu = t.emu();
    let db = t.db().await;
    let b = ArangoBackend::create(&db, &unique_collection("e"))
        .await
        .unwrap();
    let name = LockName::new("e").unwrap();
    let owner = OwnerId::random();
    let req = AcquireRequest {
        name: &name,
        owner: &owner,
        lease: Duration::from_secs(5),
        now: Timestamp::EPOCH,
        deadline: Some(Instant::now() + Duration::from_secs(5)),
    };
    emu.inject_cursor_error(503, 503, "service unavailable", 1);
    let err = b.try_acquire(req).await.unwrap_err();
    assert_eq!(err.kind(), BackendErrorKind::Unavailable, "{err}");
    emu.inject_cursor_error(401, 11, "not authorized to execute this request", 1);
    let err = b.try_acquire(req).await.unwrap_err();
    assert_eq!(err.kind(), BackendErrorKind::Unauthorized, "{err}");
    emu.inject_cursor_error(500, 4, "internal error", 1);
    let err = b.try_acquire(req).await.unwrap_err();
    assert_eq!(err.kind(), BackendErrorKind::Unexpected, "{err}");
    emu.drop_database(EMU_DB);
    let err = b.try_acquire(req).await.unwrap_err();
    assert_eq!(err.kind(), BackendErrorKind::InvalidConfig, "{err}");
    assert!(err.message().contains("1228"), "{err}");
}

#[tokio::test]
async fn server_down_is_unavailable_at_once() {
    // Connecting to a port where nothing listens.
    let started = Instant::now();
    let err = ArangoBackend::connect(&dead_url(), "root", "", "db")
        .await
        .unwrap_err();
    assert_eq!(
        err.backend_kind(),
        Some(BackendErrorKind::Unavailable),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));

    // A backend whose server went away.
    let emu = Emulator::start(EMU_USER, EMU_PASSWORD, &[EMU_DB]);
    let conn = shylock_arango::Connection::establish_basic_auth(&emu.url(), EMU_USER, EMU_PASSWORD)
        .await
        .unwrap();
    let db = conn.db(EMU_DB).await.unwrap();
    let b = ArangoBackend::create(&db, "down").await.unwrap();
    drop(emu);
    let name = LockName::new("down").unwrap();
    let owner = OwnerId::random();
    let started = Instant::now();
    let err = b
        .try_acquire(AcquireRequest {
            name: &name,
            owner: &owner,
            lease: Duration::from_secs(5),
            now: Timestamp::EPOCH,
            deadline: Some(Instant::now() + Duration::from_secs(5)),
        })
        .await
        .unwrap_err();
    assert!(matches!(err.kind(), BackendErrorKind::Unavailable), "{err}");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(b.server_time(None).await.unwrap_err().is_transient());
}

#[tokio::test]
async fn slow_server_times_out_within_the_deadline() {
    let t = emulated();
    let emu = t.emu();
    let db = t.db().await;
    let b = ArangoBackend::create(&db, &unique_collection("s"))
        .await
        .unwrap();
    let name = LockName::new("slow").unwrap();
    let owner = OwnerId::random();

    // Slow but within the deadline: fine.
    emu.set_delay(Duration::from_millis(150));
    let req = |deadline| AcquireRequest {
        name: &name,
        owner: &owner,
        lease: Duration::from_secs(5),
        now: Timestamp::EPOCH,
        deadline: Some(deadline),
    };
    b.try_acquire(req(Instant::now() + Duration::from_secs(3)))
        .await
        .unwrap();

    // Slower than the deadline: Timeout, by the deadline.
    for limit in [Duration::from_millis(50), Duration::from_millis(400)] {
        emu.set_delay(Duration::ZERO);
        emu.set_hang(true);
        let started = Instant::now();
        let err = b
            .try_acquire(req(Instant::now() + limit))
            .await
            .unwrap_err();
        let took = started.elapsed();
        assert_eq!(err.kind(), BackendErrorKind::Timeout, "{err}");
        assert!(
            took >= limit.saturating_sub(Duration::from_millis(5)),
            "{took:?}"
        );
        assert!(
            took < limit + Duration::from_millis(300),
            "{took:?} for {limit:?}"
        );
    }
    // A deadline already passed: no request at all.
    emu.set_hang(false);
    emu.clear_requests();
    let err = b
        .try_acquire(req(Instant::now() - Duration::from_millis(1)))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), BackendErrorKind::Timeout);
    assert!(emu.requests().is_empty());
}

#[tokio::test]
async fn create_on_a_hanging_server_times_out() {
    let t = emulated();
    let emu = t.emu();
    let db = t.db().await;
    emu.set_hang(true);
    let started = Instant::now();
    let err = ArangoBackend::create_with(
        &db,
        ArangoOptions::new()
            .collection("hang")
            .request_timeout(Duration::from_millis(300)),
    )
    .await
    .unwrap_err();
    assert_eq!(err.backend_kind(), Some(BackendErrorKind::Timeout), "{err}");
    assert!(started.elapsed() < Duration::from_secs(2));
}
