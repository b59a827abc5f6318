// SPDX-License-Identifier: MIT
/*
 * DNS wire format: parsing queries and whole messages, building answers with
 * name compression. Every read is bounds-checked against the message length;
 * compression pointers must point backwards (so a name cannot loop) and past
 * the header; a name is at most 255 bytes on the wire.
 */
#include <stdio.h>
#include <string.h>
#include <stddef.h>
#include <strings.h>

#include "client-agent/dns_msg.h"

static uint16_t
rd16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static void
wr16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

bool
dns_header_ok(const uint8_t *p, size_t n)
{
	return p != NULL && n >= DNS_HDR_LEN;
}

/*
 * Reads a name at *off. `out` may be NULL (validate and skip only). The
 * text is lower-cased; bytes other than letters, digits, '-', '_' and '*'
 * are written as \DDD so that no text name contains a stray dot.
 */
static int
name_read(const uint8_t *p, size_t n, size_t *off, char *out, size_t outcap)
{
	size_t pos = *off, end = 0, wire = 0, olen = 0;
	bool jumped = false;
	unsigned hops = 0;

	if (out)
		out[0] = '\0';
	for (;;) {
		uint8_t len;

		if (pos >= n)
			return ERR_INVALID;
		len = p[pos];
		if ((len & 0xC0) == 0xC0) {
			size_t to;

			if (pos + 1 >= n)
				return ERR_INVALID;
			to = (size_t)((len & 0x3F) << 8 | p[pos + 1]);
			/* backwards only, and never into the header */
			if (to >= pos || to < DNS_HDR_LEN || ++hops > 127)
				return ERR_INVALID;
			if (!jumped)
				end = pos + 2;
			jumped = true;
			pos = to;
			continue;
		}
		if (len & 0xC0)
			return ERR_INVALID;	/* 0x40/0x80: extended label types */
		if (len == 0) {
			if (!jumped)
				end = pos + 1;
			break;
		}
		if (pos + 1 + len > n || (wire += (size_t)len + 1) > DNS_WIRE_NAME_MAX - 1)
			return ERR_INVALID;
		if (out) {
			if (olen > 0) {
				if (olen + 1 >= outcap)
					return ERR_INVALID;
				out[olen++] = '.';
			}
			for (size_t i = 0; i < len; i++) {
				unsigned char c = p[pos + 1 + i];

				if (c >= 'A' && c <= 'Z')
					c = (unsigned char)(c - 'A' + 'a');
				if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
				    c == '_' || c == '*') {
					if (olen + 1 >= outcap)
						return ERR_INVALID;
					out[olen++] = (char)c;
				} else {
					if (olen + 4 >= outcap)
						return ERR_INVALID;
					snprintf(out + olen, 5, "\\%03u", c);
					olen += 4;
				}
			}
			out[olen] = '\0';
		}
		pos += 1 + (size_t)len;
	}
	*off = end;
	return 0;
}

int
dns_name_read(const uint8_t *p, size_t n, size_t *off, char out[static DNS_TEXT_MAX])
{
	return name_read(p, n, off, out, DNS_TEXT_MAX);
}

int
dns_query_parse(const uint8_t *p, size_t n, struct dns_query *q)
{
	size_t off = DNS_HDR_LEN;
	unsigned qd, an, ns, ar;

	memset(q, 0, sizeof(*q));
	if (!dns_header_ok(p, n) || n > DNS_MAX_MSG)
		return ERR_INVALID;
	q->id = rd16(p);
	q->flags = rd16(p + 2);
	qd = rd16(p + 4);
	an = rd16(p + 6);
	ns = rd16(p + 8);
	ar = rd16(p + 10);
	if ((q->flags & DNS_F_QR) || qd != 1 || an != 0 || ns > 1 || ar > 2)
		return ERR_INVALID;
	if (name_read(p, n, &off, q->name, sizeof(q->name)) != 0 || off + 4 > n)
		return ERR_INVALID;
	/* A reply repeats the question alone (qraw): its name must read
	 * within it. A pointer back into the name may go on with labels past
	 * the name's end (into the records after it), which a reply lacks. */
	{
		size_t o = DNS_HDR_LEN;

		if (name_read(p, off, &o, NULL, 0) != 0 || o != off)
			return ERR_INVALID;
	}
	q->qtype = rd16(p + off);
	q->qclass = rd16(p + off + 2);
	off += 4;
	q->qend = off;
	q->qraw_len = off - DNS_HDR_LEN;
	if (q->qraw_len > sizeof(q->qraw))
		return ERR_INVALID;
	memcpy(q->qraw, p + DNS_HDR_LEN, q->qraw_len);
	/* Authority (an UPDATE prerequisite would be here: refused) and OPT. */
	for (unsigned i = 0; i < ns + ar; i++) {
		uint16_t type, rdlen;
		uint32_t ttl;
		size_t start = off;

		if (name_read(p, n, &off, NULL, 0) != 0 || off + 10 > n)
			return ERR_INVALID;
		type = rd16(p + off);
		ttl = (uint32_t)rd16(p + off + 4) << 16 | rd16(p + off + 6);
		rdlen = rd16(p + off + 8);
		if (off + 10 + rdlen > n)
			return ERR_INVALID;
		if (i >= ns && type == DNS_T_OPT) {
			if (q->edns || p[start] != 0)
				return ERR_INVALID;	/* RFC 6891: one OPT, root name */
			q->edns = true;
			q->edns_size = rd16(p + off + 2);
			q->edns_version = (uint8_t)(ttl >> 16);
		}
		off += 10 + (size_t)rdlen;
	}
	return 0;
}

