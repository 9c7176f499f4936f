//! The lock types and their guards.

use std::marker::PhantomData;
use std::ops::Deref;
use std::time::{Duration, Instant};

use crate::algo::{self, GuardState, Mode, Try, Wait};
use crate::backend::LockRecord;
use crate::exec::{Exec, RenewalTask};
use crate::handle::default_backend;
use crate::lease::Holding;
use crate::rt;
use crate::{Backend, Error, LockName, LockOptions, LossReason, Renewal};

/// Marker of the blocking form ([`Lock`]).
#[derive(Debug, Clone, Copy)]
pub enum Blocking {}

/// Marker of the async form ([`AsyncLock`]).
#[derive(Debug, Clone, Copy)]
pub enum Async {}

/// A named distributed lock with its options. Use it through the aliases
/// [`Lock`] (blocking) and [`AsyncLock`] (async); the builder methods are
/// shared.
///
/// Making a lock does nothing on the backend; each `acquire` is a new
/// acquisition with a new owner id and a new fencing token.
#[derive(Debug, Clone)]
pub struct GenericLock<F> {
    /// The name as given.
    raw: String,
    /// The name checked, or why it was refused.
    name: Result<LockName, String>,
    opts: LockOptions,
    backend: Option<Backend>,
    form: PhantomData<fn() -> F>,
}

/// A blocking lock: `acquire` waits on the calling thread and returns a
/// [`LockGuard`] that releases on drop.
///
/// ```
/// use shylock_core::{Backend, Lock, MemoryBackend};
/// let backend = Backend::from(MemoryBackend::new());
/// let lock = Lock::with_backend("nightly-report", &backend);
/// {
///     let guard = lock.acquire()?;
///     println!("holding {} with fencing token {}", guard.name(), guard.token());
///     assert!(lock.try_acquire()?.is_none()); // the Python `acquire(block=False)`
/// } // released here
/// assert!(lock.try_acquire()?.is_some());
/// # Ok::<(), shylock_core::Error>(())
/// ```
pub type Lock = GenericLock<Blocking>;

/// An async lock: `acquire().await` waits without blocking the runtime and
/// returns an [`AsyncLockGuard`]. Needs a tokio runtime.
///
/// ```
/// use shylock_core::{AsyncLock, Backend, MemoryBackend};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), shylock_core::Error> {
/// let backend = Backend::from(MemoryBackend::new());
/// let lock = AsyncLock::with_backend("nightly-report", &backend);
/// let guard = lock.acquire().await?;
/// println!("holding {} with fencing token {}", guard.name(), guard.token());
/// guard.release().await?;
/// # Ok(())
/// # }
/// ```
pub type AsyncLock = GenericLock<Async>;

impl<F> GenericLock<F> {
    /// A lock on the default backend (see [`configure`](crate::configure)),
    /// looked up when it is acquired. A bad name is reported by `acquire`.
    pub fn new(name: impl Into<String>) -> Self {
        let raw = name.into();
        GenericLock {
            name: LockName::new(raw.clone()).map_err(|e| match e {
                Error::InvalidName { reason } => reason,
                other => other.to_string(),
            }),
            raw,
            opts: LockOptions::default(),
            backend: None,
            form: PhantomData,
        }
    }

    /// A lock on the given backend: a [`Backend`] handle, or a backend as
    /// its constructor returned it (such as a MongoDB or ArangoDB backend,
    /// or [`MemoryBackend`](crate::MemoryBackend)).
    ///
    /// Locks given the same [`Backend`] handle (or its clones) share its
    /// per-process state: a release wakes the other waiters of this process
    /// at once, and one waiter per name polls the backend. A backend given
    /// as its constructor returned it is wrapped in a new handle each time;
    /// for many locks, make one `Backend` (`Backend::from(backend)`) and
    /// pass that.
    ///
    /// ```
    /// use shylock_core::{Backend, Lock, MemoryBackend};
    /// let memory = MemoryBackend::new();
    /// let lock = Lock::with_backend("with-backend-doc", &memory);
    /// let handle = Backend::from(memory.clone());
    /// let same = Lock::with_backend("with-backend-doc", &handle);
    /// let guard = lock.acquire()?;
    /// assert!(same.try_acquire()?.is_none());
    /// # drop(guard);
    /// # Ok::<(), shylock_core::Error>(())
    /// ```
    pub fn with_backend<B>(name: impl Into<String>, backend: &B) -> Self
    where
        B: Clone + Into<Backend>,
    {
        GenericLock {
            backend: Some(backend.clone().into()),
            ..Self::new(name)
        }
    }

