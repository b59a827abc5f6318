// SPDX-License-Identifier: MIT
/* client-agent/dns_msg (DNS codec) and the resolver's local answers:
 * query parsing (EDNS0, bounds, compression loops and forward pointers),
 * name compression in answers, truncation, reverse names, and the answers
 * for node names, extra records, PTR and NXDOMAIN. Answers are checked by
 * decoding them again with the parser and by exact bytes where the wire
 * form is fixed (RFC 1035 4.1.4 compression). */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "client-agent/dns_msg.h"
#include "client-agent/resolver.h"

/* Encodes a query by hand (independent of the builder). */
static size_t
mkq(uint8_t *b, const char *name, uint16_t type, bool edns)
{
	size_t n = 12, lab;
	const char *s = name;

	memset(b, 0, 12);
	b[0] = 0xAB;
	b[1] = 0xCD;
	b[2] = 0x01;	/* RD */
	b[5] = 1;
	while (*s) {
		const char *dot = strchr(s, '.');

		lab = dot ? (size_t)(dot - s) : strlen(s);
		b[n++] = (uint8_t)lab;
		memcpy(b + n, s, lab);
		n += lab;
		s += lab + (dot ? 1 : 0);
	}
	b[n++] = 0;
	b[n++] = (uint8_t)(type >> 8);
	b[n++] = (uint8_t)type;
	b[n++] = 0;
	b[n++] = 1;
	if (edns) {
		static const uint8_t opt[] = { 0, 0, 41, 0x10, 0x00, 0, 0, 0, 0, 0, 0 };

		b[11] = 1;
		memcpy(b + n, opt, sizeof(opt));
		n += sizeof(opt);
	}
	return n;
}

START_TEST(query_parse)
{
	uint8_t b[512];
	struct dns_query q;
	size_t n = mkq(b, "Node2.Mesh.Test", DNS_T_AAAA, true);

	ck_assert_int_eq(dns_query_parse(b, n, &q), 0);
	ck_assert_str_eq(q.name, "node2.mesh.test");
	ck_assert_uint_eq(q.qtype, DNS_T_AAAA);
	ck_assert_uint_eq(q.id, 0xABCD);
	ck_assert(q.edns);
	ck_assert_uint_eq(q.edns_size, 4096);
	ck_assert_uint_eq(q.qend, 12 + 17 + 4);
	/* every truncation is an error, never a crash */
	for (size_t k = 0; k < n; k++)
		ck_assert_int_ne(dns_query_parse(b, k, &q), 0);
	/* a response is not a query */
	b[2] |= 0x80;
	ck_assert_int_ne(dns_query_parse(b, n, &q), 0);
}
END_TEST

START_TEST(name_pointers)
{
	uint8_t b[64] = { 0x12, 0x34, 0x01, 0, 0, 1, 0, 0, 0, 0, 0, 0 };
	struct dns_query q;
	char out[DNS_TEXT_MAX];
	size_t off;

	/* a pointer to itself */
	b[12] = 0xC0; b[13] = 12; b[14] = 0; b[15] = 1; b[16] = 0; b[17] = 1;
	ck_assert_int_ne(dns_query_parse(b, 18, &q), 0);
	/* a pointer forwards */
	b[12] = 0xC0; b[13] = 14; b[14] = 1; b[15] = 'a'; b[16] = 0;
	ck_assert_int_ne(dns_query_parse(b, 21, &q), 0);
	/* into the header */
	b[13] = 2;
	ck_assert_int_ne(dns_query_parse(b, 21, &q), 0);
	/* a backward pointer whose label runs past the name's end into the
	 * OPT record after the question (a reply, which repeats the question
	 * alone, could not be read back: found by fuzz_dns) */
	{
		static const uint8_t m[31] = { 0x12, 0x34, 0x01, 0, 0, 1, 0, 0, 0, 0, 0, 1,
			0x01, 0x09, 0xC0, 0x0D, 0, 1, 0, 1,
			0, 0, 41, 0, 0x80, 0, 0, 0, 0, 0, 0 };
		uint8_t r[64];
		struct dns_msg_info mi;

		ck_assert_int_ne(dns_query_parse(m, sizeof(m), &q), 0);
		/* what the old parser accepted: its reply did not parse */
		memcpy(r, m, 20);
		r[11] = 0;
		r[2] |= 0x80;
		ck_assert_int_ne(dns_msg_parse(r, 20, &mi), 0);
	}
	/* a good backward pointer */
	memcpy(b + 12, "\x01" "a\x01" "b\x00\xc0\x0e", 8);
	off = 17;
	ck_assert_int_eq(dns_name_read(b, 19, &off, out), 0);
	ck_assert_str_eq(out, "b");
	ck_assert_uint_eq(off, 19);
	/* odd bytes are escaped, so a label with a dot stays one label */
	memcpy(b + 12, "\x03" "a.b\x00", 5);
	off = 12;
	ck_assert_int_eq(dns_name_read(b, 17, &off, out), 0);
	ck_assert_str_eq(out, "a\\046b");
	/* a 64-byte label is invalid (0x40 is a reserved label type) */
	b[12] = 64;
	off = 12;
	ck_assert_int_ne(dns_name_read(b, 64, &off, out), 0);
}
END_TEST

