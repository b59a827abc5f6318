#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Three wiremesh-server replicas on one PostgreSQL (a real server started by
# this test): 200 registrations at once spread over the replicas give 200
# nodes with distinct addresses and names; one machine on two replicas at
# once stays one node; streams on replicas 2 and 3 hear of a node registered
# on 1; after kill -9 of a replica its client resumes on another by version
# (deltas only); policy PUTs with the same If-Match on two replicas at once:
# exactly one wins, the other gets 412; a policy stored through one replica
# is in force on another. Singleton work (one leader replica): a node's
# expiry reaches streams on every replica exactly once; route primaries are
# the same on every replica and fail over when the primary router goes
# offline; the leader's kill -9 moves every role (ephemeral cleanup shown at
# work); a policy_file is stored once per change by the leader and followed
# by the others. kill -9 of a replica during a burst of registrations: every
# acknowledged node is in the database and that replica's streams resume on
# the others by version (deltas only). The replica list: every map carries the
# three replicas' URLs and a DERP map with each one's embedded region; a
# node registered through replica 1 is admitted by replica 2's relay; a
# registration waiting for a person, begun on one replica, is listed,
# approved and long-polled through the others; a
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
		--ephemeral-timeout 3s --derp --derp-region-id "90$i" --derp-hostname 127.0.0.1 "${@:2}" \
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

# A registration waiting for a person moves with its agent: begun on
# replica 1, listed by replica 2, its long-poll asked of replica 2 (as after
# a failover), which takes it over from the database and answers "done"
# once an admin approves it through replica 3; replica 1 then refuses a
# second approval.
"$WM_NODE" --server "${RURL[1]}" --state "$T/int.json" register --interactive --hostname waiting >"$T/int.reg" 2>&1 ||
	fail "interactive register: $(cat "$T/int.reg")"
AID=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["auth_id"])' "$T/int.reg") ||
	fail "no auth_id: $(cat "$T/int.reg")"
WIREMESH_SERVER=${RURL[2]} "$SRV" nodes pending >"$T/int.pending" || fail "nodes pending on replica 2"
grep -q "^$AID  *waiting " "$T/int.pending" || fail "replica 2 does not list replica 1's registration: $(cat "$T/int.pending")"
"$WM_NODE" --server "${RURL[2]}" --state "$T/int.json" wait "$AID" >"$T/int.wait" 2>&1 &
wp=$!; WM_PIDS+=("$wp")
polling() { ss -Htnp state established "( dport = :${RPORT[2]} )" | grep -q "pid=$wp,"; }
wait_for 10 polling || fail "the long-poll did not reach replica 2"
WIREMESH_SERVER=${RURL[3]} "$SRV" nodes register --user alice "$AID" >"$T/int.approve" 2>&1 ||
	fail "approval through replica 3: $(cat "$T/int.approve")"
t0=$(date +%s%N)
wait "$wp" || fail "the long-poll on replica 2 failed: $(cat "$T/int.wait")"
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
python3 -c 'import json,sys; w=json.load(open(sys.argv[1])); assert w["state"]=="done" and w["login"]=="alice" and w["node"]["name"]=="waiting", w' "$T/int.wait" ||
	fail "the long-poll on replica 2 answered: $(cat "$T/int.wait")"
[ "$(pg_sql "SELECT COUNT(*) FROM nodes WHERE hostname = 'waiting'")" = 1 ] || fail "the approved node is not stored once"
! WIREMESH_SERVER=${RURL[1]} "$SRV" nodes register --user alice "$AID" >"$T/int.again" 2>&1 ||
	fail "replica 1 approved the registration a second time"
