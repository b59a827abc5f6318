#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The node agent end to end on flat ground (no NAT): three namespaces on one
# bridge. "srv" (192.0.2.1) runs wiremesh-server (plain http) and
# wiremesh-derper (TLS with a test CA, STUN); "n1" and "n2" run wiremeshd.
# Both agents `up`; `status` shows the peer; `wiremesh ping` answers over
# DERP or directly; the path turns direct; ICMP and TCP pass the tunnel;
# `ip`, `netcheck`, `debug` and `--json` answer; killing the control server
# leaves the tunnel up; `down` removes the peer.
. "$(dirname "$0")/lib.sh"

[ "$(id -u)" = 0 ] || skip "needs root (network namespaces)"
for t in ip openssl nc nft curl python3; do command -v $t >/dev/null || skip "missing $t"; done
[ -c /dev/net/tun ] || skip "no /dev/net/tun"
for b in wiremeshd wiremesh wiremesh-server wiremesh-derper; do
	[ -x "$WM_BIN/$b" ] || skip "missing $WM_BIN/$b (make binaries)"
done

S=wmab$$
NS_SRV=${S}s NS1=${S}a NS2=${S}b
WM_CLEANUP+=("ip netns del $NS_SRV" "ip netns del $NS1" "ip netns del $NS2")
# On failure, show what the agents said.
fail() {
	echo "FAIL: $*" >&2
	for f in "$T"/agent*.log; do
		[ -f "$f" ] && { echo "--- $f" >&2; grep -v 'level=debug' "$f" | tail -n 40 >&2; }
	done
	exit 1
}
ip netns add "$NS_SRV" && ip netns add "$NS1" && ip netns add "$NS2" || fail "netns add"
ip -n "$NS_SRV" link add br0 type bridge
ip -n "$NS_SRV" addr add 192.0.2.1/24 dev br0
ip -n "$NS_SRV" link set br0 up
ip -n "$NS_SRV" link set lo up
i=0
for ns in "$NS1" "$NS2"; do
	i=$((i + 1))
	ip link add "${S}v$i" netns "$ns" type veth peer name "p$i" netns "$NS_SRV" || fail "veth"
	ip -n "$NS_SRV" link set "p$i" master br0 up
	ip -n "$ns" link set "${S}v$i" name eth0
	ip -n "$ns" addr add "192.0.2.1$i/24" dev eth0
	ip -n "$ns" link set eth0 up
	ip -n "$ns" link set lo up
done
ip netns exec "$NS1" ping -c1 -W2 192.0.2.1 >/dev/null || fail "bridge does not forward"

# TLS for the relay: a test CA and a certificate for derp.test.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
	-keyout "$T/ca.key" -out "$T/ca.pem" -subj "/CN=wiremesh test CA" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
	-keyout "$T/key.pem" -out "$T/req.csr" -subj /CN=derp.test 2>/dev/null
printf 'subjectAltName=DNS:derp.test\n' >"$T/ext"
openssl x509 -req -in "$T/req.csr" -CA "$T/ca.pem" -CAkey "$T/ca.key" -CAcreateserial \
	-days 1 -extfile "$T/ext" -out "$T/cert.pem" 2>/dev/null || fail "test certificate"
export SSL_CERT_FILE=$T/ca.pem

cat >"$T/derpmap.json" <<'JSON'
{"OmitDefaultRegions": true, "Regions": {"1": {"RegionID": 1, "RegionCode": "test",
 "RegionName": "Test relay", "Nodes": [{"Name": "1a", "RegionID": 1,
 "HostName": "derp.test", "IPv4": "192.0.2.1", "DERPPort": 443, "STUNPort": 3478}]}}}
JSON

ip netns exec "$NS_SRV" "$WM_BIN/wiremesh-derper" --addr 192.0.2.1:443 --http-port -1 \
	--stun-addr 192.0.2.1:3478 --tls-cert "$T/cert.pem" --tls-key "$T/key.pem" \
	>"$T/derper.log" 2>&1 &
