//! # shylock-sqlite-example
//!
//! A shylock backend over one SQLite database file: the worked example of
//! the guide to adding a backend in the repository's `ARCHITECTURE.md`. It
//! passes the core's whole conformance suite in both forms, and it is not
//! one of shylock's advertised backends (the facade does not offer it).
//!
//! Several processes, or several [`SqliteBackend`]s in one process, that
//! open the same file share its locks: each primitive is one write
//! transaction (`BEGIN IMMEDIATE`), which SQLite runs one at a time for the
//! whole file. The file must be on a local file system (SQLite's locking in
//! WAL mode needs shared memory between the processes).
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use shylock_core::{Backend, Lock};
//! use shylock_sqlite_example::SqliteBackend;
//!
//! let dir = tempfile::tempdir()?;
//! let backend = Backend::from(SqliteBackend::open(dir.path().join("locks.db"))?);
//! let lock = Lock::with_backend("nightly-report", &backend);
//! let guard = lock.acquire()?;
//! assert!(lock.try_acquire()?.is_none()); // held: a second try fails at once
//! println!("fencing token {}", guard.token());
//! guard.release()?;
//! # Ok(())
//! # }
//! ```
//!
//! # Design
//!
//! * **Records**: table `shylock_locks` (the prefix can be chosen with
//!   [`SqliteBackend::open_with_prefix`]), one row per lock name: owner
//!   (NULL when free), token, expiry in ms on the database's clock, and the
//!   last [`RELEASERS_REMEMBERED`] releasers as a JSON array.
//! * **Clock**: [`ClockSource::Server`]. Every statement reads SQLite's
//!   `unixepoch('subsec')`, the same value for all its uses in one step, so
//!   expiry is judged and set at one instant; the requests' `now` is not
//!   used.
//! * **Tokens**: table `shylock_tokens` holds one row that nothing deletes,
//!   kept by triggers at or above every token any record carried; a grant
//!   takes the next value, so tokens rise for every name, also after its
//!   record was deleted ([`SqliteBackend::collect_garbage`]). A huge token
//!   written by another program moves the sequence up with it: tokens keep
//!   rising from there, and at `i64::MAX` every acquisition is an error
//!   (SQLite cannot store the next one), never a lower token.
//! * **Records it did not write** (issue 23.3): the columns are typed
//!   (`STRICT`), so wrong types and missing fields cannot be stored; an
//!   expiry beyond the database's clock + `RECORD_HORIZON` (366 days, the
//!   longest lease plus a day) is treated as expired: taken over with the
//!   request's lease, not renewed, not shown by `inspect`.
//! * **Primitives**: one statement each (an upsert for `try_acquire`, an
//!   `UPDATE … RETURNING` for `renew` and `release`, a `SELECT` for
//!   `inspect` and `server_time`), the writes in an immediate transaction
//!   (with a second read for what the first did not say: the expiry of the
//!   holding that made an acquisition busy, or whether a release is sent
//!   again).
//! * **Deadlines**: a connection waits for the file's write lock at most
//!   until the request's deadline (SQLite's busy timeout); still locked
//!   then, the answer is a [`BackendErrorKind::Timeout`] error, which the
//!   core retries within its caller's time limit.
//!
//! [`RELEASERS_REMEMBERED`]: shylock_core::backend::RELEASERS_REMEMBERED

mod sql;

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rusqlite::{Connection, ErrorCode, OpenFlags, OptionalExtension, TransactionBehavior, params};
use shylock_core::backend::{
    AcquireOutcome, AcquireRequest, ClockSource, Grant, InspectRequest, ReleaseOutcome,
    ReleaseRequest, RenewOutcome, RenewRequest, SyncBackend,
};
use shylock_core::{
    BackendError, BackendErrorKind, Error, FencingToken, LockRecord, MAX_LEASE, OwnerId, Timestamp,
};

use crate::sql::Statements;

/// The table prefix of [`SqliteBackend::open`].
pub const DEFAULT_PREFIX: &str = "shylock";

/// How long a request without a deadline waits at most for the database
/// file's write lock.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(30);

/// How many idle connections a backend keeps for its next requests (it
/// opens more while more requests overlap).
const IDLE_CONNECTIONS: usize = 8;

/// The least age [`SqliteBackend::collect_garbage`] deletes: a released
/// record remembers its releasers at least this long.
pub const MIN_GARBAGE_AGE: Duration = Duration::from_secs(60);

