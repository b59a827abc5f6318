#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# MagicDNS end to end in the namespace topology (netns.sh): a control server
# with a `dns` block, three agents (node1, node2 of alice, node3 of bob), and
# two real dnsmasq servers in the internet namespace: 203.0.113.3 (the
# global nameserver: example.org, a big TXT record, and corp.test with a
# wrong address) and 203.0.113.4 (the split nameserver for corp.test, and
# the nodes' own resolver before the agent: www.example.org differs there).
# Checked with dig, getent and the wiremesh CLI: A/AAAA/PTR/extra records
# and NXDOMAIN from the agent's resolver over UDP and TCP on both service
# addresses; the rewritten resolv.conf (/etc/netns/NS/resolv.conf) with its
# search list; forwarding, split forwarding, EDNS0 passed through, TCP when
# truncated, SERVFAIL at once for a dead upstream; a settings change by
# SIGHUP (a dead first server skipped; no global server: the host's own
# resolver from the saved resolv.conf answers); no answers for packets
# that do not come from the node itself; a malformed query and a query flood
# (rate limit) counted; a node the policy hides does not resolve; a rename
# resolves within 2 s; `down` and a restart after a crash put resolv.conf
# back byte for byte; `--accept-dns=false` leaves it alone.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/netns.sh"
for t in openssl curl python3 dig getent dnsmasq; do command -v $t >/dev/null || skip "missing $t"; done
[ -x "$WM_BIN/wiremeshd" ] && [ -x "$WM_BIN/wiremesh" ] || fail "wiremeshd/wiremesh not built in $WM_BIN"
[ -c /dev/net/tun ] || skip "no /dev/net/tun"

fail() {
	echo "FAIL: $*" >&2
	for f in "$T"/n*/agent.log "$T"/dnsmasq*.log; do
		[ -f "$f" ] && { echo "--- $f" >&2; grep -v 'level=debug' "$f" | tail -n 12 >&2; }
	done
	exit 1
}

netns_setup
netns_add_node 1 easy
netns_add_node 2 easy
netns_add_node 3 easy
# each node's own resolv.conf: what `ip netns exec` shows as /etc/resolv.conf
for i in 1 2 3; do
	printf '# node %s original resolv.conf\nnameserver 203.0.113.4\noptions timeout:2\n' "$i" >"$(node_resolv_conf $i)"
	cp "$(node_resolv_conf $i)" "$T/resolv$i.orig"
done
conf() { cat "$(node_resolv_conf "$1")"; }

# upstream DNS servers (real dnsmasq, logging every query)
big=$(python3 -c 'print("x" * 200)')
txt=(); for k in $(seq 1 12); do txt+=(--txt-record="big.example.org,$k$big"); done
dnsmasq_args=(--keep-in-foreground --no-resolv --no-hosts --bind-interfaces --port 53
	--log-queries --log-facility=- --user=root --pid-file= --cache-size=0)
bg_inet "$T/dnsmasq1.log" dnsmasq "${dnsmasq_args[@]}" --listen-address=203.0.113.3 \
	--host-record=www.example.org,203.0.113.81,2001:db8::81 --address=/corp.test/203.0.113.66 \
	"${txt[@]}"
bg_inet "$T/dnsmasq2.log" dnsmasq "${dnsmasq_args[@]}" --listen-address=203.0.113.4 \
	--host-record=intranet.corp.test,203.0.113.91 --host-record=www.example.org,203.0.113.82
wait_for 5 eval 'in_inet dig +time=1 +tries=1 @203.0.113.3 www.example.org +short | grep -q 203.0.113.81' ||
	fail "dnsmasq 1 does not answer"
wait_for 5 eval 'in_inet dig +time=1 +tries=1 @203.0.113.4 intranet.corp.test +short | grep -q 203.0.113.91' ||
	fail "dnsmasq 2 does not answer"

