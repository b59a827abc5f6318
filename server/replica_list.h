/* SPDX-License-Identifier: MIT */
/*
 * The replica list: every wiremesh-server on one database records itself
 * (its --server-url and the DERP region of its embedded relay, if any) and
 * renews that record every REPLICA_BEAT_S seconds; a record not renewed
 * for REPLICA_STALE_S seconds (by the database's clock) is dropped. The live
 * list is published to the map streams as a REPLICAS change: full maps and
 * deltas carry "control_urls" (the replicas' URLs, so an agent enrolled
 * through one learns the others) and a "derp_map" that is this server's
 * configured map plus every live replica's embedded region. A replica
 * publishes only when the live list differs from the last one published
 * (a conditional UPDATE in the database), so several replicas noticing one
 * difference publish it once.
 *
 * Published list (the change's payload): a JSON array, by name, of
 * {"name":N,"url":U,"derp":REGION} with "url" and "derp" present only when
 * set; replicas with neither are left out.
 *
 * SQLite: the same at start, for the one server that owns the file (other
 * rows are deleted): its own URL, if set, and its own region; no renewals
 * (nothing else reads the file).
 */
#ifndef WM_REPLICA_LIST_H
#define WM_REPLICA_LIST_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

struct server;

enum {
	REPLICA_BEAT_S = 2,	/* each replica renews its record this often */
	REPLICA_STALE_S = 10,	/* a record older than this (by the database's
				 * clock) is not live */
};

/* At start, after the map state is loaded: records this replica and
 * publishes the list if it changed. ERR_EXISTS (why says which replica)
 * when a live replica announces the same embedded DERP region id. */
int replica_list_start(struct server *s, char *why, size_t whylen) WM_MUST_CHECK;
/* Timer thread: renews the record every REPLICA_BEAT_S seconds (PostgreSQL). */
void replica_list_tick(struct server *s);
/* A REPLICAS change another replica committed (the follower, in version
 * order, with publish_lock held). */
void replica_list_apply(struct server *s, uint64_t version, const char *payload);
/* A clean stop: removes this replica's record and publishes the list. */
void replica_list_leave(struct server *s);

#endif
