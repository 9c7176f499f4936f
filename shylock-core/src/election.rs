//! Leader election on a lock: [`Election`] (blocking) and [`AsyncElection`].
//!
//! A campaign is an acquisition of the election's lock that waits until it
//! is granted; the leadership is the holding, renewed while it lives, and
//! its fencing token is the **term**: it rises with every new leadership,
//! so a resource that refuses lower terms than it has seen refuses a
//! deposed leader. Observers read the lock's record at an interval
//! ([`GenericElection::poll_interval`]) without campaigning.
//!
//! **How fast a change is seen.** An observer polls once per interval
//! (default [`DEFAULT_POLL_INTERVAL`]): a resignation, and the next
//! leader's grant (a campaigner polls the lock as any waiter: within about
//! half of its backoff's `max`, 25 ms by default), are seen within one
//! interval. A leader that crashes (or loses its connection) keeps its
//! lease until it runs out on the server: the next leader is elected
//! within the lease (counted from its last renewal) and the backoff, and
//! seen within one interval more.
//!
//! **What an observer costs.** One `inspect` of the lock's record per
//! interval (MongoDB: a `find` by `_id`; ArangoDB: a document read), plus,
//! for backends that estimate the server's clock, a clock read when the
//! handle's estimate is stale (shared by every lock of the handle). A
//! campaigner costs what a waiting acquisition costs; a leader, one
//! renewal per third of the lease.
//!
//! **The leader's identity.** The lock record carries no more than the
//! owner id (random, new for each campaign) and the token: observers learn
//! the leader as its [`OwnerId`] and term. A leader that wants to be known
//! by name publishes its [`owner`](Holding::owner) with its own identity
//! where its peers look (a log line, a service registry).
//!
//! **What an observer sees.** Each state that lasts longer than the poll
//! interval: a new leader (owner or term differs from the last one seen) or
//! a vacancy. A leadership shorter than the interval can be missed; the
//! terms seen only ever rise.

use std::ops::Deref;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::exec::Exec;
use crate::lease::Holding;
use crate::lock::{Async, AsyncLock, AsyncLockGuard, Blocking, GenericLock, Lock, LockGuard};
use crate::{
    Backend, Error, FencingToken, LockName, LockOptions, LossReason, OwnerId, Renewal, Timestamp,
    rt,
};

/// How often an observer reads the lock's record, unless set: 1 s.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(1);

/// The shortest poll interval accepted: 10 ms.
pub const MIN_POLL_INTERVAL: Duration = Duration::from_millis(10);

/// A leader election on one lock name, with the lock's options. Use it
/// through the aliases [`Election`] (blocking) and [`AsyncElection`]
/// (async); the builder methods are shared.
#[derive(Debug, Clone)]
pub struct GenericElection<F> {
    lock: GenericLock<F>,
    poll: Duration,
}

/// A blocking leader election: [`campaign`](GenericElection::campaign)
/// waits on the calling thread; [`observe`](GenericElection::observe)
/// gives an iterator of leader changes.
///
/// ```
/// use std::time::Duration;
/// use shylock_core::{Backend, Election, MemoryBackend};
/// let backend = Backend::from(MemoryBackend::new());
/// let election = Election::with_backend("scheduler", &backend)
///     .lease(Duration::from_secs(10))
///     .poll_interval(Duration::from_millis(100));
/// let mut changes = election.observe()?;
/// assert!(changes.next().unwrap()?.is_none()); // vacant
///
/// let leadership = election.campaign()?; // waits until leader
/// println!("leading in term {} as {}", leadership.term(), leadership.owner());
/// let seen = changes.next().unwrap()?.expect("a leader");
/// assert_eq!(seen.term, leadership.term());
/// leadership.resign()?;
/// assert!(changes.next().unwrap()?.is_none()); // vacant again
/// # Ok::<(), shylock_core::Error>(())
/// ```
pub type Election = GenericElection<Blocking>;

/// An async leader election: [`campaign`](GenericElection::campaign)`.await`
/// waits to lead; [`observe`](GenericElection::observe) gives an
/// [`AsyncObserver`] of leader changes.
///
/// ```
/// use std::time::Duration;
/// use shylock_core::{AsyncElection, Backend, MemoryBackend};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), shylock_core::Error> {
/// let backend = Backend::from(MemoryBackend::new());
/// let election = AsyncElection::with_backend("scheduler", &backend)
///     .lease(Duration::from_secs(10));
/// let leadership = election.campaign().await?;
/// tokio::select! {
///     _ = tokio::time::sleep(Duration::from_millis(50)) => println!("led a while"), // the leader's work
///     reason = leadership.lost() => println!("deposed: {reason}"),
/// }
/// leadership.resign().await?;
/// # Ok(())
/// # }
/// ```
pub type AsyncElection = GenericElection<Async>;

