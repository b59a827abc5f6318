#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# `make demo`: the whole mesh on one machine, in network namespaces.
#
# An "internet" namespace holds the control server (TLS with a throw-away
# test CA, SQLite in a temporary directory, its embedded DERP relay "lon" and
# STUN) and a second relay region "fra" (wiremesh-derper). Four sites, each a
# NAT namespace with a LAN namespace behind it, run one agent each:
#   home, office  behind easy NATs (endpoint-independent, port-preserving)
#   cafe          behind a symmetric NAT (a new port per destination)
#   hotel         behind a NAT that drops UDP (except DNS)
# The agents enrol with one pre-auth key; then the demo shows `status`,
# `ping` (direct between the easy-NAT nodes, via DERP for the others), a ping
# by name (MagicDNS: office.mesh.demo from the agent's resolver),
# `netcheck` behind each NAT, an ACL set through the REST API (home accepts
# port 80 but not 22), the hotel's UDP block lifted: its path turns direct,
# and the admin console: its URL (forwarded to this machine's loopback) and
# a one-time sign-in link. Run from a terminal, the demo then waits for
# Enter before tearing down, so the console can be looked at.
# Every step's output is checked; exit 0 only if all behaved as shown.
# Everything is torn down on exit, also on failure and Ctrl-C.
#
# Needs root. Uses only documentation addresses (192.0.2.0/24,
# 198.51.100.0/24, 203.0.113.0/24) inside its own namespaces.
# WM_BIN overrides the binaries' directory (default: bin/ of this tree).
set -u
top=$(cd "$(dirname "$0")/.." && pwd)
if [ "$(id -u)" != 0 ]; then
	echo "demo: needs root for network namespaces: run sudo make demo" >&2
	exit 1
fi
for t in ip nft openssl curl nc python3 ping; do
	command -v $t >/dev/null || { echo "demo: missing $t (run make deps)" >&2; exit 1; }
done
export WM_TOP=$top WM_BIN=${WM_BIN:-$top/bin}
for b in wiremesh-server wiremesh-derper wiremeshd wiremesh; do
	[ -x "$WM_BIN/$b" ] || { echo "demo: missing $WM_BIN/$b (run make binaries)" >&2; exit 1; }
done
# shellcheck source=../tests/integration/lib.sh
. "$top/tests/integration/lib.sh"
# shellcheck source=../tests/integration/netns.sh
. "$top/tests/integration/netns.sh"
skip() { echo "demo: cannot run here: $*" >&2; exit 1; }

