// SPDX-License-Identifier: MIT
/* The signing vector of docs/protocol.md ("Worked example"): if this fails,
 * either the signature scheme changed or the document is wrong. */
#include <check.h>
#include <string.h>

#include <sodium.h>

#include "common/keys.h"
#include "common/sign.h"

Suite *protocol_vector_suite(void);

static const char doc_mkey[] =
    "mkey:03a107bff3ce10be1d70dd18e74bc09967e4d6309ba50d5f1ddc8664125531b8";
static const char doc_sig[] =
    "88ce8fe1ee4c73ec22d5577d8370ba5d81abf9f927103e83e30b511507561a54"
    "334979dc42869fe089f880aacc6975ba670e831b3533049a2da61d98560e5000";
static const char doc_body[] = "{\"version\":0}";
static const char doc_nonce[] = "00112233445566778899aabbccddeeff";

START_TEST(test_doc_vector)
{
	uint8_t seed[32], pk[KEY_LEN], sk[ED25519_SK_LEN], parsed[KEY_LEN];
	char mk[KEY_STR_MAX], sig[SIGN_HEX_LEN + 1];

	ck_assert_int_ge(sodium_init(), 0);
	for (int i = 0; i < 32; i++)
		seed[i] = (uint8_t)i;
	crypto_sign_seed_keypair(pk, sk, seed);
	key_fmt(mk, "mkey:", pk);
	ck_assert_str_eq(mk, doc_mkey);
	ck_assert_int_eq(sign_request(sk, "POST", "/machine/map", 1700000000, doc_nonce, doc_body,
	    strlen(doc_body), sig), 0);
	ck_assert_str_eq(sig, doc_sig);
	/* and the server side accepts the documented headers */
	ck_assert_int_eq(key_parse(doc_mkey, "mkey:", parsed), 0);
	ck_assert_int_eq(sign_verify(parsed, "POST", "/machine/map", 1700000000, doc_nonce, doc_body,
	    strlen(doc_body), doc_sig), 0);
	ck_assert_int_eq(sign_verify(parsed, "POST", "/machine/map", 1700000000, doc_nonce, "{}", 2,
	    doc_sig), ERR_BAD_SIGNATURE);
}
END_TEST

Suite *
protocol_vector_suite(void)
{
	Suite *s = suite_create("protocol_vector");
	TCase *tc = tcase_create("sign");

	tcase_add_test(tc, test_doc_vector);
	suite_add_tcase(s, tc);
	return s;
}
