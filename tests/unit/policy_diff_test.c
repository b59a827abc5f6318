// SPDX-License-Identifier: MIT
/*
 * Differential test of the policy compiler: random policies over random
 * node sets, compiled, and every (source node, destination node, protocol,
 * port) decision read back from the destination's compiled packet filter is
 * compared with a deliberately simple reference evaluator that interprets
 * the rules directly. Visibility (peers) is compared too: i sees j exactly
 * when one of them may reach the other. Each random rule is written either
 * as an `acls` entry or as a grant (its ports in `ip`, several protocols at
 * once), some grants only carry an app capability (visibility, no packets)
 * and grant sources may be autogroup:danger-all.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "common/addr.h"
#include "common/buf.h"
#include "policy/policy.h"

/* Appends to the buffer `b` in scope; the buffer is large enough. */
#define P(...) ck_assert_int_eq(buf_printf(b, __VA_ARGS__), 0)

enum { MAXN = 24, NUSERS = 4, NTAGS = 3, NGROUPS = 2, MAXSEL = 3, MAXRULES = 6 };

enum kind { K_USER, K_GROUP, K_TAG, K_ALL, K_MEMBER, K_TAGGED, K_HOST, K_SELF, K_DANGER };

enum { MAXIP = 3 };

struct sel {
	enum kind k;
	int v;			/* user, group, tag or host index */
	int lo, hi;		/* dst ports */
};

struct rule {
	struct sel src[MAXSEL], dst[MAXSEL];
	int nsrc, ndst;
	int proto;		/* 0: any (tcp, udp, icmp), 6, 17 */
	bool grant, app;	/* written as a grant; an app-only grant */
	struct { int proto, lo, hi; } ip[MAXIP];	/* grants: the `ip` list */
	int nip;
};

struct world {
	int n;
	int user[MAXN];		/* -1: tagged */
	unsigned tags[MAXN];	/* bit per tag */
	unsigned group[NGROUPS];	/* bit per user */
	struct ip_prefix host[2];
	struct rule r[MAXRULES];
	int nr;
};

static uint64_t rng = 0x9e3779b97f4a7c15ULL;

static int
rnd(int n)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return (int)(rng % (uint64_t)n);
}

static void
addr4(int i, struct ip_addr *a)
{
	memset(a, 0, sizeof(*a));
	a->family = AF_INET;
	a->b[0] = 100;
	a->b[1] = 64;
	a->b[3] = (uint8_t)(i + 1);
}

/* ---- the reference ---- */

static bool
sel_has(const struct world *w, const struct sel *s, int node)
{
	struct ip_addr a;

	switch (s->k) {
	case K_USER: return w->user[node] == s->v;
	case K_GROUP: return w->user[node] >= 0 && (w->group[s->v] >> w->user[node] & 1);
	case K_TAG: return w->tags[node] >> s->v & 1;
	case K_ALL: return true;
	case K_MEMBER: return w->user[node] >= 0;
	case K_TAGGED: return w->user[node] < 0;
	case K_HOST: addr4(node, &a); return prefix_contains(&w->host[s->v], &a);
	case K_SELF: return false;	/* decided with the source, below */
	case K_DANGER: return true;
	}
	return false;
}

static bool
ref_accepts(const struct world *w, int src, int dst, int proto, int port)
{
	for (int i = 0; i < w->nr; i++) {
		const struct rule *r = &w->r[i];
		bool from = false;

		if (r->app || (!r->grant && r->proto != 0 && r->proto != proto))
			continue;
		for (int k = 0; k < r->nsrc && !from; k++)
			from = sel_has(w, &r->src[k], src);
		if (!from)
			continue;
		for (int k = 0; k < r->ndst; k++) {
			const struct sel *d = &r->dst[k];
			bool to = d->k == K_SELF ? w->user[src] >= 0 && w->user[dst] == w->user[src] :
			    sel_has(w, d, dst);

			if (!to)
				continue;
			if (!r->grant && port >= d->lo && port <= d->hi)
				return true;
			for (int e = 0; r->grant && e < r->nip; e++)
				if ((r->ip[e].proto == 0 || r->ip[e].proto == proto) &&
				    port >= r->ip[e].lo && port <= r->ip[e].hi)
					return true;
		}
	}
	return false;
}

