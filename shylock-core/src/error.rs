//! Errors: [`Error`] for callers of the lock API, [`BackendError`] for backend
//! implementations.

use std::fmt;
use std::time::Duration;

use crate::types::FencingToken;

/// Boxed error source carried by [`BackendError`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Everything that can go wrong when using a lock.
///
/// Variants say what the caller can do about it; messages name the lock.
///
/// The message (`Display`) ends with the messages of its causes, which are
/// also its [`source`](std::error::Error::source) chain. `Debug` prints the
/// same message (so a `main` returning `Result<_, shylock::Error>` or
/// `Box<dyn Error>` shows it, not a dump); `{:#?}` prints the variant and
/// its fields.
///
/// ```
/// use shylock_core::{Error, Lock, MemoryBackend};
/// let error = Lock::with_backend("", &MemoryBackend::new())
///     .try_acquire()
///     .map(drop)
///     .unwrap_err();
/// assert!(matches!(error, Error::InvalidName { .. }));
/// assert_eq!(format!("{error:?}"), "invalid lock name: a lock name must not be empty");
/// ```
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The lock name is not acceptable (empty or too long).
    #[error("invalid lock name: {reason}")]
    InvalidName {
        /// Why the name was refused.
        reason: String,
    },
    /// An option (lease, renewal interval, timeout, backoff) is out of range.
    #[error("invalid lock option `{option}`: {reason}")]
    InvalidOption {
        /// The option that was refused.
        option: &'static str,
        /// Why it was refused.
        reason: String,
    },
    /// Backend configuration (database or collection name, connection
    /// settings) was refused before anything was sent, or the server was
    /// found unfit (for example a server that could grant a lock twice). A
    /// configuration the server itself refused is an [`Error::Backend`] of
    /// kind [`BackendErrorKind::InvalidConfig`]; [`Error::backend_kind`]
    /// answers `InvalidConfig` for both.
    #[error("invalid backend configuration: {reason}")]
    InvalidConfig {
        /// Why the configuration was refused.
        reason: String,
    },
    /// No default backend was set with [`configure`](crate::configure),
    /// and none was given to the lock.
    #[error("no backend is configured: call shylock::configure(...) or give the lock a backend")]
    NotConfigured,
    /// The lock cannot run in this context: a blocking call on a thread that
    /// must not wait (shylock's own runtime thread, or the thread of the
    /// current-thread runtime an async backend was made on; refused before
    /// anything is sent), or shylock's runtime thread could not be started.
    #[error("the lock cannot run here: {reason}")]
    Runtime {
        /// What is missing.
        reason: String,
    },
    /// The lock could not be acquired within the time the caller allowed.
    ///
    /// If the backend was failing when the time ran out (the last request
    /// was answered with an error, not with "held by another owner"), the
    /// message says so and the last error is the [`source`](std::error::Error::source):
    /// an outage does not look like contention.
    #[error("timed out after {waited:?} waiting for lock `{name}`{}", failing(.source))]
    Timeout {
        /// The lock's name.
        name: String,
        /// How long the caller waited.
        waited: Duration,
        /// The error of the last request, if the backend was failing (not
        /// answering "busy") when the time ran out.
        #[source]
        source: Option<BackendError>,
    },
    /// The lease was lost before it was released: it expired, or a renewal
    /// found the lock taken, or renewals failed until the lease ran out.
    /// Releasing a lost lease changes nothing on the backend.
    #[error("the lease on lock `{name}` (fencing token {token}) was lost: {reason}")]
    LeaseLost {
        /// The lock's name.
        name: String,
        /// The fencing token of the lost lease.
        token: FencingToken,
        /// Why the lease was lost.
        reason: LossReason,
    },
    /// The backend failed; see [`BackendError::kind`] for what kind of failure.
    #[error("backend error{}: {source}", on_lock(.name))]
    Backend {
        /// The lock's name (empty where the operation concerned no lock).
        name: String,
        /// What the backend said.
        #[source]
        source: BackendError,
    },
}

/// The message, which carries the causes' messages too (as `Display`);
/// `{:#?}` gives the variant and its fields.
impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if f.alternate() {
            self.fields(f)
        } else {
            write!(f, "{self}")
        }
    }
}

impl Error {
    /// The variant and its fields, for `{:#?}`.
    fn fields(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::InvalidName { reason } => f
                .debug_struct("InvalidName")
                .field("reason", reason)
                .finish(),
            Error::InvalidOption { option, reason } => f
                .debug_struct("InvalidOption")
                .field("option", option)
                .field("reason", reason)
                .finish(),
            Error::InvalidConfig { reason } => f
                .debug_struct("InvalidConfig")
                .field("reason", reason)
                .finish(),
            Error::NotConfigured => f.write_str("NotConfigured"),
            Error::Runtime { reason } => f.debug_struct("Runtime").field("reason", reason).finish(),
            Error::Timeout {
                name,
                waited,
                source,
            } => f
                .debug_struct("Timeout")
                .field("name", name)
                .field("waited", waited)
                .field("source", source)
                .finish(),
            Error::LeaseLost {
                name,
                token,
                reason,
            } => f
                .debug_struct("LeaseLost")
                .field("name", name)
                .field("token", token)
                .field("reason", reason)
                .finish(),
            Error::Backend { name, source } => f
                .debug_struct("Backend")
                .field("name", name)
                .field("source", source)
                .finish(),
        }
    }

    pub(crate) fn backend(name: &str, source: BackendError) -> Self {
        Error::Backend {
            name: name.to_owned(),
            source,
        }
    }

    /// The kind of backend failure behind this error: the backend error's
    /// kind, [`BackendErrorKind::InvalidConfig`] for
    /// [`Error::InvalidConfig`], `None` for the others.
    pub fn backend_kind(&self) -> Option<BackendErrorKind> {
        match self {
            Error::Backend { source, .. } => Some(source.kind()),
            Error::InvalidConfig { .. } => Some(BackendErrorKind::InvalidConfig),
            _ => None,
        }
    }

    /// The backend error behind this error, if it is one.
    pub fn backend_error(&self) -> Option<&BackendError> {
        match self {
            Error::Backend { source, .. } => Some(source),
            _ => None,
        }
    }
}

