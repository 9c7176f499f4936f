#!/usr/bin/env bash
# DocumentDB for shylock's tests: the open-source (MIT) engine of Azure Cosmos
# DB for MongoDB vCore, i.e. PostgreSQL 15 + the pg_documentdb_core and
# pg_documentdb extensions + the pg_documentdb_gw MongoDB-wire gateway. Unlike
# FerretDB v1, its single-document findAndModify is atomic across connections.
#
#   scripts/ensure-documentdb.sh build            # install + build once; prints the gateway's path
#   scripts/ensure-documentdb.sh start [DIR]      # start one server, data in DIR (default: a new
#                                                 # temporary directory); prints the connection string
#   scripts/ensure-documentdb.sh stop DIR         # stop what `start DIR` started (by PID)
#   scripts/ensure-documentdb.sh kill DIR gateway|postgres   # kill -9 one part (a crash)
#   scripts/ensure-documentdb.sh restart DIR      # start again whatever is down: same ports, same data
#   scripts/ensure-documentdb.sh status DIR
#
# `start` writes DIR/server.env (MONGO_PORT, PG_PORT, URI, TLS_URI, CA_FILE,
# GATEWAY_PID) for test harnesses; shylock-testkit's `documentdb` module drives
# this script. Progress goes to stderr, the one answer to stdout.
#
# Building needs root (apt-get, `make install` into PostgreSQL 15's
# directories) and cargo. Sources: the tarballs in ../shared/vendor/ beside the
# repository ($SHYLOCK_VENDOR_DIR) when they are there, else the pinned public
# sources (DOCDB_COMMIT, PGVECTOR_VERSION, PGCRON_VERSION below). What it
# builds is cached: the extensions are installed into PostgreSQL's own
# directories, the gateway binary into $SHYLOCK_CACHE_DIR (default
# ~/.cache/shylock/documentdb-<commit>). First build on 2 cores: about 3
# minutes (measured 146 s for the extensions and the gateway; add the apt
# packages and the gateway's crates on a new machine); later starts take about
# 2 seconds.
#
# Servers listen on 127.0.0.1 only, on free ports (or MONGO_PORT / PG_PORT),
# with their data in DIR, no telemetry, and a SCRAM user
# $MONGO_USER:$MONGO_PASS (default shylock:shylock-test). The gateway serves
# plain TCP, or only TLS with SHYLOCK_DOCUMENTDB_TLS=1 at `start` (its
# certificate is signed by a test CA made per server: DIR/gw/ca.pem; the
# connection string printed then carries tls=true&tlsCAFile=...).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DOCDB_COMMIT=b2e220c4
PGVECTOR_VERSION=0.8.0
PGCRON_VERSION=1.6.3
VENDOR=${SHYLOCK_VENDOR_DIR:-$REPO/../shared/vendor}
CACHE=${SHYLOCK_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/shylock/documentdb-$DOCDB_COMMIT}
GWBIN=$CACHE/documentdb_gateway
PGBIN=/usr/lib/postgresql/15/bin
PGSHARE=/usr/share/postgresql/15/extension
PGLIB=/usr/lib/postgresql/15/lib
MONGO_USER=${MONGO_USER:-shylock}
MONGO_PASS=${MONGO_PASS:-shylock-test}
JOBS=${JOBS:-$(nproc 2>/dev/null || echo 2)}

log() { echo "ensure-documentdb: $*" >&2; }
die() { log "$*"; exit 1; }
as_pg() { runuser -u postgres -- "$@"; }

# ---------------------------------------------------------------------------
# Building (once)
# ---------------------------------------------------------------------------

APT_PKGS="postgresql-15 postgresql-server-dev-15 postgresql-15-postgis-3 postgresql-15-rum
  libbson-dev libintelrdfpmath-dev libpcre2-dev libkrb5-dev libssl-dev pkg-config
  build-essential openssl curl ca-certificates procps"

