//! `shylock list`, `shylock release --force` and `shylock watch`: the
//! administrator's commands (README: Operations, Admin commands).

use std::io::{BufRead, IsTerminal, Write};
use std::time::Duration;

use shylock::{Backend, ForceReleaseOutcome, ListedLock, LockName, Timestamp};

use crate::backend::{self, Connected};
use crate::cli::{ListArgs, ReleaseArgs, WatchArgs};
use crate::exit::{self, Failure};
use crate::inspect::format_millis;

/// The locks held now, with `prefix`.
async fn held(
    handle: &Backend,
    prefix: Option<&str>,
    bound: Duration,
) -> Result<Vec<ListedLock>, Failure> {
    backend::bounded(bound, "listing the locks", async {
        handle
            .list(prefix)
            .await
            .map_err(|e| Failure::from_lock_error(&e))
    })
    .await
}

/// How long a lock has been held, by this machine's clock (the grant time
/// is the server's): `None` if the record has no grant time.
fn held_for(lock: &ListedLock, now: Timestamp) -> Option<Duration> {
    let since = lock.held_since?;
    let ms = now.as_millis().saturating_sub(since.as_millis()).max(0);
    Some(Duration::from_millis(u64::try_from(ms).unwrap_or(0)))
}

/// A duration to the second, as `1h 2m 3s`.
fn seconds(d: Duration) -> String {
    humantime::format_duration(Duration::from_secs(d.as_secs())).to_string()
}

/// The locks as a table, one line each, with a header.
fn table(locks: &[ListedLock], now: Timestamp) -> Vec<String> {
    let rows: Vec<[String; 5]> = locks
        .iter()
        .map(|l| {
            [
                l.name.to_string(),
                l.owner.to_string(),
                l.token.to_string(),
                format_millis(l.expires_at.as_millis()),
                held_for(l, now).map_or_else(|| "?".to_owned(), seconds),
            ]
        })
        .collect();
    let header = ["NAME", "OWNER", "TOKEN", "EXPIRES AT", "HELD FOR"].map(str::to_owned);
    let mut widths = header.clone().map(|h| h.chars().count());
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    std::iter::once(&header)
        .chain(&rows)
        .map(|row| {
            let cells: Vec<String> = row
                .iter()
                .zip(widths)
                .map(|(cell, w)| format!("{cell:<w$}"))
                .collect();
            cells.join("  ").trim_end().to_owned()
        })
        .collect()
}

/// One lock as JSON.
fn json(lock: &ListedLock, now: Timestamp) -> serde_json::Value {
    serde_json::json!({
        "name": lock.name.as_str(),
        "owner": lock.owner.as_str(),
        "token": lock.token.get(),
        "expires_at": format_millis(lock.expires_at.as_millis()),
        "expires_at_ms": lock.expires_at.as_millis(),
        "held_since": lock.held_since.map(|t| format_millis(t.as_millis())),
        "held_since_ms": lock.held_since.map(Timestamp::as_millis),
        "held_for_ms": held_for(lock, now).map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
    })
}

pub async fn list(args: ListArgs) -> i32 {
    let result = async {
        let bound = args.backend.connect_timeout;
        let Connected { handle } = backend::connect(&args.backend, bound, false).await?;
        let locks = held(&handle, args.prefix.as_deref(), bound).await?;
        let now = Timestamp::local_now();
        if args.json {
            let locks: Vec<_> = locks.iter().map(|l| json(l, now)).collect();
            out!(
                "{}",
                serde_json::json!({ "schema": crate::inspect::JSON_SCHEMA, "locks": locks })
            );
        } else {
            for line in table(&locks, now) {
                out!("{line}");
            }
        }
        Ok::<_, Failure>(0)
    }
    .await;
    result.unwrap_or_else(|f| exit::report(&f))
}

/// Who forces a release: `--by`, else `user@host` of this process.
fn operator(given: Option<&str>) -> String {
    if let Some(by) = given {
        return by.to_owned();
    }
    let user = ["USER", "LOGNAME"]
        .into_iter()
        .find_map(|v| std::env::var(v).ok().filter(|u| !u.is_empty()))
        .unwrap_or_else(|| format!("uid {}", rustix::process::getuid().as_raw()));
    let host = rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned();
    format!("{user}@{host}")
}

/// Ask on the terminal; true for `y` or `yes`.
fn confirm(question: &str) -> bool {
    let mut err = std::io::stderr();
    let _ = write!(err, "{question} [y/N] ");
    let _ = err.flush();
    let mut answer = String::new();
    if std::io::stdin().lock().read_line(&mut answer).is_err() {
        return false;
    }
    matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes")
}

pub async fn release(args: ReleaseArgs) -> i32 {
    release_inner(&args)
        .await
        .unwrap_or_else(|f| exit::report(&f))
}

