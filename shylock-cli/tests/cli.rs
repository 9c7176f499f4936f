//! The `shylock` binary against a DocumentDB started by the tests (every
//! process on its own connections; DocumentDB is atomic across them), and a
//! FerretDB v1 for its refusal without the opt-in.

mod support;

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use support::*;

const LIMIT: Duration = Duration::from_secs(30);

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `shylock run <backend> <extra> <name> -- sh -c <script>`.
fn run_cmd(uri: &str, db: &str, extra: &[&str], name: &str, script: &str) -> std::process::Command {
    let mut cmd = shylock();
    cmd.arg("run")
        .args(mongo_args(uri, db))
        .args(extra)
        .arg(name)
        .args(["--", "sh", "-c", script]);
    cmd
}

fn inspect(uri: &str, db: &str, name: &str, json: bool) -> std::process::Output {
    let mut cmd = shylock();
    cmd.arg("inspect").args(mongo_args(uri, db)).arg(name);
    if json {
        cmd.arg("--json");
    }
    run_within(&mut cmd, LIMIT)
}

/// A script that logs start/end lines with its token, holding the lock
/// until `release` exists (bounded).
fn holder_script(log: &Path, release: &Path) -> String {
    format!(
        "echo \"start $SHYLOCK_FENCING_TOKEN\" >> {log}; \
         i=0; while [ ! -e {release} ] && [ $i -lt 3000 ]; do sleep 0.05; i=$((i+1)); done; \
         echo \"end $SHYLOCK_FENCING_TOKEN\" >> {log}",
        log = log.display(),
        release = release.display()
    )
}

#[test]
fn two_runs_on_one_name_never_overlap_and_tokens_rise() {
    let server = server();
    let db = unique("overlap");
    let name = unique("job");
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("log");
    let release_a = dir.path().join("release-a");
    let release_b = dir.path().join("release-b");

    let mut a = run_cmd(
        &server.uri(),
        &db,
        &[],
        &name,
        &holder_script(&log, &release_a),
    )
    .spawn()
    .expect("start a");
    wait_for_text(&log, "start", LIMIT);
    let b_err_path = dir.path().join("b-stderr");
    let mut b = run_cmd(
        &server.uri(),
        &db,
        &[],
        &name,
        &holder_script(&log, &release_b),
    )
    .stderr(std::fs::File::create(&b_err_path).expect("b's stderr"))
    .spawn()
    .expect("start b");
    // b says once who holds the lock, and waits.
    let b_err = wait_for_text(&b_err_path, "waiting", LIMIT);
    assert!(b_err.contains("is held by owner"), "b said: {b_err}");
    std::thread::sleep(Duration::from_millis(500));
    let so_far = std::fs::read_to_string(&log).expect("log");
    assert_eq!(
        so_far.lines().count(),
        1,
        "b started while a held the lock: {so_far}"
    );
    std::fs::write(&release_a, "").expect("release a");
    std::fs::write(&release_b, "").expect("release b");
    let a_status = wait_for_exit(&mut a, LIMIT);
    let b_status = wait_for_exit(&mut b, LIMIT);
    assert!(a_status.success(), "a: {a_status}");
    assert!(b_status.success(), "b: {b_status}");
    let b_err = std::fs::read_to_string(&b_err_path).expect("b's stderr");
    assert_eq!(b_err.matches("waiting").count(), 1, "said once: {b_err}");

    let lines: Vec<(String, u64)> = std::fs::read_to_string(&log)
        .expect("log")
        .lines()
        .map(|l| {
            let (what, token) = l.split_once(' ').expect("a log line");
            (what.to_owned(), token.parse().expect("a token"))
        })
        .collect();
    assert_eq!(lines.len(), 4, "{lines:?}");
    let kinds: Vec<&str> = lines.iter().map(|(w, _)| w.as_str()).collect();
    assert_eq!(kinds, ["start", "end", "start", "end"], "{lines:?}");
    assert_eq!(lines[0].1, lines[1].1);
    assert_eq!(lines[2].1, lines[3].1);
    assert!(lines[2].1 > lines[0].1, "tokens must rise: {lines:?}");
}

