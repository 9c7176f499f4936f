//! The backend traits: the few atomic primitives a database must give for
//! shylock's locks, in an async form ([`AsyncBackend`]) and a sync form
//! ([`SyncBackend`]).
//!
//! The core's one lock algorithm (waiting, backoff, polling turns, clock
//! offset, renewal, loss detection, cancellation clean-up) drives both forms;
//! a backend only implements these primitives.
//!
//! # The lock record
//!
//! A backend keeps at most one record per lock name with: the **owner** (an
//! [`OwnerId`], or none when free), the **fencing token** of the last grant,
//! the **expiry** ([`Timestamp`] on the backend's clock) and the
//! **releasers**: the owners of its last [`RELEASERS_REMEMBERED`] releases
//! (see [below](#a-released-owner-is-never-granted-again)). A backend that
//! implements the optional primitives also keeps the **grant time** of the
//! holding (set on a grant) and the **audit trail** of the last forced
//! release (the forced owner and token, who forced it, when and why).
//!
//! # Atomicity every backend must guarantee
//!
//! * [`try_acquire`](AsyncBackend::try_acquire) is one atomic step
//!   (linearizable for that name): if the request's owner is among the
//!   record's releasers (a late duplicate of a released owner's request), it
//!   changes nothing and answers [`AcquireOutcome::Busy`] (with any
//!   `expires_at`). Otherwise, if there is no record, or it is free, or
//!   its expiry is at or before *now*, or its owner is the request's owner
//!   (a retry after an unknown outcome), it sets owner := request owner,
//!   expiry := *now* + lease (for the request's own owner: the later of
//!   that and the current expiry, so that a late duplicate of an earlier
//!   request, carrying an older *now*, never shortens a lease), token := a value strictly greater than every
//!   token ever issued for that name (also across deletion of the record by
//!   garbage collection) and answers [`AcquireOutcome::Acquired`]. Otherwise
//!   it changes nothing and answers [`AcquireOutcome::Busy`]. Two calls for one
//!   name must never both be granted while the first grant's expiry is in
//!   the future.
//! * [`renew`](AsyncBackend::renew) is one atomic step: if the record's owner
//!   is the request's owner, it sets expiry := max(expiry, *now* + lease)
//!   (a late renewal never shortens the lease) and answers
//!   [`RenewOutcome::Renewed`]; otherwise it changes nothing and answers
//!   [`RenewOutcome::Lost`]. (A record that expired but was not taken over is
//!   still the owner's: nobody else held the lock in between, so extending it
//!   is safe.)
//! * [`release`](AsyncBackend::release) is one atomic step: if the record's
//!   owner is the request's owner, it makes the record free, adds the owner
//!   to its releasers (dropping the oldest beyond [`RELEASERS_REMEMBERED`])
//!   and answers [`ReleaseOutcome::Released`]; otherwise it changes nothing
//!   and answers [`ReleaseOutcome::NotOwner`]. (A backend may also answer
//!   `Released`, changing nothing else, to an owner among the releasers of a
//!   free record: its own release sent again after the answer was lost;
//!   never to the owner whose holding a
//!   [`force_release`](AsyncBackend::force_release) ended, whose loss must
//!   show.)
//!   Nobody else's holding is ever released.
//! * [`hand_over`](AsyncBackend::hand_over) (optional, see
//!   [`supports_hand_over`](AsyncBackend::supports_hand_over)) is one atomic
//!   step: if the record's owner is the request's `from` (expired or not:
//!   nobody took it in between, as for `renew`) and `to` is not among its
//!   releasers, it sets owner := `to`, token := a value strictly greater than
//!   every token ever issued for that name, expiry := *now* + lease, adds
//!   `from` to the releasers (so that neither a late duplicate of `from`'s
//!   acquisition nor `from`'s renewal or release ever reaches the record
//!   again) and answers [`HandOverOutcome::HandedOver`] with `to`'s grant;
//!   otherwise it changes nothing and answers [`HandOverOutcome::NotOwner`].
//!   It is a release of `from` and an acquisition of `to` in one step, with
//!   no moment in which the lock is free: the core uses it to pass a lock to
//!   a waiter of the same process (the holder's release becomes one
//!   command). A backend that does not implement it keeps the default
//!   (`supports_hand_over` false): the core then releases and acquires.
//! * [`inspect`](AsyncBackend::inspect) reads the record: `Some` only if it is
//!   held and its expiry is after *now*.
//! * [`list`](AsyncBackend::list) reads the records held now (an owner,
//!   and an expiry after *now*), by name (in the backend's string order),
//!   only names starting with the request's `prefix` if given, only names
//!   after its `after` if given, reading at most `limit` records; the
//!   page's `next` is the last name read when `limit` records were read
//!   (more may follow), else `None`. A record the backend cannot read, or
//!   did not write, is never listed as held. Listing is a read: a lock
//!   granted or released while pages are read may be missed or seen, but
//!   paging with `next` lists every name held throughout exactly once.
//! * [`force_release`](AsyncBackend::force_release) is one atomic step (an
//!   administrator's, not a holder's): if the record is held and its
//!   expiry is after *now*, it makes the record free, adds its owner to the
//!   releasers (so that owner's renewals answer `Lost` or
//!   [`RenewOutcome::Forced`], its release `NotOwner`, and its late
//!   acquisitions `Busy`), keeps the audit trail on the record (the forced
//!   owner and token, the request's `by` and `reason`, *now*) and answers
//!   [`ForceReleaseOutcome::Released`] with that owner and token;
//!   otherwise it changes nothing and answers
//!   [`ForceReleaseOutcome::NotHeld`]. The next grant's token is higher,
//!   as for any grant. A renewal by the forced owner should answer
//!   [`RenewOutcome::Forced`] when the record's last forced release names
//!   it (`Lost` is allowed).
//! * [`audit`](AsyncBackend::audit) reads the audit trail of the record's
//!   last forced release, if any, held or free.
//! * [`server_time`](AsyncBackend::server_time) reads the backend's clock.
//!
//! `list`, `force_release` and `audit` are optional: a backend that does
//! not implement them answers a
//! [`BackendErrorKind::Unsupported`](crate::BackendErrorKind::Unsupported)
//! error (the traits' default).
//!
//! *Now* is the request's `now` field for backends whose
//! [`clock`](AsyncBackend::clock) is [`ClockSource::Estimated`] (the core's
//! lower-bound estimate of the server's clock, from
//! [`server_time`](AsyncBackend::server_time) samples and a monotonic local
//! clock), or the backend's own clock read inside the atomic step for
//! [`ClockSource::Server`].
//!
//! # A released owner is never granted again
//!
//! An owner id belongs to one acquisition, and the core sends no
//! acquisition request for an owner after that owner's release. A request
//! of that owner can still *arrive* after its release: sent earlier, held
//! up on its way (a connection that was reset, a queue on the server)
//! while the owner's retry was granted, used and released. Granted, it
//! would leave the lock held by an owner nobody speaks for, until its lease
//! ends. That costs liveness (a lease nobody holds), never safety, so a
//! bounded memory is enough: a record remembers its last
//! [`RELEASERS_REMEMBERED`] releasers (a backend that deletes or garbage-
//! collects records may forget them with the record, no sooner than a
//! minute after the release). A duplicate lands within its own time limit,
//! so it finds its owner among them unless as many other owners were
//! granted and released the lock in the meantime; it then costs at most one
//! lease nobody holds, as it did before.
//!
//! Every primitive should give up by the request's `deadline` with a
//! [`BackendErrorKind::Timeout`](crate::BackendErrorKind::Timeout) error; the
//! async form is also cut off by the core at the deadline, the sync form
//! relies on the backend for it.

