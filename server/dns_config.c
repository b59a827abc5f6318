// SPDX-License-Identifier: MIT
/*
 * The `dns` block of server.hujson. Every value is checked where it stands
 * so that an error names FILE:LINE:COL; limits are the enums of
 * dns_config.h. The map section is encoded once per change by
 * dns_config_json() and shared by every stream.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>

#include "policy/hujson.h"
#include "server/dns_config.h"
#include "common/util.h"

#define FAIL_AT(v, ...)                                                             \
	do {                                                                        \
		char m_[400];                                                       \
		snprintf(m_, sizeof(m_), __VA_ARGS__);                              \
		snprintf(why, whylen, "%s:%d:%d: dns: %s", path, (v)->line, (v)->col, m_); \
		return ERR_INVALID;                                                 \
	} while (0)

static int
want_type(const struct hujson_value *v, enum hujson_type t, const char *what, const char *path,
	  char *why, size_t whylen)
{
	if (v->type != t)
		FAIL_AT(v, "%s must be a%s %s, not %s", what, t == HUJSON_ARRAY ||
		    t == HUJSON_OBJECT ? "n" : "", hujson_type_name(t), hujson_type_name(v->type));
	return 0;
}

static int
parse_name(const struct hujson_value *v, char out[static DNSNAME_MAX], const char *what,
	   const char *path, char *why, size_t whylen)
{
	char err[300];
	int r;

	if ((r = want_type(v, HUJSON_STRING, what, path, why, whylen)) != 0)
		return r;
	if (!dnsname_valid(v->str, err, sizeof(err)))
		FAIL_AT(v, "%s: %s", what, err);
	dnsname_norm(out, v->str);
	return 0;
}

static int
parse_ns_list(const struct hujson_value *v, struct ip_addr *out, size_t *n, const char *what,
	      const char *path, char *why, size_t whylen)
{
	int r;

	*n = 0;
	if ((r = want_type(v, HUJSON_ARRAY, what, path, why, whylen)) != 0)
		return r;
	if (v->len > DNSCONF_MAX_NS)
		FAIL_AT(v, "%s: more than %d nameservers", what, DNSCONF_MAX_NS);
	for (size_t i = 0; i < v->len; i++) {
		const struct hujson_value *e = v->items[i];

		if ((r = want_type(e, HUJSON_STRING, "a nameserver", path, why, whylen)) != 0)
			return r;
		if (addr_parse(e->str, &out[*n]) != 0)
			FAIL_AT(e, "nameserver \"%s\" is not an IP address", e->str);
		(*n)++;
	}
	return 0;
}

static int
parse_nameservers(struct dns_config *c, const struct hujson_value *v, const char *path,
		  char *why, size_t whylen)
{
	int r;

	if ((r = want_type(v, HUJSON_OBJECT, "nameservers", path, why, whylen)) != 0)
		return r;
	for (size_t i = 0; i < v->len; i++) {
		const struct hujson_member *m = &v->members[i];

		if (strcmp(m->key, "global") == 0) {
			if ((r = parse_ns_list(m->value, c->global, &c->nglobal,
			    "nameservers.global", path, why, whylen)) != 0)
				return r;
		} else if (strcmp(m->key, "split") == 0) {
			const struct hujson_value *s = m->value;

			if ((r = want_type(s, HUJSON_OBJECT, "nameservers.split", path, why,
			    whylen)) != 0)
				return r;
			if (s->len > DNSCONF_MAX_SPLIT)
				FAIL_AT(s, "more than %d split domains", DNSCONF_MAX_SPLIT);
			for (size_t k = 0; k < s->len; k++) {
				struct dns_split *d = &c->split[c->nsplit];
				char err[300];

				if (!dnsname_valid(s->members[k].key, err, sizeof(err))) {
					snprintf(why, whylen, "%s:%d:%d: dns: split domain: %s", path,
					    s->members[k].key_line, s->members[k].key_col, err);
					return ERR_INVALID;
				}
				dnsname_norm(d->domain, s->members[k].key);
				if ((r = parse_ns_list(s->members[k].value, d->ns, &d->nns,
				    "a split domain's nameservers", path, why, whylen)) != 0)
					return r;
				if (d->nns == 0)
					FAIL_AT(s->members[k].value, "split domain %s has no nameservers",
					    d->domain);
				c->nsplit++;
			}
		} else {
			snprintf(why, whylen, "%s:%d:%d: dns: unknown key \"nameservers.%s\" "
			    "(global, split)", path, m->key_line, m->key_col, m->key);
			return ERR_INVALID;
		}
	}
	return 0;
}

static int
parse_extra(struct dns_config *c, const struct hujson_value *v, const char *path, char *why,
	    size_t whylen)
{
	int r;

	if ((r = want_type(v, HUJSON_ARRAY, "extra_records", path, why, whylen)) != 0)
		return r;
	if (v->len > DNSCONF_MAX_EXTRA)
		FAIL_AT(v, "more than %d extra records", DNSCONF_MAX_EXTRA);
	for (size_t i = 0; i < v->len; i++) {
		const struct hujson_value *e = v->items[i], *name, *type, *val;
		struct dns_extra *x = &c->extra[c->nextra];

		if ((r = want_type(e, HUJSON_OBJECT, "an extra record", path, why, whylen)) != 0)
			return r;
		for (size_t k = 0; k < e->len; k++)
			if (strcmp(e->members[k].key, "name") != 0 &&
			    strcmp(e->members[k].key, "type") != 0 &&
			    strcmp(e->members[k].key, "value") != 0) {
				snprintf(why, whylen, "%s:%d:%d: dns: unknown key \"%s\" in an extra "
				    "record (name, type, value)", path, e->members[k].key_line,
				    e->members[k].key_col, e->members[k].key);
				return ERR_INVALID;
			}
		name = hujson_get(e, "name");
		type = hujson_get(e, "type");
		val = hujson_get(e, "value");
		if (name == NULL || type == NULL || val == NULL)
			FAIL_AT(e, "an extra record needs \"name\", \"type\" and \"value\"");
		if ((r = parse_name(name, x->name, "extra record name", path, why, whylen)) != 0)
			return r;
		if ((r = want_type(type, HUJSON_STRING, "type", path, why, whylen)) != 0)
			return r;
		if (strcasecmp(type->str, "A") == 0)
			x->type = 1;
		else if (strcasecmp(type->str, "AAAA") == 0)
			x->type = 28;
		else
			FAIL_AT(type, "record type \"%s\" is not supported (A, AAAA)", type->str);
		if ((r = want_type(val, HUJSON_STRING, "value", path, why, whylen)) != 0)
			return r;
		if (addr_parse(val->str, &x->value) != 0 ||
		    x->value.family != (x->type == 1 ? AF_INET : AF_INET6))
			FAIL_AT(val, "\"%s\" is not an IPv%c address", val->str,
			    x->type == 1 ? '4' : '6');
		c->nextra++;
	}
	return 0;
}

int
dns_config_parse(struct dns_config *c, const struct hujson_value *v, const char *path,
		 char *why, size_t whylen)
{
	int r;

	memset(c, 0, sizeof(*c));
	if ((r = want_type(v, HUJSON_OBJECT, "\"dns\"", path, why, whylen)) != 0)
		return r;
	c->magic_dns = true;
	for (size_t i = 0; i < v->len; i++) {
		const struct hujson_member *m = &v->members[i];
		const struct hujson_value *x = m->value;

		if (strcmp(m->key, "magic_dns") == 0) {
			if ((r = want_type(x, HUJSON_BOOL, "magic_dns", path, why, whylen)) != 0)
				return r;
			c->magic_dns = x->b;
		} else if (strcmp(m->key, "base_domain") == 0) {
			if ((r = parse_name(x, c->base_domain, "base_domain", path, why,
			    whylen)) != 0)
				return r;
			c->base_line = x->line;
			c->base_col = x->col;
			str_copy(c->base_file, path, sizeof(c->base_file));
		} else if (strcmp(m->key, "nameservers") == 0) {
			if ((r = parse_nameservers(c, x, path, why, whylen)) != 0)
				return r;
		} else if (strcmp(m->key, "search_domains") == 0) {
			if ((r = want_type(x, HUJSON_ARRAY, "search_domains", path, why,
			    whylen)) != 0)
				return r;
			if (x->len > DNSCONF_MAX_SEARCH)
				FAIL_AT(x, "more than %d search domains", DNSCONF_MAX_SEARCH);
			for (size_t k = 0; k < x->len; k++)
				if ((r = parse_name(x->items[k], c->search[c->nsearch++],
				    "search domain", path, why, whylen)) != 0)
					return r;
		} else if (strcmp(m->key, "extra_records") == 0) {
			if ((r = parse_extra(c, x, path, why, whylen)) != 0)
				return r;
		} else {
			snprintf(why, whylen, "%s:%d:%d: dns: unknown key \"%s\" (magic_dns, "
			    "base_domain, nameservers, search_domains, extra_records)", path,
			    m->key_line, m->key_col, m->key);
			return ERR_INVALID;
		}
	}
	return 0;
}

/* Splits a comma list of names or addresses from the environment. */
static int
env_list(const char *var, const char *val, bool addrs, struct dns_config *c, char *why,
	 size_t whylen)
{
	char tmp[2048], *save = NULL, *tok;

	if (strlen(val) >= sizeof(tmp)) {
		snprintf(why, whylen, "%s: value too long", var);
		return ERR_INVALID;
	}
	str_copy(tmp, val, sizeof(tmp));
	if (addrs)
		c->nglobal = 0;
	else
		c->nsearch = 0;
	for (tok = strtok_r(tmp, ", ", &save); tok; tok = strtok_r(NULL, ", ", &save)) {
		char err[300];

		if (addrs) {
			if (c->nglobal == DNSCONF_MAX_NS || addr_parse(tok, &c->global[c->nglobal]) != 0) {
				snprintf(why, whylen, "%s: \"%s\" is not an IP address (or more than %d)",
				    var, tok, DNSCONF_MAX_NS);
				return ERR_INVALID;
			}
			c->nglobal++;
		} else {
			if (c->nsearch == DNSCONF_MAX_SEARCH || !dnsname_valid(tok, err, sizeof(err))) {
				snprintf(why, whylen, "%s: %s", var, c->nsearch == DNSCONF_MAX_SEARCH ?
				    "too many search domains" : err);
				return ERR_INVALID;
			}
			dnsname_norm(c->search[c->nsearch++], tok);
		}
	}
	return 0;
}

