//! The six lock commands (acquire, renew, release, hand over, inspect; server time is
//! in [`crate::setup`]) and how their replies and records are read, with
//! fencing tokens. The commands are listed in the README (The commands).

use std::time::Instant;

use mongodb::bson::{Bson, Document, doc};
use mongodb::error::Error as MongoError;
use mongodb::options::{
    FindOneAndUpdateOptions, FindOneOptions, FindOptions, ReadConcern, ReturnDocument,
};
use shylock_core::backend::{
    AcquireOutcome, AcquireRequest, ForceReleaseRequest, ForcedRelease, Grant, HandOverOutcome,
    HandOverRequest, InspectRequest, ListPage, ListRequest, ListedLock, LockRecord,
    RELEASERS_REMEMBERED, ReleaseOutcome, ReleaseRequest, RenewOutcome, RenewRequest,
};
use shylock_core::{
    BackendError, BackendErrorKind, FencingToken, LockName, MAX_LEASE, OwnerId, RECORD_HORIZON,
    Timestamp,
};

use crate::errors::{CODE_DUPLICATE_KEY, map_error, server_code};
use crate::spec::{
    Ctx, FindAndModify, FindMany, FindOne, Spec, bound, date, max_time, primary, write_concern,
};

/// Field names of a lock record.
pub(crate) const F_ID: &str = "_id";
pub(crate) const F_OWNER: &str = "owner";
pub(crate) const F_EPOCH: &str = "epoch";
pub(crate) const F_SEQ: &str = "seq";
pub(crate) const F_EXPIRES_AT: &str = "expiresAt";
/// The owner ids of the record's last releases, oldest first (at most
/// [`RELEASERS_REMEMBERED`]): never granted the record again, and a release
/// sent again by one of them while the record is free finds its own release.
pub(crate) const F_RELEASERS: &str = "releasers";
/// The single last releaser that versions before `releasers` recorded;
/// removed by the next release.
pub(crate) const F_LEGACY_RELEASED_BY: &str = "releasedBy";

/// When the holding was granted (set by every grant).
pub(crate) const F_ACQUIRED_AT: &str = "acquiredAt";
/// The audit trail of the last forced release: whose holding it ended,
/// its fencing token, who forced it, when and why (README: Forced release).
pub(crate) const F_FORCED_OWNER: &str = "forcedOwner";
pub(crate) const F_FORCED_TOKEN: &str = "forcedToken";
pub(crate) const F_FORCED_BY: &str = "forcedBy";
pub(crate) const F_FORCED_AT: &str = "forcedAt";
pub(crate) const F_REASON: &str = "reason";

/// Grants per millisecond of `epoch` that fit below the next epoch's tokens.
const SEQ_PER_EPOCH_MS: u64 = 1000;

/// A `seq` at or above this was not counted by grants (2^53: no record
/// lives long enough to reach it): acquire refuses the record rather than
/// make a token from it (README: Records this library did not write).
pub(crate) const SEQ_CEILING: i64 = 1 << 53;

/// `now` + [`RECORD_HORIZON`]: an expiry after it is treated as expired,
/// an epoch after it never feeds a token.
fn horizon(now: Timestamp) -> Timestamp {
    now.saturating_add(RECORD_HORIZON)
}

/// A lease longer than [`MAX_LEASE`] is refused: its expiry could lie
/// beyond the horizon, where other owners treat it as expired.
fn check_lease(lease: std::time::Duration, ctx: &Ctx) -> Result<(), BackendError> {
    if lease > MAX_LEASE {
        return Err(BackendError::new(
            BackendErrorKind::Other,
            format!("{ctx}: a lease of {lease:?} is longer than the longest, {MAX_LEASE:?}"),
        ));
    }
    Ok(())
}

/// Options of every `findAndModify`. No projection: FerretDB does not
/// implement `fields` in `findAndModify` (238), and records are small.
fn find_and_modify_options(
    spec: &Spec,
    deadline: Instant,
    upsert: bool,
) -> FindOneAndUpdateOptions {
    let mut options = FindOneAndUpdateOptions::default();
    options.upsert = Some(upsert);
    options.return_document = Some(ReturnDocument::After);
    options.write_concern = Some(write_concern(spec, deadline));
    options.max_time = Some(max_time(deadline));
    options
}

