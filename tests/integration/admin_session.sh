#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The admin console's sessions and pages with plain HTTP requests (curl),
# over TLS with a test CA:
#  - /admin/ is served with a strict CSP, X-Frame-Options: DENY, nosniff,
#    and its HTML has no inline script or style;
#  - sign-in exchanges an API key for a cookie (__Host- name, HttpOnly,
#    Secure, SameSite=Strict); a bad key gets 401 and no cookie; the store
#    keeps only the token's hash;
#  - with the cookie, reads work; a change without the CSRF header, or with
#    a wrong one, is refused (403) and changes nothing; with it, it works;
#  - the session survives a server restart; sign-out ends it;
#  - idle expiry and absolute expiry end a session (401) even while in use;
#    revoking the API key it was opened with ends it;
#  - a one-time sign-in link works once;
#  - the event stream sends a change when a node comes online.
. "$(dirname "$0")/lib.sh"

reaped() {
	local p i
	for p in "$@"; do
		for i in "${!WM_PIDS[@]}"; do [ "${WM_PIDS[$i]}" != "$p" ] || unset "WM_PIDS[$i]"; done
	done
}
stop() { [ -n "${SERVER_PID:-}" ] || return 0; stop_server; reaped "$SERVER_PID"; SERVER_PID=; }

command -v openssl >/dev/null || skip "openssl is not installed"
command -v sqlite3 >/dev/null || skip "sqlite3 is not installed"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
	-subj /CN=wiremesh-test-ca -keyout "$T/ca.key" -out "$T/ca.crt" >"$T/pki.log" 2>&1 &&
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=127.0.0.1 \
	-keyout "$T/srv.key" -out "$T/srv.csr" >>"$T/pki.log" 2>&1 &&
printf '%s\n' 'subjectAltName=IP:127.0.0.1' 'extendedKeyUsage=serverAuth' >"$T/ext" &&
openssl x509 -req -in "$T/srv.csr" -CA "$T/ca.crt" -CAkey "$T/ca.key" -CAcreateserial \
	-days 1 -extfile "$T/ext" -out "$T/srv.crt" >>"$T/pki.log" 2>&1 || fail "openssl: $(cat "$T/pki.log")"
export SSL_CERT_FILE=$T/ca.crt
CURL_CA=$T/ca.crt
TLS=(--tls-cert "$T/srv.crt" --tls-key "$T/srv.key")

bootstrap
URL_SCHEME=https CURL_CA=$T/ca.crt start_server "${TLS[@]}"
C=(curl -s --cacert "$T/ca.crt")

# ---- the pages ----
"${C[@]}" -D "$T/h" -o "$T/index.html" "$URL/admin/" >/dev/null
tr -d '\r' <"$T/h" >"$T/hh"
head -1 "$T/hh" | grep -q ' 200' || fail "/admin/: $(head -1 "$T/hh")"
grep -qi "^content-security-policy: default-src 'none'; script-src 'self'; style-src 'self';" "$T/hh" ||
	fail "no strict CSP: $(cat "$T/hh")"
grep -qi "frame-ancestors 'none'" "$T/hh" || fail "CSP allows framing"
grep -qi '^x-frame-options: DENY$' "$T/hh" || fail "no X-Frame-Options: DENY"
grep -qi '^x-content-type-options: nosniff$' "$T/hh" || fail "no nosniff"
grep -q '<script type="module" src="js/app.js"></script>' "$T/index.html" || fail "no app script in the page"
! grep -Eq '<script[^>]*>[^<]' "$T/index.html" || fail "inline script in index.html"
! grep -Eqi ' style=| on[a-z]+=' "$T/index.html" || fail "inline style or handler in index.html"
r=$("${C[@]}" -o /dev/null -w '%{http_code} %{redirect_url}' "$URL/admin")
[ "$r" = "308 $URL/admin/" ] || fail "/admin does not redirect to /admin/: $r"
r=$("${C[@]}" -o "$T/js" -w '%{http_code} %{content_type}' "$URL/admin/js/api.js")
[ "$r" = "200 text/javascript; charset=utf-8" ] || fail "js/api.js: $r"
grep -q "X-CSRF-Token" "$T/js" || fail "api.js does not send the CSRF header"
r=$("${C[@]}" -o /dev/null -w '%{http_code}' "$URL/admin/../etc/passwd")
[ "$r" = 404 ] || fail "path outside the assets: $r"
r=$("${C[@]}" -o /dev/null -w '%{http_code}' -X POST "$URL/admin/")
[ "$r" = 405 ] || fail "POST /admin/: $r"
ok "/admin/ with a strict CSP, DENY framing, nosniff and no inline script"

