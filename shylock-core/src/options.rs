//! Per-lock options: lease, renewal, waiting and timeouts.

use std::time::Duration;

use crate::Error;

/// The shortest lease accepted.
pub const MIN_LEASE: Duration = Duration::from_millis(50);
/// The longest lease accepted (one year).
pub const MAX_LEASE: Duration = Duration::from_secs(365 * 24 * 3600);
/// How far beyond the server time a record's expiry or token base (a
/// MongoDB or ArangoDB `epoch`) may lie and still be one this library
/// wrote: [`MAX_LEASE`] plus a day for clock uncertainty. A backend treats
/// an expiry beyond it as expired (the lock is taken over) and refuses to
/// make a fencing token from an epoch beyond it (an error naming the record:
/// tokens from it would fall once the record is deleted).
pub const RECORD_HORIZON: Duration = Duration::from_secs(366 * 24 * 3600);
/// The default lease: 30 s.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(30);
/// What the safety margin always covers on top of the margin set: lock
/// records keep whole milliseconds, so the backend's expiry (its clock read
/// and the lease, both truncated to the millisecond) can fall up to 2 ms
/// before the exact end that the holder measures.
pub const CLOCK_GRANULARITY: Duration = Duration::from_millis(2);

/// How a held lease is renewed while its guard lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Renewal {
    /// Renew every third of the lease (the default).
    #[default]
    Auto,
    /// Renew at this interval (must be shorter than the lease less the
    /// safety margin).
    Every(Duration),
    /// Never renew: the lease ends after its duration.
    Off,
}

/// Bounded exponential backoff with jitter for waiting acquirers.
///
/// The n-th wait (counting from 0) lasts a random time in
/// `[d/2, d]` with `d = min(initial * factor^n, max)`. A waiter is also woken
/// at once when a holder in the same process releases the lock, and when the
/// backend reports that the current lease ends sooner.
///
/// Defaults: `initial` 5 ms, `max` 50 ms, `factor` 2. All waiters of one
/// name in a process share one poller, and nobody polls while a holder in
/// the same process has the lock, so a process that waits long asks the
/// backend about 27 times a second; a waiter in another process than the
/// holder learns of a release within about half of `max` on average. With
/// handoff on (the default), polls are spread further on a backend slower
/// than about `max / 16` per command, and by a process that just released
/// the lock for others (see [`Handoff`], "Polls on a slow server").
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    /// The first wait.
    pub initial: Duration,
    /// The longest wait.
    pub max: Duration,
    /// The growth factor (at least 1).
    pub factor: f64,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial: Duration::from_millis(5),
            max: Duration::from_millis(50),
            factor: 2.0,
        }
    }
}

impl Backoff {
    /// A fixed wait (`initial == max`), for tests and special cases.
    #[must_use]
    pub fn fixed(every: Duration) -> Self {
        Backoff {
            initial: every,
            max: every,
            factor: 1.0,
        }
    }
}

