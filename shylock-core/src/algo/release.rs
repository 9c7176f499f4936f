//! Releasing a holding: [`release()`], and [`send_release`], its retry
//! loop, which the clean-up after an acquisition with an unknown outcome
//! uses too; and [`inspect`], which reads who holds a lock.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::{GuardState, after, earliest, now_without_round_trip, passed, server_now, valid_from};
use crate::backend::{
    HandOverOutcome, HandOverRequest, InspectRequest, LockRecord, ReleaseOutcome,
};
use crate::coord::{Claim, Entry, Handed, Mail};
use crate::exec::{Exec, OwnedRelease};
use crate::handle::Shared;
use crate::lease::LeaseState;
use crate::options::BackoffState;
use crate::tick::Tick;
use crate::tick::deadline_after;
use crate::{BackendError, BackendErrorKind, Error, LockName, LockOptions, LossReason};

impl GuardState {
    fn owned_release(&self, deadline: Option<Instant>) -> OwnedRelease {
        OwnedRelease {
            name: self.holding.name.clone(),
            owner: self.holding.owner.clone(),
            token: self.holding.token,
            now: now_without_round_trip(&self.shared),
            deadline,
        }
    }
}

/// The answer of [`send_release`]: the last answer, and whether an
/// earlier request of it may have been applied (then a `NotOwner` answer
/// means that request freed the lock).
pub(crate) struct Sent {
    pub(crate) result: Result<ReleaseOutcome, BackendError>,
    pub(crate) maybe_released: bool,
}

/// Send a release, retrying transient errors with backoff for
/// `release_timeout`: the one retry loop of every release, of a guard's or
/// of a clean-up.
pub(crate) async fn send_release(
    x: &Exec,
    req: &OwnedRelease,
    backoff: crate::options::Backoff,
    release_timeout: Duration,
) -> Sent {
    let deadline = deadline_after(release_timeout);
    let mut backoff = BackoffState::new(backoff);
    let mut maybe_released = false;
    loop {
        let req = OwnedRelease {
            now: req.now,
            deadline,
            ..req.clone()
        };
        match x.release(req.request()).await {
            Err(error) if error.is_transient() && !passed(deadline) => {
                maybe_released |= error.kind() != BackendErrorKind::RateLimited;
                let delay = error.retry_after().unwrap_or_else(|| backoff.next_delay());
                x.sleep_until(earliest(after(delay), deadline)).await;
            }
            result => {
                return Sent {
                    result,
                    maybe_released,
                };
            }
        }
    }
}

/// What a handoff attempt came to.
enum HandOff {
    /// Not tried (no waiter, the bound, no clock): release globally.
    NotTried,
    /// The lock is the waiter's.
    Done,
    /// The record was not ours: the lease was lost.
    NotOwner,
    /// The outcome is unknown: release globally (a `NotOwner` then means
    /// the handoff went through).
    Unknown,
}

/// Hand the lock to a waiter of this process on the same handle, in one
/// command, if one waits and the fairness bound allows (see
/// [`Handoff`](crate::Handoff)). The waiter's lease is measured from when
/// the command was sent, as an acquisition's.
async fn hand_over(x: &Exec, state: &GuardState) -> HandOff {
    let holding = &state.holding;
    let slot = state.slot.get();
    let hold_back = state
        .opts
        .handoff
        .hold_back_for(&state.opts.backoff, state.shared.round_trip.get());
    let entry = match slot.claim(&state.opts.handoff, hold_back) {
        Claim::To(entry) => entry,
        Claim::Release => return HandOff::NotTried,
    };
    // Settled however this ends: a future dropped on the way leaves the
    // outcome unknown (the waiter asks again, or cleans up).
    let mut claim = Claimed {
        x,
        state,
        entry: &entry,
        outcome: Some(Err(Mail::Unknown)),
    };
    let deadline = deadline_after(state.opts.release_timeout.min(entry.opts.lease));
    let estimate = match server_now(x, &state.shared, deadline).await {
        Ok(estimate) => estimate,
        Err(_) => {
            claim.outcome = Some(Err(Mail::Declined));
            return HandOff::NotTried;
        }
    };
    let sent = Tick::now();
    let started = Instant::now();
    let result = x
        .hand_over(HandOverRequest {
            name: &holding.name,
            from: &holding.owner,
            token: holding.token,
            to: &entry.owner,
            lease: entry.opts.lease,
            now: estimate.now,
            deadline,
        })
        .await;
    if result.is_ok() {
        state.shared.round_trip.observe(started.elapsed());
    }
    match result {
        Ok(HandOverOutcome::HandedOver(grant)) => {
            let until = valid_from(sent, &entry.opts, &estimate);
            let lease = std::sync::Arc::new(LeaseState::new(until, grant.expires_at));
            claim.outcome = Some(Ok(Handed {
                grant,
                estimate,
                sent,
                lease,
            }));
            tracing::info!(lock = %holding.name, token = holding.token.get(), to_token = grant.token.get(), "lock handed over to a waiter in this process");
            HandOff::Done
        }
        Ok(HandOverOutcome::NotOwner) => {
            claim.outcome = Some(Err(Mail::Declined));
            HandOff::NotOwner
        }
        Err(error) => {
            tracing::debug!(lock = %holding.name, %error, "hand-over failed; releasing instead");
            HandOff::Unknown
        }
    }
}

