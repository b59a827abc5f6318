/* SPDX-License-Identifier: MIT */
/*
 * The agent's DNS resolver (MagicDNS) at 100.100.100.100 and
 * fd7a:115c:a1e0::53, port 53, UDP and TCP. It has no socket of its own on
 * those addresses: the route of the tailnet prefixes sends packets for them
 * into the TUN device, the agent's TUN reader hands them to
 * resolver_input(), and the answers are written back to the TUN device as
 * IP packets from the service address. So the resolver is reachable only
 * through the tunnel interface, and only from this node's own tailnet
 * addresses (packets from any other source, e.g. forwarded from a LAN, are
 * dropped and counted). TCP is a small server-side state machine, enough
 * for DNS over TCP (RFC 7766): handshake, in-order data, answers, FIN; it
 * never retransmits (the TUN device does not lose packets).
 *
 * Answers: A/AAAA for NAME.base_domain (and a bare NAME) of the nodes the
 * netmap shows, PTR for their addresses, the extra records, NXDOMAIN for
 * other names under base_domain and other tailnet addresses; everything
 * else is forwarded: to the split nameservers of the longest matching
 * domain, else the global ones, else the host's original resolvers; one
 * upstream at a time with a per-try timeout, the others tried in turn,
 * TCP when an answer comes truncated, the query's EDNS0 record passed
 * through unchanged; SERVFAIL when nobody answers in time.
 *
 * Threads: one thread of its own does all the work (queries, upstream
 * sockets, TCP state). resolver_input() may be called from any thread and
 * never blocks (a full queue drops and counts); the setters copy under a
 * mutex.
 */
#ifndef WM_RESOLVER_H
#define WM_RESOLVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "common/addr.h"
#include "common/dnsname.h"
#include "common/err.h"

enum {
	RESOLVER_MAX_NS = 8,
	RESOLVER_MAX_SPLIT = 32,
	RESOLVER_MAX_SEARCH = 16,
	RESOLVER_MAX_EXTRA = 256,
	RESOLVER_TTL = 600,		/* seconds, local answers */
	RESOLVER_TRY_MS = 1000,		/* one upstream try */
	RESOLVER_GIVE_UP_MS = 3000,	/* then SERVFAIL */
	RESOLVER_MAX_PENDING = 256,	/* forwarded queries in flight */
	RESOLVER_MAX_TCP = 64,		/* client TCP connections */
	RESOLVER_QUEUE = 512,		/* packets from the TUN reader */
	RESOLVER_DEFAULT_RATE = 10000,	/* queries per second per source */
};

#define RESOLVER_ADDR4 "100.100.100.100"
#define RESOLVER_ADDR6 "fd7a:115c:a1e0::53"

struct resolver_config {
	bool magic_dns;
	char base_domain[DNSNAME_MAX];
	struct ip_addr global[RESOLVER_MAX_NS];
	size_t nglobal;
	struct {
		char domain[DNSNAME_MAX];
		struct ip_addr ns[RESOLVER_MAX_NS];
		size_t nns;
	} split[RESOLVER_MAX_SPLIT];
	size_t nsplit;
	char search[RESOLVER_MAX_SEARCH][DNSNAME_MAX];
	size_t nsearch;
	struct {
		char name[DNSNAME_MAX];
		struct ip_addr addr;
	} extra[RESOLVER_MAX_EXTRA];
	size_t nextra;
};

struct resolver_host {
	char name[64];			/* the node's DNS label */
	struct ip_addr a4, a6;		/* family 0: none */
};

struct resolver_stats {
	uint64_t queries, local, forwarded, nxdomain, servfail, formerr, truncated;
	uint64_t rate_limited, queue_drops, not_local, bad_packets, upstream_bad;
	uint64_t upstream_timeouts, tcp_fallbacks, tcp_conns, pending_full;
};

struct resolver;

/* tun_fd: where answers are written (borrowed; -1 for none, then answers
 * are only counted). rate: queries per second per source, 0 unlimited. */
int resolver_new(int tun_fd, unsigned rate, struct resolver **out) WM_MUST_CHECK;
void resolver_free(struct resolver *r);

/* Whether an IP packet is addressed to the resolver (either address). */
bool resolver_wants(const uint8_t *pkt, size_t len);
/* Queues an IP packet for the resolver thread (copied; never blocks). */
void resolver_input(struct resolver *r, const uint8_t *pkt, size_t len);

/* Reads the map's "dns" section; unknown or bad parts are skipped with a
 * warning. */
void resolver_config_from_json(json_t *dns, struct resolver_config *out);
void resolver_set_config(struct resolver *r, const struct resolver_config *c);
void resolver_get_config(struct resolver *r, struct resolver_config *out);
/* The names this node may see (self first), copied; and this node's own
 * addresses, the only sources it answers. */
void resolver_set_hosts(struct resolver *r, const struct resolver_host *h, size_t n,
			const struct ip_addr *self4, const struct ip_addr *self6);
/* The host's own resolvers (used when no global nameserver is set). */
void resolver_set_fallback(struct resolver *r, const struct ip_addr *ns, size_t n);
size_t resolver_get_fallback(struct resolver *r, struct ip_addr *ns, size_t max);
void resolver_stats(struct resolver *r, struct resolver_stats *out);

/* Answers one query message from the local data only (no forwarding):
 * returns the answer length, or 0 when the name would be forwarded.
 * For tests and the benchmark's reference. */
size_t resolver_answer_local(struct resolver *r, const uint8_t *q, size_t qlen,
			     uint8_t *out, size_t cap);

#endif
