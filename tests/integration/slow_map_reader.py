# SPDX-License-Identifier: MIT
"""A map-stream client that stops reading: for the queue tests.

    python3 slow_map_reader.py PORT HDRS GO OUT --until-text STR
    python3 slow_map_reader.py PORT HDRS GO OUT --until-online ID,ID,...

Sends a signed POST /machine/map (headers from `wm-node sign`, file HDRS) on
a socket with a 1 KiB receive buffer and a small MSS, creates OUT.sent, reads
nothing until the file GO exists, then reads until the stream holds a
complete line containing STR, or until every listed peer is online in its
view of the stream (or 60 s pass). The raw HTTP response goes to OUT.
The helpers below also serve the tests' checks of OUT (import this file).
"""
import json
import os
import socket
import sys
import time


def dechunk(raw):
    """The body of a chunked HTTP response, complete chunks only."""
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
    return text


def messages(raw):
    """The complete newline-delimited JSON messages of a raw response."""
    return [json.loads(l) for l in dechunk(raw).split(b"\n")[:-1] if l]


def online_view(msgs):
    """Peer id -> online flag after replaying full maps and online deltas."""
    on = {}
    for m in msgs:
        if m["type"] == "full":
            on = {p["id"]: p["online"] for p in m["peers"]}
        elif "online_flags" in m:
            for i in m["online_flags"]["on"]:
                on[i] = True
            for i in m["online_flags"]["off"]:
                on[i] = False
    return on


def main(argv):
    port, hdrs, go, out, mode, arg = int(argv[1]), argv[2], argv[3], argv[4], argv[5], argv[6]
    if mode == "--until-text":
        last = arg.encode()

        def done(data):
            text = dechunk(data)
            i = text.rfind(last)
            return i >= 0 and text.find(b"\n", i) >= 0
    elif mode == "--until-online":
        want = {int(x) for x in arg.split(",") if x}

        def done(data):
            on = online_view(messages(data))
            return all(on.get(i) for i in want)
    else:
        sys.exit("usage: slow_map_reader.py PORT HDRS GO OUT --until-text S | --until-online IDS")
    body = b'{"version":0}'
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
    # a small MSS keeps the server's send buffer small too (on loopback the
    # MSS is 64 KiB and the kernel would buffer megabytes)
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
    s.settimeout(60)
    data = b""
    try:
        while True:
            d = s.recv(1 << 16)
            if not d:
                break
            data += d
            if done(data):
                break
    except socket.timeout:
        pass
    open(out, "wb").write(data)


if __name__ == "__main__":
    main(sys.argv)
