//! The administrator's commands against a DocumentDB started by the tests:
//! `shylock list`, `shylock release --force` (a `shylock run` holding the
//! lock stops its command and exits 76, the next token is higher, `shylock
//! inspect` shows who forced it and why) and `shylock watch` (ends cleanly
//! on SIGINT and on a closed pipe).

mod support;

use std::io::Read;
use std::process::Stdio;
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, kill_process};
use support::*;

const LIMIT: Duration = Duration::from_secs(60);

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `shylock <sub> <backend> <args>`.
fn admin(uri: &str, db: &str, sub: &str, args: &[&str]) -> std::process::Output {
    let mut cmd = shylock();
    cmd.arg(sub).args(mongo_args(uri, db)).args(args);
    run_within(&mut cmd, LIMIT)
}

/// The token a fresh `shylock run` of `name` gets.
fn next_token(uri: &str, db: &str, name: &str) -> u64 {
    let mut cmd = shylock();
    cmd.arg("run").args(mongo_args(uri, db)).args([
        "--timeout",
        "30s",
        name,
        "--",
        "sh",
        "-c",
        "echo $SHYLOCK_FENCING_TOKEN",
    ]);
    let out = run_within(&mut cmd, LIMIT);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    text(&out.stdout).trim().parse().expect("a token")
}

