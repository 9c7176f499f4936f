//! The fault-injection suite of shylock (issue 9): worker processes that
//! contend for one lock and log what they do on `CLOCK_MONOTONIC`
//! ([`worker`], [`events`]), a controller that runs them against FerretDB
//! behind `shylock_testkit`'s proxy or against the ArangoDB emulator and
//! injects faults ([`control`]), and a checker of the logs ([`check`]).
//!
//! `scripts/chaos.sh [--long]` runs it; `cargo test -p shylock-chaos` runs
//! the CI size and the negative control.

pub mod check;
pub mod control;
pub mod events;
pub mod worker;