#[test]
fn no_wait_and_timeout_give_the_conflict_code_on_a_held_lock() {
    let server = server();
    let db = unique("conflict");
    let name = unique("job");
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("log");
    let release = dir.path().join("release");
    let mut holder = run_cmd(
        &server.uri(),
        &db,
        &[],
        &name,
        &holder_script(&log, &release),
    )
    .spawn()
    .expect("start the holder");
    wait_for_text(&log, "start", LIMIT);

    let started = Instant::now();
    let out = run_within(
        &mut run_cmd(
            &server.uri(),
            &db,
            &["--no-wait"],
            &name,
            "echo ran >> /dev/null",
        ),
        LIMIT,
    );
    assert_eq!(out.status.code(), Some(75), "{out:?}");
    assert!(text(&out.stderr).contains("is held by owner"), "{out:?}");
    assert!(started.elapsed() < Duration::from_secs(10));

    let out = run_within(
        &mut run_cmd(
            &server.uri(),
            &db,
            &["-n", "-q", "--conflict-exit-code", "9"],
            &name,
            "true",
        ),
        LIMIT,
    );
    assert_eq!(out.status.code(), Some(9), "{out:?}");
    assert_eq!(text(&out.stderr), "", "-q is quiet");

    let started = Instant::now();
    let out = run_within(
        &mut run_cmd(&server.uri(), &db, &["--timeout", "1s"], &name, "true"),
        LIMIT,
    );
    let waited = started.elapsed();
    assert_eq!(out.status.code(), Some(75), "{out:?}");
    assert!(text(&out.stderr).contains("timed out"), "{out:?}");
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(15),
        "{waited:?}"
    );

    // SIGINT to a waiter: it gives up, 128 + 2, and its command never runs.
    let waiter_err = dir.path().join("waiter-stderr");
    let mut waiter = run_cmd(
        &server.uri(),
        &db,
        &[],
        &name,
        "echo waiter-ran >> /dev/stderr",
    )
    .stderr(std::fs::File::create(&waiter_err).expect("waiter's stderr"))
    .spawn()
    .expect("start the waiter");
    wait_for_text(&waiter_err, "waiting", LIMIT);
    let pid =
        rustix::process::Pid::from_raw(i32::try_from(waiter.id()).expect("a pid")).expect("a pid");
    rustix::process::kill_process(pid, rustix::process::Signal::INT).expect("SIGINT");
    let status = wait_for_exit(&mut waiter, LIMIT);
    assert_eq!(status.code(), Some(130), "{status}");
    let said = std::fs::read_to_string(&waiter_err).expect("waiter's stderr");
    assert!(!said.contains("waiter-ran"), "{said}");
    assert!(said.contains("interrupted"), "{said}");

    std::fs::write(&release, "").expect("release");
    assert!(wait_for_exit(&mut holder, LIMIT).success());
    // Free now: --no-wait gets it.
    let out = run_within(
        &mut run_cmd(&server.uri(), &db, &["--no-wait"], &name, "exit 0"),
        LIMIT,
    );
    assert_eq!(out.status.code(), Some(0), "{out:?}");
}

#[test]
fn the_child_gets_the_lock_and_its_exit_code_passes_through() {
    let server = server();
    let db = unique("exit");
    let name = unique("job");
    let out = run_within(
        &mut run_cmd(
            &server.uri(),
            &db,
            &[],
            &name,
            "echo \"$SHYLOCK_LOCK_NAME $SHYLOCK_FENCING_TOKEN\"; exit 7",
        ),
        LIMIT,
    );
    assert_eq!(out.status.code(), Some(7), "{out:?}");
    let stdout = text(&out.stdout);
    let (got_name, token) = stdout.trim().split_once(' ').expect("name and token");
    assert_eq!(got_name, name);
    assert!(token.parse::<u64>().expect("a number") > 0);

    // Killed by a signal: 128 + the signal.
    let out = run_within(
        &mut run_cmd(&server.uri(), &db, &[], &name, "kill -KILL $$"),
        LIMIT,
    );
    assert_eq!(out.status.code(), Some(128 + 9), "{out:?}");

    // Not found.
    let mut cmd = shylock();
    cmd.arg("run")
        .args(mongo_args(&server.uri(), &db))
        .arg(&name)
        .args(["--", "/nonexistent/shylock-test-command"]);
    let out = run_within(&mut cmd, LIMIT);
    assert_eq!(out.status.code(), Some(127), "{out:?}");

    // And the lock was released every time.
    let out = inspect(&server.uri(), &db, &name, false);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
}

