/* SPDX-License-Identifier: MIT */
/*
 * IP addresses, prefixes and host:port endpoints for both families. Text
 * forms are the usual ones: 100.64.0.1, fd7a:115c:a1e0::1, 100.64.0.0/10,
 * 192.0.2.1:41641, [2001:db8::1]:41641.
 */
#ifndef WM_ADDR_H
#define WM_ADDR_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "common/err.h"

enum { ADDR_STR_MAX = 64 };

struct ip_addr {
	int family;		/* AF_INET or AF_INET6 */
	uint8_t b[16];		/* AF_INET uses b[0..3] */
};

struct ip_prefix {
	struct ip_addr addr;
	int bits;
};

struct endpoint {
	struct ip_addr addr;
	uint16_t port;
};

int addr_parse(const char *s, struct ip_addr *out) WM_MUST_CHECK;
void addr_fmt(char out[static ADDR_STR_MAX], const struct ip_addr *a);
bool addr_equal(const struct ip_addr *a, const struct ip_addr *b);
int addr_len(const struct ip_addr *a);	/* 4 or 16 */

/* "a.b.c.d/n" or "x::/n"; a bare address means a host prefix. Host bits must be zero
 * unless `lenient` is set, in which case they are cleared. */
int prefix_parse(const char *s, bool lenient, struct ip_prefix *out) WM_MUST_CHECK;
void prefix_fmt(char out[static ADDR_STR_MAX], const struct ip_prefix *p);
bool prefix_contains(const struct ip_prefix *p, const struct ip_addr *a);
/* True if q lies within p. */
bool prefix_covers(const struct ip_prefix *p, const struct ip_prefix *q);
void prefix_mask(struct ip_prefix *p);

int endpoint_parse(const char *s, struct endpoint *out) WM_MUST_CHECK;
void endpoint_fmt(char out[static ADDR_STR_MAX], const struct endpoint *e);
/* Fills a sockaddr_storage; returns its length. */
socklen_t endpoint_to_sockaddr(const struct endpoint *e, struct sockaddr_storage *ss);
int endpoint_from_sockaddr(const struct sockaddr *sa, struct endpoint *out) WM_MUST_CHECK;

/* Adds `n` to the address (big-endian); used by address allocation. */
void addr_add(struct ip_addr *a, uint64_t n);
/* Offset of a from base within a prefix (low 64 bits). */
uint64_t addr_offset(const struct ip_addr *base, const struct ip_addr *a);

#endif
