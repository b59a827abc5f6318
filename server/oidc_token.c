// SPDX-License-Identifier: MIT
/*
 * ID token verification: split the compact JWS, read its header, pick the
 * JWK by kid and key type, build an OpenSSL public key from it, verify the
 * signature with EVP_DigestVerify, then check the claims. Only after the
 * signature verifies is the payload believed.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <sodium.h>

#include "server/oidc_token.h"

struct alg {
	const char *name;
	const char *kty;	/* "RSA" or "EC" */
	const char *crv;	/* EC curve name in JWK terms */
	const char *ossl_group;
	size_t coord;		/* EC coordinate bytes */
	const char *md;
};

static const struct alg algs[] = {
	{ "RS256", "RSA", NULL, NULL, 0, "SHA256" },
	{ "RS384", "RSA", NULL, NULL, 0, "SHA384" },
	{ "RS512", "RSA", NULL, NULL, 0, "SHA512" },
	{ "ES256", "EC", "P-256", "prime256v1", 32, "SHA256" },
	{ "ES384", "EC", "P-384", "secp384r1", 48, "SHA384" },
};

int
oidc_b64url_decode(const char *in, size_t inlen, uint8_t *out, size_t outmax, size_t *outlen)
{
	const char *end = NULL;

	*outlen = 0;
	if (sodium_base642bin(out, outmax, in, inlen, NULL, outlen, &end,
	    sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0 || end != in + inlen)
		return ERR_INVALID;
	return 0;
}

void
oidc_b64url_encode(char *out, size_t outsize, const uint8_t *in, size_t n)
{
	if (outsize < sodium_base64_ENCODED_LEN(n, sodium_base64_VARIANT_URLSAFE_NO_PADDING)) {
		if (outsize)
			out[0] = 0;
		return;
	}
	sodium_bin2base64(out, outsize, in, n, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
}

/* Decodes one base64url JSON object part; NULL when it is not one. */
static json_t *
part_json(const char *p, size_t n)
{
	uint8_t *buf = malloc(n + 1);
	size_t len;
	json_t *o = NULL;

	if (buf == NULL)
		return NULL;
	if (oidc_b64url_decode(p, n, buf, n + 1, &len) == 0)
		o = json_loadb((const char *)buf, len, JSON_REJECT_DUPLICATES, NULL);
	free(buf);
	if (o && !json_is_object(o)) {
		json_decref(o);
		o = NULL;
	}
	return o;
}

/* A base64url member of a JWK as big-endian bytes. */
static int
jwk_bytes(const json_t *jwk, const char *name, uint8_t *out, size_t max, size_t *len)
{
	const char *v = json_string_value(json_object_get(jwk, name));

	if (v == NULL || *v == 0)
		return ERR_INVALID;
	return oidc_b64url_decode(v, strlen(v), out, max, len);
}

static EVP_PKEY *
pkey_from_params(const char *type, OSSL_PARAM_BLD *bld)
{
	OSSL_PARAM *params = OSSL_PARAM_BLD_to_param(bld);
	EVP_PKEY_CTX *ctx = params ? EVP_PKEY_CTX_new_from_name(NULL, type, NULL) : NULL;
	EVP_PKEY *pk = NULL;

	if (ctx == NULL || EVP_PKEY_fromdata_init(ctx) != 1 ||
	    EVP_PKEY_fromdata(ctx, &pk, EVP_PKEY_PUBLIC_KEY, params) != 1)
		pk = NULL;
	EVP_PKEY_CTX_free(ctx);
	OSSL_PARAM_free(params);
	return pk;
}

/* An OpenSSL public key from a JWK of the algorithm's type; NULL and why. */
static EVP_PKEY *
jwk_to_pkey(const json_t *jwk, const struct alg *a, char *why, size_t whylen)
{
	OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
	EVP_PKEY *pk = NULL;
	BIGNUM *n = NULL, *e = NULL;
	uint8_t buf[1024], pub[1 + 2 * 66];
	size_t len, ylen;

	if (bld == NULL)
		goto out;
	if (strcmp(a->kty, "RSA") == 0) {
		if (jwk_bytes(jwk, "n", buf, sizeof(buf), &len) != 0 ||
		    (n = BN_bin2bn(buf, (int)len, NULL)) == NULL ||
		    jwk_bytes(jwk, "e", buf, sizeof(buf), &len) != 0 || len > 8 ||
		    (e = BN_bin2bn(buf, (int)len, NULL)) == NULL) {
			snprintf(why, whylen, "the provider's RSA key is malformed");
			goto out;
		}
		if (!OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, n) ||
		    !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, e))
			goto out;
		pk = pkey_from_params("RSA", bld);
		if (pk && EVP_PKEY_get_bits(pk) < 2048) {
			snprintf(why, whylen, "the provider's RSA key has fewer than 2048 bits");
			EVP_PKEY_free(pk);
			pk = NULL;
		}
	} else {
		const char *crv = json_string_value(json_object_get(jwk, "crv"));

		if (crv == NULL || strcmp(crv, a->crv) != 0) {
			snprintf(why, whylen, "the provider's key is not on curve %s", a->crv);
			goto out;
		}
		pub[0] = 0x04;	/* uncompressed point */
		if (jwk_bytes(jwk, "x", pub + 1, a->coord, &len) != 0 || len != a->coord ||
		    jwk_bytes(jwk, "y", pub + 1 + a->coord, a->coord, &ylen) != 0 ||
		    ylen != a->coord) {
			snprintf(why, whylen, "the provider's EC key is malformed");
			goto out;
		}
		if (!OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME,
		    a->ossl_group, 0) ||
		    !OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, pub,
		    1 + 2 * a->coord))
			goto out;
		pk = pkey_from_params("EC", bld);
	}
	if (pk == NULL && why[0] == 0)
		snprintf(why, whylen, "the provider's %s key is not valid", a->kty);
