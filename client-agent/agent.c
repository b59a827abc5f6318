// SPDX-License-Identifier: MIT
/*
 * Agent core. Transport selection: every WireGuard datagram for a peer
 * passes the engine's output hook (hook_send). While the peer has a direct
 * path proved by a disco pong (paths_best) the engine sends it over UDP to
 * the endpoint the agent configured; otherwise it goes over DERP to the
 * peer's home region, whose relay connection is opened on demand. Traffic
 * therefore flows via DERP from the first packet and moves to UDP when a
 * pong arrives; when pongs stop the path is no longer trusted and the next
 * packet goes via DERP again, with the WireGuard session untouched.
 *
 * Path discovery runs on the agent loop thread: disco pings to every
 * candidate endpoint (netmap endpoints, call-me-maybe endpoints, addresses
 * that pinged us), pongs to every ping, and call-me-maybe over DERP every
 * AGENT_CMM_EVERY_MS while no direct path exists so that both sides punch
 * at once. Disco and STUN datagrams reach the loop through a bounded inbox,
 * never on the engine's threads, so no engine lock is held while they are
 * handled.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <inttypes.h>
#include <net/if.h>
#include <poll.h>
#include <stdarg.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "client-agent/agent.h"
#include "client-agent/control_client.h"
#include "client-agent/derp_client.h"
#include "client-agent/disco.h"
#include "client-agent/filter.h"
#include "client-agent/netcfg.h"
#include "client-agent/netcheck.h"
#include "client-agent/paths.h"
#include "client-agent/wg/device.h"
#include "client-agent/wg/tun.h"
#include "common/buf.h"
#include "common/log.h"
#include "common/util.h"
#include "relay/derp_map.h"
#include "relay/stun.h"

enum {
	MAX_EPS = 16,
	MAX_ALLOWED = 16,
	MAX_DERPS = 32,
	INBOX_LEN = 512,
	INBOX_PKT = 1024,
	MAX_WAITERS = 16,
	NAME_MAX_LEN = 64,
	TICK_MS = 50,
	KEY_HASH_BITS = 13,		/* 8192 slots: at most half full */
	KEY_HASH_SIZE = 1 << KEY_HASH_BITS,
};
_Static_assert(KEY_HASH_SIZE >= 2 * AGENT_MAX_PEERS, "peer key hash too small");

struct apeer {
	int64_t id;
	char name[NAME_MAX_LEN], user[NAME_MAX_LEN];
	uint8_t node_key[KEY_LEN], disco_key[KEY_LEN];
	struct ip_addr addr4, addr6;
	struct ip_prefix allowed[MAX_ALLOWED];
	size_t nallowed;
	struct endpoint eps[MAX_EPS];
	size_t neps;
	struct endpoint cmm[MAX_EPS];
	size_t ncmm;
	int home_derp;
	bool online, expired, seen;
	struct paths *paths;
	bool direct;
	struct endpoint direct_ep;
	int rtt_ms;
	int64_t last_cmm_ms, last_derp_tx_ms, direct_since_ms, last_reprobe_ms;
	uint64_t tx_derp, tx_udp, disco_rx, disco_tx;
};

struct dctx {
	struct agent *a;
	int region;
};

struct dconn {
	int region;
	struct derp_client *c;
	struct dctx *ctx;
};

enum in_kind { IN_UDP, IN_DERP };

struct inbox_item {
	enum in_kind kind;
	struct endpoint from;
	uint8_t src[KEY_LEN];
	int region;
	size_t len;
	uint8_t pkt[INBOX_PKT];
};

struct waiter {
	bool active, done;
	uint8_t txid[DISCO_TXID_LEN];
	int64_t sent_ms;
	int rtt_ms;
	bool via_udp;
	struct endpoint from;
};

struct agent {
	struct agent_config cfg;
	uint8_t disco_priv[KEY_LEN], disco_pub[KEY_LEN];
	struct wg_device *dev;
	int tun_fd;
	char ifname[IFNAMSIZ];
	atomic_bool stop;

	pthread_mutex_t mu;		/* everything below unless noted */
	pthread_cond_t cond;		/* netmap arrived, ping answered, netcheck done */
	struct apeer **peers;
	size_t npeers;
	struct apeer **khash;		/* node key -> peer, open addressing */
	bool have_self;
	int64_t self_id;
	char self_name[NAME_MAX_LEN], self_user[NAME_MAX_LEN];
	struct ip_addr self4, self6;
	bool routes_done;
	char *derp_map_json;
	struct derp_map *dmap;
	struct dconn derps[MAX_DERPS];
	size_t nderps;
	int home_region;
	struct endpoint my_eps[MAX_EPS];
	size_t nmy_eps;
	char *reported;			/* last endpoint report sent */
	struct waiter waiters[MAX_WAITERS];

	/* control */
	pthread_mutex_t ctl_mu;		/* serialises up/down; taken before mu */
	struct control *ctl;
	char login_server[512], hostname[NAME_MAX_LEN];
	bool want_up, control_connected, have_netmap;
	char control_err[512];
	uint64_t netmaps, deltas;

	/* filter: read on the engine's receive path */
	pthread_rwlock_t flock;
	char *filter_json;
	struct wm_filter *filter;
	struct conntrack *ct;

	/* netcheck */
	pthread_mutex_t nc_mu;		/* guards nc_active only (fed by the loop) */
	struct netcheck *nc_active;
	struct netcheck_report report;	/* under mu */
	bool have_report, nc_want;
	uint64_t nc_gen;

	/* inbox (own lock) */
	pthread_mutex_t in_mu;
	pthread_cond_t in_cond;
	struct inbox_item *inbox;
	unsigned in_head, in_len;

	pthread_t loop_thr, tun_thr, nc_thr, resume_thr;
	bool tun_started, resume_started;

	atomic_uint_fast64_t c_inbox_drop, c_disco_bad, c_disco_unknown, c_derp_in, c_derp_out;
	atomic_uint_fast64_t c_derp_drop, c_tun_write_err, c_filter_drop;
};

/* ---- small helpers ---- */

static bool
ep_equal(const struct endpoint *a, const struct endpoint *b)
{
	return a->port == b->port && addr_equal(&a->addr, &b->addr);
}

static void
timespec_in(struct timespec *ts, int64_t ms)
{
	clock_gettime(CLOCK_REALTIME, ts);
	ts->tv_sec += ms / 1000;
	ts->tv_nsec += (ms % 1000) * 1000000;
	if (ts->tv_nsec >= 1000000000) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000;
	}
}

static json_t *
reply_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static json_t *
reply_err(const char *fmt, ...)
{
	char msg[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return json_pack("{s:b, s:s}", "ok", 0, "error", msg);
}

static json_t *
reply_ok(const char *text, json_t *data)
{
	return json_pack("{s:b, s:s, s:o}", "ok", 1, "text", text ? text : "",
	    "data", data ? data : json_object());
}

static size_t
key_slot(const uint8_t key[static KEY_LEN])
{
	uint64_t h;

	memcpy(&h, key, sizeof(h));
	return (size_t)((h * 0x9E3779B97F4A7C15ull) >> (64 - KEY_HASH_BITS));
}

/* The engine's hooks look peers up by node key for every packet. */
static struct apeer *
find_key_locked(struct agent *a, const uint8_t key[static KEY_LEN])
{
	for (size_t i = key_slot(key), n = 0; n < KEY_HASH_SIZE; i = (i + 1) & (KEY_HASH_SIZE - 1), n++) {
		struct apeer *p = a->khash[i];

		if (p == NULL)
			return NULL;
		if (memcmp(p->node_key, key, KEY_LEN) == 0)
			return p;
	}
	return NULL;
}

/* Rebuilds the key index after the peer set or a key changed (rare). */
static void
rehash_locked(struct agent *a)
{
	memset(a->khash, 0, KEY_HASH_SIZE * sizeof(*a->khash));
	for (size_t k = 0; k < a->npeers; k++) {
		size_t i = key_slot(a->peers[k]->node_key);

		while (a->khash[i] != NULL)
			i = (i + 1) & (KEY_HASH_SIZE - 1);
		a->khash[i] = a->peers[k];
	}
}

static struct apeer *
find_disco_locked(struct agent *a, const uint8_t key[static KEY_LEN])
{
	for (size_t i = 0; i < a->npeers; i++)
		if (memcmp(a->peers[i]->disco_key, key, KEY_LEN) == 0)
			return a->peers[i];
	return NULL;
}

static struct apeer *
find_id_locked(struct agent *a, int64_t id, size_t *idx)
{
	for (size_t i = 0; i < a->npeers; i++)
		if (a->peers[i]->id == id) {
			if (idx)
				*idx = i;
			return a->peers[i];
		}
	return NULL;
}

static const char *
region_code_locked(struct agent *a, int region, char buf[static 16])
{
	const struct derp_region *r = a->dmap ? derp_map_region(a->dmap, region) : NULL;

	if (r && r->code[0])
		return r->code;
	snprintf(buf, 16, "%d", region);
	return buf;
}

/* ---- prefs ---- */

static void
prefs_save(struct agent *a)
{
	char path[1024], tmp[1100];
	json_t *j = json_pack("{s:s, s:s, s:b}", "login_server", a->login_server,
	    "hostname", a->hostname, "want_up", a->want_up);
	int fd;

	snprintf(path, sizeof(path), "%s/prefs.json", a->cfg.state_dir);
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	if (j == NULL)
		return;
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0 || json_dumpfd(j, fd, JSON_COMPACT) != 0 || fsync(fd) != 0 ||
	    rename(tmp, path) != 0)
		log_warn("msg=\"cannot save prefs\" path=%s err=\"%s\"", path, strerror(errno));
	if (fd >= 0)
		close(fd);
	json_decref(j);
}

static void
prefs_load(struct agent *a)
{
	char path[1024];
	json_t *j;
	const char *s;

	snprintf(path, sizeof(path), "%s/prefs.json", a->cfg.state_dir);
	if ((j = json_load_file(path, 0, NULL)) == NULL)
		return;
	if ((s = json_string_value(json_object_get(j, "login_server"))) != NULL)
		str_copy(a->login_server, s, sizeof(a->login_server));
	if ((s = json_string_value(json_object_get(j, "hostname"))) != NULL)
		str_copy(a->hostname, s, sizeof(a->hostname));
	a->want_up = json_is_true(json_object_get(j, "want_up"));
	json_decref(j);
}

/* ---- inbox ---- */

static void
inbox_push(struct agent *a, enum in_kind kind, const struct endpoint *from,
	   const uint8_t *src, int region, const uint8_t *pkt, size_t len)
{
	struct inbox_item *it;

	if (len > INBOX_PKT) {
		atomic_fetch_add(&a->c_inbox_drop, 1);
		return;
	}
	pthread_mutex_lock(&a->in_mu);
	if (a->in_len == INBOX_LEN) {
		pthread_mutex_unlock(&a->in_mu);
		atomic_fetch_add(&a->c_inbox_drop, 1);
		return;
	}
	it = &a->inbox[(a->in_head + a->in_len) % INBOX_LEN];
	it->kind = kind;
	if (from)
		it->from = *from;
	else
		memset(&it->from, 0, sizeof(it->from));
	if (src)
		memcpy(it->src, src, KEY_LEN);
	it->region = region;
	it->len = len;
	memcpy(it->pkt, pkt, len);
	a->in_len++;
	pthread_cond_signal(&a->in_cond);
	pthread_mutex_unlock(&a->in_mu);
}

