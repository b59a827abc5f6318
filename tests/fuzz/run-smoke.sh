#!/usr/bin/env bash
# Runs every fuzzer over its seed corpus plus a short burst of new inputs,
# FUZZ_JOBS (default: the number of CPUs) at a time, FUZZ_SECONDS (default
# 10) each. A crash, leak or sanitizer report fails the run.
set -eu
top=$(cd "$(dirname "$0")/../.." && pwd)
secs=${FUZZ_SECONDS:-10}
jobs=${FUZZ_JOBS:-$(nproc)}
export top secs

one() {	# one FUZZER: its corpus copied to a scratch dir (new inputs stay there)
	local f=$1 name work rc=0
	name=$(basename "$f")
	work=$(mktemp -d /tmp/wm-fuzz-XXXXXX)
	corpus="$top/tests/fuzz/corpus/${name#fuzz_}"
	[ -d "$corpus" ] && cp -r "$corpus"/. "$work"/ 2>/dev/null || true
	"$f" -max_total_time="$secs" -max_len=65536 -print_final_stats=0 "$work" >"$work.log" 2>&1 || rc=$?
	if [ "$rc" -ne 0 ]; then
		echo "fuzz: $name FAILED"
		tail -n 60 "$work.log"
	else
		echo "fuzz: $name (${secs}s) clean"
	fi
	rm -rf "$work" "$work.log"
	return "$rc"
}
export -f one

list=()
for f in "$top"/build/fuzz/fuzz_*; do
	[ -x "$f" ] && list+=("$f")
done
[ "${#list[@]}" -gt 0 ] || { echo "fuzz: no fuzzers built" >&2; exit 1; }
if printf '%s\n' "${list[@]}" | xargs -P "$jobs" -I{} bash -c 'one "$1"' _ {}; then
	echo "fuzz: ${#list[@]} targets ran clean ($jobs at a time)"
else
	echo "fuzz: a target failed" >&2
	exit 1
fi