out:
	BN_free(n);
	BN_free(e);
	OSSL_PARAM_BLD_free(bld);
	return pk;
}

/* JWS ES* signatures are r||s; OpenSSL wants DER. */
static int
ecdsa_der(const uint8_t *sig, size_t len, size_t coord, uint8_t **der, size_t *derlen)
{
	ECDSA_SIG *es = NULL;
	BIGNUM *r = NULL, *s = NULL;
	unsigned char *p = NULL;
	int n;

	*der = NULL;
	if (len != 2 * coord)
		return ERR_BAD_SIGNATURE;
	if ((es = ECDSA_SIG_new()) == NULL || (r = BN_bin2bn(sig, (int)coord, NULL)) == NULL ||
	    (s = BN_bin2bn(sig + coord, (int)coord, NULL)) == NULL) {
		BN_free(r);
		BN_free(s);
		ECDSA_SIG_free(es);
		return ERR_NOMEM;
	}
	ECDSA_SIG_set0(es, r, s);	/* es owns r and s */
	n = i2d_ECDSA_SIG(es, &p);
	ECDSA_SIG_free(es);
	if (n <= 0)
		return ERR_NOMEM;
	*der = p;
	*derlen = (size_t)n;
	return 0;
}

/* The JWK for this token: same kid (when the token names one), same type,
 * meant for signatures and, if it says, for this algorithm. */
static const json_t *
pick_key(const json_t *jwks, const char *kid, const struct alg *a, int *candidates)
{
	const json_t *keys = json_object_get(jwks, "keys"), *k, *found = NULL;
	size_t i;

	*candidates = 0;
	if (!json_is_array(keys))
		return NULL;
	json_array_foreach(keys, i, k) {
		const char *kty = json_string_value(json_object_get(k, "kty"));
		const char *use = json_string_value(json_object_get(k, "use"));
		const char *kalg = json_string_value(json_object_get(k, "alg"));
		const char *kkid = json_string_value(json_object_get(k, "kid"));

		if (i >= OIDC_JWKS_MAX_KEYS)
			break;
		if (kty == NULL || strcmp(kty, a->kty) != 0 || (use && strcmp(use, "sig") != 0) ||
		    (kalg && strcmp(kalg, a->name) != 0))
			continue;
		if (kid && (kkid == NULL || strcmp(kid, kkid) != 0))
			continue;
		(*candidates)++;
		if (found == NULL)
			found = k;
	}
	return found;
}