mesh_ca control.test 203.0.113.1
cat >"$T/server.hujson" <<'EOF2'
{
  "dns": {
    "magic_dns": true,
    "base_domain": "mesh.test",
    "nameservers": {
      "global": ["203.0.113.3"],
      // corp.test goes to its own server; broken.test to an address where nothing listens
      "split": {"corp.test": ["203.0.113.4"], "broken.test": ["203.0.113.2"]},
    },
    "search_domains": ["corp.test"],
    "extra_records": [{"name": "grafana.mesh.test", "type": "A", "value": "100.64.0.99"}],
  },
}
EOF2
mesh_start_control --config "$T/server.hujson"
AK_A=$(mesh_authkey alice) || fail "no auth key"
AK_B=$(mesh_authkey bob) || fail "no auth key"
mesh_start_agent 1
mesh_start_agent 2 --dns-rate-limit 20
mesh_start_agent 3
wm 1 up --login-server "$CONTROL_URL" --authkey "$AK_A" --hostname node1 >"$T/up1" 2>&1 || { cat "$T/up1"; fail "up 1"; }
wm 2 up --login-server "$CONTROL_URL" --authkey "$AK_A" --hostname node2 --accept-dns=false >"$T/up2" 2>&1 ||
	{ cat "$T/up2"; fail "up 2"; }
wm 3 up --login-server "$CONTROL_URL" --authkey "$AK_B" --hostname node3 >"$T/up3" 2>&1 || { cat "$T/up3"; fail "up 3"; }
ip2=$(wm 2 ip -4) ip26=$(wm 2 ip -6) ip1=$(wm 1 ip -4)
# q I ARGS...: dig on node I against the resolver, short output
q() { local i=$1; shift; in_node "$i" dig +time=2 +tries=1 @100.100.100.100 "$@"; }
wait_for 10 eval '[ "$(q 1 +short node3.mesh.test)" != "" ]' || fail "node3 never resolved on node1"

# 1. local answers
[ "$(q 1 +short node2.mesh.test A)" = "$ip2" ] || fail "A node2.mesh.test: $(q 1 node2.mesh.test)"
[ "$(q 1 +short NODE2.Mesh.Test. AAAA)" = "$ip26" ] || fail "AAAA: $(q 1 node2.mesh.test AAAA)"
[ "$(q 1 +short +tcp node2.mesh.test)" = "$ip2" ] || fail "A over TCP: $(q 1 +tcp node2.mesh.test)"
[ "$(in_node 1 dig +time=2 +tries=1 @fd7a:115c:a1e0::53 +short node2.mesh.test)" = "$ip2" ] ||
	fail "resolver at fd7a:115c:a1e0::53"
[ "$(in_node 1 dig +time=2 +tries=1 +tcp @fd7a:115c:a1e0::53 +short node2.mesh.test AAAA)" = "$ip26" ] ||
	fail "resolver at fd7a:115c:a1e0::53 over TCP"
[ "$(q 1 +short -x "$ip2")" = "node2.mesh.test." ] || fail "PTR v4: $(q 1 -x "$ip2")"
[ "$(q 1 +short -x "$ip26")" = "node2.mesh.test." ] || fail "PTR v6: $(q 1 -x "$ip26")"
[ "$(q 1 +short node1.mesh.test)" = "$ip1" ] || fail "own name"
[ "$(q 1 +short grafana.mesh.test)" = "100.64.0.99" ] || fail "extra record: $(q 1 grafana.mesh.test)"
q 1 nope.mesh.test | grep -q 'status: NXDOMAIN' || fail "unknown name under the base domain: $(q 1 nope.mesh.test)"
q 1 -x 100.64.255.254 | grep -q 'status: NXDOMAIN' || fail "PTR of an unknown tailnet address"
q 1 node2.mesh.test | grep -q 'flags: qr aa rd ra' || fail "local answers are not authoritative"
ok "A, AAAA, PTR, extra record, NXDOMAIN over UDP and TCP at both addresses"

