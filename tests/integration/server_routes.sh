#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Subnet routes and exit nodes on the control server: advertised routes do
# nothing until approved (CLI/REST) or auto-approved by the policy; served
# routes appear in peers' netmaps as allowed IPs of the router; with two
# routers for one prefix one is primary and the other takes over when it
# goes offline; malformed routes are refused with a clear error.
. "$(dirname "$0")/lib.sh"

bootstrap
# Default keepalive (10 s): a client that vanishes is noticed by the
# server's once-a-second check of sleeping streams, not by a failed write.
start_server
"$SRV" users create alice >/dev/null
AK=$("$SRV" preauthkeys create --user alice --reusable)
id_of() { sed -E 's/.*"id":([0-9]+).*/\1/' "$T/$1.reg"; }
reg() { local n=$1; shift; node "$n" register --authkey "$AK" --hostname "$n" "$@" >"$T/$n.reg" || fail "register $n: $(cat "$T/$n.reg")"; }

reg r1 --routes 198.18.0.0/24,0.0.0.0/0,::/0
reg r2 --routes 198.18.0.0/24
reg c
r1=$(id_of r1); r2=$(id_of r2)
# peer_json FILE ID: the peer object with that id from a full map line.
peer_json() { python3 -c 'import json,sys
m=json.loads(open(sys.argv[1]).readline())
print(json.dumps([p for p in m["peers"] if p["id"]==int(sys.argv[2])][0],separators=(",",":")))' "$1" "$2"; }

node c map --lines 1 >"$T/m0" || fail "map"
peer_json "$T/m0" "$r1" | grep -q '198.18.0.0/24' && fail "unapproved route served: $(peer_json "$T/m0" "$r1")"
"$SRV" nodes routes "$r1" >"$T/rt" || fail "nodes routes"
grep -q 'advertised: 0.0.0.0/0,198.18.0.0/24,::/0' "$T/rt" || fail "advertised routes not shown: $(cat "$T/rt")"
grep -q 'serving:    -' "$T/rt" || fail "serves before approval: $(cat "$T/rt")"
ok "advertised routes are stored and not served before approval"

"$SRV" nodes approve-routes "$r1" 198.18.0.0/24,0.0.0.0/0 >"$T/ap" || fail "approve-routes: $(cat "$T/ap")"
grep -q 'serving:    0.0.0.0/0,198.18.0.0/24' "$T/ap" || fail "not serving after approval: $(cat "$T/ap")"
node c map --lines 1 >"$T/m1" || fail "map"
p=$(peer_json "$T/m1" "$r1")
echo "$p" | grep -q '"allowed_ips":\["100\.[0-9.]*/32","fd7a[0-9a-f:]*/128","0.0.0.0/0","198.18.0.0/24"\]' ||
	fail "approved routes not in the router's allowed IPs: $p"
echo "$p" | grep -q '"exit_node":true' || fail "exit node not marked: $p"
echo "$p" | grep -q '::/0' && fail "unapproved ::/0 served: $p"
ok "approved routes appear as allowed IPs of the router in peers' netmaps; exit node marked"

# Errors: host bits set, not a prefix, too many; nothing changes.
st=$(api POST "/api/v1/nodes/$r2/routes" '{"approved":["198.18.0.1/24"]}')
case "$st" in 400*"host bits"*) ;; *) fail "bad prefix not refused clearly: $st" ;; esac
st=$(api POST "/api/v1/nodes/$r2/routes" '{"approved":"198.18.0.0/24"}')
case "$st" in 400*) ;; *) fail "non-array accepted: $st" ;; esac
node bad register --authkey "$AK" --hostname bad --routes 300.1.0.0/16 >"$T/bad" 2>&1 && fail "bad advertised route accepted"
grep -q 'advertised_routes\[0\]' "$T/bad" || fail "no clear error for a bad advertised route: $(cat "$T/bad")"
api GET "/api/v1/nodes/$r2/routes" | grep -q '"approved":\[\]' || fail "a refused request changed the routes"
ok "malformed routes refused with 400 and a clear message; nothing changed"

# High availability: both routers approved for the prefix; r1 (online, first)
# is primary; when r1 goes offline r2 takes over, and peers are told.
"$SRV" nodes approve-routes "$r2" 198.18.0.0/24 >/dev/null || fail "approve r2"
# Started directly (not through the shell function) so $! is wm-node itself.
"$WM_NODE" --server "$URL" --state "$T/c.json" map >"$T/cstream" 2>/dev/null & WM_PIDS+=($!)
online() { api GET "/api/v1/nodes/$1" | grep -q '"online":true'; }
# r1 (the primary while both were offline: lowest id) comes online first and
# stays primary when r2 joins: an online primary is never replaced.
"$WM_NODE" --server "$URL" --state "$T/r1.json" map >/dev/null 2>&1 & r1map=$!; WM_PIDS+=($r1map)
wait_for 10 online "$r1" || fail "r1 not online"
"$WM_NODE" --server "$URL" --state "$T/r2.json" map >/dev/null 2>&1 & WM_PIDS+=($!)
wait_for 10 online "$r2" || fail "r2 not online"
serving() { api GET "/api/v1/nodes/$1/routes" | grep -q "\"serving\":\[[^]]*\"$2\""; }
serving "$r1" 198.18.0.0/24 || fail "r1 not primary: $(api GET "/api/v1/nodes/$r1/routes")"
serving "$r2" 198.18.0.0/24 && fail "two primaries for one prefix"
start=$(date +%s)
kill "$r1map"
wait_for 5 serving "$r2" 198.18.0.0/24 || fail "r2 did not take over within 5 s (keepalive 10 s: the vanished stream must be noticed without it): $(api GET "/api/v1/nodes/$r2/routes") r1: $(api GET "/api/v1/nodes/$r1")"
took=$(( $(date +%s) - start ))
serving "$r1" 198.18.0.0/24 && fail "offline r1 still primary"
serving "$r1" 0.0.0.0/0 || fail "exit route should stay with r1"
pushed() { grep '"peer_changed"' "$T/cstream" | grep "\"id\":$r2," | grep -q '198.18.0.0/24'; }
wait_for 5 pushed || fail "peers were not told about the new primary"
ok "two routers for one prefix: one primary; failover to the other in ${took}s, pushed to peers"

# autoApprovers: routes and exit nodes approved by the policy, at
# registration and when a policy arrives later.
reg r4 --routes 10.10.0.0/16
cat >"$T/pol.hujson" <<'POL'
{
	"acls": [{"action": "accept", "src": ["*"], "dst": ["*:*"]}],
	"autoApprovers": {
		"routes": {"10.9.0.0/16": ["alice@"], "10.10.0.0/16": ["alice@"]},
		"exitNode": ["alice@"],
	},
}
POL
"$SRV" policy set -f "$T/pol.hujson" >/dev/null || fail "policy set"
r4=$(id_of r4)
wait_for 5 serving "$r4" 10.10.0.0/16 || fail "policy did not approve an earlier advertised route: $(api GET "/api/v1/nodes/$r4/routes")"
reg r3 --routes 10.9.0.0/16,0.0.0.0/0,192.0.2.0/24
r3=$(id_of r3)
rt=$(api GET "/api/v1/nodes/$r3/routes")
echo "$rt" | grep -q '"approved":\["0.0.0.0/0","10.9.0.0/16"\]' || fail "autoApprovers did not approve at registration: $rt"
ok "autoApprovers approve routes and exit nodes at registration and on a new policy; others wait"