/// Acquire: one `findAndModify` with upsert (README: Acquire).
pub(crate) fn acquire(
    spec: &Spec,
    req: &AcquireRequest<'_>,
) -> Result<FindAndModify, BackendError> {
    let ctx = spec.context("acquire (findAndModify)", Some(req.name.as_str()));
    check_lease(req.lease, &ctx)?;
    let deadline = bound(req.deadline, spec.request_timeout.min(req.lease), &ctx)?;
    let now = date(req.now);
    let horizon = horizon(req.now);
    let expires = date(req.now.saturating_add(req.lease));
    let owner = req.owner.as_str();
    Ok(FindAndModify {
        // Only a well-typed record is granted: a number `epoch` not after
        // the horizon, a number `seq` below the ceiling, a date `expiresAt`
        // (comparisons match their own BSON type only), an `owner` null or
        // a string. Anything else finds no record, the upsert's insert
        // meets the `_id` and the reply is read by `busy` (README: Records
        // this library did not write). A far-future expiry is not matched
        // either (`$max` would keep it): `busy` repairs it first.
        filter: doc! {
            F_ID: req.name.as_str(),
            F_RELEASERS: { "$ne": owner },
            F_EPOCH: { "$lte": horizon.as_millis() },
            F_SEQ: { "$lt": SEQ_CEILING },
            "$or": [
                { F_OWNER: Bson::Null, F_EXPIRES_AT: { "$lte": date(horizon) } },
                { F_OWNER: { "$type": "string" }, F_EXPIRES_AT: { "$lte": now } },
                { F_OWNER: owner, F_EXPIRES_AT: { "$lte": date(horizon) } },
            ],
        },
        update: doc! {
            // `$max`, not `$set`: README, Acquire.
            "$set": { F_OWNER: owner, F_ACQUIRED_AT: now },
            "$max": { F_EXPIRES_AT: expires },
            "$inc": { F_SEQ: 1_i64 },
            "$setOnInsert": { F_EPOCH: req.now.as_millis() },
        },
        options: find_and_modify_options(spec, deadline, true),
        ctx,
        deadline,
    })
}

/// The grant a `findAndModify` answered with the record after its `step`
/// (an update or a hand-over): `owner`'s, or the reply is not understood.
fn granted(
    record: &Document,
    owner: &OwnerId,
    cmd_ctx: &Ctx,
    step: &str,
) -> Result<Grant, BackendError> {
    let parsed = parse_record(record, cmd_ctx)?;
    if parsed.owner.as_deref() != Some(owner.as_str()) {
        return Err(unexpected(
            cmd_ctx,
            format!(
                "the record after the {step} is not the new owner's (owner {:?}, expected {:?})",
                parsed.owner,
                owner.as_str()
            ),
        ));
    }
    Ok(Grant {
        token: parsed.token,
        expires_at: parsed.expires_at,
    })
}

/// Read the reply of [`acquire`].
pub(crate) fn acquire_reply(
    cmd_ctx: &Ctx,
    owner: &OwnerId,
    reply: Result<Option<Document>, MongoError>,
) -> Result<AcquireOutcome, BackendError> {
    match reply {
        Ok(Some(record)) => Ok(AcquireOutcome::Acquired(granted(
            &record, owner, cmd_ctx, "update",
        )?)),
        Ok(None) => Err(unexpected(
            cmd_ctx,
            "the server returned no document for an upsert with returnDocument: after".into(),
        )),
        Err(e) if server_code(&e) == Some(CODE_DUPLICATE_KEY) => {
            Ok(AcquireOutcome::Busy { expires_at: None })
        }
        Err(e) => Err(map_error(cmd_ctx, e)),
    }
}

/// What to do after an acquire found the record not grantable.
#[derive(Debug)]
pub(crate) enum Busy {
    /// Answer this.
    Answer(AcquireOutcome),
    /// The record's expiry is beyond the horizon: treated as expired. Run
    /// this repair (the expiry set to *now*, if the record is unchanged),
    /// then the acquire once more.
    Repair(Box<FindAndModify>),
}

