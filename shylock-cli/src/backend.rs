//! Connecting to the backend named on the command line or in the
//! environment: the flags and variables make a URL and options for
//! [`shylock::BackendUrl::connect`].

use std::future::Future;
use std::time::Duration;

use shylock::{Backend, BackendKind, BackendUrl, ConnectError, ConnectOptions};

use crate::cli::BackendArgs;
use crate::exit::{Failure, one_line};

/// A connected backend.
pub struct Connected {
    pub handle: Backend,
}

/// The variables that can carry the lock store's credentials: `shylock
/// run` removes them from the command's environment.
pub const SECRET_VARIABLES: &[&str] = &[
    "SHYLOCK_MONGODB_URI",
    "SHYLOCK_ARANGO_URL",
    "SHYLOCK_BACKEND_URL",
    "SHYLOCK_ARANGO_PASSWORD",
];

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// Where the URL came from: the backend its flag or variable names (none
/// for `--backend` and `SHYLOCK_BACKEND_URL`, which take any backend URL).
struct Choice {
    url: String,
    expected: Option<BackendKind>,
    /// Given by a flag, so visible to anyone who can list processes.
    on_command_line: bool,
}

fn choose(args: &BackendArgs) -> Result<Choice, Failure> {
    let given = [
        (args.mongodb.as_ref(), Some(BackendKind::Mongo)),
        (args.arango.as_ref(), Some(BackendKind::Arango)),
        (args.backend.as_ref(), None),
    ];
    let mut flags = given.into_iter().filter_map(|(u, k)| Some((u?.clone(), k)));
    match (flags.next(), flags.next()) {
        (Some((url, expected)), None) => {
            return Ok(Choice {
                url,
                expected,
                on_command_line: true,
            });
        }
        (Some(_), Some(_)) => {
            return Err(Failure::usage(
                "give one of --mongodb, --arango and --backend, not several",
            ));
        }
        (None, _) => {}
    }
    let variables = [
        ("SHYLOCK_MONGODB_URI", Some(BackendKind::Mongo)),
        ("SHYLOCK_ARANGO_URL", Some(BackendKind::Arango)),
        ("SHYLOCK_BACKEND_URL", None),
    ];
    let set: Vec<_> = variables
        .into_iter()
        .filter_map(|(name, expected)| Some((name, env(name)?, expected)))
        .collect();
    match &set[..] {
        [(_, url, expected)] => Ok(Choice {
            url: url.clone(),
            expected: *expected,
            on_command_line: false,
        }),
        [] => Err(Failure::usage(
            "no backend: give --mongodb <URI>, --arango <URL> or --backend <URL>, or set SHYLOCK_MONGODB_URI, SHYLOCK_ARANGO_URL or SHYLOCK_BACKEND_URL",
        )),
        several => Err(Failure::usage(format!(
            "{} are set: choose one with --mongodb, --arango or --backend",
            several
                .iter()
                .map(|(name, ..)| *name)
                .collect::<Vec<_>>()
                .join(" and ")
        ))),
    }
}

/// The most a password file may hold: a password is a line, not a
/// stream (`/dev/zero` is refused instead of read until memory runs out).
pub const PASSWORD_FILE_LIMIT: u64 = 64 * 1024;

fn read_password_file(args: &BackendArgs) -> Result<Option<String>, Failure> {
    use std::io::Read;
    use std::os::unix::fs::PermissionsExt;

    let Some(path) = &args.password_file else {
        return Ok(None);
    };
    let cannot = |e: std::io::Error| {
        Failure::config(format!(
            "cannot read the password file {}: {e}",
            path.display()
        ))
    };
    let file = std::fs::File::open(path).map_err(cannot)?;
    let mode = file.metadata().map_err(cannot)?.permissions().mode();
    if mode & 0o077 != 0 {
        warn(&format!(
            "the password file {} is readable by others (mode {:o}): chmod 600 it",
            path.display(),
            mode & 0o777
        ));
    }
    let mut bytes = Vec::new();
    file.take(PASSWORD_FILE_LIMIT + 1)
        .read_to_end(&mut bytes)
        .map_err(cannot)?;
    if bytes.len() as u64 > PASSWORD_FILE_LIMIT {
        return Err(Failure::config(format!(
            "the password file {} holds more than {} KiB: not a password",
            path.display(),
            PASSWORD_FILE_LIMIT / 1024
        )));
    }
    let text = String::from_utf8(bytes).map_err(|_| {
        Failure::config(format!(
            "the password file {} is not UTF-8 text",
            path.display()
        ))
    })?;
    Ok(Some(text.lines().next().unwrap_or("").to_owned()))
}

/// The most a CA file may hold.
const CA_FILE_LIMIT: u64 = 1024 * 1024;

