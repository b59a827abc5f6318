#!/usr/bin/env bash
# Installs the Debian packages wiremesh needs to build, test and run its
# demo, if any are missing. Safe to run again: it does nothing when all are present.
set -eu
pkgs="build-essential pkg-config clang libmicrohttpd-dev libsqlite3-dev libjansson-dev
libsodium-dev libssl-dev check libcurl4-openssl-dev wireguard-tools wireguard-go
iperf3 nftables coturn stun-client curl openssl iproute2 sqlite3 procps
iputils-ping psmisc netcat-openbsd"
missing=""
for p in $pkgs; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
		missing="$missing $p"
done
[ -z "$missing" ] && exit 0
echo "install-deps: installing:$missing"
if [ "$(id -u)" -ne 0 ]; then
	echo "install-deps: missing packages and not root; run: sudo apt-get install$missing" >&2
	exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends $missing
