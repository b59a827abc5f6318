/* SPDX-License-Identifier: MIT */
/*
 * mac1/mac2 and cookie replies (whitepaper 5.4.4 and 5.4.7). The checker
 * belongs to the device (our public key, the rotating cookie secret); a maker
 * belongs to each peer (its public key, the last cookie and mac1 we sent).
 * Times are monotonic nanoseconds passed in by the caller.
 */
#ifndef WG_COOKIE_H
#define WG_COOKIE_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "client-agent/wg/messages.h"
#include "common/addr.h"
#include "common/err.h"

struct wg_cookie_checker {
	pthread_mutex_t lock;
	uint8_t mac1_key[WG_HASH_LEN];
	uint8_t cookie_key[WG_HASH_LEN];
	uint8_t secret[WG_HASH_LEN];
	int64_t secret_birth;	/* 0: none yet */
};

struct wg_cookie_maker {
	uint8_t mac1_key[WG_HASH_LEN];
	uint8_t cookie_key[WG_HASH_LEN];
	uint8_t cookie[WG_COOKIE_LEN];
	int64_t cookie_birth;	/* 0: no cookie */
	uint8_t last_mac1[WG_MAC_LEN];
	bool have_last_mac1;
};

enum wg_mac_result {
	WG_MAC_INVALID,		/* drop silently */
	WG_MAC_VALID_NO_COOKIE,	/* mac1 good, mac2 missing or wrong */
	WG_MAC_VALID_COOKIE,	/* both good */
};

void wg_cookie_checker_init(struct wg_cookie_checker *c);
void wg_cookie_checker_cleanup(struct wg_cookie_checker *c);
/* Sets the keys from our public key (all zeros when we have none). */
void wg_cookie_checker_set_key(struct wg_cookie_checker *c,
			       const uint8_t pub[static WG_KEY_LEN]);
void wg_cookie_maker_init(struct wg_cookie_maker *m, const uint8_t peer_pub[static WG_KEY_LEN]);

/* Fills mac1 (and mac2 when a fresh cookie is held) of an initiation or
 * response of `len` bytes. */
void wg_cookie_add_macs(struct wg_cookie_maker *m, uint8_t *msg, size_t len, int64_t now);
/* Checks mac1, and mac2 against the cookie for `src` when check_mac2. */
enum wg_mac_result wg_cookie_validate(struct wg_cookie_checker *c, const uint8_t *msg,
				      size_t len, const struct endpoint *src,
				      bool check_mac2, int64_t now);
/* Builds a 64-byte cookie reply to `msg` (initiation or response). */
void wg_cookie_reply_create(struct wg_cookie_checker *c, uint8_t out[static WG_COOKIE_REPLY_LEN],
			    const uint8_t *msg, size_t len, const struct endpoint *src,
			    int64_t now);
/* Consumes a cookie reply; 0, or ERR_PROTOCOL (no mac1 sent) / ERR_BAD_SIGNATURE. */
int wg_cookie_reply_consume(struct wg_cookie_maker *m,
			    const uint8_t reply[static WG_COOKIE_REPLY_LEN], int64_t now) WM_MUST_CHECK;

#endif
