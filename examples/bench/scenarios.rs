//! Scenarios A to D, and the child-process roles they use.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use shylock::{AsyncLock, Backend, Backoff, Error, Lock, LockOptions};

use crate::counting::{Counts, Snap};
use crate::targets::Target;
use crate::util::{R, Rng, cpu_secs, err, percentile, rss_bytes, wall_ns};

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
    /// The waiters' backoff in B and C.
    pub backoff: Backoff,
}

impl Params {
    fn waiting_options(&self) -> LockOptions {
        LockOptions::default().backoff(self.backoff)
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
}

impl AResult {
    fn new(cycles: u64, elapsed: Duration, d: Snap, monitored: bool) -> AResult {
        let n = cycles.max(1) as f64;
        AResult {
            cycles_per_s: cycles as f64 / elapsed.as_secs_f64(),
            per_acquire: d.acquire as f64 / n,
            per_release: d.release as f64 / n,
            per_cycle: d.total() as f64 / n,
            wire_per_cycle: monitored.then(|| d.wire as f64 / n),
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
}

impl BResult {
    fn new(mut lat_ms: Vec<f64>, waiter_calls: u64, waited_s: f64) -> BResult {
        lat_ms.sort_by(f64::total_cmp);
        let rounds = lat_ms.len();
        BResult {
            p50_ms: percentile(&lat_ms, 50.0),
            p99_ms: percentile(&lat_ms, 99.0),
            max_ms: lat_ms.last().copied().unwrap_or(f64::NAN),
            waiter_calls: waiter_calls as f64 / rounds.max(1) as f64,
            polls_per_s: waiter_calls.saturating_sub(rounds as u64) as f64 / waited_s,
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
    /// Grants that began before the previous one's release was called.
    pub overlaps: usize,
    /// Fencing tokens handed out more than once (`usize::MAX`: no tokens).
    pub dup_tokens: usize,
    /// Releases that found the lock taken by somebody else.
    pub lost_on_release: usize,
}

/// One grant in scenario C.
#[derive(Debug, Clone, Copy)]
pub struct Grant {
    task: usize,
    acq: i64,
    rel: i64,
    token: u64,
}

impl CResult {
    fn new(
        mut grants: Vec<Grant>,
        lost_on_release: usize,
        counts: Snap,
        procs: usize,
        tasks: usize,
        secs: f64,
        monitored: bool,
    ) -> CResult {
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
        let mut per_task = vec![0usize; procs * tasks];
        for g in &grants {
            if let Some(c) = per_task.get_mut(g.task) {
                *c += 1;
            }
        }
        let denom = n.max(1) as f64;
        CResult {
            grants: n,
            grants_per_s: n as f64 / secs,
            commands_per_grant: counts.total() as f64 / denom,
            wire_per_grant: monitored.then(|| counts.wire as f64 / denom),
            max_gap_ms: max_gap_ns as f64 / 1e6,
            min_task: per_task.iter().copied().min().unwrap_or(0),
            max_task: per_task.iter().copied().max().unwrap_or(0),
            overlaps,
            dup_tokens,
            lost_on_release,
        }
    }
}

#[derive(Debug, Clone)]
pub struct DResult {
    pub locks: usize,
    pub acquire_s: f64,
    pub renewals_per_s: f64,
    pub expected_per_s: f64,
    pub bytes_per_lock: f64,
    pub cpu_pct: f64,
    pub held_at_end: usize,
    pub release_s: f64,
}

// ---------------------------------------------------------------- A

/// A, blocking API: acquire + release on one thread. Call outside the runtime.
pub fn a_sync(t: &Target, secs: f64) -> R<AResult> {
    let counts = Arc::new(Counts::default());
    let h = t.sync_handle(&counts)?;
    let lock = Lock::with_backend("bench-a-sync", &h);
    for _ in 0..50 {
        lock.acquire()?.release()?;
    }
    let before = counts.snap();
    let started = Instant::now();
    let mut cycles = 0u64;
    while started.elapsed().as_secs_f64() < secs {
        let guard = lock.acquire()?;
        guard.release()?;
        cycles += 1;
    }
    let elapsed = started.elapsed();
    Ok(AResult::new(
        cycles,
        elapsed,
        counts.snap() - before,
        t.mongo_uri.is_some(),
    ))
}

/// A, async API: acquire + release in one task.
pub async fn a_async(t: &Target, secs: f64) -> R<AResult> {
    let counts = Arc::new(Counts::default());
    let h = t.async_handle(&counts).await?;
    let lock = AsyncLock::with_backend("bench-a-async", &h);
    for _ in 0..50 {
        lock.acquire().await?.release().await?;
    }
    let before = counts.snap();
    let started = Instant::now();
    let mut cycles = 0u64;
    while started.elapsed().as_secs_f64() < secs {
        let guard = lock.acquire().await?;
        guard.release().await?;
        cycles += 1;
    }
    let elapsed = started.elapsed();
    Ok(AResult::new(
        cycles,
        elapsed,
        counts.snap() - before,
        t.mongo_uri.is_some(),
    ))
}

// ---------------------------------------------------------------- B

/// B with the waiter in this process: on the holder's handle
/// (`other_handle == false`: in-process handoff, woken by the local release)
/// or on a handle of its own (for the in-memory backend, which has no other
/// processes: the stand-in for a waiter in another process).
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
    let opts = p.waiting_options();
    let holder = AsyncLock::with_backend(name, &h).options(opts.clone());
    holder.acquire().await?.release().await?;
    AsyncLock::with_backend(name, &wh)
        .acquire()
        .await?
        .release()
        .await?;
    let mut rng = Rng::new();
    let (mut lat, mut calls, mut waited) = (Vec::new(), 0u64, 0.0);
    for _ in 0..p.b_rounds {
        let guard = holder.acquire().await?;
        let before = wcounts.snap();
        let waiter = AsyncLock::with_backend(name, &wh).options(opts.clone());
        let task = tokio::spawn(async move {
            let guard = waiter.acquire().await?;
            let at = wall_ns();
            guard.release().await?;
            Ok::<i64, Error>(at)
        });
        let hold = rng.range(p.hold_ms * 0.5, p.hold_ms * 1.5);
        tokio::time::sleep(Duration::from_secs_f64(hold / 1000.0)).await;
        let released = wall_ns();
        guard.release().await?;
        let acquired = task.await??;
        calls += (wcounts.snap() - before).acquire;
        lat.push((acquired - released) as f64 / 1e6);
        waited += hold / 1000.0;
    }
    Ok(BResult::new(lat, calls, waited))
}

/// A child process of the benchmark binary, spoken to by lines.
pub struct ChildProc {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl ChildProc {
    pub fn spawn(args: &[String]) -> R<ChildProc> {
        let mut child = Command::new(std::env::current_exe()?)
            .arg("--child")
            .args(args)
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

    /// The next line, which must start with `prefix`.
    pub fn expect(&mut self, prefix: &str) -> R<String> {
        let mut line = String::new();
        if self.stdout.read_line(&mut line)? == 0 {
            return Err(err(format!("child exited while {prefix} was expected")));
        }
        let line = line.trim_end().to_owned();
        if line.starts_with(prefix) {
            Ok(line)
        } else {
            Err(err(format!("child said {line:?}, {prefix} was expected")))
        }
    }

    pub fn finish(mut self) -> R<()> {
        self.send("QUIT").ok();
        let status = self.child.wait()?;
        if status.success() {
            Ok(())
        } else {
            Err(err(format!("child {status}")))
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
    holder.acquire().await?.release().await?;
    let mut args = vec![
        "b-waiter".to_owned(),
        "--backoff".into(),
        backoff_arg(&p.backoff),
    ];
    args.extend(t.child_args());
    let mut child = ChildProc::spawn(&args)?;
    blocking(|| child.expect("READY"))?;
    let mut rng = Rng::new();
    let (mut lat, mut calls, mut waited) = (Vec::new(), 0u64, 0.0);
    for _ in 0..p.b_rounds {
        let guard = holder.acquire().await?;
        blocking(|| {
            child.send("GO")?;
            child.expect("WAITING")
        })?;
        let hold = rng.range(p.hold_ms * 0.5, p.hold_ms * 1.5);
        tokio::time::sleep(Duration::from_secs_f64(hold / 1000.0)).await;
        let released = wall_ns();
        guard.release().await?;
        let line = blocking(|| child.expect("ACQ"))?;
        let mut it = line.split_whitespace().skip(1).map(str::parse::<i64>);
        let (Some(Ok(acquired)), Some(Ok(n))) = (it.next(), it.next()) else {
            return Err(err(format!("bad line from the waiter: {line:?}")));
        };
        calls += n as u64;
        lat.push((acquired - released) as f64 / 1e6);
        waited += hold / 1000.0;
    }
    blocking(|| child.finish())?;
    Ok(BResult::new(lat, calls, waited))
}

fn read_stdin_line() -> R<String> {
    let mut line = String::new();
    if std::io::stdin().lock().read_line(&mut line)? == 0 {
        return Ok("QUIT".into());
    }
    Ok(line.trim().to_owned())
}

/// The waiter of B in a child process.
pub async fn child_b_waiter(t: &Target, backoff: Backoff) -> R<()> {
    let name = "bench-b-process";
    let counts = Arc::new(Counts::default());
    let h = t.async_handle(&counts).await?;
    // Connect, and take the server clock sample, before the first round.
    AsyncLock::with_backend("bench-b-warmup", &h)
        .acquire()
        .await?
        .release()
        .await?;
    let lock = AsyncLock::with_backend(name, &h).options(LockOptions::default().backoff(backoff));
    println!("READY");
    loop {
        match blocking(read_stdin_line)?.as_str() {
            "GO" => {
                let before = counts.snap();
                println!("WAITING");
                let guard = lock.acquire().await?;
                let at = wall_ns();
                guard.release().await?;
                println!("ACQ {at} {}", (counts.snap() - before).acquire);
            }
            "QUIT" => return Ok(()),
            other => return Err(err(format!("b-waiter: unexpected {other:?}"))),
        }
    }
}

// ---------------------------------------------------------------- C

/// `tasks` tasks of one process hammer one lock for `secs` seconds.
async fn c_worker(
    h: &Backend,
    tasks: usize,
    secs: f64,
    opts: &LockOptions,
    first_task: usize,
) -> R<(Vec<Grant>, usize)> {
    let end = Instant::now() + Duration::from_secs_f64(secs);
    let mut joins = Vec::new();
    for i in 0..tasks {
        let lock = AsyncLock::with_backend("bench-c", h).options(opts.clone());
        joins.push(tokio::spawn(async move {
            let (mut grants, mut lost) = (Vec::new(), 0usize);
            loop {
                let left = end.saturating_duration_since(Instant::now());
                if left < Duration::from_millis(1) {
                    break;
                }
                match lock.acquire_timeout(left).await {
                    Ok(guard) => {
                        let acq = wall_ns();
                        let token = guard.token().get();
                        let rel = wall_ns();
                        match guard.release().await {
                            Ok(()) => {}
                            // Somebody else was granted the lock meanwhile: a
                            // double grant (FerretDB, see the notes).
                            Err(Error::LeaseLost { .. }) => lost += 1,
                            Err(e) => return Err(e),
                        }
                        grants.push(Grant {
                            task: first_task + i,
                            acq,
                            rel,
                            token,
                        });
                    }
                    Err(Error::Timeout { .. }) => break,
                    Err(e) => return Err(e),
                }
            }
            Ok::<_, Error>((grants, lost))
        }));
    }
    let (mut all, mut lost) = (Vec::new(), 0);
    for j in joins {
        let (g, l) = j.await??;
        all.extend(g);
        lost += l;
    }
    Ok((all, lost))
}

/// C: `c_procs` processes (children; for the in-memory backend, handles)
/// × `c_tasks` tasks for `c_secs` seconds.
pub async fn c_contention(t: &Target, p: &Params) -> R<CResult> {
    let opts = p.waiting_options();
    let monitored = t.mongo_uri.is_some();
    if !t.multiprocess() {
        let mut handles = Vec::new();
        for _ in 0..p.c_procs {
            let c = Arc::new(Counts::default());
            handles.push((t.async_handle(&c).await?, c));
        }
        let before: Vec<Snap> = handles.iter().map(|(_, c)| c.snap()).collect();
        let mut joins = Vec::new();
        for (i, (h, _)) in handles.iter().enumerate() {
            let (h, opts, tasks, secs) = (h.clone(), opts.clone(), p.c_tasks, p.c_secs);
            joins.push(tokio::spawn(async move {
                c_worker(&h, tasks, secs, &opts, i * tasks).await
            }));
        }
        let (mut grants, mut lost) = (Vec::new(), 0);
        for j in joins {
            let (g, l) = j.await.map_err(|e| err(e.to_string()))??;
            grants.extend(g);
            lost += l;
        }
        let counts = handles
            .iter()
            .zip(before)
            .fold(Snap::default(), |acc, ((_, c), b)| acc + (c.snap() - b));
        return Ok(CResult::new(
            grants, lost, counts, p.c_procs, p.c_tasks, p.c_secs, monitored,
        ));
    }
    let mut children = Vec::new();
    for _ in 0..p.c_procs {
        let mut args = vec![
            "c-worker".to_owned(),
            "--c-tasks".into(),
            p.c_tasks.to_string(),
            "--c-secs".into(),
            p.c_secs.to_string(),
            "--backoff".into(),
            backoff_arg(&p.backoff),
        ];
        args.extend(t.child_args());
        children.push(ChildProc::spawn(&args)?);
    }
    blocking(|| {
        for c in &mut children {
            c.expect("READY")?;
        }
        for c in &mut children {
            c.send("GO")?;
        }
        let (mut grants, mut lost) = (Vec::new(), 0);
        let mut counts = Snap::default();
        for (i, mut c) in children.into_iter().enumerate() {
            loop {
                let line = c.expect("")?;
                if let Some(rest) = line.strip_prefix("G ") {
                    let v: Vec<i64> = rest
                        .split_whitespace()
                        .filter_map(|x| x.parse().ok())
                        .collect();
                    if let [task, acq, rel, token] = v[..] {
                        grants.push(Grant {
                            task: i * p.c_tasks + task as usize,
                            acq,
                            rel,
                            token: token as u64,
                        });
                    }
                } else if let Some(n) = line.strip_prefix("LOST ") {
                    lost += n.trim().parse::<usize>().unwrap_or(0);
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
        Ok(CResult::new(
            grants, lost, counts, p.c_procs, p.c_tasks, p.c_secs, monitored,
        ))
    })
}

/// One process of C, in a child.
pub async fn child_c_worker(t: &Target, tasks: usize, secs: f64, backoff: Backoff) -> R<()> {
    let counts = Arc::new(Counts::default());
    let h = t.async_handle(&counts).await?;
    // A name of its own: on FerretDB, children warming up on one name at
    // once could be granted it twice.
    AsyncLock::with_backend(format!("bench-c-warmup-{}", std::process::id()), &h)
        .acquire()
        .await?
        .release()
        .await?;
    println!("READY");
    let go = blocking(read_stdin_line)?;
    if go != "GO" {
        return Err(err(format!("c-worker: unexpected {go:?}")));
    }
    let before = counts.snap();
    let (grants, lost) =
        c_worker(&h, tasks, secs, &LockOptions::default().backoff(backoff), 0).await?;
    let counts = counts.snap() - before;
    let mut out = String::with_capacity(grants.len() * 64);
    for g in &grants {
        out.push_str(&format!("G {} {} {} {}\n", g.task, g.acq, g.rel, g.token));
    }
    out.push_str(&format!("LOST {lost}\n"));
    out.push_str(&counts.to_line());
    out.push_str("\nEND\n");
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(out.as_bytes())?;
    stdout.flush()?;
    Ok(())
}

// ---------------------------------------------------------------- D

/// The collection of D's records (MongoDB and ArangoDB).
pub const D_COLLECTION: &str = "shylock_d";

/// D in a child process of its own, so that its memory figure starts
/// from a fresh process.
pub async fn d_many(t: &Target, p: &Params) -> R<DResult> {
    let mut args = vec![
        "d-many".to_owned(),
        "--d-locks".into(),
        p.d_locks.to_string(),
        "--d-secs".into(),
        p.d_secs.to_string(),
    ];
    args.extend(t.child_args());
    let mut child = ChildProc::spawn(&args)?;
    let line = blocking(|| child.expect("DRESULT"))?;
    blocking(|| child.finish())?;
    let v: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .map(|x| x.parse::<f64>())
        .collect::<Result<_, _>>()
        .map_err(|_| err(format!("bad line from d-many: {line:?}")))?;
    let [
        locks,
        acquire_s,
        renewals_per_s,
        expected_per_s,
        bytes_per_lock,
        cpu_pct,
        held,
        release_s,
    ] = v[..]
    else {
        return Err(err(format!("bad line from d-many: {line:?}")));
    };
    Ok(DResult {
        locks: locks as usize,
        acquire_s,
        renewals_per_s,
        expected_per_s,
        bytes_per_lock,
        cpu_pct,
        held_at_end: held as usize,
        release_s,
    })
}

/// D in the child.
pub async fn child_d_many(t: &Target, p: &Params) -> R<()> {
    let d = d_many_here(t, p).await?;
    println!(
        "DRESULT {} {} {} {} {} {} {} {}",
        d.locks,
        d.acquire_s,
        d.renewals_per_s,
        d.expected_per_s,
        d.bytes_per_lock,
        d.cpu_pct,
        d.held_at_end,
        d.release_s
    );
    Ok(())
}

/// D: `d_locks` names held at once by this process, renewal on (default
/// lease 30 s, renewed every 10 s), over a window of `d_secs` seconds.
async fn d_many_here(t: &Target, p: &Params) -> R<DResult> {
    let counts = Arc::new(Counts::default());
    // A collection of its own: the other scenarios' commands must not pay
    // for D's records on servers that scan collections (FerretDB).
    let h = t.async_handle_in(&counts, Some(D_COLLECTION)).await?;
    AsyncLock::with_backend("bench-d-warmup", &h)
        .acquire()
        .await?
        .release()
        .await?;
    let opts = LockOptions::default();
    let interval = opts.renew_interval().unwrap_or(opts.lease);
    let rss_before = rss_bytes();
    let started = Instant::now();
    let gate = Arc::new(tokio::sync::Semaphore::new(64));
    let mut joins = Vec::with_capacity(p.d_locks);
    for i in 0..p.d_locks {
        let (lock, gate) = (
            AsyncLock::with_backend(format!("bench-d-{i}"), &h),
            Arc::clone(&gate),
        );
        joins.push(tokio::spawn(async move {
            let _permit = gate.acquire_owned().await;
            lock.acquire().await
        }));
    }
    let mut guards = Vec::with_capacity(p.d_locks);
    for j in joins {
        guards.push(j.await??);
    }
    let acquire_s = started.elapsed().as_secs_f64();
    let rss_after = rss_bytes();
    // The renewals of a lock come every `interval` after its grant: start
    // the window half an interval later, away from the burst boundaries.
    tokio::time::sleep(interval / 2).await;
    let before = counts.snap();
    let cpu_before = cpu_secs();
    let window = Instant::now();
    tokio::time::sleep(Duration::from_secs_f64(p.d_secs)).await;
    let window_s = window.elapsed().as_secs_f64();
    let cpu = cpu_secs() - cpu_before;
    let d = counts.snap() - before;
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
        j.await??;
    }
    Ok(DResult {
        locks: p.d_locks,
        acquire_s,
        renewals_per_s: d.renew as f64 / window_s,
        expected_per_s: p.d_locks as f64 / interval.as_secs_f64(),
        bytes_per_lock: (rss_after as f64 - rss_before as f64) / p.d_locks as f64,
        cpu_pct: 100.0 * cpu / window_s,
        held_at_end,
        release_s: started.elapsed().as_secs_f64(),
    })
}
