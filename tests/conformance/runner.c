// SPDX-License-Identifier: MIT
/*
 * Conformance runner: every case in the Tailscale-captured corpus (acl/,
 * policytest/, routes/, grant/) goes through our loader, tests and compiler
 * and is compared with what Tailscale's control plane answered: accepted or
 * rejected, and for accepted policies each node's packet filter and peer
 * list. Filters are compared after normalising: the set of (protocol,
 * destination prefix, port range) keys, each with its merged source ranges.
 *
 *   policy-conformance [-v] [--case ID] [--baseline FILE] [--write-baseline FILE] [DIR]
 *
 * DIR defaults to $WM_CONFORMANCE_DIR, then ../shared/conformance/tailscale-saas.
 * Exit 0, or 1 when a case listed in the baseline fails (a regression).
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <jansson.h>

#include "common/addr.h"
#include "policy/policy.h"

typedef unsigned __int128 u128;

static const char *const folders[] = { "acl", "policytest", "routes", "grant" };
enum { NFOLDERS = 4 };

static int verbose;
static const char *only;

struct range {
	int fam;
	u128 lo, hi;
};

struct tuple {
	char key[128];
	struct range r;
};

struct tset {
	struct tuple *v;
	size_t n, cap;
};

static struct range
prefix_range(const struct ip_prefix *p)
{
	struct range r;
	int width = p->addr.family == AF_INET ? 32 : 128, i;
	u128 v = 0, mask;

	for (i = 0; i < addr_len(&p->addr); i++)
		v = (v << 8) | p->addr.b[i];
	mask = p->bits >= width ? 0 : (width - p->bits == 128 ? ~(u128)0 :
	    ((((u128)1) << (width - p->bits)) - 1));
	r.fam = width == 32 ? 4 : 6;
	r.lo = v & ~mask;
	r.hi = r.lo | mask;
	return r;
}

static void
range_fmt(const struct range *r, char *out, size_t n)
{
	struct ip_addr a, b;
	char x[ADDR_STR_MAX], y[ADDR_STR_MAX];
	int i, len = r->fam == 4 ? 4 : 16;
	u128 lo = r->lo, hi = r->hi;

	memset(&a, 0, sizeof(a));
	memset(&b, 0, sizeof(b));
	a.family = b.family = r->fam == 4 ? AF_INET : AF_INET6;
	for (i = len - 1; i >= 0; i--) {
		a.b[i] = (uint8_t)(lo & 0xff);
		b.b[i] = (uint8_t)(hi & 0xff);
		lo >>= 8;
		hi >>= 8;
	}
	addr_fmt(x, &a);
	addr_fmt(y, &b);
	snprintf(out, n, "%s-%s", x, y);
}

static void
tset_add(struct tset *s, const char *key, const struct range *r)
{
	if (s->n == s->cap) {
		s->cap = s->cap ? s->cap * 2 : 64;
		s->v = realloc(s->v, s->cap * sizeof(*s->v));
		if (s->v == NULL)
			abort();
	}
	snprintf(s->v[s->n].key, sizeof(s->v[s->n].key), "%s", key);
	s->v[s->n].r = *r;
	s->n++;
}

static int
tuple_cmp(const void *a, const void *b)
{
	const struct tuple *x = a, *y = b;
	int c = strcmp(x->key, y->key);

	if (c)
		return c;
	if (x->r.fam != y->r.fam)
		return x->r.fam - y->r.fam;
	if (x->r.lo != y->r.lo)
		return x->r.lo < y->r.lo ? -1 : 1;
	return 0;
}

/* Normalises a filter into sorted lines "key => merged ranges". Returns the
 * lines joined by '\n' (malloc'd). */
