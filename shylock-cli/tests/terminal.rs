//! `shylock run` on a real terminal (issue 22): Ctrl-Z, Ctrl-\ and Ctrl-C
//! typed on a pseudo-terminal, so that the kernel's line discipline sends
//! the signal to the terminal's foreground process group, as when a person
//! types it; and a command that reads the terminal, with and without
//! `--foreground`.
//!
//! The terminal is driven by `tests/support/pty_run.py` (Python's `pty`
//! module; python3 is on every machine that runs these tests): `shylock` is
//! the session leader of a new session on the pseudo-terminal, in the
//! terminal's foreground group, as a shell's foreground job is.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use rustix::process::{Pid, Signal, kill_process, kill_process_group, test_kill_process};
use support::*;

const LIMIT: Duration = Duration::from_secs(30);

/// `shylock` on a pseudo-terminal.
struct Terminal {
    driver: Child,
    orders: ChildStdin,
    /// What the terminal showed, appended as it comes.
    screen: PathBuf,
    /// The driver's last line: `exit N` or `signal N`.
    status: mpsc::Receiver<String>,
}

impl Terminal {
    /// `shylock <args>` on a new pseudo-terminal; the screen goes to `screen`.
    fn start(screen: &Path, args: &[String]) -> Terminal {
        let driver = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/pty_run.py");
        let mut cmd = Command::new("python3");
        cmd.arg(driver)
            .arg(screen)
            .args(["env", "--default-signal", env!("CARGO_BIN_EXE_shylock")])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("SHYLOCK_") {
                cmd.env_remove(key);
            }
        }
        let mut driver = cmd.spawn().expect("start the terminal driver (python3)");
        let orders = driver.stdin.take().expect("the driver's stdin");
        let stdout = driver.stdout.take().expect("the driver's stdout");
        let (tx, status) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        Terminal {
            driver,
            orders,
            screen: screen.to_owned(),
            status,
        }
    }

    /// Type `bytes` on the terminal.
    fn type_keys(&mut self, bytes: &[u8]) {
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        writeln!(self.orders, "type {hex}").expect("an order to the driver");
        self.orders.flush().expect("an order to the driver");
    }

    /// Wait until the screen shows `needle`; the whole screen.
    fn wait_for_screen(&self, needle: &str, limit: Duration) -> String {
        wait_for_text(&self.screen, needle, limit)
    }

    fn screen(&self) -> String {
        std::fs::read_to_string(&self.screen).unwrap_or_default()
    }

    /// How `shylock` ended (`exit N` or `signal N`), within `limit`.
    fn wait(&mut self, limit: Duration) -> String {
        match self.status.recv_timeout(limit) {
            Ok(status) => {
                let _ = self.driver.wait();
                status
            }
            Err(_) => {
                let _ = self.driver.kill();
                panic!(
                    "shylock did not exit within {limit:?}; the screen: {:?}",
                    self.screen()
                );
            }
        }
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// Kills a process group, then a process, when dropped: what a failing test
/// left behind does not outlive it.
struct Cleanup(Option<Pid>, Option<Pid>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Some(pgid) = self.0 {
            let _ = kill_process_group(pgid, Signal::KILL);
        }
        if let Some(pid) = self.1 {
            let _ = kill_process(pid, Signal::KILL);
        }
    }
}

/// `run <backend> <extra> <name> -- sh -c <script>`, as arguments.
fn run_args(db: &str, extra: &[&str], name: &str, script: &str) -> Vec<String> {
    let mut args = vec!["run".to_owned()];
    args.extend(mongo_args(&server().uri(), db));
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    args.push(name.to_owned());
    args.extend(["--".into(), "sh".into(), "-c".into(), script.to_owned()]);
    args
}

/// The command's and shylock's pids, from the `ready <pid> <ppid>` line of
/// `log`.
fn ready(log: &Path) -> (Pid, Pid) {
    let text = wait_for_text(log, "ready", LIMIT);
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("ready "))
        .expect("a ready line");
    let pids: Vec<Pid> = line
        .split_whitespace()
        .map(|p| Pid::from_raw(p.parse().expect("a pid")).expect("a pid"))
        .collect();
    (pids[0], pids[1])
}

/// A script that writes `ready <its pid> <shylock's pid>` to `log`, then
/// runs `body`, then waits until `release` exists (at most 30 s), then
/// writes `end`.
fn script(log: &Path, release: &Path, body: &str) -> String {
    format!(
        "echo \"ready $$ $PPID\" >> {log}; {body} \
         i=0; while [ ! -e {release} ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done; \
         echo end >> {log}",
        log = log.display(),
        release = release.display()
    )
}

