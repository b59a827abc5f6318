#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# A router whose link is cut (no FIN, no reset: its packets dropped by
# nftables in its namespace, as with a cut cable or power loss) is marked
# offline within 2 x keepalive_interval + 5 s, and its subnet route fails
# over to the second router, pushed to a peer's open map stream.
#
#   [ns S: server, r2, c] 203.0.113.1 ---veth--- 203.0.113.2 [ns X: r1]
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/netns.sh"

K=2			# keepalive_interval, seconds
BOUND=$((2 * K + 5))
S=wm${NETNS_SFX}s; X=wm${NETNS_SFX}x
netns_new "$S"; netns_new "$X"
ip link add "wm${NETNS_SFX}a" netns "$S" type veth peer name "wm${NETNS_SFX}b" netns "$X" ||
	fail "veth"
ip -n "$S" link set "wm${NETNS_SFX}a" name eth0; ip -n "$X" link set "wm${NETNS_SFX}b" name eth0
ip -n "$S" addr add 203.0.113.1/24 dev eth0; ip -n "$X" addr add 203.0.113.2/24 dev eth0
ip -n "$S" link set eth0 up; ip -n "$X" link set eth0 up
ip netns exec "$X" ping -c1 -W2 203.0.113.1 >/dev/null || fail "no link between the namespaces"

bootstrap
PORT=$(free_port)
URL=http://203.0.113.1:$PORT
WM_SERVER_LOG=$T/server.log
WIREMESH_KEEPALIVE_INTERVAL=${K}s bg_in "$S" "$WM_SERVER_LOG" "$SRV" serve --listen "203.0.113.1:$PORT" \
	--db "$T/db.sqlite"
SERVER_PID=$BG_PID
inS() { ip netns exec "$S" "$@"; }
wait_for 10 inS curl -sf "$URL/healthz" || fail "server did not start"
export WIREMESH_SERVER=$URL
inS "$SRV" users create alice >/dev/null || fail "users create"
AK=$(inS "$SRV" preauthkeys create --user alice --reusable) || fail "preauthkeys"
nd() { local ns=$1 n=$2; shift 2; ip netns exec "$ns" "$WM_NODE" --server "$URL" --state "$T/$n.json" "$@"; }
id_of() { sed -E 's/.*"id":([0-9]+).*/\1/' "$T/$1.reg"; }
nd "$X" r1 register --authkey "$AK" --hostname r1 --routes 198.18.0.0/24 >"$T/r1.reg" || fail "register r1"
nd "$S" r2 register --authkey "$AK" --hostname r2 --routes 198.18.0.0/24 >"$T/r2.reg" || fail "register r2"
nd "$S" c register --authkey "$AK" --hostname c >"$T/c.reg" || fail "register c"
r1=$(id_of r1); r2=$(id_of r2)
inS "$SRV" nodes approve-routes "$r1" 198.18.0.0/24 >/dev/null || fail "approve r1"
inS "$SRV" nodes approve-routes "$r2" 198.18.0.0/24 >/dev/null || fail "approve r2"

online() { ip netns exec "$S" curl -s -H "Authorization: Bearer $WIREMESH_API_KEY" "$URL/api/v1/nodes/$1" | grep -q '"online":true'; }
offline() { ip netns exec "$S" curl -s -H "Authorization: Bearer $WIREMESH_API_KEY" "$URL/api/v1/nodes/$1" | grep -q '"online":false'; }
serving() { ip netns exec "$S" curl -s -H "Authorization: Bearer $WIREMESH_API_KEY" "$URL/api/v1/nodes/$1/routes" | grep -q "\"serving\":\[[^]]*\"$2\""; }

bg_in "$X" "$T/r1.out" "$WM_NODE" --server "$URL" --state "$T/r1.json" map
wait_for 10 online "$r1" || fail "r1 not online"
bg_in "$S" "$T/r2.out" "$WM_NODE" --server "$URL" --state "$T/r2.json" map
wait_for 10 online "$r2" || fail "r2 not online"
bg_in "$S" "$T/cstream" "$WM_NODE" --server "$URL" --state "$T/c.json" map
wait_for 10 grep -q '"type":"full"' "$T/cstream" || fail "c got no map"
serving "$r1" 198.18.0.0/24 || fail "r1 not primary"
# a few keepalives go by on r1's healthy stream: it stays online
sleep $((K + 1))
online "$r1" || fail "r1 went offline on a healthy link"

# The cut: everything in and out of r1's namespace dropped, no reset.
ip netns exec "$X" nft -f - <<'NFT' || fail "nft"
table inet wmcut {
	chain in { type filter hook input priority 0; policy drop; }
	chain out { type filter hook output priority 0; policy drop; }
}
NFT
start=$(date +%s%N)
wait_for $((BOUND + 10)) offline "$r1" || fail "r1 still online $((BOUND + 10)) s after its link was cut"
took_ms=$(( ($(date +%s%N) - start) / 1000000 ))
[ "$took_ms" -le $((BOUND * 1000)) ] || fail "r1 offline after ${took_ms} ms; the bound is 2 x ${K} s + 5 s = ${BOUND} s"
wait_for 3 serving "$r2" 198.18.0.0/24 || fail "r2 did not take over"
serving "$r1" 198.18.0.0/24 && fail "cut r1 still primary"
pushed() { grep '"peer_changed"' "$T/cstream" | grep "\"id\":$r2," | grep -q '198.18.0.0/24'; }
wait_for 3 pushed || fail "c was not told about the new primary"
off_pushed() { grep '"online_flags"' "$T/cstream" | grep -q "\"off\":\[[^]]*\b$r1\b"; }
off_pushed || fail "c was not told r1 is offline: $(grep online_flags "$T/cstream" | tail -2)"
ok "link cut (nftables drop): r1 offline in ${took_ms} ms (bound ${BOUND} s with keepalive ${K} s); 198.18.0.0/24 moved to r2, pushed to c"
