#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# DERP through wiremesh-derper over TLS with a test CA: two clients exchange
# packets both ways; a client that disappears mid-frame leaves the relay
# healthy and its peer gets PeerGone; with --verify-clients-url only keys the
# verifier approves are admitted (a python3 verifier, real HTTP).
set -eu
WM_TOP=${WM_TOP:-$(cd "$(dirname "$0")/../.." && pwd)}
WM_BIN=${WM_BIN:-$WM_TOP/bin}
D="$WM_BIN/wiremesh-derper"
for t in openssl curl python3; do command -v $t >/dev/null || { echo "missing $t"; exit 77; }; done
work=$(mktemp -d /tmp/wmrl-derp-XXXXXX)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
	rm -rf "$work"
}
trap cleanup EXIT
wait_for() {	# FILE REGEX
	for _ in $(seq 200); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.05; done
	echo "timeout waiting for '$2' in $1"; cat "$1"; return 1
}
fail() { echo "FAIL: $*"; exit 1; }

# test CA and a server certificate for "derp.test" signed by it
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
	-keyout "$work/ca.key" -out "$work/ca.pem" -subj "/CN=wiremesh test CA" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
	-keyout "$work/key.pem" -out "$work/req.csr" -subj /CN=derp.test 2>/dev/null
printf 'subjectAltName=DNS:derp.test\n' >"$work/ext"
openssl x509 -req -in "$work/req.csr" -CA "$work/ca.pem" -CAkey "$work/ca.key" -CAcreateserial \
	-days 1 -extfile "$work/ext" -out "$work/cert.pem" 2>/dev/null
export SSL_CERT_FILE="$work/ca.pem"

start_derper() {	# LOG extra-args...; sets $port
	local log=$1; shift
	"$D" --addr 127.0.0.1:0 --http-port -1 --stun-addr off --tls-cert "$work/cert.pem" \
		--tls-key "$work/key.pem" "$@" >"$log" 2>&1 &
	pids+=($!)
	wait_for "$log" 'msg="ready"'
	port=$(sed -n 's/.*derp: listening.*port=\([0-9]*\).*/\1/p' "$log")
}
keypair() { "$D" debug genkey | sed 's/private=\(.*\) public=\(.*\)/\1 \2/'; }
client() { "$D" debug client --host derp.test --dial 127.0.0.1 --port "$port" "$@"; }
metric() { curl -s --cacert "$work/ca.pem" --resolve "derp.test:$port:127.0.0.1" "https://derp.test:$port/metrics" | sed -n "s/^$1 //p"; }

start_derper "$work/d1.log"
read -r ka kap <<<"$(keypair)"
read -r kb kbp <<<"$(keypair)"
read -r kc kcp <<<"$(keypair)"
read -r kd kdp <<<"$(keypair)"

# a wrong CA is refused by the client
SSL_CERT_FILE=/dev/null client --key "$ka" --probe --timeout 3 >/dev/null 2>&1 && fail "TLS accepted without the CA"

# 1. B echoes; A sends 5 and waits for the 5 echoes
client --key "$kb" --recv 5 --echo --timeout 15 >"$work/b.out" 2>&1 &
bpid=$!; pids+=($bpid)
wait_for "$work/b.out" '^connected'
client --key "$ka" --send "$kbp" --msg "ping-through-derp" --count 5 --recv 5 --timeout 10 >"$work/a.out" 2>&1 ||
	{ cat "$work/a.out"; fail "A did not get its echoes"; }
wait $bpid || { cat "$work/b.out"; fail "B failed"; }
[ "$(grep -c "^recv src=$kap .*data=ping-through-derp" "$work/b.out")" = 5 ] || fail "B did not see A's key"
[ "$(grep -c "^recv src=$kbp .*data=ping-through-derp" "$work/a.out")" = 5 ] || fail "A did not see B's key"
echo "exchange: ok"

