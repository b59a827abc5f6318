// SPDX-License-Identifier: MIT
/*
 * The policy loader: walks the HuJSON tree of an acls.hujson, checks every
 * section and builds the immutable model in policy_int.h. Every problem
 * becomes one diagnostic at the position of the offending value; loading
 * goes on after a problem so that one run reports them all. Groups, hosts
 * and tagOwners are read before acls and tests whatever their order in the
 * file, since those refer to them.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "policy/hujson.h"
#include "policy/policy_int.h"

enum side { SIDE_SRC, SIDE_DST, SIDE_OWNER };

static const char *const top_keys[] = {
	"groups", "hosts", "tagOwners", "acls", "tests", "autoApprovers", "grants",
};
enum { NTOP = 7 };
static const char *const rule_keys[] = { "action", "src", "dst", "proto", "users", "ports" };
static const char *const test_keys[] = { "src", "proto", "accept", "deny" };
static const char *const approver_keys[] = { "routes", "exitNode" };

static size_t
lev(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b), i, j;
	size_t row[64], prev, tmp;

	if (la > 60 || lb > 60)
		return 99;
	for (j = 0; j <= lb; j++)
		row[j] = j;
	for (i = 1; i <= la; i++) {
		prev = row[0];
		row[0] = i;
		for (j = 1; j <= lb; j++) {
			size_t cost = tolower((unsigned char)a[i - 1]) !=
			    tolower((unsigned char)b[j - 1]);
			size_t best = prev + cost;

			if (row[j] + 1 < best)
				best = row[j] + 1;
			if (row[j - 1] + 1 < best)
				best = row[j - 1] + 1;
			tmp = row[j];
			row[j] = best;
			prev = tmp;
		}
	}
	return row[lb];
}

/* Index of `key` among `keys` (case-insensitive) or -1. */
static int
key_index(const char *key, const char *const *keys, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (strcasecmp(key, keys[i]) == 0)
			return (int)i;
	return -1;
}

static void
unknown_key(struct policy_diags *d, const struct hujson_member *m, const char *where,
	    const char *const *keys, size_t n)
{
	size_t i, best = 99, bi = 0;

	for (i = 0; i < n; i++) {
		size_t dist = lev(m->key, keys[i]);

		if (dist < best) {
			best = dist;
			bi = i;
		}
	}
	if (best <= 3 && best < strlen(keys[bi]))
		policy_diags_add(d, m->key_line, m->key_col,
		    "unknown key \"%.64s\" in %s (did you mean \"%s\"?)", m->key, where, keys[bi]);
	else
		policy_diags_add(d, m->key_line, m->key_col,
		    "unknown key \"%.64s\" in %s", m->key, where);
}

static const char *
keep(struct policy *p, const char *s)
{
	char *c;

	if (p->nstrings == p->capstrings) {
		size_t ncap = p->capstrings ? p->capstrings * 2 : 32;
		char **n = realloc(p->strings, ncap * sizeof(*n));

		if (n == NULL)
			return NULL;
		p->strings = n;
		p->capstrings = ncap;
	}
	if ((c = strdup(s)) == NULL)
		return NULL;
	p->strings[p->nstrings++] = c;
	return c;
}

const char *
user_norm(const char *u, char *buf, size_t n)
{
	if (strchr(u, '@') != NULL)
		snprintf(buf, n, "%s", u);
	else
		snprintf(buf, n, "%s@", u);
	return buf;
}

bool
user_match(const char *pu, const char *nu)
{
	size_t lp, ln;

	if (pu == NULL || nu == NULL)
		return false;
	if (strcmp(pu, nu) == 0)
		return true;
	/* "alice@" names the local user "alice". */
	lp = strlen(pu);
	ln = strlen(nu);
	return lp == ln + 1 && pu[ln] == '@' && strncmp(pu, nu, ln) == 0 &&
	    strchr(nu, '@') == NULL;
}

bool
group_has_user(const struct policy *p, size_t g, const char *nu)
{
	size_t i;

	for (i = 0; i < p->groups[g].nusers; i++)
		if (user_match(p->groups[g].users[i], nu))
			return true;
	return false;
}

static int
group_find(const struct policy *p, const char *name, size_t *idx)
{
	size_t i;

	for (i = 0; i < p->ngroups; i++) {
		if (strcmp(p->groups[i].name, name) == 0) {
			*idx = i;
			return 0;
		}
	}
	return ERR_NOT_FOUND;
}

const struct host *
policy_host_find(const struct policy *p, const char *name)
{
	size_t i;

	for (i = 0; i < p->nhosts; i++)
		if (strcmp(p->hosts[i].name, name) == 0)
			return &p->hosts[i];
	return NULL;
}

bool
policy_tag_defined(const struct policy *p, const char *tag)
{
	size_t i;

	for (i = 0; i < p->ntags; i++)
		if (strcmp(p->tags[i].tag, tag) == 0)
			return true;
	return false;
}

bool
policy_tag_owned(const struct policy *p, const char *tag, const char *user,
		 const char *const *node_tags, size_t nnode_tags)
{
	for (size_t i = 0; i < p->ntags; i++) {
		if (strcmp(p->tags[i].tag, tag) != 0)
			continue;
		for (size_t k = 0; k < p->tags[i].nowners; k++) {
			const char *o = p->tags[i].owners[k];
			size_t g;

			if (strncmp(o, "group:", 6) == 0) {
				if (group_find(p, o, &g) == 0 && group_has_user(p, g, user))
					return true;
			} else if (strncmp(o, "tag:", 4) == 0) {
				for (size_t t = 0; t < nnode_tags; t++)
					if (strcmp(node_tags[t], o) == 0)
						return true;
			} else if (user_match(o, user)) {
				return true;
			}
		}
	}
	return false;
}

static bool
valid_user(const char *s)
{
	const char *at = strchr(s, '@');

	return at != NULL && at != s && strchr(at + 1, '@') == NULL &&
	    strchr(s, ':') == NULL && strchr(s, ' ') == NULL;
}

static bool
valid_name_part(const char *s)
{
	if (*s == '\0')
		return false;
	for (; *s; s++)
		if (!isalnum((unsigned char)*s) && *s != '-' && *s != '_' && *s != '.')
			return false;
	return true;
}

static const struct {
	const char *name;
	uint8_t num;
} proto_names[] = {
	{ "tcp", 6 }, { "udp", 17 }, { "icmp", 1 }, { "ipv6-icmp", 58 },
	{ "icmpv6", 58 }, { "igmp", 2 }, { "ipv4", 4 }, { "ip-in-ip", 4 },
	{ "egp", 8 }, { "igp", 9 }, { "gre", 47 }, { "esp", 50 }, { "ah", 51 },
	{ "sctp", 132 },
};

