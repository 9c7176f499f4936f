//! The backends under test, the servers the benchmark starts for them, and
//! the handles (each one counts its primitive calls).

use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use shylock::{Backend, BackendUrl, ConnectOptions, Driver, MemoryBackend, RawBackend};

use crate::counting::{Counting, Counts};
use crate::slow::{SLOW_DELAY, Slow};
use crate::util::{R, err, wall_ns};

/// The MongoDB database of our locks.
pub const DB: &str = "shylock_bench";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Memory,
    /// The in-memory backend with [`SLOW_DELAY`] added to every call (as a
    /// slow database would answer); only D runs on it.
    MemorySlow,
    /// DocumentDB (MongoDB protocol, atomic across connections): started
    /// here, or the server of `--documentdb-uri`.
    DocumentDb,
    /// MongoDB protocol: the FerretDB v1 started here, or the server of
    /// `--mongo-uri`.
    Mongo,
    ArangoEmulator,
    Arango,
}

impl Kind {
    pub fn parse(s: &str) -> R<Kind> {
        Ok(match s {
            "memory" => Kind::Memory,
            "memory-slow" => Kind::MemorySlow,
            "documentdb" => Kind::DocumentDb,
            "mongo" => Kind::Mongo,
            "arango-emulator" => Kind::ArangoEmulator,
            "arango" => Kind::Arango,
            other => {
                return Err(err(format!(
                    "unknown backend {other:?} (memory, memory-slow, documentdb, mongo, \
                     arango-emulator, arango)"
                )));
            }
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Memory => "memory",
            Kind::MemorySlow => "memory-slow",
            Kind::DocumentDb => "documentdb",
            Kind::Mongo => "mongo",
            Kind::ArangoEmulator => "arango-emulator",
            Kind::Arango => "arango",
        }
    }

    /// Spoken over the MongoDB wire protocol (DocumentDB, FerretDB, MongoDB).
    pub fn is_mongo(self) -> bool {
        matches!(self, Kind::DocumentDb | Kind::Mongo)
    }

    /// An in-memory backend (no other processes can reach it).
    pub fn is_memory(self) -> bool {
        matches!(self, Kind::Memory | Kind::MemorySlow)
    }

    /// Only scenario D runs on it (`memory-slow`: A to C would only show
    /// the added delay).
    pub fn d_only(self) -> bool {
        self == Kind::MemorySlow
    }
}

/// How to reach an ArangoDB server (real or emulated).
#[derive(Debug, Clone)]
pub struct ArangoConn {
    pub url: String,
    pub user: String,
    pub password: String,
    pub db: String,
}

/// The variable that gives a child process (ours, or the original's) the
/// MongoDB URI, credentials included.
pub const CHILD_MONGODB_URI: &str = "SHYLOCK_MONGODB_URI";
/// The variable that gives a child process the ArangoDB URL.
pub const CHILD_ARANGO_URL: &str = "SHYLOCK_ARANGO_URL";
/// The variable that gives a child process (and the benchmark, instead of
/// `--arango-password`) the ArangoDB password.
pub const CHILD_ARANGO_PASSWORD: &str = "SHYLOCK_ARANGO_PASSWORD";

/// A backend under test, with the server the benchmark started for it (if
/// any), stopped when the target is dropped.
pub struct Target {
    pub kind: Kind,
    /// Column label.
    pub label: String,
    /// What the server is, for the table's header.
    pub server: String,
    memory: Option<MemoryBackend>,
    pub mongo_uri: Option<String>,
    pub arango: Option<ArangoConn>,
    /// The MongoDB-protocol server is the FerretDB started here.
    pub is_ferretdb: bool,
    /// The MongoDB-protocol server is the DocumentDB started here.
    pub is_documentdb: bool,
    _server: Option<ServerProcess>,
    /// The DocumentDB started here (stopped on drop).
    #[cfg(feature = "mongo")]
    _documentdb: Option<shylock_testkit::documentdb::DocumentDb>,
}

impl Target {
    pub fn memory() -> Target {
        Target {
            kind: Kind::Memory,
            label: "memory".into(),
            server: "in-process `MemoryBackend`".into(),
            memory: Some(MemoryBackend::new()),
            mongo_uri: None,
            arango: None,
            is_ferretdb: false,
            is_documentdb: false,
            _server: None,
            #[cfg(feature = "mongo")]
            _documentdb: None,
        }
    }

