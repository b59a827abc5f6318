# SPDX-License-Identifier: MIT
"""Many nodes in one process: a map-stream client written from docs/protocol.md.

Each simulated node has its own Ed25519 machine key, registers, reports
endpoints and holds a map stream (asyncio, one socket each). It applies the
stream as the protocol says (full, deltas, online_flags), reconnects with
the last version it processed, and counts what the tests check: full maps
per connection, versions that went down, peer ids it was sent that it may
not see. `check` compares every node's peer table with the server's own
view (GET /api/v1/nodes): names, node keys, endpoints and online flags.

    python3 meshclient.py PORT CTL_DIR SCENARIO [options]

Scenarios (see the test scripts that use them):
    restart   enrol, hold every stream, wait for CTL/restarted (the test
              restarts the server), make changes, check: no full map after
              the restart, no version going down, every table exact; then
              one node away for 200 changes resumes with deltas only.
    slow      enrol with version 0 streams read at most --readers at a time
              (the rest are not read at all until a reader slot frees), while
              every node comes online; every stream must end current.
The admin API key comes from WIREMESH_API_KEY; auth keys from CTL/authkeys
("USER KEY" lines); visibility: nodes of one user see each other only.
"""
import asyncio
import hashlib
import json
import os
import random
import secrets
import sys
import time

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

HOST = "127.0.0.1"


class Node:
    def __init__(self, name, user, authkey):
        self.sk = Ed25519PrivateKey.generate()
        self.mkey = "mkey:" + self.sk.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw).hex()
        self.nodekey = "nodekey:" + secrets.token_hex(32)
        self.discokey = "discokey:" + secrets.token_hex(32)
        self.name, self.user, self.authkey = name, user, authkey
        self.id = None
        self.version = 0
        self.peers = {}
        self.self = None
        self.fulls = 0          # full maps received, all connections
        self.conn_fulls = 0     # on the current connection
        self.regressions = 0
        self.msgs = 0
        self.conn_msgs = 0
        self.bytes = 0
        self.conns = 0
        self.connected = False
        self.ids_seen = set()   # every node id the stream named
        self.stop = False
        self.task = None
        self.errors = 0

    def headers(self, path, body):
        ts = str(int(time.time()))
        nonce = secrets.token_hex(16)
        msg = b"\n".join([b"wiremesh-v1", b"POST", path.encode(), ts.encode(), nonce.encode(),
                          hashlib.sha256(body).hexdigest().encode()])
        return {"Wiremesh-Machine": self.mkey, "Wiremesh-Timestamp": ts,
                "Wiremesh-Nonce": nonce, "Wiremesh-Signature": self.sk.sign(msg).hex()}

    def apply(self, m):
        v = m["version"]
        if v < self.version:
            self.regressions += 1
        t = m["type"]
        if t == "full":
            self.fulls += 1
            self.conn_fulls += 1
            self.self = m["self"]
            self.peers = {p["id"]: p for p in m["peers"]}
            self.ids_seen.update(self.peers)
        elif t == "delta":
            for k in ("peer_added", "peer_changed"):
                if k in m:
                    p = m[k]
                    self.peers[p["id"]] = p
                    self.ids_seen.add(p["id"])
            if "peer_removed" in m:
                self.peers.pop(m["peer_removed"], None)
                self.ids_seen.add(m["peer_removed"])
            if "online_flags" in m:
                for on in ("on", "off"):
                    for i in m["online_flags"][on]:
                        self.ids_seen.add(i)
                        if i in self.peers:
                            self.peers[i]["online"] = on == "on"
            if "online" in m:
                o = m["online"]
                self.ids_seen.add(o["id"])
                if o["id"] in self.peers:
                    self.peers[o["id"]]["online"] = o["online"]
            if "self" in m:
                self.self = m["self"]
        self.version = v
        self.msgs += 1
        self.conn_msgs += 1


async def request(node, path, obj, port, api=False, method="POST"):
    """One request on its own connection: (status, parsed JSON or None)."""
    body = b"" if obj is None else json.dumps(obj).encode()
    if api:
        hdrs = {"Authorization": "Bearer " + os.environ["WIREMESH_API_KEY"]}
    else:
        hdrs = node.headers(path, body)
    r, w = await asyncio.open_connection(HOST, port)
    head = "%s %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\nContent-Type: application/json\r\n" \
        "Content-Length: %d\r\n" % (method, path, HOST, len(body))
    head += "".join("%s: %s\r\n" % kv for kv in hdrs.items()) + "\r\n"
    w.write(head.encode() + body)
    await w.drain()
    data = await r.read()
    w.close()
    hdr, _, rest = data.partition(b"\r\n\r\n")
    status = int(hdr.split(b" ", 2)[1])
    if b"transfer-encoding: chunked" in hdr.lower():
        out = b""
        while rest:
            size, _, rest = rest.partition(b"\r\n")
            n = int(size, 16)
            if n == 0:
                break
            out += rest[:n]
            rest = rest[n + 2:]
        rest = out
    try:
        return status, json.loads(rest) if rest else None
    except ValueError:
        return status, None


