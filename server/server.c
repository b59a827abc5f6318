// SPDX-License-Identifier: MIT
/*
 * Server lifecycle: configuration, start-up (store, address pool, live map,
 * the embedded DERP relay and STUN server), request dispatch, background
 * timers (map keepalives, ephemeral node collection) and shutdown.
 */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sodium.h>

#include "common/buf.h"
#include "common/jsonx.h"
#include "common/keys.h"
#include "common/log.h"
#include "common/util.h"
#include "relay/derp_map.h"
#include "relay/derp_server.h"
#include "relay/stun_server.h"
#include "server/admin.h"
#include "server/events.h"
#include "server/hostinfo.h"
#include "server/enrol.h"
#include "server/html.h"
#include "server/ipam.h"
#include "server/httpsem.h"
#include "server/mapper.h"
#include "server/policy_api.h"
#include "server/replay.h"
#include "server/replica.h"
#include "server/replica_list.h"
#include "server/secret.h"
#include "server/server.h"
#include "server/session.h"

static const char default_filter[] =
    "[{\"IPProto\":[6,17,1,58],\"Srcs\":[\"*\"],"
    "\"Dsts\":[{\"Net\":\"0.0.0.0/0\",\"Ports\":{\"First\":0,\"Last\":65535}},"
    "{\"Net\":\"::/0\",\"Ports\":{\"First\":0,\"Last\":65535}}]}]";

void
server_config_defaults(struct server_config *c)
{
	memset(c, 0, sizeof(*c));
	str_copy(c->listen, "0.0.0.0:443", sizeof(c->listen));
	str_copy(c->db_path, "/var/lib/wiremesh/db.sqlite", sizeof(c->db_path));
	str_copy(c->log_level, "info", sizeof(c->log_level));
	str_copy(c->log_format, "text", sizeof(c->log_format));
	str_copy(c->acme_challenge, "http-01", sizeof(c->acme_challenge));
	if (prefix_parse("100.64.0.0/10", false, &c->prefix4) != 0 ||
	    prefix_parse("fd7a:115c:a1e0::/48", false, &c->prefix6) != 0)
		abort();	/* constants */
	c->node_expiry_s = 0;
	c->ephemeral_timeout_s = 120;
	c->keepalive_s = 10;	/* also bounds how long a vanished stream looks online */
	c->sign_skew_s = 300;
	c->max_body = 64 * 1024;
	c->max_policy_body = 1024 * 1024;
	c->threads = 4;
	c->max_connections = 20000;
	c->queue_max = 128;
	c->replay_per_machine = REPLAY_PER_MACHINE;
	c->change_log_max_age_s = 24 * 3600;
	c->change_log_max_changes = 100000;
	c->max_unauth_body = 8 * 1024;
	c->max_per_ip = 256;
	c->request_timeout_s = 30;
	c->idle_timeout_s = 120;
	c->derp_region_id = 900;
	str_copy(c->derp_region_code, "wiremesh", sizeof(c->derp_region_code));
	str_copy(c->derp_region_name, "wiremesh embedded relay", sizeof(c->derp_region_name));
	c->admin_session_idle_s = 30 * 60;
	c->admin_session_max_s = 12 * 3600;
	c->register_expiry_s = 15 * 60;
	oidc_config_defaults(&c->oidc);
}

static const struct {
	const char *key;
	enum { O_STR, O_DUR, O_INT, O_PFX4, O_PFX6, O_BOOL } type;
	size_t off;
	size_t size;
} options[] = {
	{ "listen", O_STR, offsetof(struct server_config, listen), 128 },
	{ "db", O_STR, offsetof(struct server_config, db_path), 512 },
	{ "tls_cert", O_STR, offsetof(struct server_config, tls_cert), 512 },
	{ "tls_key", O_STR, offsetof(struct server_config, tls_key), 512 },
	{ "derp_map", O_STR, offsetof(struct server_config, derp_map_path), 512 },
	{ "policy_file", O_STR, offsetof(struct server_config, policy_file), 512 },
	{ "log_level", O_STR, offsetof(struct server_config, log_level), 16 },
	{ "log_format", O_STR, offsetof(struct server_config, log_format), 16 },
	{ "metrics_listen", O_STR, offsetof(struct server_config, metrics_listen), 128 },
	{ "prefix_v4", O_PFX4, offsetof(struct server_config, prefix4), 0 },
	{ "prefix_v6", O_PFX6, offsetof(struct server_config, prefix6), 0 },
	{ "node_expiry", O_DUR, offsetof(struct server_config, node_expiry_s), 0 },
	{ "ephemeral_inactivity_timeout", O_DUR, offsetof(struct server_config, ephemeral_timeout_s), 0 },
	{ "keepalive_interval", O_DUR, offsetof(struct server_config, keepalive_s), 0 },
	{ "signature_max_skew", O_DUR, offsetof(struct server_config, sign_skew_s), 0 },
	{ "max_body_bytes", O_INT, offsetof(struct server_config, max_body), 0 },
	{ "max_policy_bytes", O_INT, offsetof(struct server_config, max_policy_body), 0 },
	{ "http_threads", O_INT, offsetof(struct server_config, threads), 0 },
	{ "max_connections", O_INT, offsetof(struct server_config, max_connections), 0 },
	{ "stream_queue_max", O_INT, offsetof(struct server_config, queue_max), 0 },
	{ "replay_per_machine", O_INT, offsetof(struct server_config, replay_per_machine), 0 },
	{ "change_log_max_age", O_DUR, offsetof(struct server_config, change_log_max_age_s), 0 },
	{ "change_log_max_changes", O_INT, offsetof(struct server_config, change_log_max_changes), 0 },
	{ "max_unauthenticated_body_bytes", O_INT, offsetof(struct server_config, max_unauth_body), 0 },
	{ "max_connections_per_ip", O_INT, offsetof(struct server_config, max_per_ip), 0 },
	{ "request_timeout", O_DUR, offsetof(struct server_config, request_timeout_s), 0 },
	{ "idle_timeout", O_DUR, offsetof(struct server_config, idle_timeout_s), 0 },
	{ "relay_admission_secret_file", O_STR, offsetof(struct server_config, relay_secret_file), 512 },
	{ "derp", O_BOOL, offsetof(struct server_config, derp), 0 },
	{ "derp_region_id", O_INT, offsetof(struct server_config, derp_region_id), 0 },
	{ "derp_region_code", O_STR, offsetof(struct server_config, derp_region_code), 32 },
	{ "derp_region_name", O_STR, offsetof(struct server_config, derp_region_name), 64 },
	{ "derp_hostname", O_STR, offsetof(struct server_config, derp_hostname), 256 },
	{ "derp_port", O_INT, offsetof(struct server_config, derp_port), 0 },
	{ "derp_listen", O_STR, offsetof(struct server_config, derp_listen), 128 },
	{ "stun_listen", O_STR, offsetof(struct server_config, stun_listen), 128 },
	{ "admin_session_idle", O_DUR, offsetof(struct server_config, admin_session_idle_s), 0 },
	{ "admin_session_max", O_DUR, offsetof(struct server_config, admin_session_max_s), 0 },
	{ "server_url", O_STR, offsetof(struct server_config, server_url), 512 },
	{ "register_url_expiry", O_DUR, offsetof(struct server_config, register_expiry_s), 0 },
	{ "acme_hostname", O_STR, offsetof(struct server_config, acme_hostname), 256 },
	{ "acme_email", O_STR, offsetof(struct server_config, acme_email), 256 },
	{ "acme_directory", O_STR, offsetof(struct server_config, acme_directory), 512 },
	{ "acme_http_listen", O_STR, offsetof(struct server_config, acme_http_listen), 128 },
	{ "acme_challenge", O_STR, offsetof(struct server_config, acme_challenge), 16 },
	{ "acme_state_dir", O_STR, offsetof(struct server_config, acme_state_dir), 512 },
	{ "acme_ca_file", O_STR, offsetof(struct server_config, acme_ca_file), 512 },
	{ "acme_renew_before", O_DUR, offsetof(struct server_config, acme_renew_before_s), 0 },
};

int
server_config_set(struct server_config *c, const char *key, const char *value,
		  char *why, size_t whylen)
{
	for (size_t i = 0; i < ARRAY_SIZE(options); i++) {
		char *p = (char *)c + options[i].off;
		struct ip_prefix pfx;
		int64_t v;
		char *end;

		if (strcmp(options[i].key, key) != 0)
			continue;
		switch (options[i].type) {
		case O_BOOL: {
			bool b;

			if (strcmp(value, "true") == 0 || strcmp(value, "1") == 0 ||
			    strcmp(value, "yes") == 0 || strcmp(value, "on") == 0) {
				b = true;
			} else if (strcmp(value, "false") == 0 || strcmp(value, "0") == 0 ||
			    strcmp(value, "no") == 0 || strcmp(value, "off") == 0) {
				b = false;
			} else {
				snprintf(why, whylen, "%s: \"%s\" is not true or false", key, value);
				return ERR_INVALID;
			}
			memcpy(p, &b, sizeof(b));
			return 0;
		}
		case O_STR:
			if (strlen(value) >= options[i].size) {
				snprintf(why, whylen, "%s: value too long", key);
				return ERR_INVALID;
			}
			str_copy(p, value, options[i].size);
			return 0;
		case O_DUR:
			if (duration_parse(value, &v) != 0) {
				snprintf(why, whylen, "%s: \"%s\" is not a duration (e.g. 90s, 30m, 24h, 7d)",
				    key, value);
				return ERR_INVALID;
			}
			memcpy(p, &v, sizeof(v));
			return 0;
		case O_INT:
			errno = 0;
			v = strtoll(value, &end, 10);
			if (errno || *end || end == value || v <= 0) {
				snprintf(why, whylen, "%s: \"%s\" is not a positive integer", key, value);
				return ERR_INVALID;
			}
			memcpy(p, &v, sizeof(v));
			return 0;
		case O_PFX4:
		case O_PFX6:
			if (prefix_parse(value, false, &pfx) != 0 ||
			    pfx.addr.family != (options[i].type == O_PFX4 ? AF_INET : AF_INET6)) {
				snprintf(why, whylen, "%s: \"%s\" is not an IPv%c prefix", key, value,
				    options[i].type == O_PFX4 ? '4' : '6');
				return ERR_INVALID;
			}
			{
				const char *outer_s = options[i].type == O_PFX4 ?
				    "100.64.0.0/10" : "fd7a:115c:a1e0::/48";
				struct ip_prefix outer;

				if (prefix_parse(outer_s, false, &outer) != 0 ||
				    !prefix_covers(&outer, &pfx)) {
					snprintf(why, whylen, "%s: %s is not inside %s", key, value,
					    outer_s);
					return ERR_INVALID;
				}
			}
			memcpy(p, &pfx, sizeof(pfx));
			return 0;
		}
	}
	snprintf(why, whylen, "unknown option \"%s\"", key);
	return ERR_INVALID;
}