install_packages() {
    local missing=() p
    for p in $APT_PKGS; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
    done
    if ((${#missing[@]})); then
        [ "$(id -u)" = 0 ] || die "needs root to install ${missing[*]}"
        log "installing ${missing[*]}"
        apt-get update -qq >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" \
            >"$CACHE/apt.log" 2>&1 || { tail -20 "$CACHE/apt.log" >&2; die "apt-get install failed"; }
    fi
    # Debian's pg_cron 1.4 refuses the "2 seconds" schedules documentdb makes.
    if dpkg-query -W -f='${Status}' postgresql-15-cron 2>/dev/null | grep -q 'ok installed'; then
        apt-get remove -y -qq postgresql-15-cron >&2
    fi
}

# Source tree NAME from the vendored tarball, else from its public repository.
fetch_source() { # NAME TARBALL URL
    local name=$1 tarball=$2 url=$3 dir=$CACHE/src/$1
    [ -f "$dir/.complete" ] && { echo "$dir"; return; }
    rm -rf "$dir"
    mkdir -p "$dir"
    if [ -f "$VENDOR/$tarball" ]; then
        tar -xzf "$VENDOR/$tarball" -C "$dir" --strip-components=1
    else
        log "$VENDOR/$tarball is not there; downloading $url"
        curl -fsSL "$url" | tar -xz -C "$dir" --strip-components=1
    fi
    touch "$dir/.complete"
    echo "$dir"
}

build_pgvector() {
    [ -f "$PGSHARE/vector.control" ] && return
    local dir
    dir=$(fetch_source pgvector "pgvector-$PGVECTOR_VERSION.tar.gz" \
        "https://github.com/pgvector/pgvector/archive/refs/tags/v$PGVECTOR_VERSION.tar.gz")
    log "building pgvector $PGVECTOR_VERSION"
    { make -C "$dir" -j"$JOBS" OPTFLAGS="" with_llvm=no && make -C "$dir" OPTFLAGS="" with_llvm=no install; } \
        >"$CACHE/pgvector.log" 2>&1 || { tail -20 "$CACHE/pgvector.log" >&2; die "pgvector did not build"; }
}

build_pgcron() {
    grep -qs "default_version = '1.6'" "$PGSHARE/pg_cron.control" && return
    local dir
    dir=$(fetch_source pg_cron "pg_cron-$PGCRON_VERSION.tar.gz" \
        "https://github.com/citusdata/pg_cron/archive/refs/tags/v$PGCRON_VERSION.tar.gz")
    log "building pg_cron $PGCRON_VERSION"
    { make -C "$dir" -j"$JOBS" with_llvm=no && make -C "$dir" with_llvm=no install; } \
        >"$CACHE/pg_cron.log" 2>&1 || { tail -20 "$CACHE/pg_cron.log" >&2; die "pg_cron did not build"; }
}

docdb_source() {
    fetch_source documentdb documentdb.tar.gz \
        "https://github.com/microsoft/documentdb/archive/$DOCDB_COMMIT.tar.gz"
}

build_extensions() {
    [ -f "$PGSHARE/documentdb.control" ] && [ -f "$PGLIB/pg_documentdb.so" ] &&
        [ -f "$PGLIB/pg_documentdb_core.so" ] && return
    local dir d
    dir=$(docdb_source)
    # The Makefile asks pkg-config for `intelmathlib`; Debian ships it as
    # libbidgcc000.a. Debian 12's libbson (1.23) lacks BSON_SUBTYPE_SENSITIVE.
    mkdir -p "$CACHE/pkgconfig"
    printf '%s\n' 'Name: intelmathlib' 'Description: Intel decimal floating point (Debian)' \
        'Version: 2.0' 'Cflags:' 'Libs: -l:libbidgcc000.a' >"$CACHE/pkgconfig/intelmathlib.pc"
    for d in pg_documentdb_core pg_documentdb; do
        log "building $d"
        {
            PKG_CONFIG_PATH="$CACHE/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}" \
                make -C "$dir/$d" -j"$JOBS" with_llvm=no "COPT=-DBSON_SUBTYPE_SENSITIVE=8 -Wno-error=switch" &&
                PKG_CONFIG_PATH="$CACHE/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}" \
                    make -C "$dir/$d" with_llvm=no "COPT=-DBSON_SUBTYPE_SENSITIVE=8 -Wno-error=switch" install
        } >"$CACHE/$d.log" 2>&1 || { tail -30 "$CACHE/$d.log" >&2; die "$d did not build"; }
    done
}

build_gateway() {
    [ -x "$GWBIN" ] && return
    command -v cargo >/dev/null || die "cargo is needed to build the DocumentDB gateway"
    local dir
    dir=$(docdb_source)
    log "building the gateway (cargo build --release; about 2-4 minutes on 2 cores, once)"
    (cd "$dir/pg_documentdb_gw" &&
        CARGO_TARGET_DIR="$CACHE/gateway-target" cargo build --release --locked -j "$JOBS") \
        >"$CACHE/gateway.log" 2>&1 || { tail -30 "$CACHE/gateway.log" >&2; die "the gateway did not build"; }
    install -m 755 "$CACHE/gateway-target/release/documentdb_gateway" "$GWBIN.tmp"
    mv -f "$GWBIN.tmp" "$GWBIN"
    rm -rf "$CACHE/gateway-target" # 1-2 GB of intermediate files
}

build() {
    mkdir -p "$CACHE"
    # One build at a time (several test binaries may ask at once).
    exec 9>"$CACHE/.lock"
    flock 9
    local t0=$SECONDS
    install_packages
    build_pgvector
    build_pgcron
    build_extensions
    build_gateway
    flock -u 9
    exec 9>&-
    ((SECONDS - t0 > 2)) && log "built in $((SECONDS - t0)) s"
    return 0
}

# ---------------------------------------------------------------------------
# Running
# ---------------------------------------------------------------------------

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# A free port below the kernel's ephemeral range (a port in that range can be
# taken at any moment by an outgoing connection's local end).
free_port() {
    local low p
    low=$(cut -f1 /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
    ((low > 11000)) || low=32768
    for _ in $(seq 1 200); do
        p=$((10000 + RANDOM % (low - 10000)))
        port_open "$p" || { echo "$p"; return; }
    done
    die "no free port found"
}

load_env() { # DIR
    [ -f "$1/server.env" ] || die "$1 has no server.env: was it started by '$0 start $1'?"
    # shellcheck disable=SC1091
    . "$1/server.env"
}

pg_running() { as_pg "$PGBIN/pg_ctl" -D "$DIR/pgdata" status >/dev/null 2>&1; }
gw_running() { [ -f "$DIR/gw/gateway.pid" ] && kill -0 "$(cat "$DIR/gw/gateway.pid")" 2>/dev/null; }

psql_pg() {
    as_pg "$PGBIN/psql" -h "$DIR/run" -p "$PG_PORT" -U postgres -d postgres -X -q -v ON_ERROR_STOP=1 "$@"
}

init_postgres() {
    install -d -o postgres -g postgres -m 700 "$DIR/pgdata"
    as_pg "$PGBIN/initdb" -D "$DIR/pgdata" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 \
        >"$DIR/initdb.log" 2>&1 || { cat "$DIR/initdb.log" >&2; die "initdb failed"; }
    cat >>"$DIR/pgdata/postgresql.conf" <<EOF
# shylock: scripts/ensure-documentdb.sh
listen_addresses = '127.0.0.1'   # documentdb's background jobs and pg_cron connect over TCP
unix_socket_directories = '$DIR/run'
unix_socket_permissions = 0700
shared_preload_libraries = 'pg_cron, pg_documentdb_core, pg_documentdb'
cron.database_name = 'postgres'
documentdb.enableBackgroundWorker = true
documentdb.enableBackgroundWorkerJobs = true
ssl = off
max_connections = 300
fsync = off                      # test data only: a machine crash loses nothing that matters
EOF
}

start_postgres() {
    install -d -o postgres -g postgres -m 755 "$DIR/run"
    touch "$DIR/postgres.log" && chown postgres "$DIR/postgres.log"
    pg_running && return
    # The port is given here, not in postgresql.conf, so that a start that
    # lost its port to another process can try another.
    as_pg "$PGBIN/pg_ctl" -D "$DIR/pgdata" -l "$DIR/postgres.log" -o "-p $PG_PORT" -w -t 60 start \
        >/dev/null || { tail -20 "$DIR/postgres.log" >&2; return 1; }
    if [ ! -f "$DIR/.extension" ]; then
        # (Explicit `|| die`: this function runs in `if` conditions too,
        # where `set -e` does not apply.)
        psql_pg -c "CREATE EXTENSION IF NOT EXISTS documentdb CASCADE;" >&2 ||
            die "CREATE EXTENSION documentdb failed (see $DIR/postgres.log)"
        psql_pg -v u="$MONGO_USER" -v p="$MONGO_PASS" >&2 <<'EOF' || die "creating the user failed"
CREATE ROLE :"u" WITH LOGIN INHERIT PASSWORD :'p' IN ROLE documentdb_admin_role;
ALTER ROLE :"u" CREATEROLE;
GRANT :"u" TO postgres WITH ADMIN OPTION;
EOF
        touch "$DIR/.extension"
    fi
}

make_certificates() {
    [ -f "$DIR/gw/cert.pem" ] && return
    # A test CA and a server certificate for 127.0.0.1 and localhost (the
    # gateway's release build refuses to start without one, even for plain TCP).
    (
        cd "$DIR/gw"
        openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=shylock test CA" \
            -keyout ca.key -out ca.pem
        openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" -keyout key.pem -out cert.csr
        printf '%s\n' "subjectAltName=DNS:localhost,IP:127.0.0.1" "basicConstraints=CA:FALSE" \
            "keyUsage=digitalSignature,keyEncipherment" "extendedKeyUsage=serverAuth" >cert.ext
        openssl x509 -req -in cert.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 3650 \
            -extfile cert.ext -out cert.pem
    ) >/dev/null 2>&1 || die "openssl could not make the test certificates"
}

start_gateway() {
    gw_running && return
    make_certificates
    cat >"$DIR/gw/setup.json" <<EOF
{
  "NodeHostName": "localhost",
  "BlockedRolePrefixes": ["documentdb", "citus", "pg", "internal_role"],
  "PostgresSystemUser": "postgres",
  "PostgresHostName": "$DIR/run",
  "PostgresPort": $PG_PORT,
  "PostgresDatabase": "postgres",
  "GatewayListenPort": $MONGO_PORT,
  "UseLocalHost": true,
  "EnforceSslTcp": $([ "${TLS:-0}" = 1 ] && echo true || echo false),
  "TransactionTimeoutSecs": 30,
  "CursorTimeoutSecs": 600,
  "PostgresCommandTimeoutSecs": 120,
  "CertificateOptions": { "CertType": "PemFile", "FilePath": "$DIR/gw/cert.pem", "KeyFilePath": "$DIR/gw/key.pem" }
}
EOF
    port_open "$MONGO_PORT" && { log "port $MONGO_PORT is taken by another process"; return 1; }
    (cd "$DIR/gw" && exec "$GWBIN" "$DIR/gw/setup.json" >>"$DIR/gateway.log" 2>&1 </dev/null) &
    echo $! >"$DIR/gw/gateway.pid"
    for _ in $(seq 1 300); do
        port_open "$MONGO_PORT" && return
        gw_running || { tail -20 "$DIR/gateway.log" >&2; log "the gateway exited while starting"; return 1; }
        sleep 0.1
    done
    log "the gateway did not open port $MONGO_PORT within 30 s"
    kill_gateway
    return 1
}

write_env() {
    local base="mongodb://$MONGO_USER:$MONGO_PASS@127.0.0.1:$MONGO_PORT/?directConnection=true"
    local uri=$base
    [ "$TLS" = 1 ] && uri="$base&tls=true&tlsCAFile=$DIR/gw/ca.pem"
    cat >"$DIR/server.env" <<EOF
MONGO_PORT=$MONGO_PORT
PG_PORT=$PG_PORT
TLS=$TLS
URI='$uri'
CA_FILE='$DIR/gw/ca.pem'
EOF
}

start() {
    build
    DIR=${1:-$(mktemp -d "${TMPDIR:-/tmp}/shylock-documentdb.XXXXXX")}
    mkdir -p "$DIR/gw"
    DIR=$(cd "$DIR" && pwd)
    chmod 755 "$DIR" # PostgreSQL runs as `postgres`
    cd "$DIR"        # runuser'd commands must be able to stat their working directory
    if [ -f "$DIR/server.env" ]; then
        load_env "$DIR"
        start_postgres || die "PostgreSQL did not start on port $PG_PORT"
        start_gateway || die "the gateway did not start on port $MONGO_PORT"
    else
        TLS=${SHYLOCK_DOCUMENTDB_TLS:-0}
        init_postgres
        # Free ports, and others if one is taken between the choice and the
        # start (several servers may start at once).
        local attempt
        for attempt in 1 2 3 4 5; do
            MONGO_PORT=${MONGO_PORT:-$(free_port)}
            PG_PORT=${PG_PORT:-$(free_port)}
            [ "$MONGO_PORT" != "$PG_PORT" ] || PG_PORT=$(free_port)
            write_env
            if ! start_postgres; then
                log "PostgreSQL did not start on port $PG_PORT (attempt $attempt)"
                PG_PORT=
                continue
            fi
            start_gateway && break
            log "the gateway did not start on port $MONGO_PORT (attempt $attempt)"
            MONGO_PORT=
        done
        gw_running || die "DocumentDB did not start in $DIR"
    fi
    load_env "$DIR"
    echo "$URI"
}

# kill -9 the postmaster and every process it started (a crash).
kill_postgres() {
    local pid
    pid=$(head -1 "$DIR/pgdata/postmaster.pid" 2>/dev/null) || return 0
    [ -n "$pid" ] || return 0
    pkill -KILL -P "$pid" 2>/dev/null || true
    kill -KILL "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do
        kill -0 "$pid" 2>/dev/null || pgrep -P "$pid" >/dev/null || break
        sleep 0.05
    done
    pkill -KILL -P "$pid" 2>/dev/null || true
}

kill_gateway() {
    gw_running || return 0
    local pid
    pid=$(cat "$DIR/gw/gateway.pid")
    kill -KILL "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
}

stop() {
    if gw_running; then
        local pid
        pid=$(cat "$DIR/gw/gateway.pid")
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$DIR/gw/gateway.pid"
    if pg_running; then
        as_pg "$PGBIN/pg_ctl" -D "$DIR/pgdata" -m immediate -w -t 30 stop >/dev/null 2>&1 || kill_postgres
    fi
}

with_dir() {
    [ -n "${1:-}" ] || die "usage: $0 ${CMD} DIR"
    DIR=$(cd "$1" && pwd) || die "no such directory: $1"
    cd "$DIR"
    load_env "$DIR"
}

CMD=${1:-}
shift || true
case "$CMD" in
build)
    build
    echo "$GWBIN"
    ;;
start) start "${1:-}" ;;
stop)
    with_dir "${1:-}"
    stop
    ;;
kill)
    with_dir "${1:-}"
    case "${2:-}" in
    gateway) kill_gateway ;;
    postgres) kill_postgres ;;
    *) die "usage: $0 kill DIR gateway|postgres" ;;
    esac
    ;;
restart)
    with_dir "${1:-}"
    build
    start_postgres || die "PostgreSQL did not restart on port $PG_PORT"
    start_gateway || die "the gateway did not restart on port $MONGO_PORT"
    echo "$URI"
    ;;
status)
    with_dir "${1:-}"
    if pg_running; then echo "postgres: running on $PG_PORT"; else echo "postgres: stopped"; fi
    if gw_running; then echo "gateway: running on $MONGO_PORT"; else echo "gateway: stopped"; fi
    ;;
*)
    sed -n '2,33p' "$0" >&2
    exit 2
    ;;
esac
