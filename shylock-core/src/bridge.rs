//! The one bridge between the async and the sync world, for the core and
//! for every backend.
//!
//! Everything crosses over on shylock's runtime: one process-wide tokio
//! runtime on a thread of its own (`shylock-runtime`), which also renews
//! every guard and times every wait of the core.
//!
//! * [`block_on`]: run a future there and wait for it on the calling
//!   thread, at most until a deadline (the sync form of an async backend;
//!   the ArangoDB sync backend is this over its async core).
//! * [`run_blocking`]: run a blocking call on one of its blocking threads
//!   and wait at most until a deadline; a call not started by then is never
//!   started (drivers that block, such as `mongodb::sync`, whose calls must
//!   not run on a thread inside a runtime).
//!
//! Both work the same on a plain thread, on a worker of a multi-thread
//! runtime (the wait is announced with `block_in_place`) and on the thread
//! of a current-thread runtime (which then waits with it: prefer the async
//! form there). They never panic on the way: the only thread they refuse
//! is shylock's own runtime thread, before anything is sent.
//!
//! Backends handed to the core in one form get the other from here:
//! [`Backend::from_sync`](crate::Backend::from_sync) runs each call of the
//! sync backend with [`run_blocking`]'s machinery.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use crate::admin::{OwnedAudit, OwnedForce, OwnedList};
use crate::backend::{
    AcquireOutcome, AcquireRequest, AsyncBackend, AuditRequest, BoxFuture, ClockSource,
    ForceReleaseOutcome, ForceReleaseRequest, ForcedRelease, HandOverOutcome, HandOverRequest,
    InspectRequest, ListPage, ListRequest, LockRecord, ReleaseOutcome, ReleaseRequest,
    RenewOutcome, RenewRequest, SyncBackend,
};
use crate::exec::{OwnedAcquire, OwnedHandOver, OwnedInspect, OwnedRelease, OwnedRenew};
use crate::rt::{self, Task};
use crate::{BackendError, BackendErrorKind, Error, Timestamp};

/// The blocking threads shylock's runtime runs at most at once (for
/// [`run_blocking`] and the calls of sync-only backends): started when
/// needed, gone after 10 s idle. Calls beyond it wait in a queue (and end
/// at their deadlines unsent).
pub const MAX_BLOCKING_THREADS: usize = 64;

fn timed_out() -> BackendError {
    BackendError::new(
        BackendErrorKind::Timeout,
        "no answer by the deadline (the request may still be applied)",
    )
}

fn runtime_error(error: Error) -> BackendError {
    BackendError::new(BackendErrorKind::Other, error.to_string())
}

/// Run `fut` on shylock's runtime and wait for its answer on this thread,
/// at most until `deadline`: then `fut` is dropped there and the answer is
/// a [`Timeout`](BackendErrorKind::Timeout) error.
///
/// ```
/// use std::time::{Duration, Instant};
/// use shylock_core::bridge;
/// let answer = bridge::block_on(Some(Instant::now() + Duration::from_secs(5)), async {
///     Ok::<_, shylock_core::BackendError>(6 * 7)
/// })?;
/// assert_eq!(answer, 42);
/// # Ok::<(), shylock_core::BackendError>(())
/// ```
///
/// # Errors
/// `fut`'s error; [`Timeout`](BackendErrorKind::Timeout) at the deadline;
/// [`Other`](BackendErrorKind::Other) on shylock's runtime thread itself
/// (refused before `fut` is started), if shylock's runtime cannot run, or
/// if `fut` panicked.
pub fn block_on<T, F>(deadline: Option<Instant>, fut: F) -> Result<T, BackendError>
where
    T: Send + 'static,
    F: Future<Output = Result<T, BackendError>> + Send + 'static,
{
    let runtime = rt::handle().map_err(runtime_error)?;
    let on = runtime.clone();
    rt::block_on(&runtime, async move {
        match deadline {
            None => fut.await,
            Some(deadline) => rt::timeout_at(&on, deadline, fut)
                .await
                .unwrap_or_else(|_| Err(timed_out())),
        }
    })
    .map_err(runtime_error)?
}

