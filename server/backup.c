// SPDX-License-Identifier: MIT
/*
 * Backup and restore of the server's database.
 *
 * backup: SQLite's online backup API copies the live database page by page
 * under one read transaction, so the copy is consistent even while a server
 * writes (WAL mode lets it go on writing). The copy is a single file, mode
 * 0600, checked with PRAGMA integrity_check before we say it is good.
 *
 * restore: the server must be stopped. The backup is copied next to the
 * database, opened there (which applies any migration it lacks and refuses
 * a backup newer than this binary) and checked; only then does it replace
 * the database. The old database and its -wal/-shm files are kept beside it
 * as PATH.pre-restore (SQLite names those files after the database, so the
 * renamed set stays usable).
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.h"
#include "common/util.h"
#include "server/backup.h"
#include "server/server.h"
#include "server/store.h"

static int __attribute__((format(printf, 1, 2)))
fail(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "wiremesh-server: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return 1;
}

static void
usage(FILE *f)
{
	fputs("usage: wiremesh-server backup [--config FILE] [--db PATH] --out FILE\n"
	    "       wiremesh-server restore [--config FILE] [--db PATH] --from FILE\n"
	    "\n"
	    "backup   copies the database with SQLite's online backup; safe while the\n"
	    "         server runs. FILE must not exist; it is written with mode 0600.\n"
	    "restore  replaces the database with a backup (stop the server first).\n"
	    "         The backup is checked and migrated first; a backup made by a newer\n"
	    "         wiremesh-server is refused. The old database is kept as PATH.pre-restore.\n"
	    "\n"
	    "The database path comes from --db, else WIREMESH_DB, else the config file\n"
	    "(\"db\"), else /var/lib/wiremesh/db.sqlite.\n", f);
}

/* Opens a database, checks it and reports its schema version. */
static int
check_db(const char *path, int *version)
{
	struct store *st;
	int r;

	if ((r = store_open(path, &st)) != 0)
		return r;
	r = store_integrity_check(st);
	*version = store_schema_version(st);
	store_close(st);
	return r;
}

static int
do_backup(const char *db, const char *out)
{
	struct store *st;
	struct stat sb;
	int fd, r, version = 0;

	if (store_url_is_postgres(db))
		return fail("the database is PostgreSQL: back it up with pg_dump "
		    "(and restore with pg_restore), see docs/ha.md");
	if (stat(db, &sb) != 0)
		return fail("no database at %s", db);
	if ((fd = open(out, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600)) < 0)
		return fail("cannot create %s: %s", out, errno == EEXIST ?
		    "it already exists" : strerror(errno));
	close(fd);
	if ((r = store_open(db, &st)) != 0) {
		unlink(out);
		return fail("cannot open the database %s: %s", db, err_str(r));
	}
	r = store_backup(st, out);
	store_close(st);
	if (r != 0) {
		unlink(out);
		return fail("backup of %s failed: %s", db, err_str(r));
	}
	if ((r = check_db(out, &version)) != 0) {
		unlink(out);
		return fail("the copy does not pass the integrity check: %s", err_str(r));
	}
	if (stat(out, &sb) != 0)
		return fail("cannot stat %s", out);
	printf("backup: %s -> %s (schema version %d, %lld bytes, integrity ok)\n", db, out,
	    version, (long long)sb.st_size);
	return 0;
}

static int
copy_file(const char *from, const char *to)
{
	char buf[65536];
	ssize_t n;
	int in, out, r = 0;

	if ((in = open(from, O_RDONLY | O_CLOEXEC)) < 0)
		return -1;
	if ((out = open(to, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600)) < 0) {
		int e = errno;

		close(in);
		errno = e;
		return -1;
	}
	while ((n = read(in, buf, sizeof(buf))) > 0) {
		for (ssize_t off = 0; off < n;) {
			ssize_t w = write(out, buf + off, (size_t)(n - off));

			if (w < 0) {
				if (errno == EINTR)
					continue;
				r = -1;
				goto out;
			}
			off += w;
		}
	}
	if (n < 0)
		r = -1;
	if (r == 0 && fsync(out) != 0)
		r = -1;
out:
	close(in);
	if (close(out) != 0)
		r = -1;
	return r;
}

