/* SPDX-License-Identifier: MIT */
/*
 * TUN offloads done by hand: the virtio_net_hdr a TUN opened with
 * IFF_VNET_HDR puts in front of every packet, splitting the TCP "super
 * packets" the kernel hands us with TSO into MTU-sized segments (IPv4 and
 * IPv6, headers and checksums rewritten as the kernel's tcp_gso_segment
 * would), completing partial checksums, and the reverse on the way in:
 * coalescing consecutive segments of one TCP flow into one super packet
 * (GRO) so the kernel sees a few large packets instead of many small ones.
 * Pure functions over byte buffers; no system calls.
 */
#ifndef WG_OFFLOAD_H
#define WG_OFFLOAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

enum {
	WG_VNET_HDR_LEN = 10,
	WG_VNET_F_NEEDS_CSUM = 1,
	WG_VNET_F_DATA_VALID = 2,
	WG_VNET_GSO_NONE = 0,
	WG_VNET_GSO_TCPV4 = 1,
	WG_VNET_GSO_UDP = 3,
	WG_VNET_GSO_TCPV6 = 4,
	WG_VNET_GSO_UDP_L4 = 5,
	WG_VNET_GSO_ECN = 0x80,
	WG_GRO_MAX_SEGS = 64,
};

/* struct virtio_net_hdr, little-endian on the wire (TUN's default). */
struct wg_vnet_hdr {
	uint8_t flags, gso_type;
	uint16_t hdr_len, gso_size, csum_start, csum_offset;
};

void wg_vnet_hdr_get(struct wg_vnet_hdr *h, const uint8_t b[static WG_VNET_HDR_LEN]);
void wg_vnet_hdr_put(uint8_t b[static WG_VNET_HDR_LEN], const struct wg_vnet_hdr *h);

/* Internet checksum pieces: a running 64-bit sum over bytes in memory order
 * and its fold into the 16-bit one's complement sum (not inverted). Store
 * the result with memcpy (it is in memory order, not host order). */
uint64_t wg_csum_partial(const uint8_t *p, size_t len, uint64_t sum);
uint16_t wg_csum_fold(uint64_t sum);
/* wg_csum_partial that also copies the bytes to `dst` (one pass). */
uint64_t wg_csum_copy(uint8_t *dst, const uint8_t *src, size_t len, uint64_t sum);

/*
 * Iterator over the segments of one packet read from TUN (after its vnet
 * header). A packet without GSO is one segment (its partial checksum
 * completed when the header asks); a TCPv4/TCPv6 GSO packet yields
 * ceil(payload / gso_size) segments, each with fresh lengths, IPv4 id and
 * header checksum, TCP sequence number, flags (FIN/PSH only on the last,
 * CWR only on the first) and a full TCP checksum. `pkt` is borrowed until
 * the iteration ends.
 */
struct wg_tso {
	const uint8_t *pkt;
	size_t len;
	size_t l3len, hlen;		/* IP header length, IP + TCP header length */
	size_t seg, off;		/* payload bytes per segment, payload consumed */
	unsigned index, count;
	bool gso, v6, csum;
	uint16_t csum_start, csum_offset;
};

/* Returns the number of segments (>= 1), or ERR_INVALID for a header or
 * packet that does not make sense (unknown GSO type, bad offsets). */
int wg_tso_begin(struct wg_tso *t, const struct wg_vnet_hdr *h, const uint8_t *pkt,
		 size_t len) WM_MUST_CHECK;
/* Writes the next segment to `out` (room for `cap` bytes); returns its
 * length, 0 when done or when it does not fit. */
size_t wg_tso_next(struct wg_tso *t, uint8_t *out, size_t cap);
/* Length of the segment wg_tso_next would write next; 0 when done. */
size_t wg_tso_peek(const struct wg_tso *t);

/*
 * GRO: groups packets bound for the TUN device. Packets are added in arrival
 * order; each either extends the newest group of its TCP flow (the next
 * in-sequence segment of the same size, same headers but sequence number
 * and PSH) or starts a group. Groups of other flows may be written in any
 * order relative to each other, order inside a flow is kept.
 */
struct wg_gro_pkt {
	uint8_t *pkt;			/* headroom of WG_VNET_HDR_LEN bytes before it */
	size_t len;
	int next;			/* next packet of the group, -1 = last */
};

struct wg_gro_group {
	int first, last;
	unsigned nsegs;
	size_t total;			/* IP length of the merged packet */
	size_t hlen, l3len;		/* header lengths of the first packet */
	size_t seg;			/* payload length of the first packet */
	uint32_t next_seq;
	bool tcp, open, v6;
};

struct wg_gro {
	struct wg_gro_pkt *pkts;
	struct wg_gro_group *groups;
	unsigned cap, npkts, ngroups;
};

/* `cap` packets at most per flush; pkts/groups arrays of `cap` each are
 * provided by the caller. */
void wg_gro_init(struct wg_gro *g, struct wg_gro_pkt *pkts, struct wg_gro_group *groups,
		 unsigned cap);
/* Adds one IP packet (`pkt` must have WG_VNET_HDR_LEN writable bytes before
 * it, and stays borrowed until wg_gro_reset). False when full. */
bool wg_gro_add(struct wg_gro *g, uint8_t *pkt, size_t len);
/* Prepares group `i` for writing: rewrites the first packet's IP/TCP headers
 * for the merged length, writes the vnet header in front of it and fills
 * `iov` (at most WG_GRO_MAX_SEGS + 1 entries) with pointers/lengths as
 * (base, len) pairs. Returns the number of pieces. */
unsigned wg_gro_prepare(struct wg_gro *g, unsigned i, uint8_t **base, size_t *lens);
void wg_gro_reset(struct wg_gro *g);

#endif
