//! The administrator's side of a [`Backend`] handle: list the held locks,
//! force a lock's release whatever its owner, read the audit trail of the
//! last forced release; each in both forms (async, and `_blocking`). The
//! algorithm is in `algo::admin`; the owned requests here carry calls
//! across the [bridge](crate::bridge).

use std::future::Future;
use std::time::{Duration, Instant};

use crate::algo::admin as algo;
use crate::backend::{
    AuditRequest, ForceReleaseOutcome, ForceReleaseRequest, ForcedRelease, ListPage, ListRequest,
    ListedLock,
};
use crate::exec::Exec;
use crate::tick::deadline_after;
use crate::{Backend, Error, LockName, Timestamp, rt};

/// How long an administrator's call may take, retries of reads included.
pub const ADMIN_TIMEOUT: Duration = Duration::from_secs(30);

/// How many records [`Backend::list`] reads per page.
pub const LIST_PAGE: usize = 500;

/// The longest `by` and `reason` of a forced release, in bytes.
pub const MAX_AUDIT_TEXT_BYTES: usize = 1024;

/// An owned list request, for calls handed to another thread.
#[derive(Debug, Clone)]
pub(crate) struct OwnedList {
    prefix: Option<String>,
    after: Option<LockName>,
    limit: usize,
    now: Timestamp,
    deadline: Option<Instant>,
}

impl From<&ListRequest<'_>> for OwnedList {
    fn from(req: &ListRequest<'_>) -> Self {
        OwnedList {
            prefix: req.prefix.map(str::to_owned),
            after: req.after.cloned(),
            limit: req.limit,
            now: req.now,
            deadline: req.deadline,
        }
    }
}

impl OwnedList {
    pub(crate) fn request(&self) -> ListRequest<'_> {
        ListRequest {
            prefix: self.prefix.as_deref(),
            after: self.after.as_ref(),
            limit: self.limit,
            now: self.now,
            deadline: self.deadline,
        }
    }
}

/// An owned forced-release request, for calls handed to another thread.
#[derive(Debug, Clone)]
pub(crate) struct OwnedForce {
    name: LockName,
    by: String,
    reason: String,
    now: Timestamp,
    deadline: Option<Instant>,
}

impl From<&ForceReleaseRequest<'_>> for OwnedForce {
    fn from(req: &ForceReleaseRequest<'_>) -> Self {
        OwnedForce {
            name: req.name.clone(),
            by: req.by.to_owned(),
            reason: req.reason.to_owned(),
            now: req.now,
            deadline: req.deadline,
        }
    }
}

impl OwnedForce {
    pub(crate) fn request(&self) -> ForceReleaseRequest<'_> {
        ForceReleaseRequest {
            name: &self.name,
            by: &self.by,
            reason: &self.reason,
            now: self.now,
            deadline: self.deadline,
        }
    }
}

/// An owned audit request, for calls handed to another thread.
#[derive(Debug, Clone)]
pub(crate) struct OwnedAudit {
    name: LockName,
    deadline: Option<Instant>,
}

impl From<&AuditRequest<'_>> for OwnedAudit {
    fn from(req: &AuditRequest<'_>) -> Self {
        OwnedAudit {
            name: req.name.clone(),
            deadline: req.deadline,
        }
    }
}

impl OwnedAudit {
    pub(crate) fn request(&self) -> AuditRequest<'_> {
        AuditRequest {
            name: &self.name,
            deadline: self.deadline,
        }
    }
}

fn check_text(option: &'static str, text: &str) -> Result<(), Error> {
    if text.len() > MAX_AUDIT_TEXT_BYTES {
        return Err(Error::InvalidOption {
            option,
            reason: format!(
                "{} bytes, at most {MAX_AUDIT_TEXT_BYTES} are kept on the record",
                text.len()
            ),
        });
    }
    Ok(())
}

