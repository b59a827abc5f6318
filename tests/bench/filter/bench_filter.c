// SPDX-License-Identifier: MIT
/*
 * Packet filter benchmark (`make bench-filter`): parse time and per-packet
 * cost of filter_check_inbound for growing rule sets (10 rules, each with N
 * single-address sources and one destination, the shape policy groups
 * compile to), plus the conntrack: recording outbound flows (with eviction
 * from a full table) and letting their replies in. Prints figures.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client-agent/filter.h"
#include "common/util.h"

enum { RULES = 10, N = 400000 };

static char *
make_rules(int nsrc, size_t *len)
{
	size_t cap = (size_t)nsrc * RULES * 32 + 4096, n = 0;
	char *js = malloc(cap);
	int r, i;

	if (js == NULL)
		exit(1);
	n += (size_t)snprintf(js + n, cap - n, "[");
	for (r = 0; r < RULES; r++) {
		n += (size_t)snprintf(js + n, cap - n, "%s{\"IPProto\":[6,17],\"Srcs\":[", r ? "," : "");
		for (i = 0; i < nsrc; i++)
			n += (size_t)snprintf(js + n, cap - n, "%s\"100.%d.%d.%d\"", i ? "," : "",
					      64 + r, (i >> 8) & 255, i & 255);
		n += (size_t)snprintf(js + n, cap - n,
				      "],\"Dsts\":[{\"Net\":\"100.64.0.2/32\",\"Ports\":{\"First\":22,\"Last\":22}}]}");
	}
	n += (size_t)snprintf(js + n, cap - n, "]");
	*len = n;
	return js;
}

/* IPv4 TCP, 40 bytes. */
static void
tcp4(uint8_t p[40], const uint8_t src[4], const uint8_t dst[4], uint16_t sport, uint16_t dport)
{
	memset(p, 0, 40);
	p[0] = 0x45;
	p[3] = 40;
	p[8] = 64;
	p[9] = 6;
	memcpy(p + 12, src, 4);
	memcpy(p + 16, dst, 4);
	p[20] = (uint8_t)(sport >> 8);
	p[21] = (uint8_t)sport;
	p[22] = (uint8_t)(dport >> 8);
	p[23] = (uint8_t)dport;
	p[32] = 5 << 4;
}

int
main(void)
{
	static const int sizes[] = { 1, 100, 1000, 10000 };
	static const uint8_t me[4] = { 100, 64, 0, 2 }, peer[4] = { 100, 73, 0, 7 },
			     stranger[4] = { 100, 99, 0, 1 };
	volatile unsigned sink = 0;
	size_t s;
	int i;

	printf("filter_check_inbound, %d rules x N sources (IPv4 TCP, 40-byte packets)\n", RULES);
	for (s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
		struct wm_filter *f;
		char err[200], *js;
		uint8_t hit[40], miss[40];
		size_t len;
		int64_t t0, t1, t2, t3;

		js = make_rules(sizes[s], &len);
		t0 = time_mono_ns();
		if (filter_parse(js, len, &f, err, sizeof(err)) != 0) {
			fprintf(stderr, "parse: %s\n", err);
			return 1;
		}
		t1 = time_mono_ns();
		tcp4(hit, peer, me, 40000, 22);		/* last rule, source in the middle */
		tcp4(miss, stranger, me, 40000, 22);	/* every rule checked */
		for (i = 0; i < N; i++)
			sink += filter_check_inbound(f, NULL, hit, 40, 0);
		t2 = time_mono_ns();
		for (i = 0; i < N; i++)
			sink += filter_check_inbound(f, NULL, miss, 40, 0);
		t3 = time_mono_ns();
		printf("  N=%-6d json %8zu B  parse %7.2f ms  accept %6.0f ns/pkt  drop %6.0f ns/pkt\n",
		       sizes[s], len, (t1 - t0) / 1e6, (double)(t2 - t1) / N, (double)(t3 - t2) / N);
		filter_free(f);
		free(js);
	}

	{
		struct conntrack *ct = conntrack_new(CONNTRACK_DEFAULT_MAX);
		struct wm_filter *none;
		uint8_t out[40], in[40];
		int64_t t0, t1, t2;
		char err[64];

		if (ct == NULL || filter_parse("[]", 2, &none, err, sizeof(err)) != 0)
			return 1;
		t0 = time_mono_ns();
		for (i = 0; i < N; i++) {	/* new flows into a full table: evictions */
			tcp4(out, me, peer, (uint16_t)(1024 + i % 60000), (uint16_t)(443 + i / 60000));
			conntrack_note_outbound(ct, out, 40, i);
		}
		t1 = time_mono_ns();
		for (i = 0; i < N; i++) {	/* replies to the last 4096 flows */
			int k = N - 1 - i % CONNTRACK_DEFAULT_MAX;

			tcp4(in, peer, me, (uint16_t)(443 + k / 60000), (uint16_t)(1024 + k % 60000));
			sink += filter_check_inbound(none, ct, in, 40, N);
		}
		t2 = time_mono_ns();
		printf("conntrack (%d flows): note_outbound %.0f ns/pkt, established reply %.0f ns/pkt\n",
		       CONNTRACK_DEFAULT_MAX, (double)(t1 - t0) / N, (double)(t2 - t1) / N);
		{
			struct filter_stats st;

			conntrack_stats(ct, &st);
			if (st.accepted_established != N) {
				fprintf(stderr, "expected %d established, got %llu\n", N,
					(unsigned long long)st.accepted_established);
				return 1;
			}
		}
		conntrack_free(ct);
		filter_free(none);
	}
	(void)sink;
	return 0;
}
