// SPDX-License-Identifier: MIT
/*
 * Policy state of the running server. A compiled policy is published to the
 * mapper as a reference-counted `compiled` context; a recompilation swaps in
 * a new one and only the nodes whose digest changed get a fresh netmap.
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <sodium.h>

#include "common/jsonx.h"
#include "common/keys.h"
#include "common/log.h"
#include "common/util.h"
#include "policy/policy.h"
#include "server/mapper.h"
#include "server/nodeview.h"
#include "server/policy_api.h"
#include "server/replica.h"
#include "server/routes.h"
#include "server/server.h"

/* A policy shared by the state and every result compiled from it: a result
 * points into its policy, and streams keep results after a new policy is
 * installed. */
struct polref {
	atomic_int refs;
	struct policy *pol;
};

static void
polref_put(struct polref *p)
{
	if (p == NULL || atomic_fetch_sub(&p->refs, 1) != 1)
		return;
	policy_free(p->pol);
	free(p);
}

struct compiled {
	atomic_int refs;
	struct polref *pref;	/* keeps the policy `res` points into */
	struct policy_result *res;
	size_t n;
	int64_t *ids;		/* index -> node id */
	int64_t *hkeys;		/* node id -> index + 1, open addressing */
	size_t *hvals;
	size_t hcap;
	uint64_t *hash;		/* per index */
	bool ascending;		/* ids ascend with the index */
};

struct policy_state {
	pthread_mutex_t lock;	/* serialises loads and compiles */
	struct policy *pol;	/* NULL: no policy, everything allowed */
	struct polref *pref;	/* owns pol */
	char *text;
	char etag[48];
	struct compiled *cur;
	atomic_bool dirty;
	/* A compiled result waiting to be published to the mapper. republish()
	 * runs under `lock`, which registrations take inside their store
	 * transaction (auto-approval), so it cannot take the store itself: it
	 * posts here and policy_state_publish() logs the change and applies it
	 * without `lock`. Several posts merge (their full and filter sets). */
	pthread_mutex_t pub_lock;
	bool pub_have, pub_all, pub_none;	/* none: no policy (allow all) */
	struct compiled *pub_c;
	struct mapper_ids pub_full, pub_filt;
	char pub_etag[48];	/* of the policy posted last */
	char etag_now[48];	/* `etag`, readable under pub_lock */
	/* Replicas, the leader: the policy file as last seen (stat). */
	struct timespec file_mtim, file_ctim;
	off_t file_size;
	ino_t file_ino;
};

static int
ids_add(struct mapper_ids *l, int64_t id)
{
	for (size_t i = 0; i < l->n; i++)
		if (l->v[i] == id)
			return 0;
	if (l->n == l->cap) {
		size_t ncap = l->cap ? 2 * l->cap : 64;
		int64_t *v = realloc(l->v, ncap * sizeof(*v));

		if (v == NULL)
			return ERR_NOMEM;
		l->v = v;
		l->cap = ncap;
	}
	l->v[l->n++] = id;
	return 0;
}

/* ---- compiled context ---- */

static void
compiled_put(void *ctx)
{
	struct compiled *c = ctx;

	if (c == NULL || atomic_fetch_sub(&c->refs, 1) != 1)
		return;
	policy_result_free(c->res);
	polref_put(c->pref);
	free(c->ids);
	free(c->hkeys);
	free(c->hvals);
	free(c->hash);
	free(c);
}

static void
compiled_get(void *ctx)
{
	atomic_fetch_add(&((struct compiled *)ctx)->refs, 1);
}

static bool
index_of(const struct compiled *c, int64_t id, size_t *idx)
{
	size_t s = (size_t)((uint64_t)id * 0x9e3779b97f4a7c15ULL >> 20) & (c->hcap - 1);

	for (; c->hkeys[s] != 0; s = (s + 1) & (c->hcap - 1)) {
		if (c->hkeys[s] == id) {
			*idx = c->hvals[s] - 1;
			return true;
		}
	}
	return false;
}

static bool
compiled_can_see(void *ctx, int64_t viewer, int64_t peer)
{
	const struct compiled *c = ctx;
	size_t i, j;

	return index_of(c, viewer, &i) && index_of(c, peer, &j) &&
	    policy_result_can_see(c->res, i, j);
}

static char *
compiled_filter(void *ctx, int64_t viewer)
{
	const struct compiled *c = ctx;
	json_t *f;
	char *t;
	size_t i;

	if (!index_of(c, viewer, &i))
		return strdup("[]");
	if ((f = policy_result_filter(c->res, i)) == NULL)
		return NULL;
	t = json_dumps(f, JSON_COMPACT);
	json_decref(f);
	return t;
}

static int
cmp_id64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

	return x < y ? -1 : x > y;
}

static ssize_t
compiled_peers(void *ctx, int64_t viewer, int64_t **out)
{
	const struct compiled *c = ctx;
	size_t i, *idx = NULL;
	ssize_t n;
	int64_t *v;

	*out = NULL;
	if (!index_of(c, viewer, &i))
		return 0;	/* not compiled yet: sees nobody, as can_see says */
	if ((n = policy_result_peers(c->res, i, &idx)) < 0)
		return -1;
	if (n == 0)
		return 0;
	if ((v = malloc((size_t)n * sizeof(*v))) == NULL) {
		free(idx);
		return -1;
	}
	for (ssize_t k = 0; k < n; k++)
		v[k] = c->ids[idx[k]];
	free(idx);
	if (!c->ascending)	/* the indexes ascend (policy_result_peers) */
		qsort(v, (size_t)n, sizeof(*v), cmp_id64);
	*out = v;
	return n;
}

static const struct mapper_policy_ops compiled_ops = {
	.can_see = compiled_can_see,
	.filter = compiled_filter,
	.get = compiled_get,
	.put = compiled_put,
	.peers = compiled_peers,
};