int
server_config_env(struct server_config *c, char *why, size_t whylen)
{
	for (size_t i = 0; i < ARRAY_SIZE(options); i++) {
		char name[96];
		const char *v;
		int r;

		snprintf(name, sizeof(name), "WIREMESH_%s", options[i].key);
		for (char *p = name; *p; p++)
			*p = (char)toupper((unsigned char)*p);
		if ((v = getenv(name)) == NULL)
			continue;
		if ((r = server_config_set(c, options[i].key, v, why, whylen)) != 0)
			return r;
	}
	return dns_config_env(&c->dns, why, whylen);
}

/* The dns block's final checks against this server's own names. */
static int
dns_check(const struct server_config *c, char *why, size_t whylen)
{
	char host[256];
	const char *own[3] = { c->derp_hostname, host, NULL };
	const char *l = c->listen, *end;

	host[0] = '\0';
	if (l[0] == '[' && (end = strchr(l, ']')) != NULL)
		snprintf(host, sizeof(host), "%.*s", (int)(end - l - 1), l + 1);
	else if ((end = strrchr(l, ':')) != NULL)
		snprintf(host, sizeof(host), "%.*s", (int)(end - l), l);
	return dns_config_check(&c->dns, own, why, whylen);
}

/* SIGHUP: reads the dns block again (config file, then environment) and
 * sends every stream a "dns" delta when it changed. A bad file leaves the
 * running config alone. */
/* A changed "dns" section is a change of its own: every stream gets a
 * "dns" delta. False when it did not change. */
static bool
server_set_dns(struct server *s, const char *json)
{
	uint64_t v;

	if (!mapper_dns_differs(s->mapper, json))
		return false;
	if (server_publish_change(s, STORE_CHANGE_DNS, 0, json, &v) != 0) {
		log_error("msg=\"cannot log the dns change; it applies at the next reload\"");
		return false;
	}
	mapper_set_dns(s->mapper, json, v);
	server_publish_done(s, NULL);
	return true;
}

static void
dns_reload(struct server *s)
{
	struct server_config *c;
	char why[1024], *json;

	if (!s->cfg.config_path[0] || (c = malloc(sizeof(*c))) == NULL)
		return;
	*c = s->cfg;
	memset(&c->dns, 0, sizeof(c->dns));
	if (server_config_file(c, s->cfg.config_path, why, sizeof(why)) != 0 ||
	    dns_config_env(&c->dns, why, sizeof(why)) != 0 || dns_check(c, why, sizeof(why)) != 0) {
		log_error("msg=\"dns config not reloaded; the previous one stays\" err=\"%s\"", why);
	} else if ((json = dns_config_json(&c->dns)) != NULL) {
		if (server_set_dns(s, json))
			log_info("msg=\"dns config changed\" magic_dns=%s base_domain=%s",
			    c->dns.magic_dns ? "true" : "false", c->dns.base_domain);
		free(json);
	}
	free(c);
}

void
server_dns_label(char out[static STORE_NAME_MAX], const char *hostname)
{
	size_t n = 0;
	bool dash = false;

	for (const char *p = hostname; *p && n < 63; p++) {
		unsigned char ch = (unsigned char)*p;

		if (ch == '.')
			break;
		if (isalnum(ch) && ch < 128) {
			if (dash && n > 0)
				out[n++] = '-';
			dash = false;
			if (n < 63)
				out[n++] = (char)tolower(ch);
		} else {
			dash = true;
		}
	}
	out[n] = 0;
	if (n == 0)
		str_copy(out, "node", STORE_NAME_MAX);
}

void
server_reply_json(struct http_response *resp, int status, json_t *v)
{
	char *t = v ? json_dumps(v, JSON_COMPACT) : NULL;

	json_decref(v);
	if (t == NULL) {
		http_problem(resp, 500, NULL, "cannot encode the response");
		return;
	}
	http_set_body(resp, status, "application/json", t, strlen(t));
}

int
server_apikey_create(struct store *st, int64_t expires_at, char **key_out)
{
	struct store_apikey k;
	int r;

	memset(&k, 0, sizeof(k));
	if ((r = secret_generate(SECRET_API, key_out, k.prefix, k.hash)) != 0)
		return r;
	k.created_at = time_now_s();
	k.expires_at = expires_at;
	if ((r = store_apikey_insert(st, &k)) != 0) {
		free_secret(*key_out);
		*key_out = NULL;
	}
	return r;
}

/* The embedded relay admits at connect time; tell it when a key stops
 * being good (node deleted, expired, or its key replaced). */
void
server_relay_forget(struct server *s, const uint8_t key[static KEY_LEN])
{
	pthread_mutex_lock(&s->derp_lock);
	if (s->derp && derp_server_drop_key(s->derp, key) != 0)
		log_warn("msg=\"derp: cannot queue a disconnect\"");
	pthread_mutex_unlock(&s->derp_lock);
}

static int
mark_addrs(void *ctx, const struct store_node *n)
{
	struct server *s = ctx;

	ipam_mark(s->ipam, &n->ipv4);
	ipam_mark(s->ipam, &n->ipv6);
	return 0;
}

void
server_ipam_resync(struct server *s)
{
	/* store_node_list holds the store lock, which also guards the ipam */
	if (store_node_list(s->store, mark_addrs, s) != 0)
		log_warn("msg=\"cannot read the addresses in use from the database\"");
}

int
server_commit_change(struct server *s, int kind, int64_t node_id, const char *payload,
		     uint64_t *version)
{
	int r;

	pthread_mutex_lock(&s->publish_lock);
	if ((r = store_change_append(s->store, kind, node_id, payload, version)) != 0) {
		store_tx_rollback(s->store);
		pthread_mutex_unlock(&s->publish_lock);
		return r;
	}
	/* Replicas: the other replicas' changes before this one reach the
	 * mapper first (they are committed: versions are taken in commit
	 * order); the caller applies this one. */
	replica_catch_up(s->replica, *version);
	if ((r = store_tx_commit(s->store)) != 0) {
		pthread_mutex_unlock(&s->publish_lock);
		return r;
	}
	replica_applied_own(s->replica, *version);	/* still under publish_lock */
	return 0;
}

int
server_publish_change(struct server *s, int kind, int64_t node_id, const char *payload,
		      uint64_t *version)
{
	int r;

	if ((r = store_tx_begin(s->store)) != 0)
		return r;
	return server_commit_change(s, kind, node_id, payload, version);
}

void
server_publish_done(struct server *s, struct mapper_ids *routers)
{
	pthread_mutex_unlock(&s->publish_lock);
	for (size_t i = 0; routers && i < routers->n; i++) {
		uint64_t v;

		if (server_publish_change(s, STORE_CHANGE_ROUTES, routers->v[i], "", &v) != 0) {
			log_error("msg=\"cannot log a route change\" node_id=%" PRId64, routers->v[i]);
			continue;
		}
		mapper_routes_apply(s->mapper, routers->v[i], v);
		pthread_mutex_unlock(&s->publish_lock);
	}
	if (routers)
		mapper_ids_free(routers);
}

int
server_node_delete(struct server *s, int64_t id)
{
	struct mapper_ids routers = { 0 };
	struct store_node n;
	uint64_t v;
	char *payload;
	int r;

	if ((r = store_tx_begin(s->store)) != 0)
		return r;
	if ((r = store_node_get(s->store, id, &n)) != 0 ||
	    (r = store_node_delete(s->store, id)) != 0) {
		store_tx_rollback(s->store);
		return r;
	}
	/* who may see it, for resuming streams (a change a node may not see
	 * is never replayed to it) */
	if ((payload = mapper_removed_payload(s->mapper, id)) == NULL) {
		store_tx_rollback(s->store);
		return ERR_NOMEM;
	}
	if ((r = server_commit_change(s, STORE_CHANGE_REMOVED, id, payload, &v)) != 0) {
		free(payload);
		return r;
	}
	mapper_node_remove(s->mapper, id, v, payload, &routers);
	hostinfo_forget(s->hostinfo, id);
	free(payload);
	server_publish_done(s, &routers);
	ipam_release(s->ipam, &n.ipv4);
	ipam_release(s->ipam, &n.ipv6);
	server_relay_forget(s, n.node_key);
	policy_state_dirty(s);
	log_info("msg=\"node deleted\" node_id=%" PRId64 " name=%s", id, n.name);
	return 0;
}

