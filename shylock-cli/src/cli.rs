//! The command line.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

const EXIT_CODES: &str = "\
Exit status:
  0-255  run: the command's own exit status (128 + N if it was killed by signal N)
  75     the lock could not be had: held with --no-wait, or --timeout passed while it was held
         (--conflict-exit-code)
  76     run: the lease was lost while the command ran (not valid any more when it
         was seen to exit), or could not be renewed in time to keep it; the
         command's group was stopped, dead before the lease could end (--lost-exit-code)
  64     bad command line: unknown option, bad duration, bad lock name, no backend
  69     the server could not be reached or failed (also when --timeout passed while it failed)
  70     internal error
  77     authentication or authorization failed
  78     bad configuration: bad connection string or URL, missing database,
         refused collection name or server
  126    run: the command could not be executed
  127    run: the command was not found
  128+N  run: interrupted by signal N while connecting or waiting (the command never ran)
  inspect: 0 when the lock is held, 1 when it is free
  release: 0 when a holding was ended, 1 when the lock was not held (or not confirmed)";

const RUN_NOTES: &str = "\
The command runs in its own process group, with stdin, stdout and stderr inherited,
without SHYLOCK_MONGODB_URI, SHYLOCK_ARANGO_URL, SHYLOCK_BACKEND_URL and
SHYLOCK_ARANGO_PASSWORD in its environment. SIGINT, SIGTERM, SIGHUP, SIGQUIT,
SIGUSR1, SIGUSR2, SIGALRM (and the other signals that would end shylock and can be
caught) sent to shylock are passed on to that group, followed by SIGCONT; a signal
ignored when shylock started (nohup) stays ignored. SIGTSTP (Ctrl-Z) stops the
command's group, not shylock, which goes on renewing the lease; SIGCONT to shylock
resumes the group. The lock is released once the command and the rest of its
process group (background children) have exited, never before (--kill-group:
stop the rest instead). If the lease cannot be kept (renewals failing, or lost),
the group gets SIGTERM, then SIGKILL after --kill-after, timed so that it is dead
before the lease can end, and shylock exits with 76; a command that exited while
the lease was valid keeps its exit status, whatever the release answers. A command
that reads from the terminal needs --foreground (in its own group it would be
stopped by SIGTTIN; shylock says so once); with --foreground, Ctrl-C and the other
signals the terminal sends to the whole group reach the command once (shylock does
not pass them on again). The command is looked up before the lock is asked for
(127 or 126 at once); a file without #! is run by /bin/sh. While the lock is
released, a signal gives the release up (the lease then ends on its own).";

const ENVIRONMENT: &str = "\
Environment:
  SHYLOCK_MONGODB_URI      MongoDB connection string, if none of --mongodb, --arango, --backend is given
  SHYLOCK_ARANGO_URL       ArangoDB URL, if none of --mongodb, --arango, --backend is given
  SHYLOCK_BACKEND_URL      any backend URL (mongodb://, http(s)://, memory://NAME), likewise
  SHYLOCK_ARANGO_USER      ArangoDB user (default root)
  SHYLOCK_ARANGO_PASSWORD  ArangoDB password (or --password-file; never on the command line)
  SHYLOCK_ARANGO_DB        ArangoDB database (default _system)";

/// Distributed locks on MongoDB and ArangoDB from the command line: run a
/// command on exactly one machine at a time, with fencing tokens, lease
/// renewal and loss detection.
#[derive(Parser, Debug)]
#[command(name = "shylock", version, after_help = format!("{EXIT_CODES}\n\n{ENVIRONMENT}"))]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run a command while holding a lock: wait for the lock, run the command
    /// with SHYLOCK_LOCK_NAME, SHYLOCK_FENCING_TOKEN and SHYLOCK_OWNER in its environment,
    /// renew the lease while it runs, release the lock once it has exited.
    #[command(after_help = format!("{RUN_NOTES}\n\n{EXIT_CODES}\n\n{ENVIRONMENT}"))]
    Run(RunArgs),
    /// Show who holds a lock: owner id, fencing token and expiry, or that it
    /// is free. Exits 0 when held, 1 when free.
    #[command(after_help = format!("{EXIT_CODES}\n\n{ENVIRONMENT}"))]
    Inspect(InspectArgs),
    /// Create the lock collection and its indexes (an administrator's step:
    /// with MongoDB, `run` and `inspect` create no indexes; the ArangoDB
    /// backend prepares its collection whenever it connects).
    #[command(after_help = format!("{EXIT_CODES}\n\n{ENVIRONMENT}"))]
    Setup(SetupArgs),
    /// List the locks held now: name, owner id, fencing token, expiry (by
    /// the server's clock) and how long each has been held.
    #[command(after_help = format!("{EXIT_CODES}\n\n{ENVIRONMENT}"))]
    List(ListArgs),
    /// Force the release of a lock whoever holds it (an administrator's
    /// step): the holder's next renewal finds the lease lost (a `shylock
    /// run` holding it stops its command and exits 76), the next grant's
    /// fencing token is higher, and the record keeps who forced it, when
    /// and why (`shylock inspect` shows them). Asks for confirmation on a
    /// terminal; --yes otherwise. Exits 0 when a holding was ended, 1 when
    /// the lock was not held.
    #[command(after_help = format!("{EXIT_CODES}\n\n{ENVIRONMENT}"))]
    Release(ReleaseArgs),
    /// A live table of the locks held, refreshed every second, until
    /// Ctrl-C (or SIGTERM, or a closed pipe: exit status 0).
    #[command(after_help = format!("{EXIT_CODES}\n\n{ENVIRONMENT}"))]
    Watch(WatchArgs),
}

