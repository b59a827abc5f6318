// SPDX-License-Identifier: MIT
/*
 * The compiler: a policy over a node set becomes, per node, the set of peers
 * it may see and its inbound packet filter.
 *
 * Nodes are first grouped into classes: nodes with the same user, the same
 * tags, the same answers to every IP-based selector of the policy (host,
 * IP, CIDR: does the node's address or an approved subnet route fall in it)
 * and the same exit-node status are indistinguishable to every rule. Rules
 * are then evaluated over classes, not nodes: visibility is a class x class
 * bit matrix and a node's filter is its class's template instantiated with
 * the node's own addresses. A 10,000-node tailnet with 500 users has about
 * as many classes as users, so the cost is rules x classes, plus one linear
 * pass over the (pre-sorted) nodes per distinct rule source to build its
 * merged source prefix list.
 *
 * Tailscale's shapes, taken from its control plane's answers: a `*` source
 * is the CGNAT range without 100.115.92.0/23, fd7a:115c:a1e0::/48 and every
 * approved subnet route; a `*` destination is 0.0.0.0/0 and ::/0; a named
 * destination (user, group, tag, autogroup) is the node's own /32 and /128;
 * an IP or CIDR destination is kept as written and lands on the nodes whose
 * address or approved subnet route overlaps it; autogroup:self gives each
 * user's device a rule from that user's other devices in the source.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "policy/policy_int.h"

typedef unsigned __int128 u128;

struct range {
	int fam;		/* 4 or 6 */
	u128 lo, hi;
};

struct plist {
	struct ip_prefix *v;
	size_t n;
	uint64_t hash;
};

enum tkind { T_NORMAL, T_SELF, T_VIA };

/* A router that carries a via grant's destination: its tailnet addresses and
 * the part of the destination it serves (the narrower of the destination and
 * the approved route; 0.0.0.0/0 or ::/0 for an exit node). */
struct viaent {
	struct ip_addr a4, a6;
	struct ip_prefix route;
};

struct vialist {
	struct viaent *v;
	size_t n;
	uint64_t hash;
};

struct tentry {
	uint32_t rule;
	uint32_t kind;
	uint32_t dfirst, dcount;	/* dst item indexes in the class's dpool (T_NORMAL) */
};

struct cls {
	size_t rep;			/* a member node */
	const char *user;		/* NULL when tagged or ownerless */
	bool tagged, exit;
	size_t userid;			/* index in the user table, SIZE_MAX if none */
	uint64_t *ipbits;
	size_t *members;
	size_t nmembers, capmembers;
	struct tentry *t;
	size_t nt, capt;
	uint32_t *dpool;
	size_t ndpool, capdpool;
	uint64_t thash;			/* template hash */
	uint64_t mhash;			/* sum of member id mixes */
};

struct policy_result {
	const struct policy *p;
	struct policy *own;		/* allow-all policy when compiled with p == NULL */
	size_t n;
	struct policy_node *nodes;	/* copied scalars; strings not kept */
	size_t *ncls;			/* class of each node */
	struct cls *cls;
	size_t ncl;
	size_t words;			/* words per class bitset */
	uint64_t *vis;			/* ncl x words */
	struct plist *srcs;		/* per rule */
	struct plist **selfsrc;		/* per rule (self rules): per userid */
	struct vialist **via;		/* per rule (via rules): per dst */
	size_t nusers;
	uint64_t *fhash, *phash;	/* per node */
};

/* ---- hashing ---- */

static uint64_t
mix64(uint64_t x)
{
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ULL;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebULL;
	x ^= x >> 31;
	return x;
}

static uint64_t
hcombine(uint64_t h, uint64_t v)
{
	return mix64(h ^ (v + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2)));
}

static uint64_t
hbytes(uint64_t h, const void *p, size_t n)
{
	const uint8_t *b = p;
	size_t i;

	for (i = 0; i < n; i++)
		h = (h ^ b[i]) * 0x100000001b3ULL;
	return mix64(h);
}

static uint64_t
haddr(uint64_t h, const struct ip_addr *a)
{
	if (a->family == 0)
		return hcombine(h, 0);
	return hbytes(hcombine(h, (uint64_t)a->family), a->b, (size_t)addr_len(a));
}

/* ---- prefix ranges ---- */

static struct range
to_range(const struct ip_prefix *p)
{
	struct range r;
	int bits = p->addr.family == AF_INET ? 32 : 128, i, n;
	u128 v = 0, mask;

	n = addr_len(&p->addr);
	for (i = 0; i < n; i++)
		v = (v << 8) | p->addr.b[i];
	r.fam = p->addr.family == AF_INET ? 4 : 6;
	if (p->bits >= bits)
		mask = 0;
	else if (bits - p->bits == 128)
		mask = ~(u128)0;
	else
		mask = (((u128)1) << (bits - p->bits)) - 1;
	r.lo = v & ~mask;
	r.hi = r.lo | mask;
	return r;
}

static struct range
addr_range(const struct ip_addr *a)
{
	struct ip_prefix p = { .addr = *a, .bits = a->family == AF_INET ? 32 : 128 };

	return to_range(&p);
}

static void
from_value(struct ip_prefix *p, int fam, u128 v, int bits)
{
	int i, n = fam == 4 ? 4 : 16;

	memset(p, 0, sizeof(*p));
	p->addr.family = fam == 4 ? AF_INET : AF_INET6;
	for (i = n - 1; i >= 0; i--) {
		p->addr.b[i] = (uint8_t)(v & 0xff);
		v >>= 8;
	}
	p->bits = bits;
}

static int
range_cmp(const void *a, const void *b)
{
	const struct range *x = a, *y = b;

	if (x->fam != y->fam)
		return x->fam < y->fam ? -1 : 1;
	if (x->lo != y->lo)
		return x->lo < y->lo ? -1 : 1;
	if (x->hi != y->hi)
		return x->hi < y->hi ? -1 : 1;
	return 0;
}

static bool
range_overlap(const struct range *a, const struct range *b)
{
	return a->fam == b->fam && a->lo <= b->hi && b->lo <= a->hi;
}

/* Appends the fewest CIDRs covering [lo, hi]. */
static int
emit_cidrs(struct plist *pl, size_t *cap, int fam, u128 lo, u128 hi)
{
	int width = fam == 4 ? 32 : 128;

	for (;;) {
		int k = 0;
		u128 last;

		/* Largest aligned block of 2^k addresses at lo that ends by hi. */
		while (k < width) {
			if (k + 1 == 128) {
				if (lo == 0 && hi == ~(u128)0)
					k++;
				break;
			}
			u128 size = ((u128)1) << (k + 1);

			if ((lo & (size - 1)) != 0 || hi - lo < size - 1)
				break;
			k++;
		}
		if (pl->n == *cap) {
			size_t ncap = *cap ? *cap * 2 : 16;
			struct ip_prefix *nv = realloc(pl->v, ncap * sizeof(*nv));

			if (nv == NULL)
				return ERR_NOMEM;
			pl->v = nv;
			*cap = ncap;
		}
		from_value(&pl->v[pl->n++], fam, lo, width - k);
		if (k == 128)
			return 0;
		last = lo + ((((u128)1) << k) - 1);
		if (last >= hi)
			return 0;
		lo = last + 1;
	}
}

