//! Benchmarks of shylock, beside the original Python `shylock` on the same
//! server (issue 5). Prints a markdown table.
//!
//! ```text
//! scripts/bench.sh                 # everything, writes BENCHMARKS.md
//! scripts/bench.sh --quick         # about 5 to 6 minutes
//! cargo run --release -p shylock-examples --example bench --features mongo,arango -- --help
//! ```
//!
//! Backends (`--all`, the default, in the table's order): the in-memory
//! backend; `memory-slow`, the in-memory backend with 50 ms added to every
//! backend call (only D runs on it: 10,000 blocking guards while every call
//! is slow); DocumentDB (`documentdb`: PostgreSQL 15 + `pg_documentdb` + its
//! MongoDB-wire gateway, started through shylock-testkit's harness, i.e.
//! `scripts/ensure-documentdb.sh`; atomic across connections, the first
//! MongoDB-protocol column); FerretDB v1 (`mongo`, column `ferretdb`: not
//! atomic across connections, so only there the backend is opted in with
//! `MongoOptions::allow_non_atomic_server`); the ArangoDB emulator.
//!
//! Scenarios, on each chosen backend:
//!
//! * **A. uncontended cycles**: acquire + release in a loop, one client, for
//!   the blocking and the async API: cycles/s, and round trips per cycle
//!   (primitive calls, counted by a wrapper around the backend; for MongoDB
//!   also the commands the driver's command monitoring saw).
//! * **B. handoff latency**: from the holder's call to `release` to the
//!   waiter's `acquire` returning (wall-clock nanoseconds of one machine),
//!   with the waiter in the same process and in another process (a child
//!   running this binary with the hidden `--child` option). The holder holds
//!   for a random time, uniform in [0.5, 1.5] × `--hold-ms`.
//! * **C. contention**: P processes × T tasks acquire and release one lock
//!   for S seconds: grants/s, round trips per grant (all processes), the
//!   largest gap between a grant and the next, and a check for double
//!   grants (overlapping holdings, repeated fencing tokens).
//! * **D. many locks**: 10,000 names held at once by one process (default
//!   lease 30 s renewed every 10 s), through the async API (tasks) and
//!   through the blocking API (guards acquired and released by 8 threads,
//!   64 on `memory-slow`, which end before the window), each in a fresh
//!   child process: renewal round trips per second over a window, client
//!   memory per held lock (RSS delta), client CPU, and the threads of the
//!   whole process while the locks are held (the issue's target: 10,000
//!   blocking guards in at most 8 threads and 4 KiB each).
//!
//! A failed lock operation (acquire, release, a timeout) is counted by kind
//! in the scenario's "errors" row and the run goes on; a scenario that
//! cannot run at all (or whose child process dies) says why in its column.
//!
//! The original runs A (pymongo and motor), B and C through
//! `examples/bench/original.py`, in a virtualenv made by `scripts/bench.sh`
//! (`--python` names its interpreter), on each MongoDB-protocol server (its
//! columns `original on documentdb`, `original on ferretdb`). Its failures
//! (e.g. a worker process killed by DocumentDB's error 112 in C) are figures
//! in the table, with the exception that ended the process; they do not make
//! the command fail.

#[path = "bench/counting.rs"]
mod counting;
#[path = "bench/errors.rs"]
mod errors;
#[path = "bench/scenarios.rs"]
mod scenarios;
#[path = "bench/slow.rs"]
mod slow;
#[path = "bench/targets.rs"]
mod targets;
#[path = "bench/util.rs"]
mod util;

use std::fmt::Write as _;
use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};

use errors::Errors;
use scenarios::{AResult, BResult, CResult, DResult, Form, Params, backoff_arg, parse_backoff};
use shylock::Backoff;
use slow::SLOW_DELAY;
use targets::{ArangoConn, Kind, Target, repo_root};
use util::{BoxErr, Json, R, err, machine, utc_now};

const HELP: &str = "\
shylock benchmarks: scenarios A-D on chosen backends, beside the original Python shylock.

