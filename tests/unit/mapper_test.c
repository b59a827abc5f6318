// SPDX-License-Identifier: MIT
/*
 * server/mapper.c: versions and resume. A mapper is filled as a server does
 * (nodes, then changes applied with store versions), "restarted" (a new
 * mapper loaded from the same nodes and change-log rows) and streams are
 * opened with a version and read through their stream callbacks: the
 * replay is deltas only, in version order, never below the version asked
 * for, never naming what the node may not see; a full map only for 0, an
 * unknown version or one older than the log.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "common/util.h"
#include "policy/policy.h"
#include "server/mapper.h"

enum { V0 = 1000 };

static void
mk_node(struct store_node *n, int64_t id, const char *user)
{
	memset(n, 0, sizeof(*n));
	n->id = id;
	memset(n->machine_key, (int)id, KEY_LEN);
	memset(n->node_key, (int)id + 50, KEY_LEN);
	memset(n->disco_key, (int)id + 100, KEY_LEN);
	snprintf(n->hostname, sizeof(n->hostname), "n%d", (int)id);
	snprintf(n->name, sizeof(n->name), "n%d", (int)id);
	snprintf(n->user, sizeof(n->user), "%s", user);
	snprintf(n->tags, sizeof(n->tags), "[]");
	snprintf(n->endpoints, sizeof(n->endpoints), "[]");
	snprintf(n->routes_advertised, sizeof(n->routes_advertised), "[]");
	snprintf(n->routes_approved, sizeof(n->routes_approved), "[]");
	n->created_at = 1;
}

/* Visibility for the tests: nodes see each other when their users match. */
static struct store_node nodes[8];

static bool
same_user(void *ctx, int64_t viewer, int64_t peer)
{
	(void)ctx;
	return strcmp(nodes[viewer].user, nodes[peer].user) == 0;
}

static const struct mapper_policy_ops by_user = { .can_see = same_user };

/* The policy after the change: 1 no longer sees 2 (nor 2 1), 1 and 4 see
 * each other; filters name the viewer. */
static bool
shifted_see(void *ctx, int64_t viewer, int64_t peer)
{
	int64_t lo = viewer < peer ? viewer : peer, hi = viewer < peer ? peer : viewer;

	if (lo == 1 && hi == 2)
		return false;
	if (lo == 1 && hi == 4)
		return true;
	return same_user(ctx, viewer, peer);
}

static char *
shifted_filter(void *ctx, int64_t viewer)
{
	char t[32];

	(void)ctx;
	snprintf(t, sizeof(t), "[\"f%d\"]", (int)viewer);
	return strdup(t);
}

static const struct mapper_policy_ops shifted = { .can_see = shifted_see, .filter = shifted_filter };

struct out {
	json_t *msgs[64];
	size_t n;
};

static uint64_t cur_version;	/* the mapper's, for the keepalive check */

/* Opens a stream for `id` after `since` and reads what it has now. */
static enum mapper_start
read_stream(struct mapper *m, int64_t id, uint64_t since, struct out *o)
{
	struct http_response resp;
	enum mapper_start how;
	char buf[65536];
	struct buf all;
	ssize_t k;
	char *p, *nl;

	memset(&resp, 0, sizeof(resp));
	memset(o, 0, sizeof(*o));
	ck_assert_int_eq(mapper_stream_open(m, id, since, false, &resp, &how), 0);
	resp.stream_ops->attach(resp.stream_ctx, NULL);
	buf_init(&all, 16 << 20);
	while ((k = resp.stream_ops->read(resp.stream_ctx, buf, sizeof(buf))) > 0)
		ck_assert_int_eq(buf_append(&all, buf, (size_t)k), 0);
	resp.stream_ops->close(resp.stream_ctx);
	p = buf_cstr(&all);
	while ((nl = strchr(p, '\n')) != NULL && o->n < 64) {
		*nl = 0;
		o->msgs[o->n] = json_loads(p, 0, NULL);
		ck_assert_ptr_nonnull(o->msgs[o->n]);
		o->n++;
		p = nl + 1;
	}
	buf_cleanup(&all);
	if (how == MAPPER_START_RESUME) {
		/* a resume ends with a keepalive at the current version */
		ck_assert_uint_ge(o->n, 1);
		ck_assert_str_eq(json_string_value(json_object_get(o->msgs[o->n - 1], "type")),
		    "keepalive");
		ck_assert_uint_eq(json_integer_value(json_object_get(o->msgs[o->n - 1], "version")),
		    (json_int_t)cur_version);
		json_decref(o->msgs[--o->n]);
	}
	return how;
}

static void
out_free(struct out *o)
{
	for (size_t i = 0; i < o->n; i++)
		json_decref(o->msgs[i]);
	o->n = 0;
}

static uint64_t
ver(json_t *m)
{
	return (uint64_t)json_integer_value(json_object_get(m, "version"));
}

/* Applies replayed deltas to a peer table (bit i: peer i) as an agent
 * does: no full map, versions ascending from `since`, peer_added only of a
 * peer the viewer may see now, the filter `filter` at the end. */
static uint64_t
apply(const struct out *o, uint64_t tab, const char *filter, uint64_t since)
{
	uint64_t last = since;
	bool got_filter = false;

	for (size_t i = 0; i < o->n; i++) {
		json_t *x;

		ck_assert_str_eq(json_string_value(json_object_get(o->msgs[i], "type")), "delta");
		ck_assert_uint_gt(ver(o->msgs[i]), since);
		ck_assert_uint_ge(ver(o->msgs[i]), last);
		last = ver(o->msgs[i]);
		if ((x = json_object_get(o->msgs[i], "peer_added")) != NULL ||
		    (x = json_object_get(o->msgs[i], "peer_changed")) != NULL)
			tab |= 1u << json_integer_value(json_object_get(x, "id"));
		else if ((x = json_object_get(o->msgs[i], "peer_removed")) != NULL)
			tab &= ~(1u << json_integer_value(x));
		else if ((x = json_object_get(o->msgs[i], "filter")) != NULL) {
			ck_assert_str_eq(json_string_value(json_array_get(x, 0)), filter);
			got_filter = true;
		}
	}
	ck_assert(got_filter);
	return tab;
}

