// SPDX-License-Identifier: MIT
/* client-agent/filter: rule matching (prefixes, port ranges, protocols,
 * IPv6, "*"), stateful replies (TCP/UDP flows, ICMP echo, ICMP errors),
 * the bounded table, malformed packets, parse errors, and a differential
 * test against a deliberately naive matcher written here. */
#include <check.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client-agent/filter.h"
#include "common/addr.h"

enum { TCP = 6, UDP = 17, ICMP = 1, ICMP6 = 58, SCTP = 132, GRE = 47 };

/* Builds an IPv4 or IPv6 packet (by the address family) with a minimal
 * transport header: TCP/UDP/SCTP ports, or ICMP type (sport) and echo id
 * (dport). Returns its length. */
static size_t
mk(uint8_t *b, const char *src, const char *dst, uint8_t proto, uint16_t sport, uint16_t dport)
{
	struct ip_addr s, d;
	size_t hl, l4 = proto == TCP ? 20 : proto == SCTP ? 12 : 8, n;
	uint8_t *t;

	ck_assert_int_eq(addr_parse(src, &s), 0);
	ck_assert_int_eq(addr_parse(dst, &d), 0);
	ck_assert_int_eq(s.family, d.family);
	memset(b, 0, 100);
	if (s.family == AF_INET) {
		hl = 20;
		n = hl + l4;
		b[0] = 0x45;
		b[2] = (uint8_t)(n >> 8);
		b[3] = (uint8_t)n;
		b[8] = 64;
		b[9] = proto;
		memcpy(b + 12, s.b, 4);
		memcpy(b + 16, d.b, 4);
	} else {
		hl = 40;
		n = hl + l4;
		b[0] = 0x60;
		b[4] = (uint8_t)(l4 >> 8);
		b[5] = (uint8_t)l4;
		b[6] = proto;
		b[7] = 64;
		memcpy(b + 8, s.b, 16);
		memcpy(b + 24, d.b, 16);
	}
	t = b + hl;
	if (proto == ICMP || proto == ICMP6) {
		t[0] = (uint8_t)sport;
		t[4] = (uint8_t)(dport >> 8);
		t[5] = (uint8_t)dport;
	} else {
		t[0] = (uint8_t)(sport >> 8);
		t[1] = (uint8_t)sport;
		t[2] = (uint8_t)(dport >> 8);
		t[3] = (uint8_t)dport;
		if (proto == TCP)
			t[12] = 5 << 4;
		if (proto == UDP)
			t[5] = 8;
	}
	return n;
}

static struct wm_filter *
parse_ok(const char *json)
{
	struct wm_filter *f = NULL;
	char err[200];
	int r = filter_parse(json, strlen(json), &f, err, sizeof(err));

	ck_assert_msg(r == 0, "%s: %s", json, err);
	return f;
}

static enum filter_verdict
in(const struct wm_filter *f, struct conntrack *ct, const char *src, const char *dst,
   uint8_t proto, uint16_t sport, uint16_t dport, int64_t now)
{
	uint8_t b[128];
	size_t n = mk(b, src, dst, proto, sport, dport);

	return filter_check_inbound(f, ct, b, n, now);
}

static void
out(struct conntrack *ct, const char *src, const char *dst, uint8_t proto, uint16_t sport,
    uint16_t dport, int64_t now)
{
	uint8_t b[128];
	size_t n = mk(b, src, dst, proto, sport, dport);

	conntrack_note_outbound(ct, b, n, now);
}

static const char rules[] =
	"[{\"IPProto\":[6],\"Srcs\":[\"100.64.0.1/32\"],"
	"  \"Dsts\":[{\"Net\":\"100.64.0.2/32\",\"Ports\":{\"First\":22,\"Last\":22}}]},"
	" {\"IPProto\":[17],\"Srcs\":[\"100.64.0.0/24\",\"fd7a:115c:a1e0::/48\"],"
	"  \"Dsts\":[{\"Net\":\"100.64.0.2\",\"Ports\":{\"First\":1000,\"Last\":2000}},"
	"           {\"Net\":\"fd7a:115c:a1e0::2/128\",\"Ports\":{\"First\":53,\"Last\":53}}]},"
	" {\"IPProto\":[1,58],\"Srcs\":[\"*\"],\"Dsts\":[{\"Net\":\"100.64.0.2/32\"},"
	"   {\"Net\":\"fd7a:115c:a1e0::2\",\"Ports\":{\"First\":0,\"Last\":0}}]},"
	" {\"IPProto\":[132],\"Srcs\":[\"100.64.0.7\"],"
	"  \"Dsts\":[{\"Net\":\"*\",\"Ports\":{\"First\":5000,\"Last\":5000}}]}]";

