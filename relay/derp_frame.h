/* SPDX-License-Identifier: MIT */
/*
 * DERP wire format, modeled on Tailscale's (protocol version 2): each frame
 * is one type byte, a 4-byte big-endian payload length, then the payload.
 * This header holds the frame types, the size limits both ends enforce, and
 * the codec for the handshake frames (ServerKey, ClientInfo and ServerInfo,
 * the latter two sealed with a NaCl box: 24-byte nonce || crypto_box_easy).
 * Nothing here does I/O.
 */
#ifndef WM_DERP_FRAME_H
#define WM_DERP_FRAME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "common/keys.h"

enum derp_frame_type {
	DERP_FRAME_SERVER_KEY = 0x01,
	DERP_FRAME_CLIENT_INFO = 0x02,
	DERP_FRAME_SERVER_INFO = 0x03,
	DERP_FRAME_SEND_PACKET = 0x04,
	DERP_FRAME_RECV_PACKET = 0x05,
	DERP_FRAME_KEEP_ALIVE = 0x06,
	DERP_FRAME_NOTE_PREFERRED = 0x07,
	DERP_FRAME_PEER_GONE = 0x08,
	DERP_FRAME_PEER_PRESENT = 0x09,
	DERP_FRAME_FORWARD_PACKET = 0x0a,
	DERP_FRAME_WATCH_CONNS = 0x10,
	DERP_FRAME_CLOSE_PEER = 0x11,
	DERP_FRAME_PING = 0x12,
	DERP_FRAME_PONG = 0x13,
	DERP_FRAME_HEALTH = 0x14,
	DERP_FRAME_RESTARTING = 0x15,
};

enum {
	DERP_PROTOCOL_VERSION = 2,
	DERP_HEADER_LEN = 5,
	DERP_MAGIC_LEN = 8,
	DERP_NONCE_LEN = 24,
	DERP_BOX_OVERHEAD = 16,
	DERP_MAX_PACKET = 65536,		/* payload of Send/RecvPacket, excl. key */
	DERP_MAX_CLIENT_INFO = 4096,		/* whole ClientInfo frame payload */
	DERP_MAX_SERVER_INFO = 4096,
	DERP_MAX_SERVER_KEY = 1024,
	DERP_CHALLENGE_LEN = 32,	/* after the server key in ServerKey */
	DERP_PING_LEN = 8,
	DERP_MAX_PING = 1000,
	DERP_MAX_HEALTH = 1024,
	/* The server's per-frame limit: a SendPacket is the largest it accepts. */
	DERP_MAX_FRAME_TO_SERVER = KEY_LEN + DERP_MAX_PACKET,
	/* The client refuses anything bigger than this. */
	DERP_MAX_FRAME_TO_CLIENT = 1 << 20,
	/* PeerGone reasons. */
	DERP_PEER_GONE_DISCONNECTED = 0x00,
	DERP_PEER_GONE_NOT_HERE = 0x01,
	/* Bytes of a ClientInfo payload before the box: key, nonce. */
	DERP_CLIENT_INFO_PREFIX = KEY_LEN + DERP_NONCE_LEN,
};

/* "DERP🔑" */
extern const uint8_t derp_magic[DERP_MAGIC_LEN];

/* Writes the 5-byte header. */
void derp_frame_put_header(uint8_t out[static DERP_HEADER_LEN], uint8_t type, uint32_t len);

/*
 * Reads a header from a buffer holding at least DERP_HEADER_LEN bytes.
 * Returns 0, or ERR_TOO_LARGE when the declared length exceeds `max`.
 */
int derp_frame_get_header(const uint8_t *p, uint8_t *type, uint32_t *len,
			  uint32_t max) WM_MUST_CHECK;

/*
 * Per-type payload limit a server applies to frames from clients; frames
 * over it end the connection. Unknown types get DERP_MAX_FRAME_TO_SERVER.
 */
uint32_t derp_frame_server_limit(uint8_t type);

/* ServerKey payload: magic || server public key || a fresh random challenge
 * of this connection (72 bytes; clients reading only the first 40 still work).
 * The client returns the challenge inside its sealed ClientInfo, so a
 * ClientInfo recorded on one connection is refused on any other. */
void derp_server_key_build(uint8_t out[static DERP_MAGIC_LEN + KEY_LEN + DERP_CHALLENGE_LEN],
			   const uint8_t server_pub[static KEY_LEN],
			   const uint8_t challenge[static DERP_CHALLENGE_LEN]);
/* challenge (may be NULL) gets the challenge, zeros when the server sent none. */
int derp_server_key_parse(const uint8_t *p, size_t n, uint8_t server_pub[static KEY_LEN],
			  uint8_t *challenge) WM_MUST_CHECK;

/* What a ClientInfo box carries. */
struct derp_client_info {
	bool has_challenge;
	uint8_t challenge[DERP_CHALLENGE_LEN];
	int version;
	bool can_ack_pings;
	bool is_prober;
};

/*
 * Builds a ClientInfo payload: client public key, random nonce, and the box
 * of `{"version":2,"CanAckPings":true}` sealed from the client's private key
 * to the server's public key. Returns the payload length or ERR_*.
 */
int derp_client_info_seal(uint8_t *out, size_t cap,
			  const uint8_t client_priv[static KEY_LEN],
			  const uint8_t client_pub[static KEY_LEN],
			  const uint8_t server_pub[static KEY_LEN],
			  const uint8_t *challenge) WM_MUST_CHECK;	/* NULL: none */

/*
 * Opens a ClientInfo payload with the server's private key. On success
 * copies the claimed (now proven) client key and the decoded JSON. Returns
 * 0, ERR_INVALID (bad size or JSON), ERR_BAD_SIGNATURE (box does not open).
 */
int derp_client_info_open(const uint8_t *p, size_t n,
			  const uint8_t server_priv[static KEY_LEN],
			  uint8_t client_pub[static KEY_LEN],
			  struct derp_client_info *info) WM_MUST_CHECK;

/* ServerInfo payload: nonce || box of `{"version":2}` to the client. */
int derp_server_info_seal(uint8_t *out, size_t cap,
			  const uint8_t server_priv[static KEY_LEN],
			  const uint8_t client_pub[static KEY_LEN]) WM_MUST_CHECK;
int derp_server_info_open(const uint8_t *p, size_t n,
			  const uint8_t client_priv[static KEY_LEN],
			  const uint8_t server_pub[static KEY_LEN]) WM_MUST_CHECK;

/* True when a packet looks like a disco message (magic, >= 62 bytes). */
bool derp_looks_like_disco(const uint8_t *p, size_t n);

#endif
