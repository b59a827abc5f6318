#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Unauthenticated clients cannot exhaust the control server (issue 11, items
# 5, 6, 8 and the HTTP parts of 10). The server runs in a network namespace of
# its own, so that clients come from a non-loopback address (loopback, a
# local reverse proxy, is exempt from the per-address limit).
#  - body limits before buffering: 1 GiB declared with Expect: 100-continue
#    gets 413 at once (no 100 Continue); a body growing past the limit gets
#    413 as it does; the admin API's larger limit only with its Bearer key
#    (then 100 Continue); 150 connections sending 1 MB bodies leave the
#    server's peak memory nearly where it was;
#  - per-address limit, request deadline (slowloris), libmicrohttpd's own
#    log lines through ours;
#  - request smuggling (Content-Length with Transfer-Encoding, two
#    Content-Lengths) refused; %00 does not cut a path short; " 1" and +1
#    are not node ids;
#  - /healthz is a trivial query; the integrity check is the admin's.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/netns.sh"

netns_setup
IP=${NETNS_INET_IPS[0]}
PORT=$(free_port)
cat >"$T/config.hujson" <<EOF2
{ "max_connections_per_ip": 20, "request_timeout": "3s" }
EOF2
bootstrap
WM_SERVER_LOG=$T/server.log
in_inet "$SRV" serve --listen "0.0.0.0:$PORT" --db "$T/db.sqlite" --config "$T/config.hujson" \
	>>"$WM_SERVER_LOG" 2>&1 &
SERVER_PID=$!; WM_PIDS+=("$SERVER_PID")
URL=http://127.0.0.1:$PORT
wait_for 10 in_inet curl -sf "$URL/healthz" || fail "server did not become healthy"
"$SRV" users create alice >/dev/null 2>&1 || true

cat >"$T/probe.py" <<'PY'
import os, socket, sys, time
host, port, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]
def conn(src=None):
    s = socket.create_connection((host, port), timeout=10)
    return s
def head(s):
    data = b""
    while b"\r\n\r\n" not in data:
        d = s.recv(4096)
        if not d: break
        data += d
    return data.decode(errors="replace")
if mode == "continue":      # PATH CL [AUTH]: first status line after an Expect head
    path, cl = sys.argv[4], sys.argv[5]
    auth = "Authorization: Bearer %s\r\n" % sys.argv[6] if len(sys.argv) > 6 else ""
    s = conn()
    s.sendall(("POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n%s"
               "Content-Length: %s\r\nExpect: 100-continue\r\n\r\n" % (path, auth, cl)).encode())
    print(head(s).split("\r\n")[0])
