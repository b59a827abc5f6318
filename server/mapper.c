// SPDX-License-Identifier: MIT
/*
 * Live netmap state, the change-log mirror and map streams. Lock order:
 * m->lock, then a stream's s->lock. A stream's reader (on an HTTP thread)
 * touches its send state without locks; only its queue and flags are shared
 * with producers.
 */
#include <inttypes.h>
#include <stdatomic.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <zstd.h>

#include "common/buf.h"
#include "common/log.h"
#include "common/util.h"
#include "server/mapper.h"
#include "policy/policy.h"
#include "server/nodeview.h"
#include "server/routes.h"

enum {
	RENDER_BATCH = 64 * 1024,	/* bytes of replayed messages per render */
	ZBLOCK = 64,			/* snapshot peers per shared compressed block */
	ZLEVEL = 3,
};

/* ---- id lists ---- */

static int
ids_push(struct mapper_ids *l, int64_t id)
{
	if (l->n == l->cap) {
		size_t ncap = l->cap ? 2 * l->cap : 16;
		int64_t *v = realloc(l->v, ncap * sizeof(*v));

		if (v == NULL)
			return ERR_NOMEM;
		l->v = v;
		l->cap = ncap;
	}
	l->v[l->n++] = id;
	return 0;
}

void
mapper_ids_free(struct mapper_ids *l)
{
	free(l->v);
	memset(l, 0, sizeof(*l));
}

static int
cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

	return (x > y) - (x < y);
}

static bool
ids_has(const int64_t *v, size_t n, int64_t id)
{
	return n > 0 && bsearch(&id, v, n, sizeof(*v), cmp_i64) != NULL;
}

/* A JSON array of integers into a sorted malloc'd array. */
static int
ids_from_json(json_t *a, int64_t **out, uint32_t *n)
{
	size_t i, k = 0;
	json_t *v;

	*out = NULL;
	*n = 0;
	if (!json_is_array(a) || json_array_size(a) == 0)
		return 0;
	if ((*out = malloc(json_array_size(a) * sizeof(**out))) == NULL)
		return ERR_NOMEM;
	json_array_foreach(a, i, v)
		if (json_is_integer(v))
			(*out)[k++] = json_integer_value(v);
	if (k > 1)
		qsort(*out, k, sizeof(**out), cmp_i64);
	*n = (uint32_t)k;
	return 0;
}

static int
ids_json(struct buf *b, const int64_t *v, size_t n)
{
	int r = buf_append(b, "[", 1);

	for (size_t i = 0; r == 0 && i < n; i++)
		r = buf_printf(b, i ? ",%" PRId64 : "%" PRId64, v[i]);
	return r ? r : buf_append(b, "]", 1);
}

/* ---- shared immutable buffers ---- */

struct rbuf {
	atomic_int refs;
	_Atomic(struct rbuf *) z;	/* the same bytes as one zstd frame, made once */
	bool soft;		/* a keepalive: a busy stream drops it */
	uint64_t version;	/* of the last message in it; 0: none */
	size_t len;
	char data[];
};

static struct rbuf *
rbuf_new(const char *data, size_t len, uint64_t version)
{
	struct rbuf *b = malloc(sizeof(*b) + len);

	if (b == NULL)
		return NULL;
	atomic_init(&b->refs, 1);
	atomic_init(&b->z, NULL);
	b->len = len;
	b->soft = false;
	b->version = version;
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
	if (b && atomic_fetch_sub(&b->refs, 1) == 1) {
		struct rbuf *z = atomic_load(&b->z);

		if (z)
			rbuf_put(z);
		free(b);
	}
}

/* ---- zstd (Accept-Encoding: zstd) ---- */

/* One compression context per thread, freed when the thread ends. */
static pthread_key_t zkey;
static pthread_once_t zonce = PTHREAD_ONCE_INIT;

static void
zfree(void *p)
{
	ZSTD_freeCCtx(p);
}

static void
zkey_init(void)
{
	(void)pthread_key_create(&zkey, zfree);
}

/* `data` as one zstd frame in a new buffer; a stream of such frames is a
 * valid zstd stream (the client decodes it as one). */
static struct rbuf *
zframe(const char *data, size_t len, uint64_t version)
{
	ZSTD_CCtx *cc;
	struct rbuf *b;
	size_t bound = ZSTD_compressBound(len), n;

	(void)pthread_once(&zonce, zkey_init);
	if ((cc = pthread_getspecific(zkey)) == NULL) {
		if ((cc = ZSTD_createCCtx()) == NULL)
			return NULL;
		(void)pthread_setspecific(zkey, cc);
	}
	if ((b = malloc(sizeof(*b) + bound)) == NULL)
		return NULL;
	n = ZSTD_compressCCtx(cc, b->data, bound, data, len, ZLEVEL);
	if (ZSTD_isError(n)) {
		free(b);
		return NULL;
	}
	atomic_init(&b->refs, 1);
	atomic_init(&b->z, NULL);
	b->len = n;
	b->soft = false;
	b->version = version;
	return b;
}

/* The compressed twin of b, made by the first stream that needs it and
 * shared by all (a new reference), or NULL when memory is short. */
static struct rbuf *
rbuf_z(struct rbuf *b)
{
	struct rbuf *z = atomic_load(&b->z), *none = NULL;

	if (z == NULL) {
		if ((z = zframe(b->data, b->len, b->version)) == NULL)
			return NULL;
		z->soft = b->soft;
		if (!atomic_compare_exchange_strong(&b->z, &none, z)) {
			rbuf_put(z);
			z = none;
		}
	}
	return rbuf_get(z);
}

/* ---- snapshot of peer fragments ---- */

struct snap {
	atomic_int refs;
	uint64_t version;
	size_t n;
	int64_t *ids;
	struct rbuf **frags;
	/* zstd: block b (peers b*ZBLOCK..) as ",frag,frag,...", compressed
	 * once for every stream that sees all of its peers */
	pthread_mutex_t zlock;
	struct rbuf **zblk;
};

static void
snap_put(struct snap *s)
{
	if (s == NULL || atomic_fetch_sub(&s->refs, 1) != 1)
		return;
	for (size_t i = 0; i < s->n; i++)
		rbuf_put(s->frags[i]);
	for (size_t i = 0; s->zblk && i < (s->n + ZBLOCK - 1) / ZBLOCK; i++)
		rbuf_put(s->zblk[i]);
	free(s->zblk);
	pthread_mutex_destroy(&s->zlock);
	free(s->frags);
	free(s->ids);
	free(s);
}

/* The shared compressed block b of the snapshot (a new reference). */
static struct rbuf *
snap_zblock(struct snap *s, size_t b)
{
	struct rbuf *z = NULL;
	struct buf t;
	int r = 0;

	pthread_mutex_lock(&s->zlock);
	if (s->zblk == NULL)
		s->zblk = calloc((s->n + ZBLOCK - 1) / ZBLOCK + 1, sizeof(*s->zblk));
	if (s->zblk != NULL && s->zblk[b] == NULL) {
		buf_init(&t, (size_t)64 << 20);
		for (size_t i = b * ZBLOCK; r == 0 && i < s->n && i < (b + 1) * ZBLOCK; i++)
			if ((r = buf_append(&t, ",", 1)) == 0)
				r = buf_append(&t, s->frags[i]->data, s->frags[i]->len);
		if (r == 0)
			s->zblk[b] = zframe((const char *)t.data, t.len, 0);
		buf_cleanup(&t);
	}
	if (s->zblk != NULL)
		z = rbuf_get(s->zblk[b]);
	pthread_mutex_unlock(&s->zlock);
	return z;
}

/* ---- the change-log mirror ---- */

struct logent {
	uint64_t version;
	int64_t node;
	int64_t *a, *b;		/* sorted: on/off, see/-, full/filter */
	uint32_t na, nb;
	/* POLICY "vis": viewers (sorted) whose peers changed, each with the
	 * peers that became visible (+id) and invisible (-id) to it: ids
	 * vid[voff[i]] .. vid[voff[i + 1] - 1] for viewer vw[i]. */
	int64_t *vw, *vid;
	uint32_t *voff;
	uint32_t nvw;
	uint8_t kind;		/* enum store_change_kind */
	bool all;
};

static void
logent_clear(struct logent *e)
{
	free(e->a);
	free(e->b);
	free(e->vw);
	free(e->vid);
	free(e->voff);
	memset(e, 0, sizeof(*e));
}

/* POLICY "vis": [[viewer, +id|-id, ...], ...], viewers strictly ascending
 * and positive, ids nonzero. */
static int
vis_from_json(struct logent *e, json_t *a)
{
	size_t i, j, nids = 0;
	json_t *g, *v;

	if (a == NULL)
		return 0;
	if (!json_is_array(a) || json_array_size(a) > UINT32_MAX / 2)
		return ERR_INVALID;
	json_array_foreach(a, i, g) {
		if (!json_is_array(g) || json_array_size(g) == 0 || json_array_size(g) > UINT32_MAX / 2)
			return ERR_INVALID;
		nids += json_array_size(g) - 1;
		if (nids > UINT32_MAX / 2)
			return ERR_INVALID;
	}
	e->vw = malloc((json_array_size(a) + 1) * sizeof(*e->vw));
	e->voff = malloc((json_array_size(a) + 1) * sizeof(*e->voff));
	e->vid = malloc((nids + 1) * sizeof(*e->vid));
	if (e->vw == NULL || e->voff == NULL || e->vid == NULL)
		return ERR_NOMEM;
	nids = 0;
	json_array_foreach(a, i, g) {
		json_array_foreach(g, j, v) {
			json_int_t x = json_integer_value(v);

			if (!json_is_integer(v) || x == 0 || x == INT64_MIN || (j == 0 && x < 0))
				return ERR_INVALID;
			if (j == 0) {
				if (i > 0 && x <= e->vw[i - 1])
					return ERR_INVALID;
				e->vw[i] = x;
				e->voff[i] = (uint32_t)nids;
			} else
				e->vid[nids++] = x;
		}
	}
	e->voff[json_array_size(a)] = (uint32_t)nids;
	e->nvw = (uint32_t)json_array_size(a);
	return 0;
}

