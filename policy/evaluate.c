// SPDX-License-Identifier: MIT
/*
 * Single decisions over the policy model: the `tests` block and `explain`.
 * A source or destination written in a test ("alice@example.com",
 * "tag:server", "group:dev", "webserver", "100.64.0.1", "[fd7a::1]") becomes
 * a principal: who it is (user, tags) and which addresses it has. Rules are
 * then matched symbolically against principals, so tests work offline
 * without any node; with a node set, users and tags also get their nodes'
 * addresses and an IP names the node that holds it.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "policy/policy_int.h"

enum { PRINCIPAL_MAX_IPS = 64 };

struct principal {
	const char *user;	/* NULL if none */
	bool member;		/* an untagged user (autogroup:member when user is NULL) */
	bool tagged;
	const char *tag;	/* a tag it has, when built from a tag */
	const struct policy_node *node;	/* when built from a node's IP */
	struct ip_addr ips[PRINCIPAL_MAX_IPS];
	size_t nips;
};

static bool
p_has_tag(const struct principal *P, const char *tag)
{
	size_t i;

	if (P->tag != NULL && strcmp(P->tag, tag) == 0)
		return true;
	if (P->node != NULL)
		for (i = 0; i < P->node->ntags; i++)
			if (strcmp(P->node->tags[i], tag) == 0)
				return true;
	return false;
}

static bool
users_same(const char *a, const char *b)
{
	return user_match(a, b) || user_match(b, a);
}

static bool
p_in_group(const struct policy *p, size_t g, const struct principal *P)
{
	size_t i;

	if (P->user == NULL || P->tagged)
		return false;
	for (i = 0; i < p->groups[g].nusers; i++)
		if (users_same(p->groups[g].users[i], P->user))
			return true;
	return false;
}

static bool
p_in_prefix(const struct principal *P, const struct ip_prefix *pfx)
{
	size_t i;

	for (i = 0; i < P->nips; i++)
		if (prefix_contains(pfx, &P->ips[i]))
			return true;
	return false;
}

static bool
sel_match(const struct policy *p, const struct selector *s, const struct principal *P,
	  const struct principal *src)
{
	switch (s->kind) {
	case SEL_ALL:
		return true;
	case SEL_USER:
		return P->user != NULL && !P->tagged && users_same(s->name, P->user);
	case SEL_GROUP:
		return p_in_group(p, s->idx, P);
	case SEL_TAG:
		return P->tagged && p_has_tag(P, s->name);
	case SEL_PREFIX:
		return p_in_prefix(P, &s->pfx);
	case SEL_MEMBER:
		return P->member && !P->tagged;
	case SEL_TAGGED:
		return P->tagged;
	case SEL_SELF:
		return src != NULL && src->user != NULL && !src->tagged && P->user != NULL &&
		    !P->tagged && users_same(src->user, P->user);
	case SEL_INTERNET:
		return false;
	case SEL_DANGER:
		return true;
	case SEL_DOMAIN:
		if (P->user == NULL || P->tagged)
			return false;
		{
			size_t lu = strlen(P->user), ld = strlen(s->name);

			return lu > ld && strcmp(P->user + lu - ld, s->name) == 0;
		}
	}
	return false;
}

static void
add_ip(struct principal *P, const struct ip_addr *a)
{
	if (a->family != 0 && P->nips < PRINCIPAL_MAX_IPS)
		P->ips[P->nips++] = *a;
}

static bool
node_has_tag(const struct policy_node *n, const char *tag)
{
	size_t i;

	for (i = 0; i < n->ntags; i++)
		if (strcmp(n->tags[i], tag) == 0)
			return true;
	return false;
}

/* Builds the principal(s) for `s`. Groups expand to one principal per member:
 * *np is set to the count and *out to a malloc'd array. Returns 0 or
 * ERR_INVALID with the reason in why. */
