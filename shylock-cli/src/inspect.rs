//! `shylock inspect` and `shylock setup`.

use std::time::SystemTime;

use shylock::{AsyncLock, LockName, LockRecord};

use crate::backend::{self, Connected};
use crate::cli::{InspectArgs, SetupArgs};
use crate::exit::{self, Failure};

/// A lock record's expiry as RFC 3339 (UTC, milliseconds).
fn expiry(record: &LockRecord) -> String {
    let at: SystemTime = record.expires_at.to_system_time();
    humantime::format_rfc3339_millis(at).to_string()
}

/// "by owner … (fencing token …, lease until …)", for messages.
pub fn describe_holder(record: &LockRecord) -> String {
    format!(
        "by owner {} (fencing token {}, lease until {} unless renewed)",
        record.owner,
        record.token,
        expiry(record)
    )
}

pub async fn inspect(args: InspectArgs) -> i32 {
    match inspect_inner(&args).await {
        Ok(code) => code,
        Err(f) => exit::report(&f),
    }
}

async fn inspect_inner(args: &InspectArgs) -> Result<i32, Failure> {
    let name = LockName::new(args.name.clone()).map_err(|e| Failure::from_lock_error(&e))?;
    let bound = args.backend.connect_timeout;
    let Connected { handle } = backend::connect(&args.backend, bound, false).await?;
    let lock = AsyncLock::with_backend(name.as_str(), &handle);
    let record = backend::bounded(bound, "reading the lock", async {
        lock.inspect()
            .await
            .map_err(|e| Failure::from_lock_error(&e))
    })
    .await?;
    let held = record.is_some();
    if args.json {
        let value = match &record {
            Some(record) => serde_json::json!({
                "name": name.as_str(),
                "held": true,
                "owner": record.owner.as_str(),
                "token": record.token.get(),
                "expires_at": expiry(record),
                "expires_at_ms": record.expires_at.as_millis(),
            }),
            None => serde_json::json!({ "name": name.as_str(), "held": false }),
        };
        out!("{value}");
    } else {
        match &record {
            Some(record) => {
                out!("lock:          {name}");
                out!("state:         held");
                out!("owner:         {}", record.owner);
                out!("fencing token: {}", record.token);
                out!("expires at:    {}", expiry(record));
            }
            None => {
                out!("lock:          {name}");
                out!("state:         free");
            }
        }
    }
    Ok(if held { 0 } else { 1 })
}

pub async fn setup(args: SetupArgs) -> i32 {
    let bound = args.backend.connect_timeout;
    match backend::connect(&args.backend, bound, true).await {
        Ok(Connected { handle }) => {
            out!("ready: {}", handle.describe());
            0
        }
        Err(f) => exit::report(&f),
    }
}
