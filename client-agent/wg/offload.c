// SPDX-License-Identifier: MIT
/*
 * TSO splitting, checksum completion and TCP GRO for a TUN device with
 * IFF_VNET_HDR. The kernel trusts what we write back, so every offset read
 * from a packet or a vnet header is checked against the packet's length
 * before it is used; anything unexpected is passed through unmerged (GRO)
 * or refused (TSO).
 */
#include <string.h>

#include "client-agent/wg/offload.h"

enum {
	TCP_FIN = 0x01,
	TCP_SYN = 0x02,
	TCP_RST = 0x04,
	TCP_PSH = 0x08,
	TCP_ACK = 0x10,
	TCP_CWR = 0x80,
	IPPROTO_TCP_ = 6,
	IPV4_HDR = 20,
	IPV6_HDR = 40,
	TCP_HDR = 20,
	TCP_CSUM_OFF = 16,
	MAX_IP_LEN = 65535,
	GRO_LOOKBACK = 8,
};

static inline uint16_t
get16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static inline void
put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static inline uint32_t
get32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static inline void
put32(uint8_t *p, uint32_t v)
{
	put16(p, (uint16_t)(v >> 16));
	put16(p + 2, (uint16_t)v);
}

void
wg_vnet_hdr_get(struct wg_vnet_hdr *h, const uint8_t b[static WG_VNET_HDR_LEN])
{
	h->flags = b[0];
	h->gso_type = b[1];
	h->hdr_len = (uint16_t)(b[2] | b[3] << 8);
	h->gso_size = (uint16_t)(b[4] | b[5] << 8);
	h->csum_start = (uint16_t)(b[6] | b[7] << 8);
	h->csum_offset = (uint16_t)(b[8] | b[9] << 8);
}

void
wg_vnet_hdr_put(uint8_t b[static WG_VNET_HDR_LEN], const struct wg_vnet_hdr *h)
{
	b[0] = h->flags;
	b[1] = h->gso_type;
	b[2] = (uint8_t)h->hdr_len;
	b[3] = (uint8_t)(h->hdr_len >> 8);
	b[4] = (uint8_t)h->gso_size;
	b[5] = (uint8_t)(h->gso_size >> 8);
	b[6] = (uint8_t)h->csum_start;
	b[7] = (uint8_t)(h->csum_start >> 8);
	b[8] = (uint8_t)h->csum_offset;
	b[9] = (uint8_t)(h->csum_offset >> 8);
}

/* 64-bit one's complement addition (end-around carry): the same sum as
 * adding 16-bit words, four at a time. */
static inline uint64_t
add64c(uint64_t a, uint64_t b)
{
	uint64_t s = a + b;

	return s + (s < b);
}

/* The last len % 8 bytes as words in memory order, zero padded. */
static inline uint64_t
tail_word(const uint8_t *p, size_t len)
{
	uint8_t t[8] = { 0 };
	uint64_t v;

	memcpy(t, p, len);
	memcpy(&v, t, 8);
	return v;
}

/* Four independent accumulators keep the carries off one dependency
 * chain. `dst` (may be NULL) receives a copy of the bytes summed. */
static inline uint64_t
csum_copy(uint8_t *dst, const uint8_t *p, size_t len, uint64_t sum)
{
	uint64_t a0 = sum, a1 = 0, a2 = 0, a3 = 0, v[4];

	while (len >= 32) {
		memcpy(v, p, 32);
		if (dst) {
			memcpy(dst, v, 32);
			dst += 32;
		}
		a0 = add64c(a0, v[0]);
		a1 = add64c(a1, v[1]);
		a2 = add64c(a2, v[2]);
		a3 = add64c(a3, v[3]);
		p += 32;
		len -= 32;
	}
	a0 = add64c(add64c(a0, a1), add64c(a2, a3));
	while (len >= 8) {
		memcpy(v, p, 8);
		if (dst) {
			memcpy(dst, v, 8);
			dst += 8;
		}
		a0 = add64c(a0, v[0]);
		p += 8;
		len -= 8;
	}
	if (len) {
		if (dst)
			memcpy(dst, p, len);
		a0 = add64c(a0, tail_word(p, len));
	}
	return a0;
}

uint64_t
wg_csum_partial(const uint8_t *p, size_t len, uint64_t sum)
{
	return csum_copy(NULL, p, len, sum);
}

uint64_t
wg_csum_copy(uint8_t *dst, const uint8_t *src, size_t len, uint64_t sum)
{
	return csum_copy(dst, src, len, sum);
}

uint16_t
wg_csum_fold(uint64_t sum)
{
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return (uint16_t)sum;
}

