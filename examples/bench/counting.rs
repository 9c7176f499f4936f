//! A backend wrapper that counts primitive calls (= database round trips:
//! every MongoDB and ArangoDB primitive is one command or request by design,
//! and so is a server-time probe).

use std::ops::{Add, Sub};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use shylock::backend::{
    AcquireOutcome, AcquireRequest, AsyncBackend, BoxFuture, ClockSource, HandOverOutcome,
    HandOverRequest, InspectRequest, ReleaseOutcome, ReleaseRequest, RenewOutcome, RenewRequest,
    SyncBackend,
};
use shylock::{BackendError, LockRecord, Timestamp};

/// Calls per primitive, and (MongoDB only) commands seen by the driver's
/// command monitoring.
#[derive(Debug, Default)]
pub struct Counts {
    acquire: AtomicU64,
    renew: AtomicU64,
    release: AtomicU64,
    hand_over: AtomicU64,
    /// Hand-overs answered NotOwner, and failed.
    pub hand_over_refused: AtomicU64,
    pub hand_over_failed: AtomicU64,
    inspect: AtomicU64,
    server_time: AtomicU64,
    /// Commands started, as the MongoDB driver's command monitoring saw them.
    pub wire: AtomicU64,
    /// Primitive calls begun and not yet returned (or dropped).
    in_flight: AtomicU64,
}

/// One call in flight, for [`Counts::settle`]: counted from the call to its
/// return, or to the drop of its future.
struct InFlight(Arc<Counts>);

impl InFlight {
    fn new(counts: &Arc<Counts>) -> InFlight {
        counts.in_flight.fetch_add(1, Relaxed);
        InFlight(Arc::clone(counts))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Relaxed);
    }
}

/// Wrap a primitive's future so that it counts as in flight until it ends.
fn tracked<'a, T: 'a>(counts: &Arc<Counts>, fut: BoxFuture<'a, T>) -> BoxFuture<'a, T> {
    let guard = InFlight::new(counts);
    Box::pin(async move {
        let out = fut.await;
        drop(guard);
        out
    })
}

/// How long the calls must have been quiet for [`Counts::settle`].
const QUIET: Duration = Duration::from_millis(250);

/// A snapshot of [`Counts`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Snap {
    pub acquire: u64,
    pub renew: u64,
    pub release: u64,
    pub hand_over: u64,
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
            hand_over: self.hand_over.load(Relaxed),
            inspect: self.inspect.load(Relaxed),
            server_time: self.server_time.load(Relaxed),
            wire: self.wire.load(Relaxed),
        }
    }

    /// No call in flight and none begun since the last look.
    fn quiet_since(&self, last: &mut Snap) -> bool {
        let now = self.snap();
        let quiet = self.in_flight.load(Relaxed) == 0 && now == *last;
        *last = now;
        quiet
    }

    /// Wait (at most `limit`) until no primitive call is in flight and none
    /// has begun for a moment: releases that the core started in the
    /// background (after an acquisition given up with an unknown outcome,
    /// or a guard dropped) have ended. A child calls it before it returns,
    /// so that no backend call is cut by the end of its runtime. Returns
    /// whether the calls settled.
    pub async fn settle(&self, limit: Duration) -> bool {
        let end = Instant::now() + limit;
        let mut last = self.snap();
        loop {
            tokio::time::sleep(QUIET).await;
            if self.quiet_since(&mut last) {
                return true;
            }
            if Instant::now() >= end {
                return false;
            }
        }
    }

    /// [`settle`](Self::settle) for a thread outside any runtime.
    pub fn settle_blocking(&self, limit: Duration) -> bool {
        let end = Instant::now() + limit;
        let mut last = self.snap();
        loop {
            std::thread::sleep(QUIET);
            if self.quiet_since(&mut last) {
                return true;
            }
            if Instant::now() >= end {
                return false;
            }
        }
    }
}

impl Snap {
    /// All primitive calls (round trips).
    pub fn total(&self) -> u64 {
        self.acquire + self.renew + self.release + self.hand_over + self.inspect + self.server_time
    }

    /// One line for a child's report: `COUNTS a r l i s w h`.
    pub fn to_line(self) -> String {
        format!(
            "COUNTS {} {} {} {} {} {} {}",
            self.acquire,
            self.renew,
            self.release,
            self.inspect,
            self.server_time,
            self.wire,
            self.hand_over
        )
    }

