// SPDX-License-Identifier: MIT
/*
 * libFuzzer target: resuming a map stream. The input is a script of
 * changes applied to a mapper (as the server applies committed changes,
 * with store versions from 1001 on), a "restart" (a new mapper loaded from
 * the same nodes and change rows) at a point the script chooses, then a map
 * request body parsed as the server parses it ({"version": V}, anything
 * else) and a stream opened with it for each node and read to its end.
 *
 * Script: bytes up to the first 0xFF, three per change: kind (mod 5: node
 * changed, removed, online batch, policy, restart), node id (mod 8, 1..7),
 * an argument. A policy change switches visibility to one of four rules
 * (argument mod 4: same parity, same residue mod 3, everyone, same half),
 * recorded as the server records it (mapper_policy_change: the peers each
 * node gains and loses; with argument bits 8 and 16 both set, "all"). The
 * rest is the body.
 *
 * Oracles: no crash or sanitizer report; every line parses as JSON; versions
 * never go down; a resumed stream has no full map and no delta at or below
 * the version asked for; no stream adds or changes a peer its viewer cannot
 * see now; and the peer table a node had at the version it asks for (or
 * the full map's), with the stream's deltas applied, is exactly the peers
 * it may see now.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/jsonx.h"
#include "common/log.h"
#include "common/util.h"
#include "server/mapper.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

enum { V0 = 1000, NN = 8 };

static bool
rule_see(void *ctx, int64_t viewer, int64_t peer)
{
	switch (*(const int *)ctx) {
	case 0:
		return (viewer & 1) == (peer & 1);
	case 1:
		return viewer % 3 == peer % 3;
	case 2:
		return true;
	default:
		return (viewer < 4) == (peer < 4);
	}
}

static const struct mapper_policy_ops pol = { .can_see = rule_see };
static const int rules[4] = { 0, 1, 2, 3 };
static int cur_rule;

/* The peers each viewer may see (bit i: node i) after each version. */
static uint8_t truth[130][NN];

static void
set_truth(size_t at, const bool *exists)
{
	for (int a = 1; a < NN; a++) {
		truth[at][a] = 0;
		for (int b = 1; b < NN; b++)
			if (a != b && exists[a] && exists[b] && rule_see((void *)&rules[cur_rule], a, b))
				truth[at][a] |= (uint8_t)(1u << b);
	}
}

struct row {
	uint64_t v;
	int kind;
	int64_t node;
	char payload[1024];
};

static void
mk(struct store_node *n, int64_t id, int arg)
{
	memset(n, 0, sizeof(*n));
	n->id = id;
	memset(n->machine_key, (int)id, KEY_LEN);
	memset(n->node_key, (int)id + 50, KEY_LEN);
	memset(n->disco_key, (int)id + 100, KEY_LEN);
	snprintf(n->hostname, sizeof(n->hostname), "n%d", (int)id);
	snprintf(n->name, sizeof(n->name), "n%d-%d", (int)id, arg);
	snprintf(n->user, sizeof(n->user), "u");
	snprintf(n->tags, sizeof(n->tags), "[]");
	snprintf(n->endpoints, sizeof(n->endpoints), "[\"192.0.2.%d:%d\"]", (int)id, 40000 + arg);
	snprintf(n->routes_advertised, sizeof(n->routes_advertised), "[]");
	snprintf(n->routes_approved, sizeof(n->routes_approved), "[]");
	n->created_at = 1;
}

static struct mapper *
fresh(uint64_t version, struct store_node *nodes, const bool *exists, const bool *online,
      const struct row *rows, size_t nrows)
{
	struct mapper_config mc;
	struct mapper *m;

	memset(&mc, 0, sizeof(mc));
	mc.version = version;
	mc.floor = V0;
	mc.queue_max = 4;
	if (mapper_new(&mc, &m) != 0)
		abort();
	for (int i = 1; i < NN; i++)
		if (exists[i] && mapper_load(m, &nodes[i], online[i]) != 0)
			abort();
	for (size_t i = 0; i < nrows; i++) {
		struct store_change c = { rows[i].v, 1, rows[i].kind, rows[i].node, rows[i].payload };

		if (mapper_log_load(m, &c) != 0)
			abort();
	}
	mapper_set_policy(m, &pol, (void *)&rules[cur_rule], 0, NULL);
	return m;
}

