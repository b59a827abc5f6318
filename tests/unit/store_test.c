// SPDX-License-Identifier: MIT
/*
 * server/store.c, ipam.c, secret.c, replay.c and common/sign.c. The store
 * tests run twice: on real SQLite files and on a real PostgreSQL server
 * started for the run (tests/unit/pgtest.c), each test on a fresh database.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sodium.h>

#include "common/sign.h"
#include "common/util.h"
#include "server/db.h"
#include "server/ipam.h"
#include "server/replay.h"
#include "server/secret.h"
#include "server/server.h"
#include "server/store.h"
#include "tests/unit/pgtest.h"

static char dbpath[64];
static char dburl[768];	/* what store_open() gets: dbpath or a PostgreSQL URL */
static bool on_pg;

static void
setup(void)
{
	int fd;

	ck_assert_int_ge(sodium_init(), 0);
	snprintf(dbpath, sizeof(dbpath), "/tmp/wm-store-XXXXXX");
	fd = mkstemp(dbpath);
	ck_assert_int_ge(fd, 0);
	close(fd);
	unlink(dbpath);
	snprintf(dburl, sizeof(dburl), "%s", dbpath);
	on_pg = false;
}

static void
pg_server(void)
{
	ck_assert_msg(pgtest_server() != NULL, "PostgreSQL did not start");
}

static void
pg_setup(void)
{
	ck_assert_int_ge(sodium_init(), 0);
	ck_assert_int_eq(pgtest_fresh(dburl, sizeof(dburl)), 0);
	on_pg = true;
}

static void
pg_teardown(void)
{
}

static void
teardown(void)
{
	char p[96];

	unlink(dbpath);
	snprintf(p, sizeof(p), "%s-wal", dbpath);
	unlink(p);
	snprintf(p, sizeof(p), "%s-shm", dbpath);
	unlink(p);
}

static void
fill_node(struct store_node *n, int i, int64_t user_id)
{
	memset(n, 0, sizeof(*n));
	memset(n->machine_key, i, KEY_LEN);
	memset(n->node_key, i + 100, KEY_LEN);
	memset(n->disco_key, i + 200, KEY_LEN);
	snprintf(n->hostname, sizeof(n->hostname), "host%d", i);
	snprintf(n->name, sizeof(n->name), "host%d", i);
	n->user_id = user_id;
	n->created_at = 1;
}

START_TEST(test_migrate_and_reopen)
{
	struct store *s;

	ck_assert_int_eq(store_open(dburl, &s), 0);
	ck_assert_int_ge(store_schema_version(s), 1);
	ck_assert_int_eq(store_integrity_check(s), 0);
	store_close(s);
	ck_assert_int_eq(store_open(dburl, &s), 0);
	store_close(s);
}
END_TEST

START_TEST(test_newer_db_refused)
{
	struct store *s;
	struct db *db;

	ck_assert_int_eq(store_open(dburl, &s), 0);
	store_close(s);
	ck_assert_int_eq(db_open(dburl, &db), 0);
	ck_assert_int_eq(db_exec(db, "INSERT INTO schema_migrations VALUES (9999, 'future', 0)"), 0);
	db_close(db);
	ck_assert_int_eq(store_open(dburl, &s), ERR_SCHEMA);
}
END_TEST

START_TEST(test_users)
{
	struct store *s;
	struct store_user u, u2;

	ck_assert_int_eq(store_open(dburl, &s), 0);
	ck_assert_int_eq(store_user_create(s, "alice", &u), 0);
	ck_assert_int_eq(store_user_create(s, "alice", &u2), ERR_EXISTS);
	ck_assert_int_eq(store_user_get(s, "alice", &u2), 0);
	ck_assert_int_eq(u2.id, u.id);
	ck_assert_int_eq(store_user_get(s, "bob", &u2), ERR_NOT_FOUND);
	ck_assert_int_eq(store_user_delete(s, "bob"), ERR_NOT_FOUND);
	ck_assert_int_eq(store_user_delete(s, "alice"), 0);
	store_close(s);
}
END_TEST

START_TEST(test_nodes_unique)
{
	struct store *s;
	struct store_user u;
	struct store_node a, b, got;

	ck_assert_int_eq(store_open(dburl, &s), 0);
	ck_assert_int_eq(store_user_create(s, "alice", &u), 0);
	fill_node(&a, 1, u.id);
	ck_assert_int_eq(addr_parse("100.64.0.1", &a.ipv4), 0);
	ck_assert_int_eq(store_node_insert(s, &a), 0);
	ck_assert_int_gt(a.id, 0);
	/* same machine key: constraint */
	fill_node(&b, 1, u.id);
	snprintf(b.name, sizeof(b.name), "other");
	ck_assert_int_eq(store_node_insert(s, &b), ERR_EXISTS);
	/* same address: constraint */
	fill_node(&b, 2, u.id);
	ck_assert_int_eq(addr_parse("100.64.0.1", &b.ipv4), 0);
	ck_assert_int_eq(store_node_insert(s, &b), ERR_EXISTS);
	/* same name: constraint */
	fill_node(&b, 3, u.id);
	snprintf(b.name, sizeof(b.name), "host1");
	ck_assert_int_eq(store_node_insert(s, &b), ERR_EXISTS);
	ck_assert_int_eq(store_node_get_by_machine(s, a.machine_key, &got), 0);
	ck_assert_str_eq(got.user, "alice");
	ck_assert(addr_equal(&got.ipv4, &a.ipv4));
	ck_assert_int_eq(store_node_name_taken(s, "host1", 0), 1);
	ck_assert_int_eq(store_node_name_taken(s, "host1", a.id), 0);
	ck_assert_int_eq(store_user_delete(s, "alice"), ERR_PRECONDITION);
	ck_assert_int_eq(store_node_delete(s, a.id), 0);
	ck_assert_int_eq(store_node_delete(s, a.id), ERR_NOT_FOUND);
	store_close(s);
}
END_TEST

START_TEST(test_tx_rollback_loses_nothing_else)
{
	struct store *s;
	struct store_user u;
	struct store_node a;

	ck_assert_int_eq(store_open(dburl, &s), 0);
	ck_assert_int_eq(store_user_create(s, "alice", &u), 0);
	ck_assert_int_eq(store_tx_begin(s), 0);
	fill_node(&a, 5, u.id);
	ck_assert_int_eq(store_node_insert(s, &a), 0);
	store_tx_rollback(s);
	ck_assert_int_eq(store_node_get(s, a.id, &a), ERR_NOT_FOUND);
	ck_assert_int_eq(store_user_get(s, "alice", &u), 0);
	store_close(s);
}
END_TEST