int
policy_proto_parse(const char *s, uint8_t *out)
{
	size_t i;
	char *end;
	long v;

	for (i = 0; i < sizeof(proto_names) / sizeof(proto_names[0]); i++) {
		if (strcasecmp(s, proto_names[i].name) == 0) {
			*out = proto_names[i].num;
			return 0;
		}
	}
	if (*s < '0' || *s > '9')
		return ERR_INVALID;
	v = strtol(s, &end, 10);
	if (*end != '\0' || v < 1 || v > 255)
		return ERR_INVALID;
	*out = (uint8_t)v;
	return 0;
}

static bool
proto_has_ports(uint8_t proto)
{
	return proto == 6 || proto == 17 || proto == 132;
}

static int
parse_port(const char *s, size_t n, uint16_t *out)
{
	unsigned long v = 0;
	size_t i;

	if (n == 0 || n > 5)
		return ERR_INVALID;
	for (i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return ERR_INVALID;
		v = v * 10 + (unsigned long)(s[i] - '0');
	}
	if (v > 65535)
		return ERR_INVALID;
	*out = (uint16_t)v;
	return 0;
}

int
policy_ports_parse(const char *s, struct port_range **out, size_t *n, char *why,
		   size_t whylen)
{
	struct port_range *v = NULL;
	size_t cnt = 1, k = 0;
	const char *c = s;

	*out = NULL;
	*n = 0;
	for (c = s; *c; c++)
		if (*c == ',')
			cnt++;
	if (cnt > 1000) {
		snprintf(why, whylen, "too many ports (at most 1000 entries)");
		return ERR_TOO_LARGE;
	}
	if ((v = calloc(cnt, sizeof(*v))) == NULL)
		return ERR_NOMEM;
	c = s;
	for (;;) {
		const char *e = strchr(c, ','), *dash;
		size_t len = e ? (size_t)(e - c) : strlen(c);
		uint16_t a, b;

		if (len == 1 && c[0] == '*') {
			a = 0;
			b = 65535;
		} else {
			dash = memchr(c, '-', len);
			if (parse_port(c, dash ? (size_t)(dash - c) : len, &a) != 0) {
				snprintf(why, whylen, "port range \"%.*s\": invalid first integer",
				    (int)(len > 40 ? 40 : len), c);
				goto bad;
			}
			b = a;
			if (dash != NULL && parse_port(dash + 1, len - (size_t)(dash - c) - 1, &b) != 0) {
				snprintf(why, whylen, "port range \"%.*s\": invalid last integer",
				    (int)(len > 40 ? 40 : len), c);
				goto bad;
			}
			if (b < a) {
				snprintf(why, whylen, "port range \"%.*s\": first is above last",
				    (int)(len > 40 ? 40 : len), c);
				goto bad;
			}
		}
		v[k].first = a;
		v[k].last = b;
		k++;
		if (e == NULL)
			break;
		c = e + 1;
	}
	*out = v;
	*n = k;
	return 0;
bad:
	free(v);
	return ERR_INVALID;
}

int
policy_split_dst(const char *s, char **sel, char **ports)
{
	const char *colon;

	*sel = *ports = NULL;
	if (s[0] == '[') {
		const char *rb = strchr(s, ']');

		if (rb == NULL || rb[1] != ':')
			return ERR_INVALID;
		*sel = strndup(s + 1, (size_t)(rb - s - 1));
		*ports = strdup(rb + 2);
	} else {
		if ((colon = strrchr(s, ':')) == NULL)
			return ERR_INVALID;
		*sel = strndup(s, (size_t)(colon - s));
		*ports = strdup(colon + 1);
	}
	if (*sel == NULL || *ports == NULL) {
		free(*sel);
		free(*ports);
		*sel = *ports = NULL;
		return ERR_NOMEM;
	}
	return 0;
}

/* Parses one selector string. Returns 0 or ERR_INVALID with a diagnostic. */
static int
parse_selector(struct policy *p, const char *s, int line, int col, enum side side,
	       const char *what, struct selector *out, struct policy_diags *d)
{
	memset(out, 0, sizeof(*out));
	out->line = line;
	out->col = col;
	if (strcmp(s, "*") == 0) {
		if (side == SIDE_OWNER)
			goto notowner;
		out->kind = SEL_ALL;
		return 0;
	}
	if (strncmp(s, "autogroup:", 10) == 0) {
		const char *a = s + 10;

		if (strcmp(a, "member") == 0) {
			out->kind = SEL_MEMBER;
		} else if (strcmp(a, "tagged") == 0) {
			out->kind = SEL_TAGGED;
		} else if (strcmp(a, "danger-all") == 0) {
			if (side == SIDE_DST) {
				policy_diags_add(d, line, col,
				    "%s=\"%.64s\": cannot use autogroup:danger-all as a dst", what, s);
				return ERR_INVALID;
			}
			out->kind = SEL_DANGER;
		} else if (strcmp(a, "self") == 0 || strcmp(a, "internet") == 0) {
			if (side != SIDE_DST) {
				policy_diags_add(d, line, col,
				    "%s=\"%.64s\": \"%s\" not valid on the src side of a rule",
				    what, s, s);
				return ERR_INVALID;
			}
			out->kind = a[0] == 's' ? SEL_SELF : SEL_INTERNET;
		} else {
			policy_diags_add(d, line, col,
			    "%s=\"%.64s\": unknown autogroup (valid: autogroup:member, "
			    "autogroup:tagged, autogroup:self, autogroup:internet, "
			    "autogroup:danger-all)", what, s);
			return ERR_INVALID;
		}
		if (side == SIDE_OWNER && out->kind != SEL_MEMBER)
			goto notowner;
		return 0;
	}
	if (strncmp(s, "group:", 6) == 0) {
		if (group_find(p, s, &out->idx) != 0) {
			policy_diags_add(d, line, col, "%s=group not found: \"%.64s\"", what, s);
			return ERR_INVALID;
		}
		out->kind = SEL_GROUP;
		return 0;
	}
	if (strncmp(s, "tag:", 4) == 0) {
		if (!policy_tag_defined(p, s)) {
			policy_diags_add(d, line, col,
			    "%s=tag not found: \"%.64s\" (tags must be defined in tagOwners)", what, s);
			return ERR_INVALID;
		}
		out->kind = SEL_TAG;
		if ((out->name = keep(p, s)) == NULL)
			return ERR_NOMEM;
		return 0;
	}
	if (strncmp(s, "user:", 5) == 0) {
		const char *u = s + 5;

		if (side == SIDE_OWNER)
			goto notowner;
		if (u[0] == '*' && u[1] == '@' && valid_name_part(u + 2) && strchr(u + 2, '.') != NULL) {
			out->kind = SEL_DOMAIN;
			if ((out->name = keep(p, u + 1)) == NULL)
				return ERR_NOMEM;
			return 0;
		}
		if (valid_user(u)) {
			out->kind = SEL_USER;
			if ((out->name = keep(p, u)) == NULL)
				return ERR_NOMEM;
			return 0;
		}
		policy_diags_add(d, line, col,
		    "%s=\"%.64s\": invalid user selector (write user:*@domain or name@domain)",
		    what, s);
		return ERR_INVALID;
	}
	if (strchr(s, '@') != NULL) {
		if (!valid_user(s)) {
			policy_diags_add(d, line, col, "%s=\"%.64s\": invalid user (write name@domain)",
			    what, s);
			return ERR_INVALID;
		}
		out->kind = SEL_USER;
		if ((out->name = keep(p, s)) == NULL)
			return ERR_NOMEM;
		return 0;
	}
	if (side == SIDE_OWNER)
		goto notowner;
	{
		const struct host *h = policy_host_find(p, s);

		if (h != NULL) {
			out->kind = SEL_PREFIX;
			out->pfx = h->pfx;
			return 0;
		}
	}
	if (prefix_parse(s, false, &out->pfx) == 0) {
		out->kind = SEL_PREFIX;
		return 0;
	}
	if (strchr(s, '/') != NULL || strspn(s, "0123456789.:abcdefABCDEF") == strlen(s))
		policy_diags_add(d, line, col, "%s=\"%.64s\": invalid IP address or CIDR", what, s);
	else
		policy_diags_add(d, line, col,
		    "%s=\"%.64s\": not a user (name@domain), group, tag, autogroup, host or IP",
		    what, s);
	return ERR_INVALID;
notowner:
	policy_diags_add(d, line, col,
	    "%s=\"%.64s\": only users, groups and tags may be used here", what, s);
	return ERR_INVALID;
}

