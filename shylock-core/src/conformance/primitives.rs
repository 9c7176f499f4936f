//! The primitive-level conformance checks: one public function per clause
//! of the [backend contract](crate::backend), calling the backend's
//! [`AsyncBackend`] or [`SyncBackend`] methods directly.
//!
//! A [`Target`] is the backend under test in one form (from an
//! `Arc<dyn AsyncBackend>`, an `Arc<dyn SyncBackend>` or a [`Backend`]
//! handle), with optionally a second instance for the requests of other
//! owners (a connection of their own) and a [`Fixture`] for what only the
//! backend's own test can do: delete a record (as garbage collection does),
//! write a malformed one, skip a check the backend cannot support (the skip
//! is reported, never silent).
//!
//! Each check is an `async fn(&Target) -> Outcome` that panics, naming the
//! check and the rule, when the backend breaks the contract.
//! [`run_check`] runs one from a plain thread (a `#[test]`), [`run_all`]
//! runs them all and reports, and
//! [`primitive_conformance_tests!`](crate::primitive_conformance_tests)
//! writes one `#[test]` per check:
//!
//! ```
//! use std::sync::Arc;
//! use shylock_core::conformance::primitives::{Target, run_all};
//! use shylock_core::MemoryBackend;
//!
//! fn async_target() -> Target {
//!     let backend = MemoryBackend::new();
//!     Target::from_async(Arc::new(backend.clone()))
//!         .with_contender(Target::from_async(Arc::new(backend)))
//! }
//!
//! shylock_core::primitive_conformance_tests!(async_form, async_target);
//!
//! fn main() {
//!     let report = run_all(&async_target());
//!     assert!(report.failed.is_empty(), "{report:?}");
//!     println!("{} passed, skipped: {:?}", report.passed.len(), report.skipped);
//! }
//! ```
//!
//! # Decisions the checks make
//!
//! * **Malformed records.** A record whose fields a backend cannot read (the
//!   fixture writes one whose fencing counter is not a number) is never a
//!   panic and never a grant, live or expired (a token could not be shown
//!   to rise over it): `try_acquire` of another owner answers `Busy` or an
//!   [`Unexpected`](crate::BackendErrorKind::Unexpected) error, `renew` and
//!   `release` of another owner answer `Lost` / `NotOwner` or `Unexpected`,
//!   and `inspect` of the live record answers `Unexpected` (an unreadable
//!   record is neither hidden as free nor made up).
//! * **Hostile records** ([`Hostile`], issue 23.3): records another program
//!   wrote. Every call answers within its deadline; a badly typed or
//!   incomplete record is an `Unexpected` error at acquire naming the lock
//!   (not `Busy` for ever); an expiry beyond the server time +
//!   [`RECORD_HORIZON`](crate::RECORD_HORIZON) is taken over with a higher
//!   token; a future epoch or a huge counter is refused (`Unexpected`) or
//!   granted a higher token; none is listed as held by `list`; and after
//!   the record's deletion the next token is above every one granted
//!   before. A kind the fixture cannot write
//!   (typed columns) is skipped.
//! * **Optional primitives.** The checks of `list`, `force_release` and
//!   `audit` report themselves skipped for a backend that answers
//!   [`Unsupported`](crate::BackendErrorKind::Unsupported).
//! * **Timing.** Checks that wait for an expiry use leases of 1–2 s and
//!   judge each answer by what was measured around it (when the request was
//!   sent, when its answer came), with a margin of
//!   [`TIMING_MARGIN`]: an answer that came too late to tell is not
//!   judged, so a loaded machine makes a check slower, never wrong.
//! * **Hand over** is optional: a backend whose `supports_hand_over` is
//!   false has that check skipped (the core releases and acquires instead).
//! * **Late duplicates** are the same request (same owner and lease) with
//!   an older `now`, as one held up on its way carries.

mod checks;

