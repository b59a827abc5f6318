#!/usr/bin/env bash
# Runs every fuzzer over its seed corpus plus a short burst of new inputs.
# A crash, leak or sanitizer report fails the run.
set -eu
top=$(cd "$(dirname "$0")/../.." && pwd)
secs=${FUZZ_SECONDS:-10}
n=0
for f in "$top"/build/fuzz/fuzz_*; do
	[ -x "$f" ] || continue
	name=$(basename "$f")
	corpus="$top/tests/fuzz/corpus/${name#fuzz_}"
	work=$(mktemp -d /tmp/wm-fuzz-XXXXXX)
	trap 'rm -rf "$work"' EXIT
	[ -d "$corpus" ] && cp -r "$corpus"/. "$work"/ 2>/dev/null || true
	echo "fuzz: $name (${secs}s)"
	"$f" -max_total_time="$secs" -max_len=65536 -print_final_stats=0 "$work" >"$work.log" 2>&1 || {
		tail -n 60 "$work.log"; rm -f "$work.log"; exit 1; }
	rm -rf "$work" "$work.log"
	n=$((n + 1))
done
echo "fuzz: $n targets ran clean"
