//! The in-memory backend: a first-class backend for one process (tests,
//! examples, single-process programs), in both forms.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::backend::{
    AcquireOutcome, AcquireRequest, AsyncBackend, AuditRequest, BoxFuture, ClockSource,
    ForceReleaseOutcome, ForceReleaseRequest, ForcedRelease, Grant, HandOverOutcome,
    HandOverRequest, InspectRequest, ListPage, ListRequest, ListedLock, LockRecord,
    RELEASERS_REMEMBERED, ReleaseOutcome, ReleaseRequest, RenewOutcome, RenewRequest, SyncBackend,
};
use crate::{Backend, BackendError, FencingToken, LockName, OwnerId, Timestamp};

/// Sweep old records every this many acquisitions.
const SWEEP_EVERY: u64 = 4096;

/// A sweep deletes the records whose lease ended (or that were released) at
/// least this long ago; until then a released record remembers who released
/// it.
const SWEEP_GRACE: Duration = Duration::from_secs(60);

#[derive(Debug)]
struct Record {
    /// The holder; `None` once released.
    owner: Option<OwnerId>,
    token: u64,
    /// The end of the lease (of the last one, or the release time).
    expires_at: Timestamp,
    /// The owners of the last releases, oldest first, at most
    /// [`RELEASERS_REMEMBERED`]: never granted this record again.
    released_by: VecDeque<OwnerId>,
    /// When the holding was granted.
    acquired_at: Timestamp,
    /// The audit trail of the last forced release.
    forced: Option<ForcedRelease>,
}

#[derive(Debug, Default)]
struct State {
    /// By name, so that `list` reads them in order.
    records: BTreeMap<LockName, Record>,
    /// The last token issued, for any name: tokens rise per name even
    /// though records are swept.
    last_token: u64,
}

#[derive(Debug)]
struct Inner {
    state: Mutex<State>,
    epoch: Timestamp,
    started: Instant,
}

/// Locks held in this process's memory.
///
/// Its clock is monotonic (the wall clock when it was made, advanced by
/// [`Instant`]), so expiry is immune to wall-clock jumps. Each primitive is
/// one critical section under a mutex, which gives the atomicity the
/// [backend traits](crate::backend) ask for. A released record is kept (free)
/// with the owners of its last releases, so that a late duplicate of a
/// released owner's acquisition is refused; records whose lease ended or that
/// were released a minute ago are swept; fencing tokens come from one counter
/// for all names, so they still rise for every name.
///
/// Clones share the same locks.
///
/// ```
/// use shylock_core::{configure, Lock, MemoryBackend};
/// configure(MemoryBackend::new());
/// let guard = Lock::new("memory-doc").acquire()?;
/// assert!(guard.token().get() >= 1);
/// # Ok::<(), shylock_core::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct MemoryBackend {
    inner: Arc<Inner>,
}

impl Default for MemoryBackend {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryBackend {
    /// A new, empty set of locks.
    pub fn new() -> Self {
        MemoryBackend {
            inner: Arc::new(Inner {
                state: Mutex::default(),
                epoch: Timestamp::local_now(),
                started: Instant::now(),
            }),
        }
    }

