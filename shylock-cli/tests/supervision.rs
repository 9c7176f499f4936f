//! `shylock run` as a supervisor (issue 22, and issue 23 item 1): a broken
//! stderr, the signals it forwards, the exit code after a late release
//! answer, signals ignored at start (nohup), the environment the command
//! gets, no overlap on lease loss (the command dead before the lease can
//! end), background children, Ctrl-Z (SIGTSTP), and a command stopped for
//! the terminal.

mod support;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use rustix::process::{Pid, Signal, kill_process, kill_process_group, test_kill_process};
use shylock::mongo::mongodb::bson::{Bson, doc};
use shylock_testkit::proxy::{Mode, Proxy};
use support::*;

const LIMIT: Duration = Duration::from_secs(30);

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `shylock run <backend> <extra> <name> -- sh -c <script>`.
fn run_cmd(uri: &str, db: &str, extra: &[&str], name: &str, script: &str) -> Command {
    let mut cmd = shylock();
    cmd.arg("run")
        .args(mongo_args(uri, db))
        .args(extra)
        .arg(name)
        .args(["--", "sh", "-c", script]);
    cmd
}

fn inspect_code(uri: &str, db: &str, name: &str) -> Option<i32> {
    let mut cmd = shylock();
    cmd.arg("inspect").args(mongo_args(uri, db)).arg(name);
    run_within(&mut cmd, LIMIT).status.code()
}

/// A pipe whose reading end is already closed: every write to it fails
/// with EPIPE.
fn broken_pipe() -> Stdio {
    let (reader, writer) = std::io::pipe().expect("a pipe");
    drop(reader);
    Stdio::from(writer)
}

fn pid_of(child: &Child) -> Pid {
    Pid::from_raw(i32::try_from(child.id()).expect("a pid")).expect("a pid")
}

/// Kills a process group when dropped: a command that a failing test left
/// behind does not outlive it.
struct KillGroup(Option<Pid>);

impl Drop for KillGroup {
    fn drop(&mut self) {
        if let Some(pgid) = self.0 {
            let _ = kill_process_group(pgid, Signal::KILL);
        }
    }
}

/// A script that writes `ready <its pid>` to `log`, then runs until
/// `release` exists (at most 30 s), then writes `end`.
fn waiting_script(log: &Path, release: &Path) -> String {
    format!(
        "echo \"ready $$\" >> {log}; \
         i=0; while [ ! -e {release} ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done; \
         echo end >> {log}",
        log = log.display(),
        release = release.display()
    )
}

/// The pid in the `ready <pid>` line of `log`, once it is there.
fn ready_pid(log: &Path) -> Pid {
    let text = wait_for_text(log, "ready", LIMIT);
    let pid: i32 = text
        .lines()
        .find_map(|l| l.strip_prefix("ready "))
        .expect("a ready line")
        .trim()
        .parse()
        .expect("a pid");
    Pid::from_raw(pid).expect("a pid")
}

/// Issue 22 item 1: with stderr a pipe nobody reads, `shylock` still stops
/// the command on lease loss and exits 76; a `-n` run and a waiter still
/// exit 75, and `inspect` with a closed stdout 0 (not 101, a panic on
/// EPIPE).
#[test]
fn a_broken_stderr_changes_no_exit_code_and_orphans_no_command() {
    let server = server();
    let db = unique("epipe");
    let name = unique("job");
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("log");
    let release = dir.path().join("release");
    let proxy = Proxy::start(server.addr(), Mode::PassThrough).expect("the proxy");

    let mut holder = run_cmd(
        &via(&server.uri(), proxy.addr()),
        &db,
        &["--lease", "2s", "--kill-after", "1s"],
        &name,
        &waiting_script(&log, &release),
    )
    .stdout(Stdio::null())
    .stderr(broken_pipe())
    .spawn()
    .expect("start the holder");
    let command = ready_pid(&log);
    let _cleanup = KillGroup(Some(command));

    // The lock is held: -n and a waiter with --timeout get 75.
    for extra in [&["-n"][..], &["--timeout", "1s"]] {
        let mut waiter = run_cmd(&server.uri(), &db, extra, &name, "true")
            .stdout(Stdio::null())
            .stderr(broken_pipe())
            .spawn()
            .expect("start a waiter");
        let status = wait_for_exit(&mut waiter, LIMIT);
        assert_eq!(status.code(), Some(75), "{extra:?}: {status}");
    }

    // `inspect` with a closed stdout: still 0 (held).
    let mut inspect = shylock()
        .arg("inspect")
        .args(mongo_args(&server.uri(), &db))
        .arg(&name)
        .stdout(broken_pipe())
        .stderr(broken_pipe())
        .spawn()
        .expect("start inspect");
    let status = wait_for_exit(&mut inspect, LIMIT);
    assert_eq!(status.code(), Some(0), "inspect: {status}");

    // The holder is cut off from the server: its lease runs out.
    proxy.blackhole(Duration::from_secs(25));
    let status = wait_for_exit(&mut holder, LIMIT);
    proxy.clear_faults();
    let alive = test_kill_process(command).is_ok();
    assert_eq!(status.code(), Some(76), "the holder: {status}");
    assert!(!alive, "the command still runs after shylock exited");
    let log_text = std::fs::read_to_string(&log).expect("log");
    assert!(!log_text.contains("end"), "{log_text}");
}

