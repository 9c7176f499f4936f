//! The two drivers of the one lock algorithm.
//!
//! [`algo`](crate::algo) is written once, as async code generic over
//! [`Exec`]. [`AsyncExec`] runs it on tokio over an [`AsyncBackend`];
//! [`SyncExec`] runs it on the calling thread over a [`SyncBackend`]: each of
//! its futures does its blocking work when first polled and is then ready,
//! and [`block_on`] drives the whole algorithm to completion on the thread.

use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::Instant;

use crate::backend::{
    AcquireOutcome, AcquireRequest, AsyncBackend, InspectRequest, LockRecord, ReleaseOutcome,
    ReleaseRequest, RenewOutcome, RenewRequest, SyncBackend,
};
use crate::signal::Signal;
use crate::{BackendError, BackendErrorKind, FencingToken, LockName, OwnerId, Timestamp};

/// What the algorithm needs from a driver.
pub(crate) trait Exec: Send + Sync + 'static {
    fn try_acquire<'a>(
        &'a self,
        req: AcquireRequest<'a>,
    ) -> impl Future<Output = Result<AcquireOutcome, BackendError>> + Send + 'a;
    fn renew<'a>(
        &'a self,
        req: RenewRequest<'a>,
    ) -> impl Future<Output = Result<RenewOutcome, BackendError>> + Send + 'a;
    fn release<'a>(
        &'a self,
        req: ReleaseRequest<'a>,
    ) -> impl Future<Output = Result<ReleaseOutcome, BackendError>> + Send + 'a;
    fn inspect<'a>(
        &'a self,
        req: InspectRequest<'a>,
    ) -> impl Future<Output = Result<Option<LockRecord>, BackendError>> + Send + 'a;
    fn server_time(
        &self,
        deadline: Option<Instant>,
    ) -> impl Future<Output = Result<Timestamp, BackendError>> + Send + '_;
    /// Wait until `signal` moves past `seen` or `until` passes.
    fn wait<'a>(
        &'a self,
        signal: &'a Signal,
        seen: u64,
        until: Option<Instant>,
    ) -> impl Future<Output = ()> + Send + 'a;
    /// Release `owner`'s holding in the background, if it exists (clean-up
    /// after an acquisition whose outcome is unknown was given up).
    fn release_in_background(&self, release: OwnedRelease);
}

/// An owned release request, for background clean-up.
#[derive(Debug, Clone)]
pub(crate) struct OwnedRelease {
    pub(crate) name: LockName,
    pub(crate) owner: OwnerId,
    pub(crate) token: FencingToken,
    pub(crate) now: Timestamp,
    pub(crate) deadline: Option<Instant>,
}

impl OwnedRelease {
    pub(crate) fn request(&self) -> ReleaseRequest<'_> {
        ReleaseRequest {
            name: &self.name,
            owner: &self.owner,
            token: self.token,
            now: self.now,
            deadline: self.deadline,
        }
    }

    fn log(&self, result: Result<ReleaseOutcome, BackendError>) {
        match result {
            Ok(outcome) => tracing::debug!(lock = %self.name, ?outcome, "background release done"),
            Err(error) => {
                tracing::warn!(lock = %self.name, %error, "background release failed; the lease expiry will free the lock")
            }
        }
    }
}

/// Cut an async backend call off at `deadline`.
async fn bounded<T>(
    deadline: Option<Instant>,
    fut: impl Future<Output = Result<T, BackendError>>,
) -> Result<T, BackendError> {
    match deadline {
        None => fut.await,
        Some(deadline) => tokio::time::timeout_at(deadline.into(), fut)
            .await
            .unwrap_or_else(|_| {
                Err(BackendError::new(
                    BackendErrorKind::Timeout,
                    "the backend did not answer within the time allowed",
                ))
            }),
    }
}

/// The tokio driver.
pub(crate) struct AsyncExec(pub(crate) Arc<dyn AsyncBackend>);

