// SPDX-License-Identifier: MIT
/* Route lists of nodes: parsing, validation, served routes. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "server/routes.h"

size_t
routes_from_json(const char *text, struct ip_prefix *out, size_t max)
{
	json_t *a = json_loads(text ? text : "[]", 0, NULL), *v;
	size_t i, n = 0;

	json_array_foreach(a, i, v) {
		if (n < max && json_is_string(v) &&
		    prefix_parse(json_string_value(v), false, &out[n]) == 0)
			n++;
	}
	json_decref(a);
	return n;
}

bool
route_is_exit(const struct ip_prefix *p)
{
	return p->bits == 0;
}

static bool
prefix_equal(const struct ip_prefix *a, const struct ip_prefix *b)
{
	return a->bits == b->bits && addr_equal(&a->addr, &b->addr);
}

static int
prefix_cmp(const void *x, const void *y)
{
	const struct ip_prefix *a = x, *b = y;

	if (a->addr.family != b->addr.family)
		return a->addr.family == AF_INET ? -1 : 1;
	int c = memcmp(a->addr.b, b->addr.b, sizeof(a->addr.b));

	return c ? c : a->bits - b->bits;
}

static int
to_json(const struct ip_prefix *p, size_t n, char *out, size_t outlen)
{
	json_t *a = json_array();
	char s[ADDR_STR_MAX];
	char *t;
	int r = 0;

	for (size_t i = 0; i < n; i++) {
		prefix_fmt(s, &p[i]);
		json_array_append_new(a, json_string(s));
	}
	t = json_dumps(a, JSON_COMPACT);
	json_decref(a);
	if (t == NULL || strlen(t) >= outlen)
		r = ERR_TOO_LARGE;
	else
		str_copy(out, t, outlen);
	free(t);
	return r;
}

int
routes_normalize(const json_t *arr, const char *field, char *out, size_t outlen,
		 char *why, size_t whylen)
{
	struct ip_prefix p[ROUTES_MAX];
	size_t i, n = 0;
	json_t *v;

	if (arr == NULL || json_is_null(arr))
		return to_json(NULL, 0, out, outlen);
	if (!json_is_array(arr) || json_array_size(arr) > ROUTES_MAX) {
		snprintf(why, whylen, "%s must be an array of at most %d CIDR prefixes",
		    field, ROUTES_MAX);
		return ERR_INVALID;
	}
	json_array_foreach(arr, i, v) {
		const char *s = json_string_value(v);

		if (s == NULL || prefix_parse(s, false, &p[n]) != 0) {
			snprintf(why, whylen, "%s[%zu] is not a CIDR prefix with its host bits "
			    "clear (e.g. \"192.168.1.0/24\")", field, i);
			return ERR_INVALID;
		}
		for (size_t j = 0; j < n; j++) {
			if (prefix_equal(&p[j], &p[n])) {
				snprintf(why, whylen, "%s[%zu] (%s) is listed twice", field, i, s);
				return ERR_INVALID;
			}
		}
		n++;
	}
	qsort(p, n, sizeof(p[0]), prefix_cmp);
	if (to_json(p, n, out, outlen) != 0) {
		snprintf(why, whylen, "%s is too long", field);
		return ERR_INVALID;
	}
	return 0;
}

size_t
routes_served(const struct store_node *n, struct ip_prefix out[static ROUTES_MAX])
{
	struct ip_prefix adv[ROUTES_MAX], ok[ROUTES_MAX];
	size_t na = routes_from_json(n->routes_advertised, adv, ROUTES_MAX);
	size_t nk = routes_from_json(n->routes_approved, ok, ROUTES_MAX);
	size_t m = 0;

	for (size_t i = 0; i < na; i++) {
		for (size_t j = 0; j < nk; j++) {
			if (prefix_equal(&adv[i], &ok[j])) {
				out[m++] = adv[i];
				break;
			}
		}
	}
	return m;
}

int
routes_approve(struct store_node *n, const struct ip_prefix *p)
{
	struct ip_prefix ok[ROUTES_MAX + 1];
	size_t nk = routes_from_json(n->routes_approved, ok, ROUTES_MAX);

	for (size_t j = 0; j < nk; j++)
		if (prefix_equal(&ok[j], p))
			return 0;
	if (nk == ROUTES_MAX)
		return ERR_EXHAUSTED;
	ok[nk++] = *p;
	qsort(ok, nk, sizeof(ok[0]), prefix_cmp);
	return to_json(ok, nk, n->routes_approved, sizeof(n->routes_approved));
}
