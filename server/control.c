// SPDX-License-Identifier: MIT
/*
 * The node-facing protocol (docs/protocol.md): every request is a POST with
 * a JSON body, signed by the node's Ed25519 machine key.
 *
 *   /machine/register   auth key + keys + hostname -> node identity; without
 *                       a key and with "interactive", a login URL
 *   /machine/register/wait  held open until that login ends (server/enrol.c)
 *   /machine/map        the map stream: full netmap, then deltas
 *   /machine/endpoints  candidate endpoints and home DERP region
 *   /machine/logout     expires the node (ephemeral nodes are deleted)
 */
#include <inttypes.h>
#include <stdio.h>
#include <strings.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sodium.h>

#include "common/jsonx.h"
#include "common/log.h"
#include "common/sign.h"
#include "common/util.h"
#include "server/control.h"
#include "server/enrol.h"
#include "server/ipam.h"
#include "server/hostinfo.h"
#include "server/mapper.h"
#include "server/nodeview.h"
#include "server/policy_api.h"
#include "server/routes.h"
#include "server/replay.h"
#include "server/secret.h"
#include "server/server.h"

enum { MAX_ENDPOINTS = 16 };

static struct log_ratelimit rl_sig;

/* A verified request: who signed it, and its signature for the replay
 * cache (checked once the machine is known: see check_replay). */
struct signed_req {
	uint8_t mkey[KEY_LEN];
	uint8_t sig[ED25519_SIG_LEN];
	int64_t ts;
};

/* Checks the signature headers and the signature; fills sr. */
static int
verify(struct server *s, struct http_request *req, struct signed_req *sr, char *why, size_t whylen)
{
	const char *mk = http_header(req, SIGN_HDR_MACHINE);
	const char *ts = http_header(req, SIGN_HDR_TIMESTAMP);
	const char *sig = http_header(req, SIGN_HDR_SIGNATURE);
	const char *nonce = http_header(req, SIGN_HDR_NONCE);
	int64_t t, now = time_now_s();
	char *end;
	int r;

	if (mk == NULL || ts == NULL || sig == NULL || nonce == NULL) {
		snprintf(why, whylen, "request must be signed: %s, %s, %s and %s headers are required",
		    SIGN_HDR_MACHINE, SIGN_HDR_TIMESTAMP, SIGN_HDR_NONCE, SIGN_HDR_SIGNATURE);
		return ERR_UNAUTHORIZED;
	}
	if (key_parse(mk, "mkey:", sr->mkey) != 0) {
		snprintf(why, whylen, "%s is not a machine key (mkey:<64 hex digits>)", SIGN_HDR_MACHINE);
		return ERR_INVALID;
	}
	t = strtoll(ts, &end, 10);
	if (*ts == 0 || *end != 0) {
		snprintf(why, whylen, "%s must be Unix seconds", SIGN_HDR_TIMESTAMP);
		return ERR_INVALID;
	}
	if (t < now - s->cfg.sign_skew_s || t > now + s->cfg.sign_skew_s) {
		snprintf(why, whylen, "request timestamp is %" PRId64 "s away from the server's clock "
		    "(at most %" PRId64 "s allowed)", t - now, s->cfg.sign_skew_s);
		return ERR_STALE;
	}
	r = sign_verify(sr->mkey, req->method, req->path, t, nonce, req->body.data, req->body.len,
	    sig);
	if (r != 0) {
		atomic_fetch_add(&s->metrics.bad_signatures, 1);
		if (log_ratelimit_ok(&rl_sig, 10, 5))
			log_debug("msg=\"bad request signature\" client=%s path=%s", req->client, req->path);
		snprintf(why, whylen, "the signature does not match the request");
		return ERR_BAD_SIGNATURE;
	}
	if (hex_decode(sr->sig, sizeof(sr->sig), sig, SIGN_HEX_LEN) != 0)
		return ERR_BAD_SIGNATURE;
	sr->ts = t;
	return 0;
}

/* The replay cache, once the machine is known to the server: a registered
 * node, or a registration whose auth key checked out. Entries are bounded
 * per machine, so only the flooding machine is refused (429). */
