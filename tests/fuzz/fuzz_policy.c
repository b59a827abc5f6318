// SPDX-License-Identifier: MIT
/* libFuzzer target: the whole policy path — load, tests, compile over a small
 * fixed tailnet, filter JSON, explain, auto-approval. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "policy/policy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *t_srv[] = { "tag:server" }, *t_two[] = { "tag:a", "tag:b" };

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct policy_node n[5];
	struct ip_prefix routes[2];
	struct policy_diags d;
	struct policy *p = NULL;
	struct policy_result *r;
	struct buf b;
	size_t i;

	policy_diags_init(&d);
	if (policy_load((const char *)data, size, &p, &d) != 0) {
		if (p != NULL || d.n == 0)
			__builtin_trap();
		policy_diags_cleanup(&d);
		return 0;
	}
	memset(n, 0, sizeof(n));
	n[0].id = 1; n[0].user = "alice";
	n[1].id = 2; n[1].user = "bob@example.com";
	n[2].id = 3; n[2].tags = t_srv; n[2].ntags = 1;
	n[3].id = 4; n[3].tags = t_two; n[3].ntags = 2;
	n[4].id = 5; n[4].user = "alice";
	for (i = 0; i < 5; i++) {
		n[i].ipv4.family = AF_INET;
		n[i].ipv4.b[0] = 100; n[i].ipv4.b[1] = 64; n[i].ipv4.b[3] = (uint8_t)(i + 1);
	}
	if (addr_parse("fd7a:115c:a1e0::1", &n[0].ipv6) != 0 ||
	    prefix_parse("10.0.0.0/8", false, &routes[0]) != 0 ||
	    prefix_parse("0.0.0.0/0", false, &routes[1]) != 0)
		__builtin_trap();
	n[2].routes = routes;
	n[2].nroutes = 2;
	(void)policy_run_tests(p, NULL, 0, &d);
	(void)policy_run_tests(p, n, 5, &d);
	if ((r = policy_compile(p, n, 5)) != NULL) {
		for (i = 0; i < 5; i++) {
			json_t *f = policy_result_filter(r, i);
			size_t *peers = NULL;

			json_decref(f);
			if (policy_result_peers(r, i, &peers) > 0)
				free(peers);
			(void)policy_result_hash(r, i);
		}
		policy_result_free(r);
	}
	buf_init(&b, 4096);
	(void)policy_explain(p, "alice@", "tag:server:22", NULL, &b);
	(void)policy_auto_approves(p, &n[2], &routes[0]);
	buf_cleanup(&b);
	policy_free(p);
	policy_diags_cleanup(&d);
	return 0;
}