START_TEST(test_rules)
{
	struct wm_filter *f = parse_ok(rules);
	struct conntrack *ct = conntrack_new(16);

	/* TCP 22 from .1 only. */
	ck_assert_int_eq(in(f, ct, "100.64.0.1", "100.64.0.2", TCP, 40000, 22, 0), FILTER_ACCEPT);
	ck_assert_int_eq(in(f, ct, "100.64.0.1", "100.64.0.2", TCP, 40000, 23, 0), FILTER_DROP_POLICY);
	ck_assert_int_eq(in(f, ct, "100.64.0.3", "100.64.0.2", TCP, 40000, 22, 0), FILTER_DROP_POLICY);
	ck_assert_int_eq(in(f, ct, "100.64.0.1", "100.64.0.3", TCP, 40000, 22, 0), FILTER_DROP_POLICY);
	ck_assert_int_eq(in(f, ct, "100.64.0.1", "100.64.0.2", UDP, 40000, 22, 0), FILTER_DROP_POLICY);
	/* UDP port range edges. */
	ck_assert_int_eq(in(f, ct, "100.64.0.99", "100.64.0.2", UDP, 1, 999, 0), FILTER_DROP_POLICY);
	ck_assert_int_eq(in(f, ct, "100.64.0.99", "100.64.0.2", UDP, 1, 1000, 0), FILTER_ACCEPT);
	ck_assert_int_eq(in(f, ct, "100.64.0.99", "100.64.0.2", UDP, 1, 2000, 0), FILTER_ACCEPT);
	ck_assert_int_eq(in(f, ct, "100.64.0.99", "100.64.0.2", UDP, 1, 2001, 0), FILTER_DROP_POLICY);
	ck_assert_int_eq(in(f, ct, "100.64.1.99", "100.64.0.2", UDP, 1, 1500, 0), FILTER_DROP_POLICY);
	/* IPv6. */
	ck_assert_int_eq(in(f, ct, "fd7a:115c:a1e0:ab::5", "fd7a:115c:a1e0::2", UDP, 9, 53, 0),
			 FILTER_ACCEPT);
	ck_assert_int_eq(in(f, ct, "fd7a:115c:a1e1::5", "fd7a:115c:a1e0::2", UDP, 9, 53, 0),
			 FILTER_DROP_POLICY);
	ck_assert_int_eq(in(f, ct, "fd7a:115c:a1e0::5", "fd7a:115c:a1e0::2", UDP, 9, 54, 0),
			 FILTER_DROP_POLICY);
	/* A v4 prefix never matches v6 and the reverse. */
	ck_assert_int_eq(in(f, ct, "::ffff:100.64.0.1", "::ffff:100.64.0.2", TCP, 1, 22, 0),
			 FILTER_DROP_POLICY);
	/* ICMP: "*" sources, ports ignored for protocols without them. */
	ck_assert_int_eq(in(f, ct, "203.0.113.5", "100.64.0.2", ICMP, 8, 77, 0), FILTER_ACCEPT);
	ck_assert_int_eq(in(f, ct, "2001:db8::1", "fd7a:115c:a1e0::2", ICMP6, 128, 77, 0),
			 FILTER_ACCEPT);
	ck_assert_int_eq(in(f, ct, "203.0.113.5", "100.64.0.3", ICMP, 8, 77, 0), FILTER_DROP_POLICY);
	/* ICMP (proto 1) inside IPv6 is just another protocol; so matched on IPs. */
	ck_assert_int_eq(in(f, ct, "2001:db8::1", "fd7a:115c:a1e0::2", ICMP, 8, 77, 0), FILTER_ACCEPT);
	/* SCTP ports; "*" destination covers both families. */
	ck_assert_int_eq(in(f, ct, "100.64.0.7", "10.1.2.3", SCTP, 1, 5000, 0), FILTER_ACCEPT);
	ck_assert_int_eq(in(f, ct, "100.64.0.7", "10.1.2.3", SCTP, 1, 5001, 0), FILTER_DROP_POLICY);
	ck_assert_int_eq(in(f, ct, "100.64.0.7", "10.1.2.3", TCP, 1, 5000, 0), FILTER_DROP_POLICY);
	{
		struct filter_stats st;

		conntrack_stats(ct, &st);
		ck_assert_uint_eq(st.accepted, 8);
		ck_assert_uint_eq(st.dropped_policy, 13);
		ck_assert_uint_eq(st.accepted_established + st.dropped_malformed, 0);
	}
	/* No filter: everything well-formed passes. */
	ck_assert_int_eq(in(NULL, ct, "100.64.0.3", "100.64.0.2", TCP, 1, 23, 0), FILTER_ACCEPT);
	ck_assert_int_eq(in(f, NULL, "100.64.0.1", "100.64.0.2", TCP, 40000, 22, 0), FILTER_ACCEPT);
	conntrack_free(ct);
	filter_free(f);
	filter_free(NULL);
	conntrack_free(NULL);
}
END_TEST

START_TEST(test_defaults_and_star)
{
	struct wm_filter *f = parse_ok(
		"[{\"Srcs\":[\"*\"],\"Dsts\":[{\"Net\":\"*\",\"Ports\":{\"First\":0,\"Last\":65535}}]}]");
	struct wm_filter *none = parse_ok("[]");
	struct wm_filter *ts = parse_ok(	/* Tailscale's field names */
		"[{\"SrcIPs\":[\"100.64.0.1\"],\"DstPorts\":[{\"IP\":\"100.64.0.2\","
		"\"Ports\":{\"First\":80,\"Last\":80}}],\"Caps\":[]}]");

	ck_assert_int_eq(in(f, NULL, "1.2.3.4", "5.6.7.8", TCP, 1, 2, 0), FILTER_ACCEPT);
	ck_assert_int_eq(in(f, NULL, "2001:db8::1", "2001:db8::2", UDP, 1, 2, 0), FILTER_ACCEPT);
	ck_assert_int_eq(in(f, NULL, "1.2.3.4", "5.6.7.8", ICMP, 8, 2, 0), FILTER_ACCEPT);
	ck_assert_int_eq(in(f, NULL, "2001:db8::1", "2001:db8::2", ICMP6, 128, 2, 0), FILTER_ACCEPT);
	/* An absent IPProto is TCP, UDP, ICMP and ICMPv6 only. */
	ck_assert_int_eq(in(f, NULL, "1.2.3.4", "5.6.7.8", SCTP, 1, 2, 0), FILTER_DROP_POLICY);
	ck_assert_int_eq(in(f, NULL, "1.2.3.4", "5.6.7.8", GRE, 1, 2, 0), FILTER_DROP_POLICY);
	ck_assert_int_eq(in(none, NULL, "1.2.3.4", "5.6.7.8", TCP, 1, 2, 0), FILTER_DROP_POLICY);
	ck_assert_int_eq(in(ts, NULL, "100.64.0.1", "100.64.0.2", TCP, 1, 80, 0), FILTER_ACCEPT);
	ck_assert_int_eq(in(ts, NULL, "100.64.0.1", "100.64.0.2", TCP, 1, 81, 0), FILTER_DROP_POLICY);
	{
		/* Rules without sources or destinations match nothing. */
		struct wm_filter *empty = parse_ok(
			"[{\"Dsts\":[{\"Net\":\"*\"}]},{\"Srcs\":[\"*\"]},{\"Srcs\":null,\"Dsts\":null}]");

		ck_assert_int_eq(in(empty, NULL, "1.2.3.4", "5.6.7.8", TCP, 1, 2, 0), FILTER_DROP_POLICY);
		filter_free(empty);
	}
	filter_free(f);
	filter_free(none);
	filter_free(ts);
}
END_TEST

