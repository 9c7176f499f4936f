//! Metrics, behind the feature `metrics`, through the
//! [`metrics`](https://docs.rs/metrics) crate's facade: install any
//! recorder (a Prometheus, OpenTelemetry or StatsD exporter) and the locks
//! report to it. Without the feature nothing is recorded and the calls are
//! compiled out; the names below exist either way.
//!
//! | name | kind | unit | labels | meaning |
//! | --- | --- | --- | --- | --- |
//! | `shylock_acquisitions_total` | counter | acquisitions | `backend`, `outcome`, `error`, (`name`) | acquisitions ended, by outcome: `granted`, `busy` (a try found the lock held), `timeout`, `cancelled` (the future was dropped), `error` (with `error` the kind) |
//! | `shylock_acquire_wait_seconds` | histogram | seconds | `backend`, `outcome`, (`name`) | how long an acquisition waited, from its start to its outcome (`outcome` as above) |
//! | `shylock_locks_held` | gauge | locks | `backend`, (`name`) | guards alive: acquired and not yet released or dropped (a guard whose lease was lost counts until then) |
//! | `shylock_hold_seconds` | histogram | seconds | `backend`, (`name`) | how long a guard lived, from its grant to its release (or drop) |
//! | `shylock_renewals_total` | counter | renewals | `backend`, (`name`) | renewals that extended a lease |
//! | `shylock_renewal_failures_total` | counter | renewals | `backend`, `error`, (`name`) | renewal attempts that failed with a backend error (retried until the lease runs out) |
//! | `shylock_losses_total` | counter | leases | `backend`, `reason`, (`name`) | leases lost before their release, by reason: `expired`, `taken`, `renewal_failed`, `forced` (counted when the loss is recorded: by the renewal, or at the release of a lease that was not renewed) |
//! | `shylock_releases_total` | counter | releases | `backend`, `outcome`, `error`, (`name`) | releases of guards (explicit, or on drop), by outcome: `released`, `lost` (the lease had been lost: nothing changed), `error` (with `error` the kind) |
//! | `shylock_backend_calls_total` | counter | calls | `backend`, `primitive`, `outcome`, `error` | calls of a backend primitive (`try_acquire`, `renew`, `release`, `hand_over`, `inspect`, `server_time`), by outcome: `ok`, or `error` with `error` the kind |
//! | `shylock_backend_call_seconds` | histogram | seconds | `backend`, `primitive`, `outcome` | the latency of those calls, as the core measured it (a call cut off at its deadline counts as a `timeout` error then) |
//!
//! Labels:
//!
//! * `backend`: the kind of backend, the first word of its
//!   [`describe`](crate::Backend::describe): `memory`, `mongodb`,
//!   `arangodb` (`sqlite` for the example backend). Bounded.
//! * `name`: the lock's name, only on locks whose options ask for it
//!   ([`LockOptions::metrics_name_label`](crate::LockOptions::metrics_name_label)):
//!   lock names can be unbounded, and every name is a new series. The
//!   backend-call metrics never carry it.
//! * `error`: only where `outcome` is `error` (and on
//!   `shylock_renewal_failures_total`): the kind of error, one of
//!   `unavailable`, `timeout`, `rate_limited`, `unauthorized`,
//!   `invalid_config`, `unexpected`, `other` (a backend's
//!   [`BackendErrorKind`](crate::BackendErrorKind)), `runtime`.
//!
//! Acquisitions refused before anything is sent (a bad name or option, no
//! backend configured) are not counted: they never reach a backend.
//!
//! ```
//! // Every metric shylock records, for dashboards and tests.
//! assert!(shylock_core::metrics::ALL.contains(&shylock_core::metrics::LOCKS_HELD));
//! ```

/// Counter: acquisitions ended, by `outcome` (and `error`).
pub const ACQUISITIONS: &str = "shylock_acquisitions_total";
/// Histogram (seconds): how long acquisitions waited, by `outcome`.
pub const ACQUIRE_WAIT: &str = "shylock_acquire_wait_seconds";
/// Gauge: guards alive (acquired, not yet released or dropped).
pub const LOCKS_HELD: &str = "shylock_locks_held";
/// Histogram (seconds): how long guards lived, grant to release.
pub const HOLD_TIME: &str = "shylock_hold_seconds";
/// Counter: renewals that extended a lease.
pub const RENEWALS: &str = "shylock_renewals_total";
/// Counter: renewal attempts that failed with a backend error, by `error`.
pub const RENEWAL_FAILURES: &str = "shylock_renewal_failures_total";
/// Counter: leases lost before their release, by `reason`.
pub const LOSSES: &str = "shylock_losses_total";
/// Counter: releases of guards, by `outcome` (and `error`).
pub const RELEASES: &str = "shylock_releases_total";
/// Counter: calls of backend primitives, by `primitive` and `outcome`
/// (and `error`).
pub const BACKEND_CALLS: &str = "shylock_backend_calls_total";
/// Histogram (seconds): the latency of backend calls, by `primitive` and
/// `outcome`.
pub const BACKEND_CALL_TIME: &str = "shylock_backend_call_seconds";

