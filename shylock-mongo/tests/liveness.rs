//! Leases over time, through the core's locks: a renewed lease outlives many
//! lease lengths; a holder that stops renewing (renewal switched off, or its
//! process killed) loses the lock to a waiter within the lease plus a small
//! bound; and a measurement of the time from a holder's death to a waiter's
//! acquisition with the default 30 s lease.
//!
//! Server: DocumentDB started by the test support, or the real MongoDB at
//! `SHYLOCK_MONGODB_URI`. Holder and contender are separate lock handles (as
//! separate processes would have) over one pooled client, so their commands
//! run on connections of their own; the killed-holder tests use a child
//! process with its own client. (With `SHYLOCK_TEST_SERVER=ferretdb` the
//! in-process ones share ONE connection, FerretDB v1 not being atomic across
//! connections.)

mod support;

use std::io::{BufRead, BufReader, Write};

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use shylock_core::{AsyncLock, Backend, Lock, LossReason, Renewal};
use shylock_mongo::MongoBackend;

const CHILD_ENV: &str = "SHYLOCK_TEST_CHILD_HOLDER";

/// Two lock handles over one single-connection async client: the holder's
/// and the contender's (like two processes, but one connection).
fn two_async_handles(db: &str) -> (Backend, Backend) {
    let client = support::async_client(&support::server().uri(), true);
    let b = MongoBackend::new(&client, db, support::options()).expect("backend");
    (Backend::from(b.clone()), Backend::from(b))
}

// Shows (both servers): a 1 s lease renewed every third of it stays held
// for 5 s (5 lease lengths) while a contender keeps trying; the token never
// changes and the contender never gets the lock. (The lease is long enough
// for a renewal to survive a busy 2-core machine: a shorter one can be
// lost there, correctly, when a renewal takes most of the lease.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_lease_survives_many_lease_lengths() {
    let db = support::unique_db("survive_async");
    let client = support::async_client(&support::server().uri(), true);
    MongoBackend::create_with(&client, &db, support::options())
        .await
        .expect("create");
    let (holder, contender) = two_async_handles(&db);
    let lease = Duration::from_secs(1);
    let lock = AsyncLock::with_backend("long-job", &holder).lease(lease);
    let guard = lock.acquire().await.expect("acquire");
    let token = guard.token();
    let other = AsyncLock::with_backend("long-job", &contender).lease(lease);
    let started = Instant::now();
    let mut tries = 0;
    while started.elapsed() < lease * 5 {
        assert!(
            other.try_acquire().await.expect("try").is_none(),
            "contender got a held lock"
        );
        tries += 1;
        assert!(
            guard.is_held(),
            "lost after {:?}: {:?}",
            started.elapsed(),
            guard.lost_reason()
        );
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    assert_eq!(guard.token(), token);
    let renewals = guard.renewals();
    assert!(renewals >= 10, "renewed {renewals} times in 5 s");
    println!(
        "async: held {:?} with a {lease:?} lease: {renewals} renewals, {tries} failed contender tries",
        started.elapsed()
    );
    guard.release().await.expect("release");
    let next = other
        .try_acquire()
        .await
        .expect("try")
        .expect("free after release");
    assert!(next.token() > token);
    next.release().await.expect("release");
}

// Shows the same for the blocking Lock over the sync backend.
#[test]
fn sync_lease_survives_many_lease_lengths() {
    let db = support::unique_db("survive_sync");
    let client = support::sync_client(&support::server().uri(), true);
    let b = shylock_mongo::sync::MongoBackend::create_with(&client, &db, support::options())
        .expect("create");
    let (holder, contender) = (Backend::from(b.clone()), Backend::from(b));
    let lease = Duration::from_secs(1);
    let guard = Lock::with_backend("long-job", &holder)
        .lease(lease)
        .acquire()
        .expect("acquire");
    let token = guard.token();
    let other = Lock::with_backend("long-job", &contender).lease(lease);
    let started = Instant::now();
    while started.elapsed() < lease * 5 {
        assert!(
            other.try_acquire().expect("try").is_none(),
            "contender got a held lock"
        );
        assert!(
            guard.is_held(),
            "lost after {:?}: {:?}",
            started.elapsed(),
            guard.lost_reason()
        );
        std::thread::sleep(Duration::from_millis(40));
    }
    assert_eq!(guard.token(), token);
    let renewals = guard.renewals();
    assert!(renewals >= 10, "renewed {renewals} times in 5 s");
    println!(
        "sync: held {:?} with a {lease:?} lease: {renewals} renewals",
        started.elapsed()
    );
    guard.release().expect("release");
}

