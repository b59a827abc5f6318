/* SPDX-License-Identifier: MIT */
/*
 * DERP client connection thread. States: backoff -> dial (blocking, with a
 * deadline) -> session (non-blocking poll loop over the socket and a wake
 * eventfd) -> backoff on any error. The send queue is shared with callers
 * under a mutex; the wake fd is written only when the queue goes from empty
 * to non-empty, so a burst of sends costs one syscall.
 */
#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <sodium.h>

#include "relay/derp_client.h"
#include "common/addr.h"
#include "common/log.h"
#include "common/util.h"
#include "relay/derp_frame.h"

enum {
	WBUF_FILL = 64 * 1024,
	RBUF_INIT = 128 * 1024,
	BACKOFF_MIN_MS = 100,
	BACKOFF_MAX_MS = 10000,
};

struct qent {
	uint8_t *frame;
	size_t len;
};

struct derp_client {
	struct derp_client_config cfg;
	char *host, *dial_addr;
	uint8_t priv[KEY_LEN], pub[KEY_LEN];
	uint8_t server_pub[KEY_LEN];
	SSL_CTX *ctx;
	pthread_t thread;
	bool running;
	atomic_bool stop;
	atomic_bool connected;
	atomic_bool preferred;
	atomic_bool preferred_dirty;
	atomic_int_fast64_t last_activity_ms;
	int wake_fd;
	pthread_mutex_t lock;		/* queue, stats, server_pub */
	pthread_cond_t cond;		/* queue space, connection state */
	struct qent q[DERP_CLIENT_QUEUE];
	unsigned qhead, qcount;
	bool wake_pending;
	struct derp_client_stats st;
	/* session state, thread-private */
	int fd;
	SSL *ssl;
	uint8_t *rbuf;
	size_t rlen, rcap;
	uint8_t *wbuf;
	size_t wlen, woff, wcap;
	bool read_wants_write;
	int64_t last_rx_ms, last_tx_ms;
	uint32_t restart_ms;
};

SSL_CTX *derp_client_tls_ctx(void)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());

	if (ctx == NULL)
		return NULL;
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	/* honours SSL_CERT_FILE / SSL_CERT_DIR */
	SSL_CTX_set_default_verify_paths(ctx);
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	return ctx;
}

/* ---- blocking dial ---- */

struct rd {
	int fd;
	SSL *ssl;
	uint8_t buf[8192];
	size_t len;
};

static int rd_fill(struct rd *r)
{
	ssize_t n;

	if (r->len == sizeof(r->buf))
		return ERR_TOO_LARGE;
	if (r->ssl) {
		n = SSL_read(r->ssl, r->buf + r->len, (int)(sizeof(r->buf) - r->len));
		if (n <= 0) {
			int e = SSL_get_error(r->ssl, (int)n);

			ERR_clear_error();
			return e == SSL_ERROR_ZERO_RETURN ? ERR_UNAVAILABLE :
			       errno == EAGAIN ? ERR_TIMEOUT : ERR_IO;
		}
	} else {
		n = read(r->fd, r->buf + r->len, sizeof(r->buf) - r->len);
		if (n == 0)
			return ERR_UNAVAILABLE;
		if (n < 0)
			return errno == EAGAIN ? ERR_TIMEOUT : ERR_IO;
	}
	r->len += (size_t)n;
	return 0;
}

static void rd_consume(struct rd *r, size_t n)
{
	memmove(r->buf, r->buf + n, r->len - n);
	r->len -= n;
}

/* Reads one frame whose payload fits the buffer. */
static int rd_frame(struct rd *r, uint8_t *type, uint8_t *payload, size_t cap, size_t *plen)
{
	uint32_t len;
	int e;

	for (;;) {
		if (r->len >= DERP_HEADER_LEN) {
			if (derp_frame_get_header(r->buf, type, &len, (uint32_t)cap) != 0)
				return ERR_PROTOCOL;
			if (r->len >= DERP_HEADER_LEN + len) {
				memcpy(payload, r->buf + DERP_HEADER_LEN, len);
				*plen = len;
				rd_consume(r, DERP_HEADER_LEN + len);
				return 0;
			}
		}
		if ((e = rd_fill(r)) != 0)
			return e;
	}
}

