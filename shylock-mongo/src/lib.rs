//! # shylock-mongo
//!
//! The MongoDB backend of [shylock](https://crates.io/crates/shylock)
//! distributed locks, on the official [`mongodb`] driver: an async backend
//! over [`mongodb::Client`] (feature `async`, as the Python original's motor
//! backend) and a sync backend over `mongodb::sync::Client` (feature
//! `sync`, as its pymongo backend). Both can be enabled at once. Most users
//! reach them through the `shylock` facade (features `mongo-async`,
//! `mongo-sync`, module `shylock::mongo`).
//!
//! ```no_run
//! # #[cfg(feature = "async")]
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use shylock_core::{configure, AsyncLock};
//! use shylock_mongo::MongoBackend;
//!
//! let client = mongodb::Client::with_uri_str("mongodb://127.0.0.1:27017/").await?;
//! configure(MongoBackend::create(&client, "projectdb").await?); // collection `shylock`
//!
//! let guard = AsyncLock::new("nightly-report").acquire().await?;
//! println!("fencing token {}", guard.token());
//! guard.release().await?;
//! # Ok(()) }
//! ```
//!
//! ```no_run
//! # #[cfg(feature = "sync")]
//! # fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use shylock_core::{configure, Lock};
//! use shylock_mongo::{sync::MongoBackend, MongoOptions};
//!
//! let client = mongodb::sync::Client::with_uri_str("mongodb://127.0.0.1:27017/")?;
//! configure(MongoBackend::create_with(&client, "projectdb", MongoOptions::new().collection("locks"))?);
//!
//! if let Some(guard) = Lock::new("nightly-report").try_acquire()? {
//!     // ... the lock is held (and renewed) while `guard` lives
//!     guard.release()?;
//! }
//! # Ok(()) }
//! ```
//!
//! `create` prepares the collection (see [Indexes](#indexes) and
//! [Deployments](#deployments)) within a set-up deadline (default 10 s);
//! [`MongoOptions`] sets the collection name (default `shylock`), the write
//! concern (default `majority`), the garbage-collection grace (default 1 h),
//! the set-up deadline and the bound of each command (default 10 s).
//! `MongoBackend::new` makes a backend without contacting the server, for a
//! collection prepared beforehand. Both forms have the same names:
//! `create(client, db)`, `create_with(client, db, options)`, `new(client, db,
//! options)` (no I/O), `prepare()`, `database()`, `collection()`.
//!
//! # Servers that can grant a lock twice are refused
//!
//! `create`, `create_with` and `prepare` first send one `buildInfo`. A server
//! known not to run a conditional single-document update atomically across
//! connections is refused with [`shylock_core::Error::InvalidConfig`], which
//! names the server and its version. Today that is **FerretDB v1** (and
//! v0), recognized by the `ferretdbVersion` field FerretDB adds to its
//! `buildInfo` reply (`"v1.24.2"`; MongoDB has no such field, so MongoDB and
//! any server without it pass; a FerretDB version that cannot be read counts
//! as v1, v2 and later are not flagged). FerretDB v1 runs `findAndModify` as
//! a query followed by a separate write by `_id` (its issue 2168): with 4
//! processes hammering one lock on v1.24.2, 1197 of 2669 grants repeated a
//! fencing token, i.e. the lock was granted twice.
//!
//! [`MongoOptions::allow_non_atomic_server`]`(true)` lets such a server
//! through, with a `tracing` warning at set-up. It is meant for tests and
//! for single-connection use only: every user of the locks in ONE process,
//! through one client built with `max_pool_size(1)` (commands on one
//! connection run one after another, so the query-then-write cannot
//! interleave).
//!
//! `MongoBackend::new` sends nothing, so it cannot check at construction;
//! instead the first acquisition through the backend (or a clone) sends the
//! `buildInfo` first and, on a refused server, fails with a
//! [`BackendErrorKind::InvalidConfig`](shylock_core::BackendErrorKind::InvalidConfig)
//! error (nothing is written). The verdict is remembered: later
//! acquisitions, and every acquisition of a backend made by `create`, cost
//! no extra command (one atomic load). Renewals and releases are not
//! gated: they only act on a lease this backend's acquisition granted.
//!
//! # The lock record
//!
//! One document per lock name, in one collection:
//!
//! ```text
//! { _id:       "<the lock name>",         // any string: Unicode, NUL, up to 1024 bytes
//!   owner:     "<32 hex digits>" | null,  // the holding acquisition's owner id; null = free
//!   releasers: ["<32 hex digits>", ...],  // owner ids of the last 16 releases, oldest first
//!   epoch:     NumberLong(<ms>),          // the record's creation time (the creator's
//!                                         //   estimate of the server clock, Unix ms)
//!   seq:       NumberLong(<n>),           // grants of this record so far
//!   expiresAt: ISODate(...) }             // end of the current (or last) lease
//! ```
//!
//! The fencing token of a grant is `epoch * 1000 + seq`. Records written by
//! versions before `releasers` have at most a string `releasedBy` (the last
//! releaser); the next release removes it.
//!
//! # Indexes
//!
//! * `_id_` (MongoDB's own unique index on `_id`): one record per lock name.
//!   It is also what makes a busy acquisition fail inside the same command
//!   (duplicate key, below).
//! * `shylock_expiresAt_ttl`, a TTL index on `{expiresAt: 1}` with
//!   `expireAfterSeconds` = the TTL grace (default 3600): garbage
//!   collection. A record is deleted only once its lease has been over (or
//!   it has been released) for the whole grace. A server that refuses TTL
//!   indexes (FerretDB answers `NotImplemented`, 238) gets a logged
//!   `tracing` warning, not an error: expiry is enforced by the acquisition
//!   itself, the index only deletes old records.
//!
//! `create` makes both idempotently; when many processes start at once the
//! losers' "already exists" answers are expected. It then lists the indexes
//! and refuses (with [`shylock_core::Error::InvalidConfig`]) a collection
//! with a unique index on another field (for example the Python shylock's
//! `name` index, if its collection is reused: every acquisition would
//! collide on it) or with a TTL index on `expiresAt` shorter than
//! [`MIN_TTL_GRACE`].
//!
//! # The algorithm: one command per operation
//!
//! *now* is the request's `now`: the core's lower-bound estimate of the
//! server's clock, sampled from the `hello` command's `localTime` (so the
//! backend's clock is [`ClockSource::Estimated`](shylock_core::backend::ClockSource::Estimated)).
//! Only plain update operators are used (no aggregation pipelines, no
//! `$$NOW`), so the same commands run on MongoDB 4.4 and later and on
//! MongoDB-compatible servers. Writes carry the configured write concern
//! (default `majority`) with a `wtimeout`, and every command `maxTimeMS`
//! (see [Deadlines](#deadlines-nothing-hangs)).
//!
//! **Acquire** — one `findAndModify`:
//!
//! ```text
//! filter:  { _id: name, releasers: { $ne: me },
//!            $or: [ { owner: null }, { expiresAt: { $lte: now } }, { owner: me } ] }
//! update:  { $set: { owner: me }, $max: { expiresAt: now + lease }, $inc: { seq: 1 },
//!            $setOnInsert: { epoch: now_ms } }
//! options: upsert: true, returnDocument: after
//! ```
//!
//! * The record is free, expired, or already ours (a retry after a lost
//!   reply): it becomes ours, `seq` rises by one; the returned document gives
//!   the token and the expiry. (`$max`: a late duplicate of our own earlier
//!   request, carrying an older `now`, never shortens the lease.)
//! * There is no record: the upsert inserts `{_id: name, owner: me, seq: 1,
//!   epoch: now, expiresAt}` (the `$ne` and the `$or` give the insert no
//!   fields, `_id` comes from the filter's equality).
//! * Another owner holds a live lease: the filter misses, so the upsert
//!   tries to insert a second document with the same `_id`, and the unique
//!   `_id` index refuses it with duplicate key error 11000: **busy**, nothing
//!   changed. (Because the filter is not a plain equality on `_id`, MongoDB
//!   does not retry such an upsert as an update.)
//! * We released the record already (we are among its `releasers`): this
//!   request is a late duplicate of one sent before our release (held up
//!   on a connection, while our retry was granted). The filter misses, the
//!   insert gets 11000: **busy**. Granting it would leave the lock held by
//!   an owner that is gone, for a lease. Only the last 16 releasers are kept
//!   (see [Release](#the-algorithm-one-command-per-operation)): that defect
//!   costs liveness (a lease nobody holds), never safety, and a duplicate
//!   lands within its own time limit, so it finds its owner among them
//!   unless 16 other owners were granted and released the lock meanwhile.
//!
//! On MongoDB, `findAndModify` on one document is atomic: of two racing
//! acquisitions of a free or expired record, the second one's write
//! conflicts, MongoDB retries it against the first one's result, its filter
//! no longer matches, and its insert gets 11000. Of two racing first
//! acquisitions of a new name, one inserts and the other gets 11000.
//!
//! **Renew** — one `findAndModify` with filter `{_id: name, owner: me}`,
//! update `{$max: {expiresAt: now + lease}}`, returning the new expiry; no
//! document: the lease is **lost** (taken over, released, or collected). An
//! expired lease nobody took over is still ours and is extended.
//!
//! **Release** — one `findAndModify` with filter `{_id: name, $or: [{owner:
//! me}, {owner: null, releasers: me}]}`, update `{$set: {owner: null,
//! expiresAt: now}, $push: {releasers: {$each: [me], $slice: -16}}, $unset:
//! {releasedBy: ""}}`; no document: **not the owner** (nothing changed).
//! `releasers` keeps the owner ids of the last 16 releases
//! ([`RELEASERS_REMEMBERED`](shylock_core::backend::RELEASERS_REMEMBERED)),
//! which the acquisition refuses (above). Its branch of the filter makes a
//! release idempotent for its own owner: on a deployment without retryable
//! writes (a standalone server, DocumentDB before 8.0.2, Cosmos DB with
//! `retryWrites=false`) a release whose answer was lost is sent again,
//! finds its own release and answers `Released`, not "not the owner" (the
//! owner is appended once more; nobody else's holding matches: a record
//! held by another owner has another `owner`, and a free record released by
//! others does not list this owner). The record is kept, so its `seq` keeps
//! rising for the next grant. (FerretDB v1 ignores `$slice`: there the list
//! grows by one owner id per release.)
//!
//! **Inspect** — one `find` by `_id` on the primary with read concern
//! `majority` (so it never shows a grant that a failover could still roll
//! back): a holding only if `owner` is set and `expiresAt` is after *now*.
//! **Server time** — one `hello`, its `localTime` (a BSON date on MongoDB,
//! an Int64 of epoch milliseconds on DocumentDB's gateway; both are read as
//! the clock, and a number that is negative or past year 9999 is not a
//! clock); a server that refuses
//! `hello` with any error other than an authorization, availability or time
//! error (MongoDB before 4.4.2 answers 59 `CommandNotFound`; Azure Cosmos DB
//! for MongoDB RU has answered 115 `CommandNotSupported`), or answers it
//! without `localTime`, is asked `isMaster` from then on; a server that
//! gives no `localTime` at all is refused (`InvalidConfig`): expiry needs
//! the server's clock.
//!
//! # Why fencing tokens only rise, also across garbage collection
//!
//! Within one record's life `epoch` is fixed and every grant increments
//! `seq`, so `epoch * 1000 + seq` rises by one per grant. A record is
//! deleted only by the TTL monitor, once the server's clock passes its
//! `expiresAt` + grace; every write sets `expiresAt` to at least its own
//! *now*, so the deletion happens at least a grace (1 h by default) after
//! the record's last write, and after its creation. A record re-created
//! later gets `epoch` = its creator's *now*, which is therefore at least
//! `grace - e` later than the deleted record's `epoch`, where `e` is the
//! disagreement between the clients' server-clock estimates (a round trip
//! plus drift over at most a minute: milliseconds). Its first token,
//! `epoch' * 1000 + 1`, exceeds every token of the deleted record,
//! `epoch * 1000 + seq`, as long as that record issued fewer than 1000
//! grants per millisecond of its life plus the grace — physically
//! impossible when every grant is a database round trip on one document.
//! (The same argument covers records deleted by hand, with the record's age
//! in place of the grace.) Tokens stay far below `u64::MAX` (epoch ≈ 1.8 ×
//! 10¹² ms × 1000).
//!
//! # Guarantees and their conditions
//!
//! * **No two holders of a live lease** — on MongoDB (standalone, replica set,
//!   or a sharded collection sharded on `_id`), by its single-document
//!   atomicity. On a replica set, with write concern `majority` (the
//!   default) a grant survives a failover; with `w: 1` a grant that the old
//!   primary had not replicated can be rolled back and granted again.
//! * **Clocks** — expiry is judged against the clients' estimates of the
//!   server clock, never against their wall clocks. The holder counts its
//!   lease as ended a safety margin early (the core's `safety_margin`, 1 %
//!   of the lease by default, plus the estimate's uncertainty). Replica set
//!   members' clocks must agree (NTP) to well within that margin, since an
//!   estimate may come from a different primary after a failover. For the
//!   same reason a step of the server's wall clock between two clients'
//!   samples shortens (forward) or lengthens (backward) a lease as the
//!   waiter sees it by the size of the step: the margin covers steps up to
//!   its size, a zero margin covers none. Slew the server's clock, never
//!   step it, while locks are held.
//! * **FerretDB v1 is not safe for locks between connections**: it runs a
//!   conditional update as a query and a separate write, so two connections
//!   can both be granted a lock (FerretDB issue 2168). It is refused unless
//!   [`MongoOptions::allow_non_atomic_server`] is set (see
//!   [above](#servers-that-can-grant-a-lock-twice-are-refused)). It is used
//!   here, with that opt-in, to test the commands and their replies, never
//!   to show atomicity. Three more costs on FerretDB v1 (SQLite storage):
//!   - it refuses the TTL index (`NotImplemented`), so records are never
//!     garbage-collected: every released or expired record stays, one per
//!     lock name ever used;
//!   - it pushes only a plain `{_id: x}` filter down to SQLite; the lock
//!     commands' filters (`_id` plus `owner`, or the acquisition's `$or`)
//!     make it read and filter the whole collection in Go, so every lock
//!     command scans every record. Costs grow with the number of lock names
//!     ever used: about 36 µs per record per command was measured (10 000
//!     names ≈ 0.36 s per acquisition).
//!   - it ignores `$slice` in `$push`: a record's `releasers` grows by one
//!     owner id per release instead of keeping the last 16.
//! * **Sharded collections** — safety needs `_id` unique across the whole
//!   collection. On a collection sharded on another key, `_id` is unique
//!   only per shard, and MongoDB 7.0+ runs an upsert that filters on `_id`
//!   without the shard key: a busy acquisition could insert a second record
//!   on another shard and grant the lock twice. `create`/`prepare` therefore
//!   read the collection's entry in `config.collections` (through mongos)
//!   and Cosmos DB's `customAction: GetCollection` and refuse a shard or
//!   partition key other than `_id` (ranged or hashed); see
//!   [Deployments](#deployments).
//!
//! # Deployments
//!
//! | deployment | status |
//! |---|---|
//! | MongoDB standalone (4.4+) | supported; no retryable writes, so a lost answer is retried by the core (acquisitions are cleaned up, releases recognise their own earlier success) |
//! | MongoDB replica set | supported; `majority` writes and reads by default; index builds use commit quorum `majority` |
//! | MongoDB sharded cluster | supported for an unsharded lock collection or one sharded on `_id` (`{_id: 1}` or `{_id: "hashed"}`); any other shard key is refused by `create` |
//! | Azure Cosmos DB for MongoDB (RU) | expected to work, not verified here: `hello` refusals fall back to `isMaster`; 16500 rate limiting is retried after its `RetryAfterMs`; a passing `InternalError` (1) is retried; an RU collection partitioned on another key than `_id` is refused (`customAction: GetCollection`); the TTL index may be refused (warning only) |
//! | Microsoft DocumentDB (open source: PostgreSQL + `pg_documentdb` + its gateway) | supported, **verified in every CI run**: its `hello` gives `localTime` as Int64 epoch milliseconds (read as the clock) and `msg: "isdbgrid"`; PostgreSQL restarting under the gateway (code 50463173, SQLSTATE 57P03, and the gateway's SCRAM handshake failing to reach PostgreSQL) and deadlocks (112) are waited through |
//! | Azure Cosmos DB for MongoDB vCore | expected to work: the same engine (`pg_documentdb`) behind Azure's own gateway, so the storage semantics verified on DocumentDB carry over; its gateway, authentication, limits and error codes are Azure's and were not run here |
//! | Amazon DocumentDB | expected to work, not verified here: before 8.0.2 it has no retryable writes, add `retryWrites=false` to the connection string (the error says so) |
//! | FerretDB v1 | refused unless [`MongoOptions::allow_non_atomic_server`] (tests, one connection only) |
//!
//! What was verified here, and how: every test runs against DocumentDB
//! (PostgreSQL 15 with `pg_documentdb` and its MongoDB-wire gateway, built
//! from source by `scripts/ensure-documentdb.sh`; atomic across connections,
//! so contenders get connections of their own), including `kill -9` of the
//! gateway and of PostgreSQL, TLS with `tlsCAFile`, and a chaos suite of
//! worker processes; FerretDB v1.24.2 only for the refusal of a non-atomic
//! server. Every test can be pointed at a real MongoDB
//! (`SHYLOCK_MONGODB_URI`). The behaviours of other deployments (a refused
//! `hello`, refused retryable writes, a sharded collection's
//! `config.collections` entry, transient error codes, a server that stops
//! answering) are played by a fault-injecting wire proxy (`shylock-testkit`)
//! in front of DocumentDB.
//!
//! Cosmos DB's rate limiting (error 16500 with `RetryAfterMs=` in its
//! message) is reported as
//! [`RateLimited`](shylock_core::BackendErrorKind::RateLimited) with that
//! delay, and the core retries after it.
//!
//! # Errors
//!
//! Driver errors map to [`BackendErrorKind`](shylock_core::BackendErrorKind)s.
//! Transient kinds are retried by the core within the caller's time limit
//! (an acquisition without a limit keeps retrying: waiting through an
//! outage is what a lock should do); the others end the call at once.
//!
//! | class of error | kind | the backend / core does | the caller sees |
//! |---|---|---|---|
//! | no server reachable yet (server selection), connection refused or reset, pool cleared, primary stepped down or not primary (10107, 13435, 13436, 189, 11602), shutting down (91, 11600), host unreachable (6, 7), socket error (9001), write conflict (112, also DocumentDB's deadlock), `InternalError` (1, passing on Cosmos DB; DocumentDB's gateway when PostgreSQL refuses connections), `FailedToSatisfyReadPreference` (133, mongos in an election), DocumentDB's packed PostgreSQL states of a server starting, stopping, out of connections or cut off (50463173 = 57P03 "starting up" / "not yet accepting connections"; 57P01, 57P02, 53300, 08000, 08001, 08003, 08004, 08006, 40001), a SCRAM handshake that failed because the gateway could not reach PostgreSQL, errors labelled `RetryableWriteError`/`RetryableError`/`SystemOverloadedError` | `Unavailable` | retried with backoff | nothing, or at the limit `Error::Timeout` (acquire) / `Error::Backend` (release, inspect) |
//! | the command's bound passed (the caller's limit, the lease, [`MongoOptions::request_timeout`]), `MaxTimeMSExpired` (50), write concern timeout (64), network timeouts (89, 202, 262) | `Timeout` (outcome unknown) | retried; an acquisition whose answer was lost is released when the acquisition ends | as above |
//! | Cosmos DB 16500 | `RateLimited`, with `RetryAfterMs` | retried after that delay | as above |
//! | authentication failed (18), unauthorized (13), user not found (11) | `Unauthorized` | not retried | `Error::Backend` |
//! | invalid namespace (73), unsatisfiable write concern (100), bad TLS or client settings, server too old; a server-selection error whose servers failed TLS or whose host name does not exist; retryable writes refused (DocumentDB before 8.0.2: the message says to add `retryWrites=false`); a server without a clock | `InvalidConfig` | not retried | `Error::InvalidConfig` (set-up) / `Error::Backend` |
//! | a record not shaped as expected, a reply without the expected fields, type mismatch (14), bad value (2), not implemented (238) | `Unexpected` | not retried | `Error::Backend` |
//! | anything else | `Other` | not retried | `Error::Backend` |
//!
//! Bad database or collection names (MongoDB's rules: database names of 1
//! to 63 bytes without `/\. "$*<>:|?` or NUL; collection names non-empty,
//! without `$` or NUL, not starting with `.` or `system.`, at most 255 bytes
//! with the database name), a TTL grace under [`MIN_TTL_GRACE`] and a zero
//! timeout are refused with [`shylock_core::Error::InvalidConfig`] before
//! anything is sent.
//!
//! # Deadlines: nothing hangs
//!
//! Every command has a bound: the caller's deadline, or
//! [`MongoOptions::request_timeout`] (10 s) when it gave none, and for an
//! acquisition or renewal at most its lease (a grant that arrives after
//! its lease is worthless). The bound goes to the server as `maxTimeMS`
//! and as the write concern's `wtimeout` (so a majority write concern with
//! a majority down fails instead of waiting for ever), and the backend
//! stops waiting for the driver at it with a `Timeout` error; no command is
//! sent once its deadline has passed. `create`, `create_with` and `prepare`
//! run within [`MongoOptions::setup_timeout`] (10 s), and say what they
//! waited for when it passes (instead of the driver's 30 s server selection
//! and a bare "server selection timeout"); their `createIndexes` carries
//! `maxTimeMS` and, on replica sets and sharded clusters, commit quorum
//! `majority` (the default, all voting members, waits for ever when one of
//! them is down).
//!
//! The async backend drops the driver's future at the bound (its connection
//! is closed). The sync driver cannot be interrupted: the sync backend makes
//! its driver calls on shylock's runtime's blocking threads and stops waiting
//! at the bound;
//! the call itself ends when the server answers or gives up (`maxTimeMS`),
//! when the driver's server selection gives up (`serverSelectionTimeoutMS`),
//! or when its connection fails. The 3.x driver does **not** apply
//! `socketTimeoutMS`: on a connection whose peer vanished silently, only
//! TCP keepalive (turned on by the driver, 120 s idle) ends such a call
//! (the `sync` module docs say more).
//!
//! # Testing
//!
//! `scripts/test.sh` builds FerretDB v1.24.2 once (`scripts/ensure-ferretdb.sh`)
//! and runs every test; each test binary starts its own FerretDB on a free
//! loopback port with its data in a temporary directory, and the tests opt
//! in with [`MongoOptions::allow_non_atomic_server`] (their contenders share
//! one connection where it matters). Set `SHYLOCK_MONGODB_URI` to run every
//! test against a real MongoDB instead (no opt-in then).
#![cfg_attr(
    not(any(feature = "async", feature = "sync")),
    allow(dead_code, unused_imports)
)]

#[cfg(feature = "async")]
mod async_backend;
#[cfg(any(feature = "async", feature = "sync"))]
mod core;
mod errors;
mod lock_commands;
mod options;
mod setup;
mod spec;
#[cfg(feature = "sync")]
pub mod sync;

#[cfg(feature = "async")]
pub use async_backend::MongoBackend;
pub use errors::DriverError;
/// The MongoDB driver this backend is built on, re-exported so that an
/// application can make its client with the very same driver version.
pub use mongodb;
pub use options::{
    DEFAULT_COLLECTION, DEFAULT_REQUEST_TIMEOUT, DEFAULT_SETUP_TIMEOUT, DEFAULT_TTL_GRACE,
    MIN_TTL_GRACE, MongoOptions,
};
