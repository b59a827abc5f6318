// SPDX-License-Identifier: MIT
/*
 * libmicrohttpd glue. Runs MHD's internal polling threads with epoll and
 * suspend/resume. A stream reader that runs dry suspends its connection; a
 * wake that arrives between the empty read and the suspend is remembered in
 * `pending` so it is never lost. Upgraded connections (MHD_ALLOW_UPGRADE)
 * are handed to the dispatcher's callback. Under TLS, MHD proxies them
 * through a socketpair and (0.9.75, epoll) neither passes the client's
 * hangup on to the application nor closes the TLS side promptly when the
 * application is done; the callback gets the client's socket to watch, and
 * http_upgrade_close() sends the client a FIN itself.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>

#include <jansson.h>
#include <microhttpd.h>

#include "common/addr.h"
#include "common/log.h"
#include "common/util.h"
#include "server/http.h"
#include "server/tlsreload.h"

/* One TCP connection, from MHD's connect notification to its close. */
struct conn {
	struct conn *prev, *next;	/* h->conns, under h->conns_lock */
	int fd;
	uint8_t ip[16];		/* IPv4, or the /64 of an IPv6 address */
	bool counted;		/* in the per-address table */
	bool upgraded;
	int64_t deadline_ms;	/* the request must be in by then; 0: none */
};

enum { IP_BUCKETS = 4096 };

struct ipcount {
	struct ipcount *next;
	uint8_t ip[16];
	unsigned n;
};

struct http {
	struct MHD_Daemon *d;
	struct http_config cfg;
	char *cert_pem, *key_pem;
	int port;
	/* Connections, for the request deadline and the per-address limit. */
	pthread_mutex_t conns_lock;
	struct conn *conns;
	struct ipcount *ips[IP_BUCKETS];
	pthread_mutex_t log_lock;
	struct log_ratelimit log_rl;
	atomic_ulong stats_refused_per_ip, stats_slow_closed, stats_mhd_messages,
	    stats_too_large, stats_bad_framing;
	/* Every live stream, so that http_stop() can resume the suspended
	 * ones: MHD refuses to stop with suspended connections. */
	pthread_mutex_t streams_lock;
	struct http_stream *streams;
	bool stopping;
};

struct http_stream {
	pthread_mutex_t lock;
	struct http *h;
	struct http_stream *prev, *next;	/* h->streams, under h->streams_lock */
	struct MHD_Connection *conn;
	const struct http_stream_ops *ops;
	void *ctx;
	bool suspended;
	bool pending;
	bool gone;		/* the client hung up: end at the next read */
};

static const char *
reason(int status)
{
	switch (status) {
	case 400: return "Bad Request";
	case 401: return "Unauthorized";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 409: return "Conflict";
	case 412: return "Precondition Failed";
	case 413: return "Content Too Large";
	case 422: return "Unprocessable Entity";
	case 426: return "Upgrade Required";
	case 503: return "Service Unavailable";
	case 504: return "Gateway Timeout";
	default: return status >= 500 ? "Internal Server Error" : "Error";
	}
}

void
http_set_body(struct http_response *resp, int status, const char *ctype, char *body, size_t len)
{
	free(resp->body);
	resp->status = status;
	resp->content_type = ctype;
	resp->body = body;
	resp->len = len;
}

int
http_add_header(struct http_response *resp, const char *name, const char *value)
{
	char *v;

	if (resp->nhdr >= HTTP_MAX_HEADERS || (v = strdup(value)) == NULL)
		return ERR_NOMEM;
	resp->hdr_name[resp->nhdr] = name;
	resp->hdr_value[resp->nhdr++] = v;
	return 0;
}

static void __attribute__((format(printf, 4, 0)))
vproblem(struct http_response *resp, int status, const char *title, const char *fmt, va_list ap)
{
	char detail[1024];
	json_t *o;
	char *s;

	vsnprintf(detail, sizeof(detail), fmt, ap);
	o = json_pack("{s:s, s:s, s:i, s:s}", "type", "about:blank",
	    "title", title ? title : reason(status), "status", status, "detail", detail);
	if (o == NULL) {
		/* The detail quotes client input that is not UTF-8 (or was cut
		 * inside a character): keep the problem, mask those bytes. */
		for (char *p = detail; *p; p++)
			if ((unsigned char)*p >= 0x80)
				*p = '?';
		o = json_pack("{s:s, s:s, s:i, s:s}", "type", "about:blank",
		    "title", title ? title : reason(status), "status", status, "detail", detail);
	}
	s = o ? json_dumps(o, JSON_COMPACT) : NULL;
	json_decref(o);
	if (s == NULL) {
		http_set_body(resp, 500, "text/plain", NULL, 0);
		return;
	}
	http_set_body(resp, status, "application/problem+json", s, strlen(s));
}

void
http_problem(struct http_response *resp, int status, const char *title, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vproblem(resp, status, title, fmt, ap);
	va_end(ap);
}

void
http_problem_err(struct http_response *resp, int err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vproblem(resp, err_http_status(err), NULL, fmt, ap);
	va_end(ap);
}

