//! Contenders of several processes' worth on one database file: backends
//! of their own (each with its own connections and its own core state:
//! polling turns, wake-ups, clock estimate) that meet only in SQLite. No two
//! hold the lock at once, and tokens rise in the order of the holdings.

mod support;

use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use shylock_core::{AsyncLock, Backend, Lock, LockOptions};
use support::TempDb;

const ROUNDS: usize = 15;

fn options() -> LockOptions {
    // Generous: a loaded two-core machine, and every grant syncs to disk.
    LockOptions::default().timeout(Duration::from_secs(120))
}

/// What the holders saw: how many hold now, and the last token.
#[derive(Default)]
struct Ledger {
    holders: AtomicUsize,
    last: Mutex<u64>,
    holdings: AtomicUsize,
}

impl Ledger {
    fn hold(&self, token: u64) {
        assert_eq!(
            self.holders.fetch_add(1, Ordering::SeqCst),
            0,
            "two holders at once"
        );
        {
            let mut last = self.last.lock().expect("ledger");
            assert!(token > *last, "token {token} after {}", *last);
            *last = token;
        }
        std::thread::sleep(Duration::from_millis(1));
        self.holdings.fetch_add(1, Ordering::SeqCst);
        self.holders.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Two backends on one file, as two processes would have: blocking
/// contenders on one, async ones on the other.
#[test]
fn two_backends_on_one_file_never_overlap_and_tokens_rise() {
    let db = TempDb::new();
    let (first, second) = (db.handle(), db.handle());
    let name = support::name("two-backends");
    let ledger = Arc::new(Ledger::default());
    let mut threads = Vec::new();
    for _ in 0..3 {
        let (backend, name, ledger) = (first.clone(), name.clone(), Arc::clone(&ledger));
        threads.push(std::thread::spawn(move || {
            for _ in 0..ROUNDS {
                let lock = Lock::with_backend(name.as_str(), &backend).options(options());
                let guard = lock.acquire().expect("acquire");
                ledger.hold(guard.token().get());
                guard.release().expect("release");
            }
        }));
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let tasks: Vec<_> = (0..3)
            .map(|_| {
                let (backend, name, ledger) = (second.clone(), name.clone(), Arc::clone(&ledger));
                tokio::spawn(async move {
                    for _ in 0..ROUNDS {
                        let lock =
                            AsyncLock::with_backend(name.as_str(), &backend).options(options());
                        let guard = lock.acquire().await.expect("acquire");
                        let token = guard.token().get();
                        let on = Arc::clone(&ledger);
                        tokio::task::spawn_blocking(move || on.hold(token))
                            .await
                            .expect("hold");
                        guard.release().await.expect("release");
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.expect("an async contender");
        }
    });
    for thread in threads {
        thread.join().expect("a blocking contender");
    }
    assert_eq!(ledger.holdings.load(Ordering::SeqCst), 6 * ROUNDS);
}

/// The environment variable that makes [`child_contender`] a contender.
const CHILD_DB: &str = "SHYLOCK_SQLITE_CHILD_DB";
const CHILD_LOG: &str = "SHYLOCK_SQLITE_CHILD_LOG";
const CHILD_NAME: &str = "SHYLOCK_SQLITE_CHILD_NAME";

/// Real processes: this test binary started again, twice, each running
/// [`child_contender`] on the same file; each writes a line to a shared log
/// when it gets the lock and another before it releases. The log must show
/// one holding after the other, with rising tokens.
#[test]
fn contenders_in_two_processes_never_overlap_and_tokens_rise() {
    let db = TempDb::new();
    db.backend(); // the tables, before the children race for them
    let log = db.path().with_file_name("holdings.log");
    let name = support::name("processes");
    let exe = std::env::current_exe().expect("this test binary");
    let children: Vec<_> = (0..2)
        .map(|_| {
            Command::new(&exe)
                .args([
                    "--exact",
                    "child_contender",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env(CHILD_DB, db.path())
                .env(CHILD_LOG, &log)
                .env(CHILD_NAME, name.as_str())
                // Their test harness's report stays out of this one's.
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("start a child process")
        })
        .collect();
    for child in children {
        let output = child.wait_with_output().expect("wait for a child");
        assert!(
            output.status.success(),
            "a child failed: {}\n{}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let text = std::fs::read_to_string(&log).expect("the log");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines.len(),
        2 * 2 * 2 * ROUNDS,
        "every holding logged twice:\n{text}"
    );
    let mut last = 0;
    for pair in lines.chunks(2) {
        let (got, releasing) = (pair[0], pair[1]);
        let token: u64 = got
            .strip_prefix("got ")
            .and_then(|t| t.parse().ok())
            .unwrap_or_else(|| panic!("a holding starts with `got`, not {got:?}:\n{text}"));
        assert_eq!(
            releasing,
            format!("releasing {token}"),
            "overlapping holdings:\n{text}"
        );
        assert!(token > last, "token {token} after {last}:\n{text}");
        last = token;
    }
}

/// A contender of [`contenders_in_two_processes_never_overlap_and_tokens_rise`]
/// when started by it; otherwise does nothing. Two threads, each with a
/// backend of its own.
#[test]
fn child_contender() {
    let (Some(db), Some(log), Some(name)) = (
        std::env::var_os(CHILD_DB),
        std::env::var_os(CHILD_LOG),
        std::env::var(CHILD_NAME).ok(),
    ) else {
        return;
    };
    let threads: Vec<_> = (0..2)
        .map(|_| {
            let (db, log, name) = (db.clone(), log.clone(), name.clone());
            std::thread::spawn(move || {
                let backend =
                    Backend::from(shylock_sqlite_example::SqliteBackend::open(&db).expect("open"));
                for _ in 0..ROUNDS {
                    let lock = Lock::with_backend(name.as_str(), &backend).options(options());
                    let guard = lock.acquire().expect("acquire");
                    let token = guard.token();
                    append(Path::new(&log), &format!("got {token}\n"));
                    std::thread::sleep(Duration::from_millis(1));
                    append(Path::new(&log), &format!("releasing {token}\n"));
                    guard.release().expect("release");
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().expect("a contender thread");
    }
}

/// One line, in one append (whole, as the log's lines must be).
fn append(log: &Path, line: &str) {
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("open the log");
    file.write_all(line.as_bytes()).expect("append to the log");
}
