// SPDX-License-Identifier: MIT
/*
 * MagicDNS in the agent: feeds the resolver (resolver.c) from the netmap,
 * points the OS at it (dns_os.c) while the node is up and accept_dns holds,
 * and puts the OS back on down, on stop, and at the next start after a
 * crash. dns_mu serialises OS changes; it is taken without mu held.
 */
#include "client-agent/agent_int.h"
#include "client-agent/dns_os.h"
#include "client-agent/resolver.h"

/* Sends the names the netmap shows (self first) to the resolver. */
static void
sync_hosts(struct agent *a)
{
	struct resolver_host *h;
	struct ip_addr s4, s6;
	size_t n = 0;

	pthread_mutex_lock(&a->mu);
	if ((h = calloc(a->npeers + 1, sizeof(*h))) == NULL) {
		pthread_mutex_unlock(&a->mu);
		return;
	}
	if (a->have_self) {
		str_copy(h[n].name, a->self_name, sizeof(h[n].name));
		h[n].a4 = a->self4;
		h[n].a6 = a->self6;
		n++;
	}
	for (size_t i = 0; i < a->npeers; i++) {
		str_copy(h[n].name, a->peers[i]->name, sizeof(h[n].name));
		h[n].a4 = a->peers[i]->addr4;
		h[n].a6 = a->peers[i]->addr6;
		n++;
	}
	s4 = a->self4;
	s6 = a->self6;
	pthread_mutex_unlock(&a->mu);
	resolver_set_hosts(a->resolver, h, n, &s4, &s6);
	free(h);
}

/* Brings the OS in line with accept_dns, the state and the config. */
static void
os_sync(struct agent *a, bool up)
{
	struct resolver_config *c = malloc(sizeof(*c));
	struct ip_addr fb[RESOLVER_MAX_NS];
	char why[512] = "";
	bool accept, want;
	size_t nfb;

	if (c == NULL)
		return;
	resolver_get_config(a->resolver, c);
	pthread_mutex_lock(&a->dns_mu);
	pthread_mutex_lock(&a->mu);
	accept = a->accept_dns;
	pthread_mutex_unlock(&a->mu);
	want = up && accept && a->ifname[0] && dns_os_wanted(c);
	if (want) {
		if (dns_os_apply((enum dns_os_mode)a->dns_mode, a->cfg.state_dir, a->ifname, c, why,
		    sizeof(why)) != 0)
			log_error("msg=\"dns: cannot configure the OS\" mode=%s err=\"%s\"",
			    dns_os_mode_name((enum dns_os_mode)a->dns_mode), why);
	} else if (a->dns_os_set || !up) {
		(void)dns_os_restore((enum dns_os_mode)a->dns_mode, a->cfg.state_dir, a->ifname);
	}
	nfb = dns_os_host_resolvers((enum dns_os_mode)a->dns_mode, a->cfg.state_dir, fb,
	    RESOLVER_MAX_NS);
	resolver_set_fallback(a->resolver, fb, nfb);
	pthread_mutex_lock(&a->mu);
	a->dns_os_set = want && why[0] == '\0';
	str_copy(a->dns_err, why, sizeof(a->dns_err));
	pthread_mutex_unlock(&a->mu);
	pthread_mutex_unlock(&a->dns_mu);
	free(c);
}

void
agent_dns_start(struct agent *a)
{
	struct ip_addr fb[RESOLVER_MAX_NS];
	size_t nfb;

	a->dns_mode = (int)dns_os_detect();
	/* A saved resolv.conf means the last run did not stop cleanly. (With
	 * systemd-resolved the settings went with the old tunnel interface.) */
	if (a->dns_mode == DNS_OS_FILE && dns_os_restore(DNS_OS_FILE, a->cfg.state_dir, ""))
		log_info("msg=\"dns: restored the OS resolver config left by an earlier run\"");
	if (a->tun_fd < 0)
		return;
	if (resolver_new(a->tun_fd, a->cfg.dns_rate ? a->cfg.dns_rate : RESOLVER_DEFAULT_RATE,
	    &a->resolver) != 0) {
		log_error("msg=\"dns: cannot start the resolver\"");
		return;
	}
	nfb = dns_os_host_resolvers((enum dns_os_mode)a->dns_mode, a->cfg.state_dir, fb,
	    RESOLVER_MAX_NS);
	resolver_set_fallback(a->resolver, fb, nfb);
	log_info("msg=\"dns: resolver at " RESOLVER_ADDR4 " and " RESOLVER_ADDR6 "\" os=%s",
	    dns_os_mode_name((enum dns_os_mode)a->dns_mode));
}

