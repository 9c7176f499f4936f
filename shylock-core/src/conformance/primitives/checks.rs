//! The checks, one per clause of the backend contract.

use std::time::{Duration, Instant};

use super::{Check, Cx, Hostile, Outcome, TIMING_MARGIN, Target};
use crate::backend::{
    AcquireOutcome, ClockSource, ForceReleaseOutcome, Grant, HandOverOutcome, RELEASERS_REMEMBERED,
    ReleaseOutcome, RenewOutcome,
};
use crate::{BackendErrorKind, FencingToken, LockName, MAX_NAME_BYTES, OwnerId};

/// A lease that does not end during a check.
const LONG: Duration = Duration::from_secs(60);
/// A lease a check waits out.
const SHORT: Duration = Duration::from_millis(1500);
/// How long a check waits for something that should happen "soon" (an
/// expiry): only a functional bound.
const SLACK: Duration = Duration::from_secs(20);

/// Acquire → inspect → renew → inspect → release → inspect shows none; a
/// renewal keeps the token and never ends the lease earlier; nothing is
/// renewed after the release.
pub async fn basic_cycle(target: &Target) -> Outcome {
    let cx = Cx::new(target, Check::BasicCycle);
    let (n, a) = (cx.name("basic"), OwnerId::random());
    let main = cx.main();
    let before = main.now().await;
    let g = cx.granted(main.acquire(&n, &a, LONG).await, "a free name");
    cx.ensure(
        g.expires_at > before,
        format!("a grant's lease ends in the future: {g:?}, now {before}"),
    );
    let rec = main.inspect(&n).await;
    cx.ensure(
        rec.as_ref()
            .is_some_and(|r| r.owner == a && r.token == g.token && r.expires_at == g.expires_at),
        format!("inspect shows the grant {g:?}: {rec:?}"),
    );
    let renewed = cx.ok(main.renew(&n, &a, g.token, LONG).await, "renew");
    let RenewOutcome::Renewed { expires_at } = renewed else {
        cx.fail(format!("the owner's renewal is renewed: {renewed:?}"));
    };
    cx.ensure(
        expires_at >= g.expires_at,
        format!(
            "a renewal never ends the lease earlier: {expires_at} < {}",
            g.expires_at
        ),
    );
    let rec = main.inspect(&n).await;
    cx.ensure(
        rec.as_ref()
            .is_some_and(|r| r.owner == a && r.token == g.token && r.expires_at == expires_at),
        format!("inspect shows the renewed lease (same token, expiry {expires_at}): {rec:?}"),
    );
    let released = main.release(&n, &a, g.token).await;
    cx.ensure(
        matches!(released, Ok(ReleaseOutcome::Released)),
        format!("the owner's release: {released:?}"),
    );
    let rec = main.inspect(&n).await;
    cx.ensure(rec.is_none(), format!("a released name is free: {rec:?}"));
    let late = main.renew(&n, &a, g.token, LONG).await;
    cx.ensure(
        matches!(late, Ok(RenewOutcome::Lost)),
        format!("no renewal after the release: {late:?}"),
    );
    let rec = main.inspect(&n).await;
    cx.ensure(rec.is_none(), format!("and the name stays free: {rec:?}"));
    Outcome::Passed
}

/// Every grant's token is larger than every earlier one for the name: after
/// a release, for a retry of the same owner (a new grant), and after an
/// expiry taken over.
pub async fn tokens_rise(target: &Target) -> Outcome {
    let cx = Cx::new(target, Check::TokensRise);
    let n = cx.name("tokens");
    let mut last = FencingToken(0);
    let mut rise = |g: Grant, what: &str| {
        cx.ensure(
            g.token > last,
            format!("{what}: token {} after {last}", g.token),
        );
        last = g.token;
    };
    for round in 0..5 {
        let side = if round % 2 == 0 {
            cx.main()
        } else {
            cx.other()
        };
        let owner = OwnerId::random();
        rise(
            cx.granted(side.acquire(&n, &owner, LONG).await, "acquire"),
            "after a release",
        );
        let again = cx.granted(
            side.acquire(&n, &owner, LONG).await,
            "the same owner's retry",
        );
        rise(again, "the same owner's retry (a new grant)");
        let rec = side.inspect(&n).await;
        cx.ensure(
            rec.as_ref().is_some_and(|r| r.token == again.token),
            format!("inspect shows the retry's token {}: {rec:?}", again.token),
        );
        let released = side.release(&n, &owner, again.token).await;
        cx.ensure(
            matches!(released, Ok(ReleaseOutcome::Released)),
            format!("release: {released:?}"),
        );
    }
    // Expiry, then a takeover by another owner.
    let a = OwnerId::random();
    rise(
        cx.granted(cx.main().acquire(&n, &a, SHORT).await, "a short lease"),
        "a short lease",
    );
    let b = OwnerId::random();
    let taken = await_grant(&cx, &n, &b, SHORT + SLACK).await;
    rise(taken, "a takeover after expiry");
    Outcome::Passed
}

/// Tokens keep rising when the record was deleted (as garbage collection
/// does) after its release. Needs [`Fixture::delete_record`](super::Fixture::delete_record).
pub async fn tokens_rise_across_deletion_of_the_record(target: &Target) -> Outcome {
    let cx = Cx::new(target, Check::TokensRiseAcrossDeletion);
    let n = cx.name("deleted");
    let mut last = FencingToken(0);
    for round in 0..3 {
        let owner = OwnerId::random();
        let g = cx.granted(cx.main().acquire(&n, &owner, LONG).await, "acquire");
        cx.ensure(
            g.token > last,
            format!(
                "round {round}: a grant after the record was deleted has a larger token: {} after {last}",
                g.token
            ),
        );
        last = g.token;
        let released = cx.main().release(&n, &owner, g.token).await;
        cx.ensure(
            matches!(released, Ok(ReleaseOutcome::Released)),
            format!("release: {released:?}"),
        );
        if let Err(why) = cx.fixture(|f| f.delete_record(&n)) {
            return Outcome::Skipped(why.0);
        }
        let rec = cx.main().inspect(&n).await;
        cx.ensure(rec.is_none(), format!("a deleted record is free: {rec:?}"));
    }
    Outcome::Passed
}

/// Wait until `owner` is granted `name` (trying every 50 ms, with `now`
/// read just before each try), at most `within`.
async fn await_grant(cx: &Cx<'_>, name: &LockName, owner: &OwnerId, within: Duration) -> Grant {
    let until = Instant::now() + within;
    loop {
        let got = cx.other().acquire(name, owner, SHORT).await;
        match got {
            Ok(AcquireOutcome::Acquired(grant)) => return grant,
            Ok(AcquireOutcome::Busy { .. }) if Instant::now() < until => {
                cx.sleep(Duration::from_millis(50)).await;
            }
            other => cx.fail(format!(
                "an expired lease is taken over within {within:?}: {other:?}"
            )),
        }
    }
}