/* Merges sorted ranges `a` with unsorted `b` (sorted here) into a CIDR list. */
static int
plist_build(struct plist *pl, struct range *a, size_t na, struct range *b, size_t nb)
{
	size_t i = 0, j = 0, cap = 0;
	struct range cur = { 0 };
	bool have = false;
	int r;

	memset(pl, 0, sizeof(*pl));
	if (nb > 1)
		qsort(b, nb, sizeof(*b), range_cmp);
	while (i < na || j < nb) {
		struct range x;

		if (j >= nb || (i < na && range_cmp(&a[i], &b[j]) <= 0))
			x = a[i++];
		else
			x = b[j++];
		if (have && x.fam == cur.fam && (x.lo <= cur.hi || x.lo == cur.hi + 1)) {
			if (x.hi > cur.hi)
				cur.hi = x.hi;
			continue;
		}
		if (have && (r = emit_cidrs(pl, &cap, cur.fam, cur.lo, cur.hi)) != 0)
			return r;
		cur = x;
		have = true;
	}
	if (have && (r = emit_cidrs(pl, &cap, cur.fam, cur.lo, cur.hi)) != 0)
		return r;
	pl->hash = 0x5157;
	for (i = 0; i < pl->n; i++)
		pl->hash = hcombine(haddr(pl->hash, &pl->v[i].addr), (uint64_t)pl->v[i].bits);
	return 0;
}

/* ---- selectors over classes ---- */

static bool
cls_has_tag(const struct policy_result *R, const struct cls *c, const char *tag)
{
	const struct policy_node *n = &R->nodes[c->rep];
	size_t i;

	for (i = 0; i < n->ntags; i++)
		if (strcmp(n->tags[i], tag) == 0)
			return true;
	return false;
}

struct ipsel {
	struct ip_prefix *v;
	struct range *r;
	size_t n, cap;
};

static size_t
ipsel_find(const struct ipsel *s, const struct ip_prefix *p)
{
	size_t i;

	for (i = 0; i < s->n; i++)
		if (s->v[i].bits == p->bits && addr_equal(&s->v[i].addr, &p->addr))
			return i;
	return SIZE_MAX;
}

static bool
bit(const uint64_t *w, size_t i)
{
	return (w[i / 64] >> (i % 64)) & 1;
}

static void
setbit(uint64_t *w, size_t i)
{
	w[i / 64] |= (uint64_t)1 << (i % 64);
}

static bool
match_cls(const struct policy_result *R, const struct ipsel *ips, const struct selector *s,
	  const struct cls *c, bool as_src)
{
	switch (s->kind) {
	case SEL_ALL:
		return true;
	case SEL_USER:
		return !c->tagged && user_match(s->name, c->user);
	case SEL_GROUP:
		return !c->tagged && c->user != NULL && group_has_user(R->p, s->idx, c->user);
	case SEL_TAG:
		return c->tagged && cls_has_tag(R, c, s->name);
	case SEL_PREFIX:
		return bit(c->ipbits, ipsel_find(ips, &s->pfx) + (as_src ? 0 : ips->n));
	case SEL_MEMBER:
		return !c->tagged && c->user != NULL;
	case SEL_TAGGED:
		return c->tagged;
	case SEL_DANGER:
		return true;
	case SEL_DOMAIN:
		if (c->tagged || c->user == NULL)
			return false;
		{
			size_t lu = strlen(c->user), ld = strlen(s->name);

			return lu > ld && strcmp(c->user + lu - ld, s->name) == 0;
		}
	case SEL_SELF:
	case SEL_INTERNET:
		return false;
	}
	return false;
}

static bool
cls_has_via(const struct policy_result *R, const struct cls *c, const struct rule *ru)
{
	size_t i;

	if (!c->tagged)
		return false;
	for (i = 0; i < ru->nvia; i++)
		if (cls_has_tag(R, c, ru->via[i]))
			return true;
	return false;
}

/* ---- classes ---- */

static bool
is_exit_route(const struct ip_prefix *p)
{
	return p->bits == 0;
}

/* Does the node's address, or one of its subnet routes, overlap r? Sources
 * also count advertised routes (Tailscale shows such a router to the rule's
 * destinations); destinations only approved ones. */
static bool
node_in_range(const struct policy_node *n, const struct range *r, bool as_src)
{
	size_t i, nr = n->nroutes + (as_src ? n->nadvertised : 0);

	if (n->ipv4.family != 0) {
		struct range a = addr_range(&n->ipv4);

		if (range_overlap(&a, r))
			return true;
	}
	if (n->ipv6.family != 0) {
		struct range a = addr_range(&n->ipv6);

		if (range_overlap(&a, r))
			return true;
	}
	for (i = 0; i < nr; i++) {
		const struct ip_prefix *p = i < n->nroutes ? &n->routes[i] :
		    &n->advertised[i - n->nroutes];
		struct range a;

		if (is_exit_route(p))
			continue;
		a = to_range(p);
		if (range_overlap(&a, r))
			return true;
	}
	return false;
}

static bool
node_is_exit(const struct policy_node *n)
{
	size_t i;

	for (i = 0; i < n->nroutes; i++)
		if (is_exit_route(&n->routes[i]))
			return true;
	return false;
}

static bool
same_tags(const struct policy_node *a, const struct policy_node *b)
{
	size_t i, j;

	if (a->ntags != b->ntags)
		return false;
	for (i = 0; i < a->ntags; i++) {
		for (j = 0; j < b->ntags; j++)
			if (strcmp(a->tags[i], b->tags[j]) == 0)
				break;
		if (j == b->ntags)
			return false;
	}
	return true;
}

static uint64_t
hstr(uint64_t h, const char *s)
{
	return s ? hbytes(h, s, strlen(s)) : hcombine(h, 1);
}

static int
push(void **v, size_t *n, size_t *cap, size_t sz, const void *item)
{
	if (*n == *cap) {
		size_t ncap = *cap ? *cap * 2 : 4;
		void *nv = realloc(*v, ncap * sz);

		if (nv == NULL)
			return ERR_NOMEM;
		*v = nv;
		*cap = ncap;
	}
	memcpy((char *)*v + *n * sz, item, sz);
	(*n)++;
	return 0;
}

struct bucket {
	uint64_t key;
	size_t cls;		/* SIZE_MAX: empty */
};

