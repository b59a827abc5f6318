// SPDX-License-Identifier: MIT
/* Sequential bitmap allocator per address family. */
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "server/ipam.h"

enum { MAX_POOL_BITS = 24 };	/* at most 16M addresses tracked per family */

struct pool {
	struct ip_prefix prefix;
	uint64_t size;		/* addresses in the pool */
	uint64_t next;		/* offset to try first */
	uint8_t *bits;
};

struct ipam {
	struct pool v4, v6;
};

static int
pool_init(struct pool *p, const struct ip_prefix *pfx)
{
	int host_bits = addr_len(&pfx->addr) * 8 - pfx->bits;

	p->prefix = *pfx;
	if (host_bits < 2)
		return ERR_INVALID;
	p->size = (uint64_t)1 << (host_bits > MAX_POOL_BITS ? MAX_POOL_BITS : host_bits);
	p->next = 1;
	p->bits = calloc((size_t)(p->size / 8 + 1), 1);
	return p->bits ? 0 : ERR_NOMEM;
}

static int
offset_of(const struct pool *p, const struct ip_addr *a, uint64_t *off)
{
	if (!prefix_contains(&p->prefix, a))
		return ERR_NOT_FOUND;
	*off = addr_offset(&p->prefix.addr, a);
	return *off < p->size ? 0 : ERR_NOT_FOUND;
}

static int
reserved(const struct pool *p, uint64_t off)
{
	static const uint8_t quad100[4] = { 100, 100, 100, 100 };
	static const uint8_t dns6[16] = { 0xfd, 0x7a, 0x11, 0x5c, 0xa1, 0xe0,
	    0, 0, 0, 0, 0, 0, 0, 0, 0, 0x53 };
	struct ip_addr a = p->prefix.addr;

	if (off == 0 || off == p->size - 1)
		return 1;
	addr_add(&a, off);
	if (a.family == AF_INET)
		return memcmp(a.b, quad100, 4) == 0;
	return memcmp(a.b, dns6, 16) == 0;
}

int
ipam_new(const struct ip_prefix *v4, const struct ip_prefix *v6, struct ipam **out)
{
	struct ipam *p = calloc(1, sizeof(*p));
	int r;

	*out = NULL;
	if (p == NULL)
		return ERR_NOMEM;
	if (v4->addr.family != AF_INET || v6->addr.family != AF_INET6) {
		r = ERR_INVALID;
		goto fail;
	}
	if ((r = pool_init(&p->v4, v4)) != 0 || (r = pool_init(&p->v6, v6)) != 0)
		goto fail;
	*out = p;
	return 0;
fail:
	ipam_free(p);
	return r;
}

void
ipam_free(struct ipam *p)
{
	if (p == NULL)
		return;
	free(p->v4.bits);
	free(p->v6.bits);
	free(p);
}

static struct pool *
pool_for(struct ipam *p, int family)
{
	return family == AF_INET ? &p->v4 : &p->v6;
}

void
ipam_mark(struct ipam *p, const struct ip_addr *a)
{
	struct pool *pl = pool_for(p, a->family);
	uint64_t off;

	if (a->family == 0 || offset_of(pl, a, &off) != 0)
		return;
	pl->bits[off / 8] |= (uint8_t)(1 << (off % 8));
	if (off >= pl->next)
		pl->next = off + 1;
}

void
ipam_mark_other(struct ipam *p, const struct ip_addr *a)
{
	struct pool *pl = pool_for(p, a->family);
	uint64_t off;

	if (a->family == 0 || offset_of(pl, a, &off) != 0)
		return;
	pl->bits[off / 8] |= (uint8_t)(1 << (off % 8));
}

void
ipam_scatter(struct ipam *p)
{
	struct pool *pools[2] = { &p->v4, &p->v6 };

	for (int i = 0; i < 2; i++) {
		uint64_t r;

		random_bytes((uint8_t *)&r, sizeof(r));
		pools[i]->next = 1 + r % (pools[i]->size - 1);
	}
}

int
ipam_taken(const struct ipam *p, const struct ip_addr *a)
{
	const struct pool *pl = a->family == AF_INET ? &p->v4 : &p->v6;
	uint64_t off;

	if (offset_of(pl, a, &off) != 0)
		return 0;
	return (pl->bits[off / 8] >> (off % 8)) & 1;
}

int
ipam_alloc(struct ipam *p, int family, struct ip_addr *out)
{
	struct pool *pl = pool_for(p, family);

	for (uint64_t i = 0; i < pl->size; i++) {
		uint64_t off = (pl->next + i) % pl->size;

		if (reserved(pl, off) || (pl->bits[off / 8] >> (off % 8)) & 1)
			continue;
		pl->bits[off / 8] |= (uint8_t)(1 << (off % 8));
		pl->next = off + 1;
		*out = pl->prefix.addr;
		addr_add(out, off);
		return 0;
	}
	return ERR_EXHAUSTED;
}

void
ipam_release(struct ipam *p, const struct ip_addr *a)
{
	struct pool *pl = pool_for(p, a->family);
	uint64_t off;

	if (a->family == 0 || offset_of(pl, a, &off) != 0)
		return;
	pl->bits[off / 8] &= (uint8_t)~(1 << (off % 8));
}

void
ipam_undo(struct ipam *p, const struct ip_addr *a)
{
	struct pool *pl = pool_for(p, a->family);
	uint64_t off;

	if (a->family == 0 || offset_of(pl, a, &off) != 0)
		return;
	pl->bits[off / 8] &= (uint8_t)~(1 << (off % 8));
	if (off < pl->next)
		pl->next = off;
}
