//! The schema and the statements, written once per table prefix.
//!
//! Every time is read from SQLite's own clock inside the statement
//! ([`NOW`]): SQLite gives one value of `'now'` to every use within one
//! step of a statement, so a statement judges expiry and sets the new
//! expiry at one instant.

use shylock_core::RECORD_HORIZON;
use shylock_core::backend::RELEASERS_REMEMBERED;

/// Milliseconds since the Unix epoch on the database's clock (the clock of
/// the machine the database file is on, read by the connection).
pub(crate) const NOW: &str = "CAST(ROUND(unixepoch('subsec') * 1000) AS INTEGER)";

/// The SQL of one backend: its table names are made from a validated
/// prefix.
#[derive(Debug)]
pub(crate) struct Statements {
    /// Creates the tables and triggers if they are not there yet.
    pub(crate) schema: String,
    /// Grants the lock or changes nothing; `RETURNING token, expires_at`
    /// (no row: busy). Parameters: name, owner, lease in ms.
    pub(crate) acquire: String,
    /// When the current live holding ends, if there is one. Parameter: name.
    pub(crate) live_expiry: String,
    /// Extends the owner's lease; `RETURNING expires_at` (no row: lost).
    /// Parameters: name, owner, lease in ms.
    pub(crate) renew: String,
    /// Frees the owner's holding and remembers the owner; `RETURNING 1`
    /// (no row: not the owner's). Parameters: name, owner.
    pub(crate) release: String,
    /// Whether the record is free and `owner` among its releasers (a
    /// release sent again). Parameters: name, owner.
    pub(crate) released_by: String,
    /// The live holding: owner, token, expiry. Parameter: name.
    pub(crate) inspect: String,
    /// The database's clock.
    pub(crate) now: String,
    /// Deletes the records whose lease ended (or that were released) at
    /// least the given ms ago. Parameter: ms.
    pub(crate) collect: String,
}

impl Statements {
    pub(crate) fn new(prefix: &str) -> Self {
        let locks = format!("{prefix}_locks");
        let seq = format!("{prefix}_tokens");
        let remembered = RELEASERS_REMEMBERED;
        // An expiry after now + RECORD_HORIZON (366 days; no grant sets
        // more than now + the longest lease) was not written by this
        // backend: it is treated as expired, and the owner's own record
        // does not keep it (issue 23.3).
        let horizon = format!("({NOW} + {})", RECORD_HORIZON.as_millis());
        // A record's owner is NULL when the record is free; `releasers` is a
        // JSON array of owner ids, oldest first. The token sequence has one
        // row that nothing deletes, and two triggers keep it at or above
        // every token a record ever carried: a token taken from it is new
        // for the name even after the record was deleted.
        let schema = format!(
            "CREATE TABLE IF NOT EXISTS {locks} (
                 name       TEXT PRIMARY KEY NOT NULL,
                 owner      TEXT,
                 token      INTEGER NOT NULL,
                 expires_at INTEGER NOT NULL,
                 releasers  TEXT NOT NULL DEFAULT '[]'
             ) STRICT;
             CREATE TABLE IF NOT EXISTS {seq} (
                 id   INTEGER PRIMARY KEY CHECK (id = 1),
                 last INTEGER NOT NULL
             ) STRICT;
             INSERT OR IGNORE INTO {seq} (id, last) VALUES (1, 0);
             CREATE TRIGGER IF NOT EXISTS {prefix}_token_on_insert AFTER INSERT ON {locks}
             BEGIN
                 UPDATE {seq} SET last = max(last, NEW.token) WHERE id = 1;
             END;
             CREATE TRIGGER IF NOT EXISTS {prefix}_token_on_update AFTER UPDATE OF token ON {locks}
             BEGIN
                 UPDATE {seq} SET last = max(last, NEW.token) WHERE id = 1;
             END;"
        );
        let is_releaser = |list: &str, who: &str| {
            format!("EXISTS (SELECT 1 FROM json_each({list}) WHERE value = {who})")
        };
        // One upsert: a new record, or the existing one taken over when its
        // owner is not a releaser and it is free, expired or the caller's
        // own. The new token is the sequence's next value (NULL, refused by
        // NOT NULL, if the sequence row is missing). The caller's own
        // record keeps the later expiry, so a late duplicate never shortens
        // its lease.
        let acquire = format!(
            "INSERT INTO {locks} (name, owner, token, expires_at, releasers)
             VALUES (?1, ?2, (SELECT last + 1 FROM {seq} WHERE id = 1), {NOW} + ?3, '[]')
             ON CONFLICT (name) DO UPDATE SET
                 owner = excluded.owner,
                 token = max(token + 1, excluded.token),
                 expires_at = CASE WHEN owner IS excluded.owner AND expires_at <= {horizon}
                                   THEN max(expires_at, excluded.expires_at)
                                   ELSE excluded.expires_at END
             WHERE NOT {releaser}
               AND (owner IS NULL OR owner = excluded.owner OR expires_at <= {NOW}
                    OR expires_at > {horizon})
             RETURNING token, expires_at",
            releaser = is_releaser("releasers", "excluded.owner"),
        );
        let live_expiry = format!(
            "SELECT expires_at FROM {locks}
             WHERE name = ?1 AND owner IS NOT NULL AND expires_at > {NOW}
               AND expires_at <= {horizon}"
        );
        let renew = format!(
            "UPDATE {locks} SET expires_at = max(expires_at, {NOW} + ?3)
             WHERE name = ?1 AND owner = ?2 AND expires_at <= {horizon}
             RETURNING expires_at"
        );
        // The owner joins the releasers; the oldest one leaves once there
        // are more than RELEASERS_REMEMBERED. The expiry becomes the release
        // time, from which garbage collection counts.
        let release = format!(
            "UPDATE {locks} SET
                 owner = NULL,
                 expires_at = {NOW},
                 releasers = CASE
                     WHEN json_array_length(releasers) >= {remembered}
                     THEN json_insert(json_remove(releasers, '$[0]'), '$[#]', ?2)
                     ELSE json_insert(releasers, '$[#]', ?2) END
             WHERE name = ?1 AND owner = ?2
             RETURNING 1"
        );
        let released_by = format!(
            "SELECT 1 FROM {locks} WHERE name = ?1 AND owner IS NULL AND {releaser}",
            releaser = is_releaser("releasers", "?2"),
        );
        let inspect = format!(
            "SELECT owner, token, expires_at FROM {locks}
             WHERE name = ?1 AND owner IS NOT NULL AND expires_at > {NOW}
               AND expires_at <= {horizon}"
        );
        let collect = format!("DELETE FROM {locks} WHERE expires_at <= {NOW} - ?1");
        Statements {
            schema,
            acquire,
            live_expiry,
            renew,
            release,
            released_by,
            inspect,
            now: format!("SELECT {NOW}"),
            collect,
        }
    }
}

/// Whether `prefix` can name tables without quoting: an ASCII letter or
/// `_`, then up to 63 ASCII letters, digits or `_`.
pub(crate) fn valid_prefix(prefix: &str) -> bool {
    let mut chars = prefix.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && prefix.len() <= 64
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !prefix.to_ascii_lowercase().starts_with("sqlite_")
}
