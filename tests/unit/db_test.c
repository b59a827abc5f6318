// SPDX-License-Identifier: MIT
/*
 * server/db.c, db_sqlite.c and db_pg.c: the same tests on a real SQLite file
 * and on a real PostgreSQL server started for the run (tests/unit/pgtest.c).
 */
#include <check.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "server/db.h"
#include "server/migrations.h"
#include "tests/unit/pgtest.h"

static char url[768];
static char sqlite_path[64];
static bool on_pg;

static void
sqlite_setup(void)
{
	int fd;

	on_pg = false;
	snprintf(sqlite_path, sizeof(sqlite_path), "/tmp/wm-db-XXXXXX");
	fd = mkstemp(sqlite_path);
	ck_assert_int_ge(fd, 0);
	close(fd);
	unlink(sqlite_path);
	snprintf(url, sizeof(url), "%s", sqlite_path);
}

static void
sqlite_teardown(void)
{
	char p[96];

	unlink(sqlite_path);
	snprintf(p, sizeof(p), "%s-wal", sqlite_path);
	unlink(p);
	snprintf(p, sizeof(p), "%s-shm", sqlite_path);
	unlink(p);
}

static void
pg_server(void)
{
	ck_assert_msg(pgtest_server() != NULL, "PostgreSQL did not start");
}

static void
pg_setup(void)
{
	on_pg = true;
	ck_assert_int_eq(pgtest_fresh(url, sizeof(url)), 0);
}

static void
pg_teardown(void)
{
}

static void
make_table(struct db *db)
{
	ck_assert_int_eq(db_exec(db, on_pg ?
	    "CREATE TABLE t (id BIGSERIAL PRIMARY KEY, name TEXT UNIQUE, data BYTEA, n BIGINT)" :
	    "CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT UNIQUE, data BLOB, n INTEGER)"), 0);
}

static int64_t
insert(struct db *db, const char *name, const void *data, size_t len, int64_t n)
{
	struct db_stmt *st;
	int64_t id = -1;
	int r;

	ck_assert_int_eq(db_prepare(db, "INSERT INTO t(name, data, n) VALUES (?, ?, ?) "
	    "RETURNING id", &st), 0);
	db_bind_text(st, 1, name);
	if (data != NULL)
		db_bind_blob(st, 2, data, len);
	else
		db_bind_null(st, 2);
	db_bind_int(st, 3, n);
	r = db_step(st);
	if (r == DB_ROW)
		id = db_col_int(st, 0);
	else
		id = r;
	db_finalize(st);
	return id;
}

static int64_t
count_rows(struct db *db, const char *sql)
{
	struct db_stmt *st;
	int64_t n = -1;

	ck_assert_int_eq(db_prepare(db, sql, &st), 0);
	if (db_step(st) == DB_ROW)
		n = db_col_int(st, 0);
	db_finalize(st);
	return n;
}

