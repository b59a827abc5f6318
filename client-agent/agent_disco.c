// SPDX-License-Identifier: MIT
/*
 * Path discovery: disco pings to every candidate endpoint of every peer,
 * pongs to every ping, call-me-maybe over DERP while no direct path exists,
 * on the agent loop thread, which also drains the inbox (disco and STUN
 * datagrams) and closes idle relay connections. Also the node's own
 * endpoints and the netcheck thread that finds the STUN-mapped one and the
 * home relay.
 */
#include "client-agent/agent_int.h"

/* ---- disco ---- */

int
agent_seal_to(struct agent *a, const uint8_t peer_disco[static KEY_LEN], const struct disco_msg *m,
	uint8_t out[static DISCO_MAX_PACKET], size_t *len)
{
	return disco_seal(a->disco_priv, a->disco_pub, peer_disco, m, out, DISCO_MAX_PACKET, len);
}

/* The candidate set: netmap endpoints plus call-me-maybe ones (mu held). */
void
agent_update_candidates_locked(struct apeer *p, int64_t now)
{
	struct endpoint all[2 * MAX_EPS];
	size_t n = 0;

	for (size_t i = 0; i < p->neps; i++)
		all[n++] = p->eps[i];
	for (size_t i = 0; i < p->ncmm; i++)
		all[n++] = p->cmm[i];
	paths_set_candidates(p->paths, all, n, now);
}

/* An address of the tailnet itself (100.64.0.0/10, fd7a:115c:a1e0::/48). */
static bool
tailnet_addr(const struct ip_addr *ip)
{
	static const uint8_t ula[6] = { 0xfd, 0x7a, 0x11, 0x5c, 0xa1, 0xe0 };

	if (ip->family == AF_INET)
		return ip->b[0] == 100 && (ip->b[1] & 0xc0) == 64;
	return memcmp(ip->b, ula, sizeof(ula)) == 0;
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
	/* Disco over UDP from a tailnet address came through a tunnel (the
	 * peer routed its packet into its own, toward an exit node or a
	 * subnet router): a path over that would be WireGuard inside
	 * WireGuard, gone with the tunnel it rides on. Not a path. */
	if (it->kind == IN_UDP && tailnet_addr(&it->from.addr)) {
		atomic_fetch_add(&a->c_disco_via_tunnel, 1);
		return;
	}
	memset(&r, 0, sizeof(r));
	pthread_mutex_lock(&a->mu);
	p = agent_find_disco_locked(a, sender);
	if (p == NULL || (it->kind == IN_DERP && memcmp(it->src, p->node_key, KEY_LEN) != 0)) {
		pthread_mutex_unlock(&a->mu);
		atomic_fetch_add(&a->c_disco_unknown, 1);
		return;
	}
	p->disco_rx++;
	if (it->kind == IN_DERP)
		p->last_derp_disco_ms = now;
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
					agent_update_candidates_locked(p, now);
					p->last_reprobe_ms = now;
				}
			}
			paths_heard_from(p->paths, &it->from, now);
			r.src = it->from;
		} else {
			r.src.addr.family = AF_INET6;	/* unspecified: came over DERP */
		}
		reply = agent_seal_to(a, p->disco_key, &r, out, &olen) == 0;
		if (reply && it->kind == IN_DERP) {
			/* Back the way it came: the sender is connected there. */
			struct derp_client *c = agent_derp_get_locked(a, it->region, false);

			if (c == NULL || derp_client_send(c, key, out, olen) != 0)
				(void)!agent_derp_send_locked(a, p->home_derp, key, out, olen);
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
		agent_update_candidates_locked(p, now);
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
	/* An offline peer is not probed, but a direct path it still answers on
	 * is kept: "offline" only means its control connection is down (a
	 * control server restart makes every node offline for a moment). */
	if (p->expired || key_is_zero(p->disco_key) || (!p->online && !p->direct)) {
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
		if (agent_seal_to(a, p->disco_key, &m, out[nout].pkt, &out[nout].len) == 0)
			nout++;
	}
	p->disco_tx += nout;
	if (paths_best(p->paths, now, &best, &rtt)) {
		p->rtt_ms = rtt;
		if (!p->direct || !agent_ep_equal(&best, &p->direct_ep))
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
		if (agent_seal_to(a, p->disco_key, &m, pkt, &len) == 0 &&
		    agent_derp_send_locked(a, p->home_derp, key, pkt, len) == 0) {
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
		if ((p = agent_find_key_locked(a, key)) != NULL) {
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

/* WireGuard keepalives (AGENT_KEEPALIVE_S) for peers that have completed a
 * handshake: they hold NAT mappings and relay routes while a tunnel idles.
 * Not set when a peer is added, so that two nodes meeting at the same
 * moment do not both initiate (see wg_peer_apply). */
static void
keepalives(struct agent *a)
{
	struct wg_device_info *info;
	uint8_t (*keys)[KEY_LEN];
	size_t n = 0;

	if (wg_device_get_info(a->dev, &info) != 0)
		return;
	keys = malloc((info->n_peers + 1) * sizeof(*keys));
	for (size_t i = 0; keys && i < info->n_peers; i++)
		if (info->peers[i].last_handshake_sec != 0 && info->peers[i].persistent_keepalive == 0)
			memcpy(keys[n++], info->peers[i].public_key, KEY_LEN);
	wg_device_info_free(info);
	for (size_t i = 0; i < n; i++) {
		struct wg_peer_config pc;

		memset(&pc, 0, sizeof(pc));
		memcpy(pc.public_key, keys[i], KEY_LEN);
		pc.flags = WG_PEER_UPDATE_ONLY | WG_PEER_HAS_KEEPALIVE;
		pc.persistent_keepalive = AGENT_KEEPALIVE_S;
		if (wg_device_peer_set(a->dev, &pc) != 0)
			log_debug("msg=\"cannot set keepalive\"");
	}
	free(keys);
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
	agent_derps_free(gone, n);
}

void *
agent_loop_main(void *arg)
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

			agent_timespec_in(&ts, next_tick - now);
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
			keepalives(a);
			next_clean = now + 2000;
		}
	}
	free(it);
	return NULL;
}

/* ---- endpoints and netcheck ---- */

/* Local interface addresses with our port, then the STUN-mapped one. */
static size_t
gather_endpoints(struct agent *a, uint16_t port, const struct netcheck_report *rep,
		 struct endpoint *out, size_t max)
{
	struct ifaddrs *ifa = NULL;
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
			dup |= agent_ep_equal(&out[k], &e);
		if (!dup)
			out[n++] = e;
	}
	freeifaddrs(ifa);
	return n;
}

