//! The driver of the one lock algorithm: [`Exec`] runs [`algo`](crate::algo)
//! over a backend's async form, with every timed wait and every piece of
//! background work on shylock's runtime ([`crate::rt`]). The async API
//! polls the algorithm in the caller's future; the blocking API runs it as
//! a task on the runtime and waits ([`rt::block_on`](crate::rt::block_on)).
//! Either way the renewal of a guard is a task on the runtime
//! ([`Exec::start_renewal`]), and a clean-up after an acquisition given up
//! with an unknown outcome runs there after the request it cleans up.

use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll};
#[cfg(feature = "conformance")]
use std::task::{Wake, Waker};
use std::time::{Duration, Instant};

use tokio::runtime::Handle;
use tracing::Instrument;
use tracing::instrument::WithSubscriber;

use crate::algo::{GuardState, Renewer};
use crate::backend::{
    AcquireOutcome, AcquireRequest, AsyncBackend, BoxFuture, HandOverOutcome, HandOverRequest,
    InspectRequest, LockRecord, ReleaseOutcome, ReleaseRequest, RenewOutcome, RenewRequest,
};
use crate::options::Backoff;
use crate::rt::{self, Task};
use crate::signal::Signal;
use crate::{BackendError, BackendErrorKind, Error, FencingToken, LockName, OwnerId, Timestamp};

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

/// An owned hand-over request, for calls handed to another thread.
#[derive(Debug, Clone)]
pub(crate) struct OwnedHandOver {
    pub(crate) name: LockName,
    pub(crate) from: OwnerId,
    pub(crate) token: FencingToken,
    pub(crate) to: OwnerId,
    pub(crate) lease: Duration,
    pub(crate) now: Timestamp,
    pub(crate) deadline: Option<Instant>,
}

impl From<&HandOverRequest<'_>> for OwnedHandOver {
    fn from(req: &HandOverRequest<'_>) -> Self {
        OwnedHandOver {
            name: req.name.clone(),
            from: req.from.clone(),
            token: req.token,
            to: req.to.clone(),
            lease: req.lease,
            now: req.now,
            deadline: req.deadline,
        }
    }
}

