//! The lock algorithm, written once for both forms (see [`crate::exec`]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::backend::{
    AcquireOutcome, AcquireRequest, ClockSource, InspectRequest, LockRecord, ReleaseOutcome,
    RenewOutcome, RenewRequest,
};
use crate::clock::Estimate;
use crate::coord::{SlotRef, Waiter};
use crate::exec::{Exec, OwnedRelease};
use crate::handle::Shared;
use crate::lease::{Holding, LeaseState};
use crate::options::BackoffState;
use crate::signal::Signal;
use crate::{
    BackendError, BackendErrorKind, Error, FencingToken, LockName, LockOptions, LossReason,
    OwnerId, Timestamp,
};

/// How an acquisition waits.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Mode {
    /// One attempt.
    Try,
    /// Until held or the deadline.
    Wait,
}

/// A holding with what is needed to renew and release it.
pub(crate) struct Held {
    pub(crate) holding: Holding,
    pub(crate) slot: SlotRef,
    pub(crate) opts: LockOptions,
    pub(crate) shared: Arc<Shared>,
}

/// The server clock now: a lower bound and its uncertainty.
async fn server_now<X: Exec>(
    x: &X,
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
    let sent = Instant::now();
    let server = x.server_time(deadline).await?;
    Ok(shared.clock.record(sent, server))
}

/// The best estimate without a round trip (for releases).
fn now_without_round_trip(shared: &Shared) -> Timestamp {
    shared
        .clock
        .estimate()
        .map_or_else(Timestamp::local_now, |e| e.now)
}

fn passed(deadline: Option<Instant>) -> bool {
    deadline.is_some_and(|d| Instant::now() >= d)
}

fn earliest(a: Instant, b: Option<Instant>) -> Instant {
    b.map_or(a, |b| a.min(b))
}

/// Sleep without being woken by anything.
async fn sleep_until<X: Exec>(x: &X, until: Instant) {
    let quiet = Signal::default();
    x.wait(&quiet, quiet.generation(), Some(until)).await;
}

/// An acquisition whose outcome may be unknown: released in the background
/// if it is given up (error, timeout, or the future dropped).
struct Pending<'a, X: Exec> {
    x: &'a X,
    shared: &'a Shared,
    name: &'a LockName,
    owner: &'a OwnerId,
    release_timeout: Duration,
    armed: bool,
}

impl<X: Exec> Drop for Pending<'_, X> {
    fn drop(&mut self) {
        if self.armed {
            tracing::debug!(lock = %self.name, "acquisition given up with an unknown outcome; releasing in the background");
            self.x.release_in_background(OwnedRelease {
                name: self.name.clone(),
                owner: self.owner.clone(),
                token: FencingToken(0),
                now: now_without_round_trip(self.shared),
                deadline: Some(Instant::now() + self.release_timeout),
            });
        }
    }
}

