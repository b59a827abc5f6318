#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Three wiremesh-server replicas on one PostgreSQL (a real server started by
# this test): 200 registrations at once spread over the replicas give 200
# nodes with distinct addresses and names; one machine on two replicas at
# once stays one node; streams on replicas 2 and 3 hear of a node registered
# on 1; after kill -9 of a replica its client resumes on another by version
# (deltas only); policy PUTs with the same If-Match on two replicas at once:
# exactly one wins, the other gets 412; a policy stored through one replica
# is in force on another; one replica cleans up ephemeral nodes and another
# takes over when it is killed. The replica list: every map carries the
# three replicas' URLs and a DERP map with each one's embedded region; a
# node registered through replica 1 is admitted by replica 2's relay; a
# replica announcing a region id a live one has is refused; a replica killed
# drops out of the list once its record is stale, one stopped at once.
. "$(dirname "$0")/lib.sh"

pg_start
WIREMESH_API_KEY=$("$SRV" apikeys create --db "$PG_URL") || fail "apikeys create"
export WIREMESH_API_KEY

# replica I: starts replica I on its own port; sets RURL[I], RPID[I]
declare -a RURL RPID RPORT
replica() {
	local i=$1 port
	port=$(free_port)
	"$SRV" serve --db "$PG_URL" --listen "127.0.0.1:$port" --server-url "http://127.0.0.1:$port" \
		--ephemeral-timeout 3s --derp --derp-region-id "90$i" --derp-hostname 127.0.0.1 \
		>>"$T/replica$i.log" 2>&1 &
	RPID[$i]=$!; WM_PIDS+=("${RPID[$i]}")
	RURL[$i]=http://127.0.0.1:$port RPORT[$i]=$port
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
lags=$(for i in 1 2 3; do curl -sf "${RURL[$i]}/metrics" | sed -n 's/^wiremesh_replica_notify_lag_seconds{stat="max"} //p'; done | tr '\n' ' ')
ok "$N registrations at once over 3 replicas: $N nodes, distinct addresses and names (notify lag max per replica: ${lags}s)"

# The same machine registering on two replicas at once: one node.
seq 1 6 | xargs -P 6 -I{} sh -c '
	r=$(( {} % 2 + 1 )); eval "url=\$U$r"
	"$0" --server "$url" --state "$1/n1.json" register --authkey "$2" --hostname box >/dev/null 2>>"$1/dup.err"
' "$WM_NODE" "$T" "$AK"
[ "$(pg_sql "SELECT COUNT(*) FROM nodes")" = $N ] || fail "one machine became two nodes"
ok "one machine registering on two replicas at once stays one node"

# A node registered through replica 1 reaches the map streams held by
# replicas 2 and 3 (LISTEN/NOTIFY with the version, the change read from the
# shared log).
node_at() { "$WM_NODE" --server "$1" --state "$T/$2.json" "${@:3}"; }
node_at "$U2" n1 map --lines 100000 >"$T/map2" 2>/dev/null &
m2=$!; WM_PIDS+=("$m2")
node_at "$U3" n1 map --lines 100000 >"$T/map3" 2>/dev/null &
m3=$!; WM_PIDS+=("$m3")
wait_for 10 grep -q '"type":"full"' "$T/map2" || fail "no full map from replica 2"
wait_for 10 grep -q '"type":"full"' "$T/map3" || fail "no full map from replica 3"
node_at "$U1" joiner register --authkey "$AK" --hostname joiner >/dev/null || fail "register joiner on replica 1"
# at once: replica 2's relay admits the key (its store has it, whether or
# not its map has heard yet) and refuses a random one
D=$WM_BIN/wiremesh-derper
probe() { "$D" debug client --host 127.0.0.1 --dial 127.0.0.1 --port "$1" --plain --key "$2" --probe --timeout 8; }
kj=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["node_private"])' "$T/joiner.json")
out=$(probe "${RPORT[2]}" "$kj") || fail "replica 2's relay refused a node registered through replica 1: $out"
[ "$out" = admitted ] || fail "replica 2's relay: $out"
out=$(probe "${RPORT[2]}" "$("$D" debug genkey | sed 's/private=\([^ ]*\) .*/\1/')") && fail "replica 2's relay admitted a random key"
[ "$out" = refused ] || fail "random key on replica 2's relay: $out"
# and relays between two nodes registered through replicas 1 and 3
key() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$T/$1.json" "$2"; }
"$D" debug client --host 127.0.0.1 --dial 127.0.0.1 --port "${RPORT[2]}" --plain --key "$kj" \
	--recv 1 --timeout 10 >"$T/recv.out" 2>&1 &
rv=$!; WM_PIDS+=("$rv")
wait_for 10 grep -q '^connected' "$T/recv.out" || fail "joiner not connected to replica 2's relay: $(cat "$T/recv.out")"
"$D" debug client --host 127.0.0.1 --dial 127.0.0.1 --port "${RPORT[2]}" --plain --key "$(key n2 node_private)" \
	--send "$(key joiner node_public)" --msg x --timeout 5 >/dev/null || fail "node 2 (registered through replica 3) cannot send through replica 2's relay"
