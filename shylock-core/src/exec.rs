//! The two drivers of the one lock algorithm.
//!
//! [`algo`](crate::algo) is written once, as async code generic over
//! [`Exec`]. [`AsyncExec`] runs it on tokio over an [`AsyncBackend`];
//! [`SyncExec`] runs it on the calling thread over a [`SyncBackend`]: each of
//! its futures does its blocking work when first polled and is then ready,
//! and [`block_on`] drives the whole algorithm to completion on the thread.
//! Background work (clean-up releases, renewals of blocking guards) goes to
//! tokio tasks in the async form and to the handle's [`Jobs`] threads in the
//! sync form.

use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use crate::backend::{
    AcquireOutcome, AcquireRequest, AsyncBackend, BoxFuture, InspectRequest, LockRecord,
    ReleaseOutcome, ReleaseRequest, RenewOutcome, RenewRequest, SyncBackend,
};
use crate::jobs::Jobs;
use crate::signal::Signal;
use crate::{BackendError, BackendErrorKind, Error, FencingToken, LockName, OwnerId, Timestamp};

/// What the algorithm needs from a driver.
pub(crate) trait Exec: Send + Sync + 'static {
    /// An acquisition request on its way to the backend.
    type InFlight: Send + 'static;
    /// Send an acquisition request.
    fn start_acquire(&self, req: OwnedAcquire) -> Self::InFlight;
    /// Wait for its answer until `deadline`. After an answer the in-flight
    /// request is spent (`None`); after a time-out it may still be on its
    /// way (left in place).
    fn finish_acquire<'a>(
        &'a self,
        in_flight: &'a mut Option<Self::InFlight>,
        deadline: Option<Instant>,
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
    /// In the background: let `in_flight` (if any) finish, at most for
    /// `wait_at_most`, then release `release.owner`'s holding if `always`,
    /// or if that request was granted or its outcome is unknown. The
    /// clean-up after an acquisition given up with an unknown outcome: it
    /// comes after the request it cleans up, never before.
    fn clean_up(
        &self,
        in_flight: Option<Self::InFlight>,
        wait_at_most: Duration,
        release: OwnedRelease,
        always: bool,
    );
}

/// An owned acquisition request (it may outlive the acquisition that sent it).
#[derive(Debug, Clone)]
pub(crate) struct OwnedAcquire {
    pub(crate) name: LockName,
    pub(crate) owner: OwnerId,
    pub(crate) lease: Duration,
    pub(crate) now: Timestamp,
    pub(crate) deadline: Option<Instant>,
}

impl From<&AcquireRequest<'_>> for OwnedAcquire {
    fn from(req: &AcquireRequest<'_>) -> Self {
        OwnedAcquire {
            name: req.name.clone(),
            owner: req.owner.clone(),
            lease: req.lease,
            now: req.now,
            deadline: req.deadline,
        }
    }
}

impl OwnedAcquire {
    pub(crate) fn request(&self) -> AcquireRequest<'_> {
        AcquireRequest {
            name: &self.name,
            owner: &self.owner,
            lease: self.lease,
            now: self.now,
            deadline: self.deadline,
        }
    }
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

impl From<&ReleaseRequest<'_>> for OwnedRelease {
    fn from(req: &ReleaseRequest<'_>) -> Self {
        OwnedRelease {
            name: req.name.clone(),
            owner: req.owner.clone(),
            token: req.token,
            now: req.now,
            deadline: req.deadline,
        }
    }
}

/// An owned renewal request, for calls handed to another thread.
#[derive(Debug, Clone)]
pub(crate) struct OwnedRenew {
    name: LockName,
    owner: OwnerId,
    token: FencingToken,
    lease: Duration,
    now: Timestamp,
    deadline: Option<Instant>,
}

impl From<&RenewRequest<'_>> for OwnedRenew {
    fn from(req: &RenewRequest<'_>) -> Self {
        OwnedRenew {
            name: req.name.clone(),
            owner: req.owner.clone(),
            token: req.token,
            lease: req.lease,
            now: req.now,
            deadline: req.deadline,
        }
    }
}

impl OwnedRenew {
    pub(crate) fn request(&self) -> RenewRequest<'_> {
        RenewRequest {
            name: &self.name,
            owner: &self.owner,
            token: self.token,
            lease: self.lease,
            now: self.now,
            deadline: self.deadline,
        }
    }
}