static int
check_replay(struct server *s, const struct signed_req *sr, char *why, size_t whylen)
{
	int r = replay_check(s->replay, sr->mkey, sr->sig, sizeof(sr->sig), time_now_s(),
	    sr->ts + s->cfg.sign_skew_s + 1);

	if (r == ERR_REPLAY)
		snprintf(why, whylen, "this request was already received (replay)");
	else if (r == ERR_EXHAUSTED)
		snprintf(why, whylen, "too many requests from this machine in the last %" PRId64
		    " s; retry later", 2 * s->cfg.sign_skew_s);
	else if (r != 0)
		snprintf(why, whylen, "%s", err_str(r));
	return r;
}

static void
replay_problem(struct http_response *resp, int r, const char *why)
{
	if (r == ERR_EXHAUSTED)
		http_problem(resp, 429, NULL, "%s", why);
	else
		http_problem_err(resp, r, "%s", why);
}

/* A unique node name from a hostname: "web", "web-1", "web-2", ... Called
 * inside the registration transaction. */
static int
unique_name(struct server *s, const char *hostname, int64_t self_id, char out[static STORE_NAME_MAX])
{
	char base[STORE_NAME_MAX];

	server_dns_label(base, hostname);
	str_copy(out, base, STORE_NAME_MAX);
	for (int i = 1; i < 100000; i++) {
		int taken = store_node_name_taken(s->store, out, self_id);

		if (taken < 0)
			return taken;
		if (!taken)
			return 0;
		snprintf(out, STORE_NAME_MAX, "%.50s-%d", base, i);
	}
	return ERR_EXHAUSTED;
}

struct reg {
	const char *auth_key;
	bool interactive;	/* no key: answer with a login URL instead of 401 */
	bool force_reauth;	/* log in again although the node is valid */
	struct control_reg r;
};

static int
parse_register(json_t *o, struct reg *rg, char *why, size_t whylen)
{
	const char *nk = NULL, *dk = NULL, *hn = NULL;
	json_t *v;
	int r;

	memset(rg, 0, sizeof(*rg));
	if ((r = jsonx_str(o, "auth_key", false, &rg->auth_key, why, whylen)) == ERR_INVALID)
		return r;
	if (jsonx_str(o, "node_key", true, &nk, why, whylen) != 0 ||
	    jsonx_str(o, "disco_key", true, &dk, why, whylen) != 0 ||
	    jsonx_str(o, "hostname", true, &hn, why, whylen) != 0)
		return ERR_INVALID;
	if (key_parse(nk, "nodekey:", rg->r.node_key) != 0) {
		snprintf(why, whylen, "node_key must be nodekey:<64 hex digits>");
		return ERR_INVALID;
	}
	if (key_parse(dk, "discokey:", rg->r.disco_key) != 0) {
		snprintf(why, whylen, "disco_key must be discokey:<64 hex digits>");
		return ERR_INVALID;
	}
	if (key_is_zero(rg->r.node_key)) {
		snprintf(why, whylen, "node_key must not be all zeros");
		return ERR_INVALID;
	}
	if (*hn == 0 || strlen(hn) >= STORE_NAME_MAX) {
		snprintf(why, whylen, "hostname must have 1 to %d characters", STORE_NAME_MAX - 1);
		return ERR_INVALID;
	}
	str_copy(rg->r.hostname, hn, sizeof(rg->r.hostname));
	if ((rg->r.tags = json_object_get(o, "tags")) != NULL) {
		json_t *t;
		size_t i;

		if (!json_is_array(rg->r.tags) || json_array_size(rg->r.tags) > 16) {
			snprintf(why, whylen, "tags must be an array of at most 16 \"tag:NAME\" strings");
			return ERR_INVALID;
		}
		json_array_foreach(rg->r.tags, i, t)
			if (!json_is_string(t) || strncmp(json_string_value(t), "tag:", 4) != 0 ||
			    json_string_length(t) < 5 || json_string_length(t) > 64) {
				snprintf(why, whylen, "tags[%zu] must look like \"tag:name\"", i);
				return ERR_INVALID;
			}
		if (json_array_size(rg->r.tags) == 0)
			rg->r.tags = NULL;
	}
	if ((rg->r.has_routes = json_object_get(o, "advertised_routes") != NULL) &&
	    (r = routes_normalize(json_object_get(o, "advertised_routes"), "advertised_routes",
	    rg->r.routes, sizeof(rg->r.routes), why, whylen)) != 0)
		return r;
	if ((v = json_object_get(o, "interactive")) != NULL && !json_is_boolean(v)) {
		snprintf(why, whylen, "interactive must be true or false");
		return ERR_INVALID;
	}
	rg->interactive = json_is_true(v);
	if ((v = json_object_get(o, "force_reauth")) != NULL && !json_is_boolean(v)) {
		snprintf(why, whylen, "force_reauth must be true or false");
		return ERR_INVALID;
	}
	rg->force_reauth = json_is_true(v);
	return 0;
}