/// A leader as an observer sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Leader {
    /// The owner id of the leader's campaign (random, new for each one).
    pub owner: OwnerId,
    /// The term: the fencing token of the leadership. Rises with every new
    /// leadership.
    pub term: FencingToken,
    /// When the leader's lease ends unless renewed, on the backend's clock.
    pub expires_at: Timestamp,
}

impl From<crate::LockRecord> for Leader {
    fn from(record: crate::LockRecord) -> Self {
        Leader {
            owner: record.owner,
            term: record.token,
            expires_at: record.expires_at,
        }
    }
}

impl<F> GenericElection<F> {
    /// An election on the default backend (see [`configure`](crate::configure)).
    pub fn new(name: impl Into<String>) -> Self {
        GenericElection {
            lock: GenericLock::new(name),
            poll: DEFAULT_POLL_INTERVAL,
        }
    }

    /// An election on the given backend (as
    /// [`GenericLock::with_backend`]).
    pub fn with_backend<B>(name: impl Into<String>, backend: &B) -> Self
    where
        B: Clone + Into<Backend>,
    {
        GenericElection {
            lock: GenericLock::with_backend(name, backend),
            poll: DEFAULT_POLL_INTERVAL,
        }
    }

    /// The election's name (the name of its lock).
    pub fn name(&self) -> &str {
        self.lock.name()
    }

    /// Replace the lock's options (lease, renewal, backoff of campaigners,
    /// the campaign's time limit as `timeout`).
    #[must_use]
    pub fn options(mut self, opts: LockOptions) -> Self {
        self.lock = self.lock.options(opts);
        self
    }

    /// Set the leadership's lease (default 30 s): how long a crashed
    /// leader keeps the leadership at most.
    #[must_use]
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lock = self.lock.lease(lease);
        self
    }

    /// Set the renewal of the leadership (default every third of the
    /// lease).
    #[must_use]
    pub fn renewal(mut self, renewal: Renewal) -> Self {
        self.lock = self.lock.renewal(renewal);
        self
    }

    /// Set how long a campaign waits at the most (default: no limit).
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.lock = self.lock.timeout(timeout);
        self
    }

    /// Set how often observers read the lock's record (default
    /// [`DEFAULT_POLL_INTERVAL`], at least [`MIN_POLL_INTERVAL`]): each
    /// observer costs the server one read per interval, and sees a change
    /// within one interval.
    #[must_use]
    pub fn poll_interval(mut self, every: Duration) -> Self {
        self.poll = every.max(MIN_POLL_INTERVAL);
        self
    }

    /// The lock's options in force.
    pub fn lock_options(&self) -> &LockOptions {
        self.lock.lock_options()
    }

    /// The observers' state, or why the election cannot be observed.
    fn watch(&self) -> Result<Watch, Error> {
        let (name, backend) = self.lock.resolve()?;
        Ok(Watch {
            exec: Exec::new(&backend)?,
            backend,
            name: name.clone(),
            opts: self.lock.lock_options().clone(),
            poll: self.poll,
            last: None,
            next_poll: None,
        })
    }
}

/// What observers of both forms keep: the last state seen and when to read
/// the record next.
struct Watch {
    exec: Exec,
    backend: Backend,
    name: LockName,
    opts: LockOptions,
    poll: Duration,
    /// The last state reported (`Some(None)`: vacant), `None` before the
    /// first.
    last: Option<Option<(OwnerId, FencingToken)>>,
    next_poll: Option<Instant>,
}

impl Watch {
    /// The first state, then each change: waits for it, one read of the
    /// record per interval.
    async fn next(&mut self) -> Result<Option<Leader>, Error> {
        loop {
            if let Some(at) = self.next_poll {
                self.exec.sleep_until(at).await;
            }
            let started = Instant::now();
            let record =
                crate::algo::inspect(&self.exec, &self.backend.shared, &self.name, &self.opts)
                    .await;
            // The interval counts from the start of a read: a slow read
            // does not add to it.
            self.next_poll = Some(started + self.poll);
            let leader = record?.map(Leader::from);
            let now = leader.as_ref().map(|l| (l.owner.clone(), l.term));
            if self.last.as_ref() != Some(&now) {
                self.last = Some(now);
                return Ok(leader);
            }
        }
    }
}

impl AsyncElection {
    /// Campaign: wait until this process leads (or the election's
    /// `timeout` passes). The leadership lasts until it is resigned (or
    /// dropped) or lost; it is renewed while it lives.
    ///
    /// # Errors
    /// As [`AsyncLock::acquire`](GenericLock::acquire).
    pub async fn campaign(&self) -> Result<AsyncLeadership, Error> {
        Ok(AsyncLeadership(self.lock.acquire().await?))
    }

