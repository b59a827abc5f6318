#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Subnet routers and exit nodes end to end (issue 8), in the netns.sh
# topology. Nodes (all behind easy NATs):
#   node1  client, --accept-routes (later --exit-node node2)
#   node2  router A: --advertise-routes 192.0.2.240/28 --advertise-exit-node
#   node3  router B: --advertise-routes 192.0.2.240/28 (standby for HA)
#   node4  client without --accept-routes
# A "subnet" namespace holds the LAN behind the routers (192.0.2.240/28 on a
# bridge): the LAN host 192.0.2.242, router A's side 192.0.2.241, router B's
# 192.0.2.243. The internet namespace's 203.0.113.3 stands for "the internet"
# for the exit node. Web servers answer with the client address they see.
#
# Checked: routes do nothing before approval; after approval node1 reaches
# the LAN host through router A (masqueraded) and node4 does not; status
# shows who offers what; an exit node carries node1's internet traffic
# while the agent's own traffic stays direct, and the local LAN only with
# --exit-node-allow-lan-access; with a policy only the allowed
# port passes (the router's filter drops the rest) and the exit node
# forwards nothing without autogroup:internet; killing router A's wiremeshd
# moves the prefix to router B within 15 s; with A back, B's `down`
# withdraws its routes and the prefix moves to A at once; down removes the
# router's forwarding and NAT table.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/netns.sh"
for t in openssl curl python3 ping; do command -v $t >/dev/null || skip "missing $t"; done
[ -x "$WM_BIN/wiremeshd" ] && [ -x "$WM_BIN/wiremesh" ] || fail "wiremeshd/wiremesh not built in $WM_BIN"
[ -c /dev/net/tun ] || skip "no /dev/net/tun"

SUBNET=192.0.2.240/28
LANHOST=192.0.2.242
SUBNET6=2001:db8:240::/64	# router A only
LANHOST6=2001:db8:240::2
INET_WEB=203.0.113.3

fail() {
	echo "FAIL: $*" >&2
	for f in "$T"/n*/agent.log; do
		[ -f "$f" ] && { echo "--- $f" >&2; grep -v 'level=debug' "$f" | tail -n 12 >&2; }
	done
	exit 1
}

netns_setup
for i in 1 2 3 4; do netns_add_node "$i" easy; done
# the LAN behind the routers
NS_SUB=wm${NETNS_SFX}s
netns_new "$NS_SUB"
ip -n "$NS_SUB" link add br0 type bridge || fail "subnet bridge"
ip -n "$NS_SUB" addr add "$LANHOST/28" dev br0
ip -n "$NS_SUB" addr add "$LANHOST6/64" dev br0 nodad
ip -n "$NS_SUB" link set br0 up
for i in 2 3; do
	ip link add sub netns "$(node_ns "$i")" type veth peer name "s$i" netns "$NS_SUB" || fail "veth s$i"
	ip -n "$NS_SUB" link set "s$i" master br0 up
	ip -n "$(node_ns "$i")" addr add "192.0.2.$((239 + 2 * (i - 1)))/28" dev sub
	ip -n "$(node_ns "$i")" link set sub up
done
ip -n "$(node_ns 2)" addr add 2001:db8:240::1/64 dev sub nodad

mesh_ca control.test 203.0.113.1
# The server notices a killed node's closed map stream only at its second
# keepalive write after the death (the stream's connection is suspended
# between messages), i.e. 1-2 keepalive intervals: 10-20 s with the default
# 10 s. 5 s here keeps the HA check inside its 15 s budget every time;
# ROUTES_KEEPALIVE=10s measures the default (docs/benchmarks.md "Routes").
WIREMESH_KEEPALIVE_INTERVAL=${ROUTES_KEEPALIVE:-5s} mesh_start_control
AUTHKEY=$(mesh_authkey alice) || fail "no auth key"

# a web server that answers with the client's address
cat >"$T/who.py" <<'PY'
import http.server, socket, socketserver, sys
class S(http.server.ThreadingHTTPServer):
    address_family = socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET
    def server_bind(self):
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = "h", self.server_address[1]
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        b = (self.client_address[0] + "\n").encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(b)))
        self.end_headers()
        self.wfile.write(b)
    def log_message(self, *a):
        pass
