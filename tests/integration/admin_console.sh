#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The admin console in a real browser: headless Chromium driven by
# puppeteer-core (tests/browser/console.test.mjs) against wiremesh-server
# with TLS from a test CA and nodes played by wm-node. Chromium trusts the
# server's key by its SPKI hash (no CA store to edit). Screenshots go to
# $WM_SCREENSHOTS when set (docs/img/ is made that way), else to $T.
. "$(dirname "$0")/lib.sh"

CHROMIUM=${WM_CHROMIUM:-/usr/bin/chromium}
[ -x "$CHROMIUM" ] || fail "no Chromium at $CHROMIUM (scripts/install-deps.sh --test installs it)"
command -v node >/dev/null || fail "no node (scripts/install-deps.sh --test installs it)"
[ -d "$WM_TOP/tests/browser/node_modules/puppeteer-core" ] ||
	fail "puppeteer-core is not installed: run scripts/install-deps.sh --test (npm ci in tests/browser)"
command -v openssl >/dev/null || fail "no openssl"

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
	-subj /CN=wiremesh-test-ca -keyout "$T/ca.key" -out "$T/ca.crt" >"$T/pki.log" 2>&1 &&
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=127.0.0.1 \
	-keyout "$T/srv.key" -out "$T/srv.csr" >>"$T/pki.log" 2>&1 &&
printf '%s\n' 'subjectAltName=IP:127.0.0.1' 'extendedKeyUsage=serverAuth' >"$T/ext" &&
openssl x509 -req -in "$T/srv.csr" -CA "$T/ca.crt" -CAkey "$T/ca.key" -CAcreateserial \
	-days 1 -extfile "$T/ext" -out "$T/srv.crt" >>"$T/pki.log" 2>&1 || fail "openssl: $(cat "$T/pki.log")"
SPKI=$(openssl x509 -in "$T/srv.crt" -pubkey -noout | openssl pkey -pubin -outform der |
	openssl dgst -sha256 -binary | base64)
export SSL_CERT_FILE=$T/ca.crt
CURL_CA=$T/ca.crt

bootstrap
URL_SCHEME=https start_server --tls-cert "$T/srv.crt" --tls-key "$T/srv.key"
"$SRV" users create alice >/dev/null || fail "users create"
AK=$("$SRV" preauthkeys create --user alice --reusable) || fail "preauthkeys create"

SHOTS=${WM_SCREENSHOTS:-$T/shots}
mkdir -p "$SHOTS"
mkdir -p "$T/browser"
WM_URL=$URL WM_API_KEY=$WIREMESH_API_KEY WM_AUTHKEY=$AK WM_NODE=$WM_NODE WM_TMP=$T/browser \
WM_SPKI=$SPKI WM_SHOTS=$SHOTS WM_CA=$T/ca.crt WM_CHROMIUM=$CHROMIUM NODE_EXTRA_CA_CERTS=$T/ca.crt \
	timeout 120 node "$WM_TOP/tests/browser/console.test.mjs" &
BR=$!
WM_PIDS+=("$BR")
wait "$BR" || { cp "$T/browser/failure.png" "$SHOTS/" 2>/dev/null; fail "the browser test failed (exit $?)"; }
for s in signin nodes preauthkeys users apikeys policy-error policy-review policy-conflict policy nodes-phone; do
	[ -s "$SHOTS/$s.png" ] || fail "no screenshot $s.png"
done
ok "screenshots of every page in $SHOTS"
