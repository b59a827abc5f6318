// SPDX-License-Identifier: MIT
/*
 * OpenID Connect relying party: the `oidc` config block, discovery, the
 * login table (state -> nonce, PKCE verifier, purpose), the code exchange,
 * the JWKS cache and the allowed_* rules. oidc_token.c checks the token.
 *
 * A login's life: oidc_login_start() records {state, nonce, verifier} and
 * sends the browser to the provider with state, nonce and
 * S256(verifier); oidc_callback() takes the state out of the table (so it
 * works once), trades the code and the verifier for tokens, and verifies
 * the ID token with the nonce. Nothing here writes the database.
 */
#include <ctype.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include <curl/curl.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <sodium.h>

#include "common/buf.h"
#include "common/curlx.h"
#include "common/log.h"
#include "common/util.h"
#include "server/oidc.h"
#include "server/oidc_token.h"

enum {
	DISCOVERY_TTL_S = 3600,
	JWKS_REFETCH_MIN_S = 2,		/* unknown kid: refetch at most this often */
	RESPONSE_MAX = 1 << 20,
	RAND_LEN = 32,			/* bytes of state, nonce, verifier */
	RAND_B64 = 44,			/* their base64url text + NUL */
};

struct pending {
	bool used;
	char state[RAND_B64];
	char nonce[RAND_B64];
	char verifier[RAND_B64];
	int purpose;
	char ref[OIDC_REF_MAX];
	int64_t expires_s;
};

struct oidc {
	struct oidc_config cfg;
	char redirect_uri[600];
	char *secret;			/* wiped on free */
	pthread_mutex_t mu;
	/* discovery, under mu */
	int64_t disc_at;
	char auth_ep[1024];
	char token_ep[1024];
	char jwks_uri[1024];
	json_t *jwks;			/* cached key set */
	int64_t jwks_at;
	struct pending *logins;		/* OIDC_LOGINS_MAX */
};

/* ---- config ---- */

void
oidc_config_defaults(struct oidc_config *c)
{
	memset(c, 0, sizeof(*c));
	str_copy(c->scope, "openid profile email", sizeof(c->scope));
	str_copy(c->groups_claim, "groups", sizeof(c->groups_claim));
	c->expiry_s = -1;
	c->require_email_verified = true;
	c->timeout_s = OIDC_DEFAULT_TIMEOUT_S;
	c->skew_s = OIDC_DEFAULT_SKEW_S;
}

static int
get_str(json_t *o, const char *key, char *out, size_t n, char *why, size_t whylen)
{
	json_t *v = json_object_get(o, key);

	if (v == NULL)
		return 0;
	if (!json_is_string(v) || json_string_length(v) >= n) {
		snprintf(why, whylen, "\"%s\" must be a string of at most %zu bytes", key, n - 1);
		return ERR_INVALID;
	}
	str_copy(out, json_string_value(v), n);
	return 0;
}

static int
get_list(json_t *o, const char *key, char out[][OIDC_ITEM_MAX], int *n, char *why, size_t whylen)
{
	json_t *v = json_object_get(o, key), *e;
	size_t i;

	*n = 0;
	if (v == NULL)
		return 0;
	if (!json_is_array(v) || json_array_size(v) > OIDC_LIST_MAX) {
		snprintf(why, whylen, "\"%s\" must be an array of at most %d strings", key, OIDC_LIST_MAX);
		return ERR_INVALID;
	}
	json_array_foreach(v, i, e) {
		if (!json_is_string(e) || json_string_length(e) == 0 ||
		    json_string_length(e) >= OIDC_ITEM_MAX) {
			snprintf(why, whylen, "\"%s\"[%zu] must be a non-empty string", key, i);
			return ERR_INVALID;
		}
		str_copy(out[(*n)++], json_string_value(e), OIDC_ITEM_MAX);
	}
	return 0;
}

static int
get_bool(json_t *o, const char *key, bool *out, char *why, size_t whylen)
{
	json_t *v = json_object_get(o, key);

	if (v == NULL)
		return 0;
	if (!json_is_boolean(v)) {
		snprintf(why, whylen, "\"%s\" must be true or false", key);
		return ERR_INVALID;
	}
	*out = json_is_true(v);
	return 0;
}

