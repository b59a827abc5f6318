// SPDX-License-Identifier: MIT
/*
 * TUN addresses and routes through `ip` (iproute2). The child gets argv
 * only, stdin/stdout on /dev/null; its stderr is kept for the log line.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "client-agent/netcfg.h"
#include "common/log.h"

static int
run_ip(const char *const argv[])
{
	int st, pfd[2];
	char msg[256] = "";
	ssize_t n;
	size_t got = 0;
	pid_t pid;

	if (pipe2(pfd, O_CLOEXEC) != 0)
		return ERR_IO;
	pid = fork();
	if (pid < 0) {
		close(pfd[0]);
		close(pfd[1]);
		return ERR_IO;
	}
	if (pid == 0) {
		int nul = open("/dev/null", O_RDWR);

		if (nul >= 0) {
			dup2(nul, 0);
			dup2(nul, 1);
		}
		dup2(pfd[1], 2);
		execvp("ip", (char *const *)argv);
		_exit(127);
	}
	close(pfd[1]);
	while (got < sizeof(msg) - 1 &&
	       (n = read(pfd[0], msg + got, sizeof(msg) - 1 - got)) != 0) {
		if (n < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		got += (size_t)n;
	}
	msg[got] = 0;
	close(pfd[0]);
	while (waitpid(pid, &st, 0) < 0)
		if (errno != EINTR)
			return ERR_IO;
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
		char *nl = strchr(msg, '\n');

		if (nl)
			*nl = 0;
		log_warn("msg=\"ip command failed\" cmd=\"%s %s %s\" err=\"%s\"", argv[1],
		    argv[2], argv[3] ? argv[3] : "", msg);
		return ERR_IO;
	}
	return 0;
}

int
netcfg_link_up(const char *ifname, int mtu)
{
	char m[16];
	const char *argv[] = { "ip", "link", "set", "dev", ifname, "up", "mtu", m, NULL };

	snprintf(m, sizeof(m), "%d", mtu);
	return run_ip(argv);
}

static int
addr_cmd(const char *verb, const char *ifname, const struct ip_addr *a)
{
	char s[ADDR_STR_MAX], p[ADDR_STR_MAX + 8];
	/* nodad: no duplicate address detection delay on a point-to-point TUN. */
	const char *argv[] = { "ip", a->family == AF_INET6 ? "-6" : "-4", "addr", verb, p,
			       "dev", ifname,
			       a->family == AF_INET6 && strcmp(verb, "replace") == 0 ? "nodad" : NULL,
			       NULL };

	addr_fmt(s, a);
	snprintf(p, sizeof(p), "%s/%d", s, a->family == AF_INET6 ? 128 : 32);
	return run_ip(argv);
}

int
netcfg_addr_add(const char *ifname, const struct ip_addr *a)
{
	return addr_cmd("replace", ifname, a);
}

int
netcfg_addr_del(const char *ifname, const struct ip_addr *a)
{
	return addr_cmd("del", ifname, a);
}

int
netcfg_routes_add(const char *ifname)
{
	const char *v4[] = { "ip", "-4", "route", "replace", "100.64.0.0/10", "dev", ifname, NULL };
	const char *v6[] = { "ip", "-6", "route", "replace", "fd7a:115c:a1e0::/48", "dev", ifname,
			     NULL };
	int r = run_ip(v4);
	int r6 = run_ip(v6);

	return r != 0 ? r : r6;
}

void
netcfg_flush(const char *ifname)
{
	const char *argv[] = { "ip", "addr", "flush", "dev", ifname, NULL };

	if (run_ip(argv) != 0)
		log_debug("msg=\"address flush failed\" dev=%s", ifname);
}
