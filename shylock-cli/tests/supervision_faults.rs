//! `shylock run` as a supervisor under faults (issue 22): many runs of ONE
//! lock name from 4 concurrent loops, against DocumentDB through the
//! testkit's proxy, while the server is paused (blackholed) for longer than
//! the lease a few times and some supervisors get SIGTERM or SIGINT.
//!
//! Each command is this test binary run again (the `supervised_command`
//! test, with `SUPERVISION_HELPER_LOG` set): it logs `start`, a `tick` every
//! 20 ms and `end`, each with its `SHYLOCK_FENCING_TOKEN` and the time on
//! `CLOCK_MONOTONIC` (one clock for every process of the machine). Commands
//! last 50–600 ms; some ignore SIGTERM (`trap '' TERM`, inherited across
//! `exec`), some fork a background child that logs too (same token). At the
//! end no two tokens' spans (first `start` to last line: the last `tick` of
//! a command that was killed) may overlap, and tokens rise in start order.
//!
//! In CI it makes 40 runs (about 30–60 s). Long mode:
//! `SHYLOCK_SUPERVISION_RUNS=200 cargo test -p shylock-cli --test
//! supervision_faults` (any number of runs; the pauses go on until the runs
//! are done).

mod support;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, kill_process};
use rustix::time::{ClockId, clock_gettime};
use shylock_testkit::proxy::{Mode, Proxy};
use support::*;

const HELPER_LOG: &str = "SUPERVISION_HELPER_LOG";
const HELPER_MS: &str = "SUPERVISION_HELPER_MS";
const LOOPS: usize = 4;
const LEASE: &str = "3s";
const KILL_AFTER: &str = "1s";
/// Longer than the lease: the holder's renewals stall past its end.
const PAUSE: Duration = Duration::from_millis(4_500);

fn monotonic_ns() -> u128 {
    let t = clock_gettime(ClockId::Monotonic);
    u128::try_from(t.tv_sec).expect("a time") * 1_000_000_000
        + u128::try_from(t.tv_nsec).expect("a time")
}

/// The command run under `shylock` (a no-op in an ordinary test run): logs
/// its start, a tick every 20 ms and its end, with its fencing token.
#[test]
fn supervised_command() {
    let Some(log) = std::env::var_os(HELPER_LOG) else {
        return;
    };
    let token = std::env::var("SHYLOCK_FENCING_TOKEN").expect("a fencing token");
    let ms: u64 = std::env::var(HELPER_MS)
        .expect("a duration")
        .parse()
        .expect("a duration");
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(log)
        .expect("the log");
    // One write per line on an O_APPEND file: lines never interleave.
    let mut line = |what: &str| {
        let text = format!("{what} {token} {} {}\n", monotonic_ns(), std::process::id());
        file.write_all(text.as_bytes()).expect("write the log");
    };
    line("start");
    let until = Instant::now() + Duration::from_millis(ms);
    while Instant::now() < until {
        std::thread::sleep(Duration::from_millis(20));
        line("tick");
    }
    line("end");
    std::process::exit(0);
}

/// A small xorshift generator (no dependency), seeded per loop.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// The shell command for one run: this binary as the command, maybe
/// ignoring SIGTERM, maybe with a background child.
fn script(rng: &mut Rng, exe: &Path) -> (String, bool, bool) {
    let ignore_term = rng.below(4) == 0;
    let background = rng.below(4) == 0;
    let helper = format!(
        "'{}' supervised_command --exact --nocapture --test-threads=1",
        exe.display()
    );
    let mut text = String::new();
    if ignore_term {
        text.push_str("trap '' TERM; ");
    }
    if background {
        let ms = 50 + rng.below(551);
        text.push_str(&format!("{HELPER_MS}={ms} {helper} & "));
    }
    let ms = 50 + rng.below(551);
    text.push_str(&format!("{HELPER_MS}={ms} exec {helper}"));
    (text, ignore_term, background)
}

#[derive(Default)]
struct Tally {
    codes: BTreeMap<i32, u32>,
    signalled: u32,
}

fn one_loop(
    runs: usize,
    seed: u64,
    uri: &str,
    db: &str,
    name: &str,
    log: &Path,
    tally: &Mutex<Tally>,
) {
    let exe = std::env::current_exe().expect("the test binary");
    let mut rng = Rng(seed);
    for _ in 0..runs {
        let (text, _, _) = script(&mut rng, &exe);
        let mut cmd = shylock();
        cmd.arg("run")
            .args(mongo_args(uri, db))
            .args([
                "--lease",
                LEASE,
                "--kill-after",
                KILL_AFTER,
                "--timeout",
                "20s",
                "-q",
            ])
            .arg(name)
            .args(["--", "sh", "-c", &text])
            .env(HELPER_LOG, log)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut child = cmd.spawn().expect("start shylock");
        let signal = match rng.below(8) {
            0 => Some(Signal::TERM),
            1 => Some(Signal::INT),
            _ => None,
        };
        if let Some(signal) = signal {
            std::thread::sleep(Duration::from_millis(100 + rng.below(600)));
            let pid = Pid::from_raw(i32::try_from(child.id()).expect("a pid")).expect("a pid");
            let _ = kill_process(pid, signal);
        }
        let status = wait_for_exit(&mut child, Duration::from_secs(60));
        let mut tally = tally.lock().expect("the tally");
        *tally.codes.entry(status.code().unwrap_or(-1)).or_default() += 1;
        tally.signalled += u32::from(signal.is_some());
    }
}

