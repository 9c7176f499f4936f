//! The network between the core and the backend, played by a wrapper of
//! the backend's primitives for the lock-level checks.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::BackendError;
use crate::backend::{
    AcquireOutcome, AcquireRequest, AsyncBackend, BoxFuture, ClockSource, InspectRequest,
    LockRecord, ReleaseOutcome, ReleaseRequest, RenewOutcome, RenewRequest, SyncBackend,
};
use crate::types::Timestamp;

use super::Primitives;

/// A backend wrapper that plays the network between the core and the
/// backend: it counts acquisition attempts, can delay acquisitions on their
/// way (they still arrive if their caller gives up) and their answers
/// (after the backend has acted on them), lose answers, rate-limit, and
/// fail renewals.
pub(super) struct Wrapper {
    pub(super) inner: Primitives,
    pub(super) acquires: Arc<AtomicU64>,
    /// Before an acquisition reaches the backend.
    pub(super) request_delay: Duration,
    /// After the backend acted on an acquisition, before its answer.
    pub(super) answer_delay: Duration,
    /// The first acquisition is applied and its answer lost (a time-out);
    /// the later ones are refused as rate limited.
    pub(super) lose_first_answer_then_rate_limit: bool,
    /// Before a release reaches the backend.
    pub(super) release_delay: Duration,
    /// The first release is applied and its answer lost.
    pub(super) lose_first_release_answer: bool,
    pub(super) releases: AtomicU64,
    /// The first acquisition is applied and its answer lost (a connection
    /// reset: a transient error); the later ones fail the same way without
    /// reaching the backend.
    pub(super) lose_first_acquire_answer: bool,
    /// The first release fails with a transient error without reaching the
    /// backend; the later ones pass.
    pub(super) fail_first_release: bool,
    pub(super) failed_releases: AtomicU64,
    pub(super) fail_renewals: Arc<AtomicBool>,
}

impl Wrapper {
    pub(super) fn new(inner: Primitives) -> Self {
        Wrapper {
            inner,
            acquires: Arc::default(),
            request_delay: Duration::ZERO,
            answer_delay: Duration::ZERO,
            lose_first_answer_then_rate_limit: false,
            release_delay: Duration::ZERO,
            lose_first_release_answer: false,
            releases: AtomicU64::new(0),
            lose_first_acquire_answer: false,
            fail_first_release: false,
            failed_releases: AtomicU64::new(0),
            fail_renewals: Arc::default(),
        }
    }

    fn connection_reset() -> BackendError {
        BackendError::new(
            crate::BackendErrorKind::Unavailable,
            "conformance: connection reset",
        )
    }

    /// Before the n-th acquisition reaches the backend: refuse it (rate
    /// limited, or as a connection reset) if the wrapper says so.
    fn refuse_acquire(&self, n: u64) -> Option<BackendError> {
        if self.lose_first_acquire_answer && n > 0 {
            return Some(Self::connection_reset());
        }
        (self.lose_first_answer_then_rate_limit && n > 0).then(|| {
            BackendError::new(
                crate::BackendErrorKind::RateLimited,
                "conformance: slow down",
            )
            .with_retry_after(Duration::from_millis(20))
        })
    }

    /// Before a release reaches the backend: fail it (transient) if the
    /// wrapper says so.
    fn refuse_release(&self) -> Option<BackendError> {
        (self.fail_first_release && self.failed_releases.fetch_add(1, Ordering::SeqCst) == 0)
            .then(Self::connection_reset)
    }

    /// After the n-th acquisition was applied: lose its answer if the
    /// wrapper says so.
    fn lose_acquire_answer<T>(
        &self,
        n: u64,
        outcome: Result<T, BackendError>,
    ) -> Result<T, BackendError> {
        if self.lose_first_answer_then_rate_limit && n == 0 {
            return Err(BackendError::new(
                crate::BackendErrorKind::Timeout,
                "conformance: the answer was lost",
            ));
        }
        if self.lose_first_acquire_answer && n == 0 {
            return Err(Self::connection_reset());
        }
        outcome
    }

    /// After a release was applied: lose its answer if the wrapper says so.
    fn lose_release_answer(
        &self,
        outcome: Result<ReleaseOutcome, BackendError>,
    ) -> Result<ReleaseOutcome, BackendError> {
        if self.lose_first_release_answer && self.releases.fetch_add(1, Ordering::SeqCst) == 0 {
            return Err(BackendError::new(
                crate::BackendErrorKind::Unavailable,
                "conformance: the answer was lost",
            ));
        }
        outcome
    }

    fn renew_failure(&self) -> Option<BackendError> {
        self.fail_renewals.load(Ordering::SeqCst).then(|| {
            BackendError::new(
                crate::BackendErrorKind::Unavailable,
                "conformance: renewals switched off by the test",
            )
        })
    }

    fn sync_inner(&self) -> &dyn SyncBackend {
        match &self.inner {
            Primitives::Sync(b) => b.as_ref(),
            Primitives::Async(_) => unreachable!("a sync wrapper wraps a sync backend"),
        }
    }