    /// How many lock records are kept now (held, or released or expired but
    /// not yet swept).
    pub fn records(&self) -> usize {
        self.state().records.len()
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn now(&self) -> Timestamp {
        self.inner
            .epoch
            .saturating_add(self.inner.started.elapsed())
    }

    fn do_acquire(&self, req: AcquireRequest<'_>) -> AcquireOutcome {
        let now = self.now();
        let mut state = self.state();
        let mut expires_at = now.saturating_add(req.lease);
        if let Some(rec) = state.records.get(req.name) {
            let live = rec.owner.is_some() && rec.expires_at > now;
            // A late duplicate of a released owner's request: that owner is
            // gone and must never hold the lock again.
            if rec.released_by.contains(req.owner) {
                return AcquireOutcome::Busy {
                    expires_at: live.then_some(rec.expires_at),
                };
            }
            match &rec.owner {
                Some(owner) if owner == req.owner => expires_at = expires_at.max(rec.expires_at),
                Some(_) if live => {
                    return AcquireOutcome::Busy {
                        expires_at: Some(rec.expires_at),
                    };
                }
                _ => {}
            }
        }
        state.last_token += 1;
        let token = state.last_token;
        let owner = Some(req.owner.clone());
        match state.records.get_mut(req.name) {
            Some(rec) => {
                if rec.owner != owner {
                    rec.acquired_at = now;
                }
                rec.owner = owner;
                rec.token = token;
                rec.expires_at = expires_at;
            }
            None => {
                state.records.insert(
                    req.name.clone(),
                    Record {
                        owner,
                        token,
                        expires_at,
                        released_by: VecDeque::new(),
                        acquired_at: now,
                        forced: None,
                    },
                );
            }
        }
        if token.is_multiple_of(SWEEP_EVERY) {
            state
                .records
                .retain(|_, rec| rec.expires_at.saturating_add(SWEEP_GRACE) > now);
        }
        AcquireOutcome::Acquired(Grant {
            token: FencingToken(token),
            expires_at,
        })
    }

    fn do_renew(&self, req: RenewRequest<'_>) -> RenewOutcome {
        let now = self.now();
        match self.state().records.get_mut(req.name) {
            Some(rec) if rec.owner.as_ref() == Some(req.owner) => {
                // A renewal never shortens the lease (a late or shorter one).
                rec.expires_at = rec.expires_at.max(now.saturating_add(req.lease));
                RenewOutcome::Renewed {
                    expires_at: rec.expires_at,
                }
            }
            Some(rec) if rec.forced.as_ref().is_some_and(|f| &f.owner == req.owner) => {
                RenewOutcome::Forced
            }
            _ => RenewOutcome::Lost,
        }
    }

    fn do_release(&self, req: ReleaseRequest<'_>) -> ReleaseOutcome {
        let now = self.now();
        match self.state().records.get_mut(req.name) {
            Some(rec) if rec.owner.as_ref() == Some(req.owner) => {
                rec.owner = None;
                rec.expires_at = now;
                if rec.released_by.len() >= RELEASERS_REMEMBERED {
                    rec.released_by.pop_front();
                }
                rec.released_by.push_back(req.owner.clone());
                ReleaseOutcome::Released
            }
            _ => ReleaseOutcome::NotOwner,
        }
    }

    fn do_hand_over(&self, req: HandOverRequest<'_>) -> HandOverOutcome {
        let now = self.now();
        let mut state = self.state();
        let state = &mut *state;
        match state.records.get_mut(req.name) {
            Some(rec)
                if rec.owner.as_ref() == Some(req.from) && !rec.released_by.contains(req.to) =>
            {
                state.last_token += 1;
                rec.token = state.last_token;
                rec.owner = Some(req.to.clone());
                rec.expires_at = now.saturating_add(req.lease);
                rec.acquired_at = now;
                if rec.released_by.len() >= RELEASERS_REMEMBERED {
                    rec.released_by.pop_front();
                }
                rec.released_by.push_back(req.from.clone());
                HandOverOutcome::HandedOver(Grant {
                    token: FencingToken(rec.token),
                    expires_at: rec.expires_at,
                })
            }
            _ => HandOverOutcome::NotOwner,
        }
    }

    fn do_inspect(&self, req: InspectRequest<'_>) -> Option<LockRecord> {
        let now = self.now();
        self.state()
            .records
            .get(req.name)
            .filter(|rec| rec.expires_at > now)
            .and_then(|rec| {
                Some(LockRecord {
                    owner: rec.owner.clone()?,
                    token: FencingToken(rec.token),
                    expires_at: rec.expires_at,
                })
            })
    }

    fn do_list(&self, req: ListRequest<'_>) -> ListPage {
        let now = self.now();
        let limit = req.limit.max(1);
        let state = self.state();
        let mut page = ListPage::default();
        let names = state.records.iter().filter(|(name, _)| {
            req.after.is_none_or(|a| name.as_str() > a.as_str())
                && req.prefix.is_none_or(|p| name.as_str().starts_with(p))
        });
        for (read, (name, rec)) in names.take(limit).enumerate() {
            if read + 1 == limit {
                page.next = Some(name.clone());
            }
            let Some(owner) = rec.owner.clone().filter(|_| rec.expires_at > now) else {
                continue;
            };
            page.locks.push(ListedLock {
                name: name.clone(),
                owner,
                token: FencingToken(rec.token),
                expires_at: rec.expires_at,
                held_since: Some(rec.acquired_at),
            });
        }
        page
    }

    fn do_force_release(&self, req: ForceReleaseRequest<'_>) -> ForceReleaseOutcome {
        let now = self.now();
        let mut state = self.state();
        let Some(rec) = state.records.get_mut(req.name) else {
            return ForceReleaseOutcome::NotHeld;
        };
        let Some(owner) = rec.owner.take_if(|_| rec.expires_at > now) else {
            return ForceReleaseOutcome::NotHeld;
        };
        rec.expires_at = now;
        if rec.released_by.len() >= RELEASERS_REMEMBERED {
            rec.released_by.pop_front();
        }
        rec.released_by.push_back(owner.clone());
        let token = FencingToken(rec.token);
        rec.forced = Some(ForcedRelease {
            owner: owner.clone(),
            token,
            by: req.by.to_owned(),
            at: now,
            reason: req.reason.to_owned(),
        });
        ForceReleaseOutcome::Released { owner, token }
    }

    fn do_audit(&self, req: AuditRequest<'_>) -> Option<ForcedRelease> {
        self.state()
            .records
            .get(req.name)
            .and_then(|rec| rec.forced.clone())
    }
}

impl SyncBackend for MemoryBackend {
    fn try_acquire(&self, req: AcquireRequest<'_>) -> Result<AcquireOutcome, BackendError> {
        Ok(self.do_acquire(req))
    }

