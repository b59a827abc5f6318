// SPDX-License-Identifier: MIT
/*
 * The agent's resolver: packets in from the TUN reader, answers out to the
 * TUN device, forwarding over sockets of its own. See resolver.h for what
 * it answers and why it has no listening socket.
 *
 * One thread owns the pending forwarded queries, their upstream sockets and
 * the TCP connections; it sleeps in poll() on a wake pipe and the upstream
 * sockets. Other threads touch only the input queue (qmu) and the data the
 * answers come from (mu: config, hosts, fallback servers).
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "client-agent/dns_msg.h"
#include "client-agent/resolver.h"
#include "common/log.h"
#include "common/util.h"

enum {
	QPKT = 1500,			/* TUN packets are at most the MTU (1280) */
	TCP_IN_MAX = 2 + 4096,		/* one pending query per connection buffer */
	TCP_IDLE_MS = 10000,
	TCP_MSS = 1240,			/* 1280 - 40 */
	MTU = 1280,
	RL_SOURCES = 8,
	IPPROTO_UDP_ = 17,
	IPPROTO_TCP_ = 6,
	TH_FIN = 0x01, TH_SYN = 0x02, TH_RST = 0x04, TH_PSH = 0x08, TH_ACK = 0x10,
};

struct client {
	bool tcp;
	int conn;			/* TCP: index and generation */
	uint32_t gen;
	struct ip_addr src, dst;	/* the querier and the service address it used */
	uint16_t sport;
};

enum pstate { P_FREE, P_UDP, P_TCP_CONN, P_TCP_IO };

struct pend {
	enum pstate st;
	struct client c;
	struct dns_query q;
	uint16_t up_id;
	uint8_t *msg;			/* the query as the client sent it */
	size_t len, max_udp;
	struct ip_addr ups[RESOLVER_MAX_NS];
	size_t nups, cur, tries;
	int fd;
	int64_t try_deadline, give_up;
	uint8_t *tbuf;			/* TCP: length prefix and answer */
	size_t tlen, twant, tsent;
};

enum tstate { T_FREE, T_SYN_RCVD, T_EST, T_FIN_SENT };

struct tconn {
	enum tstate st;
	uint32_t gen;
	struct ip_addr cli, srv;
	uint16_t cport;
	uint32_t snd_nxt, rcv_nxt;
	uint16_t mss;
	bool peer_fin;
	int pending;
	size_t inlen;
	int64_t last_ms;
	uint8_t in[TCP_IN_MAX];
};

struct rl {
	struct ip_addr src;
	double tokens;
	int64_t last_ms;
};

struct resolver {
	int tun_fd;
	unsigned rate;
	pthread_t thr;
	atomic_bool stop;
	int wake[2];

	pthread_mutex_t qmu;
	uint8_t (*q)[QPKT];
	uint16_t *qlen;
	unsigned qhead, qn;

	pthread_mutex_t mu;
	struct resolver_config cfg;
	struct resolver_host *hosts;	/* sorted by name */
	size_t nhosts;
	struct ip_addr self4, self6;
	struct ip_addr fb[RESOLVER_MAX_NS];
	size_t nfb;

	/* the thread's own */
	struct pend pend[RESOLVER_MAX_PENDING];
	struct tconn *tcp;
	uint32_t tgen;
	struct rl rl[RL_SOURCES];
	uint8_t ubuf[DNS_MAX_MSG];

	atomic_uint_fast64_t st[sizeof(struct resolver_stats) / sizeof(uint64_t)];
};

#define COUNT(r, field) \
	atomic_fetch_add(&(r)->st[offsetof(struct resolver_stats, field) / sizeof(uint64_t)], 1)

static struct ip_addr svc4, svc6;
static pthread_once_t svc_once = PTHREAD_ONCE_INIT;

static void
svc_init(void)
{
	if (addr_parse(RESOLVER_ADDR4, &svc4) != 0 || addr_parse(RESOLVER_ADDR6, &svc6) != 0)
		abort();	/* constants */
}

static uint16_t
rd16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static uint32_t
rd32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void
wr16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static void
wr32(uint8_t *p, uint32_t v)
{
	wr16(p, (uint16_t)(v >> 16));
	wr16(p + 2, (uint16_t)v);
}

/* ---- IP packets ---- */

struct ipinfo {
	struct ip_addr src, dst;
	uint8_t proto;
	const uint8_t *l4;
	size_t l4len;
};

static bool
ip_parse(const uint8_t *p, size_t n, struct ipinfo *i)
{
	memset(i, 0, sizeof(*i));
	if (n < 20)
		return false;
	if (p[0] >> 4 == 4) {
		size_t ihl = (size_t)(p[0] & 0xF) * 4, tot = rd16(p + 2);

		if (ihl < 20 || tot < ihl || tot > n || (rd16(p + 6) & 0x3FFF) != 0)
			return false;	/* fragments are not for us */
		i->src.family = i->dst.family = AF_INET;
		memcpy(i->src.b, p + 12, 4);
		memcpy(i->dst.b, p + 16, 4);
		i->proto = p[9];
		i->l4 = p + ihl;
		i->l4len = tot - ihl;
		return true;
	}
	if (p[0] >> 4 == 6 && n >= 40) {
		size_t pl = rd16(p + 4);

		if (40 + pl > n)
			return false;
		i->src.family = i->dst.family = AF_INET6;
		memcpy(i->src.b, p + 8, 16);
		memcpy(i->dst.b, p + 24, 16);
		i->proto = p[6];	/* extension headers: not for us */
		i->l4 = p + 40;
		i->l4len = pl;
		return true;
	}
	return false;
}

