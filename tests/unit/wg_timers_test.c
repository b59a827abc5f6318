// SPDX-License-Identifier: MIT
/*
 * The per-peer timer state machine driven by an injected clock: keepalive
 * after 10 s of one-way data, new handshake 15 s after unanswered data,
 * retransmits every 5 s (+ jitter) and giving up after 18 retries, key
 * zeroing at 3 x 180 s, persistent keepalive cadence. No real waiting.
 */
#include <check.h>

#include "client-agent/wg/messages.h"
#include "client-agent/wg/timers.h"

#define S(x) ((int64_t)(x) * WG_NS_PER_S)
#define MS(x) ((int64_t)(x) * WG_NS_PER_MS)

/* Advances in 50 ms steps like the device's tick, collecting actions. */
static unsigned
advance(struct wg_timers *t, int64_t *now, int64_t to)
{
	unsigned acts = 0;

	while (*now < to) {
		*now += MS(50);
		acts |= wg_timers_run(t, *now, 0);
	}
	return acts;
}

START_TEST(keepalive_after_receive)
{
	struct wg_timers t;
	int64_t now = S(1000);

	wg_timers_init(&t);
	wg_timers_data_received(&t, now);
	ck_assert_uint_eq(advance(&t, &now, S(1009.9)), 0);
	ck_assert_uint_eq(advance(&t, &now, S(1010)) & WG_TIMER_SEND_KEEPALIVE,
			  WG_TIMER_SEND_KEEPALIVE);
	/* a send before expiry cancels it */
	wg_timers_data_received(&t, now);
	wg_timers_any_authenticated_packet_sent(&t);
	ck_assert_uint_eq(advance(&t, &now, now + S(30)), 0);
	/* more data while pending: another keepalive after the first */
	wg_timers_data_received(&t, now);
	wg_timers_data_received(&t, now + S(1));
	ck_assert(advance(&t, &now, now + S(10)) & WG_TIMER_SEND_KEEPALIVE);
	ck_assert(advance(&t, &now, now + S(10)) & WG_TIMER_SEND_KEEPALIVE);
	ck_assert_uint_eq(advance(&t, &now, now + S(30)), 0);
}
END_TEST

START_TEST(new_handshake_when_unanswered)
{
	struct wg_timers t;
	int64_t now = S(5), start;

	wg_timers_init(&t);
	start = now;
	wg_timers_data_sent(&t, now, MS(100));
	/* more data does not push the deadline out */
	wg_timers_data_sent(&t, now + S(5), MS(100));
	ck_assert_uint_eq(advance(&t, &now, start + S(15)), 0);
	ck_assert_uint_eq(advance(&t, &now, start + S(15) + MS(100)), WG_TIMER_SEND_INITIATION);
	/* an answer cancels it */
	wg_timers_data_sent(&t, now, 0);
	wg_timers_any_authenticated_packet_received(&t);
	ck_assert_uint_eq(advance(&t, &now, now + S(60)), 0);
}
END_TEST

START_TEST(retransmit_and_give_up)
{
	struct wg_timers t;
	int64_t now = S(100), first;
	int retries = 0;

	wg_timers_init(&t);
	wg_timers_handshake_initiated(&t, now, MS(200));
	first = now;
	ck_assert_uint_eq(advance(&t, &now, first + S(5) + MS(150)), 0);
	for (;;) {
		unsigned a = advance(&t, &now, now + S(6));

		if (a & WG_TIMER_GIVE_UP)
			break;
		ck_assert_uint_eq(a, WG_TIMER_SEND_INITIATION | WG_TIMER_RETRY);
		retries++;
		/* the device re-arms on each initiation it sends */
		wg_timers_handshake_initiated(&t, now, MS(200));
		ck_assert_int_le(retries, 30);
	}
	ck_assert_int_eq(retries, WG_MAX_TIMER_HANDSHAKES + 1);
	/* after giving up, keys are zeroed 540 s later */
	ck_assert_uint_eq(advance(&t, &now, now + S(539)), 0);
	ck_assert(advance(&t, &now, now + S(2)) & WG_TIMER_ZERO_KEYS);
	/* completion resets the attempt counter */
	wg_timers_handshake_initiated(&t, now, 0);
	wg_timers_handshake_complete(&t);
	ck_assert_int_eq(t.handshake_attempts, 0);
	ck_assert_uint_eq(advance(&t, &now, now + S(10)), 0);
}
END_TEST

START_TEST(zero_keys_after_session)
{
	struct wg_timers t;
	int64_t now = 0;

	wg_timers_init(&t);
	wg_timers_session_derived(&t, now);
	ck_assert_uint_eq(advance(&t, &now, S(3 * WG_REJECT_AFTER_TIME) - MS(50)), 0);
	ck_assert_uint_eq(advance(&t, &now, S(3 * WG_REJECT_AFTER_TIME)), WG_TIMER_ZERO_KEYS);
}
END_TEST

START_TEST(persistent_keepalive)
{
	struct wg_timers t;
	int64_t now = S(1);
	int n = 0;

	wg_timers_init(&t);
	ck_assert(wg_timers_set_persistent_keepalive(&t, 25, now));
	ck_assert(!wg_timers_set_persistent_keepalive(&t, 25, now));
	wg_timers_any_authenticated_packet_traversal(&t, now);
	for (int i = 0; i < 4; i++) {
		unsigned a = advance(&t, &now, now + S(25));

		if (a & WG_TIMER_SEND_KEEPALIVE) {
			n++;
			wg_timers_any_authenticated_packet_traversal(&t, now);
		}
	}
	ck_assert_int_eq(n, 4);
	ck_assert(!wg_timers_set_persistent_keepalive(&t, 0, now));
	ck_assert_uint_eq(advance(&t, &now, now + S(100)), 0);
}
END_TEST

Suite *
wg_timers_suite(void)
{
	Suite *s = suite_create("wg_timers");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, keepalive_after_receive);
	tcase_add_test(tc, new_handshake_when_unanswered);
	tcase_add_test(tc, retransmit_and_give_up);
	tcase_add_test(tc, zero_keys_after_session);
	tcase_add_test(tc, persistent_keepalive);
	suite_add_tcase(s, tc);
	return s;
}