/// Issue 22 item 4: SIGQUIT, SIGUSR1, SIGUSR2 and SIGALRM sent to `shylock`
/// reach the command's group (as SIGTERM does); `shylock` waits for the
/// command, exits with its code and releases the lock. Sent to a `shylock`
/// still waiting for the lock, they interrupt it (128 + N), as SIGINT does.
#[test]
fn quit_usr1_usr2_and_alrm_reach_the_command_and_the_lock_is_released() {
    let server = server();
    let db = unique("signals");
    for (signal, trap) in [
        (Signal::QUIT, "QUIT"),
        (Signal::USR1, "USR1"),
        (Signal::USR2, "USR2"),
        (Signal::ALARM, "ALRM"),
    ] {
        let name = unique("job");
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("log");
        let release = dir.path().join("release");
        let script = format!(
            "trap 'echo got >> {log}; exit 5' {trap}; {}",
            waiting_script(&log, &release),
            log = log.display()
        );
        let mut child = run_cmd(&server.uri(), &db, &[], &name, &script)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start shylock");
        let command = ready_pid(&log);
        let _cleanup = KillGroup(Some(command));

        // A waiter for the same lock: the signal interrupts it, 128 + N,
        // and its command never runs.
        let waiter_err = dir.path().join("waiter-stderr");
        let mut waiter = run_cmd(&server.uri(), &db, &[], &name, "echo waiter-ran >&2")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&waiter_err).expect("waiter's stderr"))
            .spawn()
            .expect("start the waiter");
        wait_for_text(&waiter_err, "waiting", LIMIT);
        kill_process(pid_of(&waiter), signal).expect("the signal");
        let status = wait_for_exit(&mut waiter, LIMIT);
        let said = std::fs::read_to_string(&waiter_err).expect("waiter's stderr");
        assert_eq!(
            status.code(),
            Some(128 + signal.as_raw()),
            "SIG{trap} to a waiter: {status}, {said:?}"
        );
        assert!(said.contains("interrupted"), "{said:?}");
        assert!(!said.contains("waiter-ran"), "{said:?}");

        kill_process(pid_of(&child), signal).expect("the signal");
        let status = wait_for_exit(&mut child, LIMIT);
        let log_text = std::fs::read_to_string(&log).expect("log");
        assert_eq!(
            status.code(),
            Some(5),
            "SIG{trap}: shylock {status}, log {log_text:?}"
        );
        assert!(log_text.contains("got"), "SIG{trap}: {log_text:?}");
        assert_eq!(
            inspect_code(&server.uri(), &db, &name),
            Some(1),
            "SIG{trap}: the lock is free"
        );
    }
}

/// Issue 22 item 6: a command that ended while its lease was valid is not
/// reported lost because of the release's answer (here: "not the owner").
#[test]
fn a_command_that_ended_inside_its_lease_keeps_its_exit_code() {
    let server = server();
    let db = unique("late");
    let name = unique("job");
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("log");
    let release = dir.path().join("release");
    let proxy = Proxy::start(server.addr(), Mode::PassThrough).expect("the proxy");
    let child = run_cmd(
        &via(&server.uri(), proxy.addr()),
        &db,
        &[],
        &name,
        &waiting_script(&log, &release),
    )
    .stdout(Stdio::null())
    .stderr(Stdio::piped())
    .spawn()
    .expect("start shylock");
    ready_pid(&log);
    // The next findAndModify is the release (renewals come every 10 s): it
    // takes effect, and its answer says the lock was not ours.
    proxy.forward_then_reply(
        "findAndModify",
        doc! { "ok": 1, "value": Bson::Null, "lastErrorObject": { "n": 0, "updatedExisting": false } },
        Some(1),
    );
    std::fs::write(&release, "").expect("release");
    let out = output_within(child, LIMIT);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("release"), "a warning: {stderr}");
    assert!(!stderr.contains("lost before"), "{stderr}");
}

