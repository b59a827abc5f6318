// SPDX-License-Identifier: MIT
/*
 * Control client: signed requests, the map stream thread and the endpoint
 * reporter thread. Each thread owns its curl handle. Stopping sets a flag
 * that the transfer's progress callback sees within a second.
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/utsname.h>
#include <time.h>

#include <curl/curl.h>

#include "client-agent/control_client.h"
#include "common/buf.h"
#include "common/curlx.h"
#include "common/log.h"
#include "common/sign.h"
#include "common/util.h"
#include "common/version.h"

enum { CONTROL_URLS_MAX = 8 };

struct control {
	char *url;			/* the URLs as given, comma-separated */
	char *urls[CONTROL_URLS_MAX];	/* each, into url */
	size_t nurls;
	atomic_size_t cur;		/* the one in use: urls, then learned */
	struct control_keys keys;
	struct control_callbacks cb;
	atomic_bool stop;
	atomic_uint_fast64_t version;
	atomic_int_fast64_t keepalive_ms;	/* measured (stream_limit_ms); 0: not yet */

	pthread_t stream_thr, ep_thr;
	bool started;

	pthread_mutex_t lock;		/* guards the fields below */
	pthread_cond_t cond;
	char *ep_body;			/* pending endpoint report, NULL if none */
	json_t *advertised;		/* routes sent with register/endpoints */
	json_t *tags;			/* requested tags sent with register */
	uint32_t fwmark;
	char *learned[CONTROL_URLS_MAX];	/* the map's other replicas */
	size_t nlearned;
};

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;

static void
curl_init_once(void)
{
	curl_global_init(CURL_GLOBAL_DEFAULT);
}

struct control *
control_new(const char *url, const struct control_keys *keys, const struct control_callbacks *cb)
{
	struct control *c = calloc(1, sizeof(*c));

	pthread_once(&curl_once, curl_init_once);
	if (c == NULL)
		return NULL;
	if ((c->url = strdup(url)) == NULL) {
		free(c);
		return NULL;
	}
	/* Several servers (replicas of one network): "URL1,URL2". Requests go
	 * to one; when it cannot be reached (or answers 502-504), the next. */
	for (char *p = c->url, *save = NULL, *t; (t = strtok_r(p, ",", &save)) != NULL; p = NULL) {
		/* A trailing slash would double in "URL/machine/...". */
		for (size_t n = strlen(t); n > 0 && t[n - 1] == '/'; n--)
			t[n - 1] = 0;
		if (*t && c->nurls < CONTROL_URLS_MAX)
			c->urls[c->nurls++] = t;
	}
	if (c->nurls == 0)
		c->urls[c->nurls++] = c->url;
	atomic_init(&c->cur, 0);
	c->keys = *keys;
	c->cb = *cb;
	atomic_init(&c->stop, false);
	atomic_init(&c->keepalive_ms, 0);
	atomic_init(&c->version, 0);
	pthread_mutex_init(&c->lock, NULL);
	pthread_cond_init(&c->cond, NULL);
	return c;
}

void
control_free(struct control *c)
{
	if (c == NULL)
		return;
	atomic_store(&c->stop, true);
	pthread_mutex_lock(&c->lock);
	pthread_cond_broadcast(&c->cond);
	pthread_mutex_unlock(&c->lock);
	if (c->started) {
		pthread_join(c->stream_thr, NULL);
		pthread_join(c->ep_thr, NULL);
	}
	free(c->ep_body);
	json_decref(c->advertised);
	json_decref(c->tags);
	free(c->url);
	for (size_t i = 0; i < c->nlearned; i++)
		free(c->learned[i]);
	wipe(&c->keys, sizeof(c->keys));
	pthread_mutex_destroy(&c->lock);
	pthread_cond_destroy(&c->cond);
	free(c);
}

