#!/usr/bin/env bash
# Packages every published crate of the workspace (`cargo package`), then
# builds each package's tests from the package alone: the .crate files are
# unpacked side by side in a scratch directory, the shylock crates among
# their dependencies are patched to those unpacked packages (as crates.io
# would serve them), and `cargo test --no-run --all-features` runs in each.
# Nothing is published. Usage: bash scripts/package-check.sh
set -euo pipefail
cd "$(dirname "$0")/.."

published=$(cargo metadata --no-deps --format-version 1 | python3 -c '
import json, sys
meta = json.load(sys.stdin)
for p in meta["packages"]:
    if p.get("publish") is None or p["publish"]:
        print(p["name"])
')
echo "published crates: $(echo $published | tr '\n' ' ')" >&2

args=()
for p in $published; do args+=(-p "$p"); done
cargo package --no-verify --allow-dirty "${args[@]}"

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
for p in $published; do
    tar -xzf "target/package/$p-0.1.0.crate" -C "$scratch"
done

patch="[patch.crates-io]"
for p in $published; do
    patch+=$'\n'"$p = { path = \"$scratch/$p-0.1.0\" }"
done

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
for p in $published; do
    dir="$scratch/$p-0.1.0"
    printf '\n%s\n' "$patch" >> "$dir/Cargo.toml"
    echo "== $p: tests build from the package" >&2
    (cd "$dir" && cargo test --no-run --all-features --quiet)
done
echo "every published crate packages, and its tests build from the package" >&2
