// SPDX-License-Identifier: MIT
/* server/oidc_token: ID tokens made and signed here with OpenSSL (RSA 2048
 * and P-256 keys, published as a JWKS) are accepted; every way a token can
 * be wrong is refused with the right error: a changed signature or payload,
 * "none", HS256 under an RSA key, a key of the wrong type, an unknown kid,
 * wrong iss or aud (and several audiences without azp), exp past the skew,
 * iat/nbf in the future, a different or missing nonce, a short RSA key,
 * malformed parts. */
#include <check.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>

#include "common/util.h"
#include "server/oidc_token.h"

static EVP_PKEY *rsa, *ec, *rsa_small;
static json_t *jwks;
static int64_t now;

static char *
b64(const uint8_t *p, size_t n)
{
	char *o = malloc(n * 2 + 8);

	oidc_b64url_encode(o, n * 2 + 8, p, n);
	return o;
}

static json_t *
jwk_rsa(EVP_PKEY *k, const char *kid)
{
	BIGNUM *n = NULL, *e = NULL;
	uint8_t nb[1024], eb[16];
	int nl, el;
	char *ns, *es;
	json_t *j;

	ck_assert(EVP_PKEY_get_bn_param(k, OSSL_PKEY_PARAM_RSA_N, &n) == 1);
	ck_assert(EVP_PKEY_get_bn_param(k, OSSL_PKEY_PARAM_RSA_E, &e) == 1);
	nl = BN_bn2bin(n, nb);
	el = BN_bn2bin(e, eb);
	ns = b64(nb, (size_t)nl);
	es = b64(eb, (size_t)el);
	j = json_pack("{s:s, s:s, s:s, s:s, s:s}", "kty", "RSA", "kid", kid, "use", "sig", "n", ns,
	    "e", es);
	free(ns);
	free(es);
	BN_free(n);
	BN_free(e);
	return j;
}

static json_t *
jwk_ec(EVP_PKEY *k, const char *kid)
{
	uint8_t pub[65];
	size_t len = 0;
	char *x, *y;
	json_t *j;

	ck_assert(EVP_PKEY_get_octet_string_param(k, OSSL_PKEY_PARAM_PUB_KEY, pub, sizeof(pub),
	    &len) == 1);
	ck_assert_uint_eq(len, 65);
	x = b64(pub + 1, 32);
	y = b64(pub + 33, 32);
	j = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}", "kty", "EC", "kid", kid, "crv", "P-256",
	    "x", x, "y", y, "alg", "ES256");
	free(x);
	free(y);
	return j;
}

static void
setup(void)
{
	now = time_now_s();
	rsa = EVP_RSA_gen(2048);
	rsa_small = EVP_RSA_gen(1024);
	ec = EVP_EC_gen("P-256");
	ck_assert(rsa && ec && rsa_small);
	jwks = json_pack("{s:[o, o, o]}", "keys", jwk_rsa(rsa, "r1"), jwk_ec(ec, "e1"),
	    jwk_rsa(rsa_small, "small"));
}

static void
teardown(void)
{
	EVP_PKEY_free(rsa);
	EVP_PKEY_free(rsa_small);
	EVP_PKEY_free(ec);
	json_decref(jwks);
}

static json_t *
claims(void)
{
	return json_pack("{s:s, s:s, s:s, s:I, s:I, s:s, s:s}", "iss", "https://idp.test",
	    "sub", "u-1", "aud", "wiremesh", "exp", (json_int_t)(now + 300),
	    "iat", (json_int_t)now, "nonce", "n-123", "email", "alice@example.com");
}

