// SPDX-License-Identifier: MIT
/* libFuzzer target: relay/derp_server.c's handling of one client connection
 * (derp_server_feed): the HTTP request head (/derp upgrade, /generate_204,
 * probes, metrics), the DERP handshake and every frame a client may send
 * afterwards, delivered in pieces as reads would return them.
 *
 * Input: byte 0 = flags: bit 7 prepends a valid upgrade request and an
 * authentic ClientInfo (client private key 0x44 x 32 to server private key
 * 0x33 x 32, with the all-zero challenge derp_server_feed uses), so the fuzz data is the frame stream of an admitted client;
 * bits 0-2 = how many 2-byte big-endian cut offsets follow. The rest is what
 * the client sends. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "relay/derp_frame.h"
#include "relay/derp_server.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct derp_server *srv;
static uint8_t s_priv[KEY_LEN], s_pub[KEY_LEN], c_priv[KEY_LEN], c_pub[KEY_LEN];
static uint8_t prefix[256 + DERP_HEADER_LEN + DERP_MAX_CLIENT_INFO];
static size_t prefix_len;

static void
init(void)
{
	static const char up[] = "GET /derp HTTP/1.1\r\nHost: derp.test\r\nUpgrade: DERP\r\n"
	    "Connection: Upgrade\r\n\r\n";
	struct derp_server_config cfg;
	int n;

	if (srv)
		return;
	if (sodium_init() < 0)
		__builtin_trap();
	memset(s_priv, 0x33, KEY_LEN);
	memset(c_priv, 0x44, KEY_LEN);
	if (crypto_scalarmult_base(s_pub, s_priv) != 0 || crypto_scalarmult_base(c_pub, c_priv) != 0)
		__builtin_trap();
	memset(&cfg, 0, sizeof(cfg));
	cfg.private_key = s_priv;
	cfg.plain_derp = true;	/* /derp without TLS: no listener, fed directly */
	cfg.queue_len = 8;
	if ((srv = derp_server_new(&cfg)) == NULL)
		__builtin_trap();
	memcpy(prefix, up, sizeof(up) - 1);
	prefix_len = sizeof(up) - 1;
	{
		static const uint8_t zero[DERP_CHALLENGE_LEN];	/* derp_server_feed's */

		n = derp_client_info_seal(prefix + prefix_len + DERP_HEADER_LEN, DERP_MAX_CLIENT_INFO,
		    c_priv, c_pub, s_pub, zero);
	}
	if (n < 0)
		__builtin_trap();
	derp_frame_put_header(prefix + prefix_len, DERP_FRAME_CLIENT_INFO, (uint32_t)n);
	prefix_len += DERP_HEADER_LEN + (size_t)n;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t cuts[8], ncuts, off = 1, base, total;
	uint8_t *buf;

	init();
	if (size < 1)
		return 0;
	ncuts = data[0] & 7;
	base = (data[0] & 0x80) ? prefix_len : 0;
	if (size < 1 + 2 * ncuts)
		return 0;
	for (size_t i = 0; i < ncuts; i++, off += 2)
		cuts[i] = base + ((size_t)data[off] << 8 | data[off + 1]);
	/* ascending, as the contract asks */
	for (size_t i = 1; i < ncuts; i++)
		for (size_t j = i; j > 0 && cuts[j - 1] > cuts[j]; j--) {
			size_t t = cuts[j];

			cuts[j] = cuts[j - 1];
			cuts[j - 1] = t;
		}
	total = base + size - off;
	if ((buf = malloc(total ? total : 1)) == NULL)
		return 0;
	memcpy(buf, prefix, base);
	memcpy(buf + base, data + off, size - off);
	if (derp_server_feed(srv, buf, total, cuts, ncuts) != 0)
		__builtin_trap();
	free(buf);
	return 0;
}
