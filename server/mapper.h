/* SPDX-License-Identifier: MIT */
/*
 * The mapper holds the live view of every node and every open map stream,
 * and turns committed changes into netmap messages (docs/protocol.md).
 *
 * Versions come from the store: every change is a row of the change log
 * (store.h) and the caller applies it here with the version the store gave
 * it, in version order (the server serialises commit + apply), so a stream
 * never sees a version go down, also across a restart. The mapper keeps a
 * mirror of the retained change log (kind, subject, ids; no message text)
 * and resumes a stream from version V by replaying the changes after V
 * against the current state: each touched peer once, at the version of the
 * last change that touched it, filtered by the viewer's visibility.
 *
 * A change is encoded once into a shared, reference-counted buffer and
 * queued on each stream that may see it. Each stream's queue is bounded;
 * when a reader falls that far behind, its queue is dropped and it resumes
 * by version from the last message it was given (no full map). Full maps
 * are streamed from an immutable snapshot of per-node fragments.
 *
 * Online flags: opening the first or closing the last stream of a node only
 * marks it; mapper_online_collect() (the server calls it every tick) says
 * which published flags differ, the server logs them as one change, and
 * mapper_online_apply() sends them as one message per stream.
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
 * "everyone sees everyone, everything allowed". Visibility is symmetric
 * (can_see(a, b) == can_see(b, a), as in the policy: a may reach b or b
 * may reach a), so a node's peers are also the nodes that see it. */
struct mapper_policy_ops {
	bool (*can_see)(void *ctx, int64_t viewer, int64_t peer);
	/* New malloc'd JSON text of the viewer's filter rules. */
	char *(*filter)(void *ctx, int64_t viewer);
	/* Reference counting of ctx: streams that are sending a full map keep
	 * the context they started with. */
	void (*get)(void *ctx);
	void (*put)(void *ctx);
	/* Optional: the ids `viewer` may see, ascending, in *out (malloc'd,
	 * NULL when none); the count (0 for a viewer the policy does not
	 * know), or -1 (no memory). Lets a policy change compare a viewer's
	 * peers, and a node's change reach the nodes that see it, without a
	 * can_see over every node. */
	ssize_t (*peers)(void *ctx, int64_t viewer, int64_t **out);
};

struct mapper_config {
	unsigned queue_max;	/* messages per stream before it resumes by version */
	uint64_t version;	/* the store's last version */
	uint64_t floor;		/* the change log's retention floor */
	int64_t online_grace_ms;	/* nodes online before a restart stay so this long */
	const char *derp_map_json;	/* raw JSON object or NULL */
	const char *default_filter_json; /* used without a policy */
	const char *dns_json;		/* the "dns" section, raw JSON object or NULL */
	bool shared_primaries;	/* route primaries applied, not elected (below) */
	/* Replicas: online flags are shared. One is cleared only by the server
	 * that holds (or held) the node's stream; flags loaded at start are
	 * another replica's. Without it (SQLite) loaded flags are this
	 * server's, cleared after online_grace_ms without a stream. */
	bool shared_online;
	void (*on_offline)(void *ctx, int64_t node_id);	/* last stream closed */
	void *ctx;
};

/* A growable list of node ids. */
struct mapper_ids {
	int64_t *v;
	size_t n, cap;
};
void mapper_ids_free(struct mapper_ids *l);

int mapper_new(const struct mapper_config *cfg, struct mapper **out) WM_MUST_CHECK;
void mapper_free(struct mapper *m);

/* Loading at start: no messages. `online`: the published flag of the last
 * run (the node stays online for online_grace_ms without a stream). */
int mapper_load(struct mapper *m, const struct store_node *n, bool online) WM_MUST_CHECK;
/* Loading at start: one retained change-log row (version order). */
int mapper_log_load(struct mapper *m, const struct store_change *c) WM_MUST_CHECK;
/* Forgets the log up to `floor` (retention). */
void mapper_log_prune(struct mapper *m, uint64_t floor);
/* Routers (nodes serving routes): their ids, for ROUTES changes at start. */
int mapper_routers(struct mapper *m, struct mapper_ids *out) WM_MUST_CHECK;
/* Nodes that advertise routes (approved or not): their ids. */
int mapper_advertisers(struct mapper *m, struct mapper_ids *out) WM_MUST_CHECK;

/*
 * Committed changes, applied with their store version in version order.
 * Routers whose carried routes changed as a consequence are added to
 * `routers` (may be NULL): the caller logs a STORE_CHANGE_ROUTES change for
 * each and applies it with mapper_routes_apply().
 */
