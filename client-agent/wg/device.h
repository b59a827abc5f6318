/* SPDX-License-Identifier: MIT */
/*
 * The WireGuard device: the API the node agent embeds and wiremesh-wg wraps.
 *
 * A device owns one UDP socket (dual-stack), optionally a TUN fd, a set of
 * peers with their allowed IPs, and three threads: TUN->UDP (encrypt), UDP->TUN
 * (decrypt, handshakes) and timers. Configuration calls may come from any
 * thread; they serialise against the data path with a device lock.
 *
 * Pluggable output: with wg_device_set_output() the embedding program sees
 * every datagram addressed to a peer and may carry it itself (e.g. over a
 * DERP relay), and receives datagrams on the shared socket that are not
 * WireGuard (path discovery, STUN). Datagrams that arrive by other means are
 * fed in with wg_device_input().
 *
 * Bad input of any kind is dropped and counted in struct wg_device_stats.
 */
#ifndef WG_DEVICE_H
#define WG_DEVICE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "client-agent/wg/messages.h"
#include "common/addr.h"
#include "common/err.h"

struct wg_device;

/* Return value of wg_output_ops.send asking the engine to use its socket. */
enum { WG_OUTPUT_UDP = 1 };

struct wg_output_ops {
	/* Optional. Every datagram for a peer (data, keepalive, handshake) passes
	 * here first, on an engine thread. `ep` is the peer's current endpoint or
	 * NULL when it has none. Return 0 when the callback took the datagram,
	 * WG_OUTPUT_UDP to let the engine send it to `ep` over UDP. Must not call
	 * back into configuration functions of this device. */
	int (*send)(void *arg, const uint8_t peer_public_key[static WG_KEY_LEN],
		    const struct endpoint *ep, const uint8_t *pkt, size_t len);
	/* Optional. A datagram on the socket that is not a WireGuard message. */
	void (*recv_other)(void *arg, const struct endpoint *from, const uint8_t *pkt,
			   size_t len);
	/* Optional. Receives decrypted IP packets instead of the TUN device. */
	void (*deliver)(void *arg, const uint8_t *pkt, size_t len);
	void *arg;
};

struct wg_device_stats {
	uint64_t rx_packets, rx_bytes, tx_packets, tx_bytes;
	uint64_t handshakes_initiated, handshakes_completed, cookie_replies_sent;
	/* drops by reason */
	uint64_t drop_short, drop_bad_type, drop_bad_length, drop_bad_mac1;
	uint64_t drop_handshake_invalid, drop_unknown_peer, drop_replayed_initiation;
	uint64_t drop_flood, drop_unknown_index, drop_key_expired, drop_decrypt;
	uint64_t drop_replay, drop_bad_ip, drop_not_allowed, drop_no_route;
	uint64_t drop_staged_overflow, drop_cookie_invalid, drop_send_error;
	uint64_t drop_ratelimit, other_packets;
};

enum wg_peer_flags {
	WG_PEER_REMOVE = 1 << 0,
	WG_PEER_UPDATE_ONLY = 1 << 1,
	WG_PEER_HAS_PSK = 1 << 2,
	WG_PEER_HAS_ENDPOINT = 1 << 3,
	WG_PEER_HAS_KEEPALIVE = 1 << 4,
	WG_PEER_REPLACE_ALLOWED_IPS = 1 << 5,
};

/* One peer change, as in wireguard-tools' struct wgpeer. */
struct wg_peer_config {
	uint8_t public_key[WG_KEY_LEN];
	unsigned flags;			/* enum wg_peer_flags */
	uint8_t preshared_key[WG_KEY_LEN];	/* all zero: none */
	struct endpoint endpoint;
	uint16_t persistent_keepalive;	/* seconds, 0 = off */
	const struct ip_prefix *allowed_ips;	/* added (after replacing, if asked) */
	size_t n_allowed_ips;
};

