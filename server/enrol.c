// SPDX-License-Identifier: MIT
/*
 * Interactive enrolment: the table of registrations waiting for a person,
 * the long-polls of their agents, the register page, and the two ways a
 * registration completes (an OpenID Connect login, an admin's approval).
 *
 * An entry moves PENDING -> BUSY (a completion is writing the node) ->
 * DONE or FAILED; a PENDING entry whose time ran out becomes EXPIRED. DONE,
 * FAILED and EXPIRED entries stay an hour as tombstones so that the page
 * and a late long-poll can say what happened, then are freed.
 *
 * Replicas on PostgreSQL share registrations through the store (migration
 * 0011): each one is also a row, a completion claims the row (one replica
 * wins), and a replica that meets an id it does not hold (an admin's
 * approval, the register page, an agent's long-poll after a failover)
 * adopts the row into its table. The replica holding a long-poll reads the
 * rows that ended once a second (poll_shared). The table in memory keeps
 * the waiters and the per-address limit, which is each replica's own.
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/jsonx.h"
#include "common/log.h"
#include "common/util.h"
#include "server/enrol.h"
#include "server/html.h"
#include "server/nodeview.h"
#include "server/server.h"

enum { TOMBSTONE_S = 3600, POLL_MS = 1000, PURGE_S = 60 };

enum state { E_PENDING, E_BUSY, E_DONE, E_FAILED, E_EXPIRED };

struct entry {
	char id[ENROL_ID_LEN + 1];
	char addr[64];		/* the client address it came from, without the port */
	uint8_t mkey[KEY_LEN];
	struct control_reg reg;
	int64_t created_s;
	int64_t expires_s;
	int64_t ended_s;
	enum state state;
	char error[256];
	char *result;		/* the "done" answer, JSON text */
};

struct waiter {
	struct enrol *e;
	struct waiter *prev, *next;	/* in e->waiters while unanswered */
	bool linked;
	char id[ENROL_ID_LEN + 1];
	struct http_stream *hs;
	int64_t deadline_ms;
	char *out;			/* the answer once known */
	size_t len, off;
};

struct enrol {
	pthread_mutex_t mu;
	struct entry *ents[ENROL_MAX];
	size_t nwaiters;
	struct waiter *waiters;
	/* shared: the timer thread's last read of ended rows, and purge */
	int64_t polled_ms, polled_s, purged_s;
};

static bool
shared(const struct server *s)
{
	return s->replica != NULL;
}

static const char *const state_name[] = { "pending", "pending", "done", "failed", "expired" };

int
enrol_new(struct enrol **out)
{
	struct enrol *e = calloc(1, sizeof(*e));

	*out = NULL;
	if (e == NULL)
		return ERR_NOMEM;
	pthread_mutex_init(&e->mu, NULL);
	*out = e;
	return 0;
}

static void
entry_free(struct entry *en)
{
	if (en == NULL)
		return;
	free(en->result);
	wipe(en, sizeof(*en));
	free(en);
}

void
enrol_free(struct enrol *e)
{
	if (e == NULL)
		return;
	/* The HTTP layer has stopped: every stream was closed before this. */
	for (size_t i = 0; i < ENROL_MAX; i++)
		entry_free(e->ents[i]);
	pthread_mutex_destroy(&e->mu);
	free(e);
}

/* ---- the table (mu held) ---- */

static struct entry *
find_locked(struct enrol *e, const char *id)
{
	for (size_t i = 0; i < ENROL_MAX; i++)
		if (e->ents[i] && strcmp(e->ents[i]->id, id) == 0)
			return e->ents[i];
	return NULL;
}

static bool
valid_id(const char *id)
{
	return id && strlen(id) == ENROL_ID_LEN &&
	    strspn(id, "0123456789abcdef") == ENROL_ID_LEN;
}

/* ---- rows of the store (shared) ---- */

static void
reg_from_row(struct control_reg *r, const struct store_reg *g)
{
	memset(r, 0, sizeof(*r));
	memcpy(r->node_key, g->node_key, KEY_LEN);
	memcpy(r->disco_key, g->disco_key, KEY_LEN);
	str_copy(r->hostname, g->hostname, sizeof(r->hostname));
	r->has_routes = g->has_routes;
	str_copy(r->routes, g->routes, sizeof(r->routes));
}

static char *done_text(const struct store_node *n, const char *login);

/* The long-poll's answer for a row that is done: NULL when its node is
 * gone meanwhile or out of memory. */
static char *
row_done_text(struct server *s, const struct store_reg *g)
{
	struct store_node n;

	return store_node_get(s->store, g->node_id, &n) == 0 ? done_text(&n, g->login) : NULL;
}

