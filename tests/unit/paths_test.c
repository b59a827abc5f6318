// SPDX-License-Identifier: MIT
/* client-agent/paths: probing cadence, pongs confirming paths, trust expiry
 * and fallback, best-path choice, stray pongs, candidate replacement and
 * the exactness of paths_next_due. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "client-agent/paths.h"

static struct endpoint E1, E2, E3;

static void
ep(struct endpoint *e, const char *s)
{
	ck_assert_int_eq(endpoint_parse(s, e), 0);
}

static bool
same(const struct endpoint *a, const struct endpoint *b)
{
	return a->port == b->port && addr_equal(&a->addr, &b->addr);
}

static void
setup(void)
{
	ep(&E1, "192.0.2.1:41641");
	ep(&E2, "198.51.100.2:41641");
	ep(&E3, "[2001:db8::3]:41641");
}

/* The ping to `to` among out[0..n), or NULL. */
static const struct paths_ping *
ping_to(const struct paths_ping *out, size_t n, const struct endpoint *to)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (same(&out[i].to, to))
			return &out[i];
	return NULL;
}

START_TEST(test_probe_cadence)
{
	struct paths *p = paths_new();
	struct endpoint eps[2] = { E1, E2 };
	struct paths_ping out[8];

	ck_assert_ptr_nonnull(p);
	ck_assert(paths_next_due(p) == INT64_MAX);
	ck_assert_uint_eq(paths_due_pings(p, 0, out, 8), 0);
	paths_set_candidates(p, eps, 2, 1000);
	ck_assert_int_eq(paths_next_due(p), 1000);	/* new candidates: now */
	ck_assert_uint_eq(paths_due_pings(p, 1000, out, 8), 2);
	ck_assert_ptr_nonnull(ping_to(out, 2, &E1));
	ck_assert_ptr_nonnull(ping_to(out, 2, &E2));
	ck_assert(memcmp(out[0].txid, out[1].txid, DISCO_TXID_LEN) != 0);
	ck_assert_int_eq(paths_next_due(p), 1000 + PATHS_PROBE_MS);
	ck_assert_uint_eq(paths_due_pings(p, 2999, out, 8), 0);
	ck_assert_uint_eq(paths_due_pings(p, 3000, out, 8), 2);
	/* max bounds the output; the rest stay due. */
	ck_assert_uint_eq(paths_due_pings(p, 5000, out, 1), 1);
	ck_assert_int_eq(paths_next_due(p), 5000);
	ck_assert_uint_eq(paths_due_pings(p, 5000, out, 8), 1);
	ck_assert(!paths_best(p, 5000, NULL, NULL));
	paths_free(p);
	paths_free(NULL);
}
END_TEST

START_TEST(test_pong_confirms)
{
	struct paths *p = paths_new();
	struct endpoint eps[2] = { E1, E2 }, best;
	struct paths_ping out[8];
	const struct paths_ping *to1;
	int rtt = -5;

	paths_set_candidates(p, eps, 2, 0);
	ck_assert_uint_eq(paths_due_pings(p, 0, out, 8), 2);
	to1 = ping_to(out, 2, &E1);
	/* From the wrong endpoint: ignored, and the ping stays outstanding. */
	ck_assert(!paths_pong(p, to1->txid, &E2, 20));
	ck_assert(paths_pong(p, to1->txid, &E1, 25));
	ck_assert(!paths_pong(p, to1->txid, &E1, 26));	/* only once */
	ck_assert(paths_best(p, 25, &best, &rtt));
	ck_assert(same(&best, &E1));
	ck_assert_int_eq(rtt, 25);
	/* Heartbeat the best at 3 s after its last ping; the other is re-probed at 10 s. */
	ck_assert_int_eq(paths_next_due(p), PATHS_HEARTBEAT_MS);
	ck_assert_uint_eq(paths_due_pings(p, PATHS_HEARTBEAT_MS, out, 8), 1);
	ck_assert(same(&out[0].to, &E1));
	ck_assert(paths_pong(p, out[0].txid, &E1, PATHS_HEARTBEAT_MS + 4));
	ck_assert(paths_best(p, PATHS_HEARTBEAT_MS + 4, NULL, &rtt));
	ck_assert_int_eq(rtt, 4);
	ck_assert_int_eq(paths_next_due(p), 2 * PATHS_HEARTBEAT_MS);
	ck_assert_uint_eq(paths_due_pings(p, 2 * PATHS_HEARTBEAT_MS, out, 8), 1);
	ck_assert(paths_pong(p, out[0].txid, &E1, 2 * PATHS_HEARTBEAT_MS + 4));
	ck_assert_uint_eq(paths_due_pings(p, 9999, out, 8), 1);		/* E1 at 9000 */
	ck_assert(same(&out[0].to, &E1));
	ck_assert_int_eq(paths_next_due(p), PATHS_REPROBE_MS);	/* E2 at 10000 */
	ck_assert_uint_eq(paths_due_pings(p, PATHS_REPROBE_MS, out, 8), 1);
	ck_assert(same(&out[0].to, &E2));
	paths_free(p);
}
END_TEST

