#!/usr/bin/env bash
# The fault-injection suite (issue 9): worker processes of both API forms
# contend for one lock while the controller kills (-9) and freezes (SIGSTOP)
# them, kills and restarts DocumentDB's gateway and its PostgreSQL,
# blackholes, delays and resets their connections through the pass-through
# proxy (every worker on its own connections), and freezes the ArangoDB
# emulator; a checker reads the workers' logs (CLOCK_MONOTONIC) and fails on
# overlapping critical sections, falling or repeated fencing tokens, and gaps
# longer than lease + 1 s outside server outages.
#
#   scripts/chaos.sh            the CI size, 13,000 acquisitions: 5,000 on DocumentDB, 8,000 on the emulator (as `cargo test -p shylock-chaos`)
#   scripts/chaos.sh --long     100,000 acquisitions on DocumentDB, then 50,000 on the emulator
#   --target mongo              FerretDB behind the serializing proxy (kills and restarts of FerretDB)
#
# Extra arguments go to the controller (see shylock-chaos/src/main.rs), for
# example `--target mongo`, `--acquisitions N`, `--max-seconds N`.
# Everything runs on 127.0.0.1; every process started is stopped by its PID.
set -euo pipefail
cd "$(dirname "$0")/.."

SHYLOCK_FERRETDB_BIN="$(bash scripts/ensure-ferretdb.sh)"
export SHYLOCK_FERRETDB_BIN
bash scripts/ensure-documentdb.sh build >/dev/null

args=()
long=0
for a in "$@"; do
  if [ "$a" = --long ]; then long=1; else args+=("$a"); fi
done

cargo build -p shylock-chaos --bins
bin="${CARGO_TARGET_DIR:-target}/debug/shylock-chaos"
if [ "$long" = 1 ]; then
  "$bin" --target documentdb --acquisitions 100000 --faults-per-kind 50 --max-seconds 4000 ${args[@]+"${args[@]}"}
  "$bin" --target emulator --acquisitions 50000 --faults-per-kind 50 --max-seconds 2400 ${args[@]+"${args[@]}"}
else
  "$bin" --target documentdb --acquisitions 5000 --max-seconds 300 ${args[@]+"${args[@]}"}
  "$bin" --target emulator --acquisitions 8000 --max-seconds 200 ${args[@]+"${args[@]}"}
  "$bin" --target pass-through --acquisitions 1000 --max-seconds 30 ${args[@]+"${args[@]}"}
fi