/* Commits the open transaction with a NODE change for n (just written, or
 * expired by time) and tells the mapper and the relay, in version order. */
static int
publish_node(struct server *s, const struct store_node *old, const struct store_node *n)
{
	struct mapper_ids routers = { 0 };
	uint64_t v;
	int r;

	if ((r = server_commit_change(s, STORE_CHANGE_NODE, n->id, "", &v)) != 0)
		return r;
	mapper_node_upsert(s->mapper, n, v, &routers);
	server_publish_done(s, &routers);
	if (old && (memcmp(old->node_key, n->node_key, KEY_LEN) != 0 ||
	    (n->expires_at != 0 && n->expires_at <= time_now_s())))
		server_relay_forget(s, old->node_key);
	return 0;
}

int
server_node_edit(struct server *s, int64_t id, unsigned fields, server_node_edit_fn edit,
		 void *ctx, struct store_node *out)
{
	struct store_node old, n;
	int r;

	if ((r = store_tx_begin(s->store)) != 0)
		return r;
	if ((r = store_node_get(s->store, id, &old)) != 0)
		goto fail;
	n = old;
	if ((r = edit(ctx, &n)) != 0)
		goto fail;
	n.id = id;
	if (memcmp(&n, &old, sizeof(n)) == 0) {
		store_tx_rollback(s->store);	/* nothing to write */
	} else {
		if ((r = store_node_update_fields(s->store, &n, fields)) != 0 ||
		    (r = store_node_get(s->store, id, &n)) != 0)
			goto fail;
		if ((r = publish_node(s, &old, &n)) != 0)	/* commits */
			return r;
	}
	if (out)
		*out = n;
	policy_state_dirty(s);
	return 0;
fail:
	store_tx_rollback(s->store);
	return r;
}

/* Expiry by time: the node's row did not change, but it is expired now.
 * Publishing it again (a NODE change of its own) ends its map streams after
 * their "self" message, tells its peers (peer_changed with expired: true)
 * and drops its relay connections. */
static int
publish_expiry(struct server *s, int64_t id)
{
	struct store_node n;
	int r;

	if ((r = store_tx_begin(s->store)) != 0)
		return r;
	if ((r = store_node_get(s->store, id, &n)) == ERR_NOT_FOUND) {
		r = 0;	/* deleted meanwhile */
	} else if (r == 0 && n.expires_at != 0 && n.expires_at <= time_now_s() &&
	    s->replica != NULL &&
	    (r = store_node_expiry_published(s->store, id, n.expires_at)) != 0) {
		r = r == 1 ? 0 : r;	/* replicas: a leader before this one told everyone */
	} else if (r == 0 && n.expires_at != 0 && n.expires_at <= time_now_s()) {
		if ((r = publish_node(s, &n, &n)) != 0)	/* commits */
			return r;
		log_info("msg=\"node key expired\" node_id=%" PRId64 " name=%s", id, n.name);
		policy_state_dirty(s);
		return 0;
	}
	store_tx_rollback(s->store);	/* nothing was written */
	if (r == 0)
		policy_state_dirty(s);
	return r;
}

void
server_expire_due(struct server *s, int64_t *checked_until)
{
	int64_t now = time_now_s(), *ids;
	size_t n;

	if (store_node_expiring(s->store, *checked_until, now, &ids, &n) != 0)
		return;
	for (size_t i = 0; i < n; i++) {
		if (publish_expiry(s, ids[i]) != 0) {
			free(ids);
			return;	/* all retried on the next tick */
		}
	}
	free(ids);
	*checked_until = now;
}

struct set_fields {
	const struct store_node *src;
	unsigned fields;
};

static int
copy_fields(void *ctx, struct store_node *n)
{
	const struct set_fields *sf = ctx;
	const struct store_node *src = sf->src;

	if (sf->fields & STORE_NODE_KEYS) {
		memcpy(n->node_key, src->node_key, KEY_LEN);
		memcpy(n->disco_key, src->disco_key, KEY_LEN);
	}
	if (sf->fields & STORE_NODE_HOSTNAME)
		memcpy(n->hostname, src->hostname, sizeof(n->hostname));
	if (sf->fields & STORE_NODE_NAME)
		memcpy(n->name, src->name, sizeof(n->name));
	if (sf->fields & STORE_NODE_AUTH) {
		n->user_id = src->user_id;
		memcpy(n->user, src->user, sizeof(n->user));
		n->ephemeral = src->ephemeral;
		n->preauth_key_id = src->preauth_key_id;
	}
	if (sf->fields & STORE_NODE_TAGS)
		memcpy(n->tags, src->tags, sizeof(n->tags));
	if (sf->fields & STORE_NODE_ADDRS) {
		n->ipv4 = src->ipv4;
		n->ipv6 = src->ipv6;
	}
	if (sf->fields & STORE_NODE_LAST_SEEN)
		n->last_seen = src->last_seen;
	if (sf->fields & STORE_NODE_EXPIRY)
		n->expires_at = src->expires_at;
	if (sf->fields & STORE_NODE_ENDPOINTS) {
		memcpy(n->endpoints, src->endpoints, sizeof(n->endpoints));
		n->home_derp = src->home_derp;
	}
	if (sf->fields & STORE_NODE_ADVERTISED)
		memcpy(n->routes_advertised, src->routes_advertised, sizeof(n->routes_advertised));
	if (sf->fields & STORE_NODE_APPROVED)
		memcpy(n->routes_approved, src->routes_approved, sizeof(n->routes_approved));
	return 0;
}

int
server_node_set(struct server *s, const struct store_node *src, unsigned fields,
		struct store_node *out)
{
	struct set_fields sf = { src, fields };

	return server_node_edit(s, src->id, fields, copy_fields, &sf, out);
}

int64_t
server_parse_id(const char *p, const char **end)
{
	int64_t v = 0;
	const char *q = p;

	while (*q >= '0' && *q <= '9') {
		if (v > (INT64_MAX - (*q - '0')) / 10)
			return 0;
		v = v * 10 + (*q++ - '0');
	}
	*end = q;
	return q == p ? 0 : v;
}

/* ---- embedded relay ---- */

/* Verifier thread of the relay: only current, unexpired node keys. */
static int
derp_admit(void *ctx, const uint8_t nodekey[static KEY_LEN])
{
	struct server *s = ctx;

	if (mapper_node_key_known(s->mapper, nodekey, time_now_s()))
		return 0;
	/* Replicas: a node registered through another replica a moment ago
	 * may not have reached this one's map yet; the shared store has it.
	 * (The relay asks once per key and caches the verdict; the key was
	 * proven by the client's handshake.) */
	if (s->replica != NULL && store_node_key_valid(s->store, nodekey, time_now_s()) == 1)
		return 0;
	return ERR_FORBIDDEN;
}

static void
derp_release(void *ctx)
{
	http_upgrade_close(ctx);
}

/* HTTP thread, after the 101 went out. */
static void
derp_upgraded(void *ctx, struct http_upgrade *u, int fd, int hup_fd, const void *extra, size_t n)
{
	struct server *s = ctx;
	int r = ERR_UNAVAILABLE;

	pthread_mutex_lock(&s->derp_lock);
	if (s->derp)
		r = derp_server_adopt_borrowed(s->derp, fd, hup_fd, derp_release, u, extra, n);
	else
		http_upgrade_close(u);
	pthread_mutex_unlock(&s->derp_lock);
	if (r != 0)
		log_debug("msg=\"derp: upgraded connection not taken\" err=\"%s\"", err_str(r));
}

static void
derp_handle(struct server *s, struct http_request *req, struct http_response *resp)
{
	const char *p = req->path;

	if (strcmp(p, "/derp") == 0) {
		struct derp_http_header h[DERP_UPGRADE_HEADERS];
		int st = derp_upgrade_check(req->method, http_header(req, "Upgrade"));

		if (st != 0) {
			http_problem(resp, st, NULL, st == 405 ? "use GET" :
			    "/derp needs \"Upgrade: DERP\"");
			return;
		}
		pthread_mutex_lock(&s->derp_lock);
		if (s->derp)
			derp_server_upgrade_headers(s->derp, h);
		pthread_mutex_unlock(&s->derp_lock);
		if (s->derp == NULL) {	/* shutting down; only ever goes to NULL */
			http_problem(resp, 503, NULL, "the relay is shutting down");
			return;
		}
		resp->status = 101;
		for (int i = 0; i < DERP_UPGRADE_HEADERS; i++) {
			if (http_add_header(resp, h[i].name, h[i].value) != 0) {
				http_response_cleanup(resp);
				http_problem(resp, 500, NULL, "out of memory");
				return;
			}
		}
		resp->upgrade = derp_upgraded;
		resp->upgrade_ctx = s;
	} else if (strcmp(p, "/generate_204") == 0) {
		const char *ch = http_header(req, "X-Tailscale-Challenge");

		http_set_body(resp, 204, NULL, NULL, 0);
		/* echo only a short token of safe characters */
		if (ch && strlen(ch) <= 64 && strspn(ch, "abcdefghijklmnopqrstuvwxyz"
		    "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") == strlen(ch)) {
			char v[80];

			snprintf(v, sizeof(v), "response %s", ch);
			if (http_add_header(resp, "X-Tailscale-Response", v) != 0)
				log_debug("msg=\"derp: challenge header dropped\"");
		}
	} else if (strcmp(p, "/derp/probe") == 0 || strcmp(p, "/derp/latency-check") == 0) {
		http_set_body(resp, 200, NULL, NULL, 0);
	} else {
		http_problem(resp, 404, NULL, "no such endpoint: %s", p);
	}
}

