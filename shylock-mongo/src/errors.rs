//! Server error codes, how driver errors map to [`BackendError`] kinds
//! (`classify`, `map_error`), hints for known misconfigurations, and
//! [`DriverError`]. The table of kinds is in the README (Errors).

use std::time::Duration;

use mongodb::error::{
    Error as MongoError, ErrorKind, RETRYABLE_ERROR, RETRYABLE_WRITE_ERROR,
    SYSTEM_OVERLOADED_ERROR, WriteFailure,
};
use shylock_core::Error;
use shylock_core::{BackendError, BackendErrorKind};

use crate::spec::{Ctx, Spec};

// Server error codes (src/mongo/base/error_codes.yml in the MongoDB source).
const CODE_INTERNAL_ERROR: i32 = 1;
pub(crate) const CODE_BAD_VALUE: i32 = 2;
const CODE_HOST_UNREACHABLE: i32 = 6;
const CODE_HOST_NOT_FOUND: i32 = 7;
const CODE_UNAUTHORIZED: i32 = 13;
const CODE_AUTHENTICATION_FAILED: i32 = 18;
pub(crate) const CODE_NAMESPACE_NOT_FOUND: i32 = 26;
pub(crate) const CODE_NAMESPACE_EXISTS: i32 = 48;
const CODE_MAX_TIME_MS_EXPIRED: i32 = 50;
pub(crate) const CODE_COMMAND_NOT_FOUND: i32 = 59;
const CODE_WRITE_CONCERN_FAILED: i32 = 64;
const CODE_INVALID_NAMESPACE: i32 = 73;
pub(crate) const CODE_INDEX_OPTIONS_CONFLICT: i32 = 85;
pub(crate) const CODE_INDEX_KEY_SPECS_CONFLICT: i32 = 86;
const CODE_NETWORK_TIMEOUT: i32 = 89;
const CODE_SHUTDOWN_IN_PROGRESS: i32 = 91;
const CODE_UNSATISFIABLE_WRITE_CONCERN: i32 = 100;
const CODE_WRITE_CONFLICT: i32 = 112;
const CODE_PRIMARY_STEPPED_DOWN: i32 = 189;
pub(crate) const CODE_NOT_IMPLEMENTED: i32 = 238;
const CODE_EXCEEDED_TIME_LIMIT: i32 = 262;
const CODE_TOO_MANY_REQUESTS: i32 = 16500;
pub(crate) const CODE_DUPLICATE_KEY: i32 = 11000;
const CODE_INTERRUPTED_AT_SHUTDOWN: i32 = 11600;
const CODE_INTERRUPTED_DUE_TO_REPL_STATE_CHANGE: i32 = 11602;
const CODE_NOT_WRITABLE_PRIMARY: i32 = 10107;
const CODE_NOT_PRIMARY_NO_SECONDARY_OK: i32 = 13435;
const CODE_NOT_PRIMARY_OR_SECONDARY: i32 = 13436;
const CODE_SOCKET_EXCEPTION: i32 = 9001;
const CODE_USER_NOT_FOUND: i32 = 11;
const CODE_TYPE_MISMATCH: i32 = 14;
pub(crate) const CODE_CANNOT_CREATE_INDEX: i32 = 67;
pub(crate) const CODE_COMMAND_NOT_SUPPORTED: i32 = 115;
const CODE_ILLEGAL_OPERATION: i32 = 20;
const CODE_FAILED_TO_SATISFY_READ_PREFERENCE: i32 = 133;
const CODE_NETWORK_INTERFACE_EXCEEDED_TIME_LIMIT: i32 = 202;

/// The error for an operation cut off at its deadline.
pub(crate) fn timeout_error(ctx: &Ctx) -> BackendError {
    BackendError::new(
        BackendErrorKind::Timeout,
        format!(
            "{ctx}: no answer from the server within the time allowed (the caller's limit, \
             the lease or MongoOptions::request_timeout); the outcome is unknown"
        ),
    )
}