/* ---- DERP connections ---- */

static void
derp_recv(void *ctx, const uint8_t src[static KEY_LEN], const uint8_t *pkt, size_t n)
{
	struct dctx *d = ctx;

	atomic_fetch_add(&d->a->c_derp_in, 1);
	if (disco_looks_like(pkt, n))
		inbox_push(d->a, IN_DERP, NULL, src, d->region, pkt, n);
	else
		wg_device_input(d->a->dev, NULL, pkt, n);
}

static void
derp_state(void *ctx, bool connected)
{
	struct dctx *d = ctx;

	log_info("msg=\"derp %s\" region=%d", connected ? "connected" : "disconnected", d->region);
}

static struct derp_client *
derp_get_locked(struct agent *a, int region, bool create)
{
	const struct derp_region *rg;
	const struct derp_node *node = NULL;
	struct derp_client_config dc;
	struct dctx *ctx;
	struct derp_client *c;

	for (size_t i = 0; i < a->nderps; i++)
		if (a->derps[i].region == region)
			return a->derps[i].c;
	if (!create || a->dmap == NULL || a->nderps == MAX_DERPS ||
	    (rg = derp_map_region(a->dmap, region)) == NULL)
		return NULL;
	for (size_t i = 0; i < rg->nnodes; i++)
		if (!rg->nodes[i].stun_only) {
			node = &rg->nodes[i];
			break;
		}
	if (node == NULL || (ctx = calloc(1, sizeof(*ctx))) == NULL)
		return NULL;
	ctx->a = a;
	ctx->region = region;
	memset(&dc, 0, sizeof(dc));
	dc.host = node->host;
	if (node->ipv4[0] && strcmp(node->ipv4, "none") != 0)
		dc.dial_addr = node->ipv4;
	else if (node->ipv6[0] && strcmp(node->ipv6, "none") != 0)
		dc.dial_addr = node->ipv6;
	dc.port = derp_node_derp_port(node);
	dc.node_private_key = a->cfg.node_priv;
	dc.preferred = region == a->home_region;
	dc.region_id = region;
	dc.cb.recv = derp_recv;
	dc.cb.state = derp_state;
	dc.cb.ctx = ctx;
	if ((c = derp_client_new(&dc)) == NULL || derp_client_start(c) != 0) {
		derp_client_free(c);
		free(ctx);
		return NULL;
	}
	a->derps[a->nderps].region = region;
	a->derps[a->nderps].c = c;
	a->derps[a->nderps].ctx = ctx;
	a->nderps++;
	log_info("msg=\"derp connecting\" region=%d host=%s", region, node->host);
	return c;
}

/* Sends a datagram to a peer over DERP (mu held). */
static int
derp_send_locked(struct agent *a, int region, const uint8_t key[static KEY_LEN],
		 const uint8_t *pkt, size_t len)
{
	struct derp_client *c;

	if (region <= 0)
		region = a->home_region;
	if (region <= 0 || (c = derp_get_locked(a, region, true)) == NULL) {
		atomic_fetch_add(&a->c_derp_drop, 1);
		return ERR_UNAVAILABLE;
	}
	if (derp_client_send(c, key, pkt, len) != 0) {
		atomic_fetch_add(&a->c_derp_drop, 1);
		return ERR_EXHAUSTED;
	}
	atomic_fetch_add(&a->c_derp_out, 1);
	return 0;
}

/* Detaches every relay connection (mu held); free them with derps_free. */
static size_t
derps_take_locked(struct agent *a, struct dconn *out, bool keep_home)
{
	size_t n = 0, k = 0;

	for (size_t i = 0; i < a->nderps; i++) {
		if (keep_home && a->derps[i].region == a->home_region)
			a->derps[k++] = a->derps[i];
		else
			out[n++] = a->derps[i];
	}
	a->nderps = k;
	return n;
}

static void
derps_free(struct dconn *d, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		derp_client_free(d[i].c);
		free(d[i].ctx);
	}
}

static void
set_home_locked(struct agent *a, int region)
{
	struct derp_client *c;

	if (region == a->home_region)
		return;
	for (size_t i = 0; i < a->nderps; i++)
		if (a->derps[i].region == a->home_region)
			derp_client_note_preferred(a->derps[i].c, false);
	log_info("msg=\"home relay\" region=%d previous=%d", region, a->home_region);
	a->home_region = region;
	if ((c = derp_get_locked(a, region, true)) != NULL)
		derp_client_note_preferred(c, true);
}

/* A home region before netcheck has measured: the first that may be one. */
static int
first_region_locked(struct agent *a)
{
	for (size_t i = 0; a->dmap && i < a->dmap->nregions; i++)
		if (!a->dmap->regions[i].no_measure_no_home)
			return a->dmap->regions[i].id;
	return 0;
}

/* ---- engine hooks ---- */

static int
hook_send(void *arg, const uint8_t key[static WG_KEY_LEN], const struct endpoint *ep,
	  const uint8_t *pkt, size_t len)
{
	struct agent *a = arg;
	struct apeer *p;
	int region;

	pthread_mutex_lock(&a->mu);
	p = find_key_locked(a, key);
	if (p == NULL) {
		pthread_mutex_unlock(&a->mu);
		return WG_OUTPUT_UDP;
	}
	if (p->direct && ep != NULL) {
		p->tx_udp++;
		pthread_mutex_unlock(&a->mu);
		return WG_OUTPUT_UDP;
	}
	region = p->home_derp;
	p->tx_derp++;
	p->last_derp_tx_ms = time_mono_ms();
	if (derp_send_locked(a, region, key, pkt, len) != 0 && region != a->home_region)
		(void)!derp_send_locked(a, a->home_region, key, pkt, len);
	pthread_mutex_unlock(&a->mu);
	return 0;
}

static void
hook_recv_other(void *arg, const struct endpoint *from, const uint8_t *pkt, size_t len)
{
	struct agent *a = arg;

	if (disco_looks_like(pkt, len) || stun_looks_like(pkt, len))
		inbox_push(a, IN_UDP, from, NULL, 0, pkt, len);
}

static void
hook_deliver(void *arg, const uint8_t *pkt, size_t len)
{
	struct agent *a = arg;
	enum filter_verdict v;

	pthread_rwlock_rdlock(&a->flock);
	v = filter_check_inbound(a->filter, a->ct, pkt, len, time_mono_ms());
	pthread_rwlock_unlock(&a->flock);
	if (v != FILTER_ACCEPT && v != FILTER_ACCEPT_ESTABLISHED) {
		atomic_fetch_add(&a->c_filter_drop, 1);
		return;
	}
	if (a->tun_fd >= 0 && write(a->tun_fd, pkt, len) < 0)
		atomic_fetch_add(&a->c_tun_write_err, 1);
}

/* ---- TUN reader ---- */

static void *
tun_main(void *arg)
{
	struct agent *a = arg;
	uint8_t *buf = malloc(WG_MAX_PACKET);

	while (buf && !atomic_load(&a->stop)) {
		struct pollfd p = { .fd = a->tun_fd, .events = POLLIN };
		ssize_t n;

		if (poll(&p, 1, 500) <= 0)
			continue;
		if (p.revents & (POLLERR | POLLHUP | POLLNVAL)) {
			log_error("msg=\"TUN device failed\" dev=%s", a->ifname);
			break;
		}
		while ((n = read(a->tun_fd, buf, WG_MAX_PACKET)) > 0) {
			conntrack_note_outbound(a->ct, buf, (size_t)n, time_mono_ms());
			wg_device_send_packet(a->dev, buf, (size_t)n);
		}
	}
	free(buf);
	return NULL;
}

/* ---- disco ---- */

static int
seal_to(struct agent *a, const uint8_t peer_disco[static KEY_LEN], const struct disco_msg *m,
	uint8_t out[static DISCO_MAX_PACKET], size_t *len)
{
	return disco_seal(a->disco_priv, a->disco_pub, peer_disco, m, out, DISCO_MAX_PACKET, len);
}

/* The candidate set: netmap endpoints plus call-me-maybe ones (mu held). */
static void
update_candidates_locked(struct apeer *p, int64_t now)
{
	struct endpoint all[2 * MAX_EPS];
	size_t n = 0;

	for (size_t i = 0; i < p->neps; i++)
		all[n++] = p->eps[i];
	for (size_t i = 0; i < p->ncmm; i++)
		all[n++] = p->cmm[i];
	paths_set_candidates(p->paths, all, n, now);
}

static void
handle_disco(struct agent *a, const struct inbox_item *it)
{
	uint8_t sender[KEY_LEN], out[DISCO_MAX_PACKET], key[KEY_LEN];
	struct disco_msg m, r;
	struct apeer *p;
	int64_t now = time_mono_ms();
	size_t olen = 0;
	bool reply = false;

	if (disco_open(a->disco_priv, it->pkt, it->len, sender, &m) != 0) {
		atomic_fetch_add(&a->c_disco_bad, 1);
		return;
	}
	memset(&r, 0, sizeof(r));
	pthread_mutex_lock(&a->mu);
	p = find_disco_locked(a, sender);
	if (p == NULL || (it->kind == IN_DERP && memcmp(it->src, p->node_key, KEY_LEN) != 0)) {
		pthread_mutex_unlock(&a->mu);
		atomic_fetch_add(&a->c_disco_unknown, 1);
		return;
	}
	p->disco_rx++;
	memcpy(key, p->node_key, KEY_LEN);
	switch (m.type) {
	case DISCO_PING:
		if (memcmp(m.node_key, p->node_key, KEY_LEN) != 0)
			break;
		r.type = DISCO_PONG;
		memcpy(r.txid, m.txid, DISCO_TXID_LEN);
		if (it->kind == IN_UDP) {
			/* The peer reaches us directly, so our NAT now passes its
			 * address: probe every candidate again at once instead of
			 * waiting out the probe interval (our first pings may have
			 * been dropped by the peer's NAT before it had sent to us). */
			if (!p->direct && !paths_best(p->paths, now, NULL, NULL) &&
			    now - p->last_reprobe_ms >= 1000) {
				struct paths *fresh = paths_new();

				if (fresh) {
					paths_free(p->paths);
					p->paths = fresh;
					update_candidates_locked(p, now);
					p->last_reprobe_ms = now;
				}
			}
			paths_heard_from(p->paths, &it->from, now);
			r.src = it->from;
		} else {
			r.src.addr.family = AF_INET6;	/* unspecified: came over DERP */
		}
		reply = seal_to(a, p->disco_key, &r, out, &olen) == 0;
		if (reply && it->kind == IN_DERP) {
			/* Back the way it came: the sender is connected there. */
			struct derp_client *c = derp_get_locked(a, it->region, false);

			if (c == NULL || derp_client_send(c, key, out, olen) != 0)
				(void)!derp_send_locked(a, p->home_derp, key, out, olen);
			reply = false;
		}
		p->disco_tx++;
		break;
	case DISCO_PONG:
		if (it->kind == IN_UDP)
			paths_pong(p->paths, m.txid, &it->from, now);
		for (int i = 0; i < MAX_WAITERS; i++) {
			struct waiter *w = &a->waiters[i];

			if (!w->active || w->done || memcmp(w->txid, m.txid, DISCO_TXID_LEN) != 0)
				continue;
			w->done = true;
			w->rtt_ms = (int)(now - w->sent_ms);
			w->via_udp = it->kind == IN_UDP;
			w->from = it->from;
			pthread_cond_broadcast(&a->cond);
		}
		break;
	case DISCO_CALL_ME_MAYBE:
		p->ncmm = m.n_endpoints < MAX_EPS ? m.n_endpoints : MAX_EPS;
		memcpy(p->cmm, m.endpoints, p->ncmm * sizeof(p->cmm[0]));
		update_candidates_locked(p, now);
		break;
	}
	pthread_mutex_unlock(&a->mu);
	if (reply && wg_device_send_raw(a->dev, &it->from, out, olen) != 0)
		log_debug("msg=\"pong send failed\"");
}

