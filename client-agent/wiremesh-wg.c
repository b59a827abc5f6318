// SPDX-License-Identifier: MIT
/*
 * wiremesh-wg: the engine as a standalone userspace WireGuard, a drop-in for
 * wireguard-go. `wiremesh-wg [-f|--foreground] IFNAME` creates the TUN device
 * and the UAPI socket /var/run/wireguard/IFNAME.sock, daemonizes (unless -f
 * or WG_PROCESS_FOREGROUND=1) once both exist, and serves `wg` until the TUN
 * device or the socket disappears, or SIGTERM/SIGINT arrives. LOG_LEVEL
 * (error, warn, info, debug, or wireguard-go's verbose/silent) sets logging.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "client-agent/wg/device.h"
#include "client-agent/wg/tun.h"
#include "client-agent/wg/uapi.h"
#include "common/log.h"

#define SOCK_DIR "/var/run/wireguard"

enum { CONN_TIMEOUT_S = 5 };

static void
usage(void)
{
	fprintf(stderr, "usage: wiremesh-wg [-f|--foreground] INTERFACE-NAME\n");
	exit(2);
}

static int
uapi_listen(const char *path)
{
	struct sockaddr_un sun;
	mode_t old;
	int fd, r;

	if (mkdir(SOCK_DIR, 0755) != 0 && errno != EEXIST)
		return -1;
	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	if (strlen(path) >= sizeof(sun.sun_path))
		return -1;
	strcpy(sun.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	old = umask(077);
	r = bind(fd, (struct sockaddr *)&sun, sizeof(sun));
	if (r != 0 && errno == EADDRINUSE) {
		int c = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

		if (c >= 0 && connect(c, (struct sockaddr *)&sun, sizeof(sun)) != 0) {
			unlink(path);
			r = bind(fd, (struct sockaddr *)&sun, sizeof(sun));
		} else {
			errno = EADDRINUSE;
		}
		if (c >= 0)
			close(c);
	}
	umask(old);
	if (r != 0 || listen(fd, 16) != 0) {
		close(fd);
		return -1;
	}
	return fd;
}

/* Reads one request up to its blank line. Returns its length (blank line
 * excluded), 0 on EOF, -1 on error. `buf` grows; `have` carries leftovers. */
static ssize_t
read_request(int fd, char **buf, size_t *cap, size_t *have)
{
	for (;;) {
		char *end = NULL;

		if (*have >= 6 && memcmp(*buf, "get=1\n", 6) == 0 && *have >= 7 &&
		    (*buf)[6] == '\n')
			return 6;
		for (size_t i = 1; i < *have; i++) {
			if ((*buf)[i] == '\n' && (*buf)[i - 1] == '\n') {
				end = *buf + i;
				break;
			}
		}
		if (end)
			return end - *buf;
		if (*have == *cap) {
			size_t ncap = *cap * 2;
			char *nb;

			if (ncap > WG_UAPI_MAX_REQUEST)
				return -1;
			nb = realloc(*buf, ncap);
			if (nb == NULL)
				return -1;
			*buf = nb;
			*cap = ncap;
		}
		ssize_t n = read(fd, *buf + *have, *cap - *have);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return *have ? -1 : 0;
		*have += (size_t)n;
	}
}

static void
serve_conn(struct wg_device *dev, int fd)
{
	struct timeval tv = { .tv_sec = CONN_TIMEOUT_S };
	size_t cap = 4096, have = 0;
	char *buf = malloc(cap);

	(void)setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	(void)setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	while (buf) {
		ssize_t n = read_request(fd, &buf, &cap, &have);
		char *resp = NULL;
		size_t rlen = 0, off = 0, used;

		if (n <= 0)
			break;
		if (wg_uapi_handle(dev, buf, (size_t)n, &resp, &rlen) != 0)
			break;
		while (off < rlen) {
			ssize_t w = write(fd, resp + off, rlen - off);

			if (w <= 0)
				break;
			off += (size_t)w;
		}
		memset(resp, 0, rlen);
		free(resp);
		if (off < rlen)
			break;
		/* drop the request and its blank line */
		used = (size_t)n + 1;
		if (used > have)
			used = have;
		memset(buf, 0, used);
		memmove(buf, buf + used, have - used);
		have -= used;
	}
	if (buf) {
		memset(buf, 0, cap);
		free(buf);
	}
	close(fd);
}

static void
set_log_level(void)
{
	const char *l = getenv("LOG_LEVEL");
	enum log_level lv = LOG_ERROR;

	if (l) {
		if (strcmp(l, "verbose") == 0)
			lv = LOG_INFO;
		else if (strcmp(l, "silent") == 0)
			lv = LOG_ERROR;
		else if (log_level_parse(l, &lv) != 0)
			lv = LOG_ERROR;
	}
	log_set_level(lv);
	log_set_prefix("wiremesh-wg");
}

