//! Test support: a MongoDB-protocol server for the tests of this crate.
//!
//! * If `SHYLOCK_MONGODB_URI` is set, every test runs against that server (a
//!   real MongoDB deployment); tests that must kill the server start a
//!   DocumentDB of their own.
//! * Otherwise each test binary starts its own DocumentDB (PostgreSQL +
//!   `pg_documentdb` + its MongoDB-wire gateway: atomic across connections,
//!   so contenders get connections of their own), through
//!   `scripts/ensure-documentdb.sh` (`scripts/test.sh` builds it first). If it
//!   cannot start, the test FAILS with the script's output.
//! * `SHYLOCK_TEST_SERVER=ferretdb` runs them against FerretDB v1.24.2
//!   instead (not atomic across connections: contenders are funnelled through
//!   one connection, and the opt-in `allow_non_atomic_server` is set). Tests
//!   about FerretDB itself (its refusal) start one whatever this says.
//!
//! The process harnesses are `shylock_testkit::{documentdb, ferretdb}`.
#![allow(dead_code)]

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};

#[allow(unused_imports)]
pub use shylock_testkit::documentdb::{DocumentDb, via};
#[allow(unused_imports)]
pub use shylock_testkit::ferretdb::{FerretDb, URI_ENV, dead_uri};

/// The primitive conformance targets (both forms, so both features).
#[cfg(all(feature = "async", feature = "sync"))]
pub mod targets;

/// The environment variable that picks FerretDB (`ferretdb`) over DocumentDB.
pub const SERVER_ENV: &str = "SHYLOCK_TEST_SERVER";

/// Where the tests' server is.
pub enum Target {
    /// A real MongoDB given by `SHYLOCK_MONGODB_URI`.
    External(String),
    /// A DocumentDB started by this test process.
    DocumentDb(DocumentDb),
    /// A FerretDB started by this test process (`SHYLOCK_TEST_SERVER=ferretdb`).
    Ferret(FerretDb),
}

impl Target {
    /// The connection string (with credentials where the server needs them).
    pub fn uri(&self) -> String {
        match self {
            Target::External(uri) => uri.clone(),
            Target::DocumentDb(d) => d.uri(),
            Target::Ferret(f) => f.uri(),
        }
    }

    /// Whether this is a real MongoDB (given by the user).
    pub fn is_external(&self) -> bool {
        matches!(self, Target::External(_))
    }

    /// "DocumentDB", "FerretDB" or "MongoDB", for messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Target::External(_) => "MongoDB",
            Target::DocumentDb(_) => "DocumentDB",
            Target::Ferret(_) => "FerretDB",
        }
    }
}

static SHARED: OnceLock<Target> = OnceLock::new();

/// The server shared by the tests of this binary (started on first use).
pub fn server() -> &'static Target {
    SHARED.get_or_init(|| match std::env::var(URI_ENV) {
        Ok(uri) if !uri.trim().is_empty() => {
            eprintln!("tests run against the MongoDB at {URI_ENV}");
            Target::External(uri)
        }
        _ if on_ferretdb() => Target::Ferret(FerretDb::start(true)),
        _ => Target::DocumentDb(DocumentDb::start()),
    })
}

/// Whether the tests run against FerretDB (`SHYLOCK_TEST_SERVER=ferretdb`
/// and no `SHYLOCK_MONGODB_URI`), read from the environment without starting
/// a server.
pub fn on_ferretdb() -> bool {
    let external = matches!(std::env::var(URI_ENV), Ok(uri) if !uri.trim().is_empty());
    !external && matches!(std::env::var(SERVER_ENV), Ok(s) if s.eq_ignore_ascii_case("ferretdb"))
}

/// A server of the test's own, for tests that kill and restart it: always a
/// DocumentDB (a user's MongoDB is not ours to kill).
pub fn own_server() -> DocumentDb {
    DocumentDb::start()
}