#[test]
fn the_command_runs_in_its_own_process_group_unless_foreground() {
    let server = server();
    let db = unique("pgroup");
    let name = unique("job");
    // The command's process group, then shylock's (its parent's).
    let script = "echo $(cut -d' ' -f5 /proc/$$/stat) $(cut -d' ' -f5 /proc/$PPID/stat)";
    let groups = |extra: &[&str]| {
        let out = run_within(
            &mut run_cmd(&server.uri(), &db, extra, &name, script),
            LIMIT,
        );
        assert!(out.status.success(), "{out:?}");
        let stdout = text(&out.stdout);
        let (child, parent) = stdout.trim().split_once(' ').expect("two groups");
        (child.to_owned(), parent.to_owned())
    };
    let (child, parent) = groups(&[]);
    assert_ne!(child, parent, "its own group by default");
    let (child, parent) = groups(&["--foreground"]);
    assert_eq!(child, parent, "shylock's group with --foreground");
}

#[test]
fn sigterm_reaches_the_child_and_the_lock_is_released_after_it_exits() {
    let server = server();
    let db = unique("signal");
    let name = unique("job");
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("log");
    let script = format!(
        "trap 'echo term >> {log}; sleep 2; echo done >> {log}; exit 3' TERM; \
         echo ready >> {log}; i=0; while [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done",
        log = log.display()
    );
    let mut child = run_cmd(&server.uri(), &db, &[], &name, &script)
        .spawn()
        .expect("start shylock");
    wait_for_text(&log, "ready", LIMIT);
    let pid =
        rustix::process::Pid::from_raw(i32::try_from(child.id()).expect("a pid")).expect("a pid");
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).expect("SIGTERM");
    wait_for_text(&log, "term", LIMIT);
    // The child is still cleaning up: the lock is still held.
    let out = inspect(&server.uri(), &db, &name, false);
    assert_eq!(
        out.status.code(),
        Some(0),
        "held while the child runs: {out:?}"
    );
    let status = wait_for_exit(&mut child, LIMIT);
    assert!(
        std::fs::read_to_string(&log).expect("log").contains("done"),
        "the child finished its clean-up"
    );
    assert_eq!(status.code(), Some(3), "the child's code");
    let out = inspect(&server.uri(), &db, &name, false);
    assert_eq!(
        out.status.code(),
        Some(1),
        "free once shylock exited: {out:?}"
    );
}

#[test]
fn a_lost_lease_stops_the_child_and_exits_with_the_loss_code() {
    // Its own server, to stop it.
    let mut server = DocumentDb::start();
    let db = unique("lost");
    let name = unique("job");
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("log");
    // The child notes SIGTERM but goes on: only SIGKILL stops it.
    let script = format!(
        "trap 'echo term >> {log}' TERM; echo \"ready $$\" >> {log}; \
         i=0; while [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done; echo survived >> {log}",
        log = log.display()
    );
    let child = run_cmd(
        &server.uri(),
        &db,
        &["--lease", "2s", "--kill-after", "1s"],
        &name,
        &script,
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .expect("start shylock");
    let ready = wait_for_text(&log, "ready", LIMIT);
    let child_pid: i32 = ready
        .trim()
        .strip_prefix("ready ")
        .expect("ready line")
        .parse()
        .expect("a pid");
    let stopped = Instant::now();
    server.stop();
    let out = output_within(child, LIMIT);
    let took = stopped.elapsed();
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(76), "{stderr}");
    assert!(stderr.contains("lost the lease"), "{stderr}");
    // Which words depends on whether a renewal had failed before the lease
    // ran out, or was still waiting for its answer (a server stopping
    // closes some connections at once and leaves others unanswered).
    assert!(
        stderr.contains("renewals failed") || stderr.contains("the lease expired"),
        "{stderr}"
    );
    let log_text = std::fs::read_to_string(&log).expect("log");
    assert!(
        log_text.contains("term"),
        "the child got SIGTERM: {log_text}"
    );
    assert!(!log_text.contains("survived"), "{log_text}");
    assert!(took < Duration::from_secs(15), "{took:?}");
    // SIGKILL took the child down.
    let pid = rustix::process::Pid::from_raw(child_pid).expect("a pid");
    assert!(
        rustix::process::test_kill_process(pid).is_err(),
        "the child is gone"
    );
}