static void
check_stream(struct mapper *m, int64_t viewer, uint64_t since, uint64_t now)
{
	struct http_response resp;
	enum mapper_start how;
	static char buf[1 << 16];
	struct buf all;
	uint64_t last = 0;
	ssize_t k;
	char *p, *nl;
	uint8_t tab = 0;

	memset(&resp, 0, sizeof(resp));
	if (mapper_stream_open(m, viewer, since, false, &resp, &how) != 0)
		return;	/* the node is gone */
	resp.stream_ops->attach(resp.stream_ctx, NULL);
	buf_init(&all, 64 << 20);
	while ((k = resp.stream_ops->read(resp.stream_ctx, buf, sizeof(buf))) > 0)
		if (buf_append(&all, buf, (size_t)k) != 0)
			abort();
	resp.stream_ops->close(resp.stream_ctx);
	if (how == MAPPER_START_RESUME)
		tab = truth[since - V0][viewer];	/* what the node had */
	for (p = buf_cstr(&all); (nl = strchr(p, '\n')) != NULL; p = nl + 1) {
		json_t *j, *o, *x;
		uint64_t v;
		int64_t id = 0;
		size_t xi;

		*nl = 0;
		if ((j = json_loads(p, 0, NULL)) == NULL)
			abort();
		v = (uint64_t)json_integer_value(json_object_get(j, "version"));
		if (v < last)
			abort();	/* a version went down */
		last = v;
		if (how == MAPPER_START_RESUME &&
		    (strcmp(json_string_value(json_object_get(j, "type")), "full") == 0 ||
		     (v <= since && strcmp(json_string_value(json_object_get(j, "type")), "keepalive") != 0)))
			abort();
		json_array_foreach(json_object_get(j, "peers"), xi, x) {
			id = json_integer_value(json_object_get(x, "id"));
			if (id < 1 || id >= NN || !(truth[now - V0][viewer] & (1u << id)))
				abort();	/* a full map with what it may not see */
			tab |= (uint8_t)(1u << id);
		}
		id = 0;
		if ((o = json_object_get(j, "peer_changed")) || (o = json_object_get(j, "peer_added"))) {
			id = json_integer_value(json_object_get(o, "id"));
			if (id < 1 || id >= NN || !(truth[now - V0][viewer] & (1u << id)))
				abort();	/* sent what it may not see */
			tab |= (uint8_t)(1u << id);
		} else if ((o = json_object_get(j, "peer_removed"))) {
			id = json_integer_value(o);
			if (id < 1 || id >= NN)
				abort();
			tab &= (uint8_t)~(1u << id);
		}
		json_decref(j);
	}
	buf_cleanup(&all);
	if (tab != truth[now - V0][viewer])
		abort();	/* the peer table is not what it may see now */
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct store_node nodes[NN];
	static struct row rows[128];
	bool exists[NN], online[NN];
	size_t nrows = 0, i = 0;
	uint64_t v = V0;
	struct mapper *m;
	json_t *body;
	int64_t since = 0;
	char why[256];

	log_set_level(LOG_ERROR);
	cur_rule = 0;
	for (int n = 1; n < NN; n++) {
		mk(&nodes[n], n, 0);
		exists[n] = true;
		online[n] = false;
	}
	set_truth(0, exists);
	m = fresh(V0, nodes, exists, online, NULL, 0);
	for (; i + 2 < size && data[i] != 0xff && nrows < 128; i += 3) {
		int kind = data[i] % 5, arg = data[i + 2];
		int64_t id = 1 + data[i + 1] % (NN - 1);
		struct row *r = &rows[nrows];
		char *pl;

		if (kind == 4) {	/* restart from what the "store" holds */
			mapper_free(m);
			m = fresh(v, nodes, exists, online, rows, nrows);
			continue;
		}
		if (!exists[id])
			continue;
		r->v = ++v;
		r->node = id;
		r->payload[0] = 0;
		switch (kind) {
		case 0:
			mk(&nodes[id], id, arg);
			r->kind = STORE_CHANGE_NODE;
			mapper_node_upsert(m, &nodes[id], v, NULL);
			break;
		case 1:
			r->kind = STORE_CHANGE_REMOVED;
			if ((pl = mapper_removed_payload(m, id)) == NULL)
				abort();
			str_copy(r->payload, pl, sizeof(r->payload));
			mapper_node_remove(m, id, v, pl, NULL);
			free(pl);
			exists[id] = false;
			break;
		case 2:
			r->kind = STORE_CHANGE_ONLINE;
			r->node = 0;
			online[id] = arg & 1;
			snprintf(r->payload, sizeof(r->payload), online[id] ?
			    "{\"on\":[%d],\"off\":[]}" : "{\"on\":[],\"off\":[%d]}", (int)id);
			mapper_online_apply(m, v, r->payload, NULL);
			break;
		case 3: {
			int64_t full[NN];
			size_t nfull = 0;

			/* the nodes whose peers change, as the server finds them */
			for (int a = 1; a < NN; a++)
				for (int b = 1; b < NN; b++)
					if (exists[a] && exists[b] && a != b &&
					    rule_see((void *)&rules[cur_rule], a, b) !=
					    rule_see((void *)&rules[arg % 4], a, b)) {
						full[nfull++] = a;
						break;
					}
			r->kind = STORE_CHANGE_POLICY;
			r->node = 0;
			if ((pl = mapper_policy_change(m, &pol, (void *)&rules[arg % 4], full, nfull,
			    (arg & 24) == 24, &id, (arg >> 5) & 1, NULL)) == NULL)
				abort();
			if (strlen(pl) >= sizeof(r->payload))
				abort();
			str_copy(r->payload, pl, sizeof(r->payload));
			cur_rule = arg % 4;
			mapper_set_policy(m, &pol, (void *)&rules[cur_rule], v, pl);
			free(pl);
			break;
		}
		}
		nrows++;
		set_truth(nrows, exists);
	}
	if (i < size && data[i] == 0xff)
		i++;
	/* the map request body, as handle_map reads it */
	body = jsonx_parse_object((const char *)data + i, size - i, 65536, why, sizeof(why));
	if (body != NULL && jsonx_int(body, "version", &since, why, sizeof(why)) != ERR_INVALID &&
	    since >= 0) {
		for (int n = 1; n < NN; n++)
			check_stream(m, n, (uint64_t)since, v);
	}
	json_decref(body);
	mapper_free(m);
	return 0;
}
