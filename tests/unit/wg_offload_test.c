// SPDX-License-Identifier: MIT
/*
 * TUN offload helpers against deliberately naive references: the checksum
 * against a 16-bit big-endian sum, TSO splitting of random IPv4/IPv6 TCP
 * super packets (every segment's lengths, id, sequence number, flags,
 * payload and both checksums checked from scratch), partial checksum
 * completion, GRO merging segments back (round trip through TSO with the
 * vnet header GRO wrote), flow separation and ordering, and random bytes
 * through both (no crash, under ASan).
 */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "client-agent/wg/offload.h"

static uint32_t rng = 12345;

static uint32_t
rnd(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 17;
	rng ^= rng << 5;
	return rng;
}

static uint16_t
be16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static uint32_t
be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Naive one's complement sum of big-endian 16-bit words. */
static uint32_t
naive_sum(const uint8_t *p, size_t len, uint32_t sum)
{
	for (size_t i = 0; i < len; i += 2) {
		sum += (uint32_t)p[i] << 8 | (i + 1 < len ? p[i + 1] : 0);
		sum = (sum & 0xffff) + (sum >> 16);
	}
	return sum;
}

static uint16_t
naive_fold(uint32_t sum)
{
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return (uint16_t)sum;
}

/* True when the TCP checksum of an IP packet verifies. */
static bool
tcp_csum_ok(const uint8_t *ip, size_t len, bool v6, size_t l3len)
{
	uint32_t s = 0;
	size_t l4 = len - l3len;

	if (v6)
		s = naive_sum(ip + 8, 32, 0);
	else
		s = naive_sum(ip + 12, 8, 0);
	s += 6 + (uint32_t)l4;
	s = naive_sum(ip + l3len, l4, s);
	return naive_fold(s) == 0xffff;
}

/* A TCP packet with `plen` random payload bytes and 12 bytes of options. */
static size_t
make_tcp(uint8_t *p, bool v6, size_t plen, uint8_t flags, uint32_t seq, int flow)
{
	size_t l3 = v6 ? 40 : 20, th = 32, len = l3 + th + plen;

	memset(p, 0, l3 + th);
	if (v6) {
		p[0] = 0x60;
		p[4] = (uint8_t)((len - 40) >> 8);
		p[5] = (uint8_t)(len - 40);
		p[6] = 6;
		p[7] = 64;
		p[8] = 0xfd;
		p[23] = 1;
		p[24] = 0xfd;
		p[39] = (uint8_t)(2 + flow);
	} else {
		p[0] = 0x45;
		p[2] = (uint8_t)(len >> 8);
		p[3] = (uint8_t)len;
		p[4] = 0x12;
		p[5] = 0x34;
		p[6] = 0x40;
		p[8] = 64;
		p[9] = 6;
		p[12] = 10;
		p[15] = 1;
		p[16] = 10;
		p[19] = (uint8_t)(2 + flow);
	}
	uint8_t *t = p + l3;

	t[0] = 0x13;
	t[1] = 0x88;
	t[2] = 0xc0;
	t[3] = (uint8_t)(1 + flow);
	t[4] = (uint8_t)(seq >> 24);
	t[5] = (uint8_t)(seq >> 16);
	t[6] = (uint8_t)(seq >> 8);
	t[7] = (uint8_t)seq;
	t[8] = 0xaa;
	t[11] = 0x55;
	t[12] = (uint8_t)((th / 4) << 4);
	t[13] = flags;
	t[14] = 0x01;
	t[15] = 0xf5;
	t[20] = 1;
	t[21] = 1;
	t[22] = 8;
	t[23] = 10;
	for (int i = 24; i < 32; i++)
		t[i] = (uint8_t)(i * 7);	/* same timestamps: mergeable */
	for (size_t i = 0; i < plen; i++)
		p[l3 + th + i] = (uint8_t)rnd();
	return len;
}

START_TEST(csum_matches_naive)
{
	uint8_t buf[3000];

	for (int it = 0; it < 2000; it++) {
		size_t len = rnd() % sizeof(buf), off = rnd() % 8;
		uint16_t c;
		uint8_t cb[2];

		if (off + len > sizeof(buf))
			len = sizeof(buf) - off;
		for (size_t i = 0; i < len; i++)
			buf[off + i] = (uint8_t)rnd();
		if (it % 7 == 0)
			memset(buf + off, 0xff, len);
		c = wg_csum_fold(wg_csum_partial(buf + off, len, 0));
		memcpy(cb, &c, 2);
		ck_assert_uint_eq(be16(cb), naive_fold(naive_sum(buf + off, len, 0)));
	}
}
END_TEST

