//! The core's regression tests' one fault wrapper around the in-memory
//! backend: both forms, each fault a knob of [`Faults`], counters of what
//! reached the backend.

#![allow(dead_code)] // each test binary uses some of it

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use shylock_core::backend::{
    AcquireOutcome, AcquireRequest, AsyncBackend, BoxFuture, ClockSource, InspectRequest,
    LockRecord, ReleaseOutcome, ReleaseRequest, RenewOutcome, RenewRequest, SyncBackend,
};
use shylock_core::{Backend, BackendError, BackendErrorKind, MemoryBackend, Timestamp};

/// What the wrapper does to the memory backend's answers.
#[derive(Default)]
pub struct Faults {
    /// Before an acquire reaches the backend (a request on its way).
    pub acquire_delay: Duration,
    /// After the first acquire was applied, before its answer.
    pub first_answer_delay: Duration,
    /// The first acquire is applied, then answered with a time-out; later
    /// ones are refused as rate limited.
    pub lose_first_answer_then_rate_limit: bool,
    /// The first acquire is applied, then answered with `Unavailable`.
    pub lose_first_acquire_answer: bool,
    /// Before a release reaches the backend.
    pub release_delay: Duration,
    /// The first release is applied, then answered with an error.
    pub lose_first_release_answer: bool,
    /// The first release fails with `Unavailable` before it is applied.
    pub fail_first_release: bool,
    /// Every renewal takes this long more; names starting with `slow` take
    /// `slow_renew_delay` more still.
    pub renew_delay: Duration,
    pub slow_renew_delay: Duration,
    /// Say the clock is estimated (so the core reads the server's clock).
    pub estimated_clock: bool,
    /// The first server-time read starts this late (a stall before it).
    pub first_clock_read_delay: Duration,
    /// The first server-time answer comes this late after the read (a
    /// stall after it: the sample lags).
    pub first_clock_answer_delay: Duration,
}

/// The memory backend with [`Faults`]. Cheap to clone; clones share the
/// counters.
#[derive(Clone)]
pub struct Wrapped {
    pub inner: MemoryBackend,
    pub faults: Arc<Faults>,
    pub acquires: Arc<AtomicUsize>,
    pub releases: Arc<AtomicUsize>,
    pub clock_reads: Arc<AtomicUsize>,
    /// Acquires on their way now (async form), and the most at once.
    pub in_flight: Arc<AtomicUsize>,
    pub most_in_flight: Arc<AtomicUsize>,
    /// The `now` of every acquire that reached the backend.
    pub acquire_nows: Arc<std::sync::Mutex<Vec<Timestamp>>>,
}

pub fn wrap(inner: &MemoryBackend, faults: Faults) -> Wrapped {
    Wrapped {
        inner: inner.clone(),
        faults: Arc::new(faults),
        acquires: Arc::default(),
        releases: Arc::default(),
        clock_reads: Arc::default(),
        in_flight: Arc::default(),
        most_in_flight: Arc::default(),
        acquire_nows: Arc::default(),
    }
}

/// A handle on the wrapper's async form (the blocking form bridged).
pub fn async_handle(w: &Wrapped) -> Backend {
    Backend::from_async(w.clone())
}

/// A handle on the wrapper's sync form (the async form bridged).
pub fn sync_handle(w: &Wrapped) -> Backend {
    Backend::from_sync(w.clone())
}

/// A handle on both forms.
pub fn both_handle(w: &Wrapped) -> Backend {
    Backend::from_both(w.clone())
}

pub fn lost_answer(kind: BackendErrorKind) -> BackendError {
    BackendError::new(kind, "test: the answer was lost")
}

impl Wrapped {
    fn clock_source(&self) -> ClockSource {
        if self.faults.estimated_clock {
            ClockSource::Estimated
        } else {
            ClockSource::Server
        }
    }

    fn renew_delay(&self, req: &RenewRequest<'_>) -> Duration {
        let slow = req.name.as_str().starts_with("slow");
        self.faults.renew_delay
            + if slow {
                self.faults.slow_renew_delay
            } else {
                Duration::ZERO
            }
    }

    /// The acquire after its delay: counted, applied, answered (or not).
    /// Returns the answer and how long to hold it back.
    fn acquire_now(
        &self,
        req: AcquireRequest<'_>,
    ) -> (Result<AcquireOutcome, BackendError>, Duration) {
        let n = self.acquires.fetch_add(1, Ordering::SeqCst);
        if let Ok(mut nows) = self.acquire_nows.lock() {
            nows.push(req.now);
        }
        if self.faults.lose_first_answer_then_rate_limit && n > 0 {
            let refused = BackendError::new(BackendErrorKind::RateLimited, "test: slow down")
                .with_retry_after(Duration::from_millis(20));
            return (Err(refused), Duration::ZERO);
        }
        let outcome = SyncBackend::try_acquire(&self.inner, req);
        if n > 0 {
            return (outcome, Duration::ZERO);
        }
        let delay = self.faults.first_answer_delay;
        if self.faults.lose_first_answer_then_rate_limit {
            (Err(lost_answer(BackendErrorKind::Timeout)), delay)
        } else if self.faults.lose_first_acquire_answer {
            let reset = BackendError::new(BackendErrorKind::Unavailable, "test: connection reset");
            (Err(reset), delay)
        } else {
            (outcome, delay)
        }
    }