/// Locks in one SQLite database file, for shylock's core: a
/// [`SyncBackend`]; `Backend::from` gives a handle for both forms of lock
/// (the async form runs each call on a blocking thread of shylock's
/// runtime).
///
/// It keeps a few connections to the file and uses one per request, so
/// overlapping requests of one process meet in SQLite as those of several
/// processes do.
#[derive(Debug)]
pub struct SqliteBackend {
    path: PathBuf,
    prefix: String,
    sql: Statements,
    idle: Mutex<Vec<Connection>>,
}

/// What went wrong inside a request, before it becomes a [`BackendError`].
enum Failure {
    /// SQLite refused or failed.
    Sql(rusqlite::Error),
    /// A record is not shaped as this backend writes them.
    Record(String),
}

impl From<rusqlite::Error> for Failure {
    fn from(error: rusqlite::Error) -> Self {
        Failure::Sql(error)
    }
}

impl SqliteBackend {
    /// Open (or create) the database file at `path` with the tables
    /// `shylock_locks` and `shylock_tokens`, and switch it to WAL mode.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for a path that names no shared file
    /// (`:memory:` or empty: such a database is private to one
    /// connection) or a database that cannot be put in WAL mode;
    /// [`Error::Backend`] if SQLite cannot open or set up the file (of kind
    /// [`BackendErrorKind::InvalidConfig`] for a file that cannot be opened
    /// or is not a database).
    pub fn open(path: impl AsRef<Path>) -> Result<Self, Error> {
        Self::open_with_prefix(path, DEFAULT_PREFIX)
    }

    /// As [`open`](Self::open), with the tables `{prefix}_locks` and
    /// `{prefix}_tokens`.
    ///
    /// # Errors
    /// As [`open`](Self::open); also [`Error::InvalidConfig`] for a prefix
    /// that is not an ASCII letter or `_` followed by at most 63 ASCII
    /// letters, digits or `_` (or that starts with `sqlite_`).
    pub fn open_with_prefix(path: impl AsRef<Path>, prefix: &str) -> Result<Self, Error> {
        let path = path.as_ref().to_path_buf();
        if !sql::valid_prefix(prefix) {
            return Err(Error::InvalidConfig {
                reason: format!(
                    "the table prefix {prefix:?} must be an ASCII letter or `_` followed by at most 63 ASCII letters, digits or `_`, not starting with `sqlite_`"
                ),
            });
        }
        let text = path.to_string_lossy();
        if text.is_empty() || text == ":memory:" {
            return Err(Error::InvalidConfig {
                reason: format!(
                    "the SQLite database {text:?} would be private to one connection: give a file path"
                ),
            });
        }
        let backend = SqliteBackend {
            sql: Statements::new(prefix),
            prefix: prefix.to_owned(),
            path,
            idle: Mutex::default(),
        };
        backend.set_up()?;
        Ok(backend)
    }