# 2. the OS: resolv.conf rewritten, search list, getent
conf 1 | grep -qx 'nameserver 100.100.100.100' || fail "node1 resolv.conf: $(conf 1)"
conf 1 | grep -qx 'search mesh.test corp.test' || fail "node1 search list: $(conf 1)"
cmp -s <(conf 2) "$T/resolv2.orig" || fail "--accept-dns=false: node2's resolv.conf changed: $(conf 2)"
[ "$(q 2 +short node1.mesh.test)" = "$ip1" ] || fail "--accept-dns=false: the resolver still answers on node2"
[ "$(in_node 1 getent hosts node2 | awk '{print $1, $2}')" = "$ip26 node2.mesh.test" ] || fail "getent hosts node2: $(in_node 1 getent hosts node2)"
[ "$(in_node 1 getent ahostsv4 node2 | awk 'NR==1 {print $1}')" = "$ip2" ] || fail "getent ahostsv4 node2"
[ "$(in_node 1 getent ahostsv4 intranet | awk 'NR==1 {print $1}')" = "203.0.113.91" ] || fail "search list: intranet.corp.test"
[ "$(in_node 1 getent ahostsv4 www.example.org | awk 'NR==1 {print $1}')" = "203.0.113.81" ] || fail "getent forwarded name"
wm 2 set --accept-dns=true >/dev/null || fail "set --accept-dns=true"
wait_for 5 eval 'conf 2 | grep -qx "nameserver 100.100.100.100"' || fail "set --accept-dns=true: $(conf 2)"
wm 2 set --accept-dns=false >/dev/null || fail "set --accept-dns=false"
cmp -s <(conf 2) "$T/resolv2.orig" || fail "set --accept-dns=false did not restore: $(conf 2)"
ok "resolv.conf points at the resolver with the search list; getent; --accept-dns=false leaves it alone; set toggles it"

# 3. forwarding
[ "$(q 1 +short www.example.org)" = "203.0.113.81" ] || fail "forwarded A"
[ "$(q 1 +short www.example.org AAAA)" = "2001:db8::81" ] || fail "forwarded AAAA"
[ "$(q 1 +short intranet.corp.test)" = "203.0.113.91" ] || fail "split: $(q 1 intranet.corp.test)"
grep -q 'query\[A\] intranet.corp.test from 198.51.100.11' "$T/dnsmasq2.log" || fail "the split server did not get the query"
! grep -q 'intranet.corp.test' "$T/dnsmasq1.log" || fail "the global server got a split-domain query"
q 1 +bufsize=1400 www.example.org | grep -q 'EDNS: version: 0, flags:; udp: ' || fail "EDNS0 not passed through"
out=$(q 1 big.example.org TXT)
echo "$out" | grep -q 'Truncated, retrying in TCP mode' || fail "big answer not truncated for UDP: $out"
[ "$(echo "$out" | grep -c '^big\.example\.org\..*IN.TXT')" = 12 ] || fail "big TXT over TCP: $out"
t0=$(date +%s%N)
q 1 x.broken.test | grep -q 'status: SERVFAIL' || fail "dead upstream: $(q 1 x.broken.test)"
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
[ "$ms" -lt 1000 ] || fail "SERVFAIL took $ms ms"
ok "forwarding, split forwarding, EDNS0, TCP on truncation, SERVFAIL in $ms ms for a dead upstream"

