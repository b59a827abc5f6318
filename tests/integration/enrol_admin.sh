#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Interactive enrolment without an identity provider: `wiremesh up` without
# an auth key prints SERVER/register/ID and waits; the admin sees the
# machine in `nodes pending` and lets it in with `nodes register --user U
# KEY`; up finishes within a second ("Success. Logged in as alice.") and
# the node pings a peer that joined with a pre-auth key. The register page
# (HTML) tells the admin's command; a used link answers 410, a mistyped one
# 404, an expired one 410 (and the waiting up says so); REST errors are
# problem documents; `up --force-reauth` asks for a login again while the
# node keeps working.
. "$(dirname "$0")/lib.sh"

[ "$(id -u)" = 0 ] || skip "needs root (network namespaces)"
for t in ip curl python3; do command -v $t >/dev/null || skip "missing $t"; done
[ -c /dev/net/tun ] || skip "no /dev/net/tun"
for b in wiremeshd wiremesh wiremesh-server; do
	[ -x "$WM_BIN/$b" ] || skip "missing $WM_BIN/$b (make binaries)"
done

S=wmea$$
NS_SRV=${S}s NS1=${S}a NS2=${S}b
WM_CLEANUP+=("ip netns del $NS_SRV" "ip netns del $NS1" "ip netns del $NS2")
fail() {
	echo "FAIL: $*" >&2
	for f in "$T"/agent*.log; do
		[ -f "$f" ] && { echo "--- $f" >&2; grep -v 'level=debug' "$f" | tail -n 30 >&2; }
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

DB=$T/db.sqlite
bootstrap
URL=http://192.0.2.1:8080
WM_SERVER_LOG=$T/server.log
ip netns exec "$NS_SRV" env WIREMESH_REGISTER_URL_EXPIRY=${EXPIRY:-8s} "$SRV" serve \
	--listen 192.0.2.1:8080 --db "$DB" --derp --log-level debug >>"$WM_SERVER_LOG" 2>&1 &
SERVER_PID=$!
WM_PIDS+=($SERVER_PID)
wait_for 10 ip netns exec "$NS_SRV" curl -sf "$URL/healthz" || fail "server did not start"
adm() { ip netns exec "$NS_SRV" env WIREMESH_SERVER="$URL" WIREMESH_API_KEY="$WIREMESH_API_KEY" "$SRV" "$@"; }
in_srv() { ip netns exec "$NS_SRV" "$@"; }
adm users create alice >/dev/null || fail "users create"
AK=$(adm preauthkeys create --user alice --reusable) || fail "preauthkeys create"

start_agent() {	# N NS
	ip netns exec "$2" "$WM_BIN/wiremeshd" --state-dir "$T/state$1" --socket "$T/n$1.sock" \
		--tun wm0 --port 41641 --log-level debug >>"$T/agent$1.log" 2>&1 &
	eval "AGENT$1=$!"
	WM_PIDS+=($!)
	wait_for 10 test -S "$T/n$1.sock" || fail "agent $1 did not start"
}
wm() {	# N args...
	local n=$1; shift
	local ns=$NS1; [ "$n" = 2 ] && ns=$NS2
	ip netns exec "$ns" "$WM_BIN/wiremesh" --socket "$T/n$n.sock" "$@"
}
start_agent 1 "$NS1"
start_agent 2 "$NS2"
wm 2 up --login-server "$URL" --authkey "$AK" --hostname node2 >"$T/up2" 2>&1 || fail "up 2: $(cat "$T/up2")"

# A register URL that nobody uses expires: the page says so (410) and the
# waiting up gives up with the reason.
wm 1 up --login-server "$URL" --hostname node1 >"$T/upx" 2>&1 &
UPX=$!
WM_PIDS+=($UPX)
wait_for 10 grep -q '/register/' "$T/upx" || fail "no register URL: $(cat "$T/upx")"
XURL=$(grep -o 'http://[^ ]*/register/[0-9a-f]*' "$T/upx")
wait "$UPX"; rc=$?
[ "$rc" = 1 ] || fail "up with an expired link: exit $rc: $(cat "$T/upx")"
grep -q 'expired' "$T/upx" || fail "up does not say the link expired: $(cat "$T/upx")"
st=$(in_srv curl -s -o "$T/page" -w '%{http_code}' "$XURL")
[ "$st" = 410 ] && grep -q 'expired' "$T/page" || fail "expired link: $st $(cat "$T/page")"
[ -z "$(adm nodes pending --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["pending"] or "")')" ] ||
	fail "expired registration still pending"
ok "an unused register URL expires: the page answers 410 and up fails with the reason"

# The usual way: up waits, the admin approves.
wm 1 up --login-server "$URL" --hostname node1 >"$T/up1" 2>&1 &
UP1=$!
WM_PIDS+=($UP1)
wait_for 10 grep -q '/register/' "$T/up1" || fail "no register URL: $(cat "$T/up1")"
head -n1 "$T/up1" | grep -qx 'To authenticate, visit:' || fail "first line: $(cat "$T/up1")"
grep -qxE $'\t''http://192\.0\.2\.1:8080/register/[0-9a-f]{32}' "$T/up1" ||
	fail "URL not on a line of its own: $(cat -A "$T/up1")"
RURL=$(grep -o 'http://[^ ]*/register/[0-9a-f]*' "$T/up1")
KEY=${RURL##*/}
st=$(in_srv curl -s -o "$T/page" -w '%{http_code}' "$RURL")
[ "$st" = 200 ] || fail "register page: $st"
grep -q "nodes register --user USER $KEY" "$T/page" && grep -q '<b>node1</b>' "$T/page" ||
	fail "register page: $(cat "$T/page")"
adm nodes pending >"$T/pending" || fail "nodes pending"
grep -q "^$KEY  *node1 " "$T/pending" || fail "nodes pending: $(cat "$T/pending")"
r=$(in_srv curl -s -o "$T/resp" -w '%{http_code}' -H "Authorization: Bearer $WIREMESH_API_KEY" \
	"$URL/api/v1/nodes/pending")
[ "$r" = 200 ] && python3 -c 'import json,sys; p=json.load(open(sys.argv[1]))["pending"]; assert p[0]["key"]==sys.argv[2] and p[0]["hostname"]=="node1" and p[0]["machine_key"].startswith("mkey:")' "$T/resp" "$KEY" ||
	fail "GET /api/v1/nodes/pending: $r $(cat "$T/resp")"
ok "up prints the register URL on its own line; page, nodes pending and the REST list show it"

# Bad approvals: unknown user, unknown key, wrong method. Nothing written.
adm nodes register --user nobody "$KEY" >"$T/out" 2>&1 && fail "unknown user accepted"
grep -q 'no user "nobody"' "$T/out" || fail "unknown user: $(cat "$T/out")"
r=$(in_srv curl -s -o "$T/resp" -w '%{http_code}' -H "Authorization: Bearer $WIREMESH_API_KEY" \
	-d '{"user":"alice","key":"0123456789abcdef0123456789abcdef"}' "$URL/api/v1/nodes/register")
[ "$r" = 404 ] && grep -q '"status":404' "$T/resp" || fail "unknown key: $r $(cat "$T/resp")"
r=$(in_srv curl -s -o "$T/resp" -w '%{http_code}' -H "Authorization: Bearer $WIREMESH_API_KEY" \
	-d '{"user":"alice"}' "$URL/api/v1/nodes/register")
[ "$r" = 400 ] || fail "missing key: $r $(cat "$T/resp")"
[ "$(adm nodes list --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["nodes"]))')" = 1 ] ||
	fail "a refused approval wrote a node"
ok "refused approvals (unknown user or key, missing field) write nothing"

t0=$(date +%s%N)
adm nodes register --user alice "$KEY" >"$T/reg" || fail "nodes register: $(cat "$T/reg")"
wait "$UP1"; rc=$?
t1=$(date +%s%N)
[ "$rc" = 0 ] || fail "up after approval: exit $rc: $(cat "$T/up1")"
grep -q '^Success. Logged in as alice.$' "$T/up1" || fail "up output: $(cat "$T/up1")"
grep -q 'Logged in to .* as node1 (100\.' "$T/up1" || fail "up output: $(cat "$T/up1")"
ms=$(( (t1 - t0) / 1000000 ))
# The long-poll answers at once: the agent's "login done" within 1 s of the
# server's "registered" (the rest of up is the first netmap and relay).
lag=$(python3 - "$WM_SERVER_LOG" "$T/agent1.log" <<'PY'
import re, sys, datetime
def ts(path, pat):
    for l in open(path):
        if pat in l:
            t = re.search(r'ts=(\S+)Z', l).group(1)
            return datetime.datetime.fromisoformat(t)
a = ts(sys.argv[1], 'registered by an admin'); b = ts(sys.argv[2], 'interactive login done')
print(int((b - a).total_seconds() * 1000))
PY
) || fail "cannot read the log timestamps"
[ "$lag" -lt 1000 ] || fail "up noticed the approval only after ${lag} ms"
echo "# the waiting up saw the approval after ${lag} ms; up printed its result ${ms} ms after nodes register"
grep -q 'node1' "$T/reg" && grep -q alice "$T/reg" || fail "nodes register output: $(cat "$T/reg")"
ok "admin approval: up finishes (${ms} ms later) as alice"

st=$(in_srv curl -s -o "$T/page" -w '%{http_code}' "$RURL")
[ "$st" = 410 ] && grep -q 'already been used' "$T/page" || fail "used link: $st"
adm nodes register --user alice "$KEY" >"$T/out" 2>&1 && fail "second approval accepted"
grep -q 'already been used' "$T/out" || fail "second approval: $(cat "$T/out")"
st=$(in_srv curl -s -o "$T/page" -w '%{http_code}' "$URL/register/0123456789abcdef0123456789abcdef")
[ "$st" = 404 ] && grep -q 'not valid' "$T/page" || fail "unknown link: $st"
st=$(in_srv curl -s -o "$T/page" -w '%{http_code}' "$URL/register/../../etc/passwd")
[ "$st" = 404 ] || fail "odd link: $st"
grep -q 'msg="register page: link already used" hostname=node1' "$WM_SERVER_LOG" &&
	grep -q 'msg="register page: link expired"' "$WM_SERVER_LOG" &&
	grep -q 'msg="register page: unknown link"' "$WM_SERVER_LOG" || fail "no log line for a refused link"
ok "a register URL works once (410 after), unknown ones 404; each refusal logged"

ip2=$(wm 2 ip -4)
pinged() { wm 1 ping -c 1 "$ip2" | grep -q '^pong from node2'; }
wait_for 20 pinged || fail "node1 cannot ping node2: $(wm 1 status)"
ok "the approved node pings its peer"

# --force-reauth: a new login while the node keeps working.
wm 1 up --force-reauth >"$T/up3" 2>&1 &
UP3=$!
WM_PIDS+=($UP3)
wait_for 10 grep -q '/register/' "$T/up3" || fail "force-reauth: no URL: $(cat "$T/up3")"
wm 1 ping -c 1 "$ip2" | grep -q '^pong from node2' || fail "node stopped working during re-login"
K3=$(grep -o '/register/[0-9a-f]*' "$T/up3"); K3=${K3##*/}
[ "$K3" != "$KEY" ] || fail "force-reauth reused the old key"
id1=$(adm nodes list --json | python3 -c 'import json,sys; print([n["id"] for n in json.load(sys.stdin)["nodes"] if n["name"]=="node1"][0])')
adm nodes register --user alice "$K3" >/dev/null || fail "approve re-login"
wait "$UP3" || fail "force-reauth up: $(cat "$T/up3")"
grep -q '^Success. Logged in as alice.$' "$T/up3" || fail "force-reauth output: $(cat "$T/up3")"
id1b=$(adm nodes list --json | python3 -c 'import json,sys; print([n["id"] for n in json.load(sys.stdin)["nodes"] if n["name"]=="node1"][0])')
[ "$id1" = "$id1b" ] || fail "re-login made a new node ($id1 -> $id1b)"
ok "up --force-reauth logs in again (same node, working meanwhile)"

# logout: the next up logs in again (a new URL), and gets the same node back.
wm 1 logout >"$T/out" 2>&1 || fail "logout: $(cat "$T/out")"
begin_login() { wm 1 up >"$T/up4" 2>&1 & UP4=$!; WM_PIDS+=($UP4); }
begin_login
wait_for 10 grep -q '/register/' "$T/up4" || fail "up after logout: no URL: $(cat "$T/up4")"
K4=$(grep -o '/register/[0-9a-f]*' "$T/up4"); K4=${K4##*/}
adm nodes register --user alice "$K4" >/dev/null || fail "approve after logout"
wait "$UP4" || fail "up after logout: $(cat "$T/up4")"
grep -q '^Success. Logged in as alice.$' "$T/up4" || fail "up after logout: $(cat "$T/up4")"
wait_for 20 pinged || fail "node1 cannot ping node2 after logging in again"
ok "after wiremesh logout, up logs in again with a new URL and the node works"

grep -E "$KEY|$K3|$K4" "$WM_SERVER_LOG" >/dev/null && fail "register key in the server log"
ok "register keys stay out of the log"

# One address minting machine keys cannot lock others out: 64 waiting
# registrations from it, the 65th is 429; another address still gets a URL.
body='{"node_key":"nodekey:1111111111111111111111111111111111111111111111111111111111111111","disco_key":"discokey:2222222222222222222222222222222222222222222222222222222222222222","hostname":"flood","interactive":true}'
# Signed first, then sent by one curl (well inside the 8 s link lifetime).
args=()
for i in $(seq 1 65); do
	hdrs=$("$WM_NODE" --state "$T/flood$i.json" sign /machine/register "$body") || fail "wm-node sign"
	[ "$i" = 1 ] || args+=(--next)
	args+=(-s -o /dev/null -w ' %{http_code}')
	while IFS= read -r h; do args+=(-H "$h"); done <<<"$hdrs"
	args+=(--data-binary "$body" "$URL/machine/register")
done
codes=$(in_srv curl "${args[@]}")
[ "$(tr ' ' '\n' <<<"$codes" | grep -c '^202$')" = 64 ] && [ "${codes##* }" = 429 ] ||
	fail "flood from one address: $codes"
wm 1 up --force-reauth >"$T/up4" 2>&1 &
UP4=$!
WM_PIDS+=($UP4)
wait_for 10 grep -q '/register/' "$T/up4" || fail "another address gets no URL during a flood: $(cat "$T/up4")"
kill -TERM "$UP4" 2>/dev/null; wait "$UP4" 2>/dev/null
ok "64 waiting registrations per address (the 65th: 429); other addresses unaffected"

# Clean exits (under ASan this also checks for leaks).
kill -TERM "$AGENT1"; wait "$AGENT1"; rc=$?
[ "$rc" = 0 ] || fail "wiremeshd exit status $rc on SIGTERM"
kill -TERM "$SERVER_PID"; wait "$SERVER_PID"; rc=$?
[ "$rc" = 0 ] || fail "wiremesh-server exit status $rc on SIGTERM"
ok "agent and server exit cleanly"