void
http_response_cleanup(struct http_response *resp)
{
	free(resp->body);
	for (int i = 0; i < resp->nhdr; i++)
		free(resp->hdr_value[i]);
	memset(resp, 0, sizeof(*resp));
}

const char *
http_header(struct http_request *req, const char *name)
{
	if (req->conn == NULL)
		return NULL;	/* a request made up in-process (fuzz targets) */
	return MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, name);
}

const char *
http_query(struct http_request *req, const char *name)
{
	return MHD_lookup_connection_value(req->conn, MHD_GET_ARGUMENT_KIND, name);
}

/* ---- streams ---- */

void
http_stream_wake(struct http_stream *hs)
{
	pthread_mutex_lock(&hs->lock);
	if (hs->suspended) {
		hs->suspended = false;
		MHD_resume_connection(hs->conn);
	} else {
		hs->pending = true;
	}
	pthread_mutex_unlock(&hs->lock);
}

/*
 * A link that died without a FIN or reset (power loss, a cut cable): data
 * the server sent (at least the keepalive it writes every interval) stays
 * unacknowledged and no ACK has come for keepalive + 3 s. A reader that is
 * alive but not reading (zero window) has nothing in flight and answers
 * the kernel's window probes, so it is never taken for dead; one whose link
 * dies while its window is closed leaves two probes unanswered.
 */
static bool
link_dead(const struct http *h, int fd)
{
	struct tcp_info ti;
	socklen_t len = sizeof(ti);
	int64_t k = h->cfg.stream_keepalive_s > 0 ? h->cfg.stream_keepalive_s : 10;

	memset(&ti, 0, sizeof(ti));
	if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) != 0)
		return false;
	if ((int64_t)ti.tcpi_last_ack_recv <= (k + 3) * 1000)
		return false;
	return ti.tcpi_unacked > 0 || ti.tcpi_probes >= 2;
}

size_t
http_reap_closed(struct http *h)
{
	struct pollfd *pfd = NULL;
	struct http_stream **hv = NULL;
	bool *dead = NULL;
	size_t n = 0, k = 0, reaped = 0;

	if (h == NULL)
		return 0;
	pthread_mutex_lock(&h->streams_lock);
	for (struct http_stream *hs = h->streams; hs; hs = hs->next)
		n++;
	if (n == 0 || (pfd = calloc(n, sizeof(*pfd))) == NULL ||
	    (hv = calloc(n, sizeof(*hv))) == NULL || (dead = calloc(n, sizeof(*dead))) == NULL)
		goto out;
	/* A stream stays on the list, and its socket open, until MHD frees
	 * its response, which needs streams_lock: the fds are stable here.
	 * Sleeping streams are polled for a hangup (MHD does not watch them);
	 * every stream's socket is checked for a dead link. */
	for (struct http_stream *hs = h->streams; hs && k < n; hs = hs->next) {
		const union MHD_ConnectionInfo *ci = MHD_get_connection_info(hs->conn,
		    MHD_CONNECTION_INFO_CONNECTION_FD);

		if (ci == NULL)
			continue;
		pthread_mutex_lock(&hs->lock);
		pfd[k].fd = hs->suspended ? ci->connect_fd : -1;	/* poll skips -1 */
		pfd[k].events = POLLRDHUP;
		dead[k] = link_dead(h, ci->connect_fd);
		if (dead[k] && !hs->suspended)
			shutdown(ci->connect_fd, SHUT_RDWR);	/* MHD sees it and closes */
		hv[k++] = hs;
		pthread_mutex_unlock(&hs->lock);
	}
	if (k == 0 || poll(pfd, (nfds_t)k, 0) < 0)
		goto out;
	for (size_t i = 0; i < k; i++) {
		if (!dead[i] && !(pfd[i].revents & (POLLRDHUP | POLLHUP | POLLERR)))
			continue;
		if (dead[i])
			log_debug("msg=\"map stream link dead (nothing acknowledged)\"");
		pthread_mutex_lock(&hv[i]->lock);
		__atomic_store_n(&hv[i]->gone, true, __ATOMIC_RELEASE);
		if (hv[i]->suspended) {
			hv[i]->suspended = false;
			MHD_resume_connection(hv[i]->conn);
		}
		pthread_mutex_unlock(&hv[i]->lock);
		reaped++;
	}
out:
	pthread_mutex_unlock(&h->streams_lock);
	free(pfd);
	free(hv);
	free(dead);
	return reaped;
}

static ssize_t
stream_read(void *cls, uint64_t pos, char *buf, size_t max)
{
	struct http_stream *hs = cls;
	ssize_t n;

	if (__atomic_load_n(&hs->h->stopping, __ATOMIC_ACQUIRE))
		return MHD_CONTENT_READER_END_OF_STREAM;
	if (__atomic_load_n(&hs->gone, __ATOMIC_ACQUIRE))
		return MHD_CONTENT_READER_END_WITH_ERROR;
	n = hs->ops->read(hs->ctx, buf, max);
	if (n < 0)
		return MHD_CONTENT_READER_END_OF_STREAM;
	if (n > 0)
		return n;
	pthread_mutex_lock(&hs->lock);
	if (__atomic_load_n(&hs->h->stopping, __ATOMIC_ACQUIRE)) {
		pthread_mutex_unlock(&hs->lock);
		return MHD_CONTENT_READER_END_OF_STREAM;
	}
	if (hs->pending) {
		hs->pending = false;
	} else {
		hs->suspended = true;
		MHD_suspend_connection(hs->conn);
	}
	pthread_mutex_unlock(&hs->lock);
	return 0;
}