START_TEST(test_roundtrip)
{
	struct db *db;
	struct db_stmt *st;
	const uint8_t blob[] = { 0, 1, 2, '\\', 'x', 0xff, 0, 0x7f };
	const uint8_t *b;
	size_t len;
	int64_t id1, id2;

	ck_assert_int_eq(db_open(url, &db), 0);
	ck_assert_int_eq(db_kind(db), on_pg ? DB_POSTGRES : DB_SQLITE);
	make_table(db);
	id1 = insert(db, "it's \"quoted\" ?", blob, sizeof(blob), -5000000000LL);
	ck_assert_int_gt(id1, 0);
	id2 = insert(db, NULL, NULL, 0, 7);
	ck_assert_int_gt(id2, id1);
	/* a '?' inside a literal is not a placeholder; -- comments neither */
	ck_assert_int_eq(db_prepare(db, "SELECT id, name, data, n, 'lit?' -- what?\n"
	    "FROM t WHERE n < ? ORDER BY id", &st), 0);
	db_bind_int(st, 1, 100);
	ck_assert_int_eq(db_step(st), DB_ROW);
	ck_assert_int_eq(db_col_int(st, 0), id1);
	ck_assert_str_eq(db_col_text(st, 1), "it's \"quoted\" ?");
	b = db_col_blob(st, 2, &len);
	ck_assert_uint_eq(len, sizeof(blob));
	ck_assert_mem_eq(b, blob, sizeof(blob));
	ck_assert_int_eq(db_col_int(st, 3), -5000000000LL);
	ck_assert_str_eq(db_col_text(st, 4), "lit?");
	ck_assert(!db_col_null(st, 1));
	ck_assert_int_eq(db_step(st), DB_ROW);
	ck_assert(db_col_null(st, 1));
	ck_assert_ptr_null(db_col_text(st, 1));
	ck_assert(db_col_null(st, 2));
	ck_assert_int_eq(db_col_int(st, 3), 7);
	ck_assert_int_eq(db_step(st), DB_DONE);
	db_finalize(st);
	/* changes */
	ck_assert_int_eq(db_prepare(db, "UPDATE t SET n = n + 1 WHERE n > ?", &st), 0);
	db_bind_int(st, 1, -10000000000LL);
	ck_assert_int_eq(db_step(st), DB_DONE);
	ck_assert_int_eq(db_changes(st), 2);
	db_finalize(st);
	/* SQLite's numbered ?NNN, some bound but unused (the store's field
	 * groups bind every column and use a few) */
	ck_assert_int_eq(db_prepare(db, "UPDATE t SET name = ?3, n = ?1 WHERE id = ?5", &st), 0);
	db_bind_int(st, 1, 99);
	db_bind_text(st, 2, "unused");
	db_bind_text(st, 3, "renamed");
	db_bind_null(st, 4);
	db_bind_int(st, 5, id2);
	ck_assert_int_eq(db_step(st), DB_DONE);
	ck_assert_int_eq(db_changes(st), 1);
	db_finalize(st);
	ck_assert_int_eq(count_rows(db, "SELECT n FROM t WHERE name = 'renamed'"), 99);
	ck_assert_int_eq(db_ping(db), 0);
	ck_assert_int_eq(db_integrity_check(db), 0);
	db_close(db);
}
END_TEST

START_TEST(test_unique_and_tx)
{
	struct db *db;
	struct db_stmt *st;

	ck_assert_int_eq(db_open(url, &db), 0);
	make_table(db);
	ck_assert_int_gt(insert(db, "a", "x", 1, 1), 0);
	ck_assert_int_eq(insert(db, "a", "y", 1, 2), ERR_EXISTS);
	ck_assert(!db_retryable(db));
	/* the connection goes on after an error outside a transaction */
	ck_assert_int_gt(insert(db, "b", "y", 1, 2), 0);
	/* rolled back: nothing of it stays */
	ck_assert_int_eq(db_begin(db), 0);
	ck_assert_int_gt(insert(db, "c", "z", 1, 3), 0);
	db_rollback(db);
	ck_assert_int_eq(db_begin(db), 0);
	ck_assert_int_gt(insert(db, "d", "z", 1, 4), 0);
	ck_assert_int_eq(db_commit(db), 0);
	ck_assert_int_eq(db_prepare(db, "SELECT name FROM t ORDER BY name", &st), 0);
	ck_assert_int_eq(db_step(st), DB_ROW);
	ck_assert_str_eq(db_col_text(st, 0), "a");
	ck_assert_int_eq(db_step(st), DB_ROW);
	ck_assert_str_eq(db_col_text(st, 0), "b");
	ck_assert_int_eq(db_step(st), DB_ROW);
	ck_assert_str_eq(db_col_text(st, 0), "d");
	ck_assert_int_eq(db_step(st), DB_DONE);
	db_finalize(st);
	/* a bad statement is an error, not a crash */
	ck_assert_int_eq(db_prepare(db, "SELECT nosuchcolumn FROM t", &st) == 0 ?
	    (db_step(st) < 0 ? (db_finalize(st), 1) : (db_finalize(st), 0)) : 1, 1);
	db_close(db);
}
END_TEST

static int
newest(void)
{
	const struct migration *ms = on_pg ? pg_migrations : migrations;
	int n = on_pg ? pg_migrations_count : migrations_count, v = 0;

	for (int i = 0; i < n; i++)
		v = ms[i].version > v ? ms[i].version : v;
	return v;
}


