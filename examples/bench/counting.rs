//! A backend wrapper that counts primitive calls (= database round trips:
//! every MongoDB and ArangoDB primitive is one command or request by design,
//! and so is a server-time probe).

use std::ops::{Add, Sub};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Instant;

use shylock::backend::{
    AcquireOutcome, AcquireRequest, AsyncBackend, BoxFuture, ClockSource, InspectRequest,
    ReleaseOutcome, ReleaseRequest, RenewOutcome, RenewRequest, SyncBackend,
};
use shylock::{BackendError, LockRecord, Timestamp};

/// Calls per primitive, and (MongoDB only) commands seen by the driver's
/// command monitoring.
#[derive(Debug, Default)]
pub struct Counts {
    acquire: AtomicU64,
    renew: AtomicU64,
    release: AtomicU64,
    inspect: AtomicU64,
    server_time: AtomicU64,
    /// Commands started, as the MongoDB driver's command monitoring saw them.
    pub wire: AtomicU64,
}

/// A snapshot of [`Counts`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Snap {
    pub acquire: u64,
    pub renew: u64,
    pub release: u64,
    pub inspect: u64,
    pub server_time: u64,
    pub wire: u64,
}

impl Counts {
    pub fn snap(&self) -> Snap {
        Snap {
            acquire: self.acquire.load(Relaxed),
            renew: self.renew.load(Relaxed),
            release: self.release.load(Relaxed),
            inspect: self.inspect.load(Relaxed),
            server_time: self.server_time.load(Relaxed),
            wire: self.wire.load(Relaxed),
        }
    }
}

impl Snap {
    /// All primitive calls (round trips).
    pub fn total(&self) -> u64 {
        self.acquire + self.renew + self.release + self.inspect + self.server_time
    }

    /// One line for a child's report: `COUNTS a r l i s w`.
    pub fn to_line(self) -> String {
        format!(
            "COUNTS {} {} {} {} {} {}",
            self.acquire, self.renew, self.release, self.inspect, self.server_time, self.wire
        )
    }

    /// Parse [`to_line`](Self::to_line)'s output.
    pub fn from_line(line: &str) -> Option<Snap> {
        let v: Vec<u64> = line
            .strip_prefix("COUNTS ")?
            .split_whitespace()
            .map(|x| x.parse().ok())
            .collect::<Option<_>>()?;
        (v.len() == 6).then(|| Snap {
            acquire: v[0],
            renew: v[1],
            release: v[2],
            inspect: v[3],
            server_time: v[4],
            wire: v[5],
        })
    }
}

impl Sub for Snap {
    type Output = Snap;
    fn sub(self, o: Snap) -> Snap {
        Snap {
            acquire: self.acquire - o.acquire,
            renew: self.renew - o.renew,
            release: self.release - o.release,
            inspect: self.inspect - o.inspect,
            server_time: self.server_time - o.server_time,
            wire: self.wire - o.wire,
        }
    }
}

impl Add for Snap {
    type Output = Snap;
    fn add(self, o: Snap) -> Snap {
        Snap {
            acquire: self.acquire + o.acquire,
            renew: self.renew + o.renew,
            release: self.release + o.release,
            inspect: self.inspect + o.inspect,
            server_time: self.server_time + o.server_time,
            wire: self.wire + o.wire,
        }
    }
}

/// Forwards every primitive to `inner`, counting the calls.
pub struct Counting<B> {
    pub inner: B,
    pub counts: Arc<Counts>,
}

impl<B: AsyncBackend> AsyncBackend for Counting<B> {
    fn try_acquire<'a>(
        &'a self,
        req: AcquireRequest<'a>,
    ) -> BoxFuture<'a, Result<AcquireOutcome, BackendError>> {
        self.counts.acquire.fetch_add(1, Relaxed);
        AsyncBackend::try_acquire(&self.inner, req)
    }

    fn renew<'a>(
        &'a self,
        req: RenewRequest<'a>,
    ) -> BoxFuture<'a, Result<RenewOutcome, BackendError>> {
        self.counts.renew.fetch_add(1, Relaxed);
        AsyncBackend::renew(&self.inner, req)
    }

    fn release<'a>(
        &'a self,
        req: ReleaseRequest<'a>,
    ) -> BoxFuture<'a, Result<ReleaseOutcome, BackendError>> {
        self.counts.release.fetch_add(1, Relaxed);
        AsyncBackend::release(&self.inner, req)
    }

    fn inspect<'a>(
        &'a self,
        req: InspectRequest<'a>,
    ) -> BoxFuture<'a, Result<Option<LockRecord>, BackendError>> {
        self.counts.inspect.fetch_add(1, Relaxed);
        AsyncBackend::inspect(&self.inner, req)
    }

    fn server_time(
        &self,
        deadline: Option<Instant>,
    ) -> BoxFuture<'_, Result<Timestamp, BackendError>> {
        self.counts.server_time.fetch_add(1, Relaxed);
        AsyncBackend::server_time(&self.inner, deadline)
    }

    fn clock(&self) -> ClockSource {
        AsyncBackend::clock(&self.inner)
    }

    fn describe(&self) -> String {
        AsyncBackend::describe(&self.inner)
    }
}

impl<B: SyncBackend> SyncBackend for Counting<B> {
    fn try_acquire(&self, req: AcquireRequest<'_>) -> Result<AcquireOutcome, BackendError> {
        self.counts.acquire.fetch_add(1, Relaxed);
        SyncBackend::try_acquire(&self.inner, req)
    }

    fn renew(&self, req: RenewRequest<'_>) -> Result<RenewOutcome, BackendError> {
        self.counts.renew.fetch_add(1, Relaxed);
        SyncBackend::renew(&self.inner, req)
    }

    fn release(&self, req: ReleaseRequest<'_>) -> Result<ReleaseOutcome, BackendError> {
        self.counts.release.fetch_add(1, Relaxed);
        SyncBackend::release(&self.inner, req)
    }

    fn inspect(&self, req: InspectRequest<'_>) -> Result<Option<LockRecord>, BackendError> {
        self.counts.inspect.fetch_add(1, Relaxed);
        SyncBackend::inspect(&self.inner, req)
    }

    fn server_time(&self, deadline: Option<Instant>) -> Result<Timestamp, BackendError> {
        self.counts.server_time.fetch_add(1, Relaxed);
        SyncBackend::server_time(&self.inner, deadline)
    }

    fn clock(&self) -> ClockSource {
        SyncBackend::clock(&self.inner)
    }

    fn describe(&self) -> String {
        SyncBackend::describe(&self.inner)
    }
}
