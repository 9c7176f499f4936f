//! `shylock run`: hold a lock while a command runs.

use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, kill_process, kill_process_group};
use shylock::{AsyncLock, AsyncLockGuard, Error, LockName, LockOptions, LossReason, Renewal};

use crate::backend::{self, Connected};
use crate::cli::RunArgs;
use crate::exit::{self, Failure};
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

/// A signal received.
#[derive(Clone, Copy, Debug)]
pub struct Received {
    pub signal: Signal,
    /// Sent by the kernel (`SI_KERNEL`): a terminal's Ctrl-C, Ctrl-\,
    /// Ctrl-Z or hang-up, which the kernel sends to the terminal's whole
    /// foreground process group at once, and not by a process (`kill`).
    pub from_kernel: bool,
}

/// The caught signals (see [`CAUGHT`]), received as events, with whether
/// the kernel sent them (read from `siginfo`: `tokio::signal` does not
/// tell). A signal that was ignored when shylock started (SIGHUP under
/// `nohup`) is not caught: it stays ignored, for shylock and for the
/// command, which inherits it ignored.
pub struct Signals {
    handle: signal_hook::iterator::Handle,
    events: tokio::sync::mpsc::UnboundedReceiver<Received>,
    ignored: u64,
}

impl Signals {
    pub fn new() -> Result<Self, Failure> {
        use signal_hook::iterator::SignalsInfo;
        use signal_hook::iterator::exfiltrator::WithOrigin;
        use signal_hook::low_level::siginfo::Cause;

        let cannot =
            |e: std::io::Error| Failure::new(exit::SOFTWARE, format!("cannot handle signals: {e}"));
        let mut info = SignalsInfo::<WithOrigin>::new(std::iter::empty::<i32>()).map_err(cannot)?;
        let (tx, events) = tokio::sync::mpsc::unbounded_channel();
        let mut signals = Signals {
            handle: info.handle(),
            events,
            ignored: ignored_at_start(),
        };
        signals.catch(CAUGHT)?;
        std::thread::Builder::new()
            .name("shylock-signals".into())
            .spawn(move || {
                for origin in info.forever() {
                    let Some(signal) = Signal::from_named_raw(origin.signal) else {
                        continue;
                    };
                    let from_kernel = matches!(origin.cause, Cause::Kernel);
                    if tx
                        .send(Received {
                            signal,
                            from_kernel,
                        })
                        .is_err()
                    {
                        break;
                    }
                }
            })
            .map_err(cannot)?;
        Ok(signals)
    }

    /// Catch `which` too, but those ignored at start.
    fn catch(&mut self, which: &[Signal]) -> Result<(), Failure> {
        for &sig in which {
            let bit = u32::try_from(sig.as_raw() - 1)
                .ok()
                .and_then(|n| 1u64.checked_shl(n))
                .unwrap_or(0);
            if self.ignored & bit != 0 {
                continue;
            }
            self.handle
                .add_signal(sig.as_raw())
                .map_err(|e| Failure::new(exit::SOFTWARE, format!("cannot handle signals: {e}")))?;
        }
        Ok(())
    }

    /// The next signal.
    pub async fn recv(&mut self) -> Received {
        match self.events.recv().await {
            Some(received) => received,
            // The thread is gone (it never ends while `self` lives).
            None => std::future::pending().await,
        }
    }
}

/// What ended the wait for the child.
enum End {
    /// The command (and the rest of its process group) exited; the loss,
    /// if the lease was not valid any more when that was seen.
    Exited(ExitStatus, Option<LossReason>),
    /// The lease was lost, or could not be renewed in time: the command was
    /// stopped.
    Lost,
}

/// When a command is stopped, and how often the lease is renewed, for a
/// lease and `--kill-after`.
#[derive(Clone, Copy, Debug)]
struct Plan {
    /// SIGTERM to SIGKILL.
    kill_after: Duration,
    /// Between SIGKILL and the end of the lease as this process counts it
    /// (its safety margin already taken off): for timers late on a loaded
    /// machine, and the kill itself.
    margin: Duration,
    /// The renewal interval.
    renew_every: Duration,
}