START_TEST(compression)
{
	uint8_t buf[512], q[128];
	struct dns_builder b;
	struct dns_query dq;
	struct ip_addr a;
	size_t n, qn = mkq(q, "node2.mesh.test", DNS_T_PTR, false);
	static const uint8_t want_tail[] = {
		0xC0, 0x0C, 0, 12, 0, 1, 0, 0, 0x02, 0x58, 0, 8,	/* owner = question */
		5, 'n', 'o', 'd', 'e', '3', 0xC0, 0x12,			/* node3 + "mesh.test" */
	};

	ck_assert_int_eq(dns_query_parse(q, qn, &dq), 0);
	ck_assert_int_eq(dns_build_begin(&b, buf, sizeof(buf), &dq, 0, true), 0);
	ck_assert(dns_build_ptr(&b, "node2.mesh.test", 600, "node3.mesh.test"));
	n = dns_build_end(&b);
	ck_assert_uint_eq(n, qn + sizeof(want_tail));
	ck_assert_mem_eq(buf + qn, want_tail, sizeof(want_tail));
	ck_assert_uint_eq(buf[2], 0x85);	/* QR AA RD */
	ck_assert_uint_eq(buf[7], 1);
	/* it parses back */
	{
		struct dns_msg_info mi;

		ck_assert_int_eq(dns_msg_parse(buf, n, &mi), 0);
		ck_assert_uint_eq(mi.an, 1);
		ck_assert_str_eq(mi.qname, "node2.mesh.test");
	}
	/* a record that does not fit sets TC and leaves the message whole */
	ck_assert_int_eq(addr_parse("100.64.0.2", &a), 0);
	ck_assert_int_eq(dns_build_begin(&b, buf, qn + 16 + 10, &dq, 0, true), 0);
	ck_assert(dns_build_addr(&b, "node2.mesh.test", 60, &a));
	ck_assert(!dns_build_addr(&b, "other.example", 60, &a));
	n = dns_build_end(&b);
	ck_assert_uint_eq(n, qn + 16);
	ck_assert(buf[2] & 0x02);
	ck_assert_uint_eq(buf[7], 1);
}
END_TEST

START_TEST(reverse_names)
{
	struct ip_addr a, b;
	char name[DNSNAME_MAX];

	ck_assert_int_eq(addr_parse("100.64.0.2", &a), 0);
	dns_ptr_name(name, &a);
	ck_assert_str_eq(name, "2.0.64.100.in-addr.arpa");
	ck_assert(dns_ptr_addr(name, &b) && addr_equal(&a, &b));
	ck_assert_int_eq(addr_parse("fd7a:115c:a1e0::2", &a), 0);
	dns_ptr_name(name, &a);
	ck_assert_str_eq(name, "2.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.e.1.a.c.5.1.1.a.7.d.f.ip6.arpa");
	ck_assert(dns_ptr_addr(name, &b) && addr_equal(&a, &b));
	ck_assert(!dns_ptr_addr("2.0.64.in-addr.arpa", &b));
	ck_assert(!dns_ptr_addr("2.0.64.300.in-addr.arpa", &b));
	ck_assert(!dns_ptr_addr("x.0.64.100.in-addr.arpa", &b));
}
END_TEST

