#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Crash safety: parallel registrations in a loop, `kill -9` of the server in
# the middle, restart on the same database. Every registration the server
# acknowledged (wm-node got a 2xx with the node) is present after the
# restart, the crashed database passes PRAGMA integrity_check, and the
# address pool and names stay unique across restarts. Several rounds.
. "$(dirname "$0")/lib.sh"

# Processes this script has waited for leave the cleanup list (their PIDs
# may be reused); stop() stops the current server at most once.
reaped() {
	local p i
	for p in "$@"; do
		for i in "${!WM_PIDS[@]}"; do [ "${WM_PIDS[$i]}" != "$p" ] || unset "WM_PIDS[$i]"; done
	done
}
stop() { [ -n "${SERVER_PID:-}" ] || return 0; stop_server; reaped "$SERVER_PID"; SERVER_PID=; }

ROUNDS=${WM_CRASH_ROUNDS:-4}
WORKERS=${WM_CRASH_WORKERS:-8}

bootstrap
start_server
"$SRV" users create alice >/dev/null || fail "users create"
AK=$("$SRV" preauthkeys create --user alice --reusable --expiration never) || fail "preauthkeys create"

# worker ROUND W: registers new machines one after another until the stop
# file appears; appends the machine key of every acknowledged one.
worker() {
	local round=$1 w=$2 j=0 st out
	while [ ! -e "$T/stop$round" ]; do
		j=$((j + 1))
		st=$T/m$round-$w-$j.json
		out=$T/o$round-$w-$j
		if node "${st#"$T"/}" register --authkey "$AK" --hostname crash >"$out" 2>/dev/null; then
			# acknowledged: the answer carries the node
			grep -o '"machine_key":"mkey:[0-9a-f]*"' "$out" | cut -d'"' -f4 >>"$T/acked$round-$w" ||
				{ echo "acknowledged without a node: $(cat "$out")" >>"$T/bad"; }
		fi
		rm -f "$st" "$out"
	done
}
node() { "$WM_NODE" --server "$URL" --state "$T/$1" "${@:2}"; }

acked_count() { cat "$T"/acked* 2>/dev/null | wc -l; }
at_least() { [ "$(acked_count)" -ge "$1" ]; }

total_acked=0
for round in $(seq 1 "$ROUNDS"); do
	wpids=()
	for w in $(seq 1 "$WORKERS"); do
		worker "$round" "$w" &
		wpids+=("$!"); WM_PIDS+=("$!")
	done
	# Kill at a different point of the load each round.
	target=$((total_acked + 15 + RANDOM % 40))
	wait_for 60 at_least "$target" || fail "round $round: load made no progress ($(acked_count) acknowledged)"
	kill -9 "$SERVER_PID"
	wait "$SERVER_PID" 2>/dev/null
	touch "$T/stop$round"
	for p in "${wpids[@]}"; do wait "$p"; done
	reaped "$SERVER_PID" "${wpids[@]}"
	[ ! -s "$T/bad" ] || fail "$(cat "$T/bad")"

	# The database as the crash left it (main file and WAL), checked on a copy.
	for f in "$T"/db.sqlite "$T"/db.sqlite-wal; do [ -e "$f" ] && cp "$f" "$T/crash${f#"$T"/db}"; done
	ic=$(sqlite3 "$T/crash.sqlite" 'PRAGMA integrity_check') || fail "sqlite3 on the crashed database"
	[ "$ic" = ok ] || fail "round $round: integrity_check of the crashed database: $ic"
	rm -f "$T"/crash.sqlite*

	unset PORT
	start_server
	total_acked=$(acked_count)
	curl -sf -H "Authorization: Bearer $WIREMESH_API_KEY" "$URL/api/v1/nodes" >"$T/nodes.json" ||
		fail "GET /api/v1/nodes after restart"
	python3 - "$T/nodes.json" "$T"/acked* <<'PY' || fail "round $round: acknowledged registrations lost"
import json, sys
nodes = json.load(open(sys.argv[1]))["nodes"]
have = {n["machine_key"] for n in nodes}
acked = set()
for f in sys.argv[2:]:
    acked |= {l.strip() for l in open(f) if l.strip()}
lost = acked - have
if lost:
    print("%d of %d acknowledged nodes missing, e.g. %s" % (len(lost), len(acked), sorted(lost)[:3]), file=sys.stderr)
    sys.exit(1)
for field in ("ipv4", "ipv6", "name"):
    vals = [n[field] for n in nodes]
    if len(set(vals)) != len(vals):
        print("duplicate %s after restart" % field, file=sys.stderr)
        sys.exit(1)
PY
	ic=$(sqlite3 "$T/db.sqlite" 'PRAGMA integrity_check') || fail "sqlite3 after restart"
	[ "$ic" = ok ] || fail "round $round: integrity_check after restart: $ic"
	n=$(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["nodes"]))' "$T/nodes.json")
	ok "round $round: killed after $total_acked acknowledged registrations; all present ($n nodes), integrity ok"
done

# Under ASan/UBSan a report in any server log fails the test.
stop
! grep -l 'Sanitizer\|runtime error:' "$T"/*.log 2>/dev/null || fail "sanitizer report: $(grep -h -A5 'Sanitizer\|runtime error:' "$T"/*.log | head -20)"