/// A set-up step's failure as the caller's error: a timeout (the set-up
/// deadline passed, or the server gave up on `maxTimeMS`) says first what
/// was being waited for; the rest as [`Error::from`].
pub(crate) fn setup_error(spec: &Spec, e: BackendError) -> Error {
    if e.kind() != BackendErrorKind::Timeout {
        return Error::from(e);
    }
    Error::from(
        BackendError::new(
            BackendErrorKind::Timeout,
            format!(
                "no answer from the MongoDB server within {:?} (MongoOptions::setup_timeout) \
                 while setting up {}: is the server running and reachable at the connection \
                 string's hosts, with the right replicaSet, TLS and credentials? (Without \
                 this deadline the driver would keep trying for its serverSelectionTimeoutMS, \
                 30 s by default.)",
                spec.setup_timeout,
                spec.namespace(),
            ),
        )
        .with_source(e),
    )
}

/// The server's error code of a driver error, if the server answered one.
pub(crate) fn server_code(e: &MongoError) -> Option<i32> {
    match e.kind.as_ref() {
        ErrorKind::Command(c) => Some(c.code),
        ErrorKind::Write(WriteFailure::WriteError(w)) => Some(w.code),
        ErrorKind::Write(WriteFailure::WriteConcernError(w)) => Some(w.code),
        _ => None,
    }
}

fn server_message(e: &MongoError) -> Option<&str> {
    match e.kind.as_ref() {
        ErrorKind::Command(c) => Some(&c.message),
        ErrorKind::Write(WriteFailure::WriteError(w)) => Some(&w.message),
        ErrorKind::Write(WriteFailure::WriteConcernError(w)) => Some(&w.message),
        _ => None,
    }
}

/// `RetryAfterMs=NNN` in an Azure Cosmos DB error message.
pub(crate) fn retry_after(message: &str) -> Option<Duration> {
    let start = message.find("RetryAfterMs=")? + "RetryAfterMs=".len();
    let digits: String = message[start..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse::<u64>().ok().map(Duration::from_millis)
}

/// An error of the `mongodb` driver, as the source of a
/// [`BackendError`]: shown by its kind (for a server's refusal: the code,
/// its name and the server's message) and its labels, without the raw
/// server reply that the driver's own `Display` dumps. The driver's error is
/// [`get_ref`](Self::get_ref); find it with
/// `std::error::Error::source(&backend_error)` and `downcast_ref::<DriverError>()`.
#[derive(Debug)]
pub struct DriverError(MongoError);

impl DriverError {
    /// The driver's error.
    pub fn get_ref(&self) -> &MongoError {
        &self.0
    }

    /// The driver's error, owned.
    pub fn into_inner(self) -> MongoError {
        self.0
    }
}

impl std::fmt::Display for DriverError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0.kind)?;
        let labels = self.0.labels();
        if !labels.is_empty() {
            let mut labels: Vec<&str> = labels.iter().map(String::as_str).collect();
            labels.sort_unstable();
            write!(f, " (labels: {})", labels.join(", "))?;
        }
        Ok(())
    }
}

impl std::error::Error for DriverError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        std::error::Error::source(&self.0)
    }
}

/// Map a driver error to a [`BackendError`] of the right kind; where the
/// fix is known (retryable writes on a server without them, a TLS or DNS
/// misconfiguration), the message says it first.
pub(crate) fn map_error(ctx: &Ctx, e: MongoError) -> BackendError {
    let (kind, retry) = classify(&e);
    let message = match hint(&e) {
        Some(hint) => format!("{ctx}: {hint}"),
        None => ctx.to_string(),
    };
    let mut err = BackendError::new(kind, message).with_source(DriverError(e));
    if let Some(delay) = retry {
        err = err.with_retry_after(delay);
    }
    err
}

/// A server without retryable writes (Amazon DocumentDB before 8.0.2, a
/// standalone MongoDB) refusing the driver's default `retryWrites=true`.
fn retryable_writes_refused(e: &MongoError) -> bool {
    let Some(message) = server_message(e) else {
        return false;
    };
    let lower = message.to_ascii_lowercase();
    (server_code(e) == Some(CODE_ILLEGAL_OPERATION) && lower.starts_with("transaction numbers"))
        || lower.contains("does not support retryable writes")
        || (lower.contains("retryable writes") && lower.contains("not supported"))
}

/// Words of a server-selection error that name a TLS failure.
const TLS_SIGNS: &[&str] = &[
    "certificate",
    "tls handshake",
    "invalidcontenttype",
    "received corrupt message",
    "peer is incompatible",
    "peer misbehaved",
    "invalid dns name",
    "unknownissuer",
];