async def register(node, port):
    for attempt in range(20):
        st, b = await request(node, "/machine/register", {
            "auth_key": node.authkey, "node_key": node.nodekey, "disco_key": node.discokey,
            "hostname": node.name}, port)
        if st in (200, 201):
            node.id = b["node"]["id"]
            return
        if st in (429, 500, 503):
            await asyncio.sleep(0.1 * (attempt + 1))
            continue
        raise SystemExit("register %s: %d %s" % (node.name, st, b))
    raise SystemExit("register %s: gave up" % node.name)


async def endpoints(node, port, i):
    body = {"endpoints": ["192.0.2.%d:%d" % (i % 250 + 1, 40000 + i % 20000)], "home_derp": 1}
    for attempt in range(20):
        st, b = await request(node, "/machine/endpoints", body, port)
        if st == 200:
            return
        if st in (429, 500, 503):
            await asyncio.sleep(0.1 * (attempt + 1))
            continue
        raise SystemExit("endpoints %s: %d %s" % (node.name, st, b))


async def stream(node, port, gate=None, report=None):
    """Holds the node's map stream; reconnects with the last version."""
    while not node.stop:
        w = None
        try:
            r, w = await asyncio.open_connection(HOST, port, limit=1 << 24)
            body = json.dumps({"version": node.version}).encode()
            head = "POST /machine/map HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n" \
                "Content-Length: %d\r\n" % (HOST, len(body))
            head += "".join("%s: %s\r\n" % kv for kv in node.headers("/machine/map", body).items())
            w.write(head.encode() + b"\r\n" + body)
            await w.drain()
            status = await r.readline()
            while (await r.readline()) not in (b"\r\n", b""):
                pass
            if b" 200 " not in status:
                node.errors += 1
                raise ConnectionError(status)
            node.conns += 1
            node.conn_fulls = node.conn_msgs = 0
            node.connected = True
            buf = b""
            slot = False
            if gate is not None and node.conns == 1:
                # a slot from the start of the stream to the end of its
                # first full map: the other streams are not read at all
                await gate.acquire()
                slot = True
            while not node.stop:
                if slot and node.conn_fulls > 0:
                    gate.release()
                    slot = False
                    if report is not None:
                        # like an agent: endpoints once it has its map
                        asyncio.ensure_future(endpoints(node, port, report))
                line = await r.readline()
                if not line:
                    break
                n = int(line.strip(), 16)
                if n == 0:
                    break
                data = await r.readexactly(n + 2)
                node.bytes += n
                buf += data[:n]
                while b"\n" in buf:
                    one, _, buf = buf.partition(b"\n")
                    node.apply(json.loads(one))
        except (OSError, ConnectionError, asyncio.IncompleteReadError, ValueError):
            pass
        if gate is not None and 'slot' in locals() and slot:
            gate.release()
            slot = False
        node.connected = False
        if w is not None:
            w.close()
        if not node.stop:
            await asyncio.sleep(0.2 + random.random() * 0.3)


async def server_view(port):
    st, b = await request(None, "/api/v1/nodes", None, port, api=True, method="GET")
    if st != 200:
        raise ConnectionError("GET /api/v1/nodes: %d" % st)
    return {n["id"]: n for n in b["nodes"]}


def mismatches(nodes, view):
    """Nodes whose peer table differs from the server's view, with why."""
    bad = []
    for nd in nodes:
        if nd.id not in view:
            continue
        want = {i: n for i, n in view.items() if n["user"] == nd.user and i != nd.id}
        if set(nd.peers) != set(want):
            bad.append("%s: peers %s, want %s" % (nd.name, sorted(nd.peers)[:8], sorted(want)[:8]))
            continue
        for i, p in nd.peers.items():
            w = want[i]
            for k in ("name", "node_key", "endpoints", "online"):
                if p.get(k) != w.get(k):
                    bad.append("%s: peer %d %s=%r, want %r" % (nd.name, i, k, p.get(k), w.get(k)))
                    break
    return bad


async def converge(nodes, port, deadline_s, what):
    end = time.monotonic() + deadline_s
    bad = ["not checked"]
    while time.monotonic() < end:
        try:
            bad = mismatches(nodes, await server_view(port))
        except (OSError, ConnectionError):
            bad = ["server not answering"]
        if not bad:
            return
        await asyncio.sleep(0.5)
    raise SystemExit("%s: %d tables differ, e.g. %s" % (what, len(bad), bad[:3]))


def invisible(nodes, view_users):
    """Peer ids a node was sent that belong to another user."""
    out = []
    for nd in nodes:
        for i in nd.ids_seen:
            if i != nd.id and view_users.get(i, nd.user) != nd.user:
                out.append((nd.name, i))
    return out


async def wait_file(path, timeout):
    end = time.monotonic() + timeout
    while not os.path.exists(path):
        if time.monotonic() > end:
            raise SystemExit("timed out waiting for " + path)
        await asyncio.sleep(0.05)