/// The issue's "done when": a lock held with `shylock run`, forced from
/// another process: the command is stopped and shylock exits 76 within a
/// renewal interval (plus the stop), the next token is higher, and
/// `inspect` shows who forced it and why.
#[test]
fn a_forced_release_stops_the_holders_command_and_inspect_shows_who_and_why() {
    let server = server();
    let uri = server.uri();
    let db = unique("forced");
    let name = unique("job");
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("log");
    let script = format!(
        "echo \"start $SHYLOCK_FENCING_TOKEN\" >> {log}; \
         i=0; while [ $i -lt 1200 ]; do sleep 0.05; i=$((i+1)); done; echo survived >> {log}",
        log = log.display()
    );
    // Lease 6 s: renewed every 2 s.
    let renew_every = Duration::from_secs(2);
    let mut cmd = shylock();
    cmd.arg("run").args(mongo_args(&uri, &db)).args([
        "--lease",
        "6s",
        "--kill-after",
        "1s",
        &name,
        "--",
        "sh",
        "-c",
        &script,
    ]);
    let holder = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the holder");
    let started = wait_for_text(&log, "start", LIMIT);
    let token: u64 = started
        .trim()
        .strip_prefix("start ")
        .expect("start line")
        .parse()
        .expect("a token");

    // Listed, with its token.
    let out = admin(&uri, &db, "list", &["--json"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let locks = listed["locks"].as_array().expect("locks");
    assert_eq!(locks.len(), 1, "{listed}");
    assert_eq!(locks[0]["name"], name.as_str());
    assert_eq!(locks[0]["token"], token);
    assert!(locks[0]["held_for_ms"].as_u64().is_some(), "{listed}");

    // Not a terminal and no --yes: refused, nothing changed.
    let out = admin(
        &uri,
        &db,
        "release",
        &["--force", &name, "--reason", "stuck job"],
    );
    assert_eq!(out.status.code(), Some(64), "{out:?}");
    assert!(text(&out.stderr).contains("--yes"), "{out:?}");

    let forced_at = Instant::now();
    let out = admin(
        &uri,
        &db,
        "release",
        &[
            "--force",
            &name,
            "--reason",
            "stuck job",
            "--by",
            "ops@test",
            "--yes",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let said = text(&out.stdout);
    assert!(said.contains(&format!("fencing token {token}")), "{said}");

    let out = output_within(holder, LIMIT);
    let took = forced_at.elapsed();
    let stderr = text(&out.stderr);
    eprintln!(
        "the holder exited {took:?} after the forced release (renewal every {renew_every:?})"
    );
    assert_eq!(out.status.code(), Some(76), "{stderr}");
    assert!(stderr.contains("forced"), "{stderr}");
    assert!(
        stderr.contains("forced free by ops@test") && stderr.contains("stuck job"),
        "{stderr}"
    );
    let log_text = std::fs::read_to_string(&log).expect("log");
    assert!(!log_text.contains("survived"), "{log_text}");
    // One renewal interval, plus the stop (SIGTERM to a shell loop) and a
    // loaded machine's slack.
    assert!(took < renew_every + Duration::from_secs(8), "{took:?}");

    // Inspect shows the audit trail, free or held again.
    for held_again in [false, true] {
        if held_again {
            let next = next_token(&uri, &db, &name);
            assert!(next > token, "the next token {next} is above {token}");
        }
        let out = admin(&uri, &db, "inspect", &[&name]);
        assert_eq!(out.status.code(), Some(1), "free: {out:?}");
        let shown = text(&out.stdout);
        assert!(shown.contains("forced by:     ops@test"), "{shown}");
        assert!(shown.contains("reason:        stuck job"), "{shown}");
        assert!(shown.contains("forced at:"), "{shown}");
        assert!(
            shown.contains(&format!("(fencing token {token})")),
            "{shown}"
        );
        let out = admin(&uri, &db, "inspect", &[&name, "--json"]);
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
        assert_eq!(json["forced"]["by"], "ops@test", "{json}");
        assert_eq!(json["forced"]["reason"], "stuck job", "{json}");
        assert_eq!(json["forced"]["token"], token, "{json}");
        assert!(json["forced"]["at_ms"].as_i64().is_some(), "{json}");
    }
}

#[test]
fn list_filters_by_prefix_and_release_needs_force_and_a_held_lock() {
    let server = server();
    let uri = server.uri();
    let db = unique("list");
    let prefix = unique("ops");
    let dir = tempfile::tempdir().expect("tempdir");
    let release = dir.path().join("release");
    let hold = |name: &str, i: usize| {
        let mut cmd = shylock();
        let log = dir.path().join(format!("{i}.log"));
        let script = format!(
            "echo start >> {log}; i=0; while [ ! -e {release} ] && [ $i -lt 1200 ]; do sleep 0.05; i=$((i+1)); done",
            log = log.display(),
            release = release.display()
        );
        cmd.arg("run")
            .args(mongo_args(&uri, &db))
            .args([name, "--", "sh", "-c", &script]);
        let child = cmd.spawn().expect("start a holder");
        wait_for_text(&log, "start", LIMIT);
        child
    };
    let a = format!("{prefix}/a");
    let b = format!("{prefix}/b");
    let other = unique("elsewhere");
    let holders = [hold(&a, 0), hold(&b, 1), hold(&other, 2)];

    let out = admin(&uri, &db, "list", &["--prefix", &prefix]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let table = text(&out.stdout);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 3, "{table}");
    assert!(lines[0].starts_with("NAME"), "{table}");
    assert!(
        lines[1].starts_with(&a) && lines[2].starts_with(&b),
        "{table}"
    );
    assert!(!table.contains(&other), "{table}");
    let out = admin(&uri, &db, "list", &[]);
    assert_eq!(text(&out.stdout).lines().count(), 4, "{out:?}");

    let out = admin(&uri, &db, "release", &[&a, "--reason", "r", "--yes"]);
    assert_eq!(out.status.code(), Some(64), "without --force: {out:?}");
    let out = admin(&uri, &db, "release", &["--force", &a, "--yes"]);
    assert_eq!(out.status.code(), Some(64), "without --reason: {out:?}");
    let free = unique("free");
    let out = admin(
        &uri,
        &db,
        "release",
        &["--force", &free, "--reason", "r", "--yes"],
    );
    assert_eq!(out.status.code(), Some(1), "a free lock: {out:?}");
    assert!(text(&out.stdout).contains("not held"), "{out:?}");

    std::fs::write(&release, "").expect("release");
    for mut holder in holders {
        assert!(wait_for_exit(&mut holder, LIMIT).success());
    }
    let out = admin(&uri, &db, "list", &["--json"]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(json["locks"], serde_json::json!([]), "{json}");
}

/// Read from `out` until `needle` shows (at most `limit`).
fn read_until(out: &mut impl Read, needle: &str, limit: Duration) -> String {
    let started = Instant::now();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !text(&seen).contains(needle) {
        assert!(
            started.elapsed() < limit,
            "no {needle:?} in {:?}",
            text(&seen)
        );
        let n = out.read(&mut buf).expect("read");
        assert!(n > 0, "closed before {needle:?}: {:?}", text(&seen));
        seen.extend_from_slice(&buf[..n]);
    }
    text(&seen)
}

#[test]
fn watch_refreshes_and_ends_cleanly_on_sigint_and_on_a_closed_pipe() {
    let server = server();
    let uri = server.uri();
    let db = unique("watch");
    let name = unique("watched");
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("log");
    let release = dir.path().join("release");
    let script = format!(
        "echo start >> {log}; i=0; while [ ! -e {release} ] && [ $i -lt 1200 ]; do sleep 0.05; i=$((i+1)); done",
        log = log.display(),
        release = release.display()
    );
    let mut cmd = shylock();
    cmd.arg("run")
        .args(mongo_args(&uri, &db))
        .args([&name, "--", "sh", "-c", &script]);
    let mut holder = cmd.spawn().expect("start the holder");
    wait_for_text(&log, "start", LIMIT);

    let watch = || {
        let mut cmd = shylock();
        cmd.arg("watch")
            .args(mongo_args(&uri, &db))
            .args(["--prefix", &name])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start watch")
    };
    // Two refreshes, then SIGINT: exit 0.
    let mut child = watch();
    let mut stdout = child.stdout.take().expect("stdout");
    let first = read_until(&mut stdout, &name, LIMIT);
    assert!(first.contains("1 locks held"), "{first}");
    let again = Instant::now();
    read_until(&mut stdout, "locks held", LIMIT);
    eprintln!("the next refresh came after {:?}", again.elapsed());
    let pid = Pid::from_raw(i32::try_from(child.id()).expect("pid")).expect("pid");
    kill_process(pid, Signal::INT).expect("SIGINT");
    let status = wait_for_exit(&mut child, LIMIT);
    assert_eq!(status.code(), Some(0), "SIGINT: {status:?}");

    // Nobody reads any more: watch notices at its next write and ends.
    let mut child = watch();
    let mut stdout = child.stdout.take().expect("stdout");
    read_until(&mut stdout, &name, LIMIT);
    drop(stdout);
    let status = wait_for_exit(&mut child, LIMIT);
    let mut stderr = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut stderr);
    }
    assert_eq!(status.code(), Some(0), "a closed pipe: {status:?} {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");

    std::fs::write(&release, "").expect("release");
    assert!(wait_for_exit(&mut holder, LIMIT).success());
}
