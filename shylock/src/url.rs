//! Naming a backend by URL: [`BackendUrl`], parsed from a string and
//! connected with [`connect`](crate::connect) or
//! [`connect_blocking`](crate::connect_blocking).

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use crate::connect::ConnectError;

/// Which backend a URL names, by its scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BackendKind {
    /// `mongodb://` or `mongodb+srv://`: MongoDB (features `mongo-async`,
    /// `mongo-sync`).
    Mongo,
    /// `http://` or `https://`: ArangoDB (features `arango-async`,
    /// `arango-sync`).
    Arango,
    /// `memory://NAME`: the in-process [`MemoryBackend`](crate::MemoryBackend)
    /// (always available).
    Memory,
}

impl BackendKind {
    /// The backend's name, for messages: `MongoDB`, `ArangoDB` or `memory`.
    pub fn name(self) -> &'static str {
        match self {
            BackendKind::Mongo => "MongoDB",
            BackendKind::Arango => "ArangoDB",
            BackendKind::Memory => "memory",
        }
    }

    fn from_scheme(scheme: &str) -> Option<BackendKind> {
        match scheme.to_ascii_lowercase().as_str() {
            "mongodb" | "mongodb+srv" => Some(BackendKind::Mongo),
            "http" | "https" => Some(BackendKind::Arango),
            "memory" => Some(BackendKind::Memory),
            _ => None,
        }
    }
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The prefix of shylock's own query parameters, which are taken out of the
/// URL before the driver sees it (no driver option starts with it).
pub const PARAM_PREFIX: &str = "shylock.";

/// shylock's query parameters, in the order [`BackendUrl`]'s docs list them.
const PARAMS: &[&str] = &[
    "database",
    "collection",
    "user",
    "ttl_grace_ms",
    "connect_timeout_ms",
    "request_timeout_ms",
    "allow_non_atomic_server",
    "prepare",
];

/// Driver query parameters whose values are shown by `Display` and `Debug`
/// (any other parameter shows as `name=***`: some carry secrets).
const SHOWN_PARAMS: &[&str] = &[
    "authsource",
    "authmechanism",
    "replicaset",
    "tls",
    "ssl",
    "directconnection",
    "appname",
    "retrywrites",
    "retryreads",
    "w",
    "journal",
    "readpreference",
    "connecttimeoutms",
    "serverselectiontimeoutms",
    "sockettimeoutms",
    "maxpoolsize",
    "loadbalanced",
];

