//! The workers' event log: one line per event, times in nanoseconds of
//! `CLOCK_MONOTONIC`, which every process of the machine shares.
//!
//! ```text
//! G WORKER TOKEN NS H        a grant (clock read after acquire returned); H: 1 if
//!                            it was handed over in process (issue 21), 0 or absent if not
//! E WORKER TOKEN NS HELD     end of a critical section: clock read, then is_held() (1/0)
//! R WORKER TOKEN NS OK       a release (1: it succeeded)
//! X WORKER NS MESSAGE        an error (acquire failed, ...)
//! ```

use std::fmt;

/// Now, on `CLOCK_MONOTONIC`, in nanoseconds.
pub fn mono_ns() -> u64 {
    let ts = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    u64::try_from(ts.tv_sec).unwrap_or(0) * 1_000_000_000 + u64::try_from(ts.tv_nsec).unwrap_or(0)
}

/// One logged event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The lock was granted with `token`; `at` was read after `acquire` returned.
    Grant {
        /// The contender (`p<slot>i<incarnation>c<k>`).
        worker: String,
        /// The fencing token.
        token: u64,
        /// When.
        at: u64,
        /// Whether a holder in the same process handed it over.
        handed: bool,
    },
    /// The critical section ended: `at` was read, then `is_held()` answered `held`.
    End {
        /// The contender.
        worker: String,
        /// The fencing token.
        token: u64,
        /// When (read before `is_held()`).
        at: u64,
        /// The answer of `is_held()`.
        held: bool,
    },
    /// The guard was released.
    Release {
        /// The contender.
        worker: String,
        /// The fencing token.
        token: u64,
        /// When the release returned.
        at: u64,
        /// Whether it succeeded.
        ok: bool,
    },
    /// An error.
    Error {
        /// The contender.
        worker: String,
        /// When.
        at: u64,
        /// What.
        message: String,
    },
}

impl Event {
    /// The contender.
    pub fn worker(&self) -> &str {
        match self {
            Event::Grant { worker, .. }
            | Event::End { worker, .. }
            | Event::Release { worker, .. }
            | Event::Error { worker, .. } => worker,
        }
    }

    /// When.
    pub fn at(&self) -> u64 {
        match self {
            Event::Grant { at, .. }
            | Event::End { at, .. }
            | Event::Release { at, .. }
            | Event::Error { at, .. } => *at,
        }
    }

    /// Parse one line; `None` for a malformed (for example, cut) line.
    pub fn parse(line: &str) -> Option<Event> {
        let mut w = line.split(' ');
        let kind = w.next()?;
        let worker = w.next()?.to_owned();
        let num = |s: Option<&str>| s.and_then(|s| s.parse::<u64>().ok());
        let flag = |s: Option<&str>| match s {
            Some("1") => Some(true),
            Some("0") => Some(false),
            _ => None,
        };
        match kind {
            "G" => Some(Event::Grant {
                worker,
                token: num(w.next())?,
                at: num(w.next())?,
                handed: flag(w.next()).unwrap_or(false),
            }),
            "E" => Some(Event::End {
                worker,
                token: num(w.next())?,
                at: num(w.next())?,
                held: flag(w.next())?,
            }),
            "R" => Some(Event::Release {
                worker,
                token: num(w.next())?,
                at: num(w.next())?,
                ok: flag(w.next())?,
            }),
            "X" => Some(Event::Error {
                worker,
                at: num(w.next())?,
                message: w.collect::<Vec<_>>().join(" "),
            }),
            _ => None,
        }
    }
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Event::Grant {
                worker,
                token,
                at,
                handed,
            } => write!(f, "G {worker} {token} {at} {}", u8::from(*handed)),
            Event::End {
                worker,
                token,
                at,
                held,
            } => write!(f, "E {worker} {token} {at} {}", u8::from(*held)),
            Event::Release {
                worker,
                token,
                at,
                ok,
            } => write!(f, "R {worker} {token} {at} {}", u8::from(*ok)),
            Event::Error {
                worker,
                at,
                message,
            } => write!(f, "X {worker} {at} {}", message.replace('\n', " ")),
        }
    }
}

/// Parse a whole log (malformed lines are skipped).
pub fn parse_log(text: &str) -> Vec<Event> {
    text.lines().filter_map(Event::parse).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let events = [
            Event::Grant {
                worker: "p0i0c0".into(),
                token: 7,
                at: 10,
                handed: true,
            },
            Event::End {
                worker: "p0i0c0".into(),
                token: 7,
                at: 11,
                held: true,
            },
            Event::Release {
                worker: "p0i0c0".into(),
                token: 7,
                at: 12,
                ok: false,
            },
            Event::Error {
                worker: "p0i0c0".into(),
                at: 13,
                message: "server down\nreally".into(),
            },
        ];
        for e in events {
            let parsed = Event::parse(&e.to_string()).expect("parses");
            match (&e, &parsed) {
                (Event::Error { .. }, Event::Error { message, .. }) => {
                    assert_eq!(message, "server down really");
                }
                _ => assert_eq!(parsed, e),
            }
        }
        assert_eq!(Event::parse("G p0 12"), None);
        assert!(matches!(
            Event::parse("G p0 12 13"),
            Some(Event::Grant { handed: false, .. })
        ));
        assert_eq!(Event::parse("E p0 1 2 x"), None);
        assert!(mono_ns() > 0);
    }
}
