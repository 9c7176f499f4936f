//! The backend handle and the process-wide default.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use crate::backend::{AsyncBackend, ClockSource, SyncBackend};
use crate::clock::ServerClock;
use crate::coord::Coordinator;
use crate::exec::Background;

/// A backend ready for locks of both forms, with the per-process state
/// locks share through it (polling turns per lock name, wake-ups on local
/// releases, the server clock estimate).
///
/// A handle is made from a backend's async form ([`from_async`](Self::from_async)),
/// its sync form ([`from_sync`](Self::from_sync)) or a backend that is both
/// ([`from_both`](Self::from_both)); whichever it is made from, it serves
/// [`AsyncLock`](crate::AsyncLock)s and blocking [`Lock`](crate::Lock)s
/// alike (the missing form comes from [`bridge`](crate::bridge)).
///
/// Cheap to clone; clones share that state. Make one per database and
/// collection and hand it to [`configure`] or to the locks.
///
/// ```
/// use shylock_core::{Backend, Lock, MemoryBackend};
/// let backend = Backend::from(MemoryBackend::new());
/// let guard = Lock::with_backend("handle-doc", &backend).acquire()?;
/// assert_eq!(backend.describe(), "memory");
/// # drop(guard);
/// # Ok::<(), shylock_core::Error>(())
/// ```
#[derive(Clone)]
pub struct Backend {
    pub(crate) shared: Arc<Shared>,
}

pub(crate) struct Shared {
    pub(crate) async_form: Arc<dyn AsyncBackend>,
    /// The sync form, for callers of the raw primitives (the conformance
    /// suite); locks of both forms use the async form.
    #[cfg_attr(not(feature = "conformance"), allow(dead_code))]
    pub(crate) sync_form: Arc<dyn SyncBackend>,
    pub(crate) coord: Arc<Coordinator>,
    pub(crate) clock: ServerClock,
    pub(crate) description: String,
    /// Background work under way (releases of dropped guards, clean-ups).
    pub(crate) background: Arc<Background>,
    /// For an async backend handed over on the thread of a current-thread
    /// runtime: that thread, on which a blocking lock must not wait (the
    /// backend's driver may need that runtime to answer).
    pub(crate) driver_thread: Option<std::thread::ThreadId>,
    /// The rate limit of warnings about failing requests.
    pub(crate) complaints: Complaints,
    /// The `backend` label of this handle's metrics.
    pub(crate) metrics_backend: crate::metrics::SharedString,
    /// How long the backend takes to answer a lock command, lately: how
    /// far apart a waiter's polls are spread on a slow server (see
    /// [`Handoff`](crate::Handoff)).
    pub(crate) round_trip: RoundTrip,
}

/// A moving average of the time the backend takes to answer acquisitions
/// and hand-overs (each sample weighs a quarter).
#[derive(Debug, Default)]
pub(crate) struct RoundTrip {
    /// Nanoseconds; 0 before the first sample.
    nanos: std::sync::atomic::AtomicU64,
}

impl RoundTrip {
    /// One command took `took`.
    pub(crate) fn observe(&self, took: Duration) {
        use std::sync::atomic::Ordering::Relaxed;
        let sample = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX).max(1);
        // A lost update between two samples is harmless: it is an average.
        let old = self.nanos.load(Relaxed);
        let new = if old == 0 {
            sample
        } else {
            old - old / 4 + sample / 4
        };
        self.nanos.store(new, Relaxed);
    }

    /// The average, once there is one.
    pub(crate) fn get(&self) -> Option<Duration> {
        match self.nanos.load(std::sync::atomic::Ordering::Relaxed) {
            0 => None,
            nanos => Some(Duration::from_nanos(nanos)),
        }
    }
}

/// The rate limit of the warnings a handle logs about failing requests:
/// during an outage every waiter retries, and the log should say so without
/// a line per attempt.
#[derive(Default)]
pub(crate) struct Complaints {
    /// When the last warning was logged, and how many were held back since.
    state: std::sync::Mutex<(Option<std::time::Instant>, u64)>,
}

impl Complaints {
    /// At most one warning per this period.
    pub(crate) const EVERY: std::time::Duration = std::time::Duration::from_secs(10);

    /// Whether to warn now; if so, with the number held back since the last.
    pub(crate) fn allow(&self) -> Option<u64> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let now = std::time::Instant::now();
        match state.0 {
            Some(last) if now.duration_since(last) < Self::EVERY => {
                state.1 += 1;
                None
            }
            _ => {
                state.0 = Some(now);
                Some(std::mem::take(&mut state.1))
            }
        }
    }
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backend")
            .field("backend", &self.shared.description)
            .finish()
    }
}

impl Backend {
    fn build(
        async_form: Arc<dyn AsyncBackend>,
        sync_form: Arc<dyn SyncBackend>,
        description: String,
        driver_thread: Option<std::thread::ThreadId>,
    ) -> Self {
        Backend {
            shared: Arc::new(Shared {
                async_form,
                sync_form,
                coord: Arc::default(),
                clock: ServerClock::default(),
                metrics_backend: crate::metrics::backend_label(&description),
                description,
                background: Arc::default(),
                complaints: Complaints::default(),
                driver_thread,
                round_trip: RoundTrip::default(),
            }),
        }
    }

