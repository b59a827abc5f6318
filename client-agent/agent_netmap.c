// SPDX-License-Identifier: MIT
/*
 * Applying map messages from the control server: the self node (TUN
 * addresses, routes), peers (WireGuard peers and path candidates, changed
 * incrementally so unchanged sessions stay up), the DERP map and the packet
 * filter. Runs on the control client's stream thread.
 */
#include "client-agent/agent_int.h"

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
			   &p->nallowed) != 0 ||
	    parse_prefixes(json_object_get(o, "primary_routes"), p->primary, MAX_ALLOWED,
			   &p->nprimary) != 0)
		return ERR_INVALID;
	p->exit_node = json_is_true(json_object_get(o, "exit_node"));
	{	/* exit routes are told by exit_node; keep the subnets */
		size_t k = 0;

		for (i = 0; i < p->nprimary; i++)
			if (!routes_is_exit(&p->primary[i]))
				p->primary[k++] = p->primary[i];
		p->nprimary = k;
	}
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

/* Compares what WireGuard gets (the allowed IPs after routes_peer_allowed). */
static bool
allowed_equal(const struct apeer *x, const struct apeer *y)
{
	if (x->nwg_allowed != y->nwg_allowed)
		return false;
	for (size_t i = 0; i < x->nwg_allowed; i++)
		if (x->wg_allowed[i].bits != y->wg_allowed[i].bits ||
		    !addr_equal(&x->wg_allowed[i].addr, &y->wg_allowed[i].addr))
			return false;
	return true;
}

static void
wg_peer_apply(struct agent *a, const struct apeer *np, bool add)
{
	struct wg_peer_config pc;

	memset(&pc, 0, sizeof(pc));
	memcpy(pc.public_key, np->node_key, KEY_LEN);
	/* No persistent keepalive yet: if both sides started one now, their
	 * handshake initiations would cross (each discarding its own) and the
	 * first packet would wait for the 5 s retry. The agent loop turns it
	 * on once a handshake has completed (agent_disco.c keepalives). */
	pc.flags = WG_PEER_REPLACE_ALLOWED_IPS;
	if (!add)
		pc.flags |= WG_PEER_UPDATE_ONLY;
	pc.allowed_ips = (struct ip_prefix *)np->wg_allowed;
	pc.n_allowed_ips = np->nwg_allowed;
	if (wg_device_peer_set(a->dev, &pc) != 0)
		log_warn("msg=\"cannot configure WireGuard peer\" peer=%s", np->name);
}

/* Adds or updates a peer; sessions of unchanged peers are left alone. */
static void
upsert_peer(struct agent *a, struct apeer *np)
{
	struct apeer *p;
	uint8_t gone_key[KEY_LEN];
	int64_t now = time_mono_ms();
	bool add = false, update_allowed = false, rekeyed = false, restarted = false, active;

	active = !np->expired;
	pthread_mutex_lock(&a->mu);
	agent_routes_peer_locked(a, np);	/* which allowed IPs WireGuard gets */
	p = agent_find_id_locked(a, np->id, NULL);
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

		restarted = !add && !key_is_zero(p->disco_key);

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
		int64_t lr = p->last_reprobe_ms, ldd = p->last_derp_disco_ms;
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
		p->last_derp_disco_ms = ldd;
		p->tx_derp = c1;
		p->tx_udp = c2;
		p->disco_rx = c3;
		p->disco_tx = c4;
		p->rtt_ms = rtt;
	}
	p->seen = true;
	agent_update_candidates_locked(p, now);
	if (add)
		agent_rehash_locked(a);
	pthread_mutex_unlock(&a->mu);
	if (rekeyed)
		(void)wg_device_peer_remove(a->dev, gone_key);
	if (!active) {
		(void)wg_device_peer_remove(a->dev, np->node_key);
		return;
	}
	if (add)
		log_info("msg=\"peer added\" peer=%s id=%" PRId64, np->name, np->id);
	if (restarted && !add) {
		/* Its WireGuard sessions died with it: drop ours, so that the next
		 * packet starts a handshake at once instead of going unanswered
		 * until the rekey timeout (up to 15 s, e.g. a subnet router that
		 * restarted and becomes primary again). */
		(void)wg_device_peer_remove(a->dev, np->node_key);
		log_info("msg=\"peer restarted; fresh WireGuard session\" peer=%s", np->name);
		add = true;
	}
	if (add || update_allowed)
		wg_peer_apply(a, np, add);
}

static void
remove_peer(struct agent *a, int64_t id)
{
	struct apeer *p;
	size_t idx;

	pthread_mutex_lock(&a->mu);
	if ((p = agent_find_id_locked(a, id, &idx)) == NULL) {
		pthread_mutex_unlock(&a->mu);
		return;
	}
	a->peers[idx] = a->peers[--a->npeers];
	agent_rehash_locked(a);
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
	ngone = agent_derps_take_locked(a, gone, false);
	if (a->home_region == 0 || derp_map_region(map, a->home_region) == NULL) {
		a->home_region = 0;
		agent_set_home_locked(a, agent_first_region_locked(a));
	} else {
		int h = a->home_region;

		a->home_region = 0;
		agent_set_home_locked(a, h);
	}
	a->nc_want = true;
	pthread_cond_broadcast(&a->cond);
	pthread_mutex_unlock(&a->mu);
	agent_derps_free(gone, ngone);
	derp_map_free(old);
}

