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
//! * **Handoff** ([`Handoff`](crate::Handoff)). A waiting acquisition
//!   registers an [`Entry`] in the slot's [`Cohort`] queue (claimable except
//!   while its own request is on its way); a local
//!   holder's release claims the first one ([`Slot::claim`]) and hands the
//!   lock to its owner id in one backend command, then leaves the outcome
//!   in the entry's [`Mail`] ([`Slot::finish`]). While a handoff is on its
//!   way the lock counts as held here. The cohort also keeps the fairness
//!   bound: how many handoffs this turn may make, since when this process
//!   holds the lock, and how long its waiters hold back after a global
//!   release the bound forced.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::backend::Grant;
use crate::clock::Estimate;
use crate::lease::LeaseState;
use crate::signal::Signal;
use crate::sync::{self, Arc, Mutex, MutexGuard};
use crate::tick::Tick;
use crate::{Handoff, LockName, LockOptions, OwnerId};

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
    /// The waiters registered for a handoff, and the fairness bound.
    cohort: Mutex<Cohort>,
}

/// How long a contender seen in another process counts for the hold-back.
const REMOTE_MEMORY: Duration = Duration::from_secs(1);

/// The handoff state of one slot (see the [module docs](self)).
#[derive(Debug, Default)]
pub(crate) struct Cohort {
    /// Waiters registered for a handoff, oldest first (entries no longer
    /// waiting are dropped by the next claim).
    queue: VecDeque<std::sync::Arc<Entry>>,
    /// A handoff is on its way: the lock counts as held here.
    in_flight: bool,
    /// Handoffs since this process last got the lock from the backend.
    handoffs: u32,
    /// How many this turn may make.
    allowance: u32,
    /// When this process last got the lock from the backend.
    since: Option<Instant>,
    /// The token of this process's last holding of the name.
    last_token: Option<u64>,
    /// This process's waiters ask nobody before then.
    hold_back_until: Option<Instant>,
    /// When another process was last seen holding or taking the lock.
    remote_seen: Option<Instant>,
    /// When this process's waiters last held back.
    last_hold_back: Option<Instant>,
}

impl Cohort {
    /// When this process last held back for others, if the backend has not
    /// granted it the lock since.
    fn yielded(&self) -> Option<Instant> {
        self.last_hold_back
            .filter(|held_back| self.since.is_none_or(|since| *held_back > since))
    }
}

/// A waiter registered for a handoff.
#[derive(Debug)]
pub(crate) struct Entry {
    /// The waiter's owner id: the new owner of a handoff.
    pub(crate) owner: OwnerId,
    /// The waiter's options (its lease, its safety margin).
    pub(crate) opts: LockOptions,
    mail: Mutex<Mail>,
}

/// What a handoff left for its waiter.
#[derive(Debug)]
pub(crate) enum Mail {
    /// Registered; nothing yet.
    Waiting,
    /// Registered, but asking the backend itself (its request on its way):
    /// not to be handed the lock now.
    Asking,
    /// A releaser is handing the lock to this waiter.
    Claimed,
    /// The lock is this waiter's.
    Delivered(Handed),
    /// The hand-over's outcome is unknown: the waiter's owner id may hold
    /// the record (its acquisition asks again, or cleans up if it ends).
    Unknown,
    /// Nothing was handed over (the releaser's holding was lost, or it did
    /// not send).
    Declined,
    /// The waiter stopped waiting (asked itself, or went away): a releaser
    /// that had claimed it cleans up after it.
    Withdrawn,
}

/// A lock handed to a waiter.
#[derive(Debug)]
pub(crate) struct Handed {
    pub(crate) grant: Grant,
    /// The clock estimate the hand-over was sent with, and when.
    pub(crate) estimate: Estimate,
    pub(crate) sent: crate::tick::Tick,
    /// The new holding's lease (already this slot's local holder).
    pub(crate) lease: std::sync::Arc<LeaseState>,
}

/// What a waiter finds in its entry.
#[derive(Debug)]
pub(crate) enum Looked {
    /// Still registered (waiting or claimed).
    Pending { claimed: bool },
    /// Handed over.
    Handed(Handed),
    /// The outcome is unknown.
    Unknown,
    /// Nothing (declined, or withdrawn).
    Nothing,
}

impl Entry {
    pub(crate) fn new(owner: OwnerId, opts: LockOptions) -> Self {
        Entry {
            owner,
            opts,
            mail: Mutex::new(Mail::Waiting),
        }
    }

