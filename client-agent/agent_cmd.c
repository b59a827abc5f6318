// SPDX-License-Identifier: MIT
/*
 * The local API commands (client-agent/wiremesh.c documents them): up,
 * down and reconnecting after a restart; status, ip, ping, netcheck, debug.
 */
#include "client-agent/agent_int.h"

/* ---- up / down ---- */

static json_t *csv_json(const char *csv);

/* Stops and frees the control client. Called with ctl_mu held, which is
 * released while the client's threads are joined (their callbacks take it);
 * user_acted keeps the reconnect thread from starting another meanwhile. */
void
agent_stop_control(struct agent *a)
{
	struct control *c;

	c = a->ctl;
	if (c != NULL && (!a->want_up || atomic_load(&a->stop)))
		agent_routes_withdraw(a, c);	/* down or exit: hand routes over now */
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
	struct control_callbacks cb = { .message = agent_on_message, .state = agent_on_state, .ctx = a };
	struct control *c;

	memcpy(k.machine_sk, a->cfg.machine_sk, ED25519_SK_LEN);
	memcpy(k.machine_pk, a->cfg.machine_pk, KEY_LEN);
	memcpy(k.node_pub, a->cfg.node_pub, KEY_LEN);
	memcpy(k.disco_pub, a->disco_pub, KEY_LEN);
	c = control_new(url, &k, &cb);
	wipe(&k, sizeof(k));
	if (c != NULL) {
		json_t *adv;

		pthread_mutex_lock(&a->mu);
		agent_apply_learned_locked(a, c);	/* the other replicas, last */
		pthread_mutex_unlock(&a->mu);

		/* Routes: advertised with register and endpoints; the agent's own
		 * sockets marked so that an exit node's routes skip them. */
		if (!a->rprefs_loaded) {
			agent_routes_prefs_load(a);
			a->rprefs_loaded = true;
		}
		pthread_mutex_lock(&a->mu);
		adv = routes_advertised_json(&a->rprefs);
		pthread_mutex_unlock(&a->mu);
		control_set_advertised(c, adv);
		json_decref(adv);
		if (a->adv_tags[0]) {
			json_t *tags = csv_json(a->adv_tags);

			control_set_tags(c, tags);
			json_decref(tags);
		}
		control_set_fwmark(c, ROUTES_FWMARK);
		derp_client_set_fwmark(ROUTES_FWMARK);
		if (wg_device_set_fwmark(a->dev, ROUTES_FWMARK) != 0)
			log_debug("msg=\"cannot mark the WireGuard socket\"");
	}
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
		agent_rehash_locked(a);
	}
	ngone = agent_derps_take_locked(a, gone, false);
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
	agent_derps_free(gone, ngone);
	if (a->tun_fd >= 0)
		netcfg_flush(a->ifname);
	agent_routes_reset(a);
}

static bool
is_http(const char *url)
{
	return strncmp(url, "http://", 7) == 0;
}

/* One URL, or several (replicas of one network) separated by commas. */
static bool
urls_ok(const char *urls)
{
	const char *p = urls;

	if (strlen(urls) >= sizeof(((struct agent *)0)->login_server))
		return false;
	do {
		if (!is_http(p) && strncmp(p, "https://", 8) != 0)
			return false;
		p = strchr(p, ',');
	} while (p != NULL && *++p != '\0');
	return p == NULL;
}

