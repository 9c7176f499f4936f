//! Renewing a lease: [`Renewer`] is one renewal at a time; [`renew_loop`]
//! runs it.

use std::sync::Arc;
use std::time::Duration;

use super::{GuardState, server_now, valid_from};
use crate::backend::{RenewOutcome, RenewRequest};
use crate::exec::Exec;
use crate::handle::Shared;
use crate::lease::{Holding, LeaseState};
use crate::options::BackoffState;
use crate::tick::Tick;
use crate::{BackendError, LockOptions, LossReason};

/// The renewal of one lease, one step at a time.
pub(crate) struct Renewer {
    shared: Arc<Shared>,
    holding: Holding,
    opts: LockOptions,
    every: Duration,
    last_sent: Tick,
    backoff: BackoffState,
    /// The last renewal failed: retry with backoff instead of on schedule.
    failing: bool,
    meter: crate::metrics::Meter,
}

impl Renewer {
    /// A renewer of `state`'s lease, if its options renew.
    pub(crate) fn new(state: &GuardState) -> Option<Self> {
        let every = state.opts.renew_interval()?;
        Some(Renewer {
            shared: Arc::clone(&state.shared),
            holding: state.holding.clone(),
            opts: state.opts.clone(),
            every,
            last_sent: Tick::now(),
            backoff: BackoffState::new(state.opts.backoff),
            failing: false,
            meter: state.held.meter().clone(),
        })
    }

    /// The lease's shared state (its signal wakes the async renewal loop).
    pub(crate) fn lease(&self) -> &Arc<LeaseState> {
        &self.holding.lease
    }

    /// When the next renewal is due: every `every`, and in any case with a
    /// third of the validity left (the validity can be shorter than the
    /// lease when the server clock estimate is uncertain).
    fn due(&self) -> Tick {
        let valid_for = self.holding.lease.valid_until().since(self.last_sent);
        self.last_sent.add(self.every.min(valid_for * 2 / 3))
    }

    /// One step: renews if due. Returns when the next step is due, or
    /// `None` once the renewal is over (guard released, lease lost).
    pub(crate) async fn step(&mut self, x: &Exec) -> Option<Tick> {
        let (holding, lease) = (&self.holding, &self.holding.lease);
        if lease.is_stopped() || lease.loss().is_some() {
            return None;
        }
        if !self.failing {
            let due = self.due();
            if !due.passed() {
                return Some(due);
            }
        }
        let valid_until = lease.valid_until();
        if valid_until.passed() {
            if lease.mark_lost(LossReason::RenewalFailed) {
                tracing::warn!(lock = %holding.name, token = holding.token.get(), reason = ?lease.loss(), "lease lost");
            }
            return None;
        }
        // Until this renewal is answered, an end of the validity is the
        // renewal's failure (not an expiry the holder chose).
        lease.note_renewal_error();
        let sent = Tick::now();
        let deadline = Some(valid_until.to_instant());
        let result = async {
            let estimate = server_now(x, &self.shared, deadline).await?;
            let outcome = x
                .renew(RenewRequest {
                    name: &holding.name,
                    owner: &holding.owner,
                    token: holding.token,
                    lease: self.opts.lease,
                    now: estimate.now,
                    deadline,
                })
                .await?;
            Ok::<_, BackendError>((outcome, estimate))
        }
        .await;
        if lease.is_stopped() {
            return None;
        }
        match result {
            Ok((RenewOutcome::Renewed { expires_at }, estimate)) => {
                if !lease.extend(valid_from(sent, &self.opts, &estimate), expires_at) {
                    tracing::warn!(lock = %holding.name, token = holding.token.get(), reason = ?lease.loss(), "lease lost: renewed too late");
                    return None;
                }
                tracing::debug!(lock = %holding.name, token = holding.token.get(), expires_at = expires_at.as_millis(), "lease renewed");
                self.meter.renewed();
                self.last_sent = sent;
                self.failing = false;
                self.backoff = BackoffState::new(self.opts.backoff);
                Some(self.due())
            }
            Ok((RenewOutcome::Forced, _)) => {
                lease.mark_lost(LossReason::Forced);
                tracing::warn!(lock = %holding.name, token = holding.token.get(), reason = ?lease.loss(), "lease lost: an administrator forced the lock's release");
                None
            }
            Ok((RenewOutcome::Lost, _)) => {
                lease.mark_lost(LossReason::Taken);
                tracing::warn!(lock = %holding.name, token = holding.token.get(), reason = ?lease.loss(), "lease lost: the lock is not ours any more");
                None
            }
            Err(error) => {
                lease.note_renewal_error();
                self.meter.renewal_failed(&error);
                self.failing = true;
                let delay = error
                    .retry_after()
                    .unwrap_or_else(|| self.backoff.next_delay());
                tracing::warn!(lock = %holding.name, token = holding.token.get(), %error, ?delay, "lease renewal failed; retrying");
                Some(Tick::now().add(delay).min(valid_until))
            }
        }
    }
}

/// Renew a lease until its guard stops or the lease is lost (the async
/// form's driver of [`Renewer`]).
pub(crate) async fn renew_loop(x: Exec, mut renewer: Renewer) {
    let lease = Arc::clone(renewer.lease());
    loop {
        // Read before the step looks at the lease: a stop after that look
        // moves the generation, so the wait below returns at once.
        let seen = lease.signal.generation();
        // Boxed: the step's future (a round trip) is large and short-lived;
        // an idle renewal task (10,000 guards: 10,000 of them) then holds
        // only its wait.
        match Box::pin(renewer.step(&x)).await {
            None => return,
            Some(at) => {
                if !at.passed() {
                    x.wait(&lease.signal, seen, Some(at.to_instant())).await;
                }
            }
        }
    }
}
