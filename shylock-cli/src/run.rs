//! `shylock run`: hold a lock while a command runs.

use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::ExitStatus;
use std::task::Poll;
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, kill_process, kill_process_group};
use shylock::{AsyncLock, AsyncLockGuard, Error, LockName, LockOptions, LossReason};
use tokio::signal::unix::{SignalKind, signal};

use crate::backend::{self, Connected};
use crate::cli::RunArgs;
use crate::exit::{self, Failure, one_line};
use crate::inspect::describe_holder;

/// The signals shylock catches: every catchable signal whose default
/// action would end it, but for those that report a fault of its own
/// (SIGILL, SIGTRAP, SIGABRT, SIGBUS, SIGFPE, SIGSEGV, SIGSYS) and SIGPIPE
/// (which Rust programs ignore: a closed pipe is a write error). While the
/// command runs they are passed on to it; before, they interrupt shylock
/// (exit 128 + N).
const CAUGHT: &[Signal] = &[
    Signal::HUP,
    Signal::INT,
    Signal::QUIT,
    Signal::TERM,
    Signal::USR1,
    Signal::USR2,
    Signal::ALARM,
    Signal::VTALARM,
    Signal::PROF,
    Signal::XCPU,
    Signal::XFSZ,
    #[cfg(any(target_os = "linux", target_os = "android"))]
    Signal::IO,
    #[cfg(any(target_os = "linux", target_os = "android"))]
    Signal::POWER,
    #[cfg(any(target_os = "linux", target_os = "android"))]
    Signal::STKFLT,
];

/// The signals ignored (SIG_IGN) when shylock started, as a mask (bit N-1
/// for signal N), from `/proc/self/status`; none where that cannot be read.
fn ignored_at_start() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("SigIgn:"))
                .and_then(|mask| u64::from_str_radix(mask.trim(), 16).ok())
        })
        .unwrap_or(0)
}

/// The caught signals (see [`CAUGHT`]), received as events. A signal that
/// was ignored when shylock started (SIGHUP under `nohup`) is not caught:
/// it stays ignored, for shylock and for the command, which inherits it
/// ignored.
pub struct Signals {
    streams: Vec<(Signal, tokio::signal::unix::Signal)>,
}

impl Signals {
    pub fn new() -> Result<Self, Failure> {
        let ignored = ignored_at_start();
        let mut streams = Vec::new();
        for &sig in CAUGHT {
            let bit = u32::try_from(sig.as_raw() - 1)
                .ok()
                .and_then(|n| 1u64.checked_shl(n))
                .unwrap_or(0);
            if ignored & bit != 0 {
                continue;
            }
            let stream = signal(SignalKind::from_raw(sig.as_raw()))
                .map_err(|e| Failure::new(exit::SOFTWARE, format!("cannot handle signals: {e}")))?;
            streams.push((sig, stream));
        }
        Ok(Signals { streams })
    }

    /// The next signal: its rustix form and its number.
    pub async fn recv(&mut self) -> (Signal, i32) {
        std::future::poll_fn(|cx| {
            for (sig, stream) in &mut self.streams {
                if let Poll::Ready(Some(())) = stream.poll_recv(cx) {
                    return Poll::Ready((*sig, sig.as_raw()));
                }
            }
            Poll::Pending
        })
        .await
    }
}

/// What ended the wait for the child.
enum End {
    /// The command exited; the loss, if the lease was not valid any more
    /// when that was seen.
    Exited(ExitStatus, Option<LossReason>),
    Lost(LossReason),
}

pub async fn run(args: RunArgs) -> i32 {
    let mut signals = match Signals::new() {
        Ok(s) => s,
        Err(f) => return exit::report(&f),
    };
    match run_inner(&args, &mut signals).await {
        Ok(code) => code,
        Err(f) => exit::report(&f),
    }
}

fn interrupted(sig: i32, when: &str) -> Failure {
    Failure::new(128 + sig, format!("interrupted by signal {sig} {when}"))
}

