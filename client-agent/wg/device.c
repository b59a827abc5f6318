// SPDX-License-Identifier: MIT
/*
 * The device: peers, the index table, the socket and the three threads.
 *
 * Locking. dev->lock (rwlock, writers preferred) separates configuration
 * (write) from the data path and timers (read, held across a whole batch),
 * so a peer pointer stays valid while a reader holds it. Each peer has a
 * mutex for its handshake, keypair slots, endpoint, timers and staged
 * packets. The index table has its own mutex. Order: dev->lock, input_lock,
 * peer->lock, index_lock, keypair recv_lock. Keypairs are reference counted
 * because the TUN and UDP threads use them while the other thread rotates
 * them; each thread owns its AEAD context, so encryption runs unlocked.
 *
 * Paths. TUN->UDP reads a batch of packets, routes them through the
 * allowed-IPs trie, encrypts them and hands them to sendmmsg (or the output
 * hook). With a TUN opened with IFF_VNET_HDR (wg_tun_open_offload) a read
 * may be a 64 KiB TCP super packet, split here into MTU-sized segments
 * (offload.c) that reserve their counters in one go. Datagrams for one peer
 * of one size are laid out back to back and leave as one UDP GSO message
 * (UDP_SEGMENT), all groups of a batch in one sendmmsg. UDP->TUN reads a
 * batch with recvmmsg (UDP_GRO: one buffer may hold a run of same-size
 * datagrams), handles handshakes inline (they are rare and cheap) and
 * decrypts data in place, checking the replay window and the source address
 * against the sending peer's allowed IPs before the packet reaches the TUN
 * device. On a vnet TUN the batch's packets are merged per TCP flow (GRO)
 * and written as super packets. Each of the two data threads has a helper
 * thread (on more than one CPU) that takes a share of a batch's seals or
 * opens; counters are assigned before and sending/delivery happens after,
 * on the data thread, so per-peer order is kept. A timer thread ticks every
 * 50 ms and runs each peer's timer state machine.
 */
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/udp.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "client-agent/wg/allowedips.h"
#include "client-agent/wg/cookie.h"
#include "client-agent/wg/crypto.h"
#include "client-agent/wg/device.h"
#include "client-agent/wg/noise.h"
#include "client-agent/wg/offload.h"
#include "client-agent/wg/timers.h"
#include "client-agent/wg/tun.h"
#include "common/log.h"
#include "common/util.h"

enum {
	BATCH = 64,
	INDEX_BUCKETS = 4096,
	MAX_INDEXES = WG_MAX_PEERS * 4,
	LOAD_THRESHOLD = 64,		/* handshake messages per second */
	TIMER_TICK_MS = 50,
	SOCK_BUF = 7 << 20,
	READ_ARENA = 1 << 20,		/* TUN reads per batch */
	TX_GROUPS = 4,			/* send groups per sendmmsg */
	GSO_MAX_SEGS = 64,		/* datagrams per UDP GSO message */
	GSO_MAX_BYTES = 65507,		/* largest UDP payload over IPv4 */
	GROUP_BUF = WG_MAX_DATAGRAM,
	TX_MSGS = TX_GROUPS * GSO_MAX_SEGS,
	SINK_CAP = 128,			/* decrypted packets per TUN flush */
	RX_JOBS = 128,			/* data messages decrypted together */
};

struct staged {
	uint8_t *buf[WG_MAX_STAGED_PACKETS];
	uint16_t len[WG_MAX_STAGED_PACKETS];
	unsigned head, count;
};

struct peer {
	struct wg_device *dev;
	struct peer *next;
	pthread_mutex_t lock;
	uint8_t pub[WG_KEY_LEN];
	struct wg_handshake hs;
	struct wg_cookie_maker cookie;
	struct wg_keypair *cur, *prev, *nextkp;
	struct wg_timers timers;
	bool has_endpoint;
	struct endpoint ep;
	int64_t last_sent_handshake;
	int64_t last_handshake_wall_ns;
	bool lastminute_sent;
	_Atomic uint64_t rx_bytes, tx_bytes;
	struct staged staged;
};

struct index_entry {
	uint32_t idx;
	struct peer *peer;
	struct wg_keypair *kp;		/* NULL while it names a handshake */
	struct index_entry *next;
};

#define NSTATS (sizeof(struct wg_device_stats) / sizeof(uint64_t))

struct wg_device {
	pthread_rwlock_t lock;
	struct wg_static_identity id;
	struct wg_cookie_checker checker;
	struct peer *peers;
	size_t n_peers;
	struct wg_allowedips *aips;

	pthread_mutex_t index_lock;
	struct index_entry *index[INDEX_BUCKETS];
	size_t n_index;

	int sock;
	bool sock_v6;
	uint16_t port;
	uint32_t fwmark;
	int tun_fd;
	bool tun_vnet;			/* TUN reads/writes carry a virtio_net_hdr */
	_Atomic bool udp_gso;		/* UDP_SEGMENT works on the socket */
	struct helper *tx_helper, *rx_helper;	/* NULL: one thread does it all */
	_Atomic int mtu;
	int stop_fd;
	pthread_t tx_thread, rx_thread, timer_thread;
	bool tx_started, rx_started, timer_started;
	struct wg_output_ops ops;
	int64_t (*clock)(void *);
	void *clock_arg;
	_Atomic bool dead;

	_Atomic int64_t load_window;
	_Atomic unsigned load_count;
	_Atomic int64_t under_load_until;

	pthread_mutex_t input_lock;	/* input_aead, input_buf */
	struct wg_aead *input_aead;
	uint8_t *input_buf;

	_Atomic uint64_t stats[NSTATS];
};

#define STAT_ADD(dev, field, n) \
	atomic_fetch_add_explicit(&(dev)->stats[offsetof(struct wg_device_stats, field) / \
						 sizeof(uint64_t)], (n), memory_order_relaxed)
#define STAT(dev, field) STAT_ADD(dev, field, 1)

static struct log_ratelimit drop_rl;

static int64_t
default_clock(void *arg)
{
	(void)arg;
	return time_mono_ns();
}

static inline int64_t
now_ns(struct wg_device *dev)
{
	return dev->clock(dev->clock_arg);
}

static int64_t
wall_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * WG_NS_PER_S + ts.tv_nsec;
}

static int64_t
jitter(void)
{
	uint32_t r;

	wg_random(&r, sizeof(r));
	return (int64_t)(r % WG_REKEY_TIMEOUT_JITTER_MS) * WG_NS_PER_MS;
}

/* ---- endpoints and the socket ---- */

static socklen_t
ep_to_sa(const struct wg_device *dev, const struct endpoint *ep, struct sockaddr_storage *ss)
{
	if (dev->sock_v6 && ep->addr.family == AF_INET) {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;

		memset(ss, 0, sizeof(*ss));
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons(ep->port);
		s6->sin6_addr.s6_addr[10] = 0xff;
		s6->sin6_addr.s6_addr[11] = 0xff;
		memcpy(&s6->sin6_addr.s6_addr[12], ep->addr.b, 4);
		return sizeof(*s6);
	}
	return endpoint_to_sockaddr(ep, ss);
}

static bool
sa_to_ep(const struct sockaddr_storage *ss, struct endpoint *ep)
{
	if (endpoint_from_sockaddr((const struct sockaddr *)ss, ep) != 0)
		return false;
	if (ep->addr.family == AF_INET6) {
		static const uint8_t mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };

		if (memcmp(ep->addr.b, mapped, 12) == 0) {
			memmove(ep->addr.b, ep->addr.b + 12, 4);
			memset(ep->addr.b + 4, 0, 12);
			ep->addr.family = AF_INET;
		}
	}
	return true;
}

static bool
ep_equal(const struct endpoint *a, const struct endpoint *b)
{
	return a->port == b->port && addr_equal(&a->addr, &b->addr);
}

static void
set_bufsize(int fd)
{
	int v = SOCK_BUF;

	if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &v, sizeof(v)) != 0)
		(void)setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &v, sizeof(v));
	if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &v, sizeof(v)) != 0)
		(void)setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &v, sizeof(v));
}

static int
open_socket(uint16_t port, uint32_t fwmark, int *fd_out, bool *v6_out, uint16_t *port_out)
{
	struct sockaddr_storage ss;
	socklen_t sl;
	int fd, off = 0, r;
	bool v6 = true;

	memset(&ss, 0, sizeof(ss));
	fd = socket(AF_INET6, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd >= 0) {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;

		(void)setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof(off));
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons(port);
		sl = sizeof(*s6);
	} else {
		struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;

		fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
		if (fd < 0)
			return ERR_IO;
		v6 = false;
		s4->sin_family = AF_INET;
		s4->sin_port = htons(port);
		sl = sizeof(*s4);
	}
	if (fwmark)
		(void)setsockopt(fd, SOL_SOCKET, SO_MARK, &fwmark, sizeof(fwmark));
	set_bufsize(fd);
	/* Runs of same-size datagrams arrive as one buffer (see rx_batch). */
	(void)setsockopt(fd, SOL_UDP, UDP_GRO, &(int){ 1 }, sizeof(int));
	if (bind(fd, (struct sockaddr *)&ss, sl) != 0) {
		r = errno == EADDRINUSE ? ERR_EXISTS : ERR_IO;
		close(fd);
		return r;
	}
	sl = sizeof(ss);
	if (getsockname(fd, (struct sockaddr *)&ss, &sl) != 0) {
		close(fd);
		return ERR_IO;
	}
	*port_out = ntohs(v6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
			     : ((struct sockaddr_in *)&ss)->sin_port);
	*fd_out = fd;
	*v6_out = v6;
	return 0;
}

/* Sends one datagram for a peer: output hook first, then UDP. */
static void
send_datagram(struct wg_device *dev, const uint8_t pub[WG_KEY_LEN], bool has_ep,
	      const struct endpoint *ep, const uint8_t *buf, size_t len)
{
	struct sockaddr_storage ss;
	socklen_t sl;

	if (dev->ops.send &&
	    dev->ops.send(dev->ops.arg, pub, has_ep ? ep : NULL, buf, len) != WG_OUTPUT_UDP)
		return;
	if (!has_ep) {
		STAT(dev, drop_send_error);
		return;
	}
	sl = ep_to_sa(dev, ep, &ss);
	if (sendto(dev->sock, buf, len, MSG_DONTWAIT, (struct sockaddr *)&ss, sl) < 0)
		STAT(dev, drop_send_error);
}

/* ---- index table ---- */

static inline unsigned
bucket(uint32_t idx)
{
	return (idx * 2654435761u) >> 20 & (INDEX_BUCKETS - 1);
}

