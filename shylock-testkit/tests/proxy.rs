//! The proxy against FerretDB, through the real `mongodb` driver.
//!
//! Each test starts its own proxy in front of a FerretDB shared by the tests
//! of this binary (one that must crash gets its own). Without a FerretDB
//! binary the tests fail (run `scripts/ensure-ferretdb.sh`).

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use mongodb::bson::{Document, doc};
use mongodb::error::{ErrorKind, WriteFailure};
use mongodb::options::ClientOptions;
use shylock_testkit::ferretdb::FerretDb;
use shylock_testkit::proxy::{self, Mode, Proxy};

fn server() -> &'static FerretDb {
    static SERVER: OnceLock<FerretDb> = OnceLock::new();
    SERVER.get_or_init(|| FerretDb::start(true))
}

fn proxy(mode: Mode) -> Proxy {
    Proxy::start(server().addr(), mode).expect("the proxy starts")
}

async fn client(proxy: &Proxy, pool: u32) -> mongodb::Client {
    let mut options = ClientOptions::parse(proxy.uri()).await.expect("options");
    options.app_name = Some("shylock-testkit-tests".into());
    options.server_selection_timeout = Some(Duration::from_secs(3));
    options.max_pool_size = Some(pool);
    options.retry_reads = Some(false);
    options.retry_writes = Some(false);
    mongodb::Client::with_options(options).expect("a client")
}

/// The server error code of a driver error.
fn code(e: &mongodb::error::Error) -> Option<i32> {
    match e.kind.as_ref() {
        ErrorKind::Command(c) => Some(c.code),
        ErrorKind::Write(WriteFailure::WriteConcernError(w)) => Some(w.code),
        ErrorKind::Write(WriteFailure::WriteError(w)) => Some(w.code),
        _ => None,
    }
}

async fn ping(client: &mongodb::Client) -> mongodb::error::Result<Document> {
    client
        .database("admin")
        .run_command(doc! { "ping": 1 })
        .await
}

