// SPDX-License-Identifier: MIT
/*
 * The change-log follower of a replica (see replica.h). One thread waits on
 * the store's listener; each announcement (or a one-second timeout) makes
 * it take the store lock (a read-only transaction), then publish_lock, and
 * apply what the log holds after the last version applied here.
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "common/log.h"
#include "common/util.h"
#include "server/ipam.h"
#include "server/mapper.h"
#include "server/policy_api.h"
#include "server/replica.h"
#include "server/replica_list.h"
#include "server/server.h"
#include "server/store.h"

/* pg_advisory_lock key of the singleton role: "wmleader" in ASCII. */
#define LEADER_KEY 0x776d6c6561646572LL

struct replica {
	struct server *s;
	struct store_listener *listener;
	struct store_lease *lease;
	atomic_bool leader;
	pthread_t thread;
	bool started;
	atomic_bool stop;
	atomic_bool policy_changed;
	uint64_t applied;		/* under publish_lock */
	atomic_uint_fast64_t applied_pub;
	atomic_uint_fast64_t announced;
	atomic_uint_fast64_t foreign;
	atomic_int_fast64_t announced_at_ms;	/* when `announced` was heard */
	atomic_int_fast64_t lag_last, lag_max;
};

struct walk {
	struct replica *r;
	uint64_t below;
};

enum { WALK_DONE = 1 };

/* Whether a POLICY change names the ETag of the policy installed here. */
static bool
payload_etag_is(struct server *s, const char *payload)
{
	char etag[64];

	return mapper_policy_payload_etag(payload, etag, sizeof(etag)) == 0 &&
	    policy_state_etag_is(s, etag);
}

static void
apply_foreign(struct replica *r, const struct store_change *c)
{
	struct server *s = r->s;
	struct store_node n, gone;

	switch (c->kind) {
	case STORE_CHANGE_NODE:
		if (store_node_get(s->store, c->node_id, &n) == 0) {
			struct store_node old;
			bool had = mapper_node_get(s->mapper, n.id, &old, NULL) == 0;

			ipam_mark_other(s->ipam, &n.ipv4);
			ipam_mark_other(s->ipam, &n.ipv6);
			mapper_node_upsert(s->mapper, &n, c->version, NULL);
			/* this replica's relay drops a replaced or expired key,
			 * as the replica that made the change does */
			if (had && (memcmp(old.node_key, n.node_key, KEY_LEN) != 0 ||
			    (n.expires_at != 0 && n.expires_at <= time_now_s())))
				server_relay_forget(s, old.node_key);
		}
		policy_state_dirty(s);
		break;
	case STORE_CHANGE_REMOVED:
		if (mapper_node_get(s->mapper, c->node_id, &gone, NULL) != 0)
			gone.id = 0;
		mapper_node_remove(s->mapper, c->node_id, c->version, c->payload, NULL);
		if (gone.id != 0)	/* deleted there: this replica's relay drops it too */
			server_relay_forget(s, gone.node_key);
		policy_state_dirty(s);
		break;
	case STORE_CHANGE_ONLINE:
		mapper_online_apply(s->mapper, c->version, c->payload, NULL);
		break;
	case STORE_CHANGE_ROUTES: {
		/* the leader's election: the table as stored now (a later
		 * election's table is only more current) */
		struct mapper_primary *prim;
		size_t nprim;

		if (server_route_primaries_load(s, &prim, &nprim) == 0)
			mapper_primaries_apply(s->mapper, prim, nprim, c->node_id, c->version);
		else
			mapper_routes_apply(s->mapper, c->node_id, c->version);
		free(prim);
		break;
	}
	case STORE_CHANGE_POLICY:
		/* the policy text may have changed there: reloaded from the
		 * store by the timer thread, which logs this replica's own
		 * POLICY change when it differs; a change that names the ETag
		 * installed here (another replica's recompilation after a
		 * node change) has nothing to reload */
		if (!payload_etag_is(s, c->payload))
			atomic_store(&r->policy_changed, true);
		break;
	case STORE_CHANGE_REPLICAS:
		replica_list_apply(s, c->version, c->payload);
		break;
	default:
		break;	/* DNS: each replica serves its own configuration */
	}
}

static int
walk_change(void *ctx, const struct store_change *c)
{
	struct walk *w = ctx;
	struct replica *r = w->r;

	if (w->below != 0 && c->version >= w->below)
		return WALK_DONE;
	if (c->version <= r->applied)
		return 0;
	apply_foreign(r, c);
	/* versions are shared: one applied here is one a resume may name */
	mapper_version_seen(r->s->mapper, c->version);
	r->applied = c->version;
	atomic_fetch_add(&r->foreign, 1);
	return 0;
}

void
replica_catch_up(struct replica *r, uint64_t below)
{
	struct walk w = { r, below };
	int rc;

	if (r == NULL)
		return;
	rc = store_change_list(r->s->store, r->applied, walk_change, &w);
	if (rc != 0 && rc != WALK_DONE)
		log_warn("msg=\"cannot read the change log; retried shortly\" err=\"%s\"",
		    err_str(rc));
	/* every version below `below` is committed or rolled back by now (the
	 * counter's row lock orders them); `below` itself is the caller's own,
	 * not yet committed: replica_applied_own after its commit (a failed
	 * commit gives the number back, and another change may take it) */
	if (below != 0 && below - 1 > r->applied)
		r->applied = below - 1;
	atomic_store(&r->applied_pub, r->applied);
	if (atomic_load(&r->announced) <= r->applied) {
		int64_t at = atomic_load(&r->announced_at_ms);

		if (at != 0) {
			int64_t lag = time_mono_ms() - at;

			atomic_store(&r->lag_last, lag);
			if (lag > atomic_load(&r->lag_max))
				atomic_store(&r->lag_max, lag);
			atomic_store(&r->announced_at_ms, 0);
		}
	}
}

