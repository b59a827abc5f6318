// SPDX-License-Identifier: MIT
/*
 * The admin REST API under /api/v1 (docs/openapi.json). Every endpoint but
 * the OpenAPI document and sign-in needs `Authorization: Bearer <API key>`
 * or the admin console's session cookie (session.c). Errors are RFC 7807
 * problem documents.
 */
#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/jsonx.h"
#include "common/log.h"
#include "common/util.h"
#include "server/enrol.h"
#include "server/mapper.h"
#include "server/events.h"
#include "server/hostinfo.h"
#include "server/nodeview.h"
#include "server/openapi.h"
#include "server/policy_api.h"
#include "server/routes.h"
#include "server/secret.h"
#include "server/server.h"
#include "server/session.h"

enum { MAX_TAGS = 16 };

/* ---- validation ---- */

static bool
valid_user_name(const char *n)
{
	size_t len = strlen(n);

	if (len == 0 || len >= STORE_NAME_MAX)
		return false;
	for (const char *p = n; *p; p++)
		if (!isalnum((unsigned char)*p) && !strchr("._@+-", *p))
			return false;
	return true;
}

static bool
valid_tag(const char *t)
{
	if (strncmp(t, "tag:", 4) != 0 || t[4] == 0 || strlen(t) > 64)
		return false;
	for (const char *p = t + 4; *p; p++)
		if (!islower((unsigned char)*p) && !isdigit((unsigned char)*p) && *p != '-' && *p != '_')
			return false;
	return true;
}

static bool
valid_dns_label(const char *n)
{
	size_t len = strlen(n);

	if (len == 0 || len > 63 || n[0] == '-' || n[len - 1] == '-')
		return false;
	for (const char *p = n; *p; p++)
		if (!islower((unsigned char)*p) && !isdigit((unsigned char)*p) && *p != '-')
			return false;
	return true;
}

/* Validates a tags array into compact JSON text. */
static int
tags_text(json_t *tags, char out[static STORE_TAGS_MAX], char *why, size_t whylen)
{
	json_t *v;
	size_t i;
	char *t;

	if (tags == NULL) {
		str_copy(out, "[]", STORE_TAGS_MAX);
		return 0;
	}
	if (!json_is_array(tags) || json_array_size(tags) > MAX_TAGS) {
		snprintf(why, whylen, "tags must be an array of at most %d \"tag:name\" strings", MAX_TAGS);
		return ERR_INVALID;
	}
	json_array_foreach(tags, i, v) {
		if (!json_is_string(v) || !valid_tag(json_string_value(v))) {
			snprintf(why, whylen, "tags[%zu] must look like \"tag:name\" "
			    "(lowercase letters, digits, - and _)", i);
			return ERR_INVALID;
		}
	}
	if ((t = json_dumps(tags, JSON_COMPACT)) == NULL)
		return ERR_NOMEM;
	if (strlen(t) >= STORE_TAGS_MAX) {
		free(t);
		snprintf(why, whylen, "tags list too long");
		return ERR_INVALID;
	}
	str_copy(out, t, STORE_TAGS_MAX);
	free(t);
	return 0;
}

static int
expiration(json_t *body, int64_t def, int64_t *out, char *why, size_t whylen)
{
	const char *e = NULL;
	int64_t secs;
	int r = jsonx_str(body, "expiration", false, &e, why, whylen);

	if (r == ERR_NOT_FOUND) {
		*out = def ? time_now_s() + def : 0;
		return 0;
	}
	if (r != 0)
		return r;
	if (strcmp(e, "never") == 0) {
		*out = 0;
		return 0;
	}
	if (duration_parse(e, &secs) != 0 || secs <= 0) {
		snprintf(why, whylen, "expiration must be a duration such as 1h, 24h or 90d (at most "
		    "100 years), or \"never\"");
		return ERR_INVALID;
	}
	*out = time_now_s() + secs;
	return 0;
}

/* ---- authentication ---- */

/* A Bearer API key, or the console's session cookie (session.c; changes
 * then also need its CSRF header). */