/* ---- agent loop: inbox, path timers, relay cleanup ---- */

struct pending {
	struct endpoint to;
	size_t len;
	uint8_t pkt[DISCO_MAX_PACKET];
};

static void
tick_peer(struct agent *a, size_t i, int64_t now)
{
	struct paths_ping pp[16];
	struct pending *out = NULL;
	size_t n = 0, nout = 0;
	struct apeer *p;
	struct endpoint best = { 0 };
	int rtt = 0;
	bool go_direct = false;
	uint8_t key[KEY_LEN];

	pthread_mutex_lock(&a->mu);
	if (i >= a->npeers)
		goto unlock;
	p = a->peers[i];
	memcpy(key, p->node_key, KEY_LEN);
	if (!p->online || p->expired || key_is_zero(p->disco_key)) {
		p->direct = false;
		goto unlock;
	}
	n = paths_due_pings(p->paths, now, pp, ARRAY_SIZE(pp));
	if (n > 0 && (out = malloc(n * sizeof(*out))) == NULL)
		n = 0;
	for (size_t k = 0; k < n; k++) {
		struct disco_msg m = { .type = DISCO_PING };

		memcpy(m.txid, pp[k].txid, DISCO_TXID_LEN);
		memcpy(m.node_key, a->cfg.node_pub, KEY_LEN);
		out[nout].to = pp[k].to;
		if (seal_to(a, p->disco_key, &m, out[nout].pkt, &out[nout].len) == 0)
			nout++;
	}
	p->disco_tx += nout;
	if (paths_best(p->paths, now, &best, &rtt)) {
		p->rtt_ms = rtt;
		if (!p->direct || !ep_equal(&best, &p->direct_ep))
			go_direct = true;
	} else if (p->direct) {
		char e[ADDR_STR_MAX];

		endpoint_fmt(e, &p->direct_ep);
		log_info("msg=\"direct path lost; via DERP\" peer=%s endpoint=%s", p->name, e);
		p->direct = false;
	}
	if (!p->direct && !go_direct && n > 0 && now - p->last_cmm_ms >= AGENT_CMM_EVERY_MS &&
	    a->nmy_eps > 0) {
		struct disco_msg m = { .type = DISCO_CALL_ME_MAYBE };
		uint8_t pkt[DISCO_MAX_PACKET];
		size_t len;

		m.n_endpoints = a->nmy_eps;
		memcpy(m.endpoints, a->my_eps, a->nmy_eps * sizeof(m.endpoints[0]));
		if (seal_to(a, p->disco_key, &m, pkt, &len) == 0 &&
		    derp_send_locked(a, p->home_derp, key, pkt, len) == 0) {
			p->last_cmm_ms = now;
			p->disco_tx++;
		}
	}
unlock:
	pthread_mutex_unlock(&a->mu);
	for (size_t k = 0; k < nout; k++)
		if (wg_device_send_raw(a->dev, &out[k].to, out[k].pkt, out[k].len) != 0)
			log_debug("msg=\"disco ping send failed\"");
	free(out);
	if (go_direct) {
		struct wg_peer_config pc;
		char e[ADDR_STR_MAX];

		memset(&pc, 0, sizeof(pc));
		memcpy(pc.public_key, key, KEY_LEN);
		pc.flags = WG_PEER_UPDATE_ONLY | WG_PEER_HAS_ENDPOINT;
		pc.endpoint = best;
		if (wg_device_peer_set(a->dev, &pc) != 0)
			return;
		pthread_mutex_lock(&a->mu);
		if ((p = find_key_locked(a, key)) != NULL) {
			if (!p->direct)
				p->direct_since_ms = now;
			p->direct = true;
			p->direct_ep = best;
			endpoint_fmt(e, &best);
			log_info("msg=\"direct path\" peer=%s endpoint=%s rtt_ms=%d", p->name, e, rtt);
		}
		pthread_mutex_unlock(&a->mu);
	}
}

static void
cleanup_derps(struct agent *a)
{
	struct dconn gone[MAX_DERPS];
	size_t n = 0, k = 0;

	pthread_mutex_lock(&a->mu);
	for (size_t i = 0; i < a->nderps; i++) {
		if (a->derps[i].region != a->home_region &&
		    derp_client_idle_ms(a->derps[i].c) > AGENT_DERP_IDLE_MS)
			gone[n++] = a->derps[i];
		else
			a->derps[k++] = a->derps[i];
	}
	a->nderps = k;
	pthread_mutex_unlock(&a->mu);
	derps_free(gone, n);
}

static void *
loop_main(void *arg)
{
	struct agent *a = arg;
	struct inbox_item *it = malloc(sizeof(*it));
	int64_t next_tick = 0, next_clean = 0;

	while (it && !atomic_load(&a->stop)) {
		int64_t now = time_mono_ms();
		bool have = false;

		pthread_mutex_lock(&a->in_mu);
		if (a->in_len == 0 && now < next_tick) {
			struct timespec ts;

			timespec_in(&ts, next_tick - now);
			pthread_cond_timedwait(&a->in_cond, &a->in_mu, &ts);
		}
		if (a->in_len > 0) {
			*it = a->inbox[a->in_head];
			a->in_head = (a->in_head + 1) % INBOX_LEN;
			a->in_len--;
			have = true;
		}
		pthread_mutex_unlock(&a->in_mu);
		if (have) {
			if (stun_looks_like(it->pkt, it->len)) {
				pthread_mutex_lock(&a->nc_mu);
				if (a->nc_active)
					netcheck_feed(a->nc_active, &it->from, it->pkt, it->len);
				pthread_mutex_unlock(&a->nc_mu);
			} else {
				handle_disco(a, it);
			}
		}
		now = time_mono_ms();
		if (now >= next_tick) {
			size_t n;

			pthread_mutex_lock(&a->mu);
			n = a->npeers;
			pthread_mutex_unlock(&a->mu);
			for (size_t i = 0; i < n; i++)
				tick_peer(a, i, now);
			next_tick = now + TICK_MS;
		}
		if (now >= next_clean) {
			cleanup_derps(a);
			next_clean = now + 5000;
		}
	}
	free(it);
	return NULL;
}

/* ---- endpoints and netcheck ---- */

static bool
tailnet_addr(const struct ip_addr *ip)
{
	static const uint8_t ula[6] = { 0xfd, 0x7a, 0x11, 0x5c, 0xa1, 0xe0 };

	if (ip->family == AF_INET)
		return ip->b[0] == 100 && (ip->b[1] & 0xc0) == 64;
	return memcmp(ip->b, ula, sizeof(ula)) == 0;
}

/* Local interface addresses with our port, then the STUN-mapped one. */
static size_t
gather_endpoints(struct agent *a, const struct netcheck_report *rep, struct endpoint *out,
		 size_t max)
{
	struct ifaddrs *ifa = NULL;
	uint16_t port = wg_device_listen_port(a->dev);
	size_t n = 0;

	if (rep && rep->udp && rep->ipv4 && rep->global_v4.port)
		out[n++] = rep->global_v4;
	if (getifaddrs(&ifa) != 0)
		return n;
	for (struct ifaddrs *i = ifa; i && n < max; i = i->ifa_next) {
		struct endpoint e;
		bool dup = false;

		if (i->ifa_addr == NULL || (i->ifa_flags & IFF_LOOPBACK) || !(i->ifa_flags & IFF_UP) ||
		    strcmp(i->ifa_name, a->ifname) == 0 ||
		    (i->ifa_addr->sa_family != AF_INET && i->ifa_addr->sa_family != AF_INET6) ||
		    endpoint_from_sockaddr(i->ifa_addr, &e) != 0)
			continue;
		if (e.addr.family == AF_INET6 && e.addr.b[0] == 0xfe && (e.addr.b[1] & 0xc0) == 0x80)
			continue;
		if (tailnet_addr(&e.addr))
			continue;
		e.port = port;
		for (size_t k = 0; k < n; k++)
			dup |= ep_equal(&out[k], &e);
		if (!dup)
			out[n++] = e;
	}
	freeifaddrs(ifa);
	return n;
}

static void
report_endpoints(struct agent *a)
{
	struct endpoint eps[MAX_EPS];
	char txt[MAX_EPS][ADDR_STR_MAX], *key;
	const char *ptrs[MAX_EPS];
	size_t n;
	struct buf b;
	int home;

	pthread_mutex_lock(&a->mu);
	n = gather_endpoints(a, a->have_report ? &a->report : NULL, eps, MAX_EPS);
	memcpy(a->my_eps, eps, n * sizeof(eps[0]));
	a->nmy_eps = n;
	home = a->home_region;
	buf_init(&b, 4096);
	for (size_t i = 0; i < n; i++) {
		endpoint_fmt(txt[i], &eps[i]);
		ptrs[i] = txt[i];
		if (buf_printf(&b, "%s,", txt[i]) != 0)
			break;
	}
	if (buf_printf(&b, "home=%d", home) != 0 || (key = buf_cstr(&b)) == NULL ||
	    (a->reported && strcmp(a->reported, key) == 0) || a->ctl == NULL) {
		pthread_mutex_unlock(&a->mu);
		buf_cleanup(&b);
		return;
	}
	free(a->reported);
	a->reported = strdup(key);
	pthread_mutex_unlock(&a->mu);
	buf_cleanup(&b);
	/* ctl is only replaced under ctl_mu, which our callers do not hold;
	 * the report is harmless if it races a `down`. */
	pthread_mutex_lock(&a->ctl_mu);
	if (a->ctl)
		control_set_endpoints(a->ctl, ptrs, n, home);
	pthread_mutex_unlock(&a->ctl_mu);
}