void
replica_applied_own(struct replica *r, uint64_t last)
{
	if (r == NULL)
		return;
	if (last > r->applied)
		r->applied = last;
	atomic_store(&r->applied_pub, r->applied);
}

/* Holds on to the role, or tries to take it; every second. */
static void
elect(struct replica *r)
{
	if (atomic_load(&r->leader)) {
		if (store_lease_check(r->lease) == 0)
			return;
		atomic_store(&r->leader, false);
		log_warn("msg=\"lost the database session: no longer the leader replica\" "
		    "roles=" REPLICA_ROLES);
	}
	if (store_lease_try(r->lease, LEADER_KEY) == 1) {
		atomic_store(&r->leader, true);
		log_info("msg=\"this replica is now the leader: it does the singleton work for "
		    "the network\" roles=" REPLICA_ROLES);
	}
}

static void *
follow(void *arg)
{
	struct replica *r = arg;
	struct server *s = r->s;
	bool lost = false, told = false;
	int64_t next_elect = 0, db_ok_ms = time_mono_ms();

	while (!atomic_load(&r->stop)) {
		uint64_t v = 0;
		int rc;

		if (time_mono_ms() >= next_elect) {
			elect(r);
			next_elect = time_mono_ms() + 1000;
		}
		rc = store_listener_wait(r->listener, 1000, &v);

		if (rc < 0) {
			if (!lost)
				log_warn("msg=\"lost the database's announcements; following the change "
				    "log by polling until they return\" err=\"%s\"", err_str(rc));
			lost = true;
			usleep(1000 * 1000);	/* reconnects at the next wait */
		} else if (lost) {
			log_info("msg=\"database announcements back\"");
			lost = false;
		}
		if (rc == 1 && v > atomic_load(&r->announced)) {
			atomic_store(&r->announced, v);
			if (atomic_load(&r->announced_at_ms) == 0)
				atomic_store(&r->announced_at_ms, time_mono_ms());
		}
		if (atomic_load(&r->stop))
			break;
		/* store first, then publish_lock (server.h's lock order) */
		if (store_tx_begin(s->store) != 0) {
			if (!told && time_mono_ms() - db_ok_ms >= REPLICA_DB_LOST_S * 1000) {
				size_t n = mapper_end_streams(s->mapper);

				told = true;
				log_warn("msg=\"no database for %d s: ending this replica's map streams "
				    "so their clients move to another\" streams=%zu",
				    REPLICA_DB_LOST_S, n);
			}
			continue;
		}
		if (told)
			log_info("msg=\"database reachable again\"");
		told = false;
		db_ok_ms = time_mono_ms();
		pthread_mutex_lock(&s->publish_lock);
		replica_catch_up(r, 0);
		pthread_mutex_unlock(&s->publish_lock);
		store_tx_rollback(s->store);
	}
	return NULL;
}

int
replica_new(struct server *s, uint64_t applied, struct replica **out)
{
	struct replica *r;
	int rc;

	*out = NULL;
	if (!store_is_postgres(s->store))
		return 0;
	if ((r = calloc(1, sizeof(*r))) == NULL)
		return ERR_NOMEM;
	r->s = s;
	r->applied = applied;
	atomic_init(&r->applied_pub, applied);
	atomic_init(&r->announced, applied);
	if ((rc = store_listener_open(s->cfg.db_path, &r->listener)) != 0 ||
	    (rc = store_lease_open(s->cfg.db_path, &r->lease)) != 0) {
		log_error("msg=\"cannot listen for the other replicas' changes\" err=\"%s\"",
		    err_str(rc));
		store_listener_close(r->listener);
		free(r);
		return rc;
	}
	*out = r;
	return 0;
}

int
replica_start(struct replica *r)
{
	uint64_t from;

	if (r == NULL)
		return 0;
	from = r->applied;	/* the follower owns it from here on */
	if (pthread_create(&r->thread, NULL, follow, r) != 0)
		return ERR_INTERNAL;
	r->started = true;
	log_info("msg=\"following the shared change log\" from_version=%" PRIu64, from);
	return 0;
}

void
replica_free(struct replica *r)
{
	if (r == NULL)
		return;
	atomic_store(&r->stop, true);
	if (r->started)
		pthread_join(r->thread, NULL);
	store_listener_close(r->listener);
	store_lease_close(r->lease);	/* ends the session: the role moves on */
	free(r);
}

bool
replica_leader(struct replica *r)
{
	return r == NULL || atomic_load(&r->leader);
}

bool
replica_policy_changed(struct replica *r)
{
	return r != NULL && atomic_exchange(&r->policy_changed, false);
}

void
replica_stats(struct replica *r, struct replica_stats *out)
{
	memset(out, 0, sizeof(*out));
	if (r == NULL)
		return;
	out->applied = atomic_load(&r->applied_pub);
	out->announced = atomic_load(&r->announced);
	out->foreign_applied = atomic_load(&r->foreign);
	out->lag_ms_last = atomic_load(&r->lag_last);
	out->lag_ms_max = atomic_load(&r->lag_max);
	out->leader = atomic_load(&r->leader);
}
