// SPDX-License-Identifier: MIT
/*
 * The store: every SQL statement of the server, written once in the dialect
 * SQLite and PostgreSQL share and run through the database layer (db.h),
 * which picks the engine from the URL. Migrations for both engines are
 * applied at open (db_migrate); a database newer than the binary is refused.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "common/log.h"
#include "common/util.h"
#include "server/db.h"
#include "server/store.h"

/* One connection, one recursive mutex. Every function takes the mutex for
 * the whole of its work; a transaction holds it from store_tx_begin() to
 * store_tx_commit()/store_tx_rollback(), so the functions the same thread
 * calls inside it nest (recursion) while every other thread waits. Nothing
 * is read outside the mutex. */
struct store {
	struct db *db;
	pthread_mutex_t lock;
	int version;
};

static void
lock(struct store *s)
{
	pthread_mutex_lock(&s->lock);
}

static void
unlock(struct store *s)
{
	pthread_mutex_unlock(&s->lock);
}

static int
prepare(struct store *s, const char *sql, struct db_stmt **st)
{
	return db_prepare(s->db, sql, st);
}

static void
bind_text(struct db_stmt *st, int i, const char *v)
{
	db_bind_text(st, i, v);
}

static void
bind_opt_int(struct db_stmt *st, int i, int64_t v)
{
	if (v == 0)
		db_bind_null(st, i);
	else
		db_bind_int(st, i, v);
}

static void
col_text(struct db_stmt *st, int i, char *out, size_t n)
{
	const char *t = db_col_text(st, i);

	str_copy(out, t ? t : "", n);
}

static void
col_blob(struct db_stmt *st, int i, uint8_t *out, size_t n)
{
	size_t len;
	const uint8_t *b = db_col_blob(st, i, &len);

	memset(out, 0, n);
	if (b != NULL && len == n)
		memcpy(out, b, n);
}

/* Steps once: true with a row; false at the end or on an error, which is
 * stored in *r (so "no row" and "the database failed" stay apart). */
static bool
next_row(struct db_stmt *st, int *r)
{
	int rc = db_step(st);

	if (rc == DB_ROW)
		return true;
	if (rc < 0)
		*r = rc;
	return false;
}

/* Runs a statement that returns no rows and finalizes it; maps "no row
 * changed" to ERR_NOT_FOUND when `must_change` is set. */
static int
step_done(struct store *s, struct db_stmt *st, bool must_change)
{
	int rc = db_step(st);
	int r = rc < 0 ? rc : 0;

	(void)s;
	if (r == 0 && must_change && db_changes(st) == 0)
		r = ERR_NOT_FOUND;
	db_finalize(st);
	return r;
}

/* Runs an INSERT … RETURNING id and finalizes it; *id receives the id. */
static int
step_id(struct store *s, struct db_stmt *st, int64_t *id)
{
	int rc = db_step(st);

	(void)s;
	if (rc == DB_ROW)
		*id = db_col_int(st, 0);
	db_finalize(st);
	return rc == DB_ROW ? 0 : rc < 0 ? rc : ERR_DB;
}

static int map_version_init(struct store *s);

int
store_open(const char *url, struct store **out)
{
	struct store *s;
	int r = ERR_DB;

	*out = NULL;
	if ((s = calloc(1, sizeof(*s))) == NULL)
		return ERR_NOMEM;
	{
		pthread_mutexattr_t ma;

		pthread_mutexattr_init(&ma);
		pthread_mutexattr_settype(&ma, PTHREAD_MUTEX_RECURSIVE);
		pthread_mutex_init(&s->lock, &ma);
		pthread_mutexattr_destroy(&ma);
	}
	if ((r = db_open(url, &s->db)) != 0)
		goto fail;
	if ((r = db_migrate(s->db, &s->version)) != 0 || (r = map_version_init(s)) != 0)
		goto fail;
	*out = s;
	return 0;
fail:
	store_close(s);
	return r;
}

void
store_close(struct store *s)
{
	if (s == NULL)
		return;
	db_close(s->db);
	pthread_mutex_destroy(&s->lock);
	free(s);
}

int
store_schema_version(struct store *s)
{
	return s->version;
}

bool
store_url_is_postgres(const char *url)
{
	return db_url_is_postgres(url);
}

bool
store_is_postgres(const struct store *s)
{
	return db_kind(s->db) == DB_POSTGRES;
}

int
store_file_schema_version(const char *path, int *version)
{
	*version = 0;
	if (db_url_is_postgres(path))
		return ERR_UNPROCESSABLE;
	return db_sqlite_file_version(path, version);
}

int
store_integrity_check(struct store *s)
{
	int r;

	lock(s);
	r = db_integrity_check(s->db);
	unlock(s);
	return r;
}

int
store_ping(struct store *s, int timeout_ms)
{
	struct timespec until;
	int r;

	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += timeout_ms / 1000;
	until.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
	if (until.tv_nsec >= 1000000000L) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000L;
	}
	if (pthread_mutex_timedlock(&s->lock, &until) != 0)
		return ERR_TIMEOUT;
	r = db_ping(s->db);
	unlock(s);
	return r;
}

bool
store_retryable(struct store *s)
{
	return db_retryable(s->db);
}

int
store_tx_begin(struct store *s)
{
	int r;

	lock(s);
	if ((r = db_begin(s->db)) != 0) {
		unlock(s);
		return r;
	}
	return 0;
}

int
store_tx_commit(struct store *s)
{
	int r = db_commit(s->db);

	unlock(s);
	return r;
}

void
store_tx_rollback(struct store *s)
{
	db_rollback(s->db);
	unlock(s);
}

/* ---- users ---- */

int
store_user_create(struct store *s, const char *name, struct store_user *out)
{
	struct db_stmt *st = NULL;
	int r;

	lock(s);
	if ((r = prepare(s, "INSERT INTO users(name, created_at) VALUES (?, ?) RETURNING id",
	    &st)) != 0)
		goto out;
	bind_text(st, 1, name);
	db_bind_int(st, 2, time_now_s());
	memset(out, 0, sizeof(*out));
	if ((r = step_id(s, st, &out->id)) != 0)
		goto out;
	str_copy(out->name, name, sizeof(out->name));
	out->created_at = time_now_s();
out:
	unlock(s);
	return r;
}

int
store_user_rename(struct store *s, const char *name, const char *new_name)
{
	struct db_stmt *st = NULL;
	int r;

	lock(s);
	if ((r = prepare(s, "UPDATE users SET name = ? WHERE name = ?", &st)) != 0)
		goto out;
	bind_text(st, 1, new_name);
	bind_text(st, 2, name);
	r = step_done(s, st, true);
out:
	unlock(s);
	return r;
}

static void
row_user(struct db_stmt *st, struct store_user *u)
{
	memset(u, 0, sizeof(*u));
	u->id = db_col_int(st, 0);
	col_text(st, 1, u->name, sizeof(u->name));
	u->created_at = db_col_int(st, 2);
	col_text(st, 3, u->display_name, sizeof(u->display_name));
	col_text(st, 4, u->email, sizeof(u->email));
	u->oidc = !db_col_null(st, 5);
}

#define USER_COLS "id, name, created_at, display_name, email, oidc_issuer"

int
store_user_get(struct store *s, const char *name, struct store_user *out)
{
	struct db_stmt *st = NULL;
	int r;

	lock(s);
	if ((r = prepare(s, "SELECT " USER_COLS " FROM users WHERE name = ?", &st)) != 0)
		goto out;
	bind_text(st, 1, name);
	r = ERR_NOT_FOUND;
	if (next_row(st, &r)) {
		row_user(st, out);
		r = 0;
	}
	db_finalize(st);
out:
	unlock(s);
	return r;
}

int
store_user_get_by_oidc(struct store *s, const char *issuer, const char *subject,
		       struct store_user *out)
{
	struct db_stmt *st = NULL;
	int r;

	lock(s);
	if ((r = prepare(s, "SELECT " USER_COLS " FROM users WHERE oidc_issuer = ? AND "
	    "oidc_subject = ?", &st)) != 0)
		goto out;
	bind_text(st, 1, issuer);
	bind_text(st, 2, subject);
	r = ERR_NOT_FOUND;
	if (next_row(st, &r)) {
		row_user(st, out);
		r = 0;
	}
	db_finalize(st);
out:
	unlock(s);
	return r;
}

int
store_user_create_oidc(struct store *s, const char *name, const char *issuer,
		       const char *subject, const char *display_name, const char *email,
		       struct store_user *out)
{
	struct db_stmt *st = NULL;
	int64_t now = time_now_s();
	int r;

