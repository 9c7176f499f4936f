//! The controller: starts the server (FerretDB behind the proxy, DocumentDB
//! behind the pass-through proxy, or the ArangoDB emulator as its own
//! process), W worker processes of both forms,
//! injects faults at random, stops every process it started by its PID, and
//! checks the workers' logs.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use rand::Rng;
use rand::seq::IndexedRandom;
use rustix::process::{Pid, Signal, kill_process};
use shylock_testkit::documentdb::DocumentDb;
use shylock_testkit::ferretdb::FerretDb;
use shylock_testkit::proxy::{Mode, Proxy};

use crate::check::{self, Fault, FaultKind, Report};
use crate::events::{Event, mono_ns, parse_log};
use crate::worker::{Form, WorkerConfig};

/// What the workers lock against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// FerretDB behind the proxy in this mode.
    Mongo(Mode),
    /// DocumentDB (atomic across connections) behind the pass-through
    /// proxy: every client connection of every worker is its own upstream
    /// connection; the proxy only injects network faults.
    DocumentDb,
    /// The ArangoDB emulator, as its own process.
    Emulator,
}

impl Target {
    /// A name for reports.
    pub fn name(self) -> &'static str {
        match self {
            Target::Mongo(Mode::Serializing) => "FerretDB through the serializing proxy",
            Target::Mongo(Mode::PassThrough) => "FerretDB through the pass-through proxy",
            Target::DocumentDb => "DocumentDB, every worker on its own connections",
            Target::Emulator => "ArangoDB emulator",
        }
    }

    /// The fault kinds that apply.
    pub fn fault_kinds(self) -> &'static [FaultKind] {
        match self {
            Target::Mongo(_) => &[
                FaultKind::WorkerKill,
                FaultKind::WorkerPause,
                FaultKind::ServerKill,
                FaultKind::Blackhole,
                FaultKind::Delay,
                FaultKind::Reset,
            ],
            Target::DocumentDb => &[
                FaultKind::WorkerKill,
                FaultKind::WorkerPause,
                FaultKind::GatewayKill,
                FaultKind::PostgresKill,
                FaultKind::Blackhole,
                FaultKind::Delay,
                FaultKind::Reset,
            ],
            Target::Emulator => &[
                FaultKind::WorkerKill,
                FaultKind::WorkerPause,
                FaultKind::ServerPause,
            ],
        }
    }
}

/// A run's settings.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// The server.
    pub target: Target,
    /// Worker processes (forms alternate: sync, async, sync, ...).
    pub workers: usize,
    /// Contenders per worker process.
    pub contenders: usize,
    /// The lease of every grant.
    pub lease: Duration,
    /// The longest ordinary critical section.
    pub hold_max: Duration,
    /// The longest wait between two polls of a waiting contender.
    pub poll_max: Duration,
    /// Stop once this many grants are logged and every fault kind was
    /// injected `faults_per_kind` times...
    pub acquisitions: usize,
    /// ... (see `acquisitions`).
    pub faults_per_kind: u32,
    /// ... or at this time at the latest.
    pub max_duration: Duration,
    /// Whether to inject faults at all.
    pub inject: bool,
    /// Where logs go.
    pub dir: PathBuf,
    /// The `shylock-chaos-worker` binary.
    pub worker_bin: PathBuf,
    /// The `shylock-chaos-emulator` binary.
    pub emulator_bin: PathBuf,
}

impl RunConfig {
    /// Defaults for `target`: 4 workers of 3 contenders, a 500 ms lease,
    /// sections up to 2 ms, polls at most 100 ms apart, the binaries next to
    /// the running executable.
    pub fn new(target: Target, dir: &Path) -> RunConfig {
        RunConfig {
            target,
            workers: 4,
            contenders: 3,
            lease: Duration::from_millis(500),
            hold_max: Duration::from_millis(2),
            poll_max: Duration::from_millis(100),
            acquisitions: 10_000,
            faults_per_kind: 20,
            max_duration: Duration::from_secs(150),
            inject: true,
            dir: dir.to_owned(),
            worker_bin: sibling_bin("shylock-chaos-worker"),
            emulator_bin: sibling_bin("shylock-chaos-emulator"),
        }
    }
}

