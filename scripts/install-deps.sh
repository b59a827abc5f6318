#!/usr/bin/env bash
# Installs the Debian packages wiremesh needs, if any are missing. Safe to run
# again: it does nothing when all are present.
#
#   scripts/install-deps.sh          build and run: what a production server needs
#   scripts/install-deps.sh --test   also the tools the tests and the demo start
#                                    (wireguard-go, coturn, PostgreSQL, dnsmasq,
#                                    Chromium, pebble, ...)
#
# Packages are installed with services kept stopped and not enabled: a
# policy-rc.d refuses every service start during the install, so installing
# the test tools on a server never leaves coturn on our STUN port, PostgreSQL
# or dnsmasq running. Tests start their own instances by PID. (systemd is in
# the test list for systemd-analyze, which verifies the units; on a machine
# booted with systemd it is already installed, and in a container without it
# its install starts nothing either.)
set -eu
build="build-essential pkg-config libmicrohttpd-dev libgnutls28-dev libsqlite3-dev libjansson-dev
libsodium-dev libssl-dev libcurl4-openssl-dev libpq-dev libzstd-dev libjwt-dev
curl openssl iproute2 nftables sqlite3 procps"
test="clang libclang-rt-14-dev check wireguard-tools wireguard-go iperf3 coturn
stun-client iputils-ping psmisc netcat-openbsd postgresql dnsmasq dnsutils
chromium pebble prometheus hyperfine python3 python3-cryptography python3-yaml
systemd man-db"
pkgs=$build
[ "${1:-}" = "--test" ] && pkgs="$build $test"
missing=""
for p in $pkgs; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
		missing="$missing $p"
done
# Node.js for the browser and OpenID provider tests: Debian's, unless one is
# already installed (a nodesource build carries its own npm).
if [ "${1:-}" = "--test" ] && ! command -v npm >/dev/null 2>&1; then
	missing="$missing nodejs npm"
fi
if [ -n "$missing" ]; then
	echo "install-deps: installing:$missing"
	if [ "$(id -u)" -ne 0 ]; then
		echo "install-deps: missing packages and not root; run: sudo apt-get install$missing" >&2
		exit 1
	fi
	export DEBIAN_FRONTEND=noninteractive
	rcd=/usr/sbin/policy-rc.d
	if [ ! -e "$rcd" ]; then
		printf '#!/bin/sh\nexit 101\n' >"$rcd" && chmod 755 "$rcd"
		trap 'rm -f "$rcd"' EXIT
	fi
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends $missing
fi
[ "${1:-}" = "--test" ] || exit 0
# npm packages the tests use, pinned by each folder's package-lock.json
# (tests/*/package.json): installed once, offline afterwards.
top=$(cd "$(dirname "$0")/.." && pwd)
for f in "$top"/tests/*/package.json; do
	[ -e "$f" ] || continue
	d=$(dirname "$f")
	[ -d "$d/node_modules" ] && [ "$d/node_modules/.package-lock.json" -nt "$d/package-lock.json" ] && continue
	echo "install-deps: npm ci in ${d#"$top"/}"
	(cd "$d" && npm ci --no-audit --no-fund --loglevel=error)
done
