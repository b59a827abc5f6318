// SPDX-License-Identifier: MIT
/*
 * Live netmap state and map streams. Lock order: m->lock, then a stream's
 * s->lock. A stream's reader (on an HTTP thread) touches its send state
 * without locks; only its queue is shared with producers.
 */
#include <inttypes.h>
#include <stdatomic.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "common/buf.h"
#include "common/log.h"
#include "common/util.h"
#include "server/mapper.h"
#include "server/nodeview.h"
#include "server/routes.h"

/* ---- shared immutable buffers ---- */

/* What a full queue may do with a message instead of collapsing. */
enum soft { SOFT_NO, SOFT_DROP /* keepalive */, SOFT_ONLINE /* resent as a snapshot */ };

struct rbuf {
	atomic_int refs;
	size_t len;
	uint8_t soft;		/* enum soft */
	char data[];
};

static struct rbuf *
rbuf_new(const char *data, size_t len)
{
	struct rbuf *b = malloc(sizeof(*b) + len);

	if (b == NULL)
		return NULL;
	atomic_init(&b->refs, 1);
	b->len = len;
	b->soft = SOFT_NO;
	memcpy(b->data, data, len);
	return b;
}

static struct rbuf *
rbuf_get(struct rbuf *b)
{
	if (b)
		atomic_fetch_add(&b->refs, 1);
	return b;
}

static void
rbuf_put(struct rbuf *b)
{
	if (b && atomic_fetch_sub(&b->refs, 1) == 1)
		free(b);
}

/* ---- snapshot of peer fragments ---- */

struct snap {
	atomic_int refs;
	uint64_t version;
	size_t n;
	int64_t *ids;
	struct rbuf **frags;
};

static void
snap_put(struct snap *s)
{
	if (s == NULL || atomic_fetch_sub(&s->refs, 1) != 1)
		return;
	for (size_t i = 0; i < s->n; i++)
		rbuf_put(s->frags[i]);
	free(s->frags);
	free(s->ids);
	free(s);
}

/* ---- nodes and streams ---- */

struct mstream;

struct mnode {
	struct store_node n;
	struct rbuf *frag;	/* peer JSON of this node, no newline */
	/* Routes it serves (advertised and approved), and those it carries for
	 * its peers: its exit routes and the subnets it is primary for. */
	struct ip_prefix served[ROUTES_MAX], carried[ROUTES_MAX];
	uint8_t nserved, ncarried;
	int nstreams;
	int64_t offline_since_ms;
	struct mstream *streams;	/* list via s->next_in_node */
};

enum stage { ST_NONE, ST_HEAD, ST_PEERS, ST_TAIL, ST_QUEUE };

struct mstream {
	struct mapper *m;
	int64_t node_id;
	struct http_stream *hs;
	struct mstream *next_in_node, *prev_in_node;
	bool closed;

	pthread_mutex_t lock;	/* guards the queue below */
	struct rbuf **q;
	unsigned qhead, qlen;
	bool need_full;
	bool ending;		/* the node expired: end once the queue is sent */
	bool online_stale;	/* online deltas were dropped: send a snapshot */

	/* Send state: the reader's own. */
	enum stage stage;
	struct rbuf *cur;
	size_t off;
	struct snap *snap;
	size_t peer_i;
	bool peer_sep;		/* a comma is owed before the next peer */
	bool (*can_see)(void *, int64_t, int64_t);
	void (*pol_put)(void *);
	void *pol_ctx;
};

struct change {
	uint64_t version;
	struct rbuf *msg;
	int64_t subject;	/* node it is about; visibility decides */
	bool self_only;		/* only the subject's own streams */
	bool full;		/* a marker: resume across it needs a full map */
	bool all;		/* for every node (dns) */
};

struct mapper {
	struct mapper_config cfg;
	char *derp_map;
	char *default_filter;
	char *dns;		/* the "dns" section */
	pthread_mutex_t lock;

	struct mnode **nodes;
	size_t nnodes, cap;
	int64_t *hkeys;		/* open addressing id -> index+1 */
	size_t *hvals;
	size_t hcap;
	size_t hused;		/* slots with a key, tombstones included */

	uint64_t version;
	struct change *ring;
	size_t ring_head, ring_len;

	struct snap *snap;	/* cached for the current version */

	struct mapper_policy_ops pol;
	void *pol_ctx;

	/* The primary router of each subnet prefix some node serves. */
	struct primary { struct ip_prefix p; int64_t node; } *prim;
	size_t nprim;

	size_t nstreams;
	atomic_uint_fast64_t bytes_sent, full_maps, deltas, collapses;
};

/* ---- id hash ---- */

static size_t
hslot(const struct mapper *m, int64_t id)
{
	uint64_t h = (uint64_t)id * 0x9e3779b97f4a7c15ULL;

	return (size_t)(h >> 20) & (m->hcap - 1);
}

static int
hgrow(struct mapper *m)
{
	size_t ncap = 1024;
	int64_t *k;
	size_t *v;

	while (ncap < 4 * (m->nnodes + 1))
		ncap *= 2;
	k = calloc(ncap, sizeof(*k));
	v = calloc(ncap, sizeof(*v));

	if (k == NULL || v == NULL) {
		free(k);
		free(v);
		return ERR_NOMEM;
	}
	free(m->hkeys);
	free(m->hvals);
	m->hkeys = k;
	m->hvals = v;
	m->hcap = ncap;
	m->hused = m->nnodes;
	for (size_t i = 0; i < m->nnodes; i++) {
		size_t s = hslot(m, m->nodes[i]->n.id);

		while (m->hkeys[s] != 0)
			s = (s + 1) & (m->hcap - 1);
		m->hkeys[s] = m->nodes[i]->n.id;
		m->hvals[s] = i + 1;
	}
	return 0;
}

