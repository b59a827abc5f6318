/* SPDX-License-Identifier: MIT */
/*
 * DERP relay event loop. Connection states:
 *
 *   TLS      TLS handshake in progress (https listener only)
 *   HTTP     reading the request head (standalone listeners)
 *   REPLY    an HTTP answer is queued; close once written
 *   INFO     ServerKey sent, waiting for ClientInfo (10 s budget)
 *   VERIFY   ClientInfo opened, the verifier thread is deciding
 *   ACTIVE   registered under its node key; frames flow
 *
 * Reads go through one per-server scratch buffer; only the unfinished tail
 * of a frame is kept per connection, so idle connections cost no buffers.
 * Writes are gathered: packets queued for a connection are copied into its
 * write buffer (up to WBUF_FILL bytes) and written in one call after each
 * read batch, which keeps TLS records large. A connection whose verifier job
 * is pending is only freed when the verdict comes back.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <sodium.h>

#include "common/log.h"
#include "common/prom.h"
#include "common/util.h"
#include "relay/derp_frame.h"
#include "relay/derp_server.h"
#include "relay/relay_net.h"

enum {
	SCRATCH_LEN = 256 * 1024,
	WBUF_FILL = 64 * 1024,		/* stop moving queued packets past this */
	WBUF_MAX = 512 * 1024,		/* control frames beyond this are dropped */
	READ_BUDGET = 8,		/* reads per connection per wakeup */
	SSL_READ_BUF = 64 * 1024,	/* TLS read-ahead buffer (released when idle) */
	SENT_TO_MAX = 64,		/* peers remembered for PeerGone */
	ADOPT_MAX = 256,
	EV_BATCH = 256,
	HANGUP_GRACE_MS = 500,
};

enum conn_state { ST_TLS, ST_HTTP, ST_REPLY, ST_INFO, ST_VERIFY, ST_ACTIVE };
enum src_kind { SRC_CONN, SRC_HTTPS, SRC_HTTP, SRC_WAKE, SRC_VERIFY, SRC_WATCH };

struct ev_src {
	enum src_kind kind;
};

struct pkt {
	uint32_t len;
	uint8_t data[];			/* a complete RecvPacket frame */
};

struct conn {
	struct ev_src src;		/* first: epoll data points here */
	int fd;
	SSL *ssl;
	void (*release)(void *ctx);	/* borrowed fd: hand back instead of close() */
	void *release_ctx;
	int watch_fd;			/* borrowed, watched for hangups only; -1 none */
	struct ev_src watch_src;
	int64_t hangup_close_ms;	/* watch saw a hangup: close then; 0 none */
	enum conn_state state;
	bool plain_http_port;		/* came in on the http listener */
	bool want_out;			/* EPOLLOUT registered */
	bool ssl_read_wants_write;
	bool closing;			/* close once wbuf is flushed */
	bool dead;			/* closed, freed when verifier answers */
	bool dirty;			/* on the flush list */
	bool ready;			/* on the ready list (more to read) */
	bool registered;		/* in the key table */
	bool preferred;
	bool verifying;			/* a verifier job refers to us */
	bool in_graveyard;
	bool hot;			/* relaying: buffers kept between flushes */
	bool moved;			/* packets since the last tick */
	int64_t deadline_ms;		/* handshake deadline, 0 when active */
	int64_t next_keepalive_ms;
	uint8_t key[KEY_LEN];
	uint8_t *partial;		/* unfinished input */
	size_t plen, pcap;
	uint8_t *wbuf;			/* gathered output */
	size_t wlen, woff, wcap;
	struct pkt **q;			/* ring of queued packets */
	unsigned qhead, qcount;
	uint8_t (*sent_to)[KEY_LEN];	/* peers this client sent to */
	unsigned nsent_to;
	struct conn *last_dst;
	struct conn *hnext;		/* key table chain */
	struct conn *prev, *next;	/* all connections */
	struct conn *dnext;		/* flush list */
	struct conn *rnext;		/* ready list */
	struct conn *gnext;		/* closed, to be freed */
	struct log_ratelimit gone_rl;
	uint8_t challenge[DERP_CHALLENGE_LEN];	/* sent in ServerKey */
};

struct verify_job {
	struct conn *c;
	uint8_t key[KEY_LEN];
	int64_t queued_ms;
};

struct verdict_entry {
	uint8_t key[KEY_LEN];
	int verdict;
	int64_t expires_ms;	/* 0: empty */
};

struct verify_result {
	struct conn *c;
	int verdict;
};

struct adopt {
	int fd;
	SSL *ssl;
	void (*release)(void *ctx);
	void *release_ctx;
	int watch_fd;
	uint8_t *data;
	size_t n;
};

struct counters {
	atomic_uint_fast64_t v[sizeof(struct derp_server_stats) / sizeof(uint64_t)];
};

struct derp_server {
	struct derp_server_config cfg;
	SSL_CTX *own_ctx;		/* from cfg tls_cert/tls_key */
	pthread_mutex_t ctx_lock;	/* own_ctx and cfg.ssl_ctx: derp_server_reload_cert */
	uint8_t priv[KEY_LEN], pub[KEY_LEN];
	char *https_addr, *http_addr;
	int epfd, https_fd, http_fd, wake_fd;
	uint16_t https_port, http_port;
	struct ev_src https_src, http_src, wake_src, verify_src;
	pthread_t loop_thread, verify_threads[DERP_VERIFY_THREADS];
	bool running;
	atomic_bool stop;
	uint8_t *scratch;
	struct conn *conns;		/* all connections */
	struct conn **table;		/* key -> newest connection */
	size_t table_mask;
	unsigned nsockets;
	struct conn *dirty;
	struct conn *ready;
	struct conn *graveyard;
	/* adoption hand-over from other threads */
	pthread_mutex_t adopt_lock;
	struct adopt adopts[ADOPT_MAX];
	unsigned nadopts;
	uint8_t (*drops)[KEY_LEN];	/* keys to disconnect (derp_server_drop_key) */
	unsigned ndrops, dropcap;
	/* verifier */
	pthread_mutex_t vlock;
	pthread_cond_t vcond;
	struct verify_job vq[DERP_VERIFY_QUEUE];
	unsigned vhead, vcount, vpending;
	struct verdict_entry vcache[DERP_VERIFY_CACHE];	/* under vlock */
	int vpipe[2];			/* results: verifier -> loop */
	struct counters st;
	struct log_ratelimit rl;
	bool fixed_challenge;		/* derp_server_feed: all-zero challenges */
};

#define STAT(s, field) ((s)->st.v[offsetof(struct derp_server_stats, field) / sizeof(uint64_t)])
#define INC(s, field) atomic_fetch_add_explicit(&STAT(s, field), 1, memory_order_relaxed)
#define ADD(s, field, n) atomic_fetch_add_explicit(&STAT(s, field), (n), memory_order_relaxed)
#define DEC(s, field) atomic_fetch_sub_explicit(&STAT(s, field), 1, memory_order_relaxed)

static void conn_close(struct derp_server *s, struct conn *c);
static void conn_flush(struct derp_server *s, struct conn *c);

/* ---- HTTP helpers shared with embedders ---- */

int derp_upgrade_check(const char *method, const char *upgrade)
{
	if (method == NULL || strcmp(method, "GET") != 0)
		return 405;
	if (upgrade == NULL || strcasecmp(upgrade, "derp") != 0)
		return 426;
	return 0;
}

void derp_server_upgrade_headers(const struct derp_server *s,
				 struct derp_http_header out[static DERP_UPGRADE_HEADERS])
{
	out[0].name = "Upgrade";
	str_copy(out[0].value, "DERP", sizeof(out[0].value));
	out[1].name = "Connection";
	str_copy(out[1].value, "Upgrade", sizeof(out[1].value));
	out[2].name = "Derp-Version";
	snprintf(out[2].value, sizeof(out[2].value), "%d", DERP_PROTOCOL_VERSION);
	out[3].name = "Derp-Public-Key";
	(void)hex_encode(out[3].value, sizeof(out[3].value), s->pub, KEY_LEN);
}

/* ---- key table ---- */

static size_t key_hash(const struct derp_server *s, const uint8_t *k)
{
	uint32_t h;

	memcpy(&h, k, sizeof(h));	/* keys are uniformly random */
	return h & s->table_mask;
}

static struct conn *table_get(struct derp_server *s, const uint8_t *k)
{
	for (struct conn *c = s->table[key_hash(s, k)]; c; c = c->hnext)
		if (memcmp(c->key, k, KEY_LEN) == 0)
			return c;
	return NULL;
}

static void table_put(struct derp_server *s, struct conn *c)
{
	size_t h = key_hash(s, c->key);

	/* newest first: the latest connection of a key is the active one */
	c->hnext = s->table[h];
	s->table[h] = c;
	c->registered = true;
}