/// Every metric above, in the order of the table.
pub const ALL: [&str; 10] = [
    ACQUISITIONS,
    ACQUIRE_WAIT,
    LOCKS_HELD,
    HOLD_TIME,
    RENEWALS,
    RENEWAL_FAILURES,
    LOSSES,
    RELEASES,
    BACKEND_CALLS,
    BACKEND_CALL_TIME,
];

#[cfg(feature = "metrics")]
pub(crate) use on::*;

#[cfg(not(feature = "metrics"))]
pub(crate) use off::*;

/// The recording, with the feature.
#[cfg(feature = "metrics")]
mod on {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Instant;

    pub(crate) use ::metrics::SharedString;
    use ::metrics::{Label, Unit};

    use super::*;
    use crate::{BackendError, BackendErrorKind, Error, LockName, LockOptions, LossReason};

    /// Describe every metric to the recorder, once per process.
    fn describe() {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            ::metrics::describe_counter!(
                ACQUISITIONS,
                Unit::Count,
                "acquisitions ended, by outcome"
            );
            ::metrics::describe_histogram!(
                ACQUIRE_WAIT,
                Unit::Seconds,
                "how long acquisitions waited"
            );
            ::metrics::describe_gauge!(
                LOCKS_HELD,
                Unit::Count,
                "guards alive: acquired, not yet released or dropped"
            );
            ::metrics::describe_histogram!(
                HOLD_TIME,
                Unit::Seconds,
                "how long guards lived, grant to release"
            );
            ::metrics::describe_counter!(RENEWALS, Unit::Count, "renewals that extended a lease");
            ::metrics::describe_counter!(
                RENEWAL_FAILURES,
                Unit::Count,
                "renewal attempts that failed, by error kind"
            );
            ::metrics::describe_counter!(
                LOSSES,
                Unit::Count,
                "leases lost before their release, by reason"
            );
            ::metrics::describe_counter!(RELEASES, Unit::Count, "releases of guards, by outcome");
            ::metrics::describe_counter!(
                BACKEND_CALLS,
                Unit::Count,
                "calls of backend primitives, by primitive and outcome"
            );
            ::metrics::describe_histogram!(
                BACKEND_CALL_TIME,
                Unit::Seconds,
                "latency of backend calls"
            );
        });
    }

    /// The `backend` label of a handle described as `description`.
    pub(crate) fn backend_label(description: &str) -> SharedString {
        let kind = description
            .split(|c: char| c.is_whitespace() || c == ':')
            .next()
            .filter(|k| !k.is_empty())
            .unwrap_or("unknown")
            .to_ascii_lowercase();
        SharedString::from_shared(Arc::<str>::from(kind))
    }

    fn backend_kind(kind: BackendErrorKind) -> &'static str {
        match kind {
            BackendErrorKind::Unavailable => "unavailable",
            BackendErrorKind::Timeout => "timeout",
            BackendErrorKind::RateLimited => "rate_limited",
            BackendErrorKind::Unauthorized => "unauthorized",
            BackendErrorKind::InvalidConfig => "invalid_config",
            BackendErrorKind::Unexpected => "unexpected",
            #[allow(unreachable_patterns)]
            _ => "other",
        }
    }

    fn error_kind(error: &Error) -> &'static str {
        match error {
            Error::Runtime { .. } => "runtime",
            Error::Timeout { .. } => "timeout",
            other => other.backend_kind().map_or("other", backend_kind),
        }
    }

    fn loss_reason(reason: LossReason) -> &'static str {
        match reason {
            LossReason::Expired => "expired",
            LossReason::Taken => "taken",
            LossReason::RenewalFailed => "renewal_failed",
            LossReason::Released => "released",
            LossReason::Forced => "forced",
            #[allow(unreachable_patterns)]
            _ => "other",
        }
    }

    /// The labels of one lock's metrics: its backend, and its name if its
    /// options ask for it.
    #[derive(Debug, Clone)]
    pub(crate) struct Meter {
        base: Vec<Label>,
    }

    impl Meter {
        pub(crate) fn new(backend: &SharedString, name: &LockName, opts: &LockOptions) -> Self {
            describe();
            let mut base = vec![Label::new("backend", backend.clone())];
            if opts.metrics_name_label {
                base.push(Label::new("name", name.as_str().to_owned()));
            }
            Meter { base }
        }

        fn with(&self, extra: &[(&'static str, &'static str)]) -> Vec<Label> {
            let mut labels = self.base.clone();
            labels.extend(extra.iter().map(|(k, v)| Label::new(*k, *v)));
            labels
        }

        /// An acquisition ended after `waited`: `Ok(true)` granted,
        /// `Ok(false)` busy, or the error.
        pub(crate) fn acquisition(&self, result: Result<bool, &Error>, started: Instant) {
            let (outcome, error) = match result {
                Ok(true) => ("granted", None),
                Ok(false) => ("busy", None),
                Err(Error::Timeout { .. }) => ("timeout", None),
                Err(e) => ("error", Some(error_kind(e))),
            };
            self.ended(outcome, error, started);
        }

        fn ended(&self, outcome: &'static str, error: Option<&'static str>, started: Instant) {
            let waited = started.elapsed().as_secs_f64();
            ::metrics::histogram!(ACQUIRE_WAIT, self.with(&[("outcome", outcome)])).record(waited);
            let labels = match error {
                Some(kind) => self.with(&[("outcome", outcome), ("error", kind)]),
                None => self.with(&[("outcome", outcome)]),
            };
            ::metrics::counter!(ACQUISITIONS, labels).increment(1);
        }

        pub(crate) fn renewed(&self) {
            ::metrics::counter!(RENEWALS, self.base.clone()).increment(1);
        }

        pub(crate) fn renewal_failed(&self, error: &BackendError) {
            let labels = self.with(&[("error", backend_kind(error.kind()))]);
            ::metrics::counter!(RENEWAL_FAILURES, labels).increment(1);
        }

        pub(crate) fn lost(&self, reason: LossReason) {
            let labels = self.with(&[("reason", loss_reason(reason))]);
            ::metrics::counter!(LOSSES, labels).increment(1);
        }

        pub(crate) fn released(&self, result: &Result<(), Error>) {
            let labels = match result {
                Ok(()) => self.with(&[("outcome", "released")]),
                Err(Error::LeaseLost { .. }) => self.with(&[("outcome", "lost")]),
                Err(e) => self.with(&[("outcome", "error"), ("error", error_kind(e))]),
            };
            ::metrics::counter!(RELEASES, labels).increment(1);
        }
    }

    /// An acquisition under way: counted as `cancelled` if dropped before
    /// its outcome is counted.
    pub(crate) struct Acquiring<'a> {
        meter: &'a Meter,
        started: Instant,
        done: bool,
    }

    impl<'a> Acquiring<'a> {
        pub(crate) fn start(meter: &'a Meter) -> Self {
            Acquiring {
                meter,
                started: Instant::now(),
                done: false,
            }
        }

        pub(crate) fn end(mut self, result: Result<bool, &Error>) {
            self.done = true;
            self.meter.acquisition(result, self.started);
        }
    }

    impl Drop for Acquiring<'_> {
        fn drop(&mut self) {
            if !self.done {
                self.meter.ended("cancelled", None, self.started);
            }
        }
    }

    /// One held lock, on the gauge from its grant until it ends (at its
    /// release, or when it is dropped).
    #[derive(Debug)]
    pub(crate) struct Held {
        meter: Meter,
        since: Instant,
        ended: AtomicBool,
    }

    impl Held {
        pub(crate) fn start(meter: Meter) -> Self {
            ::metrics::gauge!(LOCKS_HELD, meter.base.clone()).increment(1.0);
            Held {
                meter,
                since: Instant::now(),
                ended: AtomicBool::new(false),
            }
        }

        pub(crate) fn meter(&self) -> &Meter {
            &self.meter
        }

        /// The holding ends (idempotent).
        pub(crate) fn end(&self) {
            if self.ended.swap(true, Ordering::SeqCst) {
                return;
            }
            ::metrics::gauge!(LOCKS_HELD, self.meter.base.clone()).decrement(1.0);
            ::metrics::histogram!(HOLD_TIME, self.meter.base.clone())
                .record(self.since.elapsed().as_secs_f64());
        }
    }

    impl Drop for Held {
        fn drop(&mut self) {
            self.end();
        }
    }

    /// When a backend call started.
    pub(crate) type Started = Instant;

    /// Now, as the start of a backend call.
    pub(crate) fn started() -> Started {
        Instant::now()
    }

    /// The labels of a handle's backend calls.
    #[derive(Debug, Clone)]
    pub(crate) struct Calls {
        backend: SharedString,
    }

    impl Calls {
        pub(crate) fn new(backend: &SharedString) -> Self {
            describe();
            Calls {
                backend: backend.clone(),
            }
        }

        /// A call of `primitive` started at `started` ended with `result`.
        pub(crate) fn record<T>(
            &self,
            primitive: &'static str,
            started: Started,
            result: &Result<T, BackendError>,
        ) {
            let base = [
                Label::new("backend", self.backend.clone()),
                Label::new("primitive", primitive),
            ];
            let (outcome, error) = match result {
                Ok(_) => ("ok", None),
                Err(e) => ("error", Some(backend_kind(e.kind()))),
            };
            let mut timed = base.to_vec();
            timed.push(Label::new("outcome", outcome));
            ::metrics::histogram!(BACKEND_CALL_TIME, timed.clone())
                .record(started.elapsed().as_secs_f64());
            if let Some(kind) = error {
                timed.push(Label::new("error", kind));
            }
            ::metrics::counter!(BACKEND_CALLS, timed).increment(1);
        }
    }
}

