// SPDX-License-Identifier: MIT
/* server/store.c, ipam.c, secret.c, replay.c and common/sign.c on real SQLite files. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sodium.h>
#include <sqlite3.h>

#include "common/sign.h"
#include "common/util.h"
#include "server/ipam.h"
#include "server/replay.h"
#include "server/secret.h"
#include "server/server.h"
#include "server/store.h"

static char dbpath[64];

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

	ck_assert_int_eq(store_open(dbpath, &s), 0);
	ck_assert_int_ge(store_schema_version(s), 1);
	ck_assert_int_eq(store_integrity_check(s), 0);
	store_close(s);
	ck_assert_int_eq(store_open(dbpath, &s), 0);
	store_close(s);
}
END_TEST

START_TEST(test_newer_db_refused)
{
	struct store *s;
	sqlite3 *db;

	ck_assert_int_eq(store_open(dbpath, &s), 0);
	store_close(s);
	ck_assert_int_eq(sqlite3_open(dbpath, &db), SQLITE_OK);
	ck_assert_int_eq(sqlite3_exec(db, "INSERT INTO schema_migrations VALUES (9999, 'future', 0)",
	    NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(db);
	ck_assert_int_eq(store_open(dbpath, &s), ERR_SCHEMA);
}
END_TEST

START_TEST(test_users)
{
	struct store *s;
	struct store_user u, u2;

	ck_assert_int_eq(store_open(dbpath, &s), 0);
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

	ck_assert_int_eq(store_open(dbpath, &s), 0);
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

	ck_assert_int_eq(store_open(dbpath, &s), 0);
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

Suite *
store_suite(void)
{
	Suite *s = suite_create("store");
	TCase *tc = tcase_create("store");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_migrate_and_reopen);
	tcase_add_test(tc, test_newer_db_refused);
	tcase_add_test(tc, test_users);
	tcase_add_test(tc, test_nodes_unique);
	tcase_add_test(tc, test_tx_rollback_loses_nothing_else);
	tcase_add_test(tc, test_secrets);
	tcase_add_test(tc, test_sign_verify);
	tcase_add_test(tc, test_replay);
	tcase_add_test(tc, test_ipam);
	tcase_add_test(tc, test_dns_label);
	tcase_add_test(tc, test_config_set);
	suite_add_tcase(s, tc);
	return s;
}