    /// The in-memory backend with [`SLOW_DELAY`] added to every backend call
    /// (both forms), for D: whether holding many blocking guards needs
    /// threads when every call takes time.
    pub fn memory_slow() -> Target {
        Target {
            kind: Kind::MemorySlow,
            label: Kind::MemorySlow.as_str().into(),
            server: format!(
                "in-process `MemoryBackend`, {} ms added to every backend call (async form: \
                 `tokio::time::sleep` before the call; sync form: `std::thread::sleep`)",
                SLOW_DELAY.as_millis()
            ),
            ..Target::memory()
        }
    }

    /// MongoDB protocol: a FerretDB started here, or the user's server.
    pub fn mongo(uri: Option<&str>, ferretdb: Option<&str>) -> R<Target> {
        let (uri, server, process) = match uri {
            Some(uri) => (
                uri.to_owned(),
                format!(
                    "MongoDB-protocol server at `{}` (given by --mongo-uri)",
                    redact(uri)
                ),
                None,
            ),
            None => {
                let bin = ferretdb_binary(ferretdb)?;
                let version = ferretdb_version(&bin);
                let server = ServerProcess::ferretdb(&bin)?;
                let uri = format!("mongodb://127.0.0.1:{}/", server.port);
                (
                    uri,
                    format!(
                        "FerretDB {version} on SQLite (started by the benchmark on 127.0.0.1, temporary directory, telemetry off)"
                    ),
                    Some(server),
                )
            }
        };
        Ok(Target {
            kind: Kind::Mongo,
            label: if process.is_some() {
                "ferretdb"
            } else {
                "mongo"
            }
            .into(),
            server,
            memory: None,
            mongo_uri: Some(uri),
            arango: None,
            is_ferretdb: process.is_some(),
            is_documentdb: false,
            _server: process,
            #[cfg(feature = "mongo")]
            _documentdb: None,
        })
    }

    /// DocumentDB: one started here through shylock-testkit's harness
    /// (`scripts/ensure-documentdb.sh start`: PostgreSQL 15 with
    /// `pg_documentdb` and its gateway on free 127.0.0.1 ports, data in a
    /// temporary directory, a SCRAM user), or the user's server at `uri`.
    /// Atomic across connections: the backend runs on it without
    /// `allow_non_atomic_server`.
    #[cfg(feature = "mongo")]
    pub fn documentdb(uri: Option<&str>) -> R<Target> {
        use shylock_testkit::documentdb::{DocumentDb, script};
        let (uri, server, process) = match uri {
            Some(uri) => (
                uri.to_owned(),
                format!(
                    "DocumentDB at `{}` (given by --documentdb-uri)",
                    redact(uri)
                ),
                None,
            ),
            None => {
                eprintln!("bench: starting DocumentDB with {}", script().display());
                // The harness panics (with the script's output) if it
                // cannot start a server: that skips this column only.
                let db = std::panic::catch_unwind(DocumentDb::start).map_err(|p| {
                    let why = p
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| p.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                        .unwrap_or_else(|| "the harness panicked".into());
                    err(format!(
                        "DocumentDB did not start (is it built? `bash scripts/ensure-documentdb.sh build`): {}",
                        why.lines().next().unwrap_or("")
                    ))
                })?;
                let uri = db.uri();
                eprintln!("bench: DocumentDB listening on 127.0.0.1:{}", db.port());
                (
                    uri,
                    format!(
                        "DocumentDB: PostgreSQL 15 + pg_documentdb + gateway at commit {} \
                         (scripts/ensure-documentdb.sh; started by the benchmark on 127.0.0.1, \
                         temporary directory, SCRAM user)",
                        documentdb_commit(&script())
                    ),
                    Some(db),
                )
            }
        };
        Ok(Target {
            kind: Kind::DocumentDb,
            label: "documentdb".into(),
            server,
            memory: None,
            mongo_uri: Some(uri),
            arango: None,
            is_ferretdb: false,
            is_documentdb: process.is_some(),
            _server: None,
            _documentdb: process,
        })
    }

