//! TLS against a real server (issue 17): DocumentDB's gateway serves TLS only
//! (`EnforceSslTcp`) with a certificate signed by a test CA that the test
//! support makes; both forms
//! lock through `tls=true&tlsCAFile=…`, and without the CA the backend fails
//! at `create`, within its set-up deadline, with `InvalidConfig` naming TLS
//! (a misconfiguration that waiting does not cure), not a retry for ever.
//!
//! Server: a DocumentDB of this test binary's own (also with
//! `SHYLOCK_MONGODB_URI` set: a user's server has no test CA).

mod support;

use std::time::{Duration, Instant};

use shylock_core::{AsyncLock, Backend, Lock};
use shylock_mongo::{MongoBackend, MongoOptions};

const SETUP: Duration = Duration::from_secs(3);
/// What a loaded machine may add to a deadline.
const SLACK: Duration = Duration::from_secs(10);

fn options() -> MongoOptions {
    MongoOptions::new().setup_timeout(SETUP)
}

#[test]
fn both_forms_lock_over_tls_with_the_servers_ca() {
    let server = support::DocumentDb::start_tls();
    let uri = server.uri();
    assert!(
        uri.contains("tls=true") && uri.contains("tlsCAFile="),
        "{uri}"
    );

    let sclient = mongodb::sync::Client::with_uri_str(&uri).expect("sync client");
    let sync_backend = Backend::from(
        shylock_mongo::sync::MongoBackend::create_with(&sclient, "tlsdb", options())
            .expect("sync create over TLS"),
    );
    let lock = Lock::with_backend("over-tls", &sync_backend);
    let guard = lock.acquire().expect("sync acquire over TLS");
    let first = guard.token();
    guard.release().expect("sync release over TLS");

    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let client = mongodb::Client::with_uri_str(&uri)
            .await
            .expect("async client");
        let backend = Backend::from(
            MongoBackend::create_with(&client, "tlsdb", options())
                .await
                .expect("async create over TLS"),
        );
        let lock = AsyncLock::with_backend("over-tls", &backend);
        let guard = lock.acquire().await.expect("async acquire over TLS");
        assert!(guard.token() > first, "tokens rise across the forms");
        guard.release().await.expect("async release over TLS");
    });
}

// Without the CA: `create` gives up within its set-up deadline, saying what
// to check (TLS among it); and an acquisition without a time limit on a
// backend made with `new` (no set-up deadline) ends with `InvalidConfig`
// naming TLS once the driver's server selection reports the certificate
// error, instead of being retried for ever.
#[test]
fn tls_without_the_ca_is_a_configuration_error_not_a_wait() {
    let server = support::DocumentDb::start_tls();
    // The server's certificate, but no CA that signed it.
    let uri = format!(
        "mongodb://{}:{}@{}/?directConnection=true&tls=true&serverSelectionTimeoutMS=1500",
        shylock_testkit::documentdb::USER,
        shylock_testkit::documentdb::PASSWORD,
        server.addr()
    );
    let sclient = mongodb::sync::Client::with_uri_str(&uri).expect("sync client");
    let started = Instant::now();
    let err = shylock_mongo::sync::MongoBackend::create_with(&sclient, "tlsdb", options())
        .map(|_| ())
        .expect_err("an untrusted certificate is refused");
    let took = started.elapsed();
    assert!(err.to_string().contains("TLS"), "create: {err}");
    assert!(took <= SETUP + SLACK, "create took {took:?}");

    let backend = Backend::from(
        shylock_mongo::sync::MongoBackend::new(&sclient, "tlsdb", MongoOptions::new())
            .expect("new"),
    );
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(Lock::with_backend("tls", &backend).acquire().map(drop));
    });
    let err = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("acquire() without a timeout ended (not retried for ever)")
        .expect_err("the certificate is not trusted");
    assert_eq!(
        err.backend_kind(),
        Some(shylock_core::BackendErrorKind::InvalidConfig),
        "{err}"
    );
    assert!(err.to_string().contains("TLS"), "{err}");
    eprintln!("refused: {err}");
}
