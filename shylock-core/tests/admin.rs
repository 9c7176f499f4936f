//! The administrator's operations on a backend handle, in both forms:
//! list, forced release (the holder's guard reports `LossReason::Forced`
//! within one renewal interval, its release the loss), the audit trail;
//! and a backend without them answers `Unsupported`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use shylock_core::backend::{
    AcquireOutcome, AcquireRequest, InspectRequest, LockRecord, ReleaseOutcome, ReleaseRequest,
    RenewOutcome, RenewRequest, SyncBackend,
};
use shylock_core::conformance::primitives::{Check, Outcome, Target, run_check};
use shylock_core::{
    AsyncLock, Backend, BackendError, BackendErrorKind, Error, ForceReleaseOutcome, Lock,
    LossReason, MemoryBackend, Renewal, Timestamp,
};

const LEASE: Duration = Duration::from_secs(6);
const EVERY: Duration = Duration::from_millis(500);

#[test]
fn blocking_form_lists_forces_and_the_holder_sees_a_forced_loss() {
    let backend = Backend::from(MemoryBackend::new());
    let guard = Lock::with_backend("ops/a", &backend)
        .lease(LEASE)
        .renewal(Renewal::Every(EVERY))
        .acquire()
        .unwrap();
    let _other = Lock::with_backend("ops/b", &backend).acquire().unwrap();
    let _outside = Lock::with_backend("jobs/c", &backend).acquire().unwrap();
    let held = backend.list_blocking(Some("ops/")).unwrap();
    let names: Vec<_> = held.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(names, ["ops/a", "ops/b"]);
    assert_eq!(held[0].token, guard.token());
    assert!(held[0].held_since.is_some());
    assert_eq!(backend.list_blocking(None).unwrap().len(), 3);
    // Pages of one.
    let page = backend.list_page_blocking(None, None, 1).unwrap();
    assert_eq!(page.locks.len(), 1);
    assert_eq!(page.next.as_ref().map(|n| n.as_str()), Some("jobs/c"));

    assert_eq!(backend.audit_blocking("ops/a").unwrap(), None);
    let forced_at = Instant::now();
    let outcome = backend
        .force_release_blocking("ops/a", "ops@host", "stuck")
        .unwrap();
    assert_eq!(
        outcome,
        ForceReleaseOutcome::Released {
            owner: guard.owner().clone(),
            token: guard.token()
        }
    );
    // Seen within one renewal interval (plus a loaded machine's slack).
    while guard.is_held() {
        assert!(forced_at.elapsed() < Duration::from_secs(20), "never seen");
        std::thread::sleep(Duration::from_millis(20));
    }
    eprintln!(
        "the holder saw the forced release after {:?}",
        forced_at.elapsed()
    );
    assert_eq!(guard.lost_reason(), Some(LossReason::Forced));
    let audit = backend
        .audit_blocking("ops/a")
        .unwrap()
        .expect("an audit trail");
    assert_eq!(
        (audit.by.as_str(), audit.reason.as_str()),
        ("ops@host", "stuck")
    );
    assert_eq!(audit.token, guard.token());
    let next = Lock::with_backend("ops/a", &backend).acquire().unwrap();
    assert!(next.token() > guard.token());
    let old = guard.token();
    match guard.release() {
        Err(Error::LeaseLost { reason, token, .. }) => {
            assert_eq!(reason, LossReason::Forced);
            assert_eq!(token, old);
        }
        other => panic!("the forced holder's release reports the loss: {other:?}"),
    }
    assert_eq!(
        backend
            .force_release_blocking("nobody-holds-this", "ops", "test")
            .unwrap(),
        ForceReleaseOutcome::NotHeld
    );
    assert!(matches!(
        backend.force_release_blocking("", "ops", "test"),
        Err(Error::InvalidName { .. })
    ));
    assert!(matches!(
        backend.force_release_blocking("x", "ops", &"r".repeat(2000)),
        Err(Error::InvalidOption {
            option: "reason",
            ..
        })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_form_lists_forces_and_the_guards_lost_fires() {
    let backend = Backend::from(MemoryBackend::new());
    let guard = AsyncLock::with_backend("ops/x", &backend)
        .lease(LEASE)
        .renewal(Renewal::Every(EVERY))
        .acquire()
        .await
        .unwrap();
    let held = backend.list(Some("ops/")).await.unwrap();
    assert_eq!(held.len(), 1);
    assert_eq!(held[0].owner, *guard.owner());
    let page = backend.list_page(Some("ops/"), None, 10).await.unwrap();
    assert_eq!((page.locks.len(), page.next), (1, None));
    let forced_at = Instant::now();
    let outcome = backend.force_release("ops/x", "me", "why").await.unwrap();
    assert!(
        matches!(outcome, ForceReleaseOutcome::Released { token, .. } if token == guard.token())
    );
    let reason = tokio::time::timeout(Duration::from_secs(20), guard.lost())
        .await
        .expect("lost() fires");
    assert_eq!(reason, LossReason::Forced);
    eprintln!(
        "lost() fired {:?} after the forced release",
        forced_at.elapsed()
    );
    let audit = backend.audit("ops/x").await.unwrap().expect("audit");
    assert_eq!(audit.reason, "why");
    assert!(guard.release().await.is_err());
}

/// A sync backend with only the required primitives.
struct Minimal(MemoryBackend);

impl SyncBackend for Minimal {
    fn try_acquire(&self, req: AcquireRequest<'_>) -> Result<AcquireOutcome, BackendError> {
        SyncBackend::try_acquire(&self.0, req)
    }
    fn renew(&self, req: RenewRequest<'_>) -> Result<RenewOutcome, BackendError> {
        SyncBackend::renew(&self.0, req)
    }
    fn release(&self, req: ReleaseRequest<'_>) -> Result<ReleaseOutcome, BackendError> {
        SyncBackend::release(&self.0, req)
    }
    fn inspect(&self, req: InspectRequest<'_>) -> Result<Option<LockRecord>, BackendError> {
        SyncBackend::inspect(&self.0, req)
    }
    fn server_time(&self, deadline: Option<Instant>) -> Result<Timestamp, BackendError> {
        SyncBackend::server_time(&self.0, deadline)
    }
    fn clock(&self) -> shylock_core::backend::ClockSource {
        SyncBackend::clock(&self.0)
    }
    fn describe(&self) -> String {
        "minimal".into()
    }
}

#[test]
fn a_backend_without_the_optional_primitives_answers_unsupported() {
    let backend = Backend::from_sync(Minimal(MemoryBackend::new()));
    let kind = |e: Error| e.backend_kind();
    assert_eq!(
        kind(backend.list_blocking(None).unwrap_err()),
        Some(BackendErrorKind::Unsupported)
    );
    assert_eq!(
        kind(
            backend
                .force_release_blocking("n", "me", "why")
                .unwrap_err()
        ),
        Some(BackendErrorKind::Unsupported)
    );
    assert_eq!(
        kind(backend.audit_blocking("n").unwrap_err()),
        Some(BackendErrorKind::Unsupported)
    );
    // Its checks of them are reported skipped, not passed.
    let target = Target::from_sync(Arc::new(Minimal(MemoryBackend::new())));
    for check in [Check::ListShowsHeld, Check::ListPaging, Check::ForceRelease] {
        assert!(
            matches!(run_check(check, &target), Outcome::Skipped(_)),
            "{check:?}"
        );
    }
}
