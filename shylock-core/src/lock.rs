//! The lock types and their guards.

use std::marker::PhantomData;
use std::ops::Deref;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::algo::{self, Held, Mode};
use crate::backend::{AsyncBackend, LockRecord, SyncBackend};
use crate::exec::{AsyncExec, SyncExec, block_on};
use crate::handle::default_backend;
use crate::lease::Holding;
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
        GenericLock {
            name: LockName::new(name).map_err(|e| e.to_string()),
            opts: LockOptions::default(),
            backend: None,
            form: PhantomData,
        }
    }

    /// A lock on the given backend.
    pub fn with_backend(name: impl Into<String>, backend: &Backend) -> Self {
        GenericLock {
            backend: Some(backend.clone()),
            ..Self::new(name)
        }
    }

    /// Replace all options.
    pub fn options(mut self, opts: LockOptions) -> Self {
        self.opts = opts;
        self
    }

    /// Set the lease (default 30 s).
    pub fn lease(mut self, lease: Duration) -> Self {
        self.opts.lease = lease;
        self
    }

    /// Set the renewal (default every third of the lease).
    pub fn renewal(mut self, renewal: Renewal) -> Self {
        self.opts.renewal = renewal;
        self
    }

    /// Set how long `acquire` waits at the most (default: no limit).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.opts.timeout = Some(timeout);
        self
    }

    /// The options in force.
    pub fn lock_options(&self) -> &LockOptions {
        &self.opts
    }

    fn resolve(&self, form: &'static str) -> Result<(&LockName, Backend), Error> {
        let name = self.name.as_ref().map_err(|reason| Error::InvalidName {
            reason: reason.clone(),
        })?;
        self.opts.validate()?;
        let backend = match &self.backend {
            Some(backend) => backend.clone(),
            None => default_backend().ok_or(Error::NotConfigured { form })?,
        };
        Ok((name, backend))
    }

    fn deadline(timeout: Option<Duration>) -> Option<Instant> {
        timeout.and_then(|t| Instant::now().checked_add(t))
    }
}

impl Lock {
    fn run<T>(
        &self,
        f: impl AsyncFnOnce(&SyncExec, &Backend, &LockName) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let (name, backend) = self.resolve("sync")?;
        let exec = SyncExec(backend.sync_form()?);
        block_on(f(&exec, &backend, name))
    }

    fn acquire_with(
        &self,
        mode: Mode,
        timeout: Option<Duration>,
    ) -> Result<Option<LockGuard>, Error> {
        self.run(async |exec, backend, name| {
            let held = algo::acquire(
                exec,
                &backend.shared,
                name,
                &self.opts,
                mode,
                Self::deadline(timeout),
            )
            .await?;
            Ok(held.map(|held| LockGuard::start(held, Arc::clone(&exec.0))))
        })
    }

    /// Wait until the lock is held (or the lock's timeout passes).
    ///
    /// # Errors
    /// [`Error::Timeout`], [`Error::InvalidName`], [`Error::InvalidOption`],
    /// [`Error::NotConfigured`], or [`Error::Backend`] for a non-transient
    /// backend failure.
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
        self.acquire_with(Mode::Wait, timeout)?
            .ok_or_else(|| Error::InvalidConfig {
                reason: "internal: a waiting acquisition ended without a lock".into(),
            })
    }

    /// One attempt: `Some(guard)` if the lock was free, `None` if held.
    ///
    /// # Errors
    /// As [`acquire`](Self::acquire), and transient backend errors.
    pub fn try_acquire(&self) -> Result<Option<LockGuard>, Error> {
        self.acquire_with(Mode::Try, self.opts.timeout)
    }

    /// Who holds the lock now, without acquiring it.
    ///
    /// # Errors
    /// As [`acquire`](Self::acquire).
    pub fn inspect(&self) -> Result<Option<LockRecord>, Error> {
        self.run(async |exec, backend, name| {
            algo::inspect(exec, &backend.shared, name, &self.opts).await
        })
    }
}

impl AsyncLock {
    async fn acquire_with(
        &self,
        mode: Mode,
        timeout: Option<Duration>,
    ) -> Result<Option<AsyncLockGuard>, Error> {
        let (name, backend) = self.resolve("async")?;
        let exec = AsyncExec(backend.async_form()?);
        let held = algo::acquire(
            &exec,
            &backend.shared,
            name,
            &self.opts,
            mode,
            Self::deadline(timeout),
        )
        .await?;
        Ok(held.map(|held| AsyncLockGuard::start(held, exec.0)))
    }

    /// Wait until the lock is held (or the lock's timeout passes).
    /// Dropping the future while it waits never leaves the lock held: an
    /// attempt whose answer is lost is released in the background.
    ///
    /// # Errors
    /// [`Error::Timeout`], [`Error::InvalidName`], [`Error::InvalidOption`],
    /// [`Error::NotConfigured`], or [`Error::Backend`] for a non-transient
    /// backend failure.
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
        self.acquire_with(Mode::Wait, timeout)
            .await?
            .ok_or_else(|| Error::InvalidConfig {
                reason: "internal: a waiting acquisition ended without a lock".into(),
            })
    }

    /// One attempt: `Some(guard)` if the lock was free, `None` if held.
    ///
    /// # Errors
    /// As [`acquire`](Self::acquire), and transient backend errors.
    pub async fn try_acquire(&self) -> Result<Option<AsyncLockGuard>, Error> {
        self.acquire_with(Mode::Try, self.opts.timeout).await
    }

    /// Who holds the lock now, without acquiring it.
    ///
    /// # Errors
    /// As [`acquire`](Self::acquire).
    pub async fn inspect(&self) -> Result<Option<LockRecord>, Error> {
        let (name, backend) = self.resolve("async")?;
        let exec = AsyncExec(backend.async_form()?);
        algo::inspect(&exec, &backend.shared, name, &self.opts).await
    }
}

