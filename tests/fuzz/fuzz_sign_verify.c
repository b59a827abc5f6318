// SPDX-License-Identifier: MIT
/*
 * libFuzzer target: request signature verification (common/sign.h) with
 * arbitrary header values and body, as the server sees them.
 *
 * Input: newline-separated fields
 *   Wiremesh-Machine \n Wiremesh-Timestamp \n Wiremesh-Nonce \n
 *   Wiremesh-Signature \n METHOD \n PATH \n BODY...
 * (missing fields are empty). The header values are parsed the way
 * server/control.c does (key_parse, decimal timestamp) and verified.
 *
 * Oracles: no crash or sanitizer report; verification of the fuzzed
 * signature is deterministic; a signature made with a fixed key over the
 * same fields verifies, and stops verifying when the body, path, method,
 * timestamp or nonce change or the signature is altered.
 */
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "common/keys.h"
#include "common/sign.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint8_t pk[KEY_LEN], sk[ED25519_SK_LEN];
static int ready;

/* Copies the next field up to '\n' into a NUL-terminated string. */
static char *
field(const uint8_t **p, size_t *n)
{
	const uint8_t *nl = memchr(*p, '\n', *n);
	size_t len = nl ? (size_t)(nl - *p) : *n;
	char *s = malloc(len + 1);

	if (s == NULL)
		abort();
	memcpy(s, *p, len);
	s[len] = 0;
	*p += nl ? len + 1 : len;
	*n -= nl ? len + 1 : len;
	return s;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *p = data;
	size_t n = size;
	char *mk, *ts, *nonce, *sig, *method, *path, *end, good[SIGN_HEX_LEN + 1];
	uint8_t mpk[KEY_LEN];
	int64_t t = 0;
	int r1, r2;

	if (!ready) {
		if (sodium_init() < 0)
			abort();
		uint8_t seed[32];

		memset(seed, 7, sizeof(seed));	/* a fixed key: reproducible runs */
		crypto_sign_seed_keypair(pk, sk, seed);
		ready = 1;
	}
	mk = field(&p, &n);
	ts = field(&p, &n);
	nonce = field(&p, &n);
	sig = field(&p, &n);
	method = field(&p, &n);
	path = field(&p, &n);
	/* p, n: the body */

	if (*ts)
		t = strtoll(ts, &end, 10);
	/* As the server does: a machine key header, then the signature. */
	if (key_parse(mk, "mkey:", mpk) == 0) {
		r1 = sign_verify(mpk, method, path, t, nonce, p, n, sig);
		r2 = sign_verify(mpk, method, path, t, nonce, p, n, sig);
		if (r1 != r2 || (r1 != 0 && r1 != ERR_BAD_SIGNATURE))
			__builtin_trap();
	}
	/* The fuzzed signature against the fixed key: only the real one passes. */
	if (sign_verify(pk, method, path, t, nonce, p, n, sig) == 0 &&
	    (sign_request(sk, method, path, t, nonce, p, n, good) != 0 || strcmp(good, sig) != 0))
		__builtin_trap();

	/* Round trip with the fixed key over the fuzzed fields. */
	if (sign_request(sk, method, path, t, nonce, p, n, good) == 0) {
		char other[SIGN_NONCE_LEN + 1];

		if (sign_verify(pk, method, path, t, nonce, p, n, good) != 0)
			__builtin_trap();
		if (n > 0 && sign_verify(pk, method, path, t, nonce, p, n - 1, good) == 0)
			__builtin_trap();
		if (sign_verify(pk, method, path, t == INT64_MAX ? t - 1 : t + 1, nonce, p, n, good) == 0)
			__builtin_trap();
		if (sign_verify(pk, method, "/machine/x", t, nonce, p, n, good) == 0 &&
		    strcmp(path, "/machine/x") != 0)
			__builtin_trap();
		if (sign_verify(pk, "PUT", path, t, nonce, p, n, good) == 0 && strcmp(method, "PUT") != 0)
			__builtin_trap();
		memcpy(other, nonce, sizeof(other));
		other[0] = other[0] == '0' ? '1' : '0';
		if (sign_verify(pk, method, path, t, other, p, n, good) == 0)
			__builtin_trap();
		good[n % SIGN_HEX_LEN] = good[n % SIGN_HEX_LEN] == 'a' ? 'b' : 'a';
		if (sign_verify(pk, method, path, t, nonce, p, n, good) == 0)
			__builtin_trap();
		good[0] = 'X';	/* not hex */
		if (sign_verify(pk, method, path, t, nonce, p, n, good) != ERR_BAD_SIGNATURE)
			__builtin_trap();
	}
	free(mk);
	free(ts);
	free(nonce);
	free(sig);
	free(method);
	free(path);
	return 0;
}
