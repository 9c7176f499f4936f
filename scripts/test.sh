#!/usr/bin/env bash
# Runs every test of the workspace, with all four backend features at once.
#
# It installs what the tests need that cargo does not: a FerretDB v1.24.2
# binary (the MongoDB-protocol server of the MongoDB tests; built once from the
# Go module proxy by scripts/ensure-ferretdb.sh, then reused). The tests themselves start FerretDB on free
# loopback ports with their data in temporary directories and telemetry off,
# and stop it when they end. The ArangoDB tests run against the in-repository
# emulator, or against a real ArangoDB if SHYLOCK_ARANGO_URL is set; the
# MongoDB tests run against a real MongoDB instead if SHYLOCK_MONGODB_URI is set.
#
# Extra arguments go to `cargo test` (for example a test name filter).
set -euo pipefail
cd "$(dirname "$0")/.."

SHYLOCK_FERRETDB_BIN="$(bash scripts/ensure-ferretdb.sh)"
export SHYLOCK_FERRETDB_BIN
echo "FerretDB: $SHYLOCK_FERRETDB_BIN" >&2

cargo test --workspace --all-features "$@"