wait "$rv" || fail "replica 2's relay did not pass a packet between nodes registered through replicas 3 and 1: $(cat "$T/recv.out")"
wait_for 5 sh -c "grep '\"peer_added\"' '$T/map2' | grep -q '\"name\":\"joiner\"'" || fail "replica 2's stream did not hear of the node registered on replica 1"
wait_for 5 sh -c "grep '\"peer_added\"' '$T/map3' | grep -q '\"name\":\"joiner\"'" || fail "replica 3's stream did not hear of the node registered on replica 1"
node_at "$U1" joiner endpoints 192.0.2.77:41641 >/dev/null || fail "endpoints via replica 1"
wait_for 5 grep -q '192.0.2.77:41641' "$T/map2" || fail "replica 2's stream missed an endpoint change made on replica 1"
curl -sf "$U2/metrics" >"$T/metrics2" || fail "metrics of replica 2"
f=$(sed -n 's/^wiremesh_replica_foreign_changes_total //p' "$T/metrics2")
[ "${f:-0}" -gt 0 ] || fail "replica 2 reports no foreign changes applied: $(grep replica "$T/metrics2")"
grep -q '^wiremesh_replica_notify_lag_seconds{stat="max"} ' "$T/metrics2" || fail "no notify lag in /metrics"
ok "a node registered on replica 1 appears in streams held by replicas 2 and 3, and its changes follow; /metrics shows it"

# The replica list: the map names every replica and carries each one's
# embedded DERP region; a fourth replica with a region id in use is refused.
replicas_in() { # FILE [LINE]: prints the control_urls and the DERP region ids of that map line
	python3 - "$@" <<'PY'
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1]) if '"control_urls"' in l]
m = lines[int(sys.argv[2]) if len(sys.argv) > 2 else 0]
print(" ".join(sorted(m["control_urls"])), "|", " ".join(sorted(m["derp_map"]["Regions"])))
PY
}
want="$(printf '%s\n' "$U1" "$U2" "$U3" | sort | tr '\n' ' ')| 901 902 903"
[ "$(replicas_in "$T/map2")" = "$want" ] || fail "replica 2's full map: $(replicas_in "$T/map2"), not $want"
[ "$(replicas_in "$T/map3")" = "$want" ] || fail "replica 3's full map: $(replicas_in "$T/map3"), not $want"
port=$(free_port)
"$SRV" serve --db "$PG_URL" --listen "127.0.0.1:$port" --server-url "http://127.0.0.1:$port" \
	--derp --derp-region-id 902 --derp-hostname 127.0.0.1 >"$T/clash.log" 2>&1 &
cp=$!; WM_PIDS+=("$cp")
wait_for 15 sh -c "! kill -0 $cp 2>/dev/null" || fail "a replica with the DERP region id of a live one started"
wait "$cp" && fail "a replica with the DERP region id of a live one exited 0"
grep -q "derp_region_id 902 is already the embedded DERP region of the live replica $U2" "$T/clash.log" ||
	fail "no clear error for the region id clash: $(tail -3 "$T/clash.log")"
ok "every map names the 3 replicas and carries their 3 embedded DERP regions; replica 2's relay admits a node registered through replica 1 and relays to it from one registered through replica 3; a clashing region id is refused"

# kill -9 of a replica: its client resumes on another by version, deltas only.
v=$(grep -o '"version":[0-9]*' "$T/map3" | tail -1 | cut -d: -f2)
[ -n "$v" ] || fail "no version seen on replica 3's stream"
kill -9 "${RPID[3]}"; t3=$SECONDS
node_at "$U1" late register --authkey "$AK" --hostname late >/dev/null || fail "register while replica 3 is down"
node_at "$U2" n1 map --since "$v" --lines 3 >"$T/resume" 2>/dev/null &
rp=$!; WM_PIDS+=("$rp")
wait_for 10 grep -q '"name":"late"' "$T/resume" || fail "resume on replica 2 missed the node registered meanwhile: $(head -c 600 "$T/resume")"
grep -q '"type":"full"' "$T/resume" && fail "resume on another replica sent a full map"
for i in 1 2; do kill -0 "${RPID[$i]}" || fail "replica $i died"; done
ok "after kill -9 of replica 3 its client resumes on replica 2 by version (deltas only)"

# If-Match races across replicas.
put() { # URL IF-MATCH FILE OUT: prints the status
	curl -s -o "$4" -w '%{http_code}' -X PUT -H "Authorization: Bearer $WIREMESH_API_KEY" \
		-H "If-Match: $2" -H 'Content-Type: application/hujson' --data-binary "@$3" "$1/api/v1/policy"
}
echo '{ "acls": [{"action": "accept", "src": ["*"], "dst": ["*:*"]}] }' >"$T/p0"
[ "$(put "${RURL[1]}" '*' "$T/p0" "$T/o")" = 200 ] || fail "first policy: $(cat "$T/o")"
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

