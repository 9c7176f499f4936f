//! Issue 10, "ArangoDB as it is deployed": credentials that must never be
//! printed, JWTs that expire, least-privilege users, crashes, timeouts that
//! hide a grant, error kinds, and the emulator's fidelity on each.

use std::time::Duration;

use base64::Engine as _;
use reqwest::Method;
use serde_json::json;
use shylock_arango::{ArangoBackend, ArangoOptions};
use shylock_core::backend::AcquireOutcome;
use shylock_core::{AsyncLock, Backend, BackendErrorKind, LockName, OwnerId};

use crate::backend_async::{acquire, attempt, granted, release, renew};
use crate::support::emulator::Level;
use crate::support::target::{EMU_DB, emulated, unique_collection};

const LONG: Duration = Duration::from_secs(60);

/// `connect_with` as the target's (root-like) user.
async fn connect(t: &crate::support::target::Target, options: ArangoOptions) -> ArangoBackend {
    ArangoBackend::connect_with(&t.url, &t.user, &t.password, &t.db, options)
        .await
        .unwrap()
}

/// Item 0: no public type built with credentials shows the password, its
/// base64 (with or without padding) or a JWT in `Debug` or `Display`.
#[tokio::test]
async fn formatting_never_shows_credentials() {
    let t = emulated();
    let emu = t.emu();
    let coll = unique_collection("fmt");
    let secrets = |emu: &crate::support::emulator::Emulator| {
        let pair = format!("{}:{}", t.user, t.password);
        let mut s = vec![
            t.password.clone(),
            base64::engine::general_purpose::STANDARD.encode(&pair),
            base64::engine::general_purpose::STANDARD_NO_PAD.encode(&pair),
        ];
        s.extend(emu.issued_tokens());
        s
    };
    let mut shown = Vec::new();
    let options = ArangoOptions::new()
        .collection(&coll)
        .credentials(&t.user, &t.password);
    shown.push(format!("{options:?}"));
    let b = ArangoBackend::connect_with(&t.url, &t.user, &t.password, &t.db, options.clone())
        .await
        .unwrap();
    shown.push(format!("{b:?}"));
    shown.push(format!("{:?}", Backend::from(b.clone())));
    let jwt_db = arangors_jwt_db(&t).await;
    let b = ArangoBackend::create_with(&jwt_db, options.clone())
        .await
        .unwrap();
    shown.push(format!("{b:?}"));
    let basic_db = t.db().await;
    let b = ArangoBackend::new(&basic_db, options.clone()).unwrap();
    shown.push(format!("{b:?}"));
    let err = ArangoBackend::connect(&t.url, &t.user, "wrong-password-xyz", &t.db)
        .await
        .unwrap_err();
    shown.push(format!("{err:?} {err}"));
    // A request refused with 401 once the token expired (no credentials).
    let b = ArangoBackend::create(&jwt_db, &coll).await.unwrap();
    emu.advance_clock(2 * 3_600_000);
    let name = LockName::new("fmt").unwrap();
    let e = attempt(&b, &name, &OwnerId::random(), LONG)
        .await
        .unwrap_err();
    shown.push(format!("{e:?} {e}"));
    #[cfg(feature = "sync")]
    {
        let (url, user, password, db) = (
            t.url.clone(),
            t.user.clone(),
            t.password.clone(),
            t.db.clone(),
        );
        let options2 = options.clone();
        let texts = tokio::task::spawn_blocking(move || {
            let mut shown = Vec::new();
            let b = shylock_arango::sync::ArangoBackend::connect_with(
                &url, &user, &password, &db, options2,
            )
            .unwrap();
            shown.push(format!("{b:?}"));
            shown.push(format!("{:?}", Backend::from(b)));
            let e = shylock_arango::sync::ArangoBackend::connect(&url, &user, "wrong-pw-xyz", &db)
                .unwrap_err();
            shown.push(format!("{e:?} {e}"));
            shown
        })
        .await
        .unwrap();
        shown.extend(texts);
        let b = shylock_arango::sync::ArangoBackend::create_with(&jwt_db, options.clone()).unwrap();
        shown.push(format!("{b:?}"));
    }
    let secrets = secrets(emu);
    assert!(
        secrets.len() >= 4,
        "the emulator issued no JWT: {secrets:?}"
    );
    for text in &shown {
        for secret in &secrets {
            assert!(
                !text.contains(secret.as_str()),
                "{secret:?} shown in {text}"
            );
        }
    }
}