static struct mnode *
node_find(const struct mapper *m, int64_t id, size_t *idx)
{
	if (m->hcap == 0)
		return NULL;
	for (size_t s = hslot(m, id); m->hkeys[s] != 0; s = (s + 1) & (m->hcap - 1)) {
		if (m->hkeys[s] == id && m->hvals[s] != 0) {
			if (idx)
				*idx = m->hvals[s] - 1;
			return m->nodes[m->hvals[s] - 1];
		}
	}
	return NULL;
}

static void
hset(struct mapper *m, int64_t id, size_t idx_plus1)
{
	size_t s = hslot(m, id);

	while (m->hkeys[s] != 0 && m->hkeys[s] != id)
		s = (s + 1) & (m->hcap - 1);
	if (m->hkeys[s] == 0)
		m->hused++;
	m->hkeys[s] = id;
	m->hvals[s] = idx_plus1;
}

/* Tombstones keep their key with value 0; rebuild when the table is reset. */
static void
hdel(struct mapper *m, int64_t id)
{
	for (size_t s = hslot(m, id); m->hkeys[s] != 0; s = (s + 1) & (m->hcap - 1)) {
		if (m->hkeys[s] == id) {
			m->hvals[s] = 0;
			return;
		}
	}
}

/* ---- helpers ---- */

static struct rbuf *
make_frag(const struct mnode *mn, bool online)
{
	json_t *v = nodeview_peer(&mn->n, online, time_now_s(), mn->carried, mn->ncarried);
	char *t = v ? json_dumps(v, JSON_COMPACT) : NULL;
	struct rbuf *b = t ? rbuf_new(t, strlen(t)) : NULL;

	free(t);
	json_decref(v);
	return b;
}

static bool
visible(const struct mapper *m, int64_t viewer, int64_t peer)
{
	if (viewer == peer)
		return false;
	return m->pol.can_see == NULL || m->pol.can_see(m->pol_ctx, viewer, peer);
}

static void
ring_add(struct mapper *m, struct rbuf *msg, int64_t subject, bool self_only, bool full)
{
	struct change *c;

	if (m->ring_len == m->cfg.ring_size) {
		rbuf_put(m->ring[m->ring_head].msg);
		m->ring_head = (m->ring_head + 1) % m->cfg.ring_size;
		m->ring_len--;
	}
	c = &m->ring[(m->ring_head + m->ring_len) % m->cfg.ring_size];
	c->version = m->version;
	c->msg = rbuf_get(msg);
	c->subject = subject;
	c->self_only = self_only;
	c->full = full;
	c->all = false;
	m->ring_len++;
}

/*
 * Queues msg on s; collapses the queue when full. A full queue drops a
 * keepalive, and drops an online delta but remembers to send the current
 * online flags of every peer once the queue has drained (far less than a
 * full map when thousands of nodes reconnect at once and every stream gets
 * an online delta for each). Called with m->lock.
 */
static void
stream_push(struct mstream *s, struct rbuf *msg)
{
	pthread_mutex_lock(&s->lock);
	if (s->need_full) {
		/* a full map is coming anyway */
	} else if (s->qlen == s->m->cfg.queue_max && msg->soft == SOFT_DROP) {
		/* the stream is busy; no keepalive needed */
	} else if (s->qlen == s->m->cfg.queue_max && msg->soft == SOFT_ONLINE) {
		s->online_stale = true;
	} else if (s->qlen == s->m->cfg.queue_max) {
		while (s->qlen > 0) {
			rbuf_put(s->q[s->qhead]);
			s->qhead = (s->qhead + 1) % s->m->cfg.queue_max;
			s->qlen--;
		}
		s->need_full = true;
		atomic_fetch_add(&s->m->collapses, 1);
	} else {
		s->q[(s->qhead + s->qlen) % s->m->cfg.queue_max] = rbuf_get(msg);
		s->qlen++;
	}
	pthread_mutex_unlock(&s->lock);
	if (s->hs)
		http_stream_wake(s->hs);
}

static void
stream_force_full(struct mstream *s)
{
	pthread_mutex_lock(&s->lock);
	s->need_full = true;
	pthread_mutex_unlock(&s->lock);
	if (s->hs)
		http_stream_wake(s->hs);
}

/* Sends msg to every stream whose node sees `subject` (or only the
 * subject's own streams). Called with m->lock. */
static void
fanout(struct mapper *m, struct rbuf *msg, int64_t subject, bool self_only)
{
	if (self_only) {
		struct mnode *mn = node_find(m, subject, NULL);

		for (struct mstream *s = mn ? mn->streams : NULL; s; s = s->next_in_node)
			stream_push(s, msg);
		return;
	}
	for (size_t i = 0; i < m->nnodes; i++) {
		struct mnode *mn = m->nodes[i];

		if (mn->streams == NULL || !visible(m, mn->n.id, subject))
			continue;
		for (struct mstream *s = mn->streams; s; s = s->next_in_node)
			stream_push(s, msg);
	}
	atomic_fetch_add(&m->deltas, 1);
}