    /// DocumentDB needs the `mongo` feature.
    #[cfg(not(feature = "mongo"))]
    pub fn documentdb(_: Option<&str>) -> R<Target> {
        Err(err("built without the `mongo` feature"))
    }

    /// A real ArangoDB given by the user.
    pub fn arango(conn: ArangoConn) -> Target {
        Target {
            kind: Kind::Arango,
            label: "arango".into(),
            server: format!(
                "ArangoDB at `{}`, database `{}`",
                redact(&conn.url),
                conn.db
            ),
            memory: None,
            mongo_uri: None,
            arango: Some(conn),
            is_ferretdb: false,
            is_documentdb: false,
            _server: None,
            #[cfg(feature = "mongo")]
            _documentdb: None,
        }
    }

    /// The ArangoDB HTTP API emulator (`shylock-arango/emulator`, test
    /// support), started on a free loopback port: the binary
    /// `$SHYLOCK_ARANGO_EMULATOR_BIN`, or the one built beside this
    /// benchmark (`cargo build --release -p shylock-arango-emulator`, as
    /// scripts/bench.sh does), or else `cargo run --release -p
    /// shylock-arango-emulator`.
    pub fn arango_emulator() -> R<Target> {
        let server = ServerProcess::emulator()?;
        let conn = server
            .arango
            .clone()
            .ok_or_else(|| err("emulator: no connection details"))?;
        Ok(Target {
            kind: Kind::ArangoEmulator,
            label: "arango-emulator".into(),
            server: format!(
                "shylock-arango's emulator of the ArangoDB HTTP API (in-memory, one process, started by the benchmark on {})",
                conn.url
            ),
            memory: None,
            mongo_uri: None,
            arango: Some(conn),
            is_ferretdb: false,
            is_documentdb: false,
            _server: Some(server),
            #[cfg(feature = "mongo")]
            _documentdb: None,
        })
    }

    /// Several processes are possible (not for the in-memory backend, whose
    /// "other processes" are other handles on the same `MemoryBackend`).
    pub fn multiprocess(&self) -> bool {
        !self.kind.is_memory()
    }

    /// Arguments that make a child process reach the same backend, with
    /// [`child_env`](Self::child_env): no secret among them (anyone can
    /// read a process's arguments).
    pub fn child_args(&self) -> Vec<String> {
        let mut args = vec!["--backend".to_owned(), self.kind.as_str().to_owned()];
        if self.is_ferretdb {
            args.push("--child-on-ferretdb".into());
        }
        if let Some(a) = &self.arango {
            args.extend([
                "--arango-user".into(),
                a.user.clone(),
                "--arango-db".into(),
                a.db.clone(),
            ]);
        }
        args
    }

    /// The environment that gives a child process the backend's URLs and
    /// password ([`CHILD_MONGODB_URI`], [`CHILD_ARANGO_URL`],
    /// [`CHILD_ARANGO_PASSWORD`]), which stay out of its arguments.
    pub fn child_env(&self) -> Vec<(&'static str, String)> {
        let mut env = Vec::new();
        if let Some(uri) = &self.mongo_uri {
            env.push((CHILD_MONGODB_URI, uri.clone()));
        }
        if let Some(a) = &self.arango {
            env.push((CHILD_ARANGO_URL, a.url.clone()));
            env.push((CHILD_ARANGO_PASSWORD, a.password.clone()));
        }
        env
    }

    /// In a child: the target the parent described with [`child_args`].
    pub fn for_child(
        kind: Kind,
        mongo_uri: Option<String>,
        arango: Option<ArangoConn>,
        is_ferretdb: bool,
    ) -> Target {
        Target {
            kind,
            label: kind.as_str().into(),
            server: String::new(),
            memory: kind.is_memory().then(MemoryBackend::new),
            mongo_uri,
            arango,
            is_ferretdb,
            is_documentdb: false,
            _server: None,
            #[cfg(feature = "mongo")]
            _documentdb: None,
        }
    }

