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
 * Path discovery (agent_disco.c) runs on the agent loop thread: disco
 * pings to every candidate endpoint (netmap endpoints, call-me-maybe
 * endpoints, addresses that pinged us), pongs to every ping, and
 * call-me-maybe over DERP every AGENT_CMM_EVERY_MS while no direct path
 * exists so that both sides punch at once. Disco and STUN datagrams reach the loop through a bounded inbox,
 * never on the engine's threads, so no engine lock is held while they are
 * handled.
 */
#include "client-agent/agent_int.h"
#include "common/version.h"

/* ---- small helpers ---- */

bool
agent_ep_equal(const struct endpoint *a, const struct endpoint *b)
{
	return a->port == b->port && addr_equal(&a->addr, &b->addr);
}

void
agent_timespec_in(struct timespec *ts, int64_t ms)
{
	clock_gettime(CLOCK_REALTIME, ts);
	ts->tv_sec += ms / 1000;
	ts->tv_nsec += (ms % 1000) * 1000000;
	if (ts->tv_nsec >= 1000000000) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000;
	}
}

json_t *
agent_reply_err(const char *fmt, ...)
{
	char msg[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return json_pack("{s:b, s:s}", "ok", 0, "error", msg);
}

json_t *
agent_reply_ok(const char *text, json_t *data)
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
struct apeer *
agent_find_key_locked(struct agent *a, const uint8_t key[static KEY_LEN])
{
	size_t i = key_slot(key);

	for (size_t n = 0; n < KEY_HASH_SIZE; n++, i = (i + 1) & (KEY_HASH_SIZE - 1)) {
		struct apeer *p = a->khash[i];

		if (p == NULL)
			return NULL;
		if (memcmp(p->node_key, key, KEY_LEN) == 0)
			return p;
	}
	return NULL;
}

/* Rebuilds the key index after the peer set or a key changed (rare). */
void
agent_rehash_locked(struct agent *a)
{
	memset(a->khash, 0, KEY_HASH_SIZE * sizeof(*a->khash));
	for (size_t k = 0; k < a->npeers; k++) {
		size_t i = key_slot(a->peers[k]->node_key);

		while (a->khash[i] != NULL)
			i = (i + 1) & (KEY_HASH_SIZE - 1);
		a->khash[i] = a->peers[k];
	}
}

struct apeer *
agent_find_disco_locked(struct agent *a, const uint8_t key[static KEY_LEN])
{
	for (size_t i = 0; i < a->npeers; i++)
		if (memcmp(a->peers[i]->disco_key, key, KEY_LEN) == 0)
			return a->peers[i];
	return NULL;
}

struct apeer *
agent_find_id_locked(struct agent *a, int64_t id, size_t *idx)
{
	for (size_t i = 0; i < a->npeers; i++)
		if (a->peers[i]->id == id) {
			if (idx)
				*idx = i;
			return a->peers[i];
		}
	return NULL;
}

const char *
agent_region_code_locked(struct agent *a, int region, char buf[static 16])
{
	const struct derp_region *r = a->dmap ? derp_map_region(a->dmap, region) : NULL;

	if (r && r->code[0])
		return r->code;
	snprintf(buf, 16, "%d", region);
	return buf;
}

/* ---- prefs ---- */

/* The map stream's thread saves too (learned URLs): one writer at a time. */
static pthread_mutex_t prefs_mu = PTHREAD_MUTEX_INITIALIZER;

void
agent_prefs_save(struct agent *a)
{
	char path[1024], tmp[1100];
	json_t *urls = json_array();
	json_t *j = json_pack("{s:s, s:s, s:b, s:b, s:b, s:s, s:b}", "login_server", a->login_server,
	    "hostname", a->hostname, "want_up", a->want_up, "logged_in", a->logged_in,
	    "hostname_set", a->hostname_set, "advertise_tags", a->adv_tags,
	    "accept_dns", a->accept_dns);
	int fd;

	snprintf(path, sizeof(path), "%s/prefs.json", a->cfg.state_dir);
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	if (j == NULL || urls == NULL) {
		json_decref(j);
		json_decref(urls);
		return;
	}
	pthread_mutex_lock(&a->mu);
	for (size_t i = 0; i < a->nlearned; i++)
		json_array_append_new(urls, json_string(a->learned[i]));
	pthread_mutex_unlock(&a->mu);
	json_object_set_new(j, "control_urls", urls);
	pthread_mutex_lock(&prefs_mu);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0 || json_dumpfd(j, fd, JSON_COMPACT) != 0 || fsync(fd) != 0 ||
	    rename(tmp, path) != 0)
		log_warn("msg=\"cannot save prefs\" path=%s err=\"%s\"", path, strerror(errno));
	if (fd >= 0)
		close(fd);
	pthread_mutex_unlock(&prefs_mu);
	json_decref(j);
}