START_TEST(test_established)
{
	struct wm_filter *f = parse_ok("[]");
	struct conntrack *ct = conntrack_new(64);
	struct filter_stats st;

	/* Unsolicited inbound: dropped. */
	ck_assert_int_eq(in(f, ct, "100.64.0.9", "100.64.0.2", TCP, 80, 5555, 0), FILTER_DROP_POLICY);
	/* This node connects out; the replies pass, nothing else does. */
	out(ct, "100.64.0.2", "100.64.0.9", TCP, 5555, 80, 1);
	ck_assert_int_eq(in(f, ct, "100.64.0.9", "100.64.0.2", TCP, 80, 5555, 2),
			 FILTER_ACCEPT_ESTABLISHED);
	ck_assert_int_eq(in(f, ct, "100.64.0.9", "100.64.0.2", TCP, 81, 5555, 2), FILTER_DROP_POLICY);
	ck_assert_int_eq(in(f, ct, "100.64.0.9", "100.64.0.2", TCP, 80, 5556, 2), FILTER_DROP_POLICY);
	ck_assert_int_eq(in(f, ct, "100.64.0.8", "100.64.0.2", TCP, 80, 5555, 2), FILTER_DROP_POLICY);
	ck_assert_int_eq(in(f, ct, "100.64.0.9", "100.64.0.2", UDP, 80, 5555, 2), FILTER_DROP_POLICY);
	/* The peer cannot open the reverse direction with the same ports. */
	ck_assert_int_eq(in(f, ct, "100.64.0.9", "100.64.0.2", TCP, 5555, 80, 2), FILTER_DROP_POLICY);
	/* UDP and IPv6. */
	out(ct, "fd7a:115c:a1e0::2", "fd7a:115c:a1e0::9", UDP, 4000, 53, 3);
	ck_assert_int_eq(in(f, ct, "fd7a:115c:a1e0::9", "fd7a:115c:a1e0::2", UDP, 53, 4000, 4),
			 FILTER_ACCEPT_ESTABLISHED);
	ck_assert_int_eq(in(f, ct, "fd7a:115c:a1e0::9", "fd7a:115c:a1e0::3", UDP, 53, 4000, 4),
			 FILTER_DROP_POLICY);
	/* Idle expiry; a reply refreshes the flow. */
	ck_assert_int_eq(in(f, ct, "fd7a:115c:a1e0::9", "fd7a:115c:a1e0::2", UDP, 53, 4000,
			    4 + CONNTRACK_UDP_IDLE_MS - 1), FILTER_ACCEPT_ESTABLISHED);
	ck_assert_int_eq(in(f, ct, "fd7a:115c:a1e0::9", "fd7a:115c:a1e0::2", UDP, 53, 4000,
			    3 * CONNTRACK_UDP_IDLE_MS), FILTER_DROP_POLICY);
	ck_assert_int_eq(in(f, ct, "100.64.0.9", "100.64.0.2", TCP, 80, 5555,
			    2 + CONNTRACK_TCP_IDLE_MS), FILTER_DROP_POLICY);
	conntrack_stats(ct, &st);
	ck_assert_uint_eq(st.accepted_established, 3);
	ck_assert_uint_eq(st.dropped_policy, 9);
	conntrack_free(ct);
	filter_free(f);
}
END_TEST

START_TEST(test_icmp)
{
	struct conntrack *ct = conntrack_new(64);
	struct wm_filter *f = parse_ok("[]");
	uint8_t b[256], q[128];
	size_t n;

	/* Echo reply after an outbound echo request, same id only. */
	ck_assert_int_eq(in(f, ct, "100.64.0.9", "100.64.0.2", ICMP, 0, 77, 0), FILTER_DROP_POLICY);
	out(ct, "100.64.0.2", "100.64.0.9", ICMP, 8, 77, 1);
	ck_assert_int_eq(in(f, ct, "100.64.0.9", "100.64.0.2", ICMP, 0, 77, 2),
			 FILTER_ACCEPT_ESTABLISHED);
	ck_assert_int_eq(in(f, ct, "100.64.0.9", "100.64.0.2", ICMP, 0, 78, 2), FILTER_DROP_POLICY);
	/* An echo request with the tracked id is not a reply. */
	ck_assert_int_eq(in(f, ct, "100.64.0.9", "100.64.0.2", ICMP, 8, 77, 2), FILTER_DROP_POLICY);
	ck_assert_int_eq(in(f, ct, "100.64.0.9", "100.64.0.2", ICMP, 0, 77,
			    2 + CONNTRACK_ICMP_IDLE_MS), FILTER_DROP_POLICY);
	/* ICMPv6. */
	out(ct, "fd7a:115c:a1e0::2", "fd7a:115c:a1e0::9", ICMP6, 128, 5, 10);
	ck_assert_int_eq(in(f, ct, "fd7a:115c:a1e0::9", "fd7a:115c:a1e0::2", ICMP6, 129, 5, 11),
			 FILTER_ACCEPT_ESTABLISHED);
	ck_assert_int_eq(in(f, ct, "fd7a:115c:a1e0::9", "fd7a:115c:a1e0::2", ICMP6, 129, 6, 11),
			 FILTER_DROP_POLICY);
	/* An ICMP error quoting a tracked TCP flow passes; one quoting another does not. */
	out(ct, "100.64.0.2", "100.64.0.9", TCP, 6000, 443, 20);
	mk(q, "100.64.0.2", "100.64.0.9", TCP, 6000, 443);
	n = mk(b, "100.64.0.9", "100.64.0.2", ICMP, 3, 0);
	memcpy(b + n, q, 28);		/* IP header + 8 bytes, as routers quote */
	n += 28;
	b[2] = (uint8_t)(n >> 8);
	b[3] = (uint8_t)n;
	ck_assert_int_eq(filter_check_inbound(f, ct, b, n, 21), FILTER_ACCEPT_ESTABLISHED);
	b[20 + 8 + 20 + 3] ^= 1;	/* quoted destination port */
	ck_assert_int_eq(filter_check_inbound(f, ct, b, n, 21), FILTER_DROP_POLICY);
	conntrack_free(ct);
	filter_free(f);
}
END_TEST

