// SPDX-License-Identifier: MIT
/* common/: addresses, keys, buffers, durations, error table. */
#include <arpa/inet.h>
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/addr.h"
#include "common/buf.h"
#include "common/err.h"
#include "common/keys.h"
#include "common/util.h"

/* Differential: our formatter against inet_ntop on addresses rich in zero
 * groups (runs, ties, mapped and compatible IPv4 forms) and random ones. */
START_TEST(test_addr_fmt_matches_inet_ntop)
{
	uint64_t x = 0x243f6a8885a308d3ULL;

	for (int iter = 0; iter < 200000; iter++) {
		struct ip_addr a = { .family = iter & 1 ? AF_INET : AF_INET6 };
		struct ip_prefix p;
		struct endpoint e;
		char ours[ADDR_STR_MAX], ref[ADDR_STR_MAX], want[ADDR_STR_MAX + 16];

		for (int i = 0; i < 16; i += 2) {
			x ^= x << 13;
			x ^= x >> 7;
			x ^= x << 17;
			/* most groups zero or small, some 0xffff */
			switch (x % 5) {
			case 0: case 1: a.b[i] = a.b[i + 1] = 0; break;
			case 2: a.b[i] = 0; a.b[i + 1] = (uint8_t)(x >> 8); break;
			case 3: a.b[i] = a.b[i + 1] = 0xff; break;
			default: a.b[i] = (uint8_t)(x >> 16); a.b[i + 1] = (uint8_t)(x >> 24);
			}
		}
		ck_assert_ptr_nonnull(inet_ntop(a.family, a.b, ref, sizeof(ref)));
		addr_fmt(ours, &a);
		ck_assert_str_eq(ours, ref);
		p.addr = a;
		p.bits = (int)(x % 129);
		prefix_fmt(ours, &p);
		snprintf(want, sizeof(want), "%s/%d", ref, p.bits);
		ck_assert_str_eq(ours, want);
		e.addr = a;
		e.port = (uint16_t)(x >> 32);
		endpoint_fmt(ours, &e);
		snprintf(want, sizeof(want), a.family == AF_INET6 ? "[%s]:%u" : "%s:%u", ref, e.port);
		ck_assert_str_eq(ours, want);
	}
}
END_TEST

START_TEST(test_prefix_parse)
{
	struct ip_prefix p;
	struct ip_addr a;
	char s[ADDR_STR_MAX];

	ck_assert_int_eq(prefix_parse("100.64.0.0/10", false, &p), 0);
	ck_assert_int_eq(p.bits, 10);
	prefix_fmt(s, &p);
	ck_assert_str_eq(s, "100.64.0.0/10");
	ck_assert_int_eq(addr_parse("100.127.255.255", &a), 0);
	ck_assert(prefix_contains(&p, &a));
	ck_assert_int_eq(addr_parse("100.128.0.0", &a), 0);
	ck_assert(!prefix_contains(&p, &a));
	ck_assert_int_eq(prefix_parse("100.64.0.1/10", false, &p), ERR_INVALID);
	ck_assert_int_eq(prefix_parse("100.64.0.1/10", true, &p), 0);
	ck_assert_int_eq(prefix_parse("1.2.3.4/33", false, &p), ERR_INVALID);
	ck_assert_int_eq(prefix_parse("1.2.3.4/", false, &p), ERR_INVALID);
	ck_assert_int_eq(prefix_parse("fd7a:115c:a1e0::/48", false, &p), 0);
	ck_assert_int_eq(addr_parse("fd7a:115c:a1e0:0:1::5", &a), 0);
	ck_assert(prefix_contains(&p, &a));
	ck_assert_int_eq(prefix_parse("nonsense", false, &p), ERR_INVALID);
}
END_TEST

START_TEST(test_endpoint)
{
	struct endpoint e;
	char s[ADDR_STR_MAX];

	ck_assert_int_eq(endpoint_parse("192.0.2.10:41641", &e), 0);
	ck_assert_int_eq(e.port, 41641);
	endpoint_fmt(s, &e);
	ck_assert_str_eq(s, "192.0.2.10:41641");
	ck_assert_int_eq(endpoint_parse("[2001:db8::1]:443", &e), 0);
	endpoint_fmt(s, &e);
	ck_assert_str_eq(s, "[2001:db8::1]:443");
	ck_assert_int_eq(endpoint_parse("192.0.2.10:0", &e), ERR_INVALID);
	ck_assert_int_eq(endpoint_parse("192.0.2.10:65536", &e), ERR_INVALID);
	ck_assert_int_eq(endpoint_parse("2001:db8::1:443", &e), ERR_INVALID);
	ck_assert_int_eq(endpoint_parse("192.0.2.10", &e), ERR_INVALID);
}
END_TEST