fn failing(source: &Option<BackendError>) -> String {
    match source {
        Some(error) => format!(" while the backend was failing (last error: {error})"),
        None => String::new(),
    }
}

fn on_lock(name: &str) -> String {
    if name.is_empty() {
        String::new()
    } else {
        format!(" on lock `{name}`")
    }
}

/// A backend error outside any lock (setting a backend up): an
/// [`Error::Backend`] with no lock name, keeping the backend error (and its
/// own source) as its [`source`](std::error::Error::source). A server's
/// refusal of the configuration keeps its kind:
/// [`backend_kind`](Error::backend_kind) answers
/// [`BackendErrorKind::InvalidConfig`] for it as for [`Error::InvalidConfig`]
/// (a configuration refused before anything was sent).
impl From<BackendError> for Error {
    fn from(source: BackendError) -> Self {
        Error::Backend {
            name: String::new(),
            source,
        }
    }
}

/// Why a lease was lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum LossReason {
    /// The lease ran out (renewal switched off, or the guard outlived it).
    Expired,
    /// A renewal or release found the lock held by another owner, or gone.
    Taken,
    /// Renewals kept failing (backend down or slow) until the lease ran out.
    RenewalFailed,
    /// The guard was released (or dropped): a [`Holding`](crate::Holding)
    /// kept after that no longer holds the lock.
    Released,
    /// An administrator ended the holding with a forced release
    /// ([`Backend::force_release`](crate::Backend::force_release)); who did
    /// it, when and why: [`Backend::audit`](crate::Backend::audit).
    Forced,
}

impl fmt::Display for LossReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LossReason::Expired => "the lease expired",
            LossReason::Taken => "the lock is held by another owner",
            LossReason::RenewalFailed => "renewals failed until the lease ran out",
            LossReason::Released => "the guard was released",
            LossReason::Forced => "an administrator forced the lock's release",
        })
    }
}

/// What kind of failure a backend reports. The core retries
/// [`Unavailable`](BackendErrorKind::Unavailable),
/// [`Timeout`](BackendErrorKind::Timeout) and
/// [`RateLimited`](BackendErrorKind::RateLimited) within the caller's time
/// limit; the others are returned at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum BackendErrorKind {
    /// The server could not be reached or dropped the connection (transient).
    Unavailable,
    /// The operation did not finish within its deadline (transient; its
    /// outcome is unknown).
    Timeout,
    /// The server asked to retry later (for example Azure Cosmos DB's error
    /// 16500); see [`BackendError::retry_after`].
    RateLimited,
    /// Authentication or authorization failed.
    Unauthorized,
    /// The database or collection does not exist or its name is refused.
    InvalidConfig,
    /// The server answered something the backend does not understand, or a
    /// lock record that is not shaped as expected.
    Unexpected,
    /// The backend does not implement this primitive (the optional
    /// `list`, `force_release` and `audit` of the
    /// [backend traits](crate::backend)).
    Unsupported,
    /// Any other failure.
    Other,
}

/// An error from a backend primitive.
#[derive(Debug)]
pub struct BackendError {
    kind: BackendErrorKind,
    message: String,
    retry_after: Option<Duration>,
    source: Option<BoxError>,
}

impl BackendError {
    /// A new error of `kind` with a message.
    pub fn new(kind: BackendErrorKind, message: impl Into<String>) -> Self {
        BackendError {
            kind,
            message: message.into(),
            retry_after: None,
            source: None,
        }
    }

    /// Attach the underlying error.
    pub fn with_source(mut self, source: impl Into<BoxError>) -> Self {
        self.source = Some(source.into());
        self
    }

    /// Ask the core to wait this long before the next try (rate limiting).
    pub fn with_retry_after(mut self, delay: Duration) -> Self {
        self.retry_after = Some(delay);
        self
    }

    /// The kind of failure.
    pub fn kind(&self) -> BackendErrorKind {
        self.kind
    }

    /// The delay the server asked for, if any.
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }

    /// Whether trying again may succeed (the core retries these within the
    /// caller's time limit).
    pub fn is_transient(&self) -> bool {
        matches!(
            self.kind,
            BackendErrorKind::Unavailable
                | BackendErrorKind::Timeout
                | BackendErrorKind::RateLimited
        )
    }

    /// The error message, without the source.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for BackendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}: {}", self.kind, self.message)?;
        if let Some(source) = &self.source {
            write!(f, ": {source}")?;
        }
        Ok(())
    }
}

impl std::error::Error for BackendError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_ref()
            .map(|e| e.as_ref() as &(dyn std::error::Error + 'static))
    }
}