async fn run_inner(args: &RunArgs, signals: &mut Signals) -> Result<i32, Failure> {
    let started = Instant::now();
    let name = LockName::new(args.name.clone()).map_err(|e| Failure::from_lock_error(&e))?;
    let options = LockOptions::default().lease(args.lease);
    options
        .validate()
        .map_err(|e| Failure::from_lock_error(&e))?;
    let conflict = i32::from(args.conflict_exit_code);
    let lost_code = i32::from(args.lost_exit_code);
    let bound = args
        .timeout
        .map_or(args.backend.connect_timeout, |t| {
            t.min(args.backend.connect_timeout)
        })
        .max(Duration::from_millis(100));

    let Connected { handle } = tokio::select! {
        connected = backend::connect(&args.backend, bound, false) => connected?,
        (_, sig) = signals.recv() => return Err(interrupted(sig, "while connecting")),
    };
    let lock = AsyncLock::with_backend(name.as_str(), &handle).options(options);

    let acquired = tokio::select! {
        acquired = acquire(args, &lock, started, bound, conflict) => acquired,
        (_, sig) = signals.recv() => Err(interrupted(sig, "while waiting for the lock")),
    };
    let guard = match acquired {
        Ok(guard) => guard,
        Err(f) => {
            // An acquisition given up may be finishing in the background.
            handle.settle(Duration::from_secs(5)).await;
            return Err(f);
        }
    };

    let code = supervise(args, &guard, signals, lost_code).await;
    let code = match code {
        Ok(code) => code,
        Err(f) => {
            let _ = guard.release().await;
            handle.settle(Duration::from_secs(5)).await;
            return Err(f);
        }
    };
    let code = match code {
        End::Lost(_) => {
            // Nothing to free any more, but an expired record may still be
            // ours: one short try, for the next holder's sake.
            let _ = tokio::time::timeout(Duration::from_secs(2), guard.release()).await;
            handle.settle(Duration::from_secs(1)).await;
            return Ok(lost_code);
        }
        End::Exited(_, Some(reason)) => {
            // The command's end was seen only after the lease's: it may
            // have run without the lock.
            say!(
                "shylock: the lease on lock `{name}` (fencing token {}) was lost before \
                 the command ended ({reason}); exiting with {lost_code}",
                guard.token()
            );
            let _ = tokio::time::timeout(Duration::from_secs(2), guard.release()).await;
            handle.settle(Duration::from_secs(1)).await;
            return Ok(lost_code);
        }
        End::Exited(status, None) => {
            // The command ended while the lease was valid: it ran under the
            // lock, whatever the release answers.
            let code = exit_code(status);
            match guard.release().await {
                Ok(()) => code,
                Err(Error::LeaseLost { reason, token, .. }) => {
                    say!(
                        "shylock: the command ended while the lease on lock `{name}` (fencing \
                         token {token}) was valid, but the release found it lost ({reason})"
                    );
                    code
                }
                Err(e) => {
                    say!(
                        "shylock: could not release lock `{name}` ({}); it is free once its lease ends",
                        one_line(&e.to_string())
                    );
                    code
                }
            }
        }
    };
    handle.settle(Duration::from_secs(5)).await;
    Ok(code)
}

async fn acquire(
    args: &RunArgs,
    lock: &AsyncLock,
    started: Instant,
    bound: Duration,
    conflict: i32,
) -> Result<AsyncLockGuard, Failure> {
    let busy = |e: Error| match e {
        // The time ran out while the backend was failing: not contention.
        Error::Timeout {
            source: Some(_), ..
        } => Failure::from_lock_error(&e),
        Error::Timeout { .. } => Failure::new(
            conflict,
            if args.quiet {
                String::new()
            } else {
                format!(
                    "timed out after {} waiting for lock `{}`",
                    humantime::format_duration(args.timeout.unwrap_or_default()),
                    args.name
                )
            },
        ),
        e => Failure::from_lock_error(&e),
    };
    let remaining = |started: Instant| args.timeout.map(|t| t.saturating_sub(started.elapsed()));
    match lock.try_acquire().await {
        Ok(Some(guard)) => return Ok(guard),
        Ok(None) => {}
        // A transient failure of the first try: the wait below rides it
        // out (within --timeout), unless the caller will not wait.
        Err(e)
            if !args.no_wait
                && !remaining(started).is_some_and(|r| r.is_zero())
                && e.backend_error().is_some_and(|b| b.is_transient()) =>
        {
            if !args.quiet {
                say!(
                    "shylock: {}; waiting for the server",
                    one_line(&e.to_string())
                );
            }
            return wait(lock, remaining(started)).await.map_err(busy);
        }
        Err(e) => return Err(busy(e)),
    }
    let remaining = remaining(started);
    let holder = if args.quiet {
        String::new()
    } else {
        // Best effort: who holds it, for the message.
        let record = tokio::time::timeout(bound, lock.inspect()).await;
        match record {
            Ok(Ok(Some(record))) => format!(" {}", describe_holder(&record)),
            _ => String::new(),
        }
    };
    if args.no_wait || remaining.is_some_and(|r| r.is_zero()) {
        let message = if args.quiet {
            String::new()
        } else {
            format!("lock `{}` is held{holder}; not waiting", args.name)
        };
        return Err(Failure::new(conflict, message));
    }
    if !args.quiet {
        let until = match args.timeout {
            Some(t) => format!(" (at most {})", humantime::format_duration(t)),
            None => String::new(),
        };
        say!(
            "shylock: lock `{}` is held{holder}; waiting{until}",
            args.name
        );
    }
    wait(lock, remaining).await.map_err(busy)
}

