#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# wiremesh-derper holds 10,000 idle DERP clients at once (TLS, full handshake
# and ClientInfo each) and still relays for a new client while they are held;
# when the holder goes away every connection is released.
set -eu
WM_TOP=${WM_TOP:-$(cd "$(dirname "$0")/../.." && pwd)}
WM_BIN=${WM_BIN:-$WM_TOP/bin}
D="$WM_BIN/wiremesh-derper"
# under sanitizers the point is memory safety, not capacity: fewer connections
case "$WM_BIN" in */san/*) N=${WMRL_HOLD_CONNS:-2000} ;; *) N=${WMRL_HOLD_CONNS:-10000} ;; esac
for t in openssl curl; do command -v $t >/dev/null || { echo "missing $t"; exit 77; }; done
[ "$(ulimit -Hn)" -ge $((N + 100)) ] || { echo "hard RLIMIT_NOFILE $(ulimit -Hn) < $N"; exit 77; }
work=$(mktemp -d /tmp/wmrl-hold-XXXXXX)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
	rm -rf "$work"
}
trap cleanup EXIT
wait_for() {	# FILE REGEX SECONDS
	for _ in $(seq $(($3 * 20))); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.05; done
	echo "timeout waiting for '$2' in $1"; tail "$1"; return 1
}
fail() { echo "FAIL: $*"; exit 1; }

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
	-keyout "$work/key.pem" -out "$work/cert.pem" -subj /CN=derp.test \
	-addext subjectAltName=DNS:derp.test 2>/dev/null
export SSL_CERT_FILE="$work/cert.pem"
"$D" --addr 127.0.0.1:0 --http-port -1 --stun-addr off --tls-cert "$work/cert.pem" \
	--tls-key "$work/key.pem" --max-conns $((N + 100)) >"$work/d.log" 2>&1 &
pids+=($!)
wait_for "$work/d.log" 'msg="ready"' 5
port=$(sed -n 's/.*derp: listening.*port=\([0-9]*\).*/\1/p' "$work/d.log")
metric() { curl -s --cacert "$work/cert.pem" --resolve "derp.test:$port:127.0.0.1" "https://derp.test:$port/metrics" | sed -n "s/^$1 //p"; }

start=$(date +%s)
"$D" debug hold --host derp.test --dial 127.0.0.1 --port "$port" --count "$N" >"$work/hold.out" 2>&1 &
hpid=$!; pids+=($hpid)
wait_for "$work/hold.out" '^held=' 120 || fail "holder did not finish"
grep -q "^held=$N alive=$N" "$work/hold.out" || { cat "$work/hold.out"; fail "not all held"; }
echo "opened $N connections in $(( $(date +%s) - start ))s"
[ "$(metric wiremesh_derp_clients)" = "$N" ] || fail "relay counts $(metric wiremesh_derp_clients) clients, want $N"

# the relay still works with all of them held
read -r ka kap <<<"$("$D" debug genkey | sed 's/private=\(.*\) public=\(.*\)/\1 \2/')"
read -r kb kbp <<<"$("$D" debug genkey | sed 's/private=\(.*\) public=\(.*\)/\1 \2/')"
"$D" debug client --host derp.test --dial 127.0.0.1 --port "$port" --key "$kb" --recv 1 --timeout 10 >"$work/b.out" 2>&1 &
bpid=$!; pids+=($bpid)
wait_for "$work/b.out" '^connected' 10
"$D" debug client --host derp.test --dial 127.0.0.1 --port "$port" --key "$ka" --send "$kbp" --msg x --timeout 5 >/dev/null
wait $bpid || fail "no relay while $N clients are held"
[ "$(metric wiremesh_derp_clients)" -ge "$N" ] || fail "held connections dropped"

kill "$hpid"; wait "$hpid" 2>/dev/null || true
for _ in $(seq 100); do [ "$(metric wiremesh_derp_sockets)" = 1 ] && break; sleep 0.05; done
[ "$(metric wiremesh_derp_clients)" = 0 ] || fail "connections not released"
echo "relay_hold: ok ($N held)"