void mapper_node_upsert(struct mapper *m, const struct store_node *n, uint64_t version,
			struct mapper_ids *routers);
/* The payload of a STORE_CHANGE_REMOVED change: who can see the node now.
 * Malloc'd; NULL when out of memory. */
char *mapper_removed_payload(struct mapper *m, int64_t id);
void mapper_node_remove(struct mapper *m, int64_t id, uint64_t version, const char *payload,
			struct mapper_ids *routers);
void mapper_routes_apply(struct mapper *m, int64_t id, uint64_t version);

/*
 * Shared primaries (cfg.shared_primaries: replicas on PostgreSQL). The
 * primary router of each subnet prefix is not chosen by each mapper: the
 * leader replica elects it (mapper_primaries_elect(), from the routers it
 * knows, their online flags and the previous primaries: an online primary
 * stays) and stores it with a ROUTES change for each router whose carried
 * routes change; every replica applies the stored table with
 * mapper_primaries_apply() (the ROUTES change of router `id`), so streams
 * on all of them name the same primary. mapper_primaries_set() loads the
 * table at start (no message).
 */
struct mapper_primary {
	struct ip_prefix p;
	int64_t node;
};
int mapper_primaries_set(struct mapper *m, const struct mapper_primary *v, size_t n)
	WM_MUST_CHECK;
/* 1 with a new table (malloc'd, in *out) and the routers to announce added
 * to `routers`: the old and the new primary of each prefix whose primary
 * changes; 0 when the table stands or no router changed since the last
 * call (unless `force`); or an error. */
int mapper_primaries_elect(struct mapper *m, bool force, struct mapper_primary **out,
			   size_t *nout, struct mapper_ids *routers) WM_MUST_CHECK;
/* Replaces the table (v, n) and applies the ROUTES change of router id. */
void mapper_primaries_apply(struct mapper *m, const struct mapper_primary *v, size_t n,
			    int64_t id, uint64_t version);
/* The payload of a STORE_CHANGE_POLICY change (malloc'd). */
char *mapper_policy_payload(const int64_t *full, size_t nfull, bool all,
			    const int64_t *filter, size_t nfilter, const char *etag);
/* The ETag of the policy a POLICY change's payload names, copied to out:
 * 0, or ERR_NOT_FOUND (none, or longer than outlen). Read without parsing
 * the payload's id lists (the ETag is written last). */
int mapper_policy_payload_etag(const char *payload, char *out, size_t outlen) WM_MUST_CHECK;
/* Bounds of one POLICY change's "vis" lists (docs/protocol.md, "Versions
 * and resume"): peer ids recorded, and viewer x node pairs compared. */
#define MAPPER_POLICY_VIS_MAX 200000
#define MAPPER_POLICY_VIS_WORK ((size_t)64 << 20)
/* The same for replacing the current policy with ops/ctx (NULL: everyone
 * sees everyone), the nodes in `full` being those whose peers change: for
 * each it records the peers that become visible (+id) or invisible (-id)
 * in "vis", so that streams (live or resuming) get deltas instead of a
 * full map; those beyond the bounds stay in "full". Called by the one
 * thread that publishes policy changes, before mapper_set_policy(). */
char *mapper_policy_change(struct mapper *m, const struct mapper_policy_ops *ops, void *ctx,
			   const int64_t *full, size_t nfull, bool all,
			   const int64_t *filter, size_t nfilter, const char *etag);
/* Replaces the policy hooks (ops NULL: everyone sees everyone) and applies
 * the POLICY change: full maps for its "full" nodes (or all), "filter"
 * deltas for its "filter" nodes. Takes one reference to ctx and drops the
 * one it held. Version 0: the policy in force when the server stopped,
 * loaded at start (no change, no message). */
void mapper_set_policy(struct mapper *m, const struct mapper_policy_ops *ops, void *ctx,
		       uint64_t version, const char *payload);

/* Online flags that differ from the published ones, as the payload of a
 * STORE_CHANGE_ONLINE change (malloc'd), or NULL when none do. */
char *mapper_online_collect(struct mapper *m);
void mapper_online_apply(struct mapper *m, uint64_t version, const char *payload,
			 struct mapper_ids *routers);
/* Replicas (shared_online): the nodes with a stream here whose flag is set
 * but was set by another replica (the stream moved here); they are this
 * replica's from now on (the caller records that in the store). */
int mapper_online_claims(struct mapper *m, struct mapper_ids *out) WM_MUST_CHECK;
/* Whether node id's flag is this replica's to clear: yes for the flags it
 * set before a restart (each gets online_grace_ms to come back); no when
 * another replica has taken it over. */