static int
verify_sig(const char *token, size_t signed_len, const char *sig64, size_t sig64len,
	   const json_t *jwk, const struct alg *a, char *why, size_t whylen)
{
	uint8_t sig[1024], *der = NULL;
	size_t siglen, derlen = 0;
	EVP_PKEY *pk;
	EVP_MD_CTX *mctx = NULL;
	int r = ERR_BAD_SIGNATURE, ok;

	if (oidc_b64url_decode(sig64, sig64len, sig, sizeof(sig), &siglen) != 0) {
		snprintf(why, whylen, "the ID token's signature is not base64url");
		return ERR_INVALID;
	}
	why[0] = 0;
	if ((pk = jwk_to_pkey(jwk, a, why, whylen)) == NULL)
		return ERR_UNAUTHORIZED;
	if (strcmp(a->kty, "EC") == 0 && (r = ecdsa_der(sig, siglen, a->coord, &der, &derlen)) != 0) {
		EVP_PKEY_free(pk);
		snprintf(why, whylen, "the ID token's signature does not verify");
		return r == ERR_NOMEM ? r : ERR_BAD_SIGNATURE;
	}
	r = ERR_BAD_SIGNATURE;
	if ((mctx = EVP_MD_CTX_new()) != NULL &&
	    EVP_DigestVerifyInit_ex(mctx, NULL, a->md, NULL, NULL, pk, NULL) == 1) {
		ok = EVP_DigestVerify(mctx, der ? der : sig, der ? derlen : siglen,
		    (const unsigned char *)token, signed_len);
		if (ok == 1)
			r = 0;
	}
	if (r != 0)
		snprintf(why, whylen, "the ID token's signature does not verify with the provider's "
		    "key");
	EVP_MD_CTX_free(mctx);
	OPENSSL_free(der);
	EVP_PKEY_free(pk);
	return r;
}

static int
num_claim(const json_t *c, const char *name, bool required, int64_t *out, char *why,
	  size_t whylen)
{
	const json_t *v = json_object_get(c, name);

	*out = 0;
	if (v == NULL) {
		if (required) {
			snprintf(why, whylen, "the ID token has no \"%s\" claim", name);
			return ERR_INVALID;
		}
		return 0;
	}
	if (json_is_integer(v))
		*out = (int64_t)json_integer_value(v);
	else if (json_is_real(v) && json_real_value(v) > -1e15 && json_real_value(v) < 1e15)
		*out = (int64_t)json_real_value(v);
	else {
		snprintf(why, whylen, "the ID token's \"%s\" claim is not a number", name);
		return ERR_INVALID;
	}
	return 0;
}

static int
check_claims(const json_t *c, const struct oidc_token_params *p, char *why, size_t whylen)
{
	const char *iss = json_string_value(json_object_get(c, "iss"));
	const char *sub = json_string_value(json_object_get(c, "sub"));
	const char *azp = json_string_value(json_object_get(c, "azp"));
	const char *nonce = json_string_value(json_object_get(c, "nonce"));
	const json_t *aud = json_object_get(c, "aud"), *v;
	int64_t exp, iat, nbf;
	bool aud_ok = false;
	size_t i;
	int r;

	if (iss == NULL || strcmp(iss, p->issuer) != 0) {
		snprintf(why, whylen, "the ID token was issued by another issuer, not %s", p->issuer);
		return ERR_UNAUTHORIZED;
	}
	if (json_is_string(aud)) {
		aud_ok = strcmp(json_string_value(aud), p->client_id) == 0;
	} else if (json_is_array(aud)) {
		json_array_foreach(aud, i, v)
			if (json_is_string(v) && strcmp(json_string_value(v), p->client_id) == 0)
				aud_ok = true;
		if (json_array_size(aud) > 1 && azp == NULL)
			aud_ok = false;	/* several audiences: azp must say it is us */
	}
	if (!aud_ok || (azp && strcmp(azp, p->client_id) != 0)) {
		snprintf(why, whylen, "the ID token is meant for another client (audience), not %s",
		    p->client_id);
		return ERR_UNAUTHORIZED;
	}
	if ((r = num_claim(c, "exp", true, &exp, why, whylen)) != 0 ||
	    (r = num_claim(c, "iat", true, &iat, why, whylen)) != 0 ||
	    (r = num_claim(c, "nbf", false, &nbf, why, whylen)) != 0)
		return r;
	if (exp + p->skew_s <= p->now) {
		snprintf(why, whylen, "the ID token expired %lld s ago", (long long)(p->now - exp));
		return ERR_EXPIRED;
	}
	if (iat > p->now + p->skew_s || (nbf && nbf > p->now + p->skew_s)) {
		snprintf(why, whylen, "the ID token is not valid yet (issued %lld s in the future; "
		    "check the clocks)", (long long)((nbf > iat ? nbf : iat) - p->now));
		return ERR_EXPIRED;
	}
	if (p->nonce && (nonce == NULL || strcmp(nonce, p->nonce) != 0)) {
		snprintf(why, whylen, "the ID token's nonce does not match this login (replayed token)");
		return ERR_UNAUTHORIZED;
	}
	if (sub == NULL || *sub == 0 || strlen(sub) > 255) {
		snprintf(why, whylen, "the ID token has no usable \"sub\" claim");
		return ERR_INVALID;
	}
	return 0;
}