START_TEST(test_migrate)
{
	struct db *db;
	int v;

	ck_assert_int_eq(db_open(url, &db), 0);
	ck_assert_int_eq(db_migrate(db, &v), 0);
	ck_assert_int_eq(v, newest());
	ck_assert_int_eq(db_migrate(db, &v), 0);
	ck_assert_int_eq(v, newest());
	ck_assert_int_eq(count_rows(db, "SELECT COUNT(*) FROM schema_migrations"),
	    on_pg ? pg_migrations_count : migrations_count);
	/* the tables of every migration exist */
	ck_assert_int_eq(count_rows(db, "SELECT COUNT(*) FROM nodes"), 0);
	ck_assert_int_eq(count_rows(db, "SELECT COUNT(routes_approved) FROM nodes"), 0);
	/* a version missing below the newest (numbers reserved in parallel) is
	 * applied; 0003 is idempotent on both engines */
	ck_assert_int_eq(db_exec(db, "DELETE FROM schema_migrations WHERE version = 3"), 0);
	ck_assert_int_eq(db_migrate(db, &v), 0);
	ck_assert_int_eq(count_rows(db, "SELECT COUNT(*) FROM schema_migrations WHERE version = 3"), 1);
	ck_assert_int_eq(db_exec(db, "INSERT INTO schema_migrations VALUES (9999, 'future', 0)"), 0);
	ck_assert_int_eq(db_migrate(db, &v), ERR_SCHEMA);
	db_close(db);
}
END_TEST

/* Every SQLite migration has its PostgreSQL twin with the same number and
 * name (migrations/pg/NNNN_name.sql), and the other way round. */
START_TEST(test_migrations_paired)
{
	for (int i = 0; i < migrations_count; i++) {
		bool found = false;

		for (int j = 0; j < pg_migrations_count; j++)
			found = found || (pg_migrations[j].version == migrations[i].version &&
			    strcmp(pg_migrations[j].name, migrations[i].name) == 0);
		ck_assert_msg(found, "migrations/%04d_%s.sql has no PostgreSQL twin: add "
		    "migrations/pg/%04d_%s.sql (the same change in PostgreSQL's types)",
		    migrations[i].version, migrations[i].name, migrations[i].version,
		    migrations[i].name);
	}
	ck_assert_msg(migrations_count == pg_migrations_count, "migrations/pg has a migration "
	    "that migrations/ lacks");
}
END_TEST

static void *
migrate_thread(void *arg)
{
	struct db *db;
	int v = 0;

	(void)arg;
	if (db_open(url, &db) != 0)
		return (void *)(intptr_t)-1;
	if (db_migrate(db, &v) != 0)
		v = -1;
	db_close(db);
	return (void *)(intptr_t)v;
}

/* Replicas starting at once: each migration is applied exactly once. */
START_TEST(test_migrate_concurrent)
{
	pthread_t t[4];
	struct db *db;
	void *ret;

	for (int i = 0; i < 4; i++)
		ck_assert_int_eq(pthread_create(&t[i], NULL, migrate_thread, NULL), 0);
	for (int i = 0; i < 4; i++) {
		ck_assert_int_eq(pthread_join(t[i], &ret), 0);
		ck_assert_int_eq((int)(intptr_t)ret, newest());
	}
	ck_assert_int_eq(db_open(url, &db), 0);
	ck_assert_int_eq(count_rows(db, "SELECT COUNT(*) FROM schema_migrations"),
	    on_pg ? pg_migrations_count : migrations_count);
	db_close(db);
}
END_TEST

START_TEST(test_url)
{
	char out[256];

	ck_assert(db_url_is_postgres("postgres://u@h/db"));
	ck_assert(db_url_is_postgres("postgresql://u:p@h:5432/db?sslmode=require"));
	ck_assert(db_url_is_postgres("host=/run/postgresql dbname=wm"));
	ck_assert(!db_url_is_postgres("/var/lib/wiremesh/db.sqlite"));
	ck_assert(!db_url_is_postgres("db.sqlite"));
	ck_assert(!db_url_is_postgres("./a=b.sqlite"));
	ck_assert(!db_url_is_postgres(":memory:"));
	db_url_redact(out, sizeof(out), "postgres://wm:s3cret@db.example.com:5432/wm?sslmode=verify-full");
	ck_assert_str_eq(out, "postgres://wm:***@db.example.com:5432/wm?sslmode=verify-full");
	db_url_redact(out, sizeof(out), "postgresql://wm@db/wm?password=s3cret&sslmode=require");
	ck_assert_str_eq(out, "postgresql://wm@db/wm?password=***&sslmode=require");
	db_url_redact(out, sizeof(out), "host=db user=wm password=s3cret dbname=wm");
	ck_assert_str_eq(out, "host=db user=wm password=*** dbname=wm");
	db_url_redact(out, sizeof(out), "host=db password = 'se cr\\'et' dbname=wm");
	ck_assert_str_eq(out, "host=db password=*** dbname=wm");
	db_url_redact(out, sizeof(out), "postgres://wm@db/wm");
	ck_assert_str_eq(out, "postgres://wm@db/wm");
}
END_TEST

