//! One backend, both forms: the sync form of an async backend and the async
//! form of a sync backend, so that a [`Backend`](crate::Backend) made from
//! either serves [`Lock`](crate::Lock) and [`AsyncLock`](crate::AsyncLock).
//!
//! * [`SyncOverAsync`] runs each call of the async backend as a task on the
//!   tokio runtime the backend was handed over on (where its driver lives),
//!   or, if it was handed over outside any runtime, on a runtime thread of
//!   the core's own; the caller's thread waits for the answer until the
//!   request's deadline. It never starts a runtime on the caller's thread,
//!   so it does not panic inside one. On a worker of a multi-thread runtime
//!   the wait is announced with `block_in_place`; on the thread of a
//!   current-thread runtime (which would have to answer the call it waits
//!   for) the call is refused with a clear error instead of hanging.
//! * [`AsyncOverSync`] runs each call of the sync backend on tokio's
//!   blocking threads.

use std::future::Future;
use std::sync::{Arc, OnceLock, mpsc};
use std::time::Instant;

use crate::backend::{
    AcquireOutcome, AcquireRequest, AsyncBackend, BoxFuture, ClockSource, InspectRequest,
    LockRecord, ReleaseOutcome, ReleaseRequest, RenewOutcome, RenewRequest, SyncBackend,
};
use crate::exec::{OwnedAcquire, OwnedInspect, OwnedRelease, OwnedRenew};
use crate::{BackendError, BackendErrorKind, Timestamp};

/// The sync form of an async backend.
pub(crate) struct SyncOverAsync {
    backend: Arc<dyn AsyncBackend>,
    /// The runtime the backend was handed over on, if any.
    runtime: Option<tokio::runtime::Handle>,
}

/// The core's own runtime thread, for async backends handed over outside a
/// runtime; started on first use, kept for the life of the process.
fn own_runtime() -> Result<tokio::runtime::Handle, BackendError> {
    static OWN: OnceLock<Result<tokio::runtime::Handle, String>> = OnceLock::new();
    let handle = OWN.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("cannot build a runtime: {e}"))?;
        let handle = runtime.handle().clone();
        std::thread::Builder::new()
            .name("shylock-bridge".into())
            .spawn(move || runtime.block_on(std::future::pending::<()>()))
            .map_err(|e| format!("cannot start a thread: {e}"))?;
        Ok(handle)
    });
    handle.clone().map_err(|reason| {
        BackendError::new(
            BackendErrorKind::Other,
            format!("the blocking form of an async backend cannot run: {reason}"),
        )
    })
}

fn timed_out() -> BackendError {
    BackendError::new(
        BackendErrorKind::Timeout,
        "no answer by the deadline (the request may still be applied)",
    )
}

/// Not transient: a runtime that has shut down never comes back, so
/// waiting (an acquire without a time limit) would never end.
fn gone() -> BackendError {
    BackendError::new(
        BackendErrorKind::Other,
        "the tokio runtime the async backend was made on has shut down: make the backend \
         (or the `Backend` handle) outside any runtime, or on one that outlives its locks",
    )
}

fn on_current_thread_runtime() -> BackendError {
    BackendError::new(
        BackendErrorKind::Other,
        "a blocking lock cannot wait on the thread of a current-thread tokio runtime \
         (the runtime would have to answer the call it waits for): use AsyncLock there, \
         or call the blocking lock from `tokio::task::spawn_blocking` or a thread of its own",
    )
}

/// Wait for `answer` until `deadline`.
fn wait<T>(answer: &mpsc::Receiver<T>, deadline: Option<Instant>) -> Result<T, BackendError> {
    match deadline {
        None => answer.recv().map_err(|_| gone()),
        Some(deadline) => {
            let left = deadline.saturating_duration_since(Instant::now());
            answer.recv_timeout(left).map_err(|e| match e {
                mpsc::RecvTimeoutError::Timeout => timed_out(),
                mpsc::RecvTimeoutError::Disconnected => gone(),
            })
        }
    }
}

impl SyncOverAsync {
    pub(crate) fn new(backend: Arc<dyn AsyncBackend>) -> Self {
        SyncOverAsync {
            backend,
            runtime: tokio::runtime::Handle::try_current().ok(),
        }
    }

    /// Run `call` (given the backend) as a task and wait for its answer.
    fn run<T, F>(
        &self,
        deadline: Option<Instant>,
        call: impl FnOnce(Arc<dyn AsyncBackend>) -> F,
    ) -> Result<T, BackendError>
    where
        T: Send + 'static,
        F: Future<Output = Result<T, BackendError>> + Send + 'static,
    {
        let runtime = match &self.runtime {
            Some(handle) => handle.clone(),
            None => own_runtime()?,
        };
        let (tx, rx) = mpsc::sync_channel(1);
        let work = call(Arc::clone(&self.backend));
        // A late answer finds nobody waiting; the request still ran (as
        // one on the network would) and the core treats it as unknown.
        runtime.spawn(async move {
            let _ = tx.send(work.await);
        });
        if tokio::runtime::Handle::try_current().is_err() {
            return wait(&rx, deadline)?;
        }
        // Inside a runtime: tell a multi-thread runtime that this worker
        // blocks; tokio refuses (panics, caught quietly) on the thread of a
        // current-thread runtime, where waiting could never end.
        crate::exec::quietly(|| tokio::task::block_in_place(|| wait(&rx, deadline)))
            .unwrap_or_else(|| Err(on_current_thread_runtime()))?
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

    fn inspect(&self, req: InspectRequest<'_>) -> Result<Option<LockRecord>, BackendError> {
        let owned = OwnedInspect::from(&req);
        self.run(
            req.deadline,
            |b| async move { b.inspect(owned.request()).await },
        )
    }

    fn server_time(&self, deadline: Option<Instant>) -> Result<Timestamp, BackendError> {
        self.run(deadline, |b| async move { b.server_time(deadline).await })
    }

    fn clock(&self) -> ClockSource {
        self.backend.clock()
    }

    fn describe(&self) -> String {
        self.backend.describe()
    }
}

/// The async form of a sync backend: each call on tokio's blocking threads.
pub(crate) struct AsyncOverSync {
    backend: Arc<dyn SyncBackend>,
}

impl AsyncOverSync {
    pub(crate) fn new(backend: Arc<dyn SyncBackend>) -> Self {
        AsyncOverSync { backend }
    }

    /// Run `call` (given the backend) on a blocking thread.
    fn run<T: Send + 'static>(
        &self,
        call: impl FnOnce(&dyn SyncBackend) -> Result<T, BackendError> + Send + 'static,
    ) -> BoxFuture<'static, Result<T, BackendError>> {
        let backend = Arc::clone(&self.backend);
        Box::pin(async move {
            tokio::task::spawn_blocking(move || call(&*backend))
                .await
                .map_err(|e| {
                    BackendError::new(
                        BackendErrorKind::Other,
                        "a blocking backend call ended without an answer",
                    )
                    .with_source(e)
                })?
        })
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

    fn inspect<'a>(
        &'a self,
        req: InspectRequest<'a>,
    ) -> BoxFuture<'a, Result<Option<LockRecord>, BackendError>> {
        let owned = OwnedInspect::from(&req);
        self.run(move |b| b.inspect(owned.request()))
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

    fn describe(&self) -> String {
        self.backend.describe()
    }
}
