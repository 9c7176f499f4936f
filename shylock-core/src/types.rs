//! Value types shared by the lock API and the backends.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::Error;

/// The longest lock name accepted, in bytes of UTF-8.
pub const MAX_NAME_BYTES: usize = 1024;

/// A validated lock name: any non-empty string of at most
/// [`MAX_NAME_BYTES`] bytes. Any Unicode content is allowed (including
/// characters that a database refuses in keys: backends map names to keys
/// themselves and keep the original name).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LockName(String);

impl LockName {
    /// Validate a name.
    ///
    /// # Errors
    /// [`Error::InvalidName`] if the name is empty or longer than
    /// [`MAX_NAME_BYTES`].
    pub fn new(name: impl Into<String>) -> Result<Self, Error> {
        let name = name.into();
        if name.is_empty() {
            return Err(Error::InvalidName {
                reason: "a lock name must not be empty".into(),
            });
        }
        if name.len() > MAX_NAME_BYTES {
            return Err(Error::InvalidName {
                reason: format!(
                    "a lock name may have at most {MAX_NAME_BYTES} bytes, this one has {}",
                    name.len()
                ),
            });
        }
        Ok(LockName(name))
    }

    /// The name as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for LockName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Display for LockName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for LockName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// An opaque owner id: 128 random bits, new for every acquisition, written
/// as 32 lowercase hex digits (after a label and a colon if the lock's
/// options set [`owner_label`](crate::LockOptions::owner_label)). Releases and renewals only ever act on a
/// record whose owner is the caller's.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct OwnerId(String);

impl OwnerId {
    /// A fresh random owner id.
    pub fn random() -> Self {
        OwnerId(format!("{:032x}", rand::random::<u128>()))
    }

    /// A fresh random owner id that starts with `label` and a colon, such
    /// as `web-1/4242:` followed by the 32 hex digits of [`random`]
    /// (see [`LockOptions::owner_label`](crate::LockOptions::owner_label)):
    /// the record then says which host or process holds a lock. The random
    /// part keeps every id unique whatever the label.
    ///
    /// [`random`]: OwnerId::random
    pub fn labelled(label: Option<&str>) -> Self {
        match label {
            Some(label) => OwnerId(format!("{label}:{:032x}", rand::random::<u128>())),
            None => OwnerId::random(),
        }
    }

    /// Wrap an owner id read back from a backend.
    pub fn from_string(id: impl Into<String>) -> Self {
        OwnerId(id.into())
    }

    /// The id as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for OwnerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "OwnerId({})", self.0)
    }
}

impl fmt::Display for OwnerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A fencing token: strictly greater than every token issued before for the
/// same lock name, across releases, expiries, takeovers and garbage
/// collection of the lock's record. Pass it to the resource you protect and
/// have it refuse writes carrying a smaller token than it has seen.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct FencingToken(pub u64);

impl FencingToken {
    /// The token as a number.
    pub fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for FencingToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// A point in time on the backend's clock: milliseconds since the Unix epoch.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct Timestamp(i64);

impl Timestamp {
    /// The Unix epoch.
    pub const EPOCH: Timestamp = Timestamp(0);

    /// From milliseconds since the Unix epoch.
    pub const fn from_millis(ms: i64) -> Self {
        Timestamp(ms)
    }

    /// Milliseconds since the Unix epoch.
    pub const fn as_millis(self) -> i64 {
        self.0
    }

    /// This machine's wall clock now (used only by backends that are their
    /// own server, such as the in-memory backend).
    pub fn local_now() -> Self {
        Self::from_system_time(SystemTime::now())
    }

    /// From a [`SystemTime`] (saturating).
    pub fn from_system_time(t: SystemTime) -> Self {
        match t.duration_since(UNIX_EPOCH) {
            Ok(d) => Timestamp(i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
            Err(e) => Timestamp(-i64::try_from(e.duration().as_millis()).unwrap_or(i64::MAX)),
        }
    }

    /// As a [`SystemTime`].
    pub fn to_system_time(self) -> SystemTime {
        if self.0 >= 0 {
            UNIX_EPOCH + Duration::from_millis(self.0.unsigned_abs())
        } else {
            UNIX_EPOCH - Duration::from_millis(self.0.unsigned_abs())
        }
    }

    /// `self + d`, saturating.
    pub fn saturating_add(self, d: Duration) -> Self {
        let ms = i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        Timestamp(self.0.saturating_add(ms))
    }

    /// `self - d`, saturating.
    pub fn saturating_sub(self, d: Duration) -> Self {
        let ms = i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        Timestamp(self.0.saturating_sub(ms))
    }

    /// How long from `earlier` to `self` (zero if `earlier` is later).
    pub fn since(self, earlier: Timestamp) -> Duration {
        Duration::from_millis(u64::try_from(self.0.saturating_sub(earlier.0)).unwrap_or(0))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}ms", self.0)
    }
}