    /// One attempt: `Some` if nobody led, `None` if somebody does.
    ///
    /// # Errors
    /// As [`AsyncLock::try_acquire`](GenericLock::try_acquire).
    pub async fn try_campaign(&self) -> Result<Option<AsyncLeadership>, Error> {
        Ok(self.lock.try_acquire().await?.map(AsyncLeadership))
    }

    /// Who leads now (`None`: nobody), with one read of the record.
    ///
    /// # Errors
    /// As [`AsyncLock::inspect`](GenericLock::inspect).
    pub async fn leader(&self) -> Result<Option<Leader>, Error> {
        Ok(self.lock.inspect().await?.map(Leader::from))
    }

    /// Observe the election without campaigning: an [`AsyncObserver`]
    /// whose [`next`](AsyncObserver::next) answers the current leader
    /// first, then each change.
    ///
    /// # Errors
    /// [`Error::InvalidName`], [`Error::InvalidOption`],
    /// [`Error::NotConfigured`], [`Error::Runtime`].
    pub fn observe(&self) -> Result<AsyncObserver, Error> {
        Ok(AsyncObserver(self.watch()?))
    }

    /// This election as the lock it runs on.
    pub fn lock(&self) -> &AsyncLock {
        &self.lock
    }
}

impl Election {
    /// Campaign: wait on this thread until this process leads (or the
    /// election's `timeout` passes). The leadership lasts until it is
    /// resigned (or dropped) or lost; it is renewed while it lives.
    ///
    /// # Errors
    /// As [`Lock::acquire`](GenericLock::acquire).
    pub fn campaign(&self) -> Result<Leadership, Error> {
        let exec = self.exec()?;
        Ok(Leadership {
            guard: self.lock.acquire()?,
            exec,
        })
    }

    /// The driver a leadership waits for its loss with.
    fn exec(&self) -> Result<Exec, Error> {
        let (_, backend) = self.lock.resolve()?;
        Exec::new(&backend)
    }

    /// One attempt: `Some` if nobody led, `None` if somebody does.
    ///
    /// # Errors
    /// As [`Lock::try_acquire`](GenericLock::try_acquire).
    pub fn try_campaign(&self) -> Result<Option<Leadership>, Error> {
        let exec = self.exec()?;
        Ok(self
            .lock
            .try_acquire()?
            .map(|guard| Leadership { guard, exec }))
    }

    /// Who leads now (`None`: nobody), with one read of the record.
    ///
    /// # Errors
    /// As [`Lock::inspect`](GenericLock::inspect).
    pub fn leader(&self) -> Result<Option<Leader>, Error> {
        Ok(self.lock.inspect()?.map(Leader::from))
    }

    /// Observe the election without campaigning: an [`Observer`], an
    /// iterator that answers the current leader first, then each change
    /// (blocking until it comes). It never ends by itself; an error of one
    /// read is an item, and the next item reads again.
    ///
    /// # Errors
    /// [`Error::InvalidName`], [`Error::InvalidOption`],
    /// [`Error::NotConfigured`], [`Error::Runtime`].
    pub fn observe(&self) -> Result<Observer, Error> {
        Ok(Observer(Arc::new(tokio::sync::Mutex::new(self.watch()?))))
    }

    /// This election as the lock it runs on.
    pub fn lock(&self) -> &Lock {
        &self.lock
    }
}

/// The async observer of an election (see [`AsyncElection::observe`]).
/// Dropping it stops the reads.
pub struct AsyncObserver(Watch);

impl AsyncObserver {
    /// The current leader (`None`: vacant) on the first call, then the
    /// next change: a new leader or a vacancy. Waits for it, reading the
    /// record once per poll interval. Cancel-safe: a call dropped while it
    /// waits loses no change.
    ///
    /// # Errors
    /// A read that failed (after the retries of an
    /// [`inspect`](GenericLock::inspect)); call again to go on.
    pub async fn next(&mut self) -> Result<Option<Leader>, Error> {
        self.0.next().await
    }
}

impl std::fmt::Debug for AsyncObserver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncObserver")
            .field("name", &self.0.name)
            .field("poll", &self.0.poll)
            .finish()
    }
}

/// The blocking observer of an election (see [`Election::observe`]): an
/// iterator of the current leader, then each change, that never ends by
/// itself (an item blocks until the change comes).
pub struct Observer(Arc<tokio::sync::Mutex<Watch>>);

impl Iterator for Observer {
    type Item = Result<Option<Leader>, Error>;