/* Pongs in flight, delivered at their time by deliver(). */
struct flight {
	uint8_t txid[DISCO_TXID_LEN];
	struct endpoint from;
	int64_t at;
};
static struct flight fl[1024];
static size_t nfl;

static void
send_pong(const struct paths_ping *pg, int64_t at)
{
	ck_assert_uint_lt(nfl, 1024);
	memcpy(fl[nfl].txid, pg->txid, DISCO_TXID_LEN);
	fl[nfl].from = pg->to;
	fl[nfl].at = at;
	nfl++;
}

static void
deliver(struct paths *p, int64_t now)
{
	size_t i = 0;

	while (i < nfl) {
		if (fl[i].at != now) {
			i++;
			continue;
		}
		ck_assert(paths_pong(p, fl[i].txid, &fl[i].from, now));
		fl[i] = fl[--nfl];
	}
}

START_TEST(test_trust_expiry_falls_back)
{
	struct paths *p = paths_new();
	struct endpoint eps[2] = { E1, E2 }, best;
	struct paths_ping out[8];
	int64_t t;

	nfl = 0;
	paths_set_candidates(p, eps, 2, 0);
	/* Both answer (E1 in 10 ms, E2 in 30 ms) until E1 goes silent at 1000. */
	for (t = 0; t < 20000; t++) {
		size_t n, i;

		deliver(p, t);
		if (t == 6509) {
			/* E1's last pong was at 10: trusted until 6510. */
			ck_assert(paths_best(p, t, &best, NULL));
			ck_assert(same(&best, &E1));
		}
		if (t == 6510) {
			/* E2 (pong at 30) is still trusted, and takes over. */
			ck_assert(paths_best(p, t, &best, NULL));
			ck_assert(same(&best, &E2));
		}
		if (t == 19999) {
			ck_assert(paths_best(p, t, &best, NULL));
			ck_assert(same(&best, &E2));
		}
		if (paths_next_due(p) > t)
			continue;
		n = paths_due_pings(p, t, out, 8);
		ck_assert_uint_gt(n, 0);
		for (i = 0; i < n; i++) {
			if (same(&out[i].to, &E2))
				send_pong(&out[i], t + 30);
			else if (t < 1000)
				send_pong(&out[i], t + 10);
		}
	}
	paths_free(p);

	/* A single path going silent: DERP, and probing at the fast cadence again. */
	p = paths_new();
	paths_set_candidates(p, eps, 1, 0);
	ck_assert_uint_eq(paths_due_pings(p, 0, out, 8), 1);
	ck_assert(paths_pong(p, out[0].txid, &E1, 5));
	ck_assert_int_eq(paths_next_due(p), PATHS_HEARTBEAT_MS);
	ck_assert_uint_eq(paths_due_pings(p, PATHS_HEARTBEAT_MS, out, 8), 1);
	ck_assert_int_eq(paths_next_due(p), 2 * PATHS_HEARTBEAT_MS);
	ck_assert_uint_eq(paths_due_pings(p, 2 * PATHS_HEARTBEAT_MS, out, 8), 1);
	/* Unanswered: trust lapses at 5 + 6500; probing resumes at the fast
	 * cadence, PATHS_PROBE_MS after the last heartbeat. */
	ck_assert(paths_best(p, 5 + PATHS_TRUST_MS - 1, NULL, NULL));
	ck_assert(!paths_best(p, 5 + PATHS_TRUST_MS, NULL, NULL));
	ck_assert_int_eq(paths_next_due(p), 2 * PATHS_HEARTBEAT_MS + PATHS_PROBE_MS);
	ck_assert_uint_eq(paths_due_pings(p, 5 + PATHS_TRUST_MS, out, 8), 0);
	ck_assert_uint_eq(paths_due_pings(p, 2 * PATHS_HEARTBEAT_MS + PATHS_PROBE_MS, out, 8), 1);
	ck_assert_int_eq(paths_next_due(p), 2 * PATHS_HEARTBEAT_MS + 2 * PATHS_PROBE_MS);
	/* Answered again: heartbeats; silent again: fast probes after the lapse. */
	ck_assert(paths_pong(p, out[0].txid, &E1, 8001));
	ck_assert_int_eq(paths_next_due(p), 11000);
	ck_assert_uint_eq(paths_due_pings(p, 11000, out, 8), 1);
	ck_assert_int_eq(paths_next_due(p), 14000);
	ck_assert_uint_eq(paths_due_pings(p, 14000, out, 8), 1);
	ck_assert(paths_best(p, 14500, NULL, NULL));
	ck_assert(!paths_best(p, 14501, NULL, NULL));
	ck_assert_int_eq(paths_next_due(p), 16000);
	paths_free(p);
}
END_TEST

