//! `shylock inspect` and `shylock setup`.

use std::time::{Duration, SystemTime};

use shylock::{AsyncLock, LockName, LockRecord};

use crate::backend::{self, Connected};
use crate::cli::{InspectArgs, SetupArgs};
use crate::exit::{self, Failure};

/// The last millisecond RFC 3339 can write (9999-12-31T23:59:59.999Z).
const MAX_RFC3339_MS: i64 = 253_402_300_799_999;

/// A moment given in milliseconds since the Unix epoch, as RFC 3339 (UTC,
/// milliseconds) when it has four-digit year after 1970, else as the
/// milliseconds themselves: `humantime` refuses (a panic in `Display`)
/// years from 10000 on and moments before the epoch, which a record
/// written by another program can hold. The one place the CLI formats a
/// moment.
pub fn format_millis(ms: i64) -> String {
    match u64::try_from(ms) {
        Ok(after) if ms <= MAX_RFC3339_MS => {
            let at = SystemTime::UNIX_EPOCH + Duration::from_millis(after);
            humantime::format_rfc3339_millis(at).to_string()
        }
        Ok(_) => format!("{ms} ms since the Unix epoch (beyond year 9999)"),
        Err(_) => format!("{ms} ms since the Unix epoch (before 1970)"),
    }
}

/// A lock record's expiry as RFC 3339 (UTC, milliseconds), or in
/// milliseconds when out of RFC 3339's range ([`format_millis`]).
fn expiry(record: &LockRecord) -> String {
    format_millis(record.expires_at.as_millis())
}

/// The version of `inspect --json`'s output: raised when a field changes
/// meaning or goes away (new fields may come without it).
pub const JSON_SCHEMA: u32 = 1;

/// How long until the record's lease ends, by this machine's clock: `12.5s`,
/// or `expired 3s ago` (the holder stopped renewing; the next `run` takes it
/// over).
fn expires_in(record: &LockRecord) -> String {
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    let left = record.expires_at.as_millis().saturating_sub(now);
    let ms = |n: i64| Duration::from_millis(n.unsigned_abs());
    if left >= 0 {
        format!(
            "{} unless renewed (by this machine's clock)",
            exit::format_duration(ms(left))
        )
    } else {
        format!(
            "expired {} ago (by this machine's clock)",
            exit::format_duration(ms(left))
        )
    }
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
    // The audit trail of the last forced release, if the backend keeps one.
    let forced = backend::bounded(bound, "reading the audit trail", async {
        match handle.audit(name.as_str()).await {
            Err(e) if e.backend_kind() == Some(shylock::BackendErrorKind::Unsupported) => Ok(None),
            other => other.map_err(|e| Failure::from_lock_error(&e)),
        }
    })
    .await?;
    let held = record.is_some();
    if args.json {
        let forced_json = forced.as_ref().map_or(serde_json::Value::Null, |f| {
            serde_json::json!({
                "by": f.by,
                "at": format_millis(f.at.as_millis()),
                "at_ms": f.at.as_millis(),
                "reason": f.reason,
                "owner": f.owner.as_str(),
                "token": f.token.get(),
            })
        });
        let value = match &record {
            Some(record) => serde_json::json!({
                "schema": JSON_SCHEMA,
                "name": name.as_str(),
                "held": true,
                "owner": record.owner.as_str(),
                "token": record.token.get(),
                "expires_at": expiry(record),
                "expires_at_ms": record.expires_at.as_millis(),
            }),
            None => serde_json::json!({
                "schema": JSON_SCHEMA,
                "name": name.as_str(),
                "held": false,
            }),
        };
        let mut value = value;
        value["forced"] = forced_json;
        out!("{value}");
    } else {
        match &record {
            Some(record) => {
                out!("lock:          {name}");
                out!("state:         held");
                out!("owner:         {}", record.owner);
                out!("fencing token: {}", record.token);
                out!("expires at:    {}", expiry(record));
                out!("expires in:    {}", expires_in(record));
            }
            None => {
                out!("lock:          {name}");
                out!("state:         free");
            }
        }
        if let Some(f) = &forced {
            out!("forced by:     {}", f.by);
            out!("forced at:     {}", format_millis(f.at.as_millis()));
            out!("reason:        {}", f.reason);
            out!("forced owner:  {} (fencing token {})", f.owner, f.token);
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

#[cfg(test)]
mod tests {
    use super::format_millis;

    #[test]
    fn moments_format_as_rfc3339_within_its_range_and_as_millis_beyond() {
        assert_eq!(format_millis(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(format_millis(1_500), "1970-01-01T00:00:01.500Z");
        assert_eq!(
            format_millis(253_402_300_799_999),
            "9999-12-31T23:59:59.999Z"
        );
        assert_eq!(
            format_millis(253_402_300_800_000),
            "253402300800000 ms since the Unix epoch (beyond year 9999)"
        );
        // MongoDB `DatetimeMS(631152000000000)` (year 21970) and 2^63-1.
        assert_eq!(
            format_millis(631_152_000_000_000),
            "631152000000000 ms since the Unix epoch (beyond year 9999)"
        );
        assert_eq!(
            format_millis(i64::MAX),
            format!("{} ms since the Unix epoch (beyond year 9999)", i64::MAX)
        );
        assert_eq!(
            format_millis(-1),
            "-1 ms since the Unix epoch (before 1970)"
        );
        assert_eq!(
            format_millis(i64::MIN),
            format!("{} ms since the Unix epoch (before 1970)", i64::MIN)
        );
    }
}