grep -q 'already been used' "$T/int.again" || fail "second approval: $(cat "$T/int.again")"
ok "a registration begun on replica 1 is listed by 2, approved through 3, and 2's long-poll answers done ${ms} ms after; a second approval is refused"

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
# Expiry (the leader's job): node "exp", registered on replica 1, its stream
# on replica 2, expires within a second (set in the database, as node_expiry
# would).
node_at "$U1" exp register --authkey "$AK" --hostname exp >"$T/exp.reg" || fail "register exp"
exp_id=$(sed -E 's/.*"id":([0-9]+).*/\1/' "$T/exp.reg")
"$WM_NODE" --server "$U2" --state "$T/exp.json" map >"$T/mapexp" 2>/dev/null & expm=$!; WM_PIDS+=("$expm")
wait_for 10 grep -q '"type":"full"' "$T/mapexp" || fail "no full map for exp from replica 2"
pg_sql "UPDATE nodes SET expires_at = EXTRACT(EPOCH FROM now())::bigint + 1 WHERE id = $exp_id" >/dev/null
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
grep -q '^wiremesh_replica_list_size 3$' "$T/metrics2" || fail "replica 2's /metrics: $(grep list_size "$T/metrics2")"
port=$(free_port)
"$SRV" serve --db "$PG_URL" --listen "127.0.0.1:$port" --server-url "http://127.0.0.1:$port" \
	--derp --derp-region-id 902 --derp-hostname 127.0.0.1 >"$T/clash.log" 2>&1 &
cp=$!; WM_PIDS+=("$cp")
wait_for 15 sh -c "! kill -0 $cp 2>/dev/null" || fail "a replica with the DERP region id of a live one started"
wait "$cp" && fail "a replica with the DERP region id of a live one exited 0"
grep -q "derp_region_id 902 is already the embedded DERP region of the live replica $U2" "$T/clash.log" ||
	fail "no clear error for the region id clash: $(tail -3 "$T/clash.log")"
ok "every map names the 3 replicas and carries their 3 embedded DERP regions; replica 2's relay admits a node registered through replica 1 and relays to it from one registered through replica 3; a clashing region id is refused"

# The expiry reaches exp's own stream (its "self" says expired, the stream
# ends) and the peers' streams on replicas 2 and 3, each exactly once: one
# replica published it.
wait_for 10 sh -c "grep '\"self\"' '$T/mapexp' | grep -q '\"expired\":true'" || fail "exp's stream on replica 2 did not hear of its expiry"
wait_for 5 sh -c "! kill -0 $expm" || fail "exp's stream did not end after its expiry"
expired_in() { grep '"peer_changed"' "$1" | grep "\"id\":$exp_id," | grep -c '"expired":true'; }
wait_for 5 sh -c "grep '\"peer_changed\"' '$T/map3' | grep '\"id\":$exp_id,' | grep -q '\"expired\":true'" || fail "replica 3's stream did not hear of the expiry"

# The expiry was published once (checked now, seconds later: the other
# replicas had every chance to publish it too).
[ "$(expired_in "$T/map2")" = 1 ] || fail "replica 2's stream heard of the expiry $(expired_in "$T/map2") times"
[ "$(expired_in "$T/map3")" = 1 ] || fail "replica 3's stream heard of the expiry $(expired_in "$T/map3") times"
n=$(pg_sql "SELECT COUNT(*) FROM changes c JOIN nodes n ON n.id = c.node_id WHERE c.kind = 1 AND n.id = $exp_id AND c.created_at >= n.expires_at")
[ "$n" = 1 ] || fail "the expiry was logged $n times"
ok "the expiry of a node registered on replica 1 reaches its stream on replica 2 (self, then the end) and peers on replicas 2 and 3, exactly once"