#[test]
fn inspect_shows_a_held_and_a_free_lock() {
    let server = server();
    let db = unique("inspect");
    let name = unique("job");

    let out = inspect(&server.uri(), &db, &name, false);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(text(&out.stdout).contains("free"), "{out:?}");
    let out = inspect(&server.uri(), &db, &name, true);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(json["held"], false);
    assert_eq!(json["name"], name.as_str());

    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("log");
    let release = dir.path().join("release");
    let mut holder = run_cmd(
        &server.uri(),
        &db,
        &[],
        &name,
        &holder_script(&log, &release),
    )
    .spawn()
    .expect("start the holder");
    let started = wait_for_text(&log, "start", LIMIT);
    let token: u64 = started
        .trim()
        .strip_prefix("start ")
        .expect("start line")
        .parse()
        .expect("a token");

    let out = inspect(&server.uri(), &db, &name, false);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let stdout = text(&out.stdout);
    assert!(stdout.contains("held"), "{stdout}");
    assert!(
        stdout.contains(&format!("fencing token: {token}")),
        "{stdout}"
    );
    assert!(stdout.contains("owner:"), "{stdout}");
    assert!(stdout.contains("expires at:"), "{stdout}");

    let out = inspect(&server.uri(), &db, &name, true);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(json["held"], true);
    assert_eq!(json["token"], token);
    // `HOST/PID:` then 32 random hex digits.
    assert_eq!(
        json["owner"]
            .as_str()
            .and_then(|o| o.rsplit_once(':'))
            .map(|(_, random)| random.len()),
        Some(32),
        "{json}"
    );
    assert!(
        json["expires_at"]
            .as_str()
            .is_some_and(|s| s.ends_with('Z')),
        "{json}"
    );
    assert!(json["expires_at_ms"].as_i64().is_some(), "{json}");

    std::fs::write(&release, "").expect("release");
    assert!(wait_for_exit(&mut holder, LIMIT).success());
}

