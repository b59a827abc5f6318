#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Admin REST API and CLI against a real server process and SQLite file:
# every endpoint, their error cases (RFC 7807 bodies), secrets stored hashed.
. "$(dirname "$0")/lib.sh"

bootstrap
[ -n "$WIREMESH_API_KEY" ] || fail "apikeys create printed nothing"
[[ "$WIREMESH_API_KEY" =~ ^wm-api-[0-9a-f]{12}-[0-9a-f]{48}$ ]] || fail "key shape: $WIREMESH_API_KEY"
secret=${WIREMESH_API_KEY##*-}
! grep -qa "$secret" "$T"/db.sqlite* || fail "API key secret stored in clear"
[ "$(stat -c %a "$T/db.sqlite")" = 600 ] || fail "database file mode is $(stat -c %a "$T/db.sqlite"), not 600"
ok "apikeys create --db prints the key alone; only its hash is stored; the database is mode 0600"

start_server
grep -q 'plain HTTP' "$WM_SERVER_LOG" || fail "no plain-HTTP warning in the log"
ok "plain HTTP is announced in the log"

r=$(curl -s -o /dev/null -w '%{http_code}' "$URL/api/v1/users"); [ "$r" = 401 ] || fail "no key: $r"
ct=$(curl -s -o /dev/null -w '%{content_type}' "$URL/api/v1/users"); [ "$ct" = application/problem+json ] || fail "content type $ct"
r=$(curl -s -o /dev/null -w '%{http_code}' -H 'Authorization: Bearer wm-api-000000000000-000000000000000000000000000000000000000000000000' "$URL/api/v1/users")
[ "$r" = 401 ] || fail "bad key: $r"
ok "401 without or with a wrong API key"

expect_status 201 "$(api POST /api/v1/users '{"name":"alice"}')"
out=$(api POST /api/v1/users '{"name":"alice"}'); expect_status 409 "$out"
echo "$out" | grep -q 'already exists' || fail "409 detail: $out"
expect_status 400 "$(api POST /api/v1/users '{"name":"bad name!"}')"
expect_status 400 "$(api POST /api/v1/users '{"name":')"
expect_status 400 "$(api POST /api/v1/users '[1,2]')"
expect_status 400 "$(api POST /api/v1/users '{"name":5}')"
big=$(head -c 200000 /dev/zero | tr '\0' 'a')
expect_status 413 "$(api POST /api/v1/users "{\"name\":\"$big\"}")"
expect_status 404 "$(api GET /api/v1/nope)"
expect_status 404 "$(api GET /api/v1/users/nobody)"
out=$(api GET /api/v1/users); expect_status 200 "$out"
echo "$out" | grep -q '"name":"alice"' || fail "list: $out"
"$SRV" users list | grep -q alice || fail "CLI users list"
"$SRV" users create bob >/dev/null || fail "CLI users create"
"$SRV" users create bob 2>"$T/err" && fail "duplicate user accepted"
grep -q 409 "$T/err" || fail "CLI duplicate error: $(cat "$T/err")"
ok "users: create, duplicate 409, bad input 400, oversize 413, unknown 404"

out=$(api POST /api/v1/preauthkeys '{"user":"nobody"}'); expect_status 404 "$out"
expect_status 400 "$(api POST /api/v1/preauthkeys '{"user":"alice","expiration":"soon"}')"
expect_status 400 "$(api POST /api/v1/preauthkeys '{"user":"alice","tags":["server"]}')"
expect_status 400 "$(api POST /api/v1/preauthkeys '{"user":"alice","reusable":"yes"}')"
single=$("$SRV" preauthkeys create --user alice --expiration 1h)
[[ "$single" =~ ^wm-auth-[0-9a-f]{12}-[0-9a-f]{48}$ ]] || fail "auth key shape: $single"
! grep -qa "${single##*-}" "$T"/db.sqlite* || fail "auth key secret stored in clear"
tagged=$("$SRV" preauthkeys create --user alice --reusable --ephemeral --tags tag:server,tag:web)
"$SRV" preauthkeys list --json | grep -q '"tag:web"' || fail "tags not listed"
ok "pre-auth keys: created, shown once, stored hashed, validated"

node n1 register --authkey "$single" --hostname web1 >"$T/r1" || fail "register n1"
grep -q '"ipv4":"100.64.0.1"' "$T/r1" || fail "n1 address: $(cat "$T/r1")"
node n2 register --authkey "$single" --hostname web2 2>"$T/err" && fail "used single-use key accepted"
grep -q 401 "$T/err" || fail "used key status: $(cat "$T/err")"
node n1 register --authkey "$single" --hostname web1 >/dev/null || fail "same machine, same key again"
node n3 register --authkey "$tagged" --hostname web1 >"$T/r3" || fail "register n3"
grep -q '"name":"web1-1"' "$T/r3" || fail "name collision not resolved: $(cat "$T/r3")"
grep -q '"tag:server"' "$T/r3" || fail "tags from key not applied"
"$SRV" nodes list | grep -q web1-1 || fail "CLI nodes list"
ok "enrolment: single-use refused on reuse, names unique, tags from key"

id=$(sed -E 's/.*"id":([0-9]+).*/\1/' "$T/r1")
out=$(api GET "/api/v1/nodes/$id"); expect_status 200 "$out"
expect_status 404 "$(api GET /api/v1/nodes/9999)"
expect_status 400 "$(api GET /api/v1/nodes/abc)"
expect_status 409 "$(api POST "/api/v1/nodes/$id/rename" '{"name":"web1-1"}')"
expect_status 400 "$(api POST "/api/v1/nodes/$id/rename" '{"name":"Not_A_Label"}')"
"$SRV" nodes rename "$id" frontend >/dev/null || fail "rename"
"$SRV" nodes show "$id" | grep -q '"name": "frontend"' || fail "rename not visible"
"$SRV" nodes tag "$id" tag:prod >/dev/null || fail "tag"
expect_status 400 "$(api POST "/api/v1/nodes/$id/tags" '{"tags":["prod"]}')"
"$SRV" nodes show "$id" --json | grep -q 'tag:prod' || fail "tag not visible"
"$SRV" nodes expire "$id" >/dev/null || fail "expire"
node n1 map --lines 1 2>"$T/err" && fail "expired node got a map"
grep -q 401 "$T/err" || fail "expired map status: $(cat "$T/err")"
"$SRV" nodes delete --force "$id" >/dev/null || fail "delete"
expect_status 404 "$(api GET "/api/v1/nodes/$id")"
expect_status 409 "$(api DELETE /api/v1/users/alice)"
ok "nodes: show, rename (409 on duplicate), tag, expire, delete"

newkey=$("$SRV" apikeys create --expiration 1h)
prefix=$(echo "$newkey" | cut -d- -f3)
"$SRV" apikeys list | grep -q "$prefix" || fail "apikeys list"
"$SRV" apikeys expire "$prefix" >/dev/null || fail "apikeys expire"
r=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $newkey" "$URL/api/v1/users")
[ "$r" = 401 ] || fail "expired API key still works: $r"
ok "API keys: create, list, expire (revoked key refused)"

curl -sf "$URL/api/v1/openapi.json" | python3 -c 'import json,sys; d=json.load(sys.stdin); assert "/api/v1/users" in d["paths"], d["paths"].keys()' ||
	fail "OpenAPI document"
m=$(curl -sf "$URL/metrics")
for k in wiremesh_nodes wiremesh_map_streams wiremesh_map_bytes_sent_total wiremesh_http_request_duration_seconds_bucket; do
	echo "$m" | grep -q "^$k" || fail "metric $k missing"
done
ok "OpenAPI served, Prometheus metrics present"

kill -0 "$SERVER_PID" || fail "server died"
ok "server still serving after all the bad input"