static void table_del(struct derp_server *s, struct conn *c)
{
	struct conn **pp = &s->table[key_hash(s, c->key)];

	for (; *pp; pp = &(*pp)->hnext) {
		if (*pp == c) {
			*pp = c->hnext;
			break;
		}
	}
	c->registered = false;
}

/* ---- I/O ---- */

/* Stops (or resumes) reading while the verifier decides. */
static void set_interest(struct derp_server *s, struct conn *c, bool in)
{
	struct epoll_event ev = { .events = in ? EPOLLIN : 0, .data.ptr = &c->src };

	epoll_ctl(s->epfd, EPOLL_CTL_MOD, c->fd, &ev);
	c->want_out = false;
}

static void set_events(struct derp_server *s, struct conn *c)
{
	bool want = c->wlen > c->woff || c->ssl_read_wants_write ||
		    (c->ssl && c->state == ST_TLS && SSL_want_write(c->ssl));
	struct epoll_event ev;

	if (want == c->want_out)
		return;
	ev.events = EPOLLIN | (want ? EPOLLOUT : 0);
	ev.data.ptr = &c->src;
	if (epoll_ctl(s->epfd, EPOLL_CTL_MOD, c->fd, &ev) == 0)
		c->want_out = want;
}

/* >0 bytes, 0 EOF, -EAGAIN would block, -EIO error. */
static ssize_t io_read(struct conn *c, uint8_t *p, size_t n)
{
	ssize_t r;

	if (c->ssl == NULL) {
		r = read(c->fd, p, n);
		if (r < 0)
			return errno == EAGAIN || errno == EINTR ? -EAGAIN : -EIO;
		return r;
	}
	c->ssl_read_wants_write = false;
	r = SSL_read(c->ssl, p, (int)(n > INT32_MAX ? INT32_MAX : n));
	if (r > 0)
		return r;
	switch (SSL_get_error(c->ssl, (int)r)) {
	case SSL_ERROR_WANT_READ:
		return -EAGAIN;
	case SSL_ERROR_WANT_WRITE:
		c->ssl_read_wants_write = true;
		return -EAGAIN;
	case SSL_ERROR_ZERO_RETURN:
		return 0;
	default:
		ERR_clear_error();
		return -EIO;
	}
}

static ssize_t io_write(struct conn *c, const uint8_t *p, size_t n)
{
	ssize_t r;

	if (c->ssl == NULL) {
		r = send(c->fd, p, n, MSG_NOSIGNAL);
		if (r < 0)
			return errno == EAGAIN || errno == EINTR ? -EAGAIN : -EIO;
		return r;
	}
	r = SSL_write(c->ssl, p, (int)(n > INT32_MAX ? INT32_MAX : n));
	if (r > 0)
		return r;
	switch (SSL_get_error(c->ssl, (int)r)) {
	case SSL_ERROR_WANT_READ:
	case SSL_ERROR_WANT_WRITE:
		return -EAGAIN;
	default:
		ERR_clear_error();
		return -EIO;
	}
}

static int wbuf_reserve(struct conn *c, size_t n)
{
	size_t need = c->wlen + n, cap;
	uint8_t *p;

	if (need <= c->wcap)
		return 0;
	if (need > WBUF_MAX)
		return ERR_TOO_LARGE;
	cap = c->wcap ? c->wcap : 4096;
	while (cap < need)
		cap *= 2;
	if (cap > WBUF_MAX)
		cap = WBUF_MAX;
	/* SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER allows this while a write is pending */
	p = realloc(c->wbuf, cap);
	if (p == NULL)
		return ERR_NOMEM;
	c->wbuf = p;
	c->wcap = cap;
	return 0;
}

static void mark_dirty(struct derp_server *s, struct conn *c)
{
	if (!c->dirty) {
		c->dirty = true;
		c->dnext = s->dirty;
		s->dirty = c;
	}
}

/* Appends a control frame to the write buffer. */
static int send_frame(struct derp_server *s, struct conn *c, uint8_t type,
		      const void *a, size_t alen, const void *b, size_t blen)
{
	if (wbuf_reserve(c, DERP_HEADER_LEN + alen + blen) != 0)
		return ERR_TOO_LARGE;
	derp_frame_put_header(c->wbuf + c->wlen, type, (uint32_t)(alen + blen));
	c->wlen += DERP_HEADER_LEN;
	if (alen)
		memcpy(c->wbuf + c->wlen, a, alen);
	c->wlen += alen;
	if (blen)
		memcpy(c->wbuf + c->wlen, b, blen);
	c->wlen += blen;
	mark_dirty(s, c);
	return 0;
}

static int send_raw(struct derp_server *s, struct conn *c, const void *p, size_t n)
{
	if (wbuf_reserve(c, n) != 0)
		return ERR_TOO_LARGE;
	memcpy(c->wbuf + c->wlen, p, n);
	c->wlen += n;
	mark_dirty(s, c);
	return 0;
}

static void conn_flush(struct derp_server *s, struct conn *c)
{
	for (;;) {
		ssize_t n;

		if (c->woff == c->wlen) {
			c->woff = c->wlen = 0;
			/* gather queued packets behind the control frames */
			while (c->qcount && c->wlen < WBUF_FILL) {
				struct pkt *p = c->q[c->qhead];

				if (wbuf_reserve(c, p->len) != 0)
					break;
				memcpy(c->wbuf + c->wlen, p->data, p->len);
				c->wlen += p->len;
				free(p);
				c->q[c->qhead] = NULL;
				c->qhead = (c->qhead + 1) % s->cfg.queue_len;
				c->qcount--;
			}
			if (c->wlen == 0)
				break;
		}
		n = io_write(c, c->wbuf + c->woff, c->wlen - c->woff);
		if (n == -EAGAIN)
			break;
		if (n < 0) {
			conn_close(s, c);
			return;
		}
		c->woff += (size_t)n;
	}
	if (c->woff == c->wlen && c->qcount == 0) {
		c->woff = c->wlen = 0;
		if (c->wcap > 4096 && !c->hot) {	/* idle connections keep no big buffer */
			free(c->wbuf);
			c->wbuf = NULL;
			c->wcap = 0;
		}
		if (c->closing) {
			conn_close(s, c);
			return;
		}
	}
	set_events(s, c);
}

/* ---- connection lifecycle ---- */

static struct conn *conn_new(struct derp_server *s, int fd, SSL *ssl, enum conn_state st)
{
	struct conn *c = calloc(1, sizeof(*c));
	struct epoll_event ev = { .events = EPOLLIN };

