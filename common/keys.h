/* SPDX-License-Identifier: MIT */
/*
 * Key encoding. Public keys travel as a type prefix and lowercase hex:
 * `mkey:` (Ed25519 machine key), `nodekey:` (X25519 WireGuard key),
 * `discokey:` (X25519 disco key). WireGuard's own base64 form is handled too,
 * because `wg` speaks it.
 */
#ifndef WM_KEYS_H
#define WM_KEYS_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

enum { KEY_LEN = 32, ED25519_SK_LEN = 64, ED25519_SIG_LEN = 64,
       KEY_HEX_LEN = 64, KEY_B64_LEN = 44 };

/* Longest text form: "discokey:" + 64 hex + NUL. */
enum { KEY_STR_MAX = 9 + KEY_HEX_LEN + 1 };

void key_fmt(char out[static KEY_STR_MAX], const char *prefix,
	     const uint8_t key[static KEY_LEN]);
/* Requires exactly `prefix` followed by 64 hex digits. */
int key_parse(const char *s, const char *prefix,
	      uint8_t out[static KEY_LEN]) WM_MUST_CHECK;

int hex_encode(char *out, size_t outlen, const uint8_t *in, size_t n);
int hex_decode(uint8_t *out, size_t outlen, const char *in, size_t n) WM_MUST_CHECK;

void key_to_base64(char out[static KEY_B64_LEN + 1],
		   const uint8_t key[static KEY_LEN]);
int key_from_base64(uint8_t out[static KEY_LEN], const char *s) WM_MUST_CHECK;
int key_from_hex(uint8_t out[static KEY_LEN], const char *s) WM_MUST_CHECK;

/* Constant-time compare of two keys; 1 if equal. */
int key_equal(const uint8_t a[static KEY_LEN], const uint8_t b[static KEY_LEN]);
int key_is_zero(const uint8_t k[static KEY_LEN]);

#endif