/* The peers whose visibility to `viewer` the POLICY change e altered. */
static bool
vis_of(const struct logent *e, int64_t viewer, const int64_t **ids, uint32_t *n)
{
	const int64_t *p = e->nvw ? bsearch(&viewer, e->vw, e->nvw, sizeof(*e->vw), cmp_i64) : NULL;

	if (p == NULL)
		return false;
	*ids = e->vid + e->voff[p - e->vw];
	*n = e->voff[p - e->vw + 1] - e->voff[p - e->vw];
	return true;
}

/* Parses a change row into e. */
static int
logent_parse(struct logent *e, uint64_t version, int kind, int64_t node, const char *payload)
{
	json_t *p = NULL;
	int r = 0;

	memset(e, 0, sizeof(*e));
	e->version = version;
	e->kind = (uint8_t)kind;
	e->node = node;
	if (payload && *payload && (p = json_loads(payload, 0, NULL)) == NULL)
		return ERR_INVALID;
	e->all = json_is_true(json_object_get(p, "all"));
	switch (kind) {
	case STORE_CHANGE_REMOVED:
		r = ids_from_json(json_object_get(p, "see"), &e->a, &e->na);
		break;
	case STORE_CHANGE_ONLINE:
		if ((r = ids_from_json(json_object_get(p, "on"), &e->a, &e->na)) == 0)
			r = ids_from_json(json_object_get(p, "off"), &e->b, &e->nb);
		break;
	case STORE_CHANGE_POLICY:
		if ((r = ids_from_json(json_object_get(p, "full"), &e->a, &e->na)) == 0 &&
		    (r = ids_from_json(json_object_get(p, "filter"), &e->b, &e->nb)) == 0)
			r = vis_from_json(e, json_object_get(p, "vis"));
		break;
	default:
		break;
	}
	json_decref(p);
	if (r != 0)
		logent_clear(e);
	return r;
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
	/* As the policy compiler sees it (mapper_policy_view), parsed once
	 * when the node changes: its advertised routes and its tags. */
	struct ip_prefix adv[ROUTES_MAX];
	uint8_t nadv, ntags;
	char *tagv;		/* ntags NUL-terminated tags back to back; NULL: none */
	size_t tagbytes;
	bool online;		/* the published flag */
	bool local;		/* its flag is this server's to clear (mapper_online_collect) */
	int nstreams;
	int64_t offline_since_ms;
	int64_t grace_until_ms;	/* online from the last run until then */
	struct mstream *streams;	/* list via s->next_in_node */
};

enum stage { ST_NONE, ST_HEAD, ST_PEERS, ST_TAIL, ST_QUEUE };

/* One item of a replay: a subject at the version of its last change. */
enum pwhat { P_PEER, P_SELF, P_REMOVED, P_ONLINE, P_FILTER, P_DNS, P_NODEISH, P_VIS, P_ADDED,
	P_REPLICAS };
struct pitem {
	uint64_t version;
	int64_t id;
	uint8_t what;
	bool add;		/* P_VIS: the policy change made it visible */
};

struct mstream {
	struct mapper *m;
	int64_t node_id;
	struct http_stream *hs;
	struct mstream *next_in_node, *prev_in_node;
	bool closed;

	pthread_mutex_t lock;	/* guards the queue and the flags below */
	struct rbuf **q;
	unsigned qhead, qlen;
	bool need_full;
	bool need_resume;	/* fell behind: queue dropped, replay from sent_version */
	bool ending;		/* the node expired: end once the queue is sent */

	/* Send state: the reader's own. */
	bool zstd;		/* every piece goes out as a zstd frame */
	struct rbuf *zc;	/* a compressed piece of a full map being sent */
	enum stage stage;
	uint64_t sent_version;	/* of the last message fully handed to HTTP */
	struct pitem *plan;	/* a replay being sent */
	size_t nplan, plan_i;
	struct rbuf *cur;
	size_t off;
	struct snap *snap;
	size_t peer_i;
	bool peer_sep;		/* a comma is owed before the next peer */
	bool (*can_see)(void *, int64_t, int64_t);
	void (*pol_put)(void *);
	void *pol_ctx;
};

struct mapper {
	struct mapper_config cfg;
	char *derp_map;
	char *default_filter;
	char *dns;		/* the "dns" section */
	char *control_urls;	/* JSON array: the replicas' URLs ("[]": none) */
	pthread_mutex_t lock;

	struct mnode **nodes;
	size_t nnodes, cap;
	int64_t *hkeys;		/* open addressing id -> index+1 */
	size_t *hvals;
	size_t hcap;
	size_t hused;		/* slots with a key, tombstones included */

	uint64_t version;	/* the last change applied */
	uint64_t floor;		/* the log is complete above this version */
	struct logent *lg;	/* ring of retained changes, version order */
	size_t lg_head, lg_len, lg_cap;

	struct snap *snap;	/* cached for the current version */

	struct mapper_policy_ops pol;
	void *pol_ctx;

	/* The primary router of each subnet prefix some node serves: elected
	 * here, or (cfg.shared_primaries) as the leader replica stored it. */
	struct mapper_primary *prim;
	size_t nprim;
	bool routes_dirty;	/* a router changed since the last election */
	struct mapper_ids *routers_out;	/* routers changed by this change */