static bool
budget(struct policy *p, size_t n, const struct hujson_value *v, struct policy_diags *d)
{
	p->items += n;
	if (p->items > POLICY_MAX_ITEMS) {
		if (p->items - n <= POLICY_MAX_ITEMS)
			policy_diags_add(d, v->line, v->col,
			    "policy too large: more than %d entries", POLICY_MAX_ITEMS);
		return false;
	}
	return true;
}

static bool
want(const struct hujson_value *v, enum hujson_type t, const char *what,
     struct policy_diags *d)
{
	if (v->type == t)
		return true;
	policy_diags_add(d, v->line, v->col, "%s must be %s %s, not %s %s", what,
	    t == HUJSON_OBJECT || t == HUJSON_ARRAY ? "an" : "a", hujson_type_name(t),
	    v->type == HUJSON_OBJECT || v->type == HUJSON_ARRAY ? "an" : "a",
	    hujson_type_name(v->type));
	return false;
}

static void
load_groups(struct policy *p, const struct hujson_value *v, struct policy_diags *d)
{
	size_t i, j;

	if (!want(v, HUJSON_OBJECT, "groups", d) || !budget(p, v->len, v, d))
		return;
	if ((p->groups = calloc(v->len ? v->len : 1, sizeof(*p->groups))) == NULL)
		return;
	for (i = 0; i < v->len; i++) {
		const struct hujson_member *m = &v->members[i];
		struct group *g = &p->groups[p->ngroups];

		if (strncmp(m->key, "group:", 6) != 0 || !valid_name_part(m->key + 6)) {
			policy_diags_add(d, m->key_line, m->key_col,
			    "group name \"%.64s\" must be group:NAME", m->key);
			continue;
		}
		if (!want(m->value, HUJSON_ARRAY, "a group", d) ||
		    !budget(p, m->value->len, m->value, d))
			continue;
		g->name = strdup(m->key);
		g->users = calloc(m->value->len ? m->value->len : 1, sizeof(char *));
		g->line = m->key_line;
		g->col = m->key_col;
		p->ngroups++;
		if (g->name == NULL || g->users == NULL)
			continue;
		for (j = 0; j < m->value->len; j++) {
			const struct hujson_value *u = m->value->items[j];

			if (!want(u, HUJSON_STRING, "a group member", d))
				continue;
			if (strncmp(u->str, "group:", 6) == 0) {
				policy_diags_add(d, u->line, u->col,
				    "group %s: \"%.64s\": groups cannot contain groups", g->name, u->str);
				continue;
			}
			if (!valid_user(u->str)) {
				policy_diags_add(d, u->line, u->col,
				    "group %s: \"%.64s\" is not a user (write name@domain)",
				    g->name, u->str);
				continue;
			}
			if ((g->users[g->nusers] = strdup(u->str)) != NULL)
				g->nusers++;
		}
	}
}

static void
load_hosts(struct policy *p, const struct hujson_value *v, struct policy_diags *d)
{
	size_t i;

	if (!want(v, HUJSON_OBJECT, "hosts", d) || !budget(p, v->len, v, d))
		return;
	if ((p->hosts = calloc(v->len ? v->len : 1, sizeof(*p->hosts))) == NULL)
		return;
	for (i = 0; i < v->len; i++) {
		const struct hujson_member *m = &v->members[i];
		struct host *h = &p->hosts[p->nhosts];

		if (!valid_name_part(m->key) || strchr(m->key, '.') != NULL) {
			policy_diags_add(d, m->key_line, m->key_col,
			    "host name \"%.64s\" may hold only letters, digits, '-' and '_'", m->key);
			continue;
		}
		if (!want(m->value, HUJSON_STRING, "a host", d))
			continue;
		if (prefix_parse(m->value->str, false, &h->pfx) != 0) {
			policy_diags_add(d, m->value->line, m->value->col,
			    "host %s: invalid IP address or CIDR \"%.64s\"", m->key, m->value->str);
			continue;
		}
		if ((h->name = strdup(m->key)) != NULL)
			p->nhosts++;
	}
}

static void
load_tag_owners(struct policy *p, const struct hujson_value *v, struct policy_diags *d)
{
	size_t i, j;

	if (!want(v, HUJSON_OBJECT, "tagOwners", d) || !budget(p, v->len, v, d))
		return;
	if ((p->tags = calloc(v->len ? v->len : 1, sizeof(*p->tags))) == NULL)
		return;
	/* Names first: tags may own tags, in any order. */
	for (i = 0; i < v->len; i++) {
		const struct hujson_member *m = &v->members[i];
		struct tag_owner *t = &p->tags[p->ntags];

		if (strncmp(m->key, "tag:", 4) != 0 || !valid_name_part(m->key + 4)) {
			policy_diags_add(d, m->key_line, m->key_col,
			    "tag name \"%.64s\" must be tag:NAME", m->key);
			continue;
		}
		t->line = m->key_line;
		t->col = m->key_col;
		if ((t->tag = strdup(m->key)) != NULL)
			p->ntags++;
	}
	for (i = 0; i < v->len; i++) {
		const struct hujson_member *m = &v->members[i];
		struct tag_owner *t = NULL;
		size_t k;

		for (k = 0; k < p->ntags; k++)
			if (strcmp(p->tags[k].tag, m->key) == 0)
				t = &p->tags[k];
		if (t == NULL)
			continue;
		if (!want(m->value, HUJSON_ARRAY, "a tag's owners", d) ||
		    !budget(p, m->value->len, m->value, d))
			continue;
		if ((t->owners = calloc(m->value->len ? m->value->len : 1, sizeof(char *))) == NULL)
			continue;
		for (j = 0; j < m->value->len; j++) {
			const struct hujson_value *o = m->value->items[j];
			struct selector sel;

			if (!want(o, HUJSON_STRING, "a tag owner", d))
				continue;
			if (parse_selector(p, o->str, o->line, o->col, SIDE_OWNER, "tagOwners",
			    &sel, d) != 0)
				continue;
			if ((t->owners[t->nowners] = strdup(o->str)) != NULL)
				t->nowners++;
		}
	}
}

