// SPDX-License-Identifier: MIT
/*
 * The replica list (replica_list.h): this replica's record in the shared
 * store, the live list published as a REPLICAS change, and what the map
 * streams get from it ("control_urls" and the shared "derp_map").
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "common/log.h"
#include "common/util.h"
#include "server/mapper.h"
#include "server/replica_list.h"
#include "server/server.h"
#include "server/store.h"

/* Collects the live rows into the published list. */
static int
list_row(void *ctx, const struct store_replica *r)
{
	json_t *list = ctx, *e, *region = NULL;

	if (r->derp_region && r->derp_region[0] &&
	    (region = json_loads(r->derp_region, 0, NULL)) == NULL)
		log_warn("msg=\"unreadable DERP region in the replica list; left out\" replica=%s",
		    r->name);
	if (r->server_url[0] == 0 && region == NULL)
		return 0;
	if ((e = json_pack("{s:s}", "name", r->name)) == NULL) {
		json_decref(region);
		return ERR_NOMEM;
	}
	if (r->server_url[0])
		json_object_set_new(e, "url", json_string(r->server_url));
	if (region)
		json_object_set_new(e, "derp", region);
	return json_array_append_new(list, e) == 0 ? 0 : ERR_NOMEM;
}

/* The map's "control_urls" and "derp_map" for a published list: the URLs
 * in list order; the configured DERP map plus each listed region whose id
 * it does not name (the configured map wins), and this replica's own. */
static int
compose(struct server *s, const char *payload, char **urls_out, char **derp_out, size_t *count)
{
	json_t *list = json_loads(payload && *payload ? payload : "[]", 0, NULL);
	json_t *urls = json_array(), *dm = json_loads(s->derp_base_json, 0, NULL);
	json_t *regions = json_object_get(dm, "Regions"), *e, *own;
	size_t i;
	int r = ERR_NOMEM;

	*urls_out = *derp_out = NULL;
	if (!json_is_array(list)) {
		log_warn("msg=\"unreadable replica list; keeping the last one\"");
		r = ERR_INVALID;
		goto out;
	}
	if (urls == NULL || !json_is_object(regions))
		goto out;
	*count = json_array_size(list);
	json_array_foreach(list, i, e) {
		const char *u = json_string_value(json_object_get(e, "url"));
		json_t *rg = json_object_get(e, "derp");
		char key[24];

		if (u && *u)
			json_array_append_new(urls, json_string(u));
		if (json_is_object(rg) && json_integer_value(json_object_get(rg, "RegionID")) > 0) {
			snprintf(key, sizeof(key), "%" JSON_INTEGER_FORMAT,
			    json_integer_value(json_object_get(rg, "RegionID")));
			if (json_object_get(regions, key) == NULL)
				json_object_set(regions, key, rg);
		}
	}
	if (s->derp_region_json && (own = json_loads(s->derp_region_json, 0, NULL)) != NULL) {
		char key[24];

		snprintf(key, sizeof(key), "%" PRId64, s->cfg.derp_region_id);
		if (json_object_get(regions, key) == NULL)
			json_object_set(regions, key, own);
		json_decref(own);
	}
	*urls_out = json_dumps(urls, JSON_COMPACT);
	*derp_out = json_dumps(dm, JSON_COMPACT);
	r = *urls_out && *derp_out ? 0 : ERR_NOMEM;
	if (r != 0) {
		free(*urls_out);
		free(*derp_out);
		*urls_out = *derp_out = NULL;
	}
out:
	json_decref(list);
	json_decref(urls);
	json_decref(dm);
	return r;
}

/* Sets the mapper's sections from a published list (version 0: no change
 * to log, at start). */
static void
apply_list(struct server *s, uint64_t version, const char *payload)
{
	char *urls, *derp;
	size_t count = 0;

	if (compose(s, payload, &urls, &derp, &count) != 0) {
		if (version != 0)	/* the version must still reach the streams */
			mapper_set_replicas(s->mapper, "[]", s->derp_base_json, version);
		return;
	}
	mapper_set_replicas(s->mapper, urls, derp, version);
	atomic_store(&s->replica_list_size, (unsigned)count);
	free(urls);
	free(derp);
}

void
replica_list_apply(struct server *s, uint64_t version, const char *payload)
{
	apply_list(s, version, payload);
}

/* One beat: renew (or, leaving, delete) the record, then publish the live
 * list when it differs from the last one published. `init`: set the
 * mapper's sections even when nothing changed. */
