// SPDX-License-Identifier: MIT
/*
 * bench-policy: compiles a generated 200-rule policy over 10,000 nodes of
 * 500 users and prints how long it took (best and median of 5 runs), then
 * how long it takes to build every node's filter JSON and peer list.
 * Policy mix: group -> tag rules with port lists, user -> tag, tag -> tag,
 * autogroup:member -> autogroup:self, `*` -> tag, host and CIDR rules.
 * With --grants the same 200 rules are written as grants (ports in `ip`),
 * every eighth one with an app capability and the CIDR rules with `via`
 * through tagged subnet routers (1 % of the nodes serve 10.K.0.0/16).
 *   bench-policy [--grants] [NODES USERS RULES]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/buf.h"
#include "policy/policy.h"

static double
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static uint64_t rng = 0x9e3779b97f4a7c15ULL;

static uint32_t
rnd(uint32_t n)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return (uint32_t)(rng % n);
}

static int
dcmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

int
main(int argc, char **argv)
{
	bool grants = argc > 1 && strcmp(argv[1], "--grants") == 0;
	int a0 = grants ? 1 : 0;
	size_t nn = argc > a0 + 1 ? strtoul(argv[a0 + 1], NULL, 10) : 10000;
	size_t nu = argc > a0 + 2 ? strtoul(argv[a0 + 2], NULL, 10) : 500;
	size_t nr = argc > a0 + 3 ? strtoul(argv[a0 + 3], NULL, 10) : 200;
	struct ip_prefix *routes = calloc(nn ? nn : 1, sizeof(*routes));
	size_t ntags = 40, ngroups = 50, i, j, total_filters = 0, total_peers = 0;
	struct policy_node *nodes = calloc(nn, sizeof(*nodes));
	char **users = calloc(nu, sizeof(char *)), **tagnames = calloc(ntags, sizeof(char *));
	const char ***ntag = calloc(nn, sizeof(char **));
	struct buf b;
	struct policy_diags d;
	struct policy *p = NULL;
	struct policy_result *r = NULL;
	double t[5], t0, filters_ms, peers_ms;
	int k;

	if (!nodes || !users || !tagnames || !ntag || !routes)
		return 1;
	for (i = 0; i < nu; i++)
		if (asprintf(&users[i], "user%zu@example.com", i) < 0)
			return 1;
	for (i = 0; i < ntags; i++)
		if (asprintf(&tagnames[i], "tag:t%zu", i) < 0)
			return 1;
	for (i = 0; i < nn; i++) {
		nodes[i].id = i + 1;
		nodes[i].ipv4.family = AF_INET;
		nodes[i].ipv4.b[0] = 100;
		nodes[i].ipv4.b[1] = (uint8_t)(64 + (i >> 16));
		nodes[i].ipv4.b[2] = (uint8_t)(i >> 8);
		nodes[i].ipv4.b[3] = (uint8_t)i;
		nodes[i].ipv6.family = AF_INET6;
		memcpy(nodes[i].ipv6.b, "\xfd\x7a\x11\x5c\xa1\xe0", 6);
		nodes[i].ipv6.b[14] = (uint8_t)(i >> 8);
		nodes[i].ipv6.b[15] = (uint8_t)i;
		if (rnd(5) == 0) {	/* 20% tagged, one or two tags */
			size_t nt = 1 + rnd(2);

			ntag[i] = calloc(nt, sizeof(char *));
			for (j = 0; j < nt; j++)
				ntag[i][j] = tagnames[(rnd((uint32_t)ntags) + j) % ntags];
			nodes[i].tags = ntag[i];
			nodes[i].ntags = nt;
		} else {
			nodes[i].user = users[rnd((uint32_t)nu)];
		}
		if (grants && nodes[i].ntags > 0 && rnd(20) == 0) {	/* ~1 %: a subnet router */
			routes[i].addr.family = AF_INET;
			routes[i].addr.b[0] = 10;
			routes[i].addr.b[1] = (uint8_t)rnd(8);
			routes[i].bits = 16;
			nodes[i].routes = &routes[i];
			nodes[i].nroutes = 1;
			nodes[i].advertised = &routes[i];
			nodes[i].nadvertised = 1;
		}
	}
	buf_init(&b, 8 << 20);
	if (buf_printf(&b, "{\"hosts\": {\"lan\": \"10.0.0.0/8\", \"mon\": \"100.64.1.7\"},\n\"groups\": {\n") != 0)
		return 1;
	for (i = 0; i < ngroups; i++) {
		if (buf_printf(&b, "  \"group:g%zu\": [", i) != 0)
			return 1;
		for (j = 0; j < 20; j++)
			if (buf_printf(&b, "%s\"%s\"", j ? ", " : "", users[rnd((uint32_t)nu)]) != 0)
				return 1;
		if (buf_printf(&b, "],\n") != 0)
			return 1;
	}
	if (buf_printf(&b, "},\n\"tagOwners\": {") != 0)
		return 1;
	for (i = 0; i < ntags; i++)
		if (buf_printf(&b, "\"%s\": [\"group:g0\"], ", tagnames[i]) != 0)
			return 1;
	if (buf_printf(&b, "},\n\"%s\": [\n", grants ? "grants" : "acls") != 0)
		return 1;
	for (i = 0; grants && i < nr; i++) {
		const char *tg = tagnames[rnd((uint32_t)ntags)], *tg2 = tagnames[rnd((uint32_t)ntags)];
		int e;

		switch (i % 8) {
		case 0: case 1: case 2:
			e = buf_printf(&b, "{\"src\": [\"group:g%u\", \"group:g%u\"], "
			    "\"dst\": [\"%s\", \"%s\"], \"ip\": [\"22\", \"80\", \"443\", \"8000-8100\"]},\n",
			    rnd((uint32_t)ngroups), rnd((uint32_t)ngroups), tg, tg2);
			break;
		case 3:
			e = buf_printf(&b, "{\"src\": [\"%s\"], \"dst\": [\"%s\"], \"ip\": [\"*\"], "
			    "\"app\": {\"example.com/cap/admin\": [{\"level\": %zu, \"sites\": [\"a\", \"b\"]}]}},\n",
			    users[rnd((uint32_t)nu)], tg, i);
			break;
		case 4:
			e = buf_printf(&b, "{\"src\": [\"%s\"], \"dst\": [\"%s\"], \"ip\": [\"tcp:5432\"]},\n",
			    tg, tg2);
			break;
		case 5:
			e = buf_printf(&b, "{\"src\": [\"autogroup:member\"], \"dst\": [\"autogroup:self\"], "
			    "\"ip\": [\"*\"]},\n{\"src\": [\"autogroup:member\"], \"dst\": [\"%s\"], "
			    "\"ip\": [\"tcp:443\"]},\n", tg);
			break;
		case 6:
			e = buf_printf(&b, "{\"src\": [\"*\"], \"dst\": [\"%s\"], \"ip\": [\"udp:53\", \"tcp:53\"]},\n", tg);
			break;
		default:
			e = buf_printf(&b, "{\"src\": [\"mon\", \"100.64.2.0/24\", \"group:g%u\"], "
			    "\"dst\": [\"10.%u.0.0/16\"], \"ip\": [\"tcp:9100\", \"icmp:*\"], \"via\": [\"%s\"]},\n",
			    rnd((uint32_t)ngroups), rnd(8), tg);
		}
		if (e != 0)
			return 1;
	}
	for (i = 0; !grants && i < nr; i++) {
		const char *tg = tagnames[rnd((uint32_t)ntags)], *tg2 = tagnames[rnd((uint32_t)ntags)];
		int e;

		switch (i % 8) {
		case 0: case 1: case 2:
			e = buf_printf(&b, "{\"action\": \"accept\", \"src\": [\"group:g%u\", \"group:g%u\"], "
			    "\"dst\": [\"%s:22,80,443\", \"%s:8000-8100\"]},\n",
			    rnd((uint32_t)ngroups), rnd((uint32_t)ngroups), tg, tg2);
			break;
		case 3:
			e = buf_printf(&b, "{\"action\": \"accept\", \"src\": [\"%s\"], \"dst\": [\"%s:*\"]},\n",
			    users[rnd((uint32_t)nu)], tg);
			break;
		case 4:
			e = buf_printf(&b, "{\"action\": \"accept\", \"proto\": \"tcp\", \"src\": [\"%s\"], "
			    "\"dst\": [\"%s:5432\"]},\n", tg, tg2);
			break;
		case 5:
			e = buf_printf(&b, "{\"action\": \"accept\", \"src\": [\"autogroup:member\"], "
			    "\"dst\": [\"autogroup:self:*\", \"%s:443\"]},\n", tg);
			break;
		case 6:
			e = buf_printf(&b, "{\"action\": \"accept\", \"src\": [\"*\"], \"dst\": [\"%s:53\"]},\n", tg);
			break;
		default:
			e = buf_printf(&b, "{\"action\": \"accept\", \"src\": [\"mon\", \"100.64.2.0/24\"], "
			    "\"dst\": [\"lan:9100\", \"%s:9100\"]},\n", tg);
		}
		if (e != 0)
			return 1;
	}
	if (buf_printf(&b, "]}\n") != 0)
		return 1;
	policy_diags_init(&d);
	if (policy_load((const char *)b.data, b.len, &p, &d) != 0) {
		fprintf(stderr, "bench policy rejected: %d:%d %s\n", d.v[0].line, d.v[0].col, d.v[0].msg);
		return 1;
	}
	for (k = 0; k < 5; k++) {
		t0 = now_ms();
		r = policy_compile(p, nodes, nn);
		t[k] = now_ms() - t0;
		if (r == NULL)
			return 1;
		if (k < 4)
			policy_result_free(r);
	}
	qsort(t, 5, sizeof(t[0]), dcmp);
	t0 = now_ms();
	for (i = 0; i < nn; i++) {
		json_t *f = policy_result_filter(r, i);

		total_filters += json_array_size(f);
		json_decref(f);
	}
	filters_ms = now_ms() - t0;
	t0 = now_ms();
	for (i = 0; i < nn; i++) {
		size_t *peers = NULL;
		ssize_t np = policy_result_peers(r, i, &peers);

		if (np > 0)
			total_peers += (size_t)np;
		free(peers);
	}
	peers_ms = now_ms() - t0;
	printf("bench-policy:%s nodes=%zu users=%zu rules=%zu compile_ms=%.1f change_fanout_p99_ms=n/a\n",
	    grants ? " grants" : "", nn, nu, nr, t[2]);
	printf("bench-policy: compile_ms best=%.1f median=%.1f; all filters as JSON %.0f ms "
	    "(%zu matches); all peer lists %.0f ms (%zu entries, %.0f per node)\n",
	    t[0], t[2], filters_ms, total_filters, peers_ms, total_peers, (double)total_peers / (double)nn);
	t0 = now_ms();
	{
		struct policy_result *all = policy_compile(NULL, nodes, nn);

		printf("bench-policy: no policy (allow all) compile_ms=%.1f\n", now_ms() - t0);
		policy_result_free(all);
	}
	policy_result_free(r);
	policy_free(p);
	policy_diags_cleanup(&d);
	buf_cleanup(&b);
	for (i = 0; i < nn; i++)
		free(ntag[i]);
	for (i = 0; i < nu; i++)
		free(users[i]);
	for (i = 0; i < ntags; i++)
		free(tagnames[i]);
	free(ntag);
	free(users);
	free(tagnames);
	free(nodes);
	free(routes);
	return 0;
}
