//! A FerretDB v1.24.2 process for tests: SQLite storage in a temporary
//! directory, a free 127.0.0.1 port, telemetry and the debug listener off.
//!
//! The binary is `$SHYLOCK_FERRETDB_BIN`, else `$(go env GOPATH)/bin/ferretdb`,
//! else `ferretdb` on `PATH`; if there is none, [`ferretdb_bin`] panics (the
//! test fails) and says to run `scripts/ensure-ferretdb.sh`. Tests that honour
//! [`URI_ENV`] run against a real MongoDB instead; that choice is the caller's.
//!
//! FerretDB runs under a small `sh` wrapper that stops it (and removes its
//! data directory, for servers that are never dropped) when the wrapper's
//! stdin pipe closes. The test process holds the pipe's other end, so the
//! server dies with the test process however that ends, even when it lives in
//! a static that is never dropped. A [`FerretDb`] is also stopped on `Drop`.
//!
//! ```no_run
//! let mut server = shylock_testkit::ferretdb::FerretDb::start(false);
//! let uri = server.uri(); // mongodb://127.0.0.1:PORT/
//! server.crash(); // kill -9
//! server.restart(); // same port, same data
//! # let _ = uri;
//! ```

use std::fs::File;
use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The environment variable naming a real MongoDB to test against.
pub const URI_ENV: &str = "SHYLOCK_MONGODB_URI";
/// The environment variable naming a FerretDB binary.
pub const BIN_ENV: &str = "SHYLOCK_FERRETDB_BIN";

/// The wrapper: runs FerretDB ($0 and "$@") in the background and
/// * stops it (SIGTERM) when stdin reaches end of file: the test process
///   closed the pipe, or died (a watcher subshell holds the pipe, so this
///   works even if the wrapper itself is killed);
/// * kills it at once (SIGKILL, a crash) on a line `KILL`;
/// * stops it when the wrapper gets SIGTERM, SIGINT or SIGHUP (for example
///   from `timeout` or Ctrl-C, which signal the whole process group);
/// * exits with FerretDB's status.
///
/// If $SHYLOCK_RMDIR is set, FerretDB's data directory is removed once it
/// has stopped (by the wrapper, or by the watcher if the wrapper is gone).
const WRAPPER: &str = r#"
exec 3<&0
"$0" "$@" </dev/null &
pid=$!
{
  while read -r line <&3; do
    if [ "$line" = KILL ]; then kill -KILL "$pid" 2>/dev/null; fi
  done
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

/// The path of the FerretDB binary, or a panic that says how to get one.
pub fn ferretdb_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let mut tried = Vec::new();
        if let Some(p) = std::env::var_os(BIN_ENV) {
            let p = PathBuf::from(p);
            if p.is_file() {
                return check_bin(p);
            }
            tried.push(format!("{BIN_ENV}={}", p.display()));
        }
        let gopath = Command::new("go")
            .args(["env", "GOPATH"])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .map(|s| s.trim().split(':').next().unwrap_or("").to_owned())
            .filter(|s| !s.is_empty())
            .or_else(|| std::env::var("HOME").ok().map(|h| format!("{h}/go")));
        if let Some(gopath) = gopath {
            let p = Path::new(&gopath).join("bin").join("ferretdb");
            if p.is_file() {
                return check_bin(p);
            }
            tried.push(p.display().to_string());
        }
        if let Some(path) = std::env::var_os("PATH") {
            for dir in std::env::split_paths(&path) {
                let p = dir.join("ferretdb");
                if p.is_file() {
                    return check_bin(p);
                }
            }
            tried.push("ferretdb on PATH".into());
        }
        panic!(
            "no FerretDB binary found (tried: {}). Run `scripts/ensure-ferretdb.sh` from the \
             repository root (it builds FerretDB v1.24.2 with Go), or set {BIN_ENV}, or set \
             {URI_ENV} to test against a real MongoDB",
            tried.join(", ")
        )
    })
    .clone()
}