use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

use crate::{BackendError, FencingToken, LockName, OwnerId, Timestamp};

/// How many of a record's last releasers a backend remembers at least, and
/// refuses to grant the record again (see the
/// [module docs](self#a-released-owner-is-never-granted-again)).
pub const RELEASERS_REMEMBERED: usize = 16;

/// A boxed, sendable future (what [`AsyncBackend`] methods return).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Which clock judges expiry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClockSource {
    /// The backend reads its own clock inside each atomic step and ignores
    /// the requests' `now`.
    Server,
    /// The backend uses the request's `now`: the core's estimate of the
    /// server clock (a lower bound), kept from
    /// [`server_time`](AsyncBackend::server_time) samples.
    Estimated,
}

/// Arguments of [`AsyncBackend::try_acquire`] / [`SyncBackend::try_acquire`].
#[derive(Debug, Clone, Copy)]
pub struct AcquireRequest<'a> {
    /// The lock's name.
    pub name: &'a LockName,
    /// The owner id of this acquisition.
    pub owner: &'a OwnerId,
    /// The lease to grant.
    pub lease: Duration,
    /// The core's lower-bound estimate of the server clock now.
    pub now: Timestamp,
    /// Give up by then.
    pub deadline: Option<Instant>,
}

/// A successful acquisition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grant {
    /// The fencing token of this grant.
    pub token: FencingToken,
    /// When the lease ends, on the backend's clock.
    pub expires_at: Timestamp,
}