void
agent_dns_stop(struct agent *a)
{
	if (a->resolver) {
		os_sync(a, false);
		resolver_free(a->resolver);
		a->resolver = NULL;
	}
}

void
agent_dns_on_message(struct agent *a, json_t *msg)
{
	const char *type = json_string_value(json_object_get(msg, "type"));
	json_t *dns = json_object_get(msg, "dns");
	bool full = type && strcmp(type, "full") == 0;

	if (a->resolver == NULL)
		return;
	if (json_is_object(dns)) {
		struct resolver_config *c = malloc(sizeof(*c));

		if (c != NULL) {
			resolver_config_from_json(dns, c);
			resolver_set_config(a->resolver, c);
			pthread_mutex_lock(&a->mu);
			str_copy(a->dns_base, c->magic_dns ? c->base_domain : "", sizeof(a->dns_base));
			pthread_mutex_unlock(&a->mu);
			free(c);
		}
	}
	if (full || json_object_get(msg, "peer_added") || json_object_get(msg, "peer_changed") ||
	    json_object_get(msg, "peer_removed") || json_object_get(msg, "self"))
		sync_hosts(a);
	if (full || json_is_object(dns))
		os_sync(a, true);
}

void
agent_dns_down(struct agent *a)
{
	struct resolver_config *c;

	if (a->resolver == NULL)
		return;
	os_sync(a, false);
	resolver_set_hosts(a->resolver, NULL, 0, NULL, NULL);
	if ((c = calloc(1, sizeof(*c))) != NULL) {
		resolver_set_config(a->resolver, c);
		free(c);
	}
	pthread_mutex_lock(&a->mu);
	a->dns_base[0] = '\0';
	pthread_mutex_unlock(&a->mu);
}

void
agent_dns_set_accept(struct agent *a, bool accept)
{
	bool up;

	pthread_mutex_lock(&a->mu);
	a->accept_dns = accept;
	up = a->have_netmap;
	pthread_mutex_unlock(&a->mu);
	if (a->resolver && up)
		os_sync(a, true);
}

const char *
agent_dns_fqdn_locked(struct agent *a, const char *name, char buf[static DNSNAME_MAX])
{
	if (a->dns_base[0] == '\0' || name[0] == '\0')
		return name;
	if (snprintf(buf, DNSNAME_MAX, "%.*s.%s", NAME_MAX_LEN, name, a->dns_base) >= DNSNAME_MAX)
		return name;
	return buf;
}

bool
agent_dns_strip_locked(struct agent *a, const char *s, char out[static NAME_MAX_LEN])
{
	char norm[DNSNAME_MAX];
	size_t n, b = strlen(a->dns_base);

	dnsname_norm(norm, s);
	n = strlen(norm);
	if (b == 0 || n <= b + 1 || !dnsname_under(norm, a->dns_base) || n - b - 1 >= NAME_MAX_LEN)
		return false;
	snprintf(out, NAME_MAX_LEN, "%.*s", (int)(n - b - 1), norm);
	return strchr(out, '.') == NULL;
}