static int
build_classes(struct policy_result *R, const struct ipsel *ips, bool single)
{
	size_t nb = 16, i, k, kw = (2 * ips->n + 63) / 64;
	struct bucket *tab;
	uint64_t *bits;
	size_t capcls = 0;
	int r = ERR_NOMEM;

	if (kw == 0)
		kw = 1;
	while (nb < R->n * 2)
		nb *= 2;
	if ((tab = malloc(nb * sizeof(*tab))) == NULL)
		return ERR_NOMEM;
	if ((bits = calloc(kw, sizeof(*bits))) == NULL) {
		free(tab);
		return ERR_NOMEM;
	}
	for (i = 0; i < nb; i++)
		tab[i].cls = SIZE_MAX;
	for (i = 0; i < R->n; i++) {
		const struct policy_node *n = &R->nodes[i];
		bool tagged = n->ntags > 0, ex = node_is_exit(n);
		const char *user = tagged ? NULL : n->user;
		uint64_t h = 0x1234;
		size_t slot, t;

		memset(bits, 0, kw * sizeof(*bits));
		if (!single) {
			for (k = 0; k < ips->n; k++) {
				if (node_in_range(n, &ips->r[k], true))
					setbit(bits, k);
				if (node_in_range(n, &ips->r[k], false))
					setbit(bits, ips->n + k);
			}
			h = hstr(h, user);
			for (t = 0; t < n->ntags; t++)
				h += mix64(hstr(7, n->tags[t]));	/* order-free */
			h = hbytes(h, bits, kw * sizeof(*bits));
			h = hcombine(h, ex);
		}
		for (slot = h & (nb - 1);; slot = (slot + 1) & (nb - 1)) {
			struct cls *c;

			if (tab[slot].cls == SIZE_MAX) {
				struct cls nc;

				memset(&nc, 0, sizeof(nc));
				nc.rep = i;
				nc.user = user;
				nc.tagged = tagged;
				nc.exit = ex;
				nc.userid = SIZE_MAX;
				if ((nc.ipbits = malloc(kw * sizeof(*bits))) == NULL)
					goto out;
				memcpy(nc.ipbits, bits, kw * sizeof(*bits));
				if (push((void **)&R->cls, &R->ncl, &capcls, sizeof(nc), &nc) != 0) {
					free(nc.ipbits);
					goto out;
				}
				tab[slot].key = h;
				tab[slot].cls = R->ncl - 1;
				break;
			}
			if (tab[slot].key != h)
				continue;
			c = &R->cls[tab[slot].cls];
			if (single || (c->tagged == tagged && c->exit == ex &&
			    ((user == NULL && c->user == NULL) ||
			    (user != NULL && c->user != NULL && strcmp(user, c->user) == 0)) &&
			    same_tags(n, &R->nodes[c->rep]) &&
			    memcmp(c->ipbits, bits, kw * sizeof(*bits)) == 0))
				break;
		}
		R->ncls[i] = tab[slot].cls;
		{
			struct cls *c = &R->cls[tab[slot].cls];

			if (push((void **)&c->members, &c->nmembers, &c->capmembers,
			    sizeof(size_t), &i) != 0)
				goto out;
			c->mhash += mix64(n->id ^ 0xa5a5a5a5ULL);
		}
	}
	r = 0;
out:
	free(bits);
	free(tab);
	return r;
}

/* Assigns user ids to untagged classes (for autogroup:self). */
static int
number_users(struct policy_result *R)
{
	size_t i, j;

	for (i = 0; i < R->ncl; i++) {
		struct cls *c = &R->cls[i];

		if (c->tagged || c->user == NULL)
			continue;
		for (j = 0; j < i; j++) {
			if (R->cls[j].userid != SIZE_MAX && strcmp(R->cls[j].user, c->user) == 0) {
				c->userid = R->cls[j].userid;
				break;
			}
		}
		if (c->userid == SIZE_MAX)
			c->userid = R->nusers++;
	}
	return 0;
}

/* ---- the compile ---- */

static const char *const cgnat_v4[] = { "100.64.0.0/10" };

static int
star_ranges(const struct policy_result *R, struct range **out, size_t *n)
{
	size_t cap = 0, i, j;
	struct ip_prefix p;
	struct range r, hole;
	int e;

	*out = NULL;
	*n = 0;
	/* 100.64.0.0/10 without 100.115.92.0/23, as two ranges. */
	if (prefix_parse(cgnat_v4[0], false, &p) != 0)
		return ERR_INTERNAL;
	r = to_range(&p);
	if (prefix_parse("100.115.92.0/23", false, &p) != 0)
		return ERR_INTERNAL;
	hole = to_range(&p);
	{
		struct range a = { 4, r.lo, hole.lo - 1 }, b = { 4, hole.hi + 1, r.hi };

		if ((e = push((void **)out, n, &cap, sizeof(a), &a)) != 0 ||
		    (e = push((void **)out, n, &cap, sizeof(b), &b)) != 0)
			return e;
	}
	if (prefix_parse("fd7a:115c:a1e0::/48", false, &p) != 0)
		return ERR_INTERNAL;
	r = to_range(&p);
	if ((e = push((void **)out, n, &cap, sizeof(r), &r)) != 0)
		return e;
	for (i = 0; i < R->n; i++) {
		for (j = 0; j < R->nodes[i].nroutes; j++) {
			if (is_exit_route(&R->nodes[i].routes[j]))
				continue;
			r = to_range(&R->nodes[i].routes[j]);
			if ((e = push((void **)out, n, &cap, sizeof(r), &r)) != 0)
				return e;
		}
	}
	return 0;
}

/* Node indexes by their address's range (ctx: the ranges by node index). */
static int
node_cmp(const void *a, const void *b, void *ctx)
{
	const struct range *r = ctx;

	return range_cmp(&r[*(const size_t *)a], &r[*(const size_t *)b]);
}

static int
add_tentry(struct cls *c, uint32_t rule, uint32_t kind, uint32_t d)
{
	struct tentry t = { rule, kind, 0, 0 };

	if (kind == T_NORMAL) {
		if (c->nt > 0 && c->t[c->nt - 1].rule == rule && c->t[c->nt - 1].kind == T_NORMAL) {
			c->t[c->nt - 1].dcount++;
			return push((void **)&c->dpool, &c->ndpool, &c->capdpool, sizeof(d), &d);
		}
		t.dfirst = (uint32_t)c->ndpool;
		t.dcount = 1;
		if (push((void **)&c->dpool, &c->ndpool, &c->capdpool, sizeof(d), &d) != 0)
			return ERR_NOMEM;
	}
	return push((void **)&c->t, &c->nt, &c->capt, sizeof(t), &t);
}

struct work {
	size_t *ord4, *ord6;	/* node indexes sorted by address (those that have one) */
	size_t n4, n6;
	struct range *r4, *r6;	/* by node index: its addresses as ranges */
	struct range *star;
	size_t nstar;
	struct range *tmp, *extra;
	size_t capextra;
	uint64_t *srcmask, *named, *dstmask;
};

static int
rule_sources(struct policy_result *R, struct work *W, const struct rule *ru,
	     const uint64_t *named, bool all, struct plist *out)
{
	size_t i, na = 0, ne = 0, k, c, members = 0;
	int r;

	for (c = 0; c < R->ncl; c++)
		if (bit(named, c))
			members += R->cls[c].nmembers;
	if (members * 16 < W->n4 + W->n6) {
		/* a few classes of many (a group of a large network): their
		 * members' addresses, sorted, instead of a walk over all */
		for (c = 0; c < R->ncl; c++) {
			if (!bit(named, c))
				continue;
			for (k = 0; k < R->cls[c].nmembers; k++) {
				size_t n = R->cls[c].members[k];

				if (R->nodes[n].ipv4.family == AF_INET)
					W->tmp[na++] = W->r4[n];
				if (R->nodes[n].ipv6.family == AF_INET6)
					W->tmp[na++] = W->r6[n];
			}
		}
		qsort(W->tmp, na, sizeof(*W->tmp), range_cmp);
	} else {
		for (i = 0; i < W->n4; i++)
			if (bit(named, R->ncls[W->ord4[i]]))
				W->tmp[na++] = W->r4[W->ord4[i]];
		for (i = 0; i < W->n6; i++)
			if (bit(named, R->ncls[W->ord6[i]]))
				W->tmp[na++] = W->r6[W->ord6[i]];
	}
	for (k = 0; k < ru->nsrc; k++) {
		if (ru->src[k].kind == SEL_PREFIX) {
			struct range x = to_range(&ru->src[k].pfx);

			if ((r = push((void **)&W->extra, &ne, &W->capextra, sizeof(x), &x)) != 0)
				return r;
		}
	}
	for (k = 0; k < ru->nsrc; k++) {
		if (ru->src[k].kind == SEL_DANGER) {
			struct range z4 = { 4, 0, 0xffffffffu }, z6 = { 6, 0, ~(u128)0 };

			if ((r = push((void **)&W->extra, &ne, &W->capextra, sizeof(z4), &z4)) != 0 ||
			    (r = push((void **)&W->extra, &ne, &W->capextra, sizeof(z6), &z6)) != 0)
				return r;
			break;
		}
	}
	if (all) {
		for (k = 0; k < W->nstar; k++)
			if ((r = push((void **)&W->extra, &ne, &W->capextra, sizeof(W->star[k]),
			    &W->star[k])) != 0)
				return r;
	}
	return plist_build(out, W->tmp, na, W->extra, ne);
}