	lock(s);
	if ((r = prepare(s, "INSERT INTO users(name, created_at, display_name, email, oidc_issuer, "
	    "oidc_subject) VALUES (?, ?, ?, ?, ?, ?) RETURNING id", &st)) != 0)
		goto out;
	bind_text(st, 1, name);
	db_bind_int(st, 2, now);
	bind_text(st, 3, display_name);
	bind_text(st, 4, email);
	bind_text(st, 5, issuer);
	bind_text(st, 6, subject);
	memset(out, 0, sizeof(*out));
	if ((r = step_id(s, st, &out->id)) != 0)
		goto out;
	str_copy(out->name, name, sizeof(out->name));
	str_copy(out->display_name, display_name, sizeof(out->display_name));
	str_copy(out->email, email, sizeof(out->email));
	out->created_at = now;
	out->oidc = true;
out:
	unlock(s);
	return r;
}

int
store_user_set_profile(struct store *s, int64_t id, const char *display_name, const char *email)
{
	struct db_stmt *st = NULL;
	int r;

	lock(s);
	if ((r = prepare(s, "UPDATE users SET display_name = ?, email = ? WHERE id = ?", &st)) != 0)
		goto out;
	bind_text(st, 1, display_name);
	bind_text(st, 2, email);
	db_bind_int(st, 3, id);
	r = step_done(s, st, true);
out:
	unlock(s);
	return r;
}

int
store_user_delete(struct store *s, const char *name)
{
	struct db_stmt *st = NULL;
	int r;

	lock(s);
	if ((r = prepare(s, "SELECT COUNT(*) FROM nodes JOIN users ON users.id = nodes.user_id "
	    "WHERE users.name = ?", &st)) != 0)
		goto out;
	bind_text(st, 1, name);
	if (next_row(st, &r) && db_col_int(st, 0) > 0)
		r = ERR_PRECONDITION;
	db_finalize(st);
	if (r != 0)
		goto out;
	if ((r = prepare(s, "DELETE FROM users WHERE name = ?", &st)) != 0)
		goto out;
	bind_text(st, 1, name);
	r = step_done(s, st, true);
out:
	unlock(s);
	return r;
}

int
store_user_list(struct store *s, store_user_cb cb, void *ctx)
{
	struct db_stmt *st = NULL;
	struct store_user u;
	int r;

	lock(s);
	if ((r = prepare(s, "SELECT " USER_COLS " FROM users ORDER BY id", &st)) != 0)
		goto out;
	while (r == 0 && next_row(st, &r)) {
		row_user(st, &u);
		r = cb(ctx, &u);
	}
	db_finalize(st);
out:
	unlock(s);
	return r;
}

/* ---- API keys ---- */

#define APIKEY_COLS "id, prefix, hash, created_at, expires_at, revoked_at, last_used_at"

static void
row_apikey(struct db_stmt *st, struct store_apikey *k)
{
	memset(k, 0, sizeof(*k));
	k->id = db_col_int(st, 0);
	col_text(st, 1, k->prefix, sizeof(k->prefix));
	col_blob(st, 2, k->hash, sizeof(k->hash));
	k->created_at = db_col_int(st, 3);
	k->expires_at = db_col_int(st, 4);
	k->revoked_at = db_col_int(st, 5);
	k->last_used_at = db_col_int(st, 6);
}

int
store_apikey_insert(struct store *s, struct store_apikey *k)
{
	struct db_stmt *st = NULL;
	int r;

	lock(s);
	if ((r = prepare(s, "INSERT INTO api_keys(prefix, hash, created_at, expires_at) "
	    "VALUES (?, ?, ?, ?) RETURNING id", &st)) != 0)
		goto out;
	bind_text(st, 1, k->prefix);
	db_bind_blob(st, 2, k->hash, sizeof(k->hash));
	db_bind_int(st, 3, k->created_at);
	bind_opt_int(st, 4, k->expires_at);
	r = step_id(s, st, &k->id);
out:
	unlock(s);
	return r;
}

int
store_apikey_get(struct store *s, const char *prefix, struct store_apikey *out)
{
	struct db_stmt *st = NULL;
	int r;

	lock(s);
	if ((r = prepare(s, "SELECT " APIKEY_COLS " FROM api_keys WHERE prefix = ?", &st)) != 0)
		goto out;
	bind_text(st, 1, prefix);
	r = ERR_NOT_FOUND;
	if (next_row(st, &r)) {
		row_apikey(st, out);
		r = 0;
	}
	db_finalize(st);
out:
	unlock(s);
	return r;
}

int
store_apikey_expire(struct store *s, const char *prefix, int64_t now)
{
	struct db_stmt *st = NULL;
	int r;

	lock(s);
	if ((r = prepare(s, "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, ?) "
	    "WHERE prefix = ?", &st)) != 0)
		goto out;
	db_bind_int(st, 1, now);
	bind_text(st, 2, prefix);
	r = step_done(s, st, true);
out:
	unlock(s);
	return r;
}

int
store_apikey_touch(struct store *s, int64_t id, int64_t now)
{
	struct db_stmt *st = NULL;
	int r;

	lock(s);
	if ((r = prepare(s, "UPDATE api_keys SET last_used_at = ? WHERE id = ?", &st)) != 0)
		goto out;
	db_bind_int(st, 1, now);
	db_bind_int(st, 2, id);
	r = step_done(s, st, false);
out:
	unlock(s);
	return r;
}

int
store_apikey_list(struct store *s, store_apikey_cb cb, void *ctx)
{
	struct db_stmt *st = NULL;
	struct store_apikey k;
	int r;

	lock(s);
	if ((r = prepare(s, "SELECT " APIKEY_COLS " FROM api_keys ORDER BY id", &st)) != 0)
		goto out;
	while (r == 0 && next_row(st, &r)) {
		row_apikey(st, &k);
		r = cb(ctx, &k);
	}
	db_finalize(st);
out:
	unlock(s);
	return r;
}

/* ---- pre-auth keys ---- */

#define PAK_COLS "k.id, k.prefix, k.hash, k.user_id, u.name, k.reusable, k.ephemeral, " \
	"k.tags, k.created_at, k.expires_at, k.used_count, k.revoked_at"
#define PAK_FROM " FROM preauth_keys k JOIN users u ON u.id = k.user_id "

static void
row_pak(struct db_stmt *st, struct store_preauthkey *k)
{
	memset(k, 0, sizeof(*k));
	k->id = db_col_int(st, 0);
	col_text(st, 1, k->prefix, sizeof(k->prefix));
	col_blob(st, 2, k->hash, sizeof(k->hash));
	k->user_id = db_col_int(st, 3);
	col_text(st, 4, k->user, sizeof(k->user));
	k->reusable = db_col_int(st, 5) != 0;
	k->ephemeral = db_col_int(st, 6) != 0;
	col_text(st, 7, k->tags, sizeof(k->tags));
	k->created_at = db_col_int(st, 8);
	k->expires_at = db_col_int(st, 9);
	k->used_count = db_col_int(st, 10);
	k->revoked_at = db_col_int(st, 11);
}

int
store_preauthkey_insert(struct store *s, struct store_preauthkey *k)
{
	struct db_stmt *st = NULL;
	int r;

	lock(s);
	if ((r = prepare(s, "INSERT INTO preauth_keys(prefix, hash, user_id, reusable, ephemeral, "
	    "tags, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id", &st)) != 0)
		goto out;
	bind_text(st, 1, k->prefix);
	db_bind_blob(st, 2, k->hash, sizeof(k->hash));
	db_bind_int(st, 3, k->user_id);
	db_bind_int(st, 4, k->reusable);
	db_bind_int(st, 5, k->ephemeral);
	bind_text(st, 6, k->tags[0] ? k->tags : "[]");
	db_bind_int(st, 7, k->created_at);
	bind_opt_int(st, 8, k->expires_at);
	r = step_id(s, st, &k->id);
out:
	unlock(s);
	return r;
}

static int
pak_get(struct store *s, const char *where, const char *text, int64_t id,
	struct store_preauthkey *out)
{
	char sql[512];
	struct db_stmt *st = NULL;
	int r;

	snprintf(sql, sizeof(sql), "SELECT " PAK_COLS PAK_FROM "WHERE %s", where);
	lock(s);
	if ((r = prepare(s, sql, &st)) != 0)
		goto out;
	if (text != NULL)
		bind_text(st, 1, text);
	else
		db_bind_int(st, 1, id);
	r = ERR_NOT_FOUND;
	if (next_row(st, &r)) {
		row_pak(st, out);
		r = 0;
	}
	db_finalize(st);
out:
	unlock(s);
	return r;
}

int
store_preauthkey_get(struct store *s, const char *prefix, struct store_preauthkey *out)
{
	return pak_get(s, "k.prefix = ?", prefix, 0, out);
}

int
store_preauthkey_get_id(struct store *s, int64_t id, struct store_preauthkey *out)
{
	return pak_get(s, "k.id = ?", NULL, id, out);
}