use std::fmt;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::Primitives;
use crate::backend::{
    AcquireOutcome, AcquireRequest, AsyncBackend, AuditRequest, ClockSource, ForceReleaseOutcome,
    ForceReleaseRequest, ForcedRelease, Grant, HandOverOutcome, HandOverRequest, InspectRequest,
    ListPage, ListRequest, LockRecord, ReleaseOutcome, ReleaseRequest, RenewOutcome, RenewRequest,
    SyncBackend,
};
use crate::{Backend, BackendError, FencingToken, LockName, OwnerId, Timestamp};

pub use checks::{
    basic_cycle, busy_while_held_by_another, clock_source_is_honoured,
    expired_lease_nobody_took_is_renewable, force_release_ends_any_holding_with_an_audit_trail,
    hand_over_moves_the_lock_in_one_step, hostile_records_end_and_never_lower_tokens,
    late_duplicates_never_regrant_a_released_owner, late_duplicates_never_shorten_a_lease,
    list_pages_cover_every_held_lock_once, list_shows_held_locks_only_by_prefix,
    malformed_records_are_errors_not_grants, names_of_any_content_and_length_are_distinct_locks,
    non_owners_change_nothing, release_is_idempotent, takeover_at_expiry_and_not_before,
    tokens_rise, tokens_rise_across_deletion_of_the_record,
};

/// A record written by something other than this library (a bug in another
/// program, a restore from a backup, a hand edit): what
/// [`Fixture::write_hostile`] writes. Each is held by an owner that is not
/// the check's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Hostile {
    /// Fields of the wrong type: the owner a number, the expiry a string.
    WrongTypes,
    /// Held, with no expiry and no fencing counter.
    MissingFields,
    /// Held, well typed, expiring far beyond the server time plus the
    /// longest lease ([`MAX_LEASE`](crate::MAX_LEASE)), say in year 9999.
    FarFutureExpiry,
    /// Free, well typed, with a token base far in the future (a MongoDB or
    /// ArangoDB `epoch` of 4102444800000, year 2100).
    FutureEpoch,
    /// Free, with a fencing counter near the top of its range.
    HugeCounter,
}

impl Hostile {
    /// Every kind, in the order the check writes them.
    pub const ALL: &'static [Hostile] = &[
        Hostile::WrongTypes,
        Hostile::MissingFields,
        Hostile::FarFutureExpiry,
        Hostile::FutureEpoch,
        Hostile::HugeCounter,
    ];
}

/// How far apart the backend's clock and this machine's monotonic clock may
/// drift during one timed check, plus the millisecond granularity of records.
pub const TIMING_MARGIN: Duration = Duration::from_millis(150);

/// Which form of the backend a [`Target`] calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    /// [`AsyncBackend`].
    Async,
    /// [`SyncBackend`].
    Sync,
}

/// The backend under test, in one form; see the [module docs](self).
#[derive(Clone)]
pub struct Target {
    main: Primitives,
    contender: Option<Primitives>,
    fixture: Option<Arc<dyn Fixture>>,
    runtimes: Vec<Arc<tokio::runtime::Runtime>>,
    prefix: String,
    described: String,
}

impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Target")
            .field("backend", &self.described)
            .field("form", &self.form())
            .field("contender", &self.contender.is_some())
            .field("fixture", &self.fixture.is_some())
            .finish()
    }
}

impl Target {
    fn new(main: Primitives) -> Self {
        let described = main.describe();
        Target {
            main,
            contender: None,
            fixture: None,
            runtimes: Vec::new(),
            prefix: "prim".to_owned(),
            described,
        }
    }

    /// The async form of a backend. Its checks run on the runtime given
    /// with [`with_runtime`](Self::with_runtime) (where a backend whose
    /// client lives on a runtime was made), else on a runtime of their own.
    pub fn from_async(backend: Arc<dyn AsyncBackend>) -> Self {
        Self::new(Primitives::Async(backend))
    }