S((sys.argv[1], int(sys.argv[2])), H).serve_forever()
PY
for p in 80 22; do bg_in "$NS_SUB" "$T/lan$p.log" python3 "$T/who.py" "$LANHOST" "$p"; done
bg_in "$NS_SUB" "$T/lan6.log" python3 "$T/who.py" "$LANHOST6" 80
bg_inet "$T/inet.log" python3 "$T/who.py" "$INET_WEB" 8090
wait_for 5 ip netns exec "$NS_SUB" curl -s --max-time 1 "http://$LANHOST:80/" || fail "LAN web server"
wait_for 5 ip netns exec "$NS_SUB" curl -s --max-time 1 "http://[$LANHOST6]:80/" || fail "LAN web server (IPv6)"
wait_for 5 in_inet curl -s --max-time 1 "http://$INET_WEB:8090/" || fail "internet web server"

up() {	# I ARGS...
	local i=$1; shift
	[ -n "${AGENT_PID[$i]:-}" ] || mesh_start_agent "$i"
	wm "$i" up --login-server "$CONTROL_URL" --authkey "$AUTHKEY" --hostname "node$i" "$@" >"$T/up$i" 2>&1 ||
		{ cat "$T/up$i"; fail "node $i: up $* failed"; }
}
ip4() { wm "$1" ip -4; }
get() { in_node "$1" curl -s --max-time "${3:-2}" "http://$2/"; }	# I HOST:PORT [TIMEOUT]
get_is() { [ "$(get "$1" "$2")" = "$3" ]; }
node_id() {
	srv nodes list --json | python3 -c 'import json,sys
d=json.load(sys.stdin); d=d.get("nodes", d) if isinstance(d, dict) else d
print([n["id"] for n in d if n["name"] == sys.argv[1]][0])' "$1"
}
status_has() { wm "$1" status | grep -qF -- "$2"; }
default_via_tun() { in_node 1 ip route show table 57 2>/dev/null | grep -q '^default dev wm0'; }

up 2 --advertise-routes "$SUBNET,$SUBNET6" --advertise-exit-node
up 3 --advertise-routes "$SUBNET"
up 1 --reset --accept-routes
up 4
ID2=$(node_id node2) && ID3=$(node_id node3) || fail "node ids"

# A router turns forwarding on and masquerades mesh traffic to the LAN.
[ "$(in_node 2 sysctl -n net.ipv4.ip_forward)" = 1 ] || fail "router A: IPv4 forwarding is off"
[ "$(in_node 2 sysctl -n net.ipv6.conf.all.forwarding)" = 1 ] || fail "router A (exit node): IPv6 forwarding is off"
in_node 2 nft list table inet wiremesh | grep -q 'iifname "wm0" oifname != "wm0" masquerade' ||
	fail "router A: no masquerade rule: $(in_node 2 nft list ruleset)"
[ "$(in_node 3 sysctl -n net.ipv6.conf.all.forwarding)" = 0 ] || fail "router B: IPv6 forwarding on without an IPv6 route"
wm 2 status | grep -qF "# Advertising: $SUBNET,$SUBNET6, exit node" || fail "router A status: $(wm 2 status)"
ok "routers: forwarding on (IPv6 only where needed), masquerade table installed, status shows the offer"

# Not approved yet: nothing is routed to the LAN.
wait_for 10 status_has 1 node2 || fail "node1 does not list node2"
get 1 "$LANHOST:80" && fail "node1 reached the LAN host before the route was approved"
status_has 1 "# Routes: node2" && fail "unapproved route shown as offered: $(wm 1 status)"
ok "before approval: the LAN host is unreachable and no route is shown"