static void
check_split(bool v6, size_t plen, unsigned gso, uint8_t flags)
{
	static uint8_t pkt[70000], seg[70000], joined[70000];
	size_t l3 = v6 ? 40 : 20, hlen = l3 + 32;
	size_t len = make_tcp(pkt, v6, plen, flags, 0xfffff000u, 0), got = 0, sl;
	struct wg_vnet_hdr h = {
		.flags = WG_VNET_F_NEEDS_CSUM,
		.gso_type = v6 ? WG_VNET_GSO_TCPV6 : WG_VNET_GSO_TCPV4,
		.hdr_len = (uint16_t)hlen,
		.gso_size = (uint16_t)gso,
		.csum_start = (uint16_t)l3,
		.csum_offset = 16,
	};
	struct wg_tso t;
	unsigned want = plen ? (unsigned)((plen + gso - 1) / gso) : 1, i = 0;

	ck_assert_int_eq(wg_tso_begin(&t, &h, pkt, len), (int)want);
	for (;;) {
		size_t peek = wg_tso_peek(&t);

		sl = wg_tso_next(&t, seg, sizeof(seg));
		ck_assert_uint_eq(peek, sl);
		if (sl == 0)
			break;
		size_t sp = sl - hlen;
		uint8_t f = seg[l3 + 13];

		ck_assert_uint_lt(i, want);
		ck_assert_uint_eq(sp, i + 1 < want ? gso : plen - (size_t)i * gso);
		if (v6) {
			ck_assert_uint_eq(be16(seg + 4), sl - 40);
			ck_assert_mem_eq(seg + 6, pkt + 6, 34);
		} else {
			ck_assert_uint_eq(be16(seg + 2), sl);
			ck_assert_uint_eq(be16(seg + 4), (uint16_t)(0x1234 + i));
			ck_assert_uint_eq(naive_fold(naive_sum(seg, 20, 0)), 0xffff);
			ck_assert_mem_eq(seg + 12, pkt + 12, 8);
		}
		ck_assert_uint_eq(be32(seg + l3 + 4), 0xfffff000u + (uint32_t)(i * gso));
		ck_assert_mem_eq(seg + l3 + 8, pkt + l3 + 8, 5);
		ck_assert_mem_eq(seg + l3 + 20, pkt + l3 + 20, 12);
		if (i + 1 < want)
			ck_assert_uint_eq(f & 0x09, 0);
		else
			ck_assert_uint_eq(f & 0x09, flags & 0x09);
		if (i > 0)
			ck_assert_uint_eq(f & 0x80, 0);
		else
			ck_assert_uint_eq(f & 0x80, flags & 0x80);
		ck_assert(tcp_csum_ok(seg, sl, v6, l3));
		memcpy(joined + got, seg + hlen, sp);
		got += sp;
		i++;
	}
	ck_assert_uint_eq(i, want);
	ck_assert_uint_eq(got, plen);
	ck_assert_mem_eq(joined, pkt + hlen, plen);
}

START_TEST(tso_split)
{
	for (int it = 0; it < 300; it++) {
		bool v6 = it & 1;
		size_t maxp = 65535 - (v6 ? 40 : 20) - 32 - (v6 ? 40 : 0);
		size_t plen = it % 10 == 0 ? rnd() % 3000 : rnd() % maxp;
		unsigned gso = 100 + rnd() % 1400;
		uint8_t flags = (uint8_t)(0x10 | (rnd() & 0x89));

		check_split(v6, plen, gso, flags);
	}
	check_split(false, 1368 * 47, 1368, 0x18);
	check_split(true, 1348 * 48, 1348, 0x19);
	check_split(false, 0, 1368, 0x11);
}
END_TEST

