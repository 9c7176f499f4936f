//! Issue 24, "what a real server does that the emulator hides": each test
//! first checks that the emulator answers as the server does, then what the
//! backend makes of it.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::json;
use shylock_arango::{ArangoBackend, ArangoOptions};
use shylock_core::{AsyncLock, Backend, BackendErrorKind, LockName, OwnerId};

use crate::backend_async::{acquire, attempt, granted, release};
use crate::support::emulator::Level;
use crate::support::target::{EMU_DB, emulated, unique_collection};

const LONG: Duration = Duration::from_secs(60);

/// `connect_with` as the target's (root-like) user.
async fn connect(
    t: &crate::support::target::Target,
    options: ArangoOptions,
) -> Result<ArangoBackend, shylock_core::Error> {
    ArangoBackend::connect_with(&t.url, &t.user, &t.password, &t.db, options).await
}

/// Item 2: a user with Read Only access on the collection asks for it
/// exclusively: the server answers 403 / 1004 `read only: <collection>
/// [exclusive]` (TransactionState::checkCollectionPermission), a permanent
/// permission error, not the transient read-only mode or unmet write
/// concern that 1004 otherwise means.
#[tokio::test]
async fn read_only_user_is_unauthorized_not_unavailable() {
    let t = emulated();
    let emu = t.emu();
    let coll = unique_collection("ro24");
    connect(&t, ArangoOptions::new().collection(&coll))
        .await
        .unwrap();
    emu.add_user("reader", "reader-secret");
    emu.grant_database("reader", EMU_DB, Level::Ro);
    emu.grant_collection("reader", EMU_DB, &coll, Level::Ro);

    // The server's answer.
    let (status, _, body) = t
        .raw_as(
            "reader",
            "reader-secret",
            Method::POST,
            &format!("/_db/{}/_api/cursor", t.db),
            Some(json!({
                "query": shylock_arango::aql::ACQUIRE,
                "bindVars": { "@collection": coll, "key": "n-x", "name": "x", "owner": "o", "leaseMs": 1000 },
            })),
        )
        .await;
    assert_eq!(
        (status, body["errorNum"].as_i64()),
        (403, Some(1004)),
        "{body}"
    );
    let message = body["errorMessage"].as_str().unwrap_or("");
    assert_eq!(
        message,
        format!("AQL: read only: {coll} [exclusive] (while parsing)")
    );

    // The backend: Unauthorized, and the core gives up at once instead of
    // retrying until its deadline.
    let b = ArangoBackend::connect_with(
        &t.url,
        "reader",
        "reader-secret",
        &t.db,
        ArangoOptions::new().collection(&coll),
    )
    .await
    .unwrap();
    let name = LockName::new("ro24").unwrap();
    let err = attempt(&b, &name, &OwnerId::random(), LONG)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), BackendErrorKind::Unauthorized, "{err}");
    assert!(!err.is_transient(), "{err}");
    assert!(err.message().contains("Read Only"), "{err}");
    assert!(!err.message().contains("read-only mode"), "{err}");
    let backend = Backend::from(b);
    let started = Instant::now();
    let err = AsyncLock::with_backend("ro24", &backend)
        .lease(LONG)
        .acquire_timeout(Duration::from_secs(10))
        .await
        .unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "retried for {:?}: {err}",
        started.elapsed()
    );

    // The same permission error for a query without `exclusive: true`
    // names `[write]`.
    let admin = connect(&t, ArangoOptions::new().collection(&coll))
        .await
        .unwrap();
    emu.inject_cursor_error(
        403,
        1004,
        &format!("AQL: read only: {coll} [write] (while parsing)"),
        1,
    );
    let err = attempt(&admin, &name, &OwnerId::random(), LONG)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), BackendErrorKind::Unauthorized, "{err}");

    // 1004 without the permission suffix (read-only mode, a cluster's
    // unmet write concern) stays transient.
    emu.inject_cursor_error(
        403,
        1004,
        "AQL: read only: insufficient replicas for write concern (while executing)",
        1,
    );
    let err = attempt(&admin, &name, &OwnerId::random(), LONG)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), BackendErrorKind::Unavailable, "{err}");
    emu.inject_cursor_error(
        403,
        1004,
        "AQL: server is in read-only mode (while executing)",
        1,
    );
    let err = attempt(&admin, &name, &OwnerId::random(), LONG)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), BackendErrorKind::Unavailable, "{err}");
    assert!(err.message().contains("try again later"), "{err}");
}

/// Item 5: 500 / 28 (locked) and 500 / 29 (deadlock) are transient.
#[tokio::test]
async fn locked_and_deadlock_are_transient() {
    let t = emulated();
    let emu = t.emu();
    let coll = unique_collection("dl24");
    let b = connect(&t, ArangoOptions::new().collection(&coll))
        .await
        .unwrap();
    let name = LockName::new("dl24").unwrap();
    let owner = OwnerId::random();
    for (num, message) in [(28, "AQL: locked"), (29, "AQL: deadlock detected")] {
        emu.inject_cursor_error(500, num, message, 1);
        let (status, _, body) = t
            .raw(
                Method::POST,
                &format!("/_db/{}/_api/cursor", t.db),
                Some(json!({ "query": "RETURN 1" })),
            )
            .await;
        assert_eq!(
            (status, body["errorNum"].as_i64()),
            (500, Some(num)),
            "{body}"
        );
        emu.inject_cursor_error(500, num, message, 1);
        let err = attempt(&b, &name, &owner, LONG).await.unwrap_err();
        assert_eq!(err.kind(), BackendErrorKind::Unavailable, "{num}: {err}");
        assert!(err.is_transient(), "{err}");
    }
    granted(attempt(&b, &name, &owner, LONG).await.unwrap());
}

