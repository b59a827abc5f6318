#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Logs and metrics as operators run them: journald priority prefixes when
# stderr is the journal (JOURNAL_STREAM) and not otherwise, log_format json,
# start-up errors that name the real cause, /metrics clean under
# `promtool check metrics` (server with embedded relay and STUN, and the
# standalone relay), status codes as codes, metrics answered to loopback
# only by default and on metrics_listen alone when set, and a warning for
# derp_hostname with derp_map.
. "$(dirname "$0")/lib.sh"
command -v promtool >/dev/null || skip "promtool missing (Debian package prometheus)"

# ---- journald priorities ----
D=$T/j; mkdir -p "$D"
run_briefly() {	# LOG ARGS...: serve until it is listening, then stop
	local log=$1; shift
	rm -f "$D"/db.sqlite*
	"$SRV" serve --listen 127.0.0.1:0 --db "$D/db.sqlite" "$@" 2>"$log" &
	local pid=$!
	WM_PIDS+=($pid)
	wait_for 10 grep -q 'listening' "$log" || fail "server did not start: $(cat "$log")"
	kill -TERM $pid; wait $pid 2>/dev/null
}
: >"$D/journal.log"
JOURNAL_STREAM=$(stat -c '%d:%i' "$D/journal.log") run_briefly "$D/journal.log"
grep -q '^<6>ts=.* level=info ' "$D/journal.log" || fail "no <6> prefix with stderr as the journal: $(head -3 "$D/journal.log")"
grep -q '^<4>ts=.* level=warn ' "$D/journal.log" || fail "no <4> for a warning: $(cat "$D/journal.log")"
grep -v '^<[3-7]>' "$D/journal.log" | grep -q . && fail "a line without its priority: $(grep -v '^<[3-7]>' "$D/journal.log" | head -2)"
: >"$D/file.log"
JOURNAL_STREAM=1:1 run_briefly "$D/file.log"
grep -q '^<' "$D/file.log" && fail "priority prefix although stderr is not the journal"
: >"$D/forced.log"
WIREMESH_LOG_SYSLOG_PREFIX=1 run_briefly "$D/forced.log"
grep -q '^<6>' "$D/forced.log" || fail "WIREMESH_LOG_SYSLOG_PREFIX=1 did not add priorities"
ok "journald priorities (<4> warn, <6> info) only when stderr is the journal or forced"

: >"$D/json.log"
run_briefly "$D/json.log" --log-format json
python3 - "$D/json.log" <<'PY' || fail "log_format json: $(head -3 "$D/json.log")"
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
assert lines and all({"ts", "level", "app", "msg"} <= set(l) for l in lines), lines[:2]
assert not any(l["msg"] == "libmicrohttpd" for l in lines), [l for l in lines if l["msg"] == "libmicrohttpd"]
assert any(l["msg"] == "applied migration" and l.get("version") == "1" for l in lines), lines[:3]
PY
"$SRV" serve --listen 127.0.0.1:0 --db "$D/db.sqlite" --log-format xml >/dev/null 2>"$D/e"; [ $? = 2 ] || fail "bad log format accepted"
ok "log_format json: one object per line with the logfmt fields"

# ---- start-up errors name the cause ----
"$SRV" serve --listen 127.0.0.1:0 --db "$D/db.sqlite" --derp-map "$T/missing.json" 2>"$D/e" && fail "missing DERP map accepted"
tail -n1 "$D/e" | grep -q "cannot read the DERP map $T/missing.json: No such file or directory" || fail "DERP map error: $(tail -n1 "$D/e")"
"$SRV" serve --listen 127.0.0.1:0 --db "$D/db.sqlite" --tls-cert "$T/nope.pem" --tls-key "$T/nope.key" 2>"$D/e" && fail "missing TLS file accepted"
tail -n1 "$D/e" | grep -q "cannot read the TLS certificate $T/nope.pem: No such file or directory" || fail "TLS error: $(tail -n1 "$D/e")"
python3 -c 'import socket,time,sys; s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); s.bind(("127.0.0.1",0)); print(s.getsockname()[1], flush=True); time.sleep(30)' >"$D/udp" &
WM_PIDS+=($!)
wait_for 5 test -s "$D/udp"
UP=$(cat "$D/udp")
"$SRV" serve --listen 127.0.0.1:0 --db "$D/db.sqlite" --stun-listen "127.0.0.1:$UP" 2>"$D/e" && fail "busy STUN port accepted"
tail -n1 "$D/e" | grep -q "cannot start the STUN server on 127.0.0.1:$UP (UDP): Address already in use" || fail "STUN error: $(tail -n1 "$D/e")"
ok "start-up errors name the DERP map, the TLS file and the busy STUN port"