/* Splits "host:port", "[v6]:port" or ":port". */
static int
split_hostport(const char *hp, char *host, size_t hostlen, long *port)
{
	const char *colon = strrchr(hp, ':');
	const char *h = hp;
	size_t hl;
	char *end;

	if (colon == NULL)
		return ERR_INVALID;
	hl = (size_t)(colon - hp);
	if (hl >= 2 && hp[0] == '[' && hp[hl - 1] == ']') {
		h++;
		hl -= 2;
	}
	if (hl >= hostlen)
		return ERR_INVALID;
	memcpy(host, h, hl);
	host[hl] = 0;
	*port = strtol(colon + 1, &end, 10);
	if (*end || end == colon + 1 || *port < 0 || *port > 65535)
		return ERR_INVALID;
	return 0;
}

static bool
is_off(const char *v)
{
	return v[0] == 0 || strcmp(v, "off") == 0 || strcmp(v, "-1") == 0;
}

/*
 * The DERP map when the embedded relay is on and no --derp-map file is
 * given: one region, one node, this server. HostName is derp_hostname, else
 * the listen host, else the machine's name; DERPPort is derp_port, else the
 * derp_listen port, else the listen port; STUNPort the stun_listen port or -1.
 */
static int
embedded_derp_map(const struct server_config *c, char **out)
{
	char host[256], shost[256], rid[24], name[40];
	long port, sport = -1;
	struct ip_addr a;
	json_t *node, *root;
	struct derp_map *check = NULL;
	char why[256];
	int r;

	*out = NULL;
	if (split_hostport(c->listen, host, sizeof(host), &port) != 0) {
		log_error("msg=\"embedded DERP: cannot read the listen address\" listen=%s", c->listen);
		return ERR_INVALID;
	}
	if (c->derp_listen[0]) {
		char lhost[256];

		if (split_hostport(c->derp_listen, lhost, sizeof(lhost), &port) != 0) {
			log_error("msg=\"embedded DERP: cannot read derp_listen\" derp_listen=%s",
			    c->derp_listen);
			return ERR_INVALID;
		}
	}
	if (c->derp_hostname[0])
		str_copy(host, c->derp_hostname, sizeof(host));
	else if (host[0] == 0 || strcmp(host, "0.0.0.0") == 0 || strcmp(host, "::") == 0) {
		if (gethostname(host, sizeof(host)) != 0 || host[0] == 0) {
			log_error("msg=\"embedded DERP: set derp_hostname (no host name)\"");
			return ERR_INVALID;
		}
		host[sizeof(host) - 1] = 0;
	}
	if (c->derp_port)
		port = (long)c->derp_port;
	if (port <= 0 || port > 65535) {
		log_error("msg=\"embedded DERP: set derp_port (the listen port is %ld)\"", port);
		return ERR_INVALID;
	}
	if (!is_off(c->stun_listen) &&
	    (split_hostport(c->stun_listen, shost, sizeof(shost), &sport) != 0 || sport == 0)) {
		log_error("msg=\"embedded DERP: stun_listen needs HOST:PORT with a fixed port\" "
		    "stun_listen=%s", c->stun_listen);
		return ERR_INVALID;
	}
	snprintf(rid, sizeof(rid), "%" PRId64, c->derp_region_id);
	snprintf(name, sizeof(name), "%" PRId64 "a", c->derp_region_id);
	node = json_pack("{s:s, s:I, s:s, s:i, s:i}", "Name", name,
	    "RegionID", (json_int_t)c->derp_region_id, "HostName", host,
	    "DERPPort", (int)port, "STUNPort", (int)sport);
	if (node && addr_parse(host, &a) == 0)
		json_object_set_new(node, a.family == AF_INET ? "IPv4" : "IPv6", json_string(host));
	root = node ? json_pack("{s:{s:{s:I, s:s, s:s, s:[o]}}}", "Regions", rid,
	    "RegionID", (json_int_t)c->derp_region_id, "RegionCode", c->derp_region_code,
	    "RegionName", c->derp_region_name, "Nodes", node) : NULL;
	*out = root ? json_dumps(root, JSON_COMPACT) : NULL;
	json_decref(root);
	if (*out == NULL)
		return ERR_NOMEM;
	/* what agents will parse */
	if ((r = derp_map_parse(*out, strlen(*out), &check, why, sizeof(why))) != 0) {
		log_error("msg=\"embedded DERP: generated map is invalid\" why=\"%s\"", why);
		free(*out);
		*out = NULL;
		return r;
	}
	derp_map_free(check);
	return 0;
}

static char start_error[600];	/* server_error() */

/* What this server announces in the replica list (replica_list.h): the
 * configured DERP map as the base of the shared one, its embedded relay's
 * region (when it made the map itself), and its name there: the server_url,
 * else "derp:HOST:PORT" of that region, else on PostgreSQL a name for this
 * run ("run:HOST:PID:RANDOM", recorded but not in the list the nodes get),
 * else "" (SQLite: no record). */
static int
replica_identity(struct server *s)
{
	json_t *dm = s->derp_map_json && s->cfg.derp_map_path[0] == 0 ?
	    json_loads(s->derp_map_json, 0, NULL) : NULL;
	json_t *rg = NULL, *node;
	size_t n;
	char rid[24];

	s->derp_base_json = strdup(s->cfg.derp_map_path[0] && s->derp_map_json ?
	    s->derp_map_json : "{\"Regions\":{}}");
	if (s->derp_base_json == NULL) {
		json_decref(dm);
		return ERR_NOMEM;
	}
	snprintf(rid, sizeof(rid), "%" PRId64, s->cfg.derp_region_id);
	if (dm != NULL && (rg = json_object_get(json_object_get(dm, "Regions"), rid)) != NULL &&
	    (s->derp_region_json = json_dumps(rg, JSON_COMPACT)) == NULL) {
		json_decref(dm);
		return ERR_NOMEM;
	}
	n = strlen(s->cfg.server_url);
	while (n > 0 && s->cfg.server_url[n - 1] == '/')
		n--;
	node = json_array_get(json_object_get(rg, "Nodes"), 0);
	if (n > 0)
		snprintf(s->replica_name, sizeof(s->replica_name), "%.*s", (int)n, s->cfg.server_url);
	else if (node != NULL)
		snprintf(s->replica_name, sizeof(s->replica_name), "derp:%s:%" JSON_INTEGER_FORMAT,
		    json_string_value(json_object_get(node, "HostName")),
		    json_integer_value(json_object_get(node, "DERPPort")));
	else if (store_url_is_postgres(s->cfg.db_path)) {
		/* Nothing to announce, but the online flags it sets need an
		 * owner the leader can tell is gone: a name for this run,
		 * recorded (not published) like the others'. */
		char host[256] = "", hex[2 * 8 + 1];
		uint8_t rnd[8];

		(void)gethostname(host, sizeof(host) - 1);
		randombytes_buf(rnd, sizeof(rnd));
		(void)hex_encode(hex, sizeof(hex), rnd, sizeof(rnd));
		snprintf(s->replica_name, sizeof(s->replica_name), "run:%s:%ld:%s", host,
		    (long)getpid(), hex);
	}
	json_decref(dm);
	return 0;
}

/* ---- dispatch ---- */

/* GET /oidc/callback: the provider sends the browser back here. */
static void
oidc_callback_page(struct server *s, struct http_request *req, struct http_response *resp)
{
	struct oidc_login *login;
	char why[512], esc[1200], body[1400];
	int status = 400;

	if (s->oidc == NULL) {
		html_page(resp, 404, "Not found", "<p>OpenID Connect login is not configured on this "
		    "server.</p>");
		return;
	}
	if ((login = calloc(1, sizeof(*login))) == NULL) {
		http_problem(resp, 503, NULL, "out of memory");
		return;
	}
	if (oidc_callback(s->oidc, req, login, &status, why, sizeof(why)) != 0) {
		log_warn("msg=\"oidc login refused\" client=%s status=%d why=\"%s\"", req->client,
		    status, why);
		html_escape(esc, sizeof(esc), why);
		snprintf(body, sizeof(body), "<p>%s</p>", esc);
		html_page(resp, status, "Login failed", body);
	} else if (login->purpose == OIDC_FOR_REGISTER) {
		enrol_oidc_done(s, login, resp);
	} else if (login->purpose == OIDC_FOR_ADMIN) {
		session_oidc_done(s, login, resp);
	} else {
		html_page(resp, 404, "Not found", "<p>Nothing waits for this login.</p>");
	}
	wipe(login, sizeof(*login));
	free(login);
}

/* Body limits, decided before any body is read: the admin API's limits
 * only once its credentials checked out; everything else (the node
 * protocol, whose signature covers the body, logins, the relay) gets the
 * small unauthenticated limit. */
static size_t
body_limit(void *ctx, struct http_request *req)
{
	struct server *s = ctx;
	const char *p = req->path;

	if (strcmp(req->method, "GET") == 0 || strcmp(req->method, "HEAD") == 0)
		return 0;
	if ((strncmp(p, "/api/v1/", 8) == 0 || strcmp(p, "/api/v1") == 0) &&
	    api_authorized(s, req))
		return (size_t)(strncmp(p, "/api/v1/policy", 14) == 0 ?
		    s->cfg.max_policy_body : s->cfg.max_body);
	return (size_t)s->cfg.max_unauth_body;
}

/* POST /relay/admit: the admission endpoint of standalone relays
 * (wiremesh-derper --verify-clients-url .../relay/admit
 * --verify-clients-secret-file ...). Only with the shared secret; answers
 * {"Allow": true} for the node key of a current, unexpired node. */
