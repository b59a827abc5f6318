#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Map streams survive a server restart: 1,000 nodes (50 users whose nodes
# see only each other, autogroup:self) hold their streams while the server
# is killed (SIGKILL) and started again on the same SQLite file. Every
# client reconnects with the last version it processed and gets deltas
# only: no full map, no version lower than one it had, no peer it may not
# see, and every node's peer table equals the server's view (names, node
# keys, endpoints, online flags) after changes made since. Then one node
# away for 200 changes of its peers comes back by version, with deltas.
# The client (meshclient.py) is written from docs/protocol.md alone.
. "$(dirname "$0")/lib.sh"

N=${WM_RESUME_NODES:-1000}
USERS=50
bootstrap
start_server
printf '{"acls":[{"action":"accept","src":["autogroup:member"],"dst":["autogroup:self:*"]}]}' >"$T/policy.hujson"
expect_status 200 "$(api PUT /api/v1/policy "$(cat "$T/policy.hujson")")"
: >"$T/authkeys"
for u in $(seq 1 $USERS); do
	"$SRV" users create "u$u" >/dev/null || fail "users create u$u"
	echo "u$u $("$SRV" preauthkeys create --user "u$u" --reusable)" >>"$T/authkeys" || fail "preauthkeys u$u"
done
mkdir "$T/ctl" && mv "$T/authkeys" "$T/ctl/"
python3 "$(dirname "$0")/meshclient.py" "$PORT" "$T/ctl" restart nodes="$N" changes=100 >"$T/client.log" 2>&1 &
cpid=$!; WM_PIDS+=("$cpid")
wait_for 80 test -e "$T/ctl/ready" || fail "clients not ready: $(tail -n 3 "$T/client.log")"
ok "$(sed -n 2p "$T/client.log")"

v_before=$(curl -s "$URL/metrics" | sed -n 's/^wiremesh_map_version //p')
kill -9 "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null
start_server
touch "$T/ctl/restarted"
wait "$cpid" || fail "clients: $(tail -n 3 "$T/client.log")"
ok "$(grep 'streams back' "$T/client.log")"
ok "$(grep 'after restart:' "$T/client.log")"
ok "$(grep 'away for 200' "$T/client.log")"
full=$(curl -s "$URL/metrics" | sed -n 's/^wiremesh_map_full_total //p')
[ "${full:-x}" = 0 ] || fail "the restarted server sent $full full maps"
v_after=$(curl -s "$URL/metrics" | sed -n 's/^wiremesh_map_version //p')
[ -n "$v_before" ] && [ "$v_after" -gt "$v_before" ] || fail "version $v_before -> $v_after"
ok "the restarted server sent no full map; its version went on from $v_before to $v_after"
kill -0 "$SERVER_PID" || fail "server died"
stop_server
! grep -l 'Sanitizer\|runtime error:' "$T"/*.log 2>/dev/null || fail "sanitizer report: $(grep -h -A5 'Sanitizer\|runtime error:' "$T"/*.log | head -20)"
