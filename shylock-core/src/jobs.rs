//! The sync form's background work: the renewals of every blocking guard of
//! a backend handle, and clean-up releases, run from one timer queue by at
//! most [`THREADS`] threads per handle.
//!
//! A job is a step that runs, blocking, on one of the threads and says when
//! it wants to run again (or that it is done). The threads start with the
//! first job and stop after [`IDLE_EXIT`] without any. A handle with 10,000
//! blocking guards therefore uses [`THREADS`] threads, not 10,000, and a
//! guard is only returned once a thread is there to renew it.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use crate::tick::Tick;

/// The threads a handle's jobs run on, at most. Two, so that one slow
/// request does not hold every other renewal back.
pub(crate) const THREADS: usize = 2;
/// Threads without jobs for this long stop.
pub(crate) const IDLE_EXIT: Duration = Duration::from_secs(10);

/// One step of background work: returns when it wants to run again.
pub(crate) type Job = Box<dyn FnMut() -> Option<Tick> + Send>;

/// An id of a job, to cancel it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct JobId(u64);

#[derive(Default)]
struct State {
    /// When each job runs next (entries of cancelled jobs are skipped).
    queue: BinaryHeap<Reverse<(Tick, u64)>>,
    /// The jobs waiting in the queue (a running job is not here).
    jobs: HashMap<u64, Job>,
    /// The jobs running now, and those of them cancelled meanwhile.
    running: HashSet<u64>,
    cancelled: HashSet<u64>,
    next_id: u64,
    threads: usize,
}

/// A handle's queue of background jobs and its threads.
#[derive(Default)]
pub(crate) struct Jobs {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    state: Mutex<State>,
    wake: Condvar,
    /// Test support: fail to start threads, as an exhausted system would.
    #[cfg(test)]
    fail_spawn: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for Jobs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.inner.lock();
        f.debug_struct("Jobs")
            .field("jobs", &state.jobs.len())
            .field("threads", &state.threads)
            .finish()
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Jobs {
    /// Run `job` at `at` (and again whenever it asks). Starts the threads if
    /// none run.
    ///
    /// # Errors
    /// The operating system's error if no thread runs and none could be
    /// started: then nothing will run the job, and it is dropped.
    pub(crate) fn add(&self, at: Tick, job: Job) -> std::io::Result<JobId> {
        let mut state = self.inner.lock();
        let mut started = None;
        while state.threads < THREADS {
            let inner = Arc::clone(&self.inner);
            #[cfg(test)]
            if self
                .inner
                .fail_spawn
                .load(std::sync::atomic::Ordering::SeqCst)
            {
                started = Some(Err(std::io::Error::other("test: no threads left")));
                break;
            }
            match std::thread::Builder::new()
                .name("shylock-jobs".into())
                .stack_size(128 * 1024)
                .spawn(move || work(&inner))
            {
                Ok(_) => {
                    state.threads += 1;
                    started = Some(Ok(()));
                }
                Err(error) => {
                    started = Some(Err(error));
                    break;
                }
            }
        }
        if state.threads == 0 {
            return Err(match started {
                Some(Err(error)) => error,
                _ => std::io::Error::other("no thread for background work"),
            });
        }
        state.next_id += 1;
        let id = state.next_id;
        state.jobs.insert(id, job);
        state.queue.push(Reverse((at, id)));
        drop(state);
        self.inner.wake.notify_one();
        Ok(JobId(id))
    }

    /// Forget a job (it does not run again; a run under way finishes).
    pub(crate) fn cancel(&self, id: JobId) {
        let mut state = self.inner.lock();
        let job = state.jobs.remove(&id.0);
        if job.is_none() && state.running.contains(&id.0) {
            state.cancelled.insert(id.0);
        }
        drop(state);
        drop(job);
    }

    /// Test support: make thread starts fail.
    #[cfg(test)]
    pub(crate) fn fail_spawn(&self) {
        self.inner
            .fail_spawn
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// How many threads run now.
    #[cfg(test)]
    pub(crate) fn threads(&self) -> usize {
        self.inner.lock().threads
    }
}

fn work(inner: &Inner) {
    let mut state = inner.lock();
    loop {
        let Some(&Reverse((at, id))) = state.queue.peek() else {
            let (next, timeout) = inner
                .wake
                .wait_timeout(state, IDLE_EXIT)
                .unwrap_or_else(|e| e.into_inner());
            state = next;
            if timeout.timed_out() && state.queue.is_empty() {
                state.threads -= 1;
                return;
            }
            continue;
        };
        if !at.passed() {
            // Wait for the first job (or a new, earlier one); another thread
            // may take it first.
            state = inner
                .wake
                .wait_timeout(state, at.remaining())
                .unwrap_or_else(|e| e.into_inner())
                .0;
            continue;
        }
        state.queue.pop();
        let Some(mut job) = state.jobs.remove(&id) else {
            continue;
        };
        state.running.insert(id);
        drop(state);
        let next =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(&mut job)).unwrap_or_else(|_| {
                tracing::error!("a background job of shylock panicked; it is dropped");
                None
            });
        state = inner.lock();
        state.running.remove(&id);
        let cancelled = state.cancelled.remove(&id);
        if let Some(next) = next.filter(|_| !cancelled) {
            state.jobs.insert(id, job);
            state.queue.push(Reverse((next, id)));
        } else {
            // Dropped without the lock held: a job may own much.
            drop(state);
            drop(job);
            state = inner.lock();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn many_jobs_run_on_a_few_threads_and_cancel() {
        let jobs = Jobs::default();
        let runs = Arc::new(AtomicUsize::new(0));
        let mut ids = Vec::new();
        for _ in 0..1000 {
            let runs = Arc::clone(&runs);
            let mut left = 3;
            ids.push(
                jobs.add(
                    Tick::now(),
                    Box::new(move || {
                        runs.fetch_add(1, Ordering::SeqCst);
                        left -= 1;
                        (left > 0).then(|| Tick::now().add(Duration::from_millis(5)))
                    }),
                )
                .expect("add"),
            );
        }
        assert!(jobs.threads() <= THREADS);
        let until = std::time::Instant::now() + Duration::from_secs(10);
        while runs.load(Ordering::SeqCst) < 3000 && std::time::Instant::now() < until {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(runs.load(Ordering::SeqCst), 3000);
        let runs2 = Arc::new(AtomicUsize::new(0));
        let r = Arc::clone(&runs2);
        let id = jobs
            .add(
                Tick::now().add(Duration::from_millis(50)),
                Box::new(move || {
                    r.fetch_add(1, Ordering::SeqCst);
                    None
                }),
            )
            .expect("add");
        jobs.cancel(id);
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(
            runs2.load(Ordering::SeqCst),
            0,
            "a cancelled job does not run"
        );
    }

    /// Item 5 of the hardening issue: if no thread can renew a blocking
    /// guard, `acquire` fails (and leaves the lock free) instead of
    /// returning a guard whose lease silently lapses.
    #[test]
    fn no_guard_is_returned_that_nothing_renews() {
        use crate::{Backend, Error, Lock, MemoryBackend, Renewal};
        let backend = Backend::from(MemoryBackend::new());
        backend.shared.jobs.fail_spawn();
        let r = Lock::with_backend("no-threads", &backend).acquire();
        assert!(matches!(r, Err(Error::Runtime { .. })), "{r:?}");
        let free = Lock::with_backend("no-threads", &backend)
            .renewal(Renewal::Off)
            .try_acquire()
            .expect("try");
        assert!(free.is_some(), "the lock was released");
    }
}