static int
authenticate(struct server *s, struct http_request *req, struct session_auth *a,
	     char *why, size_t whylen)
{
	const char *h = http_header(req, "Authorization");
	char prefix[STORE_PREFIX_MAX];
	uint8_t hash[STORE_HASH_LEN];
	struct store_apikey k;
	int64_t now = time_now_s();

	memset(a, 0, sizeof(*a));
	if (h == NULL && session_has_cookie(req))
		return session_authenticate(s, req, a, why, whylen);
	/* RFC 7235: the scheme is case-insensitive ("bearer", "BEARER") */
	if (h == NULL || strncasecmp(h, "Bearer", 6) != 0 || (h[6] != ' ' && h[6] != '\t')) {
		snprintf(why, whylen, "missing \"Authorization: Bearer <API key>\" header");
		return ERR_UNAUTHORIZED;
	}
	h += 6;
	h += strspn(h, " \t");
	if (secret_parse(SECRET_API, h, prefix, hash) != 0 ||
	    store_apikey_get(s->store, prefix, &k) != 0 || !secret_hash_equal(hash, k.hash)) {
		snprintf(why, whylen, "API key is not valid");
		return ERR_UNAUTHORIZED;
	}
	if (k.revoked_at != 0 || (k.expires_at != 0 && k.expires_at <= now)) {
		snprintf(why, whylen, "API key has expired");
		return ERR_UNAUTHORIZED;
	}
	if (k.last_used_at < now - 60 && store_apikey_touch(s->store, k.id, now) != 0)
		log_warn("msg=\"cannot record API key use\"");
	snprintf(a->who, sizeof(a->who), "apikey:%s", k.prefix);
	str_copy(a->apikey_prefix, k.prefix, sizeof(a->apikey_prefix));
	return 0;
}

/* ---- times ---- */

/* The admin API gives every time as RFC 3339 (UTC, "2026-12-03T13:00:00Z"),
 * or null for "never"/"not yet": converts the integer fields views carry. */
static json_t *
api_times(json_t *o)
{
	static const char *const keys[] = { "created_at", "last_seen", "expires_at",
		"last_used_at", "revoked_at", NULL };

	for (size_t i = 0; o && keys[i]; i++) {
		json_t *v = json_object_get(o, keys[i]);
		char t[32];

		if (!json_is_integer(v))
			continue;
		if (json_integer_value(v) == 0) {
			json_object_set_new(o, keys[i], json_null());
		} else {
			time_fmt_rfc3339(t, (int64_t)json_integer_value(v));
			json_object_set_new(o, keys[i], json_string(t));
		}
	}
	return o;
}

/* A node as the admin API shows it, with its live online flag. */
static json_t *
node_view(struct server *s, const struct store_node *n)
{
	struct store_node live;
	bool online = false;
	json_t *v;

	if (mapper_node_get(s->mapper, n->id, &live, &online) != 0)
		online = false;
	v = api_times(nodeview_admin(n, online, time_now_s()));
	hostinfo_annotate(s->hostinfo, n->id, v);
	return v;
}

bool
api_authorized(struct server *s, struct http_request *req)
{
	struct session_auth a;
	char why[256];

	return authenticate(s, req, &a, why, sizeof(why)) == 0;
}

/* ---- users ---- */

static json_t *
user_json(const struct store_user *u)
{
	char t[32];

	time_fmt_rfc3339(t, u->created_at);
	return json_pack("{s:I, s:s, s:s, s:s, s:s, s:s}", "id", (json_int_t)u->id, "name", u->name,
	    "created_at", t, "display_name", u->display_name, "email", u->email,
	    "login", u->oidc ? "oidc" : "local");
}

static int
add_user(void *ctx, const struct store_user *u)
{
	return json_array_append_new(ctx, user_json(u)) == 0 ? 0 : ERR_NOMEM;
}