/* A registration of the store as an entry of this replica's table; NULL
 * when out of memory. */
static struct entry *
entry_from_row(struct server *s, const struct store_reg *g)
{
	struct entry *en = calloc(1, sizeof(*en));

	if (en == NULL)
		return NULL;
	str_copy(en->id, g->id, sizeof(en->id));
	str_copy(en->addr, g->addr, sizeof(en->addr));
	memcpy(en->mkey, g->machine_key, KEY_LEN);
	reg_from_row(&en->reg, g);
	en->created_s = g->created_at;
	en->expires_s = g->expires_at;
	en->ended_s = g->ended_at;
	en->state = E_PENDING;
	if (strcmp(g->state, "busy") == 0) {
		en->state = E_BUSY;
	} else if (strcmp(g->state, "failed") == 0) {
		en->state = E_FAILED;
		str_copy(en->error, g->error, sizeof(en->error));
	} else if (strcmp(g->state, "done") == 0) {
		en->state = E_DONE;
		en->result = row_done_text(s, g);
	}
	return en;
}

/* Makes sure this replica's table holds registration `id` when the store
 * has it (shared only): one another replica began or completed. */
static void
adopt(struct server *s, const char *id)
{
	struct enrol *e = s->enrol;
	struct store_reg *g;
	struct entry *en = NULL;
	bool have;

	if (!shared(s) || !valid_id(id))
		return;
	pthread_mutex_lock(&e->mu);
	have = find_locked(e, id) != NULL;
	pthread_mutex_unlock(&e->mu);
	if (have || (g = malloc(sizeof(*g))) == NULL)
		return;
	if (store_reg_get(s->store, id, g) == 0)
		en = entry_from_row(s, g);
	wipe(g, sizeof(*g));
	free(g);
	if (en == NULL)
		return;
	pthread_mutex_lock(&e->mu);
	if (find_locked(e, id) == NULL)
		for (size_t i = 0; i < ENROL_MAX && en != NULL; i++)
			if (e->ents[i] == NULL) {
				e->ents[i] = en;
				en = NULL;
			}
	pthread_mutex_unlock(&e->mu);
	entry_free(en);	/* held meanwhile, or the table is full */
}

/* Gives a waiter its answer (takes ownership of text) and wakes it. */
static void
answer_locked(struct enrol *e, struct waiter *w, char *text)
{
	if (w->linked) {
		if (w->prev)
			w->prev->next = w->next;
		else
			e->waiters = w->next;
		if (w->next)
			w->next->prev = w->prev;
		w->linked = false;
		e->nwaiters--;
	}
	free(w->out);
	w->out = text;
	w->len = text ? strlen(text) : 0;
	w->off = 0;
	if (w->hs)
		http_stream_wake(w->hs);
}

/* The "done" answer of a long-poll: the node as an admin sees it. */
static char *
done_text(const struct store_node *n, const char *login)
{
	json_t *o = json_pack("{s:s, s:o, s:s}", "state", "done", "node",
	    nodeview_admin(n, false, time_now_s()), "login", login);
	char *t = o ? json_dumps(o, JSON_COMPACT) : NULL;

	json_decref(o);
	return t;
}

static char *
outcome_text(const struct entry *en)
{
	json_t *o;
	char *t;

	if (en->state == E_DONE && en->result)
		return strdup(en->result);
	if (en->state == E_PENDING || en->state == E_BUSY)
		o = json_pack("{s:s}", "state", "pending");
	else
		o = json_pack("{s:s, s:s}", "state", state_name[en->state], "error", en->error);
	t = o ? json_dumps(o, JSON_COMPACT) : NULL;
	json_decref(o);
	return t;
}

/* Answers every waiter of entry `en` with its current outcome. */
static void
notify_locked(struct enrol *e, const struct entry *en)
{
	struct waiter *w = e->waiters, *next;

	for (; w; w = next) {
		next = w->next;
		if (strcmp(w->id, en->id) == 0)
			answer_locked(e, w, outcome_text(en));
	}
}

struct rows {
	struct store_reg *v;
	size_t n, cap;
};

static int
collect_row(void *ctx, const struct store_reg *g)
{
	struct rows *l = ctx;

	if (l->n == l->cap) {
		size_t ncap = l->cap ? 2 * l->cap : 8;
		struct store_reg *v = realloc(l->v, ncap * sizeof(*v));

		if (v == NULL)
			return ERR_NOMEM;
		l->v = v;
		l->cap = ncap;
	}
	l->v[l->n++] = *g;
	return 0;
}

/* Shared: what other replicas did to the registrations held here (an
 * admin's approval or a login there, a newer `up` of the machine), read
 * once a second while any waits, and the store's old rows deleted. The
 * window reaches back a minute for clocks that differ between replicas. */
