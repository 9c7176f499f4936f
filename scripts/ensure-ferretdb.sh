#!/usr/bin/env bash
# Print the path of a working FerretDB v1.24.2 binary (the MongoDB-protocol
# server that shylock-mongo's tests run against), building it first if there
# is none.
#
#   FERRETDB=$(scripts/ensure-ferretdb.sh)
#
# Progress goes to stderr, the path (only) to stdout.
#
# Order of preference:
#   1. $SHYLOCK_FERRETDB_BIN, if it is a working v1.24.2 binary;
#   2. $(go env GOBIN)/ferretdb, or $(go env GOPATH)/bin/ferretdb, if it is one;
#   3. otherwise build it into that directory (needs Go and the Go module proxy).
#
# Why not plain `go install github.com/FerretDB/FerretDB/cmd/ferretdb@v1.24.2`:
# the binary it produces panics at start ("Invalid build/version/version.txt
# file content"), because the module zip lacks the generated
# build/version/version.txt that FerretDB's main package requires. So this
# script downloads the module with `go mod download` (into the ordinary module
# cache, checked against FerretDB's own go.sum for its dependencies), copies it
# to a temporary directory, writes version.txt and builds `./cmd/ferretdb`
# there. A binary that panics this way is detected and rebuilt.
#
# GONOSUMDB=github.com/FerretDB skips only the checksum-database lookup for
# FerretDB's own module (on machines that cannot reach sum.golang.org).
set -euo pipefail

VERSION=v1.24.2
MODULE=github.com/FerretDB/FerretDB

log() { echo "ensure-ferretdb: $*" >&2; }

# A binary "works" if it runs and reports the expected version.
# (The output is read whole first: with pipefail, `grep -q` closing the pipe
# early would fail the check at random.)
works() {
    local out
    [ -x "$1" ] && out=$("$1" --version 2>/dev/null) && grep -qx "version: $VERSION" <<<"$out"
}

if [ -n "${SHYLOCK_FERRETDB_BIN:-}" ]; then
    if works "$SHYLOCK_FERRETDB_BIN"; then
        echo "$SHYLOCK_FERRETDB_BIN"
        exit 0
    fi
    log "SHYLOCK_FERRETDB_BIN=$SHYLOCK_FERRETDB_BIN is not a working FerretDB $VERSION; ignoring it"
fi

if ! command -v go >/dev/null 2>&1; then
    log "Go is not installed; install Go (1.21 or later) or set SHYLOCK_FERRETDB_BIN"
    exit 1
fi

bindir=$(go env GOBIN)
if [ -z "$bindir" ]; then
    bindir="$(go env GOPATH | cut -d: -f1)/bin"
fi
bin="$bindir/ferretdb"

if works "$bin"; then
    echo "$bin"
    exit 0
fi
if [ -e "$bin" ]; then
    log "$bin exists but is not a working FerretDB $VERSION (built by plain 'go install'?); rebuilding it"
fi

log "downloading $MODULE@$VERSION"
dir=$(GONOSUMDB=github.com/FerretDB GOFLAGS=-mod=mod go mod download -json "$MODULE@$VERSION" |
    sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p')
if [ -z "$dir" ] || [ ! -d "$dir" ]; then
    log "go mod download did not give a source directory for $MODULE@$VERSION"
    exit 1
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/ensure-ferretdb.XXXXXX")
tmpbin="$bindir/.ferretdb.$$"
trap 'chmod -R u+w "$work" 2>/dev/null; rm -rf "$work" "$tmpbin"' EXIT
cp -R "$dir" "$work/src"
chmod -R u+w "$work/src"
echo "$VERSION" >"$work/src/build/version/version.txt"

log "building FerretDB $VERSION (the first build takes a few minutes)"
mkdir -p "$bindir"
(
    cd "$work/src"
    GONOSUMDB=github.com/FerretDB GOFLAGS=-mod=mod go build -buildvcs=false -o "$tmpbin" ./cmd/ferretdb
)
if ! works "$tmpbin"; then
    log "the freshly built binary does not report version $VERSION"
    exit 1
fi
mv -f "$tmpbin" "$bin"  # same directory: an atomic replacement
log "installed $bin"
echo "$bin"
