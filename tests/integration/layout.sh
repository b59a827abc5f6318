#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Source layout: the relay (relay/) knows no agent. The DERP client, STUN
# client and netcheck live in relay/ with their protocols; nothing in relay/
# includes a client-agent/ header, and wiremesh-derper links without any
# agent object.
. "$(dirname "$0")/lib.sh"
cd "$WM_TOP"

bad=$(grep -ln '#include "client-agent/' relay/*.c relay/*.h || true)
[ -z "$bad" ] || fail "relay/ includes agent headers: $bad"
ok "relay/ includes nothing from client-agent/"

for f in derp_client netcheck stun_client; do
	[ -f "relay/$f.c" ] && [ -f "relay/$f.h" ] || fail "relay/$f.[ch] missing"
	[ ! -e "client-agent/$f.c" ] || fail "client-agent/$f.c still present"
done
ok "DERP client, STUN client and netcheck are in relay/"

! grep -v "^#" relay/module.mk | grep -q client-agent || fail "relay/module.mk builds agent sources"
ok "relay/module.mk builds no agent source"