    /// Take what was left; `asking`: a waiting entry becomes asking (the
    /// waiter is about to ask the backend), an asking one waiting again
    /// (`Some(false)`: its request was answered).
    pub(crate) fn look(&self, asking: Option<bool>) -> Looked {
        let mut mail = sync::lock(&self.mail);
        match std::mem::replace(&mut *mail, Mail::Withdrawn) {
            previous @ (Mail::Waiting | Mail::Asking) => {
                *mail = match asking {
                    Some(true) => Mail::Asking,
                    Some(false) => Mail::Waiting,
                    None => previous,
                };
                Looked::Pending { claimed: false }
            }
            Mail::Claimed => {
                *mail = Mail::Claimed;
                Looked::Pending { claimed: true }
            }
            Mail::Delivered(handed) => Looked::Handed(handed),
            Mail::Unknown => Looked::Unknown,
            Mail::Declined | Mail::Withdrawn => Looked::Nothing,
        }
    }

    /// The waiter goes away: withdraw. Returns what it must clean up: a
    /// handed lock (its lease is marked lost here) or an unknown outcome
    /// (true); a claimed entry is cleaned up by its releaser.
    pub(crate) fn abandon(&self) -> bool {
        let mut mail = sync::lock(&self.mail);
        match std::mem::replace(&mut *mail, Mail::Withdrawn) {
            Mail::Delivered(handed) => {
                drop(mail);
                handed.lease.mark_lost(crate::LossReason::Released);
                true
            }
            Mail::Unknown => true,
            // A claimed entry: its releaser sees it withdrawn and cleans up.
            Mail::Waiting | Mail::Asking | Mail::Claimed | Mail::Declined | Mail::Withdrawn => {
                false
            }
        }
    }
}

