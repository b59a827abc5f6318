#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Lost updates (issue 11, items 1 and 9): three threads of one node post
# endpoints (with advertised routes) as fast as they can while an admin tags
# and untags it, approves and revokes its route, and expires it, 100 times
# each (WM_RACE_ROUNDS). No admin change may be reverted by a node request
# (each writes only the fields it owns, in one transaction), the server must
# not abort (store lock race), and no admin call may fail.
. "$(dirname "$0")/lib.sh"

ROUNDS=${WM_RACE_ROUNDS:-100}
RACE=$WM_BUILD/wm-race
[ -x "$RACE" ] || fail "$RACE not built"

bootstrap
# The posters sign thousands of requests a minute: lift their replay share (replay_per_machine).
WIREMESH_REPLAY_PER_MACHINE=1000000 start_server
"$SRV" users create alice >/dev/null || fail "users create"
AK=$("$SRV" preauthkeys create --user alice --reusable) || fail "preauthkeys create"

"$RACE" --server "$URL" --api-key "$WIREMESH_API_KEY" --authkey "$AK" --rounds "$ROUNDS" \
	--threads 3 >"$T/race.out" 2>"$T/race.err"
rc=$?
cat "$T/race.out"
[ "$rc" = 0 ] || fail "lost updates or failed admin calls: $(cat "$T/race.out") $(head -5 "$T/race.err")"
grep -q "reverted: expire=0/$ROUNDS tags=0/$((2 * ROUNDS)) routes=0/$((2 * ROUNDS))" "$T/race.out" ||
	fail "unexpected summary: $(cat "$T/race.out")"
kill -0 "$SERVER_PID" || fail "server died"
! grep -q 'within a transaction' "$T/server.log" || fail "nested transaction errors in the server log"
ok "$ROUNDS rounds of admin changes racing node endpoint posts: none reverted"

stop_server
! grep -l 'Sanitizer\|runtime error:' "$T"/*.log 2>/dev/null ||
	fail "sanitizer report: $(grep -h -A5 'Sanitizer\|runtime error:\|ThreadSanitizer' "$T"/*.log | head -20)"
ok "no sanitizer report"