static void
relay_admit(struct server *s, struct http_request *req, struct http_response *resp)
{
	const char *h = http_header(req, "Authorization");
	uint8_t hash[32], key[KEY_LEN];
	const char *nk = NULL;
	char why[256];
	json_t *body;
	bool allow;

	if (!s->relay_secret_set) {
		http_problem(resp, 404, NULL, "relay admission is off: set relay_admission_secret_file");
		return;
	}
	if (strcmp(req->method, "POST") != 0) {
		http_problem(resp, 405, NULL, "relay admission requests are POST");
		return;
	}
	if (h == NULL || strncmp(h, "Bearer ", 7) != 0) {
		http_problem(resp, 401, NULL, "missing \"Authorization: Bearer <relay secret>\" header");
		return;
	}
	crypto_hash_sha256(hash, (const uint8_t *)h + 7, strlen(h + 7));
	if (sodium_memcmp(hash, s->relay_secret_hash, sizeof(hash)) != 0) {
		http_problem(resp, 401, NULL, "the relay secret is not valid");
		return;
	}
	body = jsonx_parse_object((const char *)req->body.data, req->body.len,
	    (size_t)s->cfg.max_unauth_body, why, sizeof(why));
	if (body == NULL || jsonx_str(body, "NodePublic", true, &nk, why, sizeof(why)) != 0 ||
	    key_parse(nk, "nodekey:", key) != 0) {
		json_decref(body);
		http_problem(resp, 400, NULL, "body must be {\"NodePublic\":\"nodekey:<64 hex digits>\"}");
		return;
	}
	json_decref(body);
	allow = mapper_node_key_known(s->mapper, key, time_now_s());
	server_reply_json(resp, 200, json_pack("{s:b}", "Allow", allow));
}

/* GET /healthz: cheap and unauthenticated: the database answers a trivial
 * query within a second. The full integrity check is the admin's
 * (GET /api/v1/integrity, or `wiremesh-server backup`). */
static void
healthz(struct server *s, struct http_response *resp)
{
	int r = store_ping(s->store, 1000);

	server_reply_json(resp, r == 0 ? 200 : 503, json_pack("{s:s}", "status",
	    r == 0 ? "ok" : r == ERR_TIMEOUT ? "database busy" : "database unavailable"));
}

/* Is "ip:port" (as http.c formats clients) a loopback address? */
static bool
loopback_client(const char *client)
{
	struct endpoint e;

	if (endpoint_parse(client, &e) != 0)
		return false;
	if (e.addr.family == AF_INET)
		return e.addr.b[0] == 127;
	{
		static const uint8_t lo6[16] = { [15] = 1 };
		static const uint8_t mapped[12] = { [10] = 0xff, [11] = 0xff };

		return memcmp(e.addr.b, lo6, 16) == 0 ||
		    (memcmp(e.addr.b, mapped, 12) == 0 && e.addr.b[12] == 127);
	}
}

/* The metrics_listen listener: /metrics and /healthz only. */
static void
metrics_dispatch(void *ctx, struct http_request *req, struct http_response *resp)
{
	struct server *s = ctx;

	if (strcmp(req->method, "GET") != 0 && strcmp(req->method, "HEAD") != 0)
		http_problem(resp, 405, NULL, "use GET");
	else if (strcmp(req->path, "/metrics") == 0)
		metrics_handle(s, req, resp);
	else if (strcmp(req->path, "/healthz") == 0)
		server_reply_json(resp, 200, json_pack("{s:s}", "status", "ok"));
	else
		http_problem(resp, 404, NULL, "this listener serves /metrics and /healthz only");
	httpsem_finish(req, resp);
}

static void
dispatch(void *ctx, struct http_request *req, struct http_response *resp)
{
	struct server *s = ctx;
	const char *p = req->path;

	if (strncmp(p, "/machine/", 9) == 0) {
		control_handle(s, req, resp);
	} else if (strncmp(p, "/api/v1/", 8) == 0 || strcmp(p, "/api/v1") == 0) {
		api_handle(s, req, resp);
	} else if (strcmp(p, "/healthz") == 0) {
		healthz(s, resp);
	} else if (strcmp(p, "/relay/admit") == 0) {
		relay_admit(s, req, resp);
	} else if (strcmp(p, "/metrics") == 0) {
		if (s->cfg.metrics_listen[0])
			http_problem(resp, 404, NULL, "metrics are served on metrics_listen (%s)",
			    s->cfg.metrics_listen);
		else if (!loopback_client(req->client))
			http_problem(resp, 403, NULL, "metrics are served to loopback clients only; set "
			    "metrics_listen (HOST:PORT) to serve them on a listener of their own");
		else
			metrics_handle(s, req, resp);
	} else if (strcmp(p, "/admin") == 0 || strncmp(p, "/admin/", 7) == 0) {
		admin_handle(s, req, resp);
	} else if (strncmp(p, "/register/", 10) == 0) {
		enrol_page(s, req, resp);
	} else if (strcmp(p, "/oidc/callback") == 0) {
		oidc_callback_page(s, req, resp);
	} else if (s->cfg.derp && (strcmp(p, "/derp") == 0 || strncmp(p, "/derp/", 6) == 0 ||
	    strcmp(p, "/generate_204") == 0)) {
		derp_handle(s, req, resp);
	} else {
		http_problem(resp, 404, NULL, "no such endpoint: %s", p);
	}
	httpsem_finish(req, resp);
	if (resp->stream_ops == NULL)
		metrics_observe(s, resp->status, time_mono_ns() - req->start_ns);
}

/* ---- lifecycle ---- */

struct load_ctx {
	struct server *s;
	struct mapper_ids online;	/* ascending */
	size_t next;
	char *dns;		/* the "dns" section of the last logged DNS change */
};

static int
load_online(void *ctx, int64_t id)
{
	struct load_ctx *lc = ctx;

	if (lc->online.n == lc->online.cap) {
		size_t ncap = lc->online.cap ? 2 * lc->online.cap : 256;
		int64_t *v = realloc(lc->online.v, ncap * sizeof(*v));

		if (v == NULL)
			return ERR_NOMEM;
		lc->online.v = v;
		lc->online.cap = ncap;
	}
	lc->online.v[lc->online.n++] = id;
	return 0;
}

/* Nodes come in ascending id order, as do the online ids. */
static int
load_node(void *ctx, const struct store_node *n)
{
	struct load_ctx *lc = ctx;
	struct server *s = lc->s;
	bool online;

	while (lc->next < lc->online.n && lc->online.v[lc->next] < n->id)
		lc->next++;
	online = lc->next < lc->online.n && lc->online.v[lc->next] == n->id;
	ipam_mark(s->ipam, &n->ipv4);
	ipam_mark(s->ipam, &n->ipv6);
	return mapper_load(s->mapper, n, online);
}

static int
load_mine(void *ctx, int64_t id)
{
	struct server *s = ctx;

	mapper_online_mine(s->mapper, id, true);
	return 0;
}

static int
load_change(void *ctx, const struct store_change *c)
{
	struct load_ctx *lc = ctx;

	if (c->kind == STORE_CHANGE_DNS) {
		free(lc->dns);
		lc->dns = strdup(c->payload);
	} else if (c->kind == STORE_CHANGE_POLICY) {
		json_t *p = json_loads(c->payload, 0, NULL);
		const char *e = json_string_value(json_object_get(p, "etag"));

		str_copy(lc->s->policy_etag_logged, e ? e : "", sizeof(lc->s->policy_etag_logged));
		json_decref(p);
	}
	return mapper_log_load(lc->s->mapper, c);
}

/* The nodes, their published online flags and the retained change log;
 * then a ROUTES change for every router (the primaries chosen now may
 * differ from the last run's, and resuming streams must hear of it). */
static int
load_state(struct server *s)
{
	struct load_ctx lc = { .s = s };
	struct mapper_ids routers = { 0 };
	struct mapper_stats ms;
	int r;

	if (store_is_postgres(s->store)) {	/* the primaries the leader elected */
		struct mapper_primary *prim;
		size_t nprim;

		if ((r = server_route_primaries_load(s, &prim, &nprim)) != 0)
			goto out;
		r = mapper_primaries_set(s->mapper, prim, nprim);
		free(prim);
		if (r != 0)
			goto out;
	}
	if ((r = store_node_online_list(s->store, load_online, &lc)) != 0 ||
	    (r = store_node_list(s->store, load_node, &lc)) != 0 ||
	    (store_is_postgres(s->store) &&	/* replicas: the flags this one set */
	     (r = store_node_online_by(s->store, s->replica_name, load_mine, s)) != 0))
		goto out;
	mapper_stats(s->mapper, &ms);
	if ((r = store_change_list(s->store, ms.floor, load_change, &lc)) != 0 ||
	    (r = mapper_routers(s->mapper, &routers)) != 0)
		goto out;
	/* PostgreSQL: from here on, follow what the other replicas commit */
	mapper_stats(s->mapper, &ms);
	if ((r = replica_new(s, ms.version, &s->replica)) != 0)
		goto out;
	/* A "dns" section that differs from the last one logged (the config
	 * changed while the server was down) is a change resuming streams
	 * must hear of. */
	if (s->dns_json && (lc.dns == NULL || strcmp(lc.dns, s->dns_json) != 0)) {
		uint64_t v;

		if ((r = server_publish_change(s, STORE_CHANGE_DNS, 0, s->dns_json, &v)) != 0)
			goto out;
		mapper_set_dns(s->mapper, s->dns_json, v);
		pthread_mutex_unlock(&s->publish_lock);
	}
	/* replicas: the stored primaries stand; the leader elects anew */
	pthread_mutex_lock(&s->publish_lock);
	server_publish_done(s, store_is_postgres(s->store) ? NULL : &routers);
	mapper_stats(s->mapper, &ms);
	log_info("msg=\"map state loaded\" nodes=%zu online=%zu version=%" PRIu64
	    " log_changes=%zu log_floor=%" PRIu64, ms.nodes, ms.online_nodes, ms.version,
	    ms.log_len, ms.floor);
out:
	mapper_ids_free(&lc.online);
	mapper_ids_free(&routers);
	free(lc.dns);
	return r;
}