/* Renames PATH, PATH-wal and PATH-shm to DST, DST-wal, DST-shm; missing ones are fine. */
static int
rename_set(const char *path, const char *dst)
{
	static const char *const sfx[] = { "", "-wal", "-shm", "-journal" };

	for (size_t i = 0; i < ARRAY_SIZE(sfx); i++) {
		char a[1100], b[1100];

		snprintf(a, sizeof(a), "%s%s", path, sfx[i]);
		snprintf(b, sizeof(b), "%s%s", dst, sfx[i]);
		if (rename(a, b) != 0 && errno != ENOENT)
			return -1;
	}
	return 0;
}

static int
do_restore(const char *db, const char *from)
{
	char tmp[1100], old[1100];
	int r, version = 0;

	if (store_url_is_postgres(db))
		return fail("the database is PostgreSQL: restore it with pg_restore "
		    "(a backup made with pg_dump), see docs/ha.md");
	if (access(from, R_OK) != 0)
		return fail("cannot read the backup %s", from);
	if ((r = store_file_schema_version(from, &version)) != 0)
		return fail("%s is not a wiremesh database%s", from,
		    r == ERR_IO ? " (not an SQLite file)" : " (no schema_migrations table)");
	snprintf(tmp, sizeof(tmp), "%s.restoring", db);
	snprintf(old, sizeof(old), "%s.pre-restore", db);
	if (copy_file(from, tmp) != 0) {
		int e = errno;

		return fail("cannot copy %s to %s: %s%s", from, tmp, strerror(e),
		    e == EEXIST ? " (left over from an interrupted restore? remove it)" : "");
	}
	/* Opening applies missing migrations and refuses a newer schema. */
	if ((r = check_db(tmp, &version)) != 0) {
		unlink(tmp);
		return fail("%s cannot be restored: %s", from, r == ERR_SCHEMA ?
		    "it was made by a newer wiremesh-server" : err_str(r));
	}
	if (rename_set(db, old) != 0) {
		unlink(tmp);
		return fail("cannot move the current database aside to %s: %s", old, strerror(errno));
	}
	if (rename(tmp, db) != 0) {
		int e = errno;

		if (rename_set(old, db) != 0)
			return fail("cannot put %s in place (%s) nor move %s back", tmp, strerror(e), old);
		return fail("cannot put %s in place: %s", tmp, strerror(e));
	}
	printf("restore: %s -> %s (schema version %d, integrity ok); previous database kept as %s\n",
	    from, db, version, old);
	return 0;
}

int
backup_main(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "db", required_argument, NULL, 'd' },
		{ "out", required_argument, NULL, 'o' },
		{ "from", required_argument, NULL, 'f' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	bool restore = strcmp(argv[0], "restore") == 0;
	const char *config = NULL, *db = NULL, *file = NULL;
	struct server_config cfg;
	char why[512];
	int ch;

	optind = 1;
	while ((ch = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
		switch (ch) {
		case 'c': config = optarg; break;
		case 'd': db = optarg; break;
		case 'o': if (!restore) file = optarg; else { usage(stderr); return 2; } break;
		case 'f': if (restore) file = optarg; else { usage(stderr); return 2; } break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind < argc || file == NULL) {
		usage(stderr);
		return 2;
	}
	server_config_defaults(&cfg);
	if (config && server_config_file(&cfg, config, why, sizeof(why)) != 0)
		return fail("%s", why);
	if (server_config_env(&cfg, why, sizeof(why)) != 0)
		return fail("environment: %s", why);
	if (db && server_config_set(&cfg, "db", db, why, sizeof(why)) != 0)
		return fail("%s", why);
	log_set_level(LOG_WARN);
	umask(077);
	return restore ? do_restore(cfg.db_path, file) : do_backup(cfg.db_path, file);
}
