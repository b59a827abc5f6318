#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The node CLI as admins use it (no TUN: two agents on loopback):
# per-command help, unknown commands and flags named (exit 2), completion
# scripts that the shells accept, version; `up` keeping the settings without
# flags and refusing (naming the lost flags) with some, `set`, `up --reset`;
# `down` = Stopped (a bare `up` reconnects), `logout` = NeedsLogin (the
# server expires the node; `up` needs a key again); whois; exit-node list;
# --advertise-tags granted by tagOwners and refused otherwise.
. "$(dirname "$0")/lib.sh"
CLI=$WM_BIN/wiremesh

# ---- without a daemon ----
for v in up set down logout status ping netcheck ip whois exit-node version debug completion help; do
	out=$("$CLI" "$v" --help 2>&1) || fail "$v --help exit $?"
	echo "$out" | grep -q "^usage: wiremesh $v" || fail "$v --help: $out"
done
"$CLI" up --help | grep -q -- '--advertise-tags' || fail "up --help lacks --advertise-tags"
"$CLI" help set | grep -q '^usage: wiremesh set' || fail "help set"
ok "every command has its own --help"
out=$("$CLI" bogus 2>&1); rc=$?
[ $rc = 2 ] && echo "$out" | grep -q 'unknown command "bogus"' || fail "bogus: rc=$rc $out"
out=$("$CLI" up --bogus 2>&1); rc=$?
[ $rc = 2 ] && echo "$out" | grep -q 'unknown flag --bogus' || fail "up --bogus: rc=$rc $out"
out=$("$CLI" set --login-server x 2>&1); rc=$?
[ $rc = 2 ] || fail "set --login-server accepted: $out"
ok "unknown commands and flags are named, exit 2"
"$CLI" --version | grep -qx 'wiremesh [0-9.]*.*' || fail "--version"
"$CLI" completion bash >"$T/c.bash" && bash -n "$T/c.bash" || fail "bash completion"
( . "$T/c.bash"; COMP_WORDS=(wiremesh up --adv); COMP_CWORD=2; _wiremesh; printf '%s\n' "${COMPREPLY[@]}" ) >"$T/comp"
grep -qx -- '--advertise-routes' "$T/comp" && grep -qx -- '--advertise-tags' "$T/comp" || fail "bash completion of up --adv: $(cat "$T/comp")"
( . "$T/c.bash"; COMP_WORDS=(wiremesh ex); COMP_CWORD=1; _wiremesh; printf '%s\n' "${COMPREPLY[@]}" ) | grep -qx exit-node || fail "bash completion of verbs"
"$CLI" completion zsh >"$T/c.zsh" && grep -q '^#compdef wiremesh' "$T/c.zsh" || fail "zsh completion"
if command -v zsh >/dev/null; then zsh -n "$T/c.zsh" || fail "zsh -n"; fi
"$CLI" completion fish >"$T/c.fish" || fail "fish completion"
if command -v fish >/dev/null; then fish -n "$T/c.fish" || fail "fish -n"; fi
grep -q "__fish_seen_subcommand_from up' -l advertise-routes" "$T/c.fish" || fail "fish completion lacks up flags"
"$CLI" completion tcsh >/dev/null 2>&1 && fail "completion tcsh accepted"
ok "completion: bash completes verbs and flags; zsh and fish scripts"

# ---- with a server and two agents ----
cat >"$T/acls.hujson" <<'J'
{
	"tagOwners": {"tag:web": ["alice@"], "tag:db": ["group:dba"]},
	"groups": {"group:dba": ["bob@"]},
	"acls": [{"action": "accept", "src": ["*"], "dst": ["*:*"]}],
}
J
# One relay region whose node is a TLS server with a certificate no CA
# vouches for (openssl s_server) and a STUN port nobody answers on.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=relay.test \
	-addext subjectAltName=DNS:relay.test -keyout "$T/rk.pem" -out "$T/rc.pem" -days 1 2>/dev/null ||
	fail "openssl req"
RPORT=$(free_port) SPORT=$(free_port)
openssl s_server -quiet -naccept 1000 -accept "127.0.0.1:$RPORT" -cert "$T/rc.pem" -key "$T/rk.pem" \
	</dev/null >/dev/null 2>&1 &