static int
count_cb(void *ctx, const void *row)
{
	(void)row;
	(*(int *)ctx)++;
	return 0;
}

START_TEST(test_apikeys)
{
	struct store *s;
	struct store_apikey k, got;
	int n = 0;

	ck_assert_int_eq(store_open(dburl, &s), 0);
	memset(&k, 0, sizeof(k));
	str_copy(k.prefix, "abc123", sizeof(k.prefix));
	memset(k.hash, 0xa5, sizeof(k.hash));
	k.hash[0] = 0;	/* a zero byte in a blob */
	k.created_at = 1000;
	k.expires_at = 5000;
	ck_assert_int_eq(store_apikey_insert(s, &k), 0);
	ck_assert_int_gt(k.id, 0);
	ck_assert_int_eq(store_apikey_insert(s, &k), ERR_EXISTS);
	ck_assert_int_eq(store_apikey_get(s, "abc123", &got), 0);
	ck_assert_int_eq(got.id, k.id);
	ck_assert_mem_eq(got.hash, k.hash, sizeof(k.hash));
	ck_assert_int_eq(got.expires_at, 5000);
	ck_assert_int_eq(got.revoked_at, 0);
	ck_assert_int_eq(store_apikey_touch(s, k.id, 2000), 0);
	ck_assert_int_eq(store_apikey_expire(s, "abc123", 3000), 0);
	ck_assert_int_eq(store_apikey_expire(s, "abc123", 4000), 0);	/* keeps the first */
	ck_assert_int_eq(store_apikey_expire(s, "nope", 4000), ERR_NOT_FOUND);
	ck_assert_int_eq(store_apikey_get(s, "abc123", &got), 0);
	ck_assert_int_eq(got.revoked_at, 3000);
	ck_assert_int_eq(got.last_used_at, 2000);
	ck_assert_int_eq(store_apikey_get(s, "nope", &got), ERR_NOT_FOUND);
	ck_assert_int_eq(store_apikey_list(s, (store_apikey_cb)count_cb, &n), 0);
	ck_assert_int_eq(n, 1);
	store_close(s);
}
END_TEST

START_TEST(test_preauthkeys)
{
	struct store *s;
	struct store_user u;
	struct store_preauthkey k, got;
	int n = 0;

	ck_assert_int_eq(store_open(dburl, &s), 0);
	ck_assert_int_eq(store_user_create(s, "alice", &u), 0);
	memset(&k, 0, sizeof(k));
	str_copy(k.prefix, "pak1", sizeof(k.prefix));
	memset(k.hash, 7, sizeof(k.hash));
	k.user_id = u.id;
	k.reusable = true;
	k.ephemeral = true;
	str_copy(k.tags, "[\"tag:web\"]", sizeof(k.tags));
	k.created_at = 10;
	ck_assert_int_eq(store_preauthkey_insert(s, &k), 0);
	ck_assert_int_gt(k.id, 0);
	ck_assert_int_eq(store_preauthkey_get(s, "pak1", &got), 0);
	ck_assert_str_eq(got.user, "alice");
	ck_assert(got.reusable && got.ephemeral);
	ck_assert_str_eq(got.tags, "[\"tag:web\"]");
	ck_assert_int_eq(got.expires_at, 0);
	ck_assert_int_eq(store_preauthkey_mark_used(s, k.id), 0);
	ck_assert_int_eq(store_preauthkey_mark_used(s, k.id), 0);
	ck_assert_int_eq(store_preauthkey_mark_used(s, k.id + 100), ERR_NOT_FOUND);
	{
		struct store_preauthkey once = k;

		str_copy(once.prefix, "pak2", sizeof(once.prefix));
		once.reusable = false;
		ck_assert_int_eq(store_preauthkey_insert(s, &once), 0);
		ck_assert_int_eq(store_preauthkey_mark_used(s, once.id), 0);
		ck_assert_int_eq(store_preauthkey_mark_used(s, once.id), ERR_USED);
	}
	ck_assert_int_eq(store_preauthkey_expire(s, k.id, 99), 0);
	ck_assert_int_eq(store_preauthkey_get_id(s, k.id, &got), 0);
	ck_assert_int_eq(got.used_count, 2);
	ck_assert_int_eq(got.revoked_at, 99);
	ck_assert_int_eq(store_preauthkey_list(s, "alice", (store_preauthkey_cb)count_cb, &n), 0);
	ck_assert_int_eq(store_preauthkey_list(s, "bob", (store_preauthkey_cb)count_cb, &n), 0);
	ck_assert_int_eq(store_preauthkey_list(s, NULL, (store_preauthkey_cb)count_cb, &n), 0);
	ck_assert_int_eq(n, 4);	/* alice's two, nobody's for bob, all two */
	store_close(s);
}
END_TEST

static int
collect_ids(void *ctx, const struct store_node *n)
{
	int64_t *ids = ctx;

	ids[++ids[0]] = n->id;
	return ids[0] >= 8 ? ERR_EXHAUSTED : 0;	/* a callback's error ends the walk */
}

