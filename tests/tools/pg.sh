#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# A throwaway PostgreSQL server for tests, started by the test itself:
# initdb in a fresh temp dir (as the unprivileged `postgres` user when run as
# root), listening on a Unix socket in that dir and on 127.0.0.1:PORT,
# stopped by the postmaster's PID and removed afterwards.
#
#   pg.sh start          prints three lines: DIR, PID, URL
#   pg.sh stop DIR PID   stops that server (fast shutdown, then SIGKILL) and
#                        removes DIR
#
# URL is postgres://wiremesh:PASSWORD@127.0.0.1:PORT/wiremesh (password auth
# over TCP); the socket in DIR accepts the `postgres` superuser without a
# password. Needs Debian's postgresql (15 or newer).
set -eu

pgbin() {
	local d
	for d in /usr/lib/postgresql/*/bin; do [ -x "$d/initdb" ] && { echo "$d"; return; }; done
	command -v initdb >/dev/null && { dirname "$(command -v initdb)"; return; }
	echo "pg.sh: PostgreSQL server binaries not found (apt-get install postgresql)" >&2
	exit 1
}

as_pg() {
	if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

start() {
	local bin dir port pw pid
	bin=$(pgbin)
	dir=$(mktemp -d /tmp/wm-pg-XXXXXX)
	chmod 700 "$dir"
	[ "$(id -u)" -ne 0 ] || chown postgres:postgres "$dir"
	port=$(free_port)
	pw=$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')
	if ! as_pg "$bin/initdb" -D "$dir/data" -U postgres -E UTF8 --locale=C --no-sync \
	    --auth-local=trust --auth-host=scram-sha-256 >"$dir/initdb.log" 2>&1; then
		cat "$dir/initdb.log" >&2; rm -rf "$dir"; exit 1
	fi
	# Tests only: no fsync (the data dir is thrown away), room for replicas.
	if ! as_pg "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 -o \
	    "-k $dir -p $port -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300" \
	    start >/dev/null 2>&1; then
		cat "$dir/server.log" >&2 2>/dev/null; rm -rf "$dir"; exit 1
	fi
	pid=$(head -1 "$dir/data/postmaster.pid")
	if ! as_pg "$bin/psql" -X -q -h "$dir" -p "$port" -U postgres -d postgres -v ON_ERROR_STOP=1 \
	    -c "CREATE ROLE wiremesh LOGIN PASSWORD '$pw'" -c "CREATE DATABASE wiremesh OWNER wiremesh" \
	    >/dev/null; then
		stop "$dir" "$pid"; exit 1
	fi
	echo "$dir"
	echo "$pid"
	echo "postgres://wiremesh:$pw@127.0.0.1:$port/wiremesh"
}

stop() {
	local dir=$1 pid=$2 i
	case $dir in /tmp/wm-pg-*) ;; *) echo "pg.sh: refusing to remove $dir" >&2; exit 1;; esac
	if [ -n "$pid" ] && kill -INT "$pid" 2>/dev/null; then
		for i in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
		kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
	fi
	rm -rf "$dir"
}

case ${1:-} in
start) start ;;
stop) stop "${2:?DIR}" "${3:-}" ;;
*) echo "usage: pg.sh start | pg.sh stop DIR PID" >&2; exit 2 ;;
esac
