//! The administrator's operations: [`list`] the held locks (one page),
//! [`force_release`] a lock whatever its owner, and read the [`audit`]
//! trail of its last forced release. Reads retry transient errors within
//! their deadline; a forced release is sent once (a second attempt after
//! an unknown outcome would answer "not held").

use std::time::Instant;

use super::{after, earliest, passed, server_now};
use crate::backend::{
    AuditRequest, ForceReleaseOutcome, ForceReleaseRequest, ForcedRelease, ListPage, ListRequest,
};
use crate::exec::Exec;
use crate::handle::Shared;
use crate::options::{Backoff, BackoffState};
use crate::{BackendError, Error, LockName};

/// Run the read `call` until it answers, fails for good, or `deadline`.
async fn retrying<T, F, Fut>(
    x: &Exec,
    deadline: Option<Instant>,
    name: &str,
    mut call: F,
) -> Result<T, Error>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, BackendError>>,
{
    let mut backoff = BackoffState::new(Backoff::default());
    loop {
        match call().await {
            Err(error) if error.is_transient() && !passed(deadline) => {
                let delay = error.retry_after().unwrap_or_else(|| backoff.next_delay());
                x.sleep_until(earliest(after(delay), deadline)).await;
            }
            other => return other.map_err(|e| Error::backend(name, e)),
        }
    }
}

/// One page of the held locks.
pub(crate) async fn list(
    x: &Exec,
    shared: &Shared,
    prefix: Option<&str>,
    after_name: Option<&LockName>,
    limit: usize,
    deadline: Option<Instant>,
) -> Result<ListPage, Error> {
    retrying(x, deadline, "", || async {
        let estimate = server_now(x, shared, deadline).await?;
        let req = ListRequest {
            prefix,
            after: after_name,
            limit: limit.max(1),
            now: estimate.now,
            deadline,
        };
        x.bounded(deadline, x.backend.list(req)).await
    })
    .await
}

/// End the holding of `name`, whoever holds it.
pub(crate) async fn force_release(
    x: &Exec,
    shared: &Shared,
    name: &LockName,
    by: &str,
    reason: &str,
    deadline: Option<Instant>,
) -> Result<ForceReleaseOutcome, Error> {
    let result = async {
        let estimate = server_now(x, shared, deadline).await?;
        let req = ForceReleaseRequest {
            name,
            by,
            reason,
            now: estimate.now,
            deadline,
        };
        x.bounded(deadline, x.backend.force_release(req)).await
    }
    .await;
    match &result {
        Ok(ForceReleaseOutcome::Released { owner, token }) => {
            tracing::warn!(lock = %name, %owner, token = token.get(), by, reason, "forced release");
        }
        Ok(ForceReleaseOutcome::NotHeld) => {
            tracing::info!(lock = %name, by, reason, "forced release: the lock was not held");
        }
        Err(_) => {}
    }
    result.map_err(|e| Error::backend(name.as_str(), e))
}

/// The audit trail of the last forced release of `name`.
pub(crate) async fn audit(
    x: &Exec,
    name: &LockName,
    deadline: Option<Instant>,
) -> Result<Option<ForcedRelease>, Error> {
    retrying(x, deadline, name.as_str(), || async {
        let req = AuditRequest { name, deadline };
        x.bounded(deadline, x.backend.audit(req)).await
    })
    .await
}
