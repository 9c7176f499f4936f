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

/// A prefix for the lock names of one run: the caller's, the form and a
/// random suffix, so that runs against a shared database never meet.
fn unique_prefix(prefix: &str, form: &str) -> String {
    format!("{prefix}-{form}-{:08x}", rand::random::<u32>())
}