/// In-process handoff ("lock cohorting") and its fairness bound.
///
/// When a guard is released while another acquisition of the same name
/// waits on the same [`Backend`](crate::Backend) handle in this process,
/// the release becomes one `hand_over` command that moves the lock to that
/// waiter (a fresh owner id, a higher token, a lease measured from when the
/// command was sent): one command per grant instead of a release, an
/// acquire and the polls of waiters elsewhere, and no moment in which the
/// lock is free. Local waiters get it in the order they started waiting.
///
/// **The bound.** A process that got the lock from the backend passes it
/// on locally at most `max_handoffs` times, and fewer when other processes
/// were granted it since this process last held it (as many handoffs as
/// they had grants, read from the fencing tokens' rise, at least one), and
/// not once it has held it for `max_hold` without a global release. Then
/// the release is global, and this process's waiters ask nobody for
/// `hold_back` (default: the backoff's `max` plus 10 ms), so that a remote
/// waiter polling at its longest backoff gets its turn: after every such
/// turn while another process was seen contending in the last second (its
/// grants between this process's, or a busy answer here), and at least
/// once a second otherwise (a holder cannot see a newcomer elsewhere: its
/// own waiters never ask while it holds). So a process alone with many
/// tasks idles for one `hold_back` a second at most.
///
/// **Polls while another process has its turn.** A poll costs the server
/// a command, and a turn elsewhere lasts up to `max_handoffs` hand-overs
/// of one round trip each (at most `max_hold`): polling much more often
/// than that mostly finds the lock busy. So while handoff is on:
///
/// * a waiter's longest wait between polls is the backoff's `max`, or 16
///   of the backend's recent round trips (a moving average per
///   [`Backend`](crate::Backend) handle) if that is longer, but at most 4
///   times `max`; the default hold-back is that wait plus 10 ms. With the
///   defaults nothing changes on a server that answers within about 3 ms,
///   and polls are up to 200 ms apart on a slower one;
/// * the waiters of a process that held back for the bound poll at that
///   longest wait from their first busy answer until the backend grants
///   this process the lock again: a process just served must not out-poll
///   the ones that waited longer (with the backoff from its start it would
///   ask every few milliseconds while they ask every 50), and since the
///   hold-back elsewhere is that wait plus 10 ms, it still gets the lock
///   after another process's turn;
/// * a process that has not been granted the lock for about four turns
///   elsewhere (`4 × (max_handoffs round trips, at most max_hold, plus the
///   longest wait)`) polls at half that longest wait (never more often
///   than the backoff's `max`): the longer a process has waited, the
///   likelier its poll is the first after a release.
///
/// Measured in `BENCHMARKS.md`, scenario C: commands per grant, and the
/// grants of the most and the least served process.
///
/// **A remote waiter's worst case.** A newcomer waits at most about one
/// second plus one turn (`max_hold` plus one critical section) for the
/// first hold-back of a process that has not seen it yet, and from then on
/// the holder's process leaves every turn to others. With `k` processes
/// contending, it waits at most for `k - 1` other processes' turns, each at
/// most `max_hold` plus one critical section plus `hold_back`, before its
/// own poll meets a free lock; with the defaults and short critical
/// sections, at most about `1.3 s + (k - 1) × 0.26 s` on a server that
/// answers within about 3 ms. On a slower one the hold-back and the polls
/// stretch (above), and each term with them: about
/// `1.5 s + (k - 1) × 0.8 s` (scenario C in `BENCHMARKS.md` reports the
/// longest wait of any task, with `k = 4`: up to 3.7 s on FerretDB, whose
/// commands take 5 to 10 ms there). Handoff changes
/// nothing for backends without `hand_over` (the release and the
/// acquisition are two commands, as before) and for `try_acquire`.
///
/// ```
/// use std::time::Duration;
/// use shylock_core::{Handoff, LockOptions};
/// let opts = LockOptions::default().handoff(Handoff {
///     max_handoffs: 4,
///     max_hold: Duration::from_millis(100),
///     ..Handoff::default()
/// });
/// assert_eq!(opts.handoff.max_handoffs, 4);
/// let off = LockOptions::default().handoff(Handoff::off());
/// assert!(!off.handoff.is_on());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Handoff {
    /// At most this many consecutive local handoffs after one grant from
    /// the backend (default 32; 0 switches handoff off).
    pub max_handoffs: u32,
    /// No local handoff once this process has held the lock this long
    /// without a global release (default 200 ms).
    pub max_hold: Duration,
    /// How long this process's waiters leave the lock to other processes
    /// after a global release forced by the bound (default: `None`, the
    /// backoff's `max` plus 10 ms).
    pub hold_back: Option<Duration>,
}

impl Default for Handoff {
    fn default() -> Self {
        Handoff {
            max_handoffs: 32,
            max_hold: Duration::from_millis(200),
            hold_back: None,
        }
    }
}

impl Handoff {
    /// No handoff: every release is global, every grant an acquisition.
    pub fn off() -> Self {
        Handoff {
            max_handoffs: 0,
            ..Handoff::default()
        }
    }

    /// Whether handoff is on.
    pub fn is_on(&self) -> bool {
        self.max_handoffs > 0 && !self.max_hold.is_zero()
    }

