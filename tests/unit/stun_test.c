// SPDX-License-Identifier: MIT
/* relay/stun: RFC 5769 vectors, our request/response round trip, the server's
 * drop decisions, and bounds on malformed input. */
#include <check.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/addr.h"
#include "relay/stun.h"
#include "relay/stun_server.h"

static const char password[] = "VOkJxbRl1RmTxUk/WvJxBt";

/* Reads tests/vectors/stun/NAME (hex) into out; returns the length. */
static size_t load_vector(const char *name, uint8_t *out, size_t cap)
{
	const char *top = getenv("WM_TOP");
	char path[512], line[512];
	size_t n = 0;
	FILE *f;

	snprintf(path, sizeof(path), "%s/tests/vectors/stun/%s", top ? top : ".", name);
	f = fopen(path, "r");
	ck_assert_msg(f != NULL, "cannot open %s", path);
	while (fgets(line, sizeof(line), f)) {
		for (char *p = line; *p;) {
			unsigned v;

			if (isspace((unsigned char)*p)) {
				p++;
				continue;
			}
			ck_assert(sscanf(p, "%2x", &v) == 1);
			ck_assert(n < cap);
			out[n++] = (uint8_t)v;
			p += 2;
		}
	}
	fclose(f);
	return n;
}

START_TEST(test_rfc5769_request)
{
	uint8_t msg[256];
	size_t n = load_vector("rfc5769-request.hex", msg, sizeof(msg));
	struct stun_msg m;

	ck_assert_int_eq(n, 108);
	ck_assert_int_eq(stun_parse(msg, n, &m), 0);
	ck_assert_int_eq(m.type, STUN_BINDING_REQUEST);
	ck_assert(m.rfc5389);
	ck_assert(m.has_fingerprint && m.fingerprint_ok);
	ck_assert(m.software_len == 16 && memcmp(m.software, "STUN test client", 16) == 0);
	ck_assert_int_eq(stun_check_integrity(msg, n, &m, (const uint8_t *)password,
					      strlen(password)), 0);
	ck_assert_int_eq(stun_check_integrity(msg, n, &m, (const uint8_t *)"wrong", 5),
			 ERR_BAD_SIGNATURE);
	/* one flipped bit breaks the fingerprint */
	msg[30] ^= 1;
	ck_assert_int_eq(stun_parse(msg, n, &m), 0);
	ck_assert(m.has_fingerprint && !m.fingerprint_ok);
}
END_TEST

START_TEST(test_rfc5769_ipv4_response)
{
	uint8_t msg[256];
	size_t n = load_vector("rfc5769-response-ipv4.hex", msg, sizeof(msg));
	struct stun_msg m;
	struct endpoint e;
	char s[ADDR_STR_MAX];

	ck_assert_int_eq(n, 80);
	ck_assert_int_eq(stun_parse(msg, n, &m), 0);
	ck_assert_int_eq(m.type, STUN_BINDING_SUCCESS);
	ck_assert(m.fingerprint_ok);
	ck_assert_int_eq(stun_check_integrity(msg, n, &m, (const uint8_t *)password,
					      strlen(password)), 0);
	ck_assert_int_eq(stun_response_addr(&m, &e), 0);
	endpoint_fmt(s, &e);
	ck_assert_str_eq(s, "192.0.2.1:32853");
}
END_TEST

START_TEST(test_rfc5769_ipv6_response)
{
	uint8_t msg[256];
	size_t n = load_vector("rfc5769-response-ipv6.hex", msg, sizeof(msg));
	struct stun_msg m;
	struct endpoint e;
	char s[ADDR_STR_MAX];

	ck_assert_int_eq(n, 92);
	ck_assert_int_eq(stun_parse(msg, n, &m), 0);
	ck_assert(m.fingerprint_ok);
	ck_assert_int_eq(stun_check_integrity(msg, n, &m, (const uint8_t *)password,
					      strlen(password)), 0);
	ck_assert_int_eq(stun_response_addr(&m, &e), 0);
	endpoint_fmt(s, &e);
	ck_assert_str_eq(s, "[2001:db8:1234:5678:11:2233:4455:6677]:32853");
}
END_TEST

START_TEST(test_round_trip)
{
	static const uint8_t txid[STUN_TXID_LEN] = { 1,2,3,4,5,6,7,8,9,10,11,12 };
	uint8_t req[STUN_BINDING_REQUEST_LEN], resp[STUN_MAX_MSG];
	struct stun_server_stats st = { 0 };
	struct stun_msg m;
	struct endpoint from, got;
	size_t n;

	ck_assert_int_eq(stun_build_request(req, txid), STUN_BINDING_REQUEST_LEN);
	ck_assert(stun_looks_like(req, sizeof(req)));
	ck_assert_int_eq(stun_parse(req, sizeof(req), &m), 0);
	ck_assert(m.fingerprint_ok);
	ck_assert(m.software_len == 8 && memcmp(m.software, "tailnode", 8) == 0);
	ck_assert_int_eq(endpoint_parse("198.51.100.7:41641", &from), 0);
	n = stun_server_handle(&st, req, sizeof(req), &from, resp, sizeof(resp));
	ck_assert_uint_gt(n, 0);
	ck_assert_int_eq(st.requests, 1);
	ck_assert(stun_looks_like(resp, n));
	ck_assert_int_eq(stun_parse(resp, n, &m), 0);
	ck_assert_int_eq(m.type, STUN_BINDING_SUCCESS);
	ck_assert(m.fingerprint_ok && m.has_xor_mapped);
	ck_assert(memcmp(m.txid + 4, txid, STUN_TXID_LEN) == 0);
	ck_assert_int_eq(stun_response_addr(&m, &got), 0);
	ck_assert(addr_equal(&got.addr, &from.addr) && got.port == from.port);
	/* IPv6 source */
	ck_assert_int_eq(endpoint_parse("[2001:db8::7]:5", &from), 0);
	n = stun_server_handle(&st, req, sizeof(req), &from, resp, sizeof(resp));
	ck_assert_int_eq(stun_parse(resp, n, &m), 0);
	ck_assert_int_eq(stun_response_addr(&m, &got), 0);
	ck_assert(addr_equal(&got.addr, &from.addr) && got.port == 5);
}
END_TEST