/// The answer of `try_acquire`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AcquireOutcome {
    /// The caller now holds the lock.
    Acquired(Grant),
    /// Another owner holds a live lease; nothing was changed.
    Busy {
        /// When the current lease ends, if the backend learnt it at no cost.
        expires_at: Option<Timestamp>,
    },
}

/// Arguments of `renew`.
#[derive(Debug, Clone, Copy)]
pub struct RenewRequest<'a> {
    /// The lock's name.
    pub name: &'a LockName,
    /// The owner id of the holding to renew.
    pub owner: &'a OwnerId,
    /// The fencing token of the holding.
    pub token: FencingToken,
    /// The new lease, counted from now.
    pub lease: Duration,
    /// The core's lower-bound estimate of the server clock now.
    pub now: Timestamp,
    /// Give up by then.
    pub deadline: Option<Instant>,
}

/// The answer of `renew`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RenewOutcome {
    /// The lease was extended.
    Renewed {
        /// When the lease now ends, on the backend's clock.
        expires_at: Timestamp,
    },
    /// The record is not the caller's any more; nothing was changed.
    Lost,
    /// The record is not the caller's any more because a
    /// [`force_release`](AsyncBackend::force_release) ended the caller's
    /// holding (the record's last forced release names the caller);
    /// nothing was changed. A backend may answer [`Lost`](Self::Lost)
    /// instead; the core reports this one as
    /// [`LossReason::Forced`](crate::LossReason::Forced).
    Forced,
}

/// Arguments of `release`.
#[derive(Debug, Clone, Copy)]
pub struct ReleaseRequest<'a> {
    /// The lock's name.
    pub name: &'a LockName,
    /// The owner id of the holding to release.
    pub owner: &'a OwnerId,
    /// The fencing token of the holding.
    pub token: FencingToken,
    /// The core's lower-bound estimate of the server clock now.
    pub now: Timestamp,
    /// Give up by then.
    pub deadline: Option<Instant>,
}

/// The answer of `release`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReleaseOutcome {
    /// The caller's holding was released.
    Released,
    /// The record is not the caller's; nothing was changed.
    NotOwner,
}

/// Arguments of `hand_over`: move the lock from `from`'s holding to the new
/// owner `to` in one step (see the [module docs](self)).
#[derive(Debug, Clone, Copy)]
pub struct HandOverRequest<'a> {
    /// The lock's name.
    pub name: &'a LockName,
    /// The owner id of the holding handed over.
    pub from: &'a OwnerId,
    /// The fencing token of that holding.
    pub token: FencingToken,
    /// The owner id of the new holding (a fresh acquisition's).
    pub to: &'a OwnerId,
    /// The new holding's lease, counted from now.
    pub lease: Duration,
    /// The core's lower-bound estimate of the server clock now.
    pub now: Timestamp,
    /// Give up by then.
    pub deadline: Option<Instant>,
}

/// The answer of `hand_over`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandOverOutcome {
    /// The lock is `to`'s now, with this grant; `from` holds nothing.
    HandedOver(Grant),
    /// The record is not `from`'s; nothing was changed.
    NotOwner,
}

