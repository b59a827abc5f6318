#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Relay admission fails closed (issue 11, item 7). The control server serves
# POST /relay/admit for standalone relays, behind a shared secret; a
# wiremesh-derper pointed at it admits a registered node's key and refuses a
# random one. Pointed at an endpoint that does not say {"Allow": true} (here
# /healthz) it refuses everyone. A burst of random keys does not keep a known
# node out: its verdict is cached and checks are bounded.
. "$(dirname "$0")/lib.sh"

D=$WM_BIN/wiremesh-derper
[ -x "$D" ] || fail "no $D"
head -c 32 /dev/urandom | base64 >"$T/relay.secret"; chmod 600 "$T/relay.secret"
cat >"$T/config.hujson" <<EOF2
{ "relay_admission_secret_file": "$T/relay.secret" }
EOF2
bootstrap
start_server --config "$T/config.hujson"
"$SRV" users create alice >/dev/null || fail "users create"
AK=$("$SRV" preauthkeys create --user alice --reusable) || fail "preauthkeys create"
node a register --authkey "$AK" --hostname alpha >/dev/null || fail "register a"
ka=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["node_private"])' "$T/a.json")
kap=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["node_public"])' "$T/a.json")

# 1. the endpoint: secret required, verdicts from the node table
admit() { curl -s -o "$T/resp" -w '%{http_code}' -X POST "$@" -H 'Content-Type: application/json' \
	--data "{\"NodePublic\":\"nodekey:$kap\"}" "$URL/relay/admit"; echo " $(cat "$T/resp")"; }
out=$(admit); [ "${out%% *}" = 401 ] || fail "no secret: $out"
out=$(admit -H "Authorization: Bearer nope"); [ "${out%% *}" = 401 ] || fail "wrong secret: $out"
out=$(admit -H "Authorization: Bearer $(cat "$T/relay.secret")")
[ "$out" = '200 {"Allow":true}' ] || fail "registered key: $out"
ok "POST /relay/admit needs the relay secret and allows a registered node's key"

start_derper() {	# LOG URL: sets DPORT
	"$D" --addr 127.0.0.1:0 --http-port -1 --stun-addr off --insecure-plain-http \
		--verify-clients-url "$2" --verify-clients-secret-file "$T/relay.secret" >"$1" 2>&1 &
	WM_PIDS+=("$!")
	wait_for 10 grep -q 'msg="ready"' "$1" || fail "derper did not start: $(cat "$1")"
	DPORT=$(sed -n 's/.*derp: listening.*port=\([0-9]*\).*/\1/p' "$1")
}
probe() { "$D" debug client --host 127.0.0.1 --dial 127.0.0.1 --port "$DPORT" --plain --key "$1" --probe --timeout 8; }
rand() { "$D" debug genkey | sed 's/private=\([^ ]*\) .*/\1/'; }

# 2. a standalone relay using it
start_derper "$T/d1.log" "$URL/relay/admit"
D1PORT=$DPORT
out=$(probe "$ka") || fail "registered node refused: $out"
[ "$out" = admitted ] || fail "registered node: $out"
out=$(probe "$(rand)") && fail "random key admitted"
[ "$out" = refused ] || fail "random key: $out"
ok "a standalone relay admits the registered node and refuses a random key"

# 3. fail closed: an endpoint that answers 200 without {"Allow": true}
start_derper "$T/d2.log" "$URL/healthz"
out=$(probe "$ka") && fail "admitted by an endpoint that never said Allow"
[ "$out" = refused ] || fail "fail-open endpoint: $out"
ok "only an explicit {\"Allow\": true} admits"

# 4. a burst of 100 random keys; the known node (cached) still gets in
DPORT=$D1PORT
pids=()
for i in $(seq 1 100); do probe "$(rand)" >/dev/null 2>&1 & pids+=("$!"); done
out=$(probe "$ka") || fail "known node refused during a burst of random keys: $out"
for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
ok "a known node is admitted during a burst of random keys"