/// A claimed handoff, settled when dropped: its outcome goes to the
/// waiter's entry, or, if the waiter is gone, a lock that may be its is
/// released in the background.
struct Claimed<'a> {
    x: &'a Exec,
    state: &'a GuardState,
    entry: &'a Entry,
    outcome: Option<Result<Handed, Mail>>,
}

impl Drop for Claimed<'_> {
    fn drop(&mut self) {
        // The old holding ends before the new one is delivered.
        self.state.holding.lease.stop();
        let outcome = self.outcome.take().unwrap_or(Err(Mail::Unknown));
        let maybe_theirs = !matches!(outcome, Err(Mail::Declined));
        if !self.state.slot.get().finish(self.entry, outcome) && maybe_theirs {
            clean_up_after(self.x, self.state, self.entry);
        }
    }
}

/// [`hand_over`], the holder's lease stopped once the waiter is claimed
/// (or at once when nobody is).
async fn hand_over_stopping(x: &Exec, state: &GuardState) -> HandOff {
    let result = hand_over(x, state).await;
    state.holding.lease.stop();
    result
}

/// The waiter of `entry` went away while the lock was (maybe) handed to it:
/// release its owner's holding in the background.
fn clean_up_after(x: &Exec, state: &GuardState, entry: &Entry) {
    tracing::debug!(lock = %state.holding.name, "the waiter a lock was handed to is gone; releasing in the background");
    x.clean_up(
        None,
        std::time::Duration::ZERO,
        OwnedRelease {
            name: state.holding.name.clone(),
            owner: entry.owner.clone(),
            token: crate::FencingToken(0),
            now: now_without_round_trip(&state.shared),
            deadline: None,
        },
        true,
        (state.opts.backoff, state.opts.release_timeout),
    );
}

/// Release a holding: only ever the caller's own. Retries transient errors
/// within the release timeout, then wakes local waiters. May be called again
/// for the same holding (a release whose future was dropped is finished in
/// the background this way): a `NotOwner` answer after a request that may
/// have been applied means that request freed the lock.
pub(crate) async fn release(x: &Exec, state: &GuardState) -> Result<(), Error> {
    state.held.end();
    let result = release_and_log(x, state).await;
    state.held.meter().released(&result);
    result
}

/// [`release()`] without its metrics.
async fn release_and_log(x: &Exec, state: &GuardState) -> Result<(), Error> {
    let holding = &state.holding;
    let earlier = state.release_sent.swap(true, Ordering::SeqCst);
    let mut handoff = HandOff::NotTried;
    if !earlier
        && holding.lease.loss().is_none()
        && !holding.lease.is_stopped()
        && x.supports_hand_over()
    {
        // The lease is stopped inside: the claim marks the handoff on its
        // way first, so the other waiters keep waiting for it.
        handoff = hand_over_stopping(x, state).await;
    }
    let lost_before = holding.lease.stop();
    let token = holding.token.get();
    match handoff {
        HandOff::Done => return Ok(()),
        HandOff::NotOwner => {
            state.slot.get().note_release();
            let reason = lost_before.unwrap_or(LossReason::Taken);
            tracing::warn!(lock = %holding.name, token, %reason, "hand-over changed nothing: the lease was lost");
            return Err(holding.lost_error(reason));
        }
        HandOff::NotTried | HandOff::Unknown => {}
    }
    let earlier = earlier || matches!(handoff, HandOff::Unknown);
    let sent = send_release(
        x,
        &state.owned_release(None),
        state.opts.backoff,
        state.opts.release_timeout,
    )
    .await;
    let maybe_released = earlier || sent.maybe_released;
    state.slot.get().note_release();
    match (sent.result, lost_before) {
        (Ok(ReleaseOutcome::Released), None) => {
            tracing::info!(lock = %holding.name, token, "lock released");
            Ok(())
        }
        (Ok(ReleaseOutcome::NotOwner), None) if maybe_released => {
            // An earlier request of this release (whose answer was lost, or
            // whose future was dropped) freed it; the lease was valid when
            // the release began, so the critical section was covered.
            tracing::info!(lock = %holding.name, token, "lock released (by an earlier request whose answer was lost)");
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
pub(crate) async fn inspect(
    x: &Exec,
    shared: &Shared,
    name: &LockName,
    opts: &LockOptions,
) -> Result<Option<LockRecord>, Error> {
    let deadline = deadline_after(opts.timeout.unwrap_or(opts.release_timeout));
    let mut backoff = BackoffState::new(opts.backoff);
    loop {
        let result = async {
            let estimate = server_now(x, shared, deadline).await?;
            x.inspect(InspectRequest {
                name,
                now: estimate.now,
                deadline,
            })
            .await
        }
        .await;
        match result {
            Err(error) if error.is_transient() && !passed(deadline) => {
                let delay = error.retry_after().unwrap_or_else(|| backoff.next_delay());
                x.sleep_until(earliest(after(delay), deadline)).await;
            }
            other => return other.map_err(|e| Error::backend(name.as_str(), e)),
        }
    }
}