DERPER_PID=$!
WM_PIDS+=($!)
wait_for 10 grep -q 'msg="ready"' "$T/derper.log" || fail "derper did not start: $(cat "$T/derper.log")"

DB=$T/db.sqlite
bootstrap
start_ctl() {
	WM_SERVER_LOG=$T/server.log
	# Keepalives every 2 s so that a closed map stream (a node going down) is noticed soon.
	ip netns exec "$NS_SRV" env WIREMESH_KEEPALIVE_INTERVAL=2s "$SRV" serve --listen 192.0.2.1:8080 --db "$DB" \
		--derp-map "$T/derpmap.json" >>"$WM_SERVER_LOG" 2>&1 &
	SERVER_PID=$!
	WM_PIDS+=("$SERVER_PID")
	URL=http://192.0.2.1:8080
	wait_for 10 ip netns exec "$NS_SRV" curl -sf "$URL/healthz" || fail "server did not start"
}
start_ctl
adm() { ip netns exec "$NS_SRV" env WIREMESH_SERVER="$URL" WIREMESH_API_KEY="$WIREMESH_API_KEY" "$SRV" "$@"; }
adm users create alice >/dev/null || fail "users create"
AK=$(adm preauthkeys create --user alice --reusable) || fail "preauthkeys create"

start_agent() {	# N NS
	ip netns exec "$2" "$WM_BIN/wiremeshd" --state-dir "$T/state$1" --socket "$T/n$1.sock" \
		--tun wm0 --port 41641 --log-level debug >>"$T/agent$1.log" 2>&1 &
	eval "AGENT$1=$!"
	WM_PIDS+=($!)
	wait_for 10 test -S "$T/n$1.sock" || fail "agent $1 did not start: $(tail "$T/agent$1.log")"
}
wm() {	# N args...
	local n=$1; shift
	local ns=$NS1; [ "$n" = 2 ] && ns=$NS2
	ip netns exec "$ns" "$WM_BIN/wiremesh" --socket "$T/n$n.sock" "$@"
}
start_agent 1 "$NS1"
start_agent 2 "$NS2"
perm=$(stat -c %a "$T/state1/machine.key")
[ "$perm" = 600 ] || fail "machine key mode $perm"
[ "$(stat -c %a "$T/state1/node.key")" = 600 ] || fail "node key mode"

t0=$(date +%s%N)
wm 1 up --login-server "$URL" --authkey "$AK" --hostname node1 >"$T/up1" 2>&1 || fail "up 1: $(cat "$T/up1")"
wm 2 up --login-server "$URL" --authkey "$AK" --hostname node2 >"$T/up2" 2>&1 || fail "up 2: $(cat "$T/up2")"
grep -q 'Logged in to .* as node1 (100\.' "$T/up1" || fail "up output: $(cat "$T/up1")"
grep -q 'plain http' "$T/up1" || fail "no warning for http: $(cat "$T/up1")"
ok "both agents up"

ip1=$(wm 1 ip -4) || fail "ip -4"
ip2=$(wm 2 ip -4) || fail "ip -4 on node2"
[[ $ip1 == 100.* ]] && [[ $ip2 == 100.* ]] || fail "addresses: $ip1 $ip2"
wm 1 ip -6 | grep -q '^fd7a:115c:a1e0:' || fail "ip -6: $(wm 1 ip -6)"
ip -n "$NS1" addr show dev wm0 | grep -q "inet $ip1/32" || fail "TUN address not set"
ip -n "$NS1" route show | grep -q '100.64.0.0/10 dev wm0' || fail "route 100.64.0.0/10"
ok "addresses $ip1 $ip2 and routes on wm0"