	if (c == NULL)
		return NULL;
	c->q = calloc(s->cfg.queue_len, sizeof(*c->q));
	if (c->q == NULL) {
		free(c);
		return NULL;
	}
	c->src.kind = SRC_CONN;
	c->watch_src.kind = SRC_WATCH;
	c->watch_fd = -1;
	c->fd = fd;
	c->ssl = ssl;
	c->state = st;
	c->deadline_ms = time_mono_ms() + DERP_HANDSHAKE_TIMEOUT_MS;
	ev.data.ptr = &c->src;
	if (epoll_ctl(s->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
		free(c->q);
		free(c);
		return NULL;
	}
	c->next = s->conns;
	if (s->conns)
		s->conns->prev = c;
	s->conns = c;
	s->nsockets++;
	INC(s, sockets_current);
	return c;
}

static void conn_destroy(struct conn *c)
{
	free(c->partial);
	free(c->wbuf);
	free(c->sent_to);
	free(c->q);
	free(c);
}

/* Tells everyone this client sent to that it is gone, if it was its key's last connection. */
static void announce_gone(struct derp_server *s, struct conn *c)
{
	uint8_t body[KEY_LEN + 1];

	if (table_get(s, c->key) != NULL)
		return;
	memcpy(body, c->key, KEY_LEN);
	body[KEY_LEN] = DERP_PEER_GONE_DISCONNECTED;
	for (unsigned i = 0; i < c->nsent_to; i++) {
		struct conn *d = table_get(s, c->sent_to[i]);

		if (d && d != c)
			(void)send_frame(s, d, DERP_FRAME_PEER_GONE, body, sizeof(body), NULL, 0);
	}
}

static void list_remove(struct conn **head, struct conn *c, size_t off)
{
	for (struct conn **pp = head; *pp;
	     pp = (struct conn **)((uint8_t *)*pp + off)) {
		if (*pp == c) {
			*pp = *(struct conn **)((uint8_t *)c + off);
			return;
		}
	}
}

static void conn_close(struct derp_server *s, struct conn *c)
{
	if (c->dead)
		return;
	if (c->registered) {
		table_del(s, c);
		DEC(s, conns_current);
		announce_gone(s, c);
	}
	if (c->state != ST_ACTIVE && c->state != ST_REPLY && !c->closing)
		INC(s, handshake_failed);
	epoll_ctl(s->epfd, EPOLL_CTL_DEL, c->fd, NULL);
	if (c->ssl) {
		SSL_free(c->ssl);
		c->ssl = NULL;
	}
	if (c->watch_fd >= 0)
		epoll_ctl(s->epfd, EPOLL_CTL_DEL, c->watch_fd, NULL);
	c->watch_fd = -1;
	if (c->release)
		c->release(c->release_ctx);
	else
		close(c->fd);
	c->fd = -1;
	while (c->qcount) {
		free(c->q[c->qhead]);
		c->q[c->qhead] = NULL;
		c->qhead = (c->qhead + 1) % s->cfg.queue_len;
		c->qcount--;
	}
	if (c->prev)
		c->prev->next = c->next;
	else
		s->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	if (c->dirty)
		list_remove(&s->dirty, c, offsetof(struct conn, dnext));
	if (c->ready)
		list_remove(&s->ready, c, offsetof(struct conn, rnext));
	/* forget pointers others hold as a cache */
	for (struct conn *o = s->conns; o && c->state == ST_ACTIVE; o = o->next)
		if (o->last_dst == c)
			o->last_dst = NULL;
	s->nsockets--;
	DEC(s, sockets_current);
	c->dead = true;
	c->in_graveyard = true;
	c->gnext = s->graveyard;
	s->graveyard = c;
}

/* Frees closed connections at the end of a loop turn, so no pointer held
 * during the turn dangles. Those a verifier job still names are freed when
 * its verdict arrives (or by derp_server_free). */
static void reap(struct derp_server *s, bool force)
{
	while (s->graveyard) {
		struct conn *c = s->graveyard;

		s->graveyard = c->gnext;
		c->in_graveyard = false;
		if (!c->verifying || force)
			conn_destroy(c);
	}
}

/* ---- DERP frames from clients ---- */

static void remember_dst(struct conn *c, struct conn *d)
{
	if (c->last_dst == d)
		return;
	c->last_dst = d;
	for (unsigned i = 0; i < c->nsent_to; i++)
		if (memcmp(c->sent_to[i], d->key, KEY_LEN) == 0)
			return;
	if (c->sent_to == NULL) {
		c->sent_to = malloc(SENT_TO_MAX * KEY_LEN);
		if (c->sent_to == NULL)
			return;
	}
	if (c->nsent_to < SENT_TO_MAX)
		memcpy(c->sent_to[c->nsent_to++], d->key, KEY_LEN);
	else	/* forget the oldest */
		memcpy(c->sent_to[random_u32(SENT_TO_MAX)], d->key, KEY_LEN);
}

/*
 * Buffers of connections that relay packets are kept: freeing them whenever
 * they drain (SSL_MODE_RELEASE_BUFFERS, the idle wbuf rule) costs a
 * malloc, page faults and a trim per flush under load. A connection that
 * moved no packet for a tick gives them back (idle ones hold none).
 */
static void conn_heat(struct conn *c)
{
	c->moved = true;
	if (!c->hot) {
		c->hot = true;
		if (c->ssl)
			SSL_clear_mode(c->ssl, SSL_MODE_RELEASE_BUFFERS);
	}
}

static void conn_cool(struct conn *c)
{
	c->hot = false;
	if (c->ssl) {
		SSL_set_mode(c->ssl, SSL_MODE_RELEASE_BUFFERS);
		(void)SSL_free_buffers(c->ssl);	/* refused while data is pending */
	}
	if (c->wlen == 0 && c->wcap > 4096) {
		free(c->wbuf);
		c->wbuf = NULL;
		c->wcap = 0;
	}
}

static void forward(struct derp_server *s, struct conn *c, const uint8_t *p, uint32_t len)
{
	const uint8_t *dkey = p, *pkt = p + KEY_LEN;
	uint32_t plen = len - KEY_LEN;
	struct conn *d;
	struct pkt *qp;

	d = c->last_dst && memcmp(c->last_dst->key, dkey, KEY_LEN) == 0 ?
	    c->last_dst : table_get(s, dkey);
	if (d == NULL) {
		uint8_t body[KEY_LEN + 1];

		INC(s, dropped_unknown_dest);
		if (derp_looks_like_disco(pkt, plen) && log_ratelimit_ok(&c->gone_rl, 1, 3)) {
			memcpy(body, dkey, KEY_LEN);
			body[KEY_LEN] = DERP_PEER_GONE_NOT_HERE;
			(void)send_frame(s, c, DERP_FRAME_PEER_GONE, body, sizeof(body), NULL, 0);
		}
		return;
	}
	/* Nothing queued for d and room in its write buffer: gather the frame
	 * there at once (no allocation, one copy less); the queue holds only
	 * what does not fit. */
	conn_heat(c);
	conn_heat(d);
	if (d->qcount == 0 && d->wlen + DERP_HEADER_LEN + len <= WBUF_FILL &&
	    wbuf_reserve(d, DERP_HEADER_LEN + len) == 0) {
		uint8_t *f = d->wbuf + d->wlen;

		derp_frame_put_header(f, DERP_FRAME_RECV_PACKET, len);
		memcpy(f + DERP_HEADER_LEN, c->key, KEY_LEN);
		memcpy(f + DERP_HEADER_LEN + KEY_LEN, pkt, plen);
		d->wlen += DERP_HEADER_LEN + len;
		goto forwarded;
	}
	qp = malloc(sizeof(*qp) + DERP_HEADER_LEN + len);
	if (qp == NULL) {
		INC(s, dropped_queue_full);
		return;
	}
	qp->len = DERP_HEADER_LEN + len;
	derp_frame_put_header(qp->data, DERP_FRAME_RECV_PACKET, len);
	memcpy(qp->data + DERP_HEADER_LEN, c->key, KEY_LEN);
	memcpy(qp->data + DERP_HEADER_LEN + KEY_LEN, pkt, plen);
	if (d->qcount == s->cfg.queue_len) {	/* drop the oldest */
		free(d->q[d->qhead]);
		d->q[d->qhead] = NULL;
		d->qhead = (d->qhead + 1) % s->cfg.queue_len;
		d->qcount--;
		INC(s, dropped_queue_full);
	}
	d->q[(d->qhead + d->qcount) % s->cfg.queue_len] = qp;
	d->qcount++;
forwarded:
	INC(s, packets_forwarded);
	ADD(s, bytes_forwarded, plen);
	remember_dst(c, d);
	mark_dirty(s, d);
}

/* The verdict cache slot of a key (direct-mapped: keys are random). */
static struct verdict_entry *cache_slot(struct derp_server *s, const uint8_t key[static KEY_LEN])
{
	uint32_t h;