static void
users(struct server *s, struct http_request *req, struct http_response *resp,
      const char *rest, json_t *body)
{
	char why[256] = "";
	struct store_user u;
	int r;

	if (*rest == 0 && strcmp(req->method, "GET") == 0) {
		json_t *a = json_array();

		if ((r = store_user_list(s->store, add_user, a)) != 0) {
			json_decref(a);
			http_problem_err(resp, r, "cannot list users");
			return;
		}
		server_reply_json(resp, 200, json_pack("{s:o}", "users", a));
	} else if (*rest == 0 && strcmp(req->method, "POST") == 0) {
		const char *name = NULL;

		if (jsonx_str(body, "name", true, &name, why, sizeof(why)) != 0) {
			http_problem(resp, 400, NULL, "%s", why);
			return;
		}
		if (!valid_user_name(name)) {
			http_problem(resp, 400, NULL, "user name must be 1-63 characters of letters, "
			    "digits and . _ @ + -");
			return;
		}
		if ((r = store_user_create(s->store, name, &u)) != 0) {
			http_problem_err(resp, r, r == ERR_EXISTS ? "user \"%s\" already exists" :
			    "cannot create user \"%s\"", name);
			return;
		}
		log_info("msg=\"user created\" user=%s", name);
		server_reply_json(resp, 201, json_pack("{s:o}", "user", user_json(&u)));
	} else if (*rest == '/' && strcmp(req->method, "POST") == 0 &&
	    strlen(rest) > 8 && strcmp(rest + strlen(rest) - 7, "/rename") == 0) {
		char old[STORE_NAME_MAX];
		const char *name = NULL;

		snprintf(old, sizeof(old), "%.*s", (int)(strlen(rest) - 8), rest + 1);
		if (jsonx_str(body, "new_name", true, &name, why, sizeof(why)) != 0) {
			http_problem(resp, 400, NULL, "%s", why);
			return;
		}
		if (!valid_user_name(name)) {
			http_problem(resp, 400, NULL, "user name must be 1-63 characters of letters, "
			    "digits and . _ @ + -");
			return;
		}
		if ((r = store_user_rename(s->store, old, name)) != 0) {
			http_problem_err(resp, r, r == ERR_EXISTS ? "user \"%s\" already exists" :
			    "no user \"%s\"", r == ERR_EXISTS ? name : old);
			return;
		}
		{	/* peers see the owner's name: publish each of the user's nodes again */
			struct store_node *ns = NULL, n;
			size_t nn = 0;

			if (mapper_nodes_copy(s->mapper, &ns, &nn) == 0) {
				for (size_t i = 0; i < nn; i++) {
					struct mapper_ids routers = { 0 };
					uint64_t v;

					if (strcmp(ns[i].user, old) != 0 || store_tx_begin(s->store) != 0)
						continue;
					if (store_node_get(s->store, ns[i].id, &n) != 0) {
						store_tx_rollback(s->store);
						continue;
					}
					if (server_commit_change(s, STORE_CHANGE_NODE, n.id, "", &v) != 0)
						continue;
					mapper_node_upsert(s->mapper, &n, v, &routers);
					server_publish_done(s, &routers);
				}
				free(ns);
			}
			policy_state_dirty(s);
		}
		log_info("msg=\"user renamed\" user=%s new_name=%s", old, name);
		if ((r = store_user_get(s->store, name, &u)) != 0) {
			http_problem_err(resp, r, "no user \"%s\"", name);
			return;
		}
		server_reply_json(resp, 200, json_pack("{s:o}", "user", user_json(&u)));
	} else if (*rest == '/' && strcmp(req->method, "GET") == 0) {
		if ((r = store_user_get(s->store, rest + 1, &u)) != 0) {
			http_problem_err(resp, r, "no user \"%s\"", rest + 1);
			return;
		}
		server_reply_json(resp, 200, json_pack("{s:o}", "user", user_json(&u)));
	} else if (*rest == '/' && strcmp(req->method, "DELETE") == 0) {
		if ((r = store_user_delete(s->store, rest + 1)) != 0) {
			if (r == ERR_PRECONDITION)
				http_problem(resp, 409, NULL, "user \"%s\" still owns nodes; delete them first",
				    rest + 1);
			else
				http_problem_err(resp, r, "no user \"%s\"", rest + 1);
			return;
		}
		log_info("msg=\"user deleted\" user=%s", rest + 1);
		server_reply_json(resp, 200, json_pack("{s:b}", "deleted", 1));
	} else {
		http_problem(resp, 405, NULL, "%s is not supported on %s", req->method, req->path);
	}
}

/* ---- pre-auth keys ---- */

static json_t *
pak_json(const struct store_preauthkey *k)
{
	json_t *tags = json_loads(k->tags, 0, NULL);
	int64_t now = time_now_s();

	return api_times(json_pack("{s:I, s:s, s:s, s:b, s:b, s:o, s:I, s:I, s:I, s:I, s:b, s:b}",
	    "id", (json_int_t)k->id, "prefix", k->prefix, "user", k->user,
	    "reusable", k->reusable, "ephemeral", k->ephemeral,
	    "tags", tags ? tags : json_array(),
	    "created_at", (json_int_t)k->created_at, "expires_at", (json_int_t)k->expires_at,
	    "revoked_at", (json_int_t)k->revoked_at, "used_count", (json_int_t)k->used_count,
	    "used", !k->reusable && k->used_count > 0,
	    "expired", k->revoked_at != 0 || (k->expires_at != 0 && k->expires_at <= now)));
}

