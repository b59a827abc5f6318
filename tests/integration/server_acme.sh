#!/bin/bash
# SPDX-License-Identifier: MIT
# ACME (RFC 8555) against Debian's pebble: wiremesh-server and
# wiremesh-derper get a certificate for acme_hostname with HTTP-01 and with
# TLS-ALPN-01, serve it, keep the state files at mode 0600, reuse the
# certificate after a restart (no new order), and renew it in the running
# process (the served serial changes, same PID).
# Everything runs in a network namespace of its own, so the CA validates on
# the real ports: HTTP-01 on 80 (acme_http_listen's default) and
# TLS-ALPN-01 on 443.
. "$(dirname "$0")/lib.sh"
command -v pebble >/dev/null && command -v pebble-challtestsrv >/dev/null ||
	skip "pebble not installed"
if [ -z "${WM_ACME_NS:-}" ]; then
	. "$(dirname "$0")/netns.sh"
	NS=wm${NETNS_SFX}a
	netns_new "$NS"
	WM_ACME_NS=$NS ip netns exec "$NS" bash "$0" "$@"
	exit $?
fi
DERPER=$WM_BIN/wiremesh-derper
HOST=acme.wiremesh.test
P_ACME=$(free_port); P_MGMT=$(free_port); P_DNS=$(free_port); P_CTS=$(free_port)
P_CHAL=80; P_TLS=443

# pebble's own HTTPS listener: a certificate from a test CA
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
	-subj /CN=test-ca -keyout "$T/ca.key" -out "$T/ca.pem" 2>/dev/null || fail "test CA"
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=127.0.0.1 \
	-keyout "$T/pebble.key" -out "$T/pebble.csr" 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' >"$T/san.ext"
openssl x509 -req -in "$T/pebble.csr" -CA "$T/ca.pem" -CAkey "$T/ca.key" -CAcreateserial \
	-days 2 -extfile "$T/san.ext" -out "$T/pebble.pem" 2>/dev/null || fail "pebble cert"

# pebble validates HTTP-01 on the server's challenge listener (httpPort);
# names resolve through pebble-challtestsrv's DNS (every A query: 127.0.0.1)
cat >"$T/pebble.json" <<JSON
{"pebble": {"listenAddress": "127.0.0.1:$P_ACME", "managementListenAddress": "127.0.0.1:$P_MGMT",
 "certificate": "$T/pebble.pem", "privateKey": "$T/pebble.key",
 "httpPort": $P_CHAL, "tlsPort": $P_TLS, "ocspResponderURL": "",
 "externalAccountBindingRequired": false, "certificateValidityPeriod": 3600}}
JSON
pebble-challtestsrv -dns01 "127.0.0.1:$P_DNS" -management "127.0.0.1:$P_CTS" -http01 "" \
	-https01 "" -tlsalpn01 "" -defaultIPv6 "" >"$T/cts.log" 2>&1 &
WM_PIDS+=($!)
PEBBLE_VA_NOSLEEP=1 PEBBLE_WFE_NONCEREJECT=0 PEBBLE_AUTHZREUSE=0 \
	pebble -config "$T/pebble.json" -dnsserver "127.0.0.1:$P_DNS" >"$T/pebble.log" 2>&1 &
PEBBLE_PID=$!
WM_PIDS+=($PEBBLE_PID)
DIR=https://127.0.0.1:$P_ACME/dir
wait_for 20 curl -s -o /dev/null "http://127.0.0.1:$P_CTS/" || { cat "$T/cts.log"; fail "pebble-challtestsrv did not start"; }
wait_for 20 curl -sf --cacert "$T/ca.pem" "$DIR" || { cat "$T/pebble.log"; fail "pebble did not start"; }
curl -sf --cacert "$T/ca.pem" "https://127.0.0.1:$P_MGMT/roots/0" >"$T/root.pem" || fail "pebble root"
ok "pebble and its DNS are up"

orders() { grep -c "POST /order-plz\|newOrder\|POST.*order-plz" "$T/pebble.log" || true; }
served() { # served PORT: subject, SAN and serial of the certificate served there
	openssl s_client -connect "127.0.0.1:$1" -servername $HOST </dev/null 2>/dev/null |
		openssl x509 -noout -serial -subject -ext subjectAltName 2>/dev/null
}
serial() { served "$1" | sed -n 's/^serial=//p'; }
https_ok() { curl -sf --cacert "$T/root.pem" --resolve "$HOST:$1:127.0.0.1" "https://$HOST:$1${2:-/healthz}"; }