/// A held blocking lock. Dropping it releases the lock (errors are logged);
/// [`release`](LockGuard::release) releases it and says how that went. While
/// it lives, a background thread renews the lease (unless renewal is off);
/// check [`is_held`](Holding::is_held) or
/// [`ensure_held`](Holding::ensure_held) before steps that need the lock.
#[must_use = "the lock is released when the guard is dropped"]
pub struct LockGuard {
    held: Option<Held>,
    holding: Holding,
    backend: Arc<dyn SyncBackend>,
}

impl LockGuard {
    fn start(held: Held, backend: Arc<dyn SyncBackend>) -> Self {
        if let Some(every) = held.opts.renew_interval() {
            let (exec, shared, holding, opts) = (
                SyncExec(Arc::clone(&backend)),
                Arc::clone(&held.shared),
                held.holding.clone(),
                held.opts.clone(),
            );
            let spawned = std::thread::Builder::new()
                .name("shylock-renew".into())
                .stack_size(256 * 1024)
                .spawn(move || block_on(algo::renew_loop(exec, shared, holding, opts, every)));
            if let Err(error) = spawned {
                tracing::error!(lock = %held.holding.name, %error, "could not start the renewal thread; the lease will not be renewed");
            }
        }
        LockGuard {
            holding: held.holding.clone(),
            held: Some(held),
            backend,
        }
    }

    /// Release the lock.
    ///
    /// # Errors
    /// [`Error::LeaseLost`] if the lease had been lost (nothing is changed on
    /// the backend then), or [`Error::Backend`] if the backend failed.
    pub fn release(mut self) -> Result<(), Error> {
        self.release_inner()
    }

    fn release_inner(&mut self) -> Result<(), Error> {
        match self.held.take() {
            Some(held) => block_on(algo::release(&SyncExec(Arc::clone(&self.backend)), &held)),
            None => Ok(()),
        }
    }
}

impl std::fmt::Debug for LockGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("LockGuard").field(&self.holding).finish()
    }
}

impl std::fmt::Debug for AsyncLockGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("AsyncLockGuard")
            .field(&self.holding)
            .finish()
    }
}

impl Deref for LockGuard {
    type Target = Holding;
    fn deref(&self) -> &Holding {
        &self.holding
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        if let Err(error) = self.release_inner() {
            tracing::warn!(lock = %self.holding.name, %error, "release on drop");
        }
    }
}

/// A held async lock. Release it with [`release`](AsyncLockGuard::release)`.await`.
///
/// If it is dropped without that, the release is handed to the tokio
/// runtime in the background (if there is one in the dropping thread's
/// context); otherwise the lease expiry frees the lock. While it lives, a
/// tokio task renews the lease (unless renewal is off);
/// [`lost`](AsyncLockGuard::lost) resolves when the lease is lost.
#[must_use = "the lock is released when the guard is dropped"]
pub struct AsyncLockGuard {
    held: Option<Held>,
    holding: Holding,
    backend: Arc<dyn AsyncBackend>,
    renewer: Option<tokio::task::JoinHandle<()>>,
}

impl AsyncLockGuard {
    fn start(held: Held, backend: Arc<dyn AsyncBackend>) -> Self {
        let renewer = held.opts.renew_interval().map(|every| {
            tokio::spawn(algo::renew_loop(
                AsyncExec(Arc::clone(&backend)),
                Arc::clone(&held.shared),
                held.holding.clone(),
                held.opts.clone(),
                every,
            ))
        });
        AsyncLockGuard {
            holding: held.holding.clone(),
            held: Some(held),
            backend,
            renewer,
        }
    }

    /// Release the lock.
    ///
    /// # Errors
    /// [`Error::LeaseLost`] if the lease had been lost (nothing is changed on
    /// the backend then), or [`Error::Backend`] if the backend failed.
    pub async fn release(mut self) -> Result<(), Error> {
        if let Some(renewer) = self.renewer.take() {
            renewer.abort();
        }
        match self.held.take() {
            Some(held) => algo::release(&AsyncExec(Arc::clone(&self.backend)), &held).await,
            None => Ok(()),
        }
    }

    /// Resolves when the lease is lost, with the reason. Never resolves
    /// while the lease is held and renewed.
    pub async fn lost(&self) -> LossReason {
        let lease = &self.holding.lease;
        loop {
            let seen = lease.signal.generation();
            if let Some(reason) = lease.loss() {
                return reason;
            }
            lease
                .signal
                .wait_async(seen, Some(lease.valid_until()))
                .await;
        }
    }
}

impl Deref for AsyncLockGuard {
    type Target = Holding;
    fn deref(&self) -> &Holding {
        &self.holding
    }
}

impl Drop for AsyncLockGuard {
    fn drop(&mut self) {
        if let Some(renewer) = self.renewer.take() {
            renewer.abort();
        }
        let Some(held) = self.held.take() else {
            return;
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                let exec = AsyncExec(Arc::clone(&self.backend));
                runtime.spawn(async move {
                    if let Err(error) = algo::release(&exec, &held).await {
                        tracing::warn!(lock = %held.holding.name, %error, "release on drop");
                    }
                });
            }
            Err(_) => {
                held.holding.lease.stop();
                held.slot.get().note_release();
                tracing::warn!(
                    lock = %held.holding.name,
                    "async guard dropped outside a tokio runtime; the lease expiry will free the lock"
                );
            }
        }
    }
}
