//! # shylock-core
//!
//! The lock semantics of [shylock](https://crates.io/crates/shylock), the
//! backend traits every database implements, the in-memory backend, and
//! (behind the `conformance` feature) the conformance suite every backend
//! must pass. Most users depend on the `shylock` facade crate instead.
//!
//! ```
//! use std::time::Duration;
//! use shylock_core::{configure, Lock, MemoryBackend};
//!
//! configure(MemoryBackend::new());
//! let lock = Lock::new("nightly-report").lease(Duration::from_secs(10));
//! let guard = lock.acquire()?;              // waits; renewed while held
//! println!("token {}", guard.token());      // fencing token, only ever rises
//! assert!(lock.try_acquire()?.is_none());   // held: a second try fails at once
//! drop(guard);                              // released
//! # Ok::<(), shylock_core::Error>(())
//! ```
//!
//! ## The rules every backend keeps
//!
//! * Never two holders of a live lease: a grant is atomic on the backend, and
//!   the holder counts its lease as ended a safety margin before the backend
//!   does (measured from the moment its request was sent, on a monotonic
//!   clock that counts suspended time, less the uncertainty of the server
//!   clock estimate and the millisecond granularity of records).
//! * Never a release of somebody else's lock: every acquisition has its own
//!   owner id, and renewals and releases act only on a record with that id.
//! * Never a silent loss of a lease: a guard knows until when its lease is
//!   valid; renewal failures, takeovers and expiry are reported
//!   ([`Holding::is_held`], [`AsyncLockGuard::lost`],
//!   [`Holding::ensure_held`]), and releasing a lost lease says so.
//! * Fencing tokens rise strictly for a name, across releases, expiries,
//!   takeovers and garbage collection of the record.
//! * Expiry is judged by the backend's clock.
//!
//! ## One algorithm, two forms
//!
//! The algorithm (waiting with backoff and jitter, polling turns per name
//! and handle that a stuck waiter cannot keep, wake-ups on local releases,
//! the server clock estimate, renewal, loss detection, clean-up of
//! cancelled attempts) is written once as async code over a backend's
//! async form. The async API polls it in the caller's future; the blocking
//! API runs it as a task on shylock's own runtime thread and waits for the
//! answer. Every guard's renewal, every background release and every timed
//! wait runs on that runtime too, so a caller's runtime needs no timers,
//! and a guard of either form costs a task, not a thread. The same runtime
//! is the one bridge between the forms for backends too ([`bridge`]).

mod admin;
mod algo;
pub mod backend;
pub mod bridge;
mod clock;
mod coord;
mod election;
mod error;
mod exec;
mod handle;
mod lease;
mod lock;
mod memory;
pub mod metrics;
mod options;
mod rt;
mod signal;
mod sync;
mod tick;
pub mod types;

#[cfg(all(test, loom))]
mod loom_tests;

#[cfg(feature = "conformance")]
pub mod conformance;

pub use admin::{ADMIN_TIMEOUT, LIST_PAGE, MAX_AUDIT_TEXT_BYTES};
pub use backend::{
    AsyncBackend, ForceReleaseOutcome, ForcedRelease, ListPage, ListedLock, LockRecord, SyncBackend,
};
pub use election::{
    AsyncElection, AsyncLeadership, AsyncObserver, DEFAULT_POLL_INTERVAL, Election,
    GenericElection, Leader, Leadership, MIN_POLL_INTERVAL, Observer,
};
pub use error::{BackendError, BackendErrorKind, BoxError, Error, LossReason};
pub use handle::{Backend, configure, default_backend};
pub use lease::Holding;
pub use lock::{Async, AsyncLock, AsyncLockGuard, Blocking, GenericLock, Lock, LockGuard};
pub use memory::MemoryBackend;
pub use options::{
    Backoff, CLOCK_GRANULARITY, DEFAULT_LEASE, Handoff, LockOptions, MAX_LEASE, MAX_OWNER_LABEL,
    MIN_LEASE, RECORD_HORIZON, Renewal,
};
pub use types::{FencingToken, LockName, MAX_NAME_BYTES, OwnerId, Timestamp};