static struct index_entry *
index_find_locked(struct wg_device *dev, uint32_t idx)
{
	for (struct index_entry *e = dev->index[bucket(idx)]; e; e = e->next)
		if (e->idx == idx)
			return e;
	return NULL;
}

/* New random index naming a handshake of `peer`; 0 when the table is full. */
static uint32_t
index_insert(struct wg_device *dev, struct peer *peer)
{
	struct index_entry *e;
	uint32_t idx;

	e = calloc(1, sizeof(*e));
	if (e == NULL)
		return 0;
	pthread_mutex_lock(&dev->index_lock);
	if (dev->n_index >= MAX_INDEXES) {
		pthread_mutex_unlock(&dev->index_lock);
		free(e);
		return 0;
	}
	do
		wg_random(&idx, sizeof(idx));
	while (idx == 0 || index_find_locked(dev, idx));
	e->idx = idx;
	e->peer = peer;
	e->next = dev->index[bucket(idx)];
	dev->index[bucket(idx)] = e;
	dev->n_index++;
	pthread_mutex_unlock(&dev->index_lock);
	return idx;
}

static void
index_set_keypair(struct wg_device *dev, uint32_t idx, struct wg_keypair *kp)
{
	struct index_entry *e;

	pthread_mutex_lock(&dev->index_lock);
	if ((e = index_find_locked(dev, idx)) != NULL)
		e->kp = kp;
	pthread_mutex_unlock(&dev->index_lock);
}

static void
index_remove(struct wg_device *dev, uint32_t idx)
{
	struct index_entry **pp, *e;

	if (idx == 0)
		return;
	pthread_mutex_lock(&dev->index_lock);
	for (pp = &dev->index[bucket(idx)]; (e = *pp) != NULL; pp = &e->next) {
		if (e->idx == idx) {
			*pp = e->next;
			dev->n_index--;
			free(e);
			break;
		}
	}
	pthread_mutex_unlock(&dev->index_lock);
}

/* Looks up an index; takes a keypair reference when it names one. */
static struct peer *
index_lookup(struct wg_device *dev, uint32_t idx, struct wg_keypair **kp)
{
	struct index_entry *e;
	struct peer *p = NULL;

	*kp = NULL;
	pthread_mutex_lock(&dev->index_lock);
	if ((e = index_find_locked(dev, idx)) != NULL) {
		p = e->peer;
		if (e->kp) {
			*kp = e->kp;
			wg_keypair_get(e->kp);
		}
	}
	pthread_mutex_unlock(&dev->index_lock);
	return p;
}

/* ---- keypairs (peer locked) ---- */

static void
keypair_drop(struct wg_device *dev, struct wg_keypair *kp)
{
	if (kp == NULL)
		return;
	index_remove(dev, kp->local_index);
	wg_keypair_put(kp);
}

static void
add_new_keypair(struct peer *p, struct wg_keypair *kp)
{
	struct wg_device *dev = p->dev;

	if (kp->initiator) {
		struct wg_keypair *old_prev = p->prev;

		if (p->nextkp) {
			p->prev = p->nextkp;
			p->nextkp = NULL;
			keypair_drop(dev, p->cur);
		} else {
			p->prev = p->cur;
		}
		keypair_drop(dev, old_prev);
		p->cur = kp;
	} else {
		keypair_drop(dev, p->nextkp);
		p->nextkp = kp;
		keypair_drop(dev, p->prev);
		p->prev = NULL;
	}
}

static void
promote_next(struct peer *p)
{
	struct wg_keypair *old_prev = p->prev;

	p->prev = p->cur;
	p->cur = p->nextkp;
	p->nextkp = NULL;
	keypair_drop(p->dev, old_prev);
}

static void
clear_handshake(struct peer *p)
{
	if (p->hs.local_index)
		index_remove(p->dev, p->hs.local_index);
	wg_noise_handshake_clear(&p->hs);
}

static void
zero_keys(struct peer *p)
{
	keypair_drop(p->dev, p->cur);
	keypair_drop(p->dev, p->prev);
	keypair_drop(p->dev, p->nextkp);
	p->cur = p->prev = p->nextkp = NULL;
	clear_handshake(p);
}

static void
staged_clear(struct staged *s)
{
	while (s->count) {
		free(s->buf[s->head]);
		s->buf[s->head] = NULL;
		s->head = (s->head + 1) % WG_MAX_STAGED_PACKETS;
		s->count--;
	}
	s->head = 0;
}

/* ---- handshake sending (peer locked) ---- */

static void
send_initiation_locked(struct peer *p, bool retry)
{
	struct wg_device *dev = p->dev;
	uint8_t msg[WG_INITIATION_LEN], tai[WG_TAI64N_LEN];
	int64_t now = now_ns(dev);

	if (!retry)
		p->timers.handshake_attempts = 0;
	if (p->last_sent_handshake &&
	    now - p->last_sent_handshake < (int64_t)WG_REKEY_TIMEOUT * WG_NS_PER_S)
		return;
	if (!dev->id.has)
		return;
	p->last_sent_handshake = now ? now : 1;
	clear_handshake(p);
	p->hs.local_index = index_insert(dev, p);
	if (p->hs.local_index == 0)
		return;
	wg_tai64n_now(tai);
	if (wg_noise_create_initiation(&p->hs, &dev->id, tai, NULL, msg) != 0) {
		clear_handshake(p);
		return;
	}
	wg_cookie_add_macs(&p->cookie, msg, sizeof(msg), now);
	wg_timers_any_authenticated_packet_traversal(&p->timers, now);
	wg_timers_any_authenticated_packet_sent(&p->timers);
	wg_timers_handshake_initiated(&p->timers, now, jitter());
	STAT(dev, handshakes_initiated);
	send_datagram(dev, p->pub, p->has_endpoint, &p->ep, msg, sizeof(msg));
}

/* ---- data sending ---- */

/* A usable sending keypair with a reserved counter, or NULL. */
static struct wg_keypair *
take_send_keypair(struct peer *p, uint64_t *ctr, struct endpoint *ep, bool *has_ep)
{
	struct wg_keypair *kp;
	int64_t now = now_ns(p->dev);

	pthread_mutex_lock(&p->lock);
	kp = p->cur;
	if (kp && now - kp->birth < (int64_t)WG_REJECT_AFTER_TIME * WG_NS_PER_S) {
		*ctr = atomic_fetch_add(&kp->send_counter, 1);
		if (*ctr < WG_REJECT_AFTER_MESSAGES) {
			wg_keypair_get(kp);
			*ep = p->ep;
			*has_ep = p->has_endpoint;
			pthread_mutex_unlock(&p->lock);
			return kp;
		}
	}
	pthread_mutex_unlock(&p->lock);
	return NULL;
}

static void
stage_and_initiate(struct peer *p, const uint8_t *pkt, size_t len)
{
	struct staged *s = &p->staged;
	uint8_t *copy = malloc(len ? len : 1);

	pthread_mutex_lock(&p->lock);
	if (copy) {
		if (s->count == WG_MAX_STAGED_PACKETS) {
			free(s->buf[s->head]);
			s->buf[s->head] = NULL;
			s->head = (s->head + 1) % WG_MAX_STAGED_PACKETS;
			s->count--;
			STAT(p->dev, drop_staged_overflow);
		}
		if (len)	/* a keepalive is empty (pkt may be NULL) */
			memcpy(copy, pkt, len);
		unsigned slot = (s->head + s->count) % WG_MAX_STAGED_PACKETS;
		s->buf[slot] = copy;
		s->len[slot] = (uint16_t)len;
		s->count++;
	}
	send_initiation_locked(p, false);
	pthread_mutex_unlock(&p->lock);
}

/* Plaintext length after padding to 16 bytes, but not beyond the MTU. */
static size_t
padded_len(struct wg_device *dev, size_t len)
{
	size_t mtu = (size_t)atomic_load(&dev->mtu), padded = (len + 15) & ~(size_t)15;

	if (padded > mtu)
		padded = len > mtu ? len : mtu;
	return padded;
}

/* Pads the plaintext already at buf+16 to `padded`, encrypts in place,
 * writes the header; returns the datagram length or 0. */
static size_t
seal_padded(struct wg_aead *aead, struct wg_keypair *kp, uint64_t ctr, uint8_t *buf,
	    size_t len, size_t padded)
{
	memset(buf + WG_DATA_HEADER_LEN + len, 0, padded - len);
	buf[0] = WG_MSG_DATA;
	buf[1] = buf[2] = buf[3] = 0;
	wg_put_le32(buf + WG_DATA_OFF_RECEIVER, kp->remote_index);
	wg_put_le64(buf + WG_DATA_OFF_COUNTER, ctr);
	if (wg_aead_seal(aead, buf + WG_DATA_HEADER_LEN, buf + WG_DATA_HEADER_LEN, padded,
			 kp->send_key, ctr, NULL, 0) != 0)
		return 0;
	return WG_DATA_HEADER_LEN + padded + WG_TAG_LEN;
}

static size_t
seal_packet(struct wg_device *dev, struct wg_aead *aead, struct wg_keypair *kp,
	    uint64_t ctr, uint8_t *buf, size_t len)
{
	return seal_padded(aead, kp, ctr, buf, len, padded_len(dev, len));
}

/* Timer and counter updates after data left for a peer. */
static void
after_send(struct peer *p, size_t bytes, bool data)
{
	int64_t now = now_ns(p->dev);
	struct wg_keypair *kp;

	pthread_mutex_lock(&p->lock);
	atomic_fetch_add_explicit(&p->tx_bytes, bytes, memory_order_relaxed);
	wg_timers_any_authenticated_packet_traversal(&p->timers, now);
	wg_timers_any_authenticated_packet_sent(&p->timers);
	if (data)
		wg_timers_data_sent(&p->timers, now, jitter());
	kp = p->cur;
	if (kp && (atomic_load(&kp->send_counter) > WG_REKEY_AFTER_MESSAGES ||
		   (kp->initiator &&
		    now - kp->birth > (int64_t)WG_REKEY_AFTER_TIME * WG_NS_PER_S)))
		send_initiation_locked(p, false);
	pthread_mutex_unlock(&p->lock);
}

/* Encrypts and sends one packet (or stages it and starts a handshake). `buf`
 * is the caller's scratch of WG_MAX_DATAGRAM bytes. */
static void
send_plain(struct wg_device *dev, struct wg_aead *aead, struct peer *p, const uint8_t *pkt,
	   size_t len, uint8_t *buf)
{
	struct wg_keypair *kp;
	struct endpoint ep;
	bool has_ep = false;
	uint64_t ctr = 0;
	size_t n;

	kp = take_send_keypair(p, &ctr, &ep, &has_ep);
	if (kp == NULL) {
		stage_and_initiate(p, pkt, len);
		return;
	}
	if (len)
		memcpy(buf + WG_DATA_HEADER_LEN, pkt, len);
	n = seal_packet(dev, aead, kp, ctr, buf, len);
	wg_keypair_put(kp);
	if (n == 0)
		return;
	send_datagram(dev, p->pub, has_ep, &ep, buf, n);
	STAT(dev, tx_packets);
	STAT_ADD(dev, tx_bytes, n);
	after_send(p, n, len > 0);
}

