//! MongoDB backend for shylock (docs: see below).
#![cfg_attr(not(any(feature = "async", feature = "sync")), allow(dead_code))]

mod commands;
mod options;
#[cfg(feature = "async")]
mod async_backend;
#[cfg(feature = "sync")]
pub mod sync;

pub use options::{DEFAULT_COLLECTION, DEFAULT_TTL_GRACE, MIN_TTL_GRACE, MongoOptions};
#[cfg(feature = "async")]
pub use async_backend::MongoBackend;
