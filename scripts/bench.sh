#!/usr/bin/env bash
# The benchmarks (issue 5), in one command, from a fresh clone:
#
#   scripts/bench.sh            # scenarios A-D on memory, DocumentDB, FerretDB
#                               # and the ArangoDB emulator, D on memory-slow,
#                               # with the original Python shylock beside ours
#                               # on DocumentDB and on FerretDB; about 14
#                               # minutes on 2 idle CPUs (longer on a loaded
#                               # machine), plus DocumentDB's first build (6-8
#                               # minutes, once)
#   scripts/bench.sh --quick    # the same, shorter (about 6 to 7 minutes)
#
# Columns of BENCHMARKS.md: memory | memory-slow | documentdb | ferretdb |
# original on documentdb | original on ferretdb | arango-emulator.
# memory-slow is the in-memory backend with 50 ms added to every backend call
# (issue 18: 10,000 blocking guards held while every call is slow); only D
# runs on it, acquiring and releasing 64 at a time (--d-acquirers).
# DocumentDB (PostgreSQL 15 + pg_documentdb + its MongoDB-wire gateway) is the
# first MongoDB-protocol column: it is atomic across connections, like
# MongoDB, and the targets for A-C are judged against the original on it
# first. FerretDB v1 is not atomic
# across connections (only there does the benchmark opt in with
# `MongoOptions::allow_non_atomic_server`, and C counts its double grants);
# its D holds 500 locks, not 10000 (--d-locks-ferretdb).
#
# Any other arguments go to the benchmark program (see `--help` of
# `cargo run --release -p shylock-examples --example bench -- --help`), for
# example `--backend documentdb --documentdb-uri mongodb://USER:PASS@HOST/`
# for your own DocumentDB, `--backend mongo --mongo-uri mongodb://HOST/` for
# your own MongoDB, or `--backend arango --arango-url http://HOST:8529 ...`.
#
# What it does:
#   1. makes a Python virtualenv with the original (pinned in
#      examples/bench/requirements.txt) under the cargo target directory
#      (bench-venv), once;
#   2. finds or builds FerretDB v1.24.2 (scripts/ensure-ferretdb.sh);
#   3. builds DocumentDB once (`bash scripts/ensure-documentdb.sh build`:
#      needs root for apt-get and for installing the extensions; cached);
#   4. builds the ArangoDB emulator and the benchmark (release);
#   5. runs the benchmark, which starts DocumentDB (through shylock-testkit's
#      harness, i.e. `scripts/ensure-documentdb.sh start`: a SCRAM user,
#      `directConnection=true`), FerretDB and the emulator on free 127.0.0.1
#      ports (temporary directories, telemetry off) and stops them at the
#      end; the original gets the same connection strings (DocumentDB's with
#      its credentials); the markdown table goes to stdout and to
#      BENCHMARKS.md (or to $SHYLOCK_BENCH_OUT).
#
# Failed lock operations (timeouts, backend errors, lost leases) are counted
# in each scenario's "errors" row and the run goes on. The command exits
# non-zero (after writing the table) only if a whole scenario of shylock's
# could not run; the notes at the end of the table say why. The original's
# failures are figures, not failures of the run: in the table and the notes,
# with the exception that ended a worker process (on DocumentDB, the
# original's C can die of the server's error 112, "Could not acquire lock
# for operation due to deadlock", which it does not retry). Scenario D holds
# the locks through the async API and through the blocking API, each in a
# child process of its own, and reports the threads and memory of that
# process.
set -euo pipefail
cd "$(dirname "$0")/.."

target_dir="${CARGO_TARGET_DIR:-target}"
venv="$target_dir/bench-venv"
requirements=examples/bench/requirements.txt
out="${SHYLOCK_BENCH_OUT:-BENCHMARKS.md}"

log() { echo "bench.sh: $*" >&2; }

# 1. The original, in its own virtualenv.
if [ ! -x "$venv/bin/python" ] || ! cmp -s "$requirements" "$venv/requirements.installed"; then
    log "making the virtualenv $venv with $(python3 --version 2>&1)"
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$requirements"
    cp "$requirements" "$venv/requirements.installed"
fi

# 2. FerretDB (the MongoDB-protocol server).
SHYLOCK_FERRETDB_BIN="$(bash scripts/ensure-ferretdb.sh)"
export SHYLOCK_FERRETDB_BIN
log "FerretDB: $SHYLOCK_FERRETDB_BIN"

# 3. DocumentDB (the MongoDB-protocol server that is atomic across
# connections), built once and cached; the benchmark starts it.
documentdb_gateway="$(bash scripts/ensure-documentdb.sh build)"
log "DocumentDB: $documentdb_gateway"

# 4. Build.
cargo build --release -p shylock-arango-emulator
cargo build --release -p shylock-examples --example bench --features mongo,arango
export SHYLOCK_ARANGO_EMULATOR_BIN="$target_dir/release/shylock-arango-emulator"

# 5. Run (all backends unless a --backend is given: --all, memory-slow
# among them).
args=("$@")
case " $* " in
    *" --backend "* | *" --all "*) ;;
    *) args=(--all "${args[@]}") ;;
esac
export SHYLOCK_BENCH_PYTHON="$venv/bin/python"
export SHYLOCK_BENCH_COMMAND="scripts/bench.sh${*:+ $*}"
"$target_dir/release/examples/bench" "${args[@]}" --out "$out"
log "wrote $out"
