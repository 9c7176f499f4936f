//! Test support for shylock (no dependency on shylock's own crates):
//!
//! * [`documentdb`]: a DocumentDB server (PostgreSQL + `pg_documentdb` + its
//!   MongoDB-wire gateway, atomic across connections) on free loopback ports,
//!   started and stopped through `scripts/ensure-documentdb.sh`; `kill -9` of
//!   the gateway or of PostgreSQL and restart on the same data.
//! * [`ferretdb`]: a FerretDB v1.24.2 process on a free loopback port with its
//!   data in a temporary directory; `kill -9` and restart on the same data;
//!   stopped on drop.
//! * [`proxy`]: a MongoDB wire-protocol proxy that forwards the requests of
//!   every client connection, one at a time, over ONE upstream connection (so
//!   FerretDB, whose conditional updates are not atomic across connections,
//!   behaves as one linearizable server for any number of processes), and
//!   injects faults on command: delay, blackhole, connection resets, server
//!   errors in place of answers, and lost answers. A pass-through mode (one
//!   upstream connection per client) is the negative control.

pub mod documentdb;
pub mod ferretdb;
pub mod proxy;
mod wire;
