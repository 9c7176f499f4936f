//! An outage must not look like contention (MongoDB deployment issue,
//! item 8, core part): while every request fails, a waiting acquisition
//! says so at `warn` (rate-limited, not once per attempt), and a time-out
//! caused by failing requests carries the last error as its `source()` and
//! says so in its message. Both forms, through the public API.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use shylock_core::backend::{
    AcquireOutcome, AcquireRequest, AsyncBackend, BoxFuture, ClockSource, InspectRequest,
    LockRecord, ReleaseOutcome, ReleaseRequest, RenewOutcome, RenewRequest, SyncBackend,
};
use shylock_core::{
    AsyncLock, Backend, BackendError, BackendErrorKind, Backoff, Error, Lock, LockOptions,
    MemoryBackend, Timestamp,
};

/// A server that is down: every acquisition request fails as unreachable.
#[derive(Default)]
struct Down {
    attempts: AtomicUsize,
}

const CAUSE: &str = "test: connection refused (127.0.0.1:1)";

impl Down {
    fn refuse(&self) -> BackendError {
        self.attempts.fetch_add(1, Ordering::SeqCst);
        BackendError::new(BackendErrorKind::Unavailable, CAUSE)
    }
}

impl SyncBackend for Down {
    fn try_acquire(&self, _: AcquireRequest<'_>) -> Result<AcquireOutcome, BackendError> {
        Err(self.refuse())
    }
    fn renew(&self, _: RenewRequest<'_>) -> Result<RenewOutcome, BackendError> {
        Err(self.refuse())
    }
    fn release(&self, _: ReleaseRequest<'_>) -> Result<ReleaseOutcome, BackendError> {
        Err(self.refuse())
    }
    fn inspect(&self, _: InspectRequest<'_>) -> Result<Option<LockRecord>, BackendError> {
        Err(self.refuse())
    }
    fn server_time(&self, _: Option<Instant>) -> Result<Timestamp, BackendError> {
        Ok(Timestamp::local_now())
    }
    fn clock(&self) -> ClockSource {
        ClockSource::Server
    }
    fn describe(&self) -> String {
        "a server that is down".into()
    }
}

impl AsyncBackend for Down {
    fn try_acquire<'a>(
        &'a self,
        req: AcquireRequest<'a>,
    ) -> BoxFuture<'a, Result<AcquireOutcome, BackendError>> {
        Box::pin(async move { SyncBackend::try_acquire(self, req) })
    }
    fn renew<'a>(
        &'a self,
        req: RenewRequest<'a>,
    ) -> BoxFuture<'a, Result<RenewOutcome, BackendError>> {
        Box::pin(async move { SyncBackend::renew(self, req) })
    }
    fn release<'a>(
        &'a self,
        req: ReleaseRequest<'a>,
    ) -> BoxFuture<'a, Result<ReleaseOutcome, BackendError>> {
        Box::pin(async move { SyncBackend::release(self, req) })
    }
    fn inspect<'a>(
        &'a self,
        req: InspectRequest<'a>,
    ) -> BoxFuture<'a, Result<Option<LockRecord>, BackendError>> {
        Box::pin(async move { SyncBackend::inspect(self, req) })
    }
    fn server_time(&self, d: Option<Instant>) -> BoxFuture<'_, Result<Timestamp, BackendError>> {
        Box::pin(async move { SyncBackend::server_time(self, d) })
    }
    fn clock(&self) -> ClockSource {
        ClockSource::Server
    }
    fn describe(&self) -> String {
        SyncBackend::describe(self)
    }
}

/// A `tracing` subscriber that keeps the messages of `warn` events.
#[derive(Clone, Default)]
struct Warnings(Arc<Mutex<Vec<String>>>);

impl Warnings {
    fn taken(&self) -> Vec<String> {
        self.0.lock().map(|w| w.clone()).unwrap_or_default()
    }
}

struct Message<'a>(&'a mut String);

impl tracing::field::Visit for Message<'_> {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        use std::fmt::Write;
        let _ = write!(self.0, "{}={:?} ", field.name(), value);
    }
}

impl tracing::Subscriber for Warnings {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        if *event.metadata().level() == tracing::Level::WARN {
            let mut text = String::new();
            event.record(&mut Message(&mut text));
            if let Ok(mut w) = self.0.lock() {
                w.push(text);
            }
        }
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

fn options() -> LockOptions {
    LockOptions::default()
        .timeout(Duration::from_millis(1500))
        .backoff(Backoff {
            initial: Duration::from_millis(5),
            max: Duration::from_millis(20),
            ..Backoff::default()
        })
}

/// The time-out names the failure, carries it as its source, and the
/// failures were logged at `warn`, a few times only.
fn check(result: Result<(), Error>, down: &Down, warnings: &Warnings) {
    let error = result.expect_err("a server that is down grants nothing");
    assert!(matches!(error, Error::Timeout { .. }), "{error:?}");
    let message = error.to_string();
    assert!(message.contains("failing"), "message: {message}");
    let source = std::error::Error::source(&error).expect("the last error is the source");
    assert!(source.to_string().contains(CAUSE), "source: {source}");
    let attempts = down.attempts.load(Ordering::SeqCst);
    let warned = warnings.taken();
    let about_acquire: Vec<_> = warned.iter().filter(|w| w.contains(CAUSE)).collect();
    assert!(
        !about_acquire.is_empty(),
        "{attempts} failed attempts and no warning: {warned:?}"
    );
    assert!(
        attempts > 10 && about_acquire.len() <= 3,
        "the warnings are rate-limited: {} for {attempts} attempts",
        about_acquire.len()
    );
}

#[test]
fn a_sync_acquire_through_an_outage_says_why_it_timed_out() {
    let down = Arc::new(Down::default());
    let warnings = Warnings::default();
    let backend = Backend::from_sync_arc(down.clone());
    let result = tracing::subscriber::with_default(warnings.clone(), || {
        Lock::with_backend("outage-sync", &backend)
            .options(options())
            .acquire()
            .map(drop)
    });
    check(result, &down, &warnings);
}

#[test]
fn an_async_acquire_through_an_outage_says_why_it_timed_out() {
    let down = Arc::new(Down::default());
    let warnings = Warnings::default();
    let backend = Backend::from_async_arc(down.clone());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let result = tracing::subscriber::with_default(warnings.clone(), || {
        runtime.block_on(async {
            AsyncLock::with_backend("outage-async", &backend)
                .options(options())
                .acquire()
                .await
                .map(drop)
        })
    });
    check(result, &down, &warnings);
}

/// Contention is still contention: a time-out behind a live holder has no
/// source and does not speak of failures.
#[test]
fn a_timeout_behind_a_holder_has_no_source() {
    let memory = MemoryBackend::new();
    let _held = Lock::with_backend("outage-held", &Backend::from(memory.clone()))
        .acquire()
        .expect("free");
    let error = Lock::with_backend("outage-held", &Backend::from(memory))
        .timeout(Duration::from_millis(200))
        .acquire()
        .map(drop)
        .expect_err("held");
    assert!(matches!(error, Error::Timeout { .. }), "{error:?}");
    assert!(std::error::Error::source(&error).is_none(), "{error:?}");
    assert!(!error.to_string().contains("failing"), "{error}");
}