    /// The lock's name, as given (also when it is invalid: `acquire` says
    /// why).
    pub fn name(&self) -> &str {
        &self.raw
    }

    /// Replace all options.
    #[must_use]
    pub fn options(mut self, opts: LockOptions) -> Self {
        self.opts = opts;
        self
    }

    /// Set the lease (default 30 s).
    #[must_use]
    pub fn lease(mut self, lease: Duration) -> Self {
        self.opts.lease = lease;
        self
    }

    /// Set the renewal (default every third of the lease).
    #[must_use]
    pub fn renewal(mut self, renewal: Renewal) -> Self {
        self.opts.renewal = renewal;
        self
    }

    /// Set how long `acquire` waits at the most (default: no limit).
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.opts.timeout = Some(timeout);
        self
    }

    /// The options in force.
    pub fn lock_options(&self) -> &LockOptions {
        &self.opts
    }

    pub(crate) fn resolve(&self) -> Result<(&LockName, Backend), Error> {
        let name = self.name.as_ref().map_err(|reason| Error::InvalidName {
            reason: reason.clone(),
        })?;
        self.opts.validate()?;
        let backend = match &self.backend {
            Some(backend) => backend.clone(),
            None => default_backend().ok_or(Error::NotConfigured)?,
        };
        Ok((name, backend))
    }

    fn deadline(timeout: Option<Duration>) -> Option<Instant> {
        timeout.and_then(crate::tick::deadline_after)
    }
}

impl Lock {
    /// Run `f` (the algorithm, given the driver, the handle's shared state,
    /// the name and the options) as a task on shylock's runtime, and wait
    /// for its answer on this thread.
    fn call<T, Fut>(
        &self,
        f: impl FnOnce(Exec, Backend, LockName, LockOptions) -> Fut,
    ) -> Result<T, Error>
    where
        T: Send + 'static,
        Fut: std::future::Future<Output = Result<T, Error>> + Send + 'static,
    {
        let (name, backend) = self.resolve()?;
        let exec = Exec::new(&backend)?;
        exec.may_block()?;
        let runtime = exec.runtime.clone();
        rt::block_on(&runtime, f(exec, backend, name.clone(), self.opts.clone()))?
    }

    fn acquire_with<M: Mode>(
        &self,
        timeout: Option<Duration>,
    ) -> Result<Result<LockGuard, M::Busy>, Error> {
        let deadline = Self::deadline(timeout);
        self.call(move |exec, backend, name, opts| async move {
            let state = algo::acquire::<M>(&exec, &backend.shared, &name, &opts, deadline).await?;
            Ok(state.map(|state| LockGuard(Guard::start(state, exec))))
        })
    }

    /// Wait until the lock is held (or the lock's timeout passes), blocking
    /// the calling thread.
    ///
    /// The waiting itself runs on shylock's runtime thread; this thread only
    /// waits for the answer. On a worker of a multi-thread tokio runtime the
    /// wait is announced with `block_in_place`, so the worker's other tasks
    /// (an async holder of the same lock, say) move to other workers. On
    /// the thread of a current-thread runtime it blocks that runtime until
    /// it returns; and where that runtime is the one an async backend was
    /// handed over on (its driver may need it to answer), the call is
    /// refused with [`Error::Runtime`] before anything is sent. From async
    /// code use [`AsyncLock`], or call this in `tokio::task::spawn_blocking`.
    ///
    /// # Errors
    /// [`Error::Timeout`], [`Error::InvalidName`], [`Error::InvalidOption`],
    /// [`Error::NotConfigured`], [`Error::Runtime`] (refused on this thread,
    /// see above, or shylock's runtime cannot run), or [`Error::Backend`]
    /// for a non-transient backend failure.
    pub fn acquire(&self) -> Result<LockGuard, Error> {
        self.acquire_timeout_opt(self.opts.timeout)
    }

    /// Wait at most `timeout` for the lock.
    ///
    /// # Errors
    /// As [`acquire`](Self::acquire).
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<LockGuard, Error> {
        self.acquire_timeout_opt(Some(timeout))
    }

    fn acquire_timeout_opt(&self, timeout: Option<Duration>) -> Result<LockGuard, Error> {
        let Ok(guard) = self.acquire_with::<Wait>(timeout)?;
        Ok(guard)
    }

