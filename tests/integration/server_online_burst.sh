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
python3 - "$PORT" "$T/slow.hdrs" "$T/go" "$T/slow.out" "${ids[*]}" <<'PY' &
import json, os, socket, sys, time
port, hdrs, go, out = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
want = {int(x) for x in sys.argv[5].split()}
body = b'{"version":0}'
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, 536)
s.connect(("127.0.0.1", port))
req = b"POST /machine/map HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
req += b"Content-Length: %d\r\n" % len(body)
for line in open(hdrs, "rb"):
    req += line.rstrip(b"\n") + b"\r\n"
s.sendall(req + b"\r\n" + body)
open(out + ".sent", "w").close()
deadline = time.time() + 120
while not os.path.exists(go) and time.time() < deadline:
    time.sleep(0.05)
def messages(raw):
    body = raw.partition(b"\r\n\r\n")[2]
    text = b""
    while body:
        size, sep, body = body.partition(b"\r\n")
        if not sep or not size or len(body) < int(size, 16):
            break
        n = int(size, 16)
        if n == 0:
            break
        text += body[:n]
        body = body[n + 2:]
    return [json.loads(l) for l in text.split(b"\n")[:-1] if l]
def online_view(msgs):
    on = {}
    for m in msgs:
        if m["type"] == "full":
            on = {p["id"]: p["online"] for p in m["peers"]}
        elif "online" in m:
            on[m["online"]["id"]] = m["online"]["online"]
    return on
s.settimeout(30)
data = b""
try:
    while True:
        d = s.recv(1 << 16)
        if not d:
            break
        data += d
        on = online_view(messages(data))
        if all(on.get(i) for i in want):
            break
except socket.timeout:
    pass
open(out, "wb").write(data)
PY
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
python3 - "$T/slow.out" "${ids[*]}" <<'PY' || fail "slow stream: $(head -c 300 "$T/slow.out")"
import json, sys
raw = open(sys.argv[1], "rb").read()
want = {int(x) for x in sys.argv[2].split()}
body = raw.partition(b"\r\n\r\n")[2]
text = b""
while body:
    size, sep, body = body.partition(b"\r\n")
    if not sep or not size:
        break
    n = int(size, 16)
    if n == 0:
        break
    text += body[:n]
    body = body[n + 2:]
msgs = [json.loads(l) for l in text.split(b"\n")[:-1] if l]
fulls = sum(m["type"] == "full" for m in msgs)
assert fulls == 1, "full maps: %d" % fulls
on = {}
for m in msgs:
    if m["type"] == "full":
        on = {p["id"]: p["online"] for p in m["peers"]}
    elif "online" in m:
        on[m["online"]["id"]] = m["online"]["online"]
missing = [i for i in want if not on.get(i)]
assert not missing, "not online in the stream: %s" % missing
versions = [m["version"] for m in msgs]
assert versions == sorted(versions), "versions went backwards"
PY
collapses=$(curl -s "$URL/metrics" | sed -n 's/^wiremesh_map_queue_collapses_total //p')
[ "${collapses:-x}" = 0 ] || fail "queues collapsed: ${collapses:-none}"
ok "$K nodes online at once past a stalled queue of 8: one full map, every flag current, no collapse"