/* Checks a presented pre-auth key inside the transaction. */
static int
check_authkey(struct server *s, const char *key, const struct store_node *existing,
	      struct store_preauthkey *k, bool *consume, bool *keep_expiry, char *why, size_t whylen)
{
	char prefix[STORE_PREFIX_MAX];
	uint8_t hash[STORE_HASH_LEN];
	int64_t now = time_now_s();

	*consume = true;
	*keep_expiry = false;
	if (secret_parse(SECRET_AUTH, key, prefix, hash) != 0) {
		snprintf(why, whylen, "auth key is malformed (expected wm-auth-<prefix>-<secret>)");
		return ERR_UNAUTHORIZED;
	}
	if (store_preauthkey_get(s->store, prefix, k) != 0 || !secret_hash_equal(hash, k->hash)) {
		snprintf(why, whylen, "auth key is not valid");
		return ERR_UNAUTHORIZED;
	}
	if (k->revoked_at != 0 || (k->expires_at != 0 && k->expires_at <= now)) {
		snprintf(why, whylen, "auth key has expired");
		return ERR_EXPIRED;
	}
	if (existing && existing->preauth_key_id == k->id && !k->reusable) {
		/* The same machine logging in again with the single-use key it
		 * used: only while it is still valid (rotating its node key).
		 * Once expired, logged out or deleted it needs a new key. */
		if (existing->expires_at != 0 && existing->expires_at <= now) {
			snprintf(why, whylen, "this node has expired or logged out, and its single-use "
			    "auth key is spent: register with a new auth key");
			return ERR_USED;
		}
		*consume = false;
		*keep_expiry = true;
		return 0;
	}
	if (existing && existing->preauth_key_id == k->id) {
		*consume = false;	/* a reusable key: still valid, so a new login */
		return 0;
	}
	if (!k->reusable && k->used_count > 0) {
		snprintf(why, whylen, "auth key has already been used (it is single-use)");
		return ERR_USED;
	}
	return 0;
}

/*
 * Whether a failed registration runs again. Replicas sharing a PostgreSQL
 * database allocate from their own address caches and register at once: a
 * transaction may deadlock (run it again), or find at insert that another
 * replica took its address, name or machine key (ERR_EXISTS: learn the
 * addresses the database holds, then run it again; a machine key now known
 * makes it an update). On SQLite, with one writer, neither happens and an
 * ERR_EXISTS is final.
 */
static bool
register_retry(struct server *s, int r, bool existing, int *attempt, bool *scatter)
{
	bool conflict = r == ERR_EXISTS && !existing && store_is_postgres(s->store);

	if (++*attempt > STORE_TX_RETRIES || (!conflict && !(r != 0 && store_retryable(s->store))))
		return false;
	/* Continue from a random place in the pools (replicas that collided
	 * then allocate apart); reading every address in use costs a scan of
	 * all nodes, so only when that did not help twice. */
	if (conflict && *attempt >= 3)
		server_ipam_resync(s);
	*scatter = *scatter || conflict;
	/* jittered backoff, so the replicas that collided do not again */
	usleep((useconds_t)(500u << (*attempt < 6 ? *attempt : 6)) + randombytes_uniform(5000));
	return true;
}

/*
 * The registration transaction. Exactly one of: auth_key (a pre-auth key),
 * owner (an interactive login or an admin's approval), or neither (a known,
 * unexpired machine re-registering, e.g. to rotate its node key). sr: the
 * signed request to enter into the replay cache once the key checked out
 * (NULL: done already, or no request, as for an admin's approval).
 */
static int
register_commit(struct server *s, const uint8_t mkey[static KEY_LEN], const struct control_reg *rg,
		const char *auth_key, struct control_owner *owner, const struct signed_req *sr,
		struct store_node *out, bool *created, bool *throttled, char *why, size_t whylen)
{
	struct store_node node, old;
	struct store_preauthkey k;
	bool existing = false, consume = false, fresh4 = false, fresh6 = false;
	bool keep_expiry = false;
	struct mapper_ids routers = { 0 };
	uint64_t version;
	int64_t now = time_now_s();
	unsigned fields;
	struct polref *pol = NULL;	/* for tags: held before the transaction */
	int r, attempt = 0;
	bool scatter = false;