# ---- metrics ----
mesh_cert() {
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=localhost \
		-addext subjectAltName=DNS:localhost,IP:127.0.0.1 -keyout "$T/k.pem" -out "$T/c.pem" -days 1 2>/dev/null
}
mesh_cert || fail "openssl"
SP=$(python3 -c 'import socket;s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM);s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
cat >"$T/derp.json" <<J
{"Regions": {"1": {"RegionID": 1, "RegionCode": "x", "Nodes": [{"Name": "1a", "RegionID": 1, "HostName": "localhost"}]}}}
J
bootstrap
start_server --derp --stun-listen "127.0.0.1:$SP" --derp-map "$T/derp.json" --derp-hostname ignored.example
grep -q 'derp_hostname and derp_port .* ignored' "$WM_SERVER_LOG" || fail "no warning for derp_hostname with derp_map"
curl -s -o /dev/null "$URL/nope"; curl -s -o /dev/null "$URL/api/v1/users"
curl -sf "$URL/metrics" >"$T/m" || fail "/metrics"
promtool check metrics <"$T/m" || fail "promtool: $(promtool check metrics <"$T/m" 2>&1 | head)"
for f in $(sed -n 's/^# TYPE \([a-z_0-9]*\) .*/\1/p' "$T/m"); do
	grep -q "^# HELP $f " "$T/m" || fail "no HELP for $f"
	grep -q "^# HELP $f wiremesh metric .*(undocumented)" "$T/m" && fail "no description for $f"
done
grep -q '^wiremesh_http_requests_total{code="404"} [1-9]' "$T/m" && grep -q '^wiremesh_http_requests_total{code="401"} [1-9]' "$T/m" ||
	fail "status codes: $(grep http_requests_total "$T/m")"
grep -q 'code="4xx"' "$T/m" && fail "status classes instead of codes"
ok "/metrics (with relay and STUN) passes promtool: HELP and TYPE everywhere, status codes as codes"
stop_server

# the standalone relay's /metrics too
RP=$(free_port)
"$WM_BIN/wiremesh-derper" --addr "127.0.0.1:$RP" --http-port -1 --stun-addr off --tls-cert "$T/c.pem" --tls-key "$T/k.pem" >"$T/derper.log" 2>&1 &
WM_PIDS+=($!)
wait_for 10 grep -q 'msg="ready"' "$T/derper.log" || fail "derper: $(cat "$T/derper.log")"
curl -sf --cacert "$T/c.pem" "https://localhost:$RP/metrics" >"$T/dm" || fail "derper /metrics"
promtool check metrics <"$T/dm" || fail "promtool on the relay: $(promtool check metrics <"$T/dm" 2>&1 | head)"
ok "wiremesh-derper /metrics passes promtool"

# metrics_listen: a listener of its own; the main one stops serving /metrics
MP=$(free_port)
PORT= start_server --metrics-listen "127.0.0.1:$MP"
curl -sf "http://127.0.0.1:$MP/metrics" | grep -q '^wiremesh_nodes ' || fail "metrics_listen does not serve /metrics"
r=$(curl -s -o /dev/null -w '%{http_code}' "$URL/metrics"); [ "$r" = 404 ] || fail "main listener still serves /metrics: $r"
r=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$MP/api/v1/users"); [ "$r" = 404 ] || fail "metrics listener serves the API: $r"
stop_server
ok "metrics_listen serves /metrics alone; the main listener answers 404"

# default: loopback clients only (a client in a namespace of its own is refused)
NS=wmobs$$
ip netns add "$NS" || fail "ip netns add"
WM_CLEANUP+=("ip netns del $NS")
ip link add "o$$a" type veth peer name "o$$b" || fail "veth"
WM_CLEANUP+=("ip link del o$$a")
ip link set "o$$b" netns "$NS"
ip addr add 198.51.100.1/30 dev "o$$a"; ip link set "o$$a" up
ip -n "$NS" addr add 198.51.100.2/30 dev "o$$b"; ip -n "$NS" link set "o$$b" up
P2=$(free_port)
"$SRV" serve --listen "198.51.100.1:$P2" --db "$T/db.sqlite" >"$T/s2.log" 2>&1 &
WM_PIDS+=($!)
wait_for 10 ip netns exec "$NS" curl -sf "http://198.51.100.1:$P2/healthz" || fail "server on the veth: $(cat "$T/s2.log")"
r=$(ip netns exec "$NS" curl -s -o /dev/null -w '%{http_code}' "http://198.51.100.1:$P2/metrics")
[ "$r" = 403 ] || fail "a remote client got /metrics: $r"
ok "by default /metrics is answered to loopback clients only (403 from elsewhere)"
