#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Single sign-on to the admin console with OpenID Connect, against a real
# provider (oidc-provider, tests/oidc/provider.mjs, HTTPS with a test CA)
# and a browser-like client (tests/oidc/browser.py) that fills the
# provider's forms:
#  - the sign-in page learns from GET /api/v1/session that "oidc" is offered;
#  - alice (in admin_users) and carol (in an admin_groups group) get a
#    session cookie and a 303 to /admin/; the session works, changes need
#    the CSRF header as with an API key;
#  - bob may use the network (allowed_*) but is no admin: 403 page, no
#    cookie, no session written;
#  - a callback replayed after use is refused without a cookie.
. "$(dirname "$0")/lib.sh"

for t in curl python3 node openssl sqlite3; do command -v $t >/dev/null || fail "missing $t"; done
[ -d "$WM_TOP/tests/oidc/node_modules/oidc-provider" ] ||
	fail "oidc-provider is not installed: run scripts/install-deps.sh --test (npm ci in tests/oidc)"

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
	-keyout "$T/ca.key" -out "$T/ca.pem" -subj "/CN=wiremesh test CA" 2>/dev/null &&
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
	-keyout "$T/idp.key" -out "$T/idp.csr" -subj /CN=127.0.0.1 2>/dev/null &&
printf 'subjectAltName=IP:127.0.0.1\n' >"$T/ext" &&
openssl x509 -req -in "$T/idp.csr" -CA "$T/ca.pem" -CAkey "$T/ca.key" -CAcreateserial \
	-days 1 -extfile "$T/ext" -out "$T/idp.pem" 2>/dev/null || fail "test certificate"
export SSL_CERT_FILE=$T/ca.pem
IDP_PORT=$(free_port)
PORT=$(free_port)
ISSUER=https://127.0.0.1:$IDP_PORT
SURL=http://127.0.0.1:$PORT
SECRET=$(head -c 24 /dev/urandom | base64 | tr -d '/+=')
cat >"$T/idp.json" <<EOF
{"issuer": "$ISSUER", "host": "127.0.0.1", "port": $IDP_PORT, "cert": "$T/idp.pem",
 "key": "$T/idp.key", "client_id": "wiremesh", "client_secret": "$SECRET",
 "redirect_uri": "$SURL/oidc/callback", "alg": "RS256",
 "users": {
  "alice": {"email": "alice@example.com", "email_verified": true, "name": "Alice",
            "preferred_username": "alice", "groups": ["staff"]},
  "carol": {"email": "carol@example.com", "email_verified": true, "name": "Carol",
            "groups": ["staff", "netops"]},
  "bob":   {"email": "bob@example.com", "email_verified": true, "name": "Bob",
            "groups": ["staff"]}
 }}
EOF
command node "$WM_TOP/tests/oidc/provider.mjs" "$T/idp.json" >"$T/idp.log" 2>&1 &
WM_PIDS+=($!)
wait_for 20 grep -q ready "$T/idp.log" || fail "provider did not start: $(cat "$T/idp.log")"

umask 077
printf '%s\n' "$SECRET" >"$T/client_secret"
cat >"$T/server.hujson" <<EOF
{
  "server_url": "$SURL",
  "oidc": {
    "issuer": "$ISSUER",
    "client_id": "wiremesh",
    "client_secret_path": "$T/client_secret",
    "scope": "openid profile email groups",
    "allowed_groups": ["staff"],
    // the console: alice by name, carol by group; bob is only a user
    "admin_users": ["alice@example.com"],
    "admin_groups": ["netops"],
  },
}
EOF
bootstrap
start_server --config "$T/server.hujson"
browser() { python3 "$WM_TOP/tests/oidc/browser.py" "$@"; }

out=$(curl -s "$URL/api/v1/session")
echo "$out" | python3 -c 'import json,sys; m=json.load(sys.stdin)["signin_methods"]; sys.exit(m != ["api_key", "oidc"])' ||
	fail "GET /api/v1/session does not offer oidc: $out"
