//! shylock: distributed locks (facade).
pub use shylock_core::*;
