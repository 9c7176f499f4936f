//! Scenarios A to D, and the child-process roles they use.
//!
//! A failed lock operation (acquire, release) is counted by kind in the
//! scenario's `errors` and the scenario goes on; only a failure to set up
//! (no connection, a child that dies) ends a scenario, with the reason. A
//! child releases every guard and awaits every task and every backend call
//! it started before it returns.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use shylock::{AsyncLock, Backend, Backoff, Error, Lock, LockGuard, LockOptions};

use crate::counting::{Counts, Snap};
use crate::errors::Errors;
use crate::targets::Target;
use crate::util::{BoxErr, R, Rng, cpu_secs, err, percentile, rss_bytes, threads, wall_ns};

/// The longest the benchmark waits for one acquisition: longer than the
/// default lease (30 s), so that a lock left behind by a failed release is
/// granted again after its expiry, and bounded, so that a backend that stops
/// answering makes counted errors instead of a benchmark that never ends.
pub const OP_LIMIT: Duration = Duration::from_secs(45);

/// After a failed operation, a loop pauses this long before the next one
/// (a backend that fails at once must not be hammered).
const ERROR_PAUSE: Duration = Duration::from_millis(10);

/// How long a child waits, before it returns, for backend calls that are
/// still running (releases the core started in the background); more than
/// the default release timeout (5 s).
const SETTLE_LIMIT: Duration = Duration::from_secs(15);

/// D: acquisitions and releases in flight at once, in both APIs: tasks
/// (async), threads (blocking, the calling thread among them), by default
/// (`--d-acquirers`). More than a few make FerretDB slower, not faster (its
/// SQLite storage serializes writes), and push its commands past their time
/// limits.
pub const D_THREADS: usize = 8;

/// D on `memory-slow`: acquisitions and releases in flight at once. With
/// 50 ms per call, [`D_THREADS`] would take 10000 / 8 × 50 ms = 63 s to
/// acquire 10000 locks (and as long to release them); 64 take about 8 s.
/// The blocking API's acquiring threads end before the window, so the
/// threads measured there are the steady state's.
pub const SLOW_D_ACQUIRERS: usize = 64;

/// Sizes and durations of the scenarios.
#[derive(Debug, Clone)]
pub struct Params {
    pub a_secs: f64,
    pub b_rounds: usize,
    pub hold_ms: f64,
    pub c_procs: usize,
    pub c_tasks: usize,
    pub c_secs: f64,
    pub d_locks: usize,
    pub d_secs: f64,
    /// D's acquisitions and releases in flight at once: tasks (async) or
    /// threads (blocking, ended before the window).
    pub d_acquirers: usize,
    /// The waiters' backoff in B and C.
    pub backoff: Backoff,
    /// Whether C's locks hand over in process (issue 21; default on).
    pub c_handoff: bool,
    /// C's tasks per process, if not `c_procs` × `c_tasks` (the lopsided
    /// variant: 4,1,1,1).
    pub c_shape: Option<Vec<usize>>,
}

/// C's lock name for a variant: one per variant, so that a lock left held
/// by one variant's last acquisitions (given up at the end of its window)
/// does not make the next one wait for its lease.
pub fn c_lock_name(handoff: bool, lopsided: bool) -> String {
    match (handoff, lopsided) {
        (true, false) => "bench-c".into(),
        (false, false) => "bench-c-off".into(),
        (true, true) => "bench-c-lopsided".into(),
        (false, true) => "bench-c-lopsided-off".into(),
    }
}

impl Params {
    fn waiting_options(&self) -> LockOptions {
        LockOptions::default().backoff(self.backoff)
    }

    /// C's tasks per process.
    pub fn c_shape(&self) -> Vec<usize> {
        self.c_shape
            .clone()
            .unwrap_or_else(|| vec![self.c_tasks; self.c_procs])
    }
}

/// C's options: the waiting options, handoff on or off.
pub fn c_options(backoff: Backoff, handoff: bool) -> LockOptions {
    let opts = LockOptions::default().backoff(backoff);
    if handoff {
        opts
    } else {
        opts.handoff(shylock::Handoff::off())
    }
}

pub fn backoff_arg(b: &Backoff) -> String {
    format!(
        "{},{},{}",
        b.initial.as_secs_f64() * 1000.0,
        b.max.as_secs_f64() * 1000.0,
        b.factor
    )
}

pub fn parse_backoff(s: &str) -> R<Backoff> {
    let v: Vec<f64> = s
        .split(',')
        .map(|x| x.trim().parse::<f64>())
        .collect::<Result<_, _>>()
        .map_err(|_| err(format!("--backoff {s:?}: want INITIAL_MS,MAX_MS,FACTOR")))?;
    let [initial, max, factor] = v[..] else {
        return Err(err(format!(
            "--backoff {s:?}: want INITIAL_MS,MAX_MS,FACTOR"
        )));
    };
    Ok(Backoff {
        initial: Duration::from_secs_f64(initial / 1000.0),
        max: Duration::from_secs_f64(max / 1000.0),
        factor,
    })
}

// ---------------------------------------------------------------- results

#[derive(Debug, Clone)]
pub struct AResult {
    pub cycles_per_s: f64,
    /// `try_acquire` calls per acquisition.
    pub per_acquire: f64,
    /// `release` calls per release.
    pub per_release: f64,
    /// All primitive calls (also renewals, probes) per cycle.
    pub per_cycle: f64,
    /// Commands the MongoDB driver's monitoring saw, per cycle.
    pub wire_per_cycle: Option<f64>,
    /// Failed acquires and releases (warm-up included).
    pub errors: Errors,
}

impl AResult {
    fn new(cycles: u64, elapsed: Duration, d: Snap, monitored: bool, errors: Errors) -> AResult {
        let n = cycles.max(1) as f64;
        AResult {
            cycles_per_s: cycles as f64 / elapsed.as_secs_f64(),
            per_acquire: d.acquire as f64 / n,
            per_release: d.release as f64 / n,
            per_cycle: d.total() as f64 / n,
            wire_per_cycle: monitored.then(|| d.wire as f64 / n),
            errors,
        }
    }
}