static void
stream_free(void *cls)
{
	struct http_stream *hs = cls;
	struct http *h = hs->h;

	pthread_mutex_lock(&h->streams_lock);
	if (hs->prev)
		hs->prev->next = hs->next;
	else
		h->streams = hs->next;
	if (hs->next)
		hs->next->prev = hs->prev;
	pthread_mutex_unlock(&h->streams_lock);
	hs->ops->close(hs->ctx);
	pthread_mutex_destroy(&hs->lock);
	free(hs);
}

static struct conn *conn_of(struct MHD_Connection *c);

/* ---- upgrades ---- */

/* A request plus what the dispatcher asked an upgrade to call; MHD hands
 * it back to on_upgraded() and frees it through on_completed(). */
struct req_priv {
	struct http_request req;	/* first */
	http_upgrade_fn up_fn;
	void *up_ctx;
};

struct http_upgrade {
	struct MHD_UpgradeResponseHandle *urh;
	int tcp_fd;		/* the client's socket behind MHD's TLS proxy, or -1 */
};

void
http_upgrade_close(struct http_upgrade *u)
{
	/* MHD's epoll backend may leave the TLS side open until the client
	 * closes it; a FIN now tells the client at once. */
	if (u->tcp_fd >= 0)
		shutdown(u->tcp_fd, SHUT_WR);
	if (MHD_upgrade_action(u->urh, MHD_UPGRADE_ACTION_CLOSE) != MHD_YES)
		log_warn("msg=\"closing an upgraded connection failed\"");
	free(u);
}

static void
on_upgraded(void *cls, struct MHD_Connection *c, void *con_cls, const char *extra,
	    size_t n, MHD_socket sock, struct MHD_UpgradeResponseHandle *urh)
{
	struct http *h = cls;
	struct req_priv *rp = con_cls;
	const union MHD_ConnectionInfo *ci = NULL;
	struct http_upgrade *u = malloc(sizeof(*u));

	if (u == NULL) {
		(void)MHD_upgrade_action(urh, MHD_UPGRADE_ACTION_CLOSE);
		return;
	}
	u->urh = urh;
	u->tcp_fd = -1;
	{
		struct conn *cn = conn_of(c);

		if (cn) {	/* no request deadline for the new protocol */
			pthread_mutex_lock(&h->conns_lock);
			cn->upgraded = true;
			cn->deadline_ms = 0;
			pthread_mutex_unlock(&h->conns_lock);
		}
	}
	if (h->cert_pem)
		ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
	if (ci && ci->connect_fd != sock)
		u->tcp_fd = ci->connect_fd;
	rp->up_fn(rp->up_ctx, u, sock, u->tcp_fd, extra, n);
}

/* ---- connections: per-address limit, request deadline ---- */

/* The address a limit counts: IPv4 as is, IPv6 by /64 (one host's share).
 * False for loopback, which is exempt (a reverse proxy on this host). */
static bool
limit_key(const struct sockaddr *sa, uint8_t out[16])
{
	memset(out, 0, 16);
	if (sa == NULL)
		return false;
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)sa;

		if ((ntohl(in->sin_addr.s_addr) >> 24) == 127)
			return false;
		memcpy(out, &in->sin_addr, 4);
		return true;
	}
	if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;

		if (IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr))
			return false;
		if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr)) {
			if (in6->sin6_addr.s6_addr[12] == 127)
				return false;
			memcpy(out, &in6->sin6_addr.s6_addr[12], 4);
			return true;
		}
		out[15] = 6;	/* apart from every IPv4 key */
		memcpy(out, &in6->sin6_addr, 8);
		return true;
	}
	return false;
}

static struct ipcount **
ip_slot(struct http *h, const uint8_t ip[16])
{
	uint32_t x = 2166136261u;
	struct ipcount **pp;

	for (int i = 0; i < 16; i++)
		x = (x ^ ip[i]) * 16777619u;
	for (pp = &h->ips[x & (IP_BUCKETS - 1)]; *pp; pp = &(*pp)->next)
		if (memcmp((*pp)->ip, ip, 16) == 0)
			break;
	return pp;
}

static enum MHD_Result
on_accept(void *cls, const struct sockaddr *addr, socklen_t addrlen)
{
	struct http *h = cls;
	struct ipcount **pp;
	uint8_t ip[16];
	bool ok;

	(void)addrlen;
	if (h->cfg.max_per_ip == 0 || !limit_key(addr, ip))
		return MHD_YES;
	pthread_mutex_lock(&h->conns_lock);
	pp = ip_slot(h, ip);
	ok = *pp == NULL || (*pp)->n < h->cfg.max_per_ip;
	pthread_mutex_unlock(&h->conns_lock);
	if (!ok)
		atomic_fetch_add(&h->stats_refused_per_ip, 1);
	return ok ? MHD_YES : MHD_NO;
}

