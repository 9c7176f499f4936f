//! Exit codes and the one-line failures that lead to them, and the writes
//! of shylock's own lines to stderr and stdout.

use std::io::Write;

use shylock::{BackendErrorKind, Error};

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
        Self::new(code, one_line(&error.to_string()))
    }
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
