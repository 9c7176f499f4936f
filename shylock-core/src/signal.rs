//! A generation counter that tasks and threads can wait on.

use std::time::Instant;

use crate::sync::{self, Condvar, Mutex};

/// Bumping the generation wakes every waiter, async or blocking.
///
/// Under `--cfg loom` only the blocking side exists (loom cannot model
/// tokio's `Notify`): the loom models wait with [`Signal::wait_blocking`].
#[derive(Debug, Default)]
pub(crate) struct Signal {
    generation: Mutex<u64>,
    condvar: Condvar,
    #[cfg(not(loom))]
    notify: tokio::sync::Notify,
}

impl Signal {
    pub(crate) fn generation(&self) -> u64 {
        *sync::lock(&self.generation)
    }

    pub(crate) fn bump(&self) {
        *sync::lock(&self.generation) += 1;
        self.condvar.notify_all();
        #[cfg(not(loom))]
        self.notify.notify_waiters();
    }

    /// Block until the generation differs from `seen` or `until` passes.
    pub(crate) fn wait_blocking(&self, seen: u64, until: Option<Instant>) {
        let mut generation = sync::lock(&self.generation);
        while *generation == seen {
            match until {
                None => generation = sync::wait(&self.condvar, generation),
                Some(until) => {
                    let now = Instant::now();
                    if now >= until {
                        return;
                    }
                    generation = sync::wait_timeout(&self.condvar, generation, until - now);
                }
            }
        }
    }

    /// Wait until the generation differs from `seen` or `until` passes.
    #[cfg(not(loom))]
    pub(crate) async fn wait_async(&self, seen: u64, until: Option<Instant>) {
        loop {
            let notified = self.notify.notified();
            let mut notified = std::pin::pin!(notified);
            notified.as_mut().enable();
            if self.generation() != seen {
                return;
            }
            match until {
                None => notified.await,
                Some(until) => {
                    if tokio::time::timeout_at(until.into(), notified)
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            }
        }
    }

    /// Not modelled: a `--cfg loom` build runs only the loom models, which
    /// wait with [`Signal::wait_blocking`] (this keeps its callers compiling).
    #[cfg(loom)]
    pub(crate) async fn wait_async(&self, seen: u64, until: Option<Instant>) {
        let _ = (seen, until);
        unimplemented!("async waits are not modelled under loom")
    }
}