    fn async_inner(&self) -> &dyn AsyncBackend {
        match &self.inner {
            Primitives::Async(b) => b.as_ref(),
            Primitives::Sync(_) => unreachable!("an async wrapper wraps an async backend"),
        }
    }

    fn clock_of(&self) -> ClockSource {
        match &self.inner {
            Primitives::Async(b) => b.clock(),
            Primitives::Sync(b) => b.clock(),
        }
    }
}

impl AsyncBackend for Wrapper {
    fn try_acquire<'a>(
        &'a self,
        req: AcquireRequest<'a>,
    ) -> BoxFuture<'a, Result<AcquireOutcome, BackendError>> {
        let n = self.acquires.fetch_add(1, Ordering::SeqCst);
        if let Some(refused) = self.refuse_acquire(n) {
            return Box::pin(std::future::ready(Err(refused)));
        }
        // The request travels as a task of its own: like a request on the
        // network, it reaches the backend even if its caller gives up.
        let inner = match &self.inner {
            Primitives::Async(b) => Arc::clone(b),
            Primitives::Sync(_) => unreachable!("an async wrapper wraps an async backend"),
        };
        let (name, owner) = (req.name.clone(), req.owner.clone());
        let (lease, now, deadline) = (req.lease, req.now, req.deadline);
        let (request_delay, answer_delay) = (self.request_delay, self.answer_delay);
        let request = tokio::spawn(async move {
            tokio::time::sleep(request_delay).await;
            let req = AcquireRequest {
                name: &name,
                owner: &owner,
                lease,
                now,
                deadline,
            };
            let outcome = inner.try_acquire(req).await;
            tokio::time::sleep(answer_delay).await;
            outcome
        });
        Box::pin(async move {
            let outcome = request.await.unwrap_or_else(|e| {
                Err(BackendError::new(
                    crate::BackendErrorKind::Other,
                    "conformance: request task failed",
                )
                .with_source(e))
            });
            self.lose_acquire_answer(n, outcome)
        })
    }

    fn renew<'a>(
        &'a self,
        req: RenewRequest<'a>,
    ) -> BoxFuture<'a, Result<RenewOutcome, BackendError>> {
        match self.renew_failure() {
            Some(error) => Box::pin(std::future::ready(Err(error))),
            None => self.async_inner().renew(req),
        }
    }

    fn release<'a>(
        &'a self,
        req: ReleaseRequest<'a>,
    ) -> BoxFuture<'a, Result<ReleaseOutcome, BackendError>> {
        Box::pin(async move {
            tokio::time::sleep(self.release_delay).await;
            if let Some(error) = self.refuse_release() {
                return Err(error);
            }
            let outcome = self.async_inner().release(req).await;
            self.lose_release_answer(outcome)
        })
    }

    fn inspect<'a>(
        &'a self,
        req: InspectRequest<'a>,
    ) -> BoxFuture<'a, Result<Option<LockRecord>, BackendError>> {
        self.async_inner().inspect(req)
    }

    fn server_time(
        &self,
        deadline: Option<Instant>,
    ) -> BoxFuture<'_, Result<Timestamp, BackendError>> {
        self.async_inner().server_time(deadline)
    }

    fn clock(&self) -> ClockSource {
        self.clock_of()
    }

    fn describe(&self) -> String {
        format!("wrapped {}", self.async_inner().describe())
    }
}

impl SyncBackend for Wrapper {
    fn try_acquire(&self, req: AcquireRequest<'_>) -> Result<AcquireOutcome, BackendError> {
        let n = self.acquires.fetch_add(1, Ordering::SeqCst);
        if let Some(refused) = self.refuse_acquire(n) {
            return Err(refused);
        }
        std::thread::sleep(self.request_delay);
        let outcome = self.sync_inner().try_acquire(req);
        std::thread::sleep(self.answer_delay);
        self.lose_acquire_answer(n, outcome)
    }

    fn renew(&self, req: RenewRequest<'_>) -> Result<RenewOutcome, BackendError> {
        match self.renew_failure() {
            Some(error) => Err(error),
            None => self.sync_inner().renew(req),
        }
    }

    fn release(&self, req: ReleaseRequest<'_>) -> Result<ReleaseOutcome, BackendError> {
        std::thread::sleep(self.release_delay);
        if let Some(error) = self.refuse_release() {
            return Err(error);
        }
        let outcome = self.sync_inner().release(req);
        self.lose_release_answer(outcome)
    }

    fn inspect(&self, req: InspectRequest<'_>) -> Result<Option<LockRecord>, BackendError> {
        self.sync_inner().inspect(req)
    }

    fn server_time(&self, deadline: Option<Instant>) -> Result<Timestamp, BackendError> {
        self.sync_inner().server_time(deadline)
    }

    fn clock(&self) -> ClockSource {
        self.clock_of()
    }

    fn describe(&self) -> String {
        format!("wrapped {}", self.sync_inner().describe())
    }
}