int
store_preauthkey_mark_used(struct store *s, int64_t id)
{
	struct db_stmt *st = NULL;
	int r;

	lock(s);
	/* Conditional, so two registrations spending one single-use key at
	 * once (on two replicas) cannot both succeed: the second finds it used. */
	if ((r = prepare(s, "UPDATE preauth_keys SET used_count = used_count + 1 WHERE id = ? "
	    "AND (reusable != 0 OR used_count = 0)", &st)) != 0)
		goto out;
	db_bind_int(st, 1, id);
	if ((r = step_done(s, st, true)) == ERR_NOT_FOUND) {
		struct store_preauthkey k;

		if ((r = store_preauthkey_get_id(s, id, &k)) == 0)
			r = ERR_USED;
	}
out:
	unlock(s);
	return r;
}

int
store_preauthkey_expire(struct store *s, int64_t id, int64_t now)
{
	struct db_stmt *st = NULL;
	int r;

	lock(s);
	if ((r = prepare(s, "UPDATE preauth_keys SET revoked_at = COALESCE(revoked_at, ?) "
	    "WHERE id = ?", &st)) != 0)
		goto out;
	db_bind_int(st, 1, now);
	db_bind_int(st, 2, id);
	r = step_done(s, st, true);
out:
	unlock(s);
	return r;
}

int
store_preauthkey_list(struct store *s, const char *user, store_preauthkey_cb cb, void *ctx)
{
	struct db_stmt *st = NULL;
	struct store_preauthkey k;
	int r;

	lock(s);
	if ((r = prepare(s, user ? "SELECT " PAK_COLS PAK_FROM "WHERE u.name = ? ORDER BY k.id"
	    : "SELECT " PAK_COLS PAK_FROM "ORDER BY k.id", &st)) != 0)
		goto out;
	if (user)
		bind_text(st, 1, user);
	while (r == 0 && next_row(st, &r)) {
		row_pak(st, &k);
		r = cb(ctx, &k);
	}
	db_finalize(st);
out:
	unlock(s);
	return r;
}

/* ---- nodes ---- */

#define NODE_COLS "n.id, n.machine_key, n.node_key, n.disco_key, n.hostname, n.name, " \
	"n.user_id, u.name, n.tags, n.ipv4, n.ipv6, n.ephemeral, n.preauth_key_id, " \
	"n.created_at, n.last_seen, n.expires_at, n.endpoints, n.home_derp, " \
	"n.routes_advertised, n.routes_approved"
#define NODE_FROM " FROM nodes n JOIN users u ON u.id = n.user_id "

static void
col_addr(struct db_stmt *st, int i, struct ip_addr *a)
{
	const char *t = db_col_text(st, i);

	memset(a, 0, sizeof(*a));
	if (t != NULL && addr_parse(t, a) != 0)
		memset(a, 0, sizeof(*a));
}

static void
row_node(struct db_stmt *st, struct store_node *n)
{
	memset(n, 0, sizeof(*n));
	n->id = db_col_int(st, 0);
	col_blob(st, 1, n->machine_key, KEY_LEN);
	col_blob(st, 2, n->node_key, KEY_LEN);
	col_blob(st, 3, n->disco_key, KEY_LEN);
	col_text(st, 4, n->hostname, sizeof(n->hostname));
	col_text(st, 5, n->name, sizeof(n->name));
	n->user_id = db_col_int(st, 6);
	col_text(st, 7, n->user, sizeof(n->user));
	col_text(st, 8, n->tags, sizeof(n->tags));
	col_addr(st, 9, &n->ipv4);
	col_addr(st, 10, &n->ipv6);
	n->ephemeral = db_col_int(st, 11) != 0;
	n->preauth_key_id = db_col_int(st, 12);
	n->created_at = db_col_int(st, 13);
	n->last_seen = db_col_int(st, 14);
	n->expires_at = db_col_int(st, 15);
	col_text(st, 16, n->endpoints, sizeof(n->endpoints));
	n->home_derp = db_col_int(st, 17);
	col_text(st, 18, n->routes_advertised, sizeof(n->routes_advertised));
	col_text(st, 19, n->routes_approved, sizeof(n->routes_approved));
}

static void
bind_addr(struct db_stmt *st, int i, const struct ip_addr *a)
{
	char buf[ADDR_STR_MAX];

	if (a->family == 0) {
		db_bind_null(st, i);
		return;
	}
	addr_fmt(buf, a);
	bind_text(st, i, buf);
}

/* Binds columns 1..18 shared by insert and update. */
static void
bind_node(struct db_stmt *st, const struct store_node *n)
{
	db_bind_blob(st, 1, n->machine_key, KEY_LEN);
	db_bind_blob(st, 2, n->node_key, KEY_LEN);
	db_bind_blob(st, 3, n->disco_key, KEY_LEN);
	bind_text(st, 4, n->hostname);
	bind_text(st, 5, n->name);
	db_bind_int(st, 6, n->user_id);
	bind_text(st, 7, n->tags[0] ? n->tags : "[]");
	bind_addr(st, 8, &n->ipv4);
	bind_addr(st, 9, &n->ipv6);
	db_bind_int(st, 10, n->ephemeral);
	bind_opt_int(st, 11, n->preauth_key_id);
	db_bind_int(st, 12, n->created_at);
	bind_opt_int(st, 13, n->last_seen);
	bind_opt_int(st, 14, n->expires_at);
	bind_text(st, 15, n->endpoints[0] ? n->endpoints : "[]");
	db_bind_int(st, 16, n->home_derp);
	bind_text(st, 17, n->routes_advertised[0] ? n->routes_advertised : "[]");
	bind_text(st, 18, n->routes_approved[0] ? n->routes_approved : "[]");
}

int
store_node_insert(struct store *s, struct store_node *n)
{
	struct db_stmt *st = NULL;
	int r;

	lock(s);
	if ((r = prepare(s, "INSERT INTO nodes(machine_key, node_key, disco_key, hostname, name, "
	    "user_id, tags, ipv4, ipv6, ephemeral, preauth_key_id, created_at, last_seen, "
	    "expires_at, endpoints, home_derp, routes_advertised, routes_approved) "
	    "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?) RETURNING id", &st)) != 0)
		goto out;
	bind_node(st, n);
	r = step_id(s, st, &n->id);
out:
	unlock(s);
	return r;
}

int
store_node_update_fields(struct store *s, const struct store_node *n, unsigned fields)
{
	static const struct {
		unsigned group;
		const char *cols;
	} groups[] = {
		{ STORE_NODE_KEYS, "node_key=?2, disco_key=?3, " },
		{ STORE_NODE_HOSTNAME, "hostname=?4, " },
		{ STORE_NODE_NAME, "name=?5, " },
		{ STORE_NODE_AUTH, "user_id=?6, ephemeral=?10, preauth_key_id=?11, " },
		{ STORE_NODE_TAGS, "tags=?7, " },
		{ STORE_NODE_ADDRS, "ipv4=?8, ipv6=?9, " },
		{ STORE_NODE_LAST_SEEN, "last_seen=?13, " },
		{ STORE_NODE_EXPIRY, "expires_at=?14, " },
		{ STORE_NODE_ENDPOINTS, "endpoints=?15, home_derp=?16, " },
		{ STORE_NODE_ADVERTISED, "routes_advertised=?17, " },
		{ STORE_NODE_APPROVED, "routes_approved=?18, " },
	};
	char sql[512] = "UPDATE nodes SET ";
	struct db_stmt *st = NULL;
	size_t len;
	int r;

	if ((fields & STORE_NODE_ALL) == 0)
		return 0;
	for (size_t i = 0; i < sizeof(groups) / sizeof(groups[0]); i++)
		if (fields & groups[i].group)
			strcat(sql, groups[i].cols);
	len = strlen(sql);
	sql[len - 2] = 0;	/* the last ", " */
	strcat(sql, " WHERE id = ?19");
	lock(s);
	if ((r = prepare(s, sql, &st)) != 0)
		goto out;
	bind_node(st, n);
	db_bind_int(st, 19, n->id);
	r = step_done(s, st, true);
out:
	unlock(s);
	return r;
}

int
store_node_update(struct store *s, const struct store_node *n)
{
	return store_node_update_fields(s, n, STORE_NODE_ALL);
}

static int
node_get_where(struct store *s, const char *where, const void *blob, int64_t id,
	       struct store_node *out)
{
	char sql[768];
	struct db_stmt *st = NULL;
	int r;

	snprintf(sql, sizeof(sql), "SELECT " NODE_COLS NODE_FROM "WHERE %s", where);
	lock(s);
	if ((r = prepare(s, sql, &st)) != 0)
		goto out;
	if (blob != NULL)
		db_bind_blob(st, 1, blob, KEY_LEN);
	else
		db_bind_int(st, 1, id);
	r = ERR_NOT_FOUND;
	if (next_row(st, &r)) {
		row_node(st, out);
		r = 0;
	}
	db_finalize(st);
out:
	unlock(s);
	return r;
}

int
store_node_get(struct store *s, int64_t id, struct store_node *out)
{
	return node_get_where(s, "n.id = ?", NULL, id, out);
}

int
store_node_get_by_machine(struct store *s, const uint8_t mkey[static KEY_LEN],
			  struct store_node *out)
{
	return node_get_where(s, "n.machine_key = ?", mkey, 0, out);
}