int
dns_config_env(struct dns_config *c, char *why, size_t whylen)
{
	const char *v;
	char err[300];
	int r;

	if ((v = getenv("WIREMESH_DNS_MAGIC_DNS")) != NULL) {
		if (strcmp(v, "true") == 0 || strcmp(v, "1") == 0)
			c->magic_dns = true;
		else if (strcmp(v, "false") == 0 || strcmp(v, "0") == 0)
			c->magic_dns = false;
		else {
			snprintf(why, whylen, "WIREMESH_DNS_MAGIC_DNS: \"%s\" is not true or false", v);
			return ERR_INVALID;
		}
	}
	if ((v = getenv("WIREMESH_DNS_BASE_DOMAIN")) != NULL) {
		if (!dnsname_valid(v, err, sizeof(err))) {
			snprintf(why, whylen, "WIREMESH_DNS_BASE_DOMAIN: %s", err);
			return ERR_INVALID;
		}
		dnsname_norm(c->base_domain, v);
		c->base_line = c->base_col = 0;
		str_copy(c->base_file, "WIREMESH_DNS_BASE_DOMAIN", sizeof(c->base_file));
		if (getenv("WIREMESH_DNS_MAGIC_DNS") == NULL)
			c->magic_dns = true;
	}
	if ((v = getenv("WIREMESH_DNS_NAMESERVERS")) != NULL &&
	    (r = env_list("WIREMESH_DNS_NAMESERVERS", v, true, c, why, whylen)) != 0)
		return r;
	if ((v = getenv("WIREMESH_DNS_SEARCH_DOMAINS")) != NULL &&
	    (r = env_list("WIREMESH_DNS_SEARCH_DOMAINS", v, false, c, why, whylen)) != 0)
		return r;
	return 0;
}