#[derive(Debug, Clone)]
pub struct BResult {
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// The waiter's `try_acquire` calls per handoff (its polls + the grant).
    pub waiter_calls: f64,
    /// The waiter's busy polls per second of waiting.
    pub polls_per_s: f64,
    /// In process: every backend call of the handle (the holder's release
    /// or hand-over, the waiter's acquire requests, clock reads) from the
    /// holder's grant to the waiter's, per handoff.
    pub commands_per_handoff: Option<f64>,
    /// In process: the p50 of the holder's `release` call (its hand-over,
    /// or its release), in ms: the first command after the hold, which on
    /// a server that idled meanwhile costs more than one right after
    /// another (the waiter's acquire, with handoff off).
    pub release_p50_ms: Option<f64>,
    /// Failed acquires and releases, of the holder and of the waiter.
    pub errors: Errors,
}

impl BResult {
    fn new(mut lat_ms: Vec<f64>, waiter_calls: u64, waited_s: f64, errors: Errors) -> BResult {
        lat_ms.sort_by(f64::total_cmp);
        let rounds = lat_ms.len();
        BResult {
            p50_ms: percentile(&lat_ms, 50.0),
            p99_ms: percentile(&lat_ms, 99.0),
            max_ms: lat_ms.last().copied().unwrap_or(f64::NAN),
            waiter_calls: waiter_calls as f64 / rounds.max(1) as f64,
            polls_per_s: waiter_calls.saturating_sub(rounds as u64) as f64 / waited_s,
            commands_per_handoff: None,
            release_p50_ms: None,
            errors,
        }
    }
}

#[derive(Debug, Clone)]
pub struct CResult {
    pub grants: usize,
    pub grants_per_s: f64,
    pub commands_per_grant: f64,
    pub wire_per_grant: Option<f64>,
    pub max_gap_ms: f64,
    pub min_task: usize,
    pub max_task: usize,
    /// Grants of the least and the most served process.
    pub min_proc: usize,
    pub max_proc: usize,
    /// The longest any task waited for one grant (ms).
    pub longest_wait_ms: f64,
    /// Grants handed over in process (issue 21).
    pub handed: usize,
    /// Grants per process, in process order.
    pub per_proc: Vec<usize>,
    /// Grants that began before the previous one's release was called.
    pub overlaps: usize,
    /// Fencing tokens handed out more than once (`usize::MAX`: no tokens).
    pub dup_tokens: usize,
    /// Releases that found the lock taken by somebody else.
    pub lost_on_release: usize,
    /// Failed acquires and releases (other than the releases above).
    pub errors: Errors,
}

/// One grant in scenario C.
#[derive(Debug, Clone, Copy)]
pub struct Grant {
    task: usize,
    proc_: usize,
    acq: i64,
    rel: i64,
    token: u64,
    /// From the acquire call to the grant (ns).
    wait: i64,
    handed: bool,
}

/// What the tasks of one process of C saw.
#[derive(Debug, Default)]
struct CTally {
    grants: Vec<Grant>,
    lost: usize,
    errors: Errors,
}

impl CTally {
    fn merge(&mut self, other: CTally) {
        self.grants.extend(other.grants);
        self.lost += other.lost;
        self.errors.merge(&other.errors);
    }
}

impl CResult {
    fn new(tally: CTally, counts: Snap, shape: &[usize], secs: f64, monitored: bool) -> CResult {
        let CTally {
            mut grants,
            lost: lost_on_release,
            errors,
        } = tally;
        grants.sort_by_key(|g| g.acq);
        let n = grants.len();
        let max_gap_ns = grants
            .windows(2)
            .map(|w| w[1].acq - w[0].acq)
            .max()
            .unwrap_or(0);
        let overlaps = grants.windows(2).filter(|w| w[1].acq < w[0].rel).count();
        let mut tokens: HashMap<u64, usize> = HashMap::new();
        for g in &grants {
            *tokens.entry(g.token).or_default() += 1;
        }
        let dup_tokens = tokens.values().filter(|&&c| c > 1).map(|c| c - 1).sum();
        let mut per_task = vec![0usize; shape.iter().sum()];
        let mut per_proc = vec![0usize; shape.len()];
        for g in &grants {
            if let Some(c) = per_task.get_mut(g.task) {
                *c += 1;
            }
            if let Some(c) = per_proc.get_mut(g.proc_) {
                *c += 1;
            }
        }
        let longest_wait = grants.iter().map(|g| g.wait).max().unwrap_or(0);
        let denom = n.max(1) as f64;
        CResult {
            grants: n,
            grants_per_s: n as f64 / secs,
            commands_per_grant: counts.total() as f64 / denom,
            wire_per_grant: monitored.then(|| counts.wire as f64 / denom),
            max_gap_ms: max_gap_ns as f64 / 1e6,
            min_task: per_task.iter().copied().min().unwrap_or(0),
            max_task: per_task.iter().copied().max().unwrap_or(0),
            min_proc: per_proc.iter().copied().min().unwrap_or(0),
            max_proc: per_proc.iter().copied().max().unwrap_or(0),
            longest_wait_ms: longest_wait as f64 / 1e6,
            handed: grants.iter().filter(|g| g.handed).count(),
            per_proc,
            overlaps,
            dup_tokens,
            lost_on_release,
            errors,
        }
    }
}

/// The API through which D holds its locks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    /// `AsyncLock` and `AsyncLockGuard`, on tokio tasks.
    Async,
    /// `Lock` and `LockGuard`, on threads, with no tokio runtime in the
    /// process.
    Blocking,
}

impl Form {
    pub const BOTH: [Form; 2] = [Form::Async, Form::Blocking];

    pub fn as_str(self) -> &'static str {
        match self {
            Form::Async => "async",
            Form::Blocking => "blocking",
        }
    }

    /// The child role that runs D in this form.
    pub fn role(self) -> &'static str {
        match self {
            Form::Async => "d-many",
            Form::Blocking => "d-many-sync",
        }
    }
}