static void
on_connection(void *cls, struct MHD_Connection *c, void **socket_context,
	      enum MHD_ConnectionNotificationCode toe)
{
	struct http *h = cls;
	struct conn *cn;

	if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
		const union MHD_ConnectionInfo *fd = MHD_get_connection_info(c,
		    MHD_CONNECTION_INFO_CONNECTION_FD);
		const union MHD_ConnectionInfo *ad = MHD_get_connection_info(c,
		    MHD_CONNECTION_INFO_CLIENT_ADDRESS);

		if ((cn = calloc(1, sizeof(*cn))) == NULL)
			return;
		cn->fd = fd ? fd->connect_fd : -1;
		if (h->cfg.tls_reloadable && h->cfg.tls_cert_path) {
			const union MHD_ConnectionInfo *ts = MHD_get_connection_info(c,
			    MHD_CONNECTION_INFO_GNUTLS_SESSION);

			tlsreload_session_started(ts ? ts->tls_session : NULL);
		}
		cn->deadline_ms = time_mono_ms() + (int64_t)h->cfg.request_timeout_s * 1000;
		pthread_mutex_lock(&h->conns_lock);
		if (limit_key(ad ? ad->client_addr : NULL, cn->ip)) {
			struct ipcount **pp = ip_slot(h, cn->ip);

			if (*pp == NULL && (*pp = calloc(1, sizeof(**pp))) != NULL)
				memcpy((*pp)->ip, cn->ip, 16);
			if (*pp) {
				(*pp)->n++;
				cn->counted = true;
			}
		}
		cn->next = h->conns;
		if (h->conns)
			h->conns->prev = cn;
		h->conns = cn;
		pthread_mutex_unlock(&h->conns_lock);
		*socket_context = cn;
		return;
	}
	if ((cn = *socket_context) == NULL)
		return;
	pthread_mutex_lock(&h->conns_lock);
	if (cn->counted) {
		struct ipcount **pp = ip_slot(h, cn->ip);

		if (*pp && --(*pp)->n == 0) {
			struct ipcount *dead = *pp;

			*pp = dead->next;
			free(dead);
		}
	}
	if (cn->prev)
		cn->prev->next = cn->next;
	else
		h->conns = cn->next;
	if (cn->next)
		cn->next->prev = cn->prev;
	pthread_mutex_unlock(&h->conns_lock);
	*socket_context = NULL;
	free(cn);
}

static struct conn *
conn_of(struct MHD_Connection *c)
{
	const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c,
	    MHD_CONNECTION_INFO_SOCKET_CONTEXT);

	return ci ? ci->socket_context : NULL;
}

/* deadline_ms: now + request_timeout (waiting for a request), or 0. */
static void
conn_deadline(struct http *h, struct MHD_Connection *c, bool arm)
{
	struct conn *cn = conn_of(c);

	if (cn == NULL)
		return;
	pthread_mutex_lock(&h->conns_lock);
	if (arm && !cn->upgraded)
		cn->deadline_ms = time_mono_ms() + (int64_t)h->cfg.request_timeout_s * 1000;
	else
		cn->deadline_ms = 0;
	pthread_mutex_unlock(&h->conns_lock);
}

size_t
http_reap_slow(struct http *h)
{
	int64_t now = time_mono_ms();
	size_t n = 0;

	if (h == NULL)
		return 0;
	/* A conn stays listed until MHD's close notification, which comes
	 * before MHD closes the socket and takes conns_lock: the fd is ours
	 * to shut down while we hold it. MHD then sees the end and closes. */
	pthread_mutex_lock(&h->conns_lock);
	for (struct conn *cn = h->conns; cn; cn = cn->next) {
		if (cn->deadline_ms == 0 || cn->deadline_ms > now || cn->fd < 0)
			continue;
		cn->deadline_ms = 0;
		(void)shutdown(cn->fd, SHUT_RDWR);
		n++;
	}
	pthread_mutex_unlock(&h->conns_lock);
	atomic_fetch_add(&h->stats_slow_closed, n);
	return n;
}

void
http_get_stats(struct http *h, struct http_stats *out)
{
	out->refused_per_ip = atomic_load(&h->stats_refused_per_ip);
	out->slow_closed = atomic_load(&h->stats_slow_closed);
	out->too_large = atomic_load(&h->stats_too_large);
	out->bad_framing = atomic_load(&h->stats_bad_framing);
	out->library_messages = atomic_load(&h->stats_mhd_messages);
}

unsigned
http_max_connections(const struct http *h)
{
	return h->cfg.max_connections;
}

/* libmicrohttpd's own messages, as our log lines, at most 5 per 10 s. */
static void __attribute__((format(printf, 2, 0)))
mhd_log(void *cls, const char *fmt, va_list ap)
{
	struct http *h = cls;
	char line[512];
	size_t n;
	bool ok;

	atomic_fetch_add(&h->stats_mhd_messages, 1);
	pthread_mutex_lock(&h->log_lock);
	ok = log_ratelimit_ok(&h->log_rl, 10, 5);
	pthread_mutex_unlock(&h->log_lock);
	if (!ok)
		return;
	vsnprintf(line, sizeof(line), fmt, ap);
	for (n = 0; line[n]; n++)
		if (line[n] == '"' || line[n] == '\\' || (unsigned char)line[n] < 0x20)
			line[n] = ' ';
	while (n > 0 && line[n - 1] == ' ')
		line[--n] = 0;
	log_warn("msg=\"libmicrohttpd\" detail=\"%s\"", line);
}