    fn set_up(&self) -> Result<(), Error> {
        let deadline = Some(Instant::now() + DEFAULT_WAIT);
        let mode = self.run(deadline, |conn| {
            let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))?;
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            tx.execute_batch(&self.sql.schema)?;
            tx.commit()?;
            Ok(mode)
        })?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(Error::InvalidConfig {
                reason: format!(
                    "the SQLite database {} stays in journal mode {mode:?}, not WAL",
                    self.path.display()
                ),
            });
        }
        Ok(())
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The table of lock records (`{prefix}_locks`).
    pub fn locks_table(&self) -> String {
        format!("{}_locks", self.prefix)
    }

    /// The table of the token sequence (`{prefix}_tokens`).
    pub fn tokens_table(&self) -> String {
        format!("{}_tokens", self.prefix)
    }

    /// Delete the records whose lease ended, or that were released, at
    /// least `older_than` ago (at least [`MIN_GARBAGE_AGE`], so that a
    /// released record remembers its releasers that long); answers how many
    /// were deleted. Tokens keep rising for their names.
    ///
    /// # Errors
    /// As the primitives: [`BackendErrorKind::Timeout`] if the file stays
    /// locked for [`DEFAULT_WAIT`].
    pub fn collect_garbage(&self, older_than: Duration) -> Result<usize, BackendError> {
        let age = millis(older_than.max(MIN_GARBAGE_AGE))?;
        self.run(Some(Instant::now() + DEFAULT_WAIT), |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let deleted = tx.prepare_cached(&self.sql.collect)?.execute([age])?;
            tx.commit()?;
            Ok(deleted)
        })
    }

    /// Run `call` on a connection of its own, waiting for the file's locks
    /// at most until `deadline`.
    fn run<T>(
        &self,
        deadline: Option<Instant>,
        call: impl FnOnce(&mut Connection) -> Result<T, Failure>,
    ) -> Result<T, BackendError> {
        let wait = match deadline {
            None => DEFAULT_WAIT,
            Some(deadline) => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(timed_out("the deadline passed before the request was sent"));
                }
                left
            }
        };
        let mut conn = self
            .connection()
            .map_err(|e| self.failed(Failure::Sql(e)))?;
        let answer = conn
            .busy_timeout(wait)
            .map_err(Failure::Sql)
            .and_then(|()| call(&mut conn));
        match answer {
            Ok(answer) => {
                self.give_back(conn);
                Ok(answer)
            }
            // The connection is dropped: whatever state the failure left it
            // in goes with it.
            Err(failure) => Err(self.failed(failure)),
        }
    }

    fn connection(&self) -> Result<Connection, rusqlite::Error> {
        if let Some(conn) = self.idle_connections().pop() {
            return Ok(conn);
        }
        // No URI filenames: the path is a file name, whatever it looks like.
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(&self.path, flags)?;
        // Every commit reaches the disk before it is answered: a grant, and
        // its token, survive a power loss (WAL mode's default would keep
        // the last commits only until the next checkpoint).
        conn.pragma_update(None, "synchronous", "FULL")?;
        Ok(conn)
    }

    fn give_back(&self, conn: Connection) {
        let mut idle = self.idle_connections();
        if idle.len() < IDLE_CONNECTIONS {
            idle.push(conn);
        }
    }

    fn idle_connections(&self) -> std::sync::MutexGuard<'_, Vec<Connection>> {
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn failed(&self, failure: Failure) -> BackendError {
        let file = self.path.display();
        match failure {
            Failure::Record(what) => BackendError::new(
                BackendErrorKind::Unexpected,
                format!("a lock record in {file} is not shaped as expected: {what}"),
            ),
            Failure::Sql(error) => {
                let kind = kind_of(&error);
                let message = match kind {
                    BackendErrorKind::Timeout => {
                        format!("{file} stayed locked by another connection until the deadline")
                    }
                    _ => format!("SQLite failed on {file}"),
                };
                BackendError::new(kind, message).with_source(error)
            }
        }
    }
}

/// What kind of failure a SQLite error is, for the core.
fn kind_of(error: &rusqlite::Error) -> BackendErrorKind {
    match error.sqlite_error_code() {
        // Another connection holds the lock the request waited for.
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => BackendErrorKind::Timeout,
        Some(ErrorCode::CannotOpen | ErrorCode::NotADatabase) => BackendErrorKind::InvalidConfig,
        Some(ErrorCode::ReadOnly | ErrorCode::PermissionDenied) => BackendErrorKind::Unauthorized,
        Some(ErrorCode::SystemIoFailure | ErrorCode::DiskFull | ErrorCode::OutOfMemory) => {
            BackendErrorKind::Unavailable
        }
        // Constraints, malformed JSON, missing tables or columns, values
        // of the wrong type: the database is not as this backend left it.
        Some(_) => BackendErrorKind::Unexpected,
        None => match error {
            rusqlite::Error::FromSqlConversionFailure(..)
            | rusqlite::Error::IntegralValueOutOfRange(..)
            | rusqlite::Error::InvalidColumnType(..)
            | rusqlite::Error::Utf8Error(..)
            | rusqlite::Error::InvalidColumnIndex(..)
            | rusqlite::Error::InvalidColumnName(..) => BackendErrorKind::Unexpected,
            _ => BackendErrorKind::Other,
        },
    }
}

fn timed_out(why: &str) -> BackendError {
    BackendError::new(BackendErrorKind::Timeout, why)
}

/// `d` in whole milliseconds, as SQLite's integers.
fn millis(d: Duration) -> Result<i64, BackendError> {
    if d > MAX_LEASE {
        return Err(BackendError::new(
            BackendErrorKind::Other,
            format!("a duration of {d:?} is longer than the longest lease, {MAX_LEASE:?}"),
        ));
    }
    i64::try_from(d.as_millis())
        .map_err(|e| BackendError::new(BackendErrorKind::Other, e.to_string()))
}

/// A token read back from a record: a positive integer.
fn token(raw: i64) -> Result<FencingToken, Failure> {
    u64::try_from(raw)
        .ok()
        .filter(|&t| t > 0)
        .map(FencingToken)
        .ok_or_else(|| Failure::Record(format!("the token {raw} is not a positive integer")))
}