/// The error a backend's default [`AsyncBackend::hand_over`] /
/// [`SyncBackend::hand_over`] answers (the core never calls it when
/// `supports_hand_over` is false).
pub fn hand_over_unsupported(describe: &str) -> BackendError {
    BackendError::new(
        crate::BackendErrorKind::Unsupported,
        format!("{describe}: this backend does not implement hand_over"),
    )
}

/// Arguments of `inspect`.
#[derive(Debug, Clone, Copy)]
pub struct InspectRequest<'a> {
    /// The lock's name.
    pub name: &'a LockName,
    /// The core's lower-bound estimate of the server clock now.
    pub now: Timestamp,
    /// Give up by then.
    pub deadline: Option<Instant>,
}

/// A live holding, as read by `inspect`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockRecord {
    /// Who holds it.
    pub owner: OwnerId,
    /// The fencing token of the holding.
    pub token: FencingToken,
    /// When the lease ends, on the backend's clock.
    pub expires_at: Timestamp,
}

/// Arguments of `list`.
#[derive(Debug, Clone, Copy)]
pub struct ListRequest<'a> {
    /// Only names that start with this, if given.
    pub prefix: Option<&'a str>,
    /// Only names after this one (the previous page's
    /// [`next`](ListPage::next)), if given.
    pub after: Option<&'a LockName>,
    /// At most this many records are read for the page (at least 1).
    pub limit: usize,
    /// The core's lower-bound estimate of the server clock now.
    pub now: Timestamp,
    /// Give up by then.
    pub deadline: Option<Instant>,
}

/// A held lock, as `list` reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedLock {
    /// The lock's name.
    pub name: LockName,
    /// Who holds it.
    pub owner: OwnerId,
    /// The fencing token of the holding.
    pub token: FencingToken,
    /// When the lease ends, on the backend's clock.
    pub expires_at: Timestamp,
    /// When the holding was granted, on the backend's clock, if the record
    /// says (records written before grant times were kept do not).
    pub held_since: Option<Timestamp>,
}

/// One page of `list`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListPage {
    /// The held locks of the page, by name.
    pub locks: Vec<ListedLock>,
    /// Where the next page starts (its request's `after`); `None` on the
    /// last page. A page may hold fewer than `limit` locks (records that
    /// are not held, or not readable, are skipped) and still have a next.
    pub next: Option<LockName>,
}

/// Arguments of `force_release`.
#[derive(Debug, Clone, Copy)]
pub struct ForceReleaseRequest<'a> {
    /// The lock's name.
    pub name: &'a LockName,
    /// Who forces the release (a person or a program), kept on the record.
    pub by: &'a str,
    /// Why, kept on the record.
    pub reason: &'a str,
    /// The core's lower-bound estimate of the server clock now.
    pub now: Timestamp,
    /// Give up by then.
    pub deadline: Option<Instant>,
}

/// The answer of `force_release`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ForceReleaseOutcome {
    /// The holding was ended; the record is free.
    Released {
        /// The owner whose holding was ended.
        owner: OwnerId,
        /// The fencing token of that holding.
        token: FencingToken,
    },
    /// Nobody held the lock (free, expired or no record); nothing changed.
    NotHeld,
}

/// Arguments of `audit`.
#[derive(Debug, Clone, Copy)]
pub struct AuditRequest<'a> {
    /// The lock's name.
    pub name: &'a LockName,
    /// Give up by then.
    pub deadline: Option<Instant>,
}

/// The audit trail of the last forced release of a lock, as `audit` reads
/// it from the record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForcedRelease {
    /// The owner whose holding was ended.
    pub owner: OwnerId,
    /// The fencing token of that holding.
    pub token: FencingToken,
    /// Who forced it.
    pub by: String,
    /// When, on the backend's clock.
    pub at: Timestamp,
    /// Why.
    pub reason: String,
}

/// The error of a primitive a backend does not implement (`list`,
/// `force_release`, `audit` by default): kind
/// [`Unsupported`](crate::BackendErrorKind::Unsupported).
pub fn unsupported(primitive: &str, backend: &str) -> BackendError {
    BackendError::new(
        crate::BackendErrorKind::Unsupported,
        format!("{backend} does not implement `{primitive}`"),
    )
}