/* Signs header.payload with k (NULL: no signature) as alg; takes claims. */
static char *
token(const char *alg, const char *kid, EVP_PKEY *k, json_t *c)
{
	json_t *h = kid ? json_pack("{s:s, s:s}", "alg", alg, "kid", kid) :
	    json_pack("{s:s}", "alg", alg);
	char *ht = json_dumps(h, JSON_COMPACT), *pt = json_dumps(c, JSON_COMPACT);
	char *hb = b64((uint8_t *)ht, strlen(ht)), *pb = b64((uint8_t *)pt, strlen(pt));
	size_t cap = strlen(hb) + strlen(pb) + 1024;
	char *out = malloc(cap);
	uint8_t sig[600], raw[64];
	size_t sl = sizeof(sig);
	char *sb;

	snprintf(out, cap, "%s.%s", hb, pb);
	if (k) {
		EVP_MD_CTX *m = EVP_MD_CTX_new();

		ck_assert(EVP_DigestSignInit_ex(m, NULL, "SHA256", NULL, NULL, k, NULL) == 1);
		ck_assert(EVP_DigestSign(m, sig, &sl, (uint8_t *)out, strlen(out)) == 1);
		EVP_MD_CTX_free(m);
		if (EVP_PKEY_is_a(k, "EC")) {	/* DER -> r||s */
			const uint8_t *p = sig;
			ECDSA_SIG *es = d2i_ECDSA_SIG(NULL, &p, (long)sl);

			ck_assert(es != NULL);
			BN_bn2binpad(ECDSA_SIG_get0_r(es), raw, 32);
			BN_bn2binpad(ECDSA_SIG_get0_s(es), raw + 32, 32);
			ECDSA_SIG_free(es);
			memcpy(sig, raw, 64);
			sl = 64;
		}
		sb = b64(sig, sl);
	} else {
		sb = strdup(strcmp(alg, "HS256") == 0 ? "c2lnbmF0dXJl" : "");
	}
	snprintf(out + strlen(out), cap - strlen(out), ".%s", sb);
	free(sb);
	free(hb);
	free(pb);
	free(ht);
	free(pt);
	json_decref(h);
	json_decref(c);
	return out;
}

static int
check(const char *tok, const char *nonce, json_t **out)
{
	struct oidc_token_params p = { "https://idp.test", "wiremesh", nonce, now, 60 };
	char why[512];
	json_t *c = NULL;
	int r = oidc_token_verify(tok, strlen(tok), jwks, &p, &c, why, sizeof(why));

	ck_assert(r != 0 || c != NULL);
	ck_assert(r == 0 || c == NULL);
	ck_assert(r == 0 || why[0] != 0);
	ck_assert(!*tok || strstr(why, tok) == NULL);	/* never the token itself */
	if (out)
		*out = c;
	else
		json_decref(c);
	return r;
}

START_TEST(test_rs256_and_es256_accepted)
{
	char *t = token("RS256", "r1", rsa, claims());
	json_t *c;

	ck_assert_int_eq(check(t, "n-123", &c), 0);
	ck_assert_str_eq(json_string_value(json_object_get(c, "sub")), "u-1");
	json_decref(c);
	free(t);
	t = token("ES256", "e1", ec, claims());
	ck_assert_int_eq(check(t, "n-123", NULL), 0);
	free(t);
}
END_TEST

START_TEST(test_bad_signature)
{
	char *t = token("RS256", "r1", rsa, claims());
	char *last = strrchr(t, '.') + 5;

	*last = *last == 'A' ? 'B' : 'A';
	ck_assert_int_eq(check(t, "n-123", NULL), ERR_BAD_SIGNATURE);
	free(t);
	/* the payload of another token under this one's signature */
	{
		char *a = token("ES256", "e1", ec, claims());
		json_t *c2 = claims();
		char *b, *dot_a, *dot_b, *mix;

		json_object_set_new(c2, "sub", json_string("admin"));
		b = token("ES256", "e1", ec, c2);
		dot_a = strchr(a, '.');
		dot_b = strchr(b, '.');
		mix = malloc(strlen(a) + strlen(b));
		/* header of a, payload of b, signature of a */
		sprintf(mix, "%.*s%.*s%s", (int)(dot_a - a), a, (int)(strrchr(b, '.') - dot_b), dot_b,
		    strrchr(a, '.'));
		ck_assert_int_eq(check(mix, "n-123", NULL), ERR_BAD_SIGNATURE);
		free(mix);
		free(a);
		free(b);
	}
}
END_TEST

START_TEST(test_refused_algorithms)
{
	char *t = token("none", "r1", NULL, claims());

	ck_assert_int_eq(check(t, "n-123", NULL), ERR_UNAUTHORIZED);
	free(t);
	t = token("HS256", "r1", NULL, claims());
	ck_assert_int_eq(check(t, "n-123", NULL), ERR_UNAUTHORIZED);
	free(t);
	/* an ES256 token naming the RSA key: no key of that type has that kid */
	t = token("ES256", "r1", ec, claims());
	ck_assert_int_eq(check(t, "n-123", NULL), ERR_NOT_FOUND);
	free(t);
	/* a 1024-bit RSA key is refused even when the signature is good */
	t = token("RS256", "small", rsa_small, claims());
	ck_assert_int_eq(check(t, "n-123", NULL), ERR_UNAUTHORIZED);
	free(t);
}
END_TEST

