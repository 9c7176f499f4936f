//! Loom models of the coordination code (`coord`, `signal`, `lease`): loom
//! runs each model under every interleaving of its threads (up to the
//! preemption bound) and fails on a failed assertion, a deadlock (a thread
//! waiting for a wake-up that never comes) or a leaked `Arc`.
//!
//! Run with (scripts/test.sh does):
//!
//! ```text
//! RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom \
//!     cargo test -p shylock-core --release --lib loom
//! ```
//!
//! Waiters wait as the core's tasks do (`Signal::changed`, a waker
//! registry under the shim's mutex), driven by `loom::future::block_on`.
//! Loom does not model time: waits here have no time limit (a waiter must
//! be woken), and the turn model passes its own instants. A deadlock aborts
//! the test binary (loom's objects panic again while the threads unwind):
//! the message before the abort starts with `deadlock;`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use loom::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use loom::thread;

use crate::coord::{CLAIM_WHILE_ASKING, Coordinator, Next, SlotRef, Waiter, takeover_grace};
use crate::lease::LeaseState;
use crate::tick::Tick;
use crate::{LockName, LossReason, Timestamp};

/// The preemption bound of the models with three or four threads (on two
/// cores, bound 4 takes seconds, 5 about 40 s, 6 over a
/// minute; `LOOM_MAX_PREEMPTIONS` overrides it). The smaller models are
/// explored exhaustively.
const BOUND: Option<usize> = Some(4);

/// Runs `f` under loom with at most `preemption_bound` preemptions per
/// execution (`None`: all interleavings) unless `LOOM_MAX_PREEMPTIONS` says
/// otherwise, and prints how many executions it took (seen with
/// `--nocapture`).
fn model<F: Fn() + Sync + Send + 'static>(preemption_bound: Option<usize>, f: F) {
    use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
    let mut builder = loom::model::Builder::new();
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = preemption_bound;
    }
    let executions = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&executions);
    builder.check(move || {
        counted.fetch_add(1, Relaxed);
        f();
    });
    println!(
        "{}: {} executions",
        std::thread::current().name().unwrap_or("model"),
        executions.load(Relaxed)
    );
}

fn name() -> LockName {
    LockName::new("x").expect("name")
}

/// A lease valid for an hour (nothing expires while a model runs).
fn live_lease() -> Arc<LeaseState> {
    Arc::new(LeaseState::new(
        Tick::now().add(Duration::from_secs(3600)),
        Timestamp::EPOCH,
    ))
}

/// A waiter's loop while a holder in this process has the lock (as in
/// `Acquisition::wait_for_turn`): read the generation, look, wait.
fn wait_while_held_here(slot: &SlotRef) {
    loop {
        let seen = slot.get().signal.generation();
        if slot.get().local_hold_until().is_none() {
            return;
        }
        loom::future::block_on(slot.get().signal.changed(seen));
    }
}

/// The end of a local holding (a release, or a loss found by the renewal)
/// races two waiters that look at the holding and go to sleep: no waiter
/// sleeps through it (loom reports a deadlock if one does), and the slot is
/// forgotten with its last reference.
fn holding_ends_while_waiters_register(lost: bool) {
    model(BOUND, move || {
        let coord = Arc::new(Coordinator::default());
        let holder = coord.slot(&name());
        let lease = live_lease();
        holder.set_local_holder(&lease);
        let waiters: Vec<_> = (0..2)
            .map(|_| {
                let slot = coord.slot(&name());
                thread::spawn(move || wait_while_held_here(&slot))
            })
            .collect();
        if lost {
            // Only the lease's link to its slot's signal wakes the waiters.
            assert!(lease.mark_lost(LossReason::Taken));
        } else {
            // As `algo::release`: stop the lease, release, wake.
            assert_eq!(lease.stop(), None);
            holder.get().note_release();
        }
        for waiter in waiters {
            waiter.join().expect("waiter");
        }
        assert_eq!(
            holder.get().signal.registered(),
            0,
            "no waker is left registered"
        );
        drop(holder);
        assert_eq!(
            coord.len(),
            0,
            "the slot is forgotten with its last reference"
        );
    });
}

#[test]
fn loom_release_races_waiter_registration() {
    holding_ends_while_waiters_register(false);
}

#[test]
fn loom_loss_races_waiter_registration() {
    holding_ends_while_waiters_register(true);
}

