#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# wiremesh-wg against Debian's wireguard-go in two network namespaces over a
# veth pair, both configured with `wg`: handshake from either side, ping both
# ways, a TCP transfer compared by checksum, a forced rekey under traffic,
# roaming to a new endpoint, peer removal, and wg show/showconf output.
set -u
WM_TOP=${WM_TOP:-$(cd "$(dirname "$0")/../.." && pwd)}
WM_BIN=${WM_BIN:-$WM_TOP/bin}
skip() { echo "$*"; exit 77; }
[ "$(id -u)" -eq 0 ] || skip "needs root for network namespaces"
command -v wireguard-go >/dev/null || skip "wireguard-go not installed"
command -v wg >/dev/null || skip "wg not installed"
[ -c /dev/net/tun ] || skip "no /dev/net/tun"
[ -x "$WM_BIN/wiremesh-wg" ] || { echo "missing $WM_BIN/wiremesh-wg"; exit 1; }

NA=wmwg-a-$$ NB=wmwg-b-$$ IA=wmwga$$ IB=wmwgb$$
umask 077
TMP=$(mktemp -d /tmp/wmwg-XXXXXX)
PIDS=()
cleanup() {
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
	ip netns del "$NA" 2>/dev/null
	ip netns del "$NB" 2>/dev/null
	for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
	rm -f "/var/run/wireguard/$IA.sock" "/var/run/wireguard/$IB.sock"
	rm -rf "$TMP"
}
trap cleanup EXIT
fail() { echo "FAIL: $*"; echo "--- wg show A"; ip netns exec "$NA" wg show "$IA" 2>&1; \
	echo "--- wg show B"; ip netns exec "$NB" wg show "$IB" 2>&1; \
	echo "--- log A"; tail -20 "$TMP/a.log"; exit 1; }
A() { ip netns exec "$NA" "$@"; }
B() { ip netns exec "$NB" "$@"; }
# wait_for SECONDS CMD...: polls CMD until it succeeds.
wait_for() {
	local end=$(( $(date +%s%N) / 1000000 + $1 * 1000 )); shift
	until "$@" >/dev/null 2>&1; do
		[ $(( $(date +%s%N) / 1000000 )) -lt $end ] || return 1
		sleep 0.05
	done
}

ip netns add "$NA" && ip netns add "$NB" || fail "netns"
ip link add wmwgv$$ netns "$NA" type veth peer name wmwgw$$ netns "$NB" || fail "veth"
A ip link set lo up; B ip link set lo up
A ip addr add 192.0.2.1/24 dev wmwgv$$; A ip link set wmwgv$$ up
B ip addr add 192.0.2.2/24 dev wmwgw$$; B ip addr add 192.0.2.3/24 dev wmwgw$$
B ip link set wmwgw$$ up

LOG_LEVEL=debug A "$WM_BIN/wiremesh-wg" -f "$IA" >"$TMP/a.log" 2>&1 &
PIDS+=($!)
B wireguard-go -f "$IB" >"$TMP/b.log" 2>&1 &
PIDS+=($!)
wait_for 5 test -S "/var/run/wireguard/$IA.sock" || fail "our UAPI socket"
wait_for 5 test -S "/var/run/wireguard/$IB.sock" || fail "wireguard-go UAPI socket"

wg genkey >"$TMP/ka"; wg genkey >"$TMP/kb"; wg genpsk >"$TMP/psk"
PA=$(wg pubkey <"$TMP/ka"); PB=$(wg pubkey <"$TMP/kb")

# Phase 1: we initiate; wireguard-go learns our endpoint.
A wg set "$IA" private-key "$TMP/ka" listen-port 51820 \
	peer "$PB" preshared-key "$TMP/psk" allowed-ips 10.9.0.2/32,fd00:9::2/128 endpoint 192.0.2.2:51821 \
	|| fail "wg set on ours"
B wg set "$IB" private-key "$TMP/kb" listen-port 51821 \
	peer "$PA" preshared-key "$TMP/psk" allowed-ips 10.9.0.1/32,fd00:9::1/128 || fail "wg set on wireguard-go"
A ip addr add 10.9.0.1/24 dev "$IA"; A ip addr add fd00:9::1/64 dev "$IA" nodad; A ip link set "$IA" up
B ip addr add 10.9.0.2/24 dev "$IB"; B ip addr add fd00:9::2/64 dev "$IB" nodad; B ip link set "$IB" up

[ "$(A wg show "$IA" listen-port)" = 51820 ] || fail "listen port not reported"
[ "$(A wg show "$IA" public-key)" = "$PA" ] || fail "public key not reported"
A ping -c 3 -i 0.2 -W 2 10.9.0.2 >/dev/null || fail "ping ours -> wireguard-go"
B ping -c 3 -i 0.2 -W 2 10.9.0.1 >/dev/null || fail "ping wireguard-go -> ours"
A ping -6 -c 2 -i 0.2 -W 2 fd00:9::2 >/dev/null || fail "ping6 ours -> wireguard-go"
[ "$(B wg show "$IB" endpoints | awk '{print $2}')" = "192.0.2.1:51820" ] || fail "wireguard-go did not learn our endpoint"
hs=$(A wg show "$IA" latest-handshakes | awk '{print $2}')
[ "${hs:-0}" -gt 0 ] || fail "no handshake time on ours"
A wg show "$IA" transfer | awk '{exit !($2 > 0 && $3 > 0)}' || fail "transfer counters"
A wg show "$IA" | grep -q "preshared key: (hidden)" || fail "wg show lacks psk line"
A wg showconf "$IA" | grep -q "^PublicKey = $PB" || fail "showconf"
echo "phase 1 ok: handshake from ours, ping both ways"