void
control_set_advertised(struct control *c, json_t *routes)
{
	pthread_mutex_lock(&c->lock);
	json_decref(c->advertised);
	c->advertised = routes ? json_deep_copy(routes) : NULL;
	pthread_mutex_unlock(&c->lock);
}

/* URL i of the rotation (with c->lock): the given ones, then the learned. */
static const char *
url_at_locked(struct control *c, size_t i)
{
	return i < c->nurls ? c->urls[i] : c->learned[i - c->nurls];
}

/* The URL in use now, copied (the learned list may change meanwhile);
 * returns its index and the rotation's length in *n. */
static size_t
url_pick(struct control *c, char *out, size_t outlen, size_t *n)
{
	size_t cur;

	pthread_mutex_lock(&c->lock);
	*n = c->nurls + c->nlearned;
	cur = atomic_load(&c->cur) % *n;
	str_copy(out, url_at_locked(c, cur), outlen);
	pthread_mutex_unlock(&c->lock);
	return cur;
}

static bool
url_given(struct control *c, const char *u)
{
	for (size_t i = 0; i < c->nurls; i++)
		if (strcmp(c->urls[i], u) == 0)
			return true;
	return false;
}

void
control_set_learned(struct control *c, const char *const *urls, size_t n)
{
	char now[CONTROL_URL_MAX];
	size_t cur;

	pthread_mutex_lock(&c->lock);
	cur = atomic_load(&c->cur) % (c->nurls + c->nlearned);
	str_copy(now, url_at_locked(c, cur), sizeof(now));
	for (size_t i = 0; i < c->nlearned; i++)
		free(c->learned[i]);
	c->nlearned = 0;
	for (size_t i = 0; i < n && c->nlearned < CONTROL_URLS_MAX; i++) {
		char *u = strdup(urls[i]);
		size_t len;

		if (u == NULL)
			break;
		for (len = strlen(u); len > 0 && u[len - 1] == '/'; len--)
			u[len - 1] = 0;
		if (*u == 0 || strlen(u) >= CONTROL_URL_MAX || url_given(c, u)) {
			free(u);
			continue;
		}
		c->learned[c->nlearned++] = u;
	}
	/* stay on the server in use (its place in the rotation may move) */
	for (size_t i = 0; i < c->nurls + c->nlearned; i++)
		if (strcmp(url_at_locked(c, i), now) == 0) {
			atomic_store(&c->cur, i);
			break;
		}
	pthread_mutex_unlock(&c->lock);
}

size_t
control_urls(struct control *c, char (*out)[CONTROL_URL_MAX], size_t max, size_t *cur)
{
	size_t n;

	pthread_mutex_lock(&c->lock);
	n = c->nurls + c->nlearned;
	*cur = atomic_load(&c->cur) % n;
	for (size_t i = 0; i < n && i < max; i++)
		str_copy(out[i], url_at_locked(c, i), CONTROL_URL_MAX);
	pthread_mutex_unlock(&c->lock);
	return n < max ? n : max;
}

void
control_set_fwmark(struct control *c, uint32_t mark)
{
	c->fwmark = mark;
}

static int
on_sockopt(void *ctx, curl_socket_t fd, curlsocktype purpose)
{
	struct control *c = ctx;

	(void)purpose;
	if (c->fwmark && setsockopt(fd, SOL_SOCKET, SO_MARK, &c->fwmark, sizeof(c->fwmark)) != 0)
		log_debug("msg=\"cannot mark the control socket\"");
	return CURL_SOCKOPT_OK;
}

int64_t
control_keepalive_ms(struct control *c)
{
	return atomic_load(&c->keepalive_ms);
}

uint64_t
control_version(struct control *c)
{
	return atomic_load(&c->version);
}

/* ---- one signed POST ---- */

