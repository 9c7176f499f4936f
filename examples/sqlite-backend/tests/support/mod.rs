//! What the tests of the SQLite backend share: a database file of their
//! own, backends on it, and the fixtures that change records behind the
//! backend's back (deleting a record as garbage collection would, writing a
//! record that is not shaped as the backend writes them). Each test file
//! uses part of it.
//!
//! The fixtures also serve the primitive-level conformance checks
//! (`tests/primitive_conformance.rs`: deleting a record, writing a
//! malformed one).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, params};
use shylock_core::conformance::Suite;
use shylock_core::{Backend, LockName};
use shylock_sqlite_example::SqliteBackend;

/// A database file in a temporary directory, removed with it.
pub struct TempDb {
    dir: tempfile::TempDir,
}

impl TempDb {
    /// A new directory for one database file.
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("shylock-sqlite-")
            .tempdir()
            .expect("a temporary directory");
        TempDb { dir }
    }

    /// The database file.
    pub fn path(&self) -> PathBuf {
        self.dir.path().join("locks.db")
    }

    /// A backend on the file: each call opens another one (as another
    /// process would).
    pub fn backend(&self) -> SqliteBackend {
        SqliteBackend::open(self.path()).expect("open the SQLite backend")
    }

    /// A handle for both forms of lock over a new backend on the file.
    pub fn handle(&self) -> Backend {
        Backend::from(self.backend())
    }
}

/// The conformance suite over a new backend on `db`, sized for a loaded
/// two-core machine (every acquisition is a write transaction with a sync
/// to disk).
pub fn suite(db: &TempDb, prefix: &str) -> Suite {
    let mut suite = Suite::new(db.handle(), prefix);
    suite.contenders = 8;
    suite.rounds = 20;
    suite.short_lease = Duration::from_millis(600);
    suite.slack = Duration::from_secs(10);
    suite
}

/// A plain connection to the backend's file, beside the backend's own.
pub fn raw_connection(path: &Path) -> Connection {
    let conn = Connection::open(path).expect("open the database file");
    conn.busy_timeout(Duration::from_secs(10))
        .expect("busy timeout");
    conn
}

/// Delete the record of `name`, as garbage collection does once its lease
/// ended long ago; answers whether there was one.
pub fn delete_record(backend: &SqliteBackend, name: &LockName) -> bool {
    let conn = raw_connection(backend.path());
    let sql = format!("DELETE FROM {} WHERE name = ?1", backend.locks_table());
    conn.execute(&sql, [name.as_str()])
        .expect("delete the record")
        > 0
}

/// A record as stored, any of whose fields may be malformed.
#[derive(Debug, Clone)]
pub struct RawRecord {
    /// The owner, `None` for a free record.
    pub owner: Option<String>,
    /// The token (the backend writes only positive ones).
    pub token: i64,
    /// The expiry in ms since the Unix epoch.
    pub expires_at: i64,
    /// The releasers (the backend writes a JSON array of strings).
    pub releasers: String,
}

impl RawRecord {
    /// A free record with this token and no releasers, expired long ago.
    pub fn free(token: i64) -> Self {
        RawRecord {
            owner: None,
            token,
            expires_at: 0,
            releasers: "[]".into(),
        }
    }
}

/// Write `record` as the record of `name`, replacing any (the token
/// sequence follows a larger token, as it does for every record).
pub fn write_record(backend: &SqliteBackend, name: &LockName, record: &RawRecord) {
    let conn = raw_connection(backend.path());
    let sql = format!(
        "INSERT OR REPLACE INTO {} (name, owner, token, expires_at, releasers)
         VALUES (?1, ?2, ?3, ?4, ?5)",
        backend.locks_table()
    );
    conn.execute(
        &sql,
        params![
            name.as_str(),
            record.owner,
            record.token,
            record.expires_at,
            record.releasers
        ],
    )
    .expect("write the record");
}

/// Delete the token sequence's row (a database damaged by hand).
pub fn delete_token_sequence(backend: &SqliteBackend) {
    let conn = raw_connection(backend.path());
    let sql = format!("DELETE FROM {}", backend.tokens_table());
    conn.execute(&sql, []).expect("delete the token sequence");
}

/// A unique lock name for one test.
pub fn name(test: &str) -> LockName {
    LockName::new(format!("{test}-{:08x}", rand_suffix())).expect("a valid name")
}

fn rand_suffix() -> u32 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(std::time::SystemTime::now()) as u32
}