START_TEST(test_table_bound)
{
	struct conntrack *ct = conntrack_new(4);
	struct wm_filter *f = parse_ok("[]");
	uint16_t port;

	for (port = 1000; port < 1010; port++)
		out(ct, "100.64.0.2", "100.64.0.9", UDP, port, 53, port);
	ck_assert_uint_eq(conntrack_count(ct), 4);
	/* The oldest were evicted; the four newest pass. */
	for (port = 1000; port < 1006; port++)
		ck_assert_int_eq(in(f, ct, "100.64.0.9", "100.64.0.2", UDP, 53, port, 2000),
				 FILTER_DROP_POLICY);
	for (port = 1006; port < 1010; port++)
		ck_assert_int_eq(in(f, ct, "100.64.0.9", "100.64.0.2", UDP, 53, port, 2000),
				 FILTER_ACCEPT_ESTABLISHED);
	/* Replies refresh flows: touched 1009 first and 1006 last, 1009 is now the
	 * least recently used and a new flow evicts it. */
	for (port = 1009; port >= 1006; port--)
		ck_assert_int_eq(in(f, ct, "100.64.0.9", "100.64.0.2", UDP, 53, port, 3000),
				 FILTER_ACCEPT_ESTABLISHED);
	out(ct, "100.64.0.2", "100.64.0.9", UDP, 2000, 53, 4000);
	ck_assert_int_eq(in(f, ct, "100.64.0.9", "100.64.0.2", UDP, 53, 1009, 5000), FILTER_DROP_POLICY);
	ck_assert_int_eq(in(f, ct, "100.64.0.9", "100.64.0.2", UDP, 53, 1006, 5000),
			 FILTER_ACCEPT_ESTABLISHED);
	ck_assert_uint_eq(conntrack_count(ct), 4);
	/* Many flows through a small table stay consistent. */
	for (port = 0; port < 5000; port++)
		out(ct, "fd7a:115c:a1e0::2", "fd7a:115c:a1e0::9", TCP, port, 22, 6000 + port);
	ck_assert_uint_eq(conntrack_count(ct), 4);
	ck_assert_int_eq(in(f, ct, "fd7a:115c:a1e0::9", "fd7a:115c:a1e0::2", TCP, 22, 4999, 20000),
			 FILTER_ACCEPT_ESTABLISHED);
	conntrack_free(ct);
	ct = conntrack_new(0);
	ck_assert_ptr_nonnull(ct);
	conntrack_free(ct);
	filter_free(f);
}
END_TEST

