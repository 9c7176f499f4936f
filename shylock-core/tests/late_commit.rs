//! Issue 24 (ArangoDB, item 3), core part: an acquire whose client gave up
//! can still be granted by the server later (it waited there for a lock),
//! after the clean-up release found nothing. A backend that bounds that
//! delay (`AsyncBackend::max_commit_delay`) gets its clean-up release sent
//! again once the bound has passed; one that does not keeps the single
//! release (the default, unchanged).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use shylock_core::backend::{
    AcquireOutcome, AcquireRequest, AsyncBackend, BoxFuture, ClockSource, InspectRequest,
    LockRecord, ReleaseOutcome, ReleaseRequest, RenewOutcome, RenewRequest, SyncBackend,
};
use shylock_core::{AsyncLock, Backend, BackendError, BackendErrorKind, MemoryBackend, Timestamp};

/// A server on which every acquire waits `commit_after` (for a lock) before
/// it commits, whether or not its client still waits; the client gives up
/// at the request's deadline.
struct LateServer {
    inner: Arc<MemoryBackend>,
    commit_after: Duration,
    bound: Option<Duration>,
    releases: Arc<AtomicUsize>,
}

impl AsyncBackend for LateServer {
    fn try_acquire<'a>(
        &'a self,
        req: AcquireRequest<'a>,
    ) -> BoxFuture<'a, Result<AcquireOutcome, BackendError>> {
        let (name, owner, lease, deadline) =
            (req.name.clone(), req.owner.clone(), req.lease, req.deadline);
        let inner = Arc::clone(&self.inner);
        let wait = self.commit_after;
        let server = tokio::spawn(async move {
            tokio::time::sleep(wait).await;
            SyncBackend::try_acquire(
                &*inner,
                AcquireRequest {
                    name: &name,
                    owner: &owner,
                    lease,
                    now: Timestamp::EPOCH,
                    deadline: None,
                },
            )
        });
        Box::pin(async move {
            let gave_up = || BackendError::new(BackendErrorKind::Timeout, "test: client timed out");
            match deadline {
                Some(d) => match tokio::time::timeout_at(d.into(), server).await {
                    Ok(joined) => joined.unwrap_or_else(|_| Err(gave_up())),
                    Err(_) => Err(gave_up()),
                },
                None => server.await.unwrap_or_else(|_| Err(gave_up())),
            }
        })
    }
    fn renew<'a>(
        &'a self,
        req: RenewRequest<'a>,
    ) -> BoxFuture<'a, Result<RenewOutcome, BackendError>> {
        AsyncBackend::renew(&*self.inner, req)
    }
    fn release<'a>(
        &'a self,
        req: ReleaseRequest<'a>,
    ) -> BoxFuture<'a, Result<ReleaseOutcome, BackendError>> {
        self.releases.fetch_add(1, Ordering::SeqCst);
        AsyncBackend::release(&*self.inner, req)
    }
    fn inspect<'a>(
        &'a self,
        req: InspectRequest<'a>,
    ) -> BoxFuture<'a, Result<Option<LockRecord>, BackendError>> {
        AsyncBackend::inspect(&*self.inner, req)
    }
    fn server_time(
        &self,
        deadline: Option<Instant>,
    ) -> BoxFuture<'_, Result<Timestamp, BackendError>> {
        AsyncBackend::server_time(&*self.inner, deadline)
    }
    fn clock(&self) -> ClockSource {
        ClockSource::Server
    }
    fn max_commit_delay(&self) -> Option<Duration> {
        self.bound
    }
    fn describe(&self) -> String {
        "late memory".into()
    }
}

/// Acquire with a short timeout on a server that commits late; settle the
/// clean-up; return whether the lock is still held, and how many releases
/// were sent.
async fn late_commit(bound: Option<Duration>) -> (bool, usize, Duration) {
    let releases = Arc::new(AtomicUsize::new(0));
    let backend = Backend::from_async(LateServer {
        inner: Arc::new(MemoryBackend::new()),
        commit_after: Duration::from_millis(300),
        bound,
        releases: Arc::clone(&releases),
    });
    let lock = AsyncLock::with_backend("late", &backend).lease(Duration::from_secs(120));
    let started = Instant::now();
    let err = lock
        .acquire_timeout(Duration::from_millis(100))
        .await
        .expect_err("the acquisition times out");
    assert!(matches!(err, shylock_core::Error::Timeout { .. }), "{err}");
    assert!(backend.settle(Duration::from_secs(10)).await);
    // The late commit has happened by now in either case.
    tokio::time::sleep(Duration::from_millis(
        300u64.saturating_sub(started.elapsed().as_millis() as u64) + 50,
    ))
    .await;
    let held = lock.inspect().await.expect("inspect").is_some();
    (held, releases.load(Ordering::SeqCst), started.elapsed())
}

#[tokio::test]
async fn a_late_commit_is_released_again_after_the_backends_bound() {
    let (held, releases, took) = late_commit(Some(Duration::from_millis(500))).await;
    assert!(!held, "the late grant must be released after the bound");
    assert_eq!(releases, 2);
    assert!(took < Duration::from_secs(3), "{took:?}");
}

#[tokio::test]
async fn without_a_bound_the_clean_up_releases_once() {
    // The default: no bound known, one release (which found nothing): the
    // late grant stays until its lease ends.
    let (held, releases, _) = late_commit(None).await;
    assert!(held);
    assert_eq!(releases, 1);
}