# alpn_issued WHO LOG [PATH]: WHO (logging to LOG) got its certificate by
# TLS-ALPN-01 and serves it on P_TLS (PATH: what answers there): its SAN,
# the CA's acme-tls/1 handshake seen, the challenge VALID in pebble's log
# (sets CH, its id), no HTTP-01 listener, and acme-tls/1 not negotiated
# outside a challenge (the real certificate).
alpn_issued() {
	local who=$1 log=$2 path=${3:-/healthz}
	wait_for 40 https_ok $P_TLS "$path" ||
		{ tail -20 "$log"; tail -20 "$T/pebble.log"; fail "$who tls-alpn-01: no HTTPS with the ACME certificate"; }
	served $P_TLS | grep -q "DNS:$HOST" || fail "$who tls-alpn-01: SAN is not $HOST"
	grep -q "acme: tls-alpn-01 validation handshake" "$log" ||
		fail "$who tls-alpn-01: the CA's acme-tls/1 handshake was not seen"
	# the CA's authorization names the validated challenge; pebble logs its id
	CH=$(sed -n 's/.*acme: challenge validated.* type=tls-alpn-01 url=.*\/\([^/ ]*\)$/\1/p' "$log" | tail -1)
	[ -n "$CH" ] || { tail -20 "$log"; fail "$who tls-alpn-01: no validated tls-alpn-01 challenge"; }
	grep -q "set VALID by completed challenge $CH" "$T/pebble.log" ||
		{ tail -20 "$T/pebble.log"; fail "pebble did not validate the $who's tls-alpn-01 challenge $CH"; }
	curl -s -o /dev/null "http://127.0.0.1:$P_CHAL/" && fail "$who tls-alpn-01: an HTTP-01 listener is up"
	openssl s_client -connect "127.0.0.1:$P_TLS" -servername $HOST -alpn acme-tls/1 </dev/null \
		>"$T/$who-alpn-idle.txt" 2>&1
	grep -q "No ALPN negotiated" "$T/$who-alpn-idle.txt" ||
		{ cat "$T/$who-alpn-idle.txt"; fail "$who: acme-tls/1 negotiated outside a challenge"; }
}

# alpn_renewed WHO LOG PID SERIAL [PATH]: WHO (process PID) renewed the
# certificate of SERIAL by a second TLS-ALPN-01 validation, without a restart.
alpn_renewed() {
	local who=$1 log=$2 pid=$3 old=$4 path=${5:-/healthz}
	renewed() { local s; s=$(serial $P_TLS); [ -n "$s" ] && [ "$s" != "$old" ]; }
	wait_for 40 renewed || { tail -20 "$log"; fail "$who tls-alpn-01: not renewed"; }
	kill -0 "$pid" || fail "$who tls-alpn-01 died"
	https_ok $P_TLS "$path" >/dev/null || fail "$who tls-alpn-01: no HTTPS after renewal"
	[ "$(grep -c "acme: tls-alpn-01 validation handshake" "$log")" -ge 2 ] ||
		fail "$who tls-alpn-01: renewal without a second validation"
}

# no --acme-http-listen: its default, :80
ACME=(--acme-hostname $HOST --acme-email ops@example.com --acme-directory "$DIR"
	--acme-ca-file "$T/ca.pem")
mkdir -p "$T/srv" "$T/wrong"
run_server() {
	WM_SERVER_LOG=$T/server.log
	"$SRV" serve --listen "127.0.0.1:$P_TLS" --db "$T/srv/db.sqlite" "${ACME[@]}" "$@" \
		>>"$WM_SERVER_LOG" 2>&1 &
	SERVER_PID=$!
	WM_PIDS+=("$SERVER_PID")
}

# 1. an unreachable directory is a clear start-up error
P_DEAD=$(free_port)
"$SRV" serve --listen "127.0.0.1:$P_TLS" --db "$T/dead.sqlite" --acme-hostname $HOST \
	--acme-directory "https://127.0.0.1:$P_DEAD/dir" --acme-http-listen "127.0.0.1:$P_CHAL" \
	--acme-ca-file "$T/ca.pem" >"$T/dead.log" 2>&1 && fail "started without a directory"
grep -q "unreachable" "$T/dead.log" || { cat "$T/dead.log"; fail "no clear error for an unreachable directory"; }
ok "unreachable directory: $(grep -o 'ACME server[^"]*unreachable' "$T/dead.log" | head -1)"

