#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Runs the policy engine over the Tailscale conformance corpus and fails when
# a case listed in tests/conformance/baseline.txt (it passed before) fails now.
set -u
WM_TOP=${WM_TOP:-$(cd "$(dirname "$0")/../.." && pwd)}
WM_BIN=${WM_BIN:-$WM_TOP/bin}
case "$WM_BIN" in
*build/san/bin) build=$WM_TOP/build/san ;;
*) build=$WM_TOP/build/release ;;
esac
dir=${WM_CONFORMANCE_DIR:-$WM_TOP/tests/conformance/tailscale-saas}
if [ ! -d "$dir/acl" ]; then
	echo "conformance corpus not found at $dir (set WM_CONFORMANCE_DIR)"
	exit 77
fi
runner=$build/policy-conformance
if [ ! -x "$runner" ]; then
	echo "FAIL: $runner not built (make binaries builds it)"
	exit 1
fi
out=$(mktemp /tmp/wmpol-conf-XXXXXX)
trap 'rm -f "$out"' EXIT
WM_CONFORMANCE_DIR=$dir "$runner" --baseline "$WM_TOP/tests/conformance/baseline.txt" "$dir" >"$out" 2>&1
rc=$?
grep '^conformance:' "$out" || { echo "FAIL: no summary line"; tail -20 "$out"; exit 1; }
if [ "$rc" -ne 0 ]; then
	grep '^REGRESSION' "$out"
	# Show the differences of the regressed cases.
	for id in $(grep '^REGRESSION' "$out" | awk '{print $2}'); do
		awk -v id="$id" '$0 ~ "^FAIL "id {p=1; print; next} /^(FAIL|ok) / {p=0} p' "$out" | head -40
	done
	echo "FAIL: conformance regressed"
	exit 1
fi
# The baseline must be meaningful: every acl case passes today.
grep -q '^conformance: acl=\([0-9]*\)/\1 ' "$out" || { echo "FAIL: not every acl case passes"; exit 1; }
echo "PASS: no conformance regression"
