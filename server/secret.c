// SPDX-License-Identifier: MIT
/* Generation and parsing of API keys and pre-auth keys. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "common/keys.h"
#include "common/util.h"
#include "server/secret.h"

enum { PREFIX_BYTES = 6, SECRET_BYTES = 24 };

static const char *
kind_tag(enum secret_kind kind)
{
	return kind == SECRET_API ? "wm-api-" : "wm-auth-";
}

int
secret_generate(enum secret_kind kind, char **key_out,
		char prefix[static STORE_PREFIX_MAX], uint8_t hash[static STORE_HASH_LEN])
{
	uint8_t p[PREFIX_BYTES], sec[SECRET_BYTES];
	char ph[2 * PREFIX_BYTES + 1], sh[2 * SECRET_BYTES + 1];
	size_t n = strlen(kind_tag(kind)) + sizeof(ph) + sizeof(sh) + 1;
	char *key = malloc(n);

	*key_out = NULL;
	if (key == NULL)
		return ERR_NOMEM;
	random_bytes(p, sizeof(p));
	random_bytes(sec, sizeof(sec));
	(void)hex_encode(ph, sizeof(ph), p, sizeof(p));
	(void)hex_encode(sh, sizeof(sh), sec, sizeof(sec));
	snprintf(key, n, "%s%s-%s", kind_tag(kind), ph, sh);
	wipe(sec, sizeof(sec));
	wipe(sh, sizeof(sh));
	str_copy(prefix, ph, STORE_PREFIX_MAX);
	crypto_hash_sha256(hash, (const uint8_t *)key, strlen(key));
	*key_out = key;
	return 0;
}

int
secret_parse(enum secret_kind kind, const char *key, char prefix[static STORE_PREFIX_MAX],
	     uint8_t hash[static STORE_HASH_LEN])
{
	const char *tag = kind_tag(kind);
	size_t tl = strlen(tag);
	const char *p;

	if (key == NULL || strncmp(key, tag, tl) != 0 ||
	    strlen(key) != tl + 2 * PREFIX_BYTES + 1 + 2 * SECRET_BYTES)
		return ERR_INVALID;
	p = key + tl;
	for (size_t i = 0; i < 2 * PREFIX_BYTES + 1 + 2 * SECRET_BYTES; i++) {
		char c = p[i];

		if (i == 2 * PREFIX_BYTES) {
			if (c != '-')
				return ERR_INVALID;
		} else if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) {
			return ERR_INVALID;
		}
	}
	memcpy(prefix, p, 2 * PREFIX_BYTES);
	prefix[2 * PREFIX_BYTES] = 0;
	crypto_hash_sha256(hash, (const uint8_t *)key, strlen(key));
	return 0;
}

int
secret_hash_equal(const uint8_t a[static STORE_HASH_LEN], const uint8_t b[static STORE_HASH_LEN])
{
	return sodium_memcmp(a, b, STORE_HASH_LEN) == 0;
}
