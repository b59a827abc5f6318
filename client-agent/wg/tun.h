/* SPDX-License-Identifier: MIT */
/*
 * Linux TUN devices: the only file that touches /dev/net/tun and interface
 * ioctls. Addresses and routes go through `ip` (iproute2), which is always
 * present where TUN is used and keeps netlink encoding out of the engine.
 */
#ifndef WG_TUN_H
#define WG_TUN_H

#include <net/if.h>
#include <stdbool.h>

#include "common/addr.h"
#include "common/err.h"

/* Creates (or attaches to) TUN `name` (IFF_TUN|IFF_NO_PI); "" lets the kernel
 * pick. The actual name goes to `out_name`. The fd is non-blocking and
 * close-on-exec; the caller owns it. */
int wg_tun_open(const char *name, char out_name[static IFNAMSIZ], int *fd_out) WM_MUST_CHECK;
/* Same, with IFF_VNET_HDR and TSO/checksum offloads (TUNSETOFFLOAD) when the
 * kernel has them: reads then return a virtio_net_hdr and up to 64 KiB TCP
 * super packets, writes take a virtio_net_hdr (see offload.h). Falls back to
 * a plain TUN; `*vnet` tells which one it got. */
int wg_tun_open_offload(const char *name, char out_name[static IFNAMSIZ], int *fd_out,
			bool *vnet) WM_MUST_CHECK;
/* True when the TUN fd was opened with IFF_VNET_HDR. */
bool wg_tun_fd_has_vnet_hdr(int fd);
int wg_tun_set_mtu(const char *name, int mtu) WM_MUST_CHECK;
int wg_tun_get_mtu(const char *name, int *mtu) WM_MUST_CHECK;
int wg_tun_set_up(const char *name, bool up) WM_MUST_CHECK;
/* `ip addr add PREFIX dev NAME` / `ip route add PREFIX dev NAME`. */
int wg_tun_add_address(const char *name, const struct ip_prefix *p) WM_MUST_CHECK;
int wg_tun_add_route(const char *name, const struct ip_prefix *p) WM_MUST_CHECK;

#endif