static int write_all(int fd, SSL *ssl, const void *p, size_t n)
{
	const uint8_t *b = p;

	while (n) {
		ssize_t w;

		if (ssl) {
			w = SSL_write(ssl, b, (int)n);
			if (w <= 0) {
				ERR_clear_error();
				return ERR_IO;
			}
		} else {
			w = send(fd, b, n, MSG_NOSIGNAL);
			if (w < 0) {
				if (errno == EINTR)
					continue;
				return ERR_IO;
			}
		}
		b += w;
		n -= (size_t)w;
	}
	return 0;
}

static _Atomic uint32_t conn_fwmark;

/* Why the calling thread's last dial failed (derp_client_dial_error). */
static _Thread_local char dial_why[256];

static void dial_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void dial_fail(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(dial_why, sizeof(dial_why), fmt, ap);
	va_end(ap);
}

const char *derp_client_dial_error(void)
{
	return dial_why;
}

void
derp_client_set_fwmark(uint32_t mark)
{
	atomic_store(&conn_fwmark, mark);
}

static int tcp_connect(const struct derp_client_config *cfg, int timeout_ms, int *out)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *res = NULL, *ai;
	char port[8];
	int fd = -1, r = ERR_IO;

	snprintf(port, sizeof(port), "%u", cfg->port ? cfg->port : 443);
	{
		const char *name = cfg->dial_addr ? cfg->dial_addr : cfg->host;
		int g = getaddrinfo(name, port, &hints, &res);

		if (g != 0) {
			dial_fail("cannot resolve %s: %s", name, gai_strerror(g));
			return ERR_IO;
		}
	}
	dial_fail("cannot connect to %s port %s", cfg->dial_addr ? cfg->dial_addr : cfg->host,
		  port);
	for (ai = res; ai; ai = ai->ai_next) {
		struct pollfd pf;
		int err = 0, one = 1;
		socklen_t el = sizeof(err);

		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (fd < 0)
			continue;
		{
			uint32_t mark = atomic_load(&conn_fwmark);

			if (mark && setsockopt(fd, SOL_SOCKET, SO_MARK, &mark, sizeof(mark)) != 0)
				log_debug("msg=\"cannot mark the relay socket\"");
		}
		if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0 && errno != EINPROGRESS) {
			dial_fail("cannot connect to %s port %s: %s", cfg->dial_addr ? cfg->dial_addr :
				  cfg->host, port, strerror(errno));
			goto next;
		}
		pf.fd = fd;
		pf.events = POLLOUT;
		if (poll(&pf, 1, timeout_ms) != 1) {
			dial_fail("cannot connect to %s port %s: no answer within %d ms", cfg->dial_addr ?
				  cfg->dial_addr : cfg->host, port, timeout_ms);
			r = ERR_TIMEOUT;
			goto next;
		}
		if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) < 0 || err != 0) {
			dial_fail("cannot connect to %s port %s: %s", cfg->dial_addr ? cfg->dial_addr :
				  cfg->host, port, strerror(err));
			goto next;
		}
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		*out = fd;
		freeaddrinfo(res);
		return 0;
next:
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	return r;
}