fn state_of(pid: Pid) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", pid.as_raw_nonzero())).ok()?;
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

/// Poll until `pid`'s state is (`want`) or is not (`!want`) `T`, at most
/// `limit`; whether it came.
fn wait_for_stopped(pid: Pid, want: bool, limit: Duration) -> bool {
    let started = std::time::Instant::now();
    while started.elapsed() < limit {
        if (state_of(pid) == Some('T')) == want {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// The held lock's fencing token, from `inspect --json`; `None` when free.
fn held_token(db: &str, name: &str) -> Option<u64> {
    let mut cmd = shylock();
    cmd.arg("inspect")
        .args(mongo_args(&server().uri(), db))
        .arg(name)
        .arg("--json");
    let out = run_within(&mut cmd, LIMIT);
    let value: serde_json::Value = serde_json::from_slice(&out.stdout).expect("inspect's JSON");
    value["token"].as_u64()
}

/// Issue 22 item 3 on a terminal: Ctrl-Z stops the command, not `shylock`,
/// which goes on renewing the lease (2 s here: it would have ended after 5
/// s); SIGCONT to `shylock`'s group (the shell's `fg`) resumes the command.
#[test]
fn ctrl_z_on_the_terminal_stops_the_command_and_the_lease_is_renewed() {
    let db = unique("tty_tstp");
    let name = unique("job");
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("log");
    let release = dir.path().join("release");
    let mut term = Terminal::start(
        &dir.path().join("screen"),
        &run_args(&db, &["--lease", "2s"], &name, &script(&log, &release, "")),
    );
    let (command, shylock) = ready(&log);
    let _cleanup = Cleanup(Some(command), Some(shylock));
    let token = held_token(&db, &name).expect("held");

    term.type_keys(b"\x1a");
    assert!(
        wait_for_stopped(command, true, Duration::from_secs(5)),
        "Ctrl-Z did not stop the command: {:?}; screen {:?}",
        state_of(command),
        term.screen()
    );
    std::thread::sleep(Duration::from_secs(5));
    assert_ne!(state_of(shylock), Some('T'), "shylock itself stopped");
    assert_eq!(
        held_token(&db, &name),
        Some(token),
        "the lease was not renewed while the command was stopped"
    );
    assert_eq!(state_of(command), Some('T'), "the command is still stopped");

    // `fg`: the shell continues the job's process group.
    kill_process_group(shylock, Signal::CONT).expect("SIGCONT");
    assert!(
        wait_for_stopped(command, false, Duration::from_secs(5)),
        "the command was not continued"
    );
    std::fs::write(&release, "").expect("release");
    assert_eq!(term.wait(LIMIT), "exit 0", "screen {:?}", term.screen());
    assert!(std::fs::read_to_string(&log).expect("log").contains("end"));
    assert_eq!(held_token(&db, &name), None, "released");
}

/// Issue 22 item 4 on a terminal: Ctrl-\ (SIGQUIT to the foreground group,
/// which is `shylock`, not the command's group) reaches the command once;
/// `shylock` exits with the command's status, the lock is released and
/// nothing is left running (before the fix: rc 131 and an orphaned command
/// that went on without the lock).
#[test]
fn ctrl_backslash_on_the_terminal_reaches_the_command_and_orphans_nothing() {
    let db = unique("tty_quit");
    let name = unique("job");
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("log");
    let release = dir.path().join("release");
    let body = format!("trap 'echo quit >> {}; exit 5' QUIT;", log.display());
    let mut term = Terminal::start(
        &dir.path().join("screen"),
        &run_args(&db, &[], &name, &script(&log, &release, &body)),
    );
    let (command, shylock) = ready(&log);
    let _cleanup = Cleanup(Some(command), Some(shylock));

    term.type_keys(b"\x1c");
    assert_eq!(term.wait(LIMIT), "exit 5", "screen {:?}", term.screen());
    let log_text = std::fs::read_to_string(&log).expect("log");
    assert_eq!(log_text.matches("quit").count(), 1, "{log_text:?}");
    assert!(!log_text.contains("end"), "{log_text:?}");
    assert!(
        test_kill_process(command).is_err(),
        "the command outlived shylock"
    );
    assert_eq!(held_token(&db, &name), None, "released");
}

/// A Python command that writes `ready <pid> <ppid>` to `log`, then a line
/// `int` for every SIGINT delivered to it (counted by the wakeup fd, which
/// gets one byte per delivery, where a shell's trap can merge two), until
/// `release` exists (at most 30 s).
const COUNT_SIGINTS: &str = r#"
import os, signal, sys, time
log, release = sys.argv[1], sys.argv[2]
r, w = os.pipe()
os.set_blocking(r, False)
os.set_blocking(w, False)
signal.set_wakeup_fd(w)
signal.signal(signal.SIGINT, lambda *a: None)
with open(log, "a") as f:
    f.write("ready %d %d\n" % (os.getpid(), os.getppid()))
deadline = time.time() + 30
while time.time() < deadline:
    done = os.path.exists(release)
    time.sleep(0.05)
    try:
        n = len(os.read(r, 100))
    except BlockingIOError:
        n = 0
    with open(log, "a") as f:
        f.write("int\n" * n)
    if done:
        break
"#;

/// Issue 22 item 9: with `--foreground`, Ctrl-C typed on the terminal
/// reaches the command (in `shylock`'s own process group) exactly once per
/// press: the terminal sends it to the whole group, and `shylock` does not
/// pass it on a second time (before the fix: 5 presses, 9 SIGINTs). A
/// SIGINT sent to `shylock` alone (kill) still reaches the command.
#[test]
fn with_foreground_ctrl_c_reaches_the_command_once_per_press() {
    let db = unique("tty_fg");
    let name = unique("job");
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("log");
    let release = dir.path().join("release");
    let mut args = vec!["run".to_owned()];
    args.extend(mongo_args(&server().uri(), &db));
    args.extend(["--foreground".into(), name.clone(), "--".into()]);
    args.extend(["python3".into(), "-c".into(), COUNT_SIGINTS.into()]);
    args.extend([log.display().to_string(), release.display().to_string()]);
    let mut term = Terminal::start(&dir.path().join("screen"), &args);
    let (command, shylock) = ready(&log);
    let _cleanup = Cleanup(None, Some(command));

    let presses = 4;
    for _ in 0..presses {
        term.type_keys(b"\x03");
        std::thread::sleep(Duration::from_millis(700));
    }
    // One more, sent to shylock alone: passed on.
    kill_process(shylock, Signal::INT).expect("SIGINT");
    std::thread::sleep(Duration::from_millis(1000));
    std::fs::write(&release, "").expect("release");
    assert_eq!(term.wait(LIMIT), "exit 0", "screen {:?}", term.screen());
    let log_text = std::fs::read_to_string(&log).expect("log");
    assert_eq!(
        log_text.matches("int").count(),
        presses + 1,
        "SIGINTs the command got for {presses} presses and one kill: {log_text:?}"
    );
    assert_eq!(held_token(&db, &name), None, "released");
}

/// Issue 22 item 8 on a terminal: a command that reads the terminal
/// without `--foreground` is stopped by SIGTTIN; `shylock` says "use
/// --foreground", and Ctrl-C still ends it (and the lock is released).
/// With `--foreground` the same command reads what is typed.
#[test]
fn a_command_reading_the_terminal_needs_foreground_and_is_reported() {
    let db = unique("tty_read");
    let name = unique("job");
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("log");
    let script = format!(
        "echo \"ready $$ $PPID\" >> {log}; read x; echo \"read $x\" >> {log}",
        log = log.display()
    );
    let mut term = Terminal::start(
        &dir.path().join("screen"),
        &run_args(&db, &[], &name, &script),
    );
    let (command, shylock) = ready(&log);
    let _cleanup = Cleanup(Some(command), Some(shylock));
    let screen = term.wait_for_screen("use --foreground", Duration::from_secs(15));
    assert_eq!(screen.matches("use --foreground").count(), 1, "{screen:?}");
    assert_eq!(state_of(command), Some('T'), "the command is stopped");

    term.type_keys(b"\x03");
    assert_eq!(term.wait(LIMIT), "exit 130", "screen {:?}", term.screen());
    assert!(
        test_kill_process(command).is_err(),
        "the command still runs"
    );
    assert_eq!(held_token(&db, &name), None, "released");

    // With --foreground: it reads the line typed.
    let log = dir.path().join("log2");
    let script = format!(
        "echo \"ready $$ $PPID\" >> {log}; read x; echo \"read $x\" >> {log}",
        log = log.display()
    );
    let mut term = Terminal::start(
        &dir.path().join("screen2"),
        &run_args(&db, &["--foreground"], &name, &script),
    );
    let (command, shylock) = ready(&log);
    let _cleanup = Cleanup(None, Some(command));
    let _ = shylock;
    term.type_keys(b"hello\n");
    assert_eq!(term.wait(LIMIT), "exit 0", "screen {:?}", term.screen());
    let log_text = std::fs::read_to_string(&log).expect("log");
    assert!(log_text.contains("read hello"), "{log_text:?}");
    assert!(!term.screen().contains("use --foreground"));
}