/// Every page of the held locks with `prefix`, from the start.
async fn list_all(
    x: &Exec,
    backend: &Backend,
    prefix: Option<&str>,
    deadline: Option<Instant>,
) -> Result<Vec<ListedLock>, Error> {
    let mut locks = Vec::new();
    let mut after: Option<LockName> = None;
    loop {
        let page = algo::list(
            x,
            &backend.shared,
            prefix,
            after.as_ref(),
            LIST_PAGE,
            deadline,
        )
        .await?;
        locks.extend(page.locks);
        match page.next {
            // A backend whose `next` does not move on would loop for ever.
            Some(next) if after.as_ref().is_none_or(|a| next.as_str() > a.as_str()) => {
                after = Some(next)
            }
            _ => return Ok(locks),
        }
    }
}

/// The administrator's operations. Each needs a backend that implements
/// the optional primitives (`list`, `force_release`, `audit` of the
/// [backend traits](crate::backend)): MongoDB, ArangoDB and the memory
/// backend do; another answers an [`Error::Backend`] of kind
/// [`Unsupported`](crate::BackendErrorKind::Unsupported).
///
/// ```
/// use shylock_core::{Backend, ForceReleaseOutcome, Lock, LossReason, MemoryBackend};
/// let backend = Backend::from(MemoryBackend::new());
/// let guard = Lock::with_backend("jobs/nightly", &backend).acquire()?;
/// let held = backend.list_blocking(Some("jobs/"))?;
/// assert_eq!(held[0].name.as_str(), "jobs/nightly");
///
/// let outcome = backend.force_release_blocking("jobs/nightly", "ops@host", "stuck job")?;
/// assert!(matches!(outcome, ForceReleaseOutcome::Released { .. }));
/// let audit = backend.audit_blocking("jobs/nightly")?.expect("an audit trail");
/// assert_eq!((audit.by.as_str(), audit.reason.as_str()), ("ops@host", "stuck job"));
/// assert_eq!(audit.token, guard.token());
/// // The old holder's release finds the lock gone.
/// assert!(guard.release().is_err());
/// # Ok::<(), shylock_core::Error>(())
/// ```
impl Backend {
    /// Run `f` on shylock's runtime and wait for its answer on this thread.
    fn admin_blocking<T, Fut>(&self, f: impl FnOnce(Exec, Backend) -> Fut) -> Result<T, Error>
    where
        T: Send + 'static,
        Fut: Future<Output = Result<T, Error>> + Send + 'static,
    {
        let exec = Exec::new(self)?;
        exec.may_block()?;
        let runtime = exec.runtime.clone();
        rt::block_on(&runtime, f(exec, self.clone()))?
    }

    /// Every lock held now (by the backend's clock), by name, optionally
    /// only the names starting with `prefix`: each lock's name, owner,
    /// fencing token, expiry and grant time. Read page by page
    /// ([`LIST_PAGE`] records each); a lock granted or released meanwhile
    /// may be missed or seen.
    ///
    /// # Errors
    /// [`Error::Backend`] (of kind `Unsupported` for a backend that cannot
    /// list); transient errors are retried for [`ADMIN_TIMEOUT`].
    pub async fn list(&self, prefix: Option<&str>) -> Result<Vec<ListedLock>, Error> {
        let exec = Exec::new(self)?;
        list_all(&exec, self, prefix, deadline_after(ADMIN_TIMEOUT)).await
    }

    /// [`list`](Self::list), blocking the calling thread.
    ///
    /// # Errors
    /// As [`list`](Self::list); [`Error::Runtime`] where a blocking call
    /// cannot wait.
    pub fn list_blocking(&self, prefix: Option<&str>) -> Result<Vec<ListedLock>, Error> {
        let prefix = prefix.map(str::to_owned);
        self.admin_blocking(move |exec, backend| async move {
            list_all(
                &exec,
                &backend,
                prefix.as_deref(),
                deadline_after(ADMIN_TIMEOUT),
            )
            .await
        })
    }

    /// One page of [`list`](Self::list): at most `limit` records read,
    /// after the name `after` (the previous page's
    /// [`next`](ListPage::next)).
    ///
    /// # Errors
    /// As [`list`](Self::list).
    pub async fn list_page(
        &self,
        prefix: Option<&str>,
        after: Option<&LockName>,
        limit: usize,
    ) -> Result<ListPage, Error> {
        let exec = Exec::new(self)?;
        let deadline = deadline_after(ADMIN_TIMEOUT);
        algo::list(&exec, &self.shared, prefix, after, limit, deadline).await
    }