static struct compiled *
compile(struct polref *pref, const struct policy_node *nodes, size_t n)
{
	struct compiled *c = calloc(1, sizeof(*c));

	if (c == NULL)
		return NULL;
	atomic_init(&c->refs, 1);
	atomic_fetch_add(&pref->refs, 1);
	c->pref = pref;
	c->res = policy_compile(pref->pol, nodes, n);
	c->n = n;
	c->hcap = 1024;
	while (c->hcap < 4 * (n + 1))
		c->hcap *= 2;
	c->ids = calloc(n + 1, sizeof(*c->ids));
	c->hash = calloc(n + 1, sizeof(*c->hash));
	c->hkeys = calloc(c->hcap, sizeof(*c->hkeys));
	c->hvals = calloc(c->hcap, sizeof(*c->hvals));
	if (c->res == NULL || !c->ids || !c->hash || !c->hkeys || !c->hvals) {
		compiled_put(c);
		return NULL;
	}
	for (size_t i = 0; i < n; i++) {
		int64_t id = (int64_t)nodes[i].id;
		size_t s = (size_t)((uint64_t)id * 0x9e3779b97f4a7c15ULL >> 20) & (c->hcap - 1);

		while (c->hkeys[s] != 0)
			s = (s + 1) & (c->hcap - 1);
		c->hkeys[s] = id;
		c->hvals[s] = i + 1;
		c->ids[i] = id;
		c->ascending = i == 0 ? true : c->ascending && c->ids[i - 1] < id;
		c->hash[i] = policy_result_hash(c->res, i);
	}
	return c;
}

/* The result of "no policy" over the same nodes: what every node had
 * before the first policy, to compare a new one with. */
static struct compiled *
compile_allow_all(const struct policy_node *nodes, size_t n)
{
	struct polref *none = calloc(1, sizeof(*none));
	struct compiled *c;

	if (none == NULL)
		return NULL;
	atomic_init(&none->refs, 1);
	c = compile(none, nodes, n);
	polref_put(none);
	return c;
}

static void publish(struct server *s, bool initial);

/* Posts a result for policy_state_publish(); c NULL: no policy. */
static void
post_as(struct policy_state *ps, struct compiled *c, const int64_t *full, size_t nfull,
	const int64_t *filt, size_t nfilt, bool all, bool older)
{
	pthread_mutex_lock(&ps->pub_lock);
	if (older && ps->pub_have) {
		/* a newer result is waiting: it wins, with our nodes too */
	} else {
		if (c)
			compiled_get(c);
		if (ps->pub_have && ps->pub_c)
			compiled_put(ps->pub_c);
		ps->pub_c = c;
		ps->pub_none = c == NULL;
		str_copy(ps->pub_etag, c ? ps->etag : "", sizeof(ps->pub_etag));
	}
	ps->pub_all = (ps->pub_have && ps->pub_all) || all;
	ps->pub_have = true;
	for (size_t i = 0; !ps->pub_all && i < nfull; i++)
		if (ids_add(&ps->pub_full, full[i]) != 0)
			ps->pub_all = true;
	for (size_t i = 0; !ps->pub_all && i < nfilt; i++)
		if (ids_add(&ps->pub_filt, filt[i]) != 0)
			ps->pub_all = true;
	pthread_mutex_unlock(&ps->pub_lock);
}

static void
post(struct policy_state *ps, struct compiled *c, const int64_t *full, size_t nfull,
     const int64_t *filt, size_t nfilt, bool all)
{
	post_as(ps, c, full, nfull, filt, nfilt, all, false);
}

void
policy_state_publish(struct server *s)
{
	publish(s, false);
}

/*
 * Logs the waiting result as a POLICY change and applies it. At start
 * (`initial`) the policy read from the store is the one clients already
 * have (versions resume across the restart), so it is applied without a
 * change; a policy file whose ETag differs from the last one logged is a
 * change (every stream gets a full map).
 */
static void
publish(struct server *s, bool initial)
{
	struct policy_state *ps = s->policy;
	struct mapper_ids full = { 0 }, filt = { 0 };
	struct compiled *c;
	bool all, none;
	char *payload, etag[48];
	uint64_t v;
	int r;

	if (ps == NULL)
		return;
	pthread_mutex_lock(&ps->pub_lock);
	if (!ps->pub_have) {
		pthread_mutex_unlock(&ps->pub_lock);
		return;
	}
	c = ps->pub_c;
	all = ps->pub_all;
	none = ps->pub_none;
	full = ps->pub_full;
	filt = ps->pub_filt;
	str_copy(etag, ps->pub_etag, sizeof(etag));
	memset(&ps->pub_full, 0, sizeof(ps->pub_full));
	memset(&ps->pub_filt, 0, sizeof(ps->pub_filt));
	ps->pub_have = ps->pub_all = false;
	ps->pub_c = NULL;
	pthread_mutex_unlock(&ps->pub_lock);
	/* a node in both sets needs the full map, which has the filter too */
	for (size_t i = 0; i < filt.n; i++)
		for (size_t j = 0; j < full.n; j++)
			if (filt.v[i] == full.v[j])
				filt.v[i] = 0;
	if (initial && (!s->cfg.policy_file[0] || strcmp(etag, s->policy_etag_logged) == 0)) {
		mapper_set_policy(s->mapper, none ? NULL : &compiled_ops, c, 0, NULL);
		compiled_put(c);
		payload = NULL;
		goto out;
	}
	if (initial)
		all = true;	/* the policy file changed while the server was down */
	/* the nodes whose peers change get their added/removed peers recorded
	 * (deltas, live and on resume), within bounds; others a full map */
	payload = mapper_policy_change(s->mapper, none ? NULL : &compiled_ops, c, full.v, full.n, all,
	    filt.v, filt.n, etag);
	if (payload == NULL || (r = server_publish_change(s, STORE_CHANGE_POLICY, 0, payload, &v)) != 0) {
		/* put it back and try again on the next tick */
		log_warn("msg=\"cannot publish the policy change; retrying\"");
		post_as(ps, c, full.v, full.n, filt.v, filt.n, all, true);
		compiled_put(c);
		goto out;
	}
	mapper_set_policy(s->mapper, none ? NULL : &compiled_ops, c, v, payload);
	server_publish_done(s, NULL);
	compiled_put(c);
out:
	free(payload);
	mapper_ids_free(&full);
	mapper_ids_free(&filt);
}