START_TEST(test_best_lowest_rtt)
{
	struct paths *p = paths_new();
	struct endpoint eps[3] = { E1, E2, E3 }, best;
	struct paths_ping out[8];
	int rtt;

	paths_set_candidates(p, eps, 3, 100);
	ck_assert_uint_eq(paths_due_pings(p, 100, out, 8), 3);
	ck_assert(paths_pong(p, ping_to(out, 3, &E1)->txid, &E1, 150));	/* 50 */
	ck_assert(paths_pong(p, ping_to(out, 3, &E3)->txid, &E3, 108));	/* 8 */
	ck_assert(paths_pong(p, ping_to(out, 3, &E2)->txid, &E2, 120));	/* 20 */
	ck_assert(paths_best(p, 200, &best, &rtt));
	ck_assert(same(&best, &E3));
	ck_assert_int_eq(rtt, 8);
	{
		struct paths_info info[4];

		ck_assert_uint_eq(paths_snapshot(p, 200, info, 4), 3);
		ck_assert(info[0].confirmed && info[0].rtt_ms == 50);
		ck_assert(info[2].confirmed && info[2].rtt_ms == 8);
	}
	paths_free(p);
}
END_TEST

/* Two paths of about the same latency (IPv4 and IPv6 of one peer): the best
 * path stays put while their latencies take turns being lower, and moves
 * only to a clearly faster one. */
START_TEST(test_best_sticky)
{
	struct paths *p = paths_new();
	struct endpoint eps[2] = { E1, E3 }, best;
	struct paths_ping out[8];
	int64_t t = 100;
	int rtt, changes = 0;
	struct endpoint prev = { 0 };

	(void)t;
	paths_set_candidates(p, eps, 2, t);
	for (int round = 0; round < 40; round++) {
		size_t m = paths_due_pings(p, t, out, 8);
		const struct paths_ping *a = ping_to(out, m, &E1), *b = ping_to(out, m, &E3);

		/* every reprobe round pings both; latencies take turns (0 or 1 ms) */
		ck_assert(a != NULL && b != NULL);
		ck_assert(paths_pong(p, a->txid, &E1, t + round % 2));
		ck_assert(paths_pong(p, b->txid, &E3, t + (round + 1) % 2));
		ck_assert(paths_best(p, t + 2, &best, &rtt));
		if (round > 0 && !same(&best, &prev))
			changes++;
		prev = best;
		t += PATHS_REPROBE_MS + 1;
	}
	ck_assert_int_eq(changes, 0);
	/* a clearly faster path wins: E3 now 10 ms, E1 40 ms */
	{
		size_t m = paths_due_pings(p, t, out, 8);
		const struct paths_ping *a = ping_to(out, m, &E1), *b = ping_to(out, m, &E3);

		ck_assert(a != NULL && b != NULL);
		ck_assert(paths_pong(p, a->txid, &E1, t + 40));
		ck_assert(paths_pong(p, b->txid, &E3, t + 10));
	}
	ck_assert(paths_best(p, t + 41, &best, &rtt));
	ck_assert(!same(&best, &prev));
	ck_assert_int_eq(rtt, 10);
	paths_free(p);
}
END_TEST

