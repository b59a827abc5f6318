#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# `make demo` as CI runs it: scripts/demo.sh with these binaries must exit 0
# (it checks every step's output itself) and leave no namespace behind.
set -u
WM_TOP=${WM_TOP:-$(cd "$(dirname "$0")/../.." && pwd)}
WM_BIN=${WM_BIN:-$WM_TOP/bin}
[ "$(id -u)" = 0 ] || { echo "needs root (network namespaces)"; exit 77; }
[ -c /dev/net/tun ] || { echo "no /dev/net/tun"; exit 77; }
log=$(mktemp /tmp/wm-demo-XXXXXX)
trap 'rm -f "$log"' EXIT
WM_BIN=$WM_BIN bash "$WM_TOP/scripts/demo.sh" >"$log" 2>&1 &
pid=$!
wait $pid
rc=$?
grep -v '^ts=' "$log"
[ $rc = 0 ] || { echo "FAIL: the demo exited $rc"; exit 1; }
grep -q '^demo: every step behaved as shown' "$log" || { echo "FAIL: the demo did not finish its steps"; exit 1; }
[ "$(grep -c '✓' "$log")" -ge 9 ] || { echo "FAIL: fewer than 9 checked steps"; exit 1; }
left=$(ip netns list | grep "^wm${pid}" || true)
[ -z "$left" ] || { echo "FAIL: namespaces left behind: $left"; exit 1; }
echo "ok - make demo: every step behaved as shown, nothing left behind"