/// Look for `waiter`'s turn until it is told to ask; then count it among
/// the waiters asking, check that it is the only one, and return the instant
/// it was told at. It looks at `times[0]`; each `WaitUntil` is then followed
/// by a look at the next instant (its wait timed out; loom has no time, so
/// the time-out may come at any point of the interleaving), and after the
/// last, by a wait that only a bump ends (a give-up must wake it).
fn wait_for_turn(
    waiter: &Waiter,
    grace: Duration,
    times: &[Instant],
    asking: &AtomicUsize,
) -> Instant {
    let mut times = times.iter().copied();
    let mut now = times.next().expect("an instant");
    loop {
        let seen = waiter.slot.get().signal.generation();
        match waiter.take_turn_at(grace, now) {
            Next::Ask => {
                let others = asking.fetch_add(1, SeqCst);
                assert_eq!(others, 0, "two waiters hold the turn (none overdue)");
                return now;
            }
            Next::WaitUntil(_) => match times.next() {
                Some(later) => now = later,
                None => loom::future::block_on(waiter.slot.get().signal.changed(seen)),
            },
        }
    }
}

/// Waiter A asked at `t0`, said it would ask again at `t0 + d`, did (its own
/// claim is due without the grace), said it would ask again at `t0 + 2d`,
/// then stalled. At `late` (that claim overdue by the grace) waiter B arrives,
/// and may take the turn over; meanwhile A wakes, renews its claim
/// (`keep_turn_until(late + d)`) and looks for its turn at `late + d`. If B
/// has to wait, it looks again at `late + d + CLAIM_WHILE_ASKING + grace / 2`:
/// past A's renewed claim and its grace (B may take that over), but within
/// the grace of the claim A makes if it asks at `late + d`. A waiter told to
/// ask sends its request; when the answer is back it says when it asks
/// again (`keep_turn_until`), then gives the turn up (A by `into_slot`, as
/// when it got the lock; B by being dropped, as when cancelled), which must
/// wake the other, whose last wait has no time limit.
///
/// Invariant: a request on its way claims the turn for `CLAIM_WHILE_ASKING`,
/// and the instants used never pass that claim and its grace, so at most one
/// waiter at a time has been told `Ask` and not had its answer (A's claim
/// from before the model, which B may take over, is not counted).
#[test]
fn loom_turn_taken_over_while_its_owner_wakes() {
    model(None, || {
        let t0 = Instant::now();
        let grace = takeover_grace(Duration::ZERO);
        let d = Duration::from_millis(10);
        let late = t0 + 2 * d + grace;
        let renewed = late + d;
        let timer = renewed + CLAIM_WHILE_ASKING + grace / 2;
        let coord = Arc::new(Coordinator::default());
        let asking = Arc::new(AtomicUsize::new(0));

        let a = Waiter::new(coord.slot(&name()));
        assert_eq!(a.take_turn_at(grace, t0), Next::Ask);
        a.keep_turn_until(t0 + d);
        assert_eq!(a.take_turn_at(grace, t0 + d), Next::Ask);
        a.keep_turn_until(t0 + 2 * d);

        let b = {
            let coord = Arc::clone(&coord);
            let asking = Arc::clone(&asking);
            thread::spawn(move || {
                let b = Waiter::new(coord.slot(&name()));
                let asked = wait_for_turn(&b, grace, &[late, timer], &asking);
                asking.fetch_sub(1, SeqCst);
                b.keep_turn_until(asked + d);
                drop(b);
            })
        };

        a.keep_turn_until(renewed);
        let asked = wait_for_turn(&a, grace, &[renewed], &asking);
        asking.fetch_sub(1, SeqCst);
        a.keep_turn_until(asked + d);
        let kept = a.into_slot();

        b.join().expect("waiter B");
        assert_eq!(coord.len(), 1);
        drop(kept);
        assert_eq!(coord.len(), 0);
    });
}

/// One thread drops the last reference to a slot while a waiter arrives and
/// a later holder of the name releases it: the arriving waiter's slot is the
/// one in the map (checked as it arrives), so the later holder's release
/// wakes it (a waiter on a forgotten slot would sleep forever: a deadlock),
/// and the map keeps the slot exactly while a reference is alive.
#[test]
fn loom_last_slot_ref_dropped_while_a_waiter_arrives() {
    model(BOUND, || {
        let coord = Arc::new(Coordinator::default());
        let released = Arc::new(AtomicBool::new(false));
        let last = coord.slot(&name());

        let dropper = thread::spawn(move || drop(last));
        let waiter = {
            let coord = Arc::clone(&coord);
            let released = Arc::clone(&released);
            thread::spawn(move || {
                let waiter = Waiter::new(coord.slot(&name()));
                let again = coord.slot(&name());
                assert!(
                    std::ptr::eq(again.get(), waiter.slot.get()),
                    "the arriving waiter's slot is not the one in the map"
                );
                drop(again);
                loop {
                    let seen = waiter.slot.get().signal.generation();
                    if released.load(SeqCst) {
                        break;
                    }
                    loom::future::block_on(waiter.slot.get().signal.changed(seen));
                }
                waiter
            })
        };
        let holder = {
            let coord = Arc::clone(&coord);
            let released = Arc::clone(&released);
            thread::spawn(move || {
                let slot = coord.slot(&name());
                released.store(true, SeqCst);
                slot.get().note_release();
            })
        };

        dropper.join().expect("dropper");
        holder.join().expect("holder");
        let waiter = waiter.join().expect("waiter");
        assert_eq!(coord.len(), 1, "a live reference keeps its slot");
        let again = coord.slot(&name());
        assert!(std::ptr::eq(again.get(), waiter.slot.get()));
        drop(again);
        drop(waiter);
        assert_eq!(
            coord.len(),
            0,
            "the slot is forgotten with its last reference"
        );
    });
}