void mapper_online_mine(struct mapper *m, int64_t id, bool mine);

/* Whether dns_json (raw JSON object) differs from the current "dns"
 * section. */
bool mapper_dns_differs(struct mapper *m, const char *dns_json);
/* Applies a DNS change: replaces the "dns" section (copied) and sends
 * every stream a "dns" delta. */
void mapper_set_dns(struct mapper *m, const char *dns_json, uint64_t version);
/* Applies a REPLICAS change: replaces "control_urls" (a JSON array of
 * strings; "[]" leaves it out of full maps) and "derp_map" (copied) and
 * sends every stream one delta carrying both. version 0: only sets them
 * (at start, before any stream). */
void mapper_set_replicas(struct mapper *m, const char *control_urls_json, const char *derp_map_json,
			 uint64_t version);

/* A change of another replica that has nothing to apply here (its own
 * POLICY change, say): its version counts as known from now on, so that a
 * stream that saw it there resumes here by version (the changes after it)
 * instead of getting a full map for an "unknown" version. */
void mapper_version_seen(struct mapper *m, uint64_t version);

/* Copies every node; *out is malloc'd (free it). */
int mapper_nodes_copy(struct mapper *m, struct store_node **out, size_t *n) WM_MUST_CHECK;

/* Every node as the policy compiler sees it (policy/policy.h), copied from
 * what the mapper keeps parsed: names, users, tags and routes in the view's
 * own memory (a few percent of mapper_nodes_copy's bytes, and no parsing),
 * ascending by node id (so a compiled result's node indexes are in id
 * order: its peer lists need no sort by id). Tags as nodeview_tags reads
 * them. Free it with mapper_policy_view_free. */
struct policy_node;
struct mapper_policy_view {
	struct policy_node *pn;
	size_t n;
	char *mem;
	const char **tags;
	struct ip_prefix *routes;
};
int mapper_policy_view(struct mapper *m, struct mapper_policy_view *v) WM_MUST_CHECK;
void mapper_policy_view_free(struct mapper_policy_view *v);

/* Copies out a node (0 or ERR_NOT_FOUND); *online (the published flag)
 * optional. */
int mapper_node_get(struct mapper *m, int64_t id, struct store_node *out, bool *online);

/* Whether some node has `node_key` as its current node key and has not
 * expired at `now_s` (the embedded relay's admission check). */
bool mapper_node_key_known(struct mapper *m, const uint8_t node_key[static KEY_LEN], int64_t now_s);

/* The routes the node serves to its peers now. Returns the count. */
size_t mapper_node_carried(struct mapper *m, int64_t id, struct ip_prefix out[static ROUTES_MAX]);

/* How a stream starts: by the rules of docs/protocol.md. */
enum mapper_start { MAPPER_START_FULL, MAPPER_START_RESUME };
/* Map streams one node may hold at once; one more gets ERR_EXHAUSTED. */
enum { MAPPER_STREAMS_PER_NODE_MAX = 8 };
/* Opens a stream for a node that resumes after `since` (0: full map).
 * Fills the streaming half of a response; *how says which it got.
 * ERR_EXHAUSTED when the node has MAPPER_STREAMS_PER_NODE_MAX open. With
 * `zstd` every piece is one zstd frame (the body is a zstd stream): a
 * message for many streams is compressed once, and so is each block of a
 * full map's peers that a stream sees whole. */
int mapper_stream_open(struct mapper *m, int64_t node_id, uint64_t since, bool zstd,
		       struct http_response *resp, enum mapper_start *how) WM_MUST_CHECK;

/* Ends every stream once its queue is sent (a replica that lost the
 * database sends its clients to another); returns how many. */
size_t mapper_end_streams(struct mapper *m);

/* Queues a keepalive on every stream. */
void mapper_keepalive(struct mapper *m);

/* Ephemeral nodes offline for at least `timeout_ms`: fills up to `max` ids. */
size_t mapper_idle_ephemeral(struct mapper *m, int64_t timeout_ms, int64_t *ids, size_t max);

struct mapper_stats {
	size_t nodes;
	size_t online_nodes;
	size_t streams;
	uint64_t version;
	uint64_t floor;
	size_t log_len;
	uint64_t bytes_sent;
	uint64_t full_maps;
	uint64_t deltas;
	uint64_t collapses;	/* streams that fell behind and resumed by version */
	uint64_t resumes;	/* streams opened by version without a full map */
	uint64_t online_batches;
};
void mapper_stats(struct mapper *m, struct mapper_stats *out);

#endif
