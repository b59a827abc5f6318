/* SPDX-License-Identifier: MIT */
/*
 * The HTTP layer: the only module that includes microhttpd.h. It accepts
 * connections (TLS when given a certificate), collects bounded request
 * bodies, hands complete requests to one dispatch function, and sends either
 * a whole response or a stream fed by a reader that may run dry (the
 * connection is then suspended until http_stream_wake()), or switches the
 * connection to another protocol (101 + an upgrade callback, for /derp).
 */
#ifndef WM_HTTP_H
#define WM_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/buf.h"
#include "common/err.h"

struct http;
struct http_stream;
struct http_upgrade;

struct http_request {
	const char *method;
	const char *path;	/* without the query string */
	struct buf body;
	bool too_large;
	void *conn;		/* private to http.c */
	int64_t start_ns;
	char client[64];	/* client address, for logs */
};

/* A streaming body. read() fills buf with up to max bytes and returns the
 * count, 0 when nothing is ready now (the connection is suspended until
 * http_stream_wake), or -1 to end the response. attach() is called once
 * with the handle before the first read; close() once when the connection
 * ends, after which the handle is gone. Called on HTTP threads. */
struct http_stream_ops {
	void (*attach)(void *ctx, struct http_stream *hs);
	ssize_t (*read)(void *ctx, char *buf, size_t max);
	void (*close)(void *ctx);
};

/*
 * Called once on an HTTP thread after a 101 answer went out: `fd` now carries
 * the new protocol (with TLS it is a local socketpair whose other end http.c
 * proxies through the TLS session, so only read/write/poll it); `extra`
 * holds `n` bytes the client sent after the request head, to be treated as
 * read from fd. With TLS the proxy does not pass the client's hangup on, so
 * `hup_fd` is the client's TCP socket, to be watched for EPOLLRDHUP and
 * nothing else (never read, written or closed); -1 without TLS, where fd
 * itself shows the hangup. The callee owns the connection from here: it
 * must call http_upgrade_close(u) exactly once (any thread) when done, and
 * must never close(fd) itself. Must not block.
 */
typedef void (*http_upgrade_fn)(void *ctx, struct http_upgrade *u, int fd, int hup_fd,
				const void *extra, size_t n);

enum { HTTP_MAX_HEADERS = 6 };

struct http_response {
	int status;
	char *body;		/* malloc'd, owned by the response */
	size_t len;
	const char *content_type;
	const char *hdr_name[HTTP_MAX_HEADERS];
	char *hdr_value[HTTP_MAX_HEADERS];	/* malloc'd */
	int nhdr;
	const struct http_stream_ops *stream_ops;	/* set for a stream */
	void *stream_ctx;
	http_upgrade_fn upgrade;	/* set with status 101 and an Upgrade header */
	void *upgrade_ctx;
};

typedef void (*http_dispatch_fn)(void *ctx, struct http_request *req,
				 struct http_response *resp);

/* Called once the request head is in, before any body is read (and before
 * a "100 Continue" goes out): the most body bytes this request may send,
 * decided from its method, path and credentials (req->method, path, conn
 * and client are set; http_header() works). A declared Content-Length over
 * it is answered 413 at once; a body that grows past it ends in 413 as soon
 * as it does. Called on HTTP threads. */
typedef size_t (*http_body_limit_fn)(void *ctx, struct http_request *req);

struct http_config {
	const char *listen;	/* "host:port", "[v6]:port" or ":port" */
	const char *tls_cert_path;	/* NULL: plain HTTP */
	const char *tls_key_path;
	bool tls_reloadable;	/* certificate replaceable by http_reload_cert (ACME) */
	bool tls_cert_later;	/* tls_reloadable: start without a certificate if
				 * there is none yet (TLS-ALPN-01 issues the first
				 * one through this listener); handshakes fail
				 * until http_reload_cert */
	size_t max_body;	/* limit for request bodies without body_limit */
	http_body_limit_fn body_limit;	/* NULL: max_body for every request */
	unsigned threads;	/* polling threads */
	unsigned max_connections;	/* clamped to leave file descriptors spare */
	int64_t stream_keepalive_s;	/* streams write at least this often (dead-link timeouts) */
	unsigned max_per_ip;	/* connections per client address; 0: no limit.
				 * Loopback is exempt (a local reverse proxy). */
	unsigned request_timeout_s;	/* a request's head and body must arrive
					 * within this long of the connection
					 * opening or the previous response; 0: 30 */
	unsigned idle_timeout_s;	/* no byte in this long closes it; 0: 120 */
	http_dispatch_fn dispatch;
	void *ctx;
};

/* Why the calling thread's last http_start failed ("cannot read the TLS
 * certificate F: No such file or directory", "cannot listen on A: ..."). */
const char *http_start_error(void);
int http_start(const struct http_config *cfg, struct http **out) WM_MUST_CHECK;
void http_stop(struct http *h);
/* Rereads tls_cert_path and tls_key_path (tls_reloadable): new handshakes
 * use them, open connections keep theirs. */
int http_reload_cert(struct http *h, char *why, size_t whylen) WM_MUST_CHECK;
/* The port actually bound (useful with port 0). */
int http_port(const struct http *h);

/* Thread-safe: data is ready for this stream. */
void http_stream_wake(struct http_stream *hs);
/* Ends the streams whose client hung up. MHD does not watch a suspended
 * connection, so without this a vanished client is noticed only when a
 * write fails, one to two keepalive intervals later. One poll() over every
 * sleeping stream's socket; call it about once a second. Returns how many
 * streams it ended. */
size_t http_reap_closed(struct http *h);
/* Closes the connections whose request did not arrive in time
 * (request_timeout_s: slow headers or bodies). Call it about once a second;
 * returns how many it closed. */
size_t http_reap_slow(struct http *h);
/* The connection limit in force (max_connections after clamping). */
unsigned http_max_connections(const struct http *h);

struct http_stats {
	uint64_t refused_per_ip;	/* connections over max_per_ip */
	uint64_t slow_closed;		/* requests not in within request_timeout_s */
	uint64_t too_large;		/* 413 before or while reading a body */
	uint64_t bad_framing;		/* conflicting Content-Length/Transfer-Encoding */
	uint64_t library_messages;	/* libmicrohttpd log messages (logged: 5 per 10 s) */
};
void http_get_stats(struct http *h, struct http_stats *out);

/* Ends an upgraded connection (see http_upgrade_fn); thread-safe. */
void http_upgrade_close(struct http_upgrade *u);

/* Borrowed strings, valid while the request is being handled. */
const char *http_header(struct http_request *req, const char *name);
const char *http_query(struct http_request *req, const char *name);

/* Response helpers. */
void http_set_body(struct http_response *resp, int status, const char *ctype,
		   char *body, size_t len);		/* takes ownership of body */
int http_add_header(struct http_response *resp, const char *name, const char *value);
/* RFC 7807 problem+json. */
void http_problem(struct http_response *resp, int status, const char *title,
		  const char *fmt, ...) __attribute__((format(printf, 4, 5)));
/* Problem from an error code, with the status from err_http_status(). */
void http_problem_err(struct http_response *resp, int err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
void http_response_cleanup(struct http_response *resp);

#endif