static void
flush_staged(struct wg_device *dev, struct wg_aead *aead, struct peer *p, uint8_t *buf)
{
	uint8_t *pkts[WG_MAX_STAGED_PACKETS];
	uint16_t lens[WG_MAX_STAGED_PACKETS];
	unsigned n = 0;

	pthread_mutex_lock(&p->lock);
	while (p->staged.count) {
		pkts[n] = p->staged.buf[p->staged.head];
		lens[n++] = p->staged.len[p->staged.head];
		p->staged.buf[p->staged.head] = NULL;
		p->staged.head = (p->staged.head + 1) % WG_MAX_STAGED_PACKETS;
		p->staged.count--;
	}
	p->staged.head = 0;
	pthread_mutex_unlock(&p->lock);
	for (unsigned i = 0; i < n; i++) {
		send_plain(dev, aead, p, pkts[i], lens[i], buf);
		free(pkts[i]);
	}
}

static void
send_keepalive(struct wg_device *dev, struct wg_aead *aead, struct peer *p, uint8_t *buf)
{
	bool staged;

	pthread_mutex_lock(&p->lock);
	staged = p->staged.count > 0;
	pthread_mutex_unlock(&p->lock);
	if (staged)
		flush_staged(dev, aead, p, buf);
	else
		send_plain(dev, aead, p, NULL, 0, buf);
}

/* Destination (or source) address of an IP packet; false if malformed. */
static bool
ip_addr_of(const uint8_t *pkt, size_t len, bool dst, int *family, const uint8_t **ip,
	   size_t *total)
{
	if (len < 20)
		return false;
	if (pkt[0] >> 4 == 4) {
		size_t tot = (size_t)pkt[2] << 8 | pkt[3];

		if (tot < 20 || tot > len)
			return false;
		*family = AF_INET;
		*ip = pkt + (dst ? 16 : 12);
		*total = tot;
		return true;
	}
	if (pkt[0] >> 4 == 6 && len >= 40) {
		size_t tot = 40 + ((size_t)pkt[4] << 8 | pkt[5]);

		if (tot > len)
			return false;
		*family = AF_INET6;
		*ip = pkt + (dst ? 24 : 8);
		*total = tot;
		return true;
	}
	return false;
}

static struct peer *
route(struct wg_device *dev, const uint8_t *pkt, size_t len)
{
	const uint8_t *ip;
	size_t tot;
	int fam;

	if (!ip_addr_of(pkt, len, true, &fam, &ip, &tot))
		return NULL;
	return wg_allowedips_lookup(dev->aips, fam, ip);
}

/* ---- a second thread for the AEAD work of a batch ---- */

/*
 * The seal/open jobs of a batch are claimed one at a time from a shared
 * word by the data thread and, once woken, by its helper, each with its own
 * AEAD context. The data thread takes whatever the helper has not, so a
 * helper that is slow to be scheduled costs only the wake-up. Everything
 * else (counters, order of sending and delivery) stays on the data thread.
 * The claim word packs a generation, the job count and the next index, so a
 * late helper cannot take a job of a batch that is over.
 */
enum { HELPER_MIN_JOBS = 8 };

typedef void helper_fn(struct wg_aead *aead, void *jobs, unsigned i);

struct helper {
	struct wg_device *dev;
	pthread_t thread;
	int wake_fd;
	struct wg_aead *aead;
	helper_fn *run;
	void *jobs;			/* set by the data thread before the first batch */
	_Atomic uint64_t claim;		/* generation << 32 | count << 16 | next */
	_Atomic unsigned done;		/* jobs the helper finished this generation */
	uint32_t gen;
};

static bool
helper_claim(struct helper *h, unsigned *idx)
{
	uint64_t c = atomic_load_explicit(&h->claim, memory_order_acquire);

	while ((c & 0xffff) < ((c >> 16) & 0xffff)) {
		if (atomic_compare_exchange_weak_explicit(&h->claim, &c, c + 1,
							  memory_order_acq_rel,
							  memory_order_acquire)) {
			*idx = (unsigned)(c & 0xffff);
			return true;
		}
	}
	return false;
}

static void *
helper_thread(void *arg)
{
	struct helper *h = arg;
	struct pollfd pfd[2] = {
		{ .fd = h->wake_fd, .events = POLLIN },
		{ .fd = h->dev->stop_fd, .events = POLLIN },
	};

	for (;;) {
		uint64_t v;
		unsigned i;

		if (poll(pfd, 2, -1) < 0 && errno != EINTR)
			break;
		if (pfd[1].revents)
			break;
		if (!(pfd[0].revents & POLLIN) || read(h->wake_fd, &v, sizeof(v)) < 0)
			continue;
		while (helper_claim(h, &i)) {
			h->run(h->aead, h->jobs, i);
			atomic_fetch_add_explicit(&h->done, 1, memory_order_release);
		}
	}
	return NULL;
}

/* Runs jobs [0, n) of `jobs` (the helper's array), with the helper when
 * there is one and enough work; returns when all are done. */
static void
helper_run(struct helper *h, helper_fn *run, void *jobs, struct wg_aead *aead, unsigned n)
{
	uint64_t one = 1;
	unsigned i, mine = 0;

	if (h == NULL || n < HELPER_MIN_JOBS) {
		for (i = 0; i < n; i++)
			run(aead, jobs, i);
		return;
	}
	atomic_store_explicit(&h->done, 0, memory_order_relaxed);
	h->gen++;
	atomic_store_explicit(&h->claim, (uint64_t)h->gen << 32 | (uint64_t)n << 16,
			      memory_order_release);
	if (write(h->wake_fd, &one, sizeof(one)) < 0) {
		/* cannot happen with an eventfd; the loop below does it all */
	}
	while (helper_claim(h, &i)) {
		run(aead, jobs, i);
		mine++;
	}
	while (atomic_load_explicit(&h->done, memory_order_acquire) != n - mine)
		sched_yield();
}

static void
helper_free(struct helper *h)
{
	if (h == NULL)
		return;
	pthread_join(h->thread, NULL);
	close(h->wake_fd);
	wg_aead_free(h->aead);
	free(h);
}

/* NULL on one CPU, when turned off, or when anything fails. */
static struct helper *
helper_new(struct wg_device *dev, helper_fn *run)
{
	const char *env = getenv("WIREMESH_WG_CRYPTO_THREADS");
	struct helper *h;

	if (sysconf(_SC_NPROCESSORS_ONLN) < 2 || (env && strcmp(env, "1") == 0))
		return NULL;
	if ((h = calloc(1, sizeof(*h))) == NULL)
		return NULL;
	h->dev = dev;
	h->run = run;
	h->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	h->aead = wg_aead_new();
	if (h->wake_fd < 0 || h->aead == NULL ||
	    pthread_create(&h->thread, NULL, helper_thread, h) != 0) {
		if (h->wake_fd >= 0)
			close(h->wake_fd);
		wg_aead_free(h->aead);
		free(h);
		return NULL;
	}
	return h;
}

/* ---- TUN -> UDP ---- */

/*
 * Datagrams leave in groups: consecutive datagrams for one peer and endpoint
 * of one size (the last may be shorter) share a buffer and go out as one
 * UDP GSO message (UDP_SEGMENT), a whole batch of groups in one sendmmsg.
 * Without GSO (refused by the kernel with EIO once) every datagram of a
 * group is its own message.
 */
struct tx_group {
	uint8_t *buf;			/* GROUP_BUF bytes */
	size_t len, seg;		/* bytes used, size of each datagram */
	unsigned n;
	bool closed;
	struct peer *peer;
	struct endpoint ep;
};

struct tx_state {
	struct wg_aead *aead;
	uint8_t *rbuf;			/* READ_ARENA bytes of packets read from TUN */
	uint8_t *rpkt[BATCH];
	size_t rlen[BATCH];
	uint8_t *scratch;		/* one segment when it has to be staged */
	struct tx_group g[TX_GROUPS];
	unsigned ng;
	struct mmsghdr msgs[TX_MSGS];
	struct iovec iov[TX_MSGS];
	unsigned msg_group[TX_MSGS];
	struct sockaddr_storage sa[TX_GROUPS];
	union {
		char buf[CMSG_SPACE(sizeof(uint16_t))];
		struct cmsghdr align;
	} cm[TX_GROUPS];
	struct peer *touched[BATCH];
	size_t touched_bytes[BATCH];
	struct tx_job {
		uint8_t *out;
		size_t len, padded;
		struct wg_keypair *kp;	/* reference held until sealed */
		uint64_t ctr;
	} jobs[TX_MSGS];
	unsigned njobs;
	/* counted per batch: the shared stats line is not bounced per packet */
	uint64_t tx_packets, tx_bytes;
};

static void
tx_run_job(struct wg_aead *aead, void *jobs, unsigned i)
{
	struct tx_job *j = (struct tx_job *)jobs + i;

	/* Never let plaintext out: a failed seal leaves an invalid type 0. */
	if (seal_padded(aead, j->kp, j->ctr, j->out, j->len, j->padded) == 0)
		memset(j->out, 0, WG_DATA_OVERHEAD + j->padded);
}

/* Seals every datagram laid out since the last flush. */
static void
tx_seal_jobs(struct wg_device *dev, struct tx_state *st)
{
	helper_run(dev->tx_helper, tx_run_job, st->jobs, st->aead, st->njobs);
	for (unsigned i = 0; i < st->njobs; i++)
		wg_keypair_put(st->jobs[i].kp);
	st->njobs = 0;
}

/* Messages for groups [from, ng): one GSO message per group or one per
 * datagram. Returns the number of messages. */