static int
parse_proto(const struct hujson_value *v, struct rule *r, struct policy_diags *d)
{
	char num[32];
	const char *s = num;
	uint8_t pr;

	if (v->type == HUJSON_NUMBER && v->is_int)
		s = v->str;
	else if (v->type == HUJSON_STRING)
		s = v->str;
	else {
		policy_diags_add(d, v->line, v->col, "proto must be a name or a number");
		return ERR_INVALID;
	}
	if (policy_proto_parse(s, &pr) != 0) {
		policy_diags_add(d, v->line, v->col,
		    "proto=\"%.32s\": unknown protocol (use tcp, udp, icmp, sctp, ... or 1-255)", s);
		return ERR_INVALID;
	}
	r->protos[0] = pr;
	r->nprotos = 1;
	r->has_proto = true;
	return 0;
}

static void
load_rule(struct policy *p, const struct hujson_value *v, struct policy_diags *d)
{
	struct rule *r = &p->rules[p->nrules];
	const struct hujson_value *action = NULL, *src = NULL, *dst = NULL, *proto = NULL;
	size_t i, before = d->n + d->dropped;

	memset(r, 0, sizeof(*r));
	r->line = v->line;
	r->col = v->col;
	for (i = 0; i < v->len; i++) {
		const struct hujson_member *m = &v->members[i];

		switch (key_index(m->key, rule_keys, 6)) {
		case 0: action = m->value; break;
		case 1: case 4: src = m->value; break;
		case 2: case 5: dst = m->value; break;
		case 3: proto = m->value; break;
		default: unknown_key(d, m, "an acl rule", rule_keys, 4);
		}
	}
	if (action == NULL)
		policy_diags_add(d, v->line, v->col, "acl rule has no \"action\"");
	else if (want(action, HUJSON_STRING, "action", d) && strcmp(action->str, "accept") != 0)
		policy_diags_add(d, action->line, action->col,
		    "action=\"%.32s\" is not supported (only \"accept\"; what no rule accepts is denied)",
		    action->str);
	r->protos[0] = 6;
	r->protos[1] = 17;
	r->protos[2] = 1;
	r->protos[3] = 58;
	r->nprotos = 4;
	if (proto != NULL)
		(void)parse_proto(proto, r, d);
	if (src == NULL)
		policy_diags_add(d, v->line, v->col, "acl rule has no \"src\"");
	if (dst == NULL)
		policy_diags_add(d, v->line, v->col, "acl rule has no \"dst\"");
	if (src != NULL && want(src, HUJSON_ARRAY, "src", d) && budget(p, src->len, src, d)) {
		r->src = calloc(src->len ? src->len : 1, sizeof(*r->src));
		for (i = 0; r->src != NULL && i < src->len; i++) {
			const struct hujson_value *s = src->items[i];

			if (want(s, HUJSON_STRING, "a src entry", d) &&
			    parse_selector(p, s->str, s->line, s->col, SIDE_SRC, "src",
			    &r->src[r->nsrc], d) == 0)
				r->nsrc++;
		}
	}
	if (dst != NULL && want(dst, HUJSON_ARRAY, "dst", d) && budget(p, dst->len, dst, d)) {
		r->dst = calloc(dst->len ? dst->len : 1, sizeof(*r->dst));
		for (i = 0; r->dst != NULL && i < dst->len; i++) {
			const struct hujson_value *s = dst->items[i];
			struct dst *o = &r->dst[r->ndst];
			char *sel = NULL, *ports = NULL, why[128];
			size_t k;

			if (!want(s, HUJSON_STRING, "a dst entry", d))
				continue;
			if (policy_split_dst(s->str, &sel, &ports) != 0) {
				policy_diags_add(d, s->line, s->col,
				    "dst=\"%.64s\": missing port (write HOST:PORTS, e.g. tag:web:443 or *:*)",
				    s->str);
				continue;
			}
			if (parse_selector(p, sel, s->line, s->col, SIDE_DST, "dst", &o->sel, d) != 0)
				goto next;
			if (policy_ports_parse(ports, &o->ports, &o->nports, why, sizeof(why)) != 0) {
				policy_diags_add(d, s->line, s->col, "dst=\"%.64s\": %s", s->str, why);
				goto next;
			}
			if (!budget(p, o->nports, s, d)) {
				free(o->ports);
				goto next;
			}
			if (r->has_proto && !proto_has_ports(r->protos[0])) {
				for (k = 0; k < o->nports; k++) {
					if (o->ports[k].first != 0 || o->ports[k].last != 65535) {
						policy_diags_add(d, s->line, s->col,
						    "dst=\"%.64s\": proto %u has no ports; use \"*\"",
						    s->str, r->protos[0]);
						break;
					}
				}
				if (k < o->nports) {
					free(o->ports);
					goto next;
				}
			}
			if (o->sel.kind == SEL_SELF)
				r->has_self = true;
			r->ndst++;
next:
			free(sel);
			free(ports);
		}
	}
	if (r->has_self) {
		for (i = 0; i < r->nsrc; i++) {
			enum sel_kind k = r->src[i].kind;

			if (k != SEL_ALL && k != SEL_USER && k != SEL_GROUP && k != SEL_MEMBER)
				policy_diags_add(d, r->src[i].line, r->src[i].col,
				    "autogroup:self can only be used with users, groups, or "
				    "supported autogroups in src");
		}
	}
	(void)before;
	p->nrules++;
}

static void
load_acls(struct policy *p, const struct hujson_value *v, struct policy_diags *d)
{
	size_t i;

	if (!want(v, HUJSON_ARRAY, "acls", d) || !budget(p, v->len, v, d))
		return;
	if (v->len > POLICY_MAX_RULES) {
		policy_diags_add(d, v->line, v->col, "more than %d acl rules", POLICY_MAX_RULES);
		return;
	}
	if (p->rules == NULL)
		return;
	for (i = 0; i < v->len && p->nrules < p->caprules; i++)
		if (want(v->items[i], HUJSON_OBJECT, "an acl rule", d))
			load_rule(p, v->items[i], d);
}


/* ---- grants ---- */

static const char *const grant_keys[] = { "src", "dst", "ip", "app", "via", "srcPosture" };

/* Capabilities in the tailscale.com domain that Tailscale lets policies grant. */
static const char *const ts_caps[] = {
	"tailscale.com/cap/drive", "tailscale.com/cap/relay", "tailscale.com/cap/webui",
	"tailscale.com/cap/kubernetes", "tailscale.com/cap/tsidp",
};

/* One entry of a grant's `ip`: a protocol (0: the default set) and ports. */
struct ipspec {
	int proto;		/* -1: TCP, UDP, ICMP, ICMPv6; else an IANA number */
	struct port_range *ports;
	size_t nports;
};

