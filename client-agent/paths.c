/* SPDX-License-Identifier: MIT */
/*
 * Per-peer path state machine. One `struct paths` per peer; time is passed
 * in as monotonic milliseconds; no I/O and no locks (the caller locks).
 *
 * Candidates. The set of the peer's direct UDP endpoints comes from the
 * netmap and from call-me-maybe (paths_set_candidates, which replaces the
 * set but keeps the history of endpoints that stay) and from pings the peer
 * sent us directly (paths_heard_from: "learned" candidates, which survive a
 * replacement while they were heard within PATHS_TRUST_MS). At most
 * PATHS_MAX_CANDIDATES; endpoints are kept in canonical form (IPv4-mapped
 * IPv6 becomes IPv4) so a dual-stack socket's view compares equal.
 *
 * Per candidate:
 *
 *   NEW ──ping sent──> PROBING ──pong (txid matches, from == to)──> CONFIRMED
 *    ^                    ^                                            │
 *    │                    └──── no pong for PATHS_TRUST_MS (6500) ─────┘
 *   paths_set_candidates / paths_heard_from (a new endpoint is due at once)
 *
 * A ping from the peer arriving directly from a candidate that is not
 * trusted makes it due at once (at most every PATHS_REPING_MS = 250): the
 * peer's NAT has just opened towards us, and our earlier ping may have been
 * dropped before it did, so waiting for the next round would cost up to 2 s.
 *
 * A candidate is CONFIRMED ("trusted") while now < last_pong + PATHS_TRUST_MS.
 * Its latency is the round trip of the latest pong (now - time the matching
 * ping was sent). The best path is the trusted candidate with the lowest
 * latency (ties: the one listed first); with none, the peer goes via DERP.
 * The choice is sticky, so that two paths of about the same latency (the
 * peer's IPv4 and IPv6 endpoints) do not take turns at every pong: the
 * current best path stays while it is trusted, unless another is faster by
 * at least PATHS_SWITCH_MIN_MS and by a quarter (paths_pong and
 * paths_due_pings record the current one).
 *
 * Cadence. A candidate is due for a ping at once when new, and then
 * last_ping + interval, where interval depends on the peer's state:
 *   - no candidate trusted: every candidate every PATHS_PROBE_MS (2000);
 *   - some candidate trusted: the best one every PATHS_HEARTBEAT_MS (3000),
 *     which keeps it trusted as long as pongs return (3000 < 6500 leaves room
 *     for one lost ping), and every other candidate every PATHS_REPROBE_MS
 *     (10000), so a faster path or a returning one is found.
 * When the best path goes silent its trust lapses PATHS_TRUST_MS after its
 * last pong; the next best trusted path takes over, or, with none, the
 * peer falls back to DERP and every candidate is probed every
 * PATHS_PROBE_MS again (immediately if its last ping is older than that).
 *
 * Outstanding pings (txid, destination, send time) are remembered for
 * PATHS_PING_TIMEOUT_MS, at most PATHS_MAX_OUTSTANDING (the oldest is
 * forgotten first). A pong is accepted once: the txid must match and come
 * from the endpoint the ping went to; anything else is ignored. Pings to a
 * candidate that is removed are forgotten with it.
 *
 * paths_next_due() is exact: the trusted set changes only when some trust
 * lapses, so it walks the (at most PATHS_MAX_CANDIDATES) lapse times from
 * the latest time any call was given and returns the first instant at which
 * paths_due_pings() would return a ping (that latest time itself meaning
 * "now"). Time must not go backwards.
 */
#include "client-agent/paths.h"

#include <stdlib.h>
#include <string.h>

#include "common/util.h"

struct cand {
	struct endpoint ep;
	bool from_netmap;		/* listed by the last paths_set_candidates */
	bool pinged;			/* last_ping_ms is valid */
	bool has_pong;			/* last_pong_ms and rtt_ms are valid */
	int64_t last_ping_ms;
	int64_t last_pong_ms;
	int64_t heard_ms;		/* last paths_heard_from; INT64_MIN if never */
	int rtt_ms;
};

struct outstanding {
	bool used;
	uint8_t txid[DISCO_TXID_LEN];
	struct endpoint to;
	int64_t sent_ms;
};

