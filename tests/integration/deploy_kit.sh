#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The deployment kit: every command's --help, the example configs (server
# config, policy, DERP map) load, the firewall files parse (nft -c), the
# systemd units verify, `make install DESTDIR=` puts every file in place,
# and backup/restore/newer-database refusal behave as docs/operations.md says.
. "$(dirname "$0")/lib.sh"

D=$WM_TOP/deploy
DERPER=$WM_BIN/wiremesh-derper

# ---- --help of every command ----
# help_ok NAME CMD...: exit 0 and a usage text on stdout.
help_ok() {
	local name=$1; shift
	"$@" >"$T/help.out" 2>"$T/help.err" || fail "$name: exit $? (stderr: $(head -c 300 "$T/help.err"))"
	grep -qi 'usage' "$T/help.out" || fail "$name: no usage text on stdout"
}
help_ok "wiremesh-server --help" "$SRV" --help
for v in serve users nodes preauthkeys apikeys policy backup restore; do
	help_ok "wiremesh-server $v --help" "$SRV" "$v" --help
done
help_ok "wiremesh-server policy check --help" "$SRV" policy check --help
help_ok "wiremesh-server policy explain --help" "$SRV" policy explain --help
help_ok "wiremesh-derper --help" "$DERPER" --help
help_ok "wiremesh-wg --help" "$WM_BIN/wiremesh-wg" --help
n_agent=0
if [ -x "$WM_BIN/wiremeshd" ]; then
	help_ok "wiremeshd --help" "$WM_BIN/wiremeshd" --help
	n_agent=$((n_agent + 1))
fi
if [ -x "$WM_BIN/wiremesh" ]; then
	help_ok "wiremesh --help" "$WM_BIN/wiremesh" --help
	# One usage text covers every verb (the server's verbs have their own).
	for v in up down status ping netcheck ip debug; do
		grep -qE "^ +$v( |\$)" "$T/help.out" || fail "wiremesh --help does not describe \"$v\""
	done
	n_agent=$((n_agent + 1))
fi
# A wrong flag is a usage error, not a crash or a silent success.
if "$SRV" serve --no-such-flag >/dev/null 2>&1; then fail "serve accepted an unknown flag"; fi
ok "--help of every command (agent binaries present: $n_agent of 2)"

# ---- the documents keep up with the code ----
# Every option of the server's table is described in the example config, and
# every metric the server and relay export is in docs/operations.md.
opts=$(sed -n 's/^[[:space:]]*{ "\([a-z_0-9]*\)", O_[A-Z0-9]*,.*/\1/p' "$WM_TOP/server/server.c")
[ "$(echo "$opts" | wc -w)" -ge 15 ] || fail "cannot read the option table of server/server.c"
for o in $opts; do
	grep -q "\"$o\"" "$D/config/server.hujson" || fail "deploy/config/server.hujson does not describe \"$o\""
