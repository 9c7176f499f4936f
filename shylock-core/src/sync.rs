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
pub(crate) use loom::sync::{Arc, Condvar, Mutex, MutexGuard};
#[cfg(not(loom))]
pub(crate) use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use std::sync::PoisonError;
use std::time::Duration;

/// Lock `m`. Poisoning is ignored: every value behind these mutexes is
/// consistent between statements, so a panic elsewhere must not spread.
pub(crate) fn lock<T: ?Sized>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Wait on `condvar` until notified (or a spurious wake-up), poisoning
/// ignored as in [`lock`].
pub(crate) fn wait<'a, T>(condvar: &Condvar, guard: MutexGuard<'a, T>) -> MutexGuard<'a, T> {
    condvar.wait(guard).unwrap_or_else(PoisonError::into_inner)
}

/// Wait on `condvar` until notified or `timeout` passes, poisoning ignored
/// as in [`lock`]. (Loom does not model time: under it this waits for a
/// notification.)
pub(crate) fn wait_timeout<'a, T>(
    condvar: &Condvar,
    guard: MutexGuard<'a, T>,
    timeout: Duration,
) -> MutexGuard<'a, T> {
    condvar
        .wait_timeout(guard, timeout)
        .unwrap_or_else(PoisonError::into_inner)
        .0
}
