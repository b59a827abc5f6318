/* SPDX-License-Identifier: MIT */
/*
 * The store: every byte of SQL in the server lives behind this header. Two
 * engines run it through the database layer (server/db.h): SQLite (a file
 * path, the default: WAL, foreign keys, a busy timeout) and PostgreSQL (a
 * postgres:// URI or libpq keyword string; several server replicas may share
 * it). Migrations embedded in the binary are applied at open under a lock,
 * and a database newer than the binary is refused.
 *
 * Threads: one connection guarded by one mutex. A change is made between
 * store_tx_begin() and store_tx_commit()/store_tx_rollback(), which hold the
 * lock; single-call functions outside a transaction take it themselves. On
 * PostgreSQL a transaction is READ COMMITTED: what must not race between
 * replicas is guarded by unique constraints (ERR_EXISTS: the caller learns
 * and retries), conditional updates and advisory locks inside the store
 * functions; a deadlock fails with ERR_UNAVAILABLE and store_retryable()
 * true, and the caller runs the whole transaction again.
 */
#ifndef WM_STORE_H
#define WM_STORE_H

#include <stdbool.h>
#include <stdint.h>

#include "common/addr.h"
#include "common/err.h"
#include "common/keys.h"

enum {
	STORE_TX_RETRIES = 20,	/* attempts of a transaction that conflicts */
	STORE_NAME_MAX = 64,	/* user and node names, DNS label length + 1 */
	STORE_PREFIX_MAX = 16,	/* secret lookup prefix */
	STORE_HASH_LEN = 32,	/* SHA-256 of a secret */
	STORE_TAGS_MAX = 512,	/* JSON array text */
	STORE_ENDPOINTS_MAX = 1024,
	STORE_ROUTES_MAX = 1024,	/* JSON array text of CIDRs */
	STORE_TEXT_MAX = 256,		/* display names, emails */
};

struct store;

struct store_user {
	int64_t id;
	char name[STORE_NAME_MAX];
	int64_t created_at;
	char display_name[STORE_TEXT_MAX];	/* from the identity provider, else "" */
	char email[STORE_TEXT_MAX];
	bool oidc;			/* logs in with OpenID Connect */
};

struct store_apikey {
	int64_t id;
	char prefix[STORE_PREFIX_MAX];
	uint8_t hash[STORE_HASH_LEN];
	int64_t created_at;
	int64_t expires_at;	/* 0: never */
	int64_t revoked_at;	/* 0: not revoked */
	int64_t last_used_at;
};

struct store_preauthkey {
	int64_t id;
	char prefix[STORE_PREFIX_MAX];
	uint8_t hash[STORE_HASH_LEN];
	int64_t user_id;
	char user[STORE_NAME_MAX];
	bool reusable;
	bool ephemeral;
	char tags[STORE_TAGS_MAX];	/* JSON array */
	int64_t created_at;
	int64_t expires_at;
	int64_t used_count;
	int64_t revoked_at;
};

struct store_node {
	int64_t id;
	uint8_t machine_key[KEY_LEN];
	uint8_t node_key[KEY_LEN];
	uint8_t disco_key[KEY_LEN];
	char hostname[STORE_NAME_MAX];
	char name[STORE_NAME_MAX];
	int64_t user_id;
	char user[STORE_NAME_MAX];
	char tags[STORE_TAGS_MAX];
	struct ip_addr ipv4;	/* family 0 when none */
	struct ip_addr ipv6;
	bool ephemeral;
	int64_t preauth_key_id;
	int64_t created_at;
	int64_t last_seen;
	int64_t expires_at;	/* 0: never */
	char endpoints[STORE_ENDPOINTS_MAX];	/* JSON array of "ip:port" */
	int home_derp;
	char routes_advertised[STORE_ROUTES_MAX];	/* JSON array of CIDRs */
	char routes_approved[STORE_ROUTES_MAX];
};

