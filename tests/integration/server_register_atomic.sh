#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# A refused registration writes nothing: five machines presenting another
# machine's node key get 409, and afterwards the address pool, the nodes,
# the single-use auth key they presented and the map version are exactly as
# before (the next node gets the next address, the key still enrols).
. "$(dirname "$0")/lib.sh"

bootstrap
start_server
"$SRV" users create alice >/dev/null || fail "users create"
AK=$("$SRV" preauthkeys create --user alice --reusable) || fail "preauthkeys"
ONCE=$("$SRV" preauthkeys create --user alice) || fail "single-use key"
node a register --authkey "$AK" --hostname a >"$T/a.reg" || fail "register a"
grep -q '"ipv4":"100.64.0.1"' "$T/a.reg" || fail "a: $(cat "$T/a.reg")"
metric() { curl -s "$URL/metrics" | sed -n "s/^$1 //p"; }
v0=$(metric wiremesh_map_version)
n0=$(api GET /api/v1/nodes | grep -o '"id":' | wc -l)
for i in 1 2 3 4 5; do
	# machine m$i: a key pair of its own, but a's node key
	node "m$i" rotate >/dev/null 2>&1 || true
	python3 - "$T/a.json" "$T/m$i.json" <<'PY' || fail "state m$i"
import json, sys
a = json.load(open(sys.argv[1]))
m = json.load(open(sys.argv[2])) if open(sys.argv[2]).read().strip() else {}
for k in ("node_private", "node_public"):
    m[k] = a[k]
json.dump(m, open(sys.argv[2], "w"))
PY
	out=$(node "m$i" register --authkey "$ONCE" --hostname "m$i" 2>&1)
	echo "$out" | grep -q '409' || fail "m$i: want 409, got: $out"
	echo "$out" | grep -q 'already registered to another machine' || fail "m$i: detail: $out"
done
[ "$(metric wiremesh_map_version)" = "$v0" ] || fail "a refused registration changed the map version"
[ "$(api GET /api/v1/nodes | grep -o '"id":' | wc -l)" = "$n0" ] || fail "node count changed"
node b register --authkey "$ONCE" --hostname b >"$T/b.reg" || fail "the single-use key was spent by a refused registration: $(cat "$T/b.reg")"
grep -q '"ipv4":"100.64.0.2"' "$T/b.reg" || fail "the pool moved: b got $(grep -o '"ipv4":"[^"]*"' "$T/b.reg") (want 100.64.0.2)"
grep -q '"ipv6":"fd7a:115c:a1e0::2"' "$T/b.reg" || fail "the v6 pool moved: $(grep -o '"ipv6":"[^"]*"' "$T/b.reg")"
ok "five 409s (node key of another machine) wrote nothing: next node got 100.64.0.2, the single-use key still enrolled it, version unchanged"
