// SPDX-License-Identifier: MIT
/*
 * `wiremesh dns status` asks wiremeshd over the local API; `wiremesh dns
 * query` is a DNS client of its own: it sends the query to the agent's
 * resolver (100.100.100.100, or fd7a:115c:a1e0::53 with -6) the way any
 * program on this node would, over UDP, and again over TCP when the answer
 * comes truncated (or with --tcp).
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <jansson.h>

#include "client-agent/dns_cli.h"
#include "client-agent/dns_msg.h"
#include "client-agent/localapi.h"
#include "client-agent/resolver.h"
#include "common/addr.h"
#include "common/util.h"

enum { QUERY_TIMEOUT_MS = 5000 };

static int
status(const char *sock, bool json_out)
{
	json_t *req = json_pack("{s:s}", "cmd", "dns_status"), *reply = NULL;
	char why[512];
	int rc = 1;

	if (localapi_call(sock, req, 10000, &reply, why, sizeof(why)) != 0) {
		fprintf(stderr, "wiremesh: %s\n", why);
	} else if (!json_is_true(json_object_get(reply, "ok"))) {
		fprintf(stderr, "wiremesh: %s\n",
		    json_string_value(json_object_get(reply, "error")) ?: "request failed");
	} else {
		if (json_out) {
			json_dumpf(json_object_get(reply, "data"), stdout,
			    JSON_INDENT(2) | JSON_SORT_KEYS);
			putchar('\n');
		} else {
			fputs(json_string_value(json_object_get(reply, "text")) ?: "", stdout);
		}
		rc = 0;
	}
	json_decref(req);
	json_decref(reply);
	return rc;
}

/* Encodes a query for `name` (RD, EDNS0 1232). */
static size_t
make_query(uint8_t *buf, size_t cap, const char *name, uint16_t type, uint16_t id)
{
	struct dns_builder b;
	struct dns_query q;
	size_t n;

	memset(&q, 0, sizeof(q));
	q.id = id;
	q.flags = DNS_F_RD;
	if (dns_build_begin(&b, buf, cap, &q, 0, false) != 0 || !dns_build_name(&b, name) ||
	    b.len + 4 > cap)
		return 0;
	buf[b.len++] = (uint8_t)(type >> 8);
	buf[b.len++] = (uint8_t)type;
	buf[b.len++] = 0;
	buf[b.len++] = DNS_C_IN;
	(void)dns_build_opt(&b, 1232);
	n = dns_build_end(&b);
	buf[2] = DNS_F_RD >> 8;	/* a query: no QR, no RA */
	buf[3] = 0;
	return n;
}

static int
wait_fd(int fd, short ev, int64_t deadline)
{
	struct pollfd p = { .fd = fd, .events = ev };
	int64_t left = deadline - time_mono_ms();

	if (left <= 0)
		return -1;
	return poll(&p, 1, (int)left) == 1 ? 0 : -1;
}