static int
beat(struct server *s, bool init, bool leave, char *why, size_t whylen)
{
	struct store_replica self;
	bool pg = store_is_postgres(s->store);
	int64_t now, live_after;
	char clash[600];
	json_t *list = json_array();
	char *text = NULL;
	bool changed = false;
	uint64_t v;
	int r;

	if (list == NULL)
		return ERR_NOMEM;
	memset(&self, 0, sizeof(self));
	str_copy(self.name, s->replica_name, sizeof(self.name));
	if (s->cfg.server_url[0])	/* the name is the URL without a trailing "/" */
		str_copy(self.server_url, s->replica_name, sizeof(self.server_url));
	self.derp_region_id = s->derp_region_json ? s->cfg.derp_region_id : 0;
	self.derp_region = s->derp_region_json ? s->derp_region_json : "";
	self.started_at = s->replica_started_at;
	if ((r = store_tx_begin(s->store)) != 0)
		goto out;
	if ((r = store_clock(s->store, &now)) != 0) {
		store_tx_rollback(s->store);
		goto out;
	}
	/* SQLite: one server, its record always live (no renewals to write) */
	live_after = pg ? now - REPLICA_STALE_S : 0;
	r = leave ? store_replica_leave(s->store, self.name) :
	    store_replica_beat(s->store, &self, now, live_after, !pg, clash, sizeof(clash));
	if (r == ERR_EXISTS) {
		snprintf(why, whylen, "derp_region_id %" PRId64 " is already the embedded DERP region "
		    "of the live replica %s: give each replica's embedded relay a region id of its own",
		    self.derp_region_id, clash);
	}
	if (r == 0)
		r = store_replica_list(s->store, live_after, list_row, list);
	if (r == 0 && (text = json_dumps(list, JSON_COMPACT | JSON_SORT_KEYS)) == NULL)
		r = ERR_NOMEM;
	if (r == 0)
		r = store_replica_publish(s->store, text, &changed);
	if (r != 0) {
		store_tx_rollback(s->store);
		goto out;
	}
	if (!changed) {
		r = store_tx_commit(s->store);
		if (r == 0 && init)
			apply_list(s, 0, text);
		goto out;
	}
	if ((r = server_commit_change(s, STORE_CHANGE_REPLICAS, 0, text, &v)) != 0)
		goto out;
	apply_list(s, v, text);
	server_publish_done(s, NULL);
	log_info("msg=\"replica list published\" version=%" PRIu64 " replicas=%zu", v,
	    json_array_size(list));
out:
	free(text);
	json_decref(list);
	return r;
}

int
replica_list_start(struct server *s, char *why, size_t whylen)
{
	int r;

	why[0] = 0;
	s->replica_started_at = time_now_s();
	for (int attempt = 0; ; attempt++) {
		r = beat(s, true, s->replica_name[0] == 0, why, whylen);
		if (r == 0 || r == ERR_EXISTS || !store_retryable(s->store) ||
		    attempt >= STORE_TX_RETRIES)
			break;
	}
	if (r != 0 && why[0] == 0)
		snprintf(why, whylen, "cannot record this replica in the database: %s", err_str(r));
	if (r == 0 && s->replica_name[0])
		log_info("msg=\"recorded in the replica list\" replica=%s derp_region_id=%" PRId64,
		    s->replica_name, s->derp_region_json ? s->cfg.derp_region_id : 0);
	return r;
}

void
replica_list_tick(struct server *s)
{
	char why[700] = "";
	int r;

	if (!store_is_postgres(s->store))
		return;	/* one server: its record was written at start */
	r = beat(s, false, s->replica_name[0] == 0, why, sizeof(why));

	if (r != 0 && !s->replica_beat_failing)
		log_warn("msg=\"cannot renew this replica's record; retried every %d s\" err=\"%s\"",
		    REPLICA_BEAT_S, why[0] ? why : err_str(r));
	else if (r == 0 && s->replica_beat_failing)
		log_info("msg=\"replica record renewed again\"");
	s->replica_beat_failing = r != 0;
}

void
replica_list_leave(struct server *s)
{
	char why[700];

	if (s->replica_name[0] == 0 || s->store == NULL || s->mapper == NULL)
		return;
	if (beat(s, false, true, why, sizeof(why)) != 0)
		log_info("msg=\"could not remove this replica from the replica list; it drops out "
		    "when its record is %d s old\"", REPLICA_STALE_S);
}
