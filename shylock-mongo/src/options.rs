//! [`MongoOptions`]: everything about a MongoDB backend but the client and
//! the database name.

use std::time::Duration;

use mongodb::options::WriteConcern;

/// The collection used when [`MongoOptions::collection`] is not called, as in
/// the Python original.
pub const DEFAULT_COLLECTION: &str = "shylock";

/// The default time a lock record is kept after its lease ended (or it was
/// released) before the TTL index may delete it: one hour.
pub const DEFAULT_TTL_GRACE: Duration = Duration::from_secs(3600);

/// The shortest accepted [`ttl_grace`](MongoOptions::ttl_grace): one minute.
///
/// Fencing tokens stay rising across deletion of a record because a
/// re-created record's `epoch` (the creation time, in ms) is at least the
/// grace later than the deleted record's last grant, minus the error of the
/// creator's estimate of the server clock; see the [crate docs](crate) for
/// the argument. One minute is far above any sane clock estimate error.
pub const MIN_TTL_GRACE: Duration = Duration::from_secs(60);

/// The default [`setup_timeout`](MongoOptions::setup_timeout): 10 seconds.
pub const DEFAULT_SETUP_TIMEOUT: Duration = Duration::from_secs(10);

/// The default [`request_timeout`](MongoOptions::request_timeout): 10 seconds.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Settings of a MongoDB backend beyond the client and the database name.
///
/// Built with [`new`](Self::new) (or [`Default`]) and the `#[must_use]`
/// setters; read back with the `get_*` getters.
///
/// ```
/// use std::time::Duration;
/// use shylock_mongo::MongoOptions;
/// use mongodb::options::{Acknowledgment, WriteConcern};
///
/// let options = MongoOptions::new()
///     .collection("locks")
///     .write_concern(WriteConcern::builder().w(Acknowledgment::Majority).journal(true).build())
///     .ttl_grace(Duration::from_secs(24 * 3600))
///     .setup_timeout(Duration::from_secs(5));
/// assert_eq!(options.get_collection(), "locks");
/// assert_eq!(options.get_setup_timeout(), Duration::from_secs(5));
/// ```
#[derive(Debug, Clone)]
pub struct MongoOptions {
    collection: String,
    write_concern: WriteConcern,
    ttl_grace: Duration,
    allow_non_atomic_server: bool,
    setup_timeout: Duration,
    request_timeout: Duration,
}

impl Default for MongoOptions {
    fn default() -> Self {
        MongoOptions {
            collection: DEFAULT_COLLECTION.to_owned(),
            write_concern: WriteConcern::majority(),
            ttl_grace: DEFAULT_TTL_GRACE,
            allow_non_atomic_server: false,
            setup_timeout: DEFAULT_SETUP_TIMEOUT,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
        }
    }
}

impl MongoOptions {
    /// The defaults: collection [`DEFAULT_COLLECTION`] (`shylock`), write
    /// concern `majority`, TTL grace [`DEFAULT_TTL_GRACE`] (one hour), set-up
    /// deadline [`DEFAULT_SETUP_TIMEOUT`] (10 s), per-command bound
    /// [`DEFAULT_REQUEST_TIMEOUT`] (10 s).
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// The collection that holds the lock records (default `shylock`).
    ///
    /// The name is checked when the backend is made, before anything is sent.
    #[must_use]
    pub fn collection(mut self, name: impl Into<String>) -> Self {
        self.collection = name.into();
        self
    }

    /// The write concern of every lock write (default `majority`, so that a
    /// granted lock survives the failover of a replica set's primary).
    ///
    /// A weaker write concern (such as `w: 1`) is faster but a lock granted
    /// by a primary that fails before replicating the grant may be granted
    /// again by the next primary. Its `wtimeout`, if unset or longer, is set
    /// per command to the command's bound (see
    /// [`request_timeout`](Self::request_timeout)), so that a write never
    /// waits for ever for acknowledgements that cannot come.
    #[must_use]
    pub fn write_concern(mut self, write_concern: WriteConcern) -> Self {
        self.write_concern = write_concern;
        self
    }

