//! Counting the commands the driver sends (its command monitoring,
//! `ClientOptions::command_event_handler`, one count per
//! `CommandStartedEvent`): one per uncontended acquire, one per renewal,
//! one per release, in both forms, at the primitive level and through the
//! core's locks.
//!
//! How it counts: every command the client sends raises one
//! `CommandStartedEvent`; the driver's own connection handshakes and server
//! monitoring heartbeats are not commands of the application and raise none.
//! Each test first warms up (one `server_time`, i.e. `hello`, which the core
//! repeats at most once a minute to refresh its server-clock estimate, and
//! one acquire/release of another name), then clears the log and counts.
//!
//! Server: DocumentDB started by the test support, or the real MongoDB at
//! `SHYLOCK_MONGODB_URI`; one connection per test. The count is a property of this backend and the
//! driver, the same on every server.

mod support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mongodb::event::EventHandler;
use mongodb::event::command::CommandEvent;
use shylock_core::backend::{
    AcquireOutcome, AcquireRequest, AsyncBackend, InspectRequest, ReleaseOutcome, ReleaseRequest,
    RenewOutcome, RenewRequest, SyncBackend,
};
use shylock_core::{AsyncLock, Backend, FencingToken, Lock, LockName, OwnerId, Renewal};
use shylock_mongo::MongoBackend;

/// The names of the commands sent, in order.
#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<String>>>);

impl Log {
    fn handler(&self) -> EventHandler<CommandEvent> {
        let log = self.clone();
        EventHandler::callback(move |ev| {
            if let CommandEvent::Started(started) = ev {
                log.0
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(started.command_name.clone());
            }
        })
    }

    fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

fn options(log: &Log) -> mongodb::options::ClientOptions {
    let mut options = support::client_options(&support::server().uri(), Some(1));
    options.command_event_handler = Some(log.handler());
    options
}

fn deadline() -> Option<Instant> {
    Some(Instant::now() + Duration::from_secs(20))
}

const FAM: &str = "findAndModify";

// Shows: 1 command per uncontended acquire, per renewal, per release, and
// also 1 per contended (Busy) acquire; inspect is 1 `find`, server_time 1
// `hello`. Primitive level, async form.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_primitives_send_one_command_each() {
    let log = Log::default();
    let client = mongodb::Client::with_options(options(&log)).expect("client");
    let db = support::unique_db("count_async");
    let b = MongoBackend::create_with(&client, &db, support::options())
        .await
        .expect("create");
    let created = log.take();
    println!("create sent {created:?}");

    // Warm-up: connection, clock, one cycle on another name.
    let (warm, w) = (LockName::new("warm").expect("name"), OwnerId::random());
    let now = b.server_time(deadline()).await.expect("time");
    let req = AcquireRequest {
        name: &warm,
        owner: &w,
        lease: Duration::from_secs(10),
        now,
        deadline: deadline(),
    };
    assert!(matches!(
        b.try_acquire(req).await.expect("acquire"),
        AcquireOutcome::Acquired(_)
    ));
    let req = ReleaseRequest {
        name: &warm,
        owner: &w,
        token: FencingToken(0),
        now,
        deadline: deadline(),
    };
    assert_eq!(
        b.release(req).await.expect("release"),
        ReleaseOutcome::Released
    );
    log.take();

    let (n, me, other) = (
        LockName::new("counted").expect("name"),
        OwnerId::random(),
        OwnerId::random(),
    );
    let lease = Duration::from_secs(10);
    let req = AcquireRequest {
        name: &n,
        owner: &me,
        lease,
        now,
        deadline: deadline(),
    };
    assert!(matches!(
        b.try_acquire(req).await.expect("acquire"),
        AcquireOutcome::Acquired(_)
    ));
    assert_eq!(log.take(), [FAM], "uncontended acquire");