	memcpy(&h, key, sizeof(h));
	return &s->vcache[h % DERP_VERIFY_CACHE];
}

/* 1 admitted, -1 refused, 0 unknown. Caller holds vlock. */
static int cache_get(struct derp_server *s, const uint8_t key[static KEY_LEN], int64_t now)
{
	struct verdict_entry *e = cache_slot(s, key);

	if (e->expires_ms <= now || memcmp(e->key, key, KEY_LEN) != 0)
		return 0;
	return e->verdict == 0 ? 1 : -1;
}

static void admit(struct derp_server *s, struct conn *c);

static void verify_submit(struct derp_server *s, struct conn *c)
{
	int64_t now = time_mono_ms();
	int cached;

	pthread_mutex_lock(&s->vlock);
	if ((cached = cache_get(s, c->key, now)) != 0) {
		pthread_mutex_unlock(&s->vlock);
		if (cached > 0) {
			admit(s, c);
		} else {
			INC(s, admission_refused);
			c->state = ST_REPLY;	/* not a handshake failure */
			conn_close(s, c);
		}
		return;
	}
	if (s->vcount == DERP_VERIFY_QUEUE) {
		pthread_mutex_unlock(&s->vlock);
		INC(s, admission_refused);
		conn_close(s, c);
		return;
	}
	s->vq[(s->vhead + s->vcount) % DERP_VERIFY_QUEUE].c = c;
	memcpy(s->vq[(s->vhead + s->vcount) % DERP_VERIFY_QUEUE].key, c->key, KEY_LEN);
	s->vq[(s->vhead + s->vcount) % DERP_VERIFY_QUEUE].queued_ms = now;
	s->vcount++;
	pthread_cond_signal(&s->vcond);
	pthread_mutex_unlock(&s->vlock);
	c->state = ST_VERIFY;
	c->verifying = true;
	set_interest(s, c, false);
}

static void admit(struct derp_server *s, struct conn *c)
{
	uint8_t info[DERP_NONCE_LEN + DERP_BOX_OVERHEAD + 64];
	int n;

	n = derp_server_info_seal(info, sizeof(info), s->priv, c->key);
	if (n < 0 || send_frame(s, c, DERP_FRAME_SERVER_INFO, info, (size_t)n, NULL, 0) != 0) {
		conn_close(s, c);
		return;
	}
	c->state = ST_ACTIVE;
	c->deadline_ms = 0;
	c->next_keepalive_ms = time_mono_ms() + s->cfg.keepalive_ms +
			       random_u32(5000);
	table_put(s, c);
	INC(s, conns_current);
	INC(s, clients_total);
}

/* A fresh challenge for the ServerKey of c (fixed zeros under
 * derp_server_feed, whose callers cannot read it). */
static void new_challenge(struct derp_server *s, struct conn *c)
{
	if (s->fixed_challenge)
		memset(c->challenge, 0, DERP_CHALLENGE_LEN);
	else
		randombytes_buf(c->challenge, DERP_CHALLENGE_LEN);
}

static void on_client_info(struct derp_server *s, struct conn *c, const uint8_t *p, uint32_t len)
{
	struct derp_client_info ci;

	if (derp_client_info_open(p, len, s->priv, c->key, &ci) != 0) {
		INC(s, frames_bad);
		conn_close(s, c);
		return;
	}
	/* The challenge of this connection's ServerKey: a ClientInfo recorded
	 * elsewhere (a replay on a plain, proxied connection) has another. */
	if (!ci.has_challenge || sodium_memcmp(ci.challenge, c->challenge, DERP_CHALLENGE_LEN) != 0) {
		INC(s, admission_refused);
		if (log_ratelimit_ok(&s->rl, 10, 5))
			log_info("msg=\"derp: ClientInfo without this connection's challenge refused\"");
		conn_close(s, c);
		return;
	}
	if (s->cfg.verify)
		verify_submit(s, c);
	else
		admit(s, c);
}

/* Handles one complete frame; returns false when the connection was closed. */
static bool on_frame(struct derp_server *s, struct conn *c, uint8_t type,
		     const uint8_t *p, uint32_t len)
{
	if (c->state == ST_INFO) {
		if (type != DERP_FRAME_CLIENT_INFO) {
			INC(s, frames_bad);
			conn_close(s, c);
			return false;
		}
		on_client_info(s, c, p, len);
		return !c->dead;
	}
	switch (type) {
	case DERP_FRAME_SEND_PACKET:
		if (len < KEY_LEN) {
			INC(s, frames_bad);
			break;
		}
		forward(s, c, p, len);
		break;
	case DERP_FRAME_PING:
		INC(s, pings);
		if (len < DERP_PING_LEN) {
			INC(s, frames_bad);
			break;
		}
		(void)send_frame(s, c, DERP_FRAME_PONG, p, DERP_PING_LEN, NULL, 0);
		break;
	case DERP_FRAME_NOTE_PREFERRED:
		if (len == 1 && (p[0] != 0) != c->preferred) {
			c->preferred = p[0] != 0;
			if (c->preferred)
				INC(s, home_clients);
		}
		break;
	case DERP_FRAME_CLIENT_INFO:
		INC(s, frames_bad);	/* a second ClientInfo */
		break;
	default:
		break;			/* pong, keepalive, unknown: skipped */
	}
	return true;
}

/* Consumes complete frames; returns bytes consumed, or -1 if closed. */
static ssize_t parse_frames(struct derp_server *s, struct conn *c, const uint8_t *p, size_t n)
{
	size_t off = 0;

	while (n - off >= DERP_HEADER_LEN) {
		uint8_t type;
		uint32_t len;

		if (c->state == ST_VERIFY)	/* hold input until the verdict */
			break;
		if (derp_frame_get_header(p + off, &type, &len, derp_frame_server_limit(p[off])) != 0) {
			INC(s, frames_bad);
			if (log_ratelimit_ok(&s->rl, 10, 3))
				log_debug("msg=\"derp: oversize frame\" type=%u", type);
			conn_close(s, c);
			return -1;
		}
		if (n - off - DERP_HEADER_LEN < len)
			break;
		if (!on_frame(s, c, type, p + off + DERP_HEADER_LEN, len))
			return -1;
		off += DERP_HEADER_LEN + len;
	}
	return (ssize_t)off;
}

/* ---- HTTP (standalone listeners) ---- */

static const char *hdr_value(char *head, const char *name)
{
	size_t nl = strlen(name);

	for (char *line = strstr(head, "\r\n"); line; line = strstr(line, "\r\n")) {
		line += 2;
		if (strncasecmp(line, name, nl) == 0 && line[nl] == ':') {
			char *v = line + nl + 1, *e;

			while (*v == ' ' || *v == '\t')
				v++;
			e = strstr(v, "\r\n");
			if (e)
				*e = 0;	/* head is a private copy */
			return v;
		}
	}
	return NULL;
}

static void http_reply(struct derp_server *s, struct conn *c, const char *status,
		       const char *extra, const char *body)
{
	char head[1024];
	int n;

	n = snprintf(head, sizeof(head),
		     "HTTP/1.1 %s\r\nContent-Length: %zu\r\nConnection: close\r\n%s\r\n",
		     status, body ? strlen(body) : 0, extra ? extra : "");
	if (n < 0 || (size_t)n >= sizeof(head) || send_raw(s, c, head, (size_t)n) != 0 ||
	    (body && send_raw(s, c, body, strlen(body)) != 0)) {
		conn_close(s, c);
		return;
	}
	c->state = ST_REPLY;
	c->closing = true;
}

static bool challenge_ok(const char *ch)
{
	size_t n = strlen(ch);

	if (n == 0 || n > 64)
		return false;
	for (size_t i = 0; i < n; i++) {
		char x = ch[i];

		if (!((x >= 'a' && x <= 'z') || (x >= 'A' && x <= 'Z') || (x >= '0' && x <= '9') ||
		      x == '.' || x == '_' || x == ':' || x == '-'))
			return false;
	}
	return true;
}

static void serve_metrics(struct derp_server *s, struct conn *c)
{
	struct buf b;

	buf_init(&b, 64 * 1024);
	if (derp_server_metrics(s, &b) != 0 || prom_add_help(&b) != 0 || buf_cstr(&b) == NULL) {
		http_reply(s, c, "500 Internal Server Error", NULL, "");
	} else {
		http_reply(s, c, "200 OK", "Content-Type: text/plain; version=0.0.4\r\n",
			   (const char *)b.data);
	}
	buf_cleanup(&b);
}

/* Handles a complete request head in p[0..headlen). */
static void on_http_request(struct derp_server *s, struct conn *c, const uint8_t *p, size_t headlen)
{
	char head[DERP_MAX_HTTP_REQUEST + 1], method[16], path[512];
	char extra[1024];
	const char *v;
	int st;

	memcpy(head, p, headlen);
	head[headlen] = 0;
	INC(s, http_requests);
	if (sscanf(head, "%15s %511s HTTP/1.%*c", method, path) != 2) {
		http_reply(s, c, "400 Bad Request", NULL, "bad request\n");
		return;
	}
	if (strcmp(path, "/generate_204") == 0) {
		extra[0] = 0;
		v = hdr_value(head, "X-Tailscale-Challenge");
		if (v && challenge_ok(v))
			snprintf(extra, sizeof(extra), "X-Tailscale-Response: response %s\r\n", v);
		strncat(extra, "Cache-Control: no-cache, no-store, must-revalidate, no-transform, max-age=0\r\n",
			sizeof(extra) - strlen(extra) - 1);
		http_reply(s, c, "204 No Content", extra, NULL);
		return;
	}
	if (c->plain_http_port) {
		v = hdr_value(head, "Host");
		if (v == NULL || strlen(v) > 200 || strpbrk(v, "\r\n") != NULL) {
			http_reply(s, c, "400 Bad Request", NULL, "missing Host\n");
			return;
		}
		{
			char host[256], *colon;

			str_copy(host, v, sizeof(host));
			if ((colon = strrchr(host, ':')) != NULL && strchr(host, ']') < colon)
				*colon = 0;
			snprintf(extra, sizeof(extra), "Location: https://%s%s\r\n", host,
				 strlen(path) < 200 ? path : "/");
		}
		http_reply(s, c, "302 Found", extra, "");
		return;
	}
	if (strcmp(path, "/derp/probe") == 0 || strcmp(path, "/derp/latency-check") == 0) {
		if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
			http_reply(s, c, "405 Method Not Allowed", NULL, "");
		else
			http_reply(s, c, "200 OK", "Access-Control-Allow-Origin: *\r\n", NULL);
		return;
	}
	if (strcmp(path, "/metrics") == 0) {
		serve_metrics(s, c);
		return;
	}
	if (strcmp(path, "/derp") == 0) {
		char k[KEY_HEX_LEN + 1];
		char resp[512];
		uint8_t sk[DERP_MAGIC_LEN + KEY_LEN + DERP_CHALLENGE_LEN];
		bool fast;
		int n;

		v = hdr_value(head, "Upgrade");
		st = derp_upgrade_check(method, v);
		if (st == 405) {
			http_reply(s, c, "405 Method Not Allowed", NULL, "");
			return;
		}
		if (st != 0) {
			http_reply(s, c, "426 Upgrade Required", NULL,
				   "DERP requires connection upgrade\n");
			return;
		}
		memcpy(head, p, headlen);	/* hdr_value cut the copy */
		head[headlen] = 0;
		v = hdr_value(head, "Derp-Fast-Start");
		fast = v && strcmp(v, "1") == 0;
		(void)hex_encode(k, sizeof(k), s->pub, KEY_LEN);
		n = snprintf(resp, sizeof(resp),
			     "HTTP/1.1 101 Switching Protocols\r\nUpgrade: DERP\r\n"
			     "Connection: Upgrade\r\nDerp-Version: %d\r\nDerp-Public-Key: %s\r\n\r\n",
			     DERP_PROTOCOL_VERSION, k);
		new_challenge(s, c);
		derp_server_key_build(sk, s->pub, c->challenge);
		if ((!fast && send_raw(s, c, resp, (size_t)n) != 0) ||
		    send_frame(s, c, DERP_FRAME_SERVER_KEY, sk, sizeof(sk), NULL, 0) != 0) {
			conn_close(s, c);
			return;
		}
		c->state = ST_INFO;
		return;
	}
	http_reply(s, c, "404 Not Found", NULL, "not found\n");
}

/* Consumes input in any state; returns bytes consumed or -1 if closed. */
static ssize_t process(struct derp_server *s, struct conn *c, const uint8_t *p, size_t n)
{
	size_t off = 0;

	if (c->state == ST_HTTP) {
		const uint8_t *end = memmem(p, n, "\r\n\r\n", 4);

		if (end == NULL) {
			if (n >= DERP_MAX_HTTP_REQUEST) {
				INC(s, frames_bad);
				conn_close(s, c);
				return -1;
			}
			return 0;
		}
		off = (size_t)(end - p) + 4;
		if (off > DERP_MAX_HTTP_REQUEST) {
			conn_close(s, c);
			return -1;
		}
		on_http_request(s, c, p, off);
		if (c->dead)
			return -1;
	}
	if (c->state == ST_REPLY)
		return (ssize_t)n;	/* ignore anything after the request */
	if (c->state == ST_INFO || c->state == ST_ACTIVE) {
		ssize_t r = parse_frames(s, c, p + off, n - off);

		if (r < 0)
			return -1;
		off += (size_t)r;
	}
	return (ssize_t)off;
}

static int keep_partial(struct conn *c, const uint8_t *p, size_t n)
{
	if (n == 0) {
		free(c->partial);
		c->partial = NULL;
		c->plen = c->pcap = 0;
		return 0;
	}
	if (n > c->pcap) {
		uint8_t *np = malloc(n);

		if (np == NULL)
			return ERR_NOMEM;
		free(c->partial);
		c->partial = np;
		c->pcap = n;
	}
	memmove(c->partial, p, n);
	c->plen = n;
	return 0;
}

/* Reads c again this loop turn (epoll does not see what TLS read ahead). */
static void mark_ready(struct derp_server *s, struct conn *c)
{
	if (!c->ready) {
		c->ready = true;
		c->rnext = s->ready;
		s->ready = c;
	}
}

static void conn_readable(struct derp_server *s, struct conn *c)
{
	for (int i = 0; i < READ_BUDGET; i++) {
		size_t have = c->plen;
		ssize_t n, used;

		if (c->state == ST_VERIFY)
			return;
		if (have)
			memcpy(s->scratch, c->partial, have);
		n = io_read(c, s->scratch + have, SCRATCH_LEN - have);
		if (n == -EAGAIN)
			return;
		if (n <= 0) {
			conn_close(s, c);
			return;
		}
		have += (size_t)n;
		used = process(s, c, s->scratch, have);
		if (used < 0)
			return;
		if (keep_partial(c, s->scratch + used, have - (size_t)used) != 0) {
			conn_close(s, c);
			return;
		}
	}
	/* budget spent: come back after the others had their turn */
	mark_ready(s, c);
}

static void conn_handshake(struct derp_server *s, struct conn *c)
{
	int r = SSL_do_handshake(c->ssl);

	if (r == 1) {
		const unsigned char *alpn;
		unsigned int alpn_len;

		/* an ACME CA's TLS-ALPN-01 validation (RFC 8737): the handshake
		 * was all it wanted */
		SSL_get0_alpn_selected(c->ssl, &alpn, &alpn_len);
		if (alpn_len == 10 && memcmp(alpn, "acme-tls/1", 10) == 0) {
			log_info("msg=\"acme: tls-alpn-01 validation handshake\"");
			SSL_shutdown(c->ssl);
			conn_close(s, c);
			return;
		}
		c->state = ST_HTTP;
		conn_readable(s, c);
		return;
	}
	switch (SSL_get_error(c->ssl, r)) {
	case SSL_ERROR_WANT_READ:
	case SSL_ERROR_WANT_WRITE:
		set_events(s, c);
		return;
	default:
		ERR_clear_error();
		conn_close(s, c);
	}
}

static void conn_event(struct derp_server *s, struct conn *c, uint32_t events)
{
	if (c->state == ST_TLS) {
		conn_handshake(s, c);
		return;
	}
	if (c->state == ST_VERIFY) {	/* reading is paused; only hangups arrive */
		if (events & (EPOLLHUP | EPOLLERR))
			conn_close(s, c);
		return;
	}
	if ((events & EPOLLOUT) || c->ssl_read_wants_write)
		mark_dirty(s, c);
	if (events & (EPOLLIN | EPOLLHUP | EPOLLERR))
		conn_readable(s, c);
}

/* ---- listeners, adoption, verifier results, timers ---- */

static void on_accept(struct derp_server *s, int lfd, bool tls)
{
	for (int i = 0; i < 64; i++) {
		int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC), one = 1;
		SSL *ssl = NULL;
		struct conn *c;

		if (fd < 0)
			return;
		INC(s, accepts);
		if (s->nsockets >= s->cfg.max_conns) {
			INC(s, dropped_conn_limit);
			close(fd);
			continue;
		}
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
		if (tls) {
			pthread_mutex_lock(&s->ctx_lock);
			ssl = SSL_new(s->cfg.ssl_ctx);	/* holds its own reference */
			pthread_mutex_unlock(&s->ctx_lock);
			if (ssl == NULL || SSL_set_fd(ssl, fd) != 1) {
				SSL_free(ssl);
				close(fd);
				continue;
			}
			SSL_set_mode(ssl, SSL_MODE_ENABLE_PARTIAL_WRITE |
				     SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_RELEASE_BUFFERS);
			/* one read() for several records, not two per record
			 * (header, body); what it buffers is drained by
			 * conn_readable's loop, not signalled by epoll */
			SSL_set_read_ahead(ssl, 1);
			SSL_set_default_read_buffer_len(ssl, SSL_READ_BUF);
			SSL_set_accept_state(ssl);
		}
		c = conn_new(s, fd, ssl, tls ? ST_TLS : ST_HTTP);
		if (c == NULL) {
			SSL_free(ssl);
			close(fd);
			continue;
		}
		c->plain_http_port = lfd == s->http_fd;
	}
}

