#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# STUN on loopback with real third-party peers: coturn's turnutils_stunclient
# and the classic `stun` client against wiremesh-derper's STUN server, and our
# STUN client against a coturn turnserver. Garbage must be dropped and counted.
set -eu
WM_TOP=${WM_TOP:-$(cd "$(dirname "$0")/../.." && pwd)}
WM_BIN=${WM_BIN:-$WM_TOP/bin}
for t in turnutils_stunclient turnserver stun openssl curl python3; do
	command -v $t >/dev/null || { echo "missing $t"; exit 77; }
done
work=$(mktemp -d /tmp/wmrl-stun-XXXXXX)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
	rm -rf "$work"
}
trap cleanup EXIT

# wait_for FILE REGEX: poll until the log line appears (5 s)
wait_for() {
	for _ in $(seq 100); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.05; done
	echo "timeout waiting for '$2' in $1"; cat "$1"; return 1
}
free_port() {
	python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
	-keyout "$work/key.pem" -out "$work/cert.pem" -subj /CN=localhost \
	-addext subjectAltName=DNS:localhost 2>/dev/null
"$WM_BIN/wiremesh-derper" --addr 127.0.0.1:0 --http-port -1 --stun-addr 127.0.0.1:0 \
	--tls-cert "$work/cert.pem" --tls-key "$work/key.pem" >"$work/derper.log" 2>&1 &
pids+=($!)
wait_for "$work/derper.log" 'msg="ready"'
sport=$(sed -n 's/.*stun: listening.*port=\([0-9]*\).*/\1/p' "$work/derper.log")
dport=$(sed -n 's/.*derp: listening.*port=\([0-9]*\).*/\1/p' "$work/derper.log")

# 1. coturn's RFC 5389 client
out=$(turnutils_stunclient -p "$sport" 127.0.0.1 2>&1)
echo "$out"
echo "$out" | grep -q 'UDP reflexive addr: 127.0.0.1:[0-9]' || { echo "FAIL: turnutils_stunclient got no mapping"; exit 1; }

# 2. the classic RFC 3489 client (it also asks for changed address/port, which we drop)
out=$(timeout 20 stun -v "127.0.0.1:$sport" 2>&1 || true)
echo "$out" | grep -q 'MappedAddress = 127.0.0.1:[0-9]' || { echo "$out"; echo "FAIL: stun client got no MAPPED-ADDRESS"; exit 1; }

# 3. our client against our server
"$WM_BIN/wiremesh-derper" debug stun "127.0.0.1:$sport" | grep -q '^mapped=127.0.0.1:[0-9]' ||
	{ echo "FAIL: our client vs our server"; exit 1; }

# 4. garbage is dropped and counted, and the server still answers
printf 'this is not stun at all' >/dev/udp/127.0.0.1/"$sport"
head -c 200 /dev/urandom >/dev/udp/127.0.0.1/"$sport"
"$WM_BIN/wiremesh-derper" debug stun "127.0.0.1:$sport" >/dev/null || { echo "FAIL: server died"; exit 1; }
m=$(curl -s --cacert "$work/cert.pem" --resolve "localhost:$dport:127.0.0.1" "https://localhost:$dport/metrics")
echo "$m" | grep wiremesh_stun
g=$(echo "$m" | sed -n 's/^wiremesh_stun_dropped_total{reason="garbage"} //p')
c=$(echo "$m" | sed -n 's/^wiremesh_stun_requests_total{kind="rfc3489"} //p')
n=$(echo "$m" | sed -n 's/^wiremesh_stun_requests_total{kind="rfc5389"} //p')
[ "${g:-0}" -ge 1 ] || { echo "FAIL: garbage not counted"; exit 1; }
[ "${c:-0}" -ge 1 ] || { echo "FAIL: classic request not counted"; exit 1; }
[ "${n:-0}" -ge 3 ] || { echo "FAIL: rfc5389 requests not counted"; exit 1; }

# 5. our client against coturn
tport=$(free_port)
turnserver -n --stun-only --no-tls --no-dtls --no-cli -L 127.0.0.1 -p "$tport" \
	--log-file "$work/turn.log" --simple-log >/dev/null 2>&1 &
pids+=($!)
ok=0
for _ in $(seq 40); do
	if out=$("$WM_BIN/wiremesh-derper" debug stun "127.0.0.1:$tport" 2>/dev/null); then ok=1; break; fi
	sleep 0.1
done
[ $ok = 1 ] || { echo "FAIL: no answer from coturn"; cat "$work"/turn*.log 2>/dev/null | tail; exit 1; }
echo "coturn: $out"
echo "$out" | grep -q '^mapped=127.0.0.1:[0-9]' || { echo "FAIL: bad mapping from coturn"; exit 1; }
echo "relay_stun: ok"