/// A backend named by a URL, parsed and checked but not connected; connect
/// it with [`connect`](Self::connect) or
/// [`connect_blocking`](Self::connect_blocking) (or the free functions
/// [`crate::connect`] and [`crate::connect_blocking`]).
///
/// The scheme picks the backend:
///
/// | URL | backend |
/// |---|---|
/// | `mongodb://[USER[:PASSWORD]@]HOST[:PORT][,HOST…]/[DATABASE][?OPTIONS]` | MongoDB (also `mongodb+srv://`) |
/// | `http[s]://[USER[:PASSWORD]@]HOST[:PORT][/PATH][?OPTIONS]` | ArangoDB |
/// | `memory://NAME` | the in-process [`MemoryBackend`](crate::MemoryBackend) |
///
/// * **MongoDB**: everything but shylock's own parameters goes to the
///   driver unchanged (its URI options, credentials, `authSource`, `tls`,
///   `tlsCAFile`, …). The database is `shylock.database`, else the
///   connection string's default database, else `shylock`.
/// * **ArangoDB**: the user and password may be given in the URL (they are
///   taken out of it and sent as basic authentication; default user `root`,
///   empty password); the database is `shylock.database`, else `_system`.
/// * **memory**: `memory://NAME` is one [`MemoryBackend`](crate::MemoryBackend)
///   per `NAME` and process: every connect to the same name shares its
///   locks (as processes sharing a database would). `memory://` (no name)
///   is a new backend of its own at every connect. Parameters are accepted
///   and ignored.
///
/// shylock's own query parameters start with `shylock.` (no driver option
/// does) and are taken out before the driver sees the URL; an unknown one is
/// an error. Durations are whole milliseconds:
///
/// | parameter | meaning | see |
/// |---|---|---|
/// | `shylock.database` | the database | [`ConnectOptions::database`](crate::ConnectOptions::database) |
/// | `shylock.collection` | the collection of lock records (default `shylock`) | [`ConnectOptions::collection`](crate::ConnectOptions::collection) |
/// | `shylock.user` | ArangoDB's user | [`ConnectOptions::user`](crate::ConnectOptions::user) |
/// | `shylock.ttl_grace_ms` | how long released records are kept | [`ConnectOptions::ttl_grace`](crate::ConnectOptions::ttl_grace) |
/// | `shylock.connect_timeout_ms` | the limit on connecting | [`ConnectOptions::connect_timeout`](crate::ConnectOptions::connect_timeout) |
/// | `shylock.request_timeout_ms` | the limit on each request | [`ConnectOptions::request_timeout`](crate::ConnectOptions::request_timeout) |
/// | `shylock.allow_non_atomic_server` | `true`: accept FerretDB v1 (tests only) | [`ConnectOptions::allow_non_atomic_server`](crate::ConnectOptions::allow_non_atomic_server) |
/// | `shylock.prepare` | `false`: MongoDB, do not create the collection | [`ConnectOptions::prepare`](crate::ConnectOptions::prepare) |
///
/// What [`ConnectOptions`](crate::ConnectOptions) sets wins over the URL.
/// Passwords are never taken from parameters, and never shown: `Display`
/// and `Debug` print the URL with the password as `***` (and the values of
/// driver parameters that may carry secrets too).
///
/// ```
/// use shylock::{BackendKind, BackendUrl};
/// let url: BackendUrl = "mongodb://app:s3cret@db1,db2/locks?replicaSet=rs0&shylock.collection=leases"
///     .parse()?;
/// assert_eq!(url.kind(), BackendKind::Mongo);
/// assert_eq!(url.param("collection"), Some("leases"));
/// assert_eq!(url.to_string(), "mongodb://app:***@db1,db2/locks?replicaSet=rs0&shylock.collection=leases");
/// assert!(!format!("{url:?}").contains("s3cret"));
/// # Ok::<(), shylock::ConnectError>(())
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct BackendUrl {
    kind: BackendKind,
    scheme: String,
    user: Option<String>,
    password: Option<String>,
    /// The URL without shylock's parameters, for the driver (MongoDB: with
    /// the credentials; ArangoDB: without them).
    driver: String,
    /// What `Display` shows.
    shown: String,
    /// shylock's parameters, without the prefix.
    params: BTreeMap<String, String>,
    /// The name of a `memory://` backend.
    memory_name: String,
}