/// Read the record (`find` by `_id`, as [`inspect`] does) after an acquire
/// met a record it would not grant (README: Records this library did not
/// write): a record this library did not write is an error naming it and
/// what is wrong, an expiry beyond the horizon is repaired, anything else
/// is Busy with the record's expiry.
pub(crate) fn busy(
    spec: &Spec,
    req: &AcquireRequest<'_>,
    cmd_ctx: &Ctx,
    reply: Result<Option<Document>, MongoError>,
) -> Result<Busy, BackendError> {
    let busy = |expires_at| Ok(Busy::Answer(AcquireOutcome::Busy { expires_at }));
    let record = match reply {
        Ok(Some(record)) => record,
        // Deleted since: the next attempt will see.
        Ok(None) => return busy(None),
        Err(e) => return Err(map_error(cmd_ctx, e)),
    };
    let parsed = parse_trusted(&record, req.now, cmd_ctx)?;
    let released_by_us = match record.get(F_RELEASERS) {
        Some(Bson::Array(owners)) => owners
            .iter()
            .any(|o| o.as_str() == Some(req.owner.as_str())),
        _ => false,
    };
    if released_by_us {
        return busy(None);
    }
    if parsed.expires_at > horizon(req.now) {
        let ctx = spec.context(
            "acquire (repair a far-future expiry)",
            Some(req.name.as_str()),
        );
        let deadline = bound(req.deadline, spec.request_timeout.min(req.lease), &ctx)?;
        let owner = parsed.owner.map_or(Bson::Null, Bson::String);
        return Ok(Busy::Repair(Box::new(FindAndModify {
            filter: doc! {
                F_ID: req.name.as_str(),
                F_OWNER: owner,
                F_EXPIRES_AT: date(parsed.expires_at),
            },
            update: doc! { "$set": { F_EXPIRES_AT: date(req.now) } },
            options: find_and_modify_options(spec, deadline, false),
            ctx,
            deadline,
        })));
    }
    match parsed.owner {
        Some(_) if parsed.expires_at > req.now => busy(Some(parsed.expires_at)),
        // Free or expired now (it changed in between): try again.
        _ => busy(None),
    }
}

/// Renew: one `findAndModify` on `{_id, owner}` (README: Renew).
pub(crate) fn renew(spec: &Spec, req: &RenewRequest<'_>) -> Result<FindAndModify, BackendError> {
    let ctx = spec.context("renew (findAndModify)", Some(req.name.as_str()));
    check_lease(req.lease, &ctx)?;
    let deadline = bound(req.deadline, spec.request_timeout.min(req.lease), &ctx)?;
    let expires = date(req.now.saturating_add(req.lease));
    Ok(FindAndModify {
        // A far-future expiry (another writer's) is not renewed: Lost.
        filter: doc! {
            F_ID: req.name.as_str(),
            F_OWNER: req.owner.as_str(),
            F_EXPIRES_AT: { "$lte": date(horizon(req.now)) },
        },
        update: doc! { "$max": { F_EXPIRES_AT: expires } },
        options: find_and_modify_options(spec, deadline, false),
        ctx,
        deadline,
    })
}

/// Read the reply of [`renew`].
pub(crate) fn renew_reply(
    cmd_ctx: &Ctx,
    reply: Result<Option<Document>, MongoError>,
) -> Result<RenewOutcome, BackendError> {
    match reply {
        Ok(Some(record)) => Ok(RenewOutcome::Renewed {
            expires_at: get_date(&record, F_EXPIRES_AT, cmd_ctx)?,
        }),
        Ok(None) => Ok(RenewOutcome::Lost),
        Err(e) => Err(map_error(cmd_ctx, e)),
    }
}

/// Release: one `findAndModify` that frees the record if it is the
/// requester's and appends the requester to its `releasers` (README:
/// Release, Releasers).
pub(crate) fn release(
    spec: &Spec,
    req: &ReleaseRequest<'_>,
) -> Result<FindAndModify, BackendError> {
    let ctx = spec.context("release (findAndModify)", Some(req.name.as_str()));
    let deadline = bound(req.deadline, spec.request_timeout, &ctx)?;
    let owner = req.owner.as_str();
    Ok(FindAndModify {
        filter: doc! {
            F_ID: req.name.as_str(),
            // A release sent again finds its own release; not so the
            // owner of a forced release (its loss must show: README,
            // Forced release).
            "$or": [
                { F_OWNER: owner },
                { F_OWNER: Bson::Null, F_RELEASERS: owner, F_FORCED_OWNER: { "$ne": owner } },
            ],
        },
        update: doc! {
            "$set": { F_OWNER: Bson::Null, F_EXPIRES_AT: date(req.now) },
            "$push": { F_RELEASERS: { "$each": [owner], "$slice": -releasers_remembered() } },
            "$unset": { F_LEGACY_RELEASED_BY: "" },
        },
        options: find_and_modify_options(spec, deadline, false),
        ctx,
        deadline,
    })
}