static int
add_pak(void *ctx, const struct store_preauthkey *k)
{
	return json_array_append_new(ctx, pak_json(k)) == 0 ? 0 : ERR_NOMEM;
}

struct pak_find {
	int64_t id;
	json_t *found;
};

static int
find_pak(void *ctx, const struct store_preauthkey *k)
{
	struct pak_find *f = ctx;

	if (k->id == f->id && f->found == NULL)
		f->found = pak_json(k);
	return 0;
}

static void
preauthkeys(struct server *s, struct http_request *req, struct http_response *resp,
	    const char *rest, json_t *body)
{
	char why[256] = "";
	int r;

	if (*rest == 0 && strcmp(req->method, "GET") == 0) {
		json_t *a = json_array();

		if ((r = store_preauthkey_list(s->store, http_query(req, "user"), add_pak, a)) != 0) {
			json_decref(a);
			http_problem_err(resp, r, "cannot list pre-auth keys");
			return;
		}
		server_reply_json(resp, 200, json_pack("{s:o}", "preauthkeys", a));
	} else if (*rest == 0 && strcmp(req->method, "POST") == 0) {
		struct store_preauthkey k;
		struct store_user u;
		const char *user = NULL;
		bool b;
		char *key = NULL;
		json_t *out;

		memset(&k, 0, sizeof(k));
		if (jsonx_str(body, "user", true, &user, why, sizeof(why)) != 0 ||
		    (r = jsonx_bool(body, "reusable", &b, why, sizeof(why))) == ERR_INVALID ||
		    (k.reusable = (r == 0 && b), 0) ||
		    (r = jsonx_bool(body, "ephemeral", &b, why, sizeof(why))) == ERR_INVALID ||
		    (k.ephemeral = (r == 0 && b), 0) ||
		    expiration(body, 3600, &k.expires_at, why, sizeof(why)) != 0 ||
		    tags_text(json_object_get(body, "tags"), k.tags, why, sizeof(why)) != 0) {
			http_problem(resp, 400, NULL, "%s", why);
			return;
		}
		if ((r = store_user_get(s->store, user, &u)) != 0) {
			http_problem_err(resp, r, "no user \"%s\"", user);
			return;
		}
		k.user_id = u.id;
		str_copy(k.user, u.name, sizeof(k.user));
		k.created_at = time_now_s();
		if ((r = secret_generate(SECRET_AUTH, &key, k.prefix, k.hash)) != 0 ||
		    (r = store_preauthkey_insert(s->store, &k)) != 0) {
			free_secret(key);
			http_problem_err(resp, r, "cannot create the pre-auth key");
			return;
		}
		out = pak_json(&k);
		json_object_set_new(out, "key", json_string(key));
		free_secret(key);
		log_info("msg=\"pre-auth key created\" id=%" PRId64 " user=%s reusable=%d ephemeral=%d",
		    k.id, k.user, k.reusable, k.ephemeral);
		server_reply_json(resp, 201, json_pack("{s:o}", "preauthkey", out));
	} else if (*rest == '/' && strcmp(req->method, "GET") == 0) {
		struct pak_find f = { strtoll(rest + 1, NULL, 10), NULL };

		if (strspn(rest + 1, "0123456789") != strlen(rest + 1) || f.id <= 0) {
			http_problem(resp, 400, NULL, "pre-auth key id must be a positive integer");
			return;
		}
		if ((r = store_preauthkey_list(s->store, NULL, find_pak, &f)) != 0 || f.found == NULL) {
			json_decref(f.found);
			http_problem_err(resp, r ? r : ERR_NOT_FOUND, "no pre-auth key %" PRId64, f.id);
			return;
		}
		server_reply_json(resp, 200, json_pack("{s:o}", "preauthkey", f.found));
	} else if (*rest == '/' && strcmp(req->method, "POST") == 0) {
		const char *end;
		int64_t id = server_parse_id(rest + 1, &end);

		if (id <= 0 || strcmp(end, "/expire") != 0) {
			http_problem(resp, 404, NULL, "no such endpoint: %s", req->path);
			return;
		}
		if ((r = store_preauthkey_expire(s->store, id, time_now_s())) != 0) {
			http_problem_err(resp, r, "no pre-auth key %" PRId64, id);
			return;
		}
		server_reply_json(resp, 200, json_pack("{s:b}", "expired", 1));
	} else {
		http_problem(resp, 405, NULL, "%s is not supported on %s", req->method, req->path);
	}
}

/* ---- API keys ---- */