impl BackendUrl {
    /// Parse and check a backend URL (see the [type docs](Self)).
    ///
    /// # Errors
    /// [`ConnectError::BadUrl`] for a string that is not such a URL: no
    /// `scheme://`, an unknown scheme, no host, an unknown or malformed
    /// `shylock.` parameter. The message never shows the password.
    pub fn parse(url: &str) -> Result<BackendUrl, ConnectError> {
        let trimmed = url.trim();
        let Some((scheme, rest)) = trimmed.split_once("://") else {
            return Err(bad(
                redact_unparsed(trimmed),
                "not a URL: expected mongodb://, mongodb+srv://, http://, https:// or memory://",
            ));
        };
        let kind = BackendKind::from_scheme(scheme).ok_or_else(|| {
            bad(
                redact_unparsed(trimmed),
                format!(
                    "unknown scheme `{scheme}`: expected mongodb://, mongodb+srv://, http://, https:// or memory://"
                ),
            )
        })?;
        let (before_query, query) = match rest.split_once('?') {
            Some((b, q)) => (b, Some(q)),
            None => (rest, None),
        };
        let (authority, path) = match before_query.find('/') {
            Some(i) => before_query.split_at(i),
            None => (before_query, ""),
        };
        let (userinfo, hosts) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        let (user, password) = match userinfo {
            Some(u) => {
                let (user, password) = match u.split_once(':') {
                    Some((user, password)) => (user, Some(password)),
                    None => (u, None),
                };
                (Some(decode(user)), password.map(decode))
            }
            None => (None, None),
        };
        let shown_authority = match (&userinfo, &password) {
            (Some(u), Some(_)) => format!(
                "{}:***@{hosts}",
                u.split_once(':').map_or(*u, |(user, _)| user)
            ),
            (Some(u), None) => format!("{u}@{hosts}"),
            (None, _) => hosts.to_owned(),
        };
        let mut params = BTreeMap::new();
        let mut driver_query = Vec::new();
        let mut shown_query = Vec::new();
        for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            if let Some(name) = key.strip_prefix(PARAM_PREFIX) {
                let shown = format!("{scheme}://{shown_authority}{path}");
                if !PARAMS.contains(&name) {
                    return Err(bad(
                        shown,
                        format!(
                            "unknown parameter `{key}` (shylock's are {})",
                            PARAMS
                                .iter()
                                .map(|p| format!("{PARAM_PREFIX}{p}"))
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    ));
                }
                if params.insert(name.to_owned(), decode(value)).is_some() {
                    return Err(bad(shown, format!("parameter `{key}` given twice")));
                }
                shown_query.push(pair.to_owned());
            } else {
                driver_query.push(pair);
                if SHOWN_PARAMS.contains(&key.to_ascii_lowercase().as_str()) {
                    shown_query.push(pair.to_owned());
                } else {
                    shown_query.push(format!("{key}=***"));
                }
            }
        }
        let with_query = |base: String, q: &[String]| {
            if q.is_empty() {
                base
            } else {
                format!("{base}?{}", q.join("&"))
            }
        };
        let shown = with_query(format!("{scheme}://{shown_authority}{path}"), &shown_query);
        let driver_query: Vec<String> = driver_query.into_iter().map(str::to_owned).collect();
        let driver = match kind {
            BackendKind::Mongo => {
                with_query(format!("{scheme}://{authority}{path}"), &driver_query)
            }
            BackendKind::Arango => with_query(format!("{scheme}://{hosts}{path}"), &driver_query),
            BackendKind::Memory => String::new(),
        };
        if kind != BackendKind::Memory && hosts.is_empty() {
            return Err(bad(shown, "no host"));
        }
        let url = BackendUrl {
            kind,
            scheme: scheme.to_ascii_lowercase(),
            user,
            password,
            driver,
            shown,
            params,
            memory_name: if kind == BackendKind::Memory {
                decode(before_query)
            } else {
                String::new()
            },
        };
        // Check the values now, not at connect time.
        url.duration_param("ttl_grace_ms")?;
        url.duration_param("connect_timeout_ms")?;
        url.duration_param("request_timeout_ms")?;
        url.bool_param("allow_non_atomic_server")?;
        url.bool_param("prepare")?;
        Ok(url)
    }

    /// The backend the scheme names.
    pub fn kind(&self) -> BackendKind {
        self.kind
    }

    /// The scheme, in lower case (`mongodb`, `mongodb+srv`, `http`, `https`,
    /// `memory`).
    pub fn scheme(&self) -> &str {
        &self.scheme
    }

    /// The user name given in the URL, if any.
    pub fn user(&self) -> Option<&str> {
        self.user.as_deref()
    }

    /// Whether the URL carries a password (which is never shown).
    pub fn has_password(&self) -> bool {
        self.password.is_some()
    }

