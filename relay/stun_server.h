/* SPDX-License-Identifier: MIT */
/*
 * STUN server on one UDP address: answers RFC 5389 binding requests with
 * XOR-MAPPED-ADDRESS (+ SOFTWARE, FINGERPRINT) and classic RFC 3489 binding
 * requests with MAPPED-ADDRESS. Everything else (bad header, bad fingerprint,
 * other methods, requests asking for a changed address or port we do not
 * have) is dropped and counted. Stateless, no rate limit. Runs on its own
 * thread; used by wiremesh-derper and embedded in wiremesh-server.
 */
#ifndef WM_STUN_SERVER_H
#define WM_STUN_SERVER_H

#include <stdint.h>

#include "common/addr.h"
#include "common/buf.h"
#include "common/err.h"

struct stun_server;

struct stun_server_stats {
	uint64_t requests;	/* RFC 5389 binding requests answered */
	uint64_t classic;	/* RFC 3489 binding requests answered */
	uint64_t garbage;	/* not STUN, malformed, bad fingerprint */
	uint64_t unsupported;	/* valid STUN we do not answer */
	uint64_t send_errors;
};

/* Allocates a server for `addr` ("HOST:PORT" or ":PORT"). NULL on ENOMEM. */
struct stun_server *stun_server_new(const char *addr);
/* Binds the socket and starts the serving thread. 0, ERR_INVALID, ERR_IO. */
int stun_server_start(struct stun_server *s) WM_MUST_CHECK;
/* Bound UDP port (useful with port 0), 0 before start. */
uint16_t stun_server_port(const struct stun_server *s);
/* Snapshot of the counters; any thread. */
void stun_server_stats(const struct stun_server *s, struct stun_server_stats *out);
/* Appends Prometheus text for the counters. */
int stun_server_metrics(const struct stun_server *s, struct buf *out) WM_MUST_CHECK;
/* Stops the thread, closes the socket, frees. NULL is a no-op. */
void stun_server_free(struct stun_server *s);

/*
 * The per-datagram decision, exposed for tests and fuzzing: given a datagram
 * from `from`, writes the reply (if any) into out and returns its length, or
 * 0 to drop; `stats` is updated.
 */
size_t stun_server_handle(struct stun_server_stats *stats, const uint8_t *pkt, size_t n,
			  const struct endpoint *from, uint8_t *out, size_t cap);

#endif
