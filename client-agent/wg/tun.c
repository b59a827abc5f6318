// SPDX-License-Identifier: MIT
/*
 * TUN creation through TUNSETIFF, MTU and flags through SIOCSIFMTU and
 * SIOCSIFFLAGS on a throwaway datagram socket, addresses and routes by
 * running iproute2 without a shell.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/if_tun.h>
#include <spawn.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "client-agent/wg/tun.h"
#include "common/util.h"

extern char **environ;

static int
tun_open_flags(const char *name, char out_name[static IFNAMSIZ], int *fd_out, short flags)
{
	struct ifreq ifr;
	int fd;

	*fd_out = -1;
	if (strlen(name) >= IFNAMSIZ)
		return ERR_INVALID;
	fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0)
		return ERR_IO;
	memset(&ifr, 0, sizeof(ifr));
	ifr.ifr_flags = flags;
	str_copy(ifr.ifr_name, name, IFNAMSIZ);
	if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
		int e = errno;

		close(fd);
		return e == EBUSY ? ERR_EXISTS : ERR_IO;
	}
	str_copy(out_name, ifr.ifr_name, IFNAMSIZ);
	*fd_out = fd;
	return 0;
}

int
wg_tun_open(const char *name, char out_name[static IFNAMSIZ], int *fd_out)
{
	return tun_open_flags(name, out_name, fd_out, IFF_TUN | IFF_NO_PI);
}

int
wg_tun_open_offload(const char *name, char out_name[static IFNAMSIZ], int *fd_out, bool *vnet)
{
	int r;

	*vnet = false;
	r = tun_open_flags(name, out_name, fd_out, IFF_TUN | IFF_NO_PI | IFF_VNET_HDR);
	if (r == ERR_IO)
		return wg_tun_open(name, out_name, fd_out);
	if (r != 0)
		return r;
	*vnet = true;
	/* TSO needs checksum offload; without either the kernel still sends
	 * (and accepts) a vnet header, only never a super packet. */
	if (ioctl(*fd_out, TUNSETOFFLOAD, TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6) != 0)
		(void)!ioctl(*fd_out, TUNSETOFFLOAD, 0);
	return 0;
}

bool
wg_tun_fd_has_vnet_hdr(int fd)
{
	struct ifreq ifr;

	memset(&ifr, 0, sizeof(ifr));
	if (fd < 0 || ioctl(fd, TUNGETIFF, &ifr) != 0)
		return false;
	return (ifr.ifr_flags & IFF_VNET_HDR) != 0;
}

static int
ifreq_ioctl(const char *name, unsigned long req, struct ifreq *ifr)
{
	int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0), r = 0;

	if (s < 0)
		return ERR_IO;
	str_copy(ifr->ifr_name, name, IFNAMSIZ);
	if (ioctl(s, req, ifr) < 0)
		r = errno == ENODEV ? ERR_NOT_FOUND : ERR_IO;
	close(s);
	return r;
}

int
wg_tun_set_mtu(const char *name, int mtu)
{
	struct ifreq ifr;

	if (mtu < 576 || mtu > 65535)
		return ERR_INVALID;
	memset(&ifr, 0, sizeof(ifr));
	ifr.ifr_mtu = mtu;
	return ifreq_ioctl(name, SIOCSIFMTU, &ifr);
}

int
wg_tun_get_mtu(const char *name, int *mtu)
{
	struct ifreq ifr;
	int r;

	memset(&ifr, 0, sizeof(ifr));
	if ((r = ifreq_ioctl(name, SIOCGIFMTU, &ifr)) != 0)
		return r;
	*mtu = ifr.ifr_mtu;
	return 0;
}

int
wg_tun_set_up(const char *name, bool up)
{
	struct ifreq ifr;
	int r;

	memset(&ifr, 0, sizeof(ifr));
	if ((r = ifreq_ioctl(name, SIOCGIFFLAGS, &ifr)) != 0)
		return r;
	if (up)
		ifr.ifr_flags |= IFF_UP;
	else
		ifr.ifr_flags &= ~IFF_UP;
	return ifreq_ioctl(name, SIOCSIFFLAGS, &ifr);
}

static int
run_ip(const char *verb, const char *name, const struct ip_prefix *p)
{
	char pfx[ADDR_STR_MAX], ifn[IFNAMSIZ];
	char *argv[] = { "ip", p->addr.family == AF_INET6 ? "-6" : "-4", (char *)verb, "add",
			 pfx, "dev", ifn, NULL };
	pid_t pid;
	int st = 0;

	prefix_fmt(pfx, p);
	str_copy(ifn, name, sizeof(ifn));
	if (posix_spawnp(&pid, "ip", NULL, NULL, argv, environ) != 0)
		return ERR_IO;
	while (waitpid(pid, &st, 0) < 0)
		if (errno != EINTR)
			return ERR_IO;
	return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : ERR_IO;
}

int
wg_tun_add_address(const char *name, const struct ip_prefix *p)
{
	return run_ip("addr", name, p);
}

int
wg_tun_add_route(const char *name, const struct ip_prefix *p)
{
	return run_ip("route", name, p);
}