/// The async form of a backend. See the [module docs](self) for the
/// atomicity each method must guarantee.
pub trait AsyncBackend: Send + Sync + 'static {
    /// Acquire the lock if it is free, expired or already the caller's.
    fn try_acquire<'a>(
        &'a self,
        req: AcquireRequest<'a>,
    ) -> BoxFuture<'a, Result<AcquireOutcome, BackendError>>;

    /// Extend the caller's lease if the record is still the caller's.
    fn renew<'a>(
        &'a self,
        req: RenewRequest<'a>,
    ) -> BoxFuture<'a, Result<RenewOutcome, BackendError>>;

    /// Release the caller's holding, and nobody else's.
    fn release<'a>(
        &'a self,
        req: ReleaseRequest<'a>,
    ) -> BoxFuture<'a, Result<ReleaseOutcome, BackendError>>;

    /// Hand the lock from `req.from`'s holding to `req.to` in one atomic
    /// step (see the [module docs](self)). Called only if
    /// [`supports_hand_over`](Self::supports_hand_over) is true; the default
    /// answers an error ([`hand_over_unsupported`]).
    fn hand_over<'a>(
        &'a self,
        req: HandOverRequest<'a>,
    ) -> BoxFuture<'a, Result<HandOverOutcome, BackendError>> {
        let _ = req;
        let error = hand_over_unsupported(&self.describe());
        Box::pin(std::future::ready(Err(error)))
    }

    /// Whether [`hand_over`](Self::hand_over) is implemented. Default:
    /// false (the core then releases and acquires instead).
    fn supports_hand_over(&self) -> bool {
        false
    }

    /// Read the live holding of a name, if any.
    fn inspect<'a>(
        &'a self,
        req: InspectRequest<'a>,
    ) -> BoxFuture<'a, Result<Option<LockRecord>, BackendError>>;

    /// Read the held locks, by name, one page at a time. Default: an
    /// [`Unsupported`](crate::BackendErrorKind::Unsupported) error.
    fn list<'a>(&'a self, req: ListRequest<'a>) -> BoxFuture<'a, Result<ListPage, BackendError>> {
        let _ = req;
        Box::pin(std::future::ready(Err(unsupported(
            "list",
            &self.describe(),
        ))))
    }

    /// End the holding of a lock whatever its owner, keeping who, when and
    /// why on the record. Default: an
    /// [`Unsupported`](crate::BackendErrorKind::Unsupported) error.
    fn force_release<'a>(
        &'a self,
        req: ForceReleaseRequest<'a>,
    ) -> BoxFuture<'a, Result<ForceReleaseOutcome, BackendError>> {
        let _ = req;
        Box::pin(std::future::ready(Err(unsupported(
            "force_release",
            &self.describe(),
        ))))
    }

    /// Read the audit trail of a lock's last forced release, if any.
    /// Default: an [`Unsupported`](crate::BackendErrorKind::Unsupported)
    /// error.
    fn audit<'a>(
        &'a self,
        req: AuditRequest<'a>,
    ) -> BoxFuture<'a, Result<Option<ForcedRelease>, BackendError>> {
        let _ = req;
        Box::pin(std::future::ready(Err(unsupported(
            "audit",
            &self.describe(),
        ))))
    }

    /// Read the server's clock.
    fn server_time(
        &self,
        deadline: Option<Instant>,
    ) -> BoxFuture<'_, Result<Timestamp, BackendError>>;

    /// Which clock judges expiry.
    fn clock(&self) -> ClockSource {
        ClockSource::Estimated
    }

    /// How long after it was sent an acquire request left unanswered (its
    /// client gave up) can still be granted by the server, if the backend
    /// bounds it (a server-side lock wait bound plus the query's run time).
    /// When set, the clean-up after an acquisition given up with an
    /// unknown outcome releases again once that time has passed, in case
    /// the acquire committed after the first clean-up release. Default:
    /// `None`, no bound known, one clean-up release.
    fn max_commit_delay(&self) -> Option<Duration> {
        None
    }

    /// A short description for logs, such as `mongodb projectdb.shylock`.
    fn describe(&self) -> String;
}