    /// One attempt: `Some(guard)` if the lock was free, `None` if held.
    ///
    /// # Errors
    /// As [`acquire`](Self::acquire), and transient backend errors.
    pub fn try_acquire(&self) -> Result<Option<LockGuard>, Error> {
        Ok(self.acquire_with::<Try>(self.opts.timeout)?.ok())
    }

    /// Run `f` holding the lock, as the Python original's `with Lock(...)`:
    /// acquire (waiting as [`acquire`](Self::acquire)), call `f` with the
    /// guard inside the holding's [`span`](Holding::span), then release.
    ///
    /// # Errors
    /// As [`acquire`](Self::acquire); and, after `f` ran, the release's
    /// error: [`Error::LeaseLost`] if the lease was lost while `f` ran
    /// (then part of `f`'s work ran without the lock, and its result is not
    /// returned).
    ///
    /// ```
    /// use shylock_core::{Backend, Lock, MemoryBackend};
    /// let backend = Backend::from(MemoryBackend::new());
    /// let token = Lock::with_backend("run-doc", &backend).run(|guard| {
    ///     // the critical section
    ///     guard.token()
    /// })?;
    /// println!("ran with fencing token {token}");
    /// # Ok::<(), shylock_core::Error>(())
    /// ```
    pub fn run<T>(&self, f: impl FnOnce(&LockGuard) -> T) -> Result<T, Error> {
        let guard = self.acquire()?;
        let output = guard.span().clone().in_scope(|| f(&guard));
        guard.release()?;
        Ok(output)
    }

    /// Who holds the lock now, without acquiring it.
    ///
    /// # Errors
    /// As [`acquire`](Self::acquire).
    pub fn inspect(&self) -> Result<Option<LockRecord>, Error> {
        self.call(|exec, backend, name, opts| async move {
            algo::inspect(&exec, &backend.shared, &name, &opts).await
        })
    }
}

impl AsyncLock {
    async fn acquire_with<M: Mode>(
        &self,
        timeout: Option<Duration>,
    ) -> Result<Result<AsyncLockGuard, M::Busy>, Error> {
        let (name, backend) = self.resolve()?;
        let exec = Exec::new(&backend)?;
        let state = algo::acquire::<M>(
            &exec,
            &backend.shared,
            name,
            &self.opts,
            Self::deadline(timeout),
        )
        .await?;
        Ok(state.map(|state| AsyncLockGuard(Guard::start(state, exec))))
    }

    /// Wait until the lock is held (or the lock's timeout passes).
    /// Dropping the future while it waits never leaves the lock held: a
    /// request on its way is let finish in the background and released if
    /// it was granted.
    ///
    /// # Errors
    /// [`Error::Timeout`], [`Error::InvalidName`], [`Error::InvalidOption`],
    /// [`Error::NotConfigured`], [`Error::Runtime`] if shylock's runtime
    /// cannot run, or [`Error::Backend`] for a non-transient backend
    /// failure. (The waiting is timed by shylock's runtime, so the caller's
    /// runtime needs no timers.)
    pub async fn acquire(&self) -> Result<AsyncLockGuard, Error> {
        self.acquire_timeout_opt(self.opts.timeout).await
    }

    /// Wait at most `timeout` for the lock.
    ///
    /// # Errors
    /// As [`acquire`](Self::acquire).
    pub async fn acquire_timeout(&self, timeout: Duration) -> Result<AsyncLockGuard, Error> {
        self.acquire_timeout_opt(Some(timeout)).await
    }

    async fn acquire_timeout_opt(
        &self,
        timeout: Option<Duration>,
    ) -> Result<AsyncLockGuard, Error> {
        let Ok(guard) = self.acquire_with::<Wait>(timeout).await?;
        Ok(guard)
    }

    /// One attempt: `Some(guard)` if the lock was free, `None` if held.
    ///
    /// # Errors
    /// As [`acquire`](Self::acquire), and transient backend errors.
    pub async fn try_acquire(&self) -> Result<Option<AsyncLockGuard>, Error> {
        Ok(self.acquire_with::<Try>(self.opts.timeout).await?.ok())
    }