struct store_policy {
	int64_t id;
	char *text;		/* owned; free with store_policy_cleanup() */
	char etag[48];
	int64_t created_at;
	char created_by[STORE_NAME_MAX];
};

/* Opens (creating an SQLite file if needed) the database at `url` (an SQLite
 * path, or a PostgreSQL URI / keyword string) and migrates it. ERR_SCHEMA
 * when the database is newer than this binary, ERR_IO when it cannot be
 * opened or reached. */
int store_open(const char *url, struct store **out) WM_MUST_CHECK;
void store_close(struct store *s);
bool store_is_postgres(const struct store *s);
/* Whether store_open() would take `url` for PostgreSQL (else SQLite). */
bool store_url_is_postgres(const char *url);
/* A round trip to the database: 0 when it answers (/healthz), waiting at
 * most timeout_ms for the store (ERR_TIMEOUT). */
int store_ping(struct store *s, int timeout_ms) WM_MUST_CHECK;
/* Whether the last failure was a conflict with another writer (run the
 * whole transaction again). */
bool store_retryable(struct store *s);
/* The highest migration applied. */
int store_schema_version(struct store *s);
/* The schema version of the database file at `path`, read without opening it
 * as a store (read-only, no migrations). ERR_NOT_FOUND when the file is an
 * SQLite database but not a wiremesh one, ERR_IO when it is not a database,
 * ERR_UNPROCESSABLE for a PostgreSQL URL. */
int store_file_schema_version(const char *path, int *version) WM_MUST_CHECK;
/* SQLite: PRAGMA integrity_check, 0 when it says "ok". PostgreSQL: a round
 * trip (the server checks its own pages). SQLite's reads the whole
 * database with the store locked: for admins, not for probes. */
int store_integrity_check(struct store *s) WM_MUST_CHECK;

int store_tx_begin(struct store *s) WM_MUST_CHECK;
int store_tx_commit(struct store *s) WM_MUST_CHECK;
void store_tx_rollback(struct store *s);

/* Users. ERR_EXISTS on a duplicate name, ERR_NOT_FOUND, ERR_PRECONDITION
 * when deleting a user who still owns nodes. */
int store_user_create(struct store *s, const char *name, struct store_user *out) WM_MUST_CHECK;
int store_user_get(struct store *s, const char *name, struct store_user *out) WM_MUST_CHECK;
int store_user_delete(struct store *s, const char *name) WM_MUST_CHECK;
/* OpenID Connect users: found by issuer + subject (ERR_NOT_FOUND); created
 * with them (ERR_EXISTS when the name or the identity is taken); their
 * display name and email refreshed at each login. */
int store_user_get_by_oidc(struct store *s, const char *issuer, const char *subject,
			   struct store_user *out) WM_MUST_CHECK;
int store_user_create_oidc(struct store *s, const char *name, const char *issuer,
			   const char *subject, const char *display_name, const char *email,
			   struct store_user *out) WM_MUST_CHECK;
int store_user_set_profile(struct store *s, int64_t id, const char *display_name,
			   const char *email) WM_MUST_CHECK;
/* ERR_NOT_FOUND (no user `name`), ERR_EXISTS (new_name taken). */
int store_user_rename(struct store *s, const char *name, const char *new_name) WM_MUST_CHECK;
typedef int (*store_user_cb)(void *ctx, const struct store_user *u);
int store_user_list(struct store *s, store_user_cb cb, void *ctx) WM_MUST_CHECK;

/* API keys. */
int store_apikey_insert(struct store *s, struct store_apikey *k) WM_MUST_CHECK;
int store_apikey_get(struct store *s, const char *prefix, struct store_apikey *out) WM_MUST_CHECK;
int store_apikey_expire(struct store *s, const char *prefix, int64_t now) WM_MUST_CHECK;
int store_apikey_touch(struct store *s, int64_t id, int64_t now) WM_MUST_CHECK;
typedef int (*store_apikey_cb)(void *ctx, const struct store_apikey *k);
int store_apikey_list(struct store *s, store_apikey_cb cb, void *ctx) WM_MUST_CHECK;

