//! The lock algorithm, written once for both forms (see [`crate::exec`]).
//!
//! * [`acquire`] runs an [`Acquisition`], whose policies each have one
//!   home: [`Acquisition::wait_for_turn`] (who asks the backend when:
//!   local holders, the shared polling turn, the caller's deadline),
//!   [`Acquisition::ask`] (one request, and what is on its way), and
//!   [`Acquisition::judge`] (what an answer or an error means: granted,
//!   granted too late, busy, retry, fail). [`Pending`] cleans up after
//!   requests whose outcome is unknown when the acquisition ends without the
//!   lock.
//! * [`Renewer`] is one renewal at a time; [`renew_loop`] runs it, in a
//!   task of its own on shylock's runtime for every guard of either form
//!   ([`Exec::start_renewal`]).
//! * [`release`] releases only the caller's own holding, and is idempotent:
//!   a release whose earlier answer was lost is not reported as a loss.
//!   [`send_release`] is its retry loop, which the clean-up after an
//!   acquisition with an unknown outcome uses too.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::backend::{
    AcquireOutcome, ClockSource, Grant, InspectRequest, LockRecord, ReleaseOutcome, RenewOutcome,
    RenewRequest,
};
use crate::clock::Estimate;
use crate::coord::{Next, SlotRef, Waiter, takeover_grace};
use crate::exec::{Exec, InFlight, OwnedAcquire, OwnedRelease};
use crate::handle::Shared;
use crate::lease::{Holding, LeaseState};
use crate::options::BackoffState;
use crate::tick::{Tick, deadline_after};
use crate::{
    BackendError, BackendErrorKind, Error, FencingToken, LockName, LockOptions, LossReason,
    OwnerId, Timestamp,
};

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
/// [`Holding`]; the lease's moving parts are in its [`LeaseState`]).
pub(crate) struct GuardState {
    pub(crate) holding: Holding,
    pub(crate) slot: SlotRef,
    pub(crate) opts: LockOptions,
    pub(crate) shared: Arc<Shared>,
    /// Whether a release request may have reached the backend already.
    release_sent: AtomicBool,
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

// ------------------------------------------------------------- acquire --

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
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
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
    /// (its release wakes us), and while another waiter has the polling
    /// turn (taking it over if that waiter stops asking). `Ok(None)`: ask
    /// now; `Ok(Some(busy))`: a try finds the lock held here.
    async fn wait_for_turn(&mut self) -> Result<Option<M::Busy>, Error> {
        let grace = takeover_grace(self.opts.backoff.max);
        loop {
            let slot = self.waiter.slot.get();
            let seen = slot.signal.generation();
            let until = match (slot.local_hold_until(), M::busy()) {
                (Some(_), Some(busy)) => return Ok(Some(busy)),
                (Some(held_until), None) => held_until.to_instant(),
                (None, Some(_)) => return Ok(None),
                (None, None) => match self.waiter.take_turn(grace) {
                    // An acquisition that has not waited yet gets its one
                    // attempt, even with a zero timeout; one that waited
                    // out its time for the turn does not send a request it
                    // could not wait for.
                    Next::Ask if !passed(self.deadline) || self.first_look() => return Ok(None),
                    Next::Ask => return Err(self.timed_out()),
                    Next::WaitUntil(until) => until,
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
                if let Some(busy) = M::busy() {
                    return Step::Busy(busy);
                }
                self.answered();
                let delay = self.backoff.next_delay();
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

/// Acquire `name`: one attempt ([`Try`]: `Err(())` when held), or wait
/// with backoff until held or `deadline` ([`Wait`]: never `Err`). The
/// acquisition runs in a new `lock` span (the lock's name, and its token
/// once granted), which the holding keeps.
pub(crate) async fn acquire<M: Mode>(
    x: &Exec,
    shared: &Arc<Shared>,
    name: &LockName,
    opts: &LockOptions,
    deadline: Option<Instant>,
) -> Result<Result<GuardState, M::Busy>, Error> {
    use tracing::Instrument;
    let span = tracing::info_span!("lock", lock = %name, token = tracing::field::Empty);
    acquire_in_span::<M>(x, shared, name, opts, deadline, &span)
        .instrument(span.clone())
        .await
}

async fn acquire_in_span<M: Mode>(
    x: &Exec,
    shared: &Arc<Shared>,
    name: &LockName,
    opts: &LockOptions,
    deadline: Option<Instant>,
    span: &tracing::Span,
) -> Result<Result<GuardState, M::Busy>, Error> {
    let owner = OwnerId::random();
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
        },
        backoff: BackoffState::new(opts.backoff),
        started: Instant::now(),
        attempts: 0,
        failure: None,
        last_sent: None,
        waited_for_turn: false,
        answers: 0,
    };
    let (grant, until) = loop {
        if let Some(busy) = acq.wait_for_turn().await? {
            return Ok(Err(busy));
        }
        let seen = acq.waiter.slot.get().signal.generation();
        let (outcome, estimate, sent) = acq.ask().await;
        match acq.judge(outcome, &estimate, sent) {
            Step::Granted(grant, until) => break (grant, until),
            Step::Busy(busy) => return Ok(Err(busy)),
            Step::Failed(error) => return Err(error),
            Step::RetryAfter(delay) => acq.pause(delay, seen).await?,
        }
    };
    acq.pending.settled = true;
    span.record("token", grant.token.get());
    let holding = Holding {
        name: name.clone(),
        owner: owner.clone(),
        token: grant.token,
        lease: Arc::new(LeaseState::new(until, grant.expires_at)),
        attempts: acq.attempts,
        waited: acq.started.elapsed(),
        span: span.clone(),
    };
    acq.waiter.slot.set_local_holder(&holding.lease);
    tracing::info!(
        lock = %name,
        token = grant.token.get(),
        attempts = acq.attempts,
        waited_ms = holding.waited.as_millis() as u64,
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
    }))
}

// ------------------------------------------------------------- renewal --

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
                self.last_sent = sent;
                self.failing = false;
                self.backoff = BackoffState::new(self.opts.backoff);
                Some(self.due())
            }
            Ok((RenewOutcome::Lost, _)) => {
                lease.mark_lost(LossReason::Taken);
                tracing::warn!(lock = %holding.name, token = holding.token.get(), reason = ?lease.loss(), "lease lost: the lock is not ours any more");
                None
            }
            Err(error) => {
                lease.note_renewal_error();
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

// ------------------------------------------------------------- release --

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