/// A lease is taken over by another owner once it has ended, and not a
/// moment before (judged by what was measured around each request, see the
/// [module docs](super#decisions-the-checks-make)); the old owner's renewal
/// and release then change nothing.
pub async fn takeover_at_expiry_and_not_before(target: &Target) -> Outcome {
    let cx = Cx::new(target, Check::TakeoverAtExpiry);
    let n = cx.name("takeover");
    let (a, b) = (OwnerId::random(), OwnerId::random());
    let lease = Duration::from_secs(2);
    // The lease ends after `sent + lease` (the backend's clock read after
    // `sent`) and before `answered + lease` (on a local monotonic clock).
    let sent = Instant::now();
    let ga = cx.granted(cx.main().acquire(&n, &a, lease).await, "the first owner");
    let answered = Instant::now();
    let (mut busy, mut judged_busy) = (0, 0);
    let until = answered + lease + SLACK;
    let gb = loop {
        let try_sent = Instant::now();
        let got = cx.other().acquire(&n, &b, lease).await;
        let try_answered = Instant::now();
        let surely_before = try_answered + TIMING_MARGIN < sent + lease;
        let surely_after = try_sent > answered + lease + TIMING_MARGIN;
        match got {
            Ok(AcquireOutcome::Acquired(g)) => {
                cx.ensure(
                    !surely_before,
                    format!(
                        "granted to another owner before the lease ended: {:?} after the first grant was asked for, lease {lease:?}",
                        try_answered - sent
                    ),
                );
                break g;
            }
            Ok(AcquireOutcome::Busy { .. }) => {
                cx.ensure(
                    !surely_after,
                    format!(
                        "not granted to another owner after the lease ended: {:?} after the first grant was answered, lease {lease:?}",
                        try_sent - answered
                    ),
                );
                busy += 1;
                judged_busy += usize::from(surely_before);
            }
            Err(e) => cx.fail(format!("acquire while another owner's lease runs: {e:?}")),
        }
        cx.ensure(
            Instant::now() < until,
            "the lease is taken over soon after it ended",
        );
        cx.sleep(Duration::from_millis(100)).await;
    };
    cx.ensure(
        gb.token > ga.token,
        format!("the takeover's token {} > {}", gb.token, ga.token),
    );
    let renewed = cx.main().renew(&n, &a, ga.token, lease).await;
    cx.ensure(
        matches!(renewed, Ok(RenewOutcome::Lost)),
        format!("the old owner's renewal after a takeover is lost: {renewed:?}"),
    );
    let released = cx.main().release(&n, &a, ga.token).await;
    cx.ensure(
        matches!(released, Ok(ReleaseOutcome::NotOwner)),
        format!("the old owner's release after a takeover: {released:?}"),
    );
    let rec = cx.main().inspect(&n).await;
    cx.ensure(
        rec.as_ref()
            .is_some_and(|r| r.owner == b && r.token == gb.token),
        format!("the new owner holds it: {rec:?}"),
    );
    if judged_busy == 0 {
        return Outcome::Skipped(format!(
            "the takeover was checked, \"not before\" was not: no answer came early enough to tell ({busy} busy)"
        ));
    }
    Outcome::Passed
}

/// A lease that ended but that nobody took over is still its owner's:
/// renewing it works (nobody held the lock in between).
pub async fn expired_lease_nobody_took_is_renewable(target: &Target) -> Outcome {
    let cx = Cx::new(target, Check::ExpiredLeaseRenewable);
    let (n, a) = (cx.name("late-renewal"), OwnerId::random());
    let main = cx.main();
    let g = cx.granted(
        main.acquire(&n, &a, Duration::from_secs(1)).await,
        "acquire",
    );
    let until = Instant::now() + SLACK;
    while main.inspect(&n).await.is_some() {
        cx.ensure(Instant::now() < until, "a lease ends soon after its expiry");
        cx.sleep(Duration::from_millis(100)).await;
    }
    let renewed = main.renew(&n, &a, g.token, LONG).await;
    cx.ensure(
        matches!(renewed, Ok(RenewOutcome::Renewed { .. })),
        format!("an expired lease nobody took is renewed: {renewed:?}"),
    );
    let rec = main.inspect(&n).await;
    cx.ensure(
        rec.as_ref()
            .is_some_and(|r| r.owner == a && r.token == g.token),
        format!("and held again by its owner, same token: {rec:?}"),
    );
    Outcome::Passed
}

/// While an owner holds a live lease, another owner's acquisition is Busy
/// (with the holder's expiry, if it says one) and changes nothing; the
/// holder's own retry is granted.
pub async fn busy_while_held_by_another(target: &Target) -> Outcome {
    let cx = Cx::new(target, Check::BusyWhileHeld);
    let (n, a, b) = (cx.name("busy"), OwnerId::random(), OwnerId::random());
    let g = cx.granted(cx.main().acquire(&n, &a, LONG).await, "acquire");
    for round in 0..3 {
        let got = cx.other().acquire(&n, &b, LONG).await;
        match got {
            Ok(AcquireOutcome::Busy { expires_at }) => cx.ensure(
                expires_at.is_none_or(|e| e == g.expires_at),
                format!(
                    "Busy tells the holder's expiry {}: {expires_at:?}",
                    g.expires_at
                ),
            ),
            other => cx.fail(format!("round {round}: another owner is Busy: {other:?}")),
        }
    }
    let rec = cx.other().inspect(&n).await;
    cx.ensure(
        rec.as_ref()
            .is_some_and(|r| r.owner == a && r.token == g.token),
        format!("the holding is unchanged: {rec:?}"),
    );
    let again = cx.granted(cx.main().acquire(&n, &a, LONG).await, "the holder's retry");
    cx.ensure(
        again.token > g.token,
        format!("the retry's token {} > {}", again.token, g.token),
    );
    Outcome::Passed
}

/// Renewals and releases by an owner that does not hold the record (even
/// with the holder's token) answer Lost / NotOwner and change nothing; a
/// refused release does not make its owner a releaser.
pub async fn non_owners_change_nothing(target: &Target) -> Outcome {
    let cx = Cx::new(target, Check::NonOwnersChangeNothing);
    let (n, a, b) = (cx.name("non-owner"), OwnerId::random(), OwnerId::random());
    let g = cx.granted(cx.main().acquire(&n, &a, LONG).await, "acquire");
    let before = cx.main().inspect(&n).await;
    let renewed = cx.other().renew(&n, &b, g.token, LONG).await;
    cx.ensure(
        matches!(renewed, Ok(RenewOutcome::Lost)),
        format!("a non-owner's renewal is lost: {renewed:?}"),
    );
    let released = cx.other().release(&n, &b, g.token).await;
    cx.ensure(
        matches!(released, Ok(ReleaseOutcome::NotOwner)),
        format!("a non-owner's release: {released:?}"),
    );
    let after = cx.main().inspect(&n).await;
    cx.ensure(
        after.is_some() && after == before,
        format!("nothing changed: {before:?} then {after:?}"),
    );
    let released = cx.main().release(&n, &a, g.token).await;
    cx.ensure(
        matches!(released, Ok(ReleaseOutcome::Released)),
        format!("the owner still releases: {released:?}"),
    );
    let renewed = cx.other().renew(&n, &b, g.token, LONG).await;
    cx.ensure(
        matches!(renewed, Ok(RenewOutcome::Lost)),
        format!("a non-owner's renewal of a free record is lost: {renewed:?}"),
    );
    let released = cx.other().release(&n, &b, g.token).await;
    cx.ensure(
        matches!(released, Ok(ReleaseOutcome::NotOwner)),
        format!("a non-owner's release of a free record: {released:?}"),
    );
    let rec = cx.main().inspect(&n).await;
    cx.ensure(rec.is_none(), format!("the record stays free: {rec:?}"));
    let got = cx.other().acquire(&n, &b, LONG).await;
    cx.ensure(
        matches!(got, Ok(AcquireOutcome::Acquired(_))),
        format!("an owner whose release was refused is no releaser: granted later: {got:?}"),
    );
    Outcome::Passed
}