static json_t *
apikey_json(const struct store_apikey *k)
{
	int64_t now = time_now_s();

	return api_times(json_pack("{s:I, s:s, s:I, s:I, s:I, s:I, s:b}", "id", (json_int_t)k->id,
	    "prefix", k->prefix, "created_at", (json_int_t)k->created_at,
	    "expires_at", (json_int_t)k->expires_at, "last_used_at", (json_int_t)k->last_used_at,
	    "revoked_at", (json_int_t)k->revoked_at,
	    "expired", k->revoked_at != 0 || (k->expires_at != 0 && k->expires_at <= now)));
}

static int
add_apikey(void *ctx, const struct store_apikey *k)
{
	return json_array_append_new(ctx, apikey_json(k)) == 0 ? 0 : ERR_NOMEM;
}

static void
apikeys(struct server *s, struct http_request *req, struct http_response *resp,
	const char *rest, json_t *body)
{
	char why[256] = "";
	int r;

	if (*rest == 0 && strcmp(req->method, "GET") == 0) {
		json_t *a = json_array();

		if ((r = store_apikey_list(s->store, add_apikey, a)) != 0) {
			json_decref(a);
			http_problem_err(resp, r, "cannot list API keys");
			return;
		}
		server_reply_json(resp, 200, json_pack("{s:o}", "apikeys", a));
	} else if (*rest == 0 && strcmp(req->method, "POST") == 0) {
		struct store_apikey k;
		int64_t exp;
		char *key = NULL;
		char prefix[STORE_PREFIX_MAX];
		uint8_t hash[STORE_HASH_LEN];
		json_t *out;

		if (expiration(body, 90 * 86400, &exp, why, sizeof(why)) != 0) {
			http_problem(resp, 400, NULL, "%s", why);
			return;
		}
		if ((r = server_apikey_create(s->store, exp, &key)) != 0 ||
		    secret_parse(SECRET_API, key, prefix, hash) != 0 ||
		    (r = store_apikey_get(s->store, prefix, &k)) != 0) {
			free_secret(key);
			http_problem_err(resp, r ? r : ERR_INTERNAL, "cannot create the API key");
			return;
		}
		out = apikey_json(&k);
		json_object_set_new(out, "key", json_string(key));
		free_secret(key);
		server_reply_json(resp, 201, json_pack("{s:o}", "apikey", out));
	} else if (*rest == '/' && strcmp(req->method, "POST") == 0) {
		char prefix[STORE_PREFIX_MAX];
		const char *slash = strchr(rest + 1, '/');
		size_t pl = slash ? (size_t)(slash - rest - 1) : 0;

		if (slash == NULL || strcmp(slash, "/expire") != 0 || pl == 0 || pl >= sizeof(prefix)) {
			http_problem(resp, 404, NULL, "no such endpoint: %s", req->path);
			return;
		}
		memcpy(prefix, rest + 1, pl);
		prefix[pl] = 0;
		if ((r = store_apikey_expire(s->store, prefix, time_now_s())) != 0) {
			http_problem_err(resp, r, "no API key with prefix %s", prefix);
			return;
		}
		server_reply_json(resp, 200, json_pack("{s:b}", "expired", 1));
	} else if (*rest == '/' && strcmp(req->method, "GET") == 0 && strchr(rest + 1, '/') == NULL &&
	    strlen(rest + 1) < STORE_PREFIX_MAX) {
		struct store_apikey k;

		if ((r = store_apikey_get(s->store, rest + 1, &k)) != 0) {
			http_problem_err(resp, r, "no API key with prefix %s", rest + 1);
			return;
		}
		server_reply_json(resp, 200, json_pack("{s:o}", "apikey", apikey_json(&k)));
	} else {
		http_problem(resp, 405, NULL, "%s is not supported on %s", req->method, req->path);
	}
}

/* ---- nodes ---- */

struct node_list {
	struct server *s;
	json_t *a;
	const char *user;
};

static int
add_node(void *ctx, const struct store_node *n)
{
	struct node_list *nl = ctx;

	if (nl->user && strcmp(nl->user, n->user) != 0)
		return 0;
	return json_array_append_new(nl->a, node_view(nl->s, n)) == 0 ? 0 : ERR_NOMEM;
}

/* GET or POST /api/v1/nodes/{id}/routes: advertised, approved (POST
 * replaces it) and the routes the node serves to its peers right now. */