START_TEST(test_malformed)
{
	struct wm_filter *f = parse_ok(
		"[{\"IPProto\":[6,17,1,58,47],\"Srcs\":[\"*\"],\"Dsts\":[{\"Net\":\"*\"}]}]");
	struct conntrack *ct = conntrack_new(8);
	struct filter_stats st;
	uint8_t b[256];
	size_t n, i, bad = 0;

#define BAD(len) do { \
	ck_assert_int_eq(filter_check_inbound(f, ct, b, (len), 0), FILTER_DROP_MALFORMED); \
	ck_assert_int_eq(filter_check_inbound(NULL, NULL, b, (len), 0), FILTER_DROP_MALFORMED); \
	conntrack_note_outbound(ct, b, (len), 0); \
	bad++; } while (0)

	ck_assert_int_eq(filter_check_inbound(f, ct, NULL, 0, 0), FILTER_DROP_MALFORMED);
	bad++;
	/* Every truncation of a TCP packet, v4 and v6. */
	n = mk(b, "100.64.0.1", "100.64.0.2", TCP, 1, 2);
	for (i = 0; i < n; i++)
		BAD(i);
	n = mk(b, "2001:db8::1", "2001:db8::2", TCP, 1, 2);
	for (i = 0; i < n; i++)
		BAD(i);
	n = mk(b, "100.64.0.1", "100.64.0.2", UDP, 1, 2);
	for (i = 0; i < n; i++)
		BAD(i);
	ck_assert_int_eq(filter_check_inbound(f, ct, b, n, 0), FILTER_ACCEPT);
	/* Bad version, bad header lengths, lengths that disagree. */
	b[0] = 0x55;
	BAD(n);
	b[0] = 0x44;
	BAD(n);
	b[0] = 0x4f;		/* IHL 60 > packet */
	BAD(n);
	b[0] = 0x45;
	b[3] = (uint8_t)(n + 1);
	BAD(n);
	b[3] = 19;
	BAD(n);
	b[3] = (uint8_t)n;
	/* Padding after the IP total length is fine. */
	ck_assert_int_eq(filter_check_inbound(f, ct, b, n + 5, 0), FILTER_ACCEPT);
	/* Non-first fragment of UDP: no ports to judge (unless no filter).
	 * First fragment: fine. */
	b[6] = 0x00;
	b[7] = 0x10;
	ck_assert_int_eq(filter_check_inbound(f, ct, b, n, 0), FILTER_DROP_MALFORMED);
	bad++;
	ck_assert_int_eq(filter_check_inbound(NULL, NULL, b, n, 0), FILTER_ACCEPT);
	b[6] = 0x20;
	b[7] = 0;
	ck_assert_int_eq(filter_check_inbound(f, ct, b, n, 0), FILTER_ACCEPT);
	/* A non-first fragment of a portless protocol is judged on addresses. */
	n = mk(b, "100.64.0.1", "100.64.0.2", GRE, 1, 2);
	b[7] = 0x10;
	ck_assert_int_eq(filter_check_inbound(f, ct, b, n, 0), FILTER_ACCEPT);
	/* Bad TCP data offset. */
	n = mk(b, "100.64.0.1", "100.64.0.2", TCP, 1, 2);
	b[20 + 12] = 4 << 4;
	BAD(n);
	b[20 + 12] = 6 << 4;
	BAD(n);
	/* IPv6: payload length beyond the packet; extension headers. */
	n = mk(b, "2001:db8::1", "2001:db8::2", UDP, 1, 2);
	b[5] = 9;
	BAD(n);
	{
		uint8_t v6[256];
		size_t k;

		/* Hop-by-hop + destination options, then UDP: accepted. */
		n = mk(b, "2001:db8::1", "2001:db8::2", UDP, 1, 2);
		memcpy(v6, b, 40);
		v6[6] = 0;
		memset(v6 + 40, 0, 16);
		v6[40] = 60;
		v6[48] = UDP;
		memcpy(v6 + 56, b + 40, 8);
		v6[5] = 24;
		ck_assert_int_eq(filter_check_inbound(f, ct, v6, 64, 0), FILTER_ACCEPT);
		/* A fragment header with offset 8: non-first UDP fragment. */
		v6[6] = 44;
		memset(v6 + 40, 0, 8);
		v6[40] = UDP;
		v6[43] = 8;
		v6[5] = 16;
		memcpy(v6 + 48, b + 40, 8);
		ck_assert_int_eq(filter_check_inbound(f, ct, v6, 56, 0), FILTER_DROP_MALFORMED);
		bad++;
		v6[43] = 1;	/* offset 0, more fragments: the first one */
		ck_assert_int_eq(filter_check_inbound(f, ct, v6, 56, 0), FILTER_ACCEPT);
		/* Nine hop-by-hop headers in a row: too many. */
		v6[6] = 0;
		for (k = 0; k < 9; k++) {
			memset(v6 + 40 + 8 * k, 0, 8);
			v6[40 + 8 * k] = 0;
		}
		v6[40 + 8 * 8] = UDP;
		memcpy(v6 + 40 + 72, b + 40, 8);
		v6[5] = 80;
		ck_assert_int_eq(filter_check_inbound(f, ct, v6, 120, 0), FILTER_DROP_MALFORMED);
		bad++;
		/* An extension header running off the end. */
		v6[6] = 60;
		v6[41] = 200;
		ck_assert_int_eq(filter_check_inbound(f, ct, v6, 120, 0), FILTER_DROP_MALFORMED);
		bad++;
	}
	conntrack_stats(ct, &st);
	ck_assert_uint_eq(st.dropped_malformed, bad);
	ck_assert_uint_eq(conntrack_count(ct), 0);
	ck_assert_str_eq(filter_verdict_str(FILTER_DROP_MALFORMED), "DROP_MALFORMED");
	conntrack_free(ct);
	filter_free(f);
#undef BAD
}
END_TEST

START_TEST(test_parse_errors)
{
	static const char *bad[] = {
		"", "{}", "[1]", "[{\"IPProto\":6}]", "[{\"IPProto\":[256]}]", "[{\"IPProto\":[-1]}]",
		"[{\"IPProto\":[\"tcp\"]}]", "[{\"Srcs\":\"*\"}]", "[{\"Srcs\":[\"100.64.0.1/33\"]}]",
		"[{\"Srcs\":[\"banana\"]}]", "[{\"Srcs\":[1]}]", "[{\"Dsts\":[{\"Net\":\"*\","
		"\"Ports\":{\"First\":9,\"Last\":8}}]}]", "[{\"Dsts\":[{\"Net\":\"*\","
		"\"Ports\":{\"First\":0,\"Last\":65536}}]}]", "[{\"Dsts\":[{}]}]",
		"[{\"Dsts\":[\"*\"]}]", "[{\"Dsts\":[{\"Net\":\"*\",\"Ports\":[1,2]}]}]",
		"[{\"Dsts\":[{\"Net\":\"*\",\"Ports\":{\"First\":1}}]}]", "[", "[{\"Srcs\":[],\"Srcs\":[]}]",
	};
	struct wm_filter *f = (struct wm_filter *)&f;
	char err[200];
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = '\0';
		ck_assert_msg(filter_parse(bad[i], strlen(bad[i]), &f, err, sizeof(err)) == ERR_INVALID,
			      "%s", bad[i]);
		ck_assert_ptr_null(f);
		ck_assert_msg(err[0] != '\0', "no message for %s", bad[i]);
	}
	/* Not NUL-terminated input, and tiny error buffers. */
	ck_assert_int_eq(filter_parse("[]xyz", 2, &f, NULL, 0), 0);
	filter_free(f);
	ck_assert_int_eq(filter_parse("[x", 2, &f, err, 1), ERR_INVALID);
}
END_TEST