# kill -9 of a replica under registration load: 60 registrations over the
# three replicas, 12 at a time; replica 3 dies once a dozen are in. Every
# registration answered 200/201 is in the database; the streams held by
# replica 3 (n1's, joiner's) resume on replicas 2 and 1 by version, deltas
# only, and hear of every acknowledged node.
node_at "$U3" joiner map --lines 100000 >"$T/mapj" 2>/dev/null & WM_PIDS+=($!)
# and "orph", whose stream dies with replica 3 and does not come back
node_at "$U1" orph register --authkey "$AK" --hostname orph >"$T/orph.reg" || fail "register orph"
orph=$(sed -E 's/.*"id":([0-9]+).*/\1/' "$T/orph.reg")
"$WM_NODE" --server "$U3" --state "$T/orph.json" map >/dev/null 2>&1 & WM_PIDS+=($!)
wait_for 10 grep -q '"type":"full"' "$T/mapj" || fail "no full map for joiner from replica 3"
# An "anonymous" replica announces nothing (no --server-url, no relay): its
# record and the flags it sets carry a name for the run, not in the nodes'
# list; it dies with replica 3 and the leader clears "orph4" too.
port=$(free_port)
"$SRV" serve --db "$PG_URL" --listen "127.0.0.1:$port" >"$T/anon.log" 2>&1 &
APID=$!; WM_PIDS+=("$APID"); UA=http://127.0.0.1:$port
wait_for 15 curl -sf "$UA/healthz" || fail "the anonymous replica did not start: $(tail -5 "$T/anon.log")"
node_at "$U1" orph4 register --authkey "$AK" --hostname orph4 >"$T/orph4.reg" || fail "register orph4"
orph4=$(sed -E 's/.*"id":([0-9]+).*/\1/' "$T/orph4.reg")
"$WM_NODE" --server "$UA" --state "$T/orph4.json" map >/dev/null 2>&1 & WM_PIDS+=($!)
wait_for 10 sh -c "psql -X -q -tA '$PG_URL' -c 'SELECT online_by FROM nodes WHERE id = $orph4' | grep -q '^run:'" ||
	fail "orph4's online flag has no run name of the anonymous replica: $(pg_sql "SELECT online, online_by FROM nodes WHERE id = $orph4")"
by4=$(pg_sql "SELECT online_by FROM nodes WHERE id = $orph4")
[ "$(pg_sql "SELECT COUNT(*) FROM replicas WHERE name = '$by4' AND server_url = ''")" = 1 ] ||
	fail "the anonymous replica's record is not in the replicas table as $by4"
wait_for 10 sh -c "[ \"\$(psql -X -q -tA '$PG_URL' -c 'SELECT online_by FROM nodes WHERE id = $orph')\" = '$U3' ]" ||
	fail "orph's online flag is not replica 3's"
v=$(grep -o '"version":[0-9]*' "$T/map3" | tail -1 | cut -d: -f2)
vj=$(grep -o '"version":[0-9]*' "$T/mapj" | tail -1 | cut -d: -f2)
[ -n "$v" ] && [ -n "$vj" ] || fail "no version seen on replica 3's streams"
base=$(pg_sql "SELECT COUNT(*) FROM nodes")
seq 1 60 | xargs -P 12 -I{} sh -c '
	i={}; r=$(( i % 3 + 1 ))
	eval "url=\$U$r"
	"$0" --server "$url" --state "$1/b$i.json" register --authkey "$2" --hostname "burst$i" >"$1/breg$i" 2>/dev/null ||
		rm -f "$1/breg$i"
' "$WM_NODE" "$T" "$AK" &
burst=$!
wait_for 15 sh -c "[ \$(psql -X -q -tA '$PG_URL' -c 'SELECT COUNT(*) FROM nodes') -ge $((base + 12)) ]" || fail "the registration burst did not start"
kill -9 "$APID"; kill -9 "${RPID[3]}"; t3=$SECONDS
wait "$burst"
acked=$(ls "$T"/breg* 2>/dev/null | wc -l)
[ "$acked" -ge 40 ] || fail "only $acked of 60 registrations acknowledged (those on replicas 1 and 2 must all be)"
names=$(cat "$T"/breg* | sed -E 's/.*"name":"([^"]*)".*/\1/' | sort)
indb=$(pg_sql "SELECT name FROM nodes WHERE hostname LIKE 'burst%'" | sort)
missing=$(comm -23 <(echo "$names") <(echo "$indb"))
[ -z "$missing" ] || fail "acknowledged registrations missing from the database: $missing"
node_at "$U2" n1 map --since "$v" --lines 100000 >"$T/resume" 2>/dev/null & WM_PIDS+=($!)
node_at "$U1" joiner map --since "$vj" --lines 100000 >"$T/resumej" 2>/dev/null & WM_PIDS+=($!)
all_in() { local n; for n in $names; do grep -q "\"name\":\"$n\"" "$1" || return 1; done; }
wait_for 10 all_in "$T/resume" || fail "n1's resume on replica 2 missed acknowledged nodes: $(head -c 600 "$T/resume")"
wait_for 10 all_in "$T/resumej" || fail "joiner's resume on replica 1 missed acknowledged nodes"
grep -q '"type":"full"' "$T/resume" "$T/resumej" && fail "resume on another replica sent a full map"
for i in 1 2; do kill -0 "${RPID[$i]}" || fail "replica $i died"; done
ok "kill -9 of replica 3 during 60 registrations: all $acked acknowledged are in the database; its two streams resume on replicas 2 and 1 by version (deltas only) with every one of them"

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
wait_for 5 grep -q '"First":4242' "$T/map2" || fail "replica 2's stream did not get the new filter"
ok "a policy stored through replica 1 is loaded by replica 2 and reaches its streams"