int
dns_config_check(const struct dns_config *c, const char *const *own, char *why, size_t whylen)
{
	char where[600];

	if (c->base_line > 0)
		snprintf(where, sizeof(where), "%s:%d:%d: dns: ", c->base_file, c->base_line,
		    c->base_col);
	else if (c->base_file[0])
		snprintf(where, sizeof(where), "%s: ", c->base_file);
	else
		snprintf(where, sizeof(where), "dns: ");
	if (c->magic_dns && c->base_domain[0] == '\0') {
		snprintf(why, whylen, "%smagic_dns needs a base_domain", where);
		return ERR_INVALID;
	}
	for (size_t i = 0; c->base_domain[0] && own && own[i]; i++) {
		char name[DNSNAME_MAX], err[300];
		struct ip_addr ip;

		if (own[i][0] == '\0' || addr_parse(own[i], &ip) == 0 ||
		    !dnsname_valid(own[i], err, sizeof(err)))
			continue;
		dnsname_norm(name, own[i]);
		if (dnsname_under(name, c->base_domain)) {
			snprintf(why, whylen, "%sbase_domain \"%s\" must not equal or contain the "
			    "server's own name \"%s\" (MagicDNS would answer for it)", where,
			    c->base_domain, name);
			return ERR_INVALID;
		}
	}
	return 0;
}