USAGE: bench [OPTIONS]

  --backend B          memory | memory-slow | documentdb | mongo | arango-emulator
                       | arango (repeatable); memory-slow: the in-memory backend
                       with 50 ms added to every backend call, D only;
                       documentdb: DocumentDB, started here; mongo: FerretDB v1,
                       started here (column `ferretdb`)
  --all                memory, memory-slow, documentdb, mongo and arango-emulator
                       (the default)
  --quick              shorter runs
  --scenarios LIST     which scenarios, e.g. ABD (default ABCD)
  --documentdb-uri URI use this DocumentDB (or other MongoDB-protocol server that is
                       atomic across connections) for --backend documentdb instead
                       of starting one with scripts/ensure-documentdb.sh
  --mongo-uri URI      use this MongoDB-protocol server for --backend mongo instead
                       of starting FerretDB (column `mongo`); both: databases
                       shylock_bench and shylock_bench_py
  --ferretdb PATH      the FerretDB binary (default: $SHYLOCK_FERRETDB_BIN, or
                       what scripts/ensure-ferretdb.sh prints)
  --arango-url URL     a real ArangoDB for --backend arango (with --arango-user,
                       --arango-db; defaults root, _system; the password in
                       $SHYLOCK_ARANGO_PASSWORD, default '', or --arango-password)
  --python PATH        Python of the virtualenv with the original (default:
                       $SHYLOCK_BENCH_PYTHON); without it the original is not run
  --no-original        do not run the original
  --a-secs S           A: seconds per form (default 5; quick 2)
  --b-rounds N         B: handoffs per variant (default 100; quick 30)
  --hold-ms MS         B: mean hold time before the release (default 100)
  --c-procs P          C: processes (default 4)
  --c-tasks T          C: tasks per process (default 4)
  --c-handoff on|off   C: in-process handoff (default: both, on first; and
                       the lopsided variant, 4 tasks against 3 x 1, with it on)
  --c-secs S           C: seconds (default 10; quick 3)
  --d-locks N          D: locks held at once, by each API (default 10000)
  --d-locks-ferretdb N D on the FerretDB started here (default 500: FerretDB v1
                       scans the whole collection for every conditional command)
  --d-locks-documentdb N  D on the DocumentDB started here (default: --d-locks; it
                       acquires 10000 in about 6 s)
  --d-secs S           D: measuring window (default 20; quick 10)
  --d-acquirers N      D: acquisitions and releases at once: tasks (async API) or
                       threads (blocking API; they end before the window)
                       (default 8; 64 on memory-slow)
  --d-apis LIST        D: which APIs, async and/or blocking, comma-separated
                       (default async,blocking)
  --backoff I,M,F      waiters' backoff in B and C: initial ms, max ms, factor
                       (default: the core's, 5,50,2)
  --b-sweep LIST       also run B across processes with each backoff of LIST
                       (';'-separated I,M,F triples) and print a table (full
                       runs do 62.5,62.5,1;20,20,1;10,10,1;5,50,2 on each
                       MongoDB-protocol backend)
  --out FILE           also write the markdown to FILE
";

/// D's locks on FerretDB: it pushes only `{_id: x}` filters down to SQLite
/// and scans the whole collection for any other filter, so every lock
/// command costs time proportional to the number of records.
const FERRETDB_D_LOCKS: usize = 500;

/// The backends of `--all` (and of no `--backend`), in the table's order:
/// DocumentDB is the first MongoDB-protocol column (the engine users run).
const ALL: [Kind; 5] = [
    Kind::Memory,
    Kind::MemorySlow,
    Kind::DocumentDb,
    Kind::Mongo,
    Kind::ArangoEmulator,
];

/// The backoffs of the default B sweep on the MongoDB targets (full runs):
/// the original's fixed 62.5 ms, faster fixed polls, and a lower cap.
const DEFAULT_SWEEP: [&str; 4] = ["62.5,62.5,1", "20,20,1", "10,10,1", "5,50,2"];

/// Parsed command line.
#[derive(Debug, Default)]
struct Opts {
    backends: Vec<Kind>,
    quick: bool,
    scenarios: String,
    documentdb_uri: Option<String>,
    mongo_uri: Option<String>,
    ferretdb: Option<String>,
    /// In a child: the parent's MongoDB-protocol server is its FerretDB v1.
    child_on_ferretdb: bool,
    arango_url: Option<String>,
    arango_user: String,
    arango_password: String,
    arango_db: String,
    python: Option<String>,
    no_original: bool,
    a_secs: Option<f64>,
    b_rounds: Option<usize>,
    hold_ms: Option<f64>,
    c_procs: Option<usize>,
    c_tasks: Option<usize>,
    c_handoff: Option<bool>,
    /// C's lock name (children of C only).
    c_lock: Option<String>,
    c_secs: Option<f64>,
    d_locks: Option<usize>,
    d_locks_ferretdb: Option<usize>,
    d_locks_documentdb: Option<usize>,
    d_secs: Option<f64>,
    d_acquirers: Option<usize>,
    /// D's APIs (empty: both).
    d_forms: Vec<Form>,
    backoff: Option<Backoff>,
    b_sweep: Vec<Backoff>,
    out: Option<String>,
    child: Option<String>,
    args: Vec<String>,
}

fn parse_args(args: Vec<String>) -> R<Opts> {
    let mut o = Opts {
        scenarios: "ABCD".into(),
        arango_user: "root".into(),
        arango_db: "_system".into(),
        args: args.clone(),
        ..Opts::default()
    };
    let mut arango_password_given = false;
    let mut it = args.into_iter();
    while let Some(a) = it.next() {
        let mut val = |name: &str| {
            it.next()
                .ok_or_else(|| err(format!("{name} needs a value")))
        };
        fn num<T: std::str::FromStr>(name: &str, v: String) -> R<T> {
            v.parse()
                .map_err(|_| err(format!("{name}: bad number {v:?}")))
        }
        match a.as_str() {
            "-h" | "--help" => {
                print!("{HELP}");
                std::process::exit(0);
            }
            "--backend" => o.backends.push(Kind::parse(&val(&a)?)?),
            "--all" => o.backends.extend(ALL),
            "--quick" => o.quick = true,
            "--scenarios" => o.scenarios = val(&a)?.to_uppercase(),
            "--documentdb-uri" => o.documentdb_uri = Some(val(&a)?),
            "--mongo-uri" => o.mongo_uri = Some(val(&a)?),
            "--ferretdb" => o.ferretdb = Some(val(&a)?),
            "--child-on-ferretdb" => o.child_on_ferretdb = true,
            "--arango-url" => o.arango_url = Some(val(&a)?),
            "--arango-user" => o.arango_user = val(&a)?,
            "--arango-password" => {
                o.arango_password = val(&a)?;
                arango_password_given = true;
            }
            "--arango-db" => o.arango_db = val(&a)?,
            "--python" => o.python = Some(val(&a)?),
            "--no-original" => o.no_original = true,
            "--a-secs" => o.a_secs = Some(num(&a, val(&a)?)?),
            "--b-rounds" => o.b_rounds = Some(num(&a, val(&a)?)?),
            "--hold-ms" => o.hold_ms = Some(num(&a, val(&a)?)?),
            "--c-procs" => o.c_procs = Some(num(&a, val(&a)?)?),
            "--c-tasks" => o.c_tasks = Some(num(&a, val(&a)?)?),
            "--c-lock" => o.c_lock = Some(val(&a)?),
            "--c-handoff" => {
                o.c_handoff = Some(match val(&a)?.as_str() {
                    "on" => true,
                    "off" => false,
                    other => return Err(err(format!("--c-handoff {other:?}: want on or off"))),
                })
            }
            "--c-secs" => o.c_secs = Some(num(&a, val(&a)?)?),
            "--d-locks" => o.d_locks = Some(num(&a, val(&a)?)?),
            "--d-locks-ferretdb" => o.d_locks_ferretdb = Some(num(&a, val(&a)?)?),
            "--d-locks-documentdb" => o.d_locks_documentdb = Some(num(&a, val(&a)?)?),
            "--d-secs" => o.d_secs = Some(num(&a, val(&a)?)?),
            "--d-acquirers" => o.d_acquirers = Some(num(&a, val(&a)?)?),
            "--d-apis" => {
                for api in val(&a)?.split(',').map(str::trim) {
                    match Form::BOTH.into_iter().find(|f| f.as_str() == api) {
                        Some(f) if !o.d_forms.contains(&f) => o.d_forms.push(f),
                        Some(_) => {}
                        None => {
                            return Err(err(format!(
                                "--d-apis: unknown API {api:?} (async, blocking)"
                            )));
                        }
                    }
                }
            }
            "--backoff" => o.backoff = Some(parse_backoff(&val(&a)?)?),
            "--b-sweep" => {
                o.b_sweep = val(&a)?
                    .split(';')
                    .filter(|s| !s.trim().is_empty())
                    .map(parse_backoff)
                    .collect::<R<_>>()?;
            }
            "--out" => o.out = Some(val(&a)?),
            "--child" => o.child = Some(val(&a)?),
            other => return Err(err(format!("unknown option {other:?} (see --help)"))),
        }
    }
    if o.backends.is_empty() {
        o.backends = ALL.to_vec();
    }
    let mut seen = Vec::new();
    o.backends.retain(|k| {
        let new = !seen.contains(k);
        seen.push(*k);
        new
    });
    // Secrets come from the environment, never the arguments of a child
    // (`Target::child_env`); the password also for the benchmark itself.
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    if o.child.is_some() {
        o.mongo_uri = o
            .mongo_uri
            .take()
            .or_else(|| var(targets::CHILD_MONGODB_URI));
        o.arango_url = o
            .arango_url
            .take()
            .or_else(|| var(targets::CHILD_ARANGO_URL));
    }
    if !arango_password_given && let Some(password) = var(targets::CHILD_ARANGO_PASSWORD) {
        o.arango_password = password;
    }
    if o.python.is_none() {
        o.python = std::env::var("SHYLOCK_BENCH_PYTHON")
            .ok()
            .filter(|p| !p.is_empty());
    }
    Ok(o)
}

impl Opts {
    fn params(&self) -> Params {
        let q = self.quick;
        Params {
            a_secs: self.a_secs.unwrap_or(if q { 2.0 } else { 5.0 }),
            b_rounds: self.b_rounds.unwrap_or(if q { 30 } else { 100 }),
            hold_ms: self.hold_ms.unwrap_or(100.0),
            c_procs: self.c_procs.unwrap_or(4),
            c_tasks: self.c_tasks.unwrap_or(4),
            c_secs: self.c_secs.unwrap_or(if q { 3.0 } else { 10.0 }),
            d_locks: self.d_locks.unwrap_or(10_000),
            d_secs: self.d_secs.unwrap_or(if q { 10.0 } else { 20.0 }),
            d_acquirers: self.d_acquirers.unwrap_or(scenarios::D_THREADS).max(1),
            backoff: self.backoff.unwrap_or_default(),
            c_handoff: self.c_handoff.unwrap_or(true),
            c_shape: None,
        }
    }

    /// D's APIs, in the order of [`Form::BOTH`].
    fn d_forms(&self) -> Vec<Form> {
        Form::BOTH
            .into_iter()
            .filter(|f| self.d_forms.is_empty() || self.d_forms.contains(f))
            .collect()
    }

    fn has(&self, scenario: char) -> bool {
        self.scenarios.contains(scenario)
    }

    fn arango_conn(&self) -> Option<ArangoConn> {
        self.arango_url.as_ref().map(|url| ArangoConn {
            url: url.clone(),
            user: self.arango_user.clone(),
            password: self.arango_password.clone(),
            db: self.arango_db.clone(),
        })
    }
}

/// Not run (`None`), failed (`Some(Err)`), or the figures.
type Res<T> = Option<Result<T, String>>;

/// The figures of one column.
#[derive(Default)]
struct Run {
    label: String,
    server: String,
    /// The backend (`None` for the original's columns).
    kind: Option<Kind>,
    /// Ours on the FerretDB v1 started here.
    ferretdb: bool,
    /// The original's column (it does not count its errors).
    original: bool,
    /// For the original's column: the label of our column on the same server.
    of: String,
    /// Why the whole column was not run.
    skipped: Option<String>,
    /// D's acquisitions and releases at once (tasks or threads).
    d_acquirers: usize,
    a_sync: Res<AResult>,
    a_async: Res<AResult>,
    b_in: Res<BResult>,
    /// B in process with handoff off (ours only).
    b_in_off: Res<BResult>,
    b_process: Res<BResult>,
    c: Res<CResult>,
    /// C with handoff off (ours only).
    c_off: Res<CResult>,
    /// C lopsided: one process of 4 tasks against 3 of 1 (ours only).
    c_lop: Res<CResult>,
    d_async: Res<DResult>,
    d_blocking: Res<DResult>,
    sweep: Vec<(Backoff, Result<BResult, String>)>,
}

impl Run {
    /// D in one form.
    fn d(&self, form: Form) -> &Res<DResult> {
        match form {
            Form::Async => &self.d_async,
            Form::Blocking => &self.d_blocking,
        }
    }

    /// Every scenario's outcome: (name, error if it failed).
    fn failures(&self) -> Vec<(&'static str, Option<&String>)> {
        fn e<T>(r: &Res<T>) -> Option<&String> {
            r.as_ref().and_then(|r| r.as_ref().err())
        }
        vec![
            ("A blocking", e(&self.a_sync)),
            ("A async", e(&self.a_async)),
            ("B in-process", e(&self.b_in)),
            ("B across processes", e(&self.b_process)),
            ("C", e(&self.c)),
            ("D async", e(&self.d_async)),
            ("D blocking", e(&self.d_blocking)),
        ]
    }
}

fn keep<T>(what: &str, label: &str, r: R<T>) -> Res<T> {
    match r {
        Ok(v) => {
            eprintln!("bench: {label}: {what} done");
            Some(Ok(v))
        }
        Err(e) => {
            eprintln!("bench: {label}: {what} FAILED: {e}");
            Some(Err(e.to_string()))
        }
    }
}

/// The original's scenarios run right after ours of the same letter, so
/// that both meet the server in the same state.
struct OriginalRun<'a> {
    python: &'a str,
    uri: String,
    run: Run,
    info: OriginalInfo,
}

impl OriginalRun<'_> {
    fn scenario(&mut self, o: &Opts, letter: char) {
        let (r, info) = run_original(
            self.python,
            &self.uri,
            o,
            &self.run.server,
            &letter.to_string(),
        );
        if r.skipped.is_some() && self.run.skipped.is_none() {
            self.run.skipped = r.skipped;
        }
        self.run.a_sync = self.run.a_sync.take().or(r.a_sync);
        self.run.a_async = self.run.a_async.take().or(r.a_async);
        self.run.b_in = self.run.b_in.take().or(r.b_in);
        self.run.b_process = self.run.b_process.take().or(r.b_process);
        self.run.c = self.run.c.take().or(r.c);
        if !info.versions.is_empty() {
            self.info.versions = info.versions;
        }
        if !info.workaround.is_empty() {
            self.info.workaround = info.workaround;
        }
        if info.server_cost.is_some() {
            self.info.server_cost = info.server_cost;
        }
    }
}