    fn renew(&self, req: RenewRequest<'_>) -> Result<RenewOutcome, BackendError> {
        Ok(self.do_renew(req))
    }

    fn release(&self, req: ReleaseRequest<'_>) -> Result<ReleaseOutcome, BackendError> {
        Ok(self.do_release(req))
    }

    fn hand_over(&self, req: HandOverRequest<'_>) -> Result<HandOverOutcome, BackendError> {
        Ok(self.do_hand_over(req))
    }

    fn supports_hand_over(&self) -> bool {
        true
    }

    fn inspect(&self, req: InspectRequest<'_>) -> Result<Option<LockRecord>, BackendError> {
        Ok(self.do_inspect(req))
    }

    fn list(&self, req: ListRequest<'_>) -> Result<ListPage, BackendError> {
        Ok(self.do_list(req))
    }

    fn force_release(
        &self,
        req: ForceReleaseRequest<'_>,
    ) -> Result<ForceReleaseOutcome, BackendError> {
        Ok(self.do_force_release(req))
    }

    fn audit(&self, req: AuditRequest<'_>) -> Result<Option<ForcedRelease>, BackendError> {
        Ok(self.do_audit(req))
    }

    fn server_time(&self, _deadline: Option<Instant>) -> Result<Timestamp, BackendError> {
        Ok(self.now())
    }

    fn clock(&self) -> ClockSource {
        ClockSource::Server
    }

    fn describe(&self) -> String {
        "memory".into()
    }
}

/// The async form answers at once with the sync form's result.
impl AsyncBackend for MemoryBackend {
    fn try_acquire<'a>(
        &'a self,
        req: AcquireRequest<'a>,
    ) -> BoxFuture<'a, Result<AcquireOutcome, BackendError>> {
        Box::pin(std::future::ready(SyncBackend::try_acquire(self, req)))
    }

