/* SPDX-License-Identifier: MIT */
/*
 * bench-derp: DERP relay throughput against plain TLS on the same loopback.
 *
 *   bench-derp [--derper PATH] [--seconds N] [--rounds N] [--hold N]
 *              [--client raw|lib] [--verbose]
 *   bench-derp --server HOST:PORT --host NAME --ca FILE --key-a HEX --key-b HEX ...
 *
 * Default: makes a test CA and a certificate for "derp.test" with openssl in
 * a temporary directory, starts PATH (bin/wiremesh-derper) on 127.0.0.1 with
 * TLS, holds N idle DERP connections (`wiremesh-derper debug hold`, default
 * 10,000; each a full TLS handshake and ClientInfo), then, while they are
 * held, runs --rounds pairs (default 5) of:
 *
 *  1. relay: client A pushes 1,400-byte packets to client B through the
 *     relay for --seconds (default 2, after 0.5 s of warm-up); B counts what
 *     arrives (packet payload bytes and packets per second at the receiver;
 *     what the relay drops on B's full queue is not counted). "raw"
 *     (default) uses two blocking connections from derp_client_dial(): A
 *     writes 64 KiB buffers of SendPacket frames (45 frames of 1,437 bytes
 *     per SSL_write); "lib" uses the agent's threaded client
 *     (derp_client_send_wait / the recv callback).
 *  2. limit: one TLS connection on loopback, same certificate, the relay's
 *     server-side SSL settings (read-ahead) and the clients' context, the
 *     same 64 KiB writes of the same frames; a server thread reads. Counted
 *     as the packet payload share of the frames, like the relay run.
 *
 * The figures printed are medians over the rounds; ratio is the median of
 * each round's relay/TLS ratio (the two runs of a round are adjacent in
 * time, so they share the box's background load).
 *
 * With --server the relay is an already running one (e.g. the relay
 * embedded in `wiremesh-server serve --derp`): A and B use the given node
 * private keys (throwaway keys of registered nodes, for its admission
 * check), SNI --host and the CA --ca; no connections are held
 * (conns_held=0).
 *
 * Prints one line:
 *   bench-derp: relay_gbps=… relay_kpps=… tls_loopback_gbps=… ratio=… conns_held=…
 * Per-round figures, the cipher and CPU use go to stderr.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <sodium.h>

#include "relay/derp_client.h"
#include "common/keys.h"
#include "common/util.h"
#include "relay/derp_frame.h"

enum {
	PKT_LEN = 1400,
	FRAME_LEN = DERP_HEADER_LEN + KEY_LEN + PKT_LEN,
	FRAMES_PER_WRITE = 45,		/* 45 * 1437 = 64,665 bytes per write */
	WRITE_LEN = FRAMES_PER_WRITE * FRAME_LEN,
	RBUF_LEN = 256 * 1024,
};

static char tmpdir[64];
static pid_t derper_pid = -1, holder_pid = -1;

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void stop_child(pid_t *pid)
{
	if (*pid > 0) {
		kill(*pid, SIGTERM);
		waitpid(*pid, NULL, 0);
		*pid = -1;
	}
}

static void cleanup(void)
{
	stop_child(&holder_pid);
	stop_child(&derper_pid);
	if (tmpdir[0]) {
		char cmd[128];

		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
		if (system(cmd) != 0)
			fprintf(stderr, "bench-derp: cannot remove %s\n", tmpdir);
		tmpdir[0] = 0;
	}
}

static void die(const char *msg)
{
	fprintf(stderr, "bench-derp: %s\n", msg);
	cleanup();
	exit(1);
}

static void on_signal(int sig)
{
	(void)sig;
	cleanup();
	_exit(130);
}

static int run(const char *cmd)
{
	char full[2048];

	snprintf(full, sizeof(full), "cd '%s' && %s >/dev/null 2>&1", tmpdir, cmd);
	return system(full);
}

