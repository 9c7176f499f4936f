//! What a guard knows about its lease, and the public view of it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::signal::Signal;
use crate::sync::{self, Mutex, MutexGuard};
use crate::tick::Tick;
use crate::{Error, FencingToken, LockName, LossReason, OwnerId, Timestamp};

#[derive(Debug)]
struct Inner {
    /// The guard counts its lease as held until then (suspend-aware
    /// monotonic clock).
    valid_until: Tick,
    /// The lease's end on the backend's clock.
    expires_at: Timestamp,
    lost: Option<LossReason>,
    renewal_failing: bool,
    stopped: bool,
    renewals: u64,
}

/// The shared state of one lease: read by the guard, written by the
/// renewal driver.
#[derive(Debug)]
pub(crate) struct LeaseState {
    inner: Mutex<Inner>,
    pub(crate) signal: Signal,
    /// The signal of the waiters of this name in this process (their
    /// slot's), bumped when the lease is lost.
    waiters: Mutex<Option<sync::Arc<Signal>>>,
    /// The metrics a loss is counted in (set once, after the grant).
    #[cfg(feature = "metrics")]
    meter: std::sync::OnceLock<crate::metrics::Meter>,
}

impl LeaseState {
    pub(crate) fn new(valid_until: Tick, expires_at: Timestamp) -> Self {
        LeaseState {
            inner: Mutex::new(Inner {
                valid_until,
                expires_at,
                lost: None,
                renewal_failing: false,
                stopped: false,
                renewals: 0,
            }),
            signal: Signal::default(),
            waiters: Mutex::new(None),
            #[cfg(feature = "metrics")]
            meter: std::sync::OnceLock::new(),
        }
    }

    /// Count this lease's loss (when it is recorded) in `meter`'s metrics.
    #[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
    pub(crate) fn set_meter(&self, meter: &crate::metrics::Meter) {
        #[cfg(feature = "metrics")]
        let _ = self.meter.set(meter.clone());
    }

    /// The loss was recorded just now (once per lease).
    #[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
    fn count_loss(&self, reason: Option<LossReason>) {
        #[cfg(feature = "metrics")]
        if let (Some(meter), Some(reason)) = (self.meter.get(), reason) {
            meter.lost(reason);
        }
    }

    /// Bump `waiters` (the signal of this name's waiters in this process)
    /// when the lease is lost.
    pub(crate) fn notify_on_loss(&self, waiters: sync::Arc<Signal>) {
        *sync::lock(&self.waiters) = Some(waiters);
    }

    fn bump(&self) {
        self.signal.bump();
        let waiters = sync::lock(&self.waiters).clone();
        if let Some(waiters) = waiters {
            waiters.bump();
        }
    }

    fn inner(&self) -> MutexGuard<'_, Inner> {
        sync::lock(&self.inner)
    }

    fn loss_of(inner: &Inner) -> Option<LossReason> {
        if inner.stopped {
            // Frozen at the stop: the lease's end after a release is no loss.
            return inner.lost;
        }
        inner.lost.or_else(|| {
            inner
                .valid_until
                .passed()
                .then_some(if inner.renewal_failing {
                    LossReason::RenewalFailed
                } else {
                    LossReason::Expired
                })
        })
    }

    /// Why the lease is lost, if it is.
    pub(crate) fn loss(&self) -> Option<LossReason> {
        Self::loss_of(&self.inner())
    }

    pub(crate) fn valid_until(&self) -> Tick {
        self.inner().valid_until
    }

    pub(crate) fn expires_at(&self) -> Timestamp {
        self.inner().expires_at
    }

    pub(crate) fn renewals(&self) -> u64 {
        self.inner().renewals
    }

    pub(crate) fn is_stopped(&self) -> bool {
        self.inner().stopped
    }

    /// Record a successful renewal. A lease whose validity ran out before the
    /// renewal came back stays lost: loss is final.
    pub(crate) fn extend(&self, valid_until: Tick, expires_at: Timestamp) -> bool {
        let mut inner = self.inner();
        if inner.stopped {
            return false;
        }
        if let Some(reason) = Self::loss_of(&inner) {
            // Wake the waiters only if this call records the loss: a loss
            // recorded before has woken them already.
            let newly_lost = inner.lost.replace(reason).is_none();
            drop(inner);
            if newly_lost {
                self.count_loss(Some(reason));
                self.bump();
            }
            return false;
        }
        inner.valid_until = valid_until;
        inner.expires_at = expires_at;
        inner.renewal_failing = false;
        inner.renewals += 1;
        true
    }

    pub(crate) fn note_renewal_error(&self) {
        self.inner().renewal_failing = true;
    }

    /// Mark the lease lost (the first reason stays). True if this call lost it.
    pub(crate) fn mark_lost(&self, reason: LossReason) -> bool {
        let mut inner = self.inner();
        if inner.stopped || inner.lost.is_some() {
            return false;
        }
        let lost = Self::loss_of(&inner).unwrap_or(reason);
        inner.lost = Some(lost);
        drop(inner);
        self.count_loss(Some(lost));
        self.bump();
        true
    }

    /// Stop renewing (the guard is being released); returns the loss, if the
    /// lease was lost before the first stop. A second stop (a release
    /// finished in the background after its future was dropped) answers as
    /// the first did: the lease's end since then is not a loss.
    pub(crate) fn stop(&self) -> Option<LossReason> {
        let mut inner = self.inner();
        if inner.stopped {
            return inner.lost;
        }
        let loss = Self::loss_of(&inner);
        let newly_lost = inner.lost.is_none() && loss.is_some();
        inner.lost = loss;
        inner.stopped = true;
        drop(inner);
        if newly_lost {
            self.count_loss(loss);
        }
        self.signal.bump();
        loss
    }
}

