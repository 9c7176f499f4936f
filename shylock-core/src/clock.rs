//! The core's estimate of a backend's clock.
//!
//! A sample pairs the server time read by `server_time` with the local
//! suspend-aware monotonic moment ([`Tick`]) at which the answer arrived.
//! Since the server read its clock before the answer arrived,
//! `sample + elapsed` is a lower bound of the server clock now (up to clock
//! drift over the sample's age), immune to jumps of the client's wall clock.
//! The round-trip time of the sample bounds how far below the true server
//! time the estimate can be; lease arithmetic on the holder's side subtracts
//! it.
//!
//! A sample taken during a stall (a round trip longer than
//! [`GOOD_ROUND_TRIP`]) is only used when nothing better is known: a
//! previous good sample is kept (up to [`KEEP_GOOD_FOR`]), and a fresh sample
//! is asked for again after [`RETRY_AFTER_STALL`] instead of after
//! [`RESYNC_AFTER`].

use std::sync::Mutex;
use std::time::Duration;

use crate::Timestamp;
use crate::tick::Tick;

/// How long a good sample is used before it is taken again.
pub(crate) const RESYNC_AFTER: Duration = Duration::from_secs(60);
/// A round trip up to this long makes a good sample.
pub(crate) const GOOD_ROUND_TRIP: Duration = Duration::from_millis(250);
/// How long a good sample is kept while new samples come from stalls.
pub(crate) const KEEP_GOOD_FOR: Duration = Duration::from_secs(600);
/// How soon a new sample is asked for after a stalled one.
pub(crate) const RETRY_AFTER_STALL: Duration = Duration::from_secs(1);

/// How far two clocks may drift apart, in millionths of the time elapsed:
/// 200 ppm, four times a common crystal's tolerance. A sample kept
/// [`KEEP_GOOD_FOR`] (600 s) adds 120 ms to the uncertainty; one taken
/// [`RESYNC_AFTER`] ago 12 ms.
pub(crate) const MAX_DRIFT_PER_MILLION: u32 = 200;

/// The drift two clocks may have over `age`.
fn drift_over(age: Duration) -> Duration {
    age * MAX_DRIFT_PER_MILLION / 1_000_000
}

#[derive(Debug, Clone, Copy)]
struct Sample {
    server: Timestamp,
    at: Tick,
    rtt: Duration,
}

impl Sample {
    fn good(&self) -> bool {
        self.rtt <= GOOD_ROUND_TRIP
    }

    fn estimate(&self) -> Estimate {
        let age = Tick::now().since(self.at);
        Estimate {
            now: self.server.saturating_add(age),
            // The server's millisecond and the truncation of the age to
            // milliseconds add up to at most 1 ms more; the two clocks may
            // drift apart by up to `MAX_DRIFT_PER_MILLION` over the age.
            uncertainty: self.rtt + Duration::from_millis(1) + drift_over(age),
        }
    }
}

#[derive(Debug, Default)]
struct Samples {
    /// The sample in use.
    current: Option<Sample>,
    /// When to ask for a new one.
    resample_at: Option<Tick>,
}

/// A lower-bound estimate of the server's clock.
#[derive(Debug, Default)]
pub(crate) struct ServerClock {
    samples: Mutex<Samples>,
}

/// An estimate of the server clock now.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Estimate {
    /// Lower bound of the server clock.
    pub(crate) now: Timestamp,
    /// How far below the true server time `now` may be.
    pub(crate) uncertainty: Duration,
}

impl ServerClock {
    fn samples(&self) -> std::sync::MutexGuard<'_, Samples> {
        self.samples.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The estimate now, unless a new sample is due.
    pub(crate) fn estimate(&self) -> Option<Estimate> {
        let samples = self.samples();
        let due = samples.resample_at.is_none_or(Tick::passed);
        let sample = samples.current?;
        (!due).then(|| sample.estimate())
    }

    /// The estimate now from whatever sample is known, due or not (for
    /// releases, which must not wait for a round trip).
    pub(crate) fn any_estimate(&self) -> Option<Estimate> {
        self.samples().current.map(|s| s.estimate())
    }

    /// Ask for a new sample at the next use (the estimate was too
    /// uncertain to be of use).
    pub(crate) fn invalidate(&self) {
        self.samples().resample_at = None;
    }

    /// Record a sample: the request was sent at `sent`, the answer said
    /// `server` and arrived now. Returns the best estimate now.
    pub(crate) fn record(&self, sent: Tick, server: Timestamp) -> Estimate {
        let at = Tick::now();
        let new = Sample {
            server,
            at,
            rtt: at.since(sent),
        };
        let mut samples = self.samples();
        let keep_old = samples.current.filter(|old| {
            (!new.good() && old.good() && at.since(old.at) < KEEP_GOOD_FOR)
                || (old.estimate().uncertainty < new.rtt && at.since(old.at) < RESYNC_AFTER)
        });
        match keep_old {
            Some(old) => {
                // A stall: keep the good sample, ask again soon.
                samples.resample_at = Some(at.add(RETRY_AFTER_STALL));
                tracing::debug!(
                    rtt_ms = new.rtt.as_millis() as u64,
                    "server clock sample taken during a stall; keeping the previous one"
                );
                old.estimate()
            }
            None => {
                samples.current = Some(new);
                samples.resample_at = Some(at.add(if new.good() {
                    RESYNC_AFTER
                } else {
                    RETRY_AFTER_STALL
                }));
                new.estimate()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn estimate_advances_with_the_monotonic_clock() {
        let _clocks = crate::tick::suspend::LOCK
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let clock = ServerClock::default();
        assert!(clock.estimate().is_none());
        let sent = Tick::now();
        clock.record(sent, Timestamp::from_millis(1_000_000));
        std::thread::sleep(Duration::from_millis(20));
        let e = clock.estimate().expect("fresh sample");
        assert!(e.now.as_millis() >= 1_000_020, "{e:?}");
        assert!(e.now.as_millis() < 1_010_000, "{e:?}");
    }

    #[test]
    fn a_stalled_sample_does_not_replace_a_good_one() {
        let clock = ServerClock::default();
        clock.record(Tick::now(), Timestamp::from_millis(1_000_000));
        let good = clock.estimate().expect("sample");
        assert!(good.uncertainty < Duration::from_millis(50), "{good:?}");
        // A sample whose request was sent 5 s ago (a stall).
        let stalled_sent = Tick::now().sub(Duration::from_secs(5));
        let e = clock.record(stalled_sent, Timestamp::from_millis(1_000_100));
        assert!(
            e.uncertainty < Duration::from_millis(50),
            "the good sample is kept: {e:?}"
        );
        // And a stalled sample alone is used, but asked for again soon.
        let alone = ServerClock::default();
        let e = alone.record(stalled_sent, Timestamp::from_millis(1_000_000));
        assert!(e.uncertainty >= Duration::from_secs(5), "{e:?}");
    }

    /// Issue 18, item 10: an old sample's estimate covers the drift of the
    /// two clocks over its age.
    #[test]
    fn an_old_sample_covers_clock_drift() {
        let server = Timestamp::from_millis(1_000_000);
        let rtt = Duration::from_millis(1);
        let fresh = Sample {
            server,
            at: Tick::now(),
            rtt,
        };
        let old = Sample {
            at: Tick::now().sub(KEEP_GOOD_FOR),
            ..fresh
        };
        let (fresh, old) = (fresh.estimate().uncertainty, old.estimate().uncertainty);
        assert!(
            old >= fresh + Duration::from_millis(119),
            "600 s old: {old:?} (fresh: {fresh:?})"
        );
    }
}
