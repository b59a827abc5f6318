/* SPDX-License-Identifier: MIT */
/*
 * `wiremesh-derper debug ...`: diagnostics built on the agent-side library,
 * for operators and the integration tests.
 *   genkey                          a node key pair (hex)
 *   stun HOST:PORT                  one STUN binding; prints the mapped address
 *   client --host H --port P ...    a DERP client (send, receive, echo, probe)
 *   hold --host H --port P --count N   open N idle DERP connections and hold them
 *   netcheck --derp-map FILE [--json]  the agent's netcheck report
 */
#include <getopt.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/ssl.h>
#include <sodium.h>

#include "relay/derp_client.h"
#include "relay/netcheck.h"
#include "relay/stun_client.h"
#include "common/addr.h"
#include "common/keys.h"
#include "common/log.h"
#include "common/util.h"
#include "relay/derp_frame.h"
#include "relay/derp_map.h"
#include "relay/relay_net.h"

int derper_debug_main(int argc, char **argv);

static int debug_genkey(void)
{
	uint8_t priv[KEY_LEN], pub[KEY_LEN];
	char a[KEY_HEX_LEN + 1], b[KEY_HEX_LEN + 1];

	randombytes_buf(priv, sizeof(priv));
	crypto_scalarmult_base(pub, priv);
	(void)hex_encode(a, sizeof(a), priv, KEY_LEN);
	(void)hex_encode(b, sizeof(b), pub, KEY_LEN);
	printf("private=%s public=%s\n", a, b);
	sodium_memzero(priv, sizeof(priv));
	return 0;
}

static int debug_stun(int argc, char **argv)
{
	struct endpoint srv, mapped;
	char s[ADDR_STR_MAX];
	int64_t rtt;
	int r;

	if (argc != 2 || endpoint_parse(argv[1], &srv) != 0) {
		fprintf(stderr, "usage: wiremesh-derper debug stun HOST:PORT\n");
		return 2;
	}
	r = stun_client_query(-1, &srv, 3000, &mapped, &rtt);
	if (r != 0) {
		fprintf(stderr, "stun: %s\n", err_str(r));
		return 1;
	}
	endpoint_fmt(s, &mapped);
	printf("mapped=%s rtt_us=%lld\n", s, (long long)rtt);
	return 0;
}

/* ---- client ---- */

struct cl {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct derp_client *dc;
	bool echo;
	int received;
	int gone;
};

static void cl_recv(void *ctx, const uint8_t src[static KEY_LEN], const uint8_t *pkt, size_t n)
{
	struct cl *c = ctx;
	char k[KEY_HEX_LEN + 1];

	(void)hex_encode(k, sizeof(k), src, KEY_LEN);
	printf("recv src=%s len=%zu data=%.*s\n", k, n, (int)(n > 64 ? 64 : n), (const char *)pkt);
	fflush(stdout);
	if (c->echo && derp_client_send(c->dc, src, pkt, n) != 0)
		fprintf(stderr, "echo dropped\n");
	pthread_mutex_lock(&c->lock);
	c->received++;
	pthread_cond_broadcast(&c->cond);
	pthread_mutex_unlock(&c->lock);
}

static void cl_gone(void *ctx, const uint8_t peer[static KEY_LEN], int reason)
{
	struct cl *c = ctx;
	char k[KEY_HEX_LEN + 1];

	(void)hex_encode(k, sizeof(k), peer, KEY_LEN);
	printf("gone peer=%s reason=%d\n", k, reason);
	fflush(stdout);
	pthread_mutex_lock(&c->lock);
	c->gone++;
	pthread_cond_broadcast(&c->cond);
	pthread_mutex_unlock(&c->lock);
}

static bool wait_count(struct cl *c, int *field, int want, int64_t deadline)
{
	bool ok;

	pthread_mutex_lock(&c->lock);
	while (*field < want && time_mono_ms() < deadline) {
		struct timespec ts;

		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += 50 * 1000000;
		ts.tv_sec += ts.tv_nsec / 1000000000;
		ts.tv_nsec %= 1000000000;
		pthread_cond_timedwait(&c->cond, &c->lock, &ts);
	}
	ok = *field >= want;
	pthread_mutex_unlock(&c->lock);
	return ok;
}