    /// The sync form of a backend; its checks run on the calling thread.
    pub fn from_sync(backend: Arc<dyn SyncBackend>) -> Self {
        Self::new(Primitives::Sync(backend))
    }

    /// The async form of a handle's backend (for a handle made from a sync
    /// backend: the core's bridge over it).
    pub fn async_of(backend: &Backend) -> Self {
        Self::from_async(backend.async_form())
    }

    /// The sync form of a handle's backend (for a handle made from an async
    /// backend: the core's bridge over it).
    pub fn sync_of(backend: &Backend) -> Self {
        Self::from_sync(backend.sync_form())
    }

    /// Send the requests of owners other than a check's first one through
    /// `other` (another instance of the same backend, on a connection of
    /// its own), so that they meet the first owner's on the server. Without
    /// one, all requests go through this target's backend.
    ///
    /// # Panics
    /// If `other` is of another [`Form`].
    pub fn with_contender(mut self, other: Target) -> Self {
        assert_eq!(
            self.form(),
            other.form(),
            "a contender is of the target's form"
        );
        self.contender = Some(other.main);
        self.runtimes.extend(other.runtimes);
        self
    }

    /// What only the backend's own test can do; see [`Fixture`].
    pub fn with_fixture(mut self, fixture: impl Fixture) -> Self {
        self.fixture = Some(Arc::new(fixture));
        self
    }

    /// The runtime the async form's checks run on (kept alive with the
    /// target): the one the backend's client was made on.
    pub fn with_runtime(mut self, runtime: tokio::runtime::Runtime) -> Self {
        self.runtimes.insert(0, Arc::new(runtime));
        self
    }

    /// A prefix for the lock names the checks use (default `prim`; a
    /// random suffix is added per target).
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// The form this target calls.
    pub fn form(&self) -> Form {
        match self.main {
            Primitives::Async(_) => Form::Async,
            Primitives::Sync(_) => Form::Sync,
        }
    }

    /// The backend's description and the form, for messages.
    pub fn describe(&self) -> String {
        let form = match self.form() {
            Form::Async => "async",
            Form::Sync => "sync",
        };
        format!("{} ({form} form)", self.described)
    }
}

/// Why a [`Fixture`] cannot do something: the check that needed it is
/// reported as skipped with this reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsupported(pub String);

impl Unsupported {
    /// With a reason.
    pub fn new(reason: impl Into<String>) -> Self {
        Unsupported(reason.into())
    }
}

/// What only a backend's own test can do to its records, for the checks
/// that need it. Every method may answer [`Unsupported`]: the check is then
/// reported as skipped, with the reason. A method that fails for another
/// reason (the server refused the write) panics: the test fails.
///
/// The methods block; the checks call them from a thread of their own, so
/// a blocking client (a sync database driver) may be used here even for a
/// target of the async form.
///
/// For a backend over an SQLite file, say (the check of malformed records
/// then reports itself skipped, with the reason):
///
/// ```
/// use std::sync::Arc;
/// use shylock_core::conformance::primitives::{Fixture, Target, Unsupported};
/// use shylock_core::{LockName, MemoryBackend};
///
/// struct SqliteFixture {
///     path: std::path::PathBuf,
/// }
///
/// impl Fixture for SqliteFixture {
///     fn delete_record(&self, name: &LockName) -> Result<(), Unsupported> {
///         // On a connection of its own to `self.path`:
///         // DELETE FROM locks WHERE name = ?1
///         let _ = (&self.path, name);
///         Ok(())
///     }
///     // `write_malformed` left out: every column is typed, so the default
///     // (Unsupported) says the check is skipped.
/// }
///
/// let backend = MemoryBackend::new(); // stands for SqliteBackend::open(path)
/// let target = Target::from_sync(Arc::new(backend))
///     .with_fixture(SqliteFixture { path: "locks.db".into() });
/// # drop(target);
/// ```
pub trait Fixture: Send + Sync + 'static {
    /// Delete the record of `name` as garbage collection would (the
    /// record was released before).
    fn delete_record(&self, name: &LockName) -> Result<(), Unsupported> {
        let _ = name;
        Err(Unsupported::new(
            "this backend's test cannot delete a record",
        ))
    }

    /// Write a record for `name`, held by `owner` until `expires_at` (on
    /// the backend's clock), that the backend cannot read: say its fencing
    /// counter is a string.
    fn write_malformed(
        &self,
        name: &LockName,
        owner: &OwnerId,
        expires_at: Timestamp,
    ) -> Result<(), Unsupported> {
        let _ = (name, owner, expires_at);
        Err(Unsupported::new(
            "this backend's test cannot write a malformed record",
        ))
    }

    /// Change the record of `name` (which exists: it was granted and
    /// released before) into one of the `kind` this library never writes,
    /// keeping the fields the kind is not about (its counters, unless the
    /// kind is about them). A kind the backend's storage cannot hold (typed columns)
    /// answers [`Unsupported`]: the check skips that kind.
    fn write_hostile(&self, name: &LockName, kind: Hostile) -> Result<(), Unsupported> {
        let _ = (name, kind);
        Err(Unsupported::new(
            "this backend's test cannot write a hostile record",
        ))
    }

    /// Why `check` cannot hold for this backend, if it cannot: it is then
    /// reported as skipped instead of run.
    fn skip(&self, check: Check) -> Option<String> {
        let _ = check;
        None
    }
}