/* Copies a JSON array of URL strings into a->learned-shaped storage. */
static size_t
learned_from_json(json_t *arr, char out[static AGENT_LEARNED_MAX][CONTROL_URL_MAX])
{
	size_t i, n = 0;
	json_t *v;

	json_array_foreach(arr, i, v) {
		const char *u = json_string_value(v);

		if (u == NULL || *u == 0 || strlen(u) >= CONTROL_URL_MAX ||
		    (strncmp(u, "https://", 8) != 0 && strncmp(u, "http://", 7) != 0))
			continue;
		if (n == AGENT_LEARNED_MAX)
			break;
		str_copy(out[n++], u, CONTROL_URL_MAX);
	}
	return n;
}

void
agent_apply_learned_locked(struct agent *a, struct control *c)
{
	const char *p[AGENT_LEARNED_MAX];

	if (c == NULL)
		return;
	for (size_t i = 0; i < a->nlearned; i++)
		p[i] = a->learned[i];
	control_set_learned(c, p, a->nlearned);
}

void
agent_forget_learned_locked(struct agent *a)
{
	a->nlearned = 0;
}

void
agent_learn_urls(struct agent *a, json_t *urls)
{
	char got[AGENT_LEARNED_MAX][CONTROL_URL_MAX];
	size_t n = learned_from_json(urls, got);
	bool changed;

	pthread_mutex_lock(&a->mu);
	changed = n != a->nlearned;
	for (size_t i = 0; !changed && i < n; i++)
		changed = strcmp(got[i], a->learned[i]) != 0;
	if (changed) {
		memcpy(a->learned, got, n * sizeof(got[0]));
		a->nlearned = n;
		agent_apply_learned_locked(a, a->ctl);
	}
	pthread_mutex_unlock(&a->mu);
	if (changed) {
		char line[AGENT_LEARNED_MAX * CONTROL_URL_MAX + 8] = "";
		size_t len = 0;

		for (size_t i = 0; i < n; i++)
			len += (size_t)snprintf(line + len, sizeof(line) - len, "%s%s", i ? "," : "",
			    got[i]);
		log_info("msg=\"control servers announced by the map\" urls=\"%s\"", line);
		agent_prefs_save(a);
	}
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
	/* Files from before `logout` existed: registered if a server is known. */
	a->logged_in = json_object_get(j, "logged_in") ? json_is_true(json_object_get(j, "logged_in"))
	    : a->login_server[0] != 0;
	a->hostname_set = json_is_true(json_object_get(j, "hostname_set"));
	if ((s = json_string_value(json_object_get(j, "advertise_tags"))) != NULL)
		str_copy(a->adv_tags, s, sizeof(a->adv_tags));
	if (json_is_boolean(json_object_get(j, "accept_dns")))
		a->accept_dns = json_is_true(json_object_get(j, "accept_dns"));
	a->nlearned = learned_from_json(json_object_get(j, "control_urls"), a->learned);
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

struct derp_client *
agent_derp_get_locked(struct agent *a, int region, bool create)
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
int
agent_derp_send_locked(struct agent *a, int region, const uint8_t key[static KEY_LEN],
		 const uint8_t *pkt, size_t len)
{
	struct derp_client *c;

	if (region <= 0)
		region = a->home_region;
	if (region <= 0 || (c = agent_derp_get_locked(a, region, true)) == NULL) {
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

/* Detaches every relay connection (mu held); free them with agent_derps_free. */
size_t
agent_derps_take_locked(struct agent *a, struct dconn *out, bool keep_home)
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

void
agent_derps_free(struct dconn *d, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		derp_client_free(d[i].c);
		free(d[i].ctx);
	}
}

void
agent_set_home_locked(struct agent *a, int region)
{
	struct derp_client *c;

	if (region == a->home_region)
		return;
	for (size_t i = 0; i < a->nderps; i++)
		if (a->derps[i].region == a->home_region)
			derp_client_note_preferred(a->derps[i].c, false);
	log_info("msg=\"home relay\" region=%d previous=%d", region, a->home_region);
	a->home_region = region;
	if ((c = agent_derp_get_locked(a, region, true)) != NULL)
		derp_client_note_preferred(c, true);
}

/* A home region before netcheck has measured: the first that may be one. */
int
agent_first_region_locked(struct agent *a)
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
	p = agent_find_key_locked(a, key);
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
	if (agent_derp_send_locked(a, region, key, pkt, len) != 0 && region != a->home_region)
		(void)!agent_derp_send_locked(a, a->home_region, key, pkt, len);
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
			if (a->resolver && resolver_wants(buf, (size_t)n)) {
				resolver_input(a->resolver, buf, (size_t)n);
				continue;
			}
			conntrack_note_outbound(a->ct, buf, (size_t)n, time_mono_ms());
			wg_device_send_packet(a->dev, buf, (size_t)n);
		}
	}
	free(buf);
	return NULL;
}


