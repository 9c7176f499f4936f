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
    write_password_file(&file, "wrong-hunter2\n");
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
    write_password_file(&file, &format!("{PASSWORD}\n"));
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

/// A new CA (its PEM) and a server configuration with a certificate it
/// signed for `localhost`.
fn private_ca() -> (String, tokio_rustls::rustls::ServerConfig) {
    use tokio_rustls::rustls;
    let ca_key = rcgen::KeyPair::generate().expect("key");
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "shylock test CA");
    let ca = ca_params.self_signed(&ca_key).expect("CA");
    let key = rcgen::KeyPair::generate().expect("key");
    let params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).expect("params");
    let cert = params.signed_by(&key, &ca, &ca_key).expect("certificate");
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )
        .expect("server config");
    (ca.pem(), config)
}

/// An HTTPS front on a free loopback port, on a thread of its own, that
/// passes every connection on to `upstream` (`host:port`): its URL.
fn https_front(config: tokio_rustls::rustls::ServerConfig, upstream: String) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.set_nonblocking(true).expect("nonblocking");
    let port = listener.local_addr().expect("addr").port();
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
            while let Ok((tcp, _)) = listener.accept().await {
                let (acceptor, upstream) = (acceptor.clone(), upstream.clone());
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let Ok(mut up) = tokio::net::TcpStream::connect(&upstream).await else {
                        return;
                    };
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut up).await;
                });
            }
        });
    });
    format!("https://localhost:{port}")
}

/// Issue 23 item 7: `--ca-file` trusts a private CA; without it the
/// certificate is a configuration error (78) that says so.
#[test]
fn a_private_ca_is_trusted_with_ca_file() {
    let emu = Emulator::start(USER, PASSWORD, &[DB]);
    let upstream = emu
        .url()
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    let (ca_pem, config) = private_ca();
    let url = https_front(config, upstream);
    let dir = tempfile::tempdir().expect("tempdir");
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca_pem).expect("CA file");
    let inspect = |ca: Option<&std::path::Path>| {
        let mut cmd = shylock();
        cmd.env("SHYLOCK_ARANGO_PASSWORD", PASSWORD).args([
            "inspect",
            "--arango",
            &url,
            "--user",
            USER,
            "--database",
            DB,
        ]);
        if let Some(ca) = ca {
            cmd.arg("--ca-file").arg(ca);
        }
        run_within(cmd.arg("x"), LIMIT)
    };
    let out = inspect(None);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{stderr}");
    assert!(stderr.contains("certificate"), "{stderr}");
    // Free: exit 1.
    let out = inspect(Some(&ca_file));
    assert_eq!(out.status.code(), Some(1), "{out:?}");
}