/// The plan for `lease` and `--kill-after` (default 10 s, or a third of a
/// shorter lease): the stop begins at the lease's end (as this process
/// counts it) less `kill_after` less the margin (a tenth of the lease, at
/// most 5 s), which must leave at least a quarter of the lease after the
/// last renewal, else the `--kill-after` is refused; renewals come every
/// third of the lease, or every half of that time to the stop if that is
/// sooner, so that a healthy renewal lands, and a failed one is retried,
/// well before the stop.
fn plan(lease: Duration, kill_after: Option<Duration>) -> Result<Plan, Failure> {
    let margin = (lease / 10).min(Duration::from_secs(5));
    let kill_after = kill_after.unwrap_or_else(|| Duration::from_secs(10).min(lease / 3));
    let window = lease
        .checked_sub(kill_after.saturating_add(margin))
        .filter(|w| *w >= lease / 4);
    let Some(window) = window else {
        let most = lease.saturating_sub(lease / 4 + margin);
        return Err(Failure::usage(format!(
            "--kill-after {} does not fit in --lease {}: the command must be dead before the \
             lease can end, so --kill-after may be at most {} (three quarters of the lease \
             less a margin of {}); shorten it or lengthen the lease",
            exit::format_duration(kill_after),
            exit::format_duration(lease),
            exit::format_duration(most),
            exit::format_duration(margin),
        )));
    };
    Ok(Plan {
        kill_after,
        margin,
        renew_every: (lease / 3).min(window / 2),
    })
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
    let plan = plan(args.lease, args.kill_after)?;
    let options = LockOptions::default()
        .lease(args.lease)
        .renewal(Renewal::Every(plan.renew_every))
        .owner_label(owner_label());
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

    // The command is looked up before the lock is asked for: a typo fails
    // at once (127), without waiting for the lock nor using a token.
    let program = resolve(&args.command)?;

    if args.no_wait
        && let Some(message) = backend::refused(&args.backend).await
    {
        return Err(Failure::unavailable(message));
    }
    let Connected { handle } = tokio::select! {
        connected = backend::connect(&args.backend, bound, false) => connected?,
        r = signals.recv() => return Err(interrupted(r.signal.as_raw(), "while connecting")),
    };
    let lock = AsyncLock::with_backend(name.as_str(), &handle).options(options);

    let acquired = tokio::select! {
        acquired = acquire(args, &lock, started, bound, conflict) => acquired,
        r = signals.recv() => Err(interrupted(r.signal.as_raw(), "while waiting for the lock")),
    };
    let guard = match acquired {
        Ok(guard) => guard,
        Err(f) => {
            // An acquisition given up may be finishing in the background:
            // a short wait for it (a server that does not answer is not
            // waited for; the lease would end on its own).
            settle(&handle, SETTLE_AFTER_GIVING_UP, signals).await;
            return Err(f);
        }
    };
    if args.verbose {
        say!(
            "shylock: holding lock `{name}` as owner {} (fencing token {}, lease {}) on host \
             {}, pid {}",
            guard.owner(),
            guard.token(),
            exit::format_duration(args.lease),
            host_name(),
            std::process::id()
        );
    }
    let say_lost = |reason: &dyn std::fmt::Display| {
        say!(
            "shylock: the lease on lock `{name}` (fencing token {}) was lost before the command \
             ended ({reason}); exiting with {lost_code}",
            guard.token()
        );
    };

    let end = supervise(args, &program, plan, &guard, signals, lost_code).await;
    let code = match end {
        Err(f) => {
            if let Released::Done(_) = release(guard, Some(SETTLE), signals).await {
                settle(&handle, SETTLE, signals).await;
            }
            return Err(f);
        }
        Ok(End::Lost) | Ok(End::Exited(_, Some(_))) => {
            if guard.lost_reason() == Some(LossReason::Forced) {
                crate::admin::say_who_forced(&handle, guard.name().as_str()).await;
            }
            if let Ok(End::Exited(_, Some(reason))) = &end {
                // The command's end was seen only after the lease's: it
                // may have run without the lock.
                say_lost(reason);
            }
            // Nothing to free any more, or not for long, but the record
            // may still be ours: one short try, for the next holder's
            // sake, none once the lease has ended. A server that does not
            // answer is not waited for (the lease ends on its own).
            let limit = guard.remaining().min(LOST_RELEASE);
            if !limit.is_zero() && guard.lost_reason().is_none() {
                let _ = release(guard, Some(limit), signals).await;
            }
            return Ok(lost_code);
        }
        Ok(End::Exited(status, None)) => exit_code(status),
    };
    // The command ended while the lease was valid: it ran under the lock,
    // whatever the release answers.
    match release(guard, None, signals).await {
        Released::Done(Ok(())) => {}
        Released::Done(Err(Error::LeaseLost { reason, token, .. })) => say!(
            "shylock: the command ended while the lease on lock `{name}` (fencing token \
             {token}) was valid, but the release found it lost ({reason})"
        ),
        Released::Done(Err(e)) => say!(
            "shylock: could not release lock `{name}` ({}); it is free once its lease ends",
            exit::describe_error(&e)
        ),
        Released::TimedOut => {}
        Released::GaveUp(sig) => {
            say!(
                "shylock: gave up releasing lock `{name}` at signal {sig}; it is free once its \
                 lease ends (at most {})",
                exit::format_duration(args.lease)
            );
            return Ok(code);
        }
    }
    settle(&handle, SETTLE, signals).await;
    Ok(code)
}