/* Field groups write only their columns; every column round-trips. */
START_TEST(test_node_fields)
{
	struct store *s;
	struct store_user u, u2;
	struct store_node a, edit, got;
	int64_t ids[10] = { 0 };

	ck_assert_int_eq(store_open(dburl, &s), 0);
	ck_assert_int_eq(store_user_create(s, "alice", &u), 0);
	ck_assert_int_eq(store_user_create(s, "bob", &u2), 0);
	fill_node(&a, 1, u.id);
	ck_assert_int_eq(addr_parse("100.64.0.7", &a.ipv4), 0);
	ck_assert_int_eq(addr_parse("fd7a:115c:a1e0::7", &a.ipv6), 0);
	a.last_seen = 50;
	a.expires_at = 9000;
	str_copy(a.endpoints, "[\"192.0.2.1:41641\"]", sizeof(a.endpoints));
	a.home_derp = 3;
	str_copy(a.routes_advertised, "[\"10.0.0.0/24\"]", sizeof(a.routes_advertised));
	ck_assert_int_eq(store_node_insert(s, &a), 0);
	ck_assert_int_eq(store_node_get(s, a.id, &got), 0);
	ck_assert_mem_eq(got.node_key, a.node_key, KEY_LEN);
	ck_assert_mem_eq(got.disco_key, a.disco_key, KEY_LEN);
	ck_assert(addr_equal(&got.ipv6, &a.ipv6));
	ck_assert_str_eq(got.endpoints, "[\"192.0.2.1:41641\"]");
	ck_assert_int_eq(got.home_derp, 3);
	ck_assert_int_eq(got.expires_at, 9000);
	ck_assert_str_eq(got.routes_advertised, "[\"10.0.0.0/24\"]");
	ck_assert_str_eq(got.routes_approved, "[]");
	ck_assert_int_eq(got.preauth_key_id, 0);
	{
		int64_t *exp = NULL;
		size_t nexp = 0;

		ck_assert_int_eq(store_node_expiring(s, 8999, 9000, &exp, &nexp), 0);
		ck_assert_uint_eq(nexp, 1);
		ck_assert_int_eq(exp[0], a.id);
		free(exp);
		ck_assert_int_eq(store_node_expiring(s, 9000, 20000, &exp, &nexp), 0);
		ck_assert_uint_eq(nexp, 0);
		free(exp);
	}
	/* the admin renames and approves; the node's own fields stay */
	edit = got;
	str_copy(edit.name, "renamed", sizeof(edit.name));
	str_copy(edit.routes_approved, "[\"10.0.0.0/24\"]", sizeof(edit.routes_approved));
	str_copy(edit.endpoints, "[\"lost\"]", sizeof(edit.endpoints));
	edit.user_id = u2.id;
	ck_assert_int_eq(store_node_update_fields(s, &edit, STORE_NODE_NAME | STORE_NODE_APPROVED), 0);
	ck_assert_int_eq(store_node_get(s, a.id, &got), 0);
	ck_assert_str_eq(got.name, "renamed");
	ck_assert_str_eq(got.routes_approved, "[\"10.0.0.0/24\"]");
	ck_assert_str_eq(got.endpoints, "[\"192.0.2.1:41641\"]");
	ck_assert_str_eq(got.user, "alice");
	ck_assert_int_eq(store_node_update_fields(s, &edit, STORE_NODE_AUTH), 0);
	ck_assert_int_eq(store_node_get(s, a.id, &got), 0);
	ck_assert_str_eq(got.user, "bob");
	/* the whole row */
	edit.ipv4.family = 0;
	edit.expires_at = 0;
	ck_assert_int_eq(store_node_update(s, &edit), 0);
	ck_assert_int_eq(store_node_get(s, a.id, &got), 0);
	ck_assert_int_eq(got.ipv4.family, 0);
	ck_assert_int_eq(got.expires_at, 0);
	ck_assert_str_eq(got.endpoints, "[\"lost\"]");
	edit.id = a.id + 1000;
	ck_assert_int_eq(store_node_update_fields(s, &edit, STORE_NODE_NAME), ERR_NOT_FOUND);
	ck_assert_int_eq(store_node_set_last_seen(s, a.id, 77), 0);
	ck_assert_int_eq(store_node_get(s, a.id, &got), 0);
	ck_assert_int_eq(got.last_seen, 77);
	/* list in id order; a callback error stops it and is returned */
	for (int i = 2; i <= 10; i++) {
		fill_node(&edit, i, u.id);
		ck_assert_int_eq(store_node_insert(s, &edit), 0);
	}
	ck_assert_int_eq(store_node_list(s, collect_ids, ids), ERR_EXHAUSTED);
	ck_assert_int_eq(ids[0], 8);
	ck_assert_int_eq(ids[1], a.id);
	for (int i = 2; i <= 8; i++)
		ck_assert_int_gt(ids[i], ids[i - 1]);
	/* ids are never reused */
	ck_assert_int_eq(store_node_delete(s, ids[8]), 0);
	fill_node(&edit, 30, u.id);
	ck_assert_int_eq(store_node_insert(s, &edit), 0);
	ck_assert_int_gt(edit.id, ids[8]);
	store_close(s);
}
END_TEST

static int
policy_ids(void *ctx, const struct store_policy *p)
{
	int64_t *ids = ctx;

	ck_assert_ptr_null(p->text);
	ids[++ids[0]] = p->id;
	return 0;
}

START_TEST(test_policies)
{
	struct store *s;
	struct store_policy p1 = { 0 }, p2 = { 0 }, got;
	int64_t ids[4] = { 0 };

	ck_assert_int_eq(store_open(dburl, &s), 0);
	ck_assert_int_eq(store_policy_latest(s, &got), ERR_NOT_FOUND);
	p1.text = "{\"acls\": []} // it's \"quoted\" ?";
	str_copy(p1.etag, "\"e1\"", sizeof(p1.etag));
	p1.created_at = 5;
	str_copy(p1.created_by, "apikey:abc", sizeof(p1.created_by));
	ck_assert_int_eq(store_policy_insert(s, &p1), 0);
	p2 = p1;
	p2.text = "{}";
	str_copy(p2.etag, "\"e2\"", sizeof(p2.etag));
	ck_assert_int_eq(store_policy_insert(s, &p2), 0);
	ck_assert_int_gt(p2.id, p1.id);
	ck_assert_int_eq(store_policy_latest(s, &got), 0);
	ck_assert_str_eq(got.text, "{}");
	ck_assert_str_eq(got.etag, "\"e2\"");
	store_policy_cleanup(&got);
	ck_assert_int_eq(store_policy_get(s, p1.id, &got), 0);
	ck_assert_str_eq(got.text, p1.text);
	ck_assert_str_eq(got.created_by, "apikey:abc");
	store_policy_cleanup(&got);
	ck_assert_int_eq(store_policy_get(s, p2.id + 1, &got), ERR_NOT_FOUND);
	ck_assert_int_eq(store_policy_history(s, policy_ids, ids), 0);
	ck_assert_int_eq(ids[0], 2);
	ck_assert_int_eq(ids[1], p2.id);
	ck_assert_int_eq(ids[2], p1.id);
	store_close(s);
}
END_TEST