static json_t *
addrs_json(const struct ip_addr *a, size_t n)
{
	json_t *arr = json_array();

	for (size_t i = 0; arr && i < n; i++) {
		char s[ADDR_STR_MAX];

		addr_fmt(s, &a[i]);
		json_array_append_new(arr, json_string(s));
	}
	return arr;
}

char *
dns_config_json(const struct dns_config *c)
{
	json_t *j = json_object(), *ns = json_object(), *split = json_object();
	json_t *search = json_array(), *extra = json_array();
	char *out = NULL;

	if (j == NULL || ns == NULL || split == NULL || search == NULL || extra == NULL) {
		json_decref(ns);
		json_decref(split);
		json_decref(search);
		json_decref(extra);
		goto out;
	}
	for (size_t i = 0; i < c->nsplit; i++)
		json_object_set_new(split, c->split[i].domain,
		    addrs_json(c->split[i].ns, c->split[i].nns));
	json_object_set_new(ns, "global", addrs_json(c->global, c->nglobal));
	json_object_set_new(ns, "split", split);
	for (size_t i = 0; i < c->nsearch; i++)
		json_array_append_new(search, json_string(c->search[i]));
	for (size_t i = 0; i < c->nextra; i++) {
		char s[ADDR_STR_MAX];

		addr_fmt(s, &c->extra[i].value);
		json_array_append_new(extra, json_pack("{s:s, s:s, s:s}", "name", c->extra[i].name,
		    "type", c->extra[i].type == 1 ? "A" : "AAAA", "value", s));
	}
	json_object_set_new(j, "magic_dns", json_boolean(c->magic_dns && c->base_domain[0]));
	json_object_set_new(j, "base_domain", json_string(c->base_domain));
	json_object_set_new(j, "nameservers", ns);
	json_object_set_new(j, "search_domains", search);
	json_object_set_new(j, "extra_records", extra);
	out = json_dumps(j, JSON_COMPACT);
out:
	json_decref(j);
	return out;
}
