/* SPDX-License-Identifier: MIT */
/*
 * The DERP relay core, one implementation for wiremesh-derper and for the
 * relay embedded in wiremesh-server. One event-loop thread (epoll,
 * non-blocking sockets, optional OpenSSL TLS per connection) owns every
 * connection: it runs the DERP handshake, forwards SendPacket frames to the
 * destination key's connection as RecvPacket frames, answers pings, sends
 * keepalives and PeerGone. Each client has a bounded packet queue; when it is
 * full the oldest packet is dropped and counted, so a slow reader never
 * blocks anyone else.
 *
 * Standalone use: give https_addr + ssl_ctx (and optionally http_addr); the
 * loop then also serves the HTTP endpoints:
 *   GET /derp            Upgrade: DERP -> 101 and the framed protocol
 *   GET /generate_204    204 (X-Tailscale-Challenge echoed as X-Tailscale-Response)
 *   GET|HEAD /derp/probe, /derp/latency-check   200, empty body
 *   GET /metrics         Prometheus text
 * The plain-HTTP listener serves /generate_204 and redirects the rest to https.
 *
 * Embedded use: the embedder's HTTP layer checks the request with
 * derp_upgrade_check(), answers 101 with the headers derp_server_upgrade_headers()
 * lists, and hands the upgraded socket over with derp_server_adopt_fd() (the
 * relay owns it) or derp_server_adopt_borrowed() (the HTTP layer owns it).
 *
 * ADMISSION CONTRACT. With a `verify` callback the relay admits a client
 * only after the callback returns 0 for its node key. The key is proven: the
 * client sealed its ClientInfo with the matching private key. The callback
 * runs on DERP_VERIFY_THREADS verifier threads (it may block, e.g. on HTTP;
 * the event loop does not wait for it). Verdicts are cached per key
 * (admissions DERP_VERIFY_ALLOW_TTL_MS, refusals DERP_VERIFY_DENY_TTL_MS), so
 * a known node reconnecting is admitted without a check. At most
 * DERP_VERIFY_QUEUE checks wait; beyond that clients are refused, and a
 * client whose check has not started within DERP_VERIFY_WAIT_MS is refused
 * without one. Refused clients are closed without ServerInfo and counted.
 * derp_verify_url() is a ready-made callback for `--verify-clients-url URL`:
 * it POSTs `{"NodePublic":"nodekey:<64 hex>"}` (Content-Type:
 * application/json, and "Authorization: Bearer <secret>" with a secret) to
 * URL with a 5 s timeout and admits only when the reply is HTTP 200 with a
 * JSON object body whose "Allow" member is true. Anything else — another
 * status, an empty or non-object body, no "Allow", a transport error, a
 * timeout — refuses (fail closed). Without a callback every client is
 * admitted (open relay).
 */
#ifndef WM_DERP_SERVER_H
#define WM_DERP_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/ssl.h>

#include "common/buf.h"
#include "common/err.h"
#include "common/keys.h"

enum {
	DERP_DEFAULT_MAX_CONNS = 16384,
	DERP_DEFAULT_QUEUE_LEN = 128,	/* packets per client */
	DERP_DEFAULT_KEEPALIVE_MS = 60000,
	DERP_HANDSHAKE_TIMEOUT_MS = 10000,
	DERP_VERIFY_QUEUE = 256,
	DERP_VERIFY_THREADS = 4,
	DERP_VERIFY_WAIT_MS = 5000,
	DERP_VERIFY_ALLOW_TTL_MS = 60000,
	DERP_VERIFY_DENY_TTL_MS = 10000,
	DERP_VERIFY_CACHE = 4096,
	DERP_MAX_HTTP_REQUEST = 8192,
};

/* Returns 0 to admit `nodekey`, anything else to refuse. Verifier thread. */
typedef int (*derp_verify_fn)(void *ctx, const uint8_t nodekey[static KEY_LEN]);

struct derp_server_config {
	const uint8_t *private_key;	/* KEY_LEN bytes (copied); NULL: fresh key */
	const char *https_addr;		/* standalone TLS listener "HOST:PORT"; NULL none */
	SSL_CTX *ssl_ctx;		/* borrowed; required with https_addr ... */
	const char *tls_cert;		/* ... unless these PEM files are given: */
	const char *tls_key;		/* the server loads and owns its context */
	bool tls_cert_later;		/* those files may not exist yet: start
					 * without (derp_server_reload_cert) */
	const char *http_addr;		/* plain HTTP listener; NULL none */
	bool plain_derp;		/* serve /derp etc. without TLS on https_addr (tests, behind a TLS proxy) */
	derp_verify_fn verify;		/* NULL: open relay */
	void *verify_ctx;
	unsigned max_conns;		/* 0: DERP_DEFAULT_MAX_CONNS */
	unsigned queue_len;		/* 0: DERP_DEFAULT_QUEUE_LEN */
	unsigned keepalive_ms;		/* 0: DERP_DEFAULT_KEEPALIVE_MS */
	/* Appended to /metrics (the standalone binary adds its STUN counters). */
	int (*metrics_extra)(void *ctx, struct buf *out);
	void *metrics_ctx;
};

