#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Agents fail over between replicas: two wiremesh-server replicas on one
# PostgreSQL (a real server started by this test) in the internet namespace,
# two agents in namespaces logged in with `--login-server URL1,URL2`. Kill -9
# the replica they use: both move to the other and resume there by version
# (no full map), and the tunnel between them never stops (ping every 100 ms,
# no gap over 1 s). A third agent, given only the first URL, learns the
# second from the map ("control_urls") and moves there too, and after a
# restart reconnects through it while the first is still down. A fourth,
# enrolled interactively through the first replica, is approved through
# the second (the registrations waiting for a person are shared).
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/netns.sh"
for b in wiremeshd wiremesh wiremesh-server; do
	[ -x "$WM_BIN/$b" ] || skip "missing $WM_BIN/$b (make binaries)"
done
[ -c /dev/net/tun ] || skip "no /dev/net/tun"

pg_start
# the replicas reach PostgreSQL through its socket directory (no network
# between the namespaces and the host's loopback)
port=${PG_URL##*:}; port=${port%%/*}
DBURL="host=$PG_DIR port=$port dbname=wiremesh user=wiremesh"

fail() {
	echo "FAIL: $*" >&2
	for f in "$T"/n*/agent.log "$T"/control*.log; do
		[ -f "$f" ] && { echo "--- $f" >&2; grep -v 'level=debug' "$f" | tail -n 15 >&2; }
	done
	exit 1
}

netns_setup
netns_add_node 1 none
netns_add_node 2 none
netns_add_node 3 none
mesh_ca control.test 203.0.113.1 203.0.113.3
WIREMESH_API_KEY=$("$WM_BIN/wiremesh-server" apikeys create --db "$DBURL") || fail "apikeys create"
export WIREMESH_API_KEY
# metrics go to loopback clients only: each replica on a port of its own
WIREMESH_METRICS_LISTEN=127.0.0.1:9091 mesh_start_control --db "$DBURL" --server-url https://203.0.113.1
R1=$CONTROL_PID
mv "$T/control.log" "$T/control1.log"
WIREMESH_METRICS_LISTEN=127.0.0.1:9092 CONTROL_IP=203.0.113.3 CONTROL_URL=https://203.0.113.3 \
	mesh_start_control --db "$DBURL" --server-url https://203.0.113.3 \
	--derp-hostname control2.test
R2=$CONTROL_PID
mv "$T/control.log" "$T/control2.log"
URLS=https://203.0.113.1,https://203.0.113.3
AUTHKEY=$(mesh_authkey alice) || fail "no auth key"
for i in 1 2; do
	mesh_start_agent "$i"
	wm "$i" up --login-server "$URLS" --authkey "$AUTHKEY" --hostname "node$i" >"$T/up$i" 2>&1 ||
		{ cat "$T/up$i"; fail "node $i: up failed"; }
done
mesh_start_agent 3
wm 3 up --login-server https://203.0.113.1 --authkey "$AUTHKEY" --hostname node3 >"$T/up3" 2>&1 ||
	{ cat "$T/up3"; fail "node 3: up failed"; }
IP2=$(wm 2 ip -4) || fail "no address for node 2"
wait_for 15 in_node 1 ping -c 1 -W 1 "$IP2" || fail "no tunnel between the nodes"
streams() { in_inet curl -sf "http://127.0.0.1:909$1/metrics" | sed -n "s/^$2 //p"; }
[ "$(streams 1 wiremesh_map_streams)" = 3 ] || fail "the agents are not on the first URL (streams: $(streams 1 wiremesh_map_streams))"
ok "two agents up with --login-server listing two replicas, on the first"
known() { wm 3 status --json | python3 -c 'import json,sys; c=json.load(sys.stdin)["control"]; print(" ".join(c.get("known_urls", [])), c.get("url_in_use"))'; }
[ "$(known)" = "https://203.0.113.1 https://203.0.113.3 https://203.0.113.1" ] ||
	fail "node 3 did not learn the second replica from the map: $(known)"
grep -q '"control_urls":\["https://203.0.113.1","https://203.0.113.3"\]' "$T/n3/state/prefs.json" ||
	fail "node 3 did not save the learned URLs: $(cat "$T/n3/state/prefs.json")"
ok "an agent given one URL learns the other replica from the map and saves it"

# A registration waiting for a person is every replica's: node 4 runs `up`
# without an auth key through the first replica (which holds its
# long-poll); the second lists it and an admin approves it there; the
# waiting `up` finishes; the first then refuses the used key.
netns_add_node 4 none
mesh_start_agent 4
wm 4 up --login-server https://203.0.113.1 --hostname node4 >"$T/up4" 2>&1 &
up4=$!; WM_PIDS+=("$up4")
wait_for 10 grep -q '/register/' "$T/up4" || fail "node 4: no register URL: $(cat "$T/up4")"
KEY=$(grep -o 'https://203.0.113.1/register/[0-9a-f]*' "$T/up4") || fail "node 4: register URL not on the first replica: $(cat "$T/up4")"
KEY=${KEY##*/}
CONTROL_URL=https://203.0.113.3 srv nodes pending >"$T/pending" || fail "nodes pending on the second replica"
grep -q "^$KEY  *node4 " "$T/pending" || fail "the second replica does not list the registration begun on the first: $(cat "$T/pending")"
CONTROL_URL=https://203.0.113.3 srv nodes register --user alice "$KEY" >"$T/reg4" 2>&1 ||
	fail "approval through the second replica: $(cat "$T/reg4")"
wait "$up4" || fail "node 4: the waiting up failed: $(cat "$T/up4")"
grep -q 'Success' "$T/up4" || fail "node 4: $(cat "$T/up4")"
! CONTROL_URL=https://203.0.113.1 srv nodes register --user alice "$KEY" >"$T/reg4b" 2>&1 ||
	fail "the first replica approved the key a second time"
grep -q 'already been used' "$T/reg4b" || fail "second approval: $(cat "$T/reg4b")"
[ -z "$(CONTROL_URL=https://203.0.113.1 srv nodes pending --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["pending"] or "")')" ] ||
	fail "the first replica still lists the approved registration"
ok "a registration begun on one replica is listed and approved on the other; the waiting up finishes; a second approval is refused"
# node 4 leaves, so that the failover below counts the three agents
kill -TERM "${AGENT_PID[4]}"; wait "${AGENT_PID[4]}" 2>/dev/null
three() { [ "$(streams 1 wiremesh_map_streams)" = 3 ]; }
wait_for 10 three || fail "node 4's stream did not end (streams: $(streams 1 wiremesh_map_streams))"

ip netns exec "$(node_ns 1)" ping -D -i 0.1 -W 1 -w 60 "$IP2" >"$T/ping" 2>&1 &
pp=$!; WM_PIDS+=("$pp")
sleep 1	# the ping's own start; it runs through what follows
resumes0=$(streams 2 wiremesh_map_resumes_total)
kill -9 "$R1"
on_second() { [ "$(streams 2 wiremesh_map_streams)" = 3 ]; }
wait_for 30 on_second || fail "the agents did not move to the second replica (node 3: $(known))"
resumes=$(streams 2 wiremesh_map_resumes_total)
[ $(( resumes - resumes0 )) -ge 3 ] || fail "the agents did not resume by version on the second replica (resumes $resumes0 -> $resumes)"
[ "$(streams 2 wiremesh_map_full_total)" = 0 ] || fail "the second replica sent full maps: $(streams 2 wiremesh_map_full_total)"
sleep 2
kill -INT "$pp"; wait "$pp" 2>/dev/null
gap=$(awk -F'[][]' '/bytes from/ { t = $2 + 0; if (p && t - p > g) g = t - p; p = t } END { printf "%.3f", g }' "$T/ping")
n=$(grep -c 'bytes from' "$T/ping")
[ "$n" -ge 20 ] || fail "only $n pings answered"
awk -v g="$gap" 'BEGIN { exit !(g < 1.0) }' || fail "the tunnel stopped for ${gap} s"
[ "$(known)" = "https://203.0.113.1 https://203.0.113.3 https://203.0.113.3" ] || fail "node 3 is not on the learned replica: $(known)"
ok "kill -9 of the replica: all three agents (one by the learned URL) moved to the other and resumed by version; $n pings, longest gap ${gap} s"

CONTROL_URL=https://203.0.113.3 srv nodes list | grep -q node1 || fail "the surviving replica does not list node 1"
ok "the surviving replica serves the network"

# node 3 restarted while its one --login-server URL is dead: it reconnects
# through the replica it learned (kept in prefs.json).
kill -TERM "${AGENT_PID[3]}"; wait "${AGENT_PID[3]}" 2>/dev/null
rm -f "$T/n3/sock"
mesh_start_agent 3
back3() { wm 3 status --json | python3 -c 'import json,sys; c=json.load(sys.stdin)["control"]; sys.exit(not (c["connected"] and c.get("url_in_use") == "https://203.0.113.3"))'; }
wait_for 20 back3 || fail "restarted node 3 did not reconnect through the learned replica: $(known)"
wait_for 10 in_node 3 ping -c 1 -W 1 "$IP2" || fail "no tunnel from the restarted node 3"
ok "restarted while its only --login-server URL is down, an agent reconnects through the replica it learned"
! grep -l 'Sanitizer\|runtime error:' "$T"/n*/agent.log "$T"/control*.log 2>/dev/null ||
	fail "sanitizer report: $(grep -h -A5 'Sanitizer\|runtime error:' "$T"/n*/agent.log "$T"/control*.log | head -20)"