/* test CA + certificate for derp.test (and 127.0.0.1) signed by it */
static void make_certs(void)
{
	if (run("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 "
		"-keyout ca.key -out ca.pem -subj '/CN=wiremesh bench-derp loopback CA'") != 0 ||
	    run("openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "
		"-keyout key.pem -out req.csr -subj /CN=derp.test") != 0 ||
	    run("printf 'subjectAltName=DNS:derp.test,IP:127.0.0.1\\n' > ext") != 0 ||
	    run("openssl x509 -req -in req.csr -CA ca.pem -CAkey ca.key -CAcreateserial "
		"-days 1 -extfile ext -out cert.pem") != 0)
		die("openssl failed (is it installed?)");
}

static pid_t spawn(char *const argv[], const char *out_path)
{
	pid_t pid = fork();

	if (pid == 0) {
		int fd = open(out_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);

		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
			close(fd);
		}
		execv(argv[0], argv);
		_exit(127);
	}
	return pid;
}

/* Waits up to secs for a line matching `prefix` in a file; copies the line. */
static int wait_line(const char *path, const char *needle, char *out, size_t cap, double secs,
		     pid_t pid)
{
	double end = now_s() + secs;

	while (now_s() < end) {
		FILE *f = fopen(path, "r");
		char line[1024];

		if (f) {
			while (fgets(line, sizeof(line), f)) {
				if (strstr(line, needle)) {
					fclose(f);
					snprintf(out, cap, "%s", line);
					return 0;
				}
			}
			fclose(f);
		}
		if (pid > 0 && waitpid(pid, NULL, WNOHANG) == pid)
			return -1;
		usleep(50000);
	}
	return -1;
}

static SSL_CTX *server_ctx(const char *cert, const char *key)
{
	/* the same settings as wiremesh-derper's */
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());

	if (ctx == NULL)
		return NULL;
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1 ||
	    SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1) {
		SSL_CTX_free(ctx);
		return NULL;
	}
	return ctx;
}

/* ---- the two relay clients ---- */

struct side {
	SSL *ssl;
	int fd;
	uint8_t *pre;			/* bytes read past ServerInfo */
	size_t pre_len;
};

static atomic_bool sending;
static atomic_uint_fast64_t rx_pkts, rx_bytes, tx_pkts;
static uint8_t frames[WRITE_LEN];

static void build_frames(const uint8_t dst[KEY_LEN])
{
	for (int i = 0; i < FRAMES_PER_WRITE; i++) {
		uint8_t *f = frames + (size_t)i * FRAME_LEN;

		derp_frame_put_header(f, DERP_FRAME_SEND_PACKET, KEY_LEN + PKT_LEN);
		memcpy(f + DERP_HEADER_LEN, dst, KEY_LEN);
		randombytes_buf(f + DERP_HEADER_LEN + KEY_LEN, PKT_LEN);
	}
}