struct prim_load {
	struct mapper_primary *v;
	size_t n, cap;
};

static int
prim_row(void *ctx, const struct store_primary *p)
{
	struct prim_load *pl = ctx;
	struct ip_prefix pfx;

	if (prefix_parse(p->prefix, false, &pfx) != 0) {
		log_warn("msg=\"unreadable route_primaries row; ignored\" prefix=\"%s\"", p->prefix);
		return 0;
	}
	if (pl->n == pl->cap) {
		size_t nc = pl->cap ? 2 * pl->cap : 16;
		struct mapper_primary *t = realloc(pl->v, nc * sizeof(*t));

		if (t == NULL)
			return ERR_NOMEM;
		pl->v = t;
		pl->cap = nc;
	}
	pl->v[pl->n].p = pfx;
	pl->v[pl->n++].node = p->node_id;
	return 0;
}

int
server_route_primaries_load(struct server *s, struct mapper_primary **out, size_t *n)
{
	struct prim_load pl = { 0 };
	int r;

	if ((r = store_route_primaries_list(s->store, prim_row, &pl)) != 0) {
		free(pl.v);
		pl.v = NULL;
		pl.n = 0;
	}
	*out = pl.v;
	*n = pl.n;
	return r;
}

/*
 * Replicas, the leader's job: elects the primary router of each subnet
 * prefix from what this replica's mapper knows, and when that differs from
 * the stored table, stores the new one with a ROUTES change for each router
 * whose carried routes change, in one transaction; every replica (this one
 * here, the others when they follow the change log) applies the table it
 * reads with those changes. Returns 0, or an error (retried next tick).
 */
static int
routes_elect_tick(struct server *s, bool force)
{
	struct mapper_ids routers = { 0 };
	struct mapper_primary *np = NULL;
	struct store_primary *sp = NULL;
	uint64_t *vs = NULL;
	size_t n = 0;
	int r;

	if ((r = mapper_primaries_elect(s->mapper, force, &np, &n, &routers)) <= 0)
		goto out;
	if ((n > 0 && (sp = calloc(n, sizeof(*sp))) == NULL) ||
	    (vs = calloc(routers.n, sizeof(*vs))) == NULL) {
		r = ERR_NOMEM;
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		prefix_fmt(sp[i].prefix, &np[i].p);
		sp[i].node_id = np[i].node;
	}
	if ((r = store_tx_begin(s->store)) != 0)
		goto out;
	if ((r = store_route_primaries_set(s->store, sp, n)) != 0) {
		store_tx_rollback(s->store);
		goto out;
	}
	pthread_mutex_lock(&s->publish_lock);
	for (size_t i = 0; r == 0 && i < routers.n; i++)
		r = store_change_append(s->store, STORE_CHANGE_ROUTES, routers.v[i], "", &vs[i]);
	if (r != 0) {
		store_tx_rollback(s->store);
		pthread_mutex_unlock(&s->publish_lock);
		goto out;
	}
	/* the other replicas' changes below ours first; ours are applied here */
	replica_catch_up(s->replica, vs[0]);
	if ((r = store_tx_commit(s->store)) == 0)
		replica_applied_own(s->replica, vs[routers.n - 1]);
	if (r != 0) {
		pthread_mutex_unlock(&s->publish_lock);
		goto out;
	}
	mapper_primaries_apply(s->mapper, np, n, routers.v[0], vs[0]);
	for (size_t i = 1; i < routers.n; i++)
		mapper_routes_apply(s->mapper, routers.v[i], vs[i]);
	pthread_mutex_unlock(&s->publish_lock);
	for (size_t i = 0; i < n; i++)
		log_info("msg=\"route primary\" prefix=%s node_id=%" PRId64, sp[i].prefix,
		    sp[i].node_id);
	r = 0;
out:
	if (r < 0)
		log_warn("msg=\"cannot store the route primaries; retrying\" err=\"%s\"", err_str(r));
	free(np);
	free(sp);
	free(vs);
	mapper_ids_free(&routers);
	return r < 0 ? r : 0;
}

/* Commits the open transaction with an ONLINE change and applies it. */
static int
publish_online(struct server *s, const char *payload)
{
	struct mapper_ids routers = { 0 };
	uint64_t v;
	int r;

	if ((r = server_commit_change(s, STORE_CHANGE_ONLINE, 0, payload, &v)) != 0)
		return r;
	mapper_online_apply(s->mapper, v, payload, &routers);
	server_publish_done(s, &routers);
	return 0;
}

/* Publishes the online flags that changed since the last tick as one
 * change: one message per stream, however many nodes came and went.
 * Replicas: a flag is recorded as set by this replica (replica_name); one
 * set by another replica whose node's stream moved here is claimed; this
 * replica clears only the flags it set (another may hold the stream now). */
static void
online_tick(struct server *s)
{
	struct mapper_ids claims = { 0 };
	bool shared = s->replica != NULL, dropped = false;
	char *payload = NULL, *fixed = NULL;
	json_t *p = NULL;
	int r = 0;

	if (shared && mapper_online_claims(s->mapper, &claims) != 0)
		goto out;
	payload = mapper_online_collect(s->mapper);
	if (payload == NULL && claims.n == 0)
		goto out;
	if ((payload && (p = json_loads(payload, 0, NULL)) == NULL) ||
	    (r = store_tx_begin(s->store)) != 0)
		goto out;
	for (size_t i = 0; r == 0 && i < claims.n; i++)
		r = store_node_claim_online(s->store, claims.v[i], s->replica_name);
	for (int half = 0; r == 0 && p && half < 2; half++) {
		json_t *a = json_object_get(p, half ? "off" : "on");

		for (size_t i = 0; r == 0 && i < json_array_size(a); ) {
			int64_t id = json_integer_value(json_array_get(a, i));

			r = store_node_set_online(s->store, id, !half, s->replica_name, shared);
			if (r == ERR_NOT_FOUND && half) {
				/* another replica holds its stream now: its flag */
				mapper_online_mine(s->mapper, id, false);
				json_array_remove(a, i);
				dropped = true;
				r = 0;
				continue;
			}
			i++;
		}
	}
	if (r != 0) {
		store_tx_rollback(s->store);
		log_warn("msg=\"cannot publish online flags; retrying\" err=\"%s\"", err_str(r));
		goto out;
	}
	if (dropped && (fixed = json_dumps(p, JSON_COMPACT | JSON_PRESERVE_ORDER)) == NULL) {
		store_tx_rollback(s->store);
		goto out;
	}
	if (p == NULL || (json_array_size(json_object_get(p, "on")) == 0 &&
	    json_array_size(json_object_get(p, "off")) == 0)) {
		if ((r = store_tx_commit(s->store)) != 0)	/* claims only */
			log_warn("msg=\"cannot record online flags; retrying\" err=\"%s\"", err_str(r));
		goto out;
	}
	if ((r = publish_online(s, fixed ? fixed : payload)) != 0)
		log_warn("msg=\"cannot publish online flags; retrying\" err=\"%s\"", err_str(r));
out:
	json_decref(p);
	free(payload);
	free(fixed);
	mapper_ids_free(&claims);
}

/*
 * Replicas, the leader's job: the online flags set by replicas that are
 * gone (their record in the replica list not renewed for REPLICA_STALE_S)
 * are cleared, in one ONLINE change, so that nodes whose stream died with
 * their replica and did not come back elsewhere go offline (and route
 * primaries fail over). A node that did come back elsewhere was claimed by
 * that replica and is left alone.
 */
static void
orphan_tick(struct server *s)
{
	int64_t now, *ids = NULL;
	size_t n = 0;
	struct buf b;
	int r;

	if (store_clock(s->store, &now) != 0 || store_tx_begin(s->store) != 0)
		return;
	if ((r = store_node_online_orphans(s->store, now - REPLICA_STALE_S, &ids, &n)) != 0 ||
	    n == 0) {
		store_tx_rollback(s->store);
		if (r != 0)
			log_warn("msg=\"cannot read the online flags of replicas gone\" err=\"%s\"",
			    err_str(r));
		free(ids);
		return;
	}
	buf_init(&b, (size_t)64 << 20);
	r = buf_printf(&b, "{\"on\":[],\"off\":[");
	for (size_t i = 0; r == 0 && i < n; i++)
		r = buf_printf(&b, i ? ",%" PRId64 : "%" PRId64, ids[i]);
	if (r == 0)
		r = buf_printf(&b, "]}");
	if (r != 0)
		store_tx_rollback(s->store);
	else if ((r = publish_online(s, buf_cstr(&b))) == 0)
		log_info("msg=\"online flags of nodes whose replica is gone cleared\" nodes=%zu", n);
	if (r != 0)
		log_warn("msg=\"cannot clear the online flags of replicas gone\" err=\"%s\"",
		    err_str(r));
	buf_cleanup(&b);
	free(ids);
}

static void
prune_tick(struct server *s)
{
	uint64_t floor;

	if (store_change_prune(s->store, time_now_s(), s->cfg.change_log_max_age_s,
	    s->cfg.change_log_max_changes, &floor) == 0)
		mapper_log_prune(s->mapper, floor);
}

