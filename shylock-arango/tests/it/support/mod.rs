//! Test support: the ArangoDB HTTP API emulator (its own crate,
//! `shylock-arango-emulator`) and the choice of server.
#![allow(dead_code)]

pub use shylock_arango_emulator::{aql, emulator};
pub mod target;
