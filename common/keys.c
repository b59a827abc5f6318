// SPDX-License-Identifier: MIT
/* Key text forms: prefixed hex for wiremesh, base64 for WireGuard tools. */
#include <string.h>

#include <sodium.h>

#include "common/keys.h"

int
hex_encode(char *out, size_t outlen, const uint8_t *in, size_t n)
{
	static const char digits[] = "0123456789abcdef";

	if (outlen < 2 * n + 1)
		return ERR_TOO_LARGE;
	for (size_t i = 0; i < n; i++) {
		out[2 * i] = digits[in[i] >> 4];
		out[2 * i + 1] = digits[in[i] & 15];
	}
	out[2 * n] = 0;
	return 0;
}

static int
nibble(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int
hex_decode(uint8_t *out, size_t outlen, const char *in, size_t n)
{
	if (n % 2 != 0 || n / 2 != outlen)
		return ERR_INVALID;
	for (size_t i = 0; i < outlen; i++) {
		int hi = nibble(in[2 * i]), lo = nibble(in[2 * i + 1]);

		if (hi < 0 || lo < 0)
			return ERR_INVALID;
		out[i] = (uint8_t)(hi << 4 | lo);
	}
	return 0;
}

void
key_fmt(char out[static KEY_STR_MAX], const char *prefix,
	const uint8_t key[static KEY_LEN])
{
	size_t pl = strlen(prefix);

	if (pl > KEY_STR_MAX - KEY_HEX_LEN - 1)
		pl = KEY_STR_MAX - KEY_HEX_LEN - 1;
	memcpy(out, prefix, pl);
	(void)hex_encode(out + pl, KEY_HEX_LEN + 1, key, KEY_LEN);
}

int
key_parse(const char *s, const char *prefix, uint8_t out[static KEY_LEN])
{
	size_t pl = strlen(prefix);
	uint8_t tmp[KEY_LEN];

	if (s == NULL || strncmp(s, prefix, pl) != 0 ||
	    strlen(s + pl) != KEY_HEX_LEN)
		return ERR_INVALID;
	if (hex_decode(tmp, KEY_LEN, s + pl, KEY_HEX_LEN) != 0)
		return ERR_INVALID;
	memcpy(out, tmp, KEY_LEN);
	return 0;
}

int
key_from_hex(uint8_t out[static KEY_LEN], const char *s)
{
	if (s == NULL || strlen(s) != KEY_HEX_LEN)
		return ERR_INVALID;
	return hex_decode(out, KEY_LEN, s, KEY_HEX_LEN);
}

void
key_to_base64(char out[static KEY_B64_LEN + 1], const uint8_t key[static KEY_LEN])
{
	sodium_bin2base64(out, KEY_B64_LEN + 1, key, KEY_LEN,
	    sodium_base64_VARIANT_ORIGINAL);
}

int
key_from_base64(uint8_t out[static KEY_LEN], const char *s)
{
	uint8_t tmp[KEY_LEN];
	size_t n = 0;

	if (s == NULL || strlen(s) != KEY_B64_LEN || s[KEY_B64_LEN - 1] != '=')
		return ERR_INVALID;
	if (sodium_base642bin(tmp, sizeof(tmp), s, KEY_B64_LEN, NULL, &n, NULL,
	    sodium_base64_VARIANT_ORIGINAL) != 0 || n != KEY_LEN)
		return ERR_INVALID;
	memcpy(out, tmp, KEY_LEN);
	return 0;
}

int
key_equal(const uint8_t a[static KEY_LEN], const uint8_t b[static KEY_LEN])
{
	return sodium_memcmp(a, b, KEY_LEN) == 0;
}

int
key_is_zero(const uint8_t k[static KEY_LEN])
{
	return sodium_is_zero(k, KEY_LEN);
}
