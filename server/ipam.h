/* SPDX-License-Identifier: MIT */
/*
 * Address allocation: one IPv4 from the configured sub-range of
 * 100.64.0.0/10 and one IPv6 from fd7a:115c:a1e0::/48 per node. Sequential
 * from the last address handed out (or a random place, see ipam_scatter),
 * wrapping, so exhaustion is detected. The
 * in-memory bitmaps are a cache of the store's UNIQUE columns, which remain
 * the authority. 100.100.100.100, fd7a:115c:a1e0::53, the network and the
 * broadcast address are never handed out. Callers serialise (the store lock).
 */
#ifndef WM_IPAM_H
#define WM_IPAM_H

#include "common/addr.h"
#include "common/err.h"

struct ipam;

int ipam_new(const struct ip_prefix *v4, const struct ip_prefix *v6,
	     struct ipam **out) WM_MUST_CHECK;
void ipam_free(struct ipam *p);
/* Marks an address taken (loading from the store). Out-of-range addresses
 * are ignored (the range may have been narrowed). */
void ipam_mark(struct ipam *p, const struct ip_addr *a);
/* Marks an address another replica handed out: taken, without moving where
 * this one allocates next (replicas that all continued after the highest
 * address in use would offer the same one at every concurrent registration). */
void ipam_mark_other(struct ipam *p, const struct ip_addr *a);
/* Moves where the next address is tried to a random place in each pool:
 * a replica whose allocation collided with another's in the database
 * continues from somewhere else, so the two stop colliding. */
void ipam_scatter(struct ipam *p);
int ipam_alloc(struct ipam *p, int family, struct ip_addr *out) WM_MUST_CHECK;
void ipam_release(struct ipam *p, const struct ip_addr *a);
/* 1 if a is in range and taken. */
int ipam_taken(const struct ipam *p, const struct ip_addr *a);

/* Takes back an address just allocated by a registration that failed: the
 * pool is left as it was (the same address is offered next). */
void ipam_undo(struct ipam *p, const struct ip_addr *a);

#endif
