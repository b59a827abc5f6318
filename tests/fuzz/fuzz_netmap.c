// SPDX-License-Identifier: MIT
/*
 * Fuzzes the agent's reading of map-stream messages from the control
 * server: peer objects (full maps and peer_added/peer_changed deltas), the
 * self node's addresses and the endpoint and prefix lists inside them, and
 * the control servers' URLs ("control_urls").
 * Includes the agent's .c files to reach its static parsers.
 */
#include "client-agent/agent.c"
#include "client-agent/agent_cmd.c"
#include "client-agent/agent_login.c"
#include "client-agent/agent_disco.c"
#include "client-agent/agent_netmap.c"
#include "client-agent/agent_dns.c"
#include "client-agent/agent_routes.c"
#include "client-agent/control_client.c"
#include "client-agent/netcfg.c"

static void
peer(json_t *v)
{
	struct apeer p;

	if (parse_peer(v, &p) == 0 && p.nallowed > MAX_ALLOWED)
		__builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	json_t *j = json_loadb((const char *)data, size, 0, NULL), *v;
	struct ip_prefix pf[4];
	size_t i, n;

	if (j == NULL)
		return 0;
	json_array_foreach(json_object_get(j, "peers"), i, v)
		peer(v);
	peer(json_object_get(j, "peer_added"));
	peer(json_object_get(j, "peer_changed"));
	if (parse_prefixes(json_object_get(json_object_get(j, "self"), "addresses"), pf, 4, &n) == 0 &&
	    n > 4)
		__builtin_trap();
	{	/* the replicas' URLs (full maps and REPLICAS deltas) */
		static char urls[AGENT_LEARNED_MAX][CONTROL_URL_MAX];

		if (learned_from_json(json_object_get(j, "control_urls"), urls) > AGENT_LEARNED_MAX)
			__builtin_trap();
	}
	json_decref(j);
	return 0;
}
