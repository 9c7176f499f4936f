//! The chaos controller's command line (used by `scripts/chaos.sh`).
//!
//! ```text
//! shylock-chaos [--target documentdb|mongo|emulator|pass-through|all] [--acquisitions N]
//!               [--faults-per-kind N] [--max-seconds N] [--workers N]
//!               [--contenders N] [--lease-ms N] [--poll-max-ms N]
//!               [--no-faults] [--dir DIR]
//! ```
//!
//! Prints each run's figures; exits with 1 if the checker found a violation
//! on `documentdb`, `mongo` or `emulator`, or found none on `pass-through` (the negative
//! control must fail).

use std::path::PathBuf;
use std::time::Duration;

use shylock_chaos::control::{self, RunConfig, Target};
use shylock_testkit::proxy::Mode;

fn arg(args: &[String], key: &str) -> Option<String> {
    args.iter()
        .position(|a| a == key)
        .and_then(|i| args.get(i + 1))
        .cloned()
}

fn num(args: &[String], key: &str, default: u64) -> u64 {
    match arg(args, key) {
        Some(v) => v.parse().unwrap_or_else(|_| {
            eprintln!("{key} needs a number, not {v:?}");
            std::process::exit(2)
        }),
        None => default,
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let targets = match arg(&args, "--target").as_deref().unwrap_or("all") {
        "documentdb" => vec![Target::DocumentDb],
        "mongo" => vec![Target::Mongo(Mode::Serializing)],
        "emulator" => vec![Target::Emulator],
        "pass-through" => vec![Target::Mongo(Mode::PassThrough)],
        "all" => vec![
            Target::DocumentDb,
            Target::Mongo(Mode::Serializing),
            Target::Emulator,
        ],
        other => {
            eprintln!("unknown target {other:?}");
            std::process::exit(2);
        }
    };
    let dir = match arg(&args, "--dir") {
        Some(d) => PathBuf::from(d),
        None => std::env::temp_dir().join(format!("shylock-chaos-{}", std::process::id())),
    };
    let mut failed = false;
    for target in targets {
        let mut config = RunConfig::new(target, &dir.join(format!("{target:?}").to_lowercase()));
        config.acquisitions =
            usize::try_from(num(&args, "--acquisitions", 10_000)).unwrap_or(usize::MAX);
        config.faults_per_kind =
            u32::try_from(num(&args, "--faults-per-kind", 20)).unwrap_or(u32::MAX);
        config.max_duration = Duration::from_secs(num(&args, "--max-seconds", 150));
        config.workers = usize::try_from(num(&args, "--workers", 4)).unwrap_or(4);
        config.contenders = usize::try_from(num(&args, "--contenders", 3)).unwrap_or(3);
        config.lease = Duration::from_millis(num(&args, "--lease-ms", 500));
        config.poll_max = Duration::from_millis(num(&args, "--poll-max-ms", 100));
        if args.iter().any(|a| a == "--no-faults") {
            config.inject = false;
        }
        if target == Target::Mongo(Mode::PassThrough) {
            config.inject = false;
        }
        match control::run(&config) {
            Ok(outcome) => {
                println!("{outcome}");
                println!("logs: {}\n", config.dir.display());
                let violations = outcome.report.violations() > 0;
                if violations != (target == Target::Mongo(Mode::PassThrough)) {
                    failed = true;
                }
            }
            Err(e) => {
                eprintln!("{}: {e}", target.name());
                failed = true;
            }
        }
    }
    std::process::exit(i32::from(failed));
}