ok "the sign-in page is told that single sign-on is offered"

# signin USER JAR: logs USER in at /admin/oidc; headers of the callback in $T/cb.h
signin() {
	local cb
	cb=$(browser login "$URL/admin/oidc" "$1" --stop-at-callback) || fail "browser: $cb"
	[[ "$cb" == "$URL/oidc/callback?"* ]] || fail "$1: did not come back to the callback: $cb"
	echo "$cb" >"$T/cb.url"
	curl -s -c "$2" -D "$T/cb.h" -o "$T/cb.body" "$cb" >/dev/null
	tr -d '\r' <"$T/cb.h" >"$T/cb.hh"
}
signin alice "$T/alice.jar"
head -1 "$T/cb.hh" | grep -q ' 303' || fail "alice: $(head -1 "$T/cb.hh") $(cat "$T/cb.body")"
grep -qx 'Location: /admin/#/nodes' "$T/cb.hh" || fail "alice: $(cat "$T/cb.hh")"
grep -q '^Set-Cookie: wm_session=[0-9a-f]\{64\}; Path=/; Max-Age=[0-9]*; HttpOnly; SameSite=Strict$' "$T/cb.hh" ||
	fail "alice's cookie: $(grep -i set-cookie "$T/cb.hh")"
out=$(curl -s -b "$T/alice.jar" "$URL/api/v1/session")
echo "$out" | grep -q '"subject":"oidc:alice@example.com"' || fail "alice's session: $out"
CSRF=$(echo "$out" | python3 -c 'import json,sys; print(json.load(sys.stdin)["csrf_token"])')
r=$(curl -s -o /dev/null -w '%{http_code}' -b "$T/alice.jar" -X POST --data-binary '{"name":"dora"}' "$URL/api/v1/users")
[ "$r" = 403 ] || fail "a change without the CSRF header: $r"
r=$(curl -s -o /dev/null -w '%{http_code}' -b "$T/alice.jar" -H "X-CSRF-Token: $CSRF" -X POST \
	--data-binary '{"name":"dora"}' "$URL/api/v1/users")
[ "$r" = 201 ] || fail "a change with the CSRF header: $r"
ok "alice (admin_users) signs in with OIDC: 303 to /admin/, session cookie, CSRF rules as with a key"

cp "$T/cb.url" "$T/alice.cb"
signin carol "$T/carol.jar"
head -1 "$T/cb.hh" | grep -q ' 303' || fail "carol: $(head -1 "$T/cb.hh") $(cat "$T/cb.body")"
curl -s -b "$T/carol.jar" "$URL/api/v1/session" | grep -q '"subject":"oidc:carol@example.com"' ||
	fail "carol's session"
ok "carol (a group in admin_groups) signs in"

n0=$(sqlite3 "$T/db.sqlite" "SELECT count(*) FROM admin_sessions")
signin bob "$T/bob.jar"
head -1 "$T/cb.hh" | grep -q ' 403' || fail "bob: $(head -1 "$T/cb.hh")"
grep -q 'not an administrator' "$T/cb.body" || fail "bob's page: $(cat "$T/cb.body")"
! grep -qi '^set-cookie' "$T/cb.hh" || fail "bob got a cookie"
[ "$(sqlite3 "$T/db.sqlite" "SELECT count(*) FROM admin_sessions")" = "$n0" ] || fail "a session was written for bob"
grep -q 'not an admin' "$WM_SERVER_LOG" || fail "no log line for bob"
ok "bob (allowed on the network, not an admin): 403 page, no cookie, no session"

curl -s -D "$T/re.h" -o "$T/re.body" "$(cat "$T/alice.cb")" >/dev/null
tr -d '\r' <"$T/re.h" | head -1 | grep -q ' 4[0-9][0-9]' || fail "replayed callback: $(head -1 "$T/re.h")"
! grep -qi '^set-cookie' "$T/re.h" || fail "a replayed callback set a cookie"
ok "a replayed callback is refused without a cookie"
