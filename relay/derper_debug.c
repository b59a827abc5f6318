/* SPDX-License-Identifier: MIT */
/*
 * `wiremesh-derper debug ...`: diagnostics built on the agent-side library,
 * used by operators and by the integration tests:
 *   stun HOST:PORT                one STUN binding; prints the mapped address
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client-agent/stun_client.h"
#include "common/addr.h"
#include "common/log.h"

int derper_debug_main(int argc, char **argv);

static int debug_stun(int argc, char **argv)
{
	struct endpoint srv, mapped;
	char s[ADDR_STR_MAX];
	int64_t rtt;
	int r;

	if (argc != 2 || endpoint_parse(argv[1], &srv) != 0) {
		fprintf(stderr, "usage: wiremesh-derper debug stun HOST:PORT\n");
		return 2;
	}
	r = stun_client_query(-1, &srv, 3000, &mapped, &rtt);
	if (r != 0) {
		fprintf(stderr, "stun: %s\n", err_str(r));
		return 1;
	}
	endpoint_fmt(s, &mapped);
	printf("mapped=%s rtt_us=%lld\n", s, (long long)rtt);
	return 0;
}

int derper_debug_main(int argc, char **argv)
{
	log_set_prefix("derper-debug");
	if (argc >= 2 && strcmp(argv[1], "stun") == 0)
		return debug_stun(argc - 1, argv + 1);
	fprintf(stderr, "usage: wiremesh-derper debug {stun} ...\n");
	return 2;
}
