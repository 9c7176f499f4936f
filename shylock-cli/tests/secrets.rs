//! Issue 23 item 10: how the command line treats secrets and unsafe
//! settings. None of these needs a server: every case is refused, warned
//! about or fails to connect to a closed port.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use support::*;

const LIMIT: Duration = Duration::from_secs(30);

/// A closed port on the loopback interface.
const DEAD_HTTP: &str = "http://127.0.0.1:1";
const DEAD_MONGO: &str = "mongodb://127.0.0.1:1/";

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn password_file(dir: &Path, mode: u32) -> PathBuf {
    let path = dir.join(format!("password-{mode:o}"));
    std::fs::write(&path, "hunter2\n").expect("password file");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
    path
}

/// `shylock <args>` with `env`: exit code and stderr, which never shows
/// `hunter2`.
fn shylock_says(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String) {
    let mut cmd = shylock();
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = run_within(&mut cmd, LIMIT);
    let stderr = text(&out.stderr);
    assert!(
        !stderr.contains("hunter2"),
        "{args:?}: a secret shown: {stderr}"
    );
    (out.status.code(), stderr)
}

#[test]
fn a_password_file_others_can_read_is_used_with_a_warning() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (mode, warned) in [(0o600, false), (0o640, true), (0o644, true), (0o666, true)] {
        let file = password_file(dir.path(), mode);
        let file = file.to_str().expect("path");
        let (code, stderr) = shylock_says(
            &[
                "inspect",
                "--arango",
                DEAD_HTTP,
                "--connect-timeout",
                "2s",
                "--password-file",
                file,
                "x",
            ],
            &[],
        );
        // Used (not refused): the connect is tried and fails.
        assert_eq!(code, Some(69), "{mode:o}: {stderr}");
        assert_eq!(
            stderr.contains("warning") && stderr.contains("readable"),
            warned,
            "{mode:o}: {stderr}"
        );
    }
}

#[test]
fn an_endless_password_file_is_refused_not_read_for_ever() {
    let started = Instant::now();
    let (code, stderr) = shylock_says(
        &[
            "inspect",
            "--arango",
            DEAD_HTTP,
            "--password-file",
            "/dev/zero",
            "x",
        ],
        &[],
    );
    assert_eq!(code, Some(78), "{stderr}");
    assert!(stderr.contains("password file"), "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[test]
fn a_password_on_the_command_line_is_refused() {
    for (flag, url) in [
        ("--mongodb", "mongodb://alice:hunter2@127.0.0.1:1/"),
        ("--backend", "mongodb://alice:hunter2@127.0.0.1:1/"),
        ("--arango", "http://root:hunter2@127.0.0.1:1"),
        ("--backend", "https://root:hunter2@127.0.0.1:1"),
    ] {
        let (code, stderr) = shylock_says(&["inspect", flag, url, "x"], &[]);
        assert_eq!(code, Some(64), "{flag} {url}: {stderr}");
        assert!(stderr.contains("command line"), "{stderr}");
        assert!(
            stderr.contains("SHYLOCK_MONGODB_URI") || stderr.contains("SHYLOCK_ARANGO_PASSWORD"),
            "{stderr}"
        );
        assert!(stderr.contains("--password-file"), "{stderr}");
    }
    // In the environment, where the README puts it, it is taken.
    let (code, stderr) = shylock_says(
        &["inspect", "--connect-timeout", "2s", "x"],
        &[(
            "SHYLOCK_MONGODB_URI",
            "mongodb://alice:hunter2@127.0.0.1:1/",
        )],
    );
    assert_eq!(code, Some(69), "{stderr}");
    // A user name alone is no secret.
    let (code, stderr) = shylock_says(
        &[
            "inspect",
            "--mongodb",
            "mongodb://alice@127.0.0.1:1/",
            "--connect-timeout",
            "2s",
            "x",
        ],
        &[],
    );
    assert_eq!(code, Some(69), "{stderr}");
}

#[test]
fn tls_without_verification_connects_with_a_warning() {
    for query in [
        "tls=true&tlsInsecure=true",
        "tls=true&tlsAllowInvalidCertificates=true",
        "tls=true&TLSINSECURE=true",
    ] {
        let (code, stderr) = shylock_says(
            &["inspect", "--connect-timeout", "2s", "x"],
            &[("SHYLOCK_MONGODB_URI", &format!("{DEAD_MONGO}?{query}"))],
        );
        assert_eq!(code, Some(69), "{query}: {stderr}");
        assert!(
            stderr.contains("warning") && stderr.contains("not verified"),
            "{query}: {stderr}"
        );
    }
    let (_, stderr) = shylock_says(
        &["inspect", "--connect-timeout", "2s", "x"],
        &[("SHYLOCK_MONGODB_URI", &format!("{DEAD_MONGO}?tls=true"))],
    );
    assert!(!stderr.contains("warning"), "{stderr}");
}

#[test]
fn arangodb_database_names_that_would_leave_the_database_are_refused() {
    for db in ["..", ".", "a/b", "", " x", "a:b", "x\u{1}"] {
        let (code, stderr) = shylock_says(
            &["inspect", "--arango", DEAD_HTTP, "--database", db, "x"],
            &[],
        );
        assert_eq!(code, Some(78), "{db:?}: {stderr}");
        assert!(stderr.contains("database name"), "{db:?}: {stderr}");
    }
}

#[test]
fn query_values_never_show_in_errors() {
    for (flag, url) in [
        ("--arango", "http://127.0.0.1:1/?token=hunter2"),
        ("--backend", "http://127.0.0.1:1/?token=hunter2"),
        ("--backend", "ftp://127.0.0.1:1/?token=hunter2"),
        ("--backend", "127.0.0.1:1/?token=hunter2"),
        (
            "--mongodb",
            "mongodb://127.0.0.1:1/?token=hunter2&shylock.nope=1",
        ),
    ] {
        let (code, stderr) =
            shylock_says(&["inspect", "--connect-timeout", "2s", flag, url, "x"], &[]);
        assert!(matches!(code, Some(69 | 78)), "{url}: {stderr}");
    }
}

#[test]
fn a_password_file_works_with_auth_mechanism_plain() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = password_file(dir.path(), 0o600);
    let (code, stderr) = shylock_says(
        &[
            "inspect",
            "--connect-timeout",
            "2s",
            "--password-file",
            file.to_str().expect("path"),
            "x",
        ],
        &[(
            "SHYLOCK_MONGODB_URI",
            "mongodb://alice@127.0.0.1:1/?authMechanism=PLAIN&authSource=$external",
        )],
    );
    // Taken: the connect is tried (and fails), the URI is not refused.
    assert_eq!(code, Some(69), "{stderr}");
}

#[test]
fn a_password_over_plain_http_to_another_host_gets_a_warning() {
    for (url, warned) in [
        ("http://db.invalid:1", true),
        ("https://db.invalid:1", false),
        ("http://127.0.0.1:1", false),
    ] {
        let (code, stderr) = shylock_says(
            &["inspect", "--connect-timeout", "2s", "--arango", url, "x"],
            &[("SHYLOCK_ARANGO_PASSWORD", "hunter2")],
        );
        assert_eq!(code, Some(69), "{url}: {stderr}");
        assert_eq!(
            stderr.contains("warning") && stderr.contains("unencrypted"),
            warned,
            "{url}: {stderr}"
        );
    }
}
