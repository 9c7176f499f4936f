//! Leader election on the memory backend, both forms: one leader at a
//! time, terms that rise, observers that see every leader, a crashed
//! leader replaced after its lease, and the loss signal.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use shylock_core::{
    AsyncElection, Backend, Election, FencingToken, Leader, LossReason, MemoryBackend, Renewal,
};

/// What the observers have seen, one list per observer.
type Seen = Arc<Mutex<Vec<Vec<Option<Leader>>>>>;

fn seen_by_all(seen: &Seen, term: FencingToken) -> bool {
    let seen = seen.lock().expect("seen");
    seen.iter().all(|one| {
        one.iter()
            .any(|s| s.as_ref().is_some_and(|l| l.term == term))
    })
}

/// Each observer's list: it starts with the state at its start, never
/// repeats a state, its terms rise, and it holds every term of `terms`.
fn check_observers(seen: &Seen, terms: &[FencingToken]) {
    for (i, one) in seen.lock().expect("seen").iter().enumerate() {
        let leaders: Vec<FencingToken> = one.iter().flatten().map(|l| l.term).collect();
        assert!(
            leaders.windows(2).all(|w| w[0] < w[1]),
            "observer {i}: terms rise: {leaders:?}"
        );
        for term in terms {
            assert!(
                leaders.contains(term),
                "observer {i} missed term {term}: {leaders:?}"
            );
        }
        assert!(
            one.windows(2).all(|w| w[0] != w[1]),
            "observer {i}: no state repeated: {one:?}"
        );
    }
}

const CAMPAIGNERS: usize = 3;
const TERMS_EACH: usize = 3;
const OBSERVERS: usize = 2;