/// Without the feature: the same calls, doing nothing (compiled out).
#[cfg(not(feature = "metrics"))]
mod off {
    use crate::{BackendError, Error, LockName, LockOptions};

    /// Nothing: the feature is off.
    #[derive(Debug, Clone)]
    pub(crate) struct SharedString;

    #[inline(always)]
    pub(crate) fn backend_label(_description: &str) -> SharedString {
        SharedString
    }

    #[derive(Debug, Clone)]
    pub(crate) struct Meter;

    impl Meter {
        #[inline(always)]
        pub(crate) fn new(_: &SharedString, _: &LockName, _: &LockOptions) -> Self {
            Meter
        }
        #[inline(always)]
        pub(crate) fn renewed(&self) {}
        #[inline(always)]
        pub(crate) fn renewal_failed(&self, _: &BackendError) {}
        #[inline(always)]
        pub(crate) fn released(&self, _: &Result<(), Error>) {}
    }

    pub(crate) struct Acquiring;

    impl Acquiring {
        #[inline(always)]
        pub(crate) fn start(_: &Meter) -> Self {
            Acquiring
        }
        #[inline(always)]
        pub(crate) fn end(self, _: Result<bool, &Error>) {}
    }

    #[derive(Debug)]
    pub(crate) struct Held(Meter);