async def enrol(port, ctl, n, par=48):
    keys = [l.split() for l in open(os.path.join(ctl, "authkeys")) if l.strip()]
    nodes = [Node("n%d" % i, keys[i % len(keys)][0], keys[i % len(keys)][1]) for i in range(n)]
    sem = asyncio.Semaphore(par)

    async def one(i, nd):
        async with sem:
            await register(nd, port)
            await endpoints(nd, port, i)
    await asyncio.gather(*(one(i, nd) for i, nd in enumerate(nodes)))
    return nodes


def say(msg):
    print(msg, flush=True)


async def restart_scenario(port, ctl, n, changes):
    t0 = time.monotonic()
    nodes = await enrol(port, ctl, n)
    say("enrolled %d nodes in %.1f s" % (n, time.monotonic() - t0))
    for nd in nodes:
        nd.task = asyncio.ensure_future(stream(nd, port))
    await converge(nodes, port, 60, "before the restart")
    users = {nd.id: nd.user for nd in nodes}
    fulls0 = {nd.name: nd.fulls for nd in nodes}
    v0 = max(nd.version for nd in nodes)
    say("%d streams current at version %d in %.1f s" % (n, v0, time.monotonic() - t0))
    conns0 = {nd.name: nd.conns for nd in nodes}
    open(os.path.join(ctl, "ready"), "w").close()
    await wait_file(os.path.join(ctl, "restarted"), 60)
    t1 = time.monotonic()
    # every stream back (a new connection after the restart)
    end = time.monotonic() + 60
    while any(nd.conns == conns0[nd.name] or not nd.connected for nd in nodes):
        if time.monotonic() > end:
            raise SystemExit("streams not back: %d" % sum(not nd.connected for nd in nodes))
        await asyncio.sleep(0.1)
    say("all %d streams back %.1f s after the restart" % (n, time.monotonic() - t1))
    # changes after the restart: endpoints of some nodes
    picks = random.sample(nodes, min(changes, len(nodes)))
    await asyncio.gather(*(endpoints(nd, port, 7000 + i) for i, nd in enumerate(picks)))
    await converge(nodes, port, 60, "after the restart")
    fulls = sum(nd.fulls - fulls0[nd.name] for nd in nodes)
    regr = sum(nd.regressions for nd in nodes)
    inv = invisible(nodes, users)
    vmin = min(nd.version for nd in nodes)
    say("after restart: full_maps=%d version_regressions=%d invisible_ids=%d versions %d..%d "
        "(before %d)" % (fulls, regr, len(inv), vmin, max(nd.version for nd in nodes), v0))
    if fulls or regr or inv or vmin < v0:
        raise SystemExit("restart: full maps %d, regressions %d, invisible %s, min version %d < %d"
                         % (fulls, regr, inv[:3], vmin, v0))
    # one node away for 200 changes of its peers, then back by version
    away = nodes[0]
    same = [nd for nd in nodes if nd.user == away.user and nd is not away]
    away.stop = True
    away.task.cancel()
    await asyncio.sleep(0.1)
    away.connected = False
    vaway = away.version
    for i in range(200):
        await endpoints(same[i % len(same)], port, 20000 + i)
    away.stop = False
    fulls_a, msgs_a = away.fulls, away.msgs
    away.task = asyncio.ensure_future(stream(away, port))
    await converge([away], port, 30, "after 200 changes away")
    got = away.msgs - msgs_a
    say("away for 200 changes from version %d: %d messages, %d full maps, table exact"
        % (vaway, got, away.fulls - fulls_a))
    if away.fulls != fulls_a or got == 0:
        raise SystemExit("away: full maps %d, messages %d" % (away.fulls - fulls_a, got))
    for nd in nodes:
        nd.stop = True
        nd.task.cancel()


async def slow_scenario(port, ctl, n, readers):
    t0 = time.monotonic()
    nodes = await enrol(port, ctl, n)
    say("enrolled %d nodes in %.1f s" % (n, time.monotonic() - t0))
    gate = asyncio.Semaphore(readers)
    for nd in nodes:
        nd.task = asyncio.ensure_future(stream(nd, port, gate, 30000 + int(nd.name[1:])))
    await converge(nodes, port, 80, "slow readers")
    regr = sum(nd.regressions for nd in nodes)
    fulls = sum(nd.fulls for nd in nodes)
    say("%d streams read %d at a time all current in %.1f s: full_maps=%d regressions=%d "
        "reconnects=%d" % (n, readers, time.monotonic() - t0, fulls, regr,
                           sum(nd.conns - 1 for nd in nodes)))
    if regr:
        raise SystemExit("versions went down %d times" % regr)
    if fulls != n:
        # a stream that fell behind comes back by version, not by a new map
        raise SystemExit("%d full maps for %d streams" % (fulls, n))
    for nd in nodes:
        nd.stop = True
        nd.task.cancel()


def main(argv):
    port, ctl, scen = int(argv[1]), argv[2], argv[3]
    opts = dict(a.split("=", 1) for a in argv[4:])
    n = int(opts.get("nodes", "1000"))
    if scen == "restart":
        coro = restart_scenario(port, ctl, n, int(opts.get("changes", "100")))
    elif scen == "slow":
        coro = slow_scenario(port, ctl, n, int(opts.get("readers", "256")))
    else:
        raise SystemExit("unknown scenario " + scen)
    asyncio.run(coro)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