    /// How long a lock record is kept after its lease ended or it was
    /// released before the TTL index on `expiresAt` may delete it (default
    /// one hour, at least [`MIN_TTL_GRACE`]).
    ///
    /// Only garbage collection depends on it: a record whose lease has ended
    /// is free for the next acquirer whether or not it was deleted.
    #[must_use]
    pub fn ttl_grace(mut self, grace: Duration) -> Self {
        self.ttl_grace = grace;
        self
    }

    /// Run even on a server known not to make a conditional single-document
    /// update atomic across connections (default `false`: refuse it).
    ///
    /// **For tests and single-connection use only.** Today that server is
    /// FerretDB v1 (any version before 2.0): it runs `findAndModify` as a
    /// query followed by a separate write by `_id` (FerretDB issue 2168), so
    /// two contenders on different connections can both be granted the same
    /// lock (a benchmark of 4 processes on one lock saw 1197 repeated
    /// fencing tokens in 2669 grants). The backend recognizes it by the
    /// `ferretdbVersion` field of its `buildInfo` reply and, without this
    /// opt-in, refuses it with [`shylock_core::Error::InvalidConfig`] (from
    /// `create`, `create_with` and `prepare`; for a backend made with `new`,
    /// from its first acquisition).
    ///
    /// It is safe only when every user of the locks goes through **one**
    /// connection: one process, one client built with `max_pool_size(1)`
    /// (commands on one connection run one after another). With the opt-in
    /// the backend logs a `tracing` warning when it detects such a server.
    ///
    /// ```
    /// use shylock_mongo::MongoOptions;
    /// // A test against FerretDB, through a client with max_pool_size(1):
    /// let options = MongoOptions::new().allow_non_atomic_server(true);
    /// assert!(options.get_allow_non_atomic_server());
    /// ```
    #[must_use]
    pub fn allow_non_atomic_server(mut self, allow: bool) -> Self {
        self.allow_non_atomic_server = allow;
        self
    }

    /// The deadline of `create`, `create_with` and `prepare` (default
    /// [`DEFAULT_SETUP_TIMEOUT`], 10 s): all their commands together must be
    /// answered within it, or they fail with a
    /// [`Timeout`](shylock_core::BackendErrorKind::Timeout) backend error that
    /// says which step was waiting (typically: no server reachable, when the
    /// driver would otherwise wait its whole `serverSelectionTimeoutMS`,
    /// 30 s by default). Must not be zero.
    #[must_use]
    pub fn setup_timeout(mut self, timeout: Duration) -> Self {
        self.setup_timeout = timeout;
        self
    }

    /// The longest any one lock command may take (default
    /// [`DEFAULT_REQUEST_TIMEOUT`], 10 s), also when the caller gave no time
    /// limit: an acquisition, renewal, release, inspection or server-time
    /// read that has no answer by then ends with a
    /// [`Timeout`](shylock_core::BackendErrorKind::Timeout) error (the core
    /// retries it within the caller's own limit, if any). Acquisitions and
    /// renewals are also bounded by their lease (a grant that arrives after
    /// its lease is worthless). The bound is sent as `maxTimeMS` and as the
    /// write concern's `wtimeout`, and the backend stops waiting for the
    /// driver at it. Must not be zero.
    #[must_use]
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// The collection name (see [`collection`](Self::collection)).
    pub fn get_collection(&self) -> &str {
        &self.collection
    }

    /// The write concern (see [`write_concern`](Self::write_concern)).
    pub fn get_write_concern(&self) -> &WriteConcern {
        &self.write_concern
    }

    /// The TTL grace (see [`ttl_grace`](Self::ttl_grace)).
    pub fn get_ttl_grace(&self) -> Duration {
        self.ttl_grace
    }

    /// Whether [`allow_non_atomic_server`](Self::allow_non_atomic_server) is
    /// on.
    pub fn get_allow_non_atomic_server(&self) -> bool {
        self.allow_non_atomic_server
    }

    /// The set-up deadline (see [`setup_timeout`](Self::setup_timeout)).
    pub fn get_setup_timeout(&self) -> Duration {
        self.setup_timeout
    }

    /// The per-command bound (see [`request_timeout`](Self::request_timeout)).
    pub fn get_request_timeout(&self) -> Duration {
        self.request_timeout
    }
}