static struct mapper *
new_mapper(uint64_t version, uint64_t floor)
{
	struct mapper_config mc;
	struct mapper *m;

	memset(&mc, 0, sizeof(mc));
	mc.version = version;
	mc.floor = floor;
	mc.queue_max = 4;
	ck_assert_int_eq(mapper_new(&mc, &m), 0);
	return m;
}

/* The rows a store would hold for the changes applied below. */
static struct store_change rows[16];
static size_t nrows;

static void
row(uint64_t v, int kind, int64_t node, const char *payload)
{
	rows[nrows].version = v;
	rows[nrows].created_at = 1;
	rows[nrows].kind = kind;
	rows[nrows].node_id = node;
	rows[nrows].payload = payload;
	nrows++;
}

START_TEST(test_resume_across_restart)
{
	struct mapper *m, *m2;
	struct out o;
	uint64_t last = 0;
	char *rm;

	nrows = 0;
	for (int i = 1; i <= 5; i++)
		mk_node(&nodes[i], i, i <= 3 ? "alice" : "bob");
	m = new_mapper(V0, V0);
	for (int i = 1; i <= 5; i++)
		ck_assert_int_eq(mapper_load(m, &nodes[i], false), 0);
	mapper_set_policy(m, &by_user, NULL, 0, NULL);
	/* V0+1: node 2 reports endpoints; +2: node 4 (bob) too; +3: 1 and 2
	 * come online; +4: node 3 is deleted; +5: node 2 renamed */
	snprintf(nodes[2].endpoints, sizeof(nodes[2].endpoints), "[\"192.0.2.2:41641\"]");
	mapper_node_upsert(m, &nodes[2], V0 + 1, NULL);
	row(V0 + 1, STORE_CHANGE_NODE, 2, "");
	snprintf(nodes[4].endpoints, sizeof(nodes[4].endpoints), "[\"192.0.2.4:41641\"]");
	mapper_node_upsert(m, &nodes[4], V0 + 2, NULL);
	row(V0 + 2, STORE_CHANGE_NODE, 4, "");
	mapper_online_apply(m, V0 + 3, "{\"on\":[1,2],\"off\":[]}", NULL);
	row(V0 + 3, STORE_CHANGE_ONLINE, 0, "{\"on\":[1,2],\"off\":[]}");
	rm = mapper_removed_payload(m, 3);
	ck_assert_str_eq(rm, "{\"see\":[1,2]}");	/* bob's nodes never saw it */
	mapper_node_remove(m, 3, V0 + 4, rm, NULL);
	row(V0 + 4, STORE_CHANGE_REMOVED, 3, rm);
	snprintf(nodes[2].name, sizeof(nodes[2].name), "ci");
	mapper_node_upsert(m, &nodes[2], V0 + 5, NULL);
	row(V0 + 5, STORE_CHANGE_NODE, 2, "");
	mapper_free(m);

	/* restart: the same nodes and rows, the store's version */
	m2 = new_mapper(V0 + 5, V0);
	for (int i = 1; i <= 5; i++)
		if (i != 3)
			ck_assert_int_eq(mapper_load(m2, &nodes[i], i <= 2), 0);
	for (size_t i = 0; i < nrows; i++)
		ck_assert_int_eq(mapper_log_load(m2, &rows[i]), 0);
	mapper_set_policy(m2, &by_user, NULL, 0, NULL);	/* in force before: no change */
	cur_version = V0 + 5;

	/* node 1 (alice) from V0: deltas only, ascending, its peers only */
	ck_assert_int_eq(read_stream(m2, 1, V0, &o), MAPPER_START_RESUME);
	ck_assert_uint_eq(o.n, 3);
	for (size_t i = 0; i < o.n; i++) {
		const char *t = json_string_value(json_object_get(o.msgs[i], "type"));
		char *txt = json_dumps(o.msgs[i], JSON_COMPACT);

		ck_assert_str_eq(t, "delta");
		ck_assert_uint_gt(ver(o.msgs[i]), V0);
		ck_assert_uint_ge(ver(o.msgs[i]), last);
		last = ver(o.msgs[i]);
		ck_assert_msg(strstr(txt, "\"id\":4") == NULL && strstr(txt, "\"id\":5") == NULL,
		    "bob's node sent to alice: %s", txt);
		free(txt);
	}
	/* online flag of 2 at V0+3, removal of 3 at V0+4, node 2 once (its
	 * endpoints and name, current) at its last change V0+5 */
	ck_assert_uint_eq(ver(o.msgs[0]), V0 + 3);
	ck_assert_ptr_nonnull(json_object_get(o.msgs[0], "online_flags"));
	ck_assert_uint_eq(ver(o.msgs[1]), V0 + 4);
	ck_assert_int_eq(json_integer_value(json_object_get(o.msgs[1], "peer_removed")), 3);
	ck_assert_uint_eq(ver(o.msgs[2]), V0 + 5);
	ck_assert_str_eq(json_string_value(json_object_get(json_object_get(o.msgs[2],
	    "peer_changed"), "name")), "ci");
	ck_assert_str_eq(json_string_value(json_array_get(json_object_get(json_object_get(o.msgs[2],
	    "peer_changed"), "endpoints"), 0)), "192.0.2.2:41641");
	out_free(&o);

	/* node 5 (bob) from V0: node 4's change only; never node 3's removal */
	ck_assert_int_eq(read_stream(m2, 5, V0, &o), MAPPER_START_RESUME);
	ck_assert_uint_eq(o.n, 1);
	ck_assert_uint_eq(ver(o.msgs[0]), V0 + 2);
	ck_assert_int_eq(json_integer_value(json_object_get(json_object_get(o.msgs[0],
	    "peer_changed"), "id")), 4);
	out_free(&o);

	/* current version: nothing; from the middle: only what came after */
	ck_assert_int_eq(read_stream(m2, 1, V0 + 5, &o), MAPPER_START_RESUME);
	ck_assert_uint_eq(o.n, 0);
	ck_assert_int_eq(read_stream(m2, 1, V0 + 4, &o), MAPPER_START_RESUME);
	ck_assert_uint_eq(o.n, 1);
	ck_assert_uint_eq(ver(o.msgs[0]), V0 + 5);
	out_free(&o);

	/* full maps: 0, unknown (newer), older than the log */
	ck_assert_int_eq(read_stream(m2, 1, 0, &o), MAPPER_START_FULL);
	ck_assert_str_eq(json_string_value(json_object_get(o.msgs[0], "type")), "full");
	ck_assert_uint_eq(ver(o.msgs[0]), V0 + 5);
	ck_assert_uint_eq(json_array_size(json_object_get(o.msgs[0], "peers")), 1);	/* alice's 2 */
	out_free(&o);
	ck_assert_int_eq(read_stream(m2, 1, V0 + 99, &o), MAPPER_START_FULL);
	out_free(&o);
	ck_assert_int_eq(read_stream(m2, 1, V0 - 1, &o), MAPPER_START_FULL);
	out_free(&o);
	/* retention moves: V0+2 is now too old */
	mapper_log_prune(m2, V0 + 3);
	ck_assert_int_eq(read_stream(m2, 1, V0 + 2, &o), MAPPER_START_FULL);
	out_free(&o);
	ck_assert_int_eq(read_stream(m2, 1, V0 + 3, &o), MAPPER_START_RESUME);
	ck_assert_uint_eq(o.n, 2);
	out_free(&o);

	/* a policy change that alters peers: node 1 loses 2 and gains 4, node 2
	 * loses 1, node 4 gains 1, node 5 keeps its; resuming across it is
	 * deltas only, live and after a restart */
	{
		struct http_response resp;
		enum mapper_start how;
		char buf[4096];
		ssize_t k;
		struct out lo;
		char *pp;

		/* a live stream of node 2, caught up */
		memset(&resp, 0, sizeof(resp));
		ck_assert_int_eq(mapper_stream_open(m2, 2, V0 + 5, false, &resp, &how), 0);
		ck_assert_int_eq(how, MAPPER_START_RESUME);
		resp.stream_ops->attach(resp.stream_ctx, NULL);
		while ((k = resp.stream_ops->read(resp.stream_ctx, buf, sizeof(buf))) > 0)
			;
		pp = mapper_policy_change(m2, &shifted, NULL, (int64_t[]){ 4, 1, 2 }, 3, false,
		    NULL, 0, "\"e1\"");
		ck_assert_str_eq(pp, "{\"full\":[],\"filter\":[],\"vis\":[[1,-2,4],[2,-1],[4,1]],"
		    "\"etag\":\"\\\"e1\\\"\"}");
		mapper_set_policy(m2, &shifted, NULL, V0 + 6, pp);
		row(V0 + 6, STORE_CHANGE_POLICY, 0, pp);
		cur_version = V0 + 6;
		/* live: node 2 loses node 1, gets its new filter, no full map */
		memset(&lo, 0, sizeof(lo));
		{
			struct buf all;
			char *p, *nl;

			buf_init(&all, 1 << 20);
			while ((k = resp.stream_ops->read(resp.stream_ctx, buf, sizeof(buf))) > 0)
				ck_assert_int_eq(buf_append(&all, buf, (size_t)k), 0);
			for (p = buf_cstr(&all); (nl = strchr(p, '\n')) != NULL && lo.n < 64; p = nl + 1) {
				*nl = 0;
				ck_assert_ptr_nonnull(lo.msgs[lo.n++] = json_loads(p, 0, NULL));
			}
			buf_cleanup(&all);
		}
		resp.stream_ops->close(resp.stream_ctx);
		ck_assert_uint_eq(lo.n, 2);
		ck_assert_str_eq(json_string_value(json_object_get(lo.msgs[0], "type")), "delta");
		ck_assert_uint_eq(ver(lo.msgs[0]), V0 + 6);
		ck_assert_int_eq(json_integer_value(json_object_get(lo.msgs[0], "peer_removed")), 1);
		ck_assert_uint_eq(ver(lo.msgs[1]), V0 + 6);
		ck_assert_str_eq(json_string_value(json_array_get(json_object_get(lo.msgs[1], "filter"),
		    0)), "f2");
		out_free(&lo);
	}
	for (int round = 0; round < 2; round++) {
		struct mapper *mx = m2;
		uint64_t tab;

		if (round == 1) {
			/* the same after a restart from the rows */
			mx = new_mapper(V0 + 6, V0);
			for (int i = 1; i <= 5; i++)
				if (i != 3)
					ck_assert_int_eq(mapper_load(mx, &nodes[i], false), 0);
			for (size_t i = 0; i < nrows; i++)
				ck_assert_int_eq(mapper_log_load(mx, &rows[i]), 0);
			mapper_set_policy(mx, &shifted, NULL, 0, NULL);
		}
		/* node 1 had {2} at V0+5: now exactly {4}, filter f1 */
		ck_assert_int_eq(read_stream(mx, 1, V0 + 5, &o), MAPPER_START_RESUME);
		tab = apply(&o, 1u << 2, "f1", V0 + 5);
		ck_assert_uint_eq(tab, 1u << 4);
		ck_assert_uint_eq(o.n, 3);	/* filter, peer_removed 2, peer_added 4 */
		out_free(&o);
		/* from V0+3 it had {2,3}: the same end, 2's rename never shown */
		ck_assert_int_eq(read_stream(mx, 1, V0 + 3, &o), MAPPER_START_RESUME);
		for (size_t i = 0; i < o.n; i++)
			ck_assert_ptr_null(json_object_get(o.msgs[i], "peer_changed"));
		tab = apply(&o, (1u << 2) | (1u << 3), "f1", V0 + 3);
		ck_assert_uint_eq(tab, 1u << 4);
		out_free(&o);
		/* node 4 had {5}: now {1,5}; node 2 had {1}: now {} */
		ck_assert_int_eq(read_stream(mx, 4, V0 + 5, &o), MAPPER_START_RESUME);
		ck_assert_uint_eq(apply(&o, 1u << 5, "f4", V0 + 5), (1u << 1) | (1u << 5));
		out_free(&o);
		ck_assert_int_eq(read_stream(mx, 2, V0 + 5, &o), MAPPER_START_RESUME);
		ck_assert_uint_eq(apply(&o, 1u << 1, "f2", V0 + 5), 0);
		out_free(&o);
		/* node 5: its peers did not change, nothing to send */
		ck_assert_int_eq(read_stream(mx, 5, V0 + 5, &o), MAPPER_START_RESUME);
		ck_assert_uint_eq(o.n, 0);
		if (round == 1)
			mapper_free(mx);
	}
	/* a change recorded without peer lists ("all", or beyond the bounds)
	 * is still a full map */
	{
		char *pp = mapper_policy_payload(NULL, 0, true, NULL, 0, "\"e2\"");

		mapper_set_policy(m2, &shifted, NULL, V0 + 7, pp);
		free(pp);
		cur_version = V0 + 7;
	}
	ck_assert_int_eq(read_stream(m2, 1, V0 + 6, &o), MAPPER_START_FULL);
	out_free(&o);
	ck_assert_int_eq(read_stream(m2, 1, V0 + 5, &o), MAPPER_START_FULL);
	out_free(&o);
	free(rm);
	free((char *)rows[nrows - 1].payload);
	mapper_free(m2);
}
END_TEST