/// Hand over: one `findAndModify` on `{_id, owner: from}` that makes `to`
/// the owner with the next `seq`, a lease from *now*, and appends `from` to
/// `releasers` (README: Hand over). Only a well-typed record (as acquire
/// grants) is matched; anything else is `NotOwner`.
pub(crate) fn hand_over(
    spec: &Spec,
    req: &HandOverRequest<'_>,
) -> Result<FindAndModify, BackendError> {
    let ctx = spec.context("hand over (findAndModify)", Some(req.name.as_str()));
    check_lease(req.lease, &ctx)?;
    let deadline = bound(req.deadline, spec.request_timeout.min(req.lease), &ctx)?;
    let horizon = horizon(req.now);
    let from = req.from.as_str();
    Ok(FindAndModify {
        filter: doc! {
            F_ID: req.name.as_str(),
            F_OWNER: from,
            F_RELEASERS: { "$ne": req.to.as_str() },
            F_EPOCH: { "$lte": horizon.as_millis() },
            F_SEQ: { "$lt": SEQ_CEILING },
            F_EXPIRES_AT: { "$lte": date(horizon) },
        },
        update: doc! {
            "$set": {
                F_OWNER: req.to.as_str(),
                F_EXPIRES_AT: date(req.now.saturating_add(req.lease)),
                F_ACQUIRED_AT: date(req.now),
            },
            "$inc": { F_SEQ: 1_i64 },
            "$push": { F_RELEASERS: { "$each": [from], "$slice": -releasers_remembered() } },
            "$unset": { F_LEGACY_RELEASED_BY: "" },
        },
        options: find_and_modify_options(spec, deadline, false),
        ctx,
        deadline,
    })
}

/// Read the reply of [`hand_over`].
pub(crate) fn hand_over_reply(
    cmd_ctx: &Ctx,
    to: &OwnerId,
    reply: Result<Option<Document>, MongoError>,
) -> Result<HandOverOutcome, BackendError> {
    match reply {
        Ok(Some(record)) => Ok(HandOverOutcome::HandedOver(granted(
            &record,
            to,
            cmd_ctx,
            "hand-over",
        )?)),
        Ok(None) => Ok(HandOverOutcome::NotOwner),
        Err(e) => Err(map_error(cmd_ctx, e)),
    }
}

/// `-$slice` of the `releasers` push: keep the last [`RELEASERS_REMEMBERED`].
fn releasers_remembered() -> i64 {
    i64::try_from(RELEASERS_REMEMBERED).unwrap_or(i64::MAX)
}

/// Read the reply of [`release`].
pub(crate) fn release_reply(
    cmd_ctx: &Ctx,
    reply: Result<Option<Document>, MongoError>,
) -> Result<ReleaseOutcome, BackendError> {
    match reply {
        Ok(Some(_)) => Ok(ReleaseOutcome::Released),
        Ok(None) => Ok(ReleaseOutcome::NotOwner),
        Err(e) => Err(map_error(cmd_ctx, e)),
    }
}

/// Inspect: one `find` by `_id` on the primary, read concern `majority`
/// (README: Inspect).
pub(crate) fn inspect(spec: &Spec, req: &InspectRequest<'_>) -> Result<FindOne, BackendError> {
    let ctx = spec.context("inspect (find)", Some(req.name.as_str()));
    let deadline = bound(req.deadline, spec.request_timeout, &ctx)?;
    let mut options = FindOneOptions::default();
    options.max_time = Some(max_time(deadline));
    options.selection_criteria = Some(primary());
    options.read_concern = Some(ReadConcern::majority());
    Ok(FindOne {
        filter: doc! { F_ID: req.name.as_str() },
        options,
        ctx,
        deadline,
    })
}

/// Read the reply of [`inspect`]: `Some` only for a held, unexpired record.
pub(crate) fn inspect_reply(
    cmd_ctx: &Ctx,
    now: Timestamp,
    reply: Result<Option<Document>, MongoError>,
) -> Result<Option<LockRecord>, BackendError> {
    let record = match reply {
        Ok(Some(record)) => record,
        Ok(None) => return Ok(None),
        Err(e) => return Err(map_error(cmd_ctx, e)),
    };
    let parsed = parse_trusted(&record, now, cmd_ctx)?;
    match parsed.owner {
        // An expiry beyond the horizon is treated as expired.
        Some(owner) if parsed.expires_at > now && parsed.expires_at <= horizon(now) => {
            Ok(Some(LockRecord {
                owner: OwnerId::from_string(owner),
                token: parsed.token,
                expires_at: parsed.expires_at,
            }))
        }
        _ => Ok(None),
    }
}

