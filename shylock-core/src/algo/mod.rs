//! The lock algorithm, written once for both forms (see [`crate::exec`]).
//!
//! * [`acquire()`] runs an `Acquisition`, whose policies each have one
//!   home: `Acquisition::wait_for_turn` (who asks the backend when: local
//!   holders, the shared polling turn, the caller's deadline),
//!   `Acquisition::ask` (one request, and what is on its way), and
//!   `Acquisition::judge` (what an answer or an error means: granted,
//!   granted too late, busy, retry, fail). `Pending` cleans up after
//!   requests whose outcome is unknown when the acquisition ends without the
//!   lock. (All in [`mod@acquire`], private to it.)
//! * [`Renewer`] is one renewal at a time; [`renew_loop`] runs it, in a
//!   task of its own on shylock's runtime for every guard of either form
//!   ([`Exec::start_renewal`]).
//! * [`release()`] releases only the caller's own holding, and is
//!   idempotent: a release whose earlier answer was lost is not reported as
//!   a loss. [`send_release`] is its retry loop, which the clean-up after an
//!   acquisition with an unknown outcome uses too.
//!
//! Each has a module of its own ([`mod@acquire`], [`renewal`],
//! [`mod@release`], the last with [`inspect`] too); this one holds what they
//! share: the acquisition [`Mode`]s, the [`GuardState`], the server clock
//! estimates and the small helpers for deadlines.

mod acquire;
pub(crate) mod admin;
mod release;
mod renewal;

pub(crate) use acquire::acquire;
pub(crate) use release::{inspect, release, send_release};
pub(crate) use renewal::{Renewer, renew_loop};

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use crate::backend::ClockSource;
use crate::clock::Estimate;
use crate::coord::SlotRef;
use crate::exec::Exec;
use crate::handle::Shared;
use crate::lease::Holding;
use crate::tick::{Tick, deadline_after};
use crate::{BackendError, BackendErrorKind, LockOptions, Timestamp};

/// How an acquisition waits, as a type: what it can end with when the
/// lock is busy is [`Mode::Busy`], so a waiting acquisition cannot end
/// without the lock or an error (its `Busy` has no value).
pub(crate) trait Mode: Send + 'static {
    /// What the acquisition answers when it finds the lock held.
    type Busy: Send + 'static;
    /// That answer, for a mode that stops at a held lock; `None` for a
    /// mode that waits instead.
    fn busy() -> Option<Self::Busy>;
}

/// One attempt: a held lock ends the acquisition (with `()`).
pub(crate) struct Try;

/// Until held or the deadline: a held lock is waited for.
pub(crate) struct Wait;

impl Mode for Try {
    type Busy = ();
    fn busy() -> Option<()> {
        Some(())
    }
}

impl Mode for Wait {
    type Busy = std::convert::Infallible;
    fn busy() -> Option<std::convert::Infallible> {
        None
    }
}

/// What a guard keeps to renew and release its holding (the user sees the
/// [`Holding`]; the lease's moving parts are in its
/// [`LeaseState`](crate::lease::LeaseState)).
pub(crate) struct GuardState {
    pub(crate) holding: Holding,
    pub(crate) slot: SlotRef,
    pub(crate) opts: LockOptions,
    pub(crate) shared: Arc<Shared>,
    /// Whether a release request may have reached the backend already.
    release_sent: AtomicBool,
    /// The holding's metrics (on the gauge of held locks until it ends).
    pub(crate) held: crate::metrics::Held,
}

/// The server clock now: a lower bound and its uncertainty.
async fn server_now(
    x: &Exec,
    shared: &Shared,
    deadline: Option<Instant>,
) -> Result<Estimate, BackendError> {
    if shared.clock_source() == ClockSource::Server {
        return Ok(Estimate {
            now: Timestamp::local_now(),
            uncertainty: Duration::ZERO,
        });
    }
    if let Some(estimate) = shared.clock.estimate() {
        return Ok(estimate);
    }
    let sent = Tick::now();
    let server = x.server_time(deadline).await?;
    Ok(shared.clock.record(sent, server))
}

/// The server clock now, for an acquisition: its `now` may become a new
/// record's epoch (the base of its fencing tokens), so it is never taken
/// from an estimate less certain than [`MAX_ACQUIRE_UNCERTAINTY`]; a new
/// sample is taken instead, and if that too is worse, the attempt fails
/// with a transient error (and is retried within the caller's limit).
async fn server_now_for_acquire(
    x: &Exec,
    shared: &Shared,
    deadline: Option<Instant>,
) -> Result<Estimate, BackendError> {
    let estimate = server_now(x, shared, deadline).await?;
    if estimate.uncertainty <= MAX_ACQUIRE_UNCERTAINTY {
        return Ok(estimate);
    }
    shared.clock.invalidate();
    let estimate = server_now(x, shared, deadline).await?;
    if estimate.uncertainty <= MAX_ACQUIRE_UNCERTAINTY {
        return Ok(estimate);
    }
    Err(BackendError::new(
        BackendErrorKind::Unavailable,
        format!(
            "the server's clock could not be read within {} ms (the round trip took {} ms); \
             a lock is not granted on so uncertain a clock",
            MAX_ACQUIRE_UNCERTAINTY.as_millis(),
            estimate.uncertainty.as_millis()
        ),
    ))
}

/// How long a waiter keeps the polling turn at most while its request is on
/// its way (a waiter whose future is dropped gives it up at once; one whose
/// future is kept but no longer polled is taken over after this and a
/// grace).
pub(crate) const MAX_CLAIM_WHILE_ASKING: Duration = Duration::from_secs(10);

/// The largest uncertainty of the server clock estimate an acquisition
/// uses: well below the shortest TTL grace any backend keeps collected
/// records for (60 s), so a new record's epoch never falls below that of
/// a record collected before it.
pub(crate) const MAX_ACQUIRE_UNCERTAINTY: Duration = Duration::from_secs(5);

/// The best estimate without a round trip (for releases).
fn now_without_round_trip(shared: &Shared) -> Timestamp {
    shared
        .clock
        .any_estimate()
        .map_or_else(Timestamp::local_now, |e| e.now)
}

fn passed(deadline: Option<Instant>) -> bool {
    deadline.is_some_and(|d| Instant::now() >= d)
}

fn earliest(a: Instant, b: Option<Instant>) -> Instant {
    b.map_or(a, |b| a.min(b))
}

/// `Instant::now() + d`, saturating far in the future.
pub(crate) fn after(d: Duration) -> Instant {
    deadline_after(d).unwrap_or_else(Instant::now)
}

/// Until when a holder counts a lease granted to (or renewed by) a request
/// sent at `sent` as held: the lease, less the safety margin and the clock's uncertainty.
fn valid_from(sent: Tick, opts: &LockOptions, estimate: &Estimate) -> Tick {
    sent.add(
        opts.lease
            .saturating_sub(opts.effective_margin() + estimate.uncertainty),
    )
}