/*
 * Parses one `ip` entry as Tailscale does: "*", "PORTS" (every default
 * protocol), "PROTO:PORTS" or "PROTO:*" where PROTO is a name or a number
 * and PORTS is "*", "N", "N-M" or a comma list. Returns 0 or ERR_INVALID
 * with a diagnostic at (line, col).
 */
static int
parse_ipspec(const char *s, int line, int col, struct ipspec *o, struct policy_diags *d)
{
	const char *colon = strchr(s, ':'), *ports = s;
	char why[128], pname[32];
	uint8_t pr;
	size_t k;
	int r;

	memset(o, 0, sizeof(*o));
	o->proto = -1;
	if (colon != NULL) {
		if (strchr(colon + 1, ':') != NULL) {
			policy_diags_add(d, line, col, "ip=\"%.64s\": expected only one colon in "
			    "Internet protocol and port type", s);
			return ERR_INVALID;
		}
		if ((size_t)(colon - s) >= sizeof(pname) || colon == s) {
			policy_diags_add(d, line, col, "ip=\"%.64s\": unknown protocol", s);
			return ERR_INVALID;
		}
		memcpy(pname, s, (size_t)(colon - s));
		pname[colon - s] = '\0';
		if (strcmp(pname, "*") != 0) {
			if ((pname[0] == '0' && pname[1] != '\0') || policy_proto_parse(pname, &pr) != 0) {
				policy_diags_add(d, line, col, "ip=\"%.64s\": invalid protocol \"%s\": must be "
				    "a known protocol name or a protocol number 1-255", s, pname);
				return ERR_INVALID;
			}
			o->proto = pr;
		}
		ports = colon + 1;
	}
	if ((r = policy_ports_parse(ports, &o->ports, &o->nports, why, sizeof(why))) != 0) {
		policy_diags_add(d, line, col, "ip=\"%.64s\": %s", s, why);
		return ERR_INVALID;
	}
	for (k = 0; k < o->nports; k++) {
		if (o->ports[k].first == 0 && o->ports[k].last != 65535) {
			policy_diags_add(d, line, col, "ip=\"%.64s\": port range \"%s\": first port must "
			    "be >0, or use '*' for wildcard", s, ports);
			goto bad;
		}
		if (o->proto >= 0 && !proto_has_ports((uint8_t)o->proto) &&
		    (o->ports[k].first != 0 || o->ports[k].last != 65535)) {
			policy_diags_add(d, line, col, "ip=\"%.64s\": protocol \"%s\" does not support "
			    "specific ports; only \"*\" is allowed", s, pname);
			goto bad;
		}
	}
	return 0;
bad:
	free(o->ports);
	o->ports = NULL;
	return ERR_INVALID;
}

static bool
valid_cap_name(const char *s, const char **why)
{
	const char *slash = strchr(s, '/');
	size_t i;

	if (strstr(s, "://") != NULL || slash == NULL || slash == s || slash[1] == '\0') {
		*why = "capability name must have the form {domain}/{path}";
		return false;
	}
	for (const char *c = s; c < slash; c++) {
		if (!isalnum((unsigned char)*c) && *c != '-' && *c != '.' && *c != '_') {
			*why = "capability name must have the form {domain}/{path}";
			return false;
		}
	}
	if (strncmp(s, "tailscale.com/", 14) == 0) {
		for (i = 0; i < sizeof(ts_caps) / sizeof(ts_caps[0]); i++)
			if (strcmp(s, ts_caps[i]) == 0)
				return true;
		*why = "capability name must not be in the tailscale.com domain";
		return false;
	}
	return true;
}

/* Reads `app` into caps. Returns 0 or ERR_INVALID (diagnostics added). */
static int
load_app(struct policy *p, const struct hujson_value *v, struct cap **out, size_t *n,
	 struct policy_diags *d)
{
	size_t i, j;
	int r = 0;

	*out = NULL;
	*n = 0;
	if (!want(v, HUJSON_OBJECT, "app", d) || !budget(p, v->len, v, d))
		return ERR_INVALID;
	if ((*out = calloc(v->len ? v->len : 1, sizeof(**out))) == NULL)
		return ERR_NOMEM;
	for (i = 0; i < v->len; i++) {
		const struct hujson_member *m = &v->members[i];
		const char *why;
		json_t *arr;

		if (!valid_cap_name(m->key, &why)) {
			policy_diags_add(d, m->key_line, m->key_col, "app \"%.64s\": %s", m->key, why);
			r = ERR_INVALID;
			continue;
		}
		if (!want(m->value, HUJSON_ARRAY, "a capability's values", d)) {
			r = ERR_INVALID;
			continue;
		}
		for (j = 0; j < m->value->len; j++) {
			if (m->value->items[j]->type != HUJSON_OBJECT) {
				policy_diags_add(d, m->value->items[j]->line, m->value->items[j]->col,
				    "app \"%.64s\": each value must be a JSON object", m->key);
				r = ERR_INVALID;
			}
		}
		if (r != 0)
			continue;
		if ((arr = hujson_value_to_json(m->value)) == NULL)
			return ERR_NOMEM;
		(*out)[*n].values = json_dumps(arr, JSON_COMPACT | JSON_SORT_KEYS);
		json_decref(arr);
		(*out)[*n].name = strdup(m->key);
		if ((*out)[*n].values == NULL || (*out)[*n].name == NULL) {
			free((*out)[*n].values);
			free((*out)[*n].name);
			return ERR_NOMEM;
		}
		(*n)++;
	}
	return r;
}

/* Does a grant dst look like an acls dst ("tag:web:443", "host:22")? */
static bool
dst_has_ports(const char *s)
{
	static const char *const kinds[] = { "tag:", "group:", "autogroup:", "user:" };
	struct ip_prefix pf;
	size_t i;

	for (i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++)
		if (strncmp(s, kinds[i], strlen(kinds[i])) == 0)
			return strchr(s + strlen(kinds[i]), ':') != NULL;
	return strchr(s, ':') != NULL && prefix_parse(s, false, &pf) != 0;
}

/* Reads a grant's src or dst (selectors without ports). */
static int
load_grant_sels(struct policy *p, const struct hujson_value *v, enum side side,
		struct selector **out, size_t *n, struct policy_diags *d)
{
	const char *what = side == SIDE_SRC ? "src" : "dst";
	size_t i;
	int r = 0;