/// An owned inspection request, for calls handed to another thread.
#[derive(Debug, Clone)]
pub(crate) struct OwnedInspect {
    name: LockName,
    now: Timestamp,
    deadline: Option<Instant>,
}

impl From<&InspectRequest<'_>> for OwnedInspect {
    fn from(req: &InspectRequest<'_>) -> Self {
        OwnedInspect {
            name: req.name.clone(),
            now: req.now,
            deadline: req.deadline,
        }
    }
}

impl OwnedInspect {
    pub(crate) fn request(&self) -> InspectRequest<'_> {
        InspectRequest {
            name: &self.name,
            now: self.now,
            deadline: self.deadline,
        }
    }
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

/// Whether the outcome of a request that was let finish in the background
/// calls for a release.
fn needs_release(outcome: &Result<AcquireOutcome, BackendError>) -> bool {
    !matches!(outcome, Ok(AcquireOutcome::Busy { .. }))
        && !matches!(outcome, Err(e) if e.kind() == BackendErrorKind::RateLimited)
}

fn timed_out() -> BackendError {
    BackendError::new(
        BackendErrorKind::Timeout,
        "the backend did not answer within the time allowed",
    )
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
            .unwrap_or_else(|_| Err(timed_out())),
    }
}

// ------------------------------------------------------------ runtime --

thread_local! {
    /// Set while this thread probes the runtime for timers, so that the
    /// expected panic is not printed.
    static PROBING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

fn quiet_probe_panics() {
    static INSTALL: std::sync::Once = std::sync::Once::new();
    INSTALL.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !PROBING.with(std::cell::Cell::get) {
                previous(info);
            }
        }));
    });
}

/// Run `f`, catching a panic of it quietly (tokio answers some questions
/// only by panicking): `None` if it panicked. Use it only for calls whose
/// panic is an answer, not a bug.
pub(crate) fn quietly<R>(f: impl FnOnce() -> R) -> Option<R> {
    quiet_probe_panics();
    PROBING.with(|p| p.set(true));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).ok();
    PROBING.with(|p| p.set(false));
    result
}

/// The tokio runtime of this context, if it can run locks: it must exist
/// and have its timers enabled (renewal, waiting and time limits need them).
///
/// # Errors
/// [`Error::Runtime`] saying what is missing.
pub(crate) fn runtime() -> Result<tokio::runtime::Handle, Error> {
    let handle = tokio::runtime::Handle::try_current().map_err(|_| Error::Runtime {
        reason: "an async lock needs a tokio runtime (call it from within one)".into(),
    })?;
    // tokio has no non-panicking way to ask whether timers are enabled: make
    // a timer and catch the panic (not printed: see `quiet_probe_panics`).
    let timers = quietly(|| drop(tokio::time::sleep(Duration::ZERO))).is_some();
    if timers {
        Ok(handle)
    } else {
        Err(Error::Runtime {
            reason: "the tokio runtime has no timers: build it with `enable_time()` (or \
                     `enable_all()`); renewal and time limits need them"
                .into(),
        })
    }
}

/// The background work of one backend handle under way, so that it can be
/// waited for before a runtime shuts down ([`Backend::settle`](crate::Backend::settle)).
#[derive(Debug, Default)]
pub(crate) struct Background {
    running: std::sync::atomic::AtomicUsize,
    idle: tokio::sync::Notify,
}

impl Background {
    /// Wait until no background work runs, at most until `deadline`.
    /// True if none runs.
    pub(crate) async fn settle(&self, deadline: Option<Instant>) -> bool {
        use std::sync::atomic::Ordering;
        loop {
            let idle = self.idle.notified();
            let mut idle = std::pin::pin!(idle);
            idle.as_mut().enable();
            if self.running.load(Ordering::SeqCst) == 0 {
                return true;
            }
            match deadline {
                None => idle.await,
                Some(d) => {
                    if tokio::time::timeout_at(d.into(), idle).await.is_err() {
                        return self.running.load(Ordering::SeqCst) == 0;
                    }
                }
            }
        }
    }
}

/// A future run in the background: counted while it runs, and it says so
/// if it is dropped before it finishes (its runtime shut down).
struct Tracked<F> {
    what: &'static str,
    name: LockName,
    fut: F,
    done: bool,
    background: Arc<Background>,
}

