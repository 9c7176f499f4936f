//! The primitive conformance targets of the MongoDB backend, both forms:
//! the first owner's requests on one client, other owners' on a client of
//! their own (so they meet on the server; on FerretDB, not atomic across
//! connections, all go through one connection), and a fixture that deletes
//! and writes raw documents through a sync client of its own.

use std::sync::Arc;

use mongodb::bson::{DateTime, doc};
use shylock_core::conformance::primitives::{Fixture, Hostile, Target, Unsupported};
use shylock_core::{LockName, OwnerId, Timestamp};
use shylock_mongo::MongoBackend;

use super::{TestDb, async_client, options, server, sync_client, unique_db};

/// Raw access to the lock collection (`{_id: name, owner, epoch, seq,
/// expiresAt, releasers}`, see `src/commands.rs`); owns the test's
/// database (dropped with it on a real MongoDB).
pub struct MongoFixture {
    client: mongodb::sync::Client,
    db: TestDb,
}

impl MongoFixture {
    fn new(uri: &str, db: TestDb) -> Self {
        MongoFixture {
            client: sync_client(uri, true),
            db,
        }
    }

    fn records(&self) -> mongodb::sync::Collection<mongodb::bson::Document> {
        self.client.database(&self.db).collection("shylock")
    }
}

impl Fixture for MongoFixture {
    fn delete_record(&self, name: &LockName) -> Result<(), Unsupported> {
        let deleted = self
            .records()
            .delete_one(doc! { "_id": name.as_str() })
            .run()
            .expect("delete a record");
        assert_eq!(deleted.deleted_count, 1, "the record of {name:?} existed");
        Ok(())
    }

    /// A record whose `seq` is a string.
    fn write_malformed(
        &self,
        name: &LockName,
        owner: &OwnerId,
        expires_at: Timestamp,
    ) -> Result<(), Unsupported> {
        self.records()
            .insert_one(doc! {
                "_id": name.as_str(),
                "owner": owner.as_str(),
                "epoch": 1_i64,
                "seq": "one",
                "expiresAt": DateTime::from_millis(expires_at.as_millis()),
            })
            .run()
            .expect("insert a malformed record");
        Ok(())
    }

    fn write_hostile(&self, name: &LockName, kind: Hostile) -> Result<(), Unsupported> {
        // The record's other fields (its counters) are kept.
        let update = match kind {
            Hostile::WrongTypes => doc! { "$set": { "owner": 123_i32, "expiresAt": "tomorrow" } },
            Hostile::MissingFields => doc! {
                "$set": { "owner": "someone-else" },
                "$unset": { "expiresAt": "", "epoch": "", "seq": "" },
            },
            // Year 9999.
            Hostile::FarFutureExpiry => doc! { "$set": {
                "owner": "someone-else",
                "expiresAt": DateTime::from_millis(253_402_300_799_000),
            } },
            Hostile::FutureEpoch => {
                doc! { "$set": { "epoch": 4_102_444_800_000_i64, "seq": 3_i64 } }
            }
            Hostile::HugeCounter => doc! { "$set": { "seq": i64::MAX - 1 } },
            _ => return Err(Unsupported::new(format!("{kind:?} is not written"))),
        };
        let updated = self
            .records()
            .update_one(doc! { "_id": name.as_str() }, update)
            .run()
            .expect("write a hostile record");
        assert_eq!(updated.matched_count, 1, "the record of {name:?} existed");
        Ok(())
    }
}

/// The async form, on a runtime of the target's own.
pub fn async_target(test: &str) -> Target {
    let uri = server().uri();
    let db = unique_db(test);
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    let (main, other) = runtime.block_on(async {
        let main = MongoBackend::create_with(&async_client(&uri, true), &db, options())
            .await
            .expect("create the async backend");
        let other = MongoBackend::new(&async_client(&uri, true), &db, options())
            .expect("the contender's async backend");
        (main, other)
    });
    let target = Target::from_async(Arc::new(main));
    let target = if super::on_ferretdb() {
        target
    } else {
        target.with_contender(Target::from_async(Arc::new(other)))
    };
    target
        .with_runtime(runtime)
        .with_fixture(MongoFixture::new(&uri, db))
        .prefix("mongo")
}

/// The sync form.
pub fn sync_target(test: &str) -> Target {
    let uri = server().uri();
    let db = unique_db(test);
    let main =
        shylock_mongo::sync::MongoBackend::create_with(&sync_client(&uri, true), &db, options())
            .expect("create the sync backend");
    let target = Target::from_sync(Arc::new(main));
    let target = if super::on_ferretdb() {
        target
    } else {
        let other =
            shylock_mongo::sync::MongoBackend::new(&sync_client(&uri, true), &db, options())
                .expect("the contender's sync backend");
        target.with_contender(Target::from_sync(Arc::new(other)))
    };
    target
        .with_fixture(MongoFixture::new(&uri, db))
        .prefix("mongo")
}
