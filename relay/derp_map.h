/* SPDX-License-Identifier: MIT */
/*
 * DERP map: the regions and relay nodes a tailnet uses, in the JSON shape of
 * Tailscale's DERP map files (`Regions` keyed by decimal region ID, each with
 * RegionID, RegionCode, RegionName, Nodes: [{Name, RegionID, HostName, IPv4,
 * IPv6, DERPPort, STUNPort, STUNOnly, CanPort80, InsecureForTests, ...}]).
 * Member names match case-insensitively, as Go's decoder does. Loaded by
 * `wiremesh-server serve --derp-map FILE`, sent in every netmap, and read by
 * the agent's netcheck and DERP client.
 */
#ifndef WM_DERP_MAP_H
#define WM_DERP_MAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "common/err.h"

enum {
	DERP_MAP_MAX_BYTES = 1 << 20,
	DERP_MAP_MAX_REGIONS = 1000,
	DERP_MAP_MAX_NODES = 64,	/* per region */
	DERP_MAP_NAME_MAX = 64,
	DERP_MAP_HOST_MAX = 254,
	DERP_MAP_ADDR_MAX = 64,
	DERP_DEFAULT_DERP_PORT = 443,
	DERP_DEFAULT_STUN_PORT = 3478,
};

struct derp_node {
	char name[DERP_MAP_NAME_MAX];
	int region_id;
	char host[DERP_MAP_HOST_MAX + 1];
	char ipv4[DERP_MAP_ADDR_MAX];	/* "" = use DNS, "none" = disabled */
	char ipv6[DERP_MAP_ADDR_MAX];
	int derp_port;			/* as written: 0 means 443 */
	int stun_port;			/* as written: 0 means 3478, -1 none */
	bool stun_only;
	bool can_port80;
	bool insecure_for_tests;
	char stun_test_ip[DERP_MAP_ADDR_MAX];
};

struct derp_region {
	int id;
	char code[DERP_MAP_NAME_MAX];
	char name[DERP_MAP_NAME_MAX * 2];
	bool no_measure_no_home;
	double score;			/* HomeParams.RegionScore, 0 when unset */
	struct derp_node *nodes;
	size_t nnodes;
};

struct derp_map {
	struct derp_region *regions;	/* sorted by id */
	size_t nregions;
	bool omit_default_regions;
};

/*
 * Parses a DERP map. On error fills `why` (field and reason) and returns
 * ERR_INVALID or ERR_TOO_LARGE. *out is a new map the caller frees.
 */
int derp_map_parse(const char *text, size_t len, struct derp_map **out,
		   char *why, size_t whylen) WM_MUST_CHECK;
/* Reads and parses a file (at most DERP_MAP_MAX_BYTES). */
int derp_map_load(const char *path, struct derp_map **out, char *why, size_t whylen) WM_MUST_CHECK;
/* The map in the same JSON shape (for netmaps). New reference, NULL on ENOMEM. */
json_t *derp_map_to_json(const struct derp_map *m);
/* Region by ID; borrowed from m, NULL if absent. */
const struct derp_region *derp_map_region(const struct derp_map *m, int id);
/* Effective ports: DERP 0 -> 443; STUN 0 -> 3478, negative -> 0 (none). */
uint16_t derp_node_derp_port(const struct derp_node *n);
uint16_t derp_node_stun_port(const struct derp_node *n);
void derp_map_free(struct derp_map *m);

#endif