/* Builds `{"type":"delta","version":V,"<kind>":<payload>}` and fans it out. */
static void
emit(struct mapper *m, const char *kind, const char *payload, size_t plen,
     int64_t subject, bool self_only)
{
	char head[96];
	int hl;
	struct rbuf *b;

	m->version++;
	hl = snprintf(head, sizeof(head), "{\"type\":\"delta\",\"version\":%" PRIu64 ",\"%s\":",
	    m->version, kind);
	if ((b = malloc(sizeof(*b) + (size_t)hl + plen + 2)) == NULL)
		return;
	atomic_init(&b->refs, 1);
	b->soft = strcmp(kind, "online") == 0 ? SOFT_ONLINE : SOFT_NO;
	memcpy(b->data, head, (size_t)hl);
	memcpy(b->data + hl, payload, plen);
	b->data[hl + plen] = '}';
	b->data[hl + plen + 1] = '\n';
	b->len = (size_t)hl + plen + 2;
	ring_add(m, b, subject, self_only, false);
	fanout(m, b, subject, self_only);
	rbuf_put(b);
}

static void
drop_snap(struct mapper *m)
{
	snap_put(m->snap);
	m->snap = NULL;
}

/* ---- routes ---- */

static bool
same_prefix(const struct ip_prefix *a, const struct ip_prefix *b)
{
	return a->bits == b->bits && addr_equal(&a->addr, &b->addr);
}

/* Rank of a router as primary for a prefix whose primary was `prev`: an
 * online primary stays (no flapping), then any online router, then the old
 * primary while none is online. Lower wins; ties go to the lower id. */
static int
primary_rank(const struct mnode *mn, int64_t prev)
{
	bool online = mn->nstreams > 0;

	return online ? (mn->n.id == prev ? 0 : 1) : (mn->n.id == prev ? 2 : 3);
}

/*
 * Chooses the primary router of every subnet prefix and updates what each
 * router carries. Routers whose carried routes changed get a fresh fragment
 * and a peer_changed delta, except `quiet` (the caller sends its own).
 * Returns true when quiet's carried routes changed. Called with m->lock;
 * O(nodes) but only run when a router changes.
 */
static bool
recompute_routes(struct mapper *m, int64_t quiet)
{
	struct primary *np = NULL;
	size_t nnp = 0, cap = 0;
	bool quiet_changed = false;

	/* The distinct subnet prefixes served by anyone. */
	for (size_t i = 0; i < m->nnodes; i++) {
		struct mnode *mn = m->nodes[i];

		for (size_t k = 0; k < mn->nserved; k++) {
			const struct ip_prefix *p = &mn->served[k];
			size_t e;

			if (route_is_exit(p))
				continue;
			for (e = 0; e < nnp && !same_prefix(&np[e].p, p); e++)
				;
			if (e < nnp)
				continue;
			if (nnp == cap) {
				size_t ncap = cap ? 2 * cap : 16;
				struct primary *t = realloc(np, ncap * sizeof(*t));

				if (t == NULL) {
					free(np);
					return false;
				}
				np = t;
				cap = ncap;
			}
			np[nnp].p = *p;
			np[nnp++].node = 0;
		}
	}
	/* The best router of each. */
	for (size_t e = 0; e < nnp; e++) {
		struct mnode *best = NULL;
		int64_t prev = 0;

		for (size_t j = 0; j < m->nprim; j++)
			if (same_prefix(&m->prim[j].p, &np[e].p))
				prev = m->prim[j].node;
		for (size_t i = 0; i < m->nnodes; i++) {
			struct mnode *mn = m->nodes[i];
			bool serves = false;

			for (size_t k = 0; k < mn->nserved && !serves; k++)
				serves = same_prefix(&mn->served[k], &np[e].p);
			if (!serves)
				continue;
			if (best == NULL || primary_rank(mn, prev) < primary_rank(best, prev) ||
			    (primary_rank(mn, prev) == primary_rank(best, prev) &&
			     mn->n.id < best->n.id))
				best = mn;
		}
		np[e].node = best->n.id;
	}
	free(m->prim);
	m->prim = np;
	m->nprim = nnp;

	for (size_t i = 0; i < m->nnodes; i++) {
		struct mnode *mn = m->nodes[i];
		struct ip_prefix c[ROUTES_MAX];
		size_t nc = 0;
		struct rbuf *frag;

		if (mn->nserved == 0 && mn->ncarried == 0)
			continue;
		for (size_t k = 0; k < mn->nserved; k++) {
			bool carry = route_is_exit(&mn->served[k]);

			for (size_t e = 0; !carry && e < nnp; e++)
				carry = np[e].node == mn->n.id && same_prefix(&np[e].p, &mn->served[k]);
			if (carry)
				c[nc++] = mn->served[k];
		}
		if (nc == mn->ncarried && memcmp(c, mn->carried, nc * sizeof(c[0])) == 0)
			continue;
		memcpy(mn->carried, c, nc * sizeof(c[0]));
		mn->ncarried = (uint8_t)nc;
		if (mn->n.id == quiet) {
			quiet_changed = true;
			continue;
		}
		if ((frag = make_frag(mn, mn->nstreams > 0)) == NULL)
			continue;
		rbuf_put(mn->frag);
		mn->frag = frag;
		drop_snap(m);
		emit(m, "peer_changed", mn->frag->data, mn->frag->len, mn->n.id, false);
		emit(m, "self", mn->frag->data, mn->frag->len, mn->n.id, true);
	}
	return quiet_changed;
}

/* Refreshes a node's served routes; true when it is or was a router. */
static bool
note_routes(struct mnode *mn)
{
	bool was = mn->nserved > 0 || mn->ncarried > 0;

	mn->nserved = (uint8_t)routes_served(&mn->n, mn->served);
	return was || mn->nserved > 0;
}