int derp_client_dial(const struct derp_client_config *cfg, SSL_CTX *ctx, int timeout_ms,
		     int *fdp, SSL **sslp, uint8_t server_pub[static KEY_LEN],
		     uint8_t **extra, size_t *extra_len)
{
	uint8_t priv[KEY_LEN], pub[KEY_LEN], payload[DERP_MAX_CLIENT_INFO], type;
	uint8_t challenge[DERP_CHALLENGE_LEN];
	struct timeval tv = { .tv_sec = timeout_ms / 1000, .tv_usec = (timeout_ms % 1000) * 1000 };
	struct rd *rd = NULL;
	char req[512];
	SSL *ssl = NULL;
	size_t plen;
	int fd = -1, n, r;
	uint8_t *hend;

	*fdp = -1;
	*sslp = NULL;
	*extra = NULL;
	*extra_len = 0;
	dial_why[0] = 0;
	if ((r = tcp_connect(cfg, timeout_ms, &fd)) != 0)
		return r;
	r = ERR_IO;
	if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK) < 0)
		goto out;
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (!cfg->plain) {
		struct ip_addr ip;

		if (ctx == NULL || (ssl = SSL_new(ctx)) == NULL || SSL_set_fd(ssl, fd) != 1)
			goto out;
		if (addr_parse(cfg->host, &ip) == 0) {
			X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), cfg->host);
		} else {
			SSL_set_tlsext_host_name(ssl, cfg->host);
			SSL_set1_host(ssl, cfg->host);
		}
		SSL_set_mode(ssl, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
			     SSL_MODE_RELEASE_BUFFERS);
		/* one read() for several records instead of two per record;
		 * session_read() drains what is read ahead before polling */
		SSL_set_read_ahead(ssl, 1);
		SSL_set_default_read_buffer_len(ssl, 64 * 1024);
		if (SSL_connect(ssl) != 1) {
			unsigned long e = ERR_get_error();
			long vr = SSL_get_verify_result(ssl);
			char msg[200];

			ERR_error_string_n(e, msg, sizeof(msg));
			if (vr != X509_V_OK)
				dial_fail("TLS handshake with %s failed: certificate not trusted (%s)",
					  cfg->host, X509_verify_cert_error_string(vr));
			else
				dial_fail("TLS handshake with %s failed: %s", cfg->host,
					  e ? msg : "connection closed");
			log_debug("msg=\"derp client: TLS handshake failed\" host=%s err=\"%s\"",
				  cfg->host, dial_why);
			ERR_clear_error();
			goto out;
		}
	}
	n = snprintf(req, sizeof(req), "GET /derp HTTP/1.1\r\nHost: %s\r\nUpgrade: DERP\r\n"
		     "Connection: Upgrade\r\nUser-Agent: wiremesh\r\n\r\n", cfg->host);
	if (n < 0 || (size_t)n >= sizeof(req) || write_all(fd, ssl, req, (size_t)n) != 0)
		goto out;
	rd = calloc(1, sizeof(*rd));
	if (rd == NULL) {
		r = ERR_NOMEM;
		goto out;
	}
	rd->fd = fd;
	rd->ssl = ssl;
	while ((hend = memmem(rd->buf, rd->len, "\r\n\r\n", 4)) == NULL) {
		if ((r = rd_fill(rd)) != 0)
			goto out;
	}
	r = ERR_PROTOCOL;
	if (rd->len < 12 || memcmp(rd->buf, "HTTP/1.1 101", 12) != 0) {
		size_t l = strcspn((const char *)rd->buf, "\r\n");

		dial_fail("%s did not upgrade to DERP: %.*s", cfg->host, (int)(l < 80 ? l : 80),
			  (const char *)rd->buf);
		goto out;
	}
	rd_consume(rd, (size_t)(hend - rd->buf) + 4);
	if ((r = rd_frame(rd, &type, payload, DERP_MAX_SERVER_KEY, &plen)) != 0)
		goto out;
	if (type != DERP_FRAME_SERVER_KEY ||
	    derp_server_key_parse(payload, plen, server_pub, challenge) != 0) {
		r = ERR_PROTOCOL;
		goto out;
	}
	memcpy(priv, cfg->node_private_key, KEY_LEN);
	crypto_scalarmult_base(pub, priv);
	n = derp_client_info_seal(payload + DERP_HEADER_LEN, sizeof(payload) - DERP_HEADER_LEN,
				  priv, pub, server_pub, challenge);
	sodium_memzero(priv, sizeof(priv));
	if (n < 0) {
		r = n;
		goto out;
	}
	derp_frame_put_header(payload, DERP_FRAME_CLIENT_INFO, (uint32_t)n);
	if ((r = write_all(fd, ssl, payload, DERP_HEADER_LEN + (size_t)n)) != 0)
		goto out;
	r = rd_frame(rd, &type, payload, DERP_MAX_SERVER_INFO, &plen);
	if (r == ERR_UNAVAILABLE || r == ERR_IO) {
		r = ERR_FORBIDDEN;	/* closed after ClientInfo: refused */
		dial_fail("%s refused this node (the relay admits only registered, unexpired nodes)",
			  cfg->host);
		goto out;
	}
	if (r != 0)
		goto out;
	memcpy(priv, cfg->node_private_key, KEY_LEN);
	if (type != DERP_FRAME_SERVER_INFO ||
	    derp_server_info_open(payload, plen, priv, server_pub) != 0) {
		sodium_memzero(priv, sizeof(priv));
		r = ERR_PROTOCOL;
		goto out;
	}
	sodium_memzero(priv, sizeof(priv));
	if (rd->len) {
		*extra = malloc(rd->len);
		if (*extra == NULL) {
			r = ERR_NOMEM;
			goto out;
		}
		memcpy(*extra, rd->buf, rd->len);
		*extra_len = rd->len;
	}
	*fdp = fd;
	*sslp = ssl;
	fd = -1;
	ssl = NULL;
	r = 0;
