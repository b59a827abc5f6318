#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# `make demo OIDC=1` (after the main demo): an interactive login. A real
# OpenID provider (oidc-provider on Node.js, tests/oidc/provider.mjs, HTTPS
# with a throw-away CA) and wiremesh-server with an `oidc` block run in a
# "server" namespace; a laptop namespace runs wiremeshd. `wiremesh up`
# without an auth key prints the login URL; a scripted browser
# (tests/oidc/browser.py) logs in as alice through the provider's own login
# and consent forms; up finishes as alice@example.com. Then an admin lets a
# second machine in without the provider (`nodes pending`, `nodes
# register`), and the two ping. Everything is torn down on exit.
set -u
top=$(cd "$(dirname "$0")/.." && pwd)
[ "$(id -u)" = 0 ] || { echo "demo-oidc: needs root: sudo make demo OIDC=1" >&2; exit 1; }
for t in ip openssl curl python3 node; do
	command -v $t >/dev/null || { echo "demo-oidc: missing $t (make test-deps)" >&2; exit 1; }
done
[ -d "$top/tests/oidc/node_modules/oidc-provider" ] ||
	{ echo "demo-oidc: run make test-deps (npm ci in tests/oidc)" >&2; exit 1; }
export WM_TOP=$top WM_BIN=${WM_BIN:-$top/bin}
# shellcheck source=../tests/integration/lib.sh
. "$top/tests/integration/lib.sh"
if [ -t 1 ]; then B=$'\e[1m' D=$'\e[2m' G=$'\e[32m' N=$'\e[0m'; else B="" D="" G="" N=""; fi
STEP=""
fail() { echo >&2; echo "demo-oidc: FAILED at \"$STEP\": $*" >&2; exit 1; }
step() { STEP=$1; echo; echo "${B}==> $1${N}"; [ $# -lt 2 ] || echo "${D}    $2${N}"; }
good() { echo "    ${G}✓ $*${N}"; }
show() { sed 's/^/      /' "$@"; }

S=wmdo$$
NS_SRV=${S}s NS1=${S}a NS2=${S}b
WM_CLEANUP+=("ip netns del $NS_SRV" "ip netns del $NS1" "ip netns del $NS2")
step "Building the network" "a server namespace (192.0.2.1) and two laptops on one bridge"
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
good "namespaces up"

step "Starting an OpenID provider and the control server" "oidc-provider on https://127.0.0.1:8443 (test CA), wiremesh-server on http://192.0.2.1:8080 with an oidc block"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
	-keyout "$T/ca.key" -out "$T/ca.pem" -subj "/CN=demo CA" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
	-keyout "$T/idp.key" -out "$T/idp.csr" -subj /CN=127.0.0.1 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1\n' >"$T/ext"
openssl x509 -req -in "$T/idp.csr" -CA "$T/ca.pem" -CAkey "$T/ca.key" -CAcreateserial \
	-days 1 -extfile "$T/ext" -out "$T/idp.pem" 2>/dev/null || fail "certificate"
export SSL_CERT_FILE=$T/ca.pem
URL=http://192.0.2.1:8080
SECRET=$(head -c 24 /dev/urandom | base64 | tr -d '/+=')
cat >"$T/idp.json" <<EOF
{"issuer": "https://127.0.0.1:8443", "host": "127.0.0.1", "port": 8443, "cert": "$T/idp.pem",
 "key": "$T/idp.key", "client_id": "wiremesh", "client_secret": "$SECRET",
 "redirect_uri": "$URL/oidc/callback", "alg": "ES256",
 "users": {"alice": {"email": "alice@example.com", "email_verified": true,
                     "name": "Alice Liddell", "preferred_username": "alice", "groups": ["vpn"]}}}
EOF
in_srv node "$top/tests/oidc/provider.mjs" "$T/idp.json" >"$T/idp.log" 2>&1 &
WM_PIDS+=($!)
wait_for 20 grep -q ready "$T/idp.log" || fail "provider: $(cat "$T/idp.log")"
(umask 077; printf '%s\n' "$SECRET" >"$T/secret")
cat >"$T/server.hujson" <<EOF
{
  "server_url": "$URL",
  "oidc": {
    "issuer": "https://127.0.0.1:8443",
    "client_id": "wiremesh",
    "client_secret_path": "$T/secret",
    "scope": "openid profile email groups",
    "allowed_domains": ["example.com"],
    "allowed_groups": ["vpn"],
    "expiry": "30d",
  },
}
EOF
show "$T/server.hujson"
DB=$T/db.sqlite
bootstrap
in_srv "$SRV" serve --config "$T/server.hujson" --listen 192.0.2.1:8080 --db "$DB" --derp \
	>"$T/server.log" 2>&1 &
WM_PIDS+=($!)
wait_for 10 in_srv curl -sf "$URL/healthz" || fail "server: $(tail "$T/server.log")"
adm() { in_srv env WIREMESH_SERVER="$URL" WIREMESH_API_KEY="$WIREMESH_API_KEY" "$SRV" "$@"; }
for n in 1 2; do
	ns=$NS1; [ $n = 2 ] && ns=$NS2
	ip netns exec "$ns" "$WM_BIN/wiremeshd" --state-dir "$T/state$n" --socket "$T/n$n.sock" \
		--tun wm0 >"$T/agent$n.log" 2>&1 &
	WM_PIDS+=($!)
	wait_for 10 test -S "$T/n$n.sock" || fail "agent $n"
done
wm() { local n=$1 ns=$NS1; shift; [ "$n" = 2 ] && ns=$NS2; ip netns exec "$ns" "$WM_BIN/wiremesh" --socket "$T/n$n.sock" "$@"; }
good "provider and server up"

step "Logging in with OpenID Connect" "wiremesh up without an auth key prints a URL; a browser logs in there as alice"
echo "    ${B}[laptop]\$ wiremesh up --login-server $URL --hostname laptop${N}"
wm 1 up --login-server "$URL" --hostname laptop >"$T/up1" 2>&1 &
UP=$!
WM_PIDS+=($UP)
wait_for 10 grep -q '/register/' "$T/up1" || fail "no URL: $(cat "$T/up1")"
show "$T/up1"
RURL=$(grep -o 'http://[^ ]*/register/[0-9a-f]*' "$T/up1")
echo "    ${B}[browser] opens the URL, the provider's login form (alice), its consent form${N}"
in_srv python3 "$top/tests/oidc/browser.py" login "$RURL" alice >"$T/page" || fail "browser"
[ "$(head -n1 "$T/page")" = 200 ] || fail "login page: $(cat "$T/page")"
sed -n 's/.*<p>\(Logged in as.*\)<\/p><p>.*/\1/p' "$T/page" | sed 's/<[^>]*>//g' | show
wait "$UP" || fail "up: $(cat "$T/up1")"
show "$T/up1" | tail -n +5
grep -q 'Success. Logged in as alice@example.com.' "$T/up1" || fail "up output"
echo "    ${B}[admin]\$ wiremesh-server users list${N}"
adm users list | show
good "alice@example.com was created by her first login"

step "Admin approval without the provider" "a second machine waits; the admin lets it in by its key"
echo "    ${B}[desktop]\$ wiremesh up --login-server $URL --hostname desktop${N}"
wm 2 up --login-server "$URL" --hostname desktop >"$T/up2" 2>&1 &
UP=$!
WM_PIDS+=($UP)
wait_for 10 grep -q '/register/' "$T/up2" || fail "no URL: $(cat "$T/up2")"
show "$T/up2"
KEY=$(grep -o '/register/[0-9a-f]*' "$T/up2"); KEY=${KEY##*/}
echo "    ${B}[admin]\$ wiremesh-server nodes pending${N}"
adm nodes pending | show
echo "    ${B}[admin]\$ wiremesh-server nodes register --user alice@example.com $KEY${N}"
adm nodes register --user alice@example.com "$KEY" | show
wait "$UP" || fail "up 2: $(cat "$T/up2")"
show "$T/up2" | tail -n +5
ip2=$(wm 2 ip -4)
pinged() { wm 1 ping -c 1 "$ip2" >"$T/ping" 2>&1 && grep -q '^pong' "$T/ping"; }
wait_for 20 pinged || fail "ping: $(cat "$T/ping")"
echo "    ${B}[laptop]\$ wiremesh ping desktop -c 1${N}"
show "$T/ping"
good "both machines are alice's and reach each other"

STEP=done
echo
echo "${B}${G}demo-oidc: every step behaved as shown.${N} Tearing down."