/// Run the blocking `call` on one of shylock's runtime's blocking threads
/// (outside any runtime's context as far as drivers that block are
/// concerned) and wait for its answer, at most until `deadline`. A call not
/// started by the deadline is never started; one under way is left to
/// finish on its thread (a blocking call cannot be abandoned) and its
/// answer is dropped. Called on one of those threads already, it runs
/// `call` right there.
///
/// ```
/// use shylock_core::bridge;
/// let answer = bridge::run_blocking(None, || std::thread::current().name().map(String::from))?;
/// assert_eq!(answer.as_deref(), Some("shylock-blocking"));
/// # Ok::<(), shylock_core::BackendError>(())
/// ```
///
/// # Errors
/// As [`block_on`].
pub fn run_blocking<T, F>(deadline: Option<Instant>, call: F) -> Result<T, BackendError>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    if rt::on_blocking_thread() {
        return Ok(call());
    }
    block_on(deadline, blocking(call))
}

/// `call` on a blocking thread of shylock's runtime, as a future; dropping
/// it before the call started means it never starts.
async fn blocking<T, F>(call: F) -> Result<T, BackendError>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let runtime = rt::handle().map_err(runtime_error)?;
    Task(runtime.spawn_blocking(call)).await.map_err(|e| {
        BackendError::new(
            BackendErrorKind::Other,
            "a blocking backend call ended without an answer (it panicked)",
        )
        .with_source(e)
    })
}

/// The sync form of an async backend: each call through [`block_on`],
/// until the request's deadline. A sync backend written over an async
/// implementation is this (the ArangoDB sync backend is); the core uses it
/// for callers of the raw primitives (the conformance suite).
///
/// ```
/// use std::sync::Arc;
/// use shylock_core::backend::SyncBackend;
/// use shylock_core::bridge::SyncOverAsync;
/// use shylock_core::MemoryBackend;
/// let sync_form = SyncOverAsync::new(Arc::new(MemoryBackend::new()));
/// let now = sync_form.server_time(None)?;
/// assert!(now.as_millis() > 0);
/// # Ok::<(), shylock_core::BackendError>(())
/// ```
pub struct SyncOverAsync {
    backend: Arc<dyn AsyncBackend>,
}

impl std::fmt::Debug for SyncOverAsync {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("SyncOverAsync")
            .field(&self.backend.describe())
            .finish()
    }
}

impl SyncOverAsync {
    /// The sync form of `backend`.
    pub fn new(backend: Arc<dyn AsyncBackend>) -> Self {
        SyncOverAsync { backend }
    }

    fn run<T, F>(
        &self,
        deadline: Option<Instant>,
        call: impl FnOnce(Arc<dyn AsyncBackend>) -> F,
    ) -> Result<T, BackendError>
    where
        T: Send + 'static,
        F: Future<Output = Result<T, BackendError>> + Send + 'static,
    {
        block_on(deadline, call(Arc::clone(&self.backend)))
    }
}

impl SyncBackend for SyncOverAsync {
    fn try_acquire(&self, req: AcquireRequest<'_>) -> Result<AcquireOutcome, BackendError> {
        let owned = OwnedAcquire::from(&req);
        self.run(req.deadline, |b| async move {
            b.try_acquire(owned.request()).await
        })
    }

    fn renew(&self, req: RenewRequest<'_>) -> Result<RenewOutcome, BackendError> {
        let owned = OwnedRenew::from(&req);
        self.run(
            req.deadline,
            |b| async move { b.renew(owned.request()).await },
        )
    }

    fn release(&self, req: ReleaseRequest<'_>) -> Result<ReleaseOutcome, BackendError> {
        let owned = OwnedRelease::from(&req);
        self.run(
            req.deadline,
            |b| async move { b.release(owned.request()).await },
        )
    }

    fn hand_over(&self, req: HandOverRequest<'_>) -> Result<HandOverOutcome, BackendError> {
        let owned = OwnedHandOver::from(&req);
        self.run(req.deadline, |b| async move {
            b.hand_over(owned.request()).await
        })
    }

    fn supports_hand_over(&self) -> bool {
        self.backend.supports_hand_over()
    }

    fn inspect(&self, req: InspectRequest<'_>) -> Result<Option<LockRecord>, BackendError> {
        let owned = OwnedInspect::from(&req);
        self.run(
            req.deadline,
            |b| async move { b.inspect(owned.request()).await },
        )
    }

    fn list(&self, req: ListRequest<'_>) -> Result<ListPage, BackendError> {
        let owned = OwnedList::from(&req);
        self.run(
            req.deadline,
            |b| async move { b.list(owned.request()).await },
        )
    }

    fn force_release(
        &self,
        req: ForceReleaseRequest<'_>,
    ) -> Result<ForceReleaseOutcome, BackendError> {
        let owned = OwnedForce::from(&req);
        self.run(req.deadline, |b| async move {
            b.force_release(owned.request()).await
        })
    }