START_TEST(test_sessions)
{
	struct store *s;
	struct store_session a = { 0 }, b, got;

	ck_assert_int_eq(store_open(dburl, &s), 0);
	memset(a.hash, 1, sizeof(a.hash));
	str_copy(a.kind, "session", sizeof(a.kind));
	str_copy(a.subject, "apikey:abc", sizeof(a.subject));
	str_copy(a.apikey_prefix, "abc", sizeof(a.apikey_prefix));
	a.created_at = a.last_used_at = 1000;
	a.expires_at = 5000;
	ck_assert_int_eq(store_session_insert(s, &a, 600, 2), 0);
	ck_assert_int_gt(a.id, 0);
	b = a;
	memset(b.hash, 2, sizeof(b.hash));
	str_copy(b.kind, "onetime", sizeof(b.kind));
	ck_assert_int_eq(store_session_insert(s, &b, 600, 2), 0);
	memset(got.hash, 3, sizeof(got.hash));
	got = b;
	memset(got.hash, 3, sizeof(got.hash));
	ck_assert_int_eq(store_session_insert(s, &got, 600, 2), ERR_EXHAUSTED);
	ck_assert_int_eq(store_session_get(s, a.hash, &got), 0);
	ck_assert_int_eq(got.id, a.id);
	ck_assert_str_eq(got.subject, "apikey:abc");
	ck_assert_int_eq(store_session_touch(s, a.id, 1500), 0);
	ck_assert_int_eq(store_session_get(s, a.hash, &got), 0);
	ck_assert_int_eq(got.last_used_at, 1500);
	/* a one-time sign-in is taken once */
	ck_assert_int_eq(store_session_take(s, b.hash, &got), 0);
	ck_assert_str_eq(got.kind, "onetime");
	ck_assert_int_eq(store_session_take(s, b.hash, &got), ERR_NOT_FOUND);
	/* idle past 600 s at 2200: purged */
	ck_assert_int_eq(store_session_purge(s, 2200, 600), 0);
	ck_assert_int_eq(store_session_get(s, a.hash, &got), ERR_NOT_FOUND);
	ck_assert_int_eq(store_session_delete(s, a.id), ERR_NOT_FOUND);
	store_close(s);
}
END_TEST

/* SQLite copies itself into a file that opens as a store; PostgreSQL says
 * to use pg_dump. */
static int
collect_reg(void *ctx, const struct store_reg *r)
{
	char *ids = ctx;

	strcat(ids, r->id);
	strcat(ids, " ");
	return 0;
}

/* Registrations waiting for a person, as replicas share them: a newer one
 * of the same machine replaces the older, exactly one claim wins, an
 * expired one cannot be claimed, the outcome is listed by time. */
START_TEST(test_registrations)
{
	struct store *s;
	struct store_reg a = { 0 }, b, got;
	char ids[256] = "";

	ck_assert_int_eq(store_open(dburl, &s), 0);
	str_copy(a.id, "00000000000000000000000000000001", sizeof(a.id));
	memset(a.machine_key, 1, KEY_LEN);
	memset(a.node_key, 2, KEY_LEN);
	memset(a.disco_key, 3, KEY_LEN);
	str_copy(a.hostname, "laptop", sizeof(a.hostname));
	str_copy(a.addr, "192.0.2.7", sizeof(a.addr));
	a.created_at = 1000;
	a.expires_at = 1900;
	ck_assert_int_eq(store_reg_insert(s, &a), 0);
	ck_assert_int_eq(store_reg_insert(s, &a), ERR_EXISTS);	/* the id is the key */
	ck_assert_int_eq(store_reg_get(s, a.id, &got), 0);
	ck_assert_str_eq(got.state, "pending");
	ck_assert_str_eq(got.hostname, "laptop");
	ck_assert(!got.has_routes);
	ck_assert_mem_eq(got.node_key, a.node_key, KEY_LEN);
	ck_assert_int_eq(store_reg_machine_known(s, a.machine_key, 5000), 1);
	/* the same machine again: the first is failed, the second pending */
	b = a;
	str_copy(b.id, "00000000000000000000000000000002", sizeof(b.id));
	b.created_at = 1100;
	b.has_routes = true;
	str_copy(b.routes, "[\"10.1.0.0/16\"]", sizeof(b.routes));
	ck_assert_int_eq(store_reg_insert(s, &b), 0);
	ck_assert_int_eq(store_reg_get(s, a.id, &got), 0);
	ck_assert_str_eq(got.state, "failed");
	ck_assert_int_eq(got.ended_at, 1100);
	ck_assert_ptr_nonnull(strstr(got.error, "replaced"));
	ck_assert_int_eq(store_reg_pending(s, 1200, collect_reg, ids), 0);
	ck_assert_str_eq(ids, "00000000000000000000000000000002 ");
	/* a claim: one wins; a second is told it was used */
	ck_assert_int_eq(store_reg_claim(s, a.id, 1200, &got), ERR_USED);
	ck_assert_int_eq(store_reg_claim(s, "00000000000000000000000000000009", 1200, &got),
	    ERR_NOT_FOUND);
	ck_assert_int_eq(store_reg_claim(s, b.id, 1900, &got), ERR_EXPIRED);
	ck_assert_int_eq(store_reg_claim(s, b.id, 1200, &got), 0);
	ck_assert(got.has_routes);
	ck_assert_str_eq(got.routes, "[\"10.1.0.0/16\"]");
	ck_assert_int_eq(store_reg_claim(s, b.id, 1200, &got), ERR_USED);
	ids[0] = 0;
	ck_assert_int_eq(store_reg_pending(s, 1200, collect_reg, ids), 0);
	ck_assert_str_eq(ids, "");
	ck_assert_int_eq(store_reg_finish(s, b.id, 42, "alice", NULL, 1300), 0);
	ck_assert_int_eq(store_reg_finish(s, b.id, 42, "alice", NULL, 1300), ERR_NOT_FOUND);
	ck_assert_int_eq(store_reg_get(s, b.id, &got), 0);
	ck_assert_str_eq(got.state, "done");
	ck_assert_int_eq(got.node_id, 42);
	ck_assert_str_eq(got.login, "alice");
	ids[0] = 0;
	ck_assert_int_eq(store_reg_ended(s, 1100, collect_reg, ids), 0);
	ck_assert_str_eq(ids, "00000000000000000000000000000001 00000000000000000000000000000002 ");
	ids[0] = 0;
	ck_assert_int_eq(store_reg_ended(s, 1200, collect_reg, ids), 0);
	ck_assert_str_eq(ids, "00000000000000000000000000000002 ");
	ck_assert_int_eq(store_reg_machine_known(s, a.machine_key, 1301), 0);
	ck_assert_int_eq(store_reg_machine_known(s, a.machine_key, 1300), 1);
	/* kept until both expired and ended before the cut */
	ck_assert_int_eq(store_reg_purge(s, 1250), 0);
	ck_assert_int_eq(store_reg_get(s, a.id, &got), 0);
	ck_assert_int_eq(store_reg_purge(s, 2000), 0);
	ck_assert_int_eq(store_reg_get(s, a.id, &got), ERR_NOT_FOUND);
	ck_assert_int_eq(store_reg_get(s, b.id, &got), ERR_NOT_FOUND);
	store_close(s);
}
END_TEST