/// Issue 22 item 7: a signal ignored when `shylock` starts (SIGHUP under
/// nohup) stays ignored: not forwarded, and the command inherits it ignored.
#[test]
fn a_signal_ignored_at_start_stays_ignored() {
    let server = server();
    let db = unique("nohup");
    let name = unique("job");
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("log");
    let release = dir.path().join("release");
    let script = format!(
        "grep SigIgn /proc/$$/status >> {log}; {}",
        waiting_script(&log, &release),
        log = log.display()
    );
    let mut cmd = Command::new("sh");
    cmd.args(["-c", "trap '' HUP; exec \"$@\"", "sh"])
        .arg(env!("CARGO_BIN_EXE_shylock"))
        .arg("run")
        .args(mongo_args(&server.uri(), &db))
        .arg(&name)
        .args(["--", "sh", "-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("SHYLOCK_") {
            cmd.env_remove(key);
        }
    }
    let mut child = cmd.spawn().expect("start shylock");
    let command = ready_pid(&log);
    let _cleanup = KillGroup(Some(command));
    let log_text = std::fs::read_to_string(&log).expect("log");
    let mask = log_text
        .lines()
        .find_map(|l| l.strip_prefix("SigIgn:"))
        .map(|m| u64::from_str_radix(m.trim(), 16).expect("a mask"))
        .expect("the SigIgn line");
    assert_eq!(
        mask & 1,
        1,
        "the command does not ignore SIGHUP: {log_text:?}"
    );

    kill_process(pid_of(&child), Signal::HUP).expect("SIGHUP");
    std::thread::sleep(Duration::from_millis(1500));
    let early = child.try_wait().expect("try_wait");
    assert!(
        early.is_none(),
        "shylock ended after an ignored SIGHUP: {early:?}"
    );
    assert!(test_kill_process(command).is_ok(), "the command ended");

    std::fs::write(&release, "").expect("release");
    let status = wait_for_exit(&mut child, LIMIT);
    assert_eq!(status.code(), Some(0), "{status}");
}

/// Issue 23 item 1: the command does not get the lock store's URLs nor its
/// password from shylock's environment.
#[test]
fn the_command_does_not_get_the_stores_credentials() {
    let secret_vars = [
        "SHYLOCK_MONGODB_URI",
        "SHYLOCK_ARANGO_URL",
        "SHYLOCK_BACKEND_URL",
        "SHYLOCK_ARANGO_PASSWORD",
    ];
    let check = |cmd: &mut Command, what: &str| {
        let out = run_within(cmd, LIMIT);
        let env = text(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "{what}: {}", text(&out.stderr));
        assert!(env.contains("SHYLOCK_LOCK_NAME="), "{what}: {env}");
        for var in secret_vars {
            assert!(
                !env.contains(var),
                "{what}: {var} reached the command: {env}"
            );
        }
        assert!(!env.contains("hunter2"), "{what}: a password: {env}");
    };

    // Every variable set; the backend given by its flag.
    let mut cmd = shylock();
    cmd.args([
        "run",
        "--backend",
        "memory://creds",
        "x",
        "--",
        "sh",
        "-c",
        "env",
    ])
    .env(
        "SHYLOCK_MONGODB_URI",
        "mongodb://alice:hunter2-a@127.0.0.1:1/",
    )
    .env("SHYLOCK_ARANGO_URL", "http://alice:hunter2-b@127.0.0.1:1")
    .env(
        "SHYLOCK_BACKEND_URL",
        "mongodb://alice:hunter2-c@127.0.0.1:1/",
    )
    .env("SHYLOCK_ARANGO_PASSWORD", "hunter2-d");
    check(&mut cmd, "flag");

    // The server named by the variable, as the README advises.
    let server = server();
    let mut cmd = shylock();
    cmd.args([
        "run",
        "--database",
        &unique("creds"),
        "x",
        "--",
        "sh",
        "-c",
        "env",
    ])
    .env("SHYLOCK_MONGODB_URI", server.uri())
    .env("SHYLOCK_ARANGO_PASSWORD", "hunter2-d");
    check(&mut cmd, "variable");
}

/// Kills a process when dropped (a `shylock` that a failing test left
/// stopped or running).
struct KillProcess(Pid);

impl Drop for KillProcess {
    fn drop(&mut self) {
        let _ = kill_process(self.0, Signal::KILL);
    }
}

/// The numbers after `prefix ` on the lines of `text` that start with it.
fn stamps(text: &str, prefix: &str) -> Vec<u128> {
    text.lines()
        .filter_map(|l| l.strip_prefix(prefix))
        .filter_map(|n| n.trim().parse().ok())
        .collect()
}