/// `hand_over` moves the lock from its owner to a new owner in one step:
/// a non-owner's changes nothing; the owner's gives the new owner a higher
/// token and a lease from the request's *now*; afterwards the old owner can
/// neither renew, release nor hand over, and its late duplicates are not
/// granted (also after the new owner released), while the new owner renews
/// and releases; a hand-over to an owner among the releasers is refused.
/// Skipped for a backend without `hand_over`.
pub async fn hand_over_moves_the_lock_in_one_step(target: &Target) -> Outcome {
    let cx = Cx::new(target, Check::HandOver);
    if !target.main.supports_hand_over() {
        return Outcome::Skipped(
            "the backend does not implement hand_over (the core releases and acquires instead)"
                .into(),
        );
    }
    let n = cx.name("hand-over");
    let (a, b, c) = (OwnerId::random(), OwnerId::random(), OwnerId::random());
    let t0 = cx.main().now().await;
    let ga = cx.granted(cx.main().acquire_at(&n, &a, LONG, t0).await, "acquire");
    let before = cx.main().inspect(&n).await;
    let got = cx.other().hand_over(&n, &c, ga.token, &b, LONG).await;
    cx.ensure(
        matches!(got, Ok(HandOverOutcome::NotOwner)),
        format!("a non-owner's hand-over: {got:?}"),
    );
    let after = cx.main().inspect(&n).await;
    cx.ensure(
        after.is_some() && after == before,
        format!("a non-owner's hand-over changes nothing: {before:?} then {after:?}"),
    );
    let sent_after = cx.main().now().await;
    let got = cx.main().hand_over(&n, &a, ga.token, &b, LONG).await;
    let answered_by = cx.main().now().await;
    let gb = match cx.ok(got, "the owner's hand-over") {
        HandOverOutcome::HandedOver(grant) => grant,
        HandOverOutcome::NotOwner => cx.fail("the owner's hand-over answered NotOwner"),
    };
    cx.ensure(
        gb.token > ga.token,
        format!("the new owner's token {} > the old {}", gb.token, ga.token),
    );
    cx.ensure(
        gb.expires_at >= sent_after.saturating_add(LONG.saturating_sub(TIMING_MARGIN))
            && gb.expires_at <= answered_by.saturating_add(LONG + TIMING_MARGIN),
        format!(
            "the new lease is counted from the request's now ({sent_after}..{answered_by} + {LONG:?}): {}",
            gb.expires_at
        ),
    );
    let rec = cx.main().inspect(&n).await;
    cx.ensure(
        rec.as_ref()
            .is_some_and(|r| r.owner == b && r.token == gb.token && r.expires_at == gb.expires_at),
        format!("the record is the new owner's: {rec:?}"),
    );
    let renewed = cx.main().renew(&n, &a, ga.token, LONG).await;
    cx.ensure(
        matches!(renewed, Ok(RenewOutcome::Lost)),
        format!("the old owner's renewal after the hand-over is lost: {renewed:?}"),
    );
    let released = cx.main().release(&n, &a, ga.token).await;
    cx.ensure(
        matches!(released, Ok(ReleaseOutcome::NotOwner)),
        format!("the old owner's release after the hand-over changes nothing: {released:?}"),
    );
    let again = cx.main().hand_over(&n, &a, ga.token, &c, LONG).await;
    cx.ensure(
        matches!(again, Ok(HandOverOutcome::NotOwner)),
        format!("the old owner's hand-over after the hand-over: {again:?}"),
    );
    let now = cx.main().now().await;
    for at in [t0, now] {
        let late = cx.main().acquire_at(&n, &a, LONG, at).await;
        cx.ensure(
            matches!(late, Ok(AcquireOutcome::Busy { .. })),
            format!("the old owner's late duplicate (now {at}) is refused: {late:?}"),
        );
    }
    let rec = cx.main().inspect(&n).await;
    cx.ensure(
        rec.as_ref()
            .is_some_and(|r| r.owner == b && r.token == gb.token),
        format!("still the new owner's after the old owner's requests: {rec:?}"),
    );
    let renewed = cx.other().renew(&n, &b, gb.token, LONG).await;
    cx.ensure(
        matches!(renewed, Ok(RenewOutcome::Renewed { .. })),
        format!("the new owner renews: {renewed:?}"),
    );
    let released = cx.other().release(&n, &b, gb.token).await;
    cx.ensure(
        matches!(released, Ok(ReleaseOutcome::Released)),
        format!("the new owner releases: {released:?}"),
    );
    let late = cx.main().acquire_at(&n, &a, LONG, t0).await;
    cx.ensure(
        matches!(late, Ok(AcquireOutcome::Busy { .. })),
        format!(
            "the old owner's late duplicate after the new owner's release is refused: {late:?}"
        ),
    );
    let gc = cx.granted(cx.other().acquire(&n, &c, LONG).await, "a third owner");
    cx.ensure(
        gc.token > gb.token,
        format!("token {} > {}", gc.token, gb.token),
    );
    let to_releaser = cx.other().hand_over(&n, &c, gc.token, &a, LONG).await;
    cx.ensure(
        matches!(to_releaser, Ok(HandOverOutcome::NotOwner)),
        format!("a hand-over to an owner among the releasers is refused: {to_releaser:?}"),
    );
    let rec = cx.main().inspect(&n).await;
    cx.ensure(
        rec.as_ref()
            .is_some_and(|r| r.owner == c && r.token == gc.token),
        format!("the refused hand-over changed nothing: {rec:?}"),
    );
    let released = cx.other().release(&n, &c, gc.token).await;
    cx.ensure(
        matches!(released, Ok(ReleaseOutcome::Released)),
        format!("release: {released:?}"),
    );
    Outcome::Passed
}