    let req = RenewRequest {
        name: &n,
        owner: &me,
        token: FencingToken(0),
        lease,
        now,
        deadline: deadline(),
    };
    assert!(matches!(
        b.renew(req).await.expect("renew"),
        RenewOutcome::Renewed { .. }
    ));
    assert_eq!(log.take(), [FAM], "renewal");

    let req = AcquireRequest {
        name: &n,
        owner: &other,
        lease,
        now,
        deadline: deadline(),
    };
    assert!(matches!(
        b.try_acquire(req).await.expect("acquire"),
        AcquireOutcome::Busy { .. }
    ));
    // Not granted: one `find` of the record tells a live holder (Busy, with
    // its expiry) from a record shylock did not write (issue 23.3).
    assert_eq!(log.take(), [FAM, "find"], "contended acquire");

    let req = InspectRequest {
        name: &n,
        now,
        deadline: deadline(),
    };
    assert!(b.inspect(req).await.expect("inspect").is_some());
    assert_eq!(log.take(), ["find"], "inspect");

    let req = ReleaseRequest {
        name: &n,
        owner: &me,
        token: FencingToken(0),
        now,
        deadline: deadline(),
    };
    assert_eq!(
        b.release(req).await.expect("release"),
        ReleaseOutcome::Released
    );
    assert_eq!(log.take(), [FAM], "release");

    b.server_time(deadline()).await.expect("time");
    assert_eq!(log.take(), ["hello"], "server time");
    println!(
        "async primitives: acquire 1, renew 1, busy acquire 1, release 1 ({FAM}); inspect 1 (find); server_time 1 (hello)"
    );
}

// Shows the same for the sync form.
#[test]
fn sync_primitives_send_one_command_each() {
    let log = Log::default();
    let client = mongodb::sync::Client::with_options(options(&log)).expect("client");
    let db = support::unique_db("count_sync");
    let b = shylock_mongo::sync::MongoBackend::create_with(&client, &db, support::options())
        .expect("create");
    log.take();

    let (warm, w) = (LockName::new("warm").expect("name"), OwnerId::random());
    let now = b.server_time(deadline()).expect("time");
    let req = AcquireRequest {
        name: &warm,
        owner: &w,
        lease: Duration::from_secs(10),
        now,
        deadline: deadline(),
    };
    assert!(matches!(
        b.try_acquire(req).expect("acquire"),
        AcquireOutcome::Acquired(_)
    ));
    let req = ReleaseRequest {
        name: &warm,
        owner: &w,
        token: FencingToken(0),
        now,
        deadline: deadline(),
    };
    assert_eq!(b.release(req).expect("release"), ReleaseOutcome::Released);
    log.take();

    let (n, me, other) = (
        LockName::new("counted").expect("name"),
        OwnerId::random(),
        OwnerId::random(),
    );
    let lease = Duration::from_secs(10);
    let req = AcquireRequest {
        name: &n,
        owner: &me,
        lease,
        now,
        deadline: deadline(),
    };
    assert!(matches!(
        b.try_acquire(req).expect("acquire"),
        AcquireOutcome::Acquired(_)
    ));
    assert_eq!(log.take(), [FAM], "uncontended acquire");
    let req = RenewRequest {
        name: &n,
        owner: &me,
        token: FencingToken(0),
        lease,
        now,
        deadline: deadline(),
    };
    assert!(matches!(
        b.renew(req).expect("renew"),
        RenewOutcome::Renewed { .. }
    ));
    assert_eq!(log.take(), [FAM], "renewal");
    let req = AcquireRequest {
        name: &n,
        owner: &other,
        lease,
        now,
        deadline: deadline(),
    };
    assert!(matches!(
        b.try_acquire(req).expect("acquire"),
        AcquireOutcome::Busy { .. }
    ));
    // Not granted: one `find` of the record tells a live holder (Busy, with
    // its expiry) from a record shylock did not write (issue 23.3).
    assert_eq!(log.take(), [FAM, "find"], "contended acquire");
    let req = ReleaseRequest {
        name: &n,
        owner: &me,
        token: FencingToken(0),
        now,
        deadline: deadline(),
    };
    assert_eq!(b.release(req).expect("release"), ReleaseOutcome::Released);
    assert_eq!(log.take(), [FAM], "release");
    println!("sync primitives: acquire 1, renew 1, busy acquire 1, release 1 ({FAM})");
}