out:
	free(rd);
	SSL_free(ssl);
	if (fd >= 0)
		close(fd);
	return r;
}

/* ---- the connection thread ---- */

struct derp_client *derp_client_new(const struct derp_client_config *cfg)
{
	struct derp_client *c;

	if (cfg->host == NULL || cfg->node_private_key == NULL)
		return NULL;
	c = calloc(1, sizeof(*c));
	if (c == NULL)
		return NULL;
	c->cfg = *cfg;
	c->host = strdup(cfg->host);
	c->dial_addr = cfg->dial_addr ? strdup(cfg->dial_addr) : NULL;
	c->cfg.host = c->host;
	c->cfg.dial_addr = c->dial_addr;
	memcpy(c->priv, cfg->node_private_key, KEY_LEN);
	crypto_scalarmult_base(c->pub, c->priv);
	c->cfg.node_private_key = c->priv;
	atomic_store(&c->preferred, cfg->preferred);
	c->fd = -1;
	c->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	pthread_mutex_init(&c->lock, NULL);
	pthread_cond_init(&c->cond, NULL);
	atomic_store(&c->last_activity_ms, time_mono_ms());
	if (!cfg->plain)
		c->ctx = derp_client_tls_ctx();
	if (c->host == NULL || (cfg->dial_addr && !c->dial_addr) || c->wake_fd < 0 ||
	    (!cfg->plain && c->ctx == NULL)) {
		derp_client_free(c);
		return NULL;
	}
	return c;
}

static void wake(struct derp_client *c)
{
	uint64_t one = 1;

	if (write(c->wake_fd, &one, sizeof(one)) < 0)
		log_debug("msg=\"derp client: wake failed\"");
}

/* Sleeps up to ms, returning early when stopped. */
static void nap(struct derp_client *c, int ms)
{
	struct pollfd pf = { .fd = c->wake_fd, .events = POLLIN };
	int64_t end = time_mono_ms() + ms;

	while (!atomic_load(&c->stop)) {
		int64_t left = end - time_mono_ms();
		uint64_t v;

		if (left <= 0)
			return;
		if (poll(&pf, 1, (int)left) > 0 && read(c->wake_fd, &v, sizeof(v)) < 0)
			continue;
	}
}

static int wbuf_add(struct derp_client *c, const uint8_t *p, size_t n)
{
	if (c->wlen + n > c->wcap) {
		size_t cap = c->wcap ? c->wcap : 4096;
		uint8_t *np;

		while (cap < c->wlen + n)
			cap *= 2;
		np = realloc(c->wbuf, cap);
		if (np == NULL)
			return ERR_NOMEM;
		c->wbuf = np;
		c->wcap = cap;
	}
	memcpy(c->wbuf + c->wlen, p, n);
	c->wlen += n;
	return 0;
}

static int control_frame(struct derp_client *c, uint8_t type, const void *p, size_t n)
{
	uint8_t hdr[DERP_HEADER_LEN];

	derp_frame_put_header(hdr, type, (uint32_t)n);
	if (wbuf_add(c, hdr, sizeof(hdr)) != 0 || (n && wbuf_add(c, p, n) != 0))
		return ERR_NOMEM;
	return 0;
}