/* ---- public ---- */

int
mapper_new(const struct mapper_config *cfg, struct mapper **out)
{
	struct mapper *m = calloc(1, sizeof(*m));

	*out = NULL;
	if (m == NULL)
		return ERR_NOMEM;
	m->cfg = *cfg;
	if (m->cfg.queue_max == 0)
		m->cfg.queue_max = 128;
	if (m->cfg.ring_size == 0)
		m->cfg.ring_size = 4096;
	m->derp_map = strdup(cfg->derp_map_json ? cfg->derp_map_json : "{\"Regions\":{}}");
	m->default_filter = strdup(cfg->default_filter_json ? cfg->default_filter_json : "[]");
	m->dns = strdup(cfg->dns_json ? cfg->dns_json : "{\"magic_dns\":false}");
	m->ring = calloc(m->cfg.ring_size, sizeof(*m->ring));
	pthread_mutex_init(&m->lock, NULL);
	/* Versions from an earlier run are older than any of this run. */
	m->version = (uint64_t)time_now_s() << 20;
	if (m->derp_map == NULL || m->default_filter == NULL || m->dns == NULL || m->ring == NULL ||
	    hgrow(m) != 0) {
		mapper_free(m);
		return ERR_NOMEM;
	}
	*out = m;
	return 0;
}

void
mapper_free(struct mapper *m)
{
	if (m == NULL)
		return;
	for (size_t i = 0; i < m->nnodes; i++) {
		rbuf_put(m->nodes[i]->frag);
		free(m->nodes[i]);
	}
	for (size_t i = 0; i < m->ring_len; i++)
		rbuf_put(m->ring[(m->ring_head + i) % m->cfg.ring_size].msg);
	snap_put(m->snap);
	if (m->pol.put)
		m->pol.put(m->pol_ctx);
	free(m->ring);
	free(m->nodes);
	free(m->hkeys);
	free(m->hvals);
	free(m->derp_map);
	free(m->default_filter);
	free(m->dns);
	free(m->prim);
	pthread_mutex_destroy(&m->lock);
	free(m);
}

static int
insert_node(struct mapper *m, const struct store_node *n, struct mnode **out)
{
	struct mnode *mn;

	if (m->nnodes == m->cap) {
		size_t ncap = m->cap ? m->cap * 2 : 256;
		struct mnode **nn = realloc(m->nodes, ncap * sizeof(*nn));

		if (nn == NULL)
			return ERR_NOMEM;
		m->nodes = nn;
		m->cap = ncap;
	}
	if ((m->hused + 1) * 2 > m->hcap && hgrow(m) != 0)
		return ERR_NOMEM;
	if ((mn = calloc(1, sizeof(*mn))) == NULL)
		return ERR_NOMEM;
	mn->n = *n;
	mn->offline_since_ms = time_mono_ms();
	if ((mn->frag = make_frag(mn, false)) == NULL) {
		free(mn);
		return ERR_NOMEM;
	}
	m->nodes[m->nnodes++] = mn;
	hset(m, n->id, m->nnodes);
	*out = mn;
	return 0;
}

int
mapper_load(struct mapper *m, const struct store_node *n)
{
	struct mnode *mn;
	int r;

	pthread_mutex_lock(&m->lock);
	if ((r = insert_node(m, n, &mn)) == 0 && note_routes(mn))
		recompute_routes(m, 0);
	pthread_mutex_unlock(&m->lock);
	return r;
}

void
mapper_node_upsert(struct mapper *m, const struct store_node *n)
{
	struct mnode *mn;
	bool added = false;
	struct rbuf *frag;

	pthread_mutex_lock(&m->lock);
	if ((mn = node_find(m, n->id, NULL)) == NULL) {
		if (insert_node(m, n, &mn) != 0) {
			log_error("msg=\"out of memory adding node to map\" node_id=%" PRId64, n->id);
			goto out;
		}
		added = true;
	} else {
		mn->n = *n;
	}
	if (note_routes(mn))
		recompute_routes(m, mn->n.id);
	if ((frag = make_frag(mn, mn->nstreams > 0)) != NULL) {
		rbuf_put(mn->frag);
		mn->frag = frag;
	}
	drop_snap(m);
	emit(m, added ? "peer_added" : "peer_changed", mn->frag->data, mn->frag->len,
	    n->id, false);
	emit(m, "self", mn->frag->data, mn->frag->len, n->id, true);
	/* An expired or logged-out node learns it from that "self" message and
	 * its streams end: it gets no more updates until it registers again. */
	if (n->expires_at != 0 && n->expires_at <= time_now_s()) {
		for (struct mstream *st = mn->streams; st; st = st->next_in_node) {
			pthread_mutex_lock(&st->lock);
			st->ending = true;
			pthread_mutex_unlock(&st->lock);
			if (st->hs)
				http_stream_wake(st->hs);
		}
	}
out:
	pthread_mutex_unlock(&m->lock);
}