static unsigned
build_msgs(struct wg_device *dev, struct tx_state *st, unsigned from, bool gso)
{
	unsigned nm = 0;

	for (unsigned gi = from; gi < st->ng; gi++) {
		struct tx_group *g = &st->g[gi];
		socklen_t sl;

		if (g->n == 0)
			continue;
		sl = ep_to_sa(dev, &g->ep, &st->sa[gi]);
		for (unsigned k = 0; k < g->n; k++) {
			struct msghdr *mh = &st->msgs[nm].msg_hdr;
			size_t off = k * g->seg;

			memset(&st->msgs[nm], 0, sizeof(st->msgs[nm]));
			st->iov[nm].iov_base = g->buf + off;
			st->iov[nm].iov_len = k + 1 < g->n ? g->seg : g->len - off;
			mh->msg_iov = &st->iov[nm];
			mh->msg_iovlen = 1;
			mh->msg_name = &st->sa[gi];
			mh->msg_namelen = sl;
			st->msg_group[nm] = gi;
			if (gso && g->n > 1) {
				struct cmsghdr *c;
				uint16_t seg = (uint16_t)g->seg;

				st->iov[nm].iov_len = g->len;
				mh->msg_control = st->cm[gi].buf;
				mh->msg_controllen = sizeof(st->cm[gi].buf);
				c = CMSG_FIRSTHDR(mh);
				c->cmsg_level = SOL_UDP;
				c->cmsg_type = UDP_SEGMENT;
				c->cmsg_len = CMSG_LEN(sizeof(seg));
				memcpy(CMSG_DATA(c), &seg, sizeof(seg));
				nm++;
				break;
			}
			nm++;
		}
	}
	return nm;
}

static void
tx_flush(struct wg_device *dev, struct tx_state *st)
{
	bool gso = atomic_load_explicit(&dev->udp_gso, memory_order_relaxed);
	unsigned nm, done = 0;

	tx_seal_jobs(dev, st);
	nm = build_msgs(dev, st, 0, gso);

	while (done < nm) {
		int r = sendmmsg(dev->sock, st->msgs + done, nm - done, 0);

		if (r < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK) {
				struct pollfd pfd = { .fd = dev->sock, .events = POLLOUT };

				(void)poll(&pfd, 1, 100);
				continue;
			}
			if (st->msgs[done].msg_hdr.msg_control) {
				/* GSO refused: EIO when the route's device cannot
				 * checksum (for good), EINVAL/EMSGSIZE when a
				 * segment exceeds the path MTU (this group). */
				if (errno == EIO)
					atomic_store(&dev->udp_gso, false);
				nm = build_msgs(dev, st, st->msg_group[done], false);
				done = 0;
				continue;
			}
			STAT(dev, drop_send_error);
			done++;
			continue;
		}
		done += (unsigned)r;
	}
	for (unsigned gi = 0; gi < st->ng; gi++)
		st->g[gi].n = 0;
	st->ng = 0;
}

/* The group a datagram of `wl` bytes for (p, ep) goes to: the newest one
 * when it is for the same destination, not closed, has room and its
 * datagrams are not smaller. Flushes when every group is in use. */
static struct tx_group *
tx_group_for(struct wg_device *dev, struct tx_state *st, struct peer *p,
	     const struct endpoint *ep, size_t wl)
{
	struct tx_group *g = st->ng ? &st->g[st->ng - 1] : NULL;

	if (g && g->peer == p && !g->closed && g->n < GSO_MAX_SEGS &&
	    (g->n == 0 || wl <= g->seg) && g->len + wl <= GSO_MAX_BYTES && ep_equal(&g->ep, ep))
		return g;
	if (st->ng == TX_GROUPS || st->njobs + GSO_MAX_SEGS > TX_MSGS)
		tx_flush(dev, st);
	g = &st->g[st->ng++];
	g->len = g->seg = 0;
	g->n = 0;
	g->closed = false;
	g->peer = p;
	g->ep = *ep;
	return g;
}

/* Adds the datagram of wl bytes at the end of `g` to it. */
static void
tx_group_commit(struct tx_group *g, size_t wl)
{
	if (g->n == 0)
		g->seg = wl;
	else if (wl < g->seg)
		g->closed = true;
	g->len += wl;
	g->n++;
}

/* Like take_send_keypair, reserving `n` consecutive counters. */
static struct wg_keypair *
take_send_keypair_n(struct peer *p, unsigned n, uint64_t *ctr, struct endpoint *ep,
		    bool *has_ep)
{
	struct wg_keypair *kp;
	int64_t now = now_ns(p->dev);

	pthread_mutex_lock(&p->lock);
	kp = p->cur;
	if (kp && now - kp->birth < (int64_t)WG_REJECT_AFTER_TIME * WG_NS_PER_S) {
		*ctr = atomic_fetch_add(&kp->send_counter, n);
		if (*ctr + n <= WG_REJECT_AFTER_MESSAGES) {
			wg_keypair_get(kp);
			*ep = p->ep;
			*has_ep = p->has_endpoint;
			pthread_mutex_unlock(&p->lock);
			return kp;
		}
	}
	pthread_mutex_unlock(&p->lock);
	return NULL;
}

static void
touch(struct tx_state *st, unsigned *ntouched, struct peer *p, size_t bytes)
{
	unsigned t;

	for (t = 0; t < *ntouched && st->touched[t] != p; t++)
		;
	if (t == *ntouched) {
		st->touched[t] = p;
		st->touched_bytes[t] = 0;
		(*ntouched)++;
	}
	st->touched_bytes[t] += bytes;
}

/* One packet read from TUN: split, route, encrypt into send groups. */
static void
tx_packet(struct wg_device *dev, struct tx_state *st, uint8_t *pkt, size_t len,
	  unsigned *ntouched)
{
	struct wg_vnet_hdr h;
	struct wg_tso tso;
	struct wg_keypair *kp;
	struct endpoint ep;
	bool has_ep = false;
	uint64_t ctr = 0;
	struct peer *p;
	bool deferred;
	int n;

	memset(&h, 0, sizeof(h));
	if (dev->tun_vnet) {
		if (len < WG_VNET_HDR_LEN) {
			STAT(dev, drop_bad_ip);
			return;
		}
		wg_vnet_hdr_get(&h, pkt);
		pkt += WG_VNET_HDR_LEN;
		len -= WG_VNET_HDR_LEN;
	}
	if ((n = wg_tso_begin(&tso, &h, pkt, len)) < 0) {
		STAT(dev, drop_bad_ip);
		return;
	}
	p = route(dev, pkt, len);
	if (p == NULL) {
		STAT(dev, drop_no_route);
		return;
	}
	kp = take_send_keypair_n(p, (unsigned)n, &ctr, &ep, &has_ep);
	if (kp == NULL) {
		size_t sl;

		while ((sl = wg_tso_next(&tso, st->scratch, WG_MAX_PACKET)) != 0)
			stage_and_initiate(p, st->scratch, sl);
		return;
	}
	/* Without an output hook the datagrams are laid out now and sealed
	 * together at the flush (on two threads); the hook needs each sealed
	 * at once. */
	deferred = dev->ops.send == NULL;
	for (;;) {
		size_t sl = wg_tso_peek(&tso), padded, wl;
		struct tx_group *g;
		uint8_t *out;

		if (sl == 0)
			break;
		padded = padded_len(dev, sl);
		wl = WG_DATA_OVERHEAD + padded;
		if (!has_ep && deferred) {
			STAT(dev, drop_send_error);
			(void)wg_tso_next(&tso, st->scratch, WG_MAX_PACKET);
			ctr++;
			continue;
		}
		g = tx_group_for(dev, st, p, &ep, wl);
		out = g->buf + g->len;
		if (wg_tso_next(&tso, out + WG_DATA_HEADER_LEN, GROUP_BUF - g->len - WG_DATA_OVERHEAD -
				WG_PADDING) != sl)
			break;
		st->tx_packets++;
		st->tx_bytes += wl;
		touch(st, ntouched, p, wl);
		if (deferred) {
			struct tx_job *j = &st->jobs[st->njobs++];

			wg_keypair_get(kp);
			*j = (struct tx_job){ .out = out, .len = sl, .padded = padded, .kp = kp,
					      .ctr = ctr++ };
			tx_group_commit(g, wl);
			continue;
		}
		if (seal_padded(st->aead, kp, ctr++, out, sl, padded) == 0)
			continue;
		if (dev->ops.send(dev->ops.arg, p->pub, has_ep ? &ep : NULL, out, wl) !=
		    WG_OUTPUT_UDP)
			continue;
		if (!has_ep) {
			STAT(dev, drop_send_error);
			continue;
		}
		tx_group_commit(g, wl);
	}
	wg_keypair_put(kp);
}

static void
tx_batch(struct wg_device *dev, struct tx_state *st, unsigned n)
{
	unsigned ntouched = 0;

	for (unsigned i = 0; i < n; i++)
		tx_packet(dev, st, st->rpkt[i], st->rlen[i], &ntouched);
	if (st->ng)
		tx_flush(dev, st);
	for (unsigned t = 0; t < ntouched; t++)
		after_send(st->touched[t], st->touched_bytes[t], true);
	STAT_ADD(dev, tx_packets, st->tx_packets);
	STAT_ADD(dev, tx_bytes, st->tx_bytes);
	st->tx_packets = st->tx_bytes = 0;
}

static void
tx_state_free(struct tx_state *st)
{
	if (st == NULL)
		return;
	for (int i = 0; i < TX_GROUPS; i++)
		free(st->g[i].buf);
	free(st->rbuf);
	free(st->scratch);
	wg_aead_free(st->aead);
	free(st);
}

static struct tx_state *
tx_state_new(void)
{
	struct tx_state *st = calloc(1, sizeof(*st));

	if (st == NULL)
		return NULL;
	st->aead = wg_aead_new();
	st->rbuf = malloc(READ_ARENA);
	st->scratch = malloc(WG_MAX_PACKET);
	for (int i = 0; i < TX_GROUPS; i++)
		if ((st->g[i].buf = malloc(GROUP_BUF)) == NULL)
			st->aead = NULL;
	if (st->aead == NULL || st->rbuf == NULL || st->scratch == NULL) {
		tx_state_free(st);
		return NULL;
	}
	return st;
}

static void *
tx_thread(void *arg)
{
	struct wg_device *dev = arg;
	struct tx_state *st = tx_state_new();
	struct pollfd pfd[2];
	size_t room = WG_MAX_PACKET + WG_VNET_HDR_LEN;

	if (st == NULL) {
		log_error("msg=\"tx thread: out of memory\"");
		return NULL;
	}
	if (dev->tx_helper)
		dev->tx_helper->jobs = st->jobs;
	pfd[0].fd = dev->tun_fd;
	pfd[0].events = POLLIN;
	pfd[1].fd = dev->stop_fd;
	pfd[1].events = POLLIN;
	for (;;) {
		size_t off = 0;
		unsigned n = 0;

		if (poll(pfd, 2, -1) < 0 && errno != EINTR)
			break;
		if (pfd[1].revents)
			break;
		if (pfd[0].revents & (POLLERR | POLLHUP | POLLNVAL)) {
			atomic_store(&dev->dead, true);
			break;
		}
		/* Small packets pack densely into the arena; stop when a
		 * largest one might no longer fit. */
		while (n < BATCH && off + room <= READ_ARENA) {
			ssize_t r = read(dev->tun_fd, st->rbuf + off, room);

			if (r < 0) {
				if (errno == EINTR)
					continue;
				if (errno != EAGAIN && errno != EWOULDBLOCK)
					atomic_store(&dev->dead, true);
				break;
			}
			if (r == 0)
				break;
			st->rpkt[n] = st->rbuf + off;
			st->rlen[n++] = (size_t)r;
			off += ((size_t)r + 15) & ~(size_t)15;
		}
		if (n) {
			pthread_rwlock_rdlock(&dev->lock);
			tx_batch(dev, st, n);
			pthread_rwlock_unlock(&dev->lock);
		}
		if (atomic_load(&dev->dead))
			break;
	}
	tx_state_free(st);
	return NULL;
}