/* Writes what is buffered, refilling from the queue. 0 or ERR_IO. */
static int session_write(struct derp_client *c)
{
	for (;;) {
		int w;

		if (c->woff == c->wlen) {
			c->woff = c->wlen = 0;
			pthread_mutex_lock(&c->lock);
			while (c->qcount && c->wlen < WBUF_FILL) {
				struct qent *e = &c->q[c->qhead];

				if (wbuf_add(c, e->frame, e->len) != 0)
					break;
				c->st.packets_sent++;
				c->st.bytes_sent += e->len - DERP_HEADER_LEN - KEY_LEN;
				free(e->frame);
				e->frame = NULL;
				c->qhead = (c->qhead + 1) % DERP_CLIENT_QUEUE;
				c->qcount--;
			}
			c->wake_pending = false;
			pthread_cond_broadcast(&c->cond);
			pthread_mutex_unlock(&c->lock);
			if (c->wlen == 0)
				return 0;
			c->last_tx_ms = time_mono_ms();
		}
		if (c->ssl) {
			w = SSL_write(c->ssl, c->wbuf + c->woff, (int)(c->wlen - c->woff));
			if (w <= 0) {
				int e = SSL_get_error(c->ssl, w);

				if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ)
					return 0;
				ERR_clear_error();
				return ERR_IO;
			}
		} else {
			ssize_t sw = send(c->fd, c->wbuf + c->woff, c->wlen - c->woff,
					  MSG_NOSIGNAL | MSG_DONTWAIT);

			if (sw < 0)
				return errno == EAGAIN || errno == EINTR ? 0 : ERR_IO;
			w = (int)sw;
		}
		c->woff += (size_t)w;
	}
}