	*created = false;
	*throttled = false;
	if (rg->tags)
		pol = policy_state_hold(s);
again:
	existing = consume = fresh4 = fresh6 = keep_expiry = false;
	why[0] = 0;
	if ((r = store_tx_begin(s->store)) != 0) {
		policy_state_release(pol);
		snprintf(why, whylen, "database busy; retry");
		return r;
	}
	if (scatter) {	/* the store lock guards the ipam */
		ipam_scatter(s->ipam);
		scatter = false;
	}
	r = store_node_get_by_machine(s->store, mkey, &old);
	if (r != 0 && r != ERR_NOT_FOUND)
		goto fail;
	existing = r == 0;
	r = 0;
	if (auth_key) {
		if ((r = check_authkey(s, auth_key, existing ? &old : NULL, &k, &consume,
		    &keep_expiry, why, whylen)) != 0)
			goto fail;
	} else if (owner) {
		if (owner->resolve && (r = owner->resolve(owner->ctx, s, owner, why, whylen)) != 0)
			goto fail;
	} else if (!existing) {
		snprintf(why, whylen, "this machine is not registered: an auth key is required");
		r = ERR_UNAUTHORIZED;
		goto fail;
	} else if (old.expires_at != 0 && old.expires_at <= now) {
		snprintf(why, whylen, "node key has expired or the node logged out: "
		    "register again with an auth key");
		r = ERR_EXPIRED;
		goto fail;
	}
	/* A new machine enters the replay cache only now that its auth key
	 * checked out (and a machine that registered meanwhile, here too). */
	if (sr && (r = check_replay(s, sr, why, whylen)) != 0) {
		*throttled = r == ERR_EXHAUSTED;	/* 429 */
		goto fail;
	}
	sr = NULL;	/* entered: a retry must not find itself a replay */
	if (existing) {
		node = old;
	} else {
		memset(&node, 0, sizeof(node));
		memcpy(node.machine_key, mkey, KEY_LEN);
		node.created_at = now;
		if ((r = unique_name(s, rg->hostname, 0, node.name)) != 0)
			goto fail;
		if ((r = ipam_alloc(s->ipam, AF_INET, &node.ipv4)) != 0) {
			snprintf(why, whylen, "the IPv4 address pool is exhausted");
			goto fail;
		}
		fresh4 = true;
		if ((r = ipam_alloc(s->ipam, AF_INET6, &node.ipv6)) != 0) {
			snprintf(why, whylen, "the IPv6 address pool is exhausted");
			goto fail;
		}
		fresh6 = true;
	}
	memcpy(node.node_key, rg->node_key, KEY_LEN);
	memcpy(node.disco_key, rg->disco_key, KEY_LEN);
	str_copy(node.hostname, rg->hostname, sizeof(node.hostname));
	fields = STORE_NODE_KEYS | STORE_NODE_HOSTNAME | STORE_NODE_LAST_SEEN;
	if (rg->has_routes) {
		str_copy(node.routes_advertised, rg->routes, sizeof(node.routes_advertised));
		fields |= STORE_NODE_ADVERTISED;
	}
	/* keep_expiry: a live node rotating its node key with the spent
	 * single-use key it registered with keeps its owner, tags and expiry;
	 * extending the expiry needs a new key. */
	if (auth_key && !keep_expiry) {
		node.user_id = k.user_id;
		str_copy(node.user, k.user, sizeof(node.user));
		str_copy(node.tags, k.tags, sizeof(node.tags));
		node.ephemeral = k.ephemeral;
		node.preauth_key_id = k.id;
		node.expires_at = s->cfg.node_expiry_s ? now + s->cfg.node_expiry_s : 0;
		fields |= STORE_NODE_AUTH | STORE_NODE_TAGS | STORE_NODE_EXPIRY;
	} else if (owner) {
		if (!existing || node.user_id != owner->user_id)
			str_copy(node.tags, "[]", sizeof(node.tags));	/* a new owner's node */
		node.user_id = owner->user_id;
		str_copy(node.user, owner->user, sizeof(node.user));
		node.ephemeral = false;
		node.preauth_key_id = 0;
		node.expires_at = owner->expires_at;
		fields |= STORE_NODE_AUTH | STORE_NODE_TAGS | STORE_NODE_EXPIRY;
	}
	if (rg->tags) {	/* wiremesh up --advertise-tags: the policy's tagOwners decide */
		char *text;

		if ((r = policy_tags_allowed(pol, node.user, rg->tags, why, whylen)) != 0)
			goto fail;
		text = json_dumps(rg->tags, JSON_COMPACT);
		if (text == NULL || strlen(text) >= sizeof(node.tags)) {
			free(text);
			snprintf(why, whylen, "tags list too long");
			r = ERR_INVALID;
			goto fail;
		}
		str_copy(node.tags, text, sizeof(node.tags));
		free(text);
		fields |= STORE_NODE_TAGS;
	}
	node.last_seen = now;
	if ((r = store_node_disco_taken(s->store, node.disco_key, mkey)) != 0) {
		if (r == 1) {
			snprintf(why, whylen, "this disco key is already registered to another machine");
			r = ERR_EXISTS;
		}
		goto fail;
	}
	r = existing ? store_node_update_fields(s->store, &node, fields) :
	    store_node_insert(s->store, &node);
	if (r == ERR_EXISTS) {
		snprintf(why, whylen, "this node key is already registered to another machine");
		goto fail;
	}
	if (r != 0)
		goto fail;
	/* A single-use key is spent in the transaction that uses it (the
	 * UPDATE is conditional: of two replicas spending it at once, one
	 * wins). A reusable key's count is only shown: on PostgreSQL it is
	 * counted after the commit, so registrations through several replicas
	 * do not all wait for that one row. */
	if (consume && (!k.reusable || !store_is_postgres(s->store)) &&
	    (r = store_preauthkey_mark_used(s->store, k.id)) != 0) {
		if (r == ERR_USED)
			snprintf(why, whylen, "auth key has already been used (it is single-use)");
		goto fail;
	}
	if ((r = store_node_get(s->store, node.id, &node)) != 0)
		goto fail;
	/* The version is taken, the transaction committed and the mapper told
	 * in version order (server_commit_change). */
	if ((r = server_commit_change(s, STORE_CHANGE_NODE, node.id, "", &version)) != 0) {
		if (fresh4)
			ipam_undo(s->ipam, &node.ipv4);
		if (fresh6)
			ipam_undo(s->ipam, &node.ipv6);
		if (register_retry(s, r, existing, &attempt, &scatter))
			goto again;
		policy_state_release(pol);
		atomic_fetch_add(&s->metrics.registration_failures, 1);
		snprintf(why, whylen, "could not save the registration");
		return r;
	}
	mapper_node_upsert(s->mapper, &node, version, &routers);
	server_publish_done(s, &routers);
	if (existing && memcmp(old.node_key, node.node_key, KEY_LEN) != 0)
		server_relay_forget(s, old.node_key);	/* key rotated */
	policy_state_release(pol);
	pol = NULL;
	if (consume && k.reusable && store_is_postgres(s->store) &&
	    store_preauthkey_mark_used(s->store, k.id) != 0)
		log_warn("msg=\"cannot count a use of a reusable auth key\" key_id=%" PRId64, k.id);
	/* autoApprovers: a transaction of its own (it takes the policy lock,
	 * which comes before the store's). */
	if (rg->has_routes && policy_state_auto_approve(s, node.id) == 0 &&
	    store_node_get(s->store, node.id, &old) == 0)
		node = old;
	policy_state_dirty(s);
	atomic_fetch_add(&s->metrics.registrations, 1);
	log_info("msg=\"node registered\" node_id=%" PRId64 " name=%s user=%s new=%s how=%s",
	    node.id, node.name, node.user, existing ? "false" : "true",
	    auth_key ? "auth_key" : owner ? "login" : "known_machine");
	*out = node;
	*created = !existing;
	return 0;
fail:
	/* nothing was written: the addresses go back as if never taken */
	if (fresh4)
		ipam_undo(s->ipam, &node.ipv4);
	if (fresh6)
		ipam_undo(s->ipam, &node.ipv6);
	store_tx_rollback(s->store);
	if (register_retry(s, r, existing, &attempt, &scatter))
		goto again;
	policy_state_release(pol);
	atomic_fetch_add(&s->metrics.registration_failures, 1);
	if (why[0] == 0)
		snprintf(why, whylen, "%s", err_str(r));
	return r;
}