/// `name` in the directory of the running executable (or its parent, for
/// test binaries in `deps/`).
pub fn sibling_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_default();
    let mut dir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    if dir.ends_with("deps") {
        dir.pop();
    }
    dir.join(name)
}

/// What a run did and what the checker found.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The server.
    pub target: Target,
    /// The checker's report.
    pub report: Report,
    /// Faults injected, by kind.
    pub faults: BTreeMap<FaultKind, u32>,
    /// Worker processes started (first ones and replacements).
    pub processes: usize,
    /// How long the run took (start of the server to the end of the check).
    pub elapsed: Duration,
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "== {} ==", self.target.name())?;
        writeln!(f, "run time: {:.1} s", self.elapsed.as_secs_f64())?;
        writeln!(f, "worker processes started: {}", self.processes)?;
        let faults: Vec<String> = self
            .faults
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        writeln!(f, "faults: {}", faults.join(", "))?;
        write!(f, "{}", self.report)
    }
}

/// A process started by the controller; stopped by its PID.
struct Proc {
    child: Child,
    stdin: Option<ChildStdin>,
}

impl Proc {
    fn pid(&self) -> Option<Pid> {
        Pid::from_raw(i32::try_from(self.child.id()).ok()?)
    }

    fn signal(&self, signal: Signal) {
        if let Some(pid) = self.pid() {
            let _ = kill_process(pid, signal);
        }
    }

    /// SIGCONT (in case it is stopped), close stdin, wait up to `grace`,
    /// then SIGKILL and reap.
    fn stop(mut self, grace: Duration) {
        self.signal(Signal::CONT);
        drop(self.stdin.take());
        let started = Instant::now();
        while started.elapsed() < grace {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        self.kill();
    }

    /// SIGKILL and reap.
    fn kill(mut self) {
        self.signal(Signal::KILL);
        let _ = self.child.wait();
    }
}

/// Reads the workers' logs as they grow.
#[derive(Default)]
struct Tail {
    offsets: HashMap<PathBuf, u64>,
    grants: usize,
    /// Process id -> token -> grant time, for sections not ended yet.
    in_section: HashMap<String, HashMap<u64, u64>>,
}

impl Tail {
    fn poll(&mut self, logs: &[PathBuf]) {
        for path in logs {
            let offset = self.offsets.entry(path.clone()).or_default();
            let Ok(mut f) = File::open(path) else {
                continue;
            };
            if f.seek(SeekFrom::Start(*offset)).is_err() {
                continue;
            }
            let mut text = String::new();
            if f.read_to_string(&mut text).is_err() {
                continue;
            }
            let whole = text.rfind('\n').map_or(0, |i| i + 1);
            *offset += whole as u64;
            for e in parse_log(&text[..whole]) {
                match e {
                    Event::Grant {
                        worker, token, at, ..
                    } => {
                        self.grants += 1;
                        self.in_section
                            .entry(check::process_of(&worker).to_owned())
                            .or_default()
                            .insert(token, at);
                    }
                    Event::End { worker, token, .. } => {
                        if let Some(s) = self.in_section.get_mut(check::process_of(&worker)) {
                            s.remove(&token);
                        }
                    }
                    _ => {}
                }
            }
        }
    }