static void
poll_shared(struct server *s)
{
	struct enrol *e = s->enrol;
	int64_t now = time_now_s(), now_ms = time_mono_ms(), since = 0;
	struct rows l = { 0 };
	bool waiting = false, purge;

	pthread_mutex_lock(&e->mu);
	if (now_ms - e->polled_ms >= POLL_MS) {
		for (size_t i = 0; i < ENROL_MAX && !waiting; i++)
			waiting = e->ents[i] && (e->ents[i]->state == E_PENDING ||
			    e->ents[i]->state == E_BUSY);
		since = (e->polled_s ? e->polled_s : now) - 60;
		e->polled_ms = now_ms;
		e->polled_s = now;
	}
	if ((purge = now - e->purged_s >= PURGE_S))
		e->purged_s = now;
	pthread_mutex_unlock(&e->mu);
	if (purge && store_reg_purge(s->store, now - TOMBSTONE_S) != 0)
		log_warn("msg=\"cannot delete old registrations\"");
	if (!waiting)
		return;
	if (store_reg_ended(s->store, since, collect_row, &l) != 0)
		log_warn("msg=\"cannot read the registrations that ended\"");
	for (size_t i = 0; i < l.n; i++) {
		const struct store_reg *g = &l.v[i];
		bool done = strcmp(g->state, "done") == 0, open;
		struct entry *en;
		char *res = NULL;

		/* a done row also ends one this replica saw expire meanwhile */
		pthread_mutex_lock(&e->mu);
		en = find_locked(e, g->id);
		open = en && (en->state == E_PENDING || en->state == E_BUSY ||
		    (done && en->state == E_EXPIRED));
		pthread_mutex_unlock(&e->mu);
		if (!open || (done && (res = row_done_text(s, g)) == NULL))
			continue;
		pthread_mutex_lock(&e->mu);
		if ((en = find_locked(e, g->id)) != NULL && (en->state == E_PENDING ||
		    en->state == E_BUSY || (done && en->state == E_EXPIRED))) {
			en->state = done ? E_DONE : E_FAILED;
			en->ended_s = now;
			free(en->result);
			en->result = res;
			res = NULL;
			str_copy(en->error, g->error, sizeof(en->error));
			notify_locked(e, en);
		}
		pthread_mutex_unlock(&e->mu);
		free(res);
	}
	if (l.v)
		wipe(l.v, l.cap * sizeof(*l.v));
	free(l.v);
}

void
enrol_tick(struct server *s)
{
	struct enrol *e = s->enrol;
	int64_t now = time_now_s(), now_ms = time_mono_ms();
	struct waiter *w, *next;

	if (shared(s))
		poll_shared(s);
	pthread_mutex_lock(&e->mu);
	for (w = e->waiters; w; w = next) {
		next = w->next;
		if (now_ms >= w->deadline_ms)
			answer_locked(e, w, strdup("{\"state\":\"pending\"}"));
	}
	for (size_t i = 0; i < ENROL_MAX; i++) {
		struct entry *en = e->ents[i];

		if (en == NULL)
			continue;
		if (en->state == E_PENDING && now >= en->expires_s) {
			en->state = E_EXPIRED;
			en->ended_s = now;
			snprintf(en->error, sizeof(en->error), "the login link expired before anyone "
			    "logged in: run wiremesh up again");
			notify_locked(e, en);
			char lbl[STORE_NAME_MAX];

			server_dns_label(lbl, en->reg.hostname);	/* safe in a log line */
			log_info("msg=\"registration expired\" hostname=%s", lbl);
		}
		/* A busy entry taken over from the database whose replica died
		 * while writing the node ends nowhere: forgotten with the rest. */
		if ((en->state != E_PENDING && en->state != E_BUSY && now >= en->ended_s + TOMBSTONE_S) ||
		    (en->state == E_BUSY && now >= en->expires_s + TOMBSTONE_S)) {
			entry_free(en);
			e->ents[i] = NULL;
		}
	}
	pthread_mutex_unlock(&e->mu);
}

/* ---- the node side ---- */