    /// A new handle (as a new process would make) on the async form,
    /// counting into `counts`. Must run inside the tokio runtime.
    pub async fn async_handle(&self, counts: &Arc<Counts>) -> R<Backend> {
        self.async_handle_in(counts, None).await
    }

    /// [`async_handle`](Self::async_handle) on another collection than the
    /// default `shylock` (MongoDB, ArangoDB).
    pub async fn async_handle_in(
        &self,
        counts: &Arc<Counts>,
        collection: Option<&str>,
    ) -> R<Backend> {
        if self.kind.is_memory() {
            return self.memory_handle(counts);
        }
        let (url, options) = self.connect_options(counts, collection, Driver::Async)?;
        counted(url.connect(&options).await?.raw(), counts)
    }

    /// A new handle on the in-memory backend (both forms), counting into
    /// `counts`; for `memory-slow`, with [`SLOW_DELAY`] added to every call
    /// (inside the count: a call is in flight during its delay).
    fn memory_handle(&self, counts: &Arc<Counts>) -> R<Backend> {
        let inner = self
            .memory
            .clone()
            .ok_or_else(|| err("no memory backend"))?;
        let counts = Arc::clone(counts);
        Ok(if self.kind == Kind::MemorySlow {
            Backend::from_both(Counting {
                inner: Arc::new(Slow {
                    inner,
                    delay: SLOW_DELAY,
                }),
                counts,
            })
        } else {
            Backend::from_both(Counting {
                inner: Arc::new(inner),
                counts,
            })
        })
    }

    /// A new handle on the sync form. Must run outside the tokio runtime.
    pub fn sync_handle(&self, counts: &Arc<Counts>) -> R<Backend> {
        self.sync_handle_in(counts, None)
    }

    /// [`sync_handle`](Self::sync_handle) on another collection than the
    /// default `shylock` (MongoDB, ArangoDB).
    pub fn sync_handle_in(&self, counts: &Arc<Counts>, collection: Option<&str>) -> R<Backend> {
        if self.kind.is_memory() {
            return self.memory_handle(counts);
        }
        let (url, options) = self.connect_options(counts, collection, Driver::Sync)?;
        counted(url.connect_blocking(&options)?.raw(), counts)
    }