/// The held lock's fencing token, from `inspect --json`; `None` when free.
fn held_token(uri: &str, db: &str, name: &str) -> Option<u64> {
    let mut cmd = shylock();
    cmd.arg("inspect")
        .args(mongo_args(uri, db))
        .arg(name)
        .arg("--json");
    let out = run_within(&mut cmd, LIMIT);
    let value: serde_json::Value = serde_json::from_slice(&out.stdout).expect("inspect's JSON");
    value["token"].as_u64()
}

/// A process's state letter (`/proc/PID/stat`), `None` once it is gone.
fn state_of(pid: Pid) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", pid.as_raw_nonzero())).ok()?;
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

/// Whether process group `pgid` has a member that is not a zombie.
fn group_alive(pgid: Pid) -> bool {
    let pgid = pgid.as_raw_nonzero().get().to_string();
    std::fs::read_dir("/proc")
        .expect("/proc")
        .flatten()
        .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
        .any(|stat| {
            let fields: Vec<&str> = stat
                .rsplit_once(')')
                .map_or(Vec::new(), |(_, rest)| rest.split_whitespace().collect());
            fields.len() > 2 && fields[2] == pgid && fields[0] != "Z"
        })
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

/// Issue 22 item 2: cut off from the server, a holder whose command ignores
/// SIGTERM has it dead (SIGKILL included) before its lease can end, so the
/// next holder's command never runs beside it.
#[test]
fn a_command_ignoring_sigterm_is_dead_before_the_next_holder_starts() {
    dead_before_the_next_holder_starts(|log| {
        format!(
            "trap '' TERM; echo \"ready $$\" >> {log}; \
             while :; do echo \"tick $(date +%s%N)\" >> {log}; sleep 0.05; done",
            log = log.display()
        )
    });
}

/// Issue 22 items 2 and 5: the same when the command has exited and its
/// background child, ignoring SIGTERM, keeps the lock.
#[test]
fn a_background_child_ignoring_sigterm_is_dead_before_the_next_holder_starts() {
    dead_before_the_next_holder_starts(|log| {
        format!(
            "(trap '' TERM; while :; do echo \"tick $(date +%s%N)\" >> {log}; sleep 0.05; done) \
             </dev/null >/dev/null 2>&1 & echo \"ready $$\" >> {log}",
            log = log.display()
        )
    });
}

/// A holder running `script(log)` (which writes `ready <its pid>` then
/// `tick <ns>` lines) is cut off from the server; a second `run` waits for
/// the lock. The first command's group is dead when the second starts.
/// With an 8 s lease, SIGKILL goes 0.8 s (the margin) before the holder's
/// lease ends and the second can start: room for a late timer on a loaded
/// machine; before the fix, the overlap was about --kill-after (1 s).
fn dead_before_the_next_holder_starts(script: impl Fn(&Path) -> String) {
    let server = server();
    let db = unique("overlap");
    let name = unique("job");
    let dir = tempfile::tempdir().expect("tempdir");
    let first = dir.path().join("first");
    let second = dir.path().join("second");
    let proxy = Proxy::start(server.addr(), Mode::PassThrough).expect("the proxy");
    let script = script(&first);
    let holder = run_cmd(
        &via(&server.uri(), proxy.addr()),
        &db,
        &["--lease", "8s", "--kill-after", "1s"],
        &name,
        &script,
    )
    .stdout(Stdio::null())
    .stderr(Stdio::piped())
    .spawn()
    .expect("start the holder");
    let command = ready_pid(&first);
    let _cleanup = KillGroup(Some(command));
    wait_for_text(&first, "tick", LIMIT);

    // The next holder notes when it starts, and whether the first command's
    // group still had a live member then (a zombie is dead: whether it was
    // reaped yet is up to PID 1).
    let script = format!(
        "echo \"start $(date +%s%N)\" >> {log}; \
         if ps -eo pgid=,stat= | awk '$1 == {pgid} && $2 !~ /^Z/' | grep -q .; \
         then echo overlap >> {log}; else echo alone >> {log}; fi",
        log = second.display(),
        pgid = command.as_raw_nonzero()
    );
    let waiter = run_cmd(&server.uri(), &db, &["--timeout", "25s"], &name, &script)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the waiter");

    proxy.blackhole(Duration::from_secs(25));
    let out = output_within(holder, LIMIT);
    let said = text(&out.stderr);
    assert_eq!(out.status.code(), Some(76), "the holder: {said}");
    let out = output_within(waiter, LIMIT);
    proxy.clear_faults();
    assert_eq!(
        out.status.code(),
        Some(0),
        "the waiter: {}",
        text(&out.stderr)
    );

    let first_text = std::fs::read_to_string(&first).expect("first log");
    let second_text = std::fs::read_to_string(&second).expect("second log");
    let last_tick = stamps(&first_text, "tick ")
        .into_iter()
        .max()
        .expect("ticks");
    let start = stamps(&second_text, "start ")[0];
    assert!(
        second_text.contains("alone"),
        "the first command still ran when the second started: {second_text:?}, holder said {said:?}"
    );
    assert!(
        last_tick < start,
        "the first command ticked {} ms after the second started",
        (last_tick - start) / 1_000_000
    );
}

/// Issue 22 item 2: a `--kill-after` that cannot fit in the lease (with its
/// margin and the renewals before it) is refused before anything runs.
#[test]
fn a_kill_after_that_does_not_fit_in_the_lease_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ran = dir.path().join("ran");
    for (lease, kill_after, code) in [("4s", "3s", 64), ("10s", "8s", 64), ("4s", "2s", 0)] {
        let mut cmd = shylock();
        cmd.args(["run", "--backend", "memory://fit", "--lease", lease])
            .args(["--kill-after", kill_after, "job", "--", "touch"])
            .arg(&ran);
        let out = run_within(&mut cmd, LIMIT);
        let said = text(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(code),
            "{lease} {kill_after}: {said}"
        );
        assert_eq!(
            ran.exists(),
            code == 0,
            "{lease} {kill_after}: the command ran"
        );
        if code == 64 {
            assert!(said.contains("at most"), "{said}");
        }
    }
    // Without --kill-after, a short lease gets a third of it.
    let mut cmd = shylock();
    cmd.args([
        "run",
        "--backend",
        "memory://fit",
        "--lease",
        "1s",
        "job",
        "--",
        "true",
    ]);
    assert_eq!(run_within(&mut cmd, LIMIT).status.code(), Some(0));
}

