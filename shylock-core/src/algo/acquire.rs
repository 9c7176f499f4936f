//! Acquiring a lock: [`acquire()`] runs an [`Acquisition`], whose
//! policies each have one home ([`Acquisition::wait_for_turn`],
//! [`Acquisition::ask`], [`Acquisition::judge`]); [`Pending`] cleans up
//! after requests whose outcome is unknown when the acquisition ends
//! without the lock.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use super::{
    GuardState, MAX_CLAIM_WHILE_ASKING, Mode, after, earliest, now_without_round_trip, passed,
    server_now_for_acquire, valid_from,
};
use crate::backend::{AcquireOutcome, Grant};
use crate::clock::Estimate;
use crate::coord::{CLAIM_WHILE_ASKING, Entry, Handed, Looked, Next, Waiter, takeover_grace};
use crate::exec::{Exec, InFlight, OwnedAcquire, OwnedRelease};
use crate::handle::Shared;
use crate::lease::{Holding, LeaseState};
use crate::metrics::{Acquiring, Held, Meter};
use crate::options::BackoffState;
use crate::tick::Tick;
use crate::{
    BackendError, BackendErrorKind, Error, FencingToken, LockName, LockOptions, OwnerId, Timestamp,
};

/// The requests of one acquisition whose outcome is not settled. If the
/// acquisition ends without the lock (error, time-out, or the future
/// dropped), whatever may have been granted is released in the background,
/// after the request on its way (if any) has finished.
struct Pending<'a> {
    x: &'a Exec,
    shared: &'a Shared,
    name: &'a LockName,
    owner: &'a OwnerId,
    opts: &'a LockOptions,
    /// The request on its way, if one was sent and not answered.
    in_flight: Option<InFlight>,
    /// Whether a request was answered with an error after which it may
    /// still have been granted (or was granted too late to use).
    unknown: bool,
    /// The acquisition got the lock: nothing to clean up.
    settled: bool,
    /// Its registration for a handoff, if it is registered.
    entry: Option<Arc<Entry>>,
}

impl Pending<'_> {
    /// Look at this acquisition's handoff entry, if it has one (see
    /// [`Entry::look`]; `asking` as there), and settle what was left: an
    /// entry handed over, declined or withdrawn is dropped, and one whose
    /// handoff has an unknown outcome too, the acquisition then asking
    /// again as the same owner (or cleaning up). No entry: `Nothing`.
    fn look_entry(&mut self, asking: Option<bool>) -> Looked {
        let Some(entry) = &self.entry else {
            return Looked::Nothing;
        };
        let looked = entry.look(asking);
        match looked {
            Looked::Pending { .. } => {}
            Looked::Unknown => {
                self.entry = None;
                self.unknown = true;
            }
            Looked::Handed(_) | Looked::Nothing => self.entry = None,
        }
        looked
    }
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        // A lock handed over (or maybe handed over) to this acquisition
        // that it will not use is released like a grant it gave up.
        if let Some(entry) = self.entry.take()
            && entry.abandon()
        {
            self.unknown = true;
        }
        if self.settled || !(self.unknown || self.in_flight.is_some()) {
            return;
        }
        tracing::debug!(lock = %self.name, "acquisition given up with an unknown outcome; releasing in the background");
        self.x.clean_up(
            self.in_flight.take(),
            self.opts.lease.saturating_add(self.opts.release_timeout),
            OwnedRelease {
                name: self.name.clone(),
                owner: self.owner.clone(),
                token: FencingToken(0),
                now: now_without_round_trip(self.shared),
                deadline: None,
            },
            self.unknown,
            (self.opts.backoff, self.opts.release_timeout),
        );
    }
}

/// What the waiting policy decided.
enum TurnTo<B> {
    /// Ask the backend.
    Ask,
    /// A try found the lock held here.
    Busy(B),
    /// A local holder handed the lock over to this acquisition.
    Handed(Handed),
}

/// What to do after an answer.
enum Step<B> {
    /// The lock is ours, valid until then.
    Granted(Grant, Tick),
    /// A try found the lock held.
    Busy(B),
    /// The acquisition ends with this error.
    Failed(Error),
    /// Ask again after this delay (or a wake-up).
    RetryAfter(Duration),
}

