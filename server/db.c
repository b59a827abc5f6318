// SPDX-License-Identifier: MIT
/*
 * The database layer's front: picks the backend from the URL, dispatches to
 * it, and owns what is the same on both engines: transactions, advisory
 * locks and the migration runner. The migrations themselves are SQL files
 * embedded at build time: migrations/NNNN_name.sql for SQLite and
 * migrations/pg/NNNN_name.sql for PostgreSQL, with the same numbers.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/util.h"
#include "server/db_int.h"
#include "server/migrations.h"

_Thread_local bool db_tls_retryable;

/* pg_advisory_lock key held while migrating: "wmmigr" in ASCII. */
#define MIGRATE_LOCK_KEY 0x776d6d696772LL

bool
db_url_is_postgres(const char *url)
{
	if (strncmp(url, "postgres://", 11) == 0 || strncmp(url, "postgresql://", 13) == 0)
		return true;
	/* libpq keyword strings ("host=/run/pg dbname=wm"); a file path with
	 * '=' in it can still be given as ./path. */
	return strchr(url, '=') != NULL && url[0] != '/' && url[0] != '.';
}

void
db_url_redact(char *out, size_t n, const char *url)
{
	char buf[DB_URL_MAX * 2];
	const char *p;
	size_t o = 0;

	if (strncmp(url, "postgres", 8) == 0 && (p = strstr(url, "://")) != NULL) {
		/* scheme://user:password@host... */
		const char *auth = p + 3, *at = strchr(auth, '@'), *slash = strchr(auth, '/');
		const char *colon = strchr(auth, ':');

		if (at != NULL && (slash == NULL || at < slash) && colon != NULL && colon < at) {
			snprintf(buf, sizeof(buf), "%.*s:***%s", (int)(colon - url), url, at);
			url = buf;
		}
		/* ?password=... in the query */
		if ((p = strstr(url, "password=")) != NULL) {
			const char *end = strchr(p, '&');
			char tmp[DB_URL_MAX * 2];

			snprintf(tmp, sizeof(tmp), "%.*spassword=***%s", (int)(p - url), url,
			    end ? end : "");
			str_copy(buf, tmp, sizeof(buf));
			url = buf;
		}
		str_copy(out, url, n);
		return;
	}
	/* keyword string: password=VALUE or password='VALUE' */
	for (p = url; *p && o + 1 < sizeof(buf); ) {
		if (strncmp(p, "password", 8) == 0 && (p == url || p[-1] == ' ')) {
			const char *q = p + 8;

			while (*q == ' ')
				q++;
			if (*q == '=') {
				q++;
				while (*q == ' ')
					q++;
				if (*q == '\'') {
					for (q++; *q && *q != '\''; q++)
						if (*q == '\\' && q[1])
							q++;
					if (*q)
						q++;
				} else {
					while (*q && *q != ' ')
						q++;
				}
				o += (size_t)snprintf(buf + o, sizeof(buf) - o, "password=***");
				if (o >= sizeof(buf))
					o = sizeof(buf) - 1;
				p = q;
				continue;
			}
		}
		buf[o++] = *p++;
	}
	buf[o] = '\0';
	str_copy(out, buf, n);
}

int
db_open(const char *url, struct db **out)
{
	*out = NULL;
	if (url == NULL || url[0] == '\0')
		return ERR_INVALID;
	if (db_url_is_postgres(url))
		return db_pg_open(url, out);
	return db_sqlite_open(url, out);
}

void
db_close(struct db *db)
{
	if (db != NULL)
		db->ops->close(db);
}

enum db_kind
db_kind(const struct db *db)
{
	return db->kind;
}

int
db_exec(struct db *db, const char *sql)
{
	return db->ops->exec(db, sql);
}

int
db_prepare(struct db *db, const char *sql, struct db_stmt **out)
{
	*out = NULL;
	return db->ops->prepare(db, sql, out);
}

void db_bind_int(struct db_stmt *st, int i, int64_t v) { st->db->ops->bind_int(st, i, v); }
void db_bind_text(struct db_stmt *st, int i, const char *v) { st->db->ops->bind_text(st, i, v); }
void db_bind_null(struct db_stmt *st, int i) { st->db->ops->bind_null(st, i); }

