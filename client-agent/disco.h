/* SPDX-License-Identifier: MIT */
/*
 * Path-discovery ("disco") messages: ping, pong and call-me-maybe, sealed
 * with the nodes' X25519 disco keys (NaCl crypto_box, random 24-byte nonce).
 * docs/disco.md has the wire format. Pure codec: no I/O, no state, thread safe.
 *
 * Wire: 6-byte magic "WM\xf0\x9f\x92\xac" | sender disco public key (32) |
 * nonce (24) | crypto_box(payload). Payload: type (1) | version (1, 0) | body.
 *   ping:          txid (12) | sender node key (32)
 *   pong:          txid (12) | src endpoint as seen by the responder:
 *                  16-byte IPv6 (v4-mapped) + 2-byte port BE
 *   call-me-maybe: N x (16-byte IPv6/v4-mapped + 2-byte port), N <= DISCO_MAX_ENDPOINTS
 * The magic never collides with WireGuard (first byte 1..4) or STUN (0x00/0x01).
 */
#ifndef WM_DISCO_H
#define WM_DISCO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/addr.h"
#include "common/err.h"
#include "common/keys.h"

enum { DISCO_MAGIC_LEN = 6, DISCO_TXID_LEN = 12, DISCO_MAX_ENDPOINTS = 16,
       DISCO_HEADER_LEN = 6 + 32 + 24, DISCO_MAX_PACKET = 512 };

/* Added beyond the agreed interface: sizes of the sealed part. */
enum { DISCO_NONCE_LEN = 24, DISCO_MAC_LEN = 16, DISCO_VERSION = 0,
       DISCO_EP_LEN = 18 };

enum disco_type { DISCO_PING = 1, DISCO_PONG = 2, DISCO_CALL_ME_MAYBE = 3 };

struct disco_msg {
	enum disco_type type;
	uint8_t txid[DISCO_TXID_LEN];		/* ping, pong */
	uint8_t node_key[KEY_LEN];		/* ping: the sender's node (WireGuard) key */
	struct endpoint src;			/* pong */
	struct endpoint endpoints[DISCO_MAX_ENDPOINTS]; size_t n_endpoints; /* call-me-maybe */
};

/* True if pkt starts with the disco magic and is long enough to be one
 * (header + MAC + type + version). Cheap; for demultiplexing the UDP socket. */
bool disco_looks_like(const uint8_t *pkt, size_t n);

/* Seals *m from my key pair to peer_pub into out (cap bytes, DISCO_MAX_PACKET
 * is always enough). Returns 0 and *out_len, ERR_INVALID for a bad message
 * (unknown type, too many endpoints, non-IP endpoint family), ERR_TOO_LARGE
 * if cap is short, ERR_INTERNAL if the box fails. */
int disco_seal(const uint8_t my_priv[static KEY_LEN], const uint8_t my_pub[static KEY_LEN],
	       const uint8_t peer_pub[static KEY_LEN], const struct disco_msg *m,
	       uint8_t *out, size_t cap, size_t *out_len) WM_MUST_CHECK;

/* Like disco_seal with a caller-chosen nonce (tests and known-answer vectors
 * only; real senders must use disco_seal, which draws a random nonce). */
int disco_seal_nonce(const uint8_t my_priv[static KEY_LEN], const uint8_t my_pub[static KEY_LEN],
		     const uint8_t peer_pub[static KEY_LEN],
		     const uint8_t nonce[static DISCO_NONCE_LEN], const struct disco_msg *m,
		     uint8_t *out, size_t cap, size_t *out_len) WM_MUST_CHECK;

/* Opens a packet: fills sender_pub and *m. ERR_PROTOCOL (malformed) or
 * ERR_BAD_SIGNATURE (does not authenticate). Never crashes on any input.
 * Out-parameters are only written on success. Unknown versions/types and
 * trailing bytes after a ping/pong body are ERR_PROTOCOL. */
int disco_open(const uint8_t my_priv[static KEY_LEN], const uint8_t *pkt, size_t n,
	       uint8_t sender_pub[static KEY_LEN], struct disco_msg *m) WM_MUST_CHECK;

/* Converts an endpoint to/from its 18-byte wire form (IPv4 as v4-mapped
 * IPv6, port big-endian). Exposed for tests. */
void disco_ep_put(uint8_t out[static DISCO_EP_LEN], const struct endpoint *e);
void disco_ep_get(const uint8_t in[static DISCO_EP_LEN], struct endpoint *e);

#endif
