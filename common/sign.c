// SPDX-License-Identifier: MIT
/* Ed25519 request signatures over the canonical request string. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include <sodium.h>

#include "common/sign.h"

/* Builds the canonical string into out; returns its length or an error. */
static int
canonical(char *out, size_t outlen, const char *method, const char *path,
	  int64_t ts, const char *nonce, const void *body, size_t len)
{
	uint8_t h[crypto_hash_sha256_BYTES];
	char hh[2 * sizeof(h) + 1];
	int n;

	if (strlen(path) > SIGN_MAX_PATH || strlen(method) > 16 || nonce == NULL ||
	    strlen(nonce) != SIGN_NONCE_LEN)
		return ERR_INVALID;
	for (const char *p = nonce; *p; p++)
		if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
			return ERR_INVALID;
	crypto_hash_sha256(h, body ? body : (const void *)"", len);
	(void)hex_encode(hh, sizeof(hh), h, sizeof(h));
	n = snprintf(out, outlen, "wiremesh-v1\n%s\n%s\n%" PRId64 "\n%s\n%s", method, path, ts,
	    nonce, hh);
	if (n < 0 || (size_t)n >= outlen)
		return ERR_INVALID;
	return n;
}

void
sign_keypair(uint8_t pk[static KEY_LEN], uint8_t sk[static ED25519_SK_LEN])
{
	crypto_sign_keypair(pk, sk);
}

void
sign_nonce(char nonce[static SIGN_NONCE_LEN + 1])
{
	uint8_t r[SIGN_NONCE_LEN / 2];

	randombytes_buf(r, sizeof(r));
	(void)hex_encode(nonce, SIGN_NONCE_LEN + 1, r, sizeof(r));
}

int
sign_request(const uint8_t sk[static ED25519_SK_LEN], const char *method,
	     const char *path, int64_t ts, const char *nonce, const void *body,
	     size_t len, char sig_hex[static SIGN_HEX_LEN + 1])
{
	char msg[SIGN_MAX_PATH + 256];
	uint8_t sig[ED25519_SIG_LEN];
	int n = canonical(msg, sizeof(msg), method, path, ts, nonce, body, len);

	if (n < 0)
		return n;
	crypto_sign_detached(sig, NULL, (const uint8_t *)msg, (size_t)n, sk);
	return hex_encode(sig_hex, SIGN_HEX_LEN + 1, sig, sizeof(sig));
}

int
sign_verify(const uint8_t pk[static KEY_LEN], const char *method,
	    const char *path, int64_t ts, const char *nonce, const void *body,
	    size_t len, const char *sig_hex)
{
	char msg[SIGN_MAX_PATH + 256];
	uint8_t sig[ED25519_SIG_LEN];
	int n;

	if (sig_hex == NULL || strlen(sig_hex) != SIGN_HEX_LEN ||
	    hex_decode(sig, sizeof(sig), sig_hex, SIGN_HEX_LEN) != 0)
		return ERR_BAD_SIGNATURE;
	if ((n = canonical(msg, sizeof(msg), method, path, ts, nonce, body, len)) < 0)
		return ERR_BAD_SIGNATURE;
	if (crypto_sign_verify_detached(sig, (const uint8_t *)msg, (size_t)n, pk) != 0)
		return ERR_BAD_SIGNATURE;
	return 0;
}