bool
resolver_wants(const uint8_t *pkt, size_t len)
{
	static const uint8_t a4[4] = { 100, 100, 100, 100 };
	static const uint8_t a6[16] = { 0xfd, 0x7a, 0x11, 0x5c, 0xa1, 0xe0, 0, 0, 0, 0, 0, 0, 0, 0,
					0, 0x53 };

	if (len >= 20 && pkt[0] >> 4 == 4)
		return memcmp(pkt + 16, a4, 4) == 0;
	if (len >= 40 && pkt[0] >> 4 == 6)
		return memcmp(pkt + 24, a6, 16) == 0;
	return false;
}

static uint32_t
csum_add(uint32_t s, const uint8_t *p, size_t n)
{
	for (; n > 1; p += 2, n -= 2)
		s += rd16(p);
	if (n)
		s += (uint32_t)p[0] << 8;
	return s;
}

static uint16_t
csum_fold(uint32_t s)
{
	while (s >> 16)
		s = (s & 0xFFFF) + (s >> 16);
	return (uint16_t)~s;
}

/* Writes an IP packet from `src` to `dst` with the L4 bytes in l4 (its
 * checksum field at `csum_off` is filled here). */
static void
ip_send(struct resolver *r, const struct ip_addr *src, const struct ip_addr *dst, uint8_t proto,
	uint8_t *l4, size_t l4len, size_t csum_off)
{
	uint8_t pkt[MTU + 64];
	uint8_t ph[40];
	size_t hl = src->family == AF_INET ? 20 : 40, al = (size_t)addr_len(src);
	uint32_t s = 0;

	if (hl + l4len > sizeof(pkt) || hl + l4len > MTU) {
		COUNT(r, bad_packets);
		return;
	}
	wr16(l4 + csum_off, 0);
	memcpy(ph, src->b, al);
	memcpy(ph + al, dst->b, al);
	s = csum_add(s, ph, 2 * al);
	s += proto;
	s += (uint32_t)l4len;
	s = csum_add(s, l4, l4len);
	wr16(l4 + csum_off, csum_fold(s));
	if (proto == IPPROTO_UDP_ && rd16(l4 + csum_off) == 0)
		wr16(l4 + csum_off, 0xFFFF);
	memset(pkt, 0, hl);
	if (src->family == AF_INET) {
		pkt[0] = 0x45;
		wr16(pkt + 2, (uint16_t)(20 + l4len));
		wr16(pkt + 6, 0x4000);		/* DF */
		pkt[8] = 64;
		pkt[9] = proto;
		memcpy(pkt + 12, src->b, 4);
		memcpy(pkt + 16, dst->b, 4);
		wr16(pkt + 10, csum_fold(csum_add(0, pkt, 20)));
	} else {
		pkt[0] = 0x60;
		wr16(pkt + 4, (uint16_t)l4len);
		pkt[6] = proto;
		pkt[7] = 64;
		memcpy(pkt + 8, src->b, 16);
		memcpy(pkt + 24, dst->b, 16);
	}
	memcpy(pkt + hl, l4, l4len);
	if (r->tun_fd >= 0 && write(r->tun_fd, pkt, hl + l4len) < 0)
		COUNT(r, bad_packets);
}

static void
udp_send(struct resolver *r, const struct client *c, const uint8_t *msg, size_t len)
{
	uint8_t l4[8 + MTU];

	if (len + 8 > sizeof(l4))
		return;
	wr16(l4, 53);
	wr16(l4 + 2, c->sport);
	wr16(l4 + 4, (uint16_t)(8 + len));
	memcpy(l4 + 8, msg, len);
	ip_send(r, &c->dst, &c->src, IPPROTO_UDP_, l4, 8 + len, 6);
}

static void
tcp_seg(struct resolver *r, struct tconn *t, uint8_t flags, const uint8_t *data, size_t len)
{
	uint8_t l4[24 + TCP_MSS];
	size_t hl = flags & TH_SYN ? 24 : 20;
	size_t room = TCP_IN_MAX - t->inlen;

	memset(l4, 0, hl);
	wr16(l4, 53);
	wr16(l4 + 2, t->cport);
	wr32(l4 + 4, t->snd_nxt);
	wr32(l4 + 8, t->rcv_nxt);
	l4[12] = (uint8_t)((hl / 4) << 4);
	l4[13] = flags;
	wr16(l4 + 14, (uint16_t)(room > 65535 ? 65535 : room));
	if (flags & TH_SYN) {
		l4[20] = 2;		/* MSS */
		l4[21] = 4;
		wr16(l4 + 22, TCP_MSS);
	}
	if (len > 0)
		memcpy(l4 + hl, data, len);
	ip_send(r, &t->srv, &t->cli, IPPROTO_TCP_, l4, hl + len, 16);
	t->snd_nxt += (uint32_t)len + ((flags & (TH_SYN | TH_FIN)) ? 1 : 0);
}

/* Sends a DNS message on a TCP connection: length prefix, MSS-sized
 * segments. */
static void
tcp_send_msg(struct resolver *r, struct tconn *t, const uint8_t *msg, size_t len)
{
	size_t mss = t->mss ? t->mss : 536, off = 0, total = len + 2;

	if (mss > TCP_MSS)
		mss = TCP_MSS;
	if (t->srv.family == AF_INET6 && mss > MTU - 60)
		mss = MTU - 60;
	while (off < total) {
		uint8_t seg[TCP_MSS];
		size_t n = total - off < mss ? total - off : mss;

		for (size_t i = 0; i < n; i++) {
			size_t at = off + i;

			seg[i] = at == 0 ? (uint8_t)(len >> 8) : at == 1 ? (uint8_t)len : msg[at - 2];
		}
		tcp_seg(r, t, TH_ACK | (off + n == total ? TH_PSH : 0), seg, n);
		off += n;
	}
}

static void
tcp_maybe_close(struct resolver *r, struct tconn *t)
{
	if (t->peer_fin && t->pending == 0 && t->st == T_EST) {
		tcp_seg(r, t, TH_FIN | TH_ACK, NULL, 0);
		t->st = T_FIN_SENT;
	}
}

/* ---- answers to a client ---- */

