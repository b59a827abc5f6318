// SPDX-License-Identifier: MIT
/*
 * The timer state machine of whitepaper section 6, as in the kernel's
 * timers.c:
 *
 *   retransmit_handshake  armed when an initiation goes out (5 s + jitter);
 *                         on expiry retry, or give up after 18 attempts.
 *   send_keepalive        armed when data arrives (10 s); an outgoing
 *                         authenticated packet cancels it.
 *   new_handshake         armed when data goes out (15 s + jitter); any
 *                         authenticated packet received cancels it; on
 *                         expiry the peer seems gone: handshake again.
 *   zero_key_material     armed at 540 s after a session is derived or a
 *                         handshake is given up; wipes all keys.
 *   persistent_keepalive  re-armed on every authenticated packet either way.
 */
#include <string.h>

#include "client-agent/wg/messages.h"
#include "client-agent/wg/timers.h"

#define S(x) ((int64_t)(x) * WG_NS_PER_S)

static inline int64_t
at(int64_t now, int64_t delta)
{
	int64_t v = now + delta;

	return v ? v : 1;	/* 0 means off */
}

void
wg_timers_init(struct wg_timers *t)
{
	memset(t, 0, sizeof(*t));
}

void
wg_timers_data_sent(struct wg_timers *t, int64_t now, int64_t jitter_ns)
{
	if (t->new_handshake == 0)
		t->new_handshake = at(now, S(WG_KEEPALIVE_TIMEOUT + WG_REKEY_TIMEOUT) + jitter_ns);
}

void
wg_timers_data_received(struct wg_timers *t, int64_t now)
{
	if (t->send_keepalive == 0)
		t->send_keepalive = at(now, S(WG_KEEPALIVE_TIMEOUT));
	else
		t->need_another_keepalive = true;
}

void
wg_timers_any_authenticated_packet_sent(struct wg_timers *t)
{
	t->send_keepalive = 0;
}

void
wg_timers_any_authenticated_packet_received(struct wg_timers *t)
{
	t->new_handshake = 0;
}

void
wg_timers_any_authenticated_packet_traversal(struct wg_timers *t, int64_t now)
{
	if (t->persistent_interval)
		t->persistent_keepalive = at(now, S(t->persistent_interval));
}

void
wg_timers_handshake_initiated(struct wg_timers *t, int64_t now, int64_t jitter_ns)
{
	t->retransmit_handshake = at(now, S(WG_REKEY_TIMEOUT) + jitter_ns);
}

void
wg_timers_handshake_complete(struct wg_timers *t)
{
	t->retransmit_handshake = 0;
	t->handshake_attempts = 0;
}

void
wg_timers_session_derived(struct wg_timers *t, int64_t now)
{
	t->zero_key_material = at(now, S(3 * WG_REJECT_AFTER_TIME));
}

bool
wg_timers_set_persistent_keepalive(struct wg_timers *t, uint16_t interval, int64_t now)
{
	bool was_off = t->persistent_interval == 0;

	t->persistent_interval = interval;
	if (interval == 0) {
		t->persistent_keepalive = 0;
		return false;
	}
	return was_off;
}

static inline bool
due(int64_t deadline, int64_t now)
{
	return deadline != 0 && now >= deadline;
}

unsigned
wg_timers_run(struct wg_timers *t, int64_t now, int64_t jitter_ns)
{
	unsigned act = 0;

	if (due(t->retransmit_handshake, now)) {
		t->retransmit_handshake = 0;
		if (t->handshake_attempts > WG_MAX_TIMER_HANDSHAKES) {
			act |= WG_TIMER_GIVE_UP;
			t->new_handshake = 0;
			if (t->zero_key_material == 0)
				t->zero_key_material = at(now, S(3 * WG_REJECT_AFTER_TIME));
		} else {
			t->handshake_attempts++;
			act |= WG_TIMER_SEND_INITIATION | WG_TIMER_RETRY;
		}
	}
	if (due(t->send_keepalive, now)) {
		t->send_keepalive = 0;
		act |= WG_TIMER_SEND_KEEPALIVE;
		if (t->need_another_keepalive) {
			t->need_another_keepalive = false;
			t->send_keepalive = at(now, S(WG_KEEPALIVE_TIMEOUT));
		}
	}
	if (due(t->new_handshake, now)) {
		t->new_handshake = 0;
		act |= WG_TIMER_SEND_INITIATION;
	}
	if (due(t->zero_key_material, now)) {
		t->zero_key_material = 0;
		act |= WG_TIMER_ZERO_KEYS;
	}
	if (due(t->persistent_keepalive, now)) {
		t->persistent_keepalive = 0;
		act |= WG_TIMER_SEND_KEEPALIVE;
	}
	(void)jitter_ns;
	return act;
}

void
wg_timers_stop(struct wg_timers *t)
{
	uint16_t pk = t->persistent_interval;

	memset(t, 0, sizeof(*t));
	t->persistent_interval = pk;
}