    fn release_now(&self, req: ReleaseRequest<'_>) -> Result<ReleaseOutcome, BackendError> {
        let n = self.releases.fetch_add(1, Ordering::SeqCst);
        if n == 0 && self.faults.fail_first_release {
            return Err(lost_answer(BackendErrorKind::Unavailable));
        }
        let outcome = SyncBackend::release(&self.inner, req);
        if n == 0 && self.faults.lose_first_release_answer {
            return Err(lost_answer(BackendErrorKind::Unavailable));
        }
        outcome
    }

    /// The delays of this server-time read: before it, after it.
    fn clock_delays(&self) -> (Duration, Duration) {
        if self.clock_reads.fetch_add(1, Ordering::SeqCst) == 0 {
            (
                self.faults.first_clock_read_delay,
                self.faults.first_clock_answer_delay,
            )
        } else {
            (Duration::ZERO, Duration::ZERO)
        }
    }
}

impl SyncBackend for Wrapped {
    fn try_acquire(&self, req: AcquireRequest<'_>) -> Result<AcquireOutcome, BackendError> {
        std::thread::sleep(self.faults.acquire_delay);
        let (outcome, delay) = self.acquire_now(req);
        std::thread::sleep(delay);
        outcome
    }
    fn renew(&self, req: RenewRequest<'_>) -> Result<RenewOutcome, BackendError> {
        std::thread::sleep(self.renew_delay(&req));
        SyncBackend::renew(&self.inner, req)
    }
    fn release(&self, req: ReleaseRequest<'_>) -> Result<ReleaseOutcome, BackendError> {
        std::thread::sleep(self.faults.release_delay);
        self.release_now(req)
    }
    fn inspect(&self, req: InspectRequest<'_>) -> Result<Option<LockRecord>, BackendError> {
        SyncBackend::inspect(&self.inner, req)
    }
    fn server_time(&self, deadline: Option<Instant>) -> Result<Timestamp, BackendError> {
        let (before, after) = self.clock_delays();
        std::thread::sleep(before);
        let read = SyncBackend::server_time(&self.inner, deadline);
        std::thread::sleep(after);
        read
    }
    fn clock(&self) -> ClockSource {
        self.clock_source()
    }
    fn describe(&self) -> String {
        "wrapped memory".into()
    }
}

/// The async form sleeps on tokio; an acquire travels as a task of its own:
/// like a request on the network, it reaches the "server" even if its
/// caller gives up.
impl AsyncBackend for Wrapped {
    fn try_acquire<'a>(
        &'a self,
        req: AcquireRequest<'a>,
    ) -> BoxFuture<'a, Result<AcquireOutcome, BackendError>> {
        let (name, owner) = (req.name.clone(), req.owner.clone());
        let (lease, now, deadline) = (req.lease, req.now, req.deadline);
        let this = self.clone();
        let request = tokio::spawn(async move {
            let on_its_way = this.in_flight.fetch_add(1, Ordering::SeqCst) + 1;

            this.most_in_flight.fetch_max(on_its_way, Ordering::SeqCst);
            tokio::time::sleep(this.faults.acquire_delay).await;
            this.in_flight.fetch_sub(1, Ordering::SeqCst);
            let req = AcquireRequest {
                name: &name,
                owner: &owner,
                lease,
                now,
                deadline,
            };
            let (outcome, delay) = this.acquire_now(req);
            tokio::time::sleep(delay).await;
            outcome
        });
        Box::pin(async move {
            // Cancelled when the test's runtime ends: an answer lost.
            request
                .await
                .unwrap_or_else(|_| Err(lost_answer(BackendErrorKind::Unavailable)))
        })
    }
    fn renew<'a>(
        &'a self,
        req: RenewRequest<'a>,
    ) -> BoxFuture<'a, Result<RenewOutcome, BackendError>> {
        Box::pin(async move {
            tokio::time::sleep(self.renew_delay(&req)).await;
            SyncBackend::renew(&self.inner, req)
        })
    }
    fn release<'a>(
        &'a self,
        req: ReleaseRequest<'a>,
    ) -> BoxFuture<'a, Result<ReleaseOutcome, BackendError>> {
        Box::pin(async move {
            tokio::time::sleep(self.faults.release_delay).await;
            self.release_now(req)
        })
    }
    fn inspect<'a>(
        &'a self,
        req: InspectRequest<'a>,
    ) -> BoxFuture<'a, Result<Option<LockRecord>, BackendError>> {
        AsyncBackend::inspect(&self.inner, req)
    }
    fn server_time(
        &self,
        deadline: Option<Instant>,
    ) -> BoxFuture<'_, Result<Timestamp, BackendError>> {
        Box::pin(async move {
            let (before, after) = self.clock_delays();
            tokio::time::sleep(before).await;
            let read = SyncBackend::server_time(&self.inner, deadline);
            tokio::time::sleep(after).await;
            read
        })
    }
    fn clock(&self) -> ClockSource {
        self.clock_source()
    }
    fn describe(&self) -> String {
        "wrapped memory".into()
    }
}