static void adopt_release(struct adopt *a)
{
	if (a->release)
		a->release(a->release_ctx);
	else
		close(a->fd);
}

static void on_adopts(struct derp_server *s)
{
	struct adopt batch[ADOPT_MAX];
	uint8_t (*drops)[KEY_LEN];
	unsigned n, ndrops;
	uint64_t v;

	if (read(s->wake_fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
		log_debug("msg=\"derp: wake read failed\"");
	pthread_mutex_lock(&s->adopt_lock);
	n = s->nadopts;
	memcpy(batch, s->adopts, n * sizeof(batch[0]));
	s->nadopts = 0;
	drops = s->drops;	/* taken whole: closing calls out of the relay */
	ndrops = s->ndrops;
	s->drops = NULL;
	s->ndrops = s->dropcap = 0;
	pthread_mutex_unlock(&s->adopt_lock);
	for (unsigned i = 0; i < ndrops; i++) {
		struct conn *c;

		while ((c = table_get(s, drops[i])) != NULL) {
			INC(s, admission_refused);
			conn_close(s, c);	/* registered, so ACTIVE */
		}
	}
	free(drops);
	for (unsigned i = 0; i < n; i++) {
		struct adopt *a = &batch[i];
		uint8_t sk[DERP_MAGIC_LEN + KEY_LEN + DERP_CHALLENGE_LEN];
		struct conn *c = NULL;

		if (s->nsockets < s->cfg.max_conns)
			c = conn_new(s, a->fd, a->ssl, ST_INFO);
		else
			INC(s, dropped_conn_limit);
		if (c == NULL) {
			SSL_free(a->ssl);
			adopt_release(a);
			free(a->data);
			continue;
		}
		c->release = a->release;
		c->release_ctx = a->release_ctx;
		if (a->watch_fd >= 0) {
			/* The proxy in front of fd may never pass the client's
			 * hangup on; the client's own socket shows it. */
			struct epoll_event wev = { .events = EPOLLRDHUP, .data.ptr = &c->watch_src };

			if (epoll_ctl(s->epfd, EPOLL_CTL_ADD, a->watch_fd, &wev) == 0)
				c->watch_fd = a->watch_fd;
		}
		if (a->ssl)
			SSL_set_mode(a->ssl, SSL_MODE_ENABLE_PARTIAL_WRITE |
				     SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
		new_challenge(s, c);
		derp_server_key_build(sk, s->pub, c->challenge);
		if (send_frame(s, c, DERP_FRAME_SERVER_KEY, sk, sizeof(sk), NULL, 0) != 0 ||
		    keep_partial(c, a->data, a->n) != 0) {
			free(a->data);
			conn_close(s, c);
			continue;
		}
		free(a->data);
		if (c->plen) {	/* frames that came with the request */
			uint8_t *tmp = c->partial;
			size_t tl = c->plen;
			ssize_t used;

			c->partial = NULL;
			c->plen = c->pcap = 0;
			used = process(s, c, tmp, tl);
			if (used >= 0 && keep_partial(c, tmp + used, tl - (size_t)used) != 0)
				conn_close(s, c);
			free(tmp);
		}
	}
}

static void on_verdict(struct derp_server *s, struct conn *c, int verdict)
{
	uint8_t *tmp;
	size_t tl;
	ssize_t used;

	c->verifying = false;
	if (c->dead) {
		if (!c->in_graveyard)
			conn_destroy(c);
		return;
	}
	if (verdict != 0) {
		INC(s, admission_refused);
		if (log_ratelimit_ok(&s->rl, 10, 5))
			log_info("msg=\"derp: client refused by admission check\"");
		c->state = ST_REPLY;	/* not counted as a handshake failure */
		conn_close(s, c);
		return;
	}
	admit(s, c);
	if (c->dead)
		return;
	set_interest(s, c, true);
	mark_dirty(s, c);
	if (c->ssl)	/* records TLS read ahead before the pause */
		mark_ready(s, c);
	/* frames the client sent before the verdict */
	tmp = c->partial;
	tl = c->plen;
	if (tl == 0)
		return;
	c->partial = NULL;
	c->plen = c->pcap = 0;
	used = process(s, c, tmp, tl);
	if (used >= 0 && keep_partial(c, tmp + used, tl - (size_t)used) != 0)
		conn_close(s, c);
	free(tmp);
}

static void on_verdicts(struct derp_server *s)
{
	struct verify_result res[64];
	ssize_t n = read(s->vpipe[0], res, sizeof(res));

	for (ssize_t i = 0; n > 0 && i < n / (ssize_t)sizeof(res[0]); i++)
		on_verdict(s, res[i].c, res[i].verdict);
}

/* At shutdown: verdicts written but not read, then jobs never run. */
static void on_verdicts_drain(struct derp_server *s)
{
	struct verify_result res;

	while (read(s->vpipe[0], &res, sizeof(res)) == sizeof(res)) {
		res.c->verifying = false;
		if (res.c->dead && !res.c->in_graveyard)
			conn_destroy(res.c);
	}
	while (s->vcount) {
		struct conn *c = s->vq[s->vhead].c;

		s->vhead = (s->vhead + 1) % DERP_VERIFY_QUEUE;
		s->vcount--;
		c->verifying = false;
		if (c->dead && !c->in_graveyard)
			conn_destroy(c);
	}
}

/*
 * The client's socket behind a proxy hung up. What it sent before may still
 * be on its way through the proxy, so the connection lives on for a grace
 * period (closed by on_tick) instead of losing its last frames.
 */
static void on_hangup(struct derp_server *s, struct conn *c)
{
	epoll_ctl(s->epfd, EPOLL_CTL_DEL, c->watch_fd, NULL);
	c->watch_fd = -1;
	c->hangup_close_ms = time_mono_ms() + HANGUP_GRACE_MS;
}

static void on_tick(struct derp_server *s)
{
	int64_t now = time_mono_ms();
	struct conn *c, *next;

	for (c = s->conns; c; c = next) {
		next = c->next;
		if (c->hangup_close_ms && now >= c->hangup_close_ms) {
			conn_close(s, c);
		} else if (c->state == ST_ACTIVE) {
			if (now >= c->next_keepalive_ms) {
				(void)send_frame(s, c, DERP_FRAME_KEEP_ALIVE, NULL, 0, NULL, 0);
				c->next_keepalive_ms = now + s->cfg.keepalive_ms;
			}
			if (c->hot && !c->moved)
				conn_cool(c);
			c->moved = false;
		} else if (c->state != ST_VERIFY && c->deadline_ms && now > c->deadline_ms) {
			conn_close(s, c);
		}
	}
}

static void flush_dirty(struct derp_server *s)
{
	while (s->dirty) {
		struct conn *c = s->dirty;

		s->dirty = c->dnext;
		c->dirty = false;
		conn_flush(s, c);
	}
}

static void *loop_main(void *arg)
{
	struct derp_server *s = arg;
	struct epoll_event evs[EV_BATCH];
	int64_t next_tick = time_mono_ms() + 1000;

	while (!atomic_load(&s->stop)) {
		int timeout = s->ready ? 0 : 1000;
		int n = epoll_wait(s->epfd, evs, EV_BATCH, timeout);

		for (int i = 0; i < n; i++) {
			struct ev_src *src = evs[i].data.ptr;

			switch (src->kind) {
			case SRC_HTTPS:
				on_accept(s, s->https_fd, !s->cfg.plain_derp);
				break;
			case SRC_HTTP:
				on_accept(s, s->http_fd, false);
				break;
			case SRC_WAKE:
				on_adopts(s);
				break;
			case SRC_VERIFY:
				on_verdicts(s);
				break;
			case SRC_CONN: {
				struct conn *c = (struct conn *)src;

				if (!c->dead)
					conn_event(s, c, evs[i].events);
				break;
			}
			case SRC_WATCH: {
				struct conn *c = (struct conn *)((uint8_t *)src -
						offsetof(struct conn, watch_src));

				if (!c->dead)
					on_hangup(s, c);
				break;
			}
			}
		}
		if (s->ready) {
			struct conn *r = s->ready;

			s->ready = NULL;
			while (r) {
				struct conn *nx = r->rnext;

				r->ready = false;
				conn_readable(s, r);
				r = nx;
			}
		}
		flush_dirty(s);
		if (time_mono_ms() >= next_tick) {
			on_tick(s);
			flush_dirty(s);
			next_tick = time_mono_ms() + 1000;
		}
		reap(s, false);
	}
	return NULL;
}

static void *verify_main(void *arg)
{
	struct derp_server *s = arg;

	for (;;) {
		struct verify_job job;
		struct verify_result res;

		pthread_mutex_lock(&s->vlock);
		while (s->vcount == 0 && !atomic_load(&s->stop))
			pthread_cond_wait(&s->vcond, &s->vlock);
		if (atomic_load(&s->stop)) {
			pthread_mutex_unlock(&s->vlock);
			return NULL;
		}
		job = s->vq[s->vhead];
		s->vhead = (s->vhead + 1) % DERP_VERIFY_QUEUE;
		s->vcount--;
		pthread_mutex_unlock(&s->vlock);
		res.c = job.c;
		if (time_mono_ms() - job.queued_ms > DERP_VERIFY_WAIT_MS) {
			/* Waited too long (a flood of checks): refuse without
			 * asking; the client retries. */
			res.verdict = ERR_TIMEOUT;
		} else {
			int64_t now;
			int cached;

			pthread_mutex_lock(&s->vlock);
			cached = cache_get(s, job.key, time_mono_ms());
			pthread_mutex_unlock(&s->vlock);
			if (cached != 0) {
				res.verdict = cached > 0 ? 0 : ERR_FORBIDDEN;
			} else {
				struct verdict_entry *e;

				res.verdict = s->cfg.verify(s->cfg.verify_ctx, job.key);
				now = time_mono_ms();
				pthread_mutex_lock(&s->vlock);
				e = cache_slot(s, job.key);
				memcpy(e->key, job.key, KEY_LEN);
				e->verdict = res.verdict;
				e->expires_ms = now + (res.verdict == 0 ? DERP_VERIFY_ALLOW_TTL_MS :
				    DERP_VERIFY_DENY_TTL_MS);
				pthread_mutex_unlock(&s->vlock);
			}
		}
		if (write(s->vpipe[1], &res, sizeof(res)) != sizeof(res))
			log_error("msg=\"derp: verdict pipe write failed\"");
	}
}

/* ---- public API ---- */

static SSL_CTX *tls_ctx_load(const char *cert, const char *key)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());

	if (ctx == NULL)
		return NULL;
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1 ||
	    SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1 ||
	    SSL_CTX_check_private_key(ctx) != 1) {
		char msg[256];

		ERR_error_string_n(ERR_get_error(), msg, sizeof(msg));
		log_error("msg=\"derp: cannot load TLS certificate\" cert=%s err=\"%s\"", cert, msg);
		ERR_clear_error();
		SSL_CTX_free(ctx);
		return NULL;
	}
	return ctx;
}