/// The backend options of the tests: the defaults, plus, on FerretDB, the
/// opt-in [`allow_non_atomic_server`](shylock_mongo::MongoOptions::allow_non_atomic_server)
/// (FerretDB v1 can grant a lock twice across connections, its issue 2168;
/// the tests drive contenders through one connection there). On DocumentDB
/// and a real MongoDB the opt-in stays off, so the check is exercised.
pub fn options() -> shylock_mongo::MongoOptions {
    shylock_mongo::MongoOptions::new().allow_non_atomic_server(on_ferretdb())
}

/// The proxy mode of the fault tests: serializing on FerretDB (one
/// upstream connection, so FerretDB acts atomically), pass-through on any
/// other server (one upstream connection per client, so each connection
/// authenticates itself).
pub fn proxy_mode() -> shylock_testkit::proxy::Mode {
    if on_ferretdb() {
        shylock_testkit::proxy::Mode::Serializing
    } else {
        shylock_testkit::proxy::Mode::PassThrough
    }
}

/// A database name unique to one test (so tests can share a server). On a
/// real MongoDB (`SHYLOCK_MONGODB_URI`) the database is dropped when the
/// value is dropped; FerretDB's data goes with its temporary directory.
pub fn unique_db(test: &str) -> TestDb {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0);
    let mut test = test.to_owned();
    test.truncate(28);
    TestDb(format!(
        "shylock_t_{test}_{:x}_{:x}_{}",
        stamp & 0xffff_ffff,
        std::process::id(),
        NEXT.fetch_add(1, AtomicOrdering::Relaxed)
    ))
}

/// A test's database name (see [`unique_db`]).
pub struct TestDb(String);

impl std::ops::Deref for TestDb {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for TestDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Some(Target::External(uri)) = SHARED.get() else {
            return;
        };
        // On a helper thread: the sync driver must not run inside an async
        // test's runtime.
        let (uri, db) = (uri.clone(), self.0.clone());
        let dropped = std::thread::spawn(move || -> Result<(), String> {
            let client = mongodb::sync::Client::with_uri_str(&uri).map_err(|e| e.to_string())?;
            client.database(&db).drop().run().map_err(|e| e.to_string())
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("could not drop the test database {}: {dropped:?}", self.0);
        }
    }
}

/// Client options for `uri`: short server selection timeout for tests that
/// expect failure, the given pool size, and an app name.
pub fn client_options(uri: &str, pool: Option<u32>) -> mongodb::options::ClientOptions {
    let mut options = parse_options(uri);
    options.app_name = Some("shylock-mongo-tests".into());
    options.max_pool_size = pool;
    options
}

/// Parse on a helper thread with its own runtime (callable from sync code
/// and from inside async tests alike).
#[cfg(feature = "async")]
fn parse_options(uri: &str) -> mongodb::options::ClientOptions {
    let owned = uri.to_owned();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime");
        rt.block_on(async move { mongodb::options::ClientOptions::parse(owned).await })
    })
    .join()
    .expect("the parsing thread")
    .unwrap_or_else(|e| panic!("bad connection string {uri:?}: {e}"))
}

#[cfg(all(feature = "sync", not(feature = "async")))]
fn parse_options(uri: &str) -> mongodb::options::ClientOptions {
    mongodb::options::ClientOptions::parse(uri)
        .run()
        .unwrap_or_else(|e| panic!("bad connection string {uri:?}: {e}"))
}

/// An async client; `one_connection` funnels every command of this client
/// through one connection on FerretDB (its updates are not atomic across
/// connections, its issue 2168); on any other server the client keeps its
/// pool, so contenders sharing it run on connections of their own.
#[cfg(feature = "async")]
pub fn async_client(uri: &str, one_connection: bool) -> mongodb::Client {
    let options = client_options(uri, (one_connection && on_ferretdb()).then_some(1));
    mongodb::Client::with_options(options).expect("an async client")
}

/// A sync client; see [`async_client`].
#[cfg(feature = "sync")]
pub fn sync_client(uri: &str, one_connection: bool) -> mongodb::sync::Client {
    let options = client_options(uri, (one_connection && on_ferretdb()).then_some(1));
    mongodb::sync::Client::with_options(options).expect("a sync client")
}