/* Via directives changed: every peer's allowed IPs are recomputed and the
 * ones that changed go to WireGuard, then the OS routes follow. */
static void
reroute_peers(struct agent *a)
{
	struct apeer *chg = NULL;
	size_t n = 0, i;

	pthread_mutex_lock(&a->mu);
	if (a->npeers > 0 && (chg = malloc(a->npeers * sizeof(*chg))) != NULL) {
		for (i = 0; i < a->npeers; i++) {
			struct apeer *p = a->peers[i], before = *p;

			agent_routes_peer_locked(a, p);
			if (!allowed_equal(&before, p))
				chg[n++] = *p;
		}
	}
	pthread_mutex_unlock(&a->mu);
	for (i = 0; i < n; i++) {
		log_info("msg=\"via grant moved routes\" peer=%s", chg[i].name);
		wg_peer_apply(a, &chg[i], false);
	}
	free(chg);
	if (n > 0)
		agent_routes_sync(a);
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
	if (agent_routes_via_set(a, fj))
		reroute_peers(a);
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
	agent_routes_sync(a);
	pthread_mutex_lock(&a->mu);
	a->have_netmap = true;
	a->netmaps++;
	pthread_cond_broadcast(&a->cond);
	pthread_mutex_unlock(&a->mu);
}

void
agent_on_message(void *ctx, json_t *msg)
{
	struct agent *a = ctx;
	const char *type = json_string_value(json_object_get(msg, "type"));
	json_t *v;
	bool via;

	if (type == NULL)
		return;
	/* the replicas of this network (full maps and REPLICAS deltas) */
	if (json_is_array(v = json_object_get(msg, "control_urls")))
		agent_learn_urls(a, v);
	if (strcmp(type, "full") == 0) {
		apply_full(a, msg);
		agent_dns_on_message(a, msg);
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
		agent_routes_sync(a);
	} else if ((v = json_object_get(msg, "peer_removed"))) {
		remove_peer(a, json_integer_value(v));
		agent_routes_sync(a);
	} else if ((v = json_object_get(msg, "online"))) {
		struct apeer *p;

		pthread_mutex_lock(&a->mu);
		if ((p = agent_find_id_locked(a, json_integer_value(json_object_get(v, "id")), NULL)))
			p->online = json_is_true(json_object_get(v, "online"));
		via = p != NULL && a->nvia > 0;
		pthread_mutex_unlock(&a->mu);
		/* a via grant's router went away or came back: the destination
		 * moves to the first listed router that is online */
		if (via)
			reroute_peers(a);
	} else if ((v = json_object_get(msg, "online_flags"))) {
		/* {"on":[ids],"off":[ids]}: many peers' flags at once */
		for (int half = 0; half < 2; half++) {
			json_t *ids = json_object_get(v, half ? "off" : "on"), *id;
			size_t i;

			pthread_mutex_lock(&a->mu);
			json_array_foreach(ids, i, id) {
				struct apeer *p = agent_find_id_locked(a, json_integer_value(id), NULL);

				if (p)
					p->online = !half;
			}
			pthread_mutex_unlock(&a->mu);
		}
		pthread_mutex_lock(&a->mu);
		via = a->nvia > 0;
		pthread_mutex_unlock(&a->mu);
		if (via)
			reroute_peers(a);
	} else if ((v = json_object_get(msg, "self"))) {
		apply_self(a, v);
	} else if ((v = json_object_get(msg, "filter"))) {
		apply_filter(a, v);
	} else if ((v = json_object_get(msg, "derp_map"))) {
		apply_derp_map(a, v);
	}
	agent_dns_on_message(a, msg);
}

void
agent_on_state(void *ctx, bool up, const char *why)
{
	struct agent *a = ctx;

	bool refused = !up && why && strstr(why, "HTTP 401") != NULL, was;

	pthread_mutex_lock(&a->mu);
	a->control_connected = up;
	str_copy(a->control_err, up ? "" : why, sizeof(a->control_err));
	/* 401 on the map stream: the key expired or the node was deleted; only
	 * a new login helps (the stream keeps retrying in case an admin extends
	 * the expiry). Said once at warn, with the way out. */
	was = a->needs_login;
	a->needs_login = up ? false : refused ? true : a->needs_login;
	if (refused && !was)
		log_warn("msg=\"the control server no longer accepts this node (key expired or node "
		    "deleted); re-authenticate with: wiremesh up --authkey KEY\" why=\"%s\"", why);
	pthread_cond_broadcast(&a->cond);
	pthread_mutex_unlock(&a->mu);
	if (up) {
		log_info("msg=\"control connected\"");
		/* The server forgets endpoints across restarts: say them again. */
		pthread_mutex_lock(&a->mu);
		free(a->reported);
		a->reported = NULL;
		pthread_mutex_unlock(&a->mu);
		agent_report_endpoints(a);
	}
}
