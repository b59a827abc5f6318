// SPDX-License-Identifier: MIT
/*
 * Host information per node (see hostinfo.h): an open-addressing table from
 * node id to three short strings, grown by doubling up to its hard maximum,
 * under one mutex. Deleted entries become tombstones (id -1).
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "server/hostinfo.h"

struct entry {
	int64_t id;		/* 0: empty, -1: deleted */
	char os[HOSTINFO_FIELD_MAX];
	char os_version[HOSTINFO_FIELD_MAX];
	char client_version[HOSTINFO_FIELD_MAX];
};

struct hostinfo {
	pthread_mutex_t lock;
	struct entry *v;
	size_t cap, used;	/* used counts tombstones too */
};

int
hostinfo_new(struct hostinfo **out)
{
	struct hostinfo *h = calloc(1, sizeof(*h));

	*out = NULL;
	if (h == NULL)
		return ERR_NOMEM;
	pthread_mutex_init(&h->lock, NULL);
	*out = h;
	return 0;
}

void
hostinfo_free(struct hostinfo *h)
{
	if (h == NULL)
		return;
	pthread_mutex_destroy(&h->lock);
	free(h->v);
	free(h);
}

static size_t
slot0(int64_t id, size_t cap)
{
	return (size_t)((uint64_t)id * 0x9e3779b97f4a7c15ULL >> 17) & (cap - 1);
}

/* The entry of id, or NULL. Called with h->lock. */
static struct entry *
find(struct hostinfo *h, int64_t id)
{
	if (h->cap == 0)
		return NULL;
	for (size_t s = slot0(id, h->cap), k = 0; k < h->cap; s = (s + 1) & (h->cap - 1), k++) {
		if (h->v[s].id == id)
			return &h->v[s];
		if (h->v[s].id == 0)
			return NULL;
	}
	return NULL;
}

/* A slot for id, growing the table when it is 3/4 full. Called with h->lock. */
static struct entry *
slot_for(struct hostinfo *h, int64_t id)
{
	struct entry *e = find(h, id);

	if (e != NULL)
		return e;
	if (4 * (h->used + 1) > 3 * h->cap) {
		size_t ncap = h->cap ? 2 * h->cap : 64;
		struct entry *nv, *old = h->v;
		size_t ocap = h->cap;

		if (ncap > 2 * (size_t)HOSTINFO_MAX_NODES || (nv = calloc(ncap, sizeof(*nv))) == NULL)
			return NULL;
		h->v = nv;
		h->cap = ncap;
		h->used = 0;
		for (size_t i = 0; i < ocap; i++) {
			if (old[i].id > 0) {
				size_t s = slot0(old[i].id, ncap);

				while (nv[s].id != 0)
					s = (s + 1) & (ncap - 1);
				nv[s] = old[i];
				h->used++;
			}
		}
		free(old);
	}
	for (size_t s = slot0(id, h->cap);; s = (s + 1) & (h->cap - 1)) {
		if (h->v[s].id == 0) {
			h->used++;
			memset(&h->v[s], 0, sizeof(h->v[s]));
			h->v[s].id = id;
			return &h->v[s];
		}
	}
}

static int
field(json_t *o, const char *key, char out[static HOSTINFO_FIELD_MAX], char *why, size_t whylen)
{
	json_t *v = json_object_get(o, key);
	const char *t;

	out[0] = 0;
	if (v == NULL)
		return 0;
	if (!json_is_string(v) || json_string_length(v) >= HOSTINFO_FIELD_MAX) {
		snprintf(why, whylen, "hostinfo.%s must be a string of at most %d bytes", key,
		    HOSTINFO_FIELD_MAX - 1);
		return ERR_INVALID;
	}
	for (t = json_string_value(v); *t; t++) {
		if ((unsigned char)*t < 0x20 || (unsigned char)*t > 0x7e) {
			snprintf(why, whylen, "hostinfo.%s must be printable ASCII", key);
			return ERR_INVALID;
		}
	}
	str_copy(out, json_string_value(v), HOSTINFO_FIELD_MAX);
	return 0;
}

int
hostinfo_update(struct hostinfo *h, int64_t node_id, json_t *request, char *why, size_t whylen)
{
	json_t *o = json_object_get(request, "hostinfo");
	struct entry e, *slot;
	int r;

	if (o == NULL)
		return 0;
	if (!json_is_object(o)) {
		snprintf(why, whylen, "hostinfo must be an object");
		return ERR_INVALID;
	}
	if ((r = field(o, "os", e.os, why, whylen)) != 0 ||
	    (r = field(o, "os_version", e.os_version, why, whylen)) != 0 ||
	    (r = field(o, "client_version", e.client_version, why, whylen)) != 0)
		return r;
	pthread_mutex_lock(&h->lock);
	if ((slot = slot_for(h, node_id)) != NULL) {
		memcpy(slot->os, e.os, sizeof(e.os));
		memcpy(slot->os_version, e.os_version, sizeof(e.os_version));
		memcpy(slot->client_version, e.client_version, sizeof(e.client_version));
	}
	pthread_mutex_unlock(&h->lock);
	return 0;
}

void
hostinfo_annotate(struct hostinfo *h, int64_t node_id, json_t *node)
{
	struct entry *e;
	char os[2 * HOSTINFO_FIELD_MAX + 2];

	if (h == NULL || node == NULL)
		return;
	pthread_mutex_lock(&h->lock);
	if ((e = find(h, node_id)) != NULL) {
		if (e->os[0]) {
			snprintf(os, sizeof(os), "%s%s%s", e->os, e->os_version[0] ? " " : "",
			    e->os_version);
			json_object_set_new(node, "os", json_string(os));
		}
		if (e->client_version[0])
			json_object_set_new(node, "version", json_string(e->client_version));
	}
	pthread_mutex_unlock(&h->lock);
}

void
hostinfo_forget(struct hostinfo *h, int64_t node_id)
{
	struct entry *e;

	if (h == NULL)
		return;
	pthread_mutex_lock(&h->lock);
	if ((e = find(h, node_id)) != NULL)
		e->id = -1;
	pthread_mutex_unlock(&h->lock);
}
