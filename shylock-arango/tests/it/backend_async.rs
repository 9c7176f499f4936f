//! What is specific to the async backend: request counts, keys of names,
//! the record's `releasers`, `create`, TTL garbage collection, write
//! conflicts, foreign documents and races on the real queries. The
//! contract every backend keeps (one clause per test) is the core's
//! primitive conformance checks, run in conformance.rs; the helpers here
//! serve the other test modules too.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use shylock_arango::{ArangoBackend, ArangoOptions, lock_key};
use shylock_core::backend::{
    AcquireOutcome, AcquireRequest, AsyncBackend, ClockSource, ReleaseOutcome, ReleaseRequest,
    RenewOutcome, RenewRequest,
};
use shylock_core::{FencingToken, LockName, OwnerId, Timestamp};

use crate::support::target::{Target, emulated, target, unique_collection};

pub fn deadline() -> Option<Instant> {
    Some(Instant::now() + Duration::from_secs(10))
}

pub async fn backend(t: &Target) -> ArangoBackend {
    let db = t.db().await;
    ArangoBackend::create(&db, &unique_collection("t"))
        .await
        .unwrap()
}

/// One acquire attempt, its error kept.
pub async fn attempt(
    b: &ArangoBackend,
    name: &LockName,
    owner: &OwnerId,
    lease: Duration,
) -> Result<AcquireOutcome, shylock_core::BackendError> {
    b.try_acquire(AcquireRequest {
        name,
        owner,
        lease,
        now: Timestamp::EPOCH,
        deadline: deadline(),
    })
    .await
}

pub async fn acquire(
    b: &ArangoBackend,
    name: &LockName,
    owner: &OwnerId,
    lease: Duration,
) -> AcquireOutcome {
    attempt(b, name, owner, lease).await.unwrap()
}

pub async fn release(b: &ArangoBackend, name: &LockName, owner: &OwnerId) -> ReleaseOutcome {
    b.release(ReleaseRequest {
        name,
        owner,
        token: FencingToken(0),
        now: Timestamp::EPOCH,
        deadline: deadline(),
    })
    .await
    .unwrap()
}

pub async fn renew(
    b: &ArangoBackend,
    name: &LockName,
    owner: &OwnerId,
    lease: Duration,
) -> RenewOutcome {
    b.renew(RenewRequest {
        name,
        owner,
        token: FencingToken(0),
        lease,
        now: Timestamp::EPOCH,
        deadline: deadline(),
    })
    .await
    .unwrap()
}

pub fn granted(o: AcquireOutcome) -> shylock_core::backend::Grant {
    match o {
        AcquireOutcome::Acquired(g) => g,
        other => panic!("expected a grant, got {other:?}"),
    }
}

/// The clock is the server's, and the description names the backend.
#[tokio::test]
async fn clock_and_description() {
    let t = target();
    let b = backend(&t).await;
    assert_eq!(b.clock(), ClockSource::Server);
    assert!(b.describe().starts_with("arangodb "), "{}", b.describe());
    t.drop_collection(b.collection()).await;
}

/// The record keeps its last RELEASERS_REMEMBERED releasers (oldest
/// first), refused from then on; an owner beyond them is forgotten (granted
/// again: the bound is a documented choice). The queries' `-16` is the
/// core's number.
#[tokio::test]
async fn releasers_are_bounded() {
    use shylock_core::backend::RELEASERS_REMEMBERED;
    let slice = format!("SLICE(APPEND(releasers, [@owner]), -{RELEASERS_REMEMBERED})");
    for text in [
        shylock_arango::aql::RELEASE,
        shylock_arango::aql::RELEASE_NO_SYNC,
    ] {
        assert!(text.contains(&slice), "{text}");
    }
    let t = target();
    let b = backend(&t).await;
    let name = LockName::new("releasers").unwrap();
    let lease = Duration::from_secs(30);
    let owners: Vec<OwnerId> = (0..RELEASERS_REMEMBERED + 2)
        .map(|_| OwnerId::random())
        .collect();
    for o in &owners {
        granted(acquire(&b, &name, o, lease).await);
        assert_eq!(release(&b, &name, o).await, ReleaseOutcome::Released);
    }
    let kept = &owners[owners.len() - RELEASERS_REMEMBERED..];
    if let Some(emu) = &t.emu {
        let doc = emu
            .document(&t.db, b.collection(), &lock_key(name.as_str()))
            .expect("the record stays");
        let expected: Vec<&str> = kept.iter().map(OwnerId::as_str).collect();
        assert_eq!(doc["releasers"], serde_json::json!(expected), "{doc:?}");
    }
    for o in kept {
        assert!(matches!(
            acquire(&b, &name, o, lease).await,
            AcquireOutcome::Busy { .. }
        ));
    }
    granted(acquire(&b, &name, &owners[0], lease).await);
    assert_eq!(
        release(&b, &name, &owners[0]).await,
        ReleaseOutcome::Released
    );
    t.drop_collection(b.collection()).await;
}