START_TEST(test_backup_and_file_version)
{
	struct store *s, *copy;
	struct store_user u;
	char dest[96];
	int v;

	ck_assert_int_eq(store_open(dburl, &s), 0);
	ck_assert_int_eq(store_user_create(s, "alice", &u), 0);
	ck_assert_int_eq(store_ping(s, 1000), 0);
	ck_assert_int_eq(store_is_postgres(s), on_pg);
	snprintf(dest, sizeof(dest), "%s.bak", dbpath[0] ? dbpath : "/tmp/wm-store-pg");
	if (on_pg) {
		ck_assert_int_eq(store_backup(s, dest), ERR_UNPROCESSABLE);
		ck_assert_int_eq(store_file_schema_version(dburl, &v), ERR_UNPROCESSABLE);
		store_close(s);
		return;
	}
	ck_assert_int_eq(store_backup(s, dest), 0);
	store_close(s);
	ck_assert_int_eq(store_file_schema_version(dest, &v), 0);
	ck_assert_int_gt(v, 0);
	ck_assert_int_eq(store_open(dest, &copy), 0);
	ck_assert_int_eq(store_user_get(copy, "alice", &u), 0);
	store_close(copy);
	unlink(dest);
}
END_TEST

START_TEST(test_secrets)
{
	char *key = NULL, prefix[STORE_PREFIX_MAX], p2[STORE_PREFIX_MAX];
	uint8_t h[STORE_HASH_LEN], h2[STORE_HASH_LEN];

	ck_assert_int_eq(secret_generate(SECRET_AUTH, &key, prefix, h), 0);
	ck_assert(strncmp(key, "wm-auth-", 8) == 0);
	ck_assert_int_eq(secret_parse(SECRET_AUTH, key, p2, h2), 0);
	ck_assert_str_eq(prefix, p2);
	ck_assert(secret_hash_equal(h, h2));
	ck_assert_int_eq(secret_parse(SECRET_API, key, p2, h2), ERR_INVALID);
	key[strlen(key) - 1] = key[strlen(key) - 1] == 'a' ? 'b' : 'a';
	ck_assert_int_eq(secret_parse(SECRET_AUTH, key, p2, h2), 0);
	ck_assert(!secret_hash_equal(h, h2));
	ck_assert_int_eq(secret_parse(SECRET_AUTH, "wm-auth-xyz", p2, h2), ERR_INVALID);
	free_secret(key);
}
END_TEST

START_TEST(test_sign_verify)
{
	uint8_t pk[KEY_LEN], sk[ED25519_SK_LEN];
	char sig[SIGN_HEX_LEN + 1];
	const char *body = "{\"version\":0}";
	const char *nonce = "00112233445566778899aabbccddeeff";

	sign_keypair(pk, sk);
	ck_assert_int_eq(sign_request(sk, "POST", "/machine/map", 1000, nonce, body, strlen(body), sig), 0);
	ck_assert_int_eq(sign_verify(pk, "POST", "/machine/map", 1000, nonce, body, strlen(body), sig), 0);
	ck_assert_int_eq(sign_verify(pk, "POST", "/machine/map", 1001, nonce, body, strlen(body), sig),
	    ERR_BAD_SIGNATURE);
	ck_assert_int_eq(sign_verify(pk, "POST", "/machine/register", 1000, nonce, body, strlen(body), sig),
	    ERR_BAD_SIGNATURE);
	ck_assert_int_eq(sign_verify(pk, "POST", "/machine/map", 1000, nonce, "{}", 2, sig),
	    ERR_BAD_SIGNATURE);
	ck_assert_int_eq(sign_verify(pk, "POST", "/machine/map", 1000, nonce, body, strlen(body), "zz"),
	    ERR_BAD_SIGNATURE);
	ck_assert_int_eq(sign_verify(pk, "POST", "/machine/map", 1000,
	    "00112233445566778899aabbccddeef0", body, strlen(body), sig), ERR_BAD_SIGNATURE);
	ck_assert_int_eq(sign_verify(pk, "POST", "/machine/map", 1000, "short", body,
	    strlen(body), sig), ERR_BAD_SIGNATURE);
	sig[5] = sig[5] == '0' ? '1' : '0';
	ck_assert_int_eq(sign_verify(pk, "POST", "/machine/map", 1000, nonce, body, strlen(body), sig),
	    ERR_BAD_SIGNATURE);
}
END_TEST

START_TEST(test_replay)
{
	struct replay *r;
	uint8_t sig[64] = { 1 }, m1[KEY_LEN] = { 1 }, m2[KEY_LEN] = { 2 };
	size_t machines, entries;

	ck_assert_int_eq(replay_new(16, &r), 0);
	ck_assert_int_eq(replay_check(r, m1, sig, sizeof(sig), 100, 200), 0);
	ck_assert_int_eq(replay_check(r, m1, sig, sizeof(sig), 150, 200), ERR_REPLAY);
	/* another machine's copy of the same bytes is its own entry */
	ck_assert_int_eq(replay_check(r, m2, sig, sizeof(sig), 150, 200), 0);
	sig[0] = 2;
	ck_assert_int_eq(replay_check(r, m1, sig, sizeof(sig), 150, 200), 0);
	/* a machine's share full of live entries: refuse it rather than forget,
	 * and only it */
	for (int i = 3; i < 2000; i++) {
		sig[0] = (uint8_t)i;
		sig[1] = (uint8_t)(i >> 8);
		if (replay_check(r, m1, sig, sizeof(sig), 150, 200) == ERR_EXHAUSTED) {
			ck_assert_int_eq(i, 3 + 14);	/* 16 per machine */
			break;
		}
		ck_assert_int_lt(i, 1999);
	}
	sig[0] = 0xee;
	ck_assert_int_eq(replay_check(r, m2, sig, sizeof(sig), 150, 200), 0);
	/* expired entries free the share; the sweep frees empty machines */
	ck_assert_int_eq(replay_check(r, m1, sig, sizeof(sig), 201, 300), 0);
	replay_sweep(r, 250);
	replay_stats(r, &machines, &entries);
	ck_assert_uint_eq(machines, 1);
	ck_assert_uint_eq(entries, 1);
	replay_free(r);
}
END_TEST