struct sink {
	struct control *c;
	struct buf data;	/* whole body (plain requests) or the current line */
	bool stream;
	bool got_line;
	long timeout_s;		/* plain requests; 0: 15 s */
	/* The map stream: when bytes last came (of any message: a large one
	 * may take longer than the limit to arrive), when its last keepalive
	 * came and the longest time between two keepalives (the server's
	 * keepalive_interval), and whether it was given up as silent. */
	int64_t last_ms, last_ka_ms, max_gap_ms;
	int gaps;
	bool silent;
};

/* A map stream that delivered no byte for three keepalive intervals
 * (docs/protocol.md; the interval as measured between the server's
 * keepalives) is dead: a connection whose packets vanish (the server's
 * host gone, a path that blackholes) ends no sooner otherwise. Until two
 * intervals were measured, and never longer than that, CONTROL_STALL_S;
 * never shorter than CONTROL_STALL_MIN_S. */
static int64_t
stream_limit_ms(const struct sink *s)
{
	int64_t l = 3 * s->max_gap_ms;

	if (s->gaps < 2 || l > CONTROL_STALL_S * 1000)
		return CONTROL_STALL_S * 1000;
	return l < CONTROL_STALL_MIN_S * 1000 ? CONTROL_STALL_MIN_S * 1000 : l;
}

/* A stream message: the keepalives' spacing. */
static void
note_message(struct sink *s, const json_t *msg)
{
	const char *type = json_string_value(json_object_get(msg, "type"));
	int64_t now = time_mono_ms();

	if (type == NULL || strcmp(type, "keepalive") != 0)
		return;
	if (s->last_ka_ms != 0) {
		if (now - s->last_ka_ms > s->max_gap_ms)
			s->max_gap_ms = now - s->last_ka_ms;
		if (++s->gaps >= 2)
			atomic_store(&s->c->keepalive_ms, s->max_gap_ms);
	}
	s->last_ka_ms = now;
}

static size_t
on_data(char *p, size_t sz, size_t nmemb, void *ctx)
{
	struct sink *s = ctx;
	size_t n = sz * nmemb;

	if (!s->stream)
		return buf_append(&s->data, p, n) == 0 ? n : 0;
	s->last_ms = time_mono_ms();
	for (size_t i = 0; i < n; i++) {
		json_t *msg;
		json_error_t e;

		if (p[i] != '\n') {
			if (buf_append(&s->data, p + i, 1) != 0) {
				log_warn("msg=\"map message too large; reconnecting\"");
				return 0;
			}
			continue;
		}
		msg = json_loadb((const char *)s->data.data, s->data.len, 0, &e);
		buf_reset(&s->data);
		if (!json_is_object(msg)) {
			log_warn("msg=\"bad map message; reconnecting\" err=\"%s\"", e.text);
			json_decref(msg);
			return 0;
		}
		if (!s->got_line) {
			s->got_line = true;
			if (s->c->cb.state)
				s->c->cb.state(s->c->cb.ctx, true, NULL);
		}
		note_message(s, msg);
		s->c->cb.message(s->c->cb.ctx, msg);
		json_t *v = json_object_get(msg, "version");
		if (json_is_integer(v) && json_integer_value(v) > 0)
			atomic_store(&s->c->version, (uint64_t)json_integer_value(v));
		json_decref(msg);
	}
	return n;
}

static int
on_progress(void *ctx, curl_off_t dt, curl_off_t dn, curl_off_t ut, curl_off_t un)
{
	struct sink *s = ctx;

	if (atomic_load(&s->c->stop))
		return 1;
	if (s->stream && s->last_ms != 0 && time_mono_ms() - s->last_ms > stream_limit_ms(s)) {
		s->silent = true;
		return 1;
	}
	return 0;
}

/* The problem detail of an RFC 7807 body, else the body's start. */
static void
problem_text(const struct buf *b, long status, char *why, size_t whylen)
{
	json_t *j = json_loadb((const char *)b->data, b->len, 0, NULL);
	const char *d = json_string_value(json_object_get(j, "detail"));

	if (d == NULL)
		d = json_string_value(json_object_get(j, "title"));
	if (d)
		snprintf(why, whylen, "control server refused (HTTP %ld): %s", status, d);
	else
		snprintf(why, whylen, "control server answered HTTP %ld", status);
	json_decref(j);
}

