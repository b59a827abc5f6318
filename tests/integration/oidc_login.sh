#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# OpenID Connect login against a real provider: oidc-provider (npm, on
# Node.js; tests/oidc/provider.mjs) on HTTPS with a test CA, in the
# server's namespace. A browser-like client (tests/oidc/browser.py: cookies,
# the provider's own login and consent forms) logs in at the URL that
# `wiremesh up` prints. Covered: a node joins without a key and pings a
# peer; the user is created once (email, display name) and reused by a
# second node and by --force-reauth; node key expiry from `expiry`; every
# refusal (wrong or replayed state, replayed code, unverified email,
# disallowed domain / group / user, provider slow (SIGSTOP) and down, used
# link) is an HTML page with the right status, a log line without tokens,
# and no user or node written.
. "$(dirname "$0")/lib.sh"

[ "$(id -u)" = 0 ] || skip "needs root (network namespaces)"
for t in ip curl python3 node openssl; do command -v $t >/dev/null || skip "missing $t"; done
[ -c /dev/net/tun ] || skip "no /dev/net/tun"
[ -d "$WM_TOP/tests/oidc/node_modules/oidc-provider" ] ||
	skip "oidc-provider not installed (scripts/install-deps.sh --test runs npm ci in tests/oidc)"

S=wmoi$$
NS_SRV=${S}s NS1=${S}a NS2=${S}b
WM_CLEANUP+=("ip netns del $NS_SRV" "ip netns del $NS1" "ip netns del $NS2")
fail() {
	echo "FAIL: $*" >&2
	for f in "$T"/agent*.log "$T"/idp.log; do
		[ -f "$f" ] && { echo "--- $f" >&2; grep -v 'level=debug' "$f" | tail -n 20 >&2; }
	done
	exit 1
}
ip netns add "$NS_SRV" && ip netns add "$NS1" && ip netns add "$NS2" || fail "netns add"
ip -n "$NS_SRV" link add br0 type bridge
ip -n "$NS_SRV" addr add 192.0.2.1/24 dev br0
ip -n "$NS_SRV" link set br0 up
ip -n "$NS_SRV" link set lo up
i=0
for ns in "$NS1" "$NS2"; do
	i=$((i + 1))
	ip link add "${S}v$i" netns "$ns" type veth peer name "p$i" netns "$NS_SRV" || fail "veth"
	ip -n "$NS_SRV" link set "p$i" master br0 up
	ip -n "$ns" link set "${S}v$i" name eth0
	ip -n "$ns" addr add "192.0.2.1$i/24" dev eth0
	ip -n "$ns" link set eth0 up
	ip -n "$ns" link set lo up
done
in_srv() { ip netns exec "$NS_SRV" "$@"; }

# The provider: HTTPS on the server namespace's loopback, test CA.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
	-keyout "$T/ca.key" -out "$T/ca.pem" -subj "/CN=wiremesh test CA" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
	-keyout "$T/idp.key" -out "$T/idp.csr" -subj /CN=127.0.0.1 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1\n' >"$T/ext"
openssl x509 -req -in "$T/idp.csr" -CA "$T/ca.pem" -CAkey "$T/ca.key" -CAcreateserial \
	-days 1 -extfile "$T/ext" -out "$T/idp.pem" 2>/dev/null || fail "test certificate"
export SSL_CERT_FILE=$T/ca.pem
ISSUER=https://127.0.0.1:8443
URL=http://192.0.2.1:8080
SECRET=$(head -c 24 /dev/urandom | base64 | tr -d '/+=')
cat >"$T/idp.json" <<EOF
{"issuer": "$ISSUER", "host": "127.0.0.1", "port": 8443, "cert": "$T/idp.pem",
 "key": "$T/idp.key", "client_id": "wiremesh", "client_secret": "$SECRET",
 "redirect_uri": "$URL/oidc/callback", "alg": "RS256",
 "users": {
  "alice": {"email": "alice@example.com", "email_verified": true, "name": "Alice Liddell",
            "preferred_username": "alice", "groups": ["vpn", "staff"]},
  "bob":   {"email": "bob@other.org", "email_verified": true, "name": "Bob",
            "groups": ["vpn"]},
  "carol": {"email": "carol@example.com", "email_verified": true, "name": "Carol",
            "groups": ["staff"]},
  "dave":  {"email": "dave@example.com", "email_verified": false, "name": "Dave",
            "groups": ["vpn"]},
  "erin":  {"email": "erin@example.com", "email_verified": true, "name": "Erin",
            "groups": ["vpn"]}
 }}