/* Pre-auth keys (inside a transaction for use/consume). */
int store_preauthkey_insert(struct store *s, struct store_preauthkey *k) WM_MUST_CHECK;
int store_preauthkey_get(struct store *s, const char *prefix, struct store_preauthkey *out) WM_MUST_CHECK;
int store_preauthkey_get_id(struct store *s, int64_t id, struct store_preauthkey *out) WM_MUST_CHECK;
/* Counts a use; ERR_USED when the key is single-use and was used already
 * (by another registration that committed first), ERR_NOT_FOUND. */
int store_preauthkey_mark_used(struct store *s, int64_t id) WM_MUST_CHECK;
int store_preauthkey_expire(struct store *s, int64_t id, int64_t now) WM_MUST_CHECK;
typedef int (*store_preauthkey_cb)(void *ctx, const struct store_preauthkey *k);
/* user NULL: every user's keys. */
int store_preauthkey_list(struct store *s, const char *user, store_preauthkey_cb cb, void *ctx) WM_MUST_CHECK;

/* Column groups of a node row. Each writer owns some: the node its keys,
 * hostname, endpoints, last_seen and advertised routes; the admin the name,
 * tags, expiry and approved routes; registration the owner fields. An
 * update writes only the groups it names, so writers of different groups
 * never undo each other. */
enum {
	STORE_NODE_KEYS = 1u << 0,	/* node_key, disco_key */
	STORE_NODE_HOSTNAME = 1u << 1,
	STORE_NODE_NAME = 1u << 2,
	STORE_NODE_AUTH = 1u << 3,	/* user_id, ephemeral, preauth_key_id */
	STORE_NODE_TAGS = 1u << 4,
	STORE_NODE_ADDRS = 1u << 5,	/* ipv4, ipv6 */
	STORE_NODE_LAST_SEEN = 1u << 6,
	STORE_NODE_EXPIRY = 1u << 7,	/* expires_at */
	STORE_NODE_ENDPOINTS = 1u << 8,	/* endpoints, home_derp */
	STORE_NODE_ADVERTISED = 1u << 9,	/* routes_advertised */
	STORE_NODE_APPROVED = 1u << 10,	/* routes_approved */
	STORE_NODE_ALL = (1u << 11) - 1,
};

/* Nodes. */
int store_node_insert(struct store *s, struct store_node *n) WM_MUST_CHECK;	/* sets n->id */
/* Writes the column groups in `fields` (STORE_NODE_*) of the node with
 * n->id; ERR_NOT_FOUND when there is none, ERR_EXISTS on a duplicate key. */
int store_node_update_fields(struct store *s, const struct store_node *n,
			     unsigned fields) WM_MUST_CHECK;
/* Rewrites every mutable column of the node with n->id. */
int store_node_update(struct store *s, const struct store_node *n) WM_MUST_CHECK;
int store_node_get(struct store *s, int64_t id, struct store_node *out) WM_MUST_CHECK;
int store_node_get_by_machine(struct store *s, const uint8_t mkey[static KEY_LEN],
			      struct store_node *out) WM_MUST_CHECK;
int store_node_delete(struct store *s, int64_t id) WM_MUST_CHECK;
/* 1 when another machine's node has this disco key, 0 when none, or an
 * error: disco keys identify a node's discovery messages, so they must not
 * be shared (a copy would let one node receive another's). */
int store_node_disco_taken(struct store *s, const uint8_t disco_key[static KEY_LEN],
			   const uint8_t machine_key[static KEY_LEN]) WM_MUST_CHECK;
int store_node_name_taken(struct store *s, const char *name, int64_t except_id) WM_MUST_CHECK;
/* 1 when a node has this node key and has not expired at `now`, 0 when
 * none, or an error (relay admission on a replica that has not yet heard
 * of a node registered through another). */