START_TEST(test_classic_rfc3489)
{
	/* RFC 3489 request: no cookie, 16-byte transaction ID, CHANGE-REQUEST 0 */
	uint8_t req[28] = { 0x00, 0x01, 0x00, 0x08, 0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4, 5, 6,
			    7, 8, 9, 10, 11, 12, 0x00, 0x03, 0x00, 0x04, 0, 0, 0, 0 };
	uint8_t resp[STUN_MAX_MSG];
	struct stun_server_stats st = { 0 };
	struct stun_msg m;
	struct endpoint from, got;
	size_t n;

	ck_assert_int_eq(endpoint_parse("203.0.113.9:3000", &from), 0);
	n = stun_server_handle(&st, req, sizeof(req), &from, resp, sizeof(resp));
	ck_assert_uint_gt(n, 0);
	ck_assert_int_eq(st.classic, 1);
	ck_assert_int_eq(stun_parse(resp, n, &m), 0);
	ck_assert(!m.rfc5389 && m.has_mapped && !m.has_xor_mapped);
	ck_assert(memcmp(resp + 4, req + 4, 16) == 0);
	ck_assert_int_eq(stun_response_addr(&m, &got), 0);
	ck_assert(addr_equal(&got.addr, &from.addr) && got.port == 3000);
	/* asking for a changed address we do not have: dropped, counted */
	req[27] = 0x06;
	ck_assert_uint_eq(stun_server_handle(&st, req, sizeof(req), &from, resp, sizeof(resp)), 0);
	ck_assert_int_eq(st.unsupported, 1);
}
END_TEST

START_TEST(test_garbage_dropped)
{
	static const uint8_t txid[STUN_TXID_LEN] = { 0 };
	uint8_t req[STUN_BINDING_REQUEST_LEN], resp[STUN_MAX_MSG], junk[64];
	struct stun_server_stats st = { 0 };
	struct stun_msg m;
	struct endpoint from;

	ck_assert_int_eq(endpoint_parse("192.0.2.1:1", &from), 0);
	stun_build_request(req, txid);
	/* bad fingerprint */
	req[10] ^= 0xff;
	ck_assert_uint_eq(stun_server_handle(&st, req, sizeof(req), &from, resp, sizeof(resp)), 0);
	req[10] ^= 0xff;
	/* declared length past the datagram */
	req[3] = 0x40;
	ck_assert_int_eq(stun_parse(req, sizeof(req), &m), ERR_INVALID);
	ck_assert_uint_eq(stun_server_handle(&st, req, sizeof(req), &from, resp, sizeof(resp)), 0);
	req[3] = 0x14;
	/* attribute overrunning the message */
	req[22] = 0x7f;
	ck_assert_int_eq(stun_parse(req, sizeof(req), &m), ERR_INVALID);
	req[22] = 0x00;
	/* short, random, top bits set */
	memset(junk, 0xc5, sizeof(junk));
	ck_assert_uint_eq(stun_server_handle(&st, junk, 3, &from, resp, sizeof(resp)), 0);
	ck_assert_uint_eq(stun_server_handle(&st, junk, sizeof(junk), &from, resp, sizeof(resp)), 0);
	ck_assert_int_eq(st.garbage, 4);
	/* a success response sent to the server is not answered */
	ck_assert_uint_gt(stun_server_handle(&st, req, sizeof(req), &from, resp, sizeof(resp)), 0);
	{
		size_t n = stun_build_response(resp, sizeof(resp), &(struct stun_msg){ .rfc5389 = true }, &from);
		uint8_t out[STUN_MAX_MSG];

		ck_assert_uint_eq(stun_server_handle(&st, resp, n, &from, out, sizeof(out)), 0);
		ck_assert_int_eq(st.unsupported, 1);
	}
	/* truncated trailing bytes are tolerated */
	{
		uint8_t big[STUN_BINDING_REQUEST_LEN + 7] = { 0 };

		memcpy(big, req, sizeof(req));
		ck_assert_int_eq(stun_parse(big, sizeof(big), &m), 0);
		ck_assert(m.fingerprint_ok);
	}
}
END_TEST

Suite *stun_suite(void)
{
	Suite *s = suite_create("stun");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, test_rfc5769_request);
	tcase_add_test(tc, test_rfc5769_ipv4_response);
	tcase_add_test(tc, test_rfc5769_ipv6_response);
	tcase_add_test(tc, test_round_trip);
	tcase_add_test(tc, test_classic_rfc3489);
	tcase_add_test(tc, test_garbage_dropped);
	suite_add_tcase(s, tc);
	return s;
}
