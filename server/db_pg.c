// SPDX-License-Identifier: MIT
/*
 * PostgreSQL backend of the database layer, over libpq. The only file that
 * includes libpq-fe.h. Statements are sent with PQexecParams: `?` becomes
 * `$n`, integers travel as int8 text, blobs as binary bytea, text with its
 * type left for the server to infer from the column. Results come back as
 * text (bytea in hex, decoded on demand).
 *
 * A lost connection is reset at the next statement outside a transaction,
 * so a replica survives a database restart or failover; inside a
 * transaction the error ends the transaction and the caller retries.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "common/log.h"
#include "common/util.h"
#include "server/db_int.h"

enum {
	OID_BYTEA = 17,
	OID_INT8 = 20,
	OID_TEXT = 25,
};

struct pdb {
	struct db base;
	PGconn *conn;
	char redacted[DB_URL_MAX];
};

struct pstmt {
	struct db_stmt base;
	char *sql;			/* translated */
	int nparams;
	char *values[DB_PARAMS_MAX];
	int lengths[DB_PARAMS_MAX];
	int formats[DB_PARAMS_MAX];
	unsigned int types[DB_PARAMS_MAX];
	bool used[DB_PARAMS_MAX];	/* referenced by the SQL */
	PGresult *res;
	int row;			/* current row; -1 before the first step */
	int nrows;
	int64_t changes;
	unsigned char *blob;		/* decoded bytea of blob_col, freed per step */
	int blob_col;
	size_t blob_len;
};

static PGconn *
conn(struct db *db)
{
	return ((struct pdb *)db)->conn;
}

static void
notice(void *arg, const char *msg)
{
	(void)arg;
	log_debug("msg=\"postgres notice\" text=\"%.*s\"", (int)strcspn(msg, "\n"), msg);
}

/* One line of libpq's message, without the trailing newline. */
static int
msglen(const char *m)
{
	return m ? (int)strcspn(m, "\n") : 0;
}

/* Maps a failed result (or NULL: no result at all) to an error code. */
static int
map_result(struct db *db, PGresult *res)
{
	const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
	const char *m = res ? PQresultErrorMessage(res) : PQerrorMessage(conn(db));

	db_tls_retryable = false;
	if (state == NULL || strncmp(state, "08", 2) == 0 || strncmp(state, "57P", 3) == 0) {
		/* no server answer: connection lost, server shutting down */
		static struct log_ratelimit rl;

		if (log_ratelimit_ok(&rl, 10, 3))
			log_warn("msg=\"postgres unavailable\" err=\"%.*s\"", msglen(m), m ? m : "");
		return ERR_UNAVAILABLE;
	}
	if (strncmp(state, "23", 2) == 0)
		return ERR_EXISTS;
	if (strcmp(state, "40001") == 0 || strcmp(state, "40P01") == 0 ||
	    strcmp(state, "55P03") == 0) {
		db_tls_retryable = true;
		return ERR_UNAVAILABLE;
	}
	if (strcmp(state, "53300") == 0 || strncmp(state, "53", 2) == 0) {
		log_warn("msg=\"postgres out of resources\" sqlstate=%s err=\"%.*s\"", state,
		    msglen(m), m);
		return ERR_UNAVAILABLE;
	}
	log_error("msg=\"postgres error\" sqlstate=%s err=\"%.*s\"", state, msglen(m), m);
	return ERR_DB;
}

/* Outside a transaction, a broken connection is re-established once. */
static int
ensure_conn(struct db *db)
{
	struct pdb *p = (struct pdb *)db;

	if (PQstatus(p->conn) == CONNECTION_OK)
		return 0;
	if (db->in_tx)
		return ERR_UNAVAILABLE;
	PQreset(p->conn);
	if (PQstatus(p->conn) != CONNECTION_OK) {
		static struct log_ratelimit rl;

		db_tls_retryable = false;
		if (!log_ratelimit_ok(&rl, 10, 3))
			return ERR_UNAVAILABLE;
		log_warn("msg=\"postgres reconnect failed\" db=\"%s\" err=\"%.*s\"", p->redacted,
		    msglen(PQerrorMessage(p->conn)), PQerrorMessage(p->conn));
		db_tls_retryable = false;
		return ERR_UNAVAILABLE;
	}
	log_info("msg=\"postgres reconnected\" db=\"%s\"", p->redacted);
	return 0;
}