int store_node_key_valid(struct store *s, const uint8_t node_key[static KEY_LEN],
			 int64_t now) WM_MUST_CHECK;
int store_node_set_last_seen(struct store *s, int64_t id, int64_t when) WM_MUST_CHECK;
/* Ids of the nodes whose expiry is in (after, until], for the timer that
 * enforces expiry; *ids is allocated (free it). */
int store_node_expiring(struct store *s, int64_t after, int64_t until, int64_t **ids,
			size_t *n) WM_MUST_CHECK;
/* Replicas (PostgreSQL): whether the expiry of node `id` at `expires_at`
 * has been published, i.e. a NODE change of it was logged at or after that
 * second (by the leader's expiry job, or any change made once it had
 * expired). Inside a transaction, which it serialises with the other
 * replicas' expiry jobs (advisory transaction lock). 1 yes, 0 no. */
int store_node_expiry_published(struct store *s, int64_t id, int64_t expires_at) WM_MUST_CHECK;
/* The elected primary router of each subnet prefix (route_primaries; the
 * leader replica writes it, every replica reads it). */
struct store_primary {
	char prefix[64];	/* canonical CIDR text */
	int64_t node_id;
};
typedef int (*store_primary_cb)(void *ctx, const struct store_primary *p);
int store_route_primaries_list(struct store *s, store_primary_cb cb, void *ctx) WM_MUST_CHECK;
/* Inside a transaction: replaces the whole table with these rows. */
int store_route_primaries_set(struct store *s, const struct store_primary *v, size_t n)
	WM_MUST_CHECK;
typedef int (*store_node_cb)(void *ctx, const struct store_node *n);
int store_node_list(struct store *s, store_node_cb cb, void *ctx) WM_MUST_CHECK;

/* Policy versions: the newest is the active one. */
int store_policy_insert(struct store *s, struct store_policy *p) WM_MUST_CHECK;
/* Inserts p as the new policy only if the current one's ETag is `if_match`
 * (NULL or "*": unconditionally); check and insert are one transaction,
 * retried on a conflict with another writer. ERR_PRECONDITION when the ETag
 * differs (or no policy exists yet and one was named). */
int store_policy_insert_if(struct store *s, struct store_policy *p,
			   const char *if_match) WM_MUST_CHECK;
/* ERR_NOT_FOUND when no policy has ever been set. */
int store_policy_latest(struct store *s, struct store_policy *out) WM_MUST_CHECK;
typedef int (*store_policy_cb)(void *ctx, const struct store_policy *p);
/* Newest first, without the text. */
int store_policy_history(struct store *s, store_policy_cb cb, void *ctx) WM_MUST_CHECK;
/* One version with its text; ERR_NOT_FOUND. */
int store_policy_get(struct store *s, int64_t id, struct store_policy *out) WM_MUST_CHECK;
void store_policy_cleanup(struct store_policy *p);

/* Admin console sessions (server/session.c): looked up by the SHA-256 of
 * the cookie's token. `subject` says who signed in ("apikey:PREFIX",
 * "oidc:NAME"); apikey_prefix ("" for none) names the API key whose expiry
 * also ends the session. */
struct store_session {
	int64_t id;
	uint8_t hash[STORE_HASH_LEN];
	char kind[16];			/* "session" or "onetime" */
	char subject[128];
	char apikey_prefix[STORE_PREFIX_MAX];
	int64_t created_at;
	int64_t last_used_at;
	int64_t expires_at;		/* absolute */
};

/* Inserts a session after deleting the ones past their absolute expiry or
 * idle for idle_s; ERR_EXHAUSTED when `max` live sessions remain. Sets s->id. */
int store_session_insert(struct store *s, struct store_session *ss, int64_t idle_s,
			 size_t max) WM_MUST_CHECK;
int store_session_get(struct store *s, const uint8_t hash[static STORE_HASH_LEN],
		      struct store_session *out) WM_MUST_CHECK;