/// Issue 22 item 5: the lock is held until the command's background
/// children (its process group) have ended too, by default; with
/// `--kill-group` they are stopped instead.
#[test]
fn background_children_keep_the_lock_until_they_end() {
    let server = server();
    let db = unique("orphans");
    let name = unique("job");
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("log");
    let second = dir.path().join("second");
    let script = format!(
        "(echo \"bg-start $(date +%s%N)\" >> {log}; sleep 3; echo \"bg-end $(date +%s%N)\" >> {log}) & \
         echo \"ready $$\" >> {log}",
        log = log.display()
    );
    let mut holder = run_cmd(&server.uri(), &db, &[], &name, &script)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the holder");
    let command = ready_pid(&log);
    let _cleanup = KillGroup(Some(command));
    wait_for_text(&log, "bg-start", LIMIT);
    let mut waiter = run_cmd(
        &server.uri(),
        &db,
        &["--timeout", "25s"],
        &name,
        &format!("echo \"start $(date +%s%N)\" >> {}", second.display()),
    )
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .expect("start the waiter");
    assert_eq!(wait_for_exit(&mut holder, LIMIT).code(), Some(0));
    assert_eq!(wait_for_exit(&mut waiter, LIMIT).code(), Some(0));
    let log_text = std::fs::read_to_string(&log).expect("log");
    let second_text = std::fs::read_to_string(&second).expect("second log");
    let bg_end = stamps(&log_text, "bg-end ");
    let start = stamps(&second_text, "start ")[0];
    assert!(
        bg_end.first().is_some_and(|&end| end < start),
        "the next holder started while the background child ran: {log_text:?} {second_text:?}"
    );

    // --kill-group: what is left is stopped, at once.
    let name = unique("job");
    let log = dir.path().join("log2");
    let script = format!(
        "(trap '' TERM; sleep 20; echo bg-end >> {log}) & echo \"ready $$\" >> {log}",
        log = log.display()
    );
    let started = std::time::Instant::now();
    let mut holder = run_cmd(
        &server.uri(),
        &db,
        &["--kill-group", "--kill-after", "1s"],
        &name,
        &script,
    )
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .expect("start the holder");
    let command = ready_pid(&log);
    let _cleanup = KillGroup(Some(command));
    assert_eq!(wait_for_exit(&mut holder, LIMIT).code(), Some(0));
    assert!(started.elapsed() < Duration::from_secs(15));
    assert!(!group_alive(command), "the background child still runs");
    assert_eq!(inspect_code(&server.uri(), &db, &name), Some(1));
}