int
store_node_delete(struct store *s, int64_t id)
{
	struct db_stmt *st = NULL;
	int r;

	lock(s);
	if ((r = prepare(s, "DELETE FROM nodes WHERE id = ?", &st)) != 0)
		goto out;
	db_bind_int(st, 1, id);
	r = step_done(s, st, true);
out:
	unlock(s);
	return r;
}

int
store_node_disco_taken(struct store *s, const uint8_t disco_key[static KEY_LEN],
		       const uint8_t machine_key[static KEY_LEN])
{
	struct db_stmt *st = NULL;
	int r;

	lock(s);
	if ((r = prepare(s, "SELECT 1 FROM nodes WHERE disco_key = ? AND machine_key != ?",
	    &st)) != 0)
		goto out;
	db_bind_blob(st, 1, disco_key, KEY_LEN);
	db_bind_blob(st, 2, machine_key, KEY_LEN);
	r = db_step(st);
	r = r == DB_ROW ? 1 : r < 0 ? r : 0;
	db_finalize(st);
out:
	unlock(s);
	return r;
}

int
store_node_key_valid(struct store *s, const uint8_t node_key[static KEY_LEN], int64_t now)
{
	struct db_stmt *st = NULL;
	int r;

	lock(s);
	if ((r = prepare(s, "SELECT 1 FROM nodes WHERE node_key = ? AND "
	    "(expires_at IS NULL OR expires_at = 0 OR expires_at > ?)", &st)) != 0)
		goto out;
	db_bind_blob(st, 1, node_key, KEY_LEN);
	db_bind_int(st, 2, now);
	r = db_step(st);
	r = r == DB_ROW ? 1 : r < 0 ? r : 0;
	db_finalize(st);
out:
	unlock(s);
	return r;
}

int
store_node_name_taken(struct store *s, const char *name, int64_t except_id)
{
	struct db_stmt *st = NULL;
	int r;

	lock(s);
	if ((r = prepare(s, "SELECT 1 FROM nodes WHERE name = ? AND id != ?", &st)) != 0)
		goto out;
	bind_text(st, 1, name);
	db_bind_int(st, 2, except_id);
	r = db_step(st);
	r = r == DB_ROW ? 1 : r < 0 ? r : 0;
	db_finalize(st);
out:
	unlock(s);
	return r;
}

int
store_node_set_last_seen(struct store *s, int64_t id, int64_t when)
{
	struct db_stmt *st = NULL;
	int r;

	lock(s);
	if ((r = prepare(s, "UPDATE nodes SET last_seen = ? WHERE id = ?", &st)) != 0)
		goto out;
	db_bind_int(st, 1, when);
	db_bind_int(st, 2, id);
	r = step_done(s, st, false);
out:
	unlock(s);
	return r;
}

int
store_node_expiring(struct store *s, int64_t after, int64_t until, int64_t **ids, size_t *n)
{
	struct db_stmt *st = NULL;
	size_t cap = 0;
	int r;

	*ids = NULL;
	*n = 0;
	lock(s);
	if ((r = prepare(s, "SELECT id FROM nodes WHERE expires_at > ? AND expires_at <= ?",
	    &st)) != 0)
		goto out;
	db_bind_int(st, 1, after);
	db_bind_int(st, 2, until);
	while (r == 0 && next_row(st, &r)) {
		if (*n == cap) {
			size_t nc = cap ? cap * 2 : 16;
			int64_t *v = realloc(*ids, nc * sizeof(*v));

			if (v == NULL) {
				r = ERR_NOMEM;
				break;
			}
			*ids = v;
			cap = nc;
		}
		(*ids)[(*n)++] = db_col_int(st, 0);
	}
	db_finalize(st);
out:
	unlock(s);
	if (r != 0) {
		free(*ids);
		*ids = NULL;
		*n = 0;
	}
	return r;
}

int
store_node_list(struct store *s, store_node_cb cb, void *ctx)
{
	struct db_stmt *st = NULL;
	struct store_node n;
	int r;

	lock(s);
	if ((r = prepare(s, "SELECT " NODE_COLS NODE_FROM "ORDER BY n.id", &st)) != 0)
		goto out;
	while (r == 0 && next_row(st, &r)) {
		row_node(st, &n);
		r = cb(ctx, &n);
	}
	db_finalize(st);
out:
	unlock(s);
	return r;
}

/* ---- policies ---- */

int
store_policy_insert(struct store *s, struct store_policy *p)
{
	struct db_stmt *st = NULL;
	int r;

	lock(s);
	if ((r = prepare(s, "INSERT INTO policies(text, etag, created_at, created_by) "
	    "VALUES (?, ?, ?, ?) RETURNING id", &st)) != 0)
		goto out;
	bind_text(st, 1, p->text);
	bind_text(st, 2, p->etag);
	db_bind_int(st, 3, p->created_at);
	bind_text(st, 4, p->created_by);
	r = step_id(s, st, &p->id);
out:
	unlock(s);
	return r;
}

/* pg_advisory_xact_lock key of expiry publishers: "wmexpiry" in ASCII. */
#define EXPIRY_LOCK_KEY 0x776d657870697279LL

int
store_node_expiry_published(struct store *s, int64_t id, int64_t expires_at)
{
	struct db_stmt *st = NULL;
	int r;

	lock(s);
	if (!db_in_tx(s->db)) {
		r = ERR_PRECONDITION;
		goto out;
	}
	/* a replica that lost the role but has not noticed yet waits here for
	 * the new leader's transaction, then sees its change */
	if (store_is_postgres(s) && (r = db_xact_lock(s->db, EXPIRY_LOCK_KEY)) != 0)
		goto out;
	if ((r = prepare(s, "SELECT COUNT(*) FROM changes WHERE kind = ? AND node_id = ? "
	    "AND created_at >= ?", &st)) != 0)
		goto out;
	db_bind_int(st, 1, STORE_CHANGE_NODE);
	db_bind_int(st, 2, id);
	db_bind_int(st, 3, expires_at);
	if (next_row(st, &r))
		r = db_col_int(st, 0) > 0 ? 1 : 0;
	else if (r == 0)
		r = ERR_INTERNAL;
	db_finalize(st);
out:
	unlock(s);
	return r;
}

int
store_route_primaries_list(struct store *s, store_primary_cb cb, void *ctx)
{
	struct db_stmt *st = NULL;
	struct store_primary p;
	int r;

	lock(s);
	if ((r = prepare(s, "SELECT prefix, node_id FROM route_primaries ORDER BY prefix", &st)) != 0)
		goto out;
	while (r == 0 && next_row(st, &r)) {
		memset(&p, 0, sizeof(p));
		col_text(st, 0, p.prefix, sizeof(p.prefix));
		p.node_id = db_col_int(st, 1);
		r = cb(ctx, &p);
	}
	db_finalize(st);
out:
	unlock(s);
	return r;
}

int
store_route_primaries_set(struct store *s, const struct store_primary *v, size_t n)
{
	struct db_stmt *st = NULL;
	int r;

	lock(s);
	if (!db_in_tx(s->db)) {
		r = ERR_PRECONDITION;
		goto out;
	}
	if ((r = prepare(s, "DELETE FROM route_primaries", &st)) != 0 ||
	    (r = step_done(s, st, false)) != 0)
		goto out;
	for (size_t i = 0; r == 0 && i < n; i++) {
		if ((r = prepare(s, "INSERT INTO route_primaries(prefix, node_id) VALUES (?, ?)",
		    &st)) != 0)
			break;
		bind_text(st, 1, v[i].prefix);
		db_bind_int(st, 2, v[i].node_id);
		r = step_done(s, st, false);
	}
out:
	unlock(s);
	return r;
}

/* pg_advisory_xact_lock key of policy writers: "wmpol" in ASCII. */
#define POLICY_LOCK_KEY 0x776d706f6cLL

/* One attempt of store_policy_insert_if(): the check and the insert in one
 * transaction under the policy writers' lock, so of two writers holding the
 * same ETag (on two replicas) the second sees the first's policy. */
static int
policy_insert_if_once(struct store *s, struct store_policy *p, const char *if_match)
{
	struct db_stmt *st = NULL;
	int r;

	if ((r = store_tx_begin(s)) != 0)
		return r;
	if ((r = db_xact_lock(s->db, POLICY_LOCK_KEY)) != 0)
		goto fail;
	if (if_match != NULL) {
		if ((r = prepare(s, "SELECT etag FROM policies ORDER BY id DESC LIMIT 1", &st)) != 0)
			goto fail;
		if (next_row(st, &r)) {
			if (strcmp(db_col_text(st, 0), if_match) != 0)
				r = ERR_PRECONDITION;
		} else if (r == 0) {
			r = ERR_PRECONDITION;	/* nothing to match */
		}
		db_finalize(st);
		if (r != 0)
			goto fail;
	}
	if ((r = store_policy_insert(s, p)) != 0)
		goto fail;
	return store_tx_commit(s);
fail:
	store_tx_rollback(s);
	return r;
}

