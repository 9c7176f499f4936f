//! A generation counter that tasks wait on.
//!
//! One mechanism for every waiter: a task that waits registers its waker
//! under the same mutex that guards the generation, so a bump after its
//! look always finds (and wakes) it, and a waiter that stops waiting
//! (its future dropped, say at a time-out) takes its waker out again. The
//! mutex is the shim's ([`crate::sync`]), so the loom models explore these
//! very interleavings (waiting with `loom::future::block_on`).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use crate::sync::{self, Mutex};

#[derive(Debug, Default)]
struct State {
    generation: u64,
    /// The wakers of the waiters registered now, by waiter key.
    waiters: Vec<(u64, Waker)>,
    next_key: u64,
}

/// Bumping the generation wakes every waiter.
#[derive(Debug, Default)]
pub(crate) struct Signal {
    state: Mutex<State>,
}

impl Signal {
    pub(crate) fn generation(&self) -> u64 {
        sync::lock(&self.state).generation
    }

    pub(crate) fn bump(&self) {
        let waiters = {
            let mut state = sync::lock(&self.state);
            state.generation += 1;
            std::mem::take(&mut state.waiters)
        };
        // Woken outside the lock: a waker may run its task at once.
        for (_, waker) in waiters {
            waker.wake();
        }
    }

    /// Resolves once the generation differs from `seen`.
    pub(crate) fn changed(&self, seen: u64) -> Changed<'_> {
        Changed {
            signal: self,
            seen,
            key: None,
        }
    }

    /// How many waiters are registered now (the models check none is left).
    #[cfg(loom)]
    pub(crate) fn registered(&self) -> usize {
        sync::lock(&self.state).waiters.len()
    }
}

/// The future of [`Signal::changed`]; dropping it unregisters its waker.
#[derive(Debug)]
pub(crate) struct Changed<'a> {
    signal: &'a Signal,
    seen: u64,
    /// Its registration, while registered.
    key: Option<u64>,
}

impl Future for Changed<'_> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        let mut state = sync::lock(&this.signal.state);
        if state.generation != this.seen {
            // A bump took the registration with it.
            this.key = None;
            return Poll::Ready(());
        }
        match this.key {
            Some(key) => {
                if let Some(entry) = state.waiters.iter_mut().find(|(k, _)| *k == key) {
                    if !entry.1.will_wake(cx.waker()) {
                        entry.1 = cx.waker().clone();
                    }
                } else {
                    state.waiters.push((key, cx.waker().clone()));
                }
            }
            None => {
                let key = state.next_key;
                state.next_key += 1;
                state.waiters.push((key, cx.waker().clone()));
                this.key = Some(key);
            }
        }
        Poll::Pending
    }
}

impl Drop for Changed<'_> {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            let mut state = sync::lock(&self.signal.state);
            state.waiters.retain(|(k, _)| *k != key);
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_bump_wakes_and_a_dropped_waiter_leaves_nothing_behind() {
        let signal = std::sync::Arc::new(Signal::default());
        let seen = signal.generation();
        // A waiter given up (a time-out) unregisters.
        let gone = tokio::time::timeout(std::time::Duration::from_millis(10), signal.changed(seen));
        assert!(gone.await.is_err());
        assert!(sync::lock(&signal.state).waiters.is_empty());
        let waiting = {
            let signal = std::sync::Arc::clone(&signal);
            tokio::spawn(async move { signal.changed(seen).await })
        };
        tokio::task::yield_now().await;
        signal.bump();
        waiting.await.expect("woken");
        assert!(sync::lock(&signal.state).waiters.is_empty());
        // Already moved on: ready at once.
        signal.changed(seen).await;
    }
}
