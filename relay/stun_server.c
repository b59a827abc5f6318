/* SPDX-License-Identifier: MIT */
/* STUN binding server: one UDP socket, one thread, counters. */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "common/log.h"
#include "relay/relay_net.h"
#include "relay/stun.h"
#include "relay/stun_server.h"

struct stun_server {
	char *addr;
	int fd;
	int wake_fd;
	pthread_t thread;
	bool running;
	atomic_bool stop;
	pthread_mutex_t lock;		/* guards stats */
	struct stun_server_stats stats;
	struct log_ratelimit rl;
};

size_t stun_server_handle(struct stun_server_stats *st, const uint8_t *pkt, size_t n,
			  const struct endpoint *from, uint8_t *out, size_t cap)
{
	struct stun_msg m;
	size_t len;

	if (stun_parse(pkt, n, &m) != 0 || (m.has_fingerprint && !m.fingerprint_ok)) {
		st->garbage++;
		return 0;
	}
	if (m.type != STUN_BINDING_REQUEST ||
	    (m.has_change_request && (m.change_flags & 0x6) != 0)) {
		/* indications, responses, other methods, or a request for an
		 * alternate address we do not have */
		st->unsupported++;
		return 0;
	}
	len = stun_build_response(out, cap, &m, from);
	if (len == 0) {
		st->unsupported++;
		return 0;
	}
	if (m.rfc5389)
		st->requests++;
	else
		st->classic++;
	return len;
}

struct stun_server *stun_server_new(const char *addr)
{
	struct stun_server *s = calloc(1, sizeof(*s));

	if (s == NULL)
		return NULL;
	s->addr = strdup(addr ? addr : ":3478");
	if (s->addr == NULL) {
		free(s);
		return NULL;
	}
	s->fd = -1;
	s->wake_fd = -1;
	pthread_mutex_init(&s->lock, NULL);
	return s;
}

static void *serve(void *arg)
{
	struct stun_server *s = arg;
	uint8_t in[2048], out[STUN_MAX_MSG];
	struct pollfd pf[2] = { { .fd = s->fd, .events = POLLIN },
				{ .fd = s->wake_fd, .events = POLLIN } };

	while (!atomic_load(&s->stop)) {
		if (poll(pf, 2, -1) < 0 && errno != EINTR)
			break;
		if (pf[1].revents)
			break;
		for (int burst = 0; burst < 256; burst++) {
			struct sockaddr_storage ss;
			socklen_t sl = sizeof(ss);
			struct endpoint from;
			ssize_t n;
			size_t len;

			n = recvfrom(s->fd, in, sizeof(in), MSG_TRUNC, (struct sockaddr *)&ss, &sl);
			if (n < 0)
				break;
			if (endpoint_from_sockaddr((struct sockaddr *)&ss, &from) != 0)
				continue;
			relay_endpoint_unmap(&from);
			pthread_mutex_lock(&s->lock);
			len = (size_t)n > sizeof(in) ? 0 :
			      stun_server_handle(&s->stats, in, (size_t)n, &from, out, sizeof(out));
			if ((size_t)n > sizeof(in))
				s->stats.garbage++;
			pthread_mutex_unlock(&s->lock);
			if (len == 0) {
				if (log_ratelimit_ok(&s->rl, 10, 3))
					log_debug("msg=\"stun: dropped datagram\" len=%zd", n);
				continue;
			}
			if (sendto(s->fd, out, len, 0, (struct sockaddr *)&ss, sl) < 0) {
				pthread_mutex_lock(&s->lock);
				s->stats.send_errors++;
				pthread_mutex_unlock(&s->lock);
			}
		}
	}
	return NULL;
}

int stun_server_start(struct stun_server *s)
{
	int r;

	if (s->running)
		return ERR_INVALID;
	r = relay_udp_bind(s->addr);
	if (r < 0)
		return r;
	s->fd = r;
	s->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (s->wake_fd < 0)
		return ERR_IO;
	if (pthread_create(&s->thread, NULL, serve, s) != 0)
		return ERR_INTERNAL;
	s->running = true;
	log_info("msg=\"stun: listening\" addr=%s port=%u", s->addr, relay_local_port(s->fd));
	return 0;
}

uint16_t stun_server_port(const struct stun_server *s)
{
	return s->fd >= 0 ? relay_local_port(s->fd) : 0;
}

void stun_server_stats(const struct stun_server *s, struct stun_server_stats *out)
{
	pthread_mutex_lock((pthread_mutex_t *)&s->lock);
	*out = s->stats;
	pthread_mutex_unlock((pthread_mutex_t *)&s->lock);
}

int stun_server_metrics(const struct stun_server *s, struct buf *out)
{
	struct stun_server_stats st;

	stun_server_stats(s, &st);
	return buf_printf(out,
		"# TYPE wiremesh_stun_requests_total counter\n"
		"wiremesh_stun_requests_total{kind=\"rfc5389\"} %llu\n"
		"wiremesh_stun_requests_total{kind=\"rfc3489\"} %llu\n"
		"# TYPE wiremesh_stun_dropped_total counter\n"
		"wiremesh_stun_dropped_total{reason=\"garbage\"} %llu\n"
		"wiremesh_stun_dropped_total{reason=\"unsupported\"} %llu\n"
		"wiremesh_stun_dropped_total{reason=\"send_error\"} %llu\n",
		(unsigned long long)st.requests, (unsigned long long)st.classic,
		(unsigned long long)st.garbage, (unsigned long long)st.unsupported,
		(unsigned long long)st.send_errors);
}

void stun_server_free(struct stun_server *s)
{
	if (s == NULL)
		return;
	if (s->running) {
		uint64_t one = 1;

		atomic_store(&s->stop, true);
		if (write(s->wake_fd, &one, sizeof(one)) < 0)
			log_warn("msg=\"stun: wake failed\"");
		pthread_join(s->thread, NULL);
	}
	if (s->fd >= 0)
		close(s->fd);
	if (s->wake_fd >= 0)
		close(s->wake_fd);
	pthread_mutex_destroy(&s->lock);
	free(s->addr);
	free(s);
}