/* URL decoding as MHD does it, except that %00 stays as it is: a NUL
 * would cut the path short ("/api/v1/nodes/1%00/x" is not node 1). */
static size_t
unescape(void *cls, struct MHD_Connection *c, char *uri)
{
	char *r = uri, *w = uri;

	(void)cls;
	(void)c;
	while (*r) {
		if (r[0] == '%' && isxdigit((unsigned char)r[1]) && isxdigit((unsigned char)r[2]) &&
		    !(r[1] == '0' && r[2] == '0')) {
			char hx[3] = { r[1], r[2], 0 };

			*w++ = (char)strtol(hx, NULL, 16);
			r += 3;
		} else {
			*w++ = *r++;
		}
	}
	*w = 0;
	return (size_t)(w - uri);
}

/* Request smuggling behind proxies: a request with both Content-Length and
 * Transfer-Encoding, or with differing Content-Lengths, is refused. */
struct framing {
	int ncl, nte;
	const char *cl;
	bool cl_differ;
};

static enum MHD_Result
framing_hdr(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
	struct framing *f = cls;

	(void)kind;
	if (strcasecmp(key, "Content-Length") == 0) {
		if (f->ncl++ > 0 && strcmp(f->cl, value ? value : "") != 0)
			f->cl_differ = true;
		f->cl = value ? value : "";
	} else if (strcasecmp(key, "Transfer-Encoding") == 0) {
		f->nte++;
	}
	return MHD_YES;
}

/* ---- request handling ---- */

static void
client_addr(struct MHD_Connection *c, char out[64])
{
	const union MHD_ConnectionInfo *ci =
	    MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
	struct endpoint e;

	out[0] = 0;
	if (ci && ci->client_addr && endpoint_from_sockaddr(ci->client_addr, &e) == 0)
		endpoint_fmt(out, &e);
}

/*
 * A stream's peer that vanishes without a FIN or RST (power loss, a cut
 * link) must not look connected until TCP gives up (15+ minutes): the
 * server writes a keepalive every stream_keepalive_s, and the reaper
 * (http_reap_closed, every second) ends a stream whose data stays
 * unacknowledged for keepalive + 3 s (link_dead), so a dead link is noticed
 * within 2 x keepalive + 5 s of the cut. TCP keepalive probes cover a
 * connection with nothing to send. (Not TCP_USER_TIMEOUT: since Linux 5.11
 * it also aborts a live reader whose window stays closed that long.)
 */
static void
stream_socket_opts(struct http *h, struct MHD_Connection *c)
{
	const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c,
	    MHD_CONNECTION_INFO_CONNECTION_FD);
	int k = h->cfg.stream_keepalive_s > 0 ? (int)h->cfg.stream_keepalive_s : 10;
	int on = 1, intvl = k / 3 > 0 ? k / 3 : 1, cnt = 3;

	/* No idle timeout for a stream: a reader that is alive but slow (a
	 * full socket for minutes) is not dropped (it would come back for the
	 * same data, and again); a dead one is caught by the reaper. */
	(void)MHD_set_connection_option(c, MHD_CONNECTION_OPTION_TIMEOUT, (unsigned int)0);
	if (ci == NULL)
		return;
	if (setsockopt(ci->connect_fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof(on)) != 0 ||
	    setsockopt(ci->connect_fd, IPPROTO_TCP, TCP_KEEPIDLE, &k, sizeof(k)) != 0 ||
	    setsockopt(ci->connect_fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof(intvl)) != 0 ||
	    setsockopt(ci->connect_fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt)) != 0)
		log_debug("msg=\"cannot set keepalive options on a stream socket\" err=\"%s\"",
		    strerror(errno));
}

static enum MHD_Result
send_response(struct http *h, struct MHD_Connection *c, struct http_request *req,
	      struct http_response *resp)
{
	struct MHD_Response *r;
	enum MHD_Result ret;

