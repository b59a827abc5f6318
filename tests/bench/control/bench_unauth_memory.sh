#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# What unauthenticated request bodies cost the control server: 500
# connections each declare a 1 MiB body to /machine/register and send 1 MB of
# it, then close. Prints the server's RSS before, its peak, and its RSS 12 s
# after they closed. Usage: WM_BIN=$PWD/bin bash tests/bench/control/bench_unauth_memory.sh
. "$(dirname "$0")/../../integration/lib.sh"
N=${BENCH_CONNS:-500}
bootstrap
start_server
python3 - "$PORT" "$SERVER_PID" "$N" <<'PY'
import socket, sys, time
port, pid, n = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
def st(k):
    for l in open("/proc/%s/status" % pid):
        if l.startswith(k): return int(l.split()[1]) // 1024
r0 = st("VmRSS"); socks = []
for i in range(n):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"POST /machine/register HTTP/1.1\r\nHost: x\r\nContent-Length: 1048576\r\n\r\n")
    socks.append(s)
for s in socks:
    try: s.sendall(b"a" * 1000000)
    except OSError: pass
time.sleep(1)
peak = st("VmHWM")
for s in socks: s.close()
time.sleep(12)
print("bench-unauth-memory conns=%d rss_before_mb=%d peak_mb=%d rss_after_close_mb=%d" % (n, r0, peak, st("VmRSS")))
PY
