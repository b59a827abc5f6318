// SPDX-License-Identifier: MIT
/*
 * libFuzzer target: the route flags of an `up` request
 * (routes_prefs_from_json, which runs routes_parse_list on each entry) and
 * what follows from them. Invariants: a request either fails with a reason
 * or gives at most ROUTES_MAX_ADVERTISED distinct subnets with clear host
 * bits and no /0; the prefs survive a JSON round trip; the advertised list
 * has the subnets plus two exit routes for an exit node. A JSON array is
 * read as a packet filter's via directives (routes_via_from_filter) and
 * applied to a router's allowed IPs.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "client-agent/routes.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct routes_prefs p, q;
	char why[256];
	json_t *j = json_loadb((const char *)data, size, JSON_DECODE_ANY, NULL), *back, *adv;

	if (j == NULL)
		return 0;
	/* Via directives (a packet filter array) and what they do to a peer's
	 * allowed IPs: never more than asked for, never a crash. */
	if (json_is_array(j)) {
		static struct routes_via v[ROUTES_MAX_VIA];
		struct ip_prefix in[3], out[8];
		struct ip_addr a;
		size_t nv = routes_via_from_filter(j, v, ROUTES_MAX_VIA), n;

		if (nv > ROUTES_MAX_VIA)
			abort();
		for (size_t k = 0; k < nv; k++) {
			if (v[k].nr > ROUTES_MAX_VIA_ROUTERS)
				abort();
			v[k].chosen = v[k].nr ? 0 : -1;
		}
		if (addr_parse("100.64.0.5", &a) != 0 || prefix_parse("100.64.0.5/32", false, &in[0]) != 0 ||
		    prefix_parse("10.1.0.0/16", false, &in[1]) != 0 || prefix_parse("0.0.0.0/0", false, &in[2]) != 0)
			abort();
		n = routes_via_apply(in, 3, v, nv, &a, 1, out, 8);
		if (n > 8)
			abort();
		json_decref(j);
		return 0;
	}
	why[0] = 0;
	if (routes_prefs_from_json(j, &p, why, sizeof(why)) != 0) {
		if (why[0] == 0)
			abort();	/* every refusal says why */
		json_decref(j);
		return 0;
	}
	if (p.nadvertise > ROUTES_MAX_ADVERTISED)
		abort();
	for (size_t i = 0; i < p.nadvertise; i++) {
		struct ip_prefix m = p.advertise[i];

		prefix_mask(&m);
		if (routes_is_exit(&p.advertise[i]) || !addr_equal(&m.addr, &p.advertise[i].addr))
			abort();
		for (size_t k = 0; k < i; k++)
			if (p.advertise[k].bits == p.advertise[i].bits &&
			    addr_equal(&p.advertise[k].addr, &p.advertise[i].addr))
				abort();
	}
	back = routes_prefs_to_json(&p);
	if (back == NULL || routes_prefs_from_json(back, &q, why, sizeof(why)) != 0)
		abort();
	{
		json_t *again = routes_prefs_to_json(&q);

		if (!json_equal(again, back))
			abort();
		json_decref(again);
	}
	adv = routes_advertised_json(&p);
	if (json_array_size(adv) != p.nadvertise + (p.advertise_exit ? 2 : 0))
		abort();
	json_decref(adv);
	json_decref(back);
	json_decref(j);
	return 0;
}