fn run_target(
    t: &Target,
    o: &Opts,
    rt: &tokio::runtime::Runtime,
    mut original: Option<&mut OriginalRun<'_>>,
) -> Run {
    let mut p = o.params();
    if t.is_ferretdb {
        p.d_locks = o.d_locks_ferretdb.unwrap_or(FERRETDB_D_LOCKS);
    }
    if t.is_documentdb {
        p.d_locks = o.d_locks_documentdb.unwrap_or(p.d_locks);
    }
    if t.kind == Kind::MemorySlow {
        p.d_acquirers = o.d_acquirers.unwrap_or(scenarios::SLOW_D_ACQUIRERS).max(1);
    }
    let l = t.label.as_str();
    let mut run = Run {
        label: t.label.clone(),
        server: t.server.clone(),
        kind: Some(t.kind),
        ferretdb: t.is_ferretdb,
        d_acquirers: p.d_acquirers,
        ..Run::default()
    };
    // `memory-slow` is for D: A to C would only show the added delay.
    let only_d = t.kind.d_only();
    if only_d && o.scenarios.chars().any(|c| "ABC".contains(c)) {
        eprintln!("bench: {l}: only D runs on this backend");
    }
    if o.has('A') && !only_d {
        eprintln!("bench: {l}: A (blocking API) for {} s", p.a_secs);
        run.a_sync = keep("A blocking", l, scenarios::a_sync(t, p.a_secs));
        eprintln!("bench: {l}: A (async API) for {} s", p.a_secs);
        run.a_async = keep("A async", l, rt.block_on(scenarios::a_async(t, p.a_secs)));
        if let Some(orig) = original.as_mut() {
            orig.scenario(o, 'A');
        }
    }
    if o.has('B') && !only_d {
        eprintln!("bench: {l}: B in-process, {} handoffs", p.b_rounds);
        run.b_in = keep(
            "B in-process",
            l,
            rt.block_on(scenarios::b_local(t, &p, false)),
        );
        eprintln!(
            "bench: {l}: B in-process with handoff off, {} handoffs",
            p.b_rounds
        );
        let q = Params {
            c_handoff: false,
            ..p.clone()
        };
        run.b_in_off = keep(
            "B in-process, handoff off",
            l,
            rt.block_on(scenarios::b_local(t, &q, false)),
        );
        eprintln!("bench: {l}: B across processes, {} handoffs", p.b_rounds);
        run.b_process = keep(
            "B across processes",
            l,
            rt.block_on(scenarios::b_process(t, &p)),
        );
        if let Some(orig) = original.as_mut() {
            orig.scenario(o, 'B');
        }
    }
    if o.has('C') && !only_d {
        eprintln!(
            "bench: {l}: C, {} processes x {} tasks for {} s",
            p.c_procs, p.c_tasks, p.c_secs
        );
        run.c = keep("C", l, rt.block_on(scenarios::c_contention(t, &p)));
        if let Some(orig) = original.as_mut() {
            orig.scenario(o, 'C');
        }
        if o.c_handoff.is_none() {
            eprintln!("bench: {l}: C with handoff off");
            let q = Params {
                c_handoff: false,
                ..p.clone()
            };
            run.c_off = keep("C off", l, rt.block_on(scenarios::c_contention(t, &q)));
            eprintln!("bench: {l}: C lopsided, 4 + 1 + 1 + 1 tasks");
            let q = Params {
                c_shape: Some(vec![4, 1, 1, 1]),
                ..p.clone()
            };
            run.c_lop = keep("C lopsided", l, rt.block_on(scenarios::c_contention(t, &q)));
        }
    }
    if o.has('D') {
        for form in o.d_forms() {
            let what = format!("D {}", form.as_str());
            eprintln!(
                "bench: {l}: {what}, {} locks ({} at a time), window {} s",
                p.d_locks, p.d_acquirers, p.d_secs
            );
            let r = keep(&what, l, rt.block_on(scenarios::d_many(t, &p, form)));
            match form {
                Form::Async => run.d_async = r,
                Form::Blocking => run.d_blocking = r,
            }
        }
    }
    // By default (full runs), the MongoDB targets also measure B across
    // processes with a few other backoffs, for the trade-off between
    // latency and polling load.
    let default_sweep: Vec<Backoff> =
        if o.b_sweep.is_empty() && !o.quick && o.has('B') && !only_d && t.kind.is_mongo() {
            DEFAULT_SWEEP
                .iter()
                .filter_map(|b| parse_backoff(b).ok())
                .collect()
        } else {
            Vec::new()
        };
    let sweep = if only_d { &[][..] } else { &o.b_sweep[..] };
    for b in sweep.iter().chain(&default_sweep) {
        eprintln!("bench: {l}: B sweep, backoff {}", backoff_arg(b));
        let q = Params {
            backoff: *b,
            ..p.clone()
        };
        let r = rt
            .block_on(scenarios::b_process(t, &q))
            .map_err(|e| e.to_string());
        run.sweep.push((*b, r));
    }
    run
}

// ---------------------------------------------------------------- original

/// What the Python driver said about itself.
#[derive(Default)]
struct OriginalInfo {
    versions: String,
    workaround: String,
    /// The server's own cost of one uncontended cycle (ms), both designs
    /// driven by pymongo: (original's insert + delete, shylock's two
    /// findAndModify).
    server_cost: Option<(f64, f64)>,
}

fn run_original(
    python: &str,
    uri: &str,
    o: &Opts,
    server: &str,
    scen: &str,
) -> (Run, OriginalInfo) {
    let p = o.params();
    let mut run = Run {
        label: "original (Python)".into(),
        server: server.into(),
        original: true,
        ..Run::default()
    };
    let script = repo_root().join("examples/bench/original.py");
    eprintln!("bench: original: scenarios {scen} with {python}");
    let output = Command::new(python)
        .arg(&script)
        // The URI may carry a password: in the environment, not the
        // arguments.
        .env(targets::CHILD_MONGODB_URI, uri)
        .args(["--db", "shylock_bench_py", "--scenarios", scen])
        .args(["--a-secs", &p.a_secs.to_string()])
        .args(["--b-rounds", &p.b_rounds.to_string()])
        .args(["--hold-ms", &p.hold_ms.to_string()])
        .args(["--c-procs", &p.c_procs.to_string()])
        .args(["--c-tasks", &p.c_tasks.to_string()])
        .args(["--c-secs", &p.c_secs.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            // Its stderr (and its children's) goes on to ours; the
            // exceptions that killed a child process are kept, to say why
            // the scenario failed.
            let stderr = child.stderr.take();
            let reader = std::thread::spawn(move || {
                let mut raised: Vec<String> = Vec::new();
                for line in stderr
                    .into_iter()
                    .flat_map(|e| BufReader::new(e).lines().map_while(Result::ok))
                {
                    eprintln!("{line}");
                    if python_exception(&line) && !raised.contains(&line) {
                        raised.push(line);
                    }
                }
                raised
            });
            let out = child.wait_with_output();
            let raised = reader.join().unwrap_or_default();
            out.map(|o| (o, raised))
        });
    let mut raised = Vec::new();
    let parsed = output
        .map_err(|e| err(format!("could not run {python}: {e}")))
        .and_then(|(out, r)| {
            raised = r;
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            let last = text.lines().rev().find(|l| l.trim_start().starts_with('{'));
            match (out.status.success(), last) {
                (true, Some(line)) => Json::parse(line),
                _ => Err(err(format!("original.py failed ({})", out.status))),
            }
        });
    let j = match parsed {
        Ok(j) => j,
        Err(e) => {
            eprintln!("bench: original FAILED: {e}");
            run.skipped = Some(if raised.is_empty() {
                format!("failed: {e}")
            } else {
                format!("failed: {e}: {}", raised.join("; "))
            });
            return (run, OriginalInfo::default());
        }
    };
    let info = OriginalInfo {
        versions: j.str("versions").unwrap_or("?").to_owned(),
        workaround: j.str("workaround").unwrap_or("").to_owned(),
        server_cost: j
            .num("server_cost.original_ms")
            .zip(j.num("server_cost.shylock_ms")),
    };
    // A failed scenario: its error, and what killed a child process of it.
    let failed = |e: &str| {
        if raised.is_empty() {
            e.to_owned()
        } else {
            format!("{e}; a child process died of: {}", raised.join("; "))
        }
    };
    let a = |k: &str| -> Res<AResult> {
        let g = |f: &str| j.num(&format!("{k}.{f}"));
        j.get(k).map(|_| match j.str(&format!("{k}.error")) {
            Some(e) => Err(failed(e)),
            None => Ok(AResult {
                cycles_per_s: g("cycles_per_s").unwrap_or(f64::NAN),
                per_acquire: g("per_acquire").unwrap_or(f64::NAN),
                per_release: g("per_release").unwrap_or(f64::NAN),
                per_cycle: g("per_cycle").unwrap_or(f64::NAN),
                wire_per_cycle: g("per_cycle"),
                errors: Errors::default(),
            }),
        })
    };
    let b = |k: &str| -> Res<BResult> {
        let g = |f: &str| j.num(&format!("{k}.{f}")).unwrap_or(f64::NAN);
        j.get(k).map(|_| match j.str(&format!("{k}.error")) {
            Some(e) => Err(failed(e)),
            None => Ok(BResult {
                p50_ms: g("p50_ms"),
                p99_ms: g("p99_ms"),
                max_ms: g("max_ms"),
                waiter_calls: g("waiter_calls"),
                polls_per_s: g("polls_per_s"),
                commands_per_handoff: None,
                release_p50_ms: None,
                errors: Errors::default(),
            }),
        })
    };
    run.a_sync = a("a_sync");
    run.a_async = a("a_async");
    run.b_in = b("b_in");
    run.b_process = b("b_process");
    run.c = j.get("c").map(|_| match j.str("c.error") {
        Some(e) => Err(failed(e)),
        None => {
            let g = |f: &str| j.num(&format!("c.{f}")).unwrap_or(f64::NAN);
            Ok(CResult {
                grants: g("grants") as usize,
                grants_per_s: g("grants_per_s"),
                commands_per_grant: g("commands_per_grant"),
                wire_per_grant: Some(g("commands_per_grant")),
                max_gap_ms: g("max_gap_ms"),
                min_task: g("min_task") as usize,
                max_task: g("max_task") as usize,
                min_proc: usize::MAX,
                max_proc: usize::MAX,
                longest_wait_ms: f64::NAN,
                handed: usize::MAX,
                per_proc: Vec::new(),
                overlaps: g("overlaps") as usize,
                dup_tokens: usize::MAX,
                lost_on_release: usize::MAX,
                errors: Errors::default(),
            })
        }
    });
    (run, info)
}