impl SyncBackend for SqliteBackend {
    fn try_acquire(&self, req: AcquireRequest<'_>) -> Result<AcquireOutcome, BackendError> {
        let lease = millis(req.lease)?;
        let (name, owner) = (req.name.as_str(), req.owner.as_str());
        self.run(req.deadline, |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let granted = tx
                .prepare_cached(&self.sql.acquire)?
                .query_row(params![name, owner, lease], |row| {
                    Ok((row.get::<_, i64>(0)?, row.get::<_, i64>(1)?))
                })
                .optional()?;
            let outcome = match granted {
                Some((raw_token, expires_at)) => AcquireOutcome::Acquired(Grant {
                    token: token(raw_token)?,
                    expires_at: Timestamp::from_millis(expires_at),
                }),
                None => AcquireOutcome::Busy {
                    expires_at: tx
                        .prepare_cached(&self.sql.live_expiry)?
                        .query_row([name], |row| row.get::<_, i64>(0))
                        .optional()?
                        .map(Timestamp::from_millis),
                },
            };
            // A malformed token answered above rolls the grant back (the
            // transaction is dropped uncommitted).
            tx.commit()?;
            Ok(outcome)
        })
    }

    fn renew(&self, req: RenewRequest<'_>) -> Result<RenewOutcome, BackendError> {
        let lease = millis(req.lease)?;
        let (name, owner) = (req.name.as_str(), req.owner.as_str());
        self.run(req.deadline, |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let renewed = tx
                .prepare_cached(&self.sql.renew)?
                .query_row(params![name, owner, lease], |row| row.get::<_, i64>(0))
                .optional()?;
            tx.commit()?;
            Ok(match renewed {
                Some(expires_at) => RenewOutcome::Renewed {
                    expires_at: Timestamp::from_millis(expires_at),
                },
                None => RenewOutcome::Lost,
            })
        })
    }

    fn release(&self, req: ReleaseRequest<'_>) -> Result<ReleaseOutcome, BackendError> {
        let (name, owner) = (req.name.as_str(), req.owner.as_str());
        self.run(req.deadline, |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let released = tx
                .prepare_cached(&self.sql.release)?
                .query_row([name, owner], |_| Ok(()))
                .optional()?
                .is_some();
            // Not the owner's: its own release sent again (the answer to the
            // first was lost) still finds it among the free record's
            // releasers.
            let again = !released
                && tx
                    .prepare_cached(&self.sql.released_by)?
                    .query_row([name, owner], |_| Ok(()))
                    .optional()?
                    .is_some();
            tx.commit()?;
            Ok(if released || again {
                ReleaseOutcome::Released
            } else {
                ReleaseOutcome::NotOwner
            })
        })
    }

    fn inspect(&self, req: InspectRequest<'_>) -> Result<Option<LockRecord>, BackendError> {
        let name = req.name.as_str();
        self.run(req.deadline, |conn| {
            let row = conn
                .prepare_cached(&self.sql.inspect)?
                .query_row([name], |row| {
                    Ok((
                        row.get::<_, String>(0)?,
                        row.get::<_, i64>(1)?,
                        row.get::<_, i64>(2)?,
                    ))
                })
                .optional()?;
            row.map(|(owner, raw_token, expires_at)| {
                Ok(LockRecord {
                    owner: OwnerId::from_string(owner),
                    token: token(raw_token)?,
                    expires_at: Timestamp::from_millis(expires_at),
                })
            })
            .transpose()
        })
    }

    fn server_time(&self, deadline: Option<Instant>) -> Result<Timestamp, BackendError> {
        self.run(deadline, |conn| {
            let now = conn
                .prepare_cached(&self.sql.now)?
                .query_row([], |row| row.get::<_, i64>(0))?;
            Ok(Timestamp::from_millis(now))
        })
    }

    fn clock(&self) -> ClockSource {
        ClockSource::Server
    }

    fn describe(&self) -> String {
        format!("sqlite {} ({}_locks)", self.path.display(), self.prefix)
    }
}

/// A handle for both forms of lock: the sync form is the backend itself,
/// the async form runs each call on a blocking thread of shylock's runtime
/// ([`Backend::from_sync`](shylock_core::Backend::from_sync)).
impl From<SqliteBackend> for shylock_core::Backend {
    fn from(backend: SqliteBackend) -> Self {
        shylock_core::Backend::from_sync(backend)
    }
}