int
store_policy_insert_if(struct store *s, struct store_policy *p, const char *if_match)
{
	int r;

	if (if_match != NULL && strcmp(if_match, "*") == 0)
		if_match = NULL;
	for (int attempt = 0; ; attempt++) {
		r = policy_insert_if_once(s, p, if_match);
		if (r == 0 || !db_retryable(s->db) || attempt >= STORE_TX_RETRIES)
			return r;
		usleep((useconds_t)(1000 + randombytes_uniform(4000) * (unsigned)(attempt + 1)));
	}
}

int
store_policy_latest(struct store *s, struct store_policy *out)
{
	struct db_stmt *st = NULL;
	int r;

	memset(out, 0, sizeof(*out));
	lock(s);
	if ((r = prepare(s, "SELECT id, text, etag, created_at, created_by FROM policies "
	    "ORDER BY id DESC LIMIT 1", &st)) != 0)
		goto out;
	r = ERR_NOT_FOUND;
	if (next_row(st, &r)) {
		const char *t = db_col_text(st, 1);

		out->id = db_col_int(st, 0);
		out->text = strdup(t ? t : "");
		col_text(st, 2, out->etag, sizeof(out->etag));
		out->created_at = db_col_int(st, 3);
		col_text(st, 4, out->created_by, sizeof(out->created_by));
		r = out->text ? 0 : ERR_NOMEM;
	}
	db_finalize(st);
out:
	unlock(s);
	return r;
}

int
store_policy_history(struct store *s, store_policy_cb cb, void *ctx)
{
	struct db_stmt *st = NULL;
	struct store_policy p;
	int r;

	lock(s);
	if ((r = prepare(s, "SELECT id, etag, created_at, created_by FROM policies "
	    "ORDER BY id DESC", &st)) != 0)
		goto out;
	while (r == 0 && next_row(st, &r)) {
		memset(&p, 0, sizeof(p));
		p.id = db_col_int(st, 0);
		col_text(st, 1, p.etag, sizeof(p.etag));
		p.created_at = db_col_int(st, 2);
		col_text(st, 3, p.created_by, sizeof(p.created_by));
		r = cb(ctx, &p);
	}
	db_finalize(st);
out:
	unlock(s);
	return r;
}

void
store_policy_cleanup(struct store_policy *p)
{
	free(p->text);
	p->text = NULL;
}

int
store_policy_get(struct store *s, int64_t id, struct store_policy *out)
{
	struct db_stmt *st = NULL;
	int r;

	memset(out, 0, sizeof(*out));
	lock(s);
	if ((r = prepare(s, "SELECT id, text, etag, created_at, created_by FROM policies "
	    "WHERE id = ?", &st)) != 0)
		goto out;
	db_bind_int(st, 1, id);
	r = ERR_NOT_FOUND;
	if (next_row(st, &r)) {
		const char *t = db_col_text(st, 1);

		out->id = db_col_int(st, 0);
		out->text = strdup(t ? t : "");
		col_text(st, 2, out->etag, sizeof(out->etag));
		out->created_at = db_col_int(st, 3);
		col_text(st, 4, out->created_by, sizeof(out->created_by));
		r = out->text ? 0 : ERR_NOMEM;
	}
	db_finalize(st);
out:
	unlock(s);
	return r;
}

/* ---- admin console sessions ---- */

#define SESSION_COLS "id, token_hash, kind, subject, apikey_prefix, created_at, last_used_at, " \
	"expires_at"

static void
row_session(struct db_stmt *st, struct store_session *o)
{
	memset(o, 0, sizeof(*o));
	o->id = db_col_int(st, 0);
	col_blob(st, 1, o->hash, sizeof(o->hash));
	col_text(st, 2, o->kind, sizeof(o->kind));
	col_text(st, 3, o->subject, sizeof(o->subject));
	col_text(st, 4, o->apikey_prefix, sizeof(o->apikey_prefix));
	o->created_at = db_col_int(st, 5);
	o->last_used_at = db_col_int(st, 6);
	o->expires_at = db_col_int(st, 7);
}

static int
session_purge_locked(struct store *s, int64_t now, int64_t idle_s)
{
	struct db_stmt *st = NULL;
	int r;

	if ((r = prepare(s, "DELETE FROM admin_sessions WHERE expires_at <= ? OR "
	    "(kind = 'session' AND last_used_at <= ?)", &st)) != 0)
		return r;
	db_bind_int(st, 1, now);
	db_bind_int(st, 2, now - idle_s);
	return step_done(s, st, false);
}

int
store_session_insert(struct store *s, struct store_session *ss, int64_t idle_s, size_t max)
{
	struct db_stmt *st = NULL;
	int r;

	lock(s);
	if ((r = session_purge_locked(s, ss->created_at, idle_s)) != 0 ||
	    (r = prepare(s, "SELECT count(*) FROM admin_sessions", &st)) != 0)
		goto out;
	if (next_row(st, &r) && (size_t)db_col_int(st, 0) >= max)
		r = ERR_EXHAUSTED;
	db_finalize(st);
	st = NULL;
	if (r != 0 || (r = prepare(s, "INSERT INTO admin_sessions(token_hash, kind, subject, "
	    "apikey_prefix, created_at, last_used_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?) "
	    "RETURNING id",
	    &st)) != 0)
		goto out;
	db_bind_blob(st, 1, ss->hash, sizeof(ss->hash));
	bind_text(st, 2, ss->kind);
	bind_text(st, 3, ss->subject);
	bind_text(st, 4, ss->apikey_prefix);
	db_bind_int(st, 5, ss->created_at);
	db_bind_int(st, 6, ss->last_used_at);
	db_bind_int(st, 7, ss->expires_at);
	r = step_id(s, st, &ss->id);
out:
	unlock(s);
	return r;
}

static int
session_get_locked(struct store *s, const uint8_t hash[static STORE_HASH_LEN],
		   struct store_session *out)
{
	struct db_stmt *st = NULL;
	int r;

	if ((r = prepare(s, "SELECT " SESSION_COLS " FROM admin_sessions WHERE token_hash = ?",
	    &st)) != 0)
		return r;
	db_bind_blob(st, 1, hash, STORE_HASH_LEN);
	r = ERR_NOT_FOUND;
	if (next_row(st, &r)) {
		row_session(st, out);
		r = 0;
	}
	db_finalize(st);
	return r;
}

int
store_session_get(struct store *s, const uint8_t hash[static STORE_HASH_LEN],
		  struct store_session *out)
{
	int r;

	lock(s);
	r = session_get_locked(s, hash, out);
	unlock(s);
	return r;
}

int
store_session_take(struct store *s, const uint8_t hash[static STORE_HASH_LEN],
		   struct store_session *out)
{
	struct db_stmt *st = NULL;
	int r;

	if ((r = store_tx_begin(s)) != 0)
		return r;
	if ((r = session_get_locked(s, hash, out)) != 0 ||
	    (r = prepare(s, "DELETE FROM admin_sessions WHERE id = ?", &st)) != 0)
		goto fail;
	db_bind_int(st, 1, out->id);
	if ((r = step_done(s, st, true)) != 0)
		goto fail;
	return store_tx_commit(s);
fail:
	store_tx_rollback(s);
	return r;
}

int
store_session_touch(struct store *s, int64_t id, int64_t now)
{
	struct db_stmt *st = NULL;
	int r;

	lock(s);
	if ((r = prepare(s, "UPDATE admin_sessions SET last_used_at = ? WHERE id = ? AND "
	    "last_used_at < ?", &st)) != 0)
		goto out;
	db_bind_int(st, 1, now);
	db_bind_int(st, 2, id);
	db_bind_int(st, 3, now);
	r = step_done(s, st, false);
out:
	unlock(s);
	return r;
}

int
store_session_delete(struct store *s, int64_t id)
{
	struct db_stmt *st = NULL;
	int r;

	lock(s);
	if ((r = prepare(s, "DELETE FROM admin_sessions WHERE id = ?", &st)) != 0)
		goto out;
	db_bind_int(st, 1, id);
	r = step_done(s, st, true);
out:
	unlock(s);
	return r;
}

int
store_session_purge(struct store *s, int64_t now, int64_t idle_s)
{
	int r;

	lock(s);
	r = session_purge_locked(s, now, idle_s);
	unlock(s);
	return r;
}

int
store_backup(struct store *s, const char *dest_path)
{
	int r;

	lock(s);
	r = db_backup(s->db, dest_path);
	unlock(s);
	return r;
}

/* ---- registrations waiting for a person (migration 0011) ---- */

#define REG_COLS "id, machine_key, node_key, disco_key, hostname, routes, addr, created_at, " \
	"expires_at, state, ended_at, node_id, login, error"