elif mode == "chunked":     # a chunked body that never ends: cut off once past the limit
    s = conn()
    s.sendall(b"POST /machine/register HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
    sent = 0
    try:
        while sent < 4 << 20:
            s.sendall(b"1000\r\n" + b"a" * 4096 + b"\r\n")
            sent += 4096
    except OSError:
        pass
    try: h = head(s).split("\r\n")[0]
    except OSError: h = "reset"
    print(h or "closed", sent)
elif mode == "raw":         # HEAD-TEXT (\n -> CRLF): the whole answer's status line and type
    s = conn()
    s.sendall(sys.argv[4].replace("\\n", "\r\n").encode())
    h = head(s)
    ct = [l for l in h.split("\r\n") if l.lower().startswith("content-type:")]
    print(h.split("\r\n")[0], ct[0] if ct else "")
elif mode == "perip":       # N: open N idle connections; how many the server keeps
    n = int(sys.argv[4]); socks = []
    for i in range(n):
        try: socks.append(conn())
        except OSError: pass
    time.sleep(0.5)
    alive = 0
    for s in socks:
        s.setblocking(False)
        try:
            d = s.recv(1)
            if d: alive += 1
        except BlockingIOError:
            alive += 1
        except OSError:
            pass
    print(alive)
elif mode == "slowloris":   # a header byte a second: seconds until the server closes
    s = conn(); t0 = time.time()
    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
    s.settimeout(1)
    while time.time() - t0 < 12:
        try:
            s.sendall(b"X")
            if s.recv(1) == b"": break
        except socket.timeout:
            continue
        except OSError:
            break
    print(int(time.time() - t0))
elif mode == "bulk":        # N connections each posting 1 MB to the node protocol
    n = int(sys.argv[4]); socks = []
    for i in range(n):
        s = conn()
        s.sendall(b"POST /machine/register HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n")
        socks.append(s)
    for s in socks:
        try: s.sendall(b"a" * 900000)
        except OSError: pass
    time.sleep(1)
    for s in socks: s.close()
PY
probe() { in_inet python3 "$T/probe.py" "$@"; }
rss() { sed -n "s/^$1:[[:space:]]*\([0-9]*\) kB/\1/p" "/proc/$SERVER_PID/status"; }

# 1. body limits before buffering, no 100 Continue before auth
out=$(probe 127.0.0.1 "$PORT" continue /machine/register 1073741824)
[ "$out" = "HTTP/1.1 413 Content Too Large" ] || fail "1 GiB with Expect on /machine/register: $out"
out=$(probe 127.0.0.1 "$PORT" continue /api/v1/policy 100000)
[ "${out:9:3}" = 413 ] || fail "100 kB to the admin API without a key: $out"
out=$(probe 127.0.0.1 "$PORT" continue /api/v1/policy 100000 "$WIREMESH_API_KEY")
[ "$out" = "HTTP/1.1 100 Continue" ] || fail "100 kB to the policy API with its key: $out"
out=$(probe 127.0.0.1 "$PORT" chunked)
read -r what sent <<<"$out"
[ "$what" = closed ] || [ "$what" = reset ] || fail "endless chunked body: $out"
[ "$sent" -lt 4194304 ] || fail "the server took an endless chunked body ($sent bytes)"
ok "413 before the body for unauthenticated requests over 8 KiB, 100 Continue only after the Bearer key"

before=$(rss VmHWM)
probe 127.0.0.1 "$PORT" bulk 150 || fail "bulk"
after=$(rss VmHWM)
[ $((after - before)) -lt 40000 ] || fail "150 x 1 MB bodies grew the server's peak memory by $(((after - before) / 1024)) MB"
ok "150 unauthenticated 1 MB bodies: peak memory +$(((after - before) / 1024)) MB"

# 2. per-address limit (20 here); loopback exempt
kept=$(probe "$IP" "$PORT" perip 40)
[ "$kept" = 20 ] || fail "the server kept $kept of 40 connections from one address (limit 20)"
in_inet curl -sf "$URL/healthz" >/dev/null || fail "/healthz while one address is at its limit"
in_inet curl -s "$URL/metrics" | grep -q '^wiremesh_http_refused_total{reason="per_ip"} [1-9]' ||
	fail "per-address refusals not counted"
ok "one address holds at most max_connections_per_ip connections"

# 3. slowloris: the head must arrive within request_timeout (3 s)
secs=$(probe "$IP" "$PORT" slowloris)
[ "$secs" -le 6 ] || fail "a connection sending a header byte a second lived ${secs}s (request_timeout 3s)"
ok "a slow request head is cut off after ${secs}s"

# 4. smuggling, %00, ids, library errors
out=$(probe 127.0.0.1 "$PORT" raw 'POST /machine/register HTTP/1.1\nHost: x\nContent-Length: 4\nTransfer-Encoding: chunked\n\n0\n\n')
[ "$out" = "HTTP/1.1 400 Bad Request Content-Type: application/problem+json" ] || fail "CL+TE: $out"
out=$(probe 127.0.0.1 "$PORT" raw 'POST /machine/register HTTP/1.1\nHost: x\nContent-Length: 2\nContent-Length: 3\n\n{}x')
[ "${out:9:3}" = 400 ] || fail "two Content-Lengths: $out"
node_get() { in_inet curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $WIREMESH_API_KEY" "$URL/api/v1/nodes/$1"; }
[ "$(node_get '1%00')" = 400 ] || fail "/api/v1/nodes/1%00 is not a bad id"
[ "$(node_get '%201')" = 400 ] || fail "' 1' is not a bad id"
[ "$(node_get '+1')" = 400 ] || fail "'+1' is not a bad id"
ok "CL+TE and differing Content-Lengths refused (400 problem+json); %00, ' 1' and +1 are not ids"

# 5. /healthz cheap, integrity check authenticated
in_inet curl -s "$URL/healthz" | grep -q '"status":"ok"' || fail "/healthz"
[ "$(in_inet curl -s -o /dev/null -w '%{http_code}' "$URL/api/v1/integrity")" = 401 ] ||
	fail "integrity check without a key"
in_inet curl -s -H "Authorization: Bearer $WIREMESH_API_KEY" "$URL/api/v1/integrity" |
	grep -q '"integrity":"ok"' || fail "GET /api/v1/integrity"
ok "/healthz is a trivial query; the integrity check needs the admin key"

kill -0 "$SERVER_PID" || fail "server died"
n=$(grep -c 'app=wiremesh-server' "$WM_SERVER_LOG")
[ "$(grep -vc '^ts=' "$WM_SERVER_LOG")" = 0 ] || fail "unstructured lines in the server log: $(grep -v '^ts=' "$WM_SERVER_LOG" | head -3)"
ok "all $n server log lines are ours (libmicrohttpd's go through the logger)"