struct paths {
	struct cand c[PATHS_MAX_CANDIDATES];
	size_t n;
	struct outstanding out[PATHS_MAX_OUTSTANDING];
	int64_t now_ms;			/* latest time any call was given */
	bool seen_time;
	struct endpoint cur;		/* the current best path (sticky), if has_cur */
	bool has_cur;
};

static void
saw(struct paths *p, int64_t now)
{
	if (!p->seen_time || now > p->now_ms)
		p->now_ms = now;
	p->seen_time = true;
}

static void
canon(struct endpoint *dst, const struct endpoint *src)
{
	static const uint8_t v4mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };

	memset(dst, 0, sizeof(*dst));
	dst->port = src->port;
	if (src->addr.family == AF_INET6 && memcmp(src->addr.b, v4mapped, 12) == 0) {
		dst->addr.family = AF_INET;
		memcpy(dst->addr.b, src->addr.b + 12, 4);
	} else if (src->addr.family == AF_INET) {
		dst->addr.family = AF_INET;
		memcpy(dst->addr.b, src->addr.b, 4);
	} else {
		dst->addr.family = src->addr.family;
		memcpy(dst->addr.b, src->addr.b, 16);
	}
}

static bool
valid_ep(const struct endpoint *e)
{
	return (e->addr.family == AF_INET || e->addr.family == AF_INET6) && e->port != 0;
}

/* Both canonical. */
static bool
ep_eq(const struct endpoint *a, const struct endpoint *b)
{
	return a->port == b->port && addr_equal(&a->addr, &b->addr);
}

static int
find(const struct paths *p, const struct endpoint *e)
{
	size_t i;

	for (i = 0; i < p->n; i++)
		if (ep_eq(&p->c[i].ep, e))
			return (int)i;
	return -1;
}

static bool
trusted(const struct cand *c, int64_t now)
{
	return c->has_pong && now < c->last_pong_ms + PATHS_TRUST_MS;
}

static int
best_index(const struct paths *p, int64_t now)
{
	int best = -1, cur = p->has_cur ? find(p, &p->cur) : -1;
	size_t i;

	for (i = 0; i < p->n; i++)
		if (trusted(&p->c[i], now) && (best < 0 || p->c[i].rtt_ms < p->c[best].rtt_ms))
			best = (int)i;
	if (cur < 0 || !trusted(&p->c[cur], now) || best == cur)
		return best;
	/* sticky: switch only to a clearly faster path */
	if (p->c[best].rtt_ms + PATHS_SWITCH_MIN_MS <= p->c[cur].rtt_ms &&
	    p->c[best].rtt_ms * 4 <= p->c[cur].rtt_ms * 3)
		return best;
	return cur;
}

/* Records the current best path (after anything that may change it). */
static void
settle(struct paths *p, int64_t now)
{
	int b = best_index(p, now);

	p->has_cur = b >= 0;
	if (b >= 0)
		p->cur = p->c[b].ep;
}

struct paths *
paths_new(void)
{
	return calloc(1, sizeof(struct paths));
}

void
paths_free(struct paths *p)
{
	free(p);
}

static void
forget_pings_to(struct paths *p, const struct endpoint *e)
{
	size_t i;

	for (i = 0; i < PATHS_MAX_OUTSTANDING; i++)
		if (p->out[i].used && ep_eq(&p->out[i].to, e))
			p->out[i].used = false;
}

static void
new_cand(struct cand *c, const struct endpoint *e)
{
	memset(c, 0, sizeof(*c));
	c->ep = *e;
	c->heard_ms = INT64_MIN;
	c->rtt_ms = -1;
}

