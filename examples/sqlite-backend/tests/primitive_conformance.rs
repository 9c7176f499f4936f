//! The primitive-level conformance checks of `shylock_core::conformance`
//! against the SQLite backend, in both forms: one test per check, each on a
//! database file of its own, the other owners' requests made by a second
//! backend on that file (another connection, as another process's).

mod support;

use std::sync::Arc;

use shylock_core::conformance::primitives::{Fixture, Hostile, Target, Unsupported};
use shylock_core::{LockName, OwnerId, Timestamp};
use shylock_sqlite_example::SqliteBackend;

use support::{RawRecord, TempDb, delete_record, write_record};

/// Changes records behind the backend's back; keeps the file's directory
/// for as long as the target lives.
struct SqliteFixture {
    backend: SqliteBackend,
    _db: TempDb,
}

impl Fixture for SqliteFixture {
    fn delete_record(&self, name: &LockName) -> Result<(), Unsupported> {
        assert!(
            delete_record(&self.backend, name),
            "the record of {name:?} existed"
        );
        Ok(())
    }

    /// The columns are typed (`STRICT` tables), so the malformed record is
    /// one the types allow and the backend does not write: a token that is
    /// not positive and releasers that are not a JSON array.
    fn write_malformed(
        &self,
        name: &LockName,
        owner: &OwnerId,
        expires_at: Timestamp,
    ) -> Result<(), Unsupported> {
        let record = RawRecord {
            owner: Some(owner.as_str().to_owned()),
            token: 0,
            expires_at: expires_at.as_millis(),
            releasers: "{not json".into(),
        };
        write_record(&self.backend, name, &record);
        Ok(())
    }

    /// Typed `STRICT` columns hold neither wrong types nor missing fields,
    /// and tokens come from a sequence, not an epoch: those kinds are
    /// skipped. A far-future expiry and a huge token are written.
    fn write_hostile(&self, name: &LockName, kind: Hostile) -> Result<(), Unsupported> {
        let record = match kind {
            // Year 9999.
            Hostile::FarFutureExpiry => RawRecord {
                owner: Some("someone-else".into()),
                token: 7,
                expires_at: 253_402_300_799_000,
                releasers: "[]".into(),
            },
            // Far above any token granted, and the sequence follows it.
            Hostile::HugeCounter => RawRecord {
                owner: None,
                token: 1 << 62,
                expires_at: 0,
                releasers: "[]".into(),
            },
            _ => {
                return Err(Unsupported::new(format!(
                    "{kind:?}: typed columns, tokens from a sequence"
                )));
            }
        };
        write_record(&self.backend, name, &record);
        Ok(())
    }
}

fn target(form: fn(SqliteBackend) -> Target) -> Target {
    let db = TempDb::new();
    let (main, other) = (db.backend(), db.backend());
    let fixture = SqliteFixture {
        backend: db.backend(),
        _db: db,
    };
    form(main)
        .with_contender(form(other))
        .with_fixture(fixture)
        .prefix("sqlite")
}

fn async_target() -> Target {
    target(|b| Target::async_of(&shylock_core::Backend::from(b)))
}

fn sync_target() -> Target {
    target(|b| Target::from_sync(Arc::new(b)))
}

shylock_core::primitive_conformance_tests!(async_form, async_target);
shylock_core::primitive_conformance_tests!(sync_form, sync_target);
