// SPDX-License-Identifier: MIT
/*
 * The agent's side of subnet routes and exit nodes (client-agent/routes.h
 * has the rules): which allowed IPs each WireGuard peer gets, the host's
 * routes and forwarding after every netmap change, the route preferences
 * (routes.json in the state directory, 0600) and the status lines.
 */
#include "client-agent/agent_int.h"

/* Is p the peer `up --exit-node` named (by name or tailnet address)? */
static bool
is_exit_choice_locked(struct agent *a, const struct apeer *p)
{
	const char *s = a->rprefs.exit_node;
	struct ip_addr ip;

	if (s[0] == 0)
		return false;
	if (strcmp(p->name, s) == 0)
		return true;
	return addr_parse(s, &ip) == 0 &&
	       (addr_equal(&ip, &p->addr4) || addr_equal(&ip, &p->addr6));
}

static size_t
peer_addrs(const struct apeer *p, struct ip_addr out[static 2])
{
	size_t n = 0;

	if (p->addr4.family)
		out[n++] = p->addr4;
	if (p->addr6.family)
		out[n++] = p->addr6;
	return n;
}

/* Is the router with these addresses (k of v) a peer that is online? np is
 * the peer being updated (not yet in the table). */
static bool
via_router_online_locked(struct agent *a, const struct apeer *np, const struct routes_via *v,
			 size_t k)
{
	struct ip_addr addrs[2];
	size_t na;

	if (np != NULL && (na = peer_addrs(np, addrs)) > 0 && routes_via_is_router(v, k, addrs, na))
		return np->online && !np->expired;
	for (size_t i = 0; i < a->npeers; i++) {
		const struct apeer *p = a->peers[i];

		if (np != NULL && p->id == np->id)
			continue;
		if ((na = peer_addrs(p, addrs)) > 0 && routes_via_is_router(v, k, addrs, na))
			return p->online && !p->expired;
	}
	return false;
}

/* Keeps each via destination on one router: the chosen one while it is
 * online, else the first listed router that is online, else the first. */
static void
via_choose_locked(struct agent *a, const struct apeer *np)
{
	for (size_t j = 0; j < a->nvia; j++) {
		struct routes_via *v = &a->via[j];

		if (v->internet || v->nr == 0)
			continue;
		if (v->chosen >= 0 && via_router_online_locked(a, np, v, (size_t)v->chosen))
			continue;
		v->chosen = -1;
		for (size_t k = 0; k < v->nr && v->chosen < 0; k++)
			if (via_router_online_locked(a, np, v, k))
				v->chosen = (int)k;
		if (v->chosen < 0)
			v->chosen = 0;
	}
}

void
agent_routes_peer_locked(struct agent *a, struct apeer *np)
{
	struct ip_addr addrs[2];
	struct ip_prefix tmp[MAX_ALLOWED];
	size_t na = peer_addrs(np, addrs), nt;

	via_choose_locked(a, np);
	nt = routes_via_apply(np->allowed, np->nallowed, a->via, a->nvia, addrs, na, tmp,
	    MAX_ALLOWED);
	np->nwg_allowed = routes_peer_allowed(tmp, nt, addrs, na,
	    a->rprefs.accept_routes, is_exit_choice_locked(a, np), np->wg_allowed);
}

/* Via directives from a new packet filter; true when they changed. */
bool
agent_routes_via_set(struct agent *a, json_t *filter)
{
	struct routes_via *v = calloc(ROUTES_MAX_VIA, sizeof(*v));
	size_t n;
	bool changed;

	if (v == NULL)
		return false;
	n = routes_via_from_filter(filter, v, ROUTES_MAX_VIA);
	pthread_mutex_lock(&a->mu);
	changed = n != a->nvia;
	for (size_t j = 0; j < n && !changed; j++) {
		v[j].chosen = a->via[j].chosen;
		changed = memcmp(&v[j], &a->via[j], sizeof(v[j])) != 0;
	}
	if (changed) {
		for (size_t j = 0; j < n; j++)
			v[j].chosen = -1;
		memcpy(a->via, v, n * sizeof(*v));
		a->nvia = n;
	}
	pthread_mutex_unlock(&a->mu);
	free(v);
	return changed;
}