// Where the locks are kept.
#[derive(Args, Debug, Clone)]
#[command(next_help_heading = "Backend")]
pub struct BackendArgs {
    /// MongoDB connection string, e.g. mongodb://host:27017/ (or
    /// SHYLOCK_MONGODB_URI). A URI with a password is refused here (anyone
    /// can see the command line): put it in the environment variable or use
    /// --password-file.
    #[arg(long, value_name = "URI", conflicts_with_all = ["arango", "backend"])]
    pub mongodb: Option<String>,

    /// ArangoDB URL, e.g. http://host:8529 (or SHYLOCK_ARANGO_URL).
    #[arg(long, value_name = "URL", conflicts_with = "backend")]
    pub arango: Option<String>,

    /// Any backend by URL (or SHYLOCK_BACKEND_URL): mongodb:// or
    /// mongodb+srv:// for MongoDB, http:// or https:// for ArangoDB,
    /// memory://NAME for locks within this process only; shylock's own URL
    /// parameters start with `shylock.` (e.g. ?shylock.collection=locks).
    #[arg(long, value_name = "URL")]
    pub backend: Option<String>,

    /// ArangoDB user [env: SHYLOCK_ARANGO_USER] [default: root]. For
    /// MongoDB, the user name goes into the connection string.
    #[arg(long, value_name = "USER")]
    pub user: Option<String>,

    /// Read the password from this file (its first line; at most 64 KiB; a
    /// warning if others can read it). Passwords are never taken on the
    /// command line; see also SHYLOCK_ARANGO_PASSWORD.
    #[arg(long, value_name = "FILE")]
    pub password_file: Option<PathBuf>,

    /// Trust the certificate authorities in this PEM file for the server's
    /// TLS certificate: ArangoDB over https:// (besides the bundled roots);
    /// MongoDB as `tlsCAFile=FILE` (TLS on).
    #[arg(long, value_name = "FILE")]
    pub ca_file: Option<PathBuf>,

    /// Database: MongoDB default the connection string's, else `shylock`;
    /// ArangoDB default SHYLOCK_ARANGO_DB, else `_system`.
    #[arg(long, value_name = "NAME")]
    pub database: Option<String>,

    /// Collection holding the lock records.
    #[arg(long, value_name = "NAME", default_value = "shylock")]
    pub collection: String,

    /// How long connecting to the server and each answer may take before
    /// giving up with exit status 69 (never more than --timeout).
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration, allow_hyphen_values = true)]
    pub connect_timeout: Duration,

    /// TESTS ONLY: accept a MongoDB-compatible server that can grant a lock
    /// twice across connections (FerretDB v1). Never use it in production.
    #[arg(long)]
    pub allow_non_atomic_server: bool,
}

// `shylock run`.
#[derive(Args, Debug)]
pub struct RunArgs {
    /// The lock's name (any non-empty string of at most 1024 bytes).
    #[arg(value_name = "NAME")]
    pub name: String,

    /// Do not wait: if the lock is held, exit at once with the conflict exit
    /// status (75).
    #[arg(short = 'n', long, conflicts_with = "timeout")]
    pub no_wait: bool,

    /// Wait at most this long for the lock (e.g. 30s, 5m, 1h30m; counted
    /// from the start), then exit with the conflict exit status (75).
    /// Default: wait as long as it takes.
    #[arg(short = 't', long, value_name = "DURATION", value_parser = parse_duration, allow_hyphen_values = true)]
    pub timeout: Option<Duration>,

