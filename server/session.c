// SPDX-License-Identifier: MIT
/*
 * Admin console sessions (see session.h): sign-in with an API key or a
 * one-time link, the session cookie and its CSRF token, idle and absolute
 * expiry, sign-out. Tokens are 32 random bytes shown to the browser as hex;
 * the store keeps their SHA-256 only and this file wipes them after use.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <sodium.h>

#include "common/jsonx.h"
#include "common/keys.h"
#include "common/log.h"
#include "common/util.h"
#include "server/html.h"
#include "server/oidc.h"
#include "server/secret.h"
#include "server/server.h"
#include "server/session.h"
#include "server/store.h"

enum {
	TOKEN_BYTES = 32,
	TOKEN_HEX = 2 * TOKEN_BYTES,
	CSRF_HEX = 32,
};

static const char cookie_tls[] = "__Host-wm_session";
static const char cookie_plain[] = "wm_session";

static bool
tls(const struct server *s)
{
	return s->cfg.tls_cert[0] != 0;
}

static void
token_hash(const char *token, uint8_t out[static STORE_HASH_LEN])
{
	crypto_hash_sha256(out, (const uint8_t *)token, strlen(token));
}

/* The CSRF token of a session: a hash of its token under another label. */
static void
csrf_of(const char *token, char out[static CSRF_HEX + 1])
{
	crypto_hash_sha256_state st;
	uint8_t h[crypto_hash_sha256_BYTES];

	crypto_hash_sha256_init(&st);
	crypto_hash_sha256_update(&st, (const uint8_t *)"wiremesh csrf v1:", 17);
	crypto_hash_sha256_update(&st, (const uint8_t *)token, strlen(token));
	crypto_hash_sha256_final(&st, h);
	(void)hex_encode(out, CSRF_HEX + 1, h, CSRF_HEX / 2);
	sodium_memzero(h, sizeof(h));
}

static void
new_token(char out[static TOKEN_HEX + 1])
{
	uint8_t b[TOKEN_BYTES];

	random_bytes(b, sizeof(b));
	(void)hex_encode(out, TOKEN_HEX + 1, b, sizeof(b));
	sodium_memzero(b, sizeof(b));
}

static bool
valid_token(const char *t)
{
	return strlen(t) == TOKEN_HEX && strspn(t, "0123456789abcdef") == TOKEN_HEX;
}

int
session_cookie_find(const char *header, const char *name, char *out, size_t outlen)
{
	size_t nl = strlen(name);

	if (outlen > 0)
		out[0] = 0;
	for (const char *p = header; p && *p;) {
		const char *end = strchr(p, ';');
		size_t len = end ? (size_t)(end - p) : strlen(p);

		while (len > 0 && (*p == ' ' || *p == '\t')) {
			p++;
			len--;
		}
		if (len > nl && strncmp(p, name, nl) == 0 && p[nl] == '=') {
			if (len - nl - 1 >= outlen)
				return ERR_TOO_LARGE;
			memcpy(out, p + nl + 1, len - nl - 1);
			out[len - nl - 1] = 0;
			return 0;
		}
		p = end ? end + 1 : NULL;
	}
	return ERR_NOT_FOUND;
}

static bool
session_cookie(struct server *s, struct http_request *req, char out[static TOKEN_HEX + 1])
{
	return session_cookie_find(http_header(req, "Cookie"), tls(s) ? cookie_tls : cookie_plain,
	    out, TOKEN_HEX + 1) == 0 && valid_token(out);
}

int
session_has_cookie(struct http_request *req)
{
	const char *h = http_header(req, "Cookie");

	return http_header(req, "Authorization") == NULL && h != NULL &&
	    strstr(h, "wm_session=") != NULL;
}

