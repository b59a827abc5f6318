#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The relay embedded in wiremesh-server: DERP at /derp on the server's own TLS
# listener (test CA) and a STUN server. Two DERP clients holding the node keys
# of registered nodes exchange packets through it; an unknown key and the
# key of an expired node are refused; connections that end are released; the
# classic `stun` client gets its mapping; the netmap's DERP map holds the
# embedded region; --derp-listen gives the relay a TLS listener of its own,
# announced instead; a --derp-map file wins over the generated region. The options come from
# the HuJSON config file, the environment and flags.
. "$(dirname "$0")/lib.sh"

for t in openssl python3 stun; do command -v $t >/dev/null || skip "missing $t"; done
D=$WM_BIN/wiremesh-derper
[ -x "$D" ] || skip "no $D"

# test CA and a certificate for derp.test and 127.0.0.1 signed by it
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
	-keyout "$T/ca.key" -out "$T/ca.pem" -subj "/CN=wiremesh test CA" 2>/dev/null || fail "CA"
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
	-keyout "$T/key.pem" -out "$T/req.csr" -subj /CN=derp.test 2>/dev/null || fail "CSR"
printf 'subjectAltName=DNS:derp.test,IP:127.0.0.1\n' >"$T/ext"
openssl x509 -req -in "$T/req.csr" -CA "$T/ca.pem" -CAkey "$T/ca.key" -CAcreateserial \
	-days 1 -extfile "$T/ext" -out "$T/cert.pem" 2>/dev/null || fail "certificate"
chmod 600 "$T/key.pem"
export SSL_CERT_FILE=$T/ca.pem
CURL_CA=$T/ca.pem
URL_SCHEME=https

"$SRV" serve --help | grep -q -- '--derp-region-id' || fail "serve --help does not list the relay options"

