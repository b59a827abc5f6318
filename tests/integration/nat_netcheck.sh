#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Validates the namespace topology (netns.sh) itself: two relays with STUN in
# the internet namespace, and from behind each NAT kind a third-party STUN
# client (`stun`, from stun-client) and our netcheck (`wiremesh-derper debug
# netcheck`, the agent's code) must see what that NAT kind means:
# easy -> one mapping for two destinations, hard -> a mapping per destination,
# udp-blocked -> no UDP (HTTPS to the relays still works), closed -> neither,
# none -> the node's own address. Then nat_set_kind changes a NAT live.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/netns.sh"
for t in stun openssl; do command -v $t >/dev/null || skip "missing $t"; done

netns_setup
netns_add_node 1 easy
netns_add_node 2 hard
netns_add_node 3 udp-blocked
netns_add_node 4 closed
netns_add_node 5 none

mesh_ca derp1.test derp2.test
mesh_start_derper "$T/d1.log" --addr 203.0.113.2:443 --stun-addr 203.0.113.2:3478
mesh_start_derper "$T/d2.log" --addr 203.0.113.3:443 --stun-addr 203.0.113.3:3478
cat >"$T/derp.json" <<'JSON'
{"Regions": {
  "1": {"RegionID": 1, "RegionCode": "lon", "RegionName": "London",
        "Nodes": [{"Name": "1a", "RegionID": 1, "HostName": "derp1.test", "IPv4": "203.0.113.2"}]},
  "2": {"RegionID": 2, "RegionCode": "fra", "RegionName": "Frankfurt",
        "Nodes": [{"Name": "2a", "RegionID": 2, "HostName": "derp2.test", "IPv4": "203.0.113.3"}]}
}}
JSON
export SSL_CERT_FILE=$T/ca.pem

# mapped I DST SRCPORT: the classic STUN client's MAPPED-ADDRESS from node I
mapped() {
	in_node "$1" timeout 3 stun "$2:3478" 1 -v -p "$3" 2>&1 |
		sed -n 's/^MappedAddress = \([0-9.:]*\).*/\1/p' | head -n 1
}
netcheck() {	# I [LOCAL_PORT]
	in_node "$1" "$WM_BIN/wiremesh-derper" debug netcheck --derp-map "$T/derp.json" \
		--port "${2:-41641}" >"$T/nc$1.out" 2>&1 || { cat "$T/nc$1.out"; fail "netcheck failed on node $1"; }
	cat "$T/nc$1.out"
}
has() { grep -qxF -- "$2" "$T/nc$1.out" || { cat "$T/nc$1.out"; fail "node $1 ($(nat_kind "$1")): no line '$2'"; }; }
latency_lines() { grep -c '^  - [a-z]*: [0-9.]*ms$' "$T/nc$1.out"; }

# the plain topology: the NATs reach the relays; nodes cannot reach each other's LANs
in_node 1 ping -c 1 -W 2 203.0.113.2 >/dev/null || fail "node 1 cannot ping the internet"
in_node 5 ping -c 1 -W 2 203.0.113.3 >/dev/null || fail "node 5 cannot ping the internet"
in_node 1 ping -c 1 -W 1 "$(lan_ip 2)" >/dev/null 2>&1 && fail "node 1 reached node 2's LAN"
ok "topology: nodes reach the internet namespace, not each other's LANs"

# easy
a=$(mapped 1 203.0.113.2 40000) b=$(mapped 1 203.0.113.3 40000)
echo "easy: $a $b"
[ "$a" = "$(wan_ip 1):40000" ] && [ "$b" = "$a" ] || fail "easy NAT: mappings '$a' '$b', want $(wan_ip 1):40000 twice"
netcheck 1
has 1 '* UDP: true'
has 1 "* IPv4: yes, $(wan_ip 1):41641"
has 1 '* MappingVariesByDestIP: false'
[ "$(latency_lines 1)" = 2 ] || fail "easy NAT: two DERP latencies expected"
ok "easy NAT: same port-preserved mapping for two STUN servers; netcheck MappingVariesByDestIP false"

