/* SPDX-License-Identifier: MIT */
/*
 * Subnet routes and exit nodes on the node (issue 8).
 *
 * Using routes (a client):
 *   - A peer's own addresses always go to WireGuard; the subnets it serves
 *     only with --accept-routes; its exit routes (0.0.0.0/0, ::/0) only when
 *     it is the selected --exit-node (routes_peer_allowed).
 *   - The OS side mirrors that with policy routing, as Tailscale does:
 *       pref 5710  fwmark 0x570000/0xff0000 lookup main   (the agent's own
 *                  sockets: control server, DERP, STUN, WireGuard UDP)
 *       pref 5730  lookup main suppress_prefixlength 0   (main's specific
 *                  routes, e.g. the LAN, win; its default route does not);
 *                  left out while an exit node is used without
 *                  --exit-node-allow-lan-access, so the LAN goes through
 *                  the exit node too
 *       pref 5770  lookup 57
 *     with table 57 holding the accepted subnets and, for an exit node, the
 *     default routes, all via the TUN. The agent marks its sockets with
 *     ROUTES_FWMARK at all times (inert without the rules).
 *
 * Offering routes (a router, --advertise-routes / --advertise-exit-node):
 *   net.ipv4.ip_forward / net.ipv6.conf.all.forwarding are switched on (the
 *   previous values are restored when routing stops) and an nftables table
 *   "inet wiremesh" masquerades mesh traffic leaving through another
 *   interface. The inbound packet filter already applies to every packet
 *   from the tunnel, forwarded ones included.
 *
 * Every command goes through struct routes_ops so that tests can record
 * them instead of changing the host.
 */
#ifndef WM_ROUTES_H
#define WM_ROUTES_H

#include <net/if.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "common/addr.h"
#include "common/err.h"

enum {
	ROUTES_MAX_ADVERTISED = 16,	/* as the server accepts */
	ROUTES_MAX_OS = 256,		/* subnets installed in the table */
	ROUTES_FWMARK = 0x00570000,
	ROUTES_FWMARK_MASK = 0x00ff0000,
	ROUTES_TABLE = 57,
	ROUTES_PREF_MARK = 5710,
	ROUTES_PREF_MAIN = 5730,
	ROUTES_PREF_TABLE = 5770,
	ROUTES_NAME_MAX = 64,
};

/*
 * Via grants (docs/policy.md): the server tells a source node, in its packet
 * filter, which routers carry a destination for it:
 *   {"Via":{"Dst":"10.44.0.0/16","Routers":[{"Addrs":["100.64.0.5/32"],
 *     "Route":"10.44.0.0/16"}]}}
 * The agent gives that destination to one of the listed routers (the first
 * one online) and takes any route inside it away from every other peer; for
 * "autogroup:internet" only the listed exit nodes keep their exit routes.
 */
enum { ROUTES_MAX_VIA = 64, ROUTES_MAX_VIA_ROUTERS = 16 };

struct routes_via_router {
	struct ip_addr a4, a6;
	struct ip_prefix route;
};

struct routes_via {
	struct ip_prefix dst;
	bool internet;
	struct routes_via_router r[ROUTES_MAX_VIA_ROUTERS];
	size_t nr;
	int chosen;			/* index into r, -1: none yet */
};

/* Reads the "Via" entries of a packet filter (other entries are skipped).
 * Returns how many were written (at most max). */
size_t routes_via_from_filter(json_t *filter, struct routes_via *out, size_t max);

/* Is the peer with these addresses router k of v? */
bool routes_via_is_router(const struct routes_via *v, size_t k, const struct ip_addr *addrs,
			  size_t naddrs);

/* Rewrites a peer's netmap allowed IPs (in[n]) for the via directives: drops
 * subnet routes inside a via destination unless the peer is that
 * destination's chosen router, drops exit routes when an internet via
 * directive does not list the peer, and adds the routes of the destinations
 * it is chosen for. Returns the count written to out (at most max). */
size_t routes_via_apply(const struct ip_prefix *in, size_t n, const struct routes_via *via,
			size_t nvia, const struct ip_addr *addrs, size_t naddrs,
			struct ip_prefix *out, size_t max);