int derp_server_reload_cert(struct derp_server *s, const char *cert, const char *key)
{
	SSL_CTX *ctx, *old;

	if (s->own_ctx == NULL)
		return -1;	/* plain, or a borrowed context */
	if ((ctx = tls_ctx_load(cert, key)) == NULL)
		return -1;
	pthread_mutex_lock(&s->ctx_lock);
	old = s->own_ctx;
	s->own_ctx = s->cfg.ssl_ctx = ctx;
	pthread_mutex_unlock(&s->ctx_lock);
	SSL_CTX_free(old);	/* open connections keep it alive through their SSL */
	return 0;
}

struct derp_server *derp_server_new(const struct derp_server_config *cfg)
{
	struct derp_server *s;
	size_t tsize = 1;

	if (cfg->https_addr && !cfg->ssl_ctx && !cfg->plain_derp && !(cfg->tls_cert && cfg->tls_key))
		return NULL;
	s = calloc(1, sizeof(*s));
	if (s == NULL)
		return NULL;
	s->cfg = *cfg;
	s->cfg.tls_cert = s->cfg.tls_key = NULL;
	if (cfg->https_addr && !cfg->ssl_ctx && !cfg->plain_derp) {
		if (cfg->tls_cert_later && access(cfg->tls_cert, F_OK) != 0) {
			if ((s->own_ctx = SSL_CTX_new(TLS_server_method())) != NULL)
				log_info("msg=\"derp: no certificate yet; handshakes fail until "
				    "it is loaded\"");
		} else {
			s->own_ctx = tls_ctx_load(cfg->tls_cert, cfg->tls_key);
		}
		if (s->own_ctx == NULL) {
			free(s);
			return NULL;
		}
		s->cfg.ssl_ctx = s->own_ctx;
	}
	if (s->cfg.max_conns == 0)
		s->cfg.max_conns = DERP_DEFAULT_MAX_CONNS;
	if (s->cfg.queue_len == 0)
		s->cfg.queue_len = DERP_DEFAULT_QUEUE_LEN;
	if (s->cfg.keepalive_ms == 0)
		s->cfg.keepalive_ms = DERP_DEFAULT_KEEPALIVE_MS;
	s->epfd = s->https_fd = s->http_fd = s->wake_fd = -1;
	s->vpipe[0] = s->vpipe[1] = -1;
	if (cfg->private_key)
		memcpy(s->priv, cfg->private_key, KEY_LEN);
	else
		randombytes_buf(s->priv, KEY_LEN);
	crypto_scalarmult_base(s->pub, s->priv);
	s->cfg.private_key = NULL;
	s->https_addr = cfg->https_addr ? strdup(cfg->https_addr) : NULL;
	s->http_addr = cfg->http_addr ? strdup(cfg->http_addr) : NULL;
	s->cfg.https_addr = s->https_addr;
	s->cfg.http_addr = s->http_addr;
	while (tsize < 2 * (size_t)s->cfg.max_conns)
		tsize *= 2;
	s->table = calloc(tsize, sizeof(*s->table));
	s->table_mask = tsize - 1;
	s->scratch = malloc(SCRATCH_LEN);
	pthread_mutex_init(&s->adopt_lock, NULL);
	pthread_mutex_init(&s->vlock, NULL);
	pthread_mutex_init(&s->ctx_lock, NULL);
	pthread_cond_init(&s->vcond, NULL);
	s->https_src.kind = SRC_HTTPS;
	s->http_src.kind = SRC_HTTP;
	s->wake_src.kind = SRC_WAKE;
	s->verify_src.kind = SRC_VERIFY;
	if (s->table == NULL || s->scratch == NULL ||
	    (cfg->https_addr && !s->https_addr) || (cfg->http_addr && !s->http_addr)) {
		derp_server_free(s);
		return NULL;
	}
	return s;
}

