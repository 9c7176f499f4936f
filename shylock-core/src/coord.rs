//! Per-process coordination of waiters: whose turn it is to ask the backend
//! for a name, and wake-ups on local releases.
//!
//! All waiters of one name through one backend handle (tasks and threads,
//! both forms) share a [`Slot`]. Two rules keep the backend's load at one
//! poller per name and process without making any waiter depend on another:
//!
//! * **Turns.** A waiter asks the backend only when it holds the turn. The
//!   turn is a claim with a time limit ([`Turn`]): the waiter that takes it
//!   says until when it will ask again (its backoff delay, or
//!   [`CLAIM_WHILE_ASKING`] while its request is on its way). The others wait
//!   until then plus a grace ([`takeover_grace`]); if the claim was not
//!   renewed by then (its future is not being polled, its thread is stuck),
//!   the first of them to wake takes the turn over. So no waiter's progress
//!   depends on another future being polled.
//! * **Local holders.** While a holder in this process has the lock, nobody
//!   asks the backend: its release (or loss) wakes the waiters at once.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::LockName;
use crate::lease::LeaseState;
use crate::signal::Signal;
use crate::sync::{self, Arc, Mutex, MutexGuard};
use crate::tick::Tick;

/// How long a turn is claimed while its request is on its way (an answer
/// that takes longer lets another waiter ask too).
pub(crate) const CLAIM_WHILE_ASKING: Duration = Duration::from_secs(1);

/// How long past the turn holder's own time a waiter waits before it takes
/// the turn over: twice the longest backoff wait, at least 100 ms.
pub(crate) fn takeover_grace(backoff_max: Duration) -> Duration {
    backoff_max
        .saturating_mul(2)
        .max(Duration::from_millis(100))
}

/// Who may ask the backend next, and when.
#[derive(Debug, Default)]
struct Turn {
    /// The waiter holding the turn (0: nobody).
    holder: u64,
    /// When the holder will ask again; after that (and a grace), anyone may.
    next: Option<Instant>,
}

/// The waiters and holders of one name in this process.
#[derive(Debug, Default)]
pub(crate) struct Slot {
    /// Bumped when a local holder releases or loses the lock (its lease
    /// keeps a reference to bump it), and when the turn is given up.
    pub(crate) signal: Arc<Signal>,
    turn: Mutex<Turn>,
    /// The lease of the latest holder in this process, if any (whether it
    /// still holds the lock, its state says).
    local: Mutex<Option<std::sync::Arc<LeaseState>>>,
}

impl Slot {
    /// A holder in this process released or lost the lock: wake the
    /// waiters at once.
    pub(crate) fn note_release(&self) {
        self.signal.bump();
    }

    /// Until when a holder in this process holds the lock, if one does: its
    /// release wakes the waiters, so they need not ask the backend before.
    pub(crate) fn local_hold_until(&self) -> Option<Tick> {
        let lease = sync::lock(&self.local).clone()?;
        let until = lease.valid_until();
        (!lease.is_stopped() && lease.loss().is_none() && !until.passed()).then_some(until)
    }

    fn turn(&self) -> MutexGuard<'_, Turn> {
        sync::lock(&self.turn)
    }
}

/// All slots of one backend handle.
#[derive(Debug, Default)]
pub(crate) struct Coordinator {
    slots: Mutex<HashMap<LockName, Arc<Slot>>>,
}

/// A reference to a slot; the slot is forgotten when the last one goes.
#[derive(Debug)]
pub(crate) struct SlotRef {
    coord: std::sync::Arc<Coordinator>,
    name: LockName,
    slot: Option<Arc<Slot>>,
}

impl Coordinator {
    pub(crate) fn slot(self: &std::sync::Arc<Self>, name: &LockName) -> SlotRef {
        let mut slots = sync::lock(&self.slots);
        let slot = Arc::clone(slots.entry(name.clone()).or_default());
        SlotRef {
            coord: std::sync::Arc::clone(self),
            name: name.clone(),
            slot: Some(slot),
        }
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        sync::lock(&self.slots).len()
    }
}

impl SlotRef {
    pub(crate) fn get(&self) -> &Slot {
        self.slot.as_deref().expect("slot is present until drop")
    }

    /// A holder in this process got the lock: waiters wait for its release
    /// (or loss) instead of asking the backend.
    pub(crate) fn set_local_holder(&self, lease: &std::sync::Arc<LeaseState>) {
        if let Some(slot) = &self.slot {
            *sync::lock(&slot.local) = Some(std::sync::Arc::clone(lease));
            lease.notify_on_loss(Arc::clone(&slot.signal));
        }
    }
}