    /// Parse [`to_line`](Self::to_line)'s output.
    pub fn from_line(line: &str) -> Option<Snap> {
        let v: Vec<u64> = line
            .strip_prefix("COUNTS ")?
            .split_whitespace()
            .map(|x| x.parse().ok())
            .collect::<Option<_>>()?;
        (v.len() == 7).then(|| Snap {
            acquire: v[0],
            renew: v[1],
            release: v[2],
            inspect: v[3],
            server_time: v[4],
            wire: v[5],
            hand_over: v[6],
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
            hand_over: self.hand_over - o.hand_over,
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
            hand_over: self.hand_over + o.hand_over,
            inspect: self.inspect + o.inspect,
            server_time: self.server_time + o.server_time,
            wire: self.wire + o.wire,
        }
    }
}

/// Forwards every primitive to `inner` (any backend, or a trait object as
/// a connect's [`RawBackend`](shylock::RawBackend) gives), counting the calls.
pub struct Counting<B: ?Sized> {
    pub inner: Arc<B>,
    pub counts: Arc<Counts>,
}

impl<B: AsyncBackend + ?Sized> AsyncBackend for Counting<B> {
    fn try_acquire<'a>(
        &'a self,
        req: AcquireRequest<'a>,
    ) -> BoxFuture<'a, Result<AcquireOutcome, BackendError>> {
        self.counts.acquire.fetch_add(1, Relaxed);
        tracked(&self.counts, AsyncBackend::try_acquire(&*self.inner, req))
    }

    fn renew<'a>(
        &'a self,
        req: RenewRequest<'a>,
    ) -> BoxFuture<'a, Result<RenewOutcome, BackendError>> {
        self.counts.renew.fetch_add(1, Relaxed);
        tracked(&self.counts, AsyncBackend::renew(&*self.inner, req))
    }

    fn release<'a>(
        &'a self,
        req: ReleaseRequest<'a>,
    ) -> BoxFuture<'a, Result<ReleaseOutcome, BackendError>> {
        self.counts.release.fetch_add(1, Relaxed);
        tracked(&self.counts, AsyncBackend::release(&*self.inner, req))
    }

    fn hand_over<'a>(
        &'a self,
        req: HandOverRequest<'a>,
    ) -> BoxFuture<'a, Result<HandOverOutcome, BackendError>> {
        self.counts.hand_over.fetch_add(1, Relaxed);
        let counts = Arc::clone(&self.counts);
        let fut = AsyncBackend::hand_over(&*self.inner, req);
        tracked(
            &self.counts,
            Box::pin(async move {
                let result = fut.await;
                match &result {
                    Ok(HandOverOutcome::NotOwner) => {
                        counts.hand_over_refused.fetch_add(1, Relaxed);
                    }
                    Err(_) => {
                        counts.hand_over_failed.fetch_add(1, Relaxed);
                    }
                    Ok(HandOverOutcome::HandedOver(_)) => {}
                }
                result
            }),
        )
    }

    fn supports_hand_over(&self) -> bool {
        AsyncBackend::supports_hand_over(&*self.inner)
    }

    fn inspect<'a>(
        &'a self,
        req: InspectRequest<'a>,
    ) -> BoxFuture<'a, Result<Option<LockRecord>, BackendError>> {
        self.counts.inspect.fetch_add(1, Relaxed);
        tracked(&self.counts, AsyncBackend::inspect(&*self.inner, req))
    }

    fn server_time(
        &self,
        deadline: Option<Instant>,
    ) -> BoxFuture<'_, Result<Timestamp, BackendError>> {
        self.counts.server_time.fetch_add(1, Relaxed);
        tracked(
            &self.counts,
            AsyncBackend::server_time(&*self.inner, deadline),
        )
    }

    fn clock(&self) -> ClockSource {
        AsyncBackend::clock(&*self.inner)
    }

    fn describe(&self) -> String {
        AsyncBackend::describe(&*self.inner)
    }
}

impl<B: SyncBackend + ?Sized> SyncBackend for Counting<B> {
    fn try_acquire(&self, req: AcquireRequest<'_>) -> Result<AcquireOutcome, BackendError> {
        self.counts.acquire.fetch_add(1, Relaxed);
        let _in_flight = InFlight::new(&self.counts);
        SyncBackend::try_acquire(&*self.inner, req)
    }

    fn renew(&self, req: RenewRequest<'_>) -> Result<RenewOutcome, BackendError> {
        self.counts.renew.fetch_add(1, Relaxed);
        let _in_flight = InFlight::new(&self.counts);
        SyncBackend::renew(&*self.inner, req)
    }

    fn release(&self, req: ReleaseRequest<'_>) -> Result<ReleaseOutcome, BackendError> {
        self.counts.release.fetch_add(1, Relaxed);
        let _in_flight = InFlight::new(&self.counts);
        SyncBackend::release(&*self.inner, req)
    }

    fn hand_over(&self, req: HandOverRequest<'_>) -> Result<HandOverOutcome, BackendError> {
        self.counts.hand_over.fetch_add(1, Relaxed);
        let _in_flight = InFlight::new(&self.counts);
        SyncBackend::hand_over(&*self.inner, req)
    }

    fn supports_hand_over(&self) -> bool {
        SyncBackend::supports_hand_over(&*self.inner)
    }

    fn inspect(&self, req: InspectRequest<'_>) -> Result<Option<LockRecord>, BackendError> {
        self.counts.inspect.fetch_add(1, Relaxed);
        let _in_flight = InFlight::new(&self.counts);
        SyncBackend::inspect(&*self.inner, req)
    }

    fn server_time(&self, deadline: Option<Instant>) -> Result<Timestamp, BackendError> {
        self.counts.server_time.fetch_add(1, Relaxed);
        let _in_flight = InFlight::new(&self.counts);
        SyncBackend::server_time(&*self.inner, deadline)
    }

    fn clock(&self) -> ClockSource {
        SyncBackend::clock(&*self.inner)
    }

    fn describe(&self) -> String {
        SyncBackend::describe(&*self.inner)
    }
}