/// Names of any length and content, with characters that keys refuse, map
/// to distinct valid keys, and the document keeps the original name. (That
/// each is a lock of its own is the core's
/// `names_of_any_content_and_length_are_distinct_locks` check.)
#[tokio::test]
async fn any_name_works_and_names_do_not_collide() {
    let t = target();
    let b = backend(&t).await;
    let names: Vec<String> = vec![
        "plain".into(),
        "Plain".into(),
        "with space".into(),
        "with%20space".into(),
        "slash/colon:question?hash#".into(),
        "%41".into(),
        "A".into(),
        "ünïcödé 🔒 名前".into(),
        "\u{0}nul and \t tab".into(),
        "x".repeat(252),
        "x".repeat(253),
        "é".repeat(512),
        "y".repeat(1024),
        format!("{}z", "y".repeat(1023)),
    ];
    let keys: BTreeSet<String> = names.iter().map(|n| lock_key(n)).collect();
    assert_eq!(keys.len(), names.len(), "two names share a key");
    for k in &keys {
        assert!(
            k.len() <= 254
                && k.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_-.@()+,=;$!*'%:".contains(&b)),
            "invalid key {k}"
        );
    }
    let a = OwnerId::random();
    for n in &names {
        let name = LockName::new(n.clone()).unwrap();
        granted(acquire(&b, &name, &a, Duration::from_secs(30)).await);
    }
    if let Some(emu) = &t.emu {
        // The original name is kept in the document.
        for n in &names {
            let doc = emu.document(&t.db, b.collection(), &lock_key(n)).unwrap();
            assert_eq!(doc["name"], serde_json::json!(n));
        }
    }
    t.drop_collection(b.collection()).await;
}

/// Exactly one HTTP request per uncontended acquire, renewal and release
/// (and per contended acquire answered Busy).
#[tokio::test]
async fn one_request_per_operation() {
    let t = emulated();
    let b = backend(&t).await;
    let emu = t.emu();
    let name = LockName::new("counted").unwrap();
    let (a, c) = (OwnerId::random(), OwnerId::random());
    let lease = Duration::from_secs(30);
    let cases: Vec<(&str, &str)> = vec![
        ("acquire", "acquire"),
        ("busy acquire", "acquire"),
        ("renew", "renew"),
        ("release", "release"),
        ("acquire after release", "acquire"),
    ];
    for (case, label) in cases {
        emu.clear_requests();
        match case {
            "acquire" => drop(granted(acquire(&b, &name, &a, lease).await)),
            "busy acquire" => assert!(matches!(
                acquire(&b, &name, &c, lease).await,
                AcquireOutcome::Busy { .. }
            )),
            "renew" => assert!(matches!(
                renew(&b, &name, &a, lease).await,
                RenewOutcome::Renewed { .. }
            )),
            "release" => assert_eq!(release(&b, &name, &a).await, ReleaseOutcome::Released),
            _ => drop(granted(acquire(&b, &name, &c, lease).await)),
        }
        let reqs = emu.requests();
        assert_eq!(reqs.len(), 1, "{case}: {reqs:?}");
        assert_eq!(reqs[0].method, "POST", "{case}");
        assert_eq!(reqs[0].path, format!("/_db/{}/_api/cursor", t.db), "{case}");
        assert_eq!(reqs[0].query, Some(label), "{case}");
    }
    emu.clear_requests();
    b.server_time(deadline()).await.unwrap();
    let reqs = emu.requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].path, format!("/_db/{}/_admin/time", t.db));
}

