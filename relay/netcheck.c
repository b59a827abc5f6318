/* SPDX-License-Identifier: MIT */
/* netcheck: STUN probe plan, reply matching, HTTPS latency, report and output. */
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "relay/derp_client.h"
#include "relay/netcheck.h"
#include "relay/stun_client.h"
#include "common/util.h"
#include "relay/relay_net.h"

enum { NODES_PER_REGION = 2, TRY_GAP_MS = 100 };

struct probe {
	size_t region;			/* index into report regions */
	bool v6;			/* asked over IPv6 */
	struct endpoint dst;
	struct stun_txn tx[NETCHECK_TRIES];
	int sent;
	bool got;
	int seq;			/* order of arrival */
	struct endpoint mapped;
	int64_t rtt_us;
};

struct netcheck {
	const struct derp_map *map;
	struct netcheck_opts opts;
	int64_t start_ms;
	struct probe *probes;
	size_t nprobes;
	int nreplies;
	struct netcheck_report rep;	/* regions filled at begin */
};

static bool node_v4(const struct derp_node *n, struct endpoint *out)
{
	const char *ip = n->stun_test_ip[0] ? n->stun_test_ip : n->ipv4;
	struct addrinfo hints = { .ai_family = AF_INET, .ai_socktype = SOCK_DGRAM }, *res;

	memset(out, 0, sizeof(*out));
	out->port = derp_node_stun_port(n);
	if (out->port == 0 || strcmp(ip, "none") == 0)
		return false;
	if (ip[0])
		return addr_parse(ip, &out->addr) == 0 && out->addr.family == AF_INET;
	if (n->host[0] == 0 || getaddrinfo(n->host, NULL, &hints, &res) != 0)
		return false;
	out->addr.family = AF_INET;
	memcpy(out->addr.b, &((struct sockaddr_in *)res->ai_addr)->sin_addr, 4);
	freeaddrinfo(res);
	return true;
}

static bool node_v6(const struct derp_node *n, struct endpoint *out)
{
	memset(out, 0, sizeof(*out));
	out->port = derp_node_stun_port(n);
	if (out->port == 0 || n->ipv6[0] == 0 || strcmp(n->ipv6, "none") == 0)
		return false;
	return addr_parse(n->ipv6, &out->addr) == 0 && out->addr.family == AF_INET6;
}

struct netcheck *netcheck_begin(const struct derp_map *map, const struct netcheck_opts *opts)
{
	struct netcheck *nc = calloc(1, sizeof(*nc));
	size_t maxp = 0;

	if (nc == NULL)
		return NULL;
	nc->map = map;
	if (opts)
		nc->opts = *opts;
	if (nc->opts.timeout_ms <= 0)
		nc->opts.timeout_ms = NETCHECK_STUN_TIMEOUT_MS;
	nc->start_ms = time_mono_ms();
	nc->rep.mapping_varies = NETCHECK_UNKNOWN;
	for (size_t i = 0; i < map->nregions; i++)
		maxp += map->regions[i].nnodes < NODES_PER_REGION ? map->regions[i].nnodes :
			NODES_PER_REGION;
	nc->probes = calloc(2 * maxp + 1, sizeof(*nc->probes));
	if (nc->probes == NULL) {
		free(nc);
		return NULL;
	}
	for (size_t i = 0; i < map->nregions && nc->rep.nregions < NETCHECK_MAX_REGIONS; i++) {
		const struct derp_region *rg = &map->regions[i];
		size_t ri = nc->rep.nregions, used = 0;

		if (rg->no_measure_no_home || rg->nnodes == 0)
			continue;
		nc->rep.regions[ri] = (struct netcheck_region_result){ rg->id, -1, -1 };
		nc->rep.nregions++;
		for (size_t j = 0; j < rg->nnodes && used < NODES_PER_REGION; j++) {
			struct probe *p = &nc->probes[nc->nprobes];

			if (!node_v4(&rg->nodes[j], &p->dst))
				continue;
			p->region = ri;
			nc->nprobes++;
			nc->rep.v4_probed++;
			used++;
		}
		used = 0;
		for (size_t j = 0; j < rg->nnodes && used < NODES_PER_REGION; j++) {
			struct probe *p = &nc->probes[nc->nprobes];

			if (!node_v6(&rg->nodes[j], &p->dst))
				continue;
			p->region = ri;
			p->v6 = true;
			nc->nprobes++;
			nc->rep.v6_probed++;
			used++;
		}
	}
	return nc;
}