/// Words of a server-selection error that name a host that does not exist
/// (not a resolver that is down, which is transient).
const DNS_SIGNS: &[&str] = &[
    "name or service not known",
    "nodename nor servname provided",
    "no such host is known",
    "no address associated with hostname",
    "nxdomain",
];

/// A server-selection error whose servers all failed for a reason that
/// waiting does not cure: a TLS misconfiguration or a host name that does
/// not exist.
fn misconfigured_selection(e: &MongoError) -> Option<&'static str> {
    let ErrorKind::ServerSelection { message, .. } = e.kind.as_ref() else {
        return None;
    };
    misconfiguration_in(message)
}

/// [`misconfigured_selection`] on the text of a server-selection error.
fn misconfiguration_in(message: &str) -> Option<&'static str> {
    let lower = message.to_ascii_lowercase();
    if TLS_SIGNS.iter().any(|s| lower.contains(s)) {
        Some("TLS failed: check `tls`, `tlsCAFile`, `tlsCertificateKeyFile` and the host names")
    } else if DNS_SIGNS.iter().any(|s| lower.contains(s)) {
        Some("a host name in the connection string does not resolve")
    } else {
        None
    }
}

/// What to tell the user first, where the fix is known.
fn hint(e: &MongoError) -> Option<String> {
    if retryable_writes_refused(e) {
        return Some(
            "this server does not support retryable writes (Amazon DocumentDB before 8.0.2, a \
             standalone server): add `retryWrites=false` to the connection string. Without \
             them, a lock command whose answer is lost is not retried by the driver: an \
             acquisition whose answer was lost is released when the acquisition gives up or \
             expires with its lease, and a release is sent again and recognises its own \
             earlier success"
                .to_owned(),
        );
    }
    misconfigured_selection(e).map(|what| {
        format!("{what}; no server could be selected, and waiting will not change that")
    })
}

/// PostgreSQL states that DocumentDB's gateway passes through as packed
/// codes (see [`sqlstate_code`]) and that pass: the server is starting
/// (`57P03`, code 50463173: "the database system is starting up", "... not
/// yet accepting connections"), shutting down or restarting after a crash
/// (`57P01`, `57P02`), out of connections (`53300`), its connection failed
/// (`08000`, `08003`, `08006`, `08001`, `08004`), or a serialization failure
/// (`40001`). A deadlock (`40P01`) already comes as 112, WriteConflict.
const DOCUMENTDB_TRANSIENT_SQLSTATES: [&str; 10] = [
    "57P03", "57P01", "57P02", "53300", "08000", "08003", "08006", "08001", "08004", "40001",
];

/// The error code DocumentDB's gateway gives a PostgreSQL error it has no
/// MongoDB code for: the five SQLSTATE characters, each as `(c - '0') & 0x3f`,
/// six bits apiece from the lowest (`57P03` is 50463173).
pub(crate) const fn sqlstate_code(state: &str) -> i32 {
    let bytes = state.as_bytes();
    let mut code = 0;
    let mut i = 0;
    while i < bytes.len() {
        code |= ((bytes[i].wrapping_sub(b'0') & 0x3f) as i32) << (6 * i);
        i += 1;
    }
    code
}

/// Words of an authentication failure that is not about the credentials but
/// about the connection, or the server behind the one answering (DocumentDB's
/// gateway asks PostgreSQL for the SCRAM secrets): the handshake of a
/// connection that closed, or of a gateway that could not reach PostgreSQL.
const UNREACHABLE_SIGNS: &[&str] = &[
    "error connecting to server",
    "connection refused",
    "the database system is starting up",
    "not yet accepting connections",
    "the database system is shutting down",
    "the database system is in recovery mode",
    "too many clients",
    "connection reset",
    "connection closed",
    "broken pipe",
    "unexpected eof",
    "early eof",
    "timed out",
    "server closed the connection",
];

/// Whether an authentication failure's `message` says that the connection
/// failed, or that the server could not reach its own storage (see
/// [`UNREACHABLE_SIGNS`]), rather than that the credentials are wrong.
fn server_unreachable_in(message: &str) -> bool {
    let lower = message.to_ascii_lowercase();
    UNREACHABLE_SIGNS.iter().any(|s| lower.contains(s))
}