/// The sync form of a backend: the same primitives and guarantees as
/// [`AsyncBackend`], as blocking calls.
pub trait SyncBackend: Send + Sync + 'static {
    /// Acquire the lock if it is free, expired or already the caller's.
    fn try_acquire(&self, req: AcquireRequest<'_>) -> Result<AcquireOutcome, BackendError>;

    /// Extend the caller's lease if the record is still the caller's.
    fn renew(&self, req: RenewRequest<'_>) -> Result<RenewOutcome, BackendError>;

    /// Release the caller's holding, and nobody else's.
    fn release(&self, req: ReleaseRequest<'_>) -> Result<ReleaseOutcome, BackendError>;

    /// Hand the lock from `req.from`'s holding to `req.to` in one atomic
    /// step (see the [module docs](self)). Called only if
    /// [`supports_hand_over`](Self::supports_hand_over) is true; the default
    /// answers an error ([`hand_over_unsupported`]).
    fn hand_over(&self, req: HandOverRequest<'_>) -> Result<HandOverOutcome, BackendError> {
        let _ = req;
        Err(hand_over_unsupported(&self.describe()))
    }

    /// Whether [`hand_over`](Self::hand_over) is implemented. Default:
    /// false (the core then releases and acquires instead).
    fn supports_hand_over(&self) -> bool {
        false
    }

    /// Read the live holding of a name, if any.
    fn inspect(&self, req: InspectRequest<'_>) -> Result<Option<LockRecord>, BackendError>;

    /// Read the held locks, by name, one page at a time. Default: an
    /// [`Unsupported`](crate::BackendErrorKind::Unsupported) error.
    fn list(&self, req: ListRequest<'_>) -> Result<ListPage, BackendError> {
        let _ = req;
        Err(unsupported("list", &self.describe()))
    }

    /// End the holding of a lock whatever its owner, keeping who, when and
    /// why on the record. Default: an
    /// [`Unsupported`](crate::BackendErrorKind::Unsupported) error.
    fn force_release(
        &self,
        req: ForceReleaseRequest<'_>,
    ) -> Result<ForceReleaseOutcome, BackendError> {
        let _ = req;
        Err(unsupported("force_release", &self.describe()))
    }

    /// Read the audit trail of a lock's last forced release, if any.
    /// Default: an [`Unsupported`](crate::BackendErrorKind::Unsupported)
    /// error.
    fn audit(&self, req: AuditRequest<'_>) -> Result<Option<ForcedRelease>, BackendError> {
        let _ = req;
        Err(unsupported("audit", &self.describe()))
    }

    /// Read the server's clock.
    fn server_time(&self, deadline: Option<Instant>) -> Result<Timestamp, BackendError>;

    /// Which clock judges expiry.
    fn clock(&self) -> ClockSource {
        ClockSource::Estimated
    }

    /// How long after it was sent an acquire request left unanswered (its
    /// client gave up) can still be granted by the server, if the backend
    /// bounds it (a server-side lock wait bound plus the query's run time).
    /// When set, the clean-up after an acquisition given up with an
    /// unknown outcome releases again once that time has passed, in case
    /// the acquire committed after the first clean-up release. Default:
    /// `None`, no bound known, one clean-up release.
    fn max_commit_delay(&self) -> Option<Duration> {
        None
    }

    /// A short description for logs, such as `mongodb projectdb.shylock`.
    fn describe(&self) -> String;
}

/// `impl AsyncBackend for $backend` by handing every call to the async
/// backend that `|$this| $to` reaches from it: for a backend type that is
/// a thin public face over an inner implementation (the MongoDB and
/// ArangoDB backends are their crate's one async core).
///
/// ```
/// use std::sync::Arc;
/// use shylock_core::MemoryBackend;
///
/// /// A backend that is a memory backend under another name.
/// struct Renamed {
///     inner: Arc<MemoryBackend>,
/// }
/// shylock_core::forward_async_backend!(Renamed, |this| &*this.inner);
///
/// let handle = shylock_core::Backend::from_async(Renamed { inner: Arc::default() });
/// assert_eq!(handle.describe(), "memory");
/// ```
#[macro_export]
macro_rules! forward_async_backend {
    ($backend:ty, |$this:ident| $to:expr) => {
        impl $crate::backend::AsyncBackend for $backend {
            fn try_acquire<'a>(
                &'a self,
                req: $crate::backend::AcquireRequest<'a>,
            ) -> $crate::backend::BoxFuture<
                'a,
                ::std::result::Result<$crate::backend::AcquireOutcome, $crate::BackendError>,
            > {
                let $this = self;
                $crate::backend::AsyncBackend::try_acquire($to, req)
            }

            fn renew<'a>(
                &'a self,
                req: $crate::backend::RenewRequest<'a>,
            ) -> $crate::backend::BoxFuture<
                'a,
                ::std::result::Result<$crate::backend::RenewOutcome, $crate::BackendError>,
            > {
                let $this = self;
                $crate::backend::AsyncBackend::renew($to, req)
            }

            fn release<'a>(
                &'a self,
                req: $crate::backend::ReleaseRequest<'a>,
            ) -> $crate::backend::BoxFuture<
                'a,
                ::std::result::Result<$crate::backend::ReleaseOutcome, $crate::BackendError>,
            > {
                let $this = self;
                $crate::backend::AsyncBackend::release($to, req)
            }

            fn hand_over<'a>(
                &'a self,
                req: $crate::backend::HandOverRequest<'a>,
            ) -> $crate::backend::BoxFuture<
                'a,
                ::std::result::Result<$crate::backend::HandOverOutcome, $crate::BackendError>,
            > {
                let $this = self;
                $crate::backend::AsyncBackend::hand_over($to, req)
            }

            fn supports_hand_over(&self) -> bool {
                let $this = self;
                $crate::backend::AsyncBackend::supports_hand_over($to)
            }

            fn inspect<'a>(
                &'a self,
                req: $crate::backend::InspectRequest<'a>,
            ) -> $crate::backend::BoxFuture<
                'a,
                ::std::result::Result<
                    ::std::option::Option<$crate::backend::LockRecord>,
                    $crate::BackendError,
                >,
            > {
                let $this = self;
                $crate::backend::AsyncBackend::inspect($to, req)
            }

            fn list<'a>(
                &'a self,
                req: $crate::backend::ListRequest<'a>,
            ) -> $crate::backend::BoxFuture<
                'a,
                ::std::result::Result<$crate::backend::ListPage, $crate::BackendError>,
            > {
                let $this = self;
                $crate::backend::AsyncBackend::list($to, req)
            }

            fn force_release<'a>(
                &'a self,
                req: $crate::backend::ForceReleaseRequest<'a>,
            ) -> $crate::backend::BoxFuture<
                'a,
                ::std::result::Result<$crate::backend::ForceReleaseOutcome, $crate::BackendError>,
            > {
                let $this = self;
                $crate::backend::AsyncBackend::force_release($to, req)
            }

            fn audit<'a>(
                &'a self,
                req: $crate::backend::AuditRequest<'a>,
            ) -> $crate::backend::BoxFuture<
                'a,
                ::std::result::Result<
                    ::std::option::Option<$crate::backend::ForcedRelease>,
                    $crate::BackendError,
                >,
            > {
                let $this = self;
                $crate::backend::AsyncBackend::audit($to, req)
            }

            fn server_time(
                &self,
                deadline: ::std::option::Option<::std::time::Instant>,
            ) -> $crate::backend::BoxFuture<
                '_,
                ::std::result::Result<$crate::Timestamp, $crate::BackendError>,
            > {
                let $this = self;
                $crate::backend::AsyncBackend::server_time($to, deadline)
            }

            fn clock(&self) -> $crate::backend::ClockSource {
                let $this = self;
                $crate::backend::AsyncBackend::clock($to)
            }

            fn max_commit_delay(&self) -> ::std::option::Option<::std::time::Duration> {
                let $this = self;
                $crate::backend::AsyncBackend::max_commit_delay($to)
            }

            fn describe(&self) -> ::std::string::String {
                let $this = self;
                $crate::backend::AsyncBackend::describe($to)
            }
        }
    };
}