int
control_register_owned(struct server *s, const uint8_t mkey[static KEY_LEN],
		       const struct control_reg *rg, struct control_owner *o,
		       struct store_node *out, bool *created, char *why, size_t whylen)
{
	bool throttled;

	why[0] = 0;
	return register_commit(s, mkey, rg, NULL, o, NULL, out, created, &throttled, why, whylen);
}

/* Does this registration need an interactive login? A machine without a
 * node or with an expired one, or a node that asked to log in again. */
static int
needs_login(struct server *s, const uint8_t mkey[static KEY_LEN], const struct reg *rg,
	    bool *need)
{
	struct store_node n;
	int r = store_node_get_by_machine(s->store, mkey, &n);

	*need = false;
	if (r == ERR_NOT_FOUND) {
		*need = true;
		return 0;
	}
	if (r != 0)
		return r;
	*need = rg->force_reauth || (n.expires_at != 0 && n.expires_at <= time_now_s());
	return 0;
}

static void
handle_register(struct server *s, struct http_request *req, struct http_response *resp,
		const struct signed_req *sr, bool replay_done, json_t *body)
{
	char why[512] = "";
	struct store_node node;
	struct reg rg;
	bool created = false, need = false, throttled = false;
	int64_t now = time_now_s();
	int r;

	if ((r = parse_register(body, &rg, why, sizeof(why))) != 0) {
		http_problem(resp, 400, NULL, "%s", why);
		return;
	}
	if (rg.interactive && rg.auth_key == NULL) {
		if ((r = needs_login(s, sr->mkey, &rg, &need)) != 0) {
			http_problem_err(resp, r, "cannot look up the machine");
			return;
		}
		if (need) {
			/* A machine that waits for a login is one the server knows
			 * of: its requests enter the replay cache from here on. */
			if (!replay_done && (r = check_replay(s, sr, why, sizeof(why))) != 0) {
				replay_problem(resp, r, why);
				return;
			}
			enrol_begin(s, req, resp, sr->mkey, &rg.r);
			return;
		}
	}
	if ((r = register_commit(s, sr->mkey, &rg.r, rg.auth_key, NULL, replay_done ? NULL : sr,
	    &node, &created, &throttled, why, sizeof(why))) != 0) {
		if (throttled)
			http_problem(resp, 429, NULL, "%s", why);
		else
			http_problem_err(resp, r, "%s", why);
		return;
	}
	server_reply_json(resp, created ? 201 : 200, json_pack("{s:o}", "node",
	    nodeview_admin(&node, false, now)));
}