/// Issue 22 item 3: SIGTSTP (Ctrl-Z) to `shylock` stops the command, not
/// `shylock`, which goes on renewing the lease; SIGCONT resumes the command.
#[test]
fn sigtstp_stops_the_command_and_the_lease_is_still_renewed() {
    let server = server();
    let db = unique("tstp");
    let name = unique("job");
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("log");
    let release = dir.path().join("release");
    let mut holder = run_cmd(
        &server.uri(),
        &db,
        &["--lease", "2s"],
        &name,
        &waiting_script(&log, &release),
    )
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .expect("start shylock");
    let _kill = KillProcess(pid_of(&holder));
    let command = ready_pid(&log);
    let _cleanup = KillGroup(Some(command));
    let token = held_token(&server.uri(), &db, &name).expect("held");

    kill_process(pid_of(&holder), Signal::TSTP).expect("SIGTSTP");
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(
        held_token(&server.uri(), &db, &name),
        Some(token),
        "the lease was not renewed after SIGTSTP"
    );
    assert!(
        wait_for_stopped(command, true, Duration::from_secs(5)),
        "the command was not stopped: {:?}",
        state_of(command)
    );
    assert_ne!(state_of(pid_of(&holder)), Some('T'), "shylock stopped");

    kill_process(pid_of(&holder), Signal::CONT).expect("SIGCONT");
    assert!(
        wait_for_stopped(command, false, Duration::from_secs(5)),
        "the command was not continued"
    );
    std::fs::write(&release, "").expect("release");
    assert_eq!(wait_for_exit(&mut holder, LIMIT).code(), Some(0));
    assert!(std::fs::read_to_string(&log).expect("log").contains("end"));
}

/// Issue 22 item 8: a command stopped by SIGTTIN (touching the terminal
/// outside the foreground) is noticed: `shylock` says to use --foreground,
/// and a signal to `shylock` still ends the command.
#[test]
fn a_command_stopped_for_the_terminal_is_reported() {
    let server = server();
    let db = unique("ttin");
    let name = unique("job");
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("log");
    let stderr = dir.path().join("stderr");
    let script = format!(
        "echo \"ready $$\" >> {log}; kill -TTIN $$; echo continued >> {log}; sleep 30",
        log = log.display()
    );
    let mut holder = run_cmd(&server.uri(), &db, &[], &name, &script)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr).expect("stderr file"))
        .spawn()
        .expect("start shylock");
    let _kill = KillProcess(pid_of(&holder));
    let command = ready_pid(&log);
    let _cleanup = KillGroup(Some(command));
    let said = wait_for_text(&stderr, "use --foreground", Duration::from_secs(10));
    assert_eq!(
        said.matches("use --foreground").count(),
        1,
        "said once: {said:?}"
    );
    assert_eq!(state_of(command), Some('T'), "the command is still stopped");

    kill_process(pid_of(&holder), Signal::TERM).expect("SIGTERM");
    let status = wait_for_exit(&mut holder, LIMIT);
    assert_eq!(status.code(), Some(128 + 15), "{status}");
    assert_eq!(inspect_code(&server.uri(), &db, &name), Some(1));

    // Stopped by SIGSTOP (not the terminal): nothing said about it.
    let log = dir.path().join("log2");
    let stderr = dir.path().join("stderr2");
    let script = format!(
        "echo \"ready $$\" >> {log}; kill -STOP $$; sleep 30",
        log = log.display()
    );
    let mut holder = run_cmd(&server.uri(), &db, &[], &name, &script)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr).expect("stderr file"))
        .spawn()
        .expect("start shylock");
    let _kill = KillProcess(pid_of(&holder));
    let command = ready_pid(&log);
    let _cleanup = KillGroup(Some(command));
    assert!(wait_for_stopped(command, true, Duration::from_secs(5)));
    std::thread::sleep(Duration::from_millis(2500));
    kill_process(pid_of(&holder), Signal::TERM).expect("SIGTERM");
    let status = wait_for_exit(&mut holder, LIMIT);
    assert_eq!(status.code(), Some(128 + 15), "{status}");
    let said = std::fs::read_to_string(&stderr).expect("stderr");
    assert!(!said.contains("terminal"), "{said:?}");
}

/// Nanoseconds since the Unix epoch (as `date +%s%N` writes them).
fn now_ns() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_nanos()
}

