// SPDX-License-Identifier: MIT
/* Open-addressing set of recent signatures with expiry. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "server/replay.h"

struct entry {
	uint64_t h1, h2;
	int64_t expires;	/* 0: empty */
};

struct replay {
	pthread_mutex_t lock;
	struct entry *t;
	size_t cap, used;
};

int
replay_new(size_t max_entries, struct replay **out)
{
	struct replay *r = calloc(1, sizeof(*r));
	size_t cap = 1024;

	*out = NULL;
	while (cap < max_entries * 2)
		cap *= 2;
	if (r == NULL || (r->t = calloc(cap, sizeof(*r->t))) == NULL) {
		free(r);
		return ERR_NOMEM;
	}
	r->cap = cap;
	pthread_mutex_init(&r->lock, NULL);
	*out = r;
	return 0;
}

void
replay_free(struct replay *r)
{
	if (r == NULL)
		return;
	pthread_mutex_destroy(&r->lock);
	free(r->t);
	free(r);
}

static void
purge(struct replay *r, int64_t now)
{
	struct entry *old = r->t;
	struct entry *t = calloc(r->cap, sizeof(*t));

	if (t == NULL)
		return;
	r->used = 0;
	for (size_t i = 0; i < r->cap; i++) {
		size_t s;

		if (old[i].expires == 0 || old[i].expires < now)
			continue;
		for (s = old[i].h1 & (r->cap - 1); t[s].expires != 0; s = (s + 1) & (r->cap - 1))
			;
		t[s] = old[i];
		r->used++;
	}
	r->t = t;
	free(old);
}

int
replay_check(struct replay *r, const uint8_t *sig, size_t len, int64_t now, int64_t expires)
{
	uint64_t h[2];
	size_t s;
	int rc = 0;

	crypto_generichash((uint8_t *)h, sizeof(h), sig, len, NULL, 0);
	if (h[0] == 0)
		h[0] = 1;
	pthread_mutex_lock(&r->lock);
	if ((r->used + 1) * 2 > r->cap) {
		purge(r, now);
		if ((r->used + 1) * 2 > r->cap) {
			rc = ERR_UNAVAILABLE;
			goto out;
		}
	}
	for (s = h[0] & (r->cap - 1); r->t[s].expires != 0; s = (s + 1) & (r->cap - 1)) {
		if (r->t[s].h1 == h[0] && r->t[s].h2 == h[1] && r->t[s].expires >= now) {
			rc = ERR_REPLAY;
			goto out;
		}
	}
	r->t[s].h1 = h[0];
	r->t[s].h2 = h[1];
	r->t[s].expires = expires;
	r->used++;
out:
	pthread_mutex_unlock(&r->lock);
	return rc;
}
