/* SPDX-License-Identifier: MIT */
/*
 * Interface configuration for the agent's TUN device: its addresses and the
 * routes for the tailnet ranges (100.64.0.0/10, fd7a:115c:a1e0::/48). Runs
 * iproute2's `ip` (no shell, argv only), as wg/tun.c does, which keeps
 * netlink encoding out of the agent. Every call is idempotent (`replace`).
 */
#ifndef WM_NETCFG_H
#define WM_NETCFG_H

#include "common/addr.h"
#include "common/err.h"

/* Brings the link up with the MTU. */
int netcfg_link_up(const char *ifname, int mtu) WM_MUST_CHECK;
/* Makes `a` (a /32 or /128 host address) an address of ifname. */
int netcfg_addr_add(const char *ifname, const struct ip_addr *a) WM_MUST_CHECK;
int netcfg_addr_del(const char *ifname, const struct ip_addr *a) WM_MUST_CHECK;
/* Routes 100.64.0.0/10 and fd7a:115c:a1e0::/48 into ifname. */
int netcfg_routes_add(const char *ifname) WM_MUST_CHECK;
/* Removes every address (and so every route) of ifname; errors ignored. */
void netcfg_flush(const char *ifname);

#endif