struct derp_server_stats {
	uint64_t conns_current;		/* DERP clients registered */
	uint64_t sockets_current;	/* every open connection */
	uint64_t accepts;
	uint64_t clients_total;
	uint64_t packets_forwarded;
	uint64_t bytes_forwarded;
	uint64_t dropped_unknown_dest;
	uint64_t dropped_queue_full;
	uint64_t dropped_conn_limit;
	uint64_t frames_bad;		/* oversize, malformed, out of order */
	uint64_t admission_refused;
	uint64_t handshake_failed;	/* TLS, HTTP or ClientInfo failures/timeouts */
	uint64_t http_requests;
	uint64_t pings;
	uint64_t home_clients;		/* NotePreferred(1) seen */
};

struct derp_server;

/* New server; copies what it needs from cfg. NULL on ENOMEM or bad config. */
struct derp_server *derp_server_new(const struct derp_server_config *cfg);
/* Binds the listeners (if any) and starts the event-loop and verifier threads. */
int derp_server_start(struct derp_server *s) WM_MUST_CHECK;
/* Server public key. */
void derp_server_public_key(const struct derp_server *s, uint8_t out[static KEY_LEN]);
/* Bound port of the https (resp. http) listener; 0 if none. */
uint16_t derp_server_https_port(const struct derp_server *s);
uint16_t derp_server_http_port(const struct derp_server *s);

/*
 * Takes over a connection whose HTTP upgrade the caller has already
 * answered with 101 (headers from derp_server_upgrade_headers()). `ssl` is
 * the TLS session on fd, or NULL for a plain socket (TLS handled elsewhere);
 * `already_read` holds bytes the caller read past the request headers (may
 * be NULL/0). Takes ownership of fd and ssl in all cases (closed on error).
 * Thread safe. Returns 0, ERR_EXHAUSTED (connection limit), ERR_UNAVAILABLE
 * (not started).
 */
int derp_server_adopt_fd(struct derp_server *s, int fd, SSL *ssl,
			 const void *already_read, size_t n) WM_MUST_CHECK;

/*
 * Like derp_server_adopt_fd() for a plain socket the relay does not own (an
 * HTTP server's upgraded connection, possibly a socketpair that proxies its
 * TLS): the relay reads, writes and epolls fd but never closes it; when it
 * is done with the connection (or cannot take it) it calls release(ctx)
 * exactly once, on its event-loop thread or, on error, before this returns.
 * fd must stay open until then. `watch_fd` (or -1) is the client's own
 * socket behind such a proxy, watched only for a hangup (EPOLLRDHUP), which
 * ends the connection; a proxy need not pass the client's EOF on through fd.
 * Thread safe; same returns.
 */
int derp_server_adopt_borrowed(struct derp_server *s, int fd, int watch_fd,
			       void (*release)(void *ctx), void *release_ctx,
			       const void *already_read, size_t n) WM_MUST_CHECK;

/*
 * The one check of a /derp upgrade request, for the standalone loop and the
 * embedder alike: `method` and the Upgrade header value (NULL if absent).
 * Returns 0 when the upgrade may go ahead, else the HTTP status to answer
 * with (405 for a method other than GET, 426 without Upgrade: DERP).
 */
int derp_upgrade_check(const char *method, const char *upgrade);

struct derp_http_header {
	const char *name;
	char value[KEY_HEX_LEN + 1];
};
enum { DERP_UPGRADE_HEADERS = 4 };
/*
 * Headers a 101 answer to /derp must carry: Upgrade: DERP, Connection:
 * Upgrade, Derp-Version: 2, Derp-Public-Key: <hex>. Fills `out`.
 */
void derp_server_upgrade_headers(const struct derp_server *s,
				 struct derp_http_header out[static DERP_UPGRADE_HEADERS]);

/*
 * Disconnects every client registered under `key` (a node that was deleted,
 * expired or changed keys: admission is checked when a client connects, so
 * the embedder says when it no longer holds). Counted as an admission
 * refusal. Thread safe, asynchronous. 0 or ERR_EXHAUSTED (too many pending).
 */
int derp_server_drop_key(struct derp_server *s, const uint8_t key[static KEY_LEN]) WM_MUST_CHECK;

/* Counter snapshot; any thread. */
void derp_server_stats(const struct derp_server *s, struct derp_server_stats *out);
/* Appends the Prometheus text of the counters (and metrics_extra). */
int derp_server_metrics(const struct derp_server *s, struct buf *out) WM_MUST_CHECK;

/* Stops the threads, closes every connection, wipes the key. NULL is a no-op. */
/* With tls_cert/tls_key given at creation: loads them again (a renewed
 * certificate); new connections get it, open ones keep theirs. -1 (logged)
 * if they cannot be loaded or the server has no context of its own. */
int derp_server_reload_cert(struct derp_server *s, const char *cert, const char *key)
	WM_MUST_CHECK;
void derp_server_free(struct derp_server *s);

/* Fuzzing and tests: runs one plain-HTTP client connection's handling over
 * the bytes p[0..n) synchronously, on the calling thread, as if read from
 * its socket in pieces ending at cuts[0..ncuts) (ascending offsets) and then
 * the rest; replies are discarded; the connection is closed at the end.
 * Only on a server that was not started (no threads). */
int derp_server_feed(struct derp_server *s, const uint8_t *p, size_t n, const size_t *cuts,
		     size_t ncuts) WM_MUST_CHECK;

/* The --verify-clients-url callback; ctx is a struct derp_verify_url_ctx. */
struct derp_verify_url_ctx {
	const char *url;
	const char *secret;	/* sent as "Authorization: Bearer"; NULL: none */
};
int derp_verify_url(void *ctx, const uint8_t nodekey[static KEY_LEN]);

#endif
