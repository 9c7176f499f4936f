//! The emulator's AQL: it recognises exactly the backend's fixed query texts
//! (the library's own published constants) and executes them
//! natively. Anything else is answered as a parse error (errorNum 1501).

use serde_json::{Map, Value, json};

/// The queries the emulator knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Known {
    Acquire,
    Renew,
    Release,
    HandOver,
    Inspect,
    ForceRelease,
    List,
}

impl Known {
    /// Short name for the request log.
    pub fn label(self) -> &'static str {
        match self {
            Known::Acquire => "acquire",
            Known::Renew => "renew",
            Known::Release => "release",
            Known::HandOver => "hand over",
            Known::Inspect => "inspect",
            Known::ForceRelease => "force_release",
            Known::List => "list",
        }
    }

    /// Declared bind parameters (`@collection` is the collection parameter).
    pub fn bind_params(self) -> &'static [&'static str] {
        match self {
            Known::Acquire | Known::Renew => &["@collection", "key", "name", "owner", "leaseMs"],
            Known::Release => &["@collection", "key", "name", "owner"],
            Known::HandOver => &["@collection", "key", "name", "owner", "to", "leaseMs"],
            Known::Inspect => &["@collection", "key"],
            Known::ForceRelease => &["@collection", "key", "name", "by", "reason"],
            Known::List => &["@collection", "prefix", "after", "limit"],
        }
    }
}