/// A release sent again answers Released or NotOwner and never frees
/// anyone else's holding, also after other owners held and released.
pub async fn release_is_idempotent(target: &Target) -> Outcome {
    let cx = Cx::new(target, Check::ReleaseIsIdempotent);
    let n = cx.name("release-again");
    let (a, b, c) = (OwnerId::random(), OwnerId::random(), OwnerId::random());
    let again_ok = |r: &Result<ReleaseOutcome, _>| {
        matches!(r, Ok(ReleaseOutcome::Released | ReleaseOutcome::NotOwner))
    };
    let ga = cx.granted(cx.main().acquire(&n, &a, LONG).await, "acquire");
    let first = cx.main().release(&n, &a, ga.token).await;
    cx.ensure(
        matches!(first, Ok(ReleaseOutcome::Released)),
        format!("release: {first:?}"),
    );
    let again = cx.main().release(&n, &a, ga.token).await;
    cx.ensure(
        again_ok(&again),
        format!("the release sent again: {again:?}"),
    );
    let rec = cx.main().inspect(&n).await;
    cx.ensure(rec.is_none(), format!("free: {rec:?}"));
    for (holder, what) in [(&b, "a second owner"), (&c, "a third owner")] {
        let g = cx.granted(cx.other().acquire(&n, holder, LONG).await, what);
        let again = cx.main().release(&n, &a, ga.token).await;
        cx.ensure(
            matches!(again, Ok(ReleaseOutcome::NotOwner)),
            format!("an old release sent again while {what} holds: {again:?}"),
        );
        let rec = cx.main().inspect(&n).await;
        cx.ensure(
            rec.as_ref()
                .is_some_and(|r| &r.owner == holder && r.token == g.token),
            format!("{what} still holds: {rec:?}"),
        );
        let released = cx.other().release(&n, holder, g.token).await;
        cx.ensure(
            matches!(released, Ok(ReleaseOutcome::Released)),
            format!("{what} releases: {released:?}"),
        );
        let again = cx.main().release(&n, &a, ga.token).await;
        cx.ensure(
            again_ok(&again),
            format!("an old release sent again on a free record: {again:?}"),
        );
    }
    Outcome::Passed
}

/// A late duplicate (the same request with an older `now`) of an
/// acquisition or of a renewal, or one asking for a shorter lease, never
/// moves the owner's expiry earlier:
/// another owner stays Busy until the later expiry.
pub async fn late_duplicates_never_shorten_a_lease(target: &Target) -> Outcome {
    let cx = Cx::new(target, Check::LateDuplicatesNeverShorten);
    let (n, a, b) = (cx.name("late"), OwnerId::random(), OwnerId::random());
    let main = cx.main();
    let lease = Duration::from_secs(30);
    let t0 = main.now().await;
    let earlier = t0.saturating_sub(Duration::from_millis(1500));
    let g = cx.granted(main.acquire_at(&n, &a, lease, t0).await, "acquire");
    let dup = cx.granted(
        main.acquire_at(&n, &a, lease, earlier).await,
        "the owner's late duplicate",
    );
    cx.ensure(
        dup.expires_at >= g.expires_at,
        format!(
            "a late duplicate acquisition never shortens the lease: {} < {}",
            dup.expires_at, g.expires_at
        ),
    );
    let renewed = cx.ok(
        main.renew_at(&n, &a, dup.token, lease, earlier).await,
        "renew",
    );
    let RenewOutcome::Renewed { expires_at: late } = renewed else {
        cx.fail(format!("the owner's late renewal: {renewed:?}"));
    };
    cx.ensure(
        late >= dup.expires_at,
        format!(
            "a late renewal never shortens the lease: {late} < {}",
            dup.expires_at
        ),
    );
    // A renewal (for an estimated clock: sent later), then the late
    // duplicate of the acquisition again.
    let later = t0.saturating_add(Duration::from_secs(5));
    let renewed = cx.ok(
        main.renew_at(&n, &a, dup.token, lease, later).await,
        "renew",
    );
    let RenewOutcome::Renewed { expires_at: top } = renewed else {
        cx.fail(format!("the owner's renewal: {renewed:?}"));
    };
    let dup = cx.granted(
        main.acquire_at(&n, &a, lease, earlier).await,
        "the late duplicate after a renewal",
    );
    cx.ensure(
        dup.expires_at >= top,
        format!(
            "a late duplicate acquisition never undoes a renewal: {} < {top}",
            dup.expires_at
        ),
    );
    // A renewal or a duplicate acquisition asking for a shorter lease
    // (now + 1 s, well before the current expiry) keeps the later expiry:
    // the contract's max, not a plain overwrite.
    let short = Duration::from_secs(1);
    let renewed = cx.ok(
        main.renew_at(&n, &a, dup.token, short, main.now().await)
            .await,
        "a renewal with a shorter lease",
    );
    let RenewOutcome::Renewed { expires_at: kept } = renewed else {
        cx.fail(format!(
            "the owner's renewal with a shorter lease: {renewed:?}"
        ));
    };
    cx.ensure(
        kept >= top,
        format!("a renewal with a shorter lease never shortens the lease: {kept} < {top}"),
    );
    let dup = cx.granted(
        main.acquire_at(&n, &a, short, main.now().await).await,
        "a duplicate acquisition with a shorter lease",
    );
    cx.ensure(
        dup.expires_at >= top,
        format!(
            "a duplicate acquisition with a shorter lease never shortens the lease: {} < {top}",
            dup.expires_at
        ),
    );
    let rec = main.inspect(&n).await;
    cx.ensure(
        rec.as_ref()
            .is_some_and(|r| r.owner == a && r.expires_at >= top),
        format!("the record keeps the latest expiry {top}: {rec:?}"),
    );
    let just_before = top.saturating_sub(Duration::from_millis(1));
    let now = match cx.clock() {
        ClockSource::Estimated => just_before,
        ClockSource::Server => cx.other().now().await,
    };
    let other = cx.other().acquire_at(&n, &b, lease, now).await;
    cx.ensure(
        matches!(other, Ok(AcquireOutcome::Busy { .. })),
        format!("another owner is Busy until the latest expiry {top} (asked at {now}): {other:?}"),
    );
    Outcome::Passed
}

/// A late duplicate of a released owner's acquisition (with its own older
/// `now`, or a current one) is never granted while the owner is among the
/// record's last [`RELEASERS_REMEMBERED`] releasers, and leaves the record
/// free for others.
pub async fn late_duplicates_never_regrant_a_released_owner(target: &Target) -> Outcome {
    let cx = Cx::new(target, Check::LateDuplicatesNeverRegrant);
    let (n, a) = (cx.name("regrant"), OwnerId::random());
    let t0 = cx.main().now().await;
    let g = cx.granted(cx.main().acquire_at(&n, &a, LONG, t0).await, "acquire");
    let released = cx.main().release(&n, &a, g.token).await;
    cx.ensure(
        matches!(released, Ok(ReleaseOutcome::Released)),
        format!("release: {released:?}"),
    );
    let mut last = g.token;
    for others in 0..RELEASERS_REMEMBERED {
        let now = cx.main().now().await;
        for at in [t0, now] {
            let late = cx.main().acquire_at(&n, &a, LONG, at).await;
            cx.ensure(
                matches!(late, Ok(AcquireOutcome::Busy { .. })),
                format!(
                    "a released owner's late duplicate (now {at}) is refused after {others} other owner(s) held and released: {late:?}"
                ),
            );
        }
        let rec = cx.main().inspect(&n).await;
        cx.ensure(
            rec.is_none(),
            format!("the refused duplicate leaves it free: {rec:?}"),
        );
        if others + 1 == RELEASERS_REMEMBERED {
            break;
        }
        let o = OwnerId::random();
        let go = cx.granted(cx.other().acquire(&n, &o, LONG).await, "another owner");
        cx.ensure(go.token > last, format!("token {} > {last}", go.token));
        last = go.token;
        let released = cx.other().release(&n, &o, go.token).await;
        cx.ensure(
            matches!(released, Ok(ReleaseOutcome::Released)),
            format!("release: {released:?}"),
        );
    }
    Outcome::Passed
}