static int on_frame(struct derp_client *c, uint8_t type, const uint8_t *p, uint32_t len)
{
	switch (type) {
	case DERP_FRAME_RECV_PACKET:
		if (len < KEY_LEN)
			return ERR_PROTOCOL;
		pthread_mutex_lock(&c->lock);
		c->st.packets_recv++;
		c->st.bytes_recv += len - KEY_LEN;
		pthread_mutex_unlock(&c->lock);
		atomic_store(&c->last_activity_ms, time_mono_ms());
		if (c->cfg.cb.recv)
			c->cfg.cb.recv(c->cfg.cb.ctx, p, p + KEY_LEN, len - KEY_LEN);
		break;
	case DERP_FRAME_PEER_GONE:
		if (len >= KEY_LEN && c->cfg.cb.peer_gone)
			c->cfg.cb.peer_gone(c->cfg.cb.ctx, p, len > KEY_LEN ? p[KEY_LEN] : 0);
		break;
	case DERP_FRAME_PING:
		if (len >= DERP_PING_LEN)
			return control_frame(c, DERP_FRAME_PONG, p, DERP_PING_LEN);
		break;
	case DERP_FRAME_HEALTH:
		if (len)
			log_warn("msg=\"derp: relay reports a problem\" host=%s", c->host);
		break;
	case DERP_FRAME_RESTARTING:
		if (len >= 4)
			c->restart_ms = (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
					(uint32_t)p[2] << 8 | p[3];
		return ERR_UNAVAILABLE;
	default:
		break;		/* keepalive, pong, unknown */
	}
	return 0;
}

/* Handles every complete frame in rbuf. */
static int process_rbuf(struct derp_client *c)
{
	size_t off = 0;
	int r = 0;

	while (c->rlen - off >= DERP_HEADER_LEN) {
		uint8_t type;
		uint32_t len;

		if (derp_frame_get_header(c->rbuf + off, &type, &len, DERP_MAX_FRAME_TO_CLIENT) != 0) {
			r = ERR_PROTOCOL;
			break;
		}
		if (c->rlen - off - DERP_HEADER_LEN < len) {
			if (DERP_HEADER_LEN + (size_t)len > c->rcap) {
				uint8_t *nb;

				memmove(c->rbuf, c->rbuf + off, c->rlen - off);
				c->rlen -= off;
				off = 0;
				nb = realloc(c->rbuf, DERP_HEADER_LEN + (size_t)len);
				if (nb == NULL)
					return ERR_NOMEM;
				c->rbuf = nb;
				c->rcap = DERP_HEADER_LEN + (size_t)len;
			}
			break;
		}
		if ((r = on_frame(c, type, c->rbuf + off + DERP_HEADER_LEN, len)) != 0)
			break;
		off += DERP_HEADER_LEN + len;
	}
	memmove(c->rbuf, c->rbuf + off, c->rlen - off);
	c->rlen -= off;
	return r;
}

static int session_read(struct derp_client *c)
{
	for (;;) {
		ssize_t n;
		int r;

		if (c->rlen == c->rcap)
			return ERR_PROTOCOL;
		if (c->ssl) {
			c->read_wants_write = false;
			n = SSL_read(c->ssl, c->rbuf + c->rlen, (int)(c->rcap - c->rlen));
			if (n <= 0) {
				int e = SSL_get_error(c->ssl, (int)n);

				if (e == SSL_ERROR_WANT_READ)
					return 0;
				if (e == SSL_ERROR_WANT_WRITE) {
					c->read_wants_write = true;
					return 0;
				}
				ERR_clear_error();
				return ERR_IO;
			}
		} else {
			n = recv(c->fd, c->rbuf + c->rlen, c->rcap - c->rlen, MSG_DONTWAIT);
			if (n == 0)
				return ERR_IO;
			if (n < 0)
				return errno == EAGAIN || errno == EINTR ? 0 : ERR_IO;
		}
		c->rlen += (size_t)n;
		c->last_rx_ms = time_mono_ms();
		if ((r = process_rbuf(c)) != 0)
			return r;
	}
}

static void session_end(struct derp_client *c)
{
	if (atomic_exchange(&c->connected, false)) {
		pthread_mutex_lock(&c->lock);
		c->st.disconnects++;
		pthread_cond_broadcast(&c->cond);
		pthread_mutex_unlock(&c->lock);
		if (c->cfg.cb.state)
			c->cfg.cb.state(c->cfg.cb.ctx, false);
	}
	SSL_free(c->ssl);
	c->ssl = NULL;
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	c->rlen = c->wlen = c->woff = 0;
}

static int session(struct derp_client *c, uint8_t *extra, size_t extra_len)
{
	int r = 0;

	if (fcntl(c->fd, F_SETFL, fcntl(c->fd, F_GETFL) | O_NONBLOCK) < 0)
		return ERR_IO;
	if (c->rbuf == NULL) {
		c->rbuf = malloc(RBUF_INIT);
		if (c->rbuf == NULL)
			return ERR_NOMEM;
		c->rcap = RBUF_INIT;
	}
	c->rlen = 0;
	if (extra_len > c->rcap)
		return ERR_PROTOCOL;
	if (extra_len)
		memcpy(c->rbuf, extra, extra_len);
	c->rlen = extra_len;
	c->last_rx_ms = c->last_tx_ms = time_mono_ms();
	atomic_store(&c->preferred_dirty, true);
	pthread_mutex_lock(&c->lock);
	c->st.connects++;
	pthread_cond_broadcast(&c->cond);
	pthread_mutex_unlock(&c->lock);
	atomic_store(&c->connected, true);
	if (c->cfg.cb.state)
		c->cfg.cb.state(c->cfg.cb.ctx, true);
	/* frames that arrived with ServerInfo */
	if ((r = process_rbuf(c)) != 0)
		return r;
	while (!atomic_load(&c->stop)) {
		struct pollfd pf[2] = { { .fd = c->fd, .events = POLLIN },
					{ .fd = c->wake_fd, .events = POLLIN } };
		int64_t now = time_mono_ms();
		int timeout;
		uint64_t v;

		if (atomic_exchange(&c->preferred_dirty, false)) {
			uint8_t b = atomic_load(&c->preferred) ? 1 : 0;

			if ((r = control_frame(c, DERP_FRAME_NOTE_PREFERRED, &b, 1)) != 0)
				break;
		}
		if (now - c->last_rx_ms > DERP_CLIENT_READ_TIMEOUT_MS) {
			log_info("msg=\"derp client: relay silent, reconnecting\" host=%s", c->host);
			r = ERR_TIMEOUT;
			break;
		}
		if (now - c->last_tx_ms > DERP_CLIENT_PING_IDLE_MS &&
		    now - c->last_rx_ms > DERP_CLIENT_PING_IDLE_MS) {
			uint8_t ping[DERP_PING_LEN];

			random_bytes(ping, sizeof(ping));
			if ((r = control_frame(c, DERP_FRAME_PING, ping, sizeof(ping))) != 0)
				break;
			c->last_tx_ms = now;
		}
		if ((r = session_write(c)) != 0 || (r = session_read(c)) != 0 ||
		    (r = session_write(c)) != 0)
			break;
		if (c->woff < c->wlen || c->read_wants_write)
			pf[0].events |= POLLOUT;
		timeout = 1000;
		if (poll(pf, 2, timeout) < 0 && errno != EINTR) {
			r = ERR_IO;
			break;
		}
		if (pf[1].revents && read(c->wake_fd, &v, sizeof(v)) < 0)
			continue;
	}
	return r;
}

static void *client_main(void *arg)
{
	struct derp_client *c = arg;
	int attempt = 0;
	char last[sizeof(dial_why) + 32] = "";

	while (!atomic_load(&c->stop)) {
		uint8_t *extra = NULL;
		size_t extra_len = 0;
		int r;

		r = derp_client_dial(&c->cfg, c->ctx, DERP_CLIENT_DIAL_TIMEOUT_MS, &c->fd, &c->ssl,
				     c->server_pub, &extra, &extra_len);
		if (r == 0) {
			if (last[0])
				log_info("msg=\"derp client: connected\" host=%s", c->host);
			last[0] = 0;
			attempt = 0;
			c->restart_ms = 0;
			r = session(c, extra, extra_len);
			free(extra);
			session_end(c);
			if (atomic_load(&c->stop))
				break;
			log_info("msg=\"derp client: disconnected\" host=%s err=\"%s\"", c->host,
				 err_str(r));
		} else {
			/* why, at info once per distinct reason; repeats at debug */
			char why[sizeof(dial_why) + 32];

			snprintf(why, sizeof(why), "%s", dial_why[0] ? dial_why : err_str(r));
			if (strcmp(why, last) != 0)
				log_info("msg=\"derp client: cannot connect to the relay; retrying\" "
					 "host=%s why=\"%s\"", c->host, why);
			else
				log_debug("msg=\"derp client: dial failed\" host=%s why=\"%s\"",
					  c->host, why);
			snprintf(last, sizeof(last), "%s", why);
		}
		{
			int64_t base = BACKOFF_MIN_MS << (attempt < 7 ? attempt : 7);

			if (base > BACKOFF_MAX_MS)
				base = BACKOFF_MAX_MS;
			if (c->restart_ms)
				base = c->restart_ms;
			/* jitter: 50 % .. 150 % so a relay restart is not a thundering herd */
			nap(c, (int)(base / 2 + random_u32((uint32_t)base + 1)));
			attempt++;
		}
	}
	return NULL;
}

int derp_client_start(struct derp_client *c)
{
	if (c->running)
		return ERR_INVALID;
	if (pthread_create(&c->thread, NULL, client_main, c) != 0)
		return ERR_INTERNAL;
	c->running = true;
	return 0;
}

static int enqueue(struct derp_client *c, const uint8_t dst[static KEY_LEN], const void *pkt,
		   size_t n, int timeout_ms)
{
	uint8_t *f;
	bool kick = false;

	if (n > DERP_MAX_PACKET)
		return ERR_TOO_LARGE;
	f = malloc(DERP_HEADER_LEN + KEY_LEN + n);
	if (f == NULL)
		return ERR_NOMEM;
	derp_frame_put_header(f, DERP_FRAME_SEND_PACKET, (uint32_t)(KEY_LEN + n));
	memcpy(f + DERP_HEADER_LEN, dst, KEY_LEN);
	memcpy(f + DERP_HEADER_LEN + KEY_LEN, pkt, n);
	pthread_mutex_lock(&c->lock);
	if (c->qcount == DERP_CLIENT_QUEUE && timeout_ms > 0) {
		struct timespec ts;

		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += timeout_ms / 1000;
		ts.tv_nsec += (long)(timeout_ms % 1000) * 1000000;
		if (ts.tv_nsec >= 1000000000) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000;
		}
		while (c->qcount == DERP_CLIENT_QUEUE && !atomic_load(&c->stop))
			if (pthread_cond_timedwait(&c->cond, &c->lock, &ts) != 0)
				break;
	}
	if (c->qcount == DERP_CLIENT_QUEUE) {
		c->st.dropped_queue_full++;
		pthread_mutex_unlock(&c->lock);
		free(f);
		return ERR_EXHAUSTED;
	}
	c->q[(c->qhead + c->qcount) % DERP_CLIENT_QUEUE] = (struct qent){ f, DERP_HEADER_LEN + KEY_LEN + n };
	c->qcount++;
	if (!c->wake_pending) {
		c->wake_pending = true;
		kick = true;
	}
	pthread_mutex_unlock(&c->lock);
	atomic_store(&c->last_activity_ms, time_mono_ms());
	if (kick)
		wake(c);
	return 0;
}

