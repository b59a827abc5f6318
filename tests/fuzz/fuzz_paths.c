// SPDX-License-Identifier: MIT
/*
 * libFuzzer target: the path state machine (client-agent/paths.h) driven by
 * an arbitrary sequence of events, some of them remote-controlled (pongs with
 * any txid from any address, pings heard from any address, call-me-maybe
 * candidate sets). Invariants checked after every event:
 *   - paths_next_due() is exact: a timer firing exactly then gets pings from
 *     paths_due_pings(), and nothing is due before it (time advances by
 *     stepping through each due time, as a punctual caller would);
 *   - the best path is one of the candidates, and no candidate has a pong
 *     from the future;
 *   - at most PATHS_MAX_CANDIDATES candidates.
 * Each event is one opcode byte and its operands; time only moves forward.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "client-agent/paths.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A small address space so events collide: 8 IPv4 and 8 IPv6 endpoints. */
static void
ep_of(uint8_t b, struct endpoint *e)
{
	memset(e, 0, sizeof(*e));
	if (b & 8) {
		e->addr.family = AF_INET6;
		e->addr.b[0] = 0x20, e->addr.b[1] = 0x01, e->addr.b[2] = 0x0d, e->addr.b[3] = 0xb8;
		e->addr.b[15] = b & 7;
	} else if (b & 0x40) {
		/* The v4-mapped spelling of an IPv4 endpoint: must fold onto it. */
		e->addr.family = AF_INET6;
		e->addr.b[10] = 0xff, e->addr.b[11] = 0xff;
		e->addr.b[12] = 192, e->addr.b[14] = 2, e->addr.b[15] = b & 7;
	} else {
		e->addr.family = AF_INET;
		e->addr.b[0] = 192, e->addr.b[2] = 2, e->addr.b[3] = b & 7;
	}
	e->port = (b & 0x80) ? 0 : 41641;	/* port 0: must be ignored */
}

static bool
same(const struct endpoint *a, const struct endpoint *b)
{
	return a->port == b->port && addr_equal(&a->addr, &b->addr);
}

static void
remember(struct paths_ping sent[static 128], size_t *nsent, const struct paths_ping *out, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		sent[*nsent % 128] = out[i];
		*nsent = *nsent < 128 ? *nsent + 1 : 128;
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct paths *p = paths_new();
	struct paths_ping sent[128], out[PATHS_MAX_CANDIDATES];
	struct paths_info info[PATHS_MAX_CANDIDATES + 1];
	size_t nsent = 0, off = 0;
	int64_t now = 1000;

	if (p == NULL)
		return 0;
	while (off < size) {
		uint8_t op = data[off++], arg = off < size ? data[off] : 0;
		struct endpoint e, best, eps[40];
		size_t n, i, k;
		int64_t due;
		int rtt;

		switch (op % 6) {
		case 0:		/* time passes, 0..2550 ms, with a punctual timer */
			off++;
			for (i = 0; i < 1000; i++) {
				due = paths_next_due(p);
				if (due > now + (int64_t)arg * 10)
					break;
				if (due < now)
					__builtin_trap();	/* never before the latest time */
				n = paths_due_pings(p, due, out, PATHS_MAX_CANDIDATES);
				if (n == 0)
					__builtin_trap();	/* it said due, and nothing was */
				remember(sent, &nsent, out, n);
				arg = (uint8_t)((now + (int64_t)arg * 10 - due) / 10);
				now = due;
			}
			now += (int64_t)arg * 10;
			break;
		case 1:		/* a candidate set (netmap or call-me-maybe) */
			n = arg % 40;
			off++;
			for (i = 0; i < n && off < size; i++)
				ep_of(data[off++], &eps[i]);
			paths_set_candidates(p, eps, i, now);
			break;
		case 2:		/* a pong for one of our pings, from where it went or not */
			off++;
			if (nsent > 0) {
				const struct paths_ping *pg = &sent[arg % nsent];

				if (arg & 0x80) {
					ep_of(arg, &e);
					(void)paths_pong(p, pg->txid, &e, now);
				} else {
					(void)paths_pong(p, pg->txid, &pg->to, now);
				}
			}
			break;
		case 3:		/* a pong with a made-up txid */
			if (size - off >= DISCO_TXID_LEN + 1) {
				ep_of(data[off], &e);
				(void)paths_pong(p, data + off + 1, &e, now);
				off += DISCO_TXID_LEN + 1;
			} else {
				off = size;
			}
			break;
		case 4:		/* the peer's ping heard from somewhere */
			ep_of(arg, &e);
			off++;
			paths_heard_from(p, &e, now);
			break;
		case 5:		/* a reprobe */
			paths_reprobe(p, now);
			break;
		}

		/* Invariants. */
		due = paths_next_due(p);
		n = paths_due_pings(p, now, out, PATHS_MAX_CANDIDATES);
		if ((n > 0) != (due <= now))
			__builtin_trap();
		remember(sent, &nsent, out, n);
		k = paths_snapshot(p, now, info, PATHS_MAX_CANDIDATES + 1);
		if (k > PATHS_MAX_CANDIDATES)
			__builtin_trap();
		for (i = 0; i < k; i++)
			if (info[i].last_pong_ms > now || (info[i].confirmed && info[i].rtt_ms < 0))
				__builtin_trap();
		if (paths_best(p, now, &best, &rtt)) {
			bool found = false;

			for (i = 0; i < k; i++)
				if (same(&info[i].ep, &best) && info[i].confirmed) {
					found = true;
					if (info[i].rtt_ms != rtt)
						__builtin_trap();
				}
			if (!found)
				__builtin_trap();
			/* the lowest latency, or a sticky choice no other path beats
			 * by PATHS_SWITCH_MIN_MS and a quarter */
			for (i = 0; i < k; i++)
				if (info[i].confirmed && info[i].rtt_ms + PATHS_SWITCH_MIN_MS <= rtt &&
				    info[i].rtt_ms * 4 <= rtt * 3)
					__builtin_trap();
		}
	}
	paths_free(p);
	return 0;
}
