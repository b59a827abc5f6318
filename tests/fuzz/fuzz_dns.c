// SPDX-License-Identifier: MIT
/* libFuzzer target: the MagicDNS resolver's untrusted input.
 *  - the DNS message parser (a query, and a whole upstream answer) and the
 *    name reader with compression pointers;
 *  - the name compressor: names made from the input are written into one
 *    answer with compression and must read back exactly;
 *  - the resolver's packet path (IPv4/IPv6, UDP and the TCP state machine)
 *    with the input as an IP packet from the node's own address, run on the
 *    calling thread (no worker thread; answers go nowhere: no TUN fd). */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "client-agent/resolver.c"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct resolver *R;

/* A resolver without its thread: the fuzzer calls packet() itself. */
static struct resolver *
setup(void)
{
	struct resolver *r = calloc(1, sizeof(*r));
	struct resolver_config *c = calloc(1, sizeof(*c));
	struct resolver_host h[2];

	if (r == NULL || c == NULL)
		__builtin_trap();
	pthread_once(&svc_once, svc_init);
	r->tun_fd = -1;
	r->rate = 0;
	pthread_mutex_init(&r->qmu, NULL);
	pthread_mutex_init(&r->mu, NULL);
	for (int i = 0; i < RESOLVER_MAX_PENDING; i++)
		r->pend[i].fd = -1;
	if ((r->tcp = calloc(RESOLVER_MAX_TCP, sizeof(*r->tcp))) == NULL)
		__builtin_trap();
	c->magic_dns = true;
	strcpy(c->base_domain, "mesh.test");
	strcpy(c->extra[0].name, "x.mesh.test");
	if (addr_parse("100.64.0.9", &c->extra[0].addr) != 0)
		__builtin_trap();
	c->nextra = 1;
	r->cfg = *c;	/* no nameservers: forwarded names get SERVFAIL, no sockets */
	free(c);
	memset(h, 0, sizeof(h));
	strcpy(h[0].name, "node1");
	strcpy(h[1].name, "node2");
	if (addr_parse("100.64.0.1", &h[0].a4) != 0 || addr_parse("fd7a:115c:a1e0::1", &h[0].a6) != 0 ||
	    addr_parse("100.64.0.2", &h[1].a4) != 0)
		__builtin_trap();
	resolver_set_hosts(r, h, 2, &h[0].a4, &h[0].a6);
	return r;
}

/* Makes a valid name from input bytes (or "" when nothing is left). */
static size_t
take_name(const uint8_t *d, size_t n, char out[static DNSNAME_MAX])
{
	static const char al[] = "abcdefghijklmnopqrstuvwxyz0123456789";
	size_t len = 0, lab = 0, used = 0;

	while (used < n && len < 60) {
		uint8_t c = d[used++];

		if (c == 0)
			break;
		if (c % 7 == 0 && lab > 0 && len + 1 < 60) {
			out[len++] = '.';
			lab = 0;
			continue;
		}
		out[len++] = al[c % 36];
		lab++;
	}
	if (len > 0 && out[len - 1] == '.')
		len--;
	out[len] = '\0';
	return used;
}

static void
compressor(const uint8_t *data, size_t size)
{
	uint8_t q[64] = { 0x12, 0x34, 0x01, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1, 'a', 0, 0, 12, 0, 1 };
	uint8_t buf[4096];
	char names[16][DNSNAME_MAX], back[DNS_TEXT_MAX];
	struct dns_builder b;
	struct dns_query dq;
	struct dns_msg_info mi;
	size_t k = 0, used = 0, n, off;

	if (dns_query_parse(q, 19, &dq) != 0 || dns_build_begin(&b, buf, sizeof(buf), &dq, 0, true) != 0)
		__builtin_trap();
	while (used < size && k < 16) {
		used += take_name(data + used, size - used, names[k]);
		if (names[k][0] == '\0')
			continue;
		if (!dns_build_ptr(&b, names[k], 1, names[k > 0 ? k - 1 : 0]))
			break;
		k++;
	}
	n = dns_build_end(&b);
	if (dns_msg_parse(buf, n, &mi) != 0 || mi.an != k)
		__builtin_trap();
	off = 12 + 7;
	for (size_t i = 0; i < k; i++) {
		size_t rd;

		if (dns_name_read(buf, n, &off, back) != 0 || strcmp(back, names[i]) != 0)
			__builtin_trap();
		off += 10;
		rd = off;
		if (dns_name_read(buf, n, &rd, back) != 0 || strcmp(back, names[i > 0 ? i - 1 : 0]) != 0)
			__builtin_trap();
		off += (size_t)(buf[off - 2] << 8 | buf[off - 1]);
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct dns_query q;
	struct dns_msg_info mi;
	uint8_t out[1500], pkt[1500];

	if (R == NULL)
		R = setup();
	/* 1. as a query: parse, answer locally, the answer parses back */
	if (dns_query_parse(data, size, &q) == 0) {
		size_t n = resolver_answer_local(R, data, size, out, sizeof(out));

		if (n > sizeof(out) || (n > 0 && (dns_msg_parse(out, n, &mi) != 0 || mi.id != q.id)))
			__builtin_trap();
		n = dns_reply_simple(out, sizeof(out), &q, DNS_RC_SERVFAIL, true);
		if (n > 0 && dns_msg_parse(out, n, &mi) != 0)
			__builtin_trap();
	}
	/* 2. as an upstream answer */
	if (dns_msg_parse(data, size, &mi) == 0 && mi.qd > 1)
		__builtin_trap();
	/* 3. names from the input through the compressor */
	compressor(data, size);
	/* 4. as an IP packet from this node to the resolver (UDP or TCP) */
	if (size > 0 && size <= sizeof(pkt) - 40) {
		size_t n = size;

		memcpy(pkt, data, size);
		if (n >= 20 && pkt[0] >> 4 == 4) {
			memcpy(pkt + 12, "\x64\x40\x00\x01", 4);
			memcpy(pkt + 16, "\x64\x64\x64\x64", 4);
		} else if (n >= 40 && pkt[0] >> 4 == 6) {
			memcpy(pkt + 8, R->self6.b, 16);
			memcpy(pkt + 24, svc6.b, 16);
		}
		packet(R, pkt, n, (int64_t)size);
	}
	return 0;
}