START_TEST(csum_completion)
{
	uint8_t pkt[200], out[200];
	struct wg_vnet_hdr h = { .flags = WG_VNET_F_NEEDS_CSUM, .csum_start = 20,
				 .csum_offset = 6 };
	struct wg_tso t;
	uint32_t s;
	uint16_t ps;

	/* IPv4/UDP with the pseudo-header sum in the checksum field, as the
	 * kernel leaves it for CHECKSUM_PARTIAL. */
	memset(pkt, 0, sizeof(pkt));
	pkt[0] = 0x45;
	pkt[3] = 128;
	pkt[9] = 17;
	pkt[12] = 10, pkt[15] = 1, pkt[16] = 10, pkt[19] = 2;
	pkt[20] = 0x30, pkt[21] = 0x39, pkt[22] = 0x00, pkt[23] = 0x35;
	pkt[25] = 108;
	for (int i = 28; i < 128; i++)
		pkt[i] = (uint8_t)rnd();
	s = naive_sum(pkt + 12, 8, 17 + 108);
	ps = naive_fold(s);
	pkt[26] = (uint8_t)(ps >> 8);
	pkt[27] = (uint8_t)ps;
	ck_assert_int_eq(wg_tso_begin(&t, &h, pkt, 128), 1);
	ck_assert_uint_eq(wg_tso_next(&t, out, sizeof(out)), 128);
	ck_assert_uint_eq(wg_tso_next(&t, out, sizeof(out)), 0);
	s = naive_sum(out + 12, 8, 17 + 108);
	ck_assert_uint_eq(naive_fold(naive_sum(out + 20, 108, s)), 0xffff);
	/* offsets outside the packet */
	h.csum_start = 127;
	ck_assert_int_eq(wg_tso_begin(&t, &h, pkt, 128), ERR_INVALID);
	/* no checksum asked: copied as is */
	h.flags = 0;
	ck_assert_int_eq(wg_tso_begin(&t, &h, pkt, 128), 1);
	ck_assert_uint_eq(wg_tso_next(&t, out, sizeof(out)), 128);
	ck_assert_mem_eq(out, pkt, 128);
	ck_assert_uint_eq(wg_tso_next(&t, out, 10), 0);
}
END_TEST

START_TEST(tso_rejects)
{
	uint8_t pkt[2000];
	size_t len = make_tcp(pkt, false, 1000, 0x10, 1, 0);
	struct wg_vnet_hdr h = { .flags = 1, .gso_type = WG_VNET_GSO_TCPV4, .gso_size = 500,
				 .csum_start = 20, .csum_offset = 16 };
	struct wg_tso t;

	ck_assert_int_eq(wg_tso_begin(&t, &h, pkt, len), 2);
	h.gso_type = WG_VNET_GSO_UDP_L4;
	ck_assert_int_eq(wg_tso_begin(&t, &h, pkt, len), ERR_INVALID);
	h.gso_type = WG_VNET_GSO_TCPV6;	/* an IPv4 packet */
	ck_assert_int_eq(wg_tso_begin(&t, &h, pkt, len), ERR_INVALID);
	h.gso_type = WG_VNET_GSO_TCPV4;
	h.gso_size = 0;
	ck_assert_int_eq(wg_tso_begin(&t, &h, pkt, len), ERR_INVALID);
	h.gso_size = 500;
	pkt[32] = 0xf0;		/* data offset 60 > packet */
	ck_assert_int_eq(wg_tso_begin(&t, &h, pkt, 60), ERR_INVALID);
	pkt[32] = 0x30;		/* data offset 12 < 20 */
	ck_assert_int_eq(wg_tso_begin(&t, &h, pkt, len), ERR_INVALID);
	ck_assert_int_eq(wg_tso_begin(&t, &h, pkt, 0), ERR_INVALID);
}
END_TEST

struct gro_fixture {
	uint8_t *bufs[200];
	struct wg_gro_pkt pkts[200];
	struct wg_gro_group groups[200];
	struct wg_gro g;
	uint8_t *base[WG_GRO_MAX_SEGS + 1];
	size_t lens[WG_GRO_MAX_SEGS + 1];
};

static void
gro_setup(struct gro_fixture *f)
{
	for (int i = 0; i < 200; i++)
		f->bufs[i] = malloc(2000);
	wg_gro_init(&f->g, f->pkts, f->groups, 200);
}

static void
gro_teardown(struct gro_fixture *f)
{
	for (int i = 0; i < 200; i++)
		free(f->bufs[i]);
}

/* Flattens prepared group i into out (vnet header first); returns length. */
static size_t
gro_flatten(struct gro_fixture *f, unsigned i, uint8_t *out)
{
	unsigned n = wg_gro_prepare(&f->g, i, f->base, f->lens);
	size_t off = 0;

	for (unsigned k = 0; k < n; k++) {
		memcpy(out + off, f->base[k], f->lens[k]);
		off += f->lens[k];
	}
	return off;
}

