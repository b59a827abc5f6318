#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The admin CLI (wiremesh-server) as Headscale's users know it: per-verb
# help, global flags before or after the verb, -o json|yaml|table, exit codes
# (2 usage, 1 failure), usage for a verb without sub-verb, delete asking for
# confirmation unless --force/--yes, nodes move, users rename, routes list,
# completion; apikeys create --db refusing a missing database unless
# --create; RFC 3339 times everywhere; expired keys and nodes shown
# sensibly; a mutating reply's real online flag; policy explain against the
# server's active policy with node names and addresses.
. "$(dirname "$0")/lib.sh"

# ---- without a server ----
out=$("$SRV" users --help) || fail "users --help exit $?"
echo "$out" | grep -q '^usage: wiremesh-server users VERB' && echo "$out" | grep -q 'rename' || fail "users --help: $out"
"$SRV" nodes list --help | grep -q '^usage: wiremesh-server nodes list \[--user NAME\]' || fail "nodes list --help"
"$SRV" users >/dev/null 2>"$T/e"; rc=$?
[ $rc = 2 ] && grep -q 'usage: wiremesh-server users VERB' "$T/e" && ! grep -q 'no server' "$T/e" || fail "users alone: rc=$rc $(cat "$T/e")"
"$SRV" nodes bogus 2>"$T/e"; rc=$?
[ $rc = 2 ] && grep -q 'unknown nodes verb "bogus"' "$T/e" || fail "nodes bogus: rc=$rc $(cat "$T/e")"
"$SRV" bogus 2>/dev/null; [ $? = 2 ] || fail "unknown command not exit 2"
"$SRV" nodes rename 1 2>/dev/null; [ $? = 2 ] || fail "missing argument not exit 2"
ok "per-verb help, usage for a bare noun, exit 2 for usage errors"
"$SRV" completion bash >"$T/c.bash" && bash -n "$T/c.bash" || fail "bash completion"
( . "$T/c.bash"; COMP_WORDS=(wiremesh-server nodes m); COMP_CWORD=2; __wmserver_complete; printf '%s\n' "${COMPREPLY[@]}" ) | grep -qx move || fail "completion of nodes m"
( . "$T/c.bash"; COMP_WORDS=(wiremesh-server --server x ro); COMP_CWORD=3; __wmserver_complete; printf '%s\n' "${COMPREPLY[@]}" ) | grep -qx routes || fail "completion after a global flag"
"$SRV" completion zsh | grep -q '^#compdef wiremesh-server' || fail "zsh completion"
"$SRV" completion fish | grep -q "__fish_seen_subcommand_from nodes' -a move" || fail "fish completion"
if command -v fish >/dev/null; then "$SRV" completion fish | fish -n || fail "fish -n"; fi
ok "completion for bash, zsh, fish"

"$SRV" apikeys create --db "$T/typo.sqlite" >"$T/o" 2>"$T/e" && fail "apikeys create on a missing database succeeded"
[ ! -e "$T/typo.sqlite" ] && [ ! -s "$T/o" ] && grep -q -- '--create' "$T/e" || fail "missing db: $(cat "$T/e")"
bootstrap	# apikeys create --create --db (lib.sh)
[ -e "$T/db.sqlite" ] || fail "--create made no database"
"$SRV" apikeys create --db "$T/db.sqlite" >/dev/null || fail "apikeys create on an existing database"
ok "apikeys create --db refuses a missing database unless --create"

