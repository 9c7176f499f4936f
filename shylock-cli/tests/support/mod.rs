//! Test support: a FerretDB started by the tests (127.0.0.1 only, a free
//! port, data in a temporary directory, telemetry off), and helpers to run
//! the `shylock` binary.
//!
//! The FerretDB binary is `$SHYLOCK_FERRETDB_BIN` (set by scripts/test.sh),
//! else `$HOME/go/bin/ferretdb`, else `ferretdb` on `PATH`. If there is none,
//! or it does not start, the test FAILS: run `scripts/ensure-ferretdb.sh`.
//!
//! FerretDB runs under a small `sh` wrapper that stops it when its stdin
//! pipe closes, so the server dies with the test process however that ends
//! (the shared server lives in a static that is never dropped).
#![allow(dead_code)]

use std::fs::File;
use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Output, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

const BIN_ENV: &str = "SHYLOCK_FERRETDB_BIN";

/// Runs FerretDB ($0 "$@") in the background; stops it (SIGTERM) when stdin
/// reaches end of file, or when the wrapper gets SIGTERM/SIGINT/SIGHUP;
/// removes $SHYLOCK_RMDIR once FerretDB is gone, if set.
const WRAPPER: &str = r#"
exec 3<&0
"$0" "$@" </dev/null &
pid=$!
{
  while read -r line <&3; do :; done
  kill -TERM "$pid" 2>/dev/null
  while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
  if [ -n "$SHYLOCK_RMDIR" ]; then rm -rf "$SHYLOCK_RMDIR"; fi
} </dev/null &
watcher=$!
exec 3<&-
finish() {
  kill "$watcher" 2>/dev/null
  if [ -n "$SHYLOCK_RMDIR" ]; then rm -rf "$SHYLOCK_RMDIR"; fi
  exit "$1"
}
trap 'kill -TERM "$pid" 2>/dev/null; wait "$pid"; finish 143' TERM INT HUP
wait "$pid"
finish "$?"
"#;

/// The FerretDB binary, or a panic saying how to get one.
pub fn ferretdb_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let mut candidates = Vec::new();
        if let Some(p) = std::env::var_os(BIN_ENV) {
            candidates.push(PathBuf::from(p));
        }
        if let Some(home) = std::env::var_os("HOME") {
            candidates.push(Path::new(&home).join("go/bin/ferretdb"));
        }
        if let Some(path) = std::env::var_os("PATH") {
            candidates.extend(std::env::split_paths(&path).map(|d| d.join("ferretdb")));
        }
        candidates
            .iter()
            .find(|p| p.is_file())
            .cloned()
            .unwrap_or_else(|| {
                panic!(
                    "no FerretDB binary found (tried {candidates:?}); run scripts/ensure-ferretdb.sh \
                     and set {BIN_ENV}"
                )
            })
    })
    .clone()
}

/// A FerretDB process under the wrapper.
pub struct FerretDb {
    dir: PathBuf,
    port: u16,
    proc: Option<(Child, Option<ChildStdin>)>,
}

impl FerretDb {
    /// Start FerretDB on a free loopback port; panics (the test fails) if it
    /// does not accept connections within 30 s.
    pub fn start(wrapper_removes_dir: bool) -> FerretDb {
        let dir = tempfile::Builder::new()
            .prefix("shylock-cli-ferretdb-")
            .tempdir()
            .expect("a temporary directory for FerretDB")
            .keep();
        let mut last = String::new();
        for _ in 0..5 {
            let port = free_port();
            let mut server = FerretDb {
                dir: dir.clone(),
                port,
                proc: None,
            };
            match server.spawn(wrapper_removes_dir) {
                Ok(()) => return server,
                Err(e) => last = e,
            }
        }
        panic!("FerretDB did not start: {last}");
    }

