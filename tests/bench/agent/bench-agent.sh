#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Time from `wiremesh up` (on both nodes at once) to the first pong and to a
# direct path, in the DESIGN.md namespace topology (tests/integration/netns.sh):
#   easy <-> easy         first pong, and first pong over the direct path
#   easy <-> udp-blocked  first pong (necessarily via DERP)
# Each run starts two fresh agents (new keys, new nodes). Prints p50/p99/max
# over RUNS runs (default 20). Needs root.
#   make bench-agent        or   RUNS=5 tests/bench/agent/bench-agent.sh
WM_TOP=${WM_TOP:-$(cd "$(dirname "$0")/../../.." && pwd)}
. "$WM_TOP/tests/integration/lib.sh"
. "$WM_TOP/tests/integration/netns.sh"
RUNS=${RUNS:-20}

netns_setup
netns_add_node 1 easy
netns_add_node 2 easy
netns_add_node 3 udp-blocked
mesh_ca control.test 203.0.113.1
mesh_start_control
AUTHKEY=$(mesh_authkey alice) || fail "no auth key"

now_ms() { echo $(( $(date +%s%N) / 1000000 )); }

# run A B R: fresh agents on nodes A and B; appends "up first direct" ms to $T/times-A-B
run() {
	local a=$1 b=$2 r=$3 t0 tu tf td=-1 out i
	for i in "$a" "$b"; do rm -rf "$T/n$i"; mesh_start_agent "$i"; done
	t0=$(now_ms)
	wm "$a" up --login-server "$CONTROL_URL" --authkey "$AUTHKEY" --hostname "h$a-$r" >/dev/null 2>&1 &
	local pa=$!
	wm "$b" up --login-server "$CONTROL_URL" --authkey "$AUTHKEY" --hostname "h$b-$r" >/dev/null 2>&1 ||
		fail "up $b"
	wait $pa || fail "up $a"
	tu=$(( $(now_ms) - t0 ))
	while :; do
		out=$(wm "$a" ping -c 1 "h$b-$r" 2>/dev/null) && break
		[ $(( $(now_ms) - t0 )) -lt 20000 ] || fail "no pong within 20 s"
		sleep 0.02
	done
	tf=$(( $(now_ms) - t0 ))
	if [ "$(nat_kind "$b")" = easy ]; then
		while ! echo "$out" | grep -q "via $(wan_ip "$b"):41641"; do
			[ $(( $(now_ms) - t0 )) -lt 20000 ] || fail "no direct path within 20 s"
			sleep 0.02
			out=$(wm "$a" ping -c 1 "h$b-$r" 2>/dev/null) || true
		done
		td=$(( $(now_ms) - t0 ))
	fi
	echo "$tu $tf $td" >>"$T/times-$a-$b"
	for i in "$a" "$b"; do kill -TERM "${AGENT_PID[$i]}"; wait "${AGENT_PID[$i]}" 2>/dev/null; done
}

stats() {	# FILE LABEL
	python3 - "$1" "$2" <<'PY'
import sys
rows = [list(map(int, l.split())) for l in open(sys.argv[1])]
def pct(v, p):
    v = sorted(v); return v[min(len(v) - 1, int(round(p / 100 * (len(v) - 1))))]
for col, name in ((0, "up returned"), (1, "first pong"), (2, "direct path")):
    v = [r[col] for r in rows if r[col] >= 0]
    if v:
        print("bench-agent: %s %s runs=%d p50_ms=%d p99_ms=%d max_ms=%d"
              % (sys.argv[2], name.replace(" ", "_"), len(v), pct(v, 50), pct(v, 99), max(v)))
PY
}

for r in $(seq "$RUNS"); do run 1 2 "$r"; done
stats "$T/times-1-2" "easy<->easy"
for r in $(seq "$RUNS"); do run 1 3 "$r"; done
stats "$T/times-1-3" "easy<->udp-blocked"