/// Issue 22 item 9: `--timeout` against a server that stops answering
/// while `shylock` waits for the lock ends near the timeout (before: 5 s
/// later, waiting for the abandoned acquisition to settle); and against one
/// that accepts connections and never answers, at the timeout.
#[test]
fn a_timeout_against_a_server_that_never_answers_ends_near_the_timeout() {
    let server = server();
    let db = unique("silent");
    let name = unique("job");
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("log");
    let release = dir.path().join("release");
    let mut holder = run_cmd(
        &server.uri(),
        &db,
        &[],
        &name,
        &waiting_script(&log, &release),
    )
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .expect("start the holder");
    let _kill = KillProcess(pid_of(&holder));
    let command = ready_pid(&log);
    let _cleanup = KillGroup(Some(command));

    let proxy = Proxy::start(server.addr(), Mode::PassThrough).expect("the proxy");
    let stderr = dir.path().join("stderr");
    let started = std::time::Instant::now();
    let waiter = run_cmd(
        &via(&server.uri(), proxy.addr()),
        &db,
        &["--timeout", "4s"],
        &name,
        "true",
    )
    .stdout(Stdio::null())
    .stderr(std::fs::File::create(&stderr).expect("stderr file"))
    .spawn()
    .expect("start the waiter");
    wait_for_text(&stderr, "waiting", LIMIT);
    proxy.blackhole(Duration::from_secs(25));
    let out = output_within(waiter, LIMIT);
    let took = started.elapsed();
    proxy.clear_faults();
    let said = std::fs::read_to_string(&stderr).expect("stderr");
    assert!(
        matches!(out.status.code(), Some(69 | 75)),
        "{:?}: {said}",
        out.status
    );
    assert!(
        took < Duration::from_millis(6500),
        "took {took:?} for --timeout 4s: {said}"
    );
    std::fs::write(&release, "").expect("release");
    assert_eq!(wait_for_exit(&mut holder, LIMIT).code(), Some(0));

    // Nothing answers at all.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a listener");
    let addr = listener.local_addr().expect("its address");
    std::thread::spawn(move || {
        let mut kept = Vec::new();
        for stream in listener.incoming().flatten() {
            kept.push(stream);
        }
    });
    let started = std::time::Instant::now();
    let mut cmd = shylock();
    cmd.args(["run", "--mongodb", &format!("mongodb://{addr}/")])
        .args([
            "--database",
            "silent",
            "--timeout",
            "3s",
            "job",
            "--",
            "true",
        ]);
    let out = run_within(&mut cmd, LIMIT);
    let took = started.elapsed();
    let said = text(&out.stderr);
    assert_eq!(out.status.code(), Some(69), "{said}");
    assert!(
        took < Duration::from_millis(5500),
        "took {took:?} for --timeout 3s: {said}"
    );
}

/// Issue 22 item 9: after a lease loss with the server unreachable,
/// `shylock` exits soon after the command has died (before: 3 s later, a
/// 2 s release and a 1 s wait for it, to a server that does not answer).
#[test]
fn after_a_loss_with_the_server_down_shylock_exits_soon_after_the_command() {
    let server = server();
    let db = unique("lostexit");
    let name = unique("job");
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("log");
    let proxy = Proxy::start(server.addr(), Mode::PassThrough).expect("the proxy");
    let script = format!(
        "trap 'echo \"term $(date +%s%N)\" >> {log}; exit 1' TERM; echo \"ready $$\" >> {log}; \
         while :; do sleep 0.05; done",
        log = log.display()
    );
    let mut holder = run_cmd(
        &via(&server.uri(), proxy.addr()),
        &db,
        &["--lease", "6s", "--kill-after", "1s"],
        &name,
        &script,
    )
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .expect("start shylock");
    let command = ready_pid(&log);
    let _cleanup = KillGroup(Some(command));
    proxy.blackhole(Duration::from_secs(25));
    let status = wait_for_exit(&mut holder, LIMIT);
    let exited = now_ns();
    proxy.clear_faults();
    assert_eq!(status.code(), Some(76), "{status}");
    let log_text = std::fs::read_to_string(&log).expect("log");
    let term = stamps(&log_text, "term ")[0];
    let after_ms = (exited.saturating_sub(term)) / 1_000_000;
    assert!(
        after_ms < 1800,
        "shylock exited {after_ms} ms after its command died"
    );
}