#[test]
fn blocking_one_leader_at_a_time_and_every_observer_sees_every_leader() {
    let backend = Backend::from(MemoryBackend::new());
    let election = Election::with_backend("election-blocking", &backend)
        .lease(Duration::from_secs(10))
        .poll_interval(Duration::from_millis(20));
    let seen: Seen = Arc::new(Mutex::new(vec![Vec::new(); OBSERVERS]));
    let done = Arc::new(AtomicUsize::new(0));
    let mut observers = Vec::new();
    for i in 0..OBSERVERS {
        let mut changes = election.observe().expect("observe");
        let (seen, done) = (Arc::clone(&seen), Arc::clone(&done));
        observers.push(std::thread::spawn(move || {
            while done.load(Ordering::SeqCst) < CAMPAIGNERS {
                let change = changes.next().expect("never ends").expect("read");
                seen.lock().expect("seen")[i].push(change);
            }
        }));
    }
    let leaders_now = Arc::new(AtomicUsize::new(0));
    let terms = Arc::new(Mutex::new(Vec::new()));
    let campaigners: Vec<_> = (0..CAMPAIGNERS)
        .map(|_| {
            let election = election.clone();
            let (seen, done, leaders_now, terms) = (
                Arc::clone(&seen),
                Arc::clone(&done),
                Arc::clone(&leaders_now),
                Arc::clone(&terms),
            );
            std::thread::spawn(move || {
                for _ in 0..TERMS_EACH {
                    let leadership = election.campaign().expect("campaign");
                    assert_eq!(leaders_now.fetch_add(1, Ordering::SeqCst), 0, "two leaders");
                    terms.lock().expect("terms").push(leadership.term());
                    let end = Instant::now() + Duration::from_secs(60);
                    while !seen_by_all(&seen, leadership.term()) {
                        assert!(Instant::now() < end, "the observers never saw this leader");
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    assert!(leadership.is_held());
                    leaders_now.fetch_sub(1, Ordering::SeqCst);
                    leadership.resign().expect("resign");
                }
                done.fetch_add(1, Ordering::SeqCst);
            })
        })
        .collect();
    for c in campaigners {
        c.join().expect("campaigner");
    }
    // Wake the observers for their last item: one more leadership.
    let last = election.campaign().expect("last campaign");
    let terms = terms.lock().expect("terms").clone();
    assert_eq!(terms.len(), CAMPAIGNERS * TERMS_EACH);
    for o in observers {
        o.join().expect("observer");
    }
    drop(last);
    check_observers(&seen, &terms);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_one_leader_at_a_time_and_every_observer_sees_every_leader() {
    let backend = Backend::from(MemoryBackend::new());
    let election = AsyncElection::with_backend("election-async", &backend)
        .lease(Duration::from_secs(10))
        .poll_interval(Duration::from_millis(20));
    let seen: Seen = Arc::new(Mutex::new(vec![Vec::new(); OBSERVERS]));
    let mut observers = Vec::new();
    for i in 0..OBSERVERS {
        let mut changes = election.observe().expect("observe");
        let seen = Arc::clone(&seen);
        observers.push(tokio::spawn(async move {
            loop {
                let change = changes.next().await.expect("read");
                seen.lock().expect("seen")[i].push(change);
            }
        }));
    }
    let leaders_now = Arc::new(AtomicUsize::new(0));
    let terms = Arc::new(Mutex::new(Vec::new()));
    let campaigners: Vec<_> = (0..CAMPAIGNERS)
        .map(|_| {
            let election = election.clone();
            let (seen, leaders_now, terms) = (
                Arc::clone(&seen),
                Arc::clone(&leaders_now),
                Arc::clone(&terms),
            );
            tokio::spawn(async move {
                for _ in 0..TERMS_EACH {
                    let leadership = election.campaign().await.expect("campaign");
                    assert_eq!(leaders_now.fetch_add(1, Ordering::SeqCst), 0, "two leaders");
                    terms.lock().expect("terms").push(leadership.term());
                    let end = Instant::now() + Duration::from_secs(60);
                    while !seen_by_all(&seen, leadership.term()) {
                        assert!(Instant::now() < end, "the observers never saw this leader");
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    leaders_now.fetch_sub(1, Ordering::SeqCst);
                    leadership.resign().await.expect("resign");
                }
            })
        })
        .collect();
    for c in campaigners {
        c.await.expect("campaigner");
    }
    for o in observers {
        o.abort();
    }
    let terms = terms.lock().expect("terms").clone();
    assert_eq!(terms.len(), CAMPAIGNERS * TERMS_EACH);
    check_observers(&seen, &terms);
}

/// A leader that stops renewing (as a crashed one) is replaced once its
/// lease ends; the observer sees the new leader within the lease and a
/// poll interval (measured, with a loaded machine's margin).
#[test]
fn a_crashed_leader_is_replaced_after_its_lease() {
    let backend = Backend::from(MemoryBackend::new());
    let lease = Duration::from_millis(600);
    let poll = Duration::from_millis(50);
    let crashed = Election::with_backend("election-crash", &backend)
        .lease(lease)
        .renewal(Renewal::Off);
    let election = Election::with_backend("election-crash", &backend)
        .lease(lease)
        .poll_interval(poll);
    let mut changes = election.observe().expect("observe");
    assert_eq!(changes.next().expect("item").expect("read"), None);
    let first = crashed.campaign().expect("campaign");
    let first_term = first.term();
    let crashed_at = Instant::now();
    // The crash: nothing renews it, nothing releases it.
    std::mem::forget(first);
    assert_eq!(
        changes.next().expect("item").expect("read").map(|l| l.term),
        Some(first_term)
    );
    // Kept until the end: dropped, it would resign at once.
    let next = std::thread::spawn(move || election.campaign().expect("campaign"));
    // The next state seen: a vacancy (the lease ended) or the new leader.
    let mut seen = changes.next().expect("item").expect("read");
    if seen.is_none() {
        seen = changes.next().expect("item").expect("read");
    }
    let handed_over = crashed_at.elapsed();
    let second = next.join().expect("campaigner");
    let second_term = second.term();
    assert_eq!(seen.map(|l| l.term), Some(second_term));
    assert!(second_term > first_term);
    eprintln!(
        "leadership handed over and seen after {handed_over:?} (lease {lease:?}, poll {poll:?})"
    );
    assert!(handed_over >= lease - Duration::from_millis(100));
    assert!(
        handed_over < lease + poll + Duration::from_secs(5),
        "{handed_over:?}"
    );
}

#[test]
fn blocking_lost_reports_the_end_of_a_leadership() {
    let backend = Backend::from(MemoryBackend::new());
    let leadership = Election::with_backend("election-lost", &backend)
        .lease(Duration::from_millis(200))
        .renewal(Renewal::Off)
        .campaign()
        .expect("campaign");
    assert_eq!(
        leadership
            .lost_timeout(Duration::from_millis(10))
            .expect("wait"),
        None
    );
    assert_eq!(leadership.lost().expect("wait"), LossReason::Expired);
    assert!(
        leadership.resign().is_err(),
        "resigning a lost leadership says so"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn async_lost_reports_the_end_of_a_leadership_and_try_campaign_sees_the_leader() {
    let backend = Backend::from(MemoryBackend::new());
    let election = AsyncElection::with_backend("election-lost-async", &backend)
        .lease(Duration::from_millis(200))
        .renewal(Renewal::Off);
    let leadership = election.campaign().await.expect("campaign");
    assert!(election.try_campaign().await.expect("try").is_none());
    let leader = election.leader().await.expect("leader").expect("a leader");
    assert_eq!(leader.term, leadership.term());
    assert_eq!(&leader.owner, leadership.owner());
    assert_eq!(leadership.lost().await, LossReason::Expired);
    // The holder counts its lease as ended a safety margin before the
    // backend does: the record is vacant soon after.
    let end = Instant::now() + Duration::from_secs(10);
    while election.leader().await.expect("leader").is_some() {
        assert!(Instant::now() < end, "the record never became vacant");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let next = election.try_campaign().await.expect("try").expect("vacant");
    assert!(next.term() > leadership.term());
    next.resign().await.expect("resign");
}