static struct resolver *
mkres(void)
{
	struct resolver *r;
	struct resolver_config *c = calloc(1, sizeof(*c));
	struct resolver_host h[2];

	ck_assert_ptr_nonnull(c);
	ck_assert_int_eq(resolver_new(-1, 0, &r), 0);
	c->magic_dns = true;
	strcpy(c->base_domain, "mesh.test");
	strcpy(c->extra[0].name, "grafana.mesh.test");
	ck_assert_int_eq(addr_parse("100.64.0.99", &c->extra[0].addr), 0);
	c->nextra = 1;
	resolver_set_config(r, c);
	memset(h, 0, sizeof(h));
	strcpy(h[0].name, "node1");
	ck_assert_int_eq(addr_parse("100.64.0.1", &h[0].a4), 0);
	ck_assert_int_eq(addr_parse("fd7a:115c:a1e0::1", &h[0].a6), 0);
	strcpy(h[1].name, "Node2");
	ck_assert_int_eq(addr_parse("100.64.0.2", &h[1].a4), 0);
	resolver_set_hosts(r, h, 2, &h[0].a4, &h[0].a6);
	free(c);
	return r;
}

/* Asks the local data; returns rcode and the first answer's data bytes. */
static int
ask(struct resolver *r, const char *name, uint16_t type, unsigned *an, uint8_t *data, size_t *dlen)
{
	uint8_t q[300], out[1500];
	size_t qn = mkq(q, name, type, false), n = resolver_answer_local(r, q, qn, out, sizeof(out));
	struct dns_msg_info mi;

	*an = 0;
	if (n == 0)
		return -1;
	ck_assert_int_eq(dns_msg_parse(out, n, &mi), 0);
	ck_assert_uint_eq(mi.id, 0xABCD);
	*an = mi.an;
	if (mi.an && data) {
		size_t off = 12;
		char tmp[DNS_TEXT_MAX];

		ck_assert_int_eq(dns_name_read(out, n, &off, tmp), 0);
		off += 4;
		ck_assert_int_eq(dns_name_read(out, n, &off, tmp), 0);
		*dlen = (size_t)(out[off + 8] << 8 | out[off + 9]);
		memcpy(data, out + off + 10, *dlen);
	}
	return mi.flags & 0xF;
}

START_TEST(local_answers)
{
	struct resolver *r = mkres();
	uint8_t d[300];
	size_t dl;
	unsigned an;
	char txt[DNS_TEXT_MAX];

	ck_assert_int_eq(ask(r, "node2.mesh.test", DNS_T_A, &an, d, &dl), 0);
	ck_assert_uint_eq(an, 1);
	ck_assert_uint_eq(dl, 4);
	ck_assert_mem_eq(d, "\x64\x40\x00\x02", 4);
	ck_assert_int_eq(ask(r, "NODE1.mesh.test.", DNS_T_AAAA, &an, d, &dl), 0);
	ck_assert_uint_eq(an, 1);
	ck_assert_uint_eq(dl, 16);
	ck_assert_int_eq(ask(r, "node2.mesh.test", DNS_T_AAAA, &an, NULL, NULL), 0);
	ck_assert_uint_eq(an, 0);		/* NODATA: no IPv6 */
	ck_assert_int_eq(ask(r, "node1.mesh.test", DNS_T_ANY, &an, NULL, NULL), 0);
	ck_assert_uint_eq(an, 2);
	ck_assert_int_eq(ask(r, "node2", DNS_T_A, &an, NULL, NULL), 0);
	ck_assert_uint_eq(an, 1);
	ck_assert_int_eq(ask(r, "nope.mesh.test", DNS_T_A, &an, NULL, NULL), DNS_RC_NXDOMAIN);
	ck_assert_int_eq(ask(r, "a.node2.mesh.test", DNS_T_A, &an, NULL, NULL), DNS_RC_NXDOMAIN);
	ck_assert_int_eq(ask(r, "grafana.mesh.test", DNS_T_A, &an, d, &dl), 0);
	ck_assert_mem_eq(d, "\x64\x40\x00\x63", 4);
	ck_assert_int_eq(ask(r, "2.0.64.100.in-addr.arpa", DNS_T_PTR, &an, d, &dl), 0);
	ck_assert_uint_eq(an, 1);
	{
		/* the PTR target is written in full, then read back */
		uint8_t m[300] = { 0 };
		size_t off = 12;

		memcpy(m + 12, d, dl);
		ck_assert_int_eq(dns_name_read(m, 12 + dl, &off, txt), 0);
		ck_assert_str_eq(txt, "node2.mesh.test");
	}
	ck_assert_int_eq(ask(r, "9.9.64.100.in-addr.arpa", DNS_T_PTR, &an, NULL, NULL), DNS_RC_NXDOMAIN);
	/* not ours: forwarded */
	ck_assert_int_eq(ask(r, "www.example.org", DNS_T_A, &an, NULL, NULL), -1);
	ck_assert_int_eq(ask(r, "1.2.0.192.in-addr.arpa", DNS_T_PTR, &an, NULL, NULL), -1);
	ck_assert_int_eq(ask(r, "unknown", DNS_T_A, &an, NULL, NULL), -1);
	resolver_free(r);
}
END_TEST