/*
 * Recompiles over the live nodes and publishes what changed: a node whose
 * peer set changed gets a fresh full map; a node whose peers are the same
 * but whose filter changed gets only a "filter" delta (a few hundred bytes
 * instead of a map of every peer). With `all` (a new policy) the previous
 * result is compared too, or "no policy" when there was none.
 * Called with ps->lock.
 */
static void
republish(struct server *s, bool all)
{
	struct policy_state *ps = s->policy;
	struct mapper_policy_view v;
	struct compiled *c, *old, *base = NULL;
	int64_t *full, *filt;
	size_t n = 0, nfull = 0, nfilt = 0;
	int64_t t0 = time_mono_ms(), t1;

	atomic_store(&ps->dirty, false);
	if (ps->pol == NULL) {
		compiled_put(ps->cur);
		ps->cur = NULL;
		post(ps, NULL, NULL, 0, NULL, 0, all);
		return;
	}
	if (mapper_policy_view(s->mapper, &v) != 0)
		goto retry;
	t1 = time_mono_ms();
	n = v.n;
	if ((c = compile(ps->pref, v.pn, n)) == NULL) {
		mapper_policy_view_free(&v);
		goto retry;
	}
	old = ps->cur;
	if (old == NULL && all)
		old = base = compile_allow_all(v.pn, n);
	mapper_policy_view_free(&v);
	full = calloc(n + 1, sizeof(*full));
	filt = calloc(n + 1, sizeof(*filt));
	for (size_t i = 0; full && filt && old && i < n; i++) {
		size_t j;

		if (!index_of(old, c->ids[i], &j) || policy_result_peers_hash(old->res, j) !=
		    policy_result_peers_hash(c->res, i))
			full[nfull++] = c->ids[i];
		else if (policy_result_filter_hash(old->res, j) !=
		    policy_result_filter_hash(c->res, i))
			filt[nfilt++] = c->ids[i];
	}
	/* Without a previous result to compare with, or out of memory: every
	 * stream gets a full map. */
	post(ps, c, full, nfull, filt, nfilt, full == NULL || filt == NULL || old == NULL);
	free(full);
	free(filt);
	compiled_put(base);
	compiled_put(ps->cur);
	ps->cur = c;
	log_debug("msg=\"policy compiled\" nodes=%zu full_maps=%zu filter_deltas=%zu ms=%" PRId64
	    " copy_ms=%" PRId64, n, nfull, nfilt, time_mono_ms() - t0, t1 - t0);
	return;
retry:
	log_error("msg=\"out of memory compiling the policy; will retry\"");
	atomic_store(&ps->dirty, true);
}

static void
make_etag(const char *text, size_t len, char out[48])
{
	uint8_t h[crypto_hash_sha256_BYTES];
	char hex[2 * 16 + 1];

	crypto_hash_sha256(h, (const uint8_t *)text, len);
	(void)hex_encode(hex, sizeof(hex), h, 16);
	snprintf(out, 48, "\"%s\"", hex);
}

/* Validates text as a policy against the live nodes (syntax, semantics and
 * tests). On success *out is the loaded policy. */
static int
validate(struct server *s, const char *text, size_t len, struct policy **out,
	 struct policy_diags *d)
{
	struct mapper_policy_view v;
	int r;

	if ((r = policy_load(text, len, out, d)) != 0)
		return r;
	if ((r = mapper_policy_view(s->mapper, &v)) == 0) {
		r = policy_run_tests(*out, v.pn, v.n, d);
		mapper_policy_view_free(&v);
	}
	if (r == 0)
		return 0;
	policy_free(*out);
	*out = NULL;
	return r;
}

static void
log_diags(const char *path, const struct policy_diags *d)
{
	for (size_t i = 0; i < d->n; i++)
		log_error("msg=\"policy rejected\" at=%s:%d:%d problem=\"%s\"", path,
		    d->v[i].line, d->v[i].col, d->v[i].msg);
}

static char *
read_policy_file(const char *path, size_t max, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *p;

	if (f == NULL)
		return NULL;
	if ((p = malloc(max + 1)) == NULL) {
		fclose(f);
		return NULL;
	}
	*len = fread(p, 1, max + 1, f);
	fclose(f);
	if (*len > max) {
		free(p);
		return NULL;
	}
	p[*len] = 0;
	return p;
}

static void auto_approve_all(struct server *s);

/* Installs a validated policy. Called with ps->lock. */
static void
install(struct server *s, struct policy *pol, char *text, size_t len)
{
	struct policy_state *ps = s->policy;
	struct polref *pref = malloc(sizeof(*pref));

	if (pref == NULL) {
		log_error("msg=\"out of memory installing the policy; the previous one stays\"");
		policy_free(pol);
		free(text);
		return;
	}
	atomic_init(&pref->refs, 1);
	pref->pol = pol;
	polref_put(ps->pref);	/* results compiled from it keep it alive */
	ps->pref = pref;
	free(ps->text);
	ps->pol = pol;
	ps->text = text;
	make_etag(text, len, ps->etag);
	pthread_mutex_lock(&ps->pub_lock);
	str_copy(ps->etag_now, ps->etag, sizeof(ps->etag_now));
	pthread_mutex_unlock(&ps->pub_lock);
	if (s->mapper)
		auto_approve_all(s);
	republish(s, true);
}

