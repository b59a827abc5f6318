/* SPDX-License-Identifier: MIT */
/*
 * Pointing the operating system's DNS at the agent's resolver, and back.
 * With systemd-resolved managing /etc/resolv.conf (its stub 127.0.0.53 in
 * it and resolvectl present) the tunnel interface gets per-link DNS
 * servers and routing domains through resolvectl, and `resolvectl revert`
 * undoes it. Otherwise /etc/resolv.conf is rewritten in place (it may be
 * a bind mount, as /etc/netns/NAME/resolv.conf is under `ip netns exec`)
 * after its exact bytes (or, for a symlink, its target) were saved in the
 * state directory; restoring puts them back and removes the copy. A copy
 * left behind by a crash is restored at the next start.
 */
#ifndef WM_DNS_OS_H
#define WM_DNS_OS_H

#include <stdbool.h>
#include <stddef.h>

#include "client-agent/resolver.h"
#include "common/addr.h"

enum dns_os_mode { DNS_OS_NONE, DNS_OS_FILE, DNS_OS_RESOLVED };

/* Which mechanism this host uses. */
enum dns_os_mode dns_os_detect(void);
const char *dns_os_mode_name(enum dns_os_mode m);

/* Whether a config asks for the OS to use the resolver at all. */
bool dns_os_wanted(const struct resolver_config *c);

/* Points the OS at the resolver for config c (idempotent). */
int dns_os_apply(enum dns_os_mode m, const char *state_dir, const char *ifname,
		 const struct resolver_config *c, char *why, size_t whylen) WM_MUST_CHECK;
/* Undoes dns_os_apply (also what a crash left behind); quiet when there is
 * nothing to undo. Returns whether something was restored. */
bool dns_os_restore(enum dns_os_mode m, const char *state_dir, const char *ifname);

/* The host's own nameservers: from the saved resolv.conf when the agent
 * replaced it, else the current one (resolved: its upstream list). The
 * resolver's addresses are left out. */
size_t dns_os_host_resolvers(enum dns_os_mode m, const char *state_dir, struct ip_addr *out,
			     size_t max);

#endif