/// How a check ended, when it did not panic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Every rule held.
    Passed,
    /// Not run (or not all of it), with the reason.
    Skipped(String),
}

macro_rules! checks {
    ($($variant:ident => $function:ident,)*) => {
        /// The checks, one per clause of the contract (more may come).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum Check {
            $(
                #[doc = concat!("[`", stringify!($function), "`]")]
                $variant,
            )*
        }

        impl Check {
            /// Every check, in the order [`run_all`] runs them.
            pub const ALL: &'static [Check] = &[$(Check::$variant,)*];

            /// The check's function name.
            pub fn name(self) -> &'static str {
                match self {
                    $(Check::$variant => stringify!($function),)*
                }
            }

            /// Run the check against `target`.
            ///
            /// # Panics
            /// If the backend breaks the rule the check is about.
            pub async fn run(self, target: &Target) -> Outcome {
                if let Some(reason) = target.fixture.as_ref().and_then(|f| f.skip(self)) {
                    return Outcome::Skipped(reason);
                }
                match self {
                    $(Check::$variant => $function(target).await,)*
                }
            }
        }
    };
}

checks! {
    BasicCycle => basic_cycle,
    TokensRise => tokens_rise,
    TokensRiseAcrossDeletion => tokens_rise_across_deletion_of_the_record,
    TakeoverAtExpiry => takeover_at_expiry_and_not_before,
    ExpiredLeaseRenewable => expired_lease_nobody_took_is_renewable,
    BusyWhileHeld => busy_while_held_by_another,
    NonOwnersChangeNothing => non_owners_change_nothing,
    ReleaseIsIdempotent => release_is_idempotent,
    HandOver => hand_over_moves_the_lock_in_one_step,
    LateDuplicatesNeverShorten => late_duplicates_never_shorten_a_lease,
    LateDuplicatesNeverRegrant => late_duplicates_never_regrant_a_released_owner,
    NamesAreDistinct => names_of_any_content_and_length_are_distinct_locks,
    MalformedRecords => malformed_records_are_errors_not_grants,
    HostileRecords => hostile_records_end_and_never_lower_tokens,
    ClockSource => clock_source_is_honoured,
    ListShowsHeld => list_shows_held_locks_only_by_prefix,
    ListPaging => list_pages_cover_every_held_lock_once,
    ForceRelease => force_release_ends_any_holding_with_an_audit_trail,
}