fn count(cmds: &[String], name: &str) -> usize {
    cmds.iter().filter(|c| c.as_str() == name).count()
}

// Shows, through the core's AsyncLock (what a user runs): after warm-up,
// `acquire` of a free lock sends 1 command, each renewal 1, `release` 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_lock_sends_one_command_per_operation() {
    let log = Log::default();
    let client = mongodb::Client::with_options(options(&log)).expect("client");
    let db = support::unique_db("count_async_lock");
    let backend = Backend::from(
        MongoBackend::create_with(&client, &db, support::options())
            .await
            .expect("create"),
    );

    let warm = AsyncLock::with_backend("warm", &backend);
    warm.acquire()
        .await
        .expect("warm-up")
        .release()
        .await
        .expect("release");
    log.take();

    let lock = AsyncLock::with_backend("counted", &backend)
        .lease(Duration::from_secs(5))
        .renewal(Renewal::Every(Duration::from_millis(250)));
    let guard = lock.acquire().await.expect("acquire");
    let acquired = log.take();
    assert_eq!(acquired, [FAM], "acquire of a free lock");

    let holding = (*guard).clone();
    // At least three renewals, however slow a busy machine makes them.
    let until = std::time::Instant::now() + Duration::from_secs(30);
    while holding.renewals() < 3 && std::time::Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    guard.release().await.expect("release");
    let held = log.take();
    check_holding(&held, holding.renewals(), "AsyncLock", &acquired);
}

// Shows the same through the core's blocking Lock.
#[test]
fn sync_lock_sends_one_command_per_operation() {
    let log = Log::default();
    let client = mongodb::sync::Client::with_options(options(&log)).expect("client");
    let db = support::unique_db("count_sync_lock");
    let backend = Backend::from(
        shylock_mongo::sync::MongoBackend::create_with(&client, &db, support::options())
            .expect("create"),
    );

    let warm = Lock::with_backend("warm", &backend);
    warm.acquire().expect("warm-up").release().expect("release");
    log.take();

    let lock = Lock::with_backend("counted", &backend)
        .lease(Duration::from_secs(5))
        .renewal(Renewal::Every(Duration::from_millis(250)));
    let guard = lock.acquire().expect("acquire");
    let acquired = log.take();
    assert_eq!(acquired, [FAM], "acquire of a free lock");

    let holding = (*guard).clone();
    // At least three renewals, however slow a busy machine makes them.
    let until = std::time::Instant::now() + Duration::from_secs(30);
    while holding.renewals() < 3 && std::time::Instant::now() < until {
        std::thread::sleep(Duration::from_millis(50));
    }
    guard.release().expect("release");
    let held = log.take();
    check_holding(&held, holding.renewals(), "Lock", &acquired);
}

/// The commands from just after the acquisition to just after the release:
/// one per successful renewal plus one for the release, and possibly one
/// more renewal that was in flight when the release stopped the renewer (its
/// success is then not counted). Nothing else.
fn check_holding(held: &[String], renewals: u64, what: &str, acquired: &[String]) {
    assert!(
        renewals >= 3,
        "{what}: renewed only {renewals} times in 30 s with a 250 ms interval"
    );
    assert_eq!(
        count(held, FAM),
        held.len(),
        "{what}: only {FAM} while held: {held:?}"
    );
    let sent = held.len() as u64;
    assert!(
        sent == renewals + 1 || sent == renewals + 2,
        "{what}: {renewals} renewals + 1 release, but {sent} commands: {held:?}"
    );
    println!(
        "{what}: acquire sent {} command(s) {acquired:?}; {renewals} renewals + release sent {sent} {FAM} commands",
        acquired.len()
    );
}
