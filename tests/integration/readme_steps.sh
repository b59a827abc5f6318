#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The README's "Real deployment: enrol a node in five steps", end to end on
# loopback, with the shipped files: `make install DESTDIR=`, the installed
# server.hujson (flags override only what a loopback test must: addresses,
# the database path, a test certificate), `apikeys create --db`, `users
# create alice`, `preauthkeys create --user alice --expiration 24h`, two
# nodes `wiremesh up --login-server --authkey`, `status`, `netcheck`,
# `ping OTHER-NODE`, `nodes list`, and the shipped acls.hujson checked and
# loaded, after which alice's nodes still reach each other.
. "$(dirname "$0")/lib.sh"
R=$T/root

# 1. install (into a scratch root) and start the server with the shipped config
make -s -C "$WM_TOP" --no-print-directory install DESTDIR="$R" >"$T/install.out" 2>&1 ||
	fail "make install: $(tail -n 20 "$T/install.out")"
SRVI=$R/usr/local/bin/wiremesh-server CLI=$R/usr/local/bin/wiremesh AGENT=$R/usr/local/sbin/wiremeshd
[ -x "$AGENT" ] || AGENT=$R/usr/local/bin/wiremeshd
for b in "$SRVI" "$CLI" "$AGENT"; do [ -x "$b" ] || fail "make install did not install $b"; done
CONF=$R/usr/local/etc/wiremesh/server.hujson
[ -f "$CONF" ] || CONF=$R/etc/wiremesh/server.hujson
ACLS=$(dirname "$CONF")/acls.hujson
[ -f "$CONF" ] && [ -f "$ACLS" ] || fail "no installed server.hujson/acls.hujson under $R"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=localhost \
	-addext subjectAltName=DNS:localhost,IP:127.0.0.1 -keyout "$T/key.pem" -out "$T/cert.pem" -days 1 2>/dev/null ||
	fail "openssl"
PORT=$(free_port)
SPORT=$(python3 -c 'import socket;s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM);s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
WM_SERVER_LOG=$T/server.log
"$SRVI" serve --config "$CONF" --listen "127.0.0.1:$PORT" --db "$T/db.sqlite" \
	--tls-cert "$T/cert.pem" --tls-key "$T/key.pem" --derp-map "" --derp-hostname localhost \
	--derp-port "$PORT" --stun-listen "127.0.0.1:$SPORT" >>"$WM_SERVER_LOG" 2>&1 &
WM_PIDS+=($!)
URL=https://localhost:$PORT
export SSL_CERT_FILE=$T/cert.pem
wait_for 15 curl -sf --cacert "$T/cert.pem" "$URL/healthz" || fail "server with the shipped config did not start"
ok "1. installed; the server runs with the shipped server.hujson (TLS, embedded relay, STUN)"

# 2. an admin key, on the database file directly
WIREMESH_API_KEY=$("$SRVI" apikeys create --db "$T/db.sqlite") || fail "apikeys create --db"
export WIREMESH_SERVER=$URL WIREMESH_API_KEY
"$SRVI" users list >/dev/null || fail "the admin key does not work"
ok "2. apikeys create --db: the key works"

# 3. a user and a pre-auth key
"$SRVI" users create alice >/dev/null || fail "users create alice"
AK=$("$SRVI" preauthkeys create --user alice --expiration 24h) || fail "preauthkeys create"
[[ "$AK" == wm-auth-* ]] || fail "pre-auth key: $AK"
AK2=$("$SRVI" preauthkeys create --user alice --expiration 24h) || fail "preauthkeys create (2)"
ok "3. user alice and 24h pre-auth keys (single-use: one per node)"

# 4. two nodes enrol (userspace networking: no TUN needed on loopback)
start_agent() {	# N
	"$AGENT" --state-dir "$T/s$1" --socket "$T/a$1.sock" --port "$(free_port)" \
		--tun userspace-networking >>"$T/agent$1.log" 2>&1 &
	WM_PIDS+=($!)
	wait_for 10 test -S "$T/a$1.sock" || fail "agent $1: $(tail "$T/agent$1.log")"
}
wm() { local n=$1; shift; "$CLI" --socket "$T/a$n.sock" "$@"; }
start_agent 1; start_agent 2
wm 1 up --login-server "$URL" --authkey "$AK" --hostname node1 >"$T/up1" 2>&1 || fail "up 1: $(cat "$T/up1")"
wm 2 up --login-server "$URL" --authkey "$AK2" --hostname node2 >"$T/up2" 2>&1 || fail "up 2: $(cat "$T/up2")"
grep -q "^Logged in to $URL as node1 " "$T/up1" || fail "up 1 says: $(cat "$T/up1")"
ok "4. two nodes enrolled with wiremesh up --login-server --authkey"

# 5. check and restrict
sees() { wm 1 status | grep -q ' node2 .*alice'; }
wait_for 15 sees || fail "status: $(wm 1 status)"
wm 1 netcheck >"$T/nc" || fail "netcheck: $(cat "$T/nc")"
grep -qx '\* UDP: true' "$T/nc" && grep -q '^\* Nearest DERP: home' "$T/nc" || fail "netcheck: $(cat "$T/nc")"
pong() { wm 1 ping -c 1 node2 | grep -q '^pong from node2'; }
wait_for 20 pong || fail "ping node2: $(wm 1 ping -c 1 node2 2>&1)"
"$SRVI" nodes list | grep -q 'node1 .*alice' || fail "nodes list"
"$SRVI" policy check "$ACLS" >/dev/null || fail "the shipped acls.hujson does not pass policy check"
"$SRVI" policy set -f "$ACLS" >/dev/null || fail "policy set"
# alice is in group:admins of the shipped policy: her nodes keep reaching each other
"$SRVI" policy explain alice@ node2:22 | grep -q '^accept' || fail "explain: $("$SRVI" policy explain alice@ node2:22)"
still() { wm 1 status | grep -q ' node2 .*alice' && wm 1 ping -c 1 node2 | grep -q '^pong from node2'; }
wait_for 20 still || fail "alice cut off by the shipped policy: $(wm 1 status)"
ok "5. status, netcheck, ping, nodes list; the shipped acls.hujson loads and alice keeps her mesh"