EOF
start_idp() {
	: >"$T/idp.log"
	ip netns exec "$NS_SRV" node "$WM_TOP/tests/oidc/provider.mjs" "$T/idp.json" >>"$T/idp.log" 2>&1 &
	IDP_PID=$!
	WM_PIDS+=($IDP_PID)
	wait_for 20 grep -q ready "$T/idp.log" || fail "provider did not start: $(cat "$T/idp.log")"
}
start_idp

# The server: the secret in a 0600 file; allowed: example.com, group vpn,
# and alice, carol and dave by name (erin is refused by allowed_users).
umask 077
printf '%s\n' "$SECRET" >"$T/client_secret"
cat >"$T/server.hujson" <<EOF
{
  // OpenID Connect against the test provider
  "server_url": "$URL",
  "oidc": {
    "issuer": "$ISSUER",
    "client_id": "wiremesh",
    "client_secret_path": "$T/client_secret",
    "scope": "openid profile email groups",
    "allowed_domains": ["example.com"],
    "allowed_groups": ["vpn"],
    "allowed_users": ["alice@example.com", "carol@example.com", "dave"],
    "expiry": "1h",
    "timeout": "3s",
  },
}
EOF
DB=$T/db.sqlite
bootstrap
WM_SERVER_LOG=$T/server.log
start_ctl() {
	ip netns exec "$NS_SRV" "$SRV" serve --config "$T/server.hujson" --listen 192.0.2.1:8080 \
		--db "$DB" --derp >>"$WM_SERVER_LOG" 2>&1 &
	SERVER_PID=$!
	WM_PIDS+=($SERVER_PID)
	wait_for 10 in_srv curl -sf "$URL/healthz" || fail "server did not start"
}
start_ctl
adm() { in_srv env WIREMESH_SERVER="$URL" WIREMESH_API_KEY="$WIREMESH_API_KEY" "$SRV" "$@"; }
browser() { in_srv python3 "$WM_TOP/tests/oidc/browser.py" "$@"; }
users_n() { adm users list --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["users"]))'; }
nodes_n() { adm nodes list --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["nodes"]))'; }

start_agent() {	# N NS
	ip netns exec "$2" "$WM_BIN/wiremeshd" --state-dir "$T/state$1" --socket "$T/n$1.sock" \
		--tun wm0 --port 41641 --log-level debug >>"$T/agent$1.log" 2>&1 &
	WM_PIDS+=($!)
	wait_for 10 test -S "$T/n$1.sock" || fail "agent $1 did not start"
}
wm() {	# N args...
	local n=$1; shift
	local ns=$NS1; [ "$n" = 2 ] && ns=$NS2
	ip netns exec "$ns" "$WM_BIN/wiremesh" --socket "$T/n$n.sock" "$@"
}
# begin_up N ARGS...: starts `up` in the background; sets UP_PID and RURL.
begin_up() {
	local n=$1; shift
	: >"$T/up$n"
	wm "$n" up "$@" >"$T/up$n" 2>&1 &
	UP_PID=$!
	WM_PIDS+=($UP_PID)
	wait_for 10 grep -q '/register/' "$T/up$n" || fail "up $n printed no URL: $(cat "$T/up$n")"
	RURL=$(grep -o 'http://[^ ]*/register/[0-9a-f]*' "$T/up$n")
}
# expect_page STATUS TEXT OUTPUT: the browser's result
expect_page() {
	[ "$(head -n1 <<<"$3")" = "$1" ] || fail "expected HTTP $1 ($2), got: $(head -c 600 <<<"$3")"
	grep -q "$2" <<<"$3" || fail "page does not say \"$2\": $(head -c 600 <<<"$3")"
}
start_agent 1 "$NS1"
start_agent 2 "$NS2"