/// What a releaser does, per [`Slot::claim`].
#[derive(Debug)]
pub(crate) enum Claim {
    /// Hand the lock to this waiter.
    To(std::sync::Arc<Entry>),
    /// Release globally.
    Release,
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
        if sync::lock(&self.cohort).in_flight {
            return Some(Tick::now().add(CLAIM_WHILE_ASKING));
        }
        let lease = sync::lock(&self.local).clone()?;
        let until = lease.valid_until();
        (!lease.is_stopped() && lease.loss().is_none() && !until.passed()).then_some(until)
    }

    fn turn(&self) -> MutexGuard<'_, Turn> {
        sync::lock(&self.turn)
    }

    fn cohort(&self) -> MutexGuard<'_, Cohort> {
        sync::lock(&self.cohort)
    }

    /// Register `entry` for a handoff.
    pub(crate) fn register(&self, entry: &std::sync::Arc<Entry>) {
        self.cohort().queue.push_back(std::sync::Arc::clone(entry));
    }

    /// A releaser with `handoff` options: the first waiting entry to hand
    /// the lock to, if the bound allows; otherwise a global release (and,
    /// if waiters are left and another process contends, a hold-back of
    /// `hold_back` for them).
    pub(crate) fn claim(&self, handoff: &Handoff, hold_back: Duration) -> Claim {
        let mut cohort = self.cohort();
        let now = Instant::now();
        let within_bound = handoff.is_on()
            && cohort.handoffs < cohort.allowance.min(handoff.max_handoffs)
            && cohort
                .since
                .is_some_and(|since| now.saturating_duration_since(since) < handoff.max_hold);
        let mut waiting = false;
        let mut claimed = None;
        // Entries asking the backend stay registered, in their order.
        let mut asking = Vec::new();
        while let Some(entry) = cohort.queue.pop_front() {
            let mut mail = sync::lock(&entry.mail);
            match *mail {
                Mail::Waiting => {}
                Mail::Asking => {
                    drop(mail);
                    asking.push(entry);
                    continue;
                }
                _ => continue,
            }
            waiting = true;
            if within_bound {
                *mail = Mail::Claimed;
                drop(mail);
                claimed = Some(entry);
            } else {
                drop(mail);
                cohort.queue.push_front(entry);
            }
            break;
        }
        for entry in asking.into_iter().rev() {
            cohort.queue.push_front(entry);
        }
        if let Some(entry) = claimed {
            cohort.in_flight = true;
            cohort.handoffs += 1;
            return Claim::To(entry);
        }
        // Hold back after every bounded turn while other processes were
        // seen contending lately, and at least once per `REMOTE_MEMORY`
        // otherwise: a holder never sees a remote waiter (nobody here asks
        // while it holds), so without a hold-back now and then a newcomer
        // elsewhere would have to win the race against this process's own
        // waiters, which ask at once.
        let recent = |at: Option<Instant>| {
            at.is_some_and(|at| now.saturating_duration_since(at) < REMOTE_MEMORY)
        };
        if waiting && (recent(cohort.remote_seen) || !recent(cohort.last_hold_back)) {
            cohort.last_hold_back = Some(now);
            cohort.hold_back_until = now.checked_add(hold_back);
            tracing::debug!(
                handoffs = cohort.handoffs,
                ?hold_back,
                "handoff bound reached: released globally, local waiters hold back"
            );
        }
        Claim::Release
    }

    /// The outcome of a claimed handoff: `Ok(handed)` delivered, `Err(mail)`
    /// (`Unknown` or `Declined`) left for the waiter. Returns false if the
    /// waiter had withdrawn (the caller cleans up after it).
    pub(crate) fn finish(&self, entry: &Entry, outcome: Result<Handed, Mail>) -> bool {
        let mut cohort = self.cohort();
        cohort.in_flight = false;
        let mut mail = sync::lock(&entry.mail);
        let present = !matches!(*mail, Mail::Withdrawn);
        match outcome {
            Ok(handed) => {
                cohort.last_token = Some(handed.grant.token.get());
                if present {
                    *sync::lock(&self.local) = Some(std::sync::Arc::clone(&handed.lease));
                    handed.lease.notify_on_loss(Arc::clone(&self.signal));
                    *mail = Mail::Delivered(handed);
                }
            }
            Err(left) => {
                if present {
                    *mail = left;
                }
            }
        }
        drop(mail);
        drop(cohort);
        self.signal.bump();
        present
    }

    /// This process got the lock from the backend with `token`: a new
    /// turn, whose allowance is how many grants other processes had since
    /// this process last held it (at least one; all of `max` if none).
    pub(crate) fn note_global_grant(&self, token: u64, max: u32) {
        let mut cohort = self.cohort();
        let now = Instant::now();
        let others = cohort
            .last_token
            .map_or(0, |last| token.saturating_sub(last).saturating_sub(1));
        cohort.allowance = if others == 0 {
            max
        } else {
            cohort.remote_seen = Some(now);
            u32::try_from(others)
                .unwrap_or(u32::MAX)
                .clamp(1, max.max(1))
        };
        cohort.handoffs = 0;
        cohort.since = Some(now);
        cohort.last_token = Some(token);
        cohort.hold_back_until = None;
    }

    /// An acquisition of this process found the lock held elsewhere.
    /// Returns what its next wait depends on: whether this process has
    /// yielded (see [`Cohort::yielded`]), and when the backend last granted
    /// it the lock.
    pub(crate) fn note_remote_busy(&self) -> (bool, Option<Instant>) {
        let mut cohort = self.cohort();
        cohort.remote_seen = Some(Instant::now());
        (cohort.yielded().is_some(), cohort.since)
    }

    /// Until when this process's waiters leave the lock to others, if now.
    /// When this process last held back for others (after its bound), if
    /// the backend has not granted it the lock since: its waiters poll at
    /// their longest wait.
    #[cfg(test)]
    pub(crate) fn yielded(&self) -> Option<Instant> {
        self.cohort().yielded()
    }

    pub(crate) fn hold_back_until(&self) -> Option<Instant> {
        self.cohort()
            .hold_back_until
            .filter(|until| *until > Instant::now())
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

    #[test]
    fn a_process_that_held_back_has_yielded_until_the_backend_grants_it_again() {
        let coord = Arc::new(Coordinator::default());
        let name = LockName::new("y").expect("name");
        let slot = coord.slot(&name);
        let handoff = Handoff {
            max_handoffs: 1,
            ..Handoff::default()
        };
        let hold_back = Duration::from_millis(60);
        slot.get().note_global_grant(5, handoff.max_handoffs);
        assert_eq!(slot.get().yielded(), None);
        for _ in 0..2 {
            let entry = std::sync::Arc::new(Entry::new(OwnerId::random(), LockOptions::default()));
            slot.get().register(&entry);
        }
        assert!(matches!(
            slot.get().claim(&handoff, hold_back),
            Claim::To(_)
        ));
        assert_eq!(slot.get().yielded(), None, "a handoff is no hold-back");
        // The bound is reached with a waiter left: released globally, and
        // the waiters here hold back.
        assert!(matches!(
            slot.get().claim(&handoff, hold_back),
            Claim::Release
        ));
        let at = slot.get().yielded().expect("held back");
        assert!(slot.get().hold_back_until() > Some(at));
        std::thread::sleep(Duration::from_millis(2));
        slot.get().note_global_grant(9, handoff.max_handoffs);
        assert_eq!(slot.get().yielded(), None, "granted again");
    }
}