static int
get_dur(json_t *o, const char *key, int64_t *out, char *why, size_t whylen)
{
	json_t *v = json_object_get(o, key);

	if (v == NULL)
		return 0;
	if (!json_is_string(v) || duration_parse(json_string_value(v), out) != 0) {
		snprintf(why, whylen, "\"%s\" must be a duration such as 30s, 12h or 180d", key);
		return ERR_INVALID;
	}
	return 0;
}

int
oidc_config_parse(struct oidc_config *c, const void *json_object, char *why, size_t whylen)
{
	static const char *const known[] = { "issuer", "client_id", "client_secret",
	    "client_secret_path", "scope", "extra_params", "allowed_domains", "allowed_users",
	    "allowed_groups", "groups_claim", "expiry", "strip_email_domain",
	    "require_email_verified", "timeout", "clock_skew", "admin_users", "admin_groups" };
	json_t *o = (json_t *)json_object, *v;
	const char *key;
	int r;

	json_object_foreach(o, key, v) {
		bool ok = false;

		for (size_t i = 0; i < ARRAY_SIZE(known); i++)
			ok |= strcmp(known[i], key) == 0;
		if (!ok) {
			snprintf(why, whylen, "unknown option \"%s\"", key);
			return ERR_INVALID;
		}
	}
	if ((r = get_str(o, "issuer", c->issuer, sizeof(c->issuer), why, whylen)) != 0 ||
	    (r = get_str(o, "client_id", c->client_id, sizeof(c->client_id), why, whylen)) != 0 ||
	    (r = get_str(o, "client_secret", c->client_secret, sizeof(c->client_secret), why,
	    whylen)) != 0 ||
	    (r = get_str(o, "client_secret_path", c->client_secret_path,
	    sizeof(c->client_secret_path), why, whylen)) != 0 ||
	    (r = get_str(o, "scope", c->scope, sizeof(c->scope), why, whylen)) != 0 ||
	    (r = get_str(o, "groups_claim", c->groups_claim, sizeof(c->groups_claim), why,
	    whylen)) != 0 ||
	    (r = get_list(o, "allowed_domains", c->allowed_domains, &c->n_allowed_domains, why,
	    whylen)) != 0 ||
	    (r = get_list(o, "allowed_users", c->allowed_users, &c->n_allowed_users, why,
	    whylen)) != 0 ||
	    (r = get_list(o, "allowed_groups", c->allowed_groups, &c->n_allowed_groups, why,
	    whylen)) != 0 ||
	    (r = get_list(o, "admin_users", c->admin_users, &c->n_admin_users, why, whylen)) != 0 ||
	    (r = get_list(o, "admin_groups", c->admin_groups, &c->n_admin_groups, why,
	    whylen)) != 0 ||
	    (r = get_bool(o, "strip_email_domain", &c->strip_email_domain, why, whylen)) != 0 ||
	    (r = get_bool(o, "require_email_verified", &c->require_email_verified, why,
	    whylen)) != 0 ||
	    (r = get_dur(o, "timeout", &c->timeout_s, why, whylen)) != 0 ||
	    (r = get_dur(o, "clock_skew", &c->skew_s, why, whylen)) != 0)
		return r;
	if ((v = json_object_get(o, "expiry")) != NULL) {
		if (json_is_string(v) && strcmp(json_string_value(v), "from token") == 0) {
			c->expiry_from_token = true;
		} else if (json_is_string(v) && strcmp(json_string_value(v), "never") == 0) {
			c->expiry_s = 0;
		} else if ((r = get_dur(o, "expiry", &c->expiry_s, why, whylen)) != 0) {
			snprintf(why, whylen, "\"expiry\" must be a duration (180d), \"never\" or "
			    "\"from token\"");
			return r;
		}
	}
	if ((v = json_object_get(o, "extra_params")) != NULL) {
		const char *k;
		json_t *pv;
		size_t used = 0;

		if (!json_is_object(v)) {
			snprintf(why, whylen, "\"extra_params\" must be an object of strings");
			return ERR_INVALID;
		}
		c->extra_params[0] = 0;
		json_object_foreach(v, k, pv) {
			char *ek, *ev;
			int n;

			if (!json_is_string(pv)) {
				snprintf(why, whylen, "\"extra_params\".%s must be a string", k);
				return ERR_INVALID;
			}
			ek = curl_escape(k, 0);
			ev = curl_escape(json_string_value(pv), 0);
			n = ek && ev ? snprintf(c->extra_params + used, sizeof(c->extra_params) - used,
			    "&%s=%s", ek, ev) : -1;
			curl_free(ek);
			curl_free(ev);
			if (n < 0 || (size_t)n >= sizeof(c->extra_params) - used) {
				snprintf(why, whylen, "\"extra_params\" is too long");
				return ERR_INVALID;
			}
			used += (size_t)n;
		}
	}
	if (c->issuer[0] == 0 || c->client_id[0] == 0) {
		snprintf(why, whylen, "\"issuer\" and \"client_id\" are required");
		return ERR_INVALID;
	}
	if (strncmp(c->issuer, "https://", 8) != 0 && strncmp(c->issuer, "http://", 7) != 0) {
		snprintf(why, whylen, "\"issuer\" must be an https:// URL");
		return ERR_INVALID;
	}
	if (c->client_secret[0] && c->client_secret_path[0]) {
		snprintf(why, whylen, "give \"client_secret\" or \"client_secret_path\", not both");
		return ERR_INVALID;
	}
	if (c->timeout_s <= 0)
		c->timeout_s = OIDC_DEFAULT_TIMEOUT_S;
	c->enabled = true;
	return 0;
}