# ---- against a server ----
cat >"$T/acls.hujson" <<'J'
{
	"groups": {"group:dev": ["alice@"]},
	"acls": [{"action": "accept", "src": ["group:dev"], "dst": ["bob@:22"]}],
}
J
start_server --policy-file "$T/acls.hujson"
export -n WIREMESH_SERVER WIREMESH_API_KEY
K=$WIREMESH_API_KEY
"$SRV" users list >/dev/null 2>"$T/e" && fail "users list without a server succeeded"
grep -q 'no server' "$T/e" || fail "no-server message: $(cat "$T/e")"
"$SRV" --server "$URL" --api-key "$K" users create alice >/dev/null || fail "globals before the noun"
"$SRV" users create bob --server "$URL" --api-key="$K" >/dev/null || fail "globals after the verb"
"$SRV" users --server="$URL" list --api-key "$K" | grep -q bob || fail "globals between noun and verb"
ok "global flags before, between and after the verbs"
export WIREMESH_SERVER=$URL WIREMESH_API_KEY=$K

"$SRV" users list -o json | python3 -c 'import json,sys; u=json.load(sys.stdin)["users"]; assert [x["name"] for x in u]==["alice","bob"], u' || fail "-o json"
"$SRV" users list -o yaml >"$T/y"
python3 - "$T/y" <<'PY' || fail "-o yaml: $(cat "$T/y")"
import sys, yaml
d = yaml.safe_load(open(sys.argv[1]))
assert [u["name"] for u in d["users"]] == ["alice", "bob"], d
PY
"$SRV" users list -o table | grep -q '^ID  *NAME  *CREATED' || fail "-o table"
"$SRV" users list -o xml 2>/dev/null; [ $? = 2 ] || fail "-o xml not a usage error"
ok "-o json|yaml|table"

AK=$("$SRV" preauthkeys create --user alice --reusable)
node n1 register --authkey "$AK" --hostname web1 >/dev/null || fail "register web1"
node n2 register --authkey "$AK" --hostname db1 >/dev/null || fail "register db1"
id1=$("$SRV" nodes list -o json | python3 -c 'import json,sys; print([n["id"] for n in json.load(sys.stdin)["nodes"] if n["name"]=="web1"][0])')
id2=$("$SRV" nodes list -o json | python3 -c 'import json,sys; print([n["id"] for n in json.load(sys.stdin)["nodes"] if n["name"]=="db1"][0])')

# RFC 3339 everywhere in the admin API
rfc='^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z$'
for path in /api/v1/users /api/v1/nodes /api/v1/preauthkeys /api/v1/apikeys; do
	out=$(api GET $path); expect_status 200 "$out"
	echo "${out#* }" | python3 -c '
import json, re, sys
d = json.load(sys.stdin); rx = re.compile(sys.argv[1]); n = 0
for items in d.values():
    for it in items:
        for k, v in it.items():
            if k.endswith("_at") or k == "last_seen":
                assert v is None or (isinstance(v, str) and rx.match(v)), (k, v); n += 1
assert n > 0, d' "$rfc" || fail "times of $path: $out"
done
ok "users, nodes, pre-auth keys and API keys give RFC 3339 times (null for never)"

# a connected node's mutating reply says online
"$WM_NODE" --server "$URL" --state "$T/n1.json" map >"$T/n1.map" 2>&1 &
WM_PIDS+=($!)
onl() { "$SRV" nodes list -o json | python3 -c 'import json,sys; assert [n for n in json.load(sys.stdin)["nodes"] if n["name"]=="web1"][0]["online"]'; }
wait_for 10 onl || fail "web1 never online"
"$SRV" nodes rename "$id1" web1a -o json | python3 -c 'import json,sys; n=json.load(sys.stdin)["node"]; assert n["online"] is True and n["name"]=="web1a", n' ||
	fail "rename reply does not say online"
"$SRV" nodes rename "$id1" web1 >/dev/null
ok "mutating node replies report the real online flag"