    fn renew<'a>(
        &'a self,
        req: RenewRequest<'a>,
    ) -> BoxFuture<'a, Result<RenewOutcome, BackendError>> {
        Box::pin(std::future::ready(SyncBackend::renew(self, req)))
    }

    fn release<'a>(
        &'a self,
        req: ReleaseRequest<'a>,
    ) -> BoxFuture<'a, Result<ReleaseOutcome, BackendError>> {
        Box::pin(std::future::ready(SyncBackend::release(self, req)))
    }

    fn hand_over<'a>(
        &'a self,
        req: HandOverRequest<'a>,
    ) -> BoxFuture<'a, Result<HandOverOutcome, BackendError>> {
        Box::pin(std::future::ready(SyncBackend::hand_over(self, req)))
    }

    fn supports_hand_over(&self) -> bool {
        true
    }

    fn inspect<'a>(
        &'a self,
        req: InspectRequest<'a>,
    ) -> BoxFuture<'a, Result<Option<LockRecord>, BackendError>> {
        Box::pin(std::future::ready(SyncBackend::inspect(self, req)))
    }

    fn list<'a>(&'a self, req: ListRequest<'a>) -> BoxFuture<'a, Result<ListPage, BackendError>> {
        Box::pin(std::future::ready(SyncBackend::list(self, req)))
    }

    fn force_release<'a>(
        &'a self,
        req: ForceReleaseRequest<'a>,
    ) -> BoxFuture<'a, Result<ForceReleaseOutcome, BackendError>> {
        Box::pin(std::future::ready(SyncBackend::force_release(self, req)))
    }

    fn audit<'a>(
        &'a self,
        req: AuditRequest<'a>,
    ) -> BoxFuture<'a, Result<Option<ForcedRelease>, BackendError>> {
        Box::pin(std::future::ready(SyncBackend::audit(self, req)))
    }

    fn server_time(
        &self,
        deadline: Option<Instant>,
    ) -> BoxFuture<'_, Result<Timestamp, BackendError>> {
        Box::pin(std::future::ready(SyncBackend::server_time(self, deadline)))
    }

    fn clock(&self) -> ClockSource {
        ClockSource::Server
    }

    fn describe(&self) -> String {
        "memory".into()
    }
}

impl From<MemoryBackend> for Backend {
    fn from(backend: MemoryBackend) -> Self {
        Backend::from_both(backend)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn acquire(
        b: &MemoryBackend,
        name: &LockName,
        owner: &OwnerId,
        now: Timestamp,
    ) -> AcquireOutcome {
        SyncBackend::try_acquire(
            b,
            AcquireRequest {
                name,
                owner,
                lease: Duration::from_secs(30),
                now,
                deadline: None,
            },
        )
        .expect("acquire")
    }

    fn release(b: &MemoryBackend, name: &LockName, owner: &OwnerId) -> ReleaseOutcome {
        SyncBackend::release(
            b,
            ReleaseRequest {
                name,
                owner,
                token: FencingToken(0),
                now: b.now(),
                deadline: None,
            },
        )
        .expect("release")
    }

    /// Issue 18 item 7: a late duplicate of an owner's acquisition that lands
    /// after the owner released is not granted, and the record stays free
    /// for the next owner, also when another owner acquired and released in
    /// between.
    #[test]
    fn late_duplicate_of_a_released_owner_is_not_granted() {
        let b = MemoryBackend::new();
        let name = LockName::new("regrant").expect("name");
        let (o, q, r) = (OwnerId::random(), OwnerId::random(), OwnerId::random());
        let t0 = b.now();
        assert!(matches!(
            acquire(&b, &name, &o, t0),
            AcquireOutcome::Acquired(_)
        ));
        assert_eq!(release(&b, &name, &o), ReleaseOutcome::Released);
        let late = acquire(&b, &name, &o, t0);
        assert!(
            matches!(late, AcquireOutcome::Busy { .. }),
            "the late duplicate of a released owner's acquisition was granted: {late:?}"
        );
        let gq = acquire(&b, &name, &q, b.now());
        assert!(matches!(gq, AcquireOutcome::Acquired(_)), "{gq:?}");
        assert_eq!(release(&b, &name, &q), ReleaseOutcome::Released);
        let late = acquire(&b, &name, &o, t0);
        assert!(
            matches!(late, AcquireOutcome::Busy { .. }),
            "the late duplicate of a released owner's acquisition was granted after another owner released: {late:?}"
        );
        let gr = acquire(&b, &name, &r, b.now());
        assert!(matches!(gr, AcquireOutcome::Acquired(_)), "{gr:?}");
        assert_eq!(release(&b, &name, &r), ReleaseOutcome::Released);
    }
}