int derp_client_send(struct derp_client *c, const uint8_t dst[static KEY_LEN], const void *pkt, size_t n)
{
	return enqueue(c, dst, pkt, n, 0);
}

int derp_client_send_wait(struct derp_client *c, const uint8_t dst[static KEY_LEN],
			  const void *pkt, size_t n, int timeout_ms)
{
	return enqueue(c, dst, pkt, n, timeout_ms);
}

void derp_client_note_preferred(struct derp_client *c, bool preferred)
{
	atomic_store(&c->preferred, preferred);
	atomic_store(&c->preferred_dirty, true);
	wake(c);
}

bool derp_client_connected(const struct derp_client *c)
{
	return atomic_load(&((struct derp_client *)c)->connected);
}

int derp_client_wait_connected(struct derp_client *c, int timeout_ms)
{
	int64_t end = time_mono_ms() + timeout_ms;

	pthread_mutex_lock(&c->lock);
	while (!atomic_load(&c->connected)) {
		struct timespec ts;
		int64_t left = end - time_mono_ms();

		if (left <= 0)
			break;
		if (left > 100)
			left = 100;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += (long)left * 1000000;
		ts.tv_sec += ts.tv_nsec / 1000000000;
		ts.tv_nsec %= 1000000000;
		pthread_cond_timedwait(&c->cond, &c->lock, &ts);
	}
	pthread_mutex_unlock(&c->lock);
	return atomic_load(&c->connected) ? 0 : ERR_TIMEOUT;
}

