/* SPDX-License-Identifier: MIT */
/*
 * ID token verification (OpenID Connect Core 1.0, section 3.1.3.7): a
 * compact JWS checked against the provider's JWKS with OpenSSL's EVP
 * interface, then its claims. A library of its own: it knows no server and
 * does no I/O, so the unit tests and the fuzzer call it directly.
 *
 * Accepted algorithms: RS256, RS384, RS512 (RSA keys of 2048 bits or more)
 * and ES256, ES384 (P-256, P-384). "none", HMAC and anything else are
 * refused, whatever the key set says.
 */
#ifndef WM_OIDC_TOKEN_H
#define WM_OIDC_TOKEN_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "common/err.h"

enum {
	OIDC_TOKEN_MAX = 16384,		/* bytes of a compact ID token */
	OIDC_JWKS_MAX_KEYS = 32,
};

struct oidc_token_params {
	const char *issuer;	/* must equal "iss" */
	const char *client_id;	/* must be in "aud" (and "azp" when present) */
	const char *nonce;	/* must equal "nonce"; NULL: not checked */
	int64_t now;		/* Unix seconds */
	int64_t skew_s;		/* accepted clock difference for exp, iat, nbf */
};

/*
 * Verifies `token` (len bytes) with the keys of `jwks` ({"keys":[JWK...]},
 * borrowed). On success *claims is the payload (new reference). Errors,
 * with `why` for the log and the page (never the token itself):
 *   ERR_NOT_FOUND      no key in the set has the token's "kid" (the caller
 *                      may refetch the set once: the provider rotated keys)
 *   ERR_BAD_SIGNATURE  the signature does not verify
 *   ERR_EXPIRED        exp is past, or iat/nbf is in the future
 *   ERR_UNAUTHORIZED   wrong iss, aud, azp or nonce, or a refused algorithm
 *   ERR_INVALID        not a well-formed token
 */
int oidc_token_verify(const char *token, size_t len, const json_t *jwks,
		      const struct oidc_token_params *p, json_t **claims, char *why,
		      size_t whylen) WM_MUST_CHECK;

/* base64url without padding (RFC 7515 section 2), via libsodium. decode:
 * 0, or ERR_INVALID when the text is not base64url or does not fit. */
int oidc_b64url_decode(const char *in, size_t inlen, uint8_t *out, size_t outmax,
		       size_t *outlen) WM_MUST_CHECK;
/* out must hold 4*ceil(n/3)+1 bytes. */
void oidc_b64url_encode(char *out, size_t outsize, const uint8_t *in, size_t n);

#endif
