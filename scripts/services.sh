#!/usr/bin/env bash
# Start the servers the test suite and benchmarks talk to, on 127.0.0.1 only.
#   scripts/services.sh postgres   -> prints DJQ_TEST_POSTGRES_URL=...
# Installs the server with apt-get when it is missing (needs root, as in CI).
set -euo pipefail

STATE_DIR="${DJQ_SERVICES_DIR:-/tmp/djq-services}"
mkdir -p "$STATE_DIR"

apt_install() {
    if [ -z "${DJQ_APT_UPDATED:-}" ]; then
        apt-get update -qq >&2
        export DJQ_APT_UPDATED=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >&2
}

pg_bindir() {
    local dir
    dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
    echo "$dir"
}

start_postgres() {
    local port="${DJQ_PG_PORT:-54329}"
    local bindir
    bindir=$(pg_bindir)
    if [ -z "$bindir" ] || [ ! -x "$bindir/pg_ctl" ]; then
        apt_install postgresql
        bindir=$(pg_bindir)
    fi
    local data="$STATE_DIR/pg-$port"
    if ! "$bindir/pg_isready" -h 127.0.0.1 -p "$port" -q 2>/dev/null; then
        if [ ! -f "$data/PG_VERSION" ]; then
            rm -rf "$data"; mkdir -p "$data"; chown postgres "$data" "$STATE_DIR"
            su postgres -c "$bindir/initdb -D '$data' -A trust -U postgres" >/dev/null
        fi
        chown -R postgres "$data"
        su postgres -c "$bindir/pg_ctl -D '$data' -l '$data/server.log' -w -t 60 \
            -o \"-h 127.0.0.1 -p $port -k '$data' -c fsync=off -c synchronous_commit=off -c max_connections=200\" start" >&2
    fi
    psql -h 127.0.0.1 -p "$port" -U postgres -tAc \
        "SELECT 1 FROM pg_roles WHERE rolname='djq'" | grep -q 1 ||
        psql -h 127.0.0.1 -p "$port" -U postgres -qc \
            "CREATE ROLE djq LOGIN SUPERUSER PASSWORD 'djq'" >&2
    psql -h 127.0.0.1 -p "$port" -U postgres -tAc \
        "SELECT 1 FROM pg_database WHERE datname='djq'" | grep -q 1 ||
        psql -h 127.0.0.1 -p "$port" -U postgres -qc "CREATE DATABASE djq OWNER djq" >&2
    echo "DJQ_TEST_POSTGRES_URL=postgres://djq:djq@127.0.0.1:$port/djq"
}

stop_postgres() {
    local port="${DJQ_PG_PORT:-54329}"
    local bindir; bindir=$(pg_bindir)
    [ -d "$STATE_DIR/pg-$port" ] && su postgres -c "$bindir/pg_ctl -D '$STATE_DIR/pg-$port' -m fast stop" >&2 || true
}

case "${1:-}" in
    postgres) start_postgres ;;
    stop-postgres) stop_postgres ;;
    *) echo "usage: $0 postgres|stop-postgres" >&2; exit 2 ;;
esac