# A policy PUT on replica 1 is in force on replica 2 (reloaded from the
# database) and its streams hear of it.
printf '{ "acls": [{"action": "accept", "src": ["*"], "dst": ["*:4242"]}] }\n' >"$T/pc"
[ "$(put "${RURL[1]}" '*' "$T/pc" "$T/o")" = 200 ] || fail "policy PUT on replica 1: $(cat "$T/o")"
etag=$(pg_sql "SELECT etag FROM policies ORDER BY id DESC LIMIT 1")
wait_for 5 sh -c "curl -sf -D - -o /dev/null -H 'Authorization: Bearer $WIREMESH_API_KEY' '$U2/api/v1/policy' | tr -d '\r' | grep -qF 'ETag: $etag'" ||
	fail "replica 2 still serves the old policy"
wait_for 5 grep -q '4242' "$T/map2" || fail "replica 2's stream did not get the new filter"
ok "a policy stored through replica 1 is loaded by replica 2 and reaches its streams"

# Singleton work: one replica cleans up idle ephemeral nodes; when it dies,
# another takes over within seconds.
leader_of() { # prints the replica numbers (of those given) that hold the role
	local i
	for i in "$@"; do
		curl -sf "${RURL[$i]}/metrics" | grep -q '^wiremesh_replica_leader{role="ephemeral_cleanup"} 1' && echo "$i"
	done
}
one_leader() { [ "$(leader_of 1 2 | wc -l)" = 1 ]; }
wait_for 10 one_leader || fail "not exactly one leader among replicas 1 and 2: $(leader_of 1 2 | tr '\n' ' ')"
L=$(leader_of 1 2); F=$(( 3 - L ))
EK=$("$SRV" preauthkeys create --user alice --ephemeral --reusable) || fail "ephemeral key"
node_at "${RURL[$F]}" eph1 register --authkey "$EK" --hostname eph1 >/dev/null || fail "register eph1"
gone() { [ "$(pg_sql "SELECT COUNT(*) FROM nodes WHERE hostname = '$1'")" = 0 ]; }
wait_for 15 gone eph1 || fail "the idle ephemeral node was not cleaned up"
grep -q 'ephemeral node removed' "$T/replica$L.log" || fail "the leader (replica $L) did not do the cleanup"
grep -q 'ephemeral node removed' "$T/replica$F.log" && fail "replica $F cleaned up without the role"
kill -9 "${RPID[$L]}"
wait_for 10 sh -c "curl -sf '${RURL[$F]}/metrics' | grep -q '^wiremesh_replica_leader{role=\"ephemeral_cleanup\"} 1'" ||
	fail "replica $F did not take the role after the leader died"
node_at "${RURL[$F]}" eph2 register --authkey "$EK" --hostname eph2 >/dev/null || fail "register eph2"
wait_for 15 gone eph2 || fail "no cleanup after the leader died"
[ "$(pg_sql "SELECT COUNT(*) FROM nodes")" -gt 200 ] || fail "the cleanup removed more than ephemeral nodes"
ok "one replica (of 1 and 2: $L) cleans up ephemeral nodes; after kill -9 of it, replica $F takes over"

# Replica 3 (killed a while ago) drops out of the list once its record is
# stale; streams hear of it.
node_at "${RURL[$F]}" n1 map --lines 100000 >"$T/mapF" 2>/dev/null &
mf=$!; WM_PIDS+=("$mf")
wait_for 10 grep -q '"type":"full"' "$T/mapF" || fail "no full map from replica $F"
no3() { ! replicas_in "$T/mapF" -1 | grep -qF "$U3"; }
t0=$SECONDS
wait_for 30 no3 || fail "replica 3 is still announced: $(replicas_in "$T/mapF" -1)"
replicas_in "$T/mapF" -1 | grep -q ' 903' && fail "replica 3's DERP region is still announced"
ok "a replica killed drops out of the map's replica list and DERP map once its record is stale ($((SECONDS - t0)) s waited here, $((SECONDS - t3)) s after the kill)"

# The survivor stops cleanly (under ASan: no leak, no error at exit) and
# leaves the list at once.
kill -TERM "${RPID[$F]}"
wait "${RPID[$F]}" || fail "replica $F did not exit cleanly on SIGTERM"
pg_sql "SELECT published FROM replica_list" | grep -qF "${RURL[$F]}" && fail "replica $F still listed after a clean stop"
! grep -l 'Sanitizer\|runtime error:' "$T"/replica*.log "$T"/clash.log 2>/dev/null ||
	fail "sanitizer report: $(grep -h -A5 'Sanitizer\|runtime error:' "$T"/replica*.log "$T"/clash.log | head -20)"
ok "replica $F stops cleanly"