static void
node_routes(struct server *s, struct http_request *req, struct http_response *resp,
	    struct store_node *n, json_t *body)
{
	struct ip_prefix carried[ROUTES_MAX];
	char why[256] = "", t[ADDR_STR_MAX];
	json_t *serving;
	size_t nc;
	int r;

	if (strcmp(req->method, "POST") == 0) {
		if (json_object_get(body, "approved") == NULL) {
			http_problem(resp, 400, NULL, "field \"approved\" (an array of CIDR prefixes) is required");
			return;
		}
		if (routes_normalize(json_object_get(body, "approved"), "approved",
		    n->routes_approved, sizeof(n->routes_approved), why, sizeof(why)) != 0) {
			http_problem(resp, 400, NULL, "%s", why);
			return;
		}
		if ((r = server_node_set(s, n, STORE_NODE_APPROVED, n)) != 0) {
			http_problem_err(resp, r, "cannot save the routes of node \"%s\"", n->name);
			return;
		}
		log_info("msg=\"routes approved\" node_id=%" PRId64 " name=%s approved=%s", n->id,
		    n->name, n->routes_approved);
	} else if (strcmp(req->method, "GET") != 0) {
		http_problem(resp, 405, NULL, "%s is not supported on %s", req->method, req->path);
		return;
	}
	nc = mapper_node_carried(s->mapper, n->id, carried);
	serving = json_array();
	for (size_t i = 0; i < nc; i++) {
		prefix_fmt(t, &carried[i]);
		json_array_append_new(serving, json_string(t));
	}
	server_reply_json(resp, 200, json_pack("{s:I, s:s, s:o, s:o, s:o}", "id",
	    (json_int_t)n->id, "name", n->name,
	    "advertised", json_loads(n->routes_advertised[0] ? n->routes_advertised : "[]", 0, NULL),
	    "approved", json_loads(n->routes_approved[0] ? n->routes_approved : "[]", 0, NULL),
	    "serving", serving));
}

/* GET /api/v1/nodes/pending, POST /api/v1/nodes/register {"user","key"}:
 * machines waiting for a login, and an admin letting one in. */
static void
nodes_enrol(struct server *s, struct http_request *req, struct http_response *resp,
	    const char *rest, json_t *body)
{
	const char *user = NULL, *key = NULL;
	struct store_node n;
	char why[512] = "";
	int r;

	if (strcmp(rest, "/pending") == 0) {
		if (strcmp(req->method, "GET") != 0) {
			http_problem(resp, 405, NULL, "%s is not supported on %s", req->method, req->path);
			return;
		}
		json_t *pending = enrol_pending_json(s);

		if (pending == NULL) {
			http_problem(resp, 503, NULL, "cannot read the registrations waiting for a login");
			return;
		}
		server_reply_json(resp, 200, json_pack("{s:o}", "pending", pending));
		return;
	}
	if (strcmp(req->method, "POST") != 0) {
		http_problem(resp, 405, NULL, "%s is not supported on %s", req->method, req->path);
		return;
	}
	if (jsonx_str(body, "user", true, &user, why, sizeof(why)) != 0 ||
	    jsonx_str(body, "key", true, &key, why, sizeof(why)) != 0) {
		http_problem(resp, 400, NULL, "%s", why);
		return;
	}
	if ((r = enrol_approve(s, key, user, &n, why, sizeof(why))) != 0) {
		if (r == ERR_EXPIRED || r == ERR_USED)
			http_problem(resp, 409, NULL, "%s", why);
		else
			http_problem_err(resp, r, "%s", why);
		return;
	}
	server_reply_json(resp, 200, json_pack("{s:o}", "node", node_view(s, &n)));
}