static int add_fd(struct derp_server *s, int fd, struct ev_src *src)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = src };

	return epoll_ctl(s->epfd, EPOLL_CTL_ADD, fd, &ev) == 0 ? 0 : ERR_IO;
}

int derp_server_start(struct derp_server *s)
{
	int r, nverify;

	if (s->running)
		return ERR_INVALID;
	if (s->cfg.max_conns > 1024)
		relay_raise_nofile();
	s->epfd = epoll_create1(EPOLL_CLOEXEC);
	s->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (s->epfd < 0 || s->wake_fd < 0 || pipe2(s->vpipe, O_CLOEXEC) < 0)
		return ERR_IO;
	if ((r = relay_set_nonblock(s->vpipe[0])) != 0)
		return r;
	if (s->https_addr) {
		if ((r = relay_tcp_listen(s->https_addr, 4096)) < 0)
			return r;
		s->https_fd = r;
		s->https_port = relay_local_port(r);
		if ((r = add_fd(s, s->https_fd, &s->https_src)) != 0)
			return r;
		log_info("msg=\"derp: listening\" addr=%s port=%u tls=%s", s->https_addr,
			 s->https_port, s->cfg.plain_derp ? "no" : "yes");
	}
	if (s->http_addr) {
		if ((r = relay_tcp_listen(s->http_addr, 256)) < 0)
			return r;
		s->http_fd = r;
		s->http_port = relay_local_port(r);
		if ((r = add_fd(s, s->http_fd, &s->http_src)) != 0)
			return r;
		log_info("msg=\"derp: http listening\" addr=%s port=%u", s->http_addr, s->http_port);
	}
	if ((r = add_fd(s, s->wake_fd, &s->wake_src)) != 0 ||
	    (r = add_fd(s, s->vpipe[0], &s->verify_src)) != 0)
		return r;
	if (pthread_create(&s->loop_thread, NULL, loop_main, s) != 0)
		return ERR_INTERNAL;
	for (nverify = 0; s->cfg.verify && nverify < DERP_VERIFY_THREADS; nverify++)
		if (pthread_create(&s->verify_threads[nverify], NULL, verify_main, s) != 0)
			break;
	if (s->cfg.verify && nverify < DERP_VERIFY_THREADS) {
		uint64_t one = 1;

		atomic_store(&s->stop, true);
		if (write(s->wake_fd, &one, sizeof(one)) < 0)
			log_debug("msg=\"derp: wake write failed\"");
		pthread_mutex_lock(&s->vlock);
		pthread_cond_broadcast(&s->vcond);
		pthread_mutex_unlock(&s->vlock);
		for (int i = 0; i < nverify; i++)
			pthread_join(s->verify_threads[i], NULL);
		pthread_join(s->loop_thread, NULL);
		return ERR_INTERNAL;
	}
	s->running = true;
	return 0;
}

void derp_server_public_key(const struct derp_server *s, uint8_t out[static KEY_LEN])
{
	memcpy(out, s->pub, KEY_LEN);
}

uint16_t derp_server_https_port(const struct derp_server *s) { return s->https_port; }
uint16_t derp_server_http_port(const struct derp_server *s) { return s->http_port; }

static int adopt(struct derp_server *s, struct adopt a, const void *already_read, size_t n)
{
	uint64_t one = 1;
	int r = 0;

	if (!s->running) {
		r = ERR_UNAVAILABLE;
		goto fail;
	}
	if (n > DERP_MAX_CLIENT_INFO + DERP_HEADER_LEN) {
		r = ERR_TOO_LARGE;
		goto fail;
	}
	if (n && (a.data = malloc(n)) == NULL) {
		r = ERR_NOMEM;
		goto fail;
	}
	if (n)
		memcpy(a.data, already_read, n);
	a.n = n;
	if (relay_set_nonblock(a.fd) != 0) {
		r = ERR_IO;
		goto fail;
	}
	pthread_mutex_lock(&s->adopt_lock);
	if (s->nadopts == ADOPT_MAX) {
		pthread_mutex_unlock(&s->adopt_lock);
		r = ERR_EXHAUSTED;
		goto fail;
	}
	s->adopts[s->nadopts++] = a;
	pthread_mutex_unlock(&s->adopt_lock);
	if (write(s->wake_fd, &one, sizeof(one)) < 0)
		log_debug("msg=\"derp: wake write failed\"");
	return 0;
fail:
	free(a.data);
	SSL_free(a.ssl);
	adopt_release(&a);
	return r;
}