/* App grants make their sources and destinations see each other. */
static bool
ref_app_links(const struct world *w, int src, int dst)
{
	for (int i = 0; i < w->nr; i++) {
		const struct rule *r = &w->r[i];
		bool from = false;

		if (!r->app)
			continue;
		for (int k = 0; k < r->nsrc && !from; k++)
			from = sel_has(w, &r->src[k], src);
		for (int k = 0; from && k < r->ndst; k++)
			if (r->dst[k].k == K_SELF ? w->user[src] >= 0 && w->user[dst] == w->user[src] :
			    sel_has(w, &r->dst[k], dst))
				return true;
	}
	return false;
}

/* ---- the compiled side: read a decision from a filter ---- */

static bool
json_prefix_has(const char *s, const struct ip_addr *a)
{
	struct ip_prefix p;

	if (strcmp(s, "*") == 0)
		return true;
	return prefix_parse(s, false, &p) == 0 && prefix_contains(&p, a);
}

static bool
filter_accepts(json_t *f, const struct ip_addr *src, const struct ip_addr *dst, int proto,
	       int port)
{
	size_t i, k;
	json_t *e, *v;

	json_array_foreach(f, i, e) {
		bool p = false, s = false;

		json_array_foreach(json_object_get(e, "IPProto"), k, v)
			p |= json_integer_value(v) == proto;
		if (json_object_get(e, "IPProto") == NULL)
			p = true;
		json_array_foreach(json_object_get(e, "Srcs"), k, v)
			s |= json_prefix_has(json_string_value(v), src);
		if (!p || !s)
			continue;
		json_array_foreach(json_object_get(e, "Dsts"), k, v) {
			json_t *ports = json_object_get(v, "Ports");

			if (json_prefix_has(json_string_value(json_object_get(v, "Net")), dst) &&
			    port >= json_integer_value(json_object_get(ports, "First")) &&
			    port <= json_integer_value(json_object_get(ports, "Last")))
				return true;
		}
	}
	return false;
}

/* ---- generation ---- */

static void
gen_sel(struct sel *s, bool dst, bool self_ok)
{
	static const enum kind kinds[] = { K_USER, K_GROUP, K_TAG, K_ALL, K_MEMBER,
	    K_TAGGED, K_HOST, K_SELF };
	int nk = dst && self_ok ? 8 : 7;

	s->k = kinds[rnd(nk)];
	s->v = rnd(s->k == K_USER ? NUSERS : s->k == K_GROUP ? NGROUPS : s->k == K_TAG ? NTAGS : 2);
	s->lo = 0;
	s->hi = 65535;
	if (dst) {
		switch (rnd(3)) {
		case 0: break;
		case 1: s->lo = s->hi = 20 + rnd(5); break;
		default: s->lo = 20 + rnd(3); s->hi = s->lo + rnd(4); break;
		}
	}
}

static void
fmt_sel(struct buf *b, const struct sel *s, bool dst)
{
	char t[64];

	switch (s->k) {
	case K_USER: snprintf(t, sizeof(t), "u%d@", s->v); break;
	case K_GROUP: snprintf(t, sizeof(t), "group:g%d", s->v); break;
	case K_TAG: snprintf(t, sizeof(t), "tag:t%d", s->v); break;
	case K_ALL: snprintf(t, sizeof(t), "*"); break;
	case K_MEMBER: snprintf(t, sizeof(t), "autogroup:member"); break;
	case K_TAGGED: snprintf(t, sizeof(t), "autogroup:tagged"); break;
	case K_HOST: snprintf(t, sizeof(t), "h%d", s->v); break;
	case K_SELF: snprintf(t, sizeof(t), "autogroup:self"); break;
	case K_DANGER: snprintf(t, sizeof(t), "autogroup:danger-all"); break;
	}
	P("\"%s", t);
	if (dst) {
		if (s->lo == 0 && s->hi == 65535)
			P(":*");
		else if (s->lo == s->hi)
			P(":%d", s->lo);
		else
			P(":%d-%d", s->lo, s->hi);
	}
	P("\"");
}