static void
run_netcheck(struct agent *a)
{
	struct derp_map *map = NULL;
	struct netcheck_opts opts = { 0 };
	struct netcheck_report rep;
	struct netcheck *nc;
	char why[256], *json;
	int64_t deadline;
	int pref;

	pthread_mutex_lock(&a->mu);
	json = a->derp_map_json ? strdup(a->derp_map_json) : NULL;
	pthread_mutex_unlock(&a->mu);
	if (json == NULL || derp_map_parse(json, strlen(json), &map, why, sizeof(why)) != 0) {
		free(json);
		return;
	}
	free(json);
	if ((nc = netcheck_begin(map, &opts)) == NULL) {
		derp_map_free(map);
		return;
	}
	pthread_mutex_lock(&a->nc_mu);
	a->nc_active = nc;
	pthread_mutex_unlock(&a->nc_mu);
	deadline = time_mono_ms() + NETCHECK_STUN_TIMEOUT_MS + 200;
	while (!atomic_load(&a->stop) && time_mono_ms() < deadline) {
		struct endpoint dst;
		uint8_t pkt[STUN_BINDING_REQUEST_LEN];
		int next = 20;
		bool done, have;

		pthread_mutex_lock(&a->nc_mu);
		done = netcheck_done(nc);
		have = !done && netcheck_next_probe(nc, &dst, pkt, &next);
		pthread_mutex_unlock(&a->nc_mu);
		if (done)
			break;
		if (have) {
			if (wg_device_send_raw(a->dev, &dst, pkt, sizeof(pkt)) != 0)
				log_debug("msg=\"stun probe send failed\"");
			continue;
		}
		usleep((useconds_t)((next < 0 || next > 20 ? 20 : next) * 1000));
	}
	pthread_mutex_lock(&a->nc_mu);
	a->nc_active = NULL;
	pthread_mutex_unlock(&a->nc_mu);
	netcheck_finish(nc, &rep);
	pref = netcheck_pick_preferred(&rep, map);
	netcheck_free(nc);
	derp_map_free(map);
	pthread_mutex_lock(&a->mu);
	a->report = rep;
	a->have_report = true;
	a->nc_gen++;
	if (pref > 0 && a->dmap && derp_map_region(a->dmap, pref))
		set_home_locked(a, pref);
	pthread_cond_broadcast(&a->cond);
	pthread_mutex_unlock(&a->mu);
	{
		char g[ADDR_STR_MAX] = "-";

		if (rep.ipv4)
			endpoint_fmt(g, &rep.global_v4);
		log_info("msg=\"netcheck\" udp=%s global_v4=%s mapping_varies=%d preferred=%d",
		    rep.udp ? "true" : "false", g, (int)rep.mapping_varies, pref);
	}
	report_endpoints(a);
}

static void *
nc_main(void *arg)
{
	struct agent *a = arg;
	int64_t next = 0;

	while (!atomic_load(&a->stop)) {
		bool run;

		pthread_mutex_lock(&a->mu);
		if (!a->nc_want && time_mono_ms() < next) {
			struct timespec ts;

			timespec_in(&ts, 500);
			pthread_cond_timedwait(&a->cond, &a->mu, &ts);
		}
		run = (a->nc_want || time_mono_ms() >= next) && a->derp_map_json != NULL;
		if (run)
			a->nc_want = false;
		pthread_mutex_unlock(&a->mu);
		if (!run) {
			if (time_mono_ms() >= next)
				next = time_mono_ms() + 500;
			continue;
		}
		run_netcheck(a);
		/* Without UDP, look again soon: when it comes back, the STUN-mapped
		 * endpoint is what lets peers punch through to us. */
		pthread_mutex_lock(&a->mu);
		run = a->have_report && a->report.udp;
		pthread_mutex_unlock(&a->mu);
		next = time_mono_ms() + (run ? AGENT_NETCHECK_EVERY_MS : AGENT_NETCHECK_NO_UDP_MS);
	}
	return NULL;
}

/* ---- netmap ---- */

static int
parse_prefixes(json_t *arr, struct ip_prefix *out, size_t max, size_t *n)
{
	size_t i;
	json_t *v;

	*n = 0;
	json_array_foreach(arr, i, v) {
		if (*n == max)
			break;
		if (!json_is_string(v) || prefix_parse(json_string_value(v), true, &out[*n]) != 0)
			return ERR_INVALID;
		(*n)++;
	}
	return 0;
}

static int
parse_peer(json_t *o, struct apeer *p)
{
	const char *nk = json_string_value(json_object_get(o, "node_key"));
	const char *dk = json_string_value(json_object_get(o, "disco_key"));
	const char *name = json_string_value(json_object_get(o, "name"));
	const char *user = json_string_value(json_object_get(o, "user"));
	json_t *id = json_object_get(o, "id"), *eps = json_object_get(o, "endpoints"), *v;
	struct ip_prefix addrs[4];
	size_t na = 0, i;

	memset(p, 0, sizeof(*p));
	if (!json_is_integer(id) || nk == NULL || key_parse(nk, "nodekey:", p->node_key) != 0)
		return ERR_INVALID;
	p->id = json_integer_value(id);
	if (dk == NULL || key_parse(dk, "discokey:", p->disco_key) != 0)
		memset(p->disco_key, 0, KEY_LEN);
	str_copy(p->name, name ? name : "", sizeof(p->name));
	str_copy(p->user, user ? user : "", sizeof(p->user));
	if (parse_prefixes(json_object_get(o, "addresses"), addrs, ARRAY_SIZE(addrs), &na) != 0 ||
	    parse_prefixes(json_object_get(o, "allowed_ips"), p->allowed, MAX_ALLOWED,
			   &p->nallowed) != 0)
		return ERR_INVALID;
	for (i = 0; i < na; i++) {
		if (addrs[i].addr.family == AF_INET && !p->addr4.family)
			p->addr4 = addrs[i].addr;
		if (addrs[i].addr.family == AF_INET6 && !p->addr6.family)
			p->addr6 = addrs[i].addr;
	}
	json_array_foreach(eps, i, v) {
		if (p->neps < MAX_EPS && json_is_string(v) &&
		    endpoint_parse(json_string_value(v), &p->eps[p->neps]) == 0)
			p->neps++;
	}
	p->home_derp = (int)json_integer_value(json_object_get(o, "home_derp"));
	p->online = json_is_true(json_object_get(o, "online"));
	p->expired = json_is_true(json_object_get(o, "expired"));
	return 0;
}

static bool
allowed_equal(const struct apeer *x, const struct apeer *y)
{
	if (x->nallowed != y->nallowed)
		return false;
	for (size_t i = 0; i < x->nallowed; i++)
		if (x->allowed[i].bits != y->allowed[i].bits ||
		    !addr_equal(&x->allowed[i].addr, &y->allowed[i].addr))
			return false;
	return true;
}

static void
wg_peer_apply(struct agent *a, const struct apeer *np, bool add)
{
	struct wg_peer_config pc;

	memset(&pc, 0, sizeof(pc));
	memcpy(pc.public_key, np->node_key, KEY_LEN);
	pc.flags = WG_PEER_REPLACE_ALLOWED_IPS;
	if (add) {
		pc.flags |= WG_PEER_HAS_KEEPALIVE;
		pc.persistent_keepalive = AGENT_KEEPALIVE_S;
	} else {
		pc.flags |= WG_PEER_UPDATE_ONLY;
	}
	pc.allowed_ips = np->allowed;
	pc.n_allowed_ips = np->nallowed;
	if (wg_device_peer_set(a->dev, &pc) != 0)
		log_warn("msg=\"cannot configure WireGuard peer\" peer=%s", np->name);
}

/* Adds or updates a peer; sessions of unchanged peers are left alone. */
static void
upsert_peer(struct agent *a, const struct apeer *np)
{
	struct apeer *p;
	uint8_t gone_key[KEY_LEN];
	int64_t now = time_mono_ms();
	bool add = false, update_allowed = false, rekeyed = false, active;

	active = !np->expired;
	pthread_mutex_lock(&a->mu);
	p = find_id_locked(a, np->id, NULL);
	if (p == NULL) {
		if (a->npeers >= AGENT_MAX_PEERS || (p = calloc(1, sizeof(*p))) == NULL ||
		    (p->paths = paths_new()) == NULL) {
			free(p);
			pthread_mutex_unlock(&a->mu);
			log_warn("msg=\"peer table full or out of memory\" peer=%s", np->name);
			return;
		}
		a->peers[a->npeers++] = p;
		add = true;
	} else if (memcmp(p->node_key, np->node_key, KEY_LEN) != 0) {
		memcpy(gone_key, p->node_key, KEY_LEN);
		rekeyed = true;
		add = true;
		p->direct = false;
	} else {
		update_allowed = !allowed_equal(p, np);
		if (p->expired && !np->expired)
			add = true;
	}
	if (memcmp(p->disco_key, np->disco_key, KEY_LEN) != 0) {
		/* A restarted peer: its old path proofs mean nothing now. */
		struct paths *fresh = paths_new();

		if (fresh) {
			paths_free(p->paths);
			p->paths = fresh;
			p->direct = false;
			p->ncmm = 0;
		}
	}
	{
		struct paths *keep = p->paths;
		bool direct = p->direct;
		struct endpoint dep = p->direct_ep;
		struct endpoint cmm[MAX_EPS];
		size_t ncmm = p->ncmm;
		int64_t lc = p->last_cmm_ms, ltx = p->last_derp_tx_ms, ds = p->direct_since_ms;
		int64_t lr = p->last_reprobe_ms;
		uint64_t c1 = p->tx_derp, c2 = p->tx_udp, c3 = p->disco_rx, c4 = p->disco_tx;
		int rtt = p->rtt_ms;

		memcpy(cmm, p->cmm, sizeof(cmm));
		*p = *np;
		p->paths = keep;
		p->direct = direct && !rekeyed;
		p->direct_ep = dep;
		memcpy(p->cmm, cmm, sizeof(cmm));
		p->ncmm = ncmm;
		p->last_cmm_ms = lc;
		p->last_derp_tx_ms = ltx;
		p->direct_since_ms = ds;
		p->last_reprobe_ms = lr;
		p->tx_derp = c1;
		p->tx_udp = c2;
		p->disco_rx = c3;
		p->disco_tx = c4;
		p->rtt_ms = rtt;
	}
	p->seen = true;
	update_candidates_locked(p, now);
	if (add)
		rehash_locked(a);
	pthread_mutex_unlock(&a->mu);
	if (rekeyed)
		(void)wg_device_peer_remove(a->dev, gone_key);
	if (!active) {
		(void)wg_device_peer_remove(a->dev, np->node_key);
		return;
	}
	if (add)
		log_info("msg=\"peer added\" peer=%s id=%" PRId64, np->name, np->id);
	if (add || update_allowed)
		wg_peer_apply(a, np, add);
}

static void
remove_peer(struct agent *a, int64_t id)
{
	struct apeer *p;
	size_t idx;

	pthread_mutex_lock(&a->mu);
	if ((p = find_id_locked(a, id, &idx)) == NULL) {
		pthread_mutex_unlock(&a->mu);
		return;
	}
	a->peers[idx] = a->peers[--a->npeers];
	rehash_locked(a);
	pthread_mutex_unlock(&a->mu);
	log_info("msg=\"peer removed\" peer=%s id=%" PRId64, p->name, p->id);
	(void)wg_device_peer_remove(a->dev, p->node_key);
	paths_free(p->paths);
	free(p);
}