static void
reply(struct resolver *r, const struct client *c, const uint8_t *msg, size_t len)
{
	if (!c->tcp) {
		udp_send(r, c, msg, len);
		return;
	}
	if (c->conn >= 0 && c->conn < RESOLVER_MAX_TCP) {
		struct tconn *t = &r->tcp[c->conn];

		if (t->st != T_FREE && t->gen == c->gen) {
			if (t->pending > 0)
				t->pending--;
			if (t->st == T_EST)
				tcp_send_msg(r, t, msg, len);
			tcp_maybe_close(r, t);
		}
	}
}

/* No answer to this query (dropped): a TCP connection stops waiting for it. */
static void
reply_none(struct resolver *r, const struct client *c)
{
	if (c->tcp && c->conn >= 0 && c->conn < RESOLVER_MAX_TCP) {
		struct tconn *t = &r->tcp[c->conn];

		if (t->st != T_FREE && t->gen == c->gen) {
			if (t->pending > 0)
				t->pending--;
			tcp_maybe_close(r, t);
		}
	}
}

static size_t
client_max_udp(const struct client *c, const struct dns_query *q)
{
	size_t cap = MTU - (c->src.family == AF_INET ? 28 : 48);
	size_t want = q->edns && q->edns_size > DNS_UDP_MIN ? q->edns_size : DNS_UDP_MIN;

	if (c->tcp)
		return DNS_MAX_MSG;
	return want < cap ? want : cap;
}

static void
reply_code(struct resolver *r, const struct client *c, const struct dns_query *q, int rcode)
{
	uint8_t buf[DNS_HDR_LEN + DNS_WIRE_NAME_MAX + 4];
	size_t n = dns_reply_simple(buf, sizeof(buf), q, rcode, false);

	if (rcode == DNS_RC_SERVFAIL)
		COUNT(r, servfail);
	if (n)
		reply(r, c, buf, n);
}

/* ---- local data ---- */

static int
host_cmp(const void *a, const void *b)
{
	return strcmp(((const struct resolver_host *)a)->name, ((const struct resolver_host *)b)->name);
}

static const struct resolver_host *
host_find(struct resolver *r, const char *label)
{
	struct resolver_host key;

	if (strlen(label) >= sizeof(key.name))
		return NULL;
	str_copy(key.name, label, sizeof(key.name));
	return bsearch(&key, r->hosts, r->nhosts, sizeof(*r->hosts), host_cmp);
}

static bool
in_tailnet(const struct ip_addr *a)
{
	if (a->family == AF_INET)
		return a->b[0] == 100 && (a->b[1] & 0xC0) == 64;
	return memcmp(a->b, svc6.b, 6) == 0;
}

static bool
add_host_addrs(struct dns_builder *b, const struct resolver_host *h, const char *owner,
	       uint16_t qtype)
{
	bool ok = true;

	if ((qtype == DNS_T_A || qtype == DNS_T_ANY) && h->a4.family)
		ok = dns_build_addr(b, owner, RESOLVER_TTL, &h->a4);
	if (ok && (qtype == DNS_T_AAAA || qtype == DNS_T_ANY) && h->a6.family)
		ok = dns_build_addr(b, owner, RESOLVER_TTL, &h->a6);
	return ok;
}

/* The answer from local data, or 0: forward. Called with r->mu. */
static size_t
local_answer_locked(struct resolver *r, const struct dns_query *q, uint8_t *out, size_t cap)
{
	const struct resolver_config *c = &r->cfg;
	const char *name = q->name;
	struct dns_builder b;
	struct ip_addr ip;
	bool found = false, any_name = false;
	size_t blen = strlen(c->base_domain), nlen = strlen(name);

	if (q->qclass != DNS_C_IN && q->qclass != DNS_T_ANY)
		return 0;
	/* extra records: exact names, anywhere */
	for (size_t i = 0; i < c->nextra; i++) {
		if (strcmp(c->extra[i].name, name) != 0)
			continue;
		if (!any_name && dns_build_begin(&b, out, cap, q, DNS_RC_NOERROR, true) != 0)
			return 0;
		any_name = true;
		if ((q->qtype == DNS_T_ANY ||
		    q->qtype == (c->extra[i].addr.family == AF_INET ? DNS_T_A : DNS_T_AAAA)))
			(void)dns_build_addr(&b, name, RESOLVER_TTL, &c->extra[i].addr);
	}
	if (any_name)
		return dns_build_end(&b);
	if (!c->magic_dns || blen == 0)
		return 0;
	if (dnsname_under(name, c->base_domain)) {
		const struct resolver_host *h = NULL;
		char label[DNSNAME_MAX];

		if (nlen > blen) {
			snprintf(label, sizeof(label), "%.*s", (int)(nlen - blen - 1), name);
			if (strchr(label, '.') == NULL)
				h = host_find(r, label);
		}
		if (dns_build_begin(&b, out, cap, q, h || nlen == blen ? DNS_RC_NOERROR :
		    DNS_RC_NXDOMAIN, true) != 0)
			return 0;
		if (h)
			(void)add_host_addrs(&b, h, name, q->qtype);
		else if (nlen != blen)
			COUNT(r, nxdomain);
		return dns_build_end(&b);
	}
	if (strchr(name, '.') == NULL && name[0]) {
		const struct resolver_host *h = host_find(r, name);

		if (h == NULL || dns_build_begin(&b, out, cap, q, DNS_RC_NOERROR, true) != 0)
			return 0;
		(void)add_host_addrs(&b, h, name, q->qtype);
		return dns_build_end(&b);
	}
	if ((q->qtype == DNS_T_PTR || q->qtype == DNS_T_ANY) && dns_ptr_addr(name, &ip) &&
	    in_tailnet(&ip)) {
		for (size_t i = 0; i < r->nhosts && !found; i++) {
			const struct resolver_host *h = &r->hosts[i];
			char target[DNSNAME_MAX];

			if (!addr_equal(&h->a4, &ip) && !addr_equal(&h->a6, &ip))
				continue;
			found = true;
			if (dns_build_begin(&b, out, cap, q, DNS_RC_NOERROR, true) != 0)
				return 0;
			int n = snprintf(target, sizeof(target), "%s.%s", h->name, c->base_domain);

			/* name + base_domain longer than a DNS name: no PTR record */
			if (n > 0 && (size_t)n < sizeof(target))
				(void)dns_build_ptr(&b, name, RESOLVER_TTL, target);
		}
		if (!found) {
			if (dns_build_begin(&b, out, cap, q, DNS_RC_NXDOMAIN, true) != 0)
				return 0;
			COUNT(r, nxdomain);
		}
		return dns_build_end(&b);
	}
	return 0;
}

