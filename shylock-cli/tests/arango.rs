//! The `shylock` binary against the ArangoDB emulator (test support of
//! `shylock-arango`), started in the test process on 127.0.0.1.

mod support;

use std::time::Duration;

use shylock_arango_emulator::Emulator;
use support::*;

const LIMIT: Duration = Duration::from_secs(30);
const USER: &str = "locker";
const PASSWORD: &str = "emu-pass-secret";
const DB: &str = "ops";

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `shylock <sub> --arango <url> --user locker --database ops`, password in
/// the environment.
fn cmd(emu: &Emulator, sub: &str) -> std::process::Command {
    let mut cmd = shylock();
    cmd.env("SHYLOCK_ARANGO_PASSWORD", PASSWORD).arg(sub).args([
        "--arango",
        &emu.url(),
        "--user",
        USER,
        "--database",
        DB,
    ]);
    cmd
}

#[test]
fn run_inspect_and_setup_on_arangodb() {
    let emu = Emulator::start(USER, PASSWORD, &[DB]);

    let out = run_within(&mut cmd(&emu, "setup"), LIMIT);
    assert_eq!(out.status.code(), Some(0), "{out:?}");

    let name = "nightly report/ü";
    let out = run_within(
        cmd(&emu, "run").arg(name).args([
            "--",
            "sh",
            "-c",
            "echo \"$SHYLOCK_FENCING_TOKEN\"; exit 4",
        ]),
        LIMIT,
    );
    assert_eq!(out.status.code(), Some(4), "{out:?}");
    let first: u64 = text(&out.stdout).trim().parse().expect("a token");

    let out = run_within(cmd(&emu, "inspect").args([name, "--json"]), LIMIT);
    assert_eq!(out.status.code(), Some(1), "{out:?}");

    // Hold it; inspect and --no-wait see it held.
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("log");
    let release = dir.path().join("release");
    let script = format!(
        "echo \"start $SHYLOCK_FENCING_TOKEN\" >> {log}; \
         i=0; while [ ! -e {release} ] && [ $i -lt 300 ]; do sleep 0.05; i=$((i+1)); done",
        log = log.display(),
        release = release.display()
    );
    let mut holder = cmd(&emu, "run")
        .args([name, "--", "sh", "-c", &script])
        .spawn()
        .expect("start the holder");
    let started = wait_for_text(&log, "start", LIMIT);
    let second: u64 = started
        .trim()
        .strip_prefix("start ")
        .expect("start line")
        .parse()
        .expect("a token");
    assert!(second > first, "tokens rise: {first} then {second}");

    let out = run_within(cmd(&emu, "inspect").args([name, "--json"]), LIMIT);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(json["held"], true);
    assert_eq!(json["token"], second);

    let out = run_within(
        cmd(&emu, "run").args([name, "--no-wait", "--", "true"]),
        LIMIT,
    );
    assert_eq!(out.status.code(), Some(75), "{out:?}");

    std::fs::write(&release, "").expect("release");
    assert!(wait_for_exit(&mut holder, LIMIT).success());
    let out = run_within(cmd(&emu, "inspect").arg(name), LIMIT);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
}

#[test]
fn a_wrong_password_is_refused_without_being_printed() {
    let emu = Emulator::start(USER, PASSWORD, &[DB]);
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("pw");
    std::fs::write(&file, "wrong-hunter2\n").expect("password file");
    let mut cmd = shylock();
    cmd.args([
        "inspect",
        "--arango",
        &emu.url(),
        "--user",
        USER,
        "--database",
        DB,
    ])
    .arg("--password-file")
    .arg(&file)
    .arg("x");
    let out = run_within(&mut cmd, LIMIT);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(77), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(!stderr.contains("hunter2"), "{stderr}");

    // The right one, from the file.
    std::fs::write(&file, format!("{PASSWORD}\n")).expect("password file");
    let out = run_within(&mut cmd, LIMIT);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
}

/// Issue 23 item 2: a record whose expiry is beyond year 9999 (`1e12` s)
/// is no panic (exit 101). Since item 3, such an expiry (beyond the server
/// time + the longest lease + a day) is treated as expired: inspect shows
/// the lock free (exit 1) and `run` takes it over.
#[test]
fn a_record_expiring_after_year_9999_is_printed_not_a_panic() {
    let emu = Emulator::start(USER, PASSWORD, &[DB]);
    let name = "far-future";
    let out = run_within(cmd(&emu, "run").args([name, "--", "true"]), LIMIT);
    assert!(out.status.success(), "{out:?}");
    let coll = "shylock";
    let key = format!("n-{name}");
    let mut doc = emu.document(DB, coll, &key).expect("the record");
    doc.insert("owner".into(), serde_json::json!("intruder"));
    doc.insert("expiresAt".into(), serde_json::json!(1e12));
    emu.put_document(DB, coll, doc);

    let out = run_within(cmd(&emu, "inspect").arg(name), LIMIT);
    assert_eq!(out.status.code(), Some(1), "free: {out:?}");
    let out = run_within(cmd(&emu, "inspect").args([name, "--json"]), LIMIT);
    assert_eq!(out.status.code(), Some(1), "free: {out:?}");
    let out = run_within(
        cmd(&emu, "run").args([name, "--no-wait", "--", "true"]),
        LIMIT,
    );
    assert_eq!(out.status.code(), Some(0), "taken over: {out:?}");
}

/// Issue 23 item 9: `--connect-timeout 300000000000y` validates and must
/// saturate, not panic ("overflow when adding duration to instant").
#[test]
fn a_connect_timeout_beyond_any_instant_does_not_panic() {
    let emu = Emulator::start(USER, PASSWORD, &[DB]);
    let out = run_within(
        cmd(&emu, "inspect").args(["--connect-timeout", "300000000000y", "free-lock"]),
        LIMIT,
    );
    assert_eq!(out.status.code(), Some(1), "free: {out:?}");
}
