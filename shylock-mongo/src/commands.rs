//! The one definition of every command the backend sends (filters, updates,
//! options) and of how every reply is read. The async and the sync backends
//! only differ in how they call the driver; everything here is shared.

use std::time::{Duration, Instant};

use mongodb::IndexModel;
use mongodb::bson::{Bson, DateTime, Document, doc};
use mongodb::error::{
    Error as MongoError, ErrorKind, RETRYABLE_ERROR, RETRYABLE_WRITE_ERROR,
    SYSTEM_OVERLOADED_ERROR, WriteFailure,
};
use mongodb::options::{
    CommitQuorum, CreateCollectionOptions, CreateIndexOptions, FindOneAndUpdateOptions,
    FindOneOptions, IndexOptions, ListIndexesOptions, ReadConcern, ReadPreference, ReturnDocument,
    RunCommandOptions, SelectionCriteria, WriteConcern,
};
use shylock_core::Error;
use shylock_core::backend::{
    AcquireOutcome, AcquireRequest, Grant, InspectRequest, LockRecord, RELEASERS_REMEMBERED,
    ReleaseOutcome, ReleaseRequest, RenewOutcome, RenewRequest,
};
use shylock_core::{BackendError, BackendErrorKind, FencingToken, OwnerId, Timestamp};

use crate::options::{MIN_TTL_GRACE, MongoOptions};

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

/// The name of the TTL index on `expiresAt`.
pub(crate) const TTL_INDEX_NAME: &str = "shylock_expiresAt_ttl";

/// Grants per millisecond of `epoch` that fit below the next epoch's tokens.
const SEQ_PER_EPOCH_MS: u64 = 1000;

// Server error codes (src/mongo/base/error_codes.yml in the MongoDB source).
const CODE_INTERNAL_ERROR: i32 = 1;
const CODE_BAD_VALUE: i32 = 2;
const CODE_HOST_UNREACHABLE: i32 = 6;
const CODE_HOST_NOT_FOUND: i32 = 7;
const CODE_UNAUTHORIZED: i32 = 13;
const CODE_AUTHENTICATION_FAILED: i32 = 18;
const CODE_NAMESPACE_NOT_FOUND: i32 = 26;
const CODE_NAMESPACE_EXISTS: i32 = 48;
const CODE_MAX_TIME_MS_EXPIRED: i32 = 50;
const CODE_COMMAND_NOT_FOUND: i32 = 59;
const CODE_WRITE_CONCERN_FAILED: i32 = 64;
const CODE_INVALID_NAMESPACE: i32 = 73;
const CODE_INDEX_OPTIONS_CONFLICT: i32 = 85;
const CODE_INDEX_KEY_SPECS_CONFLICT: i32 = 86;
const CODE_NETWORK_TIMEOUT: i32 = 89;
const CODE_SHUTDOWN_IN_PROGRESS: i32 = 91;
const CODE_UNSATISFIABLE_WRITE_CONCERN: i32 = 100;
const CODE_WRITE_CONFLICT: i32 = 112;
const CODE_PRIMARY_STEPPED_DOWN: i32 = 189;
const CODE_NOT_IMPLEMENTED: i32 = 238;
const CODE_EXCEEDED_TIME_LIMIT: i32 = 262;
const CODE_TOO_MANY_REQUESTS: i32 = 16500;
const CODE_DUPLICATE_KEY: i32 = 11000;
const CODE_INTERRUPTED_AT_SHUTDOWN: i32 = 11600;
const CODE_INTERRUPTED_DUE_TO_REPL_STATE_CHANGE: i32 = 11602;
const CODE_NOT_WRITABLE_PRIMARY: i32 = 10107;
const CODE_NOT_PRIMARY_NO_SECONDARY_OK: i32 = 13435;
const CODE_NOT_PRIMARY_OR_SECONDARY: i32 = 13436;
const CODE_SOCKET_EXCEPTION: i32 = 9001;
const CODE_USER_NOT_FOUND: i32 = 11;
const CODE_TYPE_MISMATCH: i32 = 14;
const CODE_CANNOT_CREATE_INDEX: i32 = 67;
const CODE_COMMAND_NOT_SUPPORTED: i32 = 115;
const CODE_ILLEGAL_OPERATION: i32 = 20;
const CODE_FAILED_TO_SATISFY_READ_PREFERENCE: i32 = 133;
const CODE_NETWORK_INTERFACE_EXCEEDED_TIME_LIMIT: i32 = 202;

/// Longest database name MongoDB accepts, in bytes.
const MAX_DB_NAME_BYTES: usize = 63;
/// Longest namespace (`db.collection`) MongoDB 4.4+ accepts, in bytes.
const MAX_NAMESPACE_BYTES: usize = 255;

/// Everything a backend needs besides its driver handles: the namespace and
/// the validated options.
#[derive(Debug, Clone)]
pub(crate) struct Spec {
    pub(crate) db: String,
    pub(crate) collection: String,
    pub(crate) write_concern: WriteConcern,
    pub(crate) ttl_grace: Duration,
    pub(crate) allow_non_atomic_server: bool,
    pub(crate) setup_timeout: Duration,
    pub(crate) request_timeout: Duration,
}

impl Spec {
    /// Validate the database name and the options; nothing is sent.
    pub(crate) fn new(db: &str, options: &MongoOptions) -> Result<Spec, Error> {
        validate_db_name(db)?;
        validate_collection_name(db, options.get_collection())?;
        let refuse = |reason: String| Err(Error::InvalidConfig { reason });
        if options.get_ttl_grace() < MIN_TTL_GRACE {
            return refuse(format!(
                "ttl_grace must be at least {MIN_TTL_GRACE:?} (fencing tokens rely on it), got {:?}",
                options.get_ttl_grace()
            ));
        }
        if options.get_setup_timeout().is_zero() {
            return refuse("setup_timeout must not be zero".into());
        }
        if options.get_request_timeout().is_zero() {
            return refuse("request_timeout must not be zero".into());
        }
        Ok(Spec {
            db: db.to_owned(),
            collection: options.get_collection().to_owned(),
            write_concern: options.get_write_concern().clone(),
            ttl_grace: options.get_ttl_grace(),
            allow_non_atomic_server: options.get_allow_non_atomic_server(),
            setup_timeout: options.get_setup_timeout(),
            request_timeout: options.get_request_timeout(),
        })
    }

    /// The deadline of a set-up (`create`, `prepare`) begun now.
    pub(crate) fn setup_deadline(&self) -> Instant {
        Instant::now()
            .checked_add(self.setup_timeout)
            .unwrap_or_else(far_future)
    }

    /// `db.collection`.
    pub(crate) fn namespace(&self) -> String {
        format!("{}.{}", self.db, self.collection)
    }

    /// What [`describe`](shylock_core::backend::AsyncBackend::describe) says.
    pub(crate) fn describe(&self) -> String {
        format!("mongodb {}", self.namespace())
    }

    pub(crate) fn context(&self, op: &'static str, name: Option<&str>) -> Ctx {
        Ctx {
            op,
            namespace: self.namespace(),
            name: name.map(str::to_owned),
        }
    }
}

/// Where an error happened, for messages.
#[derive(Debug, Clone)]
pub(crate) struct Ctx {
    op: &'static str,
    namespace: String,
    name: Option<String>,
}