void
agent_routes_sync(struct agent *a)
{
	struct routes_want *w = calloc(1, sizeof(*w));
	bool tun;
	int r;

	if (w == NULL)
		return;
	pthread_mutex_lock(&a->mu);
	for (size_t i = 0; i < a->npeers; i++) {
		struct apeer *p = a->peers[i];
		struct ip_addr addrs[2];
		size_t na = peer_addrs(p, addrs);

		if (!p->expired)
			routes_want_add_peer(w, p->wg_allowed, p->nwg_allowed, addrs, na);
	}
	w->allow_lan = a->rprefs.exit_allow_lan;
	for (size_t i = 0; i < a->rprefs.nadvertise; i++) {
		if (a->rprefs.advertise[i].addr.family == AF_INET)
			w->forward4 = true;
		else
			w->forward6 = true;
	}
	if (a->rprefs.advertise_exit)
		w->forward4 = w->forward6 = true;
	tun = a->tun_fd >= 0;
	pthread_mutex_unlock(&a->mu);
	if (!tun) {
		free(w);
		return;
	}
	if (a->ros.ops.run == NULL)
		routes_os_init(&a->ros, a->ifname);
	r = routes_os_apply(&a->ros, w);
	pthread_mutex_lock(&a->mu);
	str_copy(a->route_err, r != 0 ? a->ros.err : "", sizeof(a->route_err));
	pthread_mutex_unlock(&a->mu);
	free(w);
}

void
agent_routes_reset(struct agent *a)
{
	if (a->ros.ops.run != NULL)
		routes_os_reset(&a->ros);
	pthread_mutex_lock(&a->mu);
	a->route_err[0] = 0;
	pthread_mutex_unlock(&a->mu);
}

/* Going down or exiting: a router tells the server it advertises nothing,
 * so that peers move to another router at once (approvals stay). */
void
agent_routes_withdraw(struct agent *a, struct control *c)
{
	char why[512];
	bool adv;

	pthread_mutex_lock(&a->mu);
	adv = a->rprefs.nadvertise > 0 || a->rprefs.advertise_exit;
	pthread_mutex_unlock(&a->mu);
	if (!adv)
		return;
	if (control_withdraw_routes(c, 2, why, sizeof(why)) != 0)
		log_warn("msg=\"cannot withdraw routes before going down\" why=\"%s\"", why);
	else
		log_info("msg=\"routes withdrawn\"");
}

/* ---- preferences ---- */

void
agent_routes_prefs_save(struct agent *a)
{
	char path[1024], tmp[1100];
	json_t *j;
	int fd;

	pthread_mutex_lock(&a->mu);
	j = routes_prefs_to_json(&a->rprefs);
	pthread_mutex_unlock(&a->mu);
	snprintf(path, sizeof(path), "%s/routes.json", a->cfg.state_dir);
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	if (j == NULL)
		return;
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0 || json_dumpfd(j, fd, JSON_COMPACT) != 0 || fsync(fd) != 0 ||
	    rename(tmp, path) != 0)
		log_warn("msg=\"cannot save route prefs\" path=%s err=\"%s\"", path, strerror(errno));
	if (fd >= 0)
		close(fd);
	json_decref(j);
}

void
agent_routes_prefs_load(struct agent *a)
{
	struct routes_prefs p;
	char path[1024], why[256];
	json_t *j;

	snprintf(path, sizeof(path), "%s/routes.json", a->cfg.state_dir);
	if ((j = json_load_file(path, 0, NULL)) == NULL)
		return;
	if (routes_prefs_from_json(j, &p, why, sizeof(why)) != 0)
		log_warn("msg=\"ignoring route prefs\" path=%s why=\"%s\"", path, why);
	else {
		pthread_mutex_lock(&a->mu);
		a->rprefs = p;
		pthread_mutex_unlock(&a->mu);
	}
	json_decref(j);
}

/* ---- status ---- */

static json_t *
prefixes_json(const struct ip_prefix *p, size_t n)
{
	json_t *arr = json_array();
	char s[ADDR_STR_MAX];

	for (size_t i = 0; arr && i < n; i++) {
		prefix_fmt(s, &p[i]);
		json_array_append_new(arr, json_string(s));
	}
	return arr;
}

