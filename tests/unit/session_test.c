// SPDX-License-Identifier: MIT
/* Admin console sessions: the Cookie header parser (server/session.c) and
 * the store's session rows (migration 0007): lookup by hash, use-once
 * sign-in links, idle and absolute purge, the cap on live sessions. */
#include <check.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sodium.h>

#include "server/session.h"
#include "server/store.h"

START_TEST(cookie_find)
{
	char v[65];

	ck_assert_int_eq(session_cookie_find("a=1; wm_session=abc; b=2", "wm_session", v, sizeof(v)), 0);
	ck_assert_str_eq(v, "abc");
	ck_assert_int_eq(session_cookie_find("wm_session=x", "wm_session", v, sizeof(v)), 0);
	ck_assert_str_eq(v, "x");
	ck_assert_int_eq(session_cookie_find("a=1;\twm_session=y", "wm_session", v, sizeof(v)), 0);
	ck_assert_str_eq(v, "y");
	/* a longer name that starts the same is another cookie */
	ck_assert_int_eq(session_cookie_find("wm_session_old=1; __Host-wm_session=z", "wm_session",
	    v, sizeof(v)), ERR_NOT_FOUND);
	ck_assert_int_eq(session_cookie_find("__Host-wm_session=z", "__Host-wm_session", v, sizeof(v)), 0);
	ck_assert_str_eq(v, "z");
	ck_assert_int_eq(session_cookie_find(NULL, "wm_session", v, sizeof(v)), ERR_NOT_FOUND);
	ck_assert_int_eq(session_cookie_find("", "wm_session", v, sizeof(v)), ERR_NOT_FOUND);
	ck_assert_int_eq(session_cookie_find("wm_session", "wm_session", v, sizeof(v)), ERR_NOT_FOUND);
	ck_assert_int_eq(session_cookie_find("wm_session=", "wm_session", v, sizeof(v)), 0);
	ck_assert_str_eq(v, "");
	ck_assert_int_eq(session_cookie_find("wm_session=0123456789", "wm_session", v, 5), ERR_TOO_LARGE);
	ck_assert_str_eq(v, "");
}
END_TEST

static char dbpath[64];

static struct store *
open_tmp(void)
{
	struct store *s = NULL;
	int fd;

	ck_assert_int_ge(sodium_init(), 0);
	snprintf(dbpath, sizeof(dbpath), "/tmp/wm-session-XXXXXX");
	fd = mkstemp(dbpath);
	ck_assert_int_ge(fd, 0);
	close(fd);
	unlink(dbpath);
	ck_assert_int_eq(store_open(dbpath, &s), 0);
	return s;
}

static void
close_tmp(struct store *s)
{
	char p[96];

	store_close(s);
	unlink(dbpath);
	snprintf(p, sizeof(p), "%s-wal", dbpath);
	unlink(p);
	snprintf(p, sizeof(p), "%s-shm", dbpath);
	unlink(p);
}

static void
mk(struct store_session *ss, uint8_t tag, const char *kind, int64_t now, int64_t max_s)
{
	memset(ss, 0, sizeof(*ss));
	memset(ss->hash, tag, sizeof(ss->hash));
	strcpy(ss->kind, kind);
	strcpy(ss->subject, "apikey:0123456789ab");
	strcpy(ss->apikey_prefix, "0123456789ab");
	ss->created_at = ss->last_used_at = now;
	ss->expires_at = now + max_s;
}

START_TEST(store_rows)
{
	struct store *s = open_tmp();
	struct store_session a, b, got;
	int64_t now = 1000000;

	mk(&a, 1, "session", now, 3600);
	ck_assert_int_eq(store_session_insert(s, &a, 600, 10), 0);
	ck_assert_int_gt(a.id, 0);
	ck_assert_int_eq(store_session_get(s, a.hash, &got), 0);
	ck_assert_int_eq(got.id, a.id);
	ck_assert_str_eq(got.kind, "session");
	ck_assert_str_eq(got.apikey_prefix, "0123456789ab");
	ck_assert_int_eq(got.expires_at, now + 3600);
	mk(&b, 1, "session", now, 3600);	/* same token hash: refused */
	ck_assert_int_eq(store_session_insert(s, &b, 600, 10), ERR_EXISTS);
	ck_assert_int_eq(store_session_touch(s, a.id, now + 100), 0);
	ck_assert_int_eq(store_session_get(s, a.hash, &got), 0);
	ck_assert_int_eq(got.last_used_at, now + 100);
	/* a touch never moves last use backwards */
	ck_assert_int_eq(store_session_touch(s, a.id, now + 50), 0);
	ck_assert_int_eq(store_session_get(s, a.hash, &got), 0);
	ck_assert_int_eq(got.last_used_at, now + 100);

	/* idle: unused for 600 s is purged; absolute: past expires_at */
	ck_assert_int_eq(store_session_purge(s, now + 699, 600), 0);
	ck_assert_int_eq(store_session_get(s, a.hash, &got), 0);
	ck_assert_int_eq(store_session_purge(s, now + 700, 600), 0);
	ck_assert_int_eq(store_session_get(s, a.hash, &got), ERR_NOT_FOUND);
	mk(&a, 2, "session", now, 60);
	ck_assert_int_eq(store_session_insert(s, &a, 6000, 10), 0);
	ck_assert_int_eq(store_session_purge(s, now + 60, 6000), 0);
	ck_assert_int_eq(store_session_get(s, a.hash, &got), ERR_NOT_FOUND);

	/* a sign-in link is taken once */
	mk(&a, 3, "onetime", now, 900);
	ck_assert_int_eq(store_session_insert(s, &a, 600, 10), 0);
	ck_assert_int_eq(store_session_take(s, a.hash, &got), 0);
	ck_assert_str_eq(got.kind, "onetime");
	ck_assert_int_eq(store_session_take(s, a.hash, &got), ERR_NOT_FOUND);

	/* delete */
	mk(&a, 4, "session", now, 900);
	ck_assert_int_eq(store_session_insert(s, &a, 600, 10), 0);
	ck_assert_int_eq(store_session_delete(s, a.id), 0);
	ck_assert_int_eq(store_session_delete(s, a.id), ERR_NOT_FOUND);
	close_tmp(s);
}
END_TEST

START_TEST(store_cap)
{
	struct store *s = open_tmp();
	struct store_session a;
	int64_t now = 2000000;

	for (int i = 0; i < 3; i++) {
		mk(&a, (uint8_t)(10 + i), "session", now, 3600);
		ck_assert_int_eq(store_session_insert(s, &a, 600, 3), 0);
	}
	mk(&a, 20, "session", now, 3600);
	ck_assert_int_eq(store_session_insert(s, &a, 600, 3), ERR_EXHAUSTED);
	/* once the others are idle past the limit, they make room */
	mk(&a, 20, "session", now + 600, 3600);
	ck_assert_int_eq(store_session_insert(s, &a, 600, 3), 0);
	close_tmp(s);
}
END_TEST

Suite *
session_suite(void)
{
	Suite *s = suite_create("session");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, cookie_find);
	tcase_add_test(tc, store_rows);
	tcase_add_test(tc, store_cap);
	suite_add_tcase(s, tc);
	return s;
}