# 2. A disappears in the middle of a frame; B gets the whole packet before, then PeerGone
client --key "$kb" --recv 1 --expect-gone --timeout 10 >"$work/b2.out" 2>&1 &
bpid=$!; pids+=($bpid)
wait_for "$work/b2.out" '^connected'
client --key "$ka" --send "$kbp" --msg "last words" --vanish >/dev/null 2>&1 || true
wait $bpid || { cat "$work/b2.out"; fail "B saw no PeerGone after A vanished"; }
grep -q "^gone peer=$kap reason=0" "$work/b2.out" || fail "wrong PeerGone"
# the relay still works for others
client --key "$kc" --recv 1 --timeout 10 >"$work/c.out" 2>&1 &
cpid=$!; pids+=($cpid)
wait_for "$work/c.out" '^connected'
client --key "$kb" --send "$kcp" --msg after --timeout 5 >/dev/null
wait $cpid || fail "relay broken after a vanished client"
echo "vanish: ok"
# endpoints
curl -sf --cacert "$work/ca.pem" --resolve "derp.test:$port:127.0.0.1" -o /dev/null -w '%{http_code}' "https://derp.test:$port/generate_204" | grep -q 204 || fail "/generate_204"
curl -sf --cacert "$work/ca.pem" --resolve "derp.test:$port:127.0.0.1" -o /dev/null -w '%{http_code}' "https://derp.test:$port/derp/probe" | grep -q 200 || fail "/derp/probe"
[ "$(curl -s --cacert "$work/ca.pem" --resolve "derp.test:$port:127.0.0.1" -o /dev/null -w '%{http_code}' "https://derp.test:$port/derp")" = 426 ] || fail "/derp without upgrade"
[ "$(metric wiremesh_derp_packets_forwarded_total)" -ge 11 ] || fail "forwarded counter"

# 3. admission: a verifier that knows only B and C
cat >"$work/verifier.py" <<'PY'
import http.server, json, sys
allowed = set(sys.argv[2:])
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        ok = body.get("NodePublic") in allowed
        out = json.dumps({"Allow": ok}).encode()
        self.send_response(200 if ok else 403)
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)
    def log_message(self, *a):
        sys.stderr.write("verify %s\n" % (a,))
s = http.server.HTTPServer(("127.0.0.1", 0), H)
print("port", s.server_address[1], flush=True)
s.serve_forever()
PY
python3 "$work/verifier.py" x "nodekey:$kbp" "nodekey:$kcp" "nodekey:$kdp" >"$work/v.out" 2>"$work/v.err" &
vpid=$!; pids+=($vpid)
wait_for "$work/v.out" '^port'
vport=$(sed -n 's/^port //p' "$work/v.out")
start_derper "$work/d2.log" --verify-clients-url "http://127.0.0.1:$vport/verify"
out=$(client --key "$kb" --probe --timeout 8) || fail "known key B refused ($out)"
[ "$out" = admitted ] || fail "B: $out"
set +e
out=$(client --key "$ka" --probe --timeout 8); rc=$?
set -e
[ $rc = 3 ] && [ "$out" = refused ] || fail "unknown key A was not refused (rc=$rc out=$out)"
# admitted clients still relay
client --key "$kc" --recv 1 --timeout 10 >"$work/c2.out" 2>&1 &
cpid=$!; pids+=($cpid)
wait_for "$work/c2.out" '^connected'
client --key "$kb" --send "$kcp" --msg admitted --timeout 5 >/dev/null
wait $cpid || fail "admitted clients cannot relay"
[ "$(metric 'wiremesh_derp_conns_refused_total{reason="admission"}')" = 1 ] || fail "refusal not counted"
# verifier unreachable: fail closed (D, allowed by the verifier but never
# checked, so not in the relay's verdict cache, is refused)
kill "$vpid" 2>/dev/null; wait "$vpid" 2>/dev/null || true
set +e
out=$(client --key "$kd" --probe --timeout 8); rc=$?
set -e
[ $rc = 3 ] || fail "verifier down but D admitted ($out)"
echo "admission: ok"
echo "relay_derp: ok"
