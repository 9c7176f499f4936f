//! The AQL queries this backend sends, published for review.
//!
//! Each lock operation is **one** `POST /_api/cursor` request carrying one of
//! these queries. A query reads the lock's document, decides, and writes in
//! the same AQL query, which on a single server is one transaction
//! ("On a single server, upserts/inserts/updates are executed transactionally
//! in an all-or-nothing fashion"). The writes carry `exclusive: true`, so the
//! query holds the collection's exclusive write lock from its start: no other
//! write to the collection can happen between the read and the write — the
//! documented way to make a read-then-write (such as `UPSERT`) atomic.
//! Should two writers still meet (for example on a deployment where the
//! option has no effect), ArangoDB aborts one of them with error 1200
//! (write-write conflict) or 1210 (unique constraint violated); the backend
//! then re-reads instead of guessing.
//!
//! The server clock (`DATE_NOW()`, milliseconds) judges expiry inside the
//! query, so the client's clock never matters. The server reads it while
//! planning the query, before it waits for the collection's lock; the
//! request's cursor options carry `lockTimeout`
//! ([`ArangoOptions::lock_timeout`](crate::ArangoOptions::lock_timeout)),
//! which bounds that wait and so how old a query's `now` can be.
//!
//! Bind parameters: `@@collection` (collection), `@key` (the document key,
//! see [`lock_key`](crate::lock_key)), `@name` (the lock name), `@owner` (the
//! owner id), `@leaseMs` (the lease in milliseconds).

// Each writing query comes in two texts that differ only in the write's
// options: with `waitForSync: true` (the default: the query answers only
// once its write is on disk) and without (`ArangoOptions::wait_for_sync(false)`).
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

/// Acquire: grant if the caller is not among the record's `releasers` (a
/// released owner is never granted again: its request arriving now is a late
/// duplicate) and there is no record, or it is free, or it is the caller's,
/// or it has expired; otherwise change nothing. The grant keeps the
/// record's `releasers`. The fencing token of a grant is `epoch * 1000 +
/// seq`: `epoch` is the server time at which the record was created, `seq`
/// counts the grants of this record. The write waits for the disk
/// (`waitForSync: true`).
///
/// Bind parameters: `@collection`, `key`, `name`, `owner`, `leaseMs`.
pub const ACQUIRE: &str = acquire!(", waitForSync: true");

/// [`ACQUIRE`] without `waitForSync` (see
/// [`ArangoOptions::wait_for_sync`](crate::ArangoOptions::wait_for_sync)).
pub const ACQUIRE_NO_SYNC: &str = acquire!("");

/// Renew: extend the lease if the record is still the caller's (synced).
///
/// Bind parameters: `@collection`, `key`, `name`, `owner`, `leaseMs`.
pub const RENEW: &str = renew!(", waitForSync: true");

/// [`RENEW`] without `waitForSync`.
pub const RENEW_NO_SYNC: &str = renew!("");

/// Release: make the record free (owner `null`) if it is the caller's, and
/// append the caller to its `releasers`, keeping the last 16
/// ([`RELEASERS_REMEMBERED`](shylock_core::backend::RELEASERS_REMEMBERED)),
/// in the same write. The record is kept, so that the next grant's token
/// continues from it (synced).
///
/// Bind parameters: `@collection`, `key`, `name`, `owner`.
pub const RELEASE: &str = release!(", waitForSync: true");

/// [`RELEASE`] without `waitForSync`.
pub const RELEASE_NO_SYNC: &str = release!("");

/// Forced release (an administrator's): if the record is held and live
/// (a string `owner`, numbers `epoch`, `seq` and `expiresAt`, the expiry
/// after now and not beyond the horizon), make it free, append its owner
/// to `releasers` (keeping the last 16), and keep the audit trail:
/// `forcedOwner`, `forcedToken` (`epoch * 1000 + seq`), `forcedBy`,
/// `forcedAt` (seconds, as `expiresAt`) and `reason`, in the same write
/// (synced). The next grant keeps the audit trail (acquire copies it).
///
/// Bind parameters: `@collection`, `key`, `name`, `by`, `reason`.
pub const FORCE_RELEASE: &str = force_release!(", waitForSync: true");

/// [`FORCE_RELEASE`] without `waitForSync`.
pub const FORCE_RELEASE_NO_SYNC: &str = force_release!("");

/// List (read-only): the held records (a string `name` and `owner`, a
/// number `expiresAt` after now and not beyond the horizon), only names
/// starting with `@prefix` and after `@after` when they are not null,
/// sorted by name (the server's string order), at most `@limit`. It reads
/// the whole collection (no index on `name`): one page costs a scan.
///
/// Bind parameters: `@collection`, `prefix`, `after`, `limit`.
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

/// Hand over: if the record is `@owner`'s (the holder handing it over,
/// expired or not) and well typed, and `@to` is not among its releasers,
/// make `@to` the owner with the next `seq` and a lease of `@leaseMs` from
/// the server's now, and append `@owner` to the releasers (keeping the last
/// 16), in one write; otherwise change nothing (synced).
///
/// Bind parameters: `@collection`, `key`, `name`, `owner`, `to`, `leaseMs`.
pub const HAND_OVER: &str = hand_over!(", waitForSync: true");

/// [`HAND_OVER`] without `waitForSync`.
pub const HAND_OVER_NO_SYNC: &str = hand_over!("");

/// Inspect: read the record and the server clock (read-only). Also the
/// audit read (the record's forced-release fields).
///
/// Bind parameters: `@collection`, `key`.
pub const INSPECT: &str = r#"LET nowMs = DATE_NOW()
LET lockDoc = FIRST(FOR d IN @@collection FILTER d._key == @key LIMIT 1 RETURN d)
RETURN { nowMs: nowMs, doc: lockDoc }"#;

#[cfg(test)]
mod tests {
    use super::*;

    /// The horizon written into the queries is the core's.
    #[test]
    fn horizon_is_the_cores() {
        let horizon = format!("nowMs + {}", shylock_core::RECORD_HORIZON.as_millis());
        for query in [
            ACQUIRE,
            ACQUIRE_NO_SYNC,
            RENEW,
            RENEW_NO_SYNC,
            HAND_OVER,
            HAND_OVER_NO_SYNC,
        ] {
            assert!(query.contains(&horizon), "{query}");
        }
    }
}