impl Drop for SlotRef {
    fn drop(&mut self) {
        // Slot Arcs are cloned only by `Coordinator::slot` and dropped only
        // here, both under the map's lock (a lease keeps its slot's signal,
        // not the slot), so a count of 2 (the map's and this one) means this
        // is the last reference.
        let mut slots = sync::lock(&self.coord.slots);
        if let Some(slot) = self.slot.take()
            && Arc::strong_count(&slot) == 2
        {
            slots.remove(&self.name);
        }
    }
}

/// What a waiter should do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Next {
    /// Ask the backend (the turn is this waiter's).
    Ask,
    /// Wait until then (or a wake-up), then look again.
    WaitUntil(Instant),
}

/// `std`, also under loom (see [`crate::sync`]): only uniqueness matters.
static WAITER_IDS: AtomicU64 = AtomicU64::new(1);

/// A waiter of one name.
#[derive(Debug)]
pub(crate) struct Waiter {
    pub(crate) slot: SlotRef,
    id: u64,
}

impl Waiter {
    pub(crate) fn new(slot: SlotRef) -> Self {
        Waiter {
            slot,
            id: WAITER_IDS.fetch_add(1, Ordering::Relaxed),
        }
    }

    /// Take the turn if it is free, this waiter's, or overdue by `grace`;
    /// otherwise say until when to wait.
    pub(crate) fn take_turn(&self, grace: Duration) -> Next {
        self.take_turn_at(grace, Instant::now())
    }

    /// [`Waiter::take_turn`] at `now` (the loom models pass their own times).
    pub(crate) fn take_turn_at(&self, grace: Duration, now: Instant) -> Next {
        let mut turn = self.slot.get().turn();
        let due = match turn.next {
            None => now,
            Some(next) if turn.holder == self.id => next,
            Some(next) => next.checked_add(grace).unwrap_or(next),
        };
        if turn.holder == 0 || now >= due {
            if turn.holder != self.id && turn.holder != 0 {
                tracing::debug!("a waiter takes over an overdue polling turn");
            }
            turn.holder = self.id;
            turn.next = now.checked_add(CLAIM_WHILE_ASKING);
            Next::Ask
        } else {
            Next::WaitUntil(due)
        }
    }

    /// This waiter asked and will ask again at `next`.
    pub(crate) fn keep_turn_until(&self, next: Instant) {
        let mut turn = self.slot.get().turn();
        if turn.holder == self.id {
            turn.next = Some(next);
        }
    }

    /// Give the turn up (if it is this waiter's), waking the others.
    fn give_up_turn(&self) {
        let mut turn = self.slot.get().turn();
        if turn.holder == self.id {
            *turn = Turn::default();
            drop(turn);
            self.slot.get().signal.bump();
        }
    }

    /// Keep the slot reference, stop being a waiter.
    pub(crate) fn into_slot(mut self) -> SlotRef {
        self.give_up_turn();
        let coord = std::sync::Arc::clone(&self.slot.coord);
        let name = self.slot.name.clone();
        let slot = self.slot.slot.take();
        SlotRef { coord, name, slot }
    }
}

impl Drop for Waiter {
    fn drop(&mut self) {
        if self.slot.slot.is_some() {
            self.give_up_turn();
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn one_turn_per_slot_taken_over_when_overdue_and_slots_are_forgotten() {
        let coord = Arc::new(Coordinator::default());
        let name = LockName::new("x").expect("name");
        let grace = Duration::from_millis(100);
        let a = Waiter::new(coord.slot(&name));
        let b = Waiter::new(coord.slot(&name));
        assert_eq!(a.take_turn(grace), Next::Ask);
        assert!(matches!(b.take_turn(grace), Next::WaitUntil(_)));
        // A keeps its turn for 10 ms; B may take it 10 ms + grace later.
        a.keep_turn_until(Instant::now() + Duration::from_millis(10));
        let Next::WaitUntil(until) = b.take_turn(grace) else {
            panic!("B must wait");
        };
        assert!(until >= Instant::now() + Duration::from_millis(50));
        std::thread::sleep(Duration::from_millis(120));
        assert_eq!(
            b.take_turn(grace),
            Next::Ask,
            "an overdue turn is taken over"
        );
        let seen = a.slot.get().signal.generation();
        let held = b.into_slot();
        assert_ne!(a.slot.get().signal.generation(), seen, "giving up wakes");
        assert_eq!(a.take_turn(grace), Next::Ask);
        drop(a);
        assert_eq!(coord.len(), 1);
        drop(held);
        assert_eq!(coord.len(), 0);
    }
}
