/* SPDX-License-Identifier: MIT */
/*
 * The mapper holds the live view of every node and every open map stream,
 * and turns committed changes into netmap messages. A change is encoded once
 * into a shared, reference-counted buffer and queued on each stream that may
 * see it: O(affected streams), no recomputation per pair. Each stream's queue
 * is bounded; when it overflows it collapses to "send a fresh full map".
 * Full maps are streamed from an immutable snapshot of per-node fragments,
 * so ten thousand streams share one copy of the peer list.
 *
 * Messages are newline-delimited JSON (docs/protocol.md). Versions grow by
 * one per change; a stream may resume from a version still in the ring of
 * recent changes, otherwise it starts with a full map.
 *
 * Threads: every function is thread-safe.
 */
#ifndef WM_MAPPER_H
#define WM_MAPPER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "server/http.h"
#include "server/routes.h"
#include "server/store.h"

struct mapper;

/* Visibility and filters come from the policy engine. NULL functions mean
 * "everyone sees everyone, everything allowed". */
struct mapper_policy_ops {
	bool (*can_see)(void *ctx, int64_t viewer, int64_t peer);
	/* New malloc'd JSON text of the viewer's filter rules. */
	char *(*filter)(void *ctx, int64_t viewer);
	/* Reference counting of ctx: streams that are sending a full map keep
	 * the context they started with. */
	void (*get)(void *ctx);
	void (*put)(void *ctx);
};

struct mapper_config {
	unsigned queue_max;	/* messages per stream before collapsing */
	unsigned ring_size;	/* recent changes kept for resume */
	const char *derp_map_json;	/* raw JSON object or NULL */
	const char *default_filter_json; /* used without a policy */
	const char *dns_json;		/* the "dns" section, raw JSON object or NULL */
	void (*on_offline)(void *ctx, int64_t node_id);	/* last stream closed */
	void *ctx;
};

int mapper_new(const struct mapper_config *cfg, struct mapper **out) WM_MUST_CHECK;
void mapper_free(struct mapper *m);

/* Loading at start: no messages. */
int mapper_load(struct mapper *m, const struct store_node *n) WM_MUST_CHECK;

/* Committed changes. */
void mapper_node_upsert(struct mapper *m, const struct store_node *n);
void mapper_node_remove(struct mapper *m, int64_t id);
/* Replaces the policy hooks (ops NULL: everyone sees everyone). Takes one
 * reference to ctx and drops the one it held. Streams of the nodes listed in
 * `changed` get a fresh full map; all == true sends one to every stream. */
void mapper_set_policy(struct mapper *m, const struct mapper_policy_ops *ops, void *ctx,
		       const int64_t *changed, size_t nchanged, bool all);

/* The listed nodes' filters changed (and nothing else in their maps): each
 * gets a "filter" delta with its new rules, from the current policy. */
void mapper_filter_changed(struct mapper *m, const int64_t *ids, size_t n);
/* Replaces the "dns" section (raw JSON object, copied). When it differs
 * from the current one every stream gets a "dns" delta; returns whether
 * it changed. */
bool mapper_set_dns(struct mapper *m, const char *dns_json);

/* Copies every node; *out is malloc'd (free it). */
int mapper_nodes_copy(struct mapper *m, struct store_node **out, size_t *n) WM_MUST_CHECK;

/* Copies out a node (0 or ERR_NOT_FOUND); *online optional. */
int mapper_node_get(struct mapper *m, int64_t id, struct store_node *out, bool *online);

/* Whether some node has `node_key` as its current node key and has not
 * expired at `now_s` (the embedded relay's admission check). Linear in the
 * number of nodes, a memcmp each; no allocation. */
bool mapper_node_key_known(struct mapper *m, const uint8_t node_key[static KEY_LEN], int64_t now_s);

/* The routes the node serves to its peers now: its exit routes and the
 * subnets it is the primary router for. Returns the count. */
size_t mapper_node_carried(struct mapper *m, int64_t id, struct ip_prefix out[static ROUTES_MAX]);
/* Opens a stream for a node that resumes after `since` (0: full map).
 * Fills the streaming half of a response. */
int mapper_stream_open(struct mapper *m, int64_t node_id, uint64_t since,
		       struct http_response *resp) WM_MUST_CHECK;

/* Queues a keepalive on every stream. */
void mapper_keepalive(struct mapper *m);

/* Ephemeral nodes offline for at least `timeout_ms`: fills up to `max` ids. */
size_t mapper_idle_ephemeral(struct mapper *m, int64_t timeout_ms, int64_t *ids, size_t max);

struct mapper_stats {
	size_t nodes;
	size_t online_nodes;
	size_t streams;
	uint64_t version;
	uint64_t bytes_sent;
	uint64_t full_maps;
	uint64_t deltas;
	uint64_t collapses;
};
void mapper_stats(struct mapper *m, struct mapper_stats *out);

#endif
