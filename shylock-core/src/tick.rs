//! The clock that lease validity is measured on.
//!
//! A lease is a span of real time on the server. The holder measures it on a
//! local clock that must keep counting while the machine is suspended:
//! `std::time::Instant` does not (on Linux it reads `CLOCK_MONOTONIC`, which
//! stops during suspend), so after a suspend longer than the lease a guard
//! measured with it would still say "held". [`Tick`] reads
//! `CLOCK_BOOTTIME` on Linux and Android (monotonic, never set back, and
//! counting suspended time). On other platforms it falls back to
//! `std::time::Instant`: on Windows that clock counts suspended time, on
//! macOS, iOS and the BSDs it may not, so there a suspend longer than the
//! margin can leave a guard that says "held" until its next renewal fails.
//!
//! Deadlines the caller gives (`timeout`) stay on `std::time::Instant`, the
//! clock tokio's timers use: only lease validity needs the suspend-aware one.

use std::time::{Duration, Instant};

/// A point on the suspend-aware monotonic clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Tick(Duration);

#[cfg(any(target_os = "linux", target_os = "android"))]
fn raw_now() -> Duration {
    let ts = rustix::time::clock_gettime(rustix::time::ClockId::Boottime);
    Duration::new(
        u64::try_from(ts.tv_sec).unwrap_or(0),
        u32::try_from(ts.tv_nsec).unwrap_or(0),
    )
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn raw_now() -> Duration {
    static ORIGIN: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    ORIGIN.get_or_init(Instant::now).elapsed()
}

/// Test support: pretend that the machine was suspended for this long (the
/// suspend-aware clock moves on, `Instant` does not).
#[cfg(test)]
pub(crate) mod suspend {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::Duration;

    static SUSPENDED_NS: AtomicU64 = AtomicU64::new(0);
    /// Held by tests that read both clocks or move them apart.
    pub(crate) static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

    pub(crate) fn add(d: Duration) {
        SUSPENDED_NS.fetch_add(
            u64::try_from(d.as_nanos()).unwrap_or(u64::MAX),
            Ordering::SeqCst,
        );
    }

    pub(crate) fn total() -> Duration {
        Duration::from_nanos(SUSPENDED_NS.load(Ordering::SeqCst))
    }
}

impl Tick {
    /// Now.
    pub(crate) fn now() -> Tick {
        #[cfg(test)]
        return Tick(raw_now() + suspend::total());
        #[cfg(not(test))]
        Tick(raw_now())
    }

    /// `self + d`, saturating.
    pub(crate) fn add(self, d: Duration) -> Tick {
        Tick(self.0.saturating_add(d))
    }

    /// `self - d`, saturating at the clock's origin.
    #[cfg(test)]
    pub(crate) fn sub(self, d: Duration) -> Tick {
        Tick(self.0.saturating_sub(d))
    }

    /// How long from `earlier` to `self` (zero if `earlier` is later).
    pub(crate) fn since(self, earlier: Tick) -> Duration {
        self.0.saturating_sub(earlier.0)
    }

    /// How long from now until `self` (zero if it has passed).
    pub(crate) fn remaining(self) -> Duration {
        self.since(Tick::now())
    }

    /// Whether `self` has passed.
    pub(crate) fn passed(self) -> bool {
        Tick::now() >= self
    }

    /// The `Instant` of the same moment, as far as can be told now (the two
    /// clocks differ only by suspended time). Saturates at far future and
    /// at now for moments that have passed.
    pub(crate) fn to_instant(self) -> Instant {
        let (now, tick) = (Instant::now(), Tick::now());
        if self >= tick {
            now.checked_add(self.since(tick)).unwrap_or(now + FAR)
        } else {
            now.checked_sub(tick.since(self)).unwrap_or(now)
        }
    }
}

/// A distance that stands for "never" in deadlines (about 30 years).
pub(crate) const FAR: Duration = Duration::from_secs(30 * 365 * 24 * 3600);

/// `now + d` without overflow: `None` stands for "no deadline".
pub(crate) fn deadline_after(d: Duration) -> Option<Instant> {
    let now = Instant::now();
    now.checked_add(d.min(FAR))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tick_moves_with_instant_and_saturates() {
        let _clocks = suspend::LOCK.lock().unwrap_or_else(|e| e.into_inner());
        let (t, i) = (Tick::now(), Instant::now());
        std::thread::sleep(Duration::from_millis(20));
        let (dt, di) = (Tick::now().since(t), i.elapsed());
        assert!(dt >= Duration::from_millis(20), "{dt:?}");
        assert!(
            dt.abs_diff(di) < Duration::from_millis(5),
            "{dt:?} vs {di:?}"
        );
        assert!(t.add(Duration::MAX) > t);
        let _ = t.add(Duration::MAX).to_instant();
        assert!(deadline_after(Duration::MAX).is_some());
    }

    /// Item 12 of the hardening issue: after a suspend longer than the
    /// lease (the suspend-aware clock moves on, `Instant` does not), a guard
    /// says it is not held.
    #[test]
    fn a_suspend_longer_than_the_lease_ends_the_lease() {
        use crate::{Backend, Lock, LockOptions, MemoryBackend, Renewal};
        let _clocks = suspend::LOCK.lock().unwrap_or_else(|e| e.into_inner());
        let backend = Backend::from(MemoryBackend::new());
        let guard = Lock::with_backend("suspend", &backend)
            .options(
                LockOptions::default()
                    .lease(Duration::from_secs(5))
                    .renewal(Renewal::Off),
            )
            .acquire()
            .expect("acquire");
        assert!(guard.is_held());
        suspend::add(Duration::from_secs(6));
        assert!(!guard.is_held(), "a suspend of 6 s ended a 5 s lease");
        assert!(guard.remaining().is_zero());
        assert!(guard.valid_until() <= Instant::now());
    }
}