static int
set_cookie(struct server *s, struct http_response *resp, const char *token, int64_t max_age)
{
	char v[256];

	snprintf(v, sizeof(v), "%s=%s; Path=/; Max-Age=%" PRId64 "; HttpOnly; SameSite=Strict%s",
	    tls(s) ? cookie_tls : cookie_plain, token, max_age, tls(s) ? "; Secure" : "");
	return http_add_header(resp, "Set-Cookie", v);
}

/* The API key a session was opened with must still be good. */
static bool
apikey_good(struct server *s, const char *prefix, int64_t now)
{
	struct store_apikey k;

	if (prefix[0] == 0)
		return true;
	return store_apikey_get(s->store, prefix, &k) == 0 && k.revoked_at == 0 &&
	    (k.expires_at == 0 || k.expires_at > now);
}

/* A live session of kind "session" for `hash`, or ERR_UNAUTHORIZED. */
static int
lookup(struct server *s, const uint8_t hash[static STORE_HASH_LEN], struct store_session *ss,
       char *why, size_t whylen)
{
	int64_t now = time_now_s();
	int r = store_session_get(s->store, hash, ss);

	if (r == ERR_NOT_FOUND || (r == 0 && strcmp(ss->kind, "session") != 0)) {
		snprintf(why, whylen, "not signed in (no such session; it may have been signed out)");
		return ERR_UNAUTHORIZED;
	}
	if (r != 0) {
		snprintf(why, whylen, "cannot read the session");
		return r;
	}
	if (ss->expires_at <= now) {
		snprintf(why, whylen, "the session has expired; sign in again");
		return ERR_UNAUTHORIZED;
	}
	if (ss->last_used_at + s->cfg.admin_session_idle_s <= now) {
		snprintf(why, whylen, "the session expired after %" PRId64 " s without use; sign in again",
		    s->cfg.admin_session_idle_s);
		return ERR_UNAUTHORIZED;
	}
	if (!apikey_good(s, ss->apikey_prefix, now)) {
		snprintf(why, whylen, "the API key this session was opened with has expired");
		return ERR_UNAUTHORIZED;
	}
	return 0;
}

static bool
is_change(const char *method)
{
	return strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0;
}

int
session_authenticate(struct server *s, struct http_request *req, struct session_auth *out,
		     char *why, size_t whylen)
{
	char token[TOKEN_HEX + 1], csrf[CSRF_HEX + 1];
	struct store_session ss;
	const char *h;
	int r;

	memset(out, 0, sizeof(*out));
	if (!session_cookie(s, req, token)) {
		snprintf(why, whylen, "not signed in: send \"Authorization: Bearer <API key>\" "
		    "or the console's session cookie");
		return ERR_UNAUTHORIZED;
	}
	token_hash(token, out->token_hash);
	csrf_of(token, csrf);
	sodium_memzero(token, sizeof(token));
	if ((r = lookup(s, out->token_hash, &ss, why, whylen)) != 0)
		return r;
	h = http_header(req, "X-CSRF-Token");
	if (is_change(req->method) &&
	    (h == NULL || strlen(h) != CSRF_HEX || sodium_memcmp(h, csrf, CSRF_HEX) != 0)) {
		snprintf(why, whylen, "%s needs the session's CSRF token in the X-CSRF-Token header",
		    req->method);
		return ERR_FORBIDDEN;
	}
	if (ss.last_used_at < time_now_s() &&
	    store_session_touch(s->store, ss.id, time_now_s()) != 0)
		log_warn("msg=\"cannot record session use\" session_id=%" PRId64, ss.id);
	snprintf(out->who, sizeof(out->who), "session:%.110s", ss.subject);
	str_copy(out->apikey_prefix, ss.apikey_prefix, sizeof(out->apikey_prefix));
	out->session_id = ss.id;
	return 0;
}

int
session_live(struct server *s, const struct session_auth *a)
{
	struct store_session ss;
	char why[160];

	if (a->session_id == 0)
		return apikey_good(s, a->apikey_prefix, time_now_s());
	return lookup(s, a->token_hash, &ss, why, sizeof(why)) == 0 && ss.id == a->session_id;
}