    impl Held {
        #[inline(always)]
        pub(crate) fn start(meter: Meter) -> Self {
            Held(meter)
        }
        #[inline(always)]
        pub(crate) fn meter(&self) -> &Meter {
            &self.0
        }
        #[inline(always)]
        pub(crate) fn end(&self) {}
    }

    /// Nothing: the feature is off.
    #[derive(Clone, Copy)]
    pub(crate) struct Started;

    #[inline(always)]
    pub(crate) fn started() -> Started {
        Started
    }

    #[derive(Debug, Clone)]
    pub(crate) struct Calls;

    impl Calls {
        #[inline(always)]
        pub(crate) fn new(_: &SharedString) -> Self {
            Calls
        }
        #[inline(always)]
        pub(crate) fn record<T>(&self, _: &'static str, _: Started, _: &Result<T, BackendError>) {}
    }
}

#[cfg(all(test, feature = "metrics"))]
mod tests {
    #[test]
    fn the_backend_label_is_the_kind_of_backend() {
        for (description, label) in [
            ("memory", "memory"),
            ("mongodb projectdb.shylock_locks", "mongodb"),
            ("arangodb http://127.0.0.1:8529/app.locks", "arangodb"),
            ("sqlite /tmp/x.db (shylock_locks)", "sqlite"),
            ("", "unknown"),
        ] {
            assert_eq!(&*super::backend_label(description), label, "{description}");
        }
    }
}