/* What `wiremesh up` asked for. */
struct routes_prefs {
	struct ip_prefix advertise[ROUTES_MAX_ADVERTISED];	/* subnets */
	size_t nadvertise;
	bool advertise_exit;
	bool accept_routes;
	char exit_node[ROUTES_NAME_MAX];	/* peer name or address, "" none */
	bool exit_allow_lan;
};

/* Parses "198.51.100.0/24,2001:db8::/64" (host bits must be clear; /0 is
 * refused: that is --advertise-exit-node). Fills why on error. */
int routes_parse_list(const char *s, struct ip_prefix *out, size_t max, size_t *n,
		      char *why, size_t whylen) WM_MUST_CHECK;

/* The route fields of an `up` request: "advertise_routes":[..],
 * "advertise_exit_node", "accept_routes", "exit_node", "exit_node_allow_lan_access".
 * Absent fields are off. ERR_INVALID with why. */
int routes_prefs_from_json(json_t *o, struct routes_prefs *p, char *why, size_t whylen)
	WM_MUST_CHECK;
/* The same fields as an object (new reference). */
json_t *routes_prefs_to_json(const struct routes_prefs *p);
/* "advertised_routes" for register and endpoint reports: the subnets, and
 * 0.0.0.0/0 and ::/0 for an exit node. New reference. */
json_t *routes_advertised_json(const struct routes_prefs *p);

/* True for 0.0.0.0/0 and ::/0. */
bool routes_is_exit(const struct ip_prefix *p);

/*
 * Which of a peer's allowed IPs (from the netmap) go to WireGuard: its own
 * addresses (host prefixes equal to one of addrs) always, exit routes only
 * when use_as_exit, anything else (subnets) only with accept_routes. Writes
 * at most nallowed prefixes to out; returns how many.
 */
size_t routes_peer_allowed(const struct ip_prefix *allowed, size_t nallowed,
			   const struct ip_addr *addrs, size_t naddrs, bool accept_routes,
			   bool use_as_exit, struct ip_prefix *out);

/* What the OS should route into the TUN (beyond the tailnet ranges). */
struct routes_want {
	struct ip_prefix subnets[ROUTES_MAX_OS];
	size_t nsubnets;
	bool exit4, exit6;		/* default routes via the TUN */
	bool allow_lan;
	/* Router side: forwarding and masquerading per family. */
	bool forward4, forward6;
};

/* Adds the non-address, non-exit prefixes of a peer's WireGuard allowed IPs
 * to w->subnets (deduplicated) and sets exit4/exit6 for exit routes. */
void routes_want_add_peer(struct routes_want *w, const struct ip_prefix *wg_allowed, size_t n,
			  const struct ip_addr *addrs, size_t naddrs);

struct routes_ops {
	/* Runs argv[0] with argv (no shell); 0 on exit status 0. err gets the
	 * first line of its stderr. */
	int (*run)(void *ctx, const char *const argv[], char *err, size_t errlen);
	/* Reads / writes a /proc/sys file (value without newline). */
	int (*sysctl_get)(void *ctx, const char *path, char *val, size_t len);
	int (*sysctl_set)(void *ctx, const char *path, const char *val);
	void *ctx;
};

/* What is installed now. Zero it (or routes_os_init) before first use. */
struct routes_os {
	struct routes_ops ops;
	char ifname[IFNAMSIZ];
	struct ip_prefix subnets[ROUTES_MAX_OS];
	size_t nsubnets;
	bool exit4, exit6;
	bool rules4, rules6, main_rule4, main_rule6;
	bool fwd4, fwd6;		/* we switched forwarding on */
	char old_fwd4[8], old_fwd6[8];
	bool nat;
	bool cleaned;			/* stale state of an earlier run removed */
	char err[512];			/* last router error, "" if none */
};

/* The real host (fork/exec, /proc/sys). */
void routes_os_init(struct routes_os *st, const char *ifname);

/*
 * Makes the host match `w`: table 57 routes, the ip rules, forwarding and
 * the masquerade table. Only differences are applied. Returns 0, or
 * ERR_IO with st->err saying what failed (e.g. that forwarding cannot be
 * enabled); the rest is still applied.
 */
int routes_os_apply(struct routes_os *st, const struct routes_want *w) WM_MUST_CHECK;

/* Removes everything this module installs (also what an earlier, crashed
 * run left: rules by preference, table 57, the nftables table) and
 * restores forwarding if we changed it. */
void routes_os_reset(struct routes_os *st);

#endif
