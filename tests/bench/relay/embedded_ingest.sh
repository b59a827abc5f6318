#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# How fast one DERP client can push 1,400-byte packets into each relay
# flavour: wiremesh-derper (its own OpenSSL TLS), the relay embedded in
# wiremesh-server on plain HTTP (TLS left to a reverse proxy), on its own
# TLS listener (--derp-listen), and on the server's own TLS (libmicrohttpd). The packets go to a
# key nobody holds, so each relay reads and drops them: this times ingest
# only. A sender whose queue stays full for a second gives up; that run is
# reported as "stalled" with what got through. Prints one line per relay:
#   embedded_ingest: relay=NAME packets=N sent=K ms=T mb_per_s=R [stalled]
# Usage: WM_BIN=$PWD/bin [N=10000] bash tests/bench/relay/embedded_ingest.sh
. "$(dirname "$0")/../../integration/lib.sh"

N=${N:-10000}
D=$WM_BIN/wiremesh-derper
for t in openssl python3; do command -v $t >/dev/null || skip "missing $t"; done

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
	-keyout "$T/key.pem" -out "$T/cert.pem" -subj /CN=derp.test \
	-addext "subjectAltName=DNS:derp.test,IP:127.0.0.1" 2>/dev/null || fail "certificate"
export SSL_CERT_FILE=$T/cert.pem
msg=$(head -c 1400 /dev/zero | tr '\0' x)
read -r _ nobody <<<"$("$D" debug genkey | sed 's/private=\(.*\) public=\(.*\)/\1 \2/')"

# push NAME PORT KEY [--plain]: times one sender and reads the relay's drop counter
dropped() {	# PORT [--plain]: the relay's unknown_dest counter
	curl -s --cacert "$T/cert.pem" "$([ -n "${2:-}" ] && echo http || echo https)://127.0.0.1:$1/metrics" |
		sed -n 's/^wiremesh_derp_packets_dropped_total{reason="unknown_dest"} //p'
}
push() {
	local name=$1 port=$2 key=$3 plain=${4:-} s e rc sent before
	before=$(dropped "$port" "$plain")
	s=$(date +%s%N)
	"$D" debug client $plain --host derp.test --dial 127.0.0.1 --port "$port" --key "$key" \
		--send "$nobody" --msg "$msg" --count "$N" --timeout 60 >/dev/null 2>&1 && rc=0 || rc=$?
	e=$(date +%s%N)
	sent=$(( $(dropped "$port" "$plain") - ${before:-0} ))
	python3 - "$name" "$N" "$sent" "$s" "$e" "$rc" <<'PY'
import sys
name, n, sent, s, e, rc = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), sys.argv[6]
sec = (e - s) / 1e9
print("embedded_ingest: relay=%s packets=%d sent=%d ms=%d mb_per_s=%.1f%s" %
      (name, n, sent, sec * 1000, sent * 1400 / sec / 1e6, "" if rc == "0" else " stalled"))
PY
}

# standalone
"$D" --addr 127.0.0.1:0 --http-port -1 --stun-addr off --tls-cert "$T/cert.pem" \
	--tls-key "$T/key.pem" >"$T/derper.log" 2>&1 &
WM_PIDS+=("$!")
wait_for 10 grep -q 'msg="ready"' "$T/derper.log" || fail "derper did not start"
dport=$(sed -n 's/.*derp: listening.*port=\([0-9]*\).*/\1/p' "$T/derper.log")
read -r k _ <<<"$("$D" debug genkey | sed 's/private=\(.*\) public=\(.*\)/\1 \2/')"
push standalone-tls "$dport" "$k"

# embedded, plain HTTP, then the server's own TLS; the sender is a registered node
bootstrap
start_server --derp
"$SRV" users create bench >/dev/null
AK=$("$SRV" preauthkeys create --user bench --reusable)
node a register --authkey "$AK" --hostname a >/dev/null || fail "register"
ka=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["node_private"])' "$T/a.json")
push embedded-plain "$PORT" "$ka" --plain
stop_server
LPORT=$(free_port)
CURL_CA=$T/cert.pem URL_SCHEME=https start_server --derp --tls-cert "$T/cert.pem" --tls-key "$T/key.pem" \
	--derp-listen "127.0.0.1:$LPORT"
push embedded-own-listener "$LPORT" "$ka"
push embedded-tls "$PORT" "$ka"
stop_server