json_t *
agent_cmd_dns_status(struct agent *a)
{
	struct resolver_config *c;
	struct resolver_stats st;
	struct ip_addr fb[RESOLVER_MAX_NS];
	size_t nfb;
	json_t *d, *split, *global, *search, *extra, *fbj, *stats;
	struct buf b;
	char s[ADDR_STR_MAX];
	bool accept, os_set;
	char err[256];

	if (a->resolver == NULL)
		return agent_reply_err("the resolver is not running (no TUN device)");
	if ((c = malloc(sizeof(*c))) == NULL)
		return agent_reply_err("out of memory");
	resolver_get_config(a->resolver, c);
	resolver_stats(a->resolver, &st);
	nfb = resolver_get_fallback(a->resolver, fb, RESOLVER_MAX_NS);
	pthread_mutex_lock(&a->mu);
	accept = a->accept_dns;
	os_set = a->dns_os_set;
	str_copy(err, a->dns_err, sizeof(err));
	pthread_mutex_unlock(&a->mu);
	buf_init(&b, 1 << 20);
	global = json_array();
	split = json_object();
	search = json_array();
	extra = json_array();
	fbj = json_array();
	(void)!buf_printf(&b, "MagicDNS: %s\n", c->magic_dns ? "on" : "off");
	(void)!buf_printf(&b, "Base domain: %s\n", c->base_domain[0] ? c->base_domain : "-");
	(void)!buf_printf(&b, "Resolver: %s, %s (UDP and TCP 53, through %s only)\n",
	    RESOLVER_ADDR4, RESOLVER_ADDR6, a->ifname[0] ? a->ifname : "the tunnel");
	(void)!buf_printf(&b, "OS: %s%s%s\n", !accept ? "left alone (--accept-dns=false)" :
	    os_set ? "uses the resolver via " : "not configured",
	    accept && os_set ? dns_os_mode_name((enum dns_os_mode)a->dns_mode) : "",
	    err[0] ? " (error)" : "");
	if (err[0])
		(void)!buf_printf(&b, "# Health: dns: %s\n", err);
	(void)!buf_printf(&b, "Nameservers:");
	for (size_t i = 0; i < c->nglobal; i++) {
		addr_fmt(s, &c->global[i]);
		(void)!buf_printf(&b, " %s", s);
		json_array_append_new(global, json_string(s));
	}
	for (size_t i = 0; i < nfb; i++) {
		addr_fmt(s, &fb[i]);
		json_array_append_new(fbj, json_string(s));
		if (c->nglobal == 0)
			(void)!buf_printf(&b, " %s", s);
	}
	(void)!buf_printf(&b, "%s\n", c->nglobal == 0 ? (nfb ? " (the host's own)" : " none") : "");
	for (size_t i = 0; i < c->nsplit; i++) {
		json_t *arr = json_array();

		(void)!buf_printf(&b, "Split: %s ->", c->split[i].domain);
		for (size_t k = 0; k < c->split[i].nns; k++) {
			addr_fmt(s, &c->split[i].ns[k]);
			(void)!buf_printf(&b, " %s", s);
			json_array_append_new(arr, json_string(s));
		}
		(void)!buf_printf(&b, "\n");
		json_object_set_new(split, c->split[i].domain, arr);
	}
	if (c->nsearch || c->magic_dns) {
		(void)!buf_printf(&b, "Search domains:");
		if (c->magic_dns)
			(void)!buf_printf(&b, " %s", c->base_domain);
		for (size_t i = 0; i < c->nsearch; i++) {
			(void)!buf_printf(&b, " %s", c->search[i]);
			json_array_append_new(search, json_string(c->search[i]));
		}
		(void)!buf_printf(&b, "\n");
	}
	for (size_t i = 0; i < c->nextra; i++) {
		addr_fmt(s, &c->extra[i].addr);
		(void)!buf_printf(&b, "Extra record: %s %s %s\n", c->extra[i].name,
		    c->extra[i].addr.family == AF_INET ? "A" : "AAAA", s);
		json_array_append_new(extra, json_pack("{s:s, s:s, s:s}", "name", c->extra[i].name,
		    "type", c->extra[i].addr.family == AF_INET ? "A" : "AAAA", "value", s));
	}
	(void)!buf_printf(&b, "Queries: %" PRIu64 " (local %" PRIu64 ", forwarded %" PRIu64
	    ", servfail %" PRIu64 ", rate-limited %" PRIu64 ", dropped %" PRIu64 ")\n",
	    st.queries, st.local, st.forwarded, st.servfail, st.rate_limited,
	    st.not_local + st.bad_packets + st.queue_drops);
	stats = json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, "
	    "s:I, s:I}",
	    "queries", (json_int_t)st.queries, "local", (json_int_t)st.local,
	    "forwarded", (json_int_t)st.forwarded, "nxdomain", (json_int_t)st.nxdomain,
	    "servfail", (json_int_t)st.servfail, "formerr", (json_int_t)st.formerr,
	    "truncated", (json_int_t)st.truncated, "rate_limited", (json_int_t)st.rate_limited,
	    "queue_drops", (json_int_t)st.queue_drops, "not_local", (json_int_t)st.not_local,
	    "bad_packets", (json_int_t)st.bad_packets, "upstream_bad", (json_int_t)st.upstream_bad,
	    "upstream_timeouts", (json_int_t)st.upstream_timeouts,
	    "tcp_fallbacks", (json_int_t)st.tcp_fallbacks, "tcp_conns", (json_int_t)st.tcp_conns,
	    "pending_full", (json_int_t)st.pending_full);
	d = json_pack("{s:b, s:s, s:o, s:o, s:o, s:o, s:o, s:s, s:s, s:b, s:s, s:b, s:s, s:o}",
	    "magic_dns", c->magic_dns, "base_domain", c->base_domain, "global", global,
	    "split", split, "search_domains", search, "extra_records", extra,
	    "host_resolvers", fbj, "resolver_ipv4", RESOLVER_ADDR4, "resolver_ipv6", RESOLVER_ADDR6,
	    "accept_dns", accept, "os_mode", dns_os_mode_name((enum dns_os_mode)a->dns_mode),
	    "os_configured", os_set, "os_error", err, "stats", stats);
	free(c);
	{
		json_t *r = agent_reply_ok(buf_cstr(&b), d);

		buf_cleanup(&b);
		return r;
	}
}