    /// The server's backend URL, and the options of a new handle on it
    /// (MongoDB: database [`DB`], the FerretDB opt-in, command monitoring;
    /// ArangoDB: credentials and database), on `collection` if given (else
    /// the default `shylock`).
    #[cfg_attr(not(feature = "mongo"), allow(unused_variables))]
    fn connect_options(
        &self,
        counts: &Arc<Counts>,
        collection: Option<&str>,
        driver: Driver,
    ) -> R<(BackendUrl, ConnectOptions)> {
        let mut options = ConnectOptions::new().driver(driver);
        let url = if let Some(uri) = &self.mongo_uri {
            // On the FerretDB v1 that the benchmark starts, the opt-in to a
            // server without atomic conditional updates (the backend refuses
            // it otherwise; the benchmark measures speed and load there,
            // and counts the double grants FerretDB causes in C).
            options = options
                .database(DB)
                .allow_non_atomic_server(self.is_ferretdb);
            #[cfg(feature = "mongo")]
            {
                options = options.mongo_client_options(monitored(counts));
            }
            uri
        } else if let Some(a) = &self.arango {
            options = options
                .user(a.user.clone())
                .password(a.password.clone())
                .database(a.db.clone());
            &a.url
        } else {
            return Err(err("no server"));
        };
        if let Some(c) = collection {
            options = options.collection(c);
        }
        Ok((BackendUrl::parse(url)?, options))
    }
}

/// The DocumentDB commit that `ensure-documentdb.sh` builds (its
/// `DOCDB_COMMIT=`), or `?`.
#[cfg(feature = "mongo")]
fn documentdb_commit(script: &Path) -> String {
    std::fs::read_to_string(script)
        .ok()
        .and_then(|text| {
            text.lines().find_map(|l| {
                l.trim()
                    .strip_prefix("DOCDB_COMMIT=")
                    .map(|c| c.trim_matches(['"', '\'']).to_owned())
            })
        })
        .unwrap_or_else(|| "?".into())
}

/// A connection string without its password.
/// `url` as [`shylock::BackendUrl`] shows it: no password, no query value
/// but a few harmless ones.
pub fn redact(url: &str) -> String {
    match shylock::BackendUrl::parse(url) {
        Ok(u) => u.to_string(),
        Err(_) => "(a URL that does not parse)".to_owned(),
    }
}

/// A handle on `raw` that counts its calls into `counts`.
fn counted(raw: &RawBackend, counts: &Arc<Counts>) -> R<Backend> {
    let counts = Arc::clone(counts);
    Ok(match raw {
        RawBackend::Async(inner) => Backend::from_async_arc(Arc::new(Counting {
            inner: Arc::clone(inner),
            counts,
        })),
        RawBackend::Sync(inner) => Backend::from_sync_arc(Arc::new(Counting {
            inner: Arc::clone(inner),
            counts,
        })),
        other => return Err(err(format!("cannot count the calls of {other:?}"))),
    })
}

/// The MongoDB driver's command monitoring, counting into `counts.wire`.
#[cfg(feature = "mongo")]
fn monitored(
    counts: &Arc<Counts>,
) -> impl Fn(&mut shylock::mongo::mongodb::options::ClientOptions) + Send + Sync + 'static {
    use shylock::mongo::mongodb::event::{EventHandler, command::CommandEvent};
    let counts = Arc::clone(counts);
    move |options| {
        let counts = Arc::clone(&counts);
        options.command_event_handler = Some(EventHandler::callback(move |event: CommandEvent| {
            if let CommandEvent::Started(_) = event {
                counts
                    .wire
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }));
        options.app_name = Some("shylock-bench".into());
    }
}

/// The repository root (the examples crate's parent).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

/// The FerretDB binary: `--ferretdb`, `$SHYLOCK_FERRETDB_BIN`, or what
/// `scripts/ensure-ferretdb.sh` prints (it builds FerretDB if missing).
fn ferretdb_binary(given: Option<&str>) -> R<String> {
    if let Some(bin) = given {
        return Ok(bin.to_owned());
    }
    if let Ok(bin) = std::env::var("SHYLOCK_FERRETDB_BIN")
        && !bin.is_empty()
    {
        return Ok(bin);
    }
    let script = repo_root().join("scripts/ensure-ferretdb.sh");
    eprintln!("bench: finding FerretDB with {}", script.display());
    let out = Command::new("bash")
        .arg(&script)
        .stderr(Stdio::inherit())
        .output()?;
    let bin = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    if !out.status.success() || bin.is_empty() {
        return Err(err(format!("{} failed", script.display())));
    }
    Ok(bin)
}

fn ferretdb_version(bin: &str) -> String {
    Command::new(bin)
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .find_map(|l| l.strip_prefix("version: ").map(str::to_owned))
        })
        .unwrap_or_else(|| "(unknown version)".into())
}

/// A free TCP port on 127.0.0.1.
fn free_port() -> R<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A server process, killed (and its temporary directory removed) on drop.
struct ServerProcess {
    child: Child,
    /// Kept open: the emulator serves until its standard input closes.
    stdin: Option<std::process::ChildStdin>,
    dir: Option<PathBuf>,
    port: u16,
    url: String,
    arango: Option<ArangoConn>,
}

