#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Policy grants end to end (issue 16), in the netns.sh topology:
#   node1  client, tag:c1, --accept-routes
#   node2  router A, tag:ra: --advertise-routes 192.0.2.240/28 (primary)
#   node3  router B, tag:rb: --advertise-routes 192.0.2.240/28 (standby)
#   node4  client, tag:c4, --accept-routes
# A "subnet" namespace holds the LAN behind both routers; its web server
# answers with the address it sees (each router masquerades with its own).
#
# Checked: with a grants-only policy, node1 (a plain ip grant) reaches the
# LAN through the primary router A while node4 (a via grant naming tag:rb)
# reaches the same prefix through router B; router A's packet filter does
# not admit node4 for the LAN; an app grant's capability shows on the
# destination node (router A) for the source peer (node1) in
# `status --json`, and not for a peer the grant does not name; a grant
# with srcPosture is refused with its position and changes nothing; with
# two via routers node4 uses the first one online and moves to the other
# when that one's agent is killed.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/netns.sh"
for t in openssl curl python3; do command -v $t >/dev/null || skip "missing $t"; done
[ -x "$WM_BIN/wiremeshd" ] && [ -x "$WM_BIN/wiremesh" ] || fail "wiremeshd/wiremesh not built in $WM_BIN"
[ -c /dev/net/tun ] || skip "no /dev/net/tun"

SUBNET=192.0.2.240/28
LANHOST=192.0.2.242

fail() {
	echo "FAIL: $*" >&2
	for f in "$T"/n*/agent.log; do
		[ -f "$f" ] && { echo "--- $f" >&2; grep -v 'level=debug' "$f" | tail -n 12 >&2; }
	done
	exit 1
}

netns_setup
for i in 1 2 3 4; do netns_add_node "$i" easy; done
NS_SUB=wm${NETNS_SFX}s
netns_new "$NS_SUB"
ip -n "$NS_SUB" link add br0 type bridge || fail "subnet bridge"
ip -n "$NS_SUB" addr add "$LANHOST/28" dev br0
ip -n "$NS_SUB" link set br0 up
for i in 2 3; do
	ip link add sub netns "$(node_ns "$i")" type veth peer name "s$i" netns "$NS_SUB" || fail "veth s$i"
	ip -n "$NS_SUB" link set "s$i" master br0 up
	ip -n "$(node_ns "$i")" addr add "192.0.2.$((239 + 2 * (i - 1)))/28" dev sub
	ip -n "$(node_ns "$i")" link set sub up
done

mesh_ca control.test 203.0.113.1
# 5 s keepalives: the server sees a killed router's stream closed within
# 5-10 s (the failover check at the end).
WIREMESH_KEEPALIVE_INTERVAL=5s mesh_start_control
srv users create alice >/dev/null || fail "users create"
key() { srv preauthkeys create --user alice --reusable --expiration 1h --tags "$1" || fail "preauthkeys create $1"; }

cat >"$T/who.py" <<'PY'
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        b = (self.client_address[0] + "\n").encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(b)))
        self.end_headers()
        self.wfile.write(b)
    def log_message(self, *a):
        pass
http.server.ThreadingHTTPServer((sys.argv[1], int(sys.argv[2])), H).serve_forever()
PY
bg_in "$NS_SUB" "$T/lan.log" python3 "$T/who.py" "$LANHOST" 80
wait_for 5 ip netns exec "$NS_SUB" curl -s --max-time 1 "http://$LANHOST:80/" || fail "LAN web server"

# The policy first: the tags must exist before keys carry them.
policy() {	# extra grants appended
	cat <<EOF
{
  "tagOwners": {"tag:c1": ["alice@"], "tag:c4": ["alice@"], "tag:ra": ["alice@"], "tag:rb": ["alice@"]},
  "hosts": {"lan": "$SUBNET"},
  "grants": [
    // the mesh itself
    {"src": ["autogroup:tagged"], "dst": ["autogroup:tagged"], "ip": ["*"]},
    // node1: the LAN through whichever router serves it
    {"src": ["tag:c1"], "dst": ["lan"], "ip": ["tcp:80"]},
    // node4: the same LAN, only through router B
    {"src": ["tag:c4"], "dst": ["lan"], "ip": ["tcp:80"], "via": ["tag:rb"]},
    // an application capability node1 has on router A
    {"src": ["tag:c1"], "dst": ["tag:ra"], "app": {"example.com/cap/lan-admin": [{"role": "admin", "sites": ["lon"]}]}},
    ${1:-}
  ],
}
EOF
}
out=$(mesh_api PUT /api/v1/policy "$(policy)")
expect_status 200 "$out"