static void
gen_world(struct world *w, struct buf *b)
{
	char h[ADDR_STR_MAX];

	memset(w, 0, sizeof(*w));
	w->n = 6 + rnd(MAXN - 6);
	for (int i = 0; i < w->n; i++) {
		w->user[i] = rnd(3) == 0 ? -1 : rnd(NUSERS);
		if (w->user[i] < 0)
			w->tags[i] = 1u << rnd(NTAGS) | (rnd(2) ? 1u << rnd(NTAGS) : 0);
	}
	for (int g = 0; g < NGROUPS; g++)
		w->group[g] = (unsigned)rnd(1 << NUSERS);
	addr4(rnd(w->n), &w->host[0].addr);
	w->host[0].bits = 32;
	addr4(rnd(w->n), &w->host[1].addr);
	w->host[1].bits = 29 + rnd(3);
	prefix_mask(&w->host[1]);
	w->nr = 1 + rnd(MAXRULES);
	for (int i = 0; i < w->nr; i++) {
		struct rule *r = &w->r[i];
		bool self_ok = true;

		r->nsrc = 1 + rnd(MAXSEL);
		for (int k = 0; k < r->nsrc; k++) {
			gen_sel(&r->src[k], false, false);
			/* autogroup:self needs user sources (as in Tailscale). */
			self_ok &= r->src[k].k == K_USER || r->src[k].k == K_GROUP ||
			    r->src[k].k == K_MEMBER;
		}
		r->ndst = 1 + rnd(MAXSEL);
		for (int k = 0; k < r->ndst; k++)
			gen_sel(&r->dst[k], true, self_ok);
		r->proto = (int[]){ 0, 0, 6, 17 }[rnd(4)];
		r->grant = rnd(2) == 0;
		if (r->grant) {
			r->app = rnd(4) == 0;
			bool has_self = false;

			for (int k = 0; k < r->ndst; k++)
				has_self |= r->dst[k].k == K_SELF;
			if (!has_self && rnd(4) == 0)
				r->src[rnd(r->nsrc)].k = K_DANGER;
			r->nip = 1 + rnd(MAXIP);
			for (int e = 0; e < r->nip; e++) {
				struct sel ps;

				gen_sel(&ps, true, false);
				r->ip[e].proto = (int[]){ 0, 0, 6, 17 }[rnd(4)];
				r->ip[e].lo = ps.lo;
				r->ip[e].hi = ps.hi;
			}
		}
	}

	P("{\"groups\":{");
	for (int g = 0; g < NGROUPS; g++) {
		bool first = true;

		P("%s\"group:g%d\":[", g ? "," : "", g);
		for (int u = 0; u < NUSERS; u++) {
			if (w->group[g] >> u & 1) {
				P("%s\"u%d@\"", first ? "" : ",", u);
				first = false;
			}
		}
		P("]");
	}
	P("},\"tagOwners\":{");
	for (int t = 0; t < NTAGS; t++)
		P("%s\"tag:t%d\":[\"u0@\"]", t ? "," : "", t);
	prefix_fmt(h, &w->host[0]);
	P("},\"hosts\":{\"h0\":\"%s\",", h);
	prefix_fmt(h, &w->host[1]);
	P("\"h1\":\"%s\"},\"grants\":[", h);
	{
		bool first = true;

		for (int i = 0; i < w->nr; i++) {
			const struct rule *r = &w->r[i];

			if (!r->grant)
				continue;
			P("%s{\"src\":[", first ? "" : ",");
			first = false;
			for (int k = 0; k < r->nsrc; k++) {
				P("%s", k ? "," : "");
				fmt_sel(b, &r->src[k], false);
			}
			P("],\"dst\":[");
			for (int k = 0; k < r->ndst; k++) {
				P("%s", k ? "," : "");
				fmt_sel(b, &r->dst[k], false);
			}
			P("],");
			if (r->app) {
				P("\"app\":{\"example.com/cap/r%d\":[{\"i\":%d}]}}", i, i);
				continue;
			}
			P("\"ip\":[");
			for (int e = 0; e < r->nip; e++) {
				const char *pn = r->ip[e].proto == 6 ? "tcp:" : r->ip[e].proto == 17 ? "udp:" : "";

				if (r->ip[e].lo == 0 && r->ip[e].hi == 65535)
					P("%s\"%s*\"", e ? "," : "", pn);
				else if (r->ip[e].lo == r->ip[e].hi)
					P("%s\"%s%d\"", e ? "," : "", pn, r->ip[e].lo);
				else
					P("%s\"%s%d-%d\"", e ? "," : "", pn, r->ip[e].lo, r->ip[e].hi);
			}
			P("]}");
		}
	}
	P("],\"acls\":[");
	for (int i = 0, first = 1; i < w->nr; i++) {
		const struct rule *r = &w->r[i];

		if (r->grant)
			continue;
		P("%s{\"action\":\"accept\",", first ? "" : ",");
		first = 0;
		if (r->proto)
			P("\"proto\":\"%s\",", r->proto == 6 ? "tcp" : "udp");
		P("\"src\":[");
		for (int k = 0; k < r->nsrc; k++) {
			P("%s", k ? "," : "");
			fmt_sel(b, &r->src[k], false);
		}
		P("],\"dst\":[");
		for (int k = 0; k < r->ndst; k++) {
			P("%s", k ? "," : "");
			fmt_sel(b, &r->dst[k], true);
		}
		P("]}");
	}
	P("]}");
}