# ---- the node joins by logging in ----
begin_up 1 --login-server "$URL" --hostname node1
[ "$(users_n)" = 0 ] || fail "a user exists before any login"
out=$(browser login "$RURL" alice)
expect_page 200 "Logged in as <b>alice@example.com</b>" "$out"
wait "$UP_PID" || fail "up after login: $(cat "$T/up1")"
grep -q '^Success. Logged in as alice@example.com.$' "$T/up1" || fail "up output: $(cat "$T/up1")"
adm users list --json >"$T/users"
python3 - "$T/users" <<'PY' || fail "user after first login: $(cat "$T/users")"
import json, sys
u = json.load(open(sys.argv[1]))["users"]
assert len(u) == 1, u
assert u[0]["name"] == "alice@example.com" and u[0]["display_name"] == "Alice Liddell", u
assert u[0]["email"] == "alice@example.com" and u[0]["login"] == "oidc", u
PY
adm nodes list --json >"$T/nodes"
python3 - "$T/nodes" <<'PY' || fail "node after login: $(cat "$T/nodes")"
import json, sys, time
n = json.load(open(sys.argv[1]))["nodes"]
assert len(n) == 1 and n[0]["user"] == "alice@example.com", n
import datetime
exp = datetime.datetime.fromisoformat(n[0]["expires_at"].replace("Z", "+00:00")).timestamp()
left = exp - time.time()
assert 3500 < left <= 3601, ("expiry from oidc.expiry 1h", left)
PY
ok "up without a key: login at the provider creates alice@example.com (display name, email); node key expires in 1h"

# The link worked once.
out=$(browser get "$RURL")
expect_page 410 "already been used" "$out"

# ---- a second machine, same person: the user is reused ----
begin_up 2 --login-server "$URL" --hostname node2
out=$(browser login "$RURL" alice)
expect_page 200 "Logged in as <b>alice@example.com</b>" "$out"
wait "$UP_PID" || fail "up 2: $(cat "$T/up2")"
[ "$(users_n)" = 1 ] || fail "second login made another user: $(adm users list)"
[ "$(nodes_n)" = 2 ] || fail "nodes: $(adm nodes list)"
ip2=$(wm 2 ip -4)
pinged() { wm 1 ping -c 1 "$ip2" | grep -q '^pong from node2'; }
wait_for 20 pinged || fail "node1 cannot ping node2: $(wm 1 status)"
ok "a second machine logs in as the same user (one user, two nodes) and they ping"

# Policies name the login's user as alice@example.com (and in groups).
icmp() { ip netns exec "$NS1" ping -c 1 -W 1 "$ip2" >/dev/null 2>&1; }
cat >"$T/policy.hujson" <<'EOF'
{"acls": [{"action": "accept", "src": ["carol@example.com"], "dst": ["*:*"]}]}
EOF
adm policy set -f "$T/policy.hujson" >/dev/null || fail "policy set (carol)"
blocked() { ! icmp; }
wait_for 15 blocked || fail "a policy for carol only still lets alice's nodes talk"
cat >"$T/policy.hujson" <<'EOF'
{
  "groups": {"group:mesh": ["alice@example.com"]},
  "acls": [{"action": "accept", "src": ["group:mesh"], "dst": ["alice@example.com:*"]}],
}
EOF
adm policy set -f "$T/policy.hujson" >/dev/null || fail "policy set (alice)"
wait_for 15 icmp || fail "a policy naming alice@example.com does not let her nodes talk"
ok "the policy names the OIDC user alice@example.com (directly and in a group)"

