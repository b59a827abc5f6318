/* SPDX-License-Identifier: MIT */
/*
 * The Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s handshake as WireGuard uses it,
 * and the keypairs it yields. Pure state transitions: no sockets, no locks
 * (the caller holds the peer's lock), indexes chosen by the caller, time
 * passed in. A fixed ephemeral key may be given for transcript tests.
 */
#ifndef WG_NOISE_H
#define WG_NOISE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "client-agent/wg/messages.h"
#include "client-agent/wg/replay.h"
#include "common/err.h"

struct wg_static_identity {
	uint8_t priv[WG_KEY_LEN];
	uint8_t pub[WG_KEY_LEN];
	bool has;
};

enum wg_hs_state {
	WG_HS_ZEROED,
	WG_HS_CREATED_INITIATION,
	WG_HS_CONSUMED_INITIATION,
	WG_HS_CREATED_RESPONSE,
	WG_HS_CONSUMED_RESPONSE,
};

struct wg_handshake {
	enum wg_hs_state state;
	uint8_t remote_static[WG_KEY_LEN];
	uint8_t psk[WG_KEY_LEN];
	uint8_t eph_priv[WG_KEY_LEN];
	uint8_t remote_eph[WG_KEY_LEN];
	uint8_t hash[WG_HASH_LEN];
	uint8_t chaining[WG_HASH_LEN];
	uint8_t latest_timestamp[WG_TAI64N_LEN];
	int64_t last_initiation_consumed;	/* monotonic ns, 0 = never */
	uint32_t local_index;
	uint32_t remote_index;
};

/* What an initiation revealed, before it is matched to a peer. */
struct wg_init_result {
	uint8_t remote_static[WG_KEY_LEN];
	uint8_t remote_eph[WG_KEY_LEN];
	uint8_t hash[WG_HASH_LEN];
	uint8_t chaining[WG_HASH_LEN];
	uint8_t timestamp[WG_TAI64N_LEN];
	uint32_t remote_index;
};

/* Session keys. Reference counted: the data path takes a reference while it
 * uses one; the last wg_keypair_put wipes and frees it. */
struct wg_keypair {
	uint8_t send_key[WG_KEY_LEN];
	uint8_t recv_key[WG_KEY_LEN];
	_Atomic uint64_t send_counter;
	pthread_mutex_t recv_lock;
	struct wg_replay replay;
	int64_t birth;			/* monotonic ns */
	bool initiator;
	uint32_t local_index;
	uint32_t remote_index;
	void *peer;			/* owner, borrowed */
	_Atomic int refs;
};

/* Writes the 12-byte TAI64N label of the wall clock, nanoseconds rounded down
 * to 2^24 ns as the other implementations do. */
void wg_tai64n_now(uint8_t out[static WG_TAI64N_LEN]);

/* Builds message 1 (without macs) from hs->local_index, hs->remote_static and
 * hs->psk. ERR_INVALID if a DH fails (bad peer key). */
int wg_noise_create_initiation(struct wg_handshake *hs, const struct wg_static_identity *local,
			       const uint8_t tai64n[static WG_TAI64N_LEN],
			       const uint8_t *fixed_eph, uint8_t msg[static WG_INITIATION_LEN])
	WM_MUST_CHECK;
/* Decrypts message 1 with our static key; fills `out`. ERR_BAD_SIGNATURE etc. */
int wg_noise_consume_initiation(const struct wg_static_identity *local,
				const uint8_t msg[static WG_INITIATION_LEN],
				struct wg_init_result *out) WM_MUST_CHECK;
/* Applies replay (timestamp must grow) and flood (20 ms) checks, then takes
 * the initiation into the peer's handshake. ERR_REPLAY / ERR_STALE. */
int wg_noise_accept_initiation(struct wg_handshake *hs, const struct wg_init_result *r,
			       int64_t now) WM_MUST_CHECK;
/* Builds message 2 (without macs) after an accepted initiation. */
int wg_noise_create_response(struct wg_handshake *hs, const uint8_t *fixed_eph,
			     uint8_t msg[static WG_RESPONSE_LEN]) WM_MUST_CHECK;
/* Consumes message 2 for a handshake in CREATED_INITIATION; leaves hs
 * untouched on failure. */
int wg_noise_consume_response(struct wg_handshake *hs, const struct wg_static_identity *local,
			      const uint8_t msg[static WG_RESPONSE_LEN]) WM_MUST_CHECK;
/* Derives the transport keys (hs must be CONSUMED_RESPONSE or CREATED_RESPONSE),
 * fills kp (refs = 1) and wipes the handshake's secrets. */
int wg_noise_derive_keypair(struct wg_handshake *hs, struct wg_keypair *kp, int64_t now)
	WM_MUST_CHECK;
/* Wipes ephemeral state; keeps keys, psk, timestamps. */
void wg_noise_handshake_clear(struct wg_handshake *hs);

/* New reference to kp. */
void wg_keypair_get(struct wg_keypair *kp);
/* Drops a reference; frees (wiped) at zero. NULL is a no-op. */
void wg_keypair_put(struct wg_keypair *kp);

#endif