/// `impl SyncBackend for $backend` by handing every call to the sync
/// backend that `|$this| $to` reaches from it, such as the
/// [`SyncOverAsync`](crate::bridge::SyncOverAsync) form of its async core.
///
/// ```
/// use std::sync::Arc;
/// use shylock_core::bridge::SyncOverAsync;
/// use shylock_core::MemoryBackend;
///
/// /// The blocking face of an async implementation.
/// struct Blocking {
///     sync_form: SyncOverAsync,
/// }
/// shylock_core::forward_sync_backend!(Blocking, |this| &this.sync_form);
///
/// let inner = Arc::new(MemoryBackend::new());
/// let handle = shylock_core::Backend::from_sync(Blocking { sync_form: SyncOverAsync::new(inner) });
/// assert_eq!(handle.describe(), "memory");
/// ```
#[macro_export]
macro_rules! forward_sync_backend {
    ($backend:ty, |$this:ident| $to:expr) => {
        impl $crate::backend::SyncBackend for $backend {
            fn try_acquire(
                &self,
                req: $crate::backend::AcquireRequest<'_>,
            ) -> ::std::result::Result<$crate::backend::AcquireOutcome, $crate::BackendError> {
                let $this = self;
                $crate::backend::SyncBackend::try_acquire($to, req)
            }

            fn renew(
                &self,
                req: $crate::backend::RenewRequest<'_>,
            ) -> ::std::result::Result<$crate::backend::RenewOutcome, $crate::BackendError> {
                let $this = self;
                $crate::backend::SyncBackend::renew($to, req)
            }

            fn release(
                &self,
                req: $crate::backend::ReleaseRequest<'_>,
            ) -> ::std::result::Result<$crate::backend::ReleaseOutcome, $crate::BackendError> {
                let $this = self;
                $crate::backend::SyncBackend::release($to, req)
            }

            fn hand_over(
                &self,
                req: $crate::backend::HandOverRequest<'_>,
            ) -> ::std::result::Result<$crate::backend::HandOverOutcome, $crate::BackendError> {
                let $this = self;
                $crate::backend::SyncBackend::hand_over($to, req)
            }

            fn supports_hand_over(&self) -> bool {
                let $this = self;
                $crate::backend::SyncBackend::supports_hand_over($to)
            }

            fn inspect(
                &self,
                req: $crate::backend::InspectRequest<'_>,
            ) -> ::std::result::Result<
                ::std::option::Option<$crate::backend::LockRecord>,
                $crate::BackendError,
            > {
                let $this = self;
                $crate::backend::SyncBackend::inspect($to, req)
            }

            fn list(
                &self,
                req: $crate::backend::ListRequest<'_>,
            ) -> ::std::result::Result<$crate::backend::ListPage, $crate::BackendError> {
                let $this = self;
                $crate::backend::SyncBackend::list($to, req)
            }

            fn force_release(
                &self,
                req: $crate::backend::ForceReleaseRequest<'_>,
            ) -> ::std::result::Result<$crate::backend::ForceReleaseOutcome, $crate::BackendError>
            {
                let $this = self;
                $crate::backend::SyncBackend::force_release($to, req)
            }

            fn audit(
                &self,
                req: $crate::backend::AuditRequest<'_>,
            ) -> ::std::result::Result<
                ::std::option::Option<$crate::backend::ForcedRelease>,
                $crate::BackendError,
            > {
                let $this = self;
                $crate::backend::SyncBackend::audit($to, req)
            }

            fn server_time(
                &self,
                deadline: ::std::option::Option<::std::time::Instant>,
            ) -> ::std::result::Result<$crate::Timestamp, $crate::BackendError> {
                let $this = self;
                $crate::backend::SyncBackend::server_time($to, deadline)
            }

            fn clock(&self) -> $crate::backend::ClockSource {
                let $this = self;
                $crate::backend::SyncBackend::clock($to)
            }

            fn max_commit_delay(&self) -> ::std::option::Option<::std::time::Duration> {
                let $this = self;
                $crate::backend::SyncBackend::max_commit_delay($to)
            }

            fn describe(&self) -> ::std::string::String {
                let $this = self;
                $crate::backend::SyncBackend::describe($to)
            }
        }
    };
}