static int
self_sources(struct policy_result *R, struct work *W, size_t rule)
{
	size_t u, i, na;
	struct plist *lists;
	int r;

	size_t *at;

	if ((lists = calloc(R->nusers ? R->nusers : 1, sizeof(*lists))) == NULL)
		return ERR_NOMEM;
	R->selfsrc[rule] = lists;
	if ((at = calloc(R->nusers + 1, sizeof(*at))) == NULL)
		return ERR_NOMEM;
	/* Bucket the source nodes by user in one pass per family: count, then
	 * place. Walking the address-sorted nodes keeps each bucket sorted,
	 * IPv4 before IPv6, as plist_build expects. */
	for (i = 0; i < W->n4 + W->n6; i++) {
		size_t n = i < W->n4 ? W->ord4[i] : W->ord6[i - W->n4];

		size_t uid = R->cls[R->ncls[n]].userid;

		if (uid < R->nusers && bit(W->srcmask, R->ncls[n]))
			at[uid + 1]++;
	}
	for (u = 0; u < R->nusers; u++)
		at[u + 1] += at[u];
	for (i = 0; i < W->n4 + W->n6; i++) {
		bool v4 = i < W->n4;
		size_t n = v4 ? W->ord4[i] : W->ord6[i - W->n4];
		const struct cls *c = &R->cls[R->ncls[n]];

		if (c->userid < R->nusers && bit(W->srcmask, R->ncls[n]))
			W->tmp[at[c->userid]++] = v4 ? W->r4[n] : W->r6[n];
	}
	/* at[u] is now the end of bucket u, the start of bucket u + 1. */
	for (u = 0, na = 0; u < R->nusers; na = at[u], u++) {
		if ((r = plist_build(&lists[u], W->tmp + na, at[u] - na, NULL, 0)) != 0) {
			free(at);
			return r;
		}
	}
	free(at);
	return 0;
}

static void
vis_or(struct policy_result *R, size_t row, const uint64_t *m)
{
	uint64_t *v = &R->vis[row * R->words];
	size_t w;

	for (w = 0; w < R->words; w++)
		v[w] |= m[w];
}

/* The routers of a via rule's routed destination j: members of classes with
 * a via tag that serve an approved route overlapping it (exit nodes for
 * autogroup:internet). */
static int
via_routers(struct policy_result *R, const struct ipsel *ips, const struct rule *ru,
	    size_t j, struct vialist *vl)
{
	const struct selector *s = &ru->dst[j].sel;
	struct range dr = { 0 };
	size_t c, k, q, cap = 0;
	int r;

	if (s->kind == SEL_PREFIX)
		dr = to_range(&s->pfx);
	vl->hash = 0x7a1a;
	for (c = 0; c < R->ncl; c++) {
		const struct cls *cl = &R->cls[c];

		if (!cls_has_via(R, cl, ru))
			continue;
		if (s->kind == SEL_INTERNET ? !cl->exit : !match_cls(R, ips, s, cl, false))
			continue;
		for (k = 0; k < cl->nmembers; k++) {
			const struct policy_node *n = &R->nodes[cl->members[k]];

			for (q = 0; q < n->nroutes; q++) {
				struct viaent e;
				struct range rr;

				memset(&e, 0, sizeof(e));
				e.a4 = n->ipv4;
				e.a6 = n->ipv6;
				if (s->kind == SEL_INTERNET) {
					if (!is_exit_route(&n->routes[q]))
						continue;
					e.route = n->routes[q];
				} else {
					if (is_exit_route(&n->routes[q]))
						continue;
					rr = to_range(&n->routes[q]);
					if (!range_overlap(&rr, &dr))
						continue;
					e.route = n->routes[q].bits > s->pfx.bits ? n->routes[q] : s->pfx;
				}
				if ((r = push((void **)&vl->v, &vl->n, &cap, sizeof(e), &e)) != 0)
					return r;
				vl->hash = hcombine(haddr(haddr(haddr(vl->hash, &e.a4), &e.a6),
				    &e.route.addr), (uint64_t)e.route.bits);
			}
		}
	}
	return 0;
}

/* Sources of a via rule learn, per routed destination, which routers carry
 * it for them (the agent gives those routers the prefix and no other). */
static int
via_directives(struct policy_result *R, struct work *W, const struct ipsel *ips, size_t ri)
{
	const struct rule *ru = &R->p->rules[ri];
	size_t c, j;
	int r;

	if ((R->via[ri] = calloc(ru->ndst ? ru->ndst : 1, sizeof(struct vialist))) == NULL)
		return ERR_NOMEM;
	for (j = 0; j < ru->ndst; j++) {
		enum sel_kind k = ru->dst[j].sel.kind;

		if (k != SEL_PREFIX && k != SEL_INTERNET)
			continue;
		if ((r = via_routers(R, ips, ru, j, &R->via[ri][j])) != 0)
			return r;
		for (c = 0; c < R->ncl; c++) {
			struct tentry t = { (uint32_t)ri, T_VIA, (uint32_t)j, 0 };
			struct cls *cl = &R->cls[c];

			if (!bit(W->srcmask, c))
				continue;
			if ((r = push((void **)&cl->t, &cl->nt, &cl->capt, sizeof(t), &t)) != 0)
				return r;
		}
	}
	return 0;
}