static int
status_err(long status)
{
	switch (status) {
	case 400: return ERR_INVALID;
	case 401: return ERR_UNAUTHORIZED;
	case 403: return ERR_FORBIDDEN;
	case 404: return ERR_NOT_FOUND;
	case 409: return ERR_EXISTS;
	case 410: return ERR_EXPIRED;
	default: return status >= 500 ? ERR_UNAVAILABLE : ERR_PROTOCOL;
	}
}

/* POSTs body to path. stream: lines go to the message callback. Returns 0
 * for a 2xx answer; *status gets the HTTP status (0 when unreachable). */
static int
post(struct control *c, const char *path, const char *body, bool stream, struct sink *sink,
     long *status, char *why, size_t whylen)
{
	char url[2048], mh[128], th[64], sh[256], nh[64], mk[KEY_STR_MAX];
	char sig[SIGN_HEX_LEN + 1], nonce[SIGN_NONCE_LEN + 1], cerr[CURL_ERROR_SIZE] = "";
	const char *ca = getenv("SSL_CERT_FILE");
	struct curl_slist *h = NULL;
	int64_t ts = time_now_s();
	char base[CONTROL_URL_MAX];
	size_t nurls, cur = url_pick(c, base, sizeof(base), &nurls);
	CURLcode cr;
	CURL *k;
	int r;

	*status = 0;
	snprintf(url, sizeof(url), "%s%s", base, path);
	if ((k = curlx_new(url, on_data, sink, cerr, ca)) == NULL) {
		snprintf(why, whylen, "out of memory");
		return ERR_NOMEM;
	}
	sign_nonce(nonce);
	if (sign_request(c->keys.machine_sk, "POST", path, ts, nonce, body, strlen(body), sig) != 0) {
		curl_easy_cleanup(k);
		snprintf(why, whylen, "cannot sign the request");
		return ERR_INTERNAL;
	}
	key_fmt(mk, "mkey:", c->keys.machine_pk);
	snprintf(mh, sizeof(mh), SIGN_HDR_MACHINE ": %s", mk);
	snprintf(th, sizeof(th), SIGN_HDR_TIMESTAMP ": %" PRId64, ts);
	snprintf(sh, sizeof(sh), SIGN_HDR_SIGNATURE ": %s", sig);
	snprintf(nh, sizeof(nh), SIGN_HDR_NONCE ": %s", nonce);
	h = curl_slist_append(h, nh);
	h = curl_slist_append(h, mh);
	h = curl_slist_append(h, th);
	h = curl_slist_append(h, sh);
	h = curl_slist_append(h, "Content-Type: application/json");
	h = curl_slist_append(h, "Expect:");
	curl_easy_setopt(k, CURLOPT_HTTPHEADER, h);
	curl_easy_setopt(k, CURLOPT_POSTFIELDS, body);
	curl_easy_setopt(k, CURLOPT_NOPROGRESS, 0L);
	curl_easy_setopt(k, CURLOPT_XFERINFOFUNCTION, on_progress);
	curl_easy_setopt(k, CURLOPT_XFERINFODATA, sink);
	curl_easy_setopt(k, CURLOPT_CONNECTTIMEOUT,
	    sink->timeout_s > 0 && sink->timeout_s < 10 ? sink->timeout_s : 10L);
	curl_easy_setopt(k, CURLOPT_TCP_KEEPALIVE, 1L);
	curl_easy_setopt(k, CURLOPT_SOCKOPTFUNCTION, on_sockopt);
	curl_easy_setopt(k, CURLOPT_SOCKOPTDATA, c);
	if (stream) {
		/* the map stream compressed with zstd; libcurl decodes it */
		curl_easy_setopt(k, CURLOPT_ACCEPT_ENCODING, "zstd");
		curl_easy_setopt(k, CURLOPT_LOW_SPEED_LIMIT, 1L);
		curl_easy_setopt(k, CURLOPT_LOW_SPEED_TIME, (long)CONTROL_STALL_S);
	} else {
		curl_easy_setopt(k, CURLOPT_TIMEOUT, sink->timeout_s > 0 ? sink->timeout_s : 15L);
	}
	cr = curl_easy_perform(k);
	curl_easy_getinfo(k, CURLINFO_RESPONSE_CODE, status);
	curl_slist_free_all(h);
	curl_easy_cleanup(k);
	wipe(sig, sizeof(sig));
	/* the next server for the next attempt, when this one is unreachable
	 * or a proxy says it is gone */
	if (nurls > 1 && !atomic_load(&c->stop) && ((cr != CURLE_OK && *status == 0) ||
	    *status == 502 || *status == 503 || *status == 504)) {
		size_t expect = cur;

		if (atomic_compare_exchange_strong(&c->cur, &expect, (cur + 1) % nurls)) {
			char next[CONTROL_URL_MAX];
			size_t n2;

			(void)url_pick(c, next, sizeof(next), &n2);
			log_info("msg=\"control server unreachable; trying the next\" url=%s next=%s",
			    base, next);
		}
	}
	if (*status >= 300) {
		if (stream)	/* the body is a problem document, not lines */
			buf_reset(&sink->data);
		problem_text(&sink->data, *status, why, whylen);
		return status_err(*status);
	}
	if (cr != CURLE_OK) {
		if (atomic_load(&c->stop)) {
			snprintf(why, whylen, "stopped");
			return ERR_UNAVAILABLE;
		}
		if (sink->silent)
			snprintf(why, whylen, "the map stream from %s was silent for %" PRId64 " s "
			    "(three keepalive intervals)", base, stream_limit_ms(sink) / 1000);
		else
			snprintf(why, whylen, "cannot reach the control server at %s: %s", base,
			    cerr[0] ? cerr : curl_easy_strerror(cr));
		return *status ? ERR_IO : ERR_UNAVAILABLE;
	}
	r = 0;
	if (stream) {
		snprintf(why, whylen, "the control server closed the map stream");
		r = ERR_IO;
	}
	return r;
}