int
oidc_token_verify(const char *token, size_t len, const json_t *jwks,
		  const struct oidc_token_params *p, json_t **claims, char *why, size_t whylen)
{
	const char *dot1, *dot2, *name, *kid;
	json_t *hdr = NULL, *payload = NULL;
	const struct alg *a = NULL;
	const json_t *jwk;
	int candidates, r = ERR_INVALID;

	*claims = NULL;
	why[0] = 0;
	if (len == 0 || len > OIDC_TOKEN_MAX || memchr(token, 0, len) != NULL) {
		snprintf(why, whylen, "the ID token is empty or too long");
		return ERR_INVALID;
	}
	dot1 = memchr(token, '.', len);
	dot2 = dot1 ? memchr(dot1 + 1, '.', len - (size_t)(dot1 + 1 - token)) : NULL;
	if (dot2 == NULL || memchr(dot2 + 1, '.', len - (size_t)(dot2 + 1 - token)) != NULL) {
		snprintf(why, whylen, "the ID token is not a signed JWT (three parts)");
		return ERR_INVALID;
	}
	if ((hdr = part_json(token, (size_t)(dot1 - token))) == NULL) {
		snprintf(why, whylen, "the ID token's header is not base64url JSON");
		goto out;
	}
	name = json_string_value(json_object_get(hdr, "alg"));
	for (size_t i = 0; name && i < sizeof(algs) / sizeof(algs[0]); i++)
		if (strcmp(algs[i].name, name) == 0)
			a = &algs[i];
	if (a == NULL) {
		snprintf(why, whylen, "the ID token's algorithm \"%.20s\" is not accepted (RS256, "
		    "RS384, RS512, ES256, ES384)", name ? name : "");
		r = ERR_UNAUTHORIZED;
		goto out;
	}
	if (json_object_get(hdr, "crit") != NULL) {
		snprintf(why, whylen, "the ID token has critical header extensions");
		r = ERR_UNAUTHORIZED;
		goto out;
	}
	kid = json_string_value(json_object_get(hdr, "kid"));
	if ((jwk = pick_key(jwks, kid, a, &candidates)) == NULL) {
		snprintf(why, whylen, "no key of the provider matches the ID token (kid %.64s)",
		    kid ? kid : "none");
		r = ERR_NOT_FOUND;
		goto out;
	}
	if (kid == NULL && candidates > 1) {
		snprintf(why, whylen, "the ID token names no key and the provider has several");
		r = ERR_UNAUTHORIZED;
		goto out;
	}
	if ((r = verify_sig(token, (size_t)(dot2 - token), dot2 + 1,
	    len - (size_t)(dot2 + 1 - token), jwk, a, why, whylen)) != 0)
		goto out;
	if ((payload = part_json(dot1 + 1, (size_t)(dot2 - dot1 - 1))) == NULL) {
		snprintf(why, whylen, "the ID token's payload is not base64url JSON");
		r = ERR_INVALID;
		goto out;
	}
	if ((r = check_claims(payload, p, why, whylen)) != 0)
		goto out;
	*claims = payload;
	payload = NULL;
	r = 0;
out:
	json_decref(hdr);
	json_decref(payload);
	return r;
}