/* Gets and deletes in one transaction (a one-time sign-in is used once). */
int store_session_take(struct store *s, const uint8_t hash[static STORE_HASH_LEN],
		       struct store_session *out) WM_MUST_CHECK;
int store_session_touch(struct store *s, int64_t id, int64_t now) WM_MUST_CHECK;
/* ERR_NOT_FOUND when there was none. */
int store_session_delete(struct store *s, int64_t id) WM_MUST_CHECK;
/* Deletes sessions expired at `now` (absolute, or idle for idle_s). */
int store_session_purge(struct store *s, int64_t now, int64_t idle_s) WM_MUST_CHECK;

/*
 * Registrations waiting for a person, shared by replicas on PostgreSQL
 * (migration 0011, server/enrol.c). state: "pending", "busy" (a replica is
 * writing the node), "done" (node_id, login) or "failed" (error). A pending
 * registration past expires_at has expired.
 */
enum { STORE_REG_ID_MAX = 33 };
struct store_reg {
	char id[STORE_REG_ID_MAX];
	uint8_t machine_key[KEY_LEN], node_key[KEY_LEN], disco_key[KEY_LEN];
	char hostname[STORE_NAME_MAX];
	bool has_routes;
	char routes[STORE_ROUTES_MAX];
	char addr[64];
	int64_t created_at, expires_at, ended_at;
	char state[16];
	int64_t node_id;
	char login[STORE_NAME_MAX];
	char error[256];
};
typedef int (*store_reg_cb)(void *ctx, const struct store_reg *r);

/* Inserts a pending registration and, in the same transaction, fails the
 * machine's other pending ones ("replaced by a newer login"). */
int store_reg_insert(struct store *s, const struct store_reg *r) WM_MUST_CHECK;
int store_reg_get(struct store *s, const char *id, struct store_reg *out) WM_MUST_CHECK;
/* pending and unexpired at `now` -> busy, and *out; else ERR_NOT_FOUND,
 * ERR_EXPIRED or ERR_USED (busy, done or failed). One wins a race. */
int store_reg_claim(struct store *s, const char *id, int64_t now, struct store_reg *out)
    WM_MUST_CHECK;
/* busy -> done (error NULL: node_id and login) or failed (error). */
int store_reg_finish(struct store *s, const char *id, int64_t node_id, const char *login,
		     const char *error, int64_t now) WM_MUST_CHECK;
/* Pending and unexpired at `now`, oldest first. */
int store_reg_pending(struct store *s, int64_t now, store_reg_cb fn, void *ctx) WM_MUST_CHECK;
/* Done or failed at `since` or later. */
int store_reg_ended(struct store *s, int64_t since, store_reg_cb fn, void *ctx) WM_MUST_CHECK;
/* 1 when the machine has a registration not ended, or ended at `since` or
 * later; 0 when not; or an error. */
int store_reg_machine_known(struct store *s, const uint8_t mkey[static KEY_LEN], int64_t since)
    WM_MUST_CHECK;
/* Deletes registrations that expired, and ended, before `before`. */
int store_reg_purge(struct store *s, int64_t before) WM_MUST_CHECK;