impl Exec for AsyncExec {
    fn try_acquire<'a>(
        &'a self,
        req: AcquireRequest<'a>,
    ) -> impl Future<Output = Result<AcquireOutcome, BackendError>> + Send + 'a {
        bounded(req.deadline, self.0.try_acquire(req))
    }

    fn renew<'a>(
        &'a self,
        req: RenewRequest<'a>,
    ) -> impl Future<Output = Result<RenewOutcome, BackendError>> + Send + 'a {
        bounded(req.deadline, self.0.renew(req))
    }

    fn release<'a>(
        &'a self,
        req: ReleaseRequest<'a>,
    ) -> impl Future<Output = Result<ReleaseOutcome, BackendError>> + Send + 'a {
        bounded(req.deadline, self.0.release(req))
    }

    fn inspect<'a>(
        &'a self,
        req: InspectRequest<'a>,
    ) -> impl Future<Output = Result<Option<LockRecord>, BackendError>> + Send + 'a {
        bounded(req.deadline, self.0.inspect(req))
    }

    fn server_time(
        &self,
        deadline: Option<Instant>,
    ) -> impl Future<Output = Result<Timestamp, BackendError>> + Send + '_ {
        bounded(deadline, self.0.server_time(deadline))
    }

    fn wait<'a>(
        &'a self,
        signal: &'a Signal,
        seen: u64,
        until: Option<Instant>,
    ) -> impl Future<Output = ()> + Send + 'a {
        signal.wait_async(seen, until)
    }

    fn release_in_background(&self, release: OwnedRelease) {
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                let backend = Arc::clone(&self.0);
                runtime.spawn(async move {
                    let result =
                        bounded(release.deadline, backend.release(release.request())).await;
                    release.log(result);
                });
            }
            Err(_) => tracing::warn!(
                lock = %release.name,
                "no tokio runtime to release in the background; the lease expiry will free the lock"
            ),
        }
    }
}

/// The blocking driver.
pub(crate) struct SyncExec(pub(crate) Arc<dyn SyncBackend>);

impl Exec for SyncExec {
    async fn try_acquire<'a>(
        &'a self,
        req: AcquireRequest<'a>,
    ) -> Result<AcquireOutcome, BackendError> {
        self.0.try_acquire(req)
    }

    async fn renew<'a>(&'a self, req: RenewRequest<'a>) -> Result<RenewOutcome, BackendError> {
        self.0.renew(req)
    }

    async fn release<'a>(
        &'a self,
        req: ReleaseRequest<'a>,
    ) -> Result<ReleaseOutcome, BackendError> {
        self.0.release(req)
    }

    async fn inspect<'a>(
        &'a self,
        req: InspectRequest<'a>,
    ) -> Result<Option<LockRecord>, BackendError> {
        self.0.inspect(req)
    }

    async fn server_time(&self, deadline: Option<Instant>) -> Result<Timestamp, BackendError> {
        self.0.server_time(deadline)
    }

    async fn wait<'a>(&'a self, signal: &'a Signal, seen: u64, until: Option<Instant>) {
        signal.wait_blocking(seen, until)
    }

    fn release_in_background(&self, release: OwnedRelease) {
        let backend = Arc::clone(&self.0);
        let spawned = std::thread::Builder::new()
            .name("shylock-cleanup".into())
            .spawn(move || {
                let result = backend.release(release.request());
                release.log(result);
            });
        if let Err(error) = spawned {
            tracing::warn!(%error, "could not start a clean-up thread; the lease expiry will free the lock");
        }
    }
}

struct ThreadWaker(std::thread::Thread);

impl Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}

/// Drive a future to completion on this thread.
pub(crate) fn block_on<F: Future>(fut: F) -> F::Output {
    let mut fut = std::pin::pin!(fut);
    let waker = Waker::from(Arc::new(ThreadWaker(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    loop {
        match fut.as_mut().poll(&mut cx) {
            Poll::Ready(value) => return value,
            Poll::Pending => std::thread::park(),
        }
    }
}