/// The names to try: the content a key may refuse or mangle, and lengths
/// up to [`MAX_NAME_BYTES`], all starting with `prefix` and distinct.
fn odd_names(prefix: &str) -> Vec<String> {
    let pad = |fill: char, len: usize, last: &str| {
        let mut s = format!("{prefix}-");
        while s.len() + fill.len_utf8() + last.len() <= len {
            s.push(fill);
        }
        while s.len() + last.len() < len {
            s.push('_');
        }
        s + last
    };
    let mut names: Vec<String> = [
        "plain",
        "Plain",
        "PLAIN",
        "with space",
        "with%20space",
        "with+space",
        "%41",
        "A",
        "ロック/ü 🔒 名前",
        "with\0nul",
        "with",
        "\t tab\n",
        "$where",
        "{\"$gt\": \"\"}",
        ".",
        "..",
        "a.b.c",
        "slash/colon:question?hash#",
        "back\\slash",
        "'quote\"",
        "_key",
    ]
    .iter()
    .map(|s| format!("{prefix}-{s}"))
    .collect();
    for len in [252, 253, 254, 255, 256, MAX_NAME_BYTES - 1, MAX_NAME_BYTES] {
        names.push(pad('x', len, ""));
    }
    names.push(pad('x', MAX_NAME_BYTES, "y"));
    names.push(pad('é', MAX_NAME_BYTES, ""));
    names.push(pad('é', MAX_NAME_BYTES, "z"));
    names.push(pad('🔒', MAX_NAME_BYTES, ""));
    names
}

/// Names of any content and length up to [`MAX_NAME_BYTES`] are valid and
/// each is a lock of its own.
pub async fn names_of_any_content_and_length_are_distinct_locks(target: &Target) -> Outcome {
    let cx = Cx::new(target, Check::NamesAreDistinct);
    let strings = odd_names(&cx.prefix);
    let distinct: std::collections::BTreeSet<&String> = strings.iter().collect();
    assert_eq!(
        distinct.len(),
        strings.len(),
        "the check's names are distinct"
    );
    assert!(
        crate::LockName::new("x".repeat(MAX_NAME_BYTES + 1)).is_err(),
        "the longest name is MAX_NAME_BYTES"
    );
    let names: Vec<LockName> = strings
        .iter()
        .map(|s| LockName::new(s.clone()).expect("a valid name"))
        .collect();
    let mut held = Vec::new();
    for n in &names {
        let owner = OwnerId::random();
        let g = cx.granted(
            cx.main().acquire(n, &owner, LONG).await,
            &format!("name {n:?} ({} bytes)", n.as_str().len()),
        );
        held.push((owner, g));
    }
    let b = OwnerId::random();
    for (n, (owner, g)) in names.iter().zip(&held) {
        let rec = cx.other().inspect(n).await;
        cx.ensure(
            rec.as_ref()
                .is_some_and(|r| &r.owner == owner && r.token == g.token),
            format!("name {n:?} has a record of its own: {rec:?}"),
        );
        let got = cx.other().acquire(n, &b, LONG).await;
        cx.ensure(
            matches!(got, Ok(AcquireOutcome::Busy { .. })),
            format!("name {n:?} is held: {got:?}"),
        );
    }
    for (n, (owner, g)) in names.iter().zip(&held) {
        let released = cx.main().release(n, owner, g.token).await;
        cx.ensure(
            matches!(released, Ok(ReleaseOutcome::Released)),
            format!("name {n:?} is released by its owner: {released:?}"),
        );
    }
    Outcome::Passed
}

/// A record the backend cannot read is a typed
/// [`Unexpected`](BackendErrorKind::Unexpected) error, never a panic and
/// never a grant (see the [module docs](super#decisions-the-checks-make)).
/// Needs [`Fixture::write_malformed`](super::Fixture::write_malformed).
pub async fn malformed_records_are_errors_not_grants(target: &Target) -> Outcome {
    let cx = Cx::new(target, Check::MalformedRecords);
    let (holder, b) = (OwnerId::random(), OwnerId::random());
    let now = cx.main().now().await;
    let ten_minutes = Duration::from_secs(600);
    let live = cx.name("malformed-live");
    let expired = cx.name("malformed-expired");
    for (n, until) in [
        (&live, now.saturating_add(ten_minutes)),
        (&expired, now.saturating_sub(ten_minutes)),
    ] {
        if let Err(why) = cx.fixture(|f| f.write_malformed(n, &holder, until)) {
            return Outcome::Skipped(why.0);
        }
    }
    let unexpected = |e: &crate::BackendError| e.kind() == BackendErrorKind::Unexpected;
    for n in [&live, &expired] {
        for round in 0..2 {
            let got = cx.other().acquire(n, &b, LONG).await;
            cx.ensure(
                match &got {
                    Ok(AcquireOutcome::Busy { .. }) => true,
                    Ok(AcquireOutcome::Acquired(_)) => false,
                    Err(e) => unexpected(e),
                },
                format!(
                    "{n:?}, round {round}: another owner's acquisition is Busy or Unexpected: {got:?}"
                ),
            );
        }
        let renewed = cx.other().renew(n, &b, FencingToken(1), LONG).await;
        cx.ensure(
            match &renewed {
                Ok(o) => *o == RenewOutcome::Lost,
                Err(e) => unexpected(e),
            },
            format!("{n:?}: another owner's renewal is Lost or Unexpected: {renewed:?}"),
        );
        let released = cx.other().release(n, &b, FencingToken(1)).await;
        cx.ensure(
            match &released {
                Ok(o) => *o == ReleaseOutcome::NotOwner,
                Err(e) => unexpected(e),
            },
            format!("{n:?}: another owner's release is NotOwner or Unexpected: {released:?}"),
        );
        let now = cx.main().now().await;
        let seen = cx.main().inspect_at(n, now).await;
        let ok = match &seen {
            Err(e) => unexpected(e),
            Ok(None) => n == &expired,
            Ok(Some(_)) => false,
        };
        cx.ensure(
            ok,
            format!("{n:?}: inspect is Unexpected (or none, once expired): {seen:?}"),
        );
    }
    Outcome::Passed
}