static void
on_offline(void *ctx, int64_t id)
{
	struct server *s = ctx;

	if (store_node_set_last_seen(s->store, id, time_now_s()) != 0)
		log_warn("msg=\"cannot record last seen\" node_id=%" PRId64, id);
}

static char *
slurp(const char *path, size_t max)
{
	FILE *f = fopen(path, "rb");
	char *p;
	size_t n;

	if (f == NULL)
		return NULL;
	if ((p = malloc(max + 1)) == NULL) {
		fclose(f);
		return NULL;
	}
	n = fread(p, 1, max + 1, f);
	fclose(f);
	if (n > max) {
		free(p);
		return NULL;
	}
	p[n] = 0;
	return p;
}

int
server_new(const struct server_config *cfg, struct server **out)
{
	struct server *s = calloc(1, sizeof(*s));
	struct mapper_config mc;
	int r;

	*out = NULL;
	if (s == NULL)
		return ERR_NOMEM;
	s->cfg = *cfg;
	pthread_mutex_init(&s->derp_lock, NULL);
	pthread_mutex_init(&s->publish_lock, NULL);
	if (cfg->acme_hostname[0]) {
		if ((r = server_acme_setup(s, start_error, sizeof(start_error))) != 0) {
			log_error("msg=\"acme: no certificate\" err=\"%s\"", start_error);
			goto fail;
		}
		cfg = &s->cfg;	/* tls_cert and tls_key now name the ACME files */
	}
	if (cfg->derp && cfg->derp_region_id > 65535) {
		log_error("msg=\"derp_region_id must be 1..65535\"");
		r = ERR_INVALID;
		goto fail;
	}
	{
		char why[1024];

		if ((r = dns_check(cfg, why, sizeof(why))) != 0) {
			log_error("msg=\"invalid dns config\" err=\"%s\"", why);
			goto fail;
		}
		if ((s->dns_json = dns_config_json(&cfg->dns)) == NULL) {
			r = ERR_NOMEM;
			goto fail;
		}
	}
	if (cfg->derp && !cfg->derp_map_path[0] && (r = embedded_derp_map(cfg, &s->derp_map_json)) != 0)
		goto fail;
	if (cfg->derp_map_path[0] && (cfg->derp_hostname[0] || cfg->derp_port))
		log_warn("msg=\"derp_hostname and derp_port describe the one-region map made "
		    "without derp_map; with derp_map they are ignored: describe the embedded relay "
		    "in the map file\" derp_map=%s derp_hostname=%s", cfg->derp_map_path,
		    cfg->derp_hostname);
	if (cfg->derp_map_path[0]) {
		json_error_t e;
		json_t *dm;
		char *text;

		errno = 0;
		text = slurp(cfg->derp_map_path, 1 << 20);

		if (text == NULL) {
			snprintf(start_error, sizeof(start_error), "cannot read the DERP map %s: %s",
			    cfg->derp_map_path, errno ? strerror(errno) : "larger than 1 MiB");
			log_error("msg=\"cannot read DERP map\" path=%s err=\"%s\"", cfg->derp_map_path,
			    errno ? strerror(errno) : "larger than 1 MiB");
			r = ERR_IO;
			goto fail;
		}
		dm = json_loads(text, 0, &e);
		free(text);
		if (dm == NULL || !json_is_object(json_object_get(dm, "Regions"))) {
			log_error("msg=\"DERP map is not valid\" path=%s line=%d err=\"%s\"",
			    cfg->derp_map_path, dm ? 0 : e.line,
			    dm ? "no Regions object" : e.text);
			json_decref(dm);
			r = ERR_INVALID;
			goto fail;
		}
		s->derp_map_json = json_dumps(dm, JSON_COMPACT);
		json_decref(dm);
	}
	if ((r = replica_identity(s)) != 0)
		goto fail;
	if ((r = store_open(cfg->db_path, &s->store)) != 0)
		goto fail;
	if ((r = ipam_new(&cfg->prefix4, &cfg->prefix6, &s->ipam)) != 0)
		goto fail;
	if ((r = replay_new((size_t)s->cfg.replay_per_machine, &s->replay)) != 0)
		goto fail;
	if (cfg->relay_secret_file[0]) {
		int e = 0;
		char *sec = secret_file_read(cfg->relay_secret_file, &e);

		if (sec == NULL) {
			log_error("msg=\"cannot read relay_admission_secret_file (a non-empty file of mode "
			    "0600)\" path=%s err=\"%s\"", cfg->relay_secret_file, strerror(e));
			r = ERR_INVALID;
			goto fail;
		}
		crypto_hash_sha256(s->relay_secret_hash, (const uint8_t *)sec, strlen(sec));
		s->relay_secret_set = true;
		free_secret(sec);
	}
	if (cfg->admin_session_idle_s <= 0 || cfg->admin_session_max_s <= 0) {
		log_error("msg=\"admin_session_idle and admin_session_max must be durations above 0\"");
		r = ERR_INVALID;
		goto fail;
	}
	if ((r = events_new(&s->events)) != 0 || (r = hostinfo_new(&s->hostinfo)) != 0)
		goto fail;
	if ((r = enrol_new(&s->enrol)) != 0)
		goto fail;
	if (cfg->oidc.enabled) {
		char redirect[600], why[512];

		if (cfg->server_url[0] == 0) {
			log_error("msg=\"oidc needs server_url (the public URL of this server; the "
			    "redirect URI is SERVER/oidc/callback)\"");
			r = ERR_INVALID;
			goto fail;
		}
		snprintf(redirect, sizeof(redirect), "%.*s/oidc/callback",
		    (int)(strlen(cfg->server_url) - (cfg->server_url[strlen(cfg->server_url) - 1] == '/')),
		    cfg->server_url);
		if ((r = oidc_new(&cfg->oidc, redirect, &s->oidc, why, sizeof(why))) != 0) {
			log_error("msg=\"oidc: %s\"", why);
			goto fail;
		}
		log_info("msg=\"oidc login enabled\" issuer=%s redirect_uri=%s", cfg->oidc.issuer,
		    redirect);
	}
	memset(&mc, 0, sizeof(mc));
	if ((r = store_map_version(s->store, &mc.version, &mc.floor)) != 0)
		goto fail;
	mc.online_grace_ms = (2 * cfg->keepalive_s + 5) * 1000;
	mc.queue_max = (unsigned)cfg->queue_max;
	mc.dns_json = s->dns_json;
	mc.derp_map_json = s->derp_map_json;
	mc.default_filter_json = default_filter;
	mc.on_offline = on_offline;
	mc.ctx = s;
	/* replicas: online flags and route primaries are the network's */
	mc.shared_primaries = mc.shared_online = store_is_postgres(s->store);
	if ((r = mapper_new(&mc, &s->mapper)) != 0)
		goto fail;
	if ((r = load_state(s)) != 0)
		goto fail;
	if ((r = policy_state_init(s)) != 0)
		goto fail;
	if ((r = replica_list_start(s, start_error, sizeof(start_error))) != 0) {
		log_error("msg=\"cannot join the replica list\" err=\"%s\"", start_error);
		goto fail;
	}
	s->replica_recorded = true;
	if (cfg->derp) {
		struct derp_server_config dc;

		memset(&dc, 0, sizeof(dc));
		dc.verify = derp_admit;
		dc.verify_ctx = s;
		dc.max_conns = (unsigned)cfg->max_connections;
		if (cfg->derp_listen[0]) {
			/* The relay's own listener: full speed, where the HTTP
			 * layer's TLS proxy for upgrades is slow. */
			dc.https_addr = cfg->derp_listen;
			dc.tls_cert = cfg->tls_cert[0] ? cfg->tls_cert : NULL;
			dc.tls_key = cfg->tls_key[0] ? cfg->tls_key : NULL;
			dc.plain_derp = dc.tls_cert == NULL;	/* behind a TLS proxy */
			dc.tls_cert_later = s->acme_alpn;	/* issued after start */
		}
		if ((s->derp = derp_server_new(&dc)) == NULL) {
			r = ERR_NOMEM;
			goto fail;
		}
	}
	if (!is_off(cfg->stun_listen) && (s->stun = stun_server_new(cfg->stun_listen)) == NULL) {
		r = ERR_NOMEM;
		goto fail;
	}
	*out = s;
	return 0;
fail:
	server_free(s);
	return r;
}

enum { ONLINE_TICK_MS = 250 };	/* online flags are published this often */

static pthread_t timer_thread;
static volatile sig_atomic_t got_signal;

