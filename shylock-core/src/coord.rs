//! Per-process coordination of waiters: one poller per lock name and
//! backend handle, and wake-ups on local releases.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Instant;

use crate::LockName;
use crate::lease::LeaseState;
use crate::signal::Signal;

/// The waiters and holders of one name in this process.
#[derive(Debug, Default)]
pub(crate) struct Slot {
    /// Bumped when a local holder releases, or the poller steps down.
    pub(crate) signal: Signal,
    poller: Mutex<bool>,
    /// The lease of the holder in this process, if any.
    local: Mutex<Weak<LeaseState>>,
}

impl Slot {
    /// A holder in this process released or lost the lock: wake the
    /// waiters at once.
    pub(crate) fn note_release(&self) {
        self.signal.bump();
    }

    /// Until when a holder in this process holds the lock, if one does: its
    /// release wakes the waiters, so they need not ask the backend before.
    pub(crate) fn local_hold_until(&self) -> Option<Instant> {
        let lease = self
            .local
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .upgrade()?;
        let until = lease.valid_until();
        (!lease.is_stopped() && lease.loss().is_none() && until > Instant::now()).then_some(until)
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
    coord: Arc<Coordinator>,
    name: LockName,
    slot: Option<Arc<Slot>>,
}

impl Coordinator {
    pub(crate) fn slot(self: &Arc<Self>, name: &LockName) -> SlotRef {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        let slot = Arc::clone(slots.entry(name.clone()).or_default());
        SlotRef {
            coord: Arc::clone(self),
            name: name.clone(),
            slot: Some(slot),
        }
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.slots.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

impl SlotRef {
    pub(crate) fn get(&self) -> &Slot {
        self.slot.as_deref().expect("slot is present until drop")
    }

    /// A holder in this process got the lock: waiters wait for its release
    /// (or loss) instead of asking the backend.
    pub(crate) fn set_local_holder(&self, lease: &Arc<LeaseState>) {
        if let Some(slot) = &self.slot {
            *slot.local.lock().unwrap_or_else(|e| e.into_inner()) = Arc::downgrade(lease);
            lease.notify_on_loss(Arc::downgrade(slot));
        }
    }
}

impl Drop for SlotRef {
    fn drop(&mut self) {
        // Every clone and drop of a slot's Arc happens under the map's lock,
        // so the count is exact here.
        let mut slots = self.coord.slots.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(slot) = self.slot.take()
            && Arc::strong_count(&slot) == 2
        {
            slots.remove(&self.name);
        }
    }
}

/// A waiter of one name: at most one waiter per slot is the poller.
#[derive(Debug)]
pub(crate) struct Waiter {
    pub(crate) slot: SlotRef,
    leading: bool,
}

impl Waiter {
    pub(crate) fn new(slot: SlotRef) -> Self {
        Waiter {
            slot,
            leading: false,
        }
    }

    /// Become the poller if there is none. True if this waiter polls.
    pub(crate) fn try_lead(&mut self) -> bool {
        if !self.leading {
            let mut poller = self
                .slot
                .get()
                .poller
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if !*poller {
                *poller = true;
                self.leading = true;
            }
        }
        self.leading
    }

    /// Stop polling and let another waiter take over.
    pub(crate) fn resign(&mut self) {
        if self.leading {
            self.leading = false;
            *self
                .slot
                .get()
                .poller
                .lock()
                .unwrap_or_else(|e| e.into_inner()) = false;
            self.slot.get().signal.bump();
        }
    }

    /// Keep the slot reference, stop being a waiter.
    pub(crate) fn into_slot(mut self) -> SlotRef {
        self.resign();
        let coord = Arc::clone(&self.slot.coord);
        let name = self.slot.name.clone();
        let slot = self.slot.slot.take();
        SlotRef { coord, name, slot }
    }
}

impl Drop for Waiter {
    fn drop(&mut self) {
        if self.slot.slot.is_some() {
            self.resign();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_poller_per_slot_and_slots_are_forgotten() {
        let coord = Arc::new(Coordinator::default());
        let name = LockName::new("x").expect("name");
        let mut a = Waiter::new(coord.slot(&name));
        let mut b = Waiter::new(coord.slot(&name));
        assert!(a.try_lead());
        assert!(!b.try_lead());
        let seen = b.slot.get().signal.generation();
        a.resign();
        assert_ne!(b.slot.get().signal.generation(), seen);
        assert!(b.try_lead());
        let held = b.into_slot();
        assert!(a.try_lead());
        drop(a);
        assert_eq!(coord.len(), 1);
        drop(held);
        assert_eq!(coord.len(), 0);
    }
}