/// Item 6: two `create`s race with different TTL graces; the loser's index
/// creation is answered 400 / 10, and it adopts the winner's index (or
/// refuses it, as for an index found at once, when below the minimum). The
/// index is built in the background.
#[tokio::test]
async fn racing_creates_adopt_the_winning_ttl_index() {
    let t = emulated();
    let emu = t.emu();

    // The server's answer to the loser.
    let coll = unique_collection("race24");
    t.create_collection(&coll).await;
    emu.race_next_index(json!(7200));
    let (status, _, body) = t
        .raw(
            Method::POST,
            &format!("/_db/{}/_api/index?collection={coll}", t.db),
            Some(json!({ "type": "ttl", "fields": ["expiresAt"], "expireAfter": 3600 })),
        )
        .await;
    assert_eq!(
        (status, body["errorNum"].as_i64()),
        (400, Some(10)),
        "{body}"
    );

    // The loser adopts a winner with a grace above the minimum.
    let coll = unique_collection("race24");
    emu.race_next_index(json!(7200));
    emu.clear_requests();
    let b = connect(
        &t,
        ArangoOptions::new()
            .collection(&coll)
            .ttl_grace(Duration::from_secs(3600)),
    )
    .await
    .unwrap();
    assert_eq!(b.ttl_grace(), Duration::from_secs(7200));
    let posted = emu
        .requests()
        .into_iter()
        .find(|r| r.method == "POST" && r.path.contains("/_api/index"))
        .expect("an index was created");
    assert_eq!(
        posted.body.as_ref().map(|b| &b["inBackground"]),
        Some(&json!(true)),
        "{posted:?}"
    );
    let name = LockName::new("race24").unwrap();
    let owner = OwnerId::random();
    granted(acquire(&b, &name, &owner, LONG).await);
    release(&b, &name, &owner).await;

    // ... and refuses one below the minimum, clearly.
    let coll = unique_collection("race24");
    emu.race_next_index(json!(5));
    let err = connect(&t, ArangoOptions::new().collection(&coll))
        .await
        .unwrap_err();
    assert_eq!(
        err.backend_kind(),
        Some(BackendErrorKind::InvalidConfig),
        "{err}"
    );
    assert!(err.to_string().contains("expireAfter 5"), "{err}");
}

/// Item 4: `create` refuses an existing collection that cannot hold the
/// locks: an edge collection, one without user keys, one sharded on other
/// keys. A document collection sharded on `_key` is accepted.
#[tokio::test]
async fn create_refuses_collections_that_cannot_hold_locks() {
    let t = emulated();
    let cases = [
        (json!({ "type": 3 }), Some("edge collection")),
        (
            json!({ "keyOptions": { "allowUserKeys": false } }),
            Some("allowUserKeys"),
        ),
        (json!({ "shardKeys": ["owner"] }), Some("shardKeys")),
        (json!({ "shardKeys": ["_key"] }), None),
        (json!({ "type": 2 }), None),
    ];
    for (spec, refused) in cases {
        let coll = unique_collection("shape24");
        let mut body = spec.clone();
        body["name"] = json!(coll);
        let (status, _, answer) = t
            .raw(
                Method::POST,
                &format!("/_db/{}/_api/collection", t.db),
                Some(body),
            )
            .await;
        assert_eq!(status, 200, "{answer}");
        // The server's answer.
        let (status, _, props) = t
            .raw(
                Method::GET,
                &format!("/_db/{}/_api/collection/{coll}/properties", t.db),
                None,
            )
            .await;
        assert_eq!(status, 200, "{props}");
        assert_eq!(props["name"], json!(coll));
        assert_eq!(props["type"], spec.get("type").cloned().unwrap_or(json!(2)));
        assert_eq!(
            props["keyOptions"]["allowUserKeys"],
            spec["keyOptions"]
                .get("allowUserKeys")
                .cloned()
                .unwrap_or(json!(true))
        );
        if let Some(keys) = spec.get("shardKeys") {
            assert_eq!(&props["shardKeys"], keys, "{props}");
        }
        let result = connect(&t, ArangoOptions::new().collection(&coll)).await;
        match (result, refused) {
            (Ok(b), None) => {
                let name = LockName::new("shape24").unwrap();
                let owner = OwnerId::random();
                granted(acquire(&b, &name, &owner, LONG).await);
                release(&b, &name, &owner).await;
            }
            (Err(e), Some(says)) => {
                assert_eq!(
                    e.backend_kind(),
                    Some(BackendErrorKind::InvalidConfig),
                    "{spec}: {e}"
                );
                assert!(e.to_string().contains(says), "{spec}: {e}");
                assert!(e.to_string().contains(&coll), "{spec}: {e}");
            }
            (Ok(_), Some(says)) => panic!("{spec}: accepted ({says})"),
            (Err(e), None) => panic!("{spec}: {e}"),
        }
    }
}