/* The register body; flags: interactive login wanted, force a new one. */
static char *
register_body(struct control *c, const char *authkey, const char *hostname, bool interactive,
	      bool force)
{
	char nk[KEY_STR_MAX], dk[KEY_STR_MAX], *text;
	json_t *body;

	key_fmt(nk, "nodekey:", c->keys.node_pub);
	key_fmt(dk, "discokey:", c->keys.disco_pub);
	body = json_pack("{s:s, s:s, s:s}", "node_key", nk, "disco_key", dk, "hostname", hostname);
	if (body && authkey && *authkey)
		json_object_set_new(body, "auth_key", json_string(authkey));
	if (body && interactive)
		json_object_set_new(body, "interactive", json_true());
	if (body && force)
		json_object_set_new(body, "force_reauth", json_true());
	pthread_mutex_lock(&c->lock);
	if (body && c->advertised)
		json_object_set_new(body, "advertised_routes", json_deep_copy(c->advertised));
	if (body && c->tags)
		json_object_set_new(body, "tags", json_deep_copy(c->tags));
	pthread_mutex_unlock(&c->lock);
	text = body ? json_dumps(body, JSON_COMPACT) : NULL;
	json_decref(body);
	return text;
}

/* POSTs a register-family request; *resp: the answer object. */
static int
register_post(struct control *c, const char *path, char *text, long timeout_s, json_t **resp,
	      char *why, size_t whylen)
{
	struct sink sink = { .c = c, .timeout_s = timeout_s };
	long status;
	int r;

	*resp = NULL;
	if (text == NULL) {
		snprintf(why, whylen, "out of memory");
		return ERR_NOMEM;
	}
	buf_init(&sink.data, 1 << 20);
	/* Each server of the rotation once, while they cannot be reached: a
	 * caller that makes a new client per attempt (a restarted agent) still
	 * gets past a dead first URL. */
	for (size_t tries = 1; ; tries++) {
		size_t before = atomic_load(&c->cur), n;

		buf_reset(&sink.data);
		r = post(c, path, text, false, &sink, &status, why, whylen);
		pthread_mutex_lock(&c->lock);
		n = c->nurls + c->nlearned;
		pthread_mutex_unlock(&c->lock);
		if (r == 0 || atomic_load(&c->cur) == before || tries >= n || atomic_load(&c->stop))
			break;
	}
	free_secret(text);
	if (r == 0) {
		*resp = json_loadb((const char *)sink.data.data, sink.data.len, 0, NULL);
		if (!json_is_object(*resp)) {
			snprintf(why, whylen, "control server sent a malformed registration reply");
			json_decref(*resp);
			*resp = NULL;
			r = ERR_PROTOCOL;
		}
	}
	buf_cleanup(&sink.data);
	return r;
}

