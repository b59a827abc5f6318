/* SPDX-License-Identifier: MIT */
/*
 * STUN client: binding requests to a STUN server and the reflexive address
 * they report. Two forms: a blocking query (own socket or a caller's socket
 * that nothing else reads meanwhile), and transaction helpers for the agent's
 * shared UDP socket, where replies are picked out by stun_looks_like() in the
 * demultiplexer and matched here by transaction ID.
 */
#ifndef WM_STUN_CLIENT_H
#define WM_STUN_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/addr.h"
#include "common/err.h"
#include "relay/stun.h"

struct stun_txn {
	uint8_t txid[STUN_TXID_LEN];
	int64_t sent_us;		/* monotonic, of the latest send */
};

/* Starts a transaction: fresh random ID, the 40-byte request in `out`. */
size_t stun_txn_start(struct stun_txn *t, uint8_t out[static STUN_BINDING_REQUEST_LEN]);

/*
 * If `pkt` is a success response to `t`, fills *mapped (and *rtt_us, may be
 * NULL) and returns 0; ERR_NOT_FOUND if it is not ours; ERR_INVALID if it is
 * ours but malformed or an error response.
 */
int stun_txn_match(const struct stun_txn *t, const uint8_t *pkt, size_t n,
		   struct endpoint *mapped, int64_t *rtt_us) WM_MUST_CHECK;

/*
 * Blocking query: sends a binding request to `server` from `fd` (a UDP
 * socket; -1 makes a temporary one of the server's family), retransmits at
 * 0, 250, 750 ms..., waits at most timeout_ms. Returns 0 with *mapped and
 * *rtt_us (may be NULL), ERR_TIMEOUT, ERR_IO.
 */
int stun_client_query(int fd, const struct endpoint *server, int timeout_ms,
		      struct endpoint *mapped, int64_t *rtt_us) WM_MUST_CHECK;

#endif