/* SERVER: server_url, else the scheme and Host of this request. */
static void
base_url(struct server *s, struct http_request *req, char *out, size_t n)
{
	const char *host = http_header(req, "Host");

	if (s->cfg.server_url[0]) {
		str_copy(out, s->cfg.server_url, n);
		if (n > 0 && strlen(out) > 0 && out[strlen(out) - 1] == '/')
			out[strlen(out) - 1] = 0;
		return;
	}
	if (host == NULL || *host == 0 || strlen(host) > 255 ||
	    strspn(host, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-:[]")
	    != strlen(host))
		host = "localhost";
	snprintf(out, n, "%s://%s", s->cfg.tls_cert[0] ? "https" : "http", host);
}

/* Shared: the registration in table slot `slot` becomes a row too (the
 * machine's older pending ones fail there as they did here); if it cannot,
 * it leaves the table. */
static int
begin_shared(struct server *s, size_t slot, const struct entry *copy)
{
	struct enrol *e = s->enrol;
	struct store_reg *g = calloc(1, sizeof(*g));
	struct entry *en = NULL;
	int r = ERR_NOMEM;

	if (g != NULL) {
		str_copy(g->id, copy->id, sizeof(g->id));
		memcpy(g->machine_key, copy->mkey, KEY_LEN);
		memcpy(g->node_key, copy->reg.node_key, KEY_LEN);
		memcpy(g->disco_key, copy->reg.disco_key, KEY_LEN);
		str_copy(g->hostname, copy->reg.hostname, sizeof(g->hostname));
		g->has_routes = copy->reg.has_routes;
		str_copy(g->routes, copy->reg.routes, sizeof(g->routes));
		str_copy(g->addr, copy->addr, sizeof(g->addr));
		g->created_at = copy->created_s;
		g->expires_at = copy->expires_s;
		r = store_reg_insert(s->store, g);
		wipe(g, sizeof(*g));
		free(g);
	}
	if (r == 0)
		return 0;
	log_error("msg=\"cannot record a registration\" err=%s", err_str(r));
	pthread_mutex_lock(&e->mu);
	if (e->ents[slot] != NULL && strcmp(e->ents[slot]->id, copy->id) == 0) {
		en = e->ents[slot];
		e->ents[slot] = NULL;
	}
	pthread_mutex_unlock(&e->mu);
	entry_free(en);
	return r;
}

void
enrol_begin(struct server *s, struct http_request *req, struct http_response *resp,
	    const uint8_t mkey[static KEY_LEN], const struct control_reg *rg)
{
	struct enrol *e = s->enrol;
	struct entry *en;
	uint8_t raw[ENROL_ID_LEN / 2];
	char base[512], url[700];
	struct entry copy;
	int64_t now = time_now_s();
	size_t slot = ENROL_MAX;
	int same_addr = 0;
	char label[STORE_NAME_MAX];

	if ((en = calloc(1, sizeof(*en))) == NULL) {
		http_problem(resp, 503, NULL, "out of memory");
		return;
	}
	random_bytes(raw, sizeof(raw));
	if (hex_encode(en->id, sizeof(en->id), raw, sizeof(raw)) != 0) {
		entry_free(en);
		http_problem(resp, 500, NULL, "cannot make a registration id");
		return;
	}
	memcpy(en->mkey, mkey, KEY_LEN);
	str_copy(en->addr, req->client, sizeof(en->addr));
	if (strrchr(en->addr, ':') && strrchr(en->addr, ':') > strrchr(en->addr, ']'))
		*strrchr(en->addr, ':') = 0;	/* "ip:port", "[v6]:port" */
	en->reg = *rg;
	en->reg.tags = NULL;	/* borrowed from the body; the `up` after the login sends them */
	en->created_s = now;
	en->expires_s = now + s->cfg.register_expiry_s;
	en->state = E_PENDING;
	pthread_mutex_lock(&e->mu);
	for (size_t i = 0; i < ENROL_MAX; i++) {
		struct entry *o = e->ents[i];

		if (o && o->state == E_PENDING && strcmp(o->addr, en->addr) == 0 &&
		    memcmp(o->mkey, mkey, KEY_LEN) != 0)
			same_addr++;
	}
	if (same_addr >= ENROL_PER_ADDR) {
		pthread_mutex_unlock(&e->mu);
		entry_free(en);
		http_problem(resp, 429, NULL, "too many machines from this address are waiting for a "
		    "login (at most %d); retry later", ENROL_PER_ADDR);
		return;
	}
	for (size_t i = 0; i < ENROL_MAX; i++) {
		struct entry *o = e->ents[i];

		/* One waiting registration per machine: a new `up` replaces it. */
		if (o && o->state == E_PENDING && memcmp(o->mkey, mkey, KEY_LEN) == 0) {
			o->state = E_FAILED;
			o->ended_s = now;
			snprintf(o->error, sizeof(o->error), "replaced by a newer login of this machine");
			notify_locked(e, o);
		}
		if (o == NULL && slot == ENROL_MAX)
			slot = i;
	}
	if (slot == ENROL_MAX) {
		pthread_mutex_unlock(&e->mu);
		entry_free(en);
		log_warn("msg=\"too many registrations waiting for a login\" max=%d", ENROL_MAX);
		http_problem(resp, 503, NULL, "too many registrations are waiting for a login; retry later");
		return;
	}
	e->ents[slot] = en;
	copy = *en;	/* what stays fixed; `en` may be replaced once unlocked */
	copy.result = NULL;
	pthread_mutex_unlock(&e->mu);
	if (shared(s) && begin_shared(s, slot, &copy) != 0) {
		wipe(&copy, sizeof(copy));
		http_problem(resp, 503, NULL, "cannot record the registration in the database; retry");
		return;
	}
	base_url(s, req, base, sizeof(base));
	snprintf(url, sizeof(url), "%s/register/%s", base, copy.id);
	server_reply_json(resp, 202, json_pack("{s:s, s:s, s:I}", "auth_url", url, "auth_id", copy.id,
	    "expires_at", (json_int_t)copy.expires_s));
	wipe(&copy, sizeof(copy));
	server_dns_label(label, rg->hostname);	/* safe in a log line */
	log_info("msg=\"registration waiting for a login\" hostname=%s expires_in_s=%" PRId64,
	    label, s->cfg.register_expiry_s);
}

static void
w_attach(void *ctx, struct http_stream *hs)
{
	struct waiter *w = ctx;

	pthread_mutex_lock(&w->e->mu);
	w->hs = hs;
	pthread_mutex_unlock(&w->e->mu);
}

static ssize_t
w_read(void *ctx, char *buf, size_t max)
{
	struct waiter *w = ctx;
	ssize_t n = 0;

	pthread_mutex_lock(&w->e->mu);
	if (w->out == NULL) {
		n = 0;		/* suspend until answered */
	} else if (w->off >= w->len) {
		n = -1;		/* sent: end the response */
	} else {
		n = (ssize_t)(w->len - w->off < max ? w->len - w->off : max);
		memcpy(buf, w->out + w->off, (size_t)n);
		w->off += (size_t)n;
	}
	pthread_mutex_unlock(&w->e->mu);
	return n;
}

static void
w_close(void *ctx)
{
	struct waiter *w = ctx;
	struct enrol *e = w->e;

	pthread_mutex_lock(&e->mu);
	if (w->linked) {
		if (w->prev)
			w->prev->next = w->next;
		else
			e->waiters = w->next;
		if (w->next)
			w->next->prev = w->prev;
		e->nwaiters--;
	}
	pthread_mutex_unlock(&e->mu);
	free(w->out);
	free(w);
}

static const struct http_stream_ops wait_ops = {
	.attach = w_attach,
	.read = w_read,
	.close = w_close,
};

void
enrol_wait(struct server *s, struct http_response *resp, const uint8_t mkey[static KEY_LEN],
	   json_t *body)
{
	struct enrol *e = s->enrol;
	const char *id = json_string_value(json_object_get(body, "auth_id"));
	struct entry *en;
	struct waiter *w;

	if (!valid_id(id)) {
		http_problem(resp, 400, NULL, "auth_id must be the %d hex digits of a registration id",
		    ENROL_ID_LEN);
		return;
	}
	adopt(s, id);	/* begun on another replica (the agent moved here) */
	pthread_mutex_lock(&e->mu);
	en = find_locked(e, id);
	if (en == NULL || memcmp(en->mkey, mkey, KEY_LEN) != 0) {
		pthread_mutex_unlock(&e->mu);
		http_problem(resp, 404, NULL, "no registration %s for this machine (expired, or the "
		    "server restarted): run wiremesh up again", id);
		return;
	}
	if (en->state != E_PENDING && en->state != E_BUSY) {
		char *t = outcome_text(en);

		pthread_mutex_unlock(&e->mu);
		if (t == NULL)
			http_problem(resp, 500, NULL, "out of memory");
		else
			http_set_body(resp, 200, "application/json", t, strlen(t));
		return;
	}
	if (e->nwaiters >= ENROL_WAITERS_MAX || (w = calloc(1, sizeof(*w))) == NULL) {
		pthread_mutex_unlock(&e->mu);
		http_problem(resp, 503, NULL, "too many requests in flight; retry");
		return;
	}
	w->e = e;
	str_copy(w->id, id, sizeof(w->id));
	w->deadline_ms = time_mono_ms() + ENROL_WAIT_S * 1000;
	w->next = e->waiters;
	if (e->waiters)
		e->waiters->prev = w;
	e->waiters = w;
	w->linked = true;
	e->nwaiters++;
	pthread_mutex_unlock(&e->mu);
	resp->status = 200;
	resp->content_type = "application/json";
	resp->stream_ops = &wait_ops;
	resp->stream_ctx = w;
}

bool
enrol_has_machine(struct server *s, const uint8_t mkey[static KEY_LEN])
{
	struct enrol *e = s->enrol;
	bool found = false;

	pthread_mutex_lock(&e->mu);
	for (size_t i = 0; i < ENROL_MAX && !found; i++)
		found = e->ents[i] && memcmp(e->ents[i]->mkey, mkey, KEY_LEN) == 0;
	pthread_mutex_unlock(&e->mu);
	if (!found && shared(s))
		found = store_reg_machine_known(s->store, mkey, time_now_s() - TOMBSTONE_S) == 1;
	return found;
}

/* ---- completion ---- */

static int
claim_why(int r, char *why, size_t whylen)
{
	switch (r) {
	case 0:
		break;
	case ERR_NOT_FOUND:
		snprintf(why, whylen, "this registration link is not valid (mistyped, or the "
		    "server restarted): run wiremesh up again for a new one");
		break;
	case ERR_EXPIRED:
		snprintf(why, whylen, "this registration link has expired: run wiremesh up again "
		    "for a new one");
		break;
	case ERR_USED:
		snprintf(why, whylen, "this registration link has already been used");
		break;
	default:
		snprintf(why, whylen, "cannot read the registration: %s", err_str(r));
		break;
	}
	return r;
}

/* Shared: the store's row decides (one replica wins it); the entry here,
 * if any, shows it busy. */
static int
claim_shared(struct server *s, const char *id, struct entry *copy)
{
	struct enrol *e = s->enrol;
	struct store_reg *g = malloc(sizeof(*g));
	struct entry *en;
	int r;

	if (g == NULL)
		return ERR_NOMEM;
	if ((r = store_reg_claim(s->store, id, time_now_s(), g)) == 0) {
		memset(copy, 0, sizeof(*copy));
		str_copy(copy->id, g->id, sizeof(copy->id));
		memcpy(copy->mkey, g->machine_key, KEY_LEN);
		reg_from_row(&copy->reg, g);
		pthread_mutex_lock(&e->mu);
		if ((en = find_locked(e, id)) != NULL && en->state == E_PENDING)
			en->state = E_BUSY;
		pthread_mutex_unlock(&e->mu);
	}
	wipe(g, sizeof(*g));
	free(g);
	return r;
}

/* Claims a PENDING entry (-> BUSY) and copies what the write needs. */
static int
claim(struct server *s, const char *id, struct entry *copy, char *why, size_t whylen)
{
	struct enrol *e = s->enrol;
	struct entry *en;
	int r = 0;

	if (!valid_id(id))
		return claim_why(ERR_NOT_FOUND, why, whylen);
	if (shared(s))
		return claim_why(claim_shared(s, id, copy), why, whylen);
	pthread_mutex_lock(&e->mu);
	en = find_locked(e, id);
	if (en == NULL) {
		r = ERR_NOT_FOUND;
	} else if (en->state == E_EXPIRED ||
	    (en->state == E_PENDING && time_now_s() >= en->expires_s)) {
		r = ERR_EXPIRED;
	} else if (en->state != E_PENDING) {
		r = ERR_USED;
	} else {
		en->state = E_BUSY;
		*copy = *en;
		copy->result = NULL;
	}
	pthread_mutex_unlock(&e->mu);
	return claim_why(r, why, whylen);
}

/* Records the outcome of a claimed entry and answers its waiters. */
static void
finish(struct server *s, const char *id, int r, const struct store_node *n, const char *login,
       const char *why)
{
	struct enrol *e = s->enrol;
	struct entry *en;
	int sr;

	if (shared(s) && (sr = store_reg_finish(s->store, id, r == 0 ? n->id : 0, login,
	    r == 0 ? NULL : why, time_now_s())) != 0)
		log_error("msg=\"cannot record how a registration ended\" err=%s", err_str(sr));
	pthread_mutex_lock(&e->mu);
	if ((en = find_locked(e, id)) != NULL) {
		en->ended_s = time_now_s();
		if (r == 0) {
			en->state = E_DONE;
			free(en->result);
			en->result = done_text(n, login);
		} else {
			en->state = E_FAILED;
			str_copy(en->error, why, sizeof(en->error));
		}
		notify_locked(e, en);
	}
	pthread_mutex_unlock(&e->mu);
}

static int
complete(struct server *s, const char *id, struct control_owner *o, const char *login,
	 struct store_node *out, char *why, size_t whylen)
{
	struct entry en;
	bool created;
	int r;

	if ((r = claim(s, id, &en, why, whylen)) != 0)
		return r;
	r = control_register_owned(s, en.mkey, &en.reg, o, out, &created, why, whylen);
	finish(s, id, r, out, login, why);
	wipe(&en, sizeof(en));
	return r;
}

/* Inside the registration transaction: the user of an OpenID Connect
 * identity, found by issuer and subject, else created. */
static int
resolve_oidc_user(void *ctx, struct server *s, struct control_owner *o, char *why, size_t whylen)
{
	const struct oidc_identity *id = ctx;
	struct store_user u;
	int r;

	r = store_user_get_by_oidc(s->store, id->issuer, id->subject, &u);
	if (r == 0) {
		if ((strcmp(u.display_name, id->display_name) != 0 || strcmp(u.email, id->email) != 0) &&
		    (r = store_user_set_profile(s->store, u.id, id->display_name, id->email)) != 0)
			return r;
	} else if (r == ERR_NOT_FOUND) {
		r = store_user_create_oidc(s->store, id->user, id->issuer, id->subject,
		    id->display_name, id->email, &u);
		if (r == ERR_EXISTS) {
			snprintf(why, whylen, "the user name \"%s\" already belongs to another account; "
			    "an administrator must rename or remove it", id->user);
			return r;
		}
		if (r != 0)
			return r;
		log_info("msg=\"user created by login\" user=%s", u.name);
	} else {
		return r;
	}
	o->user_id = u.id;
	str_copy(o->user, u.name, sizeof(o->user));
	return 0;
}

static void
fail_page(struct http_response *resp, int status, const char *title, const char *why)
{
	char esc[1200], body[1400];

	html_escape(esc, sizeof(esc), why);
	snprintf(body, sizeof(body), "<p>%s</p>", esc);
	html_page(resp, status, title, body);
}

static int
status_of(int r)
{
	switch (r) {
	case ERR_NOT_FOUND: return 404;
	case ERR_EXPIRED:
	case ERR_USED: return 410;
	default: return err_http_status(r);
	}
}

void
enrol_oidc_done(struct server *s, const struct oidc_login *login, struct http_response *resp)
{
	struct control_owner o;
	struct store_node n;
	char why[512] = "", body[1600], u[256], nm[256], ip[ADDR_STR_MAX] = "";
	int r;

	memset(&o, 0, sizeof(o));
	o.expires_at = oidc_node_expiry(s->oidc, s->cfg.node_expiry_s, &login->id, time_now_s());
	o.resolve = resolve_oidc_user;
	o.ctx = (void *)&login->id;
	if ((r = complete(s, login->ref, &o, login->id.user, &n, why, sizeof(why))) != 0) {
		log_warn("msg=\"login did not register the node\" user=%s err=\"%s\"", login->id.user,
		    why);
		fail_page(resp, status_of(r), "Registration failed", why);
		return;
	}
	log_info("msg=\"node registered by login\" node_id=%" PRId64 " name=%s user=%s", n.id,
	    n.name, n.user);
	html_escape(u, sizeof(u), n.user);
	html_escape(nm, sizeof(nm), n.name);
	if (n.ipv4.family)
		addr_fmt(ip, &n.ipv4);
	snprintf(body, sizeof(body), "<p>Logged in as <b>%s</b>. The machine <b>%s</b> (%s) "
	    "has joined the network.</p><p>You can close this window.</p>", u, nm, ip);
	html_page(resp, 200, "Success", body);
}

int
enrol_approve(struct server *s, const char *id, const char *user, struct store_node *out,
	      char *why, size_t whylen)
{
	struct control_owner o;
	struct store_user u;
	int r;

	if ((r = store_user_get(s->store, user, &u)) != 0) {
		snprintf(why, whylen, r == ERR_NOT_FOUND ? "no user \"%s\"" : "cannot look up user "
		    "\"%s\"", user);
		return r == ERR_NOT_FOUND ? ERR_UNPROCESSABLE : r;
	}
	memset(&o, 0, sizeof(o));
	o.user_id = u.id;
	str_copy(o.user, u.name, sizeof(o.user));
	o.expires_at = s->cfg.node_expiry_s ? time_now_s() + s->cfg.node_expiry_s : 0;
	if ((r = complete(s, id, &o, u.name, out, why, whylen)) != 0)
		return r;
	log_info("msg=\"node registered by an admin\" node_id=%" PRId64 " name=%s user=%s",
	    out->id, out->name, out->user);
	return 0;
}

static void
pending_add(json_t *a, const char *id, const char *hostname, const uint8_t *mkey,
	    const uint8_t *nkey, int64_t created, int64_t expires)
{
	char mk[KEY_STR_MAX], nk[KEY_STR_MAX], c[32], x[32];

	key_fmt(mk, "mkey:", mkey);
	key_fmt(nk, "nodekey:", nkey);
	time_fmt_rfc3339(c, created);
	time_fmt_rfc3339(x, expires);
	json_array_append_new(a, json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}", "key", id,
	    "hostname", hostname, "machine_key", mk, "node_key", nk, "created_at", c,
	    "expires_at", x));
}