// Shows (both servers): a holder with renewal switched off loses the lock
// when its lease ends: a waiter that started right after the grant gets it
// no earlier than the lease (on the server's clock) and within lease + 3 s
// (a bound that holds on a busy machine);
// the old guard reports the loss (Expired).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn holder_without_renewal_loses_to_a_waiter() {
    let db = support::unique_db("no_renewal");
    let (holder, waiter) = two_async_handles(&db);
    let lease = Duration::from_millis(1500);
    let guard = AsyncLock::with_backend("unrenewed", &holder)
        .lease(lease)
        .renewal(Renewal::Off)
        .acquire()
        .await
        .expect("acquire");
    let granted = Instant::now();
    let expires_at = guard.expires_at();
    let next = AsyncLock::with_backend("unrenewed", &waiter)
        .lease(lease)
        .timeout(lease * 4)
        .acquire()
        .await
        .expect("the waiter gets the lock");
    let waited = granted.elapsed();
    let rec = next.expires_at();
    assert!(next.token() > guard.token());
    // Its grant happened at or after the old expiry on the server's clock.
    assert!(
        rec.saturating_sub(lease) >= expires_at,
        "granted at {} < old expiry {expires_at}",
        rec.saturating_sub(lease)
    );
    assert!(
        waited <= lease + Duration::from_secs(3),
        "waited {waited:?} for a {lease:?} lease"
    );
    assert!(!guard.is_held());
    assert_eq!(guard.lost_reason(), Some(LossReason::Expired));
    println!("renewal off: waiter got the lock {waited:?} after the grant (lease {lease:?})");
    assert!(
        guard.release().await.is_err(),
        "releasing a lost lease says so"
    );
    next.release().await.expect("release");
}

/// A holder in a child process (this test binary, re-run for the calling
/// test alone with `SHYLOCK_TEST_CHILD_HOLDER` set, which makes that test play the
/// holder: see [`child_holder`]), killed by the test.
struct ChildHolder {
    child: Child,
    token: u64,
}