static void
apply_self(struct agent *a, json_t *self)
{
	struct ip_prefix addrs[4];
	struct ip_addr v4 = { 0 }, v6 = { 0 }, old4, old6;
	const char *name = json_string_value(json_object_get(self, "name"));
	const char *user = json_string_value(json_object_get(self, "user"));
	bool first;
	size_t n = 0;

	if (!json_is_object(self) ||
	    parse_prefixes(json_object_get(self, "addresses"), addrs, 4, &n) != 0)
		return;
	for (size_t i = 0; i < n; i++) {
		if (addrs[i].addr.family == AF_INET && !v4.family)
			v4 = addrs[i].addr;
		if (addrs[i].addr.family == AF_INET6 && !v6.family)
			v6 = addrs[i].addr;
	}
	pthread_mutex_lock(&a->mu);
	old4 = a->self4;
	old6 = a->self6;
	a->self4 = v4;
	a->self6 = v6;
	a->self_id = json_integer_value(json_object_get(self, "id"));
	str_copy(a->self_name, name ? name : "", sizeof(a->self_name));
	str_copy(a->self_user, user ? user : "", sizeof(a->self_user));
	a->have_self = true;
	first = !a->routes_done;
	a->routes_done = true;
	pthread_mutex_unlock(&a->mu);
	if (a->tun_fd < 0)
		return;
	if (old4.family && !addr_equal(&old4, &v4))
		(void)!netcfg_addr_del(a->ifname, &old4);
	if (old6.family && !addr_equal(&old6, &v6))
		(void)!netcfg_addr_del(a->ifname, &old6);
	if (v4.family && (first || !addr_equal(&old4, &v4)) && netcfg_addr_add(a->ifname, &v4) != 0)
		log_error("msg=\"cannot add the IPv4 address\" dev=%s", a->ifname);
	if (v6.family && (first || !addr_equal(&old6, &v6)) && netcfg_addr_add(a->ifname, &v6) != 0)
		log_error("msg=\"cannot add the IPv6 address\" dev=%s", a->ifname);
	if (first && netcfg_routes_add(a->ifname) != 0)
		log_error("msg=\"cannot add tailnet routes\" dev=%s", a->ifname);
}

static void
apply_derp_map(struct agent *a, json_t *dm)
{
	struct derp_map *map = NULL, *old;
	struct dconn gone[MAX_DERPS];
	size_t ngone = 0;
	char *text, why[256];

	if (!json_is_object(dm) || (text = json_dumps(dm, JSON_COMPACT | JSON_SORT_KEYS)) == NULL)
		return;
	pthread_mutex_lock(&a->mu);
	if (a->derp_map_json && strcmp(a->derp_map_json, text) == 0) {
		pthread_mutex_unlock(&a->mu);
		free(text);
		return;
	}
	pthread_mutex_unlock(&a->mu);
	if (derp_map_parse(text, strlen(text), &map, why, sizeof(why)) != 0) {
		log_warn("msg=\"bad DERP map in netmap\" why=\"%s\"", why);
		free(text);
		return;
	}
	pthread_mutex_lock(&a->mu);
	old = a->dmap;
	a->dmap = map;
	free(a->derp_map_json);
	a->derp_map_json = text;
	/* Relays may have moved: reconnect everything from the new map. */
	ngone = derps_take_locked(a, gone, false);
	if (a->home_region == 0 || derp_map_region(map, a->home_region) == NULL) {
		a->home_region = 0;
		set_home_locked(a, first_region_locked(a));
	} else {
		int h = a->home_region;

		a->home_region = 0;
		set_home_locked(a, h);
	}
	a->nc_want = true;
	pthread_cond_broadcast(&a->cond);
	pthread_mutex_unlock(&a->mu);
	derps_free(gone, ngone);
	derp_map_free(old);
}

static void
apply_filter(struct agent *a, json_t *fj)
{
	struct wm_filter *f = NULL, *old;
	char *text, err[256];

	if (fj == NULL || (text = json_dumps(fj, JSON_COMPACT)) == NULL)
		return;
	pthread_rwlock_rdlock(&a->flock);
	if (a->filter_json && strcmp(a->filter_json, text) == 0) {
		pthread_rwlock_unlock(&a->flock);
		free(text);
		return;
	}
	pthread_rwlock_unlock(&a->flock);
	if (filter_parse(text, strlen(text), &f, err, sizeof(err)) != 0) {
		/* Fail closed: a filter we cannot read admits only replies. */
		log_error("msg=\"bad packet filter in netmap; dropping new inbound flows\" why=\"%s\"",
		    err);
		if (filter_parse("[]", 2, &f, err, sizeof(err)) != 0)
			f = NULL;
	}
	pthread_rwlock_wrlock(&a->flock);
	old = a->filter;
	a->filter = f;
	free(a->filter_json);
	a->filter_json = text;
	pthread_rwlock_unlock(&a->flock);
	filter_free(old);
	log_info("msg=\"packet filter updated\"");
}

static void
apply_full(struct agent *a, json_t *msg)
{
	json_t *peers = json_object_get(msg, "peers"), *v;
	int64_t *stale = NULL;
	size_t i, nstale = 0;

	apply_self(a, json_object_get(msg, "self"));
	apply_derp_map(a, json_object_get(msg, "derp_map"));
	apply_filter(a, json_object_get(msg, "filter"));
	pthread_mutex_lock(&a->mu);
	for (i = 0; i < a->npeers; i++)
		a->peers[i]->seen = false;
	pthread_mutex_unlock(&a->mu);
	json_array_foreach(peers, i, v) {
		struct apeer np;

		if (parse_peer(v, &np) == 0)
			upsert_peer(a, &np);
		else
			log_warn("msg=\"malformed peer in netmap\" index=%zu", i);
	}
	pthread_mutex_lock(&a->mu);
	if ((stale = malloc((a->npeers + 1) * sizeof(*stale))) != NULL)
		for (i = 0; i < a->npeers; i++)
			if (!a->peers[i]->seen)
				stale[nstale++] = a->peers[i]->id;
	pthread_mutex_unlock(&a->mu);
	for (i = 0; i < nstale; i++)
		remove_peer(a, stale[i]);
	free(stale);
	pthread_mutex_lock(&a->mu);
	a->have_netmap = true;
	a->netmaps++;
	pthread_cond_broadcast(&a->cond);
	pthread_mutex_unlock(&a->mu);
}

static void
on_message(void *ctx, json_t *msg)
{
	struct agent *a = ctx;
	const char *type = json_string_value(json_object_get(msg, "type"));
	json_t *v;

	if (type == NULL)
		return;
	if (strcmp(type, "full") == 0) {
		apply_full(a, msg);
		return;
	}
	if (strcmp(type, "delta") != 0)
		return;
	pthread_mutex_lock(&a->mu);
	a->deltas++;
	pthread_mutex_unlock(&a->mu);
	if ((v = json_object_get(msg, "peer_added")) || (v = json_object_get(msg, "peer_changed"))) {
		struct apeer np;

		if (parse_peer(v, &np) == 0)
			upsert_peer(a, &np);
	} else if ((v = json_object_get(msg, "peer_removed"))) {
		remove_peer(a, json_integer_value(v));
	} else if ((v = json_object_get(msg, "online"))) {
		struct apeer *p;

		pthread_mutex_lock(&a->mu);
		if ((p = find_id_locked(a, json_integer_value(json_object_get(v, "id")), NULL)))
			p->online = json_is_true(json_object_get(v, "online"));
		pthread_mutex_unlock(&a->mu);
	} else if ((v = json_object_get(msg, "self"))) {
		apply_self(a, v);
	} else if ((v = json_object_get(msg, "filter"))) {
		apply_filter(a, v);
	} else if ((v = json_object_get(msg, "derp_map"))) {
		apply_derp_map(a, v);
	}
}

static void
on_state(void *ctx, bool up, const char *why)
{
	struct agent *a = ctx;

	pthread_mutex_lock(&a->mu);
	a->control_connected = up;
	str_copy(a->control_err, up ? "" : why, sizeof(a->control_err));
	pthread_cond_broadcast(&a->cond);
	pthread_mutex_unlock(&a->mu);
	if (up) {
		log_info("msg=\"control connected\"");
		/* The server forgets endpoints across restarts: say them again. */
		pthread_mutex_lock(&a->mu);
		free(a->reported);
		a->reported = NULL;
		pthread_mutex_unlock(&a->mu);
		report_endpoints(a);
	}
}

/* ---- up / down ---- */

static void
stop_control(struct agent *a)
{
	struct control *c;

	c = a->ctl;
	pthread_mutex_lock(&a->mu);
	a->control_connected = false;
	a->ctl = NULL;		/* written under both locks: readers hold either */
	pthread_mutex_unlock(&a->mu);
	pthread_mutex_unlock(&a->ctl_mu);	/* control_free joins threads that take ctl_mu */
	control_free(c);
	pthread_mutex_lock(&a->ctl_mu);
}

static struct control *
make_control(struct agent *a, const char *url)
{
	struct control_keys k;
	struct control_callbacks cb = { .message = on_message, .state = on_state, .ctx = a };
	struct control *c;

	memcpy(k.machine_sk, a->cfg.machine_sk, ED25519_SK_LEN);
	memcpy(k.machine_pk, a->cfg.machine_pk, KEY_LEN);
	memcpy(k.node_pub, a->cfg.node_pub, KEY_LEN);
	memcpy(k.disco_pub, a->disco_pub, KEY_LEN);
	c = control_new(url, &k, &cb);
	wipe(&k, sizeof(k));
	return c;
}

static void
clear_netmap(struct agent *a)
{
	struct dconn gone[MAX_DERPS];
	size_t ngone;
	struct apeer **old;
	size_t n;

	pthread_mutex_lock(&a->mu);
	old = malloc((a->npeers + 1) * sizeof(*old));
	n = 0;
	if (old) {
		memcpy(old, a->peers, a->npeers * sizeof(*old));
		n = a->npeers;
		a->npeers = 0;
		rehash_locked(a);
	}
	ngone = derps_take_locked(a, gone, false);
	a->home_region = 0;
	free(a->derp_map_json);
	a->derp_map_json = NULL;
	derp_map_free(a->dmap);
	a->dmap = NULL;
	a->have_netmap = false;
	a->have_self = false;
	a->routes_done = false;
	a->self4.family = a->self6.family = 0;
	free(a->reported);
	a->reported = NULL;
	pthread_mutex_unlock(&a->mu);
	wg_device_peers_clear(a->dev);
	for (size_t i = 0; i < n; i++) {
		paths_free(old[i]->paths);
		free(old[i]);
	}
	free(old);
	derps_free(gone, ngone);
	if (a->tun_fd >= 0)
		netcfg_flush(a->ifname);
}

static bool
is_http(const char *url)
{
	return strncmp(url, "http://", 7) == 0;
}