static void client_usage(void)
{
	fprintf(stderr,
		"usage: wiremesh-derper debug client --host NAME --port PORT --key PRIVHEX\n"
		"         [--dial IP] [--plain] [--send PUBHEX [--msg TEXT] [--count N]]\n"
		"         [--recv N] [--echo] [--expect-gone] [--timeout SECONDS]\n"
		"         [--probe] [--vanish]\n");
}

/* Dials once, sends one packet, then writes half a frame and exits hard. */
static int client_vanish(const struct derp_client_config *cfg, const uint8_t *dst,
			 const char *msg)
{
	uint8_t srv[KEY_LEN], frame[DERP_HEADER_LEN + KEY_LEN + 256], *extra = NULL;
	SSL_CTX *ctx = cfg->plain ? NULL : derp_client_tls_ctx();
	size_t el, ml = strlen(msg) > 256 ? 256 : strlen(msg);
	SSL *ssl = NULL;
	int fd, r;

	r = derp_client_dial(cfg, ctx, 5000, &fd, &ssl, srv, &extra, &el);
	free(extra);
	if (r != 0) {
		fprintf(stderr, "dial: %s\n", err_str(r));
		return 1;
	}
	derp_frame_put_header(frame, DERP_FRAME_SEND_PACKET, (uint32_t)(KEY_LEN + ml));
	memcpy(frame + DERP_HEADER_LEN, dst, KEY_LEN);
	memcpy(frame + DERP_HEADER_LEN + KEY_LEN, msg, ml);
	if (ssl)
		r = SSL_write(ssl, frame, (int)(DERP_HEADER_LEN + KEY_LEN + ml)) > 0 ? 0 : 1;
	else
		r = write(fd, frame, DERP_HEADER_LEN + KEY_LEN + ml) > 0 ? 0 : 1;
	/* a header announcing 1000 bytes, then only 10 of them */
	derp_frame_put_header(frame, DERP_FRAME_SEND_PACKET, 1000);
	memcpy(frame + DERP_HEADER_LEN, dst, 10);
	if (ssl)
		r |= SSL_write(ssl, frame, DERP_HEADER_LEN + 10) > 0 ? 0 : 1;
	else
		r |= write(fd, frame, DERP_HEADER_LEN + 10) > 0 ? 0 : 1;
	printf("vanishing\n");
	fflush(stdout);
	_exit(r);
}