/// This machine's name, for `--verbose` (the owner id is random: this
/// line ties it to a host and a process in the logs).
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown".to_owned())
}

/// `HOST/PID`, the label of this run's owner id: `inspect` and `list` then
/// say which host and process hold the lock. Kept to what an owner label
/// may hold (visible ASCII, at most `MAX_OWNER_LABEL` bytes, the PID kept).
fn owner_label() -> String {
    let pid = format!("/{}", std::process::id());
    let host: String = host_name()
        .chars()
        .map(|c| if c.is_ascii_graphic() { c } else { '_' })
        .take(shylock::MAX_OWNER_LABEL - pid.len())
        .collect();
    host + &pid
}

/// How long to wait for the backend's work in the background (a release
/// finishing) before exiting.
const SETTLE: Duration = Duration::from_secs(5);
/// The same after giving up the wait for the lock.
const SETTLE_AFTER_GIVING_UP: Duration = Duration::from_secs(1);
/// The most a release may take after a loss (it frees nothing, or nothing
/// for long).
const LOST_RELEASE: Duration = Duration::from_millis(500);

/// How a release went.
enum Released {
    Done(Result<(), Error>),
    /// Not done within its limit; it goes on in the background.
    TimedOut,
    /// A signal came first (the number); given up.
    GaveUp(i32),
}

/// Release the lock, within `limit` if given; a signal gives the release
/// up (it goes on in the background until shylock exits; the lease ends on
/// its own): a hanging server does not make shylock deaf to Ctrl-C.
async fn release(
    guard: AsyncLockGuard,
    limit: Option<Duration>,
    signals: &mut Signals,
) -> Released {
    let limit = limit.unwrap_or(Duration::from_secs(86_400));
    let release = tokio::time::timeout(limit, guard.release());
    tokio::pin!(release);
    loop {
        tokio::select! {
            done = &mut release => return match done {
                Ok(result) => Released::Done(result),
                Err(_) => Released::TimedOut,
            },
            r = signals.recv() => if !matches!(r.signal, Signal::TSTP | Signal::CONT) {
                // Ctrl-Z and `fg` have nothing to stop or resume now.
                return Released::GaveUp(r.signal.as_raw());
            },
        }
    }
}

/// Wait at most `limit` for the backend's background work; a signal ends
/// the wait (but SIGTSTP and SIGCONT, see [`release`]).
async fn settle(handle: &shylock::Backend, limit: Duration, signals: &mut Signals) {
    let settled = handle.settle(limit);
    tokio::pin!(settled);
    loop {
        tokio::select! {
            _ = &mut settled => return,
            r = signals.recv() => if !matches!(r.signal, Signal::TSTP | Signal::CONT) {
                return;
            },
        }
    }
}

