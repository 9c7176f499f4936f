//! The conformance suites every backend is held to (feature `conformance`).
//!
//! Two levels, both run in each form of a backend (async and sync):
//!
//! * [`primitives`]: one public function per clause of the
//!   [backend contract](crate::backend), calling [`AsyncBackend`] /
//!   [`SyncBackend`] directly (as object_store's shared integration-test
//!   functions do). Each is a test of its own through
//!   [`primitive_conformance_tests!`](crate::primitive_conformance_tests),
//!   so failures are itemized; a backend's own test adds what only it can
//!   do (delete a record, write a malformed one) through a
//!   [`Fixture`](primitives::Fixture).
//! * [`locks`]: the lock-level suite ([`Suite`], [`run_async`],
//!   [`run_sync`]): real [`Lock`](crate::Lock)s and
//!   [`AsyncLock`](crate::AsyncLock)s racing, expiring, renewing, losing and
//!   being cancelled against the backend, all in one call.
//!
//! A backend crate (say an SQLite one) runs both from its tests:
//!
//! ```
//! use std::sync::Arc;
//! use shylock_core::conformance::primitives::{Target, run_all};
//! use shylock_core::MemoryBackend; // stands for the backend under test
//!
//! // The sync form; `Target::from_async` (plus `with_runtime`) for the async one.
//! fn target() -> Target {
//!     let backend = MemoryBackend::new(); // e.g. SqliteBackend::open("locks.db")
//!     Target::from_sync(Arc::new(backend.clone()))
//!         // The second owner's requests on a connection of their own.
//!         .with_contender(Target::from_sync(Arc::new(backend)))
//!         .prefix("sqlite")
//! }
//!
//! // In tests/conformance.rs: one #[test] per check, in module `sync_form`.
//! shylock_core::primitive_conformance_tests!(sync_form, target);
//!
//! fn main() {
//!     // Or all of them at once, with a report (passed, skipped, failed).
//!     let report = run_all(&target());
//!     report.assert_passed();
//! }
//! ```
//!
//! [`AsyncBackend`]: crate::AsyncBackend
//! [`SyncBackend`]: crate::SyncBackend

pub mod locks;
pub mod primitives;

pub use locks::{Report, Suite, run_async, run_sync};

use std::sync::Arc;
use std::time::Instant;

use crate::backend::{
    AcquireOutcome, AcquireRequest, AsyncBackend, AuditRequest, ClockSource, ForceReleaseOutcome,
    ForceReleaseRequest, ForcedRelease, HandOverOutcome, HandOverRequest, InspectRequest, ListPage,
    ListRequest, LockRecord, ReleaseOutcome, ReleaseRequest, RenewOutcome, RenewRequest,
    SyncBackend,
};
use crate::{BackendError, Timestamp};

/// One form of a backend's primitives, called alike.
#[derive(Clone)]
enum Primitives {
    Async(Arc<dyn AsyncBackend>),
    Sync(Arc<dyn SyncBackend>),
}

/// Call a primitive of either form (the sync one blocks the caller).
macro_rules! call {
    ($primitives:expr, $method:ident($($arg:expr),*)) => {
        match $primitives {
            Primitives::Async(b) => b.$method($($arg),*).await,
            Primitives::Sync(b) => b.$method($($arg),*),
        }
    };
}

impl Primitives {
    async fn try_acquire(&self, req: AcquireRequest<'_>) -> Result<AcquireOutcome, BackendError> {
        call!(self, try_acquire(req))
    }

    async fn renew(&self, req: RenewRequest<'_>) -> Result<RenewOutcome, BackendError> {
        call!(self, renew(req))
    }

    async fn release(&self, req: ReleaseRequest<'_>) -> Result<ReleaseOutcome, BackendError> {
        call!(self, release(req))
    }

    async fn hand_over(&self, req: HandOverRequest<'_>) -> Result<HandOverOutcome, BackendError> {
        call!(self, hand_over(req))
    }

    fn supports_hand_over(&self) -> bool {
        match self {
            Primitives::Async(b) => b.supports_hand_over(),
            Primitives::Sync(b) => b.supports_hand_over(),
        }
    }

    async fn inspect(&self, req: InspectRequest<'_>) -> Result<Option<LockRecord>, BackendError> {
        call!(self, inspect(req))
    }

    async fn list(&self, req: ListRequest<'_>) -> Result<ListPage, BackendError> {
        call!(self, list(req))
    }

    async fn force_release(
        &self,
        req: ForceReleaseRequest<'_>,
    ) -> Result<ForceReleaseOutcome, BackendError> {
        call!(self, force_release(req))
    }

    async fn audit(&self, req: AuditRequest<'_>) -> Result<Option<ForcedRelease>, BackendError> {
        call!(self, audit(req))
    }

    async fn server_time(&self, deadline: Option<Instant>) -> Result<Timestamp, BackendError> {
        call!(self, server_time(deadline))
    }

    fn clock(&self) -> ClockSource {
        match self {
            Primitives::Async(b) => b.clock(),
            Primitives::Sync(b) => b.clock(),
        }
    }

    fn describe(&self) -> String {
        match self {
            Primitives::Async(b) => b.describe(),
            Primitives::Sync(b) => b.describe(),
        }
    }
}

/// A prefix for the lock names of one run: the caller's, the form and a
/// random suffix, so that runs against a shared database never meet.
fn unique_prefix(prefix: &str, form: &str) -> String {
    format!("{prefix}-{form}-{:08x}", rand::random::<u32>())
}