START_TEST(test_unknown_kid)
{
	char *t = token("RS256", "rotated", rsa, claims());

	ck_assert_int_eq(check(t, "n-123", NULL), ERR_NOT_FOUND);
	free(t);
}
END_TEST

START_TEST(test_issuer_and_audience)
{
	json_t *c = claims();
	char *t;

	json_object_set_new(c, "iss", json_string("https://evil.test"));
	t = token("RS256", "r1", rsa, c);
	ck_assert_int_eq(check(t, "n-123", NULL), ERR_UNAUTHORIZED);
	free(t);
	c = claims();
	json_object_set_new(c, "aud", json_string("another-client"));
	t = token("RS256", "r1", rsa, c);
	ck_assert_int_eq(check(t, "n-123", NULL), ERR_UNAUTHORIZED);
	free(t);
	c = claims();
	json_object_set_new(c, "aud", json_pack("[s, s]", "wiremesh", "other"));
	t = token("RS256", "r1", rsa, c);
	ck_assert_int_eq(check(t, "n-123", NULL), ERR_UNAUTHORIZED);	/* no azp */
	free(t);
	c = claims();
	json_object_set_new(c, "aud", json_pack("[s, s]", "wiremesh", "other"));
	json_object_set_new(c, "azp", json_string("wiremesh"));
	t = token("RS256", "r1", rsa, c);
	ck_assert_int_eq(check(t, "n-123", NULL), 0);
	free(t);
	c = claims();
	json_object_set_new(c, "azp", json_string("other"));
	t = token("RS256", "r1", rsa, c);
	ck_assert_int_eq(check(t, "n-123", NULL), ERR_UNAUTHORIZED);
	free(t);
}
END_TEST

START_TEST(test_times)
{
	json_t *c = claims();
	char *t;

	json_object_set_new(c, "exp", json_integer(now - 120));
	t = token("ES256", "e1", ec, c);
	ck_assert_int_eq(check(t, "n-123", NULL), ERR_EXPIRED);
	free(t);
	c = claims();
	json_object_set_new(c, "exp", json_integer(now - 30));	/* inside the 60 s skew */
	t = token("ES256", "e1", ec, c);
	ck_assert_int_eq(check(t, "n-123", NULL), 0);
	free(t);
	c = claims();
	json_object_set_new(c, "iat", json_integer(now + 300));
	t = token("ES256", "e1", ec, c);
	ck_assert_int_eq(check(t, "n-123", NULL), ERR_EXPIRED);
	free(t);
	c = claims();
	json_object_set_new(c, "nbf", json_integer(now + 300));
	t = token("ES256", "e1", ec, c);
	ck_assert_int_eq(check(t, "n-123", NULL), ERR_EXPIRED);
	free(t);
	c = claims();
	json_object_del(c, "exp");
	t = token("ES256", "e1", ec, c);
	ck_assert_int_eq(check(t, "n-123", NULL), ERR_INVALID);
	free(t);
}
END_TEST

START_TEST(test_nonce)
{
	char *t = token("RS256", "r1", rsa, claims());
	json_t *c = claims();

	ck_assert_int_eq(check(t, "n-other", NULL), ERR_UNAUTHORIZED);
	free(t);
	json_object_del(c, "nonce");
	t = token("RS256", "r1", rsa, c);
	ck_assert_int_eq(check(t, "n-123", NULL), ERR_UNAUTHORIZED);
	free(t);
}
END_TEST

START_TEST(test_malformed)
{
	static const char *const bad[] = { "", "abc", "a.b", "a.b.c.d", "!!!.e30.", "e30.e30.",
	    "WyJhIl0.e30.AAAA", "eyJhbGciOiJSUzI1NiJ9.%%%.AAAA" };

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int r = check(bad[i], "n-123", NULL);

		ck_assert_msg(r == ERR_INVALID || r == ERR_UNAUTHORIZED || r == ERR_NOT_FOUND ||
		    r == ERR_BAD_SIGNATURE, "token %zu: %d", i, r);
	}
}
END_TEST

Suite *
oidc_suite(void)
{
	Suite *s = suite_create("oidc");
	TCase *tc = tcase_create("token");

	tcase_add_unchecked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, test_rs256_and_es256_accepted);
	tcase_add_test(tc, test_bad_signature);
	tcase_add_test(tc, test_refused_algorithms);
	tcase_add_test(tc, test_unknown_kid);
	tcase_add_test(tc, test_issuer_and_audience);
	tcase_add_test(tc, test_times);
	tcase_add_test(tc, test_nonce);
	tcase_add_test(tc, test_malformed);
	suite_add_tcase(s, tc);
	return s;
}