int64_t derp_client_idle_ms(const struct derp_client *c)
{
	return time_mono_ms() - atomic_load(&((struct derp_client *)c)->last_activity_ms);
}

int derp_client_server_key(const struct derp_client *c, uint8_t out[static KEY_LEN])
{
	if (!derp_client_connected(c))
		return ERR_UNAVAILABLE;
	memcpy(out, c->server_pub, KEY_LEN);
	return 0;
}

void derp_client_stats(const struct derp_client *c, struct derp_client_stats *out)
{
	pthread_mutex_lock((pthread_mutex_t *)&c->lock);
	*out = c->st;
	pthread_mutex_unlock((pthread_mutex_t *)&c->lock);
}

void derp_client_free(struct derp_client *c)
{
	if (c == NULL)
		return;
	if (c->running) {
		atomic_store(&c->stop, true);
		pthread_mutex_lock(&c->lock);
		pthread_cond_broadcast(&c->cond);
		pthread_mutex_unlock(&c->lock);
		wake(c);
		pthread_join(c->thread, NULL);
	}
	while (c->qcount) {
		free(c->q[c->qhead].frame);
		c->qhead = (c->qhead + 1) % DERP_CLIENT_QUEUE;
		c->qcount--;
	}
	if (c->wake_fd >= 0)
		close(c->wake_fd);
	pthread_mutex_destroy(&c->lock);
	pthread_cond_destroy(&c->cond);
	SSL_CTX_free(c->ctx);
	sodium_memzero(c->priv, sizeof(c->priv));
	free(c->rbuf);
	free(c->wbuf);
	free(c->host);
	free(c->dial_addr);
	free(c);
}