/// The command's program as `execvp` would find it: a name without `/` is
/// looked up on `PATH`. Not found: 127; found but not executable (or a
/// directory): 126, as a shell says.
fn resolve(command: &[std::ffi::OsString]) -> Result<PathBuf, Failure> {
    use std::os::unix::ffi::OsStrExt;
    let Some(program) = command.first() else {
        return Err(Failure::usage("no command given after `--`"));
    };
    let shown = program.to_string_lossy();
    let not_found = || {
        Failure::new(
            exit::NOT_FOUND,
            format!("cannot run `{shown}`: command not found"),
        )
    };
    if program.is_empty() {
        return Err(not_found());
    }
    let cannot =
        |why: &str| Failure::new(exit::CANNOT_EXECUTE, format!("cannot run `{shown}`: {why}"));
    let check = |path: &Path| -> Result<(), Failure> {
        match std::fs::metadata(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Failure::new(
                exit::NOT_FOUND,
                format!("cannot run `{shown}`: no such file"),
            )),
            Err(e) => Err(cannot(&e.to_string())),
            Ok(meta) if meta.is_dir() => Err(cannot("is a directory")),
            Ok(_) => rustix::fs::access(path, rustix::fs::Access::EXEC_OK)
                .map_err(|_| cannot("permission denied (not executable)")),
        }
    };
    if program.as_bytes().contains(&b'/') {
        let path = PathBuf::from(program);
        check(&path)?;
        return Ok(path);
    }
    let search = std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
    let mut refused = None;
    for dir in std::env::split_paths(&search) {
        let dir = if dir.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            dir
        };
        let path = dir.join(program);
        match check(&path) {
            Ok(()) => return Ok(path),
            Err(f) if f.code == exit::CANNOT_EXECUTE && path.exists() && !path.is_dir() => {
                refused.get_or_insert(f);
            }
            Err(_) => {}
        }
    }
    Err(refused.unwrap_or_else(not_found))
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
                    exit::format_duration(args.timeout.unwrap_or_default()),
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
                    exit::describe_error(&e)
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
            Some(t) => format!(" (at most {})", exit::format_duration(t)),
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

/// Pass a caught signal on, then SIGCONT (as `timeout(1)` does): a stopped
/// command gets it too.
fn forward(target: Target, sig: Signal) {
    send(target, sig);
    if sig != Signal::CONT {
        send(target, Signal::CONT);
    }
}

/// Whether the command got `r` already: with `--foreground` it shares
/// shylock's process group, and a signal the kernel sent to that group (a
/// terminal's Ctrl-C, Ctrl-\, Ctrl-Z or hang-up) reached it too; passed
/// on, it would get each one twice.
fn came_to_the_command(target: Target, r: Received) -> bool {
    matches!(target, Target::Process(_))
        && r.from_kernel
        && matches!(
            r.signal,
            Signal::INT | Signal::QUIT | Signal::TSTP | Signal::HUP
        )
}

/// Pass a received signal on (see [`forward`]), unless the command got it
/// already ([`came_to_the_command`]).
fn pass_on(target: Target, r: Received) {
    if !came_to_the_command(target, r) {
        forward(target, r.signal);
    }
}

/// The members of process group `pgid` that are not zombies, with their
/// state letter (`/proc/PID/stat`); `None` where `/proc` cannot be read.
fn group_members(pgid: Pid) -> Option<Vec<(i32, char)>> {
    let pgid = pgid.as_raw_nonzero().get();
    let mut members = Vec::new();
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ppid pgrp ...; comm may hold anything but ')'
        // is its last one.
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let mut fields = rest.split_whitespace();
        let state = fields.next().and_then(|f| f.chars().next());
        let group = fields.nth(1).and_then(|f| f.parse::<i32>().ok());
        if let (Some(state), Some(group)) = (state, group)
            && group == pgid
            && state != 'Z'
            && state != 'X'
        {
            members.push((pid, state));
        }
    }
    Some(members)
}

/// Whether some process of the command's group is still alive (the
/// command's own group only: with `--foreground` it is shylock's).
fn group_alive(target: Target) -> bool {
    match target {
        Target::Group(pgid) => match group_members(pgid) {
            Some(members) => !members.is_empty(),
            None => rustix::process::test_kill_process_group(pgid).is_ok(),
        },
        Target::Process(_) | Target::None => false,
    }
}

/// A stopped member of the command's group, if any.
fn stopped_member(target: Target) -> Option<i32> {
    match target {
        Target::Group(pgid) => group_members(pgid)?
            .into_iter()
            .find_map(|(pid, state)| (state == 'T').then_some(pid)),
        Target::Process(_) | Target::None => None,
    }
}