# a challenge the CA cannot reach: the CA's problem detail, no start
P_WRONG=$(free_port)
"$SRV" serve --listen "127.0.0.1:$P_TLS" --db "$T/wrong/db.sqlite" --acme-hostname $HOST \
	--acme-directory "$DIR" --acme-http-listen "127.0.0.1:$P_WRONG" \
	--acme-ca-file "$T/ca.pem" >"$T/wrong.log" 2>&1 && fail "started without a certificate"
grep -q "http-01 challenge for $HOST failed.*urn:ietf:params:acme:error:connection" "$T/wrong.log" ||
	{ cat "$T/wrong.log"; fail "no CA problem detail for a failed challenge"; }
ok "failed challenge: the CA's problem detail is the start-up error"

# 2. issue and serve
run_server
wait_for 40 https_ok $P_TLS || { tail -20 "$T/server.log"; fail "no HTTPS with the ACME certificate"; }
S1=$(serial $P_TLS)
served $P_TLS | grep -q "subject=CN *= *$HOST" || fail "subject is not $HOST: $(served $P_TLS)"
served $P_TLS | grep -q "DNS:$HOST" || fail "SAN is not $HOST"
ok "server: certificate issued and served (serial $S1)"
for f in account.key $HOST.key $HOST.crt; do
	[ "$(stat -c %a "$T/srv/acme/$f")" = 600 ] || fail "$f mode $(stat -c %a "$T/srv/acme/$f")"
done
[ "$(stat -c %a "$T/srv/acme")" = 700 ] || fail "state dir mode"
grep -q "BEGIN" "$T/server.log" && fail "key material in the log"
ok "state files mode 0600 (dir 0700), no PEM in the log"
# HTTP-01 listener: unknown tokens 404, other paths redirect to HTTPS
[ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$P_CHAL/.well-known/acme-challenge/nope")" = 404 ] ||
	fail "unknown token not 404"