/// Whether a line of Python's stderr is the last line of a traceback
/// (`pymongo.errors.OperationFailure: …`): the exception that ended a
/// process.
fn python_exception(line: &str) -> bool {
    let Some((name, _)) = line.split_once(": ") else {
        return false;
    };
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
        && ["Error", "Failure", "Exception", "Conflict"]
            .iter()
            .any(|end| name.ends_with(end))
}

// ---------------------------------------------------------------- report

/// The metric of the rows that count failed lock operations.
const ERRORS_METRIC: &str = "errors (failed lock operations, by kind)";

/// D's target (the issue's): this many blocking guards with renewal on in
/// one process ...
const D_TARGET_LOCKS: usize = 10_000;
/// ... in at most this many threads in the whole process ...
const D_TARGET_THREADS: usize = 8;
/// ... and at most this much RSS per guard.
const D_TARGET_BYTES: f64 = 4096.0;

/// The figures, if the scenario ran and did not fail.
fn ok<T>(r: &Res<T>) -> Option<&T> {
    r.as_ref().and_then(|r| r.as_ref().ok())
}

/// Text for a table cell: one line, no `|`, at most about 160 characters.
fn table_text(text: &str) -> String {
    let one: String = text
        .chars()
        .map(|c| match c {
            '|' => '/',
            '\n' | '\r' => ' ',
            c => c,
        })
        .collect();
    if one.chars().count() > 160 {
        let cut: String = one.chars().take(157).collect();
        format!("{cut}…")
    } else {
        one
    }
}

/// The errors row of a scenario: its failed operations by kind, what made
/// the whole scenario fail, or `n/a` for the original (which does not
/// count them).
fn errors_cell<T>(run: &Run, r: &Res<T>, f: impl Fn(&T) -> &Errors) -> String {
    match r {
        None => "–".into(),
        Some(Err(e)) => format!("run failed: {}", table_text(e)),
        Some(Ok(_)) if run.original => "n/a".into(),
        Some(Ok(v)) => f(v).to_string(),
    }
}

/// A warning for a renewal rate measured over a window shorter than the
/// renewal interval (which need not see any renewal).
fn short_window(d: &DResult) -> String {
    if d.window_s + 0.5 < d.interval_s {
        format!(
            " (window {:.0} s < renewal interval {:.0} s)",
            d.window_s, d.interval_s
        )
    } else {
        String::new()
    }
}

/// Whether D met the issue's target (`None` where fewer locks than the
/// target's were asked for).
fn d_target_met(d: &DResult) -> Option<bool> {
    (d.locks >= D_TARGET_LOCKS).then_some(
        d.held >= D_TARGET_LOCKS
            && d.held_at_end == d.held
            && d.threads_held <= D_TARGET_THREADS
            && d.bytes_per_lock <= D_TARGET_BYTES,
    )
}

/// The rows of the targets table for D: each backend, each API.
fn d_target_rows(runs: &[Run]) -> Vec<String> {
    let mut rows = Vec::new();
    for r in runs.iter().filter(|r| !r.original) {
        for form in Form::BOTH {
            let Some(res) = r.d(form) else {
                continue;
            };
            let (figures, met) = match res {
                Ok(d) => (
                    format!(
                        "{} of {} held ({} at the end), {} threads ({} before acquiring), \
                         {:.1} KiB per guard, {:.0} renewals/s (expected {:.0}){}, errors: {}",
                        d.held,
                        d.locks,
                        d.held_at_end,
                        d.threads_held,
                        d.threads_before,
                        d.bytes_per_lock / 1024.0,
                        d.renewals_per_s,
                        d.expected_per_s,
                        short_window(d),
                        d.errors
                    ),
                    match d_target_met(d) {
                        Some(true) => "yes".to_owned(),
                        Some(false) => "**no**".to_owned(),
                        None => format!("– ({} locks here)", d.locks),
                    },
                ),
                Err(e) => (format!("run failed: {}", table_text(e)), "**no**".into()),
            };
            // The issue's row "blocking, 50 ms added to every backend call".
            let slow = if r.kind == Some(Kind::MemorySlow) {
                format!(
                    ", {} ms added to every backend call",
                    SLOW_DELAY.as_millis()
                )
            } else {
                String::new()
            };
            rows.push(format!(
                "| D: {D_TARGET_LOCKS} guards held, renewal on, one process: {} API{slow} (`{}`) | \
                 {figures} | (no such feature) | | ≤ {D_TARGET_THREADS} threads in the process, \
                 ≤ {:.0} KiB RSS per guard, all held | {met} |\n",
                form.as_str(),
                r.label,
                D_TARGET_BYTES / 1024.0
            ));
        }
    }
    rows
}

/// Why D's target was missed, with this run's numbers.
fn d_notes(runs: &[Run]) -> Vec<String> {
    let mut missed = Vec::new();
    let mut own_thread = Vec::new();
    for r in runs.iter().filter(|r| !r.original) {
        for form in Form::BOTH {
            let Some(d) = ok(r.d(form)) else {
                continue;
            };
            if d_target_met(d) != Some(false) {
                continue;
            }
            missed.push(format!(
                "`{}` {}: {} threads, {:.1} KiB per guard, {} of {} held at the end",
                r.label,
                form.as_str(),
                d.threads_held,
                d.bytes_per_lock / 1024.0,
                d.held_at_end,
                d.locks
            ));
            let grown = d.threads_held.saturating_sub(d.threads_before);
            if d.held > 0 && grown * 10 >= d.held * 9 {
                own_thread.push(format!(
                    "`{}` {}: +{grown} threads for {} guards",
                    r.label,
                    form.as_str(),
                    d.held
                ));
            }
        }
    }
    let mut notes = Vec::new();
    if !missed.is_empty() {
        let mut n = format!(
            "D ({D_TARGET_LOCKS} guards in one process, at most {D_TARGET_THREADS} threads in all \
             and {:.0} KiB RSS per guard) missed: {}.",
            D_TARGET_BYTES / 1024.0,
            missed.join("; ")
        );
        if !own_thread.is_empty() {
            n.push_str(&format!(
                " The threads grew with the guards ({}): each held guard came with a thread of \
                 its own.",
                own_thread.join("; ")
            ));
        }
        notes.push(n);
    }
    notes
}

fn cell<T>(r: &Res<T>, f: impl Fn(&T) -> String) -> String {
    match r {
        None => "–".into(),
        Some(Err(_)) => "error".into(),
        Some(Ok(v)) => f(v),
    }
}

fn ms(v: f64) -> String {
    if v.is_nan() {
        "?".into()
    } else if v < 10.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.1}")
    }
}

fn ratio(a: f64, b: f64) -> f64 {
    a / b
}

/// The original's run beside our column `label`, if any.
fn original_of<'a>(
    originals: &'a [(Run, OriginalInfo)],
    label: &str,
) -> Option<&'a (Run, OriginalInfo)> {
    originals.iter().find(|(r, _)| r.of == label)
}

/// Our runs paired with the original's on the same server, in the order of
/// our columns (DocumentDB first).
fn pairs<'a>(
    runs: &'a [Run],
    originals: &'a [(Run, OriginalInfo)],
) -> Vec<(&'a Run, &'a Run, &'a OriginalInfo)> {
    runs.iter()
        .filter_map(|r| original_of(originals, &r.label).map(|(o, i)| (r, o, i)))
        .collect()
}

