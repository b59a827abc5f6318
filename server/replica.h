/* SPDX-License-Identifier: MIT */
/*
 * Replicas: several wiremesh-server processes on one PostgreSQL database.
 * Each keeps its own mapper (nodes and map streams) and follows the shared
 * change log: the store announces every committed change with NOTIFY and
 * its version, and the follower applies the changes other replicas made,
 * in version order, to this replica's mapper, so a stream held here hears
 * of a node registered there. Nothing here runs on SQLite.
 *
 * Ordering: versions are handed out under a row lock, so they commit in
 * version order on every replica. Before this replica applies a change of
 * its own (version V, under publish_lock, still inside its transaction),
 * replica_catch_up() applies every foreign change below V; the follower
 * thread applies the rest as they are announced (and at least once a
 * second, should a notification be lost). Lock order as in server.h:
 * store, publish_lock, mapper.
 */
#ifndef WM_REPLICA_H
#define WM_REPLICA_H

#include <stdbool.h>
#include <stdint.h>

#include "common/err.h"

struct server;
struct replica;

/* PostgreSQL only (NULL and 0 on SQLite). Opens the listening connection;
 * `applied` is the version the mapper has loaded. */
int replica_new(struct server *s, uint64_t applied, struct replica **out) WM_MUST_CHECK;
int replica_start(struct replica *r) WM_MUST_CHECK;
void replica_free(struct replica *r);	/* stops the follower */

/* With the store locked (in a transaction) and publish_lock held: applies
 * the foreign changes with versions below `below` (0: all). `below` is the
 * caller's own, not yet committed. */
void replica_catch_up(struct replica *r, uint64_t below);
/* After replica_catch_up(r, first) and the commit of the caller's changes
 * (first .. last, all applied by the caller; publish_lock still held):
 * records `last`. Not after a failed commit: that gives the versions back
 * and another change may take them. */
void replica_applied_own(struct replica *r, uint64_t last);

/* A replica that cannot reach the database for this long ends its map
 * streams, so their clients reconnect (through the load balancer) to a
 * replica that can, and resume there by version. */
enum { REPLICA_DB_LOST_S = 10 };

/* Whether this replica does the network's singleton work now (one leader
 * for all of it): the cleanup of idle ephemeral nodes, publishing node
 * expiry, electing route primaries and loading the policy file. One replica
 * at a time holds the role (an advisory lock on a session of its own,
 * checked every second); when it dies or loses the database, another takes
 * it within about a second. Always true on SQLite (r NULL). */
bool replica_leader(struct replica *r);
/* The roles, as in wiremesh_replica_leader{role=...} (docs/ha.md). */
#define REPLICA_ROLES "ephemeral_cleanup,expiry,route_primary,policy_file"

/* Whether another replica changed the policy since the last call (the
 * timer thread then reloads it from the store). */
bool replica_policy_changed(struct replica *r);

struct replica_stats {
	uint64_t applied;		/* last version applied here */
	uint64_t announced;		/* highest version heard of */
	uint64_t foreign_applied;	/* changes of other replicas applied */
	int64_t lag_ms_last;		/* announcement to applied, last one */
	int64_t lag_ms_max;
	bool leader;			/* holds the singleton role */
};
void replica_stats(struct replica *r, struct replica_stats *out);

#endif