# TCP transfer both ways, compared by checksum.
head -c 4000000 /dev/urandom >"$TMP/blob"
want=$(sha256sum <"$TMP/blob" | cut -d' ' -f1)
B sh -c "nc -l 10.9.0.2 5001 >$TMP/got1" & L=$!
wait_for 5 B sh -c "ss -ltn | grep -q ':5001'" || fail "listener"
A nc -N 10.9.0.2 5001 <"$TMP/blob" || fail "nc send"
wait "$L"
[ "$(sha256sum <"$TMP/got1" | cut -d' ' -f1)" = "$want" ] || fail "TCP ours->wggo checksum"
A sh -c "nc -l 10.9.0.1 5002 >$TMP/got2" & L=$!
wait_for 5 A sh -c "ss -ltn | grep -q ':5002'" || fail "listener"
B nc -N 10.9.0.1 5002 <"$TMP/blob" || fail "nc send"
wait "$L"
[ "$(sha256sum <"$TMP/got2" | cut -d' ' -f1)" = "$want" ] || fail "TCP wggo->ours checksum"
echo "tcp ok: 4 MB both ways, sha256 equal"

# Phase 2: wireguard-go initiates. Both sides forget the peer; only
# wireguard-go knows where to find us.
A wg set "$IA" peer "$PB" remove
B wg set "$IB" peer "$PA" remove
A wg set "$IA" peer "$PB" preshared-key "$TMP/psk" allowed-ips 10.9.0.2/32,fd00:9::2/128
B wg set "$IB" peer "$PA" preshared-key "$TMP/psk" allowed-ips 10.9.0.1/32,fd00:9::1/128 \
	endpoint 192.0.2.1:51820
[ -z "$(A wg show "$IA" endpoints | awk '{print $2}' | grep -v none)" ] || fail "endpoint should be unset"
B ping -c 3 -i 0.2 -W 2 10.9.0.1 >/dev/null || fail "ping wireguard-go -> ours after re-add"
[ "$(A wg show "$IA" endpoints | awk '{print $2}')" = "192.0.2.2:51821" ] || fail "we did not learn the endpoint"
A ping -c 2 -i 0.2 -W 2 10.9.0.2 >/dev/null || fail "ping back"
echo "phase 2 ok: handshake from wireguard-go"

# Rekey under traffic: changing our peer's key state forces a new session;
# pings must keep flowing and the handshake time must move.
h1=$(B wg show "$IB" latest-handshakes | awk '{print $2}')
sleep 1.1
A ping -i 0.1 -c 40 -W 1 10.9.0.2 >"$TMP/ping" 2>&1 & P=$!
sleep 0.5
A wg set "$IA" private-key "$TMP/ka"   # same key: drops our sessions, as wg does on key set
wait "$P"
h2=$(B wg show "$IB" latest-handshakes | awk '{print $2}')
[ "$h2" -gt "$h1" ] || fail "no new handshake after forced rekey ($h1 -> $h2)"
rcv=$(sed -n 's/.* \([0-9]*\) received.*/\1/p' "$TMP/ping")
[ "${rcv:-0}" -ge 30 ] || fail "too many losses across rekey: $rcv/40"
echo "rekey ok: $rcv/40 pings across a new handshake"

# Roaming: wireguard-go moves to a new port; we must follow.
B wg set "$IB" listen-port 51831
B ping -c 2 -i 0.2 -W 2 10.9.0.1 >/dev/null || fail "ping after roam"
[ "$(A wg show "$IA" endpoints | awk '{print $2}')" = "192.0.2.2:51831" ] || fail "endpoint did not roam: $(A wg show "$IA" endpoints)"
A ping -c 2 -i 0.2 -W 2 10.9.0.2 >/dev/null || fail "ping to roamed peer"
# and we move to a new port ourselves
A wg set "$IA" listen-port 51830
A ping -c 2 -i 0.2 -W 2 10.9.0.2 >/dev/null || fail "ping after our port change"
[ "$(B wg show "$IB" endpoints | awk '{print $2}')" = "192.0.2.1:51830" ] || fail "wireguard-go did not follow our port"
echo "roaming ok"

# Crypto-routing: a source outside the peer's allowed IPs is dropped.
A wg set "$IA" peer "$PB" allowed-ips fd00:9::2/128
B ping -c 2 -i 0.2 -W 1 10.9.0.1 >/dev/null && fail "packet from disallowed source accepted"
A wg set "$IA" peer "$PB" allowed-ips 10.9.0.2/32,fd00:9::2/128
A ping -c 2 -i 0.2 -W 2 10.9.0.2 >/dev/null || fail "ping after restoring allowed-ips"

# Peer removal.
A wg set "$IA" peer "$PB" remove
[ -z "$(A wg show "$IA" peers)" ] || fail "peer still listed"
A ping -c 2 -i 0.2 -W 1 10.9.0.2 >/dev/null 2>&1 && fail "ping works after removal"
echo "removal ok"

# Bad requests get wireguard-go's negative errno, and unknown interfaces fail.
A wg set "$IA" peer "AAAA" 2>/dev/null && fail "bad key accepted"
A wg show doesnotexist$$ >/dev/null 2>&1 && fail "wg show of missing interface succeeded"

# Lifetime: deleting the TUN device ends the daemon.
A ip link del "$IA"
wait_for 5 sh -c "! kill -0 ${PIDS[0]}" || fail "daemon survived TUN removal"
echo "PASS"