# ---- sign-in ----
out=$("${C[@]}" "$URL/api/v1/session")
echo "$out" | grep -q '"status":401' && echo "$out" | grep -q '"signin_methods":\["api_key"\]' ||
	fail "GET /api/v1/session without a cookie (no oidc configured): $out"
signin() {	# signin KEY JAR: prints the HTTP status; headers in $T/sh, body in $T/sb
	"${C[@]}" -c "$2" -D "$T/sh" -o "$T/sb" -w '%{http_code}' -X POST \
		-H 'Content-Type: application/json' --data-binary "{\"api_key\":\"$1\"}" "$URL/api/v1/session"
}
r=$(signin "wm-api-000000000000-nope" "$T/bad.jar")
[ "$r" = 401 ] || fail "bad key: $r $(cat "$T/sb")"
! grep -qi '^set-cookie' "$T/sh" || fail "a failed sign-in set a cookie"
r=$(signin "$WIREMESH_API_KEY" "$T/jar")
[ "$r" = 201 ] || fail "sign-in: $r $(cat "$T/sb")"
ck=$(tr -d '\r' <"$T/sh" | grep -i '^set-cookie:')
[[ "$ck" == *"__Host-wm_session="* ]] || fail "cookie name: $ck"
for a in HttpOnly Secure SameSite=Strict Path=/; do
	[[ "$ck" == *"; $a"* ]] || fail "cookie lacks $a: $ck"