/// Issue 22 item 9: while the release hangs (a server that stopped
/// answering once the command ended), a signal to `shylock` makes it give
/// the release up and exit at once, with the command's status (before: it
/// was not heard until the release and a 5 s wait for it had ended).
#[test]
fn a_signal_during_a_hanging_release_gives_it_up() {
    let server = server();
    let db = unique("hangrel");
    let name = unique("job");
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("log");
    let release = dir.path().join("release");
    let proxy = Proxy::start(server.addr(), Mode::PassThrough).expect("the proxy");
    let stderr = dir.path().join("stderr");
    let mut holder = run_cmd(
        &via(&server.uri(), proxy.addr()),
        &db,
        &[],
        &name,
        &format!("{}; exit 3", waiting_script(&log, &release)),
    )
    .stdout(Stdio::null())
    .stderr(std::fs::File::create(&stderr).expect("stderr file"))
    .spawn()
    .expect("start shylock");
    let _kill = KillProcess(pid_of(&holder));
    let command = ready_pid(&log);
    let _cleanup = KillGroup(Some(command));
    proxy.blackhole(Duration::from_secs(25));
    std::fs::write(&release, "").expect("release");
    wait_for_text(&log, "end", LIMIT);
    // The release is under way, to a server that does not answer.
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        holder.try_wait().expect("try_wait").is_none(),
        "shylock did not wait for the release"
    );
    let sent = std::time::Instant::now();
    kill_process(pid_of(&holder), Signal::INT).expect("SIGINT");
    let status = wait_for_exit(&mut holder, LIMIT);
    let took = sent.elapsed();
    proxy.clear_faults();
    let said = std::fs::read_to_string(&stderr).expect("stderr");
    assert_eq!(status.code(), Some(3), "{status}: {said}");
    assert!(
        took < Duration::from_millis(1500),
        "exited {took:?} after the signal: {said}"
    );
    assert!(said.contains("gave up releasing"), "{said}");
}

/// Issue 22 item 9: the command is looked up before the lock is asked
/// for: a typo fails at once with 127 (not after waiting for a held lock),
/// and uses no fencing token; a file that cannot be executed fails with
/// 126; a script without `#!` runs with /bin/sh, as `env`, `timeout` and
/// `flock` run it.
#[test]
fn the_command_is_looked_up_before_the_lock() {
    use std::os::unix::fs::PermissionsExt;
    let server = server();
    let db = unique("resolve");
    let name = unique("job");
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("log");
    let release = dir.path().join("release");
    let token_of = |extra: &[&str]| -> String {
        let out = run_within(
            &mut run_cmd(
                &server.uri(),
                &db,
                extra,
                &name,
                "echo $SHYLOCK_FENCING_TOKEN",
            ),
            LIMIT,
        );
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        text(&out.stdout).trim().to_owned()
    };
    let first: u64 = token_of(&[]).parse().expect("a token");

    // Not found, on a free lock: 127, and no token used.
    let mut cmd = shylock();
    cmd.arg("run").args(mongo_args(&server.uri(), &db)).args([
        &name,
        "--",
        "no-such-command-shylock-test",
    ]);
    let out = run_within(&mut cmd, LIMIT);
    assert_eq!(out.status.code(), Some(127), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("not found"),
        "{}",
        text(&out.stderr)
    );
    let second: u64 = token_of(&[]).parse().expect("a token");
    assert_eq!(second, first + 1, "the typo used a fencing token");

    // The lock is held: a typo, a file that is not executable and a
    // directory fail at once, without waiting.
    let holder = run_cmd(
        &server.uri(),
        &db,
        &[],
        &name,
        &waiting_script(&log, &release),
    )
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .expect("start the holder");
    let _kill = KillProcess(pid_of(&holder));
    let command = ready_pid(&log);
    let _cleanup = KillGroup(Some(command));
    let plain = dir.path().join("plain");
    std::fs::write(&plain, "echo hi\n").expect("a file");
    for (program, code) in [
        ("no-such-command-shylock-test", 127),
        (plain.to_str().expect("utf-8"), 126),
        (dir.path().to_str().expect("utf-8"), 126),
        ("./no-such-file", 127),
    ] {
        let started = std::time::Instant::now();
        let mut cmd = shylock();
        cmd.arg("run").args(mongo_args(&server.uri(), &db)).args([
            "--timeout",
            "20s",
            &name,
            "--",
            program,
        ]);
        let out = run_within(&mut cmd, LIMIT);
        assert_eq!(
            out.status.code(),
            Some(code),
            "{program}: {}",
            text(&out.stderr)
        );
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{program}: waited for the lock"
        );
    }
    std::fs::write(&release, "").expect("release");
    let mut holder = holder;
    assert_eq!(wait_for_exit(&mut holder, LIMIT).code(), Some(0));

    // A script without `#!`, executable: run by /bin/sh, with its args.
    let script = dir.path().join("noshebang");
    std::fs::write(&script, "echo \"no-shebang $1\"\nexit 4\n").expect("a script");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let mut cmd = shylock();
    cmd.arg("run")
        .args(mongo_args(&server.uri(), &db))
        .args([&name, "--"])
        .arg(&script)
        .arg("arg1");
    let out = run_within(&mut cmd, LIMIT);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "no-shebang arg1");
}