void
mapper_node_remove(struct mapper *m, int64_t id)
{
	struct mnode *mn, *last;
	size_t idx;
	char payload[32];
	int n;
	bool router;

	pthread_mutex_lock(&m->lock);
	if ((mn = node_find(m, id, &idx)) == NULL)
		goto out;
	router = mn->nserved > 0 || mn->ncarried > 0;
	n = snprintf(payload, sizeof(payload), "%" PRId64, id);
	/* Tell the peers while the node's visibility is still known. */
	emit(m, "peer_removed", payload, (size_t)n, id, false);
	for (struct mstream *s = mn->streams; s; s = s->next_in_node) {
		stream_force_full(s);	/* its own stream learns it is gone */
		s->closed = true;
		s->node_id = 0;
	}
	/* Detach its streams: they end at their next read. */
	while (mn->streams) {
		struct mstream *s = mn->streams;

		mn->streams = s->next_in_node;
		s->next_in_node = s->prev_in_node = NULL;
	}
	hdel(m, id);
	last = m->nodes[m->nnodes - 1];
	m->nodes[idx] = last;
	m->nnodes--;
	if (last != mn)
		hset(m, last->n.id, idx + 1);
	rbuf_put(mn->frag);
	free(mn);
	drop_snap(m);
	if (router)
		recompute_routes(m, 0);
out:
	pthread_mutex_unlock(&m->lock);
}

void
mapper_set_policy(struct mapper *m, const struct mapper_policy_ops *ops, void *ctx,
		  const int64_t *changed, size_t nchanged, bool all)
{
	struct mapper_policy_ops old_ops;
	void *old_ctx;
	struct rbuf *marker;

	if (ops && ops->get)
		ops->get(ctx);
	pthread_mutex_lock(&m->lock);
	old_ops = m->pol;
	old_ctx = m->pol_ctx;
	if (ops)
		m->pol = *ops;
	else
		memset(&m->pol, 0, sizeof(m->pol));
	m->pol_ctx = ops ? ctx : NULL;
	m->version++;
	if ((marker = rbuf_new("", 0)) != NULL) {
		ring_add(m, marker, 0, false, true);
		rbuf_put(marker);
	}
	if (all) {
		for (size_t i = 0; i < m->nnodes; i++)
			for (struct mstream *s = m->nodes[i]->streams; s; s = s->next_in_node)
				stream_force_full(s);
	} else {
		for (size_t i = 0; i < nchanged; i++) {
			struct mnode *mn = node_find(m, changed[i], NULL);

			for (struct mstream *s = mn ? mn->streams : NULL; s; s = s->next_in_node)
				stream_force_full(s);
		}
	}
	pthread_mutex_unlock(&m->lock);
	if (old_ops.put)
		old_ops.put(old_ctx);
}

bool
mapper_set_dns(struct mapper *m, const char *dns_json)
{
	char head[96], *copy;
	struct rbuf *b;
	size_t plen = strlen(dns_json);
	int hl;

	pthread_mutex_lock(&m->lock);
	if (strcmp(m->dns, dns_json) == 0 || (copy = strdup(dns_json)) == NULL) {
		pthread_mutex_unlock(&m->lock);
		return false;
	}
	free(m->dns);
	m->dns = copy;
	m->version++;
	hl = snprintf(head, sizeof(head), "{\"type\":\"delta\",\"version\":%" PRIu64 ",\"dns\":",
	    m->version);
	if ((b = malloc(sizeof(*b) + (size_t)hl + plen + 2)) != NULL) {
		atomic_init(&b->refs, 1);
		b->soft = SOFT_NO;
		memcpy(b->data, head, (size_t)hl);
		memcpy(b->data + hl, dns_json, plen);
		memcpy(b->data + hl + plen, "}\n", 2);
		b->len = (size_t)hl + plen + 2;
		ring_add(m, b, 0, false, false);
		m->ring[(m->ring_head + m->ring_len - 1) % m->cfg.ring_size].all = true;
		for (size_t i = 0; i < m->nnodes; i++)
			for (struct mstream *s = m->nodes[i]->streams; s; s = s->next_in_node)
				stream_push(s, b);
		atomic_fetch_add(&m->deltas, 1);
		rbuf_put(b);
	} else {
		/* No delta to send: everyone needs a full map with the new section. */
		for (size_t i = 0; i < m->nnodes; i++)
			for (struct mstream *s = m->nodes[i]->streams; s; s = s->next_in_node)
				stream_force_full(s);
	}
	pthread_mutex_unlock(&m->lock);
	return true;
}

void
mapper_filter_changed(struct mapper *m, const int64_t *ids, size_t n)
{
	pthread_mutex_lock(&m->lock);
	for (size_t i = 0; i < n; i++) {
		char *f = m->pol.filter ? m->pol.filter(m->pol_ctx, ids[i]) : NULL;
		const char *t = f ? f : m->default_filter;

		emit(m, "filter", t, strlen(t), ids[i], true);
		free(f);
	}
	pthread_mutex_unlock(&m->lock);
}

int
mapper_nodes_copy(struct mapper *m, struct store_node **out, size_t *n)
{
	struct store_node *v;

	*out = NULL;
	*n = 0;
	pthread_mutex_lock(&m->lock);
	v = malloc((m->nnodes + 1) * sizeof(*v));
	if (v == NULL) {
		pthread_mutex_unlock(&m->lock);
		return ERR_NOMEM;
	}
	for (size_t i = 0; i < m->nnodes; i++)
		v[i] = m->nodes[i]->n;
	*n = m->nnodes;
	pthread_mutex_unlock(&m->lock);
	*out = v;
	return 0;
}

int
mapper_node_get(struct mapper *m, int64_t id, struct store_node *out, bool *online)
{
	struct mnode *mn;
	int r = ERR_NOT_FOUND;

	pthread_mutex_lock(&m->lock);
	if ((mn = node_find(m, id, NULL)) != NULL) {
		*out = mn->n;
		if (online)
			*online = mn->nstreams > 0;
		r = 0;
	}
	pthread_mutex_unlock(&m->lock);
	return r;
}

