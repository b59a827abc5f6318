/* SPDX-License-Identifier: MIT */
/* Listen-address parsing and socket set-up shared by the relay and its clients. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "common/log.h"
#include "relay/relay_net.h"

static bool have_ipv6(void)
{
	int fd = socket(AF_INET6, SOCK_DGRAM, 0);

	if (fd < 0)
		return false;
	close(fd);
	return true;
}

int relay_addr_parse(const char *s, struct sockaddr_storage *ss, socklen_t *len)
{
	struct endpoint e;
	char *end;
	long port;

	if (s == NULL)
		return ERR_INVALID;
	if (s[0] == ':') {
		port = strtol(s + 1, &end, 10);
		if (end == s + 1 || *end != 0 || port < 0 || port > 65535)
			return ERR_INVALID;
		memset(ss, 0, sizeof(*ss));
		if (have_ipv6()) {
			struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;

			sin6->sin6_family = AF_INET6;
			sin6->sin6_addr = in6addr_any;
			sin6->sin6_port = htons((uint16_t)port);
			*len = sizeof(*sin6);
		} else {
			struct sockaddr_in *sin = (struct sockaddr_in *)ss;

			sin->sin_family = AF_INET;
			sin->sin_addr.s_addr = htonl(INADDR_ANY);
			sin->sin_port = htons((uint16_t)port);
			*len = sizeof(*sin);
		}
		return 0;
	}
	{
		/* endpoint_parse() refuses port 0, which listeners want */
		char host[ADDR_STR_MAX];
		const char *colon = strrchr(s, ':');
		size_t hl;

		if (colon == NULL)
			return ERR_INVALID;
		hl = (size_t)(colon - s);
		if (hl >= 2 && s[0] == '[' && s[hl - 1] == ']') {
			s++;
			hl -= 2;
		}
		if (hl == 0 || hl >= sizeof(host))
			return ERR_INVALID;
		memcpy(host, s, hl);
		host[hl] = 0;
		port = strtol(colon + 1, &end, 10);
		if (end == colon + 1 || *end != 0 || port < 0 || port > 65535)
			return ERR_INVALID;
		memset(&e, 0, sizeof(e));
		if (addr_parse(host, &e.addr) != 0)
			return ERR_INVALID;
		e.port = (uint16_t)port;
	}
	*len = endpoint_to_sockaddr(&e, ss);
	return 0;
}

int relay_set_nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);

	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
		return ERR_IO;
	return 0;
}

static int bind_socket(const char *addr, int type)
{
	struct sockaddr_storage ss;
	socklen_t len;
	int fd, one = 1, zero = 0;

	if (relay_addr_parse(addr, &ss, &len) != 0)
		return ERR_INVALID;
	fd = socket(ss.ss_family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return ERR_IO;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (ss.ss_family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
	if (bind(fd, (struct sockaddr *)&ss, len) < 0) {
		log_error("msg=\"bind failed\" addr=%s err=\"%s\"", addr, strerror(errno));
		close(fd);
		return ERR_IO;
	}
	return fd;
}

int relay_tcp_listen(const char *addr, int backlog)
{
	int fd = bind_socket(addr, SOCK_STREAM);

	if (fd < 0)
		return fd;
	if (listen(fd, backlog) < 0) {
		close(fd);
		return ERR_IO;
	}
	return fd;
}

int relay_udp_bind(const char *addr)
{
	return bind_socket(addr, SOCK_DGRAM);
}

uint16_t relay_local_port(int fd)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	struct endpoint e;

	if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0 ||
	    endpoint_from_sockaddr((struct sockaddr *)&ss, &e) != 0)
		return 0;
	return e.port;
}

void relay_endpoint_unmap(struct endpoint *e)
{
	static const uint8_t pfx[12] = { 0,0,0,0,0,0,0,0,0,0,0xff,0xff };

	if (e->addr.family == AF_INET6 && memcmp(e->addr.b, pfx, 12) == 0) {
		memmove(e->addr.b, e->addr.b + 12, 4);
		memset(e->addr.b + 4, 0, 12);
		e->addr.family = AF_INET;
	}
}

long relay_raise_nofile(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
		return -1;
	if (rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
			return -1;
	}
	return (long)rl.rlim_cur;
}
