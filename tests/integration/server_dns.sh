#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The server's `dns` block (MagicDNS): bad values are refused at start with
# FILE:LINE:COL (an invalid label, a base_domain containing the server's own
# name, a nameserver that is no address, an unknown key); the full map holds
# the `dns` section as configured; SIGHUP with a changed block sends every
# open stream a `dns` delta (and a stream resuming from before it gets the
# delta too); WIREMESH_DNS_* override the file; a broken file on SIGHUP keeps
# the previous config.
. "$(dirname "$0")/lib.sh"

bootstrap
# 1. refused with a position
bad() { # NAME WANT-REGEX hujson-text
	printf '%s\n' "$3" >"$T/$1.hujson"
	if "$SRV" serve --listen 127.0.0.1:1 --db "$T/bad.sqlite" --config "$T/$1.hujson" \
		--derp-hostname ctl.mesh.example.com >"$T/$1.out" 2>&1; then
		fail "$1: server started"
	fi
	grep -Eq "$2" "$T/$1.out" || fail "$1: want /$2/, got: $(cat "$T/$1.out")"
}
bad label "$T/label.hujson:3:20: dns: base_domain: invalid character '!'" '{
  "dns": {
    "base_domain": "bad!.example.com",
  },
}'
bad own "own.hujson:2:45: dns: base_domain \"example.com\" must not equal or contain the server's own name \"ctl.mesh.example.com\"" '{
  "dns": {"magic_dns": true, "base_domain": "example.com"},
}'
bad nsaddr "nsaddr.hujson:4:45: dns: nameserver \"dns.example\" is not an IP address" '{
  "dns": {
    "base_domain": "tail.test",
    "nameservers": {"global": ["192.0.2.1", "dns.example"]},
  },
}'
bad extra "extra.hujson:3:78: dns: \"100.64.0.1\" is not an IPv6 address" '{
  "dns": {"base_domain": "tail.test",
    "extra_records": [{"name": "grafana.tail.test", "type": "AAAA", "value": "100.64.0.1"}],
  },
}'
bad split "split.hujson:3:31: dns: split domain: label starts with '-'" '{
  "dns": {"base_domain": "tail.test",
    "nameservers": {"split": {"corp.-x.example": ["10.0.0.53"]}},
  },
}'
bad key "key.hujson:2:39: dns: unknown key \"domains\"" '{
  "dns": {"base_domain": "tail.test", "domains": []},
}'
bad nobase "magic_dns needs a base_domain" '{"dns": {"magic_dns": true}}'
ok "invalid dns blocks refused with FILE:LINE:COL"

# 2. the full map carries the section
cat >"$T/config.hujson" <<'EOF2'
{
  // MagicDNS
  "dns": {
    "magic_dns": true,
    "base_domain": "Mesh.Example.com.",
    "nameservers": {"global": ["192.0.2.53"], "split": {"corp.example.com": ["10.0.0.53", "2001:db8::53"]}},
    "search_domains": ["example.com"],
    "extra_records": [{"name": "grafana.mesh.example.com", "type": "A", "value": "100.64.0.3"}],
  },
}
EOF2
start_server --config "$T/config.hujson"
"$SRV" users create alice >/dev/null || fail "users create"
AK=$("$SRV" preauthkeys create --user alice --reusable) || fail "preauthkeys create"
node a register --authkey "$AK" --hostname alpha >/dev/null || fail "register a"
node a map --lines 1 >"$T/map" 2>/dev/null || fail "map"
python3 - "$T/map" <<'PY' || fail "dns section: $(head -c 800 "$T/map")"
import json, sys
m = json.loads(open(sys.argv[1]).readline())
d = m["dns"]
assert d == {"magic_dns": True, "base_domain": "mesh.example.com",
             "nameservers": {"global": ["192.0.2.53"],
                             "split": {"corp.example.com": ["10.0.0.53", "2001:db8::53"]}},
             "search_domains": ["example.com"],
             "extra_records": [{"name": "grafana.mesh.example.com", "type": "A", "value": "100.64.0.3"}]}, d
PY
V0=$(python3 -c 'import json,sys; print(json.loads(open(sys.argv[1]).readline())["version"])' "$T/map")
ok "full map has the dns section"

# 3. SIGHUP with a changed block: a dns delta on the open stream and on resume
node a map --lines 2 >"$T/stream" 2>/dev/null &
MP=$!; WM_PIDS+=("$MP")
wait_for 5 grep -q '"type":"full"' "$T/stream" || fail "stream did not start"
sed -i 's/"example.com"\]/"example.com", "corp.example.com"]/' "$T/config.hujson"
kill -HUP "$SERVER_PID"
line2_dns() { sed -n 2p "$T/stream" | grep -q '"dns":{'; }
wait_for 5 line2_dns || fail "no dns delta: $(cat "$T/stream")"
python3 - "$T/stream" <<'PY' || fail "dns delta: $(sed -n 2p "$T/stream")"
import json, sys
m = json.loads(open(sys.argv[1]).readlines()[1])
assert m["type"] == "delta" and m["dns"]["search_domains"] == ["example.com", "corp.example.com"], m
PY
node a map --since "$V0" --lines 1 >"$T/resume" 2>/dev/null || fail "resume"
grep -q '"type":"delta".*"corp.example.com"\]' "$T/resume" || fail "resume after V0 lacks the dns delta: $(cat "$T/resume")"
ok "SIGHUP sends a dns delta (live and on resume)"

# 4. a broken file on SIGHUP keeps the old config (no delta, error logged)
sed -i 's/"magic_dns": true/"magic_dns": "yes"/' "$T/config.hujson"
kill -HUP "$SERVER_PID"
wait_for 5 grep -q 'dns config not reloaded.*magic_dns must be a bool' "$WM_SERVER_LOG" || fail "no reload error in log"
node a map --lines 1 >"$T/map2" 2>/dev/null || fail "map"
grep -q '"search_domains":\["example.com","corp.example.com"\]' "$T/map2" || fail "config lost: $(head -c 600 "$T/map2")"
ok "a bad reload keeps the previous dns config"
stop_server

# 5. environment overrides
unset PORT
WIREMESH_DNS_BASE_DOMAIN=env.test WIREMESH_DNS_NAMESERVERS=198.51.100.53,2001:db8::1 start_server
node a map --lines 1 >"$T/map3" 2>/dev/null || fail "map"
grep -q '"dns":{"magic_dns":true,"base_domain":"env.test","nameservers":{"global":\["198.51.100.53","2001:db8::1"\]' "$T/map3" ||
	fail "env: $(head -c 600 "$T/map3")"
ok "WIREMESH_DNS_* configure it"