    /// The hold-back in force with `backoff`, on a backend that answers
    /// within `backoff.max / max_handoffs` (on a slower one it is longer,
    /// as a waiter's polls are further apart: see **Polls on a slow
    /// server** above).
    pub fn effective_hold_back(&self, backoff: &Backoff) -> Duration {
        self.hold_back_for(backoff, None)
    }

    /// The hold-back in force with `backoff` on a backend whose commands
    /// take `round_trip`: the longest wait between polls plus 10 ms.
    pub(crate) fn hold_back_for(
        &self,
        backoff: &Backoff,
        round_trip: Option<Duration>,
    ) -> Duration {
        self.hold_back.unwrap_or_else(|| {
            self.poll_max(backoff, round_trip)
                .saturating_add(Duration::from_millis(10))
        })
    }

    /// How long a turn of another process lasts at most, about, on a
    /// backend whose commands take `round_trip`: `max_handoffs` hand-overs,
    /// but not past `max_hold`.
    pub(crate) fn turn(&self, round_trip: Option<Duration>) -> Duration {
        round_trip
            .unwrap_or(Duration::ZERO)
            .saturating_mul(self.max_handoffs)
            .min(self.max_hold)
    }

    /// The longest wait between the polls of a waiter whose process the
    /// backend has not granted the lock for `not_granted_for`: the
    /// [`poll_max`](Self::poll_max), or half of it (never below
    /// `backoff.max`) once that is about four turns elsewhere.
    pub(crate) fn poll_wait(
        &self,
        backoff: &Backoff,
        round_trip: Option<Duration>,
        not_granted_for: Duration,
    ) -> Duration {
        let longest = self.poll_max(backoff, round_trip);
        let four_turns = self
            .turn(round_trip)
            .saturating_add(longest)
            .saturating_mul(4);
        if not_granted_for > four_turns {
            (longest / 2).max(backoff.max)
        } else {
            longest
        }
    }

    /// The longest wait between a waiter's polls with `backoff` on a
    /// backend whose commands take `round_trip`: `backoff.max`, or, with
    /// handoff on, [`POLL_ROUND_TRIPS`] round trips if that is longer, at
    /// most [`POLL_STRETCH_LIMIT`] times `backoff.max`.
    pub(crate) fn poll_max(&self, backoff: &Backoff, round_trip: Option<Duration>) -> Duration {
        match round_trip {
            Some(round_trip) if self.is_on() => round_trip
                .saturating_mul(POLL_ROUND_TRIPS)
                .min(backoff.max.saturating_mul(POLL_STRETCH_LIMIT))
                .max(backoff.max),
            _ => backoff.max,
        }
    }
}

/// How many times `Backoff::max` a waiter's polls are spread at most on a
/// slow server, with handoff on (see [`Handoff`]).
pub(crate) const POLL_STRETCH_LIMIT: u32 = 4;

/// With handoff on, a waiter's polls are at least this many of the
/// backend's round trips apart at their longest (see [`Handoff`]).
pub(crate) const POLL_ROUND_TRIPS: u32 = 16;

/// Options of one lock. Build them with the methods, starting from
/// [`LockOptions::default`].
///
/// ```
/// use std::time::Duration;
/// use shylock_core::{LockOptions, Renewal};
/// let opts = LockOptions::default()
///     .lease(Duration::from_secs(10))
///     .renewal(Renewal::Every(Duration::from_secs(2)))
///     .timeout(Duration::from_secs(5));
/// assert_eq!(opts.lease, Duration::from_secs(10));
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct LockOptions {
    /// How long a grant lasts without renewal (default 30 s; from
    /// [`MIN_LEASE`] to [`MAX_LEASE`]).
    pub lease: Duration,
    /// How the lease is renewed (default every third of the lease).
    pub renewal: Renewal,
    /// How long `acquire` waits at the most (default: no limit).
    pub timeout: Option<Duration>,
    /// How waiters poll.
    pub backoff: Backoff,
    /// The holder-side safety margin: a guard counts its lease as ended this
    /// long before the lease's nominal end (measured on the monotonic clock
    /// from the moment the request was sent), plus the uncertainty of the
    /// server clock estimate, plus [`CLOCK_GRANULARITY`] whatever is set
    /// here (timestamps are whole milliseconds). Default: 1% of the lease,
    /// at least 10 ms.
    pub safety_margin: Option<Duration>,
    /// How long a release (explicit or on drop) may take (default 5 s).
    pub release_timeout: Duration,
    /// A label put in front of every owner id of this lock's acquisitions
    /// (default none), such as a host name and process id, so that
    /// `inspect` and `list` tell who holds a lock. At most
    /// [`MAX_OWNER_LABEL`] bytes of visible ASCII (no spaces or control
    /// characters); the owner id stays unique whatever the label.
    pub owner_label: Option<String>,
    /// Whether this lock's [metrics](crate::metrics) carry its name as the
    /// label `name` (default: no; lock names can be unbounded, and every
    /// name is a new series). Without the feature `metrics`, nothing is
    /// recorded either way.
    pub metrics_name_label: bool,
    /// In-process handoff and its fairness bound (default on; see
    /// [`Handoff`]).
    pub handoff: Handoff,
}

