/* SPDX-License-Identifier: MIT */
/*
 * Admin secrets: API keys (`wm-api-<prefix>-<secret>`) and pre-auth keys
 * (`wm-auth-<prefix>-<secret>`). The prefix (12 hex digits) is stored in
 * clear for lookup; the whole key only as a SHA-256 hash. The secret part
 * carries 192 random bits, so a fast hash is enough (no password stretching).
 */
#ifndef WM_SECRET_H
#define WM_SECRET_H

#include <stdint.h>

#include "common/err.h"
#include "server/store.h"

enum secret_kind { SECRET_API, SECRET_AUTH };

/* New key: *key_out is a new string to show once and free with free_secret(). */
int secret_generate(enum secret_kind kind, char **key_out,
		    char prefix[static STORE_PREFIX_MAX],
		    uint8_t hash[static STORE_HASH_LEN]) WM_MUST_CHECK;
/* Splits a presented key into prefix and hash; ERR_INVALID when malformed. */
int secret_parse(enum secret_kind kind, const char *key,
		 char prefix[static STORE_PREFIX_MAX],
		 uint8_t hash[static STORE_HASH_LEN]) WM_MUST_CHECK;
/* Constant-time hash comparison; 1 when equal. */
int secret_hash_equal(const uint8_t a[static STORE_HASH_LEN],
		      const uint8_t b[static STORE_HASH_LEN]);

#endif