impl std::fmt::Display for Ctx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} on {}", self.op, self.namespace)?;
        if let Some(name) = &self.name {
            write!(f, " for lock {name:?}")?;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// Name validation (before anything is sent)
// ---------------------------------------------------------------------------

/// MongoDB's rules for database names (the union of its Unix and Windows
/// rules, so a name valid here is valid on every server).
pub(crate) fn validate_db_name(db: &str) -> Result<(), Error> {
    let refuse = |why: String| {
        Err(Error::InvalidConfig {
            reason: format!("invalid MongoDB database name {db:?}: {why}"),
        })
    };
    if db.is_empty() {
        return refuse("it is empty".into());
    }
    if db.len() > MAX_DB_NAME_BYTES {
        return refuse(format!(
            "it has {} bytes, at most {MAX_DB_NAME_BYTES} are allowed",
            db.len()
        ));
    }
    if let Some(c) = db.chars().find(|c| {
        matches!(
            c,
            '/' | '\\' | '.' | ' ' | '"' | '$' | '*' | '<' | '>' | ':' | '|' | '?' | '\0'
        )
    }) {
        return refuse(format!("it contains the character {c:?}"));
    }
    Ok(())
}

/// MongoDB's rules for collection names.
pub(crate) fn validate_collection_name(db: &str, coll: &str) -> Result<(), Error> {
    let refuse = |why: String| {
        Err(Error::InvalidConfig {
            reason: format!("invalid MongoDB collection name {coll:?}: {why}"),
        })
    };
    if coll.is_empty() {
        return refuse("it is empty".into());
    }
    if let Some(c) = coll.chars().find(|c| matches!(c, '$' | '\0')) {
        return refuse(format!("it contains the character {c:?}"));
    }
    if coll.starts_with('.') {
        return refuse("it starts with '.'".into());
    }
    if coll.starts_with("system.") {
        return refuse("names starting with `system.` are reserved".into());
    }
    let ns_len = db.len() + 1 + coll.len();
    if ns_len > MAX_NAMESPACE_BYTES {
        return refuse(format!(
            "the namespace `{db}.{coll}` has {ns_len} bytes, at most {MAX_NAMESPACE_BYTES} are allowed"
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Deadlines
// ---------------------------------------------------------------------------

/// A point in time far enough ahead to mean "never" (about 30 years).
fn far_future() -> Instant {
    let now = Instant::now();
    now.checked_add(Duration::from_secs(30 * 365 * 24 * 3600))
        .unwrap_or(now)
}

/// The deadline of one command: the caller's `deadline` or `cap` from now,
/// whichever comes first; a [`BackendErrorKind::Timeout`] error if the
/// caller's deadline has passed (nothing is sent then).
pub(crate) fn bound(
    deadline: Option<Instant>,
    cap: Duration,
    ctx: &Ctx,
) -> Result<Instant, BackendError> {
    let now = Instant::now();
    let capped = now.checked_add(cap).unwrap_or_else(far_future);
    let bound = deadline.map_or(capped, |d| d.min(capped));
    if bound <= now {
        Err(timeout_error(ctx))
    } else {
        Ok(bound)
    }
}

/// The error for an operation cut off at its deadline.
pub(crate) fn timeout_error(ctx: &Ctx) -> BackendError {
    BackendError::new(
        BackendErrorKind::Timeout,
        format!(
            "{ctx}: no answer from the server within the time allowed (the caller's limit, \
             the lease or MongoOptions::request_timeout); the outcome is unknown"
        ),
    )
}

/// A set-up step's failure as the caller's error: a timeout (the set-up
/// deadline passed, or the server gave up on `maxTimeMS`) says first what
/// was being waited for; the rest as [`Error::from`].
pub(crate) fn setup_error(spec: &Spec, e: BackendError) -> Error {
    if e.kind() != BackendErrorKind::Timeout {
        return Error::from(e);
    }
    Error::from(
        BackendError::new(
            BackendErrorKind::Timeout,
            format!(
                "no answer from the MongoDB server within {:?} (MongoOptions::setup_timeout) \
                 while setting up {}: is the server running and reachable at the connection \
                 string's hosts, with the right replicaSet, TLS and credentials? (Without \
                 this deadline the driver would keep trying for its serverSelectionTimeoutMS, \
                 30 s by default.)",
                spec.setup_timeout,
                spec.namespace(),
            ),
        )
        .with_source(e),
    )
}

/// `maxTimeMS` for a command due by `deadline`: whole milliseconds, at least 1.
fn max_time(deadline: Instant) -> Duration {
    let left = deadline.saturating_duration_since(Instant::now());
    Duration::from_millis(u64::try_from(left.as_millis()).unwrap_or(u64::MAX).max(1))
}

/// The configured write concern with a `wtimeout` no later than `deadline`,
/// so that a write never waits for ever for acknowledgements (a majority
/// that is down).
fn write_concern(spec: &Spec, deadline: Instant) -> WriteConcern {
    let mut wc = spec.write_concern.clone();
    let limit = max_time(deadline);
    wc.w_timeout = Some(wc.w_timeout.map_or(limit, |w| w.min(limit)));
    wc
}

fn primary() -> SelectionCriteria {
    SelectionCriteria::ReadPreference(ReadPreference::Primary)
}

fn date(t: Timestamp) -> DateTime {
    DateTime::from_millis(t.as_millis())
}

// ---------------------------------------------------------------------------
// The commands
// ---------------------------------------------------------------------------

/// One `findAndModify` command: filter, update and options.
#[derive(Debug)]
pub(crate) struct FindAndModify {
    pub(crate) filter: Document,
    pub(crate) update: Document,
    pub(crate) options: FindOneAndUpdateOptions,
    pub(crate) ctx: Ctx,
    /// Stop waiting for the answer then.
    pub(crate) deadline: Instant,
}

/// One `find` of a single record.
#[derive(Debug)]
pub(crate) struct FindOne {
    pub(crate) filter: Document,
    pub(crate) options: FindOneOptions,
    pub(crate) ctx: Ctx,
    /// Stop waiting for the answer then.
    pub(crate) deadline: Instant,
}

/// One database command (`hello`, `isMaster`, `buildInfo`, ...).
#[derive(Debug)]
pub(crate) struct Command {
    pub(crate) command: Document,
    pub(crate) options: RunCommandOptions,
    pub(crate) ctx: Ctx,
    /// Stop waiting for the answer then.
    pub(crate) deadline: Instant,
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

/// Acquire: one `findAndModify` with upsert.
///
/// The filter matches the record only if the requester is not among its
/// `releasers` and it is free, expired, or already the requester's; then the
/// update makes it the requester's, sets the new expiry and increments
/// `seq`. If there is no record, the upsert inserts one with `_id` = the
/// name, `seq` = 1 and `epoch` = now. If the record exists but is held by
/// another owner, or the requester released it (a late duplicate of its
/// request), the filter misses and the upsert's insert collides with the
/// existing `_id`: duplicate key error 11000, which means "busy".
///
/// Bounded by the caller's deadline, the lease (a grant that arrives after
/// its lease is worthless) and the command timeout.
pub(crate) fn acquire(
    spec: &Spec,
    req: &AcquireRequest<'_>,
) -> Result<FindAndModify, BackendError> {
    let ctx = spec.context("acquire (findAndModify)", Some(req.name.as_str()));
    let deadline = bound(req.deadline, spec.request_timeout.min(req.lease), &ctx)?;
    let now = date(req.now);
    let expires = date(req.now.saturating_add(req.lease));
    let owner = req.owner.as_str();
    Ok(FindAndModify {
        filter: doc! {
            F_ID: req.name.as_str(),
            // A released owner is never granted again: this request is a
            // late duplicate of one sent before the owner's release.
            F_RELEASERS: { "$ne": owner },
            "$or": [
                { F_OWNER: Bson::Null },
                { F_EXPIRES_AT: { "$lte": now } },
                { F_OWNER: owner },
            ],
        },
        update: doc! {
            // `$max`, not `$set`: a late duplicate of this owner's request
            // (sent earlier, so with an older `now`) must never shorten the
            // lease a later request of the same owner granted.
            "$set": { F_OWNER: owner },
            "$max": { F_EXPIRES_AT: expires },
            "$inc": { F_SEQ: 1_i64 },
            "$setOnInsert": { F_EPOCH: req.now.as_millis() },
        },
        options: find_and_modify_options(spec, deadline, true),
        ctx,
        deadline,
    })
}

/// Read the reply of [`acquire`].
pub(crate) fn acquire_reply(
    cmd_ctx: &Ctx,
    owner: &OwnerId,
    reply: Result<Option<Document>, MongoError>,
) -> Result<AcquireOutcome, BackendError> {
    match reply {
        Ok(Some(record)) => {
            let parsed = parse_record(&record, cmd_ctx)?;
            if parsed.owner.as_deref() != Some(owner.as_str()) {
                return Err(unexpected(
                    cmd_ctx,
                    format!(
                        "the record after the update is not ours (owner {:?}, expected {:?})",
                        parsed.owner,
                        owner.as_str()
                    ),
                ));
            }
            Ok(AcquireOutcome::Acquired(Grant {
                token: parsed.token,
                expires_at: parsed.expires_at,
            }))
        }
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

/// Renew: one `findAndModify` on `{_id, owner}` that sets the new expiry and
/// returns it. Bounded like [`acquire`].
pub(crate) fn renew(spec: &Spec, req: &RenewRequest<'_>) -> Result<FindAndModify, BackendError> {
    let ctx = spec.context("renew (findAndModify)", Some(req.name.as_str()));
    let deadline = bound(req.deadline, spec.request_timeout.min(req.lease), &ctx)?;
    let expires = date(req.now.saturating_add(req.lease));
    Ok(FindAndModify {
        filter: doc! { F_ID: req.name.as_str(), F_OWNER: req.owner.as_str() },
        // `$max`: a late renewal (older `now`) never shortens the lease a
        // later one extended.
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
/// requester's, and appends the requester to its `releasers` (keeping the
/// last [`RELEASERS_REMEMBERED`]): a late duplicate of the requester's
/// acquisition is refused from then on, and the same release sent again
/// (its first answer lost, on a deployment without retryable writes) finds
/// its own release and answers `Released` again instead of "not the owner"
/// (it appends the requester once more, which is harmless). The record is
/// kept, so its `seq` keeps rising for the next grant.
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
            "$or": [
                { F_OWNER: owner },
                { F_OWNER: Bson::Null, F_RELEASERS: owner },
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

/// Inspect: one `find` by `_id` on the primary, with read concern
/// `majority`: a grant that a failover could still roll back is not shown.
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
    let parsed = parse_record(&record, cmd_ctx)?;
    match parsed.owner {
        Some(owner) if parsed.expires_at > now => Ok(Some(LockRecord {
            owner: OwnerId::from_string(owner),
            token: parsed.token,
            expires_at: parsed.expires_at,
        })),
        _ => Ok(None),
    }
}

/// Server time: `hello`, or `isMaster` on servers that refuse `hello`
/// (MongoDB before 4.4.2 answers CommandNotFound; Azure Cosmos DB for
/// MongoDB has answered CommandNotSupported), whose reply carries the
/// server clock as `localTime`.
pub(crate) fn server_time(
    spec: &Spec,
    legacy: bool,
    deadline: Option<Instant>,
    cap: Duration,
) -> Result<Command, BackendError> {
    let name = if legacy { "isMaster" } else { "hello" };
    let ctx = spec.context(
        if legacy {
            "server time (isMaster)"
        } else {
            "server time (hello)"
        },
        None,
    );
    let deadline = bound(deadline, cap, &ctx)?;
    let mut options = RunCommandOptions::default();
    options.selection_criteria = Some(primary());
    Ok(Command {
        command: doc! { name: 1 },
        options,
        ctx,
        deadline,
    })
}

/// Whether the answer to `hello` means "ask `isMaster` instead": any error
/// the server answered, except the ones that say something about the
/// credentials or the moment (authorization, a node stepping down, a
/// timeout, rate limiting), and a reply without a `localTime` date.
pub(crate) fn hello_unsupported(reply: &Result<Document, MongoError>) -> bool {
    match reply {
        Ok(doc) => local_time(doc).is_none(),
        Err(e) => {
            server_code(e).is_some()
                && !matches!(
                    classify(e).0,
                    BackendErrorKind::Unauthorized
                        | BackendErrorKind::Unavailable
                        | BackendErrorKind::Timeout
                        | BackendErrorKind::RateLimited
                )
        }
    }
}

/// The latest epoch millisecond a clock may read: the end of year 9999 (no
/// server's clock is past it; a larger number is not a clock).
const MAX_CLOCK_MILLIS: i64 = 253_402_300_799_999;

/// The server's clock in a `hello`/`isMaster` reply: `localTime` as a BSON
/// date (MongoDB), or as a number of epoch milliseconds (DocumentDB's gateway
/// answers an Int64). `None` if there is none, or it is not a plausible clock
/// (negative, past year 9999, not a number).
pub(crate) fn local_time(reply: &Document) -> Option<Timestamp> {
    let millis = match reply.get("localTime")? {
        Bson::DateTime(d) => d.timestamp_millis(),
        Bson::Int64(ms) => *ms,
        Bson::Int32(ms) => i64::from(*ms),
        Bson::Double(ms) if ms.is_finite() && ms.abs() <= MAX_CLOCK_MILLIS as f64 => {
            ms.round() as i64
        }
        _ => return None,
    };
    (0..=MAX_CLOCK_MILLIS)
        .contains(&millis)
        .then(|| Timestamp::from_millis(millis))
}

/// Read the reply of [`server_time`]. A server that answers without a
/// `localTime` date gives no clock to judge leases by: refused with an
/// `InvalidConfig` error that says so.
pub(crate) fn server_time_reply(
    cmd_ctx: &Ctx,
    reply: Result<Document, MongoError>,
) -> Result<Timestamp, BackendError> {
    match reply {
        Ok(doc) => match local_time(&doc) {
            Some(t) => Ok(t),
            None => Err(BackendError::new(
                BackendErrorKind::InvalidConfig,
                format!(
                    "{cmd_ctx}: the server's hello and isMaster replies carry no `localTime`: \
                     shylock judges lease expiry by the server's clock and this server gives \
                     none, so it cannot be used (reply: {doc})"
                ),
            )),
        },
        Err(e) => Err(map_error(cmd_ctx, e)),
    }
}

// ---------------------------------------------------------------------------
// Refusing servers that can grant a lock twice
// ---------------------------------------------------------------------------

/// `buildInfo`, sent once per backend (by `prepare`, or before the first
/// acquisition of a backend made with `new`) to recognize servers whose
/// conditional single-document updates are not atomic.
pub(crate) fn build_info(
    spec: &Spec,
    deadline: Option<Instant>,
    cap: Duration,
) -> Result<Command, BackendError> {
    let ctx = spec.context("server check (buildInfo)", None);
    let deadline = bound(deadline, cap, &ctx)?;
    let mut options = RunCommandOptions::default();
    options.selection_criteria = Some(primary());
    Ok(Command {
        command: doc! { "buildInfo": 1 },
        options,
        ctx,
        deadline,
    })
}

/// The name and version of a server known not to run a conditional
/// single-document update (`findAndModify`) atomically across connections,
/// read from its `buildInfo` reply; `None` for any other server.
///
/// FerretDB adds its own version to `buildInfo` as `ferretdbVersion`
/// (`"v1.24.2"`; MongoDB has no such field). FerretDB v1 (and v0) runs a
/// conditional update as a query followed by a write by `_id` (its issue
/// 2168), so two connections can both be granted a lock. A FerretDB version
/// that cannot be read is treated as v1 (safety first); v2 and later (on
/// DocumentDB) are not flagged. A `ferretdb: {version: ...}` sub-document is
/// read the same way, in case a FerretDB reports itself so.
pub(crate) fn non_atomic_server(build_info: &Document) -> Option<String> {
    let version = match (
        build_info.get("ferretdbVersion"),
        build_info.get("ferretdb"),
    ) {
        (Some(v), _) => v,
        (None, Some(Bson::Document(sub))) => sub.get("version").unwrap_or(&Bson::Null),
        (None, Some(other)) => other,
        (None, None) => return None,
    };
    let text = match version {
        Bson::String(s) => s.trim().to_owned(),
        other => other.to_string(),
    };
    let major = text
        .trim_start_matches(['v', 'V'])
        .split('.')
        .next()
        .and_then(|m| m.parse::<u64>().ok());
    match major {
        Some(major) if major >= 2 => None,
        _ => Some(format!("FerretDB {text}")),
    }
}

/// What the `buildInfo` check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ServerCheck {
    /// Not a server known to break single-document atomicity (or the user
    /// opted in with `allow_non_atomic_server`).
    Allowed,
    /// A server that can grant a lock twice, and no opt-in: the reason.
    Refused(String),
}

/// Read the reply of [`build_info`]. A driver error that is not the
/// server's answer (unreachable, timed out) is an error, to be retried; a
/// server that answers `buildInfo` with an error is not FerretDB (which
/// implements it), so it passes. With the opt-in, a flagged server gets one
/// `tracing` warning per check.
pub(crate) fn server_check_reply(
    spec: &Spec,
    cmd_ctx: &Ctx,
    reply: Result<Document, MongoError>,
) -> Result<ServerCheck, BackendError> {
    let reply = match reply {
        Ok(reply) => reply,
        Err(e) if server_code(&e).is_some() => {
            tracing::debug!(namespace = %spec.namespace(), error = %e,
                "buildInfo answered an error; taking the server for MongoDB");
            return Ok(ServerCheck::Allowed);
        }
        Err(e) => return Err(map_error(cmd_ctx, e)),
    };
    let Some(server) = non_atomic_server(&reply) else {
        return Ok(ServerCheck::Allowed);
    };
    if spec.allow_non_atomic_server {
        tracing::warn!(
            namespace = %spec.namespace(),
            server = %server,
            "the server is {server}, whose conditional updates are not atomic across \
             connections (FerretDB issue 2168): a lock can be granted twice unless every \
             lock user goes through ONE connection (one process, a client with \
             max_pool_size(1)); running anyway because allow_non_atomic_server(true) was set"
        );
        return Ok(ServerCheck::Allowed);
    }
    Ok(ServerCheck::Refused(format!(
        "the server behind {} is {server}, which does not run a conditional single-document \
         update atomically across connections (FerretDB issue 2168: it runs the query, then \
         writes by _id), so it can grant a lock twice to contenders on different connections; \
         refusing it. For tests or single-connection use only (one process, a client with \
         max_pool_size(1)), opt in with MongoOptions::allow_non_atomic_server(true)",
        spec.namespace()
    )))
}

impl ServerCheck {
    /// As a set-up result: [`Error::InvalidConfig`] if refused.
    pub(crate) fn into_setup_result(self) -> Result<(), Error> {
        match self {
            ServerCheck::Allowed => Ok(()),
            ServerCheck::Refused(reason) => Err(Error::InvalidConfig { reason }),
        }
    }

    /// As a primitive's result: a [`BackendErrorKind::InvalidConfig`] error
    /// if refused.
    pub(crate) fn into_backend_result(self) -> Result<(), BackendError> {
        match self {
            ServerCheck::Allowed => Ok(()),
            ServerCheck::Refused(reason) => {
                Err(BackendError::new(BackendErrorKind::InvalidConfig, reason))
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Preparing the collection
// ---------------------------------------------------------------------------

/// What `prepare` learnt from the server's `hello`: whether index builds can
/// be given a commit quorum (replica sets and sharded clusters only; a
/// standalone server refuses the option).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Topology {
    pub(crate) replicated: bool,
}

impl Topology {
    /// From a `hello`/`isMaster` reply: `setName` (a replica set member) or
    /// `msg: "isdbgrid"` (mongos).
    pub(crate) fn from_hello(reply: &Document) -> Topology {
        let replicated = reply.contains_key("setName")
            || matches!(reply.get("msg"), Some(Bson::String(m)) if m == "isdbgrid");
        Topology { replicated }
    }
}

/// `create` of the collection (code 48, "already exists", is fine: another
/// process was first).
pub(crate) fn create_collection_options(spec: &Spec, deadline: Instant) -> CreateCollectionOptions {
    let mut options = CreateCollectionOptions::default();
    options.write_concern = Some(write_concern(spec, deadline));
    options
}

/// Read the reply of the collection's `create`.
pub(crate) fn create_collection_reply(
    spec: &Spec,
    reply: Result<(), MongoError>,
) -> Result<(), Error> {
    match reply {
        Ok(()) => Ok(()),
        Err(e) if server_code(&e) == Some(CODE_NAMESPACE_EXISTS) => Ok(()),
        Err(e) => Err(Error::from(map_error(
            &spec.context("create collection", None),
            e,
        ))),
    }
}

/// The TTL index that garbage-collects records `ttl_grace` after their lease
/// ended or they were released.
pub(crate) fn ttl_index(spec: &Spec) -> IndexModel {
    let mut options = IndexOptions::default();
    options.name = Some(TTL_INDEX_NAME.to_owned());
    options.expire_after = Some(spec.ttl_grace);
    let mut model = IndexModel::default();
    model.keys = doc! { F_EXPIRES_AT: 1 };
    model.options = Some(options);
    model
}

/// Options of the TTL index creation: the write concern, `maxTimeMS` (the
/// set-up time left) and, on replica sets and sharded clusters, commit
/// quorum `majority` (the default, all voting members, waits for ever when
/// one of them is down).
pub(crate) fn ttl_index_options(
    spec: &Spec,
    topology: Topology,
    deadline: Instant,
) -> CreateIndexOptions {
    let mut options = CreateIndexOptions::default();
    options.write_concern = Some(write_concern(spec, deadline));
    options.max_time = Some(max_time(deadline));
    if topology.replicated {
        options.commit_quorum = Some(CommitQuorum::Majority);
    }
    options
}

/// Read the reply of the TTL index creation: a server that cannot make TTL
/// indexes (FerretDB: 238 NotImplemented) gets a warning; an index of the
/// same name or keys with other options is checked by [`check_indexes`].
pub(crate) fn ttl_index_reply(spec: &Spec, reply: Result<(), MongoError>) -> Result<(), Error> {
    match reply {
        Ok(()) => Ok(()),
        Err(e) => match server_code(&e) {
            // FerretDB: NotImplemented. Other servers that refuse this TTL
            // index (for example Azure Cosmos DB, which only offers TTL on
            // its own `_ts` field) answer with one of the others.
            Some(
                CODE_NOT_IMPLEMENTED
                | CODE_COMMAND_NOT_FOUND
                | CODE_CANNOT_CREATE_INDEX
                | CODE_COMMAND_NOT_SUPPORTED
                | CODE_BAD_VALUE,
            ) => {
                tracing::warn!(
                    namespace = %spec.namespace(),
                    error = %e,
                    "the server cannot make the TTL index on `expiresAt`: old lock records \
                     will not be deleted automatically (locks still expire: the acquire \
                     itself checks `expiresAt`)"
                );
                Ok(())
            }
            Some(CODE_INDEX_OPTIONS_CONFLICT) | Some(CODE_INDEX_KEY_SPECS_CONFLICT) => {
                tracing::warn!(
                    namespace = %spec.namespace(),
                    error = %e,
                    "an index on `expiresAt` or named `{TTL_INDEX_NAME}` already exists with \
                     other options; keeping it (change its expireAfterSeconds with collMod)"
                );
                Ok(())
            }
            _ => Err(Error::from(map_error(
                &spec.context("create TTL index", None),
                e,
            ))),
        },
    }
}

/// Options of `listIndexes` (through the driver's `Collection::list_indexes`).
pub(crate) fn list_indexes_options(deadline: Instant) -> ListIndexesOptions {
    let mut options = ListIndexesOptions::default();
    options.max_time = Some(max_time(deadline));
    options
}

/// The context of `listIndexes`, for errors.
pub(crate) fn list_indexes_ctx(spec: &Spec) -> Ctx {
    spec.context("list indexes", None)
}

/// Check the collection's indexes (as `Collection::list_indexes` lists
/// them):
/// * a unique index on anything but `_id` would make acquisitions of
///   different names collide (for example the Python shylock's unique index
///   on `name`, if its collection is reused): refused;
/// * a TTL index on `expiresAt` with a shorter expiry than
///   [`MIN_TTL_GRACE`] would delete records too early for fencing tokens to
///   keep rising: refused.
pub(crate) fn check_indexes(
    spec: &Spec,
    reply: Result<Vec<IndexModel>, MongoError>,
) -> Result<(), Error> {
    let indexes = match reply {
        Ok(indexes) => indexes,
        // A server that lost the collection in between, or cannot list:
        // nothing to check.
        Err(e)
            if matches!(
                server_code(&e),
                Some(CODE_NAMESPACE_NOT_FOUND) | Some(CODE_NOT_IMPLEMENTED)
            ) =>
        {
            return Ok(());
        }
        Err(e) => return Err(Error::from(map_error(&list_indexes_ctx(spec), e))),
    };
    for index in indexes {
        let options = index.options.as_ref();
        let name = options.and_then(|o| o.name.as_deref()).unwrap_or("?");
        let keys = &index.keys;
        let key_names: Vec<&str> = keys.keys().map(String::as_str).collect();
        let unique = options.and_then(|o| o.unique) == Some(true);
        if unique && key_names != [F_ID] {
            return Err(Error::InvalidConfig {
                reason: format!(
                    "collection {} has the unique index `{name}` on {keys}, which would make \
                     lock records of different names collide (is it the Python shylock's \
                     collection?); use another collection or drop that index",
                    spec.namespace()
                ),
            });
        }
        if key_names == [F_EXPIRES_AT]
            && let Some(expiry) = options.and_then(|o| o.expire_after)
            && expiry < MIN_TTL_GRACE
        {
            return Err(Error::InvalidConfig {
                reason: format!(
                    "collection {} has the TTL index `{name}` on `expiresAt` with \
                     expireAfterSeconds {}: lock records would be deleted too soon \
                     after their lease ends for fencing tokens to keep rising (at least \
                     {} s needed); change it with collMod or drop it",
                    spec.namespace(),
                    expiry.as_secs(),
                    MIN_TTL_GRACE.as_secs(),
                ),
            });
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Sharding: `_id` must be unique across the whole collection
// ---------------------------------------------------------------------------

/// The `config.collections` lookup of the lock collection (`find` by
/// `_id` = the namespace): on a sharded cluster (through mongos) it says how
/// the collection is sharded; elsewhere there is no such entry.
pub(crate) fn shard_key_lookup(spec: &Spec, deadline: Instant) -> FindOne {
    let mut options = FindOneOptions::default();
    options.max_time = Some(max_time(deadline));
    options.selection_criteria = Some(primary());
    FindOne {
        filter: doc! { F_ID: spec.namespace() },
        options,
        ctx: spec.context("sharding check (config.collections)", None),
        deadline,
    }
}

/// Azure Cosmos DB for MongoDB (RU) keeps partitioning to itself; its
/// extension command `customAction: GetCollection` answers the collection's
/// `shardKeyDefinition`. Other servers answer an error, which is ignored.
pub(crate) fn cosmos_get_collection(spec: &Spec, deadline: Instant) -> Command {
    let mut options = RunCommandOptions::default();
    options.selection_criteria = Some(primary());
    Command {
        command: doc! { "customAction": "GetCollection", "collection": spec.collection.as_str() },
        options,
        ctx: spec.context("sharding check (customAction GetCollection)", None),
        deadline,
    }
}

/// The verdict on a shard key: only `_id` (ranged or hashed) keeps `_id`
/// unique across the collection. MongoDB 7.0+ runs an upsert that filters
/// on `_id` without the shard key on a collection sharded on another key,
/// where `_id` is unique only per shard: a busy acquisition could insert a
/// second record on another shard and grant the lock twice.
fn check_shard_key(spec: &Spec, key: &Document, source: &str) -> Result<(), Error> {
    let names: Vec<&str> = key.keys().map(String::as_str).collect();
    if names.is_empty() || names == [F_ID] {
        return Ok(());
    }
    Err(Error::InvalidConfig {
        reason: format!(
            "collection {} is sharded (or partitioned) on {key} ({source}): `_id` is then \
             unique only within each shard, and an acquisition could insert a second record \
             for a held lock on another shard and grant it twice; use an unsharded \
             collection, or one sharded on {{_id: 1}} or {{_id: \"hashed\"}}",
            spec.namespace()
        ),
    })
}

/// Read the reply of [`shard_key_lookup`]. An entry that is dropped or
/// `unsplittable` (MongoDB 8.0's tracked unsharded collections) is
/// unsharded. A lookup the server refuses (a user without read access to
/// `config`, a server without it) is logged and passes: the check can only
/// refuse what it sees.
pub(crate) fn shard_key_reply(
    spec: &Spec,
    reply: Result<Option<Document>, MongoError>,
) -> Result<(), Error> {
    let entry = match reply {
        Ok(Some(entry)) => entry,
        Ok(None) => return Ok(()),
        Err(e) if server_code(&e).is_some() => {
            tracing::info!(namespace = %spec.namespace(), error = %e,
                "could not read config.collections to check how the lock collection is \
                 sharded; make sure it is unsharded or sharded on _id");
            return Ok(());
        }
        Err(e) => {
            return Err(Error::from(map_error(
                &spec.context("sharding check", None),
                e,
            )));
        }
    };
    let flag = |f: &str| matches!(entry.get(f), Some(Bson::Boolean(true)));
    if flag("dropped") || flag("unsplittable") {
        return Ok(());
    }
    match entry.get("key") {
        Some(Bson::Document(key)) => check_shard_key(spec, key, "config.collections"),
        _ => Ok(()),
    }
}

/// Read the reply of [`cosmos_get_collection`]: a `shardKeyDefinition` on
/// anything but `_id` is refused; errors (every server but Cosmos DB RU)
/// pass.
pub(crate) fn cosmos_get_collection_reply(
    spec: &Spec,
    reply: Result<Document, MongoError>,
) -> Result<(), Error> {
    match reply {
        Ok(doc) => match doc.get("shardKeyDefinition") {
            Some(Bson::Document(key)) => check_shard_key(spec, key, "Cosmos DB shardKeyDefinition"),
            _ => Ok(()),
        },
        Err(e) if server_code(&e).is_some() => Ok(()),
        Err(e) => Err(Error::from(map_error(
            &spec.context("sharding check", None),
            e,
        ))),
    }
}

// ---------------------------------------------------------------------------
// Reading records
// ---------------------------------------------------------------------------

struct Parsed {
    owner: Option<String>,
    token: FencingToken,
    expires_at: Timestamp,
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

fn unexpected(ctx: &Ctx, what: String) -> BackendError {
    BackendError::new(BackendErrorKind::Unexpected, format!("{ctx}: {what}"))
}

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

/// The server's error code of a driver error, if the server answered one.
pub(crate) fn server_code(e: &MongoError) -> Option<i32> {
    match e.kind.as_ref() {
        ErrorKind::Command(c) => Some(c.code),
        ErrorKind::Write(WriteFailure::WriteError(w)) => Some(w.code),
        ErrorKind::Write(WriteFailure::WriteConcernError(w)) => Some(w.code),
        _ => None,
    }
}

fn server_message(e: &MongoError) -> Option<&str> {
    match e.kind.as_ref() {
        ErrorKind::Command(c) => Some(&c.message),
        ErrorKind::Write(WriteFailure::WriteError(w)) => Some(&w.message),
        ErrorKind::Write(WriteFailure::WriteConcernError(w)) => Some(&w.message),
        _ => None,
    }
}

/// `RetryAfterMs=NNN` in an Azure Cosmos DB error message.
pub(crate) fn retry_after(message: &str) -> Option<Duration> {
    let start = message.find("RetryAfterMs=")? + "RetryAfterMs=".len();
    let digits: String = message[start..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse::<u64>().ok().map(Duration::from_millis)
}

/// An error of the `mongodb` driver, as the source of a
/// [`BackendError`]: shown by its kind (for a server's refusal: the code,
/// its name and the server's message) and its labels, without the raw
/// server reply that the driver's own `Display` dumps. The driver's error is
/// [`get_ref`](Self::get_ref); find it with
/// `std::error::Error::source(&backend_error)` and `downcast_ref::<DriverError>()`.
#[derive(Debug)]
pub struct DriverError(MongoError);

impl DriverError {
    /// The driver's error.
    pub fn get_ref(&self) -> &MongoError {
        &self.0
    }

    /// The driver's error, owned.
    pub fn into_inner(self) -> MongoError {
        self.0
    }
}

impl std::fmt::Display for DriverError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0.kind)?;
        let labels = self.0.labels();
        if !labels.is_empty() {
            let mut labels: Vec<&str> = labels.iter().map(String::as_str).collect();
            labels.sort_unstable();
            write!(f, " (labels: {})", labels.join(", "))?;
        }
        Ok(())
    }
}

impl std::error::Error for DriverError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        std::error::Error::source(&self.0)
    }
}

/// Map a driver error to a [`BackendError`] of the right kind; where the
/// fix is known (retryable writes on a server without them, a TLS or DNS
/// misconfiguration), the message says it first.
pub(crate) fn map_error(ctx: &Ctx, e: MongoError) -> BackendError {
    let (kind, retry) = classify(&e);
    let message = match hint(&e) {
        Some(hint) => format!("{ctx}: {hint}"),
        None => ctx.to_string(),
    };
    let mut err = BackendError::new(kind, message).with_source(DriverError(e));
    if let Some(delay) = retry {
        err = err.with_retry_after(delay);
    }
    err
}

/// A server without retryable writes (Amazon DocumentDB before 8.0.2, a
/// standalone MongoDB) refusing the driver's default `retryWrites=true`.
fn retryable_writes_refused(e: &MongoError) -> bool {
    let Some(message) = server_message(e) else {
        return false;
    };
    let lower = message.to_ascii_lowercase();
    (server_code(e) == Some(CODE_ILLEGAL_OPERATION) && lower.starts_with("transaction numbers"))
        || lower.contains("does not support retryable writes")
        || (lower.contains("retryable writes") && lower.contains("not supported"))
}

/// Words of a server-selection error that name a TLS failure.
const TLS_SIGNS: &[&str] = &[
    "certificate",
    "tls handshake",
    "invalidcontenttype",
    "received corrupt message",
    "peer is incompatible",
    "peer misbehaved",
    "invalid dns name",
    "unknownissuer",
];

/// Words of a server-selection error that name a host that does not exist
/// (not a resolver that is down, which is transient).
const DNS_SIGNS: &[&str] = &[
    "name or service not known",
    "nodename nor servname provided",
    "no such host is known",
    "no address associated with hostname",
    "nxdomain",
];

/// A server-selection error whose servers all failed for a reason that
/// waiting does not cure: a TLS misconfiguration or a host name that does
/// not exist.
fn misconfigured_selection(e: &MongoError) -> Option<&'static str> {
    let ErrorKind::ServerSelection { message, .. } = e.kind.as_ref() else {
        return None;
    };
    misconfiguration_in(message)
}

/// [`misconfigured_selection`] on the text of a server-selection error.
fn misconfiguration_in(message: &str) -> Option<&'static str> {
    let lower = message.to_ascii_lowercase();
    if TLS_SIGNS.iter().any(|s| lower.contains(s)) {
        Some("TLS failed: check `tls`, `tlsCAFile`, `tlsCertificateKeyFile` and the host names")
    } else if DNS_SIGNS.iter().any(|s| lower.contains(s)) {
        Some("a host name in the connection string does not resolve")
    } else {
        None
    }
}

/// What to tell the user first, where the fix is known.
fn hint(e: &MongoError) -> Option<String> {
    if retryable_writes_refused(e) {
        return Some(
            "this server does not support retryable writes (Amazon DocumentDB before 8.0.2, a \
             standalone server): add `retryWrites=false` to the connection string. Without \
             them, a lock command whose answer is lost is not retried by the driver: an \
             acquisition whose answer was lost is released when the acquisition gives up or \
             expires with its lease, and a release is sent again and recognises its own \
             earlier success"
                .to_owned(),
        );
    }
    misconfigured_selection(e).map(|what| {
        format!("{what}; no server could be selected, and waiting will not change that")
    })
}

/// PostgreSQL states that DocumentDB's gateway passes through as packed
/// codes (see [`sqlstate_code`]) and that pass: the server is starting
/// (`57P03`, code 50463173: "the database system is starting up", "... not
/// yet accepting connections"), shutting down or restarting after a crash
/// (`57P01`, `57P02`), out of connections (`53300`), its connection failed
/// (`08000`, `08003`, `08006`, `08001`, `08004`), or a serialization failure
/// (`40001`). A deadlock (`40P01`) already comes as 112, WriteConflict.
const DOCUMENTDB_TRANSIENT_SQLSTATES: [&str; 10] = [
    "57P03", "57P01", "57P02", "53300", "08000", "08003", "08006", "08001", "08004", "40001",
];

/// The error code DocumentDB's gateway gives a PostgreSQL error it has no
/// MongoDB code for: the five SQLSTATE characters, each as `(c - '0') & 0x3f`,
/// six bits apiece from the lowest (`57P03` is 50463173).
pub(crate) const fn sqlstate_code(state: &str) -> i32 {
    let bytes = state.as_bytes();
    let mut code = 0;
    let mut i = 0;
    while i < bytes.len() {
        code |= ((bytes[i].wrapping_sub(b'0') & 0x3f) as i32) << (6 * i);
        i += 1;
    }
    code
}

/// Words of an authentication failure that is not about the credentials but
/// about the connection, or the server behind the one answering (DocumentDB's
/// gateway asks PostgreSQL for the SCRAM secrets): the handshake of a
/// connection that closed, or of a gateway that could not reach PostgreSQL.
const UNREACHABLE_SIGNS: &[&str] = &[
    "error connecting to server",
    "connection refused",
    "the database system is starting up",
    "not yet accepting connections",
    "the database system is shutting down",
    "the database system is in recovery mode",
    "too many clients",
    "connection reset",
    "connection closed",
    "broken pipe",
    "unexpected eof",
    "early eof",
    "timed out",
    "server closed the connection",
];

/// Whether an authentication failure's `message` says that the connection
/// failed, or that the server could not reach its own storage (see
/// [`UNREACHABLE_SIGNS`]), rather than that the credentials are wrong.
fn server_unreachable_in(message: &str) -> bool {
    let lower = message.to_ascii_lowercase();
    UNREACHABLE_SIGNS.iter().any(|s| lower.contains(s))
}

/// The kind of a driver error (see the error table in the crate docs).
pub(crate) fn classify(e: &MongoError) -> (BackendErrorKind, Option<Duration>) {
    use BackendErrorKind as K;
    if retryable_writes_refused(e) {
        return (K::InvalidConfig, None);
    }
    if let Some(code) = server_code(e) {
        let kind = match code {
            CODE_TOO_MANY_REQUESTS => {
                return (K::RateLimited, server_message(e).and_then(retry_after));
            }
            CODE_UNAUTHORIZED | CODE_AUTHENTICATION_FAILED | CODE_USER_NOT_FOUND => K::Unauthorized,
            CODE_INVALID_NAMESPACE | CODE_UNSATISFIABLE_WRITE_CONCERN => K::InvalidConfig,
            CODE_MAX_TIME_MS_EXPIRED
            | CODE_WRITE_CONCERN_FAILED
            | CODE_NETWORK_TIMEOUT
            | CODE_EXCEEDED_TIME_LIMIT
            | CODE_NETWORK_INTERFACE_EXCEEDED_TIME_LIMIT => K::Timeout,
            // InternalError: Azure Cosmos DB answers it for passing faults.
            CODE_INTERNAL_ERROR
            | CODE_HOST_UNREACHABLE
            | CODE_HOST_NOT_FOUND
            | CODE_SHUTDOWN_IN_PROGRESS
            | CODE_WRITE_CONFLICT
            | CODE_FAILED_TO_SATISFY_READ_PREFERENCE
            | CODE_PRIMARY_STEPPED_DOWN
            | CODE_INTERRUPTED_AT_SHUTDOWN
            | CODE_INTERRUPTED_DUE_TO_REPL_STATE_CHANGE
            | CODE_NOT_WRITABLE_PRIMARY
            | CODE_NOT_PRIMARY_NO_SECONDARY_OK
            | CODE_NOT_PRIMARY_OR_SECONDARY
            | CODE_SOCKET_EXCEPTION => K::Unavailable,
            // A record that is not shaped as expected (for example `seq` not a
            // number) makes the update fail with TypeMismatch or BadValue.
            CODE_BAD_VALUE | CODE_TYPE_MISMATCH | CODE_NOT_IMPLEMENTED => K::Unexpected,
            // DocumentDB: PostgreSQL starting, stopping, out of connections
            // or losing its connection, or a serialization failure.
            _ if DOCUMENTDB_TRANSIENT_SQLSTATES
                .iter()
                .any(|s| sqlstate_code(s) == code) =>
            {
                K::Unavailable
            }
            _ if e.contains_label(RETRYABLE_WRITE_ERROR)
                || e.contains_label(RETRYABLE_ERROR)
                || e.contains_label(SYSTEM_OVERLOADED_ERROR) =>
            {
                K::Unavailable
            }
            _ => K::Other,
        };
        return (kind, None);
    }
    let kind = match e.kind.as_ref() {
        ErrorKind::ServerSelection { .. } if misconfigured_selection(e).is_some() => {
            K::InvalidConfig
        }
        ErrorKind::ServerSelection { .. }
        | ErrorKind::ConnectionPoolCleared { .. }
        | ErrorKind::DnsResolve { .. } => K::Unavailable,
        ErrorKind::Io(io) => {
            if io.kind() == std::io::ErrorKind::TimedOut {
                K::Timeout
            } else {
                K::Unavailable
            }
        }
        // DocumentDB's gateway checks SCRAM passwords against PostgreSQL:
        // while PostgreSQL is down or restarting, the handshake fails with
        // its connection error, which passes.
        ErrorKind::Authentication { message, .. } if server_unreachable_in(message) => {
            K::Unavailable
        }
        ErrorKind::Authentication { .. } => K::Unauthorized,
        ErrorKind::InvalidArgument { .. }
        | ErrorKind::InvalidTlsConfig { .. }
        | ErrorKind::IncompatibleServer { .. } => K::InvalidConfig,
        ErrorKind::InvalidResponse { .. }
        | ErrorKind::BsonDeserialization(_)
        | ErrorKind::BsonSerialization(_) => K::Unexpected,
        _ => K::Other,
    };
    (kind, None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use mongodb::bson::from_document;
    use mongodb::error::{CommandError, WriteConcernError};

    fn command_error(code: i32, name: &str, msg: &str) -> MongoError {
        let ce: CommandError =
            from_document(doc! { "code": code, "codeName": name, "errmsg": msg })
                .expect("a command error");
        MongoError::from(ErrorKind::Command(ce))
    }

    fn ctx() -> Ctx {
        Ctx {
            op: "test",
            namespace: "db.shylock".into(),
            name: Some("n".into()),
        }
    }

    fn kind_of(e: MongoError) -> (BackendErrorKind, Option<Duration>) {
        let err = map_error(&ctx(), e);
        (err.kind(), err.retry_after())
    }

    #[test]
    fn server_errors_map_to_kinds() {
        use BackendErrorKind as K;
        let cosmos = "Message: {\"Errors\":[\"Request rate is large.\"]}, Error=16500, RetryAfterMs=37, Details=''";
        assert_eq!(
            kind_of(command_error(16500, "TooManyRequests", cosmos)),
            (K::RateLimited, Some(Duration::from_millis(37)))
        );
        assert_eq!(
            kind_of(command_error(16500, "TooManyRequests", "slow down")),
            (K::RateLimited, None)
        );
        assert_eq!(
            kind_of(command_error(13, "Unauthorized", "not authorized")).0,
            K::Unauthorized
        );
        assert_eq!(
            kind_of(command_error(18, "AuthenticationFailed", "bad password")).0,
            K::Unauthorized
        );
        assert_eq!(
            kind_of(command_error(73, "InvalidNamespace", "bad name")).0,
            K::InvalidConfig
        );
        assert_eq!(
            kind_of(command_error(50, "MaxTimeMSExpired", "too slow")).0,
            K::Timeout
        );
        assert_eq!(
            kind_of(command_error(10107, "NotWritablePrimary", "stepped down")).0,
            K::Unavailable
        );
        assert_eq!(
            kind_of(command_error(11600, "InterruptedAtShutdown", "bye")).0,
            K::Unavailable
        );
        assert_eq!(
            kind_of(command_error(14, "TypeMismatch", "seq is a string")).0,
            K::Unexpected
        );
        assert_eq!(kind_of(command_error(12345, "Whatever", "?")).0, K::Other);
        let wce: WriteConcernError =
            from_document(doc! { "code": 64, "codeName": "WriteConcernFailed", "errmsg": "waiting for replication timed out" })
                .expect("a write concern error");
        assert_eq!(
            kind_of(MongoError::from(ErrorKind::Write(
                WriteFailure::WriteConcernError(wce)
            )))
            .0,
            K::Timeout
        );
    }

    // Issue 11 item 7: transient errors that were fatal.
    #[test]
    fn transient_server_errors_are_retried() {
        use BackendErrorKind as K;
        for (code, name) in [(1, "InternalError"), (133, "FailedToSatisfyReadPreference")] {
            assert_eq!(
                kind_of(command_error(code, name, "passing")).0,
                K::Unavailable,
                "{name}"
            );
        }
        assert_eq!(
            kind_of(command_error(
                202,
                "NetworkInterfaceExceededTimeLimit",
                "election"
            ))
            .0,
            K::Timeout
        );
    }

    // Issue 11 item 2: DocumentDB (and a standalone server) refusing
    // retryable writes is a configuration error that says what to add.
    #[test]
    fn retryable_writes_refusal_says_what_to_add() {
        for (code, name, msg) in [
            (
                301,
                "IllegalOperation",
                "Retryable writes are not supported",
            ),
            (
                20,
                "IllegalOperation",
                "Transaction numbers are only allowed on a replica set member or mongos",
            ),
            (
                20,
                "IllegalOperation",
                "This MongoDB deployment does not support retryable writes. Please add \
                 retryWrites=false to your connection string.",
            ),
        ] {
            let err = map_error(&ctx(), command_error(code, name, msg));
            assert_eq!(err.kind(), BackendErrorKind::InvalidConfig, "{msg}");
            assert!(err.to_string().contains("retryWrites=false"), "{err}");
        }
    }

    // Issue 11 item 7, the reverse: a TLS or DNS misconfiguration arrives
    // as a server-selection error and must not be retried for ever.
    #[test]
    fn misconfigured_server_selection_is_fatal() {
        // (ServerSelection errors cannot be built outside the driver: the
        // texts are read here; tests/errors.rs shows a real TLS failure.)
        let tls = "Server selection timeout: No available servers. Topology: { Type: Unknown, \
             Servers: [ { Address: db:27017, Type: Unknown, Error: Kind: I/O error: invalid \
             peer certificate: UnknownIssuer, labels: {} } ] }";
        assert!(misconfiguration_in(tls).is_some_and(|m| m.contains("TLS")));
        let dns = "Server selection timeout: No available servers. Topology: { Type: Unknown, \
             Servers: [ { Address: nosuch.invalid:27017, Type: Unknown, Error: Kind: I/O \
             error: failed to lookup address information: Name or service not known } ] }";
        assert!(misconfiguration_in(dns).is_some());
        let down = "Server selection timeout: No available servers. Topology: { Type: Unknown, \
             Servers: [ { Address: 127.0.0.1:1, Type: Unknown, Error: Kind: I/O error: \
             Connection refused (os error 111), labels: {} } ] }";
        assert_eq!(misconfiguration_in(down), None);
    }

    // Issue 11 item 1: Cosmos DB answers `hello` with 115 CommandNotSupported;
    // any non-auth command error, and a reply without a clock, mean "ask
    // isMaster"; a server without any clock is refused clearly.
    #[test]
    fn hello_falls_back_to_is_master() {
        let refused = |code, name| Err(command_error(code, name, "no hello here"));
        assert!(hello_unsupported(&refused(115, "CommandNotSupported")));
        assert!(hello_unsupported(&refused(59, "CommandNotFound")));
        assert!(hello_unsupported(&refused(12345, "Whatever")));
        assert!(!hello_unsupported(&refused(13, "Unauthorized")));
        assert!(!hello_unsupported(&refused(18, "AuthenticationFailed")));
        assert!(!hello_unsupported(&refused(91, "ShutdownInProgress")));
        assert!(hello_unsupported(&Ok(doc! { "ok": 1.0 })));
        assert!(!hello_unsupported(&Ok(
            doc! { "localTime": DateTime::from_millis(5), "ok": 1.0 }
        )));
        let err = server_time_reply(&ctx(), Ok(doc! { "ismaster": true, "ok": 1.0 }))
            .expect_err("no clock");
        assert_eq!(err.kind(), BackendErrorKind::InvalidConfig);
        assert!(err.to_string().contains("localTime"), "{err}");
    }

    // Issue 17: DocumentDB's gateway answers `hello.localTime` as an Int64 of
    // epoch milliseconds, not a BSON date; that is a clock (no fallback to
    // isMaster, no refusal). Other numeric shapes of epoch milliseconds count
    // too; anything else (a string, a negative or absurd number) does not.
    #[test]
    fn local_time_as_epoch_milliseconds_is_a_clock() {
        let ms = 1_765_000_000_123_i64;
        for reply in [
            doc! { "localTime": DateTime::from_millis(ms), "ok": 1.0 },
            doc! { "localTime": ms, "ok": 1.0 },
            doc! { "localTime": ms as f64, "ok": 1.0 },
        ] {
            assert!(!hello_unsupported(&Ok(reply.clone())), "{reply}");
            let t = server_time_reply(&ctx(), Ok(reply.clone())).expect("a clock");
            assert_eq!(t.as_millis(), ms, "{reply}");
        }
        for reply in [
            doc! { "localTime": "2026-12-06T00:00:00Z", "ok": 1.0 },
            doc! { "localTime": -5_i64, "ok": 1.0 },
            doc! { "localTime": f64::NAN, "ok": 1.0 },
            doc! { "localTime": i64::MAX, "ok": 1.0 },
        ] {
            assert!(hello_unsupported(&Ok(reply.clone())), "{reply}");
            let err = server_time_reply(&ctx(), Ok(reply.clone())).expect_err("no clock");
            assert_eq!(err.kind(), BackendErrorKind::InvalidConfig, "{reply}");
        }
    }

    // Issue 17: DocumentDB's gateway passes PostgreSQL errors it has no
    // MongoDB code for as the SQLSTATE packed into a number: 50463173 is
    // 57P03 ("the database system is starting up", "... not yet accepting
    // connections"). Those of a server starting, stopping or out of
    // connections are transient; a deadlock comes as 112 (WriteConflict).
    #[test]
    fn documentdb_transient_postgres_states_are_retried() {
        assert_eq!(sqlstate_code("57P03"), 50463173);
        for (code, msg) in [
            (50463173, "the database system is starting up"),
            (
                50463173,
                "the database system is not yet accepting connections",
            ),
            (
                sqlstate_code("57P01"),
                "terminating connection due to administrator command",
            ),
            (
                sqlstate_code("57P02"),
                "terminating connection due to crash of another server process",
            ),
            (sqlstate_code("53300"), "sorry, too many clients already"),
            (sqlstate_code("08006"), "connection failure"),
            (
                sqlstate_code("40001"),
                "could not serialize access due to concurrent update",
            ),
            (112, "Could not acquire lock for operation due to deadlock"),
        ] {
            let err = map_error(&ctx(), command_error(code, "DocumentDB error.", msg));
            assert_eq!(err.kind(), BackendErrorKind::Unavailable, "{code}: {msg}");
        }
        // Other packed states are not guessed at.
        let err = map_error(
            &ctx(),
            command_error(sqlstate_code("42601"), "x", "syntax error"),
        );
        assert_eq!(err.kind(), BackendErrorKind::Other);
    }

    // Issue 17: while PostgreSQL restarts, DocumentDB's gateway cannot read
    // the SCRAM secrets and the handshake fails with PostgreSQL's connection
    // error: that passes (found by the chaos suite as a fatal Unauthorized
    // ending acquisitions). A wrong password stays Unauthorized.
    #[test]
    fn documentdb_scram_failure_while_postgres_is_down_is_transient() {
        // (The driver's authentication errors cannot be made outside it:
        // the words are checked here, the classification in
        // tests/restart.rs with PostgreSQL killed under the gateway.)
        for message in [
            "SCRAM failure: error connecting to server: Connection refused (os error 111)",
            "SCRAM failure: db error: FATAL: the database system is starting up",
            "SCRAM failure: db error: FATAL: the database system is not yet accepting connections",
            // Found by the long chaos run: a gateway killed (or a connection
            // reset) in the middle of the handshake.
            "SCRAM failure: connection closed",
        ] {
            assert!(server_unreachable_in(message), "{message}");
        }
        for message in [
            "SCRAM failure: Authentication failed.",
            "SCRAM failure: Invalid key",
        ] {
            assert!(!server_unreachable_in(message), "{message}");
        }
    }

    // Issue 11 item 3: only `_id` (ranged or hashed) or no shard key pass.
    #[test]
    fn shard_keys() {
        let s = spec(false);
        let entry = |key| Ok(Some(doc! { "_id": "db.shylock", "key": key }));
        assert!(shard_key_reply(&s, entry(doc! { "_id": 1 })).is_ok());
        assert!(shard_key_reply(&s, entry(doc! { "_id": "hashed" })).is_ok());
        assert!(shard_key_reply(&s, Ok(None)).is_ok());
        let refused =
            shard_key_reply(&s, entry(doc! { "owner": 1 })).expect_err("sharded on owner");
        assert!(
            refused
                .to_string()
                .contains("unique only within each shard"),
            "{refused}"
        );
        assert!(shard_key_reply(&s, entry(doc! { "_id": 1, "x": 1 })).is_err());
        assert!(
            shard_key_reply(
                &s,
                Ok(Some(
                    doc! { "_id": "db.shylock", "key": { "x": 1 }, "unsplittable": true }
                ))
            )
            .is_ok()
        );
        let unauthorized = command_error(13, "Unauthorized", "not authorized on config");
        assert!(shard_key_reply(&s, Err(unauthorized)).is_ok());
        let cosmos = |key| Ok(doc! { "shardKeyDefinition": key, "ok": 1.0 });
        assert!(cosmos_get_collection_reply(&s, cosmos(doc! { "tenant": "Hash" })).is_err());
        assert!(cosmos_get_collection_reply(&s, cosmos(doc! { "_id": "Hash" })).is_ok());
        let no_such = command_error(59, "CommandNotFound", "no such command: customAction");
        assert!(cosmos_get_collection_reply(&s, Err(no_such)).is_ok());
    }

    #[test]
    fn client_errors_map_to_kinds() {
        use BackendErrorKind as K;
        let io = |k| MongoError::from(std::io::Error::new(k, "io"));
        assert_eq!(
            kind_of(io(std::io::ErrorKind::ConnectionRefused)).0,
            K::Unavailable
        );
        assert_eq!(kind_of(io(std::io::ErrorKind::TimedOut)).0, K::Timeout);
        // ServerSelection (no server reachable) is shown by the
        // server-down integration test; the other variants cannot be built
        // outside the driver.
    }

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

    fn spec(allow: bool) -> Spec {
        Spec::new("db", &MongoOptions::new().allow_non_atomic_server(allow)).expect("spec")
    }

    #[test]
    fn non_atomic_servers_are_recognized() {
        // MongoDB 7.0's buildInfo (abridged): no FerretDB field.
        let mongodb = doc! {
            "version": "7.0.14", "gitVersion": "ce59cfc6a3c5e5c067dca0d30697edd68d4f5188",
            "modules": [], "versionArray": [7, 0, 14, 0], "bits": 64,
            "maxBsonObjectSize": 16_777_216, "ok": 1.0,
        };
        assert_eq!(non_atomic_server(&mongodb), None);
        // FerretDB v1.24.2's buildInfo (abridged, as it answers): it poses as
        // MongoDB 7.0.42 and adds `ferretdbVersion`.
        let ferret = doc! {
            "version": "7.0.42", "gitVersion": "unknown", "modules": [],
            "versionArray": [7, 0, 42, 0], "bits": 64,
            "ferretdbVersion": "v1.24.2",
            "ferretdbFeatures": { "aggregationStages": ["$match"] }, "ok": 1.0,
        };
        assert_eq!(
            non_atomic_server(&ferret).as_deref(),
            Some("FerretDB v1.24.2")
        );
        assert_eq!(
            non_atomic_server(&doc! { "ferretdbVersion": "0.9.0" }).as_deref(),
            Some("FerretDB 0.9.0")
        );
        // An unreadable FerretDB version is taken for v1 (safety first).
        assert_eq!(
            non_atomic_server(&doc! { "ferretdbVersion": "unknown" }).as_deref(),
            Some("FerretDB unknown")
        );
        assert_eq!(
            non_atomic_server(&doc! { "ferretdb": { "version": "v1.10.0" } }).as_deref(),
            Some("FerretDB v1.10.0")
        );
        // FerretDB v2 (on DocumentDB) is not flagged.
        assert_eq!(
            non_atomic_server(&doc! { "ferretdbVersion": "v2.5.0" }),
            None
        );
        assert_eq!(
            non_atomic_server(&doc! { "ferretdb": { "version": "v2.1.0" } }),
            None
        );

        // The verdicts.
        let c = ctx();
        assert_eq!(
            server_check_reply(&spec(false), &c, Ok(mongodb.clone())).expect("ok"),
            ServerCheck::Allowed
        );
        let refused = server_check_reply(&spec(false), &c, Ok(ferret.clone())).expect("ok");
        let ServerCheck::Refused(reason) = refused.clone() else {
            panic!("FerretDB v1 not refused: {refused:?}");
        };
        for part in [
            "FerretDB v1.24.2",
            "2168",
            "twice",
            "allow_non_atomic_server(true)",
        ] {
            assert!(reason.contains(part), "{part:?} missing in {reason:?}");
        }
        assert!(matches!(
            refused.clone().into_setup_result(),
            Err(Error::InvalidConfig { .. })
        ));
        assert_eq!(
            refused.into_backend_result().expect_err("refused").kind(),
            BackendErrorKind::InvalidConfig
        );
        assert_eq!(
            server_check_reply(&spec(true), &c, Ok(ferret)).expect("ok"),
            ServerCheck::Allowed
        );
        // A server that answers buildInfo with an error is not FerretDB;
        // a driver error without an answer is reported (to be retried).
        let refused_cmd = command_error(59, "CommandNotFound", "no such command: buildInfo");
        assert_eq!(
            server_check_reply(&spec(false), &c, Err(refused_cmd)).expect("ok"),
            ServerCheck::Allowed
        );
        let io = MongoError::from(std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "io",
        ));
        assert_eq!(
            server_check_reply(&spec(false), &c, Err(io))
                .expect_err("no answer")
                .kind(),
            BackendErrorKind::Unavailable
        );
    }

    #[test]
    fn cosmos_retry_after() {
        let msg = "Message: {\"Errors\":[\"Request rate is large\"]}\r\nActivityId: 0, \
                   Request URI: /apps/x, RequestStats: , SDK: Microsoft.Azure.Documents.Common/2.14.0, \
                   Error=16500, RetryAfterMs=130, Details='Response status code does not indicate success";
        assert_eq!(retry_after(msg), Some(Duration::from_millis(130)));
        assert_eq!(retry_after("Request rate is large"), None);
        assert_eq!(retry_after("RetryAfterMs=x"), None);
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

    #[test]
    fn names() {
        assert!(validate_db_name("projectdb").is_ok());
        assert!(validate_db_name("").is_err());
        assert!(validate_db_name("a.b").is_err());
        assert!(validate_db_name("a b").is_err());
        assert!(validate_db_name("a$b").is_err());
        assert!(validate_db_name("a\0b").is_err());
        assert!(validate_db_name(&"x".repeat(64)).is_err());
        assert!(validate_db_name(&"x".repeat(63)).is_ok());
        assert!(validate_collection_name("db", "shylock").is_ok());
        assert!(validate_collection_name("db", "locks.v2").is_ok());
        assert!(validate_collection_name("db", "").is_err());
        assert!(validate_collection_name("db", "a$b").is_err());
        assert!(validate_collection_name("db", "system.locks").is_err());
        assert!(validate_collection_name("db", ".x").is_err());
        assert!(validate_collection_name("db", &"x".repeat(252)).is_ok());
        assert!(validate_collection_name("db", &"x".repeat(253)).is_err());
    }
}