/// The backend judges expiry by the clock it says
/// ([`clock`](crate::AsyncBackend::clock)): the request's `now` for
/// [`ClockSource::Estimated`] (exactly `now + lease`), its own for
/// [`ClockSource::Server`] (a `now` a day off changes nothing).
pub async fn clock_source_is_honoured(target: &Target) -> Outcome {
    let cx = Cx::new(target, Check::ClockSource);
    let (n, a, b) = (cx.name("clock"), OwnerId::random(), OwnerId::random());
    let lease = Duration::from_secs(10);
    let day = Duration::from_secs(86_400);
    let ms = Duration::from_millis(1);
    let (main, other) = (cx.main(), cx.other());
    let t0 = main.now().await;
    let t1 = main.now().await;
    cx.ensure(
        t1 >= t0,
        format!("server_time does not go back: {t0} then {t1}"),
    );
    match cx.clock() {
        ClockSource::Estimated => {
            let at = t1.saturating_add(day);
            let g = cx.granted(main.acquire_at(&n, &a, lease, at).await, "acquire");
            let end = at.saturating_add(lease);
            cx.ensure(
                g.expires_at == end,
                format!(
                    "the lease ends at the request's now + lease {end}: {:?}",
                    g.expires_at
                ),
            );
            let seen = cx.ok(main.inspect_at(&n, end.saturating_sub(ms)).await, "inspect");
            cx.ensure(
                seen.is_some(),
                format!("held just before its end: {seen:?}"),
            );
            let seen = cx.ok(main.inspect_at(&n, end).await, "inspect");
            cx.ensure(seen.is_none(), format!("free at its end: {seen:?}"));
            let got = other
                .acquire_at(&n, &b, lease, end.saturating_sub(ms))
                .await;
            cx.ensure(
                matches!(got, Ok(AcquireOutcome::Busy { .. })),
                format!("Busy for another owner just before its end: {got:?}"),
            );
            let gb = cx.granted(other.acquire_at(&n, &b, lease, end).await, "at its end");
            cx.ensure(
                gb.token > g.token && gb.expires_at == end.saturating_add(lease),
                format!(
                    "taken over at its end, until {}: {gb:?}",
                    end.saturating_add(lease)
                ),
            );
        }
        ClockSource::Server => {
            let before = main.now().await;
            let g = cx.granted(
                main.acquire_at(&n, &a, lease, before.saturating_sub(day))
                    .await,
                "acquire",
            );
            let after = main.now().await;
            let slack = Duration::from_secs(1);
            let (low, high) = (
                before.saturating_add(lease).saturating_sub(slack),
                after.saturating_add(lease).saturating_add(slack),
            );
            cx.ensure(
                low <= g.expires_at && g.expires_at <= high,
                format!(
                    "the lease ends by the backend's clock ({low}..={high}), not the request's now a day earlier: {}",
                    g.expires_at
                ),
            );
            let future = after.saturating_add(day);
            let seen = cx.ok(main.inspect_at(&n, future).await, "inspect");
            cx.ensure(
                seen.is_some_and(|r| r.owner == a),
                "a request's now a day later does not end the lease for inspect",
            );
            let got = other.acquire_at(&n, &b, lease, future).await;
            cx.ensure(
                matches!(got, Ok(AcquireOutcome::Busy { .. })),
                format!("nor for another owner's acquisition: {got:?}"),
            );
        }
    }
    Outcome::Passed
}

/// Records this library never writes ([`Hostile`]), written over a name
/// that was granted and released: every call answers within its deadline
/// and never panics; a badly typed or incomplete record is an
/// [`Unexpected`](BackendErrorKind::Unexpected) error at acquire (never
/// `Busy` for ever, never a grant); a far-future expiry is taken over with
/// a higher token; a future epoch or a huge counter is refused (Unexpected)
/// or granted a higher token; and once the record is deleted, the next
/// token is above every token granted before (tokens never fall). Renew,
/// release and inspect answer anything but a panic or a hang; an error is
/// Unexpected. Needs [`Fixture::write_hostile`](super::Fixture::write_hostile)
/// and [`Fixture::delete_record`](super::Fixture::delete_record); a kind
/// the fixture cannot write is skipped.
pub async fn hostile_records_end_and_never_lower_tokens(target: &Target) -> Outcome {
    let cx = Cx::new(target, Check::HostileRecords);
    if target.fixture.is_none() {
        return Outcome::Skipped("no fixture was given for this backend".into());
    }
    let mut skipped = Vec::new();
    let unexpected = |e: &crate::BackendError| e.kind() == BackendErrorKind::Unexpected;
    // A call that does not answer within its deadline (20 s) plus slack
    // is a wait without end.
    let bounded = |start: Instant, what: &str| {
        cx.ensure(
            start.elapsed() < Duration::from_secs(20) + SLACK,
            format!(
                "{what} answered within its deadline ({:?})",
                start.elapsed()
            ),
        );
    };
    for &kind in Hostile::ALL {
        let n = cx.name(&format!("hostile-{kind:?}"));
        let (a, b, c) = (OwnerId::random(), OwnerId::random(), OwnerId::random());
        let first = cx.granted(cx.main().acquire(&n, &a, LONG).await, "a free name");
        let mut highest = first.token;
        let released = cx.main().release(&n, &a, first.token).await;
        cx.ensure(
            matches!(released, Ok(ReleaseOutcome::Released)),
            format!("{kind:?}: the owner's release: {released:?}"),
        );
        if let Err(why) = cx.fixture(|f| f.write_hostile(&n, kind)) {
            skipped.push(format!("{kind:?}: {}", why.0));
            continue;
        }
        // Never listed as held (if the backend lists).
        let start = Instant::now();
        let listed = cx.main().list(Some(n.as_str()), None, 10).await;
        bounded(start, "list");
        match &listed {
            Ok(page) => cx.ensure(
                page.locks.is_empty(),
                format!(
                    "{kind:?}: a record this library did not write is not listed as held: {page:?}"
                ),
            ),
            Err(e) => cx.ensure(
                matches!(
                    e.kind(),
                    BackendErrorKind::Unsupported | BackendErrorKind::Unexpected
                ),
                format!("{kind:?}: list's error is Unexpected (or Unsupported): {e:?}"),
            ),
        }
        let start = Instant::now();
        let got = cx.other().acquire(&n, &b, LONG).await;
        bounded(start, "acquire");
        let granted = match (&got, kind) {
            (Err(e), _) => {
                cx.ensure(
                    unexpected(e),
                    format!("{kind:?}: an acquire's error is Unexpected: {e:?}"),
                );
                cx.ensure(
                    e.to_string().contains(n.as_str()),
                    format!("{kind:?}: the error names the record {n:?}: {e}"),
                );
                cx.ensure(
                    kind != Hostile::FarFutureExpiry,
                    format!("{kind:?}: a far-future expiry is taken over: {e:?}"),
                );
                None
            }
            (Ok(AcquireOutcome::Acquired(g)), Hostile::WrongTypes | Hostile::MissingFields) => cx
                .fail(format!(
                    "{kind:?}: a record the backend cannot read is no grant: {g:?}"
                )),
            (Ok(AcquireOutcome::Acquired(g)), _) => {
                cx.ensure(
                    g.token > highest,
                    format!("{kind:?}: the grant's token is above {highest:?}: {g:?}"),
                );
                highest = g.token;
                Some(*g)
            }
            (Ok(AcquireOutcome::Busy { .. }), _) => cx.fail(format!(
                "{kind:?}: a record that no live holder keeps is not Busy (held for ever): {got:?}"
            )),
        };
        let token = granted.map_or(FencingToken(1), |g| g.token);
        let start = Instant::now();
        let renewed = cx.other().renew(&n, &b, token, LONG).await;
        bounded(start, "renew");
        cx.ensure(
            match &renewed {
                Ok(RenewOutcome::Renewed { .. }) => granted.is_some(),
                Ok(_) => true,
                Err(e) => unexpected(e),
            },
            format!(
                "{kind:?}: renew is Renewed (only after a grant), Lost or Unexpected: {renewed:?}"
            ),
        );
        let start = Instant::now();
        let now = cx.main().now().await;
        let seen = cx.main().inspect_at(&n, now).await;
        bounded(start, "inspect");
        cx.ensure(
            match &seen {
                Ok(Some(r)) => r.token <= highest,
                Ok(None) => true,
                Err(e) => unexpected(e),
            },
            format!(
                "{kind:?}: inspect shows no token above {highest:?}, or is Unexpected: {seen:?}"
            ),
        );
        let start = Instant::now();
        let released = cx.other().release(&n, &b, token).await;
        bounded(start, "release");
        cx.ensure(
            match &released {
                Ok(ReleaseOutcome::Released) => granted.is_some(),
                Ok(_) => true,
                Err(e) => unexpected(e),
            },
            format!("{kind:?}: release is Released (only after a grant), NotOwner or Unexpected: {released:?}"),
        );
        // Whatever the record was, deleting it (as an operator or garbage
        // collection would) never lets a later token fall.
        if let Err(why) = cx.fixture(|f| f.delete_record(&n)) {
            skipped.push(format!("{kind:?} (deletion): {}", why.0));
            continue;
        }
        let after = cx.granted(cx.main().acquire(&n, &c, LONG).await, "a deleted name");
        cx.ensure(
            after.token > highest,
            format!(
                "{kind:?}: after the record's deletion the token {:?} is above every earlier one ({highest:?}): tokens never fall",
                after.token
            ),
        );
    }
    if skipped.len() == Hostile::ALL.len() {
        // One reason for all (no fixture method): said once.
        let reasons: Vec<&str> = skipped
            .iter()
            .filter_map(|s| s.split_once(": ").map(|(_, why)| why))
            .collect();
        if reasons.windows(2).all(|w| w[0] == w[1]) && !reasons.is_empty() {
            Outcome::Skipped(reasons[0].to_owned())
        } else {
            Outcome::Skipped(skipped.join("; "))
        }
    } else {
        if !skipped.is_empty() {
            eprintln!("hostile records: skipped {}", skipped.join("; "));
        }
        Outcome::Passed
    }
}