	size_t nstreams;
	atomic_uint_fast64_t bytes_sent, full_maps, deltas, collapses, resumes, online_batches;
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
make_frag(const struct mnode *mn)
{
	json_t *v = nodeview_peer(&mn->n, mn->online, time_now_s(), mn->carried, mn->ncarried);
	char *t = v ? json_dumps(v, JSON_COMPACT) : NULL;
	struct rbuf *b = t ? rbuf_new(t, strlen(t), 0) : NULL;

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
drop_snap(struct mapper *m)
{
	snap_put(m->snap);
	m->snap = NULL;
}

static struct logent *
lg_at(const struct mapper *m, size_t i)
{
	return &m->lg[(m->lg_head + i) % m->lg_cap];
}

/* Appends a parsed change to the mirror; the mapper's version becomes its. */
static void
log_push_as(struct mapper *m, struct logent *e, bool loading)
{
	if (!loading && e->version <= m->version && m->version != 0)
		log_error("msg=\"change applied out of order\" version=%" PRIu64 " current=%" PRIu64,
		    e->version, m->version);
	if (m->lg_len == m->lg_cap) {
		size_t ncap = m->lg_cap ? 2 * m->lg_cap : 1024;
		struct logent *n = malloc(ncap * sizeof(*n));

		if (n != NULL) {
			for (size_t i = 0; i < m->lg_len; i++)
				n[i] = *lg_at(m, i);
			free(m->lg);
			m->lg = n;
			m->lg_cap = ncap;
			m->lg_head = 0;
		} else if (m->lg_cap == 0) {
			/* no log at all: every older version gets a full map */
			m->floor = e->version;
			logent_clear(e);
			goto out;
		} else {
			/* out of memory: forget the oldest change */
			struct logent *old = lg_at(m, 0);

			m->floor = old->version;
			logent_clear(old);
			m->lg_head = (m->lg_head + 1) % m->lg_cap;
			m->lg_len--;
		}
	}
	*lg_at(m, m->lg_len) = *e;
	m->lg_len++;
out:
	if (e->version > m->version)
		m->version = e->version;
}

static void
log_push(struct mapper *m, struct logent *e)
{
	log_push_as(m, e, false);
}

/* Index of the first retained change above `since`. */
static size_t
log_after(const struct mapper *m, uint64_t since)
{
	size_t lo = 0, hi = m->lg_len;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;

		if (lg_at(m, mid)->version <= since)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static void
queue_clear(struct mstream *s)
{
	while (s->qlen > 0) {
		rbuf_put(s->q[s->qhead]);
		s->qhead = (s->qhead + 1) % s->m->cfg.queue_max;
		s->qlen--;
	}
}

/*
 * Queues msg on s. A full queue drops a keepalive; any other message makes
 * the stream drop its queue and resume by version once its reader is ready
 * (it replays the change log from the last message it was given). Called
 * with m->lock.
 */
static void
stream_push(struct mstream *s, struct rbuf *msg)
{
	pthread_mutex_lock(&s->lock);
	if (s->need_full || s->need_resume) {
		/* a full map or a replay is coming anyway */
	} else if (s->qlen == s->m->cfg.queue_max && msg->soft) {
		/* the stream is busy; no keepalive needed */
	} else if (s->qlen == s->m->cfg.queue_max) {
		queue_clear(s);
		s->need_resume = true;
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

static void
push_node(struct mnode *mn, struct rbuf *msg)
{
	for (struct mstream *s = mn ? mn->streams : NULL; s; s = s->next_in_node)
		stream_push(s, msg);
}

/* Sends msg to every stream whose node sees `subject` (or only the
 * subject's own streams): the subject's peers when the policy lists them
 * (visibility is symmetric), else every node asked. Called with m->lock. */
static void
fanout(struct mapper *m, struct rbuf *msg, int64_t subject, bool self_only)
{
	int64_t *peers = NULL;
	ssize_t np;

	if (self_only) {
		push_node(node_find(m, subject, NULL), msg);
		return;
	}
	if (m->pol.peers && (np = m->pol.peers(m->pol_ctx, subject, &peers)) >= 0) {
		for (ssize_t k = 0; k < np; k++)
			if (peers[k] != subject)
				push_node(node_find(m, peers[k], NULL), msg);
		free(peers);
		atomic_fetch_add(&m->deltas, 1);
		return;
	}
	for (size_t i = 0; i < m->nnodes; i++) {
		struct mnode *mn = m->nodes[i];

		if (mn->streams != NULL && visible(m, mn->n.id, subject))
			push_node(mn, msg);
	}
	atomic_fetch_add(&m->deltas, 1);
}

/* `{"type":"delta","version":V,"<kind>":<payload>}\n` */
static struct rbuf *
delta_new(uint64_t version, const char *kind, const char *payload, size_t plen)
{
	char head[96];
	int hl = snprintf(head, sizeof(head), "{\"type\":\"delta\",\"version\":%" PRIu64 ",\"%s\":",
	    version, kind);
	struct rbuf *b = malloc(sizeof(*b) + (size_t)hl + plen + 2);

	if (b == NULL)
		return NULL;
	atomic_init(&b->refs, 1);
	atomic_init(&b->z, NULL);
	b->soft = false;
	b->version = version;
	memcpy(b->data, head, (size_t)hl);
	memcpy(b->data + hl, payload, plen);
	b->data[hl + plen] = '}';
	b->data[hl + plen + 1] = '\n';
	b->len = (size_t)hl + plen + 2;
	return b;
}

/* Builds a delta at the current version and fans it out. */
static void
emit(struct mapper *m, const char *kind, const char *payload, size_t plen,
     int64_t subject, bool self_only)
{
	struct rbuf *b = delta_new(m->version, kind, payload, plen);

	if (b == NULL)
		return;
	fanout(m, b, subject, self_only);
	rbuf_put(b);
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
	bool online = mn->online;

	return online ? (mn->n.id == prev ? 0 : 1) : (mn->n.id == prev ? 2 : 3);
}

/*
 * Elects the primary router of every subnet prefix some node serves, the
 * primaries in m->prim being the previous ones. A new array in *out (NULL
 * with none); false when out of memory. Called with m->lock; O(nodes).
 */
static bool
elect(struct mapper *m, struct mapper_primary **out, size_t *nout)
{
	struct mapper_primary *np = NULL;
	size_t nnp = 0, cap = 0;

	*out = NULL;
	*nout = 0;
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
				struct mapper_primary *t = realloc(np, ncap * sizeof(*t));

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
	*out = np;
	*nout = nnp;
	return true;
}

/*
 * Updates what each router carries: its exit routes and the subnets it is
 * primary for, the primaries being elected here first (unless they are
 * shared: then they are the leader replica's, as last applied). Routers
 * whose carried routes changed get a fresh fragment and are added to
 * m->routers_out (the caller logs a ROUTES change for each), except `quiet`
 * (whose own change message carries it).
 * Returns true when quiet's carried routes changed. Called with m->lock;
 * O(nodes) but only run when a router changes.
 */
static bool
recompute_routes(struct mapper *m, int64_t quiet)
{
	bool quiet_changed = false;

	m->routes_dirty = true;
	if (!m->cfg.shared_primaries) {
		struct mapper_primary *np;
		size_t nnp;

		if (!elect(m, &np, &nnp))
			return false;
		free(m->prim);
		m->prim = np;
		m->nprim = nnp;
	}
	for (size_t i = 0; i < m->nnodes; i++) {
		struct mnode *mn = m->nodes[i];
		struct ip_prefix c[ROUTES_MAX];
		size_t nc = 0;
		struct rbuf *frag;

		if (mn->nserved == 0 && mn->ncarried == 0)
			continue;
		for (size_t k = 0; k < mn->nserved; k++) {
			bool carry = route_is_exit(&mn->served[k]);

			for (size_t e = 0; !carry && e < m->nprim; e++)
				carry = m->prim[e].node == mn->n.id &&
				    same_prefix(&m->prim[e].p, &mn->served[k]);
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
		if ((frag = make_frag(mn)) != NULL) {
			rbuf_put(mn->frag);
			mn->frag = frag;
			drop_snap(m);
		}
		if (m->routers_out)
			(void)ids_push(m->routers_out, mn->n.id);
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

/* Parses what the policy compiler reads of a node (tags, advertised
 * routes) once, so that a recompilation copies instead of parsing every
 * node. ERR_NOMEM leaves the node without tags. */
static int
note_policy(struct mnode *mn)
{
	size_t bytes, ntags;
	int r;

	free(mn->tagv);
	r = nodeview_tags(mn->n.tags, &mn->tagv, &bytes, &ntags);
	mn->ntags = (uint8_t)ntags;
	mn->tagbytes = bytes;
	mn->nadv = 0;
	if (nodeview_advertises(&mn->n))
		mn->nadv = (uint8_t)routes_from_json(mn->n.routes_advertised, mn->adv, ROUTES_MAX);
	return r;
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
	m->derp_map = strdup(cfg->derp_map_json ? cfg->derp_map_json : "{\"Regions\":{}}");
	m->default_filter = strdup(cfg->default_filter_json ? cfg->default_filter_json : "[]");
	m->dns = strdup(cfg->dns_json ? cfg->dns_json : "{\"magic_dns\":false}");
	m->control_urls = strdup("[]");
	pthread_mutex_init(&m->lock, NULL);
	m->version = cfg->version;
	m->floor = cfg->floor;
	if (m->derp_map == NULL || m->default_filter == NULL || m->dns == NULL || m->control_urls == NULL ||
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
		free(m->nodes[i]->tagv);
		free(m->nodes[i]);
	}
	for (size_t i = 0; i < m->lg_len; i++)
		logent_clear(lg_at(m, i));
	snap_put(m->snap);
	if (m->pol.put)
		m->pol.put(m->pol_ctx);
	free(m->lg);
	free(m->nodes);
	free(m->hkeys);
	free(m->hvals);
	free(m->derp_map);
	free(m->default_filter);
	free(m->dns);
	free(m->control_urls);
	free(m->prim);
	pthread_mutex_destroy(&m->lock);
	free(m);
}

static int
insert_node(struct mapper *m, const struct store_node *n, bool online, struct mnode **out)
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
	if (note_policy(mn) != 0) {
		free(mn);
		return ERR_NOMEM;
	}
	mn->online = online;
	mn->local = online && !m->cfg.shared_online;
	mn->offline_since_ms = time_mono_ms();
	if (online)
		mn->grace_until_ms = time_mono_ms() + m->cfg.online_grace_ms;
	if ((mn->frag = make_frag(mn)) == NULL) {
		free(mn->tagv);
		free(mn);
		return ERR_NOMEM;
	}
	m->nodes[m->nnodes++] = mn;
	hset(m, n->id, m->nnodes);
	*out = mn;
	return 0;
}

int
mapper_load(struct mapper *m, const struct store_node *n, bool online)
{
	struct mnode *mn;
	int r;

	pthread_mutex_lock(&m->lock);
	if ((r = insert_node(m, n, online, &mn)) == 0 && note_routes(mn))
		recompute_routes(m, 0);
	pthread_mutex_unlock(&m->lock);
	return r;
}

static void log_prune_locked(struct mapper *m, uint64_t floor);

int
mapper_log_load(struct mapper *m, const struct store_change *c)
{
	struct logent e;
	int r;

	if ((r = logent_parse(&e, c->version, c->kind, c->node_id, c->payload)) != 0) {
		log_warn("msg=\"unreadable change-log row; older versions get a full map\" "
		    "version=%" PRIu64, c->version);
		pthread_mutex_lock(&m->lock);
		log_prune_locked(m, c->version);
		pthread_mutex_unlock(&m->lock);
		return 0;
	}
	pthread_mutex_lock(&m->lock);
	log_push_as(m, &e, true);
	pthread_mutex_unlock(&m->lock);
	return 0;
}

/* Called with m->lock. */
static void
log_prune_locked(struct mapper *m, uint64_t floor)
{
	while (m->lg_len > 0 && lg_at(m, 0)->version <= floor) {
		logent_clear(lg_at(m, 0));
		m->lg_head = (m->lg_head + 1) % m->lg_cap;
		m->lg_len--;
	}
	if (floor > m->floor)
		m->floor = floor;
}

void
mapper_log_prune(struct mapper *m, uint64_t floor)
{
	pthread_mutex_lock(&m->lock);
	log_prune_locked(m, floor);
	pthread_mutex_unlock(&m->lock);
}

int
mapper_routers(struct mapper *m, struct mapper_ids *out)
{
	int r = 0;

	pthread_mutex_lock(&m->lock);
	for (size_t i = 0; r == 0 && i < m->nnodes; i++)
		if (m->nodes[i]->nserved > 0 || m->nodes[i]->ncarried > 0)
			r = ids_push(out, m->nodes[i]->n.id);
	pthread_mutex_unlock(&m->lock);
	return r;
}

int
mapper_advertisers(struct mapper *m, struct mapper_ids *out)
{
	int r = 0;

	pthread_mutex_lock(&m->lock);
	for (size_t i = 0; r == 0 && i < m->nnodes; i++)
		if (m->nodes[i]->nadv > 0)
			r = ids_push(out, m->nodes[i]->n.id);
	pthread_mutex_unlock(&m->lock);
	return r;
}

static void
log_simple(struct mapper *m, uint64_t version, int kind, int64_t node)
{
	struct logent e;

	memset(&e, 0, sizeof(e));
	e.version = version;
	e.kind = (uint8_t)kind;
	e.node = node;
	log_push(m, &e);
}

void
mapper_node_upsert(struct mapper *m, const struct store_node *n, uint64_t version,
		   struct mapper_ids *routers)
{
	struct mnode *mn;
	bool added = false;
	struct rbuf *frag;

	pthread_mutex_lock(&m->lock);
	log_simple(m, version, STORE_CHANGE_NODE, n->id);
	m->routers_out = routers;
	if ((mn = node_find(m, n->id, NULL)) == NULL) {
		if (insert_node(m, n, false, &mn) != 0) {
			log_error("msg=\"out of memory adding node to map\" node_id=%" PRId64, n->id);
			goto out;
		}
		added = true;
	} else {
		mn->n = *n;
		if (note_policy(mn) != 0)
			log_error("msg=\"out of memory parsing a node's tags\" node_id=%" PRId64, n->id);
	}
	if (note_routes(mn))
		recompute_routes(m, mn->n.id);
	if ((frag = make_frag(mn)) != NULL) {
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
	m->routers_out = NULL;
	pthread_mutex_unlock(&m->lock);
}

char *
mapper_removed_payload(struct mapper *m, int64_t id)
{
	struct buf b;
	struct mapper_ids see = { 0 };
	bool all = true;
	char *out = NULL;
	int r = 0;

	buf_init(&b, (size_t)64 << 20);
	pthread_mutex_lock(&m->lock);
	for (size_t i = 0; r == 0 && i < m->nnodes; i++) {
		int64_t v = m->nodes[i]->n.id;

		if (v == id)
			continue;
		if (visible(m, v, id))
			r = ids_push(&see, v);
		else
			all = false;
	}
	pthread_mutex_unlock(&m->lock);
	if (r == 0)
		r = all ? buf_printf(&b, "{\"all\":true}") : buf_printf(&b, "{\"see\":");
	if (r == 0 && !all && (r = ids_json(&b, see.v, see.n)) == 0)
		r = buf_append(&b, "}", 1);
	if (r == 0)
		out = strdup(buf_cstr(&b));
	buf_cleanup(&b);
	mapper_ids_free(&see);
	return out;
}

void
mapper_node_remove(struct mapper *m, int64_t id, uint64_t version, const char *payload,
		   struct mapper_ids *routers)
{
	struct mnode *mn, *last;
	struct logent e;
	size_t idx;
	char txt[32];
	int n;
	bool router;

	pthread_mutex_lock(&m->lock);
	if (logent_parse(&e, version, STORE_CHANGE_REMOVED, id, payload) != 0)
		logent_parse(&e, version, STORE_CHANGE_REMOVED, id, "{\"all\":true}");
	log_push(m, &e);
	if ((mn = node_find(m, id, &idx)) == NULL)
		goto out;
	m->routers_out = routers;
	router = mn->nserved > 0 || mn->ncarried > 0;
	n = snprintf(txt, sizeof(txt), "%" PRId64, id);
	/* Tell the peers while the node's visibility is still known. */
	emit(m, "peer_removed", txt, (size_t)n, id, false);
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
	free(mn->tagv);
	free(mn);
	drop_snap(m);
	if (router)
		recompute_routes(m, 0);
out:
	m->routers_out = NULL;
	pthread_mutex_unlock(&m->lock);
}

/* Called with m->lock. */
static void
routes_apply_locked(struct mapper *m, int64_t id, uint64_t version)
{
	struct mnode *mn;

	log_simple(m, version, STORE_CHANGE_ROUTES, id);
	if ((mn = node_find(m, id, NULL)) != NULL) {
		emit(m, "peer_changed", mn->frag->data, mn->frag->len, id, false);
		emit(m, "self", mn->frag->data, mn->frag->len, id, true);
	}
}

void
mapper_routes_apply(struct mapper *m, int64_t id, uint64_t version)
{
	pthread_mutex_lock(&m->lock);
	routes_apply_locked(m, id, version);
	pthread_mutex_unlock(&m->lock);
}

/* Replaces m->prim with a copy of v. Called with m->lock. */
static int
prim_replace(struct mapper *m, const struct mapper_primary *v, size_t n)
{
	struct mapper_primary *c = NULL;

	if (n > 0) {
		if ((c = malloc(n * sizeof(*c))) == NULL)
			return ERR_NOMEM;
		memcpy(c, v, n * sizeof(*c));
	}
	free(m->prim);
	m->prim = c;
	m->nprim = n;
	return 0;
}

int
mapper_primaries_set(struct mapper *m, const struct mapper_primary *v, size_t n)
{
	int r;

	pthread_mutex_lock(&m->lock);
	if ((r = prim_replace(m, v, n)) == 0)
		(void)recompute_routes(m, 0);
	pthread_mutex_unlock(&m->lock);
	return r;
}

static bool
ids_contains(const struct mapper_ids *l, int64_t id)
{
	for (size_t i = 0; i < l->n; i++)
		if (l->v[i] == id)
			return true;
	return false;
}

static int64_t
prim_of(const struct mapper_primary *v, size_t n, const struct ip_prefix *p)
{
	for (size_t i = 0; i < n; i++)
		if (same_prefix(&v[i].p, p))
			return v[i].node;
	return 0;
}

int
mapper_primaries_elect(struct mapper *m, bool force, struct mapper_primary **out, size_t *nout,
		       struct mapper_ids *routers)
{
	struct mapper_primary *np;
	size_t nnp;
	int r = 0;

	*out = NULL;
	*nout = 0;
	pthread_mutex_lock(&m->lock);
	if (!force && !m->routes_dirty)
		goto out;
	if (!elect(m, &np, &nnp)) {
		r = ERR_NOMEM;
		goto out;
	}
	m->routes_dirty = false;
	/* the old and the new primary of every prefix whose primary changes */
	for (size_t i = 0; r == 0 && i < nnp; i++) {
		int64_t old = prim_of(m->prim, m->nprim, &np[i].p);

		if (old == np[i].node)
			continue;
		if (old != 0 && !ids_contains(routers, old))
			r = ids_push(routers, old);
		if (r == 0 && !ids_contains(routers, np[i].node))
			r = ids_push(routers, np[i].node);
	}
	for (size_t i = 0; r == 0 && i < m->nprim; i++) {
		int64_t old = m->prim[i].node;

		if (prim_of(np, nnp, &m->prim[i].p) == 0 && old != 0 &&
		    !ids_contains(routers, old))
			r = ids_push(routers, old);
	}
	if (r != 0 || routers->n == 0) {
		free(np);
		m->routes_dirty = r != 0;
		goto out;
	}
	*out = np;
	*nout = nnp;
	r = 1;
out:
	pthread_mutex_unlock(&m->lock);
	return r;
}

void
mapper_primaries_apply(struct mapper *m, const struct mapper_primary *v, size_t n, int64_t id,
		       uint64_t version)
{
	pthread_mutex_lock(&m->lock);
	if (prim_replace(m, v, n) != 0)
		log_error("msg=\"out of memory applying route primaries\"");
	else
		(void)recompute_routes(m, 0);
	routes_apply_locked(m, id, version);
	pthread_mutex_unlock(&m->lock);
}

static char *
policy_payload(const int64_t *full, size_t nfull, bool all, const int64_t *filter,
	       size_t nfilter, const struct buf *vis, const char *etag)
{
	struct buf b;
	char *out = NULL;
	int r;

	buf_init(&b, (size_t)64 << 20);
	if (all)
		r = buf_printf(&b, "{\"all\":true");
	else if ((r = buf_printf(&b, "{\"full\":")) == 0 && (r = ids_json(&b, full, nfull)) == 0 &&
	    (r = buf_printf(&b, ",\"filter\":")) == 0)
		r = ids_json(&b, filter, nfilter);
	if (r == 0 && !all && vis != NULL && vis->len > 0 && (r = buf_printf(&b, ",\"vis\":[")) == 0 &&
	    (r = buf_append(&b, vis->data, vis->len)) == 0)
		r = buf_append(&b, "]", 1);
	if (r == 0 && etag && *etag && strspn(etag, "0123456789abcdefABCDEF\"W/-") == strlen(etag)) {
		/* an ETag is quoted hex: kept as a JSON string of its own */
		json_t *t = json_string(etag);
		char *q = t ? json_dumps(t, JSON_ENCODE_ANY) : NULL;

		r = q ? buf_printf(&b, ",\"etag\":%s", q) : ERR_NOMEM;
		free(q);
		json_decref(t);
	}
	if (r == 0)
		r = buf_append(&b, "}", 1);
	if (r == 0)
		out = strdup(buf_cstr(&b));
	buf_cleanup(&b);
	return out;
}

int
mapper_policy_payload_etag(const char *payload, char *out, size_t outlen)
{
	const char *p = NULL, *q = payload, *end;
	json_t *t;
	int r = ERR_NOT_FOUND;

	while (q != NULL && (q = strstr(q, ",\"etag\":")) != NULL)
		p = q++;
	if (p == NULL || (end = strrchr(p, '}')) == NULL)
		return ERR_NOT_FOUND;
	p += strlen(",\"etag\":");
	if ((t = json_loadb(p, (size_t)(end - p), JSON_DECODE_ANY, NULL)) == NULL)
		return ERR_NOT_FOUND;
	if (json_is_string(t) && json_string_length(t) < outlen) {
		memcpy(out, json_string_value(t), json_string_length(t) + 1);
		r = 0;
	}
	json_decref(t);
	return r;
}

char *
mapper_policy_payload(const int64_t *full, size_t nfull, bool all,
		      const int64_t *filter, size_t nfilter, const char *etag)
{
	return policy_payload(full, nfull, all, filter, nfilter, NULL, etag);
}

static bool
sees(const struct mapper_policy_ops *ops, void *ctx, int64_t viewer, int64_t peer)
{
	return viewer != peer && (ops == NULL || ops->can_see == NULL || ops->can_see(ctx, viewer, peer));
}

/* The peers of v that appear (+id) or go (-id) between two policies, from
 * both peer lists (ids: the mapper's nodes, sorted); -1 when a policy
 * cannot list them (the caller compares node by node). */
static int
peers_diff(const struct mapper_policy_ops *old, void *octx, const struct mapper_policy_ops *ops,
	   void *ctx, int64_t v, const int64_t *ids, size_t nids, int64_t *diff, size_t *nd,
	   size_t *work)
{
	int64_t *a = NULL, *b = NULL;
	ssize_t na, nb, i = 0, j = 0;

	if (old->peers == NULL || ops == NULL || ops->peers == NULL)
		return -1;
	if ((na = old->peers(octx, v, &a)) < 0 || (nb = ops->peers(ctx, v, &b)) < 0) {
		free(a);
		return -1;
	}
	*work += (size_t)(na + nb);
	while (i < na || j < nb) {
		int64_t x;

		if (j >= nb || (i < na && a[i] < b[j]))
			x = -a[i++];		/* gone */
		else if (i >= na || b[j] < a[i])
			x = b[j++];		/* new */
		else {
			i++;
			j++;
			continue;
		}
		if ((x < 0 ? -x : x) != v && ids_has(ids, nids, x < 0 ? -x : x))
			diff[(*nd)++] = x;
	}
	free(a);
	free(b);
	return 0;
}

char *
mapper_policy_change(struct mapper *m, const struct mapper_policy_ops *ops, void *ctx,
		     const int64_t *full, size_t nfull, bool all,
		     const int64_t *filter, size_t nfilter, const char *etag)
{
	struct mapper_policy_ops old;
	void *octx;
	int64_t *ids = NULL, *viewers = NULL, *rest = NULL, *diff = NULL;
	size_t nids, nrest = 0, nvis = 0, work = 0;
	struct buf vis;
	char *out = NULL;
	int r = 0;

	if (all || nfull == 0)
		return policy_payload(full, nfull, all, filter, nfilter, NULL, etag);
	buf_init(&vis, (size_t)64 << 20);
	/* Only the thread publishing policy changes replaces m->pol: the hooks
	 * read here stay the current ones until this change is applied. */
	pthread_mutex_lock(&m->lock);
	old = m->pol;
	octx = m->pol_ctx;
	if (old.get)
		old.get(octx);
	nids = m->nnodes;
	if ((ids = malloc((nids + 1) * sizeof(*ids))) != NULL)
		for (size_t i = 0; i < nids; i++)
			ids[i] = m->nodes[i]->n.id;
	pthread_mutex_unlock(&m->lock);
	viewers = malloc(nfull * sizeof(*viewers));
	rest = malloc(nfull * sizeof(*rest));
	diff = malloc((nids + 1) * sizeof(*diff));
	if (ids == NULL || viewers == NULL || rest == NULL || diff == NULL) {
		r = ERR_NOMEM;
		goto out;
	}
	memcpy(viewers, full, nfull * sizeof(*viewers));
	qsort(viewers, nfull, sizeof(*viewers), cmp_i64);
	if (nids > 1)
		qsort(ids, nids, sizeof(*ids), cmp_i64);
	for (size_t i = 0; r == 0 && i < nfull; i++) {
		int64_t v = viewers[i];
		size_t nd = 0;

		if ((i > 0 && v == viewers[i - 1]) || v <= 0)
			continue;
		/* beyond the bounds, or a node the mapper does not have: a full map */
		if (work + nids > MAPPER_POLICY_VIS_WORK || !ids_has(ids, nids, v)) {
			rest[nrest++] = v;
			continue;
		}
		if (peers_diff(&old, octx, ops, ctx, v, ids, nids, diff, &nd, &work) != 0) {
			work += nids;
			for (size_t j = 0; j < nids; j++) {
				bool was = sees(&old, octx, v, ids[j]), is = sees(ops, ctx, v, ids[j]);

				if (was != is)
					diff[nd++] = is ? ids[j] : -ids[j];
			}
		}
		if (nvis + nd > MAPPER_POLICY_VIS_MAX) {
			rest[nrest++] = v;
			continue;
		}
		nvis += nd;
		r = buf_printf(&vis, vis.len ? ",[%" PRId64 : "[%" PRId64, v);
		for (size_t j = 0; r == 0 && j < nd; j++)
			r = buf_printf(&vis, ",%" PRId64, diff[j]);
		if (r == 0)
			r = buf_append(&vis, "]", 1);
	}
out:
	if (old.put)
		old.put(octx);
	if (r == 0)
		out = policy_payload(rest, nrest, false, filter, nfilter, &vis, etag);
	else	/* out of memory: the change as it was, full maps */
		out = policy_payload(full, nfull, all, filter, nfilter, NULL, etag);
	buf_cleanup(&vis);
	free(ids);
	free(viewers);
	free(rest);
	free(diff);
	return out;
}

/* The deltas a connected stream of `viewer` gets for a POLICY change that
 * altered its peers: peer_added / peer_removed, then its filter. Called
 * with m->lock, after the new policy is in place. */
static void
emit_vis(struct mapper *m, struct mnode *mn, const int64_t *vis, uint32_t nvis)
{
	char *f = m->pol.filter ? m->pol.filter(m->pol_ctx, mn->n.id) : NULL;
	struct rbuf *msg = NULL;
	struct buf b;
	int r = 0;

	buf_init(&b, (size_t)256 << 20);
	for (uint32_t j = 0; r == 0 && j < nvis; j++) {
		int64_t id = vis[j] < 0 ? -vis[j] : vis[j];
		struct mnode *p = node_find(m, id, NULL);
		bool now = p != NULL && visible(m, mn->n.id, id);

		if (vis[j] > 0 && now)
			r = buf_printf(&b, "{\"type\":\"delta\",\"version\":%" PRIu64
			    ",\"peer_added\":%.*s}\n", m->version, (int)p->frag->len, p->frag->data);
		else if (vis[j] < 0 && !now)
			r = buf_printf(&b, "{\"type\":\"delta\",\"version\":%" PRIu64
			    ",\"peer_removed\":%" PRId64 "}\n", m->version, id);
	}
	if (r == 0)
		r = buf_printf(&b, "{\"type\":\"delta\",\"version\":%" PRIu64 ",\"filter\":%s}\n",
		    m->version, f ? f : m->default_filter);
	free(f);
	if (r == 0)
		msg = rbuf_new((const char *)b.data, b.len, m->version);
	buf_cleanup(&b);
	for (struct mstream *s = mn->streams; s; s = s->next_in_node)
		if (msg != NULL)
			stream_push(s, msg);
		else
			stream_force_full(s);
	rbuf_put(msg);
	atomic_fetch_add(&m->deltas, 1);
}

void
mapper_set_policy(struct mapper *m, const struct mapper_policy_ops *ops, void *ctx,
		  uint64_t version, const char *payload)
{
	struct mapper_policy_ops old_ops;
	void *old_ctx;
	struct logent e;

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
	if (version == 0) {
		pthread_mutex_unlock(&m->lock);
		if (old_ops.put)
			old_ops.put(old_ctx);
		return;
	}
	if (logent_parse(&e, version, STORE_CHANGE_POLICY, 0, payload) != 0)
		(void)logent_parse(&e, version, STORE_CHANGE_POLICY, 0, "{\"all\":true}");
	log_push(m, &e);	/* e's id arrays now belong to the log; read them under the lock */
	for (size_t i = 0; i < m->nnodes; i++) {
		struct mnode *mn = m->nodes[i];
		const int64_t *vis;
		uint32_t nvis;

		if (mn->streams == NULL)
			continue;
		if (e.all || ids_has(e.a, e.na, mn->n.id)) {
			for (struct mstream *s = mn->streams; s; s = s->next_in_node)
				stream_force_full(s);
		} else if (vis_of(&e, mn->n.id, &vis, &nvis)) {
			emit_vis(m, mn, vis, nvis);
		} else if (ids_has(e.b, e.nb, mn->n.id)) {
			char *f = m->pol.filter ? m->pol.filter(m->pol_ctx, mn->n.id) : NULL;
			const char *t = f ? f : m->default_filter;

			emit(m, "filter", t, strlen(t), mn->n.id, true);
			free(f);
		}
	}
	pthread_mutex_unlock(&m->lock);
	if (old_ops.put)
		old_ops.put(old_ctx);
}

bool
mapper_dns_differs(struct mapper *m, const char *dns_json)
{
	bool d;

	pthread_mutex_lock(&m->lock);
	d = strcmp(m->dns, dns_json) != 0;
	pthread_mutex_unlock(&m->lock);
	return d;
}

/* Sends the delta b (consumed) to every stream; with none (no memory),
 * every stream gets a full map instead. Called with m->lock. */
static void
push_all_or_full(struct mapper *m, struct rbuf *b)
{
	for (size_t i = 0; i < m->nnodes; i++)
		for (struct mstream *s = m->nodes[i]->streams; s; s = s->next_in_node) {
			if (b != NULL)
				stream_push(s, b);
			else
				stream_force_full(s);
		}
	if (b != NULL) {
		atomic_fetch_add(&m->deltas, 1);
		rbuf_put(b);
	}
}

void
mapper_set_dns(struct mapper *m, const char *dns_json, uint64_t version)
{
	char *copy = strdup(dns_json);
	struct rbuf *b;

	pthread_mutex_lock(&m->lock);
	log_simple(m, version, STORE_CHANGE_DNS, 0);
	if (copy != NULL) {
		free(m->dns);
		m->dns = copy;
	}
	b = copy != NULL ? delta_new(m->version, "dns", m->dns, strlen(m->dns)) : NULL;
	push_all_or_full(m, b);
	pthread_mutex_unlock(&m->lock);
}

/* The delta of a REPLICAS change, with m->lock. */
static struct rbuf *
replicas_delta(struct mapper *m, uint64_t version)
{
	size_t n = 96 + strlen(m->control_urls) + strlen(m->derp_map);
	char *t = malloc(n);
	struct rbuf *b = NULL;

	if (t != NULL) {
		int len = snprintf(t, n, "{\"type\":\"delta\",\"version\":%" PRIu64
		    ",\"control_urls\":%s,\"derp_map\":%s}\n", version, m->control_urls, m->derp_map);

		b = rbuf_new(t, (size_t)len, version);
		free(t);
	}
	return b;
}

void
mapper_set_replicas(struct mapper *m, const char *control_urls_json, const char *derp_map_json,
		    uint64_t version)
{
	char *u = strdup(control_urls_json), *d = strdup(derp_map_json);

	pthread_mutex_lock(&m->lock);
	if (version != 0)
		log_simple(m, version, STORE_CHANGE_REPLICAS, 0);
	if (u != NULL && d != NULL) {
		free(m->control_urls);
		m->control_urls = u;
		free(m->derp_map);
		m->derp_map = d;
		u = d = NULL;
	}
	if (version != 0)
		push_all_or_full(m, replicas_delta(m, m->version));
	pthread_mutex_unlock(&m->lock);
	free(u);
	free(d);
}

void
mapper_version_seen(struct mapper *m, uint64_t version)
{
	pthread_mutex_lock(&m->lock);
	if (version > m->version)
		m->version = version;
	pthread_mutex_unlock(&m->lock);
}

/* ---- online flags ---- */

/* An online change with more flags than this is filtered per viewer by its
 * peer list (mapper_policy_ops.peers) when the policy offers one. */
enum { ONLINE_BY_PEERS_MIN = 64 };

char *
mapper_online_collect(struct mapper *m)
{
	struct mapper_ids on = { 0 }, off = { 0 };
	int64_t now = time_mono_ms();
	char *out = NULL;
	struct buf b;
	int r = 0;

	pthread_mutex_lock(&m->lock);
	for (size_t i = 0; r == 0 && i < m->nnodes; i++) {
		struct mnode *mn = m->nodes[i];
		bool want;

		/* A node with a stream here is online, and its flag ours to clear
		 * when the stream ends; one whose flag another replica set (its
		 * stream is there) is left to that replica. */
		if (mn->nstreams > 0)
			mn->local = true;
		else if (!mn->local)
			continue;
		want = mn->nstreams > 0 || (mn->online && now < mn->grace_until_ms);
		if (want != mn->online)
			r = ids_push(want ? &on : &off, mn->n.id);
	}
	pthread_mutex_unlock(&m->lock);
	if (r == 0 && on.n + off.n > 0) {
		buf_init(&b, (size_t)64 << 20);
		if (on.n > 1)
			qsort(on.v, on.n, sizeof(*on.v), cmp_i64);
		if (off.n > 1)
			qsort(off.v, off.n, sizeof(*off.v), cmp_i64);
		if (buf_printf(&b, "{\"on\":") == 0 && ids_json(&b, on.v, on.n) == 0 &&
		    buf_printf(&b, ",\"off\":") == 0 && ids_json(&b, off.v, off.n) == 0 &&
		    buf_append(&b, "}", 1) == 0)
			out = strdup(buf_cstr(&b));
		buf_cleanup(&b);
	}
	mapper_ids_free(&on);
	mapper_ids_free(&off);
	return out;
}

int
mapper_online_claims(struct mapper *m, struct mapper_ids *out)
{
	int r = 0;

	pthread_mutex_lock(&m->lock);
	for (size_t i = 0; r == 0 && i < m->nnodes; i++) {
		struct mnode *mn = m->nodes[i];

		if (mn->nstreams > 0 && mn->online && !mn->local) {
			if ((r = ids_push(out, mn->n.id)) == 0)
				mn->local = true;
		}
	}
	pthread_mutex_unlock(&m->lock);
	return r;
}

void
mapper_online_mine(struct mapper *m, int64_t id, bool mine)
{
	struct mnode *mn;

	pthread_mutex_lock(&m->lock);
	if ((mn = node_find(m, id, NULL)) != NULL) {
		mn->local = mine;
		if (mine && mn->online && mn->nstreams == 0)	/* loaded: a grace to come back */
			mn->grace_until_ms = time_mono_ms() + m->cfg.online_grace_ms;
	}
	pthread_mutex_unlock(&m->lock);
}

/* The online_flags payload of the ids in e that `viewer` sees (all when
 * viewer is 0), or NULL when it sees none of them. */
static struct rbuf *
online_msg(struct mapper *m, const struct logent *e, int64_t viewer)
{
	struct buf b;
	struct rbuf *msg = NULL;
	size_t shown = 0;
	int r;

	int64_t *peers = NULL;
	ssize_t npeers = -1;

	/* Many flags at once (a mass reconnect, a replica's streams moving
	 * here): the viewer's few peers looked up among them, not a can_see
	 * per flag per viewer (10,000 x 10,000 after a failover). Both lists
	 * are ascending, so the message is the same either way. */
	if (viewer != 0 && m->pol.peers && (size_t)e->na + e->nb > ONLINE_BY_PEERS_MIN) {
		npeers = m->pol.peers(m->pol_ctx, viewer, &peers);
		if (npeers >= 0 && (size_t)npeers >= (size_t)e->na + e->nb) {
			free(peers);	/* as many peers as flags: per flag is cheaper */
			peers = NULL;
			npeers = -1;
		}
	}
	buf_init(&b, (size_t)64 << 20);
	r = buf_printf(&b, "{\"type\":\"delta\",\"version\":%" PRIu64 ",\"online_flags\":{\"on\":[",
	    e->version);
	for (int half = 0; r == 0 && half < 2; half++) {
		const int64_t *v = half ? e->b : e->a;
		size_t n = half ? e->nb : e->na, k = 0;

		if (half)
			r = buf_printf(&b, "],\"off\":[");
		if (npeers >= 0) {
			for (ssize_t i = 0; r == 0 && i < npeers; i++) {
				if (peers[i] == viewer || !ids_has(v, n, peers[i]))
					continue;
				r = buf_printf(&b, k++ ? ",%" PRId64 : "%" PRId64, peers[i]);
				shown++;
			}
			continue;
		}
		for (size_t i = 0; r == 0 && i < n; i++) {
			if (viewer != 0 && !visible(m, viewer, v[i]))
				continue;
			r = buf_printf(&b, k++ ? ",%" PRId64 : "%" PRId64, v[i]);
			shown++;
		}
	}
	free(peers);
	if (r == 0)
		r = buf_printf(&b, "]}}\n");
	if (r == 0 && shown > 0)
		msg = rbuf_new((const char *)b.data, b.len, e->version);
	buf_cleanup(&b);
	return msg;
}

void
mapper_online_apply(struct mapper *m, uint64_t version, const char *payload,
		    struct mapper_ids *routers)
{
	struct logent e;
	struct rbuf *shared = NULL;
	bool router = false;

	if (logent_parse(&e, version, STORE_CHANGE_ONLINE, 0, payload) != 0) {
		log_error("msg=\"bad online change\" version=%" PRIu64, version);
		memset(&e, 0, sizeof(e));
		e.version = version;
		e.kind = STORE_CHANGE_ONLINE;
	}
	pthread_mutex_lock(&m->lock);
	log_push(m, &e);	/* e's id arrays now belong to the log; read them under the lock */
	m->routers_out = routers;
	for (int half = 0; half < 2; half++) {
		const int64_t *v = half ? e.b : e.a;
		size_t n = half ? e.nb : e.na;

		for (size_t i = 0; i < n; i++) {
			struct mnode *mn = node_find(m, v[i], NULL);
			struct rbuf *frag;

			if (mn == NULL || mn->online == !half)
				continue;
			mn->online = !half;
			mn->grace_until_ms = 0;
			if (half)	/* cleared: whoever has its stream now sets it again */
				mn->local = false;
			if (half)	/* offline from now, also when its stream was elsewhere */
				mn->offline_since_ms = time_mono_ms();
			router = router || mn->nserved > 0 || mn->ncarried > 0;
			if ((frag = make_frag(mn)) != NULL) {
				rbuf_put(mn->frag);
				mn->frag = frag;
			}
		}
	}
	drop_snap(m);
	if (router)
		recompute_routes(m, 0);
	if (m->pol.can_see == NULL)
		shared = online_msg(m, &e, 0);
	for (size_t i = 0; i < m->nnodes; i++) {
		struct mnode *mn = m->nodes[i];
		struct rbuf *msg;

		if (mn->streams == NULL)
			continue;
		if (e.na + e.nb == 1 && (e.na ? e.a[0] : e.b[0]) == mn->n.id)
			continue;	/* only its own flag */
		msg = shared ? rbuf_get(shared) : online_msg(m, &e, mn->n.id);
		if (msg == NULL)
			continue;
		for (struct mstream *s = mn->streams; s; s = s->next_in_node)
			stream_push(s, msg);
		rbuf_put(msg);
	}
	rbuf_put(shared);
	atomic_fetch_add(&m->online_batches, 1);
	m->routers_out = NULL;
	pthread_mutex_unlock(&m->lock);
}

/* ---- queries ---- */

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

void
mapper_policy_view_free(struct mapper_policy_view *v)
{
	free(v->pn);
	free(v->mem);
	free(v->tags);
	free(v->routes);
	memset(v, 0, sizeof(*v));
}

/* Appends s and its NUL to the view's strings. */
static const char *
pv_str(struct mapper_policy_view *v, size_t *at, const char *s, size_t len)
{
	char *d = v->mem + *at;

	memcpy(d, s, len);
	d[len] = 0;
	*at += len + 1;
	return d;
}

struct idpos {
	int64_t id;
	size_t pos;
};

static int
idpos_cmp(const void *a, const void *b)
{
	int64_t x = ((const struct idpos *)a)->id, y = ((const struct idpos *)b)->id;

	return x < y ? -1 : x > y;
}

/* Orders a view by node id (the mapper's order is by arrival): outside the
 * mapper's lock; the nodes' strings and routes stay where they are. */
static int
pview_sort(struct mapper_policy_view *v)
{
	struct idpos *ix;
	struct policy_node *pn;
	size_t i;

	for (i = 1; i < v->n && v->pn[i - 1].id < v->pn[i].id; i++)
		;
	if (i >= v->n)
		return 0;
	ix = malloc(v->n * sizeof(*ix));
	pn = malloc((v->n + 1) * sizeof(*pn));
	if (ix == NULL || pn == NULL) {
		free(ix);
		free(pn);
		mapper_policy_view_free(v);
		return ERR_NOMEM;
	}
	for (i = 0; i < v->n; i++)
		ix[i] = (struct idpos){ (int64_t)v->pn[i].id, i };
	qsort(ix, v->n, sizeof(*ix), idpos_cmp);
	for (i = 0; i < v->n; i++)
		pn[i] = v->pn[ix[i].pos];
	free(ix);
	free(v->pn);
	v->pn = pn;
	return 0;
}

int
mapper_policy_view(struct mapper *m, struct mapper_policy_view *v)
{
	size_t bytes = 0, ntags = 0, nroutes = 0, at = 0, ti = 0, ri = 0;

	memset(v, 0, sizeof(*v));
	pthread_mutex_lock(&m->lock);
	for (size_t i = 0; i < m->nnodes; i++) {
		const struct mnode *mn = m->nodes[i];

		bytes += strlen(mn->n.name) + 1 + mn->tagbytes;
		if (mn->ntags == 0)	/* a tagged node has no user for the policy */
			bytes += strlen(mn->n.user) + 1;
		ntags += mn->ntags;
		if (mn->nadv > 0)
			nroutes += (size_t)mn->nadv + mn->nserved;
	}
	v->pn = calloc(m->nnodes + 1, sizeof(*v->pn));
	v->mem = malloc(bytes + 1);
	v->tags = malloc((ntags + 1) * sizeof(*v->tags));
	v->routes = malloc((nroutes + 1) * sizeof(*v->routes));
	if (v->pn == NULL || v->mem == NULL || v->tags == NULL || v->routes == NULL) {
		pthread_mutex_unlock(&m->lock);
		mapper_policy_view_free(v);
		return ERR_NOMEM;
	}
	for (size_t i = 0; i < m->nnodes; i++) {
		const struct mnode *mn = m->nodes[i];
		struct policy_node *p = &v->pn[i];
		const char *t = mn->tagv;

		p->id = (uint64_t)mn->n.id;
		p->name = pv_str(v, &at, mn->n.name, strlen(mn->n.name));
		if (mn->ntags == 0)
			p->user = pv_str(v, &at, mn->n.user, strlen(mn->n.user));
		p->ipv4 = mn->n.ipv4;
		p->ipv6 = mn->n.ipv6;
		p->tags = &v->tags[ti];
		for (size_t k = 0; k < mn->ntags; k++) {
			size_t l = strlen(t);

			v->tags[ti++] = pv_str(v, &at, t, l);
			t += l + 1;
		}
		p->ntags = mn->ntags;
		if (mn->nadv > 0) {
			p->advertised = &v->routes[ri];
			p->nadvertised = mn->nadv;
			memcpy(&v->routes[ri], mn->adv, mn->nadv * sizeof(*mn->adv));
			ri += mn->nadv;
			p->routes = &v->routes[ri];
			p->nroutes = mn->nserved;
			memcpy(&v->routes[ri], mn->served, mn->nserved * sizeof(*mn->served));
			ri += mn->nserved;
		}
	}
	v->n = m->nnodes;
	pthread_mutex_unlock(&m->lock);
	return pview_sort(v);
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
			*online = mn->online;
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
	pthread_mutex_init(&s->zlock, NULL);
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

static int
cmp_pitem_subject(const void *a, const void *b)
{
	const struct pitem *x = a, *y = b;

	if (x->id != y->id)
		return (x->id > y->id) - (x->id < y->id);
	if (x->what != y->what)
		return (int)x->what - (int)y->what;
	return (x->version < y->version) - (x->version > y->version);	/* newest first */
}

static int
cmp_pitem_version(const void *a, const void *b)
{
	const struct pitem *x = a, *y = b;

	if (x->version != y->version)
		return (x->version > y->version) - (x->version < y->version);
	return (x->id > y->id) - (x->id < y->id);
}

static int
plan_add(struct pitem **v, size_t *n, size_t *cap, uint64_t version, int64_t id, uint8_t what)
{
	if (*n == *cap) {
		size_t ncap = *cap ? 2 * *cap : 64;
		struct pitem *t = realloc(*v, ncap * sizeof(*t));

		if (t == NULL)
			return ERR_NOMEM;
		*v = t;
		*cap = ncap;
	}
	(*v)[*n].version = version;
	(*v)[*n].id = id;
	(*v)[*n].what = what;
	(*v)[*n].add = false;
	(*n)++;
	return 0;
}

/*
 * The replay of the changes after `since` for `viewer`: each subject once,
 * at the version of its last change, only what the viewer may see, in
 * version order. false when it needs a full map instead: `since` is 0,
 * unknown (newer than the last change), older than the log's retention, or
 * a policy change after it altered the viewer's peers. Called with m->lock.
 */
static bool
plan_build(struct mapper *m, int64_t viewer, uint64_t since, struct pitem **out, size_t *nout)
{
	struct pitem *v = NULL;
	size_t n = 0, cap = 0, k = 0;
	int64_t prev_id = 0;
	uint8_t prev_what = 0;
	int r = 0;

	*out = NULL;
	*nout = 0;
	if (since == 0 || since > m->version || since < m->floor)
		return false;
	for (size_t i = log_after(m, since); r == 0 && i < m->lg_len; i++) {
		const struct logent *e = lg_at(m, i);

		switch (e->kind) {
		case STORE_CHANGE_NODE:
		case STORE_CHANGE_ROUTES:
			r = plan_add(&v, &n, &cap, e->version, e->node, P_NODEISH);
			break;
		case STORE_CHANGE_REMOVED:
			if (e->all || ids_has(e->a, e->na, viewer))
				r = plan_add(&v, &n, &cap, e->version, e->node, P_REMOVED);
			break;
		case STORE_CHANGE_ONLINE:
			for (uint32_t j = 0; r == 0 && j < e->na; j++)
				r = plan_add(&v, &n, &cap, e->version, e->a[j], P_ONLINE);
			for (uint32_t j = 0; r == 0 && j < e->nb; j++)
				r = plan_add(&v, &n, &cap, e->version, e->b[j], P_ONLINE);
			break;
		case STORE_CHANGE_DNS:
			r = plan_add(&v, &n, &cap, e->version, viewer, P_DNS);
			break;
		case STORE_CHANGE_REPLICAS:
			r = plan_add(&v, &n, &cap, e->version, viewer, P_REPLICAS);
			break;
		case STORE_CHANGE_POLICY: {
			const int64_t *vis;
			uint32_t nvis;

			if (e->all || ids_has(e->a, e->na, viewer)) {
				free(v);
				return false;
			}
			if (vis_of(e, viewer, &vis, &nvis)) {
				for (uint32_t j = 0; r == 0 && j < nvis; j++)
					if ((r = plan_add(&v, &n, &cap, e->version,
					    vis[j] < 0 ? -vis[j] : vis[j], P_VIS)) == 0)
						v[n - 1].add = vis[j] > 0;
				if (r == 0)
					r = plan_add(&v, &n, &cap, e->version, viewer, P_FILTER);
			} else if (ids_has(e->b, e->nb, viewer))
				r = plan_add(&v, &n, &cap, e->version, viewer, P_FILTER);
			break;
		}
		default:
			break;
		}
	}
	if (r != 0) {
		free(v);
		return false;
	}
	/* The newest change per (subject, kind); then only what it may see. */
	if (n > 1)
		qsort(v, n, sizeof(*v), cmp_pitem_subject);
	for (size_t i = 0; i < n; i++) {
		struct pitem it = v[i];
		struct mnode *mn;

		if (i > 0 && prev_id == it.id && prev_what == it.what)
			continue;	/* an older change of the same subject */
		prev_id = it.id;
		prev_what = it.what;
		mn = node_find(m, it.id, NULL);
		switch (it.what) {
		case P_VIS: {
			/* policy changes altered whether the viewer sees it: added
			 * (current state) when it may see it now; removed when it
			 * may not, unless it could not at `since` either (the
			 * oldest of these changes, last of the run, made it
			 * visible) */
			size_t j = i;

			while (j + 1 < n && v[j + 1].id == it.id && v[j + 1].what == P_VIS)
				j++;
			if (mn != NULL && visible(m, viewer, it.id))
				it.what = P_ADDED;
			else if (v[j].add)
				continue;
			else
				it.what = P_REMOVED;
			break;
		}
		case P_NODEISH:
			if (mn == NULL)
				continue;
			if (it.id == viewer)
				it.what = P_SELF;
			else if (visible(m, viewer, it.id))
				it.what = P_PEER;
			else
				continue;
			break;
		case P_ONLINE:
			if (mn == NULL || !visible(m, viewer, it.id))
				continue;
			break;
		case P_REMOVED:
			if (mn != NULL)
				continue;
			break;
		default:
			break;
		}
		v[k++] = it;	/* k <= i */
	}
	if (k > 1)
		qsort(v, k, sizeof(*v), cmp_pitem_version);
	*out = v;
	*nout = k;
	return true;
}

/* Renders the next replayed messages of s (up to RENDER_BATCH bytes) from
 * the current state; NULL when the plan is done. */
static struct rbuf *
plan_render(struct mstream *s)
{
	struct mapper *m = s->m;
	struct rbuf *out = NULL;
	uint64_t last = 0;
	struct buf b;
	int r = 0;

	buf_init(&b, (size_t)256 << 20);
	pthread_mutex_lock(&m->lock);
	while (r == 0 && s->plan_i < s->nplan && b.len < RENDER_BATCH) {
		const struct pitem *it = &s->plan[s->plan_i];
		struct mnode *mn = node_find(m, it->id, NULL);

		switch (it->what) {
		case P_PEER:
		case P_SELF:
			if (mn != NULL)
				r = buf_printf(&b, "{\"type\":\"delta\",\"version\":%" PRIu64
				    ",\"%s\":%.*s}\n", it->version,
				    it->what == P_SELF ? "self" : "peer_changed",
				    (int)mn->frag->len, mn->frag->data);
			s->plan_i++;
			break;
		case P_REMOVED:
			r = buf_printf(&b, "{\"type\":\"delta\",\"version\":%" PRIu64
			    ",\"peer_removed\":%" PRId64 "}\n", it->version, it->id);
			s->plan_i++;
			break;
		case P_ADDED:
			/* visible when planned; checked again, never leaked */
			if (mn != NULL && visible(m, s->node_id, it->id))
				r = buf_printf(&b, "{\"type\":\"delta\",\"version\":%" PRIu64
				    ",\"peer_added\":%.*s}\n", it->version,
				    (int)mn->frag->len, mn->frag->data);
			s->plan_i++;
			break;
		case P_DNS:
			r = buf_printf(&b, "{\"type\":\"delta\",\"version\":%" PRIu64
			    ",\"dns\":%s}\n", it->version, m->dns);
			s->plan_i++;
			break;
		case P_REPLICAS:
			r = buf_printf(&b, "{\"type\":\"delta\",\"version\":%" PRIu64
			    ",\"control_urls\":%s,\"derp_map\":%s}\n", it->version, m->control_urls,
			    m->derp_map);
			s->plan_i++;
			break;
		case P_FILTER: {
			char *f = m->pol.filter ? m->pol.filter(m->pol_ctx, it->id) : NULL;

			r = buf_printf(&b, "{\"type\":\"delta\",\"version\":%" PRIu64
			    ",\"filter\":%s}\n", it->version, f ? f : m->default_filter);
			free(f);
			s->plan_i++;
			break;
		}
		case P_ONLINE: {
			/* every flag of this version in one message, current values */
			uint64_t ver = it->version;
			size_t j = s->plan_i, k;
			bool first;

			r = buf_printf(&b, "{\"type\":\"delta\",\"version\":%" PRIu64
			    ",\"online_flags\":{\"on\":[", ver);
			for (int half = 0; r == 0 && half < 2; half++) {
				if (half)
					r = buf_printf(&b, "],\"off\":[");
				first = true;
				for (k = j; r == 0 && k < s->nplan && s->plan[k].version == ver &&
				    s->plan[k].what == P_ONLINE; k++) {
					struct mnode *p = node_find(m, s->plan[k].id, NULL);

					if (p == NULL || p->online != !half)
						continue;
					r = buf_printf(&b, first ? "%" PRId64 : ",%" PRId64, p->n.id);
					first = false;
				}
			}
			if (r == 0)
				r = buf_printf(&b, "]}}\n");
			while (s->plan_i < s->nplan && s->plan[s->plan_i].version == ver &&
			    s->plan[s->plan_i].what == P_ONLINE)
				s->plan_i++;
			break;
		}
		default:
			s->plan_i++;
			break;
		}
		last = it->version;
	}
	pthread_mutex_unlock(&m->lock);
	if (r == 0 && b.len > 0)
		out = rbuf_new((const char *)b.data, b.len, last);
	buf_cleanup(&b);
	if (s->plan_i >= s->nplan || r != 0) {
		free(s->plan);
		s->plan = NULL;
		s->nplan = s->plan_i = 0;
	}
	return out;
}

/* Starts a full map: builds the head under the lock and drops queued deltas
 * and any replay that the map already contains. false when the node is gone. */
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
	hl = 160 + mn->frag->len + strlen(m->derp_map) + strlen(m->dns) +
	    strlen(m->control_urls) + strlen(filter ? filter : m->default_filter);
	if ((head = malloc(hl)) != NULL) {
		bool urls = strcmp(m->control_urls, "[]") != 0;
		int n = snprintf(head, hl, "{\"type\":\"full\",\"version\":%" PRIu64
		    ",\"self\":%.*s,\"derp_map\":%s,\"dns\":%s,%s%s%s\"filter\":%s,\"peers\":[",
		    m->version, (int)mn->frag->len, mn->frag->data, m->derp_map, m->dns,
		    urls ? "\"control_urls\":" : "", urls ? m->control_urls : "", urls ? "," : "",
		    filter ? filter : m->default_filter);

		rbuf_put(s->cur);
		s->cur = rbuf_new(head, (size_t)n, 0);
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
	queue_clear(s);
	s->need_full = false;
	s->need_resume = false;
	pthread_mutex_unlock(&s->lock);
	free(s->plan);
	s->plan = NULL;
	s->nplan = s->plan_i = 0;
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

/* A stream that fell behind: drops what it queued and replays the log from
 * the last message it was given. false: it needs a full map instead. */
static bool
begin_resume(struct mstream *s)
{
	struct mapper *m = s->m;
	bool ok;

	pthread_mutex_lock(&m->lock);
	pthread_mutex_lock(&s->lock);
	queue_clear(s);
	s->need_resume = false;
	pthread_mutex_unlock(&s->lock);
	free(s->plan);
	s->plan = NULL;
	s->nplan = s->plan_i = 0;
	ok = !s->closed && plan_build(m, s->node_id, s->sent_version, &s->plan, &s->nplan);
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

/* The next piece of a full map as one zstd frame: the head, then blocks of
 * peers (a block whose peers the node all sees, and that is not its first,
 * is the snapshot's shared compressed block), then the tail. */
static struct rbuf *
zfull_piece(struct mstream *s)
{
	struct rbuf *z = NULL;

	while (z == NULL) {
		if (s->stage == ST_HEAD) {
			z = zframe(s->cur->data, s->cur->len, 0);
			rbuf_put(s->cur);
			s->cur = NULL;
			s->stage = ST_PEERS;
			return z;
		}
		if (s->stage == ST_PEERS && s->peer_i < s->snap->n) {
			size_t b = s->peer_i / ZBLOCK, end = (b + 1) * ZBLOCK, i;
			bool all = s->peer_i == b * ZBLOCK && s->peer_sep;
			struct buf t;
			int r = 0;

			if (end > s->snap->n)
				end = s->snap->n;
			for (i = s->peer_i; all && i < end; i++) {
				int64_t pid = s->snap->ids[i];

				all = pid != s->node_id && (s->can_see == NULL ||
				    s->can_see(s->pol_ctx, s->node_id, pid));
			}
			if (all) {
				s->peer_i = end;
				return snap_zblock(s->snap, b);
			}
			buf_init(&t, (size_t)64 << 20);
			for (i = s->peer_i; r == 0 && i < end; i++) {
				int64_t pid = s->snap->ids[i];

				if (pid == s->node_id || (s->can_see != NULL &&
				    !s->can_see(s->pol_ctx, s->node_id, pid)))
					continue;
				if (s->peer_sep)
					r = buf_append(&t, ",", 1);
				if (r == 0)
					r = buf_append(&t, s->snap->frags[i]->data, s->snap->frags[i]->len);
				s->peer_sep = true;
			}
			s->peer_i = end;
			if (r == 0 && t.len > 0)
				z = zframe((const char *)t.data, t.len, 0);
			buf_cleanup(&t);
			if (r != 0)
				return NULL;
			continue;
		}
		/* the tail */
		z = zframe("]}\n", 3, s->snap->version);
		s->sent_version = s->snap->version;
		snap_put(s->snap);
		s->snap = NULL;
		if (s->pol_put)
			s->pol_put(s->pol_ctx);
		s->pol_put = NULL;
		s->can_see = NULL;
		s->stage = ST_QUEUE;
		return z;
	}
	return z;
}

/* In a zstd stream, a message is sent as its compressed twin. */
static struct rbuf *
zswap(struct mstream *s, struct rbuf *b, bool shared)
{
	struct rbuf *z;

	if (!s->zstd || b == NULL)
		return b;
	z = shared ? rbuf_z(b) : zframe(b->data, b->len, b->version);
	rbuf_put(b);
	return z;
}

static ssize_t
stream_read(void *ctx, char *buf, size_t max)
{
	struct mstream *s = ctx;
	size_t done = 0;
	bool need_full, need_resume, ending;

	while (done < max) {
		if (s->zc != NULL) {
			done += copy_out(s, s->zc->data, s->zc->len, buf + done, max - done);
			if (s->off == s->zc->len) {
				rbuf_put(s->zc);
				s->zc = NULL;
				s->off = 0;
			}
			continue;
		}
		if (s->zstd && (s->stage == ST_HEAD || s->stage == ST_PEERS || s->stage == ST_TAIL)) {
			if ((s->zc = zfull_piece(s)) == NULL)
				return done > 0 ? (ssize_t)done : -1;	/* out of memory */
			s->off = 0;
			continue;
		}
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
				s->sent_version = s->snap->version;
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
					if (s->cur->version > s->sent_version)
						s->sent_version = s->cur->version;
					rbuf_put(s->cur);
					s->cur = NULL;
					s->off = 0;
				}
				continue;
			}
			pthread_mutex_lock(&s->lock);
			need_full = s->need_full;
			need_resume = s->need_resume && !need_full;
			pthread_mutex_unlock(&s->lock);
			if (need_full) {
				if (done > 0)
					goto out;
				if (!begin_full(s))
					return -1;
				continue;
			}
			if (need_resume) {
				if (!begin_resume(s)) {
					if (!begin_full(s))
						return done > 0 ? (ssize_t)done : -1;
				}
				continue;
			}
			if (s->plan != NULL) {
				if ((s->cur = zswap(s, plan_render(s), false)) != NULL)
					s->off = 0;
				else if (s->zstd && s->plan != NULL)
					return done > 0 ? (ssize_t)done : -1;	/* out of memory */
				continue;
			}
			pthread_mutex_lock(&s->lock);
			if (s->qlen > 0) {
				s->cur = s->q[s->qhead];
				s->qhead = (s->qhead + 1) % s->m->cfg.queue_max;
				s->qlen--;
				s->off = 0;
			}
			ending = s->ending && s->cur == NULL;
			pthread_mutex_unlock(&s->lock);
			if (ending)
				return done > 0 ? (ssize_t)done : -1;
			if (s->cur == NULL)
				goto out;
			if (s->zstd && (s->cur = zswap(s, s->cur, true)) == NULL)
				return done > 0 ? (ssize_t)done : -1;	/* out of memory */
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
			mn->grace_until_ms = 0;
			offline = mn->n.id;
		}
	}
	m->nstreams--;
	pthread_mutex_unlock(&m->lock);
	if (offline && m->cfg.on_offline)
		m->cfg.on_offline(m->cfg.ctx, offline);
	queue_clear(s);
	rbuf_put(s->cur);
	rbuf_put(s->zc);
	snap_put(s->snap);
	free(s->plan);
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

int
mapper_stream_open(struct mapper *m, int64_t node_id, uint64_t since, bool zstd,
		   struct http_response *resp, enum mapper_start *how)
{
	struct mstream *s = calloc(1, sizeof(*s));
	struct mnode *mn;

	if (s == NULL || (s->q = calloc(m->cfg.queue_max, sizeof(*s->q))) == NULL) {
		free(s);
		return ERR_NOMEM;
	}
	s->m = m;
	s->node_id = node_id;
	s->zstd = zstd;
	pthread_mutex_init(&s->lock, NULL);
	pthread_mutex_lock(&m->lock);
	if ((mn = node_find(m, node_id, NULL)) == NULL ||
	    mn->nstreams >= MAPPER_STREAMS_PER_NODE_MAX) {
		/* A node reconnecting has one or two; more is a loop or abuse. */
		int r = mn ? ERR_EXHAUSTED : ERR_NOT_FOUND;

		pthread_mutex_unlock(&m->lock);
		free(s->q);
		pthread_mutex_destroy(&s->lock);
		free(s);
		return r;
	}
	if (plan_build(m, node_id, since, &s->plan, &s->nplan)) {
		char line[96];
		int n = snprintf(line, sizeof(line), "{\"type\":\"keepalive\",\"version\":%"
		    PRIu64 "}\n", m->version);

		s->stage = ST_QUEUE;
		s->sent_version = since;
		if (s->nplan == 0) {
			free(s->plan);
			s->plan = NULL;
		}
		/* after the replay, a keepalive at the current version: the node
		 * knows at once that it is current */
		if ((s->q[0] = rbuf_new(line, (size_t)n, m->version)) != NULL) {
			s->q[0]->soft = true;
			s->qlen = 1;
		}
		atomic_fetch_add(&m->resumes, 1);
		*how = MAPPER_START_RESUME;
	} else {
		s->stage = ST_NONE;
		*how = MAPPER_START_FULL;
	}
	s->next_in_node = mn->streams;
	if (mn->streams)
		mn->streams->prev_in_node = s;
	mn->streams = s;
	m->nstreams++;
	mn->nstreams++;
	pthread_mutex_unlock(&m->lock);
	resp->status = 200;
	resp->content_type = "application/x-ndjson";
	resp->stream_ops = &stream_ops;
	resp->stream_ctx = s;
	return 0;
}

size_t
mapper_end_streams(struct mapper *m)
{
	size_t n = 0;

	pthread_mutex_lock(&m->lock);
	for (size_t i = 0; i < m->nnodes; i++) {
		for (struct mstream *st = m->nodes[i]->streams; st; st = st->next_in_node) {
			pthread_mutex_lock(&st->lock);
			st->ending = true;
			pthread_mutex_unlock(&st->lock);
			if (st->hs)
				http_stream_wake(st->hs);
			n++;
		}
	}
	pthread_mutex_unlock(&m->lock);
	return n;
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
	if ((b = rbuf_new(line, (size_t)n, m->version)) != NULL) {
		b->soft = true;
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

		if (mn->n.ephemeral && mn->nstreams == 0 && !mn->online &&
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
		if (m->nodes[i]->online)
			out->online_nodes++;
	out->streams = m->nstreams;
	out->version = m->version;
	out->floor = m->floor;
	out->log_len = m->lg_len;
	pthread_mutex_unlock(&m->lock);
	out->bytes_sent = atomic_load(&m->bytes_sent);
	out->full_maps = atomic_load(&m->full_maps);
	out->deltas = atomic_load(&m->deltas);
	out->collapses = atomic_load(&m->collapses);
	out->resumes = atomic_load(&m->resumes);
	out->online_batches = atomic_load(&m->online_batches);
}
