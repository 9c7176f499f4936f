//! Test support: a MongoDB-protocol server for the tests of this crate.
//!
//! * If `SHYLOCK_MONGODB_URI` is set, every test runs against that server (a
//!   real MongoDB deployment); tests that must restart the server are then
//!   skipped with a printed reason.
//! * Otherwise each test binary starts its own FerretDB v1.24.2 (SQLite
//!   storage in a temporary directory, loopback only, a free port, telemetry
//!   off). The binary is `$SHYLOCK_FERRETDB_BIN`, else
//!   `$(go env GOPATH)/bin/ferretdb`, else `ferretdb` on `PATH`; if there is
//!   none the test FAILS and says to run `scripts/ensure-ferretdb.sh`.
//!
//! The FerretDB process harness is `shylock_testkit::ferretdb`.
#![allow(dead_code)]

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};

#[allow(unused_imports)]
pub use shylock_testkit::ferretdb::{FerretDb, URI_ENV, dead_uri};

/// Where the tests' server is.
pub enum Target {
    /// A real MongoDB given by `SHYLOCK_MONGODB_URI`.
    External(String),
    /// A FerretDB started by this test process.
    Ferret(FerretDb),
}

impl Target {
    /// The connection string.
    pub fn uri(&self) -> String {
        match self {
            Target::External(uri) => uri.clone(),
            Target::Ferret(f) => f.uri(),
        }
    }

    /// Whether this is a real MongoDB (given by the user).
    pub fn is_external(&self) -> bool {
        matches!(self, Target::External(_))
    }

    /// "FerretDB" or "MongoDB", for messages.
    pub fn kind(&self) -> &'static str {
        if self.is_external() {
            "MongoDB"
        } else {
            "FerretDB"
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
        _ => Target::Ferret(FerretDb::start(true)),
    })
}

/// Whether the tests run against FerretDB (no `SHYLOCK_MONGODB_URI`), read
/// from the environment without starting a server.
pub fn on_ferretdb() -> bool {
    !matches!(std::env::var(URI_ENV), Ok(uri) if !uri.trim().is_empty())
}

/// The backend options of the tests: the defaults, plus, on FerretDB, the
/// opt-in [`allow_non_atomic_server`](shylock_mongo::MongoOptions::allow_non_atomic_server)
/// (FerretDB v1 can grant a lock twice across connections, its issue 2168;
/// the tests drive contenders through one connection where that matters).
/// Against a real MongoDB the opt-in stays off, so the check is exercised.
pub fn options() -> shylock_mongo::MongoOptions {
    shylock_mongo::MongoOptions::new().allow_non_atomic_server(on_ferretdb())
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
/// through one connection (FerretDB's updates are not atomic across
/// connections, its issue 2168).
#[cfg(feature = "async")]
pub fn async_client(uri: &str, one_connection: bool) -> mongodb::Client {
    let options = client_options(uri, one_connection.then_some(1));
    mongodb::Client::with_options(options).expect("an async client")
}

/// A sync client; see [`async_client`].
#[cfg(feature = "sync")]
pub fn sync_client(uri: &str, one_connection: bool) -> mongodb::sync::Client {
    let options = client_options(uri, one_connection.then_some(1));
    mongodb::sync::Client::with_options(options).expect("a sync client")
}