void
db_bind_blob(struct db_stmt *st, int i, const void *v, size_t len)
{
	st->db->ops->bind_blob(st, i, v, len);
}

int db_step(struct db_stmt *st) { return st->db->ops->step(st); }
bool db_col_null(struct db_stmt *st, int i) { return st->db->ops->col_null(st, i); }
int64_t db_col_int(struct db_stmt *st, int i) { return st->db->ops->col_int(st, i); }
int64_t db_changes(struct db_stmt *st) { return st->db->ops->changes(st); }

const char *
db_col_text(struct db_stmt *st, int i)
{
	return st->db->ops->col_text(st, i);
}

const uint8_t *
db_col_blob(struct db_stmt *st, int i, size_t *len)
{
	return st->db->ops->col_blob(st, i, len);
}

void
db_finalize(struct db_stmt *st)
{
	if (st != NULL)
		st->db->ops->finalize(st);
}

int
db_begin(struct db *db)
{
	int r = db->ops->begin(db);

	if (r == 0)
		db->in_tx = true;
	return r;
}

int
db_commit(struct db *db)
{
	int r = db->ops->exec(db, "COMMIT");

	if (r != 0) {
		bool retry = db_tls_retryable;

		(void)db->ops->exec(db, "ROLLBACK");
		db_tls_retryable = retry;
	}
	db->in_tx = false;
	return r;
}

void
db_rollback(struct db *db)
{
	bool retry = db_tls_retryable;

	(void)db->ops->exec(db, "ROLLBACK");
	db_tls_retryable = retry;
	db->in_tx = false;
}

bool
db_in_tx(const struct db *db)
{
	return db->in_tx;
}

bool
db_retryable(const struct db *db)
{
	(void)db;
	return db_tls_retryable;
}

int
db_ping(struct db *db)
{
	struct db_stmt *st;
	int r;

	if ((r = db_prepare(db, "SELECT 1", &st)) != 0)
		return r;
	r = db_step(st);
	db_finalize(st);
	return r == DB_ROW ? 0 : r < 0 ? r : ERR_DB;
}

static int
advisory(struct db *db, const char *sql, int64_t key)
{
	struct db_stmt *st;
	int r;

	if (db->kind != DB_POSTGRES)
		return 1;
	if ((r = db_prepare(db, sql, &st)) != 0)
		return r;
	db_bind_int(st, 1, key);
	r = db_step(st);
	if (r == DB_ROW)
		r = db_col_int(st, 0) ? 1 : 0;
	else if (r == DB_DONE)
		r = ERR_DB;
	db_finalize(st);
	return r;
}

int
db_advisory_lock(struct db *db, int64_t key)
{
	int r = advisory(db, "SELECT 1 FROM (SELECT pg_advisory_lock(?)) AS l", key);

	return r < 0 ? r : 0;
}

int
db_advisory_trylock(struct db *db, int64_t key)
{
	return advisory(db, "SELECT pg_try_advisory_lock(?)", key);
}

int
db_xact_lock(struct db *db, int64_t key)
{
	int r = advisory(db, "SELECT 1 FROM (SELECT pg_advisory_xact_lock(?)) AS l", key);

	return r < 0 ? r : 0;
}

void
db_advisory_unlock(struct db *db, int64_t key)
{
	(void)advisory(db, "SELECT pg_advisory_unlock(?)", key);
}

static bool
channel_ok(const char *c)
{
	if (c[0] == '\0' || strlen(c) > 63)
		return false;
	for (; *c; c++)
		if (!((*c >= 'a' && *c <= 'z') || *c == '_'))
			return false;
	return true;
}

int
db_listen(struct db *db, const char *channel)
{
	char sql[96];

	if (db->kind != DB_POSTGRES)
		return ERR_UNPROCESSABLE;
	if (!channel_ok(channel))
		return ERR_INVALID;
	snprintf(sql, sizeof(sql), "LISTEN %s", channel);
	return db_exec(db, sql);
}

int
db_notify(struct db *db, const char *channel, const char *payload)
{
	struct db_stmt *st;
	int r;

	if (db->kind != DB_POSTGRES)
		return 0;
	if (!channel_ok(channel))
		return ERR_INVALID;
	if ((r = db_prepare(db, "SELECT 1 FROM (SELECT pg_notify(?, ?)) AS n", &st)) != 0)
		return r;
	db_bind_text(st, 1, channel);
	db_bind_text(st, 2, payload);
	r = db_step(st);
	db_finalize(st);
	return r < 0 ? r : 0;
}