/* Reads policy_file and validates it against the nodes: the text in *text
 * (owned), the policy in *pol; the problems logged with FILE:LINE:COL. */
static int
load_file_text(struct server *s, char **text, size_t *len, struct policy **pol)
{
	struct policy_diags d;
	int r;

	*pol = NULL;
	if ((*text = read_policy_file(s->cfg.policy_file, POLICY_MAX_SIZE, len)) == NULL) {
		log_error("msg=\"cannot read policy file (missing or over 1 MiB)\" path=%s",
		    s->cfg.policy_file);
		return ERR_IO;
	}
	policy_diags_init(&d);
	if ((r = validate(s, *text, *len, pol, &d)) != 0) {
		log_diags(s->cfg.policy_file, &d);
		free(*text);
		*text = NULL;
	}
	policy_diags_cleanup(&d);
	return r;
}

static int
load_file(struct server *s)
{
	struct policy *pol;
	size_t len = 0;
	char *text;
	int r;

	if ((r = load_file_text(s, &text, &len, &pol)) != 0)
		return r;
	install(s, pol, text, len);
	log_info("msg=\"policy loaded\" path=%s rules=%zu grants=%zu tests=%zu", s->cfg.policy_file,
	    policy_rule_count(pol), policy_grant_count(pol), policy_test_count(pol));
	return 0;
}

/*
 * Replicas: the leader loads the policy file and, when it differs from the
 * policy stored last, stores it as a new version (by "policy_file"), which
 * every other replica then loads from the database as it does a PUT's.
 * Called with ps->lock.
 */
static int
load_file_shared(struct server *s)
{
	struct policy_state *ps = s->policy;
	struct store_policy latest, sp;
	struct policy *pol;
	char if_match[48] = "";
	size_t len = 0;
	char *text;
	int r;

	if ((r = load_file_text(s, &text, &len, &pol)) != 0)
		return r;
	memset(&sp, 0, sizeof(sp));
	make_etag(text, len, sp.etag);
	if ((r = store_policy_latest(s->store, &latest)) == 0) {
		str_copy(if_match, latest.etag, sizeof(if_match));
		store_policy_cleanup(&latest);
	} else if (r != ERR_NOT_FOUND) {
		goto fail;
	}
	if (strcmp(if_match, sp.etag) != 0) {
		sp.text = text;
		sp.created_at = time_now_s();
		str_copy(sp.created_by, "policy_file", sizeof(sp.created_by));
		/* conditional: of two replicas that both believe they lead,
		 * one stores it */
		r = store_policy_insert_if(s->store, &sp, if_match[0] ? if_match : NULL);
		if (r == ERR_PRECONDITION) {
			log_info("msg=\"another replica stored a policy meanwhile; following it\"");
			r = 0;
			goto fail;
		}
		if (r != 0)
			goto fail;
		log_info("msg=\"policy file stored for every replica\" path=%s etag=%s version=%"
		    PRId64, s->cfg.policy_file, sp.etag, sp.id);
	}
	if (strcmp(sp.etag, ps->etag) == 0) {	/* in force here already */
		if (strcmp(if_match, sp.etag) == 0)
			log_info("msg=\"policy file unchanged\" path=%s etag=%s", s->cfg.policy_file,
			    sp.etag);
		policy_free(pol);
		free(text);
		return 0;
	}
	install(s, pol, text, len);
	log_info("msg=\"policy loaded\" path=%s rules=%zu grants=%zu tests=%zu", s->cfg.policy_file,
	    policy_rule_count(pol), policy_grant_count(pol), policy_test_count(pol));
	return 0;
fail:
	policy_free(pol);
	free(text);
	return r;
}

void
policy_state_file_role(struct server *s, bool force)
{
	struct policy_state *ps = s->policy;
	struct stat st;

	if (ps == NULL || s->cfg.policy_file[0] == 0)
		return;
	if (stat(s->cfg.policy_file, &st) != 0)
		memset(&st, 0, sizeof(st));	/* missing: reported when it is read */
	pthread_mutex_lock(&ps->lock);
	if (!force && st.st_mtim.tv_sec == ps->file_mtim.tv_sec &&
	    st.st_mtim.tv_nsec == ps->file_mtim.tv_nsec &&
	    st.st_ctim.tv_sec == ps->file_ctim.tv_sec &&
	    st.st_ctim.tv_nsec == ps->file_ctim.tv_nsec &&
	    st.st_size == ps->file_size && st.st_ino == ps->file_ino) {
		pthread_mutex_unlock(&ps->lock);
		return;
	}
	ps->file_mtim = st.st_mtim;
	ps->file_ctim = st.st_ctim;
	ps->file_size = st.st_size;
	ps->file_ino = st.st_ino;
	if (load_file_shared(s) != 0)
		log_error("msg=\"policy file not loaded; the policy in force stays\" path=%s",
		    s->cfg.policy_file);
	pthread_mutex_unlock(&ps->lock);
	policy_state_publish(s);
}

int
policy_state_init(struct server *s)
{
	struct policy_state *ps = calloc(1, sizeof(*ps));
	struct store_policy sp;
	int r = 0;

	if (ps == NULL)
		return ERR_NOMEM;
	pthread_mutex_init(&ps->lock, NULL);
	pthread_mutex_init(&ps->pub_lock, NULL);
	s->policy = ps;
	pthread_mutex_lock(&ps->lock);
	if (s->cfg.policy_file[0]) {
		r = load_file(s);
	} else if ((r = store_policy_latest(s->store, &sp)) == 0) {
		struct policy_diags d;
		struct policy *pol = NULL;

		policy_diags_init(&d);
		/* A stored policy was valid when accepted; load it even if a test
		 * now fails against today's nodes, and say so. */
		if (policy_load(sp.text, strlen(sp.text), &pol, &d) == 0) {
			install(s, pol, sp.text, strlen(sp.text));
			sp.text = NULL;
		} else {
			log_diags("stored policy", &d);
			log_error("msg=\"stored policy no longer loads; allowing everything\"");
		}
		policy_diags_cleanup(&d);
		store_policy_cleanup(&sp);
	} else if (r == ERR_NOT_FOUND) {
		r = 0;
	}
	pthread_mutex_unlock(&ps->lock);
	publish(s, true);
	return r;
}