int
dns_msg_parse(const uint8_t *p, size_t n, struct dns_msg_info *out)
{
	size_t off = DNS_HDR_LEN;
	unsigned total;

	memset(out, 0, sizeof(*out));
	if (!dns_header_ok(p, n) || n > DNS_MAX_MSG)
		return ERR_INVALID;
	out->id = rd16(p);
	out->flags = rd16(p + 2);
	out->qd = rd16(p + 4);
	out->an = rd16(p + 6);
	out->ns = rd16(p + 8);
	out->ar = rd16(p + 10);
	if (out->qd > 1)
		return ERR_INVALID;
	if (out->qd == 1) {
		if (name_read(p, n, &off, out->qname, sizeof(out->qname)) != 0 || off + 4 > n)
			return ERR_INVALID;
		out->qtype = rd16(p + off);
		out->qclass = rd16(p + off + 2);
		off += 4;
	}
	total = out->an + out->ns + out->ar;
	if (total > DNS_MAX_RRS)
		return ERR_INVALID;
	for (unsigned i = 0; i < total; i++) {
		uint16_t type, rdlen;

		if (name_read(p, n, &off, NULL, 0) != 0 || off + 10 > n)
			return ERR_INVALID;
		type = rd16(p + off);
		rdlen = rd16(p + off + 8);
		off += 10;
		if (off + rdlen > n)
			return ERR_INVALID;
		/* Names inside the data of the common types must be sound too. */
		if (type == DNS_T_CNAME || type == DNS_T_NS || type == DNS_T_PTR) {
			size_t o = off;

			if (name_read(p, off + rdlen, &o, NULL, 0) != 0 || o != off + rdlen)
				return ERR_INVALID;
		} else if (type == DNS_T_A && rdlen != 4) {
			return ERR_INVALID;
		} else if (type == DNS_T_AAAA && rdlen != 16) {
			return ERR_INVALID;
		} else if (type == DNS_T_OPT) {
			if (i < out->an + out->ns || out->edns)
				return ERR_INVALID;
			out->edns = true;
		}
		off += rdlen;
	}
	return 0;
}

/* ---- builder ---- */

static void
comp_add(struct dns_builder *b, size_t off, const char *name)
{
	if (b->ncomp == DNS_COMP_MAX || off > 0x3FFF || name[0] == '\0')
		return;
	b->comp[b->ncomp].off = (uint16_t)off;
	dnsname_norm(b->comp[b->ncomp].name, name);
	b->ncomp++;
}

bool
dns_build_name(struct dns_builder *b, const char *name)
{
	char why[8];
	const char *labels[128];
	size_t nl = 0, total = 1;
	char norm[DNSNAME_MAX];

	if (name[0] != '\0' && !dnsname_valid(name, why, sizeof(why)))
		return false;
	dnsname_norm(norm, name);
	for (const char *s = norm; *s && nl < 128; ) {
		labels[nl++] = s;
		s = strchr(s, '.');
		if (s == NULL)
			break;
		s++;
	}
	for (size_t i = 0; i <= nl; i++) {
		const char *suffix = i < nl ? labels[i] : "";

		if (i < nl) {
			for (size_t k = 0; k < b->ncomp; k++)
				if (strcmp(b->comp[k].name, suffix) == 0) {
					if (b->len + 2 > b->cap)
						return false;
					wr16(b->buf + b->len, (uint16_t)(0xC000 | b->comp[k].off));
					b->len += 2;
					return true;
				}
			{
				const char *dot = strchr(suffix, '.');
				size_t ll = dot ? (size_t)(dot - suffix) : strlen(suffix);

				total += ll + 1;
				if (total > DNS_WIRE_NAME_MAX || b->len + 1 + ll > b->cap)
					return false;
				comp_add(b, b->len, suffix);
				b->buf[b->len++] = (uint8_t)ll;
				memcpy(b->buf + b->len, suffix, ll);
				b->len += ll;
			}
		} else {
			if (b->len + 1 > b->cap)
				return false;
			b->buf[b->len++] = 0;
		}
	}
	return true;
}