static int write_all(SSL *ssl, const uint8_t *p, size_t n)
{
	while (n) {
		int w = SSL_write(ssl, p, (int)n);

		if (w <= 0)
			return -1;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

static void *raw_sender(void *arg)
{
	struct side *a = arg;

	while (atomic_load(&sending)) {
		if (write_all(a->ssl, frames, WRITE_LEN) != 0)
			break;
		atomic_fetch_add(&tx_pkts, FRAMES_PER_WRITE);
	}
	return NULL;
}

/* Counts RecvPacket frames on b until EOF/error. */
static void *raw_receiver(void *arg)
{
	struct side *b = arg;
	uint8_t *buf = malloc(RBUF_LEN);
	size_t have = 0;

	if (buf == NULL)
		return NULL;
	if (b->pre_len && b->pre_len <= RBUF_LEN) {
		memcpy(buf, b->pre, b->pre_len);
		have = b->pre_len;
	}
	for (;;) {
		size_t off = 0;
		int n;

		while (have - off >= DERP_HEADER_LEN) {
			uint8_t type;
			uint32_t len;

			if (derp_frame_get_header(buf + off, &type, &len, RBUF_LEN / 2) != 0)
				goto out;
			if (have - off - DERP_HEADER_LEN < len)
				break;
			if (type == DERP_FRAME_RECV_PACKET && len >= KEY_LEN) {
				atomic_fetch_add_explicit(&rx_pkts, 1, memory_order_relaxed);
				atomic_fetch_add_explicit(&rx_bytes, len - KEY_LEN, memory_order_relaxed);
			}
			off += DERP_HEADER_LEN + len;
		}
		memmove(buf, buf + off, have - off);
		have -= off;
		n = SSL_read(b->ssl, buf + have, (int)(RBUF_LEN - have));
		if (n <= 0)
			break;
		have += (size_t)n;
	}
out:
	free(buf);
	return NULL;
}

static void lib_recv(void *ctx, const uint8_t src[static KEY_LEN], const uint8_t *pkt, size_t n)
{
	(void)ctx; (void)src; (void)pkt;
	atomic_fetch_add_explicit(&rx_pkts, 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&rx_bytes, n, memory_order_relaxed);
}

struct lib_send {
	struct derp_client *dc;
	uint8_t dst[KEY_LEN];
};

static void *lib_sender(void *arg)
{
	struct lib_send *ls = arg;
	const uint8_t *pkt = frames + DERP_HEADER_LEN + KEY_LEN;

	while (atomic_load(&sending))
		if (derp_client_send_wait(ls->dc, ls->dst, pkt, PKT_LEN, 1000) == 0)
			atomic_fetch_add(&tx_pkts, 1);
	return NULL;
}

/* Samples rx counters over `secs` after a warm-up; returns bytes/s and pkts/s. */
static bool verbose;
static double relay_cpu;		/* the relay process's CPU share in the last measure() */
static double self_cpu;			/* ours (clients, TLS ends) */

/* CPU seconds (user + system) a process has used; 0 when unknown. */
static double proc_cpu_s(pid_t pid)
{
	char path[64], buf[1024], *p;
	unsigned long long ut = 0, st = 0;
	FILE *f;
	size_t n;

	if (pid <= 0)
		return 0;
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	if ((f = fopen(path, "r")) == NULL)
		return 0;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = 0;
	if ((p = strrchr(buf, ')')) == NULL ||
	    sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
		return 0;
	return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static void measure(double secs, double *bps, double *pps)
{
	uint64_t b0, p0, b1, p1;
	double t0, t1, cpu0, self0;

	usleep(500000);
	t0 = now_s();
	b0 = atomic_load(&rx_bytes);
	p0 = atomic_load(&rx_pkts);
	cpu0 = proc_cpu_s(derper_pid);
	self0 = proc_cpu_s(getpid());
	if (verbose) {	/* a timeline shows stalls */
		uint64_t last = b0;

		for (double t = 0.25; t <= secs + 1e-9; t += 0.25) {
			uint64_t p;

			usleep(250000);
			p = atomic_load(&rx_bytes);
			fprintf(stderr, "  %.2f s: %.3f Gbit/s\n", t, (double)(p - last) * 8 / 0.25 / 1e9);
			last = p;
		}
	} else {
		usleep((useconds_t)(secs * 1e6));
	}
	t1 = now_s();
	b1 = atomic_load(&rx_bytes);
	p1 = atomic_load(&rx_pkts);
	*bps = (double)(b1 - b0) / (t1 - t0);
	*pps = (double)(p1 - p0) / (t1 - t0);
	if (cpu0 > 0)
		relay_cpu = (proc_cpu_s(derper_pid) - cpu0) / (t1 - t0);
	self_cpu = (proc_cpu_s(getpid()) - self0) / (t1 - t0);
}

struct relay_target {
	const char *host, *dial;
	uint16_t port;
	uint8_t key_a[KEY_LEN], key_b[KEY_LEN];
};

static void relay_run(const struct relay_target *t, bool lib, double secs, double *bps, double *pps)
{
	struct derp_client_config cfg = { .host = t->host, .dial_addr = t->dial, .port = t->port };
	uint8_t pub_b[KEY_LEN], srv[KEY_LEN];
	SSL_CTX *ctx = derp_client_tls_ctx();
	pthread_t ts, tr;
	uint64_t tx0;
	double t0;

	if (ctx == NULL)
		die("no TLS client context");
	crypto_scalarmult_base(pub_b, t->key_b);
	build_frames(pub_b);
	atomic_store(&rx_pkts, 0);
	atomic_store(&rx_bytes, 0);
	atomic_store(&tx_pkts, 0);
	atomic_store(&sending, true);
	if (!lib) {
		struct side a = { 0 }, b = { 0 };
		struct timeval tv = { .tv_sec = 5 };

		cfg.node_private_key = t->key_b;
		if (derp_client_dial(&cfg, ctx, 10000, &b.fd, &b.ssl, srv, &b.pre, &b.pre_len) != 0)
			die("client B cannot connect to the relay");
		cfg.node_private_key = t->key_a;
		if (derp_client_dial(&cfg, ctx, 10000, &a.fd, &a.ssl, srv, &a.pre, &a.pre_len) != 0)
			die("client A cannot connect to the relay");
		/* dial leaves timeouts of 10 s; a stalled relay must not hang us */
		setsockopt(a.fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
		setsockopt(b.fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		pthread_create(&tr, NULL, raw_receiver, &b);
		pthread_create(&ts, NULL, raw_sender, &a);
		t0 = now_s();
		tx0 = atomic_load(&tx_pkts);
		measure(secs, bps, pps);
		atomic_store(&sending, false);
		pthread_join(ts, NULL);
		if (verbose)
			fprintf(stderr, "bench-derp: sender offered %.0f kpps\n",
				(double)(atomic_load(&tx_pkts) - tx0) / (now_s() - t0) / 1e3);
		shutdown(b.fd, SHUT_RDWR);
		pthread_join(tr, NULL);
		SSL_free(a.ssl);
		SSL_free(b.ssl);
		close(a.fd);
		close(b.fd);
		free(a.pre);
		free(b.pre);
	} else {
		struct derp_client *a, *b;
		struct lib_send ls;

		cfg.cb.recv = lib_recv;
		cfg.node_private_key = t->key_b;
		b = derp_client_new(&cfg);
		cfg.cb.recv = NULL;
		cfg.node_private_key = t->key_a;
		a = derp_client_new(&cfg);
		if (a == NULL || b == NULL || derp_client_start(b) != 0 || derp_client_start(a) != 0 ||
		    derp_client_wait_connected(b, 10000) != 0 ||
		    derp_client_wait_connected(a, 10000) != 0)
			die("the library clients cannot connect to the relay");
		ls.dc = a;
		memcpy(ls.dst, pub_b, KEY_LEN);
		pthread_create(&ts, NULL, lib_sender, &ls);
		t0 = now_s();
		tx0 = atomic_load(&tx_pkts);
		measure(secs, bps, pps);
		atomic_store(&sending, false);
		pthread_join(ts, NULL);
		if (verbose)
			fprintf(stderr, "bench-derp: sender queued %.0f kpps\n",
				(double)(atomic_load(&tx_pkts) - tx0) / (now_s() - t0) / 1e3);
		derp_client_free(a);
		derp_client_free(b);
	}
	SSL_CTX_free(ctx);
}

/* ---- plain TLS on loopback ---- */

struct tls_srv {
	int lfd;
	SSL_CTX *ctx;
};

static void *tls_server(void *arg)
{
	struct tls_srv *ts = arg;
	uint8_t *buf = malloc(RBUF_LEN);
	int fd = accept(ts->lfd, NULL, NULL), one = 1;
	SSL *ssl;

	if (fd < 0 || buf == NULL) {
		free(buf);
		return NULL;
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	ssl = SSL_new(ts->ctx);
	if (ssl) {	/* the relay's settings for its accepted connections */
		SSL_set_mode(ssl, SSL_MODE_ENABLE_PARTIAL_WRITE |
			     SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_RELEASE_BUFFERS);
		SSL_set_read_ahead(ssl, 1);
		SSL_set_default_read_buffer_len(ssl, 64 * 1024);
	}
	if (ssl && SSL_set_fd(ssl, fd) == 1 && SSL_accept(ssl) == 1) {
		for (;;) {
			int n = SSL_read(ssl, buf, RBUF_LEN);

			if (n <= 0)
				break;
			atomic_fetch_add_explicit(&rx_bytes, (uint64_t)n, memory_order_relaxed);
		}
	}
	SSL_free(ssl);
	close(fd);
	free(buf);
	return NULL;
}

static void *tls_writer(void *arg)
{
	SSL *ssl = arg;

	while (atomic_load(&sending))
		if (write_all(ssl, frames, WRITE_LEN) != 0)
			break;
	return NULL;
}

static bool cipher_shown;

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/* Median of v[0..n) (sorts a copy). */
static double median(const double *v, int n)
{
	double c[n];

	memcpy(c, v, sizeof(double) * (size_t)n);
	qsort(c, (size_t)n, sizeof(double), cmp_double);
	return n % 2 ? c[n / 2] : (c[n / 2 - 1] + c[n / 2]) / 2;
}

static double tls_run(const char *cert, const char *key, double secs)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t sl = sizeof(sa);
	struct tls_srv ts = { .lfd = socket(AF_INET, SOCK_STREAM, 0), .ctx = server_ctx(cert, key) };
	SSL_CTX *cctx = derp_client_tls_ctx();
	pthread_t st, wt;
	SSL *ssl = NULL;
	int fd, one = 1;
	double bps, pps;
	char ca[128];

	snprintf(ca, sizeof(ca), "%s/ca.pem", tmpdir);
	if (ts.lfd < 0 || ts.ctx == NULL || cctx == NULL ||
	    SSL_CTX_load_verify_locations(cctx, ca, NULL) != 1 ||	/* ours, also with --ca */
	    bind(ts.lfd, (struct sockaddr *)&sa, sizeof(sa)) != 0 || listen(ts.lfd, 4) != 0 ||
	    getsockname(ts.lfd, (struct sockaddr *)&sa, &sl) != 0)
		die("TLS loopback setup failed");
	atomic_store(&rx_bytes, 0);
	pthread_create(&st, NULL, tls_server, &ts);
	fd = socket(AF_INET, SOCK_STREAM, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0)
		die("TLS loopback connect failed");
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	ssl = SSL_new(cctx);
	if (ssl == NULL || SSL_set_fd(ssl, fd) != 1)
		die("TLS loopback: SSL_new");
	SSL_set_tlsext_host_name(ssl, "derp.test");
	SSL_set1_host(ssl, "derp.test");
	/* the relay clients' modes (derp_client_dial) */
	SSL_set_mode(ssl, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
		     SSL_MODE_RELEASE_BUFFERS);
	if (SSL_connect(ssl) != 1) {
		ERR_print_errors_fp(stderr);
		die("TLS loopback handshake failed");
	}
	if (!cipher_shown) {
		fprintf(stderr, "bench-derp: cipher %s %s\n", SSL_get_version(ssl),
			SSL_CIPHER_get_name(SSL_get_current_cipher(ssl)));
		cipher_shown = true;
	}
	atomic_store(&sending, true);
	pthread_create(&wt, NULL, tls_writer, ssl);
	measure(secs, &bps, &pps);
	atomic_store(&sending, false);
	pthread_join(wt, NULL);
	shutdown(fd, SHUT_RDWR);
	pthread_join(st, NULL);
	SSL_free(ssl);
	close(fd);
	close(ts.lfd);
	SSL_CTX_free(ts.ctx);
	SSL_CTX_free(cctx);
	/* the stream is whole frames; count their packet payload, as the relay run does */
	return bps * PKT_LEN / FRAME_LEN;
}

/* ---- main ---- */

static void usage(void)
{
	fprintf(stderr,
		"usage: bench-derp [--derper PATH] [--seconds N] [--hold N] [--client raw|lib]\n"
		"                  [--rounds N] [--verbose]\n"
		"       bench-derp --server HOST:PORT --host NAME --ca FILE --key-a HEX --key-b HEX\n"
		"                  [--seconds N] [--rounds N] [--client raw|lib]\n");
	exit(2);
}

static void parse_key(const char *hex, uint8_t out[KEY_LEN])
{
	if (hex == NULL || key_from_hex(out, hex) != 0)
		usage();
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "derper", required_argument, NULL, 'd' }, { "seconds", required_argument, NULL, 's' },
		{ "hold", required_argument, NULL, 'H' }, { "client", required_argument, NULL, 'c' },
		{ "server", required_argument, NULL, 'S' }, { "host", required_argument, NULL, 'n' },
		{ "ca", required_argument, NULL, 'C' }, { "key-a", required_argument, NULL, 'a' },
		{ "key-b", required_argument, NULL, 'b' }, { "verbose", no_argument, NULL, 'v' },
		{ "rounds", required_argument, NULL, 'r' },
		{ NULL, 0, NULL, 0 },
	};
	const char *derper = "bin/wiremesh-derper", *server = NULL, *ca = NULL;
	const char *key_a = NULL, *key_b = NULL;
	struct relay_target t = { .host = "derp.test", .dial = "127.0.0.1" };
	char path[256], cert[128], key[128], line[1024], portbuf[16], hostbuf[256];
	double secs = 2, relay_bps, relay_pps, tls_bps, ratio;
	long hold = 10000, held = 0;
	int rounds = 5;
	bool lib = false;
	int opt;

	while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (opt) {
		case 'd': derper = optarg; break;
		case 's': secs = atof(optarg); break;
		case 'H': hold = atol(optarg); break;
		case 'c':
			if (strcmp(optarg, "lib") != 0 && strcmp(optarg, "raw") != 0)
				usage();
			lib = strcmp(optarg, "lib") == 0;
			break;
		case 'S': server = optarg; break;
		case 'n': t.host = optarg; break;
		case 'C': ca = optarg; break;
		case 'a': key_a = optarg; break;
		case 'b': key_b = optarg; break;
		case 'v': verbose = true; break;
		case 'r': rounds = atoi(optarg); break;
		default: usage();
		}
	}
	if (optind != argc || secs <= 0 || hold < 0 || rounds < 1 || rounds > 100)
		usage();
	if (sodium_init() < 0)
		die("sodium_init");
	signal(SIGPIPE, SIG_IGN);
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);

	snprintf(tmpdir, sizeof(tmpdir), "/tmp/wm-bench-derp-XXXXXX");
	if (mkdtemp(tmpdir) == NULL) {
		tmpdir[0] = 0;
		die("mkdtemp");
	}
	make_certs();
	snprintf(cert, sizeof(cert), "%s/cert.pem", tmpdir);
	snprintf(key, sizeof(key), "%s/key.pem", tmpdir);

	if (server) {
		const char *colon = strrchr(server, ':');

		if (colon == NULL || ca == NULL)
			usage();
		parse_key(key_a, t.key_a);
		parse_key(key_b, t.key_b);
		snprintf(hostbuf, sizeof(hostbuf), "%.*s", (int)(colon - server), server);
		t.dial = hostbuf;
		t.port = (uint16_t)atoi(colon + 1);
		hold = 0;
		setenv("SSL_CERT_FILE", ca, 1);
	} else {
		char *dargv[16], maxc[32];
		int i = 0;

		snprintf(path, sizeof(path), "%s/ca.pem", tmpdir);
		setenv("SSL_CERT_FILE", path, 1);
		snprintf(maxc, sizeof(maxc), "%ld", hold + 100);
		dargv[i++] = (char *)derper;
		dargv[i++] = "--addr"; dargv[i++] = "127.0.0.1:0";
		dargv[i++] = "--http-port"; dargv[i++] = "-1";
		dargv[i++] = "--stun-addr"; dargv[i++] = "off";
		dargv[i++] = "--tls-cert"; dargv[i++] = cert;
		dargv[i++] = "--tls-key"; dargv[i++] = key;
		dargv[i++] = "--max-conns"; dargv[i++] = maxc;
		dargv[i] = NULL;
		snprintf(path, sizeof(path), "%s/derper.log", tmpdir);
		derper_pid = spawn(dargv, path);
		if (derper_pid < 0 || wait_line(path, "msg=\"ready\"", line, sizeof(line), 10, derper_pid) != 0 ||
		    wait_line(path, "derp: listening", line, sizeof(line), 1, derper_pid) != 0)
			die("wiremesh-derper did not start");
		{
			const char *p = strstr(line, " port=");

			if (p == NULL)
				die("no port in the derper log");
			t.port = (uint16_t)atoi(p + 6);
		}
		randombytes_buf(t.key_a, KEY_LEN);
		randombytes_buf(t.key_b, KEY_LEN);
	}

	if (hold > 0) {
		char cnt[32], hpath[256];
		char *hargv[] = { (char *)derper, "debug", "hold", "--host", "derp.test", "--dial",
				  "127.0.0.1", "--port", portbuf, "--count", cnt, NULL };
		const char *p;

		snprintf(portbuf, sizeof(portbuf), "%u", t.port);
		snprintf(cnt, sizeof(cnt), "%ld", hold);
		snprintf(hpath, sizeof(hpath), "%s/hold.log", tmpdir);
		holder_pid = spawn(hargv, hpath);
		if (holder_pid < 0 || wait_line(hpath, "held=", line, sizeof(line), 300, holder_pid) != 0)
			die("the holder did not finish (see `wiremesh-derper debug hold`)");
		if ((p = strstr(line, "alive=")) != NULL)
			held = atol(p + 6);
	}

	/*
	 * Alternate relay and TLS runs so that each pair sees the same
	 * background load; the figures are medians over the rounds, the ratio
	 * the median of the pairs' ratios. On stderr, CPU per Gbit/s of each
	 * path (relay process + clients vs. both TLS ends), which other load
	 * disturbs less than throughput.
	 */
	{
		double rb[rounds], rp[rounds], tb[rounds], rr[rounds], rc[rounds], tc[rounds];
		double rcpu, ccpu;

		for (int i = 0; i < rounds; i++) {
			relay_cpu = 0;
			relay_run(&t, lib, secs, &rb[i], &rp[i]);
			rc[i] = rb[i] > 0 ? (relay_cpu + self_cpu) * 100 / (rb[i] * 8 / 1e9) : 0;
			rcpu = relay_cpu;
			ccpu = self_cpu;
			tb[i] = tls_run(cert, key, secs);
			tc[i] = tb[i] > 0 ? self_cpu * 100 / (tb[i] * 8 / 1e9) : 0;
			rr[i] = tb[i] > 0 ? rb[i] / tb[i] : 0;
			fprintf(stderr, "bench-derp: round %d relay %.3f Gbit/s %.1f kpps (CPU ",
				i + 1, rb[i] * 8 / 1e9, rp[i] / 1e3);
			if (derper_pid > 0)
				fprintf(stderr, "relay %.0f %% ", rcpu * 100);
			fprintf(stderr, "clients %.0f %%), tls %.3f Gbit/s (CPU %.0f %%), ratio %.2f\n",
				ccpu * 100, tb[i] * 8 / 1e9, self_cpu * 100, rr[i]);
		}
		relay_bps = median(rb, rounds);
		relay_pps = median(rp, rounds);
		tls_bps = median(tb, rounds);
		ratio = median(rr, rounds);
		if (derper_pid > 0)
			fprintf(stderr, "bench-derp: CPU %% per Gbit/s (median): relay path %.1f "
				"(relay + both clients), TLS %.1f (both ends)\n",
				median(rc, rounds), median(tc, rounds));
	}
	if (holder_pid > 0 && waitpid(holder_pid, NULL, WNOHANG) != 0)
		held = 0;	/* the holder died: its connections are gone */
	if (derper_pid > 0 && waitpid(derper_pid, NULL, WNOHANG) == derper_pid) {
		derper_pid = -1;
		snprintf(line, sizeof(line), "tail -n 20 '%s/derper.log' >&2", tmpdir);
		if (system(line) != 0)
			fprintf(stderr, "bench-derp: no relay log\n");
		die("the relay exited during the run");
	}
	cleanup();

	printf("bench-derp: relay_gbps=%.3f relay_kpps=%.1f tls_loopback_gbps=%.3f ratio=%.2f "
	       "conns_held=%ld\n", relay_bps * 8 / 1e9, relay_pps / 1e3, tls_bps * 8 / 1e9,
	       ratio, held);
	return 0;
}