/// Acquire `name`: one attempt ([`Mode::Try`]), or wait with backoff until
/// held or `deadline` ([`Mode::Wait`]). Waiters of one name through one
/// handle share one poller and are woken by local releases.
pub(crate) async fn acquire<X: Exec>(
    x: &X,
    shared: &Arc<Shared>,
    name: &LockName,
    opts: &LockOptions,
    mode: Mode,
    deadline: Option<Instant>,
) -> Result<Option<Held>, Error> {
    let started = Instant::now();
    let owner = OwnerId::random();
    let mut waiter = Waiter::new(shared.coord.slot(name));
    let mut pending = Pending {
        x,
        shared,
        name,
        owner: &owner,
        release_timeout: opts.release_timeout,
        armed: false,
    };
    let mut backoff = BackoffState::new(opts.backoff);
    let mut attempts = 0u32;
    let timed_out = |attempts| {
        tracing::debug!(lock = %name, attempts, waited_ms = started.elapsed().as_millis() as u64, "acquire timed out");
        Err(Error::Timeout {
            name: name.to_string(),
            waited: started.elapsed(),
        })
    };
    loop {
        let seen = waiter.slot.get().signal.generation();
        // While a holder in this process has the lock, nobody asks the
        // backend: its release wakes the waiters at once, and they ask again
        // only if its lease ends without a release.
        let local_hold = waiter.slot.get().local_hold_until();
        if let Mode::Wait = mode {
            if (attempts > 0 || local_hold.is_some()) && passed(deadline) {
                return timed_out(attempts);
            }
            if !waiter.try_lead() {
                if passed(deadline) {
                    return timed_out(attempts);
                }
                x.wait(&waiter.slot.get().signal, seen, deadline).await;
                continue;
            }
        }
        if let Some(until) = local_hold {
            if let Mode::Try = mode {
                return Ok(None);
            }
            x.wait(
                &waiter.slot.get().signal,
                seen,
                Some(earliest(until, deadline)),
            )
            .await;
            continue;
        }
        attempts += 1;
        let attempt = async {
            let estimate = server_now(x, shared, deadline).await?;
            let sent = Instant::now();
            pending.armed = true;
            let outcome = x
                .try_acquire(AcquireRequest {
                    name,
                    owner: &owner,
                    lease: opts.lease,
                    now: estimate.now,
                    deadline,
                })
                .await;
            outcome.map(|o| (o, estimate, sent))
        };
        let delay = match attempt.await {
            Ok((AcquireOutcome::Acquired(grant), estimate, sent)) => {
                pending.armed = false;
                let margin = opts.effective_margin() + estimate.uncertainty;
                let valid_until = sent + opts.lease.saturating_sub(margin);
                let holding = Holding {
                    name: name.clone(),
                    owner: owner.clone(),
                    token: grant.token,
                    lease: Arc::new(LeaseState::new(valid_until, grant.expires_at)),
                    attempts,
                    waited: started.elapsed(),
                };
                waiter.slot.set_local_holder(&holding.lease);
                tracing::info!(
                    lock = %name,
                    token = grant.token.get(),
                    attempts,
                    waited_ms = holding.waited.as_millis() as u64,
                    backend = %shared.description,
                    "lock acquired"
                );
                return Ok(Some(Held {
                    holding,
                    slot: waiter.into_slot(),
                    opts: opts.clone(),
                    shared: Arc::clone(shared),
                }));
            }
            Ok((AcquireOutcome::Busy { expires_at }, estimate, _)) => {
                // Busy proves that no earlier attempt of ours holds it.
                pending.armed = false;
                if let Mode::Try = mode {
                    return Ok(None);
                }
                let delay = backoff.next_delay();
                match expires_at {
                    Some(end) if end > estimate.now => {
                        delay.min(end.since(estimate.now) + Duration::from_millis(1))
                    }
                    _ => delay,
                }
            }
            Err(error) if error.is_transient() && matches!(mode, Mode::Wait) => {
                if error.kind() == BackendErrorKind::RateLimited {
                    pending.armed = false;
                }
                let delay = error.retry_after().unwrap_or_else(|| backoff.next_delay());
                tracing::debug!(lock = %name, %error, ?delay, "acquire attempt failed; retrying");
                delay
            }
            Err(error) => {
                if error.kind() == BackendErrorKind::Timeout && deadline.is_some() {
                    return timed_out(attempts);
                }
                return Err(Error::backend(name.as_str(), error));
            }
        };
        if passed(deadline) {
            return timed_out(attempts);
        }
        tracing::trace!(lock = %name, attempts, ?delay, "waiting for lock");
        let until = earliest(Instant::now() + delay, deadline);
        x.wait(&waiter.slot.get().signal, seen, Some(until)).await;
    }
}