/* Adds a 16-bit value given in host order as the word it is on the wire. */
static inline uint64_t
csum_add_be16(uint64_t sum, uint16_t v)
{
	uint8_t b[2] = { (uint8_t)(v >> 8), (uint8_t)v };
	uint16_t h;

	memcpy(&h, b, 2);
	return add64c(sum, h);
}

/* Pseudo-header sum for TCP over IPv4 or IPv6 with `l4len` bytes. */
static uint64_t
pseudo_sum(const uint8_t *ip, bool v6, size_t l4len)
{
	uint64_t s = v6 ? wg_csum_partial(ip + 8, 32, 0) : wg_csum_partial(ip + 12, 8, 0);

	s = csum_add_be16(s, IPPROTO_TCP_);
	return csum_add_be16(s, (uint16_t)l4len);
}

static void
ipv4_set_csum(uint8_t *ip, size_t ihl)
{
	uint16_t c;

	ip[10] = ip[11] = 0;
	c = (uint16_t)~wg_csum_fold(wg_csum_partial(ip, ihl, 0));
	memcpy(ip + 10, &c, 2);
}

int
wg_tso_begin(struct wg_tso *t, const struct wg_vnet_hdr *h, const uint8_t *pkt, size_t len)
{
	uint8_t type = h->gso_type & (uint8_t)~WG_VNET_GSO_ECN;

	memset(t, 0, sizeof(*t));
	t->pkt = pkt;
	t->len = len;
	if (len == 0 || len > MAX_IP_LEN)
		return ERR_INVALID;
	if (type == WG_VNET_GSO_NONE) {
		t->count = 1;
		if (h->flags & WG_VNET_F_NEEDS_CSUM) {
			if ((size_t)h->csum_start + h->csum_offset + 2 > len)
				return ERR_INVALID;
			t->csum = true;
			t->csum_start = h->csum_start;
			t->csum_offset = h->csum_offset;
		}
		return 1;
	}
	if (type != WG_VNET_GSO_TCPV4 && type != WG_VNET_GSO_TCPV6)
		return ERR_INVALID;
	if (h->gso_size == 0)
		return ERR_INVALID;
	t->v6 = type == WG_VNET_GSO_TCPV6;
	if (!t->v6) {
		if (len < IPV4_HDR || pkt[0] >> 4 != 4 || pkt[9] != IPPROTO_TCP_)
			return ERR_INVALID;
		t->l3len = (size_t)(pkt[0] & 0xf) * 4;
		if (t->l3len < IPV4_HDR)
			return ERR_INVALID;
	} else {
		if (len < IPV6_HDR || pkt[0] >> 4 != 6)
			return ERR_INVALID;
		/* csum_start skips any extension headers; without them the next
		 * header must be TCP. */
		t->l3len = h->csum_start ? h->csum_start : IPV6_HDR;
		if (t->l3len < IPV6_HDR || (t->l3len == IPV6_HDR && pkt[6] != IPPROTO_TCP_))
			return ERR_INVALID;
	}
	if (t->l3len + TCP_HDR > len)
		return ERR_INVALID;
	t->hlen = t->l3len + (size_t)(pkt[t->l3len + 12] >> 4) * 4;
	if (t->hlen < t->l3len + TCP_HDR || t->hlen > len)
		return ERR_INVALID;
	t->gso = true;
	t->seg = h->gso_size;
	t->count = len == t->hlen ? 1 : (unsigned)((len - t->hlen + t->seg - 1) / t->seg);
	return (int)t->count;
}

size_t
wg_tso_peek(const struct wg_tso *t)
{
	size_t plen;

	if (t->index >= t->count)
		return 0;
	if (!t->gso)
		return t->len;
	plen = t->len - t->hlen - t->off;
	return t->hlen + (plen > t->seg ? t->seg : plen);
}