static void
p_close(struct db *db)
{
	struct pdb *p = (struct pdb *)db;

	if (p->conn != NULL)
		PQfinish(p->conn);
	free(p);
}

static int
p_exec(struct db *db, const char *sql)
{
	PGresult *res;
	int r = 0;

	if ((r = ensure_conn(db)) != 0)
		return r;
	res = PQexec(conn(db), sql);
	switch (PQresultStatus(res)) {
	case PGRES_COMMAND_OK:
	case PGRES_TUPLES_OK:
	case PGRES_EMPTY_QUERY:
		db_tls_retryable = false;
		break;
	default:
		r = map_result(db, res);
	}
	PQclear(res);
	return r;
}

/* Rewrites `?` placeholders as $1, $2… and SQLite's numbered `?NNN` as
 * $NNN, outside quotes and comments; notes which numbers are used. */
static int
translate(const char *sql, char **out, int *nparams, bool used[DB_PARAMS_MAX])
{
	size_t n = strlen(sql), o = 0;
	char *t = malloc(n * 3 + 1);	/* "?" -> "$NN" at most */
	int seq = 0, max = 0;

	if (t == NULL)
		return ERR_NOMEM;
	for (size_t i = 0; i < n; i++) {
		char c = sql[i];

		if (c == '\'' || c == '"') {
			t[o++] = c;
			for (i++; i < n; i++) {
				t[o++] = sql[i];
				if (sql[i] == c)
					break;
			}
		} else if (c == '-' && sql[i + 1] == '-') {
			for (; i < n && sql[i] != '\n'; i++)
				t[o++] = sql[i];
			if (i < n)
				t[o++] = '\n';
		} else if (c == '?') {
			int num;

			if (sql[i + 1] >= '0' && sql[i + 1] <= '9') {
				char *end;

				num = (int)strtol(sql + i + 1, &end, 10);
				i = (size_t)(end - sql) - 1;
			} else {
				num = ++seq;
			}
			if (num < 1 || num > DB_PARAMS_MAX) {
				free(t);
				return ERR_INVALID;
			}
			used[num - 1] = true;
			max = num > max ? num : max;
			o += (size_t)sprintf(t + o, "$%d", num);
		} else {
			t[o++] = c;
		}
	}
	t[o] = '\0';
	*out = t;
	*nparams = max;
	return 0;
}

static int
p_prepare(struct db *db, const char *sql, struct db_stmt **out)
{
	struct pstmt *st = calloc(1, sizeof(*st));
	int r;

	if (st == NULL)
		return ERR_NOMEM;
	if ((r = translate(sql, &st->sql, &st->nparams, st->used)) != 0) {
		free(st);
		log_error("msg=\"statement has too many parameters\"");
		return r;
	}
	st->base.db = db;
	st->row = -1;
	st->blob_col = -1;
	*out = &st->base;
	return 0;
}

static struct pstmt *
ps(struct db_stmt *st)
{
	return (struct pstmt *)st;
}

static void
set_param(struct pstmt *st, int i, char *v, int len, int format, unsigned int type)
{
	if (i < 1 || i > st->nparams) {
		free(v);
		return;
	}
	i--;
	free(st->values[i]);
	st->values[i] = v;
	st->lengths[i] = len;
	st->formats[i] = format;
	st->types[i] = type;
}

static void
p_bind_int(struct db_stmt *st, int i, int64_t v)
{
	char *s = malloc(24);

	if (s != NULL)
		snprintf(s, 24, "%lld", (long long)v);
	set_param(ps(st), i, s, 0, 0, OID_INT8);
}

static void
p_bind_text(struct db_stmt *st, int i, const char *v)
{
	set_param(ps(st), i, v ? strdup(v) : NULL, 0, 0, 0);
}

static void
p_bind_blob(struct db_stmt *st, int i, const void *v, size_t len)
{
	char *b = malloc(len ? len : 1);

	if (b != NULL && len)
		memcpy(b, v, len);
	set_param(ps(st), i, b, (int)len, 1, OID_BYTEA);
}

static void
p_bind_null(struct db_stmt *st, int i)
{
	set_param(ps(st), i, NULL, 0, 0, 0);
}

