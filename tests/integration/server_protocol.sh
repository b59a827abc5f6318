#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The signed node protocol: signatures, stale timestamps, replays, same
# machine = same node, key rotation, map streams with deltas and resume,
# logout, ephemeral cleanup, address pool exhaustion and reuse, and a
# database newer than the binary.
. "$(dirname "$0")/lib.sh"

bootstrap
start_server --ephemeral-timeout 1s
"$SRV" users create alice >/dev/null
AK=$("$SRV" preauthkeys create --user alice --reusable)

node a register --authkey "$AK" --hostname alpha >"$T/a" || fail "register a"
ida=$(sed -E 's/.*"id":([0-9]+).*/\1/' "$T/a")
node a register --authkey "$AK" --hostname alpha >"$T/a2" || fail "register a again"
grep -q "\"id\":$ida," "$T/a2" || fail "same machine got a new node: $(cat "$T/a2")"
"$WM_NODE" --state "$T/a.json" rotate
node a register --hostname alpha >"$T/a3" || fail "node key rotation without auth key"
grep -q "\"id\":$ida," "$T/a3" || fail "rotation made a new node"
[ "$(grep -o '"node_key":"[^"]*"' "$T/a")" != "$(grep -o '"node_key":"[^"]*"' "$T/a3")" ] ||
	fail "node key did not change"
n=$(curl -s -H "Authorization: Bearer $WIREMESH_API_KEY" "$URL/api/v1/nodes" | grep -o '"machine_key"' | wc -l)
[ "$n" = 1 ] || fail "expected 1 node, got $n"
node z register --hostname zed 2>"$T/err" && fail "unknown machine without auth key accepted"
grep -q 401 "$T/err" || fail "status for unknown machine"
ok "same machine key updates its node; node key rotation; auth key needed for new machines"

# Signatures: tampered body, stale timestamp, replay.
body='{"version":0}'
"$WM_NODE" --state "$T/a.json" sign /machine/endpoints '{"endpoints":[]}' >"$T/h"
hdrs=(); while IFS= read -r l; do hdrs+=(-H "$l"); done <"$T/h"
r=$(curl -s -o "$T/o" -w '%{http_code}' "${hdrs[@]}" --data-binary '{"endpoints":["192.0.2.9:1"]}' "$URL/machine/endpoints")
[ "$r" = 401 ] && grep -q 'signature' "$T/o" || fail "tampered body: $r $(cat "$T/o")"
r=$(curl -s -o "$T/o" -w '%{http_code}' "${hdrs[@]}" --data-binary '{"endpoints":[]}' "$URL/machine/endpoints")
[ "$r" = 200 ] || fail "valid signed request: $r $(cat "$T/o")"
r=$(curl -s -o "$T/o" -w '%{http_code}' "${hdrs[@]}" --data-binary '{"endpoints":[]}' "$URL/machine/endpoints")
[ "$r" = 401 ] && grep -q replay "$T/o" || fail "replay accepted: $r $(cat "$T/o")"
"$WM_NODE" --state "$T/a.json" --clock-offset -3600 sign /machine/endpoints '{"endpoints":[]}' >"$T/h"
hdrs=(); while IFS= read -r l; do hdrs+=(-H "$l"); done <"$T/h"
r=$(curl -s -o "$T/o" -w '%{http_code}' "${hdrs[@]}" --data-binary '{"endpoints":[]}' "$URL/machine/endpoints")
[ "$r" = 401 ] && grep -q timestamp "$T/o" || fail "stale timestamp: $r $(cat "$T/o")"
r=$(curl -s -o "$T/o" -w '%{http_code}' --data-binary '{}' "$URL/machine/map")
[ "$r" = 401 ] || fail "unsigned request: $r"
r=$(curl -s -o "$T/o" -w '%{http_code}' -H 'Wiremesh-Machine: mkey:zz' -H 'Wiremesh-Timestamp: 1' \
	-H 'Wiremesh-Nonce: 00' -H 'Wiremesh-Signature: 00' --data-binary '{}' "$URL/machine/map")
[ "$r" = 400 ] || fail "malformed machine key: $r"
node a endpoints not-an-endpoint 2>/dev/null && fail "bad endpoint accepted"
ok "tampered, stale, replayed, unsigned and malformed requests refused"

