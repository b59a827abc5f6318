/* SPDX-License-Identifier: MIT */
/*
 * Cryptokey routing table: longest-prefix match from IPv4/IPv6 addresses to
 * peers, one binary trie per family with path compression left out for
 * simplicity (a node per prefix bit is bounded by 128 per insert). A prefix
 * belongs to exactly one peer; inserting it again moves it. Not locked: the
 * device serialises writers against readers.
 */
#ifndef WG_ALLOWEDIPS_H
#define WG_ALLOWEDIPS_H

#include <stddef.h>
#include <stdint.h>

#include "common/addr.h"
#include "common/err.h"

struct wg_allowedips;

struct wg_allowedips *wg_allowedips_new(void);
void wg_allowedips_free(struct wg_allowedips *t);
/* Inserts or moves `p` (host bits are masked off) to `peer` (non-NULL).
 * ERR_EXHAUSTED past WG_MAX_ALLOWED_IPS entries, ERR_NOMEM. */
int wg_allowedips_insert(struct wg_allowedips *t, const struct ip_prefix *p,
			 void *peer) WM_MUST_CHECK;
/* Removes one exact prefix if owned by `peer`; returns 0 or ERR_NOT_FOUND. */
int wg_allowedips_remove(struct wg_allowedips *t, const struct ip_prefix *p, void *peer);
/* Removes every prefix of `peer`. */
void wg_allowedips_remove_peer(struct wg_allowedips *t, void *peer);
/* Longest match for the address in `ip` (4 or 16 bytes by family); borrowed
 * peer or NULL. */
void *wg_allowedips_lookup(const struct wg_allowedips *t, int family, const uint8_t *ip);
/* Calls fn for every prefix of `peer`, in trie order. */
void wg_allowedips_walk(const struct wg_allowedips *t, void *peer,
			void (*fn)(void *arg, const struct ip_prefix *p), void *arg);
size_t wg_allowedips_count(const struct wg_allowedips *t);

#endif