/* A stream that does not read while more changes than its queue holds go
 * by resumes by version: no second full map, versions ascending, the final
 * state. */
START_TEST(test_slow_stream_resumes)
{
	struct mapper *m;
	struct http_response resp;
	enum mapper_start how;
	char buf[1 << 16], *p, *nl;
	struct buf all;
	ssize_t k;
	size_t fulls = 0, msgs = 0;
	uint64_t last = 0;
	json_t *final = NULL;

	for (int i = 1; i <= 2; i++)
		mk_node(&nodes[i], i, "alice");
	m = new_mapper(V0, V0);
	for (int i = 1; i <= 2; i++)
		ck_assert_int_eq(mapper_load(m, &nodes[i], false), 0);
	memset(&resp, 0, sizeof(resp));
	ck_assert_int_eq(mapper_stream_open(m, 1, 0, false, &resp, &how), 0);
	resp.stream_ops->attach(resp.stream_ctx, NULL);
	buf_init(&all, 16 << 20);
	/* the full map, then 20 changes with a queue of 4, unread */
	while ((k = resp.stream_ops->read(resp.stream_ctx, buf, sizeof(buf))) > 0)
		ck_assert_int_eq(buf_append(&all, buf, (size_t)k), 0);
	for (int i = 0; i < 20; i++) {
		snprintf(nodes[2].endpoints, sizeof(nodes[2].endpoints), "[\"192.0.2.2:%d\"]", 40000 + i);
		mapper_node_upsert(m, &nodes[2], V0 + 1 + (uint64_t)i, NULL);
	}
	while ((k = resp.stream_ops->read(resp.stream_ctx, buf, sizeof(buf))) > 0)
		ck_assert_int_eq(buf_append(&all, buf, (size_t)k), 0);
	resp.stream_ops->close(resp.stream_ctx);
	for (p = buf_cstr(&all); (nl = strchr(p, '\n')) != NULL; p = nl + 1) {
		json_t *j;

		*nl = 0;
		ck_assert_ptr_nonnull(j = json_loads(p, 0, NULL));
		ck_assert_uint_ge(ver(j), last);
		last = ver(j);
		if (strcmp(json_string_value(json_object_get(j, "type")), "full") == 0)
			fulls++;
		if (json_object_get(j, "peer_changed")) {
			json_decref(final);
			final = json_incref(json_object_get(j, "peer_changed"));
		}
		msgs++;
		json_decref(j);
	}
	buf_cleanup(&all);
	ck_assert_uint_eq(fulls, 1);
	ck_assert_uint_lt(msgs, 20);	/* coalesced */
	ck_assert_uint_eq(last, V0 + 20);
	ck_assert_ptr_nonnull(final);
	ck_assert_str_eq(json_string_value(json_array_get(json_object_get(final, "endpoints"), 0)),
	    "192.0.2.2:40019");
	json_decref(final);
	mapper_free(m);
}
END_TEST

