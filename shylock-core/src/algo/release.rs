//! Releasing a holding: [`release()`], and [`send_release`], its retry
//! loop, which the clean-up after an acquisition with an unknown outcome
//! uses too; and [`inspect`], which reads who holds a lock.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::{GuardState, after, earliest, now_without_round_trip, passed, server_now};
use crate::backend::{InspectRequest, LockRecord, ReleaseOutcome};
use crate::exec::{Exec, OwnedRelease};
use crate::handle::Shared;
use crate::options::BackoffState;
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
    let lost_before = holding.lease.stop();
    let earlier = state.release_sent.swap(true, Ordering::SeqCst);
    let sent = send_release(
        x,
        &state.owned_release(None),
        state.opts.backoff,
        state.opts.release_timeout,
    )
    .await;
    let maybe_released = earlier || sent.maybe_released;
    state.slot.get().note_release();
    let token = holding.token.get();
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