size_t
wg_tso_next(struct wg_tso *t, uint8_t *out, size_t cap)
{
	size_t plen, outlen, l4len;
	uint64_t psum;
	uint16_t c;
	uint8_t *tcp;

	if (t->index >= t->count)
		return 0;
	if (!t->gso) {
		if (t->len > cap)
			return 0;
		memcpy(out, t->pkt, t->len);
		if (t->csum) {
			uint8_t *f = out + t->csum_start + t->csum_offset;

			c = (uint16_t)~wg_csum_fold(wg_csum_partial(out + t->csum_start,
								    t->len - t->csum_start, 0));
			if (c == 0 && t->csum_offset == 6)	/* UDP sends 0 as all ones */
				c = 0xffff;
			memcpy(f, &c, 2);
		}
		t->index++;
		return t->len;
	}
	plen = t->len - t->hlen - t->off;
	if (plen > t->seg)
		plen = t->seg;
	outlen = t->hlen + plen;
	if (outlen > cap)
		return 0;
	memcpy(out, t->pkt, t->hlen);
	/* the payload starts at an even offset, so its sum adds to the rest */
	psum = wg_csum_copy(out + t->hlen, t->pkt + t->hlen + t->off, plen, 0);
	if (!t->v6) {
		put16(out + 2, (uint16_t)outlen);
		put16(out + 4, (uint16_t)(get16(t->pkt + 4) + t->index));
		ipv4_set_csum(out, t->l3len);
	} else {
		put16(out + 4, (uint16_t)(outlen - IPV6_HDR));
	}
	tcp = out + t->l3len;
	put32(tcp + 4, get32(t->pkt + t->l3len + 4) + (uint32_t)t->off);
	if (t->index + 1 < t->count)
		tcp[13] &= (uint8_t)~(TCP_FIN | TCP_PSH);
	if (t->index > 0)
		tcp[13] &= (uint8_t)~TCP_CWR;
	l4len = outlen - t->l3len;
	tcp[TCP_CSUM_OFF] = tcp[TCP_CSUM_OFF + 1] = 0;
	c = (uint16_t)~wg_csum_fold(wg_csum_partial(tcp, t->hlen - t->l3len,
						   add64c(psum, pseudo_sum(out, t->v6, l4len))));
	memcpy(tcp + TCP_CSUM_OFF, &c, 2);
	t->off += plen;
	t->index++;
	return outlen;
}

/* ---- GRO ---- */

struct tcpinfo {
	bool v6;
	size_t l3len, hlen, plen;
	uint8_t flags;
};

/* True when `pkt` is TCP; `mergeable` tells whether it may join a group
 * (plain IP header, only ACK or ACK|PSH set, some payload). */
static bool
parse_tcp(const uint8_t *pkt, size_t len, struct tcpinfo *ti, bool *mergeable)
{
	*mergeable = false;
	if (len < IPV4_HDR)
		return false;
	if (pkt[0] >> 4 == 4) {
		size_t ihl = (size_t)(pkt[0] & 0xf) * 4;

		if (pkt[9] != IPPROTO_TCP_ || ihl < IPV4_HDR || get16(pkt + 2) != len)
			return false;
		ti->v6 = false;
		ti->l3len = ihl;
		if (ihl != IPV4_HDR || (get16(pkt + 6) & 0x3fff) != 0)
			return ihl + TCP_HDR <= len;	/* options or a fragment */
	} else if (pkt[0] >> 4 == 6) {
		if (len < IPV6_HDR || pkt[6] != IPPROTO_TCP_ ||
		    (size_t)get16(pkt + 4) + IPV6_HDR != len)
			return false;
		ti->v6 = true;
		ti->l3len = IPV6_HDR;
	} else {
		return false;
	}
	if (ti->l3len + TCP_HDR > len)
		return false;
	ti->hlen = ti->l3len + (size_t)(pkt[ti->l3len + 12] >> 4) * 4;
	if (ti->hlen < ti->l3len + TCP_HDR || ti->hlen > len)
		return true;
	ti->plen = len - ti->hlen;
	ti->flags = pkt[ti->l3len + 13];
	*mergeable = ti->plen > 0 && (ti->flags & ~TCP_PSH) == TCP_ACK;
	return true;
}

static bool
same_flow(const uint8_t *a, const uint8_t *b, const struct tcpinfo *ti)
{
	if (ti->v6)
		return memcmp(a + 8, b + 8, 32) == 0 && memcmp(a + 40, b + 40, 4) == 0;
	return memcmp(a + 12, b + 12, 8) == 0 && memcmp(a + 20, b + 20, 4) == 0;
}

/* Everything but lengths, checksums, IPv4 id, sequence number and PSH must
 * match the group's first packet for the merged packet to mean the same. */
static bool
can_merge(const struct wg_gro_group *gr, const uint8_t *f, const uint8_t *q,
	  const struct tcpinfo *ti)
{
	const uint8_t *ft = f + gr->l3len, *qt = q + ti->l3len;

	if (!gr->open || gr->v6 != ti->v6 || gr->hlen != ti->hlen || ti->plen > gr->seg ||
	    gr->nsegs >= WG_GRO_MAX_SEGS || gr->total + ti->plen > MAX_IP_LEN)
		return false;
	if (!ti->v6) {
		if (f[1] != q[1] || f[6] != q[6] || f[7] != q[7] || f[8] != q[8])
			return false;
	} else if (memcmp(f, q, 4) != 0 || f[7] != q[7]) {
		return false;
	}
	if (get32(qt + 4) != gr->next_seq || memcmp(ft + 8, qt + 8, 5) != 0 ||
	    (ft[13] & ~TCP_PSH) != (qt[13] & ~TCP_PSH) || memcmp(ft + 14, qt + 14, 2) != 0 ||
	    memcmp(ft + TCP_HDR, qt + TCP_HDR, gr->hlen - gr->l3len - TCP_HDR) != 0)
		return false;
	return true;
}