/* ---- life ---- */

static char *
read_secret(const char *path, char *why, size_t whylen)
{
	FILE *f = fopen(path, "rb");
	char buf[1024];
	size_t n;
	struct stat st;

	if (f == NULL) {
		snprintf(why, whylen, "cannot read client_secret_path %s", path);
		return NULL;
	}
	if (fstat(fileno(f), &st) == 0 && (st.st_mode & 077))
		log_warn("msg=\"oidc: the client secret file is readable by others; chmod 600\" "
		    "path=%s", path);
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' '))
		n--;
	buf[n] = 0;
	if (n == 0) {
		snprintf(why, whylen, "client_secret_path %s is empty", path);
		return NULL;
	}
	{
		char *s = strdup(buf);

		wipe(buf, sizeof(buf));
		return s;
	}
}

int
oidc_new(const struct oidc_config *cfg, const char *redirect_uri, struct oidc **out, char *why,
	 size_t whylen)
{
	struct oidc *o = calloc(1, sizeof(*o));

	*out = NULL;
	if (o == NULL || (o->logins = calloc(OIDC_LOGINS_MAX, sizeof(*o->logins))) == NULL) {
		free(o);
		snprintf(why, whylen, "out of memory");
		return ERR_NOMEM;
	}
	o->cfg = *cfg;
	str_copy(o->redirect_uri, redirect_uri, sizeof(o->redirect_uri));
	if (cfg->client_secret_path[0])
		o->secret = read_secret(cfg->client_secret_path, why, whylen);
	else
		o->secret = strdup(cfg->client_secret);
	wipe(o->cfg.client_secret, sizeof(o->cfg.client_secret));
	if (o->secret == NULL) {
		free(o->logins);
		free(o);
		if (why[0] == 0)
			snprintf(why, whylen, "out of memory");
		return ERR_INVALID;
	}
	pthread_mutex_init(&o->mu, NULL);
	*out = o;
	return 0;
}

void
oidc_free(struct oidc *o)
{
	if (o == NULL)
		return;
	free_secret(o->secret);
	json_decref(o->jwks);
	wipe(o->logins, OIDC_LOGINS_MAX * sizeof(*o->logins));
	free(o->logins);
	pthread_mutex_destroy(&o->mu);
	free(o);
}

/* ---- talking to the provider ---- */

struct sink {
	struct buf b;
	bool too_big;
};

static size_t
on_data(char *p, size_t size, size_t n, void *ctx)
{
	struct sink *s = ctx;

	if (s->b.len + size * n > RESPONSE_MAX || buf_append(&s->b, p, size * n) != 0) {
		s->too_big = true;
		return 0;
	}
	return size * n;
}

/*
 * GET url (form == NULL) or POST the form with HTTP basic client
 * authentication. 0 with *status and the body, or an error with *status
 * 502 (unreachable) / 504 (timeout) and why.
 */
static int
fetch(struct oidc *o, const char *url, const char *form, bool auth, long *status,
      struct sink *sink, char *why, size_t whylen)
{
	const char *ca = getenv("SSL_CERT_FILE");
	char err[CURL_ERROR_SIZE], *uid = NULL, *usec = NULL;
	struct curl_slist *h = NULL;
	CURLcode cr;
	CURL *k;