bool netcheck_next_probe(struct netcheck *nc, struct endpoint *dst,
			 uint8_t pkt[static STUN_BINDING_REQUEST_LEN], int *next_ms)
{
	int64_t el = time_mono_ms() - nc->start_ms;
	int64_t soonest = -1;

	for (size_t i = 0; i < nc->nprobes; i++) {
		struct probe *p = &nc->probes[i];
		int64_t due;

		if (p->got || p->sent >= NETCHECK_TRIES)
			continue;
		due = (int64_t)p->sent * TRY_GAP_MS;
		if (el >= due) {
			*dst = p->dst;
			stun_txn_start(&p->tx[p->sent], pkt);
			p->sent++;
			if (next_ms)
				*next_ms = 0;
			return true;
		}
		if (soonest < 0 || due - el < soonest)
			soonest = due - el;
	}
	if (next_ms)
		*next_ms = (int)soonest;
	return false;
}

bool netcheck_feed(struct netcheck *nc, const struct endpoint *from, const uint8_t *pkt, size_t n)
{
	for (size_t i = 0; i < nc->nprobes; i++) {
		struct probe *p = &nc->probes[i];

		for (int t = 0; t < p->sent; t++) {
			struct endpoint m;
			int64_t rtt;

			if (stun_txn_match(&p->tx[t], pkt, n, &m, &rtt) != 0)
				continue;
			relay_endpoint_unmap(&m);
			if (!p->got || rtt < p->rtt_us)
				p->rtt_us = rtt;
			if (!p->got) {
				p->got = true;
				p->mapped = m;
				p->seq = nc->nreplies++;
			}
			(void)from;
			return true;
		}
	}
	return false;
}

bool netcheck_done(const struct netcheck *nc)
{
	if (time_mono_ms() - nc->start_ms >= nc->opts.timeout_ms)
		return true;
	for (size_t i = 0; i < nc->nprobes; i++)
		if (!nc->probes[i].got)
			return false;
	return true;
}

/* TLS dial, then times GET /derp/probe. Returns microseconds or -1. */
static int64_t https_probe(const struct derp_node *n, SSL_CTX *ctx, int timeout_ms)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *res = NULL;
	struct timeval tv = { .tv_sec = timeout_ms / 1000, .tv_usec = (timeout_ms % 1000) * 1000 };
	const char *dial = n->ipv4[0] && strcmp(n->ipv4, "none") != 0 ? n->ipv4 : n->host;
	const char *name = n->host[0] ? n->host : n->ipv4;
	char port[8], req[512], resp[1024];
	struct ip_addr ip;
	int64_t t0, out = -1;
	size_t got = 0;
	SSL *ssl = NULL;
	int fd = -1, len;

	snprintf(port, sizeof(port), "%u", derp_node_derp_port(n));
	if (getaddrinfo(dial, port, &hints, &res) != 0)
		return -1;
	fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		goto out;
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (connect(fd, res->ai_addr, res->ai_addrlen) < 0)
		goto out;
	if ((ssl = SSL_new(ctx)) == NULL || SSL_set_fd(ssl, fd) != 1)
		goto out;
	if (addr_parse(name, &ip) == 0) {
		X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), name);
	} else {
		SSL_set_tlsext_host_name(ssl, name);
		SSL_set1_host(ssl, name);
	}
	if (SSL_connect(ssl) != 1)
		goto out;
	len = snprintf(req, sizeof(req), "GET /derp/probe HTTP/1.1\r\nHost: %s\r\n"
		       "Connection: close\r\n\r\n", name);
	t0 = time_mono_ns();
	if (len < 0 || SSL_write(ssl, req, len) != len)
		goto out;
	while (got < sizeof(resp) - 1 && memmem(resp, got, "\r\n\r\n", 4) == NULL) {
		int r = SSL_read(ssl, resp + got, (int)(sizeof(resp) - 1 - got));

		if (r <= 0)
			goto out;
		got += (size_t)r;
	}
	resp[got] = 0;
	if (strncmp(resp, "HTTP/1.1 200", 12) == 0 || strncmp(resp, "HTTP/1.0 200", 12) == 0)
		out = (time_mono_ns() - t0) / 1000;
