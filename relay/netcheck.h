/* SPDX-License-Identifier: MIT */
/*
 * netcheck: what the network lets this node do. Sends STUN binding requests
 * to the first two STUN-capable nodes of every region in the DERP map (three
 * tries each, at 0, 100 and 200 ms, 3 s budget), then reports: UDP works,
 * the public IPv4 endpoint, MappingVariesByDestIP (true when two STUN
 * servers at different addresses saw different mappings: a symmetric,
 * "hard" NAT; unknown with fewer than two), per-region latency by STUN and
 * by HTTPS (TLS dial, then time `GET /derp/probe`), and the preferred
 * (lowest-latency, score-weighted) region. Nodes with an IPv6 address in
 * the map are asked over IPv6 too (IPv6: the public IPv6 endpoint).
 * netcheck_format says why a field is empty (UDP blocked, no server with
 * IPv6, fewer than two servers answered, no relay reachable).
 *
 * Two ways to run it. netcheck_run() is blocking and owns a UDP socket. The
 * agent, whose WireGuard socket must carry the probes so that the mapping
 * found is the one peers will use, drives it step by step instead:
 * netcheck_begin(), send each netcheck_next_probe() datagram from its socket,
 * hand STUN replies (stun_looks_like()) to netcheck_feed(), and call
 * netcheck_finish() once netcheck_done() or the deadline says so.
 */
#ifndef WM_NETCHECK_H
#define WM_NETCHECK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/addr.h"
#include "common/buf.h"
#include "common/err.h"
#include "relay/derp_map.h"
#include "relay/stun.h"

enum {
	NETCHECK_MAX_REGIONS = 64,
	NETCHECK_STUN_TIMEOUT_MS = 3000,
	NETCHECK_HTTPS_TIMEOUT_MS = 2000,
	NETCHECK_TRIES = 3,
};

enum netcheck_tristate { NETCHECK_UNKNOWN = -1, NETCHECK_FALSE = 0, NETCHECK_TRUE = 1 };

struct netcheck_opts {
	uint16_t local_port;		/* netcheck_run's socket; 0 = ephemeral */
	int timeout_ms;			/* STUN phase; 0 = NETCHECK_STUN_TIMEOUT_MS */
	bool skip_https;		/* do not measure HTTPS latency */
};

struct netcheck_region_result {
	int region_id;
	int64_t stun_us;		/* best STUN round trip, -1 none */
	int64_t https_us;		/* HTTPS /derp/probe round trip, -1 none */
};

struct netcheck_report {
	bool udp;			/* at least one STUN reply */
	bool ipv4;			/* a reply over IPv4 */
	struct endpoint global_v4;	/* from the first IPv4 reply */
	bool ipv6;			/* a reply over IPv6 */
	struct endpoint global_v6;	/* from the first IPv6 reply */
	size_t v4_probed, v6_probed;	/* STUN servers asked over each family */
	size_t v4_answered;		/* of those, how many answered over IPv4 */
	enum netcheck_tristate mapping_varies;
	int preferred_region;		/* 0: none */
	size_t nregions;
	struct netcheck_region_result regions[NETCHECK_MAX_REGIONS];
};

struct netcheck;

/* Plans the probes for `map` (borrowed until netcheck_free). NULL on ENOMEM. */
struct netcheck *netcheck_begin(const struct derp_map *map, const struct netcheck_opts *opts);
/*
 * Next datagram due now: fills dst and pkt (STUN_BINDING_REQUEST_LEN bytes)
 * and returns true, or false when nothing is due; *next_ms (may be NULL) is
 * how long until something is, or -1 if nothing more will be.
 */
bool netcheck_next_probe(struct netcheck *nc, struct endpoint *dst,
			 uint8_t pkt[static STUN_BINDING_REQUEST_LEN], int *next_ms);
/* A datagram from `from`; returns true if it answered one of our probes. */
bool netcheck_feed(struct netcheck *nc, const struct endpoint *from, const uint8_t *pkt, size_t n);
/* Every probe answered or the STUN budget spent. */
bool netcheck_done(const struct netcheck *nc);
/* Builds the report (runs the HTTPS probes unless skipped; blocking). */
void netcheck_finish(struct netcheck *nc, struct netcheck_report *out);
void netcheck_free(struct netcheck *nc);

/* Blocking: all of the above with its own UDP socket. 0, ERR_IO, ERR_NOMEM. */
int netcheck_run(const struct derp_map *map, const struct netcheck_opts *opts,
		 struct netcheck_report *out) WM_MUST_CHECK;

/* Lowest latency (STUN, else HTTPS) weighted by the region's score; 0 if none. */
int netcheck_pick_preferred(const struct netcheck_report *r, const struct derp_map *map);

/*
 * The `wiremesh netcheck` text:
 *   * UDP: true
 *   * IPv4: yes, 198.51.100.7:41641
 *   * MappingVariesByDestIP: false
 *   * DERP latency:
 *     - lon: 12ms
 * (regions by latency; region code, else ID). netcheck_format_json() gives
 * {"UDP","IPv4","GlobalV4","MappingVariesByDestIP","PreferredDERP",
 *  "RegionLatency":{"id":ns}, "RegionSTUNLatency", "RegionHTTPSLatency"}.
 */
int netcheck_format(const struct netcheck_report *r, const struct derp_map *map,
		    struct buf *out) WM_MUST_CHECK;
int netcheck_format_json(const struct netcheck_report *r, const struct derp_map *map,
			 struct buf *out) WM_MUST_CHECK;

#endif