/// `create` looks before it creates (two reads; two more writes the first
/// time) and is idempotent and safe when many processes start at once.
#[tokio::test]
async fn create_is_idempotent_under_concurrent_starts() {
    let t = target();
    let db = Arc::new(t.db().await);
    let coll = unique_collection("c");
    if let Some(emu) = &t.emu {
        let requests = || -> Vec<String> {
            emu.requests()
                .into_iter()
                .map(|r| format!("{} {}", r.method, r.path))
                .collect()
        };
        emu.clear_requests();
        ArangoBackend::create(&db, &coll).await.unwrap();
        let (c, i) = (
            format!("/_db/{}/_api/collection", t.db),
            format!("/_db/{}/_api/index?collection={coll}", t.db),
        );
        assert_eq!(
            requests(),
            vec![
                format!("GET {c}/{coll}/properties"),
                format!("POST {c}"),
                format!("GET {i}"),
                format!("POST {i}"),
            ]
        );
        emu.clear_requests();
        ArangoBackend::create(&db, &coll).await.unwrap();
        assert_eq!(
            requests(),
            vec![format!("GET {c}/{coll}/properties"), format!("GET {i}")]
        );
    }
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let db = Arc::clone(&db);
        let coll = coll.clone();
        tasks.push(tokio::spawn(async move {
            ArangoBackend::create(&db, &coll).await
        }));
    }
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    if let Some(emu) = &t.emu {
        assert_eq!(
            emu.collections(&t.db)
                .iter()
                .filter(|c| **c == coll)
                .count(),
            1
        );
        let idx = emu.indexes(&t.db, &coll);
        assert_eq!(idx.len(), 1, "{idx:?}");
        assert_eq!(idx[0]["type"], "ttl");
        assert_eq!(idx[0]["fields"], serde_json::json!(["expiresAt"]));
        assert_eq!(idx[0]["expireAfter"], serde_json::json!(3600));
    }
    t.drop_collection(&coll).await;
}

/// A collection that already has another TTL index still works (expiry is
/// judged by the queries; only garbage collection changes).
#[tokio::test]
async fn foreign_ttl_index_is_tolerated() {
    let t = emulated();
    let db = t.db().await;
    let coll = unique_collection("f");
    let path = format!("/_db/{}/_api/collection", t.db);
    let (s, _, _) = t
        .raw(
            reqwest::Method::POST,
            &path,
            Some(serde_json::json!({ "name": coll })),
        )
        .await;
    assert_eq!(s, 200);
    let path = format!("/_db/{}/_api/index?collection={coll}", t.db);
    let body = serde_json::json!({ "type": "ttl", "fields": ["createdAt"], "expireAfter": 0 });
    let (s, _, _) = t.raw(reqwest::Method::POST, &path, Some(body)).await;
    assert_eq!(s, 201);
    let b = ArangoBackend::create(&db, &coll).await.unwrap();
    let name = LockName::new("x").unwrap();
    granted(acquire(&b, &name, &OwnerId::random(), Duration::from_secs(5)).await);
}

/// Tokens keep rising after the TTL index deleted a record (1 h grace).
#[tokio::test]
async fn tokens_rise_across_ttl_garbage_collection() {
    let t = emulated();
    let b = backend(&t).await;
    let emu = t.emu();
    let name = LockName::new("gc").unwrap();
    let a = OwnerId::random();
    let mut last = FencingToken(0);
    for _ in 0..5 {
        last = granted(acquire(&b, &name, &a, Duration::from_secs(1)).await).token;
    }
    assert_eq!(release(&b, &name, &a).await, ReleaseOutcome::Released);
    assert_eq!(emu.run_ttl(), 0, "collected before the grace period");
    emu.advance_clock(59 * 60 * 1000);
    assert_eq!(emu.run_ttl(), 0, "collected before the grace period");
    emu.advance_clock(2 * 60 * 1000);
    assert_eq!(emu.run_ttl(), 1);
    assert!(
        emu.document(&t.db, b.collection(), &lock_key("gc"))
            .is_none()
    );
    let g = granted(acquire(&b, &name, &OwnerId::random(), Duration::from_secs(1)).await);
    assert!(g.token > last, "{:?} after {:?}", g.token, last);
}