START_TEST(config_json)
{
	json_t *j = json_loads("{\"magic_dns\":true,\"base_domain\":\"Mesh.Test\",\"nameservers\":"
	    "{\"global\":[\"192.0.2.53\",\"bad\"],\"split\":{\"corp.test\":[\"10.0.0.53\"],"
	    "\"empty.test\":[]}},\"search_domains\":[\"a.test\",\"-bad\"],\"extra_records\":"
	    "[{\"name\":\"x.mesh.test\",\"type\":\"A\",\"value\":\"100.64.0.3\"}]}", 0, NULL);
	struct resolver_config *c = calloc(1, sizeof(*c));

	ck_assert_ptr_nonnull(j);
	resolver_config_from_json(j, c);
	ck_assert(c->magic_dns);
	ck_assert_str_eq(c->base_domain, "mesh.test");
	ck_assert_uint_eq(c->nglobal, 1);
	ck_assert_uint_eq(c->nsplit, 1);
	ck_assert_str_eq(c->split[0].domain, "corp.test");
	ck_assert_uint_eq(c->nsearch, 1);
	ck_assert_uint_eq(c->nextra, 1);
	json_decref(j);
	free(c);
}
END_TEST

START_TEST(ip_packets)
{
	/* a UDP datagram to 100.100.100.100:53 is wanted; elsewhere not */
	uint8_t p[60] = { 0x45, 0, 0, 40, 0, 0, 0x40, 0, 64, 17, 0, 0, 100, 64, 0, 1,
			  100, 100, 100, 100 };
	uint8_t p6[60] = { 0x60, 0, 0, 0, 0, 20, 17, 64 };

	ck_assert(resolver_wants(p, 40));
	ck_assert(!resolver_wants(p, 19));
	p[19] = 99;
	ck_assert(!resolver_wants(p, 40));
	memcpy(p6 + 24, "\xfd\x7a\x11\x5c\xa1\xe0\0\0\0\0\0\0\0\0\0\x53", 16);
	ck_assert(resolver_wants(p6, 60));
	p6[39] = 0x54;
	ck_assert(!resolver_wants(p6, 60));
}
END_TEST

Suite *
dns_suite(void)
{
	Suite *s = suite_create("dns");
	TCase *tc = tcase_create("codec");

	tcase_add_test(tc, query_parse);
	tcase_add_test(tc, name_pointers);
	tcase_add_test(tc, compression);
	tcase_add_test(tc, reverse_names);
	tcase_add_test(tc, local_answers);
	tcase_add_test(tc, config_json);
	tcase_add_test(tc, ip_packets);
	suite_add_tcase(s, tc);
	return s;
}