static int debug_client(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "host", required_argument, NULL, 'H' }, { "port", required_argument, NULL, 'p' },
		{ "dial", required_argument, NULL, 'd' }, { "plain", no_argument, NULL, 'P' },
		{ "key", required_argument, NULL, 'k' }, { "send", required_argument, NULL, 's' },
		{ "msg", required_argument, NULL, 'm' }, { "count", required_argument, NULL, 'c' },
		{ "recv", required_argument, NULL, 'r' }, { "echo", no_argument, NULL, 'e' },
		{ "expect-gone", no_argument, NULL, 'g' }, { "timeout", required_argument, NULL, 't' },
		{ "probe", no_argument, NULL, 'b' }, { "vanish", no_argument, NULL, 'v' },
		{ NULL, 0, NULL, 0 },
	};
	struct derp_client_config cfg = { 0 };
	uint8_t priv[KEY_LEN], dst[KEY_LEN], srv[KEY_LEN];
	const char *msg = "hello";
	bool have_key = false, have_dst = false, expect_gone = false, probe = false, vanish = false;
	int count = 1, want_recv = 0, timeout_s = 10, opt, rc = 1;
	struct cl c = { .lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER };
	int64_t deadline;
	char k[KEY_HEX_LEN + 1];

	optind = 1;
	while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (opt) {
		case 'H': cfg.host = optarg; break;
		case 'p': cfg.port = (uint16_t)atoi(optarg); break;
		case 'd': cfg.dial_addr = optarg; break;
		case 'P': cfg.plain = true; break;
		case 'k': have_key = key_from_hex(priv, optarg) == 0; break;
		case 's': have_dst = key_from_hex(dst, optarg) == 0; break;
		case 'm': msg = optarg; break;
		case 'c': count = atoi(optarg); break;
		case 'r': want_recv = atoi(optarg); break;
		case 'e': c.echo = true; break;
		case 'g': expect_gone = true; break;
		case 't': timeout_s = atoi(optarg); break;
		case 'b': probe = true; break;
		case 'v': vanish = true; break;
		default: client_usage(); return 2;
		}
	}
	if (cfg.host == NULL || !have_key || (vanish && !have_dst)) {
		client_usage();
		return 2;
	}
	cfg.node_private_key = priv;
	cfg.preferred = true;
	if (vanish)
		return client_vanish(&cfg, dst, msg);
	if (probe) {
		SSL_CTX *ctx = cfg.plain ? NULL : derp_client_tls_ctx();
		uint8_t *extra = NULL;
		size_t el;
		SSL *ssl = NULL;
		int fd, r;

		r = derp_client_dial(&cfg, ctx, timeout_s * 1000, &fd, &ssl, srv, &extra, &el);
		free(extra);
		if (r == 0) {
			printf("admitted\n");
			SSL_free(ssl);
			close(fd);
		} else {
			printf("%s\n", r == ERR_FORBIDDEN ? "refused" : err_str(r));
		}
		SSL_CTX_free(ctx);
		sodium_memzero(priv, sizeof(priv));
		return r == 0 ? 0 : r == ERR_FORBIDDEN ? 3 : 1;
	}
	cfg.cb = (struct derp_client_callbacks){ .recv = cl_recv, .peer_gone = cl_gone, .ctx = &c };
	c.dc = derp_client_new(&cfg);
	sodium_memzero(priv, sizeof(priv));
	if (c.dc == NULL || derp_client_start(c.dc) != 0) {
		fprintf(stderr, "cannot start client\n");
		goto out;
	}
	deadline = time_mono_ms() + timeout_s * 1000LL;
	if (derp_client_wait_connected(c.dc, timeout_s * 1000) != 0) {
		fprintf(stderr, "not connected\n");
		goto out;
	}
	if (derp_client_server_key(c.dc, srv) == 0) {
		(void)hex_encode(k, sizeof(k), srv, KEY_LEN);
		printf("connected server=%s\n", k);
		fflush(stdout);
	}
	for (int i = 0; have_dst && i < count; i++) {
		if (derp_client_send_wait(c.dc, dst, msg, strlen(msg), 1000) != 0) {
			fprintf(stderr, "send failed\n");
			goto out;
		}
	}
	if (want_recv && !wait_count(&c, &c.received, want_recv, deadline)) {
		fprintf(stderr, "received %d of %d\n", c.received, want_recv);
		goto out;
	}
	if (expect_gone && !wait_count(&c, &c.gone, 1, deadline)) {
		fprintf(stderr, "no PeerGone\n");
		goto out;
	}
	if (!want_recv && !expect_gone && !have_dst) {	/* stay until the timeout */
		while (time_mono_ms() < deadline)
			usleep(100000);
	}
	/* let the queue drain before closing */
	for (int i = 0; i < 50; i++) {
		struct derp_client_stats st;

		derp_client_stats(c.dc, &st);
		if (st.packets_sent >= (uint64_t)(have_dst ? count : 0) + (c.echo ? c.received : 0))
			break;
		usleep(20000);
	}
	rc = 0;
out:
	derp_client_free(c.dc);
	return rc;
}

/* ---- hold ---- */

static volatile sig_atomic_t hold_stop;
static void on_term(int sig) { (void)sig; hold_stop = 1; }

