// SPDX-License-Identifier: MIT
/*
 * Sliding-window replay check. `top` is stored one above the highest counter
 * so that a fresh window (top 0) accepts counter 0. Moving ahead clears the
 * words skipped over (at most the whole ring); a counter further behind the
 * top than the window is stale.
 */
#include <string.h>

#include "client-agent/wg/replay.h"

void
wg_replay_init(struct wg_replay *r)
{
	memset(r, 0, sizeof(*r));
}

bool
wg_replay_check(struct wg_replay *r, uint64_t counter)
{
	uint64_t c, word, bit;

	if (counter >= WG_REJECT_AFTER_MESSAGES)
		return false;
	c = counter + 1;
	if (c + WG_COUNTER_WINDOW < r->top)
		return false;
	word = c >> 6;
	if (c > r->top) {
		uint64_t cur = r->top >> 6, n = word - cur;

		if (n > WG_COUNTER_WORDS)
			n = WG_COUNTER_WORDS;
		for (uint64_t i = 1; i <= n; i++)
			r->bits[(cur + i) & (WG_COUNTER_WORDS - 1)] = 0;
		r->top = c;
	}
	word &= WG_COUNTER_WORDS - 1;
	bit = 1ULL << (c & 63);
	if (r->bits[word] & bit)
		return false;
	r->bits[word] |= bit;
	return true;
}
