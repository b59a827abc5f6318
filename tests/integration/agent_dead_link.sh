#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The agent's side of a dead link: a map stream whose packets vanish (no
# FIN, no reset: nftables drops the node's TCP, as when the server's host
# is gone or a path blackholes) is given up after three keepalive intervals
# as the agent measured them, not after TCP's minutes. The server sends a
# keepalive every second here: the agent shows the measured interval in
# `status --json` (control.keepalive_ms), gives the stream up within
# 5 s (three intervals, at least 5 s) of the cut plus one, says why, and
# reconnects once the path is back.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/netns.sh"
for b in wiremeshd wiremesh wiremesh-server; do
	[ -x "$WM_BIN/$b" ] || skip "missing $WM_BIN/$b (make binaries)"
done
[ -c /dev/net/tun ] || skip "no /dev/net/tun"

fail() {
	echo "FAIL: $*" >&2
	for f in "$T"/n1/agent.log "$T"/control.log; do
		[ -f "$f" ] && { echo "--- $f" >&2; grep -v 'level=debug' "$f" | tail -n 15 >&2; }
	done
	exit 1
}

netns_setup
netns_add_node 1 none
mesh_ca control.test 203.0.113.1
WIREMESH_KEEPALIVE_INTERVAL=1s mesh_start_control
AUTHKEY=$(mesh_authkey alice) || fail "no auth key"
mesh_start_agent 1
wm 1 up --login-server "$CONTROL_URL" --authkey "$AUTHKEY" --hostname node1 >"$T/up" 2>&1 ||
	fail "up: $(cat "$T/up")"
ka() { wm 1 status --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["control"].get("keepalive_ms", 0))'; }
measured() { [ "$(ka)" -gt 0 ]; }
wait_for 10 measured || fail "the agent did not measure the keepalive interval"
k=$(ka)
[ "$k" -ge 900 ] && [ "$k" -le 1500 ] || fail "measured keepalive interval ${k} ms, the server sends one every 1000 ms"
ok "the agent measures the server's keepalive interval: ${k} ms (status --json control.keepalive_ms)"

# The cut: the node's TCP dropped both ways, nothing sent back.
in_node 1 nft -f - <<'NFT' || fail "nft"
table inet wmcut {
	chain in { type filter hook input priority 0; policy accept; meta l4proto tcp drop; }
	chain out { type filter hook output priority 0; policy accept; meta l4proto tcp drop; }
}
NFT
t0=$(date +%s%N)
silent() { grep -q 'msg="map stream ended; retrying" why="the map stream from https://203.0.113.1 was silent for 5 s' "$T/n1/agent.log"; }
wait_for 15 silent || fail "the agent did not give the silent stream up"
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
[ "$ms" -le 8000 ] || fail "the silent stream was given up ${ms} ms after the cut; the bound is 5 s after the last message (1 s before the cut at most) and the 1 s the check takes, with 2 s to spare"
disconnected() { wm 1 status --json | python3 -c 'import json,sys; sys.exit(json.load(sys.stdin)["control"]["connected"])'; }
disconnected || fail "status still says connected"
ok "a map stream whose packets vanish is given up ${ms} ms after the cut (three intervals, at least 5 s) and status says so"

in_node 1 nft delete table inet wmcut || fail "nft delete"
back() { [ "$(grep -c 'msg="control connected"' "$T/n1/agent.log")" -ge 2 ]; }
wait_for 20 back || fail "the agent did not reconnect once the path was back"
connected() { wm 1 status --json | python3 -c 'import json,sys; sys.exit(not json.load(sys.stdin)["control"]["connected"])'; }
wait_for 5 connected || fail "status does not say connected"
! grep -l 'Sanitizer\|runtime error:' "$T"/n1/agent.log "$T"/control.log 2>/dev/null ||
	fail "sanitizer report: $(grep -h -A5 'Sanitizer\|runtime error:' "$T"/n1/agent.log "$T"/control.log | head -20)"
ok "with the path back the agent reconnects"