bool
mapper_node_key_known(struct mapper *m, const uint8_t node_key[static KEY_LEN], int64_t now_s)
{
	bool ok = false;

	pthread_mutex_lock(&m->lock);
	for (size_t i = 0; i < m->nnodes; i++) {
		const struct store_node *n = &m->nodes[i]->n;

		if (memcmp(n->node_key, node_key, KEY_LEN) == 0) {
			ok = n->expires_at == 0 || n->expires_at > now_s;
			break;
		}
	}
	pthread_mutex_unlock(&m->lock);
	return ok;
}

size_t
mapper_node_carried(struct mapper *m, int64_t id, struct ip_prefix out[static ROUTES_MAX])
{
	struct mnode *mn;
	size_t n = 0;

	pthread_mutex_lock(&m->lock);
	if ((mn = node_find(m, id, NULL)) != NULL) {
		n = mn->ncarried;
		memcpy(out, mn->carried, n * sizeof(*out));
	}
	pthread_mutex_unlock(&m->lock);
	return n;
}

/* ---- streams ---- */

static void
set_online(struct mapper *m, struct mnode *mn, bool online)
{
	bool carried_changed = (mn->nserved > 0 || mn->ncarried > 0) &&
	    recompute_routes(m, mn->n.id);
	struct rbuf *frag = make_frag(mn, online);
	char payload[64];
	int n;

	if (frag) {
		rbuf_put(mn->frag);
		mn->frag = frag;
		drop_snap(m);
		if (carried_changed) {
			emit(m, "peer_changed", frag->data, frag->len, mn->n.id, false);
			emit(m, "self", frag->data, frag->len, mn->n.id, true);
		}
	}
	n = snprintf(payload, sizeof(payload), "{\"id\":%" PRId64 ",\"online\":%s}",
	    mn->n.id, online ? "true" : "false");
	emit(m, "online", payload, (size_t)n, mn->n.id, false);
}

static struct snap *
current_snap(struct mapper *m)
{
	struct snap *s = m->snap;

	if (s != NULL && s->version == m->version)
		goto have;
	drop_snap(m);
	if ((s = calloc(1, sizeof(*s))) == NULL)
		return NULL;
	atomic_init(&s->refs, 1);
	s->version = m->version;
	s->n = m->nnodes;
	s->ids = malloc((m->nnodes + 1) * sizeof(*s->ids));
	s->frags = malloc((m->nnodes + 1) * sizeof(*s->frags));
	if (s->ids == NULL || s->frags == NULL) {
		s->n = 0;
		snap_put(s);
		return NULL;
	}
	for (size_t i = 0; i < m->nnodes; i++) {
		s->ids[i] = m->nodes[i]->n.id;
		s->frags[i] = rbuf_get(m->nodes[i]->frag);
	}
	m->snap = s;
have:
	atomic_fetch_add(&s->refs, 1);
	return s;
}

/* Starts a full map: builds the head under the lock and drops queued deltas
 * that the map already contains. Returns false when the node is gone. */
static bool
begin_full(struct mstream *s)
{
	struct mapper *m = s->m;
	struct mnode *mn;
	char *filter, *head;
	size_t hl;
	bool ok = false;

	pthread_mutex_lock(&m->lock);
	if (s->closed || (mn = node_find(m, s->node_id, NULL)) == NULL)
		goto out;
	snap_put(s->snap);
	if ((s->snap = current_snap(m)) == NULL)
		goto out;
	filter = m->pol.filter ? m->pol.filter(m->pol_ctx, s->node_id) : NULL;
	hl = 136 + mn->frag->len + strlen(m->derp_map) + strlen(m->dns) +
	    strlen(filter ? filter : m->default_filter);
	if ((head = malloc(hl)) != NULL) {
		int n = snprintf(head, hl, "{\"type\":\"full\",\"version\":%" PRIu64
		    ",\"self\":%.*s,\"derp_map\":%s,\"dns\":%s,\"filter\":%s,\"peers\":[",
		    m->version, (int)mn->frag->len, mn->frag->data, m->derp_map, m->dns,
		    filter ? filter : m->default_filter);

		rbuf_put(s->cur);
		s->cur = rbuf_new(head, (size_t)n);
		free(head);
	}
	free(filter);
	if (s->cur == NULL)
		goto out;
	if (s->pol_put)
		s->pol_put(s->pol_ctx);
	s->can_see = m->pol.can_see;
	s->pol_ctx = m->pol_ctx;
	s->pol_put = m->pol.put;
	if (m->pol.get)
		m->pol.get(m->pol_ctx);
	pthread_mutex_lock(&s->lock);
	while (s->qlen > 0) {
		rbuf_put(s->q[s->qhead]);
		s->qhead = (s->qhead + 1) % m->cfg.queue_max;
		s->qlen--;
	}
	s->need_full = false;
	s->online_stale = false;	/* the full map carries every online flag */
	pthread_mutex_unlock(&s->lock);
	s->off = 0;
	s->stage = ST_HEAD;
	s->peer_i = 0;
	s->peer_sep = false;
	atomic_fetch_add(&m->full_maps, 1);
	ok = true;
out:
	pthread_mutex_unlock(&m->lock);
	return ok;
}

static size_t
copy_out(struct mstream *s, const char *src, size_t srclen, char *buf, size_t max)
{
	size_t n = srclen - s->off;

	if (n > max)
		n = max;
	memcpy(buf, src + s->off, n);
	s->off += n;
	return n;
}