int
dns_build_begin(struct dns_builder *b, uint8_t *buf, size_t cap, const struct dns_query *q,
		int rcode, bool aa)
{
	uint16_t flags = (uint16_t)(DNS_F_QR | DNS_F_RA | (q->flags & DNS_F_RD) |
	    (q->flags & 0x7800) /* opcode */ | (aa ? DNS_F_AA : 0) | (rcode & 0xF));
	char why[8];

	memset(b, 0, offsetof(struct dns_builder, comp));
	b->buf = buf;
	b->cap = cap;
	if (cap < DNS_HDR_LEN + q->qraw_len)
		return ERR_TOO_LARGE;
	memset(buf, 0, DNS_HDR_LEN);
	wr16(buf, q->id);
	wr16(buf + 2, flags);
	wr16(buf + 4, 1);
	memcpy(buf + DNS_HDR_LEN, q->qraw, q->qraw_len);
	b->len = DNS_HDR_LEN + q->qraw_len;
	/* The question name is the usual owner: it and its suffixes become
	 * compression targets (the wire labels match the text's, as the
	 * name is valid and so has no escapes). */
	if (q->name[0] && dnsname_valid(q->name, why, sizeof(why))) {
		size_t off = DNS_HDR_LEN;
		const char *s = q->name;

		while (s && *s && off < DNS_HDR_LEN + q->qraw_len && buf[off] != 0) {
			comp_add(b, off, s);
			off += 1 + (size_t)buf[off];
			if ((s = strchr(s, '.')) != NULL)
				s++;
		}
	}
	return 0;
}

static bool
rr_head(struct dns_builder *b, const char *name, uint16_t type, uint16_t klass, uint32_t ttl)
{
	b->rr_mark = b->len;
	if (b->truncated || !dns_build_name(b, name) || b->len + 10 > b->cap)
		return false;
	wr16(b->buf + b->len, type);
	wr16(b->buf + b->len + 2, klass);
	wr16(b->buf + b->len + 4, (uint16_t)(ttl >> 16));
	wr16(b->buf + b->len + 6, (uint16_t)ttl);
	b->len += 8;	/* RDLENGTH and RDATA: the caller's */
	return true;
}

static bool
rr_fail(struct dns_builder *b)
{
	size_t keep = 0;

	/* Forget compression targets inside the record being dropped. */
	for (size_t k = 0; k < b->ncomp; k++)
		if (b->comp[k].off < b->rr_mark)
			b->comp[keep++] = b->comp[k];
	b->ncomp = keep;
	b->len = b->rr_mark;
	b->truncated = true;
	return false;
}

bool
dns_build_addr(struct dns_builder *b, const char *name, uint32_t ttl, const struct ip_addr *a)
{
	size_t l = a->family == AF_INET ? 4 : 16;

	if (!rr_head(b, name, a->family == AF_INET ? DNS_T_A : DNS_T_AAAA, DNS_C_IN, ttl) ||
	    b->len + 2 + l > b->cap)
		return rr_fail(b);
	wr16(b->buf + b->len, (uint16_t)l);
	memcpy(b->buf + b->len + 2, a->b, l);
	b->len += 2 + l;
	b->an++;
	return true;
}

bool
dns_build_ptr(struct dns_builder *b, const char *name, uint32_t ttl, const char *target)
{
	size_t at;

	if (!rr_head(b, name, DNS_T_PTR, DNS_C_IN, ttl) || b->len + 2 > b->cap)
		return rr_fail(b);
	at = b->len;
	b->len += 2;
	if (!dns_build_name(b, target))
		return rr_fail(b);
	wr16(b->buf + at, (uint16_t)(b->len - at - 2));
	b->an++;
	return true;
}