static void
row_reg(struct db_stmt *st, struct store_reg *r)
{
	memset(r, 0, sizeof(*r));
	col_text(st, 0, r->id, sizeof(r->id));
	col_blob(st, 1, r->machine_key, KEY_LEN);
	col_blob(st, 2, r->node_key, KEY_LEN);
	col_blob(st, 3, r->disco_key, KEY_LEN);
	col_text(st, 4, r->hostname, sizeof(r->hostname));
	r->has_routes = !db_col_null(st, 5);
	col_text(st, 5, r->routes, sizeof(r->routes));
	col_text(st, 6, r->addr, sizeof(r->addr));
	r->created_at = db_col_int(st, 7);
	r->expires_at = db_col_int(st, 8);
	col_text(st, 9, r->state, sizeof(r->state));
	r->ended_at = db_col_int(st, 10);
	r->node_id = db_col_int(st, 11);
	col_text(st, 12, r->login, sizeof(r->login));
	col_text(st, 13, r->error, sizeof(r->error));
}

static int
reg_get_locked(struct store *s, const char *id, struct store_reg *out)
{
	struct db_stmt *st = NULL;
	int r;

	if ((r = prepare(s, "SELECT " REG_COLS " FROM registrations WHERE id = ?", &st)) != 0)
		return r;
	bind_text(st, 1, id);
	r = ERR_NOT_FOUND;
	if (next_row(st, &r)) {
		row_reg(st, out);
		r = 0;
	}
	db_finalize(st);
	return r;
}