START_TEST(gro_roundtrip)
{
	static uint8_t super[70000], merged[70000], seg[2000];
	struct gro_fixture *f = calloc(1, sizeof(*f));

	gro_setup(f);
	for (int it = 0; it < 100; it++) {
		bool v6 = it & 1;
		unsigned gso = 200 + rnd() % 1200, n = 1 + rnd() % 40;
		size_t plen = (size_t)gso * (n - 1) + 1 + rnd() % gso, l3 = v6 ? 40 : 20;
		size_t len = make_tcp(super, v6, plen, (uint8_t)(it & 2 ? 0x18 : 0x10), rnd(), 0);
		struct wg_vnet_hdr h = { .flags = 1, .gso_size = (uint16_t)gso,
					 .gso_type = v6 ? WG_VNET_GSO_TCPV6 : WG_VNET_GSO_TCPV4,
					 .csum_start = (uint16_t)l3, .csum_offset = 16 };
		struct wg_vnet_hdr mh;
		struct wg_tso t, t2;
		size_t sl, ml;
		unsigned k = 0;

		if (len > 65535)
			continue;
		ck_assert_int_eq(wg_tso_begin(&t, &h, super, len), (int)n);
		wg_gro_reset(&f->g);
		while ((sl = wg_tso_next(&t, f->bufs[k] + 16, 1900)) != 0)
			ck_assert(wg_gro_add(&f->g, f->bufs[k++] + 16, sl));
		ck_assert_uint_eq(k, n);
		ck_assert_uint_eq(f->g.ngroups, 1);
		ml = gro_flatten(f, 0, merged);
		wg_vnet_hdr_get(&mh, merged);
		if (n == 1) {
			ck_assert_uint_eq(mh.gso_type, WG_VNET_GSO_NONE);
			ck_assert_uint_eq(mh.flags, WG_VNET_F_DATA_VALID);
			continue;
		}
		ck_assert_uint_eq(mh.gso_type, h.gso_type);
		ck_assert_uint_eq(mh.gso_size, gso);
		ck_assert_uint_eq(mh.hdr_len, l3 + 32);
		ck_assert_uint_eq(ml - WG_VNET_HDR_LEN, len);
		/* same payload, and TSO with GRO's header gives the segments back */
		ck_assert_mem_eq(merged + WG_VNET_HDR_LEN + l3 + 32, super + l3 + 32, plen);
		ck_assert_int_eq(wg_tso_begin(&t2, &mh, merged + WG_VNET_HDR_LEN, len), (int)n);
		for (k = 0; (sl = wg_tso_next(&t2, seg, sizeof(seg))) != 0; k++) {
			size_t want = l3 + 32 + (k + 1 < n ? gso : plen - (size_t)gso * (n - 1));

			ck_assert_uint_eq(sl, want);
			ck_assert_mem_eq(seg + l3 + 32, f->bufs[k] + 16 + l3 + 32, sl - l3 - 32);
			ck_assert(tcp_csum_ok(seg, sl, v6, l3));
		}
		ck_assert_uint_eq(k, n);
	}
	gro_teardown(f);
	free(f);
}
END_TEST

static size_t
add_seg(struct gro_fixture *f, int slot, bool v6, size_t plen, uint8_t flags, uint32_t seq,
	int flow)
{
	size_t len = make_tcp(f->bufs[slot] + 16, v6, plen, flags, seq, flow);

	ck_assert(wg_gro_add(&f->g, f->bufs[slot] + 16, len));
	return len;
}

