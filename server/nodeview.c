// SPDX-License-Identifier: MIT
/* Node JSON for netmaps and for the admin API (field names are documented
 * in docs/protocol.md and docs/openapi.json), and the parse of a node's
 * tags that the mapper and the policy API both hand to the compiler. */
#include <stdlib.h>
#include <string.h>

#include "common/addr.h"
#include "common/err.h"
#include "common/keys.h"
#include "common/util.h"
#include "server/nodeview.h"
#include "server/routes.h"

static json_t *
json_array_text(const char *text)
{
	json_t *v = json_loads(text, 0, NULL);

	if (v == NULL || !json_is_array(v)) {
		json_decref(v);
		return json_array();
	}
	return v;
}

static json_t *
addresses(const struct store_node *n)
{
	json_t *a = json_array();
	char s[ADDR_STR_MAX], p[ADDR_STR_MAX + 8];

	if (n->ipv4.family) {
		addr_fmt(s, &n->ipv4);
		snprintf(p, sizeof(p), "%s/32", s);
		json_array_append_new(a, json_string(p));
	}
	if (n->ipv6.family) {
		addr_fmt(s, &n->ipv6);
		snprintf(p, sizeof(p), "%s/128", s);
		json_array_append_new(a, json_string(p));
	}
	return a;
}

static json_t *
prefix_list(const struct ip_prefix *p, size_t n)
{
	json_t *a = json_array();
	char s[ADDR_STR_MAX];

	for (size_t i = 0; i < n; i++) {
		prefix_fmt(s, &p[i]);
		json_array_append_new(a, json_string(s));
	}
	return a;
}

json_t *
nodeview_peer(const struct store_node *n, bool online, int64_t now,
	      const struct ip_prefix *routes, size_t nroutes)
{
	char nk[KEY_STR_MAX], dk[KEY_STR_MAX];
	json_t *tags = json_array_text(n->tags);
	json_t *allowed = addresses(n), *extra;
	bool tagged = json_array_size(tags) > 0, exit_node = false;

	key_fmt(nk, "nodekey:", n->node_key);
	key_fmt(dk, "discokey:", n->disco_key);
	for (size_t i = 0; i < nroutes; i++)
		exit_node |= route_is_exit(&routes[i]);
	extra = prefix_list(routes, nroutes);
	json_array_extend(allowed, extra);
	json_decref(extra);
	return json_pack("{s:I, s:s, s:s, s:o, s:o, s:s, s:s, s:o, s:o, s:o, s:b, s:i, s:b, "
	    "s:I, s:b}",
	    "id", (json_int_t)n->id, "name", n->name,
	    "user", tagged ? "tagged-devices" : n->user, "tags", tags,
	    "addresses", addresses(n), "node_key", nk, "disco_key", dk,
	    "allowed_ips", allowed, "primary_routes", prefix_list(routes, nroutes),
	    "endpoints", json_array_text(n->endpoints), "exit_node", exit_node,
	    "home_derp", n->home_derp, "online", online,
	    "expires_at", (json_int_t)n->expires_at,
	    "expired", n->expires_at != 0 && n->expires_at <= now);
}

json_t *
nodeview_admin(const struct store_node *n, bool online, int64_t now)
{
	char mk[KEY_STR_MAX], nk[KEY_STR_MAX], dk[KEY_STR_MAX];
	char v4[ADDR_STR_MAX] = "", v6[ADDR_STR_MAX] = "";

	key_fmt(mk, "mkey:", n->machine_key);
	key_fmt(nk, "nodekey:", n->node_key);
	key_fmt(dk, "discokey:", n->disco_key);
	if (n->ipv4.family)
		addr_fmt(v4, &n->ipv4);
	if (n->ipv6.family)
		addr_fmt(v6, &n->ipv6);
	return json_pack("{s:I, s:s, s:s, s:s, s:o, s:s, s:s, s:s, s:s, s:s, s:b, s:b, "
	    "s:I, s:I, s:I, s:b, s:o, s:i, s:o, s:o}",
	    "id", (json_int_t)n->id, "name", n->name, "hostname", n->hostname,
	    "user", n->user, "tags", json_array_text(n->tags),
	    "ipv4", v4, "ipv6", v6, "machine_key", mk, "node_key", nk, "disco_key", dk,
	    "online", online, "ephemeral", n->ephemeral,
	    "created_at", (json_int_t)n->created_at, "last_seen", (json_int_t)n->last_seen,
	    "expires_at", (json_int_t)n->expires_at,
	    "expired", n->expires_at != 0 && n->expires_at <= now,
	    "endpoints", json_array_text(n->endpoints), "home_derp", n->home_derp,
	    "advertised_routes", json_array_text(n->routes_advertised),
	    "approved_routes", json_array_text(n->routes_approved));
}

int
nodeview_tags(const char *tags_json, char **out, size_t *bytes, size_t *ntags)
{
	json_t *a = json_loads(tags_json, 0, NULL), *t;
	size_t k, len = 0, cap = 0;
	char *v = NULL;

	*out = NULL;
	*bytes = *ntags = 0;
	json_array_foreach(a, k, t) {
		if (k >= NODEVIEW_TAGS || !json_is_string(t))
			break;
		cap += strnlen(json_string_value(t), NODEVIEW_TAG_MAX) + 1;
	}
	if (cap > 0 && (v = malloc(cap)) == NULL) {
		json_decref(a);
		return ERR_NOMEM;
	}
	json_array_foreach(a, k, t) {
		size_t l;

		if (k >= NODEVIEW_TAGS || !json_is_string(t))
			break;
		l = strnlen(json_string_value(t), NODEVIEW_TAG_MAX);
		memcpy(v + len, json_string_value(t), l);
		v[len + l] = 0;
		len += l + 1;
		(*ntags)++;
	}
	json_decref(a);
	*out = v;
	*bytes = len;
	return 0;
}

bool
nodeview_advertises(const struct store_node *n)
{
	return n->routes_advertised[0] && strcmp(n->routes_advertised, "[]") != 0;
}
