/* SPDX-License-Identifier: MIT */
/*
 * The WireGuard wire format and protocol limits, in one place: message types
 * and sizes (all integers little-endian), the timer constants of the
 * whitepaper section 6, and the anti-replay window size. Every other file of
 * the engine takes its numbers from here.
 */
#ifndef WG_MESSAGES_H
#define WG_MESSAGES_H

#include <stdint.h>

enum {
	WG_KEY_LEN = 32,
	WG_HASH_LEN = 32,
	WG_MAC_LEN = 16,
	WG_TAG_LEN = 16,
	WG_TAI64N_LEN = 12,
	WG_COOKIE_LEN = 16,
	WG_COOKIE_NONCE_LEN = 24,
};

enum wg_msg_type {
	WG_MSG_INITIATION = 1,
	WG_MSG_RESPONSE = 2,
	WG_MSG_COOKIE = 3,
	WG_MSG_DATA = 4,
};

enum {
	WG_INITIATION_LEN = 148,
	WG_RESPONSE_LEN = 92,
	WG_COOKIE_REPLY_LEN = 64,
	WG_DATA_HEADER_LEN = 16,
	WG_DATA_MIN_LEN = WG_DATA_HEADER_LEN + WG_TAG_LEN,	/* a keepalive */
	WG_DATA_OVERHEAD = WG_DATA_HEADER_LEN + WG_TAG_LEN,
	WG_PADDING = 16,
	WG_DEFAULT_MTU = 1420,
	WG_MAX_PACKET = 65535,		/* largest IP packet we carry */
	WG_MAX_DATAGRAM = WG_MAX_PACKET + WG_DATA_OVERHEAD + WG_PADDING,
};

/* Byte offsets inside the messages (section "Message layouts"). */
enum {
	WG_OFF_TYPE = 0,
	WG_OFF_SENDER = 4,
	WG_INIT_OFF_EPHEMERAL = 8,
	WG_INIT_OFF_STATIC = 40,	/* 32 + 16 */
	WG_INIT_OFF_TIMESTAMP = 88,	/* 12 + 16 */
	WG_INIT_OFF_MAC1 = 116,
	WG_INIT_OFF_MAC2 = 132,
	WG_RESP_OFF_RECEIVER = 8,
	WG_RESP_OFF_EPHEMERAL = 12,
	WG_RESP_OFF_EMPTY = 44,		/* tag only */
	WG_RESP_OFF_MAC1 = 60,
	WG_RESP_OFF_MAC2 = 76,
	WG_COOKIE_OFF_RECEIVER = 4,
	WG_COOKIE_OFF_NONCE = 8,
	WG_COOKIE_OFF_COOKIE = 32,	/* 16 + 16 */
	WG_DATA_OFF_RECEIVER = 4,
	WG_DATA_OFF_COUNTER = 8,
	WG_DATA_OFF_PAYLOAD = 16,
};

/* Timers and limits; times in seconds unless the name says otherwise. */
#define WG_REKEY_AFTER_MESSAGES (1ULL << 60)
#define WG_REJECT_AFTER_MESSAGES (UINT64_MAX - WG_COUNTER_WINDOW - 1)
enum {
	WG_REKEY_AFTER_TIME = 120,
	WG_REJECT_AFTER_TIME = 180,
	WG_REKEY_ATTEMPT_TIME = 90,
	WG_REKEY_TIMEOUT = 5,
	WG_KEEPALIVE_TIMEOUT = 10,
	WG_COOKIE_SECRET_MAX_AGE = 120,
	WG_COOKIE_SEND_MAX_AGE = 120 - 5,	/* the kernel's margin */
	WG_MAX_TIMER_HANDSHAKES = WG_REKEY_ATTEMPT_TIME / WG_REKEY_TIMEOUT,
	WG_REKEY_TIMEOUT_JITTER_MS = 334,
	WG_INITIATIONS_MIN_INTERVAL_MS = 20,	/* 50 per second per peer */
	WG_MAX_STAGED_PACKETS = 128,
	WG_MAX_PEERS = 1 << 16,
	WG_MAX_ALLOWED_IPS = 1 << 20,
};

/* Anti-replay: a ring of 128 words of 64 bits, the kernel's 8192 bits. */
enum {
	WG_COUNTER_BITS_TOTAL = 8192,
	WG_COUNTER_WORDS = WG_COUNTER_BITS_TOTAL / 64,
	WG_COUNTER_WINDOW = WG_COUNTER_BITS_TOTAL - 64,
};

#define WG_NS_PER_S 1000000000LL
#define WG_NS_PER_MS 1000000LL

static inline uint32_t
wg_get_le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

static inline void
wg_put_le32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
	p[2] = (uint8_t)(v >> 16);
	p[3] = (uint8_t)(v >> 24);
}

static inline uint64_t
wg_get_le64(const uint8_t *p)
{
	return (uint64_t)wg_get_le32(p) | (uint64_t)wg_get_le32(p + 4) << 32;
}

static inline void
wg_put_le64(uint8_t *p, uint64_t v)
{
	wg_put_le32(p, (uint32_t)v);
	wg_put_le32(p + 4, (uint32_t)(v >> 32));
}

#endif
