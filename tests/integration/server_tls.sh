#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# TLS and configuration of `wiremesh-server serve`:
#  - --tls-cert/--tls-key with a throwaway CA: curl --cacert works, curl
#    without the CA fails verification, the admin CLI works with
#    SSL_CERT_FILE, a node registers and streams its map over HTTPS; without
#    --tls-cert the log says plain HTTP;
#  - --config FILE.hujson (comments, trailing commas) applies its settings,
#    WIREMESH_<OPTION> overrides the file, a flag overrides both, and a
#    broken file is refused with FILE:LINE:COL.
. "$(dirname "$0")/lib.sh"

# Processes this script has waited for leave the cleanup list (their PIDs
# may be reused); stop() stops the current server at most once.
reaped() {
	local p i
	for p in "$@"; do
		for i in "${!WM_PIDS[@]}"; do [ "${WM_PIDS[$i]}" != "$p" ] || unset "WM_PIDS[$i]"; done
	done
}
stop() { [ -n "${SERVER_PID:-}" ] || return 0; stop_server; reaped "$SERVER_PID"; SERVER_PID=; }

command -v openssl >/dev/null || skip "openssl is not installed"

# A test CA and a server certificate for 127.0.0.1, valid for a day.
pki() {
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
		-subj /CN=wiremesh-test-ca -keyout "$T/ca.key" -out "$T/ca.crt" &&
	openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
		-subj /CN=127.0.0.1 -keyout "$T/srv.key" -out "$T/srv.csr" &&
	printf '%s\n' 'subjectAltName=IP:127.0.0.1,DNS:localhost' 'basicConstraints=CA:FALSE' \
		'keyUsage=digitalSignature' 'extendedKeyUsage=serverAuth' >"$T/ext" &&
	openssl x509 -req -in "$T/srv.csr" -CA "$T/ca.crt" -CAkey "$T/ca.key" -CAcreateserial \
		-days 1 -extfile "$T/ext" -out "$T/srv.crt"
}
pki >"$T/pki.log" 2>&1 || fail "openssl: $(cat "$T/pki.log")"
chmod 600 "$T/srv.key" "$T/ca.key"

