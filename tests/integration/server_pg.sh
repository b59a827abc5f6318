#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The control server on PostgreSQL (a real server started by this test):
# `--db postgres://…`, `db` in server.hujson and WIREMESH_DB; apikeys create
# on the database; enrolment, map streams, policy with If-Match, restart
# keeping everything; secrets hashed; the password in no log line; backup
# and restore say to use pg_dump / pg_restore.
. "$(dirname "$0")/lib.sh"

pg_start
DB=$PG_URL

WIREMESH_API_KEY=$("$SRV" apikeys create --db "$PG_URL" 2>"$T/err") || fail "apikeys create --db postgres://: $(cat "$T/err")"
[[ "$WIREMESH_API_KEY" =~ ^wm-api-[0-9a-f]{12}-[0-9a-f]{48}$ ]] || fail "key shape: $WIREMESH_API_KEY"
export WIREMESH_API_KEY
[ "$(pg_sql 'SELECT COUNT(*) FROM api_keys')" = 1 ] || fail "API key not in PostgreSQL"
pg_sql "SELECT encode(hash, 'hex') FROM api_keys" | grep -q "${WIREMESH_API_KEY##*-}" && fail "API key stored in clear"
[ "$(pg_sql 'SELECT MAX(version) FROM schema_migrations')" -ge 3 ] || fail "migrations not recorded"
ok "apikeys create --db postgres://… migrates the database and stores the key hashed"

start_server
grep -q "$PG_PASSWORD" "$WM_SERVER_LOG" && fail "the database password is in the server log"
"$SRV" users create alice >/dev/null || fail "users create"
single=$("$SRV" preauthkeys create --user alice --expiration 1h) || fail "preauthkeys create"
reusable=$("$SRV" preauthkeys create --user alice --reusable) || fail "preauthkeys create --reusable"
pg_sql "SELECT encode(hash, 'hex') FROM preauth_keys" | grep -q "${single##*-}" && fail "auth key stored in clear"
node n1 register --authkey "$single" --hostname web1 >"$T/r1" || fail "register n1"
grep -q '"ipv4":"100.64.0.1"' "$T/r1" || fail "n1 address: $(cat "$T/r1")"
node n2 register --authkey "$single" --hostname web2 2>"$T/err" && fail "used single-use key accepted"
grep -q 401 "$T/err" || fail "used key status: $(cat "$T/err")"
node n3 register --authkey "$reusable" --hostname web1 >"$T/r3" || fail "register n3"
grep -q '"name":"web1-1"' "$T/r3" || fail "name collision not resolved: $(cat "$T/r3")"
ok "users, pre-auth keys (single-use enforced), enrolment with unique names and addresses"

node n1 map --lines 3 >"$T/map" 2>/dev/null &
mp=$!; WM_PIDS+=("$mp")
wait_for 5 grep -q '"type":"full"' "$T/map" || fail "no full map"
node n4 register --authkey "$reusable" --hostname db1 >/dev/null || fail "register n4"
wait_for 5 grep -q '"peer_added"' "$T/map" || fail "no peer_added delta: $(cat "$T/map")"
node n4 endpoints 192.0.2.20:41641 >/dev/null || fail "endpoints n4"
wait_for 5 grep -q '192.0.2.20:41641' "$T/map" || fail "no endpoint delta"
ok "map stream: full map, peer added, endpoints changed"

cat >"$T/p1" <<'P'
{ "acls": [{"action": "accept", "src": ["*"], "dst": ["*:*"]}] }
P
code=$(curl -s -o "$T/resp" -D "$T/hdr" -w '%{http_code}' -X PUT -H "Authorization: Bearer $WIREMESH_API_KEY" \
	-H 'Content-Type: application/hujson' --data-binary "@$T/p1" "$URL/api/v1/policy")
[ "$code" = 200 ] || fail "policy PUT: $code $(cat "$T/resp")"
code=$(curl -s -o "$T/resp" -w '%{http_code}' -X PUT -H "Authorization: Bearer $WIREMESH_API_KEY" \
	-H 'If-Match: "0000"' -H 'Content-Type: application/hujson' --data-binary "@$T/p1" "$URL/api/v1/policy")
[ "$code" = 412 ] || fail "stale If-Match: $code $(cat "$T/resp")"
ok "policy PUT, stale If-Match refused with 412"

