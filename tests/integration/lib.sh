# SPDX-License-Identifier: MIT
# Shared helpers for integration tests: a scratch directory, process
# tracking by PID, a control server on a free loopback port, polling with a
# deadline. Source it; it installs an EXIT trap that cleans up everything the
# test registered, also on failure.
set -u
WM_TOP=${WM_TOP:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
WM_BIN=${WM_BIN:-$WM_TOP/bin}
WM_BUILD=${WM_BUILD:-$(dirname "$WM_BIN")}
[ -x "$WM_BUILD/wm-node" ] || WM_BUILD=$WM_TOP/build/release
[ -x "$WM_BUILD/wm-node" ] || WM_BUILD=$WM_TOP/build/san
WM_NODE=$WM_BUILD/wm-node
SRV=$WM_BIN/wiremesh-server
T=$(mktemp -d /tmp/wm-test-XXXXXX)
WM_PIDS=()
WM_CLEANUP=()

wm_cleanup() {
	local st=$?
	for c in "${WM_CLEANUP[@]+"${WM_CLEANUP[@]}"}"; do eval "$c" >/dev/null 2>&1 || true; done
	for p in "${WM_PIDS[@]+"${WM_PIDS[@]}"}"; do kill -9 "$p" 2>/dev/null || true; done
	for p in "${WM_PIDS[@]+"${WM_PIDS[@]}"}"; do wait "$p" 2>/dev/null || true; done
	if [ "$st" -ne 0 ] && [ -n "${WM_SERVER_LOG:-}" ] && [ -f "$WM_SERVER_LOG" ]; then
		echo "--- server log (last ${WM_LOG_LINES:-30} lines)"; tail -n "${WM_LOG_LINES:-30}" "$WM_SERVER_LOG"
	fi
	rm -rf "$T"
	exit "$st"
}
trap wm_cleanup EXIT
trap 'exit 130' INT TERM

fail() { echo "FAIL: $*" >&2; exit 1; }
ok() { echo "ok - $*"; }
skip() { echo "$*"; exit 77; }

# wait_for DEADLINE_S CMD...: polls CMD until it succeeds or the deadline passes.
wait_for() {
	local deadline=$(( $(date +%s%N) / 1000000 + $1 * 1000 )); shift
	while ! "$@" >/dev/null 2>&1; do
		[ $(( $(date +%s%N) / 1000000 )) -lt "$deadline" ] || return 1
		sleep 0.05
	done
}

free_port() {
	python3 - <<'PY'
import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()
PY
}

# start_server [extra serve args...]: starts wiremesh-server on a free port
# with $T/db.sqlite; sets SERVER_PID, URL, WM_SERVER_LOG.
start_server() {
	PORT=${PORT:-$(free_port)}
	WM_SERVER_LOG=$T/server.log
	"$SRV" serve --listen "127.0.0.1:$PORT" --db "${DB:-$T/db.sqlite}" "$@" >>"$WM_SERVER_LOG" 2>&1 &
	SERVER_PID=$!
	WM_PIDS+=("$SERVER_PID")
	URL=${URL_SCHEME:-http}://127.0.0.1:$PORT
	wait_for 10 curl -sf ${CURL_CA:+--cacert "$CURL_CA"} "$URL/healthz" ||
		fail "server did not become healthy"
	export WIREMESH_SERVER=$URL
}

stop_server() {
	kill -TERM "$SERVER_PID" 2>/dev/null
	wait "$SERVER_PID" 2>/dev/null || true
}

# bootstrap: API key, user "alice", and a reusable auth key in $AUTHKEY.
bootstrap() {
	WIREMESH_API_KEY=$("$SRV" apikeys create --create --db "${DB:-$T/db.sqlite}" 2>/dev/null) ||
		fail "apikeys create"
	export WIREMESH_API_KEY
}

# api METHOD PATH [BODY]: prints "STATUS BODY" with the admin key.
api() {
	local m=$1 p=$2
	if [ $# -ge 3 ]; then printf '%s' "$3" >"$T/req"; fi
	curl -s ${CURL_CA:+--cacert "$CURL_CA"} -o "$T/resp" -w '%{http_code}' -X "$m" \
		-H "Authorization: Bearer $WIREMESH_API_KEY" \
		${3+-H 'Content-Type: application/json' --data-binary "@$T/req"} "$URL$p"
	echo " $(cat "$T/resp")"
}

# expect_status WANT "STATUS BODY"
expect_status() {
	local want=$1 got=${2%% *}
	[ "$got" = "$want" ] || fail "expected HTTP $want, got: $2"
}

node() { "$WM_NODE" --server "$URL" --state "$T/$1.json" "${@:2}"; }

# pg_start: a throwaway PostgreSQL for this test (tests/tools/pg.sh: initdb in
# a temp dir as the `postgres` user, Unix socket there and 127.0.0.1:PORT);
# sets PG_URL (postgres://wiremesh:PASSWORD@127.0.0.1:PORT/wiremesh),
# PG_PASSWORD and PG_DIR; stopped by PID and removed at exit.
pg_start() {
	local out
	out=$("$WM_TOP/tests/tools/pg.sh" start) || fail "PostgreSQL did not start"
	PG_DIR=$(sed -n 1p <<<"$out")
	PG_PID=$(sed -n 2p <<<"$out")
	PG_URL=$(sed -n 3p <<<"$out")
	PG_PASSWORD=${PG_URL#postgres://wiremesh:}
	PG_PASSWORD=${PG_PASSWORD%%@*}
	WM_CLEANUP+=("'$WM_TOP/tests/tools/pg.sh' stop '$PG_DIR' '$PG_PID'")
}

# pg_sql SQL: runs SQL on the test's PostgreSQL as the owner of its database.
pg_sql() { psql -X -q -tA "$PG_URL" -c "$1"; }
