/* SPDX-License-Identifier: MIT */
/*
 * DNS messages (RFC 1035, EDNS0 from RFC 6891): the agent resolver's wire
 * format. The parser reads a query's question and OPT record, or walks a
 * whole message (answers from upstream servers) checking every name and
 * record bound; compression pointers must point backwards and a name is at
 * most 255 bytes, so hostile input ends in an error, never a loop. The
 * builder writes answers with name compression (suffixes of names already
 * written become pointers) and never writes past its buffer: a record that
 * does not fit sets the TC bit instead.
 */
#ifndef WM_DNS_MSG_H
#define WM_DNS_MSG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/addr.h"
#include "common/dnsname.h"
#include "common/err.h"

enum {
	DNS_HDR_LEN = 12,
	DNS_MAX_MSG = 65535,
	DNS_UDP_MIN = 512,		/* payload size without EDNS0 */
	DNS_WIRE_NAME_MAX = 255,
	DNS_COMP_MAX = 64,		/* names remembered for compression */
	DNS_MAX_RRS = 4096,		/* records walked in one message */
	DNS_TEXT_MAX = 1024,		/* a wire name as text, odd bytes as \DDD */

	DNS_T_A = 1, DNS_T_NS = 2, DNS_T_CNAME = 5, DNS_T_SOA = 6, DNS_T_PTR = 12,
	DNS_T_MX = 15, DNS_T_TXT = 16, DNS_T_AAAA = 28, DNS_T_SRV = 33, DNS_T_OPT = 41,
	DNS_T_ANY = 255,
	DNS_C_IN = 1,

	DNS_RC_NOERROR = 0, DNS_RC_FORMERR = 1, DNS_RC_SERVFAIL = 2, DNS_RC_NXDOMAIN = 3,
	DNS_RC_NOTIMP = 4, DNS_RC_REFUSED = 5,

	DNS_F_QR = 0x8000, DNS_F_AA = 0x0400, DNS_F_TC = 0x0200, DNS_F_RD = 0x0100,
	DNS_F_RA = 0x0080,
};

struct dns_query {
	uint16_t id, flags;
	char name[DNS_TEXT_MAX];	/* lower case, no final dot; "" for the root */
	uint16_t qtype, qclass;
	uint8_t qraw[DNS_WIRE_NAME_MAX + 4];	/* the question as sent */
	size_t qraw_len;
	size_t qend;			/* offset just past the question */
	bool edns;			/* an OPT record came with it */
	uint16_t edns_size;		/* its UDP payload size */
	uint8_t edns_version;
};

/* Parses a query: one question, QR clear. ERR_INVALID for anything
 * malformed (the caller answers FORMERR when the header was readable:
 * see dns_header_ok). */
int dns_query_parse(const uint8_t *p, size_t n, struct dns_query *q) WM_MUST_CHECK;

/* Whether p holds at least a header (for a FORMERR reply). */
bool dns_header_ok(const uint8_t *p, size_t n);

struct dns_msg_info {
	uint16_t id, flags;
	unsigned qd, an, ns, ar;
	char qname[DNS_TEXT_MAX];
	uint16_t qtype, qclass;
	bool edns;
};

/* Walks a whole message (every name, record and bound). */
int dns_msg_parse(const uint8_t *p, size_t n, struct dns_msg_info *out) WM_MUST_CHECK;

/* Reads the (possibly compressed) name at *off into text; advances *off
 * past it in the message. */
int dns_name_read(const uint8_t *p, size_t n, size_t *off, char out[static DNS_TEXT_MAX])
	WM_MUST_CHECK;

struct dns_builder {
	uint8_t *buf;
	size_t cap, len;
	size_t rr_mark;			/* length before the record being written */
	bool truncated;
	unsigned an, ns, ar;
	size_t ncomp;
	struct { uint16_t off; char name[DNSNAME_MAX]; } comp[DNS_COMP_MAX];
};

/* Starts an answer to q in buf[cap]: header (id, RD copied, QR, RA, `aa`,
 * rcode) and the question. cap below DNS_HDR_LEN + question: ERR_TOO_LARGE. */
int dns_build_begin(struct dns_builder *b, uint8_t *buf, size_t cap, const struct dns_query *q,
		    int rcode, bool aa) WM_MUST_CHECK;
/* Adds an A (4 bytes) or AAAA (16 bytes) answer, or a PTR to `target`.
 * Returns false (and marks the message truncated) when it does not fit. */
bool dns_build_addr(struct dns_builder *b, const char *name, uint32_t ttl, const struct ip_addr *a);
bool dns_build_ptr(struct dns_builder *b, const char *name, uint32_t ttl, const char *target);
/* Adds an OPT record (EDNS0) announcing `udp_size`. */
bool dns_build_opt(struct dns_builder *b, uint16_t udp_size);
/* Writes the counts and TC; returns the message length. */
size_t dns_build_end(struct dns_builder *b);

/* Writes a name with compression (exposed for the fuzzer and tests). */
bool dns_build_name(struct dns_builder *b, const char *name);

/* A reply with only a header and the question of q, rcode set (FORMERR,
 * SERVFAIL, REFUSED, or a truncated answer with tc). Returns its length, 0
 * when cap is too small. */
size_t dns_reply_simple(uint8_t *buf, size_t cap, const struct dns_query *q, int rcode, bool tc);

/* "4.3.2.1.in-addr.arpa" / nibble ip6.arpa names -> address. */
bool dns_ptr_addr(const char *name, struct ip_addr *out);
/* The reverse name of an address. */
void dns_ptr_name(char out[static DNSNAME_MAX], const struct ip_addr *a);

/* Type names for the CLI ("A", "AAAA", ... or "TYPE123"). */
const char *dns_type_name(uint16_t t, char buf[static 12]);
int dns_type_parse(const char *s);	/* -1 when unknown */

#endif