    fn audit(&self, req: AuditRequest<'_>) -> Result<Option<ForcedRelease>, BackendError> {
        let owned = OwnedAudit::from(&req);
        self.run(
            req.deadline,
            |b| async move { b.audit(owned.request()).await },
        )
    }

    fn server_time(&self, deadline: Option<Instant>) -> Result<Timestamp, BackendError> {
        self.run(deadline, |b| async move { b.server_time(deadline).await })
    }

    fn clock(&self) -> ClockSource {
        self.backend.clock()
    }

    fn max_commit_delay(&self) -> Option<std::time::Duration> {
        self.backend.max_commit_delay()
    }

    fn describe(&self) -> String {
        self.backend.describe()
    }
}

/// The async form of a sync backend: each call on a blocking thread of
/// shylock's runtime; a call whose future is dropped before it started
/// never starts.
pub(crate) struct AsyncOverSync {
    backend: Arc<dyn SyncBackend>,
}

impl AsyncOverSync {
    pub(crate) fn new(backend: Arc<dyn SyncBackend>) -> Self {
        AsyncOverSync { backend }
    }

    fn run<T: Send + 'static>(
        &self,
        call: impl FnOnce(&dyn SyncBackend) -> Result<T, BackendError> + Send + 'static,
    ) -> BoxFuture<'static, Result<T, BackendError>> {
        let backend = Arc::clone(&self.backend);
        Box::pin(async move { blocking(move || call(&*backend)).await? })
    }
}

impl AsyncBackend for AsyncOverSync {
    fn try_acquire<'a>(
        &'a self,
        req: AcquireRequest<'a>,
    ) -> BoxFuture<'a, Result<AcquireOutcome, BackendError>> {
        let owned = OwnedAcquire::from(&req);
        self.run(move |b| b.try_acquire(owned.request()))
    }

    fn renew<'a>(
        &'a self,
        req: RenewRequest<'a>,
    ) -> BoxFuture<'a, Result<RenewOutcome, BackendError>> {
        let owned = OwnedRenew::from(&req);
        self.run(move |b| b.renew(owned.request()))
    }

    fn release<'a>(
        &'a self,
        req: ReleaseRequest<'a>,
    ) -> BoxFuture<'a, Result<ReleaseOutcome, BackendError>> {
        let owned = OwnedRelease::from(&req);
        self.run(move |b| b.release(owned.request()))
    }

    fn hand_over<'a>(
        &'a self,
        req: HandOverRequest<'a>,
    ) -> BoxFuture<'a, Result<HandOverOutcome, BackendError>> {
        let owned = OwnedHandOver::from(&req);
        self.run(move |b| b.hand_over(owned.request()))
    }

    fn supports_hand_over(&self) -> bool {
        self.backend.supports_hand_over()
    }

    fn inspect<'a>(
        &'a self,
        req: InspectRequest<'a>,
    ) -> BoxFuture<'a, Result<Option<LockRecord>, BackendError>> {
        let owned = OwnedInspect::from(&req);
        self.run(move |b| b.inspect(owned.request()))
    }

    fn list<'a>(&'a self, req: ListRequest<'a>) -> BoxFuture<'a, Result<ListPage, BackendError>> {
        let owned = OwnedList::from(&req);
        self.run(move |b| b.list(owned.request()))
    }

    fn force_release<'a>(
        &'a self,
        req: ForceReleaseRequest<'a>,
    ) -> BoxFuture<'a, Result<ForceReleaseOutcome, BackendError>> {
        let owned = OwnedForce::from(&req);
        self.run(move |b| b.force_release(owned.request()))
    }

    fn audit<'a>(
        &'a self,
        req: AuditRequest<'a>,
    ) -> BoxFuture<'a, Result<Option<ForcedRelease>, BackendError>> {
        let owned = OwnedAudit::from(&req);
        self.run(move |b| b.audit(owned.request()))
    }

    fn server_time(
        &self,
        deadline: Option<Instant>,
    ) -> BoxFuture<'_, Result<Timestamp, BackendError>> {
        self.run(move |b| b.server_time(deadline))
    }

    fn clock(&self) -> ClockSource {
        self.backend.clock()
    }

    fn max_commit_delay(&self) -> Option<std::time::Duration> {
        self.backend.max_commit_delay()
    }

    fn describe(&self) -> String {
        self.backend.describe()
    }
}