/// Whether `stopped` (a stopped member of the command's group) was stopped
/// by SIGTTIN or SIGTTOU: told exactly for the command itself (`waitid`
/// with `WNOWAIT`, which leaves its state to be reaped), assumed for the
/// others (shylock stopped none of them).
fn stopped_for_the_terminal(stopped: i32, child: Option<Pid>) -> bool {
    use rustix::process::{WaitId, WaitIdOptions, waitid};
    let Some(child) = child.filter(|c| c.as_raw_nonzero().get() == stopped) else {
        return true;
    };
    let options = WaitIdOptions::STOPPED | WaitIdOptions::NOHANG | WaitIdOptions::NOWAIT;
    match waitid(WaitId::Pid(child), options) {
        Ok(Some(status)) => status
            .stopping_signal()
            .is_none_or(|sig| sig == Signal::TTIN.as_raw() || sig == Signal::TTOU.as_raw()),
        _ => true,
    }
}

/// When the command must begin to stop so that it is dead before the
/// lease can end (moves on with renewals).
fn stop_at(guard: &AsyncLockGuard, plan: Plan) -> tokio::time::Instant {
    let valid = tokio::time::Instant::from_std(guard.valid_until());
    valid
        .checked_sub(plan.kill_after.saturating_add(plan.margin))
        .unwrap_or_else(tokio::time::Instant::now)
}

/// Stop the command's group: SIGTERM (and SIGCONT), then SIGKILL after
/// `kill_after` unless the command and its group are gone by then.
async fn stop_group(
    target: Target,
    child: &mut tokio::process::Child,
    mut reaped: bool,
    kill_after: Duration,
    signals: &mut Signals,
) {
    forward(target, Signal::TERM);
    // `kill_after` fits in the lease (see `plan`); saturate all the same.
    let now = tokio::time::Instant::now();
    let deadline = now
        .checked_add(kill_after)
        .unwrap_or_else(|| now + Duration::from_secs(86_400));
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    loop {
        tokio::select! {
            _ = child.wait(), if !reaped => reaped = true,
            () = tokio::time::sleep_until(deadline) => break,
            r = signals.recv() => pass_on(target, r),
            _ = tick.tick() => if reaped && !group_alive(target) {
                return;
            },
        }
    }
    send(target, Signal::KILL);
    let _ = child.start_kill();
    let _ = child.wait().await;
}

/// Start the command and wait until it (and its process group) exits or
/// the lease cannot be kept.
/// Start the command (`program` is where [`resolve`] found it), with the
/// lock's name, fencing token and owner id in its environment; with
/// `via_shell`, as `/bin/sh program args...`.
fn spawn(
    args: &RunArgs,
    program: &Path,
    guard: &AsyncLockGuard,
    via_shell: bool,
) -> std::io::Result<tokio::process::Child> {
    let rest = args.command.get(1..).unwrap_or_default();
    let mut command = if via_shell {
        let mut sh = std::process::Command::new("/bin/sh");
        sh.arg(program);
        sh
    } else {
        let mut command = std::process::Command::new(program);
        if let Some(name) = args.command.first() {
            command.arg0(name);
        }
        command
    };
    command
        .args(rest)
        .env("SHYLOCK_LOCK_NAME", guard.name().as_str())
        .env("SHYLOCK_FENCING_TOKEN", guard.token().to_string())
        .env("SHYLOCK_OWNER", guard.owner().as_str());
    // The lock store's URLs (with their credentials) and password are not
    // the command's.
    for variable in backend::SECRET_VARIABLES {
        command.env_remove(variable);
    }
    if !args.foreground {
        command.process_group(0);
    }
    tokio::process::Command::from(command).spawn()
}

