#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Throughput and latency through a WireGuard tunnel between two network
# namespaces over veth, for ours<->ours, ours<->wireguard-go and
# wireguard-go<->wireguard-go, in one run: iperf3 TCP 1 stream, TCP 4 streams,
# UDP (unlimited rate, 1392-byte datagrams; delivered rate and loss), and ping RTT. Prints one line per
# pair and the summary line
#   bench-wg: ours_gbps=… wggo_gbps=… ratio=… mixed_gbps=… ours_rtt_ms=… wggo_rtt_ms=…
# (gbps = TCP single stream, receiver side). BENCH_SECONDS sets iperf3 -t.
set -u
WM_TOP=${WM_TOP:-$(cd "$(dirname "$0")/../../.." && pwd)}
WM_BIN=${WM_BIN:-$WM_TOP/bin}
T=${BENCH_SECONDS:-5}
[ "$(id -u)" -eq 0 ] || { echo "bench-wg: needs root"; exit 1; }
for c in wireguard-go wg iperf3 ping; do
	command -v $c >/dev/null || { echo "bench-wg: missing $c"; exit 1; }
done
[ -x "$WM_BIN/wiremesh-wg" ] || { echo "bench-wg: missing $WM_BIN/wiremesh-wg"; exit 1; }

NA=wmwg-ba-$$ NB=wmwg-bb-$$ IA=wmwgba$$ IB=wmwgbb$$
umask 077
TMP=$(mktemp -d /tmp/wmwg-bench-XXXXXX)
PIDS=()
teardown() {
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
	ip netns del "$NA" 2>/dev/null
	ip netns del "$NB" 2>/dev/null
	for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
	PIDS=()
	rm -f "/var/run/wireguard/$IA.sock" "/var/run/wireguard/$IB.sock"
}
trap 'teardown; rm -rf "$TMP"' EXIT
A() { ip netns exec "$NA" "$@"; }
B() { ip netns exec "$NB" "$@"; }
wait_sock() {
	for _ in $(seq 100); do [ -S "$1" ] && return 0; sleep 0.05; done
	return 1
}
daemon() { # daemon ours|wggo NS IF
	if [ "$1" = ours ]; then
		ip netns exec "$2" "$WM_BIN/wiremesh-wg" -f "$3" >/dev/null 2>&1 &
	else
		ip netns exec "$2" wireguard-go -f "$3" >/dev/null 2>&1 &
	fi
	PIDS+=($!)
	wait_sock "/var/run/wireguard/$3.sock"
}
setup() { # setup implA implB
	ip netns add "$NA"; ip netns add "$NB"
	ip link add wmwgbv$$ netns "$NA" type veth peer name wmwgbw$$ netns "$NB"
	A ip link set lo up; B ip link set lo up
	A ip addr add 198.51.100.1/24 dev wmwgbv$$; A ip link set wmwgbv$$ up
	B ip addr add 198.51.100.2/24 dev wmwgbw$$; B ip link set wmwgbw$$ up
	daemon "$1" "$NA" "$IA" || return 1
	daemon "$2" "$NB" "$IB" || return 1
	wg genkey >"$TMP/ka"; wg genkey >"$TMP/kb"
	A wg set "$IA" private-key "$TMP/ka" listen-port 51820 peer "$(wg pubkey <"$TMP/kb")" \
		allowed-ips 10.77.0.2/32 endpoint 198.51.100.2:51821
	B wg set "$IB" private-key "$TMP/kb" listen-port 51821 peer "$(wg pubkey <"$TMP/ka")" \
		allowed-ips 10.77.0.1/32 endpoint 198.51.100.1:51820
	A ip addr add 10.77.0.1/24 dev "$IA"; A ip link set "$IA" up
	B ip addr add 10.77.0.2/24 dev "$IB"; B ip link set "$IB" up
	A ping -c 1 -W 3 10.77.0.2 >/dev/null || A ping -c 1 -W 3 10.77.0.2 >/dev/null
}
gbps() { # jq-free: receiver bits_per_second of the end summary
	python3 -c 'import json,sys
d=json.load(open(sys.argv[1])); e=d.get("end",{})
s=e.get("sum_received") or e.get("sum") or {}
print("%.3f" % (s.get("bits_per_second",0)/1e9))' "$1" 2>/dev/null || echo 0
}
udp_stats() {
	python3 -c 'import json,sys
d=json.load(open(sys.argv[1])); s=d["end"]["sum"]
l=s.get("lost_percent",0)
print("%.3f %.1f" % (s["bits_per_second"]*(1-l/100)/1e9, l))' "$1" 2>/dev/null || echo "0 100"
}
run_pair() { # run_pair label implA implB
	local label=$1
	teardown
	if ! setup "$2" "$3"; then echo "bench-wg: $label setup failed"; eval "${label}_tcp1=0 ${label}_rtt=0"; return; fi
	B iperf3 -s -D -1 -B 10.77.0.2 --pidfile "$TMP/ip.pid" >/dev/null 2>&1; sleep 0.3
	A iperf3 -c 10.77.0.2 -t "$T" -J >"$TMP/tcp1.json" 2>/dev/null
	B iperf3 -s -D -1 -B 10.77.0.2 --pidfile "$TMP/ip.pid" >/dev/null 2>&1; sleep 0.3
	A iperf3 -c 10.77.0.2 -t "$T" -P 4 -J >"$TMP/tcp4.json" 2>/dev/null
	B iperf3 -s -D -1 -B 10.77.0.2 --pidfile "$TMP/ip.pid" >/dev/null 2>&1; sleep 0.3
	A iperf3 -c 10.77.0.2 -t "$T" -u -b 0 -l 1392 -J >"$TMP/udp.json" 2>/dev/null
	local rtt
	rtt=$(A ping -c 20 -i 0.05 -q 10.77.0.2 | sed -n 's|.*= [0-9.]*/\([0-9.]*\)/.*|\1|p')
	local t1 t4 u
	t1=$(gbps "$TMP/tcp1.json"); t4=$(gbps "$TMP/tcp4.json"); u=$(udp_stats "$TMP/udp.json")
	echo "bench-wg: pair=$label tcp1_gbps=$t1 tcp4_gbps=$t4 udp_gbps=${u% *} udp_loss_pct=${u#* } rtt_ms=${rtt:-0}"
	eval "${label}_tcp1=$t1 ${label}_rtt=${rtt:-0}"
	teardown
}
run_pair ours ours ours
run_pair mixed ours wggo
run_pair wggo wggo wggo
ratio=$(python3 -c "import sys; a,b=map(float,sys.argv[1:]); print('%.2f' % (a/b if b else 0))" "$ours_tcp1" "$wggo_tcp1")
echo "bench-wg: ours_gbps=$ours_tcp1 wggo_gbps=$wggo_tcp1 ratio=$ratio mixed_gbps=$mixed_tcp1 ours_rtt_ms=$ours_rtt wggo_rtt_ms=$wggo_rtt"