/* Two serializable transactions that read and then write the same rows:
 * one commits, the other fails retryably (the error is classified as such). */
START_TEST(test_pg_serialization_retryable)
{
	struct db *a, *b;
	int ra, rb;

	ck_assert_int_eq(db_open(url, &a), 0);
	ck_assert_int_eq(db_open(url, &b), 0);
	make_table(a);
	/* db_begin() is READ COMMITTED; a caller may still ask for more */
	ck_assert_int_eq(db_exec(a, "BEGIN ISOLATION LEVEL SERIALIZABLE"), 0);
	ck_assert_int_eq(db_exec(b, "BEGIN ISOLATION LEVEL SERIALIZABLE"), 0);
	ck_assert_int_eq(count_rows(a, "SELECT COUNT(*) FROM t"), 0);
	ck_assert_int_eq(count_rows(b, "SELECT COUNT(*) FROM t"), 0);
	ck_assert_int_gt(insert(a, "a", "x", 1, 1), 0);
	ck_assert_int_gt(insert(b, "b", "x", 1, 1), 0);
	ra = db_commit(a);
	rb = db_commit(b);
	ck_assert_int_eq(ra, 0);
	ck_assert_int_eq(rb, ERR_UNAVAILABLE);
	ck_assert(db_retryable(b));
	ck_assert_int_eq(count_rows(a, "SELECT COUNT(*) FROM t"), 1);
	ck_assert(!db_retryable(b));	/* a success clears it */
	db_close(a);
	db_close(b);
}
END_TEST

START_TEST(test_pg_advisory_and_reconnect)
{
	struct db *a, *b;
	int64_t pid;

	ck_assert_int_eq(db_open(url, &a), 0);
	ck_assert_int_eq(db_open(url, &b), 0);
	ck_assert_int_eq(db_advisory_trylock(a, 42), 1);
	ck_assert_int_eq(db_advisory_trylock(b, 42), 0);
	db_advisory_unlock(a, 42);
	ck_assert_int_eq(db_advisory_trylock(b, 42), 1);
	/* b's session ends (as in a database failover): its lock goes with it,
	 * and b reconnects at its next statement outside a transaction */
	pid = count_rows(b, "SELECT pg_backend_pid()");
	{
		struct db_stmt *st;

		ck_assert_int_eq(db_prepare(a, "SELECT pg_terminate_backend(CAST(? AS INTEGER))", &st), 0);
		db_bind_int(st, 1, pid);
		ck_assert_int_eq(db_step(st), DB_ROW);
		db_finalize(st);
	}
	/* the termination is a signal: poll (5 s at most) until the lock is free */
	{
		int got = 0;

		for (int i = 0; i < 250 && (got = db_advisory_trylock(a, 42)) == 0; i++)
			usleep(20000);
		ck_assert_int_eq(got, 1);
	}
	ck_assert_int_lt(db_ping(b), 0);	/* the first statement finds the loss */
	ck_assert_int_eq(db_ping(b), 0);	/* the next one has reconnected */
	ck_assert_int_ne(count_rows(b, "SELECT pg_backend_pid()"), pid);
	db_close(a);
	db_close(b);
}
END_TEST

/* Every session asks the server for keepalives of its own, so a replica
 * that vanishes (its host dead, the network cut) loses its session and its
 * advisory locks in seconds. The test server listens on loopback TCP; the
 * test URL has "options" of its own (search_path), which are kept too. */