/// The contents of `--ca-file`, if given.
fn read_ca_file(args: &BackendArgs) -> Result<Option<Vec<u8>>, Failure> {
    use std::io::Read;

    let Some(path) = &args.ca_file else {
        return Ok(None);
    };
    let cannot = |e: std::io::Error| {
        Failure::config(format!("cannot read the CA file {}: {e}", path.display()))
    };
    let mut pem = Vec::new();
    std::fs::File::open(path)
        .map_err(cannot)?
        .take(CA_FILE_LIMIT + 1)
        .read_to_end(&mut pem)
        .map_err(cannot)?;
    if pem.len() as u64 > CA_FILE_LIMIT {
        return Err(Failure::config(format!(
            "the CA file {} holds more than {} MiB",
            path.display(),
            CA_FILE_LIMIT / (1024 * 1024)
        )));
    }
    Ok(Some(pem))
}

/// Whether the (first) host of `url` is this machine: `localhost` or a
/// loopback address.
fn loopback(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = host.split(',').next().unwrap_or("");
    let host = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(h, _)| h),
    };
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// A warning on stderr: the command goes on.
fn warn(message: &str) {
    say!("shylock: warning: {message}");
}

/// MongoDB URI options that turn certificate or host name checks off
/// (compared without case, as the driver does), when set to `true`.
const UNVERIFIED_TLS: &[&str] = &["tlsinsecure", "tlsallowinvalidcertificates"];

/// The options of `url` (raw) that leave the server's certificate or name
/// unchecked.
fn unverified_tls_options(url: &str) -> Vec<String> {
    let Some((_, query)) = url.split_once('?') else {
        return Vec::new();
    };
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .filter(|(key, value)| {
            UNVERIFIED_TLS.contains(&key.to_ascii_lowercase().as_str()) && *value == "true"
        })
        .map(|(key, _)| key.to_owned())
        .collect()
}

/// Run `fut`, giving up after `bound` with an "unavailable" failure.
pub async fn bounded<T>(
    bound: Duration,
    what: &str,
    fut: impl Future<Output = Result<T, Failure>>,
) -> Result<T, Failure> {
    match tokio::time::timeout(bound, fut).await {
        Ok(result) => result,
        Err(_) => Err(Failure::unavailable(format!(
            "{what}: no answer within {}",
            crate::exit::format_duration(bound)
        ))),
    }
}

/// The exit code and message for a failed connect.
fn connect_failure(e: &ConnectError) -> Failure {
    match e {
        ConnectError::Backend(e) => Failure::from_lock_error(e),
        other => Failure::config(one_line(&other.to_string())),
    }
}

/// The URL, checked against the flag or variable that gave it.
fn parse(choice: &Choice) -> Result<BackendUrl, Failure> {
    let what = match choice.expected {
        Some(BackendKind::Mongo) => "bad MongoDB connection string",
        Some(BackendKind::Arango) => "bad ArangoDB URL",
        _ => "bad backend URL",
    };
    let url = BackendUrl::parse(&choice.url).map_err(|e| match e {
        ConnectError::BadUrl { url, reason } => {
            Failure::config(one_line(&format!("{what} `{url}`: {reason}")))
        }
        other => connect_failure(&other),
    })?;
    if choice.expected.is_some_and(|e| e != url.kind()) {
        return Err(Failure::config(format!(
            "{what} `{url}`: it names {}",
            url.kind()
        )));
    }
    if choice.on_command_line && url.has_password() {
        let variable = match url.kind() {
            BackendKind::Mongo => "the connection string in SHYLOCK_MONGODB_URI",
            _ => "SHYLOCK_ARANGO_PASSWORD",
        };
        return Err(Failure::usage(format!(
            "`{url}` has a password: passwords are never taken on the command line (anyone can \
             see it there); use {variable} or --password-file"
        )));
    }
    let unverified = unverified_tls_options(&choice.url);
    if !unverified.is_empty() {
        warn(&format!(
            "{} in the URL: the server's TLS certificate is not verified; anyone on the path \
             can pose as the server",
            unverified.join(" and ")
        ));
    }
    Ok(url)
}

