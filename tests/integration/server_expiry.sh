#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Expiry is enforced by time and is a revocation (issue 11, items 2 and 3).
# With node_expiry 6s and keepalives every 2s: when node A's key expires with
# nothing else happening, within one keepalive interval its map stream gets
# its "self" message (expired) and ends, its relay connection is closed, and
# its peer B gets peer_changed with "expired": true. A then cannot come back
# with the single-use key it used (nor can a deleted or logged-out node);
# a new valid key brings it back unexpired.
. "$(dirname "$0")/lib.sh"

D=$WM_BIN/wiremesh-derper
[ -x "$D" ] || fail "no $D"
cat >"$T/config.hujson" <<EOF2
{ "node_expiry": "6s", "keepalive_interval": "2s", "derp": true }
EOF2
bootstrap
start_server --config "$T/config.hujson"
"$SRV" users create alice >/dev/null || fail "users create"
single() { "$SRV" preauthkeys create --user alice; }
K1=$(single) || fail "preauthkeys create"
node a register --authkey "$K1" --hostname alpha >"$T/a.reg" || fail "register a"
ida=$(sed -E 's/.*"node":\{"id":([0-9]+),.*/\1/' "$T/a.reg")
exp_a=$(sed -E 's/.*"expires_at":([0-9]+).*/\1/' "$T/a.reg")
# B registers at least 3 s later, so it expires well after A.
later() { [ "$(date +%s)" -ge $((exp_a - 3)) ]; }
wait_for 10 later || fail "clock"
node b register --authkey "$(single)" --hostname beta >/dev/null || fail "register b"

"$WM_NODE" --server "$URL" --state "$T/a.json" map >"$T/a.map" 2>&1 &
apid=$!; WM_PIDS+=("$apid")
"$WM_NODE" --server "$URL" --state "$T/b.json" map >"$T/b.map" 2>&1 &
bpid=$!; WM_PIDS+=("$bpid")
wait_for 5 grep -q '"peers":\[{' "$T/b.map" || fail "B's map has no peer: $(head -c 300 "$T/b.map")"
# A's node key holds a relay connection.
ka=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["node_private"])' "$T/a.json")
"$D" debug client --host 127.0.0.1 --dial 127.0.0.1 --port "$PORT" --plain --key "$ka" \
	--recv 1 --timeout 30 >"$T/a.derp" 2>&1 &
dpid=$!; WM_PIDS+=("$dpid")
wait_for 5 grep -q '^connected' "$T/a.derp" || fail "A did not connect to the relay: $(cat "$T/a.derp")"
metric() { curl -s "$URL/metrics" | sed -n "s/^$1 //p"; }
[ "$(metric wiremesh_derp_clients)" = 1 ] || fail "relay counts $(metric wiremesh_derp_clients) clients"

# Nothing happens now but time. A's stream must end on its own.
ended() { ! kill -0 "$apid" 2>/dev/null; }
wait_for 12 ended || fail "A's map stream still open $(( $(date +%s) - exp_a ))s after its expiry"
end_at=$(date +%s)
[ $((end_at - exp_a)) -le 3 ] || fail "A's stream ended $((end_at - exp_a))s after expiry (keepalive 2s)"
grep -v '"type":"keepalive"' "$T/a.map" | tail -1 | grep -q '"self":{.*"expired":true' ||
	fail "A's last message is not its expired self: $(tail -2 "$T/a.map" | head -c 600)"
ok "A's map stream got its expired self message and ended $((end_at - exp_a))s after expiry"
peer_expired() { grep -q "\"peer_changed\":{\"id\":$ida,.*\"expired\":true" "$T/b.map"; }
wait_for 2 peer_expired || fail "B got no peer_changed with A expired: $(tail -3 "$T/b.map" | head -c 600)"
ok "B got peer_changed for A with expired: true"
zero() { [ "$(metric wiremesh_derp_clients)" = 0 ]; }
wait_for 2 zero || fail "A's relay connection still open"
ok "A's relay connection closed"
kill -0 "$bpid" || fail "B's stream ended (B is not expired)"

# Revocation: the spent single-use key does not bring A back.
out=$(node a register --authkey "$K1" --hostname alpha 2>&1) && fail "A re-registered with its spent key: $out"
node a endpoints 192.0.2.1:41641 >/dev/null 2>&1 && fail "expired A may still post endpoints"
node a register --authkey "$(single)" --hostname alpha >"$T/a2.reg" || fail "A with a new key"
grep -q '"expired":false' "$T/a2.reg" || fail "A not renewed: $(cat "$T/a2.reg")"
ok "expired A needs a new auth key; with one it is back"

# Logged out or deleted: the same.
K3=$(single); node c register --authkey "$K3" --hostname gamma >"$T/c.reg" || fail "register c"
node c logout >/dev/null || fail "logout"
node c register --authkey "$K3" --hostname gamma >/dev/null 2>&1 && fail "logged-out C re-registered with its spent key"
idc=$(sed -E 's/.*"node":\{"id":([0-9]+),.*/\1/' "$T/c.reg")
"$SRV" nodes delete --force "$idc" >/dev/null || fail "delete c"
node c register --authkey "$K3" --hostname gamma >/dev/null 2>&1 && fail "deleted C re-registered with its spent key"
ok "logged-out or deleted nodes need a new auth key too"
