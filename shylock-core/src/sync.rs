//! The synchronization primitives of the coordination code (`coord`,
//! `signal`, `lease`): `std::sync`, or loom's models of them when built with
//! `--cfg loom`, so that the loom models (`loom_tests`) explore their
//! interleavings.
//!
//! Loom (0.7) has no `Weak`: the coordination code needs none. Its only
//! atomic is the process-wide waiter id counter, which stays `std` (a loom
//! atomic cannot live in a `static`, and only the ids' uniqueness matters).
//! Arcs that other modules create or hold (`Arc<Coordinator>`,
//! `Arc<LeaseState>`) are `std::sync::Arc` under both configurations.

#[cfg(loom)]
pub(crate) use loom::sync::{Arc, Mutex, MutexGuard};
#[cfg(not(loom))]
pub(crate) use std::sync::{Arc, Mutex, MutexGuard};

use std::sync::PoisonError;

/// Lock `m`. Poisoning is ignored: every value behind these mutexes is
/// consistent between statements, so a panic elsewhere must not spread.
pub(crate) fn lock<T: ?Sized>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}
