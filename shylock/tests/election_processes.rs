//! Leader election on real servers (DocumentDB, the ArangoDB emulator):
//! across three processes (issue 20), one leader at a time, every
//! observer sees every leader, and a `kill -9` of the leader hands the
//! leadership over within the lease and a second; and the async form in
//! one process.
//!
//! The three processes are this test binary run again with the test
//! `election_child` selected and `SHYLOCK_ELECTION_CHILD` set to the
//! backend's URL: each observes the election (printing `@@ SEE term time`),
//! and campaigns or resigns when told on its stdin (printing `@@ LEAD term
//! time`, `@@ RESIGNING time`). Times are the wall clock in milliseconds, the
//! same clock for every process of the machine.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use shylock::Election;
use shylock_arango_emulator::Emulator;

const NAME: &str = "election-three-processes";
const LEASE: Duration = Duration::from_secs(3);
const POLL: Duration = Duration::from_millis(100);
const CHILD_ENV: &str = "SHYLOCK_ELECTION_CHILD";

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The child: observe, and campaign or resign when told. Does nothing
/// unless run by the test below.
#[test]
fn election_child() {
    let Ok(url) = std::env::var(CHILD_ENV) else {
        return;
    };
    let backend = shylock::connect_blocking(&url).expect("connect");
    let election = Election::with_backend(NAME, &backend)
        .lease(LEASE)
        .poll_interval(POLL);
    let observer = election.observe().expect("observe");
    std::thread::spawn(move || {
        for change in observer {
            match change {
                Ok(Some(leader)) => println!("\n@@ SEE {} {}", leader.term, now_ms()),
                Ok(None) => println!("\n@@ SEE none {}", now_ms()),
                Err(error) => println!("\n@@ SEEERR {error}"),
            }
        }
    });
    let mut leadership = None;
    for line in std::io::stdin().lock().lines() {
        match line.expect("stdin").trim() {
            "campaign" => {
                let won = election.campaign().expect("campaign");
                println!("\n@@ LEAD {} {}", won.term(), now_ms());
                leadership = Some(won);
            }
            "resign" => {
                println!("\n@@ RESIGNING {}", now_ms());
                if let Some(won) = leadership.take() {
                    won.resign().expect("resign");
                }
            }
            _ => break,
        }
    }
}

/// One child process, and what it printed.
struct Proc {
    child: Child,
    stdin: ChildStdin,
    /// The terms its observer saw (`None`: vacant), in order.
    seen: Vec<Option<u64>>,
}

/// A line of a child: which one, and the line.
type Line = (usize, String);

struct Run {
    procs: Vec<Proc>,
    lines: Receiver<Line>,
    /// Every `LEAD`: child, term, time.
    leads: Vec<(usize, u64, u64)>,
    /// Every `RESIGNING`: child, time.
    resigns: Vec<(usize, u64)>,
}

impl Run {
    fn start(url: &str) -> Run {
        let exe = std::env::current_exe().expect("this test binary");
        let (tx, lines) = channel();
        let procs = (0..3)
            .map(|i| {
                let mut child = Command::new(&exe)
                    .args([
                        "--exact",
                        "election_child",
                        "--nocapture",
                        "--test-threads=1",
                    ])
                    .env(CHILD_ENV, url)
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .spawn()
                    .expect("spawn a child");
                let stdout = child.stdout.take().expect("stdout");
                let tx = tx.clone();
                std::thread::spawn(move || {
                    for line in BufReader::new(stdout).lines() {
                        let Ok(line) = line else { return };
                        if tx.send((i, line)).is_err() {
                            return;
                        }
                    }
                });
                Proc {
                    stdin: child.stdin.take().expect("stdin"),
                    child,
                    seen: Vec::new(),
                }
            })
            .collect();
        Run {
            procs,
            lines,
            leads: Vec::new(),
            resigns: Vec::new(),
        }
    }

    fn tell(&mut self, i: usize, what: &str) {
        writeln!(self.procs[i].stdin, "{what}").expect("tell a child");
    }

    /// Read the children's lines until `done` holds (at most `limit`).
    fn until(&mut self, what: &str, limit: Duration, done: impl Fn(&Run) -> bool) {
        let end = Instant::now() + limit;
        while !done(self) {
            let left = end.saturating_duration_since(Instant::now());
            let (i, line) = self
                .lines
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("never: {what} (leads {:?})", self.leads));
            if std::env::var_os("ELECTION_TRACE").is_some() {
                eprintln!("child {i}: {line}");
            }
            // The harness's own output may share the line: ours starts
            // with `@@`.
            let Some((_, ours)) = line.split_once("@@ ") else {
                continue;
            };
            let words: Vec<&str> = ours.split_whitespace().collect();
            let number = |k: usize| words.get(k).and_then(|w| w.parse::<u64>().ok());
            match words.first().copied() {
                Some("SEE") => self.procs[i].seen.push(number(1)),
                Some("LEAD") => {
                    self.leads
                        .push((i, number(1).expect("a term"), number(2).expect("a time")))
                }
                Some("RESIGNING") => self.resigns.push((i, number(1).expect("a time"))),
                Some("SEEERR") => eprintln!("child {i}: {line}"),
                _ => {}
            }
        }
    }

    fn saw(&self, i: usize, term: u64) -> bool {
        self.procs[i].seen.contains(&Some(term))
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        for p in &mut self.procs {
            let _ = p.child.kill();
            let _ = p.child.wait();
        }
    }
}