/// List: one `find` on `_id` (a range from the prefix or the previous
/// page's last name, and the prefix as an anchored regular expression),
/// held records only (a string `owner`, a date `expiresAt` after *now* and
/// not beyond the horizon), sorted by `_id`, at most `limit` (README:
/// List).
pub(crate) fn list(spec: &Spec, req: &ListRequest<'_>) -> Result<FindMany, BackendError> {
    let ctx = spec.context("list (find)", None);
    let deadline = bound(req.deadline, spec.request_timeout, &ctx)?;
    let mut id = doc! { "$type": "string" };
    if let Some(prefix) = req.prefix {
        id.insert("$gte", prefix);
        id.insert("$regex", format!("^{}", regex_escape(prefix)));
    }
    if let Some(after) = req.after {
        id.insert("$gt", after.as_str());
    }
    let mut options = FindOptions::default();
    options.sort = Some(doc! { F_ID: 1 });
    options.limit = Some(i64::try_from(req.limit.max(1)).unwrap_or(i64::MAX));
    options.max_time = Some(max_time(deadline));
    options.selection_criteria = Some(primary());
    options.read_concern = Some(ReadConcern::majority());
    Ok(FindMany {
        filter: doc! {
            F_ID: id,
            F_OWNER: { "$type": "string" },
            F_EXPIRES_AT: { "$gt": date(req.now), "$lte": date(horizon(req.now)) },
        },
        options,
        ctx,
        deadline,
    })
}