static json_t *
session_json(struct server *s, const struct store_session *ss, const char *token)
{
	char csrf[CSRF_HEX + 1], exp[32], idle[32];
	int64_t idle_at = ss->last_used_at + s->cfg.admin_session_idle_s;
	json_t *o;

	csrf_of(token, csrf);
	time_fmt_rfc3339(exp, ss->expires_at);
	time_fmt_rfc3339(idle, idle_at < ss->expires_at ? idle_at : ss->expires_at);
	o = json_pack("{s:s, s:s, s:s, s:s, s:I, s:b}", "subject", ss->subject,
	    "csrf_token", csrf, "expires_at", exp, "idle_expires_at", idle,
	    "idle_timeout_s", (json_int_t)s->cfg.admin_session_idle_s, "tls", tls(s));
	sodium_memzero(csrf, sizeof(csrf));
	return o;
}

static bool
oidc_admins(const struct server *s)
{
	return s->oidc != NULL && (s->cfg.oidc.n_admin_users > 0 || s->cfg.oidc.n_admin_groups > 0);
}

/* Exchanges an API key or a one-time link for a session. */
static void
sign_in(struct server *s, struct http_request *req, struct http_response *resp)
{
	char why[256] = "", token[TOKEN_HEX + 1];
	const char *key = NULL, *link = NULL;
	struct store_session ss, used;
	int64_t now = time_now_s();
	json_t *body;
	int r;

	const char *ct = http_header(req, "Content-Type");

	/* A cross-site form can post text/plain but not application/json
	 * (that needs a CORS preflight, which this server never grants): no
	 * signing a victim's browser in to the attacker's session. */
	if (ct == NULL || strncasecmp(ct, "application/json", 16) != 0) {
		http_problem(resp, 415, "Unsupported Media Type", "sign-in takes Content-Type: application/json");
		return;
	}
	if (req->too_large || req->body.len > (size_t)s->cfg.max_body ||
	    (body = jsonx_parse_object((const char *)req->body.data, req->body.len,
	    (size_t)s->cfg.max_body, why, sizeof(why))) == NULL) {
		http_problem(resp, 400, NULL, "%s", why[0] ? why : "request body is too large");
		return;
	}
	if ((r = jsonx_str(body, "api_key", false, &key, why, sizeof(why))) == ERR_INVALID ||
	    (r = jsonx_str(body, "signin_token", false, &link, why, sizeof(why))) == ERR_INVALID ||
	    (key == NULL) == (link == NULL)) {
		json_decref(body);
		http_problem(resp, 400, NULL, "%s", why[0] ? why :
		    "send {\"api_key\": \"wm-api-...\"} or {\"signin_token\": \"...\"}");
		return;
	}
	memset(&ss, 0, sizeof(ss));
	if (key != NULL) {
		uint8_t hash[STORE_HASH_LEN];
		struct store_apikey k;

		if (secret_parse(SECRET_API, key, ss.apikey_prefix, hash) != 0 ||
		    store_apikey_get(s->store, ss.apikey_prefix, &k) != 0 ||
		    !secret_hash_equal(hash, k.hash) || !apikey_good(s, k.prefix, now)) {
			json_decref(body);
			http_problem(resp, 401, NULL, "API key is not valid or has expired");
			return;
		}
		snprintf(ss.subject, sizeof(ss.subject), "apikey:%s", k.prefix);
	} else {
		uint8_t hash[STORE_HASH_LEN];

		if (!valid_token(link)) {
			json_decref(body);
			http_problem(resp, 401, NULL, "sign-in link is not valid");
			return;
		}
		token_hash(link, hash);
		/* Taken (deleted) whatever comes next: a link is used once. */
		r = store_session_take(s->store, hash, &used);
		if (r != 0 || strcmp(used.kind, "onetime") != 0 || used.expires_at <= now ||
		    !apikey_good(s, used.apikey_prefix, now)) {
			json_decref(body);
			http_problem(resp, 401, NULL, "sign-in link is not valid, was used already "
			    "or has expired");
			return;
		}
		str_copy(ss.subject, used.subject, sizeof(ss.subject));
		str_copy(ss.apikey_prefix, used.apikey_prefix, sizeof(ss.apikey_prefix));
	}
	/* The key or link is not needed any more: wipe every copy we hold. */
	if (key)
		sodium_memzero((char *)key, strlen(key));
	if (link)
		sodium_memzero((char *)link, strlen(link));
	json_decref(body);
	new_token(token);
	token_hash(token, ss.hash);
	str_copy(ss.kind, "session", sizeof(ss.kind));
	ss.created_at = ss.last_used_at = now;
	ss.expires_at = now + s->cfg.admin_session_max_s;
	if ((r = store_session_insert(s->store, &ss, s->cfg.admin_session_idle_s,
	    SESSION_MAX)) != 0) {
		sodium_memzero(token, sizeof(token));
		if (r == ERR_EXHAUSTED)
			http_problem(resp, 429, NULL, "too many console sessions (%d); sign out "
			    "elsewhere or wait for them to expire", SESSION_MAX);
		else
			http_problem_err(resp, r, "cannot open a session");
		return;
	}
	if (set_cookie(s, resp, token, s->cfg.admin_session_max_s) != 0 ||
	    http_add_header(resp, "Cache-Control", "no-store") != 0) {
		sodium_memzero(token, sizeof(token));
		http_response_cleanup(resp);
		http_problem(resp, 500, NULL, "out of memory");
		return;
	}
	log_info("msg=\"console sign-in\" session_id=%" PRId64 " subject=%s via=%s client=%s",
	    ss.id, ss.subject, key ? "api_key" : "link", req->client);
	server_reply_json(resp, 201, session_json(s, &ss, token));
	sodium_memzero(token, sizeof(token));
}

