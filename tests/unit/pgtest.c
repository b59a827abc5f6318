// SPDX-License-Identifier: MIT
/* One PostgreSQL server per unit-test run (see pgtest.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "server/db.h"
#include "tests/unit/pgtest.h"

static char pg_dir[256], pg_pid[32], pg_url[512];
static pid_t started_by;

static void
pg_stop(void)
{
	char cmd[1024];
	const char *top = getenv("WM_TOP");

	if (started_by != getpid() || pg_dir[0] == '\0')
		return;	/* a forked test exiting: the server is the parent's */
	snprintf(cmd, sizeof(cmd), "%s/tests/tools/pg.sh stop '%s' '%s'", top ? top : ".",
	    pg_dir, pg_pid);
	if (system(cmd) != 0)
		fprintf(stderr, "pgtest: stopping PostgreSQL in %s failed\n", pg_dir);
	pg_dir[0] = '\0';
}

static void
chomp(char *s)
{
	s[strcspn(s, "\n")] = '\0';
}

const char *
pgtest_server(void)
{
	const char *env = getenv("WM_TEST_PG_URL"), *top = getenv("WM_TOP");
	char cmd[512];
	FILE *f;

	if (pg_url[0] != '\0')
		return pg_url;
	if (env != NULL && env[0] != '\0') {
		snprintf(pg_url, sizeof(pg_url), "%s", env);
		return pg_url;
	}
	snprintf(cmd, sizeof(cmd), "%s/tests/tools/pg.sh start", top ? top : ".");
	if ((f = popen(cmd, "r")) == NULL)
		return NULL;
	if (fgets(pg_dir, sizeof(pg_dir), f) == NULL || fgets(pg_pid, sizeof(pg_pid), f) == NULL ||
	    fgets(pg_url, sizeof(pg_url), f) == NULL) {
		pg_url[0] = '\0';
	}
	if (pclose(f) != 0 || pg_url[0] == '\0') {
		fprintf(stderr, "pgtest: could not start PostgreSQL with %s\n", cmd);
		pg_url[0] = pg_dir[0] = '\0';
		return NULL;
	}
	chomp(pg_dir);
	chomp(pg_pid);
	chomp(pg_url);
	started_by = getpid();
	atexit(pg_stop);
	return pg_url;
}

int
pgtest_fresh(char *out, size_t n)
{
	static unsigned counter;
	const char *base = pgtest_server();
	struct db *db;
	char sql[128], schema[64];
	int r;

	if (base == NULL)
		return -1;
	snprintf(schema, sizeof(schema), "t_%ld_%d_%u", (long)time(NULL), (int)getpid(), ++counter);
	if (db_open(base, &db) != 0)
		return -1;
	snprintf(sql, sizeof(sql), "CREATE SCHEMA %s", schema);
	r = db_exec(db, sql);
	db_close(db);
	if (r != 0)
		return -1;
	snprintf(out, n, "%s%soptions=-csearch_path%%3D%s", base, strchr(base, '?') ? "&" : "?",
	    schema);
	return 0;
}