int
main(int argc, char **argv)
{
	const char *fg_env = getenv("WG_PROCESS_FOREGROUND");
	bool foreground = fg_env && strcmp(fg_env, "1") == 0;
	char ifname[IFNAMSIZ], path[128];
	struct stat st_sock;
	struct wg_device *dev = NULL;
	int tun_fd = -1, lfd, sfd, ready[2] = { -1, -1 }, mtu = WG_DEFAULT_MTU;
	bool vnet = false;
	const char *name = NULL;
	sigset_t mask;
	int r;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
			printf("usage: wiremesh-wg [-f|--foreground] INTERFACE-NAME\n\n"
			    "Userspace WireGuard (drop-in for wireguard-go): creates the TUN device\n"
			    "INTERFACE-NAME and the UAPI socket " SOCK_DIR "/INTERFACE-NAME.sock;\n"
			    "configure it with wg(8) and ip(8). Detaches unless -f is given.\n\n"
			    "Environment: WG_PROCESS_FOREGROUND=1 (same as -f),\n"
			    "LOG_LEVEL=error|warn|info|debug (or wireguard-go's verbose|silent),\n"
			    "WIREMESH_WG_OFFLOAD=0 (plain TUN: no TSO/GRO), WIREMESH_WG_UDP_GSO=0,\n"
			    "WIREMESH_WG_CRYPTO_THREADS=1 (no crypto helper threads).\n");
			return 0;
		}
		if (strcmp(argv[i], "-f") == 0 || strcmp(argv[i], "--foreground") == 0)
			foreground = true;
		else if (name == NULL && argv[i][0] != '-')
			name = argv[i];
		else
			usage();
	}
	if (name == NULL || strlen(name) >= IFNAMSIZ || strchr(name, '/'))
		usage();
	set_log_level();
	/* WIREMESH_WG_OFFLOAD=0 opens a plain TUN (no TSO/GRO), for comparison. */
	if (getenv("WIREMESH_WG_OFFLOAD") && strcmp(getenv("WIREMESH_WG_OFFLOAD"), "0") == 0)
		r = wg_tun_open(name, ifname, &tun_fd);
	else
		r = wg_tun_open_offload(name, ifname, &tun_fd, &vnet);
	if (r != 0) {
		log_error("msg=\"cannot create TUN device\" interface=%s err=%s", name, err_str(r));
		return 1;
	}
	log_debug("msg=\"TUN device open\" interface=%s offload=%s", ifname, vnet ? "yes" : "no");
	if (wg_tun_set_mtu(ifname, WG_DEFAULT_MTU) != 0)
		log_warn("msg=\"cannot set MTU\" interface=%s", ifname);
	snprintf(path, sizeof(path), SOCK_DIR "/%s.sock", ifname);
	lfd = uapi_listen(path);
	if (lfd < 0) {
		log_error("msg=\"cannot listen on UAPI socket\" path=%s errno=%d", path, errno);
		return 1;
	}
	if (stat(path, &st_sock) != 0)
		return 1;
	if (!foreground) {
		char c;
		pid_t pid;

		if (pipe(ready) != 0)
			return 1;
		pid = fork();
		if (pid < 0)
			return 1;
		if (pid > 0) {
			close(ready[1]);
			return read(ready[0], &c, 1) == 1 ? 0 : 1;
		}
		close(ready[0]);
		setsid();
		int nul = open("/dev/null", O_RDWR);

		if (nul >= 0) {
			dup2(nul, 0);
			dup2(nul, 1);
			if (getenv("LOG_LEVEL") == NULL)
				dup2(nul, 2);
			if (nul > 2)
				close(nul);
		}
	}
	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGHUP);
	sigaddset(&mask, SIGPIPE);
	pthread_sigmask(SIG_BLOCK, &mask, NULL);
	sfd = signalfd(-1, &mask, SFD_CLOEXEC);
	if ((r = wg_device_new(tun_fd, mtu, 0, &dev)) != 0) {
		log_error("msg=\"cannot start device\" err=%s", err_str(r));
		unlink(path);
		return 1;
	}
	if (getenv("WIREMESH_WG_UDP_GSO") && strcmp(getenv("WIREMESH_WG_UDP_GSO"), "0") == 0)
		wg_device_set_udp_gso(dev, false);
	log_info("msg=\"device started\" interface=%s port=%u", ifname,
		 wg_device_listen_port(dev));
	if (ready[1] >= 0) {
		(void)!write(ready[1], "R", 1);
		close(ready[1]);
	}
	for (;;) {
		struct pollfd pfd[2] = { { .fd = lfd, .events = POLLIN },
					 { .fd = sfd, .events = POLLIN } };
		struct stat st;
		int m;

		if (poll(pfd, 2, 1000) < 0 && errno != EINTR)
			break;
		if (pfd[1].revents) {
			log_info("msg=\"signal received, shutting down\"");
			break;
		}
		if (pfd[0].revents & POLLIN) {
			int c = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);

			if (c >= 0)
				serve_conn(dev, c);
		}
		if (wg_device_is_dead(dev)) {
			log_info("msg=\"TUN device gone, shutting down\"");
			break;
		}
		if (stat(path, &st) != 0 || st.st_ino != st_sock.st_ino) {
			log_info("msg=\"UAPI socket gone, shutting down\"");
			break;
		}
		if (wg_tun_get_mtu(ifname, &m) == 0 && m != mtu) {
			mtu = m;
			wg_device_set_mtu(dev, mtu);
		}
	}
	{
		struct stat st;

		if (stat(path, &st) == 0 && st.st_ino == st_sock.st_ino)
			unlink(path);
	}
	close(lfd);
	wg_device_free(dev);
	return 0;
}