impl OwnedHandOver {
    pub(crate) fn request(&self) -> HandOverRequest<'_> {
        HandOverRequest {
            name: &self.name,
            from: &self.from,
            token: self.token,
            to: &self.to,
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

// ------------------------------------------------------------- driver --

/// The driver: a backend's async form, shylock's runtime, and the
/// handle's count of background work.
#[derive(Clone)]
pub(crate) struct Exec {
    pub(crate) backend: Arc<dyn AsyncBackend>,
    pub(crate) runtime: Handle,
    pub(crate) background: Arc<Background>,
    /// The thread a blocking caller must not wait on, besides the runtime's.
    driver_thread: Option<std::thread::ThreadId>,
    /// The metrics of the backend calls.
    calls: crate::metrics::Calls,
}

/// An acquisition request. It is polled once where it was sent (a backend
/// that answers at once, such as the in-memory one, is done then); if it is
/// still pending, it becomes a task of its own on the runtime, so that it
/// goes on (and can be cleaned up after) when the acquisition that sent it
/// is dropped or times out.
pub(crate) enum InFlight {
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

/// The renewal of one guard: a task on the runtime, stopped when this is
/// dropped.
pub(crate) struct RenewalTask(#[allow(dead_code)] Task<()>);

impl Exec {
    /// The driver of `backend`'s async form.
    ///
    /// # Errors
    /// [`Error::Runtime`] if shylock's runtime cannot run.
    pub(crate) fn new(backend: &crate::Backend) -> Result<Exec, Error> {
        Ok(Exec {
            backend: backend.async_form(),
            runtime: rt::handle()?,
            background: Arc::clone(&backend.shared.background),
            driver_thread: backend.shared.driver_thread,
            calls: crate::metrics::Calls::new(&backend.shared.metrics_backend),
        })
    }

    /// Whether this thread may wait for the lock's work (the blocking API).
    ///
    /// # Errors
    /// [`Error::Runtime`] on shylock's runtime thread, and on the thread of
    /// the current-thread runtime an async backend was handed over on
    /// (whose driver may need that runtime to answer).
    pub(crate) fn may_block(&self) -> Result<(), Error> {
        if rt::on_runtime() {
            return Err(Error::Runtime {
                reason: "a blocking lock cannot wait on shylock's own runtime thread (from a \
                         backend's code): use the async API there"
                    .into(),
            });
        }
        let in_current_thread_runtime = tokio::runtime::Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::CurrentThread);
        if in_current_thread_runtime && self.driver_thread == Some(std::thread::current().id()) {
            return Err(Error::Runtime {
                reason: "a blocking lock cannot wait on the thread of the current-thread tokio \
                         runtime its async backend was made on (the runtime would have to \
                         answer the call it waits for): use AsyncLock there, or call the \
                         blocking lock from `tokio::task::spawn_blocking` or a thread of its own"
                    .into(),
            });
        }
        Ok(())
    }

    /// Send an acquisition request.
    pub(crate) fn start_acquire(&self, req: OwnedAcquire) -> InFlight {
        let backend = Arc::clone(&self.backend);
        let calls = self.calls.clone();
        InFlight::Unsent(Box::pin(async move {
            let started = crate::metrics::started();
            let result = backend.try_acquire(req.request()).await;
            calls.record("try_acquire", started, &result);
            result
        }))
    }

    /// Wait for its answer until `deadline`. After an answer the in-flight
    /// request is spent (`None`); after a time-out it may still be on its
    /// way (left in place).
    pub(crate) async fn finish_acquire(
        &self,
        in_flight: &mut Option<InFlight>,
        deadline: Option<Instant>,
    ) -> Result<AcquireOutcome, BackendError> {
        if let Some(InFlight::Unsent(fut)) = in_flight.as_mut() {
            // One poll here: no task for a backend that answers at once.
            let first = std::future::poll_fn(|cx| Poll::Ready(fut.as_mut().poll(cx))).await;
            if let Poll::Ready(result) = first {
                *in_flight = None;
                return result;
            }
            if let Some(InFlight::Unsent(fut)) = in_flight.take() {
                let fut = fut.in_current_span().with_current_subscriber();
                *in_flight = Some(InFlight::Task(self.runtime.spawn(fut)));
            }
        }
        let Some(InFlight::Task(task)) = in_flight.as_mut() else {
            return Err(BackendError::new(
                BackendErrorKind::Other,
                "internal: no acquisition request on its way",
            ));
        };
        let result = self
            .bounded(deadline, async { joined((&mut *task).await) })
            .await;
        let still_on_its_way = matches!(&result, Err(e) if e.kind() == BackendErrorKind::Timeout)
            && !task.is_finished();
        if !still_on_its_way {
            *in_flight = None;
        }
        result
    }

    /// Cut a backend call off at `deadline`.
    pub(crate) async fn bounded<T>(
        &self,
        deadline: Option<Instant>,
        fut: impl Future<Output = Result<T, BackendError>>,
    ) -> Result<T, BackendError> {
        match deadline {
            None => fut.await,
            Some(deadline) => rt::timeout_at(&self.runtime, deadline, fut)
                .await
                .unwrap_or_else(|_| Err(timed_out())),
        }
    }

    /// A backend call cut off at `deadline`, counted in the metrics as
    /// `primitive`.
    async fn call<T>(
        &self,
        primitive: &'static str,
        deadline: Option<Instant>,
        fut: impl Future<Output = Result<T, BackendError>>,
    ) -> Result<T, BackendError> {
        let started = crate::metrics::started();
        let result = self.bounded(deadline, fut).await;
        self.calls.record(primitive, started, &result);
        result
    }

    pub(crate) async fn renew(&self, req: RenewRequest<'_>) -> Result<RenewOutcome, BackendError> {
        self.call("renew", req.deadline, self.backend.renew(req))
            .await
    }

    pub(crate) async fn release(
        &self,
        req: ReleaseRequest<'_>,
    ) -> Result<ReleaseOutcome, BackendError> {
        self.call("release", req.deadline, self.backend.release(req))
            .await
    }

    pub(crate) async fn hand_over(
        &self,
        req: HandOverRequest<'_>,
    ) -> Result<HandOverOutcome, BackendError> {
        self.call("hand_over", req.deadline, self.backend.hand_over(req))
            .await
    }

    /// Whether the backend hands a lock over in one step.
    pub(crate) fn supports_hand_over(&self) -> bool {
        self.backend.supports_hand_over()
    }

    pub(crate) async fn inspect(
        &self,
        req: InspectRequest<'_>,
    ) -> Result<Option<LockRecord>, BackendError> {
        self.call("inspect", req.deadline, self.backend.inspect(req))
            .await
    }

    pub(crate) async fn server_time(
        &self,
        deadline: Option<Instant>,
    ) -> Result<Timestamp, BackendError> {
        self.call("server_time", deadline, self.backend.server_time(deadline))
            .await
    }

    /// Wait until `signal` moves past `seen` or `until` passes.
    pub(crate) async fn wait(&self, signal: &Signal, seen: u64, until: Option<Instant>) {
        match until {
            None => signal.changed(seen).await,
            Some(until) => {
                let _ = rt::timeout_at(&self.runtime, until, signal.changed(seen)).await;
            }
        }
    }

    /// Wait until `lease` is lost (its reason), or `until` passes (`None`).
    pub(crate) async fn until_lost(
        &self,
        lease: &crate::lease::LeaseState,
        until: Option<Instant>,
    ) -> Option<crate::LossReason> {
        loop {
            let seen = lease.signal.generation();
            if let Some(reason) = lease.loss() {
                return Some(reason);
            }
            if until.is_some_and(|until| Instant::now() >= until) {
                return None;
            }
            let valid_until = lease.valid_until().to_instant();
            let wake = until.map_or(valid_until, |until| until.min(valid_until));
            self.wait(&lease.signal, seen, Some(wake)).await;
        }
    }

    /// Sleep until `until`, woken by nothing.
    pub(crate) async fn sleep_until(&self, until: Instant) {
        rt::sleep_until(&self.runtime, until).await;
    }

    /// Renew `state`'s lease in a task of its own, if its options renew.
    pub(crate) fn start_renewal(&self, state: &GuardState) -> Option<RenewalTask> {
        let renewer = Renewer::new(state)?;
        let renewal = crate::algo::renew_loop(self.clone(), renewer);
        let task = self.runtime.spawn(renewal.with_current_subscriber());
        Some(RenewalTask(Task(task)))
    }

    /// In the background: let `in_flight` (if any) finish, at most for
    /// `wait_at_most`, then release `release.owner`'s holding if `always`,
    /// or if that request was granted or its outcome is unknown, retrying
    /// transient failures as a release does for `release_timeout`. The
    /// clean-up after an acquisition given up with an unknown outcome: it
    /// comes after the request it cleans up, never before. When the backend
    /// bounds how late an unanswered acquire can still commit
    /// ([`AsyncBackend::max_commit_delay`]), the release is sent again once
    /// that bound has passed: an acquire held up on the server (waiting for
    /// a lock) can commit after the first release found nothing.
    pub(crate) fn clean_up(
        &self,
        in_flight: Option<InFlight>,
        wait_at_most: Duration,
        release: OwnedRelease,
        always: bool,
        retry: (Backoff, Duration),
    ) {
        let x = self.clone();
        let name = release.name.clone();
        let max_commit_delay = self.backend.max_commit_delay();
        self.spawn_background("clean-up release", name, async move {
            let mut needed = always;
            // An unsent request sent nothing: only a task can still land.
            if let Some(InFlight::Task(task)) = in_flight {
                match rt::timeout_at(&x.runtime, crate::algo::after(wait_at_most), task).await {
                    Ok(outcome) => needed |= needs_release(&joined(outcome)),
                    Err(_) => needed = true,
                }
            }
            // Every acquire request being cleaned up was sent before now
            // (the one in flight has been waited for): if the backend
            // bounds how late an unanswered acquire can commit, each has
            // committed, or never will, by `now + that bound`.
            let late_commits_end = max_commit_delay.map(|d| Instant::now() + d);
            if needed {
                let (backoff, release_timeout) = retry;
                let sent = crate::algo::send_release(&x, &release, backoff, release_timeout).await;
                release.log(sent.result);
                // The acquire may still be waiting on the server (for a
                // lock, say) and commit after that release found nothing:
                // release again once it cannot commit any more.
                if let Some(end) = late_commits_end {
                    x.sleep_until(end).await;
                    let sent =
                        crate::algo::send_release(&x, &release, backoff, release_timeout).await;
                    release.log(sent.result);
                }
            }
        });
    }

    /// Run `fut` in the background on the runtime, counted (see
    /// [`Backend::settle`](crate::Backend::settle)).
    pub(crate) fn spawn_background(
        &self,
        what: &'static str,
        name: LockName,
        fut: impl Future<Output = ()> + Send + 'static,
    ) {
        self.background
            .running
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let tracked = Tracked {
            what,
            name,
            fut: Box::pin(fut),
            done: false,
            background: Arc::clone(&self.background),
        };
        self.runtime
            .spawn(tracked.in_current_span().with_current_subscriber());
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
    pub(crate) async fn settle(&self, runtime: &Handle, deadline: Option<Instant>) -> bool {
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
                    if rt::timeout_at(runtime, d, idle).await.is_err() {
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
            tracing::warn!(lock = %self.name, what = self.what, "background work abandoned: the process is ending; the lease expiry will free the lock (call Backend::settle before the end of main)");
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

/// Drive a future to completion on this thread (the conformance suite's
/// blocking form).
#[cfg(feature = "conformance")]
struct ThreadWaker(std::thread::Thread);

#[cfg(feature = "conformance")]
impl Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}

#[cfg(feature = "conformance")]
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