/* IPv4 fragment: id, offset in 8-byte units, more-fragments flag. */
static void
frag4(uint8_t *b, uint16_t id, uint16_t off, bool more)
{
	b[4] = (uint8_t)(id >> 8);
	b[5] = (uint8_t)id;
	b[6] = (uint8_t)((more ? 0x20 : 0) | (off >> 8));
	b[7] = (uint8_t)off;
}

static enum filter_verdict
later4(const struct wm_filter *f, struct conntrack *ct, const char *src, const char *dst,
       uint16_t id, int64_t now)
{
	uint8_t b[128];
	size_t n = mk(b, src, dst, UDP, 0x4142, 0x4344);	/* the "ports" are payload here */

	frag4(b, id, 185, false);
	return filter_check_inbound(f, ct, b, n, now);
}

START_TEST(test_fragments)
{
	struct wm_filter *f = parse_ok("[{\"IPProto\":[17,58],\"Srcs\":[\"100.64.0.1\",\"fd7a:115c:a1e0::1\"],"
				      "\"Dsts\":[{\"Net\":\"*\",\"Ports\":{\"First\":53,\"Last\":53}}]}]");
	struct conntrack *ct = conntrack_new(64);
	uint8_t b[128], v6[128];
	size_t n;
	int id;

	/* Unknown later fragments: unclassifiable. */
	ck_assert_int_eq(later4(f, ct, "100.64.0.1", "100.64.0.2", 0x1234, 0), FILTER_DROP_MALFORMED);
	/* The first fragment passes the rules; the rest of that packet follows it. */
	n = mk(b, "100.64.0.1", "100.64.0.2", UDP, 1000, 53);
	frag4(b, 0x1234, 0, true);
	ck_assert_int_eq(filter_check_inbound(f, ct, b, n, 10), FILTER_ACCEPT);
	ck_assert_int_eq(later4(f, ct, "100.64.0.1", "100.64.0.2", 0x1234, 11), FILTER_ACCEPT);
	ck_assert_int_eq(later4(f, ct, "100.64.0.1", "100.64.0.2", 0x1235, 11), FILTER_DROP_MALFORMED);
	ck_assert_int_eq(later4(f, ct, "100.64.0.3", "100.64.0.2", 0x1234, 11), FILTER_DROP_MALFORMED);
	ck_assert_int_eq(later4(f, ct, "100.64.0.1", "100.64.0.2", 0x1234, 10 + 30000),
			 FILTER_DROP_MALFORMED);
	/* A first fragment that is dropped takes its packet with it. */
	n = mk(b, "100.64.0.1", "100.64.0.2", UDP, 1000, 54);
	frag4(b, 0x2222, 0, true);
	ck_assert_int_eq(filter_check_inbound(f, ct, b, n, 20), FILTER_DROP_POLICY);
	ck_assert_int_eq(later4(f, ct, "100.64.0.1", "100.64.0.2", 0x2222, 21), FILTER_DROP_MALFORMED);
	/* A fragmented reply of a tracked flow. */
	out(ct, "100.64.0.2", "100.64.0.9", UDP, 4000, 5000, 30);
	n = mk(b, "100.64.0.9", "100.64.0.2", UDP, 5000, 4000);
	frag4(b, 0x3333, 0, true);
	ck_assert_int_eq(filter_check_inbound(f, ct, b, n, 31), FILTER_ACCEPT_ESTABLISHED);
	ck_assert_int_eq(later4(f, ct, "100.64.0.9", "100.64.0.2", 0x3333, 32),
			 FILTER_ACCEPT_ESTABLISHED);
	/* IPv6: fragment header, id 0xdeadbeef. */
	n = mk(b, "fd7a:115c:a1e0::1", "fd7a:115c:a1e0::2", UDP, 1000, 53);
	memcpy(v6, b, 40);
	v6[6] = 44;
	v6[5] = 16;
	memset(v6 + 40, 0, 8);
	v6[40] = UDP;
	v6[43] = 1;			/* offset 0, M */
	v6[44] = 0xde, v6[45] = 0xad, v6[46] = 0xbe, v6[47] = 0xef;
	memcpy(v6 + 48, b + 40, 8);
	ck_assert_int_eq(filter_check_inbound(f, ct, v6, 56, 40), FILTER_ACCEPT);
	v6[42] = 0x05;			/* offset 160 units */
	v6[43] = 0x00;
	ck_assert_int_eq(filter_check_inbound(f, ct, v6, 56, 41), FILTER_ACCEPT);
	v6[47] = 0xee;
	ck_assert_int_eq(filter_check_inbound(f, ct, v6, 56, 41), FILTER_DROP_MALFORMED);
	/* Without a filter every well-formed fragment passes. */
	ck_assert_int_eq(later4(NULL, ct, "100.64.0.7", "100.64.0.2", 0x7777, 50), FILTER_ACCEPT);
	/* Bounded: the 64 most recent first fragments are remembered. */
	for (id = 0; id < 100; id++) {
		n = mk(b, "100.64.0.1", "100.64.0.2", UDP, 1000, 53);
		frag4(b, (uint16_t)(0x8000 + id), 0, true);
		ck_assert_int_eq(filter_check_inbound(f, ct, b, n, 100 + id), FILTER_ACCEPT);
	}
	for (id = 0; id < 100; id++)
		ck_assert_int_eq(later4(f, ct, "100.64.0.1", "100.64.0.2", (uint16_t)(0x8000 + id), 300),
				 id < 36 ? FILTER_DROP_MALFORMED : FILTER_ACCEPT);
	/* Fragments never take flows' places. */
	ck_assert_uint_eq(conntrack_count(ct), 1);
	conntrack_free(ct);
	filter_free(f);
}
END_TEST