#[derive(Debug, Clone)]
pub struct DResult {
    /// Locks asked for.
    pub locks: usize,
    /// Locks acquired (and held over the window).
    pub held: usize,
    pub acquire_s: f64,
    /// The window's length, and the renewal interval: a window shorter than
    /// the interval need not see any renewal.
    pub window_s: f64,
    pub interval_s: f64,
    pub renewals_per_s: f64,
    /// One renewal per held lock and renewal interval.
    pub expected_per_s: f64,
    /// RSS delta from before the first acquisition to after the last, per
    /// held lock.
    pub bytes_per_lock: f64,
    pub cpu_pct: f64,
    /// Threads of the process before the first acquisition.
    pub threads_before: usize,
    /// The most threads of the process seen while the locks were held
    /// (after the acquisitions and every second of the hold).
    pub threads_held: usize,
    pub held_at_end: usize,
    pub release_s: f64,
    /// Failed acquires and releases.
    pub errors: Errors,
}

impl DResult {
    /// One line for the child's report: `DRESULT key=value ...`.
    fn to_line(&self) -> String {
        format!(
            "DRESULT locks={} held={} acquire_s={} window_s={} interval_s={} renewals_per_s={} \
             expected_per_s={} bytes_per_lock={} cpu_pct={} threads_before={} threads_held={} \
             held_at_end={} release_s={}",
            self.locks,
            self.held,
            self.acquire_s,
            self.window_s,
            self.interval_s,
            self.renewals_per_s,
            self.expected_per_s,
            self.bytes_per_lock,
            self.cpu_pct,
            self.threads_before,
            self.threads_held,
            self.held_at_end,
            self.release_s
        )
    }

    /// Parse [`to_line`](Self::to_line)'s output and the `ERRORS` line.
    fn from_lines(line: &str, errors: &str) -> R<DResult> {
        let bad = || err(format!("bad line from the D child: {line:?}"));
        let mut v = HashMap::new();
        for item in line
            .strip_prefix("DRESULT")
            .ok_or_else(bad)?
            .split_whitespace()
        {
            let (k, x) = item.split_once('=').ok_or_else(bad)?;
            v.insert(k, x.parse::<f64>().map_err(|_| bad())?);
        }
        let get = |k: &str| v.get(k).copied().ok_or_else(bad);
        Ok(DResult {
            locks: get("locks")? as usize,
            held: get("held")? as usize,
            acquire_s: get("acquire_s")?,
            window_s: get("window_s")?,
            interval_s: get("interval_s")?,
            renewals_per_s: get("renewals_per_s")?,
            expected_per_s: get("expected_per_s")?,
            bytes_per_lock: get("bytes_per_lock")?,
            cpu_pct: get("cpu_pct")?,
            threads_before: get("threads_before")? as usize,
            threads_held: get("threads_held")? as usize,
            held_at_end: get("held_at_end")? as usize,
            release_s: get("release_s")?,
            errors: Errors::from_line(errors)
                .ok_or_else(|| err(format!("bad line from the D child: {errors:?}")))?,
        })
    }
}

// ---------------------------------------------------------------- cycles

/// One acquire + release on the blocking API; failures counted in
/// `errors`. Whether both succeeded.
fn sync_cycle(lock: &Lock, errors: &mut Errors) -> bool {
    match lock.acquire_timeout(OP_LIMIT) {
        Ok(guard) => match guard.release() {
            Ok(()) => true,
            Err(e) => {
                errors.add("release", &e);
                false
            }
        },
        Err(e) => {
            errors.add("acquire", &e);
            false
        }
    }
}

/// [`sync_cycle`] on the async API.
async fn async_cycle(lock: &AsyncLock, errors: &mut Errors) -> bool {
    match lock.acquire_timeout(OP_LIMIT).await {
        Ok(guard) => match guard.release().await {
            Ok(()) => true,
            Err(e) => {
                errors.add("release", &e);
                false
            }
        },
        Err(e) => {
            errors.add("acquire", &e);
            false
        }
    }
}

// ---------------------------------------------------------------- A

/// A, blocking API: acquire + release on one thread. Call outside the runtime.
pub fn a_sync(t: &Target, secs: f64) -> R<AResult> {
    let counts = Arc::new(Counts::default());
    let h = t.sync_handle(&counts)?;
    let lock = Lock::with_backend("bench-a-sync", &h);
    let mut errors = Errors::default();
    for _ in 0..50 {
        if !sync_cycle(&lock, &mut errors) {
            std::thread::sleep(ERROR_PAUSE);
        }
    }
    let before = counts.snap();
    let started = Instant::now();
    let mut cycles = 0u64;
    while started.elapsed().as_secs_f64() < secs {
        if sync_cycle(&lock, &mut errors) {
            cycles += 1;
        } else {
            std::thread::sleep(ERROR_PAUSE);
        }
    }
    let elapsed = started.elapsed();
    Ok(AResult::new(
        cycles,
        elapsed,
        counts.snap() - before,
        t.mongo_uri.is_some(),
        errors,
    ))
}

/// A, async API: acquire + release in one task.
pub async fn a_async(t: &Target, secs: f64) -> R<AResult> {
    let counts = Arc::new(Counts::default());
    let h = t.async_handle(&counts).await?;
    let lock = AsyncLock::with_backend("bench-a-async", &h);
    let mut errors = Errors::default();
    for _ in 0..50 {
        if !async_cycle(&lock, &mut errors).await {
            tokio::time::sleep(ERROR_PAUSE).await;
        }
    }
    let before = counts.snap();
    let started = Instant::now();
    let mut cycles = 0u64;
    while started.elapsed().as_secs_f64() < secs {
        if async_cycle(&lock, &mut errors).await {
            cycles += 1;
        } else {
            tokio::time::sleep(ERROR_PAUSE).await;
        }
    }
    let elapsed = started.elapsed();
    Ok(AResult::new(
        cycles,
        elapsed,
        counts.snap() - before,
        t.mongo_uri.is_some(),
        errors,
    ))
}

// ---------------------------------------------------------------- B