void
paths_set_candidates(struct paths *p, const struct endpoint *eps, size_t n, int64_t now_ms)
{
	struct cand next[PATHS_MAX_CANDIDATES];
	size_t nn = 0, i;
	int k;

	saw(p, now_ms);
	/* Listed ones first, in the caller's order (the tie-break order). */
	for (i = 0; i < n && nn < PATHS_MAX_CANDIDATES; i++) {
		struct endpoint e;
		size_t j;
		bool dup = false;

		if (!valid_ep(&eps[i]))
			continue;
		canon(&e, &eps[i]);
		for (j = 0; j < nn && !dup; j++)
			dup = ep_eq(&next[j].ep, &e);
		if (dup)
			continue;
		if ((k = find(p, &e)) >= 0)
			next[nn] = p->c[k];
		else
			new_cand(&next[nn], &e);
		next[nn++].from_netmap = true;
	}
	/* Then learned ones heard recently. */
	for (i = 0; i < p->n && nn < PATHS_MAX_CANDIDATES; i++) {
		struct cand *c = &p->c[i];
		size_t j;
		bool kept = false;

		for (j = 0; j < nn && !kept; j++)
			kept = ep_eq(&next[j].ep, &c->ep);
		if (kept)
			continue;
		if (c->heard_ms != INT64_MIN && now_ms - c->heard_ms < PATHS_TRUST_MS) {
			next[nn] = *c;
			next[nn++].from_netmap = false;
		} else {
			forget_pings_to(p, &c->ep);
		}
	}
	/* Learned ones that did not fit. */
	for (i = 0; i < p->n; i++) {
		size_t j;
		bool kept = false;

		for (j = 0; j < nn && !kept; j++)
			kept = ep_eq(&next[j].ep, &p->c[i].ep);
		if (!kept)
			forget_pings_to(p, &p->c[i].ep);
	}
	memcpy(p->c, next, nn * sizeof(next[0]));
	p->n = nn;
}

void
paths_heard_from(struct paths *p, const struct endpoint *from, int64_t now_ms)
{
	struct endpoint e;
	size_t i;
	int k;

	saw(p, now_ms);
	if (!valid_ep(from))
		return;
	canon(&e, from);
	if ((k = find(p, &e)) >= 0) {
		struct cand *c = &p->c[k];

		c->heard_ms = now_ms;
		/* The peer's ping got through, so its NAT (and ours) now pass
		 * this address: ping back at once rather than at the next probe
		 * round (our earlier ping may have hit its NAT before it opened).
		 * Rate-limited, and not needed while the path is trusted. */
		if (!trusted(c, now_ms) && c->pinged &&
		    now_ms - c->last_ping_ms >= PATHS_REPING_MS)
			c->pinged = false;
		return;
	}
	if (p->n == PATHS_MAX_CANDIDATES) {
		/* Replace the learned candidate heard least recently, if any. */
		int victim = -1;

		for (i = 0; i < p->n; i++)
			if (!p->c[i].from_netmap && !trusted(&p->c[i], now_ms) &&
			    (victim < 0 || p->c[i].heard_ms < p->c[victim].heard_ms))
				victim = (int)i;
		if (victim < 0)
			return;
		forget_pings_to(p, &p->c[victim].ep);
		k = victim;
	} else {
		k = (int)p->n++;
	}
	new_cand(&p->c[k], &e);
	p->c[k].heard_ms = now_ms;
}

void
paths_reprobe(struct paths *p, int64_t now_ms)
{
	size_t i;

	saw(p, now_ms);
	for (i = 0; i < p->n; i++)
		p->c[i].pinged = false;
}

static int64_t
interval(size_t i, int best)
{
	if (best < 0)
		return PATHS_PROBE_MS;
	return (int)i == best ? PATHS_HEARTBEAT_MS : PATHS_REPROBE_MS;
}

static void
expire_pings(struct paths *p, int64_t now)
{
	size_t i;

	for (i = 0; i < PATHS_MAX_OUTSTANDING; i++)
		if (p->out[i].used && now - p->out[i].sent_ms >= PATHS_PING_TIMEOUT_MS)
			p->out[i].used = false;
}

static void
remember(struct paths *p, const struct paths_ping *pg, int64_t now)
{
	size_t i, slot = 0;

	for (i = 0; i < PATHS_MAX_OUTSTANDING; i++) {
		if (!p->out[i].used) {
			slot = i;
			break;
		}
		if (p->out[i].sent_ms < p->out[slot].sent_ms)
			slot = i;
	}
	p->out[slot].used = true;
	memcpy(p->out[slot].txid, pg->txid, DISCO_TXID_LEN);
	p->out[slot].to = pg->to;
	p->out[slot].sent_ms = now;
}

