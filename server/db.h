/* SPDX-License-Identifier: MIT */
/*
 * The database layer under the store: one connection to SQLite or to
 * PostgreSQL, chosen by the URL given to db_open(), behind one small API.
 * The store writes its SQL once, in the dialect both engines share, with `?`
 * placeholders; this layer translates them (`$1`, `$2`… for PostgreSQL),
 * binds values, steps through rows and reports errors as the project's codes.
 *
 * URLs: `postgres://…` and `postgresql://…` URIs and libpq keyword strings
 * (`host=… dbname=…`: anything containing `=`) open PostgreSQL; anything
 * else is a SQLite file path (or ":memory:"). The password may come from the
 * URI, PGPASSWORD or PGPASSFILE (libpq's own rules, `sslmode` included); it
 * is never logged: db_url_redact() is what log lines show.
 *
 * Errors: a unique, foreign-key or check violation is ERR_EXISTS; a
 * serialization failure, deadlock or SQLite busy timeout is ERR_UNAVAILABLE
 * with db_retryable() true (run the whole transaction again); a lost
 * connection is ERR_UNAVAILABLE with db_retryable() false; anything else is
 * ERR_DB. PostgreSQL aborts a transaction at its first failing statement:
 * callers treat any error inside a transaction as the end of it.
 *
 * Threads: a connection and its statements belong to one thread at a time
 * (the store serializes with its mutex). Statement handles are valid until
 * db_finalize(); column values until the next db_step() or db_finalize().
 */
#ifndef WM_DB_H
#define WM_DB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

enum db_kind {
	DB_SQLITE = 1,
	DB_POSTGRES = 2,
};

enum {
	DB_DONE = 0,		/* db_step: no (more) rows */
	DB_ROW = 1,		/* db_step: a row is ready */
	DB_PARAMS_MAX = 32,
	DB_URL_MAX = 512,
};

struct db;
struct db_stmt;

/* True when `url` names a PostgreSQL database (URI or keyword string). */
bool db_url_is_postgres(const char *url);
/* Copies `url` into out with any password replaced by "***". */
void db_url_redact(char *out, size_t n, const char *url);

/* Opens a connection. SQLite: creates the file with mode 0600 when missing,
 * WAL, synchronous=FULL, foreign keys, a 5 s busy timeout. PostgreSQL:
 * connects (10 s timeout unless the URL sets connect_timeout), UTC, and
 * standard_conforming_strings. ERR_IO when the database cannot be opened or
 * reached. New reference: free with db_close(). */
int db_open(const char *url, struct db **out) WM_MUST_CHECK;
void db_close(struct db *db);
enum db_kind db_kind(const struct db *db);

/* Runs SQL text without parameters; several statements separated by `;`
 * are allowed. */
int db_exec(struct db *db, const char *sql) WM_MUST_CHECK;

/* Prepares one statement with `?` placeholders (at most DB_PARAMS_MAX). */
int db_prepare(struct db *db, const char *sql, struct db_stmt **out) WM_MUST_CHECK;
/* Binds parameter i (1-based). Text and blobs are copied. A NULL text binds
 * SQL NULL. */
void db_bind_int(struct db_stmt *st, int i, int64_t v);
void db_bind_text(struct db_stmt *st, int i, const char *v);
void db_bind_blob(struct db_stmt *st, int i, const void *v, size_t len);
void db_bind_null(struct db_stmt *st, int i);
/* Runs the statement (first call) or moves to the next row: DB_ROW, DB_DONE
 * or a negative error. */
int db_step(struct db_stmt *st) WM_MUST_CHECK;
/* Columns of the current row (0-based). NULL reads as 0 / NULL / empty. */
bool db_col_null(struct db_stmt *st, int i);
int64_t db_col_int(struct db_stmt *st, int i);
const char *db_col_text(struct db_stmt *st, int i);
/* Borrowed until the next step; *len set to the byte count. */
const uint8_t *db_col_blob(struct db_stmt *st, int i, size_t *len);
/* Rows changed by the statement once stepped to DB_DONE. */
int64_t db_changes(struct db_stmt *st);
void db_finalize(struct db_stmt *st);