bootstrap
URL_SCHEME=https CURL_CA=$T/ca.crt start_server --tls-cert "$T/srv.crt" --tls-key "$T/srv.key"
[[ "$URL" == https://* ]] || fail "URL $URL"
grep -q 'tls=on' "$WM_SERVER_LOG" || fail "no tls=on in the log: $(cat "$WM_SERVER_LOG")"
! grep -q 'plain HTTP' "$WM_SERVER_LOG" || fail "TLS server claims plain HTTP"
curl -sf --cacert "$T/ca.crt" "$URL/healthz" >/dev/null || fail "curl --cacert"
env -u SSL_CERT_FILE -u CURL_CA_BUNDLE curl -s -o /dev/null "$URL/healthz"; rc=$?
[ "$rc" = 60 ] || fail "curl without the CA: exit $rc (want 60, certificate verification failed)"
curl -s -o /dev/null --max-time 5 "http://127.0.0.1:$PORT/healthz" &&
	fail "plain HTTP answered on the TLS port"
ok "HTTPS with a test CA: verified with --cacert, refused without it"

env -u SSL_CERT_FILE "$SRV" users create alice >/dev/null 2>"$T/err" &&
	fail "CLI trusted an unknown CA"
SSL_CERT_FILE=$T/ca.crt "$SRV" users create alice >/dev/null || fail "CLI with SSL_CERT_FILE"
AK=$(SSL_CERT_FILE=$T/ca.crt "$SRV" preauthkeys create --user alice --reusable) || fail "preauthkeys"
SSL_CERT_FILE=$T/ca.crt "$SRV" users list --json | grep -q '"alice"' || fail "CLI users list over TLS"
ok "admin CLI over HTTPS with SSL_CERT_FILE (and not without)"

SSL_CERT_FILE=$T/ca.crt node a register --authkey "$AK" --hostname tls-a >"$T/a" ||
	fail "wm-node register over HTTPS: $(cat "$T/a")"
grep -q '"name":"tls-a"' "$T/a" || fail "register answer: $(cat "$T/a")"
env -u SSL_CERT_FILE "$WM_NODE" --server "$URL" --state "$T/b.json" register --authkey "$AK" \
	--hostname tls-b >/dev/null 2>&1 && fail "wm-node trusted an unknown CA"
SSL_CERT_FILE=$T/ca.crt node b register --authkey "$AK" --hostname tls-b >/dev/null || fail "register b"
SSL_CERT_FILE=$T/ca.crt node a map --lines 1 >"$T/map" 2>/dev/null
grep -q '"type":"full"' "$T/map" && grep -q '"name":"tls-b"' "$T/map" ||
	fail "map stream over HTTPS: $(head -c 300 "$T/map")"
ok "wm-node registers and streams its map over HTTPS"
stop

unset PORT
start_server
grep -q 'plain HTTP' "$WM_SERVER_LOG" || fail "no plain-HTTP warning without --tls-cert"
grep -q 'tls=off' "$WM_SERVER_LOG" || fail "no tls=off in the log"
ok "without --tls-cert the log says plain HTTP"
stop

# ---- configuration file and environment ----
p1=$(free_port); p2=$(free_port); p3=$(free_port)
while [ "$p2" = "$p1" ]; do p2=$(free_port); done
while [ "$p3" = "$p1" ] || [ "$p3" = "$p2" ]; do p3=$(free_port); done
cat >"$T/server.hujson" <<EOF
// wiremesh-server test configuration (HuJSON: comments, trailing commas)
{
	"listen": "127.0.0.1:$p1",	// loopback only
	"db": "$T/cfg.sqlite",
	/* a small sub-range of the address pool */
	"prefixes": {"v4": "100.64.9.0/24", "v6": "fd7a:115c:a1e0:9::/64",},
	"log_level": "debug",
	"keepalive_interval": "2s",
}
EOF
DB=$T/cfg.sqlite bootstrap
# serve_cfg LOG [args...]: starts `serve --config` with the environment as is.
serve_cfg() {
	local log=$1; shift
	"$SRV" serve --config "$T/server.hujson" "$@" >"$log" 2>&1 &
	SERVER_PID=$!; WM_PIDS+=("$SERVER_PID"); WM_SERVER_LOG=$log
}
healthy() { curl -sf "http://127.0.0.1:$1/healthz" >/dev/null; }

serve_cfg "$T/cfg1.log"
wait_for 10 healthy "$p1" || fail "server from the config file is not on 127.0.0.1:$p1"
URL=http://127.0.0.1:$p1; export WIREMESH_SERVER=$URL
"$SRV" users create carol >/dev/null || fail "users create against the configured server"
CK=$("$SRV" preauthkeys create --user carol --reusable) || fail "preauthkeys"
node c1 register --authkey "$CK" --hostname cfg-one >"$T/c1" || fail "register: $(cat "$T/c1")"
grep -q '"ipv4":"100.64.9.' "$T/c1" && grep -q '"ipv6":"fd7a:115c:a1e0:9:' "$T/c1" ||
	fail "prefixes from the config file not applied: $(cat "$T/c1")"
# A tampered request is logged at debug level only: shows log_level applied.
"$WM_NODE" --state "$T/c1.json" sign /machine/endpoints '{"endpoints":[]}' >"$T/h"
hdrs=(); while IFS= read -r l; do hdrs+=(-H "$l"); done <"$T/h"
curl -s -o /dev/null "${hdrs[@]}" --data-binary '{"endpoints":["192.0.2.1:1"]}' "$URL/machine/endpoints"
wait_for 5 grep -q 'level=debug.*bad request signature' "$T/cfg1.log" ||
	fail "log_level from the config file not applied"
stop
ok "serve --config FILE.hujson: listen, db, prefixes and log level applied"

# Environment beats the file: another port, database and IPv4 range.
DB=$T/env.sqlite bootstrap
WIREMESH_LISTEN=127.0.0.1:$p2 WIREMESH_DB=$T/env.sqlite WIREMESH_PREFIX_V4=100.64.10.0/24 \
	serve_cfg "$T/cfg2.log"
wait_for 10 healthy "$p2" || fail "WIREMESH_LISTEN did not override the file: $(cat "$T/cfg2.log")"
! healthy "$p1" || fail "server still listens on the file's port"
URL=http://127.0.0.1:$p2; export WIREMESH_SERVER=$URL
"$SRV" users create dave >/dev/null || fail "users create (env db)"
DK=$("$SRV" preauthkeys create --user dave) || fail "preauthkeys (env db)"
node d1 register --authkey "$DK" --hostname env-one >"$T/d1" || fail "register: $(cat "$T/d1")"
grep -q '"ipv4":"100.64.10.' "$T/d1" || fail "WIREMESH_PREFIX_V4 did not override the file: $(cat "$T/d1")"
grep -q '"ipv6":"fd7a:115c:a1e0:9:' "$T/d1" || fail "the file's v6 prefix was lost: $(cat "$T/d1")"
[ "$(sqlite3 "$T/env.sqlite" 'SELECT count(*) FROM nodes')" = 1 ] || fail "WIREMESH_DB not used"
stop
ok "WIREMESH_LISTEN, WIREMESH_DB and WIREMESH_PREFIX_V4 override the config file"

# A flag beats the environment.
WIREMESH_LISTEN=127.0.0.1:$p2 serve_cfg "$T/cfg3.log" --listen "127.0.0.1:$p3"
wait_for 10 healthy "$p3" || fail "--listen did not override WIREMESH_LISTEN: $(cat "$T/cfg3.log")"
stop
ok "a flag overrides the environment"

# Broken configurations are refused with a clear message.
printf '{\n  "listen": "127.0.0.1:1",\n  "db" "x",\n}\n' >"$T/bad.hujson"
timeout 10 "$SRV" serve --config "$T/bad.hujson" >"$T/bad.log" 2>&1 && fail "broken config accepted"
grep -q "bad.hujson:3:[0-9]*:" "$T/bad.log" || fail "no FILE:LINE:COL: $(cat "$T/bad.log")"
printf '{"listen": "127.0.0.1:1", "no_such_option": 1}\n' >"$T/unknown.hujson"
timeout 10 "$SRV" serve --config "$T/unknown.hujson" >"$T/bad.log" 2>&1 && fail "unknown option accepted"
grep -q 'no_such_option' "$T/bad.log" || fail "unknown option not named: $(cat "$T/bad.log")"
WIREMESH_PREFIX_V4=10.0.0.0/8 timeout 10 "$SRV" serve --config "$T/server.hujson" >"$T/bad.log" 2>&1 &&
	fail "bad WIREMESH_PREFIX_V4 accepted"
grep -q 'environment' "$T/bad.log" && grep -q 'prefix_v4' "$T/bad.log" ||
	fail "bad environment value not explained: $(cat "$T/bad.log")"
ok "broken config (FILE:LINE:COL), unknown option and bad environment value refused"

# Under ASan/UBSan a report in any server log fails the test.
stop
! grep -l 'Sanitizer\|runtime error:' "$T"/*.log 2>/dev/null || fail "sanitizer report: $(grep -h -A5 'Sanitizer\|runtime error:' "$T"/*.log | head -20)"