START_TEST(test_compiled_filters_match_reference)
{
	static const char *users[NUSERS] = { "u0", "u1", "u2", "u3" };
	static const char *tagname[NTAGS] = { "tag:t0", "tag:t1", "tag:t2" };
	long checked = 0;

	for (int iter = 0; iter < 300; iter++) {
		struct world w;
		struct buf text;
		struct policy_diags d;
		struct policy *p = NULL;
		struct policy_node nodes[MAXN];
		const char *ntags[MAXN][NTAGS];
		struct policy_result *res;
		json_t *filters[MAXN];

		buf_init(&text, 1 << 20);
		gen_world(&w, &text);
		policy_diags_init(&d);
		ck_assert_msg(policy_load(buf_cstr(&text), text.len, &p, &d) == 0,
		    "generated policy rejected: %s\n%s", d.n ? d.v[0].msg : "?", buf_cstr(&text));
		policy_diags_cleanup(&d);
		memset(nodes, 0, sizeof(nodes));
		for (int i = 0; i < w.n; i++) {
			nodes[i].id = (uint64_t)i + 1;
			nodes[i].name = "n";
			addr4(i, &nodes[i].ipv4);
			nodes[i].user = w.user[i] >= 0 ? users[w.user[i]] : NULL;
			for (int t = 0; t < NTAGS; t++)
				if (w.tags[i] >> t & 1)
					ntags[i][nodes[i].ntags++] = tagname[t];
			nodes[i].tags = ntags[i];
		}
		res = policy_compile(p, nodes, (size_t)w.n);
		ck_assert_ptr_nonnull(res);
		for (int i = 0; i < w.n; i++)
			ck_assert_ptr_nonnull(filters[i] = policy_result_filter(res, (size_t)i));

		for (int s = 0; s < w.n; s++) {
			for (int t = 0; t < w.n; t++) {
				bool reach_st = false, reach_ts = false;

				if (s == t)
					continue;
				for (int proto = 6; proto <= 17; proto += 11) {
					for (int port = 19; port <= 27; port++) {
						bool want = ref_accepts(&w, s, t, proto, port);
						bool got = filter_accepts(filters[t], &nodes[s].ipv4,
						    &nodes[t].ipv4, proto, port);

						ck_assert_msg(want == got, "node %d -> %d proto %d port %d: "
						    "reference %s, compiled %s\npolicy: %s\nfilter: %s",
						    s, t, proto, port, want ? "accept" : "deny",
						    got ? "accept" : "deny", buf_cstr(&text),
						    json_dumps(filters[t], JSON_COMPACT));
						reach_st |= want;
						reach_ts |= ref_accepts(&w, t, s, proto, port);
						checked++;
					}
					/* Ports outside 19..27 only matter for `*` ports. */
					reach_st |= ref_accepts(&w, s, t, proto, 1000);
					reach_ts |= ref_accepts(&w, t, s, proto, 1000);
				}
				reach_st |= ref_app_links(&w, s, t);
				reach_ts |= ref_app_links(&w, t, s);
				ck_assert_msg(policy_result_can_see(res, (size_t)s, (size_t)t) ==
				    (reach_st || reach_ts), "visibility %d<->%d: reference %d, "
				    "compiled %d\npolicy: %s", s, t, reach_st || reach_ts,
				    policy_result_can_see(res, (size_t)s, (size_t)t), buf_cstr(&text));
			}
		}
		for (int i = 0; i < w.n; i++)
			json_decref(filters[i]);
		policy_result_free(res);
		policy_free(p);
		buf_cleanup(&text);
	}
	ck_assert_int_gt(checked, 10000);
}
END_TEST

Suite *
policy_diff_suite(void)
{
	Suite *s = suite_create("policy_diff");
	TCase *tc = tcase_create("reference");

	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_compiled_filters_match_reference);
	suite_add_tcase(s, tc);
	return s;
}
