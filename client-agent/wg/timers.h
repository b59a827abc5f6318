/* SPDX-License-Identifier: MIT */
/*
 * Per-peer timers as a pure state machine over an injected clock. The device
 * tells it what happened (timers_data_sent, timers_handshake_complete, ...)
 * and polls timers_run(now), which returns the actions that fell due. No
 * threads and no real time here, so tests drive it with any clock.
 */
#ifndef WG_TIMERS_H
#define WG_TIMERS_H

#include <stdbool.h>
#include <stdint.h>

struct wg_timers {
	int64_t retransmit_handshake;	/* deadlines, monotonic ns; 0 = off */
	int64_t send_keepalive;
	int64_t new_handshake;
	int64_t zero_key_material;
	int64_t persistent_keepalive;
	bool need_another_keepalive;
	int handshake_attempts;
	uint16_t persistent_interval;	/* seconds, 0 = off */
};

enum wg_timer_action {
	WG_TIMER_SEND_INITIATION = 1 << 0,	/* (retry) handshake; clear cached source */
	WG_TIMER_SEND_KEEPALIVE = 1 << 1,
	WG_TIMER_ZERO_KEYS = 1 << 2,
	WG_TIMER_GIVE_UP = 1 << 3,		/* drop staged packets */
	WG_TIMER_RETRY = 1 << 4,		/* the initiation is a retransmission */
};

void wg_timers_init(struct wg_timers *t);
/* `jitter_ns` is the caller's random 0..334 ms, injectable for tests. */
void wg_timers_data_sent(struct wg_timers *t, int64_t now, int64_t jitter_ns);
void wg_timers_data_received(struct wg_timers *t, int64_t now);
void wg_timers_any_authenticated_packet_sent(struct wg_timers *t);
void wg_timers_any_authenticated_packet_received(struct wg_timers *t);
void wg_timers_any_authenticated_packet_traversal(struct wg_timers *t, int64_t now);
void wg_timers_handshake_initiated(struct wg_timers *t, int64_t now, int64_t jitter_ns);
void wg_timers_handshake_complete(struct wg_timers *t);
void wg_timers_session_derived(struct wg_timers *t, int64_t now);
/* Sets the persistent keepalive interval; returns true if a keepalive
 * should go out at once (it was switched on). */
bool wg_timers_set_persistent_keepalive(struct wg_timers *t, uint16_t interval, int64_t now);
/* Runs every timer due at `now`; returns a mask of enum wg_timer_action. */
unsigned wg_timers_run(struct wg_timers *t, int64_t now, int64_t jitter_ns);
/* Stops everything (peer removed or keys zeroed). */
void wg_timers_stop(struct wg_timers *t);

#endif