    /// Run `f` holding the lock, as the Python original's
    /// `async with AsyncLock(...)`: acquire (waiting as
    /// [`acquire`](Self::acquire)), await `f` with the guard inside the
    /// holding's [`span`](Holding::span), then release.
    ///
    /// If the returned future is dropped while `f` runs, the guard is
    /// dropped with it and released in the background.
    ///
    /// # Errors
    /// As [`acquire`](Self::acquire); and, after `f` ran, the release's
    /// error: [`Error::LeaseLost`] if the lease was lost while `f` ran
    /// (then part of `f`'s work ran without the lock, and its result is not
    /// returned).
    ///
    /// ```
    /// use shylock_core::{AsyncLock, Backend, MemoryBackend};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), shylock_core::Error> {
    /// let backend = Backend::from(MemoryBackend::new());
    /// let token = AsyncLock::with_backend("run-async-doc", &backend)
    ///     .run(async |guard| {
    ///         // the critical section
    ///         guard.token()
    ///     })
    ///     .await?;
    /// println!("ran with fencing token {token}");
    /// # Ok(())
    /// # }
    /// ```
    pub async fn run<T>(&self, f: impl AsyncFnOnce(&AsyncLockGuard) -> T) -> Result<T, Error> {
        use tracing::Instrument;
        let guard = self.acquire().await?;
        let span = guard.span().clone();
        let output = f(&guard).instrument(span).await;
        guard.release().await?;
        Ok(output)
    }

    /// Who holds the lock now, without acquiring it.
    ///
    /// # Errors
    /// As [`acquire`](Self::acquire).
    pub async fn inspect(&self) -> Result<Option<LockRecord>, Error> {
        let (name, backend) = self.resolve()?;
        let exec = Exec::new(&backend)?;
        algo::inspect(&exec, &backend.shared, name, &self.opts).await
    }
}

/// What both guard types are: the holding, its renewal task and the state
/// to release it. Renewal, release and release-on-drop are written once
/// here; the two guards differ only in how their caller waits.
struct Guard {
    /// `None` once released (or handed to the background).
    state: Option<GuardState>,
    holding: Holding,
    exec: Exec,
    /// Stopped when dropped.
    renewal: Option<RenewalTask>,
}

impl Guard {
    /// A guard for a fresh holding, its renewal started.
    fn start(state: GuardState, exec: Exec) -> Self {
        Guard {
            renewal: exec.start_renewal(&state),
            holding: state.holding.clone(),
            state: Some(state),
            exec,
        }
    }

    /// Stop renewing; the state to release, unless released already.
    fn take(&mut self) -> Option<GuardState> {
        self.renewal = None;
        self.state.take()
    }

    /// Release in the background (for drops where the caller cannot wait).
    fn release_in_background(&mut self, what: &'static str) {
        let Some(state) = self.take() else {
            return;
        };
        let exec = self.exec.clone();
        let name = state.holding.name.clone();
        self.exec.spawn_background(what, name, async move {
            if let Err(error) = algo::release(&exec, &state).await {
                tracing::warn!(lock = %state.holding.name, %error, "release on drop");
            }
        });
    }
}

/// A held blocking lock. Dropping it releases the lock (errors are logged);
/// [`release`](LockGuard::release) releases it and says how that went.
///
/// While it lives its lease is renewed (unless renewal is off) by a task on
/// shylock's runtime thread, as an [`AsyncLockGuard`]'s is: a guard costs no
/// thread, and a slow renewal never holds back another. Check
/// [`is_held`](Holding::is_held) or [`ensure_held`](Holding::ensure_held)
/// before steps that need the lock.
///
/// ```
/// use shylock_core::{Backend, Lock, MemoryBackend};
/// let backend = Backend::from(MemoryBackend::new());
/// let lock = Lock::with_backend("guard-doc", &backend);
/// {
///     let guard = lock.acquire()?;
///     guard.ensure_held()?;
///     println!("{} held with token {}", guard.name(), guard.token());
/// } // released here (errors are logged)
/// let guard = lock.acquire()?;
/// guard.release()?; // released, and told how it went
/// # Ok::<(), shylock_core::Error>(())
/// ```
#[must_use = "the lock is released when the guard is dropped"]
pub struct LockGuard(Guard);

impl LockGuard {
    /// Release the lock.
    ///
    /// # Errors
    /// [`Error::LeaseLost`] if the lease had been lost (nothing is changed on
    /// the backend then), [`Error::Backend`] if the backend failed, or
    /// [`Error::Runtime`] if this thread may not wait (see
    /// [`Lock::acquire`](GenericLock::acquire)): the release then goes on in
    /// the background.
    pub fn release(mut self) -> Result<(), Error> {
        self.release_blocking("release of a guard on a thread that may not wait")
    }