/// Run one check against `target`, blocking the calling thread (a plain
/// thread, such as a `#[test]`'s, not a runtime's): the sync form on this
/// thread, the async form on the target's runtime (see
/// [`Target::with_runtime`]) or on one of its own.
/// (Inside an async test, await the check's function, or
/// [`Check::run`], instead: for a target of the async form.)
///
/// # Panics
/// If the backend breaks the rule the check is about.
pub fn run_check(check: Check, target: &Target) -> Outcome {
    block(target, check.run(target))
}

fn block<T>(target: &Target, fut: impl Future<Output = T>) -> T {
    match target.form() {
        Form::Sync => crate::exec::block_on(fut),
        Form::Async => match target.runtimes.first() {
            Some(runtime) => runtime.block_on(fut),
            None => tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("a runtime for the async form's checks")
                .block_on(fut),
        },
    }
}

/// What [`run_all`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// The checks that held.
    pub passed: Vec<Check>,
    /// The checks not run, with the reason.
    pub skipped: Vec<(Check, String)>,
    /// The checks that failed, with their panic message.
    pub failed: Vec<(Check, String)>,
}

impl Report {
    /// Panic, listing every failed check, if any failed.
    #[track_caller]
    pub fn assert_passed(&self) {
        if !self.failed.is_empty() {
            let lines: Vec<String> = self
                .failed
                .iter()
                .map(|(check, why)| format!("{}: {why}", check.name()))
                .collect();
            panic!(
                "{} primitive conformance check(s) failed:\n{}",
                lines.len(),
                lines.join("\n")
            );
        }
    }
}

/// Run every check against `target` (as [`run_check`] does: from a plain
/// thread), each to its end, and report which held, which were skipped and
/// which failed (a failure's panic is caught and its message kept).
pub fn run_all(target: &Target) -> Report {
    let mut report = Report::default();
    for &check in Check::ALL {
        match std::panic::catch_unwind(AssertUnwindSafe(|| run_check(check, target))) {
            Ok(Outcome::Passed) => report.passed.push(check),
            Ok(Outcome::Skipped(reason)) => report.skipped.push((check, reason)),
            Err(panic) => {
                let message = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                    .unwrap_or_else(|| "a panic without a message".to_owned());
                report.failed.push((check, message));
            }
        }
    }
    report
}

/// Write one `#[test]` per primitive conformance check, in a module of
/// the given name, each against a fresh target from `$make` (any
/// expression callable as `Fn() -> Target`, resolved in the module where
/// the macro is used). A skipped check passes and says why on stderr.
///
/// ```
/// use std::sync::Arc;
/// use shylock_core::conformance::primitives::Target;
/// use shylock_core::MemoryBackend;
///
/// fn memory_sync() -> Target {
///     Target::from_sync(Arc::new(MemoryBackend::new()))
/// }
///
/// // Tests `sync_form::basic_cycle`, `sync_form::tokens_rise`, ...
/// shylock_core::primitive_conformance_tests!(sync_form, memory_sync);
/// # fn main() {}
/// ```
#[macro_export]
macro_rules! primitive_conformance_tests {
    ($module:ident, $make:expr) => {
        $crate::primitive_conformance_tests!(@module $module, $make,
            basic_cycle BasicCycle,
            tokens_rise TokensRise,
            tokens_rise_across_deletion_of_the_record TokensRiseAcrossDeletion,
            takeover_at_expiry_and_not_before TakeoverAtExpiry,
            expired_lease_nobody_took_is_renewable ExpiredLeaseRenewable,
            busy_while_held_by_another BusyWhileHeld,
            non_owners_change_nothing NonOwnersChangeNothing,
            release_is_idempotent ReleaseIsIdempotent,
            hand_over_moves_the_lock_in_one_step HandOver,
            late_duplicates_never_shorten_a_lease LateDuplicatesNeverShorten,
            late_duplicates_never_regrant_a_released_owner LateDuplicatesNeverRegrant,
            names_of_any_content_and_length_are_distinct_locks NamesAreDistinct,
            malformed_records_are_errors_not_grants MalformedRecords,
            hostile_records_end_and_never_lower_tokens HostileRecords,
            clock_source_is_honoured ClockSource,
            list_shows_held_locks_only_by_prefix ListShowsHeld,
            list_pages_cover_every_held_lock_once ListPaging,
            force_release_ends_any_holding_with_an_audit_trail ForceRelease,
        );
    };
    (@module $module:ident, $make:expr, $($test:ident $check:ident,)*) => {
        mod $module {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[test]
                fn $test() {
                    use $crate::conformance::primitives as p;
                    let make = $make;
                    let target: p::Target = make();
                    if let p::Outcome::Skipped(reason) = p::run_check(p::Check::$check, &target) {
                        eprintln!(
                            "SKIPPED {} on {}: {reason}",
                            stringify!($test),
                            target.describe()
                        );
                    }
                }
            )*
        }
    };
}