static ssize_t
exchange(const struct ip_addr *server, bool tcp, const uint8_t *q, size_t qlen, uint8_t *ans,
	 size_t cap, char *why, size_t whylen)
{
	struct endpoint ep = { .addr = *server, .port = 53 };
	struct sockaddr_storage ss;
	socklen_t sl = endpoint_to_sockaddr(&ep, &ss);
	int64_t deadline = time_mono_ms() + QUERY_TIMEOUT_MS;
	int fd = socket(server->family, (tcp ? SOCK_STREAM : SOCK_DGRAM) | SOCK_CLOEXEC, 0);
	ssize_t n = -1;

	if (fd < 0 || connect(fd, (struct sockaddr *)&ss, sl) != 0) {
		snprintf(why, whylen, "cannot reach the resolver: %s (is wiremeshd up?)",
		    strerror(errno));
		goto out;
	}
	if (!tcp) {
		if (send(fd, q, qlen, 0) != (ssize_t)qlen || wait_fd(fd, POLLIN, deadline) != 0 ||
		    (n = recv(fd, ans, cap, 0)) < 0) {
			snprintf(why, whylen, "no answer from the resolver in %d s%s%s",
			    QUERY_TIMEOUT_MS / 1000, errno ? ": " : "", errno ? strerror(errno) : "");
			n = -1;
		}
		goto out;
	}
	{
		uint8_t hdr[2] = { (uint8_t)(qlen >> 8), (uint8_t)qlen };
		size_t got = 0, want = 2;

		if (send(fd, hdr, 2, MSG_MORE | MSG_NOSIGNAL) != 2 ||
		    send(fd, q, qlen, MSG_NOSIGNAL) != (ssize_t)qlen) {
			snprintf(why, whylen, "cannot send to the resolver: %s", strerror(errno));
			goto out;
		}
		while (got < want) {
			ssize_t r;

			if (wait_fd(fd, POLLIN, deadline) != 0 ||
			    (r = recv(fd, got < 2 ? hdr + got : ans + got - 2, want - got, 0)) <= 0) {
				snprintf(why, whylen, "no answer from the resolver over TCP");
				goto out;
			}
			got += (size_t)r;
			if (got == 2) {
				want = 2 + (size_t)(hdr[0] << 8 | hdr[1]);
				if (want - 2 > cap) {
					snprintf(why, whylen, "answer too large");
					goto out;
				}
			}
		}
		n = (ssize_t)(got - 2);
	}
out:
	if (fd >= 0)
		close(fd);
	return n;
}

static const char *
rcode_name(int rc)
{
	static const char *const names[] = { "NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN",
					     "NOTIMP", "REFUSED" };

	return rc >= 0 && rc < 6 ? names[rc] : "RCODE?";
}