    /// The lease: how long the lock stays held if this machine stops
    /// renewing it (renewed every third of it while the command runs).
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration, allow_hyphen_values = true)]
    pub lease: Duration,

    /// If the lease cannot be kept, how long after SIGTERM to the command's
    /// process group to send it SIGKILL [default: 10s, or a third of the
    /// lease if shorter]. The stop begins early enough for the command to be
    /// dead before the lease can end: --kill-after plus a margin (a
    /// tenth of the lease, at most 5s) may be at most three quarters of the
    /// lease.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, allow_hyphen_values = true)]
    pub kill_after: Option<Duration>,

    /// Once the command has exited, stop what is left of its process group
    /// (background children: SIGTERM, SIGKILL after --kill-after) instead
    /// of waiting for it with the lock held (the default).
    #[arg(long)]
    pub kill_group: bool,

    /// Run the command in shylock's own process group instead of a new one,
    /// so that it can read from the terminal and gets the terminal's signals
    /// (Ctrl-C, Ctrl-Z) itself, as with `timeout --foreground`. Signals and a
    /// lost lease then reach the command alone, not its children.
    #[arg(long)]
    pub foreground: bool,

    /// Exit status when the lock could not be had.
    #[arg(long, value_name = "CODE", default_value_t = crate::exit::DEFAULT_CONFLICT)]
    pub conflict_exit_code: u8,

    /// Exit status when the lease was lost while the command ran.
    #[arg(long, value_name = "CODE", default_value_t = crate::exit::DEFAULT_LOST)]
    pub lost_exit_code: u8,

    /// Do not say who holds the lock while waiting, nor that the lock was
    /// busy. Errors are still printed.
    #[arg(short, long)]
    pub quiet: bool,

    /// Say on stderr when the lock is held: its owner id (also given to
    /// the command as SHYLOCK_OWNER), fencing token, host name and pid, to
    /// match with `inspect`.
    #[arg(long, conflicts_with = "quiet")]
    pub verbose: bool,

    /// The command to run and its arguments, after `--`.
    #[arg(last = true, required = true, value_name = "COMMAND")]
    pub command: Vec<OsString>,

    #[command(flatten)]
    pub backend: BackendArgs,
}

// `shylock inspect`.
#[derive(Args, Debug)]
pub struct InspectArgs {
    /// The lock's name.
    #[arg(value_name = "NAME")]
    pub name: String,

    /// Print one JSON object: {"schema": 1, "name", "held", and when held
    /// "owner", "token", "expires_at" (RFC 3339), "expires_at_ms"; "forced":
    /// the last forced release ({"by", "at", "at_ms", "reason", "owner",
    /// "token"}) or null}. "schema" is raised if a field changes meaning or
    /// goes away.
    #[arg(long)]
    pub json: bool,

    #[command(flatten)]
    pub backend: BackendArgs,
}

// `shylock list`.
#[derive(Args, Debug)]
pub struct ListArgs {
    /// Only the locks whose names start with this.
    #[arg(long, value_name = "PREFIX")]
    pub prefix: Option<String>,

    /// Print one JSON object: {"schema": 1, "locks": [{"name", "owner", "token",
    /// "expires_at" (RFC 3339), "expires_at_ms", "held_since",
    /// "held_since_ms", "held_for_ms"}]} (the last three null when the
    /// record has no grant time).
    #[arg(long)]
    pub json: bool,

    #[command(flatten)]
    pub backend: BackendArgs,
}

// `shylock release`.
#[derive(Args, Debug)]
pub struct ReleaseArgs {
    /// End the holding whoever holds the lock (required: this command
    /// releases other processes' locks).
    #[arg(long)]
    pub force: bool,

    /// The lock's name.
    #[arg(value_name = "NAME")]
    pub name: String,

    /// Why the release is forced (kept on the record, shown by inspect).
    #[arg(long, value_name = "TEXT", required = true)]
    pub reason: String,

    /// Who forces it, kept on the record [default: USER@HOST].
    #[arg(long, value_name = "WHO")]
    pub by: Option<String>,

    /// Do not ask for confirmation (required when stdin is not a terminal).
    #[arg(short, long)]
    pub yes: bool,

    #[command(flatten)]
    pub backend: BackendArgs,
}

// `shylock watch`.
#[derive(Args, Debug)]
pub struct WatchArgs {
    /// Only the locks whose names start with this.
    #[arg(long, value_name = "PREFIX")]
    pub prefix: Option<String>,

    /// How often to refresh the table.
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = parse_duration)]
    pub interval: Duration,

    #[command(flatten)]
    pub backend: BackendArgs,
}

// `shylock setup`.
#[derive(Args, Debug)]
pub struct SetupArgs {
    #[command(flatten)]
    pub backend: BackendArgs,
}

/// A duration such as `30s`, `5m`, `1h30m`, `500ms`; a bare number is seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if s.starts_with('-') {
        // Taken as a value (not an unknown option) to say this.
        return Err(format!("bad duration `{s}`: a duration cannot be negative"));
    }
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return s
            .parse::<u64>()
            .map(Duration::from_secs)
            .map_err(|e| format!("bad duration `{s}`: {e}"));
    }
    humantime::parse_duration(s)
        .map_err(|e| format!("bad duration `{s}` ({e}); write e.g. 30s, 5m, 1h30m, 500ms"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("12"), Ok(Duration::from_secs(12)));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("").is_err());
        assert!(parse_duration("-1s").is_err());
    }
}