WM_PIDS+=($!)
wait_for 10 bash -c "exec 3<>/dev/tcp/127.0.0.1/$RPORT" || fail "s_server did not start"
cat >"$T/derp.json" <<J
{"Regions": {"7": {"RegionID": 7, "RegionCode": "bad", "RegionName": "Untrusted",
  "Nodes": [{"Name": "7a", "RegionID": 7, "HostName": "relay.test", "IPv4": "127.0.0.1",
             "DERPPort": $RPORT, "STUNPort": $SPORT}]}}}
J
start_server --policy-file "$T/acls.hujson" --derp-map "$T/derp.json"
bootstrap
"$SRV" users create alice >/dev/null || fail "users create"
AK=$("$SRV" preauthkeys create --user alice --reusable) || fail "preauthkeys create"
start_agent() {	# N
	"$WM_BIN/wiremeshd" --state-dir "$T/s$1" --socket "$T/a$1.sock" --port "$(free_port)" --tun userspace-networking \
		>>"$T/agent$1.log" 2>&1 &
	WM_PIDS+=($!)
	wait_for 10 test -S "$T/a$1.sock" || fail "agent $1 did not start: $(tail "$T/agent$1.log")"
}
wm() { local n=$1; shift; "$CLI" --socket "$T/a$n.sock" "$@"; }
start_agent 1; start_agent 2
out=$(wm 1 version) || fail "version"
echo "$out" | grep -q '^wiremeshd [0-9]' || fail "version does not show the daemon: $out"

wm 1 up --login-server "$URL" --authkey "$AK" --hostname n1 --advertise-routes 10.9.0.0/24 \
	--advertise-exit-node --accept-routes >"$T/up1" 2>&1 || fail "up 1: $(cat "$T/up1")"
grep -q 'Logged in to .* as n1 (100\.[0-9.]*), 0 peers' "$T/up1" || fail "up 1 says: $(cat "$T/up1")"
wm 2 up --login-server "$URL" --authkey "$AK" --hostname n2 >"$T/up2" 2>&1 || fail "up 2: $(cat "$T/up2")"
sees_n1() { wm 2 status | grep -q ' n1 '; }
wait_for 10 sees_n1 || fail "n2 does not see n1: $(wm 2 status)"
wm 2 up >"$T/up2" 2>&1 || fail "bare up 2: $(cat "$T/up2")"
grep -q ', 1 peer$' "$T/up2" || fail "singular peer: $(cat "$T/up2")"
adv() { wm 1 status --json | python3 -c 'import json,sys; s=json.load(sys.stdin)["self"]; print(",".join(s["advertised_routes"]), s["advertise_exit_node"])'; }
[ "$(adv)" = "10.9.0.0/24 True" ] || fail "advertised: $(adv)"

wm 1 up >"$T/o" 2>&1 || fail "bare up: $(cat "$T/o")"
[ "$(adv)" = "10.9.0.0/24 True" ] || fail "bare up dropped settings: $(adv)"
ok "up without flags keeps the settings"

out=$(wm 1 up --accept-routes 2>&1) && fail "up --accept-routes dropped the routes silently: $out"
echo "$out" | grep -q -- '--advertise-routes=10.9.0.0/24' && echo "$out" | grep -q -- '--advertise-exit-node' &&
	echo "$out" | grep -q -- '--reset' || fail "refusal does not name the flags: $out"
[ "$(adv)" = "10.9.0.0/24 True" ] || fail "a refused up changed settings: $(adv)"
ok "up with some flags refuses and names the ones it would drop"

wm 1 set --advertise-exit-node=false >"$T/o" 2>&1 || fail "set: $(cat "$T/o")"
[ "$(adv)" = "10.9.0.0/24 False" ] || fail "set changed more than one setting: $(adv)"
exitnodes() { "$SRV" nodes list --json | python3 -c 'import json,sys; d=json.load(sys.stdin); d=d.get("nodes",d) if isinstance(d,dict) else d; print([n for n in d if n["name"]=="n1"][0].get("advertised_routes") or [n for n in d if n["name"]=="n1"][0].get("routes"))'; }
wm 1 set --advertise-exit-node >/dev/null || fail "set back"
ok "set changes one setting and keeps the others"