static void *
timers(void *arg)
{
	struct server *s = arg;
	int64_t next_keepalive = time_mono_ms() + s->cfg.keepalive_s * 1000;
	int64_t next_reap = time_mono_ms() + 1000;
	int64_t next_online = time_mono_ms() + ONLINE_TICK_MS;
	int64_t next_prune = time_mono_ms() + 60 * 1000;
	int64_t expiry_checked = time_now_s(), next_policy_file = 0, next_orphans = 0;
	int64_t next_beat = time_mono_ms() + REPLICA_BEAT_S * 1000;
	unsigned trims = 0;
	bool leader = false, routes_retry = false;

	while (!atomic_load(&s->stopping)) {
		int64_t ids[256];
		size_t n;
		bool took;

		usleep(50 * 1000);
		/* Replicas: the singleton work is the leader's (replica.h); on
		 * SQLite this server always is. A new leader looks back over
		 * the retained change log for expiries nobody published (its
		 * predecessor may have died first), elects the route primaries
		 * and checks the policy file. */
		took = replica_leader(s->replica) && !leader;
		leader = replica_leader(s->replica);
		if (took && s->replica) {
			expiry_checked = time_now_s() - s->cfg.change_log_max_age_s;
			routes_retry = true;
			next_policy_file = 0;
		}
		if (leader && s->replica) {
			routes_retry = routes_elect_tick(s, routes_retry) != 0;
			if (time_mono_ms() >= next_orphans) {
				orphan_tick(s);
				next_orphans = time_mono_ms() + 1000;
			}
			if (time_mono_ms() >= next_policy_file) {
				policy_state_file_role(s, took);
				next_policy_file = time_mono_ms() + 1000;
			}
		}
		if (time_mono_ms() >= next_online) {
			online_tick(s);
			next_online = time_mono_ms() + ONLINE_TICK_MS;
		}
		if (time_mono_ms() >= next_prune) {
			prune_tick(s);
			next_prune = time_mono_ms() + 60 * 1000;
		}
		if (time_mono_ms() >= next_beat) {
			replica_list_tick(s);
			next_beat = time_mono_ms() + REPLICA_BEAT_S * 1000;
		}
		if (replica_policy_changed(s->replica))
			policy_state_follow_store(s);
		policy_state_tick(s);
		events_tick(s);
		session_tick(s);
		enrol_tick(s);
		if (time_mono_ms() >= next_reap) {
			if ((n = http_reap_closed(s->http)) > 0)
				log_debug("msg=\"map streams of vanished clients ended\" count=%zu", n);
			if (leader)
				server_expire_due(s, &expiry_checked);
			if ((n = http_reap_slow(s->http)) > 0)
				log_debug("msg=\"connections closed: request not in within "
				    "request_timeout\" count=%zu", n);
			/* Give freed request memory back to the system. */
			if (++trims % 10 == 0) {
				int64_t t0 = time_mono_ms(), trim_ms;

				(void)malloc_trim(0);
				/* it holds each malloc arena while it walks it */
				if ((trim_ms = time_mono_ms() - t0) >= 100)
					log_info("msg=\"returning freed memory took long\" ms=%" PRId64,
					    trim_ms);
			}
			replay_sweep(s->replay, time_now_s());
			next_reap = time_mono_ms() + 1000;
		}
		if (time_mono_ms() >= next_keepalive) {
			mapper_keepalive(s->mapper);
			next_keepalive = time_mono_ms() + s->cfg.keepalive_s * 1000;
		}
		/* replicas: one of them does it (replica.h) */
		n = !replica_leader(s->replica) ? 0 : mapper_idle_ephemeral(s->mapper,
		    s->cfg.ephemeral_timeout_s * 1000, ids, ARRAY_SIZE(ids));
		for (size_t i = 0; i < n; i++) {
			if (server_node_delete(s, ids[i]) == 0)
				log_info("msg=\"ephemeral node removed after inactivity\" node_id=%"
				    PRId64, ids[i]);
		}
	}
	return NULL;
}

const char *
server_error(void)
{
	return start_error;
}

int
server_start(struct server *s)
{
	struct http_config hc;
	int r;

	if (s->derp && (r = derp_server_start(s->derp)) != 0) {
		snprintf(start_error, sizeof(start_error), "cannot start the embedded DERP relay%s%s: %s",
		    s->cfg.derp_listen[0] ? " on " : "", s->cfg.derp_listen,
		    errno ? strerror(errno) : err_str(r));
		log_error("msg=\"cannot start the embedded DERP relay\" err=\"%s\"", err_str(r));
		return r;
	}
	errno = 0;
	if (s->stun && (r = stun_server_start(s->stun)) != 0) {
		snprintf(start_error, sizeof(start_error), "cannot start the STUN server on %s (UDP): %s",
		    s->cfg.stun_listen, errno ? strerror(errno) : err_str(r));
		log_error("msg=\"cannot start the STUN server\" listen=%s err=\"%s\"",
		    s->cfg.stun_listen, errno ? strerror(errno) : err_str(r));
		return r;
	}
	memset(&hc, 0, sizeof(hc));
	hc.listen = s->cfg.listen;
	hc.tls_cert_path = s->cfg.tls_cert[0] ? s->cfg.tls_cert : NULL;
	hc.tls_key_path = s->cfg.tls_key[0] ? s->cfg.tls_key : NULL;
	hc.tls_reloadable = s->acme != NULL || s->acme_alpn;
	hc.tls_cert_later = s->acme_alpn;
	hc.max_body = (size_t)s->cfg.max_unauth_body;
	hc.body_limit = body_limit;
	hc.max_per_ip = (unsigned)s->cfg.max_per_ip;
	hc.request_timeout_s = (unsigned)s->cfg.request_timeout_s;
	hc.idle_timeout_s = (unsigned)s->cfg.idle_timeout_s;
	hc.threads = (unsigned)s->cfg.threads;
	hc.max_connections = (unsigned)s->cfg.max_connections;
	hc.stream_keepalive_s = s->cfg.keepalive_s;
	hc.dispatch = dispatch;
	hc.ctx = s;
	if ((r = http_start(&hc, &s->http)) != 0) {
		snprintf(start_error, sizeof(start_error), "%s", http_start_error());
		return r;
	}
	if (s->cfg.metrics_listen[0]) {	/* plain HTTP, for the scraper only */
		struct http_config mc;

		memset(&mc, 0, sizeof(mc));
		mc.listen = s->cfg.metrics_listen;
		mc.max_body = 1024;
		mc.threads = 1;
		mc.max_connections = 64;
		mc.dispatch = metrics_dispatch;
		mc.ctx = s;
		if ((r = http_start(&mc, &s->metrics_http)) != 0) {
			snprintf(start_error, sizeof(start_error), "metrics_listen: %s",
			    http_start_error());
			return r;
		}
		log_info("msg=\"metrics listening\" listen=%s port=%d", s->cfg.metrics_listen,
		    http_port(s->metrics_http));
	}
	if (s->acme_alpn && (r = server_acme_alpn_start(s, start_error, sizeof(start_error))) != 0) {
		log_error("msg=\"acme: no certificate\" err=\"%s\"", start_error);
		return r;
	}
	if (s->acme && (r = server_acme_run(s)) != 0)
		return r;
	if (pthread_create(&timer_thread, NULL, timers, s) != 0)
		return ERR_INTERNAL;
	if ((r = replica_start(s->replica)) != 0)
		return r;
	if (hc.tls_cert_path)
		log_info("msg=\"listening\" listen=%s port=%d tls=on keepalive_interval=%" PRId64 "s",
		    s->cfg.listen, http_port(s->http), s->cfg.keepalive_s);
	else
		log_warn("msg=\"listening with plain HTTP (no --tls-cert): use only on loopback "
		    "or behind a TLS reverse proxy\" listen=%s port=%d tls=off keepalive_interval=%"
		    PRId64 "s", s->cfg.listen, http_port(s->http), s->cfg.keepalive_s);
	if (s->derp)
		log_info("msg=\"derp: embedded relay at /derp\" region_id=%" PRId64 " region=%s "
		    "admission=nodes", s->cfg.derp_region_id, s->cfg.derp_region_code);
	if (s->derp && hc.tls_cert_path && !s->cfg.derp_listen[0])
		log_warn("msg=\"derp: /derp through this listener's TLS relays a few MB/s at most "
		    "(libmicrohttpd); set derp_listen for a relay listener of its own\"");
	return 0;
}

static void
on_signal(int sig)
{
	got_signal = sig;
}

void
server_wait(struct server *s)
{
	struct sigaction sa;
	sigset_t mask, old;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	sigemptyset(&mask);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGHUP);
	for (;;) {
		pthread_sigmask(SIG_BLOCK, &mask, &old);
		while (got_signal == 0)
			sigsuspend(&old);
		pthread_sigmask(SIG_SETMASK, &old, NULL);
		if (got_signal == SIGHUP) {
			got_signal = 0;
			log_info("msg=\"SIGHUP received: reloading the policy file and the dns config\"");
			policy_state_reload_file(s);
			dns_reload(s);
			continue;
		}
		break;
	}
	log_info("msg=\"shutting down\" signal=%d", (int)got_signal);
}

void
server_free(struct server *s)
{
	if (s == NULL)
		return;
	atomic_store(&s->stopping, true);
	server_acme_stop(s);	/* no renewal reloads a stopping listener */
	/* The relay goes first, while the HTTP layer can still take back the
	 * upgraded connections it hands over; later upgrades are refused. */
	if (s->derp) {
		struct derp_server *d;

		pthread_mutex_lock(&s->derp_lock);
		d = s->derp;
		s->derp = NULL;
		pthread_mutex_unlock(&s->derp_lock);
		derp_server_free(d);
	}
	http_stop(s->metrics_http);
	if (s->http) {
		/* The timer thread reaps streams through s->http: it goes first. */
		pthread_join(timer_thread, NULL);
		/* the others stop announcing this replica at once */
		if (s->replica_recorded && store_is_postgres(s->store))
			replica_list_leave(s);
		/* the follower wakes streams through the mapper: before HTTP */
		replica_free(s->replica);
		s->replica = NULL;
		http_stop(s->http);
	}
	replica_free(s->replica);
	stun_server_free(s->stun);
	events_free(s->events);
	hostinfo_free(s->hostinfo);
	policy_state_free(s);
	mapper_free(s->mapper);
	replay_free(s->replay);
	enrol_free(s->enrol);
	oidc_free(s->oidc);
	ipam_free(s->ipam);
	store_close(s->store);
	free(s->derp_map_json);
	free(s->derp_base_json);
	free(s->derp_region_json);
	free(s->dns_json);
	pthread_mutex_destroy(&s->derp_lock);
	pthread_mutex_destroy(&s->publish_lock);
	free(s);
}