/// A check of an optional primitive (`list`, `force_release`, `audit`) is
/// skipped, saying so, for a backend that answers
/// [`Unsupported`](BackendErrorKind::Unsupported).
fn unsupported<T>(got: &Result<T, crate::BackendError>) -> Option<Outcome> {
    match got {
        Err(e) if e.kind() == BackendErrorKind::Unsupported => Some(Outcome::Skipped(format!(
            "the backend does not implement this optional primitive: {e}"
        ))),
        _ => None,
    }
}

/// `list` shows the locks held now, and only those: not a released one,
/// not an expired one, not a name outside the prefix; each with the
/// grant's owner, token and expiry, by name.
pub async fn list_shows_held_locks_only_by_prefix(target: &Target) -> Outcome {
    let cx = Cx::new(target, Check::ListShowsHeld);
    let (main, other) = (cx.main(), cx.other());
    let probe = main.list(Some(&cx.prefix), None, 10).await;
    if let Some(skipped) = unsupported(&probe) {
        return skipped;
    }
    let page = cx.ok(probe, "list of a prefix nobody used");
    cx.ensure(
        page.locks.is_empty() && page.next.is_none(),
        format!("nothing is listed under a new prefix: {page:?}"),
    );
    let (a, b, c) = (OwnerId::random(), OwnerId::random(), OwnerId::random());
    let held = cx.name("held");
    let held_too = cx.name("held-too");
    let released = cx.name("released");
    let expiring = cx.name("expiring");
    let outside = cx.name("other");
    let g_held = cx.granted(main.acquire(&held, &a, LONG).await, "held");
    let g_too = cx.granted(other.acquire(&held_too, &b, LONG).await, "held-too");
    let g_rel = cx.granted(main.acquire(&released, &c, LONG).await, "released");
    cx.ok(main.release(&released, &c, g_rel.token).await, "release");
    cx.granted(main.acquire(&expiring, &a, SHORT).await, "expiring");
    cx.granted(
        other.acquire(&outside, &b, LONG).await,
        "outside the prefix",
    );
    // Wait the short lease out.
    let started = Instant::now();
    while main.inspect(&expiring).await.is_some() {
        cx.ensure(started.elapsed() < SLACK, "a short lease ends");
        cx.sleep(Duration::from_millis(200)).await;
    }
    let prefix = format!("{}-held", cx.prefix);
    let page = cx.ok(main.list(Some(&prefix), None, 10).await, "list");
    let names: Vec<&str> = page.locks.iter().map(|l| l.name.as_str()).collect();
    cx.ensure(
        names == [held.as_str(), held_too.as_str()],
        format!("list of prefix {prefix:?} shows the two held names, in order: {page:?}"),
    );
    for (listed, (owner, grant)) in page.locks.iter().zip([(&a, g_held), (&b, g_too)]) {
        cx.ensure(
            &listed.owner == owner
                && listed.token == grant.token
                && listed.expires_at >= grant.expires_at,
            format!("a listed lock has its grant's owner {owner}, token and expiry {grant:?}: {listed:?}"),
        );
    }
    let page = cx.ok(main.list(Some(&cx.prefix), None, 10).await, "list");
    let names: Vec<&str> = page.locks.iter().map(|l| l.name.as_str()).collect();
    cx.ensure(
        names == [held.as_str(), held_too.as_str(), outside.as_str()],
        format!(
            "list of the check's prefix shows the held names only (not the released or \
             expired ones), in order: {page:?}"
        ),
    );
    let page = cx.ok(other.list(Some(&cx.prefix), Some(&held), 10).await, "list");
    let names: Vec<&str> = page.locks.iter().map(|l| l.name.as_str()).collect();
    cx.ensure(
        names == [held_too.as_str(), outside.as_str()],
        format!("list after {held} shows only the names after it: {page:?}"),
    );
    // A prefix is text, not a pattern.
    let special = cx.name("re.x(1)*[a]");
    let lookalike = cx.name("reAx(1)*[a]");
    cx.granted(
        main.acquire(&special, &a, LONG).await,
        "a name with specials",
    );
    cx.granted(main.acquire(&lookalike, &a, LONG).await, "its lookalike");
    let prefix = format!("{}-re.x(1)*[", cx.prefix);
    let page = cx.ok(main.list(Some(&prefix), None, 10).await, "list");
    let names: Vec<&str> = page.locks.iter().map(|l| l.name.as_str()).collect();
    cx.ensure(
        names == [special.as_str()],
        format!("a prefix with `.`, `(`, `*` and `[` matches itself only: {page:?}"),
    );
    Outcome::Passed
}

