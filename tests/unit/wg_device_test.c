// SPDX-License-Identifier: MIT
/*
 * Two engine instances in one process over loopback UDP, with decrypted
 * packets captured through the output hooks and a shared fake clock: first
 * handshake from a staged packet, data both ways, rekey once the session is
 * older than 120 s, a fresh handshake after 180 s (keys rejected), bad
 * datagrams dropped and counted, non-WireGuard datagrams handed to the hook,
 * and UAPI set/get round trips on a live device.
 */
#include <check.h>
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "client-agent/wg/crypto.h"
#include "client-agent/wg/device.h"
#include "client-agent/wg/uapi.h"
#include "common/util.h"

static _Atomic int64_t clock_offset;
static _Atomic int delivered[2];
static _Atomic int others;

static int64_t
fake_clock(void *arg)
{
	(void)arg;
	return time_mono_ns() + atomic_load(&clock_offset);
}

static void
deliver_cb(void *arg, const uint8_t *pkt, size_t len)
{
	int which = (int)(intptr_t)arg;

	if (len >= 20 && pkt[9] == 17)
		atomic_fetch_add(&delivered[which], 1);
}

static void
other_cb(void *arg, const struct endpoint *from, const uint8_t *pkt, size_t len)
{
	(void)arg;
	(void)from;
	(void)pkt;
	(void)len;
	atomic_fetch_add(&others, 1);
}

/* A minimal IPv4/UDP packet from src to dst (10.0.0.x). */
static size_t
make_packet(uint8_t *p, int src, int dst)
{
	memset(p, 0, 48);
	p[0] = 0x45;
	p[3] = 48;
	p[8] = 64;
	p[9] = 17;
	p[12] = 10, p[15] = (uint8_t)src;
	p[16] = 10, p[19] = (uint8_t)dst;
	return 48;
}

static bool
wait_until(_Atomic int *v, int want)
{
	for (int i = 0; i < 400; i++) {
		if (atomic_load(v) >= want)
			return true;
		usleep(5000);
	}
	return false;
}

struct pair {
	struct wg_device *d[2];
	uint8_t priv[2][32], pub[2][32];
};

static void
pair_up(struct pair *pr)
{
	for (int i = 0; i < 2; i++) {
		struct wg_output_ops ops = { .deliver = deliver_cb, .recv_other = other_cb,
					     .arg = (void *)(intptr_t)i };

		ck_assert_int_eq(wg_device_new(-1, 1420, 0, &pr->d[i]), 0);
		wg_device_set_clock(pr->d[i], fake_clock, NULL);
		wg_device_set_output(pr->d[i], &ops);
		wg_genkey(pr->priv[i]);
		wg_pubkey(pr->pub[i], pr->priv[i]);
		ck_assert_int_eq(wg_device_set_private_key(pr->d[i], pr->priv[i]), 0);
	}
	for (int i = 0; i < 2; i++) {
		struct ip_prefix aip;
		struct wg_peer_config c;
		char s[32];

		memset(&c, 0, sizeof(c));
		memcpy(c.public_key, pr->pub[!i], 32);
		snprintf(s, sizeof(s), "10.0.0.%d/32", 2 - i);
		ck_assert_int_eq(prefix_parse(s, false, &aip), 0);
		c.allowed_ips = &aip;
		c.n_allowed_ips = 1;
		if (i == 0) {
			snprintf(s, sizeof(s), "127.0.0.1:%u", wg_device_listen_port(pr->d[1]));
			ck_assert_int_eq(endpoint_parse(s, &c.endpoint), 0);
			c.flags |= WG_PEER_HAS_ENDPOINT;
		}
		ck_assert_int_eq(wg_device_peer_set(pr->d[i], &c), 0);
	}
}

static void
pair_down(struct pair *pr)
{
	wg_device_free(pr->d[0]);
	wg_device_free(pr->d[1]);
}