/* The text `up` and `status` show about reachability (mu held). */
static void
health_locked(struct agent *a, struct buf *b)
{
	bool relay = false;

	for (size_t i = 0; i < a->nderps; i++)
		relay |= derp_client_connected(a->derps[i].c);
	if (a->ctl && !a->control_connected) {
		if (a->control_err[0])
			(void)!buf_printf(b, "# Health: %s (existing tunnels keep working; retrying)\n",
			    a->control_err);
		else
			(void)!buf_printf(b, "# Health: connecting to the control server %s\n",
			    a->login_server);
	}
	if (a->have_netmap && a->dmap && !relay)
		(void)!buf_printf(b, "# Health: cannot reach any DERP relay "
		    "(peers without a direct path are unreachable)\n");
	if (a->have_netmap && a->dmap && a->dmap->nregions == 0)
		(void)!buf_printf(b, "# Health: the DERP map has no regions\n");
}

static json_t *
cmd_up(struct agent *a, json_t *req)
{
	const char *url = json_string_value(json_object_get(req, "login_server"));
	const char *authkey = json_string_value(json_object_get(req, "authkey"));
	const char *host = json_string_value(json_object_get(req, "hostname"));
	char why[1024], hn[NAME_MAX_LEN];
	struct control *c;
	json_t *node = NULL, *resp;
	struct buf b;
	struct timespec ts;
	int r;

	pthread_mutex_lock(&a->ctl_mu);
	if (url == NULL || *url == 0)
		url = a->login_server[0] ? a->login_server : NULL;
	if (url == NULL) {
		pthread_mutex_unlock(&a->ctl_mu);
		return reply_err("--login-server is required the first time");
	}
	if (!is_http(url) && strncmp(url, "https://", 8) != 0) {
		pthread_mutex_unlock(&a->ctl_mu);
		return reply_err("--login-server must be an https:// or http:// URL");
	}
	if (host == NULL || *host == 0) {
		if (a->hostname[0])
			host = a->hostname;
		else {
			if (gethostname(hn, sizeof(hn)) != 0)
				str_copy(hn, "node", sizeof(hn));
			hn[sizeof(hn) - 1] = 0;
			host = hn;
		}
	}
	if (a->ctl)
		stop_control(a);
	if ((c = make_control(a, url)) == NULL) {
		pthread_mutex_unlock(&a->ctl_mu);
		return reply_err("out of memory");
	}
	r = control_register(c, authkey, host, &node, why, sizeof(why));
	if (r != 0) {
		control_free(c);
		pthread_mutex_lock(&a->mu);
		str_copy(a->control_err, why, sizeof(a->control_err));
		pthread_mutex_unlock(&a->mu);
		pthread_mutex_unlock(&a->ctl_mu);
		log_warn("msg=\"login failed\" why=\"%s\"", why);
		return reply_err("%s", why);
	}
	str_copy(a->login_server, url, sizeof(a->login_server));
	str_copy(a->hostname, host, sizeof(a->hostname));
	a->want_up = true;
	prefs_save(a);
	pthread_mutex_lock(&a->mu);
	a->ctl = c;
	pthread_mutex_unlock(&a->mu);
	if (control_start(c, 0) != 0) {
		pthread_mutex_unlock(&a->ctl_mu);
		json_decref(node);
		return reply_err("cannot start the control client");
	}
	pthread_mutex_unlock(&a->ctl_mu);
	/* Wait for the first netmap and the home relay. */
	timespec_in(&ts, 10000);
	pthread_mutex_lock(&a->mu);
	while (!a->have_netmap)
		if (pthread_cond_timedwait(&a->cond, &a->mu, &ts) != 0)
			break;
	pthread_mutex_unlock(&a->mu);
	for (int i = 0; i < 60; i++) {	/* up to 3 s for a relay */
		bool ok = false;

		pthread_mutex_lock(&a->mu);
		for (size_t k = 0; k < a->nderps; k++)
			ok |= derp_client_connected(a->derps[k].c);
		ok |= a->dmap == NULL || a->dmap->nregions == 0;
		pthread_mutex_unlock(&a->mu);
		if (ok)
			break;
		usleep(50000);
	}
	buf_init(&b, 1 << 16);
	pthread_mutex_lock(&a->mu);
	if (is_http(url))
		(void)!buf_printf(&b, "# Warning: %s is plain http: the login is not encrypted "
		    "(use https unless this is loopback or behind a TLS proxy)\n", url);
	{
		char v4[ADDR_STR_MAX] = "-";

		if (a->self4.family)
			addr_fmt(v4, &a->self4);
		if (a->have_netmap)
			(void)!buf_printf(&b, "Logged in to %s as %s (%s), %zu peers\n", url,
			    a->self_name, v4, a->npeers);
		else
			(void)!buf_printf(&b, "Registered with %s, but no netmap yet: %s\n", url,
			    a->control_err[0] ? a->control_err : "waiting for the map stream");
	}
	health_locked(a, &b);
	resp = reply_ok(buf_cstr(&b), json_pack("{s:o, s:b, s:s}", "node", node,
	    "netmap", a->have_netmap, "login_server", url));
	pthread_mutex_unlock(&a->mu);
	buf_cleanup(&b);
	return resp;
}

static json_t *
cmd_down(struct agent *a)
{
	pthread_mutex_lock(&a->ctl_mu);
	if (a->ctl)
		stop_control(a);
	a->want_up = false;
	prefs_save(a);
	pthread_mutex_unlock(&a->ctl_mu);
	clear_netmap(a);
	return reply_ok("Stopped: disconnected from the control server and the relays.\n", NULL);
}

/* On start: reconnect a node that was up (the server needs the new disco
 * key, so register again, retrying while it is unreachable). */
static void *
resume_main(void *arg)
{
	struct agent *a = arg;
	int64_t backoff = CONTROL_BACKOFF_MIN_MS;

	while (!atomic_load(&a->stop)) {
		char why[1024];
		json_t *node = NULL;
		struct control *c;
		int r;

		pthread_mutex_lock(&a->ctl_mu);
		if (!a->want_up || a->ctl) {	/* an explicit up/down won */
			pthread_mutex_unlock(&a->ctl_mu);
			return NULL;
		}
		if ((c = make_control(a, a->login_server)) == NULL) {
			pthread_mutex_unlock(&a->ctl_mu);
			return NULL;
		}
		r = control_register(c, NULL, a->hostname, &node, why, sizeof(why));
		json_decref(node);
		if (r == 0 && control_start(c, 0) == 0) {
			pthread_mutex_lock(&a->mu);
			a->ctl = c;
			pthread_mutex_unlock(&a->mu);
			pthread_mutex_unlock(&a->ctl_mu);
			log_info("msg=\"reconnected to control server\" url=%s", a->login_server);
			return NULL;
		}
		control_free(c);
		pthread_mutex_lock(&a->mu);
		str_copy(a->control_err, why, sizeof(a->control_err));
		pthread_mutex_unlock(&a->mu);
		pthread_mutex_unlock(&a->ctl_mu);
		log_warn("msg=\"cannot log in again; retrying\" why=\"%s\"", why);
		for (int64_t t = 0; t < backoff && !atomic_load(&a->stop); t += 100)
			usleep(100000);
		backoff = backoff * 2 > CONTROL_BACKOFF_MAX_MS ? CONTROL_BACKOFF_MAX_MS : backoff * 2;
	}
	return NULL;
}

/* ---- status, ip, debug, ping, netcheck ---- */

struct wgsnap {
	uint8_t key[KEY_LEN];
	int64_t hs;
	uint64_t rx, tx;
};

static json_t *
cmd_status(struct agent *a)
{
	struct wg_device_info *info = NULL;
	json_t *peers = json_array(), *data, *self;
	char v4[ADDR_STR_MAX], v6[ADDR_STR_MAX], rc[16];
	int64_t now_s = time_now_s();
	struct buf b;
	const char *state;
	bool relay_up = false;

	if (wg_device_get_info(a->dev, &info) != 0)
		info = NULL;
	buf_init(&b, 1 << 22);
	pthread_mutex_lock(&a->mu);
	state = a->have_netmap ? "Running" : a->want_up ? "Starting" : "NeedsLogin";
	for (size_t i = 0; i < a->nderps; i++)
		if (a->derps[i].region == a->home_region)
			relay_up = derp_client_connected(a->derps[i].c);
	if (!a->want_up && !a->have_netmap) {
		if (a->control_err[0])
			(void)!buf_printf(&b, "# Health: login failed: %s\n", a->control_err);
		(void)!buf_printf(&b, "Logged out. Run: wiremesh up --login-server URL --authkey KEY\n");
	} else if (a->want_up && !a->ctl && a->control_err[0]) {
		(void)!buf_printf(&b, "# Health: cannot log in to %s: %s (retrying)\n",
		    a->login_server, a->control_err);
	}
	health_locked(a, &b);
	v4[0] = v6[0] = 0;
	if (a->self4.family)
		addr_fmt(v4, &a->self4);
	if (a->self6.family)
		addr_fmt(v6, &a->self6);
	self = json_pack("{s:I, s:s, s:s, s:s, s:s, s:i, s:s}", "id", (json_int_t)a->self_id,
	    "name", a->self_name, "user", a->self_user, "ipv4", v4, "ipv6", v6,
	    "home_derp", a->home_region, "home_derp_code",
	    a->home_region ? region_code_locked(a, a->home_region, rc) : "");
	if (a->have_self)
		(void)!buf_printf(&b, "%-16s %-20s %-16s %s\n", v4[0] ? v4 : "-", a->self_name,
		    a->self_user, "-");
	for (size_t i = 0; i < a->npeers; i++) {
		struct apeer *p = a->peers[i];
		char path[ADDR_STR_MAX + 32], kind[16], ep[ADDR_STR_MAX] = "", p4[ADDR_STR_MAX] = "",
		     p6[ADDR_STR_MAX] = "";
		int64_t hs = 0;
		uint64_t rx = 0, tx = 0;

		for (size_t k = 0; info && k < info->n_peers; k++)
			if (memcmp(info->peers[k].public_key, p->node_key, KEY_LEN) == 0) {
				hs = info->peers[k].last_handshake_sec;
				rx = info->peers[k].rx_bytes;
				tx = info->peers[k].tx_bytes;
			}
		if (p->addr4.family)
			addr_fmt(p4, &p->addr4);
		if (p->addr6.family)
			addr_fmt(p6, &p->addr6);
		if (!p->online || p->expired) {
			str_copy(kind, "offline", sizeof(kind));
			str_copy(path, "offline", sizeof(path));
		} else if (p->direct) {
			endpoint_fmt(ep, &p->direct_ep);
			str_copy(kind, "direct", sizeof(kind));
			snprintf(path, sizeof(path), "direct %s", ep);
		} else if (hs != 0 && now_s - hs < 180) {
			str_copy(kind, "relay", sizeof(kind));
			snprintf(path, sizeof(path), "relay \"%s\"",
			    region_code_locked(a, p->home_derp > 0 ? p->home_derp : a->home_region, rc));
		} else {
			str_copy(kind, "idle", sizeof(kind));
			str_copy(path, "idle", sizeof(path));
		}
		(void)!buf_printf(&b, "%-16s %-20s %-16s %s\n", p4[0] ? p4 : "-", p->name, p->user, path);
		json_array_append_new(peers, json_pack("{s:I, s:s, s:s, s:s, s:s, s:s, s:s, s:s, "
		    "s:b, s:i, s:I, s:I, s:I, s:i}",
		    "id", (json_int_t)p->id, "name", p->name, "user", p->user, "ipv4", p4,
		    "ipv6", p6, "path", path, "path_kind", kind, "endpoint", ep,
		    "online", p->online && !p->expired, "home_derp", p->home_derp,
		    "last_handshake", (json_int_t)hs, "rx_bytes", (json_int_t)rx,
		    "tx_bytes", (json_int_t)tx, "rtt_ms", p->direct ? p->rtt_ms : -1));
	}
	data = json_pack("{s:s, s:o, s:o, s:{s:s, s:b, s:s}, s:{s:i, s:b}}",
	    "backend_state", state, "self", self, "peers", peers,
	    "control", "url", a->login_server, "connected", a->control_connected,
	    "error", a->control_err, "derp", "home", a->home_region, "connected", relay_up);
	pthread_mutex_unlock(&a->mu);
	wg_device_info_free(info);
	{
		json_t *r = reply_ok(buf_cstr(&b), data);

		buf_cleanup(&b);
		return r;
	}
}