/* The text `up` and `status` show about reachability (mu held). */
static void
health_locked(struct agent *a, struct buf *b)
{
	bool relay = false;

	for (size_t i = 0; i < a->nderps; i++)
		relay |= derp_client_connected(a->derps[i].c);
	if (a->route_err[0])
		(void)!buf_printf(b, "# Health: %s\n", a->route_err);
	if (a->ctl && !a->control_connected && a->needs_login) {
		(void)!buf_printf(b, "# Health: this node's key has expired or the node was deleted "
		    "(%s); existing tunnels keep working until peers drop it. Re-authenticate: "
		    "wiremesh up --authkey KEY\n", a->control_err);
	} else if (a->ctl && !a->control_connected) {
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

/* ---- preferences: what `up` and `set` change ----
 *
 * Each preference is a request field named like its flag (hostname ->
 * --hostname, advertise_routes -> --advertise-routes). A field absent from
 * a request was not mentioned. `up` without any preference flag keeps them
 * all; `up` with some must mention every one that is not at its default
 * (else it refuses and names them, as Tailscale does), unless --reset
 * (reset: true) puts the unmentioned ones back to defaults. `set` changes
 * only what it mentions. To add a preference: add it to prefs_defaults(),
 * prefs_current_locked() and prefs_apply(), and its flag to wiremesh.c. */
static json_t *
prefs_defaults(void)
{
	return json_pack("{s:s, s:[], s:b, s:b, s:s, s:b, s:[], s:b}", "hostname", "",
	    "advertise_routes", "advertise_exit_node", 0, "accept_routes", 0, "exit_node", "",
	    "exit_node_allow_lan_access", 0, "advertise_tags", "accept_dns", 1);
}

static json_t *
csv_json(const char *csv)
{
	json_t *arr = json_array();
	char *copy = strdup(csv), *save = NULL;

	for (char *t = copy ? strtok_r(copy, ",", &save) : NULL; t; t = strtok_r(NULL, ",", &save))
		json_array_append_new(arr, json_string(t));
	free(copy);
	return arr;
}

/* The preferences in force (mu held; rprefs loaded). */
static json_t *
prefs_current_locked(struct agent *a)
{
	json_t *j = routes_prefs_to_json(&a->rprefs);

	if (j == NULL)
		return NULL;
	json_object_set_new(j, "hostname", json_string(a->hostname_set ? a->hostname : ""));
	json_object_set_new(j, "advertise_tags", csv_json(a->adv_tags));
	json_object_set_new(j, "accept_dns", json_boolean(a->accept_dns));
	return j;
}

/* " --flag=value" as a user would type it. */
static void
flag_fmt(struct buf *b, const char *key, json_t *v)
{
	char flag[64];
	size_t i;

	str_copy(flag, key, sizeof(flag));
	for (char *c = flag; *c; c++)
		if (*c == '_')
			*c = '-';
	if (json_is_boolean(v))
		(void)!buf_printf(b, json_is_true(v) ? " --%s" : " --%s=false", flag);
	else if (json_is_string(v))
		(void)!buf_printf(b, " --%s=%s", flag, json_string_value(v));
	else if (json_is_array(v)) {
		json_t *e;

		(void)!buf_printf(b, " --%s=", flag);
		json_array_foreach(v, i, e)
			(void)!buf_printf(b, "%s%s", i ? "," : "", json_string_value(e) ?: "");
	}
}

/* The preferences after req (a new reference), or NULL with why. */
static json_t *
prefs_merge(struct agent *a, json_t *req, bool is_up, char *why, size_t whylen)
{
	json_t *def = prefs_defaults(), *cur, *eff, *v;
	bool reset = json_is_true(json_object_get(req, "reset"));
	bool mentioned = false;
	const char *k;
	struct buf lost;

	if (!a->rprefs_loaded) {
		agent_routes_prefs_load(a);
		a->rprefs_loaded = true;
	}
	pthread_mutex_lock(&a->mu);
	cur = prefs_current_locked(a);
	pthread_mutex_unlock(&a->mu);
	if (def == NULL || cur == NULL) {
		json_decref(def);
		json_decref(cur);
		snprintf(why, whylen, "out of memory");
		return NULL;
	}
	json_object_foreach(def, k, v)
		mentioned |= json_object_get(req, k) != NULL;
	buf_init(&lost, 1 << 14);
	if (is_up && mentioned && !reset)
		json_object_foreach(def, k, v)
			if (json_object_get(req, k) == NULL && !json_equal(json_object_get(cur, k), v))
				flag_fmt(&lost, k, json_object_get(cur, k));
	if (lost.len > 0) {
		struct buf cmd;

		buf_init(&cmd, 1 << 14);
		(void)!buf_printf(&cmd, "wiremesh up");
		json_object_foreach(def, k, v)
			if (json_object_get(req, k) != NULL)
				flag_fmt(&cmd, k, json_object_get(req, k));
		(void)!buf_printf(&cmd, "%s", buf_cstr(&lost) ?: "");
		snprintf(why, whylen, "'wiremesh up' with flags must mention every setting that is not "
		    "at its default; this one would drop:%s\nRe-run with --reset to drop them, keep "
		    "them with:\n\n\t%s\n\nor change one setting alone with 'wiremesh set'.",
		    buf_cstr(&lost) ?: "", buf_cstr(&cmd) ?: "");
		buf_cleanup(&cmd);
		buf_cleanup(&lost);
		json_decref(def);
		json_decref(cur);
		return NULL;
	}
	buf_cleanup(&lost);
	eff = json_deep_copy(reset ? def : cur);
	json_object_foreach(def, k, v)
		if (json_object_get(req, k) != NULL)
			json_object_set(eff, k, json_object_get(req, k));
	json_decref(def);
	json_decref(cur);
	return eff;
}

/* Checks eff and makes it the agent's preferences (ctl_mu held). */
static int
prefs_apply(struct agent *a, json_t *eff, char *why, size_t whylen)
{
	const char *host = json_string_value(json_object_get(eff, "hostname"));
	json_t *tags = json_object_get(eff, "advertise_tags"), *t;
	struct routes_prefs rp;
	char csv[sizeof(a->adv_tags)] = "";
	size_t i;

	if (routes_prefs_from_json(eff, &rp, why, whylen) != 0)
		return ERR_INVALID;
	if (host == NULL || strlen(host) >= sizeof(a->hostname)) {
		snprintf(why, whylen, "--hostname must be a name of at most %zu characters",
		    sizeof(a->hostname) - 1);
		return ERR_INVALID;
	}
	if (!json_is_array(tags)) {
		snprintf(why, whylen, "advertise_tags must be an array of tag:NAME strings");
		return ERR_INVALID;
	}
	if (!json_is_boolean(json_object_get(eff, "accept_dns"))) {
		snprintf(why, whylen, "accept_dns must be true or false");
		return ERR_INVALID;
	}
	json_array_foreach(tags, i, t) {
		const char *s = json_string_value(t);

		if (s == NULL || strncmp(s, "tag:", 4) != 0 || s[4] == 0 || strchr(s, ',') ||
		    strlen(csv) + strlen(s) + 2 > sizeof(csv)) {
			snprintf(why, whylen, "--advertise-tags: %s is not a tag (tags look like tag:NAME)",
			    s ? s : "(not a string)");
			return ERR_INVALID;
		}
		if (i)
			strcat(csv, ",");
		strcat(csv, s);
	}
	pthread_mutex_lock(&a->mu);
	a->rprefs = rp;
	if (*host) {
		str_copy(a->hostname, host, sizeof(a->hostname));
		a->hostname_set = true;
	} else if (a->hostname_set) {
		a->hostname[0] = 0;	/* back to the system's name */
		a->hostname_set = false;
	}
	str_copy(a->adv_tags, csv, sizeof(a->adv_tags));
	pthread_mutex_unlock(&a->mu);
	a->rprefs_loaded = true;
	agent_routes_prefs_save(a);
	/* MagicDNS: takes effect at once (the OS is pointed at the resolver or back) */
	agent_dns_set_accept(a, json_is_true(json_object_get(eff, "accept_dns")));
	agent_prefs_save(a);
	return 0;
}

/* Registers with url and starts the map stream (ctl_mu held, released).
 * login: without an auth key, a machine that must log in gets the login
 * URL back (agent_login.c); force: log in again although still valid. */
static json_t *
connect_locked(struct agent *a, const char *url, const char *authkey, bool login, bool force)
{
	char why[1024], hn[NAME_MAX_LEN];
	const char *host;
	struct control *c;
	json_t *node = NULL, *resp;
	struct buf b;
	struct timespec ts;
	int r;

	if (a->hostname[0])
		host = a->hostname;
	else {
		if (gethostname(hn, sizeof(hn)) != 0)
			str_copy(hn, "node", sizeof(hn));
		hn[sizeof(hn) - 1] = 0;
		host = hn;
	}
	if (login && (authkey == NULL || *authkey == 0)) {
		json_t *lr = agent_login_begin(a, url, host, force);

		if (lr) {
			pthread_mutex_unlock(&a->ctl_mu);
			return lr;
		}
	}
	if (a->ctl)
		agent_stop_control(a);
	if (strcmp(url, a->login_server) != 0) {	/* another network's servers */
		pthread_mutex_lock(&a->mu);
		agent_forget_learned_locked(a);
		pthread_mutex_unlock(&a->mu);
	}
	if ((c = make_control(a, url)) == NULL) {
		pthread_mutex_unlock(&a->ctl_mu);
		return agent_reply_err("out of memory");
	}
	r = control_register(c, authkey, host, &node, why, sizeof(why));
	if (r != 0) {
		control_free(c);
		pthread_mutex_lock(&a->mu);
		str_copy(a->control_err, why, sizeof(a->control_err));
		pthread_mutex_unlock(&a->mu);
		pthread_mutex_unlock(&a->ctl_mu);
		log_warn("msg=\"login failed\" why=\"%s\"", why);
		if (authkey == NULL && (r == ERR_UNAUTHORIZED || r == ERR_EXPIRED))
			return agent_reply_err("%s\nRe-authenticate with: wiremesh up --authkey KEY", why);
		return agent_reply_err("%s", why);
	}
	str_copy(a->login_server, url, sizeof(a->login_server));
	if (!a->hostname[0])
		str_copy(a->hostname, host, sizeof(a->hostname));
	a->want_up = true;
	a->logged_in = true;
	agent_prefs_save(a);
	pthread_mutex_lock(&a->mu);
	a->needs_login = false;
	a->control_err[0] = 0;
	a->ctl = c;
	agent_apply_learned_locked(a, c);	/* a map may have come meanwhile */
	pthread_mutex_unlock(&a->mu);
	if (control_start(c, 0) != 0) {
		pthread_mutex_unlock(&a->ctl_mu);
		json_decref(node);
		return agent_reply_err("cannot start the control client");
	}
	pthread_mutex_unlock(&a->ctl_mu);
	/* Wait for the first netmap and the home relay. */
	agent_timespec_in(&ts, 10000);
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
			(void)!buf_printf(&b, "Logged in to %s as %s (%s), %zu peer%s\n", url,
			    a->self_name, v4, a->npeers, a->npeers == 1 ? "" : "s");
		else
			(void)!buf_printf(&b, "Registered with %s, but no netmap yet: %s\n", url,
			    a->control_err[0] ? a->control_err : "waiting for the map stream");
	}
	health_locked(a, &b);
	resp = agent_reply_ok(buf_cstr(&b), json_pack("{s:o, s:b, s:s}", "node", node,
	    "netmap", a->have_netmap, "login_server", url));
	pthread_mutex_unlock(&a->mu);
	buf_cleanup(&b);
	return resp;
}

json_t *
agent_cmd_up(struct agent *a, json_t *req)
{
	const char *url = json_string_value(json_object_get(req, "login_server"));
	const char *authkey = json_string_value(json_object_get(req, "authkey"));
	char why[2048];
	json_t *eff;
	int r;

	pthread_mutex_lock(&a->ctl_mu);
	a->user_acted = true;
	if (url == NULL || *url == 0)
		url = a->login_server[0] ? a->login_server : NULL;
	if (url == NULL) {
		pthread_mutex_unlock(&a->ctl_mu);
		return agent_reply_err("--login-server is required the first time");
	}
	if (!urls_ok(url)) {
		pthread_mutex_unlock(&a->ctl_mu);
		return agent_reply_err("--login-server must be an https:// or http:// URL, or "
		    "several separated by commas (replicas of one network), 511 characters at most");
	}
	if ((eff = prefs_merge(a, req, true, why, sizeof(why))) == NULL) {
		pthread_mutex_unlock(&a->ctl_mu);
		return agent_reply_err("%s", why);
	}
	r = prefs_apply(a, eff, why, sizeof(why));
	json_decref(eff);
	if (r != 0) {
		pthread_mutex_unlock(&a->ctl_mu);
		return agent_reply_err("%s", why);
	}
	return connect_locked(a, url, authkey, true,
	    json_is_true(json_object_get(req, "force_reauth")));
}

json_t *
agent_cmd_set(struct agent *a, json_t *req)
{
	char why[2048];
	json_t *eff;
	int r;

	json_t *prev, *resp;

	pthread_mutex_lock(&a->ctl_mu);
	if ((eff = prefs_merge(a, req, false, why, sizeof(why))) == NULL) {
		pthread_mutex_unlock(&a->ctl_mu);
		return agent_reply_err("%s", why);
	}
	pthread_mutex_lock(&a->mu);
	prev = prefs_current_locked(a);
	pthread_mutex_unlock(&a->mu);
	r = prefs_apply(a, eff, why, sizeof(why));
	json_decref(eff);
	if (r != 0) {
		pthread_mutex_unlock(&a->ctl_mu);
		json_decref(prev);
		return agent_reply_err("%s", why);
	}
	if (!a->want_up || !a->logged_in || !a->login_server[0] || a->needs_login) {
		pthread_mutex_unlock(&a->ctl_mu);
		json_decref(prev);
		return agent_reply_ok("Saved; the settings take effect at the next wiremesh up.\n", NULL);
	}
	a->user_acted = true;
	resp = connect_locked(a, a->login_server, NULL, false, false);	/* announce them now */
	if (!json_is_true(json_object_get(resp, "ok")) && prev) {
		/* Refused (a tag the policy does not grant, ...): keep the node
		 * connected with the settings it had, and say so. */
		const char *e = json_string_value(json_object_get(resp, "error"));
		char msg[2200];

		snprintf(msg, sizeof(msg), "%s\nThe settings were not changed.", e ? e : "refused");
		pthread_mutex_lock(&a->ctl_mu);
		if (prefs_apply(a, prev, why, sizeof(why)) == 0)
			json_decref(connect_locked(a, a->login_server, NULL, false, false));
		else
			pthread_mutex_unlock(&a->ctl_mu);
		json_decref(resp);
		resp = agent_reply_err("%s", msg);
	}
	json_decref(prev);
	return resp;
}

json_t *
agent_cmd_down(struct agent *a)
{
	pthread_mutex_lock(&a->ctl_mu);
	a->user_acted = true;
	a->want_up = false;
	if (a->ctl)
		agent_stop_control(a);
	agent_prefs_save(a);
	pthread_mutex_unlock(&a->ctl_mu);
	clear_netmap(a);
	agent_dns_down(a);
	return agent_reply_ok("Stopped: disconnected from the control server and the relays "
	    "(still logged in: wiremesh up reconnects).\n", NULL);
}

/* Expires the node on the server (an ephemeral node is deleted) and
 * forgets the login: the next up needs an auth key. */
json_t *
agent_cmd_logout(struct agent *a)
{
	char why[1024] = "";
	struct control *c;
	int r = 0;

	pthread_mutex_lock(&a->ctl_mu);
	a->user_acted = true;
	if (!a->logged_in || !a->login_server[0]) {
		pthread_mutex_unlock(&a->ctl_mu);
		return agent_reply_err("not logged in");
	}
	a->want_up = false;
	if (a->ctl)
		agent_stop_control(a);
	if ((c = make_control(a, a->login_server)) == NULL)
		r = ERR_NOMEM;
	else
		r = control_logout(c, why, sizeof(why));
	control_free(c);
	if (r != 0 && r != ERR_UNAUTHORIZED && r != ERR_EXPIRED) {
		/* Unreachable: stay logged in so that a later logout can expire the key. */
		agent_prefs_save(a);
		pthread_mutex_unlock(&a->ctl_mu);
		clear_netmap(a);
		return agent_reply_err("cannot log out at %s: %s (the node is stopped; run wiremesh "
		    "logout again when the server is reachable)", a->login_server, why);
	}
	a->logged_in = false;
	pthread_mutex_lock(&a->mu);
	a->needs_login = false;
	a->control_err[0] = 0;
	pthread_mutex_unlock(&a->mu);
	agent_prefs_save(a);
	pthread_mutex_unlock(&a->ctl_mu);
	clear_netmap(a);
	agent_dns_down(a);
	log_info("msg=\"logged out\" url=%s", a->login_server);
	return agent_reply_ok("Logged out: the node key is expired on the server; wiremesh up "
	    "needs an auth key again.\n", NULL);
}

/* On start: reconnect a node that was up (the server needs the new disco
 * key, so register again, retrying while it is unreachable). */
void *
agent_resume_main(void *arg)
{
	struct agent *a = arg;
	int64_t backoff = CONTROL_BACKOFF_MIN_MS;

	while (!atomic_load(&a->stop)) {
		char why[1024];
		json_t *node = NULL;
		struct control *c;
		int r;

		pthread_mutex_lock(&a->ctl_mu);
		if (!a->want_up || !a->logged_in || a->ctl || a->user_acted) {	/* an up/down won */
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
			agent_apply_learned_locked(a, c);
			pthread_mutex_unlock(&a->mu);
			pthread_mutex_unlock(&a->ctl_mu);
			log_info("msg=\"reconnected to control server\" url=%s", a->login_server);
			return NULL;
		}
		control_free(c);
		pthread_mutex_lock(&a->mu);
		str_copy(a->control_err, why, sizeof(a->control_err));
		/* Refused (deleted, expired): only a new auth key helps. */
		a->needs_login = r == ERR_UNAUTHORIZED || r == ERR_EXPIRED || r == ERR_FORBIDDEN ||
		    r == ERR_USED;
		pthread_mutex_unlock(&a->mu);
		pthread_mutex_unlock(&a->ctl_mu);
		if (a->needs_login) {
			log_warn("msg=\"the control server refused the login; run wiremesh up with an "
			    "auth key\" why=\"%s\"", why);
			return NULL;
		}
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

/* The "# Health: " lines written so far, as a JSON array of their text. */
static json_t *
health_json(struct buf *b)
{
	static const char tag[] = "# Health: ";
	json_t *arr = json_array();
	char *text = buf_cstr(b), *line, *save = NULL, *copy;

	if (text == NULL || (copy = strdup(text)) == NULL)
		return arr;
	for (line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save))
		if (strncmp(line, tag, sizeof(tag) - 1) == 0)
			json_array_append_new(arr, json_string(line + sizeof(tag) - 1));
	free(copy);
	return arr;
}

/* Does a filter's Srcs list hold one of the peer's addresses? */
static bool
nets_have(json_t *nets, const struct ip_addr *a4, const struct ip_addr *a6)
{
	size_t i;
	json_t *v;

	json_array_foreach(nets, i, v) {
		struct ip_prefix pf;

		if (!json_is_string(v) || prefix_parse(json_string_value(v), true, &pf) != 0)
			continue;
		if ((a4->family && prefix_contains(&pf, a4)) || (a6->family && prefix_contains(&pf, a6)))
			return true;
	}
	return false;
}

static bool
srcs_have(json_t *srcs, const struct apeer *p)
{
	size_t i;
	json_t *v;

	json_array_foreach(srcs, i, v) {
		const char *s = json_string_value(v);
		struct ip_prefix pf;

		if (s == NULL)
			continue;
		if (strcmp(s, "*") == 0)
			return true;
		if (prefix_parse(s, true, &pf) != 0)
			continue;
		if ((p->addr4.family && prefix_contains(&pf, &p->addr4)) ||
		    (p->addr6.family && prefix_contains(&pf, &p->addr6)))
			return true;
	}
	return false;
}

/*
 * The capabilities app grants give peer p on this node: every CapGrant entry
 * of the filter whose sources hold p's address and whose destinations hold
 * this node's own address, merged by capability name
 * (values appended in filter order). {} when none.
 */
static json_t *
peer_caps(json_t *filter, const struct apeer *p, const struct ip_addr *s4,
	  const struct ip_addr *s6)
{
	json_t *out = json_object(), *e, *g, *vals, *v;
	const char *name;
	size_t i, k, q;

	if (out == NULL)
		return NULL;
	json_array_foreach(filter, i, e) {
		if (!srcs_have(json_object_get(e, "Srcs"), p))
			continue;
		json_array_foreach(json_object_get(e, "CapGrant"), k, g) {
			if (!nets_have(json_object_get(g, "Dsts"), s4, s6))
				continue;
			json_object_foreach(json_object_get(g, "CapMap"), name, vals) {
				json_t *have = json_object_get(out, name);

				if (have == NULL) {
					have = json_array();
					if (have == NULL || json_object_set_new(out, name, have) != 0)
						continue;
				}
				json_array_foreach(vals, q, v)
					json_array_append(have, v);
			}
		}
	}
	return out;
}

json_t *
agent_cmd_status(struct agent *a)
{
	struct wg_device_info *info = NULL;
	json_t *peers = json_array(), *data, *self, *health, *fj;
	char v4[ADDR_STR_MAX], v6[ADDR_STR_MAX], rc[16], fq[DNSNAME_MAX];
	int64_t now_s = time_now_s(), now_ms = time_mono_ms();
	struct buf b;
	const char *state;
	bool relay_up = false;

	if (wg_device_get_info(a->dev, &info) != 0)
		info = NULL;
	buf_init(&b, 1 << 22);
	pthread_mutex_lock(&a->mu);
	if (a->have_netmap)
		state = "Running";
	else if (!a->logged_in || a->needs_login)
		state = "NeedsLogin";
	else if (!a->want_up)
		state = "Stopped";
	else
		state = "Starting";
	for (size_t i = 0; i < a->nderps; i++)
		if (a->derps[i].region == a->home_region)
			relay_up = derp_client_connected(a->derps[i].c);
	if (!a->logged_in) {
		if (a->control_err[0])
			(void)!buf_printf(&b, "# Health: login failed: %s\n", a->control_err);
		(void)!buf_printf(&b, "Logged out. Run: wiremesh up --login-server %s --authkey KEY\n",
		    a->login_server[0] ? a->login_server : "URL");
	} else if (a->needs_login && !a->have_netmap) {
		(void)!buf_printf(&b, "# Health: %s\n", a->control_err);
		(void)!buf_printf(&b, "Logged out by the control server (the node key expired or "
		    "the node was deleted). Re-authenticate: wiremesh up --authkey KEY\n");
	} else if (!a->want_up) {
		if (a->control_err[0])
			(void)!buf_printf(&b, "# Health: login failed: %s\n", a->control_err);
		(void)!buf_printf(&b, "Stopped. Run: wiremesh up (reconnects to %s; still logged in)\n",
		    a->login_server);
	} else if (!a->ctl && a->control_err[0]) {
		(void)!buf_printf(&b, "# Health: cannot log in to %s: %s (retrying)\n",
		    a->login_server, a->control_err);
	}
	health_locked(a, &b);
	health = health_json(&b);
	v4[0] = v6[0] = 0;
	if (a->self4.family)
		addr_fmt(v4, &a->self4);
	if (a->self6.family)
		addr_fmt(v6, &a->self6);
	self = json_pack("{s:I, s:s, s:s, s:s, s:s, s:i, s:s}", "id", (json_int_t)a->self_id,
	    "name", a->self_name, "user", a->self_user, "ipv4", v4, "ipv6", v6,
	    "home_derp", a->home_region, "home_derp_code",
	    a->home_region ? agent_region_code_locked(a, a->home_region, rc) : "");
	if (self)
		json_object_set_new(self, "dns_name",
		    json_string(agent_dns_fqdn_locked(a, a->self_name, fq)));
	if (a->have_self)
		(void)!buf_printf(&b, "%-16s %-20s %-16s %s\n", v4[0] ? v4 : "-",
		    agent_dns_fqdn_locked(a, a->self_name, fq), a->self_user, "-");
	pthread_rwlock_rdlock(&a->flock);
	fj = a->filter_json ? json_loads(a->filter_json, 0, NULL) : NULL;
	pthread_rwlock_unlock(&a->flock);
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
		} else if ((hs != 0 && now_s - hs < 180) ||
			   (p->last_derp_disco_ms && now_ms - p->last_derp_disco_ms < 30000)) {
			str_copy(kind, "relay", sizeof(kind));
			snprintf(path, sizeof(path), "relay \"%s\"",
			    agent_region_code_locked(a, p->home_derp > 0 ? p->home_derp : a->home_region, rc));
		} else {
			str_copy(kind, "idle", sizeof(kind));
			str_copy(path, "idle", sizeof(path));
		}
		(void)!buf_printf(&b, "%-16s %-20s %-16s %s\n", p4[0] ? p4 : "-",
		    agent_dns_fqdn_locked(a, p->name, fq), p->user, path);
		{
			json_t *po = json_pack("{s:I, s:s, s:s, s:s, s:s, s:s, s:s, s:s, "
			    "s:b, s:i, s:I, s:I, s:I, s:i}",
			    "id", (json_int_t)p->id, "name", p->name, "user", p->user, "ipv4", p4,
			    "ipv6", p6, "path", path, "path_kind", kind, "endpoint", ep,
			    "online", p->online && !p->expired, "home_derp", p->home_derp,
			    "last_handshake", (json_int_t)hs, "rx_bytes", (json_int_t)rx,
			    "tx_bytes", (json_int_t)tx, "rtt_ms", p->direct ? p->rtt_ms : -1);
			json_t *ro = agent_routes_peer_json_locked(a, p);

			if (po)
				json_object_set_new(po, "dns_name",
				    json_string(agent_dns_fqdn_locked(a, p->name, fq)));
			if (po && ro)
				json_object_update(po, ro);
			if (po)
				json_object_set_new(po, "cap_map", peer_caps(fj, p, &a->self4, &a->self6));
			json_decref(ro);
			json_array_append_new(peers, po);
		}
	}
	json_decref(fj);
	data = json_pack("{s:s, s:o, s:o, s:o, s:{s:s, s:b, s:s}, s:{s:i, s:b}}",
	    "backend_state", state, "health", health, "self", self, "peers", peers,
	    "control", "url", a->login_server, "connected", a->control_connected,
	    "error", a->control_err, "derp", "home", a->home_region, "connected", relay_up);
	if (data && a->ctl) {
		/* every control server the agent may use, in the order it tries
		 * them: the --login-server list, then the replicas the map named */
		char (*u)[CONTROL_URL_MAX] = malloc(2 * AGENT_LEARNED_MAX * sizeof(*u));
		json_t *arr = json_array();
		size_t n = 0, cur = 0;

		if (u != NULL)
			n = control_urls(a->ctl, u, 2 * AGENT_LEARNED_MAX, &cur);
		for (size_t i = 0; arr && i < n; i++)
			json_array_append_new(arr, json_string(u[i]));
		json_object_set_new(json_object_get(data, "control"), "known_urls", arr);
		if (n > 0)
			json_object_set_new(json_object_get(data, "control"), "url_in_use",
			    json_string(u[cur]));
		if (control_keepalive_ms(a->ctl) > 0)	/* as measured on the stream */
			json_object_set_new(json_object_get(data, "control"), "keepalive_ms",
			    json_integer(control_keepalive_ms(a->ctl)));
		free(u);
	}
	if (data)
		agent_routes_status_locked(a, &b, self, data);
	pthread_mutex_unlock(&a->mu);
	wg_device_info_free(info);
	{
		json_t *r = agent_reply_ok(buf_cstr(&b), data);

		buf_cleanup(&b);
		return r;
	}
}