START_TEST(test_pg_session_keepalives)
{
	static const char *const want[][2] = {
		{ "SHOW tcp_keepalives_idle", "5" },
		{ "SHOW tcp_keepalives_interval", "2" },
		{ "SHOW tcp_keepalives_count", "3" },
	};
	struct db *a;

	ck_assert_int_eq(db_open(url, &a), 0);
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		struct db_stmt *st;

		ck_assert_int_eq(db_prepare(a, want[i][0], &st), 0);
		ck_assert_int_eq(db_step(st), DB_ROW);
		ck_assert_str_eq(db_col_text(st, 0), want[i][1]);
		db_finalize(st);
	}
	db_close(a);
}
END_TEST

/* A notification sent inside a transaction arrives when it commits, and
 * never when it rolls back. */
START_TEST(test_pg_notify)
{
	struct db *a, *b;
	char payload[64];

	ck_assert_int_eq(db_open(url, &a), 0);
	ck_assert_int_eq(db_open(url, &b), 0);
	ck_assert_int_eq(db_listen(a, "wm_changes"), 0);
	ck_assert_int_eq(db_listen(a, "bad name;"), ERR_INVALID);
	ck_assert_int_eq(db_begin(b), 0);
	ck_assert_int_eq(db_notify(b, "wm_changes", "41"), 0);
	db_rollback(b);
	ck_assert_int_eq(db_begin(b), 0);
	ck_assert_int_eq(db_notify(b, "wm_changes", "42"), 0);
	ck_assert_int_eq(db_wait_notify(a, 200, payload, sizeof(payload)), 0);
	ck_assert_int_eq(db_commit(b), 0);
	ck_assert_int_eq(db_wait_notify(a, 5000, payload, sizeof(payload)), 1);
	ck_assert_str_eq(payload, "42");
	ck_assert_int_eq(db_wait_notify(a, 0, payload, sizeof(payload)), 0);
	db_close(a);
	db_close(b);
}
END_TEST

/* A wrong password: a clear error, and the password in no log line. */
START_TEST(test_pg_password_never_logged)
{
	char bad[800], tmpl[] = "/tmp/wm-dblog-XXXXXX", buf[8192];
	const char *at = strchr(url + 11, ':');
	struct db *db;
	int fd, saved;
	ssize_t n;

	ck_assert_ptr_nonnull(at);
	/* postgres://wiremesh:PASSWORD@... -> postgres://wiremesh:wrong-pw-7781@... */
	snprintf(bad, sizeof(bad), "%.*s:wrong-pw-7781%s", (int)(at - url), url, strchr(url, '@'));
	fd = mkstemp(tmpl);
	ck_assert_int_ge(fd, 0);
	saved = dup(2);
	dup2(fd, 2);
	ck_assert_int_eq(db_open(bad, &db), ERR_IO);
	dup2(saved, 2);
	close(saved);
	lseek(fd, 0, SEEK_SET);
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	unlink(tmpl);
	ck_assert_int_gt(n, 0);
	buf[n] = '\0';
	ck_assert_ptr_null(strstr(buf, "wrong-pw-7781"));
	ck_assert_ptr_nonnull(strstr(buf, "cannot connect to PostgreSQL"));
	ck_assert_ptr_nonnull(strstr(buf, "wiremesh:***@"));
}
END_TEST

static void
add_common(TCase *tc)
{
	tcase_add_test(tc, test_roundtrip);
	tcase_add_test(tc, test_unique_and_tx);
	tcase_add_test(tc, test_migrate);
	tcase_add_test(tc, test_migrate_concurrent);
}

Suite *
db_suite(void)
{
	Suite *s = suite_create("db");
	TCase *lite = tcase_create("sqlite");
	TCase *pg = tcase_create("postgres");

	tcase_add_checked_fixture(lite, sqlite_setup, sqlite_teardown);
	add_common(lite);
	tcase_add_test(lite, test_url);
	tcase_add_test(lite, test_migrations_paired);
	suite_add_tcase(s, lite);

	tcase_add_unchecked_fixture(pg, pg_server, NULL);
	tcase_add_checked_fixture(pg, pg_setup, pg_teardown);
	tcase_set_timeout(pg, 30);
	add_common(pg);
	tcase_add_test(pg, test_pg_serialization_retryable);
	tcase_add_test(pg, test_pg_advisory_and_reconnect);
	tcase_add_test(pg, test_pg_password_never_logged);
	tcase_add_test(pg, test_pg_notify);
	tcase_add_test(pg, test_pg_session_keepalives);
	suite_add_tcase(s, pg);
	return s;
}