/* ---- UDP -> TUN ---- */

static bool
under_load(struct wg_device *dev, int64_t now)
{
	int64_t window = now / WG_NS_PER_S;

	if (atomic_exchange(&dev->load_window, window) != window)
		atomic_store(&dev->load_count, 0);
	if (atomic_fetch_add(&dev->load_count, 1) + 1 > LOAD_THRESHOLD)
		atomic_store(&dev->under_load_until, now + WG_NS_PER_S);
	return now < atomic_load(&dev->under_load_until);
}

static struct peer *
find_peer(struct wg_device *dev, const uint8_t pub[WG_KEY_LEN])
{
	for (struct peer *p = dev->peers; p; p = p->next)
		if (memcmp(p->pub, pub, WG_KEY_LEN) == 0)
			return p;
	return NULL;
}

static void
drop_log(const char *what, const struct endpoint *from)
{
	char s[ADDR_STR_MAX] = "derp";

	if (log_threshold < LOG_DEBUG || !log_ratelimit_ok(&drop_rl, 1, 10))
		return;
	if (from)
		endpoint_fmt(s, from);
	log_debug("msg=\"packet dropped\" reason=%s from=%s", what, s);
}

/* mac checks and the under-load cookie dance; true to go on. */
static bool
check_handshake_macs(struct wg_device *dev, const uint8_t *buf, size_t len,
		     const struct endpoint *from, int64_t now)
{
	struct endpoint zero;
	const struct endpoint *src = from;
	bool load = under_load(dev, now);
	enum wg_mac_result mr;

	if (src == NULL) {
		memset(&zero, 0, sizeof(zero));
		zero.addr.family = AF_INET;
		src = &zero;
	}
	mr = wg_cookie_validate(&dev->checker, buf, len, src, load, now);
	if (mr == WG_MAC_INVALID) {
		STAT(dev, drop_bad_mac1);
		drop_log("mac1", from);
		return false;
	}
	if (load && mr != WG_MAC_VALID_COOKIE) {
		uint8_t reply[WG_COOKIE_REPLY_LEN];
		struct sockaddr_storage ss;

		if (from == NULL)
			return false;
		wg_cookie_reply_create(&dev->checker, reply, buf, len, from, now);
		(void)sendto(dev->sock, reply, sizeof(reply), MSG_DONTWAIT,
			     (struct sockaddr *)&ss, ep_to_sa(dev, from, &ss));
		STAT(dev, cookie_replies_sent);
		return false;
	}
	return true;
}

static void
handle_initiation(struct wg_device *dev, const struct endpoint *from, const uint8_t *buf)
{
	struct wg_init_result res;
	uint8_t resp[WG_RESPONSE_LEN];
	struct wg_keypair *kp;
	struct endpoint ep;
	struct peer *p;
	int64_t now = now_ns(dev);
	bool has_ep;
	int r;

	if (!check_handshake_macs(dev, buf, WG_INITIATION_LEN, from, now))
		return;
	if (wg_noise_consume_initiation(&dev->id, buf, &res) != 0) {
		STAT(dev, drop_handshake_invalid);
		drop_log("initiation", from);
		return;
	}
	p = find_peer(dev, res.remote_static);
	if (p == NULL) {
		STAT(dev, drop_unknown_peer);
		drop_log("unknown-peer", from);
		goto out;
	}
	pthread_mutex_lock(&p->lock);
	r = wg_noise_accept_initiation(&p->hs, &res, now);
	if (r != 0) {
		if (r == ERR_REPLAY)
			STAT(dev, drop_replayed_initiation);
		else
			STAT(dev, drop_flood);
		pthread_mutex_unlock(&p->lock);
		drop_log(r == ERR_REPLAY ? "replayed-initiation" : "flood", from);
		goto out;
	}
	if (p->hs.local_index)
		index_remove(dev, p->hs.local_index);
	p->hs.local_index = index_insert(dev, p);
	kp = calloc(1, sizeof(*kp));
	if (p->hs.local_index == 0 || kp == NULL ||
	    wg_noise_create_response(&p->hs, NULL, resp) != 0 ||
	    wg_noise_derive_keypair(&p->hs, kp, now) != 0) {
		free(kp);
		clear_handshake(p);
		STAT(dev, drop_handshake_invalid);
		pthread_mutex_unlock(&p->lock);
		goto out;
	}
	kp->peer = p;
	index_set_keypair(dev, kp->local_index, kp);
	add_new_keypair(p, kp);
	if (from) {
		p->ep = *from;
		p->has_endpoint = true;
	}
	wg_cookie_add_macs(&p->cookie, resp, sizeof(resp), now);
	wg_timers_any_authenticated_packet_traversal(&p->timers, now);
	wg_timers_any_authenticated_packet_received(&p->timers);
	wg_timers_session_derived(&p->timers, now);
	wg_timers_any_authenticated_packet_sent(&p->timers);
	ep = p->ep;
	has_ep = p->has_endpoint;
	send_datagram(dev, p->pub, has_ep, &ep, resp, sizeof(resp));
	pthread_mutex_unlock(&p->lock);
out:
	wg_wipe(&res, sizeof(res));
}

static void
handle_response(struct wg_device *dev, struct wg_aead *aead, const struct endpoint *from,
		const uint8_t *buf, uint8_t *scratch)
{
	uint32_t idx = wg_get_le32(buf + WG_RESP_OFF_RECEIVER);
	struct wg_keypair *kp = NULL;
	struct peer *p;
	int64_t now = now_ns(dev);

	if (!check_handshake_macs(dev, buf, WG_RESPONSE_LEN, from, now))
		return;
	p = index_lookup(dev, idx, &kp);
	if (p == NULL || kp != NULL) {
		wg_keypair_put(kp);
		STAT(dev, drop_unknown_index);
		return;
	}
	pthread_mutex_lock(&p->lock);
	if (p->hs.state != WG_HS_CREATED_INITIATION || p->hs.local_index != idx ||
	    wg_noise_consume_response(&p->hs, &dev->id, buf) != 0) {
		pthread_mutex_unlock(&p->lock);
		STAT(dev, drop_handshake_invalid);
		drop_log("response", from);
		return;
	}
	kp = calloc(1, sizeof(*kp));
	if (kp == NULL || wg_noise_derive_keypair(&p->hs, kp, now) != 0) {
		free(kp);
		clear_handshake(p);
		pthread_mutex_unlock(&p->lock);
		return;
	}
	kp->peer = p;
	index_set_keypair(dev, kp->local_index, kp);
	add_new_keypair(p, kp);
	if (from) {
		p->ep = *from;
		p->has_endpoint = true;
	}
	wg_timers_any_authenticated_packet_traversal(&p->timers, now);
	wg_timers_any_authenticated_packet_received(&p->timers);
	wg_timers_handshake_complete(&p->timers);
	wg_timers_session_derived(&p->timers, now);
	p->last_handshake_wall_ns = wall_ns();
	p->lastminute_sent = false;
	STAT(dev, handshakes_completed);
	pthread_mutex_unlock(&p->lock);
	send_keepalive(dev, aead, p, scratch);
}

static void
handle_cookie(struct wg_device *dev, const uint8_t *buf)
{
	struct wg_keypair *kp = NULL;
	struct peer *p = index_lookup(dev, wg_get_le32(buf + WG_COOKIE_OFF_RECEIVER), &kp);
	int r;

	wg_keypair_put(kp);
	if (p == NULL) {
		STAT(dev, drop_unknown_index);
		return;
	}
	pthread_mutex_lock(&p->lock);
	r = wg_cookie_reply_consume(&p->cookie, buf, now_ns(dev));
	pthread_mutex_unlock(&p->lock);
	if (r != 0)
		STAT(dev, drop_cookie_invalid);
}

static void
tun_writev(struct wg_device *dev, const struct iovec *iov, int n)
{
	while (writev(dev->tun_fd, iov, n) < 0) {
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN || errno == EWOULDBLOCK) {
			struct pollfd pfd = { .fd = dev->tun_fd, .events = POLLOUT };

			if (poll(&pfd, 1, 100) > 0)
				continue;
		}
		STAT(dev, drop_send_error);
		return;
	}
}

static void
deliver(struct wg_device *dev, const uint8_t *pkt, size_t len)
{
	if (dev->ops.deliver) {
		dev->ops.deliver(dev->ops.arg, pkt, len);
		return;
	}
	if (dev->tun_fd < 0)
		return;
	if (dev->tun_vnet) {
		/* Authenticated by the AEAD: no need for the kernel to check
		 * the inner checksums again (as the kernel's WireGuard). */
		static const uint8_t hdr[WG_VNET_HDR_LEN] = { WG_VNET_F_DATA_VALID };
		struct iovec iov[2] = { { (void *)hdr, sizeof(hdr) }, { (void *)pkt, len } };

		tun_writev(dev, iov, 2);
		return;
	}
	struct iovec iov = { (void *)pkt, len };

	tun_writev(dev, &iov, 1);
}

/*
 * Decrypted packets of one receive batch, bound for a TUN device with vnet
 * headers: segments of one TCP flow are merged (GRO) and each merged packet
 * is one write. Packets stay in the receive buffers until the flush.
 */
struct rx_sink {
	struct wg_gro gro;
	struct wg_gro_pkt pkts[SINK_CAP];
	struct wg_gro_group groups[SINK_CAP];
	uint8_t *base[WG_GRO_MAX_SEGS + 1];
	size_t lens[WG_GRO_MAX_SEGS + 1];
	struct iovec iov[WG_GRO_MAX_SEGS + 1];
	uint64_t rx_packets, rx_bytes;	/* added to the stats per batch */
};

static void
sink_flush(struct wg_device *dev, struct rx_sink *s)
{
	for (unsigned i = 0; i < s->gro.ngroups; i++) {
		unsigned n = wg_gro_prepare(&s->gro, i, s->base, s->lens);

		for (unsigned k = 0; k < n; k++) {
			s->iov[k].iov_base = s->base[k];
			s->iov[k].iov_len = s->lens[k];
		}
		tun_writev(dev, s->iov, (int)n);
	}
	wg_gro_reset(&s->gro);
}