static int
principals(const struct policy *p, const char *s, const struct policy_node *nodes,
	   size_t nn, struct principal **out, size_t *np, char *why, size_t whylen)
{
	struct principal *P;
	size_t i, g;

	*out = NULL;
	*np = 0;
	if (strncmp(s, "group:", 6) == 0) {
		for (g = 0; g < p->ngroups; g++)
			if (strcmp(p->groups[g].name, s) == 0)
				break;
		if (g == p->ngroups) {
			snprintf(why, whylen, "group not found: \"%.64s\"", s);
			return ERR_INVALID;
		}
		if (p->groups[g].nusers == 0) {
			snprintf(why, whylen, "group \"%.64s\" has no members", s);
			return ERR_INVALID;
		}
		if ((P = calloc(p->groups[g].nusers, sizeof(*P))) == NULL)
			return ERR_NOMEM;
		for (i = 0; i < p->groups[g].nusers; i++) {
			struct principal *one;
			size_t k;

			if (principals(p, p->groups[g].users[i], nodes, nn, &one, &k, why, whylen) != 0) {
				free(P);
				return ERR_INVALID;
			}
			P[i] = one[0];
			free(one);
		}
		*out = P;
		*np = p->groups[g].nusers;
		return 0;
	}
	if ((P = calloc(1, sizeof(*P))) == NULL)
		return ERR_NOMEM;
	*out = P;
	*np = 1;
	if (strcmp(s, "autogroup:member") == 0) {
		P->member = true;
		return 0;
	}
	if (strcmp(s, "autogroup:tagged") == 0) {
		P->tagged = true;
		return 0;
	}
	if (strncmp(s, "autogroup:", 10) == 0) {
		snprintf(why, whylen, "\"%.64s\" cannot be used here (only autogroup:member "
		    "and autogroup:tagged)", s);
		goto bad;
	}
	if (strcmp(s, "*") == 0) {
		snprintf(why, whylen, "\"*\" is not a single source or destination");
		goto bad;
	}
	if (strncmp(s, "tag:", 4) == 0) {
		if (!policy_tag_defined(p, s)) {
			snprintf(why, whylen, "tag not found: \"%.64s\"", s);
			goto bad;
		}
		P->tagged = true;
		P->tag = s;
		for (i = 0; nodes != NULL && i < nn; i++) {
			if (node_has_tag(&nodes[i], s)) {
				add_ip(P, &nodes[i].ipv4);
				add_ip(P, &nodes[i].ipv6);
			}
		}
		return 0;
	}
	if (strchr(s, '@') != NULL) {
		P->user = s;
		P->member = true;
		for (i = 0; nodes != NULL && i < nn; i++) {
			if (nodes[i].ntags == 0 && nodes[i].user != NULL &&
			    users_same(s, nodes[i].user)) {
				add_ip(P, &nodes[i].ipv4);
				add_ip(P, &nodes[i].ipv6);
			}
		}
		return 0;
	}
	{
		const struct host *h = policy_host_find(p, s);
		struct ip_prefix pfx;
		struct ip_addr a;

		if (h != NULL) {
			pfx = h->pfx;
			if (pfx.bits != (pfx.addr.family == AF_INET ? 32 : 128)) {
				snprintf(why, whylen, "host \"%.64s\" is a network, not one address", s);
				goto bad;
			}
			a = pfx.addr;
		} else if (addr_parse(s, &a) != 0) {
			if (prefix_parse(s, true, &pfx) == 0)
				snprintf(why, whylen, "\"%.64s\" is a network, not one address", s);
			else
				snprintf(why, whylen, "\"%.64s\" is not a user, group, tag, host or IP", s);
			goto bad;
		}
		add_ip(P, &a);
		for (i = 0; nodes != NULL && i < nn; i++) {
			if (addr_equal(&nodes[i].ipv4, &a) || addr_equal(&nodes[i].ipv6, &a)) {
				P->node = &nodes[i];
				P->tagged = nodes[i].ntags > 0;
				P->user = P->tagged ? NULL : nodes[i].user;
				P->member = P->user != NULL;
				add_ip(P, &nodes[i].ipv4);
				add_ip(P, &nodes[i].ipv6);
				break;
			}
		}
		return 0;
	}
bad:
	free(P);
	*out = NULL;
	*np = 0;
	return ERR_INVALID;
}