START_TEST(test_unknown_txid_ignored)
{
	struct paths *p = paths_new();
	struct endpoint eps[1] = { E1 };
	struct paths_ping out[8];
	uint8_t txid[DISCO_TXID_LEN];

	paths_set_candidates(p, eps, 1, 0);
	ck_assert_uint_eq(paths_due_pings(p, 0, out, 8), 1);
	memcpy(txid, out[0].txid, sizeof(txid));
	txid[0] ^= 1;
	ck_assert(!paths_pong(p, txid, &E1, 5));
	ck_assert(!paths_best(p, 5, NULL, NULL));
	/* Expired pings are forgotten. */
	ck_assert_uint_eq(paths_due_pings(p, PATHS_PING_TIMEOUT_MS, out + 1, 7), 1);
	ck_assert(!paths_pong(p, out[0].txid, &E1, PATHS_PING_TIMEOUT_MS));
	ck_assert(paths_pong(p, out[1].txid, &E1, PATHS_PING_TIMEOUT_MS + 1));
	paths_free(p);
}
END_TEST

START_TEST(test_candidates_replaced)
{
	struct paths *p = paths_new();
	struct endpoint eps[3] = { E1, E2, E3 }, mapped, best;
	struct paths_ping out[8];
	const struct paths_ping *to2;
	int rtt;

	paths_set_candidates(p, eps, 2, 0);
	ck_assert_uint_eq(paths_due_pings(p, 0, out, 8), 2);
	to2 = ping_to(out, 2, &E2);
	ck_assert(paths_pong(p, ping_to(out, 2, &E1)->txid, &E1, 10));
	/* E1 dropped, E2 kept (its outstanding ping still counts), E3 new and due at once. */
	paths_set_candidates(p, eps + 1, 2, 20);
	ck_assert(!paths_best(p, 20, NULL, NULL));
	ck_assert(paths_pong(p, to2->txid, &E2, 30));
	ck_assert(paths_best(p, 30, &best, &rtt));
	ck_assert(same(&best, &E2));
	ck_assert_int_eq(rtt, 30);
	ck_assert_uint_eq(paths_due_pings(p, 30, out, 8), 1);
	ck_assert(same(&out[0].to, &E3));
	/* Duplicates, a v4-mapped spelling and junk are folded/ignored. */
	{
		struct endpoint junk, list[4];

		memset(&junk, 0, sizeof(junk));
		ep(&mapped, "[::ffff:198.51.100.2]:41641");
		list[0] = E2;
		list[1] = mapped;
		list[2] = junk;
		list[3] = E2;
		paths_set_candidates(p, list, 4, 40);
		ck_assert_uint_eq(paths_snapshot(p, 40, NULL, 0), 1);
		ck_assert(paths_best(p, 40, NULL, NULL));	/* E2 kept its state */
	}
	/* A learned endpoint survives a replacement while recently heard. */
	paths_heard_from(p, &E1, 50);
	ck_assert_uint_eq(paths_snapshot(p, 50, NULL, 0), 2);
	paths_set_candidates(p, eps + 1, 1, 60);
	ck_assert_uint_eq(paths_snapshot(p, 60, NULL, 0), 2);
	paths_set_candidates(p, eps + 1, 1, 50 + PATHS_TRUST_MS);
	ck_assert_uint_eq(paths_snapshot(p, 50 + PATHS_TRUST_MS, NULL, 0), 1);
	paths_set_candidates(p, NULL, 0, 100000);
	ck_assert_uint_eq(paths_snapshot(p, 100000, NULL, 0), 0);
	ck_assert(paths_next_due(p) == INT64_MAX);
	paths_free(p);
}
END_TEST