/// Wait for the lock, at most `remaining` if set.
async fn wait(lock: &AsyncLock, remaining: Option<Duration>) -> Result<AsyncLockGuard, Error> {
    match remaining {
        Some(remaining) => lock.acquire_timeout(remaining).await,
        None => lock.acquire().await,
    }
}

fn exit_code(status: ExitStatus) -> i32 {
    match (status.code(), status.signal()) {
        (Some(code), _) => code,
        (None, Some(sig)) => 128 + sig,
        (None, None) => exit::SOFTWARE,
    }
}

/// Who gets the signals meant for the command.
#[derive(Clone, Copy)]
enum Target {
    /// The command's own process group (the default).
    Group(Pid),
    /// The command alone (`--foreground`: it shares shylock's group).
    Process(Pid),
    /// Nobody (no pid: cannot happen for a running child).
    None,
}

fn send(target: Target, sig: Signal) {
    // ESRCH: it is gone already.
    let _ = match target {
        Target::Group(pgid) => kill_process_group(pgid, sig),
        Target::Process(pid) => kill_process(pid, sig),
        Target::None => Ok(()),
    };
}

/// Start the command and wait until it exits or the lease is lost.
async fn supervise(
    args: &RunArgs,
    guard: &AsyncLockGuard,
    signals: &mut Signals,
    lost_code: i32,
) -> Result<End, Failure> {
    let Some((program, rest)) = args.command.split_first() else {
        return Err(Failure::usage("no command given after `--`"));
    };
    let mut command = std::process::Command::new(program);
    command
        .args(rest)
        .env("SHYLOCK_LOCK_NAME", guard.name().as_str())
        .env("SHYLOCK_FENCING_TOKEN", guard.token().to_string());
    // The lock store's URLs (with their credentials) and password are not
    // the command's.
    for variable in backend::SECRET_VARIABLES {
        command.env_remove(variable);
    }
    if !args.foreground {
        command.process_group(0);
    }
    let mut command = tokio::process::Command::from(command);
    let mut child = command.spawn().map_err(|e| {
        let code = if e.kind() == std::io::ErrorKind::NotFound {
            exit::NOT_FOUND
        } else {
            exit::CANNOT_EXECUTE
        };
        Failure::new(
            code,
            format!("cannot run `{}`: {e}", program.to_string_lossy()),
        )
    })?;
    let pid = child
        .id()
        .and_then(|id| i32::try_from(id).ok())
        .and_then(Pid::from_raw);
    let target = match pid {
        Some(pid) if args.foreground => Target::Process(pid),
        Some(pid) => Target::Group(pid),
        None => Target::None,
    };

    let end = loop {
        tokio::select! {
            // The command's end first: judged by the lease's validity then.
            biased;
            status = child.wait() => {
                let status = status.map_err(|e| {
                    Failure::new(exit::SOFTWARE, format!("cannot wait for the command: {e}"))
                })?;
                break End::Exited(status, guard.lost_reason());
            }
            (sig, _) = signals.recv() => send(target, sig),
            reason = guard.lost() => break End::Lost(reason),
        }
    };
    if let End::Lost(reason) = &end {
        say!(
            "shylock: lost the lease on lock `{}` (fencing token {}): {reason}; stopping the command \
             (SIGTERM, SIGKILL after {}) and exiting with {lost_code}",
            guard.name(),
            guard.token(),
            humantime::format_duration(args.kill_after),
        );
        send(target, Signal::TERM);
        let deadline = tokio::time::Instant::now() + args.kill_after;
        let exited = loop {
            tokio::select! {
                status = child.wait() => break status.is_ok(),
                () = tokio::time::sleep_until(deadline) => break false,
                (sig, _) = signals.recv() => send(target, sig),
            }
        };
        if !exited {
            send(target, Signal::KILL);
            let _ = child.start_kill();
            let _ = child.wait().await;
        }
    }
    Ok(end)
}