/// The longest [`LockOptions::owner_label`], in bytes.
pub const MAX_OWNER_LABEL: usize = 64;

impl Default for LockOptions {
    fn default() -> Self {
        LockOptions {
            lease: DEFAULT_LEASE,
            renewal: Renewal::Auto,
            timeout: None,
            backoff: Backoff::default(),
            safety_margin: None,
            release_timeout: Duration::from_secs(5),
            owner_label: None,
            metrics_name_label: false,
            handoff: Handoff::default(),
        }
    }
}

impl LockOptions {
    /// Set the lease.
    #[must_use]
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// Set the renewal.
    #[must_use]
    pub fn renewal(mut self, renewal: Renewal) -> Self {
        self.renewal = renewal;
        self
    }

    /// Set how long `acquire` waits at the most.
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Set the backoff of waiters.
    #[must_use]
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// Set the holder-side safety margin.
    #[must_use]
    pub fn safety_margin(mut self, margin: Duration) -> Self {
        self.safety_margin = Some(margin);
        self
    }

    /// Set the in-process handoff and its fairness bound
    /// ([`Handoff::off`] switches it off).
    #[must_use]
    pub fn handoff(mut self, handoff: Handoff) -> Self {
        self.handoff = handoff;
        self
    }

    /// Set how long a release may take.
    #[must_use]
    pub fn release_timeout(mut self, timeout: Duration) -> Self {
        self.release_timeout = timeout;
        self
    }

    /// Set the label in front of every owner id (see
    /// [`owner_label`](LockOptions#structfield.owner_label)).
    #[must_use]
    pub fn owner_label(mut self, label: impl Into<String>) -> Self {
        self.owner_label = Some(label.into());
        self
    }

    /// Label this lock's [metrics](crate::metrics) with its name (see
    /// [`metrics_name_label`](Self::metrics_name_label)). Use it for a
    /// bounded set of names only.
    ///
    /// ```
    /// use shylock_core::LockOptions;
    /// let opts = LockOptions::default().metrics_name_label(true);
    /// assert!(opts.metrics_name_label);
    /// ```
    #[must_use]
    pub fn metrics_name_label(mut self, on: bool) -> Self {
        self.metrics_name_label = on;
        self
    }

    /// The safety margin in force: the one set (or the default) plus
    /// [`CLOCK_GRANULARITY`], which no setting removes.
    pub fn effective_margin(&self) -> Duration {
        self.safety_margin
            .unwrap_or_else(|| (self.lease / 100).max(Duration::from_millis(10)))
            .saturating_add(CLOCK_GRANULARITY)
    }

    /// The renewal interval in force, if renewal is on.
    pub fn renew_interval(&self) -> Option<Duration> {
        match self.renewal {
            Renewal::Auto => Some(self.lease / 3),
            Renewal::Every(d) => Some(d),
            Renewal::Off => None,
        }
    }

