#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Slow readers never stall anyone (the 5,000-node stall, scaled down): N
# nodes that all see each other open their map streams at once with version
# 0, and the client reads at most 256 of them at a time: a stream gets a
# reader slot only when one frees, and keeps it until its first full map is
# complete; the others are not read at all meanwhile. Every node coming
# online and reporting endpoints overflows the unread streams' queues (8
# messages here). Every stream must end current (peer table equal to the
# server's view, every flag online) with one full map each (a stream that
# fell behind resumes by version), no version going down, the server
# healthy.
. "$(dirname "$0")/lib.sh"

N=${WM_SLOW_NODES:-600}
bootstrap
WIREMESH_STREAM_QUEUE_MAX=8 start_server
"$SRV" users create u1 >/dev/null || fail "users create"
mkdir "$T/ctl"
echo "u1 $("$SRV" preauthkeys create --user u1 --reusable)" >"$T/ctl/authkeys" || fail "preauthkeys"
python3 "$(dirname "$0")/meshclient.py" "$PORT" "$T/ctl" slow nodes="$N" readers=256 >"$T/client.log" 2>&1 ||
	fail "slow readers: $(tail -n 3 "$T/client.log")"
ok "$(tail -n 1 "$T/client.log")"
col=$(curl -s "$URL/metrics" | sed -n 's/^wiremesh_map_queue_collapses_total //p')
[ "${col:-0}" -gt 0 ] || fail "no stream fell behind: the scenario did not overflow a queue"
ok "server: $col times a stream fell behind and resumed by version (one full map per stream); /healthz $(curl -s -o /dev/null -w '%{http_code}' "$URL/healthz")"
kill -0 "$SERVER_PID" || fail "server died"
stop_server
! grep -l 'Sanitizer\|runtime error:' "$T"/*.log 2>/dev/null || fail "sanitizer report: $(grep -h -A5 'Sanitizer\|runtime error:' "$T"/*.log | head -20)"
