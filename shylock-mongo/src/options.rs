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

/// Settings of a MongoDB backend beyond the client and the database name.
///
/// ```
/// use std::time::Duration;
/// use shylock_mongo::MongoOptions;
/// use mongodb::options::{Acknowledgment, WriteConcern};
///
/// let options = MongoOptions::new()
///     .collection("locks")
///     .write_concern(WriteConcern::builder().w(Acknowledgment::Majority).journal(true).build())
///     .ttl_grace(Duration::from_secs(24 * 3600));
/// assert_eq!(options.collection_name(), "locks");
/// ```
#[derive(Debug, Clone)]
pub struct MongoOptions {
    pub(crate) collection: String,
    pub(crate) write_concern: WriteConcern,
    pub(crate) ttl_grace: Duration,
    pub(crate) allow_non_atomic_server: bool,
}

impl Default for MongoOptions {
    fn default() -> Self {
        MongoOptions {
            collection: DEFAULT_COLLECTION.to_owned(),
            write_concern: WriteConcern::majority(),
            ttl_grace: DEFAULT_TTL_GRACE,
            allow_non_atomic_server: false,
        }
    }
}

impl MongoOptions {
    /// The defaults: collection [`DEFAULT_COLLECTION`] (`shylock`), write
    /// concern `majority`, TTL grace [`DEFAULT_TTL_GRACE`] (one hour).
    pub fn new() -> Self {
        Self::default()
    }

    /// The collection that holds the lock records (default `shylock`).
    ///
    /// The name is checked when the backend is made, before anything is sent.
    pub fn collection(mut self, name: impl Into<String>) -> Self {
        self.collection = name.into();
        self
    }

    /// The write concern of every lock write (default `majority`, so that a
    /// granted lock survives the failover of a replica set's primary).
    ///
    /// A weaker write concern (such as `w: 1`) is faster but a lock granted
    /// by a primary that fails before replicating the grant may be granted
    /// again by the next primary.
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
    /// assert!(options.allows_non_atomic_server());
    /// ```
    pub fn allow_non_atomic_server(mut self, allow: bool) -> Self {
        self.allow_non_atomic_server = allow;
        self
    }

    /// Whether [`allow_non_atomic_server`](Self::allow_non_atomic_server) is
    /// in force.
    pub fn allows_non_atomic_server(&self) -> bool {
        self.allow_non_atomic_server
    }

    /// The collection name in force.
    pub fn collection_name(&self) -> &str {
        &self.collection
    }

    /// The write concern in force.
    pub fn write_concern_in_force(&self) -> &WriteConcern {
        &self.write_concern
    }

    /// The TTL grace in force.
    pub fn ttl_grace_in_force(&self) -> Duration {
        self.ttl_grace
    }
}