done
metrics=$(cat "$WM_TOP"/server/*.c "$WM_TOP"/relay/*.c | grep -oE 'wiremesh_[a-z0-9_]+' |
	sed -E 's/_(bucket|sum|count)$//' | sort -u)
[ "$(echo "$metrics" | wc -w)" -ge 10 ] || fail "cannot find the metric names"
for m in $metrics; do
	grep -q "\`$m[\`{]" "$WM_TOP/docs/operations.md" || fail "docs/operations.md does not list metric $m"
done
ok "server.hujson describes all $(echo "$opts" | wc -w) options; operations.md lists all $(echo "$metrics" | wc -w) metrics"

# ---- example policy ----
"$SRV" policy check "$D/config/acls.hujson" >"$T/pc.out" 2>&1 ||
	fail "deploy/config/acls.hujson does not pass: $(cat "$T/pc.out")"
# The check is real: break one of its tests and it must fail, naming the line.
sed 's/"accept": \["tag:server:5432"\]/"deny": ["tag:server:5432"]/' "$D/config/acls.hujson" >"$T/bad-acls.hujson"
cmp -s "$D/config/acls.hujson" "$T/bad-acls.hujson" && fail "test mutation did not apply"
if "$SRV" policy check "$T/bad-acls.hujson" >"$T/pc.out" 2>&1; then
	fail "a policy with a failing test passed the check"
fi
grep -q 'bad-acls.hujson:[0-9]*:[0-9]*:' "$T/pc.out" || fail "no FILE:LINE:COL diagnostic: $(cat "$T/pc.out")"
ok "deploy/config/acls.hujson passes policy check (and a broken copy does not)"

# ---- DERP map: parsed by the same code the agent and derper use ----
# netcheck loads the map first; run it in an empty network namespace so that
# no probe can leave the machine.
if [ "$(id -u)" -eq 0 ] && command -v unshare >/dev/null; then
	unshare -n "$DERPER" debug netcheck --derp-map "$D/config/derpmap.json" >"$T/nc.out" 2>&1 || true
	grep -q '^derp map:' "$T/nc.out" && fail "deploy/config/derpmap.json: $(cat "$T/nc.out")"
	grep -q 'DERP latency' "$T/nc.out" || fail "netcheck did not run on the map: $(cat "$T/nc.out")"
	sed 's/"RegionID": 901,/"RegionID": 907,/' "$D/config/derpmap.json" >"$T/bad-derp.json"
	unshare -n "$DERPER" debug netcheck --derp-map "$T/bad-derp.json" >"$T/nc.out" 2>&1 &&
		fail "a DERP map with a wrong RegionID was accepted"
	grep -q '^derp map:.*RegionID' "$T/nc.out" || fail "no DERP map diagnostic: $(cat "$T/nc.out")"
	ok "deploy/config/derpmap.json parses (and a broken copy does not)"
else
	echo "# not root: DERP map parse check skipped"
fi

# ---- server.hujson: the server starts with it ----
# Paths are redirected to the scratch directory through the environment,
# which wins over the file: every other option comes from the example.
PORT=$(free_port)
WM_SERVER_LOG=$T/server.log
STUN_PORT=$(free_port)
WIREMESH_LISTEN=127.0.0.1:$PORT WIREMESH_DB=$T/db.sqlite WIREMESH_TLS_CERT= WIREMESH_TLS_KEY= \
WIREMESH_DERP_MAP=$D/config/derpmap.json WIREMESH_POLICY_FILE=$D/config/acls.hujson \
WIREMESH_STUN_LISTEN=127.0.0.1:$STUN_PORT \
	"$SRV" serve --config "$D/config/server.hujson" >"$WM_SERVER_LOG" 2>&1 &
SERVER_PID=$!
WM_PIDS+=("$SERVER_PID")
URL=http://127.0.0.1:$PORT
wait_for 10 curl -sf "$URL/healthz" || fail "server with deploy/config/server.hujson did not become healthy"
grep -q 'msg="policy loaded".*rules=7 grants=0 tests=4' "$WM_SERVER_LOG" || fail "example policy not loaded"
curl -sf "$URL/metrics" | grep -q '^wiremesh_nodes 0' || fail "/metrics lacks wiremesh_nodes"
# The example turns on the embedded relay and STUN.
[ "$(curl -s -o /dev/null -w '%{http_code}' "$URL/derp/probe")" = 200 ] || fail "embedded relay is not on"
[ "$(curl -s -o /dev/null -w '%{http_code}' "$URL/generate_204")" = 204 ] || fail "/generate_204"
"$DERPER" debug stun "127.0.0.1:$STUN_PORT" >"$T/stun.out" 2>&1 || fail "STUN: $(cat "$T/stun.out")"
grep -q '127.0.0.1' "$T/stun.out" || fail "STUN did not report our address: $(cat "$T/stun.out")"
bootstrap
api PUT /api/v1/policy '{}' >"$T/put.out"
grep -q '^409 ' "$T/put.out" || fail "policy_file set but PUT was not refused with 409: $(cat "$T/put.out")"
expect_status 201 "$(api POST /api/v1/users '{"name":"alice"}')"
ok "the server runs with deploy/config/server.hujson (embedded relay, STUN), the example DERP map and policy file"

# ---- backup while serving, restore, newer database refused ----
"$SRV" backup --db "$T/db.sqlite" --out "$T/backup.sqlite" >"$T/bk.out" 2>&1 || fail "backup: $(cat "$T/bk.out")"
[ "$(stat -c %a "$T/backup.sqlite")" = 600 ] || fail "backup file is not mode 0600"
[ ! -e "$T/backup.sqlite-wal" ] || fail "backup left a -wal file: it must be one self-contained file"
if "$SRV" backup --db "$T/db.sqlite" --out "$T/backup.sqlite" >/dev/null 2>&1; then
	fail "backup overwrote an existing file"
fi
expect_status 201 "$(api POST /api/v1/users '{"name":"bob"}')"	# after the backup
stop_server
"$SRV" restore --db "$T/db.sqlite" --from "$T/backup.sqlite" >"$T/rs.out" 2>&1 || fail "restore: $(cat "$T/rs.out")"
[ -e "$T/db.sqlite.pre-restore" ] || fail "restore did not keep the previous database"
unset PORT
DB=$T/db.sqlite start_server
users=$(api GET /api/v1/users)
expect_status 200 "$users"
echo "$users" | grep -q '"alice"' || fail "restored database lacks alice: $users"
echo "$users" | grep -q '"bob"' && fail "restored database has bob, created after the backup: $users"
stop_server
# Upgrade rule: a database written by a newer binary is refused at start.
"$SRV" backup --db "$T/db.sqlite" --out "$T/future.sqlite" >/dev/null 2>&1 || fail "second backup"
if command -v sqlite3 >/dev/null; then
	sqlite3 "$T/future.sqlite" "INSERT INTO schema_migrations(version, name, applied_at) VALUES (999999, 'future', 0)"
	if "$SRV" serve --listen 127.0.0.1:0 --db "$T/future.sqlite" >"$T/future.log" 2>&1; then
		fail "the server started on a database newer than itself"
	fi
	grep -q 'newer than this binary' "$T/future.log" || fail "no clear message: $(cat "$T/future.log")"
	if "$SRV" restore --db "$T/db.sqlite" --from "$T/future.sqlite" >"$T/rs.out" 2>&1; then
		fail "restore accepted a backup from a newer version"
	fi
	sqlite3 "$T/other.sqlite" "CREATE TABLE t(a)"
	if "$SRV" restore --db "$T/db.sqlite" --from "$T/other.sqlite" >"$T/rs.out" 2>&1; then
		fail "restore accepted an SQLite file that is not a wiremesh database"
	fi
	grep -q 'not a wiremesh database' "$T/rs.out" || fail "unclear refusal: $(cat "$T/rs.out")"
	[ ! -e "$T/db.sqlite.restoring" ] || fail "a refused restore left its temporary file"
	ok "backup while serving, restore (later changes gone), newer database refused"
else
	ok "backup while serving, restore (later changes gone); sqlite3 missing: newer-schema check skipped"
fi

# ---- nftables examples ----
if command -v nft >/dev/null && [ "$(id -u)" -eq 0 ]; then
	n=0
	for f in "$D"/firewall/*.nft; do
		nft -c -f "$f" >"$T/nft.out" 2>&1 || fail "$(basename "$f"): $(cat "$T/nft.out")"
		n=$((n + 1))
	done
	[ "$n" -ge 4 ] || fail "expected at least 4 nftables files, found $n"
	printf 'table inet x { chain c { udp dport 41641 acept } }\n' >"$T/bad.nft"
	nft -c -f "$T/bad.nft" >/dev/null 2>&1 && fail "nft -c accepts anything"
	ok "$n nftables examples pass nft -c"
else
	echo "# nft missing or not root: nftables check skipped"
fi

# ---- make install ----
R=$T/root
make -s -C "$WM_TOP" --no-print-directory install DESTDIR="$R" >"$T/install.out" 2>&1 ||
	fail "make install: $(tail -n 20 "$T/install.out")"
for f in usr/local/bin/wiremesh-server usr/local/bin/wiremesh-derper usr/local/bin/wiremesh-wg \
	 usr/local/lib/systemd/system/wiremesh-server.service \
	 usr/local/lib/systemd/system/wiremesh-derper.service \
	 usr/local/lib/systemd/system/wiremeshd.service \
	 usr/local/lib/sysusers.d/wiremesh.conf \
	 etc/wiremesh/server.hujson etc/wiremesh/acls.hujson etc/wiremesh/derpmap.json \
	 usr/local/share/man/man8/wiremesh-server.8 usr/local/share/man/man8/wiremesh-derper.8 \
	 usr/local/share/man/man8/wiremeshd.8 usr/local/share/man/man8/wiremesh-wg.8 \
	 usr/local/share/man/man1/wiremesh.1 \
	 usr/local/share/doc/wiremesh/examples/firewall/router.nft \
	 usr/local/share/doc/wiremesh/examples/nginx/wiremesh.conf \
	 usr/local/share/doc/wiremesh/operations.md; do
	[ -e "$R/$f" ] || fail "make install did not install /$f"
done
for b in wiremeshd wiremesh; do
	[ ! -x "$WM_TOP/bin/$b" ] || [ -x "$R/usr/local/bin/$b" ] || fail "make install skipped $b"
done
[ -x "$R/usr/local/bin/wiremesh-server" ] || fail "installed server is not executable"
"$R/usr/local/bin/wiremesh-server" version | grep -q '^wiremesh-server ' || fail "installed binary does not run"
# Configs already in place are kept.
echo '// mine' >>"$R/etc/wiremesh/server.hujson"
make -s -C "$WM_TOP" --no-print-directory install DESTDIR="$R" >"$T/install.out" 2>&1 || fail "second make install"
tail -n 1 "$R/etc/wiremesh/server.hujson" | grep -q '// mine' || fail "make install overwrote an existing config"
# PREFIX moves the binaries and the paths inside the units.
make -s -C "$WM_TOP" --no-print-directory install DESTDIR="$T/root2" PREFIX=/usr >"$T/install.out" 2>&1 ||
	fail "make install PREFIX=/usr"
grep -q '^ExecStart=/usr/bin/wiremesh-server serve --config /etc/wiremesh/server.hujson' \
	"$T/root2/usr/lib/systemd/system/wiremesh-server.service" || fail "PREFIX not applied to the unit"
if command -v man >/dev/null; then
	MANWIDTH=80 man -l "$R/usr/local/share/man/man8/wiremesh-server.8" 2>/dev/null | grep -q 'backup' ||
		fail "wiremesh-server.8 does not render"
fi
ok "make install DESTDIR= installs binaries, units, sysusers, configs, man pages, docs"

# ---- systemd units ----
if command -v systemd-analyze >/dev/null; then
	mkdir -p "$T/units"
	n=0
	for u in "$R"/usr/local/lib/systemd/system/*.service; do
		exe=$(sed -n 's|^ExecStart=\(/[^ ]*\).*|\1|p' "$u")
		if [ ! -x "$R$exe" ]; then
			echo "# $(basename "$u"): $exe not built yet, verify skipped"
			continue
		fi
		# Point the unit at the installed tree so that verify finds the binary.
		sed "s|^ExecStart=/|ExecStart=$R/|" "$u" >"$T/units/$(basename "$u")"
		# --man=yes: the Documentation= man pages must exist (in the installed tree)
		MANPATH=$R/usr/local/share/man systemd-analyze verify --man=yes "$T/units/$(basename "$u")" >"$T/sv.out" 2>&1 ||
			fail "systemd-analyze verify $(basename "$u"): $(cat "$T/sv.out")"
		[ ! -s "$T/sv.out" ] || fail "systemd-analyze verify $(basename "$u") warns: $(cat "$T/sv.out")"
		n=$((n + 1))
	done
	[ "$n" -ge 2 ] || fail "verified only $n units"
	# Hardening: systemd's own exposure score (0 = locked down, 10 = none).
	for u in wiremesh-server wiremesh-derper wiremeshd; do
		score=$(systemd-analyze security --offline=true "$D/systemd/$u.service" 2>/dev/null |
			sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p')
		[ -n "$score" ] || { echo "# systemd-analyze security --offline unsupported"; break; }
		awk -v s="$score" 'BEGIN { exit !(s <= 3.0) }' || fail "$u exposure $score > 3.0"
		echo "# $u exposure $score"
	done
	grep -q '^CapabilityBoundingSet=CAP_NET_ADMIN CAP_NET_RAW$' "$D/systemd/wiremeshd.service" ||
		fail "wiremeshd must be limited to CAP_NET_ADMIN CAP_NET_RAW"
	grep -q '^User=wiremesh$' "$D/systemd/wiremesh-server.service" || fail "server must run as wiremesh"
	ok "$n systemd units pass systemd-analyze verify"
else
	echo "# systemd-analyze missing: unit check skipped"
fi

# ---- nginx (only if installed; never installed by this test) ----
if command -v nginx >/dev/null && command -v openssl >/dev/null; then
	openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=test -keyout "$T/k.pem" \
		-out "$T/c.pem" >/dev/null 2>&1 || fail "openssl"
	sed -e "s|/etc/letsencrypt/live/[^/]*/fullchain.pem|$T/c.pem|" \
	    -e "s|/etc/letsencrypt/live/[^/]*/privkey.pem|$T/k.pem|" "$D/nginx/wiremesh.conf" >"$T/site.conf"
	printf 'pid %s/nginx.pid;\nerror_log %s/nginx.err;\nevents {}\nhttp { include %s; }\n' \
		"$T" "$T" "$T/site.conf" >"$T/nginx.conf"
	nginx -t -q -c "$T/nginx.conf" >"$T/ng.out" 2>&1 || fail "nginx -t: $(cat "$T/ng.out")"
	ok "nginx -t accepts deploy/nginx/wiremesh.conf"
else
	echo "# nginx not installed: its config is not checked"
fi

# Container: no image is built here (no daemon, no registry), but its build
# stage runs `make install DESTDIR=/out PREFIX=/usr`, done above into root2:
# every path the runtime stage copies from /out must exist there.
grep -q '^USER wiremesh' "$D/Containerfile" || fail "the container must not run as root"
n=0
for src in $(sed -n 's|^COPY --from=build /out\(/[^ ]*\) .*|\1|p' "$D/Containerfile"); do
	[ -e "$T/root2$src" ] || fail "Containerfile copies /out$src, which make install does not create"
	n=$((n + 1))
done
[ "$n" -ge 2 ] || fail "Containerfile: expected COPY --from=build lines"
[ -x "$T/root2/usr/bin/wiremesh-server" ] || fail "the image's entrypoint would be missing"
ok "Containerfile: runs as non-root; its $n copied paths exist after make install PREFIX=/usr"
echo "deploy_kit: all checks passed"