static void
drop_blob(struct pstmt *st)
{
	if (st->blob != NULL)
		PQfreemem(st->blob);
	st->blob = NULL;
	st->blob_col = -1;
}

static int
p_step(struct db_stmt *base)
{
	struct pstmt *st = ps(base);
	struct db *db = base->db;
	int r;

	drop_blob(st);
	if (st->res == NULL) {
		if ((r = ensure_conn(db)) != 0)
			return r;
		/* A parameter the SQL does not use (numbered ?NNN skipping some)
		 * still needs a type the server knows. */
		for (int i = 0; i < st->nparams; i++)
			if (!st->used[i] && st->types[i] == 0)
				st->types[i] = OID_TEXT;
		st->res = PQexecParams(conn(db), st->sql, st->nparams, st->types,
		    (const char *const *)st->values, st->lengths, st->formats, 0);
		switch (PQresultStatus(st->res)) {
		case PGRES_TUPLES_OK:
		case PGRES_COMMAND_OK:
			db_tls_retryable = false;
			st->nrows = PQntuples(st->res);
			st->changes = strtoll(PQcmdTuples(st->res), NULL, 10);
			break;
		default:
			r = map_result(db, st->res);
			PQclear(st->res);
			st->res = NULL;
			return r;
		}
	}
	if (st->row + 1 < st->nrows) {
		st->row++;
		return DB_ROW;
	}
	st->row = st->nrows;
	return DB_DONE;
}

static bool
p_col_null(struct db_stmt *base, int i)
{
	struct pstmt *st = ps(base);

	if (st->res == NULL || st->row < 0 || st->row >= st->nrows || i >= PQnfields(st->res))
		return true;
	return PQgetisnull(st->res, st->row, i) != 0;
}

static const char *
p_col_text(struct db_stmt *base, int i)
{
	struct pstmt *st = ps(base);

	if (p_col_null(base, i))
		return NULL;
	return PQgetvalue(st->res, st->row, i);
}

static int64_t
p_col_int(struct db_stmt *base, int i)
{
	const char *v = p_col_text(base, i);

	if (v == NULL)
		return 0;
	if (v[0] == 't')	/* boolean */
		return 1;
	if (v[0] == 'f')
		return 0;
	return strtoll(v, NULL, 10);
}

static const uint8_t *
p_col_blob(struct db_stmt *base, int i, size_t *len)
{
	struct pstmt *st = ps(base);
	const char *v = p_col_text(base, i);

	*len = 0;
	if (v == NULL)
		return NULL;
	if (PQftype(st->res, i) != OID_BYTEA) {
		*len = strlen(v);
		return (const uint8_t *)v;
	}
	if (st->blob_col != i) {
		drop_blob(st);
		st->blob = PQunescapeBytea((const unsigned char *)v, &st->blob_len);
		if (st->blob == NULL)
			return NULL;
		st->blob_col = i;
	}
	*len = st->blob_len;
	return st->blob;
}

static int64_t p_changes(struct db_stmt *st) { return ps(st)->changes; }

static void
p_finalize(struct db_stmt *base)
{
	struct pstmt *st = ps(base);

	drop_blob(st);
	PQclear(st->res);
	for (int i = 0; i < st->nparams; i++)
		free(st->values[i]);
	free(st->sql);
	free(st);
}

static int
p_begin(struct db *db)
{
	return p_exec(db, "BEGIN");
}

static int
p_integrity_check(struct db *db)
{
	return db_ping(db);
}

static int
p_backup(struct db *db, const char *dest_path)
{
	(void)db;
	(void)dest_path;
	log_error("msg=\"backups of a PostgreSQL store are taken with pg_dump\"");
	return ERR_UNPROCESSABLE;
}