STEP=""
fail() {
	echo >&2
	echo "demo: FAILED at step \"$STEP\": $*" >&2
	for f in "$T"/n*/agent.log; do
		[ -f "$f" ] && { echo "--- $f (last lines)" >&2; grep -v 'level=debug' "$f" | tail -n 10 >&2; }
	done
	exit 1
}
if [ -t 1 ]; then B=$'\e[1m' D=$'\e[2m' G=$'\e[32m' N=$'\e[0m'; else B="" D="" G="" N=""; fi
step() { STEP=$1; echo; echo "${B}==> $1${N}"; [ $# -lt 2 ] || echo "${D}    $2${N}"; }
good() { echo "    ${G}✓ $*${N}"; }

NAMES=(_ home office cafe hotel)
declare -A IDX=([home]=1 [office]=2 [cafe]=3 [hotel]=4)
# run NAME CMD...: shows "[NAME] $ wiremesh ARGS" and the output; keeps it in $OUT
run() {
	local n=$1 shown; shift
	shown="$*"
	[ -z "${AUTHKEY:-}" ] || shown=${shown//$AUTHKEY/${AUTHKEY:0:20}…}
	echo "    ${B}[$n]\$ wiremesh $shown${N}"
	OUT=$(wm "${IDX[$n]}" "$@" 2>&1)
	RC=$?
	[ -z "$OUT" ] || printf '%s\n' "$OUT" | sed 's/^/      /'
}
# shell NAME CMD...: a shell command on NAME's machine
shell() {
	local n=$1; shift
	echo "    ${B}[$n]\$ $*${N}"
	OUT=$(in_node "${IDX[$n]}" "$@" 2>&1)
	RC=$?
	[ -z "$OUT" ] || printf '%s\n' "$OUT" | sed 's/^/      /'
}
addr() { wm "${IDX[$1]}" ip -4; }
path_of() {	# FROM TO: the PATH column of TO in FROM's status
	wm "${IDX[$1]}" status | awk -v n="$2" '$2 == n || $2 == n ".mesh.demo" { $1 = $2 = $3 = ""; sub(/^ +/, ""); print }'
}
path_is() { [[ "$(path_of "$1" "$2")" == $3 ]]; }

step "Building the network" "an internet namespace and four sites: home and office behind easy NATs, cafe behind a symmetric NAT, hotel with UDP blocked"
netns_setup
netns_add_node 1 easy
netns_add_node 2 easy
netns_add_node 3 hard
netns_add_node 4 udp-blocked
for i in 1 2 3 4; do
	printf '    %-7s LAN %-12s behind %-14s (public %s)\n' "${NAMES[$i]}" "$(lan_ip $i)" \
		"$(nat_kind $i) NAT" "$(wan_ip $i)"
done
in_node 1 ping -c 1 -W 2 "$CONTROL_IP" >/dev/null || fail "home cannot reach the internet namespace"
good "namespaces up"

step "Starting the control server and relays" "wiremesh-server on $CONTROL_URL (test CA, SQLite, embedded relay \"lon\" + STUN), wiremesh-derper for region \"fra\""
mesh_ca control.test "$CONTROL_IP" derp2.test 127.0.0.1
MESH_DERP_MAP=$T/derpmap.json
mesh_derp_map 2 >"$MESH_DERP_MAP"
mesh_start_derper "$T/derp2.log" --addr 203.0.113.2:443 --stun-addr 203.0.113.2:3478
printf '{"dns": {"magic_dns": true, "base_domain": "mesh.demo"}}\n' >"$T/server.hujson"
mesh_start_control --config "$T/server.hujson"
export SSL_CERT_FILE=$T/ca.pem
good "control server healthy; relays lon (203.0.113.1) and fra (203.0.113.2)"

step "Creating a user and a pre-auth key" "with the admin CLI"
echo "    ${B}\$ wiremesh-server users create demo${N}"
echo "    ${B}\$ wiremesh-server preauthkeys create --user demo --reusable --expiration 1h${N}"
AUTHKEY=$(mesh_authkey demo) || fail "could not create a pre-auth key"
[[ $AUTHKEY =~ ^wm-auth- ]] || fail "unexpected pre-auth key: $AUTHKEY"
echo "      ${AUTHKEY:0:20}… (shown once, stored hashed)"

step "Enrolling the four agents" "wiremeshd on each site, then wiremesh up"
for i in 1 2 3 4; do
	mesh_start_agent "$i"
	run "${NAMES[$i]}" up --login-server "$CONTROL_URL" --authkey "$AUTHKEY" --hostname "${NAMES[$i]}"
	[ "$RC" = 0 ] || fail "${NAMES[$i]}: up failed"
	echo "$OUT" | grep -q "^Logged in to $CONTROL_URL as ${NAMES[$i]} (100\.64\." || fail "${NAMES[$i]}: unexpected up output"
done
good "four nodes enrolled"

step "wiremesh status on each node" "every node lists the other three"
all_listed() {
	local n=$1 m
	for m in home office cafe hotel; do
		[ "$m" = "$n" ] && continue
		wm "${IDX[$n]}" status | awk -v m="$m" '$2 == m ".mesh.demo" { f = 1 } END { exit !f }' || return 1
	done
}
for n in home office cafe hotel; do
	wait_for 10 all_listed "$n" || fail "$n does not list all its peers"
done
for n in home office cafe hotel; do
	run "$n" status
	[ "$RC" = 0 ] || fail "$n: status failed"
done
good "each node sees three peers"

step "Ping between the easy-NAT nodes: direct" "both sides punch through their NATs; the path moves off DERP as soon as a pong proves it"
run home ping office
[ "$RC" = 0 ] || fail "no pong from office"
echo "$OUT" | tail -n 1 | grep -q "^pong from office ($(addr office)) via $(wan_ip 2):41641 in [0-9]*ms$" ||
	fail "home -> office did not end on a direct path"
good "home <-> office direct via $(wan_ip 2):41641"

step "MagicDNS: reaching a node by name" "the agent answers office.mesh.demo (and its reverse name) at 100.100.100.100 and points the node's resolv.conf at it"
shell home ping -c 1 -W 3 office
[ "$RC" = 0 ] || fail "ping office by name failed"
OFFICE6=$(wm "${IDX[office]}" ip -6)
echo "$OUT" | grep -q "^64 bytes from office.mesh.demo ($OFFICE6)" ||
	fail "office did not resolve to $OFFICE6 (and back)"
good "home pings office by name (office -> $OFFICE6 -> office.mesh.demo)"

step "Ping to the symmetric-NAT and UDP-blocked nodes: via DERP" "no direct path exists, so the relays carry the WireGuard packets"
run home ping cafe -c 3
[ "$RC" = 0 ] || fail "no pong from cafe"
echo "$OUT" | grep -q "^pong from cafe ($(addr cafe)) via DERP([a-z]*) in [0-9]*ms$" || fail "home -> cafe not via DERP"
! echo "$OUT" | grep -q " via [0-9]" || fail "home -> cafe went direct through a symmetric NAT"
run cafe ping hotel -c 3
[ "$RC" = 0 ] || fail "no pong from hotel"
echo "$OUT" | grep -q "^pong from hotel ($(addr hotel)) via DERP([a-z]*) in [0-9]*ms$" || fail "cafe -> hotel not via DERP"
! echo "$OUT" | grep -q " via [0-9]" || fail "cafe -> hotel went direct with UDP blocked"
shell hotel ping -c 2 -W 3 "$(addr home)"
[ "$RC" = 0 ] || fail "ICMP hotel -> home through the tunnel failed"
good "relayed pings and traffic work"

step "netcheck behind each NAT" "easy NAT: one mapping for every destination; symmetric: a mapping per destination; UDP blocked: no STUN"
run home netcheck
echo "$OUT" | grep -qx '\* UDP: true' && echo "$OUT" | grep -qx '\* MappingVariesByDestIP: false' ||
	fail "home: expected UDP true and MappingVariesByDestIP false"
run cafe netcheck
echo "$OUT" | grep -qx '\* UDP: true' && echo "$OUT" | grep -qx '\* MappingVariesByDestIP: true' ||
	fail "cafe: expected MappingVariesByDestIP true"
run hotel netcheck
echo "$OUT" | grep -qx '\* UDP: false' || fail "hotel: expected UDP false"
echo "$OUT" | grep -q '^  - lon: ' || fail "hotel: relays should still answer over HTTPS"
good "netcheck tells the three NATs apart"

step "An ACL through the REST API" "home accepts port 80 from the tailnet but not port 22; everything else stays open"
HOME4=$(addr home)
# home runs a web server on port 80 (python, no reverse DNS) and nc on port 22
cat >"$T/www.py" <<'PY'
import http.server, socketserver, sys
class S(http.server.ThreadingHTTPServer):
    def server_bind(self):
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = "home", self.server_address[1]
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        b = b"hello from home\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(b)))
        self.end_headers()
        self.wfile.write(b)
    def log_message(self, *a):
        pass
S((sys.argv[1], 80), H).serve_forever()
PY
bg_node 1 "$T/www.log" python3 "$T/www.py" "$HOME4"
bg_node 1 "$T/nc22.log" nc -lk "$HOME4" 22
wait_for 5 in_node 1 curl -s --max-time 1 "http://$HOME4/" || fail "web server on home did not start"
wait_for 5 in_node 1 nc -z -w 1 "$HOME4" 22 || fail "nothing listening on home:22"
echo "    before the ACL:"
shell office curl -s --max-time 3 "http://$HOME4/"
[ "$OUT" = "hello from home" ] || fail "office cannot fetch home:80 before the ACL"
shell office nc -z -v -w 3 "$HOME4" 22
[ "$RC" = 0 ] || fail "office cannot reach home:22 before the ACL"
declare -A A4=()
for n in home office cafe hotel; do A4[$n]=$(addr "$n"); done
cat >"$T/acls.hujson" <<JSON
{
  // hosts by tailnet address
  "hosts": {
    "home": "${A4[home]}/32", "office": "${A4[office]}/32",
    "cafe": "${A4[cafe]}/32", "hotel": "${A4[hotel]}/32",
  },
  "acls": [
    // home serves the web to everyone, nothing else
    {"action": "accept", "src": ["*"], "dst": ["home:80"]},
    // the other nodes are open
    {"action": "accept", "src": ["*"], "dst": ["office:*", "cafe:*", "hotel:*"]},
  ],
}
JSON
echo "    the policy, acls.hujson:"
sed 's/^/      /' "$T/acls.hujson"
echo "    ${B}\$ curl -X PUT -H \"Authorization: Bearer \$WIREMESH_API_KEY\" --data-binary @acls.hujson $CONTROL_URL/api/v1/policy${N}"
OUT=$(mesh_api PUT /api/v1/policy "$(cat "$T/acls.hujson")")
echo "      $OUT"
[ "${OUT%% *}" = 200 ] || fail "the server refused the policy"
wait_for 10 eval "! in_node 2 nc -z -w 1 $HOME4 22" || fail "home:22 still reachable 10 s after the ACL"
echo "    after the ACL:"
shell office curl -s --max-time 3 "http://$HOME4/"
[ "$OUT" = "hello from home" ] || fail "office cannot fetch home:80 after the ACL"
shell office nc -z -v -w 3 "$HOME4" 22
[ "$RC" != 0 ] || fail "office still reaches home:22"
echo "      (no answer: the packets are dropped by home's packet filter)"
drops=$(wm 1 debug | python3 -c 'import json,sys; print(json.load(sys.stdin)["filter"]["dropped_policy"])')
[ "${drops:-0}" -gt 0 ] || fail "home's debug shows no policy drops"
echo "    home's packet filter: $drops packets dropped by policy (wiremesh debug)"
good "port 80 allowed, port 22 denied"

step "Lifting the UDP block at the hotel" "nothing is restarted: the agent notices UDP works and the path turns direct"
run hotel ping home -c 1
echo "$OUT" | grep -q "via DERP(" || fail "hotel -> home should still be via DERP"
echo "    ${B}[hotel's router]\$ nft flush chain ip wmnat kind${N}   (UDP allowed again)"
in_node 4 ping -i 0.5 -c 60 -W 1 "$(addr home)" >/dev/null 2>&1 &
WM_PIDS+=($!)
t0=$(date +%s%N)
nat_set_kind 4 easy
wait_for 30 path_is hotel home 'direct *' || fail "hotel -> home still $(path_of hotel home) 30 s after lifting the block"
t1=$(date +%s%N)
run hotel ping home -c 1
echo "$OUT" | grep -q "^pong from home ($(addr home)) via $(wan_ip 1):41641 in [0-9]*ms$" || fail "hotel -> home ping is not direct"
run hotel status
good "hotel <-> home direct after $(( (t1 - t0) / 1000000 )) ms"

step "The admin console" "served by wiremesh-server at /admin/; a one-time sign-in link opens a session"
out=$(mesh_api POST /api/v1/session/signin-links '{"expiration":"1h"}')
[ "${out%% *}" = 201 ] || fail "cannot create a sign-in link: $out"
CHECK=$(echo "${out#* }" | python3 -c 'import json,sys; print(json.load(sys.stdin)["signin_token"])')
r=$(in_inet curl -s --cacert "$T/ca.pem" -c "$T/console.jar" -o "$T/console.json" -w '%{http_code}' \
	-X POST -H 'Content-Type: application/json' --data-binary "{\"signin_token\":\"$CHECK\"}" \
	"$CONTROL_URL/api/v1/session")
[ "$r" = 201 ] || fail "the sign-in link was refused: $r $(cat "$T/console.json")"
n=$(in_inet curl -s --cacert "$T/ca.pem" -b "$T/console.jar" "$CONTROL_URL/api/v1/nodes" |
	python3 -c 'import json,sys; n=json.load(sys.stdin)["nodes"]; print(len(n), sum(x["online"] for x in n), sum(x.get("os", "").startswith("linux ") for x in n))')
[ "$n" = "4 4 4" ] || fail "the console's session sees nodes, online, reporting their OS: $n"
in_inet curl -s --cacert "$T/ca.pem" -D - -o /dev/null "$CONTROL_URL/admin/" | grep -qi "^content-security-policy: default-src 'none'" ||
	fail "/admin/ is not served with its CSP"
# This machine reaches the console through a loopback port forwarded into
# the internet namespace (one `nc` per connection).
FWD_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cat >"$T/forward.py" <<'PY'
import socket, subprocess, sys
ns, host, port, lport = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", lport)); srv.listen(64)
while True:
    c, _ = srv.accept()
    subprocess.Popen(["ip", "netns", "exec", ns, "nc", "-q", "1", host, port], stdin=c, stdout=c,
                     stderr=subprocess.DEVNULL)
    c.close()
PY
python3 "$T/forward.py" "$NS_INET" "$CONTROL_IP" 443 "$FWD_PORT" &
WM_PIDS+=($!)
wait_for 5 curl -sf --cacert "$T/ca.pem" -o /dev/null "https://127.0.0.1:$FWD_PORT/admin/" ||
	fail "the forwarded console port does not answer"
out=$(mesh_api POST /api/v1/session/signin-links '{"expiration":"1h"}')
LINK=$(echo "${out#* }" | python3 -c 'import json,sys; print(json.load(sys.stdin)["path"])') ||
	fail "cannot create a sign-in link: $out"
echo "    console (inside the demo network): $CONTROL_URL/admin/"
echo "    console from this machine:         https://127.0.0.1:$FWD_PORT/admin/"
echo "    one-time sign-in (valid 1 h, works once):"
echo "      https://127.0.0.1:$FWD_PORT$LINK"
echo "    the browser must trust the demo's test CA: $T/ca.pem"
good "console signed in with a one-time link: 4 nodes, 4 online, each reporting its OS"

STEP=done
echo
if [ -t 0 ] && [ -t 1 ] && [ "${WM_DEMO_HOLD:-1}" != 0 ]; then
	echo "${B}${G}demo: every step behaved as shown.${N} The mesh and the console stay up: press Enter to tear down."
	read -r _ || true
	echo "Tearing down."
else
	echo "${B}${G}demo: every step behaved as shown.${N} Tearing down."
fi