void
wg_gro_init(struct wg_gro *g, struct wg_gro_pkt *pkts, struct wg_gro_group *groups,
	    unsigned cap)
{
	g->pkts = pkts;
	g->groups = groups;
	g->cap = cap;
	g->npkts = g->ngroups = 0;
}

void
wg_gro_reset(struct wg_gro *g)
{
	g->npkts = g->ngroups = 0;
}

bool
wg_gro_add(struct wg_gro *g, uint8_t *pkt, size_t len)
{
	struct wg_gro_group *gr;
	struct tcpinfo ti;
	bool tcp, mergeable;
	int idx;

	if (g->npkts == g->cap)
		return false;
	idx = (int)g->npkts++;
	g->pkts[idx] = (struct wg_gro_pkt){ .pkt = pkt, .len = len, .next = -1 };
	memset(&ti, 0, sizeof(ti));
	tcp = parse_tcp(pkt, len, &ti, &mergeable);
	if (tcp && mergeable) {
		unsigned stop = g->ngroups > GRO_LOOKBACK ? g->ngroups - GRO_LOOKBACK : 0;

		for (unsigned i = g->ngroups; i-- > stop;) {
			gr = &g->groups[i];
			if (!gr->tcp || gr->v6 != ti.v6 ||
			    !same_flow(g->pkts[gr->first].pkt, pkt, &ti))
				continue;
			if (!can_merge(gr, g->pkts[gr->first].pkt, pkt, &ti)) {
				gr->open = false;
				break;
			}
			g->pkts[gr->last].next = idx;
			gr->last = idx;
			gr->nsegs++;
			gr->total += ti.plen;
			gr->next_seq += (uint32_t)ti.plen;
			if (ti.plen < gr->seg || (ti.flags & TCP_PSH))
				gr->open = false;
			return true;
		}
	} else if (tcp) {
		/* A control segment must not be overtaken by data that arrived
		 * after it: nothing earlier may grow any more. */
		for (unsigned i = 0; i < g->ngroups; i++)
			g->groups[i].open = false;
	}
	gr = &g->groups[g->ngroups++];
	memset(gr, 0, sizeof(*gr));
	gr->first = gr->last = idx;
	gr->nsegs = 1;
	gr->total = len;
	if (tcp && mergeable) {
		gr->tcp = true;
		gr->v6 = ti.v6;
		gr->hlen = ti.hlen;
		gr->l3len = ti.l3len;
		gr->seg = ti.plen;
		gr->next_seq = get32(pkt + ti.l3len + 4) + (uint32_t)ti.plen;
		gr->open = !(ti.flags & TCP_PSH);
	}
	return true;
}

unsigned
wg_gro_prepare(struct wg_gro *g, unsigned i, uint8_t **base, size_t *lens)
{
	struct wg_gro_group *gr = &g->groups[i];
	struct wg_gro_pkt *f = &g->pkts[gr->first];
	struct wg_vnet_hdr h = { .flags = WG_VNET_F_DATA_VALID };
	unsigned n = 1;
	uint8_t *tcp;
	uint16_t c;

	base[0] = f->pkt - WG_VNET_HDR_LEN;
	lens[0] = f->len + WG_VNET_HDR_LEN;
	if (gr->nsegs == 1) {
		wg_vnet_hdr_put(base[0], &h);
		return 1;
	}
	tcp = f->pkt + gr->l3len;
	if (!gr->v6) {
		put16(f->pkt + 2, (uint16_t)gr->total);
		ipv4_set_csum(f->pkt, gr->l3len);
	} else {
		put16(f->pkt + 4, (uint16_t)(gr->total - IPV6_HDR));
	}
	if (g->pkts[gr->last].pkt[gr->l3len + 13] & TCP_PSH)
		tcp[13] |= TCP_PSH;
	c = wg_csum_fold(pseudo_sum(f->pkt, gr->v6, gr->total - gr->l3len));
	memcpy(tcp + TCP_CSUM_OFF, &c, 2);
	h.flags = WG_VNET_F_NEEDS_CSUM;
	h.gso_type = gr->v6 ? WG_VNET_GSO_TCPV6 : WG_VNET_GSO_TCPV4;
	h.hdr_len = (uint16_t)gr->hlen;
	h.gso_size = (uint16_t)gr->seg;
	h.csum_start = (uint16_t)gr->l3len;
	h.csum_offset = TCP_CSUM_OFF;
	wg_vnet_hdr_put(base[0], &h);
	for (int k = f->next; k >= 0; k = g->pkts[k].next) {
		base[n] = g->pkts[k].pkt + gr->hlen;
		lens[n] = g->pkts[k].len - gr->hlen;
		n++;
	}
	return n;
}