json_t *
agent_cmd_ip(struct agent *a, json_t *req)
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
		return agent_reply_err("no addresses yet: run wiremesh up");
	if (fam == NULL || strcmp(fam, "4") == 0)
		if (v4[0])
			snprintf(text + strlen(text), sizeof(text) - strlen(text), "%s\n", v4);
	if (fam == NULL || strcmp(fam, "6") == 0)
		if (v6[0])
			snprintf(text + strlen(text), sizeof(text) - strlen(text), "%s\n", v6);
	return agent_reply_ok(text, json_pack("{s:s, s:s}", "ipv4", v4, "ipv6", v6));
}

static struct apeer *
find_peer_arg_locked(struct agent *a, const char *s)
{
	struct ip_addr ip;
	bool isip = addr_parse(s, &ip) == 0;
	char label[NAME_MAX_LEN];

	if (agent_dns_strip_locked(a, s, label))	/* NAME.base_domain */
		s = label;

	for (size_t i = 0; i < a->npeers; i++) {
		struct apeer *p = a->peers[i];

		if (strcmp(p->name, s) == 0)
			return p;
		if (isip && (addr_equal(&ip, &p->addr4) || addr_equal(&ip, &p->addr6)))
			return p;
	}
	return NULL;
}

json_t *
agent_cmd_ping(struct agent *a, json_t *req)
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
		return agent_reply_err("ping needs a peer name or address");
	random_bytes(m.txid, DISCO_TXID_LEN);
	memcpy(m.node_key, a->cfg.node_pub, KEY_LEN);
	pthread_mutex_lock(&a->mu);
	if ((p = find_peer_arg_locked(a, who)) == NULL) {
		pthread_mutex_unlock(&a->mu);
		return agent_reply_err("no peer named %s", who);
	}
	if (key_is_zero(p->disco_key)) {
		pthread_mutex_unlock(&a->mu);
		return agent_reply_err("%s has no disco key (not connected yet)", who);
	}
	for (int i = 0; i < MAX_WAITERS; i++)
		if (!a->waiters[i].active) {
			w = &a->waiters[i];
			break;
		}
	if (w == NULL || agent_seal_to(a, p->disco_key, &m, pkt, &len) != 0) {
		pthread_mutex_unlock(&a->mu);
		return agent_reply_err("too many pings in flight");
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
	if (!udp && agent_derp_send_locked(a, region, key, pkt, len) != 0) {
		w->active = false;
		pthread_mutex_unlock(&a->mu);
		return agent_reply_err("cannot send to %s: no direct path and no DERP relay", name);
	}
	pthread_mutex_unlock(&a->mu);
	if (udp && wg_device_send_raw(a->dev, &to, pkt, len) != 0)
		log_debug("msg=\"ping send failed\"");
	agent_timespec_in(&ts, AGENT_PING_TIMEOUT_MS);
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
			snprintf(via, sizeof(via), "DERP(%s)", agent_region_code_locked(a, region, rc));
	}
	w->active = false;
	pthread_mutex_unlock(&a->mu);
	if (!done)
		return json_pack("{s:b, s:s, s:{s:s, s:s, s:b}}", "ok", 0, "error",
		    "timeout waiting for pong", "data", "peer", name, "ip", ip, "timeout", 1);
	snprintf(text, sizeof(text), "pong from %s (%s) via %s in %dms\n", name, ip, via, rtt);
	return agent_reply_ok(text, json_pack("{s:s, s:s, s:s, s:b, s:i}", "peer", name, "ip", ip,
	    "via", via, "direct", via_udp, "latency_ms", rtt));
}

