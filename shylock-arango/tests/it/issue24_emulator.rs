//! Issue 24, item 8: the emulator's divergences from the server that were
//! cheap to correct, each checked against the server's source. (Items 1
//! and 3 are in `issue24_clock.rs`.)

use reqwest::Method;
use serde_json::json;

use crate::support::emulator::Level;
use crate::support::target::{EMU_DB, emulated, unique_collection};

/// A raw request with a literal `Authorization` header (or none).
async fn with_authorization(
    url: &str,
    method: Method,
    path: &str,
    authorization: Option<&str>,
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value) {
    let mut req = reqwest::Client::new().request(method, format!("{url}{path}"));
    if let Some(a) = authorization {
        req = req.header("authorization", a);
    }
    if let Some(b) = body {
        req = req
            .header("content-type", "application/json")
            .body(b.to_string());
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)),
    )
}

/// RestAuthHandler: a body without a string `username` and `password` is
/// `badRequest()`, 400 / 400 "invalid JSON"; only wrong credentials are
/// 401. (Before: 401 / 401 for every case.)
#[tokio::test]
async fn open_auth_without_fields_is_a_bad_request() {
    let t = emulated();
    for body in [
        json!({}),
        json!({ "username": t.user }),
        json!({ "password": t.password }),
        json!({ "username": t.user, "password": 5 }),
        json!([]),
    ] {
        let (status, answer) = with_authorization(
            &t.url,
            Method::POST,
            "/_open/auth",
            None,
            Some(body.clone()),
        )
        .await;
        assert_eq!(
            (status, answer["errorNum"].as_i64()),
            (400, Some(400)),
            "{body} → {answer}"
        );
    }
    let (status, answer) = with_authorization(
        &t.url,
        Method::POST,
        "/_open/auth",
        None,
        Some(json!({ "username": t.user, "password": "wrong" })),
    )
    .await;
    assert_eq!((status, answer["errorNum"].as_i64()), (401, Some(401)));
}

/// The server matches the `Basic` and `Bearer` schemes case-insensitively
/// (`strncasecmp` in the comm task's authorization check). (Before:
/// `BASIC …` and `BEARER …` were 401.)
#[tokio::test]
async fn authorization_schemes_are_case_insensitive() {
    use base64::Engine as _;
    let t = emulated();
    let path = format!("/_db/{}/_api/version", t.db);
    let basic =
        base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", t.user, t.password));
    for scheme in ["Basic", "basic", "BASIC", "bAsIc"] {
        let (status, answer) = with_authorization(
            &t.url,
            Method::GET,
            &path,
            Some(&format!("{scheme} {basic}")),
            None,
        )
        .await;
        assert_eq!(status, 200, "{scheme}: {answer}");
    }
    let (_, answer) = with_authorization(
        &t.url,
        Method::POST,
        "/_open/auth",
        None,
        Some(json!({ "username": t.user, "password": t.password })),
    )
    .await;
    let jwt = answer["jwt"].as_str().unwrap().to_owned();
    for scheme in ["Bearer", "bearer", "BEARER"] {
        let (status, answer) = with_authorization(
            &t.url,
            Method::GET,
            &path,
            Some(&format!("{scheme} {jwt}")),
            None,
        )
        .await;
        assert_eq!(status, 200, "{scheme}: {answer}");
    }
}

/// `auth::User::databaseAuthLevel` / `collectionAuthLevel`
/// (arangod/Auth/User.cpp): without an explicit grant, the levels of the
/// `*` database and of `_system` apply, and a collection falls back to its
/// database's level and `*` collection level. (Before: a user with only
/// `*` or `_system` grants was refused, 403 / 11 or 401 / 11.)
#[tokio::test]
async fn permissions_fall_back_to_wildcards_and_system() {
    let t = emulated();
    let emu = t.emu();
    let coll = unique_collection("perm24");
    t.create_collection(&coll).await;
    let cursor = format!("/_db/{}/_api/cursor", t.db);
    let acquire = json!({
        "query": shylock_arango::aql::ACQUIRE,
        "bindVars": { "@collection": coll, "key": "n-x", "name": "x", "owner": "o", "leaseMs": 1000 },
    });
    let try_as = |user: &'static str| {
        let acquire = acquire.clone();
        let cursor = cursor.clone();
        let t = &t;
        async move {
            let (status, _, body) = t
                .raw_as(user, "pw", Method::POST, &cursor, Some(acquire))
                .await;
            (status, body["errorNum"].as_i64())
        }
    };

    // Read/write through the `*` database (its database level and its `*`
    // collection level).
    emu.add_user("star", "pw");
    emu.grant_database("star", "*", Level::Rw);
    assert_eq!(try_as("star").await, (201, None));

    // Through `_system`'s database level.
    emu.add_user("sys", "pw");
    emu.grant_database("sys", "_system", Level::Rw);
    assert_eq!(try_as("sys").await, (201, None));

    // The database's `*` collection level.
    emu.add_user("dbstar", "pw");
    emu.grant_database("dbstar", EMU_DB, Level::Ro);
    emu.grant_collection("dbstar", EMU_DB, "*", Level::Rw);
    assert_eq!(try_as("dbstar").await, (201, None));

    // An explicit collection grant wins over every fallback.
    emu.add_user("explicit", "pw");
    emu.grant_database("explicit", "*", Level::Rw);
    emu.grant_database("explicit", EMU_DB, Level::Rw);
    emu.grant_collection("explicit", EMU_DB, &coll, Level::Ro);
    assert_eq!(try_as("explicit").await, (403, Some(1004)));

    // An explicit database level wins over `*` and `_system`.
    emu.add_user("nodb", "pw");
    emu.grant_database("nodb", "*", Level::Rw);
    emu.grant_database("nodb", EMU_DB, Level::None);
    assert_eq!(try_as("nodb").await, (401, Some(11)));
}