# listed, and online (flags are published every 250 ms)
peer_listed() { wm 1 status | grep "^$ip2 .*node2 .*alice" | grep -vq offline; }
wait_for 10 peer_listed || fail "status does not list node2: $(wm 1 status)"
wm 1 status --json | python3 -c '
import json,sys; d=json.load(sys.stdin); p=[x for x in d["peers"] if x["name"]=="node2"][0]
assert p["user"]=="alice" and p["path_kind"] in ("direct","relay","idle"), p' || fail "status --json"
ok "status lists the peer"

wm 1 ping -c 1 node2 >"$T/ping1" || fail "first ping: $(cat "$T/ping1")"
t1=$(date +%s%N)
grep -Eq "^pong from node2 \($ip2\) via (DERP\(test\)|192\.0\.2\.12:41641) in [0-9]+ms$" "$T/ping1" ||
	fail "ping output: $(cat "$T/ping1")"
ok "first pong $(( (t1 - t0) / 1000000 )) ms after up: $(cat "$T/ping1")"

direct() { wm 1 ping -c 1 node2 | grep -q 'via 192.0.2.12:41641'; }
wait_for 10 direct || fail "no direct path: $(wm 1 status; wm 1 debug)"
wm 1 status | grep -q "node2 .*direct 192.0.2.12:41641" || fail "status path: $(wm 1 status)"
ok "direct path: $(wm 1 ping -c 1 node2)"

ip netns exec "$NS1" ping -c 3 -i 0.2 -W 2 "$ip2" >/dev/null || fail "ICMP through the tunnel"
ip2v6=$(wm 2 ip -6)
ip netns exec "$NS1" ping -6 -c 2 -i 0.2 -W 2 "$ip2v6" >/dev/null || fail "ICMPv6 through the tunnel to $ip2v6"
ip netns exec "$NS2" nc -l -p 8080 >"$T/nc.out" 2>/dev/null &
ncp=$!; WM_PIDS+=($ncp)
sleep_until_listen() { ip netns exec "$NS2" ss -ltn | grep -q ':8080 '; }
wait_for 5 sleep_until_listen || fail "nc did not listen"
head -c 200000 /dev/urandom >"$T/blob"
ip netns exec "$NS1" nc -q 1 -w 5 "$ip2" 8080 <"$T/blob" || fail "nc connect"
wait $ncp 2>/dev/null
cmp -s "$T/blob" "$T/nc.out" || fail "TCP data differs ($(stat -c %s "$T/nc.out") bytes)"
ok "ICMP, ICMPv6 and TCP (200 kB) through the tunnel"
if command -v iperf3 >/dev/null; then
	ip netns exec "$NS2" iperf3 -s -1 -B "$ip2" >/dev/null 2>&1 &
	WM_PIDS+=($!)
	iperf_up() { ip netns exec "$NS2" ss -ltn | grep -q ':5201 '; }
	wait_for 5 iperf_up || fail "iperf3 server did not start"
	ip netns exec "$NS1" iperf3 -c "$ip2" -t 2 -J >"$T/iperf.json" || fail "iperf3 through the tunnel"
	mbps=$(python3 -c 'import json,sys; print(int(json.load(open(sys.argv[1]))["end"]["sum_received"]["bits_per_second"] / 1e6))' "$T/iperf.json")
	[ "$mbps" -gt 0 ] || fail "iperf3 moved nothing"
	ok "iperf3 through the tunnel (direct): $mbps Mbit/s"
fi

# Policy: node2 may reach node1:80 only; node1 may reach node2 on any port.
cat >"$T/policy.hujson" <<POL
{
  "hosts": {"node1": "$ip1/32", "node2": "$ip2/32"},
  "acls": [
    {"action": "accept", "src": ["node2"], "dst": ["node1:80"]},
    {"action": "accept", "src": ["node1"], "dst": ["node2:*"]},
  ],
}
POL
adm policy set -f "$T/policy.hujson" >/dev/null || fail "policy set"
for port in 80 22; do
	ip netns exec "$NS1" nc -lk -p $port >/dev/null 2>&1 &
	WM_PIDS+=($!)
