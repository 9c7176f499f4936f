//! A DocumentDB server for tests: PostgreSQL 15 with the `pg_documentdb`
//! extensions and the `pg_documentdb_gw` MongoDB-wire gateway, on free
//! 127.0.0.1 ports, with its data in a temporary directory and a SCRAM user.
//! Unlike FerretDB v1, DocumentDB runs a single-document `findAndModify`
//! atomically across connections, so contention tests give every contender
//! its own connection.
//!
//! The server is driven by the repository's `scripts/ensure-documentdb.sh`
//! (`$SHYLOCK_DOCUMENTDB_SCRIPT` names another copy), which builds DocumentDB
//! once and caches it; `scripts/test.sh` runs its `build` step before the
//! tests, so a start here takes a few seconds. If the script cannot start a
//! server, [`DocumentDb::start`] panics with its output: the test fails, it
//! is not skipped.
//!
//! A watcher process holds a pipe from the test process and stops the server
//! (and removes its data) when the pipe closes, so the server dies with the
//! test process however that ends, even when it lives in a static that is
//! never dropped. A [`DocumentDb`] is also stopped on `Drop`.
//!
//! ```no_run
//! let mut server = shylock_testkit::documentdb::DocumentDb::start();
//! let uri = server.uri(); // mongodb://shylock:…@127.0.0.1:PORT/?directConnection=true
//! server.kill_gateway(); // kill -9 of the gateway
//! server.kill_postgres(); // kill -9 of PostgreSQL and its backends
//! server.restart(); // both again: same ports, same data
//! # let _ = uri;
//! ```

use std::collections::HashMap;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};

/// The environment variable naming the `ensure-documentdb.sh` script.
pub const SCRIPT_ENV: &str = "SHYLOCK_DOCUMENTDB_SCRIPT";

/// The SCRAM user the script creates.
pub const USER: &str = "shylock";
/// That user's password.
pub const PASSWORD: &str = "shylock-test";

/// The path of `ensure-documentdb.sh`.
pub fn script() -> PathBuf {
    match std::env::var_os(SCRIPT_ENV) {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/ensure-documentdb.sh"),
    }
}

/// A DocumentDB server (PostgreSQL and the gateway) started by this process.
pub struct DocumentDb {
    dir: PathBuf,
    env: HashMap<String, String>,
    watcher: Option<(Child, ChildStdin)>,
}

impl DocumentDb {
    /// Build DocumentDB if needed (see the module docs), then start one
    /// server on free loopback ports with its data in a new temporary
    /// directory. Panics with the script's output if it cannot.
    pub fn start() -> DocumentDb {
        DocumentDb::start_with(false)
    }

    /// As [`start`](Self::start), but the gateway accepts TLS only, with a
    /// certificate signed by a test CA of this server ([`ca_file`](Self::ca_file));
    /// [`uri`](Self::uri) then carries `tls=true&tlsCAFile=…`.
    pub fn start_tls() -> DocumentDb {
        DocumentDb::start_with(true)
    }