wm 2 exit-node list >"$T/en" 2>&1 || fail "exit-node list: $(cat "$T/en")"
grep -q 'No peer offers an exit node' "$T/en" || grep -q 'n1' "$T/en" || fail "exit-node list: $(cat "$T/en")"
"$SRV" routes list >/dev/null 2>&1 || true
for id in $("$SRV" nodes list --json | python3 -c 'import json,sys; d=json.load(sys.stdin); d=d.get("nodes",d) if isinstance(d,dict) else d; print(*[n["id"] for n in d if n["name"]=="n1"])'); do
	"$SRV" nodes approve-routes "$id" 0.0.0.0/0,::/0,10.9.0.0/24 >/dev/null ||
		fail "approve-routes"
done
listed() { wm 2 exit-node list | grep -q '^100\.[0-9.]* *n1 *alice *online'; }
wait_for 10 listed || fail "exit-node list after approval: $(wm 2 exit-node list; "$SRV" nodes list)"
ok "exit-node list shows the approved exit node"

ip1=$(wm 1 ip -4)
wm 2 whois "$ip1" >"$T/w" || fail "whois: $(cat "$T/w")"
grep -q 'Name: *n1' "$T/w" && grep -q 'Name: *alice' "$T/w" || fail "whois: $(cat "$T/w")"
wm 2 whois "$ip1:22" | grep -q 'Name: *n1' || fail "whois IP:PORT"
wm 2 whois 100.127.1.1 >/dev/null 2>&1 && fail "whois of an unknown address succeeded"
ok "whois names the node and user of an address"

wm 1 up --reset --advertise-routes 10.9.0.0/24 >"$T/o" 2>&1 || fail "up --reset: $(cat "$T/o")"
[ "$(adv)" = "10.9.0.0/24 False" ] || fail "--reset kept the exit node: $(adv)"
ok "up --reset drops what it does not mention"

wm 1 down >/dev/null || fail "down"
st() { wm 1 status --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["backend_state"])'; }
[ "$(st)" = Stopped ] || fail "after down: $(st)"
wm 1 status | grep -q '^Stopped' || fail "status after down: $(wm 1 status)"
wm 1 status | grep -q 'Logged out' && fail "down says logged out"
wm 1 up >"$T/o" 2>&1 || fail "bare up after down: $(cat "$T/o")"
[ "$(st)" = Running ] || fail "after up: $(st)"
ok "down is Stopped (still logged in) and a bare up reconnects"

wm 1 logout >"$T/o" 2>&1 || fail "logout: $(cat "$T/o")"
[ "$(st)" = NeedsLogin ] || fail "after logout: $(st)"
wm 1 status | grep -q "Logged out. Run: wiremesh up --login-server $URL --authkey KEY" || fail "status after logout: $(wm 1 status)"
"$SRV" nodes list | grep ' n1 ' | grep -q ' expired ' || fail "logout did not expire the node on the server: $("$SRV" nodes list)"
wm 1 up --authkey "$AK" >"$T/o" 2>&1 || fail "up with a key after logout: $(cat "$T/o")"
[ "$(st)" = Running ] || fail "after re-login: $(st)"
ok "logout expires the node on the server (NeedsLogin); up --authkey logs in again"

# Tags: alice owns tag:web, not tag:db.
wm 2 set --advertise-tags tag:web >"$T/o" 2>&1 || fail "set --advertise-tags: $(cat "$T/o")"
tags() { "$SRV" nodes list --json | python3 -c 'import json,sys; d=json.load(sys.stdin); d=d.get("nodes",d) if isinstance(d,dict) else d; n=[n for n in d if n["name"]=="n2"][0]; t=n.get("tags") or []; print(",".join(t) if isinstance(t,list) else t)'; }
[ "$(tags)" = tag:web ] || fail "tags after --advertise-tags: $(tags)"
out=$(wm 2 set --advertise-tags tag:db 2>&1) && fail "tag:db granted: $out"
echo "$out" | grep -q 'tag:db' || fail "refusal does not name the tag: $out"
echo "$out" | grep -q 'settings were not changed' || fail "a refused set does not say the settings stayed: $out"
[ "$(tags)" = tag:web ] || fail "a refused set changed the tags: $(tags)"
wm 2 status --json | python3 -c 'import json,sys; assert json.load(sys.stdin)["backend_state"]=="Running"' ||
	fail "a refused set left the node disconnected: $(wm 2 status)"
wm 2 set --advertise-tags notatag 2>&1 | grep -q 'not a tag' || fail "malformed tag accepted"
ok "--advertise-tags: owned tags granted, others refused by name"