void
policy_state_free(struct server *s)
{
	struct policy_state *ps = s->policy;

	if (ps == NULL)
		return;
	compiled_put(ps->cur);
	if (ps->pub_have)
		compiled_put(ps->pub_c);
	mapper_ids_free(&ps->pub_full);
	mapper_ids_free(&ps->pub_filt);
	polref_put(ps->pref);
	free(ps->text);
	pthread_mutex_destroy(&ps->pub_lock);
	pthread_mutex_destroy(&ps->lock);
	free(ps);
	s->policy = NULL;
}

/* Approves what the policy's autoApprovers allow. Called with ps->lock. */
static bool
auto_approve_locked(struct server *s, struct store_node *n)
{
	struct ip_prefix adv[ROUTES_MAX], served[ROUTES_MAX];
	const char *tags[NODEVIEW_TAGS];
	struct policy_node pn;
	size_t na, ns, bytes, ntags;
	char *tagv;
	bool changed = false;

	if (s->policy->pol == NULL || !nodeview_advertises(n) ||
	    nodeview_tags(n->tags, &tagv, &bytes, &ntags) != 0)
		return false;
	for (size_t k = 0, at = 0; k < ntags; k++) {
		tags[k] = tagv + at;
		at += strlen(tags[k]) + 1;
	}
	na = routes_from_json(n->routes_advertised, adv, ROUTES_MAX);
	ns = routes_served(n, served);
	pn = (struct policy_node){ .id = (uint64_t)n->id, .name = n->name,
	    .user = ntags ? NULL : n->user, .tags = tags, .ntags = ntags, .ipv4 = n->ipv4,
	    .ipv6 = n->ipv6, .routes = served, .nroutes = ns, .advertised = adv,
	    .nadvertised = na };
	for (size_t i = 0; i < na; i++) {
		bool have = false;

		for (size_t j = 0; j < ns && !have; j++)
			have = served[j].bits == adv[i].bits && addr_equal(&served[j].addr, &adv[i].addr);
		if (!have && policy_auto_approves(s->policy->pol, &pn, &adv[i]) &&
		    routes_approve(n, &adv[i]) == 0) {
			char t[ADDR_STR_MAX];

			prefix_fmt(t, &adv[i]);
			log_info("msg=\"route approved by autoApprovers\" node_id=%" PRId64 " route=%s",
			    n->id, t);
			changed = true;
		}
	}
	free(tagv);
	return changed;
}

static int
approve_edit(void *ctx, struct store_node *n)
{
	(void)auto_approve_locked(ctx, n);
	return 0;
}

int
policy_state_auto_approve(struct server *s, int64_t id)
{
	int r;

	if (s->policy == NULL)
		return 0;
	pthread_mutex_lock(&s->policy->lock);
	r = s->policy->pol ? server_node_edit(s, id, STORE_NODE_APPROVED, approve_edit, s, NULL) : 0;
	pthread_mutex_unlock(&s->policy->lock);
	return r;
}

/* A new policy may approve routes advertised earlier. Called with ps->lock. */
static void
auto_approve_all(struct server *s)
{
	struct mapper_ids ids = { 0 };

	if (mapper_advertisers(s->mapper, &ids) != 0) {
		log_error("msg=\"out of memory listing the nodes that advertise routes; "
		    "autoApprovers apply at their next change\"");
		mapper_ids_free(&ids);
		return;
	}
	for (size_t i = 0; i < ids.n; i++) {
		int r = server_node_edit(s, ids.v[i], STORE_NODE_APPROVED, approve_edit, s, NULL);

		if (r != 0 && r != ERR_NOT_FOUND)	/* not found: deleted meanwhile */
			log_error("msg=\"cannot save auto-approved routes\" node_id=%" PRId64,
			    ids.v[i]);
	}
	mapper_ids_free(&ids);
}

struct polref *
policy_state_hold(struct server *s)
{
	struct polref *p = NULL;

	if (s->policy == NULL)
		return NULL;
	pthread_mutex_lock(&s->policy->lock);
	if (s->policy->pol && (p = s->policy->pref) != NULL)
		atomic_fetch_add(&p->refs, 1);
	pthread_mutex_unlock(&s->policy->lock);
	return p;
}

void
policy_state_release(struct polref *p)
{
	polref_put(p);
}

int
policy_tags_allowed(const struct polref *p, const char *user, json_t *tags, char *why,
		    size_t whylen)
{
	json_t *t;
	size_t i;

	json_array_foreach(tags, i, t) {
		const char *tag = json_string_value(t);

		if (p == NULL || p->pol == NULL) {
			snprintf(why, whylen, "%s: no policy is loaded, so no tag has an owner "
			    "(tagOwners)", tag);
			return ERR_FORBIDDEN;
		}
		if (!policy_tag_owned(p->pol, tag, user, NULL, 0)) {
			snprintf(why, whylen, "%s is not permitted for user %s: the policy's tagOwners "
			    "do not list the user or one of the user's groups for it", tag, user);
			return ERR_FORBIDDEN;
		}
	}
	return 0;
}

void
policy_state_dirty(struct server *s)
{
	if (s->policy && s->policy->pol)
		atomic_store(&s->policy->dirty, true);
}

void
policy_state_tick(struct server *s)
{
	struct policy_state *ps = s->policy;

	if (ps == NULL)
		return;
	if (atomic_load(&ps->dirty)) {
		pthread_mutex_lock(&ps->lock);
		if (atomic_load(&ps->dirty))
			republish(s, false);
		pthread_mutex_unlock(&ps->lock);
	}
	policy_state_publish(s);
}

