/* SPDX-License-Identifier: MIT */
/*
 * Inbound packet filter for packets arriving from the tunnel, stateful.
 *
 * The netmap's "filter" is Tailscale's shape:
 *   [{"IPProto":[6,17,1,58],"Srcs":["100.64.0.1/32","*",...],
 *     "Dsts":[{"Net":"100.64.0.2/32","Ports":{"First":22,"Last":22}}]}]
 * ("*" in Srcs or Net means any; an absent IPProto means TCP, UDP, ICMP,
 * ICMPv6). A rule matches a packet when its protocol is listed, its source
 * is in a Src and its destination in a Dst whose port range holds the
 * destination port (ports are ignored for protocols without them).
 *
 * The conntrack remembers flows the node opened (TCP/UDP 5-tuples, ICMP echo
 * ids, IPv4 and IPv6) so their replies pass whatever the rules say, and the
 * last 64 inbound first fragments that passed (30 s), so the later fragments
 * of those packets pass too; other non-first fragments of TCP, UDP, SCTP and
 * ICMP cannot be judged and are DROP_MALFORMED.
 */
#ifndef WM_FILTER_H
#define WM_FILTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

struct wm_filter;			/* immutable once parsed; share across threads */

/* Parses the filter JSON (len bytes, need not be NUL-terminated). Returns 0
 * and a new filter in *out, or ERR_INVALID with a message in err. An empty
 * array is a filter that drops everything not established. */
int filter_parse(const char *json, size_t len, struct wm_filter **out,
		 char *err, size_t errlen) WM_MUST_CHECK;
/* filter_free(NULL) is a no-op. */
void filter_free(struct wm_filter *f);

struct conntrack;			/* bounded table, own lock, thread safe */

/* Idle expiry per protocol: the minimums NATs are held to (RFC 5382 for
 * established TCP, RFC 4787's recommendation for UDP, RFC 5508 for ICMP). */
enum { CONNTRACK_DEFAULT_MAX = 4096,
       CONNTRACK_TCP_IDLE_MS = 124 * 60 * 1000,	/* also SCTP */
       CONNTRACK_UDP_IDLE_MS = 5 * 60 * 1000,
       CONNTRACK_ICMP_IDLE_MS = 60 * 1000 };

/* A table holding at most max_entries flows (0 means CONNTRACK_DEFAULT_MAX);
 * when full, the least recently used flow is evicted. NULL on failure. */
struct conntrack *conntrack_new(size_t max_entries);
/* conntrack_free(NULL) is a no-op. */
void conntrack_free(struct conntrack *ct);

/* A packet this node sends into the tunnel (read from TUN): remembers the
 * flow so replies pass. Malformed or untracked packets are ignored. */
void conntrack_note_outbound(struct conntrack *ct, const uint8_t *ip, size_t len, int64_t now_ms);

enum filter_verdict { FILTER_ACCEPT = 0, FILTER_ACCEPT_ESTABLISHED, FILTER_DROP_POLICY,
		      FILTER_DROP_MALFORMED };

/* A decrypted packet arriving from the tunnel. f == NULL means allow all
 * (well-formed packets only). ct may be NULL (no state, no counting). */
enum filter_verdict filter_check_inbound(const struct wm_filter *f, struct conntrack *ct,
					 const uint8_t *ip, size_t len, int64_t now_ms);

struct filter_stats { uint64_t accepted, accepted_established, dropped_policy, dropped_malformed; };
/* filter_check_inbound counts into the conntrack's stats. */
void conntrack_stats(const struct conntrack *ct, struct filter_stats *out);

/* Added: number of flows currently in the table (tests, `debug`). */
size_t conntrack_count(const struct conntrack *ct);
/* Added: "DROP_POLICY" etc., for logs. */
const char *filter_verdict_str(enum filter_verdict v);

#endif