fn unique(name: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "{name}_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_clients_share_one_upstream_connection() {
    let proxy = proxy(Mode::Serializing);
    let coll = unique("many");
    let mut tasks = Vec::new();
    for c in 0..3 {
        // Several clients, each with several connections, each of which
        // sends `hello` with client metadata: FerretDB refuses metadata
        // after the first hello of its connection (error 186), so these
        // connections work only if the proxy strips it.
        let client = client(&proxy, 4).await;
        let coll = coll.clone();
        tasks.push(tokio::spawn(async move {
            let collection = client.database("testkit").collection::<Document>(&coll);
            let mut inner = Vec::new();
            for t in 0..4 {
                let collection = collection.clone();
                inner.push(tokio::spawn(async move {
                    for i in 0..10 {
                        collection
                            .insert_one(doc! { "c": c, "t": t, "i": i })
                            .await
                            .expect("an insert through the proxy");
                    }
                }));
            }
            for task in inner {
                task.await.expect("an inserting task");
            }
        }));
    }
    for task in tasks {
        task.await.expect("a client task");
    }
    let client = client(&proxy, 1).await;
    let n = client
        .database("testkit")
        .collection::<Document>(&coll)
        .count_documents(doc! {})
        .await
        .expect("a count");
    assert_eq!(n, 120);
    let stats = proxy.stats();
    assert_eq!(stats.upstream_connects, 1, "{stats:?}");
    assert_eq!(stats.upstream_failures, 0, "{stats:?}");
    assert!(stats.client_connections > 3, "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pass_through_opens_one_upstream_connection_per_client_connection() {
    let proxy = proxy(Mode::PassThrough);
    let client = client(&proxy, 4).await;
    let coll = client
        .database("testkit")
        .collection::<Document>(&unique("pass"));
    let mut tasks = Vec::new();
    for i in 0..8 {
        let coll = coll.clone();
        tasks.push(tokio::spawn(async move {
            coll.insert_one(doc! { "i": i }).await.expect("an insert");
        }));
    }
    for task in tasks {
        task.await.expect("a task");
    }
    let stats = proxy.stats();
    assert!(stats.upstream_connects > 1, "{stats:?}");
    assert_eq!(
        stats.upstream_connects, stats.client_connections,
        "{stats:?}"
    );
}

#[tokio::test]
async fn hello_answered_with_code_115_fails_the_handshake() {
    let proxy = proxy(Mode::Serializing);
    proxy.fail_command(
        "hello",
        doc! { "ok": 0, "code": 115, "codeName": "CommandNotSupported", "errmsg": "hello is not supported" },
        None,
    );
    let client = client(&proxy, 1).await;
    let e = ping(&client).await.expect_err("the handshake fails");
    assert!(
        e.to_string().contains("115") || e.to_string().contains("CommandNotSupported"),
        "{e}"
    );
    assert!(proxy.stats().injected >= 1);
    proxy.clear_faults();
    let client = self::client(&proxy, 1).await;
    ping(&client)
        .await
        .expect("a ping once the fault is cleared");
}

#[tokio::test]
async fn create_indexes_refused_like_a_ttl_index() {
    let proxy = proxy(Mode::Serializing);
    let client = client(&proxy, 1).await;
    let coll = client
        .database("testkit")
        .collection::<Document>(&unique("ttl"));
    proxy.fail_command(
        "createIndexes",
        doc! { "ok": 0, "code": 238, "codeName": "NotImplemented", "errmsg": "TTL indexes are not supported" },
        Some(1),
    );
    let index = mongodb::IndexModel::builder().keys(doc! { "a": 1 }).build();
    let e = coll.create_index(index.clone()).await.expect_err("refused");
    assert_eq!(code(&e), Some(238), "{e}");
    // Once only: the next one reaches the server.
    coll.create_index(index)
        .await
        .expect("the second is forwarded");
}

#[tokio::test]
async fn rate_limit_16500_with_retry_after_ms() {
    let proxy = proxy(Mode::Serializing);
    let client = client(&proxy, 1).await;
    proxy.fail_command(
        "ping",
        doc! { "ok": 0, "code": 16500, "codeName": "RequestRateTooLarge", "errmsg": "Request rate is large. RetryAfterMs=25" },
        Some(2),
    );
    for _ in 0..2 {
        let e = ping(&client).await.expect_err("rate limited");
        assert_eq!(code(&e), Some(16500), "{e}");
        assert!(e.to_string().contains("RetryAfterMs=25"), "{e}");
    }
    ping(&client).await.expect("the third ping is forwarded");
    assert_eq!(proxy.stats().injected, 2);
}

#[tokio::test]
async fn write_concern_error_after_the_write_took_effect() {
    let proxy = proxy(Mode::Serializing);
    let client = client(&proxy, 1).await;
    let coll = client
        .database("testkit")
        .collection::<Document>(&unique("wce"));
    proxy.forward_then_reply(
        "insert",
        doc! { "ok": 1, "n": 1, "writeConcernError": { "code": 64, "codeName": "WriteConcernFailed", "errmsg": "waiting for replication timed out" } },
        Some(1),
    );
    let e = coll
        .insert_one(doc! { "_id": 1 })
        .await
        .expect_err("a write concern error");
    assert!(
        matches!(
            e.kind.as_ref(),
            ErrorKind::Write(WriteFailure::WriteConcernError(w)) if w.code == 64
        ),
        "{e}"
    );
    assert_eq!(coll.count_documents(doc! {}).await.expect("a count"), 1);
}

#[tokio::test]
async fn not_writable_primary() {
    let proxy = proxy(Mode::Serializing);
    let client = client(&proxy, 1).await;
    let coll = client
        .database("testkit")
        .collection::<Document>(&unique("nwp"));
    proxy.fail_command(
        "insert",
        doc! { "ok": 0, "code": 10107, "codeName": "NotWritablePrimary", "errmsg": "not primary" },
        Some(1),
    );
    let e = coll
        .insert_one(doc! { "a": 1 })
        .await
        .expect_err("not primary");
    assert_eq!(code(&e), Some(10107), "{e}");
    assert_eq!(coll.count_documents(doc! {}).await.expect("a count"), 0);
    coll.insert_one(doc! { "a": 1 })
        .await
        .expect("the next insert is forwarded");
}

#[tokio::test]
async fn lost_answer_the_write_took_effect_but_the_connection_closed() {
    let proxy = proxy(Mode::Serializing);
    let client = client(&proxy, 1).await;
    let coll = client
        .database("testkit")
        .collection::<Document>(&unique("lost"));
    proxy.forward_then_drop("insert", Some(1));
    let e = coll
        .insert_one(doc! { "a": 1 })
        .await
        .expect_err("no answer");
    assert!(matches!(e.kind.as_ref(), ErrorKind::Io(_)), "{e}");
    assert_eq!(coll.count_documents(doc! {}).await.expect("a count"), 1);
}

#[tokio::test]
async fn blackhole_holds_requests_then_delivers_them() {
    let proxy = proxy(Mode::Serializing);
    let client = client(&proxy, 1).await;
    ping(&client).await.expect("a first ping");
    proxy.blackhole(Duration::from_millis(800));
    let started = Instant::now();
    ping(&client)
        .await
        .expect("delivered once the network heals");
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(700), "{took:?}");
    assert!(took < Duration::from_secs(4), "{took:?}");
    let started = Instant::now();
    ping(&client).await.expect("a ping after the blackhole");
    assert!(started.elapsed() < Duration::from_millis(500));
}

