// SPDX-License-Identifier: MIT
/*
 * Subnet routes and exit nodes: which allowed IPs a peer gets, and the
 * host's routes, rules, forwarding and masquerading (see routes.h).
 * Commands run through `ip` and `nft` (argv only, no shell).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "client-agent/routes.h"
#include "common/log.h"
#include "common/proc.h"
#include "common/util.h"

/* ---- preferences ---- */

bool
routes_is_exit(const struct ip_prefix *p)
{
	return p->bits == 0 && (p->addr.family == AF_INET || p->addr.family == AF_INET6);
}

int
routes_parse_list(const char *s, struct ip_prefix *out, size_t max, size_t *n, char *why,
		  size_t whylen)
{
	char item[ADDR_STR_MAX + 8];
	const char *p = s;

	*n = 0;
	if (s == NULL)
		return 0;
	while (*p) {
		size_t len = strcspn(p, ",");
		struct ip_prefix pr;

		if (len == 0) {
			p++;
			continue;
		}
		if (len >= sizeof(item)) {
			snprintf(why, whylen, "route \"%.40s...\" is too long", p);
			return ERR_INVALID;
		}
		memcpy(item, p, len);
		item[len] = 0;
		p += len;
		if (*p == ',')
			p++;
		if (strchr(item, '/') == NULL || prefix_parse(item, false, &pr) != 0) {
			snprintf(why, whylen, "\"%s\" is not a CIDR prefix with its host bits clear "
			    "(e.g. 198.51.100.0/24)", item);
			return ERR_INVALID;
		}
		if (routes_is_exit(&pr)) {
			snprintf(why, whylen, "%s: use --advertise-exit-node to offer the default "
			    "route", item);
			return ERR_INVALID;
		}
		for (size_t i = 0; i < *n; i++)
			if (out[i].bits == pr.bits && addr_equal(&out[i].addr, &pr.addr)) {
				snprintf(why, whylen, "route %s is listed twice", item);
				return ERR_INVALID;
			}
		if (*n == max) {
			snprintf(why, whylen, "at most %zu routes can be advertised", max);
			return ERR_INVALID;
		}
		out[(*n)++] = pr;
	}
	return 0;
}

int
routes_prefs_from_json(json_t *o, struct routes_prefs *p, char *why, size_t whylen)
{
	json_t *adv = json_object_get(o, "advertise_routes"), *v;
	const char *exit = json_string_value(json_object_get(o, "exit_node"));
	size_t i;

	memset(p, 0, sizeof(*p));
	if (adv != NULL && !json_is_array(adv)) {
		snprintf(why, whylen, "advertise_routes must be an array of CIDR strings");
		return ERR_INVALID;
	}
	json_array_foreach(adv, i, v) {
		size_t n = 0;

		if (!json_is_string(v)) {
			snprintf(why, whylen, "advertise_routes[%zu] is not a string", i);
			return ERR_INVALID;
		}
		if (p->nadvertise == ROUTES_MAX_ADVERTISED) {
			snprintf(why, whylen, "at most %d routes can be advertised",
			    ROUTES_MAX_ADVERTISED);
			return ERR_INVALID;
		}
		if (routes_parse_list(json_string_value(v), &p->advertise[p->nadvertise], 1, &n, why,
				      whylen) != 0)
			return ERR_INVALID;
		for (size_t k = 0; n == 1 && k < p->nadvertise; k++)
			if (p->advertise[k].bits == p->advertise[p->nadvertise].bits &&
			    addr_equal(&p->advertise[k].addr, &p->advertise[p->nadvertise].addr)) {
				snprintf(why, whylen, "route %s is listed twice", json_string_value(v));
				return ERR_INVALID;
			}
		p->nadvertise += n;
	}
	p->advertise_exit = json_is_true(json_object_get(o, "advertise_exit_node"));
	p->accept_routes = json_is_true(json_object_get(o, "accept_routes"));
	p->exit_allow_lan = json_is_true(json_object_get(o, "exit_node_allow_lan_access"));
	if (exit != NULL) {
		if (strlen(exit) >= sizeof(p->exit_node)) {
			snprintf(why, whylen, "exit node name is too long");
			return ERR_INVALID;
		}
		str_copy(p->exit_node, exit, sizeof(p->exit_node));
	}
	if (p->exit_allow_lan && !p->exit_node[0]) {
		snprintf(why, whylen, "--exit-node-allow-lan-access needs --exit-node");
		return ERR_INVALID;
	}
	return 0;
}