/* A REPLICAS change: full maps carry "control_urls" only when there are
 * some, and "derp_map"; every stream gets one delta with both; a stream
 * resuming from before it gets that delta with the current lists. */
START_TEST(test_replicas_change)
{
	struct mapper *m;
	struct out o, live;
	struct http_response resp;
	enum mapper_start how;
	char buf[4096];
	ssize_t k;
	json_t *d;

	mk_node(&nodes[1], 1, "alice");
	m = new_mapper(V0, V0);
	ck_assert_int_eq(mapper_load(m, &nodes[1], false), 0);
	mapper_set_replicas(m, "[]", "{\"Regions\":{}}", 0);	/* at start: nothing logged */
	cur_version = V0;
	ck_assert_int_eq(read_stream(m, 1, 0, &o), MAPPER_START_FULL);
	ck_assert_ptr_null(json_object_get(o.msgs[0], "control_urls"));
	out_free(&o);
	/* a live stream, then the change */
	memset(&resp, 0, sizeof(resp));
	ck_assert_int_eq(mapper_stream_open(m, 1, V0, false, &resp, &how), 0);
	resp.stream_ops->attach(resp.stream_ctx, NULL);
	while ((k = resp.stream_ops->read(resp.stream_ctx, buf, sizeof(buf))) > 0)
		;
	mapper_set_replicas(m, "[\"https://c1\",\"https://c2\"]",
	    "{\"Regions\":{\"901\":{\"RegionID\":901}}}", V0 + 1);
	cur_version = V0 + 1;
	k = resp.stream_ops->read(resp.stream_ctx, buf, sizeof(buf) - 1);
	ck_assert_int_gt(k, 0);
	buf[k] = 0;
	d = json_loads(buf, JSON_DISABLE_EOF_CHECK, NULL);
	ck_assert_ptr_nonnull(d);
	ck_assert_uint_eq(ver(d), V0 + 1);
	ck_assert_str_eq(json_string_value(json_array_get(json_object_get(d, "control_urls"), 1)),
	    "https://c2");
	ck_assert_ptr_nonnull(json_object_get(json_object_get(json_object_get(d, "derp_map"),
	    "Regions"), "901"));
	json_decref(d);
	resp.stream_ops->close(resp.stream_ctx);
	/* resume from before it: the delta; a full map: both sections */
	ck_assert_int_eq(read_stream(m, 1, V0, &live), MAPPER_START_RESUME);
	ck_assert_uint_eq(live.n, 1);
	ck_assert_uint_eq(json_array_size(json_object_get(live.msgs[0], "control_urls")), 2);
	out_free(&live);
	ck_assert_int_eq(read_stream(m, 1, 0, &o), MAPPER_START_FULL);
	ck_assert_uint_eq(json_array_size(json_object_get(o.msgs[0], "control_urls")), 2);
	ck_assert_ptr_nonnull(json_object_get(json_object_get(json_object_get(o.msgs[0],
	    "derp_map"), "Regions"), "901"));
	out_free(&o);
	mapper_free(m);
}
END_TEST