/// One span per fencing token: its first start, its last line (end, or the
/// last tick of a command that was killed).
fn spans(log: &Path) -> Vec<(u64, u128, u128)> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let mut by_token: BTreeMap<u64, (Option<u128>, u128)> = BTreeMap::new();
    for line in text.lines() {
        let mut parts = line.split(' ');
        let what = parts.next().expect("a kind");
        let token: u64 = parts.next().expect("a token").parse().expect("a token");
        let ns: u128 = parts.next().expect("a time").parse().expect("a time");
        let entry = by_token.entry(token).or_insert((None, 0));
        if what == "start" {
            entry.0 = Some(entry.0.map_or(ns, |s| s.min(ns)));
        }
        entry.1 = entry.1.max(ns);
    }
    let mut spans: Vec<(u64, u128, u128)> = by_token
        .into_iter()
        .map(|(token, (start, last))| (token, start.expect("a start line"), last))
        .collect();
    spans.sort_by_key(|&(_, start, _)| start);
    spans
}

#[test]
fn no_two_commands_overlap_under_pauses_and_signals() {
    let runs: usize = std::env::var("SHYLOCK_SUPERVISION_RUNS")
        .ok()
        .map(|v| v.parse().expect("SHYLOCK_SUPERVISION_RUNS: a number"))
        .unwrap_or(40);
    let server = server();
    let db = unique("faults");
    let name = unique("job");
    let dir = tempfile::tempdir().expect("tempdir");
    let log: PathBuf = dir.path().join("log");
    let proxy = Proxy::start(server.addr(), Mode::PassThrough).expect("the proxy");
    let uri = via(&server.uri(), proxy.addr());
    let tally = Mutex::new(Tally::default());
    let done = Arc::new(AtomicBool::new(false));
    let pauses = AtomicU64::new(0);
    let started = Instant::now();
    let seed = u64::try_from(monotonic_ns() % u128::from(u64::MAX)).expect("a seed") | 1;
    eprintln!("supervision_faults: {runs} runs, seed {seed}");

    std::thread::scope(|scope| {
        // The faults: a pause longer than the lease every few seconds, at
        // least 3 times, until the runs are done.
        let faults = scope.spawn(|| {
            let mut rng = Rng(seed ^ 0x9e37_79b9_7f4a_7c15);
            loop {
                let wait = Instant::now() + Duration::from_millis(2_000 + rng.below(3_000));
                while Instant::now() < wait {
                    if done.load(Ordering::Relaxed) {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
                proxy.blackhole(PAUSE);
                pauses.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(PAUSE);
            }
        });
        let loops: Vec<_> = (0..LOOPS)
            .map(|i| {
                let share = runs / LOOPS + usize::from(i < runs % LOOPS);
                let (uri, db, name, log, tally) = (&uri, &db, &name, &log, &tally);
                let seed = seed.wrapping_mul(u64::try_from(i).expect("i") + 3) | 1;
                scope.spawn(move || one_loop(share, seed, uri, db, name, log, tally))
            })
            .collect();
        for handle in loops {
            handle.join().expect("a loop");
        }
        // At least 3 pauses, even if the runs were quick.
        while pauses.load(Ordering::Relaxed) < 3 {
            std::thread::sleep(Duration::from_millis(50));
        }
        done.store(true, Ordering::Relaxed);
        faults.join().expect("the faults");
    });
    proxy.clear_faults();
    // Background children of killed groups are dead (SIGKILL to the group);
    // a last moment for lines still being written.
    std::thread::sleep(Duration::from_millis(200));

    let spans = spans(&log);
    let tally = tally.into_inner().expect("the tally");
    eprintln!(
        "supervision_faults: {} commands started, exit codes {:?}, {} supervisors signalled, {} pauses, {:?}",
        spans.len(),
        tally.codes,
        tally.signalled,
        pauses.load(Ordering::Relaxed),
        started.elapsed()
    );
    assert!(spans.len() >= runs / 4, "too few commands ran: {spans:?}");
    for pair in spans.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        assert!(
            b.1 > a.2,
            "token {} started {} ns before token {} was last seen alive",
            b.0,
            a.2 - b.1,
            a.0
        );
        assert!(
            b.0 > a.0,
            "tokens not rising in start order: {a:?} then {b:?}"
        );
    }
}
