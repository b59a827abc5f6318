/* SPDX-License-Identifier: MIT */
/*
 * Inside the database layer: the operations each backend (db_sqlite.c,
 * db_pg.c) implements. A backend's connection and statement structs start
 * with struct db and struct db_stmt, so db.c can dispatch through ops.
 */
#ifndef WM_DB_INT_H
#define WM_DB_INT_H

#include "server/db.h"

struct db_ops {
	void (*close)(struct db *db);
	int (*exec)(struct db *db, const char *sql);
	int (*prepare)(struct db *db, const char *sql, struct db_stmt **out);
	void (*bind_int)(struct db_stmt *st, int i, int64_t v);
	void (*bind_text)(struct db_stmt *st, int i, const char *v);
	void (*bind_blob)(struct db_stmt *st, int i, const void *v, size_t len);
	void (*bind_null)(struct db_stmt *st, int i);
	int (*step)(struct db_stmt *st);
	bool (*col_null)(struct db_stmt *st, int i);
	int64_t (*col_int)(struct db_stmt *st, int i);
	const char *(*col_text)(struct db_stmt *st, int i);
	const uint8_t *(*col_blob)(struct db_stmt *st, int i, size_t *len);
	int64_t (*changes)(struct db_stmt *st);
	void (*finalize)(struct db_stmt *st);
	int (*begin)(struct db *db);
	int (*integrity_check)(struct db *db);
	int (*backup)(struct db *db, const char *dest_path);
	int (*wait_notify)(struct db *db, int timeout_ms, char *payload, size_t n);
};

struct db {
	const struct db_ops *ops;
	enum db_kind kind;
	bool in_tx;
};

struct db_stmt {
	struct db *db;
};

/* Whether the last statement this thread ran failed retryably: per thread,
 * because the store's other threads use the connection as soon as the
 * failing transaction has released it. */
extern _Thread_local bool db_tls_retryable;

int db_sqlite_open(const char *path, struct db **out);
int db_pg_open(const char *url, struct db **out);

#endif
