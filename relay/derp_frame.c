/* SPDX-License-Identifier: MIT */
/* DERP frame headers and the sealed handshake frames. */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>
#include <sodium.h>

#include "relay/derp_frame.h"

const uint8_t derp_magic[DERP_MAGIC_LEN] = { 0x44, 0x45, 0x52, 0x50, 0xf0, 0x9f, 0x94, 0x91 };

/* Path-discovery messages start with "WM" U+1F4AC (docs/disco.md); the relay only counts them. */
static const uint8_t disco_magic[6] = { 'W', 'M', 0xf0, 0x9f, 0x92, 0xac };

void derp_frame_put_header(uint8_t out[static DERP_HEADER_LEN], uint8_t type, uint32_t len)
{
	out[0] = type;
	out[1] = (uint8_t)(len >> 24);
	out[2] = (uint8_t)(len >> 16);
	out[3] = (uint8_t)(len >> 8);
	out[4] = (uint8_t)len;
}

int derp_frame_get_header(const uint8_t *p, uint8_t *type, uint32_t *len, uint32_t max)
{
	uint32_t l = (uint32_t)p[1] << 24 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 8 | p[4];

	*type = p[0];
	*len = l;
	return l > max ? ERR_TOO_LARGE : 0;
}

uint32_t derp_frame_server_limit(uint8_t type)
{
	switch (type) {
	case DERP_FRAME_CLIENT_INFO:
		return DERP_MAX_CLIENT_INFO;
	case DERP_FRAME_SEND_PACKET:
		return DERP_MAX_FRAME_TO_SERVER;
	case DERP_FRAME_NOTE_PREFERRED:
		return 1;
	case DERP_FRAME_PING:
	case DERP_FRAME_PONG:
		return DERP_MAX_PING;
	default:
		return DERP_MAX_FRAME_TO_SERVER;
	}
}

void derp_server_key_build(uint8_t out[static DERP_MAGIC_LEN + KEY_LEN + DERP_CHALLENGE_LEN],
			   const uint8_t server_pub[static KEY_LEN],
			   const uint8_t challenge[static DERP_CHALLENGE_LEN])
{
	memcpy(out, derp_magic, DERP_MAGIC_LEN);
	memcpy(out + DERP_MAGIC_LEN, server_pub, KEY_LEN);
	memcpy(out + DERP_MAGIC_LEN + KEY_LEN, challenge, DERP_CHALLENGE_LEN);
}

int derp_server_key_parse(const uint8_t *p, size_t n, uint8_t server_pub[static KEY_LEN],
			  uint8_t *challenge)
{
	if (n < DERP_MAGIC_LEN + KEY_LEN || memcmp(p, derp_magic, DERP_MAGIC_LEN) != 0)
		return ERR_PROTOCOL;
	memcpy(server_pub, p + DERP_MAGIC_LEN, KEY_LEN);
	if (challenge) {
		if (n >= DERP_MAGIC_LEN + KEY_LEN + DERP_CHALLENGE_LEN)
			memcpy(challenge, p + DERP_MAGIC_LEN + KEY_LEN, DERP_CHALLENGE_LEN);
		else
			memset(challenge, 0, DERP_CHALLENGE_LEN);
	}
	return 0;
}

static int seal(uint8_t *out, size_t cap, const char *json,
		const uint8_t priv[static KEY_LEN], const uint8_t peer_pub[static KEY_LEN])
{
	size_t mlen = strlen(json);

	if (cap < DERP_NONCE_LEN + DERP_BOX_OVERHEAD + mlen)
		return ERR_TOO_LARGE;
	randombytes_buf(out, DERP_NONCE_LEN);
	if (crypto_box_easy(out + DERP_NONCE_LEN, (const uint8_t *)json, mlen, out,
			    peer_pub, priv) != 0)
		return ERR_INTERNAL;
	return (int)(DERP_NONCE_LEN + DERP_BOX_OVERHEAD + mlen);
}

/* Opens nonce||box into a NUL-terminated buffer of at most cap-1 bytes. */
static int open_box(char *plain, size_t cap, const uint8_t *p, size_t n,
		    const uint8_t priv[static KEY_LEN], const uint8_t peer_pub[static KEY_LEN])
{
	size_t mlen;

	if (n < DERP_NONCE_LEN + DERP_BOX_OVERHEAD)
		return ERR_INVALID;
	mlen = n - DERP_NONCE_LEN - DERP_BOX_OVERHEAD;
	if (mlen >= cap)
		return ERR_TOO_LARGE;
	if (crypto_box_open_easy((uint8_t *)plain, p + DERP_NONCE_LEN, n - DERP_NONCE_LEN, p,
				 peer_pub, priv) != 0)
		return ERR_BAD_SIGNATURE;
	plain[mlen] = 0;
	return (int)mlen;
}