    /// The current leader on the first call, then the next change; an
    /// error of a read is an item ([`Error::Runtime`] too, on a thread
    /// that may not wait: see [`Lock::acquire`](GenericLock::acquire)).
    fn next(&mut self) -> Option<Self::Item> {
        let watch = Arc::clone(&self.0);
        let (runtime, check) = match watch.try_lock() {
            Ok(w) => (w.exec.runtime.clone(), w.exec.may_block()),
            Err(_) => return Some(Err(busy_observer())),
        };
        if let Err(error) = check {
            return Some(Err(error));
        }
        Some(rt::block_on(&runtime, async move { watch.lock().await.next().await }).and_then(|r| r))
    }
}

fn busy_observer() -> Error {
    Error::Runtime {
        reason: "the observer's last read is still under way".into(),
    }
}

impl std::fmt::Debug for Observer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Observer").finish_non_exhaustive()
    }
}

/// A leadership won by [`AsyncElection::campaign`]: a held, renewed lock.
/// Dereferences to its [`Holding`] (`is_held`, `ensure_held`, `owner`,
/// …). [`resign`](Self::resign) ends it; dropping it resigns in the
/// background.
#[must_use = "the leadership is resigned when it is dropped"]
#[derive(Debug)]
pub struct AsyncLeadership(AsyncLockGuard);

impl AsyncLeadership {
    /// The term: the fencing token of this leadership. Hand it to the
    /// resources the leader writes to, which refuse lower terms than they
    /// have seen.
    pub fn term(&self) -> FencingToken {
        self.0.token()
    }

    /// Resolves when the leadership is lost, with the reason (as
    /// [`AsyncLockGuard::lost`]). Race it against the leader's work.
    pub async fn lost(&self) -> LossReason {
        self.0.lost().await
    }

    /// Resign: release the lock, so that a campaigner can lead.
    ///
    /// # Errors
    /// As [`AsyncLockGuard::release`] ([`Error::LeaseLost`] if the
    /// leadership had been lost).
    pub async fn resign(self) -> Result<(), Error> {
        self.0.release().await
    }

    /// The lock guard this leadership is.
    pub fn into_guard(self) -> AsyncLockGuard {
        self.0
    }
}

impl Deref for AsyncLeadership {
    type Target = Holding;
    fn deref(&self) -> &Holding {
        &self.0
    }
}

/// A leadership won by [`Election::campaign`]: a held, renewed lock.
/// Dereferences to its [`Holding`] (`is_held`, `ensure_held`, `owner`,
/// …). [`resign`](Self::resign) ends it; dropping it resigns.
#[must_use = "the leadership is resigned when it is dropped"]
pub struct Leadership {
    guard: LockGuard,
    exec: Exec,
}

impl Leadership {
    /// The term: the fencing token of this leadership. Hand it to the
    /// resources the leader writes to, which refuse lower terms than they
    /// have seen.
    pub fn term(&self) -> FencingToken {
        self.guard.token()
    }

    /// Wait on this thread until the leadership is lost; the reason.
    ///
    /// # Errors
    /// [`Error::Runtime`] on a thread that may not wait (see
    /// [`Lock::acquire`](GenericLock::acquire)).
    pub fn lost(&self) -> Result<LossReason, Error> {
        self.lost_until(None)
            .map(|lost| lost.unwrap_or(LossReason::Released))
    }

    /// Wait at most `timeout` for the leadership to be lost: the reason,
    /// or `None` if it is still held then.
    ///
    /// ```
    /// use std::time::Duration;
    /// use shylock_core::{Backend, Election, MemoryBackend};
    /// let backend = Backend::from(MemoryBackend::new());
    /// let leadership = Election::with_backend("lost-timeout-doc", &backend).campaign()?;
    /// assert_eq!(leadership.lost_timeout(Duration::from_millis(20))?, None);
    /// # Ok::<(), shylock_core::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`lost`](Self::lost).
    pub fn lost_timeout(&self, timeout: Duration) -> Result<Option<LossReason>, Error> {
        self.lost_until(crate::tick::deadline_after(timeout))
    }

    fn lost_until(&self, until: Option<Instant>) -> Result<Option<LossReason>, Error> {
        self.exec.may_block()?;
        let exec = self.exec.clone();
        let lease = Arc::clone(&self.guard.lease);
        rt::block_on(&self.exec.runtime, async move {
            exec.until_lost(&lease, until).await
        })
    }

    /// Resign: release the lock, so that a campaigner can lead.
    ///
    /// # Errors
    /// As [`LockGuard::release`] ([`Error::LeaseLost`] if the leadership
    /// had been lost).
    pub fn resign(self) -> Result<(), Error> {
        self.guard.release()
    }

    /// The lock guard this leadership is.
    pub fn into_guard(self) -> LockGuard {
        self.guard
    }
}

impl Deref for Leadership {
    type Target = Holding;
    fn deref(&self) -> &Holding {
        &self.guard
    }
}

impl std::fmt::Debug for Leadership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Leadership").field(&self.guard).finish()
    }
}