struct verdict {
	int lines[16];
	size_t nlines;
	size_t rules[16];
};

/* Does some rule accept src -> dst on proto/port? Records the rules. */
static bool
decide(const struct policy *p, const struct principal *src, const struct principal *dst,
       uint8_t proto, uint16_t port, struct verdict *v)
{
	size_t i, j, k;

	memset(v, 0, sizeof(*v));
	for (i = 0; i < p->nrules; i++) {
		const struct rule *ru = &p->rules[i];
		bool ok = false;

		for (k = 0; k < ru->nprotos && !ok; k++)
			ok = ru->protos[k] == proto;
		if (!ok)
			continue;
		ok = false;
		for (j = 0; j < ru->nsrc && !ok; j++)
			ok = sel_match(p, &ru->src[j], src, NULL);
		if (!ok)
			continue;
		ok = false;
		for (j = 0; j < ru->ndst && !ok; j++) {
			if (!sel_match(p, &ru->dst[j].sel, dst, src))
				continue;
			for (k = 0; k < ru->dst[j].nports && !ok; k++)
				ok = port >= ru->dst[j].ports[k].first && port <= ru->dst[j].ports[k].last;
		}
		if (ok && v->nlines < 16) {
			v->rules[v->nlines] = i;
			v->lines[v->nlines++] = ru->line;
		}
	}
	return v->nlines > 0;
}

/* Parses "host:port" where port is one number. */
static int
parse_dst(const char *s, char **host, uint16_t *port, char *why, size_t whylen)
{
	char *ports = NULL, *end;
	long v;

	*host = NULL;
	if (policy_split_dst(s, host, &ports) != 0) {
		snprintf(why, whylen, "destination \"%.64s\" has no port", s);
		return ERR_INVALID;
	}
	v = strtol(ports, &end, 10);
	if (ports[0] < '0' || ports[0] > '9' || *end != '\0' || v < 0 || v > 65535) {
		snprintf(why, whylen, "destination \"%.64s\": port must be one number 0-65535", s);
		free(ports);
		free(*host);
		*host = NULL;
		return ERR_INVALID;
	}
	free(ports);
	*port = (uint16_t)v;
	return 0;
}

static void
fmt_lines(char *out, size_t n, const struct verdict *v)
{
	size_t i, at = 0;

	out[0] = '\0';
	for (i = 0; i < v->nlines && at < n; i++)
		at += (size_t)snprintf(out + at, n - at, "%s%d", i ? ", " : "", v->lines[i]);
}

static void
run_one(const struct policy *p, const struct ptest *t, const struct test_dst *td, bool want,
	const struct policy_node *nodes, size_t nn, struct principal *srcs, size_t nsrc,
	uint8_t proto, struct policy_diags *d)
{
	struct principal *dsts = NULL;
	size_t ndst = 0, i, j;
	char *host = NULL, why[160], lines[80];
	uint16_t port;
	struct verdict v;

	if (parse_dst(td->text, &host, &port, why, sizeof(why)) != 0 ||
	    principals(p, host, nodes, nn, &dsts, &ndst, why, sizeof(why)) != 0) {
		policy_diags_add(d, t->line, t->col, "test failed: src \"%.64s\": %s", t->src, why);
		free(host);
		return;
	}
	for (i = 0; i < nsrc; i++) {
		for (j = 0; j < ndst; j++) {
			bool got = decide(p, &srcs[i], &dsts[j], proto, port, &v);

			if (got == want)
				continue;
			if (want) {
				policy_diags_add(d, t->line, t->col,
				    "test failed: \"%.64s\" cannot reach \"%.64s\" (expected accept)%s%.64s",
				    t->src, td->text, nsrc > 1 ? " for " : "",
				    nsrc > 1 ? srcs[i].user : "");
			} else {
				fmt_lines(lines, sizeof(lines), &v);
				policy_diags_add(d, t->line, t->col,
				    "test failed: \"%.64s\" can reach \"%.64s\" (expected deny), "
				    "accepted by the rule at line %s", t->src, td->text, lines);
			}
			goto out;
		}
	}
out:
	free(dsts);
	free(host);
}