static json_t *
subnets_json(const struct routes_prefs *p)
{
	json_t *a = json_array();
	char s[ADDR_STR_MAX];

	for (size_t i = 0; a && i < p->nadvertise; i++) {
		prefix_fmt(s, &p->advertise[i]);
		json_array_append_new(a, json_string(s));
	}
	return a;
}

json_t *
routes_prefs_to_json(const struct routes_prefs *p)
{
	return json_pack("{s:o, s:b, s:b, s:s, s:b}", "advertise_routes", subnets_json(p),
	    "advertise_exit_node", p->advertise_exit, "accept_routes", p->accept_routes,
	    "exit_node", p->exit_node, "exit_node_allow_lan_access", p->exit_allow_lan);
}

json_t *
routes_advertised_json(const struct routes_prefs *p)
{
	json_t *a = subnets_json(p);

	if (a && p->advertise_exit) {
		json_array_append_new(a, json_string("0.0.0.0/0"));
		json_array_append_new(a, json_string("::/0"));
	}
	return a;
}

/* ---- allowed IPs ---- */

static bool
is_address(const struct ip_prefix *p, const struct ip_addr *addrs, size_t naddrs)
{
	int host = p->addr.family == AF_INET6 ? 128 : 32;

	if (p->bits != host)
		return false;
	for (size_t i = 0; i < naddrs; i++)
		if (addr_equal(&p->addr, &addrs[i]))
			return true;
	return false;
}

size_t
routes_peer_allowed(const struct ip_prefix *allowed, size_t nallowed, const struct ip_addr *addrs,
		    size_t naddrs, bool accept_routes, bool use_as_exit, struct ip_prefix *out)
{
	size_t n = 0;

	for (size_t i = 0; i < nallowed; i++) {
		const struct ip_prefix *p = &allowed[i];

		if (is_address(p, addrs, naddrs) ||
		    (routes_is_exit(p) ? use_as_exit : accept_routes))
			out[n++] = *p;
	}
	return n;
}

static bool
prefix_same(const struct ip_prefix *a, const struct ip_prefix *b)
{
	return a->bits == b->bits && addr_equal(&a->addr, &b->addr);
}

void
routes_want_add_peer(struct routes_want *w, const struct ip_prefix *wg_allowed, size_t n,
		     const struct ip_addr *addrs, size_t naddrs)
{
	for (size_t i = 0; i < n; i++) {
		const struct ip_prefix *p = &wg_allowed[i];
		bool dup = false;

		if (is_address(p, addrs, naddrs))
			continue;
		if (routes_is_exit(p)) {
			if (p->addr.family == AF_INET)
				w->exit4 = true;
			else
				w->exit6 = true;
			continue;
		}
		for (size_t k = 0; k < w->nsubnets && !dup; k++)
			dup = prefix_same(&w->subnets[k], p);
		if (!dup && w->nsubnets < ROUTES_MAX_OS)
			w->subnets[w->nsubnets++] = *p;
	}
}

/* ---- the real host ---- */

static int
real_run(void *ctx, const char *const argv[], char *err, size_t errlen)
{
	(void)ctx;
	return proc_run(argv, err, errlen);
}

static int
real_sysctl_get(void *ctx, const char *path, char *val, size_t len)
{
	FILE *f = fopen(path, "re");
	size_t n;

	(void)ctx;
	if (f == NULL)
		return ERR_IO;
	n = fread(val, 1, len - 1, f);
	fclose(f);
	val[n] = 0;
	val[strcspn(val, "\n")] = 0;
	return 0;
}

static int
real_sysctl_set(void *ctx, const char *path, const char *val)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	size_t len = strlen(val);
	ssize_t w;

	(void)ctx;
	if (fd < 0)
		return ERR_IO;
	w = write(fd, val, len);
	if (w < 0) {
		int e = errno;

		close(fd);
		errno = e;
		return ERR_IO;
	}
	close(fd);
	return (size_t)w == len ? 0 : ERR_IO;
}

void
routes_os_init(struct routes_os *st, const char *ifname)
{
	memset(st, 0, sizeof(*st));
	st->ops.run = real_run;
	st->ops.sysctl_get = real_sysctl_get;
	st->ops.sysctl_set = real_sysctl_set;
	str_copy(st->ifname, ifname ? ifname : "", sizeof(st->ifname));
}

