//! shylock-core
pub mod backend;
mod error;
pub mod types;
pub use error::*;
pub use types::*;