async fn arangors_jwt_db(t: &crate::support::target::Target) -> shylock_arango::Database {
    shylock_arango::Connection::establish_jwt(&t.url, &t.user, &t.password)
        .await
        .unwrap()
        .db(&t.db)
        .await
        .unwrap()
}

/// Item 1: a backend made from a JWT handle keeps working past several
/// token lifetimes when it has the credentials to log in again.
#[tokio::test]
async fn jwt_backend_outlives_its_tokens() {
    let t = emulated();
    let emu = t.emu();
    let coll = unique_collection("jwt");
    let db = arangors_jwt_db(&t).await;
    let b = ArangoBackend::create_with(
        &db,
        ArangoOptions::new()
            .collection(&coll)
            .credentials(&t.user, &t.password),
    )
    .await
    .unwrap();
    let name = LockName::new("jwt").unwrap();
    for _ in 0..4 {
        // A new owner per acquisition, as the core does (a released owner is
        // never granted again).
        let owner = OwnerId::random();
        granted(acquire(&b, &name, &owner, Duration::from_secs(600)).await);
        // Past the token's one-hour lifetime (on the server's clock).
        emu.advance_clock(3_600_000 + 1_000);
        granted(acquire(&b, &name, &owner, Duration::from_secs(600)).await);
        release(&b, &name, &owner).await;
    }
    assert!(emu.logins() >= 5, "logins: {}", emu.logins());
    // Without credentials the backend says what happened.
    let b = ArangoBackend::create(&db, &coll).await.unwrap_err();
    assert_eq!(
        b.backend_kind(),
        Some(BackendErrorKind::Unauthorized),
        "{b}"
    );
    assert!(b.to_string().contains("expired"), "{b}");
}

/// Item 2: a user with only read/write access on an existing collection
/// (database level "Access") can use it: `create` looks before it creates,
/// and `new` does no set-up at all.
#[tokio::test]
async fn least_privilege_user_uses_an_existing_collection() {
    let t = emulated();
    let emu = t.emu();
    let coll = unique_collection("lp");
    // The administrator's set-up.
    connect(&t, ArangoOptions::new().collection(&coll)).await;
    emu.add_user("app", "app-secret");
    emu.grant_database("app", EMU_DB, Level::Ro);
    emu.grant_collection("app", EMU_DB, &coll, Level::Rw);
    emu.clear_requests();
    let b = ArangoBackend::connect_with(
        &t.url,
        "app",
        "app-secret",
        &t.db,
        ArangoOptions::new().collection(&coll),
    )
    .await
    .unwrap();
    assert!(
        emu.requests()
            .iter()
            .all(|r| r.method != "POST" || r.path.ends_with("/_api/cursor")),
        "{:?}",
        emu.requests()
    );
    let name = LockName::new("lp").unwrap();
    let owner = OwnerId::random();
    granted(acquire(&b, &name, &owner, LONG).await);
    release(&b, &name, &owner).await;

    // No set-up at all: no request until the first lock operation.
    let db = shylock_arango::Connection::establish_basic_auth(&t.url, "app", "app-secret")
        .await
        .unwrap()
        .db(&t.db)
        .await
        .unwrap();
    emu.clear_requests();
    let b = ArangoBackend::new(&db, ArangoOptions::new().collection(&coll)).unwrap();
    assert!(emu.requests().is_empty(), "{:?}", emu.requests());
    granted(acquire(&b, &name, &OwnerId::random(), LONG).await);

    // A missing collection that the user may not create: Unauthorized,
    // saying what an administrator must do.
    let err = ArangoBackend::connect_with(
        &t.url,
        "app",
        "app-secret",
        &t.db,
        ArangoOptions::new().collection("not_there_yet"),
    )
    .await
    .unwrap_err();
    assert_eq!(
        err.backend_kind(),
        Some(BackendErrorKind::Unauthorized),
        "{err}"
    );
    // A read-only user cannot take locks: the server answers 403 / 1004
    // `read only: <collection> [exclusive]` (not 11), a permanent
    // permission error: Unauthorized, not the transient read-only mode
    // (issue 24, item 2; see issue24::read_only_user_is_unauthorized_not_unavailable).
    emu.grant_collection("app", EMU_DB, &coll, Level::Ro);
    let err = attempt(&b, &name, &owner, LONG).await.unwrap_err();
    assert_eq!(err.kind(), BackendErrorKind::Unauthorized, "{err}");
    assert!(!err.is_transient(), "{err}");
    assert!(
        err.message().contains("errorNum 1004") && err.message().contains("[exclusive]"),
        "{err}"
    );
}

