/* SPDX-License-Identifier: MIT */
/*
 * Inbound packet filter: the netmap's filter rules compiled into flat
 * arrays of 128-bit prefixes and port ranges, a strict IPv4/IPv6 header
 * parser, and a bounded connection-tracking table so replies to flows this
 * node opened pass whatever the rules say.
 *
 * Verdicts, in order: a packet that cannot be parsed (short, bad version or
 * header length, lengths that disagree, truncated transport header, a
 * non-first fragment of a protocol whose ports or ICMP type we would need)
 * is DROP_MALFORMED, unless the first fragment of the same packet (source,
 * destination, protocol, identification; the last 64 such packets are
 * remembered for 30 s in the conntrack) passed, in which case it gets that fragment's verdict; one a
 * rule allows is ACCEPT; a TCP/UDP/SCTP reply of a
 * tracked flow, an ICMP echo reply to a tracked echo request, or an ICMP
 * error about a tracked flow is ACCEPT_ESTABLISHED; anything else is
 * DROP_POLICY. Rules match protocol, source prefix, destination prefix and,
 * for TCP, UDP and SCTP only, the destination port.
 *
 * Conntrack: a hash table (SipHash with a per-table random key) over a
 * fixed array of entries, with an LRU list; a full table evicts the least
 * recently used flow; entries expire after an idle time per protocol and are
 * refreshed by outbound packets and by the replies they let in. One mutex.
 */
#include "client-agent/filter.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <jansson.h>
#include <sodium.h>

#include "common/addr.h"

enum {
	FILTER_MAX_JSON = 16 << 20,
	FILTER_MAX_RULES = 100000,
	FILTER_MAX_ITEMS = 1000000,	/* Srcs + Dsts over all rules */
	MAX_EXT_HEADERS = 8,
};

enum { P_ICMP = 1, P_TCP = 6, P_UDP = 17, P_ICMPV6 = 58, P_SCTP = 132,
       P_HOPOPT = 0, P_ROUTING = 43, P_FRAGMENT = 44, P_AH = 51, P_DSTOPTS = 60 };

/* An address or prefix in 128 bits; IPv4 lives in the low 32 bits of lo. */
struct net {
	uint64_t hi, lo, mhi, mlo;
	int family;
};

struct dst {
	struct net net;
	uint16_t first, last;
};

struct rule {
	uint8_t protos[32];		/* bitmap */
	/* srcs[src0 .. src0+nhost) are single addresses, sorted (binary
	 * search); srcs[src0+nhost .. src0+nsrc) are wider prefixes. */
	size_t src0, nsrc, nhost, dst0, ndst;
};

struct wm_filter {
	struct rule *rules;
	size_t nrules;
	struct net *srcs;
	size_t nsrcs, capsrcs;
	struct dst *dsts;
	size_t ndsts, capdsts;
};

/* ---- addresses ---- */

static uint64_t
be64(const uint8_t *p)
{
	uint64_t v = 0;
	int i;

	for (i = 0; i < 8; i++)
		v = v << 8 | p[i];
	return v;
}

static uint16_t
be16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static uint64_t
topmask(int bits)		/* the top `bits` (0..64) of 64 */
{
	return bits <= 0 ? 0 : bits >= 64 ? UINT64_MAX : UINT64_MAX << (64 - bits);
}

static void
net_from_prefix(struct net *n, const struct ip_prefix *p)
{
	memset(n, 0, sizeof(*n));
	n->family = p->addr.family;
	if (p->addr.family == AF_INET) {
		n->lo = (uint64_t)p->addr.b[0] << 24 | (uint64_t)p->addr.b[1] << 16 |
			(uint64_t)p->addr.b[2] << 8 | p->addr.b[3];
		n->mlo = topmask(p->bits) >> 32;
	} else {
		n->hi = be64(p->addr.b);
		n->lo = be64(p->addr.b + 8);
		n->mhi = topmask(p->bits);
		n->mlo = topmask(p->bits - 64);
	}
	n->hi &= n->mhi;
	n->lo &= n->mlo;
}

static bool
net_contains(const struct net *n, int family, uint64_t hi, uint64_t lo)
{
	return n->family == family && (hi & n->mhi) == n->hi && (lo & n->mlo) == n->lo;
}

/* ---- parsing the rules ---- */

