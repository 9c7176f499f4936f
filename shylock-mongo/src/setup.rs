//! Set-up and deployment checks: `hello`/`isMaster` and the server clock,
//! `buildInfo` and non-atomic servers, the collection and its TTL index,
//! shard-key and Cosmos DB checks. See the README (Set-up and server checks).

use std::time::{Duration, Instant};

use mongodb::IndexModel;
use mongodb::bson::{Bson, Document, doc};
use mongodb::error::Error as MongoError;
use mongodb::options::{
    CommitQuorum, CreateCollectionOptions, CreateIndexOptions, FindOneOptions, IndexOptions,
    ListIndexesOptions, RunCommandOptions,
};
use shylock_core::Error;
use shylock_core::{BackendError, BackendErrorKind, Timestamp};

use crate::errors::{
    CODE_BAD_VALUE, CODE_CANNOT_CREATE_INDEX, CODE_COMMAND_NOT_FOUND, CODE_COMMAND_NOT_SUPPORTED,
    CODE_INDEX_KEY_SPECS_CONFLICT, CODE_INDEX_OPTIONS_CONFLICT, CODE_NAMESPACE_EXISTS,
    CODE_NAMESPACE_NOT_FOUND, CODE_NOT_IMPLEMENTED, classify, map_error, server_code,
};
use crate::lock_commands::{F_EXPIRES_AT, F_ID};
use crate::options::MIN_TTL_GRACE;
use crate::spec::{Command, Ctx, FindOne, Spec, bound, max_time, primary, write_concern};

/// The name of the TTL index on `expiresAt`.
pub(crate) const TTL_INDEX_NAME: &str = "shylock_expiresAt_ttl";

/// Server time: `hello`, or `isMaster` once `hello` was refused (README:
/// Server time).
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
/// (README: Servers that can grant a lock twice.)
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

/// Options of the TTL index creation: write concern, `maxTimeMS` and, on
/// replica sets and sharded clusters, commit quorum `majority` (README:
/// Set-up and server checks).
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

/// The verdict on a shard key: only `_id` (ranged or hashed) passes
/// (README: Sharded collections).
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::options::MongoOptions;
    use crate::spec::test_support::{command_error, ctx};
    use mongodb::bson::DateTime;

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
}