static char *
normalise(json_t *filter)
{
	struct tset s = { 0 };
	size_t i, j, k, l, at = 0, cap = 1024;
	char *out = malloc(cap);
	json_t *m;

	if (out == NULL)
		abort();
	out[0] = '\0';
	json_array_foreach(filter, i, m) {
		json_t *protos = json_object_get(m, "IPProto");
		json_t *srcs = json_object_get(m, "Srcs");
		json_t *dsts = json_object_get(m, "Dsts");
		json_t *pj, *sj, *dj;

		json_array_foreach(protos, j, pj) {
			json_array_foreach(dsts, k, dj) {
				json_t *ports = json_object_get(dj, "Ports");
				struct ip_prefix dp;
				char key[128], ds[ADDR_STR_MAX];

				if (prefix_parse(json_string_value(json_object_get(dj, "Net")), true,
				    &dp) != 0)
					continue;
				prefix_fmt(ds, &dp);
				snprintf(key, sizeof(key), "proto %lld dst %s ports %lld-%lld",
				    (long long)json_integer_value(pj), ds,
				    (long long)json_integer_value(json_object_get(ports, "First")),
				    (long long)json_integer_value(json_object_get(ports, "Last")));
				json_array_foreach(srcs, l, sj) {
					struct ip_prefix sp;
					struct range r;

					if (prefix_parse(json_string_value(sj), true, &sp) != 0)
						continue;
					r = prefix_range(&sp);
					tset_add(&s, key, &r);
				}
			}
		}
	}
	if (s.n > 1)
		qsort(s.v, s.n, sizeof(*s.v), tuple_cmp);
	for (i = 0; i < s.n;) {
		char line[8192];
		size_t ll;

		ll = (size_t)snprintf(line, sizeof(line), "%s <=", s.v[i].key);
		for (j = i; j < s.n && strcmp(s.v[j].key, s.v[i].key) == 0;) {
			struct range cur = s.v[j].r;
			char rs[2 * ADDR_STR_MAX + 2];

			j++;
			while (j < s.n && strcmp(s.v[j].key, s.v[i].key) == 0 &&
			    s.v[j].r.fam == cur.fam && (s.v[j].r.lo <= cur.hi || s.v[j].r.lo == cur.hi + 1)) {
				if (s.v[j].r.hi > cur.hi)
					cur.hi = s.v[j].r.hi;
				j++;
			}
			range_fmt(&cur, rs, sizeof(rs));
			if (ll < sizeof(line))
				ll += (size_t)snprintf(line + ll, sizeof(line) - ll, " %s", rs);
		}
		if (ll >= sizeof(line))
			ll = sizeof(line) - 1;
		while (at + ll + 2 > cap) {
			cap *= 2;
			if ((out = realloc(out, cap)) == NULL)
				abort();
		}
		memcpy(out + at, line, ll);
		at += ll;
		out[at++] = '\n';
		out[at] = '\0';
		i = j;
	}
	free(s.v);
	return out;
}

/* Prints lines of `a` missing from `b` with a prefix. */
static void
print_missing(const char *a, const char *b, const char *what)
{
	const char *p = a;

	while (*p) {
		const char *e = strchr(p, '\n');
		size_t n = e ? (size_t)(e - p) : strlen(p);
		const char *q = b;
		int found = 0;

		while (*q) {
			const char *qe = strchr(q, '\n');
			size_t qn = qe ? (size_t)(qe - q) : strlen(q);

			if (qn == n && memcmp(p, q, n) == 0) {
				found = 1;
				break;
			}
			q += qn + (qe ? 1 : 0);
		}
		if (!found)
			printf("      %s: %.*s\n", what, (int)(n > 400 ? 400 : n), p);
		p += n + (e ? 1 : 0);
	}
}

struct tnode {
	char *name;
	char *user;
	char **tags;
	size_t ntags;
	struct ip_prefix *routes;
	size_t nroutes;
	struct ip_prefix *adv;
	size_t nadv;
};

