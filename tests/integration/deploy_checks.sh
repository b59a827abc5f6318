#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The deploy kit without traps: the man pages state the defaults --help
# states (wiremeshd, wiremesh-derper) and the server's keepalive_interval the
# code uses; the failover bound is the same in routes.md, operations.md and
# the man page; node.nft keeps SSH open (loaded in a namespace: port 22
# connects, another port is dropped); the systemd units name man pages of
# section 8; install-deps keeps the test tools out of the runtime list and
# never lets an install start a service.
. "$(dirname "$0")/lib.sh"
D=$WM_TOP/deploy

# ---- man-page defaults against --help ----
manpage() { MANWIDTH=200 man -l "$1" 2>/dev/null | col -b | tr "\t" " "; }
command -v man >/dev/null || skip "man (man-db) missing"
n=0
for b in wiremeshd wiremesh-derper; do
	"$WM_BIN/$b" --help >"$T/h" 2>&1
	manpage "$D/man/$b.8" | tr -s ' \n' ' ' >"$T/m"
	# every "(default VALUE" of --help must be in the man page's paragraph of that flag
	c=$(python3 - "$T/h" "$T/m" <<'PY'
import re, sys
helptext = open(sys.argv[1]).read(); man = open(sys.argv[2]).read()
pairs, flag = [], None
for line in helptext.splitlines():
    m = re.match(r"\s*(--[a-z-]+)", line)
    if m: flag = m.group(1)
    d = re.search(r"\(default ([^;),]*)", line)
    if flag and d:
        pairs.append((flag, d.group(1).strip().rstrip(".")))
        flag = None
for flag, val in pairs:
    # the man page's paragraphs for this flag: from the flag to the next option
    segs = [man[i.start():i.start() + 400].split(" --", 2)[:2] for i in re.finditer(re.escape(flag) + r"\b", man)]
    if not any("default " + val in "".join(seg) for seg in segs):
        print("FAIL %s default %s" % (flag, val)); sys.exit(1)
print(len(pairs))
PY
) || fail "$b: --help and $b(8) disagree: $c"
	n=$((n + c))
done
[ "$n" -ge 6 ] || fail "compared only $n defaults"
# keepalive_interval: what the server uses, the man page and the example config
P=$(free_port)
"$SRV" serve --listen "127.0.0.1:$P" --db "$T/db.sqlite" 2>"$T/s.log" &
WM_PIDS+=($!)
wait_for 10 grep -q 'listening' "$T/s.log" || fail "server: $(cat "$T/s.log")"
k=$(sed -n 's/.*keepalive_interval=\([0-9]*s\).*/\1/p' "$T/s.log" | head -1)
[ -n "$k" ] || fail "the server does not log its keepalive_interval"
manpage "$D/man/wiremesh-server.8" | tr -s ' \n' ' ' | grep -q "keepalive_interval map stream keepalive (default $k)" ||
	fail "wiremesh-server(8) keepalive_interval default differs from the code's $k"
grep -q "\"keepalive_interval\": \"$k\"" "$D/config/server.hujson" || fail "server.hujson keepalive_interval is not $k"
grep -q "keepalive_interval\` (default ${k%s} s)" "$WM_TOP/docs/routes.md" || fail "routes.md keepalive default"
for f in "$WM_TOP/docs/routes.md" "$WM_TOP/docs/operations.md"; do
	grep -q '2 × `keepalive_interval` + 5 s' "$f" || fail "$(basename "$f") does not give the failover bound 2 × keepalive_interval + 5 s"
done
grep -q 'within 2 x this + 5s' "$D/man/wiremesh-server.8" || fail "wiremesh-server(8) failover bound"
grep -q 'second keepalive write' "$WM_TOP/docs/operations.md" && fail "operations.md still gives the old failover explanation"
ok "$n defaults of --help match the man pages; keepalive_interval $k and the failover bound agree in code, man page, config and docs"

# ---- node.nft keeps SSH ----
NS=wmfw$$
ip netns add "$NS" || fail "ip netns add"
WM_CLEANUP+=("ip netns del $NS")
ip link add "f$$a" type veth peer name "f$$b" || fail "veth"
WM_CLEANUP+=("ip link del f$$a")
ip link set "f$$b" netns "$NS"
ip addr add 198.51.100.5/30 dev "f$$a"; ip link set "f$$a" up
ip -n "$NS" addr add 198.51.100.6/30 dev "f$$b"; ip -n "$NS" link set "f$$b" up; ip -n "$NS" link set lo up
ip netns exec "$NS" nft -f "$D/firewall/node.nft" || fail "node.nft does not load"
for port in 22 2222; do
	ip netns exec "$NS" python3 -c "
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(('198.51.100.6', $port)); s.listen(4)
while True:
    c, _ = s.accept(); c.sendall(b'hello\n'); c.close()" &
	WM_PIDS+=($!)
done
wait_for 5 ip netns exec "$NS" ss -ltn 'sport = :22' | grep -q LISTEN
reach() { timeout 3 bash -c "exec 3<>/dev/tcp/198.51.100.6/$1 && head -c5 <&3" 2>/dev/null | grep -q hello; }
wait_for 5 reach 22 || fail "node.nft drops SSH"
reach 2222 && fail "node.nft lets another inbound port through"
grep -q 'tcp dport 22 accept comment' "$D/firewall/node.nft" || fail "the SSH rule has no comment"
ok "node.nft keeps SSH open (port 22 connects from outside, 2222 does not)"

# ---- systemd units name section-8 man pages ----
for u in "$D"/systemd/*.service; do
	grep -o 'man:[a-z-]*([0-9])' "$u" | while read -r m; do
		page=${m#man:}; name=${page%(*}; sec=${page#*(}; sec=${sec%)}
		[ -f "$D/man/$name.$sec" ] || fail "$(basename "$u") names $m but deploy/man has no $name.$sec"
	done || exit 1
done
ok "the units' Documentation= man pages exist in their sections (deploy_kit runs systemd-analyze verify --man=yes)"

# ---- install-deps: runtime vs test packages, no service starts ----
runtime=$(sed -n '/^build="/,/"$/p' "$WM_TOP/scripts/install-deps.sh" | tr -d '"' | sed 's/^build=//')
for t in clang coturn iperf3 wireguard-go postgresql dnsmasq chromium pebble; do
	echo " $runtime " | tr '\n' ' ' | grep -qw "$t" && fail "install-deps installs test tool $t on a production server"
done
grep -q 'policy-rc.d' "$WM_TOP/scripts/install-deps.sh" && grep -q 'exit 101' "$WM_TOP/scripts/install-deps.sh" ||
	fail "install-deps does not stop services from starting"
scripts_out=$("$WM_TOP/scripts/install-deps.sh" 2>&1) || fail "install-deps (runtime) on this machine: $scripts_out"
ok "install-deps: runtime list free of test tools; services never started (policy-rc.d exit 101)"
