//! Test support: the ArangoDB HTTP API emulator and the choice of server.
#![allow(dead_code)]

pub mod aql;
pub mod emulator;
pub mod target;