/*
 * The change log (migration 0004). Every change a map stream may see gets a
 * version from one counter, taken in the same transaction as the change:
 *
 *   map_version(id = 1, version BIGINT, pruned_through BIGINT)
 *       version         the last version handed out (never decreases)
 *       pruned_through  versions <= this may be gone from `changes`
 *   changes(version BIGINT PRIMARY KEY, created_at BIGINT, kind INTEGER,
 *           node_id BIGINT, payload TEXT)
 *
 * Appending is "UPDATE map_version SET version = version + 1; SELECT
 * version; INSERT INTO changes ..." inside the caller's transaction, so
 * versions are gapless, totally ordered and shared by every process on one
 * database (a replica learns a commit, e.g. from LISTEN/NOTIFY carrying the
 * version, and reads the rows after the last one it applied). Rows are
 * deleted only by store_change_prune(), oldest first. Kinds and payloads
 * (JSON text, "" when none):
 *   STORE_CHANGE_NODE     node_id was inserted or changed (read the node)
 *   STORE_CHANGE_REMOVED  node_id was deleted; payload {"all":true} when
 *                         every node could see it, else {"see":[ids]}
 *   STORE_CHANGE_ONLINE   published online flags {"on":[ids],"off":[ids]}
 *   STORE_CHANGE_POLICY   {"all":true} (every node needs a full map) or
 *                         {"full":[ids],"filter":[ids],"vis":[[viewer,
 *                         +id|-id,...],...]}: "full" nodes get a full map,
 *                         "filter" ones a filter delta, each "vis" viewer
 *                         (ascending) peer_added for its +ids, peer_removed
 *                         for its -ids, and its filter (bounded: server/
 *                         mapper.h MAPPER_POLICY_VIS_*); plus "etag".
 *   STORE_CHANGE_ROUTES   node_id's carried routes (primary router) changed
 *   STORE_CHANGE_DNS      the map's "dns" section changed (read the config)
 *   STORE_CHANGE_REPLICAS the live replicas changed; payload: the list
 *                         (server/replica_list.h), which streams get as
 *                         "control_urls" and the shared "derp_map"
 */
enum store_change_kind {
	STORE_CHANGE_NODE = 1,
	STORE_CHANGE_REMOVED = 2,
	STORE_CHANGE_ONLINE = 3,
	STORE_CHANGE_POLICY = 4,
	STORE_CHANGE_ROUTES = 5,
	STORE_CHANGE_DNS = 6,
	STORE_CHANGE_REPLICAS = 7,
};

struct store_change {
	uint64_t version;
	int64_t created_at;
	int kind;
	int64_t node_id;
	const char *payload;	/* borrowed */
};

/* Inside a transaction: appends a change, returns its version. */
int store_change_append(struct store *s, int kind, int64_t node_id, const char *payload,
			uint64_t *version) WM_MUST_CHECK;
/* The last version handed out and the retention floor. */
int store_map_version(struct store *s, uint64_t *version, uint64_t *pruned_through) WM_MUST_CHECK;
typedef int (*store_change_cb)(void *ctx, const struct store_change *c);
/* Every change with a version above `after`, in version order. */
int store_change_list(struct store *s, uint64_t after, store_change_cb cb, void *ctx) WM_MUST_CHECK;
/* Deletes the changes older than `max_age_s` seconds and those beyond the
 * newest `max_count`; returns the new retention floor. */
int store_change_prune(struct store *s, int64_t now, int64_t max_age_s, int64_t max_count,
		       uint64_t *pruned_through) WM_MUST_CHECK;
/* Inside a transaction: the published online flag of a node, set by the
 * server named `by` (replica_name; "" unknown). Clearing it with `only_by`
 * (replicas) clears it only when `by` set it (or nobody is recorded):
 * ERR_NOT_FOUND when another replica has it now. */
int store_node_set_online(struct store *s, int64_t id, bool online, const char *by,
			  bool only_by) WM_MUST_CHECK;
/* Inside a transaction: records `by` as the setter of a node's flag that
 * is set already (its stream moved to this replica). */
int store_node_claim_online(struct store *s, int64_t id, const char *by) WM_MUST_CHECK;
typedef int (*store_id_cb)(void *ctx, int64_t id);
/* The nodes whose published online flag is set; store_node_online_by():
 * those the server `by` set, or nobody is recorded as having set. */
int store_node_online_list(struct store *s, store_id_cb cb, void *ctx) WM_MUST_CHECK;
int store_node_online_by(struct store *s, const char *by, store_id_cb cb, void *ctx)
	WM_MUST_CHECK;
/* Inside a transaction (replicas): clears the online flags set by replicas
 * that are gone (no record in `replicas` renewed at or after live_after)
 * and returns those nodes' ids (ascending, malloc'd). */