#[test]
fn setup_prepares_the_collection_and_refuses_ferretdb_without_the_opt_in() {
    let server = server();
    let db = unique("setup");
    let mut cmd = shylock();
    cmd.arg("setup").args(mongo_args(&server.uri(), &db));
    let out = run_within(&mut cmd, LIMIT);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(text(&out.stdout).contains("ready"), "{out:?}");

    // The environment variable works as --mongodb does; FerretDB v1 (not
    // atomic across connections) is refused without the opt-in, and works
    // with it.
    let ferret = shylock_testkit::ferretdb::FerretDb::start(false);
    let mut cmd = shylock();
    cmd.env("SHYLOCK_MONGODB_URI", ferret.uri())
        .args(["setup", "--database", &db]);
    let out = run_within(&mut cmd, LIMIT);
    assert_eq!(out.status.code(), Some(78), "{out:?}");
    let stderr = text(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(stderr.contains("FerretDB"), "{stderr}");
    // The opt-in named as the flag, not as the library call (issue 22
    // item 10), and no internal kind name.
    assert!(stderr.contains("--allow-non-atomic-server"), "{stderr}");
    assert!(!stderr.contains("MongoOptions"), "{stderr}");
    assert!(!stderr.contains("InvalidConfig"), "{stderr}");
    let mut cmd = shylock();
    cmd.env("SHYLOCK_MONGODB_URI", ferret.uri()).args([
        "setup",
        "--database",
        &db,
        "--allow-non-atomic-server",
    ]);
    let out = run_within(&mut cmd, LIMIT);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
}

#[test]
fn bad_input_and_unreachable_servers_fail_with_one_line_and_their_codes() {
    let check = |args: &[&str], env: Option<(&str, &str)>, code: i32, needle: &str| {
        let mut cmd = shylock();
        cmd.args(args);
        if let Some((k, v)) = env {
            cmd.env(k, v);
        }
        let started = Instant::now();
        let out = run_within(&mut cmd, LIMIT);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: one line: {stderr}");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
        assert!(
            !stderr.contains("hunter2"),
            "{args:?}: a password shown: {stderr}"
        );
        assert!(started.elapsed() < Duration::from_secs(15), "{args:?}");
    };
    let dead = dead_uri();
    check(
        &[
            "run",
            "--mongodb",
            &dead,
            "--timeout",
            "soon",
            "x",
            "--",
            "true",
        ],
        None,
        64,
        "bad duration",
    );
    check(
        &["run", "--mongodb", &dead, "", "--", "true"],
        None,
        64,
        "lock name",
    );
    check(&["run", "x", "--", "true"], None, 64, "no backend");
    check(&["run", "--mongodb", &dead, "x"], None, 64, "COMMAND");
    check(
        &["inspect", "--mongodb", "notmongo://x", "x"],
        None,
        78,
        "connection string",
    );
    check(
        &["run", "--connect-timeout", "2s", "x", "--", "true"],
        Some(("SHYLOCK_MONGODB_URI", &dead)),
        69,
        "MongoDB",
    );
    check(
        &[
            "run",
            "--mongodb",
            &dead,
            "--timeout",
            "1s",
            "x",
            "--",
            "true",
        ],
        None,
        69,
        "MongoDB",
    );
    // The password never shows.
    check(
        &["inspect", "--connect-timeout", "2s", "x"],
        Some((
            "SHYLOCK_MONGODB_URI",
            &dead.replace("127.0.0.1", "user:hunter2-secret@127.0.0.1"),
        )),
        69,
        "MongoDB",
    );
}

/// `--backend URL` and `SHYLOCK_BACKEND_URL` take any backend URL (here
/// `memory://`, locks of this process only); `--mongodb` and `--arango` keep
/// to their own backend; passwords never show.
#[test]
fn a_backend_url_names_any_backend() {
    let run = |args: &[&str], env: Option<(&str, &str)>| {
        let mut cmd = shylock();
        cmd.args(args);
        if let Some((k, v)) = env {
            cmd.env(k, v);
        }
        let out = run_within(&mut cmd, LIMIT);
        let stderr = text(&out.stderr);
        assert!(!stderr.contains("hunter2"), "{args:?}: {stderr}");
        (out.status.code(), text(&out.stdout), stderr)
    };
    let (code, stdout, _) = run(&["inspect", "--backend", "memory://cli", "x"], None);
    assert_eq!(code, Some(1), "{stdout}");
    assert!(stdout.contains("free"), "{stdout}");
    let (code, stdout, _) = run(&["setup"], Some(("SHYLOCK_BACKEND_URL", "memory://cli")));
    assert_eq!(code, Some(0));
    assert!(stdout.contains("ready"), "{stdout}");
    let (code, stdout, _) = run(
        &[
            "run",
            "--backend",
            "memory://cli",
            "-n",
            "x",
            "--",
            "echo",
            "ran",
        ],
        None,
    );
    assert_eq!(code, Some(0));
    assert_eq!(stdout.trim(), "ran");
    for (args, env, code, needle) in [
        (
            &["inspect", "--mongodb", "http://u:hunter2@127.0.0.1:1", "x"][..],
            None,
            78,
            "names ArangoDB",
        ),
        (
            &["inspect", "--arango", "memory://x", "x"][..],
            None,
            78,
            "bad ArangoDB URL",
        ),
        (
            &["inspect", "--backend", "ftp://u:hunter2@h/", "x"][..],
            None,
            78,
            "unknown scheme `ftp`",
        ),
        (
            &["inspect", "--backend", "memory://x?shylock.nope=1", "x"][..],
            None,
            78,
            "shylock.nope",
        ),
        (
            &[
                "inspect",
                "--mongodb",
                "mongodb://127.0.0.1:1/",
                "--backend",
                "memory://x",
                "x",
            ][..],
            None,
            64,
            "--backend",
        ),
        (
            // The flag wins over the variable: MongoDB, not memory.
            &[
                "inspect",
                "--connect-timeout",
                "1s",
                "--mongodb",
                "mongodb://127.0.0.1:1/",
                "x",
            ][..],
            Some(("SHYLOCK_BACKEND_URL", "memory://x")),
            69,
            "MongoDB",
        ),
    ] {
        let (got, _, stderr) = run(args, env);
        assert_eq!(got, Some(code), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: one line: {stderr}");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
    }
}

#[test]
fn run_help_documents_every_option() {
    let mut cmd = shylock();
    cmd.args(["run", "--help"]);
    let out = run_within(&mut cmd, LIMIT);
    assert!(out.status.success());
    let help = text(&out.stdout);
    for option in [
        "--mongodb",
        "--arango",
        "--backend",
        "SHYLOCK_BACKEND_URL",
        "--user",
        "--password-file",
        "--database",
        "--collection",
        "--connect-timeout",
        "--allow-non-atomic-server",
        "--no-wait",
        "--timeout",
        "--lease",
        "--kill-after",
        "--kill-group",
        "--conflict-exit-code",
        "--lost-exit-code",
        "--quiet",
        "--foreground",
        "SHYLOCK_FENCING_TOKEN",
        "SHYLOCK_ARANGO_PASSWORD",
        "Exit status",
    ] {
        assert!(help.contains(option), "{option} missing from:\n{help}");
    }
}

/// An outage is not contention: when every acquisition request fails until
/// `--timeout` passes, `run` exits 69 (unavailable) naming the cause, not 75
/// (held).
#[test]
fn a_timeout_while_the_server_fails_is_unavailable_not_a_conflict() {
    use shylock::mongo::mongodb::bson::doc;
    use shylock_testkit::proxy::{Mode, Proxy};
    let server = server();
    let proxy = Proxy::start(server.addr(), Mode::PassThrough).expect("the proxy");
    proxy.fail_command(
        "findAndModify",
        doc! {"ok": 0, "code": 10107, "codeName": "NotWritablePrimary", "errmsg": "test: not primary"},
        None,
    );
    let out = run_within(
        &mut run_cmd(
            &via(&server.uri(), proxy.addr()),
            &unique("failing"),
            &["--timeout", "3s"],
            &unique("job"),
            "true",
        ),
        LIMIT,
    );
    let said = text(&out.stderr);
    assert_eq!(out.status.code(), Some(69), "{out:?}");
    assert!(
        said.contains("failing") && said.contains("not primary"),
        "{said}"
    );
    // The driver's error reads as its code and message, not a dump of the
    // raw server reply.
    assert!(said.contains("10107 (NotWritablePrimary)"), "{said}");
    assert!(!said.contains("RawDocumentBuf"), "{said}");
}

/// Set every record of collection `shylock` in `db` held by `owner` until
/// `expires_ms` (a record another program could write).
fn hold_every_record(uri: &str, db: &str, owner: &str, expires_ms: i64) {
    use mongodb::bson::{DateTime, doc};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    rt.block_on(async {
        let client = mongodb::Client::with_uri_str(uri).await.expect("client");
        let coll = client
            .database(db)
            .collection::<mongodb::bson::Document>("shylock");
        let done = coll
            .update_many(
                doc! {},
                doc! { "$set": { "owner": owner, "expiresAt": DateTime::from_millis(expires_ms) } },
            )
            .await
            .expect("update");
        assert_eq!(done.matched_count, 1, "{done:?}");
    });
}

/// Issue 23 item 2: a record whose expiry is beyond year 9999 (which
/// `humantime` refuses) is no panic (exit 101). Since item 3, such an
/// expiry (beyond the server time + the longest lease + a day) is treated
/// as expired: inspect shows the lock free (exit 1) and `run` takes it over.
#[test]
fn a_record_expiring_after_year_9999_is_printed_not_a_panic() {
    let server = server();
    let db = unique("far_future");
    let name = unique("job");
    let out = run_within(&mut run_cmd(&server.uri(), &db, &[], &name, "true"), LIMIT);
    assert!(out.status.success(), "{out:?}");
    for expires_ms in [631_152_000_000_000_i64, i64::MAX] {
        hold_every_record(&server.uri(), &db, "intruder", expires_ms);

        let out = inspect(&server.uri(), &db, &name, false);
        assert_eq!(out.status.code(), Some(1), "free: {out:?}");
        let out = inspect(&server.uri(), &db, &name, true);
        assert_eq!(out.status.code(), Some(1), "free: {out:?}");

        let out = run_within(
            &mut run_cmd(&server.uri(), &db, &["--no-wait"], &name, "true"),
            LIMIT,
        );
        assert_eq!(out.status.code(), Some(0), "taken over: {out:?}");
    }
}

/// Issue 23 item 9: a connect timeout that validates but is beyond any
/// `Instant` saturates instead of panicking.
#[test]
fn a_connect_timeout_beyond_any_instant_does_not_panic() {
    let server = server();
    let db = unique("huge_timeout");
    let name = unique("job");
    let out = run_within(
        shylock()
            .arg("inspect")
            .args(mongo_args(&server.uri(), &db))
            .args(["--connect-timeout", "300000000000y"])
            .arg(&name),
        LIMIT,
    );
    assert_eq!(out.status.code(), Some(1), "free: {out:?}");
}

/// Issue 23 item 7: `--ca-file` is MongoDB's `tlsCAFile`: a server whose
/// certificate a test CA signed is reached with it, not without.
#[test]
fn ca_file_is_the_mongodb_tls_ca_file() {
    let server = DocumentDb::start_tls();
    let uri = server.uri();
    let (base, query) = uri.split_once('?').expect("the TLS URI has options");
    let query: Vec<&str> = query
        .split('&')
        .filter(|p| !p.to_ascii_lowercase().starts_with("tlscafile="))
        .collect();
    let without_ca = format!("{base}?{}", query.join("&"));
    assert!(without_ca.contains("tls=true"), "{without_ca}");
    let db = unique("ca_file");
    let inspect = |ca: bool| {
        let mut cmd = shylock();
        cmd.arg("inspect")
            .args(mongo_args(&without_ca, &db))
            .args(["--connect-timeout", "5s"]);
        if ca {
            cmd.arg("--ca-file").arg(server.ca_file());
        }
        run_within(cmd.arg("x"), LIMIT)
    };
    let out = inspect(false);
    assert!(!matches!(out.status.code(), Some(0 | 1)), "{out:?}");
    let out = inspect(true);
    assert_eq!(out.status.code(), Some(1), "free: {out:?}");
}

/// Issue 22 item 10: messages for a person. clap's "did you mean" tips are
/// kept; a negative duration is called that (not "unexpected argument
/// '-1'"); bare `shylock` prints its help, not its about text as an
/// error; a refused port is one short line (not the driver's topology
/// dump), and at once with `-n` (not after the 10 s connect timeout);
/// no internal kind name (`InvalidConfig:`, `Unavailable:`) shows.
#[test]
fn messages_are_short_and_for_people() {
    let run = |args: &[&str]| {
        let mut cmd = shylock();
        cmd.args(args);
        let started = Instant::now();
        let out = run_within(&mut cmd, LIMIT);
        (out, started.elapsed())
    };

    let (out, _) = run(&["run", "--timout", "3s", "x", "--", "true"]);
    let said = text(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{said}");
    assert!(said.contains("'--timeout'"), "no tip: {said}");
    assert_eq!(said.lines().count(), 1, "{said}");

    let (out, _) = run(&[
        "run",
        "--backend",
        "memory://m",
        "--timeout",
        "-1s",
        "x",
        "--",
        "true",
    ]);
    let said = text(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{said}");
    assert!(said.contains("cannot be negative"), "{said}");

    let (out, _) = run(&[]);
    let said = text(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{said}");
    assert!(said.contains("Usage:") && said.contains("run"), "{said}");
    assert!(!said.starts_with("shylock: Distributed"), "{said}");

    let dead = dead_uri();
    for extra in [&["-n"][..], &["--connect-timeout", "2s"]] {
        let mut args = vec!["run", "--mongodb", &dead];
        args.extend(extra);
        args.extend(["x", "--", "true"]);
        let (out, took) = run(&args);
        let said = text(&out.stderr);
        assert_eq!(out.status.code(), Some(69), "{extra:?}: {said}");
        assert_eq!(said.lines().count(), 1, "{extra:?}: {said}");
        assert!(said.contains("refused"), "{extra:?}: {said}");
        for leak in [
            "Topology",
            "labels",
            "Unavailable:",
            "InvalidConfig:",
            "Timeout:",
        ] {
            assert!(!said.contains(leak), "{extra:?}: {leak} in {said}");
        }
        assert!(said.len() < 300, "{extra:?}: a long line: {said}");
        if extra == ["-n"] {
            assert!(took < Duration::from_secs(4), "-n waited {took:?}: {said}");
        }
    }

    // A wrong password: said so, 77 (not "cannot reach").
    let uri = server().uri();
    let (scheme, rest) = uri.split_once("://").expect("a URI");
    let (userinfo, host) = rest
        .split_once('@')
        .expect("a user in the test server's URI");
    let user = userinfo.split(':').next().expect("a user");
    let bad = format!("{scheme}://{user}:wrong-password@{host}");
    let mut cmd = shylock();
    cmd.arg("inspect")
        .args(mongo_args(&bad, &unique("auth")))
        .arg("x");
    let out = run_within(&mut cmd, LIMIT);
    let said = text(&out.stderr);
    assert_eq!(out.status.code(), Some(77), "{said}");
    assert!(said.contains("authentication failed"), "{said}");
    assert!(!said.contains("cannot reach"), "{said}");
    assert!(!said.contains("Unauthorized:"), "{said}");
}

/// Issue 22 item 11: the command gets its owner id (SHYLOCK_OWNER), which
/// `--verbose` prints and `inspect` shows; `inspect` says when the lease
/// ends ("expires in"), and `--json` has a schema version.
#[test]
fn the_owner_id_is_given_to_the_command_and_inspect_shows_the_expiry() {
    let server = server();
    let db = unique("owner");
    let name = unique("job");
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("log");
    let release = dir.path().join("release");
    let script = format!(
        "echo \"owner $SHYLOCK_OWNER\" >> {log}; {}",
        holder_script(&log, &release),
        log = log.display()
    );
    let stderr = dir.path().join("stderr");
    let mut holder = run_cmd(&server.uri(), &db, &["--verbose"], &name, &script)
        .stderr(std::fs::File::create(&stderr).expect("stderr file"))
        .spawn()
        .expect("start the holder");
    let log_text = wait_for_text(&log, "start", LIMIT);
    let owner = log_text
        .lines()
        .find_map(|l| l.strip_prefix("owner "))
        .expect("an owner line")
        .trim()
        .to_owned();
    assert!(!owner.is_empty(), "{log_text:?}");
    // The owner id says which host and process hold the lock.
    assert!(
        owner.contains(&format!("/{}:", holder.id())),
        "{owner:?} names no PID {}",
        holder.id()
    );
    let said = std::fs::read_to_string(&stderr).expect("stderr");
    assert!(said.contains(&format!("as owner {owner}")), "{said:?}");

    let out = inspect(&server.uri(), &db, &name, false);
    let shown = text(&out.stdout);
    assert!(shown.contains(&owner), "{shown}");
    assert!(shown.contains("expires in:"), "{shown}");
    let out = inspect(&server.uri(), &db, &name, true);
    let value: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(value["schema"], 1, "{value}");
    assert_eq!(value["owner"], owner.as_str(), "{value}");

    std::fs::write(&release, "").expect("release");
    assert!(wait_for_exit(&mut holder, LIMIT).success());
    let out = inspect(&server.uri(), &db, &name, true);
    let value: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(value["schema"], 1, "{value}");
    assert_eq!(value["held"], false, "{value}");
}