    /// A process inside a long critical section: granted at least 5 ms ago
    /// and not ended, as far as the logs tell (ordinary sections last up to
    /// 2 ms, long ones 30 to 80 ms).
    fn holder(&self) -> Option<&str> {
        let before = mono_ns().saturating_sub(5_000_000);
        self.in_section
            .iter()
            .find(|(_, s)| s.values().any(|&at| at <= before))
            .map(|(p, _)| p.as_str())
    }
}

/// The server under test.
enum Backend {
    Mongo {
        ferret: FerretDb,
        proxy: Proxy,
    },
    DocumentDb {
        server: DocumentDb,
        proxy: Proxy,
    },
    Emulator {
        proc: Proc,
        url: String,
        user: String,
        password: String,
    },
}

impl Backend {
    fn start(config: &RunConfig) -> Result<Backend, String> {
        match config.target {
            Target::Mongo(mode) => {
                let ferret = FerretDb::start(false);
                let proxy = Proxy::start(ferret.addr(), mode).map_err(|e| e.to_string())?;
                Ok(Backend::Mongo { ferret, proxy })
            }
            Target::DocumentDb => {
                let server = DocumentDb::start();
                let proxy =
                    Proxy::start(server.addr(), Mode::PassThrough).map_err(|e| e.to_string())?;
                Ok(Backend::DocumentDb { server, proxy })
            }
            Target::Emulator => {
                let mut child = Command::new(&config.emulator_bin)
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::inherit())
                    .spawn()
                    .map_err(|e| format!("cannot start {}: {e}", config.emulator_bin.display()))?;
                let stdin = child.stdin.take();
                let stdout = child.stdout.take();
                let proc = Proc { child, stdin };
                let mut line = String::new();
                if let Some(out) = stdout {
                    let _ = BufReader::new(out).read_line(&mut line);
                }
                let words: Vec<&str> = line.split_whitespace().collect();
                let [url, user, password, _db] = words[..] else {
                    proc.kill();
                    return Err(format!("the emulator said {line:?}"));
                };
                Ok(Backend::Emulator {
                    url: url.to_owned(),
                    user: user.to_owned(),
                    password: password.to_owned(),
                    proc,
                })
            }
        }
    }

    /// The workers' backend URL (see [`shylock::BackendUrl`]).
    fn url(&self) -> String {
        match self {
            Backend::Mongo { proxy, .. } => proxy.uri(),
            Backend::DocumentDb { server, proxy } => server.uri_via(proxy.addr()),
            Backend::Emulator {
                url,
                user,
                password,
                ..
            } => {
                let (scheme, rest) = url.split_once("://").unwrap_or(("http", url));
                format!(
                    "{scheme}://{}:{}@{rest}{}shylock.collection=shylock_chaos",
                    encode(user),
                    encode(password),
                    if rest.contains('?') { '&' } else { '?' }
                )
            }
        }
    }

    fn database(&self) -> &'static str {
        match self {
            Backend::Mongo { .. } | Backend::DocumentDb { .. } => "shylock_chaos",
            Backend::Emulator { .. } => "chaosdb",
        }
    }

    fn stop(self) {
        match self {
            Backend::Mongo { ferret, proxy } => {
                drop(proxy);
                drop(ferret);
            }
            Backend::DocumentDb { server, proxy } => {
                drop(proxy);
                drop(server);
            }
            Backend::Emulator { proc, .. } => proc.stop(Duration::from_secs(3)),
        }
    }
}

/// `s` percent-encoded for the user-information part of a URL.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// The worker processes, by slot.
struct Fleet {
    slots: Vec<Option<(String, Proc)>>,
    incarnations: Vec<u32>,
    logs: Vec<PathBuf>,
    base: WorkerConfig,
    bin: PathBuf,
    dir: PathBuf,
}

impl Fleet {
    fn spawn(&mut self, slot: usize) -> Result<(), String> {
        let inc = self.incarnations[slot];
        self.incarnations[slot] += 1;
        let id = format!("p{slot}i{inc}");
        let mut config = self.base.clone();
        config.form = if slot.is_multiple_of(2) {
            Form::Sync
        } else {
            Form::Async
        };
        config.log = self.dir.join(format!("{id}.log"));
        config.id = id.clone();
        let err = File::create(self.dir.join(format!("{id}.err"))).map_err(|e| e.to_string())?;
        let mut child = Command::new(&self.bin)
            .args(config.to_args())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(err)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", self.bin.display()))?;
        let stdin = child.stdin.take();
        self.logs.push(config.log);
        self.slots[slot] = Some((id, Proc { child, stdin }));
        Ok(())
    }