/* ---- applying ---- */

static const char SYSCTL_FWD4[] = "/proc/sys/net/ipv4/ip_forward";
static const char SYSCTL_FWD6[] = "/proc/sys/net/ipv6/conf/all/forwarding";
static const char NFT_TABLE[] = "wiremesh";

static int
run(struct routes_os *st, const char *const argv[], bool quiet)
{
	char err[256];
	int r = st->ops.run(st->ops.ctx, argv, err, sizeof(err));

	if (r != 0 && !quiet)
		log_warn("msg=\"route command failed\" cmd=\"%s %s %s %s %s\" err=\"%s\"", argv[0],
		    argv[1], argv[2] ? argv[2] : "", argv[2] && argv[3] ? argv[3] : "",
		    argv[2] && argv[3] && argv[4] ? argv[4] : "", err);
	return r;
}

static int
route_cmd(struct routes_os *st, const char *verb, const struct ip_prefix *p, bool quiet)
{
	char s[ADDR_STR_MAX], t[16];
	const char *argv[] = { "ip", p->addr.family == AF_INET6 ? "-6" : "-4", "route", verb, s,
			       "dev", st->ifname, "table", t, NULL };

	if (p->bits == 0)
		str_copy(s, "default", sizeof(s));
	else
		prefix_fmt(s, p);
	snprintf(t, sizeof(t), "%d", ROUTES_TABLE);
	return run(st, argv, quiet);
}

/* Deletes every rule with our preferences in one family (also stale ones). */
static void
rules_del(struct routes_os *st, const char *fam)
{
	static const int prefs[] = { ROUTES_PREF_MARK, ROUTES_PREF_MAIN, ROUTES_PREF_TABLE };

	for (size_t i = 0; i < ARRAY_SIZE(prefs); i++) {
		char pr[16];
		const char *argv[] = { "ip", fam, "rule", "del", "pref", pr, NULL };

		snprintf(pr, sizeof(pr), "%d", prefs[i]);
		for (int k = 0; k < 8 && run(st, argv, true) == 0; k++)
			;
	}
}

/* Adds one of our rules: ROUTES_PREF_MARK, _MAIN or _TABLE. */
static int
rule_add(struct routes_os *st, const char *fam, int pref)
{
	char pr[16], mark[32], table[16];
	const char *a1[] = { "ip", fam, "rule", "add", "pref", pr, "fwmark", mark, "lookup", "main",
			     NULL };
	const char *a2[] = { "ip", fam, "rule", "add", "pref", pr, "lookup", "main",
			     "suppress_prefixlength", "0", NULL };
	const char *a3[] = { "ip", fam, "rule", "add", "pref", pr, "lookup", table, NULL };

	snprintf(pr, sizeof(pr), "%d", pref);
	snprintf(mark, sizeof(mark), "0x%x/0x%x", ROUTES_FWMARK, ROUTES_FWMARK_MASK);
	snprintf(table, sizeof(table), "%d", ROUTES_TABLE);
	return run(st, pref == ROUTES_PREF_MARK ? a1 : pref == ROUTES_PREF_MAIN ? a2 : a3, false);
}

static void
rule_del(struct routes_os *st, const char *fam, int pref)
{
	char pr[16];
	const char *argv[] = { "ip", fam, "rule", "del", "pref", pr, NULL };

	snprintf(pr, sizeof(pr), "%d", pref);
	for (int k = 0; k < 8 && run(st, argv, true) == 0; k++)
		;
}

/* Brings one family's rules from (*have, *have_main) to (want, want_main),
 * touching only the rules that change. */
static int
rules_sync(struct routes_os *st, const char *fam, bool *have, bool *have_main, bool want,
	   bool want_main)
{
	int r = 0;

	if (!want) {
		if (*have)
			rules_del(st, fam);
		*have = *have_main = false;
		return 0;
	}
	if (!*have) {
		rules_del(st, fam);	/* stale copies */
		if (rule_add(st, fam, ROUTES_PREF_MARK) != 0)
			r = ERR_IO;
		if (want_main && rule_add(st, fam, ROUTES_PREF_MAIN) != 0)
			r = ERR_IO;
		if (rule_add(st, fam, ROUTES_PREF_TABLE) != 0)
			r = ERR_IO;
	} else if (want_main != *have_main) {
		if (want_main)
			r = rule_add(st, fam, ROUTES_PREF_MAIN) != 0 ? ERR_IO : 0;
		else
			rule_del(st, fam, ROUTES_PREF_MAIN);
	}
	*have = true;
	*have_main = want_main;
	return r;
}

