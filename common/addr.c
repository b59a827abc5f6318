// SPDX-License-Identifier: MIT
/* Address, prefix and endpoint parsing and arithmetic. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/addr.h"

int
addr_len(const struct ip_addr *a)
{
	return a->family == AF_INET ? 4 : 16;
}

int
addr_parse(const char *s, struct ip_addr *out)
{
	struct ip_addr a;

	memset(&a, 0, sizeof(a));
	if (s == NULL || strlen(s) >= ADDR_STR_MAX)
		return ERR_INVALID;
	if (inet_pton(AF_INET, s, a.b) == 1)
		a.family = AF_INET;
	else if (inet_pton(AF_INET6, s, a.b) == 1)
		a.family = AF_INET6;
	else
		return ERR_INVALID;
	*out = a;
	return 0;
}

/*
 * Address formatting by hand: netmaps format every source prefix of every
 * filter, and printf-based inet_ntop dominated that. The output is exactly
 * inet_ntop's (RFC 5952: lowercase, no leading zeros, the longest run of
 * two or more zero groups as "::", leftmost on a tie; IPv4-mapped and
 * IPv4-compatible addresses with a dotted tail); the unit tests check it
 * against inet_ntop. Each returns the end of what it wrote, unterminated.
 */
static char *
fmt_dec(char *o, unsigned v)
{
	char t[10];
	int n = 0;

	do {
		t[n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	while (n)
		*o++ = t[--n];
	return o;
}

static char *
fmt_v4(char *o, const uint8_t *b)
{
	for (int i = 0; i < 4; i++) {
		if (i)
			*o++ = '.';
		o = fmt_dec(o, b[i]);
	}
	return o;
}

static char *
fmt_v6(char *o, const uint8_t *b)
{
	static const char hex[] = "0123456789abcdef";
	unsigned w[8];
	int best = -1, bestlen = 0;

	for (int i = 0; i < 8; i++)
		w[i] = (unsigned)b[2 * i] << 8 | b[2 * i + 1];
	for (int i = 0; i < 8;) {
		int j = i;

		while (j < 8 && w[j] == 0)
			j++;
		if (j - i > bestlen) {
			best = i;
			bestlen = j - i;
		}
		i = j > i ? j : i + 1;
	}
	if (bestlen < 2)
		best = -1;
	for (int i = 0; i < 8; i++) {
		if (i == best) {
			*o++ = ':';
			if (i + bestlen == 8)
				*o++ = ':';
			i += bestlen - 1;
			continue;
		}
		if (i)
			*o++ = ':';
		if (i == 6 && best == 0 && (bestlen == 6 || (bestlen == 5 && w[5] == 0xffff)))
			return fmt_v4(o, b + 12);
		bool lead = true;

		for (int sh = 12; sh >= 0; sh -= 4) {
			unsigned d = (w[i] >> sh) & 15;

			if (d == 0 && lead && sh)
				continue;
			lead = false;
			*o++ = hex[d];
		}
	}
	return o;
}

static char *
fmt_addr(char *o, const struct ip_addr *a)
{
	if (a->family == AF_INET)
		return fmt_v4(o, a->b);
	if (a->family == AF_INET6)
		return fmt_v6(o, a->b);
	memcpy(o, "invalid", 7);
	return o + 7;
}

void
addr_fmt(char out[static ADDR_STR_MAX], const struct ip_addr *a)
{
	*fmt_addr(out, a) = 0;
}

bool
addr_equal(const struct ip_addr *a, const struct ip_addr *b)
{
	return a->family == b->family &&
	    memcmp(a->b, b->b, (size_t)addr_len(a)) == 0;
}

void
prefix_mask(struct ip_prefix *p)
{
	int len = addr_len(&p->addr);

	for (int i = 0; i < len; i++) {
		int keep = p->bits - i * 8;

		if (keep >= 8)
			continue;
		if (keep <= 0)
			p->addr.b[i] = 0;
		else
			p->addr.b[i] &= (uint8_t)(0xff << (8 - keep));
	}
	for (int i = len; i < 16; i++)
		p->addr.b[i] = 0;
}

int
prefix_parse(const char *s, bool lenient, struct ip_prefix *out)
{
	char tmp[ADDR_STR_MAX];
	struct ip_prefix p;
	const char *slash;
	char *end;
	long bits;

	if (s == NULL || strlen(s) >= sizeof(tmp))
		return ERR_INVALID;
	slash = strchr(s, '/');
	if (slash == NULL) {
		if (addr_parse(s, &p.addr) != 0)
			return ERR_INVALID;
		p.bits = addr_len(&p.addr) * 8;
		*out = p;
		return 0;
	}
	memcpy(tmp, s, (size_t)(slash - s));
	tmp[slash - s] = 0;
	if (addr_parse(tmp, &p.addr) != 0)
		return ERR_INVALID;
	if (slash[1] < '0' || slash[1] > '9')
		return ERR_INVALID;
	bits = strtol(slash + 1, &end, 10);
	if (*end != 0 || bits < 0 || bits > addr_len(&p.addr) * 8)
		return ERR_INVALID;
	p.bits = (int)bits;
	{
		struct ip_prefix m = p;

		prefix_mask(&m);
		if (!lenient && !addr_equal(&m.addr, &p.addr))
			return ERR_INVALID;
		p = m;
	}
	*out = p;
	return 0;
}

void
prefix_fmt(char out[static ADDR_STR_MAX], const struct ip_prefix *p)
{
	char *o = fmt_addr(out, &p->addr);

	*o++ = '/';
	*fmt_dec(o, (unsigned)p->bits) = 0;
}

bool
prefix_contains(const struct ip_prefix *p, const struct ip_addr *a)
{
	int full = p->bits / 8, rest = p->bits % 8;

	if (p->addr.family != a->family)
		return false;
	if (memcmp(p->addr.b, a->b, (size_t)full) != 0)
		return false;
	if (rest == 0)
		return true;
	return ((p->addr.b[full] ^ a->b[full]) & (0xff << (8 - rest))) == 0;
}

bool
prefix_covers(const struct ip_prefix *p, const struct ip_prefix *q)
{
	return p->bits <= q->bits && prefix_contains(p, &q->addr);
}

int
endpoint_parse(const char *s, struct endpoint *out)
{
	char host[ADDR_STR_MAX];
	const char *colon;
	struct endpoint e;
	char *end;
	long port;
	size_t hl;

	if (s == NULL)
		return ERR_INVALID;
	memset(&e, 0, sizeof(e));
	if (s[0] == '[') {
		const char *close = strchr(s, ']');

		if (close == NULL || close[1] != ':')
			return ERR_INVALID;
		hl = (size_t)(close - s - 1);
		if (hl >= sizeof(host))
			return ERR_INVALID;
		memcpy(host, s + 1, hl);
		host[hl] = 0;
		colon = close + 1;
		if (addr_parse(host, &e.addr) != 0 || e.addr.family != AF_INET6)
			return ERR_INVALID;
	} else {
		colon = strrchr(s, ':');
		if (colon == NULL)
			return ERR_INVALID;
		hl = (size_t)(colon - s);
		if (hl >= sizeof(host))
			return ERR_INVALID;
		memcpy(host, s, hl);
		host[hl] = 0;
		if (addr_parse(host, &e.addr) != 0 || e.addr.family != AF_INET)
			return ERR_INVALID;
	}
	if (colon[1] < '0' || colon[1] > '9')
		return ERR_INVALID;
	port = strtol(colon + 1, &end, 10);
	if (*end != 0 || port < 1 || port > 65535)
		return ERR_INVALID;
	e.port = (uint16_t)port;
	*out = e;
	return 0;
}

void
endpoint_fmt(char out[static ADDR_STR_MAX], const struct endpoint *e)
{
	char *o = out;

	if (e->addr.family == AF_INET6)
		*o++ = '[';
	o = fmt_addr(o, &e->addr);
	if (e->addr.family == AF_INET6)
		*o++ = ']';
	*o++ = ':';
	*fmt_dec(o, e->port) = 0;
}

socklen_t
endpoint_to_sockaddr(const struct endpoint *e, struct sockaddr_storage *ss)
{
	memset(ss, 0, sizeof(*ss));
	if (e->addr.family == AF_INET) {
		struct sockaddr_in *sin = (struct sockaddr_in *)ss;

		sin->sin_family = AF_INET;
		sin->sin_port = htons(e->port);
		memcpy(&sin->sin_addr, e->addr.b, 4);
		return sizeof(*sin);
	} else {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;

		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons(e->port);
		memcpy(&sin6->sin6_addr, e->addr.b, 16);
		return sizeof(*sin6);
	}
}

int
endpoint_from_sockaddr(const struct sockaddr *sa, struct endpoint *out)
{
	struct endpoint e;

	memset(&e, 0, sizeof(e));
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)sa;

		e.addr.family = AF_INET;
		memcpy(e.addr.b, &sin->sin_addr, 4);
		e.port = ntohs(sin->sin_port);
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)sa;

		e.addr.family = AF_INET6;
		memcpy(e.addr.b, &sin6->sin6_addr, 16);
		e.port = ntohs(sin6->sin6_port);
	} else {
		return ERR_INVALID;
	}
	*out = e;
	return 0;
}

void
addr_add(struct ip_addr *a, uint64_t n)
{
	int i = addr_len(a) - 1;
	unsigned carry = 0;

	for (; i >= 0 && (n != 0 || carry != 0); i--) {
		unsigned v = a->b[i] + (unsigned)(n & 0xff) + carry;

		a->b[i] = (uint8_t)v;
		carry = v >> 8;
		n >>= 8;
	}
}

uint64_t
addr_offset(const struct ip_addr *base, const struct ip_addr *a)
{
	int len = addr_len(a);
	uint64_t x = 0, y = 0;

	for (int i = len > 8 ? len - 8 : 0; i < len; i++) {
		x = x << 8 | base->b[i];
		y = y << 8 | a->b[i];
	}
	return y - x;
}
