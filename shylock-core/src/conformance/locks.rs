//! The lock-level suite: every backend is held to the same lock semantics
//! by running [`Lock`]s and [`AsyncLock`]s against it, in its async form
//! ([`run_async`]) and its sync form ([`run_sync`]).
//!
//! The checks run contenders for real (tasks for the async form, threads for
//! the sync form) and check invariants: no two live holders, fencing tokens
//! only rising, loss known to the old holder before a new holder gets the
//! lock. Each check is written once, generic over the form. All checks run
//! in one call; a failed check panics with a message naming the check and
//! the rule. (The primitive-level checks, one test each, are in
//! [`primitives`](super::primitives).)
//!
//! ```
//! # #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
//! # async fn main() {
//! use shylock_core::{conformance::{Suite, run_async}, Backend, MemoryBackend};
//! let mut suite = Suite::new(Backend::from(MemoryBackend::new()), "doc");
//! suite.contenders = 2;
//! suite.rounds = 2;
//! let report = run_async(&suite).await;
//! assert!(report.checks > 50);
//! # }
//! ```

mod network;

use std::fmt::Display;
use std::future::Future;
use std::ops::Deref;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::Primitives;
use crate::backend::{
    AcquireOutcome, AcquireRequest, LockRecord, RELEASERS_REMEMBERED, ReleaseOutcome,
    ReleaseRequest,
};
use crate::exec::block_on;
use crate::{
    AsyncLock, AsyncLockGuard, Backend, BackendError, Backoff, Error, FencingToken, Holding, Lock,
    LockGuard, LockName, LockOptions, LossReason, MAX_NAME_BYTES, OwnerId, Renewal, Timestamp,
};
use network::Wrapper;

/// What the suite runs against, and how hard.
#[derive(Debug, Clone)]
pub struct Suite {
    /// The backend handle under test.
    pub backend: Backend,
    /// A prefix for every lock name the suite uses (a random suffix is
    /// added per run).
    pub prefix: String,
    /// The lease of the checks about expiry, takeover and renewal (default
    /// 400 ms; slower servers want more).
    pub short_lease: Duration,
    /// How many contenders race for one name in the contention check
    /// (default 8).
    pub contenders: usize,
    /// How many acquisitions each contender makes (default 25).
    pub rounds: usize,
    /// A generous bound for "soon" (default 5 s): only a functional bound,
    /// never a performance figure.
    pub slack: Duration,
}

impl Suite {
    /// A suite with the defaults.
    pub fn new(backend: Backend, prefix: impl Into<String>) -> Self {
        Suite {
            backend,
            prefix: prefix.into(),
            short_lease: Duration::from_millis(400),
            contenders: 8,
            rounds: 25,
            slack: Duration::from_secs(5),
        }
    }
}

/// How many rounds the zero-margin check runs (each at least one short
/// lease of [`MIN_LEASE`](crate::MIN_LEASE) or an eighth of
/// [`Suite::short_lease`], whichever is longer).
const MARGIN_ROUNDS: usize = 25;

/// What a run checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Report {
    /// How many check functions ran.
    pub functions: usize,
    /// How many individual assertions held.
    pub checks: usize,
    /// The largest contention run: contenders × acquisitions.
    pub largest_contention: usize,
}

/// Run every check against the async form of `suite.backend`. Needs a
/// multi-threaded tokio runtime.
///
/// # Panics
/// On the first rule a backend breaks, with a message saying which.
pub async fn run_async(suite: &Suite) -> Report {
    let form = AsyncForm(suite.backend.clone());
    let ctx = Ctx::new(suite, "async");
    run_common(&form, &ctx).await;
    cancellation_leaves_nothing_held(&form, &ctx).await;
    a_request_on_its_way_is_cleaned_up_after_it_lands(&form, &ctx).await;
    a_dropped_release_still_releases(&form, &ctx).await;
    an_unpolled_waiter_does_not_hold_the_others_back(&form, &ctx).await;
    run_released(&form, &ctx).await;
    ctx.report()
}

/// Run every check against the sync form of `suite.backend`, blocking the
/// calling thread (call it from a plain thread or `spawn_blocking`).
///
/// # Panics
/// On the first rule a backend breaks, with a message saying which.
pub fn run_sync(suite: &Suite) -> Report {
    let form = SyncForm(suite.backend.clone());
    let ctx = Ctx::new(suite, "sync");
    block_on(async {
        run_common(&form, &ctx).await;
        run_released(&form, &ctx).await;
    });
    ctx.report()
}

async fn run_common<F: Form>(form: &F, ctx: &Ctx) {
    basic_acquire_inspect_release(form, ctx).await;
    tokens_rise_across_releases(form, ctx).await;
    bad_names_and_options_are_refused(form, ctx).await;
    odd_names_are_distinct_locks(form, ctx).await;
    timeouts_end_with_a_timeout_error(form, ctx).await;
    expired_lease_is_taken_over_and_old_release_changes_nothing(form, ctx).await;
    abandoned_lock_is_taken_over_by_acquire(form, ctx).await;
    renewal_keeps_the_lease_past_several_leases(form, ctx).await;
    loss_is_reported_when_renewal_finds_the_lock_taken(form, ctx).await;
    loss_is_reported_when_renewals_fail(form, ctx).await;
    contenders_never_overlap_and_tokens_rise(form, ctx).await;
    waiters_share_one_poller_and_wake_on_local_release(form, ctx).await;
    a_zero_safety_margin_never_gives_two_holders(form, ctx).await;
    a_lost_answer_then_rate_limits_leave_nothing_held(form, ctx).await;
    a_release_whose_answer_was_lost_is_released(form, ctx).await;
}

/// The checks of issue 18 (items 7, 1 and 2): what happens once an owner
/// released, or its clean-up release failed. Run last, in both forms.
async fn run_released<F: Form>(form: &F, ctx: &Ctx) {
    a_late_duplicate_of_a_released_owner_is_not_granted(form, ctx).await;
    a_released_guards_holding_is_not_held(form, ctx).await;
    the_clean_up_release_after_an_unknown_acquire_is_retried(form, ctx).await;
}