/// Item 3: after a server crash, a grant the client already has is not
/// handed to another owner (lock writes wait for the disk by default).
#[tokio::test]
async fn crash_after_a_grant_never_grants_the_same_token_twice() {
    let t = emulated();
    let emu = t.emu();
    let coll = unique_collection("crash");
    let b = connect(&t, ArangoOptions::new().collection(&coll)).await;
    let name = LockName::new("crash").unwrap();
    let (a, c) = (OwnerId::random(), OwnerId::random());
    let first = granted(acquire(&b, &name, &a, LONG).await);
    emu.crash();
    match acquire(&b, &name, &c, LONG).await {
        AcquireOutcome::Busy { .. } => {}
        AcquireOutcome::Acquired(g) => panic!(
            "after the crash another owner got {:?} while {:?} is held",
            g.token, first.token
        ),
    }
    // Renewals and releases are synced too.
    renew(&b, &name, &a, LONG).await;
    release(&b, &name, &a).await;
    emu.crash();
    let next = granted(acquire(&b, &name, &c, LONG).await);
    assert!(next.token > first.token);

    // Turned off, a crash loses the unsynced grant (what the docs warn of).
    let coll2 = unique_collection("crash");
    let b = connect(
        &t,
        ArangoOptions::new().collection(&coll2).wait_for_sync(false),
    )
    .await;
    granted(acquire(&b, &name, &a, LONG).await);
    assert_eq!(emu.crash(), 1);
    granted(acquire(&b, &name, &c, LONG).await);
}

/// Item 4: a missing database for a user who may not see every database
/// is answered 401 / 11; the error names both causes.
#[tokio::test]
async fn missing_database_for_a_non_root_user_names_both_causes() {
    let t = emulated();
    let emu = t.emu();
    emu.add_user("app", "app-secret");
    emu.grant_database("app", EMU_DB, Level::Ro);
    let (status, _, body) = t
        .raw_as(
            "app",
            "app-secret",
            Method::GET,
            "/_db/nope_db/_api/database/current",
            None,
        )
        .await;
    assert_eq!(
        (status, body["errorNum"].as_i64()),
        (401, Some(11)),
        "{body}"
    );
    let err = ArangoBackend::connect(&t.url, "app", "app-secret", "nope_db")
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("password") && text.contains("does not exist"),
        "{text}"
    );
    // For root, the database is plainly missing: see
    // errors::missing_database_is_invalid_config.
}

/// Item 5: an existing TTL index with another `expireAfter` is adopted when
/// at least the minimum grace, refused otherwise.
#[tokio::test]
async fn existing_ttl_index_grace_is_adopted_or_refused() {
    let t = emulated();
    for (grace, ok) in [(7200, true), (5, false)] {
        let coll = unique_collection("ttl");
        t.create_collection(&coll).await;
        let (s, _, _) = t
            .raw(
                Method::POST,
                &format!("/_db/{}/_api/index?collection={coll}", t.db),
                Some(json!({ "type": "ttl", "fields": ["expiresAt"], "expireAfter": grace })),
            )
            .await;
        assert_eq!(s, 201);
        let result = ArangoBackend::connect_with(
            &t.url,
            &t.user,
            &t.password,
            &t.db,
            ArangoOptions::new().collection(&coll),
        )
        .await;
        match (result, ok) {
            (Ok(b), true) => assert_eq!(b.ttl_grace(), Duration::from_secs(7200)),
            (Err(e), false) => {
                assert_eq!(
                    e.backend_kind(),
                    Some(BackendErrorKind::InvalidConfig),
                    "{e}"
                );
                assert!(e.to_string().contains("expireAfter"), "{e}");
            }
            (Ok(_), false) => panic!("a 5 s TTL grace was accepted"),
            (Err(e), true) => panic!("{e}"),
        }
    }
}