/* The online flag of every peer the stream's node sees, as online deltas
 * at the current version: sent after online deltas had to be dropped from
 * a full queue. NULL when the node is gone or memory is short. */
static struct rbuf *
online_snapshot(struct mstream *s)
{
	struct mapper *m = s->m;
	struct rbuf *b = NULL;
	struct buf out;
	int r = 0;

	buf_init(&out, (size_t)64 << 20);
	pthread_mutex_lock(&m->lock);
	if (node_find(m, s->node_id, NULL) != NULL) {
		for (size_t i = 0; r == 0 && i < m->nnodes; i++) {
			const struct mnode *p = m->nodes[i];

			if (visible(m, s->node_id, p->n.id))
				r = buf_printf(&out, "{\"type\":\"delta\",\"version\":%" PRIu64
				    ",\"online\":{\"id\":%" PRId64 ",\"online\":%s}}\n", m->version,
				    p->n.id, p->nstreams > 0 ? "true" : "false");
		}
		if (r == 0 && out.len > 0)
			b = rbuf_new((const char *)out.data, out.len);
	}
	pthread_mutex_unlock(&m->lock);
	buf_cleanup(&out);
	return b;
}

static ssize_t
stream_read(void *ctx, char *buf, size_t max)
{
	struct mstream *s = ctx;
	size_t done = 0;
	bool need_full, ending, stale;

	while (done < max) {
		switch (s->stage) {
		case ST_HEAD:
			done += copy_out(s, s->cur->data, s->cur->len, buf + done, max - done);
			if (s->off == s->cur->len) {
				rbuf_put(s->cur);
				s->cur = NULL;
				s->off = 0;
				s->stage = ST_PEERS;
			}
			continue;
		case ST_PEERS:
			if (s->cur == NULL) {
				/* find the next visible peer */
				while (s->peer_i < s->snap->n) {
					int64_t pid = s->snap->ids[s->peer_i];

					if (pid != s->node_id && (s->can_see == NULL ||
					    s->can_see(s->pol_ctx, s->node_id, pid)))
						break;
					s->peer_i++;
				}
				if (s->peer_i == s->snap->n) {
					s->stage = ST_TAIL;
					s->off = 0;
					continue;
				}
				if (s->peer_sep) {
					buf[done++] = ',';
					s->peer_sep = false;
					continue;
				}
				s->cur = rbuf_get(s->snap->frags[s->peer_i]);
				s->off = 0;
			}
			done += copy_out(s, s->cur->data, s->cur->len, buf + done, max - done);
			if (s->off == s->cur->len) {
				rbuf_put(s->cur);
				s->cur = NULL;
				s->peer_i++;
				s->peer_sep = true;
			}
			continue;
		case ST_TAIL:
			done += copy_out(s, "]}\n", 3, buf + done, max - done);
			if (s->off == 3) {
				snap_put(s->snap);
				s->snap = NULL;
				if (s->pol_put)
					s->pol_put(s->pol_ctx);
				s->pol_put = NULL;
				s->can_see = NULL;
				s->off = 0;
				s->stage = ST_QUEUE;
			}
			continue;
		case ST_QUEUE:
			if (s->cur != NULL) {
				done += copy_out(s, s->cur->data, s->cur->len, buf + done, max - done);
				if (s->off == s->cur->len) {
					rbuf_put(s->cur);
					s->cur = NULL;
					s->off = 0;
				}
				continue;
			}
			pthread_mutex_lock(&s->lock);
			need_full = s->need_full;
			if (!need_full && s->qlen > 0) {
				s->cur = s->q[s->qhead];
				s->qhead = (s->qhead + 1) % s->m->cfg.queue_max;
				s->qlen--;
				s->off = 0;
			}
			ending = s->ending && !need_full && s->cur == NULL;
			stale = !need_full && s->cur == NULL && s->online_stale;
			if (stale)
				s->online_stale = false;
			pthread_mutex_unlock(&s->lock);
			if (ending)
				return done > 0 ? (ssize_t)done : -1;
			if (stale && (s->cur = online_snapshot(s)) != NULL) {
				s->off = 0;
				continue;
			}
			if (need_full) {
				if (done > 0)
					goto out;
				if (!begin_full(s))
					return -1;
				continue;
			}
			if (s->cur == NULL)
				goto out;
			continue;
		case ST_NONE:
			if (!begin_full(s))
				return done > 0 ? (ssize_t)done : -1;
			continue;
		}
	}
out:
	atomic_fetch_add(&s->m->bytes_sent, done);
	return (ssize_t)done;
}

static void
stream_attach(void *ctx, struct http_stream *hs)
{
	struct mstream *s = ctx;

	pthread_mutex_lock(&s->m->lock);
	s->hs = hs;
	pthread_mutex_unlock(&s->m->lock);
}

static void
stream_close(void *ctx)
{
	struct mstream *s = ctx;
	struct mapper *m = s->m;
	struct mnode *mn;
	int64_t offline = 0;

	pthread_mutex_lock(&m->lock);
	if (!s->closed && (mn = node_find(m, s->node_id, NULL)) != NULL) {
		if (s->prev_in_node)
			s->prev_in_node->next_in_node = s->next_in_node;
		else
			mn->streams = s->next_in_node;
		if (s->next_in_node)
			s->next_in_node->prev_in_node = s->prev_in_node;
		if (--mn->nstreams == 0) {
			mn->offline_since_ms = time_mono_ms();
			set_online(m, mn, false);
			offline = mn->n.id;
		}
	}
	m->nstreams--;
	pthread_mutex_unlock(&m->lock);
	if (offline && m->cfg.on_offline)
		m->cfg.on_offline(m->cfg.ctx, offline);
	while (s->qlen > 0) {
		rbuf_put(s->q[s->qhead]);
		s->qhead = (s->qhead + 1) % m->cfg.queue_max;
		s->qlen--;
	}
	rbuf_put(s->cur);
	snap_put(s->snap);
	if (s->pol_put)
		s->pol_put(s->pol_ctx);
	free(s->q);
	pthread_mutex_destroy(&s->lock);
	free(s);
}