static int
p_wait_notify(struct db *db, int timeout_ms, char *payload, size_t n)
{
	PGconn *c = conn(db);
	PGnotify *nf;
	struct pollfd pfd;

	for (;;) {
		if (PQconsumeInput(c) == 0 || PQstatus(c) != CONNECTION_OK) {
			log_warn("msg=\"postgres listener connection lost\" err=\"%.*s\"",
			    msglen(PQerrorMessage(c)), PQerrorMessage(c));
			return ERR_UNAVAILABLE;
		}
		if ((nf = PQnotifies(c)) != NULL) {
			str_copy(payload, nf->extra ? nf->extra : "", n);
			PQfreemem(nf);
			return 1;
		}
		if (timeout_ms <= 0)
			return 0;
		pfd.fd = PQsocket(c);
		pfd.events = POLLIN;
		pfd.revents = 0;
		if (pfd.fd < 0)
			return ERR_UNAVAILABLE;
		switch (poll(&pfd, 1, timeout_ms)) {
		case 0:
			return 0;
		case -1:
			if (errno != EINTR)
				return ERR_IO;
			break;
		default:
			break;
		}
		/* one wait, then only what is already buffered */
		timeout_ms = 0;
	}
}

static const struct db_ops pg_ops = {
	.close = p_close, .exec = p_exec, .prepare = p_prepare,
	.bind_int = p_bind_int, .bind_text = p_bind_text, .bind_blob = p_bind_blob,
	.bind_null = p_bind_null, .step = p_step, .col_null = p_col_null,
	.col_int = p_col_int, .col_text = p_col_text, .col_blob = p_col_blob,
	.changes = p_changes, .finalize = p_finalize, .begin = p_begin,
	.integrity_check = p_integrity_check, .backup = p_backup,
	.wait_notify = p_wait_notify,
};

int
db_pg_open(const char *url, struct db **out)
{
	/* Earlier entries are defaults: the URL's own settings override them.
	 * Dead peers are noticed in seconds, not after TCP's minutes: here
	 * (keepalives, tcp_user_timeout: a statement on a cut-off network
	 * fails after 10 s) and by the server (its keepalives for this
	 * session: a replica that vanished loses its session, and with it its
	 * advisory locks, the leader's role, after about 11 s). The server's
	 * come in "options", which is put after the URL's own (so those win
	 * where they set the same). */
	static const char keepalive_opts[] =
	    "-c tcp_keepalives_idle=5 -c tcp_keepalives_interval=2 -c tcp_keepalives_count=3";
	const char *keys[] = { "connect_timeout", "application_name", "keepalives",
		"keepalives_idle", "keepalives_interval", "keepalives_count", "tcp_user_timeout",
		"dbname", "options", NULL };
	const char *vals[] = { "10", "wiremesh-server", "1", "5", "2", "3", "10000", url,
		keepalive_opts, NULL };
	PQconninfoOption *ci;
	char *opts = NULL;
	struct pdb *p;
	int r;

	if ((p = calloc(1, sizeof(*p))) == NULL)
		return ERR_NOMEM;
	p->base.ops = &pg_ops;
	p->base.kind = DB_POSTGRES;
	db_url_redact(p->redacted, sizeof(p->redacted), url);
	ci = PQconninfoParse(url, NULL);
	for (PQconninfoOption *o = ci; o && o->keyword; o++) {
		size_t len;

		if (strcmp(o->keyword, "options") != 0 || o->val == NULL || o->val[0] == '\0')
			continue;
		len = sizeof(keepalive_opts) + 1 + strlen(o->val);
		if ((opts = malloc(len)) != NULL) {
			snprintf(opts, len, "%s %s", keepalive_opts, o->val);
			vals[8] = opts;
		}
	}
	PQconninfoFree(ci);
	p->conn = PQconnectdbParams(keys, vals, 1);
	free(opts);
	if (p->conn == NULL || PQstatus(p->conn) != CONNECTION_OK) {
		static struct log_ratelimit rl;
		const char *m = p->conn ? PQerrorMessage(p->conn) : "out of memory";

		if (log_ratelimit_ok(&rl, 10, 3))
			log_error("msg=\"cannot connect to PostgreSQL\" db=\"%s\" err=\"%.*s\"",
			    p->redacted, msglen(m), m);
		p_close(&p->base);
		return ERR_IO;
	}
	PQsetNoticeProcessor(p->conn, notice, NULL);
	if ((r = p_exec(&p->base, "SET client_min_messages = warning; "
	    "SET standard_conforming_strings = on; SET TIME ZONE 'UTC'")) != 0) {
		p_close(&p->base);
		return r;
	}
	log_debug("msg=\"connected to PostgreSQL\" db=\"%s\" server_version=%d", p->redacted,
	    PQserverVersion(p->conn));
	*out = &p->base;
	return 0;
}