static bool
want_has(const struct routes_want *w, const struct ip_prefix *p)
{
	for (size_t i = 0; i < w->nsubnets; i++)
		if (prefix_same(&w->subnets[i], p))
			return true;
	return false;
}

static bool
have_has(const struct routes_os *st, const struct ip_prefix *p)
{
	for (size_t i = 0; i < st->nsubnets; i++)
		if (prefix_same(&st->subnets[i], p))
			return true;
	return false;
}

static int
fam_routes(const struct routes_os *st, const struct routes_want *w, int family)
{
	for (size_t i = 0; i < w->nsubnets; i++)
		if (w->subnets[i].addr.family == family)
			return 1;
	(void)st;
	return family == AF_INET ? w->exit4 : w->exit6;
}

static void
table_flush(struct routes_os *st)
{
	char t[16];
	const char *a4[] = { "ip", "-4", "route", "flush", "table", t, NULL };
	const char *a6[] = { "ip", "-6", "route", "flush", "table", t, NULL };

	snprintf(t, sizeof(t), "%d", ROUTES_TABLE);
	(void)!run(st, a4, true);
	(void)!run(st, a6, true);
}

static void
nat_del(struct routes_os *st)
{
	const char *argv[] = { "nft", "delete", "table", "inet", NFT_TABLE, NULL };

	(void)!run(st, argv, true);
}

static int
nat_add(struct routes_os *st, char *err, size_t errlen)
{
	char rule[128];
	const char *a1[] = { "nft", "add", "table", "inet", NFT_TABLE, NULL };
	const char *a2[] = { "nft", "add", "chain", "inet", NFT_TABLE, "postrouting",
			     "{ type nat hook postrouting priority srcnat; policy accept; }", NULL };
	const char *a3[] = { "nft", "add", "rule", "inet", NFT_TABLE, "postrouting", rule, NULL };

	snprintf(rule, sizeof(rule), "iifname \"%s\" oifname != \"%s\" masquerade", st->ifname,
	    st->ifname);
	nat_del(st);
	if (st->ops.run(st->ops.ctx, a1, err, errlen) != 0 ||
	    st->ops.run(st->ops.ctx, a2, err, errlen) != 0 ||
	    st->ops.run(st->ops.ctx, a3, err, errlen) != 0)
		return ERR_IO;
	return 0;
}

/* Switches forwarding on for one family; remembers the old value. */
static int
fwd_on(struct routes_os *st, const char *path, bool *done, char *old, size_t oldlen,
       const char *what)
{
	char cur[8] = "";
	size_t used = strlen(st->err);

	if (*done)
		return 0;
	if (st->ops.sysctl_get(st->ops.ctx, path, cur, sizeof(cur)) != 0) {
		snprintf(st->err + used, sizeof(st->err) - used, "%scannot read %s (%s)",
		    used ? "; " : "", path, strerror(errno));
		return ERR_IO;
	}
	if (strcmp(cur, "1") == 0) {
		old[0] = 0;	/* already on: nothing to restore */
		*done = true;
		return 0;
	}
	if (st->ops.sysctl_set(st->ops.ctx, path, "1") != 0) {
		snprintf(st->err + used, sizeof(st->err) - used,
		    "%scannot enable %s forwarding (%s: %s)",
		    used ? "; " : "", what, path, strerror(errno));
		return ERR_IO;
	}
	str_copy(old, cur, oldlen);
	*done = true;
	return 0;
}

static void
fwd_restore(struct routes_os *st, const char *path, bool *done, char *old)
{
	if (*done && old[0] && st->ops.sysctl_set(st->ops.ctx, path, old) != 0)
		log_warn("msg=\"cannot restore forwarding\" path=%s", path);
	*done = false;
	old[0] = 0;
}