# ---- refusals: page status, no user or node, no token in the log ----
begin_up 1 --force-reauth
REAUTH_PID=$UP_PID
REAUTH_URL=$RURL
for who in bob:"email domain" carol:"none of the groups" dave:"not verified" erin:"allowed_users"; do
	u=${who%%:*} why=${who#*:}
	out=$(browser login "$REAUTH_URL" "$u")
	expect_page 403 "$why" "$out"
done
[ "$(users_n)" = 1 ] && [ "$(nodes_n)" = 2 ] || fail "a refused login wrote a user or node"
grep -q 'msg="oidc login refused".*status=403.*allowed_domains' "$WM_SERVER_LOG" ||
	fail "no log line for the refused domain"
ok "disallowed domain, group, user and an unverified email: 403 pages, nothing written"

# Wrong state, then a replayed one.
out=$(browser get "$URL/oidc/callback?code=abc&state=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
expect_page 400 "unknown state" "$out"
cb=$(browser login "$REAUTH_URL" alice --stop-at-callback)
[[ $cb == "$URL/oidc/callback?"* ]] || fail "no callback URL: $cb"
code=$(python3 -c 'import sys,urllib.parse as u; print(u.parse_qs(u.urlsplit(sys.argv[1]).query)["code"][0])' "$cb")
out=$(browser get "$cb")
expect_page 200 "Logged in as" "$out"
wait "$REAUTH_PID" || fail "force-reauth up: $(cat "$T/up1")"
grep -q '^Success. Logged in as alice@example.com.$' "$T/up1" || fail "reauth output: $(cat "$T/up1")"
[ "$(users_n)" = 1 ] && [ "$(nodes_n)" = 2 ] || fail "re-login wrote a user or node"
ok "up --force-reauth: logs in again as the same user and node; refusals before left it waiting"
out=$(browser get "$cb")
expect_page 400 "already used" "$out"
ok "a wrong or replayed state: 400"

# A replayed code under a fresh login (fresh state): the provider refuses it.
begin_up 1 --force-reauth
REAUTH_PID=$UP_PID
start=$(browser start "$RURL")
state=$(python3 -c 'import sys,urllib.parse as u; print(u.parse_qs(u.urlsplit(sys.argv[1]).query)["state"][0])' "$start")
out=$(browser get "$URL/oidc/callback?code=$code&state=$state")
expect_page 400 "invalid_grant" "$out"
ok "a replayed authorization code: 400 (invalid_grant)"

# The provider hangs (SIGSTOP) during the code exchange: 504 after the timeout.
cb=$(browser login "$RURL" alice --stop-at-callback)
kill -STOP "$IDP_PID"
out=$(browser get "$cb")
kill -CONT "$IDP_PID"
expect_page 504 "did not answer within 3 s" "$out"
ok "a slow provider: 504 after oidc.timeout"

# The provider is down: a new login cannot start (the discovery is cached,
# so the code exchange is what fails), then it comes back.
cb=$(browser login "$RURL" alice --stop-at-callback)
kill "$IDP_PID"; wait "$IDP_PID" 2>/dev/null
out=$(browser get "$cb")
expect_page 502 "cannot reach the identity provider" "$out"
start_idp
kill -TERM "$REAUTH_PID" 2>/dev/null
[ "$(users_n)" = 1 ] && [ "$(nodes_n)" = 2 ] || fail "provider failures wrote a user or node"
ok "a provider that is down: 502"

# A restarted provider has new signing keys, now ECDSA P-256 (ES256): the
# unknown kid makes the server fetch the key set again (rotation).
kill "$IDP_PID"; wait "$IDP_PID" 2>/dev/null
sed -i 's/"alg": "RS256"/"alg": "ES256", "id_token_ttl": 600/' "$T/idp.json"
start_idp
begin_up 1 --force-reauth
out=$(browser login "$RURL" alice)
expect_page 200 "Logged in as" "$out"
wait "$UP_PID" || fail "login after key rotation: $(cat "$T/up1")"
grep -q 'fetched the provider.s keys.*refresh=true' "$WM_SERVER_LOG" || fail "no JWKS refetch logged"
ok "key rotation to ES256: a token signed by a new key is accepted after one JWKS refetch"

# strip_email_domain and an expiry "from token" (the provider now issues
# ID tokens for 600 s): bob@other.org logs in as user "bob" and the node key
# expires with his token. Same database, server restarted.
python3 - "$T/server.hujson" <<'PY'
import re, sys
p = sys.argv[1]
s = open(p).read()
s = re.sub(r'"allowed_[a-z]+": \[[^]]*\],\n', '', s)
s = s.replace('"expiry": "1h"', '"expiry": "from token", "strip_email_domain": true')
open(p, "w").write(s)
PY
kill -TERM "$SERVER_PID"; wait "$SERVER_PID"; rc=$?
[ "$rc" = 0 ] || fail "server exit status $rc on SIGTERM (under ASan: a leak)"
start_ctl
begin_up 1 --force-reauth
out=$(browser login "$RURL" bob)
expect_page 200 "Logged in as <b>bob</b>" "$out"
wait "$UP_PID" || fail "login as bob: $(cat "$T/up1")"
adm nodes list --json >"$T/nodes"
python3 - "$T/nodes" <<'PY' || fail "node after bob's login: $(cat "$T/nodes")"
import json, sys, time
n = [x for x in json.load(open(sys.argv[1]))["nodes"] if x["name"] == "node1"][0]
import datetime
exp = datetime.datetime.fromisoformat(n["expires_at"].replace("Z", "+00:00")).timestamp()
left = exp - time.time()
assert n["user"] == "bob", n
assert 500 < left <= 601, ("expiry from the token's exp (600 s)", left)
PY
[ "$(users_n)" = 2 ] || fail "users: $(adm users list)"
ok "strip_email_domain names the user bob; expiry \"from token\" follows the ID token's exp"

# Secrets stay out of the log.
for secret in "$SECRET" "$code" 'eyJ'; do
	grep -qF -- "$secret" "$WM_SERVER_LOG" && fail "server log has a secret or token ($secret)"
done
ok "no client secret, code or token in the server log"