fn three_processes(url: &str) {
    let mut run = Run::start(url);
    let limit = Duration::from_secs(60);
    for i in 0..3 {
        run.tell(i, "campaign");
    }
    // The first leader, seen by every observer.
    run.until("a first leader", limit, |r| !r.leads.is_empty());
    let (first, t1, _) = run.leads[0];
    run.until("every observer sees the first leader", limit, |r| {
        (0..3).all(|i| r.saw(i, t1))
    });

    // It resigns: the next leader is elected after the resignation.
    run.tell(first, "resign");
    run.until("a second leader", limit, |r| r.leads.len() >= 2);
    let (second, t2, led_at) = run.leads[1];
    assert_ne!(second, first);
    assert!(t2 > t1, "terms rise: {t1} then {t2}");
    let resigned_at = run.resigns[0].1;
    assert!(
        led_at >= resigned_at,
        "one leader at a time: led at {led_at} before the resignation at {resigned_at}"
    );
    run.until("every observer sees the second leader", limit, |r| {
        (0..3).all(|i| r.saw(i, t2))
    });
    run.tell(first, "campaign");

    // `kill -9` of the leader: the next one leads within the lease and a
    // second.
    std::thread::sleep(Duration::from_millis(500));
    run.procs[second].child.kill().expect("kill -9");
    let killed_at = now_ms();
    let _ = run.procs[second].child.wait();
    run.until("a leader after the kill", limit, |r| r.leads.len() >= 3);
    let (third, t3, led_at) = run.leads[2];
    assert_ne!(third, second);
    assert!(t3 > t2, "terms rise: {t2} then {t3}");
    let handover = Duration::from_millis(led_at.saturating_sub(killed_at));
    eprintln!("handover after kill -9: {handover:?} (lease {LEASE:?})");
    assert!(
        handover <= LEASE + Duration::from_secs(1),
        "handover took {handover:?}"
    );
    let survivors: Vec<usize> = (0..3).filter(|i| *i != second).collect();
    run.until(
        "every surviving observer sees the third leader",
        limit,
        |r| survivors.iter().all(|i| r.saw(*i, t3)),
    );

    // Every observer saw every leader, in order, each once.
    for (i, p) in run.procs.iter().enumerate() {
        let terms: Vec<u64> = p.seen.iter().flatten().copied().collect();
        assert!(
            terms.windows(2).all(|w| w[0] < w[1]),
            "child {i}: {terms:?}"
        );
        let expected: &[u64] = if i == second {
            &[t1, t2]
        } else {
            &[t1, t2, t3]
        };
        for t in expected {
            assert!(terms.contains(t), "child {i} missed term {t}: {terms:?}");
        }
    }
}

#[test]
fn three_processes_on_the_arangodb_emulator() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    let emu = Emulator::start("locker", "elect-pw", &["locks"]);
    let url = format!(
        "{}/?shylock.database=locks&shylock.collection=election",
        emu.url().replace("http://", "http://locker:elect-pw@")
    );
    three_processes(&url);
}

#[test]
fn three_processes_on_documentdb() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    let server = shylock_testkit::documentdb::DocumentDb::start();
    let url = format!(
        "{}{}shylock.database=election_test&shylock.collection=election",
        server.uri(),
        if server.uri().contains('?') { '&' } else { '?' }
    );
    three_processes(&url);
}

/// The async form on both servers, in one process: a campaign, an
/// observer that sees it, the term that rises after a resignation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_election_on_both_servers() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    let emu = Emulator::start("locker", "elect-pw", &["locks"]);
    let arango = format!(
        "{}/?shylock.database=locks&shylock.collection=async_election",
        emu.url().replace("http://", "http://locker:elect-pw@")
    );
    let server = shylock_testkit::documentdb::DocumentDb::start();
    let mongo = format!(
        "{}{}shylock.database=election_test&shylock.collection=async_election",
        server.uri(),
        if server.uri().contains('?') { '&' } else { '?' }
    );
    for url in [arango, mongo] {
        let backend = shylock::connect(&url).await.expect("connect");
        let election = shylock::AsyncElection::with_backend("async-election", &backend)
            .lease(LEASE)
            .poll_interval(POLL);
        let mut changes = election.observe().expect("observe");
        assert_eq!(changes.next().await.expect("read"), None, "{url}");
        let first = election.campaign().await.expect("campaign");
        let seen = changes.next().await.expect("read").expect("a leader");
        assert_eq!(seen.term, first.term(), "{url}");
        assert_eq!(&seen.owner, first.owner(), "{url}");
        assert!(election.try_campaign().await.expect("try").is_none());
        let first_term = first.term();
        first.resign().await.expect("resign");
        assert_eq!(changes.next().await.expect("read"), None, "{url}");
        let second = election.campaign().await.expect("campaign");
        assert!(second.term() > first_term, "{url}");
        let seen = changes.next().await.expect("read").expect("a leader");
        assert_eq!(seen.term, second.term(), "{url}");
        second.resign().await.expect("resign");
    }
}