int
store_reg_insert(struct store *s, const struct store_reg *g)
{
	struct db_stmt *st = NULL;
	int r;

	if ((r = store_tx_begin(s)) != 0)
		return r;
	if ((r = prepare(s, "UPDATE registrations SET state = 'failed', ended_at = ?, error = "
	    "'replaced by a newer login of this machine' WHERE machine_key = ? AND "
	    "state = 'pending'", &st)) != 0)
		goto fail;
	db_bind_int(st, 1, g->created_at);
	db_bind_blob(st, 2, g->machine_key, KEY_LEN);
	if ((r = step_done(s, st, false)) != 0)
		goto fail;
	if ((r = prepare(s, "INSERT INTO registrations(id, machine_key, node_key, disco_key, "
	    "hostname, routes, addr, created_at, expires_at, state) "
	    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'pending')", &st)) != 0)
		goto fail;
	bind_text(st, 1, g->id);
	db_bind_blob(st, 2, g->machine_key, KEY_LEN);
	db_bind_blob(st, 3, g->node_key, KEY_LEN);
	db_bind_blob(st, 4, g->disco_key, KEY_LEN);
	bind_text(st, 5, g->hostname);
	bind_text(st, 6, g->has_routes ? g->routes : NULL);
	bind_text(st, 7, g->addr);
	db_bind_int(st, 8, g->created_at);
	db_bind_int(st, 9, g->expires_at);
	if ((r = step_done(s, st, true)) != 0)
		goto fail;
	return store_tx_commit(s);
fail:
	store_tx_rollback(s);
	return r;
}

int
store_reg_get(struct store *s, const char *id, struct store_reg *out)
{
	int r;

	lock(s);
	r = reg_get_locked(s, id, out);
	unlock(s);
	return r;
}

int
store_reg_claim(struct store *s, const char *id, int64_t now, struct store_reg *out)
{
	struct db_stmt *st = NULL;
	int r;

	lock(s);
	if ((r = prepare(s, "UPDATE registrations SET state = 'busy' WHERE id = ? AND "
	    "state = 'pending' AND expires_at > ?", &st)) != 0)
		goto out;
	bind_text(st, 1, id);
	db_bind_int(st, 2, now);
	if ((r = step_done(s, st, true)) == ERR_NOT_FOUND) {
		/* why not: no such id, expired, or taken */
		if ((r = reg_get_locked(s, id, out)) == 0)
			r = strcmp(out->state, "pending") == 0 ? ERR_EXPIRED : ERR_USED;
		goto out;
	}
	if (r == 0)
		r = reg_get_locked(s, id, out);
out:
	unlock(s);
	return r;
}

int
store_reg_finish(struct store *s, const char *id, int64_t node_id, const char *login,
		 const char *error, int64_t now)
{
	struct db_stmt *st = NULL;
	int r;

	lock(s);
	if ((r = prepare(s, "UPDATE registrations SET state = ?, ended_at = ?, node_id = ?, "
	    "login = ?, error = ? WHERE id = ? AND state = 'busy'", &st)) == 0) {
		bind_text(st, 1, error ? "failed" : "done");
		db_bind_int(st, 2, now);
		db_bind_int(st, 3, error ? 0 : node_id);
		bind_text(st, 4, error ? "" : login);
		bind_text(st, 5, error ? error : "");
		bind_text(st, 6, id);
		r = step_done(s, st, true);
	}
	unlock(s);
	return r;
}

static int
reg_walk(struct store *s, const char *sql, int64_t arg, store_reg_cb fn, void *ctx)
{
	struct db_stmt *st = NULL;
	struct store_reg *g;
	int r;

	if ((g = malloc(sizeof(*g))) == NULL)
		return ERR_NOMEM;
	lock(s);
	if ((r = prepare(s, sql, &st)) == 0) {
		db_bind_int(st, 1, arg);
		while (r == 0 && next_row(st, &r)) {
			row_reg(st, g);
			r = fn(ctx, g);
		}
		db_finalize(st);
	}
	unlock(s);
	free(g);
	return r;
}

int
store_reg_pending(struct store *s, int64_t now, store_reg_cb fn, void *ctx)
{
	return reg_walk(s, "SELECT " REG_COLS " FROM registrations WHERE state = 'pending' AND "
	    "expires_at > ? ORDER BY created_at, id", now, fn, ctx);
}

int
store_reg_ended(struct store *s, int64_t since, store_reg_cb fn, void *ctx)
{
	return reg_walk(s, "SELECT " REG_COLS " FROM registrations WHERE ended_at >= ? AND "
	    "state IN ('done', 'failed') ORDER BY ended_at, id", since, fn, ctx);
}

int
store_reg_machine_known(struct store *s, const uint8_t mkey[static KEY_LEN], int64_t since)
{
	struct db_stmt *st = NULL;
	int r;

	lock(s);
	if ((r = prepare(s, "SELECT COUNT(*) FROM registrations WHERE machine_key = ? AND "
	    "(ended_at = 0 OR ended_at >= ?)", &st)) == 0) {
		db_bind_blob(st, 1, mkey, KEY_LEN);
		db_bind_int(st, 2, since);
		if (next_row(st, &r))
			r = db_col_int(st, 0) > 0;
		db_finalize(st);
	}
	unlock(s);
	return r;
}

int
store_reg_purge(struct store *s, int64_t before)
{
	struct db_stmt *st = NULL;
	int r;

	lock(s);
	if ((r = prepare(s, "DELETE FROM registrations WHERE expires_at < ? AND ended_at < ?",
	    &st)) == 0) {
		db_bind_int(st, 1, before);
		db_bind_int(st, 2, before);
		r = step_done(s, st, false);
	}
	unlock(s);
	return r;
}

/* ---- change log (migration 0004) ---- */

/* On the first open after 0004: versions continue above any version a
 * server before it handed out ((Unix seconds at its start) * 2^20). */
static int
map_version_init(struct store *s)
{
	struct db_stmt *st = NULL;
	int r;
	int64_t v = time_now_s() << 20;

	if ((r = prepare(s, "UPDATE map_version SET version = ?, pruned_through = ? "
	    "WHERE id = 1 AND version = 0", &st)) != 0)
		return r;
	db_bind_int(st, 1, v);
	db_bind_int(st, 2, v);
	return step_done(s, st, false);
}

static int append_locked(struct store *s, int kind, int64_t node_id, const char *payload,
			 uint64_t *version);

int
store_change_append(struct store *s, int kind, int64_t node_id, const char *payload,
		    uint64_t *version)
{
	int r;

	lock(s);
	r = append_locked(s, kind, node_id, payload, version);
	unlock(s);
	return r;
}

static int
append_locked(struct store *s, int kind, int64_t node_id, const char *payload, uint64_t *version)
{
	struct db_stmt *st = NULL;
	int64_t v = 0;
	int r;

	if (!db_in_tx(s->db))
		return ERR_PRECONDITION;	/* only inside a transaction */
	if ((r = prepare(s, "UPDATE map_version SET version = version + 1 WHERE id = 1", &st)) != 0 ||
	    (r = step_done(s, st, true)) != 0)
		return r;
	if ((r = prepare(s, "SELECT version FROM map_version WHERE id = 1", &st)) != 0)
		return r;
	r = ERR_DB;
	if (next_row(st, &r)) {
		v = db_col_int(st, 0);
		r = 0;
	}
	db_finalize(st);
	if (r != 0)
		return r;
	if ((r = prepare(s, "INSERT INTO changes(version, created_at, kind, node_id, payload) "
	    "VALUES (?, ?, ?, ?, ?)", &st)) != 0)
		return r;
	db_bind_int(st, 1, v);
	db_bind_int(st, 2, time_now_s());
	db_bind_int(st, 3, kind);
	db_bind_int(st, 4, node_id);
	bind_text(st, 5, payload ? payload : "");
	if ((r = step_done(s, st, false)) != 0)
		return r;
	/* PostgreSQL: the other replicas hear the version when this commits */
	if (db_kind(s->db) == DB_POSTGRES) {
		char vs[24];

		snprintf(vs, sizeof(vs), "%lld", (long long)v);
		if ((r = db_notify(s->db, STORE_CHANGES_CHANNEL, vs)) != 0)
			return r;
	}
	*version = (uint64_t)v;
	return 0;
}

/* ---- replicas: hearing of other processes' commits ---- */

struct store_listener {
	struct db *db;
	char url[DB_URL_MAX];
};

static int
listener_connect(struct store_listener *l)
{
	int r;

	db_close(l->db);
	l->db = NULL;
	if ((r = db_open(l->url, &l->db)) != 0)
		return r;
	if ((r = db_listen(l->db, STORE_CHANGES_CHANNEL)) != 0) {
		db_close(l->db);
		l->db = NULL;
	}
	return r;
}

int
store_listener_open(const char *url, struct store_listener **out)
{
	struct store_listener *l;
	int r;

	*out = NULL;
	if (!db_url_is_postgres(url))
		return ERR_UNPROCESSABLE;
	if ((l = calloc(1, sizeof(*l))) == NULL)
		return ERR_NOMEM;
	str_copy(l->url, url, sizeof(l->url));
	if ((r = listener_connect(l)) != 0) {
		sodium_memzero(l->url, sizeof(l->url));
		free(l);
		return r;
	}
	*out = l;
	return 0;
}

int
store_listener_wait(struct store_listener *l, int timeout_ms, uint64_t *version)
{
	char payload[32];
	int r;

	*version = 0;
	if (l->db == NULL && (r = listener_connect(l)) != 0)
		return r;
	r = db_wait_notify(l->db, timeout_ms, payload, sizeof(payload));
	if (r == 1) {
		*version = strtoull(payload, NULL, 10);
		/* more may be queued: take them all, keep the highest */
		while (db_wait_notify(l->db, 0, payload, sizeof(payload)) == 1) {
			uint64_t v = strtoull(payload, NULL, 10);

			*version = v > *version ? v : *version;
		}
		return 1;
	}
	if (r < 0) {
		db_close(l->db);	/* reconnected at the next wait */
		l->db = NULL;
	}
	return r;
}

/* A lease is a session of its own holding advisory locks: PostgreSQL drops
 * them when the session ends, so a replica that dies loses its roles. */
struct store_lease {
	struct db *db;
	char url[DB_URL_MAX];
};

int
store_lease_open(const char *url, struct store_lease **out)
{
	struct store_lease *l;
	int r;

	*out = NULL;
	if (!db_url_is_postgres(url))
		return ERR_UNPROCESSABLE;
	if ((l = calloc(1, sizeof(*l))) == NULL)
		return ERR_NOMEM;
	str_copy(l->url, url, sizeof(l->url));
	if ((r = db_open(url, &l->db)) != 0) {
		sodium_memzero(l->url, sizeof(l->url));
		free(l);
		return r;
	}
	*out = l;
	return 0;
}

int
store_lease_try(struct store_lease *l, int64_t key)
{
	int r;

	if (l->db == NULL && (r = db_open(l->url, &l->db)) != 0)
		return r;
	return db_advisory_trylock(l->db, key);
}

int
store_lease_check(struct store_lease *l)
{
	int r;

	if (l->db == NULL)
		return ERR_UNAVAILABLE;
	if ((r = db_ping(l->db)) != 0) {
		/* whatever this session held is gone (or soon will be): start a
		 * new one, so a lock is only ever reported held by its owner */
		db_close(l->db);
		l->db = NULL;
	}
	return r;
}

void
store_lease_close(struct store_lease *l)
{
	if (l == NULL)
		return;
	db_close(l->db);
	sodium_memzero(l->url, sizeof(l->url));
	free(l);
}

void
store_listener_close(struct store_listener *l)
{
	if (l == NULL)
		return;
	db_close(l->db);
	sodium_memzero(l->url, sizeof(l->url));
	free(l);
}

int
store_map_version(struct store *s, uint64_t *version, uint64_t *pruned_through)
{
	struct db_stmt *st = NULL;
	int r;

	lock(s);
	if ((r = prepare(s, "SELECT version, pruned_through FROM map_version WHERE id = 1", &st)) != 0)
		goto out;
	r = ERR_DB;
	if (next_row(st, &r)) {
		*version = (uint64_t)db_col_int(st, 0);
		*pruned_through = (uint64_t)db_col_int(st, 1);
		r = 0;
	}
	db_finalize(st);
out:
	unlock(s);
	return r;
}

int
store_change_list(struct store *s, uint64_t after, store_change_cb cb, void *ctx)
{
	struct db_stmt *st = NULL;
	struct store_change c;
	int r;

	lock(s);
	if ((r = prepare(s, "SELECT version, created_at, kind, node_id, payload FROM changes "
	    "WHERE version > ? ORDER BY version", &st)) != 0)
		goto out;
	db_bind_int(st, 1, (int64_t)after);
	while (r == 0 && next_row(st, &r)) {
		const char *p = db_col_text(st, 4);

		c.version = (uint64_t)db_col_int(st, 0);
		c.created_at = db_col_int(st, 1);
		c.kind = db_col_int(st, 2);
		c.node_id = db_col_int(st, 3);
		c.payload = p ? p : "";
		r = cb(ctx, &c);
	}
	db_finalize(st);
out:
	unlock(s);
	return r;
}

static int
query_int64(struct store *s, const char *sql, int64_t a, int64_t *out)
{
	struct db_stmt *st = NULL;
	int r;

	if ((r = prepare(s, sql, &st)) != 0)
		return r;
	db_bind_int(st, 1, a);
	*out = 0;
	if (next_row(st, &r))
		*out = db_col_int(st, 0);
	db_finalize(st);
	return 0;
}

int
store_change_prune(struct store *s, int64_t now, int64_t max_age_s, int64_t max_count,
		   uint64_t *pruned_through)
{
	struct db_stmt *st = NULL;
	int64_t by_age = 0, by_count = 0, floor = 0, cut;
	int r;

	if ((r = store_tx_begin(s)) != 0)
		return r;
	if ((r = query_int64(s, "SELECT COALESCE(MAX(version), 0) FROM changes WHERE created_at < ?",
	    now - max_age_s, &by_age)) != 0 ||
	    (r = query_int64(s, "SELECT COALESCE((SELECT version FROM changes ORDER BY version DESC "
	    "LIMIT 1 OFFSET ?), 0)", max_count, &by_count)) != 0 ||
	    (r = query_int64(s, "SELECT pruned_through FROM map_version WHERE id = ?", 1, &floor)) != 0)
		goto fail;
	cut = by_age > by_count ? by_age : by_count;
	if (cut > floor) {
		if ((r = prepare(s, "DELETE FROM changes WHERE version <= ?", &st)) != 0)
			goto fail;
		db_bind_int(st, 1, cut);
		if ((r = step_done(s, st, false)) != 0)
			goto fail;
		if ((r = prepare(s, "UPDATE map_version SET pruned_through = ? WHERE id = 1", &st)) != 0)
			goto fail;
		db_bind_int(st, 1, cut);
		if ((r = step_done(s, st, false)) != 0)
			goto fail;
		floor = cut;
	}
	if ((r = store_tx_commit(s)) != 0)
		return r;
	*pruned_through = (uint64_t)floor;
	return 0;
fail:
	store_tx_rollback(s);
	return r;
}

int
store_node_set_online(struct store *s, int64_t id, bool online, const char *by, bool only_by)
{
	struct db_stmt *st = NULL;
	int r;

	lock(s);
	if (online)
		r = prepare(s, "UPDATE nodes SET online = 1, online_by = ? WHERE id = ?", &st);
	else if (only_by)
		r = prepare(s, "UPDATE nodes SET online = 0, online_by = '' WHERE id = ? AND "
		    "(online_by = ? OR online_by = '')", &st);
	else
		r = prepare(s, "UPDATE nodes SET online = 0, online_by = '' WHERE id = ?", &st);
	if (r != 0)
		goto out;
	if (online) {
		bind_text(st, 1, by);
		db_bind_int(st, 2, id);
	} else {
		db_bind_int(st, 1, id);
		if (only_by)
			bind_text(st, 2, by);
	}
	r = step_done(s, st, !online && only_by);
out:
	unlock(s);
	return r;
}

int
store_node_claim_online(struct store *s, int64_t id, const char *by)
{
	struct db_stmt *st = NULL;
	int r;

	lock(s);
	if ((r = prepare(s, "UPDATE nodes SET online_by = ? WHERE id = ? AND online = 1", &st)) == 0) {
		bind_text(st, 1, by);
		db_bind_int(st, 2, id);
		r = step_done(s, st, false);
	}
	unlock(s);
	return r;
}

int
store_node_online_by(struct store *s, const char *by, store_id_cb cb, void *ctx)
{
	struct db_stmt *st = NULL;
	int r;

	lock(s);
	if ((r = prepare(s, "SELECT id FROM nodes WHERE online = 1 AND (online_by = ? OR "
	    "online_by = '') ORDER BY id",
	    &st)) != 0)
		goto out;
	bind_text(st, 1, by);
	while (r == 0 && next_row(st, &r))
		r = cb(ctx, db_col_int(st, 0));
	db_finalize(st);
out:
	unlock(s);
	return r;
}

int
store_node_online_orphans(struct store *s, int64_t live_after, int64_t **ids, size_t *n)
{
	struct db_stmt *st = NULL;
	struct orphan { int64_t id; char by[600]; } *v = NULL;
	size_t nv = 0, cap = 0;
	int r;

	*ids = NULL;
	*n = 0;
	lock(s);
	if (!db_in_tx(s->db)) {
		r = ERR_PRECONDITION;
		goto out;
	}
	if ((r = prepare(s, "SELECT id, online_by FROM nodes WHERE online = 1 AND online_by <> '' "
	    "AND online_by NOT IN (SELECT name FROM replicas WHERE heartbeat_at >= ?) ORDER BY id",
	    &st)) != 0)
		goto out;
	db_bind_int(st, 1, live_after);
	while (r == 0 && next_row(st, &r)) {
		if (nv == cap) {
			size_t nc = cap ? 2 * cap : 16;
			struct orphan *t = realloc(v, nc * sizeof(*t));

			if (t == NULL) {
				r = ERR_NOMEM;
				break;
			}
			v = t;
			cap = nc;
		}
		v[nv].id = db_col_int(st, 0);
		col_text(st, 1, v[nv].by, sizeof(v[nv].by));
		nv++;
	}
	db_finalize(st);
	if (r == 0 && nv > 0 && (*ids = malloc(nv * sizeof(**ids))) == NULL)
		r = ERR_NOMEM;
	/* each only if still the dead replica's (not claimed meanwhile) */
	for (size_t i = 0; r == 0 && i < nv; i++) {
		if ((r = prepare(s, "UPDATE nodes SET online = 0, online_by = '' WHERE id = ? AND "
		    "online = 1 AND online_by = ?", &st)) != 0)
			break;
		db_bind_int(st, 1, v[i].id);
		bind_text(st, 2, v[i].by);
		if ((r = step_done(s, st, true)) == 0)
			(*ids)[(*n)++] = v[i].id;
		else if (r == ERR_NOT_FOUND)
			r = 0;
	}
	if (r != 0) {
		free(*ids);
		*ids = NULL;
		*n = 0;
	}
out:
	free(v);
	unlock(s);
	return r;
}

int
store_node_online_list(struct store *s, store_id_cb cb, void *ctx)
{
	struct db_stmt *st = NULL;
	int r;

	lock(s);
	if ((r = prepare(s, "SELECT id FROM nodes WHERE online = 1 ORDER BY id", &st)) != 0)
		goto out;
	while (r == 0 && next_row(st, &r))
		r = cb(ctx, db_col_int(st, 0));
	db_finalize(st);
out:
	unlock(s);
	return r;
}

/* ---- the replica list (migration 0008) ---- */

int
store_replica_beat(struct store *s, const struct store_replica *self, int64_t now,
		   int64_t live_after, bool exclusive, char *clash, size_t clashlen)
{
	struct db_stmt *st = NULL;
	int r;

	if (clashlen)
		clash[0] = 0;
	lock(s);
	if (!db_in_tx(s->db)) {
		r = ERR_PRECONDITION;
		goto out;
	}
	/* one replica at a time from here to its commit */
	if ((r = prepare(s, "UPDATE replica_list SET id = id WHERE id = 1", &st)) != 0 ||
	    (r = step_done(s, st, true)) != 0)
		goto out;
	if (self->derp_region_id != 0 && !exclusive) {
		if ((r = prepare(s, "SELECT name FROM replicas WHERE derp_region_id = ? AND name <> ? "
		    "AND heartbeat_at >= ? ORDER BY name", &st)) != 0)
			goto out;
		db_bind_int(st, 1, self->derp_region_id);
		bind_text(st, 2, self->name);
		db_bind_int(st, 3, live_after);
		if (next_row(st, &r)) {
			col_text(st, 0, clash, clashlen);
			r = ERR_EXISTS;
		}
		db_finalize(st);
		if (r != 0)
			goto out;
	}
	if ((r = prepare(s, exclusive ? "DELETE FROM replicas WHERE name <> ? OR heartbeat_at < ?" :
	    "DELETE FROM replicas WHERE name <> ? AND heartbeat_at < ?", &st)) != 0)
		goto out;
	bind_text(st, 1, self->name);
	db_bind_int(st, 2, live_after);
	if ((r = step_done(s, st, false)) != 0)
		goto out;
	if ((r = prepare(s, "UPDATE replicas SET server_url = ?, derp_region_id = ?, derp_region = ?, "
	    "heartbeat_at = ? WHERE name = ?", &st)) != 0)
		goto out;
	bind_text(st, 1, self->server_url);
	db_bind_int(st, 2, self->derp_region_id);
	bind_text(st, 3, self->derp_region ? self->derp_region : "");
	db_bind_int(st, 4, now);
	bind_text(st, 5, self->name);
	if ((r = step_done(s, st, true)) != ERR_NOT_FOUND)
		goto out;
	if ((r = prepare(s, "INSERT INTO replicas(name, server_url, derp_region_id, derp_region, "
	    "started_at, heartbeat_at) VALUES (?, ?, ?, ?, ?, ?)", &st)) != 0)
		goto out;
	bind_text(st, 1, self->name);
	bind_text(st, 2, self->server_url);
	db_bind_int(st, 3, self->derp_region_id);
	bind_text(st, 4, self->derp_region ? self->derp_region : "");
	db_bind_int(st, 5, self->started_at ? self->started_at : now);
	db_bind_int(st, 6, now);
	r = step_done(s, st, false);
out:
	unlock(s);
	return r;
}

int
store_replica_list(struct store *s, int64_t live_after, store_replica_cb cb, void *ctx)
{
	struct db_stmt *st = NULL;
	struct store_replica rep;
	int r;

	lock(s);
	if ((r = prepare(s, "SELECT name, server_url, derp_region_id, derp_region, started_at, "
	    "heartbeat_at FROM replicas WHERE heartbeat_at >= ? ORDER BY name", &st)) != 0)
		goto out;
	db_bind_int(st, 1, live_after);
	while (r == 0 && next_row(st, &r)) {
		const char *t = db_col_text(st, 3);

		memset(&rep, 0, sizeof(rep));
		col_text(st, 0, rep.name, sizeof(rep.name));
		col_text(st, 1, rep.server_url, sizeof(rep.server_url));
		rep.derp_region_id = db_col_int(st, 2);
		rep.derp_region = t ? t : "";
		rep.started_at = db_col_int(st, 4);
		rep.heartbeat_at = db_col_int(st, 5);
		r = cb(ctx, &rep);
	}
	db_finalize(st);
out:
	unlock(s);
	return r;
}

int
store_replica_publish(struct store *s, const char *list, bool *changed)
{
	struct db_stmt *st = NULL;
	int r;

	*changed = false;
	lock(s);
	if (!db_in_tx(s->db)) {
		r = ERR_PRECONDITION;
		goto out;
	}
	if ((r = prepare(s, "UPDATE replica_list SET published = ? WHERE id = 1 AND published <> ?",
	    &st)) != 0)
		goto out;
	bind_text(st, 1, list);
	bind_text(st, 2, list);
	r = step_done(s, st, true);
	if (r == 0)
		*changed = true;
	else if (r == ERR_NOT_FOUND)
		r = 0;
out:
	unlock(s);
	return r;
}

int
store_replica_leave(struct store *s, const char *name)
{
	struct db_stmt *st = NULL;
	int r;

	lock(s);
	if ((r = prepare(s, "DELETE FROM replicas WHERE name = ?", &st)) == 0) {
		bind_text(st, 1, name);
		r = step_done(s, st, false);
	}
	unlock(s);
	return r;
}

int
store_clock(struct store *s, int64_t *now)
{
	struct db_stmt *st = NULL;
	int r;

	if (db_kind(s->db) != DB_POSTGRES) {
		*now = time_now_s();
		return 0;
	}
	lock(s);
	if ((r = prepare(s, "SELECT CAST(FLOOR(EXTRACT(EPOCH FROM clock_timestamp())) AS BIGINT)",
	    &st)) == 0) {
		r = ERR_DB;
		if (next_row(st, &r)) {
			*now = db_col_int(st, 0);
			r = 0;
		}
		db_finalize(st);
	}
	unlock(s);
	return r;
}