struct Ctx {
    prefix: String,
    suite: Suite,
    form: &'static str,
    checks: AtomicUsize,
    functions: AtomicUsize,
    largest: AtomicUsize,
}

impl Ctx {
    fn new(suite: &Suite, form: &'static str) -> Self {
        Ctx {
            prefix: super::unique_prefix(&suite.prefix, form),
            suite: suite.clone(),
            form,
            checks: AtomicUsize::new(0),
            functions: AtomicUsize::new(0),
            largest: AtomicUsize::new(0),
        }
    }

    fn name(&self, check: &str) -> String {
        self.functions.fetch_add(1, Ordering::Relaxed);
        format!("{}-{check}", self.prefix)
    }

    #[track_caller]
    fn check(&self, ok: bool, rule: impl Display) {
        assert!(
            ok,
            "conformance ({} form, {}): {rule}",
            self.form,
            self.suite.backend.describe()
        );
        self.checks.fetch_add(1, Ordering::Relaxed);
    }

    fn report(&self) -> Report {
        Report {
            functions: self.functions.load(Ordering::Relaxed),
            checks: self.checks.load(Ordering::Relaxed),
            largest_contention: self.largest.load(Ordering::Relaxed),
        }
    }

    fn short(&self) -> LockOptions {
        LockOptions::default()
            .lease(self.suite.short_lease)
            .renewal(Renewal::Off)
    }
}

/// The operations of one form, so that every check is written once.
trait Form: Clone + Send + Sync + 'static {
    type Guard: Deref<Target = Holding> + Send + std::fmt::Debug + 'static;
    fn acquire(
        &self,
        name: &str,
        opts: &LockOptions,
    ) -> impl Future<Output = Result<Self::Guard, Error>> + Send;
    fn try_acquire(
        &self,
        name: &str,
        opts: &LockOptions,
    ) -> impl Future<Output = Result<Option<Self::Guard>, Error>> + Send;
    fn release(&self, guard: Self::Guard) -> impl Future<Output = Result<(), Error>> + Send;
    fn inspect(&self, name: &str)
    -> impl Future<Output = Result<Option<LockRecord>, Error>> + Send;
    /// Wait up to `within` for the guard to report a loss.
    fn lost(
        &self,
        guard: &Self::Guard,
        within: Duration,
    ) -> impl Future<Output = Option<LossReason>> + Send;
    fn sleep(&self, d: Duration) -> impl Future<Output = ()> + Send;
    fn spawn<T: Send + 'static>(
        &self,
        f: impl Future<Output = T> + Send + 'static,
    ) -> impl Future<Output = T> + Send + 'static;
    /// The backend's primitives in this form.
    fn primitives(&self) -> Primitives;
    /// Release a record directly through the backend primitive.
    fn raw_release(
        &self,
        name: &LockName,
        owner: &OwnerId,
        token: FencingToken,
    ) -> impl Future<Output = Result<ReleaseOutcome, BackendError>> + Send {
        let primitives = self.primitives();
        async move {
            let now = Timestamp::local_now();
            let req = ReleaseRequest {
                name,
                owner,
                token,
                now,
                deadline: None,
            };
            primitives.release(req).await
        }
    }
    /// Ask for a record directly through the backend primitive, with the
    /// `now` given (as a request sent at that time would carry).
    fn raw_acquire(
        &self,
        name: &LockName,
        owner: &OwnerId,
        lease: Duration,
        now: Timestamp,
    ) -> impl Future<Output = Result<AcquireOutcome, BackendError>> + Send {
        let primitives = self.primitives();
        async move {
            let req = AcquireRequest {
                name,
                owner,
                lease,
                now,
                deadline: None,
            };
            primitives.try_acquire(req).await
        }
    }
    /// The backend's clock, through its primitive.
    fn raw_now(&self) -> impl Future<Output = Result<Timestamp, BackendError>> + Send {
        let primitives = self.primitives();
        async move { primitives.server_time(None).await }
    }
    /// The backend's primitives, to wrap.
    fn wrapped(&self, wrap: impl FnOnce(Primitives) -> Wrapper) -> Self;
}

#[derive(Clone)]
struct AsyncForm(Backend);

impl Form for AsyncForm {
    type Guard = AsyncLockGuard;

    async fn acquire(&self, name: &str, opts: &LockOptions) -> Result<AsyncLockGuard, Error> {
        AsyncLock::with_backend(name, &self.0)
            .options(opts.clone())
            .acquire()
            .await
    }

    async fn try_acquire(
        &self,
        name: &str,
        opts: &LockOptions,
    ) -> Result<Option<AsyncLockGuard>, Error> {
        AsyncLock::with_backend(name, &self.0)
            .options(opts.clone())
            .try_acquire()
            .await
    }

    async fn release(&self, guard: AsyncLockGuard) -> Result<(), Error> {
        guard.release().await
    }

    async fn inspect(&self, name: &str) -> Result<Option<LockRecord>, Error> {
        AsyncLock::with_backend(name, &self.0).inspect().await
    }

    async fn lost(&self, guard: &AsyncLockGuard, within: Duration) -> Option<LossReason> {
        tokio::time::timeout(within, guard.lost()).await.ok()
    }

    async fn sleep(&self, d: Duration) {
        tokio::time::sleep(d).await;
    }

    fn spawn<T: Send + 'static>(
        &self,
        f: impl Future<Output = T> + Send + 'static,
    ) -> impl Future<Output = T> + Send + 'static {
        let task = tokio::spawn(f);
        async move { task.await.expect("a contender task panicked") }
    }

    fn primitives(&self) -> Primitives {
        Primitives::Async(self.0.async_form())
    }

    fn wrapped(&self, wrap: impl FnOnce(Primitives) -> Wrapper) -> Self {
        AsyncForm(Backend::from_async_arc(Arc::new(wrap(self.primitives()))))
    }
}

#[derive(Clone)]
struct SyncForm(Backend);

