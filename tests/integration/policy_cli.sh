#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The offline `policy check` / `policy explain` subcommands through the
# policy-cli driver: exit codes, FILE:LINE:COL diagnostics, failing tests,
# explain verdicts, the size limit.
set -u
WM_TOP=${WM_TOP:-$(cd "$(dirname "$0")/../.." && pwd)}
WM_BIN=${WM_BIN:-$WM_TOP/bin}
case "$WM_BIN" in
*build/san/bin) build=$WM_TOP/build/san ;;
*) build=$WM_TOP/build/release ;;
esac
cli=$build/policy-cli
[ -x "$cli" ] || { echo "FAIL: $cli not built (make binaries builds it)"; exit 1; }
work=$(mktemp -d /tmp/wmpol-cli-XXXXXX)
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

# 1. The example policy is valid and its tests pass.
"$cli" check "$WM_TOP/policy/examples/acls.hujson" >"$work/out" 2>"$work/err" ||
	fail "example rejected: $(cat "$work/err")"
grep -q "ok: 8 rules, 4 grants, 7 tests passed" "$work/out" || fail "unexpected check output: $(cat "$work/out")"

# 2. Several problems: one FILE:LINE:COL: line each, exit 1.
cat >"$work/bad.hujson" <<'P'
{
  "groups": {"group:a": ["alice@"]},
  "acl": [],
  "acls": [
    {"action": "deny", "src": ["group:b"], "dst": ["tag:nope:22", "*:ssh"]},
  ],
}
P
if "$cli" check "$work/bad.hujson" >"$work/out" 2>"$work/err"; then fail "bad policy accepted"; fi
f=$work/bad.hujson
grep -qx "$f:3:3: unknown key \"acl\" in the policy (did you mean \"acls\"?)" "$work/err" || fail "no unknown-key line: $(cat "$work/err")"
grep -q "^$f:5:16: action=\"deny\" is not supported" "$work/err" || fail "no action line: $(cat "$work/err")"
grep -q "^$f:5:32: src=group not found: \"group:b\"" "$work/err" || fail "no group line: $(cat "$work/err")"
grep -q "^$f:5:52: dst=tag not found: \"tag:nope\"" "$work/err" || fail "no tag line: $(cat "$work/err")"
grep -q "^$f:5:67: dst=\"\*:ssh\": port range \"ssh\": invalid first integer" "$work/err" || fail "no port line: $(cat "$work/err")"
[ "$(wc -l <"$work/err")" -eq 5 ] || fail "expected 5 diagnostics: $(cat "$work/err")"

# 3. Syntax error with its position.
printf '{\n  "acls": [\n    {"action": "accept",, }\n  ]\n}\n' >"$work/syntax.hujson"
if "$cli" check "$work/syntax.hujson" 2>"$work/err"; then fail "syntax error accepted"; fi
grep -q "^$work/syntax.hujson:3:25: expected a string key or '}' in object, found ','" "$work/err" ||
	fail "syntax diagnostic: $(cat "$work/err")"

# 4. A failing test names the test's position and the destination.
cat >"$work/test.hujson" <<'P'
{
  "tagOwners": {"tag:web": []},
  "acls": [{"action": "accept", "src": ["bob@"], "dst": ["tag:web:80"]}],
  "tests": [
    {"src": "bob@", "accept": ["tag:web:80", "tag:web:443"]},
  ],
}
P
if "$cli" check "$work/test.hujson" 2>"$work/err"; then fail "failing test accepted"; fi
grep -q "^$work/test.hujson:5:5: test failed: \"bob@\" cannot reach \"tag:web:443\"" "$work/err" ||
	fail "test diagnostic: $(cat "$work/err")"
[ "$(wc -l <"$work/err")" -eq 1 ] || fail "only the failing destination should be reported: $(cat "$work/err")"

# 5. explain: accept with the rule's line, deny, bad input.
"$cli" explain --file "$work/test.hujson" bob@ tag:web:80 >"$work/out" || fail "explain accept exit $?"
grep -q "^accept: bob@ -> tag:web:80 (tcp)" "$work/out" || fail "explain output: $(cat "$work/out")"
grep -q "rule at line 3" "$work/out" || fail "explain rule line: $(cat "$work/out")"
"$cli" explain --file "$work/test.hujson" bob@ tag:web:80 --proto udp >"$work/out"
[ $? -eq 0 ] || fail "udp should be accepted (no proto = tcp, udp, icmp)"
"$cli" explain --file "$work/test.hujson" alice@ tag:web:80 >"$work/out"
[ $? -eq 1 ] || fail "explain deny exit"
grep -q "^deny:" "$work/out" || fail "explain deny output: $(cat "$work/out")"
"$cli" explain --file "$work/test.hujson" bob@ tag:web >"$work/out" 2>&1
[ $? -eq 2 ] || fail "explain without port should be an error"

# 6. Oversized input is refused without parsing it.
head -c 1100000 /dev/zero | tr '\0' ' ' >"$work/big.hujson"
if "$cli" check "$work/big.hujson" 2>"$work/err"; then fail "huge policy accepted"; fi
grep -q "larger than" "$work/err" || fail "size diagnostic: $(cat "$work/err")"
echo "PASS: policy check/explain"