/// A live lease (the local holder of a slot) is lost (`mark_lost`, Taken)
/// while the renewal driver extends it and then finds it lost too
/// (RenewalFailed), and the guard stops it (a release). Loss is final and
/// the first reason stays; `stop` reports a loss that came before it;
/// nothing is lost after the stop; an extension counts only if it came
/// before the loss; the waiters' signal moves once per loss and never for a
/// stop, the lease's own once per loss and once for the stop.
#[test]
fn loom_lease_loss_races_stop_and_extend() {
    model(None, || {
        let coord = Arc::new(Coordinator::default());
        let slot = coord.slot(&name());
        let lease = live_lease();
        slot.set_local_holder(&lease);
        let later = Tick::now().add(Duration::from_secs(7200));

        let taker = {
            let lease = Arc::clone(&lease);
            thread::spawn(move || lease.mark_lost(LossReason::Taken))
        };
        let renewer = {
            let lease = Arc::clone(&lease);
            thread::spawn(move || {
                let extended = lease.extend(later, Timestamp::EPOCH);
                (extended, lease.mark_lost(LossReason::RenewalFailed))
            })
        };
        let stopped = lease.stop();
        let taken = taker.join().expect("taker");
        let (extended, failed) = renewer.join().expect("renewer");

        assert!(!(taken && failed), "lost twice");
        let expected = match (taken, failed) {
            (true, _) => Some(LossReason::Taken),
            (_, true) => Some(LossReason::RenewalFailed),
            _ => None,
        };
        assert_eq!(stopped, expected, "stop reports the loss before it");
        assert_eq!(lease.loss(), expected, "the first reason stays");
        assert!(lease.is_stopped());
        assert_eq!(lease.renewals(), u64::from(extended));
        if extended {
            assert_eq!(lease.valid_until(), later);
        }
        let losses = u64::from(expected.is_some());
        assert_eq!(
            slot.get().signal.generation(),
            losses,
            "waiters woken per loss"
        );
        assert_eq!(
            lease.signal.generation(),
            losses + 1,
            "lease woken per change"
        );
        assert!(
            !lease.extend(later, Timestamp::EPOCH),
            "loss and stop are final"
        );
        drop(slot);
        assert_eq!(coord.len(), 0);
    });
}

/// The same race on a lease whose validity has already run out (no renewal
/// came back in time): the extension must fail, the loss is Expired
/// whichever call records it first, and the waiters' signal moves at most
/// once (for the call that records it, unless that is the stop).
#[test]
fn loom_expired_lease_loss_races_stop_and_extend() {
    model(None, || {
        let coord = Arc::new(Coordinator::default());
        let slot = coord.slot(&name());
        let lease = Arc::new(LeaseState::new(
            Tick::now().sub(Duration::from_secs(1)),
            Timestamp::EPOCH,
        ));
        slot.set_local_holder(&lease);
        let later = Tick::now().add(Duration::from_secs(3600));

        let taker = {
            let lease = Arc::clone(&lease);
            thread::spawn(move || lease.mark_lost(LossReason::Taken))
        };
        let renewer = {
            let lease = Arc::clone(&lease);
            thread::spawn(move || lease.extend(later, Timestamp::EPOCH))
        };
        let stopped = lease.stop();
        let taken = taker.join().expect("taker");
        let extended = renewer.join().expect("renewer");

        assert!(!extended, "an expired lease is not extended");
        assert_eq!(stopped, Some(LossReason::Expired));
        assert_eq!(lease.loss(), Some(LossReason::Expired));
        assert_eq!(lease.renewals(), 0);
        let woken = slot.get().signal.generation();
        assert!(woken <= 1, "waiters woken {woken} times for one loss");
        if taken {
            assert_eq!(woken, 1, "the call that recorded the loss woke the waiters");
        }
        assert_eq!(lease.signal.generation(), woken + 1);
        drop(slot);
        assert_eq!(coord.len(), 0);
    });
}