/* Replicas: route primaries are elected by the leader's mapper and applied
 * as stored by every mapper (none chooses its own); online flags set by
 * another replica are not this one's to clear. */
static size_t
carried_has(struct mapper *m, int64_t id, const char *cidr)
{
	struct ip_prefix c[ROUTES_MAX], want;
	size_t n = mapper_node_carried(m, id, c), hit = 0;

	ck_assert_int_eq(prefix_parse(cidr, false, &want), 0);
	for (size_t i = 0; i < n; i++)
		hit += c[i].bits == want.bits && addr_equal(&c[i].addr, &want.addr);
	return hit;
}

static struct mapper *
new_shared_mapper(void)
{
	struct mapper_config mc;
	struct mapper *m;

	memset(&mc, 0, sizeof(mc));
	mc.version = mc.floor = V0;
	mc.queue_max = 4;
	mc.shared_primaries = mc.shared_online = true;
	ck_assert_int_eq(mapper_new(&mc, &m), 0);
	return m;
}

START_TEST(test_shared_primaries)
{
	struct mapper *leader = new_shared_mapper(), *other = new_shared_mapper();
	struct mapper_ids routers = { 0 };
	struct mapper_primary *t = NULL;
	size_t nt = 0;
	char *payload;

	for (int i = 1; i <= 2; i++) {
		mk_node(&nodes[i], i, "alice");
		snprintf(nodes[i].routes_advertised, sizeof(nodes[i].routes_advertised),
		    "[\"10.77.0.0/24\"]");
		snprintf(nodes[i].routes_approved, sizeof(nodes[i].routes_approved),
		    "[\"10.77.0.0/24\"]");
		ck_assert_int_eq(mapper_load(leader, &nodes[i], true), 0);
		ck_assert_int_eq(mapper_load(other, &nodes[i], true), 0);
	}
	/* nothing stored yet: nobody carries the prefix, on either */
	ck_assert_uint_eq(carried_has(leader, 1, "10.77.0.0/24") + carried_has(leader, 2,
	    "10.77.0.0/24") + carried_has(other, 1, "10.77.0.0/24"), 0);
	/* the leader elects node 1 (online, lower id); both apply the table */
	ck_assert_int_eq(mapper_primaries_elect(leader, false, &t, &nt, &routers), 1);
	ck_assert_uint_eq(nt, 1);
	ck_assert_int_eq(t[0].node, 1);
	ck_assert_uint_eq(routers.n, 1);
	ck_assert_int_eq(routers.v[0], 1);
	mapper_primaries_apply(leader, t, nt, 1, V0 + 1);
	mapper_primaries_apply(other, t, nt, 1, V0 + 1);
	ck_assert_uint_eq(carried_has(leader, 1, "10.77.0.0/24"), 1);
	ck_assert_uint_eq(carried_has(other, 1, "10.77.0.0/24"), 1);
	ck_assert_uint_eq(carried_has(other, 2, "10.77.0.0/24"), 0);
	free(t);
	mapper_ids_free(&routers);
	/* the table stands: nothing to do */
	ck_assert_int_eq(mapper_primaries_elect(leader, true, &t, &nt, &routers), 0);
	/* node 1 goes offline (its replica cleared the flag): the other
	 * mapper does not move the primary by itself; the leader elects 2 and
	 * announces both routers */
	payload = strdup("{\"on\":[],\"off\":[1]}");
	mapper_online_apply(leader, V0 + 2, payload, NULL);
	mapper_online_apply(other, V0 + 2, payload, NULL);
	free(payload);
	ck_assert_uint_eq(carried_has(other, 1, "10.77.0.0/24"), 1);
	ck_assert_uint_eq(carried_has(other, 2, "10.77.0.0/24"), 0);
	ck_assert_int_eq(mapper_primaries_elect(leader, false, &t, &nt, &routers), 1);
	ck_assert_int_eq(t[0].node, 2);
	ck_assert_uint_eq(routers.n, 2);
	mapper_primaries_apply(leader, t, nt, routers.v[0], V0 + 3);
	mapper_routes_apply(leader, routers.v[1], V0 + 4);
	mapper_primaries_apply(other, t, nt, routers.v[0], V0 + 3);
	mapper_routes_apply(other, routers.v[1], V0 + 4);
	ck_assert_uint_eq(carried_has(other, 1, "10.77.0.0/24"), 0);
	ck_assert_uint_eq(carried_has(other, 2, "10.77.0.0/24"), 1);
	ck_assert_uint_eq(carried_has(leader, 2, "10.77.0.0/24"), 1);
	free(t);
	mapper_ids_free(&routers);
	/* node 2's flag was loaded (set by another replica): never ours to
	 * clear, however long it has no stream here */
	payload = mapper_online_collect(other);
	ck_assert_ptr_null(payload);
	mapper_free(leader);
	mapper_free(other);
}
END_TEST