int
policy_run_tests(const struct policy *p, const struct policy_node *nodes, size_t nn,
		 struct policy_diags *d)
{
	size_t before = d->n + d->dropped, i, j, nsrc;
	struct principal *srcs;
	char why[160];

	if (p == NULL)
		return 0;
	for (i = 0; i < p->ntests; i++) {
		const struct ptest *t = &p->tests[i];
		uint8_t proto = 6;

		if (t->src == NULL)
			continue;
		if (t->proto != NULL && policy_proto_parse(t->proto, &proto) != 0)
			continue;
		if (principals(p, t->src, nodes, nn, &srcs, &nsrc, why, sizeof(why)) != 0) {
			policy_diags_add(d, t->line, t->col, "test failed: src: %s", why);
			continue;
		}
		for (j = 0; j < t->naccept; j++)
			run_one(p, t, &t->accept[j], true, nodes, nn, srcs, nsrc, proto, d);
		for (j = 0; j < t->ndeny; j++)
			run_one(p, t, &t->deny[j], false, nodes, nn, srcs, nsrc, proto, d);
		free(srcs);
	}
	return d->n + d->dropped == before ? 0 : ERR_UNPROCESSABLE;
}

/* Best effort: a full buffer truncates the explanation. */
__attribute__((format(printf, 2, 3)))
static void
say(struct buf *b, const char *fmt, ...)
{
	char tmp[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	if (buf_append(b, tmp, strlen(tmp)) != 0)
		return;
}

static void
sel_text(const struct policy *p, const struct selector *s, char *out, size_t n)
{
	char a[ADDR_STR_MAX];

	switch (s->kind) {
	case SEL_ALL: snprintf(out, n, "*"); break;
	case SEL_USER: case SEL_TAG: snprintf(out, n, "%s", s->name); break;
	case SEL_GROUP: snprintf(out, n, "%s", p->groups[s->idx].name); break;
	case SEL_PREFIX: prefix_fmt(a, &s->pfx); snprintf(out, n, "%s", a); break;
	case SEL_MEMBER: snprintf(out, n, "autogroup:member"); break;
	case SEL_TAGGED: snprintf(out, n, "autogroup:tagged"); break;
	case SEL_SELF: snprintf(out, n, "autogroup:self"); break;
	case SEL_INTERNET: snprintf(out, n, "autogroup:internet"); break;
	case SEL_DANGER: snprintf(out, n, "autogroup:danger-all"); break;
	case SEL_DOMAIN: snprintf(out, n, "user:*%s", s->name); break;
	}
}

int
policy_explain(const struct policy *p, const char *src, const char *dst_port,
	       const char *proto_s, struct buf *out)
{
	return policy_explain_nodes(p, src, dst_port, proto_s, NULL, 0, out);
}

int
policy_explain_nodes(const struct policy *p, const char *src, const char *dst_port,
		     const char *proto_s, const struct policy_node *nodes, size_t nn,
		     struct buf *out)
{
	struct principal *srcs = NULL, *dsts = NULL;
	size_t nsrc = 0, ndst = 0, i, j, k, m;
	char *host = NULL, why[160], text[96], pbuf[16];
	const char *pname;
	uint8_t proto = 6;
	uint16_t port;
	struct verdict v;
	int r = ERR_INVALID, verdict = 1;

	if (proto_s != NULL && policy_proto_parse(proto_s, &proto) != 0) {
		say(out, "unknown protocol \"%.32s\"\n", proto_s);
		return ERR_INVALID;
	}
	if (proto == 6)
		pname = "tcp";
	else if (proto == 17)
		pname = "udp";
	else if (proto == 1)
		pname = "icmp";
	else {
		snprintf(pbuf, sizeof(pbuf), "proto %u", proto);
		pname = pbuf;
	}
	if (p == NULL) {
		say(out, "accept: no policy is loaded, everything is allowed\n");
		return 1;
	}
	if (principals(p, src, nodes, nn, &srcs, &nsrc, why, sizeof(why)) != 0) {
		say(out, "source: %s\n", why);
		goto out;
	}
	if (parse_dst(dst_port, &host, &port, why, sizeof(why)) != 0 ||
	    principals(p, host, nodes, nn, &dsts, &ndst, why, sizeof(why)) != 0) {
		say(out, "destination: %s\n", why);
		goto out;
	}
	for (i = 0; i < nsrc && verdict; i++) {
		for (j = 0; j < ndst && verdict; j++) {
			if (!decide(p, &srcs[i], &dsts[j], proto, port, &v)) {
				verdict = 0;
				say(out, "deny: %s -> %s (%s): no rule accepts it%s%s\n",
				    src, dst_port, pname, nsrc > 1 ? " for " : "",
				    nsrc > 1 && srcs[i].user ? srcs[i].user : "");
			}
		}
	}
	if (verdict) {
		(void)decide(p, &srcs[0], &dsts[0], proto, port, &v);
		say(out, "accept: %s -> %s (%s)\n", src, dst_port, pname);
		for (k = 0; k < v.nlines; k++) {
			const struct rule *ru = &p->rules[v.rules[k]];

			if (ru->grant > 0)
				say(out, "  grant #%d at line %d: src", ru->grant, ru->line);
			else
				say(out, "  rule at line %d: src", ru->line);
			for (m = 0; m < ru->nsrc; m++) {
				if (!sel_match(p, &ru->src[m], &srcs[0], NULL))
					continue;
				sel_text(p, &ru->src[m], text, sizeof(text));
				say(out, " %s", text);
			}
			say(out, ", dst");
			for (m = 0; m < ru->ndst; m++) {
				const struct dst *dd = &ru->dst[m];
				size_t q;
				bool in = false;

				for (q = 0; q < dd->nports && !in; q++)
					in = port >= dd->ports[q].first && port <= dd->ports[q].last;
				if (!in || !sel_match(p, &dd->sel, &dsts[0], &srcs[0]))
					continue;
				sel_text(p, &dd->sel, text, sizeof(text));
				say(out, " %s:%u", text, port);
			}
			say(out, "\n");
			if (ru->nvia > 0) {
				bool routed = false;

				for (m = 0; m < ru->ndst; m++)
					routed |= (ru->dst[m].sel.kind == SEL_PREFIX ||
					    ru->dst[m].sel.kind == SEL_INTERNET) &&
					    sel_match(p, &ru->dst[m].sel, &dsts[0], &srcs[0]);
				if (routed) {
					say(out, "    via decides the router: only subnet routers or exit "
					    "nodes tagged");
					for (m = 0; m < ru->nvia; m++)
						say(out, "%s %s", m ? "," : "", ru->via[m]);
					say(out, " carry this traffic for this source; other routers of "
					    "the prefix do not serve it\n");
				}
			}
		}
	}
	r = verdict;
out:
	free(srcs);
	free(dsts);
	free(host);
	return r;
}

bool
policy_auto_approves(const struct policy *p, const struct policy_node *node,
		     const struct ip_prefix *route)
{
	struct principal P;
	size_t i, j;
	bool exit = route->bits == 0;

	if (p == NULL || node == NULL)
		return false;
	memset(&P, 0, sizeof(P));
	P.node = node;
	P.tagged = node->ntags > 0;
	P.user = P.tagged ? NULL : node->user;
	P.member = P.user != NULL;
	for (i = 0; i < p->napprovers; i++) {
		const struct approver *a = &p->approvers[i];

		if (exit ? a->route.addr.family != 0 :
		    (a->route.addr.family == 0 || !prefix_covers(&a->route, route)))
			continue;
		for (j = 0; j < a->nwho; j++)
			if (sel_match(p, &a->who[j], &P, NULL))
				return true;
	}
	return false;
}