/* Queues a decrypted packet that has WG_VNET_HDR_LEN bytes of headroom;
 * false when it must be delivered at once. */
static bool
sink_add(struct wg_device *dev, struct rx_sink *s, uint8_t *pkt, size_t len)
{
	if (s == NULL || !dev->tun_vnet || dev->tun_fd < 0 || dev->ops.deliver)
		return false;
	if (wg_gro_add(&s->gro, pkt, len))
		return true;
	sink_flush(dev, s);
	return wg_gro_add(&s->gro, pkt, len);
}

/* A data message between lookup and delivery: the batch path decrypts many
 * of them, possibly on two threads, between rx_pre and rx_post. */
struct rx_job {
	uint8_t *buf;
	size_t len;
	bool has_from;
	struct endpoint from;
	struct peer *peer;
	struct wg_keypair *kp;		/* reference held until rx_post */
	uint64_t ctr;
	int res;
};

/* Looks up the receiver index and checks the key's age; false (counted)
 * when the message is dropped. */
static bool
rx_pre(struct wg_device *dev, const struct endpoint *from, uint8_t *buf, size_t len,
       struct rx_job *j)
{
	int64_t now = now_ns(dev);

	j->buf = buf;
	j->len = len;
	j->has_from = from != NULL;
	if (from)
		j->from = *from;
	j->ctr = wg_get_le64(buf + WG_DATA_OFF_COUNTER);
	j->res = ERR_INTERNAL;
	j->peer = index_lookup(dev, wg_get_le32(buf + WG_DATA_OFF_RECEIVER), &j->kp);
	if (j->peer == NULL || j->kp == NULL) {
		wg_keypair_put(j->kp);
		STAT(dev, drop_unknown_index);
		return false;
	}
	if (now - j->kp->birth >= (int64_t)WG_REJECT_AFTER_TIME * WG_NS_PER_S ||
	    j->ctr >= WG_REJECT_AFTER_MESSAGES) {
		wg_keypair_put(j->kp);
		STAT(dev, drop_key_expired);
		return false;
	}
	return true;
}

static void
rx_open(struct wg_aead *aead, struct rx_job *j)
{
	uint8_t *pl = j->buf + WG_DATA_HEADER_LEN;

	j->res = wg_aead_open(aead, pl, pl, j->len - WG_DATA_HEADER_LEN, j->kp->recv_key, j->ctr,
			      NULL, 0);
}

/* In arrival order, after rx_open: replay window, peer state, source
 * address check, delivery. Drops the job's keypair reference. */
static void
rx_post(struct wg_device *dev, struct wg_aead *aead, struct rx_job *j, uint8_t *scratch,
	struct rx_sink *sink)
{
	const struct endpoint *from = j->has_from ? &j->from : NULL;
	uint8_t *pl = j->buf + WG_DATA_HEADER_LEN;
	size_t len = j->len, plen = len - WG_DATA_OVERHEAD, tot;
	struct wg_keypair *kp = j->kp;
	struct peer *p = j->peer;
	uint64_t ctr = j->ctr;
	const uint8_t *src;
	int64_t now = now_ns(dev);
	bool ok, flush = false;
	int fam;

	if (j->res != 0) {
		STAT(dev, drop_decrypt);
		drop_log("decrypt", from);
		goto out;
	}
	pthread_mutex_lock(&kp->recv_lock);
	ok = wg_replay_check(&kp->replay, ctr);
	pthread_mutex_unlock(&kp->recv_lock);
	if (!ok) {
		STAT(dev, drop_replay);
		goto out;
	}
	pthread_mutex_lock(&p->lock);
	if (from && (!p->has_endpoint || !ep_equal(&p->ep, from))) {
		p->ep = *from;
		p->has_endpoint = true;
	}
	if (kp == p->nextkp) {
		promote_next(p);
		wg_timers_handshake_complete(&p->timers);
		p->last_handshake_wall_ns = wall_ns();
		STAT(dev, handshakes_completed);
		flush = true;
	}
	atomic_fetch_add_explicit(&p->rx_bytes, len, memory_order_relaxed);
	wg_timers_any_authenticated_packet_traversal(&p->timers, now);
	wg_timers_any_authenticated_packet_received(&p->timers);
	if (plen)
		wg_timers_data_received(&p->timers, now);
	if (p->cur && p->cur->initiator && !p->lastminute_sent &&
	    now - p->cur->birth >= (int64_t)(WG_REJECT_AFTER_TIME - WG_KEEPALIVE_TIMEOUT -
					     WG_REKEY_TIMEOUT) * WG_NS_PER_S) {
		p->lastminute_sent = true;
		send_initiation_locked(p, false);
	}
	pthread_mutex_unlock(&p->lock);
	if (flush)
		flush_staged(dev, aead, p, scratch);
	if (plen == 0)
		goto out;	/* keepalive */
	if (!ip_addr_of(pl, plen, false, &fam, &src, &tot)) {
		STAT(dev, drop_bad_ip);
		goto out;
	}
	if (wg_allowedips_lookup(dev->aips, fam, src) != p) {
		STAT(dev, drop_not_allowed);
		drop_log("allowed-ips", from);
		goto out;
	}
	if (sink) {
		sink->rx_packets++;
		sink->rx_bytes += tot;
	} else {
		STAT(dev, rx_packets);
		STAT_ADD(dev, rx_bytes, tot);
	}
	if (!sink_add(dev, sink, pl, tot))
		deliver(dev, pl, tot);
out:
	wg_keypair_put(kp);
}

static void
handle_data(struct wg_device *dev, struct wg_aead *aead, const struct endpoint *from,
	    uint8_t *buf, size_t len, uint8_t *scratch, struct rx_sink *sink)
{
	struct rx_job j;

	if (!rx_pre(dev, from, buf, len, &j))
		return;
	rx_open(aead, &j);
	rx_post(dev, aead, &j, scratch, sink);
}

/* One datagram from the socket or wg_device_input (dev->lock held). */
static void
handle_datagram_sink(struct wg_device *dev, struct wg_aead *aead, const struct endpoint *from,
		     uint8_t *buf, size_t len, uint8_t *scratch, struct rx_sink *sink)
{
	if (len < 4 || buf[0] < WG_MSG_INITIATION || buf[0] > WG_MSG_DATA || buf[1] || buf[2] ||
	    buf[3]) {
		if (dev->ops.recv_other && from) {
			STAT(dev, other_packets);
			dev->ops.recv_other(dev->ops.arg, from, buf, len);
		} else {
			if (len < 4)
				STAT(dev, drop_short);
			else
				STAT(dev, drop_bad_type);
		}
		return;
	}
	switch (buf[0]) {
	case WG_MSG_INITIATION:
		if (len != WG_INITIATION_LEN)
			break;
		handle_initiation(dev, from, buf);
		return;
	case WG_MSG_RESPONSE:
		if (len != WG_RESPONSE_LEN)
			break;
		handle_response(dev, aead, from, buf, scratch);
		return;
	case WG_MSG_COOKIE:
		if (len != WG_COOKIE_REPLY_LEN)
			break;
		handle_cookie(dev, buf);
		return;
	case WG_MSG_DATA:
		if (len < WG_DATA_MIN_LEN)
			break;
		handle_data(dev, aead, from, buf, len, scratch, sink);
		return;
	}
	STAT(dev, drop_bad_length);
}

/* One datagram from the socket or wg_device_input (dev->lock held). */
static void
handle_datagram(struct wg_device *dev, struct wg_aead *aead, const struct endpoint *from,
		uint8_t *buf, size_t len, uint8_t *scratch)
{
	handle_datagram_sink(dev, aead, from, buf, len, scratch, NULL);
}

/*
 * With UDP_GRO the kernel hands over runs of same-size datagrams from one
 * sender as one buffer, with the size in a control message; each is
 * handled on its own.
 */
struct rx_state {
	struct wg_aead *aead;
	uint8_t *buf[BATCH];
	uint8_t *scratch;
	struct mmsghdr msgs[BATCH];
	struct iovec iov[BATCH];
	struct sockaddr_storage sa[BATCH];
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} cm[BATCH];
	struct rx_sink sink;
	struct rx_job jobs[RX_JOBS];
	unsigned njobs;
};

static void
rx_run_job(struct wg_aead *aead, void *jobs, unsigned i)
{
	rx_open(aead, (struct rx_job *)jobs + i);
}

/* Decrypts the data messages collected so far, then finishes them in
 * arrival order. */
static void
rx_flush_jobs(struct wg_device *dev, struct rx_state *st)
{
	helper_run(dev->rx_helper, rx_run_job, st->jobs, st->aead, st->njobs);
	for (unsigned i = 0; i < st->njobs; i++)
		rx_post(dev, st->aead, &st->jobs[i], st->scratch, &st->sink);
	st->njobs = 0;
}

static void
rx_state_free(struct rx_state *st)
{
	if (st == NULL)
		return;
	for (int i = 0; i < BATCH; i++)
		free(st->buf[i]);
	free(st->scratch);
	wg_aead_free(st->aead);
	free(st);
}

static struct rx_state *
rx_state_new(void)
{
	struct rx_state *st = calloc(1, sizeof(*st));
	bool ok;

	if (st == NULL)
		return NULL;
	st->aead = wg_aead_new();
	st->scratch = malloc(WG_MAX_DATAGRAM);
	ok = st->aead && st->scratch;
	for (int i = 0; i < BATCH; i++)
		ok = (st->buf[i] = malloc(WG_MAX_DATAGRAM)) != NULL && ok;
	if (!ok) {
		rx_state_free(st);
		return NULL;
	}
	wg_gro_init(&st->sink.gro, st->sink.pkts, st->sink.groups, SINK_CAP);
	return st;
}

static size_t
gro_segment_size(struct msghdr *mh)
{
	for (struct cmsghdr *c = CMSG_FIRSTHDR(mh); c; c = CMSG_NXTHDR(mh, c)) {
		if (c->cmsg_level == SOL_UDP && c->cmsg_type == UDP_GRO &&
		    c->cmsg_len >= CMSG_LEN(sizeof(int))) {
			int v;

			memcpy(&v, CMSG_DATA(c), sizeof(v));
			return v > 0 ? (size_t)v : 0;
		}
	}
	return 0;
}