impl ServerProcess {
    fn ferretdb(bin: &str) -> R<ServerProcess> {
        let dir = std::env::temp_dir().join(format!(
            "shylock-bench-ferretdb-{}-{}",
            std::process::id(),
            wall_ns()
        ));
        std::fs::create_dir_all(&dir)?;
        let log = std::fs::File::create(dir.join("ferretdb.log"))?;
        let port = free_port()?;
        let child = Command::new(bin)
            .arg("--handler=sqlite")
            .arg(format!("--sqlite-url=file:{}/", dir.display()))
            .arg(format!("--state-dir={}", dir.display()))
            .arg(format!("--listen-addr=127.0.0.1:{port}"))
            .arg("--debug-addr=-")
            .arg("--telemetry=disable")
            .arg("--log-level=warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        let mut server = ServerProcess {
            child,
            stdin: None,
            dir: Some(dir),
            port,
            url: format!("mongodb://127.0.0.1:{port}/"),
            arango: None,
        };
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(status) = server.child.try_wait()? {
                return Err(err(format!(
                    "FerretDB exited at start ({status}); see its log"
                )));
            }
            if started.elapsed() > Duration::from_secs(30) {
                return Err(err("FerretDB did not listen within 30 s"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        eprintln!("bench: FerretDB listening on {}", server.url);
        Ok(server)
    }

    fn emulator() -> R<ServerProcess> {
        const NAME: &str = "shylock-arango-emulator";
        let beside = std::env::current_exe()
            .ok()
            .and_then(|exe| Some(exe.parent()?.parent()?.join(NAME)))
            .filter(|p| p.is_file());
        let mut cmd = match (std::env::var_os("SHYLOCK_ARANGO_EMULATOR_BIN"), beside) {
            (Some(bin), _) => Command::new(bin),
            (None, Some(bin)) => Command::new(bin),
            (None, None) => {
                eprintln!("bench: building and starting the ArangoDB emulator with cargo");
                let mut c =
                    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
                c.args(["run", "--release", "--quiet", "-p", NAME, "--manifest-path"])
                    .arg(repo_root().join("Cargo.toml"));
                c
            }
        };
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let stdin = child.stdin.take();
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| err("emulator: no stdout"))?;
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line)?;
        // `URL USER PASSWORD DATABASE`
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [url, user, password, db] = fields[..] else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(err(format!(
                "the emulator printed {:?}, not `URL USER PASSWORD DATABASE`",
                line.trim()
            )));
        };
        if !url.starts_with("http://127.0.0.1:") {
            let _ = child.kill();
            let _ = child.wait();
            return Err(err(format!(
                "the emulator serves on {url}, not on 127.0.0.1"
            )));
        }
        let port = url
            .trim_end_matches('/')
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
        eprintln!("bench: ArangoDB emulator at {url}");
        Ok(ServerProcess {
            child,
            stdin,
            dir: None,
            port,
            url: url.to_owned(),
            arango: Some(ArangoConn {
                url: url.to_owned(),
                user: user.to_owned(),
                password: password.to_owned(),
                db: db.to_owned(),
            }),
        })
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(dir) = self.dir.take() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_secret_goes_into_a_childs_arguments() {
        let mut t = Target::arango(ArangoConn {
            url: "http://127.0.0.1:8529".into(),
            user: "root".into(),
            password: "hunter2".into(),
            db: "bench".into(),
        });
        assert!(!t.server.contains("hunter2"), "{}", t.server);
        t.mongo_uri = Some("mongodb://alice:hunter2@127.0.0.1:27017/?tls=true".into());
        let args = t.child_args();
        assert!(!args.iter().any(|a| a.contains("hunter2")), "{args:?}");
        let env = t.child_env();
        assert!(
            env.contains(&(CHILD_ARANGO_PASSWORD, "hunter2".to_owned())),
            "{env:?}"
        );
        assert!(
            env.contains(&(
                CHILD_MONGODB_URI,
                "mongodb://alice:hunter2@127.0.0.1:27017/?tls=true".to_owned()
            )),
            "{env:?}"
        );
        assert!(env.contains(&(CHILD_ARANGO_URL, "http://127.0.0.1:8529".to_owned())));
    }

    #[test]
    fn server_labels_show_no_password() {
        let t = Target::arango(ArangoConn {
            url: "http://root:hunter2@127.0.0.1:8529/?token=hunter2".into(),
            user: "root".into(),
            password: String::new(),
            db: "bench".into(),
        });
        assert!(!t.server.contains("hunter2"), "{}", t.server);
        assert!(t.server.contains("127.0.0.1:8529"), "{}", t.server);
        assert!(
            !redact("mongodb://u:hunter2@h/?tlsCertificateKeyFilePassword=hunter2")
                .contains("hunter2")
        );
    }
}