# 3b. the server changes the settings (SIGHUP): a dead first global server is
# skipped; with no global server the host's own resolver (from the saved
# resolv.conf) answers
sed -i 's/"global": \["203.0.113.3"\]/"global": ["203.0.113.2", "203.0.113.3"]/' "$T/server.hujson"
kill -HUP "$CONTROL_PID"
wait_for 5 eval 'wm 1 dns status | grep -q "^Nameservers: 203.0.113.2 203.0.113.3$"' || fail "dns delta not applied: $(wm 1 dns status)"
[ "$(q 1 +short www.example.org)" = "203.0.113.81" ] || fail "no retry over the second global server"
sed -i 's/"global": \["203.0.113.2", "203.0.113.3"\]/"global": []/' "$T/server.hujson"
kill -HUP "$CONTROL_PID"
wait_for 5 eval 'wm 1 dns status | grep -q "^Nameservers: 203.0.113.4 (the host.s own)$"' || fail "host resolvers: $(wm 1 dns status)"
[ "$(q 1 +short www.example.org)" = "203.0.113.82" ] || fail "not forwarded to the host's own resolver: $(q 1 www.example.org)"
[ "$(q 1 +short intranet.corp.test)" = "203.0.113.91" ] || fail "split after the change"
ok "SIGHUP: retry over the next server; without global servers the host's own resolver answers"

# 4. only from the node itself: a LAN neighbour routing to it gets nothing
in_node 1 sysctl -qw net.ipv4.ip_forward=1
in_nat 1 ip route add 100.100.100.100/32 via "$(lan_ip 1)"
before=$(wm 1 dns status --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["stats"]["not_local"])')
! in_nat 1 dig +time=1 +tries=1 @100.100.100.100 node2.mesh.test >/dev/null 2>&1 || fail "the resolver answered a LAN host"
after=$(wm 1 dns status --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["stats"]["not_local"])')
[ "$after" -gt "$before" ] || fail "not_local not counted ($before -> $after)"
in_node 1 ss -lnup | grep -q ':53 ' && fail "something listens on port 53 in node1: $(in_node 1 ss -lnup)"
in_node 1 sysctl -qw net.ipv4.ip_forward=0
ok "packets from a LAN host are dropped and counted; no socket on port 53"

# 5. bad input: malformed query, flood on node2 (--dns-rate-limit 20)
in_node 1 python3 - <<'PY' || fail "malformed queries"
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(2)
s.sendto(b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\xc0\x0c\x00\x01\x00\x01", ("100.100.100.100", 53))
r, _ = s.recvfrom(600)
assert r[:2] == b"\x12\x34" and r[3] & 0xF == 1, r   # FORMERR for a looping name
s.sendto(b"\x01", ("100.100.100.100", 53))             # too short: dropped
PY
[ "$(q 1 +short node2.mesh.test)" = "$ip2" ] || fail "resolver after malformed input"
in_node 2 python3 - <<'PY' >"$T/flood" || fail "flood"
import socket, struct, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(0.5)
q = lambda i: struct.pack(">HHHHHH", i, 0x100, 1, 0, 0, 0) + b"\x05node1\x04mesh\x04test\x00\x00\x01\x00\x01"
for i in range(300):
    s.sendto(q(i), ("100.100.100.100", 53))
got = 0
try:
    while True:
        s.recvfrom(600); got += 1
except socket.timeout:
    pass
print(got)
PY
n=$(cat "$T/flood")
[ "$n" -lt 100 ] && [ "$n" -ge 20 ] || fail "flood of 300: $n answers with a limit of 20/s (burst 40)"
wm 2 dns status --json | python3 -c 'import json,sys; s=json.load(sys.stdin)["stats"]; assert s["rate_limited"] >= 200, s; assert s["formerr"] == 0, s' ||
	fail "rate limit not counted: $(wm 2 dns status)"
wm 1 dns status --json | python3 -c 'import json,sys; s=json.load(sys.stdin)["stats"]; assert s["formerr"] >= 2, s' ||
	fail "malformed query not counted: $(wm 1 dns status)"
ok "malformed queries answered FORMERR or dropped, counted; a flood of 300 got $n answers (rate limited, counted)"

# 6. CLI
wm 1 dns status >"$T/dnsst" || fail "dns status"
grep -q '^MagicDNS: on' "$T/dnsst" && grep -q '^Base domain: mesh.test' "$T/dnsst" &&
	grep -q '^Split: corp.test -> 203.0.113.4' "$T/dnsst" && grep -q 'uses the resolver via resolv.conf' "$T/dnsst" ||
	fail "dns status: $(cat "$T/dnsst")"
wm 1 dns query node2 >"$T/dq" || fail "dns query node2: $(cat "$T/dq")"
grep -qP "^node2\.\t600\tIN\tA\t$ip2\$" "$T/dq" || fail "dns query output: $(cat "$T/dq")"
wm 1 dns query www.example.org A --tcp | grep -q '203.0.113.82' || fail "dns query A --tcp"
wm 1 dns query node2.mesh.test AAAA -6 | grep -q "$ip26" || fail "dns query AAAA -6"
! wm 1 dns query nope.mesh.test >/dev/null || fail "dns query of an unknown name exits 0"
wm 1 status | grep -q "node2.mesh.test" || fail "status does not show full names: $(wm 1 status)"
wm 1 ping node2 | grep -q "pong from node2 ($ip2)" || fail "ping node2"
wm 1 ping node2.mesh.test | grep -q "pong from node2 ($ip2)" || fail "ping node2.mesh.test"
in_node 1 ping -c 1 -W 3 node2 >/dev/null || fail "the OS ping by name"
ok "dns status, dns query, status with full names, ping by name"

# 7. a node the policy hides does not resolve; a rename resolves within 2 s
[ "$(q 1 +short node3.mesh.test)" != "" ] || fail "node3 not resolvable before the policy"
out=$(mesh_api PUT /api/v1/policy '{"acls": [{"action": "accept", "src": ["alice@"], "dst": ["alice@:*"]},
	{"action": "accept", "src": ["bob@"], "dst": ["bob@:*"]}]}')