void
agent_report_endpoints(struct agent *a)
{
	struct endpoint eps[MAX_EPS];
	char txt[MAX_EPS][ADDR_STR_MAX], *key;
	const char *ptrs[MAX_EPS];
	size_t n;
	struct buf b;
	int home;

	/* The device's lock before a->mu, never inside it: an engine thread
	 * holding the device's lock takes a->mu (hook_send), and a writer
	 * waiting on the device's lock (a peer change) would block this reader
	 * while it held a->mu: three threads stuck (ThreadSanitizer's
	 * lock-order report, agent_ha.sh). */
	uint16_t port = wg_device_listen_port(a->dev);

	pthread_mutex_lock(&a->mu);
	n = gather_endpoints(a, port, a->have_report ? &a->report : NULL, eps, MAX_EPS);
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
		agent_set_home_locked(a, pref);
	pthread_cond_broadcast(&a->cond);
	pthread_mutex_unlock(&a->mu);
	{	/* at info only when the result changes (every 3 s while UDP is blocked) */
		static _Thread_local char last[256];
		char g[ADDR_STR_MAX] = "-", g6[ADDR_STR_MAX] = "-", line[256];

		if (rep.ipv4)
			endpoint_fmt(g, &rep.global_v4);
		if (rep.ipv6)
			endpoint_fmt(g6, &rep.global_v6);
		snprintf(line, sizeof(line), "udp=%s global_v4=%s global_v6=%s mapping_varies=%d "
		    "preferred=%d", rep.udp ? "true" : "false", g, g6, (int)rep.mapping_varies, pref);
		if (strcmp(line, last) != 0)
			log_info("msg=\"netcheck\" %s", line);
		else
			log_debug("msg=\"netcheck\" %s", line);
		str_copy(last, line, sizeof(last));
	}
	agent_report_endpoints(a);
}

void *
agent_nc_main(void *arg)
{
	struct agent *a = arg;
	int64_t next = 0;

	while (!atomic_load(&a->stop)) {
		bool run;

		pthread_mutex_lock(&a->mu);
		if (!a->nc_want && time_mono_ms() < next) {
			struct timespec ts;

			agent_timespec_in(&ts, 500);
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