    fn start_with(tls: bool) -> DocumentDb {
        let dir = tempfile::Builder::new()
            .prefix("shylock-documentdb-")
            .tempdir()
            .expect("create a temporary directory for DocumentDB")
            .keep();
        // The watcher first: whatever happens next, the server goes with us.
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(r#"cat >/dev/null; bash "$0" stop "$1" >/dev/null 2>&1; rm -rf "$1""#)
            .arg(script())
            .arg(&dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the DocumentDB watcher (sh)");
        let stdin = child.stdin.take().expect("the watcher's stdin");
        let mut server = DocumentDb {
            dir,
            env: HashMap::new(),
            watcher: Some((child, stdin)),
        };
        server.run_env(&["start"], tls);
        server.env = read_env(&server.dir.join("server.env"));
        server
    }

    fn run(&self, args: &[&str]) -> String {
        self.run_env(args, false)
    }

    fn run_env(&self, args: &[&str], tls: bool) -> String {
        let script = script();
        let out = Command::new("bash")
            .arg(&script)
            .arg(args[0])
            .arg(&self.dir)
            .args(&args[1..])
            .env("SHYLOCK_DOCUMENTDB_TLS", if tls { "1" } else { "0" })
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
        if !out.status.success() {
            panic!(
                "`{} {} {}` failed ({}):\n{}\n{}\nlog tail:\n{}",
                script.display(),
                args[0],
                self.dir.display(),
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
                self.log_tail()
            );
        }
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    fn var(&self, key: &str) -> String {
        self.env
            .get(key)
            .cloned()
            .unwrap_or_else(|| panic!("{} has no {key}", self.dir.display()))
    }

    /// The connection string, with the SCRAM credentials and
    /// `directConnection=true` (the gateway calls itself a mongos); for a
    /// server made by [`start_tls`](Self::start_tls), also `tls=true` and
    /// `tlsCAFile`.
    pub fn uri(&self) -> String {
        self.var("URI")
    }

    /// [`uri`](Self::uri) through `addr` (a proxy in front of the gateway),
    /// with the same credentials and options.
    pub fn uri_via(&self, addr: SocketAddr) -> String {
        via(&self.uri(), addr)
    }

    /// The test CA that signed the gateway's certificate.
    pub fn ca_file(&self) -> PathBuf {
        PathBuf::from(self.var("CA_FILE"))
    }

    /// The gateway's port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.var("MONGO_PORT")
            .parse()
            .expect("MONGO_PORT is a port number")
    }

    /// The gateway's socket address.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port()))
    }

    /// The data directory (kept across kills and restarts).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `kill -9` of the gateway (clients see their connections reset, then
    /// refused).
    pub fn kill_gateway(&mut self) {
        self.run(&["kill", "gateway"]);
    }

    /// `kill -9` of PostgreSQL and all its backends (the gateway stays and
    /// answers with errors until PostgreSQL is back).
    pub fn kill_postgres(&mut self) {
        self.run(&["kill", "postgres"]);
    }

    /// Start whatever is down again: same ports, same data.
    pub fn restart(&mut self) {
        self.run(&["restart"]);
    }

    /// Stop both parts cleanly (the data stays until drop).
    pub fn stop(&mut self) {
        self.run(&["stop"]);
    }

    /// The end of the gateway's and PostgreSQL's logs (for failure messages).
    pub fn log_tail(&self) -> String {
        let mut s = String::new();
        for log in ["gateway.log", "postgres.log"] {
            let text = std::fs::read_to_string(self.dir.join(log)).unwrap_or_default();
            let start = text.len().saturating_sub(2000);
            let start = (start..text.len())
                .find(|&i| text.is_char_boundary(i))
                .unwrap_or(text.len());
            s.push_str(&format!("--- {log}\n{}\n", &text[start..]));
        }
        s
    }
}

impl Drop for DocumentDb {
    fn drop(&mut self) {
        // Closing the pipe makes the watcher stop the server and remove its
        // data; wait for it.
        if let Some((mut child, mut stdin)) = self.watcher.take() {
            let _ = stdin.flush();
            drop(stdin);
            let _ = child.wait();
        }
    }
}

/// `uri` (`mongodb://[user:password@]host:port[/…][?…]`) with its host and
/// port replaced by `addr` (a proxy in front of the server), keeping the
/// credentials, the path and the options.
pub fn via(uri: &str, addr: SocketAddr) -> String {
    let rest = uri.trim_start_matches("mongodb://");
    let (auth, rest) = match rest.split_once('@') {
        Some((auth, rest)) if !auth.contains('/') => (format!("{auth}@"), rest),
        _ => (String::new(), rest),
    };
    let tail = rest.find(['/', '?']).map_or("/", |i| &rest[i..]);
    format!("mongodb://{auth}{addr}{tail}")
}

fn read_env(path: &Path) -> HashMap<String, String> {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    text.lines()
        .filter_map(|line| line.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.trim_matches('\'').to_owned()))
        .collect()
}