# hard
a=$(mapped 2 203.0.113.2 40000) b=$(mapped 2 203.0.113.3 40000)
echo "hard: $a $b"
[ "${a%:*}" = "$(wan_ip 2)" ] && [ "${b%:*}" = "$(wan_ip 2)" ] || fail "hard NAT: mappings '$a' '$b'"
[ "$a" != "$b" ] || fail "hard NAT: same mapping $a for two destinations"
netcheck 2
has 2 '* UDP: true'
has 2 '* MappingVariesByDestIP: true'
ok "hard NAT: a different mapping per destination; netcheck MappingVariesByDestIP true"

# udp-blocked
a=$(mapped 3 203.0.113.2 40000)
[ -z "$a" ] || fail "udp-blocked: STUN answered ($a)"
netcheck 3
has 3 '* UDP: false'
[ "$(latency_lines 3)" = 2 ] || fail "udp-blocked: HTTPS latency to both regions expected"
ok "udp-blocked: no STUN answer, netcheck UDP false, relays reachable over HTTPS"

# closed
a=$(mapped 4 203.0.113.2 40000)
[ -z "$a" ] || fail "closed: STUN answered ($a)"
netcheck 4
has 4 '* UDP: false'
[ "$(latency_lines 4)" = 0 ] || fail "closed: a relay answered over HTTPS"
ok "closed: neither STUN nor HTTPS to the relays"

# none
a=$(mapped 5 203.0.113.2 40000) b=$(mapped 5 203.0.113.3 40000)
[ "$a" = "$(wan_ip 5):40000" ] && [ "$b" = "$a" ] || fail "no NAT: mappings '$a' '$b'"
netcheck 5
has 5 "* IPv4: yes, $(wan_ip 5):41641"
has 5 '* MappingVariesByDestIP: false'
ok "no NAT: the node's own address"

# runtime changes
nat_set_kind 3 easy
netcheck 3
has 3 '* UDP: true'
has 3 '* MappingVariesByDestIP: false'
nat_set_kind 1 hard
netcheck 1 41700	# a new flow: the NAT keeps the mappings of existing ones
has 1 '* MappingVariesByDestIP: true'
nat_set_kind 1 udp-blocked
netcheck 1 41700
has 1 '* UDP: false'
ok "nat_set_kind: lifting the UDP block, easy to hard, and blocking again take effect at once"

# hole punching between two public endpoints, both sides at once (UDP 41641)
cat >"$T/punch.py" <<'PY'
import socket, sys, time
peer = (sys.argv[1], int(sys.argv[2]))
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", 41641)); s.settimeout(0.05)
end = time.time() + 3; got = None
while time.time() < end:
    s.sendto(b"punch", peer)
    try:
        d, a = s.recvfrom(100)
        got = a
        if time.time() > end - 2.5: break
        time.sleep(0.02)
    except socket.timeout:
        pass
print("got %s:%d" % got if got else "nothing")
PY
punch() {	# I J: node I and node J punch towards each other's public 41641
	in_node "$1" python3 "$T/punch.py" "$(wan_ip "$2")" 41641 >"$T/p$1" 2>&1 &
	local p1=$!
	in_node "$2" python3 "$T/punch.py" "$(wan_ip "$1")" 41641 >"$T/p$2" 2>&1
	wait $p1
	echo "punch $1<->$2: $(cat "$T/p$1") / $(cat "$T/p$2")"
}
# fresh NATs: a NAT reuses a source's existing mapping (endpoint-independent),
# so the nodes used above no longer map 41641 to 41641
netns_add_node 6 easy
netns_add_node 7 easy
punch 6 7
grep -qx "got $(wan_ip 7):41641" "$T/p6" && grep -qx "got $(wan_ip 6):41641" "$T/p7" ||
	fail "easy<->easy: simultaneous punch did not get through"
netns_add_node 8 hard
netns_add_node 9 hard
punch 8 9
grep -qx nothing "$T/p8" && grep -qx nothing "$T/p9" || fail "hard<->hard: a punch to the STUN-less port got through"
ok "punching: easy<->easy gets through both ways, hard<->hard does not"