impl<F: Future + Unpin> Future for Tracked<F> {
    type Output = F::Output;
    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let out = std::pin::Pin::new(&mut self.fut).poll(cx);
        if out.is_ready() {
            self.done = true;
        }
        out
    }
}

impl<F> Drop for Tracked<F> {
    fn drop(&mut self) {
        if !self.done {
            tracing::warn!(lock = %self.name, what = self.what, "background work abandoned: its tokio runtime shut down first; the lease expiry will free the lock (call Backend::settle before shutting a runtime down)");
        }
        let before = self
            .background
            .running
            .fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
        if before == 1 {
            self.background.idle.notify_waiters();
        }
    }
}

impl AsyncExec {
    /// Run `fut` in the background on the runtime, counted and warning if
    /// it cannot finish.
    pub(crate) fn spawn_background(
        &self,
        what: &'static str,
        name: LockName,
        fut: impl Future<Output = ()> + Send + 'static,
    ) {
        self.background
            .running
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.runtime.spawn(Tracked {
            what,
            name,
            fut: Box::pin(fut),
            done: false,
            background: Arc::clone(&self.background),
        });
    }
}

// ------------------------------------------------------------- drivers --

/// The tokio driver.
#[derive(Clone)]
pub(crate) struct AsyncExec {
    pub(crate) backend: Arc<dyn AsyncBackend>,
    pub(crate) runtime: tokio::runtime::Handle,
    pub(crate) background: Arc<Background>,
}

/// An async acquisition request. It is polled once where it was sent (a
/// backend that answers at once, such as the in-memory one, is done then);
/// if it is still pending, it becomes a task of its own, so that it goes on
/// (and can be cleaned up after) when the acquisition that sent it is
/// dropped or times out.
pub(crate) enum AsyncInFlight {
    /// Not polled yet: nothing has been sent.
    Unsent(BoxFuture<'static, Result<AcquireOutcome, BackendError>>),
    /// On its way, in a task of its own.
    Task(tokio::task::JoinHandle<Result<AcquireOutcome, BackendError>>),
}

fn joined(
    result: Result<Result<AcquireOutcome, BackendError>, tokio::task::JoinError>,
) -> Result<AcquireOutcome, BackendError> {
    result.unwrap_or_else(|e| {
        let kind = if e.is_cancelled() {
            BackendErrorKind::Unavailable
        } else {
            BackendErrorKind::Other
        };
        Err(BackendError::new(kind, "the acquisition request's task failed").with_source(e))
    })
}

impl Exec for AsyncExec {
    type InFlight = AsyncInFlight;

    fn start_acquire(&self, req: OwnedAcquire) -> Self::InFlight {
        let backend = Arc::clone(&self.backend);
        AsyncInFlight::Unsent(Box::pin(
            async move { backend.try_acquire(req.request()).await },
        ))
    }

    async fn finish_acquire<'a>(
        &'a self,
        in_flight: &'a mut Option<Self::InFlight>,
        deadline: Option<Instant>,
    ) -> Result<AcquireOutcome, BackendError> {
        if let Some(AsyncInFlight::Unsent(fut)) = in_flight.as_mut() {
            // One poll here: no task for a backend that answers at once.
            let first = std::future::poll_fn(|cx| Poll::Ready(fut.as_mut().poll(cx))).await;
            if let Poll::Ready(result) = first {
                *in_flight = None;
                return result;
            }
            if let Some(AsyncInFlight::Unsent(fut)) = in_flight.take() {
                *in_flight = Some(AsyncInFlight::Task(self.runtime.spawn(fut)));
            }
        }
        let Some(AsyncInFlight::Task(task)) = in_flight.as_mut() else {
            return Err(BackendError::new(
                BackendErrorKind::Other,
                "internal: no acquisition request on its way",
            ));
        };
        let result = bounded(deadline, async { joined((&mut *task).await) }).await;
        let still_on_its_way = matches!(&result, Err(e) if e.kind() == BackendErrorKind::Timeout)
            && !task.is_finished();
        if !still_on_its_way {
            *in_flight = None;
        }
        result
    }