# nodes move, users rename, routes list
"$SRV" nodes move "$id2" --user bob -o json | python3 -c 'import json,sys; assert json.load(sys.stdin)["node"]["user"]=="bob"' || fail "nodes move"
"$SRV" nodes move "$id2" --user nobody 2>/dev/null && fail "move to an unknown user"
"$SRV" users rename bob robert >/dev/null || fail "users rename"
"$SRV" nodes show "$id2" -o json | python3 -c 'import json,sys; assert json.load(sys.stdin)["node"]["user"]=="robert"' || fail "renamed user's node"
"$SRV" users rename robert alice 2>"$T/e" && fail "rename onto an existing user"
grep -q 409 "$T/e" || fail "rename conflict: $(cat "$T/e")"
"$SRV" users rename robert bob >/dev/null || fail "rename back"
node n1 endpoints 192.0.2.1:41641 --routes 10.1.0.0/24 >/dev/null || fail "advertise routes"
"$SRV" nodes approve-routes "$id1" 10.1.0.0/24 >/dev/null || fail "approve-routes"
"$SRV" routes list >"$T/rl" || fail "routes list"
grep -q "^$id1 *web1 *alice *10.1.0.0/24 *yes" "$T/rl" || fail "routes list: $(cat "$T/rl")"
ok "nodes move, users rename (nodes follow), routes list"

# delete asks unless --force/--yes
echo n | "$SRV" nodes delete "$id2" >/dev/null 2>"$T/e"; rc=$?
[ $rc = 1 ] && grep -q 'Delete node .*db1' "$T/e" || fail "delete without yes: rc=$rc $(cat "$T/e")"
"$SRV" nodes show "$id2" >/dev/null || fail "node deleted without confirmation"
"$SRV" nodes delete "$id2" </dev/null >/dev/null 2>&1 && fail "delete with no answer succeeded"
echo y | "$SRV" nodes delete "$id2" >/dev/null 2>&1 || fail "delete with y"
"$SRV" nodes show "$id2" >/dev/null 2>&1 && fail "node still there"
"$SRV" users create carol >/dev/null
"$SRV" users delete carol </dev/null >/dev/null 2>&1 && fail "user deleted without confirmation"
"$SRV" --yes users delete carol >/dev/null || fail "users delete --yes"
ok "delete asks for confirmation unless --force/--yes"

# expired keys and nodes
P=$("$SRV" apikeys list -o json | python3 -c 'import json,sys; print(json.load(sys.stdin)["apikeys"][0]["prefix"])')
K3=$("$SRV" apikeys create --expiration 30d)
P3=$(echo "$K3" | cut -d- -f3)
"$SRV" apikeys expire "$P3" >/dev/null || fail "apikeys expire"
line=$("$SRV" apikeys list | grep "$P3")
echo "$line" | grep -q 'expired 20' || fail "expired API key line: $line"
exp=$(echo "$line" | grep -o 'expired [0-9T:Z-]*' | cut -d' ' -f2)
[ "$(date -d "$exp" +%s)" -le "$(date +%s)" ] || fail "expired key shows a future time: $line"
"$SRV" nodes expire "$id1" >/dev/null || fail "nodes expire"
"$SRV" nodes list | grep "web1" | grep -q ' expired  *20[0-9-]*T' || fail "expired node row: $("$SRV" nodes list)"
ok "expired API keys show when they stopped; expired nodes say expired and keep LAST SEEN"

# policy explain against the server's policy, with node names
node n3 register --authkey "$("$SRV" preauthkeys create --user bob)" --hostname bobbox >/dev/null || fail "register bobbox"
"$SRV" policy explain alice@ bobbox:22 >"$T/x"; rc=$?
[ $rc = 0 ] && grep -q '^accept' "$T/x" || fail "explain alice@ -> bobbox:22: rc=$rc $(cat "$T/x")"
ip3=$("$SRV" nodes list -o json | python3 -c 'import json,sys; print([n["ipv4"] for n in json.load(sys.stdin)["nodes"] if n["name"]=="bobbox"][0])')
"$SRV" policy explain bobbox "web1:22" >"$T/x"; rc=$?
[ $rc = 1 ] && grep -q '^deny' "$T/x" || fail "explain bobbox -> web1:22: rc=$rc $(cat "$T/x")"
"$SRV" policy explain alice@ "$ip3:22" >/dev/null || fail "explain to an address"
"$SRV" policy explain alice@ "$ip3:80" >/dev/null; [ $? = 1 ] || fail "explain port 80 not denied"
ok "policy explain uses the server's active policy and resolves node names and addresses"