	if (resp->upgrade != NULL) {
		struct req_priv *rp = (struct req_priv *)req;

		rp->up_fn = resp->upgrade;
		rp->up_ctx = resp->upgrade_ctx;
		if ((r = MHD_create_response_for_upgrade(on_upgraded, h)) == NULL)
			return MHD_NO;
	} else if (resp->stream_ops != NULL) {
		struct http_stream *hs = calloc(1, sizeof(*hs));

		if (hs == NULL) {
			resp->stream_ops->close(resp->stream_ctx);
			return MHD_NO;
		}
		pthread_mutex_init(&hs->lock, NULL);
		hs->h = h;
		/* set before the reaper (http_reap_closed) can see it */
		hs->conn = c;
		hs->ops = resp->stream_ops;
		hs->ctx = resp->stream_ctx;
		pthread_mutex_lock(&h->streams_lock);
		hs->next = h->streams;
		if (h->streams)
			h->streams->prev = hs;
		h->streams = hs;
		pthread_mutex_unlock(&h->streams_lock);
		stream_socket_opts(h, c);
		/* MHD (0.9.75) sends a chunked body from the connection's own
		 * pool and never uses this block, but allocates it per stream:
		 * 64 kB made 97 kB of server memory per node at 10,000 streams,
		 * 16 kB makes 61 kB (make bench-control). */
		r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16 * 1024,
		    stream_read, hs, stream_free);
		if (r == NULL) {
			stream_free(hs);
			return MHD_NO;
		}
		hs->ops->attach(hs->ctx, hs);
	} else {
		r = MHD_create_response_from_buffer(resp->len, resp->body,
		    MHD_RESPMEM_MUST_FREE);
		if (r == NULL)
			return MHD_NO;
		resp->body = NULL;	/* MHD owns it now */
	}
	if (resp->content_type)
		MHD_add_response_header(r, "Content-Type", resp->content_type);
	for (int i = 0; i < resp->nhdr; i++)
		MHD_add_response_header(r, resp->hdr_name[i], resp->hdr_value[i]);
	ret = MHD_queue_response(c, (unsigned)resp->status, r);
	MHD_destroy_response(r);
	return ret;
}

/* Answers now, before (or instead of) reading the rest of the body. */
static enum MHD_Result
answer_now(struct http *h, struct MHD_Connection *c, struct http_request *req, int status,
	   const char *detail)
{
	struct http_response resp;
	enum MHD_Result ret;

	memset(&resp, 0, sizeof(resp));
	http_problem(&resp, status, NULL, "%s", detail);
	/* The rest of the body is not read: the connection cannot be reused. */
	(void)http_add_header(&resp, "Connection", "close");
	conn_deadline(h, c, false);
	ret = send_response(h, c, req, &resp);
	http_response_cleanup(&resp);
	return ret;
}

static enum MHD_Result
on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
	   const char *version, const char *upload, size_t *upload_size, void **con_cls)
{
	struct http *h = cls;
	struct http_request *req = *con_cls;
	struct http_response resp;
	enum MHD_Result ret;

	if (req == NULL) {
		struct req_priv *rp = calloc(1, sizeof(*rp));
		struct framing f = { 0, 0, NULL, false };
		size_t limit;

		if (rp == NULL)
			return MHD_NO;
		req = &rp->req;
		req->start_ns = time_mono_ns();
		req->method = method;
		req->path = url;
		req->conn = c;
		client_addr(c, req->client);
		buf_init(&req->body, 0);
		*con_cls = req;
		/* Everything below happens before a byte of body is read and
		 * before MHD may send "100 Continue". */
		(void)MHD_get_connection_values(c, MHD_HEADER_KIND, framing_hdr, &f);
		if ((f.nte > 0 && f.ncl > 0) || f.cl_differ || f.nte > 1) {
			atomic_fetch_add(&h->stats_bad_framing, 1);
			return answer_now(h, c, req, 400, f.cl_differ ?
			    "conflicting Content-Length headers" :
			    "Content-Length and Transfer-Encoding together (or Transfer-Encoding twice)");
		}
		limit = h->cfg.body_limit ? h->cfg.body_limit(h->cfg.ctx, req) : h->cfg.max_body;
		buf_init(&req->body, limit);
		if (f.cl != NULL) {
			char *end;
			unsigned long long cl;

			errno = 0;
			cl = strtoull(f.cl, &end, 10);
			if (*f.cl < '0' || *f.cl > '9' || *end != 0 || errno != 0)
				return answer_now(h, c, req, 400, "Content-Length is not a number");
			if (cl > limit) {
				char d[64];

				atomic_fetch_add(&h->stats_too_large, 1);
				snprintf(d, sizeof(d), "request body is larger than %zu bytes", limit);
				return answer_now(h, c, req, 413, d);
			}
		}
		return MHD_YES;
	}
	if (*upload_size > 0) {
		if (!req->too_large && buf_append(&req->body, upload, *upload_size) != 0) {
			/* Only a body without a declared length gets here (a
			 * declared one was checked with the head). MHD cannot
			 * answer in the middle of an upload: close it. */
			req->too_large = true;
			atomic_fetch_add(&h->stats_too_large, 1);
			buf_cleanup(&req->body);
			*upload_size = 0;
			return MHD_NO;
		}
		*upload_size = 0;
		return MHD_YES;
	}
	if (req->too_large)
		return MHD_YES;	/* answered already */
	conn_deadline(h, c, false);	/* in; a stream may now run for hours */
	memset(&resp, 0, sizeof(resp));
	h->cfg.dispatch(h->cfg.ctx, req, &resp);
	if (resp.status == 0)
		http_problem(&resp, 500, NULL, "no response");
	ret = send_response(h, c, req, &resp);
	http_response_cleanup(&resp);
	return ret;
}

static void
on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
	     enum MHD_RequestTerminationCode toe)
{
	struct http *h = cls;
	struct http_request *req = *con_cls;

	/* The next request on this connection has its own deadline. */
	conn_deadline(h, c, true);
	if (req == NULL)
		return;
	buf_cleanup(&req->body);
	free((struct req_priv *)req);
	*con_cls = NULL;
}