out:
	ERR_clear_error();
	SSL_free(ssl);
	if (fd >= 0)
		close(fd);
	freeaddrinfo(res);
	return out;
}

void netcheck_finish(struct netcheck *nc, struct netcheck_report *out)
{
	struct netcheck_report *r = &nc->rep;
	const struct probe *first = NULL, *first6 = NULL;

	for (size_t i = 0; i < nc->nprobes; i++) {
		const struct probe *p = &nc->probes[i];
		struct netcheck_region_result *rr = &r->regions[p->region];

		if (!p->got)
			continue;
		r->udp = true;
		if (rr->stun_us < 0 || p->rtt_us < rr->stun_us)
			rr->stun_us = p->rtt_us;
		if (p->mapped.addr.family == AF_INET) {
			r->ipv4 = true;
			r->v4_answered++;
			if (first == NULL || p->seq < first->seq)
				first = p;
		} else if (p->mapped.addr.family == AF_INET6) {
			r->ipv6 = true;
			if (first6 == NULL || p->seq < first6->seq)
				first6 = p;
		}
	}
	if (first)
		r->global_v4 = first->mapped;
	if (first6)
		r->global_v6 = first6->mapped;
	/* endpoint-dependent mapping: servers at different addresses, different answers */
	for (size_t i = 0; i < nc->nprobes; i++) {
		for (size_t j = i + 1; j < nc->nprobes; j++) {
			const struct probe *a = &nc->probes[i], *b = &nc->probes[j];

			if (!a->got || !b->got || addr_equal(&a->dst.addr, &b->dst.addr) ||
			    a->v6 || b->v6)	/* IPv4 NAT behaviour only */
				continue;
			if (!addr_equal(&a->mapped.addr, &b->mapped.addr) ||
			    a->mapped.port != b->mapped.port) {
				r->mapping_varies = NETCHECK_TRUE;
			} else if (r->mapping_varies == NETCHECK_UNKNOWN) {
				r->mapping_varies = NETCHECK_FALSE;
			}
		}
	}
	if (!nc->opts.skip_https) {
		SSL_CTX *ctx = derp_client_tls_ctx();

		for (size_t i = 0; ctx && i < r->nregions; i++) {
			const struct derp_region *rg = derp_map_region(nc->map, r->regions[i].region_id);

			for (size_t j = 0; rg && j < rg->nnodes; j++) {
				if (rg->nodes[j].stun_only)
					continue;
				r->regions[i].https_us = https_probe(&rg->nodes[j], ctx,
								     NETCHECK_HTTPS_TIMEOUT_MS);
				break;
			}
		}
		SSL_CTX_free(ctx);
	}
	r->preferred_region = netcheck_pick_preferred(r, nc->map);
	*out = *r;
}

void netcheck_free(struct netcheck *nc)
{
	if (nc == NULL)
		return;
	free(nc->probes);
	free(nc);
}

int netcheck_run(const struct derp_map *map, const struct netcheck_opts *opts,
		 struct netcheck_report *out)
{
	struct netcheck *nc;
	struct sockaddr_in sin = { .sin_family = AF_INET };
	struct sockaddr_in6 sin6 = { .sin6_family = AF_INET6 };
	int fd, r = 0, off = 0;
	bool v6 = true;

