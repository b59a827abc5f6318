// SPDX-License-Identifier: MIT
/* libFuzzer target: the DERP frame codec (relay/derp_frame.h). The input is
 * read as a stream of frames, as a server reads a client: header, the
 * per-type limit, then the payload handed to the parser for its type.
 * ClientInfo and ServerInfo payloads are tried as they are (they will not
 * authenticate) and also sealed as the plaintext of an authentic box between
 * fixed keys, so the JSON inside is fuzzed too. Keys: server private 0x33 x 32,
 * client private 0x44 x 32. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <sodium.h>

#include "relay/derp_frame.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint8_t s_priv[KEY_LEN], s_pub[KEY_LEN], c_priv[KEY_LEN], c_pub[KEY_LEN];
static int ready;

static void
init(void)
{
	if (ready)
		return;
	if (sodium_init() < 0)
		__builtin_trap();
	memset(s_priv, 0x33, KEY_LEN);
	memset(c_priv, 0x44, KEY_LEN);
	if (crypto_scalarmult_base(s_pub, s_priv) != 0 || crypto_scalarmult_base(c_pub, c_priv) != 0)
		__builtin_trap();
	ready = 1;
}

static void
client_info(const uint8_t *p, size_t n)
{
	static uint8_t box[DERP_MAX_CLIENT_INFO + 64];
	struct derp_client_info info;
	uint8_t who[KEY_LEN];
	int r;

	r = derp_client_info_open(p, n, s_priv, who, &info);
	if (r != 0 && r != ERR_INVALID && r != ERR_BAD_SIGNATURE && r != ERR_TOO_LARGE)
		__builtin_trap();
	/* The same bytes as the sealed JSON of an authentic ClientInfo. */
	if (DERP_CLIENT_INFO_PREFIX + DERP_BOX_OVERHEAD + n > sizeof(box))
		return;
	memcpy(box, c_pub, KEY_LEN);
	memset(box + KEY_LEN, 0x5a, DERP_NONCE_LEN);
	if (crypto_box_easy(box + DERP_CLIENT_INFO_PREFIX, p, n, box + KEY_LEN, s_pub, c_priv) != 0)
		__builtin_trap();
	r = derp_client_info_open(box, DERP_CLIENT_INFO_PREFIX + DERP_BOX_OVERHEAD + n, s_priv, who,
				  &info);
	if (r == 0 && memcmp(who, c_pub, KEY_LEN) != 0)
		__builtin_trap();
	if (r == ERR_BAD_SIGNATURE)
		__builtin_trap();	/* it is authentic */
}

static void
server_info(const uint8_t *p, size_t n)
{
	static uint8_t box[DERP_MAX_SERVER_INFO + 64];
	int r;

	r = derp_server_info_open(p, n, c_priv, s_pub);
	if (r != 0 && r != ERR_INVALID && r != ERR_BAD_SIGNATURE && r != ERR_TOO_LARGE)
		__builtin_trap();
	if (DERP_NONCE_LEN + DERP_BOX_OVERHEAD + n > sizeof(box))
		return;
	memset(box, 0xa5, DERP_NONCE_LEN);
	if (crypto_box_easy(box + DERP_NONCE_LEN, p, n, box, c_pub, s_priv) != 0)
		__builtin_trap();
	r = derp_server_info_open(box, DERP_NONCE_LEN + DERP_BOX_OVERHEAD + n, c_priv, s_pub);
	if (r == ERR_BAD_SIGNATURE)
		__builtin_trap();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t off = 0;

	init();
	while (size - off >= DERP_HEADER_LEN) {
		uint8_t type, hdr[DERP_HEADER_LEN], key[KEY_LEN];
		uint32_t len, limit = derp_frame_server_limit(data[off]);
		const uint8_t *p;
		size_t n;

		if (derp_frame_get_header(data + off, &type, &len, limit) != 0) {
			if (len <= limit)
				__builtin_trap();
			break;		/* a server ends the connection here */
		}
		derp_frame_put_header(hdr, type, len);
		if (memcmp(hdr, data + off, DERP_HEADER_LEN) != 0)
			__builtin_trap();
		off += DERP_HEADER_LEN;
		p = data + off;
		n = len < size - off ? len : size - off;	/* a short read: what there is */
		switch (type) {
		case DERP_FRAME_SERVER_KEY:
			if (derp_server_key_parse(p, n, key, NULL) == 0 &&
			    memcmp(key, p + DERP_MAGIC_LEN, KEY_LEN) != 0)
				__builtin_trap();
			break;
		case DERP_FRAME_CLIENT_INFO:
			client_info(p, n);
			break;
		case DERP_FRAME_SERVER_INFO:
			server_info(p, n);
			break;
		case DERP_FRAME_SEND_PACKET:
		case DERP_FRAME_RECV_PACKET:
		case DERP_FRAME_FORWARD_PACKET:
			if (n >= KEY_LEN)
				(void)derp_looks_like_disco(p + KEY_LEN, n - KEY_LEN);
			break;
		default:
			(void)derp_looks_like_disco(p, n);
			break;
		}
		off += n;
	}
	return 0;
}