# Route primaries (the leader elects them, every replica applies the stored
# choice): routers r1 and r2 of 10.77.0.0/24 with their streams on replicas
# 1 and 2; both replicas name r1 (lower id) until r1's stream ends, then r2,
# in their REST answers and in the streams they hold (n1's resumed one on
# replica 2, joiner's on replica 1).
node_at "$U1" r1 register --authkey "$AK" --hostname r1 --routes 10.77.0.0/24 >"$T/r1.reg" || fail "register r1"
node_at "$U2" r2 register --authkey "$AK" --hostname r2 --routes 10.77.0.0/24 >"$T/r2.reg" || fail "register r2"
r1=$(sed -E 's/.*"id":([0-9]+).*/\1/' "$T/r1.reg"); r2=$(sed -E 's/.*"id":([0-9]+).*/\1/' "$T/r2.reg")
"$SRV" --server "$U1" nodes approve-routes "$r1" 10.77.0.0/24 >/dev/null || fail "approve r1"
"$SRV" --server "$U2" nodes approve-routes "$r2" 10.77.0.0/24 >/dev/null || fail "approve r2"
# r1 online first: an online primary stays when another router comes
is_online() { [ "$(pg_sql "SELECT online FROM nodes WHERE id = $1")" = 1 ]; }
"$WM_NODE" --server "$U1" --state "$T/r1.json" map >/dev/null 2>&1 & r1m=$!; WM_PIDS+=("$r1m")
wait_for 10 is_online "$r1" || fail "r1 not online"
"$WM_NODE" --server "$U2" --state "$T/r2.json" map >/dev/null 2>&1 & WM_PIDS+=($!)
wait_for 10 is_online "$r2" || fail "r2 not online"
serving() { # URL ID: the node serves 10.77.0.0/24 according to that replica
	curl -sf -H "Authorization: Bearer $WIREMESH_API_KEY" "$1/api/v1/nodes/$2/routes" |
		grep -q '"serving":\["10.77.0.0/24"\]'
}
primary_is() { # ID OTHER: both replicas and the database name ID, neither OTHER
	serving "$U1" "$1" && serving "$U2" "$1" && ! serving "$U1" "$2" && ! serving "$U2" "$2" &&
		[ "$(pg_sql "SELECT node_id FROM route_primaries WHERE prefix = '10.77.0.0/24'")" = "$1" ]
}
told() { # FILE ID: the stream's last message about ID names it primary
	grep -E '"(peer_added|peer_changed)"' "$1" | grep "\"id\":$2," | tail -1 | grep -q '"primary_routes":\["10.77.0.0/24"\]'
}
wait_for 10 primary_is "$r1" "$r2" || fail "replicas 1 and 2 do not both name r1 the primary: $(pg_sql "SELECT * FROM route_primaries")"
wait_for 5 told "$T/resume" "$r1" || fail "n1's stream on replica 2 was not told r1 is primary"
wait_for 5 told "$T/resumej" "$r1" || fail "joiner's stream on replica 1 was not told r1 is primary"
kill "$r1m"
wait_for 10 primary_is "$r2" "$r1" || fail "no failover to r2 on both replicas: $(pg_sql "SELECT * FROM route_primaries")"
for f in resume resumej; do
	wait_for 5 told "$T/$f" "$r2" || fail "stream $f was not told r2 is primary"
	told "$T/$f" "$r1" && fail "stream $f still names r1 primary"