# the OpenAPI description: an operationId per operation, times as date-time
curl -sf "$URL/api/v1/openapi.json" | python3 -c '
import json, sys
d = json.load(sys.stdin); ids = []
for path, item in d["paths"].items():
    for m, op in item.items():
        assert "operationId" in op, (m, path); ids.append(op["operationId"])
assert len(ids) == len(set(ids)), ids
for s in ("User", "PreAuthKey", "ApiKey", "Node"):
    for k, v in d["components"]["schemas"][s]["properties"].items():
        if k.endswith("_at") or k == "last_seen":
            assert v.get("format") == "date-time", (s, k, v)
for p in ("/api/v1/routes", "/api/v1/users/{name}/rename", "/api/v1/nodes/{id}/user"):
    assert p in d["paths"], p' || fail "openapi.json"
ok "OpenAPI: operationIds, date-time times, the new endpoints"

# HTTP semantics: 405 with Allow, 401 with WWW-Authenticate: Bearer, 201 with
# Location, the bearer scheme in any case
hdr() { curl -s -o /dev/null -D - "$@" | tr -d '\r'; }
h=$(hdr -X PATCH -H "Authorization: Bearer $K" "$URL/api/v1/users")
echo "$h" | grep -q '^HTTP/1.1 405' && echo "$h" | grep -qx 'Allow: GET, POST' || fail "405 without Allow: $h"
h=$(hdr -X PUT -H "Authorization: Bearer $K" "$URL/api/v1/nodes/$id1")
echo "$h" | grep -q '^HTTP/1.1 405' && echo "$h" | grep -qx 'Allow: GET, DELETE' || fail "405 on a node: $h"
h=$(hdr "$URL/api/v1/users")
echo "$h" | grep -q '^HTTP/1.1 401' && echo "$h" | grep -qx 'WWW-Authenticate: Bearer realm="wiremesh"' || fail "401 without WWW-Authenticate: $h"
h=$(hdr -H 'Authorization: Bearer wm-api-000000000000-000000000000000000000000000000000000000000000000' "$URL/api/v1/users")
echo "$h" | grep -q 'WWW-Authenticate: Bearer realm="wiremesh", error="invalid_token"' || fail "401 for a bad token: $h"
for scheme in bearer BEARER 'Bearer  '; do
	r=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: $scheme $K" "$URL/api/v1/users")
	[ "$r" = 200 ] || fail "scheme '$scheme': $r"
done
h=$(hdr -X POST -H "Authorization: bearer $K" -H 'Content-Type: application/json' --data '{"name":"dave"}' "$URL/api/v1/users")
echo "$h" | grep -q '^HTTP/1.1 201' && echo "$h" | grep -qx 'Location: /api/v1/users/dave' || fail "201 without Location: $h"
loc=$(hdr -X POST -H "Authorization: Bearer $K" -H 'Content-Type: application/json' --data '{"user":"dave"}' "$URL/api/v1/preauthkeys" | sed -n 's/^Location: //p')
[ -n "$loc" ] && curl -sf -H "Authorization: Bearer $K" "$URL$loc" | grep -q '"user":"dave"' || fail "pre-auth key Location '$loc'"
loc=$(hdr -X POST -H "Authorization: Bearer $K" -H 'Content-Type: application/json' --data '{}' "$URL/api/v1/apikeys" | sed -n 's/^Location: //p')
[ -n "$loc" ] && curl -sf -H "Authorization: Bearer $K" "$URL$loc" | grep -q '"prefix"' || fail "API key Location '$loc'"
ok "405 Allow, 401 WWW-Authenticate: Bearer, 201 Location (resolvable), bearer in any case"