/// `s` with the characters special to a regular expression escaped.
fn regex_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if "\\^$.|?*+()[]{}-/".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Read the reply of [`list`]: a record this library did not write (its
/// `_id` not a lock name, its counters or dates unreadable or untrusted)
/// is never listed, only logged.
pub(crate) fn list_reply(
    cmd_ctx: &Ctx,
    req: &ListRequest<'_>,
    reply: Result<Vec<Document>, MongoError>,
) -> Result<ListPage, BackendError> {
    let records = reply.map_err(|e| map_error(cmd_ctx, e))?;
    let mut page = ListPage::default();
    let limit = req.limit.max(1);
    if records.len() >= limit {
        page.next = records
            .last()
            .and_then(|r| r.get_str(F_ID).ok())
            .and_then(|id| LockName::new(id).ok());
    }
    for record in &records {
        match listed(record, req.now, cmd_ctx) {
            Ok(Some(lock)) => page.locks.push(lock),
            Ok(None) => {}
            Err(error) => {
                tracing::warn!(%error, "list: a record shylock did not write is not listed");
            }
        }
    }
    Ok(page)
}

fn listed(
    record: &Document,
    now: Timestamp,
    ctx: &Ctx,
) -> Result<Option<ListedLock>, BackendError> {
    let Ok(id) = record.get_str(F_ID) else {
        return Err(unexpected(
            ctx,
            format!("the record's `_id` is not a string: {record}"),
        ));
    };
    let name = LockName::new(id).map_err(|e| unexpected(ctx, format!("`_id` {id:?}: {e}")))?;
    let parsed = parse_trusted(record, now, ctx)?;
    let Some(owner) = parsed.owner else {
        return Ok(None);
    };
    if parsed.expires_at <= now || parsed.expires_at > horizon(now) {
        return Ok(None);
    }
    let held_since = match record.get(F_ACQUIRED_AT) {
        Some(Bson::DateTime(d)) => Some(Timestamp::from_millis(d.timestamp_millis())),
        _ => None,
    };
    Ok(Some(ListedLock {
        name,
        owner: OwnerId::from_string(owner),
        token: parsed.token,
        expires_at: parsed.expires_at,
        held_since,
    }))
}

/// A live holding as a forced release reads it: the record's owner,
/// counters (as stored, to match them exactly) and token.
#[derive(Debug)]
pub(crate) struct Held {
    pub(crate) owner: OwnerId,
    pub(crate) token: FencingToken,
    epoch: Bson,
    seq: Bson,
}

/// Read the record (the `find` of [`inspect`]) for a forced release: the
/// holding, if it is held and live; an unreadable or untrusted record is
/// an error, as for inspect.
pub(crate) fn held(
    cmd_ctx: &Ctx,
    now: Timestamp,
    reply: Result<Option<Document>, MongoError>,
) -> Result<Option<Held>, BackendError> {
    let record = match reply {
        Ok(Some(record)) => record,
        Ok(None) => return Ok(None),
        Err(e) => return Err(map_error(cmd_ctx, e)),
    };
    let parsed = parse_trusted(&record, now, cmd_ctx)?;
    match parsed.owner {
        Some(owner) if parsed.expires_at > now && parsed.expires_at <= horizon(now) => {
            Ok(Some(Held {
                owner: OwnerId::from_string(owner),
                token: parsed.token,
                epoch: record.get(F_EPOCH).cloned().unwrap_or(Bson::Null),
                seq: record.get(F_SEQ).cloned().unwrap_or(Bson::Null),
            }))
        }
        _ => Ok(None),
    }
}

/// Forced release: one `findAndModify` that frees the record if it is
/// still the holding `held` read (same owner and counters, still live),
/// appends that owner to `releasers` and keeps the audit trail (README:
/// Forced release).
pub(crate) fn force_release(
    spec: &Spec,
    req: &ForceReleaseRequest<'_>,
    held: &Held,
) -> Result<FindAndModify, BackendError> {
    let ctx = spec.context("force release (findAndModify)", Some(req.name.as_str()));
    let deadline = bound(req.deadline, spec.request_timeout, &ctx)?;
    let owner = held.owner.as_str();
    let token = i64::try_from(held.token.get()).unwrap_or(i64::MAX);
    let now = date(req.now);
    Ok(FindAndModify {
        filter: doc! {
            F_ID: req.name.as_str(),
            F_OWNER: owner,
            F_EPOCH: held.epoch.clone(),
            F_SEQ: held.seq.clone(),
            F_EXPIRES_AT: { "$gt": now },
        },
        update: doc! {
            "$set": {
                F_OWNER: Bson::Null,
                F_EXPIRES_AT: now,
                F_FORCED_OWNER: owner,
                F_FORCED_TOKEN: token,
                F_FORCED_BY: req.by,
                F_FORCED_AT: now,
                F_REASON: req.reason,
            },
            "$push": { F_RELEASERS: { "$each": [owner], "$slice": -releasers_remembered() } },
            "$unset": { F_LEGACY_RELEASED_BY: "" },
        },
        options: find_and_modify_options(spec, deadline, false),
        ctx,
        deadline,
    })
}

/// Whether the record's last forced release ended `owner`'s holding.
pub(crate) fn forced_owner_is(record: &Document, owner: &OwnerId) -> bool {
    record.get_str(F_FORCED_OWNER).ok() == Some(owner.as_str())
}

/// Read the audit trail of the record's last forced release (the `find`
/// of [`inspect`]): `None` if it has none; fields of the wrong type are an
/// error.
pub(crate) fn audit_reply(
    cmd_ctx: &Ctx,
    reply: Result<Option<Document>, MongoError>,
) -> Result<Option<ForcedRelease>, BackendError> {
    let record = match reply {
        Ok(Some(record)) => record,
        Ok(None) => return Ok(None),
        Err(e) => return Err(map_error(cmd_ctx, e)),
    };
    let owner = match record.get(F_FORCED_OWNER) {
        None | Some(Bson::Null) => return Ok(None),
        Some(Bson::String(owner)) => owner.clone(),
        Some(other) => {
            return Err(unexpected(
                cmd_ctx,
                format!("the record's `{F_FORCED_OWNER}` is not a string: {other}"),
            ));
        }
    };
    let text = |key: &str| match record.get(key) {
        Some(Bson::String(s)) => Ok(s.clone()),
        _ => Err(unexpected(
            cmd_ctx,
            format!("the record has no string `{key}`: {record}"),
        )),
    };
    let token = get_int(&record, F_FORCED_TOKEN, cmd_ctx)?;
    Ok(Some(ForcedRelease {
        owner: OwnerId::from_string(owner),
        token: FencingToken(u64::try_from(token).unwrap_or(0)),
        by: text(F_FORCED_BY)?,
        at: get_date(&record, F_FORCED_AT, cmd_ctx)?,
        reason: text(F_REASON)?,
    }))
}

// ---------------------------------------------------------------------------
// Reading records
// ---------------------------------------------------------------------------

struct Parsed {
    owner: Option<String>,
    token: FencingToken,
    expires_at: Timestamp,
}

/// [`parse_record`], and the record's epoch not after the horizon and its
/// `seq` below [`SEQ_CEILING`]: a token from them could be above the tokens
/// of a record made after this one's deletion (tokens would fall).
fn parse_trusted(record: &Document, now: Timestamp, ctx: &Ctx) -> Result<Parsed, BackendError> {
    let parsed = parse_record(record, ctx)?;
    let epoch = get_int(record, F_EPOCH, ctx)?;
    let seq = get_int(record, F_SEQ, ctx)?;
    if epoch > horizon(now).as_millis() {
        return Err(unexpected(
            ctx,
            format!(
                "the record's `epoch` {epoch} is after the server time {now} plus {} days: \
                 it was not written by shylock, and a fencing token from it would be above \
                 the tokens of the record made once it is deleted; delete the record when no \
                 holder of a token from it remains (README: Records this library did not write)",
                RECORD_HORIZON.as_secs() / 86_400
            ),
        ));
    }
    if seq >= SEQ_CEILING {
        return Err(unexpected(
            ctx,
            format!(
                "the record's `seq` {seq} is not below {SEQ_CEILING}: it was not counted by \
                 grants; delete the record when no holder of a token from it remains \
                 (README: Records this library did not write)"
            ),
        ));
    }
    Ok(parsed)
}

fn parse_record(record: &Document, ctx: &Ctx) -> Result<Parsed, BackendError> {
    let owner = match record.get(F_OWNER) {
        None | Some(Bson::Null) => None,
        Some(Bson::String(s)) => Some(s.clone()),
        Some(other) => {
            return Err(unexpected(
                ctx,
                format!("the record's `owner` is not a string or null: {other}"),
            ));
        }
    };
    let epoch = get_int(record, F_EPOCH, ctx)?;
    let seq = get_int(record, F_SEQ, ctx)?;
    let token = token(epoch, seq).ok_or_else(|| {
        unexpected(
            ctx,
            format!("the record's epoch {epoch} and seq {seq} do not make a fencing token"),
        )
    })?;
    Ok(Parsed {
        owner,
        token,
        expires_at: get_date(record, F_EXPIRES_AT, ctx)?,
    })
}

/// `epoch * 1000 + seq`, if both are in range.
pub(crate) fn token(epoch: i64, seq: i64) -> Option<FencingToken> {
    let epoch = u64::try_from(epoch).ok()?;
    let seq = u64::try_from(seq).ok()?;
    if seq == 0 {
        return None;
    }
    epoch
        .checked_mul(SEQ_PER_EPOCH_MS)?
        .checked_add(seq)
        .map(FencingToken)
}

fn bson_int(value: &Bson) -> Option<i64> {
    match value {
        Bson::Int64(v) => Some(*v),
        Bson::Int32(v) => Some(i64::from(*v)),
        // Some servers and tools store integers as doubles.
        Bson::Double(v) if v.fract() == 0.0 && v.abs() < 9.0e15 => Some(*v as i64),
        _ => None,
    }
}

fn get_int(doc: &Document, key: &str, ctx: &Ctx) -> Result<i64, BackendError> {
    doc.get(key)
        .and_then(bson_int)
        .ok_or_else(|| unexpected(ctx, format!("the record has no integer `{key}`: {doc}")))
}

fn get_date(doc: &Document, key: &str, ctx: &Ctx) -> Result<Timestamp, BackendError> {
    match doc.get(key) {
        Some(Bson::DateTime(d)) => Ok(Timestamp::from_millis(d.timestamp_millis())),
        _ => Err(unexpected(
            ctx,
            format!("the reply has no date `{key}`: {doc}"),
        )),
    }
}

pub(crate) fn unexpected(ctx: &Ctx, what: String) -> BackendError {
    BackendError::new(BackendErrorKind::Unexpected, format!("{ctx}: {what}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::test_support::{command_error, ctx};
    use mongodb::bson::DateTime;

    #[test]
    fn acquire_replies() {
        let me = OwnerId::from_string("aa");
        let expires = DateTime::from_millis(5_000);
        let ours =
            doc! { "_id": "n", "owner": "aa", "epoch": 7_i64, "seq": 3_i64, "expiresAt": expires };
        assert_eq!(
            acquire_reply(&ctx(), &me, Ok(Some(ours))).expect("granted"),
            AcquireOutcome::Acquired(Grant {
                token: FencingToken(7003),
                expires_at: Timestamp::from_millis(5_000)
            })
        );
        // Int32 counters (written by other tools) are read too.
        let small =
            doc! { "_id": "n", "owner": "aa", "epoch": 7_i32, "seq": 3_i32, "expiresAt": expires };
        assert!(matches!(
            acquire_reply(&ctx(), &me, Ok(Some(small))),
            Ok(AcquireOutcome::Acquired(_))
        ));
        let dup = command_error(11000, "DuplicateKey", "E11000 duplicate key error");
        assert_eq!(
            acquire_reply(&ctx(), &me, Err(dup)).expect("busy"),
            AcquireOutcome::Busy { expires_at: None }
        );
        let theirs =
            doc! { "_id": "n", "owner": "bb", "epoch": 7_i64, "seq": 3_i64, "expiresAt": expires };
        let err = acquire_reply(&ctx(), &me, Ok(Some(theirs))).expect_err("not ours");
        assert_eq!(err.kind(), BackendErrorKind::Unexpected);
        let shapeless = doc! { "_id": "n", "owner": "aa" };
        let err = acquire_reply(&ctx(), &me, Ok(Some(shapeless))).expect_err("no fields");
        assert_eq!(err.kind(), BackendErrorKind::Unexpected);
        let err = acquire_reply(&ctx(), &me, Ok(None)).expect_err("no document");
        assert_eq!(err.kind(), BackendErrorKind::Unexpected);
    }

    #[test]
    fn inspect_replies() {
        let now = Timestamp::from_millis(1_000);
        let rec = |owner: Bson, at: i64| doc! { "_id": "n", "owner": owner, "epoch": 1_i64, "seq": 1_i64, "expiresAt": DateTime::from_millis(at) };
        let held = inspect_reply(&ctx(), now, Ok(Some(rec(Bson::String("aa".into()), 1_001))))
            .expect("ok");
        assert_eq!(held.map(|r| r.token), Some(FencingToken(1001)));
        assert_eq!(
            inspect_reply(&ctx(), now, Ok(Some(rec(Bson::String("aa".into()), 1_000))))
                .expect("ok"),
            None
        );
        assert_eq!(
            inspect_reply(&ctx(), now, Ok(Some(rec(Bson::Null, 9_000)))).expect("ok"),
            None
        );
        assert_eq!(inspect_reply(&ctx(), now, Ok(None)).expect("ok"), None);
    }

    #[test]
    fn regex_escape_makes_a_prefix_literal() {
        assert_eq!(regex_escape("jobs/a.b"), "jobs\\/a\\.b");
        assert_eq!(regex_escape("x(1)*[a]^$"), "x\\(1\\)\\*\\[a\\]\\^\\$");
        assert_eq!(regex_escape("plain"), "plain");
    }

    #[test]
    fn list_replies_skip_what_is_not_a_live_holding() {
        let now = Timestamp::from_millis(1_000);
        let req = ListRequest {
            prefix: None,
            after: None,
            limit: 3,
            now,
            deadline: None,
        };
        let rec = |id: Bson, owner: Bson, epoch: i64, at: i64| {
            doc! { "_id": id, "owner": owner, "epoch": epoch, "seq": 1_i64,
            "expiresAt": DateTime::from_millis(at), "acquiredAt": DateTime::from_millis(500) }
        };
        let held = rec(
            Bson::String("a".into()),
            Bson::String("aa".into()),
            1,
            2_000,
        );
        // A future epoch: untrusted, not listed.
        let future = rec(
            Bson::String("b".into()),
            Bson::String("bb".into()),
            i64::MAX / 2,
            2_000,
        );
        let expired = rec(Bson::String("c".into()), Bson::String("cc".into()), 1, 900);
        let page = list_reply(&ctx(), &req, Ok(vec![held, future, expired])).expect("a page");
        assert_eq!(page.locks.len(), 1, "{page:?}");
        assert_eq!(page.locks[0].name.as_str(), "a");
        assert_eq!(page.locks[0].token, FencingToken(1001));
        assert_eq!(page.locks[0].held_since, Some(Timestamp::from_millis(500)));
        // Three read: more may follow, from the last one read.
        assert_eq!(page.next.as_ref().map(LockName::as_str), Some("c"));
        let short = list_reply(&ctx(), &req, Ok(vec![])).expect("a page");
        assert_eq!(short, ListPage::default());
    }

    #[test]
    fn audit_replies() {
        let forced = doc! { "_id": "n", "owner": Bson::Null, "forcedOwner": "aa",
        "forcedToken": 7003_i64, "forcedBy": "ops", "forcedAt": DateTime::from_millis(9),
        "reason": "stuck" };
        let audit = audit_reply(&ctx(), Ok(Some(forced)))
            .expect("ok")
            .expect("forced");
        assert_eq!(
            (
                audit.owner.as_str(),
                audit.token,
                audit.by.as_str(),
                audit.reason.as_str()
            ),
            ("aa", FencingToken(7003), "ops", "stuck")
        );
        assert_eq!(audit.at, Timestamp::from_millis(9));
        assert!(forced_owner_is(
            &doc! { "forcedOwner": "aa" },
            &OwnerId::from_string("aa")
        ));
        assert!(!forced_owner_is(&doc! {}, &OwnerId::from_string("aa")));
        assert_eq!(
            audit_reply(&ctx(), Ok(Some(doc! { "_id": "n" }))).expect("ok"),
            None
        );
        assert_eq!(audit_reply(&ctx(), Ok(None)).expect("ok"), None);
        let bad = doc! { "_id": "n", "forcedOwner": 5_i32 };
        assert_eq!(
            audit_reply(&ctx(), Ok(Some(bad))).expect_err("bad").kind(),
            BackendErrorKind::Unexpected
        );
    }

    #[test]
    fn tokens() {
        assert_eq!(
            token(1_700_000_000_000, 1),
            Some(FencingToken(1_700_000_000_000_001))
        );
        assert_eq!(token(5, 1234), Some(FencingToken(6234)));
        assert_eq!(token(-1, 1), None);
        assert_eq!(token(1, 0), None);
        assert_eq!(token(i64::MAX, 1), None);
    }
}