/* The node behind a machine key, refusing expired ones. */
static int
node_for(struct server *s, const uint8_t mkey[static KEY_LEN], struct store_node *n,
	 struct http_response *resp)
{
	int r = store_node_get_by_machine(s->store, mkey, n);

	if (r == ERR_NOT_FOUND) {
		http_problem(resp, 401, NULL, "this machine is not registered");
		return r;
	}
	if (r != 0) {
		http_problem_err(resp, r, "cannot look up the node");
		return r;
	}
	if (n->expires_at != 0 && n->expires_at <= time_now_s()) {
		http_problem(resp, 401, NULL, "node key has expired: register again");
		return ERR_EXPIRED;
	}
	return 0;
}

/* Whether an Accept-Encoding header value lists zstd (q=0 refuses it). */
static bool
accepts_zstd(const char *v)
{
	while (v && *v) {
		size_t n;

		v += strspn(v, " \t,");
		n = strcspn(v, ",;");
		if (n == 4 && strncasecmp(v, "zstd", 4) == 0) {
			const char *q = v + 4;

			q += strspn(q, " \t");
			if (*q == ';') {
				q += 1 + strspn(q + 1, " \t");
				if ((q[0] == 'q' || q[0] == 'Q') && q[1] == '=' && strtod(q + 2, NULL) <= 0)
					return false;
			}
			return true;
		}
		v += strcspn(v, ",");
	}
	return false;
}