int
control_register(struct control *c, const char *authkey, const char *hostname, json_t **node,
		 char *why, size_t whylen)
{
	json_t *resp;
	int r;

	*node = NULL;
	r = register_post(c, "/machine/register", register_body(c, authkey, hostname, false, false),
	    0, &resp, why, whylen);
	if (r == 0 && !json_is_object(json_object_get(resp, "node"))) {
		snprintf(why, whylen, "control server sent a malformed registration reply");
		r = ERR_PROTOCOL;
	} else if (r == 0) {
		*node = json_incref(json_object_get(resp, "node"));
	}
	json_decref(resp);
	return r;
}

int
control_register_interactive(struct control *c, const char *hostname, bool force, json_t **node,
			     char **auth_url, char **auth_id, char *why, size_t whylen)
{
	json_t *resp;
	const char *u, *id;
	int r;

	*node = NULL;
	*auth_url = *auth_id = NULL;
	r = register_post(c, "/machine/register", register_body(c, NULL, hostname, true, force), 0,
	    &resp, why, whylen);
	if (r != 0)
		return r;
	u = json_string_value(json_object_get(resp, "auth_url"));
	id = json_string_value(json_object_get(resp, "auth_id"));
	if (json_is_object(json_object_get(resp, "node"))) {
		*node = json_incref(json_object_get(resp, "node"));
	} else if (u && id) {
		*auth_url = strdup(u);
		*auth_id = strdup(id);
		if (*auth_url == NULL || *auth_id == NULL) {
			free(*auth_url);
			free(*auth_id);
			*auth_url = *auth_id = NULL;
			r = ERR_NOMEM;
		}
	} else {
		snprintf(why, whylen, "control server sent a malformed registration reply");
		r = ERR_PROTOCOL;
	}
	json_decref(resp);
	return r;
}

int
control_register_wait(struct control *c, const char *auth_id, json_t **node, char **login,
		      char *why, size_t whylen)
{
	json_t *body = json_pack("{s:s}", "auth_id", auth_id), *resp;
	const char *state;
	char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
	int r;

	json_decref(body);
	*node = NULL;
	*login = NULL;
	r = register_post(c, "/machine/register/wait", text, CONTROL_WAIT_S, &resp, why, whylen);
	if (r != 0)
		return r;
	state = json_string_value(json_object_get(resp, "state"));
	if (state && strcmp(state, "pending") == 0) {
		r = ERR_TIMEOUT;
	} else if (state && strcmp(state, "done") == 0 &&
	    json_is_object(json_object_get(resp, "node"))) {
		const char *l = json_string_value(json_object_get(resp, "login"));

		*node = json_incref(json_object_get(resp, "node"));
		*login = strdup(l ? l : "");
	} else {
		const char *e = json_string_value(json_object_get(resp, "error"));

		snprintf(why, whylen, "%s", e ? e : "the login failed");
		r = state && strcmp(state, "expired") == 0 ? ERR_EXPIRED : ERR_FORBIDDEN;
	}
	json_decref(resp);
	return r;
}