	*out = NULL;
	*n = 0;
	if (!want(v, HUJSON_ARRAY, what, d) || !budget(p, v->len, v, d))
		return ERR_INVALID;
	if ((*out = calloc(v->len ? v->len : 1, sizeof(**out))) == NULL)
		return ERR_NOMEM;
	for (i = 0; i < v->len; i++) {
		const struct hujson_value *s = v->items[i];
		struct selector *o = &(*out)[*n];

		if (!want(s, HUJSON_STRING, side == SIDE_SRC ? "a src entry" : "a dst entry", d)) {
			r = ERR_INVALID;
			continue;
		}
		if (side == SIDE_DST && (strcmp(s->str, "0.0.0.0/0") == 0 || strcmp(s->str, "::/0") == 0)) {
			policy_diags_add(d, s->line, s->col, "dst \"%s\": to allow all IP addresses, "
			    "use \"*\" or \"autogroup:internet\"", s->str);
			r = ERR_INVALID;
			continue;
		}
		if (side == SIDE_DST && dst_has_ports(s->str)) {
			policy_diags_add(d, s->line, s->col, "dst=\"%.64s\": a grant's dst has no ports "
			    "(write the ports in \"ip\", e.g. \"ip\": [\"tcp:443\"])", s->str);
			r = ERR_INVALID;
			continue;
		}
		if (parse_selector(p, s->str, s->line, s->col, side, what, o, d) != 0) {
			r = ERR_INVALID;
			continue;
		}
		(*n)++;
	}
	return r;
}

static void
load_grant(struct policy *p, const struct hujson_value *v, struct policy_diags *d)
{
	const struct hujson_value *src = NULL, *dst = NULL, *ip = NULL, *app = NULL, *via = NULL;
	struct selector *srcs = NULL, *dsts = NULL;
	struct ipspec *specs = NULL;
	struct cap *caps = NULL;
	const char **vias = NULL;
	size_t nsrc = 0, ndst = 0, nspec = 0, ncaps = 0, nvia = 0, i, j, k;
	size_t before = d->n + d->dropped;
	bool has_self = false, has_internet = false;
	int grant = (int)++p->ngrants;

	for (i = 0; i < v->len; i++) {
		const struct hujson_member *m = &v->members[i];

		switch (key_index(m->key, grant_keys, 6)) {
		case 0: src = m->value; break;
		case 1: dst = m->value; break;
		case 2: ip = m->value; break;
		case 3: app = m->value; break;
		case 4: via = m->value; break;
		case 5:
			policy_diags_add(d, m->key_line, m->key_col,
			    "srcPosture is not supported: wiremesh has no device posture checks, so "
			    "this grant would apply without its condition; remove it or the grant");
			break;
		default: unknown_key(d, m, "a grant", grant_keys, 5);
		}
	}
	if (src == NULL)
		policy_diags_add(d, v->line, v->col, "grant has no \"src\"");
	if (dst == NULL)
		policy_diags_add(d, v->line, v->col, "grant has no \"dst\"");
	if ((ip == NULL || (ip->type == HUJSON_ARRAY && ip->len == 0)) &&
	    (app == NULL || (app->type == HUJSON_OBJECT && app->len == 0)))
		policy_diags_add(d, v->line, v->col, "ip and app can not both be empty");
	if (src != NULL)
		(void)load_grant_sels(p, src, SIDE_SRC, &srcs, &nsrc, d);
	if (dst != NULL)
		(void)load_grant_sels(p, dst, SIDE_DST, &dsts, &ndst, d);
	for (i = 0; i < ndst; i++) {
		if (dsts[i].kind == SEL_SELF)
			has_self = true;
		if (dsts[i].kind == SEL_INTERNET)
			has_internet = true;
	}
	if (has_self) {
		for (i = 0; i < nsrc; i++) {
			enum sel_kind sk = srcs[i].kind;

			if (sk != SEL_USER && sk != SEL_GROUP && sk != SEL_MEMBER && sk != SEL_DOMAIN)
				policy_diags_add(d, srcs[i].line, srcs[i].col,
				    "autogroup:self can only be used with users, groups, or "
				    "supported autogroups");
		}
	}
	if (app != NULL && app->type == HUJSON_OBJECT && app->len > 0 && has_internet)
		policy_diags_add(d, app->line, app->col, "cannot use app grants with autogroup:internet");
	if (app != NULL)
		(void)load_app(p, app, &caps, &ncaps, d);
	if (ip != NULL && want(ip, HUJSON_ARRAY, "ip", d) && budget(p, ip->len, ip, d) &&
	    (specs = calloc(ip->len ? ip->len : 1, sizeof(*specs))) != NULL) {
		for (i = 0; i < ip->len; i++) {
			const struct hujson_value *e = ip->items[i];

			if (want(e, HUJSON_STRING, "an ip entry", d) &&
			    parse_ipspec(e->str, e->line, e->col, &specs[nspec], d) == 0) {
				if (!budget(p, specs[nspec].nports, e, d)) {
					free(specs[nspec].ports);
					continue;
				}
				nspec++;
			}
		}
	}
	if (via != NULL && want(via, HUJSON_ARRAY, "via", d) && budget(p, via->len, via, d) &&
	    (vias = calloc(via->len ? via->len : 1, sizeof(*vias))) != NULL) {
		for (i = 0; i < via->len; i++) {
			const struct hujson_value *e = via->items[i];

			if (!want(e, HUJSON_STRING, "a via entry", d))
				continue;
			if (strncmp(e->str, "tag:", 4) != 0) {
				policy_diags_add(d, e->line, e->col, "via=\"%.64s\": via can only be a tag",
				    e->str);
				continue;
			}
			if (!policy_tag_defined(p, e->str)) {
				policy_diags_add(d, e->line, e->col, "via: tag \"%.64s\" not found "
				    "(tags must be defined in tagOwners)", e->str);
				continue;
			}
			if ((vias[nvia] = keep(p, e->str)) != NULL)
				nvia++;
		}
	}
	if (d->n + d->dropped != before)
		goto out;
	/* One rule per distinct protocol of `ip`, in order of appearance. */
	for (i = 0; i < nspec; i++) {
		struct rule *r;
		size_t nports = 0;

		for (j = 0; j < i; j++)
			if (specs[j].proto == specs[i].proto)
				break;
		if (j < i)
			continue;
		if (p->nrules >= p->caprules)
			goto out;
		r = &p->rules[p->nrules];
		memset(r, 0, sizeof(*r));
		r->line = v->line;
		r->col = v->col;
		r->grant = grant;
		if (specs[i].proto < 0) {
			r->protos[0] = 6;
			r->protos[1] = 17;
			r->protos[2] = 1;
			r->protos[3] = 58;
			r->nprotos = 4;
		} else {
			r->protos[0] = (uint8_t)specs[i].proto;
			r->nprotos = 1;
			r->has_proto = true;
		}
		for (j = i; j < nspec; j++)
			if (specs[j].proto == specs[i].proto)
				nports += specs[j].nports;
		r->src = malloc((nsrc ? nsrc : 1) * sizeof(*r->src));
		r->dst = calloc(ndst ? ndst : 1, sizeof(*r->dst));
		p->nrules++;
		if (r->src == NULL || r->dst == NULL)
			goto out;
		if (nsrc)
			memcpy(r->src, srcs, nsrc * sizeof(*srcs));
		r->nsrc = nsrc;
		for (k = 0; k < ndst; k++) {
			struct dst *o = &r->dst[r->ndst];

			o->sel = dsts[k];
			if ((o->ports = malloc(nports * sizeof(*o->ports))) == NULL)
				goto out;
			for (j = i; j < nspec; j++) {
				if (specs[j].proto != specs[i].proto)
					continue;
				memcpy(o->ports + o->nports, specs[j].ports,
				    specs[j].nports * sizeof(*o->ports));
				o->nports += specs[j].nports;
			}
			if (o->sel.kind == SEL_SELF)
				r->has_self = true;
			r->ndst++;
		}
		if (nvia > 0 && (r->via = malloc(nvia * sizeof(*r->via))) != NULL) {
			memcpy(r->via, vias, nvia * sizeof(*vias));
			r->nvia = nvia;
		}
	}
	/* The app rule: visibility and capabilities, no packet filter. */
	if (ncaps > 0 && p->nrules < p->caprules) {
		struct rule *r = &p->rules[p->nrules++];

		memset(r, 0, sizeof(*r));
		r->line = v->line;
		r->col = v->col;
		r->grant = grant;
		r->src = srcs;
		r->nsrc = nsrc;
		r->dst = calloc(ndst ? ndst : 1, sizeof(*r->dst));
		r->caps = caps;
		r->ncaps = ncaps;
		srcs = NULL;
		caps = NULL;
		ncaps = 0;
		if (r->dst == NULL)
			goto out;
		for (k = 0; k < ndst; k++) {
			struct dst *o = &r->dst[r->ndst];

			o->sel = dsts[k];
			if ((o->ports = calloc(1, sizeof(*o->ports))) == NULL)
				goto out;
			o->ports[0].last = 65535;
			o->nports = 1;
			if (o->sel.kind == SEL_SELF)
				r->has_self = true;
			r->ndst++;
		}
		if (nvia > 0) {
			r->via = vias;
			r->nvia = nvia;
			vias = NULL;
		}
	}
out:
	for (i = 0; i < ncaps; i++) {
		free(caps[i].name);
		free(caps[i].values);
	}
	free(caps);
	for (i = 0; i < nspec; i++)
		free(specs[i].ports);
	free(specs);
	free(srcs);
	free(dsts);
	free(vias);
}

