//! A backend wrapper that adds a fixed delay to every primitive call, as a
//! slow database would answer: the `memory-slow` target (the in-memory
//! backend, 50 ms more per call), for D with calls that take time.

use std::time::{Duration, Instant};

use shylock::backend::{
    AcquireOutcome, AcquireRequest, AsyncBackend, BoxFuture, ClockSource, InspectRequest,
    ReleaseOutcome, ReleaseRequest, RenewOutcome, RenewRequest, SyncBackend,
};
use shylock::{BackendError, LockRecord, Timestamp};

/// What `memory-slow` adds to every backend call.
pub const SLOW_DELAY: Duration = Duration::from_millis(50);

/// Forwards every primitive to `inner` after `delay`: in the async form a
/// `tokio::time::sleep` (the calling task waits, no thread does), in the
/// sync form a `std::thread::sleep`.
pub struct Slow<B> {
    pub inner: B,
    pub delay: Duration,
}

impl<B: AsyncBackend> AsyncBackend for Slow<B> {
    fn try_acquire<'a>(
        &'a self,
        req: AcquireRequest<'a>,
    ) -> BoxFuture<'a, Result<AcquireOutcome, BackendError>> {
        Box::pin(async move {
            tokio::time::sleep(self.delay).await;
            AsyncBackend::try_acquire(&self.inner, req).await
        })
    }

    fn renew<'a>(
        &'a self,
        req: RenewRequest<'a>,
    ) -> BoxFuture<'a, Result<RenewOutcome, BackendError>> {
        Box::pin(async move {
            tokio::time::sleep(self.delay).await;
            AsyncBackend::renew(&self.inner, req).await
        })
    }

    fn release<'a>(
        &'a self,
        req: ReleaseRequest<'a>,
    ) -> BoxFuture<'a, Result<ReleaseOutcome, BackendError>> {
        Box::pin(async move {
            tokio::time::sleep(self.delay).await;
            AsyncBackend::release(&self.inner, req).await
        })
    }

    fn inspect<'a>(
        &'a self,
        req: InspectRequest<'a>,
    ) -> BoxFuture<'a, Result<Option<LockRecord>, BackendError>> {
        Box::pin(async move {
            tokio::time::sleep(self.delay).await;
            AsyncBackend::inspect(&self.inner, req).await
        })
    }

    fn server_time(
        &self,
        deadline: Option<Instant>,
    ) -> BoxFuture<'_, Result<Timestamp, BackendError>> {
        Box::pin(async move {
            tokio::time::sleep(self.delay).await;
            AsyncBackend::server_time(&self.inner, deadline).await
        })
    }

    fn clock(&self) -> ClockSource {
        AsyncBackend::clock(&self.inner)
    }

    fn describe(&self) -> String {
        format!(
            "{} (+{} ms per call)",
            AsyncBackend::describe(&self.inner),
            self.delay.as_millis()
        )
    }
}

impl<B: SyncBackend> SyncBackend for Slow<B> {
    fn try_acquire(&self, req: AcquireRequest<'_>) -> Result<AcquireOutcome, BackendError> {
        std::thread::sleep(self.delay);
        SyncBackend::try_acquire(&self.inner, req)
    }

    fn renew(&self, req: RenewRequest<'_>) -> Result<RenewOutcome, BackendError> {
        std::thread::sleep(self.delay);
        SyncBackend::renew(&self.inner, req)
    }

    fn release(&self, req: ReleaseRequest<'_>) -> Result<ReleaseOutcome, BackendError> {
        std::thread::sleep(self.delay);
        SyncBackend::release(&self.inner, req)
    }

    fn inspect(&self, req: InspectRequest<'_>) -> Result<Option<LockRecord>, BackendError> {
        std::thread::sleep(self.delay);
        SyncBackend::inspect(&self.inner, req)
    }

    fn server_time(&self, deadline: Option<Instant>) -> Result<Timestamp, BackendError> {
        std::thread::sleep(self.delay);
        SyncBackend::server_time(&self.inner, deadline)
    }

    fn clock(&self) -> ClockSource {
        SyncBackend::clock(&self.inner)
    }

    fn describe(&self) -> String {
        format!(
            "{} (+{} ms per call)",
            SyncBackend::describe(&self.inner),
            self.delay.as_millis()
        )
    }
}