done
ip netns exec "$NS2" nc -lk -p 22 >/dev/null 2>&1 &
WM_PIDS+=($!)
tcp() { ip netns exec "$1" timeout 2 bash -c "exec 3<>/dev/tcp/$2/$3" 2>/dev/null; }
blocked22() { ! tcp "$NS2" "$ip1" 22; }
wait_for 15 blocked22 || fail "policy: node2 -> node1:22 still passes"
tcp "$NS2" "$ip1" 80 || fail "policy: node2 -> node1:80 refused"
tcp "$NS1" "$ip2" 22 || fail "policy: replies to node1's own connection to node2:22 dropped"
drops=$(wm 1 debug --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["filter"]["dropped_policy"])')
[ "$drops" -gt 0 ] || fail "policy drops not counted"
ok "policy: node2->node1:80 passes, :22 dropped ($drops drops counted), node1's own flows answered"

wm 1 netcheck >"$T/nc1" || fail "netcheck: $(cat "$T/nc1")"
grep -q '^\* UDP: true' "$T/nc1" && grep -q '^\* IPv4: yes, 192.0.2.11:41641' "$T/nc1" &&
	grep -q -- '- test: ' "$T/nc1" || fail "netcheck output: $(cat "$T/nc1")"
wm 1 debug --json | python3 -c '
import json,sys; d=json.load(sys.stdin)
assert "wireguard" in d and "drop_decrypt" in d["wireguard"] and "dropped_policy" in d["filter"], d.keys()
assert d["peers"][0]["direct"] is True' || fail "debug --json"
ok "netcheck and debug"

# Direct UDP between the nodes blocked: the peer falls back to DERP without
# losing the WireGuard session; lifting the block turns it direct again.
ip netns exec "$NS1" nft -f - <<'NFT' || fail "nft block"
table inet wmblock {
	chain out { type filter hook output priority 0; ip daddr 192.0.2.12 udp dport 41641 drop; }
	chain in { type filter hook input priority 0; ip saddr 192.0.2.12 udp sport 41641 drop; }
}
NFT
relayed() { wm 1 status | grep -q 'node2 .*relay "test"'; }
wait_for 15 relayed || fail "no fallback to DERP: $(wm 1 status)"
ip netns exec "$NS1" ping -c 3 -i 0.2 -W 2 "$ip2" >/dev/null || fail "ICMP via DERP"
wm 1 ping -c 1 node2 >"$T/ping2" || fail "ping via DERP: $(cat "$T/ping2")"
grep -Eq "^pong from node2 \($ip2\) via DERP\(test\) in [0-9]+ms$" "$T/ping2" || fail "ping output: $(cat "$T/ping2")"
ok "UDP blocked: $(cat "$T/ping2")"
ip netns exec "$NS1" nft delete table inet wmblock || fail "nft unblock"
tu=$(date +%s%N)
wait_for 10 direct || fail "path did not turn direct within 10 s after the block was lifted: $(wm 1 status)"
ok "block lifted: direct again after $(( ($(date +%s%N) - tu) / 1000000 )) ms"

# Control server down: the tunnel keeps working and status says so.
kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null
ctl_down() { wm 1 status | grep -q 'cannot reach the control server'; }
wait_for 10 ctl_down || fail "status does not report the control server down: $(wm 1 status)"
ip netns exec "$NS1" ping -c 2 -i 0.2 -W 2 "$ip2" >/dev/null || fail "tunnel broke with the server down"
start_ctl
ctl_up() { ! wm 1 status | grep -q 'cannot reach the control server'; }
wait_for 20 ctl_up || fail "agent did not reconnect: $(wm 1 status)"
ok "control server down: tunnel kept working; reconnected"