async fn supervise(
    args: &RunArgs,
    program: &Path,
    plan: Plan,
    guard: &AsyncLockGuard,
    signals: &mut Signals,
    lost_code: i32,
) -> Result<End, Failure> {
    // Ctrl-Z stops the command, not shylock, which must go on renewing;
    // SIGCONT resumes the command. Before the command starts, they keep
    // their default action.
    signals.catch(&[Signal::TSTP, Signal::CONT])?;
    let mut child = match spawn(args, program, guard, false) {
        // Not a binary nor a `#!` script: run by /bin/sh, as `execvp`
        // (and so env, timeout, flock) does.
        Err(e) if e.raw_os_error() == Some(rustix::io::Errno::NOEXEC.raw_os_error()) => {
            spawn(args, program, guard, true)
        }
        spawned => spawned,
    }
    .map_err(|e| {
        let code = if e.kind() == std::io::ErrorKind::NotFound {
            exit::NOT_FOUND
        } else {
            exit::CANNOT_EXECUTE
        };
        let shown = args
            .command
            .first()
            .map(|p| p.to_string_lossy())
            .unwrap_or_default();
        Failure::new(code, format!("cannot run `{shown}`: {e}"))
    })?;
    let pid = child
        .id()
        .and_then(|id| i32::try_from(id).ok())
        .and_then(Pid::from_raw);
    let child_pid = pid;
    let target = match pid {
        Some(pid) if args.foreground => Target::Process(pid),
        Some(pid) => Target::Group(pid),
        None => Target::None,
    };

    // The command's status, once it has exited (its group may live on).
    let mut exited: Option<ExitStatus> = None;
    // Whether shylock stopped the command (SIGTSTP passed on).
    let mut suspended = false;
    let mut told_stopped = false;
    // Whether what is left of the group has ended, once the command has.
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Whether the command was stopped for the terminal (a scan of /proc:
    // less often).
    let mut stops = tokio::time::interval(Duration::from_secs(1));
    stops.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let why = loop {
        let deadline = stop_at(guard, plan);
        tokio::select! {
            // The command's end first: judged by the lease's validity then.
            biased;
            status = child.wait(), if exited.is_none() => {
                let status = status.map_err(|e| {
                    Failure::new(exit::SOFTWARE, format!("cannot wait for the command: {e}"))
                })?;
                if let Some(reason) = guard.lost_reason() {
                    // Its group gets no lease either.
                    stop_group(target, &mut child, true, plan.kill_after, signals).await;
                    return Ok(End::Exited(status, Some(reason)));
                }
                if args.kill_group && group_alive(target) {
                    stop_group(target, &mut child, true, plan.kill_after, signals).await;
                }
                if !group_alive(target) {
                    return Ok(End::Exited(status, guard.lost_reason()));
                }
                exited = Some(status);
            }
            _ = tick.tick(), if exited.is_some() => {
                if let Some(status) = exited
                    && !group_alive(target)
                {
                    return Ok(End::Exited(status, guard.lost_reason()));
                }
            }
            _ = stops.tick() => {
                if !suspended
                    && !told_stopped
                    && let Some(pid) = stopped_member(target)
                    && stopped_for_the_terminal(pid, child_pid)
                {
                    told_stopped = true;
                    say!(
                        "shylock: the command is stopped waiting for the terminal (process {pid}, \
                         SIGTTIN or SIGTTOU): use --foreground; shylock keeps the lock, and a \
                         signal to shylock (Ctrl-C) still reaches the command"
                    );
                }
            }
            r = signals.recv() => match r.signal {
                Signal::TSTP => {
                    suspended = true;
                    if !came_to_the_command(target, r) {
                        send(target, r.signal);
                    }
                }
                Signal::CONT => {
                    suspended = false;
                    send(target, r.signal);
                }
                _ => pass_on(target, r),
            },
            reason = guard.lost() => break reason.to_string(),
            () = tokio::time::sleep_until(deadline) => {
                // Renewed meanwhile: the stop moved on.
                if stop_at(guard, plan) <= tokio::time::Instant::now() {
                    break format!(
                        "renewals failed and the lease ends in {}",
                        exit::format_duration(guard.remaining())
                    );
                }
            }
        }
    };
    say!(
        "shylock: lost the lease on lock `{}` (fencing token {}): {why}; stopping the command \
         (SIGTERM, SIGKILL after {}) so that it is dead before the lease can end, and exiting \
         with {lost_code}",
        guard.name(),
        guard.token(),
        exit::format_duration(plan.kill_after),
    );
    stop_group(
        target,
        &mut child,
        exited.is_some(),
        plan.kill_after,
        signals,
    )
    .await;
    Ok(End::Lost)
}
