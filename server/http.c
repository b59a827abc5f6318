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
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
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

struct http {
	struct MHD_Daemon *d;
	struct http_config cfg;
	char *cert_pem, *key_pem;
	int port;
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
	if (h->cert_pem)
		ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
	if (ci && ci->connect_fd != sock)
		u->tcp_fd = ci->connect_fd;
	rp->up_fn(rp->up_ctx, u, sock, u->tcp_fd, extra, n);
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
		pthread_mutex_lock(&h->streams_lock);
		hs->next = h->streams;
		if (h->streams)
			h->streams->prev = hs;
		h->streams = hs;
		pthread_mutex_unlock(&h->streams_lock);
		hs->conn = c;
		hs->ops = resp->stream_ops;
		hs->ctx = resp->stream_ctx;
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

		if (rp == NULL)
			return MHD_NO;
		req = &rp->req;
		buf_init(&req->body, h->cfg.max_body);
		req->start_ns = time_mono_ns();
		*con_cls = req;
		return MHD_YES;
	}
	if (*upload_size > 0) {
		if (!req->too_large && buf_append(&req->body, upload, *upload_size) != 0)
			req->too_large = true;
		*upload_size = 0;
		return MHD_YES;
	}
	memset(&resp, 0, sizeof(resp));
	req->method = method;
	req->path = url;
	req->conn = c;
	client_addr(c, req->client);
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
	struct http_request *req = *con_cls;

	if (req == NULL)
		return;
	buf_cleanup(&req->body);
	free((struct req_priv *)req);
	*con_cls = NULL;
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

static void
raise_nofile(unsigned want)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
		return;
	if (rl.rlim_cur < want) {
		rl.rlim_cur = want < rl.rlim_max ? want : rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
			log_warn("msg=\"cannot raise open file limit\" err=\"%s\"", strerror(errno));
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
	h->cfg = *cfg;
	if (parse_listen(cfg->listen, &ss, &sslen) != 0) {
		log_error("msg=\"bad listen address\" listen=%s", cfg->listen);
		http_stop(h);
		return ERR_INVALID;
	}
	if (ss.ss_family == AF_INET6)
		flags |= MHD_USE_IPv6;
	if (cfg->tls_cert_path) {
		h->cert_pem = read_file(cfg->tls_cert_path);
		h->key_pem = read_file(cfg->tls_key_path ? cfg->tls_key_path : "");
		if (h->cert_pem == NULL || h->key_pem == NULL) {
			log_error("msg=\"cannot read TLS certificate or key\" cert=%s key=%s",
			    cfg->tls_cert_path, cfg->tls_key_path ? cfg->tls_key_path : "(none)");
			http_stop(h);
			return ERR_IO;
		}
		flags |= MHD_USE_TLS;
	}
	raise_nofile(cfg->max_connections + 1024);
	if (cfg->tls_cert_path) {
		h->d = MHD_start_daemon(flags, 0, NULL, NULL, on_request, h,
		    MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
		    MHD_OPTION_THREAD_POOL_SIZE, cfg->threads ? cfg->threads : 2,
		    MHD_OPTION_CONNECTION_LIMIT, cfg->max_connections ? cfg->max_connections : 16384,
		    MHD_OPTION_CONNECTION_TIMEOUT, 120,
		    MHD_OPTION_LISTEN_BACKLOG_SIZE, 4096,
		    MHD_OPTION_NOTIFY_COMPLETED, on_completed, h,
		    MHD_OPTION_HTTPS_MEM_CERT, h->cert_pem,
		    MHD_OPTION_HTTPS_MEM_KEY, h->key_pem,
		    MHD_OPTION_END);
	} else {
		h->d = MHD_start_daemon(flags, 0, NULL, NULL, on_request, h,
		    MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
		    MHD_OPTION_THREAD_POOL_SIZE, cfg->threads ? cfg->threads : 2,
		    MHD_OPTION_CONNECTION_LIMIT, cfg->max_connections ? cfg->max_connections : 16384,
		    MHD_OPTION_CONNECTION_TIMEOUT, 120,
		    MHD_OPTION_LISTEN_BACKLOG_SIZE, 4096,
		    MHD_OPTION_NOTIFY_COMPLETED, on_completed, h,
		    MHD_OPTION_END);
	}
	if (h->d == NULL) {
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
	}
	pthread_mutex_destroy(&h->streams_lock);
	if (h->key_pem)
		wipe(h->key_pem, strlen(h->key_pem));
	free(h->key_pem);
	free(h->cert_pem);
	free(h);
}