/// A check's view of its target: names, the two owners' backends, the
/// rules.
struct Cx<'a> {
    target: &'a Target,
    check: Check,
    prefix: String,
}

impl<'a> Cx<'a> {
    fn new(target: &'a Target, check: Check) -> Self {
        let form = match target.form() {
            Form::Async => "a",
            Form::Sync => "s",
        };
        Cx {
            target,
            check,
            prefix: super::unique_prefix(&target.prefix, form),
        }
    }

    /// A lock name of this check's own.
    fn name(&self, tag: &str) -> LockName {
        LockName::new(format!("{}-{tag}", self.prefix)).expect("a valid lock name")
    }

    /// The first owner's backend.
    fn main(&self) -> Side<'_> {
        Side {
            cx: self,
            prims: &self.target.main,
        }
    }

    /// Other owners' backend (the contender, if given).
    fn other(&self) -> Side<'_> {
        Side {
            cx: self,
            prims: self.target.contender.as_ref().unwrap_or(&self.target.main),
        }
    }

    fn clock(&self) -> ClockSource {
        self.target.main.clock()
    }

    #[track_caller]
    fn ensure(&self, ok: bool, rule: impl fmt::Display) {
        if !ok {
            self.fail(rule);
        }
    }

    #[track_caller]
    fn fail(&self, rule: impl fmt::Display) -> ! {
        panic!(
            "primitive conformance ({}, {}): {rule}",
            self.target.describe(),
            self.check.name()
        )
    }

    async fn sleep(&self, d: Duration) {
        match self.target.form() {
            Form::Async => tokio::time::sleep(d).await,
            Form::Sync => std::thread::sleep(d),
        }
    }

    /// Run a fixture method on a thread of its own (it may block on a
    /// client that must not run inside a runtime).
    fn fixture<T: Send>(
        &self,
        call: impl FnOnce(&dyn Fixture) -> Result<T, Unsupported> + Send,
    ) -> Result<T, Unsupported> {
        let Some(fixture) = self.target.fixture.as_deref() else {
            return Err(Unsupported::new("no fixture was given for this backend"));
        };
        std::thread::scope(|s| {
            s.spawn(|| call(fixture))
                .join()
                .unwrap_or_else(|_| self.fail("the fixture panicked"))
        })
    }

    /// A grant, or the check fails.
    #[track_caller]
    fn granted(&self, got: Result<AcquireOutcome, BackendError>, what: &str) -> Grant {
        match got {
            Ok(AcquireOutcome::Acquired(grant)) => grant,
            other => self.fail(format!("{what}: expected a grant, got {other:?}")),
        }
    }

    /// A value, or the check fails naming the request.
    #[track_caller]
    fn ok<T>(&self, got: Result<T, BackendError>, what: &str) -> T {
        got.unwrap_or_else(|e| self.fail(format!("{what}: the backend failed: {e:?}")))
    }
}

fn deadline() -> Option<Instant> {
    Some(Instant::now() + Duration::from_secs(20))
}

/// One owner's way to the backend.
struct Side<'a> {
    cx: &'a Cx<'a>,
    prims: &'a Primitives,
}

