//! The chaos suite at CI size, and its negative control.
//!
//! * MongoDB protocol: DocumentDB, every worker process (both forms) on its
//!   own connections through the pass-through proxy, `kill -9` and `SIGSTOP`
//!   of workers, `kill -9` and restart of the gateway and of PostgreSQL,
//!   blackholes, delays and connection resets. (FerretDB behind the
//!   serializing proxy is still a target of `shylock-chaos --target mongo`,
//!   not of CI: DocumentDB is the real engine.)
//! * The ArangoDB emulator as its own process: worker kills and pauses,
//!   `SIGSTOP` of the emulator.
//! * Negative control: the pass-through proxy (one FerretDB connection per
//!   client): FerretDB v1's updates are not atomic across connections, so
//!   the checker must report violations.
//!
//! Sizes can be changed with `SHYLOCK_CHAOS_ACQUISITIONS` and
//! `SHYLOCK_CHAOS_MAX_SECONDS` (scripts/chaos.sh --long uses the binary).

use std::time::Duration;

use shylock_chaos::control::{self, RunConfig, Target};
use shylock_testkit::proxy::Mode;

fn env_num(key: &str, default: u64) -> u64 {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// CI size: 13,000 acquisitions in all (5,000 on DocumentDB within 300 s;
/// 8,000 on the emulator, within 200 s), with at least 20 faults of each kind
/// on each (140 on DocumentDB, 60 on the emulator).
fn config(target: Target, dir: &tempfile::TempDir) -> RunConfig {
    let mut config = RunConfig::new(target, dir.path());
    config.worker_bin = env!("CARGO_BIN_EXE_shylock-chaos-worker").into();
    config.emulator_bin = env!("CARGO_BIN_EXE_shylock-chaos-emulator").into();
    let (acquisitions, max) = match target {
        Target::Emulator => (8_000, 200),
        Target::DocumentDb => (5_000, 300),
        Target::Mongo(_) => (2_000, 150),
    };
    config.acquisitions =
        usize::try_from(env_num("SHYLOCK_CHAOS_ACQUISITIONS", acquisitions)).unwrap_or(usize::MAX);
    config.max_duration = Duration::from_secs(env_num("SHYLOCK_CHAOS_MAX_SECONDS", max));
    config
}

/// The runs take the machine's cores: one at a time.
fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

fn run_and_check(target: Target) {
    let _one = one_at_a_time();
    let dir = tempfile::Builder::new()
        .prefix("shylock-chaos-")
        .tempdir()
        .expect("a temporary directory");
    let config = config(target, &dir);
    let outcome = control::run(&config).unwrap_or_else(|e| panic!("the run failed: {e}"));
    println!("{outcome}");
    let report = &outcome.report;
    let keep = || {
        let kept = dir.path().to_owned();
        std::mem::forget(dir);
        kept.display().to_string()
    };
    assert_eq!(report.violations(), 0, "{outcome}\nlogs kept in {}", keep());
    assert!(
        report.acquisitions >= config.acquisitions,
        "{outcome}\nonly {} acquisitions",
        report.acquisitions
    );
    for kind in target.fault_kinds() {
        let n = outcome.faults.get(kind).copied().unwrap_or(0);
        assert!(
            n >= config.faults_per_kind,
            "{outcome}\nonly {n} faults of kind {kind}"
        );
    }
}

#[test]
fn chaos_on_documentdb_every_worker_on_its_own_connections() {
    run_and_check(Target::DocumentDb);
}

#[test]
fn chaos_on_the_arango_emulator() {
    run_and_check(Target::Emulator);
}

#[test]
fn negative_control_pass_through_shows_violations() {
    let _one = one_at_a_time();
    let dir = tempfile::Builder::new()
        .prefix("shylock-chaos-neg-")
        .tempdir()
        .expect("a temporary directory");
    let mut config = config(Target::Mongo(Mode::PassThrough), &dir);
    config.inject = false;
    // One contender per process: every grant is raced for across
    // processes (with several, most grants are handoffs inside a process,
    // one command that never meets a competing writer, and the control
    // may see no double grant).
    config.contenders = 1;
    config.acquisitions = 1_000;
    config.max_duration = Duration::from_secs(30);
    let outcome = control::run(&config).unwrap_or_else(|e| panic!("the run failed: {e}"));
    println!("{outcome}");
    assert!(
        outcome.report.overlaps.len() + outcome.report.duplicates.len() > 0,
        "the pass-through proxy should let FerretDB grant the lock twice:\n{outcome}"
    );
}