/// B with the waiter in this process: on the holder's handle
/// (`other_handle == false`: in-process handoff, woken by the local release)
/// or on a handle of its own (for the in-memory backend, which has no other
/// processes: the stand-in for a waiter in another process). A round whose
/// holder or waiter fails is counted in the errors and measures nothing.
pub async fn b_local(t: &Target, p: &Params, other_handle: bool) -> R<BResult> {
    let name = if other_handle {
        "bench-b-other"
    } else {
        "bench-b-in"
    };
    let counts = Arc::new(Counts::default());
    let h = t.async_handle(&counts).await?;
    let (wcounts, wh) = if other_handle {
        let c = Arc::new(Counts::default());
        let wh = t.async_handle(&c).await?;
        (c, wh)
    } else {
        (Arc::clone(&counts), h.clone())
    };
    // `c_handoff` says whether the in-process handoff is on (issue 21).
    let opts = c_options(p.backoff, p.c_handoff);
    let mut errors = Errors::default();
    let holder = AsyncLock::with_backend(name, &h).options(opts.clone());
    async_cycle(&holder, &mut errors).await;
    async_cycle(&AsyncLock::with_backend(name, &wh), &mut errors).await;
    let mut rng = Rng::new();
    let (mut lat, mut calls, mut waited) = (Vec::new(), 0u64, 0.0);
    let mut commands = 0u64;
    let mut release_ms = Vec::new();
    for _ in 0..p.b_rounds {
        let guard = match holder.acquire_timeout(OP_LIMIT).await {
            Ok(guard) => guard,
            Err(e) => {
                errors.add("acquire", &e);
                tokio::time::sleep(ERROR_PAUSE).await;
                continue;
            }
        };
        let before = wcounts.snap();
        let waiter = AsyncLock::with_backend(name, &wh).options(opts.clone());
        // The waiter's time of grant, and its failure if any.
        let at_grant = Arc::clone(&wcounts);
        let task = tokio::spawn(async move {
            match waiter.acquire_timeout(OP_LIMIT).await {
                Ok(guard) => {
                    let at = wall_ns();
                    let snap = at_grant.snap();
                    (
                        Some((at, snap)),
                        guard.release().await.err().map(|e| ("release", e)),
                    )
                }
                Err(e) => (None, Some(("acquire", e))),
            }
        });
        let hold = rng.range(p.hold_ms * 0.5, p.hold_ms * 1.5);
        tokio::time::sleep(Duration::from_secs_f64(hold / 1000.0)).await;
        let released = wall_ns();
        if let Err(e) = guard.release().await {
            errors.add("release", &e);
        } else {
            release_ms.push((wall_ns() - released) as f64 / 1e6);
        }
        match task.await {
            Ok((acquired, failed)) => {
                if let Some((op, e)) = failed {
                    errors.add(op, &e);
                }
                if let Some((acquired, snap)) = acquired {
                    calls += (wcounts.snap() - before).acquire;
                    commands += (snap - before).total();
                    lat.push((acquired - released) as f64 / 1e6);
                    waited += hold / 1000.0;
                }
            }
            Err(_) => errors.add_key("waiter panicked", 1),
        }
    }
    let rounds = lat.len().max(1) as f64;
    let mut result = BResult::new(lat, calls, waited, errors);
    result.commands_per_handoff = (!other_handle).then(|| commands as f64 / rounds);
    release_ms.sort_by(f64::total_cmp);
    result.release_p50_ms = (!other_handle).then(|| percentile(&release_ms, 50.0));
    Ok(result)
}

/// A child process of the benchmark binary, spoken to by lines. A child
/// that fails says `FAILED <why>` before it exits.
pub struct ChildProc {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl ChildProc {
    /// The benchmark binary as a child, with `args` and `env` (where the
    /// backend's secrets go: see [`Target::child_env`]).
    pub fn spawn(args: &[String], env: &[(&str, String)]) -> R<ChildProc> {
        let mut child = Command::new(std::env::current_exe()?)
            .arg("--child")
            .args(args)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let stdin = child.stdin.take().ok_or_else(|| err("child: no stdin"))?;
        let stdout = BufReader::new(child.stdout.take().ok_or_else(|| err("child: no stdout"))?);
        Ok(ChildProc {
            child,
            stdin,
            stdout,
        })
    }

    pub fn send(&mut self, line: &str) -> R<()> {
        writeln!(self.stdin, "{line}")?;
        self.stdin.flush()?;
        Ok(())
    }

    /// The next line, which must start with `prefix`; the child's own
    /// `FAILED` line, or how it exited, as the error otherwise.
    pub fn expect(&mut self, prefix: &str) -> R<String> {
        let mut line = String::new();
        if self.stdout.read_line(&mut line)? == 0 {
            let status = self
                .child
                .wait()
                .map_or_else(|e| e.to_string(), |s| s.to_string());
            return Err(err(format!(
                "the child exited ({status}) while {prefix:?} was expected"
            )));
        }
        let line = line.trim_end().to_owned();
        if let Some(why) = line.strip_prefix("FAILED ") {
            Err(err(format!("the child failed: {why}")))
        } else if line.starts_with(prefix) {
            Ok(line)
        } else {
            Err(err(format!(
                "the child said {line:?}, {prefix:?} was expected"
            )))
        }
    }

    /// Tell the child to quit and wait for it.
    pub fn finish(self) -> R<()> {
        self.finish_with(None).map(|_| ())
    }