static void
nodes(struct server *s, struct http_request *req, struct http_response *resp,
      const char *rest, json_t *body)
{
	struct store_node n;
	char why[256] = "";
	const char *verb;
	unsigned fields;
	const char *end;
	int64_t id;
	int r;

	if (strcmp(rest, "/pending") == 0 || strcmp(rest, "/register") == 0) {
		nodes_enrol(s, req, resp, rest, body);
		return;
	}
	if (*rest == 0 && strcmp(req->method, "GET") == 0) {
		struct node_list nl = { s, json_array(), http_query(req, "user") };

		if ((r = store_node_list(s->store, add_node, &nl)) != 0) {
			json_decref(nl.a);
			http_problem_err(resp, r, "cannot list nodes");
			return;
		}
		server_reply_json(resp, 200, json_pack("{s:o}", "nodes", nl.a));
		return;
	}
	if (*rest != '/') {
		http_problem(resp, 405, NULL, "%s is not supported on %s", req->method, req->path);
		return;
	}
	id = server_parse_id(rest + 1, &end);
	if (id <= 0 || (*end != 0 && *end != '/')) {
		http_problem(resp, 400, NULL, "node id must be a positive integer");
		return;
	}
	verb = *end == '/' ? end + 1 : "";
	if ((r = store_node_get(s->store, id, &n)) != 0) {
		http_problem_err(resp, r, "no node %" PRId64, id);
		return;
	}
	if (*verb == 0 && strcmp(req->method, "GET") == 0) {
		server_reply_json(resp, 200, json_pack("{s:o}", "node", node_view(s, &n)));
		return;
	}
	if (strcmp(verb, "routes") == 0) {
		node_routes(s, req, resp, &n, body);
		return;
	}
	if (*verb == 0 && strcmp(req->method, "DELETE") == 0) {
		if ((r = server_node_delete(s, id)) != 0)
			http_problem_err(resp, r, "cannot delete node %" PRId64, id);
		else
			server_reply_json(resp, 200, json_pack("{s:b}", "deleted", 1));
		return;
	}
	if (strcmp(req->method, "POST") != 0) {
		http_problem(resp, 405, NULL, "%s is not supported on %s", req->method, req->path);
		return;
	}
	if (strcmp(verb, "expire") == 0) {
		n.expires_at = time_now_s();
		fields = STORE_NODE_EXPIRY;
	} else if (strcmp(verb, "rename") == 0) {
		const char *name = NULL;

		if (jsonx_str(body, "name", true, &name, why, sizeof(why)) != 0) {
			http_problem(resp, 400, NULL, "%s", why);
			return;
		}
		if (!valid_dns_label(name)) {
			http_problem(resp, 400, NULL, "name must be a DNS label: 1-63 lowercase letters, "
			    "digits and inner hyphens");
			return;
		}
		str_copy(n.name, name, sizeof(n.name));
		fields = STORE_NODE_NAME;
	} else if (strcmp(verb, "tags") == 0) {
		if (tags_text(json_object_get(body, "tags"), n.tags, why, sizeof(why)) != 0 ||
		    json_object_get(body, "tags") == NULL) {
			http_problem(resp, 400, NULL, "%s", why[0] ? why : "field \"tags\" is required");
			return;
		}
		fields = STORE_NODE_TAGS;
	} else if (strcmp(verb, "user") == 0) {	/* move the node to another user */
		const char *name = NULL;
		struct store_user u;

		if (jsonx_str(body, "user", true, &name, why, sizeof(why)) != 0) {
			http_problem(resp, 400, NULL, "%s", why);
			return;
		}
		if ((r = store_user_get(s->store, name, &u)) != 0) {
			http_problem_err(resp, r, "no user \"%s\"", name);
			return;
		}
		n.user_id = u.id;
		str_copy(n.user, u.name, sizeof(n.user));
		fields = STORE_NODE_AUTH;
	} else {
		http_problem(resp, 404, NULL, "no such endpoint: %s", req->path);
		return;
	}
	/* One transaction writing only the field this action owns: a node's
	 * concurrent endpoint update cannot undo it, nor it the node's. */
	if ((r = server_node_set(s, &n, fields, &n)) != 0) {
		http_problem_err(resp, r, r == ERR_EXISTS ? "name \"%s\" is already taken" :
		    "cannot update node \"%s\"", n.name);
		return;
	}
	log_info("msg=\"node updated\" node_id=%" PRId64 " name=%s change=%s", id, n.name, verb);
	if (strcmp(verb, "user") == 0)
		policy_state_dirty(s);
	server_reply_json(resp, 200, json_pack("{s:o}", "node", node_view(s, &n)));
}

/* GET /api/v1/routes: every node's advertised, approved and served routes
 * (nodes that advertise or were approved some). */
static int
add_route_node(void *ctx, const struct store_node *n)
{
	struct node_list *nl = ctx;
	struct ip_prefix carried[ROUTES_MAX];
	char t[ADDR_STR_MAX];
	json_t *serving = json_array(), *adv, *app;
	size_t nc;

	adv = json_loads(n->routes_advertised[0] ? n->routes_advertised : "[]", 0, NULL);
	app = json_loads(n->routes_approved[0] ? n->routes_approved : "[]", 0, NULL);
	if (json_array_size(adv) == 0 && json_array_size(app) == 0) {
		json_decref(adv);
		json_decref(app);
		json_decref(serving);
		return 0;
	}
	nc = mapper_node_carried(nl->s->mapper, n->id, carried);
	for (size_t i = 0; i < nc; i++) {
		prefix_fmt(t, &carried[i]);
		json_array_append_new(serving, json_string(t));
	}
	return json_array_append_new(nl->a, json_pack("{s:I, s:s, s:s, s:o, s:o, s:o}", "id",
	    (json_int_t)n->id, "name", n->name, "user", n->user, "advertised",
	    adv ? adv : json_array(), "approved", app ? app : json_array(), "serving",
	    serving)) == 0 ? 0 : ERR_NOMEM;
}