/// The rows of the targets table for A to C: ours against the original on
/// the same server (named in each row).
fn target_rows(ours: &Run, orig: &Run) -> String {
    let mut s = String::new();
    let on = format!(" on `{}`", ours.label);
    // A figure: not run (`None`), failed, or its value.
    let row = |name: &str,
               a: Res<f64>,
               b: Res<f64>,
               fmt: &dyn Fn(f64) -> String,
               goal: &str,
               ok: &dyn Fn(f64) -> bool| {
        let text = |v: &Res<f64>| match v {
            None => "–".to_owned(),
            Some(Err(_)) => "run failed".to_owned(),
            Some(Ok(v)) => fmt(*v),
        };
        let (ac, bc) = (text(&a), text(&b));
        let (rc, met) = match (a, b) {
            (Some(Ok(a)), Some(Ok(b))) => {
                let r = ratio(a, b);
                let met = if goal.starts_with("ratio") {
                    "–"
                } else if ok(r) {
                    "yes"
                } else {
                    "**no**"
                };
                (format!("{r:.2}×"), met)
            }
            _ => ("–".into(), "–"),
        };
        format!("| {name}{on} | {ac} | {bc} | {rc} | {goal} | {met} |\n")
    };
    /// One figure of a scenario's result.
    fn fig<T>(r: &Res<T>, f: impl Fn(&T) -> f64) -> Res<f64> {
        r.as_ref().map(|r| r.as_ref().map(&f).map_err(Clone::clone))
    }
    let cycles = |r: &Res<AResult>| fig(r, |a| a.cycles_per_s);
    let per_s = |v: f64| format!("{v:.0}/s");
    s.push_str(&row(
        "A blocking cycles/s (vs pymongo)",
        cycles(&ours.a_sync),
        cycles(&orig.a_sync),
        &per_s,
        "ratio (judged on `documentdb`; no target: two commands per cycle in both designs)",
        &|_| true,
    ));
    s.push_str(&row(
        "A async cycles/s (vs motor)",
        cycles(&ours.a_async),
        cycles(&orig.a_async),
        &per_s,
        "ratio (judged on `documentdb`; no target: two commands per cycle in both designs)",
        &|_| true,
    ));
    let exact = |r: &Res<AResult>| {
        r.as_ref().and_then(|r| r.as_ref().ok()).map(|a| {
            let one = |x: f64| (x - 1.0).abs() < 1e-9;
            (
                one(a.per_acquire) && one(a.per_release),
                format!("{:.3} + {:.3}", a.per_acquire, a.per_release),
            )
        })
    };
    for (name, r, o2) in [
        ("A blocking", &ours.a_sync, &orig.a_sync),
        ("A async", &ours.a_async, &orig.a_async),
    ] {
        if let Some((good, text)) = exact(r) {
            let other = exact(o2).map_or("–".into(), |(_, t)| t);
            let _ = writeln!(
                s,
                "| {name}: commands per acquire + per release{on} | {text} | {other} | | exactly 1 + 1 | {} |",
                if good { "yes" } else { "**no**" }
            );
        }
    }
    let p50 = |r: &Res<BResult>| fig(r, |b| b.p50_ms);
    let msf = |v: f64| format!("{} ms", ms(v));
    s.push_str(&row(
        "B handoff p50, in-process",
        p50(&ours.b_in),
        p50(&orig.b_in),
        &msf,
        "≤ 0.2×",
        &|r| r <= 0.2,
    ));
    s.push_str(&row(
        "B handoff p50, across processes",
        p50(&ours.b_process),
        p50(&orig.b_process),
        &msf,
        "≤ 0.2×",
        &|r| r <= 0.2,
    ));
    s.push_str(&row(
        "B handoff p50, in-process, handoff on vs off (same run)",
        p50(&ours.b_in),
        p50(&ours.b_in_off),
        &msf,
        "≤ 0.5× (issue 21)",
        &|r| r <= 0.5,
    ));
    if let Some(b) = ok(&ours.b_in) {
        let calls = b.commands_per_handoff.unwrap_or(f64::NAN);
        let _ = writeln!(
            s,
            "| B in-process: backend calls per handoff{on} | {calls:.2} | n/a | | 1 (issue 21) | {} |",
            if (calls - 1.0).abs() < 0.05 {
                "yes"
            } else {
                "**no**"
            }
        );
    }
    s.push_str(&row(
        "C grants/s (vs the original)",
        fig(&ours.c, |c| c.grants_per_s),
        fig(&orig.c, |c| c.grants_per_s),
        &per_s,
        "ratio",
        &|_| true,
    ));
    if let Some(c) = ok(&ours.c) {
        let _ = writeln!(
            s,
            "| C commands per grant{on} | {:.2} | {} | | ≤ 1.3 (issue 21) | {} |",
            c.commands_per_grant,
            ok(&orig.c).map_or("–".into(), |o| format!("{:.2}", o.commands_per_grant)),
            if c.commands_per_grant <= 1.3 {
                "yes"
            } else {
                "**no**"
            }
        );
        let spread = c.max_proc as f64 / c.min_proc.max(1) as f64;
        let _ = writeln!(
            s,
            "| C grants of the most / the least served process{on} | {} / {} | | {spread:.2}× | ≤ 2× | {} |",
            c.max_proc,
            c.min_proc,
            if spread <= 2.0 { "yes" } else { "**no**" }
        );
    }
    s.push_str(&row(
        "C grants/s, handoff on vs off (same run)",
        fig(&ours.c, |c| c.grants_per_s),
        fig(&ours.c_off, |c| c.grants_per_s),
        &per_s,
        "≥ 2× (issue 21)",
        &|r| r >= 2.0,
    ));
    if let Some(c) = ok(&ours.c_lop) {
        let equal = c.grants as f64 / c.per_proc.len().max(1) as f64;
        let lone_min = c.per_proc.iter().skip(1).copied().min().unwrap_or(0);
        let share = lone_min as f64 / equal.max(1.0);
        let _ = writeln!(
            s,
            "| C lopsided (4+1+1+1 tasks): the least served lone process's grants, of an equal share{on} | {lone_min} of {equal:.0} | | {share:.2}× | ≥ 0.5× | {} |",
            if share >= 0.5 { "yes" } else { "**no**" }
        );
    }
    s
}