fn check_bin(p: PathBuf) -> PathBuf {
    let out = Command::new(&p).arg("--version").output();
    match out {
        Ok(o) if String::from_utf8_lossy(&o.stdout).contains("version: v1.24.2") => p,
        Ok(o) => panic!(
            "{} is not a working FerretDB v1.24.2 (`--version` said {:?} / {:?}); run \
             `scripts/ensure-ferretdb.sh` (a plain `go install` builds a binary that panics at start)",
            p.display(),
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
        Err(e) => panic!(
            "cannot run {}: {e}; run `scripts/ensure-ferretdb.sh`",
            p.display()
        ),
    }
}

/// A FerretDB process under the `sh` wrapper.
pub struct FerretDb {
    dir: PathBuf,
    port: u16,
    proc: Option<Proc>,
    /// The wrapper removes `dir` on exit (shared servers, never dropped).
    wrapper_removes_dir: bool,
}

struct Proc {
    child: Child,
    stdin: Option<ChildStdin>,
}

impl FerretDb {
    /// Start a FerretDB on a free loopback port with its data in a new
    /// temporary directory. With `wrapper_removes_dir`, the wrapper removes
    /// the directory when it stops (for servers that are never dropped).
    pub fn start(wrapper_removes_dir: bool) -> FerretDb {
        let dir = tempfile::Builder::new()
            .prefix("shylock-ferretdb-")
            .tempdir()
            .expect("create a temporary directory for FerretDB")
            .keep();
        let mut last_error = String::new();
        for _ in 0..5 {
            let port = free_port();
            let mut server = FerretDb {
                dir: dir.clone(),
                port,
                proc: None,
                wrapper_removes_dir,
            };
            match server.spawn() {
                Ok(()) => return server,
                Err(e) => last_error = e,
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
        panic!("FerretDB did not start: {last_error}");
    }

    /// The connection string.
    pub fn uri(&self) -> String {
        format!("mongodb://127.0.0.1:{}/", self.port)
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join("ferretdb.log")
    }

    fn spawn(&mut self) -> Result<(), String> {
        let bin = ferretdb_bin();
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.log_path())
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
        // Keep the user's FERRETDB_* settings out of the tests.
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("FERRETDB_") {
                cmd.env_remove(key);
            }
        }
        if self.wrapper_removes_dir {
            cmd.env("SHYLOCK_RMDIR", &self.dir);
        } else {
            cmd.env_remove("SHYLOCK_RMDIR");
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot start sh for {}: {e}", bin.display()))?;
        let stdin = child.stdin.take();
        self.proc = Some(Proc { child, stdin });
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(30) {
            if let Some(proc) = self.proc.as_mut()
                && let Ok(Some(status)) = proc.child.try_wait()
            {
                self.proc = None;
                return Err(format!(
                    "FerretDB exited with {status} while starting; its log:\n{}",
                    self.log_tail()
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
            self.log_tail()
        ))
    }

    /// The end of FerretDB's log (for failure messages).
    pub fn log_tail(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = File::open(self.log_path()) {
            let _ = f.read_to_string(&mut s);
        }
        let start = s.len().saturating_sub(4000);
        let start = (start..s.len())
            .find(|&i| s.is_char_boundary(i))
            .unwrap_or(s.len());
        s[start..].to_owned()
    }

    /// Stop FerretDB (close the wrapper's stdin, wait for it). The data
    /// directory stays unless the wrapper removes it.
    pub fn stop(&mut self) {
        if let Some(mut proc) = self.proc.take() {
            drop(proc.stdin.take());
            let started = Instant::now();
            loop {
                match proc.child.try_wait() {
                    Ok(Some(_)) => break,
                    Ok(None) if started.elapsed() < Duration::from_secs(15) => {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    _ => {
                        let _ = proc.child.kill();
                        let _ = proc.child.wait();
                        break;
                    }
                }
            }
        }
    }

    /// Kill FerretDB at once (SIGKILL: a crash, no clean shutdown) and wait
    /// until it is gone. The data directory stays.
    pub fn crash(&mut self) {
        if let Some(proc) = self.proc.as_mut()
            && let Some(stdin) = proc.stdin.as_mut()
        {
            use std::io::Write;
            let _ = stdin.write_all(b"KILL\n");
            let _ = stdin.flush();
        }
        self.stop();
    }

    /// Start FerretDB again on the same port with the same data.
    pub fn restart(&mut self) {
        self.stop();
        if let Err(e) = self.spawn() {
            panic!("FerretDB did not restart on port {}: {e}", self.port);
        }
    }

    /// Whether the process is running.
    pub fn is_running(&mut self) -> bool {
        match self.proc.as_mut() {
            Some(p) => matches!(p.child.try_wait(), Ok(None)),
            None => false,
        }
    }
}

impl Drop for FerretDb {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A free TCP port on 127.0.0.1 (free when asked; FerretDB binds it next).
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local address").port()
}

/// A loopback address where nothing listens (for "server down" tests).
pub fn dead_uri() -> String {
    format!("mongodb://127.0.0.1:{}/", free_port())
}

impl FerretDb {
    /// The data directory (kept across [`crash`](Self::crash) and
    /// [`restart`](Self::restart); removed on drop).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The socket address FerretDB listens on (127.0.0.1).
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }
}
