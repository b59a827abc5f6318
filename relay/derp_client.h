/* SPDX-License-Identifier: MIT */
/*
 * Agent-side DERP client. One struct derp_client is one connection to one
 * relay (region); the agent keeps one for its home region and opens others
 * on demand to reach peers homed elsewhere (closing them when idle, see
 * derp_client_idle_ms()). Each client runs its own thread: it dials (TCP,
 * TLS with SNI and certificate verification against the system store or
 * SSL_CERT_FILE, HTTP upgrade at /derp), proves the node key in ClientInfo,
 * then relays frames. It reconnects after any failure with exponential
 * backoff (100 ms doubling to 10 s, +-50 % jitter), treats 120 s without a
 * frame as a dead connection, and pings the relay after 60 s of silence.
 * Outgoing packets go through a bounded queue; callbacks run on the
 * client's thread and must not block for long.
 */
#ifndef WM_DERP_CLIENT_H
#define WM_DERP_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/ssl.h>

#include "common/err.h"
#include "common/keys.h"

enum {
	DERP_CLIENT_QUEUE = 512,		/* packets waiting to be written */
	DERP_CLIENT_DIAL_TIMEOUT_MS = 10000,
	DERP_CLIENT_READ_TIMEOUT_MS = 120000,
	DERP_CLIENT_PING_IDLE_MS = 60000,
};

struct derp_client_callbacks {
	/* A packet from `src` (a node key). */
	void (*recv)(void *ctx, const uint8_t src[static KEY_LEN], const uint8_t *pkt, size_t n);
	/* The relay says `peer` left (reason 0) or is not here (1). May be NULL. */
	void (*peer_gone)(void *ctx, const uint8_t peer[static KEY_LEN], int reason);
	/* Connected (after ServerInfo) or disconnected. May be NULL. */
	void (*state)(void *ctx, bool connected);
	void *ctx;
};

struct derp_client_config {
	const char *host;		/* TLS name, SNI and Host header */
	const char *dial_addr;		/* IP to connect to; NULL resolves host */
	uint16_t port;			/* 0: 443 */
	const uint8_t *node_private_key;/* KEY_LEN bytes, copied */
	bool plain;			/* no TLS (a relay with --insecure-plain-http) */
	bool preferred;			/* home region: NotePreferred(1) on connect */
	int region_id;			/* for the caller's bookkeeping */
	struct derp_client_callbacks cb;
};

struct derp_client;

/* Copies cfg. NULL on bad config or ENOMEM. Nothing runs until start. */
struct derp_client *derp_client_new(const struct derp_client_config *cfg);
/* Starts the connection thread. */
int derp_client_start(struct derp_client *c) WM_MUST_CHECK;
/*
 * Queues a packet (at most DERP_MAX_PACKET bytes) for `dst`. Thread safe,
 * never blocks. Returns 0, ERR_TOO_LARGE, or ERR_EXHAUSTED when the queue is
 * full (the packet is dropped and counted).
 */
int derp_client_send(struct derp_client *c, const uint8_t dst[static KEY_LEN],
		     const void *pkt, size_t n) WM_MUST_CHECK;
/* As derp_client_send() but waits up to timeout_ms for queue space. */
int derp_client_send_wait(struct derp_client *c, const uint8_t dst[static KEY_LEN],
			  const void *pkt, size_t n, int timeout_ms) WM_MUST_CHECK;
/* Changes the home flag; sent now if connected, and on every reconnect. */
void derp_client_note_preferred(struct derp_client *c, bool preferred);
bool derp_client_connected(const struct derp_client *c);
/* Waits up to timeout_ms for the connection to be up. 0 or ERR_TIMEOUT. */
int derp_client_wait_connected(struct derp_client *c, int timeout_ms) WM_MUST_CHECK;
/* Milliseconds since the last packet sent or received (for idle cleanup). */
int64_t derp_client_idle_ms(const struct derp_client *c);
/* The relay's public key, once connected; ERR_UNAVAILABLE before. */
int derp_client_server_key(const struct derp_client *c, uint8_t out[static KEY_LEN]) WM_MUST_CHECK;

struct derp_client_stats {
	uint64_t packets_sent, packets_recv, bytes_sent, bytes_recv;
	uint64_t dropped_queue_full, connects, disconnects;
};
void derp_client_stats(const struct derp_client *c, struct derp_client_stats *out);

/* Stops the thread, closes the connection, wipes the key. NULL is a no-op. */
void derp_client_free(struct derp_client *c);

/* Why the calling thread's last derp_client_dial failed, in words ("cannot
 * connect to HOST port 443: Connection refused", "TLS handshake with HOST
 * failed: certificate not trusted (...)"); "" when it did not fail. */
const char *derp_client_dial_error(void);

/*
 * One blocking dial and handshake, shared with the tools: connects, runs
 * TLS (with `ctx`, or none when cfg->plain), upgrades, reads ServerKey,
 * sends ClientInfo, reads ServerInfo. On success *fd and *ssl (NULL when
 * plain) are the live connection in blocking mode, *server_pub the relay's
 * key, and any bytes read past ServerInfo are returned in extra/extra_len
 * (caller frees *extra). Returns 0, ERR_IO, ERR_TIMEOUT, ERR_PROTOCOL,
 * ERR_FORBIDDEN (the relay closed after ClientInfo: refused).
 */
int derp_client_dial(const struct derp_client_config *cfg, SSL_CTX *ctx, int timeout_ms,
		     int *fd, SSL **ssl, uint8_t server_pub[static KEY_LEN],
		     uint8_t **extra, size_t *extra_len) WM_MUST_CHECK;

/* SO_MARK for every relay connection made from now on (0: none); the
 * agent's policy routing keeps marked sockets off the tunnel. */
void derp_client_set_fwmark(uint32_t mark);

/* A TLS client context: system trust store, SSL_CERT_FILE honoured. */
SSL_CTX *derp_client_tls_ctx(void);

#endif