/// The options the flags and variables give for `url`.
fn options(
    args: &BackendArgs,
    raw_url: &str,
    url: &BackendUrl,
    bound: Duration,
    prepare: bool,
) -> Result<ConnectOptions, Failure> {
    let password = read_password_file(args)?;
    let mut options = ConnectOptions::new()
        .collection(args.collection.clone())
        .connect_timeout(bound)
        .prepare(prepare);
    if args.allow_non_atomic_server {
        options = options.allow_non_atomic_server(true);
    }
    match url.kind() {
        BackendKind::Mongo => {
            if password.is_some() && url.user().is_none() {
                return Err(Failure::config(
                    "--password-file with MongoDB needs a user name in the connection string (mongodb://USER@host/)",
                ));
            }
            if args.user.is_some() {
                return Err(Failure::usage(
                    "--user is for ArangoDB; with MongoDB put the user name in the connection string",
                ));
            }
            let allow_non_atomic = args.allow_non_atomic_server;
            let ca_file = args.ca_file.clone();
            options = options.mongo_client_options(move |o| {
                use shylock::mongo::mongodb::options::{Tls, TlsOptions};
                o.app_name = Some("shylock-cli".into());
                if allow_non_atomic {
                    // The only safe use of such a server: one connection per process.
                    o.max_pool_size = Some(1);
                }
                if let Some(path) = &ca_file {
                    match &mut o.tls {
                        Some(Tls::Enabled(tls)) => tls.ca_file_path = Some(path.clone()),
                        _ => {
                            o.tls = Some(Tls::Enabled(
                                TlsOptions::builder().ca_file_path(path.clone()).build(),
                            ));
                        }
                    }
                }
            });
            if let Some(password) = password {
                options = options.password(password);
            }
            if let Some(db) = &args.database {
                options = options.database(db.clone());
            }
        }
        _ => {
            let user = args.user.clone().or_else(|| env("SHYLOCK_ARANGO_USER"));
            if let Some(user) = user {
                options = options.user(user);
            }
            let password = password.or_else(|| std::env::var("SHYLOCK_ARANGO_PASSWORD").ok());
            let any_password =
                url.has_password() || password.as_ref().is_some_and(|p| !p.is_empty());
            if any_password && url.scheme() == "http" && !loopback(raw_url) {
                warn(
                    "the ArangoDB password goes unencrypted (http://) to a host that is not \
                     loopback: anyone on the path can read it; use https://",
                );
            }
            if let Some(password) = password {
                options = options.password(password);
            }
            let db = args.database.clone().or_else(|| env("SHYLOCK_ARANGO_DB"));
            if let Some(db) = db {
                options = options.database(db);
            }
            if let Some(pem) = read_ca_file(args)? {
                options = options.arango_options(move |o| o.ca_certificate(pem.clone()));
            }
        }
    }
    Ok(options)
}

/// Whether every host of a `mongodb://` URL refuses connections at once
/// (nothing listens on its port): then a message naming them; `None` if
/// one accepts or does not answer within a second, or for other URLs. The
/// driver would retry a refusal until the connect timeout ends: a caller
/// that will not wait (`run -n`) need not either.
pub async fn refused(args: &BackendArgs) -> Option<String> {
    let choice = choose(args).ok()?;
    let rest = choice.url.strip_prefix("mongodb://")?;
    let authority = &rest[..rest.find(['/', '?']).unwrap_or(rest.len())];
    let hosts = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let mut refused = Vec::new();
    for host in hosts.split(',') {
        // A Unix socket (percent-encoded path) is not probed.
        if host.is_empty() || host.contains('%') {
            return None;
        }
        let with_port = if host.ends_with(']') || !host.contains(':') {
            format!("{host}:27017")
        } else {
            host.to_owned()
        };
        let attempt = tokio::time::timeout(
            Duration::from_secs(1),
            tokio::net::TcpStream::connect(with_port.as_str()),
        )
        .await;
        match attempt {
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                refused.push(with_port);
            }
            _ => return None,
        }
    }
    Some(format!(
        "cannot reach MongoDB: connection refused by {} (is the server running?)",
        refused.join(", ")
    ))
}

/// Connect to the backend and check that the server answers, all within
/// `bound`. With `prepare`, also create the collection and its indexes
/// (MongoDB; the ArangoDB backend always prepares).
pub async fn connect(
    args: &BackendArgs,
    bound: Duration,
    prepare: bool,
) -> Result<Connected, Failure> {
    let choice = choose(args)?;
    let url = parse(&choice)?;
    let options = options(args, &choice.url, &url, bound, prepare)?;
    let connected = bounded(bound, &format!("connecting to {}", url.kind()), async {
        let connection = url
            .connect(&options)
            .await
            .map_err(|e| connect_failure(&e))?;
        Ok(Connected {
            handle: connection.into_backend(),
        })
    })
    .await;
    match connected {
        // Nothing listens there: say that, not what the driver's retries
        // came to.
        Err(f) if f.code == crate::exit::UNAVAILABLE => match refused(args).await {
            Some(message) => Err(Failure::unavailable(message)),
            None => Err(f),
        },
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts() {
        for url in [
            "http://127.0.0.1:8529",
            "http://localhost",
            "http://u:p@[::1]:8529/x",
            "http://127.3.4.5/?a=b",
        ] {
            assert!(loopback(url), "{url}");
        }
        for url in [
            "http://db.example:8529",
            "http://10.0.0.1",
            "http://127.0.0.1.example/",
            "http://[2001:db8::1]:8529",
        ] {
            assert!(!loopback(url), "{url}");
        }
    }

    #[test]
    fn unverified_tls_is_found() {
        assert_eq!(
            unverified_tls_options("mongodb://h/?tls=true&tlsInsecure=true"),
            ["tlsInsecure"]
        );
        assert!(unverified_tls_options("mongodb://h/?tlsInsecure=false").is_empty());
    }
}