    /// Check every option.
    ///
    /// # Errors
    /// [`Error::InvalidOption`] naming the first option out of range.
    pub fn validate(&self) -> Result<(), Error> {
        let bad = |option, reason: String| Err(Error::InvalidOption { option, reason });
        if self.lease < MIN_LEASE || self.lease > MAX_LEASE {
            return bad(
                "lease",
                format!("{:?} is outside {MIN_LEASE:?}..={MAX_LEASE:?}", self.lease),
            );
        }
        let margin = self.effective_margin();
        if margin >= self.lease / 2 {
            return bad(
                "safety_margin",
                format!(
                    "{margin:?} must be less than half the lease ({:?})",
                    self.lease
                ),
            );
        }
        if let Some(every) = self.renew_interval()
            && (every.is_zero() || every >= self.lease - margin)
        {
            return bad(
                "renewal",
                format!(
                    "interval {every:?} must be above zero and below the lease less the safety margin ({:?})",
                    self.lease - margin
                ),
            );
        }
        let b = &self.backoff;
        if b.initial.is_zero() || b.max < b.initial || !(b.factor >= 1.0 && b.factor.is_finite()) {
            return bad(
                "backoff",
                format!("{b:?}: need 0 < initial <= max and a finite factor >= 1"),
            );
        }
        if self.release_timeout.is_zero() {
            return bad("release_timeout", "must be above zero".into());
        }
        if let Some(label) = &self.owner_label
            && (label.is_empty()
                || label.len() > MAX_OWNER_LABEL
                || !label.bytes().all(|b| b.is_ascii_graphic()))
        {
            return bad(
                "owner_label",
                format!(
                    "{label:?} must be 1 to {MAX_OWNER_LABEL} bytes of visible ASCII, without spaces"
                ),
            );
        }
        Ok(())
    }
}

/// The state of one waiter's backoff.
#[derive(Debug)]
pub(crate) struct BackoffState {
    cfg: Backoff,
    current: Duration,
}

impl BackoffState {
    pub(crate) fn new(cfg: Backoff) -> Self {
        BackoffState {
            cfg,
            current: cfg.initial,
        }
    }

    /// The next wait, growing up to `max` rather than the configured
    /// longest wait (see [`Handoff`]: polls on a slow server).
    /// `at_max`: start from the longest wait at once.
    pub(crate) fn next_delay_up_to(&mut self, max: Duration, at_max: bool) -> Duration {
        self.cfg.max = max;
        if at_max || self.current > max {
            self.current = max;
        }
        self.next_delay()
    }