json_t *
agent_handle(void *arg, json_t *req)
{
	struct agent *a = arg;
	const char *cmd = json_string_value(json_object_get(req, "cmd"));

	if (cmd == NULL)
		return agent_reply_err("request has no \"cmd\"");
	if (strcmp(cmd, "up") == 0) {
		json_t *r = agent_cmd_up(a, req), *k = json_object_get(req, "authkey");

		/* The auth key is a secret: do not leave it in freed memory. */
		if (json_is_string(k))
			wipe((char *)json_string_value(k), json_string_length(k));
		return r;
	}
	if (strcmp(cmd, "set") == 0)
		return agent_cmd_set(a, req);
	if (strcmp(cmd, "up_wait") == 0)
		return agent_cmd_up_wait(a, req);
	if (strcmp(cmd, "down") == 0)
		return agent_cmd_down(a);
	if (strcmp(cmd, "logout") == 0)
		return agent_cmd_logout(a);
	if (strcmp(cmd, "version") == 0)
		return agent_reply_ok("wiremeshd " WM_VERSION "\n",
		    json_pack("{s:s}", "version", WM_VERSION));
	if (strcmp(cmd, "status") == 0)
		return agent_cmd_status(a);
	if (strcmp(cmd, "ip") == 0)
		return agent_cmd_ip(a, req);
	if (strcmp(cmd, "ping") == 0)
		return agent_cmd_ping(a, req);
	if (strcmp(cmd, "netcheck") == 0)
		return agent_cmd_netcheck(a);
	if (strcmp(cmd, "debug") == 0)
		return agent_cmd_debug(a);
	if (strcmp(cmd, "dns_status") == 0)
		return agent_cmd_dns_status(a);
	return agent_reply_err("unknown command %s", cmd);
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
	pthread_mutex_init(&a->dns_mu, NULL);
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
	a->accept_dns = true;
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
	agent_dns_start(a);
	r = ERR_INTERNAL;
	if (pthread_create(&a->loop_thr, NULL, agent_loop_main, a) != 0)
		goto fail;
	if (pthread_create(&a->nc_thr, NULL, agent_nc_main, a) != 0) {
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
		if (pthread_create(&a->resume_thr, NULL, agent_resume_main, a) == 0)
			a->resume_started = true;
		else
			log_warn("msg=\"cannot start reconnect thread\"");
	}
	*out = a;
	return 0;
fail:
	resolver_free(a->resolver);
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
		agent_stop_control(a);
	pthread_mutex_unlock(&a->ctl_mu);
	agent_routes_reset(a);		/* routes, rules, forwarding, NAT */
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
	agent_dns_stop(a);
	wg_device_set_output(a->dev, NULL);
	{
		struct dconn gone[MAX_DERPS];
		size_t n;

		pthread_mutex_lock(&a->mu);
		n = agent_derps_take_locked(a, gone, false);
		pthread_mutex_unlock(&a->mu);
		agent_derps_free(gone, n);
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
	pthread_mutex_destroy(&a->dns_mu);
	pthread_cond_destroy(&a->cond);
	pthread_cond_destroy(&a->in_cond);
	pthread_rwlock_destroy(&a->flock);
	wipe(a, sizeof(*a));
	free(a);
}