static int
pending_row(void *ctx, const struct store_reg *g)
{
	pending_add(ctx, g->id, g->hostname, g->machine_key, g->node_key, g->created_at,
	    g->expires_at);
	return 0;
}

json_t *
enrol_pending_json(struct server *s)
{
	struct enrol *e = s->enrol;
	json_t *a = json_array();
	int64_t now = time_now_s();

	if (a == NULL)
		return NULL;
	if (shared(s)) {	/* every replica's */
		if (store_reg_pending(s->store, now, pending_row, a) != 0) {
			json_decref(a);
			return NULL;
		}
		return a;
	}
	pthread_mutex_lock(&e->mu);
	for (size_t i = 0; i < ENROL_MAX; i++) {
		struct entry *en = e->ents[i];

		if (en != NULL && en->state == E_PENDING && en->expires_s > now)
			pending_add(a, en->id, en->reg.hostname, en->mkey, en->reg.node_key,
			    en->created_s, en->expires_s);
	}
	pthread_mutex_unlock(&e->mu);
	return a;
}

/* ---- the register page ---- */

void
enrol_page(struct server *s, struct http_request *req, struct http_response *resp)
{
	struct enrol *e = s->enrol;
	const char *id = req->path + strlen("/register/");
	struct entry *en;
	enum state st = E_FAILED;
	char host[256], eid[ENROL_ID_LEN + 1], body[2048], x[32], label[STORE_NAME_MAX] = "";
	int64_t expires = 0;

	if (strcmp(req->method, "GET") != 0 && strcmp(req->method, "HEAD") != 0) {
		fail_page(resp, 405, "Not allowed", "Open this link in a web browser.");
		return;
	}
	adopt(s, id);	/* begun on another replica */
	pthread_mutex_lock(&e->mu);
	en = valid_id(id) ? find_locked(e, id) : NULL;
	if (en) {
		st = en->state == E_PENDING && time_now_s() >= en->expires_s ? E_EXPIRED : en->state;
		html_escape(host, sizeof(host), en->reg.hostname);
		server_dns_label(label, en->reg.hostname);
		str_copy(eid, en->id, sizeof(eid));
		expires = en->expires_s;
	}
	pthread_mutex_unlock(&e->mu);
	if (en == NULL) {
		log_info("msg=\"register page: unknown link\" client=%s", req->client);
		fail_page(resp, 404, "Link not valid", "This registration link is not valid (mistyped, "
		    "or the server restarted). Run wiremesh up again for a new one.");
		return;
	}
	if (st == E_EXPIRED) {
		log_info("msg=\"register page: link expired\" hostname=%s client=%s", label,
		    req->client);
		fail_page(resp, 410, "Link expired", "This registration link has expired. Run "
		    "wiremesh up again for a new one.");
		return;
	}
	if (st != E_PENDING) {
		log_info("msg=\"register page: link already used\" hostname=%s client=%s", label,
		    req->client);
		fail_page(resp, 410, "Link already used", "This registration link has already been "
		    "used. Run wiremesh up again if the machine still needs to log in.");
		return;
	}
	if (s->oidc) {
		char why[512], *url = NULL;
		int status = 502;

		if (oidc_login_start(s->oidc, OIDC_FOR_REGISTER, eid, &url, &status, why,
		    sizeof(why)) != 0) {
			log_warn("msg=\"cannot start a login\" err=\"%s\"", why);
			fail_page(resp, status, "Cannot log in now", why);
			return;
		}
		char *msg = strdup("Redirecting to the identity provider\n");

		http_set_body(resp, 302, "text/plain; charset=utf-8", msg, msg ? strlen(msg) : 0);
		if (http_add_header(resp, "Location", url) != 0 ||
		    http_add_header(resp, "Cache-Control", "no-store") != 0) {
			http_response_cleanup(resp);
			fail_page(resp, 500, "Cannot log in now", "out of memory");
		}
		free(url);
		return;
	}
	time_fmt_rfc3339(x, expires);
	snprintf(body, sizeof(body),
	    "<p>The machine <b>%s</b> asks to join this network.</p>"
	    "<p>An administrator can let it in as one of the server's users with:</p>"
	    "<pre>wiremesh-server nodes register --user USER %s</pre>"
	    "<p>This link works once and expires at %s.</p>", host, eid, x);
	html_page(resp, 200, "Machine waiting for approval", body);
}