// The backend's query texts, as `shylock_arango::aql` publishes them. The
// emulator keeps its own copy so that it does not depend on the crate it
// tests (which dev-depends on it: a cycle that could not be published);
// shylock-arango's test `emulator_knows_exactly_the_backends_queries` fails
// as soon as the two differ by one byte.
macro_rules! acquire {
    ($options:literal) => {
        concat!(
            r#"LET nowMs = DATE_NOW()
LET lockDoc = FIRST(FOR d IN @@collection FILTER d._key == @key LIMIT 1 RETURN d)
LET horizonMs = nowMs + 31622400000
LET isBad = lockDoc != null && (lockDoc.name != @name || !IS_NUMBER(lockDoc.epoch) || !IS_NUMBER(lockDoc.seq) || !IS_NUMBER(lockDoc.expiresAt) || !(lockDoc.owner == null || IS_STRING(lockDoc.owner)) || lockDoc.epoch > horizonMs || lockDoc.seq >= 9007199254740992)
LET isFarFuture = lockDoc != null && lockDoc.expiresAt * 1000 > horizonMs
LET releasers = IS_ARRAY(lockDoc.releasers) ? lockDoc.releasers : []
LET isFree = !isBad && !(@owner IN releasers) && (lockDoc == null || lockDoc.owner == null || lockDoc.owner == @owner || lockDoc.expiresAt * 1000 <= nowMs || isFarFuture)
LET newEpoch = lockDoc == null ? nowMs : lockDoc.epoch
LET newSeq = lockDoc == null ? 1 : lockDoc.seq + 1
LET newExpiry = lockDoc != null && lockDoc.owner == @owner && !isFarFuture ? MAX([nowMs + @leaseMs, ROUND(lockDoc.expiresAt * 1000)]) : nowMs + @leaseMs
LET written = (
  FOR x IN (isFree ? [1] : [])
    INSERT { _key: @key, name: @name, owner: @owner, epoch: newEpoch, seq: newSeq, expiresAt: newExpiry / 1000, releasers: releasers, acquiredAt: nowMs / 1000, forcedOwner: lockDoc.forcedOwner, forcedToken: lockDoc.forcedToken, forcedBy: lockDoc.forcedBy, forcedAt: lockDoc.forcedAt, reason: lockDoc.reason }
    INTO @@collection OPTIONS { overwriteMode: "replace", exclusive: true"#,
            $options,
            r#" }
    RETURN 1
)
RETURN { acquired: LENGTH(written) > 0, bad: isBad, badDoc: isBad ? lockDoc : null, nowMs: nowMs, storedName: lockDoc.name, epoch: newEpoch, seq: newSeq, expiresAtMs: LENGTH(written) > 0 ? newExpiry : lockDoc.expiresAt * 1000 }"#
        )
    };
}

macro_rules! renew {
    ($options:literal) => {
        concat!(
            r#"LET nowMs = DATE_NOW()
LET lockDoc = FIRST(FOR d IN @@collection FILTER d._key == @key LIMIT 1 RETURN d)
LET isMine = lockDoc != null && lockDoc.name == @name && lockDoc.owner == @owner && !(IS_NUMBER(lockDoc.expiresAt) && lockDoc.expiresAt * 1000 > nowMs + 31622400000)
LET newExpiry = isMine && IS_NUMBER(lockDoc.expiresAt) ? MAX([nowMs + @leaseMs, ROUND(lockDoc.expiresAt * 1000)]) : nowMs + @leaseMs
LET written = (
  FOR x IN (isMine ? [1] : [])
    UPDATE @key WITH { expiresAt: newExpiry / 1000 } IN @@collection OPTIONS { exclusive: true"#,
            $options,
            r#" }
    RETURN 1
)
RETURN { renewed: LENGTH(written) > 0, storedName: lockDoc.name, expiresAtMs: newExpiry, forced: lockDoc.forcedOwner == @owner }"#
        )
    };
}

macro_rules! release {
    ($options:literal) => {
        concat!(
            r#"LET nowMs = DATE_NOW()
LET lockDoc = FIRST(FOR d IN @@collection FILTER d._key == @key LIMIT 1 RETURN d)
LET isMine = lockDoc != null && lockDoc.name == @name && lockDoc.owner == @owner
LET releasers = IS_ARRAY(lockDoc.releasers) ? lockDoc.releasers : []
LET written = (
  FOR x IN (isMine ? [1] : [])
    UPDATE @key WITH { owner: null, expiresAt: nowMs / 1000, releasers: SLICE(APPEND(releasers, [@owner]), -16) } IN @@collection OPTIONS { exclusive: true"#,
            $options,
            r#" }
    RETURN 1
)
RETURN { released: LENGTH(written) > 0, storedName: lockDoc.name }"#
        )
    };
}

macro_rules! hand_over {
    ($options:literal) => {
        concat!(
            r#"LET nowMs = DATE_NOW()
LET lockDoc = FIRST(FOR d IN @@collection FILTER d._key == @key LIMIT 1 RETURN d)
LET horizonMs = nowMs + 31622400000
LET releasers = IS_ARRAY(lockDoc.releasers) ? lockDoc.releasers : []
LET isMine = lockDoc != null && lockDoc.name == @name && lockDoc.owner == @owner && IS_NUMBER(lockDoc.epoch) && IS_NUMBER(lockDoc.seq) && IS_NUMBER(lockDoc.expiresAt) && lockDoc.epoch <= horizonMs && lockDoc.seq < 9007199254740992 && lockDoc.expiresAt * 1000 <= horizonMs && !(@to IN releasers)
LET newSeq = isMine ? lockDoc.seq + 1 : null
LET newExpiry = nowMs + @leaseMs
LET written = (
  FOR x IN (isMine ? [1] : [])
    UPDATE @key WITH { owner: @to, seq: newSeq, expiresAt: newExpiry / 1000, releasers: SLICE(APPEND(releasers, [@owner]), -16), acquiredAt: nowMs / 1000 } IN @@collection OPTIONS { exclusive: true"#,
            $options,
            r#" }
    RETURN 1
)
RETURN { handedOver: LENGTH(written) > 0, storedName: lockDoc.name, epoch: lockDoc.epoch, seq: newSeq, expiresAtMs: newExpiry }"#
        )
    };
}

macro_rules! force_release {
    ($options:literal) => {
        concat!(
            r#"LET nowMs = DATE_NOW()
LET lockDoc = FIRST(FOR d IN @@collection FILTER d._key == @key LIMIT 1 RETURN d)
LET isHeld = lockDoc != null && lockDoc.name == @name && IS_STRING(lockDoc.owner) && IS_NUMBER(lockDoc.epoch) && IS_NUMBER(lockDoc.seq) && IS_NUMBER(lockDoc.expiresAt) && lockDoc.expiresAt * 1000 > nowMs && lockDoc.expiresAt * 1000 <= nowMs + 31622400000
LET releasers = IS_ARRAY(lockDoc.releasers) ? lockDoc.releasers : []
LET written = (
  FOR x IN (isHeld ? [1] : [])
    UPDATE @key WITH { owner: null, expiresAt: nowMs / 1000, releasers: SLICE(APPEND(releasers, [lockDoc.owner]), -16), forcedOwner: lockDoc.owner, forcedToken: lockDoc.epoch * 1000 + lockDoc.seq, forcedBy: @by, forcedAt: nowMs / 1000, reason: @reason } IN @@collection OPTIONS { exclusive: true"#,
            $options,
            r#" }
    RETURN 1
)
RETURN { released: LENGTH(written) > 0, storedName: lockDoc.name, owner: lockDoc.owner, epoch: lockDoc.epoch, seq: lockDoc.seq }"#
        )
    };
}

/// The backend's acquire query (with `waitForSync: true`).
pub const ACQUIRE: &str = acquire!(", waitForSync: true");
/// The backend's acquire query without `waitForSync`.
pub const ACQUIRE_NO_SYNC: &str = acquire!("");
/// The backend's renew query (with `waitForSync: true`).
pub const RENEW: &str = renew!(", waitForSync: true");
/// The backend's renew query without `waitForSync`.
pub const RENEW_NO_SYNC: &str = renew!("");
/// The backend's release query (with `waitForSync: true`).
pub const RELEASE: &str = release!(", waitForSync: true");
/// The backend's release query without `waitForSync`.
pub const RELEASE_NO_SYNC: &str = release!("");
/// The backend's hand-over query (with `waitForSync: true`).
pub const HAND_OVER: &str = hand_over!(", waitForSync: true");
/// The backend's hand-over query without `waitForSync`.
pub const HAND_OVER_NO_SYNC: &str = hand_over!("");
/// The backend's forced release query (with `waitForSync: true`).
pub const FORCE_RELEASE: &str = force_release!(", waitForSync: true");
/// The same without `waitForSync`.
pub const FORCE_RELEASE_NO_SYNC: &str = force_release!("");
/// The backend's list query.
pub const LIST: &str = r#"LET nowMs = DATE_NOW()
LET locks = (
  FOR d IN @@collection
    FILTER IS_STRING(d.name) && IS_STRING(d.owner) && IS_NUMBER(d.expiresAt) && d.expiresAt * 1000 > nowMs && d.expiresAt * 1000 <= nowMs + 31622400000
    FILTER @prefix == null || STARTS_WITH(d.name, @prefix)
    FILTER @after == null || d.name > @after
    SORT d.name
    LIMIT @limit
    RETURN { key: d._key, name: d.name, owner: d.owner, epoch: d.epoch, seq: d.seq, expiresAtMs: d.expiresAt * 1000, acquiredAtMs: IS_NUMBER(d.acquiredAt) ? d.acquiredAt * 1000 : null }
)
RETURN { nowMs: nowMs, locks: locks }"#;

/// The backend's inspect query.
pub const INSPECT: &str = r#"LET nowMs = DATE_NOW()
LET lockDoc = FIRST(FOR d IN @@collection FILTER d._key == @key LIMIT 1 RETURN d)
RETURN { nowMs: nowMs, doc: lockDoc }"#;

/// Which known query `text` is, compared exactly (either variant: with
/// `waitForSync: true` or without).
pub fn recognise(text: &str) -> Option<Known> {
    match text {
        ACQUIRE | ACQUIRE_NO_SYNC => Some(Known::Acquire),
        RENEW | RENEW_NO_SYNC => Some(Known::Renew),
        RELEASE | RELEASE_NO_SYNC => Some(Known::Release),
        HAND_OVER | HAND_OVER_NO_SYNC => Some(Known::HandOver),
        INSPECT => Some(Known::Inspect),
        FORCE_RELEASE | FORCE_RELEASE_NO_SYNC => Some(Known::ForceRelease),
        LIST => Some(Known::List),
        _ => None,
    }
}

/// Whether the query's writes carry `waitForSync: true` (the AQL
/// modification option: the query returns only once its writes are synced
/// to disk).
pub fn wait_for_sync(text: &str) -> bool {
    text.contains("waitForSync: true")
}

/// How a writing query uses its collection, as `AccessMode::typeString`
/// names it: `exclusive` when its writes carry `exclusive: true`, else
/// `write`.
pub fn access_type(text: &str) -> &'static str {
    if text.contains("exclusive: true") {
        "exclusive"
    } else {
        "write"
    }
}

/// AQL's conversion of a value to a number (null → 0, bool → 0/1, numeric
/// strings parsed, anything else 0).
pub fn to_number(v: Option<&Value>) -> f64 {
    match v {
        Some(Value::Number(n)) => n.as_f64().unwrap_or(0.0),
        Some(Value::Bool(b)) => f64::from(u8::from(*b)),
        Some(Value::String(s)) => s.trim().parse().unwrap_or(0.0),
        _ => 0.0,
    }
}

/// A number as ArangoDB prints it: integral doubles without a fraction.
pub fn num(f: f64) -> Value {
    if f.fract() == 0.0 && f.abs() < 9.007_199_254_740_992e15 {
        json!(f as i64)
    } else {
        json!(f)
    }
}

fn attr<'a>(doc: Option<&'a Map<String, Value>>, name: &str) -> Option<&'a Value> {
    doc.and_then(|d| d.get(name))
}

fn is_null(v: Option<&Value>) -> bool {
    matches!(v, None | Some(Value::Null))
}

/// How many releasers the release query keeps (its `SLICE(..., -16)`).
const RELEASERS_KEPT: usize = 16;

/// `IS_ARRAY(lockDoc.releasers) ? lockDoc.releasers : []`.
fn releasers(doc: Option<&Map<String, Value>>) -> Vec<Value> {
    match attr(doc, "releasers") {
        Some(Value::Array(a)) => a.clone(),
        _ => Vec::new(),
    }
}

/// `horizonMs - nowMs` in the queries: shylock-core's `RECORD_HORIZON`
/// (366 days) in milliseconds.
const HORIZON_MS: f64 = 31_622_400_000.0;
/// The `seq` ceiling in the acquire query (2^53).
const SEQ_CEILING: f64 = 9_007_199_254_740_992.0;

/// The outcome of a native execution.
pub struct Executed {
    pub row: Value,
    /// The document to write under the key, if any (full replacement).
    pub write: Option<Map<String, Value>>,
}

/// Execute `query` natively against the current document `doc` (the caller
/// holds the database lock, as a single server's transaction would).
pub fn execute(
    query: Known,
    bind: &Map<String, Value>,
    doc: Option<&Map<String, Value>>,
    now_ms: i64,
) -> Executed {
    let key = bind.get("key").cloned().unwrap_or(Value::Null);
    let name = bind.get("name").cloned().unwrap_or(Value::Null);
    let owner = bind.get("owner").cloned().unwrap_or(Value::Null);
    let lease_ms = to_number(bind.get("leaseMs"));
    let now = now_ms as f64;
    let stored_name = attr(doc, "name").cloned().unwrap_or(Value::Null);
    match query {
        Known::Acquire => {
            let horizon = now + HORIZON_MS;
            let bad = doc.is_some()
                && (attr(doc, "name") != Some(&name)
                    || !matches!(attr(doc, "epoch"), Some(Value::Number(_)))
                    || !matches!(attr(doc, "seq"), Some(Value::Number(_)))
                    || !matches!(attr(doc, "expiresAt"), Some(Value::Number(_)))
                    || !(is_null(attr(doc, "owner"))
                        || matches!(attr(doc, "owner"), Some(Value::String(_))))
                    || to_number(attr(doc, "epoch")) > horizon
                    || to_number(attr(doc, "seq")) >= SEQ_CEILING);
            let far_future = doc.is_some() && to_number(attr(doc, "expiresAt")) * 1000.0 > horizon;
            let releasers = releasers(doc);
            let free = !bad
                && !releasers.contains(&owner)
                && (doc.is_none()
                    || is_null(attr(doc, "owner"))
                    || attr(doc, "owner") == Some(&owner)
                    || to_number(attr(doc, "expiresAt")) * 1000.0 <= now
                    || far_future);
            let new_epoch = match doc {
                None => num(now),
                Some(d) => d.get("epoch").cloned().unwrap_or(Value::Null),
            };
            let new_seq = match doc {
                None => num(1.0),
                Some(_) => num(to_number(attr(doc, "seq")) + 1.0),
            };
            // The owner's own record keeps the later expiry.
            let new_expiry = if doc.is_some() && attr(doc, "owner") == Some(&owner) && !far_future {
                (now + lease_ms).max((to_number(attr(doc, "expiresAt")) * 1000.0).round())
            } else {
                now + lease_ms
            };
            let write = free.then(|| {
                let mut m = Map::new();
                m.insert("_key".into(), key.clone());
                m.insert("name".into(), name.clone());
                m.insert("owner".into(), owner.clone());
                m.insert("epoch".into(), new_epoch.clone());
                m.insert("seq".into(), new_seq.clone());
                m.insert("expiresAt".into(), json!(new_expiry / 1000.0));
                m.insert("releasers".into(), Value::Array(releasers));
                m.insert("acquiredAt".into(), json!(now / 1000.0));
                for field in [
                    "forcedOwner",
                    "forcedToken",
                    "forcedBy",
                    "forcedAt",
                    "reason",
                ] {
                    m.insert(
                        field.into(),
                        attr(doc, field).cloned().unwrap_or(Value::Null),
                    );
                }
                m
            });
            let expires_at_ms = if free {
                num(new_expiry)
            } else {
                num(to_number(attr(doc, "expiresAt")) * 1000.0)
            };
            Executed {
                row: json!({
                    "acquired": free,
                    "bad": bad,
                    "badDoc": match (bad, doc) {
                        (true, Some(d)) => Value::Object(d.clone()),
                        _ => Value::Null,
                    },
                    "nowMs": num(now),
                    "storedName": stored_name,
                    "epoch": new_epoch,
                    "seq": new_seq,
                    "expiresAtMs": expires_at_ms,
                }),
                write,
            }
        }
        Known::Renew => {
            let mine = doc.is_some()
                && attr(doc, "name") == Some(&name)
                && attr(doc, "owner") == Some(&owner)
                && !(matches!(attr(doc, "expiresAt"), Some(Value::Number(_)))
                    && to_number(attr(doc, "expiresAt")) * 1000.0 > now + HORIZON_MS);
            let new_expiry = if mine && matches!(attr(doc, "expiresAt"), Some(Value::Number(_))) {
                (now + lease_ms).max((to_number(attr(doc, "expiresAt")) * 1000.0).round())
            } else {
                now + lease_ms
            };
            let write = match (mine, doc) {
                (true, Some(d)) => {
                    let mut m = d.clone();
                    m.insert("expiresAt".into(), json!(new_expiry / 1000.0));
                    Some(m)
                }
                _ => None,
            };
            Executed {
                row: json!({
                    "renewed": mine,
                    "storedName": stored_name,
                    "expiresAtMs": num(new_expiry),
                    "forced": attr(doc, "forcedOwner") == Some(&owner),
                }),
                write,
            }
        }
        Known::Release => {
            let mine = doc.is_some()
                && attr(doc, "name") == Some(&name)
                && attr(doc, "owner") == Some(&owner);
            let write = match (mine, doc) {
                (true, Some(d)) => {
                    let mut m = d.clone();
                    let mut kept = releasers(doc);
                    kept.push(owner.clone());
                    let drop = kept.len().saturating_sub(RELEASERS_KEPT);
                    kept.drain(..drop);
                    m.insert("owner".into(), Value::Null);
                    m.insert("expiresAt".into(), json!(now / 1000.0));
                    m.insert("releasers".into(), Value::Array(kept));
                    Some(m)
                }
                _ => None,
            };
            Executed {
                row: json!({ "released": mine, "storedName": stored_name }),
                write,
            }
        }
        Known::HandOver => {
            let to = bind.get("to").cloned().unwrap_or(Value::Null);
            let horizon = now + HORIZON_MS;
            let kept = releasers(doc);
            let mine = doc.is_some()
                && attr(doc, "name") == Some(&name)
                && attr(doc, "owner") == Some(&owner)
                && matches!(attr(doc, "epoch"), Some(Value::Number(_)))
                && matches!(attr(doc, "seq"), Some(Value::Number(_)))
                && matches!(attr(doc, "expiresAt"), Some(Value::Number(_)))
                && to_number(attr(doc, "epoch")) <= horizon
                && to_number(attr(doc, "seq")) < SEQ_CEILING
                && to_number(attr(doc, "expiresAt")) * 1000.0 <= horizon
                && !kept.contains(&to);
            let new_seq = if mine {
                num(to_number(attr(doc, "seq")) + 1.0)
            } else {
                Value::Null
            };
            let new_expiry = now + lease_ms;
            let write = match (mine, doc) {
                (true, Some(d)) => {
                    let mut m = d.clone();
                    let mut kept = kept;
                    kept.push(owner.clone());
                    let drop = kept.len().saturating_sub(RELEASERS_KEPT);
                    kept.drain(..drop);
                    m.insert("owner".into(), to.clone());
                    m.insert("seq".into(), new_seq.clone());
                    m.insert("expiresAt".into(), json!(new_expiry / 1000.0));
                    m.insert("releasers".into(), Value::Array(kept));
                    m.insert("acquiredAt".into(), json!(now / 1000.0));
                    Some(m)
                }
                _ => None,
            };
            Executed {
                row: json!({
                    "handedOver": mine,
                    "storedName": stored_name,
                    "epoch": attr(doc, "epoch").cloned().unwrap_or(Value::Null),
                    "seq": new_seq,
                    "expiresAtMs": num(new_expiry),
                }),
                write,
            }
        }
        Known::ForceRelease => {
            let expiry_ms = to_number(attr(doc, "expiresAt")) * 1000.0;
            let held = doc.is_some()
                && attr(doc, "name") == Some(&name)
                && matches!(attr(doc, "owner"), Some(Value::String(_)))
                && matches!(attr(doc, "epoch"), Some(Value::Number(_)))
                && matches!(attr(doc, "seq"), Some(Value::Number(_)))
                && matches!(attr(doc, "expiresAt"), Some(Value::Number(_)))
                && expiry_ms > now
                && expiry_ms <= now + HORIZON_MS;
            let forced_owner = attr(doc, "owner").cloned().unwrap_or(Value::Null);
            let write = match (held, doc) {
                (true, Some(d)) => {
                    let mut m = d.clone();
                    let mut kept = releasers(doc);
                    kept.push(forced_owner.clone());
                    let drop = kept.len().saturating_sub(RELEASERS_KEPT);
                    kept.drain(..drop);
                    let token =
                        to_number(attr(doc, "epoch")) * 1000.0 + to_number(attr(doc, "seq"));
                    m.insert("owner".into(), Value::Null);
                    m.insert("expiresAt".into(), json!(now / 1000.0));
                    m.insert("releasers".into(), Value::Array(kept));
                    m.insert("forcedOwner".into(), forced_owner.clone());
                    m.insert("forcedToken".into(), num(token));
                    m.insert(
                        "forcedBy".into(),
                        bind.get("by").cloned().unwrap_or(Value::Null),
                    );
                    m.insert("forcedAt".into(), json!(now / 1000.0));
                    m.insert(
                        "reason".into(),
                        bind.get("reason").cloned().unwrap_or(Value::Null),
                    );
                    Some(m)
                }
                _ => None,
            };
            Executed {
                row: json!({
                    "released": held,
                    "storedName": stored_name,
                    "owner": forced_owner,
                    "epoch": attr(doc, "epoch").cloned().unwrap_or(Value::Null),
                    "seq": attr(doc, "seq").cloned().unwrap_or(Value::Null),
                }),
                write,
            }
        }
        Known::List => list(bind, std::iter::empty(), now_ms),
        Known::Inspect => Executed {
            row: json!({
                "nowMs": num(now),
                "doc": doc.map(|d| Value::Object(d.clone())).unwrap_or(Value::Null),
            }),
            write: None,
        },
    }
}

/// Execute the list query over every document of the collection (it reads
/// no single key).
pub fn list<'a>(
    bind: &Map<String, Value>,
    docs: impl Iterator<Item = &'a Map<String, Value>>,
    now_ms: i64,
) -> Executed {
    let now = now_ms as f64;
    let prefix = bind.get("prefix").and_then(Value::as_str);
    let after = bind.get("after").and_then(Value::as_str);
    let limit = to_number(bind.get("limit")).max(0.0) as usize;
    let mut held: Vec<&Map<String, Value>> = docs
        .filter(|d| {
            let (Some(Value::String(name)), Some(Value::String(_)), Some(Value::Number(_))) =
                (d.get("name"), d.get("owner"), d.get("expiresAt"))
            else {
                return false;
            };
            let expiry_ms = to_number(d.get("expiresAt")) * 1000.0;
            expiry_ms > now
                && expiry_ms <= now + HORIZON_MS
                && prefix.is_none_or(|p| name.starts_with(p))
                && after.is_none_or(|a| name.as_str() > a)
        })
        .collect();
    held.sort_by(|x, y| {
        let name = |d: &Map<String, Value>| {
            d.get("name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned()
        };
        name(x).cmp(&name(y))
    });
    let locks: Vec<Value> = held
        .into_iter()
        .take(limit)
        .map(|d| {
            let some = |f: &str| d.get(f).cloned().unwrap_or(Value::Null);
            json!({
                "key": some("_key"),
                "name": some("name"),
                "owner": some("owner"),
                "epoch": some("epoch"),
                "seq": some("seq"),
                "expiresAtMs": num(to_number(d.get("expiresAt")) * 1000.0),
                "acquiredAtMs": match d.get("acquiredAt") {
                    Some(Value::Number(_)) => num(to_number(d.get("acquiredAt")) * 1000.0),
                    _ => Value::Null,
                },
            })
        })
        .collect();
    Executed {
        row: json!({ "nowMs": num(now), "locks": locks }),
        write: None,
    }
}