fn render(runs: &[Run], originals: &[(Run, OriginalInfo)], o: &Opts, notes: &[String]) -> String {
    let p = o.params();
    // Ours, with the original's columns after the last MongoDB-protocol one
    // of ours: memory | documentdb | ferretdb | original on documentdb |
    // original on ferretdb | arango-emulator.
    let last_mongo = runs
        .iter()
        .rposition(|r| original_of(originals, &r.label).is_some());
    let mut cols: Vec<&Run> = Vec::new();
    for (i, r) in runs.iter().enumerate() {
        cols.push(r);
        if Some(i) == last_mongo {
            cols.extend(originals.iter().map(|(orig, _)| orig));
        }
    }
    let command = std::env::var("SHYLOCK_BENCH_COMMAND").unwrap_or_else(|_| {
        let mut c =
            "cargo run --release -p shylock-examples --example bench --features mongo,arango --"
                .to_owned();
        for a in &o.args {
            c.push(' ');
            c.push_str(a);
        }
        c
    });
    let mut s = String::new();
    let _ = writeln!(s, "## Benchmarks\n");
    let _ = writeln!(s, "- Date: {}", utc_now());
    let _ = writeln!(s, "- Machine: {}", machine());
    for r in runs {
        let _ = writeln!(s, "- Server of `{}`: {}", r.label, r.server);
    }
    let _ = writeln!(s, "- Command: `{command}`");
    if !originals.is_empty() {
        let versions = originals
            .iter()
            .map(|(_, i)| i.versions.as_str())
            .find(|v| !v.is_empty())
            .unwrap_or("?");
        let beside = originals
            .iter()
            .map(|(r, _)| format!("`{}` beside `{}`", r.label, r.of))
            .collect::<Vec<_>>()
            .join(", ");
        let _ = writeln!(
            s,
            "- Original: {versions} on the same servers as ours ({beside}), run by \
             `examples/bench/original.py`"
        );
    }
    let b = &p.backoff;
    // D's count where it differs (FerretDB).
    let d_other: Vec<String> = runs
        .iter()
        .filter_map(|r| {
            let d = Form::BOTH.iter().find_map(|f| ok(r.d(*f)))?;
            (d.locks != p.d_locks).then(|| format!("{} on `{}`", d.locks, r.label))
        })
        .collect();
    // D's acquisitions at once where they differ (`memory-slow`).
    let acquirers_other: Vec<String> = runs
        .iter()
        .filter(|r| r.d_acquirers != p.d_acquirers && Form::BOTH.iter().any(|f| r.d(*f).is_some()))
        .map(|r| format!("; {} on `{}`", r.d_acquirers, r.label))
        .collect();
    let _ = writeln!(
        s,
        "- Parameters: A {} s per API; B {} handoffs per variant, hold uniform in [{:.0}, {:.0}] ms; \
         C {} processes × {} tasks × {} s; D {} locks{} per API (acquired and released {} at a \
         time: tasks in the async API, threads in the blocking one{}), lease 30 s renewed every \
         10 s, window {} s; \
         waiters' backoff in B and C: initial {:?}, max {:?}, factor {}, jitter [d/2, d]; \
         one acquisition waits at most {} s",
        p.a_secs,
        p.b_rounds,
        p.hold_ms * 0.5,
        p.hold_ms * 1.5,
        p.c_procs,
        p.c_tasks,
        p.c_secs,
        p.d_locks,
        if d_other.is_empty() {
            String::new()
        } else {
            format!(" ({})", d_other.join(", "))
        },
        p.d_acquirers,
        acquirers_other.concat(),
        p.d_secs,
        b.initial,
        b.max,
        b.factor,
        scenarios::OP_LIMIT.as_secs()
    );
    let _ = writeln!(s);

    // The targets: our MongoDB figures against the original's on the same
    // server (DocumentDB first), and D's figures on every backend.
    let vs_original = pairs(runs, originals);
    let d_rows = d_target_rows(runs);
    if !vs_original.is_empty() || !d_rows.is_empty() {
        let _ = writeln!(s, "### Targets\n");
        if !vs_original.is_empty() {
            let servers = vs_original
                .iter()
                .map(|(ours, _, _)| format!("`{}`", ours.label))
                .collect::<Vec<_>>()
                .join(", then ");
            let _ = write!(
                s,
                "A to C: MongoDB protocol, against the original on the same server: {servers}{}. ",
                if vs_original
                    .iter()
                    .any(|(ours, _, _)| ours.kind == Some(Kind::DocumentDb))
                    && vs_original.iter().any(|(ours, _, _)| ours.ferretdb)
                {
                    " (DocumentDB is the engine to judge by: atomic across connections, as real \
                     MongoDB; FerretDB v1 is not)"
                } else {
                    ""
                }
            );
        }
        let _ = writeln!(
            s,
            "D: one process holding many guards with renewal on, on each backend, each API in a \
             fresh child process; the issue's target is for {D_TARGET_LOCKS} guards in one \
             process, so it is judged only where that many were asked for.\n"
        );
        let _ = writeln!(s, "| target | shylock | original | ratio | goal | met |");
        let _ = writeln!(s, "|---|---:|---:|---:|---|---|");
    }
    for (ours, orig, _) in &vs_original {
        s.push_str(&target_rows(ours, orig));
    }
    if !vs_original.is_empty() || !d_rows.is_empty() {
        for row in &d_rows {
            s.push_str(row);
        }
        let _ = writeln!(s);
    }

    // All figures.
    let _ = writeln!(s, "### All figures\n");
    let _ = write!(s, "| scenario | metric |");
    for c in &cols {
        let _ = write!(s, " {} |", c.label);
    }
    let _ = write!(s, "\n|---|---|");
    for _ in &cols {
        let _ = write!(s, "---:|");
    }
    let _ = writeln!(s);
    let mut line = |sc: &str, metric: &str, f: &dyn Fn(&Run) -> String| {
        let _ = write!(s, "| {sc} | {metric} |");
        for c in &cols {
            let v = if c.skipped.is_some() {
                "not run".into()
            } else {
                f(c)
            };
            let _ = write!(s, " {v} |");
        }
        let _ = writeln!(s);
    };
    for (sc, pick) in [
        (
            "A blocking",
            (|r: &Run| &r.a_sync) as fn(&Run) -> &Res<AResult>,
        ),
        ("A async", |r: &Run| &r.a_async),
    ] {
        line(sc, "cycles/s", &|r| {
            cell(pick(r), |a| format!("{:.0}", a.cycles_per_s))
        });
        line(sc, "round trips per acquire + per release", &|r| {
            cell(pick(r), |a| {
                format!("{:.3} + {:.3}", a.per_acquire, a.per_release)
            })
        });
        line(sc, "round trips per cycle, all (driver-monitored)", &|r| {
            cell(pick(r), |a| match a.wire_per_cycle {
                Some(w) => format!("{:.3} ({w:.3})", a.per_cycle),
                None => format!("{:.3}", a.per_cycle),
            })
        });
        line(sc, ERRORS_METRIC, &|r| {
            errors_cell(r, pick(r), |a| &a.errors)
        });
    }
    for (sc, pick) in [
        (
            "B in-process",
            (|r: &Run| &r.b_in) as fn(&Run) -> &Res<BResult>,
        ),
        ("B in-process, handoff off", |r: &Run| &r.b_in_off),
        ("B across processes", |r: &Run| &r.b_process),
    ] {
        line(sc, "handoff p50 / p99 / max (ms)", &|r| {
            cell(pick(r), |b| {
                format!("{} / {} / {}", ms(b.p50_ms), ms(b.p99_ms), ms(b.max_ms))
            })
        });
        line(sc, "waiter's acquire requests per handoff", &|r| {
            cell(pick(r), |b| format!("{:.1}", b.waiter_calls))
        });
        line(sc, "waiter's polls per second of waiting", &|r| {
            cell(pick(r), |b| format!("{:.1}", b.polls_per_s))
        });
        line(
            sc,
            "backend calls per handoff (release or hand-over, acquires)",
            &|r| {
                cell(pick(r), |b| match b.commands_per_handoff {
                    Some(c) => format!("{c:.2}"),
                    None => "n/a".into(),
                })
            },
        );
        line(
            sc,
            "holder's release call p50 (ms): its hand-over or release",
            &|r| {
                cell(pick(r), |b| match b.release_p50_ms {
                    Some(c) => ms(c),
                    None => "n/a".into(),
                })
            },
        );
        line(sc, ERRORS_METRIC, &|r| {
            errors_cell(r, pick(r), |b| &b.errors)
        });
    }
    let sc = format!("C {}×{}×{} s", p.c_procs, p.c_tasks, p.c_secs);
    line(&sc, "grants/s (grants)", &|r| {
        cell(&r.c, |c| format!("{:.0} ({})", c.grants_per_s, c.grants))
    });
    line(&sc, "round trips per grant (driver-monitored)", &|r| {
        cell(&r.c, |c| match c.wire_per_grant {
            Some(w) if !r.original && r.kind.is_some_and(Kind::is_mongo) => {
                format!("{:.2} ({w:.2})", c.commands_per_grant)
            }
            _ => format!("{:.2}", c.commands_per_grant),
        })
    });
    line(&sc, "largest gap between grants (ms)", &|r| {
        cell(&r.c, |c| ms(c.max_gap_ms))
    });
    line(&sc, "grants per task, min – max", &|r| {
        cell(&r.c, |c| format!("{} – {}", c.min_task, c.max_task))
    });
    line(
        &sc,
        "double grants: overlaps / repeated tokens / releases finding another owner",
        &|r| {
            cell(&r.c, |c| {
                let na = |v: usize| {
                    if v == usize::MAX {
                        "n/a".to_owned()
                    } else {
                        v.to_string()
                    }
                };
                format!(
                    "{} / {} / {}",
                    c.overlaps,
                    na(c.dup_tokens),
                    na(c.lost_on_release)
                )
            })
        },
    );
    line(&sc, ERRORS_METRIC, &|r| errors_cell(r, &r.c, |c| &c.errors));
    for (sc, pick) in [
        (
            format!("C {}×{}×{} s", p.c_procs, p.c_tasks, p.c_secs),
            (|r: &Run| &r.c) as fn(&Run) -> &Res<CResult>,
        ),
        (
            format!("C {}×{}×{} s, handoff off", p.c_procs, p.c_tasks, p.c_secs),
            |r: &Run| &r.c_off,
        ),
        (
            format!("C lopsided 4+1+1+1 tasks × {} s", p.c_secs),
            |r: &Run| &r.c_lop,
        ),
    ] {
        let mine = |r: &Run| !r.original;
        if sc.contains(",") || sc.contains("lopsided") {
            line(&sc, "grants/s (grants)", &|r| {
                if !mine(r) {
                    return "n/a".into();
                }
                cell(pick(r), |c| format!("{:.0} ({})", c.grants_per_s, c.grants))
            });
            line(&sc, "round trips per grant", &|r| {
                if !mine(r) {
                    return "n/a".into();
                }
                cell(pick(r), |c| format!("{:.2}", c.commands_per_grant))
            });
        }
        line(&sc, "grants per process, min – max (ratio)", &|r| {
            if !mine(r) {
                return "n/a".into();
            }
            cell(pick(r), |c| {
                format!(
                    "{} – {} ({:.2})",
                    c.min_proc,
                    c.max_proc,
                    c.max_proc as f64 / c.min_proc.max(1) as f64
                )
            })
        });
        line(&sc, "grants per process, in order", &|r| {
            if !mine(r) {
                return "n/a".into();
            }
            cell(pick(r), |c| {
                c.per_proc
                    .iter()
                    .map(usize::to_string)
                    .collect::<Vec<_>>()
                    .join(" / ")
            })
        });
        line(&sc, "grants per task, min – max", &|r| {
            if !mine(r) {
                return "n/a".into();
            }
            cell(pick(r), |c| format!("{} – {}", c.min_task, c.max_task))
        });
        line(&sc, "longest wait of a task for one grant (ms)", &|r| {
            if !mine(r) {
                return "n/a".into();
            }
            cell(pick(r), |c| ms(c.longest_wait_ms))
        });
        line(&sc, "grants handed over in process", &|r| {
            if !mine(r) {
                return "n/a".into();
            }
            cell(pick(r), |c| c.handed.to_string())
        });
        if sc.contains(',') || sc.contains("lopsided") {
            line(&sc, ERRORS_METRIC, &|r| {
                if !mine(r) {
                    return "n/a".into();
                }
                errors_cell(r, pick(r), |c| &c.errors)
            });
        }
    }
    line(
        "C handoff on / off",
        "grants/s ratio",
        &|r| match (ok(&r.c), ok(&r.c_off)) {
            (Some(on), Some(off)) if !r.original => {
                format!("{:.2}", ratio(on.grants_per_s, off.grants_per_s))
            }
            _ => "n/a".into(),
        },
    );
    for form in Form::BOTH {
        let sc = format!("D many locks, {}", form.as_str());
        line(
            &sc,
            "locks held of asked; seconds to acquire / release them all",
            &|r| {
                cell(r.d(form), |d| {
                    format!(
                        "{} of {}; {:.1} / {:.1}",
                        d.held, d.locks, d.acquire_s, d.release_s
                    )
                })
            },
        );
        line(&sc, "renewal round trips/s (expected)", &|r| {
            cell(r.d(form), |d| {
                format!(
                    "{:.0} ({:.0}){}",
                    d.renewals_per_s,
                    d.expected_per_s,
                    short_window(d)
                )
            })
        });
        line(&sc, "client memory per held lock (RSS delta)", &|r| {
            cell(r.d(form), |d| {
                format!("{:.1} KiB", d.bytes_per_lock / 1024.0)
            })
        });
        line(&sc, "client CPU while renewing (% of a core)", &|r| {
            cell(r.d(form), |d| format!("{:.1}", d.cpu_pct))
        });
        line(
            &sc,
            "threads in the process while held (before acquiring)",
            &|r| {
                cell(r.d(form), |d| {
                    format!("{} ({})", d.threads_held, d.threads_before)
                })
            },
        );
        line(&sc, "held at the end of the window", &|r| {
            cell(r.d(form), |d| format!("{} / {}", d.held_at_end, d.held))
        });
        line(&sc, ERRORS_METRIC, &|r| {
            errors_cell(r, r.d(form), |d| &d.errors)
        });
    }
    let _ = writeln!(s);

    let sweeps: Vec<&Run> = runs.iter().filter(|r| !r.sweep.is_empty()).collect();
    for r in sweeps {
        let _ = writeln!(
            s,
            "### B across processes, by the waiters' backoff ({})\n",
            r.label
        );
        let _ = writeln!(
            s,
            "| backoff initial, max, factor | p50 (ms) | p99 (ms) | max (ms) | waiter's polls per s of waiting | errors |"
        );
        let _ = writeln!(s, "|---|---:|---:|---:|---:|---|");
        if let Some(Ok(x)) = &r.b_process {
            let b = o.params().backoff;
            let _ = writeln!(
                s,
                "| {:?}, {:?}, {} (this run's, as in B above) | {} | {} | {} | {:.1} | {} |",
                b.initial,
                b.max,
                b.factor,
                ms(x.p50_ms),
                ms(x.p99_ms),
                ms(x.max_ms),
                x.polls_per_s,
                x.errors
            );
        }
        for (b, res) in &r.sweep {
            let _ = match res {
                Ok(x) => writeln!(
                    s,
                    "| {:?}, {:?}, {} | {} | {} | {} | {:.1} | {} |",
                    b.initial,
                    b.max,
                    b.factor,
                    ms(x.p50_ms),
                    ms(x.p99_ms),
                    ms(x.max_ms),
                    x.polls_per_s,
                    x.errors
                ),
                Err(e) => writeln!(
                    s,
                    "| {:?}, {:?}, {} | | | | | run failed: {} |",
                    b.initial,
                    b.max,
                    b.factor,
                    table_text(e)
                ),
            };
        }
        if let Some((orig, _)) = original_of(originals, &r.label)
            && let Some(Ok(x)) = &orig.b_process
        {
            let _ = writeln!(
                s,
                "| original (fixed 62.5 ms) | {} | {} | {} | {:.1} | n/a |",
                ms(x.p50_ms),
                ms(x.p99_ms),
                ms(x.max_ms),
                x.polls_per_s
            );
        }
        let _ = writeln!(s);
    }

    let _ = writeln!(s, "Notes:\n");
    for (ours, orig, info) in pairs(runs, originals) {
        for n in miss_notes(ours, orig, info) {
            let _ = writeln!(s, "- `{}` against `{}`: {n}", ours.label, orig.label);
        }
    }
    for n in notes {
        let _ = writeln!(s, "- {n}");
    }
    for (orig, info) in originals {
        if !info.workaround.is_empty() {
            let _ = writeln!(s, "- `{}`: {}", orig.label, info.workaround);
        }
    }
    for n in original_failure_notes(originals) {
        let _ = writeln!(s, "- {n}");
    }
    for n in d_notes(runs) {
        let _ = writeln!(s, "- {n}");
    }
    let mut errors = Vec::new();
    for c in &cols {
        if let Some(why) = &c.skipped {
            errors.push(format!("`{}` not run: {why}", c.label));
        }
        for (what, e) in c.failures() {
            if let Some(e) = e {
                errors.push(format!("`{}` {what} failed: {e}", c.label));
            }
        }
    }
    for e in errors {
        let _ = writeln!(s, "- {e}");
    }
    s
}