static int
str_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Runs one case; returns 1 when it passes. */
static int
run_case(const char *path, const char *id)
{
	json_error_t je;
	json_t *c = json_load_file(path, 0, &je), *jn, *users, *expected;
	struct policy_diags d;
	struct policy *p = NULL;
	struct policy_node *nodes = NULL;
	struct tnode *tn = NULL;
	struct policy_result *res = NULL;
	const char *key;
	char *text = NULL;
	size_t n = 0, i, k;
	int accepted, want, ok = 0;

	policy_diags_init(&d);
	if (c == NULL) {
		printf("FAIL %s: cannot read: %s\n", id, je.text);
		return 0;
	}
	want = json_is_true(json_object_get(c, "accepted"));
	users = json_object_get(c, "users");
	jn = json_object_get(c, "nodes");
	expected = json_object_get(c, "expected");
	n = json_object_size(jn);
	nodes = calloc(n ? n : 1, sizeof(*nodes));
	tn = calloc(n ? n : 1, sizeof(*tn));
	if (nodes == NULL || tn == NULL)
		abort();
	/* Sorted names give stable indexes. */
	{
		json_t *v;
		char **names = calloc(n ? n : 1, sizeof(char *));

		i = 0;
		json_object_foreach(jn, key, v)
			names[i++] = strdup(key);
		qsort(names, n, sizeof(char *), str_cmp);
		for (i = 0; i < n; i++) {
			json_t *nd = json_object_get(jn, names[i]), *t, *u, *ar, *rr;
			const char *un = json_string_value(json_object_get(nd, "user"));
			size_t j, m;

			tn[i].name = names[i];
			if (un != NULL) {
				json_array_foreach(users, j, u) {
					if (strcmp(json_string_value(json_object_get(u, "name")), un) == 0 &&
					    json_string_value(json_object_get(u, "email")) != NULL)
						tn[i].user = strdup(json_string_value(json_object_get(u, "email")));
				}
				if (tn[i].user == NULL)
					tn[i].user = strdup(un);
			}
			t = json_object_get(nd, "tags");
			tn[i].tags = calloc(json_array_size(t) + 1, sizeof(char *));
			json_array_foreach(t, j, u)
				tn[i].tags[tn[i].ntags++] = strdup(json_string_value(u));
			ar = json_object_get(nd, "approved_routes");
			rr = json_object_get(nd, "routable_ips");
			tn[i].routes = calloc(json_array_size(ar) + 1, sizeof(struct ip_prefix));
			tn[i].adv = calloc(json_array_size(rr) + 1, sizeof(struct ip_prefix));
			json_array_foreach(rr, j, u)
				if (prefix_parse(json_string_value(u), true, &tn[i].adv[tn[i].nadv]) == 0)
					tn[i].nadv++;
			json_array_foreach(ar, j, u) {
				json_t *w;
				int served = 0;

				json_array_foreach(rr, m, w)
					if (strcmp(json_string_value(w), json_string_value(u)) == 0)
						served = 1;
				if (served && prefix_parse(json_string_value(u), true,
				    &tn[i].routes[tn[i].nroutes]) == 0)
					tn[i].nroutes++;
			}
			nodes[i].id = i + 1;
			nodes[i].name = tn[i].name;
			nodes[i].user = tn[i].ntags ? NULL : tn[i].user;
			nodes[i].tags = (const char *const *)tn[i].tags;
			nodes[i].ntags = tn[i].ntags;
			nodes[i].routes = tn[i].routes;
			nodes[i].nroutes = tn[i].nroutes;
			nodes[i].advertised = tn[i].adv;
			nodes[i].nadvertised = tn[i].nadv;
			if (addr_parse(json_string_value(json_object_get(nd, "ipv4")) ?
			    json_string_value(json_object_get(nd, "ipv4")) : "", &nodes[i].ipv4) != 0)
				memset(&nodes[i].ipv4, 0, sizeof(nodes[i].ipv4));
			if (addr_parse(json_string_value(json_object_get(nd, "ipv6")) ?
			    json_string_value(json_object_get(nd, "ipv6")) : "", &nodes[i].ipv6) != 0)
				memset(&nodes[i].ipv6, 0, sizeof(nodes[i].ipv6));
		}
		free(names);
	}
	text = json_dumps(json_object_get(c, "policy"), JSON_INDENT(2));
	accepted = policy_load(text, strlen(text), &p, &d) == 0;
	if (accepted)
		accepted = policy_run_tests(p, nodes, n, &d) == 0;
	if (accepted != want) {
		printf("FAIL %s: Tailscale %s it, we %s it", id, want ? "accepted" : "rejected",
		    accepted ? "accepted" : "rejected");
		if (!want)
			printf(" (Tailscale: %s)", json_string_value(json_object_get(
			    json_object_get(c, "error"), "message")));
		for (i = 0; i < d.n && i < 3; i++)
			printf("%s line %d:%d: %s", i ? ";" : " (ours:", d.v[i].line, d.v[i].col, d.v[i].msg);
		printf("%s\n", d.n ? ")" : "");
		goto out;
	}
	if (!accepted || expected == NULL) {
		ok = 1;
		goto out;
	}
	if ((res = policy_compile(p, nodes, n)) == NULL) {
		printf("FAIL %s: compile failed\n", id);
		goto out;
	}
	ok = 1;
	/* the server relies on it: a node's peers are the nodes that see it */
	for (i = 0; i < n; i++)
		for (k = 0; k < n; k++)
			if (policy_result_can_see(res, i, k) != policy_result_can_see(res, k, i)) {
				if (ok)
					printf("FAIL %s\n", id);
				ok = 0;
				printf("    visibility not symmetric: %s -> %s\n", tn[i].name,
				    tn[k].name);
			}
	for (i = 0; i < n; i++) {
		json_t *e = json_object_get(expected, tn[i].name), *ef, *ep, *got, *pj;
		char *ne, *ng, gotpeers[4096] = "", wantpeers[4096] = "";
		size_t *peers = NULL, gl = 0, wl = 0;
		ssize_t np;

		if (e == NULL)
			continue;
		ef = json_object_get(e, "filter");
		ep = json_object_get(e, "peers");
		got = policy_result_filter(res, i);
		ne = normalise(ef);
		ng = normalise(got);
		np = policy_result_peers(res, i, &peers);
		for (k = 0; np > 0 && k < (size_t)np && gl < sizeof(gotpeers) - 64; k++)
			gl += (size_t)snprintf(gotpeers + gl, sizeof(gotpeers) - gl, "%s ",
			    tn[peers[k]].name);
		json_array_foreach(ep, k, pj)
			if (wl < sizeof(wantpeers) - 64)
				wl += (size_t)snprintf(wantpeers + wl, sizeof(wantpeers) - wl, "%s ",
				    json_string_value(pj));
		if (strcmp(ne, ng) != 0 || strcmp(gotpeers, wantpeers) != 0) {
			if (ok)
				printf("FAIL %s\n", id);
			ok = 0;
			if (strcmp(ne, ng) != 0) {
				printf("    node %s: filter differs\n", tn[i].name);
				print_missing(ne, ng, "missing");
				print_missing(ng, ne, "extra  ");
			}
			if (strcmp(gotpeers, wantpeers) != 0)
				printf("    node %s: peers: want [%s] got [%s]\n", tn[i].name,
				    wantpeers, gotpeers);
		}
		free(ne);
		free(ng);
		free(peers);
		json_decref(got);
	}
out:
	if (verbose && ok)
		printf("ok   %s\n", id);
	policy_result_free(res);
	policy_free(p);
	policy_diags_cleanup(&d);
	for (i = 0; i < n; i++) {
		for (k = 0; k < tn[i].ntags; k++)
			free(tn[i].tags[k]);
		free(tn[i].tags);
		free(tn[i].routes);
		free(tn[i].adv);
		free(tn[i].user);
		free(tn[i].name);
	}
	free(tn);
	free(nodes);
	free(text);
	json_decref(c);
	return ok;
}