impl Form for SyncForm {
    type Guard = LockGuard;

    async fn acquire(&self, name: &str, opts: &LockOptions) -> Result<LockGuard, Error> {
        Lock::with_backend(name, &self.0)
            .options(opts.clone())
            .acquire()
    }

    async fn try_acquire(
        &self,
        name: &str,
        opts: &LockOptions,
    ) -> Result<Option<LockGuard>, Error> {
        Lock::with_backend(name, &self.0)
            .options(opts.clone())
            .try_acquire()
    }

    async fn release(&self, guard: LockGuard) -> Result<(), Error> {
        guard.release()
    }

    async fn inspect(&self, name: &str) -> Result<Option<LockRecord>, Error> {
        Lock::with_backend(name, &self.0).inspect()
    }

    async fn lost(&self, guard: &LockGuard, within: Duration) -> Option<LossReason> {
        let until = Instant::now() + within;
        loop {
            if let Some(reason) = guard.lost_reason() {
                return Some(reason);
            }
            if Instant::now() >= until {
                return None;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    async fn sleep(&self, d: Duration) {
        std::thread::sleep(d);
    }

    fn spawn<T: Send + 'static>(
        &self,
        f: impl Future<Output = T> + Send + 'static,
    ) -> impl Future<Output = T> + Send + 'static {
        let thread = std::thread::spawn(move || block_on(f));
        async move { thread.join().expect("a contender thread panicked") }
    }

    fn primitives(&self) -> Primitives {
        Primitives::Sync(self.0.sync_form())
    }

    fn wrapped(&self, wrap: impl FnOnce(Primitives) -> Wrapper) -> Self {
        SyncForm(Backend::from_sync_arc(Arc::new(wrap(self.primitives()))))
    }
}

// ---------------------------------------------------------------- checks --

async fn basic_acquire_inspect_release<F: Form>(form: &F, ctx: &Ctx) {
    let name = ctx.name("basic");
    let opts = LockOptions::default();
    let guard = form
        .acquire(&name, &opts)
        .await
        .expect("acquire a free lock");
    ctx.check(guard.is_held(), "a fresh guard is held");
    ctx.check(
        guard.name().as_str() == name,
        "the guard carries the lock's name",
    );
    ctx.check(guard.token().get() > 0, "fencing tokens are positive");
    ctx.check(
        guard.remaining() > Duration::ZERO,
        "a fresh lease has time left",
    );
    ctx.check(guard.ensure_held().is_ok(), "ensure_held is Ok while held");
    let seen = form.inspect(&name).await.expect("inspect");
    ctx.check(
        seen.as_ref()
            .is_some_and(|r| r.owner == *guard.owner() && r.token == guard.token()),
        format!("inspect shows the holder and its token: {seen:?}"),
    );
    let second = form.try_acquire(&name, &opts).await.expect("try_acquire");
    ctx.check(
        second.is_none(),
        "try_acquire of a held lock returns None at once",
    );
    let token = guard.token();
    ctx.check(
        form.release(guard).await.is_ok(),
        "releasing a held lease succeeds",
    );
    let seen = form.inspect(&name).await.expect("inspect");
    ctx.check(
        seen.is_none(),
        format!("inspect shows a released lock as free: {seen:?}"),
    );
    let again = form.try_acquire(&name, &opts).await.expect("try_acquire");
    ctx.check(
        again.as_ref().is_some_and(|g| g.token() > token),
        "try_acquire of a free lock succeeds with a larger token",
    );
    if let Some(g) = again {
        ctx.check(form.release(g).await.is_ok(), "release");
    }
}

async fn tokens_rise_across_releases<F: Form>(form: &F, ctx: &Ctx) {
    let name = ctx.name("tokens");
    let mut last = FencingToken(0);
    for _ in 0..5 {
        let guard = form
            .acquire(&name, &LockOptions::default())
            .await
            .expect("acquire");
        ctx.check(
            guard.token() > last,
            format!("token {} after {last} rises across releases", guard.token()),
        );
        last = guard.token();
        ctx.check(form.release(guard).await.is_ok(), "release");
    }
}

async fn bad_names_and_options_are_refused<F: Form>(form: &F, ctx: &Ctx) {
    ctx.name("bad-input");
    let opts = LockOptions::default();
    let long = "x".repeat(MAX_NAME_BYTES + 1);
    for bad in ["", long.as_str()] {
        let r = form.acquire(bad, &opts).await;
        ctx.check(
            matches!(r, Err(Error::InvalidName { .. })),
            format!("a name of {} bytes is refused with InvalidName", bad.len()),
        );
        let r = form.try_acquire(bad, &opts).await;
        ctx.check(
            matches!(r, Err(Error::InvalidName { .. })),
            "try_acquire refuses it too",
        );
    }
    let name = format!("{}-bad-options", ctx.prefix);
    for bad in [
        opts.clone().lease(Duration::ZERO),
        opts.clone().lease(Duration::MAX),
        opts.clone().renewal(Renewal::Every(opts.lease)),
        opts.clone().backoff(Backoff::fixed(Duration::ZERO)),
    ] {
        let r = form.acquire(&name, &bad).await;
        ctx.check(
            matches!(r, Err(Error::InvalidOption { .. })),
            format!("options {bad:?} are refused with InvalidOption"),
        );
    }
    ctx.check(
        form.inspect(&name).await.expect("inspect").is_none(),
        "refused input leaves nothing held",
    );
}

async fn odd_names_are_distinct_locks<F: Form>(form: &F, ctx: &Ctx) {
    let base = ctx.name("names");
    let longest: String = {
        let mut s = format!("{base}-");
        while s.len() + 'ß'.len_utf8() <= MAX_NAME_BYTES {
            s.push('ß');
        }
        s
    };
    let names = [
        format!("{base}-a"),
        format!("{base}-A"),
        format!("{base}-a\0b"),
        format!("{base}-a b/c\\d"),
        format!("{base}-$where.{{}}"),
        format!("{base}-ünïcødé 🔒"),
        format!("{base}-%2F:@()+,=;$!*'"),
        format!("{base}-\u{202e}\t\n"),
        longest,
    ];
    let opts = LockOptions::default();
    let mut guards = Vec::new();
    for name in &names {
        let g = form.try_acquire(name, &opts).await;
        ctx.check(
            matches!(g, Ok(Some(_))),
            format!(
                "a lock named {name:?} ({} bytes) is acquired while the others are held: {g:?}",
                name.len()
            ),
        );
        if let Ok(Some(g)) = g {
            guards.push(g);
        }
    }
    for (name, guard) in names.iter().zip(&guards) {
        let seen = form.inspect(name).await.expect("inspect");
        ctx.check(
            seen.is_some_and(|r| r.owner == *guard.owner()),
            format!("inspect({name:?}) shows its own holder"),
        );
    }
    for guard in guards {
        ctx.check(form.release(guard).await.is_ok(), "release");
    }
}

async fn timeouts_end_with_a_timeout_error<F: Form>(form: &F, ctx: &Ctx) {
    let name = ctx.name("timeout");
    let opts = LockOptions::default();
    let holder = form.acquire(&name, &opts).await.expect("acquire");
    for wait in [Duration::ZERO, Duration::from_millis(300)] {
        let started = Instant::now();
        let r = form.acquire(&name, &opts.clone().timeout(wait)).await;
        let waited = started.elapsed();
        ctx.check(
            matches!(r, Err(Error::Timeout { .. })),
            format!("acquire with a {wait:?} timeout on a held lock ends with Timeout: {r:?}"),
        );
        ctx.check(
            waited >= wait,
            format!("it waited the time allowed ({waited:?} >= {wait:?})"),
        );
        ctx.check(
            waited < wait + ctx.suite.slack,
            format!("it did not hang past the time allowed ({waited:?})"),
        );
    }
    let seen = form.inspect(&name).await.expect("inspect");
    ctx.check(
        seen.is_some_and(|r| r.owner == *holder.owner()),
        "timed-out waiters leave the holder in place",
    );
    ctx.check(form.release(holder).await.is_ok(), "release");
    let next = form.try_acquire(&name, &opts).await.expect("try_acquire");
    ctx.check(
        next.is_some(),
        "after a timed-out wait nothing is left held",
    );
    if let Some(g) = next {
        ctx.check(form.release(g).await.is_ok(), "release");
    }
}

async fn expired_lease_is_taken_over_and_old_release_changes_nothing<F: Form>(form: &F, ctx: &Ctx) {
    let name = ctx.name("takeover");
    let a = form.acquire(&name, &ctx.short()).await.expect("acquire");
    let a_valid_until = a.valid_until();
    let b = form
        .acquire(
            &name,
            &LockOptions::default().timeout(ctx.suite.short_lease + ctx.suite.slack),
        )
        .await;
    let b_at = Instant::now();
    let b = b.expect("an expired lease is taken over by the next acquire");
    ctx.check(
        b_at >= a_valid_until,
        "the old holder counted its lease as ended before the new holder got the lock",
    );
    ctx.check(!a.is_held(), "the old holder reports its lease as not held");
    ctx.check(
        a.lost_reason() == Some(LossReason::Expired),
        format!(
            "a lease without renewal is lost by expiry: {:?}",
            a.lost_reason()
        ),
    );
    ctx.check(b.token() > a.token(), "the new holder's token is larger");
    let r = form.release(a).await;
    ctx.check(
        matches!(r, Err(Error::LeaseLost { .. })),
        format!("releasing a lost lease says so: {r:?}"),
    );
    let seen = form.inspect(&name).await.expect("inspect");
    ctx.check(
        seen.is_some_and(|r| r.owner == *b.owner() && r.token == b.token()),
        "releasing a lost lease changes nothing: the new holder still holds",
    );
    ctx.check(form.release(b).await.is_ok(), "release");
}

async fn abandoned_lock_is_taken_over_by_acquire<F: Form>(form: &F, ctx: &Ctx) {
    let name = ctx.name("abandoned");
    let a = form.acquire(&name, &ctx.short()).await.expect("acquire");
    let (a_token, a_valid_until) = (a.token(), a.valid_until());
    // The holder vanishes without releasing (as a killed process would).
    std::mem::forget(a);
    let started = Instant::now();
    let b = form
        .acquire(
            &name,
            &LockOptions::default().timeout(ctx.suite.short_lease + ctx.suite.slack),
        )
        .await
        .expect("an abandoned lock is taken over by acquire, not by a garbage collector");
    ctx.check(
        Instant::now() >= a_valid_until,
        "not before the old lease ran out",
    );
    ctx.check(b.token() > a_token, "with a larger token");
    ctx.check(
        started.elapsed() < ctx.suite.short_lease + ctx.suite.slack,
        "within the lease and a bound",
    );
    ctx.check(form.release(b).await.is_ok(), "release");
}

async fn renewal_keeps_the_lease_past_several_leases<F: Form>(form: &F, ctx: &Ctx) {
    let name = ctx.name("renewal");
    // Three short leases, renewed every third: a renewal may take most of a
    // short lease on a busy machine and the lease must still hold.
    let lease = ctx.suite.short_lease * 3;
    let a = form
        .acquire(&name, &LockOptions::default().lease(lease))
        .await
        .expect("acquire");
    let until = Instant::now() + lease * 4;
    while Instant::now() < until {
        ctx.check(a.is_held(), "a renewed lease stays held");
        let other = form
            .try_acquire(&name, &LockOptions::default())
            .await
            .expect("try_acquire");
        ctx.check(other.is_none(), "nobody else gets a renewed lock");
        form.sleep(lease / 4).await;
    }
    ctx.check(
        a.renewals() >= 3,
        format!("renewals happened: {}", a.renewals()),
    );
    let seen = form.inspect(&name).await.expect("inspect");
    ctx.check(
        seen.is_some_and(|r| r.token == a.token()),
        "renewal keeps the fencing token",
    );
    ctx.check(
        form.release(a).await.is_ok(),
        "a renewed lease is released normally",
    );
}

async fn loss_is_reported_when_renewal_finds_the_lock_taken<F: Form>(form: &F, ctx: &Ctx) {
    let name = ctx.name("taken");
    let lease = ctx.suite.short_lease * 3;
    let a = form
        .acquire(&name, &LockOptions::default().lease(lease))
        .await
        .expect("acquire");
    // Someone who learnt the owner id frees the record behind the holder's back.
    let lock_name = LockName::new(name.clone()).expect("name");
    let r = form.raw_release(&lock_name, a.owner(), a.token()).await;
    ctx.check(
        r.is_ok_and(|o| o == ReleaseOutcome::Released),
        "raw release of the holder's record",
    );
    let b = form
        .acquire(&name, &LockOptions::default())
        .await
        .expect("acquire after raw release");
    let reason = form.lost(&a, lease + ctx.suite.slack).await;
    ctx.check(
        reason == Some(LossReason::Taken),
        format!("the next renewal finds the lock taken and the guard reports it: {reason:?}"),
    );
    ctx.check(a.ensure_held().is_err(), "ensure_held fails after the loss");
    let r = form.release(a).await;
    ctx.check(
        matches!(r, Err(Error::LeaseLost { .. })),
        "releasing it says it was lost",
    );
    let seen = form.inspect(&name).await.expect("inspect");
    ctx.check(
        seen.is_some_and(|r| r.owner == *b.owner()),
        "and leaves the new holder in place",
    );
    ctx.check(form.release(b).await.is_ok(), "release");
}

async fn loss_is_reported_when_renewals_fail<F: Form>(form: &F, ctx: &Ctx) {
    let name = ctx.name("renewal-fails");
    let switch = Arc::new(AtomicBool::new(true));
    let failing = form.wrapped(|inner| Wrapper {
        fail_renewals: Arc::clone(&switch),
        ..Wrapper::new(inner)
    });
    let lease = ctx.suite.short_lease;
    let a = failing
        .acquire(&name, &LockOptions::default().lease(lease))
        .await
        .expect("acquire");
    let reason = failing.lost(&a, lease + ctx.suite.slack).await;
    ctx.check(
        reason == Some(LossReason::RenewalFailed),
        format!("failing renewals are reported as a loss: {reason:?}"),
    );
    let b = form
        .acquire(
            &name,
            &LockOptions::default().timeout(lease + ctx.suite.slack),
        )
        .await
        .expect("the lock is free once the failing holder's lease ran out");
    let b_at = Instant::now();
    ctx.check(
        b_at >= a.valid_until() && b.token() > a.token(),
        "the failing holder's lease had ended on its own clock before the next holder got the lock, whose token is larger",
    );
    ctx.check(form.release(b).await.is_ok(), "release");
    drop(a);
}

async fn contenders_never_overlap_and_tokens_rise<F: Form>(form: &F, ctx: &Ctx) {
    let name = ctx.name("contention");
    let (n, m) = (ctx.suite.contenders, ctx.suite.rounds);
    ctx.largest.fetch_max(n * m, Ordering::Relaxed);
    struct Shared {
        holders: AtomicUsize,
        overlaps: AtomicUsize,
        last_token: Mutex<u64>,
        token_regressions: AtomicUsize,
        grants: AtomicUsize,
        failures: Mutex<Vec<String>>,
    }
    let shared = Arc::new(Shared {
        holders: AtomicUsize::new(0),
        overlaps: AtomicUsize::new(0),
        last_token: Mutex::new(0),
        token_regressions: AtomicUsize::new(0),
        grants: AtomicUsize::new(0),
        failures: Mutex::new(Vec::new()),
    });
    let opts = LockOptions::default()
        .lease(Duration::from_secs(10))
        .timeout(Duration::from_secs(60));
    let mut tasks = Vec::new();
    for _ in 0..n {
        let (form2, shared, name, opts) = (
            form.clone(),
            Arc::clone(&shared),
            name.clone(),
            opts.clone(),
        );
        tasks.push(form.spawn(async move {
            for _ in 0..m {
                let guard = match form2.acquire(&name, &opts).await {
                    Ok(g) => g,
                    Err(e) => {
                        shared.failures.lock().expect("mutex").push(e.to_string());
                        continue;
                    }
                };
                if shared.holders.fetch_add(1, Ordering::SeqCst) != 0 {
                    shared.overlaps.fetch_add(1, Ordering::SeqCst);
                }
                {
                    let mut last = shared.last_token.lock().expect("mutex");
                    if guard.token().get() <= *last {
                        shared.token_regressions.fetch_add(1, Ordering::SeqCst);
                    }
                    *last = guard.token().get();
                }
                shared.grants.fetch_add(1, Ordering::SeqCst);
                form2.sleep(Duration::from_micros(200)).await;
                shared.holders.fetch_sub(1, Ordering::SeqCst);
                if let Err(e) = form2.release(guard).await {
                    shared.failures.lock().expect("mutex").push(e.to_string());
                }
            }
        }));
    }
    for task in tasks {
        task.await;
    }
    let failures = shared.failures.lock().expect("mutex").clone();
    ctx.check(
        failures.is_empty(),
        format!(
            "no contender failed ({} failures; the first: {:?})",
            failures.len(),
            failures.iter().take(3).collect::<Vec<_>>()
        ),
    );
    ctx.check(
        shared.grants.load(Ordering::SeqCst) == n * m,
        format!("{n} contenders x {m} acquisitions all granted"),
    );
    ctx.check(
        shared.overlaps.load(Ordering::SeqCst) == 0,
        "no two contenders ever held the lock at once",
    );
    ctx.check(
        shared.token_regressions.load(Ordering::SeqCst) == 0,
        "fencing tokens only rose, in grant order",
    );
}

async fn waiters_share_one_poller_and_wake_on_local_release<F: Form>(form: &F, ctx: &Ctx) {
    let name = ctx.name("poller");
    let count = Arc::new(AtomicU64::new(0));
    let counting = form.wrapped(|inner| Wrapper {
        acquires: Arc::clone(&count),
        ..Wrapper::new(inner)
    });
    // The holder is in "another process": another handle on the backend.
    let holder = form
        .acquire(&name, &LockOptions::default())
        .await
        .expect("acquire");
    // Eight waiters, polling every 40-80 ms each if they polled alone.
    let waiting = LockOptions::default()
        .backoff(Backoff::fixed(Duration::from_millis(80)))
        .timeout(Duration::from_secs(30));
    let before = count.load(Ordering::SeqCst);
    let mut waiters = Vec::new();
    for _ in 0..8 {
        let (c, name, opts) = (counting.clone(), name.clone(), waiting.clone());
        waiters.push(counting.spawn(async move {
            let g = c.acquire(&name, &opts).await.expect("waiter acquires");
            let token = g.token();
            c.release(g).await.expect("release");
            token
        }));
    }
    let window = Duration::from_millis(800);
    counting.sleep(window).await;
    let polls = count.load(Ordering::SeqCst) - before;
    // One poller makes at most 1 + 800/40 = 21 attempts; eight would make
    // over 80.
    ctx.check(
        polls <= 30,
        format!("8 waiters of one name share one poller: {polls} attempts in {window:?}"),
    );
    let last = holder.token();
    ctx.check(form.release(holder).await.is_ok(), "release");
    let mut tokens = Vec::new();
    for w in waiters {
        tokens.push(w.await);
    }
    ctx.check(
        tokens.iter().all(|t| *t > last),
        "every waiter got the lock afterwards",
    );

    // A holder in this process: its waiters do not ask the backend at all,
    // and a waiter that would not poll again for a minute is woken at once by
    // the release.
    let holder = counting
        .acquire(&name, &LockOptions::default())
        .await
        .expect("acquire");
    let sleepy = LockOptions::default()
        .backoff(Backoff::fixed(Duration::from_secs(60)))
        .timeout(Duration::from_secs(20));
    let before = count.load(Ordering::SeqCst);
    let (c, name2) = (counting.clone(), name.clone());
    let waiter = counting.spawn(async move {
        let started = Instant::now();
        let g = c.acquire(&name2, &sleepy).await;
        (g.map(|g| (g.token(), g)), started.elapsed())
    });
    counting.sleep(Duration::from_millis(300)).await;
    let polls = count.load(Ordering::SeqCst) - before;
    ctx.check(
        polls == 0,
        format!(
            "nobody asks the backend while a holder in this process has the lock ({polls} attempts)"
        ),
    );
    ctx.check(counting.release(holder).await.is_ok(), "release");
    let (got, waited) = waiter.await;
    ctx.check(
        got.is_ok() && waited < Duration::from_secs(20),
        format!("a waiter is woken by a local release, not by its next poll ({waited:?})"),
    );
    if let Ok((_, g)) = got {
        ctx.check(counting.release(g).await.is_ok(), "release");
    }
}

async fn cancellation_leaves_nothing_held(form: &AsyncForm, ctx: &Ctx) {
    let name = ctx.name("cancel");
    let opts = LockOptions::default();
    // A waiter dropped while it waits.
    let holder = form.acquire(&name, &opts).await.expect("acquire");
    let waiting =
        tokio::time::timeout(Duration::from_millis(100), form.acquire(&name, &opts)).await;
    ctx.check(
        waiting.is_err(),
        "the waiter was still waiting when dropped",
    );
    ctx.check(form.release(holder).await.is_ok(), "release");
    let next = form.try_acquire(&name, &opts).await.expect("try_acquire");
    ctx.check(next.is_some(), "a dropped waiter leaves nothing held");
    if let Some(g) = next {
        ctx.check(form.release(g).await.is_ok(), "release");
    }
    // An attempt dropped after the backend granted it but before the answer
    // arrived: the grant is released in the background.
    let slow = form.wrapped(|inner| Wrapper {
        answer_delay: Duration::from_millis(500),
        ..Wrapper::new(inner)
    });
    let dropped =
        tokio::time::timeout(Duration::from_millis(250), slow.acquire(&name, &opts)).await;
    ctx.check(
        dropped.is_err(),
        "the attempt was dropped before its answer came",
    );
    let started = Instant::now();
    let next = form
        .acquire(&name, &opts.clone().timeout(ctx.suite.slack))
        .await;
    ctx.check(
        next.is_ok(),
        format!(
            "a grant whose answer was dropped is released in the background, long before its lease ends ({:?})",
            started.elapsed()
        ),
    );
    if let Ok(g) = next {
        ctx.check(form.release(g).await.is_ok(), "release");
    }
}

async fn a_zero_safety_margin_never_gives_two_holders<F: Form>(form: &F, ctx: &Ctx) {
    let name = ctx.name("zero-margin");
    // Another handle on the same backend: "another process".
    let other = form.wrapped(Wrapper::new);
    let opts = LockOptions::default()
        .lease(crate::MIN_LEASE.max(ctx.suite.short_lease / 8))
        .renewal(Renewal::Off)
        .safety_margin(Duration::ZERO)
        .backoff(Backoff::fixed(Duration::from_millis(1)));
    let mut overlaps = 0;
    for _ in 0..MARGIN_ROUNDS {
        let a = form.acquire(&name, &opts).await.expect("acquire");
        let b = other
            .acquire(&name, &opts.clone().timeout(opts.lease + ctx.suite.slack))
            .await
            .expect("the lock is granted again once the lease ends");
        if a.is_held() {
            overlaps += 1;
        }
        ctx.check(b.token() > a.token(), "the next holder's token is larger");
        // Both leases are short and not renewed: on a busy machine either
        // may have ended by now, and releasing says so.
        drop(form.release(a).await);
        drop(other.release(b).await);
    }
    ctx.check(
        overlaps == 0,
        format!(
            "with a zero safety margin the old holder still counts its lease as ended before the next grant (it did not in {overlaps} of {MARGIN_ROUNDS} rounds): the margin always covers the clock granularity"
        ),
    );
}

async fn a_lost_answer_then_rate_limits_leave_nothing_held<F: Form>(form: &F, ctx: &Ctx) {
    let name = ctx.name("rate-limited");
    let flaky = form.wrapped(|inner| Wrapper {
        lose_first_answer_then_rate_limit: true,
        ..Wrapper::new(inner)
    });
    let r = flaky
        .acquire(
            &name,
            &LockOptions::default().timeout(Duration::from_millis(300)),
        )
        .await;
    ctx.check(
        r.is_err(),
        format!("an acquisition whose answers are lost, then refused, gives up: {r:?}"),
    );
    let started = Instant::now();
    let next = form
        .acquire(&name, &LockOptions::default().timeout(ctx.suite.slack))
        .await;
    ctx.check(
        next.is_ok(),
        format!(
            "its grant whose answer was lost is released, rate-limited retries or not ({:?})",
            started.elapsed()
        ),
    );
    if let Ok(g) = next {
        ctx.check(form.release(g).await.is_ok(), "release");
    }
}

async fn a_release_whose_answer_was_lost_is_released<F: Form>(form: &F, ctx: &Ctx) {
    let name = ctx.name("release-lost-answer");
    let flaky = form.wrapped(|inner| Wrapper {
        lose_first_release_answer: true,
        ..Wrapper::new(inner)
    });
    let g = flaky
        .acquire(&name, &LockOptions::default())
        .await
        .expect("acquire");
    let r = flaky.release(g).await;
    ctx.check(
        r.is_ok(),
        format!("a release whose answer was lost is retried and reported released: {r:?}"),
    );
    let seen = form.inspect(&name).await.expect("inspect");
    ctx.check(seen.is_none(), format!("and the lock is free: {seen:?}"));
}

/// Issue 18 item 7. A request of an owner can arrive after that owner
/// released (sent earlier, held up on its way while the owner's retry was
/// granted). Granted, it would leave the lock held by an owner that is gone,
/// for a lease: a backend refuses an owner among the record's last
/// [`RELEASERS_REMEMBERED`] releasers, and the record stays free for the
/// others. Checked at the primitives, with the late request's own (older)
/// `now`.
async fn a_late_duplicate_of_a_released_owner_is_not_granted<F: Form>(form: &F, ctx: &Ctx) {
    let name = LockName::new(ctx.name("late-duplicate")).expect("name");
    let lease = Duration::from_secs(20);
    let owner = OwnerId::random();
    let sent = form.raw_now().await.expect("server time");
    let first = form.raw_acquire(&name, &owner, lease, sent).await;
    let mut last = match first {
        Ok(AcquireOutcome::Acquired(grant)) => grant.token,
        other => panic!(
            "conformance ({} form): a free lock is granted: {other:?}",
            ctx.form
        ),
    };
    let released = form.raw_release(&name, &owner, last).await;
    ctx.check(
        matches!(released, Ok(ReleaseOutcome::Released)),
        format!("the owner releases: {released:?}"),
    );
    let late = form.raw_acquire(&name, &owner, lease, sent).await;
    ctx.check(
        matches!(late, Ok(AcquireOutcome::Busy { .. })),
        format!(
            "a late duplicate of a released owner's acquisition (the same request, landing after the release) is not granted: {late:?}"
        ),
    );
    let seen = form.inspect(name.as_str()).await.expect("inspect");
    ctx.check(
        seen.is_none(),
        format!("the refused duplicate leaves the lock free: {seen:?}"),
    );
    // Others get the lock at once; the first owner stays refused while it is
    // among the last RELEASERS_REMEMBERED releasers.
    for others in 1..RELEASERS_REMEMBERED {
        let other = OwnerId::random();
        let now = form.raw_now().await.expect("server time");
        let got = form.raw_acquire(&name, &other, lease, now).await;
        match got {
            Ok(AcquireOutcome::Acquired(grant)) if grant.token > last => last = grant.token,
            other => ctx.check(
                false,
                format!("another owner gets the free lock at once, with a larger token: {other:?}"),
            ),
        }
        let released = form.raw_release(&name, &other, last).await;
        ctx.check(
            matches!(released, Ok(ReleaseOutcome::Released)),
            format!("the other owner releases: {released:?}"),
        );
        let late = form.raw_acquire(&name, &owner, lease, sent).await;
        ctx.check(
            matches!(late, Ok(AcquireOutcome::Busy { .. })),
            format!(
                "a late duplicate of a released owner's acquisition is not granted after {others} other owner(s) acquired and released (the last {RELEASERS_REMEMBERED} releasers are remembered): {late:?}"
            ),
        );
    }
    let seen = form.inspect(name.as_str()).await.expect("inspect");
    ctx.check(seen.is_none(), format!("and the lock is free: {seen:?}"));
}

/// Issue 18 item 1. A `Holding` kept (cloned) from a guard that was released
/// (or dropped) is not held: once another owner holds the lock,
/// `ensure_held()` answers `LeaseLost` and `is_held()` is false.
async fn a_released_guards_holding_is_not_held<F: Form>(form: &F, ctx: &Ctx) {
    let base = ctx.name("holding-after");
    for dropped in [false, true] {
        let how = if dropped { "dropped" } else { "released" };
        let name = format!("{base}-{how}");
        let guard = form
            .acquire(&name, &LockOptions::default())
            .await
            .expect("acquire");
        let holding: Holding = (*guard).clone();
        let token = guard.token();
        if dropped {
            drop(guard);
        } else {
            ctx.check(form.release(guard).await.is_ok(), "release");
        }
        let next = form
            .acquire(&name, &LockOptions::default().timeout(ctx.suite.slack))
            .await;
        ctx.check(
            next.as_ref().is_ok_and(|g| g.token() > token),
            format!("another owner gets the {how} lock, with a larger token: {next:?}"),
        );
        ctx.check(
            !holding.is_held(),
            format!("the holding of a {how} guard is not held"),
        );
        let r = holding.ensure_held();
        ctx.check(
            matches!(r, Err(Error::LeaseLost { .. })),
            format!(
                "Holding::ensure_held() of a {how} guard answers LeaseLost once another owner holds the lock: {r:?}"
            ),
        );
        if let Ok(g) = next {
            ctx.check(form.release(g).await.is_ok(), "release");
        }
    }
}

/// Issue 18 item 2. An acquisition whose request was applied but whose
/// answer was lost (a transient error) is released when the acquisition
/// gives up; if the first attempt of that clean-up release fails with a
/// transient error too, it is retried as a release is, within the lock's
/// `release_timeout`: the lock is free again long before its lease ends.
async fn the_clean_up_release_after_an_unknown_acquire_is_retried<F: Form>(form: &F, ctx: &Ctx) {
    let release_timeout = Duration::from_secs(1);
    let within = release_timeout + ctx.suite.slack;
    let lease = Duration::from_secs(20).max(within * 3);
    let opts = LockOptions::default()
        .lease(lease)
        .release_timeout(release_timeout);
    let base = ctx.name("clean-up-retried");
    for waiting in [false, true] {
        let (how, name) = if waiting {
            ("acquire with a timeout", format!("{base}-acquire"))
        } else {
            ("try_acquire", format!("{base}-try"))
        };
        let flaky = form.wrapped(|inner| Wrapper {
            lose_first_acquire_answer: true,
            fail_first_release: true,
            ..Wrapper::new(inner)
        });
        let r = if waiting {
            flaky
                .acquire(&name, &opts.clone().timeout(Duration::from_millis(200)))
                .await
                .map(Some)
        } else {
            flaky.try_acquire(&name, &opts).await
        };
        ctx.check(
            r.is_err(),
            format!(
                "{how} whose answer was lost (and whose retries fail) ends with an error: {r:?}"
            ),
        );
        let started = Instant::now();
        let next = loop {
            match form.try_acquire(&name, &LockOptions::default()).await {
                Ok(Some(g)) => break Some(g),
                _ if started.elapsed() >= within => break None,
                _ => form.sleep(Duration::from_millis(20)).await,
            }
        };
        ctx.check(
            next.is_some(),
            format!(
                "after {how} gave up with an unknown outcome, its clean-up release is retried when its first attempt fails: the lock (lease {lease:?}) is free again within the release timeout and a margin ({within:?})"
            ),
        );
        if let Some(g) = next {
            ctx.check(form.release(g).await.is_ok(), "release");
        }
    }
}

async fn a_request_on_its_way_is_cleaned_up_after_it_lands(form: &AsyncForm, ctx: &Ctx) {
    let name = ctx.name("in-flight");
    let opts = LockOptions::default();
    let slow = form.wrapped(|inner| Wrapper {
        request_delay: Duration::from_millis(300),
        ..Wrapper::new(inner)
    });
    let dropped =
        tokio::time::timeout(Duration::from_millis(100), slow.acquire(&name, &opts)).await;
    ctx.check(
        dropped.is_err(),
        "the acquisition was dropped while its request was on its way",
    );
    // Look once the request has reached the backend.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let next = form
        .acquire(&name, &opts.clone().timeout(ctx.suite.slack))
        .await;
    ctx.check(
        next.is_ok(),
        format!("the clean-up release comes after the request it cleans up: {next:?}"),
    );
    if let Ok(g) = next {
        ctx.check(form.release(g).await.is_ok(), "release");
    }
}

async fn a_dropped_release_still_releases(form: &AsyncForm, ctx: &Ctx) {
    let name = ctx.name("dropped-release");
    let slow = form.wrapped(|inner| Wrapper {
        release_delay: Duration::from_millis(300),
        ..Wrapper::new(inner)
    });
    let g = slow
        .acquire(&name, &LockOptions::default())
        .await
        .expect("acquire");
    let dropped = tokio::time::timeout(Duration::from_millis(50), slow.release(g)).await;
    ctx.check(
        dropped.is_err(),
        "the release future was dropped before it finished",
    );
    let next = form
        .acquire(&name, &LockOptions::default().timeout(ctx.suite.slack))
        .await;
    ctx.check(
        next.is_ok(),
        format!("a dropped release() finishes in the background as a dropped guard does: {next:?}"),
    );
    if let Ok(g) = next {
        ctx.check(form.release(g).await.is_ok(), "release");
    }
}

async fn an_unpolled_waiter_does_not_hold_the_others_back(form: &AsyncForm, ctx: &Ctx) {
    let name = ctx.name("unpolled");
    // The holder is in "another process"; the waiters share `form`'s handle.
    let other = form.wrapped(Wrapper::new);
    let waiters = form;
    let holder = other
        .acquire(&name, &LockOptions::default())
        .await
        .expect("acquire");
    // The first waiter is polled a while (it takes the polling turn), then
    // kept but never polled again. (If its request was on its way when it
    // stopped being polled, that request may still be granted: then the
    // others wait for its short lease to end, not for it to be polled.)
    let stuck_lock = AsyncLock::with_backend(&name, &waiters.0).options(ctx.short());
    let mut stuck = Box::pin(stuck_lock.acquire());
    ctx.check(
        tokio::time::timeout(Duration::from_millis(100), &mut stuck)
            .await
            .is_err(),
        "the first waiter waits",
    );
    ctx.check(other.release(holder).await.is_ok(), "release");
    let opts = LockOptions::default().timeout(ctx.suite.slack);
    let next = waiters.acquire(&name, &opts).await;
    ctx.check(
        next.is_ok(),
        format!("another waiter of the same handle gets the free lock although the first is never polled again: {next:?}"),
    );
    if let Ok(g) = next {
        ctx.check(waiters.release(g).await.is_ok(), "release");
    }
    // Every handle serves both forms.
    let (h, n) = (waiters.0.clone(), name.clone());
    let sync = tokio::task::spawn_blocking(move || {
        Lock::with_backend(n, &h)
            .options(opts)
            .acquire()
            .and_then(LockGuard::release)
    })
    .await
    .expect("join");
    ctx.check(
        sync.is_ok(),
        format!("so does a blocking waiter of the same handle: {sync:?}"),
    );
    drop(stuck);
}
