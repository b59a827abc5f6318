#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The replay cache cannot be filled without credentials (issue 11, item 4).
# A request signed by a machine the server does not know never enters it (the
# same bytes sent twice get the same "not registered" answer, not "replay");
# nor does a registration with a bad auth key. A known node's replayed request
# is still refused. Entries are bounded per machine: a node that floats past
# its share (512 live signatures) gets 429 on its own requests while other
# nodes carry on. Also: a disco key of another machine is refused (409), and
# a node holds at most 8 map streams (the 9th gets 429).
. "$(dirname "$0")/lib.sh"

bootstrap
start_server
"$SRV" users create alice >/dev/null || fail "users create"
AK=$("$SRV" preauthkeys create --user alice --reusable) || fail "preauthkeys create"

# send NAME PATH BODY: signs once into $T/NAME.hdr, sends; prints "STATUS DETAIL"
sign() { "$WM_NODE" --state "$T/$1.json" sign "$2" "$3" >"$T/$1.hdr"; }
send() {
	local args=() h
	while IFS= read -r h; do args+=(-H "$h"); done <"$T/$1.hdr"
	curl -s -o "$T/resp" -w '%{http_code}' -X POST "${args[@]}" -H 'Content-Type: application/json' \
		--data-binary "$3" "$URL$2"
	echo " $(python3 -c 'import json,sys; print(json.load(open(sys.argv[1])).get("detail",""))' "$T/resp")"
}

# 1. an unknown machine, the same signed request twice
sign x /machine/map '{"version":0}'
a=$(send x /machine/map '{"version":0}'); b=$(send x /machine/map '{"version":0}')
[ "$a" = "401 this machine is not registered" ] || fail "unknown machine: $a"
[ "$b" = "$a" ] || fail "the second copy got a different answer (it entered the replay cache): $b"
ok "an unknown machine's requests do not enter the replay cache"

# 2. a registration with a bad auth key, twice
"$WM_NODE" --state "$T/y.json" rotate || fail "keys"
nk=$(python3 -c 'import json,sys; print("nodekey:"+json.load(open(sys.argv[1]))["node_public"])' "$T/y.json")
dk=$(python3 -c 'import json,sys; print("discokey:"+json.load(open(sys.argv[1]))["disco_public"])' "$T/y.json")
body="{\"auth_key\":\"wm-auth-abcdefgh-0000000000000000000000000000000000000000\",\"node_key\":\"$nk\",\"disco_key\":\"$dk\",\"hostname\":\"y\"}"
sign y /machine/register "$body"
a=$(send y /machine/register "$body"); b=$(send y /machine/register "$body")
case "$a" in 401\ *replay*|2*) fail "bad auth key: $a";; 401\ *) ;; *) fail "bad auth key: $a";; esac
[ "$b" = "$a" ] || fail "a failed registration entered the replay cache: $b"
ok "a registration with a bad auth key does not enter the replay cache"

# 3. a registered node's replay is refused
node a register --authkey "$AK" --hostname alpha >/dev/null || fail "register a"
node b register --authkey "$AK" --hostname beta >/dev/null || fail "register b"
sign a /machine/endpoints '{"endpoints":["192.0.2.1:41641"]}'
a=$(send a /machine/endpoints '{"endpoints":["192.0.2.1:41641"]}')
b=$(send a /machine/endpoints '{"endpoints":["192.0.2.1:41641"]}')
[ "${a%% *}" = 200 ] || fail "first endpoints: $a"
[ "$b" = "401 this request was already received (replay)" ] || fail "replay not refused: $b"
ok "a registered node's replayed request is refused"

# 4. per-machine share: A floods, only A is refused
node a endpoints 192.0.2.1:41641 --repeat 600 2>"$T/flood" || fail "flood"
grep -q '^status=200 count=51[01]$' "$T/flood" && grep -q '^status=429 count=' "$T/flood" ||
	fail "A's share: $(grep status= "$T/flood" | tr '\n' ' ')"
node b endpoints 192.0.2.2:41641 >/dev/null || fail "B refused while A floods"
node a endpoints 192.0.2.1:41641 >/dev/null 2>&1 && fail "A not refused once its share is full"
ok "a flooding node gets 429 at its share (512) and other nodes carry on"

# 5. a disco key is one node's: another machine presenting it gets 409
"$WM_NODE" --state "$T/c.json" rotate || fail "keys"
python3 - "$T/c.json" "$T/b.json" <<'PY' || fail "state edit"
import json, sys
c = json.load(open(sys.argv[1])); b = json.load(open(sys.argv[2]))
c["disco_public"] = b["disco_public"]
json.dump(c, open(sys.argv[1], "w"))
PY
out=$(node c register --authkey "$AK" --hostname gamma 2>&1) && fail "a duplicate disco key was accepted: $out"
echo "$out" | grep -q '"status":409.*disco key is already registered' || fail "duplicate disco key: $out"
ok "a disco key of another machine is refused (409)"

# 6. at most 8 map streams per node
for i in 1 2 3 4 5 6 7 8; do
	"$WM_NODE" --server "$URL" --state "$T/b.json" map >"$T/bmap$i" 2>&1 &
	WM_PIDS+=("$!")
done
streams8() { [ "$(grep -l '"type":"full"\|"peers"' "$T"/bmap* | wc -l)" = 8 ]; }
wait_for 10 streams8 || fail "8 streams did not open"
out=$(node b map --lines 1 2>&1) && fail "a 9th map stream opened"
echo "$out" | grep -q '"status":429' || fail "9th stream: $out"
ok "a node's 9th map stream is refused (429)"