static void
handle_map(struct server *s, struct http_request *req, struct http_response *resp,
	   const uint8_t mkey[static KEY_LEN], json_t *body)
{
	bool zstd = accepts_zstd(http_header(req, "Accept-Encoding"));
	struct store_node n;
	enum mapper_start how;
	int64_t since = 0;
	char why[256];
	int r;

	if (jsonx_int(body, "version", &since, why, sizeof(why)) == ERR_INVALID || since < 0) {
		http_problem(resp, 400, NULL, "version must be a non-negative integer");
		return;
	}
	if (node_for(s, mkey, &n, resp) != 0)
		return;
	if (hostinfo_update(s->hostinfo, n.id, body, why, sizeof(why)) != 0) {
		http_problem(resp, 400, NULL, "%s", why);
		return;
	}
	if ((r = mapper_stream_open(s->mapper, n.id, (uint64_t)since, zstd, resp, &how)) == ERR_EXHAUSTED)
		http_problem(resp, 429, NULL, "this node already has %d map streams open; close one first",
		    MAPPER_STREAMS_PER_NODE_MAX);
	else if (r != 0)
		http_problem_err(resp, r, "cannot open the map stream");
	else if (zstd && http_add_header(resp, "Content-Encoding", "zstd") != 0)
		log_error("msg=\"cannot set Content-Encoding on a zstd map stream\"");
	else
		log_debug("msg=\"map stream\" node_id=%" PRId64 " since=%" PRId64 " start=%s zstd=%d",
		    n.id, since, how == MAPPER_START_RESUME ? "resume" : "full", (int)zstd);
}

struct endpoints_change {
	char endpoints[STORE_ENDPOINTS_MAX];
	int home_derp;		/* -1: unchanged */
	const char *routes;	/* NULL: unchanged */
};

/* Inside the transaction: only the fields the node owns. */
static int
endpoints_edit(void *ctx, struct store_node *n)
{
	const struct endpoints_change *ep = ctx;
	int64_t now = time_now_s();

	if (n->expires_at != 0 && n->expires_at <= now)
		return ERR_EXPIRED;
	str_copy(n->endpoints, ep->endpoints, sizeof(n->endpoints));
	if (ep->home_derp >= 0)
		n->home_derp = ep->home_derp;
	if (ep->routes)
		str_copy(n->routes_advertised, ep->routes, sizeof(n->routes_advertised));
	n->last_seen = now;
	return 0;
}

static void
handle_endpoints(struct server *s, struct http_response *resp, const uint8_t mkey[static KEY_LEN],
		 json_t *body)
{
	json_t *eps = json_object_get(body, "endpoints"), *clean, *v;
	struct endpoints_change ep;
	struct store_node n;
	int64_t derp = 0;
	char why[256], routes[STORE_ROUTES_MAX];
	json_t *adv = json_object_get(body, "advertised_routes");
	size_t i;
	char *text;
	int r;

	if (adv && routes_normalize(adv, "advertised_routes", routes, sizeof(routes), why,
	    sizeof(why)) != 0) {
		http_problem(resp, 400, NULL, "%s", why);
		return;
	}
	if (!json_is_array(eps) || json_array_size(eps) > MAX_ENDPOINTS) {
		http_problem(resp, 400, NULL, "endpoints must be an array of at most %d \"ip:port\" strings",
		    MAX_ENDPOINTS);
		return;
	}
	if (jsonx_int(body, "home_derp", &derp, why, sizeof(why)) == ERR_INVALID ||
	    derp < 0 || derp > 65535) {
		http_problem(resp, 400, NULL, "home_derp must be a region id (0 to 65535)");
		return;
	}
	clean = json_array();
	json_array_foreach(eps, i, v) {
		struct endpoint e;
		char txt[ADDR_STR_MAX];

		if (!json_is_string(v) || endpoint_parse(json_string_value(v), &e) != 0) {
			json_decref(clean);
			http_problem(resp, 400, NULL, "endpoints[%zu] is not an \"ip:port\" endpoint", i);
			return;
		}
		endpoint_fmt(txt, &e);
		json_array_append_new(clean, json_string(txt));
	}
	text = json_dumps(clean, JSON_COMPACT);
	json_decref(clean);
	if (text == NULL || strlen(text) >= STORE_ENDPOINTS_MAX) {
		free(text);
		http_problem(resp, 413, NULL, "endpoints list too long");
		return;
	}
	if (node_for(s, mkey, &n, resp) != 0) {
		free(text);
		return;
	}
	str_copy(ep.endpoints, text, sizeof(ep.endpoints));
	free(text);
	ep.home_derp = json_object_get(body, "home_derp") ? (int)derp : -1;
	ep.routes = adv ? routes : NULL;
	if ((r = server_node_edit(s, n.id, STORE_NODE_ENDPOINTS | STORE_NODE_LAST_SEEN |
	    STORE_NODE_ADVERTISED, endpoints_edit, &ep, NULL)) != 0) {
		http_problem_err(resp, r, r == ERR_EXPIRED ? "node key has expired: register again" :
		    "cannot save endpoints");
		return;
	}
	if (adv && (r = policy_state_auto_approve(s, n.id)) != 0)
		log_warn("msg=\"cannot apply autoApprovers\" node_id=%" PRId64 " err=\"%s\"", n.id,
		    err_str(r));
	atomic_fetch_add(&s->metrics.endpoint_updates, 1);
	server_reply_json(resp, 200, json_pack("{s:b}", "ok", 1));
}