    fn spawn(&mut self, wrapper_removes_dir: bool) -> Result<(), String> {
        let bin = ferretdb_bin();
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.dir.join("ferretdb.log"))
            .map_err(|e| format!("cannot open the FerretDB log: {e}"))?;
        let log2 = log.try_clone().map_err(|e| e.to_string())?;
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(WRAPPER)
            .arg(&bin)
            .arg("--handler=sqlite")
            .arg(format!("--sqlite-url=file:{}/", self.dir.display()))
            .arg(format!("--state-dir={}", self.dir.display()))
            .arg(format!("--listen-addr=127.0.0.1:{}", self.port))
            .arg("--debug-addr=-")
            .arg("--telemetry=disable")
            .arg("--log-level=warn")
            .stdin(Stdio::piped())
            .stdout(log)
            .stderr(log2);
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("FERRETDB_") {
                cmd.env_remove(key);
            }
        }
        if wrapper_removes_dir {
            cmd.env("SHYLOCK_RMDIR", &self.dir);
        } else {
            cmd.env_remove("SHYLOCK_RMDIR");
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot start sh for {}: {e}", bin.display()))?;
        let stdin = child.stdin.take();
        self.proc = Some((child, stdin));
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(30) {
            if let Some((child, _)) = self.proc.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                self.proc = None;
                return Err(format!(
                    "FerretDB exited with {status} while starting; its log:\n{}",
                    self.log()
                ));
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.stop();
        Err(format!(
            "FerretDB did not accept connections on {addr} within 30 s; its log:\n{}",
            self.log()
        ))
    }

    fn log(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = File::open(self.dir.join("ferretdb.log")) {
            let _ = f.read_to_string(&mut s);
        }
        s
    }

    /// The connection string.
    pub fn uri(&self) -> String {
        format!("mongodb://127.0.0.1:{}/", self.port)
    }

    /// Stop FerretDB and wait (at most 15 s, then SIGKILL) until it is gone.
    pub fn stop(&mut self) {
        if let Some((mut child, stdin)) = self.proc.take() {
            drop(stdin);
            let started = Instant::now();
            loop {
                match child.try_wait() {
                    Ok(Some(_)) => break,
                    Ok(None) if started.elapsed() < Duration::from_secs(15) => {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    _ => {
                        let _ = child.kill();
                        let _ = child.wait();
                        break;
                    }
                }
            }
        }
    }
}

impl Drop for FerretDb {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("a local address").port()
}

/// A loopback connection string where nothing listens.
pub fn dead_uri() -> String {
    format!("mongodb://127.0.0.1:{}/", free_port())
}

/// The FerretDB shared by the tests of this binary.
pub fn server() -> &'static FerretDb {
    static SHARED: OnceLock<FerretDb> = OnceLock::new();
    SHARED.get_or_init(|| FerretDb::start(true))
}

/// A name unique to this test run (database and lock names).
pub fn unique(prefix: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!(
        "{prefix}_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// The `shylock` binary with a clean environment (no SHYLOCK_* of the user).
pub fn shylock() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_shylock"));
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("SHYLOCK_") {
            cmd.env_remove(key);
        }
    }
    cmd.stdin(Stdio::null());
    cmd
}

/// Backend arguments for a MongoDB-protocol server and a database.
pub fn mongo_args(uri: &str, db: &str) -> Vec<String> {
    vec![
        "--mongodb".into(),
        uri.into(),
        "--database".into(),
        db.into(),
        "--allow-non-atomic-server".into(),
    ]
}

/// Wait for a child at most `limit`; kill it and panic if it takes longer.
pub fn wait_for_exit(child: &mut Child, limit: Duration) -> ExitStatus {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the process did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Wait for a child's output at most `limit`.
pub fn output_within(mut child: Child, limit: Duration) -> Output {
    let status = wait_for_exit(&mut child, limit);
    let mut stdout = Vec::new();
    let mut stderr = Vec::new();
    if let Some(mut out) = child.stdout.take() {
        let _ = out.read_to_end(&mut stdout);
    }
    if let Some(mut err) = child.stderr.take() {
        let _ = err.read_to_end(&mut stderr);
    }
    Output {
        status,
        stdout,
        stderr,
    }
}

/// Run `cmd` to its end (at most `limit`), capturing its output.
pub fn run_within(cmd: &mut Command, limit: Duration) -> Output {
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start shylock");
    output_within(child, limit)
}

/// Poll until `path` contains `needle` (at most `limit`).
pub fn wait_for_text(path: &Path, needle: &str, limit: Duration) -> String {
    let started = Instant::now();
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if text.contains(needle) {
            return text;
        }
        assert!(
            started.elapsed() < limit,
            "{} did not contain {needle:?} within {limit:?}; it has {text:?}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
