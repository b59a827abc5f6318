/* SPDX-License-Identifier: MIT */
/*
 * Replay cache for signed node requests: remembers each signature until its
 * timestamp leaves the allowed window, so the same request is accepted once.
 *
 * Entries are kept per machine key, and a caller checks a request only once
 * the machine is known to the server (a registered node, or a registration
 * whose auth key checked out): an unauthenticated client cannot add entries.
 * Each machine holds at most `per_machine` live entries; when its share is
 * full its own requests are refused (ERR_EXHAUSTED) and nobody else's are.
 * It never forgets a live entry. Thread-safe.
 */
#ifndef WM_REPLAY_H
#define WM_REPLAY_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "common/keys.h"

struct replay;

/* Live entries per machine: a node signs a few requests a minute; the
 * window is twice the allowed clock skew (10 minutes by default). */
enum { REPLAY_PER_MACHINE = 512 };

int replay_new(size_t per_machine, struct replay **out) WM_MUST_CHECK;
void replay_free(struct replay *r);
/* 0 when first seen (and remembered until `expires`), ERR_REPLAY when seen,
 * ERR_EXHAUSTED when this machine already holds `per_machine` live entries. */
int replay_check(struct replay *r, const uint8_t mkey[static KEY_LEN], const uint8_t *sig,
		 size_t len, int64_t now, int64_t expires) WM_MUST_CHECK;
/* Frees the records of machines with no live entry left (timer thread). */
void replay_sweep(struct replay *r, int64_t now);
/* Machines and entries held (metrics, tests). */
void replay_stats(struct replay *r, size_t *machines, size_t *entries);

#endif