/* Transactions. SQLite: BEGIN IMMEDIATE, the one writer lock taken at once.
 * PostgreSQL: BEGIN (READ COMMITTED): each statement sees what others have
 * committed, and what must not race across processes is made safe by the
 * statements themselves (unique constraints, conditional UPDATEs, row locks,
 * db_xact_lock()); a deadlock fails retryably. */
int db_begin(struct db *db) WM_MUST_CHECK;
int db_commit(struct db *db) WM_MUST_CHECK;
void db_rollback(struct db *db);
/* Whether a transaction is open on this connection. */
bool db_in_tx(const struct db *db);

/* Whether the last statement this thread ran failed in a way worth
 * retrying the whole transaction for (serialization failure, deadlock,
 * busy). Per thread: ask right after the failure. */
bool db_retryable(const struct db *db);
/* A cheap round trip: 0 when the database answers. */
int db_ping(struct db *db) WM_MUST_CHECK;

/* Session-level advisory lock (PostgreSQL pg_advisory_lock / _unlock;
 * SQLite: a no-op that succeeds, one process owns the file). */
int db_advisory_lock(struct db *db, int64_t key) WM_MUST_CHECK;
/* 1 when taken, 0 when another session holds it, or an error. */
int db_advisory_trylock(struct db *db, int64_t key) WM_MUST_CHECK;
void db_advisory_unlock(struct db *db, int64_t key);
/* Inside a transaction: an advisory lock held until it ends, so writers of
 * one kind across processes take turns (PostgreSQL pg_advisory_xact_lock;
 * SQLite: nothing, BEGIN IMMEDIATE already serializes). */
int db_xact_lock(struct db *db, int64_t key) WM_MUST_CHECK;

/* Notifications between processes sharing one PostgreSQL database (the
 * replicas). db_notify() inside a transaction is delivered when it commits,
 * to every session that ran db_listen() on the channel (channel names:
 * [a-z_]+). A session that waits for notifications should do nothing else.
 * db_wait_notify() returns 1 with the payload copied into `payload`, 0 when
 * `timeout_ms` passed, ERR_UNAVAILABLE when the connection is lost (the
 * caller reconnects, listens again and catches up from its own records).
 * SQLite: notify succeeds and does nothing, listen is ERR_UNPROCESSABLE. */
int db_listen(struct db *db, const char *channel) WM_MUST_CHECK;
int db_notify(struct db *db, const char *channel, const char *payload) WM_MUST_CHECK;
int db_wait_notify(struct db *db, int timeout_ms, char *payload, size_t n) WM_MUST_CHECK;

/* Engine-specific maintenance. SQLite: PRAGMA integrity_check and an online
 * copy into dest_path. PostgreSQL: integrity is a round trip (the server
 * checks its own pages) and backups are pg_dump's job: ERR_UNPROCESSABLE. */
int db_integrity_check(struct db *db) WM_MUST_CHECK;
int db_backup(struct db *db, const char *dest_path) WM_MUST_CHECK;
/* The schema version recorded in the SQLite file at `path`, opened read-only
 * (no migrations). ERR_NOT_FOUND when it is an SQLite database but not a
 * wiremesh one, ERR_IO when it is not a database. */
int db_sqlite_file_version(const char *path, int *version) WM_MUST_CHECK;

/* Schema migrations embedded in the binary for this connection's engine:
 * each one not yet recorded in schema_migrations is applied, in order, in
 * its own transaction together with its row, all under one lock so
 * concurrent openers apply each once. ERR_SCHEMA when the database records
 * a version newer than the binary's newest. *version receives the newest. */
int db_migrate(struct db *db, int *version) WM_MUST_CHECK;

#endif
