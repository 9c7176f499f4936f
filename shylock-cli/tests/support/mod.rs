//! Test support: a DocumentDB started by the tests (PostgreSQL + its
//! MongoDB-wire gateway; 127.0.0.1 only, free ports, data in a temporary
//! directory, a SCRAM user), and helpers to run the `shylock` binary.
//!
//! The process harness is `shylock_testkit::documentdb`, which drives
//! `scripts/ensure-documentdb.sh` (scripts/test.sh builds DocumentDB first).
//! If it does not start, the test FAILS with the script's output.
#![allow(dead_code)]

use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[allow(unused_imports)]
pub use shylock_testkit::documentdb::{DocumentDb, via};
#[allow(unused_imports)]
pub use shylock_testkit::ferretdb::dead_uri;

/// The DocumentDB shared by the tests of this binary.
pub fn server() -> &'static DocumentDb {
    static SHARED: OnceLock<DocumentDb> = OnceLock::new();
    SHARED.get_or_init(DocumentDb::start)
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
///
/// Started through `env --default-signal` (GNU coreutils), which `exec`s it
/// with every signal at its default: the tests may run with signals ignored
/// (a background job of a non-interactive shell ignores SIGINT and SIGQUIT),
/// and shylock keeps a signal that was ignored at its start ignored (issue
/// 22, item 7), so the signal tests would test the harness, not shylock.
pub fn shylock() -> Command {
    let mut cmd = Command::new("env");
    cmd.arg("--default-signal")
        .arg(env!("CARGO_BIN_EXE_shylock"));
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("SHYLOCK_") {
            cmd.env_remove(key);
        }
    }
    cmd.stdin(Stdio::null());
    cmd
}

/// Write `text` to `path`, a file that (when new) only its owner may read, as a
/// password file should be (shylock warns about any other).
pub fn write_password_file(path: &Path, text: &str) {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .expect("password file");
    file.write_all(text.as_bytes()).expect("password file");
}

/// Backend arguments for a MongoDB-protocol server and a database. A
/// password in `uri` goes into a password file (shylock refuses one on the
/// command line), the user name stays in the URI.
pub fn mongo_args(uri: &str, db: &str) -> Vec<String> {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    let mut args = Vec::new();
    let split = uri.split_once("://").and_then(|(scheme, rest)| {
        let end = rest.find(['/', '?']).unwrap_or(rest.len());
        let at = rest[..end].rfind('@')?;
        let (user, password) = rest[..at].split_once(':')?;
        Some((format!("{scheme}://{user}{}", &rest[at..]), password))
    });
    match split {
        Some((without_password, password)) => {
            let dir = DIR.get_or_init(|| tempfile::tempdir().expect("tempdir"));
            let file = dir.path().join(unique("password"));
            let password = percent_decode(password);
            write_password_file(&file, &format!("{password}\n"));
            args.extend(["--mongodb".into(), without_password]);
            args.extend(["--password-file".into(), file.display().to_string()]);
        }
        None => args.extend(["--mongodb".into(), uri.to_owned()]),
    }
    args.extend(["--database".into(), db.into()]);
    args
}

/// `%XX` escapes decoded (the test servers' passwords are ASCII).
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = (bytes[i] == b'%')
            .then(|| s.get(i + 1..i + 3))
            .flatten()
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match hex {
            Some(b) => {
                out.push(b);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
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