impl ChildHolder {
    fn spawn(test: &str, db: &str, name: &str, lease: Option<Duration>) -> ChildHolder {
        let exe = std::env::current_exe().expect("test binary path");
        let mut child = Command::new(exe)
            .args(["--exact", test, "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, "1")
            .env("SHYLOCK_TEST_CHILD_URI", support::server().uri())
            .env("SHYLOCK_TEST_CHILD_DB", db)
            .env("SHYLOCK_TEST_CHILD_NAME", name)
            .env(
                "SHYLOCK_TEST_CHILD_LEASE_MS",
                lease.map(|l| l.as_millis().to_string()).unwrap_or_default(),
            )
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn the child holder");
        // Read the child's output on a thread, so that a child that never
        // says HELD fails the test after a minute instead of hanging it.
        // (The test harness prints `test <name> ... ` before the
        // child's own output, on the same line.)
        let stdout = child.stdout.take().expect("child stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let started = Instant::now();
        let token = loop {
            let left = Duration::from_secs(60).saturating_sub(started.elapsed());
            let line = rx.recv_timeout(left).unwrap_or_else(|e| {
                panic!("the child holder did not report holding the lock: {e}")
            });
            if let Some(at) = line.find("HELD ") {
                break line[at + 5..].trim().parse::<u64>().expect("token");
            }
        };
        ChildHolder { child, token }
    }

    /// SIGKILL: no release, no further renewal.
    fn kill(&mut self) {
        self.child.kill().expect("kill the child");
        self.child.wait().expect("reap the child");
    }
}

impl Drop for ChildHolder {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether this process is the child of a killed-holder test.
fn is_child() -> bool {
    std::env::var_os(CHILD_ENV).is_some()
}

/// The body of the child process of the killed-holder tests (each runs it
/// first when [`is_child`], on a thread of its own, away from the test's
/// runtime). Holds the lock (renewed, blocking API over the sync backend),
/// prints `HELD <token>`, and waits to be killed; exits if its stdin closes
/// (the parent died).
fn child_holder() {
    let var = |k: &str| std::env::var(k).unwrap_or_else(|_| panic!("{k} not set"));
    let client = support::sync_client(&var("SHYLOCK_TEST_CHILD_URI"), true);
    let backend = shylock_mongo::sync::MongoBackend::new(
        &client,
        &var("SHYLOCK_TEST_CHILD_DB"),
        support::options(),
    )
    .expect("backend");
    let mut lock = Lock::with_backend(var("SHYLOCK_TEST_CHILD_NAME"), &Backend::from(backend));
    if let Ok(ms) = var("SHYLOCK_TEST_CHILD_LEASE_MS").parse::<u64>() {
        lock = lock.lease(Duration::from_millis(ms));
    }
    let guard = lock.acquire().expect("child acquire");
    println!("HELD {}", guard.token());
    std::io::stdout().flush().expect("flush");
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
    // The parent is gone: leave without releasing (the lease will expire).
    std::process::exit(0);
}

/// What [`death_to_acquisition`] measured.
struct Death {
    /// From the kill to the waiter's acquisition.
    took: Duration,
    /// The lease in force.
    lease: Duration,
    /// What was left of the child's lease at the kill (its record's expiry
    /// less the server time, read just before the kill).
    left_at_kill: Duration,
}

/// Kill a child holder with lease `lease` (None: the default 30 s) after
/// `pause`, and measure how long a waiter in this process takes to get the
/// lock.
async fn death_to_acquisition(
    parent_test: &str,
    test: &str,
    lease: Option<Duration>,
    pause: Duration,
) -> Death {
    let db = support::unique_db(test);
    let client = support::async_client(&support::server().uri(), true);
    let raw = MongoBackend::create_with(&client, &db, support::options())
        .await
        .expect("create");
    let waiter_backend = Backend::from(raw.clone());
    let mut holder = ChildHolder::spawn(parent_test, &db, "job", lease);
    let mut waiter = AsyncLock::with_backend("job", &waiter_backend);
    if let Some(lease) = lease {
        waiter = waiter.lease(lease);
    }
    let effective = waiter.lock_options().lease;
    // While the child lives and renews, nobody else gets the lock.
    assert!(
        waiter.try_acquire().await.expect("try").is_none(),
        "the child holds it"
    );
    tokio::time::sleep(pause).await;
    assert!(
        waiter.try_acquire().await.expect("try").is_none(),
        "the child still holds it"
    );
    let record = waiter
        .inspect()
        .await
        .expect("inspect")
        .expect("held by the child");
    assert_eq!(record.token.get(), holder.token);
    let server_now = shylock_core::AsyncBackend::server_time(&raw, None)
        .await
        .expect("server time");
    let left_at_kill = record.expires_at.since(server_now);

    holder.kill();
    let killed = Instant::now();
    let guard = waiter
        .timeout(effective + Duration::from_secs(10))
        .acquire()
        .await
        .expect("the waiter gets the lock after the holder died");
    let took = killed.elapsed();
    assert!(guard.token().get() > holder.token);
    guard.release().await.expect("release");
    Death {
        took,
        lease: effective,
        left_at_kill,
    }
}

// Shows (both servers): a holder process killed with SIGKILL (2 s lease,
// renewed every 2/3 s until then) loses the lock to a waiter within the
// lease + 3 s of its death.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_holder_loses_to_a_waiter_within_the_lease() {
    if is_child() {
        return std::thread::spawn(child_holder).join().expect("the holder");
    }
    let d = death_to_acquisition(
        "killed_holder_loses_to_a_waiter_within_the_lease",
        "killed_short",
        Some(Duration::from_secs(2)),
        Duration::from_millis(900),
    )
    .await;
    println!(
        "killed holder, lease {:?}: waiter acquired {:?} after the kill ({:?} of the lease were left)",
        d.lease, d.took, d.left_at_kill
    );
    assert!(
        d.took <= d.lease + Duration::from_secs(3),
        "{:?} > lease {:?} + 1 s",
        d.took,
        d.lease
    );
}

// Measures (both servers): the time from a holder's death (SIGKILL) to a
// waiter's acquisition with the default lease (30 s, renewed every 10 s):
// between 20 s and 30 s plus a poll interval, depending on when the last
// renewal happened. Printed; asserted only loosely (at most lease + 2 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn death_to_acquisition_with_the_default_lease() {
    if is_child() {
        return std::thread::spawn(child_holder).join().expect("the holder");
    }
    let d = death_to_acquisition(
        "death_to_acquisition_with_the_default_lease",
        "killed_default",
        None,
        Duration::from_millis(4000),
    )
    .await;
    println!(
        "MEASURED death -> acquisition with the default lease {:?}: {:?}; {:?} of the lease were \
         left at the kill, so the waiter got it {:?} after the lease ended",
        d.lease,
        d.took,
        d.left_at_kill,
        d.took.saturating_sub(d.left_at_kill)
    );
    assert!(d.took <= d.lease + Duration::from_secs(2), "{:?}", d.took);
}