static void
prefixes_text(struct buf *b, const struct ip_prefix *p, size_t n)
{
	char s[ADDR_STR_MAX];

	for (size_t i = 0; i < n; i++) {
		prefix_fmt(s, &p[i]);
		(void)!buf_printf(b, "%s%s", i ? "," : "", s);
	}
}

static bool
uses_exit(const struct apeer *p)
{
	for (size_t i = 0; i < p->nwg_allowed; i++)
		if (routes_is_exit(&p->wg_allowed[i]))
			return true;
	return false;
}

json_t *
agent_routes_peer_json_locked(struct agent *a, const struct apeer *p)
{
	return json_pack("{s:o, s:b, s:b, s:b}", "primary_routes",
	    prefixes_json(p->primary, p->nprimary), "exit_node", p->exit_node,
	    "exit_node_in_use", is_exit_choice_locked(a, p) && uses_exit(p),
	    "routes_accepted", a->rprefs.accept_routes && p->nprimary > 0);
}

/*
 * Text lines and JSON for `status`:
 *   # Advertising: 198.51.100.0/24, exit node
 *   # Routes: r1 offers 192.0.2.240/28 (accepted)
 *   # Routes: r2 offers an exit node
 *   # Exit node: r2 (in use)
 * data.self gets "advertised_routes" (and "advertise_exit_node"); data gets
 * "accept_routes" and "exit_node" {name, id, in_use, allow_lan_access, error}.
 */
void
agent_routes_status_locked(struct agent *a, struct buf *b, json_t *self, json_t *data)
{
	const struct routes_prefs *rp = &a->rprefs;
	const struct apeer *exit = NULL;
	const char *exit_err = "";

	json_object_set_new(self, "advertised_routes", prefixes_json(rp->advertise, rp->nadvertise));
	json_object_set_new(self, "advertise_exit_node", json_boolean(rp->advertise_exit));
	json_object_set_new(data, "accept_routes", json_boolean(rp->accept_routes));
	if (rp->nadvertise || rp->advertise_exit) {
		(void)!buf_printf(b, "# Advertising: ");
		prefixes_text(b, rp->advertise, rp->nadvertise);
		(void)!buf_printf(b, "%s%s\n", rp->nadvertise && rp->advertise_exit ? ", " : "",
		    rp->advertise_exit ? "exit node" : "");
	}
	for (size_t i = 0; i < a->npeers; i++) {
		const struct apeer *p = a->peers[i];

		if (is_exit_choice_locked(a, p))
			exit = p;
		if (p->nprimary == 0 && !p->exit_node)
			continue;
		(void)!buf_printf(b, "# Routes: %s offers ", p->name);
		prefixes_text(b, p->primary, p->nprimary);
		if (p->nprimary)
			(void)!buf_printf(b, " (%s)", rp->accept_routes ? "accepted" :
			    "not used: run up --accept-routes");
		(void)!buf_printf(b, "%s%s\n", p->nprimary && p->exit_node ? ", " : "",
		    p->exit_node ? "an exit node" : "");
	}
	if (rp->exit_node[0]) {
		if (exit == NULL)
			exit_err = "no such peer";
		else if (!exit->exit_node)
			exit_err = "the peer does not offer an exit node (or it is not approved)";
		else if (!exit->online)
			exit_err = "the exit node is offline";
		if (exit_err[0])
			(void)!buf_printf(b, "# Exit node: %s: %s\n", rp->exit_node, exit_err);
		else
			(void)!buf_printf(b, "# Exit node: %s (in use%s)\n", exit->name,
			    rp->exit_allow_lan ? ", LAN access allowed" : "");
		json_object_set_new(data, "exit_node", json_pack("{s:s, s:I, s:b, s:b, s:s}",
		    "name", exit ? exit->name : rp->exit_node,
		    "id", (json_int_t)(exit ? exit->id : 0),
		    "in_use", exit != NULL && uses_exit(exit),
		    "allow_lan_access", rp->exit_allow_lan, "error", exit_err));
	} else {
		json_object_set_new(data, "exit_node", json_null());
	}
}
