#!/usr/bin/env bash
# Runs every tests/integration/*.sh (or those named) in turn. A script exits
# 0 on success, 77 when it cannot run here (said on its last line), other
# values on failure. Each script cleans up after itself, also on failure.
set -u
top=$(cd "$(dirname "$0")/.." && pwd)
export WM_TOP=$top WM_BIN=${WM_BIN:-$top/bin}
pass=0 fail=0 skip=0 failed=""
scripts=("$@")
[ ${#scripts[@]} -gt 0 ] || scripts=("$top"/tests/integration/*.sh)
for t in "${scripts[@]}"; do
	[ -e "$t" ] || continue
	name=$(basename "$t" .sh)
	case $name in lib|netns) continue ;; esac	# shared helper libraries, not tests
	start=$(date +%s)
	log=$(mktemp /tmp/wm-it-XXXXXX)
	if timeout 900 bash "$t" >"$log" 2>&1; then st=0; else st=$?; fi
	dur=$(( $(date +%s) - start ))
	if [ "$st" -eq 0 ]; then
		pass=$((pass + 1)); echo "PASS $name (${dur}s)"
	elif [ "$st" -eq 77 ]; then
		skip=$((skip + 1)); echo "SKIP $name: $(tail -n 1 "$log")"
	else
		fail=$((fail + 1)); failed="$failed $name"
		echo "FAIL $name (exit $st, ${dur}s); last lines:"
		tail -n 40 "$log" | sed 's/^/    /'
	fi
	rm -f "$log"
done
echo "integration: $pass passed, $fail failed, $skip skipped"
[ "$fail" -eq 0 ]
