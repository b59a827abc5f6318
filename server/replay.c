// SPDX-License-Identifier: MIT
/* Per-machine sets of recent signatures with expiry, in a chained hash of
 * machine keys. A machine's set is a small array searched linearly: it holds
 * at most per_machine entries, a well-behaved node a handful. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "server/replay.h"

enum { BUCKETS = 1 << 14 };

struct sig {
	uint64_t h1, h2;
	int64_t expires;
};

struct machine {
	struct machine *next;
	uint8_t key[KEY_LEN];
	struct sig *s;
	size_t n, cap;
};

struct replay {
	pthread_mutex_t lock;
	struct machine *b[BUCKETS];
	size_t per_machine, machines, entries;
};

int
replay_new(size_t per_machine, struct replay **out)
{
	struct replay *r = calloc(1, sizeof(*r));

	*out = NULL;
	if (r == NULL)
		return ERR_NOMEM;
	r->per_machine = per_machine ? per_machine : 1;
	pthread_mutex_init(&r->lock, NULL);
	*out = r;
	return 0;
}

void
replay_free(struct replay *r)
{
	if (r == NULL)
		return;
	for (size_t i = 0; i < BUCKETS; i++) {
		while (r->b[i]) {
			struct machine *m = r->b[i];

			r->b[i] = m->next;
			free(m->s);
			free(m);
		}
	}
	pthread_mutex_destroy(&r->lock);
	free(r);
}

static size_t
bucket(const uint8_t key[static KEY_LEN])
{
	uint32_t h;

	memcpy(&h, key, sizeof(h));	/* keys are uniformly random */
	return h & (BUCKETS - 1);
}

/* Drops the machine's expired entries. */
static void
prune(struct replay *r, struct machine *m, int64_t now)
{
	size_t j = 0;

	for (size_t i = 0; i < m->n; i++)
		if (m->s[i].expires >= now)
			m->s[j++] = m->s[i];
	r->entries -= m->n - j;
	m->n = j;
}

int
replay_check(struct replay *r, const uint8_t mkey[static KEY_LEN], const uint8_t *sig,
	     size_t len, int64_t now, int64_t expires)
{
	uint64_t h[2];
	struct machine *m;
	size_t bi = bucket(mkey);
	int rc = 0;

	crypto_generichash((uint8_t *)h, sizeof(h), sig, len, NULL, 0);
	pthread_mutex_lock(&r->lock);
	for (m = r->b[bi]; m && memcmp(m->key, mkey, KEY_LEN) != 0; m = m->next)
		;
	if (m == NULL) {
		if ((m = calloc(1, sizeof(*m))) == NULL) {
			rc = ERR_NOMEM;
			goto out;
		}
		memcpy(m->key, mkey, KEY_LEN);
		m->next = r->b[bi];
		r->b[bi] = m;
		r->machines++;
	}
	prune(r, m, now);
	for (size_t i = 0; i < m->n; i++) {
		if (m->s[i].h1 == h[0] && m->s[i].h2 == h[1]) {
			rc = ERR_REPLAY;
			goto out;
		}
	}
	if (m->n >= r->per_machine) {
		rc = ERR_EXHAUSTED;
		goto out;
	}
	if (m->n == m->cap) {
		size_t nc = m->cap ? m->cap * 2 : 8;
		struct sig *v;

		if (nc > r->per_machine)
			nc = r->per_machine;
		if ((v = realloc(m->s, nc * sizeof(*v))) == NULL) {
			rc = ERR_NOMEM;
			goto out;
		}
		m->s = v;
		m->cap = nc;
	}
	m->s[m->n].h1 = h[0];
	m->s[m->n].h2 = h[1];
	m->s[m->n].expires = expires;
	m->n++;
	r->entries++;
out:
	pthread_mutex_unlock(&r->lock);
	return rc;
}

void
replay_sweep(struct replay *r, int64_t now)
{
	pthread_mutex_lock(&r->lock);
	for (size_t i = 0; i < BUCKETS; i++) {
		struct machine **pp = &r->b[i];

		while (*pp) {
			struct machine *m = *pp;

			prune(r, m, now);
			if (m->n == 0) {
				*pp = m->next;
				free(m->s);
				free(m);
				r->machines--;
			} else {
				pp = &m->next;
			}
		}
	}
	pthread_mutex_unlock(&r->lock);
}

void
replay_stats(struct replay *r, size_t *machines, size_t *entries)
{
	pthread_mutex_lock(&r->lock);
	*machines = r->machines;
	*entries = r->entries;
	pthread_mutex_unlock(&r->lock);
}