/* Another replica's own change that has nothing to apply here (its POLICY
 * change, say) at V0 + 5: a stream that last saw it there resumes here by
 * version, with the changes after it, not with a full map for an "unknown"
 * version (bench-ha: full maps after a kill -9 of a replica). */
START_TEST(test_foreign_version_resumes)
{
	struct mapper *m;
	struct out o;

	mk_node(&nodes[1], 1, "alice");
	mk_node(&nodes[2], 2, "alice");
	m = new_mapper(V0, V0);
	ck_assert_int_eq(mapper_load(m, &nodes[1], false), 0);
	ck_assert_int_eq(mapper_load(m, &nodes[2], false), 0);
	mapper_set_policy(m, &by_user, NULL, 0, NULL);
	cur_version = V0;
	ck_assert_int_eq(read_stream(m, 1, V0 + 5, &o), MAPPER_START_FULL);	/* unknown yet */
	out_free(&o);
	mapper_version_seen(m, V0 + 5);
	cur_version = V0 + 5;
	ck_assert_int_eq(read_stream(m, 1, V0 + 5, &o), MAPPER_START_RESUME);
	ck_assert_uint_eq(o.n, 0);
	mapper_version_seen(m, V0 + 3);	/* never goes back */
	nodes[2].home_derp = 7;
	mapper_node_upsert(m, &nodes[2], V0 + 6, NULL);
	cur_version = V0 + 6;
	ck_assert_int_eq(read_stream(m, 1, V0 + 5, &o), MAPPER_START_RESUME);
	ck_assert_uint_eq(o.n, 1);
	ck_assert_uint_eq(ver(o.msgs[0]), V0 + 6);
	ck_assert_ptr_nonnull(json_object_get(o.msgs[0], "peer_changed"));
	out_free(&o);
	mapper_free(m);
}
END_TEST

/* The peer lists of the test policies (ids with a node in nodes[]). */
static ssize_t
list_peers(bool (*see)(void *, int64_t, int64_t), int64_t viewer, int64_t **out)
{
	int64_t *v = malloc(8 * sizeof(*v));
	ssize_t n = 0;

	ck_assert_ptr_nonnull(v);
	for (int64_t id = 1; id < 8; id++)
		if (nodes[id].id == id && id != viewer && see(NULL, viewer, id))
			v[n++] = id;
	*out = v;
	return n;
}

static ssize_t by_user_peers(void *c, int64_t v, int64_t **o) { (void)c; return list_peers(same_user, v, o); }
static ssize_t shifted_peers(void *c, int64_t v, int64_t **o) { (void)c; return list_peers(shifted_see, v, o); }

/* A policy change computes each viewer's added and removed peers from both
 * policies' peer lists when they can list them (no can_see over every
 * node): the same "vis" as node by node. */