done
ok "route primaries: replicas 1 and 2 (REST and streams held on each) name the same primary, and both fail over to r2 when r1 goes offline"

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
roles="ephemeral_cleanup expiry route_primary policy_file"
all_roles() { # URL: holds every role
	local m r; m=$(curl -sf "$1/metrics") || return 1
	for r in $roles; do grep -q "^wiremesh_replica_leader{role=\"$r\"} 1" <<<"$m" || return 1; done
}
all_roles "${RURL[$F]}" || fail "replica $F does not hold every role: $(curl -sf "${RURL[$F]}/metrics" | grep leader)"
ok "one replica (of 1 and 2: $L) cleans up ephemeral nodes; after kill -9 of it, replica $F takes over, with every role"


# Replica 3 (killed a while ago) drops out of the list once its record is
# stale; streams hear of it.
node_at "${RURL[$F]}" n1 map --lines 100000 >"$T/mapF" 2>/dev/null &
mf=$!; WM_PIDS+=("$mf")
wait_for 10 grep -q '"type":"full"' "$T/mapF" || fail "no full map from replica $F"
no3() { ! replicas_in "$T/mapF" -1 | grep -qF "$U3"; }
t0=$SECONDS
wait_for 30 no3 || fail "replica 3 is still announced: $(replicas_in "$T/mapF" -1)"
replicas_in "$T/mapF" -1 | grep -q ' 903' && fail "replica 3's DERP region is still announced"
# The leader clears the online flags replica 3 set and nobody took over:
# orph goes offline; n1, whose stream moved, stays online (now replica F's).
flag() { pg_sql "SELECT online, online_by FROM nodes WHERE id = $1"; }
wait_for 5 sh -c "[ \"\$(psql -X -q -tA '$PG_URL' -c 'SELECT online FROM nodes WHERE id = $orph')\" = 0 ]" ||
	fail "orph is still online after its replica dropped out: $(flag "$orph")"
wait_for 5 sh -c "[ \"\$(psql -X -q -tA '$PG_URL' -c 'SELECT online FROM nodes WHERE id = $orph4')\" = 0 ]" ||
	fail "orph4 is still online after the anonymous replica dropped out: $(flag "$orph4")"
n1=$(grep -o '"self":{"id":[0-9]*' "$T/map2" | head -1 | cut -d: -f3)
wait_for 5 sh -c "[ \"\$(psql -X -q -tA '$PG_URL' -c 'SELECT online, online_by FROM nodes WHERE id = $n1')\" = '1|${RURL[$F]}' ]" ||
	fail "n1 (streams on replica $F) is not online as replica $F's: $(flag "$n1")"
# (a stream on replica F since before replica 3 dropped out)
f=$T/resume; [ "$F" = 1 ] && f=$T/resumej
wait_for 5 sh -c "grep '\"online_flags\"' '$f' | grep -q '\"off\":\[[0-9,]*\b$orph\b'" ||
	fail "replica $F's stream was not told orph went offline"
ok "a replica killed drops out of the map's replica list and DERP map once its record is stale ($((SECONDS - t0)) s waited here, $((SECONDS - t3)) s after the kill); the leader clears the online flags it left (orph offline, n1 online on replica $F), and those of a replica with no URL (orph4)"