int derp_server_drop_key(struct derp_server *s, const uint8_t key[static KEY_LEN])
{
	uint64_t one = 1;
	int r = 0;

	pthread_mutex_lock(&s->adopt_lock);
	if (s->ndrops == s->dropcap) {
		unsigned ncap = s->dropcap ? s->dropcap * 2 : 16;
		void *p = ncap <= 4096 ? realloc(s->drops, ncap * sizeof(*s->drops)) : NULL;

		if (p == NULL) {
			pthread_mutex_unlock(&s->adopt_lock);
			return ERR_EXHAUSTED;
		}
		s->drops = p;
		s->dropcap = ncap;
	}
	memcpy(s->drops[s->ndrops++], key, KEY_LEN);
	pthread_mutex_unlock(&s->adopt_lock);
	/* A cached admission must not bring the key back. */
	pthread_mutex_lock(&s->vlock);
	{
		struct verdict_entry *e = cache_slot(s, key);

		if (memcmp(e->key, key, KEY_LEN) == 0)
			e->expires_ms = 0;
	}
	pthread_mutex_unlock(&s->vlock);
	if (s->running && write(s->wake_fd, &one, sizeof(one)) < 0)
		log_debug("msg=\"derp: wake write failed\"");
	return r;
}

int derp_server_adopt_fd(struct derp_server *s, int fd, SSL *ssl, const void *already_read, size_t n)
{
	return adopt(s, (struct adopt){ .fd = fd, .ssl = ssl, .watch_fd = -1 }, already_read, n);
}

int derp_server_adopt_borrowed(struct derp_server *s, int fd, int watch_fd,
			       void (*release)(void *ctx), void *release_ctx,
			       const void *already_read, size_t n)
{
	return adopt(s, (struct adopt){ .fd = fd, .release = release, .release_ctx = release_ctx,
					.watch_fd = watch_fd }, already_read, n);
}

int derp_server_feed(struct derp_server *s, const uint8_t *p, size_t n, const size_t *cuts,
		     size_t ncuts)
{
	int sv[2];
	struct conn *c;
	size_t off = 0;

	if (s->running)
		return ERR_INVALID;
	s->fixed_challenge = true;
	if (s->epfd < 0 && (s->epfd = epoll_create1(EPOLL_CLOEXEC)) < 0)
		return ERR_IO;
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) != 0)
		return ERR_IO;
	if ((c = conn_new(s, sv[0], NULL, ST_HTTP)) == NULL) {
		close(sv[0]);
		close(sv[1]);
		return ERR_NOMEM;
	}
	/* The bytes arrive in the given pieces, as reads would return them:
	 * what a piece leaves unparsed waits for the next one. */
	for (size_t i = 0; i <= ncuts && !c->dead; i++) {
		size_t end = i < ncuts && cuts[i] < n ? cuts[i] : n;
		uint8_t *buf;
		size_t bl;
		ssize_t used;

		if (end < off)
			continue;
		bl = c->plen + (end - off);
		if ((buf = malloc(bl ? bl : 1)) == NULL)
			break;
		memcpy(buf, c->partial ? c->partial : (const uint8_t *)"", c->plen);
		memcpy(buf + c->plen, p + off, end - off);
		off = end;
		used = process(s, c, buf, bl);
		if (used >= 0 && !c->dead && keep_partial(c, buf + used, bl - (size_t)used) != 0)
			conn_close(s, c);
		free(buf);
		/* Drain what the server wrote, so that it never blocks. */
		{
			uint8_t sink[4096];

			while (read(sv[1], sink, sizeof(sink)) > 0)
				;
		}
		if (c->state == ST_VERIFY)
			break;	/* the verifier thread is not running */
	}
	if (!c->dead)
		conn_close(s, c);
	if (c->verifying) {
		c->verifying = false;
		if (!c->in_graveyard)
			conn_destroy(c);
	}
	reap(s, true);
	/* a verify job left queued names a connection now gone */
	pthread_mutex_lock(&s->vlock);
	s->vcount = 0;
	pthread_mutex_unlock(&s->vlock);
	close(sv[1]);
	return 0;
}

void derp_server_stats(const struct derp_server *s, struct derp_server_stats *out)
{
	uint64_t *o = (uint64_t *)out;

	for (size_t i = 0; i < ARRAY_SIZE(s->st.v); i++)
		o[i] = atomic_load_explicit(&((struct derp_server *)s)->st.v[i], memory_order_relaxed);
}

int derp_server_metrics(const struct derp_server *s, struct buf *out)
{
	struct derp_server_stats t;
	int r;

	derp_server_stats(s, &t);
#define U(x) ((unsigned long long)(x))
	r = buf_printf(out,
		"# TYPE wiremesh_derp_clients gauge\nwiremesh_derp_clients %llu\n"
		"# TYPE wiremesh_derp_sockets gauge\nwiremesh_derp_sockets %llu\n"
		"# TYPE wiremesh_derp_home_clients_total counter\nwiremesh_derp_home_clients_total %llu\n"
		"# TYPE wiremesh_derp_accepts_total counter\nwiremesh_derp_accepts_total %llu\n"
		"# TYPE wiremesh_derp_clients_total counter\nwiremesh_derp_clients_total %llu\n"
		"# TYPE wiremesh_derp_packets_forwarded_total counter\nwiremesh_derp_packets_forwarded_total %llu\n"
		"# TYPE wiremesh_derp_bytes_forwarded_total counter\nwiremesh_derp_bytes_forwarded_total %llu\n"
		"# TYPE wiremesh_derp_packets_dropped_total counter\n"
		"wiremesh_derp_packets_dropped_total{reason=\"unknown_dest\"} %llu\n"
		"wiremesh_derp_packets_dropped_total{reason=\"queue_full\"} %llu\n"
		"# TYPE wiremesh_derp_conns_refused_total counter\n"
		"wiremesh_derp_conns_refused_total{reason=\"limit\"} %llu\n"
		"wiremesh_derp_conns_refused_total{reason=\"admission\"} %llu\n"
		"# TYPE wiremesh_derp_frames_bad_total counter\nwiremesh_derp_frames_bad_total %llu\n"
		"# TYPE wiremesh_derp_handshakes_failed_total counter\nwiremesh_derp_handshakes_failed_total %llu\n"
		"# TYPE wiremesh_derp_http_requests_total counter\nwiremesh_derp_http_requests_total %llu\n"
		"# TYPE wiremesh_derp_pings_total counter\nwiremesh_derp_pings_total %llu\n",
		U(t.conns_current), U(t.sockets_current), U(t.home_clients), U(t.accepts),
		U(t.clients_total), U(t.packets_forwarded), U(t.bytes_forwarded),
		U(t.dropped_unknown_dest), U(t.dropped_queue_full), U(t.dropped_conn_limit),
		U(t.admission_refused), U(t.frames_bad), U(t.handshake_failed),
		U(t.http_requests), U(t.pings));
#undef U
	if (r == 0 && s->cfg.metrics_extra)
		r = s->cfg.metrics_extra(s->cfg.metrics_ctx, out);
	return r;
}

void derp_server_free(struct derp_server *s)
{
	if (s == NULL)
		return;
	if (s->running) {
		uint64_t one = 1;

		atomic_store(&s->stop, true);
		if (write(s->wake_fd, &one, sizeof(one)) < 0)
			log_debug("msg=\"derp: wake write failed\"");
		pthread_join(s->loop_thread, NULL);
		if (s->cfg.verify) {
			pthread_mutex_lock(&s->vlock);
			pthread_cond_broadcast(&s->vcond);
			pthread_mutex_unlock(&s->vlock);
			for (int i = 0; i < DERP_VERIFY_THREADS; i++)
				pthread_join(s->verify_threads[i], NULL);
		}
		/* verdicts already written, then jobs never run */
		on_verdicts_drain(s);
		while (s->conns)
			conn_close(s, s->conns);
		reap(s, true);
		for (unsigned i = 0; i < s->nadopts; i++) {
			SSL_free(s->adopts[i].ssl);
			adopt_release(&s->adopts[i]);
			free(s->adopts[i].data);
		}
	}
	if (s->epfd >= 0)
		close(s->epfd);
	if (s->https_fd >= 0)
		close(s->https_fd);
	if (s->http_fd >= 0)
		close(s->http_fd);
	if (s->wake_fd >= 0)
		close(s->wake_fd);
	if (s->vpipe[0] >= 0)
		close(s->vpipe[0]);
	if (s->vpipe[1] >= 0)
		close(s->vpipe[1]);
	pthread_mutex_destroy(&s->adopt_lock);
	pthread_mutex_destroy(&s->vlock);
	pthread_mutex_destroy(&s->ctx_lock);
	pthread_cond_destroy(&s->vcond);
	sodium_memzero(s->priv, sizeof(s->priv));
	SSL_CTX_free(s->own_ctx);
	free(s->drops);
	free(s->table);
	free(s->scratch);
	free(s->https_addr);
	free(s->http_addr);
	free(s);
}
