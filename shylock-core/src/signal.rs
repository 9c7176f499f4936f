//! A generation counter that tasks and threads can wait on.

use std::sync::{Condvar, Mutex};
use std::time::Instant;

/// Bumping the generation wakes every waiter, async or blocking.
#[derive(Debug, Default)]
pub(crate) struct Signal {
    generation: Mutex<u64>,
    condvar: Condvar,
    notify: tokio::sync::Notify,
}

impl Signal {
    pub(crate) fn generation(&self) -> u64 {
        *self.generation.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn bump(&self) {
        *self.generation.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        self.condvar.notify_all();
        self.notify.notify_waiters();
    }

    /// Block until the generation differs from `seen` or `until` passes.
    pub(crate) fn wait_blocking(&self, seen: u64, until: Option<Instant>) {
        let mut generation = self.generation.lock().unwrap_or_else(|e| e.into_inner());
        while *generation == seen {
            match until {
                None => {
                    generation = self
                        .condvar
                        .wait(generation)
                        .unwrap_or_else(|e| e.into_inner());
                }
                Some(until) => {
                    let now = Instant::now();
                    if now >= until {
                        return;
                    }
                    generation = self
                        .condvar
                        .wait_timeout(generation, until - now)
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                }
            }
        }
    }

    /// Wait until the generation differs from `seen` or `until` passes.
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
}
