#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# wiremesh-wg to wiremesh-wg with the TUN offloads (IFF_VNET_HDR: TSO
# splitting on the way out, TCP GRO on the way in, UDP GSO/GRO on the socket):
# 24 MB TCP transfers over IPv4 and IPv6 in both directions compared by
# checksum, then the same with one side on a plain TUN
# (WIREMESH_WG_OFFLOAD=0), so both paths meet each other, and once more with
# UDP GSO off (WIREMESH_WG_UDP_GSO=0: one message per datagram).
. "$(dirname "$0")/lib.sh"
[ "$(id -u)" -eq 0 ] || skip "needs root for network namespaces"
command -v wg >/dev/null || skip "wg not installed"
command -v nc >/dev/null || skip "nc not installed"
[ -c /dev/net/tun ] || skip "no /dev/net/tun"
[ -x "$WM_BIN/wiremesh-wg" ] || fail "missing $WM_BIN/wiremesh-wg"

NA=wmof-a-$$ NB=wmof-b-$$ IA=wmofa$$ IB=wmofb$$
umask 077
PIDS=()
teardown() {
	for p in "${PIDS[@]+"${PIDS[@]}"}"; do kill "$p" 2>/dev/null; done
	ip netns del "$NA" 2>/dev/null
	ip netns del "$NB" 2>/dev/null
	for p in "${PIDS[@]+"${PIDS[@]}"}"; do wait "$p" 2>/dev/null; done
	PIDS=()
	rm -f "/var/run/wireguard/$IA.sock" "/var/run/wireguard/$IB.sock"
}
WM_CLEANUP+=("teardown")
A() { ip netns exec "$NA" "$@"; }
B() { ip netns exec "$NB" "$@"; }

# setup OFFLOAD_A OFFLOAD_B UDP_GSO (1 or 0)
setup() {
	ip netns add "$NA" && ip netns add "$NB" || fail "netns"
	ip link add wmofv$$ netns "$NA" type veth peer name wmofw$$ netns "$NB" || fail "veth"
	A ip link set lo up; B ip link set lo up
	A ip addr add 192.0.2.1/24 dev wmofv$$; A ip link set wmofv$$ up
	B ip addr add 192.0.2.2/24 dev wmofw$$; B ip link set wmofw$$ up
	ip netns exec "$NA" env WIREMESH_WG_OFFLOAD="$1" WIREMESH_WG_UDP_GSO="$3" "$WM_BIN/wiremesh-wg" -f "$IA" \
		>"$T/a.log" 2>&1 &
	PIDS+=($!)
	ip netns exec "$NB" env WIREMESH_WG_OFFLOAD="$2" WIREMESH_WG_UDP_GSO="$3" "$WM_BIN/wiremesh-wg" -f "$IB" \
		>"$T/b.log" 2>&1 &
	PIDS+=($!)
	wait_for 5 test -S "/var/run/wireguard/$IA.sock" || fail "UAPI socket A"
	wait_for 5 test -S "/var/run/wireguard/$IB.sock" || fail "UAPI socket B"
	wg genkey >"$T/ka"; wg genkey >"$T/kb"
	A wg set "$IA" private-key "$T/ka" listen-port 51820 peer "$(wg pubkey <"$T/kb")" \
		allowed-ips 10.9.0.2/32,fd00:9::2/128 endpoint 192.0.2.2:51821 || fail "wg set A"
	B wg set "$IB" private-key "$T/kb" listen-port 51821 peer "$(wg pubkey <"$T/ka")" \
		allowed-ips 10.9.0.1/32,fd00:9::1/128 endpoint 192.0.2.1:51820 || fail "wg set B"
	A ip addr add 10.9.0.1/24 dev "$IA"; A ip addr add fd00:9::1/64 dev "$IA" nodad
	B ip addr add 10.9.0.2/24 dev "$IB"; B ip addr add fd00:9::2/64 dev "$IB" nodad
	A ip link set "$IA" up; B ip link set "$IB" up
	A ping -c 2 -i 0.2 -W 2 10.9.0.2 >/dev/null || fail "ping A -> B"
}

head -c $((24 << 20)) /dev/urandom >"$T/blob"
want=$(sha256sum <"$T/blob" | cut -d' ' -f1)
port=5100
# transfer FROM_NS TO_NS ADDR: FROM_NS sends the blob to a listener in TO_NS.
transfer() {
	local from=$1 to=$2 addr=$3 out="$T/got$port"
	ip netns exec "$to" nc -l "$addr" $port >"$out" & local l=$!
	wait_for 5 ip netns exec "$to" sh -c "ss -ltn | grep -q ':$port '" || fail "listener on $addr"
	timeout 60 ip netns exec "$from" nc -N "$addr" $port <"$T/blob" || fail "send to $addr ($label)"
	wait $l
	[ "$(sha256sum <"$out" | cut -d' ' -f1)" = "$want" ] || fail "checksum to $addr ($label)"
	rm -f "$out"
	port=$((port + 1))
}

for mode in "1 1 1" "1 0 1" "1 1 0"; do
	set -- $mode
	label="offload A=$1 B=$2 udp-gso=$3"
	setup "$1" "$2" "$3"
	vnet=$(A ip -d link show "$IA" | grep -o "vnet_hdr on" || true)
	if [ "$1" = 1 ]; then
		[ -n "$vnet" ] || fail "A's TUN has no vnet header ($label)"
	else
		[ -z "$vnet" ] || fail "A's TUN has a vnet header with WIREMESH_WG_OFFLOAD=0"
	fi
	transfer "$NA" "$NB" 10.9.0.2
	transfer "$NB" "$NA" 10.9.0.1
	transfer "$NA" "$NB" fd00:9::2
	transfer "$NB" "$NA" fd00:9::1
	A wg show "$IA" transfer | awk '{exit !($2 > 50000000 && $3 > 50000000)}' \
		|| fail "transfer counters ($label)"
	ok "$label: 24 MB each way over IPv4 and IPv6, sha256 equal"
	teardown
done
echo PASS
