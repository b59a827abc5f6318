#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# bench-derp against the relay embedded in `wiremesh-server serve --derp`,
# twice: through /derp on the server's own listener (libmicrohttpd upgrade
# behind the server's TLS, test CA), then through the relay's own TLS
# listener (--derp-listen). Two nodes are registered so that their keys pass
# the embedded relay's admission check; bench-derp pushes 1,400-byte packets
# between them and measures plain TLS on loopback as the limit. conns_held
# is 0 (the holder's random keys would be refused). Extra arguments go to
# bench-derp.
. "$(dirname "$0")/../../integration/lib.sh"

BENCH=${WM_BENCH_DERP:-$WM_BUILD/bench-derp}
[ -x "$BENCH" ] || BENCH=$WM_TOP/build/release/bench-derp
for t in openssl python3 curl; do command -v $t >/dev/null || skip "missing $t"; done
[ -x "$BENCH" ] || skip "no bench-derp binary"

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
	-keyout "$T/ca.key" -out "$T/ca.pem" -subj "/CN=wiremesh bench-derp-embedded CA" 2>/dev/null || fail "CA"
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
	-keyout "$T/key.pem" -out "$T/req.csr" -subj /CN=derp.test 2>/dev/null || fail "CSR"
printf 'subjectAltName=DNS:derp.test,IP:127.0.0.1\n' >"$T/ext"
openssl x509 -req -in "$T/req.csr" -CA "$T/ca.pem" -CAkey "$T/ca.key" -CAcreateserial \
	-days 1 -extfile "$T/ext" -out "$T/cert.pem" 2>/dev/null || fail "certificate"
chmod 600 "$T/key.pem"
export SSL_CERT_FILE=$T/ca.pem
CURL_CA=$T/ca.pem
URL_SCHEME=https

bootstrap
start_server --tls-cert "$T/cert.pem" --tls-key "$T/key.pem" --derp --derp-hostname derp.test
"$SRV" users create bench >/dev/null || fail "users create"
AK=$("$SRV" preauthkeys create --user bench --reusable) || fail "preauthkeys create"
node a register --authkey "$AK" --hostname bench-a >/dev/null || fail "register a"
node b register --authkey "$AK" --hostname bench-b >/dev/null || fail "register b"
key() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$T/$1.json" "$2"; }

bench() {	# PORT LABEL
	local out
	out=$("$BENCH" --server "127.0.0.1:$1" --host derp.test --ca "$T/ca.pem" \
		--key-a "$(key a node_private)" --key-b "$(key b node_private)" "${@:3}") ||
		fail "bench-derp failed ($2)"
	echo "$out ($2)"
}
bench "$PORT" "embedded, /derp through the server's TLS" "$@"
stop_server
DLPORT=$(free_port)
start_server --tls-cert "$T/cert.pem" --tls-key "$T/key.pem" --derp --derp-hostname derp.test \
	--derp-listen "127.0.0.1:$DLPORT"
bench "$DLPORT" "embedded, --derp-listen" "$@"