/// Write-write conflicts (1200) and unique constraint violations (1210)
/// make an operation re-read; after repeated conflicts acquire answers Busy
/// and renew/release give a transient error.
#[tokio::test]
async fn write_conflicts_are_retried() {
    let t = emulated();
    let b = backend(&t).await;
    let emu = t.emu();
    let name = LockName::new("conflicts").unwrap();
    let a = OwnerId::random();
    let lease = Duration::from_secs(30);

    emu.inject_cursor_error(409, 1200, "AQL: write-write conflict (while executing)", 1);
    emu.clear_requests();
    granted(acquire(&b, &name, &a, lease).await);
    assert_eq!(emu.requests().len(), 2);

    // 1 try + 3 retries, all conflicting.
    emu.inject_cursor_error(
        409,
        1210,
        "AQL: unique constraint violated (while executing)",
        4,
    );
    let c = OwnerId::random();
    assert_eq!(
        acquire(&b, &name, &c, lease).await,
        AcquireOutcome::Busy { expires_at: None }
    );

    emu.inject_cursor_error(409, 1200, "AQL: write-write conflict (while executing)", 4);
    let err = b
        .release(ReleaseRequest {
            name: &name,
            owner: &a,
            token: FencingToken(0),
            now: Timestamp::EPOCH,
            deadline: deadline(),
        })
        .await
        .unwrap_err();
    assert!(err.is_transient(), "{err}");
    // Nothing was changed; the owner still holds the lock and can release it.
    assert_eq!(release(&b, &name, &a).await, ReleaseOutcome::Released);
}

/// A record under a lock's key that holds another name (not written by
/// shylock) is reported, never overwritten.
#[tokio::test]
async fn foreign_document_under_a_key_is_unexpected() {
    let t = emulated();
    let b = backend(&t).await;
    let emu = t.emu();
    let mut doc = serde_json::Map::new();
    doc.insert("_key".into(), serde_json::json!(lock_key("mine")));
    doc.insert("name".into(), serde_json::json!("somebody else's"));
    emu.put_document(&t.db, b.collection(), doc.clone());
    let name = LockName::new("mine").unwrap();
    let err = b
        .try_acquire(AcquireRequest {
            name: &name,
            owner: &OwnerId::random(),
            lease: Duration::from_secs(5),
            now: Timestamp::EPOCH,
            deadline: deadline(),
        })
        .await
        .unwrap_err();
    assert_eq!(
        err.kind(),
        shylock_core::BackendErrorKind::Unexpected,
        "{err}"
    );
    assert_eq!(
        emu.document(&t.db, b.collection(), &lock_key("mine"))
            .unwrap()["name"],
        doc["name"]
    );
}

/// Many tasks race for one lock: never two holders at once, tokens of
/// successive grants strictly rise. (Against a real ArangoDB this checks the
/// atomicity of the queries under real concurrency.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_tasks_never_share_the_lock() {
    let t = target();
    let b = Arc::new(backend(&t).await);
    let holders = Arc::new(AtomicUsize::new(0));
    let grants = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (b, holders, grants) = (Arc::clone(&b), Arc::clone(&holders), Arc::clone(&grants));
        tasks.push(tokio::spawn(async move {
            let name = LockName::new("race").unwrap();
            let mut won = 0;
            let end = Instant::now() + Duration::from_secs(2);
            while Instant::now() < end {
                let owner = OwnerId::random();
                if let AcquireOutcome::Acquired(g) =
                    acquire(&b, &name, &owner, Duration::from_secs(30)).await
                {
                    assert_eq!(holders.fetch_add(1, Ordering::SeqCst), 0, "two holders");
                    grants.lock().unwrap().push(g.token);
                    tokio::time::sleep(Duration::from_millis(2)).await;
                    holders.fetch_sub(1, Ordering::SeqCst);
                    assert_eq!(release(&b, &name, &owner).await, ReleaseOutcome::Released);
                    won += 1;
                }
            }
            won
        }));
    }
    let mut total = 0;
    for task in tasks {
        total += task.await.unwrap();
    }
    let grants = grants.lock().unwrap().clone();
    assert!(total > 8, "only {total} grants");
    assert!(
        grants.windows(2).all(|w| w[1] > w[0]),
        "tokens not rising: {grants:?}"
    );
    t.drop_collection(b.collection()).await;
}

#[tokio::test]
async fn connect_convenience_and_options() {
    let t = target();
    let coll = unique_collection("o");
    let b = ArangoBackend::connect_with(
        &t.url,
        &t.user,
        &t.password,
        &t.db,
        ArangoOptions::new()
            .collection(&coll)
            .ttl_grace(Duration::from_secs(7200)),
    )
    .await
    .unwrap();
    assert_eq!(b.collection(), coll);
    assert_eq!(b.database(), t.db);
    assert_eq!(b.ttl_grace(), Duration::from_secs(7200));
    if let Some(emu) = &t.emu {
        assert_eq!(
            emu.indexes(&t.db, &coll)[0]["expireAfter"],
            serde_json::json!(7200)
        );
    }
    t.drop_collection(&coll).await;
}