START_TEST(test_heard_from)
{
	struct paths *p = paths_new();
	struct paths_ping out[8];
	struct endpoint e;
	int i;

	paths_heard_from(p, &E3, 0);
	ck_assert_uint_eq(paths_due_pings(p, 0, out, 8), 1);
	ck_assert(same(&out[0].to, &E3));
	/* Heard again: pinged back at once, but at most every PATHS_REPING_MS. */
	paths_heard_from(p, &E3, 100);
	ck_assert_uint_eq(paths_due_pings(p, 100, out + 1, 7), 0);
	paths_heard_from(p, &E3, PATHS_REPING_MS);
	ck_assert_int_eq(paths_next_due(p), PATHS_REPING_MS);
	ck_assert_uint_eq(paths_due_pings(p, PATHS_REPING_MS, out + 1, 7), 1);
	ck_assert(paths_pong(p, out[1].txid, &E3, PATHS_REPING_MS + 3));
	ck_assert(paths_best(p, PATHS_REPING_MS + 3, NULL, NULL));
	/* Trusted: hearing from it changes nothing. */
	paths_heard_from(p, &E3, 1000);
	ck_assert_uint_eq(paths_due_pings(p, 1000, out + 2, 6), 0);
	ck_assert(paths_pong(p, out[0].txid, &E3, 1001));	/* the first ping's pong, late */
	/* The table is bounded. */
	for (i = 0; i < 3 * PATHS_MAX_CANDIDATES; i++) {
		e = E1;
		e.port = (uint16_t)(1000 + i);
		paths_heard_from(p, &e, 2000 + i);
	}
	ck_assert_uint_eq(paths_snapshot(p, 2200, NULL, 0), PATHS_MAX_CANDIDATES);
	ck_assert(paths_best(p, 2200, NULL, NULL));	/* the trusted path was not evicted */
	paths_free(p);
}
END_TEST

START_TEST(test_reprobe)
{
	struct paths *p = paths_new();
	struct endpoint eps[2] = { E1, E2 };
	struct paths_ping out[8];
	const struct paths_ping *to1;

	paths_set_candidates(p, eps, 2, 0);
	ck_assert_uint_eq(paths_due_pings(p, 0, out, 8), 2);
	to1 = ping_to(out, 2, &E1);
	ck_assert_uint_eq(paths_due_pings(p, 500, out + 2, 6), 0);
	paths_reprobe(p, 500);
	ck_assert_int_eq(paths_next_due(p), 500);
	ck_assert_uint_eq(paths_due_pings(p, 500, out + 2, 6), 2);
	/* The earlier ping still counts. */
	ck_assert(paths_pong(p, to1->txid, &E1, 510));
	ck_assert(paths_best(p, 510, NULL, NULL));
	ck_assert_int_eq(paths_next_due(p), 500 + PATHS_HEARTBEAT_MS);
	paths_free(p);
}
END_TEST

/* paths_next_due agrees with paths_due_pings at every millisecond, under
 * random pongs and candidate changes. */
START_TEST(test_next_due_exact)
{
	struct paths *p = paths_new();
	struct endpoint eps[4] = { E1, E2, E3, E1 };
	struct paths_ping out[PATHS_MAX_CANDIDATES];
	int64_t t;
	unsigned seed = 7;

	nfl = 0;
	eps[3].port = 9;
	paths_set_candidates(p, eps, 4, 0);
	for (t = 0; t < 60000; t++) {
		int64_t due;
		size_t n, i;

		if (t == 30000) {
			nfl = 0;
			paths_set_candidates(p, eps + 1, 3, t);
		}
		deliver(p, t);
		due = paths_next_due(p);
		n = paths_due_pings(p, t, out, PATHS_MAX_CANDIDATES);
		ck_assert_msg((n > 0) == (due <= t), "t=%lld due=%lld n=%zu", (long long)t,
			      (long long)due, n);
		/* E3 never answers; the others mostly do, and go silent for a while. */
		for (i = 0; i < n; i++)
			if (rand_r(&seed) % 4 != 0 && !same(&out[i].to, &E3) &&
			    (t < 12000 || t > 25000))
				send_pong(&out[i], t + 1 + rand_r(&seed) % 40);
	}
	paths_free(p);
}
END_TEST

Suite *
paths_suite(void)
{
	Suite *s = suite_create("paths");
	TCase *tc = tcase_create("core");

	tcase_add_checked_fixture(tc, setup, NULL);
	tcase_add_test(tc, test_probe_cadence);
	tcase_add_test(tc, test_pong_confirms);
	tcase_add_test(tc, test_trust_expiry_falls_back);
	tcase_add_test(tc, test_best_lowest_rtt);
	tcase_add_test(tc, test_unknown_txid_ignored);
	tcase_add_test(tc, test_candidates_replaced);
	tcase_add_test(tc, test_heard_from);
	tcase_add_test(tc, test_reprobe);
	tcase_add_test(tc, test_next_due_exact);
	tcase_add_test(tc, test_best_sticky);
	suite_add_tcase(s, tc);
	return s;
}