/* Several threads recording flows and checking replies on one table: no
 * crash or deadlock, every verdict counted, the bound held. (Run under
 * -fsanitize=thread by hand for races.) */
static struct conntrack *shared_ct;
static struct wm_filter *shared_f;

static void *
hammer(void *arg)
{
	int t = (int)(intptr_t)arg, i;
	char me[32];

	snprintf(me, sizeof(me), "100.64.0.%d", 10 + t);
	for (i = 0; i < 20000; i++) {
		out(shared_ct, me, "100.64.0.9", UDP, (uint16_t)(1024 + i % 500), 53, i);
		(void)in(shared_f, shared_ct, "100.64.0.9", me, UDP, 53, (uint16_t)(1024 + (i + 497) % 500), i);
		if (i % 1000 == 0) {
			struct filter_stats st;

			conntrack_stats(shared_ct, &st);
			ck_assert_uint_le(conntrack_count(shared_ct), 300);
		}
	}
	return NULL;
}

START_TEST(test_threads)
{
	pthread_t th[4];
	struct filter_stats st;
	intptr_t i;

	shared_ct = conntrack_new(300);
	shared_f = parse_ok("[]");
	for (i = 0; i < 4; i++)
		ck_assert_int_eq(pthread_create(&th[i], NULL, hammer, (void *)i), 0);
	for (i = 0; i < 4; i++)
		ck_assert_int_eq(pthread_join(th[i], NULL), 0);
	conntrack_stats(shared_ct, &st);
	ck_assert_uint_eq(st.accepted + st.accepted_established + st.dropped_policy +
			  st.dropped_malformed, 4 * 20000);
	ck_assert_uint_gt(st.accepted_established, 0);
	ck_assert_uint_eq(st.accepted + st.dropped_malformed, 0);
	ck_assert_uint_le(conntrack_count(shared_ct), 300);
	conntrack_free(shared_ct);
	filter_free(shared_f);
}
END_TEST

/* ---- differential test against a naive reference ---- */

struct nprefix { int family; uint8_t a[16]; int bits; };
struct ndst { struct nprefix p; int first, last; };
struct nrule {
	int protos[8]; int nprotos;	/* nprotos 0: default set */
	struct nprefix srcs[24]; int nsrcs;
	struct ndst dsts[4]; int ndsts;
};

static bool
naive_in(const struct nprefix *p, int family, const uint8_t *a)
{
	int i;

	if (p->family != family)
		return false;
	for (i = 0; i < p->bits; i++) {
		int bit = 7 - i % 8;

		if (((p->a[i / 8] >> bit) & 1) != ((a[i / 8] >> bit) & 1))
			return false;
	}
	return true;
}

static bool
naive_allows(const struct nrule *r, int nr, int family, const uint8_t *src, const uint8_t *dst,
	     int proto, int dport)
{
	int i, j;

	for (i = 0; i < nr; i++) {
		bool proto_ok = false, src_ok = false;

		if (r[i].nprotos == 0)
			proto_ok = proto == TCP || proto == UDP || proto == ICMP || proto == ICMP6;
		for (j = 0; j < r[i].nprotos; j++)
			proto_ok |= r[i].protos[j] == proto;
		for (j = 0; j < r[i].nsrcs; j++)
			src_ok |= naive_in(&r[i].srcs[j], family, src);
		if (!proto_ok || !src_ok)
			continue;
		for (j = 0; j < r[i].ndsts; j++) {
			const struct ndst *d = &r[i].dsts[j];
			bool ported = proto == TCP || proto == UDP || proto == SCTP;

			if (naive_in(&d->p, family, dst) &&
			    (!ported || (dport >= d->first && dport <= d->last)))
				return true;
		}
	}
	return false;
}

/* Addresses near a few bases so prefixes and packets collide often. */
static void
rand_addr(unsigned *seed, int family, uint8_t *a)
{
	static const uint8_t base4[3][4] = { { 100, 64, 0, 0 }, { 10, 0, 0, 0 }, { 192, 0, 2, 0 } };
	static const uint8_t base6[2][16] = {
		{ 0xfd, 0x7a, 0x11, 0x5c, 0xa1, 0xe0 }, { 0x20, 0x01, 0x0d, 0xb8 } };

	if (family == AF_INET) {
		memcpy(a, base4[rand_r(seed) % 3], 4);
		a[3] = (uint8_t)(rand_r(seed) % 8);
		if (rand_r(seed) % 4 == 0)
			a[2] = (uint8_t)(rand_r(seed) % 4);
	} else {
		memcpy(a, base6[rand_r(seed) % 2], 16);
		a[15] = (uint8_t)(rand_r(seed) % 8);
		if (rand_r(seed) % 4 == 0)
			a[6] = (uint8_t)(rand_r(seed) % 4);
	}
}

static void
rand_prefix(unsigned *seed, struct nprefix *p, char *out, size_t cap)
{
	struct ip_prefix ip;
	char s[ADDR_STR_MAX];
	int max;

	p->family = rand_r(seed) % 2 ? AF_INET : AF_INET6;
	max = p->family == AF_INET ? 32 : 128;
	memset(p->a, 0, sizeof(p->a));
	rand_addr(seed, p->family, p->a);
	switch (rand_r(seed) % 5) {
	case 0:
	case 4:
		p->bits = max;
		break;
	case 1:
		p->bits = max - 1 - rand_r(seed) % 4;
		break;
	case 2:
		p->bits = max - 8 - rand_r(seed) % 16;
		break;
	default:
		p->bits = rand_r(seed) % (max + 1);
	}
	/* Host bits are cleared by the parser (lenient), so the reference clears them too. */
	memset(&ip, 0, sizeof(ip));
	ip.addr.family = p->family;
	memcpy(ip.addr.b, p->a, 16);
	ip.bits = p->bits;
	prefix_mask(&ip);
	memcpy(p->a, ip.addr.b, 16);
	prefix_fmt(s, &ip);
	snprintf(out, cap, "\"%s\"", s);
}