	memset(out, 0, sizeof(*out));
	/* dual-stack like the agent's socket; IPv4 only where IPv6 is off */
	fd = socket(AF_INET6, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	sin6.sin6_port = htons(opts ? opts->local_port : 0);
	if (fd >= 0 && (setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof(off)) != 0 ||
	    bind(fd, (struct sockaddr *)&sin6, sizeof(sin6)) < 0)) {
		close(fd);
		fd = -1;
	}
	if (fd < 0) {
		v6 = false;
		fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
		if (fd < 0)
			return ERR_IO;
		sin.sin_port = htons(opts ? opts->local_port : 0);
		if (bind(fd, (struct sockaddr *)&sin, sizeof(sin)) < 0) {
			close(fd);
			return ERR_IO;
		}
	}
	nc = netcheck_begin(map, opts);
	if (nc == NULL) {
		close(fd);
		return ERR_NOMEM;
	}
	while (!netcheck_done(nc)) {
		uint8_t pkt[STUN_BINDING_REQUEST_LEN], in[STUN_MAX_MSG];
		struct endpoint dst;
		struct pollfd pf = { .fd = fd, .events = POLLIN };
		int next = -1, wait;
		int64_t left = nc->opts.timeout_ms - (time_mono_ms() - nc->start_ms);

		while (netcheck_next_probe(nc, &dst, pkt, &next)) {
			struct sockaddr_storage ss;
			socklen_t sl;

			if (v6 && dst.addr.family == AF_INET) {	/* as ::ffff:a.b.c.d */
				struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;

				memset(&ss, 0, sizeof(ss));
				s6->sin6_family = AF_INET6;
				s6->sin6_port = htons(dst.port);
				s6->sin6_addr.s6_addr[10] = s6->sin6_addr.s6_addr[11] = 0xff;
				memcpy(&s6->sin6_addr.s6_addr[12], dst.addr.b, 4);
				sl = sizeof(*s6);
			} else if (!v6 && dst.addr.family == AF_INET6) {
				continue;
			} else {
				sl = endpoint_to_sockaddr(&dst, &ss);
			}
			(void)sendto(fd, pkt, sizeof(pkt), 0, (struct sockaddr *)&ss, sl);
		}
		wait = next >= 0 && next < left ? next : (int)(left > 0 ? left : 0);
		if (poll(&pf, 1, wait) <= 0)
			continue;
		for (;;) {
			struct sockaddr_storage ss;
			socklen_t sl = sizeof(ss);
			struct endpoint from;
			ssize_t n = recvfrom(fd, in, sizeof(in), 0, (struct sockaddr *)&ss, &sl);

			if (n < 0)
				break;
			if (endpoint_from_sockaddr((struct sockaddr *)&ss, &from) == 0)
				netcheck_feed(nc, &from, in, (size_t)n);
		}
	}
	close(fd);
	netcheck_finish(nc, out);
	netcheck_free(nc);
	return r;
}

static int64_t best_us(const struct netcheck_region_result *rr)
{
	return rr->stun_us >= 0 ? rr->stun_us : rr->https_us;
}

int netcheck_pick_preferred(const struct netcheck_report *r, const struct derp_map *map)
{
	double best = -1;
	int id = 0;

	for (size_t i = 0; i < r->nregions; i++) {
		const struct derp_region *rg = derp_map_region(map, r->regions[i].region_id);
		double v = (double)best_us(&r->regions[i]);

		if (best_us(&r->regions[i]) < 0 || (rg && rg->no_measure_no_home))
			continue;
		if (rg && rg->score > 0)
			v *= rg->score;
		if (best < 0 || v < best) {
			best = v;
			id = r->regions[i].region_id;
		}
	}
	return id;
}

static const char *region_label(const struct derp_map *map, int id, char *tmp, size_t cap)
{
	const struct derp_region *rg = derp_map_region(map, id);

	if (rg && rg->code[0])
		return rg->code;
	snprintf(tmp, cap, "%d", id);
	return tmp;
}

static int cmp_latency(const void *a, const void *b)
{
	int64_t x = best_us(a), y = best_us(b);

	return (x > y) - (x < y);
}

static void fmt_ms(char *out, size_t cap, int64_t us)
{
	if (us < 10000)
		snprintf(out, cap, "%.1fms", (double)us / 1000.0);
	else
		snprintf(out, cap, "%lldms", (long long)((us + 500) / 1000));
}