START_TEST(handshake_rekey_reject)
{
	struct wg_device_stats st;
	struct pair pr;
	uint8_t pkt[64];
	size_t n;
	int want;

	atomic_store(&clock_offset, 0);
	atomic_store(&delivered[0], 0);
	atomic_store(&delivered[1], 0);
	pair_up(&pr);
	n = make_packet(pkt, 1, 2);
	wg_device_send_packet(pr.d[0], pkt, n);
	ck_assert(wait_until(&delivered[1], 1));
	n = make_packet(pkt, 2, 1);
	wg_device_send_packet(pr.d[1], pkt, n);
	ck_assert(wait_until(&delivered[0], 1));
	for (int i = 0; i < 50; i++) {
		n = make_packet(pkt, 1, 2);
		wg_device_send_packet(pr.d[0], pkt, n);
	}
	ck_assert(wait_until(&delivered[1], 51));
	wg_device_get_stats(pr.d[0], &st);
	ck_assert_uint_eq(st.handshakes_completed, 1);
	ck_assert_uint_eq(st.handshakes_initiated, 1);

	/* 121 s later the initiator's session is due for rekeying on send. */
	usleep(40000);
	atomic_fetch_add(&clock_offset, 121 * WG_NS_PER_S);
	n = make_packet(pkt, 1, 2);
	wg_device_send_packet(pr.d[0], pkt, n);
	ck_assert(wait_until(&delivered[1], 52));
	for (int i = 0; i < 200; i++) {
		wg_device_get_stats(pr.d[0], &st);
		if (st.handshakes_completed >= 2)
			break;
		usleep(5000);
	}
	ck_assert_uint_ge(st.handshakes_completed, 2);

	/* 200 s of silence: every key is past reject-after-time; a packet still
	 * gets through after a fresh handshake. */
	usleep(40000);	/* TAI64N has 2^24 ns steps: let the wall clock move on */
	wg_device_get_stats(pr.d[1], &st);
	want = atomic_load(&delivered[1]) + 1;
	atomic_fetch_add(&clock_offset, 200 * WG_NS_PER_S);
	n = make_packet(pkt, 1, 2);
	wg_device_send_packet(pr.d[0], pkt, n);
	ck_assert(wait_until(&delivered[1], want));
	{
		struct wg_device_stats st2;

		wg_device_get_stats(pr.d[1], &st2);
		ck_assert_uint_gt(st2.handshakes_completed, st.handshakes_completed);
	}
	pair_down(&pr);
}
END_TEST

START_TEST(bad_input_counted)
{
	struct wg_device_stats st;
	struct endpoint from;
	struct pair pr;
	uint8_t buf[256];

	atomic_store(&clock_offset, 0);
	atomic_store(&others, 0);
	pair_up(&pr);
	ck_assert_int_eq(endpoint_parse("192.0.2.9:1234", &from), 0);
	memset(buf, 0, sizeof(buf));
	wg_device_input(pr.d[0], &from, buf, 2);		/* short: to hook */
	buf[0] = 'T';
	wg_device_input(pr.d[0], &from, buf, 40);		/* disco-like: to hook */
	buf[0] = 1;
	wg_device_input(pr.d[0], &from, buf, 100);		/* bad length */
	wg_device_input(pr.d[0], &from, buf, WG_INITIATION_LEN);	/* bad mac1 */
	buf[0] = 2;
	wg_device_input(pr.d[0], &from, buf, WG_RESPONSE_LEN);
	buf[0] = 3;
	wg_device_input(pr.d[0], &from, buf, WG_COOKIE_REPLY_LEN);	/* unknown index */
	buf[0] = 4;
	wg_device_input(pr.d[0], &from, buf, 20);		/* too short */
	wg_device_input(pr.d[0], &from, buf, 64);		/* unknown index */
	wg_device_input(pr.d[0], NULL, buf, 64);
	wg_device_get_stats(pr.d[0], &st);
	ck_assert_int_eq(atomic_load(&others), 2);
	ck_assert_uint_eq(st.other_packets, 2);
	ck_assert_uint_eq(st.drop_bad_length, 2);
	ck_assert_uint_eq(st.drop_bad_mac1, 2);
	ck_assert_uint_eq(st.drop_unknown_index, 3);
	pair_down(&pr);
}
END_TEST