int
routes_os_apply(struct routes_os *st, const struct routes_want *w)
{
	struct ip_prefix keep[ROUTES_MAX_OS];
	size_t nkeep = 0;
	int r = 0;
	bool r4, r6, m4, m6;

	if (!st->cleaned) {
		routes_os_reset(st);
		st->cleaned = true;
	}
	st->err[0] = 0;
	/* Rules first, so that a route is used as soon as it is in the table:
	 * present while the table has something for the family. Without LAN
	 * access an exit node takes the LAN too (no "main first" rule). */
	r4 = fam_routes(st, w, AF_INET);
	r6 = fam_routes(st, w, AF_INET6);
	m4 = r4 && !(w->exit4 && !w->allow_lan);
	m6 = r6 && !(w->exit6 && !w->allow_lan);
	if (rules_sync(st, "-4", &st->rules4, &st->main_rule4, r4, m4) != 0)
		r = ERR_IO;
	if (rules_sync(st, "-6", &st->rules6, &st->main_rule6, r6, m6) != 0)
		r = ERR_IO;
	/* Routes in table 57: remove what is no longer wanted, add the new. */
	for (size_t i = 0; i < st->nsubnets; i++) {
		if (want_has(w, &st->subnets[i]))
			keep[nkeep++] = st->subnets[i];
		else
			(void)!route_cmd(st, "del", &st->subnets[i], true);
	}
	for (size_t i = 0; i < w->nsubnets; i++) {
		if (have_has(st, &w->subnets[i]))
			continue;
		if (route_cmd(st, "replace", &w->subnets[i], false) == 0 && nkeep < ROUTES_MAX_OS)
			keep[nkeep++] = w->subnets[i];
		else
			r = ERR_IO;
	}
	memcpy(st->subnets, keep, nkeep * sizeof(keep[0]));
	st->nsubnets = nkeep;
	{
		static const struct ip_prefix def4 = { .addr = { .family = AF_INET }, .bits = 0 };
		static const struct ip_prefix def6 = { .addr = { .family = AF_INET6 }, .bits = 0 };

		if (w->exit4 != st->exit4) {
			if (route_cmd(st, w->exit4 ? "replace" : "del", &def4, !w->exit4) == 0 || !w->exit4)
				st->exit4 = w->exit4;
			else
				r = ERR_IO;
		}
		if (w->exit6 != st->exit6) {
			if (route_cmd(st, w->exit6 ? "replace" : "del", &def6, !w->exit6) == 0 || !w->exit6)
				st->exit6 = w->exit6;
			else
				r = ERR_IO;
		}
	}
	/* Router: forwarding and masquerading. */
	if (w->forward4) {
		if (fwd_on(st, SYSCTL_FWD4, &st->fwd4, st->old_fwd4, sizeof(st->old_fwd4), "IPv4") != 0)
			r = ERR_IO;
	} else {
		fwd_restore(st, SYSCTL_FWD4, &st->fwd4, st->old_fwd4);
	}
	if (w->forward6) {
		if (fwd_on(st, SYSCTL_FWD6, &st->fwd6, st->old_fwd6, sizeof(st->old_fwd6), "IPv6") != 0)
			r = ERR_IO;
	} else {
		fwd_restore(st, SYSCTL_FWD6, &st->fwd6, st->old_fwd6);
	}
	if ((w->forward4 || w->forward6) && !st->nat) {
		char err[200];

		if (nat_add(st, err, sizeof(err)) == 0) {
			st->nat = true;
		} else {
			size_t used = strlen(st->err);

			snprintf(st->err + used, sizeof(st->err) - used,
			    "%scannot install the nftables masquerade table (%s)", used ? "; " : "",
			    err);
			r = ERR_IO;
		}
	} else if (!w->forward4 && !w->forward6 && st->nat) {
		nat_del(st);
		st->nat = false;
	}
	if (st->err[0]) {
		size_t used = strlen(st->err);

		snprintf(st->err + used, sizeof(st->err) - used, ": this node cannot route for the mesh");
		log_error("msg=\"routing for the mesh is not fully set up\" why=\"%s\"", st->err);
	}
	return r;
}

void
routes_os_reset(struct routes_os *st)
{
	if (st->ops.run == NULL)
		return;
	rules_del(st, "-4");
	rules_del(st, "-6");
	table_flush(st);
	nat_del(st);
	fwd_restore(st, SYSCTL_FWD4, &st->fwd4, st->old_fwd4);
	fwd_restore(st, SYSCTL_FWD6, &st->fwd6, st->old_fwd6);
	st->nsubnets = 0;
	st->exit4 = st->exit6 = false;
	st->rules4 = st->rules6 = st->main_rule4 = st->main_rule6 = false;
	st->nat = false;
}