t0=$(date +%s%N)
srv nodes approve-routes "$ID2" "$SUBNET,$SUBNET6,0.0.0.0/0,::/0" >/dev/null || fail "approve-routes node2"
via_a() { [ "$(get 1 "$LANHOST:80" 1)" = 192.0.2.241 ]; }
route_in() { in_node 1 ip route show table 57 2>/dev/null | grep -q "^$SUBNET dev wm0"; }
wait_for 15 route_in || fail "node1: no route for $SUBNET in table 57 after approval"
echo "approval to the route in node1's table 57: $(( ($(date +%s%N) - t0) / 1000000 )) ms"
wait_for 15 via_a || fail "node1 cannot reach $LANHOST:80 through router A after approval (got '$(get 1 "$LANHOST:80")')"
t1=$(date +%s%N)
echo "approval to first HTTP reply through the subnet router: $(( (t1 - t0) / 1000000 )) ms"
status_has 1 "# Routes: node2 offers $SUBNET,$SUBNET6 (accepted), an exit node" || fail "node1 status: $(wm 1 status)"
wm 1 status --json | python3 -c 'import json,sys
d=json.load(sys.stdin); p=[p for p in d["peers"] if p["name"]=="node2"][0]
assert p["primary_routes"]==[sys.argv[1], sys.argv[2]] and p["exit_node"] and p["routes_accepted"] and not p["exit_node_in_use"], p
assert d["accept_routes"] and d["exit_node"] is None, d' "$SUBNET" "$SUBNET6" || fail "node1 status --json"
in_node 1 ip route show table 57 | grep -q "^$SUBNET dev wm0" || fail "node1: no route for $SUBNET in table 57"
# node4 has no --accept-routes: it ignores the route
get 4 "$LANHOST:80" && fail "node4 (no --accept-routes) reached the LAN host"
[ -z "$(in_node 4 ip route show table 57 2>/dev/null)" ] || fail "node4 installed routes: $(in_node 4 ip route show table 57)"
status_has 4 "# Routes: node2 offers $SUBNET,$SUBNET6 (not used: run up --accept-routes)" || fail "node4 status: $(wm 4 status)"
# IPv6: the same through router A (forwarding and masquerading for IPv6 too)
out=$(in_node 1 curl -s --max-time 3 "http://[$LANHOST6]:80/") || fail "node1 cannot reach [$LANHOST6]:80 (table 57: $(in_node 1 ip -6 route show table 57))"
[ "$out" = 2001:db8:240::1 ] || fail "node1 -> [$LANHOST6]:80 seen as '$out', expected router A's 2001:db8:240::1"
ok "after approval: node1 reaches the LAN host via router A over IPv4 and IPv6 (masqueraded as 192.0.2.241 / 2001:db8:240::1); node4 without --accept-routes does not"

# Exit node: node1's internet traffic leaves through node2's NAT.
own=$(get 1 "$INET_WEB:8090") || fail "node1 cannot reach the internet host directly"
[ "$own" = "$(wan_ip 1)" ] || fail "node1 seen from the internet as '$own', expected $(wan_ip 1)"
up 1 --accept-routes --exit-node node2
wait_for 10 get_is 1 "$INET_WEB:8090" "$(wan_ip 2)" || fail "node1 with exit node node2 is seen as '$(get 1 "$INET_WEB:8090")', expected $(wan_ip 2)"
status_has 1 "# Exit node: node2 (in use)" || fail "node1 status does not show the exit node: $(wm 1 status)"
wm 1 status --json | python3 -c 'import json,sys
d=json.load(sys.stdin); e=d["exit_node"]
assert e["name"]=="node2" and e["in_use"] and e["error"]=="", e
assert not any("control" in h for h in d["health"]), d["health"]
assert d["control"]["connected"], d["control"]' || fail "node1 status --json with an exit node"
# the agent's own traffic stays off the tunnel: control, relay and the peer path still work
in_node 1 ping -c 1 -W 3 "$(ip4 2)" >/dev/null || fail "node1 -> node2 tunnel broken while using node2 as exit node"
get_is 1 "$LANHOST:80" 192.0.2.241 || fail "subnet route lost while using an exit node"
# the local LAN (node1's NAT router) goes through the exit node too, unless
# --exit-node-allow-lan-access keeps it direct
in_node 1 ping -c 1 -W 1 "$(nat_lan_ip 1)" >/dev/null 2>&1 &&
	fail "node1 reached its LAN directly while using an exit node without --exit-node-allow-lan-access"
up 1 --accept-routes --exit-node node2 --exit-node-allow-lan-access
wait_for 10 in_node 1 ping -c 1 -W 1 "$(nat_lan_ip 1)" || fail "--exit-node-allow-lan-access: node1 cannot reach its LAN"
get_is 1 "$INET_WEB:8090" "$(wan_ip 2)" || fail "--exit-node-allow-lan-access: internet no longer through node2"
status_has 1 "# Exit node: node2 (in use, LAN access allowed)" || fail "status with LAN access: $(wm 1 status)"
up 1 --reset --accept-routes
wait_for 10 get_is 1 "$INET_WEB:8090" "$(wan_ip 1)" || fail "exit node still in use after up without --exit-node"
wait_for 5 eval '! default_via_tun' || fail "default route left in table 57: $(in_node 1 ip route show table 57)"
ok "exit node: node1's internet traffic leaves via node2 ($(wan_ip 2)); the agent's own traffic stays direct; the LAN only with --exit-node-allow-lan-access; dropping --exit-node restores it"