async fn release_inner(args: &ReleaseArgs) -> Result<i32, Failure> {
    if !args.force {
        return Err(Failure::usage(
            "`shylock release` ends somebody else's holding: say so with --force \
             (a `shylock run` releases its own lock when its command exits)",
        ));
    }
    let name = LockName::new(args.name.clone()).map_err(|e| Failure::from_lock_error(&e))?;
    if args.reason.trim().is_empty() {
        return Err(Failure::usage(
            "--reason must say why (it is kept on the record)",
        ));
    }
    let interactive = std::io::stdin().is_terminal();
    if !args.yes && !interactive {
        return Err(Failure::usage(
            "stdin is not a terminal, so shylock cannot ask for confirmation: add --yes \
             to force the release",
        ));
    }
    let bound = args.backend.connect_timeout;
    let Connected { handle } = backend::connect(&args.backend, bound, false).await?;
    if !args.yes {
        let lock = shylock::AsyncLock::with_backend(name.as_str(), &handle);
        let record = backend::bounded(bound, "reading the lock", async {
            lock.inspect()
                .await
                .map_err(|e| Failure::from_lock_error(&e))
        })
        .await?;
        let Some(record) = record else {
            out!("lock `{name}` is not held; nothing changed");
            return Ok(1);
        };
        let question = format!(
            "Force the release of lock `{name}`, held {}?",
            crate::inspect::describe_holder(&record)
        );
        if !confirm(&question) {
            say!("shylock: not confirmed; nothing changed");
            return Ok(1);
        }
    }
    let by = operator(args.by.as_deref());
    let outcome = backend::bounded(bound, "forcing the release", async {
        handle
            .force_release(name.as_str(), &by, &args.reason)
            .await
            .map_err(|e| Failure::from_lock_error(&e))
    })
    .await?;
    match outcome {
        ForceReleaseOutcome::Released { owner, token } => {
            out!(
                "released lock `{name}`: ended the holding of owner {owner} (fencing token \
                 {token}); forced by {by}: {}",
                args.reason
            );
            Ok(0)
        }
        ForceReleaseOutcome::NotHeld => {
            out!("lock `{name}` is not held; nothing changed");
            Ok(1)
        }
    }
}

/// Write `text` to stdout at once; `false` once nobody reads it (a closed
/// pipe) or it cannot be written.
fn show(text: &str) -> bool {
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(text.as_bytes()).is_ok() && stdout.flush().is_ok()
}

pub async fn watch(args: WatchArgs) -> i32 {
    let bound = args.backend.connect_timeout;
    let handle = match backend::connect(&args.backend, bound, false).await {
        Ok(Connected { handle }) => handle,
        Err(f) => return exit::report(&f),
    };
    // Made once, before the loop: a signal that comes while the table is
    // written is kept for the next wait, not lost.
    let listen = |kind| {
        tokio::signal::unix::signal(kind)
            .map_err(|e| Failure::new(exit::SOFTWARE, format!("cannot listen for signals: {e}")))
    };
    use tokio::signal::unix::SignalKind;
    let (mut interrupt, mut terminate) = match (
        listen(SignalKind::interrupt()),
        listen(SignalKind::terminate()),
    ) {
        (Ok(i), Ok(t)) => (i, t),
        (Err(f), _) | (_, Err(f)) => return exit::report(&f),
    };
    let tty = std::io::stdout().is_terminal();
    let every = args.interval.max(Duration::from_millis(100));
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = interrupt.recv() => return 0,
            _ = terminate.recv() => return 0,
            _ = tick.tick() => {}
        }
        let listed = tokio::select! {
            _ = interrupt.recv() => return 0,
            _ = terminate.recv() => return 0,
            listed = held(&handle, args.prefix.as_deref(), bound) => listed,
        };
        let now = Timestamp::local_now();
        let mut text = String::new();
        if tty {
            // Home, clear the screen.
            text.push_str("\x1b[H\x1b[2J");
        }
        let scope = args
            .prefix
            .as_deref()
            .map_or_else(String::new, |p| format!(" with prefix {p:?}"));
        text.push_str(&format!(
            "{} locks held{scope} at {} ({}; every {}; Ctrl-C to stop)\n",
            listed.as_ref().map_or(0, Vec::len),
            format_millis(now.as_millis()),
            handle.describe(),
            humantime::format_duration(every),
        ));
        match &listed {
            Ok(locks) => {
                for line in table(locks, now) {
                    text.push_str(&line);
                    text.push('\n');
                }
            }
            Err(f) => text.push_str(&format!("(listing failed: {}; retrying)\n", f.message)),
        }
        if !tty {
            text.push('\n');
        }
        if !show(&text) {
            // Nobody reads any more (a closed pipe): done.
            return 0;
        }
        if let Err(f) = &listed
            && matches!(f.code, exit::USAGE | exit::CONFIG | exit::NOPERM)
        {
            return exit::report(f);
        }
    }
}

/// After a forced release ended `run`'s holding (its command stopped):
/// say who forced it, when and why, if the audit trail can be read within
/// a couple of seconds.
pub async fn say_who_forced(handle: &Backend, name: &str) {
    let read = tokio::time::timeout(Duration::from_secs(2), handle.audit(name)).await;
    if let Ok(Ok(Some(forced))) = read {
        say!(
            "shylock: lock `{name}` was forced free by {} at {}: {}",
            forced.by,
            format_millis(forced.at.as_millis()),
            forced.reason
        );
    }
}