bool
dns_build_opt(struct dns_builder *b, uint16_t udp_size)
{
	b->rr_mark = b->len;
	if (b->len + 11 > b->cap)
		return false;	/* no OPT is not truncation */
	memset(b->buf + b->len, 0, 11);
	wr16(b->buf + b->len + 1, DNS_T_OPT);
	wr16(b->buf + b->len + 3, udp_size);
	b->len += 11;
	b->ar++;
	return true;
}

size_t
dns_build_end(struct dns_builder *b)
{
	wr16(b->buf + 6, (uint16_t)b->an);
	wr16(b->buf + 8, (uint16_t)b->ns);
	wr16(b->buf + 10, (uint16_t)b->ar);
	if (b->truncated)
		b->buf[2] |= DNS_F_TC >> 8;
	return b->len;
}

size_t
dns_reply_simple(uint8_t *buf, size_t cap, const struct dns_query *q, int rcode, bool tc)
{
	struct dns_builder b;

	if (dns_build_begin(&b, buf, cap, q, rcode, false) != 0)
		return 0;
	b.truncated = tc;
	return dns_build_end(&b);
}

/* ---- reverse names ---- */

bool
dns_ptr_addr(const char *name, struct ip_addr *out)
{
	size_t n = strlen(name);

	memset(out, 0, sizeof(*out));
	if (n > 13 && strcmp(name + n - 13, ".in-addr.arpa") == 0) {
		unsigned v[4];
		char tail;

		if (sscanf(name, "%3u.%3u.%3u.%3u.in-addr.arpa%c", &v[3], &v[2], &v[1], &v[0],
		    &tail) != 4 || v[0] > 255 || v[1] > 255 || v[2] > 255 || v[3] > 255)
			return false;
		/* exactly four labels of digits */
		for (const char *s = name; s < name + n - 13; s++)
			if (!(*s == '.' || (*s >= '0' && *s <= '9')))
				return false;
		out->family = AF_INET;
		for (int i = 0; i < 4; i++)
			out->b[i] = (uint8_t)v[i];
		return true;
	}
	if (n == 64 + 8 && strcmp(name + 64, "ip6.arpa") == 0) {
		for (int i = 0; i < 32; i++) {
			char c = name[2 * i], dot = name[2 * i + 1];
			int nib;

			if (dot != '.')
				return false;
			if (c >= '0' && c <= '9')
				nib = c - '0';
			else if (c >= 'a' && c <= 'f')
				nib = c - 'a' + 10;
			else
				return false;
			/* the first label is the lowest nibble */
			out->b[15 - i / 2] |= (uint8_t)(i % 2 == 0 ? nib : nib << 4);
		}
		out->family = AF_INET6;
		return true;
	}
	return false;
}

void
dns_ptr_name(char out[static DNSNAME_MAX], const struct ip_addr *a)
{
	static const char hex[] = "0123456789abcdef";

	if (a->family == AF_INET) {
		snprintf(out, DNSNAME_MAX, "%u.%u.%u.%u.in-addr.arpa", a->b[3], a->b[2], a->b[1],
		    a->b[0]);
		return;
	}
	for (int i = 0; i < 32; i++) {
		uint8_t byte = a->b[15 - i / 2];

		out[2 * i] = hex[i % 2 == 0 ? byte & 0xF : byte >> 4];
		out[2 * i + 1] = '.';
	}
	memcpy(out + 64, "ip6.arpa", 9);
}

static const struct { uint16_t t; const char *s; } types[] = {
	{ DNS_T_A, "A" }, { DNS_T_NS, "NS" }, { DNS_T_CNAME, "CNAME" }, { DNS_T_SOA, "SOA" },
	{ DNS_T_PTR, "PTR" }, { DNS_T_MX, "MX" }, { DNS_T_TXT, "TXT" }, { DNS_T_AAAA, "AAAA" },
	{ DNS_T_SRV, "SRV" }, { DNS_T_OPT, "OPT" }, { DNS_T_ANY, "ANY" },
};

const char *
dns_type_name(uint16_t t, char buf[static 12])
{
	for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
		if (types[i].t == t)
			return types[i].s;
	snprintf(buf, 12, "TYPE%u", t);
	return buf;
}

int
dns_type_parse(const char *s)
{
	for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
		if (strcasecmp(types[i].s, s) == 0)
			return types[i].t;
	if (strncasecmp(s, "TYPE", 4) == 0) {
		unsigned v;
		char tail;

		if (sscanf(s + 4, "%u%c", &v, &tail) == 1 && v <= 65535)
			return (int)v;
	}
	return -1;
}