#[tokio::test]
async fn delay_slows_every_request() {
    let proxy = proxy(Mode::Serializing);
    let client = client(&proxy, 1).await;
    ping(&client).await.expect("a first ping");
    proxy.set_delay(Duration::from_millis(300));
    let started = Instant::now();
    ping(&client).await.expect("a delayed ping");
    assert!(started.elapsed() >= Duration::from_millis(300));
    proxy.set_delay(Duration::ZERO);
    let started = Instant::now();
    ping(&client).await.expect("a ping");
    assert!(started.elapsed() < Duration::from_millis(250));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_is_seen_by_the_driver_as_a_network_error() {
    let proxy = proxy(Mode::Serializing);
    let client = client(&proxy, 1).await;
    ping(&client).await.expect("a first ping");
    // Hold the next request so that it is in flight when the reset comes.
    proxy.blackhole(Duration::from_secs(3));
    let pending = tokio::spawn({
        let client = client.clone();
        async move { ping(&client).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    proxy.reset_connections();
    let e = pending
        .await
        .expect("the task")
        .expect_err("the connection was reset");
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(matches!(e.kind.as_ref(), ErrorKind::Io(_)), "{e}");
    assert_eq!(proxy.stats().resets, 1);
    proxy.clear_faults();
    ping(&client).await.expect("a new connection works");
}

#[tokio::test]
async fn control_channel() {
    let proxy = proxy(Mode::Serializing);
    let client = client(&proxy, 1).await;
    let ctl = proxy.control_addr();
    let answer = tokio::task::spawn_blocking(move || {
        proxy::control(ctl, "ping").expect("ping");
        proxy::control(
            ctl,
            r#"fail ping 1 {"ok":0,"code":16500,"errmsg":"RetryAfterMs=5"}"#,
        )
        .expect("fail");
        assert!(proxy::control(ctl, "frobnicate").is_err());
        assert!(proxy::control(ctl, "fail ping x {}").is_err());
        assert!(proxy::control(ctl, "fail ping 1 [1]").is_err());
        proxy::control(ctl, "delay 0").expect("delay")
    })
    .await
    .expect("the control thread");
    assert_eq!(answer, "ok");
    let e = ping(&client).await.expect_err("the injected error");
    assert_eq!(code(&e), Some(16500), "{e}");
    ping(&client).await.expect("once only");
    let ctl = proxy.control_addr();
    let stats = tokio::task::spawn_blocking(move || {
        proxy::control(ctl, "blackhole 10").expect("blackhole");
        proxy::control(ctl, "forward-drop insert 1").expect("forward-drop");
        proxy::control(ctl, "clear").expect("clear");
        proxy::control(ctl, "reset").expect("reset");
        proxy::control(ctl, "stats").expect("stats")
    })
    .await
    .expect("the control thread");
    assert!(stats.contains("injected=1"), "{stats}");
    assert!(stats.contains("resets=1"), "{stats}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnects_upstream_after_the_server_restarts() {
    let mut server = FerretDb::start(false);
    let proxy = Proxy::start(server.addr(), Mode::Serializing).expect("the proxy");
    let client = client(&proxy, 2).await;
    ping(&client).await.expect("a first ping");
    tokio::task::block_in_place(|| {
        server.crash();
        server.restart();
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match ping(&client).await {
            Ok(_) => break,
            Err(e) => assert!(Instant::now() < deadline, "no ping after restart: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let stats = proxy.stats();
    assert!(stats.upstream_connects >= 2, "{stats:?}");
}