# The agent restarts: it logs in again by itself (new disco key) and the
# peer is reachable again.
kill -TERM "$AGENT1"; wait "$AGENT1" 2>/dev/null
start_agent 1 "$NS1"
wait_for 20 direct || fail "no direct path after the agent restarted: $(wm 1 status)"
direct21() { wm 2 status | grep -q "node1 .*direct 192.0.2.11:41641"; }
wait_for 10 direct21 || fail "node2 has no direct path to the restarted node1: $(wm 2 status)"
ok "agent restart: reconnected and direct again"

# The relay goes away: status says so, and the direct path keeps working.
kill "$DERPER_PID"; wait "$DERPER_PID" 2>/dev/null
no_relay() { wm 1 status | grep -q 'cannot reach any DERP relay'; }
wait_for 10 no_relay || fail "status does not report the relay down: $(wm 1 status)"
wm 1 status --json | python3 -c '
import json,sys; h=json.load(sys.stdin)["health"]
assert any("cannot reach any DERP relay" in x for x in h), h' || fail "status --json health"
ip netns exec "$NS1" ping -c 2 -i 0.2 -W 2 "$ip2" >/dev/null || fail "direct tunnel broke with the relay down"
ok "relay down: status says so; the direct path keeps working"

wm 2 down >/dev/null || fail "down"
gone() { ! ip -n "$NS2" addr show dev wm0 | grep -q "inet 100\."; }
wait_for 5 gone || fail "down left the address"
ok "down"
offline() { wm 1 status | grep -q 'node2 .*offline'; }
wait_for 10 offline || fail "node1 does not see node2 offline: $(wm 1 status)"
ok "peer shows offline after its down"

# A login server that does not answer: up fails and status says why.
wm 2 up --login-server http://192.0.2.1:9 --authkey "$AK" >"$T/up3" 2>&1 && fail "up to a dead server succeeded"
grep -q 'cannot reach the control server at http://192.0.2.1:9' "$T/up3" || fail "up error: $(cat "$T/up3")"
wm 2 status | grep -q 'login failed: cannot reach the control server' || fail "status after failed up: $(wm 2 status)"
ok "unreachable control server: $(head -n1 "$T/up3")"

# The admin deletes node2: it disappears from node1's status and WireGuard.
id2=$(adm nodes list --json | python3 -c 'import json,sys; d=json.load(sys.stdin); d=d.get("nodes", d) if isinstance(d, dict) else d; print([n["id"] for n in d if n["name"]=="node2"][0])') ||
	fail "nodes list"
adm nodes delete --force "$id2" >/dev/null || fail "nodes delete"
gone2() { ! wm 1 status | grep -q node2; }
wait_for 10 gone2 || fail "deleted node still listed: $(wm 1 status)"
ok "deleted node disappears from its peer's status"

# node1 deleted too, then its agent restarted: it cannot log in again without
# an auth key, stops retrying and says so.
id1=$(adm nodes list --json | python3 -c 'import json,sys; d=json.load(sys.stdin); d=d.get("nodes", d) if isinstance(d, dict) else d; print([n["id"] for n in d if n["name"]=="node1"][0])') ||
	fail "nodes list"
adm nodes delete --force "$id1" >/dev/null || fail "nodes delete node1"
refused() { wm 1 status | grep -q 'HTTP 401'; }
wait_for 15 refused || fail "deleted node1 does not report the refusal: $(wm 1 status)"
kill -TERM "$AGENT1"; wait "$AGENT1" 2>/dev/null
start_agent 1 "$NS1"
needs_login() { wm 1 status | grep -q 'wiremesh up --authkey KEY'; }
wait_for 15 needs_login || fail "restarted deleted node does not ask for a login: $(wm 1 status)"
ok "deleted node: the agent reports the refusal and asks for a new login"

# A clean stop (under ASan this also checks for leaks).
kill -TERM "$AGENT1"
wait "$AGENT1"; rc=$?
[ "$rc" = 0 ] || fail "wiremeshd exit status $rc on SIGTERM"
[ ! -e "$T/n1.sock" ] || fail "socket left behind"
ok "SIGTERM: clean exit"