/// Renew the lease every `every` until the guard stops or the lease is lost.
pub(crate) async fn renew_loop<X: Exec>(
    x: X,
    shared: Arc<Shared>,
    holding: Holding,
    opts: LockOptions,
    every: Duration,
) {
    let lease = &holding.lease;
    let mut last_sent = Instant::now();
    loop {
        let seen = lease.signal.generation();
        if lease.is_stopped() || lease.loss().is_some() {
            return;
        }
        // Renew every `every`, and in any case with a third of the validity
        // left (the validity can be shorter than the lease when the server
        // clock estimate is uncertain).
        let valid_until = lease.valid_until();
        let next = (last_sent + every)
            .min(last_sent + valid_until.saturating_duration_since(last_sent) * 2 / 3);
        if Instant::now() < next {
            x.wait(&lease.signal, seen, Some(next)).await;
            continue;
        }
        let mut backoff = BackoffState::new(opts.backoff);
        loop {
            let valid_until = lease.valid_until();
            if lease.is_stopped() {
                return;
            }
            if Instant::now() >= valid_until {
                if lease.mark_lost(LossReason::RenewalFailed) || lease.loss().is_some() {
                    tracing::warn!(lock = %holding.name, token = holding.token.get(), reason = ?lease.loss(), "lease lost");
                }
                return;
            }
            let sent = Instant::now();
            let result = async {
                let estimate = server_now(&x, &shared, Some(valid_until)).await?;
                let outcome = x
                    .renew(RenewRequest {
                        name: &holding.name,
                        owner: &holding.owner,
                        token: holding.token,
                        lease: opts.lease,
                        now: estimate.now,
                        deadline: Some(valid_until),
                    })
                    .await?;
                Ok::<_, BackendError>((outcome, estimate))
            }
            .await;
            if lease.is_stopped() {
                return;
            }
            match result {
                Ok((RenewOutcome::Renewed { expires_at }, estimate)) => {
                    let margin = opts.effective_margin() + estimate.uncertainty;
                    if lease.extend(sent + opts.lease.saturating_sub(margin), expires_at) {
                        tracing::debug!(lock = %holding.name, token = holding.token.get(), expires_at = expires_at.as_millis(), "lease renewed");
                        last_sent = sent;
                        break;
                    }
                    tracing::warn!(lock = %holding.name, token = holding.token.get(), reason = ?lease.loss(), "lease lost: renewed too late");
                    return;
                }
                Ok((RenewOutcome::Lost, _)) => {
                    lease.mark_lost(LossReason::Taken);
                    tracing::warn!(lock = %holding.name, token = holding.token.get(), reason = ?lease.loss(), "lease lost: the lock is not ours any more");
                    return;
                }
                Err(error) => {
                    lease.note_renewal_error();
                    let delay = error.retry_after().unwrap_or_else(|| backoff.next_delay());
                    tracing::warn!(lock = %holding.name, token = holding.token.get(), %error, ?delay, "lease renewal failed; retrying");
                    x.wait(
                        &lease.signal,
                        lease.signal.generation(),
                        Some((Instant::now() + delay).min(valid_until)),
                    )
                    .await;
                }
            }
        }
    }
}

/// Release a holding: only ever the caller's own. Retries transient errors
/// within the release timeout, then wakes local waiters.
pub(crate) async fn release<X: Exec>(x: &X, held: &Held) -> Result<(), Error> {
    let holding = &held.holding;
    let lost_before = holding.lease.stop();
    let deadline = Instant::now() + held.opts.release_timeout;
    let mut backoff = BackoffState::new(held.opts.backoff);
    let result = loop {
        let now = now_without_round_trip(&held.shared);
        let outcome = x
            .release(crate::backend::ReleaseRequest {
                name: &holding.name,
                owner: &holding.owner,
                token: holding.token,
                now,
                deadline: Some(deadline),
            })
            .await;
        match outcome {
            Err(error) if error.is_transient() && Instant::now() < deadline => {
                let delay = error.retry_after().unwrap_or_else(|| backoff.next_delay());
                sleep_until(x, (Instant::now() + delay).min(deadline)).await;
            }
            other => break other,
        }
    };
    held.slot.get().note_release();
    let token = holding.token.get();
    match (result, lost_before) {
        (Ok(ReleaseOutcome::Released), None) => {
            tracing::info!(lock = %holding.name, token, "lock released");
            Ok(())
        }
        (Ok(ReleaseOutcome::Released), Some(reason)) => {
            tracing::warn!(lock = %holding.name, token, %reason, "released a lease that had been reported lost");
            Err(holding.lost_error(reason))
        }
        (Ok(ReleaseOutcome::NotOwner), reason) => {
            let reason = reason.unwrap_or(LossReason::Taken);
            tracing::warn!(lock = %holding.name, token, %reason, "release changed nothing: the lease was lost");
            Err(holding.lost_error(reason))
        }
        (Err(error), _) => {
            tracing::warn!(lock = %holding.name, token, %error, "release failed; the lease expiry will free the lock");
            Err(Error::backend(holding.name.as_str(), error))
        }
    }
}

/// Read who holds `name`, without acquiring.
pub(crate) async fn inspect<X: Exec>(
    x: &X,
    shared: &Shared,
    name: &LockName,
    opts: &LockOptions,
) -> Result<Option<LockRecord>, Error> {
    let deadline = Instant::now() + opts.timeout.unwrap_or(opts.release_timeout);
    let mut backoff = BackoffState::new(opts.backoff);
    loop {
        let result = async {
            let estimate = server_now(x, shared, Some(deadline)).await?;
            x.inspect(InspectRequest {
                name,
                now: estimate.now,
                deadline: Some(deadline),
            })
            .await
        }
        .await;
        match result {
            Err(error) if error.is_transient() && Instant::now() < deadline => {
                let delay = error.retry_after().unwrap_or_else(|| backoff.next_delay());
                sleep_until(x, (Instant::now() + delay).min(deadline)).await;
            }
            other => return other.map_err(|e| Error::backend(name.as_str(), e)),
        }
    }
}