	*status = 0;
	memset(sink, 0, sizeof(*sink));
	buf_init(&sink->b, RESPONSE_MAX);
	if ((k = curlx_new(url, on_data, sink, err, ca)) == NULL) {
		snprintf(why, whylen, "out of memory");
		return ERR_NOMEM;
	}
	h = curl_slist_append(h, "Accept: application/json");
	curl_easy_setopt(k, CURLOPT_HTTPHEADER, h);
	curl_easy_setopt(k, CURLOPT_TIMEOUT, (long)o->cfg.timeout_s);
	curl_easy_setopt(k, CURLOPT_CONNECTTIMEOUT, (long)o->cfg.timeout_s);
	curl_easy_setopt(k, CURLOPT_FOLLOWLOCATION, 0L);
	if (form) {
		curl_easy_setopt(k, CURLOPT_POSTFIELDS, form);
		if (auth) {
			/* RFC 6749 2.3.1: both parts form-encoded inside Basic. */
			uid = curl_easy_escape(k, o->cfg.client_id, 0);
			usec = curl_easy_escape(k, o->secret, 0);
			curl_easy_setopt(k, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
			curl_easy_setopt(k, CURLOPT_USERNAME, uid ? uid : "");
			curl_easy_setopt(k, CURLOPT_PASSWORD, usec ? usec : "");
		}
	}
	cr = curl_easy_perform(k);
	curl_easy_getinfo(k, CURLINFO_RESPONSE_CODE, status);
	curl_slist_free_all(h);
	if (usec)
		wipe(usec, strlen(usec));
	curl_free(uid);
	curl_free(usec);
	curl_easy_cleanup(k);
	if (cr == CURLE_OPERATION_TIMEDOUT) {
		snprintf(why, whylen, "the identity provider did not answer within %" PRId64 " s",
		    o->cfg.timeout_s);
		*status = 504;
		return ERR_TIMEOUT;
	}
	if (cr != CURLE_OK) {
		snprintf(why, whylen, "cannot reach the identity provider: %s",
		    sink->too_big ? "answer too large" : err[0] ? err : curl_easy_strerror(cr));
		*status = 502;
		return ERR_UNAVAILABLE;
	}
	return 0;
}

static json_t *
sink_json(struct sink *s)
{
	json_t *j = json_loadb((const char *)s->b.data, s->b.len, 0, NULL);

	if (j && !json_is_object(j)) {
		json_decref(j);
		j = NULL;
	}
	return j;
}

/* Fetches the discovery document when it is missing or old (mu not held). */
static int
discover(struct oidc *o, int *status, char *why, size_t whylen)
{
	char url[700];
	struct sink sink;
	json_t *d;
	long st;
	const char *iss, *a, *t, *j;
	int r;

	pthread_mutex_lock(&o->mu);
	r = o->disc_at && time_now_s() - o->disc_at < DISCOVERY_TTL_S;
	pthread_mutex_unlock(&o->mu);
	if (r)
		return 0;
	snprintf(url, sizeof(url), "%.*s/.well-known/openid-configuration",
	    (int)(strlen(o->cfg.issuer) - (o->cfg.issuer[strlen(o->cfg.issuer) - 1] == '/')),
	    o->cfg.issuer);
	if ((r = fetch(o, url, NULL, false, &st, &sink, why, whylen)) != 0) {
		*status = (int)st;
		buf_cleanup(&sink.b);
		return r;
	}
	d = st == 200 ? sink_json(&sink) : NULL;
	buf_cleanup(&sink.b);
	iss = json_string_value(json_object_get(d, "issuer"));
	a = json_string_value(json_object_get(d, "authorization_endpoint"));
	t = json_string_value(json_object_get(d, "token_endpoint"));
	j = json_string_value(json_object_get(d, "jwks_uri"));
	*status = 502;
	if (d == NULL || iss == NULL || a == NULL || t == NULL || j == NULL) {
		snprintf(why, whylen, "the identity provider's discovery document is not usable "
		    "(HTTP %ld from %s)", st, url);
		json_decref(d);
		return ERR_PROTOCOL;
	}
	if (strcmp(iss, o->cfg.issuer) != 0) {
		snprintf(why, whylen, "the identity provider calls itself %.200s, not %.200s (set "
		    "issuer exactly as its discovery document says)", iss, o->cfg.issuer);
		json_decref(d);
		return ERR_PROTOCOL;
	}
	pthread_mutex_lock(&o->mu);
	str_copy(o->auth_ep, a, sizeof(o->auth_ep));
	str_copy(o->token_ep, t, sizeof(o->token_ep));
	if (strcmp(o->jwks_uri, j) != 0) {
		json_decref(o->jwks);
		o->jwks = NULL;
		o->jwks_at = 0;
	}
	str_copy(o->jwks_uri, j, sizeof(o->jwks_uri));
	o->disc_at = time_now_s();
	pthread_mutex_unlock(&o->mu);
	json_decref(d);
	log_info("msg=\"oidc: discovered the identity provider\" issuer=%s", o->cfg.issuer);
	return 0;
}

/* The key set: cached, or fetched when missing or when `refresh` asks
 * (an unknown kid: the provider rotated keys). New reference. */
static json_t *
jwks_get(struct oidc *o, bool refresh, int *status, char *why, size_t whylen)
{
	char uri[1024];
	struct sink sink;
	json_t *k;
	long st;

	pthread_mutex_lock(&o->mu);
	if (o->jwks && (!refresh || time_now_s() - o->jwks_at < JWKS_REFETCH_MIN_S)) {
		k = json_incref(o->jwks);
		pthread_mutex_unlock(&o->mu);
		return k;
	}
	str_copy(uri, o->jwks_uri, sizeof(uri));
	pthread_mutex_unlock(&o->mu);
	if (fetch(o, uri, NULL, false, &st, &sink, why, whylen) != 0) {
		*status = (int)st;
		buf_cleanup(&sink.b);
		return NULL;
	}
	k = st == 200 ? sink_json(&sink) : NULL;
	buf_cleanup(&sink.b);
	if (!json_is_array(json_object_get(k, "keys"))) {
		snprintf(why, whylen, "the identity provider's key set (jwks_uri) is not usable "
		    "(HTTP %ld)", st);
		json_decref(k);
		*status = 502;
		return NULL;
	}
	pthread_mutex_lock(&o->mu);
	json_decref(o->jwks);
	o->jwks = json_incref(k);
	o->jwks_at = time_now_s();
	pthread_mutex_unlock(&o->mu);
	log_info("msg=\"oidc: fetched the provider's keys\" keys=%zu refresh=%s",
	    json_array_size(json_object_get(k, "keys")), refresh ? "true" : "false");
	return k;
}

/* ---- login start ---- */

static void
rand_text(char out[static RAND_B64])
{
	uint8_t b[RAND_LEN];

	random_bytes(b, sizeof(b));
	oidc_b64url_encode(out, RAND_B64, b, sizeof(b));
	wipe(b, sizeof(b));
}

int
oidc_login_start(struct oidc *o, int purpose, const char *ref, char **url, int *status,
		 char *why, size_t whylen)
{
	struct pending *p = NULL;
	uint8_t dig[SHA256_DIGEST_LENGTH];
	char challenge[RAND_B64], state[RAND_B64], nonce[RAND_B64], aep[1024];
	char *cid = NULL, *ruri = NULL, *scope = NULL;
	int64_t now = time_now_s();
	int r;

	*url = NULL;
	if ((r = discover(o, status, why, whylen)) != 0)
		return r;
	pthread_mutex_lock(&o->mu);
	for (size_t i = 0; i < OIDC_LOGINS_MAX; i++) {
		struct pending *q = &o->logins[i];

		if (q->used && q->expires_s <= now) {
			wipe(q, sizeof(*q));	/* an abandoned login */
		}
		if (!q->used && p == NULL)
			p = q;
	}
	if (p == NULL) {
		pthread_mutex_unlock(&o->mu);
		snprintf(why, whylen, "too many logins are in progress; try again in a few minutes");
		*status = 503;
		return ERR_EXHAUSTED;
	}
	memset(p, 0, sizeof(*p));
	p->used = true;
	rand_text(p->state);
	rand_text(p->nonce);
	rand_text(p->verifier);
	p->purpose = purpose;
	str_copy(p->ref, ref, sizeof(p->ref));
	p->expires_s = now + OIDC_LOGIN_TTL_S;
	SHA256((const unsigned char *)p->verifier, strlen(p->verifier), dig);
	oidc_b64url_encode(challenge, sizeof(challenge), dig, sizeof(dig));
	str_copy(state, p->state, sizeof(state));
	str_copy(nonce, p->nonce, sizeof(nonce));
	str_copy(aep, o->auth_ep, sizeof(aep));	/* a rediscovery may rewrite it */
	pthread_mutex_unlock(&o->mu);
	cid = curl_escape(o->cfg.client_id, 0);
	ruri = curl_escape(o->redirect_uri, 0);
	scope = curl_escape(o->cfg.scope, 0);
	if (cid && ruri && scope) {
		const char *sep = strchr(aep, '?') ? "&" : "?";
		size_t len = strlen(aep) + strlen(cid) + strlen(ruri) + strlen(scope) +
		    strlen(o->cfg.extra_params) + 3 * RAND_B64 + 200;

		if ((*url = malloc(len)) != NULL)
			snprintf(*url, len, "%s%sresponse_type=code&client_id=%s&redirect_uri=%s"
			    "&scope=%s&state=%s&nonce=%s&code_challenge=%s"
			    "&code_challenge_method=S256%s", aep, sep, cid, ruri, scope, state,
			    nonce, challenge, o->cfg.extra_params);
	}
	curl_free(cid);
	curl_free(ruri);
	curl_free(scope);
	wipe(nonce, sizeof(nonce));
	wipe(state, sizeof(state));
	if (*url == NULL) {
		snprintf(why, whylen, "out of memory");
		*status = 503;
		return ERR_NOMEM;
	}
	return 0;
}

/* ---- callback ---- */

/* Takes the login of `state` out of the table (it works once). */
static int
take_login(struct oidc *o, const char *state, struct pending *out)
{
	int r = ERR_NOT_FOUND;

	if (state == NULL || strlen(state) != RAND_B64 - 1)
		return r;
	pthread_mutex_lock(&o->mu);
	for (size_t i = 0; i < OIDC_LOGINS_MAX; i++) {
		struct pending *q = &o->logins[i];

		if (q->used && sodium_memcmp(q->state, state, RAND_B64 - 1) == 0) {
			*out = *q;
			wipe(q, sizeof(*q));
			r = out->expires_s > time_now_s() ? 0 : ERR_EXPIRED;
			break;
		}
	}
	pthread_mutex_unlock(&o->mu);
	return r;
}

/* Printable, short, for pages and logs: the provider's error text. */
static void
clean_text(char *out, size_t n, const char *in)
{
	size_t o = 0;

	for (const char *p = in ? in : ""; *p && o + 1 < n && o < 200; p++)
		out[o++] = (*p >= 0x20 && *p < 0x7f) ? *p : '?';
	out[o] = 0;
}

static bool
in_list(const char list[][OIDC_ITEM_MAX], int n, const char *v)
{
	for (int i = 0; i < n; i++)
		if (strcasecmp(list[i], v) == 0)
			return true;
	return false;
}

static const char *
claim_str(const json_t *c, const char *name)
{
	const char *v = json_string_value(json_object_get(c, name));

	return v && strlen(v) < OIDC_ITEM_MAX ? v : NULL;
}

/* Fills the identity from verified claims and applies the allowed_* rules. */
static int
identity(struct oidc *o, const json_t *c, struct oidc_identity *id, int *status, char *why,
	 size_t whylen)
{
	const char *email = claim_str(c, "email"), *pu = claim_str(c, "preferred_username");
	const char *name = claim_str(c, "name");
	const json_t *ev = json_object_get(c, "email_verified");
	const json_t *g = json_object_get(c, o->cfg.groups_claim), *gv;
	bool verified = json_is_true(ev) ||
	    (json_is_string(ev) && strcmp(json_string_value(ev), "true") == 0);
	const char *base;
	size_t i, k;
	int64_t exp = 0;

	*status = 403;
	str_copy(id->issuer, o->cfg.issuer, sizeof(id->issuer));
	str_copy(id->subject, json_string_value(json_object_get(c, "sub")), sizeof(id->subject));
	if (json_is_integer(json_object_get(c, "exp")))
		exp = (int64_t)json_integer_value(json_object_get(c, "exp"));
	id->expires_at = exp;
	if (email && o->cfg.require_email_verified && !verified) {
		snprintf(why, whylen, "the identity provider has not verified the email address of "
		    "this account (email_verified is not true)");
		return ERR_FORBIDDEN;
	}
	if (email)
		str_copy(id->email, email, sizeof(id->email));
	str_copy(id->preferred_username, pu ? pu : "", sizeof(id->preferred_username));
	str_copy(id->display_name, name ? name : pu ? pu : email ? email : "",
	    sizeof(id->display_name));
	if (json_is_string(g)) {
		clean_text(id->groups[0], OIDC_ITEM_MAX, json_string_value(g));
		id->ngroups = 1;
	} else if (json_is_array(g)) {
		json_array_foreach(g, i, gv)
			if (json_is_string(gv) && id->ngroups < OIDC_GROUPS_MAX &&
			    json_string_length(gv) < OIDC_ITEM_MAX)
				str_copy(id->groups[id->ngroups++], json_string_value(gv),
				    OIDC_ITEM_MAX);
	}
	/* The wiremesh user: the email (policies name users alice@example.com),
	 * else preferred_username, else the subject. */
	base = id->email[0] ? id->email : pu ? pu : id->subject;
	for (i = 0, k = 0; base[i] && k + 1 < sizeof(id->user); i++) {
		unsigned char ch = (unsigned char)base[i];

		if (o->cfg.strip_email_domain && ch == '@' && id->email[0])
			break;
		id->user[k++] = isalnum(ch) || strchr("._@+-", ch) ? (char)tolower(ch) : '-';
	}
	id->user[k] = 0;
	if (k == 0) {
		snprintf(why, whylen, "the identity provider gave no usable user name");
		return ERR_FORBIDDEN;
	}
	if (o->cfg.n_allowed_domains) {
		const char *at = id->email[0] ? strrchr(id->email, '@') : NULL;

		if (at == NULL || !in_list(o->cfg.allowed_domains, o->cfg.n_allowed_domains, at + 1)) {
			snprintf(why, whylen, "the email domain of this account is not allowed on this "
			    "network (allowed_domains)");
			return ERR_FORBIDDEN;
		}
	}
	if (o->cfg.n_allowed_users &&
	    !(id->email[0] && in_list(o->cfg.allowed_users, o->cfg.n_allowed_users, id->email)) &&
	    !(pu && in_list(o->cfg.allowed_users, o->cfg.n_allowed_users, pu)) &&
	    !in_list(o->cfg.allowed_users, o->cfg.n_allowed_users, id->user)) {
		snprintf(why, whylen, "this account is not allowed on this network (allowed_users)");
		return ERR_FORBIDDEN;
	}
	if (o->cfg.n_allowed_groups) {
		bool ok = false;

		for (int j = 0; j < id->ngroups; j++)
			ok |= in_list(o->cfg.allowed_groups, o->cfg.n_allowed_groups, id->groups[j]);
		if (!ok) {
			snprintf(why, whylen, "this account is in none of the groups allowed on this "
			    "network (allowed_groups)");
			return ERR_FORBIDDEN;
		}
	}
	return 0;
}

/* Trades the code for tokens; *id_token: malloc'd (a secret). */
static int
exchange(struct oidc *o, const char *code, const char *verifier, char **id_token, int *status,
	 char *why, size_t whylen)
{
	char *ecode = curl_escape(code, 0), *ever = curl_escape(verifier, 0);
	char *eruri = curl_escape(o->redirect_uri, 0), *form = NULL, tep[1024];
	struct sink sink;
	json_t *j = NULL;
	long st = 0;
	int r = ERR_NOMEM;
	size_t len;

	*id_token = NULL;
	*status = 503;
	if (ecode == NULL || ever == NULL || eruri == NULL)
		goto out;
	len = strlen(ecode) + strlen(ever) + strlen(eruri) + 128;
	if ((form = malloc(len)) == NULL)
		goto out;
	snprintf(form, len, "grant_type=authorization_code&code=%s&redirect_uri=%s&code_verifier=%s",
	    ecode, eruri, ever);
	pthread_mutex_lock(&o->mu);
	str_copy(tep, o->token_ep, sizeof(tep));
	pthread_mutex_unlock(&o->mu);
	if ((r = fetch(o, tep, form, true, &st, &sink, why, whylen)) != 0) {
		*status = (int)st;
		buf_cleanup(&sink.b);
		goto out;
	}
	j = sink_json(&sink);
	buf_cleanup(&sink.b);
	if (st != 200) {
		char e[64], d[256];

		clean_text(e, sizeof(e), json_string_value(json_object_get(j, "error")));
		clean_text(d, sizeof(d), json_string_value(json_object_get(j, "error_description")));
		if (strcmp(e, "invalid_grant") == 0) {
			snprintf(why, whylen, "the identity provider refused the authorization code "
			    "(invalid_grant: %s): it was already used, has expired, or does not "
			    "belong to this login", d);
			*status = 400;
		} else {
			snprintf(why, whylen, "the identity provider's token endpoint answered HTTP %ld "
			    "(%s%s%s)", st, e[0] ? e : "no error code", d[0] ? ": " : "", d);
			*status = 502;
		}
		r = ERR_UNAUTHORIZED;
		goto out;
	}
	if (!json_is_string(json_object_get(j, "id_token"))) {
		snprintf(why, whylen, "the identity provider sent no ID token (is \"openid\" in scope?)");
		*status = 502;
		r = ERR_PROTOCOL;
		goto out;
	}
	*id_token = strdup(json_string_value(json_object_get(j, "id_token")));
	r = *id_token ? 0 : ERR_NOMEM;
out:
	if (j) {	/* the access and refresh tokens are secrets too */
		const char *k;
		json_t *v;

		json_object_foreach(j, k, v)
			if (json_is_string(v))
				wipe((char *)json_string_value(v), json_string_length(v));
	}
	json_decref(j);
	curl_free(ecode);
	curl_free(ever);
	curl_free(eruri);
	free_secret(form);
	return r;
}

int
oidc_callback(struct oidc *o, struct http_request *req, struct oidc_login *login, int *status,
	      char *why, size_t whylen)
{
	const char *state = http_query(req, "state"), *code = http_query(req, "code");
	const char *err = http_query(req, "error");
	struct oidc_token_params tp;
	struct pending p;
	json_t *jwks = NULL, *claims = NULL;
	char *tok = NULL;
	int r;

	memset(login, 0, sizeof(*login));
	*status = 400;
	if ((r = take_login(o, state, &p)) != 0) {
		snprintf(why, whylen, r == ERR_EXPIRED ? "this login took too long (over %d minutes): "
		    "start again from the registration link" : "this login is not valid or was "
		    "already used (unknown state): start again from the registration link",
		    OIDC_LOGIN_TTL_S / 60);
		return r == ERR_EXPIRED ? r : ERR_INVALID;
	}
	if (err) {
		char e[64], d[256];

		clean_text(e, sizeof(e), err);
		clean_text(d, sizeof(d), http_query(req, "error_description"));
		snprintf(why, whylen, "the identity provider refused the login: %s%s%s", e,
		    d[0] ? ": " : "", d);
		*status = 403;
		r = ERR_FORBIDDEN;
		goto out;
	}
	if (code == NULL || *code == 0 || strlen(code) > 2048) {
		snprintf(why, whylen, "the identity provider sent no authorization code");
		r = ERR_INVALID;
		goto out;
	}
	if ((r = exchange(o, code, p.verifier, &tok, status, why, whylen)) != 0)
		goto out;
	memset(&tp, 0, sizeof(tp));
	tp.issuer = o->cfg.issuer;
	tp.client_id = o->cfg.client_id;
	tp.nonce = p.nonce;
	tp.now = time_now_s();
	tp.skew_s = o->cfg.skew_s;
	for (int attempt = 0; attempt < 2; attempt++) {
		json_decref(jwks);
		if ((jwks = jwks_get(o, attempt > 0, status, why, whylen)) == NULL) {
			r = ERR_UNAVAILABLE;
			goto out;
		}
		r = oidc_token_verify(tok, strlen(tok), jwks, &tp, &claims, why, whylen);
		if (r != ERR_NOT_FOUND)
			break;
	}
	if (r != 0) {
		*status = 401;
		goto out;
	}
	if ((r = identity(o, claims, &login->id, status, why, whylen)) != 0)
		goto out;
	login->purpose = p.purpose;
	str_copy(login->ref, p.ref, sizeof(login->ref));
	*status = 200;
	log_info("msg=\"oidc login\" user=%s groups=%d", login->id.user, login->id.ngroups);
out:
	json_decref(claims);
	json_decref(jwks);
	free_secret(tok);
	wipe(&p, sizeof(p));
	return r;
}

int64_t
oidc_node_expiry(const struct oidc *o, int64_t node_expiry_s, const struct oidc_identity *id,
		 int64_t now)
{
	if (o->cfg.expiry_from_token)
		return id->expires_at > now ? id->expires_at : now + 1;
	if (o->cfg.expiry_s >= 0)
		return o->cfg.expiry_s ? now + o->cfg.expiry_s : 0;
	return node_expiry_s ? now + node_expiry_s : 0;
}