/// One acquisition: an owner id and everything it has asked so far.
struct Acquisition<'a, M: Mode> {
    x: &'a Exec,
    shared: &'a Shared,
    name: &'a LockName,
    opts: &'a LockOptions,
    mode: std::marker::PhantomData<M>,
    deadline: Option<Instant>,
    waiter: Waiter,
    pending: Pending<'a>,
    backoff: BackoffState,
    started: Instant,
    attempts: u32,
    /// The error of the last request, while the backend keeps failing
    /// (cleared by any answer): the cause of a time-out, if it comes.
    failure: Option<BackendError>,
    /// The clock estimate the last request was sent with, and when.
    last_sent: Option<(Estimate, Tick)>,
    /// Whether it has waited for a local holder or for the turn.
    waited_for_turn: bool,
    /// How many answers (granted or busy) the backend gave it.
    answers: u32,
}

impl<M: Mode> Acquisition<'_, M> {
    fn timed_out(&mut self) -> Error {
        let source = self.failure.take();
        let waited = self.started.elapsed();
        tracing::debug!(lock = %self.name, attempts = self.attempts, waited_ms = waited.as_millis() as u64, failing = source.is_some(), "acquire timed out");
        Error::Timeout {
            name: self.name.to_string(),
            waited,
            source,
        }
    }

    /// Whether `error` is a request cut off by the caller's deadline while
    /// the backend was answering (it answered this acquisition before, and
    /// no failure came since).
    fn cut_by_the_callers_limit(&self, error: &BackendError) -> bool {
        error.kind() == BackendErrorKind::Timeout
            && passed(self.deadline)
            && self.answers > 0
            && self.failure.is_none()
    }

    /// Nothing asked and nothing waited for yet.
    fn first_look(&self) -> bool {
        self.attempts == 0 && !self.waited_for_turn
    }

    /// The backend answered (granted or busy): it is not failing.
    fn answered(&mut self) {
        self.answers += 1;
        if self.failure.take().is_some() {
            tracing::info!(lock = %self.name, attempts = self.attempts, "the backend answers again");
        }
    }

    /// A request failed with a transient error: still waiting for the lock,
    /// but an outage must not look like contention. Warn (at most once per
    /// [`Complaints::EVERY`](crate::handle::Complaints::EVERY) per handle),
    /// and keep the error as the cause of a time-out.
    fn failed(&mut self, error: BackendError, delay: Duration) {
        match self.shared.complaints.allow() {
            Some(held_back) => tracing::warn!(
                lock = %self.name,
                %error,
                attempts = self.attempts,
                waited_ms = self.started.elapsed().as_millis() as u64,
                similar_warnings_held_back = held_back,
                "acquire attempt failed; still waiting for the lock while the backend fails"
            ),
            None => {
                tracing::debug!(lock = %self.name, %error, ?delay, "acquire attempt failed; retrying")
            }
        }
        self.failure = Some(error);
    }

    /// The waiting policy: wait while a holder in this process has the lock
    /// (its release wakes us, or hands the lock over to us), while another
    /// waiter has the polling turn (taking it over if that waiter stops
    /// asking), and while this process holds back for other processes
    /// after its handoff bound.
    async fn wait_for_turn(&mut self) -> Result<TurnTo<M::Busy>, Error> {
        let grace = takeover_grace(self.opts.backoff.max);
        loop {
            let slot = self.waiter.slot.get();
            let seen = slot.signal.generation();
            let mut claimed = false;
            match self.pending.look_entry(None) {
                Looked::Pending { claimed: c } => claimed = c,
                Looked::Handed(handed) => return Ok(TurnTo::Handed(handed)),
                Looked::Unknown | Looked::Nothing => {}
            }
            // A waiting acquisition is registered for a handoff all along
            // (except while its own request is on its way): a holder here
            // that releases hands the lock to the first one registered.
            if M::busy().is_none()
                && self.pending.entry.is_none()
                && self.pending.in_flight.is_none()
                && self.opts.handoff.is_on()
                && self.x.supports_hand_over()
            {
                let entry = Arc::new(Entry::new(self.pending.owner.clone(), self.opts.clone()));
                slot.register(&entry);
                self.pending.entry = Some(entry);
            }
            let until = match (slot.local_hold_until(), M::busy()) {
                (Some(_), Some(busy)) => return Ok(TurnTo::Busy(busy)),
                (Some(held_until), None) => held_until.to_instant(),
                (None, Some(_)) => return Ok(TurnTo::Ask),
                (None, None) if claimed => after(CLAIM_WHILE_ASKING),
                (None, None) => match slot.hold_back_until() {
                    Some(until) => until,
                    None => match self.waiter.take_turn(grace) {
                        // An acquisition that has not waited yet gets its
                        // one attempt, even with a zero timeout; one that
                        // waited out its time for the turn does not send a
                        // request it could not wait for.
                        Next::Ask if !passed(self.deadline) || self.first_look() => {
                            // Not to be handed the lock while it asks (a
                            // handoff that got in first is taken instead).
                            match self.pending.look_entry(Some(true)) {
                                Looked::Pending { claimed: true } => continue,
                                Looked::Handed(handed) => return Ok(TurnTo::Handed(handed)),
                                Looked::Pending { claimed: false }
                                | Looked::Unknown
                                | Looked::Nothing => return Ok(TurnTo::Ask),
                            }
                        }
                        Next::Ask => return Err(self.timed_out()),
                        Next::WaitUntil(until) => until,
                    },
                },
            };
            if passed(self.deadline) {
                return Err(self.timed_out());
            }
            self.waited_for_turn = true;
            self.x
                .wait(&slot.signal, seen, Some(earliest(until, self.deadline)))
                .await;
        }
    }

    /// The request was answered without the lock: claimable for a handoff
    /// again (unless a request of it is still on its way).
    fn asked(&mut self) {
        if self.pending.in_flight.is_some() {
            return;
        }
        // Not claimable while asking, so never handed here; were it, the
        // record may be this owner's: settled as unknown.
        if let Looked::Handed(handed) = self.pending.look_entry(Some(false)) {
            handed.lease.mark_lost(crate::LossReason::Released);
            self.pending.unknown = true;
        }
    }

    /// One request. Returns the answer, the clock estimate it was sent
    /// with and when it was sent.
    async fn ask(&mut self) -> (Result<AcquireOutcome, BackendError>, Estimate, Tick) {
        self.attempts += 1;
        let none = Estimate {
            now: Timestamp::EPOCH,
            uncertainty: Duration::ZERO,
        };
        // No request is waited for longer than the lease it asks for (an
        // answer after that grants nothing usable) at a time, even without
        // a caller's limit.
        let deadline = Some(earliest(after(self.opts.lease), self.deadline));
        // While the request is on its way, the turn stays this waiter's
        // (up to that wait, at most `MAX_CLAIM_WHILE_ASKING`): during a
        // backend stall the other waiters do not send one request each.
        self.waiter
            .keep_turn_until(earliest(after(MAX_CLAIM_WHILE_ASKING), deadline));
        if self.pending.in_flight.is_some() {
            // The last request outlived that wait and is still on its way:
            // wait for it again rather than let two requests of one owner
            // cross (its answer is judged by when it was sent).
            let (estimate, sent) = self.last_sent.unwrap_or((none, Tick::now()));
            let outcome = self
                .x
                .finish_acquire(&mut self.pending.in_flight, deadline)
                .await;
            return (outcome, estimate, sent);
        }
        let estimate = match server_now_for_acquire(self.x, self.shared, deadline).await {
            Ok(estimate) => estimate,
            Err(error) => return (Err(error), none, Tick::now()),
        };
        let sent = Tick::now();
        let started = Instant::now();
        self.last_sent = Some((estimate, sent));
        self.pending.in_flight = Some(self.x.start_acquire(OwnedAcquire {
            name: self.name.clone(),
            owner: self.pending.owner.clone(),
            lease: self.opts.lease,
            now: estimate.now,
            deadline,
        }));
        let outcome = self
            .x
            .finish_acquire(&mut self.pending.in_flight, deadline)
            .await;
        if outcome.is_ok() {
            self.shared.round_trip.observe(started.elapsed());
        }
        if matches!(&outcome, Err(e) if e.kind() != BackendErrorKind::RateLimited) {
            // The request may have been applied: clean up if we give up.
            // (A rate-limited request was refused; it proves nothing about
            // earlier ones, so it does not settle them either.)
            self.pending.unknown = true;
        }
        (outcome, estimate, sent)
    }

    /// The error policy: what an answer means.
    fn judge(
        &mut self,
        outcome: Result<AcquireOutcome, BackendError>,
        estimate: &Estimate,
        sent: Tick,
    ) -> Step<M::Busy> {
        match outcome {
            Ok(AcquireOutcome::Acquired(grant)) => {
                self.answered();
                let until = valid_from(sent, self.opts, estimate);
                if until.passed() {
                    // The answer came after the lease it granted had ended on
                    // our clock (a stall, or a clock estimate too uncertain):
                    // the record is ours but useless. Ask again, as the same
                    // owner (which the backend grants anew), with a fresh
                    // clock sample; if we give up instead, it is released.
                    self.pending.unknown = true;
                    self.shared.clock.invalidate();
                    tracing::debug!(lock = %self.name, attempts = self.attempts, "a grant arrived after its lease; asking again");
                    return Step::RetryAfter(self.backoff.next_delay());
                }
                Step::Granted(grant, until)
            }
            Ok(AcquireOutcome::Busy { expires_at }) => {
                let (yielded, granted) = self.waiter.slot.get().note_remote_busy();
                if let Some(busy) = M::busy() {
                    return Step::Busy(busy);
                }
                self.answered();
                let not_granted_for = granted.unwrap_or(self.started).elapsed();
                let longest = (self.opts.handoff).poll_wait(
                    &self.opts.backoff,
                    self.shared.round_trip.get(),
                    not_granted_for,
                );
                // A process that held back for others polls at its longest
                // wait from its first busy answer on (its hold-back covers
                // that wait, so it still gets a turn after each elsewhere).
                let delay = self.backoff.next_delay_up_to(longest, yielded);
                Step::RetryAfter(match expires_at {
                    Some(end) if end > estimate.now => {
                        delay.min(end.since(estimate.now) + Duration::from_millis(1))
                    }
                    _ => delay,
                })
            }
            Err(error) if self.cut_by_the_callers_limit(&error) => {
                // The backend answered before, and only the caller's own
                // limit cut this request off: contention, not a failure.
                Step::Failed(self.timed_out())
            }
            Err(error) if error.is_transient() && M::busy().is_none() => {
                let delay = error
                    .retry_after()
                    .unwrap_or_else(|| self.backoff.next_delay());
                self.failed(error, delay);
                Step::RetryAfter(delay)
            }
            Err(error) if error.kind() == BackendErrorKind::Timeout && passed(self.deadline) => {
                self.failure = Some(error);
                Step::Failed(self.timed_out())
            }
            Err(error) => Step::Failed(Error::backend(self.name.as_str(), error)),
        }
    }

    /// Wait `delay` before asking again (woken early by a local release),
    /// telling the other waiters when this one asks next.
    async fn pause(&mut self, delay: Duration, seen: u64) -> Result<(), Error> {
        if passed(self.deadline) {
            return Err(self.timed_out());
        }
        let until = earliest(after(delay), self.deadline);
        self.waiter.keep_turn_until(until);
        tracing::trace!(lock = %self.name, attempts = self.attempts, ?delay, "waiting for lock");
        self.x
            .wait(&self.waiter.slot.get().signal, seen, Some(until))
            .await;
        Ok(())
    }
}