static int
query(int argc, char **argv, bool json_out)
{
	const char *name = NULL, *tname = "A";
	bool tcp = false, v6 = false;
	struct ip_addr server;
	uint8_t q[600], *ans = malloc(DNS_MAX_MSG);
	char why[256], tb[12];
	struct dns_msg_info mi;
	int type, rc = 1;
	ssize_t n;
	int64_t t0;
	json_t *answers = json_array();

	for (int i = 2; i < argc; i++) {
		if (strcmp(argv[i], "--tcp") == 0)
			tcp = true;
		else if (strcmp(argv[i], "-6") == 0)
			v6 = true;
		else if (name == NULL)
			name = argv[i];
		else
			tname = argv[i];
	}
	if (ans == NULL || answers == NULL)
		goto out;
	if (name == NULL) {
		fprintf(stderr, "usage: wiremesh dns query NAME [TYPE] [--tcp] [-6]\n");
		rc = 2;
		goto out;
	}
	if ((type = dns_type_parse(tname)) < 0) {
		fprintf(stderr, "wiremesh: unknown record type %s\n", tname);
		rc = 2;
		goto out;
	}
	{
		char w[300];

		if (!dnsname_valid(name, w, sizeof(w))) {
			fprintf(stderr, "wiremesh: %s\n", w);
			rc = 2;
			goto out;
		}
	}
	if (addr_parse(v6 ? RESOLVER_ADDR6 : RESOLVER_ADDR4, &server) != 0)
		goto out;
	size_t ql = make_query(q, sizeof(q), name, (uint16_t)type,
	    (uint16_t)random_u32(65536));
	t0 = time_mono_ns();
	if ((n = exchange(&server, tcp, q, ql, ans, DNS_MAX_MSG, why, sizeof(why))) >= 0 &&
	    !tcp && n >= 4 && (ans[2] & (DNS_F_TC >> 8))) {
		tcp = true;	/* truncated: again over TCP */
		n = exchange(&server, true, q, ql, ans, DNS_MAX_MSG, why, sizeof(why));
	}
	if (n < 0) {
		fprintf(stderr, "wiremesh: %s\n", why);
		goto out;
	}
	if (dns_msg_parse(ans, (size_t)n, &mi) != 0 || mi.id != (q[0] << 8 | q[1])) {
		fprintf(stderr, "wiremesh: malformed answer from the resolver\n");
		goto out;
	}
	{
		double ms = (double)(time_mono_ns() - t0) / 1e6;
		size_t off = DNS_HDR_LEN;
		char owner[DNS_TEXT_MAX];
		int rcode = mi.flags & 0xF;

		if (mi.qd == 1) {
			if (dns_name_read(ans, (size_t)n, &off, owner) != 0)
				goto out;
			off += 4;
		}
		for (unsigned i = 0; i < mi.an; i++) {
			char val[DNS_TEXT_MAX + 64] = "";
			uint16_t t, rdlen;
			uint32_t ttl;

			if (dns_name_read(ans, (size_t)n, &off, owner) != 0)
				goto out;
			t = (uint16_t)(ans[off] << 8 | ans[off + 1]);
			ttl = (uint32_t)ans[off + 4] << 24 | (uint32_t)ans[off + 5] << 16 |
			    (uint32_t)ans[off + 6] << 8 | ans[off + 7];
			rdlen = (uint16_t)(ans[off + 8] << 8 | ans[off + 9]);
			off += 10;
			if (t == DNS_T_A || t == DNS_T_AAAA) {
				struct ip_addr a = { .family = t == DNS_T_A ? AF_INET : AF_INET6 };

				memcpy(a.b, ans + off, rdlen);
				addr_fmt(val, &a);
			} else if (t == DNS_T_PTR || t == DNS_T_CNAME || t == DNS_T_NS) {
				size_t o = off;
				char tgt[DNS_TEXT_MAX];

				if (dns_name_read(ans, (size_t)n, &o, tgt) == 0)
					snprintf(val, sizeof(val), "%s.", tgt);
			} else {
				size_t l = (size_t)snprintf(val, sizeof(val), "\\# %u ", rdlen);

				for (size_t k = 0; k < rdlen && l + 3 < sizeof(val); k++)
					l += (size_t)snprintf(val + l, sizeof(val) - l, "%02x", ans[off + k]);
			}
			off += rdlen;
			if (!json_out)
				printf("%s.\t%u\tIN\t%s\t%s\n", owner, ttl, dns_type_name(t, tb), val);
			json_array_append_new(answers, json_pack("{s:s, s:I, s:s, s:s}", "name", owner,
			    "ttl", (json_int_t)ttl, "type", dns_type_name(t, tb), "value", val));
		}
		if (json_out) {
			json_t *o = json_pack("{s:s, s:s, s:s, s:O, s:s, s:s, s:f, s:b}", "name", name,
			    "type", dns_type_name((uint16_t)type, tb), "status", rcode_name(rcode),
			    "answers", answers, "server", v6 ? RESOLVER_ADDR6 : RESOLVER_ADDR4,
			    "transport", tcp ? "tcp" : "udp", "time_ms", ms,
			    "authoritative", (mi.flags & DNS_F_AA) != 0);

			json_dumpf(o, stdout, JSON_INDENT(2) | JSON_SORT_KEYS);
			putchar('\n');
			json_decref(o);
		} else {
			printf(";; %s, %u answer%s, from %s (%s) in %.1f ms\n", rcode_name(rcode),
			    mi.an, mi.an == 1 ? "" : "s", v6 ? RESOLVER_ADDR6 : RESOLVER_ADDR4,
			    tcp ? "tcp" : "udp", ms);
		}
		rc = rcode == DNS_RC_NOERROR ? 0 : 1;
	}
out:
	json_decref(answers);
	free(ans);
	return rc;
}

int
dns_cli_main(const char *sock_path, bool json_out, int argc, char **argv)
{
	if (argc == 2 && strcmp(argv[1], "status") == 0)
		return status(sock_path, json_out);
	if (argc >= 3 && strcmp(argv[1], "query") == 0)
		return query(argc, argv, json_out);
	fprintf(stderr, "usage: wiremesh dns status\n"
	    "       wiremesh dns query NAME [TYPE] [--tcp] [-6]\n");
	return 2;
}