impl Side<'_> {
    async fn now(&self) -> Timestamp {
        let got = self.prims.server_time(deadline()).await;
        self.cx.ok(got, "server_time")
    }

    async fn acquire_at(
        &self,
        name: &LockName,
        owner: &OwnerId,
        lease: Duration,
        now: Timestamp,
    ) -> Result<AcquireOutcome, BackendError> {
        let deadline = deadline();
        let req = AcquireRequest {
            name,
            owner,
            lease,
            now,
            deadline,
        };
        self.prims.try_acquire(req).await
    }

    /// Acquire with `now` read from the backend just before.
    async fn acquire(
        &self,
        name: &LockName,
        owner: &OwnerId,
        lease: Duration,
    ) -> Result<AcquireOutcome, BackendError> {
        let now = self.now().await;
        self.acquire_at(name, owner, lease, now).await
    }

    async fn renew_at(
        &self,
        name: &LockName,
        owner: &OwnerId,
        token: FencingToken,
        lease: Duration,
        now: Timestamp,
    ) -> Result<RenewOutcome, BackendError> {
        let deadline = deadline();
        let req = RenewRequest {
            name,
            owner,
            token,
            lease,
            now,
            deadline,
        };
        self.prims.renew(req).await
    }

    async fn renew(
        &self,
        name: &LockName,
        owner: &OwnerId,
        token: FencingToken,
        lease: Duration,
    ) -> Result<RenewOutcome, BackendError> {
        let now = self.now().await;
        self.renew_at(name, owner, token, lease, now).await
    }

    async fn release(
        &self,
        name: &LockName,
        owner: &OwnerId,
        token: FencingToken,
    ) -> Result<ReleaseOutcome, BackendError> {
        let now = self.now().await;
        let deadline = deadline();
        let req = ReleaseRequest {
            name,
            owner,
            token,
            now,
            deadline,
        };
        self.prims.release(req).await
    }

    /// Hand `name` over from `from` to `to`, with `now` read from the
    /// backend just before.
    async fn hand_over(
        &self,
        name: &LockName,
        from: &OwnerId,
        token: FencingToken,
        to: &OwnerId,
        lease: Duration,
    ) -> Result<HandOverOutcome, BackendError> {
        let now = self.now().await;
        let deadline = deadline();
        self.prims
            .hand_over(HandOverRequest {
                name,
                from,
                token,
                to,
                lease,
                now,
                deadline,
            })
            .await
    }

    async fn inspect_at(
        &self,
        name: &LockName,
        now: Timestamp,
    ) -> Result<Option<LockRecord>, BackendError> {
        let deadline = deadline();
        self.prims
            .inspect(InspectRequest {
                name,
                now,
                deadline,
            })
            .await
    }

    /// Inspect with `now` read from the backend just before; the check
    /// fails on an error.
    async fn inspect(&self, name: &LockName) -> Option<LockRecord> {
        let now = self.now().await;
        let got = self.inspect_at(name, now).await;
        self.cx.ok(got, "inspect")
    }

    async fn list(
        &self,
        prefix: Option<&str>,
        after: Option<&LockName>,
        limit: usize,
    ) -> Result<ListPage, BackendError> {
        let now = self.now().await;
        let deadline = deadline();
        self.prims
            .list(ListRequest {
                prefix,
                after,
                limit,
                now,
                deadline,
            })
            .await
    }

    async fn force_release(
        &self,
        name: &LockName,
        by: &str,
        reason: &str,
    ) -> Result<ForceReleaseOutcome, BackendError> {
        let now = self.now().await;
        let deadline = deadline();
        self.prims
            .force_release(ForceReleaseRequest {
                name,
                by,
                reason,
                now,
                deadline,
            })
            .await
    }

    async fn audit(&self, name: &LockName) -> Result<Option<ForcedRelease>, BackendError> {
        let deadline = deadline();
        self.prims.audit(AuditRequest { name, deadline }).await
    }
}
