/* SPDX-License-Identifier: MIT */
/*
 * Unit tests against a real PostgreSQL: one server per test run, started by
 * tests/tools/pg.sh on first use and stopped (by PID) when the process that
 * started it exits. WM_TEST_PG_URL names an existing server instead.
 *
 * Call pgtest_server() from a Check unchecked fixture (it runs in the runner
 * process, so forked tests share the server); pgtest_fresh() from a test or
 * checked fixture.
 */
#ifndef WM_PGTEST_H
#define WM_PGTEST_H

#include <stddef.h>

/* The server's URL, starting it if needed; NULL (with a message on stderr)
 * when it cannot start. */
const char *pgtest_server(void);
/* A URL to a new, empty schema on that server (search_path set through the
 * URL's options), so every test starts from an empty database. 0 or -1. */
int pgtest_fresh(char *out, size_t n);

#endif