static int
compile_rule(struct policy_result *R, struct work *W, const struct ipsel *ips, size_t ri)
{
	const struct rule *ru = &R->p->rules[ri];
	size_t c, k, j, w;
	bool all = false, any_dst = false;
	int r;

	/* The rules of one grant (one per protocol, and its app rule) share
	 * their sources: W->srcmask still holds them from the previous rule. */
	if (ri > 0 && ru->grant > 0 && R->p->rules[ri - 1].grant == ru->grant) {
		const struct plist *prev = &R->srcs[ri - 1];

		R->srcs[ri] = *prev;
		R->srcs[ri].v = NULL;
		if (prev->n > 0) {
			if ((R->srcs[ri].v = malloc(prev->n * sizeof(*prev->v))) == NULL) {
				R->srcs[ri].n = 0;
				return ERR_NOMEM;
			}
			memcpy(R->srcs[ri].v, prev->v, prev->n * sizeof(*prev->v));
		}
		goto dsts;
	}
	memset(W->srcmask, 0, R->words * sizeof(uint64_t));
	memset(W->named, 0, R->words * sizeof(uint64_t));
	for (k = 0; k < ru->nsrc; k++)
		if (ru->src[k].kind == SEL_ALL)
			all = true;
	for (c = 0; c < R->ncl; c++) {
		for (k = 0; k < ru->nsrc; k++) {
			/* An acls source CIDR also reaches routers that merely
			 * advertise an overlapping subnet; a grant's only those whose
			 * route is approved (as Tailscale does). */
			if (match_cls(R, ips, &ru->src[k], &R->cls[c], ru->grant == 0)) {
				setbit(W->srcmask, c);
				if (ru->src[k].kind != SEL_PREFIX && ru->src[k].kind != SEL_ALL &&
				    ru->src[k].kind != SEL_DANGER)
					setbit(W->named, c);
			}
		}
	}
	if ((r = rule_sources(R, W, ru, W->named, all, &R->srcs[ri])) != 0)
		return r;
dsts:
	/* Ordinary destinations. */
	memset(W->dstmask, 0, R->words * sizeof(uint64_t));
	for (c = 0; c < R->ncl; c++) {
		for (j = 0; j < ru->ndst; j++) {
			const struct selector *s = &ru->dst[j].sel;

			if (s->kind == SEL_SELF || s->kind == SEL_INTERNET)
				continue;
			if (!match_cls(R, ips, s, &R->cls[c], false))
				continue;
			if (ru->nvia > 0 && s->kind == SEL_PREFIX && !cls_has_via(R, &R->cls[c], ru))
				continue;
			setbit(W->dstmask, c);
			any_dst = true;
			if (R->srcs[ri].n > 0 && (r = add_tentry(&R->cls[c], (uint32_t)ri, T_NORMAL,
			    (uint32_t)j)) != 0)
				return r;
		}
	}
	if (any_dst) {
		for (c = 0; c < R->ncl; c++) {
			if (bit(W->dstmask, c))
				vis_or(R, c, W->srcmask);
			if (bit(W->srcmask, c))
				vis_or(R, c, W->dstmask);
		}
	}
	for (j = 0; j < ru->ndst; j++) {
		const struct selector *s = &ru->dst[j].sel;

		if (s->kind == SEL_INTERNET) {
			/* Sources see the exit nodes, and an exit node's filter lets
			 * them through to the internet (forwarded traffic). */
			memset(W->dstmask, 0, R->words * sizeof(uint64_t));
			for (c = 0; c < R->ncl; c++) {
				if (!R->cls[c].exit || (ru->nvia > 0 && !cls_has_via(R, &R->cls[c], ru)))
					continue;
				setbit(W->dstmask, c);
				if (R->srcs[ri].n > 0 && (r = add_tentry(&R->cls[c], (uint32_t)ri,
				    T_NORMAL, (uint32_t)j)) != 0)
					return r;
			}
			for (c = 0; c < R->ncl; c++) {
				if (bit(W->dstmask, c))
					vis_or(R, c, W->srcmask);
				if (bit(W->srcmask, c))
					vis_or(R, c, W->dstmask);
			}
		}
	}
	if (ru->nvia > 0 && R->srcs[ri].n > 0 && (r = via_directives(R, W, ips, ri)) != 0)
		return r;
	if (ru->has_self) {
		if ((r = self_sources(R, W, ri)) != 0)
			return r;
		for (c = 0; c < R->ncl; c++) {
			struct cls *cl = &R->cls[c];

			if (cl->userid == SIZE_MAX || R->selfsrc[ri][cl->userid].n == 0)
				continue;
			if ((r = add_tentry(cl, (uint32_t)ri, T_SELF, 0)) != 0)
				return r;
			/* Same-user classes in the source see this one and back. */
			for (w = 0; w < R->ncl; w++) {
				if (R->cls[w].userid == cl->userid && bit(W->srcmask, w)) {
					setbit(&R->vis[c * R->words], w);
					setbit(&R->vis[w * R->words], c);
				}
			}
		}
	}
	return 0;
}

static uint64_t
template_hash(const struct policy_result *R, const struct cls *c)
{
	uint64_t h = 0xfeed;
	size_t i, j, k;

	for (i = 0; i < c->nt; i++) {
		const struct tentry *t = &c->t[i];
		const struct rule *ru = &R->p->rules[t->rule];

		h = hcombine(h, t->kind);
		h = hbytes(h, ru->protos, ru->nprotos);
		for (j = 0; j < ru->ncaps; j++)
			h = hstr(hstr(h, ru->caps[j].name), ru->caps[j].values);
		if (t->kind == T_VIA) {
			const struct dst *d = &ru->dst[t->dfirst];

			h = hcombine(h, R->via[t->rule][t->dfirst].hash);
			h = hcombine(haddr(h, &d->sel.pfx.addr), (uint64_t)d->sel.pfx.bits);
			continue;
		}
		if (t->kind == T_SELF) {
			h = hcombine(h, R->selfsrc[t->rule][c->userid].hash);
			for (j = 0; j < ru->ndst; j++) {
				if (ru->dst[j].sel.kind != SEL_SELF)
					continue;
				for (k = 0; k < ru->dst[j].nports; k++)
					h = hcombine(h, ((uint64_t)ru->dst[j].ports[k].first << 16) |
					    ru->dst[j].ports[k].last);
			}
			continue;
		}
		h = hcombine(h, R->srcs[t->rule].hash);
		for (j = 0; j < t->dcount; j++) {
			const struct dst *d = &ru->dst[c->dpool[t->dfirst + j]];

			h = hcombine(h, d->sel.kind == SEL_ALL ? 1 : d->sel.kind == SEL_PREFIX ? 2 :
			    d->sel.kind == SEL_INTERNET ? 4 : 3);
			if (d->sel.kind == SEL_PREFIX)
				h = hcombine(haddr(h, &d->sel.pfx.addr), (uint64_t)d->sel.pfx.bits);
			for (k = 0; k < d->nports; k++)
				h = hcombine(h, ((uint64_t)d->ports[k].first << 16) | d->ports[k].last);
		}
	}
	return h;
}

static struct policy *
allow_all_policy(void)
{
	struct policy *p = calloc(1, sizeof(*p));

	if (p == NULL)
		return NULL;
	p->rules = calloc(1, sizeof(*p->rules));
	if (p->rules == NULL)
		goto fail;
	p->nrules = 1;
	p->rules[0].protos[0] = 6;
	p->rules[0].protos[1] = 17;
	p->rules[0].protos[2] = 1;
	p->rules[0].protos[3] = 58;
	p->rules[0].nprotos = 4;
	p->rules[0].src = calloc(1, sizeof(struct selector));
	p->rules[0].dst = calloc(1, sizeof(struct dst));
	if (p->rules[0].src == NULL || p->rules[0].dst == NULL)
		goto fail;
	p->rules[0].nsrc = 1;
	p->rules[0].ndst = 1;
	p->rules[0].src[0].kind = SEL_ALL;
	p->rules[0].dst[0].sel.kind = SEL_ALL;
	if ((p->rules[0].dst[0].ports = calloc(1, sizeof(struct port_range))) == NULL)
		goto fail;
	p->rules[0].dst[0].ports[0].last = 65535;
	p->rules[0].dst[0].nports = 1;
	return p;
fail:
	policy_free(p);
	return NULL;
}