/* Sleeps up to ms unless stopping; returns true when stopping. */
static bool
nap(struct control *c, int64_t ms)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += ms / 1000;
	ts.tv_nsec += (ms % 1000) * 1000000;
	if (ts.tv_nsec >= 1000000000) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000;
	}
	pthread_mutex_lock(&c->lock);
	while (!atomic_load(&c->stop))
		if (pthread_cond_timedwait(&c->cond, &c->lock, &ts) != 0)
			break;
	pthread_mutex_unlock(&c->lock);
	return atomic_load(&c->stop);
}

static int64_t
jitter(int64_t ms)
{
	return ms * 3 / 4 + (int64_t)random_u32((uint32_t)(ms / 2) + 1);
}

static void *
stream_main(void *arg)
{
	struct control *c = arg;
	int64_t backoff = CONTROL_BACKOFF_MIN_MS;
	char why[512], body[512], host[320];
	struct utsname u;
	json_t *hi;
	char *hit;

	/* What the admin console shows as the node's OS and agent version. */
	if (uname(&u) != 0)
		memset(&u, 0, sizeof(u));
	for (char *p = u.sysname; *p; p++)
		*p = (char)((*p >= 'A' && *p <= 'Z') ? *p - 'A' + 'a' : *p);
	for (char *p = u.release; *p; p++)	/* the server takes printable ASCII */
		if (*p < 0x20 || *p > 0x7e)
			*p = '?';
	hi = json_pack("{s:s%, s:s%, s:s}", "os", u.sysname, strnlen(u.sysname, 63),
	    "os_version", u.release, strnlen(u.release, 63), "client_version", WM_VERSION);
	hit = hi ? json_dumps(hi, JSON_COMPACT) : NULL;
	json_decref(hi);
	snprintf(host, sizeof(host), "%s", hit && strlen(hit) < sizeof(host) ? hit : "{}");
	free(hit);

	while (!atomic_load(&c->stop)) {
		struct sink sink = { .c = c, .stream = true };
		int64_t t0 = time_mono_ms();
		long status;

		snprintf(body, sizeof(body), "{\"version\":%" PRIu64 ",\"hostinfo\":%s}",
		    control_version(c), host);
		buf_init(&sink.data, CONTROL_MAX_LINE);
		(void)!post(c, "/machine/map", body, true, &sink, &status, why, sizeof(why));
		buf_cleanup(&sink.data);
		if (atomic_load(&c->stop))
			break;
		if (c->cb.state)
			c->cb.state(c->cb.ctx, false, why);
		if (sink.got_line && time_mono_ms() - t0 > 10000)
			backoff = CONTROL_BACKOFF_MIN_MS;
		log_info("msg=\"map stream ended; retrying\" why=\"%s\" retry_ms=%" PRId64, why, backoff);
		if (nap(c, jitter(backoff)))
			break;
		backoff = backoff * 2 > CONTROL_BACKOFF_MAX_MS ? CONTROL_BACKOFF_MAX_MS : backoff * 2;
	}
	return NULL;
}

