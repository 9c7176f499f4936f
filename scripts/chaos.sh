#!/usr/bin/env bash
# The fault-injection suite (issue 9): worker processes of both API forms
# contend for one lock while the controller kills (-9) and freezes (SIGSTOP)
# them, kills and restarts FerretDB, blackholes, delays and resets its
# connections through the serializing proxy, and freezes the ArangoDB
# emulator; a checker reads the workers' logs (CLOCK_MONOTONIC) and fails on
# overlapping critical sections, falling or repeated fencing tokens, and gaps
# longer than lease + 1 s outside server outages.
#
#   scripts/chaos.sh            the CI size, 10,000 acquisitions: 2,000 on FerretDB, 8,000 on the emulator (as `cargo test -p shylock-chaos`)
#   scripts/chaos.sh --long     100,000 acquisitions: 50,000 on each server
#
# Extra arguments go to the controller (see shylock-chaos/src/main.rs), for
# example `--target mongo`, `--acquisitions N`, `--max-seconds N`.
# Everything runs on 127.0.0.1; every process started is stopped by its PID.
set -euo pipefail
cd "$(dirname "$0")/.."

SHYLOCK_FERRETDB_BIN="$(bash scripts/ensure-ferretdb.sh)"
export SHYLOCK_FERRETDB_BIN

args=()
long=0
for a in "$@"; do
  if [ "$a" = --long ]; then long=1; else args+=("$a"); fi
done

cargo build -p shylock-chaos --bins
bin="${CARGO_TARGET_DIR:-target}/debug/shylock-chaos"
if [ "$long" = 1 ]; then
  "$bin" --target all --acquisitions 50000 --faults-per-kind 50 --max-seconds 2400 ${args[@]+"${args[@]}"}
else
  "$bin" --target mongo --acquisitions 2000 --max-seconds 150 ${args[@]+"${args[@]}"}
  "$bin" --target emulator --acquisitions 8000 --max-seconds 200 ${args[@]+"${args[@]}"}
  "$bin" --target pass-through --acquisitions 1000 --max-seconds 30 ${args[@]+"${args[@]}"}
fi