struct wg_peer_info {
	uint8_t public_key[WG_KEY_LEN];
	uint8_t preshared_key[WG_KEY_LEN];
	bool has_endpoint;
	struct endpoint endpoint;
	int64_t last_handshake_sec, last_handshake_nsec;	/* wall clock, 0 = never */
	uint64_t rx_bytes, tx_bytes;
	uint16_t persistent_keepalive;
	struct ip_prefix *allowed_ips;
	size_t n_allowed_ips;
};

struct wg_device_info {
	bool has_private_key;
	uint8_t private_key[WG_KEY_LEN];
	uint8_t public_key[WG_KEY_LEN];
	uint16_t listen_port;
	uint32_t fwmark;
	struct wg_peer_info *peers;
	size_t n_peers;
};

/*
 * Creates a device and starts its threads. `tun_fd` (-1 for none; the device
 * takes ownership and closes it) carries IP packets; `mtu` bounds padding.
 * The socket is bound to `listen_port` (0: random). Returns 0 or ERR_*.
 */
int wg_device_new(int tun_fd, int mtu, uint16_t listen_port, struct wg_device **out)
	WM_MUST_CHECK;
/* Stops the threads, wipes every key and frees. NULL is a no-op. */
void wg_device_free(struct wg_device *dev);

/* NULL or all zeros removes the key. Peers with the same public key as ours
 * are removed; every session is dropped. */
int wg_device_set_private_key(struct wg_device *dev, const uint8_t *key) WM_MUST_CHECK;
/* Rebinds the socket; ERR_EXISTS if the port is taken. */
int wg_device_set_listen_port(struct wg_device *dev, uint16_t port) WM_MUST_CHECK;
uint16_t wg_device_listen_port(struct wg_device *dev);
int wg_device_set_fwmark(struct wg_device *dev, uint32_t mark) WM_MUST_CHECK;
void wg_device_set_mtu(struct wg_device *dev, int mtu);

/* Adds, updates or removes one peer. ERR_NOT_FOUND for update_only on an
 * unknown peer is not an error (returns 0, as wireguard-go). */
int wg_device_peer_set(struct wg_device *dev, const struct wg_peer_config *cfg) WM_MUST_CHECK;
int wg_device_peer_remove(struct wg_device *dev, const uint8_t public_key[static WG_KEY_LEN]);
void wg_device_peers_clear(struct wg_device *dev);

/* Snapshot of the configuration and peer state; free with wg_device_info_free. */
int wg_device_get_info(struct wg_device *dev, struct wg_device_info **out) WM_MUST_CHECK;
void wg_device_info_free(struct wg_device_info *info);
void wg_device_get_stats(struct wg_device *dev, struct wg_device_stats *out);

/* Installs (or with NULL removes) the output hooks; the struct is copied. */
void wg_device_set_output(struct wg_device *dev, const struct wg_output_ops *ops);
/* Processes a datagram received outside the socket (e.g. from DERP), as if it
 * came from `from` (NULL: do not learn an endpoint from it). Thread safe. */
void wg_device_input(struct wg_device *dev, const struct endpoint *from,
		     const uint8_t *pkt, size_t len);
/* Encrypts and sends one IP packet as if read from the TUN device. */
void wg_device_send_packet(struct wg_device *dev, const uint8_t *pkt, size_t len);
/* Sends a raw datagram from the device's socket (path discovery). */
int wg_device_send_raw(struct wg_device *dev, const struct endpoint *to,
		       const uint8_t *pkt, size_t len) WM_MUST_CHECK;

/* True once reading the TUN failed for good (interface deleted). */
bool wg_device_is_dead(struct wg_device *dev);

/* Test hook: replaces the monotonic clock (ns) used for every timer. */
void wg_device_set_clock(struct wg_device *dev, int64_t (*now_ns)(void *), void *arg);

/* UDP GSO (UDP_SEGMENT) for runs of same-size datagrams to one endpoint is
 * on by default and switches itself off when the kernel refuses it; false
 * turns it off (for comparison, or a path that mishandles it). */
void wg_device_set_udp_gso(struct wg_device *dev, bool on);

#endif