int store_node_online_orphans(struct store *s, int64_t live_after, int64_t **ids, size_t *n)
	WM_MUST_CHECK;

/*
 * Replicas (PostgreSQL): every change appended is announced with NOTIFY on
 * STORE_CHANGES_CHANNEL carrying its version, delivered when it commits.
 * A listener is a connection of its own that waits for them; the change
 * itself is read with store_change_list(). Notifications are a hint, not a
 * record: after a lost connection (store_listener_wait() < 0, reconnected
 * at the next wait) the caller reads the log from the last version it
 * applied. SQLite: ERR_UNPROCESSABLE (one process owns the file).
 */
#define STORE_CHANGES_CHANNEL "wm_changes"
struct store_listener;
int store_listener_open(const char *url, struct store_listener **out) WM_MUST_CHECK;
/* 1 with the highest version announced (all queued ones taken), 0 after
 * timeout_ms, or an error (connection lost). */
int store_listener_wait(struct store_listener *l, int timeout_ms,
			uint64_t *version) WM_MUST_CHECK;
void store_listener_close(struct store_listener *l);

/* A lease: a session of its own for advisory locks that elect one replica
 * for a job; the database releases them when the session ends (the replica
 * died or lost the database). store_lease_try(): 1 taken (or already held
 * by this lease), 0 held by another session, or an error.
 * store_lease_check(): 0 while the session (and so its locks) lives; an
 * error means they are lost: try again to take them. */
struct store_lease;
int store_lease_open(const char *url, struct store_lease **out) WM_MUST_CHECK;
int store_lease_try(struct store_lease *l, int64_t key) WM_MUST_CHECK;
int store_lease_check(struct store_lease *l) WM_MUST_CHECK;
void store_lease_close(struct store_lease *l);

/*
 * The replica list (migration 0008): one row per live wiremesh-server.
 * store_replica_beat(), inside a transaction: takes the list's row lock
 * (replicas beat one at a time), refuses with ERR_EXISTS (and the other's
 * name in `clash`) when another replica whose heartbeat is at or after
 * `live_after` announces the same DERP region id, deletes the rows not
 * live (all others too when `exclusive`: SQLite, one server per file), and
 * writes this replica's row with heartbeat `now`.
 * store_replica_list(): the live rows, by name.
 * store_replica_publish(), inside a transaction: stores `list` as the one
 * published; *changed false when it was already (nothing to publish).
 * store_replica_leave(): deletes one row (a clean stop).
 */
struct store_replica {
	char name[600];			/* server_url, else "derp:HOST:PORT" */
	char server_url[512];
	int64_t derp_region_id;		/* 0: no embedded relay region */
	const char *derp_region;	/* JSON; borrowed ("" none) */
	int64_t started_at, heartbeat_at;
};
int store_replica_beat(struct store *s, const struct store_replica *self, int64_t now,
		       int64_t live_after, bool exclusive, char *clash, size_t clashlen) WM_MUST_CHECK;
typedef int (*store_replica_cb)(void *ctx, const struct store_replica *r);
int store_replica_list(struct store *s, int64_t live_after, store_replica_cb cb,
		       void *ctx) WM_MUST_CHECK;
int store_replica_publish(struct store *s, const char *list, bool *changed) WM_MUST_CHECK;
int store_replica_leave(struct store *s, const char *name) WM_MUST_CHECK;
/* Unix seconds by the database's clock (PostgreSQL: one clock for every
 * replica's heartbeats, whatever their own clocks say); SQLite: this
 * machine's. */
int store_clock(struct store *s, int64_t *now) WM_MUST_CHECK;

/* Online backup of the whole SQLite database into `dest_path`.
 * PostgreSQL: ERR_UNPROCESSABLE (use pg_dump). */
int store_backup(struct store *s, const char *dest_path) WM_MUST_CHECK;

#endif
