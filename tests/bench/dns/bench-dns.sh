#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# MagicDNS resolver throughput and latency, against dnsmasq in the same run
# (tests/integration/netns.sh topology; needs root). On node 1:
#   local   node2.mesh.test from the agent's resolver (100.100.100.100)
#   fwd     www.example.org through the resolver to dnsmasq in the internet
#           namespace (the agent has no cache: every query goes upstream)
#   dnsmasq the same name node2.mesh.test from a dnsmasq on node 1's own
#           loopback (127.0.0.1), answered from its configuration: the
#           "cached answers" figure to compare the local answers with
#   dnsmasq_fwd  www.example.org straight to the upstream dnsmasq
# Each figure: DURATION seconds (default 5) of UDP queries with 32 in flight
# (tests/bench/dns/dnsload.c). The agent runs with --dns-rate-limit 10000000
# so that the per-source limit (default 10000/s) does not cap the figure.
#   make bench-dns        or   DURATION=3 tests/bench/dns/bench-dns.sh
WM_TOP=${WM_TOP:-$(cd "$(dirname "$0")/../../.." && pwd)}
. "$WM_TOP/tests/integration/lib.sh"
. "$WM_TOP/tests/integration/netns.sh"
DURATION=${DURATION:-5}
LOAD=${DNSLOAD:-$WM_BUILD/dnsload}
[ -x "$LOAD" ] || fail "no $LOAD (make bench-dns builds it)"
command -v dnsmasq >/dev/null || skip "missing dnsmasq"

netns_setup
netns_add_node 1 easy
netns_add_node 2 easy
dm=(--keep-in-foreground --no-resolv --no-hosts --bind-interfaces --port 53 --user=root --pid-file=)
bg_inet "$T/dnsmasq-up.log" dnsmasq "${dm[@]}" --listen-address=203.0.113.3 \
	--host-record=www.example.org,203.0.113.81
mesh_ca control.test 203.0.113.1
printf '{"dns": {"base_domain": "mesh.test", "nameservers": {"global": ["203.0.113.3"]}}}\n' >"$T/server.hujson"
mesh_start_control --config "$T/server.hujson"
AK=$(mesh_authkey alice) || fail "no auth key"
mesh_start_agent 1 --dns-rate-limit 10000000
mesh_start_agent 2
wm 1 up --login-server "$CONTROL_URL" --authkey "$AK" --hostname node1 --accept-dns=false >/dev/null || fail "up 1"
wm 2 up --login-server "$CONTROL_URL" --authkey "$AK" --hostname node2 --accept-dns=false >/dev/null || fail "up 2"
ip2=$(wm 2 ip -4)
bg_node 1 "$T/dnsmasq-local.log" dnsmasq "${dm[@]}" --listen-address=127.0.0.1 \
	--host-record="node2.mesh.test,$ip2"
wait_for 10 eval '[ "$(in_node 1 dig +short +time=1 +tries=1 @100.100.100.100 node2.mesh.test)" = "$ip2" ]' ||
	fail "the resolver does not answer"
wait_for 5 eval '[ "$(in_node 1 dig +short +time=1 +tries=1 @127.0.0.1 node2.mesh.test)" = "$ip2" ]' ||
	fail "the local dnsmasq does not answer"
wait_for 5 eval '[ "$(in_node 1 dig +short +time=1 +tries=1 @100.100.100.100 www.example.org)" = "203.0.113.81" ]' ||
	fail "forwarding does not work"

field() { sed -n "s/.*\\b$1=\\([0-9]*\\).*/\\1/p"; }
local_=$(in_node 1 "$LOAD" 100.100.100.100 node2.mesh.test "$DURATION") || fail "local run"
echo "local:       $local_"
fwd=$(in_node 1 "$LOAD" 100.100.100.100 www.example.org "$DURATION") || fail "forwarded run"
echo "forwarded:   $fwd"
dm_=$(in_node 1 "$LOAD" 127.0.0.1 node2.mesh.test "$DURATION") || fail "dnsmasq run"
echo "dnsmasq:     $dm_"
dmf=$(in_node 1 "$LOAD" 203.0.113.3 www.example.org "$DURATION") || fail "dnsmasq upstream run"
echo "dnsmasq_fwd: $dmf"
lq=$(echo "$local_" | field qps) lp=$(echo "$local_" | field p99_us)
fq=$(echo "$fwd" | field qps) fp=$(echo "$fwd" | field p99_us)
dq=$(echo "$dm_" | field qps) dp=$(echo "$dm_" | field p99_us)
uq=$(echo "$dmf" | field qps)
ratio=$(python3 -c "print(f'{$lq / $dq:.2f}')")
echo "bench-dns: local_qps=$lq local_p99_us=$lp fwd_qps=$fq dnsmasq_qps=$dq ratio=$ratio" \
	"fwd_p99_us=$fp dnsmasq_p99_us=$dp upstream_direct_qps=$uq"