    /// A victim: half of the time a process caught inside its critical
    /// section (watching the logs for up to a second), else any.
    fn victim(&self, tail: &mut Tail, rng: &mut impl Rng) -> usize {
        if rng.random_bool(0.5) {
            let until = Instant::now() + Duration::from_secs(1);
            while Instant::now() < until {
                tail.poll(&self.logs);
                if let Some(holder) = tail.holder()
                    && let Some(slot) = self
                        .slots
                        .iter()
                        .position(|s| s.as_ref().is_some_and(|(id, _)| id == holder))
                {
                    return slot;
                }
                std::thread::sleep(Duration::from_millis(3));
            }
        }
        rng.random_range(0..self.slots.len())
    }

    fn stop_all(&mut self) {
        for slot in &mut self.slots {
            if let Some((_, proc)) = slot.take() {
                proc.stop(Duration::from_secs(2));
            }
        }
    }
}

fn sleep_polling(d: Duration, tail: &mut Tail, logs: &[PathBuf]) {
    let until = Instant::now() + d;
    loop {
        tail.poll(logs);
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        std::thread::sleep(left.min(Duration::from_millis(100)));
    }
}

fn random_ms(rng: &mut impl Rng, lo: u64, hi: u64) -> Duration {
    Duration::from_millis(rng.random_range(lo..=hi))
}

/// Run: start everything, inject faults, stop every process, check.
pub fn run(config: &RunConfig) -> Result<Outcome, String> {
    let started = Instant::now();
    std::fs::create_dir_all(&config.dir).map_err(|e| e.to_string())?;
    let mut backend = Backend::start(config)?;
    let base = WorkerConfig {
        backend: backend.url(),
        database: backend.database().into(),
        lock: "chaos".into(),
        form: Form::Sync,
        lease: config.lease,
        hold_max: config.hold_max,
        poll_max: config.poll_max,
        contenders: config.contenders,
        log: PathBuf::new(),
        id: String::new(),
        duration: config.max_duration + Duration::from_secs(60),
    };
    let mut fleet = Fleet {
        slots: (0..config.workers).map(|_| None).collect(),
        incarnations: vec![0; config.workers],
        logs: Vec::new(),
        base,
        bin: config.worker_bin.clone(),
        dir: config.dir.clone(),
    };
    let result = drive(config, &mut backend, &mut fleet, started);
    fleet.stop_all();
    backend.stop();
    let (faults, counts) = result?;
    let fault_log: String = faults
        .iter()
        .map(|f| {
            format!(
                "{} {} {} {}\n",
                f.kind,
                f.start,
                f.end,
                f.victim.as_deref().unwrap_or("-")
            )
        })
        .collect();
    let _ = std::fs::write(config.dir.join("faults.log"), fault_log);
    let mut events = Vec::new();
    for log in &fleet.logs {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        events.extend(parse_log(&text));
    }
    let report = check::check(&events, &faults, config.lease);
    Ok(Outcome {
        target: config.target,
        report,
        faults: counts,
        processes: fleet.logs.len(),
        elapsed: started.elapsed(),
    })
}

type Injected = (Vec<Fault>, BTreeMap<FaultKind, u32>);

