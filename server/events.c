// SPDX-License-Identifier: MIT
/*
 * Server-Sent Events for the admin console (see events.h).
 *
 * Threads and locks: the timer thread (events_tick) bumps `gen` and wakes
 * the streams; HTTP threads read (sub_read) and close (sub_close) them. One
 * mutex, ev->lock, guards the subscriber list and the figures; it is taken
 * before a stream's own lock (inside http_stream_wake) and never the other
 * way round, since http.c calls read() and close() without its locks held.
 * A subscriber leaves the list in close(), so a wake never reaches a freed
 * stream.
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/util.h"
#include "server/events.h"
#include "server/mapper.h"
#include "server/policy_api.h"
#include "server/server.h"
#include "server/session.h"

struct figures {
	uint64_t version;
	size_t nodes, online;
	char policy_etag[48];
};

struct sub {
	struct sub *prev, *next;
	struct events *ev;
	struct server *s;
	struct http_stream *hs;
	struct session_auth auth;
	uint64_t seen_gen;
	int64_t next_ping_ms;
	bool hello_sent;
};

struct events {
	pthread_mutex_t lock;
	struct sub *subs;
	size_t nsubs;
	uint64_t gen;		/* bumped at every noticed change */
	struct figures last;	/* what the last tick saw */
	int64_t next_ping_ms;
};

int
events_new(struct events **out)
{
	struct events *ev = calloc(1, sizeof(*ev));

	*out = NULL;
	if (ev == NULL)
		return ERR_NOMEM;
	pthread_mutex_init(&ev->lock, NULL);
	*out = ev;
	return 0;
}

void
events_free(struct events *ev)
{
	if (ev == NULL)
		return;
	pthread_mutex_destroy(&ev->lock);
	free(ev);
}

static void
sub_attach(void *ctx, struct http_stream *hs)
{
	struct sub *u = ctx;

	pthread_mutex_lock(&u->ev->lock);
	u->hs = hs;
	pthread_mutex_unlock(&u->ev->lock);
}

static ssize_t
sub_read(void *ctx, char *buf, size_t max)
{
	struct sub *u = ctx;
	struct events *ev = u->ev;
	int64_t now = time_mono_ms();
	bool change, ping;
	int n = 0;

	pthread_mutex_lock(&ev->lock);
	change = !u->hello_sent || u->seen_gen != ev->gen;
	ping = now >= u->next_ping_ms;
	pthread_mutex_unlock(&ev->lock);
	if (!change && !ping)
		return 0;
	/* The session may have ended (sign-out, expiry, key revoked). */
	if (!session_live(u->s, &u->auth))
		return -1;
	pthread_mutex_lock(&ev->lock);
	if (!u->hello_sent || u->seen_gen != ev->gen) {
		/* The ETag is a quoted string of hex digits already. */
		n = snprintf(buf, max, "%sevent: %s\ndata: {\"version\":%" PRIu64 ",\"nodes\":%zu,"
		    "\"online\":%zu,\"policy_etag\":%s}\n\n",
		    u->hello_sent ? "" : "retry: 2000\n", u->hello_sent ? "change" : "hello",
		    ev->last.version, ev->last.nodes, ev->last.online,
		    ev->last.policy_etag[0] ? ev->last.policy_etag : "null");
		u->hello_sent = true;
		u->seen_gen = ev->gen;
	} else {
		n = snprintf(buf, max, ": keepalive\n\n");
	}
	u->next_ping_ms = now + EVENTS_KEEPALIVE_S * 1000;
	pthread_mutex_unlock(&ev->lock);
	return n > 0 && (size_t)n < max ? n : -1;
}

static void
sub_close(void *ctx)
{
	struct sub *u = ctx;
	struct events *ev = u->ev;

	pthread_mutex_lock(&ev->lock);
	if (u->prev)
		u->prev->next = u->next;
	else
		ev->subs = u->next;
	if (u->next)
		u->next->prev = u->prev;
	__atomic_fetch_sub(&ev->nsubs, 1, __ATOMIC_RELAXED);
	pthread_mutex_unlock(&ev->lock);
	free(u);
}

static const struct http_stream_ops sub_ops = {
	.attach = sub_attach,
	.read = sub_read,
	.close = sub_close,
};

/* Reads the figures the events carry, without ev->lock (the policy lock
 * may be held for a while by a compilation). */
static void
sample(struct server *s, struct figures *f)
{
	struct mapper_stats st;

	mapper_stats(s->mapper, &st);
	f->version = st.version;
	f->nodes = st.nodes;
	f->online = st.online_nodes;
	policy_state_etag(s, f->policy_etag);
}

void
events_handle(struct server *s, struct http_request *req, struct http_response *resp,
	      const struct session_auth *a)
{
	struct events *ev = s->events;
	struct figures f;
	bool sampled;
	struct sub *u;

	if (strcmp(req->method, "GET") != 0) {
		http_problem(resp, 405, NULL, "%s is not supported on %s", req->method, req->path);
		return;
	}
	if ((u = calloc(1, sizeof(*u))) == NULL) {
		http_problem(resp, 500, NULL, "out of memory");
		return;
	}
	u->ev = ev;
	u->s = s;
	u->auth = *a;
	sampled = __atomic_load_n(&ev->nsubs, __ATOMIC_RELAXED) == 0;
	if (sampled)
		sample(s, &f);	/* fresh figures for the hello */
	pthread_mutex_lock(&ev->lock);
	if (sampled && ev->nsubs == 0)
		ev->last = f;
	if (ev->nsubs >= EVENTS_MAX_STREAMS) {
		pthread_mutex_unlock(&ev->lock);
		free(u);
		http_problem(resp, 503, NULL, "too many event streams open (%d)", EVENTS_MAX_STREAMS);
		return;
	}
	u->next = ev->subs;
	if (ev->subs)
		ev->subs->prev = u;
	ev->subs = u;
	__atomic_fetch_add(&ev->nsubs, 1, __ATOMIC_RELAXED);
	u->seen_gen = ev->gen;
	u->next_ping_ms = time_mono_ms() + EVENTS_KEEPALIVE_S * 1000;
	pthread_mutex_unlock(&ev->lock);
	resp->status = 200;
	resp->content_type = "text/event-stream";
	if (http_add_header(resp, "Cache-Control", "no-store") != 0)
		log_debug("msg=\"events: header dropped\"");
	resp->stream_ops = &sub_ops;
	resp->stream_ctx = u;
}

void
events_tick(struct server *s)
{
	struct events *ev = s->events;
	int64_t now = time_mono_ms();
	struct figures f;
	bool wake;

	if (ev == NULL || __atomic_load_n(&ev->nsubs, __ATOMIC_RELAXED) == 0)
		return;
	sample(s, &f);
	pthread_mutex_lock(&ev->lock);
	wake = f.version != ev->last.version || f.nodes != ev->last.nodes ||
	    f.online != ev->last.online || strcmp(f.policy_etag, ev->last.policy_etag) != 0;
	ev->last = f;
	if (wake)
		ev->gen++;
	if (now >= ev->next_ping_ms) {
		wake = true;	/* keepalives, and session checks */
		ev->next_ping_ms = now + 1000;
	}
	for (struct sub *u = ev->subs; wake && u; u = u->next)
		if (u->hs)
			http_stream_wake(u->hs);
	pthread_mutex_unlock(&ev->lock);
}