static void
load_grants(struct policy *p, const struct hujson_value *v, struct policy_diags *d)
{
	size_t i;

	if (!want(v, HUJSON_ARRAY, "grants", d) || !budget(p, v->len, v, d))
		return;
	if (v->len > POLICY_MAX_RULES) {
		policy_diags_add(d, v->line, v->col, "more than %d grants", POLICY_MAX_RULES);
		return;
	}
	if (p->rules == NULL)
		return;
	for (i = 0; i < v->len; i++)
		if (want(v->items[i], HUJSON_OBJECT, "a grant", d))
			load_grant(p, v->items[i], d);
}

/* Rules the acls and grants sections can produce, to size p->rules. */
static size_t
rule_capacity(const struct hujson_value *acls, const struct hujson_value *grants)
{
	size_t n = 0, i, k;

	if (acls != NULL && acls->type == HUJSON_ARRAY)
		n += acls->len;
	if (grants != NULL && grants->type == HUJSON_ARRAY) {
		for (i = 0; i < grants->len; i++) {
			const struct hujson_value *g = grants->items[i];

			n++;	/* app rule */
			if (g->type != HUJSON_OBJECT)
				continue;
			for (k = 0; k < g->len; k++)
				if (strcasecmp(g->members[k].key, "ip") == 0 &&
				    g->members[k].value->type == HUJSON_ARRAY)
					n += g->members[k].value->len;
		}
	}
	return n;
}

static int
load_test_dsts(const struct hujson_value *v, struct test_dst **out, size_t *n,
	       struct policy *p, struct policy_diags *d)
{
	size_t i;

	if (!want(v, HUJSON_ARRAY, "a test's accept/deny", d) || !budget(p, v->len, v, d))
		return ERR_INVALID;
	if ((*out = calloc(v->len ? v->len : 1, sizeof(**out))) == NULL)
		return ERR_NOMEM;
	for (i = 0; i < v->len; i++) {
		const struct hujson_value *s = v->items[i];
		struct test_dst *t = &(*out)[*n];

		if (!want(s, HUJSON_STRING, "a test destination", d))
			continue;
		t->line = s->line;
		t->col = s->col;
		if ((t->text = strdup(s->str)) != NULL)
			(*n)++;
	}
	return 0;
}

static void
load_tests(struct policy *p, const struct hujson_value *v, struct policy_diags *d)
{
	size_t i, j;

	if (!want(v, HUJSON_ARRAY, "tests", d) || !budget(p, v->len, v, d))
		return;
	if ((p->tests = calloc(v->len ? v->len : 1, sizeof(*p->tests))) == NULL)
		return;
	for (i = 0; i < v->len; i++) {
		const struct hujson_value *t = v->items[i];
		struct ptest *pt = &p->tests[p->ntests];
		bool has_src = false, has_any = false;

		if (!want(t, HUJSON_OBJECT, "a test", d))
			continue;
		pt->line = t->line;
		pt->col = t->col;
		p->ntests++;
		for (j = 0; j < t->len; j++) {
			const struct hujson_member *m = &t->members[j];

			switch (key_index(m->key, test_keys, 4)) {
			case 0:
				if (!want(m->value, HUJSON_STRING, "a test's src", d))
					break;
				if (m->value->str[0] == '\0') {
					policy_diags_add(d, m->value->line, m->value->col,
					    "test src is empty");
					break;
				}
				pt->src = strdup(m->value->str);
				pt->src_line = m->value->line;
				pt->src_col = m->value->col;
				has_src = true;
				break;
			case 1:
				if (m->value->type == HUJSON_STRING || m->value->type == HUJSON_NUMBER) {
					uint8_t pr;

					if (policy_proto_parse(m->value->str, &pr) != 0)
						policy_diags_add(d, m->value->line, m->value->col,
						    "test proto=\"%.32s\": unknown protocol", m->value->str);
					else
						pt->proto = strdup(m->value->str);
				} else {
					policy_diags_add(d, m->value->line, m->value->col,
					    "test proto must be a name or a number");
				}
				break;
			case 2:
				if (load_test_dsts(m->value, &pt->accept, &pt->naccept, p, d) == 0)
					has_any = true;
				break;
			case 3:
				if (load_test_dsts(m->value, &pt->deny, &pt->ndeny, p, d) == 0)
					has_any = true;
				break;
			default:
				unknown_key(d, m, "a test", test_keys, 4);
			}
		}
		if (!has_src)
			policy_diags_add(d, t->line, t->col, "test has no \"src\"");
		if (!has_any || pt->naccept + pt->ndeny == 0)
			policy_diags_add(d, t->line, t->col, "test has neither \"accept\" nor \"deny\"");
	}
}

static int
load_who(struct policy *p, const struct hujson_value *v, struct approver *a,
	 struct policy_diags *d)
{
	size_t i;

