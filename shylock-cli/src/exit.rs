//! Exit codes and the one-line failures that lead to them, and the writes
//! of shylock's own lines to stderr and stdout.

use std::io::Write;

use std::time::Duration;

use shylock::{BackendError, BackendErrorKind, Error};

/// `eprintln!` that never panics: a write error (EPIPE when nobody reads
/// stderr any more) is ignored, so that a message can never keep shylock
/// from stopping its command or from exiting with its documented code.
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::exit::write_line(&mut std::io::stderr(), &format!($($arg)*))
    };
}

/// `println!` that never panics (see [`say!`]).
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::exit::write_line(&mut std::io::stdout(), &format!($($arg)*))
    };
}

/// Write `line` and a newline in one write, ignoring errors.
pub fn write_line(to: &mut impl Write, line: &str) {
    let mut text = String::with_capacity(line.len() + 1);
    text.push_str(line);
    text.push('\n');
    let _ = to.write_all(text.as_bytes());
    let _ = to.flush();
}

/// Bad command line: unknown option, bad duration, bad lock name, no backend.
pub const USAGE: i32 = 64;
/// The server could not be reached, or failed.
pub const UNAVAILABLE: i32 = 69;
/// An internal error of `shylock` itself.
pub const SOFTWARE: i32 = 70;
/// The default exit code when the lock could not be had (`--no-wait` on a
/// held lock, `--timeout` passed): EX_TEMPFAIL, as cron wrappers expect.
pub const DEFAULT_CONFLICT: u8 = 75;
/// The default exit code when the lease was lost while the command ran.
pub const DEFAULT_LOST: u8 = 76;
/// Authentication or authorization failed.
pub const NOPERM: i32 = 77;
/// Bad configuration: a bad connection string or URL, a database or
/// collection that does not exist or is refused, a refused server.
pub const CONFIG: i32 = 78;
/// The command was found but could not be run.
pub const CANNOT_EXECUTE: i32 = 126;
/// The command was not found.
pub const NOT_FOUND: i32 = 127;

/// A failure: what to print (one line, without the `shylock: ` prefix;
/// nothing if empty) and the exit code.
#[derive(Debug)]
pub struct Failure {
    pub code: i32,
    pub message: String,
}

impl Failure {
    pub fn new(code: i32, message: impl Into<String>) -> Self {
        Failure {
            code,
            message: message.into(),
        }
    }

    pub fn usage(message: impl Into<String>) -> Self {
        Self::new(USAGE, message)
    }

    pub fn config(message: impl Into<String>) -> Self {
        Self::new(CONFIG, message)
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(UNAVAILABLE, message)
    }

    /// The exit code and message for a library error. `Timeout` and
    /// `LeaseLost` are handled by the callers, which know their codes; here
    /// they count as unavailable.
    pub fn from_lock_error(error: &Error) -> Self {
        let code = match error {
            Error::InvalidName { .. } | Error::InvalidOption { .. } => USAGE,
            Error::InvalidConfig { .. } => CONFIG,
            Error::NotConfigured | Error::Runtime { .. } => SOFTWARE,
            _ => match error.backend_kind() {
                Some(BackendErrorKind::Unauthorized) => NOPERM,
                Some(BackendErrorKind::InvalidConfig | BackendErrorKind::Unsupported) => CONFIG,
                _ => UNAVAILABLE,
            },
        };
        Self::new(code, describe_error(error))
    }
}

/// A library error as one line for a person: the kind of failure in
/// words (no internal kind names such as `InvalidConfig:`), the driver's
/// server-selection dump cut short, durations written short, and the
/// command-line flag instead of the library call that would opt in.
pub fn describe_error(error: &Error) -> String {
    let text = match error {
        Error::Backend { name, source } => {
            let what = if name.is_empty() {
                String::new()
            } else {
                format!(" (lock `{name}`)")
            };
            format!("{}{what}", describe_backend_error(source))
        }
        Error::Timeout {
            name,
            waited,
            source,
        } => {
            let failing = source.as_ref().map_or(String::new(), |e| {
                format!(
                    " while the server was failing ({})",
                    describe_backend_error(e)
                )
            });
            format!(
                "timed out after {} waiting for lock `{name}`{failing}",
                format_duration(*waited)
            )
        }
        other => other.to_string(),
    };
    let text = shorten_driver_error(&text).replace(
        "MongoOptions::allow_non_atomic_server(true)",
        "--allow-non-atomic-server (tests only)",
    );
    one_line(&text)
}