struct policy_result *
policy_compile(const struct policy *p, const struct policy_node *nodes, size_t n)
{
	struct policy_result *R;
	struct ipsel ips = { 0 };
	struct work W = { 0 };
	size_t i, j, c, w;
	bool single = p == NULL;

	if (n > POLICY_MAX_NODES)
		return NULL;
	if ((R = calloc(1, sizeof(*R))) == NULL)
		return NULL;
	if (p == NULL) {
		if ((R->own = allow_all_policy()) == NULL)
			goto fail;
		p = R->own;
	}
	R->p = p;
	R->n = n;
	R->nodes = calloc(n ? n : 1, sizeof(*R->nodes));
	R->ncls = calloc(n ? n : 1, sizeof(*R->ncls));
	R->fhash = calloc(n ? n : 1, sizeof(uint64_t));
	R->phash = calloc(n ? n : 1, sizeof(uint64_t));
	R->srcs = calloc(p->nrules ? p->nrules : 1, sizeof(*R->srcs));
	R->selfsrc = calloc(p->nrules ? p->nrules : 1, sizeof(*R->selfsrc));
	R->via = calloc(p->nrules ? p->nrules : 1, sizeof(*R->via));
	if (!R->nodes || !R->ncls || !R->fhash || !R->phash || !R->srcs || !R->selfsrc || !R->via)
		goto fail;
	if (n > 0)
		memcpy(R->nodes, nodes, n * sizeof(*nodes));
	/* Distinct IP selectors. */
	for (i = 0; i < p->nrules; i++) {
		const struct rule *ru = &p->rules[i];

		for (j = 0; j < ru->nsrc + ru->ndst; j++) {
			const struct selector *s = j < ru->nsrc ? &ru->src[j] : &ru->dst[j - ru->nsrc].sel;

			if (s->kind != SEL_PREFIX || ipsel_find(&ips, &s->pfx) != SIZE_MAX)
				continue;
			if (ips.n == ips.cap) {
				size_t ncap = ips.cap ? ips.cap * 2 : 8;
				struct ip_prefix *nv = realloc(ips.v, ncap * sizeof(*nv));
				struct range *nr;

				if (nv == NULL)
					goto fail;
				ips.v = nv;
				if ((nr = realloc(ips.r, ncap * sizeof(*nr))) == NULL)
					goto fail;
				ips.r = nr;
				ips.cap = ncap;
			}
			ips.v[ips.n] = s->pfx;
			ips.r[ips.n] = to_range(&s->pfx);
			ips.n++;
		}
	}
	if (build_classes(R, &ips, single) != 0 || number_users(R) != 0)
		goto fail;
	R->words = (R->ncl + 63) / 64;
	if (R->words == 0)
		R->words = 1;
	if ((R->vis = calloc(R->ncl ? R->ncl * R->words : 1, sizeof(uint64_t))) == NULL)
		goto fail;
	/* Work space. */
	W.ord4 = malloc((n ? n : 1) * sizeof(size_t));
	W.ord6 = malloc((n ? n : 1) * sizeof(size_t));
	W.r4 = malloc((n ? n : 1) * sizeof(struct range));
	W.r6 = malloc((n ? n : 1) * sizeof(struct range));
	W.tmp = malloc((2 * n + 1) * sizeof(struct range));
	W.srcmask = calloc(R->words, sizeof(uint64_t));
	W.named = calloc(R->words, sizeof(uint64_t));
	W.dstmask = calloc(R->words, sizeof(uint64_t));
	if (!W.ord4 || !W.ord6 || !W.r4 || !W.r6 || !W.tmp || !W.srcmask || !W.named ||
	    !W.dstmask)
		goto fail;
	for (i = 0; i < n; i++) {
		if (nodes[i].ipv4.family == AF_INET) {
			W.r4[i] = addr_range(&nodes[i].ipv4);
			W.ord4[W.n4++] = i;
		}
		if (nodes[i].ipv6.family == AF_INET6) {
			W.r6[i] = addr_range(&nodes[i].ipv6);
			W.ord6[W.n6++] = i;
		}
	}
	qsort_r(W.ord4, W.n4, sizeof(size_t), node_cmp, W.r4);
	qsort_r(W.ord6, W.n6, sizeof(size_t), node_cmp, W.r6);
	if (star_ranges(R, &W.star, &W.nstar) != 0)
		goto fail;
	for (i = 0; i < p->nrules; i++)
		if (compile_rule(R, &W, &ips, i) != 0)
			goto fail;
	/* Digests. */
	for (c = 0; c < R->ncl; c++)
		R->cls[c].thash = template_hash(R, &R->cls[c]);
	for (c = 0; c < R->ncl; c++) {
		uint64_t sum = 0;
		const uint64_t *v = &R->vis[c * R->words];

		for (w = 0; w < R->ncl; w++)
			if (bit(v, w))
				sum += R->cls[w].mhash;
		for (i = 0; i < R->cls[c].nmembers; i++) {
			size_t nd = R->cls[c].members[i];
			uint64_t s = sum;

			if (bit(v, c))
				s -= mix64(nodes[nd].id ^ 0xa5a5a5a5ULL);
			R->phash[nd] = mix64(s);
			R->fhash[nd] = R->cls[c].nt == 0 ? 0 :
			    haddr(haddr(R->cls[c].thash, &nodes[nd].ipv4), &nodes[nd].ipv6);
		}
	}
	for (i = 0; i < n; i++) {
		R->nodes[i].name = NULL;
		R->nodes[i].user = NULL;
		R->nodes[i].routes = NULL;
		R->nodes[i].nroutes = 0;
		R->nodes[i].advertised = NULL;
		R->nodes[i].nadvertised = 0;
	}
	/* Tags are still referenced by classes' representatives only during
	 * compilation; drop them too so the caller's arrays may go. */
	for (i = 0; i < n; i++) {
		R->nodes[i].tags = NULL;
		R->nodes[i].ntags = 0;
	}
	for (c = 0; c < R->ncl; c++)
		R->cls[c].user = NULL;
	free(ips.v);
	free(ips.r);
	free(W.ord4);
	free(W.ord6);
	free(W.r4);
	free(W.r6);
	free(W.tmp);
	free(W.extra);
	free(W.star);
	free(W.srcmask);
	free(W.named);
	free(W.dstmask);
	return R;
fail:
	free(ips.v);
	free(ips.r);
	free(W.ord4);
	free(W.ord6);
	free(W.r4);
	free(W.r6);
	free(W.tmp);
	free(W.extra);
	free(W.star);
	free(W.srcmask);
	free(W.named);
	free(W.dstmask);
	policy_result_free(R);
	return NULL;
}

