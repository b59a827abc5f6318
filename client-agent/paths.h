/* SPDX-License-Identifier: MIT */
/*
 * Per-peer path state machine: which direct UDP endpoints of a peer answer
 * disco pings, how fast, and which one to use. Pure logic: time is passed in
 * (monotonic milliseconds), no I/O, no locking (one per peer; the caller
 * locks). paths.c opens with a description of the state machine.
 */
#ifndef WM_PATHS_H
#define WM_PATHS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/addr.h"
#include "client-agent/disco.h"

enum {
	PATHS_PROBE_MS = 2000,		/* probe every candidate while none is confirmed */
	PATHS_HEARTBEAT_MS = 3000,	/* ping the best path while one is */
	PATHS_TRUST_MS = 6500,		/* a path is trusted this long after its last pong */
	PATHS_PING_TIMEOUT_MS = 5000,	/* an unanswered ping is forgotten after this */
	PATHS_MAX_CANDIDATES = 32,	/* candidates kept per peer (extra ones ignored) */
	PATHS_MAX_OUTSTANDING = 64,	/* pings awaiting a pong (oldest forgotten first) */
	/* Added: while a path is confirmed, the other candidates are still
	 * probed, less often, so a better (or returning) path is found. */
	PATHS_REPROBE_MS = 10000,
	/* Added: an untrusted candidate the peer's ping came from is pinged
	 * back at once, but not more often than this. */
	PATHS_REPING_MS = 250,
	/* the best path changes to a faster one only when that is faster by this
	 * much and by a quarter (no flapping between IPv4 and IPv6) */
	PATHS_SWITCH_MIN_MS = 2,
};

struct paths;				/* one per peer */

/* New state with no candidates; NULL on allocation failure. */
struct paths *paths_new(void);
/* paths_free(NULL) is a no-op. */
void paths_free(struct paths *p);

/* Candidate endpoints from the netmap or a call-me-maybe (replaces the set;
 * keeps state of kept ones). Duplicates and non-IP families are ignored;
 * at most PATHS_MAX_CANDIDATES are kept. New candidates are due at once. */
void paths_set_candidates(struct paths *p, const struct endpoint *eps, size_t n, int64_t now_ms);

struct paths_ping { struct endpoint to; uint8_t txid[DISCO_TXID_LEN]; };

/* Pings to send now (fresh random txids remembered internally); returns how
 * many written (<= max). While no direct path is confirmed: every candidate
 * every PATHS_PROBE_MS (2000). While one is: heartbeat the best one every
 * PATHS_HEARTBEAT_MS (3000) (and the others every PATHS_REPROBE_MS). */
size_t paths_due_pings(struct paths *p, int64_t now_ms, struct paths_ping *out, size_t max);

/* A pong arrived from `from` for `txid`: confirms `from` with its round-trip
 * latency. Returns true if it matched an outstanding ping (txid and the
 * endpoint it was sent to). Unknown or expired txids are ignored. */
bool paths_pong(struct paths *p, const uint8_t txid[static DISCO_TXID_LEN],
		const struct endpoint *from, int64_t now_ms);

/* A ping from the peer arrived directly from `from` (proves `from` reaches
 * us; add as candidate, due for a ping at once; an existing untrusted
 * candidate is due at once too, unless pinged in the last PATHS_REPING_MS). */
void paths_heard_from(struct paths *p, const struct endpoint *from, int64_t now_ms);

/* Added: makes every candidate due for a ping now (e.g. when the peer's
 * ping shows its NAT has opened towards us), keeping confirmations, RTTs
 * and outstanding pings. */
void paths_reprobe(struct paths *p, int64_t now_ms);

/* The best confirmed direct path (lowest latency, trusted for PATHS_TRUST_MS
 * = 6500 after its last pong). false when the peer should go via DERP.
 * ep and rtt_ms may be NULL. */
bool paths_best(const struct paths *p, int64_t now_ms, struct endpoint *ep, int *rtt_ms);

/* When the next due ping is (for the caller's timer), INT64_MAX if none. */
int64_t paths_next_due(const struct paths *p);

/* Added for `wiremesh debug`: a snapshot of the candidates. */
struct paths_info {
	struct endpoint ep;
	bool confirmed;			/* had a pong within PATHS_TRUST_MS of now_ms */
	int rtt_ms;			/* latest measured; -1 if never */
	int64_t last_pong_ms;		/* 0 if never */
};
/* Writes up to max entries; returns how many candidates there are. */
size_t paths_snapshot(const struct paths *p, int64_t now_ms, struct paths_info *out, size_t max);

#endif
