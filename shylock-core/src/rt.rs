//! shylock's own runtime: the one place where lock work runs in the
//! background and where every timed wait is timed.
//!
//! One process-wide tokio runtime on one thread (`shylock-runtime`, started
//! on first use, kept for the life of the process) runs:
//!
//! * the renewal of every guard, blocking or async ([`Exec::start_renewal`](crate::exec::Exec::start_renewal)):
//!   a task each, so a slow renewal never holds back another;
//! * the blocking API's acquisitions, releases and inspections
//!   ([`block_on`]): the calling thread only waits for the answer;
//! * background work: releases of dropped guards, clean-ups after
//!   acquisitions given up with an unknown outcome;
//! * the timers of every wait, also of async locks polled on the caller's
//!   runtime ([`sleep_until`], [`timeout_at`]). So a caller's runtime needs
//!   no timers, and the core never has to ask tokio whether it has them (a
//!   question tokio answers only by panicking);
//! * the calls of sync-only backends, on its blocking threads (at most
//!   [`MAX_BLOCKING_THREADS`], started on demand, gone after 10 s idle).

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context, Poll};
use std::time::Instant;

use tokio::runtime::{Handle, RuntimeFlavor};
use tokio::task::JoinHandle;
use tracing::Instrument;
use tracing::instrument::WithSubscriber;

use crate::Error;

pub(crate) const MAX_BLOCKING_THREADS: usize = crate::bridge::MAX_BLOCKING_THREADS;

thread_local! {
    /// Set on the runtime's own thread: code there must never block.
    static ON_RUNTIME: Cell<bool> = const { Cell::new(false) };
    /// Set on the runtime's blocking threads.
    static ON_BLOCKING: Cell<bool> = const { Cell::new(false) };
}

/// Whether this thread is the runtime's own (where blocking would stall
/// every lock of the process).
pub(crate) fn on_runtime() -> bool {
    ON_RUNTIME.with(Cell::get)
}

/// Whether this thread is one of the runtime's blocking threads.
pub(crate) fn on_blocking_thread() -> bool {
    ON_BLOCKING.with(Cell::get)
}

/// The runtime's handle, started on first use.
///
/// # Errors
/// [`Error::Runtime`] if its thread could not be started (then no lock can
/// work in this process).
pub(crate) fn handle() -> Result<Handle, Error> {
    static RUNTIME: OnceLock<Result<Handle, String>> = OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            let mut builder = tokio::runtime::Builder::new_current_thread();
            builder
                .enable_all()
                .max_blocking_threads(MAX_BLOCKING_THREADS)
                .thread_name("shylock-blocking");
            // (tokio built for loom has no thread hooks; the loom models do
            // not use this runtime.)
            #[cfg(not(loom))]
            builder.on_thread_start(|| ON_BLOCKING.with(|b| b.set(true)));
            let runtime = builder
                .build()
                .map_err(|e| format!("cannot build shylock's runtime: {e}"))?;
            let handle = runtime.handle().clone();
            std::thread::Builder::new()
                .name("shylock-runtime".into())
                .stack_size(512 * 1024)
                .spawn(move || {
                    ON_BLOCKING.with(|b| b.set(false));
                    ON_RUNTIME.with(|r| r.set(true));
                    runtime.block_on(std::future::pending::<()>());
                })
                .map_err(|e| format!("cannot start shylock's runtime thread: {e}"))?;
            Ok(handle)
        })
        .clone()
        .map_err(|reason| Error::Runtime { reason })
}

/// A task of the runtime that is aborted when this is dropped (a
/// blocking call not started yet then never starts).
#[derive(Debug)]
pub(crate) struct Task<T>(pub(crate) JoinHandle<T>);

impl<T> Future for Task<T> {
    type Output = Result<T, tokio::task::JoinError>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0).poll(cx)
    }
}

impl<T> Drop for Task<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Sleep until `until`, timed by the runtime (from any thread or executor).
pub(crate) async fn sleep_until(runtime: &Handle, until: Instant) {
    if Instant::now() >= until {
        return;
    }
    if on_runtime() {
        tokio::time::sleep_until(until.into()).await;
    } else {
        // Made inside the task: a timer is bound to the runtime it is made
        // on, and the caller's may have none.
        let timer = async move { tokio::time::sleep_until(until.into()).await };
        let _ = Task(runtime.spawn(timer)).await;
    }
}

/// The time ran out.
#[derive(Debug)]
pub(crate) struct Elapsed;

/// `fut`, unless `until` passes first. A future that is ready at once
/// costs no timer.
pub(crate) async fn timeout_at<F: Future>(
    runtime: &Handle,
    until: Instant,
    fut: F,
) -> Result<F::Output, Elapsed> {
    let mut fut = std::pin::pin!(fut);
    let first = std::future::poll_fn(|cx| Poll::Ready(fut.as_mut().poll(cx))).await;
    if let Poll::Ready(value) = first {
        return Ok(value);
    }
    tokio::select! {
        biased;
        value = &mut fut => Ok(value),
        () = sleep_until(runtime, until) => Err(Elapsed),
    }
}

/// Run `fut` on the runtime and wait for its output on this thread (the
/// blocking API). On a worker of a multi-thread runtime the wait is
/// announced with `block_in_place`, so the worker's other tasks move on.
///
/// # Errors
/// [`Error::Runtime`] on the runtime's own thread (refused before anything
/// is sent), or if the work panicked.
pub(crate) fn block_on<T: Send + 'static>(
    runtime: &Handle,
    fut: impl Future<Output = T> + Send + 'static,
) -> Result<T, Error> {
    if on_runtime() {
        return Err(Error::Runtime {
            reason: "a blocking lock call cannot wait on shylock's own runtime thread \
                     (from a backend's code): use the async API there"
                .into(),
        });
    }
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    // The caller's `tracing` subscriber and span go with the work.
    let fut = fut.in_current_span().with_current_subscriber();
    runtime.spawn(async move {
        let _ = tx.send(fut.await);
    });
    let wait = move || rx.recv();
    let answer = match Handle::try_current() {
        Ok(current) if current.runtime_flavor() == RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(wait)
        }
        _ => wait(),
    };
    answer.map_err(|_| Error::Runtime {
        reason: "the lock's work on shylock's runtime ended without an answer (it panicked)".into(),
    })
}