bool
policy_state_etag_is(struct server *s, const char *etag)
{
	struct policy_state *ps = s->policy;
	bool same;

	if (ps == NULL || etag == NULL || etag[0] == 0)
		return false;
	pthread_mutex_lock(&ps->pub_lock);
	same = strcmp(ps->etag_now, etag) == 0;
	pthread_mutex_unlock(&ps->pub_lock);
	return same;
}

void
policy_state_follow_store(struct server *s)
{
	struct policy_state *ps = s->policy;
	struct store_policy sp;
	struct policy_diags d;
	struct policy *pol = NULL;

	/* with a policy file, the leader stores what it reads there and the
	 * others follow (a single server only reads its file) */
	if (ps == NULL || (s->cfg.policy_file[0] && replica_leader(s->replica)))
		return;
	if (store_policy_latest(s->store, &sp) != 0)
		return;
	pthread_mutex_lock(&ps->lock);
	if (strcmp(sp.etag, ps->etag) != 0) {
		policy_diags_init(&d);
		if (policy_load(sp.text, strlen(sp.text), &pol, &d) == 0) {
			install(s, pol, sp.text, strlen(sp.text));
			sp.text = NULL;
			log_info("msg=\"policy changed through another replica; loaded\" etag=%s",
			    ps->etag);
		} else {
			log_diags("stored policy", &d);
			log_error("msg=\"the policy another replica stored does not load here; "
			    "the previous one stays\"");
		}
		policy_diags_cleanup(&d);
	}
	pthread_mutex_unlock(&ps->lock);
	store_policy_cleanup(&sp);
	policy_state_publish(s);
}

void
policy_state_reload_file(struct server *s)
{
	if (s->cfg.policy_file[0] == 0) {
		log_info("msg=\"no policy file configured; nothing to reload\"");
		return;
	}
	if (s->replica != NULL) {	/* replicas: the leader's job */
		if (!replica_leader(s->replica)) {
			log_info("msg=\"policy file: the leader replica loads it (and checks it for "
			    "changes every second); this one follows the database\" path=%s",
			    s->cfg.policy_file);
			return;
		}
		policy_state_file_role(s, true);
		return;
	}
	pthread_mutex_lock(&s->policy->lock);
	if (load_file(s) != 0)
		log_error("msg=\"policy reload failed; the previous policy stays active\"");
	pthread_mutex_unlock(&s->policy->lock);
}

/* ---- REST ---- */

static void
problem_diags(struct http_response *resp, int status, const char *title,
	      const struct policy_diags *d)
{
	json_t *errs = json_array(), *o;
	char *t;

	for (size_t i = 0; i < d->n; i++)
		json_array_append_new(errs, json_pack("{s:i, s:i, s:s}", "line", d->v[i].line,
		    "column", d->v[i].col, "message", d->v[i].msg));
	o = json_pack("{s:s, s:s, s:i, s:s, s:o}", "type", "about:blank", "title", title,
	    "status", status, "detail", d->n ? d->v[0].msg : title, "errors", errs);
	t = o ? json_dumps(o, JSON_COMPACT) : NULL;
	json_decref(o);
	http_set_body(resp, status, "application/problem+json", t, t ? strlen(t) : 0);
}

static int
add_version(void *ctx, const struct store_policy *p)
{
	char t[32];

	time_fmt_rfc3339(t, p->created_at);
	return json_array_append_new(ctx, json_pack("{s:I, s:s, s:s, s:s}", "id",
	    (json_int_t)p->id, "etag", p->etag, "created_at", t, "created_by", p->created_by));
}

static void
put_policy(struct server *s, struct http_request *req, struct http_response *resp,
	   const char *who)
{
	struct policy_state *ps = s->policy;
	const char *if_match = http_header(req, "If-Match");
	struct policy_diags d;
	struct store_policy sp;
	struct policy *pol = NULL;
	char *text;
	int r;

	if (s->cfg.policy_file[0]) {
		http_problem(resp, 409, NULL, "the policy is managed in the file %s; edit it and "
		    "send SIGHUP", s->cfg.policy_file);
		return;
	}
	if (req->too_large || req->body.len > (size_t)s->cfg.max_policy_body ||
	    req->body.len > POLICY_MAX_SIZE) {
		http_problem(resp, 413, NULL, "policy is larger than %d bytes", POLICY_MAX_SIZE);
		return;
	}
	if ((text = malloc(req->body.len + 1)) == NULL) {
		http_problem(resp, 500, NULL, "out of memory");
		return;
	}
	memcpy(text, req->body.data, req->body.len);
	text[req->body.len] = 0;
	pthread_mutex_lock(&ps->lock);
	/* On PostgreSQL another replica may have changed the policy since this
	 * one loaded it: only the check in the database below decides. */
	if (if_match && strcmp(if_match, "*") != 0 && strcmp(if_match, ps->etag) != 0 &&
	    !store_is_postgres(s->store)) {
		pthread_mutex_unlock(&ps->lock);
		free(text);
		http_problem(resp, 412, NULL, "the policy changed since you read it (If-Match %s, "
		    "current ETag %s)", if_match, ps->etag[0] ? ps->etag : "none");
		return;
	}
	policy_diags_init(&d);
	if ((r = validate(s, text, req->body.len, &pol, &d)) != 0) {
		pthread_mutex_unlock(&ps->lock);
		free(text);
		problem_diags(resp, r == ERR_TOO_LARGE ? 413 : 422,
		    r == ERR_UNPROCESSABLE ? "policy tests failed" : "policy is not valid", &d);
		policy_diags_cleanup(&d);
		return;
	}
	policy_diags_cleanup(&d);
	memset(&sp, 0, sizeof(sp));
	sp.text = text;
	make_etag(text, req->body.len, sp.etag);
	sp.created_at = time_now_s();
	str_copy(sp.created_by, who, sizeof(sp.created_by));
	/* The If-Match check again, against the database in the insert's own
	 * transaction: another replica may have changed the policy since this
	 * one last loaded it. */
	if ((r = store_policy_insert_if(s->store, &sp, if_match)) != 0) {
		pthread_mutex_unlock(&ps->lock);
		policy_free(pol);
		free(text);
		if (r == ERR_PRECONDITION)
			http_problem(resp, 412, NULL, "the policy changed since you read it "
			    "(If-Match %s); read it again", if_match);
		else
			http_problem_err(resp, r, "cannot save the policy");
		return;
	}
	install(s, pol, text, req->body.len);
	pthread_mutex_unlock(&ps->lock);
	policy_state_publish(s);
	log_info("msg=\"policy updated\" etag=%s by=%s", sp.etag, sp.created_by);
	if (http_add_header(resp, "ETag", sp.etag) != 0) {
		http_problem(resp, 500, NULL, "out of memory");
		return;
	}
	server_reply_json(resp, 200, json_pack("{s:s, s:I}", "etag", sp.etag,
	    "version", (json_int_t)sp.id));
}

