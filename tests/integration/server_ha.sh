#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Three wiremesh-server replicas on one PostgreSQL (a real server started by
# this test): 200 registrations at once spread over the replicas give 200
# nodes with distinct addresses and names; policy PUTs with the same If-Match
# on two replicas at once: exactly one wins, the other gets 412.
. "$(dirname "$0")/lib.sh"

pg_start
WIREMESH_API_KEY=$("$SRV" apikeys create --db "$PG_URL") || fail "apikeys create"
export WIREMESH_API_KEY

# replica I: starts replica I on its own port; sets RURL[I], RPID[I]
declare -a RURL RPID
replica() {
	local i=$1 port
	port=$(free_port)
	"$SRV" serve --db "$PG_URL" --listen "127.0.0.1:$port" >>"$T/replica$i.log" 2>&1 &
	RPID[$i]=$!; WM_PIDS+=("${RPID[$i]}")
	RURL[$i]=http://127.0.0.1:$port
	wait_for 15 curl -sf "${RURL[$i]}/healthz" || fail "replica $i did not start: $(tail -5 "$T/replica$i.log")"
}
replica 1; replica 2; replica 3
WM_SERVER_LOG=$T/replica1.log
export WIREMESH_SERVER=${RURL[1]}
"$SRV" users create alice >/dev/null || fail "users create"
AK=$("$SRV" preauthkeys create --user alice --reusable) || fail "preauthkeys create"
ok "three replicas on one PostgreSQL"

# 200 registrations, 30 at a time, round-robin over the replicas, all with
# the same hostname (names must come out unique too).
N=200
export U1=${RURL[1]} U2=${RURL[2]} U3=${RURL[3]}
seq 1 $N | xargs -P 30 -I{} sh -c '
	i={}; r=$(( i % 3 + 1 ))
	eval "url=\$U$r"
	"$0" --server "$url" --state "$1/n$i.json" register --authkey "$2" --hostname box >"$1/reg$i" 2>"$1/err$i" ||
		echo "node $i via replica $r: $(cat "$1/err$i")" >>"$1/failed"
' "$WM_NODE" "$T" "$AK"
[ -f "$T/failed" ] && { grep -h "DEBUG\|reconnect\|unavail\|error" $T/replica*.log | head -20; fail "registrations failed: $(head -5 "$T/failed")"; }
n=$(pg_sql "SELECT COUNT(*) FROM nodes")
[ "$n" = $N ] || fail "$n nodes in the database, not $N"
[ "$(pg_sql "SELECT COUNT(DISTINCT ipv4) FROM nodes")" = $N ] || fail "IPv4 addresses not distinct"
[ "$(pg_sql "SELECT COUNT(DISTINCT ipv6) FROM nodes")" = $N ] || fail "IPv6 addresses not distinct"
[ "$(pg_sql "SELECT COUNT(DISTINCT name) FROM nodes")" = $N ] || fail "names not distinct"
addrs=$(cat "$T"/reg* | grep -o '"ipv4":"[^"]*"' | sort -u | wc -l)
[ "$addrs" = $N ] || fail "the replies carry $addrs distinct addresses, not $N"
for i in 1 2 3; do kill -0 "${RPID[$i]}" || fail "replica $i died"; done
ok "$N registrations at once over 3 replicas: $N nodes, distinct addresses and names"

# The same machine registering on two replicas at once: one node.
seq 1 6 | xargs -P 6 -I{} sh -c '
	r=$(( {} % 2 + 1 )); eval "url=\$U$r"
	"$0" --server "$url" --state "$1/n1.json" register --authkey "$2" --hostname box >/dev/null 2>>"$1/dup.err"
' "$WM_NODE" "$T" "$AK"
[ "$(pg_sql "SELECT COUNT(*) FROM nodes")" = $N ] || fail "one machine became two nodes"
ok "one machine registering on two replicas at once stays one node"

# If-Match races across replicas.
put() { # URL IF-MATCH FILE OUT: prints the status
	curl -s -o "$4" -w '%{http_code}' -X PUT -H "Authorization: Bearer $WIREMESH_API_KEY" \
		-H "If-Match: $2" -H 'Content-Type: application/hujson' --data-binary "@$3" "$1/api/v1/policy"
}
echo '{ "acls": [{"action": "accept", "src": ["*"], "dst": ["*:*"]}] }' >"$T/p0"
[ "$(put "${RURL[3]}" '*' "$T/p0" "$T/o")" = 200 ] || fail "first policy: $(cat "$T/o")"
for round in 1 2 3 4 5 6 7 8; do
	etag=$(pg_sql "SELECT etag FROM policies ORDER BY id DESC LIMIT 1")
	printf '{ "acls": [{"action": "accept", "src": ["*"], "dst": ["*:%d"]}] }\n' $((round * 2)) >"$T/pa"
	printf '{ "acls": [{"action": "accept", "src": ["*"], "dst": ["*:%d"]}] }\n' $((round * 2 + 1)) >"$T/pb"
	put "${RURL[1]}" "$etag" "$T/pa" "$T/oa" >"$T/ca" &
	a=$!
	put "${RURL[2]}" "$etag" "$T/pb" "$T/ob" >"$T/cb" &
	b=$!
	wait "$a" "$b"
	got="$(cat "$T/ca") $(cat "$T/cb")"
	case $got in "200 412"|"412 200") ;; *) fail "round $round: statuses $got ($(cat "$T/oa") / $(cat "$T/ob"))" ;; esac
done
[ "$(pg_sql "SELECT COUNT(*) FROM policies")" = 9 ] || fail "not one policy version per round"
ok "policy PUT with the same If-Match on two replicas at once: one 200, one 412 (8 rounds)"
