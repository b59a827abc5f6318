/* SPDX-License-Identifier: MIT */
/* The schema migrations embedded in the binary, in ascending version order. */
#ifndef WM_MIGRATIONS_H
#define WM_MIGRATIONS_H

struct migration {
	int version;
	const char *name;
	const char *sql;
};

extern const struct migration migrations[];
extern const int migrations_count;
/* The same versions for PostgreSQL (migrations/pg/NNNN_name.sql). */
extern const struct migration pg_migrations[];
extern const int pg_migrations_count;

#endif
