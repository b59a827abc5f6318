// SPDX-License-Identifier: MIT
/*
 * TUN addresses and routes through `ip` (iproute2), run by proc_run(); its
 * stderr goes into the log line when it fails.
 */
#include <stdio.h>
#include <string.h>

#include "client-agent/netcfg.h"
#include "common/log.h"
#include "common/proc.h"

static int
run_ip(const char *const argv[])
{
	char msg[256];

	if (proc_run(argv, msg, sizeof(msg)) != 0) {
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