/* ---- via grants ---- */

static bool
prefix_inside(const struct ip_prefix *inner, const struct ip_prefix *outer)
{
	return inner->addr.family == outer->addr.family && inner->bits >= outer->bits &&
	    prefix_contains(outer, &inner->addr);
}

size_t
routes_via_from_filter(json_t *filter, struct routes_via *out, size_t max)
{
	size_t i, k, n = 0;
	json_t *e, *r;

	json_array_foreach(filter, i, e) {
		json_t *v = json_object_get(e, "Via");
		const char *dst = json_string_value(json_object_get(v, "Dst"));
		struct routes_via *o = &out[n];

		if (v == NULL || dst == NULL || n >= max)
			continue;
		memset(o, 0, sizeof(*o));
		o->chosen = -1;
		if (strcmp(dst, "autogroup:internet") == 0)
			o->internet = true;
		else if (prefix_parse(dst, true, &o->dst) != 0)
			continue;
		json_array_foreach(json_object_get(v, "Routers"), k, r) {
			struct routes_via_router *rr = &o->r[o->nr];
			json_t *a;
			size_t q;

			if (o->nr >= ROUTES_MAX_VIA_ROUTERS ||
			    !json_is_string(json_object_get(r, "Route")) ||
			    prefix_parse(json_string_value(json_object_get(r, "Route")), true,
			    &rr->route) != 0)
				continue;
			memset(&rr->a4, 0, sizeof(rr->a4));
			memset(&rr->a6, 0, sizeof(rr->a6));
			json_array_foreach(json_object_get(r, "Addrs"), q, a) {
				struct ip_prefix ap;

				if (!json_is_string(a) || prefix_parse(json_string_value(a), true, &ap) != 0)
					continue;
				if (ap.addr.family == AF_INET)
					rr->a4 = ap.addr;
				else
					rr->a6 = ap.addr;
			}
			if (rr->a4.family != 0 || rr->a6.family != 0)
				o->nr++;
		}
		n++;
	}
	return n;
}

bool
routes_via_is_router(const struct routes_via *v, size_t k, const struct ip_addr *addrs,
		     size_t naddrs)
{
	for (size_t i = 0; i < naddrs; i++)
		if ((v->r[k].a4.family && addr_equal(&v->r[k].a4, &addrs[i])) ||
		    (v->r[k].a6.family && addr_equal(&v->r[k].a6, &addrs[i])))
			return true;
	return false;
}

static bool
via_lists(const struct routes_via *v, const struct ip_addr *addrs, size_t naddrs)
{
	for (size_t k = 0; k < v->nr; k++)
		if (routes_via_is_router(v, k, addrs, naddrs))
			return true;
	return false;
}

size_t
routes_via_apply(const struct ip_prefix *in, size_t n, const struct routes_via *via,
		 size_t nvia, const struct ip_addr *addrs, size_t naddrs,
		 struct ip_prefix *out, size_t max)
{
	size_t m = 0, i, j;

	for (i = 0; i < n; i++) {
		const struct ip_prefix *p = &in[i];
		bool drop = false;

		if (!is_address(p, addrs, naddrs)) {
			for (j = 0; j < nvia && !drop; j++) {
				const struct routes_via *v = &via[j];

				if (routes_is_exit(p))
					drop = v->internet && !via_lists(v, addrs, naddrs);
				else if (!v->internet && prefix_inside(p, &v->dst))
					drop = v->chosen < 0 ||
					    !routes_via_is_router(v, (size_t)v->chosen, addrs, naddrs);
			}
		}
		if (!drop && m < max)
			out[m++] = *p;
	}
	for (j = 0; j < nvia; j++) {
		const struct routes_via *v = &via[j];
		const struct ip_prefix *r;
		bool have = false;

		if (v->internet || v->chosen < 0 ||
		    !routes_via_is_router(v, (size_t)v->chosen, addrs, naddrs))
			continue;
		r = &v->r[v->chosen].route;
		for (i = 0; i < m && !have; i++)
			have = prefix_same(&out[i], r);
		if (!have && m < max)
			out[m++] = *r;
	}
	return m;
}