/// The kind of a driver error (see the error table in the crate docs).
pub(crate) fn classify(e: &MongoError) -> (BackendErrorKind, Option<Duration>) {
    use BackendErrorKind as K;
    if retryable_writes_refused(e) {
        return (K::InvalidConfig, None);
    }
    if let Some(code) = server_code(e) {
        let kind = match code {
            CODE_TOO_MANY_REQUESTS => {
                return (K::RateLimited, server_message(e).and_then(retry_after));
            }
            CODE_UNAUTHORIZED | CODE_AUTHENTICATION_FAILED | CODE_USER_NOT_FOUND => K::Unauthorized,
            CODE_INVALID_NAMESPACE | CODE_UNSATISFIABLE_WRITE_CONCERN => K::InvalidConfig,
            CODE_MAX_TIME_MS_EXPIRED
            | CODE_WRITE_CONCERN_FAILED
            | CODE_NETWORK_TIMEOUT
            | CODE_EXCEEDED_TIME_LIMIT
            | CODE_NETWORK_INTERFACE_EXCEEDED_TIME_LIMIT => K::Timeout,
            // InternalError: Azure Cosmos DB answers it for passing faults.
            CODE_INTERNAL_ERROR
            | CODE_HOST_UNREACHABLE
            | CODE_HOST_NOT_FOUND
            | CODE_SHUTDOWN_IN_PROGRESS
            | CODE_WRITE_CONFLICT
            | CODE_FAILED_TO_SATISFY_READ_PREFERENCE
            | CODE_PRIMARY_STEPPED_DOWN
            | CODE_INTERRUPTED_AT_SHUTDOWN
            | CODE_INTERRUPTED_DUE_TO_REPL_STATE_CHANGE
            | CODE_NOT_WRITABLE_PRIMARY
            | CODE_NOT_PRIMARY_NO_SECONDARY_OK
            | CODE_NOT_PRIMARY_OR_SECONDARY
            | CODE_SOCKET_EXCEPTION => K::Unavailable,
            // A record that is not shaped as expected (for example `seq` not a
            // number) makes the update fail with TypeMismatch or BadValue.
            CODE_BAD_VALUE | CODE_TYPE_MISMATCH | CODE_NOT_IMPLEMENTED => K::Unexpected,
            // DocumentDB: PostgreSQL starting, stopping, out of connections
            // or losing its connection, or a serialization failure.
            _ if DOCUMENTDB_TRANSIENT_SQLSTATES
                .iter()
                .any(|s| sqlstate_code(s) == code) =>
            {
                K::Unavailable
            }
            _ if e.contains_label(RETRYABLE_WRITE_ERROR)
                || e.contains_label(RETRYABLE_ERROR)
                || e.contains_label(SYSTEM_OVERLOADED_ERROR) =>
            {
                K::Unavailable
            }
            _ => K::Other,
        };
        return (kind, None);
    }
    let kind = match e.kind.as_ref() {
        ErrorKind::ServerSelection { .. } if misconfigured_selection(e).is_some() => {
            K::InvalidConfig
        }
        ErrorKind::ServerSelection { .. }
        | ErrorKind::ConnectionPoolCleared { .. }
        | ErrorKind::DnsResolve { .. } => K::Unavailable,
        ErrorKind::Io(io) => {
            if io.kind() == std::io::ErrorKind::TimedOut {
                K::Timeout
            } else {
                K::Unavailable
            }
        }
        // DocumentDB's gateway checks SCRAM passwords against PostgreSQL:
        // while PostgreSQL is down or restarting, the handshake fails with
        // its connection error, which passes.
        ErrorKind::Authentication { message, .. } if server_unreachable_in(message) => {
            K::Unavailable
        }
        ErrorKind::Authentication { .. } => K::Unauthorized,
        ErrorKind::InvalidArgument { .. }
        | ErrorKind::InvalidTlsConfig { .. }
        | ErrorKind::IncompatibleServer { .. } => K::InvalidConfig,
        ErrorKind::InvalidResponse { .. }
        | ErrorKind::BsonDeserialization(_)
        | ErrorKind::BsonSerialization(_) => K::Unexpected,
        _ => K::Other,
    };
    (kind, None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::test_support::{command_error, ctx};
    use mongodb::bson::doc;
    use mongodb::bson::from_document;
    use mongodb::error::WriteConcernError;

    fn kind_of(e: MongoError) -> (BackendErrorKind, Option<Duration>) {
        let err = map_error(&ctx(), e);
        (err.kind(), err.retry_after())
    }

    #[test]
    fn server_errors_map_to_kinds() {
        use BackendErrorKind as K;
        let cosmos = "Message: {\"Errors\":[\"Request rate is large.\"]}, Error=16500, RetryAfterMs=37, Details=''";
        assert_eq!(
            kind_of(command_error(16500, "TooManyRequests", cosmos)),
            (K::RateLimited, Some(Duration::from_millis(37)))
        );
        assert_eq!(
            kind_of(command_error(16500, "TooManyRequests", "slow down")),
            (K::RateLimited, None)
        );
        assert_eq!(
            kind_of(command_error(13, "Unauthorized", "not authorized")).0,
            K::Unauthorized
        );
        assert_eq!(
            kind_of(command_error(18, "AuthenticationFailed", "bad password")).0,
            K::Unauthorized
        );
        assert_eq!(
            kind_of(command_error(73, "InvalidNamespace", "bad name")).0,
            K::InvalidConfig
        );
        assert_eq!(
            kind_of(command_error(50, "MaxTimeMSExpired", "too slow")).0,
            K::Timeout
        );
        assert_eq!(
            kind_of(command_error(10107, "NotWritablePrimary", "stepped down")).0,
            K::Unavailable
        );
        assert_eq!(
            kind_of(command_error(11600, "InterruptedAtShutdown", "bye")).0,
            K::Unavailable
        );
        assert_eq!(
            kind_of(command_error(14, "TypeMismatch", "seq is a string")).0,
            K::Unexpected
        );
        assert_eq!(kind_of(command_error(12345, "Whatever", "?")).0, K::Other);
        let wce: WriteConcernError =
            from_document(doc! { "code": 64, "codeName": "WriteConcernFailed", "errmsg": "waiting for replication timed out" })
                .expect("a write concern error");
        assert_eq!(
            kind_of(MongoError::from(ErrorKind::Write(
                WriteFailure::WriteConcernError(wce)
            )))
            .0,
            K::Timeout
        );
    }

    // Issue 11 item 7: transient errors that were fatal.

    #[test]
    fn transient_server_errors_are_retried() {
        use BackendErrorKind as K;
        for (code, name) in [(1, "InternalError"), (133, "FailedToSatisfyReadPreference")] {
            assert_eq!(
                kind_of(command_error(code, name, "passing")).0,
                K::Unavailable,
                "{name}"
            );
        }
        assert_eq!(
            kind_of(command_error(
                202,
                "NetworkInterfaceExceededTimeLimit",
                "election"
            ))
            .0,
            K::Timeout
        );
    }

    // Issue 11 item 2: DocumentDB (and a standalone server) refusing
    // retryable writes is a configuration error that says what to add.

    #[test]
    fn retryable_writes_refusal_says_what_to_add() {
        for (code, name, msg) in [
            (
                301,
                "IllegalOperation",
                "Retryable writes are not supported",
            ),
            (
                20,
                "IllegalOperation",
                "Transaction numbers are only allowed on a replica set member or mongos",
            ),
            (
                20,
                "IllegalOperation",
                "This MongoDB deployment does not support retryable writes. Please add \
                 retryWrites=false to your connection string.",
            ),
        ] {
            let err = map_error(&ctx(), command_error(code, name, msg));
            assert_eq!(err.kind(), BackendErrorKind::InvalidConfig, "{msg}");
            assert!(err.to_string().contains("retryWrites=false"), "{err}");
        }
    }

    // Issue 11 item 7, the reverse: a TLS or DNS misconfiguration arrives
    // as a server-selection error and must not be retried for ever.

    #[test]
    fn misconfigured_server_selection_is_fatal() {
        // (ServerSelection errors cannot be built outside the driver: the
        // texts are read here; tests/errors.rs shows a real TLS failure.)
        let tls = "Server selection timeout: No available servers. Topology: { Type: Unknown, \
             Servers: [ { Address: db:27017, Type: Unknown, Error: Kind: I/O error: invalid \
             peer certificate: UnknownIssuer, labels: {} } ] }";
        assert!(misconfiguration_in(tls).is_some_and(|m| m.contains("TLS")));
        let dns = "Server selection timeout: No available servers. Topology: { Type: Unknown, \
             Servers: [ { Address: nosuch.invalid:27017, Type: Unknown, Error: Kind: I/O \
             error: failed to lookup address information: Name or service not known } ] }";
        assert!(misconfiguration_in(dns).is_some());
        let down = "Server selection timeout: No available servers. Topology: { Type: Unknown, \
             Servers: [ { Address: 127.0.0.1:1, Type: Unknown, Error: Kind: I/O error: \
             Connection refused (os error 111), labels: {} } ] }";
        assert_eq!(misconfiguration_in(down), None);
    }

    // Issue 11 item 1: Cosmos DB answers `hello` with 115 CommandNotSupported;
    // any non-auth command error, and a reply without a clock, mean "ask
    // isMaster"; a server without any clock is refused clearly.

    #[test]
    fn documentdb_transient_postgres_states_are_retried() {
        assert_eq!(sqlstate_code("57P03"), 50463173);
        for (code, msg) in [
            (50463173, "the database system is starting up"),
            (
                50463173,
                "the database system is not yet accepting connections",
            ),
            (
                sqlstate_code("57P01"),
                "terminating connection due to administrator command",
            ),
            (
                sqlstate_code("57P02"),
                "terminating connection due to crash of another server process",
            ),
            (sqlstate_code("53300"), "sorry, too many clients already"),
            (sqlstate_code("08006"), "connection failure"),
            (
                sqlstate_code("40001"),
                "could not serialize access due to concurrent update",
            ),
            (112, "Could not acquire lock for operation due to deadlock"),
        ] {
            let err = map_error(&ctx(), command_error(code, "DocumentDB error.", msg));
            assert_eq!(err.kind(), BackendErrorKind::Unavailable, "{code}: {msg}");
        }
        // Other packed states are not guessed at.
        let err = map_error(
            &ctx(),
            command_error(sqlstate_code("42601"), "x", "syntax error"),
        );
        assert_eq!(err.kind(), BackendErrorKind::Other);
    }

    // Issue 17: while PostgreSQL restarts, DocumentDB's gateway cannot read
    // the SCRAM secrets and the handshake fails with PostgreSQL's connection
    // error: that passes (found by the chaos suite as a fatal Unauthorized
    // ending acquisitions). A wrong password stays Unauthorized.

    #[test]
    fn documentdb_scram_failure_while_postgres_is_down_is_transient() {
        // (The driver's authentication errors cannot be made outside it:
        // the words are checked here, the classification in
        // tests/restart.rs with PostgreSQL killed under the gateway.)
        for message in [
            "SCRAM failure: error connecting to server: Connection refused (os error 111)",
            "SCRAM failure: db error: FATAL: the database system is starting up",
            "SCRAM failure: db error: FATAL: the database system is not yet accepting connections",
            // Found by the long chaos run: a gateway killed (or a connection
            // reset) in the middle of the handshake.
            "SCRAM failure: connection closed",
        ] {
            assert!(server_unreachable_in(message), "{message}");
        }
        for message in [
            "SCRAM failure: Authentication failed.",
            "SCRAM failure: Invalid key",
        ] {
            assert!(!server_unreachable_in(message), "{message}");
        }
    }

    // Issue 11 item 3: only `_id` (ranged or hashed) or no shard key pass.

    #[test]
    fn client_errors_map_to_kinds() {
        use BackendErrorKind as K;
        let io = |k| MongoError::from(std::io::Error::new(k, "io"));
        assert_eq!(
            kind_of(io(std::io::ErrorKind::ConnectionRefused)).0,
            K::Unavailable
        );
        assert_eq!(kind_of(io(std::io::ErrorKind::TimedOut)).0, K::Timeout);
        // ServerSelection (no server reachable) is shown by the
        // server-down integration test; the other variants cannot be built
        // outside the driver.
    }

    #[test]
    fn cosmos_retry_after() {
        let msg = "Message: {\"Errors\":[\"Request rate is large\"]}\r\nActivityId: 0, \
                   Request URI: /apps/x, RequestStats: , SDK: Microsoft.Azure.Documents.Common/2.14.0, \
                   Error=16500, RetryAfterMs=130, Details='Response status code does not indicate success";
        assert_eq!(retry_after(msg), Some(Duration::from_millis(130)));
        assert_eq!(retry_after("Request rate is large"), None);
        assert_eq!(retry_after("RetryAfterMs=x"), None);
    }
}