# Map stream: full map first, then deltas for a join and an endpoint change.
node a map --lines 4 >"$T/map" 2>/dev/null &
mp=$!; WM_PIDS+=("$mp")
wait_for 5 grep -q '"type":"full"' "$T/map" || fail "no full map"
node b register --authkey "$AK" --hostname beta >/dev/null || fail "register b"
wait_for 5 grep -q '"peer_added"' "$T/map" || fail "no peer_added delta"
node b endpoints 192.0.2.20:41641 --home-derp 2 >/dev/null || fail "endpoints b"
wait_for 5 grep -q '"endpoints":\["192.0.2.20:41641"\]' "$T/map" || fail "no endpoint delta"
wait "$mp" || true
v=$(grep '"peer_added"' "$T/map" | sed -E 's/.*"version":([0-9]+).*/\1/' | head -n1)
node c register --authkey "$AK" --hostname gamma >/dev/null
node a map --since "$v" --lines 2 >"$T/resume" 2>/dev/null || true
grep -q '"type":"full"' "$T/resume" && fail "resume sent a full map"
grep -q '"name":"gamma"' "$T/resume" || fail "resume missed a change: $(cat "$T/resume")"
node a map --since 12345 --lines 1 >"$T/old" 2>/dev/null || true
grep -q '"type":"full"' "$T/old" || fail "unknown version did not get a full map"
ok "map stream: full map, peer added, endpoints changed, resume by version"

# Logout expires the node; an ephemeral node is deleted after inactivity.
node c logout >/dev/null || fail "logout"
node c map --lines 1 2>/dev/null && fail "logged-out node got a map"
EK=$("$SRV" preauthkeys create --user alice --ephemeral)
node e register --authkey "$EK" --hostname eph >"$T/e" || fail "register ephemeral"
ide=$(sed -E 's/.*"id":([0-9]+).*/\1/' "$T/e")
node e map --lines 1 >/dev/null 2>&1 || true
gone() { [ "$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $WIREMESH_API_KEY" "$URL/api/v1/nodes/$ide")" = 404 ]; }
wait_for 10 gone || fail "ephemeral node not removed after inactivity"
ok "logout refuses further maps; ephemeral node removed after its stream ended"

# An admin expiring a node ends its open map stream after telling it.
node x register --authkey "$AK" --hostname xnode >"$T/x" || fail "register x"
idx=$(sed -E 's/.*"id":([0-9]+).*/\1/' "$T/x")
"$WM_NODE" --server "$URL" --state "$T/x.json" map >"$T/xstream" 2>/dev/null & xpid=$!; WM_PIDS+=($xpid)
wait_for 10 grep -q '"type":"full"' "$T/xstream" || fail "x got no full map"
"$SRV" nodes expire "$idx" >/dev/null || fail "nodes expire"
gone_proc() { ! kill -0 "$xpid" 2>/dev/null; }
wait_for 10 gone_proc || fail "the expired node's map stream stayed open"
tail -n 1 "$T/xstream" | grep -q '"self":.*"expired":true' || fail "last message was not the expiry: $(tail -n 1 "$T/xstream")"
ok "expiring a node tells its open stream and ends it"
stop_server

# A tiny pool: exhaustion gives a clear error, deletion frees the address.
DB=$T/pool.sqlite; unset PORT
bootstrap
WIREMESH_PREFIX_V4=100.64.7.0/29 start_server
"$SRV" users create pool >/dev/null
PK=$("$SRV" preauthkeys create --user pool --reusable)
for i in 1 2 3 4 5 6; do node "p$i" register --authkey "$PK" --hostname "p$i" >"$T/p$i" || fail "pool node $i"; done
node p7 register --authkey "$PK" --hostname p7 2>"$T/err" >"$T/p7" && fail "pool over-allocated"
grep -q 'exhausted' "$T/p7" || fail "no clear exhaustion error: $(cat "$T/p7")"
addrs=$(cat "$T"/p[1-6] | grep -o '"ipv4":"[^"]*"' | sort -u | wc -l)
[ "$addrs" = 6 ] || fail "addresses not distinct: $addrs"
freed=$(grep -o '"ipv4":"[^"]*"' "$T/p3")
id3=$(sed -E 's/.*"id":([0-9]+).*/\1/' "$T/p3")
"$SRV" nodes delete --force "$id3" >/dev/null || fail "delete"
node p7 register --authkey "$PK" --hostname p7 >"$T/p7" || fail "register after delete"
grep -q "$freed" "$T/p7" || fail "freed address not reused: $(cat "$T/p7")"
# Ids are never reused, even the highest one just deleted.
id7=$(sed -E 's/.*"id":([0-9]+).*/\1/' "$T/p7")
"$SRV" nodes delete --force "$id7" >/dev/null || fail "delete p7"
node p8 register --authkey "$PK" --hostname p8 >"$T/p8" || fail "register p8"
id8=$(sed -E 's/.*"id":([0-9]+).*/\1/' "$T/p8")
[ "$id8" -gt "$id7" ] || fail "node id $id7 reused (got $id8)"
ok "address pool: distinct addresses, clear exhaustion error, freed on delete; ids never reused"
stop_server

sqlite3 "$DB" "INSERT INTO schema_migrations VALUES (9999, 'future', 0)" || fail "sqlite3"
"$SRV" serve --listen 127.0.0.1:0 --db "$DB" >"$T/newer.log" 2>&1 && fail "newer database accepted"
grep -q 'newer than this binary' "$T/newer.log" || fail "no clear message: $(cat "$T/newer.log")"
ok "a database newer than the binary is refused"
