//! Names and their validation, the validated options (`Spec`), the context
//! of messages (`Ctx`), deadlines, and the prepared command structs that
//! the I/O layer (`Driver` in `core.rs`) sends.

use std::time::{Duration, Instant};

use mongodb::bson::{DateTime, Document};
use mongodb::options::{
    FindOneAndUpdateOptions, FindOneOptions, FindOptions, ReadPreference, RunCommandOptions,
    SelectionCriteria, WriteConcern,
};
use shylock_core::Error;
use shylock_core::{BackendError, Timestamp};

use crate::errors::timeout_error;
use crate::options::{MIN_TTL_GRACE, MongoOptions};

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

    /// The `Debug` of a backend named `name` over this spec.
    pub(crate) fn debug_as(&self, name: &str, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct(name)
            .field("namespace", &self.namespace())
            .field("write_concern", &self.write_concern)
            .finish_non_exhaustive()
    }

    /// The context of `op` (on lock `name`, if any), for messages.
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
/// whichever comes first; a [`Timeout`](shylock_core::BackendErrorKind::Timeout) error if the
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

/// `maxTimeMS` for a command due by `deadline`: whole milliseconds, at least 1.
pub(crate) fn max_time(deadline: Instant) -> Duration {
    let left = deadline.saturating_duration_since(Instant::now());
    Duration::from_millis(u64::try_from(left.as_millis()).unwrap_or(u64::MAX).max(1))
}

/// The configured write concern with a `wtimeout` no later than `deadline`,
/// so that a write never waits for ever for acknowledgements (a majority
/// that is down).
pub(crate) fn write_concern(spec: &Spec, deadline: Instant) -> WriteConcern {
    let mut wc = spec.write_concern.clone();
    let limit = max_time(deadline);
    wc.w_timeout = Some(wc.w_timeout.map_or(limit, |w| w.min(limit)));
    wc
}

pub(crate) fn primary() -> SelectionCriteria {
    SelectionCriteria::ReadPreference(ReadPreference::Primary)
}

pub(crate) fn date(t: Timestamp) -> DateTime {
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

/// One `find` of many records (`list`): filter, sort and limit in the
/// options.
#[derive(Debug)]
pub(crate) struct FindMany {
    pub(crate) filter: Document,
    pub(crate) options: FindOptions,
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

/// Helpers of the unit tests of every module.
#[cfg(test)]
pub(crate) mod test_support {
    use super::Ctx;
    use mongodb::bson::{doc, from_document};
    use mongodb::error::{CommandError, Error as MongoError, ErrorKind};

    /// A command error as the server answers it.
    pub(crate) fn command_error(code: i32, name: &str, msg: &str) -> MongoError {
        let ce: CommandError =
            from_document(doc! { "code": code, "codeName": name, "errmsg": msg })
                .expect("a command error");
        MongoError::from(ErrorKind::Command(ce))
    }

    /// A context for messages.
    pub(crate) fn ctx() -> Ctx {
        Ctx {
            op: "test",
            namespace: "db.shylock".into(),
            name: Some("n".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