int netcheck_format(const struct netcheck_report *r, const struct derp_map *map, struct buf *out)
{
	struct netcheck_region_result sorted[NETCHECK_MAX_REGIONS];
	char ep[ADDR_STR_MAX], tmp[16], ms[32];
	size_t n = 0;
	int e;

	e = buf_printf(out, "* UDP: %s\n", r->udp ? "true" : "false");
	if (e == 0 && r->ipv4) {
		endpoint_fmt(ep, &r->global_v4);
		e = buf_printf(out, "* IPv4: yes, %s\n", ep);
	} else if (e == 0) {
		e = buf_printf(out, "* IPv4: (no addr found: %s)\n", r->v4_probed == 0 ?
			       "no relay in the DERP map has an IPv4 STUN address" : r->udp ?
			       "no STUN reply over IPv4" :
			       "no STUN server answered; UDP looks blocked");
	}
	if (e == 0 && r->ipv6) {
		endpoint_fmt(ep, &r->global_v6);
		e = buf_printf(out, "* IPv6: yes, %s\n", ep);
	} else if (e == 0) {
		e = buf_printf(out, "* IPv6: no (%s)\n", r->v6_probed == 0 ?
			       "no relay in the DERP map has an IPv6 address" :
			       "no STUN reply over IPv6");
	}
	if (e == 0)
		e = buf_printf(out, "* MappingVariesByDestIP: %s\n",
			       r->mapping_varies == NETCHECK_TRUE ? "true" :
			       r->mapping_varies == NETCHECK_FALSE ? "false" :
			       !r->ipv4 ? "(unknown: no STUN reply over IPv4)" :
			       "(unknown: needs replies from two STUN servers at different addresses)");
	for (size_t i = 0; i < r->nregions; i++)
		if (best_us(&r->regions[i]) >= 0)
			sorted[n++] = r->regions[i];
	qsort(sorted, n, sizeof(sorted[0]), cmp_latency);
	if (e == 0 && r->preferred_region > 0) {
		for (size_t i = 0; i < n; i++)
			if (sorted[i].region_id == r->preferred_region)
				fmt_ms(ms, sizeof(ms), best_us(&sorted[i]));
		e = buf_printf(out, "* Nearest DERP: %s (%s)\n",
			       region_label(map, r->preferred_region, tmp, sizeof(tmp)), n ? ms : "-");
	} else if (e == 0) {
		e = buf_printf(out, "* Nearest DERP: (none: %s)\n", r->nregions == 0 ?
			       "the DERP map has no regions to measure" :
			       "no relay answered over STUN or HTTPS");
	}
	if (e == 0)
		e = buf_printf(out, n ? "* DERP latency:\n" : "* DERP latency: (none: %s)\n",
			       r->nregions == 0 ? "the DERP map has no regions to measure" :
			       "no relay answered over STUN or HTTPS");
	for (size_t i = 0; e == 0 && i < n; i++) {
		fmt_ms(ms, sizeof(ms), best_us(&sorted[i]));
		e = buf_printf(out, "  - %s: %s\n",
			       region_label(map, sorted[i].region_id, tmp, sizeof(tmp)), ms);
	}
	return e;
}

int netcheck_format_json(const struct netcheck_report *r, const struct derp_map *map,
			 struct buf *out)
{
	json_t *o = json_object(), *lat = json_object(), *sl = json_object(), *hl = json_object();
	char ep[ADDR_STR_MAX], key[16];
	char *s = NULL;
	int e = ERR_NOMEM;

	(void)map;
	if (o == NULL || lat == NULL || sl == NULL || hl == NULL) {
		json_decref(lat);
		json_decref(sl);
		json_decref(hl);
		goto out;
	}
	json_object_set_new(o, "UDP", json_boolean(r->udp));
	json_object_set_new(o, "IPv4", json_boolean(r->ipv4));
	if (r->ipv4) {
		endpoint_fmt(ep, &r->global_v4);
		json_object_set_new(o, "GlobalV4", json_string(ep));
	}
	json_object_set_new(o, "IPv6", json_boolean(r->ipv6));
	if (r->ipv6) {
		endpoint_fmt(ep, &r->global_v6);
		json_object_set_new(o, "GlobalV6", json_string(ep));
	}
	json_object_set_new(o, "MappingVariesByDestIP",
			    r->mapping_varies == NETCHECK_UNKNOWN ? json_null() :
			    json_boolean(r->mapping_varies == NETCHECK_TRUE));
	json_object_set_new(o, "PreferredDERP", json_integer(r->preferred_region));
	for (size_t i = 0; i < r->nregions; i++) {
		const struct netcheck_region_result *rr = &r->regions[i];

		snprintf(key, sizeof(key), "%d", rr->region_id);
		/* nanoseconds, as Go's time.Duration marshals */
		if (best_us(rr) >= 0)
			json_object_set_new(lat, key, json_integer(best_us(rr) * 1000));
		if (rr->stun_us >= 0)
			json_object_set_new(sl, key, json_integer(rr->stun_us * 1000));
		if (rr->https_us >= 0)
			json_object_set_new(hl, key, json_integer(rr->https_us * 1000));
	}
	json_object_set_new(o, "RegionLatency", lat);
	json_object_set_new(o, "RegionSTUNLatency", sl);
	json_object_set_new(o, "RegionHTTPSLatency", hl);
	s = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
	if (s)
		e = buf_printf(out, "%s\n", s);
out:
	free(s);
	json_decref(o);
	return e;
}