void
policy_result_free(struct policy_result *R)
{
	size_t i, u;

	if (R == NULL)
		return;
	for (i = 0; i < R->ncl; i++) {
		free(R->cls[i].ipbits);
		free(R->cls[i].members);
		free(R->cls[i].t);
		free(R->cls[i].dpool);
	}
	free(R->cls);
	if (R->srcs != NULL && R->p != NULL)
		for (i = 0; i < R->p->nrules; i++)
			free(R->srcs[i].v);
	if (R->selfsrc != NULL && R->p != NULL) {
		for (i = 0; i < R->p->nrules; i++) {
			if (R->selfsrc[i] == NULL)
				continue;
			for (u = 0; u < R->nusers; u++)
				free(R->selfsrc[i][u].v);
			free(R->selfsrc[i]);
		}
	}
	if (R->via != NULL && R->p != NULL) {
		for (i = 0; i < R->p->nrules; i++) {
			if (R->via[i] == NULL)
				continue;
			for (u = 0; u < R->p->rules[i].ndst; u++)
				free(R->via[i][u].v);
			free(R->via[i]);
		}
	}
	free(R->via);
	free(R->srcs);
	free(R->selfsrc);
	free(R->vis);
	free(R->nodes);
	free(R->ncls);
	free(R->fhash);
	free(R->phash);
	policy_free(R->own);
	free(R);
}

bool
policy_result_can_see(const struct policy_result *R, size_t i, size_t j)
{
	if (R == NULL || i >= R->n || j >= R->n || i == j)
		return false;
	return bit(&R->vis[R->ncls[i] * R->words], R->ncls[j]);
}

static int
size_cmp(const void *a, const void *b)
{
	size_t x = *(const size_t *)a, y = *(const size_t *)b;

	return x < y ? -1 : x > y;
}

ssize_t
policy_result_peers(const struct policy_result *R, size_t i, size_t **out)
{
	const uint64_t *v;
	size_t c, k, cnt = 0, at = 0;
	size_t *o;

	*out = NULL;
	if (R == NULL || i >= R->n)
		return ERR_INVALID;
	v = &R->vis[R->ncls[i] * R->words];
	for (c = 0; c < R->ncl; c++)
		if (bit(v, c))
			cnt += R->cls[c].nmembers;
	if (cnt == 0)
		return 0;
	if ((o = malloc(cnt * sizeof(*o))) == NULL)
		return ERR_NOMEM;
	if (cnt > 64 && cnt > R->n / 64) {
		/* many peers (a server everyone sees): ascending by a bitmap
		 * of the nodes, O(n / 64 + peers) instead of a sort */
		size_t nw = (R->n + 63) / 64;
		uint64_t *b = calloc(nw, sizeof(*b));

		if (b == NULL) {
			free(o);
			return ERR_NOMEM;
		}
		for (c = 0; c < R->ncl; c++) {
			if (!bit(v, c))
				continue;
			for (k = 0; k < R->cls[c].nmembers; k++)
				setbit(b, R->cls[c].members[k]);
		}
		for (size_t w = 0; w < nw; w++)
			for (uint64_t x = b[w]; x != 0; x &= x - 1) {
				size_t m = w * 64 + (size_t)__builtin_ctzll(x);

				if (m != i)
					o[at++] = m;
			}
		free(b);
	} else {
		for (c = 0; c < R->ncl; c++) {
			if (!bit(v, c))
				continue;
			for (k = 0; k < R->cls[c].nmembers; k++)
				if (R->cls[c].members[k] != i)
					o[at++] = R->cls[c].members[k];
		}
		qsort(o, at, sizeof(*o), size_cmp);
	}
	if (at == 0) {
		free(o);
		return 0;
	}
	*out = o;
	return (ssize_t)at;
}

uint64_t
policy_result_filter_hash(const struct policy_result *R, size_t i)
{
	return R != NULL && i < R->n ? R->fhash[i] : 0;
}

uint64_t
policy_result_peers_hash(const struct policy_result *R, size_t i)
{
	return R != NULL && i < R->n ? R->phash[i] : 0;
}

uint64_t
policy_result_hash(const struct policy_result *R, size_t i)
{
	if (R == NULL || i >= R->n)
		return 0;
	return hcombine(R->fhash[i], R->phash[i]);
}

/* ---- filter JSON ---- */

static json_t *
prefix_json(const struct ip_prefix *p)
{
	char s[ADDR_STR_MAX];

	prefix_fmt(s, p);
	return json_string(s);
}

static int
add_dst(json_t *dsts, const struct ip_prefix *net, const struct dst *d)
{
	size_t k;

	for (k = 0; k < d->nports; k++) {
		json_t *o = json_pack("{s:o, s:{s:i, s:i}}", "Net", prefix_json(net), "Ports",
		    "First", (int)d->ports[k].first, "Last", (int)d->ports[k].last);

		if (o == NULL || json_array_append_new(dsts, o) != 0)
			return ERR_NOMEM;
	}
	return 0;
}

static int
add_own(json_t *dsts, const struct policy_node *n, const struct dst *d)
{
	struct ip_prefix p;
	int r;

	if (n->ipv4.family != 0) {
		p.addr = n->ipv4;
		p.bits = 32;
		if ((r = add_dst(dsts, &p, d)) != 0)
			return r;
	}
	if (n->ipv6.family != 0) {
		p.addr = n->ipv6;
		p.bits = 128;
		if ((r = add_dst(dsts, &p, d)) != 0)
			return r;
	}
	return 0;
}

static json_t *
match_json(const struct rule *ru, const struct plist *src, json_t *dsts)
{
	json_t *m = json_object(), *pr = json_array(), *ss = json_array();
	size_t k;

	if (m == NULL || pr == NULL || ss == NULL)
		goto fail;
	for (k = 0; k < ru->nprotos; k++)
		if (json_array_append_new(pr, json_integer(ru->protos[k])) != 0)
			goto fail;
	for (k = 0; k < src->n; k++)
		if (json_array_append_new(ss, prefix_json(&src->v[k])) != 0)
			goto fail;
	if (json_object_set_new(m, "IPProto", pr) != 0) {
		pr = NULL;
		goto fail;
	}
	pr = NULL;
	if (json_object_set_new(m, "Srcs", ss) != 0) {
		ss = NULL;
		goto fail;
	}
	ss = NULL;
	if (json_object_set_new(m, "Dsts", dsts) != 0)
		goto fail_nodsts;
	return m;
fail:
	json_decref(dsts);
fail_nodsts:
	json_decref(m);
	json_decref(pr);
	json_decref(ss);
	return NULL;
}

/*
 * An app grant in Tailscale's shape: the sources, and the capabilities they
 * have on this node's destinations:
 *   {"Srcs":[...],"CapGrant":[{"Dsts":["100.64.0.2/32",...],
 *     "CapMap":{"example.com/cap/x":[{...}]}}]}
 * Takes `dsts` (built as packet filter destinations; only their nets are kept).
 */
static json_t *
capgrant_json(const struct rule *ru, const struct plist *src, json_t *dsts)
{
	json_t *m = json_object(), *ss = json_array(), *nets = json_array(), *cm = json_object();
	json_t *g = NULL, *d;
	size_t k, i;

	if (m == NULL || ss == NULL || nets == NULL || cm == NULL)
		goto fail;
	for (k = 0; k < src->n; k++)
		if (json_array_append_new(ss, prefix_json(&src->v[k])) != 0)
			goto fail;
	json_array_foreach(dsts, i, d) {
		json_t *net = json_object_get(d, "Net");
		size_t q;
		bool dup = false;

		for (q = 0; q < json_array_size(nets) && !dup; q++)
			dup = json_equal(json_array_get(nets, q), net);
		if (!dup && json_array_append(nets, net) != 0)
			goto fail;
	}
	for (k = 0; k < ru->ncaps; k++) {
		json_t *v = json_loads(ru->caps[k].values, 0, NULL);

		if (v == NULL || json_object_set_new(cm, ru->caps[k].name, v) != 0)
			goto fail;
	}
	g = json_pack("{s:o, s:o}", "Dsts", nets, "CapMap", cm);
	nets = cm = NULL;
	if (g == NULL || json_object_set_new(m, "Srcs", ss) != 0) {
		ss = NULL;
		goto fail;
	}
	ss = NULL;
	if (json_object_set_new(m, "CapGrant", json_pack("[o]", g)) != 0) {
		g = NULL;
		goto fail;
	}
	json_decref(dsts);
	return m;
fail:
	json_decref(g);
	json_decref(m);
	json_decref(ss);
	json_decref(nets);
	json_decref(cm);
	json_decref(dsts);
	return NULL;
}

