#!/usr/bin/env bash
# Runs every test of the workspace, with all four backend features at once.
#
# It installs what the tests need that cargo does not:
# * DocumentDB (PostgreSQL 15 + pg_documentdb + its MongoDB-wire gateway), the
#   MongoDB engine of the MongoDB tests, the CLI tests and the chaos suite:
#   built once by scripts/ensure-documentdb.sh from ../shared/vendor/ (root,
#   apt packages, about 3 minutes on 2 cores the first time), then reused;
# * a FerretDB v1.24.2 binary (built once from the Go module proxy by
#   scripts/ensure-ferretdb.sh), for what needs a server that is NOT atomic
#   across connections: the refusal of such a server, and the chaos suite's
#   negative control.
# The tests themselves start their servers on free loopback ports with their
# data in temporary directories and telemetry off, and stop them when they
# end. The ArangoDB tests run against the in-repository emulator, or against a
# real ArangoDB if SHYLOCK_ARANGO_URL is set; the MongoDB tests run against a
# real MongoDB instead if SHYLOCK_MONGODB_URI is set.
#
# Extra arguments go to `cargo test` (for example a test name filter).
#
# Then it runs the loom models of shylock-core's coordination code
# (shylock-core/src/loom_tests.rs; about a minute built from scratch, seconds
# after), built with `--cfg loom` in a target directory of their own so that
# the main build's cache stays valid.
set -euo pipefail
cd "$(dirname "$0")/.."

SHYLOCK_FERRETDB_BIN="$(bash scripts/ensure-ferretdb.sh)"
export SHYLOCK_FERRETDB_BIN
echo "FerretDB: $SHYLOCK_FERRETDB_BIN" >&2
DOCUMENTDB_GATEWAY="$(bash scripts/ensure-documentdb.sh build)"
echo "DocumentDB gateway: $DOCUMENTDB_GATEWAY" >&2

cargo test --workspace --all-features "$@"

# The cases where a caught panic was once an answer (issue 18, item 5), in a
# build whose panics abort the process.
cargo run --quiet --profile panic-abort -p shylock-core --example panic_abort

# The loom models of the core's coordination (issue 18): their own build
# (`--cfg loom`) in their own target directory, so the main build is kept.
RUSTFLAGS="${RUSTFLAGS:-} --cfg loom" CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}/loom" \
    cargo test -p shylock-core --release --lib loom
