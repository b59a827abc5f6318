// SPDX-License-Identifier: MIT
/*
 * SQLite backend of the database layer: one connection in WAL mode with
 * foreign keys and a busy timeout. The only file that includes sqlite3.h.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sqlite3.h>

#include "common/log.h"
#include "common/util.h"
#include "server/db_int.h"

#define BUSY_TIMEOUT_MS 5000

struct sdb {
	struct db base;
	sqlite3 *h;
};

struct sstmt {
	struct db_stmt base;
	sqlite3_stmt *h;
	int64_t changes;
};

static sqlite3 *
handle(struct db *db)
{
	return ((struct sdb *)db)->h;
}

static int
map_rc(struct db *db, int rc)
{
	db_tls_retryable = false;
	switch (rc) {
	case SQLITE_OK:
	case SQLITE_DONE:
	case SQLITE_ROW:
		return 0;
	case SQLITE_CONSTRAINT:
		return ERR_EXISTS;
	case SQLITE_NOMEM:
		return ERR_NOMEM;
	case SQLITE_BUSY:
	case SQLITE_LOCKED:
		db_tls_retryable = true;
		return ERR_UNAVAILABLE;
	default:
		log_error("msg=\"sqlite error\" code=%d err=\"%s\"", rc, sqlite3_errmsg(handle(db)));
		return ERR_DB;
	}
}

static void
s_close(struct db *db)
{
	struct sdb *s = (struct sdb *)db;

	if (s->h != NULL)
		sqlite3_close(s->h);
	free(s);
}

static int
s_exec(struct db *db, const char *sql)
{
	char *msg = NULL;
	int rc = sqlite3_exec(handle(db), sql, NULL, NULL, &msg);

	if (rc != SQLITE_OK) {
		if (rc != SQLITE_CONSTRAINT && rc != SQLITE_BUSY)
			log_error("msg=\"sqlite exec failed\" err=\"%s\"", msg ? msg : "?");
		sqlite3_free(msg);
		return map_rc(db, rc);
	}
	return 0;
}

static int
s_prepare(struct db *db, const char *sql, struct db_stmt **out)
{
	struct sstmt *st = calloc(1, sizeof(*st));
	int rc;

	if (st == NULL)
		return ERR_NOMEM;
	rc = sqlite3_prepare_v2(handle(db), sql, -1, &st->h, NULL);
	if (rc != SQLITE_OK) {
		log_error("msg=\"sqlite prepare failed\" err=\"%s\"", sqlite3_errmsg(handle(db)));
		free(st);
		return rc == SQLITE_BUSY ? map_rc(db, rc) : ERR_DB;
	}
	st->base.db = db;
	*out = &st->base;
	return 0;
}

static sqlite3_stmt *
sh(struct db_stmt *st)
{
	return ((struct sstmt *)st)->h;
}

static void s_bind_int(struct db_stmt *st, int i, int64_t v) { sqlite3_bind_int64(sh(st), i, v); }
static void s_bind_null(struct db_stmt *st, int i) { sqlite3_bind_null(sh(st), i); }

static void
s_bind_text(struct db_stmt *st, int i, const char *v)
{
	if (v == NULL)
		sqlite3_bind_null(sh(st), i);
	else
		sqlite3_bind_text(sh(st), i, v, -1, SQLITE_TRANSIENT);
}

static void
s_bind_blob(struct db_stmt *st, int i, const void *v, size_t len)
{
	sqlite3_bind_blob64(sh(st), i, v, len, SQLITE_TRANSIENT);
}

static int
s_step(struct db_stmt *st)
{
	struct sstmt *s = (struct sstmt *)st;
	int rc = sqlite3_step(s->h);

	if (rc == SQLITE_ROW)
		return DB_ROW;
	if (rc == SQLITE_DONE) {
		s->changes = sqlite3_changes(handle(st->db));
		return DB_DONE;
	}
	return map_rc(st->db, rc);
}

static bool
s_col_null(struct db_stmt *st, int i)
{
	return sqlite3_column_type(sh(st), i) == SQLITE_NULL;
}

static int64_t s_col_int(struct db_stmt *st, int i) { return sqlite3_column_int64(sh(st), i); }

static const char *
s_col_text(struct db_stmt *st, int i)
{
	return (const char *)sqlite3_column_text(sh(st), i);
}

static const uint8_t *
s_col_blob(struct db_stmt *st, int i, size_t *len)
{
	const uint8_t *b = sqlite3_column_blob(sh(st), i);

	*len = b ? (size_t)sqlite3_column_bytes(sh(st), i) : 0;
	return b;
}

static int64_t s_changes(struct db_stmt *st) { return ((struct sstmt *)st)->changes; }

static void
s_finalize(struct db_stmt *st)
{
	sqlite3_finalize(sh(st));
	free(st);
}

static int
s_begin(struct db *db)
{
	return s_exec(db, "BEGIN IMMEDIATE");
}

static int
s_integrity_check(struct db *db)
{
	sqlite3_stmt *st = NULL;
	int r = ERR_DB;

	if (sqlite3_prepare_v2(handle(db), "PRAGMA integrity_check", -1, &st, NULL) != SQLITE_OK)
		return ERR_DB;
	if (sqlite3_step(st) == SQLITE_ROW &&
	    strcmp((const char *)sqlite3_column_text(st, 0), "ok") == 0)
		r = 0;
	sqlite3_finalize(st);
	return r;
}

static int
s_backup(struct db *db, const char *dest_path)
{
	sqlite3 *dst = NULL;
	sqlite3_backup *b;
	int r = ERR_IO;

	if (sqlite3_open(dest_path, &dst) != SQLITE_OK)
		goto out;
	b = sqlite3_backup_init(dst, "main", handle(db), "main");
	if (b != NULL) {
		if (sqlite3_backup_step(b, -1) == SQLITE_DONE)
			r = 0;
		sqlite3_backup_finish(b);
	}
out:
	sqlite3_close(dst);
	return r;
}

static const struct db_ops sqlite_ops = {
	.close = s_close, .exec = s_exec, .prepare = s_prepare,
	.bind_int = s_bind_int, .bind_text = s_bind_text, .bind_blob = s_bind_blob,
	.bind_null = s_bind_null, .step = s_step, .col_null = s_col_null,
	.col_int = s_col_int, .col_text = s_col_text, .col_blob = s_col_blob,
	.changes = s_changes, .finalize = s_finalize, .begin = s_begin,
	.integrity_check = s_integrity_check, .backup = s_backup,
};

/* Turning a new file to WAL needs an exclusive lock that SQLite takes
 * without calling the busy handler, so processes opening a new database at
 * once (a server and an admin's CLI, test threads) get SQLITE_BUSY here:
 * retry for as long as the busy timeout. Once the file is WAL, the pragma
 * only reads the mode. */
