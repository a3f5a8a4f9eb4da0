#!/usr/bin/env bash
# Start the servers the test suite and benchmarks talk to, on 127.0.0.1 only.
#   scripts/services.sh postgres   -> prints DJQ_TEST_POSTGRES_URL=...
#   scripts/services.sh redis      -> prints DJQ_TEST_REDIS_URL=...
#   scripts/services.sh rabbitmq   -> prints DJQ_TEST_AMQP_URL=...
# A server this call started (rather than found running) is also announced as
# DJQ_STARTED_<NAME>=1, so a caller can stop only what it started.
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
    local port="${DJQ_PG_PORT:-5439}"
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
        echo "DJQ_STARTED_POSTGRES=1"
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

start_redis() {
    local port="${DJQ_REDIS_PORT:-6399}"
    command -v redis-server >/dev/null 2>&1 || apt_install redis-server
    if ! redis-cli -h 127.0.0.1 -p "$port" ping >/dev/null 2>&1; then
        echo "DJQ_STARTED_REDIS=1"
        # The dump (written by the restart tests' "shutdown save", loaded at the next start)
        # is per port: servers on other ports (CI's second leg) must never load each other's.
        redis-server --bind 127.0.0.1 --port "$port" --daemonize yes --save "" --appendonly no \
            --dir "$STATE_DIR" --dbfilename "redis-$port.rdb" \
            --logfile "$STATE_DIR/redis-$port.log" --pidfile "$STATE_DIR/redis-$port.pid" >&2
        for _ in $(seq 1 100); do
            redis-cli -h 127.0.0.1 -p "$port" ping >/dev/null 2>&1 && break
            sleep 0.1
        done
    fi
    redis-cli -h 127.0.0.1 -p "$port" ping >/dev/null
    echo "DJQ_TEST_REDIS_URL=redis://127.0.0.1:$port/0"
}

stop_redis() {
    local port="${DJQ_REDIS_PORT:-6399}"
    redis-cli -h 127.0.0.1 -p "$port" shutdown nosave >/dev/null 2>&1 || true
}

rabbit_env() {
    local port="${DJQ_AMQP_PORT:-5679}"
    export RABBITMQ_AMQP_PORT="$port" RABBITMQ_CONFIG_FILE="$STATE_DIR/rabbitmq-$port/rabbitmq"
    export RABBITMQ_NODENAME="djq$port@localhost" RABBITMQ_DIST_PORT=$((port + 20000))
    export RABBITMQ_MNESIA_BASE="$STATE_DIR/rabbitmq-$port/mnesia" RABBITMQ_LOG_BASE="$STATE_DIR/rabbitmq-$port/log"
    export RABBITMQ_PID_FILE="$STATE_DIR/rabbitmq-$port/pid" RABBITMQ_ENABLED_PLUGINS_FILE="$STATE_DIR/rabbitmq-$port/plugins"
    export RABBITMQ_SERVER_START_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"
    export ERL_EPMD_ADDRESS=127.0.0.1
}

start_rabbitmq() {
    command -v rabbitmq-server >/dev/null 2>&1 || apt_install rabbitmq-server
    rabbit_env
    mkdir -p "$STATE_DIR/rabbitmq-$RABBITMQ_AMQP_PORT"/{mnesia,log}
    [ -f "$RABBITMQ_ENABLED_PLUGINS_FILE" ] || echo "[]." > "$RABBITMQ_ENABLED_PLUGINS_FILE"
    printf 'listeners.tcp.1 = 127.0.0.1:%s\nloopback_users = none\n' "$RABBITMQ_AMQP_PORT" > "$RABBITMQ_CONFIG_FILE.conf"
    if id rabbitmq >/dev/null 2>&1; then chown -R rabbitmq "$STATE_DIR/rabbitmq-$RABBITMQ_AMQP_PORT"; chmod 755 "$STATE_DIR"; fi
    if ! rabbitmqctl -q -n "$RABBITMQ_NODENAME" status >/dev/null 2>&1; then
        echo "DJQ_STARTED_RABBITMQ=1"
        rabbitmq-server -detached >&2 || true
        # RabbitMQ takes several seconds to boot: wait until it answers on its port.
        for _ in $(seq 1 120); do
            rabbitmqctl -q -n "$RABBITMQ_NODENAME" await_startup --timeout 5 >/dev/null 2>&1 && break
            sleep 1
        done
        rabbitmqctl -q -n "$RABBITMQ_NODENAME" await_startup --timeout 5 >&2
    fi
    echo "DJQ_TEST_AMQP_URL=amqp://guest:guest@127.0.0.1:$RABBITMQ_AMQP_PORT//"
}

stop_rabbitmq() {
    rabbit_env
    rabbitmqctl -q -n "$RABBITMQ_NODENAME" stop >/dev/null 2>&1 || true
}

stop_postgres() {
    local port="${DJQ_PG_PORT:-5439}"
    local bindir; bindir=$(pg_bindir)
    [ -d "$STATE_DIR/pg-$port" ] && su postgres -c "$bindir/pg_ctl -D '$STATE_DIR/pg-$port' -m fast stop" >&2 || true
}

case "${1:-}" in
    postgres) start_postgres ;;
    redis) start_redis ;;
    rabbitmq) start_rabbitmq ;;
    stop-postgres) stop_postgres ;;
    stop-redis) stop_redis ;;
    stop-rabbitmq) stop_rabbitmq ;;
    *) echo "usage: $0 postgres|redis|rabbitmq|stop-postgres|stop-redis|stop-rabbitmq" >&2; exit 2 ;;
esac