/// Acquire `name`: one attempt ([`Try`](super::Try): `Err(())` when
/// held), or wait with backoff until held or `deadline`
/// ([`Wait`](super::Wait): never `Err`). The acquisition runs in a new
/// `lock` span (the lock's name, and its token once granted), which the
/// holding keeps.
pub(crate) async fn acquire<M: Mode>(
    x: &Exec,
    shared: &Arc<Shared>,
    name: &LockName,
    opts: &LockOptions,
    deadline: Option<Instant>,
) -> Result<Result<GuardState, M::Busy>, Error> {
    use tracing::Instrument;
    let span = tracing::info_span!("lock", lock = %name, token = tracing::field::Empty);
    let meter = Meter::new(&shared.metrics_backend, name, opts);
    let acquiring = Acquiring::start(&meter);
    let result = acquire_in_span::<M>(x, shared, name, opts, deadline, &span, &meter)
        .instrument(span.clone())
        .await;
    acquiring.end(match &result {
        Ok(Ok(_)) => Ok(true),
        Ok(Err(_)) => Ok(false),
        Err(error) => Err(error),
    });
    result
}

async fn acquire_in_span<M: Mode>(
    x: &Exec,
    shared: &Arc<Shared>,
    name: &LockName,
    opts: &LockOptions,
    deadline: Option<Instant>,
    span: &tracing::Span,
    meter: &Meter,
) -> Result<Result<GuardState, M::Busy>, Error> {
    let owner = OwnerId::labelled(opts.owner_label.as_deref());
    let mut acq = Acquisition {
        x,
        shared,
        name,
        opts,
        mode: std::marker::PhantomData::<M>,
        deadline,
        waiter: Waiter::new(shared.coord.slot(name)),
        pending: Pending {
            x,
            shared,
            name,
            owner: &owner,
            opts,
            in_flight: None,
            unknown: false,
            settled: false,
            entry: None,
        },
        backoff: BackoffState::new(opts.backoff),
        started: Instant::now(),
        attempts: 0,
        failure: None,
        last_sent: None,
        waited_for_turn: false,
        answers: 0,
    };
    let (grant, until, handed) = loop {
        let handed = match acq.wait_for_turn().await? {
            TurnTo::Busy(busy) => return Ok(Err(busy)),
            TurnTo::Handed(handed) => Some(handed),
            TurnTo::Ask => None,
        };
        let seen = acq.waiter.slot.get().signal.generation();
        let (outcome, estimate, sent, lease) = match handed {
            // The lock came in one command from a releaser here, sent at
            // `sent` with `estimate`: judged as an acquire's answer.
            Some(handed) => (
                Ok(AcquireOutcome::Acquired(handed.grant)),
                handed.estimate,
                handed.sent,
                Some(handed.lease),
            ),
            None => {
                let (outcome, estimate, sent) = acq.ask().await;
                (outcome, estimate, sent, None)
            }
        };
        match acq.judge(outcome, &estimate, sent) {
            Step::Granted(grant, until) => break (grant, until, lease),
            Step::Busy(busy) => return Ok(Err(busy)),
            Step::Failed(error) => return Err(error),
            Step::RetryAfter(delay) => {
                acq.asked();
                acq.pause(delay, seen).await?;
            }
        }
    };
    acq.pending.settled = true;
    span.record("token", grant.token.get());
    let holding = Holding {
        name: name.clone(),
        owner: owner.clone(),
        token: grant.token,
        lease: handed
            .clone()
            .unwrap_or_else(|| Arc::new(LeaseState::new(until, grant.expires_at))),
        handed_over: handed.is_some(),
        attempts: acq.attempts,
        waited: acq.started.elapsed(),
        span: span.clone(),
    };
    holding.lease.set_meter(meter);
    acq.waiter.slot.set_local_holder(&holding.lease);
    if handed.is_none() {
        let slot = acq.waiter.slot.get();
        slot.note_global_grant(grant.token.get(), opts.handoff.max_handoffs);
        if opts.handoff.is_on() {
            // Waiters pausing after a busy answer wake, see the holder here
            // and register for its handoff (the cohort of this turn).
            slot.signal.bump();
        }
    }
    tracing::info!(
        lock = %name,
        token = grant.token.get(),
        attempts = acq.attempts,
        waited_ms = holding.waited.as_millis() as u64,
        handed_over = holding.handed_over,
        backend = %shared.description,
        "lock acquired"
    );
    let Acquisition {
        waiter, pending, ..
    } = acq;
    drop(pending);
    Ok(Ok(GuardState {
        holding,
        slot: waiter.into_slot(),
        opts: opts.clone(),
        shared: Arc::clone(shared),
        release_sent: AtomicBool::new(false),
        held: Held::start(meter.clone()),
    }))
}