static json_t *
cmd_ip(struct agent *a, json_t *req)
{
	const char *fam = json_string_value(json_object_get(req, "family"));
	char v4[ADDR_STR_MAX] = "", v6[ADDR_STR_MAX] = "", text[2 * ADDR_STR_MAX + 4] = "";

	pthread_mutex_lock(&a->mu);
	if (a->self4.family)
		addr_fmt(v4, &a->self4);
	if (a->self6.family)
		addr_fmt(v6, &a->self6);
	pthread_mutex_unlock(&a->mu);
	if (!v4[0] && !v6[0])
		return reply_err("no addresses yet: run wiremesh up");
	if (fam == NULL || strcmp(fam, "4") == 0)
		if (v4[0])
			snprintf(text + strlen(text), sizeof(text) - strlen(text), "%s\n", v4);
	if (fam == NULL || strcmp(fam, "6") == 0)
		if (v6[0])
			snprintf(text + strlen(text), sizeof(text) - strlen(text), "%s\n", v6);
	return reply_ok(text, json_pack("{s:s, s:s}", "ipv4", v4, "ipv6", v6));
}

static struct apeer *
find_peer_arg_locked(struct agent *a, const char *s)
{
	struct ip_addr ip;
	bool isip = addr_parse(s, &ip) == 0;

	for (size_t i = 0; i < a->npeers; i++) {
		struct apeer *p = a->peers[i];

		if (strcmp(p->name, s) == 0)
			return p;
		if (isip && (addr_equal(&ip, &p->addr4) || addr_equal(&ip, &p->addr6)))
			return p;
	}
	return NULL;
}

static json_t *
cmd_ping(struct agent *a, json_t *req)
{
	const char *who = json_string_value(json_object_get(req, "peer"));
	uint8_t pkt[DISCO_MAX_PACKET], key[KEY_LEN];
	struct disco_msg m = { .type = DISCO_PING };
	struct waiter *w = NULL;
	struct endpoint to;
	struct apeer *p;
	struct timespec ts;
	char name[NAME_MAX_LEN], ip[ADDR_STR_MAX] = "", via[ADDR_STR_MAX + 16], text[256], rc[16];
	size_t len;
	bool udp, done, via_udp = false;
	int region, rtt = 0;

	if (who == NULL)
		return reply_err("ping needs a peer name or address");
	random_bytes(m.txid, DISCO_TXID_LEN);
	memcpy(m.node_key, a->cfg.node_pub, KEY_LEN);
	pthread_mutex_lock(&a->mu);
	if ((p = find_peer_arg_locked(a, who)) == NULL) {
		pthread_mutex_unlock(&a->mu);
		return reply_err("no peer named %s", who);
	}
	if (key_is_zero(p->disco_key)) {
		pthread_mutex_unlock(&a->mu);
		return reply_err("%s has no disco key (not connected yet)", who);
	}
	for (int i = 0; i < MAX_WAITERS; i++)
		if (!a->waiters[i].active) {
			w = &a->waiters[i];
			break;
		}
	if (w == NULL || seal_to(a, p->disco_key, &m, pkt, &len) != 0) {
		pthread_mutex_unlock(&a->mu);
		return reply_err("too many pings in flight");
	}
	memset(w, 0, sizeof(*w));
	w->active = true;
	memcpy(w->txid, m.txid, DISCO_TXID_LEN);
	w->sent_ms = time_mono_ms();
	str_copy(name, p->name, sizeof(name));
	if (p->addr4.family)
		addr_fmt(ip, &p->addr4);
	else if (p->addr6.family)
		addr_fmt(ip, &p->addr6);
	memcpy(key, p->node_key, KEY_LEN);
	udp = p->direct;
	to = p->direct_ep;
	region = p->home_derp > 0 ? p->home_derp : a->home_region;
	if (!udp && derp_send_locked(a, region, key, pkt, len) != 0) {
		w->active = false;
		pthread_mutex_unlock(&a->mu);
		return reply_err("cannot send to %s: no direct path and no DERP relay", name);
	}
	pthread_mutex_unlock(&a->mu);
	if (udp && wg_device_send_raw(a->dev, &to, pkt, len) != 0)
		log_debug("msg=\"ping send failed\"");
	timespec_in(&ts, AGENT_PING_TIMEOUT_MS);
	pthread_mutex_lock(&a->mu);
	while (!w->done)
		if (pthread_cond_timedwait(&a->cond, &a->mu, &ts) != 0)
			break;
	done = w->done;
	if (done) {
		rtt = w->rtt_ms;
		via_udp = w->via_udp;
		if (w->via_udp)
			endpoint_fmt(via, &w->from);
		else
			snprintf(via, sizeof(via), "DERP(%s)", region_code_locked(a, region, rc));
	}
	w->active = false;
	pthread_mutex_unlock(&a->mu);
	if (!done)
		return json_pack("{s:b, s:s, s:{s:s, s:s, s:b}}", "ok", 0, "error",
		    "timeout waiting for pong", "data", "peer", name, "ip", ip, "timeout", 1);
	snprintf(text, sizeof(text), "pong from %s (%s) via %s in %dms\n", name, ip, via, rtt);
	return reply_ok(text, json_pack("{s:s, s:s, s:s, s:b, s:i}", "peer", name, "ip", ip,
	    "via", via, "direct", via_udp, "latency_ms", rtt));
}

static json_t *
cmd_netcheck(struct agent *a)
{
	struct netcheck_report rep;
	struct derp_map *map = NULL;
	struct timespec ts;
	struct buf b, bj;
	char why[256], *mj = NULL;
	uint64_t gen;
	json_t *resp, *data;

	pthread_mutex_lock(&a->mu);
	if (a->derp_map_json == NULL) {
		pthread_mutex_unlock(&a->mu);
		return reply_err("no DERP map yet: run wiremesh up first");
	}
	gen = a->nc_gen;
	a->nc_want = true;
	pthread_cond_broadcast(&a->cond);
	timespec_in(&ts, 10000);
	while (a->nc_gen == gen)
		if (pthread_cond_timedwait(&a->cond, &a->mu, &ts) != 0)
			break;
	if (!a->have_report || a->derp_map_json == NULL) {
		pthread_mutex_unlock(&a->mu);
		return reply_err("netcheck did not finish");
	}
	rep = a->report;
	mj = strdup(a->derp_map_json);
	pthread_mutex_unlock(&a->mu);
	if (mj == NULL || derp_map_parse(mj, strlen(mj), &map, why, sizeof(why)) != 0) {
		free(mj);
		return reply_err("bad DERP map");
	}
	free(mj);
	buf_init(&b, 1 << 16);
	buf_init(&bj, 1 << 16);
	if (netcheck_format(&rep, map, &b) != 0 || netcheck_format_json(&rep, map, &bj) != 0 ||
	    buf_cstr(&b) == NULL || buf_cstr(&bj) == NULL)
		resp = reply_err("cannot format the report");
	else if ((data = json_loads(buf_cstr(&bj), 0, NULL)) == NULL)
		resp = reply_err("cannot format the report");
	else
		resp = reply_ok(buf_cstr(&b), data);
	buf_cleanup(&b);
	buf_cleanup(&bj);
	derp_map_free(map);
	return resp;
}

#define STAT_FIELD(o, st, f) json_object_set_new(o, #f, json_integer((json_int_t)(st).f))