	if (!want(v, HUJSON_ARRAY, "an auto-approver list", d) || !budget(p, v->len, v, d))
		return ERR_INVALID;
	if ((a->who = calloc(v->len ? v->len : 1, sizeof(*a->who))) == NULL)
		return ERR_NOMEM;
	for (i = 0; i < v->len; i++) {
		const struct hujson_value *s = v->items[i];

		if (want(s, HUJSON_STRING, "an auto-approver", d) &&
		    parse_selector(p, s->str, s->line, s->col, SIDE_OWNER, "autoApprovers",
		    &a->who[a->nwho], d) == 0)
			a->nwho++;
	}
	return 0;
}

static void
load_approvers(struct policy *p, const struct hujson_value *v, struct policy_diags *d)
{
	const struct hujson_value *routes = NULL, *exit = NULL;
	size_t i, n = 0;

	if (!want(v, HUJSON_OBJECT, "autoApprovers", d))
		return;
	for (i = 0; i < v->len; i++) {
		const struct hujson_member *m = &v->members[i];

		switch (key_index(m->key, approver_keys, 2)) {
		case 0: routes = m->value; break;
		case 1: exit = m->value; break;
		default: unknown_key(d, m, "autoApprovers", approver_keys, 2);
		}
	}
	if (routes != NULL && !want(routes, HUJSON_OBJECT, "autoApprovers.routes", d))
		routes = NULL;
	if (routes != NULL && !budget(p, routes->len, routes, d))
		return;
	if ((p->approvers = calloc((routes ? routes->len : 0) + 1, sizeof(*p->approvers))) == NULL)
		return;
	for (i = 0; routes != NULL && i < routes->len; i++) {
		const struct hujson_member *m = &routes->members[i];
		struct approver *a = &p->approvers[n];

		if (prefix_parse(m->key, false, &a->route) != 0) {
			policy_diags_add(d, m->key_line, m->key_col,
			    "autoApprovers.routes: invalid CIDR \"%.64s\"", m->key);
			continue;
		}
		n++;
		(void)load_who(p, m->value, a, d);
	}
	if (exit != NULL) {
		p->approvers[n].route.addr.family = 0;
		n++;
		(void)load_who(p, exit, &p->approvers[n - 1], d);
	}
	p->napprovers = n;
}

int
policy_load(const char *text, size_t len, struct policy **out, struct policy_diags *d)
{
	const struct hujson_value *sec[NTOP] = { 0 };
	struct hujson_value *root = NULL;
	struct policy_diag pd;
	struct policy *p = NULL;
	size_t before = d->n + d->dropped, i;
	int r;

	*out = NULL;
	if (len > POLICY_MAX_SIZE) {
		policy_diags_add(d, 1, 1, "policy is larger than %d bytes", POLICY_MAX_SIZE);
		return ERR_TOO_LARGE;
	}
	if ((r = hujson_parse(text, len, &root, &pd)) != 0) {
		policy_diags_add(d, pd.line, pd.col, "%s", pd.msg);
		return r;
	}
	r = ERR_INVALID;
	if (!want(root, HUJSON_OBJECT, "the policy", d))
		goto out;
	if ((p = calloc(1, sizeof(*p))) == NULL) {
		r = ERR_NOMEM;
		goto out;
	}
	for (i = 0; i < root->len; i++) {
		const struct hujson_member *m = &root->members[i];
		int k = key_index(m->key, top_keys, NTOP);

		if (k < 0) {
			unknown_key(d, m, "the policy", top_keys, NTOP);
			continue;
		}
		if (sec[k] != NULL) {
			policy_diags_add(d, m->key_line, m->key_col, "duplicate key \"%s\"", m->key);
			continue;
		}
		sec[k] = m->value;
	}
	if (sec[0])
		load_groups(p, sec[0], d);
	if (sec[1])
		load_hosts(p, sec[1], d);
	if (sec[2])
		load_tag_owners(p, sec[2], d);
	p->caprules = rule_capacity(sec[3], sec[6]);
	if (p->caprules > POLICY_MAX_ITEMS) {
		policy_diags_add(d, 1, 1, "policy too large: more than %d entries", POLICY_MAX_ITEMS);
		p->caprules = 0;
	} else if (p->caprules > 0 &&
	    (p->rules = calloc(p->caprules, sizeof(*p->rules))) == NULL) {
		r = ERR_NOMEM;
		goto out;
	}
	if (sec[3])
		load_acls(p, sec[3], d);
	if (sec[6])
		load_grants(p, sec[6], d);
	if (p->nrules > POLICY_MAX_RULES)
		policy_diags_add(d, 1, 1, "more than %d rules (acls and grants together)",
		    POLICY_MAX_RULES);
	if (sec[4])
		load_tests(p, sec[4], d);
	if (sec[5])
		load_approvers(p, sec[5], d);
	if (d->n + d->dropped != before)
		goto out;
	*out = p;
	p = NULL;
	r = 0;
out:
	policy_free(p);
	hujson_free(root);
	return r;
}

void
policy_free(struct policy *p)
{
	size_t i, j;

	if (p == NULL)
		return;
	for (i = 0; i < p->nrules; i++) {
		for (j = 0; j < p->rules[i].ndst; j++)
			free(p->rules[i].dst[j].ports);
		free(p->rules[i].src);
		free(p->rules[i].dst);
		for (j = 0; j < p->rules[i].ncaps; j++) {
			free(p->rules[i].caps[j].name);
			free(p->rules[i].caps[j].values);
		}
		free(p->rules[i].caps);
		free(p->rules[i].via);
	}
	free(p->rules);
	for (i = 0; i < p->ngroups; i++) {
		for (j = 0; j < p->groups[i].nusers; j++)
			free(p->groups[i].users[j]);
		free(p->groups[i].users);
		free(p->groups[i].name);
	}
	free(p->groups);
	for (i = 0; i < p->nhosts; i++)
		free(p->hosts[i].name);
	free(p->hosts);
	for (i = 0; i < p->ntags; i++) {
		for (j = 0; j < p->tags[i].nowners; j++)
			free(p->tags[i].owners[j]);
		free(p->tags[i].owners);
		free(p->tags[i].tag);
	}
	free(p->tags);
	for (i = 0; i < p->ntests; i++) {
		struct ptest *t = &p->tests[i];

		for (j = 0; j < t->naccept; j++)
			free(t->accept[j].text);
		for (j = 0; j < t->ndeny; j++)
			free(t->deny[j].text);
		free(t->accept);
		free(t->deny);
		free(t->src);
		free(t->proto);
	}
	free(p->tests);
	for (i = 0; i < p->napprovers; i++)
		free(p->approvers[i].who);
	free(p->approvers);
	for (i = 0; i < p->nstrings; i++)
		free(p->strings[i]);
	free(p->strings);
	free(p);
}

size_t
policy_rule_count(const struct policy *p)
{
	size_t i, n = 0;

	for (i = 0; p != NULL && i < p->nrules; i++)
		n += p->rules[i].grant == 0;
	return n;
}

size_t
policy_grant_count(const struct policy *p)
{
	return p ? p->ngrants : 0;
}

size_t
policy_test_count(const struct policy *p)
{
	return p ? p->ntests : 0;
}