int
main(int argc, char **argv)
{
	const char *dir = getenv("WM_CONFORMANCE_DIR"), *baseline = NULL, *write_base = NULL;
	char **passed = NULL;
	size_t npassed = 0, cap = 0;
	int pass[NFOLDERS] = { 0 }, total[NFOLDERS] = { 0 }, f, i, regress = 0;
	struct stat st;

	for (i = 1; i < argc; i++) {
		if (strcmp(argv[i], "-v") == 0)
			verbose = 1;
		else if (strcmp(argv[i], "--case") == 0 && i + 1 < argc)
			only = argv[++i];
		else if (strcmp(argv[i], "--baseline") == 0 && i + 1 < argc)
			baseline = argv[++i];
		else if (strcmp(argv[i], "--write-baseline") == 0 && i + 1 < argc)
			write_base = argv[++i];
		else if (dir == NULL || getenv("WM_CONFORMANCE_DIR") == NULL)
			dir = argv[i];
	}
	if (dir == NULL)
		dir = "../shared/conformance/tailscale-saas";
	if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
		printf("conformance: skipped: %s not found (set WM_CONFORMANCE_DIR)\n", dir);
		return 0;
	}
	for (f = 0; f < NFOLDERS; f++) {
		char sub[4096];
		struct dirent **ents;
		int ne, e;

		snprintf(sub, sizeof(sub), "%s/%s", dir, folders[f]);
		ne = scandir(sub, &ents, NULL, alphasort);
		for (e = 0; e < ne; e++) {
			const char *nm = ents[e]->d_name;
			size_t l = strlen(nm);
			char path[8192], id[512];

			if (l > 5 && strcmp(nm + l - 5, ".json") == 0) {
				snprintf(path, sizeof(path), "%s/%s", sub, nm);
				snprintf(id, sizeof(id), "%s/%.*s", folders[f], (int)(l - 5), nm);
				if (only == NULL || strstr(id, only) != NULL) {
					total[f]++;
					if (run_case(path, id)) {
						pass[f]++;
						if (npassed == cap) {
							cap = cap ? cap * 2 : 256;
							passed = realloc(passed, cap * sizeof(char *));
						}
						passed[npassed++] = strdup(id);
					}
				}
			}
			free(ents[e]);
		}
		if (ne >= 0)
			free(ents);
	}
	printf("conformance: acl=%d/%d policytest=%d/%d routes=%d/%d grant=%d/%d\n",
	    pass[0], total[0], pass[1], total[1], pass[2], total[2], pass[3], total[3]);
	if (write_base != NULL) {
		FILE *fp = fopen(write_base, "w");
		size_t k;

		if (fp == NULL) {
			perror(write_base);
			return 2;
		}
		fprintf(fp, "# Conformance cases that pass; tests/integration/policy_conformance.sh\n"
		    "# fails when one of them stops passing. Regenerate with\n"
		    "# build/release/policy-conformance --write-baseline tests/conformance/baseline.txt\n");
		for (k = 0; k < npassed; k++)
			fprintf(fp, "%s\n", passed[k]);
		fclose(fp);
	}
	if (baseline != NULL) {
		FILE *fp = fopen(baseline, "r");
		char line[512];

		if (fp == NULL) {
			perror(baseline);
			return 2;
		}
		while (fgets(line, sizeof(line), fp) != NULL) {
			size_t k, l = strcspn(line, "\r\n");
			int found = 0;

			line[l] = '\0';
			if (l == 0 || line[0] == '#')
				continue;
			if (only != NULL && strstr(line, only) == NULL)
				continue;
			for (k = 0; k < npassed && !found; k++)
				found = strcmp(passed[k], line) == 0;
			if (!found) {
				printf("REGRESSION %s passed before and fails now\n", line);
				regress = 1;
			}
		}
		fclose(fp);
	}
	for (i = 0; i < (int)npassed; i++)
		free(passed[i]);
	free(passed);
	return regress;
}