    /// A handle for an async backend. Both [`AsyncLock`](crate::AsyncLock)s
    /// and [`Lock`](crate::Lock)s (blocking) use it: the blocking form runs
    /// the lock's work on shylock's runtime thread and waits for the answer.
    /// Made on the thread of a current-thread runtime (where the backend's
    /// driver may live), the handle remembers that thread: a blocking lock
    /// called on it while that runtime runs there gets [`Error::Runtime`](crate::Error::Runtime)
    /// before anything is sent, not a hang. Elsewhere a blocking lock on a
    /// current-thread runtime's thread blocks that runtime until it returns;
    /// see [`Lock::acquire`](crate::GenericLock::acquire).
    ///
    /// ```
    /// # #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use shylock_core::{Backend, Lock, MemoryBackend};
    /// let backend = Backend::from_async(MemoryBackend::new());
    /// let handle = backend.clone();
    /// let token = tokio::task::spawn_blocking(move || {
    ///     Lock::with_backend("from-async", &handle).acquire().map(|g| g.token())
    /// })
    /// .await??;
    /// println!("a blocking lock over an async backend: token {token}");
    /// # Ok(())
    /// # }
    /// ```
    pub fn from_async(backend: impl AsyncBackend) -> Self {
        Self::from_async_arc(Arc::new(backend))
    }

    /// A handle for a shared async backend; see [`from_async`](Self::from_async).
    pub fn from_async_arc(backend: Arc<dyn AsyncBackend>) -> Self {
        let description = backend.describe();
        let sync_form: Arc<dyn SyncBackend> =
            Arc::new(crate::bridge::SyncOverAsync::new(Arc::clone(&backend)));
        let driver_thread = tokio::runtime::Handle::try_current()
            .ok()
            .filter(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::CurrentThread)
            .map(|_| std::thread::current().id());
        Self::build(backend, sync_form, description, driver_thread)
    }

    /// A handle for a sync backend. Both forms of lock use it, each call
    /// running on a blocking thread of shylock's runtime (at most 64 at
    /// once; a call whose caller gave up before it started is never made).
    pub fn from_sync(backend: impl SyncBackend) -> Self {
        Self::from_sync_arc(Arc::new(backend))
    }

    /// A handle for a shared sync backend; see [`from_sync`](Self::from_sync).
    pub fn from_sync_arc(backend: Arc<dyn SyncBackend>) -> Self {
        let description = backend.describe();
        let async_form: Arc<dyn AsyncBackend> =
            Arc::new(crate::bridge::AsyncOverSync::new(Arc::clone(&backend)));
        Self::build(async_form, backend, description, None)
    }

    /// A handle for a backend that implements both forms itself (such as
    /// the in-memory backend): locks of both forms use its async form on
    /// shylock's runtime; its sync form serves callers of the raw
    /// primitives (the conformance suite).
    pub fn from_both<B: AsyncBackend + SyncBackend>(backend: B) -> Self {
        let backend = Arc::new(backend);
        Self::from_forms(backend.clone(), backend)
    }

    /// A handle for a backend given as its two forms, each implemented on
    /// its own (such as a sync backend type over an async core: `async_form`
    /// the core, `sync_form` the public sync type): locks of both forms use
    /// `async_form` on shylock's runtime; `sync_form` serves callers of the
    /// raw primitives (the conformance suite). Both must be the same
    /// backend: the same records, by the same rules.
    pub fn from_forms(async_form: Arc<dyn AsyncBackend>, sync_form: Arc<dyn SyncBackend>) -> Self {
        let description = async_form.describe();
        Self::build(async_form, sync_form, description, None)
    }

    /// Wait until the background work of this handle's locks has finished:
    /// releases of guards dropped without `release().await`, of `release()`
    /// futures dropped before they finished, and clean-ups after
    /// acquisitions given up with a request on its way. Waits at most
    /// `timeout`; returns whether all of it finished.
    ///
    /// The work runs on shylock's runtime thread, which outlives any
    /// runtime of the caller's; call this before the process ends (for
    /// example at the end of `main`): work still running then is abandoned
    /// and the locks it would have released stay held until their leases
    /// end.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), shylock_core::Error> {
    /// use std::time::Duration;
    /// use shylock_core::{AsyncLock, Backend, MemoryBackend};
    /// let backend = Backend::from(MemoryBackend::new());
    /// let guard = AsyncLock::with_backend("settle-doc", &backend).acquire().await?;
    /// drop(guard); // released in the background
    /// assert!(backend.settle(Duration::from_secs(5)).await);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn settle(&self, timeout: std::time::Duration) -> bool {
        match crate::rt::handle() {
            Ok(runtime) => {
                self.shared
                    .background
                    .settle(&runtime, crate::tick::deadline_after(timeout))
                    .await
            }
            Err(_) => true, // no runtime: no background work either
        }
    }

    /// The backend's description, for logs.
    pub fn describe(&self) -> &str {
        &self.shared.description
    }

    pub(crate) fn async_form(&self) -> Arc<dyn AsyncBackend> {
        Arc::clone(&self.shared.async_form)
    }

    #[cfg(feature = "conformance")]
    pub(crate) fn sync_form(&self) -> Arc<dyn SyncBackend> {
        Arc::clone(&self.shared.sync_form)
    }
}

impl Shared {
    pub(crate) fn clock_source(&self) -> ClockSource {
        self.async_form.clock()
    }
}

static DEFAULT: RwLock<Option<Backend>> = RwLock::new(None);

/// Set the process-wide default backend, as the Python original's
/// `configure(backend)`. Locks made without a backend use the default in
/// force when they are acquired. Configuring again replaces it.
///
/// ```
/// use shylock_core::{configure, Lock, MemoryBackend};
/// configure(MemoryBackend::new());
/// let guard = Lock::new("doc-configure").acquire().unwrap();
/// assert!(guard.is_held());
/// ```
pub fn configure(backend: impl Into<Backend>) {
    *DEFAULT.write().unwrap_or_else(|e| e.into_inner()) = Some(backend.into());
}

/// The default backend set by [`configure`], if any.
pub fn default_backend() -> Option<Backend> {
    DEFAULT.read().unwrap_or_else(|e| e.into_inner()).clone()
}