static int
expire_edit(void *ctx, struct store_node *n)
{
	int64_t now = time_now_s();

	(void)ctx;
	if (n->expires_at == 0 || n->expires_at > now)
		n->expires_at = now;
	return 0;
}

static void
handle_logout(struct server *s, struct http_response *resp, const uint8_t mkey[static KEY_LEN])
{
	struct store_node n;
	int r;

	if ((r = store_node_get_by_machine(s->store, mkey, &n)) != 0) {
		http_problem_err(resp, r == ERR_NOT_FOUND ? ERR_UNAUTHORIZED : r,
		    "this machine is not registered");
		return;
	}
	if (n.ephemeral)
		r = server_node_delete(s, n.id);
	else
		r = server_node_edit(s, n.id, STORE_NODE_EXPIRY, expire_edit, NULL, NULL);
	if (r != 0) {
		http_problem_err(resp, r, "cannot log out");
		return;
	}
	log_info("msg=\"node logged out\" node_id=%" PRId64 " name=%s", n.id, n.name);
	server_reply_json(resp, 200, json_pack("{s:b}", "ok", 1));
}

void
control_handle(struct server *s, struct http_request *req, struct http_response *resp)
{
	struct signed_req sr;
	struct store_node known;
	char why[512];
	json_t *body;
	bool registered, waiting;
	int r;

	if (strcmp(req->method, "POST") != 0) {
		http_problem(resp, 405, NULL, "node protocol requests are POST");
		return;
	}
	if (req->too_large || req->body.len > (size_t)s->cfg.max_unauth_body) {
		http_problem(resp, 413, NULL, "request body is larger than %" PRId64 " bytes",
		    s->cfg.max_unauth_body);
		return;
	}
	if ((r = verify(s, req, &sr, why, sizeof(why))) != 0) {
		http_problem_err(resp, r, "%s", why);
		return;
	}
	/* Only a machine the server knows reaches the replay cache: anyone
	 * can sign with a key of their own. */
	r = store_node_get_by_machine(s->store, sr.mkey, &known);
	if (r != 0 && r != ERR_NOT_FOUND) {
		http_problem_err(resp, r, "cannot look up the node");
		goto out;
	}
	registered = r == 0;
	/* A machine waiting for a login may ask how it went. */
	waiting = !registered && strcmp(req->path, "/machine/register/wait") == 0 &&
	    enrol_has_machine(s, sr.mkey);
	if (!registered && !waiting && strcmp(req->path, "/machine/register") != 0) {
		http_problem(resp, 401, NULL, "this machine is not registered");
		goto out;
	}
	if ((registered || waiting) && (r = check_replay(s, &sr, why, sizeof(why))) != 0) {
		replay_problem(resp, r, why);
		goto out;
	}
	body = jsonx_parse_object((const char *)req->body.data, req->body.len,
	    (size_t)s->cfg.max_unauth_body, why, sizeof(why));
	if (body == NULL) {
		http_problem(resp, 400, NULL, "%s", why);
		goto out;
	}
	if (strcmp(req->path, "/machine/register") == 0)
		handle_register(s, req, resp, &sr, registered, body);
	else if (strcmp(req->path, "/machine/register/wait") == 0)
		enrol_wait(s, resp, sr.mkey, body);
	else if (strcmp(req->path, "/machine/map") == 0)
		handle_map(s, req, resp, sr.mkey, body);
	else if (strcmp(req->path, "/machine/endpoints") == 0)
		handle_endpoints(s, resp, sr.mkey, body);
	else if (strcmp(req->path, "/machine/logout") == 0)
		handle_logout(s, resp, sr.mkey);
	else
		http_problem(resp, 404, NULL, "no such endpoint: %s", req->path);
	json_decref(body);
out:
	wipe(&sr, sizeof(sr));
}