START_TEST(test_policy_change_peer_lists)
{
	static const struct mapper_policy_ops by_user_l = { .can_see = same_user,
		.peers = by_user_peers };
	static const struct mapper_policy_ops shifted_l = { .can_see = shifted_see,
		.filter = shifted_filter, .peers = shifted_peers };
	struct mapper *m;
	char *slow, *fast;

	memset(nodes, 0, sizeof(nodes));
	mk_node(&nodes[1], 1, "alice");
	mk_node(&nodes[2], 2, "alice");
	mk_node(&nodes[4], 4, "bob");
	mk_node(&nodes[5], 5, "bob");
	m = new_mapper(V0, V0);
	for (int id = 1; id < 6; id++)
		if (nodes[id].id != 0)
			ck_assert_int_eq(mapper_load(m, &nodes[id], false), 0);
	mapper_set_policy(m, &by_user, NULL, 0, NULL);
	slow = mapper_policy_change(m, &shifted, NULL, (int64_t[]){ 4, 1, 2, 5 }, 4, false, NULL, 0,
	    "\"e\"");
	mapper_set_policy(m, &by_user_l, NULL, 0, NULL);
	fast = mapper_policy_change(m, &shifted_l, NULL, (int64_t[]){ 4, 1, 2, 5 }, 4, false, NULL,
	    0, "\"e\"");
	ck_assert_ptr_nonnull(slow);
	ck_assert_ptr_nonnull(fast);
	ck_assert_str_eq(slow, "{\"full\":[],\"filter\":[],\"vis\":[[1,-2,4],[2,-1],[4,1],[5]],"
	    "\"etag\":\"\\\"e\\\"\"}");
	ck_assert_str_eq(fast, slow);
	free(slow);
	free(fast);
	mapper_free(m);
}
END_TEST

/* A batch of many online flags (a mass reconnect) is filtered per viewer by
 * its peer list when the policy can list peers: the same message as a
 * can_see per flag. Ids 100.. have no node here (flags of nodes another
 * replica knows first); nobody sees them. */
static bool
user_or_none(void *ctx, int64_t viewer, int64_t peer)
{
	return viewer > 0 && viewer < 8 && peer > 0 && peer < 8 && nodes[peer].id == peer &&
	    same_user(ctx, viewer, peer);
}

static ssize_t user_or_none_peers(void *c, int64_t v, int64_t **o) { (void)c; return list_peers(user_or_none, v, o); }

static char *
online_batch_seen_by(const struct mapper_policy_ops *ops, int64_t viewer)
{
	struct mapper *m = new_mapper(V0, V0);
	struct http_response resp;
	enum mapper_start how;
	char buf[65536], *txt;
	struct buf p;
	ssize_t k;
	json_t *d;

	for (int id = 1; id < 6; id++)
		if (nodes[id].id != 0)
			ck_assert_int_eq(mapper_load(m, &nodes[id], false), 0);
	mapper_set_policy(m, ops, NULL, 0, NULL);
	/* the viewer's live stream, caught up */
	memset(&resp, 0, sizeof(resp));
	ck_assert_int_eq(mapper_stream_open(m, viewer, V0, false, &resp, &how), 0);
	resp.stream_ops->attach(resp.stream_ctx, NULL);
	while ((k = resp.stream_ops->read(resp.stream_ctx, buf, sizeof(buf))) > 0)
		;
	buf_init(&p, 1 << 20);
	ck_assert_int_eq(buf_printf(&p, "{\"on\":[1,2,4"), 0);
	for (int id = 100; id < 180; id++)
		ck_assert_int_eq(buf_printf(&p, ",%d", id), 0);
	ck_assert_int_eq(buf_printf(&p, "],\"off\":[5,180,181]}"), 0);
	mapper_online_apply(m, V0 + 1, buf_cstr(&p), NULL);
	buf_cleanup(&p);
	k = resp.stream_ops->read(resp.stream_ctx, buf, sizeof(buf) - 1);
	ck_assert_int_gt(k, 0);
	buf[k] = 0;
	d = json_loads(buf, JSON_DISABLE_EOF_CHECK, NULL);
	ck_assert_ptr_nonnull(d);
	ck_assert_uint_eq(ver(d), V0 + 1);
	txt = json_dumps(json_object_get(d, "online_flags"), JSON_COMPACT);
	json_decref(d);
	resp.stream_ops->close(resp.stream_ctx);
	mapper_free(m);
	return txt;
}

START_TEST(test_online_batch_by_peers)
{
	static const struct mapper_policy_ops per_flag = { .can_see = user_or_none };
	static const struct mapper_policy_ops by_peers = { .can_see = user_or_none,
		.peers = user_or_none_peers };
	char *slow, *fast;

	memset(nodes, 0, sizeof(nodes));
	mk_node(&nodes[1], 1, "alice");
	mk_node(&nodes[2], 2, "alice");
	mk_node(&nodes[4], 4, "bob");
	mk_node(&nodes[5], 5, "bob");
	slow = online_batch_seen_by(&per_flag, 4);
	fast = online_batch_seen_by(&by_peers, 4);
	ck_assert_str_eq(slow, "{\"on\":[],\"off\":[5]}");
	ck_assert_str_eq(fast, slow);
	free(slow);
	free(fast);
	slow = online_batch_seen_by(&per_flag, 1);
	fast = online_batch_seen_by(&by_peers, 1);
	ck_assert_str_eq(slow, "{\"on\":[2],\"off\":[]}");
	ck_assert_str_eq(fast, slow);
	free(slow);
	free(fast);
}
END_TEST

/* The policy compiler's view: what the mapper keeps parsed per node, copied
 * with the node's changes; tags capped as the compiler expects them. */
static const struct policy_node *
view_node(const struct mapper_policy_view *v, int64_t id)
{
	for (size_t i = 0; i < v->n; i++)
		if (v->pn[i].id == (uint64_t)id)
			return &v->pn[i];
	return NULL;
}

