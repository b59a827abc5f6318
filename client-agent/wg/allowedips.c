// SPDX-License-Identifier: MIT
/*
 * A plain binary trie per family: node depth equals prefix length, a node
 * carries a peer when a prefix ends there. Lookup walks the address bits and
 * remembers the last peer seen, which is the longest match. Empty branches
 * are pruned on removal so memory tracks the live prefixes.
 */
#include <stdlib.h>
#include <string.h>

#include "client-agent/wg/allowedips.h"
#include "client-agent/wg/messages.h"

struct node {
	struct node *child[2];
	void *peer;
};

struct wg_allowedips {
	struct node *root4, *root6;
	size_t count;
};

struct wg_allowedips *
wg_allowedips_new(void)
{
	return calloc(1, sizeof(struct wg_allowedips));
}

static void
free_nodes(struct node *n)
{
	if (n == NULL)
		return;
	free_nodes(n->child[0]);
	free_nodes(n->child[1]);
	free(n);
}

void
wg_allowedips_free(struct wg_allowedips *t)
{
	if (t == NULL)
		return;
	free_nodes(t->root4);
	free_nodes(t->root6);
	free(t);
}

static inline int
bit_at(const uint8_t *ip, int i)
{
	return (ip[i >> 3] >> (7 - (i & 7))) & 1;
}

static struct node **
root_of(struct wg_allowedips *t, int family)
{
	return family == AF_INET ? &t->root4 : &t->root6;
}

int
wg_allowedips_insert(struct wg_allowedips *t, const struct ip_prefix *p, void *peer)
{
	int maxbits = p->addr.family == AF_INET ? 32 : 128;
	struct node **np;

	if (peer == NULL || (p->addr.family != AF_INET && p->addr.family != AF_INET6) ||
	    p->bits < 0 || p->bits > maxbits)
		return ERR_INVALID;
	np = root_of(t, p->addr.family);
	for (int i = 0;; i++) {
		if (*np == NULL) {
			*np = calloc(1, sizeof(struct node));
			if (*np == NULL)
				return ERR_NOMEM;
		}
		if (i == p->bits)
			break;
		np = &(*np)->child[bit_at(p->addr.b, i)];
	}
	if ((*np)->peer == NULL) {
		if (t->count >= WG_MAX_ALLOWED_IPS)
			return ERR_EXHAUSTED;
		t->count++;
	}
	(*np)->peer = peer;
	return 0;
}

/* Returns true if the subtree became empty and was freed. */
static bool
prune(struct node **np)
{
	struct node *n = *np;

	if (n->peer == NULL && n->child[0] == NULL && n->child[1] == NULL) {
		free(n);
		*np = NULL;
		return true;
	}
	return false;
}

static bool
remove_rec(struct wg_allowedips *t, struct node **np, const struct ip_prefix *p,
	   int depth, void *peer)
{
	bool found;

	if (*np == NULL)
		return false;
	if (depth == p->bits) {
		if ((*np)->peer != peer)
			return false;
		(*np)->peer = NULL;
		t->count--;
		found = true;
	} else {
		found = remove_rec(t, &(*np)->child[bit_at(p->addr.b, depth)], p, depth + 1, peer);
	}
	if (found)
		prune(np);
	return found;
}

int
wg_allowedips_remove(struct wg_allowedips *t, const struct ip_prefix *p, void *peer)
{
	if (p->addr.family != AF_INET && p->addr.family != AF_INET6)
		return ERR_INVALID;
	return remove_rec(t, root_of(t, p->addr.family), p, 0, peer) ? 0 : ERR_NOT_FOUND;
}

static void
remove_peer_rec(struct wg_allowedips *t, struct node **np, void *peer)
{
	if (*np == NULL)
		return;
	remove_peer_rec(t, &(*np)->child[0], peer);
	remove_peer_rec(t, &(*np)->child[1], peer);
	if ((*np)->peer == peer) {
		(*np)->peer = NULL;
		t->count--;
	}
	prune(np);
}

void
wg_allowedips_remove_peer(struct wg_allowedips *t, void *peer)
{
	remove_peer_rec(t, &t->root4, peer);
	remove_peer_rec(t, &t->root6, peer);
}

void *
wg_allowedips_lookup(const struct wg_allowedips *t, int family, const uint8_t *ip)
{
	const struct node *n = family == AF_INET ? t->root4 : t->root6;
	int maxbits = family == AF_INET ? 32 : 128;
	void *best = NULL;

	for (int i = 0; n != NULL; i++) {
		if (n->peer)
			best = n->peer;
		if (i == maxbits)
			break;
		n = n->child[bit_at(ip, i)];
	}
	return best;
}

static void
walk_rec(const struct node *n, struct ip_prefix *p, int depth, void *peer,
	 void (*fn)(void *arg, const struct ip_prefix *p), void *arg)
{
	if (n == NULL)
		return;
	if (n->peer == peer) {
		p->bits = depth;
		fn(arg, p);
	}
	for (int b = 0; b < 2; b++) {
		if (n->child[b] == NULL)
			continue;
		if (b)
			p->addr.b[depth >> 3] |= (uint8_t)(0x80 >> (depth & 7));
		walk_rec(n->child[b], p, depth + 1, peer, fn, arg);
		if (b)
			p->addr.b[depth >> 3] &= (uint8_t)~(0x80 >> (depth & 7));
	}
}

void
wg_allowedips_walk(const struct wg_allowedips *t, void *peer,
		   void (*fn)(void *arg, const struct ip_prefix *p), void *arg)
{
	struct ip_prefix p;

	memset(&p, 0, sizeof(p));
	p.addr.family = AF_INET;
	walk_rec(t->root4, &p, 0, peer, fn, arg);
	memset(&p, 0, sizeof(p));
	p.addr.family = AF_INET6;
	walk_rec(t->root6, &p, 0, peer, fn, arg);
}

size_t
wg_allowedips_count(const struct wg_allowedips *t)
{
	return t->count;
}