size_t
paths_due_pings(struct paths *p, int64_t now_ms, struct paths_ping *out, size_t max)
{
	int best;
	size_t i, w = 0;

	saw(p, now_ms);
	settle(p, now_ms);
	best = best_index(p, now_ms);
	expire_pings(p, now_ms);
	for (i = 0; i < p->n && w < max; i++) {
		struct cand *c = &p->c[i];

		if (c->pinged && now_ms < c->last_ping_ms + interval(i, best))
			continue;
		out[w].to = c->ep;
		random_bytes(out[w].txid, DISCO_TXID_LEN);
		remember(p, &out[w], now_ms);
		c->pinged = true;
		c->last_ping_ms = now_ms;
		w++;
	}
	return w;
}

bool
paths_pong(struct paths *p, const uint8_t txid[static DISCO_TXID_LEN],
	   const struct endpoint *from, int64_t now_ms)
{
	struct endpoint e;
	size_t i;
	int k;

	saw(p, now_ms);
	if (!valid_ep(from))
		return false;
	canon(&e, from);
	for (i = 0; i < PATHS_MAX_OUTSTANDING; i++) {
		struct outstanding *o = &p->out[i];
		int64_t rtt;

		if (!o->used || memcmp(o->txid, txid, DISCO_TXID_LEN) != 0)
			continue;
		if (!ep_eq(&o->to, &e) || now_ms - o->sent_ms >= PATHS_PING_TIMEOUT_MS)
			return false;
		o->used = false;
		if ((k = find(p, &e)) < 0)
			return false;
		rtt = now_ms - o->sent_ms;
		if (rtt < 0)
			rtt = 0;
		p->c[k].has_pong = true;
		p->c[k].last_pong_ms = now_ms;
		p->c[k].rtt_ms = (int)rtt;
		settle(p, now_ms);
		return true;
	}
	return false;
}

bool
paths_best(const struct paths *p, int64_t now_ms, struct endpoint *ep, int *rtt_ms)
{
	int b = best_index(p, now_ms);

	if (b < 0)
		return false;
	if (ep != NULL)
		*ep = p->c[b].ep;
	if (rtt_ms != NULL)
		*rtt_ms = p->c[b].rtt_ms;
	return true;
}

/* Earliest due time in [t0, t1) with the trusted set as of t0, or INT64_MAX. */
static int64_t
first_due_in(const struct paths *p, int64_t t0, int64_t t1)
{
	int best = best_index(p, t0);
	int64_t first = INT64_MAX;
	size_t i;

	for (i = 0; i < p->n; i++) {
		const struct cand *c = &p->c[i];
		int64_t due = c->pinged ? c->last_ping_ms + interval(i, best) : t0;

		if (due < t0)
			due = t0;
		if (due < t1 && due < first)
			first = due;
	}
	return first;
}

int64_t
paths_next_due(const struct paths *p)
{
	int64_t t0, lapses[PATHS_MAX_CANDIDATES];
	size_t nl = 0, i, j;

	if (p->n == 0)
		return INT64_MAX;
	/* Nothing can be due before the latest time we were told about; a
	 * result equal to it means "due now". */
	t0 = p->seen_time ? p->now_ms : INT64_MIN + 1;
	/* Segment boundaries: the moments trust lapses, in order. */
	for (i = 0; i < p->n; i++)
		if (p->c[i].has_pong)
			lapses[nl++] = p->c[i].last_pong_ms + PATHS_TRUST_MS;
	for (i = 1; i < nl; i++)
		for (j = i; j > 0 && lapses[j - 1] > lapses[j]; j--) {
			int64_t t = lapses[j];

			lapses[j] = lapses[j - 1];
			lapses[j - 1] = t;
		}
	for (i = 0; i <= nl; i++) {
		int64_t t1 = i < nl ? lapses[i] : INT64_MAX, d;

		if (t1 <= t0)
			continue;
		d = first_due_in(p, t0, t1);
		if (d != INT64_MAX)
			return d;
		t0 = t1;
	}
	return INT64_MAX;
}

size_t
paths_snapshot(const struct paths *p, int64_t now_ms, struct paths_info *out, size_t max)
{
	size_t i;

	for (i = 0; i < p->n && i < max; i++) {
		out[i].ep = p->c[i].ep;
		out[i].confirmed = trusted(&p->c[i], now_ms);
		out[i].rtt_ms = p->c[i].has_pong ? p->c[i].rtt_ms : -1;
		out[i].last_pong_ms = p->c[i].has_pong ? p->c[i].last_pong_ms : 0;
	}
	return p->n;
}