void
policy_state_etag(struct server *s, char out[static 48])
{
	out[0] = 0;
	if (s->policy == NULL)
		return;
	pthread_mutex_lock(&s->policy->lock);
	str_copy(out, s->policy->etag, 48);
	pthread_mutex_unlock(&s->policy->lock);
}

static json_t *
diags_json(const struct policy_diags *d)
{
	json_t *a = json_array();

	for (size_t i = 0; i < d->n; i++)
		json_array_append_new(a, json_pack("{s:i, s:i, s:s}", "line", d->v[i].line,
		    "column", d->v[i].col, "message", d->v[i].msg));
	return a;
}

/* The request body as a NUL-terminated policy text, or NULL with a 413
 * or 500 answered. */
static char *
body_text(struct server *s, struct http_request *req, struct http_response *resp)
{
	char *text;

	if (req->too_large || req->body.len > (size_t)s->cfg.max_policy_body ||
	    req->body.len > POLICY_MAX_SIZE) {
		http_problem(resp, 413, NULL, "policy is larger than %d bytes", POLICY_MAX_SIZE);
		return NULL;
	}
	if ((text = malloc(req->body.len + 1)) == NULL) {
		http_problem(resp, 500, NULL, "out of memory");
		return NULL;
	}
	memcpy(text, req->body.data, req->body.len);
	text[req->body.len] = 0;
	return text;
}

/*
 * POST /api/v1/policy/check: validates the body as PUT would (syntax,
 * names, tests against the live nodes) without saving anything. Answers
 * 200 whatever the verdict: {"valid", "errors": [{line, column, message}],
 * "tests": {"count", "passed", "failed", "failures": [...]}}.
 */
static void
check_policy(struct server *s, struct http_request *req, struct http_response *resp)
{
	struct policy_diags d, td;
	struct policy *pol = NULL;
	struct mapper_policy_view v;
	size_t ntests = 0;
	bool ran = false;
	char *text;
	json_t *out;
	int r;

	if ((text = body_text(s, req, resp)) == NULL)
		return;
	policy_diags_init(&d);
	policy_diags_init(&td);
	if ((r = policy_load(text, req->body.len, &pol, &d)) == 0) {
		ntests = policy_test_count(pol);
		if ((r = mapper_policy_view(s->mapper, &v)) == 0) {
			r = policy_run_tests(pol, v.pn, v.n, &td);
			mapper_policy_view_free(&v);
			ran = true;
		}
	}
	free(text);
	policy_free(pol);
	if (r == ERR_NOMEM || (r != 0 && d.n == 0 && td.n == 0)) {
		policy_diags_cleanup(&d);
		policy_diags_cleanup(&td);
		http_problem_err(resp, r, "cannot check the policy");
		return;
	}
	out = json_pack("{s:b, s:o, s:{s:I, s:b, s:b, s:I, s:o}}", "valid", r == 0,
	    "errors", diags_json(&d), "tests", "count", (json_int_t)ntests, "ran", ran,
	    "passed", ran && td.n == 0, "failed", (json_int_t)td.n, "failures", diags_json(&td));
	policy_diags_cleanup(&d);
	policy_diags_cleanup(&td);
	server_reply_json(resp, 200, out);
}

/*
 * POST /api/v1/policy/explain {"src", "dst" ("host:port"), "proto"?,
 * "policy"? (a draft text; default the active policy)}: accept or deny and
 * the rules that decide, as `wiremesh-server policy explain` prints them.
 */