up() {	# I KEY ARGS...
	local i=$1 k=$2; shift 2
	[ -n "${AGENT_PID[$i]:-}" ] || mesh_start_agent "$i"
	wm "$i" up --login-server "$CONTROL_URL" --authkey "$k" --hostname "node$i" "$@" >"$T/up$i" 2>&1 ||
		{ cat "$T/up$i"; fail "node $i: up $* failed"; }
}
node_id() {
	srv nodes list --json | python3 -c 'import json,sys
d=json.load(sys.stdin); d=d.get("nodes", d) if isinstance(d, dict) else d
print([n["id"] for n in d if n["name"] == sys.argv[1]][0])' "$1"
}
get() { in_node "$1" curl -s --max-time "${3:-2}" "http://$2/"; }
get_is() { [ "$(get "$1" "$2" 1)" = "$3" ]; }

up 2 "$(key tag:ra)" --advertise-routes "$SUBNET"
up 3 "$(key tag:rb)" --advertise-routes "$SUBNET"
up 1 "$(key tag:c1)" --accept-routes
up 4 "$(key tag:c4)" --accept-routes
ID2=$(node_id node2) && ID3=$(node_id node3) || fail "node ids"
srv nodes approve-routes "$ID2" "$SUBNET" >/dev/null || fail "approve-routes node2"
mesh_api GET "/api/v1/nodes/$ID2/routes" | grep -q "\"serving\":\[[^]]*\"$SUBNET\"" || fail "router A is not primary"
srv nodes approve-routes "$ID3" "$SUBNET" >/dev/null || fail "approve-routes node3"

# node1 goes through the primary (A, 192.0.2.241); node4 through B (192.0.2.243).
wait_for 20 get_is 1 "$LANHOST:80" 192.0.2.241 ||
	fail "node1 does not reach the LAN through router A (got '$(get 1 "$LANHOST:80")'; $(wm 1 status))"
wait_for 20 get_is 4 "$LANHOST:80" 192.0.2.243 ||
	fail "node4 (via tag:rb) does not reach the LAN through router B (got '$(get 4 "$LANHOST:80")'; $(wm 4 status))"
# several times: the choice is stable, not a race between the routers
for _ in 1 2 3; do
	get_is 1 "$LANHOST:80" 192.0.2.241 || fail "node1 left router A"
	get_is 4 "$LANHOST:80" 192.0.2.243 || fail "node4 left router B"
done
ok "via: node1 reaches $SUBNET through router A (primary), node4 through router B (via tag:rb)"

# Router A's filter admits node1 for the LAN and not node4; router B's
# admits node4; node4 holds the via directive naming router B.
n1=$(wm 1 ip -4) && n4=$(wm 4 ip -4) && n3=$(wm 3 ip -4) || fail "addresses"
lan_srcs() {	# I: the sources node I admits to the LAN on port 80
	wm "$1" debug | python3 -c 'import json,sys
d=json.load(sys.stdin); s=set()
for r in d["filter"]["rules"]:
    if any(x.get("Net")==sys.argv[1] and x["Ports"]["First"]<=80<=x["Ports"]["Last"] for x in r.get("Dsts",[])):
        s.update(r["Srcs"])
print(" ".join(sorted(s)))' "$SUBNET"
}
a_srcs=$(lan_srcs 2) b_srcs=$(lan_srcs 3)
[[ " $a_srcs " == *" $n1/32 "* && " $a_srcs " != *" $n4/32 "* ]] || fail "router A admits [$a_srcs] to the LAN (want $n1, not $n4)"
[[ " $b_srcs " == *" $n4/32 "* ]] || fail "router B admits [$b_srcs] to the LAN (want $n4)"
wm 4 debug | python3 -c 'import json,sys
d=json.load(sys.stdin)
v=[r["Via"] for r in d["filter"]["rules"] if "Via" in r]
assert len(v)==1 and v[0]["Dst"]==sys.argv[1], v
assert [r["Addrs"][0] for r in v[0]["Routers"]]==[sys.argv[2]+"/32"], v' "$SUBNET" "$n3" ||
	fail "node4 has no via directive naming router B: $(wm 4 debug)"
ok "filters: router A admits node1 (not node4) to the LAN, router B admits node4; node4's map names router B"