done
TOKEN=$(echo "$ck" | sed -n 's/.*__Host-wm_session=\([0-9a-f]*\);.*/\1/p')
[ ${#TOKEN} = 64 ] || fail "token: $TOKEN"
CSRF=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["csrf_token"])' "$T/sb")
[ ${#CSRF} = 32 ] || fail "csrf token: $CSRF"
sqlite3 "$T/db.sqlite" "SELECT count(*) FROM admin_sessions WHERE kind='session'" | grep -qx 1 ||
	fail "no session row"
h=$(printf '%s' "$TOKEN" | sha256sum | cut -d' ' -f1)
sqlite3 "$T/db.sqlite" "SELECT hex(token_hash) FROM admin_sessions" | tr 'A-F' 'a-f' | grep -qx "$h" ||
	fail "the store does not hold the token's SHA-256"
! grep -qa "$TOKEN" "$T/db.sqlite" "$T/db.sqlite-wal" 2>/dev/null || fail "the token itself is in the database"
! grep -q "$TOKEN" "$WM_SERVER_LOG" || fail "the token is in the log"
ok "sign-in: bad key 401 without a cookie; __Host- cookie HttpOnly, Secure, SameSite=Strict; only its hash stored"

# ---- CSRF ----
with() {	# with JAR METHOD PATH [BODY] [CSRF]: prints "STATUS BODY"
	local args=(-b "$1" -o "$T/wr" -w '%{http_code}' -X "$2")
	[ -n "${4:-}" ] && args+=(-H 'Content-Type: application/json' --data-binary "$4")
	[ -n "${5:-}" ] && args+=(-H "X-CSRF-Token: $5")
	"${C[@]}" "${args[@]}" "$URL$3"
	echo " $(cat "$T/wr")"
}
expect_status 200 "$(with "$T/jar" GET /api/v1/nodes)"
expect_status 200 "$(with "$T/jar" GET /api/v1/session)"
out=$(with "$T/jar" POST /api/v1/users '{"name":"mallory"}')
expect_status 403 "$out"
echo "$out" | grep -q 'X-CSRF-Token' || fail "403 does not say what is missing: $out"
expect_status 403 "$(with "$T/jar" POST /api/v1/users '{"name":"mallory"}' 0123456789abcdef0123456789abcdef)"
expect_status 403 "$(with "$T/jar" PUT /api/v1/policy '{"acls":[]}')"
expect_status 403 "$(with "$T/jar" DELETE /api/v1/session)"
api GET /api/v1/users | grep -q mallory && fail "a refused change was applied"
expect_status 201 "$(with "$T/jar" POST /api/v1/users '{"name":"alice"}' "$CSRF")"
# A cookie alone never stands in for a wrong Bearer key.
r=$("${C[@]}" -b "$T/jar" -o /dev/null -w '%{http_code}' -H 'Authorization: Bearer wm-api-000000000000-x' "$URL/api/v1/nodes")
[ "$r" = 401 ] || fail "a bad Bearer key with a good cookie: $r"
# A policy over the limit for unauthenticated bodies passes with the session.
python3 -c 'print("{\n" + "// padding\n" * 3000 + "\"acls\": [{\"action\": \"accept\", \"src\": [\"*\"], \"dst\": [\"*:*\"]}],\n}")' >"$T/big.hujson"
[ "$(stat -c %s "$T/big.hujson")" -gt 20000 ] || fail "big policy too small"
r=$("${C[@]}" -b "$T/jar" -o "$T/wr" -w '%{http_code}' -X POST -H "X-CSRF-Token: $CSRF" \
	--data-binary "@$T/big.hujson" "$URL/api/v1/policy/check")
[ "$r" = 200 ] && grep -q '"valid":true' "$T/wr" || fail "a 33 KB policy check with the session: $r $(cat "$T/wr")"
ok "changes need the CSRF header (none or wrong: 403, nothing changed); with it: 201; a 33 KB policy check passes"

# ---- events: a node coming online is announced ----
"${C[@]}" -N -b "$T/jar" "$URL/api/v1/events" >"$T/events" 2>/dev/null &
EV=$!
WM_PIDS+=("$EV")
wait_for 5 grep -q '^event: hello' "$T/events" || fail "no hello event: $(cat "$T/events")"
AK=$("$SRV" preauthkeys create --user alice --reusable) || fail "preauthkeys"
node n1 register --authkey "$AK" --hostname n1 >/dev/null || fail "register"
node n1 map --lines 1 --hostinfo '{"os":"linux","os_version":1}' >"$T/m" 2>&1 && fail "a bad hostinfo was taken"
grep -q 'hostinfo.os_version must be a string' "$T/m" || fail "bad hostinfo: $(cat "$T/m")"
node n1 map --lines 1 --hostinfo '{"os":"linux","os_version":"6.1.0","client_version":"0.1.0"}' >/dev/null || fail "map"
api GET /api/v1/nodes | grep -q '"os":"linux 6.1.0","version":"0.1.0"' || fail "no os/version: $(api GET /api/v1/nodes)"
wait_for 5 grep -q '^data: {"version":[0-9]*,"nodes":1,"online":' "$T/events" ||
	fail "no change event for the new node: $(cat "$T/events")"
kill "$EV" 2>/dev/null; wait "$EV" 2>/dev/null; reaped "$EV"
ok "event stream: hello, then a change when a node registers and connects (with its OS and version; a bad hostinfo gets 400)"

# ---- restart, sign-out ----
stop
URL_SCHEME=https CURL_CA=$T/ca.crt start_server "${TLS[@]}"
expect_status 200 "$(with "$T/jar" GET /api/v1/nodes)"
ok "the session survives a restart"
expect_status 200 "$(with "$T/jar" DELETE /api/v1/session '' "$CSRF")"
expect_status 401 "$(with "$T/jar" GET /api/v1/nodes)"
sqlite3 "$T/db.sqlite" "SELECT count(*) FROM admin_sessions" | grep -qx 0 || fail "session row left after sign-out"
ok "sign-out ends the session (401 afterwards, row deleted)"

# ---- one-time sign-in link ----
out=$(api POST /api/v1/session/signin-links '{"expiration":"5m"}'); expect_status 201 "$out"
LINK=$(echo "${out#* }" | python3 -c 'import json,sys; print(json.load(sys.stdin)["signin_token"])')
echo "$out" | grep -q "\"path\":\"/admin/#signin=$LINK\"" || fail "link path: $out"
r=$("${C[@]}" -c "$T/ljar" -o "$T/sb" -w '%{http_code}' -X POST -H 'Content-Type: text/plain' \
	--data-binary "{\"signin_token\":\"$LINK\"}" "$URL/api/v1/session")
[ "$r" = 415 ] || fail "sign-in posted as text/plain (what a cross-site form can send): $r"
r=$("${C[@]}" -c "$T/ljar" -o "$T/sb" -w '%{http_code}' -X POST -H 'Content-Type: application/json' \
	--data-binary "{\"signin_token\":\"$LINK\"}" "$URL/api/v1/session")
[ "$r" = 201 ] || fail "sign-in with the link: $r $(cat "$T/sb")"
expect_status 200 "$(with "$T/ljar" GET /api/v1/nodes)"
r=$("${C[@]}" -o "$T/sb" -w '%{http_code}' -X POST -H 'Content-Type: application/json' \
	--data-binary "{\"signin_token\":\"$LINK\"}" "$URL/api/v1/session")
[ "$r" = 401 ] || fail "second use of the link: $r"
ok "a one-time sign-in link signs in once, then 401; a text/plain sign-in (cross-site form) gets 415"

# ---- expiry ----
stop
WIREMESH_ADMIN_SESSION_IDLE=2s URL_SCHEME=https CURL_CA=$T/ca.crt start_server "${TLS[@]}"
[ "$(signin "$WIREMESH_API_KEY" "$T/jar2")" = 201 ] || fail "sign-in (idle)"
t0=$(date +%s%N)
expect_status 200 "$(with "$T/jar2" GET /api/v1/nodes)"
unused() { [ "$("${C[@]}" -b "$T/jar2" -o "$T/wr" -w '%{http_code}' "$URL/api/v1/session")" = 401 ]; }
sleep 2.2	# idle time is the point here: no request may be made meanwhile
unused || fail "session still valid after 2.2 s idle with admin_session_idle=2s"
t1=$(date +%s%N)
[ $(( (t1 - t0) / 1000000 )) -ge 2000 ] || fail "expired too early"
grep -q 'without use' "$T/wr" || fail "401 does not say why: $(cat "$T/wr")"
ok "idle expiry: unused for longer than admin_session_idle -> 401"

stop
WIREMESH_ADMIN_SESSION_MAX=3s URL_SCHEME=https CURL_CA=$T/ca.crt start_server "${TLS[@]}"
[ "$(signin "$WIREMESH_API_KEY" "$T/jar3")" = 201 ] || fail "sign-in (max)"
t0=$(date +%s%N)
busy() { [ "$("${C[@]}" -b "$T/jar3" -o "$T/wr" -w '%{http_code}' "$URL/api/v1/nodes")" = 401 ]; }
wait_for 6 busy || fail "session still valid 6 s after sign-in with admin_session_max=3s"
t1=$(date +%s%N)
[ $(( (t1 - t0) / 1000000 )) -ge 2000 ] || fail "absolute expiry after only $(( (t1 - t0) / 1000000 )) ms"
grep -q 'expired' "$T/wr" || fail "401 does not say the session expired: $(cat "$T/wr")"
ok "absolute expiry: 401 after admin_session_max although used all along"

# Revoking the API key the session was opened with ends the session.
K2=$("$SRV" apikeys create --db "$T/db.sqlite" 2>/dev/null) || fail "second key"
[ "$(signin "$K2" "$T/jar4")" = 201 ] || fail "sign-in with the second key"
expect_status 200 "$(with "$T/jar4" GET /api/v1/nodes)"
P2=$(echo "$K2" | cut -d- -f3)
expect_status 200 "$(api POST "/api/v1/apikeys/$P2/expire")"
expect_status 401 "$(with "$T/jar4" GET /api/v1/nodes)"
ok "expiring the API key ends the sessions opened with it"
