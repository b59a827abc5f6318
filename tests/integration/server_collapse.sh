#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# A slow map reader never blocks anyone: with a queue of 8 messages, a
# stream whose client stops reading (tiny receive buffer) drops its queue
# and resumes by version while a burst of endpoint updates goes on. The
# updates all succeed, another node's stream stays current, and once the
# slow client reads again its stream ends in the current state (the last
# endpoints) with no second full map and no version going back.
. "$(dirname "$0")/lib.sh"

reaped() {
	local p i
	for p in "$@"; do
		for i in "${!WM_PIDS[@]}"; do [ "${WM_PIDS[$i]}" != "$p" ] || unset "WM_PIDS[$i]"; done
	done
}

N=${WM_COLLAPSE_UPDATES:-300}
bootstrap
WIREMESH_STREAM_QUEUE_MAX=8 WIREMESH_KEEPALIVE_INTERVAL=1s start_server
"$SRV" users create alice >/dev/null || fail "users create"
AK=$("$SRV" preauthkeys create --user alice --reusable) || fail "preauthkeys"
for n in slow fast mover; do node "$n" register --authkey "$AK" --hostname "$n" >/dev/null || fail "register $n"; done

# The slow reader: sends a signed map request on a socket with a 1 KiB
# receive buffer and a small MSS, reads nothing until $T/go exists, then
# reads until the last update has arrived.
"$WM_NODE" --state "$T/slow.json" sign /machine/map '{"version":0}' >"$T/slow.hdrs" || fail "sign"
last="192.0.2.$((N % 250 + 1)):$((40000 + N))"
python3 "$(dirname "$0")/slow_map_reader.py" "$PORT" "$T/slow.hdrs" "$T/go" "$T/slow.out" \
	--until-text "\"$last\"" &
slowpid=$!; WM_PIDS+=("$slowpid")
wait_for 10 test -e "$T/slow.out.sent" || fail "slow reader did not connect"
node fast map >"$T/fast.out" 2>/dev/null &
fastpid=$!; WM_PIDS+=("$fastpid")
wait_for 5 grep -q '"type":"full"' "$T/fast.out" || fail "fast reader got no map"

# The burst: N endpoint updates signed in advance, then sent back to back
# on one connection, so the stalled socket fills faster than the kernel
# grows its buffers.
pad=$(for j in $(seq 1 15); do printf ',"[2001:db8:%x:aaaa:bbbb:cccc:dddd:%x]:%d"' "$j" "$j" $((41000 + j)); done)
for i in $(seq 1 "$N"); do
	b="{\"endpoints\":[\"192.0.2.$((i % 250 + 1)):$((40000 + i))\"$pad],\"home_derp\":1}"
	"$WM_NODE" --state "$T/mover.json" sign /machine/endpoints "$b" || fail "sign $i"
	printf 'BODY %s\n' "$b"
done >"$T/burst"
start=$(date +%s%N)
python3 - "$PORT" "$T/burst" <<'PY' || fail "endpoint burst"
import http.client, sys
c = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]), timeout=30)
hdrs = {}
for line in open(sys.argv[2]):
    line = line.rstrip("\n")
    if line.startswith("BODY "):
        hdrs["Content-Type"] = "application/json"
        c.request("POST", "/machine/endpoints", body=line[5:].encode(), headers=hdrs)
        r = c.getresponse()
        r.read()
        if r.status != 200:
            sys.exit("update answered %d" % r.status)
        hdrs = {}
    else:
        k, _, v = line.partition(": ")
        hdrs[k] = v
PY
took=$(( ($(date +%s%N) - start) / 1000000 ))
collapses=$(curl -s "$URL/metrics" | sed -n 's/^wiremesh_map_queue_collapses_total //p')
[ "${collapses:-0}" -gt 0 ] || fail "no queue collapsed (collapses=${collapses:-none})"
ok "$N endpoint updates in ${took} ms while a stream was stalled; $collapses collapses"

# replay FILE RAW: replays a stream (RAW=1: a raw chunked HTTP response) and
# checks it: starts with a full map, versions never go back, ends with the
# mover's last endpoints. Prints "MESSAGES FULLS".
cat >"$T/replay.py" <<'PY'
import json, sys
raw = open(sys.argv[1], "rb").read().decode()
if sys.argv[2] == "1":
    head, _, rest = raw.partition("\r\n\r\n")
    assert head.startswith("HTTP/1.1 200"), head[:100]
    raw = ""
    while rest:
        size, _, rest = rest.partition("\r\n")
        n = int(size, 16)
        if n == 0:
            break
        raw += rest[:n]
        rest = rest[n + 2:]
lines = raw.split("\n")
msgs = [json.loads(l) for l in lines[:-1] if l]  # the last one is "" or cut off
fulls = [i for i, m in enumerate(msgs) if m["type"] == "full"]
assert fulls and fulls[0] == 0, "the stream did not start with a full map"
versions = [m["version"] for m in msgs]
assert versions == sorted(versions), "versions went backwards"
peers = {}
for m in msgs:
    if m["type"] == "full":
        peers = {p["name"]: p for p in m["peers"]}
    elif m["type"] == "delta":
        for k in ("peer_added", "peer_changed"):
            if k in m:
                peers[m[k]["name"]] = m[k]
eps = peers["mover"]["endpoints"]
assert eps[0] == sys.argv[3] and len(eps) == 16, "mover's endpoints %s, want %s first" % (eps[:2], sys.argv[3])
print(len(msgs), len(fulls))
PY
fast_current() { python3 "$T/replay.py" "$T/fast.out" 0 "$last" >/dev/null 2>&1; }
wait_for 10 fast_current || fail "the reading stream is not current: $(python3 "$T/replay.py" "$T/fast.out" 0 "$last" 2>&1 | tail -n 1)"
ok "a stream that keeps reading ends current"

touch "$T/go"
wait "$slowpid"; reaped "$slowpid"
res=$(python3 "$T/replay.py" "$T/slow.out" 1 "$last" 2>&1) || fail "stalled stream: $(echo "$res" | tail -n 1)"
read -r msgs fulls <<<"$res"
[ "$fulls" -eq 1 ] || fail "the stalled stream got $fulls full maps ($msgs messages); want 1"
ok "the stalled stream resumed by version: $msgs messages, one full map, ends current"

kill -0 "$SERVER_PID" || fail "server died"
stop_server; reaped "$SERVER_PID"
! grep -l 'Sanitizer\|runtime error:' "$T"/*.log 2>/dev/null || fail "sanitizer report: $(grep -h -A5 'Sanitizer\|runtime error:' "$T"/*.log | head -20)"