/* Why http_start failed, in words (http_start_error). */
static _Thread_local char start_why[512];

const char *
http_start_error(void)
{
	return start_why;
}

static char *
read_file(const char *path)
{
	FILE *f = fopen(path, "rb");
	char *p = NULL;
	long n;

	if (f == NULL)
		return NULL;
	if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) > 0 && n < 1 << 20 &&
	    fseek(f, 0, SEEK_SET) == 0 && (p = calloc(1, (size_t)n + 1)) != NULL) {
		if (fread(p, 1, (size_t)n, f) != (size_t)n) {
			free(p);
			p = NULL;
		}
	}
	fclose(f);
	return p;
}

static int
parse_listen(const char *listen, struct sockaddr_storage *ss, socklen_t *len)
{
	struct endpoint e;
	char tmp[128];

	if (listen[0] == ':') {
		snprintf(tmp, sizeof(tmp), "0.0.0.0%s", listen);
		listen = tmp;
	}
	if (endpoint_parse(listen, &e) != 0) {
		/* endpoint_parse refuses port 0; allow it for tests. */
		const char *colon = strrchr(listen, ':');

		if (colon == NULL || strcmp(colon, ":0") != 0)
			return ERR_INVALID;
		snprintf(tmp, sizeof(tmp), "%.*s:1", (int)(colon - listen), listen);
		if (endpoint_parse(tmp, &e) != 0)
			return ERR_INVALID;
		e.port = 0;
	}
	*len = endpoint_to_sockaddr(&e, ss);
	return 0;
}

/* Raises the open file limit for max_connections plus headroom (the
 * database, the relay's listener and its upgraded connections' socketpairs,
 * logs, the policy file): a quarter of the connections and at least 1,024
 * more. Where the limit cannot go that high, max_connections comes down so
 * that the headroom stays. */
static void
clamp_connections(struct http *h)
{
	rlim_t max = h->cfg.max_connections, head = max / 4 > 1024 ? max / 4 : 1024;
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
		return;
	if (rl.rlim_cur < max + head) {
		rl.rlim_cur = max + head < rl.rlim_max ? max + head : rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
			log_warn("msg=\"cannot raise open file limit\" err=\"%s\"", strerror(errno));
		if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
			return;
	}
	if (rl.rlim_cur < max + head) {
		rlim_t fit = rl.rlim_cur * 4 / 5;

		if (rl.rlim_cur > 1024 + 64 && rl.rlim_cur - 1024 < fit)
			fit = rl.rlim_cur - 1024;
		if (fit < 16)
			fit = 16;
		log_warn("msg=\"max_connections lowered to leave file descriptors spare; raise "
		    "LimitNOFILE to allow more\" max_connections=%u now=%u nofile=%llu",
		    h->cfg.max_connections, (unsigned)fit, (unsigned long long)rl.rlim_cur);
		h->cfg.max_connections = (unsigned)fit;
	}
}