START_TEST(test_addr_arith)
{
	struct ip_addr a, b;
	char s[ADDR_STR_MAX];

	ck_assert_int_eq(addr_parse("100.64.0.255", &a), 0);
	b = a;
	addr_add(&b, 2);
	addr_fmt(s, &b);
	ck_assert_str_eq(s, "100.64.1.1");
	ck_assert_uint_eq(addr_offset(&a, &b), 2);
}
END_TEST

START_TEST(test_keys)
{
	uint8_t k[KEY_LEN], k2[KEY_LEN];
	char s[KEY_STR_MAX], b64[KEY_B64_LEN + 1];

	for (int i = 0; i < KEY_LEN; i++)
		k[i] = (uint8_t)(i * 7);
	key_fmt(s, "nodekey:", k);
	ck_assert_uint_eq(strlen(s), 8 + 64);
	ck_assert_int_eq(key_parse(s, "nodekey:", k2), 0);
	ck_assert(key_equal(k, k2));
	ck_assert_int_eq(key_parse(s, "mkey:", k2), ERR_INVALID);
	s[20] = 'x';
	ck_assert_int_eq(key_parse(s, "nodekey:", k2), ERR_INVALID);
	ck_assert_int_eq(key_parse("nodekey:00", "nodekey:", k2), ERR_INVALID);
	key_to_base64(b64, k);
	memset(k2, 0, sizeof(k2));
	ck_assert_int_eq(key_from_base64(k2, b64), 0);
	ck_assert(key_equal(k, k2));
	ck_assert_int_eq(key_from_base64(k2, "abc"), ERR_INVALID);
}
END_TEST

START_TEST(test_buf_bounded)
{
	struct buf b;

	buf_init(&b, 8);
	ck_assert_int_eq(buf_append(&b, "12345", 5), 0);
	ck_assert_int_eq(buf_append(&b, "6789", 4), ERR_TOO_LARGE);
	ck_assert_uint_eq(b.len, 5);
	ck_assert_int_eq(buf_printf(&b, "%d", 12), 0);
	ck_assert_str_eq(buf_cstr(&b), "1234512");
	buf_cleanup(&b);
}
END_TEST

START_TEST(test_duration)
{
	int64_t s;

	ck_assert_int_eq(duration_parse("24h", &s), 0);
	ck_assert_int_eq(s, 86400);
	ck_assert_int_eq(duration_parse("1h30m", &s), 0);
	ck_assert_int_eq(s, 5400);
	ck_assert_int_eq(duration_parse("90", &s), 0);
	ck_assert_int_eq(s, 90);
	ck_assert_int_eq(duration_parse("7d", &s), 0);
	ck_assert_int_eq(s, 7 * 86400);
	ck_assert_int_eq(duration_parse("h", &s), ERR_INVALID);
	ck_assert_int_eq(duration_parse("5y", &s), ERR_INVALID);
	ck_assert_int_eq(duration_parse("", &s), ERR_INVALID);
	/* no overflow into negative timestamps (issue 11): at most 100 years,
	 * also summed over components */
	ck_assert_int_eq(duration_parse("36500d", &s), 0);
	ck_assert_int_eq(duration_parse("106751991167300d", &s), ERR_INVALID);
	ck_assert_int_eq(duration_parse("9223372036854775s", &s), ERR_INVALID);
	ck_assert_int_eq(duration_parse("36000d36000d", &s), ERR_INVALID);
	ck_assert_int_eq(duration_parse("53375995583649d53375995583649d", &s), ERR_INVALID);
	ck_assert_int_eq(duration_parse("99999999999999999999", &s), ERR_INVALID);
}
END_TEST

START_TEST(test_err_table)
{
	ck_assert_int_eq(err_http_status(ERR_NOT_FOUND), 404);
	ck_assert_int_eq(err_http_status(ERR_EXISTS), 409);
	ck_assert_int_eq(err_http_status(ERR_TOO_LARGE), 413);
	ck_assert_int_eq(err_http_status(ERR_UNPROCESSABLE), 422);
	ck_assert_int_eq(err_http_status(ERR_PRECONDITION), 412);
	ck_assert_str_eq(err_str(ERR_INVALID), "invalid input");
	ck_assert_str_eq(err_str(-999), "unknown error");
}
END_TEST

Suite *
common_suite(void)
{
	Suite *s = suite_create("common");
	TCase *tc = tcase_create("core");
	tcase_set_timeout(tc, 60);	/* 200,000 formatting rounds: seconds under ASan on a busy machine */

	tcase_add_test(tc, test_prefix_parse);
	tcase_add_test(tc, test_addr_fmt_matches_inet_ntop);
	tcase_add_test(tc, test_endpoint);
	tcase_add_test(tc, test_addr_arith);
	tcase_add_test(tc, test_keys);
	tcase_add_test(tc, test_buf_bounded);
	tcase_add_test(tc, test_duration);
	tcase_add_test(tc, test_err_table);
	suite_add_tcase(s, tc);
	return s;
}
