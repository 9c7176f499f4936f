//! Issue 23.3, on the emulator: records this library did not write. A
//! record held by `owner: 123` until ten minutes from now was Busy for ever;
//! a record with `epoch` 4102444800000 (year 2100) gave a token above those
//! of the record made after its deletion (tokens fell).

use std::time::Duration;

use serde_json::json;
use shylock_arango::{ArangoBackend, ArangoOptions, lock_key};
use shylock_core::{BackendErrorKind, LockName, OwnerId};

use crate::backend_async::{acquire, attempt, granted, release};
use crate::support::target::{EMU_DB, emulated, unique_collection};

const LONG: Duration = Duration::from_secs(60);

#[tokio::test]
async fn a_number_owner_is_an_error_naming_the_record_not_busy_for_ever() {
    let t = emulated();
    let emu = t.emu();
    let coll = unique_collection("i23owner");
    let b = ArangoBackend::connect_with(
        &t.url,
        &t.user,
        &t.password,
        &t.db,
        ArangoOptions::new().collection(&coll),
    )
    .await
    .unwrap();
    let n = LockName::new("owner-123").unwrap();
    let now_s = emu.now_ms() as f64 / 1000.0;
    emu.put_document(
        EMU_DB,
        &coll,
        json!({ "_key": lock_key(n.as_str()), "name": n.as_str(), "owner": 123, "epoch": 1,
                "seq": 1, "expiresAt": now_s + 600.0, "releasers": [] })
        .as_object()
        .unwrap()
        .clone(),
    );
    let err = attempt(&b, &n, &OwnerId::random(), LONG)
        .await
        .expect_err("an error, not Busy for ever");
    assert_eq!(err.kind(), BackendErrorKind::Unexpected, "{err}");
    assert!(
        err.to_string().contains("owner-123"),
        "names the lock: {err}"
    );
    assert!(
        err.to_string().contains("`owner` is 123"),
        "says what: {err}"
    );
}

#[tokio::test]
async fn a_future_epoch_never_feeds_a_token() {
    let t = emulated();
    let emu = t.emu();
    let coll = unique_collection("i23epoch");
    let b = ArangoBackend::connect_with(
        &t.url,
        &t.user,
        &t.password,
        &t.db,
        ArangoOptions::new().collection(&coll),
    )
    .await
    .unwrap();
    let n = LockName::new("future-epoch").unwrap();
    let a = OwnerId::random();
    let first = granted(acquire(&b, &n, &a, LONG).await);
    release(&b, &n, &a).await;
    let key = lock_key(n.as_str());
    let mut doc = emu.document(EMU_DB, &coll, &key).unwrap();
    doc.insert("epoch".into(), json!(4_102_444_800_000_i64));
    doc.insert("seq".into(), json!(3));
    emu.put_document(EMU_DB, &coll, doc);
    let got = attempt(&b, &n, &OwnerId::random(), LONG).await;
    let err = got.expect_err("no token from an epoch in year 2100");
    assert_eq!(err.kind(), BackendErrorKind::Unexpected, "{err}");
    assert!(
        err.to_string().contains("future-epoch"),
        "names the lock: {err}"
    );
    assert!(err.to_string().contains("`epoch`"), "says what: {err}");
    assert_eq!(
        emu.document(EMU_DB, &coll, &key).unwrap()["seq"],
        json!(3),
        "nothing written"
    );
    // Deleted by an operator: the next token is above every one granted.
    emu.remove_document(EMU_DB, &coll, &key);
    let after = granted(acquire(&b, &n, &OwnerId::random(), LONG).await);
    assert!(after.token > first.token, "{after:?} > {first:?}");
}