int
http_start(const struct http_config *cfg, struct http **out)
{
	struct sockaddr_storage ss;
	socklen_t sslen;
	unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL |
	    MHD_ALLOW_SUSPEND_RESUME | MHD_ALLOW_UPGRADE | MHD_USE_ERROR_LOG;
	struct http *h;
	const union MHD_DaemonInfo *di;

	*out = NULL;
	if ((h = calloc(1, sizeof(*h))) == NULL)
		return ERR_NOMEM;
	pthread_mutex_init(&h->streams_lock, NULL);
	pthread_mutex_init(&h->conns_lock, NULL);
	pthread_mutex_init(&h->log_lock, NULL);
	h->cfg = *cfg;
	start_why[0] = 0;
	if (parse_listen(cfg->listen, &ss, &sslen) != 0) {
		snprintf(start_why, sizeof(start_why), "bad listen address \"%s\" (HOST:PORT, "
		    "[V6]:PORT or :PORT)", cfg->listen);
		log_error("msg=\"bad listen address\" listen=%s", cfg->listen);
		http_stop(h);
		return ERR_INVALID;
	}
	if (ss.ss_family == AF_INET6)
		flags |= MHD_USE_IPv6;
	if (cfg->tls_cert_path && cfg->tls_reloadable) {
		if (tlsreload_load(cfg->tls_cert_path, cfg->tls_key_path ? cfg->tls_key_path : "",
		    start_why, sizeof(start_why)) != 0 && !cfg->tls_cert_later) {
			log_error("msg=\"cannot load TLS certificate or key\" err=\"%s\"", start_why);
			http_stop(h);
			return ERR_IO;
		}
		flags |= MHD_USE_TLS;
	} else if (cfg->tls_cert_path) {
		const char *kp = cfg->tls_key_path ? cfg->tls_key_path : "";

		errno = 0;
		if ((h->cert_pem = read_file(cfg->tls_cert_path)) == NULL)
			snprintf(start_why, sizeof(start_why), "cannot read the TLS certificate %s: %s",
			    cfg->tls_cert_path, errno ? strerror(errno) : "empty or larger than 1 MiB");
		else if (errno = 0, (h->key_pem = read_file(kp)) == NULL)
			snprintf(start_why, sizeof(start_why), "cannot read the TLS key %s: %s", kp,
			    errno ? strerror(errno) : "empty or larger than 1 MiB");
		if (h->cert_pem == NULL || h->key_pem == NULL) {
			log_error("msg=\"cannot read TLS certificate or key\" cert=%s key=%s",
			    cfg->tls_cert_path, cfg->tls_key_path ? cfg->tls_key_path : "(none)");
			http_stop(h);
			return ERR_IO;
		}
		flags |= MHD_USE_TLS;
	}
	if (h->cfg.request_timeout_s == 0)
		h->cfg.request_timeout_s = 30;
	if (h->cfg.idle_timeout_s == 0)
		h->cfg.idle_timeout_s = 120;
	if (h->cfg.max_connections == 0)
		h->cfg.max_connections = 16384;
	clamp_connections(h);
	{
		/* Both option lists share the common options. */
#define COMMON_OPTIONS \
		MHD_OPTION_EXTERNAL_LOGGER, mhd_log, h, /* first: else MHD logs raw before it */ \
		MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss, \
		MHD_OPTION_THREAD_POOL_SIZE, cfg->threads ? cfg->threads : 2, \
		MHD_OPTION_CONNECTION_LIMIT, h->cfg.max_connections, \
		MHD_OPTION_CONNECTION_TIMEOUT, h->cfg.idle_timeout_s, \
		MHD_OPTION_LISTEN_BACKLOG_SIZE, 4096, \
		MHD_OPTION_NOTIFY_COMPLETED, on_completed, h, \
		MHD_OPTION_NOTIFY_CONNECTION, on_connection, h, \
		MHD_OPTION_UNESCAPE_CALLBACK, unescape, h
		if (cfg->tls_cert_path && cfg->tls_reloadable) {
			h->d = MHD_start_daemon(flags, 0, on_accept, h, on_request, h, COMMON_OPTIONS,
			    MHD_OPTION_HTTPS_CERT_CALLBACK, tlsreload_callback(),
			    MHD_OPTION_END);
		} else if (cfg->tls_cert_path) {
			h->d = MHD_start_daemon(flags, 0, on_accept, h, on_request, h, COMMON_OPTIONS,
			    MHD_OPTION_HTTPS_MEM_CERT, h->cert_pem,
			    MHD_OPTION_HTTPS_MEM_KEY, h->key_pem,
			    MHD_OPTION_END);
		} else {
			h->d = MHD_start_daemon(flags, 0, on_accept, h, on_request, h, COMMON_OPTIONS,
			    MHD_OPTION_END);
		}
#undef COMMON_OPTIONS
	}
	if (h->d == NULL) {
		snprintf(start_why, sizeof(start_why), "cannot listen on %s: %s%s", cfg->listen,
		    strerror(errno), cfg->tls_cert_path ? " (or the TLS certificate and key do not "
		    "load: check that they are PEM and match)" : "");
		log_error("msg=\"cannot start HTTP server\" listen=%s err=\"%s\"", cfg->listen,
		    strerror(errno));
		http_stop(h);
		return ERR_IO;
	}
	di = MHD_get_daemon_info(h->d, MHD_DAEMON_INFO_BIND_PORT);
	h->port = di ? di->port : 0;
	*out = h;
	return 0;
}

int
http_reload_cert(struct http *h, char *why, size_t whylen)
{
	if (!h->cfg.tls_reloadable || h->cfg.tls_cert_path == NULL) {
		snprintf(why, whylen, "the listener's certificate is not reloadable");
		return ERR_INVALID;
	}
	return tlsreload_load(h->cfg.tls_cert_path, h->cfg.tls_key_path ? h->cfg.tls_key_path : "",
	    why, whylen);
}

int
http_port(const struct http *h)
{
	return h->port;
}

void
http_stop(struct http *h)
{
	if (h == NULL)
		return;
	if (h->d) {
		/* Readers end their streams from now on; wake the sleeping ones. */
		__atomic_store_n(&h->stopping, true, __ATOMIC_RELEASE);
		pthread_mutex_lock(&h->streams_lock);
		for (struct http_stream *hs = h->streams; hs; hs = hs->next) {
			pthread_mutex_lock(&hs->lock);
			if (hs->suspended) {
				hs->suspended = false;
				MHD_resume_connection(hs->conn);
			}
			pthread_mutex_unlock(&hs->lock);
		}
		pthread_mutex_unlock(&h->streams_lock);
		MHD_stop_daemon(h->d);
		if (h->cfg.tls_reloadable)
			tlsreload_free();
	}
	pthread_mutex_destroy(&h->streams_lock);
	pthread_mutex_destroy(&h->conns_lock);
	pthread_mutex_destroy(&h->log_lock);
	for (size_t i = 0; i < IP_BUCKETS; i++)
		while (h->ips[i]) {
			struct ipcount *ic = h->ips[i];

			h->ips[i] = ic->next;
			free(ic);
		}
	if (h->key_pem)
		wipe(h->key_pem, strlen(h->key_pem));
	free(h->key_pem);
	free(h->cert_pem);
	free(h);
}