SPORT=$(python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat >"$T/config.hujson" <<EOF
{
	// the embedded relay, from the config file
	"derp": true,
	"stun_listen": "127.0.0.1:$SPORT",
}
EOF
bootstrap
WIREMESH_DERP_REGION_CODE=tst start_server --config "$T/config.hujson" --tls-cert "$T/cert.pem" \
	--tls-key "$T/key.pem" --derp-region-id 901 --derp-region-name "test region" \
	--derp-hostname derp.test
"$SRV" users create alice >/dev/null || fail "users create"
AK=$("$SRV" preauthkeys create --user alice --reusable) || fail "preauthkeys create"
node a register --authkey "$AK" --hostname alpha >"$T/a.reg" || fail "register a"
node b register --authkey "$AK" --hostname beta >/dev/null || fail "register b"
key() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$T/$1.json" "$2"; }
ka=$(key a node_private); kap=$(key a node_public)
kb=$(key b node_private); kbp=$(key b node_public)
read -r kx _ <<<"$("$D" debug genkey | sed 's/private=\(.*\) public=\(.*\)/\1 \2/')"

# 1. the netmap carries the embedded region
node a map --lines 1 >"$T/map" 2>/dev/null || fail "map"
python3 - "$T/map" "$PORT" "$SPORT" <<'PY' || fail "embedded region not in the netmap's DERP map: $(head -c 600 "$T/map")"
import json, sys
m = json.loads(open(sys.argv[1]).readline())
r = m["derp_map"]["Regions"]
assert list(r) == ["901"], r
r = r["901"]
assert r["RegionID"] == 901 and r["RegionCode"] == "tst" and r["RegionName"] == "test region", r
n = r["Nodes"][0]
assert n["HostName"] == "derp.test" and n["DERPPort"] == int(sys.argv[2]), n
assert n["STUNPort"] == int(sys.argv[3]), n
PY
ok "netmap DERP map: region 901 tst, derp.test:$PORT, STUN $SPORT"

# 2. two registered nodes exchange packets through /derp over the server's TLS
# background clients run the binary directly, so that $! is its PID (cleanup kills it)
CL=("$D" debug client --host derp.test --dial 127.0.0.1 --port)
client() { "${CL[@]}" "$PORT" "$@"; }
"${CL[@]}" "$PORT" --key "$kb" --recv 5 --echo --timeout 15 >"$T/b.out" 2>&1 &
bpid=$!; WM_PIDS+=("$bpid")
wait_for 10 grep -q '^connected' "$T/b.out" || fail "B did not connect: $(cat "$T/b.out")"
client --key "$ka" --send "$kbp" --msg "via-embedded-derp" --count 5 --recv 5 --timeout 10 >"$T/a.out" 2>&1 ||
	fail "A did not get its echoes: $(cat "$T/a.out")"
wait "$bpid" || fail "B failed: $(cat "$T/b.out")"
[ "$(grep -c "^recv src=$kap .*data=via-embedded-derp" "$T/b.out")" = 5 ] || fail "B did not get A's packets"
[ "$(grep -c "^recv src=$kbp .*data=via-embedded-derp" "$T/a.out")" = 5 ] || fail "A did not get B's echoes"
metric() { curl -s --cacert "$CURL_CA" "$URL/metrics" | sed -n "s/^$1 //p"; }
[ "$(metric wiremesh_derp_packets_forwarded_total)" = 10 ] || fail "forwarded counter"
ok "registered nodes exchange packets through the embedded relay"

# 3. connections that end are released (the TLS proxy hides the hangup; the relay watches for it)
sockets_zero() { [ "$(metric wiremesh_derp_sockets)" = 0 ]; }
wait_for 10 sockets_zero || fail "relay still holds $(metric wiremesh_derp_sockets) sockets"
ok "ended connections released"

# 4. admission: an unknown key, then an expired node, are refused
out=$(client --key "$kx" --probe --timeout 8) && rc=0 || rc=$?
[ "$rc" = 3 ] && [ "$out" = refused ] || fail "unknown key not refused (rc=$rc out=$out)"
out=$(client --key "$ka" --probe --timeout 8) || fail "registered key refused ($out)"
[ "$out" = admitted ] || fail "A: $out"
# A is connected when it expires: the relay drops it
"${CL[@]}" "$PORT" --key "$ka" --recv 1 --timeout 30 >"$T/a5.out" 2>&1 &
apid=$!; WM_PIDS+=("$apid")
wait_for 10 grep -q '^connected' "$T/a5.out" || fail "A did not connect"
clients_is() { [ "$(metric wiremesh_derp_clients)" = "$1" ]; }
wait_for 5 clients_is 1 || fail "relay counts $(metric wiremesh_derp_clients) clients, want 1"
ida=$(sed -E 's/.*"id":([0-9]+).*/\1/' "$T/a.reg")
"$SRV" nodes expire "$ida" >/dev/null || fail "nodes expire"
wait_for 5 clients_is 0 || fail "expired node still connected to the relay"
kill "$apid" 2>/dev/null; wait "$apid" 2>/dev/null || true
out=$(client --key "$ka" --probe --timeout 8) && rc=0 || rc=$?
[ "$rc" = 3 ] && [ "$out" = refused ] || fail "expired node not refused (rc=$rc out=$out)"
[ "$(metric 'wiremesh_derp_conns_refused_total{reason="admission"}')" -ge 3 ] || fail "refusals not counted"
ok "unknown key refused; expiring a node drops its relay connection and refuses it"

# 5. HTTP endpoints beside /derp
[ "$(curl -s --cacert "$CURL_CA" -o /dev/null -w '%{http_code}' "$URL/derp")" = 426 ] || fail "/derp without upgrade"
[ "$(curl -s --cacert "$CURL_CA" -o /dev/null -w '%{http_code}' "$URL/derp/probe")" = 200 ] || fail "/derp/probe"
curl -s --cacert "$CURL_CA" -D - -o /dev/null -H 'X-Tailscale-Challenge: c123' "$URL/generate_204" >"$T/h"
grep -q '^HTTP/1.1 204' "$T/h" && grep -qi '^X-Tailscale-Response: response c123' "$T/h" || fail "/generate_204: $(cat "$T/h")"
ok "/derp without upgrade 426, /derp/probe, /generate_204"

# 6. STUN: the classic client (RFC 3489) and ours (RFC 5389)
out=$(timeout 20 stun -v "127.0.0.1:$SPORT" 2>&1 || true)
echo "$out" | grep -q 'MappedAddress = 127.0.0.1:[0-9]' || fail "stun client got no mapping: $out"
"$D" debug stun "127.0.0.1:$SPORT" | grep -q '^mapped=127.0.0.1:[0-9]' || fail "our STUN client"
[ "$(metric 'wiremesh_stun_requests_total{kind="rfc5389"}')" -ge 1 ] || fail "STUN counter"
ok "STUN answers stun and our client on $SPORT"

# 7. --derp-listen: the relay's own TLS listener (the server's certificate), announced in the map
stop_server
DLPORT=$(free_port)
start_server --config "$T/config.hujson" --tls-cert "$T/cert.pem" --tls-key "$T/key.pem" \
	--derp-region-id 901 --derp-hostname derp.test --derp-listen "127.0.0.1:$DLPORT"
node b map --lines 1 >"$T/map3" 2>/dev/null || fail "map with --derp-listen"
python3 - "$T/map3" "$DLPORT" <<'PY' || fail "--derp-listen port not announced: $(head -c 600 "$T/map3")"
import json, sys
n = json.loads(open(sys.argv[1]).readline())["derp_map"]["Regions"]["901"]["Nodes"][0]
assert n["DERPPort"] == int(sys.argv[2]), n
PY
node c register --authkey "$AK" --hostname gamma >/dev/null || fail "register c"
kc=$(key c node_private); kcp=$(key c node_public)
lclient() { "${CL[@]}" "$DLPORT" "$@"; }
"${CL[@]}" "$DLPORT" --key "$kc" --recv 3 --timeout 15 >"$T/c4.out" 2>&1 &
cpid=$!; WM_PIDS+=("$cpid")
wait_for 10 grep -q '^connected' "$T/c4.out" || fail "C did not connect to --derp-listen"
lclient --key "$kb" --send "$kcp" --msg own-listener --count 3 --timeout 10 >/dev/null || fail "B send via --derp-listen"
wait "$cpid" || fail "C did not receive via --derp-listen: $(cat "$T/c4.out")"
[ "$(grep -c "^recv src=$kbp .*data=own-listener" "$T/c4.out")" = 3 ] || fail "C did not see B's key"
out=$(lclient --key "$kx" --probe --timeout 8) && rc=0 || rc=$?
[ "$rc" = 3 ] && [ "$out" = refused ] || fail "unknown key not refused on --derp-listen (rc=$rc out=$out)"
ok "--derp-listen: own TLS listener announced, relays, admission enforced"

# 8. a --derp-map file wins over the generated region
stop_server
cat >"$T/derpmap.json" <<'EOF'
{"Regions": {
  "1": {"RegionID": 1, "RegionCode": "one", "RegionName": "One",
        "Nodes": [{"Name": "1a", "RegionID": 1, "HostName": "derp1.example.test", "DERPPort": 443}]},
  "901": {"RegionID": 901, "RegionCode": "tst", "RegionName": "test region",
          "Nodes": [{"Name": "901a", "RegionID": 901, "HostName": "derp.test", "DERPPort": 9443}]}}}
EOF
start_server --config "$T/config.hujson" --tls-cert "$T/cert.pem" --tls-key "$T/key.pem" \
	--derp-region-id 901 --derp-map "$T/derpmap.json"
node b map --lines 1 >"$T/map2" 2>/dev/null || fail "map after restart"
python3 - "$T/map2" <<'PY' || fail "--derp-map file did not win: $(head -c 600 "$T/map2")"
import json, sys
r = json.loads(open(sys.argv[1]).readline())["derp_map"]["Regions"]
assert sorted(r) == ["1", "901"], r
assert r["901"]["Nodes"][0]["DERPPort"] == 9443, r
PY
# the relay still serves on this listener
client --key "$kb" --probe --timeout 8 | grep -q '^admitted$' || fail "relay not serving with --derp-map"
ok "--derp-map file wins; relay still embedded"

# 9. a clean shutdown while a DERP client is connected (its connection is
# handed back to the HTTP layer before that stops); no sanitizer reports
"${CL[@]}" "$PORT" --key "$kb" --recv 1 --timeout 30 >"$T/b3.out" 2>&1 &
bpid=$!; WM_PIDS+=("$bpid")
wait_for 10 grep -q '^connected' "$T/b3.out" || fail "B did not connect before shutdown"
kill -TERM "$SERVER_PID"
wait "$SERVER_PID" && rc=0 || rc=$?
[ "$rc" = 0 ] || fail "server exited with $rc at shutdown"
kill "$bpid" 2>/dev/null; wait "$bpid" 2>/dev/null || true	# it would retry until its timeout
! grep -qE 'Sanitizer|runtime error' "$WM_SERVER_LOG" || fail "sanitizer report in the server log"
ok "clean shutdown with a connected DERP client"
echo "server_derp: ok"
