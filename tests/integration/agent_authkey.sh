#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The auth key of `wiremesh up` stays out of other users' sight (issue 11,
# item 10): --authkey file:PATH reads it from a file (refused when the file
# is readable by group or others), WIREMESH_AUTHKEY gives it through the
# environment, and a key given as --authkey KEY is blanked from
# /proc/PID/cmdline while `up` runs. A stand-in for wiremeshd on the local
# socket records what the CLI sends.
. "$(dirname "$0")/lib.sh"

CLI=$WM_BIN/wiremesh
[ -x "$CLI" ] || fail "no $CLI"
KEY=wm-auth-abcdefgh-0123456789abcdef0123456789abcdef0123
cat >"$T/fake.py" <<'PY'
import json, os, socket, sys, time
path, out, mode = sys.argv[1], sys.argv[2], sys.argv[3]
s = socket.socket(socket.AF_UNIX); s.bind(path); s.listen(8)
print("ready", flush=True)
while True:
    c, _ = s.accept(); data = b""
    while not data.endswith(b"\n"):
        d = c.recv(65536)
        if not d: break
        data += d
    open(out, "a").write(data.decode())
    if mode == "hang":
        time.sleep(30)
    c.sendall(b'{"ok":true,"text":"ok\\n","data":{}}\n'); c.close()
PY
fake() {	# NAME MODE
	python3 "$T/fake.py" "$T/$1.sock" "$T/$1.req" "$2" >"$T/$1.out" 2>&1 &
	WM_PIDS+=("$!")
	wait_for 5 grep -q ready "$T/$1.out" || fail "fake daemon $1"
}
sent_key() { python3 -c 'import json,sys; print(json.loads(open(sys.argv[1]).readline()).get("authkey",""))' "$T/$1.req"; }

# 1. file:PATH, mode 0600
fake f reply
printf '%s\n' "$KEY" >"$T/ak"; chmod 600 "$T/ak"
"$CLI" --socket "$T/f.sock" up --authkey "file:$T/ak" >/dev/null || fail "up --authkey file:"
[ "$(sent_key f)" = "$KEY" ] || fail "file: sent $(sent_key f)"
chmod 644 "$T/ak"
out=$("$CLI" --socket "$T/f.sock" up --authkey "file:$T/ak" 2>&1) && fail "a world-readable key file was taken"
echo "$out" | grep -q 'chmod 600' || fail "no clear error for a readable key file: $out"
ok "--authkey file:PATH reads the key from a 0600 file and refuses a readable one"

# 2. WIREMESH_AUTHKEY
fake e reply
WIREMESH_AUTHKEY=$KEY "$CLI" --socket "$T/e.sock" up >/dev/null || fail "up with WIREMESH_AUTHKEY"
[ "$(sent_key e)" = "$KEY" ] || fail "environment: sent $(sent_key e)"
ok "WIREMESH_AUTHKEY gives the key"

# 3. --authkey KEY is not in /proc/PID/cmdline while up runs
fake h hang
"$CLI" --socket "$T/h.sock" up --authkey "$KEY" >/dev/null 2>&1 &
up=$!; WM_PIDS+=("$up")
wait_for 5 test -s "$T/h.req" || fail "up did not send its request"
[ "$(sent_key h)" = "$KEY" ] || fail "--authkey sent $(sent_key h)"
! tr '\0' ' ' <"/proc/$up/cmdline" | grep -q "$KEY" || fail "the key is in /proc/$up/cmdline: $(tr '\0' ' ' <"/proc/$up/cmdline")"
ok "--authkey KEY is blanked from /proc/PID/cmdline"