START_TEST(test_ipam)
{
	struct ip_prefix p4, p6;
	struct ip_addr a, b;
	struct ipam *p;
	char s[ADDR_STR_MAX];
	int n = 0;

	ck_assert_int_eq(prefix_parse("100.100.100.96/29", false, &p4), 0);
	ck_assert_int_eq(prefix_parse("fd7a:115c:a1e0::/120", false, &p6), 0);
	ck_assert_int_eq(ipam_new(&p4, &p6, &p), 0);
	/* .97 .. .102 usable except .100 (reserved): 5 addresses */
	while (ipam_alloc(p, AF_INET, &a) == 0) {
		addr_fmt(s, &a);
		ck_assert_str_ne(s, "100.100.100.100");
		ck_assert_str_ne(s, "100.100.100.96");
		ck_assert_str_ne(s, "100.100.100.103");
		n++;
	}
	ck_assert_int_eq(n, 5);
	ck_assert_int_eq(addr_parse("100.100.100.98", &b), 0);
	ck_assert(ipam_taken(p, &b));
	ipam_release(p, &b);
	ck_assert(!ipam_taken(p, &b));
	ck_assert_int_eq(ipam_alloc(p, AF_INET, &a), 0);
	ck_assert(addr_equal(&a, &b));
	ck_assert_int_eq(ipam_alloc(p, AF_INET, &a), ERR_EXHAUSTED);
	ck_assert_int_eq(ipam_alloc(p, AF_INET6, &a), 0);
	addr_fmt(s, &a);
	ck_assert_str_eq(s, "fd7a:115c:a1e0::1");
	ipam_free(p);
}
END_TEST

START_TEST(test_dns_label)
{
	char out[STORE_NAME_MAX];

	server_dns_label(out, "My Laptop!");
	ck_assert_str_eq(out, "my-laptop");
	server_dns_label(out, "web1.example.com");
	ck_assert_str_eq(out, "web1");
	server_dns_label(out, "--__--");
	ck_assert_str_eq(out, "node");
	server_dns_label(out, "Ünïcode-box");
	ck_assert_str_eq(out, "n-code-box");
}
END_TEST

START_TEST(test_config_set)
{
	struct server_config c;
	char why[256];

	server_config_defaults(&c);
	ck_assert_int_eq(server_config_set(&c, "node_expiry", "180d", why, sizeof(why)), 0);
	ck_assert_int_eq(c.node_expiry_s, 180 * 86400);
	ck_assert_int_eq(server_config_set(&c, "prefix_v4", "100.64.0.0/24", why, sizeof(why)), 0);
	ck_assert_int_eq(server_config_set(&c, "prefix_v4", "10.0.0.0/8", why, sizeof(why)),
	    ERR_INVALID);
	ck_assert(strstr(why, "100.64.0.0/10") != NULL);
	ck_assert_int_eq(server_config_set(&c, "bogus", "1", why, sizeof(why)), ERR_INVALID);
	ck_assert_int_eq(server_config_set(&c, "http_threads", "-1", why, sizeof(why)), ERR_INVALID);
}
END_TEST

struct chg_list {
	uint64_t v[16];
	int kind[16];
	size_t n;
};

static int
collect_change(void *ctx, const struct store_change *c)
{
	struct chg_list *l = ctx;

	if (l->n < 16) {
		l->v[l->n] = c->version;
		l->kind[l->n] = c->kind;
		l->n++;
	}
	return 0;
}

/* Versions come from the database: strictly increasing, gapless among
 * committed changes (a rolled-back change gives its number back), the same
 * after the store is closed and opened again (a server restart), listed in
 * order, pruned by count with the floor moving up. */
START_TEST(test_change_versions_across_restart)
{
	struct store *s;
	struct chg_list l = { .n = 0 };
	uint64_t v[6], cur, floor, floor2;

	ck_assert_int_eq(store_open(dburl, &s), 0);
	ck_assert_int_eq(store_map_version(s, &cur, &floor), 0);
	/* continues above what a server before 0004 handed out */
	ck_assert_uint_ge(cur, (uint64_t)(time_now_s() - 60) << 20);
	ck_assert_uint_eq(cur, floor);
	/* outside a transaction: refused */
	ck_assert_int_eq(store_change_append(s, STORE_CHANGE_NODE, 1, "", &v[0]), ERR_PRECONDITION);
	for (int i = 0; i < 3; i++) {
		ck_assert_int_eq(store_tx_begin(s), 0);
		ck_assert_int_eq(store_change_append(s, STORE_CHANGE_NODE, i + 1, "", &v[i]), 0);
		ck_assert_int_eq(store_tx_commit(s), 0);
	}
	ck_assert_uint_eq(v[0], cur + 1);
	ck_assert_uint_eq(v[1], v[0] + 1);
	ck_assert_uint_eq(v[2], v[1] + 1);
	/* a rolled-back change leaves no row and no hole */
	ck_assert_int_eq(store_tx_begin(s), 0);
	ck_assert_int_eq(store_change_append(s, STORE_CHANGE_NODE, 9, "", &v[3]), 0);
	store_tx_rollback(s);
	store_close(s);

	/* "restart" */
	ck_assert_int_eq(store_open(dburl, &s), 0);
	ck_assert_int_eq(store_map_version(s, &cur, &floor2), 0);
	ck_assert_uint_eq(cur, v[2]);
	ck_assert_uint_eq(floor2, floor);
	ck_assert_int_eq(store_tx_begin(s), 0);
	ck_assert_int_eq(store_change_append(s, STORE_CHANGE_ONLINE, 0, "{\"on\":[1],\"off\":[]}", &v[3]), 0);
	ck_assert_int_eq(store_change_append(s, STORE_CHANGE_REMOVED, 2, "{\"all\":true}", &v[4]), 0);
	ck_assert_int_eq(store_tx_commit(s), 0);
	ck_assert_uint_eq(v[3], v[2] + 1);
	ck_assert_uint_eq(v[4], v[3] + 1);
	ck_assert_int_eq(store_change_list(s, floor, collect_change, &l), 0);
	ck_assert_uint_eq(l.n, 5);
	for (size_t i = 0; i < l.n; i++)
		ck_assert_uint_eq(l.v[i], v[i]);
	ck_assert_int_eq(l.kind[3], STORE_CHANGE_ONLINE);
	/* after a version: only the later ones */
	l.n = 0;
	ck_assert_int_eq(store_change_list(s, v[2], collect_change, &l), 0);
	ck_assert_uint_eq(l.n, 2);
	ck_assert_uint_eq(l.v[0], v[3]);
	/* retention by count: the newest 2 stay, the floor is the last pruned */
	ck_assert_int_eq(store_change_prune(s, time_now_s(), 86400, 2, &floor2), 0);
	ck_assert_uint_eq(floor2, v[2]);
	l.n = 0;
	ck_assert_int_eq(store_change_list(s, 0, collect_change, &l), 0);
	ck_assert_uint_eq(l.n, 2);
	ck_assert_int_eq(store_map_version(s, &cur, &floor), 0);
	ck_assert_uint_eq(floor, v[2]);
	ck_assert_uint_eq(cur, v[4]);
	/* by age: everything is older than -1 s */
	ck_assert_int_eq(store_change_prune(s, time_now_s() + 10, 1, 100, &floor2), 0);
	ck_assert_uint_eq(floor2, v[4]);
	store_close(s);
	/* the counter never goes back, even with the log empty */
	ck_assert_int_eq(store_open(dburl, &s), 0);
	ck_assert_int_eq(store_tx_begin(s), 0);
	ck_assert_int_eq(store_change_append(s, STORE_CHANGE_NODE, 1, "", &v[5]), 0);
	ck_assert_int_eq(store_tx_commit(s), 0);
	ck_assert_uint_eq(v[5], v[4] + 1);
	store_close(s);
}
END_TEST