    /// The next wait, with jitter in `[d/2, d]`.
    pub(crate) fn next_delay(&mut self) -> Duration {
        let d = self.current;
        // Saturating: a huge factor or bound must not overflow.
        self.current = Duration::try_from_secs_f64(d.as_secs_f64() * self.cfg.factor)
            .unwrap_or(Duration::MAX)
            .min(self.cfg.max);
        let half = d / 2;
        let jitter_ns = u64::try_from(half.as_nanos()).unwrap_or(u64::MAX);
        half + Duration::from_nanos(if jitter_ns == 0 {
            0
        } else {
            rand::random_range(0..=jitter_ns)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn polls_spread_with_a_slow_round_trip_only_with_handoff_on() {
        let ms = Duration::from_millis;
        let b = Backoff::default();
        let h = Handoff::default();
        // Nothing measured yet, or a fast server: the configured backoff.
        assert_eq!(h.poll_max(&b, None), ms(50));
        assert_eq!(h.poll_max(&b, Some(ms(1))), ms(50));
        // 16 round trips of 5 ms; at most 4 times `max`.
        assert_eq!(h.poll_max(&b, Some(ms(5))), ms(80));
        assert_eq!(h.poll_max(&b, Some(Duration::from_secs(1))), ms(200));
        // A turn elsewhere: 32 round trips, at most `max_hold`.
        assert_eq!(h.turn(None), Duration::ZERO);
        assert_eq!(h.turn(Some(ms(5))), ms(160));
        assert_eq!(h.turn(Some(ms(50))), ms(200));
        // Handoff off: the caller's backoff, exactly.
        assert_eq!(Handoff::off().poll_max(&b, Some(ms(5))), ms(50));
        // The hold-back follows the polls, unless it was set.
        assert_eq!(h.effective_hold_back(&b), ms(60));
        assert_eq!(h.hold_back_for(&b, Some(ms(5))), ms(90));
        let set = Handoff {
            hold_back: Some(ms(7)),
            ..h
        };
        assert_eq!(set.hold_back_for(&b, Some(ms(5))), ms(7));
        // The waits grow up to the stretched longest wait, never beyond.
        let mut state = BackoffState::new(b);
        let waits: Vec<Duration> = (0..12)
            .map(|_| state.next_delay_up_to(ms(80), false))
            .collect();
        assert!(waits.iter().all(|w| *w <= ms(80)), "{waits:?}");
        assert!(waits[0] <= ms(5) && waits[11] >= ms(40), "{waits:?}");
        // A process that just gave the lock up polls at the longest wait.
        let mut state = BackoffState::new(b);
        let first = state.next_delay_up_to(ms(160), true);
        assert!(first >= ms(80) && first <= ms(160), "{first:?}");
        // ... and when that wait shrinks again, the next one follows it.
        let next = state.next_delay_up_to(ms(80), true);
        assert!(next >= ms(40) && next <= ms(80), "{next:?}");
        let next = state.next_delay_up_to(ms(80), false);
        assert!(next <= ms(80), "{next:?}");
    }

    #[test]
    fn defaults_are_valid() {
        LockOptions::default().validate().expect("defaults");
    }

    #[test]
    fn out_of_range_options_are_refused() {
        for opts in [
            LockOptions::default().lease(Duration::ZERO),
            LockOptions::default().lease(Duration::MAX),
            LockOptions::default().renewal(Renewal::Every(Duration::from_secs(30))),
            LockOptions::default().renewal(Renewal::Every(Duration::ZERO)),
            LockOptions::default().safety_margin(Duration::from_secs(20)),
            LockOptions::default().backoff(Backoff::fixed(Duration::ZERO)),
            LockOptions::default().release_timeout(Duration::ZERO),
            LockOptions::default().safety_margin(Duration::MAX),
            LockOptions::default().owner_label(""),
            LockOptions::default().owner_label("two words"),
            LockOptions::default().owner_label("tab\there"),
            LockOptions::default().owner_label("é"),
            LockOptions::default().owner_label("x".repeat(MAX_OWNER_LABEL + 1)),
        ] {
            assert!(
                matches!(opts.validate(), Err(Error::InvalidOption { .. })),
                "{opts:?}"
            );
        }
    }

    #[test]
    fn an_owner_label_leads_every_owner_id_and_keeps_it_unique() {
        let label = "host-1.example/4242";
        let opts = LockOptions::default().owner_label(label);
        opts.validate().expect("a host and pid label");
        let a = crate::OwnerId::labelled(opts.owner_label.as_deref());
        let b = crate::OwnerId::labelled(opts.owner_label.as_deref());
        assert!(a.as_str().starts_with("host-1.example/4242:"), "{a}");
        assert_eq!(a.as_str().len(), label.len() + 1 + 32, "{a}");
        assert_ne!(a, b);
        assert_eq!(crate::OwnerId::labelled(None).as_str().len(), 32);
        LockOptions::default()
            .owner_label("x".repeat(MAX_OWNER_LABEL))
            .validate()
            .expect("the longest label");
    }

    #[test]
    fn backoff_grows_to_its_bound_with_jitter() {
        let mut b = BackoffState::new(Backoff::default());
        let waits: Vec<_> = (0..12).map(|_| b.next_delay()).collect();
        assert!(waits[0] >= Duration::from_micros(2500) && waits[0] <= Duration::from_millis(5));
        assert!(waits.iter().all(|w| *w <= Duration::from_millis(50)));
        assert!(waits[11] >= Duration::from_millis(25));
    }

    #[test]
    fn huge_backoff_values_saturate() {
        let cfg = Backoff {
            initial: Duration::from_millis(1),
            max: Duration::MAX,
            factor: 1e300,
        };
        let mut b = BackoffState::new(cfg);
        for _ in 0..4 {
            let _ = b.next_delay();
        }
    }

    #[test]
    fn the_margin_always_covers_the_clock_granularity() {
        let opts = LockOptions::default().safety_margin(Duration::ZERO);
        assert_eq!(opts.effective_margin(), CLOCK_GRANULARITY);
    }
}