static void
rx_batch(struct wg_device *dev, struct rx_state *st, int n)
{
	for (int i = 0; i < n; i++) {
		struct msghdr *mh = &st->msgs[i].msg_hdr;
		size_t len = st->msgs[i].msg_len, seg = gro_segment_size(mh);
		struct endpoint from;

		if (!sa_to_ep(&st->sa[i], &from)) {
			STAT(dev, drop_short);
			continue;
		}
		if (mh->msg_flags & MSG_TRUNC) {
			STAT(dev, drop_bad_length);
			continue;
		}
		if (seg == 0 || seg > len)
			seg = len;
		for (size_t off = 0; off < len; off += seg) {
			size_t dl = len - off < seg ? len - off : seg;
			uint8_t *d = st->buf[i] + off;

			if (dl >= WG_DATA_MIN_LEN && d[0] == WG_MSG_DATA && !d[1] && !d[2] &&
			    !d[3]) {
				if (rx_pre(dev, &from, d, dl, &st->jobs[st->njobs]) &&
				    ++st->njobs == RX_JOBS)
					rx_flush_jobs(dev, st);
				continue;
			}
			/* handshakes see every earlier data message done */
			rx_flush_jobs(dev, st);
			handle_datagram_sink(dev, st->aead, &from, d, dl, st->scratch, &st->sink);
		}
		if (len == 0)
			handle_datagram_sink(dev, st->aead, &from, st->buf[i], 0, st->scratch,
					     &st->sink);
	}
	rx_flush_jobs(dev, st);
	sink_flush(dev, &st->sink);
	STAT_ADD(dev, rx_packets, st->sink.rx_packets);
	STAT_ADD(dev, rx_bytes, st->sink.rx_bytes);
	st->sink.rx_packets = st->sink.rx_bytes = 0;
}

static void *
rx_thread(void *arg)
{
	struct wg_device *dev = arg;
	struct rx_state *st = rx_state_new();

	if (st == NULL) {
		log_error("msg=\"rx thread: out of memory\"");
		return NULL;
	}
	if (dev->rx_helper)
		dev->rx_helper->jobs = st->jobs;
	for (;;) {
		struct pollfd pfd[2];
		int fd, n;

		pthread_rwlock_rdlock(&dev->lock);
		fd = dev->sock;
		pthread_rwlock_unlock(&dev->lock);
		pfd[0].fd = fd;
		pfd[0].events = POLLIN;
		pfd[1].fd = dev->stop_fd;
		pfd[1].events = POLLIN;
		if (poll(pfd, 2, 200) < 0 && errno != EINTR)
			break;
		if (pfd[1].revents)
			break;
		if (!(pfd[0].revents & POLLIN))
			continue;
		pthread_rwlock_rdlock(&dev->lock);
		if (dev->sock != fd) {
			pthread_rwlock_unlock(&dev->lock);
			continue;
		}
		for (int i = 0; i < BATCH; i++) {
			struct msghdr *mh = &st->msgs[i].msg_hdr;

			st->iov[i].iov_base = st->buf[i];
			st->iov[i].iov_len = WG_MAX_DATAGRAM;
			memset(&st->msgs[i], 0, sizeof(st->msgs[i]));
			mh->msg_iov = &st->iov[i];
			mh->msg_iovlen = 1;
			mh->msg_name = &st->sa[i];
			mh->msg_namelen = sizeof(st->sa[i]);
			mh->msg_control = st->cm[i].buf;
			mh->msg_controllen = sizeof(st->cm[i].buf);
		}
		n = recvmmsg(fd, st->msgs, BATCH, MSG_DONTWAIT, NULL);
		if (n > 0)
			rx_batch(dev, st, n);
		pthread_rwlock_unlock(&dev->lock);
	}
	rx_state_free(st);
	return NULL;
}

/* ---- timers ---- */

static void
timer_tick(struct wg_device *dev, struct wg_aead *aead, uint8_t *scratch)
{
	int64_t now = now_ns(dev);

	for (struct peer *p = dev->peers; p; p = p->next) {
		unsigned act;

		pthread_mutex_lock(&p->lock);
		act = wg_timers_run(&p->timers, now, 0);
		if (act & WG_TIMER_GIVE_UP)
			staged_clear(&p->staged);
		if (act & WG_TIMER_ZERO_KEYS)
			zero_keys(p);
		if (act & WG_TIMER_SEND_INITIATION)
			send_initiation_locked(p, act & WG_TIMER_RETRY);
		pthread_mutex_unlock(&p->lock);
		if (act & WG_TIMER_SEND_KEEPALIVE)
			send_keepalive(dev, aead, p, scratch);
	}
}

static void *
timer_thread(void *arg)
{
	struct wg_device *dev = arg;
	struct wg_aead *aead = wg_aead_new();
	uint8_t *scratch = malloc(WG_MAX_DATAGRAM);
	struct pollfd pfd = { .fd = dev->stop_fd, .events = POLLIN };

	while (aead && scratch) {
		if (poll(&pfd, 1, TIMER_TICK_MS) > 0)
			break;
		pthread_rwlock_rdlock(&dev->lock);
		timer_tick(dev, aead, scratch);
		pthread_rwlock_unlock(&dev->lock);
	}
	free(scratch);
	wg_aead_free(aead);
	return NULL;
}

/* ---- lifecycle and configuration ---- */

int
wg_device_new(int tun_fd, int mtu, uint16_t listen_port, struct wg_device **out)
{
	pthread_rwlockattr_t attr;
	struct wg_device *dev;
	int r = ERR_NOMEM;

	*out = NULL;
	if ((r = wg_crypto_init()) != 0)
		return r;
	dev = calloc(1, sizeof(*dev));
	if (dev == NULL)
		return ERR_NOMEM;
	pthread_rwlockattr_init(&attr);
	pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
	pthread_rwlock_init(&dev->lock, &attr);
	pthread_rwlockattr_destroy(&attr);
	pthread_mutex_init(&dev->index_lock, NULL);
	pthread_mutex_init(&dev->input_lock, NULL);
	wg_cookie_checker_init(&dev->checker);
	wg_cookie_checker_set_key(&dev->checker, dev->id.pub);
	dev->clock = default_clock;
	dev->tun_fd = tun_fd;
	dev->tun_vnet = wg_tun_fd_has_vnet_hdr(tun_fd);
	dev->udp_gso = true;
	dev->sock = -1;
	dev->mtu = mtu > 0 ? mtu : WG_DEFAULT_MTU;
	dev->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	dev->aips = wg_allowedips_new();
	dev->input_aead = wg_aead_new();
	dev->input_buf = malloc(WG_MAX_DATAGRAM);
	r = ERR_NOMEM;
	if (dev->stop_fd < 0 || dev->aips == NULL || dev->input_aead == NULL ||
	    dev->input_buf == NULL)
		goto fail;
	if ((r = open_socket(listen_port, 0, &dev->sock, &dev->sock_v6, &dev->port)) != 0)
		goto fail;
	dev->rx_helper = helper_new(dev, rx_run_job);
	if (tun_fd >= 0)
		dev->tx_helper = helper_new(dev, tx_run_job);
	r = ERR_INTERNAL;
	if (pthread_create(&dev->rx_thread, NULL, rx_thread, dev) != 0)
		goto fail;
	dev->rx_started = true;
	if (pthread_create(&dev->timer_thread, NULL, timer_thread, dev) != 0)
		goto fail;
	dev->timer_started = true;
	if (tun_fd >= 0) {
		if (pthread_create(&dev->tx_thread, NULL, tx_thread, dev) != 0)
			goto fail;
		dev->tx_started = true;
	}
	*out = dev;
	return 0;
fail:
	wg_device_free(dev);
	return r;
}

static void
peer_free(struct peer *p)
{
	zero_keys(p);
	staged_clear(&p->staged);
	pthread_mutex_destroy(&p->lock);
	wg_wipe(p, sizeof(*p));
	free(p);
}

/* Unlinks and frees one peer (dev write-locked). */
static void
peer_remove_locked(struct wg_device *dev, struct peer *p)
{
	for (struct peer **pp = &dev->peers; *pp; pp = &(*pp)->next) {
		if (*pp == p) {
			*pp = p->next;
			break;
		}
	}
	dev->n_peers--;
	wg_allowedips_remove_peer(dev->aips, p);
	peer_free(p);
}

void
wg_device_free(struct wg_device *dev)
{
	uint64_t one = 1;

	if (dev == NULL)
		return;
	if (dev->stop_fd >= 0)
		(void)!write(dev->stop_fd, &one, sizeof(one));
	if (dev->tx_started)
		pthread_join(dev->tx_thread, NULL);
	if (dev->rx_started)
		pthread_join(dev->rx_thread, NULL);
	if (dev->timer_started)
		pthread_join(dev->timer_thread, NULL);
	helper_free(dev->tx_helper);
	helper_free(dev->rx_helper);
	while (dev->peers)
		peer_remove_locked(dev, dev->peers);
	for (int i = 0; i < INDEX_BUCKETS; i++) {
		while (dev->index[i]) {
			struct index_entry *e = dev->index[i];

			dev->index[i] = e->next;
			free(e);
		}
	}
	if (dev->sock >= 0)
		close(dev->sock);
	if (dev->tun_fd >= 0)
		close(dev->tun_fd);
	if (dev->stop_fd >= 0)
		close(dev->stop_fd);
	wg_allowedips_free(dev->aips);
	wg_aead_free(dev->input_aead);
	free(dev->input_buf);
	wg_cookie_checker_cleanup(&dev->checker);
	pthread_mutex_destroy(&dev->index_lock);
	pthread_mutex_destroy(&dev->input_lock);
	pthread_rwlock_destroy(&dev->lock);
	wg_wipe(&dev->id, sizeof(dev->id));
	free(dev);
}

int
wg_device_set_private_key(struct wg_device *dev, const uint8_t *key)
{
	static const uint8_t zero[WG_KEY_LEN];

	pthread_rwlock_wrlock(&dev->lock);
	if (key == NULL || wg_equal(key, zero, WG_KEY_LEN)) {
		wg_wipe(&dev->id, sizeof(dev->id));
	} else {
		memcpy(dev->id.priv, key, WG_KEY_LEN);
		wg_pubkey(dev->id.pub, dev->id.priv);
		dev->id.has = true;
	}
	wg_cookie_checker_set_key(&dev->checker, dev->id.pub);
	for (struct peer *p = dev->peers, *next; p; p = next) {
		next = p->next;
		if (dev->id.has && memcmp(p->pub, dev->id.pub, WG_KEY_LEN) == 0) {
			peer_remove_locked(dev, p);
			continue;
		}
		pthread_mutex_lock(&p->lock);
		zero_keys(p);
		pthread_mutex_unlock(&p->lock);
	}
	pthread_rwlock_unlock(&dev->lock);
	return 0;
}

int
wg_device_set_listen_port(struct wg_device *dev, uint16_t port)
{
	uint16_t bound = 0;
	bool v6 = false;
	int fd = -1, r;

	pthread_rwlock_wrlock(&dev->lock);
	if (port != 0 && port == dev->port) {
		pthread_rwlock_unlock(&dev->lock);
		return 0;
	}
	if ((r = open_socket(port, dev->fwmark, &fd, &v6, &bound)) == 0) {
		close(dev->sock);
		dev->sock = fd;
		dev->sock_v6 = v6;
		dev->port = bound;
	}
	pthread_rwlock_unlock(&dev->lock);
	return r;
}