START_TEST(test_differential)
{
	static const int protos[] = { TCP, UDP, ICMP, ICMP6, SCTP, GRE };
	unsigned seed = 12345;
	int round;

	for (round = 0; round < 200; round++) {
		struct nrule r[6];
		int nr = rand_r(&seed) % 6, i, j, k;
		char json[16384], item[128];
		size_t len = 0;
		struct wm_filter *f;

		len += (size_t)snprintf(json + len, sizeof(json) - len, "[");
		for (i = 0; i < nr; i++) {
			r[i].nprotos = rand_r(&seed) % 3;
			len += (size_t)snprintf(json + len, sizeof(json) - len, "%s{", i ? "," : "");
			if (r[i].nprotos > 0 || rand_r(&seed) % 2) {
				len += (size_t)snprintf(json + len, sizeof(json) - len, "\"IPProto\":[");
				for (j = 0; j < r[i].nprotos; j++) {
					r[i].protos[j] = protos[rand_r(&seed) % 6];
					len += (size_t)snprintf(json + len, sizeof(json) - len, "%s%d",
								j ? "," : "", r[i].protos[j]);
				}
				len += (size_t)snprintf(json + len, sizeof(json) - len, "],");
			}
			r[i].nsrcs = 0;
			len += (size_t)snprintf(json + len, sizeof(json) - len, "\"Srcs\":[");
			k = rand_r(&seed) % 11;
			for (j = 0; j < k; j++) {
				if (rand_r(&seed) % 8 == 0) {
					/* "*" is both families' everything. */
					memset(&r[i].srcs[r[i].nsrcs], 0, 2 * sizeof(r[i].srcs[0]));
					r[i].srcs[r[i].nsrcs++].family = AF_INET;
					r[i].srcs[r[i].nsrcs++].family = AF_INET6;
					snprintf(item, sizeof(item), "\"*\"");
				} else {
					rand_prefix(&seed, &r[i].srcs[r[i].nsrcs++], item, sizeof(item));
				}
				len += (size_t)snprintf(json + len, sizeof(json) - len, "%s%s",
							j ? "," : "", item);
			}
			len += (size_t)snprintf(json + len, sizeof(json) - len, "],\"Dsts\":[");
			r[i].ndsts = 0;
			k = rand_r(&seed) % 3;
			for (j = 0; j < k; j++) {
				struct ndst *d = &r[i].dsts[r[i].ndsts++];

				rand_prefix(&seed, &d->p, item, sizeof(item));
				d->first = rand_r(&seed) % 30;
				d->last = d->first + rand_r(&seed) % 10;
				if (rand_r(&seed) % 5 == 0)
					d->first = 0, d->last = 65535;
				len += (size_t)snprintf(json + len, sizeof(json) - len,
						       "%s{\"Net\":%s,\"Ports\":{\"First\":%d,\"Last\":%d}}",
						       j ? "," : "", item, d->first, d->last);
			}
			len += (size_t)snprintf(json + len, sizeof(json) - len, "]}");
		}
		len += (size_t)snprintf(json + len, sizeof(json) - len, "]");
		ck_assert_uint_lt(len, sizeof(json) - 1);
		f = parse_ok(json);
		for (i = 0; i < 500; i++) {
			int family = rand_r(&seed) % 2 ? AF_INET : AF_INET6;
			int proto = protos[rand_r(&seed) % 6];
			uint16_t dport = (uint16_t)(rand_r(&seed) % 40);
			uint8_t s[16] = { 0 }, d[16] = { 0 }, b[128];
			char ss[ADDR_STR_MAX], ds[ADDR_STR_MAX];
			struct ip_addr sa, da;
			enum filter_verdict want, got;
			size_t n;

			rand_addr(&seed, family, s);
			rand_addr(&seed, family, d);
			sa.family = da.family = family;
			memcpy(sa.b, s, 16);
			memcpy(da.b, d, 16);
			addr_fmt(ss, &sa);
			addr_fmt(ds, &da);
			if (proto == ICMP && family == AF_INET6)
				proto = ICMP6;
			n = mk(b, ss, ds, (uint8_t)proto, 7, dport);
			want = naive_allows(r, nr, family, s, d, proto, dport) ? FILTER_ACCEPT
									      : FILTER_DROP_POLICY;
			got = filter_check_inbound(f, NULL, b, n, 0);
			ck_assert_msg(got == want, "rules %s: %s -> %s proto %d port %d: got %d want %d",
				      json, ss, ds, proto, dport, got, want);
		}
		filter_free(f);
	}
}
END_TEST

Suite *
filter_suite(void)
{
	Suite *s = suite_create("filter");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, test_rules);
	tcase_add_test(tc, test_defaults_and_star);
	tcase_add_test(tc, test_established);
	tcase_add_test(tc, test_icmp);
	tcase_add_test(tc, test_table_bound);
	tcase_add_test(tc, test_malformed);
	tcase_add_test(tc, test_fragments);
	tcase_add_test(tc, test_threads);
	tcase_add_test(tc, test_parse_errors);
	tcase_add_test(tc, test_differential);
	suite_add_tcase(s, tc);
	return s;
}
