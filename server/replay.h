/* SPDX-License-Identifier: MIT */
/*
 * Replay cache for signed node requests: remembers each signature until its
 * timestamp leaves the allowed window, so the same request is accepted once.
 * Bounded: when full of live entries it refuses (ERR_UNAVAILABLE) rather
 * than forgetting. Thread-safe.
 */
#ifndef WM_REPLAY_H
#define WM_REPLAY_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

struct replay;

int replay_new(size_t max_entries, struct replay **out) WM_MUST_CHECK;
void replay_free(struct replay *r);
/* 0 when first seen (and remembered until `expires`), ERR_REPLAY when seen. */
int replay_check(struct replay *r, const uint8_t *sig, size_t len, int64_t now,
		 int64_t expires) WM_MUST_CHECK;

#endif