/// Item 6: the server commits a grant but the answer never arrives; the
/// acquisition times out and leaves no holder behind.
#[tokio::test]
async fn timed_out_acquire_leaves_no_holder_behind() {
    let t = emulated();
    let emu = t.emu();
    let coll = unique_collection("late");
    let b = connect(&t, ArangoOptions::new().collection(&coll)).await;
    let backend = Backend::from(b.clone());
    let lock = AsyncLock::with_backend("late", &backend).lease(LONG);
    emu.set_commit_then_hang(true);
    let err = lock
        .acquire_timeout(Duration::from_secs(1))
        .await
        .unwrap_err();
    assert!(matches!(err, shylock_core::Error::Timeout { .. }), "{err}");
    emu.set_commit_then_hang(false);
    // The grant was committed by the server ...
    let key = shylock_arango::lock_key("late");
    emu.document(EMU_DB, &coll, &key)
        .expect("the server committed the grant");
    // ... and is released by the acquisition that gave up.
    assert!(backend.settle(Duration::from_secs(30)).await);
    assert!(
        lock.inspect().await.unwrap().is_none(),
        "{:?}",
        emu.document(EMU_DB, &coll, &key)
    );
    let other = AsyncLock::with_backend("late", &backend).lease(LONG);
    let g = other.try_acquire().await.unwrap().expect("free");
    g.release().await.unwrap();
}

/// Item 7: read-only mode (403 / 1004), lock timeout (500 / 18) and a killed
/// query (410 / 1500) are transient: try again later.
#[tokio::test]
async fn read_only_lock_timeout_and_killed_query_are_transient() {
    let t = emulated();
    let emu = t.emu();
    let coll = unique_collection("kinds");
    let b = connect(&t, ArangoOptions::new().collection(&coll)).await;
    let name = LockName::new("kinds").unwrap();
    let owner = OwnerId::random();
    let try_once = || attempt(&b, &name, &owner, LONG);
    emu.set_read_only(true);
    let err = try_once().await.unwrap_err();
    assert_eq!(err.kind(), BackendErrorKind::Unavailable, "{err}");
    assert!(err.message().contains("1004"), "{err}");
    emu.set_read_only(false);
    emu.inject_cursor_error(500, 18, "lock timeout", 1);
    let err = try_once().await.unwrap_err();
    assert_eq!(err.kind(), BackendErrorKind::Unavailable, "{err}");
    emu.inject_cursor_error(410, 1500, "query killed", 1);
    let err = try_once().await.unwrap_err();
    assert_eq!(err.kind(), BackendErrorKind::Unavailable, "{err}");
    granted(try_once().await.unwrap());
}

/// Item 10: a sync user builds the sync backend from an arangors handle
/// made elsewhere (here on a runtime that is gone by the time the backend
/// is used), with any authentication: `create`, `create_with`, `new`.
#[cfg(feature = "sync")]
#[test]
fn sync_backend_from_an_existing_handle() {
    use shylock_core::Lock;
    let t = emulated();
    let coll = unique_collection("synch");
    let (basic, jwt) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async { (t.db().await, arangors_jwt_db(&t).await) });
    let b = shylock_arango::sync::ArangoBackend::create(&basic, &coll).unwrap();
    assert_eq!((b.collection(), b.database()), (coll.as_str(), EMU_DB));
    let backend = Backend::from(b);
    let g = Lock::with_backend("synch", &backend)
        .lease(LONG)
        .acquire()
        .unwrap();
    assert!(
        Lock::with_backend("synch", &backend)
            .try_acquire()
            .unwrap()
            .is_none()
    );
    g.release().unwrap();
    // A JWT handle with credentials outlives its token; `new` sends nothing.
    t.emu().clear_requests();
    let b = shylock_arango::sync::ArangoBackend::new(
        &jwt,
        ArangoOptions::new()
            .collection(&coll)
            .credentials(&t.user, &t.password),
    )
    .unwrap();
    assert!(t.emu().requests().is_empty());
    t.emu().advance_clock(3_600_000 + 1_000);
    let backend = Backend::from(b);
    let g = Lock::with_backend("synch", &backend)
        .lease(LONG)
        .acquire()
        .unwrap();
    g.release().unwrap();
}