    /// Tell the child to quit, read its last line (which must start with
    /// `last`), and wait for it.
    pub fn finish_with(mut self, last: Option<&str>) -> R<Option<String>> {
        self.send("QUIT").ok();
        let line = match last {
            Some(prefix) => Some(self.expect(prefix)?),
            None => None,
        };
        let status = self.child.wait()?;
        if status.success() {
            Ok(line)
        } else {
            Err(err(format!("the child ended with {status}")))
        }
    }
}

impl Drop for ChildProc {
    fn drop(&mut self) {
        // Reaped by `finish`, or killed here after an error.
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// Blocking I/O with a child, from inside the multi-thread runtime.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

/// B with the waiter in another process (a child running [`child_b_waiter`]).
pub async fn b_process(t: &Target, p: &Params) -> R<BResult> {
    if !t.multiprocess() {
        return b_local(t, p, true).await;
    }
    let name = "bench-b-process";
    let counts = Arc::new(Counts::default());
    let h = t.async_handle(&counts).await?;
    let holder = AsyncLock::with_backend(name, &h).options(p.waiting_options());
    let mut errors = Errors::default();
    async_cycle(&holder, &mut errors).await;
    let mut args = vec![
        "b-waiter".to_owned(),
        "--backoff".into(),
        backoff_arg(&p.backoff),
    ];
    args.extend(t.child_args());
    let mut child = ChildProc::spawn(&args, &t.child_env())?;
    blocking(|| child.expect("READY"))?;
    let mut rng = Rng::new();
    let (mut lat, mut calls, mut waited) = (Vec::new(), 0u64, 0.0);
    for _ in 0..p.b_rounds {
        let guard = match holder.acquire_timeout(OP_LIMIT).await {
            Ok(guard) => guard,
            Err(e) => {
                errors.add("acquire", &e);
                tokio::time::sleep(ERROR_PAUSE).await;
                continue;
            }
        };
        let waiting = blocking(|| {
            child.send("GO")?;
            child.expect("WAITING")
        });
        let hold = rng.range(p.hold_ms * 0.5, p.hold_ms * 1.5);
        if waiting.is_ok() {
            tokio::time::sleep(Duration::from_secs_f64(hold / 1000.0)).await;
        }
        let released = wall_ns();
        if let Err(e) = guard.release().await {
            errors.add("release", &e);
        }
        waiting?;
        // `ACQ <wall ns> <attempts>`, or `NOACQ <attempts>` if the waiter
        // failed (counted in its errors).
        let line = blocking(|| child.expect(""))?;
        let mut it = line.split_whitespace();
        match (it.next(), it.next(), it.next()) {
            (Some("ACQ"), Some(at), Some(n)) => {
                let (Ok(acquired), Ok(n)) = (at.parse::<i64>(), n.parse::<u64>()) else {
                    return Err(err(format!("bad line from the waiter: {line:?}")));
                };
                calls += n;
                lat.push((acquired - released) as f64 / 1e6);
                waited += hold / 1000.0;
            }
            (Some("NOACQ"), Some(_), None) => {}
            _ => return Err(err(format!("bad line from the waiter: {line:?}"))),
        }
    }
    let last = blocking(|| child.finish_with(Some("ERRORS")))?.unwrap_or_default();
    errors.merge(
        &Errors::from_line(&last)
            .ok_or_else(|| err(format!("bad line from the waiter: {last:?}")))?,
    );
    Ok(BResult::new(lat, calls, waited, errors))
}

fn read_stdin_line() -> R<String> {
    let mut line = String::new();
    if std::io::stdin().lock().read_line(&mut line)? == 0 {
        return Ok("QUIT".into());
    }
    Ok(line.trim().to_owned())
}

/// The waiter of B in a child process. Says `ACQ <wall ns> <attempts>` or
/// `NOACQ <attempts>` for each `GO`, and its errors when told to quit.
pub async fn child_b_waiter(t: &Target, backoff: Backoff) -> R<()> {
    let name = "bench-b-process";
    let counts = Arc::new(Counts::default());
    let h = t.async_handle(&counts).await?;
    let mut errors = Errors::default();
    // Connect, and take the server clock sample, before the first round.
    async_cycle(&AsyncLock::with_backend("bench-b-warmup", &h), &mut errors).await;
    let lock = AsyncLock::with_backend(name, &h).options(LockOptions::default().backoff(backoff));
    println!("READY");
    loop {
        match blocking(read_stdin_line)?.as_str() {
            "GO" => {
                let before = counts.snap();
                println!("WAITING");
                match lock.acquire_timeout(OP_LIMIT).await {
                    Ok(guard) => {
                        let at = wall_ns();
                        if let Err(e) = guard.release().await {
                            errors.add("release", &e);
                        }
                        println!("ACQ {at} {}", (counts.snap() - before).acquire);
                    }
                    Err(e) => {
                        errors.add("acquire", &e);
                        println!("NOACQ {}", (counts.snap() - before).acquire);
                    }
                }
            }
            "QUIT" => break,
            other => return Err(err(format!("b-waiter: unexpected {other:?}"))),
        }
    }
    if !counts.settle(SETTLE_LIMIT).await {
        errors.add_key("exit calls-still-running", 1);
    }
    println!("{}", errors.to_line());
    Ok(())
}

// ---------------------------------------------------------------- C

/// `tasks` tasks of one process hammer one lock for `secs` seconds. Every
/// task ends by itself at the end of the window (its last acquisition times
/// out then) and is awaited; a failed operation is counted and the task
/// goes on.
async fn c_worker(
    name: &str,
    h: &Backend,
    tasks: usize,
    secs: f64,
    opts: &LockOptions,
    first_task: usize,
) -> CTally {
    let end = Instant::now() + Duration::from_secs_f64(secs);
    let mut joins = Vec::new();
    for i in 0..tasks {
        let lock = AsyncLock::with_backend(name, h).options(opts.clone());
        joins.push(tokio::spawn(async move {
            let mut tally = CTally::default();
            loop {
                let left = end.saturating_duration_since(Instant::now());
                if left < Duration::from_millis(1) {
                    break;
                }
                let asked = wall_ns();
                match lock.acquire_timeout(left).await {
                    Ok(guard) => {
                        let acq = wall_ns();
                        let token = guard.token().get();
                        let handed = guard.handed_over();
                        let rel = wall_ns();
                        match guard.release().await {
                            Ok(()) => {}
                            // Somebody else was granted the lock meanwhile: a
                            // double grant (FerretDB, see the notes).
                            Err(Error::LeaseLost { .. }) => tally.lost += 1,
                            Err(e) => tally.errors.add("release", &e),
                        }
                        tally.grants.push(Grant {
                            task: first_task + i,
                            proc_: 0,
                            acq,
                            rel,
                            token,
                            wait: acq - asked,
                            handed,
                        });
                    }
                    // The end of the window.
                    Err(Error::Timeout { .. }) if Instant::now() >= end => break,
                    Err(e) => {
                        tally.errors.add("acquire", &e);
                        tokio::time::sleep(ERROR_PAUSE.min(left)).await;
                    }
                }
            }
            tally
        }));
    }
    let mut all = CTally::default();
    for j in joins {
        match j.await {
            Ok(tally) => all.merge(tally),
            Err(_) => all.errors.add_key("task panicked", 1),
        }
    }
    all
}

/// C: `c_procs` processes (children; for the in-memory backend, handles)
/// × `c_tasks` tasks for `c_secs` seconds.
pub async fn c_contention(t: &Target, p: &Params) -> R<CResult> {
    let opts = c_options(p.backoff, p.c_handoff);
    let shape = p.c_shape();
    let firsts: Vec<usize> = shape
        .iter()
        .scan(0, |sum, n| {
            let first = *sum;
            *sum += n;
            Some(first)
        })
        .collect();
    let monitored = t.mongo_uri.is_some();
    if !t.multiprocess() {
        let mut handles = Vec::new();
        for _ in 0..shape.len() {
            let c = Arc::new(Counts::default());
            handles.push((t.async_handle(&c).await?, c));
        }
        let before: Vec<Snap> = handles.iter().map(|(_, c)| c.snap()).collect();
        let mut joins = Vec::new();
        for (i, (h, _)) in handles.iter().enumerate() {
            let (h, opts, tasks, secs, first) =
                (h.clone(), opts.clone(), shape[i], p.c_secs, firsts[i]);
            let name = c_lock_name(p.c_handoff, p.c_shape.is_some());
            joins.push(tokio::spawn(async move {
                let mut tally = c_worker(&name, &h, tasks, secs, &opts, first).await;
                for g in &mut tally.grants {
                    g.proc_ = i;
                }
                tally
            }));
        }
        let mut tally = CTally::default();
        for j in joins {
            match j.await {
                Ok(t) => tally.merge(t),
                Err(_) => tally.errors.add_key("task panicked", 1),
            }
        }
        let counts = handles
            .iter()
            .zip(before)
            .fold(Snap::default(), |acc, ((_, c), b)| acc + (c.snap() - b));
        return Ok(CResult::new(tally, counts, &shape, p.c_secs, monitored));
    }
    let mut children = Vec::new();
    for tasks in &shape {
        let mut args = vec![
            "c-worker".to_owned(),
            "--c-tasks".into(),
            tasks.to_string(),
            "--c-secs".into(),
            p.c_secs.to_string(),
            "--backoff".into(),
            backoff_arg(&p.backoff),
            "--c-handoff".into(),
            if p.c_handoff { "on" } else { "off" }.into(),
            "--c-lock".into(),
            c_lock_name(p.c_handoff, p.c_shape.is_some()),
        ];
        args.extend(t.child_args());
        children.push(ChildProc::spawn(&args, &t.child_env())?);
    }
    blocking(|| {
        for c in &mut children {
            c.expect("READY")?;
        }
        for c in &mut children {
            c.send("GO")?;
        }
        let mut tally = CTally::default();
        let mut counts = Snap::default();
        for (i, mut c) in children.into_iter().enumerate() {
            loop {
                let line = c.expect("")?;
                if let Some(rest) = line.strip_prefix("G ") {
                    let v: Vec<i64> = rest
                        .split_whitespace()
                        .filter_map(|x| x.parse().ok())
                        .collect();
                    if let [task, acq, rel, token, wait, handed] = v[..] {
                        tally.grants.push(Grant {
                            task: firsts[i] + task as usize,
                            proc_: i,
                            acq,
                            rel,
                            token: token as u64,
                            wait,
                            handed: handed == 1,
                        });
                    }
                } else if let Some(n) = line.strip_prefix("LOST ") {
                    tally.lost += n.trim().parse::<usize>().unwrap_or(0);
                } else if let Some(e) = Errors::from_line(&line) {
                    tally.errors.merge(&e);
                } else if let Some(snap) = Snap::from_line(&line) {
                    counts = counts + snap;
                } else if line == "END" {
                    break;
                } else {
                    return Err(err(format!("c-worker said {line:?}")));
                }
            }
            c.finish()?;
        }
        Ok(CResult::new(tally, counts, &shape, p.c_secs, monitored))
    })
}

pub async fn child_c_worker(
    name: &str,
    t: &Target,
    tasks: usize,
    secs: f64,
    backoff: Backoff,
    handoff: bool,
) -> R<()> {
    let counts = Arc::new(Counts::default());
    let h = t.async_handle(&counts).await?;
    let mut warmup = Errors::default();
    // A name of its own: on FerretDB, children warming up on one name at
    // once could be granted it twice.
    async_cycle(
        &AsyncLock::with_backend(format!("bench-c-warmup-{}", std::process::id()), &h),
        &mut warmup,
    )
    .await;
    println!("READY");
    let go = blocking(read_stdin_line)?;
    if go != "GO" {
        return Err(err(format!("c-worker: unexpected {go:?}")));
    }
    let before = counts.snap();
    let mut tally = c_worker(name, &h, tasks, secs, &c_options(backoff, handoff), 0).await;
    tally.errors.merge(&warmup);
    // The core's background work (the clean-up of acquisitions given up at
    // the end of the window, releases after a handoff to a task that had
    // gone) must end before the process does: else a lock stays held for
    // its lease.
    if !h.settle(SETTLE_LIMIT).await {
        tally
            .errors
            .add_key("exit background-work-still-running", 1);
    }
    // Releases started in the background (acquisitions given up at the end
    // of the window with an unknown outcome) end here, not at the runtime's
    // shutdown.
    if !counts.settle(SETTLE_LIMIT).await {
        tally.errors.add_key("exit calls-still-running", 1);
    }
    let counts = counts.snap() - before;
    let mut out = String::with_capacity(tally.grants.len() * 64);
    for g in &tally.grants {
        out.push_str(&format!(
            "G {} {} {} {} {} {}\n",
            g.task,
            g.acq,
            g.rel,
            g.token,
            g.wait,
            u8::from(g.handed)
        ));
    }
    out.push_str(&format!("LOST {}\n", tally.lost));
    out.push_str(&tally.errors.to_line());
    out.push('\n');
    out.push_str(&counts.to_line());
    out.push_str("\nEND\n");
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(out.as_bytes())?;
    stdout.flush()?;
    Ok(())
}

// ---------------------------------------------------------------- D

/// The collection of D's records (MongoDB and ArangoDB), one per form:
/// a lock that one form could not release (its release timed out, its
/// outcome unknown) must not make the other form wait for its expiry.
fn d_collection(form: Form) -> String {
    format!("shylock_d_{}", form.as_str())
}

/// D in a child process of its own (one per form), so that its memory and
/// thread figures start from a fresh process.
pub async fn d_many(t: &Target, p: &Params, form: Form) -> R<DResult> {
    let mut args = vec![
        form.role().to_owned(),
        "--d-locks".into(),
        p.d_locks.to_string(),
        "--d-secs".into(),
        p.d_secs.to_string(),
        "--d-acquirers".into(),
        p.d_acquirers.to_string(),
    ];
    args.extend(t.child_args());
    let mut child = ChildProc::spawn(&args, &t.child_env())?;
    let (line, errors) =
        blocking(|| Ok::<_, BoxErr>((child.expect("DRESULT")?, child.expect("ERRORS")?)))?;
    blocking(|| child.finish())?;
    DResult::from_lines(&line, &errors)
}

/// D in the child, async API.
pub async fn child_d_many(t: &Target, p: &Params) -> R<()> {
    let (d, settled) = d_many_async(t, p).await?;
    report_d(&d, settled);
    Ok(())
}

/// D in the child, blocking API (no tokio runtime in the process).
pub fn child_d_many_blocking(t: &Target, p: &Params) -> R<()> {
    let (d, settled) = d_many_blocking(t, p)?;
    report_d(&d, settled);
    Ok(())
}

fn report_d(d: &DResult, settled: bool) {
    let mut errors = d.errors.clone();
    if !settled {
        errors.add_key("exit calls-still-running", 1);
    }
    println!("{}", d.to_line());
    println!("{}", errors.to_line());
}

/// D's window: it starts half a renewal interval after the acquisitions
/// (the renewals of a lock come every interval after its grant: away from
/// the burst boundaries) and lasts `--d-secs`.
struct Hold {
    window_s: f64,
    /// CPU seconds of the process in the window.
    cpu_s: f64,
    /// Primitive calls in the window.
    calls: Snap,
}

/// Sleep `d`, sampling the process's threads into `most` every second.
fn sampled(d: Duration, most: &mut usize) {
    let end = Instant::now() + d;
    loop {
        *most = (*most).max(threads());
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        std::thread::sleep(left.min(Duration::from_secs(1)));
    }
}

/// [`sampled`] in a task.
async fn sampled_async(d: Duration, most: &mut usize) {
    let end = Instant::now() + d;
    loop {
        *most = (*most).max(threads());
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        tokio::time::sleep(left.min(Duration::from_secs(1))).await;
    }
}

fn d_options() -> (LockOptions, Duration) {
    let opts = LockOptions::default();
    let interval = opts.renew_interval().unwrap_or(opts.lease);
    (opts, interval)
}

/// What a D run measured, made into a [`DResult`].
struct DMeasured {
    locks: usize,
    held: usize,
    interval: Duration,
    acquire_s: f64,
    rss_delta: f64,
    threads_before: usize,
    threads_held: usize,
    hold: Hold,
    held_at_end: usize,
    release_s: f64,
    errors: Errors,
}

impl DMeasured {
    fn result(self) -> DResult {
        let per_held = |x: f64| {
            if self.held == 0 {
                f64::NAN
            } else {
                x / self.held as f64
            }
        };
        DResult {
            locks: self.locks,
            held: self.held,
            acquire_s: self.acquire_s,
            window_s: self.hold.window_s,
            interval_s: self.interval.as_secs_f64(),
            renewals_per_s: self.hold.calls.renew as f64 / self.hold.window_s,
            expected_per_s: self.held as f64 / self.interval.as_secs_f64(),
            bytes_per_lock: per_held(self.rss_delta),
            cpu_pct: 100.0 * self.hold.cpu_s / self.hold.window_s,
            threads_before: self.threads_before,
            threads_held: self.threads_held,
            held_at_end: self.held_at_end,
            release_s: self.release_s,
            errors: self.errors,
        }
    }
}

/// D, async API: `d_locks` names held at once by this process, renewal on
/// (default lease 30 s, renewed every 10 s), over a window of `d_secs`
/// seconds; acquired and released by tasks, `d_acquirers` at a time. Every
/// guard is released and every task awaited; returns whether the backend
/// calls settled after that.
async fn d_many_async(t: &Target, p: &Params) -> R<(DResult, bool)> {
    let counts = Arc::new(Counts::default());
    // A collection of its own: the other scenarios' commands must not pay
    // for D's records on servers that scan collections (FerretDB).
    let collection = d_collection(Form::Async);
    let h = t.async_handle_in(&counts, Some(&collection)).await?;
    let mut errors = Errors::default();
    async_cycle(&AsyncLock::with_backend("bench-d-warmup", &h), &mut errors).await;
    // The warm-up's calls (and its guard's renewer) end before the baseline.
    counts.settle(SETTLE_LIMIT).await;
    let (opts, interval) = d_options();
    let threads_before = threads();
    let rss_before = rss_bytes();
    let started = Instant::now();
    let gate = Arc::new(tokio::sync::Semaphore::new(p.d_acquirers.max(1)));
    let mut joins = Vec::with_capacity(p.d_locks);
    for i in 0..p.d_locks {
        let (lock, gate) = (
            AsyncLock::with_backend(format!("bench-d-{i}"), &h).options(opts.clone()),
            Arc::clone(&gate),
        );
        joins.push(tokio::spawn(async move {
            let _permit = gate.acquire_owned().await;
            lock.acquire_timeout(OP_LIMIT).await
        }));
    }
    let mut guards = Vec::with_capacity(p.d_locks);
    for j in joins {
        match j.await {
            Ok(Ok(guard)) => guards.push(guard),
            Ok(Err(e)) => errors.add("acquire", &e),
            Err(_) => errors.add_key("acquire panicked", 1),
        }
    }
    let acquire_s = started.elapsed().as_secs_f64();
    let rss_delta = rss_bytes() as f64 - rss_before as f64;
    let mut threads_held = threads();
    sampled_async(interval / 2, &mut threads_held).await;
    let (before, cpu_before, window) = (counts.snap(), cpu_secs(), Instant::now());
    sampled_async(Duration::from_secs_f64(p.d_secs), &mut threads_held).await;
    let hold = Hold {
        window_s: window.elapsed().as_secs_f64(),
        cpu_s: cpu_secs() - cpu_before,
        calls: counts.snap() - before,
    };
    let held = guards.len();
    let held_at_end = guards.iter().filter(|g| g.is_held()).count();
    let started = Instant::now();
    let mut joins = Vec::with_capacity(guards.len());
    for guard in guards {
        let gate = Arc::clone(&gate);
        joins.push(tokio::spawn(async move {
            let _permit = gate.acquire_owned().await;
            guard.release().await
        }));
    }
    for j in joins {
        match j.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => errors.add("release", &e),
            Err(_) => errors.add_key("release panicked", 1),
        }
    }
    let release_s = started.elapsed().as_secs_f64();
    let settled = counts.settle(SETTLE_LIMIT).await;
    let d = DMeasured {
        locks: p.d_locks,
        held,
        interval,
        acquire_s,
        rss_delta,
        threads_before,
        threads_held,
        hold,
        held_at_end,
        release_s,
        errors,
    };
    Ok((d.result(), settled))
}

/// Run `work` on `n` threads at most: `n - 1` new ones and the calling
/// thread (alone if no thread can be started). Each returns its errors; a
/// thread that panicked is counted as `<what> panicked`. The new threads
/// have ended when it returns.
fn on_threads(what: &str, n: usize, work: &(dyn Fn() -> Errors + Sync)) -> Errors {
    std::thread::scope(|s| {
        let mut errors = Errors::default();
        let mut joins = Vec::new();
        for i in 1..n {
            match std::thread::Builder::new()
                .name(format!("bench-d-{what}-{i}"))
                .spawn_scoped(s, work)
            {
                Ok(j) => joins.push(j),
                Err(_) => {
                    errors.add_key(&format!("{what} no-thread"), 1);
                    break;
                }
            }
        }
        errors.merge(&work());
        for j in joins {
            match j.join() {
                Ok(e) => errors.merge(&e),
                Err(_) => errors.add_key(&format!("{what} panicked"), 1),
            }
        }
        errors
    })
}

/// D, blocking API: as [`d_many_async`], with `Lock` and `LockGuard` on
/// `d_acquirers` threads that take names from a shared counter (acquire)
/// and guards from a shared list (release); they have ended before the
/// window, whose threads are the API's own (and the backend's).
fn d_many_blocking(t: &Target, p: &Params) -> R<(DResult, bool)> {
    let counts = Arc::new(Counts::default());
    let h = t.sync_handle_in(&counts, Some(&d_collection(Form::Blocking)))?;
    let mut errors = Errors::default();
    sync_cycle(&Lock::with_backend("bench-d-warmup", &h), &mut errors);
    // The warm-up's calls (and its guard's renewer) end before the baseline.
    counts.settle_blocking(SETTLE_LIMIT);
    let (opts, interval) = d_options();
    let threads_before = threads();
    let rss_before = rss_bytes();
    let started = Instant::now();
    let next = AtomicUsize::new(0);
    let guards: Mutex<Vec<LockGuard>> = Mutex::new(Vec::with_capacity(p.d_locks));
    errors.merge(&on_threads("acquire", p.d_acquirers, &|| {
        let mut errors = Errors::default();
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            if i >= p.d_locks {
                return errors;
            }
            let lock = Lock::with_backend(format!("bench-d-{i}"), &h).options(opts.clone());
            match lock.acquire_timeout(OP_LIMIT) {
                Ok(guard) => guards
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(guard),
                Err(e) => errors.add("acquire", &e),
            }
        }
    }));
    let acquire_s = started.elapsed().as_secs_f64();
    let rss_delta = rss_bytes() as f64 - rss_before as f64;
    let mut threads_held = threads();
    sampled(interval / 2, &mut threads_held);
    let (before, cpu_before, window) = (counts.snap(), cpu_secs(), Instant::now());
    sampled(Duration::from_secs_f64(p.d_secs), &mut threads_held);
    let hold = Hold {
        window_s: window.elapsed().as_secs_f64(),
        cpu_s: cpu_secs() - cpu_before,
        calls: counts.snap() - before,
    };
    let (held, held_at_end) = {
        let g = guards.lock().unwrap_or_else(PoisonError::into_inner);
        (g.len(), g.iter().filter(|g| g.is_held()).count())
    };
    let started = Instant::now();
    errors.merge(&on_threads("release", p.d_acquirers, &|| {
        let mut errors = Errors::default();
        loop {
            let guard = guards.lock().unwrap_or_else(PoisonError::into_inner).pop();
            let Some(guard) = guard else {
                return errors;
            };
            if let Err(e) = guard.release() {
                errors.add("release", &e);
            }
        }
    }));
    let release_s = started.elapsed().as_secs_f64();
    let settled = counts.settle_blocking(SETTLE_LIMIT);
    let d = DMeasured {
        locks: p.d_locks,
        held,
        interval,
        acquire_s,
        rss_delta,
        threads_before,
        threads_held,
        hold,
        held_at_end,
        release_s,
        errors,
    };
    Ok((d.result(), settled))
}