void
session_handle(struct server *s, struct http_request *req, struct http_response *resp)
{
	struct session_auth a;
	struct store_session ss;
	char why[256], token[TOKEN_HEX + 1];
	int r;

	if (strcmp(req->method, "POST") == 0) {
		sign_in(s, req, resp);
		if (req->body.data)	/* it held an API key or a sign-in token */
			sodium_memzero(req->body.data, req->body.len);
		return;
	}
	if (strcmp(req->method, "GET") != 0 && strcmp(req->method, "DELETE") != 0) {
		http_problem(resp, 405, NULL, "%s is not supported on %s", req->method, req->path);
		return;
	}
	if ((r = session_authenticate(s, req, &a, why, sizeof(why))) != 0) {
		/* Also says how one may sign in (an RFC 7807 extension member). */
		json_t *o = json_pack("{s:s, s:s, s:i, s:s, s:[s]}", "type", "about:blank",
		    "title", r == ERR_FORBIDDEN ? "Forbidden" : "Unauthorized",
		    "status", err_http_status(r), "detail", why, "signin_methods", "api_key");
		char *t;

		if (o && oidc_admins(s))
			json_array_append_new(json_object_get(o, "signin_methods"), json_string("oidc"));
		t = o ? json_dumps(o, JSON_COMPACT) : NULL;
		json_decref(o);
		if (t == NULL)
			http_problem_err(resp, r, "%s", why);
		else
			http_set_body(resp, err_http_status(r), "application/problem+json", t, strlen(t));
		return;
	}
	if (strcmp(req->method, "DELETE") == 0) {
		if ((r = store_session_delete(s->store, a.session_id)) != 0 && r != ERR_NOT_FOUND) {
			http_problem_err(resp, r, "cannot end the session");
			return;
		}
		if (set_cookie(s, resp, "", 0) != 0) {
			http_problem(resp, 500, NULL, "out of memory");
			return;
		}
		log_info("msg=\"console sign-out\" session_id=%" PRId64, a.session_id);
		server_reply_json(resp, 200, json_pack("{s:b}", "signed_out", 1));
		return;
	}
	if (!session_cookie(s, req, token) || store_session_get(s->store, a.token_hash, &ss) != 0) {
		sodium_memzero(token, sizeof(token));
		http_problem(resp, 401, NULL, "not signed in");
		return;
	}
	if (http_add_header(resp, "Cache-Control", "no-store") != 0) {
		sodium_memzero(token, sizeof(token));
		http_problem(resp, 500, NULL, "out of memory");
		return;
	}
	server_reply_json(resp, 200, session_json(s, &ss, token));
	sodium_memzero(token, sizeof(token));
}