id=$(sed -E 's/.*"id":([0-9]+).*/\1/' "$T/r3")
"$SRV" nodes rename "$id" frontend >/dev/null || fail "rename"
"$SRV" nodes delete --force "$id" >/dev/null || fail "delete"
expect_status 404 "$(api GET "/api/v1/nodes/$id")"
stop_server
unset PORT
# the same database by server.hujson's `db`, then by WIREMESH_DB
printf '{\n\t// PostgreSQL\n\t"db": "%s",\n}\n' "$PG_URL" >"$T/server.hujson"
chmod 600 "$T/server.hujson"
PORT=$(free_port)
"$SRV" serve --config "$T/server.hujson" --listen "127.0.0.1:$PORT" >>"$WM_SERVER_LOG" 2>&1 &
SERVER_PID=$!; WM_PIDS+=("$SERVER_PID"); URL=http://127.0.0.1:$PORT; export WIREMESH_SERVER=$URL
wait_for 10 curl -sf "$URL/healthz" || fail "server with db in server.hujson did not start"
out=$("$SRV" nodes list) || fail "nodes list after restart"
echo "$out" | grep -q web1 && echo "$out" | grep -q db1 || fail "nodes lost across restart: $out"
echo "$out" | grep -q frontend && fail "deleted node came back"
stop_server
PORT=$(free_port)
WIREMESH_DB=$PG_URL "$SRV" serve --listen "127.0.0.1:$PORT" >>"$WM_SERVER_LOG" 2>&1 &
SERVER_PID=$!; WM_PIDS+=("$SERVER_PID"); URL=http://127.0.0.1:$PORT; export WIREMESH_SERVER=$URL
wait_for 10 curl -sf "$URL/healthz" || fail "server with WIREMESH_DB did not start"
node n1 map --lines 1 >"$T/map2" 2>/dev/null || fail "map after restart"
grep -q '"name":"db1"' "$T/map2" || fail "peer missing after restart: $(cat "$T/map2")"
grep -q "$PG_PASSWORD" "$WM_SERVER_LOG" && fail "the database password is in the server log"
ok "restart on the same database (server.hujson db, WIREMESH_DB): nodes kept, deletes kept"

"$SRV" backup --db "$PG_URL" --out "$T/b.sqlite" 2>"$T/err" && fail "backup of PostgreSQL claimed success"
grep -q pg_dump "$T/err" || fail "backup error does not name pg_dump: $(cat "$T/err")"
"$SRV" restore --db "$PG_URL" --from "$T/b.sqlite" 2>"$T/err" && fail "restore into PostgreSQL claimed success"
grep -q pg_restore "$T/err" || fail "restore error does not name pg_restore: $(cat "$T/err")"
ok "backup/restore of a PostgreSQL store point to pg_dump/pg_restore"

# The database ends the server's session: the next request reconnects.
pg_sql "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'wiremesh-server'" >/dev/null
wait_for 10 curl -sf "$URL/healthz" || fail "no reconnect after the database dropped the session"
"$SRV" users list | grep -q alice || fail "API after reconnect"
ok "the server reconnects after the database ends its session"

# The database stops: /healthz answers 503 and says why; after 10 s without
# it the server ends its map streams (their clients move to a replica that
# has the database).
node n1 map --lines 100000 >"$T/map3" 2>/dev/null &
mp3=$!; WM_PIDS+=("$mp3")
wait_for 10 grep -q '"type":"full"' "$T/map3" || fail "no map before stopping the database"
kill -INT "$PG_PID"
wait_for 20 sh -c "! kill -0 $PG_PID 2>/dev/null" || fail "PostgreSQL did not stop"
code=$(curl -s -m 10 -o "$T/h" -w '%{http_code}' "$URL/healthz")
[ "$code" = 503 ] || fail "/healthz with the database down: $code $(cat "$T/h")"
grep -q database "$T/h" || fail "/healthz body does not name the database: $(cat "$T/h")"
kill -0 "$SERVER_PID" || fail "the server died with the database"
ok "/healthz is 503 while the database is down; the server stays up"
kill -0 "$mp3" || fail "the map stream ended at once"
wait_for 25 sh -c "! kill -0 $mp3 2>/dev/null" || fail "the map stream was not ended after 10 s without the database"
grep -q 'no database for 10 s: ending' "$WM_SERVER_LOG" || fail "no log line for the ended streams"
ok "after 10 s without the database the server ends its map streams"

# It stops cleanly even with the database gone (under ASan: no leak, no error).
stop_server
wait "$SERVER_PID" 2>/dev/null
! grep -l 'Sanitizer\|runtime error:' "$WM_SERVER_LOG" 2>/dev/null ||
	fail "sanitizer report: $(grep -A5 'Sanitizer\|runtime error:' "$WM_SERVER_LOG" | head -20)"
ok "the server stops cleanly"
