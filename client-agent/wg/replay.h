/* SPDX-License-Identifier: MIT */
/*
 * The anti-replay window for received data counters (RFC 6479 bitmap, 8192
 * bits as in the Linux driver, 8128 usable). Not locked: the caller holds
 * the keypair's receive lock. Call only after the packet authenticated.
 */
#ifndef WG_REPLAY_H
#define WG_REPLAY_H

#include <stdbool.h>
#include <stdint.h>

#include "client-agent/wg/messages.h"

struct wg_replay {
	uint64_t top;		/* one more than the highest counter seen */
	uint64_t bits[WG_COUNTER_WORDS];
};

void wg_replay_init(struct wg_replay *r);
/* True if `counter` is new and inside the window; marks it seen. */
bool wg_replay_check(struct wg_replay *r, uint64_t counter);

#endif
