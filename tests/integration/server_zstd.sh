#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Compressed map streams: a node that sends Accept-Encoding: zstd gets
# Content-Encoding: zstd, and the decoded stream is the same as the plain
# one (full map, deltas, resume), in a fraction of the bytes on the wire
# (the server's wiremesh_map_bytes_sent_total, per stream). The reference
# client decodes with libcurl's zstd support, as the agent does.
. "$(dirname "$0")/lib.sh"

N=${WM_ZSTD_NODES:-200}
bootstrap
start_server
"$SRV" users create alice >/dev/null || fail "users create"
AK=$("$SRV" preauthkeys create --user alice --reusable) || fail "preauthkeys"
for i in $(seq 1 "$N"); do
	node "n$i" register --authkey "$AK" --hostname "n$i" >/dev/null || fail "register n$i"
	node "n$i" endpoints "192.0.2.$((i % 250 + 1)):$((40000 + i)),[2001:db8::$i]:41641" --home-derp 1 >/dev/null ||
		fail "endpoints n$i"
done
sent() { curl -s "$URL/metrics" | sed -n 's/^wiremesh_map_bytes_sent_total //p'; }
# n1 stays online meanwhile (a stream of its own), so that nothing changes
# between the two maps compared below
node n1 map >/dev/null 2>&1 & WM_PIDS+=($!)
online1() { api GET /api/v1/nodes/1 | grep -q '"online":true'; }
wait_for 10 online1 || fail "n1 not online"
b0=$(sent)
node n1 map --lines 1 >"$T/plain" 2>/dev/null || fail "plain map"
b1=$(sent)
node n1 map --lines 1 --zstd >"$T/z" 2>/dev/null || fail "zstd map"
b2=$(sent)
cmp -s "$T/plain" "$T/z" || fail "the decoded zstd full map differs from the plain one"
plain=$((b1 - b0)); z=$((b2 - b1))
[ "$z" -gt 0 ] && [ $((z * 3)) -lt "$plain" ] || fail "full map: $z bytes with zstd, $plain plain"
ok "full map of $N peers: $plain bytes plain, $z with zstd (decoded identical)"

# Content-Encoding on the wire, and a client that does not ask gets none
"$WM_NODE" --state "$T/n1.json" sign /machine/map '{"version":0}' >"$T/h" || fail sign
hdrs=(); while read -r l; do hdrs+=(-H "$l"); done <"$T/h"
curl -s -m 2 -o /dev/null -D "$T/zh" "${hdrs[@]}" -H 'Accept-Encoding: gzip, zstd' -H 'Content-Type: application/json' \
	--data-binary '{"version":0}' "$URL/machine/map"
grep -qi '^Content-Encoding: zstd' "$T/zh" || fail "no Content-Encoding: zstd: $(cat "$T/zh")"
"$WM_NODE" --state "$T/n1.json" sign /machine/map '{"version":0}' >"$T/h" || fail sign
hdrs=(); while read -r l; do hdrs+=(-H "$l"); done <"$T/h"
curl -s -m 2 -o /dev/null -D "$T/ph" "${hdrs[@]}" -H 'Accept-Encoding: zstd;q=0, gzip' -H 'Content-Type: application/json' \
	--data-binary '{"version":0}' "$URL/machine/map"
! grep -qi '^Content-Encoding' "$T/ph" || fail "zstd sent though refused (q=0): $(cat "$T/ph")"
ok "Content-Encoding: zstd only when asked (zstd;q=0 refuses it)"

# deltas and a resume, compressed, decode to what the plain stream says
V=$(python3 -c 'import json,sys; print(json.loads(open(sys.argv[1]).readline())["version"])' "$T/plain")
node n1 map --zstd --lines 3 >"$T/zlive" 2>/dev/null & zp=$!; WM_PIDS+=("$zp")
node n1 map --lines 3 >"$T/plive" 2>/dev/null & pp=$!; WM_PIDS+=("$pp")
wait_for 10 grep -q '"type":"full"' "$T/zlive" || fail "zstd stream"
wait_for 10 grep -q '"type":"full"' "$T/plive" || fail "plain stream"
node n2 endpoints 198.51.100.7:41641 >/dev/null || fail "endpoints"
node n3 endpoints 198.51.100.8:41641 >/dev/null || fail "endpoints"
wait "$zp"; wait "$pp"
cmp -s <(tail -n 2 "$T/zlive") <(tail -n 2 "$T/plive") || fail "live deltas differ: $(tail -n 2 "$T/zlive" | cut -c1-200)"
node n1 map --since "$V" --lines 3 >"$T/pres" 2>/dev/null || fail "resume"
node n1 map --since "$V" --zstd --lines 3 >"$T/zres" 2>/dev/null || fail "zstd resume"
cmp -s "$T/pres" "$T/zres" || fail "resumes differ"
grep -q '198.51.100.8:41641' "$T/zres" || fail "zstd resume lacks the change: $(cut -c1-200 "$T/zres")"
ok "live deltas and a resume by version decode identically with zstd"
kill -0 "$SERVER_PID" || fail "server died"
stop_server
! grep -l 'Sanitizer\|runtime error:' "$T"/*.log 2>/dev/null || fail "sanitizer report: $(grep -h -A5 'Sanitizer\|runtime error:' "$T"/*.log | head -20)"