# netcheck says why each field is empty (UDP to the STUN port unanswered,
# no relay with IPv6, the relay's TLS untrusted)
wm 2 netcheck >"$T/nc" || fail "netcheck: $(cat "$T/nc")"
cat "$T/nc"
grep -qx '\* UDP: false' "$T/nc" || fail "netcheck UDP"
grep -qx '\* IPv4: (no addr found: no STUN server answered; UDP looks blocked)' "$T/nc" || fail "netcheck IPv4 reason"
grep -qx '\* IPv6: no (no relay in the DERP map has an IPv6 address)' "$T/nc" || fail "netcheck IPv6 reason"
grep -qx '\* MappingVariesByDestIP: (unknown: no STUN reply over IPv4)' "$T/nc" || fail "netcheck mapping reason"
grep -qx '\* Nearest DERP: (none: no relay answered over STUN or HTTPS)' "$T/nc" || fail "netcheck nearest DERP"
grep -qx '\* DERP latency: (none: no relay answered over STUN or HTTPS)' "$T/nc" || fail "netcheck latency reason"
ok "netcheck names the reason for every empty field"

# The relay's TLS failure is logged at info, with the reason, once
why() { grep -c 'cannot connect to the relay; retrying.*certificate not trusted' "$T/agent2.log"; }
wait_for 10 test "$(why)" -ge 1 || fail "no info line about the relay's certificate: $(grep -i derp "$T/agent2.log" | tail -5)"
grep 'cannot connect to the relay' "$T/agent2.log" | head -n 1
n1=$(why); sleep 3	# the dial retries (backoff 1 s, 2 s): the same reason is not repeated at info
[ "$(why)" = "$n1" ] || fail "the same relay failure logged again at info"
nc_info=$(grep -c 'level=info.*msg="netcheck"' "$T/agent2.log")
[ "$nc_info" -le 2 ] || fail "netcheck logged at info $nc_info times with an unchanged result"
ok "relay TLS failure at info naming the cause, once; netcheck quiet while unchanged"

# An expired node says that its key expired and how to log in again (once
# in the log, not "HTTP 401 ... retrying" forever)
id2=$("$SRV" nodes list -o json | python3 -c 'import json,sys; print([n["id"] for n in json.load(sys.stdin)["nodes"] if n["name"]=="n2"][0])')
"$SRV" nodes expire "$id2" >/dev/null || fail "nodes expire"
expired_msg() { wm 2 status | grep -q "key has expired or the node was deleted.*Re-authenticate: wiremesh up --authkey KEY"; }
wait_for 30 expired_msg || fail "expired node status: $(wm 2 status)"
wm 2 status | grep -q 'retrying' && fail "expired node still says retrying: $(wm 2 status)"
[ "$(grep -c 'no longer accepts this node' "$T/agent2.log")" = 1 ] || fail "expiry warning not logged exactly once: $(grep -c 'no longer accepts' "$T/agent2.log")"
ok "an expired node says its key expired and how to re-authenticate, logged once"

# netcheck over IPv4 and IPv6 against a STUN server on both (loopback)
P6=$(python3 -c 'import socket;s=socket.socket(socket.AF_INET6,socket.SOCK_DGRAM);s.bind(("::1",0));print(s.getsockname()[1])')
"$WM_BIN/wiremesh-derper" --addr off --http-port -1 --stun-addr "[::]:$P6" >"$T/stun6.log" 2>&1 &
WM_PIDS+=($!)
wait_for 10 grep -q 'msg="ready"' "$T/stun6.log" || fail "STUN server did not start: $(cat "$T/stun6.log")"
cat >"$T/map6.json" <<J
{"Regions": {"1": {"RegionID": 1, "RegionCode": "loc", "Nodes": [{"Name": "1a", "RegionID": 1,
  "HostName": "localhost", "IPv4": "127.0.0.1", "IPv6": "::1", "STUNPort": $P6, "STUNOnly": true}]}}}
J
"$WM_BIN/wiremesh-derper" debug netcheck --derp-map "$T/map6.json" >"$T/nc6" 2>&1 || fail "netcheck v6: $(cat "$T/nc6")"
grep -qx '\* IPv4: yes, 127.0.0.1:[0-9]*' "$T/nc6" && grep -qx '\* IPv6: yes, \[::1\]:[0-9]*' "$T/nc6" &&
	grep -qx '\* Nearest DERP: loc ([0-9.]*ms)' "$T/nc6" || fail "netcheck v4+v6: $(cat "$T/nc6")"
ok "netcheck reports IPv6 and the nearest DERP region"