    /// [`list_page`](Self::list_page), blocking the calling thread.
    ///
    /// # Errors
    /// As [`list_blocking`](Self::list_blocking).
    pub fn list_page_blocking(
        &self,
        prefix: Option<&str>,
        after: Option<&LockName>,
        limit: usize,
    ) -> Result<ListPage, Error> {
        let (prefix, after) = (prefix.map(str::to_owned), after.cloned());
        self.admin_blocking(move |exec, backend| async move {
            let deadline = deadline_after(ADMIN_TIMEOUT);
            algo::list(
                &exec,
                &backend.shared,
                prefix.as_deref(),
                after.as_ref(),
                limit,
                deadline,
            )
            .await
        })
    }

    /// End the holding of lock `name`, whoever holds it, keeping `by` (who
    /// forces it), `reason` and the time on the record (read them back
    /// with [`audit`](Self::audit)). The holder's next renewal finds the
    /// lease lost ([`LossReason::Forced`](crate::LossReason::Forced)): its
    /// guard's `lost()` fires and its release changes nothing. The next
    /// grant's fencing token is higher than the forced holder's, so a
    /// resource that checks tokens refuses the old holder.
    ///
    /// The request is sent once: after an error its outcome is unknown
    /// ([`audit`](Self::audit) tells whether it was applied).
    ///
    /// # Errors
    /// [`Error::InvalidName`]; [`Error::InvalidOption`] for a `by` or
    /// `reason` over [`MAX_AUDIT_TEXT_BYTES`]; [`Error::Backend`] (of kind
    /// `Unsupported` for a backend that cannot force a release).
    pub async fn force_release(
        &self,
        name: &str,
        by: &str,
        reason: &str,
    ) -> Result<ForceReleaseOutcome, Error> {
        let name = LockName::new(name)?;
        check_text("by", by)?;
        check_text("reason", reason)?;
        let exec = Exec::new(self)?;
        let deadline = deadline_after(ADMIN_TIMEOUT);
        algo::force_release(&exec, &self.shared, &name, by, reason, deadline).await
    }

    /// [`force_release`](Self::force_release), blocking the calling thread.
    ///
    /// # Errors
    /// As [`force_release`](Self::force_release); [`Error::Runtime`] where
    /// a blocking call cannot wait.
    pub fn force_release_blocking(
        &self,
        name: &str,
        by: &str,
        reason: &str,
    ) -> Result<ForceReleaseOutcome, Error> {
        let name = LockName::new(name)?;
        check_text("by", by)?;
        check_text("reason", reason)?;
        let (by, reason) = (by.to_owned(), reason.to_owned());
        self.admin_blocking(move |exec, backend| async move {
            let deadline = deadline_after(ADMIN_TIMEOUT);
            algo::force_release(&exec, &backend.shared, &name, &by, &reason, deadline).await
        })
    }

    /// The audit trail of the last forced release of lock `name` (who
    /// forced it, when, why, and whose holding it ended), whether the lock
    /// is free or held again since; `None` if it was never forced (or its
    /// record was deleted since).
    ///
    /// # Errors
    /// As [`list`](Self::list), and [`Error::InvalidName`].
    pub async fn audit(&self, name: &str) -> Result<Option<ForcedRelease>, Error> {
        let name = LockName::new(name)?;
        let exec = Exec::new(self)?;
        algo::audit(&exec, &name, deadline_after(ADMIN_TIMEOUT)).await
    }

    /// [`audit`](Self::audit), blocking the calling thread.
    ///
    /// # Errors
    /// As [`audit`](Self::audit); [`Error::Runtime`] where a blocking call
    /// cannot wait.
    pub fn audit_blocking(&self, name: &str) -> Result<Option<ForcedRelease>, Error> {
        let name = LockName::new(name)?;
        self.admin_blocking(move |exec, _backend| async move {
            algo::audit(&exec, &name, deadline_after(ADMIN_TIMEOUT)).await
        })
    }
}