uint16_t
wg_device_listen_port(struct wg_device *dev)
{
	uint16_t port;

	pthread_rwlock_rdlock(&dev->lock);
	port = dev->port;
	pthread_rwlock_unlock(&dev->lock);
	return port;
}

int
wg_device_set_fwmark(struct wg_device *dev, uint32_t mark)
{
	int r = 0;

	pthread_rwlock_wrlock(&dev->lock);
	dev->fwmark = mark;
	if (setsockopt(dev->sock, SOL_SOCKET, SO_MARK, &mark, sizeof(mark)) != 0 && mark)
		r = ERR_IO;
	pthread_rwlock_unlock(&dev->lock);
	return r;
}

void
wg_device_set_mtu(struct wg_device *dev, int mtu)
{
	if (mtu >= 576 && mtu <= WG_MAX_PACKET)
		atomic_store(&dev->mtu, mtu);
}

static struct peer *
peer_new(struct wg_device *dev, const uint8_t pub[WG_KEY_LEN])
{
	struct peer *p = calloc(1, sizeof(*p));

	if (p == NULL)
		return NULL;
	p->dev = dev;
	pthread_mutex_init(&p->lock, NULL);
	memcpy(p->pub, pub, WG_KEY_LEN);
	memcpy(p->hs.remote_static, pub, WG_KEY_LEN);
	wg_cookie_maker_init(&p->cookie, pub);
	wg_timers_init(&p->timers);
	p->next = dev->peers;
	dev->peers = p;
	dev->n_peers++;
	return p;
}

int
wg_device_peer_set(struct wg_device *dev, const struct wg_peer_config *cfg)
{
	struct peer *p;
	bool keepalive = false;
	int r = 0;

	pthread_rwlock_wrlock(&dev->lock);
	if (dev->id.has && memcmp(cfg->public_key, dev->id.pub, WG_KEY_LEN) == 0)
		goto out;
	p = find_peer(dev, cfg->public_key);
	if (cfg->flags & WG_PEER_REMOVE) {
		if (p)
			peer_remove_locked(dev, p);
		goto out;
	}
	if (p == NULL) {
		if (cfg->flags & WG_PEER_UPDATE_ONLY)
			goto out;
		r = ERR_EXHAUSTED;
		if (dev->n_peers >= WG_MAX_PEERS || (p = peer_new(dev, cfg->public_key)) == NULL)
			goto out;
		r = 0;
	}
	pthread_mutex_lock(&p->lock);
	if (cfg->flags & WG_PEER_HAS_PSK)
		memcpy(p->hs.psk, cfg->preshared_key, WG_KEY_LEN);
	if (cfg->flags & WG_PEER_HAS_ENDPOINT) {
		p->ep = cfg->endpoint;
		p->has_endpoint = true;
	}
	if (cfg->flags & WG_PEER_HAS_KEEPALIVE)
		keepalive = wg_timers_set_persistent_keepalive(&p->timers, cfg->persistent_keepalive,
							      now_ns(dev));
	pthread_mutex_unlock(&p->lock);
	if (cfg->flags & WG_PEER_REPLACE_ALLOWED_IPS)
		wg_allowedips_remove_peer(dev->aips, p);
	for (size_t i = 0; i < cfg->n_allowed_ips; i++)
		if ((r = wg_allowedips_insert(dev->aips, &cfg->allowed_ips[i], p)) != 0)
			goto out;
	if (keepalive && dev->id.has) {
		pthread_mutex_lock(&dev->input_lock);
		send_keepalive(dev, dev->input_aead, p, dev->input_buf);
		pthread_mutex_unlock(&dev->input_lock);
	}
out:
	pthread_rwlock_unlock(&dev->lock);
	return r;
}

int
wg_device_peer_remove(struct wg_device *dev, const uint8_t public_key[static WG_KEY_LEN])
{
	struct peer *p;
	int r = ERR_NOT_FOUND;

	pthread_rwlock_wrlock(&dev->lock);
	if ((p = find_peer(dev, public_key)) != NULL) {
		peer_remove_locked(dev, p);
		r = 0;
	}
	pthread_rwlock_unlock(&dev->lock);
	return r;
}

void
wg_device_peers_clear(struct wg_device *dev)
{
	pthread_rwlock_wrlock(&dev->lock);
	while (dev->peers)
		peer_remove_locked(dev, dev->peers);
	pthread_rwlock_unlock(&dev->lock);
}

struct aip_collect {
	struct ip_prefix *v;
	size_t n, cap;
	bool oom;
};

static void
collect_aip(void *arg, const struct ip_prefix *p)
{
	struct aip_collect *c = arg;

	if (c->n == c->cap) {
		size_t cap = c->cap ? c->cap * 2 : 8;
		struct ip_prefix *v = realloc(c->v, cap * sizeof(*v));

		if (v == NULL) {
			c->oom = true;
			return;
		}
		c->v = v;
		c->cap = cap;
	}
	c->v[c->n++] = *p;
}

int
wg_device_get_info(struct wg_device *dev, struct wg_device_info **out)
{
	struct wg_device_info *info = calloc(1, sizeof(*info));
	size_t i = 0;
	int r = ERR_NOMEM;

	*out = NULL;
	if (info == NULL)
		return ERR_NOMEM;
	pthread_rwlock_rdlock(&dev->lock);
	info->has_private_key = dev->id.has;
	memcpy(info->private_key, dev->id.priv, WG_KEY_LEN);
	memcpy(info->public_key, dev->id.pub, WG_KEY_LEN);
	info->listen_port = dev->port;
	info->fwmark = dev->fwmark;
	info->peers = calloc(dev->n_peers ? dev->n_peers : 1, sizeof(*info->peers));
	if (info->peers == NULL)
		goto out;
	/* Newest first in the list; report in the order they were added. */
	for (struct peer *p = dev->peers; p; p = p->next)
		i++;
	info->n_peers = i;
	for (struct peer *p = dev->peers; p; p = p->next) {
		struct wg_peer_info *pi = &info->peers[--i];
		struct aip_collect c = { 0 };

		pthread_mutex_lock(&p->lock);
		memcpy(pi->public_key, p->pub, WG_KEY_LEN);
		memcpy(pi->preshared_key, p->hs.psk, WG_KEY_LEN);
		pi->has_endpoint = p->has_endpoint;
		pi->endpoint = p->ep;
		pi->last_handshake_sec = p->last_handshake_wall_ns / WG_NS_PER_S;
		pi->last_handshake_nsec = p->last_handshake_wall_ns % WG_NS_PER_S;
		pi->rx_bytes = atomic_load(&p->rx_bytes);
		pi->tx_bytes = atomic_load(&p->tx_bytes);
		pi->persistent_keepalive = p->timers.persistent_interval;
		pthread_mutex_unlock(&p->lock);
		wg_allowedips_walk(dev->aips, p, collect_aip, &c);
		pi->allowed_ips = c.v;
		pi->n_allowed_ips = c.n;
		if (c.oom)
			goto out;
	}
	r = 0;
out:
	pthread_rwlock_unlock(&dev->lock);
	if (r != 0) {
		wg_device_info_free(info);
		return r;
	}
	*out = info;
	return 0;
}

void
wg_device_info_free(struct wg_device_info *info)
{
	if (info == NULL)
		return;
	for (size_t i = 0; info->peers && i < info->n_peers; i++)
		free(info->peers[i].allowed_ips);
	free(info->peers);
	wg_wipe(info, sizeof(*info));
	free(info);
}

void
wg_device_get_stats(struct wg_device *dev, struct wg_device_stats *out)
{
	uint64_t *o = (uint64_t *)out;

	for (size_t i = 0; i < NSTATS; i++)
		o[i] = atomic_load_explicit(&dev->stats[i], memory_order_relaxed);
}

void
wg_device_set_output(struct wg_device *dev, const struct wg_output_ops *ops)
{
	pthread_rwlock_wrlock(&dev->lock);
	if (ops)
		dev->ops = *ops;
	else
		memset(&dev->ops, 0, sizeof(dev->ops));
	pthread_rwlock_unlock(&dev->lock);
}

void
wg_device_input(struct wg_device *dev, const struct endpoint *from, const uint8_t *pkt,
		size_t len)
{
	uint8_t *copy;

	if (len > WG_MAX_DATAGRAM) {
		STAT(dev, drop_bad_length);
		return;
	}
	copy = malloc(len ? len : 1);
	if (copy == NULL)
		return;
	memcpy(copy, pkt, len);
	pthread_rwlock_rdlock(&dev->lock);
	pthread_mutex_lock(&dev->input_lock);
	handle_datagram(dev, dev->input_aead, from, copy, len, dev->input_buf);
	pthread_mutex_unlock(&dev->input_lock);
	pthread_rwlock_unlock(&dev->lock);
	free(copy);
}

void
wg_device_send_packet(struct wg_device *dev, const uint8_t *pkt, size_t len)
{
	struct peer *p;

	if (len > WG_MAX_PACKET)
		return;
	pthread_rwlock_rdlock(&dev->lock);
	p = route(dev, pkt, len);
	if (p == NULL) {
		STAT(dev, drop_no_route);
	} else {
		pthread_mutex_lock(&dev->input_lock);
		send_plain(dev, dev->input_aead, p, pkt, len, dev->input_buf);
		pthread_mutex_unlock(&dev->input_lock);
	}
	pthread_rwlock_unlock(&dev->lock);
}

int
wg_device_send_raw(struct wg_device *dev, const struct endpoint *to, const uint8_t *pkt,
		   size_t len)
{
	struct sockaddr_storage ss;
	int r = 0;

	pthread_rwlock_rdlock(&dev->lock);
	if (sendto(dev->sock, pkt, len, MSG_DONTWAIT, (struct sockaddr *)&ss,
		   ep_to_sa(dev, to, &ss)) < 0)
		r = ERR_IO;
	pthread_rwlock_unlock(&dev->lock);
	return r;
}

bool
wg_device_is_dead(struct wg_device *dev)
{
	return atomic_load(&dev->dead);
}

void
wg_device_set_udp_gso(struct wg_device *dev, bool on)
{
	atomic_store(&dev->udp_gso, on);
}

void
wg_device_set_clock(struct wg_device *dev, int64_t (*now_fn)(void *), void *arg)
{
	pthread_rwlock_wrlock(&dev->lock);
	dev->clock = now_fn ? now_fn : default_clock;
	dev->clock_arg = arg;
	pthread_rwlock_unlock(&dev->lock);
}