    fn renew<'a>(
        &'a self,
        req: RenewRequest<'a>,
    ) -> impl Future<Output = Result<RenewOutcome, BackendError>> + Send + 'a {
        bounded(req.deadline, self.backend.renew(req))
    }

    fn release<'a>(
        &'a self,
        req: ReleaseRequest<'a>,
    ) -> impl Future<Output = Result<ReleaseOutcome, BackendError>> + Send + 'a {
        bounded(req.deadline, self.backend.release(req))
    }

    fn inspect<'a>(
        &'a self,
        req: InspectRequest<'a>,
    ) -> impl Future<Output = Result<Option<LockRecord>, BackendError>> + Send + 'a {
        bounded(req.deadline, self.backend.inspect(req))
    }

    fn server_time(
        &self,
        deadline: Option<Instant>,
    ) -> impl Future<Output = Result<Timestamp, BackendError>> + Send + '_ {
        bounded(deadline, self.backend.server_time(deadline))
    }

    fn wait<'a>(
        &'a self,
        signal: &'a Signal,
        seen: u64,
        until: Option<Instant>,
    ) -> impl Future<Output = ()> + Send + 'a {
        signal.wait_async(seen, until)
    }

    fn clean_up(
        &self,
        in_flight: Option<Self::InFlight>,
        wait_at_most: Duration,
        release: OwnedRelease,
        always: bool,
    ) {
        let backend = Arc::clone(&self.backend);
        let name = release.name.clone();
        self.spawn_background("clean-up release", name, async move {
            let mut needed = always;
            // An unsent request sent nothing: only a task can still land.
            if let Some(AsyncInFlight::Task(task)) = in_flight {
                match tokio::time::timeout(wait_at_most, task).await {
                    Ok(outcome) => needed |= needs_release(&joined(outcome)),
                    Err(_) => needed = true,
                }
            }
            if needed {
                let deadline = crate::tick::deadline_after(wait_at_most);
                let release = OwnedRelease {
                    deadline,
                    ..release
                };
                let result = bounded(release.deadline, backend.release(release.request())).await;
                release.log(result);
            }
        });
    }
}

/// The blocking driver.
#[derive(Clone)]
pub(crate) struct SyncExec {
    pub(crate) backend: Arc<dyn SyncBackend>,
    pub(crate) jobs: Arc<Jobs>,
}

impl Exec for SyncExec {
    /// A blocking request is answered before `start_acquire` returns.
    type InFlight = Result<AcquireOutcome, BackendError>;

    fn start_acquire(&self, req: OwnedAcquire) -> Self::InFlight {
        self.backend.try_acquire(req.request())
    }

    async fn finish_acquire<'a>(
        &'a self,
        in_flight: &'a mut Option<Self::InFlight>,
        _deadline: Option<Instant>,
    ) -> Result<AcquireOutcome, BackendError> {
        in_flight.take().unwrap_or_else(|| {
            Err(BackendError::new(
                BackendErrorKind::Other,
                "internal: no acquisition request on its way",
            ))
        })
    }

    async fn renew<'a>(&'a self, req: RenewRequest<'a>) -> Result<RenewOutcome, BackendError> {
        self.backend.renew(req)
    }

    async fn release<'a>(
        &'a self,
        req: ReleaseRequest<'a>,
    ) -> Result<ReleaseOutcome, BackendError> {
        self.backend.release(req)
    }

    async fn inspect<'a>(
        &'a self,
        req: InspectRequest<'a>,
    ) -> Result<Option<LockRecord>, BackendError> {
        self.backend.inspect(req)
    }

    async fn server_time(&self, deadline: Option<Instant>) -> Result<Timestamp, BackendError> {
        self.backend.server_time(deadline)
    }

    async fn wait<'a>(&'a self, signal: &'a Signal, seen: u64, until: Option<Instant>) {
        signal.wait_blocking(seen, until)
    }

    fn clean_up(
        &self,
        in_flight: Option<Self::InFlight>,
        wait_at_most: Duration,
        release: OwnedRelease,
        always: bool,
    ) {
        let needed = always || in_flight.is_some_and(|o| needs_release(&o));
        if !needed {
            return;
        }
        let backend = Arc::clone(&self.backend);
        let mut release = Some(release);
        let job = Box::new(move || {
            if let Some(mut release) = release.take() {
                release.deadline = crate::tick::deadline_after(wait_at_most);
                let result = backend.release(release.request());
                release.log(result);
            }
            None
        });
        if let Err(error) = self.jobs.add(crate::tick::Tick::now(), job) {
            tracing::warn!(%error, "could not start a background thread for a clean-up release; the lease expiry will free the lock");
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