/// Paging through `list` with `next` lists every held lock exactly once,
/// in order, whatever the page size.
pub async fn list_pages_cover_every_held_lock_once(target: &Target) -> Outcome {
    let cx = Cx::new(target, Check::ListPaging);
    let main = cx.main();
    let probe = main.list(Some(&cx.prefix), None, 1).await;
    if let Some(skipped) = unsupported(&probe) {
        return skipped;
    }
    cx.ok(probe, "list");
    let mut expected = Vec::new();
    for i in 0..7 {
        let name = cx.name(&format!("page-{i}"));
        let owner = OwnerId::random();
        cx.granted(main.acquire(&name, &owner, LONG).await, "a lock to list");
        expected.push(name);
    }
    // And one released among them, which takes a place in a page but is
    // not listed.
    let gone = cx.name("page-3-gone");
    let owner = OwnerId::random();
    let g = cx.granted(main.acquire(&gone, &owner, LONG).await, "a lock to release");
    cx.ok(main.release(&gone, &owner, g.token).await, "release");
    expected.sort();
    for limit in [1, 3, 100] {
        let mut seen: Vec<LockName> = Vec::new();
        let mut after: Option<LockName> = None;
        for page_number in 0.. {
            cx.ensure(
                page_number <= 20,
                format!("paging by {limit} ends: seen {seen:?} after {page_number} pages"),
            );
            let page = cx.ok(
                main.list(Some(&cx.prefix), after.as_ref(), limit).await,
                "list",
            );
            cx.ensure(
                page.locks.len() <= limit,
                format!("a page holds at most {limit} locks: {page:?}"),
            );
            seen.extend(page.locks.into_iter().map(|l| l.name));
            match page.next {
                Some(next) => {
                    cx.ensure(
                        after.as_ref().is_none_or(|a| next > *a),
                        format!("each page's next moves on: {next:?} after {after:?}"),
                    );
                    after = Some(next);
                }
                None => break,
            }
        }
        cx.ensure(
            seen == expected,
            format!(
                "paging by {limit} lists every held lock exactly once, in order: {seen:?}, \
                 expected {expected:?}"
            ),
        );
    }
    Outcome::Passed
}

/// `force_release` ends another owner's live holding and keeps who forced
/// it, when and why; the forced owner's renewal answers `Lost` or
/// `Forced`, its release `NotOwner`, its late acquisition `Busy`; the next
/// grant's token is higher; a free lock is `NotHeld`; the audit trail
/// stays after the next grant.
pub async fn force_release_ends_any_holding_with_an_audit_trail(target: &Target) -> Outcome {
    let cx = Cx::new(target, Check::ForceRelease);
    let (main, other) = (cx.main(), cx.other());
    let (n, a, b) = (cx.name("forced"), OwnerId::random(), OwnerId::random());
    let probe = main.audit(&n).await;
    if let Some(skipped) = unsupported(&probe) {
        return skipped;
    }
    let audit = cx.ok(probe, "audit of a new name");
    cx.ensure(
        audit.is_none(),
        format!("a new name has no audit trail: {audit:?}"),
    );
    let forced = main.force_release(&n, "ops", "nothing there").await;
    if let Some(skipped) = unsupported(&forced) {
        return skipped;
    }
    cx.ensure(
        matches!(forced, Ok(ForceReleaseOutcome::NotHeld)),
        format!("a forced release of a name with no record is NotHeld: {forced:?}"),
    );
    let before = main.now().await;
    let g = cx.granted(other.acquire(&n, &a, LONG).await, "a free name");
    let forced = main
        .force_release(&n, "ops@admin-host", "the job is stuck")
        .await;
    cx.ensure(
        matches!(&forced, Ok(ForceReleaseOutcome::Released { owner, token }) if *owner == a && *token == g.token),
        format!("a forced release ends another owner's holding {g:?}: {forced:?}"),
    );
    let rec = main.inspect(&n).await;
    cx.ensure(rec.is_none(), format!("a forced lock is free: {rec:?}"));
    let audit = cx.ok(main.audit(&n).await, "audit");
    cx.ensure(
        audit.as_ref().is_some_and(|f| {
            f.owner == a
                && f.token == g.token
                && f.by == "ops@admin-host"
                && f.reason == "the job is stuck"
                && f.at.as_millis() >= before.as_millis() - 1000
        }),
        format!("the audit trail names the forced owner, its token, who, why and when: {audit:?}"),
    );
    let again = main.force_release(&n, "ops", "again").await;
    cx.ensure(
        matches!(again, Ok(ForceReleaseOutcome::NotHeld)),
        format!("a forced release of a free lock is NotHeld: {again:?}"),
    );
    let renewed = other.renew(&n, &a, g.token, LONG).await;
    cx.ensure(
        matches!(renewed, Ok(RenewOutcome::Lost | RenewOutcome::Forced)),
        format!("the forced owner's renewal is Lost or Forced: {renewed:?}"),
    );
    let released = other.release(&n, &a, g.token).await;
    cx.ensure(
        matches!(released, Ok(ReleaseOutcome::NotOwner)),
        format!("the forced owner's release is NotOwner: {released:?}"),
    );
    let late = other.acquire(&n, &a, LONG).await;
    cx.ensure(
        matches!(late, Ok(AcquireOutcome::Busy { .. })),
        format!("the forced owner's late acquisition is not granted: {late:?}"),
    );
    let next = cx.granted(main.acquire(&n, &b, LONG).await, "after the forced release");
    cx.ensure(
        next.token > g.token,
        format!(
            "the next grant's token {} is above the forced one {}",
            next.token, g.token
        ),
    );
    let renewed = other.renew(&n, &a, g.token, LONG).await;
    cx.ensure(
        matches!(renewed, Ok(RenewOutcome::Lost | RenewOutcome::Forced)),
        format!("the forced owner's renewal after the next grant is Lost or Forced: {renewed:?}"),
    );
    let audit_after = cx.ok(main.audit(&n).await, "audit");
    cx.ensure(
        audit_after == audit,
        format!("the audit trail stays after the next grant: {audit_after:?}, was {audit:?}"),
    );
    let rec = main.inspect(&n).await;
    cx.ensure(
        rec.as_ref()
            .is_some_and(|r| r.owner == b && r.token == next.token),
        format!("the next holder holds it: {rec:?}"),
    );
    Outcome::Passed
}