# policy_file (the leader's job): replicas 4 and 5 have the same file. When
# replica F stops (cleanly, leaving the replica list at once), one of them leads and stores the file's policy for every
# replica; a change of the file is stored once (by the leader, which checks
# the file every second) and followed by the other replica and its streams;
# SIGHUP stores nothing new.
printf '{ "acls": [{"action": "accept", "src": ["*"], "dst": ["*:5151"]}] }\n' >"$T/pf.hujson"
replica 4 --policy-file "$T/pf.hujson"; replica 5 --policy-file "$T/pf.hujson"
kill -TERM "${RPID[$F]}"
wait "${RPID[$F]}" || fail "replica $F did not exit cleanly on SIGTERM"
pg_sql "SELECT published FROM replica_list" | grep -qF "${RURL[$F]}" && fail "replica $F still listed after a clean stop"
leads() { all_roles "${RURL[4]}" && ! all_roles "${RURL[5]}" && echo 4 || { all_roles "${RURL[5]}" && ! all_roles "${RURL[4]}" && echo 5; }; }
wait_for 10 leads || fail "neither replica 4 nor 5 took every role after replica $F stopped"
P=$(leads); Q=$(( 9 - P ))
file_rows() { pg_sql "SELECT COUNT(*) FROM policies WHERE created_by = 'policy_file'"; }
wait_for 5 sh -c "[ \"\$(psql -X -q -tA '$PG_URL' -c \"SELECT COUNT(*) FROM policies WHERE created_by = 'policy_file'\")\" = 1 ]" ||
	fail "the new leader (replica $P) did not store the policy file"
node_at "${RURL[$Q]}" n1 map --lines 100000 >"$T/mapq" 2>/dev/null & WM_PIDS+=($!)
wait_for 10 grep -q '"type":"full"' "$T/mapq" || fail "no full map from replica $Q"
grep -q '"First":5151' "$T/mapq" || fail "replica $Q's stream does not have the file's policy"
printf '{ "acls": [{"action": "accept", "src": ["*"], "dst": ["*:6262"]}] }\n' >"$T/pf.hujson"
wait_for 5 grep -q '"First":6262' "$T/mapq" || fail "replica $Q's stream did not get the changed policy file"
etag=$(pg_sql "SELECT etag FROM policies ORDER BY id DESC LIMIT 1")
for i in 4 5; do
	curl -sf -D - -o /dev/null -H "Authorization: Bearer $WIREMESH_API_KEY" "${RURL[$i]}/api/v1/policy" |
		tr -d '\r' | grep -qF "ETag: $etag" || fail "replica $i does not serve the policy file's new version"
done
kill -HUP "${RPID[4]}" "${RPID[5]}"
wait_for 5 grep -q 'policy file unchanged' "$T/replica$P.log" || fail "the leader did not reload on SIGHUP"
wait_for 5 grep -q 'the leader replica loads it' "$T/replica$Q.log" || fail "replica $Q did not defer to the leader on SIGHUP"
[ "$(file_rows)" = 2 ] || fail "$(file_rows) policy versions stored from the file, not 2 (one per change)"
[ "$(grep -c 'policy file stored for every replica' "$T/replica$P.log")" = 2 ] || fail "the leader stored the file other than once per change"
[ "$(grep -c 'policy changed through another replica' "$T/replica$Q.log")" = 1 ] || fail "replica $Q loaded the change other than once"
! grep -q 'policy file stored' "$T/replica$Q.log" || fail "replica $Q stored the policy file without the role"
ok "policy_file: the leader (replica $P) stores each version once; replica $Q and its streams follow; SIGHUP stores nothing new"

# kill -9 of that leader: replica Q takes every role; it stops cleanly
# (under ASan: no leak, no error at exit).
kill -9 "${RPID[$P]}"
wait_for 10 all_roles "${RURL[$Q]}" || fail "replica $Q did not take every role after replica $P was killed"
kill -TERM "${RPID[$Q]}"
wait "${RPID[$Q]}" || fail "replica $Q did not exit cleanly on SIGTERM"
! grep -l 'Sanitizer\|runtime error:' "$T"/replica*.log "$T"/clash.log 2>/dev/null ||
	fail "sanitizer report: $(grep -h -A5 'Sanitizer\|runtime error:' "$T"/replica*.log "$T"/clash.log | head -20)"
ok "after kill -9 of the leader (replica $P), replica $Q holds every role; replicas stop cleanly"
