#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Many nodes coming online at once (a server restart, a network coming
# back) send every stream an online delta each. With a queue of 8 messages,
# a stream whose client is not reading must not collapse to a second full
# map for that: the online deltas that do not fit are dropped and the
# current online flag of every peer follows once the queue drains. The
# slow stream ends with all 20 newcomers online, one full map, and the
# server counts no collapse.
. "$(dirname "$0")/lib.sh"

K=20
bootstrap
WIREMESH_STREAM_QUEUE_MAX=8 start_server
"$SRV" users create alice >/dev/null || fail "users create"
AK=$("$SRV" preauthkeys create --user alice --reusable) || fail "preauthkeys"
node slow register --authkey "$AK" --hostname slow >/dev/null || fail "register slow"
# 150 fillers with 16 long endpoints each make the slow stream's first full
# map about 200 kB: more than the kernel buffers, so the stream is still
# inside it (not reading) when the newcomers come online.
pad=$(for j in $(seq 1 16); do printf ',[2001:db8:%x:aaaa:bbbb:cccc:dddd:%x]:%d' "$j" "$j" $((41000 + j)); done)
for i in $(seq 1 150); do
	node "f$i" register --authkey "$AK" --hostname "f$i" >/dev/null || fail "register f$i"
	node "f$i" endpoints "${pad#,}" >/dev/null || fail "endpoints f$i"
done
ids=()
for i in $(seq 1 "$K"); do
	node "n$i" register --authkey "$AK" --hostname "n$i" >"$T/n$i.reg" || fail "register n$i"
	ids+=("$(sed -E 's/.*"id":([0-9]+).*/\1/' "$T/n$i.reg")")
done

# The slow reader: a signed map request on a socket with a 1 KiB receive
# buffer and a small MSS; it reads nothing until $T/go exists, then reads
# until every newcomer is online in its view of the stream.
"$WM_NODE" --state "$T/slow.json" sign /machine/map '{"version":0}' >"$T/slow.hdrs" || fail "sign"
ids_csv=$(IFS=,; echo "${ids[*]}")
python3 "$(dirname "$0")/slow_map_reader.py" "$PORT" "$T/slow.hdrs" "$T/go" "$T/slow.out" \
	--until-online "$ids_csv" &
slowpid=$!; WM_PIDS+=("$slowpid")
wait_for 10 test -e "$T/slow.out.sent" || fail "slow reader did not connect"

# The newcomers come online while the slow stream is not being read.
for i in $(seq 1 "$K"); do
	"$WM_NODE" --server "$URL" --state "$T/n$i.json" map >/dev/null 2>&1 & WM_PIDS+=($!)
done
online_count() { [ "$(api GET /api/v1/nodes | grep -o '"online":true' | wc -l)" -ge "$((K + 1))" ]; }
wait_for 30 online_count || fail "newcomers not online"
touch "$T/go"
wait "$slowpid" || true
python3 - "$(dirname "$0")" "$T/slow.out" "$ids_csv" <<'PY' || fail "slow stream: $(head -c 300 "$T/slow.out")"
import sys
sys.path.insert(0, sys.argv[1])
from slow_map_reader import messages, online_view
msgs = messages(open(sys.argv[2], "rb").read())
want = {int(x) for x in sys.argv[3].split(",")}
fulls = sum(m["type"] == "full" for m in msgs)
assert fulls == 1, "full maps: %d" % fulls
on = online_view(msgs)
missing = [i for i in want if not on.get(i)]
assert not missing, "not online in the stream: %s" % missing
versions = [m["version"] for m in msgs]
assert versions == sorted(versions), "versions went backwards"
PY
collapses=$(curl -s "$URL/metrics" | sed -n 's/^wiremesh_map_queue_collapses_total //p')
[ "${collapses:-x}" = 0 ] || fail "queues collapsed: ${collapses:-none}"
ok "$K nodes online at once past a stalled queue of 8: one full map, every flag current, no collapse"