/// A backend error without its kind's internal name: what failed, then
/// why (the driver's error, its server-selection dump cut short).
fn describe_backend_error(error: &BackendError) -> String {
    let mut text = match error.kind() {
        // The message says what was being done ("cannot reach the
        // server"), which reads wrong for a refused password.
        BackendErrorKind::Unauthorized => "authentication failed".to_owned(),
        BackendErrorKind::Timeout => format!("no answer in time: {}", error.message()),
        _ => error.message().to_owned(),
    };
    if let Some(source) = std::error::Error::source(error) {
        let source = source.to_string();
        text.push_str(": ");
        text.push_str(&source);
    }
    text
}

/// The MongoDB driver's "Server selection timeout: No available servers.
/// Topology: { Type: Unknown, Servers: [ { Address: …, Type: Unknown,
/// Error: … } ] }" (with labels in any order) cut to its servers and their
/// errors: "no server answered (127.0.0.1:1: Kind: I/O error: Connection
/// refused (os error 111))"; what comes before it is kept, other text is
/// left as it is.
fn shorten_driver_error(text: &str) -> String {
    let Some(topology) = text.find("Topology:") else {
        return text.to_owned();
    };
    let start = text[..topology]
        .find("Server selection timeout")
        .unwrap_or(topology);
    let mut servers = Vec::new();
    for part in text[topology..].split("Address: ").skip(1) {
        let address = part.split([',', ' ']).next().unwrap_or("").trim();
        let error = part
            .split_once("Error: ")
            .map(|(_, e)| {
                // The error runs to its labels or the end of the entry.
                let e = e.split(", labels:").next().unwrap_or(e);
                let e = e.split(" }").next().unwrap_or(e);
                e.trim_end_matches([',', ' ']).trim()
            })
            .filter(|e| !e.is_empty());
        match error {
            Some(error) => servers.push(format!("{address}: {error}")),
            None => servers.push(address.to_owned()),
        }
    }
    servers.sort();
    let summary = if servers.is_empty() {
        "no server answered".to_owned()
    } else {
        format!("no server answered ({})", servers.join("; "))
    };
    format!("{}{summary}", &text[..start])
}

/// A duration for a person: `0s`, `250ms`, `2.99s`, `30s`, `5m`, `1h30m`,
/// `2m5s` (not `2.993475138s` nor `0ns`).
pub fn format_duration(d: Duration) -> String {
    if d.is_zero() {
        return "0s".to_owned();
    }
    if d < Duration::from_secs(1) {
        return format!("{}ms", d.as_millis().max(1));
    }
    if d < Duration::from_secs(60) {
        let text = format!("{:.2}", d.as_secs_f64());
        let text = text.trim_end_matches('0').trim_end_matches('.');
        return format!("{text}s");
    }
    let secs = d.as_secs() + u64::from(d.subsec_millis() >= 500);
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    let mut text = String::new();
    if h > 0 {
        text.push_str(&format!("{h}h"));
    }
    if m > 0 {
        text.push_str(&format!("{m}m"));
    }
    if s > 0 {
        text.push_str(&format!("{s}s"));
    }
    text
}

/// Print a failure (if it has a message) and return its code.
pub fn report(failure: &Failure) -> i32 {
    if !failure.message.is_empty() {
        say!("shylock: {}", failure.message);
    }
    failure.code
}

/// A message folded onto one line.
pub fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_short() {
        assert_eq!(format_duration(Duration::ZERO), "0s");
        assert_eq!(format_duration(Duration::from_nanos(3)), "1ms");
        assert_eq!(format_duration(Duration::from_millis(250)), "250ms");
        assert_eq!(
            format_duration(Duration::from_nanos(2_993_475_138)),
            "2.99s"
        );
        assert_eq!(format_duration(Duration::from_secs(3)), "3s");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(format_duration(Duration::from_secs(300)), "5m");
        assert_eq!(format_duration(Duration::from_secs(5400)), "1h30m");
        assert_eq!(format_duration(Duration::from_secs(125)), "2m5s");
    }

    #[test]
    fn the_topology_dump_is_cut_short() {
        let dump = "MongoDB: cannot reach the server: Server selection timeout: No available \
                    servers. Topology: { Type: Unknown, Set Name: None, Servers: [ { Address: \
                    127.0.0.1:1, Type: Unknown, Error: Kind: I/O error: Connection refused (os \
                    error 111), labels: {} } ] }";
        assert_eq!(
            shorten_driver_error(dump),
            "MongoDB: cannot reach the server: no server answered (127.0.0.1:1: Kind: I/O \
             error: Connection refused (os error 111))"
        );
        let silent = "cannot reach the server: Server selection timeout: No available servers. \
                      Topology: { Type: Unknown, Servers: [ { Address: 127.0.0.1:47017, Type: \
                      Unknown } ] }";
        assert_eq!(
            shorten_driver_error(silent),
            "cannot reach the server: no server answered (127.0.0.1:47017)"
        );
        assert_eq!(shorten_driver_error("plain"), "plain");
    }
}