START_TEST(gro_flows_and_order)
{
	struct gro_fixture *f = calloc(1, sizeof(*f));
	uint8_t out[70000];

	gro_setup(f);
	/* two interleaved flows: two groups, each whole */
	for (int i = 0; i < 20; i++)
		add_seg(f, i, false, 1000, 0x10, 1000u * (uint32_t)(i / 2), i & 1);
	ck_assert_uint_eq(f->g.ngroups, 2);
	ck_assert_uint_eq(f->groups[0].nsegs, 10);
	ck_assert_uint_eq(f->groups[1].nsegs, 10);
	ck_assert_uint_eq(gro_flatten(f, 1, out), WG_VNET_HDR_LEN + 52 + 10000);
	wg_gro_reset(&f->g);

	/* a gap in sequence starts a new group; a pure ACK closes the flow's
	 * groups so later data cannot overtake it */
	add_seg(f, 0, false, 1000, 0x10, 0, 0);
	add_seg(f, 1, false, 1000, 0x10, 1000, 0);
	add_seg(f, 2, false, 1000, 0x10, 3000, 0);
	add_seg(f, 3, false, 0, 0x10, 4000, 0);
	add_seg(f, 4, false, 1000, 0x10, 4000, 0);
	add_seg(f, 5, false, 1000, 0x10, 5000, 0);
	ck_assert_uint_eq(f->g.ngroups, 4);
	ck_assert_uint_eq(f->groups[0].nsegs, 2);
	ck_assert_uint_eq(f->groups[1].nsegs, 1);
	ck_assert_uint_eq(f->groups[2].nsegs, 1);
	ck_assert_uint_eq(f->groups[3].nsegs, 2);
	wg_gro_reset(&f->g);

	/* PSH ends a group (and is kept); a shorter segment ends it too;
	 * SYN/FIN never merge; different TTL does not merge */
	add_seg(f, 0, true, 1000, 0x10, 0, 0);
	add_seg(f, 1, true, 1000, 0x18, 1000, 0);
	add_seg(f, 2, true, 500, 0x10, 2000, 0);
	add_seg(f, 3, true, 1000, 0x10, 2500, 0);
	add_seg(f, 4, true, 1000, 0x11, 3500, 0);
	ck_assert_uint_eq(f->g.ngroups, 4);
	ck_assert_uint_eq(f->groups[0].nsegs, 2);
	ck_assert_uint_eq(f->groups[1].nsegs, 1);
	ck_assert_uint_eq(f->groups[2].nsegs, 1);
	gro_flatten(f, 0, out);
	ck_assert_uint_eq(out[WG_VNET_HDR_LEN + 40 + 13], 0x18);
	wg_gro_reset(&f->g);
	add_seg(f, 0, false, 1000, 0x10, 0, 0);
	f->bufs[1][16 + 8] = 0;	/* TTL of the next one */
	make_tcp(f->bufs[1] + 16, false, 1000, 0x10, 1000, 0);
	f->bufs[1][16 + 8] = 63;
	ck_assert(wg_gro_add(&f->g, f->bufs[1] + 16, 1052));
	ck_assert_uint_eq(f->g.ngroups, 2);
	/* a non-TCP packet is its own group with a plain header */
	memset(f->bufs[2] + 16, 0, 28);
	f->bufs[2][16] = 0x45;
	f->bufs[2][16 + 3] = 28;
	f->bufs[2][16 + 9] = 17;
	ck_assert(wg_gro_add(&f->g, f->bufs[2] + 16, 28));
	ck_assert_uint_eq(f->g.ngroups, 3);
	ck_assert_uint_eq(gro_flatten(f, 2, out), WG_VNET_HDR_LEN + 28);
	ck_assert_uint_eq(out[0], WG_VNET_F_DATA_VALID);
	gro_teardown(f);
	free(f);
}
END_TEST

START_TEST(random_bytes)
{
	static uint8_t pkt[3000], out[70000];
	struct gro_fixture *f = calloc(1, sizeof(*f));

	gro_setup(f);
	for (int it = 0; it < 20000; it++) {
		size_t len = rnd() % 200;
		struct wg_vnet_hdr h;
		uint8_t hb[WG_VNET_HDR_LEN];
		struct wg_tso t;

		for (size_t i = 0; i < len; i++)
			pkt[i] = (uint8_t)rnd();
		if (len > 0 && rnd() % 2)
			pkt[0] = rnd() % 2 ? 0x45 : 0x60;
		if (len > 9 && rnd() % 2)
			pkt[9] = 6, pkt[6] = 6;
		for (int i = 0; i < WG_VNET_HDR_LEN; i++)
			hb[i] = (uint8_t)(rnd() % 4 ? rnd() % 64 : rnd());
		wg_vnet_hdr_get(&h, hb);
		if (wg_tso_begin(&t, &h, pkt, len) > 0)
			while (wg_tso_next(&t, out, sizeof(out)) != 0)
				;
		memcpy(f->bufs[it % 100] + 16, pkt, len);
		ck_assert(wg_gro_add(&f->g, f->bufs[it % 100] + 16, len));
		if (it % 100 == 99) {
			for (unsigned g = 0; g < f->g.ngroups; g++)
				gro_flatten(f, g, out);
			wg_gro_reset(&f->g);
		}
	}
	gro_teardown(f);
	free(f);
}
END_TEST

Suite *
wg_offload_suite(void)
{
	Suite *s = suite_create("wg_offload");
	TCase *tc = tcase_create("core");

	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, csum_matches_naive);
	tcase_add_test(tc, tso_split);
	tcase_add_test(tc, csum_completion);
	tcase_add_test(tc, tso_rejects);
	tcase_add_test(tc, gro_roundtrip);
	tcase_add_test(tc, gro_flows_and_order);
	tcase_add_test(tc, random_bytes);
	suite_add_tcase(s, tc);
	return s;
}