static int
set_wal(struct db *db)
{
	int r;

	for (int waited = 0; ; waited += 10) {
		r = s_exec(db, "PRAGMA journal_mode=WAL");
		if (r != ERR_UNAVAILABLE || waited >= BUSY_TIMEOUT_MS)
			return r;
		sqlite3_sleep(10);
	}
}

int
db_sqlite_open(const char *path, struct db **out)
{
	struct sdb *s;
	int r;

	if ((s = calloc(1, sizeof(*s))) == NULL)
		return ERR_NOMEM;
	s->base.ops = &sqlite_ops;
	s->base.kind = DB_SQLITE;
	/* Create the file private (0600) before SQLite does: it holds hashed
	 * secrets and node keys, and SQLite gives its -wal and -shm files the
	 * database file's mode. An existing file keeps the mode the admin set. */
	if (strcmp(path, ":memory:") != 0) {
		int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);

		if (fd >= 0)
			close(fd);
	}
	if (sqlite3_open_v2(path, &s->h, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
	    SQLITE_OPEN_FULLMUTEX, NULL) != SQLITE_OK) {
		log_error("msg=\"cannot open database\" path=%s err=\"%s\"", path,
		    s->h ? sqlite3_errmsg(s->h) : "out of memory");
		s_close(&s->base);
		return ERR_IO;
	}
	sqlite3_busy_timeout(s->h, BUSY_TIMEOUT_MS);
	if ((r = set_wal(&s->base)) != 0 ||
	    (r = s_exec(&s->base, "PRAGMA synchronous=FULL")) != 0 ||
	    (r = s_exec(&s->base, "PRAGMA foreign_keys=ON")) != 0) {
		s_close(&s->base);
		return r;
	}
	*out = &s->base;
	return 0;
}

int
db_sqlite_file_version(const char *path, int *version)
{
	sqlite3 *db = NULL;
	sqlite3_stmt *st = NULL;
	int r = ERR_IO;

	*version = 0;
	if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK)
		goto out;
	sqlite3_busy_timeout(db, BUSY_TIMEOUT_MS);
	if (sqlite3_prepare_v2(db, "SELECT name FROM sqlite_master WHERE type = 'table' AND "
	    "name = 'schema_migrations'", -1, &st, NULL) != SQLITE_OK)
		goto out;	/* "file is not a database" surfaces here */
	r = sqlite3_step(st) == SQLITE_ROW ? 0 : ERR_NOT_FOUND;
	sqlite3_finalize(st);
	st = NULL;
	if (r != 0)
		goto out;
	r = ERR_NOT_FOUND;
	if (sqlite3_prepare_v2(db, "SELECT MAX(version) FROM schema_migrations", -1, &st,
	    NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW &&
	    sqlite3_column_type(st, 0) == SQLITE_INTEGER) {
		*version = sqlite3_column_int(st, 0);
		r = 0;
	}
out:
	sqlite3_finalize(st);
	sqlite3_close(db);
	return r;
}
