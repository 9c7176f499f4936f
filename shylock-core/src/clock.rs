//! The core's estimate of a backend's clock.
//!
//! A sample pairs the server time read by `server_time` with the local
//! monotonic instant at which the answer arrived. Since the server read its
//! clock before the answer arrived, `sample + elapsed` is a lower bound of the
//! server clock now (up to clock drift over the sample's age), immune to jumps
//! of the client's wall clock. The round-trip time of the sample bounds how
//! far below the true server time the estimate can be; lease arithmetic on
//! the holder's side subtracts it.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::Timestamp;

/// How long a sample is trusted before it is taken again.
pub(crate) const RESYNC_AFTER: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy)]
struct Sample {
    server: Timestamp,
    at: Instant,
    rtt: Duration,
}

/// A lower-bound estimate of the server's clock.
#[derive(Debug, Default)]
pub(crate) struct ServerClock {
    sample: Mutex<Option<Sample>>,
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
    /// The estimate now, if a fresh sample exists.
    pub(crate) fn estimate(&self) -> Option<Estimate> {
        let sample = (*self.sample.lock().unwrap_or_else(|e| e.into_inner()))?;
        let age = sample.at.elapsed();
        (age < RESYNC_AFTER).then(|| Estimate {
            now: sample.server.saturating_add(age),
            uncertainty: sample.rtt + Duration::from_millis(1),
        })
    }

    /// Record a sample: the request was sent at `sent`, the answer said
    /// `server` and arrived now.
    pub(crate) fn record(&self, sent: Instant, server: Timestamp) -> Estimate {
        let at = Instant::now();
        let sample = Sample {
            server,
            at,
            rtt: at.duration_since(sent),
        };
        *self.sample.lock().unwrap_or_else(|e| e.into_inner()) = Some(sample);
        Estimate {
            now: server,
            uncertainty: sample.rtt + Duration::from_millis(1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn estimate_advances_with_the_monotonic_clock() {
        let clock = ServerClock::default();
        assert!(clock.estimate().is_none());
        let sent = Instant::now();
        clock.record(sent, Timestamp::from_millis(1_000_000));
        std::thread::sleep(Duration::from_millis(20));
        let e = clock.estimate().expect("fresh sample");
        assert!(e.now.as_millis() >= 1_000_020, "{e:?}");
        assert!(e.now.as_millis() < 1_010_000, "{e:?}");
    }
}