void
session_links_handle(struct server *s, struct http_request *req, struct http_response *resp,
		     const struct session_auth *a)
{
	char why[256] = "", token[TOKEN_HEX + 1], path[TOKEN_HEX + 32], exp[32];
	struct store_session ss;
	const char *e = NULL;
	int64_t ttl = SESSION_LINK_TTL_S;
	json_t *body = NULL;
	int r;

	if (strcmp(req->method, "POST") != 0) {
		http_problem(resp, 405, NULL, "%s is not supported on %s", req->method, req->path);
		return;
	}
	if (req->body.len > 0 && (body = jsonx_parse_object((const char *)req->body.data,
	    req->body.len, (size_t)s->cfg.max_body, why, sizeof(why))) == NULL) {
		http_problem(resp, 400, NULL, "%s", why);
		return;
	}
	r = body ? jsonx_str(body, "expiration", false, &e, why, sizeof(why)) : ERR_NOT_FOUND;
	if (r == ERR_INVALID || (r == 0 && (duration_parse(e, &ttl) != 0 || ttl <= 0 ||
	    ttl > 24 * 3600))) {
		json_decref(body);
		http_problem(resp, 400, NULL, "%s", why[0] ? why :
		    "expiration must be a duration of at most 24h, such as 10m");
		return;
	}
	json_decref(body);
	memset(&ss, 0, sizeof(ss));
	new_token(token);
	token_hash(token, ss.hash);
	str_copy(ss.kind, "onetime", sizeof(ss.kind));
	snprintf(ss.subject, sizeof(ss.subject), "link from %.100s", a->who);
	str_copy(ss.apikey_prefix, a->apikey_prefix, sizeof(ss.apikey_prefix));
	ss.created_at = ss.last_used_at = time_now_s();
	ss.expires_at = ss.created_at + ttl;
	if ((r = store_session_insert(s->store, &ss, s->cfg.admin_session_idle_s,
	    SESSION_MAX)) != 0) {
		sodium_memzero(token, sizeof(token));
		http_problem(resp, r == ERR_EXHAUSTED ? 429 : err_http_status(r), NULL,
		    "cannot create a sign-in link");
		return;
	}
	snprintf(path, sizeof(path), "/admin/#signin=%s", token);
	time_fmt_rfc3339(exp, ss.expires_at);
	log_info("msg=\"console sign-in link created\" by=%s expires_at=%s", a->who, exp);
	server_reply_json(resp, 201, json_pack("{s:s, s:s, s:s}", "signin_token", token,
	    "path", path, "expires_at", exp));
	sodium_memzero(token, sizeof(token));
	sodium_memzero(path, sizeof(path));
}

void
session_tick(struct server *s)
{
	static int64_t next;
	int64_t now = time_now_s();

	if (now < next)
		return;
	next = now + 60;
	if (store_session_purge(s->store, now, s->cfg.admin_session_idle_s) != 0)
		log_warn("msg=\"cannot delete expired console sessions\"");
}

/* ---- OpenID Connect sign-in for admins ---- */

