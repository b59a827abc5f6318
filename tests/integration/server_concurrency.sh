#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Concurrent enrolment: 200 distinct machines registering at once (all with
# the same hostname, so name allocation races too) give exactly 200 nodes
# with 200 distinct IPv4 and IPv6 addresses and unique names; one machine
# registering 20 times at once stays one node.
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

N=${WM_CONC_NODES:-200}
SAME=${WM_CONC_SAME:-20}

bootstrap
start_server
"$SRV" users create alice >/dev/null || fail "users create"
AK=$("$SRV" preauthkeys create --user alice --reusable) || fail "preauthkeys create"

# Make every machine's keys first, so the burst below is registrations only.
for i in $(seq 1 "$N"); do "$WM_NODE" --state "$T/m$i.json" rotate || fail "keys $i"; done

pids=()
for i in $(seq 1 "$N"); do
	node "m$i" register --authkey "$AK" --hostname web >"$T/r$i" 2>"$T/e$i" &
	pids+=("$!")
done
bad=0
for i in $(seq 1 "$N"); do
	wait "${pids[$((i - 1))]}" || { bad=$((bad + 1)); echo "register m$i: $(cat "$T/e$i" "$T/r$i")" >&2; }
done
[ "$bad" = 0 ] || fail "$bad of $N concurrent registrations failed"
created=$(grep -l '"node":{' "$T"/r* | wc -l)
[ "$created" = "$N" ] || fail "only $created of $N answers carry a node"

check_nodes() {	# EXPECTED: counts nodes, distinct addresses/names/machine keys
	curl -sf -H "Authorization: Bearer $WIREMESH_API_KEY" "$URL/api/v1/nodes" >"$T/nodes.json" ||
		fail "GET /api/v1/nodes"
	python3 - "$1" "$T/nodes.json" <<'PY' || fail "node set after concurrent registration"
import json, sys
want = int(sys.argv[1])
nodes = json.load(open(sys.argv[2]))["nodes"]
def distinct(field):
    vals = [n[field] for n in nodes]
    return len(set(vals)), len(vals)
errs = []
if len(nodes) != want:
    errs.append("nodes: %d, want %d" % (len(nodes), want))
for f in ("ipv4", "ipv6", "name", "machine_key", "node_key"):
    d, t = distinct(f)
    if d != want or t != want:
        errs.append("%s: %d distinct of %d, want %d" % (f, d, t, want))
if any(n["ipv4"] in ("", "100.100.100.100") or not n["ipv4"].startswith("100.") for n in nodes):
    errs.append("an IPv4 address outside the pool or reserved")
if any(not n["ipv6"].startswith("fd7a:115c:a1e0:") for n in nodes):
    errs.append("an IPv6 address outside the pool")
if errs:
    print("\n".join(errs), file=sys.stderr)
    sys.exit(1)
PY
}
check_nodes "$N"
# The database agrees with the API (unique constraints held, nothing extra).
n=$(sqlite3 "$T/db.sqlite" 'SELECT count(*), count(DISTINCT ipv4), count(DISTINCT ipv6), count(DISTINCT name) FROM nodes')
[ "$n" = "$N|$N|$N|$N" ] || fail "database: $n (want $N|$N|$N|$N)"
ok "$N concurrent registrations: $N nodes, $N distinct IPv4/IPv6 addresses and names"

# One machine, $SAME registrations at once: one node; all but the first update it.
"$WM_NODE" --state "$T/same.json" rotate || fail "keys for the repeated machine"
pids=()
for i in $(seq 1 "$SAME"); do
	node same register --authkey "$AK" --hostname repeat >"$T/s$i" 2>"$T/se$i" &
	pids+=("$!")
done
for i in $(seq 1 "$SAME"); do
	wait "${pids[$((i - 1))]}" || fail "repeated registration $i: $(cat "$T/se$i" "$T/s$i")"
done
ids=$(cat "$T"/s[0-9]* | sed -E 's/.*"node":\{"id":([0-9]+),.*/\1/' | sort -u)
[ "$(echo "$ids" | wc -l)" = 1 ] || fail "the same machine got several node ids: $ids"
check_nodes $((N + 1))
names=$(grep -ho '"name":"[^"]*"' "$T"/s[0-9]* | sort -u)
[ "$names" = '"name":"repeat"' ] || fail "the repeated machine was renamed: $names"
ok "the same machine registering $SAME times at once is one node"

kill -0 "$SERVER_PID" || fail "server died"

# Under ASan/UBSan a report in any server log fails the test.
stop
! grep -l 'Sanitizer\|runtime error:' "$T"/*.log 2>/dev/null || fail "sanitizer report: $(grep -h -A5 'Sanitizer\|runtime error:' "$T"/*.log | head -20)"