/// Why a target was missed, with this run's numbers.
fn miss_notes(ours: &Run, orig: &Run, info: &OriginalInfo) -> Vec<String> {
    let mut notes = Vec::new();
    let server = info.server_cost.map(|(o, y)| {
        format!(
            "driven by one and the same client (pymongo), the server itself needs {o:.2} ms for \
             the original's uncontended cycle (insert + delete by name) and {y:.2} ms for \
             shylock's (two findAndModify, {:.1}× as long){}. At {o:.2} ms, the server alone caps \
             the original at {:.0} cycles/s; 2× that would need shylock's cycle to cost the \
             server at most {:.2} ms, half the original's{}",
            y / o,
            if ours.ferretdb {
                ": FerretDB v1 executes an update of an existing document (read, decode, modify, \
                 write back) much more slowly than an insert or a delete, and `$inc` adds to it"
            } else {
                ""
            },
            1000.0 / o,
            o / 2.0,
            if ours.ferretdb {
                ", which no conditional-update design gets from FerretDB (real MongoDB runs an \
                 `_id` findAndModify at about the cost of an insert)"
            } else {
                ""
            },
        )
    });
    let a_missed = [(&ours.a_sync, &orig.a_sync), (&ours.a_async, &orig.a_async)]
        .iter()
        .filter_map(|(a, b)| Some(ok(a)?.cycles_per_s / ok(b)?.cycles_per_s))
        .filter(|r| *r < 2.0)
        .map(|r| format!("{r:.2}×"))
        .collect::<Vec<_>>();
    if !a_missed.is_empty() {
        notes.push(format!(
            "A (cycles/s ≥ 2×) missed: {} of the 2× asked. The cycle is bound by the server, not \
             by the client (the in-memory backend runs the same client code at tens of thousands \
             of cycles/s): {}.",
            a_missed.join(" and "),
            server
                .clone()
                .unwrap_or_else(|| "see the server-cost probe of original.py".into())
        ));
    }
    if let (Some(a), Some(b)) = (ok(&ours.b_process), ok(&orig.b_process))
        && a.p50_ms / b.p50_ms > 0.2
    {
        notes.push(format!(
            "B across processes (p50 ≤ 0.2×) missed: {:.2}× ({} ms against {} ms). A waiter in \
             another process learns of a release only by polling, as the original's does; the \
             latency is about half a polling interval plus a round trip. The original polls every \
             62.5 ms per waiter ({:.1} polls/s of waiting here); shylock polls once per process \
             and name, with a backoff from 5 ms doubling to 50 ms ({:.1} polls/s here), and not \
             at all while a holder in its own process has the lock. A p50 of 1/5 of the \
             original's needs a poll every ~{:.0} ms, i.e. several times the original's load; \
             the table \"B across processes, by the waiters' backoff\" measures the trade-off. \
             Real MongoDB change streams (replica sets) could push releases to waiters; FerretDB \
             v1, DocumentDB's gateway and ArangoDB have nothing of the kind.",
            a.p50_ms / b.p50_ms,
            ms(a.p50_ms),
            ms(b.p50_ms),
            b.polls_per_s,
            a.polls_per_s,
            (b.p50_ms * 0.2 * 2.0).max(1.0),
        ));
    }
    if let (Some(a), Some(b)) = (ok(&ours.c), ok(&orig.c)) {
        let r = a.grants_per_s / b.grants_per_s;
        if r < 2.0 {
            notes.push(format!(
                "C (grants/s ≥ 2×) missed: {r:.2}×. Every grant costs the server an acquire and a \
                 release, as in A{}.",
                if server.is_some() {
                    ", at the server costs measured for A"
                } else {
                    ""
                },
            ));
        }
        if a.commands_per_grant > b.commands_per_grant {
            notes.push(format!(
                "C (commands per grant ≤ the original's) missed: {:.2} against {:.2}. Each grant \
                 costs 2 commands (acquire, release) in both designs; the rest is polling. \
                 shylock's waiters poll once per process (not per task) and not at all while \
                 their own process holds the lock, but while another process holds it they poll \
                 with a backoff capped at 50 ms, faster than the original's fixed 62.5 ms: the \
                 price of B's shorter handoff across processes (with a 200 ms cap, an earlier run \
                 measured 2.30 against 2.50 commands per grant and B across processes at 1.00×).{}",
                a.commands_per_grant,
                b.commands_per_grant,
                if ours.ferretdb {
                    " On FerretDB, the double grants it causes also add releases that find \
                     another owner."
                } else {
                    ""
                }
            ));
        }
    }
    notes
}