void
session_oidc_start(struct server *s, struct http_request *req, struct http_response *resp)
{
	char why[512];
	char *url = NULL;
	int status = 502;

	if (strcmp(req->method, "GET") != 0) {
		http_problem(resp, 405, NULL, "%s is not supported on %s", req->method, req->path);
		return;
	}
	if (!oidc_admins(s)) {
		http_problem(resp, 404, NULL, "single sign-on for the console is not configured "
		    "(oidc block with admin_users or admin_groups)");
		return;
	}
	if (oidc_login_start(s->oidc, OIDC_FOR_ADMIN, "/admin/", &url, &status, why,
	    sizeof(why)) != 0) {
		log_warn("msg=\"console oidc sign-in cannot start\" status=%d why=\"%s\"", status, why);
		http_problem(resp, status, NULL, "%s", why);
		return;
	}
	http_set_body(resp, 302, NULL, NULL, 0);
	if (http_add_header(resp, "Location", url) != 0 ||
	    http_add_header(resp, "Cache-Control", "no-store") != 0) {
		http_response_cleanup(resp);
		http_problem(resp, 500, NULL, "out of memory");
	}
	free(url);
}

static bool
in_list(const char list[][OIDC_ITEM_MAX], int n, const char *v)
{
	for (int i = 0; v && v[0] && i < n; i++)
		if (strcasecmp(list[i], v) == 0)
			return true;
	return false;
}

static bool
is_admin(const struct oidc_config *c, const struct oidc_identity *id)
{
	if (in_list(c->admin_users, c->n_admin_users, id->email) ||
	    in_list(c->admin_users, c->n_admin_users, id->preferred_username) ||
	    in_list(c->admin_users, c->n_admin_users, id->user))
		return true;
	for (int i = 0; i < id->ngroups; i++)
		if (in_list(c->admin_groups, c->n_admin_groups, id->groups[i]))
			return true;
	return false;
}

void
session_oidc_done(struct server *s, const struct oidc_login *login, struct http_response *resp)
{
	const struct oidc_identity *id = &login->id;
	char token[TOKEN_HEX + 1], esc[300];
	struct store_session ss;
	int64_t now = time_now_s();
	int r;

	if (!oidc_admins(s) || !is_admin(&s->cfg.oidc, id)) {
		log_warn("msg=\"console oidc sign-in refused: not an admin\" user=%s", id->user);
		html_escape(esc, sizeof(esc), id->email[0] ? id->email : id->user);
		{
			char body[600];

			snprintf(body, sizeof(body), "<p>%s may use the network but is not an administrator "
			    "of this server (oidc admin_users / admin_groups).</p>", esc);
			html_page(resp, 403, "Not an administrator", body);
		}
		return;
	}
	memset(&ss, 0, sizeof(ss));
	new_token(token);
	token_hash(token, ss.hash);
	str_copy(ss.kind, "session", sizeof(ss.kind));
	snprintf(ss.subject, sizeof(ss.subject), "oidc:%.100s", id->email[0] ? id->email : id->user);
	ss.created_at = ss.last_used_at = now;
	ss.expires_at = now + s->cfg.admin_session_max_s;
	if ((r = store_session_insert(s->store, &ss, s->cfg.admin_session_idle_s,
	    SESSION_MAX)) != 0) {
		sodium_memzero(token, sizeof(token));
		html_page(resp, r == ERR_EXHAUSTED ? 429 : 503, "Sign-in failed",
		    "<p>Cannot open a console session now; try again later.</p>");
		return;
	}
	http_set_body(resp, 303, NULL, NULL, 0);
	if (set_cookie(s, resp, token, s->cfg.admin_session_max_s) != 0 ||
	    http_add_header(resp, "Location", "/admin/#/nodes") != 0 ||
	    http_add_header(resp, "Cache-Control", "no-store") != 0) {
		http_response_cleanup(resp);
		http_problem(resp, 500, NULL, "out of memory");
	}
	sodium_memzero(token, sizeof(token));
	log_info("msg=\"console sign-in\" session_id=%" PRId64 " subject=%s via=oidc", ss.id,
	    ss.subject);
}