static void *
endpoints_main(void *arg)
{
	struct control *c = arg;
	int64_t backoff = CONTROL_BACKOFF_MIN_MS;

	pthread_mutex_lock(&c->lock);
	while (!atomic_load(&c->stop)) {
		char *body, why[512];
		struct sink sink = { .c = c };
		long status;
		int r;

		if (c->ep_body == NULL) {
			pthread_cond_wait(&c->cond, &c->lock);
			continue;
		}
		body = c->ep_body;
		c->ep_body = NULL;
		pthread_mutex_unlock(&c->lock);
		buf_init(&sink.data, 1 << 16);
		r = post(c, "/machine/endpoints", body, false, &sink, &status, why, sizeof(why));
		buf_cleanup(&sink.data);
		if (r == 0) {
			backoff = CONTROL_BACKOFF_MIN_MS;
			free(body);
			pthread_mutex_lock(&c->lock);
			continue;
		}
		log_info("msg=\"endpoint report failed; retrying\" why=\"%s\"", why);
		pthread_mutex_lock(&c->lock);
		if (c->ep_body == NULL)	/* nothing newer: retry this one */
			c->ep_body = body;
		else
			free(body);
		pthread_mutex_unlock(&c->lock);
		if (nap(c, jitter(backoff))) {
			pthread_mutex_lock(&c->lock);
			break;
		}
		backoff = backoff * 2 > CONTROL_BACKOFF_MAX_MS ? CONTROL_BACKOFF_MAX_MS : backoff * 2;
		pthread_mutex_lock(&c->lock);
	}
	pthread_mutex_unlock(&c->lock);
	return NULL;
}

int
control_start(struct control *c, uint64_t since)
{
	if (c->started)
		return ERR_EXISTS;
	atomic_store(&c->version, since);
	if (pthread_create(&c->stream_thr, NULL, stream_main, c) != 0)
		return ERR_INTERNAL;
	if (pthread_create(&c->ep_thr, NULL, endpoints_main, c) != 0) {
		atomic_store(&c->stop, true);
		pthread_join(c->stream_thr, NULL);
		return ERR_INTERNAL;
	}
	c->started = true;
	return 0;
}

void
control_set_tags(struct control *c, json_t *tags)
{
	pthread_mutex_lock(&c->lock);
	json_decref(c->tags);
	c->tags = tags ? json_deep_copy(tags) : NULL;
	pthread_mutex_unlock(&c->lock);
}

int
control_logout(struct control *c, char *why, size_t whylen)
{
	struct sink sink = { .c = c, .timeout_s = 10 };
	long status;
	int r;

	buf_init(&sink.data, 1 << 16);
	r = post(c, "/machine/logout", "{}", false, &sink, &status, why, whylen);
	buf_cleanup(&sink.data);
	return r;
}

int
control_withdraw_routes(struct control *c, int timeout_s, char *why, size_t whylen)
{
	static const char body[] = "{\"endpoints\":[],\"advertised_routes\":[]}";
	struct sink sink = { .c = c, .timeout_s = timeout_s };
	long status;
	int r;

	pthread_mutex_lock(&c->lock);	/* no later report may advertise them again */
	json_decref(c->advertised);
	c->advertised = json_array();
	free(c->ep_body);
	c->ep_body = NULL;
	pthread_mutex_unlock(&c->lock);
	buf_init(&sink.data, 1 << 16);
	r = post(c, "/machine/endpoints", body, false, &sink, &status, why, whylen);
	buf_cleanup(&sink.data);
	return r;
}

void
control_set_endpoints(struct control *c, const char *const *eps, size_t n, int home_derp)
{
	json_t *a = json_array(), *body;
	char *text;

	for (size_t i = 0; i < n && i < CONTROL_MAX_ENDPOINTS; i++)
		json_array_append_new(a, json_string(eps[i]));
	body = json_pack("{s:o, s:i}", "endpoints", a, "home_derp", home_derp);
	pthread_mutex_lock(&c->lock);
	if (body && c->advertised)
		json_object_set_new(body, "advertised_routes", json_deep_copy(c->advertised));
	pthread_mutex_unlock(&c->lock);
	text = body ? json_dumps(body, JSON_COMPACT) : NULL;
	json_decref(body);
	if (text == NULL)
		return;
	pthread_mutex_lock(&c->lock);
	free(c->ep_body);
	c->ep_body = text;
	pthread_cond_broadcast(&c->cond);
	pthread_mutex_unlock(&c->lock);
}