static const struct http_stream_ops stream_ops = {
	.attach = stream_attach,
	.read = stream_read,
	.close = stream_close,
};

/* Queues the changes after `since` for a resuming stream, or says that a
 * full map is needed. Called with m->lock. */
static bool
resume(struct mapper *m, struct mstream *s, uint64_t since)
{
	size_t first;

	if (since == 0 || since > m->version)
		return false;
	if (since == m->version)
		return true;
	if (m->ring_len == 0 || m->ring[m->ring_head].version > since + 1)
		return false;
	first = m->ring_len;
	for (size_t i = 0; i < m->ring_len; i++) {
		struct change *c = &m->ring[(m->ring_head + i) % m->cfg.ring_size];

		if (c->version > since) {
			first = i;
			break;
		}
	}
	for (size_t i = first; i < m->ring_len; i++) {
		struct change *c = &m->ring[(m->ring_head + i) % m->cfg.ring_size];

		if (c->full || s->qlen == m->cfg.queue_max)
			return false;
		if (!c->all && (c->self_only ? c->subject != s->node_id :
		    !visible(m, s->node_id, c->subject)))
			continue;
		s->q[(s->qhead + s->qlen) % m->cfg.queue_max] = rbuf_get(c->msg);
		s->qlen++;
	}
	return true;
}

int
mapper_stream_open(struct mapper *m, int64_t node_id, uint64_t since, struct http_response *resp)
{
	struct mstream *s = calloc(1, sizeof(*s));
	struct mnode *mn;
	int r = ERR_NOT_FOUND;

	if (s == NULL || (s->q = calloc(m->cfg.queue_max, sizeof(*s->q))) == NULL) {
		free(s);
		return ERR_NOMEM;
	}
	s->m = m;
	s->node_id = node_id;
	pthread_mutex_init(&s->lock, NULL);
	pthread_mutex_lock(&m->lock);
	if ((mn = node_find(m, node_id, NULL)) == NULL)
		goto fail;
	if (resume(m, s, since)) {
		s->stage = ST_QUEUE;
	} else {
		while (s->qlen > 0) {
			rbuf_put(s->q[s->qhead]);
			s->qhead = (s->qhead + 1) % m->cfg.queue_max;
			s->qlen--;
		}
		s->stage = ST_NONE;
	}
	s->next_in_node = mn->streams;
	if (mn->streams)
		mn->streams->prev_in_node = s;
	mn->streams = s;
	m->nstreams++;
	if (mn->nstreams++ == 0)
		set_online(m, mn, true);
	pthread_mutex_unlock(&m->lock);
	resp->status = 200;
	resp->content_type = "application/x-ndjson";
	resp->stream_ops = &stream_ops;
	resp->stream_ctx = s;
	return 0;
fail:
	pthread_mutex_unlock(&m->lock);
	free(s->q);
	pthread_mutex_destroy(&s->lock);
	free(s);
	return r;
}

void
mapper_keepalive(struct mapper *m)
{
	char line[96];
	struct rbuf *b;
	int n;

	pthread_mutex_lock(&m->lock);
	n = snprintf(line, sizeof(line), "{\"type\":\"keepalive\",\"version\":%" PRIu64 "}\n",
	    m->version);
	if ((b = rbuf_new(line, (size_t)n)) != NULL) {
		b->soft = SOFT_DROP;
		for (size_t i = 0; i < m->nnodes; i++)
			for (struct mstream *s = m->nodes[i]->streams; s; s = s->next_in_node)
				stream_push(s, b);
		rbuf_put(b);
	}
	pthread_mutex_unlock(&m->lock);
}

size_t
mapper_idle_ephemeral(struct mapper *m, int64_t timeout_ms, int64_t *ids, size_t max)
{
	int64_t now = time_mono_ms();
	size_t n = 0;

	pthread_mutex_lock(&m->lock);
	for (size_t i = 0; i < m->nnodes && n < max; i++) {
		struct mnode *mn = m->nodes[i];

		if (mn->n.ephemeral && mn->nstreams == 0 &&
		    now - mn->offline_since_ms >= timeout_ms)
			ids[n++] = mn->n.id;
	}
	pthread_mutex_unlock(&m->lock);
	return n;
}

void
mapper_stats(struct mapper *m, struct mapper_stats *out)
{
	memset(out, 0, sizeof(*out));
	pthread_mutex_lock(&m->lock);
	out->nodes = m->nnodes;
	for (size_t i = 0; i < m->nnodes; i++)
		if (m->nodes[i]->nstreams > 0)
			out->online_nodes++;
	out->streams = m->nstreams;
	out->version = m->version;
	pthread_mutex_unlock(&m->lock);
	out->bytes_sent = atomic_load(&m->bytes_sent);
	out->full_maps = atomic_load(&m->full_maps);
	out->deltas = atomic_load(&m->deltas);
	out->collapses = atomic_load(&m->collapses);
}