expect_status 200 "$out"
wait_for 10 eval 'q 1 node3.mesh.test | grep -q "status: NXDOMAIN"' || fail "hidden node3 still resolves on node1"
[ "$(q 1 +short node2.mesh.test)" = "$ip2" ] || fail "node2 stopped resolving under the policy"
id2=$(srv nodes list 2>/dev/null | awk '$2 == "node2" {print $1}')
[ -n "$id2" ] || fail "node2's id: $(srv nodes list)"
t0=$(date +%s%N)
srv nodes rename "$id2" web-02 >/dev/null || fail "rename"
wait_for 2 eval '[ "$(q 1 +short +time=1 web-02.mesh.test)" = "$ip2" ]' || fail "renamed node not resolvable in 2 s"
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
q 1 node2.mesh.test | grep -q 'status: NXDOMAIN' || fail "the old name still resolves"
ok "hidden node NXDOMAIN; rename resolved in $ms ms"

# 8. down restores resolv.conf exactly; after a crash the next start does
wm 1 down >/dev/null || fail "down"
cmp -s <(conf 1) "$T/resolv1.orig" || fail "down did not restore resolv.conf: $(conf 1)"
wm 1 up --login-server "$CONTROL_URL" --authkey "$AK_A" --hostname node1 >/dev/null 2>&1 || fail "up again"
wait_for 5 eval 'conf 1 | grep -q "nameserver 100.100.100.100"' || fail "not rewritten after up"
kill -9 "${AGENT_PID[1]}"; wait "${AGENT_PID[1]}" 2>/dev/null
conf 1 | grep -q 'nameserver 100.100.100.100' || fail "crash test: resolv.conf not ours before the crash"
in_node 1 ip link del wm0 2>/dev/null
rm -f "$T/n1/sock"
mesh_start_agent 1
wait_for 5 grep -q 'restored the OS resolver config left by an earlier run' "$T/n1/agent.log" || fail "no restore at start after a crash"
wait_for 10 eval 'conf 1 | grep -q "nameserver 100.100.100.100"' || fail "not rewritten after the restart"
kill -TERM "${AGENT_PID[1]}"; wait "${AGENT_PID[1]}" 2>/dev/null
cmp -s <(conf 1) "$T/resolv1.orig" || fail "stop did not restore resolv.conf: $(conf 1)"
ok "down, a crash and restart, and stop all put resolv.conf back byte for byte"