static json_t *
cmd_debug(struct agent *a)
{
	struct wg_device_stats ws;
	struct filter_stats fs;
	json_t *wg = json_object(), *flt = json_object(), *peers = json_array(), *derps = json_array();
	json_t *data, *agent;
	int64_t now = time_mono_ms();
	char *text;

	wg_device_get_stats(a->dev, &ws);
	conntrack_stats(a->ct, &fs);
	STAT_FIELD(wg, ws, rx_packets); STAT_FIELD(wg, ws, rx_bytes);
	STAT_FIELD(wg, ws, tx_packets); STAT_FIELD(wg, ws, tx_bytes);
	STAT_FIELD(wg, ws, handshakes_initiated); STAT_FIELD(wg, ws, handshakes_completed);
	STAT_FIELD(wg, ws, cookie_replies_sent);
	STAT_FIELD(wg, ws, drop_short); STAT_FIELD(wg, ws, drop_bad_type);
	STAT_FIELD(wg, ws, drop_bad_length); STAT_FIELD(wg, ws, drop_bad_mac1);
	STAT_FIELD(wg, ws, drop_handshake_invalid); STAT_FIELD(wg, ws, drop_unknown_peer);
	STAT_FIELD(wg, ws, drop_replayed_initiation); STAT_FIELD(wg, ws, drop_flood);
	STAT_FIELD(wg, ws, drop_unknown_index); STAT_FIELD(wg, ws, drop_key_expired);
	STAT_FIELD(wg, ws, drop_decrypt); STAT_FIELD(wg, ws, drop_replay);
	STAT_FIELD(wg, ws, drop_bad_ip); STAT_FIELD(wg, ws, drop_not_allowed);
	STAT_FIELD(wg, ws, drop_no_route); STAT_FIELD(wg, ws, drop_staged_overflow);
	STAT_FIELD(wg, ws, drop_cookie_invalid); STAT_FIELD(wg, ws, drop_send_error);
	STAT_FIELD(wg, ws, drop_ratelimit); STAT_FIELD(wg, ws, other_packets);
	STAT_FIELD(flt, fs, accepted); STAT_FIELD(flt, fs, accepted_established);
	STAT_FIELD(flt, fs, dropped_policy); STAT_FIELD(flt, fs, dropped_malformed);
	json_object_set_new(flt, "flows", json_integer((json_int_t)conntrack_count(a->ct)));
	pthread_mutex_lock(&a->mu);
	for (size_t i = 0; i < a->npeers; i++) {
		struct apeer *p = a->peers[i];
		struct paths_info pi[PATHS_MAX_CANDIDATES];
		size_t n = paths_snapshot(p->paths, now, pi, PATHS_MAX_CANDIDATES);
		json_t *cands = json_array(), *eps = json_array(), *cmm = json_array();
		char e[ADDR_STR_MAX];

		for (size_t k = 0; k < n && k < PATHS_MAX_CANDIDATES; k++) {
			endpoint_fmt(e, &pi[k].ep);
			json_array_append_new(cands, json_pack("{s:s, s:b, s:i, s:I}", "endpoint", e,
			    "confirmed", pi[k].confirmed, "rtt_ms", pi[k].rtt_ms,
			    "last_pong_ago_ms", (json_int_t)(pi[k].last_pong_ms ?
				now - pi[k].last_pong_ms : -1)));
		}
		for (size_t k = 0; k < p->neps; k++) {
			endpoint_fmt(e, &p->eps[k]);
			json_array_append_new(eps, json_string(e));
		}
		for (size_t k = 0; k < p->ncmm; k++) {
			endpoint_fmt(e, &p->cmm[k]);
			json_array_append_new(cmm, json_string(e));
		}
		e[0] = 0;
		if (p->direct)
			endpoint_fmt(e, &p->direct_ep);
		json_array_append_new(peers, json_pack("{s:I, s:s, s:o, s:o, s:o, s:i, s:b, s:b, "
		    "s:s, s:I, s:I, s:I, s:I}",
		    "id", (json_int_t)p->id, "name", p->name, "endpoints", eps,
		    "call_me_maybe", cmm, "candidates", cands, "home_derp", p->home_derp,
		    "online", p->online, "direct", p->direct, "direct_endpoint", e,
		    "tx_via_derp", (json_int_t)p->tx_derp, "tx_via_udp", (json_int_t)p->tx_udp,
		    "disco_rx", (json_int_t)p->disco_rx, "disco_tx", (json_int_t)p->disco_tx));
	}
	for (size_t i = 0; i < a->nderps; i++) {
		struct derp_client_stats ds;

		derp_client_stats(a->derps[i].c, &ds);
		json_array_append_new(derps, json_pack("{s:i, s:b, s:b, s:I, s:I, s:I, s:I, s:I}",
		    "region", a->derps[i].region, "home", a->derps[i].region == a->home_region,
		    "connected", derp_client_connected(a->derps[i].c),
		    "packets_sent", (json_int_t)ds.packets_sent,
		    "packets_recv", (json_int_t)ds.packets_recv,
		    "dropped_queue_full", (json_int_t)ds.dropped_queue_full,
		    "connects", (json_int_t)ds.connects, "disconnects", (json_int_t)ds.disconnects));
	}
	agent = json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}",
	    "netmaps", (json_int_t)a->netmaps, "deltas", (json_int_t)a->deltas,
	    "inbox_dropped", (json_int_t)atomic_load(&a->c_inbox_drop),
	    "disco_bad", (json_int_t)atomic_load(&a->c_disco_bad),
	    "disco_unknown_sender", (json_int_t)atomic_load(&a->c_disco_unknown),
	    "derp_in", (json_int_t)atomic_load(&a->c_derp_in),
	    "derp_out", (json_int_t)atomic_load(&a->c_derp_out),
	    "derp_dropped", (json_int_t)atomic_load(&a->c_derp_drop),
	    "filter_dropped", (json_int_t)atomic_load(&a->c_filter_drop),
	    "tun_write_errors", (json_int_t)atomic_load(&a->c_tun_write_err));
	data = json_pack("{s:{s:I, s:s, s:b, s:I, s:i}, s:o, s:o, s:o, s:o, s:o}",
	    "netmap", "self_id", (json_int_t)a->self_id, "self_name", a->self_name,
	    "have_netmap", a->have_netmap, "version",
	    (json_int_t)(a->ctl ? control_version(a->ctl) : 0), "home_derp", a->home_region,
	    "peers", peers, "derp", derps, "wireguard", wg, "filter", flt, "agent", agent);
	pthread_mutex_unlock(&a->mu);
	text = json_dumps(data, JSON_INDENT(2) | JSON_SORT_KEYS);
	{
		json_t *r = reply_ok(text ? text : "", data);

		free(text);
		return r;
	}
}

json_t *
agent_handle(void *arg, json_t *req)
{
	struct agent *a = arg;
	const char *cmd = json_string_value(json_object_get(req, "cmd"));

	if (cmd == NULL)
		return reply_err("request has no \"cmd\"");
	if (strcmp(cmd, "up") == 0)
		return cmd_up(a, req);
	if (strcmp(cmd, "down") == 0)
		return cmd_down(a);
	if (strcmp(cmd, "status") == 0)
		return cmd_status(a);
	if (strcmp(cmd, "ip") == 0)
		return cmd_ip(a, req);
	if (strcmp(cmd, "ping") == 0)
		return cmd_ping(a, req);
	if (strcmp(cmd, "netcheck") == 0)
		return cmd_netcheck(a);
	if (strcmp(cmd, "debug") == 0)
		return cmd_debug(a);
	return reply_err("unknown command %s", cmd);
}

/* ---- lifecycle ---- */

int
agent_new(const struct agent_config *cfg, struct agent **out)
{
	struct wg_output_ops ops;
	struct agent *a;
	int r;

	*out = NULL;
	if ((a = calloc(1, sizeof(*a))) == NULL)
		return ERR_NOMEM;
	a->cfg = *cfg;
	a->tun_fd = -1;
	crypto_box_keypair(a->disco_pub, a->disco_priv);
	pthread_mutex_init(&a->mu, NULL);
	pthread_mutex_init(&a->ctl_mu, NULL);
	pthread_mutex_init(&a->nc_mu, NULL);
	pthread_mutex_init(&a->in_mu, NULL);
	pthread_cond_init(&a->cond, NULL);
	pthread_cond_init(&a->in_cond, NULL);
	pthread_rwlock_init(&a->flock, NULL);
	atomic_init(&a->stop, false);
	a->peers = calloc(AGENT_MAX_PEERS, sizeof(*a->peers));
	a->khash = calloc(KEY_HASH_SIZE, sizeof(*a->khash));
	a->inbox = calloc(INBOX_LEN, sizeof(*a->inbox));
	a->ct = conntrack_new(0);
	if (a->peers == NULL || a->khash == NULL || a->inbox == NULL || a->ct == NULL) {
		r = ERR_NOMEM;
		goto fail;
	}
	prefs_load(a);
	if (cfg->tun_name && *cfg->tun_name) {
		if ((r = wg_tun_open(cfg->tun_name, a->ifname, &a->tun_fd)) != 0) {
			log_error("msg=\"cannot open TUN device\" dev=%s err=%s", cfg->tun_name,
			    err_str(r));
			goto fail;
		}
		if ((r = netcfg_link_up(a->ifname, AGENT_MTU)) != 0)
			goto fail;
	}
	if ((r = wg_device_new(-1, AGENT_MTU, cfg->port, &a->dev)) != 0) {
		log_error("msg=\"cannot open the WireGuard socket\" port=%u err=%s", cfg->port,
		    err_str(r));
		goto fail;
	}
	if ((r = wg_device_set_private_key(a->dev, cfg->node_priv)) != 0)
		goto fail;
	memset(&ops, 0, sizeof(ops));
	ops.send = hook_send;
	ops.recv_other = hook_recv_other;
	ops.deliver = hook_deliver;
	ops.arg = a;
	wg_device_set_output(a->dev, &ops);
	r = ERR_INTERNAL;
	if (pthread_create(&a->loop_thr, NULL, loop_main, a) != 0)
		goto fail;
	if (pthread_create(&a->nc_thr, NULL, nc_main, a) != 0) {
		atomic_store(&a->stop, true);
		pthread_join(a->loop_thr, NULL);
		goto fail;
	}
	if (a->tun_fd >= 0) {
		if (pthread_create(&a->tun_thr, NULL, tun_main, a) != 0) {
			atomic_store(&a->stop, true);
			pthread_join(a->loop_thr, NULL);
			pthread_join(a->nc_thr, NULL);
			goto fail;
		}
		a->tun_started = true;
	}
	log_info("msg=\"agent started\" dev=%s port=%u", a->ifname[0] ? a->ifname : "-",
	    wg_device_listen_port(a->dev));
	if (a->want_up && a->login_server[0]) {
		if (pthread_create(&a->resume_thr, NULL, resume_main, a) == 0)
			a->resume_started = true;
		else
			log_warn("msg=\"cannot start reconnect thread\"");
	}
	*out = a;
	return 0;
fail:
	wg_device_free(a->dev);
	if (a->tun_fd >= 0)
		close(a->tun_fd);
	conntrack_free(a->ct);
	free(a->peers);
	free(a->khash);
	free(a->inbox);
	wipe(a, sizeof(*a));
	free(a);
	return r;
}

void
agent_free(struct agent *a)
{
	if (a == NULL)
		return;
	pthread_mutex_lock(&a->ctl_mu);
	atomic_store(&a->stop, true);
	pthread_mutex_unlock(&a->ctl_mu);
	if (a->resume_started)
		pthread_join(a->resume_thr, NULL);
	pthread_mutex_lock(&a->ctl_mu);
	if (a->ctl)
		stop_control(a);
	pthread_mutex_unlock(&a->ctl_mu);
	pthread_mutex_lock(&a->in_mu);
	pthread_cond_broadcast(&a->in_cond);
	pthread_mutex_unlock(&a->in_mu);
	pthread_mutex_lock(&a->mu);
	pthread_cond_broadcast(&a->cond);
	pthread_mutex_unlock(&a->mu);
	pthread_join(a->loop_thr, NULL);
	pthread_join(a->nc_thr, NULL);
	if (a->tun_started)
		pthread_join(a->tun_thr, NULL);
	wg_device_set_output(a->dev, NULL);
	{
		struct dconn gone[MAX_DERPS];
		size_t n;

		pthread_mutex_lock(&a->mu);
		n = derps_take_locked(a, gone, false);
		pthread_mutex_unlock(&a->mu);
		derps_free(gone, n);
	}
	wg_device_free(a->dev);
	if (a->tun_fd >= 0)
		close(a->tun_fd);
	for (size_t i = 0; i < a->npeers; i++) {
		paths_free(a->peers[i]->paths);
		free(a->peers[i]);
	}
	free(a->peers);
	free(a->khash);
	free(a->inbox);
	free(a->reported);
	free(a->derp_map_json);
	derp_map_free(a->dmap);
	free(a->filter_json);
	filter_free(a->filter);
	conntrack_free(a->ct);
	pthread_mutex_destroy(&a->mu);
	pthread_mutex_destroy(&a->ctl_mu);
	pthread_mutex_destroy(&a->nc_mu);
	pthread_mutex_destroy(&a->in_mu);
	pthread_cond_destroy(&a->cond);
	pthread_cond_destroy(&a->in_cond);
	pthread_rwlock_destroy(&a->flock);
	wipe(a, sizeof(*a));
	free(a);
}