int
db_wait_notify(struct db *db, int timeout_ms, char *payload, size_t n)
{
	if (db->ops->wait_notify == NULL)
		return ERR_UNPROCESSABLE;
	return db->ops->wait_notify(db, timeout_ms, payload, n);
}

int
db_integrity_check(struct db *db)
{
	return db->ops->integrity_check(db);
}

int
db_backup(struct db *db, const char *dest_path)
{
	return db->ops->backup(db, dest_path);
}

/* ---- migrations ---- */

static int
query_int(struct db *db, const char *sql, int64_t arg, int *out)
{
	struct db_stmt *st;
	int r;

	*out = 0;
	if ((r = db_prepare(db, sql, &st)) != 0)
		return r;
	if (strchr(sql, '?') != NULL)
		db_bind_int(st, 1, arg);
	if ((r = db_step(st)) == DB_ROW) {
		*out = (int)db_col_int(st, 0);
		r = 0;
	} else if (r == DB_DONE) {
		r = ERR_DB;
	}
	db_finalize(st);
	return r;
}

/* Applies one migration unless it is recorded. Each version is checked on
 * its own (not "above the highest"): numbers are reserved by features built
 * in parallel, so 0007 may be applied before 0004 exists. */
static int
apply(struct db *db, const struct migration *m)
{
	struct db_stmt *st;
	int r, done;

	if ((r = db_begin(db)) != 0)
		return r;
	/* Read again under the write lock: another process may have applied it
	 * since (SQLite has no advisory lock; BEGIN IMMEDIATE serializes). */
	if ((r = query_int(db, "SELECT COUNT(*) FROM schema_migrations WHERE version = ?",
	    m->version, &done)) != 0)
		goto fail;
	if (done) {
		db_rollback(db);
		return 0;
	}
	if ((r = db_exec(db, m->sql)) != 0)
		goto fail;
	if ((r = db_prepare(db, "INSERT INTO schema_migrations(version, name, applied_at) "
	    "VALUES (?, ?, ?)", &st)) != 0)
		goto fail;
	db_bind_int(st, 1, m->version);
	db_bind_text(st, 2, m->name);
	db_bind_int(st, 3, time_now_s());
	r = db_step(st);
	db_finalize(st);
	if (r < 0)
		goto fail;
	if ((r = db_commit(db)) != 0)
		goto failed;
	log_info("msg=\"applied migration\" version=%d name=%s backend=%s", m->version, m->name,
	    db->kind == DB_POSTGRES ? "postgres" : "sqlite");
	return 0;
fail:
	db_rollback(db);
failed:
	log_error("msg=\"migration failed\" version=%d name=%s err=%s", m->version, m->name,
	    err_str(r));
	return r;
}

int
db_migrate(struct db *db, int *version)
{
	const struct migration *ms = db->kind == DB_POSTGRES ? pg_migrations : migrations;
	int count = db->kind == DB_POSTGRES ? pg_migrations_count : migrations_count;
	int r, current = 0, newest = 0;

	*version = 0;
	/* PostgreSQL: replicas starting together take turns. */
	if ((r = db_advisory_lock(db, MIGRATE_LOCK_KEY)) != 0)
		return r;
	if ((r = db_exec(db, "CREATE TABLE IF NOT EXISTS schema_migrations ("
	    "version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)")) != 0)
		goto out;
	if ((r = query_int(db, "SELECT COALESCE(MAX(version), 0) FROM schema_migrations", 0,
	    &current)) != 0)
		goto out;
	for (int i = 0; i < count; i++)
		if (ms[i].version > newest)
			newest = ms[i].version;
	if (current > newest) {
		log_error("msg=\"database schema is newer than this binary; refusing to start\" "
		    "db_version=%d binary_version=%d", current, newest);
		r = ERR_SCHEMA;
		goto out;
	}
	for (int i = 0; i < count; i++)
		if ((r = apply(db, &ms[i])) != 0)
			goto out;
	*version = newest;
out:
	db_advisory_unlock(db, MIGRATE_LOCK_KEY);
	return r;
}
