#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# A node away while policy changes add and remove its peers resumes by
# version with deltas only (docs/protocol.md, "Versions and resume"):
# peer_removed for the peer it lost, peer_added for the one it gained, its
# new filter, then the keepalive; no full map, no version at or below the
# one it asked for, never a peer it may not see. The table it ends with is
# exactly the one a fresh full map gives (peers and filter). Then the same
# across a server restart (the change log on disk). All on SQLite, then on
# PostgreSQL (a real server started by this test).
. "$(dirname "$0")/lib.sh"

# A server this script has waited for leaves the cleanup list (its PID may
# be reused).
stop() {
	local i
	stop_server
	for i in "${!WM_PIDS[@]}"; do [ "${WM_PIDS[$i]}" != "$SERVER_PID" ] || unset "WM_PIDS[$i]"; done
}

scenario() {
local BK=$1
rm -f "$T"/*.json "$T"/*.reg "$T"/full.* "$T"/resume.*
bootstrap
start_server
"$SRV" users create alice >/dev/null && "$SRV" users create bob >/dev/null || fail "users"
AKA=$("$SRV" preauthkeys create --user alice --reusable) || fail "key alice"
AKB=$("$SRV" preauthkeys create --user bob --reusable) || fail "key bob"
ip4() { grep -o '"ipv4":"[^"]*"' "$T/$1.reg" | cut -d'"' -f4; }
node a register --authkey "$AKA" --hostname alpha >"$T/a.reg" || fail "register a"
node b register --authkey "$AKA" --hostname beta >"$T/b.reg" || fail "register b"
node c register --authkey "$AKB" --hostname gamma >"$T/c.reg" || fail "register c"

put_policy() {
	local st
	st=$(curl -s -o "$T/resp" -w '%{http_code}' -X PUT -H "Authorization: Bearer $WIREMESH_API_KEY" \
		-H 'Content-Type: application/hujson' --data-binary "@$1" "$URL/api/v1/policy")
	[ "$st" = 200 ] || fail "PUT $1: $st $(cat "$T/resp")"
}
# P1: alice's nodes see each other (alpha: beta); bob's nobody.
cat >"$T/p1" <<'P'
{"acls": [{"action": "accept", "src": ["alice@"], "dst": ["alice@:*"]}]}
P
# P2: alpha reaches gamma's port 22 only (alpha: gamma; beta: nobody).
cat >"$T/p2" <<P
{"hosts": {"alpha": "$(ip4 a)/32", "gamma": "$(ip4 c)/32"},
 "acls": [{"action": "accept", "src": ["alpha"], "dst": ["gamma:22"]}]}
P

# full_of NODE: its peer names and filter from a fresh full map ("a,b|FILTER").
full_of() {
	node "$1" map --lines 1 >"$T/full.$1" 2>/dev/null || return 1
	python3 - "$T/full.$1" <<'PY'
import json, sys
m = json.loads(open(sys.argv[1]).readline())
assert m["type"] == "full", m["type"]
print(",".join(sorted(p["name"] for p in m["peers"])) + "|" + json.dumps(m["filter"], sort_keys=True))
PY
}
# resume NODE SINCE START_PEERS: reads the stream resumed from SINCE up to
# its keepalive, checks it, applies it to START_PEERS ("id=name,..."), and
# prints "names|FILTER|VERSION" (the filter only when one was sent).
resume() {
	local f=$T/resume.$1.$2 pid
	node "$1" map --since "$2" >"$f" 2>/dev/null &
	pid=$!; WM_PIDS+=("$pid")
	wait_for 10 grep -q '"type":"keepalive"' "$f" || fail "no keepalive after resuming $1 from $2: $(head -c 300 "$f")"
	kill "$pid"; wait "$pid" 2>/dev/null
	python3 - "$f" "$2" "$3" <<'PY'
import json, sys
since, peers = int(sys.argv[2]), {}
for kv in filter(None, sys.argv[3].split(",")):
    k, v = kv.split("=")
    peers[int(k)] = v
filt, last = None, since
for line in open(sys.argv[1]):
    m = json.loads(line)
    assert m["type"] != "full", "a full map on resume"
    assert m["version"] >= last, "version went down: %d after %d" % (m["version"], last)
    last = m["version"]
    if m["type"] == "keepalive":
        break
    assert m["version"] > since, "a delta at or below the version asked for"
    for k in ("peer_added", "peer_changed"):
        if k in m:
            peers[m[k]["id"]] = m[k]["name"]
    if "peer_removed" in m:
        peers.pop(m["peer_removed"], None)
    if "filter" in m:
        filt = m["filter"]
print(",".join(sorted(peers.values())) + "|" + (json.dumps(filt, sort_keys=True) if filt is not None else "-")
      + "|" + str(last))
PY
}
id_of() { grep -o '"id":[0-9]*' "$T/$1.reg" | head -n 1 | cut -d: -f2; }
ver_of() { python3 -c 'import json,sys; print(json.loads(open(sys.argv[1]).readline())["version"])' "$1"; }

peers_of() { [ "$(full_of "$1" | cut -d'|' -f1)" = "$2" ]; }
put_policy "$T/p1"
wait_for 10 peers_of a beta || fail "alpha under p1: $(full_of a)"
V=$(ver_of "$T/full.a")
ok "$BK: under p1 alpha sees beta (version $V); alpha goes away"

# Away: p2 takes beta from alpha and gives it gamma; wait until it is in force.
put_policy "$T/p2"
wait_for 10 peers_of c alpha || fail "p2 not in force: gamma's map $(full_of c)"
full_before=$(curl -s "$URL/metrics" | sed -n 's/^wiremesh_map_full_total //p')
got=$(resume a "$V" "$(id_of b)=beta") || fail "resume a"
want=$(full_of a)
[ "${got%|*}" = "$want" ] || fail "alpha resumed to '${got%|*}', a full map says '$want'"
grep -q "\"peer_removed\":$(id_of b)" "$T/resume.a.$V" || fail "no peer_removed for beta"
grep -q '"peer_added":{"id":'"$(id_of c)," "$T/resume.a.$V" || fail "no peer_added for gamma"
full_after=$(curl -s "$URL/metrics" | sed -n 's/^wiremesh_map_full_total //p')
[ $((full_after - full_before)) = 1 ] || fail "full maps $full_before -> $full_after (only the check's own)"
ok "$BK: alpha resumed across p2 with deltas only: ${got%|*}"
V2=${got##*|}
if [ "$BK" = PostgreSQL ]; then
	pg_sql "SELECT payload FROM changes WHERE kind = 4 ORDER BY version DESC LIMIT 1" |
		grep -q "\"vis\":\[\[$(id_of a),-$(id_of b),$(id_of c)\]" ||
		fail "the policy change's row has no vis list for alpha: $(pg_sql 'SELECT payload FROM changes WHERE kind = 4 ORDER BY version DESC LIMIT 1' | head -c 300)"
fi

# Across a restart: back to p1 (beta again, not gamma), server restarted.
put_policy "$T/p1"
wait_for 10 peers_of b alpha || fail "p1 not in force: beta's map $(full_of b)"
stop
start_server
got=$(resume a "$V2" "$(id_of c)=gamma") || fail "resume a after restart"
full_restart=$(curl -s "$URL/metrics" | sed -n 's/^wiremesh_map_full_total //p')
[ "$full_restart" = 0 ] || fail "the restarted server sent $full_restart full maps"
want=$(full_of a)
[ "${got%|*}" = "$want" ] || fail "after restart alpha resumed to '${got%|*}', a full map says '$want'"
case "$want" in beta\|*) ;; *) fail "alpha under p1 again: $want" ;; esac
! grep -q '"name":"gamma"' "$T/resume.a.$V2" || fail "gamma's record sent to alpha after it became invisible"
ok "$BK: after a restart alpha resumed across p1 with deltas only: ${got%%|*}"

kill -0 "$SERVER_PID" || fail "server died"
stop
}

scenario SQLite
pg_start
DB=$PG_URL
unset PORT
scenario PostgreSQL
! grep -l 'Sanitizer\|runtime error:' "$T"/*.log 2>/dev/null || fail "sanitizer report: $(grep -h -A5 'Sanitizer\|runtime error:' "$T"/*.log | head -20)"