static void
routes_list(struct server *s, struct http_request *req, struct http_response *resp)
{
	struct node_list nl = { s, json_array(), NULL };
	int r;

	if (strcmp(req->method, "GET") != 0) {
		http_problem(resp, 405, NULL, "%s is not supported on %s", req->method, req->path);
		return;
	}
	if ((r = store_node_list(s->store, add_route_node, &nl)) != 0) {
		json_decref(nl.a);
		http_problem_err(resp, r, "cannot list routes");
		return;
	}
	server_reply_json(resp, 200, json_pack("{s:o}", "routes", nl.a));
}

/* ---- dispatch ---- */

static const char *
under(const char *path, const char *prefix)
{
	size_t n = strlen(prefix);

	if (strncmp(path, prefix, n) != 0 || (path[n] != 0 && path[n] != '/'))
		return NULL;
	return path + n;
}

void
api_handle(struct server *s, struct http_request *req, struct http_response *resp)
{
	struct session_auth a;
	char why[512];
	json_t *body = NULL;
	const char *rest;
	int r;

	if (strcmp(req->path, "/api/v1/openapi.json") == 0) {
		char *doc = strdup(openapi_json);

		http_set_body(resp, 200, "application/json", doc, doc ? strlen(doc) : 0);
		return;
	}
	if (strcmp(req->path, "/api/v1/session") == 0) {
		session_handle(s, req, resp);	/* sign-in needs no credentials */
		return;
	}
	if ((r = authenticate(s, req, &a, why, sizeof(why))) != 0) {
		http_problem_err(resp, r, "%s", why);
		return;
	}
	if (req->too_large) {
		http_problem(resp, 413, NULL, "request body is too large");
		return;
	}
	if ((rest = under(req->path, "/api/v1/policy")) != NULL) {
		policy_api_handle(s, req, resp, rest, a.who);
		return;
	}
	if (strcmp(req->path, "/api/v1/events") == 0) {
		events_handle(s, req, resp, &a);
		return;
	}
	if (strcmp(req->path, "/api/v1/session/signin-links") == 0) {
		session_links_handle(s, req, resp, &a);
		return;
	}
	if (req->body.len > (size_t)s->cfg.max_body) {
		http_problem(resp, 413, NULL, "request body is larger than %" PRId64 " bytes",
		    s->cfg.max_body);
		return;
	}
	if (strcmp(req->method, "POST") == 0 || strcmp(req->method, "PUT") == 0) {
		body = req->body.len == 0 ? json_object() :
		    jsonx_parse_object((const char *)req->body.data, req->body.len,
		    (size_t)s->cfg.max_body, why, sizeof(why));
		if (body == NULL) {
			http_problem(resp, 400, NULL, "%s", why);
			return;
		}
	}
	if ((rest = under(req->path, "/api/v1/users")) != NULL)
		users(s, req, resp, rest, body);
	else if ((rest = under(req->path, "/api/v1/preauthkeys")) != NULL)
		preauthkeys(s, req, resp, rest, body);
	else if ((rest = under(req->path, "/api/v1/nodes")) != NULL)
		nodes(s, req, resp, rest, body);
	else if ((rest = under(req->path, "/api/v1/apikeys")) != NULL)
		apikeys(s, req, resp, rest, body);
	else if (strcmp(req->path, "/api/v1/routes") == 0)
		routes_list(s, req, resp);
	else if (strcmp(req->path, "/api/v1/integrity") == 0 && strcmp(req->method, "GET") == 0) {
		/* The full check reads the whole database (not for probes:
		 * /healthz is the cheap one). */
		r = store_integrity_check(s->store);
		server_reply_json(resp, r == 0 ? 200 : 503, json_pack("{s:s}", "integrity",
		    r == 0 ? "ok" : "failed"));
	}
	else
		http_problem(resp, 404, NULL, "no such endpoint: %s", req->path);
	json_decref(body);
}