    /// The value of shylock's parameter `shylock.NAME`, by `NAME` (for
    /// example `param("collection")`).
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params.get(name).map(String::as_str)
    }

    /// The name of a `memory://NAME` backend (empty for `memory://`); empty
    /// for the other backends.
    pub fn memory_name(&self) -> &str {
        &self.memory_name
    }

    /// The URL handed to the driver: shylock's parameters taken out (and,
    /// for ArangoDB, the credentials); may hold the password, so not public.
    #[cfg_attr(
        not(any(
            feature = "mongo-async",
            feature = "mongo-sync",
            feature = "arango-async",
            feature = "arango-sync"
        )),
        allow(dead_code)
    )]
    pub(crate) fn driver_url(&self) -> &str {
        &self.driver
    }

    pub(crate) fn password(&self) -> Option<&str> {
        self.password.as_deref()
    }

    pub(crate) fn duration_param(&self, name: &str) -> Result<Option<Duration>, ConnectError> {
        self.param(name)
            .map(|v| {
                v.parse::<u64>().map(Duration::from_millis).map_err(|_| {
                    bad(
                        self.shown.clone(),
                        format!(
                            "`{PARAM_PREFIX}{name}` needs a whole number of milliseconds, not `{v}`"
                        ),
                    )
                })
            })
            .transpose()
    }

    pub(crate) fn bool_param(&self, name: &str) -> Result<Option<bool>, ConnectError> {
        self.param(name)
            .map(|v| match v {
                "true" | "1" | "yes" => Ok(true),
                "false" | "0" | "no" => Ok(false),
                _ => Err(bad(
                    self.shown.clone(),
                    format!("`{PARAM_PREFIX}{name}` needs true or false, not `{v}`"),
                )),
            })
            .transpose()
    }
}

impl std::str::FromStr for BackendUrl {
    type Err = ConnectError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        BackendUrl::parse(s)
    }
}

/// The URL with its password (and driver parameters that may carry secrets)
/// as `***`.
impl fmt::Display for BackendUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.shown)
    }
}

/// As `Display`: never the password.
impl fmt::Debug for BackendUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("BackendUrl").field(&self.shown).finish()
    }
}

fn bad(url: String, reason: impl Into<String>) -> ConnectError {
    ConnectError::BadUrl {
        url,
        reason: reason.into(),
    }
}

fn decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

/// A string that did not parse, with anything that may be a secret
/// hidden: the query's values, and whatever lies between the first `:`
/// after a `//` (or the start) and the last `@` before the query.
fn redact_unparsed(s: &str) -> String {
    let (s, query) = match s.split_once('?') {
        Some((before, query)) => (before, Some(query)),
        None => (s, None),
    };
    let shown = redact_userinfo(s);
    match query {
        Some(query) => {
            let names: Vec<String> = query
                .split('&')
                .filter(|p| !p.is_empty())
                .map(|pair| format!("{}=***", pair.split_once('=').map_or(pair, |(k, _)| k)))
                .collect();
            format!("{shown}?{}", names.join("&"))
        }
        None => shown,
    }
}