int derp_client_info_seal(uint8_t *out, size_t cap, const uint8_t client_priv[static KEY_LEN],
			  const uint8_t client_pub[static KEY_LEN],
			  const uint8_t server_pub[static KEY_LEN], const uint8_t *challenge)
{
	char json[160], hex[2 * DERP_CHALLENGE_LEN + 1];
	int r;

	if (cap < KEY_LEN)
		return ERR_TOO_LARGE;
	memcpy(out, client_pub, KEY_LEN);
	if (challenge) {
		sodium_bin2hex(hex, sizeof(hex), challenge, DERP_CHALLENGE_LEN);
		snprintf(json, sizeof(json), "{\"version\":2,\"CanAckPings\":true,\"Challenge\":\"%s\"}",
		    hex);
	} else {
		snprintf(json, sizeof(json), "{\"version\":2,\"CanAckPings\":true}");
	}
	r = seal(out + KEY_LEN, cap - KEY_LEN, json, client_priv, server_pub);
	return r < 0 ? r : r + KEY_LEN;
}

/* Looks a member up ignoring case, as Go's encoding/json does. */
static json_t *member(json_t *o, const char *name)
{
	const char *k;
	json_t *v;

	json_object_foreach(o, k, v) {
		if (strcasecmp(k, name) == 0)
			return v;
	}
	return NULL;
}

int derp_client_info_open(const uint8_t *p, size_t n, const uint8_t server_priv[static KEY_LEN],
			  uint8_t client_pub[static KEY_LEN], struct derp_client_info *info)
{
	char plain[DERP_MAX_CLIENT_INFO];
	json_t *o, *v;
	int r;

	memset(info, 0, sizeof(*info));
	if (n < DERP_CLIENT_INFO_PREFIX + DERP_BOX_OVERHEAD || n > DERP_MAX_CLIENT_INFO)
		return ERR_INVALID;
	r = open_box(plain, sizeof(plain), p + KEY_LEN, n - KEY_LEN, server_priv, p);
	if (r < 0)
		return r;
	o = json_loadb(plain, (size_t)r, JSON_REJECT_DUPLICATES, NULL);
	if (o == NULL || !json_is_object(o)) {
		json_decref(o);
		return ERR_INVALID;
	}
	if ((v = member(o, "version")) != NULL && json_is_integer(v))
		info->version = (int)json_integer_value(v);
	info->can_ack_pings = json_is_true(member(o, "CanAckPings"));
	info->is_prober = json_is_true(member(o, "IsProber"));
	if ((v = member(o, "Challenge")) != NULL && json_is_string(v) &&
	    json_string_length(v) == 2 * DERP_CHALLENGE_LEN &&
	    sodium_hex2bin(info->challenge, DERP_CHALLENGE_LEN, json_string_value(v),
	    2 * DERP_CHALLENGE_LEN, NULL, NULL, NULL) == 0)
		info->has_challenge = true;
	json_decref(o);
	memcpy(client_pub, p, KEY_LEN);
	return 0;
}

int derp_server_info_seal(uint8_t *out, size_t cap, const uint8_t server_priv[static KEY_LEN],
			  const uint8_t client_pub[static KEY_LEN])
{
	return seal(out, cap, "{\"version\":2}", server_priv, client_pub);
}

int derp_server_info_open(const uint8_t *p, size_t n, const uint8_t client_priv[static KEY_LEN],
			  const uint8_t server_pub[static KEY_LEN])
{
	char plain[DERP_MAX_SERVER_INFO];
	json_t *o;
	int r;

	if (n > DERP_MAX_SERVER_INFO)
		return ERR_INVALID;
	r = open_box(plain, sizeof(plain), p, n, client_priv, server_pub);
	if (r < 0)
		return r;
	o = json_loadb(plain, (size_t)r, 0, NULL);
	r = o != NULL && json_is_object(o) ? 0 : ERR_INVALID;
	json_decref(o);
	return r;
}

bool derp_looks_like_disco(const uint8_t *p, size_t n)
{
	return n >= 62 && memcmp(p, disco_magic, sizeof(disco_magic)) == 0;
}