START_TEST(uapi_round_trip)
{
	struct wg_device *d;
	char *out = NULL;
	size_t len = 0;
	static const char set[] =
		"set=1\n"
		"private_key=e84b5a6d2717c1003a13b431570353dbaca9146cf150c5f8575680feba52027a\n"
		"listen_port=0\n"
		"public_key=b85996fecc9c7f1fc6d2572a76eda11d59bcd20be8e543b15ce4bd85a8e75a33\n"
		"preshared_key=188515093e952f5f22e865cef3012e72f8b5f0b598ac0309d5dacce3b70fcf52\n"
		"endpoint=[2001:db8::1]:51820\n"
		"persistent_keepalive_interval=0\n"
		"replace_allowed_ips=true\n"
		"allowed_ip=192.168.4.4/32\n"
		"allowed_ip=fd00::/64\n"
		"public_key=58402e695ba1772b1cc9309755f043251ea77fdcf10fbe63989ceb7e19321376\n"
		"endpoint=182.122.22.19:3233\n"
		"allowed_ip=10.0.0.0/8\n";

	ck_assert_int_eq(wg_device_new(-1, 1420, 0, &d), 0);
	ck_assert_int_eq(wg_uapi_handle(d, set, sizeof(set) - 1, &out, &len), 0);
	ck_assert_str_eq(out, "errno=0\n\n");
	free(out);
	ck_assert_int_eq(wg_uapi_handle(d, "get=1\n", 6, &out, &len), 0);
	ck_assert_ptr_nonnull(strstr(out, "private_key=e84b5a6d2717c1003a13b431570353dbaca9146cf150c5f8575680feba52027a\n"));
	ck_assert_ptr_nonnull(strstr(out, "public_key=b85996fecc9c7f1fc6d2572a76eda11d59bcd20be8e543b15ce4bd85a8e75a33\npreshared_key=188515093e952f5f22e865cef3012e72f8b5f0b598ac0309d5dacce3b70fcf52\nprotocol_version=1\nendpoint=[2001:db8::1]:51820\n"));
	ck_assert_ptr_nonnull(strstr(out, "allowed_ip=192.168.4.4/32\nallowed_ip=fd00::/64\n"));
	ck_assert_ptr_nonnull(strstr(out, "endpoint=182.122.22.19:3233\n"));
	ck_assert_ptr_nonnull(strstr(out, "errno=0\n\n"));
	ck_assert(strstr(out, "b85996fe") < strstr(out, "58402e69"));
	free(out);
	/* errors as wireguard-go gives them */
	ck_assert_int_eq(wg_uapi_handle(d, "set=1\nprivate_key=zz\n", 21, &out, &len), 0);
	ck_assert_str_eq(out, "errno=-22\n\n");
	free(out);
	ck_assert_int_eq(wg_uapi_handle(d, "set=1\nbogus=1\n", 14, &out, &len), 0);
	ck_assert_str_eq(out, "errno=-22\n\n");
	free(out);
	ck_assert_int_eq(wg_uapi_handle(d, "set=1\nlisten_port=70000\n", 24, &out, &len), 0);
	ck_assert_str_eq(out, "errno=-22\n\n");
	free(out);
	ck_assert_int_eq(wg_uapi_handle(d, "hello\n", 6, &out, &len), 0);
	ck_assert_str_eq(out, "errno=-22\n\n");
	free(out);
	/* remove and replace_peers */
	{
		static const char rm[] = "set=1\npublic_key=58402e695ba1772b1cc9309755f043251ea77fdcf10fbe63989ceb7e19321376\nremove=true\n";

		ck_assert_int_eq(wg_uapi_handle(d, rm, sizeof(rm) - 1, &out, &len), 0);
		ck_assert_str_eq(out, "errno=0\n\n");
		free(out);
		ck_assert_int_eq(wg_uapi_handle(d, "get=1\n", 6, &out, &len), 0);
		ck_assert_ptr_null(strstr(out, "58402e69"));
		free(out);
		ck_assert_int_eq(wg_uapi_handle(d, "set=1\nreplace_peers=true\n", 25, &out, &len), 0);
		free(out);
		ck_assert_int_eq(wg_uapi_handle(d, "get=1\n", 6, &out, &len), 0);
		ck_assert_ptr_null(strstr(out, "public_key="));
		free(out);
	}
	wg_device_free(d);
}
END_TEST

Suite *
wg_device_suite(void)
{
	Suite *s = suite_create("wg_device");
	TCase *tc = tcase_create("core");

	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, handshake_rekey_reject);
	tcase_add_test(tc, bad_input_counted);
	tcase_add_test(tc, uapi_round_trip);
	suite_add_tcase(s, tc);
	return s;
}