static int
fail(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int
fail(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (err != NULL && errlen > 0) {
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return ERR_INVALID;
}

static int
grow(void **arr, size_t *cap, size_t need, size_t elem)
{
	size_t ncap;
	void *p;

	if (need <= *cap)
		return 0;
	ncap = *cap ? *cap * 2 : 16;
	while (ncap < need)
		ncap *= 2;
	if ((p = realloc(*arr, ncap * elem)) == NULL)
		return ERR_NOMEM;
	*arr = p;
	*cap = ncap;
	return 0;
}

static int
add_src(struct wm_filter *f, const struct net *n)
{
	if (f->nsrcs + f->ndsts >= FILTER_MAX_ITEMS)
		return ERR_TOO_LARGE;
	if (grow((void **)&f->srcs, &f->capsrcs, f->nsrcs + 1, sizeof(*f->srcs)) != 0)
		return ERR_NOMEM;
	f->srcs[f->nsrcs++] = *n;
	return 0;
}

static int
add_dst(struct wm_filter *f, const struct net *n, uint16_t first, uint16_t last)
{
	if (f->nsrcs + f->ndsts >= FILTER_MAX_ITEMS)
		return ERR_TOO_LARGE;
	if (grow((void **)&f->dsts, &f->capdsts, f->ndsts + 1, sizeof(*f->dsts)) != 0)
		return ERR_NOMEM;
	f->dsts[f->ndsts].net = *n;
	f->dsts[f->ndsts].first = first;
	f->dsts[f->ndsts].last = last;
	f->ndsts++;
	return 0;
}

/* "*" is both families' whole space; otherwise an address or a prefix. */
static int
parse_net(const char *s, struct net out[2], size_t *n)
{
	struct ip_prefix p;

	if (strcmp(s, "*") == 0) {
		memset(out, 0, 2 * sizeof(out[0]));
		out[0].family = AF_INET;
		out[1].family = AF_INET6;
		*n = 2;
		return 0;
	}
	if (prefix_parse(s, true, &p) != 0)
		return ERR_INVALID;
	net_from_prefix(&out[0], &p);
	*n = 1;
	return 0;
}

static bool
is_host(const struct net *n)
{
	return n->family == AF_INET ? n->mlo == 0xffffffffu
				    : n->mhi == UINT64_MAX && n->mlo == UINT64_MAX;
}

/* Orders addresses by family, then value (hosts only). */
static int
cmp_addr(int fa, uint64_t ha, uint64_t la, int fb, uint64_t hb, uint64_t lb)
{
	if (fa != fb)
		return fa < fb ? -1 : 1;
	if (ha != hb)
		return ha < hb ? -1 : 1;
	if (la != lb)
		return la < lb ? -1 : 1;
	return 0;
}

static int
cmp_host(const void *a, const void *b)
{
	const struct net *x = a, *y = b;

	return cmp_addr(x->family, x->hi, x->lo, y->family, y->hi, y->lo);
}

/* Moves the single addresses to the front, sorted; *nhost says how many. */
static void
sort_srcs(struct net *v, size_t n, size_t *nhost)
{
	size_t i, h = 0;

	for (i = 0; i < n; i++)
		if (is_host(&v[i])) {
			struct net t = v[h];

			v[h++] = v[i];
			v[i] = t;
		}
	if (h > 1)
		qsort(v, h, sizeof(v[0]), cmp_host);
	*nhost = h;
}

static json_t *
get2(json_t *o, const char *a, const char *b)
{
	json_t *v = json_object_get(o, a);

	return v != NULL ? v : json_object_get(o, b);
}

static int
parse_port(json_t *v, const char *what, size_t ri, uint16_t *out, char *err, size_t errlen)
{
	json_int_t x;

	if (!json_is_integer(v))
		return fail(err, errlen, "rule %zu: Ports.%s must be an integer", ri, what);
	x = json_integer_value(v);
	if (x < 0 || x > 65535)
		return fail(err, errlen, "rule %zu: Ports.%s out of range", ri, what);
	*out = (uint16_t)x;
	return 0;
}

static int
parse_rule(struct wm_filter *f, json_t *jr, size_t ri, char *err, size_t errlen)
{
	struct rule *r = &f->rules[f->nrules];
	json_t *protos, *srcs, *dsts, *v;
	struct net nets[2];
	size_t i, k, nn;
	int rc;

	memset(r, 0, sizeof(*r));
	if (!json_is_object(jr))
		return fail(err, errlen, "rule %zu: not an object", ri);
	protos = json_object_get(jr, "IPProto");
	if (protos == NULL || json_is_null(protos) ||
	    (json_is_array(protos) && json_array_size(protos) == 0)) {
		r->protos[P_TCP / 8] |= 1u << (P_TCP % 8);
		r->protos[P_UDP / 8] |= 1u << (P_UDP % 8);
		r->protos[P_ICMP / 8] |= 1u << (P_ICMP % 8);
		r->protos[P_ICMPV6 / 8] |= 1u << (P_ICMPV6 % 8);
	} else if (json_is_array(protos)) {
		json_array_foreach(protos, i, v) {
			json_int_t x;

			if (!json_is_integer(v) || (x = json_integer_value(v)) < 0 || x > 255)
				return fail(err, errlen, "rule %zu: IPProto[%zu] is not 0..255", ri, i);
			r->protos[x / 8] |= (uint8_t)(1u << (x % 8));
		}
	} else {
		return fail(err, errlen, "rule %zu: IPProto must be an array", ri);
	}

	srcs = get2(jr, "Srcs", "SrcIPs");
	if (srcs != NULL && !json_is_null(srcs) && !json_is_array(srcs))
		return fail(err, errlen, "rule %zu: Srcs must be an array", ri);
	r->src0 = f->nsrcs;
	json_array_foreach(srcs, i, v) {
		if (!json_is_string(v) || parse_net(json_string_value(v), nets, &nn) != 0)
			return fail(err, errlen, "rule %zu: Srcs[%zu] is not an address, prefix or \"*\"",
				    ri, i);
		for (k = 0; k < nn; k++)
			if ((rc = add_src(f, &nets[k])) != 0)
				return rc == ERR_TOO_LARGE ? fail(err, errlen, "too many addresses") : rc;
	}
	r->nsrc = f->nsrcs - r->src0;
	if (r->nsrc > 0)
		sort_srcs(f->srcs + r->src0, r->nsrc, &r->nhost);

	dsts = get2(jr, "Dsts", "DstPorts");
	if (dsts != NULL && !json_is_null(dsts) && !json_is_array(dsts))
		return fail(err, errlen, "rule %zu: Dsts must be an array", ri);
	r->dst0 = f->ndsts;
	json_array_foreach(dsts, i, v) {
		json_t *net = get2(v, "Net", "IP"), *ports = json_object_get(v, "Ports");
		uint16_t first = 0, last = 65535;

		if (!json_is_object(v))
			return fail(err, errlen, "rule %zu: Dsts[%zu] is not an object", ri, i);
		if (!json_is_string(net) || parse_net(json_string_value(net), nets, &nn) != 0)
			return fail(err, errlen, "rule %zu: Dsts[%zu].Net is not an address, prefix or \"*\"",
				    ri, i);
		if (ports != NULL && !json_is_null(ports)) {
			if (!json_is_object(ports))
				return fail(err, errlen, "rule %zu: Dsts[%zu].Ports must be an object", ri, i);
			if ((rc = parse_port(json_object_get(ports, "First"), "First", ri, &first,
					     err, errlen)) != 0 ||
			    (rc = parse_port(json_object_get(ports, "Last"), "Last", ri, &last,
					     err, errlen)) != 0)
				return rc;
			if (first > last)
				return fail(err, errlen, "rule %zu: Dsts[%zu].Ports First > Last", ri, i);
		}
		for (k = 0; k < nn; k++)
			if ((rc = add_dst(f, &nets[k], first, last)) != 0)
				return rc == ERR_TOO_LARGE ? fail(err, errlen, "too many addresses") : rc;
	}
	r->ndst = f->ndsts - r->dst0;
	f->nrules++;
	return 0;
}

void
filter_free(struct wm_filter *f)
{
	if (f == NULL)
		return;
	free(f->rules);
	free(f->srcs);
	free(f->dsts);
	free(f);
}

int
filter_parse(const char *json, size_t len, struct wm_filter **out,
	     char *err, size_t errlen)
{
	struct wm_filter *f = NULL;
	json_error_t jerr;
	json_t *root = NULL, *jr;
	size_t i;
	int r;

	*out = NULL;
	if (err != NULL && errlen > 0)
		err[0] = '\0';
	if (json == NULL && len > 0)
		return fail(err, errlen, "no input");
	if (len > FILTER_MAX_JSON)
		return fail(err, errlen, "filter is larger than %d bytes", FILTER_MAX_JSON);
	if ((root = json_loadb(json != NULL ? json : "", len, JSON_REJECT_DUPLICATES, &jerr)) == NULL)
		return fail(err, errlen, "JSON: %s at line %d column %d", jerr.text, jerr.line,
			    jerr.column);
	r = ERR_NOMEM;
	if (!json_is_array(root)) {
		r = fail(err, errlen, "filter must be a JSON array of rules");
		goto out;
	}
	if (json_array_size(root) > FILTER_MAX_RULES) {
		r = fail(err, errlen, "more than %d rules", FILTER_MAX_RULES);
		goto out;
	}
	if ((f = calloc(1, sizeof(*f))) == NULL)
		goto out;
	if (json_array_size(root) > 0 &&
	    (f->rules = calloc(json_array_size(root), sizeof(*f->rules))) == NULL)
		goto out;
	json_array_foreach(root, i, jr)
		/* App grants (CapGrant) and via directives (Via) ride in the filter
		 * but admit no packets. */
		if (json_is_object(jr) && (json_object_get(jr, "CapGrant") != NULL ||
		    json_object_get(jr, "Via") != NULL))
			continue;
		else if ((r = parse_rule(f, jr, i, err, errlen)) != 0)
			goto out;
	*out = f;
	f = NULL;
	r = 0;
out:
	filter_free(f);
	json_decref(root);
	return r;
}

/* ---- packets ---- */

struct pkt {
	int family;
	uint8_t proto;
	bool fragment;			/* any fragment, the first included */
	bool nonfirst_frag;		/* no transport header in this packet */
	bool unclassified;		/* non-first fragment of TCP/UDP/SCTP/ICMP */
	uint32_t frag_id;		/* IPv4 identification or IPv6 fragment id */
	bool has_ports;			/* TCP, UDP, SCTP */
	bool is_icmp;			/* ICMP for v4, ICMPv6 for v6 */
	const uint8_t *src, *dst;	/* 4 or 16 bytes */
	uint16_t sport, dport;
	uint8_t icmp_type;
	uint16_t icmp_id;
	const uint8_t *l4;
	size_t l4len;
};

static bool
ported(uint8_t proto)
{
	return proto == P_TCP || proto == P_UDP || proto == P_SCTP;
}

/*
 * Parses the IP header (and IPv6 extension headers) and, when `transport`,
 * the transport header. `inner` relaxes the length checks for a packet quoted
 * inside an ICMP error (truncated after 8 bytes of transport header).
 */
static int
parse_ip(const uint8_t *ip, size_t len, bool inner, struct pkt *k)
{
	size_t off;

	memset(k, 0, sizeof(*k));
	if (ip == NULL || len < 1)
		return -1;
	if (ip[0] >> 4 == 4) {
		size_t ihl, tot;
		uint16_t frag;

		if (len < 20)
			return -1;
		ihl = (size_t)(ip[0] & 15) * 4;
		tot = be16(ip + 2);
		if (ihl < 20 || ihl > len || tot < ihl)
			return -1;
		if (tot > len) {
			if (!inner)
				return -1;
			tot = len;
		}
		frag = be16(ip + 6);
		k->family = AF_INET;
		k->proto = ip[9];
		k->nonfirst_frag = (frag & 0x1fff) != 0;
		k->fragment = (frag & 0x3fff) != 0;	/* MF or an offset */
		k->frag_id = be16(ip + 4);
		k->src = ip + 12;
		k->dst = ip + 16;
		off = ihl;
		len = tot;
	} else if (ip[0] >> 4 == 6) {
		size_t tot;
		uint8_t nh;
		int n;

		if (len < 40)
			return -1;
		tot = 40 + (size_t)be16(ip + 4);
		if (tot > len) {
			if (!inner)
				return -1;
			tot = len;
		}
		len = tot;
		k->family = AF_INET6;
		k->src = ip + 8;
		k->dst = ip + 24;
		nh = ip[6];
		off = 40;
		for (n = 0;; n++) {
			size_t hl;

			if (nh != P_HOPOPT && nh != P_ROUTING && nh != P_DSTOPTS &&
			    nh != P_FRAGMENT && nh != P_AH)
				break;
			if (n == MAX_EXT_HEADERS || off + 8 > len)
				return -1;
			if (nh == P_FRAGMENT) {
				hl = 8;
				k->nonfirst_frag = (be16(ip + off + 2) & 0xfff8) != 0;
				k->fragment = true;
				k->frag_id = (uint32_t)be16(ip + off + 4) << 16 | be16(ip + off + 6);
			} else if (nh == P_AH) {
				hl = ((size_t)ip[off + 1] + 2) * 4;
			} else {
				hl = ((size_t)ip[off + 1] + 1) * 8;
			}
			if (hl > len - off)
				return -1;
			nh = ip[off];
			off += hl;
			if (k->nonfirst_frag)
				break;
		}
		k->proto = nh;
	} else {
		return -1;
	}
	k->l4 = ip + off;
	k->l4len = len - off;
	k->has_ports = ported(k->proto);
	k->is_icmp = (k->family == AF_INET && k->proto == P_ICMP) ||
		     (k->family == AF_INET6 && k->proto == P_ICMPV6);
	if (k->nonfirst_frag) {
		/* Ports and ICMP type are in the first fragment only: such a
		 * fragment passes only as part of a first fragment that did. */
		k->unclassified = k->has_ports || k->is_icmp;
		return inner && k->unclassified ? -1 : 0;
	}
	if (k->has_ports) {
		size_t need = k->proto == P_TCP ? 20 : k->proto == P_UDP ? 8 : 12;

		if (inner)
			need = 4;
		if (k->l4len < need)
			return -1;
		if (!inner && k->proto == P_TCP) {
			size_t doff = (size_t)(k->l4[12] >> 4) * 4;

			if (doff < 20 || doff > k->l4len)
				return -1;
		}
		k->sport = be16(k->l4);
		k->dport = be16(k->l4 + 2);
	} else if (k->is_icmp) {
		if (k->l4len < (inner ? 6u : 8u))
			return -1;
		k->icmp_type = k->l4[0];
		k->icmp_id = be16(k->l4 + 4);
	}
	return 0;
}

static void
addr128(const struct pkt *k, const uint8_t *a, uint64_t *hi, uint64_t *lo)
{
	if (k->family == AF_INET) {
		*hi = 0;
		*lo = (uint64_t)a[0] << 24 | (uint64_t)a[1] << 16 | (uint64_t)a[2] << 8 | a[3];
	} else {
		*hi = be64(a);
		*lo = be64(a + 8);
	}
}

static bool
src_allowed(const struct wm_filter *f, const struct rule *r, int family, uint64_t hi, uint64_t lo)
{
	const struct net *v;
	size_t lo_i = 0, hi_i = r->nhost, j;

	if (r->nsrc == 0)
		return false;
	v = f->srcs + r->src0;
	while (lo_i < hi_i) {
		size_t mid = lo_i + (hi_i - lo_i) / 2;
		int c = cmp_addr(v[mid].family, v[mid].hi, v[mid].lo, family, hi, lo);

		if (c == 0)
			return true;
		if (c < 0)
			lo_i = mid + 1;
		else
			hi_i = mid;
	}
	for (j = r->nhost; j < r->nsrc; j++)
		if (net_contains(&v[j], family, hi, lo))
			return true;
	return false;
}

static bool
rules_allow(const struct wm_filter *f, const struct pkt *k)
{
	uint64_t shi, slo, dhi, dlo;
	size_t i, j;

	addr128(k, k->src, &shi, &slo);
	addr128(k, k->dst, &dhi, &dlo);
	for (i = 0; i < f->nrules; i++) {
		const struct rule *r = &f->rules[i];
		bool dst_ok = false;

		if (!(r->protos[k->proto / 8] & (1u << (k->proto % 8))))
			continue;
		/* Destinations first: few (this node's addresses), and most
		 * rules fail there. */
		for (j = 0; j < r->ndst && !dst_ok; j++) {
			const struct dst *d = &f->dsts[r->dst0 + j];

			dst_ok = net_contains(&d->net, k->family, dhi, dlo) &&
				 (!k->has_ports || (k->dport >= d->first && k->dport <= d->last));
		}
		if (dst_ok && src_allowed(f, r, k->family, shi, slo))
			return true;
	}
	return false;
}

/* ---- conntrack ---- */

enum { KEY_LEN_CT = 40, NIL = UINT32_MAX,
       FRAG_SLOTS = 64,			/* packets whose later fragments may pass */
       FRAG_IDLE_MS = 30 * 1000 };		/* reassembly wait (RFC 791: 15 s and up) */

struct ct_key { uint8_t b[KEY_LEN_CT]; };

/* A first fragment that passed: its later fragments get the same verdict.
 * Kept apart from the flows (a small ring, oldest replaced) so fragments can
 * never push flows out of the table. */
struct frag {
	struct ct_key key;
	int64_t expire_ms;
	uint8_t verdict;
	bool used;
};

struct ct_entry {
	struct ct_key key;
	int64_t expire_ms;
	uint32_t hnext;			/* hash chain, or free list */
	uint32_t prev, next;		/* LRU list, head = most recent */
};

struct conntrack {
	pthread_mutex_t mu;
	struct ct_entry *e;
	uint32_t *buckets;
	uint32_t nbuckets, max, count;
	struct frag frags[FRAG_SLOTS];	/* first fragments that passed */
	uint32_t free_head, lru_head, lru_tail;
	uint8_t hkey[crypto_shorthash_KEYBYTES];
	struct filter_stats stats;
};

static pthread_once_t sodium_once = PTHREAD_ONCE_INIT;
static int sodium_ok;

static void
init_sodium(void)
{
	sodium_ok = sodium_init() >= 0;
}

struct conntrack *
conntrack_new(size_t max_entries)
{
	struct conntrack *ct;
	uint32_t i;

	if (max_entries == 0)
		max_entries = CONNTRACK_DEFAULT_MAX;
	if (max_entries > (1u << 24))
		return NULL;
	if (pthread_once(&sodium_once, init_sodium) != 0 || !sodium_ok)
		return NULL;
	if ((ct = calloc(1, sizeof(*ct))) == NULL)
		return NULL;
	ct->max = (uint32_t)max_entries;
	for (ct->nbuckets = 16; ct->nbuckets < ct->max; ct->nbuckets *= 2)
		;
	ct->e = calloc(ct->max, sizeof(*ct->e));
	ct->buckets = malloc(ct->nbuckets * sizeof(*ct->buckets));
	if (ct->e == NULL || ct->buckets == NULL || pthread_mutex_init(&ct->mu, NULL) != 0) {
		free(ct->e);
		free(ct->buckets);
		free(ct);
		return NULL;
	}
	for (i = 0; i < ct->nbuckets; i++)
		ct->buckets[i] = NIL;
	for (i = 0; i < ct->max; i++)
		ct->e[i].hnext = i + 1 < ct->max ? i + 1 : NIL;
	ct->free_head = 0;
	ct->lru_head = ct->lru_tail = NIL;
	randombytes_buf(ct->hkey, sizeof(ct->hkey));
	return ct;
}

void
conntrack_free(struct conntrack *ct)
{
	if (ct == NULL)
		return;
	pthread_mutex_destroy(&ct->mu);
	free(ct->e);
	free(ct->buckets);
	free(ct);
}

static uint32_t
bucket_of(const struct conntrack *ct, const struct ct_key *k)
{
	uint8_t h[crypto_shorthash_BYTES];
	uint32_t v;

	crypto_shorthash(h, k->b, sizeof(k->b), ct->hkey);
	memcpy(&v, h, sizeof(v));
	return v & (ct->nbuckets - 1);
}

static void
lru_unlink(struct conntrack *ct, uint32_t i)
{
	struct ct_entry *e = &ct->e[i];

	if (e->prev != NIL)
		ct->e[e->prev].next = e->next;
	else
		ct->lru_head = e->next;
	if (e->next != NIL)
		ct->e[e->next].prev = e->prev;
	else
		ct->lru_tail = e->prev;
	e->prev = e->next = NIL;
}

static void
lru_push(struct conntrack *ct, uint32_t i)
{
	struct ct_entry *e = &ct->e[i];

	e->prev = NIL;
	e->next = ct->lru_head;
	if (ct->lru_head != NIL)
		ct->e[ct->lru_head].prev = i;
	ct->lru_head = i;
	if (ct->lru_tail == NIL)
		ct->lru_tail = i;
}

static void
remove_entry(struct conntrack *ct, uint32_t i)
{
	uint32_t *pp = &ct->buckets[bucket_of(ct, &ct->e[i].key)];

	while (*pp != NIL && *pp != i)
		pp = &ct->e[*pp].hnext;
	if (*pp == i)
		*pp = ct->e[i].hnext;
	lru_unlink(ct, i);
	ct->e[i].hnext = ct->free_head;
	ct->free_head = i;
	ct->count--;
}

static uint32_t
lookup(struct conntrack *ct, const struct ct_key *k, int64_t now)
{
	uint32_t i = ct->buckets[bucket_of(ct, k)];

	for (; i != NIL; i = ct->e[i].hnext) {
		if (memcmp(ct->e[i].key.b, k->b, sizeof(k->b)) != 0)
			continue;
		if (now >= ct->e[i].expire_ms) {
			remove_entry(ct, i);
			return NIL;
		}
		return i;
	}
	return NIL;
}

static int64_t
idle_ms(uint8_t proto)
{
	if (proto == P_TCP || proto == P_SCTP)
		return CONNTRACK_TCP_IDLE_MS;
	if (proto == P_UDP)
		return CONNTRACK_UDP_IDLE_MS;
	return CONNTRACK_ICMP_IDLE_MS;
}

static void
refresh(struct conntrack *ct, uint32_t i, uint8_t proto, int64_t now)
{
	ct->e[i].expire_ms = now + idle_ms(proto);
	lru_unlink(ct, i);
	lru_push(ct, i);
}

static void
insert(struct conntrack *ct, const struct ct_key *k, uint8_t proto, int64_t now)
{
	uint32_t i = lookup(ct, k, now), b;

	if (i != NIL) {
		refresh(ct, i, proto, now);
		return;
	}
	if (ct->free_head == NIL)
		remove_entry(ct, ct->lru_tail);
	i = ct->free_head;
	ct->free_head = ct->e[i].hnext;
	ct->e[i].key = *k;
	b = bucket_of(ct, k);
	ct->e[i].hnext = ct->buckets[b];
	ct->buckets[b] = i;
	ct->e[i].prev = ct->e[i].next = NIL;
	lru_push(ct, i);
	ct->count++;
	ct->e[i].expire_ms = now + idle_ms(proto);
}

/* The flow key from this node's side: local address and port first. */
static void
make_key(struct ct_key *key, int family, uint8_t proto, const uint8_t *local,
	 const uint8_t *remote, uint16_t lport, uint16_t rport)
{
	size_t alen = family == AF_INET ? 4 : 16;

	memset(key, 0, sizeof(*key));
	key->b[0] = family == AF_INET ? 4 : 6;
	key->b[1] = proto;
	key->b[2] = (uint8_t)(lport >> 8);
	key->b[3] = (uint8_t)lport;
	key->b[4] = (uint8_t)(rport >> 8);
	key->b[5] = (uint8_t)rport;
	memcpy(key->b + 8, local, alen);
	memcpy(key->b + 24, remote, alen);
}

static bool
is_echo_request(const struct pkt *k)
{
	return k->family == AF_INET ? k->icmp_type == 8 : k->icmp_type == 128;
}

static bool
is_echo_reply(const struct pkt *k)
{
	return k->family == AF_INET ? k->icmp_type == 0 : k->icmp_type == 129;
}

static bool
is_icmp_error(const struct pkt *k)
{
	if (k->family == AF_INET)
		return k->icmp_type == 3 || k->icmp_type == 11 || k->icmp_type == 12;
	return k->icmp_type >= 1 && k->icmp_type <= 4;
}

/* The key an outbound packet k creates; false if it creates none. */
static bool
outbound_key(const struct pkt *k, struct ct_key *key)
{
	if (k->nonfirst_frag)
		return false;
	if (k->has_ports) {
		make_key(key, k->family, k->proto, k->src, k->dst, k->sport, k->dport);
		return true;
	}
	if (k->is_icmp && is_echo_request(k)) {
		make_key(key, k->family, k->proto, k->src, k->dst, k->icmp_id, 0);
		return true;
	}
	return false;
}

void
conntrack_note_outbound(struct conntrack *ct, const uint8_t *ip, size_t len, int64_t now_ms)
{
	struct ct_key key;
	struct pkt k;

	if (ct == NULL || parse_ip(ip, len, false, &k) != 0 || !outbound_key(&k, &key))
		return;
	pthread_mutex_lock(&ct->mu);
	insert(ct, &key, k.proto, now_ms);
	pthread_mutex_unlock(&ct->mu);
}

/* Whether inbound k belongs to a flow this node opened; refreshes it. */
static bool
established(struct conntrack *ct, const struct pkt *k, int64_t now)
{
	struct ct_key key;
	struct pkt in;
	uint32_t i;
	uint8_t proto = k->proto;

	if (k->nonfirst_frag)
		return false;
	if (k->has_ports) {
		make_key(&key, k->family, k->proto, k->dst, k->src, k->dport, k->sport);
	} else if (k->is_icmp && is_echo_reply(k)) {
		make_key(&key, k->family, k->proto, k->dst, k->src, k->icmp_id, 0);
	} else if (k->is_icmp && is_icmp_error(k)) {
		/* The quoted packet is one this node sent: its source is us. */
		if (parse_ip(k->l4 + 8, k->l4len - 8, true, &in) != 0 || in.family != k->family ||
		    memcmp(in.src, k->dst, k->family == AF_INET ? 4 : 16) != 0 ||
		    !outbound_key(&in, &key))
			return false;
		proto = in.proto;
	} else {
		return false;
	}
	pthread_mutex_lock(&ct->mu);
	if ((i = lookup(ct, &key, now)) != NIL)
		refresh(ct, i, proto, now);
	pthread_mutex_unlock(&ct->mu);
	return i != NIL;
}

static enum filter_verdict
count(struct conntrack *ct, enum filter_verdict v)
{
	if (ct == NULL)
		return v;
	pthread_mutex_lock(&ct->mu);
	switch (v) {
	case FILTER_ACCEPT:
		ct->stats.accepted++;
		break;
	case FILTER_ACCEPT_ESTABLISHED:
		ct->stats.accepted_established++;
		break;
	case FILTER_DROP_POLICY:
		ct->stats.dropped_policy++;
		break;
	case FILTER_DROP_MALFORMED:
		ct->stats.dropped_malformed++;
		break;
	}
	pthread_mutex_unlock(&ct->mu);
	return v;
}

/* Fragments of one packet: source, destination, protocol, identification. */
static void
frag_key(struct ct_key *key, const struct pkt *k)
{
	make_key(key, k->family, k->proto, k->dst, k->src, (uint16_t)(k->frag_id >> 16),
		 (uint16_t)k->frag_id);
}

/* The live slot holding key, or NULL (mu held). */
static struct frag *
frag_find(struct conntrack *ct, const struct ct_key *key, int64_t now)
{
	size_t i;

	for (i = 0; i < FRAG_SLOTS; i++)
		if (ct->frags[i].used && now < ct->frags[i].expire_ms &&
		    memcmp(ct->frags[i].key.b, key->b, sizeof(key->b)) == 0)
			return &ct->frags[i];
	return NULL;
}

/* The verdict of the first fragment of k's packet, or DROP_MALFORMED. */
static enum filter_verdict
later_fragment(struct conntrack *ct, const struct pkt *k, int64_t now)
{
	enum filter_verdict v = FILTER_DROP_MALFORMED;
	struct ct_key key;
	struct frag *fr;

	if (ct == NULL)
		return v;
	frag_key(&key, k);
	pthread_mutex_lock(&ct->mu);
	if ((fr = frag_find(ct, &key, now)) != NULL)
		v = (enum filter_verdict)fr->verdict;
	pthread_mutex_unlock(&ct->mu);
	return v;
}

static enum filter_verdict
first_fragment(struct conntrack *ct, const struct pkt *k, enum filter_verdict v, int64_t now)
{
	struct ct_key key;
	struct frag *fr;

	if (ct == NULL || !k->fragment || k->nonfirst_frag || !(k->has_ports || k->is_icmp))
		return v;
	frag_key(&key, k);
	pthread_mutex_lock(&ct->mu);
	if ((fr = frag_find(ct, &key, now)) == NULL) {
		size_t i;

		/* A free or expired slot, else the one closest to expiry. */
		fr = &ct->frags[0];
		for (i = 0; i < FRAG_SLOTS; i++) {
			struct frag *c = &ct->frags[i];

			if (!c->used || now >= c->expire_ms) {
				fr = c;
				break;
			}
			if (c->expire_ms < fr->expire_ms)
				fr = c;
		}
		fr->key = key;
		fr->used = true;
	}
	fr->expire_ms = now + FRAG_IDLE_MS;
	fr->verdict = (uint8_t)v;
	pthread_mutex_unlock(&ct->mu);
	return v;
}

enum filter_verdict
filter_check_inbound(const struct wm_filter *f, struct conntrack *ct,
		     const uint8_t *ip, size_t len, int64_t now_ms)
{
	struct pkt k;

	if (parse_ip(ip, len, false, &k) != 0)
		return count(ct, FILTER_DROP_MALFORMED);
	if (f == NULL)
		return count(ct, FILTER_ACCEPT);
	if (k.unclassified)
		return count(ct, later_fragment(ct, &k, now_ms));
	if (rules_allow(f, &k))
		return count(ct, first_fragment(ct, &k, FILTER_ACCEPT, now_ms));
	if (ct != NULL && established(ct, &k, now_ms))
		return count(ct, first_fragment(ct, &k, FILTER_ACCEPT_ESTABLISHED, now_ms));
	return count(ct, FILTER_DROP_POLICY);
}

void
conntrack_stats(const struct conntrack *ct, struct filter_stats *out)
{
	struct conntrack *m = (struct conntrack *)ct;	/* the lock is not part of the value */

	memset(out, 0, sizeof(*out));
	if (ct == NULL)
		return;
	pthread_mutex_lock(&m->mu);
	*out = m->stats;
	pthread_mutex_unlock(&m->mu);
}

size_t
conntrack_count(const struct conntrack *ct)
{
	struct conntrack *m = (struct conntrack *)ct;
	size_t n;

	if (ct == NULL)
		return 0;
	pthread_mutex_lock(&m->mu);
	n = m->count;
	pthread_mutex_unlock(&m->mu);
	return n;
}

const char *
filter_verdict_str(enum filter_verdict v)
{
	switch (v) {
	case FILTER_ACCEPT:
		return "ACCEPT";
	case FILTER_ACCEPT_ESTABLISHED:
		return "ACCEPT_ESTABLISHED";
	case FILTER_DROP_POLICY:
		return "DROP_POLICY";
	case FILTER_DROP_MALFORMED:
		return "DROP_MALFORMED";
	}
	return "?";
}