    /// Release, waiting on this thread; where it may not wait, release in
    /// the background (named `what`) and say why.
    fn release_blocking(&mut self, what: &'static str) -> Result<(), Error> {
        let guard = &mut self.0;
        if let Err(error) = guard.exec.may_block() {
            guard.release_in_background(what);
            return Err(error);
        }
        let Some(state) = guard.take() else {
            return Ok(());
        };
        let exec = guard.exec.clone();
        rt::block_on(&guard.exec.runtime, async move {
            algo::release(&exec, &state).await
        })?
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        if self.0.state.is_none() {
            return;
        }
        if self.0.exec.may_block().is_err() {
            return self.0.release_in_background("release of a dropped guard");
        }
        if let Err(error) = self.release_blocking("release of a dropped guard") {
            tracing::warn!(lock = %self.0.holding.name, %error, "release on drop");
        }
    }
}

impl std::fmt::Debug for LockGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("LockGuard").field(&self.0.holding).finish()
    }
}

impl std::fmt::Debug for AsyncLockGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("AsyncLockGuard")
            .field(&self.0.holding)
            .finish()
    }
}

impl Deref for LockGuard {
    type Target = Holding;
    fn deref(&self) -> &Holding {
        &self.0.holding
    }
}

/// A held async lock. Release it with [`release`](AsyncLockGuard::release)`.await`.
///
/// If it is dropped without that (or the `release()` future is dropped
/// before it finishes), the release runs in the background on shylock's
/// runtime thread; local waiters are woken when it is done. Await
/// [`Backend::settle`] before the process ends to let such releases
/// finish. While it lives, a task on shylock's runtime renews the lease
/// (unless renewal is off); [`lost`](AsyncLockGuard::lost) resolves when
/// the lease is lost.
///
/// ```
/// use shylock_core::{AsyncLock, Backend, MemoryBackend};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), shylock_core::Error> {
/// let backend = Backend::from(MemoryBackend::new());
/// let guard = AsyncLock::with_backend("async-guard-doc", &backend).acquire().await?;
/// guard.ensure_held()?;
/// println!("{} held with token {}", guard.name(), guard.token());
/// guard.release().await?;
/// # Ok(())
/// # }
/// ```
#[must_use = "the lock is released when the guard is dropped"]
pub struct AsyncLockGuard(Guard);

impl AsyncLockGuard {
    /// Release the lock.
    ///
    /// Cancel-safe: if this future is dropped before it finishes, the
    /// release goes on in the background as if the guard had been dropped.
    ///
    /// # Errors
    /// [`Error::LeaseLost`] if the lease had been lost (nothing is changed on
    /// the backend then), or [`Error::Backend`] if the backend failed.
    pub async fn release(mut self) -> Result<(), Error> {
        let guard = &mut self.0;
        guard.renewal = None;
        let result = match &guard.state {
            Some(state) => algo::release(&guard.exec, state).await,
            None => Ok(()),
        };
        // Only now: had this future been dropped while awaiting, `Drop`
        // would have finished the release.
        guard.state = None;
        result
    }

    /// Resolves when the lease is lost, with the reason. Never resolves
    /// while the lease is held and renewed. Race it against the work done
    /// under the lock, to stop that work once the lock is gone:
    ///
    /// ```
    /// use std::time::Duration;
    /// use shylock_core::{AsyncLock, Backend, MemoryBackend, Renewal};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), shylock_core::Error> {
    /// let backend = Backend::from(MemoryBackend::new());
    /// let guard = AsyncLock::with_backend("lost-doc", &backend)
    ///     .lease(Duration::from_millis(100))
    ///     .renewal(Renewal::Off)
    ///     .acquire()
    ///     .await?;
    /// let work = tokio::time::sleep(Duration::from_secs(3600)); // the long job
    /// tokio::select! {
    ///     _ = work => println!("done under the lock"),
    ///     reason = guard.lost() => println!("stopped: {reason}"),
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub async fn lost(&self) -> LossReason {
        let lost = self.0.exec.until_lost(&self.0.holding.lease, None).await;
        lost.unwrap_or(LossReason::Released)
    }
}

impl Deref for AsyncLockGuard {
    type Target = Holding;
    fn deref(&self) -> &Holding {
        &self.0.holding
    }
}

impl Drop for AsyncLockGuard {
    fn drop(&mut self) {
        self.0.release_in_background("release of a dropped guard");
    }
}
