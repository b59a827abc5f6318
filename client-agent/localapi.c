// SPDX-License-Identifier: MIT
/*
 * Local API socket: an accept thread and one detached thread per
 * connection, counted so that shutdown can wait for them.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <grp.h>
#include <poll.h>
#include <pwd.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "client-agent/localapi.h"
#include "common/buf.h"
#include "common/log.h"
#include "common/util.h"

struct localapi {
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	int fd;
	int stop_pipe[2];
	gid_t group;
	localapi_handler handler;
	void *ctx;
	pthread_t thr;
	pthread_mutex_t lock;
	pthread_cond_t idle;
	int active;
};

struct conn {
	struct localapi *l;
	int fd;
};

/* Is `group` among the supplementary groups of user `uid`? */
static bool
in_group(uid_t uid, gid_t primary, gid_t group)
{
	struct passwd pw, *res = NULL;
	char buf[4096];
	gid_t groups[256];
	int n = (int)ARRAY_SIZE(groups);

	if (getpwuid_r(uid, &pw, buf, sizeof(buf), &res) != 0 || res == NULL)
		return false;
	if (getgrouplist(pw.pw_name, primary, groups, &n) < 0)
		return false;
	for (int i = 0; i < n; i++)
		if (groups[i] == group)
			return true;
	return false;
}

static bool
allowed(struct localapi *l, int fd)
{
	struct ucred cr;
	socklen_t sl = sizeof(cr);

	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &sl) != 0)
		return false;
	if (cr.uid == 0 || cr.uid == geteuid())
		return true;
	if (l->group == (gid_t)-1)
		return false;
	if (cr.gid == l->group)
		return true;
	return in_group(cr.uid, cr.gid, l->group);
}

/* Reads one request: up to a newline or EOF, with a 10 s budget. */
static int
read_request(int fd, struct buf *b)
{
	int64_t deadline = time_mono_ms() + 10000;
	char tmp[4096];

	for (;;) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		int64_t left = deadline - time_mono_ms();
		ssize_t n;

		if (left <= 0)
			return ERR_TIMEOUT;
		if (poll(&p, 1, (int)left) <= 0)
			continue;
		n = read(fd, tmp, sizeof(tmp));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return b->len ? 0 : ERR_IO;
		if (buf_append(b, tmp, (size_t)n) != 0)
			return ERR_TOO_LARGE;
		if (memchr(tmp, '\n', (size_t)n))
			return 0;
	}
}

static void
write_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);	/* the peer may be gone */

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return;
		p += w;
		n -= (size_t)w;
	}
}

static void *
conn_main(void *arg)
{
	struct conn *cn = arg;
	struct localapi *l = cn->l;
	struct buf b;
	json_t *req = NULL, *resp;
	json_error_t e;
	char *text;

	buf_init(&b, LOCALAPI_MAX_REQUEST);
	if (!allowed(l, cn->fd)) {
		resp = json_pack("{s:b, s:s}", "ok", 0, "error",
		    "permission denied: the local API is for root and the wiremesh group");
	} else if (read_request(cn->fd, &b) != 0) {
		resp = json_pack("{s:b, s:s}", "ok", 0, "error", "request too large or incomplete");
	} else if ((req = json_loadb((const char *)b.data, b.len, JSON_DISABLE_EOF_CHECK, &e)) == NULL ||
		   !json_is_object(req)) {
		resp = json_pack("{s:b, s:s}", "ok", 0, "error", "request is not a JSON object");
	} else {
		resp = l->handler(l->ctx, req);
	}
	json_decref(req);
	buf_cleanup(&b);
	text = resp ? json_dumps(resp, JSON_COMPACT) : NULL;
	json_decref(resp);
	if (text) {
		write_all(cn->fd, text, strlen(text));
		write_all(cn->fd, "\n", 1);
		free(text);
	}
	close(cn->fd);
	free(cn);
	pthread_mutex_lock(&l->lock);
	if (--l->active == 0)
		pthread_cond_broadcast(&l->idle);
	pthread_mutex_unlock(&l->lock);
	return NULL;
}

static void *
accept_main(void *arg)
{
	struct localapi *l = arg;

	for (;;) {
		struct pollfd p[2] = { { .fd = l->fd, .events = POLLIN },
				       { .fd = l->stop_pipe[0], .events = POLLIN } };
		struct conn *cn;
		pthread_t t;
		pthread_attr_t at;
		int fd;

		if (poll(p, 2, -1) < 0)
			continue;
		if (p[1].revents)
			return NULL;
		if (!(p[0].revents & POLLIN))
			continue;
		fd = accept4(l->fd, NULL, NULL, SOCK_CLOEXEC);
		if (fd < 0)
			continue;
		pthread_mutex_lock(&l->lock);
		if (l->active >= LOCALAPI_MAX_CONNS || (cn = malloc(sizeof(*cn))) == NULL) {
			pthread_mutex_unlock(&l->lock);
			close(fd);
			continue;
		}
		l->active++;
		pthread_mutex_unlock(&l->lock);
		cn->l = l;
		cn->fd = fd;
		pthread_attr_init(&at);
		pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
		if (pthread_create(&t, &at, conn_main, cn) != 0) {
			close(fd);
			free(cn);
			pthread_mutex_lock(&l->lock);
			l->active--;
			pthread_mutex_unlock(&l->lock);
		}
		pthread_attr_destroy(&at);
	}
}