fn redact_userinfo(s: &str) -> String {
    let Some(at) = s.rfind('@') else {
        return s.to_owned();
    };
    let start = s.find("//").map_or(0, |i| i + 2);
    if at < start {
        return s.to_owned();
    }
    match s[start..at].find(':') {
        Some(colon) => format!("{}:***{}", &s[..start + colon], &s[at..]),
        None => s.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> BackendUrl {
        BackendUrl::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn schemes_pick_the_backend() {
        assert_eq!(parse("mongodb://h/").kind(), BackendKind::Mongo);
        assert_eq!(
            parse("MongoDB+SRV://cluster.example").kind(),
            BackendKind::Mongo
        );
        assert_eq!(parse("http://127.0.0.1:8529").kind(), BackendKind::Arango);
        assert_eq!(parse("https://arango:8529/").kind(), BackendKind::Arango);
        assert_eq!(parse("memory://shared").kind(), BackendKind::Memory);
        assert_eq!(parse("memory://shared").memory_name(), "shared");
        assert_eq!(parse("memory://").memory_name(), "");
        assert_eq!(parse("MongoDB+SRV://c").scheme(), "mongodb+srv");
    }

    #[test]
    fn bad_urls_are_refused() {
        for s in [
            "",
            "localhost:27017",
            "notmongo://x",
            "ftp://h",
            "mongodb://",
            "mongodb:///db",
            "http://",
            "mongodb://h/?shylock.colection=x",
            "mongodb://h/?shylock.ttl_grace_ms=1h",
            "mongodb://h/?shylock.prepare=maybe",
            "mongodb://h/?shylock.database=a&shylock.database=b",
        ] {
            let e = BackendUrl::parse(s).expect_err(s);
            assert!(matches!(e, ConnectError::BadUrl { .. }), "{s}: {e:?}");
        }
        let e = BackendUrl::parse("notmongo://x").expect_err("unknown");
        assert!(e.to_string().contains("unknown scheme `notmongo`"), "{e}");
    }

    #[test]
    fn shylock_parameters_are_taken_out_for_the_driver() {
        let url = parse(
            "mongodb://u:p%40ss@h1:1,h2:2/db?replicaSet=rs&shylock.collection=c%2Fx&shylock.ttl_grace_ms=60000&w=majority&shylock.prepare=false",
        );
        assert_eq!(
            url.driver_url(),
            "mongodb://u:p%40ss@h1:1,h2:2/db?replicaSet=rs&w=majority"
        );
        assert_eq!(url.param("collection"), Some("c/x"));
        assert_eq!(
            url.duration_param("ttl_grace_ms").ok().flatten(),
            Some(Duration::from_secs(60))
        );
        assert_eq!(url.bool_param("prepare").ok().flatten(), Some(false));
        assert_eq!(url.user(), Some("u"));
        assert_eq!(url.password(), Some("p@ss"));

        let url = parse("http://root:pw@127.0.0.1:8529/?shylock.database=d&shylock.user=x");
        assert_eq!(url.driver_url(), "http://127.0.0.1:8529/");
        assert_eq!(url.param("database"), Some("d"));
        assert_eq!(url.param("user"), Some("x"));
    }

    #[test]
    fn credentials_are_never_shown() {
        for s in [
            "mongodb://user:hunter2@h/db",
            "mongodb://user:hunter2@h/db?authMechanismProperties=AWS_SESSION_TOKEN:hunter2",
            "http://root:hunter2@127.0.0.1:8529",
            "mongodb+srv://u:hunter2@c/?tlsCertificateKeyFilePassword=hunter2",
        ] {
            let url = parse(s);
            assert!(!url.to_string().contains("hunter2"), "{url}");
            assert!(!format!("{url:?}").contains("hunter2"), "{url:?}");
            assert!(!format!("{url:#?}").contains("hunter2"), "{url:#?}");
            assert!(url.has_password());
        }
        for s in [
            "notmongo://user:hunter2@h/",
            "user:hunter2@h",
            "mongodb://user:hunter2@h/?shylock.nope=1",
            "mongodb://user:hunter2@h/?shylock.prepare=hunter",
            "mongodb://user:hunter2@/",
            "notmongo://h/?token=hunter2",
            "h:1/?token=hunter2&x=1",
            "ftp://u@h/?a=1&token=hunter2",
        ] {
            let e = BackendUrl::parse(s).expect_err(s);
            assert!(!e.to_string().contains("hunter2"), "{e}");
            assert!(!format!("{e:?}").contains("hunter2"), "{e:?}");
        }
        assert_eq!(
            parse("mongodb://user:hunter2@h/db?tls=true&x=y").to_string(),
            "mongodb://user:***@h/db?tls=true&x=***"
        );
    }
}