[ "$(curl -s -o /dev/null -w '%{redirect_url}' "http://127.0.0.1:$P_CHAL/healthz")" = "https://$HOST/healthz" ] ||
	fail "no redirect to HTTPS"
ok "challenge listener: 404 for unknown tokens, redirect elsewhere"

# 3. restart: the certificate is reused, no new order
N1=$(orders)
kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null
run_server
wait_for 20 https_ok $P_TLS || fail "no HTTPS after restart"
[ "$(serial $P_TLS)" = "$S1" ] || fail "restart changed the certificate"
[ "$(orders)" = "$N1" ] || fail "restart placed a new order"
grep -q "using the existing certificate" "$T/server.log" || fail "no reuse logged"
ok "restart reuses the certificate (serial $S1, orders $N1)"
kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null

# 4. TLS-ALPN-01 (RFC 8737) on the server's own TLS listener (443, pebble's
# tlsPort), fresh state: issue, serve, and renew in the running process
# (renew when under 3590 s of pebble's 3600 are left, i.e. 10 s after each
# issuance); no HTTP-01 listener at all
# with the embedded relay on a listener of its own (derp_listen), which
# must get the certificate too (and the renewed one)
P_DL=$(free_port)
run_server --acme-challenge tls-alpn-01 --acme-state-dir "$T/srv-alpn" --acme-renew-before 3590s \
	--derp --derp-listen "127.0.0.1:$P_DL"
alpn_issued server "$T/server.log"
S2=$(serial $P_TLS)
PID2=$SERVER_PID
for f in account.key $HOST.key $HOST.crt; do
	[ "$(stat -c %a "$T/srv-alpn/$f")" = 600 ] || fail "tls-alpn-01 $f mode $(stat -c %a "$T/srv-alpn/$f")"
done
ok "server tls-alpn-01: issued and served on 443 (serial $S2); pebble validated challenge $CH"
[ "$(serial $P_DL)" = "$S2" ] || fail "derp_listen serves $(serial $P_DL), not the ACME certificate $S2"
ok "server tls-alpn-01: derp_listen serves the same certificate"
ok "server tls-alpn-01: acme-tls/1 refused outside a challenge"
alpn_renewed server "$T/server.log" "$PID2" "$S2"
grep -q "serves the renewed certificate" "$T/server.log" || fail "no renewal logged"
ok "server tls-alpn-01: renewed without restart: serial $S2 -> $(serial $P_TLS), pid $PID2"
dlchanged() { [ "$(serial $P_DL)" = "$(serial $P_TLS)" ]; }
wait_for 10 dlchanged || fail "derp_listen still serves $(serial $P_DL) after the renewal to $(serial $P_TLS)"
ok "server tls-alpn-01: derp_listen serves the renewed certificate too"
kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null

# 5. wiremesh-derper with TLS-ALPN-01 (RFC 8737) on its TLS port, which is
# pebble's tlsPort: issue, serve, renew; no HTTP-01 listener at all
"$DERPER" --addr "127.0.0.1:$P_TLS" --http-port -1 --stun-addr off --state-dir "$T/derper-alpn" \
	--acme-hostname $HOST --acme-challenge tls-alpn-01 --acme-directory "$DIR" \
	--acme-ca-file "$T/ca.pem" --acme-renew-before 3590s >"$T/derper-alpn.log" 2>&1 &
DERPER_PID=$!
WM_PIDS+=("$DERPER_PID")
alpn_issued derper "$T/derper-alpn.log" /derp/probe
A1=$(serial $P_TLS)
ok "derper tls-alpn-01: issued and served (serial $A1); pebble validated tls-alpn-01 challenge $CH"
ok "derper tls-alpn-01: acme-tls/1 refused outside a challenge"
alpn_renewed derper "$T/derper-alpn.log" "$DERPER_PID" "$A1" /derp/probe
ok "derper tls-alpn-01: renewed without restart: serial $A1 -> $(serial $P_TLS)"
kill "$DERPER_PID"; wait "$DERPER_PID" 2>/dev/null

# 6. wiremesh-derper: issue, serve, renew
P_D=$(free_port)
"$DERPER" --addr "127.0.0.1:$P_D" --stun-addr off --state-dir "$T/derper" \
	--acme-hostname $HOST --acme-email ops@example.com --acme-directory "$DIR" \
	--acme-http-addr "127.0.0.1:$P_CHAL" --acme-ca-file "$T/ca.pem" --acme-renew-before 3590s \
	>"$T/derper.log" 2>&1 &
DERPER_PID=$!
WM_PIDS+=("$DERPER_PID")
wait_for 40 https_ok $P_D /derp/probe || { tail -20 "$T/derper.log"; fail "derper: no HTTPS with the ACME certificate"; }
served $P_D | grep -q "DNS:$HOST" || fail "derper: SAN is not $HOST"
[ "$(stat -c %a "$T/derper/$HOST.key")" = 600 ] || fail "derper key mode"
D1=$(serial $P_D)
grep -q "BEGIN" "$T/derper.log" && fail "derper: key material in the log"
ok "derper: certificate issued and served (serial $D1)"
dchanged() { s=$(serial $P_D); [ -n "$s" ] && [ "$s" != "$D1" ]; }
wait_for 40 dchanged || { tail -20 "$T/derper.log"; fail "derper: not renewed"; }
kill -0 "$DERPER_PID" || fail "derper died"
https_ok $P_D /derp/probe >/dev/null || fail "derper: no HTTPS after renewal"
ok "derper: renewed without restart: serial $D1 -> $(serial $P_D)"
[ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$P_CHAL/generate_204")" = 204 ] ||
	fail "derper: /generate_204 on the HTTP listener"
ok "derper: /generate_204 on its HTTP-01 listener"
# the CA gone: renewal fails, is logged and retried, the current
# certificate stays in service
D2=$(serial $P_D)
kill "$PEBBLE_PID"; wait "$PEBBLE_PID" 2>/dev/null
wait_for 30 grep -q "renewal failed; retrying.*unreachable" "$T/derper.log" ||
	{ tail -5 "$T/derper.log"; fail "derper: no renewal failure logged"; }
https_ok $P_D /derp/probe >/dev/null || fail "derper: no HTTPS after a failed renewal"
[ "$(serial $P_D)" = "$D2" ] || fail "derper: certificate changed without a CA"
ok "derper: failed renewal logged ($(grep -o 'retry_in=[0-9]*s' "$T/derper.log" | head -1)), serial $D2 still served"
kill "$DERPER_PID"; wait "$DERPER_PID" 2>/dev/null
# under the sanitizer build: no report from any run (leaks show at exit)
if grep -l "ERROR: AddressSanitizer\|ERROR: LeakSanitizer\|runtime error:" "$T"/*.log; then
	grep -h -A30 "ERROR: \|runtime error:" "$T"/*.log | head -60
	fail "sanitizer report"
fi
ok "no sanitizer reports"