fn standard_notes(runs: &[Run], o: &Opts) -> Vec<String> {
    let mut notes = vec![
        "Round trips are primitive calls (acquire, renew, release, inspect, server-time probe), \
         counted by a wrapper around the backend; each MongoDB and ArangoDB primitive is one \
         command or HTTP request. For MongoDB, the figure in parentheses is what the driver's \
         command monitoring saw. Both forms read the server clock once per handle and then every \
         60 s; A's count starts after a warm-up of 50 cycles, so that probe is not in it."
            .to_owned(),
        "B: latency is from the holder's call to `release` to the waiter's `acquire` returning, \
         measured with the wall clock shared by all processes of the machine. In-process, the \
         waiter shares the holder's handle and is woken by the release at once; across processes \
         it can only poll (with the backoff above), as the original polls every 62.5 ms."
            .to_owned(),
        "C: every task acquires and releases at once, in a loop. A double grant shows as an \
         overlap (a grant returned before the previous holder called release) or as a repeated \
         fencing token; the original has no tokens (n/a)."
            .to_owned(),
        format!(
            "D: each API runs in a child process of its own, so that memory and threads start \
             fresh. The async child runs a multi-thread tokio runtime (one worker per CPU) and \
             acquires and releases with tasks, {0} at a time; the blocking child has no \
             tokio runtime and acquires and releases from {0} threads (the main one among \
             them), which have ended before the window (other counts in the parameters \
             above). Threads are the `Threads:` line of the \
             child's /proc/self/status (the whole process: the caller's, the backend's and the \
             lock API's), the most seen after the acquisitions and every second of the hold, \
             with the count before acquiring in parentheses. Memory is the RSS delta from \
             before the first acquisition to after the last, per held lock; CPU is the child's \
             user + system time over the window.",
            o.params().d_acquirers
        ),
        format!(
            "Errors: every failed acquire or release is counted by kind (`timeout`: the \
             acquisition's limit of {} s passed; `backend-timeout`: a backend call ran out of its \
             time, its outcome unknown; `lease-lost`; `backend-<kind>`: another backend error) \
             and the scenario goes on; \"run failed\" says why a whole scenario (or its child \
             process) could not run. C's releases that found another owner are counted as \
             double grants, not here.",
            scenarios::OP_LIMIT.as_secs()
        ),
    ];
    if let Some(r) = runs.iter().find(|r| r.kind == Some(Kind::MemorySlow)) {
        notes.push(format!(
            "`{0}`: the in-memory backend with {1} ms added to every backend call (try_acquire, \
             renew, release, inspect, server_time), as a slow database would answer: a \
             `tokio::time::sleep` before the call in its async form, which locks of both forms \
             use (renewals and the blocking API's calls run as tasks on shylock's runtime \
             thread), a `std::thread::sleep` in its sync form. It shows whether blocking guards \
             need threads while calls take time: 10000 guards renewed every 10 s keep about 50 \
             renewals in flight. Only D runs on it, {2} acquisitions and releases at a time \
             (10000 one after another would take 500 s; the blocking API's acquiring threads \
             end before the window).",
            r.label,
            SLOW_DELAY.as_millis(),
            r.d_acquirers
        ));
    }
    if runs.iter().any(|r| r.label == "memory") {
        notes.push(
            "memory: \"across processes\" and C's processes are separate handles on one \
             `MemoryBackend` in one process (separate waiter coordination, as separate processes \
             would have), since an in-memory backend cannot be shared by processes."
                .into(),
        );
    }
    let doubles = |r: &Run| {
        matches!(&r.c, Some(Ok(c)) if c.overlaps > 0
            || (c.dup_tokens > 0 && c.dup_tokens != usize::MAX)
            || (c.lost_on_release > 0 && c.lost_on_release != usize::MAX))
    };
    if let Some(r) = runs.iter().find(|r| r.ferretdb && doubles(r)) {
        notes.push(format!(
            "`{}` C shows double grants: FerretDB v1 does not run a conditional update \
             atomically across connections (its issue 2168: it runs the query, then writes by \
             `_id`); real MongoDB and DocumentDB do. Never read multi-connection safety off \
             FerretDB. This is why shylock's MongoDB backend refuses FerretDB v1 unless opted in \
             (`MongoOptions::allow_non_atomic_server`); the benchmark opts in on the FerretDB it \
             starts (and only there) to measure speed and load on it.",
            r.label
        ));
    }
    if runs.iter().any(|r| r.kind == Some(Kind::DocumentDb)) {
        notes.push(
            "`documentdb`: DocumentDB (PostgreSQL with the `pg_documentdb` extensions and their \
             MongoDB-wire gateway, the open-source engine of Azure Cosmos DB for MongoDB vCore) \
             runs a single-document findAndModify atomically across connections, so shylock's \
             backend runs on it as on MongoDB, without `allow_non_atomic_server`: C's double \
             grants must be 0 there."
                .into(),
        );
    }
    for r in runs
        .iter()
        .filter(|r| !r.ferretdb && r.kind.is_some_and(Kind::is_mongo) && doubles(r))
    {
        notes.push(format!(
            "**`{}` C shows double grants on a server that is meant to be atomic across \
             connections: a bug, in shylock or in the server.**",
            r.label
        ));
    }
    notes
}

/// Why the original failed where it failed on a server error of its own
/// (DocumentDB's deadlock error under contention).
fn original_failure_notes(originals: &[(Run, OriginalInfo)]) -> Vec<String> {
    let mut notes = Vec::new();
    for (orig, _) in originals {
        let deadlocked: Vec<&str> = orig
            .failures()
            .into_iter()
            .filter_map(|(what, e)| {
                let e = e?;
                (e.contains("112") || e.to_lowercase().contains("deadlock")).then_some(what)
            })
            .collect();
        if !deadlocked.is_empty() {
            notes.push(format!(
                "`{}` failed in {}: the server answered one of the original's concurrent writes \
                 on the lock's record (its insert to acquire, its delete to release) with error \
                 112 (\"deadlock detected\": \"Could not acquire lock for operation due to \
                 deadlock\"), DocumentDB's PostgreSQL having found its writers waiting on each \
                 other; the original neither retries nor catches that error, so the worker \
                 process whose lock call met it died and the scenario has no figures. This is \
                 a result about the original on DocumentDB, not a failure of the benchmark (the \
                 command's exit status does not count it). shylock's MongoDB backend takes \
                 error 112 as a transient server error (`Unavailable`) that the lock call tries \
                 again; a lock operation that still failed would show in shylock's errors row.",
                orig.label,
                deadlocked.join(", ")
            ));
        }
    }
    notes
}

// ---------------------------------------------------------------- main

/// The multi-thread runtime of the parent and of the async children.
fn runtime() -> R<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

/// A child process: its role, on its own runtime (none for the blocking
/// D). A role returns `Ok` only when everything it started (tasks, guards,
/// backend calls) has ended, and the runtime is dropped after that; after a
/// failure the child says `FAILED <why>` and exits at once, without
/// shutting the runtime down under tasks that may still run.
fn child(role: &str, o: &Opts) {
    let fail = |e: BoxErr| -> ! {
        // The parent reads this line as what failed.
        println!("FAILED {}", e.to_string().replace('\n', " "));
        eprintln!("bench child {role}: {e}");
        std::process::exit(1);
    };
    if role == Form::Blocking.role() {
        // No tokio runtime: the process's threads are the blocking API's own
        // (and its backend's).
        if let Err(e) = child_main(role, o, None) {
            fail(e);
        }
        return;
    }
    let rt = runtime().unwrap_or_else(|e| fail(e));
    if let Err(e) = child_main(role, o, Some(&rt)) {
        fail(e);
    }
    drop(rt);
}

/// A child process's role.
fn child_main(role: &str, o: &Opts, rt: Option<&tokio::runtime::Runtime>) -> R<()> {
    let kind = *o
        .backends
        .first()
        .ok_or_else(|| err("child: no --backend"))?;
    let t = Target::for_child(
        kind,
        o.mongo_uri.clone(),
        o.arango_conn(),
        o.child_on_ferretdb,
    );
    let p = o.params();
    let Some(rt) = rt else {
        return match role {
            r if r == Form::Blocking.role() => scenarios::child_d_many_blocking(&t, &p),
            other => Err(err(format!("child role {other:?} needs a runtime"))),
        };
    };
    match role {
        "b-waiter" => rt.block_on(scenarios::child_b_waiter(&t, p.backoff)),
        "c-worker" => rt.block_on(scenarios::child_c_worker(
            o.c_lock.as_deref().unwrap_or("bench-c"),
            &t,
            p.c_tasks,
            p.c_secs,
            p.backoff,
            p.c_handoff,
        )),
        r if r == Form::Async.role() => rt.block_on(scenarios::child_d_many(&t, &p)),
        other => Err(err(format!("unknown child role {other:?}"))),
    }
}

fn main() {
    let o = match parse_args(std::env::args().skip(1).collect()) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("bench: {e}");
            std::process::exit(2);
        }
    };
    if let Some(role) = &o.child {
        child(role, &o);
        return;
    }
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("bench: no runtime: {e}");
            std::process::exit(1);
        }
    };
    let started = std::time::Instant::now();
    let mut runs = Vec::new();
    let mut originals = Vec::new();
    let mut notes = Vec::new();
    for kind in o.backends.clone() {
        let target = match kind {
            Kind::Memory => Ok(Target::memory()),
            Kind::MemorySlow => Ok(Target::memory_slow()),
            Kind::DocumentDb => Target::documentdb(o.documentdb_uri.as_deref()),
            Kind::Mongo => Target::mongo(o.mongo_uri.as_deref(), o.ferretdb.as_deref()),
            Kind::ArangoEmulator => Target::arango_emulator(),
            Kind::Arango => o
                .arango_conn()
                .map(Target::arango)
                .ok_or_else(|| err("--backend arango needs --arango-url")),
        };
        let target = match target {
            Ok(t) => t,
            Err(e) => {
                eprintln!("bench: {}: not run: {e}", kind.as_str());
                runs.push(Run {
                    label: kind.as_str().into(),
                    server: "–".into(),
                    kind: Some(kind),
                    skipped: Some(e.to_string()),
                    ..Run::default()
                });
                continue;
            }
        };
        let mut orig = None;
        if kind.is_mongo() && !o.no_original {
            match (&o.python, &target.mongo_uri) {
                (Some(python), Some(uri)) => {
                    orig = Some(OriginalRun {
                        python,
                        uri: uri.clone(),
                        run: Run {
                            label: format!("original on {}", target.label),
                            server: target.server.clone(),
                            original: true,
                            of: target.label.clone(),
                            ..Run::default()
                        },
                        info: OriginalInfo::default(),
                    });
                }
                _ => {
                    let n = "The original was not run: give --python (the virtualenv's python, \
                             as scripts/bench.sh does) or set SHYLOCK_BENCH_PYTHON."
                        .to_owned();
                    if !notes.contains(&n) {
                        notes.push(n);
                    }
                }
            }
        }
        runs.push(run_target(&target, &o, &rt, orig.as_mut()));
        if let Some(orig) = orig {
            originals.push((orig.run, orig.info));
        }
        // Dropping the target stops its server.
    }
    let mut all_notes = standard_notes(&runs, &o);
    all_notes.extend(notes);
    all_notes.push(format!(
        "The whole run took {:.0} s.",
        started.elapsed().as_secs_f64()
    ));
    let md = render(&runs, &originals, &o, &all_notes);
    print!("{md}");
    if let Some(path) = &o.out
        && let Err(e) = std::fs::write(path, &md)
    {
        eprintln!("bench: could not write {path}: {e}");
        std::process::exit(1);
    }
    // A scenario of ours that could not run at all fails the command (after
    // the table is written); counted errors of lock operations do not, nor
    // do the original's failures (figures about the original, in the table
    // and the notes: e.g. its crash on DocumentDB's deadlock error in C).
    let failed = runs
        .iter()
        .any(|r| r.failures().iter().any(|(_, e)| e.is_some()));
    if failed {
        std::process::exit(1);
    }
}
