#!/usr/bin/env bash
# Runs the unit runner, then every integration script, and prints one
# closing line: "N passed, N failed", after the names of what failed (CI
# may show only the end of the output).
set -u
runner=$1
top=$(cd "$(dirname "$0")/.." && pwd)
pass=0 fail=0
echo "== unit tests"
if out=$("$runner" 2>&1); then st=0; else st=$?; fi
printf '%s\n' "$out" | grep -v '^$' | tail -n 40
line=$(printf '%s\n' "$out" | grep -E '^[0-9]+%: Checks: ' | tail -n 1)
checks=$(sed -E 's/.*Checks: ([0-9]+).*/\1/' <<<"$line")
fails=$(sed -E 's/.*Failures: ([0-9]+), Errors: ([0-9]+).*/\1+\2/' <<<"$line")
nf=0
if [ -n "$line" ]; then
	nf=$((fails)); pass=$((pass + checks - nf)); fail=$((fail + nf))
fi
if [ "$st" -ne 0 ] && [ "$nf" -eq 0 ]; then fail=$((fail + 1)); fi
echo "== integration tests"
if "$top/tests/run-integration.sh" > /tmp/wm-integration.$$ 2>&1; then ist=0; else ist=$?; fi
cat /tmp/wm-integration.$$
ip=$(grep -E '^integration: [0-9]+ passed' /tmp/wm-integration.$$ | sed -E 's/integration: ([0-9]+) passed, ([0-9]+) failed.*/\1/')
if_=$(grep -E '^integration: [0-9]+ passed' /tmp/wm-integration.$$ | sed -E 's/integration: ([0-9]+) passed, ([0-9]+) failed.*/\2/')
pass=$((pass + ${ip:-0})); fail=$((fail + ${if_:-0}))
[ "$ist" -eq 0 ] || [ "${if_:-0}" -gt 0 ] || fail=$((fail + 1))
if [ "$fail" -gt 0 ]; then
	echo "== what failed"
	printf '%s\n' "$out" | grep -E ':[FE]:' | head -n 20
	[ "$st" -eq 0 ] || [ "$nf" -gt 0 ] || echo "unit runner exited with status $st"
	grep -E '^FAIL ' /tmp/wm-integration.$$ | head -n 20
fi
rm -f /tmp/wm-integration.$$
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