fn drive(
    config: &RunConfig,
    backend: &mut Backend,
    fleet: &mut Fleet,
    started: Instant,
) -> Result<Injected, String> {
    for slot in 0..config.workers {
        fleet.spawn(slot)?;
    }
    let mut tail = Tail::default();
    let mut rng = rand::rng();
    let mut faults = Vec::new();
    let mut counts: BTreeMap<FaultKind, u32> = config
        .target
        .fault_kinds()
        .iter()
        .map(|k| (*k, 0))
        .collect();
    // Wait for the first grant.
    let first_by = Instant::now() + Duration::from_secs(60);
    while tail.grants == 0 {
        if Instant::now() > first_by {
            return Err(format!(
                "no grant within 60 s; see the worker logs in {}",
                config.dir.display()
            ));
        }
        sleep_polling(Duration::from_millis(100), &mut tail, &fleet.logs);
    }
    let deadline = started + config.max_duration;
    let mut least = 0;
    loop {
        let logs = fleet.logs.clone();
        // Faults come quickly until each kind has its count, then now and
        // then (the run goes on until it has its acquisitions).
        let pause = if least < config.faults_per_kind {
            random_ms(&mut rng, 50, 200)
        } else {
            random_ms(&mut rng, 2000, 6000)
        };
        sleep_polling(pause, &mut tail, &logs);
        least = counts.values().copied().min().unwrap_or(0);
        let done = tail.grants >= config.acquisitions
            && (!config.inject || least >= config.faults_per_kind);
        if done || Instant::now() >= deadline {
            break;
        }
        if !config.inject {
            continue;
        }
        // The kinds injected least so far, one of them at random.
        let candidates: Vec<FaultKind> = counts
            .iter()
            .filter(|(_, n)| **n == least)
            .map(|(k, _)| *k)
            .collect();
        let Some(&kind) = candidates.choose(&mut rng) else {
            break;
        };
        let fault = inject(kind, config, backend, fleet, &mut tail, &mut rng)?;
        faults.push(fault);
        *counts.entry(kind).or_default() += 1;
    }
    Ok((faults, counts))
}

fn inject(
    kind: FaultKind,
    config: &RunConfig,
    backend: &mut Backend,
    fleet: &mut Fleet,
    tail: &mut Tail,
    rng: &mut impl Rng,
) -> Result<Fault, String> {
    let logs = fleet.logs.clone();
    let start = mono_ns();
    let mut victim = None;
    match (kind, &mut *backend) {
        (FaultKind::WorkerKill, _) => {
            let slot = fleet.victim(tail, rng);
            if let Some((id, proc)) = fleet.slots[slot].take() {
                proc.kill();
                tail.in_section.remove(&id);
                victim = Some(id);
            }
            fleet.spawn(slot)?;
        }
        (FaultKind::WorkerPause, _) => {
            let slot = fleet.victim(tail, rng);
            if let Some((id, proc)) = &fleet.slots[slot] {
                victim = Some(id.clone());
                proc.signal(Signal::STOP);
                sleep_polling(config.lease + random_ms(rng, 50, 300), tail, &logs);
                proc.signal(Signal::CONT);
            }
        }
        (FaultKind::ServerKill, Backend::Mongo { ferret, .. }) => {
            ferret.crash();
            ferret.restart();
        }
        (FaultKind::GatewayKill, Backend::DocumentDb { server, .. }) => {
            server.kill_gateway();
            sleep_polling(random_ms(rng, 0, 300), tail, &logs);
            server.restart();
        }
        (FaultKind::PostgresKill, Backend::DocumentDb { server, .. }) => {
            server.kill_postgres();
            sleep_polling(random_ms(rng, 0, 300), tail, &logs);
            server.restart();
        }
        (
            FaultKind::Blackhole,
            Backend::Mongo { proxy, .. } | Backend::DocumentDb { proxy, .. },
        ) => {
            let d = random_ms(rng, 200, 700);
            proxy.blackhole(d);
            sleep_polling(d, tail, &logs);
        }
        (FaultKind::Delay, Backend::Mongo { proxy, .. } | Backend::DocumentDb { proxy, .. }) => {
            proxy.set_delay(random_ms(rng, 5, 40));
            sleep_polling(random_ms(rng, 200, 600), tail, &logs);
            proxy.set_delay(Duration::ZERO);
        }
        (FaultKind::Reset, Backend::Mongo { proxy, .. } | Backend::DocumentDb { proxy, .. }) => {
            proxy.reset_connections()
        }
        (FaultKind::ServerPause, Backend::Emulator { proc, .. }) => {
            proc.signal(Signal::STOP);
            sleep_polling(random_ms(rng, 200, 800), tail, &logs);
            proc.signal(Signal::CONT);
        }
        (kind, _) => return Err(format!("{kind} does not apply to {}", config.target.name())),
    }
    Ok(Fault {
        kind,
        start,
        end: mono_ns(),
        victim,
    })
}