int
localapi_new(const char *path, gid_t group, localapi_handler h, void *ctx, struct localapi **out)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct localapi *l;
	mode_t old;
	int r = ERR_IO;

	*out = NULL;
	if (strlen(path) >= sizeof(sa.sun_path))
		return ERR_INVALID;
	if ((l = calloc(1, sizeof(*l))) == NULL)
		return ERR_NOMEM;
	str_copy(l->path, path, sizeof(l->path));
	str_copy(sa.sun_path, path, sizeof(sa.sun_path));
	l->group = group;
	l->handler = h;
	l->ctx = ctx;
	l->stop_pipe[0] = l->stop_pipe[1] = -1;
	pthread_mutex_init(&l->lock, NULL);
	pthread_cond_init(&l->idle, NULL);
	if ((l->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0)
		goto fail;
	unlink(path);
	old = umask(0117);
	if (bind(l->fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
		umask(old);
		log_error("msg=\"cannot bind local API socket\" path=%s err=\"%s\"", path,
		    strerror(errno));
		goto fail;
	}
	umask(old);
	if (group != (gid_t)-1 && chown(path, (uid_t)-1, group) != 0)
		log_warn("msg=\"cannot set socket group\" path=%s err=\"%s\"", path, strerror(errno));
	if (chmod(path, 0660) != 0 || listen(l->fd, 64) != 0 || pipe2(l->stop_pipe, O_CLOEXEC) != 0)
		goto fail;
	if (pthread_create(&l->thr, NULL, accept_main, l) != 0)
		goto fail;
	*out = l;
	return 0;
fail:
	if (l->fd >= 0)
		close(l->fd);
	if (l->stop_pipe[0] >= 0) {
		close(l->stop_pipe[0]);
		close(l->stop_pipe[1]);
	}
	pthread_mutex_destroy(&l->lock);
	pthread_cond_destroy(&l->idle);
	free(l);
	return r;
}

void
localapi_free(struct localapi *l)
{
	if (l == NULL)
		return;
	if (write(l->stop_pipe[1], "x", 1) != 1)
		log_debug("msg=\"stop pipe write failed\"");
	pthread_join(l->thr, NULL);
	close(l->fd);
	unlink(l->path);
	pthread_mutex_lock(&l->lock);
	while (l->active > 0)
		pthread_cond_wait(&l->idle, &l->lock);
	pthread_mutex_unlock(&l->lock);
	close(l->stop_pipe[0]);
	close(l->stop_pipe[1]);
	pthread_mutex_destroy(&l->lock);
	pthread_cond_destroy(&l->idle);
	free(l);
}

int
localapi_call(const char *path, json_t *req, int timeout_ms, json_t **reply, char *why,
	      size_t whylen)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int64_t deadline = time_mono_ms() + timeout_ms;
	struct buf b;
	char *text, tmp[4096];
	int fd, r = ERR_IO;

	*reply = NULL;
	if (strlen(path) >= sizeof(sa.sun_path)) {
		snprintf(why, whylen, "socket path too long");
		return ERR_INVALID;
	}
	str_copy(sa.sun_path, path, sizeof(sa.sun_path));
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0 ||
	    connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
		snprintf(why, whylen, "cannot connect to wiremeshd at %s: %s (is the daemon running?)",
		    path, strerror(errno));
		if (fd >= 0)
			close(fd);
		return ERR_UNAVAILABLE;
	}
	if ((text = json_dumps(req, JSON_COMPACT)) == NULL) {
		close(fd);
		return ERR_NOMEM;
	}
	write_all(fd, text, strlen(text));
	write_all(fd, "\n", 1);
	free_secret(text);	/* may hold an auth key */
	buf_init(&b, 64 << 20);
	for (;;) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		int64_t left = deadline - time_mono_ms();
		ssize_t n;

		if (left <= 0) {
			snprintf(why, whylen, "wiremeshd did not answer within %d ms", timeout_ms);
			r = ERR_TIMEOUT;
			goto out;
		}
		if (poll(&p, 1, (int)left) <= 0)
			continue;
		n = read(fd, tmp, sizeof(tmp));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		if (buf_append(&b, tmp, (size_t)n) != 0) {
			snprintf(why, whylen, "reply too large");
			goto out;
		}
	}
	*reply = json_loadb((const char *)b.data, b.len, 0, NULL);
	if (!json_is_object(*reply)) {
		json_decref(*reply);
		*reply = NULL;
		snprintf(why, whylen, "wiremeshd sent no valid reply");
		goto out;
	}
	r = 0;
out:
	buf_cleanup(&b);
	close(fd);
	return r;
}