/*
 * A via directive for a source node: which routers carry a destination for it.
 *   {"Via":{"Dst":"10.44.0.0/16","Routers":[{"Addrs":["100.64.0.5/32",...],
 *     "Route":"10.44.0.0/16"}]}}
 * "Dst" is "autogroup:internet" for exit nodes. Packet filters ignore it (no
 * Srcs, no Dsts); the agent gives each listed router its Route and no other
 * peer any part of Dst.
 */
static json_t *
via_json(const struct policy_result *R, const struct tentry *te)
{
	const struct rule *ru = &R->p->rules[te->rule];
	const struct selector *s = &ru->dst[te->dfirst].sel;
	const struct vialist *vl = &R->via[te->rule][te->dfirst];
	json_t *routers = json_array(), *m;
	size_t k;

	if (routers == NULL)
		return NULL;
	for (k = 0; k < vl->n; k++) {
		struct ip_prefix h;
		json_t *addrs = json_array();

		if (addrs == NULL)
			goto fail;
		if (vl->v[k].a4.family != 0) {
			h.addr = vl->v[k].a4;
			h.bits = 32;
			json_array_append_new(addrs, prefix_json(&h));
		}
		if (vl->v[k].a6.family != 0) {
			h.addr = vl->v[k].a6;
			h.bits = 128;
			json_array_append_new(addrs, prefix_json(&h));
		}
		if (json_array_append_new(routers, json_pack("{s:o, s:o}", "Addrs", addrs,
		    "Route", prefix_json(&vl->v[k].route))) != 0)
			goto fail;
	}
	m = json_pack("{s:{s:o, s:o}}", "Via", "Dst", s->kind == SEL_INTERNET ?
	    json_string("autogroup:internet") : prefix_json(&s->pfx), "Routers", routers);
	return m;
fail:
	json_decref(routers);
	return NULL;
}

/*
 * autogroup:internet as destinations in an exit node's filter: the public
 * IPv4 space (0.0.0.0/0 without 0/8, 10/8, 100.64/10 (the tailnet), 127/8,
 * 169.254/16, 172.16/12, 192.168/16 and 224/3) and global unicast IPv6. A
 * LAN behind an exit node is reached through its subnet routes, not this.
 */
static const char *const internet_prefixes[] = {
	"1.0.0.0/8", "2.0.0.0/7", "4.0.0.0/6", "8.0.0.0/7", "11.0.0.0/8", "12.0.0.0/6",
	"16.0.0.0/4", "32.0.0.0/3", "64.0.0.0/3", "96.0.0.0/6", "100.0.0.0/10", "100.128.0.0/9",
	"101.0.0.0/8", "102.0.0.0/7", "104.0.0.0/5", "112.0.0.0/5", "120.0.0.0/6", "124.0.0.0/7",
	"126.0.0.0/8", "128.0.0.0/3", "160.0.0.0/5", "168.0.0.0/8", "169.0.0.0/9",
	"169.128.0.0/10", "169.192.0.0/11", "169.224.0.0/12", "169.240.0.0/13", "169.248.0.0/14",
	"169.252.0.0/15", "169.255.0.0/16", "170.0.0.0/7", "172.0.0.0/12", "172.32.0.0/11",
	"172.64.0.0/10", "172.128.0.0/9", "173.0.0.0/8", "174.0.0.0/7", "176.0.0.0/4",
	"192.0.0.0/9", "192.128.0.0/11", "192.160.0.0/13", "192.169.0.0/16", "192.170.0.0/15",
	"192.172.0.0/14", "192.176.0.0/12", "192.192.0.0/10", "193.0.0.0/8", "194.0.0.0/7",
	"196.0.0.0/6", "200.0.0.0/5", "208.0.0.0/4", "2000::/3",
};

static int
add_internet(json_t *dsts, const struct dst *d)
{
	for (size_t i = 0; i < sizeof(internet_prefixes) / sizeof(internet_prefixes[0]); i++) {
		struct ip_prefix p;
		int r;

		if (prefix_parse(internet_prefixes[i], false, &p) != 0)
			return ERR_INTERNAL;
		if ((r = add_dst(dsts, &p, d)) != 0)
			return r;
	}
	return 0;
}

json_t *
policy_result_filter(const struct policy_result *R, size_t i)
{
	const struct cls *c;
	const struct policy_node *n;
	json_t *out;
	size_t t, j;

	if (R == NULL || i >= R->n)
		return NULL;
	c = &R->cls[R->ncls[i]];
	n = &R->nodes[i];
	if ((out = json_array()) == NULL)
		return NULL;
	for (t = 0; t < c->nt; t++) {
		const struct tentry *te = &c->t[t];
		const struct rule *ru = &R->p->rules[te->rule];
		const struct plist *src;
		json_t *dsts = json_array(), *m;

		if (dsts == NULL)
			goto fail;
		if (te->kind == T_VIA) {
			json_decref(dsts);
			if ((m = via_json(R, te)) == NULL || json_array_append_new(out, m) != 0)
				goto fail;
			continue;
		}
		if (te->kind == T_SELF) {
			src = &R->selfsrc[te->rule][c->userid];
			for (j = 0; j < ru->ndst; j++)
				if (ru->dst[j].sel.kind == SEL_SELF &&
				    add_own(dsts, n, &ru->dst[j]) != 0) {
					json_decref(dsts);
					goto fail;
				}
		} else {
			src = &R->srcs[te->rule];
			for (j = 0; j < te->dcount; j++) {
				const struct dst *d = &ru->dst[c->dpool[te->dfirst + j]];
				int r;

				if (d->sel.kind == SEL_ALL) {
					struct ip_prefix z4 = { .addr = { .family = AF_INET }, .bits = 0 };
					struct ip_prefix z6 = { .addr = { .family = AF_INET6 }, .bits = 0 };

					r = add_dst(dsts, &z4, d);
					if (r == 0)
						r = add_dst(dsts, &z6, d);
				} else if (d->sel.kind == SEL_PREFIX) {
					r = add_dst(dsts, &d->sel.pfx, d);
				} else if (d->sel.kind == SEL_INTERNET) {
					r = add_internet(dsts, d);
				} else {
					r = add_own(dsts, n, d);
				}
				if (r != 0) {
					json_decref(dsts);
					goto fail;
				}
			}
		}
		if (ru->nprotos == 0)
			m = capgrant_json(ru, src, dsts);
		else
			m = match_json(ru, src, dsts);
		if (m == NULL || json_array_append_new(out, m) != 0)
			goto fail;
	}
	return out;
fail:
	json_decref(out);
	return NULL;
}
