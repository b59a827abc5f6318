// SPDX-License-Identifier: MIT
/*
 * The allowed-IPs trie against a deliberately simple list (the kernel
 * selftest's "horrible" reference): random prefixes for random peers, random
 * lookups, removals and walks must agree; plus hand-picked cases.
 */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "client-agent/wg/allowedips.h"

struct ref_entry {
	struct ip_prefix p;
	void *peer;
};

struct ref {
	struct ref_entry *e;
	size_t n;
};

static void
ref_insert(struct ref *r, const struct ip_prefix *p, void *peer)
{
	for (size_t i = 0; i < r->n; i++) {
		if (r->e[i].p.bits == p->bits && prefix_covers(&r->e[i].p, p) &&
		    r->e[i].p.addr.family == p->addr.family) {
			r->e[i].peer = peer;
			return;
		}
	}
	r->e = realloc(r->e, (r->n + 1) * sizeof(*r->e));
	r->e[r->n].p = *p;
	r->e[r->n].peer = peer;
	r->n++;
}

static void
ref_remove_peer(struct ref *r, void *peer)
{
	size_t j = 0;

	for (size_t i = 0; i < r->n; i++)
		if (r->e[i].peer != peer)
			r->e[j++] = r->e[i];
	r->n = j;
}

static void *
ref_lookup(const struct ref *r, const struct ip_addr *a)
{
	int best = -1;
	void *peer = NULL;

	for (size_t i = 0; i < r->n; i++) {
		if (r->e[i].p.addr.family == a->family && prefix_contains(&r->e[i].p, a) &&
		    r->e[i].p.bits > best) {
			best = r->e[i].p.bits;
			peer = r->e[i].peer;
		}
	}
	return peer;
}

static void
random_addr(struct ip_addr *a, int family, unsigned *seed)
{
	memset(a, 0, sizeof(*a));
	a->family = family;
	/* few distinct leading bytes so prefixes overlap often */
	for (int i = 0; i < (family == AF_INET ? 4 : 16); i++)
		a->b[i] = (uint8_t)(i < 2 ? rand_r(seed) % 4 : rand_r(seed));
}

static void
random_prefix(struct ip_prefix *p, unsigned *seed)
{
	int fam = rand_r(seed) % 2 ? AF_INET : AF_INET6;

	random_addr(&p->addr, fam, seed);
	p->bits = rand_r(seed) % ((fam == AF_INET ? 32 : 128) + 1);
	prefix_mask(p);
}

START_TEST(differential)
{
	static char peers[16];
	struct wg_allowedips *t = wg_allowedips_new();
	struct ref r = { 0 };
	unsigned seed = 12345;

	ck_assert_ptr_nonnull(t);
	for (int round = 0; round < 4; round++) {
		for (int i = 0; i < 2000; i++) {
			struct ip_prefix p;
			void *peer = &peers[rand_r(&seed) % 16];

			random_prefix(&p, &seed);
			ck_assert_int_eq(wg_allowedips_insert(t, &p, peer), 0);
			ref_insert(&r, &p, peer);
		}
		ck_assert_uint_eq(wg_allowedips_count(t), r.n);
		for (int i = 0; i < 20000; i++) {
			struct ip_addr a;

			random_addr(&a, rand_r(&seed) % 2 ? AF_INET : AF_INET6, &seed);
			ck_assert_ptr_eq(wg_allowedips_lookup(t, a.family, a.b), ref_lookup(&r, &a));
		}
		/* remove two peers' prefixes */
		for (int k = 0; k < 2; k++) {
			void *peer = &peers[rand_r(&seed) % 16];

			wg_allowedips_remove_peer(t, peer);
			ref_remove_peer(&r, peer);
		}
		ck_assert_uint_eq(wg_allowedips_count(t), r.n);
	}
	free(r.e);
	wg_allowedips_free(t);
}
END_TEST

static void
count_cb(void *arg, const struct ip_prefix *p)
{
	char s[ADDR_STR_MAX];
	char *out = arg;

	prefix_fmt(s, p);
	strcat(out, s);
	strcat(out, " ");
}

START_TEST(cases)
{
	struct wg_allowedips *t = wg_allowedips_new();
	char a = 'a', b = 'b';
	struct ip_prefix p;
	struct ip_addr x;
	char out[256] = "";

	ck_assert_int_eq(prefix_parse("10.0.0.0/8", false, &p), 0);
	ck_assert_int_eq(wg_allowedips_insert(t, &p, &a), 0);
	ck_assert_int_eq(prefix_parse("10.1.0.0/16", false, &p), 0);
	ck_assert_int_eq(wg_allowedips_insert(t, &p, &b), 0);
	ck_assert_int_eq(prefix_parse("0.0.0.0/0", false, &p), 0);
	ck_assert_int_eq(wg_allowedips_insert(t, &p, &b), 0);
	ck_assert_int_eq(prefix_parse("::/0", false, &p), 0);
	ck_assert_int_eq(wg_allowedips_insert(t, &p, &a), 0);
	ck_assert_int_eq(addr_parse("10.1.2.3", &x), 0);
	ck_assert_ptr_eq(wg_allowedips_lookup(t, AF_INET, x.b), &b);
	ck_assert_int_eq(addr_parse("10.2.2.3", &x), 0);
	ck_assert_ptr_eq(wg_allowedips_lookup(t, AF_INET, x.b), &a);
	ck_assert_int_eq(addr_parse("192.0.2.1", &x), 0);
	ck_assert_ptr_eq(wg_allowedips_lookup(t, AF_INET, x.b), &b);
	ck_assert_int_eq(addr_parse("2001:db8::1", &x), 0);
	ck_assert_ptr_eq(wg_allowedips_lookup(t, AF_INET6, x.b), &a);
	/* moving a prefix to another peer */
	ck_assert_int_eq(prefix_parse("10.0.0.0/8", false, &p), 0);
	ck_assert_int_eq(wg_allowedips_insert(t, &p, &b), 0);
	ck_assert_int_eq(addr_parse("10.2.2.3", &x), 0);
	ck_assert_ptr_eq(wg_allowedips_lookup(t, AF_INET, x.b), &b);
	ck_assert_int_eq(wg_allowedips_remove(t, &p, &a), ERR_NOT_FOUND);
	ck_assert_int_eq(wg_allowedips_remove(t, &p, &b), 0);
	wg_allowedips_walk(t, &b, count_cb, out);
	ck_assert_str_eq(out, "0.0.0.0/0 10.1.0.0/16 ");
	ck_assert_uint_eq(wg_allowedips_count(t), 3);
	/* bad prefix */
	p.bits = 33;
	p.addr.family = AF_INET;
	ck_assert_int_eq(wg_allowedips_insert(t, &p, &a), ERR_INVALID);
	wg_allowedips_free(t);
	wg_allowedips_free(NULL);
}
END_TEST

Suite *
wg_allowedips_suite(void)
{
	Suite *s = suite_create("wg_allowedips");
	TCase *tc = tcase_create("core");

	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, differential);
	tcase_add_test(tc, cases);
	suite_add_tcase(s, tc);
	return s;
}