static int
count_replica(void *ctx, const struct store_replica *r)
{
	char *names = ctx;

	strcat(names, r->name);
	strcat(names, r->derp_region[0] ? "+derp;" : ";");
	return 0;
}

/* The replica list (migration 0008): records renewed and listed while
 * live, a DERP region id refused while a live replica has it, publishing
 * only what differs, a clean leave. */
START_TEST(test_replica_list)
{
	struct store *s;
	struct store_replica a = { .name = "https://c1", .server_url = "https://c1",
	    .derp_region_id = 901, .derp_region = "{\"RegionID\":901}" };
	struct store_replica b = { .name = "https://c2", .server_url = "https://c2",
	    .derp_region_id = 901, .derp_region = "{\"RegionID\":901}" };
	char clash[64], names[256] = "";
	bool changed;
	int64_t now = 0;

	ck_assert_int_eq(store_open(dburl, &s), 0);
	/* the heartbeats' clock: the database's (here, the same machine's) */
	ck_assert_int_eq(store_clock(s, &now), 0);
	ck_assert_int_le(llabs(now - time_now_s()), 2);
	/* outside a transaction: refused */
	ck_assert_int_eq(store_replica_beat(s, &a, 1000, 980, false, clash, sizeof(clash)),
	    ERR_PRECONDITION);
	ck_assert_int_eq(store_tx_begin(s), 0);
	ck_assert_int_eq(store_replica_beat(s, &a, 1000, 980, false, clash, sizeof(clash)), 0);
	ck_assert_int_eq(store_tx_commit(s), 0);
	/* the same region id from another replica while c1 is live */
	ck_assert_int_eq(store_tx_begin(s), 0);
	ck_assert_int_eq(store_replica_beat(s, &b, 1010, 990, false, clash, sizeof(clash)),
	    ERR_EXISTS);
	ck_assert_str_eq(clash, "https://c1");
	store_tx_rollback(s);
	/* a region of its own: both listed, by name */
	b.derp_region_id = 902;
	b.derp_region = "{\"RegionID\":902}";
	ck_assert_int_eq(store_tx_begin(s), 0);
	ck_assert_int_eq(store_replica_beat(s, &b, 1010, 990, false, clash, sizeof(clash)), 0);
	ck_assert_int_eq(store_tx_commit(s), 0);
	ck_assert_int_eq(store_replica_list(s, 990, count_replica, names), 0);
	ck_assert_str_eq(names, "https://c1+derp;https://c2+derp;");
	/* c1 not renewed: not live at 1030, then deleted by c2's beat */
	names[0] = 0;
	ck_assert_int_eq(store_replica_list(s, 1005, count_replica, names), 0);
	ck_assert_str_eq(names, "https://c2+derp;");
	ck_assert_int_eq(store_tx_begin(s), 0);
	ck_assert_int_eq(store_replica_beat(s, &b, 1030, 1005, false, clash, sizeof(clash)), 0);
	ck_assert_int_eq(store_tx_commit(s), 0);
	names[0] = 0;
	ck_assert_int_eq(store_replica_list(s, 0, count_replica, names), 0);
	ck_assert_str_eq(names, "https://c2+derp;");
	/* publishing: once per difference */
	ck_assert_int_eq(store_tx_begin(s), 0);
	ck_assert_int_eq(store_replica_publish(s, "[]", &changed), 0);
	ck_assert(!changed);	/* the initial list */
	ck_assert_int_eq(store_replica_publish(s, "[{\"name\":\"x\"}]", &changed), 0);
	ck_assert(changed);
	ck_assert_int_eq(store_replica_publish(s, "[{\"name\":\"x\"}]", &changed), 0);
	ck_assert(!changed);
	ck_assert_int_eq(store_tx_commit(s), 0);
	/* exclusive (one server per SQLite file): the others go */
	ck_assert_int_eq(store_tx_begin(s), 0);
	ck_assert_int_eq(store_replica_beat(s, &a, 1031, 1011, true, clash, sizeof(clash)), 0);
	ck_assert_int_eq(store_tx_commit(s), 0);
	names[0] = 0;
	ck_assert_int_eq(store_replica_list(s, 0, count_replica, names), 0);
	ck_assert_str_eq(names, "https://c1+derp;");
	ck_assert_int_eq(store_replica_leave(s, "https://c1"), 0);
	names[0] = 0;
	ck_assert_int_eq(store_replica_list(s, 0, count_replica, names), 0);
	ck_assert_str_eq(names, "");
	store_close(s);
}
END_TEST

static int
collect_id(void *ctx, int64_t id)
{
	char *out = ctx;

	snprintf(out + strlen(out), 64, "%lld;", (long long)id);
	return 0;
}

static int
collect_primary(void *ctx, const struct store_primary *p)
{
	char *out = ctx;

	snprintf(out + strlen(out), 96, "%s=%lld;", p->prefix, (long long)p->node_id);
	return 0;
}

/* The leader's records (server/replica.c): route primaries, the setters of
 * online flags (claimed, cleared only by their setter, those of replicas
 * gone cleared by the leader) and whether an expiry was published. */