# Policy: the LAN host only on port 80; the router's filter drops the rest.
out=$(mesh_api PUT /api/v1/policy "{
  \"hosts\": {\"lanhost\": \"$LANHOST/32\"},
  \"acls\": [
    {\"action\": \"accept\", \"src\": [\"*\"], \"dst\": [\"100.64.0.0/10:*\"]},
    {\"action\": \"accept\", \"src\": [\"*\"], \"dst\": [\"lanhost:80\"]},
  ],
}")
expect_status 200 "$out"
wait_for 10 eval "! get 1 $LANHOST:22 1" || fail "policy: node1 still reaches $LANHOST:22"
# (port 22 also goes quiet while a path changes: 80 must come back)
wait_for 10 get_is 1 "$LANHOST:80" 192.0.2.241 || fail "policy: node1 -> $LANHOST:80 got '$(get 1 "$LANHOST:80")'"
wm 2 debug | python3 -c 'import json,sys; d=json.load(sys.stdin); assert d["filter"]["dropped_policy"] > 0, d["filter"]' ||
	fail "policy: router A's filter counted no drops"
ok "policy: through the subnet router only the allowed port (80) passes; router A's filter drops port 22"

# autogroup:internet governs the exit node: without a rule for it the exit
# node's filter drops node1's internet traffic; a rule
# "dst": ["autogroup:internet:*"] lets it through (the exit node's filter
# gets the public prefixes as destinations for that rule's sources).
# ROUTES_INTERNET=0 skips the positive half.
up 1 --accept-routes --exit-node node2
wait_for 10 status_has 1 "# Exit node: node2 (in use)" || fail "exit node not in use: $(wm 1 status)"
wait_for 10 default_via_tun || fail "no default route via the TUN: $(in_node 1 ip route show table 57)"
out=$(get 1 "$INET_WEB:8090") && fail "policy without autogroup:internet: node1 still reaches the internet (seen as '$out')"
if [ "${ROUTES_INTERNET:-1}" = 1 ]; then
	out=$(mesh_api PUT /api/v1/policy "{
	  \"hosts\": {\"lanhost\": \"$LANHOST/32\"},
	  \"acls\": [
	    {\"action\": \"accept\", \"src\": [\"*\"], \"dst\": [\"100.64.0.0/10:*\"]},
	    {\"action\": \"accept\", \"src\": [\"*\"], \"dst\": [\"lanhost:80\"]},
	    {\"action\": \"accept\", \"src\": [\"*\"], \"dst\": [\"autogroup:internet:*\"]},
	  ],
	}")
	expect_status 200 "$out"
	wait_for 10 get_is 1 "$INET_WEB:8090" "$(wan_ip 2)" || fail "policy with autogroup:internet: node1 not through node2 ('$(get 1 "$INET_WEB:8090")')"
	ok "policy: the exit node forwards once autogroup:internet is allowed"
fi
up 1 --reset --accept-routes
wait_for 10 get_is 1 "$INET_WEB:8090" "$(wan_ip 1)" || fail "exit node still in use"
ok "policy without autogroup:internet: the exit node's filter drops node1's internet traffic"

# High availability: router B approved too; A is primary; kill A.
srv nodes approve-routes "$ID3" "$SUBNET" >/dev/null || fail "approve-routes node3"
mesh_api GET "/api/v1/nodes/$ID2/routes" | grep -q "\"serving\":\[[^]]*\"$SUBNET\"" || fail "router A is not primary"
get_is 1 "$LANHOST:80" 192.0.2.241 || fail "HA: not via router A before the failover"
t0=$(date +%s%N)
kill -9 "${AGENT_PID[2]}"
wait "${AGENT_PID[2]}" 2>/dev/null
via_b() { [ "$(get 1 "$LANHOST:80" 1)" = 192.0.2.243 ]; }
srv_offline() { mesh_api GET "/api/v1/nodes/$ID2" | grep -q '"online":false'; }
# within 15 s of the kill; note when the server marked router A offline
srv_ms="" switched=""
while [ $(( ($(date +%s%N) - t0) / 1000000 )) -lt 15000 ]; do
	[ -n "$srv_ms" ] || ! srv_offline || srv_ms=$(( ($(date +%s%N) - t0) / 1000000 ))
	if via_b; then switched=1; t1=$(date +%s%N); break; fi
	sleep 0.1
done
[ -n "$switched" ] || fail "HA: node1 does not reach the LAN host via router B within 15 s of the kill (server marked router A offline after ${srv_ms:-more than 15000} ms; got '$(get 1 "$LANHOST:80")'; node3 routes: $(mesh_api GET "/api/v1/nodes/$ID3/routes"); node1 status: $(wm 1 status))"
echo "server marked router A offline after ${srv_ms:-?} ms"
echo "failover: router A killed -> first HTTP reply via router B after $(( (t1 - t0) / 1000000 )) ms"
status_has 1 "# Routes: node3 offers $SUBNET (accepted)" || fail "HA: node1 status: $(wm 1 status)"
ok "failover: router A's wiremeshd killed, node1 reaches the LAN via router B after $(( (t1 - t0) / 1000000 )) ms"

# Router A comes back (its agent resumes with the saved route flags); B
# stays primary (no flapping). Then B goes down gracefully: it withdraws
# its routes first, so the server moves the prefix back to A at once.
rm -f "$T/n2/sock"
mesh_start_agent 2
online2() { mesh_api GET "/api/v1/nodes/$ID2" | grep -q '"online":true'; }
wait_for 20 online2 || fail "router A did not come back online"
wait_for 10 eval 'mesh_api GET "/api/v1/nodes/$ID2/routes" | grep -q "\"advertised\":\[[^]]*\"$SUBNET\""' ||
	fail "router A does not advertise $SUBNET again after its restart: $(mesh_api GET "/api/v1/nodes/$ID2/routes")"
get_is 1 "$LANHOST:80" 192.0.2.243 || fail "router B no longer primary after router A came back (flapping)"
t0=$(date +%s%N)
wm 3 down >/dev/null || fail "down on node3"
via_a1() { [ "$(get 1 "$LANHOST:80" 1)" = 192.0.2.241 ]; }
wait_for 10 via_a1 || fail "graceful down of router B: node1 not via router A within 10 s ('$(get 1 "$LANHOST:80")')"
t1=$(date +%s%N)
echo "graceful failover: router B down -> first HTTP reply via router A after $(( (t1 - t0) / 1000000 )) ms"
[ $(( (t1 - t0) / 1000000 )) -lt 2000 ] || { echo "slow graceful failover; node1's WireGuard counters and router A log:"; wm 1 debug | python3 -c 'import json,sys; w=json.load(sys.stdin)["wireguard"]; print({k: v for k, v in w.items() if v})'; grep -v level=debug "$T/n2/agent.log" | tail -n 8; grep -v level=debug "$T/n1/agent.log" | tail -n 8; }
ok "router A back: B stays primary; B's down withdraws its routes and node1 moves to A after $(( (t1 - t0) / 1000000 )) ms"

# down: the router's forwarding and NAT table are removed
[ "$(in_node 3 sysctl -n net.ipv4.ip_forward)" = 0 ] || fail "down: forwarding left on"
in_node 3 nft list table inet wiremesh >/dev/null 2>&1 && fail "down: masquerade table left"
wm 1 down >/dev/null || fail "down on node1"
[ -z "$(in_node 1 ip rule show | grep -E '^57[137]0:')" ] || fail "down: rules left: $(in_node 1 ip rule show)"
ok "down: forwarding restored, NAT table, rules and routes removed"

# No path through the tunnel itself: with exit nodes and subnet routers in
# play a peer's disco can arrive from a tailnet address (it came through a
# tunnel); such a "direct path" would be WireGuard inside WireGuard.
! grep -h 'msg="direct path"' "$T"/n*/agent.log | grep -E 'endpoint=(\[fd7a:115c:a1e0:|100\.(6[4-9]|[7-9][0-9]|1[01][0-9]|12[0-7])\.)' ||
	fail "a direct path over a tailnet address: $(grep -h 'msg="direct path"' "$T"/n*/agent.log | grep -E 'endpoint=(\[fd7a|100\.)')"
ok "no direct path over a tailnet address (disco through a tunnel is not a path)"