policy >"$T/acls.hujson"
out=$("$WM_BIN/wiremesh-server" policy explain --file "$T/acls.hujson" tag:c4 "$LANHOST:80" 2>&1) ||
	fail "explain: tag:c4 -> $LANHOST:80 denied: $out"
echo "$out" | grep -q "via decides the router" || fail "explain does not say that via decides: $out"
echo "$out" | grep -q "grant #3" || fail "explain does not name the grant: $out"
ok "explain names grant #3 and says that via decides the router"

# The app capability: on router A, for peer node1 (and not for node4).
caps() {
	wm 2 status --json | python3 -c 'import json,sys
d=json.load(sys.stdin); p={p["name"]: p for p in d["peers"]}
c1=p["node1"]["cap_map"]; c4=p["node4"]["cap_map"]
assert c1 == {"example.com/cap/lan-admin": [{"role": "admin", "sites": ["lon"]}]}, c1
assert c4 == {}, c4'
}
wait_for 10 caps || fail "router A's status does not show node1's capability: $(wm 2 status --json)"
# the local API answers the same to any application on the node
in_node 2 python3 - "$T/n2/sock" <<'PY' || fail "local API status has no cap_map"
import json, socket, sys
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])
s.sendall(json.dumps({"cmd": "status"}).encode() + b"\n")
buf = b""
while True:
    c = s.recv(65536)
    if not c: break
    buf += c
    try: r = json.loads(buf); break
    except ValueError: pass
p = {p["name"]: p for p in r["data"]["peers"]}
assert p["node1"]["cap_map"]["example.com/cap/lan-admin"][0]["role"] == "admin", p["node1"]
PY
ok "app grant: router A sees example.com/cap/lan-admin for peer node1 (status --json and the local API), none for node4"

# srcPosture: refused with its position, the active policy unchanged.
etag_before=$(mesh_api GET /api/v1/policy | md5sum)
out=$(mesh_api PUT /api/v1/policy "$(policy '{"src": ["tag:c4"], "dst": ["tag:ra"], "ip": ["*"], "srcPosture": ["posture:latest"]}')")
expect_status 422 "$out"
echo "$out" | grep -q 'srcPosture is not supported' || fail "srcPosture refusal does not say why: $out"
echo "$out" | grep -Eq '"line": ?[0-9]+' || fail "srcPosture refusal has no position: $out"
[ "$(mesh_api GET /api/v1/policy | md5sum)" = "$etag_before" ] || fail "a refused policy changed the active one"
get_is 4 "$LANHOST:80" 192.0.2.243 || fail "node4 lost its route after a refused policy"
ok "srcPosture: refused with line:column, nothing applied"

# Without the via grant node4 falls back to the primary router A.
out=$(mesh_api PUT /api/v1/policy "$(policy '{"src": ["tag:c4"], "dst": ["lan"], "ip": ["tcp:80"]}' | grep -v '"via"')")
expect_status 200 "$out"
wait_for 20 get_is 4 "$LANHOST:80" 192.0.2.241 ||
	fail "node4 without the via grant does not move to router A (got '$(get 4 "$LANHOST:80")')"
ok "via grant removed: node4 moves back to the primary router A"

# Two via routers: node4 uses the first one online (router A); when A's
# agent dies, node4 moves to router B.
out=$(mesh_api PUT /api/v1/policy "$(policy '{"src": ["tag:c4"], "dst": ["lan"], "ip": ["tcp:80"], "via": ["tag:ra", "tag:rb"]}' | grep -v '"via": \["tag:rb"\]')")
expect_status 200 "$out"
wm 4 debug | python3 -c 'import json,sys
d=json.load(sys.stdin)
v=[r["Via"] for r in d["filter"]["rules"] if "Via" in r]
assert len(v)==1 and len(v[0]["Routers"])==2, v' || fail "node4 has no via directive with two routers: $(wm 4 debug)"
wait_for 20 get_is 4 "$LANHOST:80" 192.0.2.241 || fail "node4 (via A or B) not through router A (got '$(get 4 "$LANHOST:80")')"
t0=$(date +%s%N)
kill -9 "${AGENT_PID[2]}"
wait "${AGENT_PID[2]}" 2>/dev/null
wait_for 30 get_is 4 "$LANHOST:80" 192.0.2.243 ||
	fail "node4 did not move to router B after router A died (got '$(get 4 "$LANHOST:80")'; $(wm 4 status))"
ok "via with two routers: node4 used router A, moved to router B $(( ($(date +%s%N) - t0) / 1000000 )) ms after A's agent was killed"