size_t
resolver_answer_local(struct resolver *r, const uint8_t *msg, size_t len, uint8_t *out, size_t cap)
{
	struct dns_query q;
	size_t n;

	if (dns_query_parse(msg, len, &q) != 0)
		return 0;
	pthread_mutex_lock(&r->mu);
	n = local_answer_locked(r, &q, out, cap);
	pthread_mutex_unlock(&r->mu);
	return n;
}

/* ---- forwarding ---- */

static void
pend_close(struct pend *p)
{
	if (p->fd >= 0)
		close(p->fd);
	p->fd = -1;
	free(p->msg);
	free(p->tbuf);
	p->msg = p->tbuf = NULL;
	p->st = P_FREE;
}

static void
pend_fail(struct resolver *r, struct pend *p)
{
	reply_code(r, &p->c, &p->q, DNS_RC_SERVFAIL);
	pend_close(p);
}

static int
up_socket(const struct ip_addr *a, int type)
{
	struct endpoint ep = { .addr = *a, .port = 53 };
	struct sockaddr_storage ss;
	socklen_t sl = endpoint_to_sockaddr(&ep, &ss);
	int fd = socket(a->family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return -1;
	if (connect(fd, (struct sockaddr *)&ss, sl) != 0 && errno != EINPROGRESS) {
		close(fd);
		return -1;
	}
	return fd;
}

static void next_try(struct resolver *r, struct pend *p, int64_t now);

/* One UDP try to ups[cur]. */
static void
start_try(struct resolver *r, struct pend *p, int64_t now)
{
	if (p->fd >= 0)
		close(p->fd);
	p->tries++;
	p->st = P_UDP;
	p->try_deadline = now + RESOLVER_TRY_MS;
	wr16(p->msg, p->up_id);
	if ((p->fd = up_socket(&p->ups[p->cur], SOCK_DGRAM)) < 0 ||
	    send(p->fd, p->msg, p->len, 0) < 0) {
		next_try(r, p, now);
		return;
	}
	COUNT(r, forwarded);
}

static void
next_try(struct resolver *r, struct pend *p, int64_t now)
{
	if (p->tries >= 2 * p->nups || now >= p->give_up) {
		pend_fail(r, p);
		return;
	}
	p->cur = (p->cur + 1) % p->nups;
	p->up_id = (uint16_t)random_u32(65536);
	start_try(r, p, now);
}

static void
start_tcp(struct resolver *r, struct pend *p, int64_t now)
{
	COUNT(r, tcp_fallbacks);
	if (p->fd >= 0)
		close(p->fd);
	p->st = P_TCP_CONN;
	p->try_deadline = now + RESOLVER_TRY_MS;
	if (p->tbuf == NULL && (p->tbuf = malloc(2 + DNS_MAX_MSG)) == NULL) {
		pend_fail(r, p);
		return;
	}
	p->tlen = p->tsent = 0;
	p->twant = 2;
	if ((p->fd = up_socket(&p->ups[p->cur], SOCK_STREAM)) < 0)
		next_try(r, p, now);
}

/* An answer from upstream: checked against the question, then to the client. */
static void
deliver(struct resolver *r, struct pend *p, uint8_t *msg, size_t len, bool via_tcp, int64_t now)
{
	struct dns_msg_info mi;

	if (dns_msg_parse(msg, len, &mi) != 0 || mi.id != p->up_id || !(mi.flags & DNS_F_QR) ||
	    mi.qd != 1 || strcmp(mi.qname, p->q.name) != 0 || mi.qtype != p->q.qtype) {
		COUNT(r, upstream_bad);
		if (via_tcp)
			next_try(r, p, now);
		return;		/* UDP: maybe spoofed; the right answer may still come */
	}
	if ((mi.flags & DNS_F_TC) && !via_tcp) {
		start_tcp(r, p, now);
		return;
	}
	wr16(msg, p->q.id);
	if (len > p->max_udp) {
		uint8_t buf[DNS_HDR_LEN + DNS_WIRE_NAME_MAX + 4];
		size_t n = dns_reply_simple(buf, sizeof(buf), &p->q, mi.flags & 0xF, true);

		COUNT(r, truncated);
		if (n)
			reply(r, &p->c, buf, n);
	} else {
		reply(r, &p->c, msg, len);
	}
	pend_close(p);
}

static void
pend_io(struct resolver *r, struct pend *p, short revents, int64_t now)
{
	ssize_t n;

	if (p->st == P_UDP) {
		n = recv(p->fd, r->ubuf, sizeof(r->ubuf), 0);
		if (n < 0) {
			if (errno != EAGAIN && errno != EINTR)
				next_try(r, p, now);	/* refused: the next one now */
			return;
		}
		deliver(r, p, r->ubuf, (size_t)n, false, now);
		return;
	}
	if (p->st == P_TCP_CONN) {
		int err = 0;
		socklen_t el = sizeof(err);
		uint8_t hdr[2];

		if (getsockopt(p->fd, SOL_SOCKET, SO_ERROR, &err, &el) != 0 || err != 0) {
			next_try(r, p, now);
			return;
		}
		wr16(hdr, (uint16_t)p->len);
		wr16(p->msg, p->up_id);
		if (send(p->fd, hdr, 2, MSG_MORE | MSG_NOSIGNAL) != 2 ||
		    send(p->fd, p->msg, p->len, MSG_NOSIGNAL) != (ssize_t)p->len) {
			next_try(r, p, now);
			return;
		}
		p->st = P_TCP_IO;
		return;
	}
	n = recv(p->fd, p->tbuf + p->tlen, p->twant - p->tlen, 0);
	if (n <= 0) {
		if (n == 0 || (errno != EAGAIN && errno != EINTR))
			next_try(r, p, now);
		return;
	}
	p->tlen += (size_t)n;
	if (p->tlen < p->twant)
		return;
	if (p->twant == 2) {
		p->twant = 2 + rd16(p->tbuf);
		if (p->twant == 2)
			next_try(r, p, now);
		return;
	}
	deliver(r, p, p->tbuf + 2, p->tlen - 2, true, now);
	(void)revents;
}

/* Chooses the upstreams for a name: split, global, the host's own. */
static size_t
upstreams_locked(struct resolver *r, const char *name, struct ip_addr *out)
{
	const struct resolver_config *c = &r->cfg;
	size_t best = 0, bestlen = 0;
	bool have = false;

	for (size_t i = 0; i < c->nsplit; i++) {
		size_t l = strlen(c->split[i].domain);

		if (dnsname_under(name, c->split[i].domain) && (!have || l > bestlen)) {
			best = i;
			bestlen = l;
			have = true;
		}
	}
	if (have) {
		memcpy(out, c->split[best].ns, c->split[best].nns * sizeof(*out));
		return c->split[best].nns;
	}
	if (c->nglobal) {
		memcpy(out, c->global, c->nglobal * sizeof(*out));
		return c->nglobal;
	}
	memcpy(out, r->fb, r->nfb * sizeof(*out));
	return r->nfb;
}

static void
forward(struct resolver *r, const struct client *c, const struct dns_query *q,
	const uint8_t *msg, size_t len, int64_t now)
{
	struct pend *p = NULL;
	struct ip_addr ups[RESOLVER_MAX_NS];
	size_t nups;

	pthread_mutex_lock(&r->mu);
	nups = upstreams_locked(r, q->name, ups);
	pthread_mutex_unlock(&r->mu);
	if (nups == 0) {
		reply_code(r, c, q, DNS_RC_SERVFAIL);
		return;
	}
	for (size_t i = 0; i < RESOLVER_MAX_PENDING && p == NULL; i++)
		if (r->pend[i].st == P_FREE)
			p = &r->pend[i];
	if (p == NULL || (p->msg = malloc(len)) == NULL) {
		COUNT(r, pending_full);
		reply_code(r, c, q, DNS_RC_SERVFAIL);
		return;
	}
	memcpy(p->msg, msg, len);
	p->len = len;
	p->c = *c;
	p->q = *q;
	p->max_udp = client_max_udp(c, q);
	memcpy(p->ups, ups, nups * sizeof(*ups));
	p->nups = nups;
	p->cur = 0;
	p->tries = 0;
	p->fd = -1;
	p->tbuf = NULL;
	p->give_up = now + RESOLVER_GIVE_UP_MS;
	p->up_id = (uint16_t)random_u32(65536);
	start_try(r, p, now);
}

/* ---- queries ---- */

static bool
rate_ok(struct resolver *r, const struct ip_addr *src, int64_t now)
{
	struct rl *e = NULL, *old = &r->rl[0];

	if (r->rate == 0)
		return true;
	for (size_t i = 0; i < RL_SOURCES && e == NULL; i++) {
		if (r->rl[i].src.family && addr_equal(&r->rl[i].src, src))
			e = &r->rl[i];
		else if (r->rl[i].last_ms < old->last_ms)
			old = &r->rl[i];
	}
	if (e == NULL) {
		e = old;
		e->src = *src;
		e->tokens = 2.0 * r->rate;
		e->last_ms = now;
	}
	e->tokens += (double)(now - e->last_ms) * r->rate / 1000.0;
	if (e->tokens > 2.0 * r->rate)
		e->tokens = 2.0 * r->rate;
	e->last_ms = now;
	if (e->tokens < 1.0)
		return false;
	e->tokens -= 1.0;
	return true;
}

static void
query(struct resolver *r, const struct client *c, const uint8_t *msg, size_t len, int64_t now)
{
	struct dns_query q;
	uint8_t out[MTU];
	size_t n, max;

	COUNT(r, queries);
	if (!rate_ok(r, &c->src, now)) {
		COUNT(r, rate_limited);
		reply_none(r, c);
		return;
	}
	if (dns_query_parse(msg, len, &q) != 0) {
		COUNT(r, formerr);
		if (!dns_header_ok(msg, len) || (msg[2] & 0x80)) {
			reply_none(r, c);
		} else {
			uint8_t hdr[DNS_HDR_LEN] = { 0 };

			memcpy(hdr, msg, 2);
			hdr[2] = (uint8_t)(0x80 | (msg[2] & 0x79));
			hdr[3] = DNS_RC_FORMERR;
			reply(r, c, hdr, sizeof(hdr));
		}
		return;
	}
	if ((q.flags & 0x7800) != 0) {
		reply_code(r, c, &q, DNS_RC_NOTIMP);
		return;
	}
	max = client_max_udp(c, &q);
	pthread_mutex_lock(&r->mu);
	n = local_answer_locked(r, &q, out, max < sizeof(out) ? max : sizeof(out));
	pthread_mutex_unlock(&r->mu);
	if (n > 0) {
		COUNT(r, local);
		reply(r, c, out, n);
		return;
	}
	forward(r, c, &q, msg, len, now);
}

/* ---- TCP ---- */

static struct tconn *
tcp_find(struct resolver *r, const struct ipinfo *ip, uint16_t sport, int *idx)
{
	for (int i = 0; i < RESOLVER_MAX_TCP; i++) {
		struct tconn *t = &r->tcp[i];

		if (t->st != T_FREE && t->cport == sport && addr_equal(&t->cli, &ip->src) &&
		    addr_equal(&t->srv, &ip->dst)) {
			*idx = i;
			return t;
		}
	}
	return NULL;
}

static void
tcp_rst(struct resolver *r, const struct ipinfo *ip, uint16_t sport, uint32_t seq, uint32_t ack)
{
	struct tconn t;

	memset(&t, 0, sizeof(t));
	t.cli = ip->src;
	t.srv = ip->dst;
	t.cport = sport;
	t.snd_nxt = seq;
	t.rcv_nxt = ack;
	t.inlen = TCP_IN_MAX;
	tcp_seg(r, &t, TH_RST | TH_ACK, NULL, 0);
}

static void
tcp_input(struct resolver *r, const struct ipinfo *ip, int64_t now)
{
	const uint8_t *h = ip->l4;
	size_t hl, dlen;
	uint16_t sport;
	uint32_t seq, ack;
	uint8_t fl;
	struct tconn *t;
	int idx = -1;

	if (ip->l4len < 20 || rd16(h + 2) != 53) {
		COUNT(r, bad_packets);
		return;
	}
	hl = (size_t)(h[12] >> 4) * 4;
	if (hl < 20 || hl > ip->l4len) {
		COUNT(r, bad_packets);
		return;
	}
	sport = rd16(h);
	seq = rd32(h + 4);
	ack = rd32(h + 8);
	fl = h[13];
	dlen = ip->l4len - hl;
	t = tcp_find(r, ip, sport, &idx);
	if (fl & TH_RST) {
		if (t)
			t->st = T_FREE;
		return;
	}
	if (fl & TH_SYN) {
		uint16_t mss = 536;

		if (t != NULL)		/* a retransmitted SYN: answer again */
			t->st = T_FREE;
		for (int i = 0; i < RESOLVER_MAX_TCP && t == NULL; i++)
			if (r->tcp[i].st == T_FREE) {
				t = &r->tcp[i];
				idx = i;
			}
		if (t == NULL || (fl & TH_ACK)) {
			tcp_rst(r, ip, sport, (fl & TH_ACK) ? ack : 0, seq + 1);
			return;
		}
		for (size_t o = 20; o + 1 < hl; ) {
			uint8_t kind = h[o];

			if (kind == 0)
				break;
			if (kind == 1) {
				o++;
				continue;
			}
			if (h[o + 1] < 2 || o + h[o + 1] > hl)
				break;
			if (kind == 2 && h[o + 1] == 4)
				mss = rd16(h + o + 2);
			o += h[o + 1];
		}
		memset(t, 0, offsetof(struct tconn, in));
		t->st = T_SYN_RCVD;
		t->gen = ++r->tgen;
		t->cli = ip->src;
		t->srv = ip->dst;
		t->cport = sport;
		t->rcv_nxt = seq + 1;
		t->snd_nxt = random_u32(UINT32_MAX);
		t->mss = mss < 64 ? 64 : mss;
		t->last_ms = now;
		COUNT(r, tcp_conns);
		tcp_seg(r, t, TH_SYN | TH_ACK, NULL, 0);
		return;
	}
	if (t == NULL) {
		if (!(fl & TH_RST))
			tcp_rst(r, ip, sport, (fl & TH_ACK) ? ack : 0, seq + (uint32_t)dlen);
		return;
	}
	t->last_ms = now;
	if (t->st == T_SYN_RCVD && (fl & TH_ACK) && ack == t->snd_nxt)
		t->st = T_EST;
	if (t->st == T_FIN_SENT && (fl & TH_ACK) && ack == t->snd_nxt && dlen == 0 &&
	    !(fl & TH_FIN)) {
		t->st = T_FREE;
		return;
	}
	if (seq != t->rcv_nxt) {
		if (dlen > 0 || (fl & TH_FIN))
			tcp_seg(r, t, TH_ACK, NULL, 0);	/* out of order: say where we are */
		return;
	}
	if (dlen > 0) {
		if (t->st != T_EST || dlen > TCP_IN_MAX - t->inlen) {
			/* more than one query's worth unread: drop it; the client resends */
			tcp_seg(r, t, TH_ACK, NULL, 0);
			return;
		}
		memcpy(t->in + t->inlen, h + hl, dlen);
		t->inlen += dlen;
		t->rcv_nxt += (uint32_t)dlen;
	}
	if (fl & TH_FIN) {
		t->rcv_nxt++;
		t->peer_fin = true;
	}
	if (dlen > 0 || (fl & TH_FIN))
		tcp_seg(r, t, TH_ACK, NULL, 0);
	while (t->inlen >= 2 && t->inlen >= 2 + (size_t)rd16(t->in)) {
		size_t ml = rd16(t->in);
		struct client c = { .tcp = true, .conn = idx, .gen = t->gen, .src = t->cli,
				    .dst = t->srv, .sport = t->cport };
		uint8_t msg[TCP_IN_MAX];

		memcpy(msg, t->in + 2, ml);
		memmove(t->in, t->in + 2 + ml, t->inlen - 2 - ml);
		t->inlen -= 2 + ml;
		t->pending++;
		query(r, &c, msg, ml, now);	/* may answer (and close) at once */
		if (t->st == T_FREE || t->gen != c.gen)
			return;
	}
	tcp_maybe_close(r, t);
}

/* ---- packets ---- */

static void
packet(struct resolver *r, const uint8_t *pkt, size_t len, int64_t now)
{
	struct ipinfo ip;
	struct ip_addr s4, s6;
	bool local;

	if (!ip_parse(pkt, len, &ip)) {
		COUNT(r, bad_packets);
		return;
	}
	pthread_mutex_lock(&r->mu);
	s4 = r->self4;
	s6 = r->self6;
	pthread_mutex_unlock(&r->mu);
	local = (s4.family && addr_equal(&ip.src, &s4)) || (s6.family && addr_equal(&ip.src, &s6));
	if (!local) {
		COUNT(r, not_local);
		return;
	}
	if (ip.proto == IPPROTO_UDP_) {
		struct client c = { .tcp = false, .conn = -1, .src = ip.src, .dst = ip.dst };
		size_t ul;

		if (ip.l4len < 8 || rd16(ip.l4 + 2) != 53 || (ul = rd16(ip.l4 + 4)) < 8 ||
		    ul > ip.l4len) {
			COUNT(r, bad_packets);
			return;
		}
		c.sport = rd16(ip.l4);
		query(r, &c, ip.l4 + 8, ul - 8, now);
	} else if (ip.proto == IPPROTO_TCP_) {
		tcp_input(r, &ip, now);
	} else {
		COUNT(r, bad_packets);
	}
}

static void *
resolver_main(void *arg)
{
	struct resolver *r = arg;
	struct pollfd pfd[1 + RESOLVER_MAX_PENDING];
	int map[1 + RESOLVER_MAX_PENDING];
	uint8_t *pkt = malloc(QPKT);

	while (pkt && !atomic_load(&r->stop)) {
		int64_t now = time_mono_ms(), next = now + 500;
		nfds_t n = 1;

		pfd[0].fd = r->wake[0];
		pfd[0].events = POLLIN;
		for (int i = 0; i < RESOLVER_MAX_PENDING; i++) {
			struct pend *p = &r->pend[i];

			if (p->st == P_FREE || p->fd < 0)
				continue;
			pfd[n].fd = p->fd;
			pfd[n].events = p->st == P_TCP_CONN ? POLLOUT : POLLIN;
			map[n++] = i;
			if (p->try_deadline < next)
				next = p->try_deadline;
		}
		if (poll(pfd, n, (int)(next > now ? next - now : 0)) < 0 && errno != EINTR)
			break;
		now = time_mono_ms();
		if (pfd[0].revents & POLLIN) {
			char drain[64];

			while (read(r->wake[0], drain, sizeof(drain)) > 0)
				;
		}
		for (;;) {
			size_t len;

			pthread_mutex_lock(&r->qmu);
			if (r->qn == 0) {
				pthread_mutex_unlock(&r->qmu);
				break;
			}
			len = r->qlen[r->qhead];
			memcpy(pkt, r->q[r->qhead], len);
			r->qhead = (r->qhead + 1) % RESOLVER_QUEUE;
			r->qn--;
			pthread_mutex_unlock(&r->qmu);
			packet(r, pkt, len, now);
		}
		for (nfds_t k = 1; k < n; k++) {
			struct pend *p = &r->pend[map[k]];

			if (pfd[k].revents && p->st != P_FREE && p->fd == pfd[k].fd)
				pend_io(r, p, pfd[k].revents, now);
		}
		for (int i = 0; i < RESOLVER_MAX_PENDING; i++) {
			struct pend *p = &r->pend[i];

			if (p->st == P_FREE)
				continue;
			if (now >= p->give_up) {
				COUNT(r, upstream_timeouts);
				pend_fail(r, p);
			} else if (now >= p->try_deadline) {
				COUNT(r, upstream_timeouts);
				next_try(r, p, now);
			}
		}
		for (int i = 0; i < RESOLVER_MAX_TCP; i++)
			if (r->tcp[i].st != T_FREE && now - r->tcp[i].last_ms > TCP_IDLE_MS)
				r->tcp[i].st = T_FREE;
	}
	free(pkt);
	return NULL;
}

/* ---- public ---- */

int
resolver_new(int tun_fd, unsigned rate, struct resolver **out)
{
	struct resolver *r = calloc(1, sizeof(*r));

	*out = NULL;
	pthread_once(&svc_once, svc_init);
	if (r == NULL)
		return ERR_NOMEM;
	r->tun_fd = tun_fd;
	r->rate = rate;
	r->wake[0] = r->wake[1] = -1;
	pthread_mutex_init(&r->qmu, NULL);
	pthread_mutex_init(&r->mu, NULL);
	for (int i = 0; i < RESOLVER_MAX_PENDING; i++)
		r->pend[i].fd = -1;
	r->q = calloc(RESOLVER_QUEUE, sizeof(*r->q));
	r->qlen = calloc(RESOLVER_QUEUE, sizeof(*r->qlen));
	r->tcp = calloc(RESOLVER_MAX_TCP, sizeof(*r->tcp));
	if (r->q == NULL || r->qlen == NULL || r->tcp == NULL ||
	    pipe2(r->wake, O_NONBLOCK | O_CLOEXEC) != 0 ||
	    pthread_create(&r->thr, NULL, resolver_main, r) != 0) {
		if (r->wake[0] >= 0) {
			close(r->wake[0]);
			close(r->wake[1]);
		}
		free(r->q);
		free(r->qlen);
		free(r->tcp);
		free(r);
		return ERR_NOMEM;
	}
	*out = r;
	return 0;
}

void
resolver_free(struct resolver *r)
{
	if (r == NULL)
		return;
	atomic_store(&r->stop, true);
	if (write(r->wake[1], "x", 1) < 0)
		log_debug("msg=\"resolver wake failed\"");
	pthread_join(r->thr, NULL);
	for (int i = 0; i < RESOLVER_MAX_PENDING; i++)
		if (r->pend[i].st != P_FREE)
			pend_close(&r->pend[i]);
	close(r->wake[0]);
	close(r->wake[1]);
	free(r->q);
	free(r->qlen);
	free(r->tcp);
	free(r->hosts);
	pthread_mutex_destroy(&r->qmu);
	pthread_mutex_destroy(&r->mu);
	free(r);
}

void
resolver_input(struct resolver *r, const uint8_t *pkt, size_t len)
{
	bool wake;

	if (len > QPKT) {
		COUNT(r, queue_drops);
		return;
	}
	pthread_mutex_lock(&r->qmu);
	if (r->qn == RESOLVER_QUEUE) {
		pthread_mutex_unlock(&r->qmu);
		COUNT(r, queue_drops);
		return;
	}
	memcpy(r->q[(r->qhead + r->qn) % RESOLVER_QUEUE], pkt, len);
	r->qlen[(r->qhead + r->qn) % RESOLVER_QUEUE] = (uint16_t)len;
	wake = r->qn++ == 0;
	pthread_mutex_unlock(&r->qmu);
	if (wake && write(r->wake[1], "x", 1) < 0 && errno != EAGAIN)
		COUNT(r, queue_drops);
}

static void
addrs_from_json(json_t *arr, struct ip_addr *out, size_t *n, size_t max)
{
	size_t i;
	json_t *v;

	*n = 0;
	json_array_foreach(arr, i, v) {
		const char *s = json_string_value(v);

		if (*n < max && s && addr_parse(s, &out[*n]) == 0)
			(*n)++;
		else
			log_warn("msg=\"dns: nameserver skipped\" value=\"%s\"", s ? s : "?");
	}
}

static bool
name_ok(const char *s)
{
	char why[8];

	return s && dnsname_valid(s, why, sizeof(why));
}

void
resolver_config_from_json(json_t *dns, struct resolver_config *c)
{
	json_t *ns = json_object_get(dns, "nameservers"), *split = json_object_get(ns, "split"), *v;
	const char *key, *base = json_string_value(json_object_get(dns, "base_domain"));
	size_t i;

	memset(c, 0, sizeof(*c));
	if (name_ok(base))
		dnsname_norm(c->base_domain, base);
	c->magic_dns = json_is_true(json_object_get(dns, "magic_dns")) && c->base_domain[0];
	addrs_from_json(json_object_get(ns, "global"), c->global, &c->nglobal, RESOLVER_MAX_NS);
	json_object_foreach(split, key, v) {
		if (c->nsplit == RESOLVER_MAX_SPLIT || !name_ok(key))
			continue;
		dnsname_norm(c->split[c->nsplit].domain, key);
		addrs_from_json(v, c->split[c->nsplit].ns, &c->split[c->nsplit].nns, RESOLVER_MAX_NS);
		if (c->split[c->nsplit].nns)
			c->nsplit++;
	}
	json_array_foreach(json_object_get(dns, "search_domains"), i, v)
		if (c->nsearch < RESOLVER_MAX_SEARCH && name_ok(json_string_value(v)))
			dnsname_norm(c->search[c->nsearch++], json_string_value(v));
	json_array_foreach(json_object_get(dns, "extra_records"), i, v) {
		const char *n = json_string_value(json_object_get(v, "name"));
		const char *val = json_string_value(json_object_get(v, "value"));

		if (c->nextra < RESOLVER_MAX_EXTRA && name_ok(n) && val &&
		    addr_parse(val, &c->extra[c->nextra].addr) == 0) {
			dnsname_norm(c->extra[c->nextra].name, n);
			c->nextra++;
		}
	}
}

void
resolver_set_config(struct resolver *r, const struct resolver_config *c)
{
	pthread_mutex_lock(&r->mu);
	r->cfg = *c;
	pthread_mutex_unlock(&r->mu);
}

void
resolver_get_config(struct resolver *r, struct resolver_config *out)
{
	pthread_mutex_lock(&r->mu);
	*out = r->cfg;
	pthread_mutex_unlock(&r->mu);
}

void
resolver_set_hosts(struct resolver *r, const struct resolver_host *h, size_t n,
		   const struct ip_addr *self4, const struct ip_addr *self6)
{
	struct resolver_host *copy = n ? malloc(n * sizeof(*copy)) : NULL;
	size_t k = 0;

	if (n && copy == NULL)
		return;
	/* Names are unique; keep the first of any duplicate (self comes first). */
	for (size_t i = 0; i < n; i++) {
		if (h[i].name[0] == '\0')
			continue;
		copy[k] = h[i];
		for (char *c = copy[k].name; *c; c++)
			if (*c >= 'A' && *c <= 'Z')
				*c = (char)(*c - 'A' + 'a');
		k++;
	}
	if (k > 1)
		qsort(copy, k, sizeof(*copy), host_cmp);
	pthread_mutex_lock(&r->mu);
	free(r->hosts);
	r->hosts = copy;
	r->nhosts = k;
	memset(&r->self4, 0, sizeof(r->self4));
	memset(&r->self6, 0, sizeof(r->self6));
	if (self4)
		r->self4 = *self4;
	if (self6)
		r->self6 = *self6;
	pthread_mutex_unlock(&r->mu);
}

void
resolver_set_fallback(struct resolver *r, const struct ip_addr *ns, size_t n)
{
	pthread_mutex_lock(&r->mu);
	r->nfb = n < RESOLVER_MAX_NS ? n : RESOLVER_MAX_NS;
	memcpy(r->fb, ns, r->nfb * sizeof(*ns));
	pthread_mutex_unlock(&r->mu);
}

size_t
resolver_get_fallback(struct resolver *r, struct ip_addr *ns, size_t max)
{
	size_t n;

	pthread_mutex_lock(&r->mu);
	n = r->nfb < max ? r->nfb : max;
	memcpy(ns, r->fb, n * sizeof(*ns));
	pthread_mutex_unlock(&r->mu);
	return n;
}

void
resolver_stats(struct resolver *r, struct resolver_stats *out)
{
	uint64_t *o = (uint64_t *)out;

	for (size_t i = 0; i < sizeof(*out) / sizeof(uint64_t); i++)
		o[i] = atomic_load(&r->st[i]);
}