json_t *
agent_cmd_netcheck(struct agent *a)
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
		return agent_reply_err("no DERP map yet: run wiremesh up first");
	}
	gen = a->nc_gen;
	a->nc_want = true;
	pthread_cond_broadcast(&a->cond);
	agent_timespec_in(&ts, 10000);
	while (a->nc_gen == gen)
		if (pthread_cond_timedwait(&a->cond, &a->mu, &ts) != 0)
			break;
	if (!a->have_report || a->derp_map_json == NULL) {
		pthread_mutex_unlock(&a->mu);
		return agent_reply_err("netcheck did not finish");
	}
	rep = a->report;
	mj = strdup(a->derp_map_json);
	pthread_mutex_unlock(&a->mu);
	if (mj == NULL || derp_map_parse(mj, strlen(mj), &map, why, sizeof(why)) != 0) {
		free(mj);
		return agent_reply_err("bad DERP map");
	}
	free(mj);
	buf_init(&b, 1 << 16);
	buf_init(&bj, 1 << 16);
	if (netcheck_format(&rep, map, &b) != 0 || netcheck_format_json(&rep, map, &bj) != 0 ||
	    buf_cstr(&b) == NULL || buf_cstr(&bj) == NULL)
		resp = agent_reply_err("cannot format the report");
	else if ((data = json_loads(buf_cstr(&bj), 0, NULL)) == NULL)
		resp = agent_reply_err("cannot format the report");
	else
		resp = agent_reply_ok(buf_cstr(&b), data);
	buf_cleanup(&b);
	buf_cleanup(&bj);
	derp_map_free(map);
	return resp;
}

#define STAT_FIELD(o, st, f) json_object_set_new(o, #f, json_integer((json_int_t)(st).f))

json_t *
agent_cmd_debug(struct agent *a)
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
	/* the rules as the server sent them (grants' CapGrant and Via entries too) */
	pthread_rwlock_rdlock(&a->flock);
	json_object_set_new(flt, "rules", a->filter_json ? json_loads(a->filter_json, 0, NULL) :
	    json_array());
	pthread_rwlock_unlock(&a->flock);
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
	agent = json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}",
	    "netmaps", (json_int_t)a->netmaps, "deltas", (json_int_t)a->deltas,
	    "inbox_dropped", (json_int_t)atomic_load(&a->c_inbox_drop),
	    "disco_bad", (json_int_t)atomic_load(&a->c_disco_bad),
	    "disco_unknown_sender", (json_int_t)atomic_load(&a->c_disco_unknown),
	    "disco_via_tunnel", (json_int_t)atomic_load(&a->c_disco_via_tunnel),
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
		json_t *r = agent_reply_ok(text ? text : "", data);

		free(text);
		return r;
	}
}