static int debug_hold(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "host", required_argument, NULL, 'H' }, { "port", required_argument, NULL, 'p' },
		{ "dial", required_argument, NULL, 'd' }, { "plain", no_argument, NULL, 'P' },
		{ "count", required_argument, NULL, 'c' }, { NULL, 0, NULL, 0 },
	};
	struct derp_client_config cfg = { 0 };
	SSL_CTX *ctx = NULL;
	int *fds = NULL;
	SSL **ssls = NULL;
	long count = 1000, held = 0, alive = 0, lim;
	int opt, rc = 1;

	optind = 1;
	while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (opt) {
		case 'H': cfg.host = optarg; break;
		case 'p': cfg.port = (uint16_t)atoi(optarg); break;
		case 'd': cfg.dial_addr = optarg; break;
		case 'P': cfg.plain = true; break;
		case 'c': count = atol(optarg); break;
		default: return 2;
		}
	}
	if (cfg.host == NULL || count < 1) {
		fprintf(stderr, "usage: wiremesh-derper debug hold --host H --port P --count N "
			"[--dial IP] [--plain]\n");
		return 2;
	}
	lim = relay_raise_nofile();
	if (lim < count + 16) {
		fprintf(stderr, "hold: RLIMIT_NOFILE %ld too low for %ld connections\n", lim, count);
		return 77;
	}
	signal(SIGTERM, on_term);
	signal(SIGINT, on_term);
	signal(SIGPIPE, SIG_IGN);
	if (!cfg.plain && (ctx = derp_client_tls_ctx()) == NULL)
		return 1;
	/* resumption would hide the cost the test is about; keep full handshakes */
	fds = calloc((size_t)count, sizeof(*fds));
	ssls = calloc((size_t)count, sizeof(*ssls));
	if (fds == NULL || ssls == NULL)
		goto out;
	for (held = 0; held < count && !hold_stop; held++) {
		uint8_t priv[KEY_LEN], srv[KEY_LEN], *extra = NULL;
		size_t el;
		int r;

		randombytes_buf(priv, sizeof(priv));
		cfg.node_private_key = priv;
		r = derp_client_dial(&cfg, ctx, 10000, &fds[held], &ssls[held], srv, &extra, &el);
		free(extra);
		if (r != 0) {
			fprintf(stderr, "hold: connection %ld failed: %s\n", held + 1, err_str(r));
			break;
		}
	}
	/* every connection must still be open: no EOF or error pending */
	for (long i = 0; i < held; i++) {
		struct pollfd pf = { .fd = fds[i], .events = POLLIN };
		char b;

		if (poll(&pf, 1, 0) == 0 || (pf.revents & POLLIN && recv(fds[i], &b, 1, MSG_PEEK | MSG_DONTWAIT) > 0))
			alive++;
	}
	printf("held=%ld alive=%ld\n", held, alive);
	fflush(stdout);
	rc = held == count && alive == count ? 0 : 1;
	while (!hold_stop && rc == 0)
		pause();
out:
	for (long i = 0; i < held; i++) {
		SSL_free(ssls[i]);
		close(fds[i]);
	}
	free(fds);
	free(ssls);
	SSL_CTX_free(ctx);
	return rc;
}

/* ---- netcheck ---- */

static int debug_netcheck(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "derp-map", required_argument, NULL, 'm' }, { "json", no_argument, NULL, 'j' },
		{ "port", required_argument, NULL, 'p' }, { NULL, 0, NULL, 0 },
	};
	const char *file = NULL;
	bool json = false;
	struct derp_map *map = NULL;
	struct netcheck_opts no = { 0 };
	struct netcheck_report rep;
	struct buf out;
	char why[256];
	int opt, r;

	optind = 1;
	while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (opt) {
		case 'm': file = optarg; break;
		case 'j': json = true; break;
		case 'p': no.local_port = (uint16_t)atoi(optarg); break;
		default: return 2;
		}
	}
	if (file == NULL) {
		fprintf(stderr, "usage: wiremesh-derper debug netcheck --derp-map FILE [--json] [--port N]\n");
		return 2;
	}
	if ((r = derp_map_load(file, &map, why, sizeof(why))) != 0) {
		fprintf(stderr, "derp map: %s\n", why);
		return 1;
	}
	r = netcheck_run(map, &no, &rep);
	buf_init(&out, 64 * 1024);
	if (r == 0)
		r = json ? netcheck_format_json(&rep, map, &out) : netcheck_format(&rep, map, &out);
	if (r == 0 && buf_cstr(&out))
		fputs((const char *)out.data, stdout);
	else
		fprintf(stderr, "netcheck: %s\n", err_str(r));
	buf_cleanup(&out);
	derp_map_free(map);
	return r == 0 ? 0 : 1;
}

int derper_debug_main(int argc, char **argv)
{
	log_set_prefix("derper-debug");
	if (sodium_init() < 0)
		return 1;
	if (argc >= 2 && strcmp(argv[1], "genkey") == 0)
		return debug_genkey();
	if (argc >= 2 && strcmp(argv[1], "stun") == 0)
		return debug_stun(argc - 1, argv + 1);
	if (argc >= 2 && strcmp(argv[1], "client") == 0)
		return debug_client(argc - 1, argv + 1);
	if (argc >= 2 && strcmp(argv[1], "hold") == 0)
		return debug_hold(argc - 1, argv + 1);
	if (argc >= 2 && strcmp(argv[1], "netcheck") == 0)
		return debug_netcheck(argc - 1, argv + 1);
	fprintf(stderr, "usage: wiremesh-derper debug {genkey|stun|client|hold|netcheck} ...\n");
	return 2;
}