START_TEST(test_policy_view)
{
	struct mapper_policy_view v;
	const struct policy_node *p;
	struct mapper *m;
	char t[ADDR_STR_MAX];

	memset(nodes, 0, sizeof(nodes));
	mk_node(&nodes[1], 1, "alice");
	mk_node(&nodes[2], 2, "bob");
	snprintf(nodes[2].tags, sizeof(nodes[2].tags), "[\"tag:a\",\"tag:b\"]");
	mk_node(&nodes[3], 3, "carol");
	snprintf(nodes[3].routes_advertised, sizeof(nodes[3].routes_advertised),
	    "[\"10.0.0.0/24\",\"0.0.0.0/0\"]");
	snprintf(nodes[3].routes_approved, sizeof(nodes[3].routes_approved), "[\"10.0.0.0/24\"]");
	mk_node(&nodes[4], 4, "dave");
	snprintf(nodes[4].tags, sizeof(nodes[4].tags), "[\"tag:%070d\",5,\"tag:c\"]", 7);
	ck_assert_int_eq(addr_parse("100.64.0.3", &nodes[3].ipv4), 0);
	m = new_mapper(V0, V0);
	for (int i = 1; i <= 4; i++)
		ck_assert_int_eq(mapper_load(m, &nodes[i], false), 0);
	ck_assert_int_eq(mapper_policy_view(m, &v), 0);
	ck_assert_uint_eq(v.n, 4);
	p = view_node(&v, 1);
	ck_assert_str_eq(p->name, "n1");
	ck_assert_str_eq(p->user, "alice");
	ck_assert_uint_eq(p->ntags, 0);
	ck_assert_uint_eq(p->nadvertised, 0);
	p = view_node(&v, 2);
	ck_assert_ptr_null(p->user);	/* tagged: the tags are its identity */
	ck_assert_uint_eq(p->ntags, 2);
	ck_assert_str_eq(p->tags[0], "tag:a");
	ck_assert_str_eq(p->tags[1], "tag:b");
	p = view_node(&v, 3);
	ck_assert_uint_eq(p->nadvertised, 2);
	ck_assert_uint_eq(p->nroutes, 1);
	prefix_fmt(t, &p->routes[0]);
	ck_assert_str_eq(t, "10.0.0.0/24");
	prefix_fmt(t, &p->advertised[1]);
	ck_assert_str_eq(t, "0.0.0.0/0");
	addr_fmt(t, &p->ipv4);
	ck_assert_str_eq(t, "100.64.0.3");
	p = view_node(&v, 4);	/* 64 bytes at most, up to the first non-string */
	ck_assert_uint_eq(p->ntags, 1);
	ck_assert_uint_eq(strlen(p->tags[0]), 64);
	mapper_policy_view_free(&v);
	/* a change of tags and routes, a removal: the next view has them */
	snprintf(nodes[2].tags, sizeof(nodes[2].tags), "[\"tag:c\"]");
	mapper_node_upsert(m, &nodes[2], V0 + 1, NULL);
	snprintf(nodes[3].routes_approved, sizeof(nodes[3].routes_approved),
	    "[\"0.0.0.0/0\",\"10.0.0.0/24\"]");
	mapper_node_upsert(m, &nodes[3], V0 + 2, NULL);
	mapper_node_remove(m, 1, V0 + 3, NULL, NULL);
	ck_assert_int_eq(mapper_policy_view(m, &v), 0);
	ck_assert_uint_eq(v.n, 3);
	ck_assert_ptr_null(view_node(&v, 1));
	p = view_node(&v, 2);
	ck_assert_uint_eq(p->ntags, 1);
	ck_assert_str_eq(p->tags[0], "tag:c");
	ck_assert_uint_eq(view_node(&v, 3)->nroutes, 2);
	mapper_policy_view_free(&v);
	mapper_free(m);
}
END_TEST

/* A replica reads the ETag a POLICY change names without parsing its id
 * lists (replica.c: a change naming the installed policy is not reloaded). */
START_TEST(test_policy_payload_etag)
{
	int64_t full[] = { 1, 2 }, filter[] = { 3 };
	char *p, e[48];

	p = mapper_policy_payload(full, 2, false, filter, 1, "\"ab12\"");
	ck_assert_ptr_nonnull(p);
	ck_assert_int_eq(mapper_policy_payload_etag(p, e, sizeof(e)), 0);
	ck_assert_str_eq(e, "\"ab12\"");
	ck_assert_int_eq(mapper_policy_payload_etag(p, e, 6), ERR_NOT_FOUND);	/* too long */
	ck_assert_int_eq(mapper_policy_payload_etag(p, e, 7), 0);
	free(p);
	p = mapper_policy_payload(NULL, 0, true, NULL, 0, "W/\"9\"");
	ck_assert_int_eq(mapper_policy_payload_etag(p, e, sizeof(e)), 0);
	ck_assert_str_eq(e, "W/\"9\"");
	free(p);
	p = mapper_policy_payload(full, 2, false, NULL, 0, NULL);	/* no policy */
	ck_assert_int_eq(mapper_policy_payload_etag(p, e, sizeof(e)), ERR_NOT_FOUND);
	free(p);
	ck_assert_int_eq(mapper_policy_payload_etag("{\"all\":true,\"etag\":7}", e, sizeof(e)),
	    ERR_NOT_FOUND);
	ck_assert_int_eq(mapper_policy_payload_etag("", e, sizeof(e)), ERR_NOT_FOUND);
}
END_TEST

Suite *
mapper_suite(void)
{
	Suite *s = suite_create("mapper");
	TCase *tc = tcase_create("mapper");

	tcase_add_test(tc, test_resume_across_restart);
	tcase_add_test(tc, test_slow_stream_resumes);
	tcase_add_test(tc, test_replicas_change);
	tcase_add_test(tc, test_shared_primaries);
	tcase_add_test(tc, test_foreign_version_resumes);
	tcase_add_test(tc, test_policy_change_peer_lists);
	tcase_add_test(tc, test_online_batch_by_peers);
	tcase_add_test(tc, test_policy_view);
	tcase_add_test(tc, test_policy_payload_etag);
	suite_add_tcase(s, tc);
	return s;
}