/// What a guard holds: the lock's name, this acquisition's owner id, its
/// fencing token and the state of its lease. Both guard types dereference to
/// it.
#[derive(Debug, Clone)]
pub struct Holding {
    pub(crate) name: LockName,
    pub(crate) owner: OwnerId,
    pub(crate) token: FencingToken,
    pub(crate) lease: Arc<LeaseState>,
    pub(crate) handed_over: bool,
    pub(crate) attempts: u32,
    pub(crate) waited: Duration,
    pub(crate) span: tracing::Span,
}

impl Holding {
    /// The `tracing` span of this holding (named `lock`, with the fields
    /// `lock` (the name) and `token`): the acquisition ran in it, and events
    /// logged inside it are attributed to the lock. [`Lock::run`](crate::GenericLock::run)
    /// runs its closure in it; with a guard, enter it yourself.
    ///
    /// ```
    /// use shylock_core::{Backend, Lock, MemoryBackend};
    /// let backend = Backend::from(MemoryBackend::new());
    /// let guard = Lock::with_backend("span-doc", &backend).acquire()?;
    /// let _entered = guard.span().enter();
    /// tracing::info!("this event carries lock=span-doc and the token");
    /// # Ok::<(), shylock_core::Error>(())
    /// ```
    pub fn span(&self) -> &tracing::Span {
        &self.span
    }

    /// The lock's name.
    pub fn name(&self) -> &LockName {
        &self.name
    }

    /// The owner id of this acquisition.
    pub fn owner(&self) -> &OwnerId {
        &self.owner
    }

    /// The fencing token: strictly greater than every token issued before for
    /// this name. Hand it to the resource you protect, which refuses writes
    /// carrying a token lower than one it has seen.
    ///
    /// ```
    /// use shylock_core::{Backend, Lock, MemoryBackend};
    /// let backend = Backend::from(MemoryBackend::new());
    /// let lock = Lock::with_backend("token-doc", &backend);
    /// let first = lock.acquire()?.token();
    /// let second = lock.acquire()?.token();
    /// assert!(second > first);
    /// # Ok::<(), shylock_core::Error>(())
    /// ```
    pub fn token(&self) -> FencingToken {
        self.token
    }

    /// When the lease ends on the backend's clock (moves on with renewals).
    pub fn expires_at(&self) -> Timestamp {
        self.lease.expires_at()
    }

    /// Until when this process counts the lease as held, the safety margin
    /// already taken off, as an [`Instant`]. The lease itself is measured on
    /// a clock that also counts time the machine spent suspended (on Linux
    /// `CLOCK_BOOTTIME`), which `Instant` does not: this is the moment as
    /// far as can be told now.
    pub fn valid_until(&self) -> Instant {
        self.lease.valid_until().to_instant()
    }

    /// How much longer the lease is held, unless renewed (zero once lost).
    pub fn remaining(&self) -> Duration {
        if self.is_held() {
            self.lease.valid_until().remaining()
        } else {
            Duration::ZERO
        }
    }

    /// Whether the lease is still held (not lost, not released). Never
    /// blocks.
    pub fn is_held(&self) -> bool {
        !self.lease.is_stopped() && self.lease.loss().is_none()
    }

    /// Why the lease was lost, if it was; [`LossReason::Released`] once the
    /// guard was released or dropped (unless it was lost before). Never
    /// blocks.
    pub fn lost_reason(&self) -> Option<LossReason> {
        self.lease
            .loss()
            .or_else(|| self.lease.is_stopped().then_some(LossReason::Released))
    }

    /// `Ok` while the lease is held, [`Error::LeaseLost`] once lost or once
    /// the guard was released (a clone of the holding kept by a worker task
    /// then stops too): call it before each step that needs the lock.
    ///
    /// ```
    /// use std::time::Duration;
    /// use shylock_core::{Backend, Error, Lock, MemoryBackend, Renewal};
    /// let backend = Backend::from(MemoryBackend::new());
    /// let guard = Lock::with_backend("ensure-doc", &backend)
    ///     .lease(Duration::from_millis(100))
    ///     .renewal(Renewal::Off)
    ///     .acquire()?;
    /// guard.ensure_held()?; // step 1 may run
    /// std::thread::sleep(Duration::from_millis(150));
    /// assert!(matches!(guard.ensure_held(), Err(Error::LeaseLost { .. }))); // stop here
    /// # Ok::<(), shylock_core::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::LeaseLost`] if the lease was lost.
    pub fn ensure_held(&self) -> Result<(), Error> {
        match self.lost_reason() {
            None => Ok(()),
            Some(reason) => Err(self.lost_error(reason)),
        }
    }

    /// How many renewals have succeeded.
    pub fn renewals(&self) -> u64 {
        self.lease.renewals()
    }

    /// Whether this holding was handed over by a holder in this process
    /// (one `hand_over` command, see [`Handoff`](crate::Handoff)) rather
    /// than granted by an acquisition request.
    pub fn handed_over(&self) -> bool {
        self.handed_over
    }

    /// How many attempts the acquisition took.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// How long the acquisition waited.
    pub fn waited(&self) -> Duration {
        self.waited
    }

    pub(crate) fn lost_error(&self, reason: LossReason) -> Error {
        Error::LeaseLost {
            name: self.name.to_string(),
            token: self.token,
            reason,
        }
    }
}