static void
explain_policy(struct server *s, struct http_request *req, struct http_response *resp)
{
	struct policy_state *ps = s->policy;
	const char *src = NULL, *dst = NULL, *proto = NULL, *draft = NULL;
	struct mapper_policy_view nv;
	bool have_nv = false;
	char src_ip[ADDR_STR_MAX], dst_buf[ADDR_STR_MAX + 16];
	struct policy_diags d;
	struct policy *own = NULL;
	char why[256] = "";
	json_t *body, *out;
	struct buf b;
	int r;

	if (req->too_large || req->body.len > (size_t)s->cfg.max_policy_body) {
		http_problem(resp, 413, NULL, "request body is too large");
		return;
	}
	if ((body = jsonx_parse_object((const char *)req->body.data, req->body.len,
	    (size_t)s->cfg.max_policy_body + 4096, why, sizeof(why))) == NULL) {
		http_problem(resp, 400, NULL, "%s", why);
		return;
	}
	if (jsonx_str(body, "src", true, &src, why, sizeof(why)) != 0 ||
	    jsonx_str(body, "dst", true, &dst, why, sizeof(why)) != 0 ||
	    jsonx_str(body, "proto", false, &proto, why, sizeof(why)) == ERR_INVALID ||
	    jsonx_str(body, "policy", false, &draft, why, sizeof(why)) == ERR_INVALID) {
		json_decref(body);
		http_problem(resp, 400, NULL, "%s", why);
		return;
	}
	policy_diags_init(&d);
	if (draft && policy_load(draft, strlen(draft), &own, &d) != 0) {
		out = json_pack("{s:s, s:o}", "verdict", "invalid", "errors", diags_json(&d));
		policy_diags_cleanup(&d);
		json_decref(body);
		server_reply_json(resp, 200, out);
		return;
	}
	policy_diags_cleanup(&d);
	buf_init(&b, 64 * 1024);
	/* Node names (and addresses) stand for the node: a name becomes its
	 * address, and the nodes let the evaluator know whose it is. */
	if (mapper_policy_view(s->mapper, &nv) == 0) {
		have_nv = true;
		for (size_t i = 0; i < nv.n; i++) {
			const struct policy_node *pn = &nv.pn[i];
			char host[STORE_NAME_MAX + 8];
			const char *colon = strrchr(dst, ':');

			if (strcmp(src, pn->name) == 0 && pn->ipv4.family)
				addr_fmt(src_ip, &pn->ipv4), src = src_ip;
			if (colon && (size_t)(colon - dst) < sizeof(host)) {
				snprintf(host, sizeof(host), "%.*s", (int)(colon - dst), dst);
				if (strcmp(host, pn->name) == 0 && pn->ipv4.family) {
					char a[ADDR_STR_MAX];

					addr_fmt(a, &pn->ipv4);
					snprintf(dst_buf, sizeof(dst_buf), "%s%s", a, colon);
					dst = dst_buf;
				}
			}
		}
	}
	pthread_mutex_lock(&ps->lock);
	if (own == NULL && ps->pol == NULL) {
		pthread_mutex_unlock(&ps->lock);
		if (have_nv)
			mapper_policy_view_free(&nv);
		json_decref(body);
		buf_cleanup(&b);
		server_reply_json(resp, 200, json_pack("{s:s, s:s}", "verdict", "accept",
		    "explanation", "accept: no policy is set, so every node may reach every other\n"));
		return;
	}
	r = policy_explain_nodes(own ? own : ps->pol, src, dst, proto, have_nv ? nv.pn : NULL,
	    have_nv ? nv.n : 0, &b);
	pthread_mutex_unlock(&ps->lock);
	if (have_nv)
		mapper_policy_view_free(&nv);
	policy_free(own);
	json_decref(body);
	if (r < 0) {
		http_problem(resp, 400, NULL, "%.*s", (int)(b.len && b.data[b.len - 1] == '\n' ?
		    b.len - 1 : b.len), b.len ? (const char *)b.data : "bad source or destination");
		buf_cleanup(&b);
		return;
	}
	out = json_pack("{s:s, s:s%}", "verdict", r == 1 ? "accept" : "deny",
	    "explanation", b.len ? (const char *)b.data : "", b.len);
	buf_cleanup(&b);
	server_reply_json(resp, 200, out);
}

/* GET /api/v1/policy/history/{id}: one version with its text. */
static void
history_version(struct server *s, struct http_response *resp, const char *idtext)
{
	struct store_policy sp;
	char t[32];
	const char *end;
	int64_t id = server_parse_id(idtext, &end);
	int r;

	if (*end || id <= 0) {
		http_problem(resp, 400, NULL, "policy version must be a positive integer");
		return;
	}
	if ((r = store_policy_get(s->store, id, &sp)) != 0) {
		http_problem_err(resp, r, "no policy version %" PRId64, id);
		return;
	}
	time_fmt_rfc3339(t, sp.created_at);
	server_reply_json(resp, 200, json_pack("{s:I, s:s, s:s, s:s, s:s}", "id",
	    (json_int_t)sp.id, "etag", sp.etag, "created_at", t, "created_by", sp.created_by,
	    "text", sp.text));
	store_policy_cleanup(&sp);
}

void
policy_api_handle(struct server *s, struct http_request *req, struct http_response *resp,
		  const char *rest, const char *who)
{
	struct policy_state *ps = s->policy;

	if (strcmp(rest, "/check") == 0 && strcmp(req->method, "POST") == 0) {
		check_policy(s, req, resp);
	} else if (strcmp(rest, "/explain") == 0 && strcmp(req->method, "POST") == 0) {
		explain_policy(s, req, resp);
	} else if (strncmp(rest, "/history/", 9) == 0 && strcmp(req->method, "GET") == 0) {
		history_version(s, resp, rest + 9);
	} else if (strcmp(rest, "/history") == 0 && strcmp(req->method, "GET") == 0) {
		json_t *a = json_array();
		int r = store_policy_history(s->store, add_version, a);

		if (r != 0) {
			json_decref(a);
			http_problem_err(resp, r, "cannot read the policy history");
			return;
		}
		server_reply_json(resp, 200, json_pack("{s:o}", "history", a));
	} else if (*rest == 0 && strcmp(req->method, "GET") == 0) {
		char *t;

		pthread_mutex_lock(&ps->lock);
		if (ps->text == NULL) {
			pthread_mutex_unlock(&ps->lock);
			http_problem(resp, 404, NULL, "no policy is set: every node may reach every other");
			return;
		}
		t = strdup(ps->text);
		if (t == NULL || http_add_header(resp, "ETag", ps->etag) != 0) {
			pthread_mutex_unlock(&ps->lock);
			free(t);
			http_problem(resp, 500, NULL, "out of memory");
			return;
		}
		pthread_mutex_unlock(&ps->lock);
		http_set_body(resp, 200, "application/hujson", t, strlen(t));
	} else if (*rest == 0 && strcmp(req->method, "PUT") == 0) {
		put_policy(s, req, resp, who);
	} else {
		http_problem(resp, 405, NULL, "%s is not supported on %s", req->method, req->path);
	}
}