START_TEST(test_leader_records)
{
	struct store *s;
	struct store_user u;
	struct store_node a, b;
	struct store_primary prim[2] = { { "10.77.0.0/24", 0 }, { "fd00::/64", 0 } };
	struct store_replica c1 = { .name = "https://c1", .server_url = "https://c1" };
	char out[256] = "", clash[64];
	int64_t *ids = NULL, now = time_now_s();
	size_t n = 0;
	uint64_t v;

	ck_assert_int_eq(store_open(dburl, &s), 0);
	ck_assert_int_eq(store_user_create(s, "alice", &u), 0);
	fill_node(&a, 1, u.id);
	ck_assert_int_eq(addr_parse("100.64.0.1", &a.ipv4), 0);
	ck_assert_int_eq(store_node_insert(s, &a), 0);
	fill_node(&b, 2, u.id);
	ck_assert_int_eq(addr_parse("100.64.0.2", &b.ipv4), 0);
	ck_assert_int_eq(store_node_insert(s, &b), 0);
	prim[0].node_id = a.id;
	prim[1].node_id = b.id;
	/* primaries: written in a transaction, replaced as a whole */
	ck_assert_int_eq(store_route_primaries_set(s, prim, 2), ERR_PRECONDITION);
	ck_assert_int_eq(store_tx_begin(s), 0);
	ck_assert_int_eq(store_route_primaries_set(s, prim, 2), 0);
	ck_assert_int_eq(store_tx_commit(s), 0);
	ck_assert_int_eq(store_route_primaries_list(s, collect_primary, out), 0);
	snprintf(clash, sizeof(clash), "10.77.0.0/24=%lld;", (long long)a.id);
	ck_assert_ptr_nonnull(strstr(out, clash));
	ck_assert_int_eq(store_tx_begin(s), 0);
	prim[0].node_id = b.id;
	ck_assert_int_eq(store_route_primaries_set(s, prim, 1), 0);
	ck_assert_int_eq(store_tx_commit(s), 0);
	out[0] = 0;
	ck_assert_int_eq(store_route_primaries_list(s, collect_primary, out), 0);
	snprintf(clash, sizeof(clash), "10.77.0.0/24=%lld;", (long long)b.id);
	ck_assert_str_eq(out, clash);

	/* online flags: set by c1, claimed by c2; c1 cannot clear it then */
	ck_assert_int_eq(store_tx_begin(s), 0);
	ck_assert_int_eq(store_node_set_online(s, a.id, true, "https://c1", true), 0);
	ck_assert_int_eq(store_node_set_online(s, b.id, true, "https://c1", true), 0);
	ck_assert_int_eq(store_node_claim_online(s, b.id, "https://c2"), 0);
	ck_assert_int_eq(store_node_set_online(s, b.id, false, "https://c1", true), ERR_NOT_FOUND);
	ck_assert_int_eq(store_tx_commit(s), 0);
	out[0] = 0;
	ck_assert_int_eq(store_node_online_by(s, "https://c2", collect_id, out), 0);
	snprintf(clash, sizeof(clash), "%lld;", (long long)b.id);
	ck_assert_str_eq(out, clash);
	/* c1 live: nothing to clear; c2 (no record) gone: b cleared */
	ck_assert_int_eq(store_tx_begin(s), 0);
	ck_assert_int_eq(store_replica_beat(s, &c1, now, now - 10, false, clash, sizeof(clash)), 0);
	ck_assert_int_eq(store_node_online_orphans(s, now - 10, &ids, &n), 0);
	ck_assert_uint_eq(n, 1);
	ck_assert_int_eq(ids[0], b.id);
	free(ids);
	ck_assert_int_eq(store_tx_commit(s), 0);
	out[0] = 0;
	ck_assert_int_eq(store_node_online_list(s, collect_id, out), 0);
	snprintf(clash, sizeof(clash), "%lld;", (long long)a.id);
	ck_assert_str_eq(out, clash);
	/* its setter clears a's */
	ck_assert_int_eq(store_tx_begin(s), 0);
	ck_assert_int_eq(store_node_set_online(s, a.id, false, "https://c1", true), 0);
	ck_assert_int_eq(store_tx_commit(s), 0);

	/* expiry: published once a NODE change is logged at or after it */
	ck_assert_int_eq(store_tx_begin(s), 0);
	ck_assert_int_eq(store_node_expiry_published(s, a.id, now - 5), 0);
	ck_assert_int_eq(store_change_append(s, STORE_CHANGE_NODE, a.id, "", &v), 0);
	ck_assert_int_eq(store_node_expiry_published(s, a.id, now - 5), 1);
	ck_assert_int_eq(store_node_expiry_published(s, b.id, now - 5), 0);
	ck_assert_int_eq(store_node_expiry_published(s, a.id, now + 60), 0);
	ck_assert_int_eq(store_tx_commit(s), 0);
	store_close(s);
}
END_TEST

static void
add_store_tests(TCase *tc)
{
	tcase_add_test(tc, test_replica_list);
	tcase_add_test(tc, test_leader_records);
	tcase_add_test(tc, test_migrate_and_reopen);
	tcase_add_test(tc, test_newer_db_refused);
	tcase_add_test(tc, test_users);
	tcase_add_test(tc, test_nodes_unique);
	tcase_add_test(tc, test_tx_rollback_loses_nothing_else);
	tcase_add_test(tc, test_apikeys);
	tcase_add_test(tc, test_preauthkeys);
	tcase_add_test(tc, test_node_fields);
	tcase_add_test(tc, test_policies);
	tcase_add_test(tc, test_sessions);
	tcase_add_test(tc, test_registrations);
	tcase_add_test(tc, test_backup_and_file_version);
	tcase_add_test(tc, test_change_versions_across_restart);
}

Suite *
store_suite(void)
{
	Suite *s = suite_create("store");
	TCase *tc = tcase_create("store");
	TCase *pg = tcase_create("store_postgres");

	tcase_add_checked_fixture(tc, setup, teardown);
	add_store_tests(tc);
	tcase_add_test(tc, test_secrets);
	tcase_add_test(tc, test_sign_verify);
	tcase_add_test(tc, test_replay);
	tcase_add_test(tc, test_ipam);
	tcase_add_test(tc, test_dns_label);
	tcase_add_test(tc, test_config_set);
	suite_add_tcase(s, tc);

	/* the same store tests on PostgreSQL, started once for the run */
	tcase_add_unchecked_fixture(pg, pg_server, NULL);
	tcase_add_checked_fixture(pg, pg_setup, pg_teardown);
	tcase_set_timeout(pg, 30);
	add_store_tests(pg);
	suite_add_tcase(s, pg);
	return s;
}
