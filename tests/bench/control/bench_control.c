// SPDX-License-Identifier: MIT
/*
 * bench-control: a load generator for the control server. It starts a real
 * bin/wiremesh-server (fresh SQLite database in a temporary directory, plain
 * HTTP on loopback), enrols N nodes over the signed node protocol and holds N
 * map streams with one thread: epoll, non-blocking sockets and a small
 * HTTP/1.1 client written for this (keep-alive, Content-Length and chunked
 * bodies). Map lines are never buffered whole: a full map of 10,000 peers is
 * several MB, so each line is scanned as it arrives (its head for type and
 * version, a marker count for the peers, a watched string).
 *
 *   bench-control --nodes N [--server BIN] [--joins J] [--endpoints E]
 *                 [--idle-s S] [--policy-fanout] [--max-opening K]
 *
 * Prints one line:
 *   bench-control: nodes=N enrol_per_s=… join_p50_ms=… join_p99_ms=…
 *   endpoint_p99_ms=… restart_recover_s=… rss_kb_per_node=… idle_cpu_pct=…
 *   rss_baseline_kb=… maps_all_s=… full_maps_after_restart=… version_regressions=…
 *   wire_mb_after_restart=… rss_after_restart_kb_per_node=… [change_fanout_p99_ms=…]
 * Progress and diagnostics go to stderr.
 *
 * --ha (make bench-ha; docs/benchmarks.md, "Replicas on PostgreSQL"): a
 * throwaway PostgreSQL (tests/tools/pg.sh), R replicas with --server-url, a
 * generated policy (groups of --group-size nodes that see each other and
 * --shared tagged servers), nodes spread over the replicas, cross-replica
 * join latency, kill -9 of one replica and resume on the others; helper
 * processes above --per-process streams. Prints one line:
 *   bench-ha: nodes=N replicas=R enrol_per_s=… cross_join_p99_ms=…
 *   failover_recover_s=… full_maps_after_failover=… rss_kb_per_node=…
 *   cross_join_p50_ms=… joins=J/J maps_all_s=… streams_moved=… version_regressions=…
 * Everything it started (PostgreSQL, replicas, helpers, temporary
 * directories) is stopped and removed, also on failure, SIGINT or SIGTERM.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <sodium.h>

#include "common/keys.h"
#include "common/sign.h"
#include "common/util.h"

enum { HDR_MAX = 2048, OUT_MAX = 2048, HEAD_KEEP = 160, BODY_MAX = 64 * 1024, NSRC = 8,
	REP_MAX = 9, W_MAX = 16 };

#define MARKER "\"disco_key\":\""	/* once per node object in a map line */

enum cstate { C_IDLE, C_CONNECTING, C_SENDING, C_HEADERS, C_BODY };
enum kind { K_NONE, K_REGISTER, K_MAP, K_AUX };
enum chunk { CH_SIZE, CH_EXT, CH_SIZE_LF, CH_DATA, CH_DATA_CR, CH_DATA_LF, CH_TRAILER };

/* One matcher: counts a pattern in a byte stream split anywhere. */
struct match {
	char carry[24];
	uint8_t clen;
};

struct conn {
	int fd;
	int node;		/* index, or -1 for the auxiliary connection */
	enum cstate st;
	enum kind kind;
	char *out;
	size_t outlen, outoff;
	char hdr[HDR_MAX];
	size_t hlen;
	int status;
	bool chunked, close_after;
	int64_t clen, got;
	enum chunk cst;
	uint64_t crem;
	/* small bodies (register and aux answers) */
	char *body;
	size_t blen;
	bool done;		/* aux: the answer is complete */
	bool failed;
};

struct node {
	uint8_t pk[KEY_LEN], sk[ED25519_SK_LEN];
	uint8_t nk[KEY_LEN], dk[KEY_LEN];
	struct conn c;
	bool registered, up;	/* up: map answer 200 seen, stream open */
	bool synced;		/* a whole line arrived since the stream opened */
	bool want_stream;
	int peers;		/* -1 until the first full map */
	uint64_t version;
	/* the line being received */
	char head[HEAD_KEEP];
	size_t hl;
	unsigned markers, watch_hits;
	struct match mm, mw;
	int watch_round;
	int64_t full_ms;	/* time of the last complete full map */
	int64_t retry_at;
	int backoff;
	unsigned nfull, nlines;
	bool opening;		/* counted in n_opening */
	int rep;		/* the server (replica) it talks to */
	int expected;		/* peers its stream should list */
	int group;		/* --ha: its group, -1 for a shared server */
	bool join_wait;		/* --ha: a cross-replica join latency is due */
	/* --ha: peers by id, as protocol.md's client keeps them (a peer_added
	 * of a known id replaces it: a stream resumed on another replica may
	 * get one for a peer it has) */
	int64_t self_id;
	struct idset { int64_t *v; int n, cap; } ids, lids;	/* peers; ids in this line */
	uint8_t id_st;		/* how much of ID_PAT matched; ID_DIGITS: in the number */
	int64_t id_acc;
};

#define ID_PAT "{\"id\":"	/* every node object starts so */
enum { ID_DIGITS = 6 };

static struct {
	int nnodes, nall, joins, endpoints, idle_s, max_opening, max_reg;
	bool policy_fanout;
	bool reg_on, open_on;	/* phases: registrations, stream opening */
	const char *server_bin;
	char dir[256], db[300], log[300];
	int nrep;		/* servers: 1, or the replicas of --ha */
	int ports[REP_MAX];
	pid_t pids[REP_MAX];
	int aux_rep;		/* the server the auxiliary connection goes to */
	char apikey[256], authkey[256];
	/* --ha: PostgreSQL (tests/tools/pg.sh), groups and their keys */
	bool ha, keep, is_helper;
	int per_process;	/* streams one process holds at most */
	const char *pg_script, *log_level;
	char pg_dir[256], pg_url[256];
	pid_t pg_pid;
	int ngroups, nshared, group_size;
	char (*group_keys)[128];
	char shared_key[128];
	int64_t join_t0;
	int join_rep;
	int64_t *join_lat;	/* per watching stream on another replica */
	int n_join_lat, join_lat_cap;
	volatile sig_atomic_t interrupted;
	struct node *nodes;
	int epfd;
	/* counters */
	int expected;		/* peers every stream should list */
	int n_current;		/* streams up with peers == expected */
	int n_opening;
	int reg_inflight, reg_done, reg_next;
	int open_next;
	int lo, hi;		/* the streams this process holds: nodes lo..hi-1 */
	char watch[64];
	int watch_round, n_watch;
	int64_t pol_t0;
	bool pol_active;
	int n_pol;
	int64_t *pol_ms;
	unsigned errors, reconnects;
	uint64_t regressions;	/* messages with a lower version than the one before */
	int64_t max_stall_ms;	/* longest time between two loop turns */
	struct conn aux;
	uint64_t bytes;
} g;

static char rbuf[256 * 1024];

static void kill_all_now(void);

static void
on_signal(int sig)
{
	(void)sig;
	g.interrupted = 1;
	kill_all_now();
	_exit(128 + sig);
}

/* ---- small helpers ---- */

static void
die(const char *what)
{
	fprintf(stderr, "%s: %s\n", g.ha ? "bench-ha" : "bench-control", what);
	kill_all_now();
	exit(1);
}

static bool
is_current(const struct node *n)
{
	return n->up && n->synced && n->peers == n->expected;
}

/* Every change to up/peers goes through here so that n_current stays right. */
static void
set_state(struct node *n, bool up, int peers)
{
	bool was = is_current(n);

	n->up = up;
	n->peers = peers;
	g.n_current += (int)is_current(n) - (int)was;
	if (!was && is_current(n) && n->join_wait) {
		n->join_wait = false;
		if (g.n_join_lat < g.join_lat_cap)
			g.join_lat[g.n_join_lat++] = time_mono_ms() - g.join_t0;
	}
}


static void
recount(void)
{
	g.n_current = 0;
	for (int i = g.lo; i < g.hi; i++)
		g.n_current += is_current(&g.nodes[i]);
}

/* Every stream should list `peers` (all-see-all). */
static void
expect_all(int peers)
{
	for (int i = 0; i < g.nnodes; i++)
		g.nodes[i].expected = peers;
	recount();
}

static unsigned
match_feed(struct match *m, const char *pat, const char *p, size_t n)
{
	size_t plen = strlen(pat), keep = plen - 1;
	unsigned c = 0;

	if (m->clen > 0) {
		char tmp[64];
		size_t k = n < keep ? n : keep, tl = m->clen + k;

		memcpy(tmp, m->carry, m->clen);
		memcpy(tmp + m->clen, p, k);
		for (size_t i = 0; i < m->clen && i + plen <= tl; i++)
			c += memcmp(tmp + i, pat, plen) == 0;
	}
	for (const char *q = p; q < p + n && (q = memmem(q, (size_t)(p + n - q), pat, plen)) != NULL;
	    q += plen)
		c++;
	if (n >= keep) {
		memcpy(m->carry, p + n - keep, keep);
		m->clen = (uint8_t)keep;
	} else {
		size_t old = m->clen + n > keep ? keep - n : m->clen;

		memmove(m->carry, m->carry + m->clen - old, old);
		memcpy(m->carry + old, p, n);
		m->clen = (uint8_t)(old + n);
	}
	return c;
}

static int
cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

	return x < y ? -1 : x > y;
}

static double
pct(int64_t *v, int n, double p)
{
	int i;

	if (n == 0)
		return -1;
	qsort(v, (size_t)n, sizeof(*v), cmp_i64);
	i = (int)(p * n + 0.999999) - 1;
	if (i < 0)
		i = 0;
	if (i >= n)
		i = n - 1;
	return (double)v[i];
}

/* ---- server process ---- */

static long
proc_rss_kb(pid_t pid)
{
	char path[64], line[256];
	long kb = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	if ((f = fopen(path, "r")) == NULL)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (strncmp(line, "VmRSS:", 6) == 0)
			kb = strtol(line + 6, NULL, 10);
	fclose(f);
	return kb;
}

static long long
proc_cpu_ticks(pid_t pid)
{
	char path[64], buf[2048], *p;
	unsigned long long ut = 0, st = 0;
	FILE *f;
	size_t n;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	if ((f = fopen(path, "r")) == NULL)
		return -1;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = 0;
	if ((p = strrchr(buf, ')')) == NULL)
		return -1;
	/* after ") ": state(3) ... utime is field 14, stime 15 */
	if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
		return -1;
	return (long long)(ut + st);
}

/* Starts server `i`: the SQLite one, or replica i of --ha. */
static void
start_server(int i)
{
	char listen[64], url[80], log[320];
	pid_t pid;

	snprintf(listen, sizeof(listen), "127.0.0.1:%d", g.ports[i]);
	snprintf(url, sizeof(url), "http://127.0.0.1:%d", g.ports[i]);
	if (g.ha)
		snprintf(log, sizeof(log), "%s/replica%d.log", g.dir, i);
	else
		str_copy(log, g.log, sizeof(log));
	if ((pid = fork()) < 0)
		die("fork failed");
	if (pid == 0) {
		int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0600);

		/* the server must not outlive the benchmark */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
			close(fd);
		}
		if (g.ha)
			execl(g.server_bin, g.server_bin, "serve", "--listen", listen, "--db", g.pg_url,
			    "--server-url", url, "--log-level", g.log_level, (char *)NULL);
		else
			execl(g.server_bin, g.server_bin, "serve", "--listen", listen, "--db", g.db,
			    "--log-level", "warn", (char *)NULL);
		_exit(127);
	}
	g.pids[i] = pid;
}

/* rm -rf DIR, with async-signal-safe calls only. */
static void
remove_tree(const char *dir)
{
	pid_t pid;

	if (dir[0] == 0 || (pid = fork()) < 0)
		return;
	if (pid == 0) {
		execl("/bin/rm", "rm", "-rf", "--", dir, (char *)NULL);
		_exit(127);
	}
	waitpid(pid, NULL, 0);
}

/*
 * Stops what the benchmark started, at once (a failure or a signal: only
 * async-signal-safe calls): the servers by SIGKILL, PostgreSQL by SIGQUIT
 * (immediate shutdown) and SIGKILL after 5 s; with --ha, the temporary
 * directories go too.
 */
static void
kill_all_now(void)
{
	if (g.is_helper)
		return;
	for (int i = 0; i < g.nrep; i++)
		if (g.pids[i] > 0) {
			kill(g.pids[i], SIGKILL);
			waitpid(g.pids[i], NULL, 0);
			g.pids[i] = 0;
		}
	if (g.pg_pid > 0) {
		struct timespec ts = { 0, 50 * 1000 * 1000 };

		kill(g.pg_pid, SIGQUIT);
		for (int k = 0; k < 100 && kill(g.pg_pid, 0) == 0; k++)
			nanosleep(&ts, NULL);
		kill(g.pg_pid, SIGKILL);
		g.pg_pid = 0;
	}
	if (g.ha) {
		remove_tree(g.pg_dir);
		if (g.keep)
			fprintf(stderr, "bench-ha: replica logs kept in %s\n", g.dir);
		else
			remove_tree(g.dir);
	}
}

static int
free_port(void)
{
	struct sockaddr_in a;
	socklen_t al = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM, 0), port;

	memset(&a, 0, sizeof(a));
	a.sin_family = AF_INET;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0 ||
	    getsockname(fd, (struct sockaddr *)&a, &al) != 0)
		die("cannot find a free port");
	port = ntohs(a.sin_port);
	close(fd);
	return port;
}

/* ---- connections ---- */

static void
conn_close(struct conn *c)
{
	if (c->fd >= 0) {
		epoll_ctl(g.epfd, EPOLL_CTL_DEL, c->fd, NULL);
		close(c->fd);
	}
	c->fd = -1;
	c->st = C_IDLE;
	free(c->out);
	c->out = NULL;
}

static int
conn_open(struct conn *c)
{
	struct sockaddr_in a, src;
	struct epoll_event ev;
	int one = 1;
	int idx = c->node < 0 ? 0 : c->node;
	int port = g.ports[c->node < 0 ? g.aux_rep : g.nodes[c->node].rep];

	c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (c->fd < 0)
		return -1;
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
#ifdef IP_BIND_ADDRESS_NO_PORT
	setsockopt(c->fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
#endif
	/* several source addresses: more than 28k ephemeral ports in all */
	memset(&src, 0, sizeof(src));
	src.sin_family = AF_INET;
	src.sin_addr.s_addr = htonl(0x7f000002u + (uint32_t)(idx % NSRC));
	if (bind(c->fd, (struct sockaddr *)&src, sizeof(src)) != 0) {
		close(c->fd);
		c->fd = -1;
		return -1;
	}
	memset(&a, 0, sizeof(a));
	a.sin_family = AF_INET;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	a.sin_port = htons((uint16_t)port);
	if (connect(c->fd, (struct sockaddr *)&a, sizeof(a)) != 0 && errno != EINPROGRESS) {
		close(c->fd);
		c->fd = -1;
		return -1;
	}
	memset(&ev, 0, sizeof(ev));
	ev.events = EPOLLIN | EPOLLOUT;
	ev.data.ptr = c;
	if (epoll_ctl(g.epfd, EPOLL_CTL_ADD, c->fd, &ev) != 0) {
		close(c->fd);
		c->fd = -1;
		return -1;
	}
	c->st = C_CONNECTING;
	return 0;
}

static void
want_out(struct conn *c, bool on)
{
	struct epoll_event ev;

	memset(&ev, 0, sizeof(ev));
	ev.events = EPOLLIN | (on ? EPOLLOUT : 0);
	ev.data.ptr = c;
	epoll_ctl(g.epfd, EPOLL_CTL_MOD, c->fd, &ev);
}

/* Queues a request; the connection must be idle-open or about to connect. */
static void
conn_request(struct conn *c, char *req, size_t len, enum kind kind)
{
	free(c->out);
	c->out = req;
	c->outlen = len;
	c->outoff = 0;
	c->kind = kind;
	c->hlen = 0;
	c->status = 0;
	c->chunked = c->close_after = false;
	c->clen = -1;
	c->got = 0;
	c->cst = CH_SIZE;
	c->crem = 0;
	c->done = c->failed = false;
	free(c->body);
	c->body = NULL;
	c->blen = 0;
	if (c->st == C_IDLE && c->fd >= 0) {
		c->st = C_SENDING;
		want_out(c, true);
	}
}

static char *
signed_request(const struct node *n, const char *path, const char *body, size_t *len)
{
	char mk[KEY_STR_MAX], sig[SIGN_HEX_LEN + 1], nonce[SIGN_NONCE_LEN + 1];
	int64_t ts = time_now_s();
	size_t bl = strlen(body), cap = 1024 + bl;
	char *r = malloc(cap);
	int k;

	if (r == NULL)
		die("out of memory");
	sign_nonce(nonce);
	if (sign_request(n->sk, "POST", path, ts, nonce, body, bl, sig) != 0)
		die("signing failed");
	key_fmt(mk, "mkey:", n->pk);
	k = snprintf(r, cap, "POST %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
	    "Content-Type: application/json\r\nContent-Length: %zu\r\n"
	    SIGN_HDR_MACHINE ": %s\r\n" SIGN_HDR_TIMESTAMP ": %" PRId64 "\r\n"
	    SIGN_HDR_NONCE ": %s\r\n" SIGN_HDR_SIGNATURE ": %s\r\n\r\n%s",
	    path, g.ports[n->rep], bl, mk, ts, nonce, sig, body);
	*len = (size_t)k;
	return r;
}

static char *
register_request(const struct node *n, int idx, size_t *len)
{
	char nk[KEY_STR_MAX], dk[KEY_STR_MAX], body[768];

	key_fmt(nk, "nodekey:", n->nk);
	key_fmt(dk, "discokey:", n->dk);
	snprintf(body, sizeof(body), "{\"node_key\":\"%s\",\"disco_key\":\"%s\","
	    "\"hostname\":\"bench-%d\",\"auth_key\":\"%s\"}", nk, dk, idx,
	    !g.ha ? g.authkey : n->group < 0 ? g.shared_key : g.group_keys[n->group]);
	return signed_request(n, "/machine/register", body, len);
}

static char *
map_request(const struct node *n, size_t *len)
{
	char body[64];

	snprintf(body, sizeof(body), "{\"version\":%" PRIu64 "}", n->version);
	return signed_request(n, "/machine/map", body, len);
}

static char *
api_request(const char *method, const char *path, const char *body, size_t *len)
{
	size_t bl = body ? strlen(body) : 0, cap = 1024 + bl;
	char *r = malloc(cap);
	int k;

	if (r == NULL)
		die("out of memory");
	k = snprintf(r, cap, "%s %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nConnection: close\r\n"
	    "Authorization: Bearer %s\r\nContent-Type: application/json\r\n"
	    "Content-Length: %zu\r\n\r\n%s", method, path, g.ports[g.aux_rep], g.apikey, bl,
	    body ? body : "");
	*len = (size_t)k;
	return r;
}

/* ---- map lines ---- */

static void
idset_push(struct idset *s, int64_t id)
{
	if (s->n == s->cap) {
		int cap = s->cap ? s->cap * 2 : 16;
		int64_t *v = realloc(s->v, (size_t)cap * sizeof(*v));

		if (v == NULL)
			die("out of memory");
		s->v = v;
		s->cap = cap;
	}
	s->v[s->n++] = id;
}

static int
idset_find(const struct idset *s, int64_t id)
{
	int lo = 0, hi = s->n;

	while (lo < hi) {
		int mid = (lo + hi) / 2;

		if (s->v[mid] < id)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* Sorted insert; false when it was there. */
static bool
idset_add(struct idset *s, int64_t id)
{
	int i = idset_find(s, id);

	if (i < s->n && s->v[i] == id)
		return false;
	idset_push(s, id);
	memmove(s->v + i + 1, s->v + i, (size_t)(s->n - 1 - i) * sizeof(*s->v));
	s->v[i] = id;
	return true;
}

static void
idset_del(struct idset *s, int64_t id)
{
	int i = idset_find(s, id);

	if (i < s->n && s->v[i] == id) {
		memmove(s->v + i, s->v + i + 1, (size_t)(s->n - 1 - i) * sizeof(*s->v));
		s->n--;
	}
}

/* Collects the ids of the node objects in a line as its bytes arrive. */
static void
id_feed(struct node *n, const char *p, size_t k)
{
	for (size_t i = 0; i < k; i++) {
		char ch = p[i];

		if (n->id_st == ID_DIGITS) {
			if (ch >= '0' && ch <= '9') {
				n->id_acc = n->id_acc * 10 + (ch - '0');
				continue;
			}
			if (n->id_acc > 0)
				idset_push(&n->lids, n->id_acc);
			n->id_st = 0;
			n->id_acc = 0;
		}
		if (n->id_st == 0) {
			const char *q = memchr(p + i, '{', k - i);

			if (q == NULL)
				return;
			i = (size_t)(q - p);
			n->id_st = 1;
		} else if (ch == ID_PAT[n->id_st]) {
			n->id_st++;
		} else {
			n->id_st = ch == '{';
		}
	}
}

static int
cmp_id(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

	return x < y ? -1 : x > y;
}

/* The end of a line: the peer set after it (full map: its peers; delta:
 * peer_added/peer_changed add or replace, peer_removed removes). */
static void
id_line_end(struct node *n)
{
	const char *r;

	if (n->id_st == ID_DIGITS && n->id_acc > 0)
		idset_push(&n->lids, n->id_acc);
	n->id_st = 0;
	n->id_acc = 0;
	if (strncmp(n->head, "{\"type\":\"full\"", 14) == 0 && n->lids.n > 0) {
		n->self_id = n->lids.v[0];	/* "self" comes first */
		n->ids.n = 0;
		for (int i = 1; i < n->lids.n; i++)
			idset_push(&n->ids, n->lids.v[i]);
		qsort(n->ids.v, (size_t)n->ids.n, sizeof(*n->ids.v), cmp_id);
	} else if (strstr(n->head, "\"peer_added\":") || strstr(n->head, "\"peer_changed\":")) {
		for (int i = 0; i < n->lids.n; i++)
			if (n->lids.v[i] != n->self_id)
				idset_add(&n->ids, n->lids.v[i]);
	} else if ((r = strstr(n->head, "\"peer_removed\":")) != NULL) {
		idset_del(&n->ids, strtoll(r + 15, NULL, 10));
	}
	n->lids.n = 0;
	set_state(n, n->up, n->ids.n);
}

static void
line_end(struct node *n)
{
	int64_t now = time_mono_ms();
	char *v;

	n->nlines++;
	if (!n->synced) {
		bool was = is_current(n);

		n->synced = true;
		g.n_current += (int)is_current(n) - (int)was;
	}
	if (n->opening && strncmp(n->head, "{\"type\":\"full\"", 14) != 0) {
		/* a resumed stream (deltas, then a keepalive): no full map to wait for */
		n->opening = false;
		g.n_opening--;
	}
	n->head[n->hl < HEAD_KEEP ? n->hl : HEAD_KEEP - 1] = 0;
	if ((v = strstr(n->head, "\"version\":")) != NULL) {
		uint64_t nv = strtoull(v + 10, NULL, 10);

		if (nv < n->version)
			g.regressions++;	/* the protocol forbids it, restarts included */
		n->version = nv;
	}
	if (g.ha)
		id_line_end(n);
	if (strncmp(n->head, "{\"type\":\"full\"", 14) == 0) {
		n->nfull++;
		n->full_ms = now;
		if (!g.ha)
			set_state(n, n->up, (int)n->markers - 1);
		if (n->opening) {
			n->opening = false;
			g.n_opening--;
		}
		if (g.pol_active && g.pol_ms[n - g.nodes] < 0) {
			g.pol_ms[n - g.nodes] = now - g.pol_t0;
			g.n_pol++;
		}
	} else if (strncmp(n->head, "{\"type\":\"delta\"", 15) == 0) {
		/* A policy change that leaves a node's peers alone arrives as a
		 * "filter" delta instead of a full map. */
		if (g.pol_active && g.pol_ms[n - g.nodes] < 0 && strstr(n->head, "\"filter\":")) {
			g.pol_ms[n - g.nodes] = now - g.pol_t0;
			g.n_pol++;
		}
		if (g.ha)
			;	/* id_line_end() did it */
		else if (strstr(n->head, "\"peer_added\":"))
			set_state(n, n->up, n->peers + 1);
		else if (strstr(n->head, "\"peer_removed\":"))
			set_state(n, n->up, n->peers - 1);
	}
	if (n->watch_hits > 0 && g.watch[0] && n->watch_round != g.watch_round) {
		n->watch_round = g.watch_round;
		g.n_watch++;
	}
	n->hl = 0;
	n->markers = n->watch_hits = 0;
	n->mm.clen = n->mw.clen = 0;
}

static void
line_feed(struct node *n, const char *p, size_t len)
{
	while (len > 0) {
		const char *nl = memchr(p, '\n', len);
		size_t k = nl ? (size_t)(nl - p) : len;

		if (n->hl < HEAD_KEEP - 1) {
			size_t c = k < HEAD_KEEP - 1 - n->hl ? k : HEAD_KEEP - 1 - n->hl;

			memcpy(n->head + n->hl, p, c);
		}
		n->hl += k;
		n->markers += match_feed(&n->mm, MARKER, p, k);
		if (g.ha)
			id_feed(n, p, k);
		if (g.watch[0])
			n->watch_hits += match_feed(&n->mw, g.watch, p, k);
		if (nl == NULL)
			return;
		line_end(n);
		p += k + 1;
		len -= k + 1;
	}
}

/* ---- responses ---- */

static void on_complete(struct conn *c);
static void on_fail(struct conn *c, const char *why);

static void
body_data(struct conn *c, const char *p, size_t n)
{
	if (c->kind == K_MAP && c->node >= 0 && c->status == 200) {
		line_feed(&g.nodes[c->node], p, n);
		return;
	}
	if (c->blen + n > BODY_MAX)
		n = BODY_MAX - c->blen;
	if (c->body == NULL && (c->body = malloc(BODY_MAX + 1)) == NULL)
		die("out of memory");
	memcpy(c->body + c->blen, p, n);
	c->blen += n;
	c->body[c->blen] = 0;
}

/* Feeds body bytes; returns the number used (the rest belongs to the next
 * answer) or -1 on a framing error. Sets done when the body is complete. */
static ssize_t
body_feed(struct conn *c, const char *p, size_t n, bool *complete)
{
	size_t i = 0;

	*complete = false;
	if (!c->chunked) {
		size_t k = n;

		if (c->clen >= 0 && (int64_t)k > c->clen - c->got)
			k = (size_t)(c->clen - c->got);
		body_data(c, p, k);
		c->got += (int64_t)k;
		if (c->clen >= 0 && c->got == c->clen)
			*complete = true;
		return (ssize_t)k;
	}
	while (i < n && !*complete) {
		char ch = p[i];

		switch (c->cst) {
		case CH_SIZE:
			if (ch >= '0' && ch <= '9')
				c->crem = c->crem * 16 + (uint64_t)(ch - '0');
			else if ((ch | 0x20) >= 'a' && (ch | 0x20) <= 'f')
				c->crem = c->crem * 16 + (uint64_t)((ch | 0x20) - 'a' + 10);
			else if (ch == ';')
				c->cst = CH_EXT;
			else if (ch == '\r')
				c->cst = CH_SIZE_LF;
			else
				return -1;
			i++;
			break;
		case CH_EXT:
			if (ch == '\r')
				c->cst = CH_SIZE_LF;
			i++;
			break;
		case CH_SIZE_LF:
			if (ch != '\n')
				return -1;
			i++;
			c->cst = c->crem == 0 ? CH_TRAILER : CH_DATA;
			c->hlen = 0;	/* trailer line length */
			break;
		case CH_DATA: {
			size_t k = n - i < c->crem ? n - i : (size_t)c->crem;

			body_data(c, p + i, k);
			i += k;
			c->crem -= k;
			if (c->crem == 0)
				c->cst = CH_DATA_CR;
			break;
		}
		case CH_DATA_CR:
			if (ch != '\r')
				return -1;
			c->cst = CH_DATA_LF;
			i++;
			break;
		case CH_DATA_LF:
			if (ch != '\n')
				return -1;
			c->cst = CH_SIZE;
			c->crem = 0;
			i++;
			break;
		case CH_TRAILER:
			/* trailer lines until an empty one */
			i++;
			if (ch == '\n') {
				if (c->hlen == 0)
					*complete = true;
				c->hlen = 0;
			} else if (ch != '\r') {
				c->hlen++;
			}
			break;
		}
	}
	return (ssize_t)i;
}

/* Parses the status line and headers in c->hdr. */
static int
parse_headers(struct conn *c)
{
	char *line, *save = NULL;

	c->hdr[c->hlen] = 0;
	line = strtok_r(c->hdr, "\r\n", &save);
	if (line == NULL || sscanf(line, "HTTP/1.%*d %d", &c->status) != 1)
		return -1;
	while ((line = strtok_r(NULL, "\r\n", &save)) != NULL) {
		if (strncasecmp(line, "Content-Length:", 15) == 0)
			c->clen = strtoll(line + 15, NULL, 10);
		else if (strncasecmp(line, "Transfer-Encoding:", 18) == 0 && strcasestr(line, "chunked"))
			c->chunked = true;
		else if (strncasecmp(line, "Connection:", 11) == 0 && strcasestr(line, "close"))
			c->close_after = true;
	}
	c->hlen = 0;
	return 0;
}

/* Handles received bytes; returns -1 when the connection must be dropped. */
static int
conn_input(struct conn *c, const char *p, size_t n)
{
	while (n > 0) {
		if (c->st == C_HEADERS) {
			size_t i;
			bool end = false;

			for (i = 0; i < n && !end; i++) {
				if (c->hlen >= HDR_MAX - 1)
					return -1;
				c->hdr[c->hlen++] = p[i];
				end = c->hlen >= 4 && memcmp(c->hdr + c->hlen - 4, "\r\n\r\n", 4) == 0;
			}
			p += i;
			n -= i;
			if (!end)
				return 0;
			if (parse_headers(c) != 0)
				return -1;
			c->st = C_BODY;
			if (c->kind == K_MAP && c->node >= 0 && c->status == 200) {
				struct node *nd = &g.nodes[c->node];

				nd->hl = 0;
				nd->markers = nd->watch_hits = 0;
				nd->mm.clen = nd->mw.clen = 0;
				nd->id_st = 0;
				nd->id_acc = 0;
				nd->lids.n = 0;
				nd->synced = false;
				set_state(nd, true, nd->peers);
			}
			if (!c->chunked && c->clen == 0) {
				c->st = C_IDLE;
				on_complete(c);
				if (c->fd < 0)
					return 0;
			}
			continue;
		}
		if (c->st == C_BODY) {
			bool complete;
			ssize_t k = body_feed(c, p, n, &complete);

			if (k < 0)
				return -1;
			p += k;
			n -= (size_t)k;
			if (complete) {
				c->st = C_IDLE;
				on_complete(c);
				if (c->fd < 0)
					return 0;
			}
			continue;
		}
		return -1;	/* bytes while no request is out */
	}
	return 0;
}

static void
conn_event(struct conn *c, uint32_t ev)
{
	if (c->st == C_CONNECTING && (ev & (EPOLLOUT | EPOLLERR | EPOLLHUP))) {
		int err = 0;
		socklen_t el = sizeof(err);

		if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el) != 0 || err != 0) {
			errno = err;
			on_fail(c, "connect failed");
			return;
		}
		c->st = c->out ? C_SENDING : C_IDLE;
		if (c->st == C_IDLE)
			want_out(c, false);
	}
	if (c->st == C_SENDING && (ev & EPOLLOUT)) {
		while (c->outoff < c->outlen) {
			ssize_t k = send(c->fd, c->out + c->outoff, c->outlen - c->outoff,
			    MSG_NOSIGNAL);

			if (k < 0) {
				if (errno == EAGAIN)
					return;
				on_fail(c, "send failed");
				return;
			}
			c->outoff += (size_t)k;
		}
		free(c->out);
		c->out = NULL;
		c->st = C_HEADERS;
		want_out(c, false);
	}
	if (ev & (EPOLLIN | EPOLLERR | EPOLLHUP)) {
		int rounds = 0;

		while (c->fd >= 0 && rounds++ < 16) {
			ssize_t k = recv(c->fd, rbuf, sizeof(rbuf), 0);

			if (k < 0 && errno == EAGAIN)
				return;
			if (k <= 0) {
				/* EOF: an answer without length ends here */
				if (k == 0 && c->st == C_BODY && !c->chunked && c->clen < 0) {
					c->st = C_IDLE;
					on_complete(c);
					conn_close(c);
					return;
				}
				on_fail(c, k == 0 ? "closed by the server" : "recv failed");
				return;
			}
			g.bytes += (uint64_t)k;
			if (conn_input(c, rbuf, (size_t)k) != 0) {
				on_fail(c, "bad HTTP framing");
				return;
			}
			if ((size_t)k < sizeof(rbuf))
				return;
		}
	}
}

/* ---- node state machine ---- */

static void
node_schedule_retry(struct node *n)
{
	int64_t now = time_mono_ms();

	n->backoff = n->backoff ? (n->backoff * 2 > 2000 ? 2000 : n->backoff * 2) : 100;
	n->retry_at = now + n->backoff / 2 + (int64_t)random_u32((uint32_t)n->backoff);
}

static void
node_send(struct node *n)
{
	size_t len;
	char *r;
	int i = (int)(n - g.nodes);

	if (n->c.fd < 0 && conn_open(&n->c) != 0) {
		g.errors++;
		node_schedule_retry(n);
		return;
	}
	if (!n->registered) {
		r = register_request(n, i, &len);
		conn_request(&n->c, r, len, K_REGISTER);
		g.reg_inflight++;
	} else {
		r = map_request(n, &len);
		conn_request(&n->c, r, len, K_MAP);
		if (!n->opening) {
			n->opening = true;
			g.n_opening++;
		}
	}
	n->retry_at = 0;
}

static void
on_complete(struct conn *c)
{
	struct node *n;

	if (c->node < 0) {
		c->done = true;
		return;
	}
	n = &g.nodes[c->node];
	if (c->kind == K_REGISTER) {
		g.reg_inflight--;
		if (c->status == 200 || c->status == 201) {
			n->registered = true;
			n->backoff = 0;
			g.reg_done++;
		} else {
			g.errors++;
			if (g.errors < 20)
				fprintf(stderr, "bench-control: register node %d: HTTP %d %s\n",
				    c->node, c->status, c->body ? c->body : "");
			node_schedule_retry(n);
		}
		free(c->body);
		c->body = NULL;
		c->blen = 0;
		if (c->close_after)
			conn_close(c);
		return;
	}
	if (c->kind == K_MAP) {
		/* a map stream ended cleanly (or was refused) */
		if (c->status != 200) {
			g.errors++;
			if (g.errors < 20)
				fprintf(stderr, "bench-control: map node %d: HTTP %d %s\n",
				    c->node, c->status, c->body ? c->body : "");
		}
		set_state(n, false, n->peers);
		if (n->opening) {
			n->opening = false;
			g.n_opening--;
		}
		conn_close(c);
		if (n->want_stream)
			node_schedule_retry(n);
	}
}

static void
on_fail(struct conn *c, const char *why)
{
	static unsigned logged;
	struct node *n;

	if (c->node >= 0 && g.nodes[c->node].want_stream && logged++ < 5)
		fprintf(stderr, "bench-control: node %d: %s (state %d, kind %d, errno %d)\n",
		    c->node, why, (int)c->st, (int)c->kind, errno);

	if (c->node < 0) {
		c->failed = true;
		conn_close(c);
		return;
	}
	n = &g.nodes[c->node];
	if (c->kind == K_REGISTER && c->st != C_IDLE)
		g.reg_inflight--;
	conn_close(c);
	set_state(n, false, n->peers);
	if (n->opening) {
		n->opening = false;
		g.n_opening--;
	}
	if (!n->registered || n->want_stream) {
		g.reconnects++;
		node_schedule_retry(n);
	}
}

/* ---- the loop ---- */

static void
tick(void)
{
	int64_t now = time_mono_ms();

	/* registrations, at most max_reg at a time */
	while (g.reg_on && g.reg_next < g.nall && g.reg_inflight < g.max_reg) {
		struct node *n = &g.nodes[g.reg_next++];

		node_send(n);
	}
	for (int i = g.lo; i < g.nall; i++) {
		struct node *n = &g.nodes[i];

		if (n->retry_at == 0 || n->retry_at > now)
			continue;
		if (!n->registered && g.reg_inflight >= g.max_reg)
			continue;
		if (n->registered && (!n->want_stream || g.n_opening >= g.max_opening))
			continue;
		node_send(n);
	}
	/* stream opening, at most max_opening waiting for their first map */
	while (g.open_on && g.open_next < g.hi && g.n_opening < g.max_opening) {
		struct node *n = &g.nodes[g.open_next++];

		n->want_stream = true;
		if (n->c.fd >= 0 && n->c.st != C_IDLE) {
			node_schedule_retry(n);
			continue;
		}
		node_send(n);
	}
}

static char w_marker[];
static void w_input(char *tag);

static void
loop_once(int timeout_ms)
{
	struct epoll_event ev[256];
	int k = epoll_wait(g.epfd, ev, 256, timeout_ms);

	for (int i = 0; i < k; i++) {
		char *tag = ev[i].data.ptr;

		if (g.ha && tag >= w_marker && tag <= w_marker + W_MAX)
			w_input(tag);
		else
			conn_event(ev[i].data.ptr, ev[i].events);
	}
}

typedef bool (*pred_fn)(void);
static bool never(void);
static bool aux_done(void);

/* Runs the loop until pred() or the timeout; true when pred() held. */
static bool
run_until(pred_fn pred, int64_t timeout_ms)
{
	int64_t start = time_mono_ms(), end = start + timeout_ms, last_tick = 0;
	int64_t last_report = start;

	int64_t prev = start;

	while (!pred()) {
		int64_t now = time_mono_ms();

		if (now - prev > g.max_stall_ms)
			g.max_stall_ms = now - prev;
		prev = now;
		if (now >= end)
			return false;
		if (now - last_report >= 10000 && pred != never && pred != aux_done && !g.is_helper) {
			fprintf(stderr, "%s:   ... %.0f s: %d/%d streams current, %d opening, "
			    "%d registered, %.1f GB read%s\n", g.ha ? "bench-ha" : "bench-control",
			    (now - start) / 1000.0, g.n_current, g.hi - g.lo, g.n_opening, g.reg_done,
			    g.bytes / 1e9, g.hi - g.lo < g.nnodes ? " (this process)" : "");
			last_report = now;
			for (int i = g.lo, k = 0; g.ha && i < g.hi && k < 3 && g.n_current > 0; i++) {
				struct node *n = &g.nodes[i];

				if (is_current(n) || !n->want_stream)
					continue;
				k++;
				n->head[n->hl < HEAD_KEEP ? n->hl : HEAD_KEEP - 1] = 0;
				fprintf(stderr, "bench-ha:     not current: node %d (replica %d, group %d): "
				    "up %d synced %d peers %d of %d, %u full maps, %u lines, version %"
				    PRIu64 "\n", i, n->rep, n->group, n->up, n->synced, n->peers,
				    n->expected, n->nfull, n->nlines, n->version);
			}
		}
		if (now - last_tick >= 20) {
			tick();
			last_tick = now;
		}
		loop_once(10);
	}
	return true;
}

static bool never(void) { return false; }
static bool aux_done(void) { return g.aux.done || g.aux.failed; }
static bool all_registered(void) { return g.reg_done >= g.nall - g.lo; }
static bool all_current(void) { return g.n_current == g.hi - g.lo; }
static bool all_watched(void) { return g.n_watch >= g.nnodes; }
static bool all_policy(void) { return g.n_pol >= g.nnodes; }

/* One request on the auxiliary connection (Connection: close); returns the
 * status, the body in *body (malloc'd) when asked. */
static int
aux_call(char *req, size_t len, char **body, int64_t timeout_ms)
{
	struct conn *c = &g.aux;

	conn_close(c);
	c->node = -1;
	conn_request(c, req, len, K_AUX);
	if (conn_open(c) != 0)
		return -1;
	if (!run_until(aux_done, timeout_ms) || c->failed) {
		conn_close(c);
		return -1;
	}
	if (body) {
		*body = c->body;
		c->body = NULL;
	}
	conn_close(c);
	return c->status;
}

static int
api(const char *method, const char *path, const char *json, char **body)
{
	size_t len;
	char *r = api_request(method, path, json, &len);

	return aux_call(r, len, body, 60000);
}

/* ---- phases ---- */

static void
wait_healthy(void)
{
	int64_t end = time_mono_ms() + 20000;

	for (;;) {
		size_t len;
		char *r = api_request("GET", "/healthz", NULL, &len);

		if (aux_call(r, len, NULL, 2000) == 200)
			return;
		if (time_mono_ms() > end)
			die("the server did not become healthy (see its log)");
		usleep(50 * 1000);
	}
}

static void
bootstrap(void)
{
	char cmd[1024];
	FILE *p;

	if (g.ha)
		snprintf(cmd, sizeof(cmd), "'%s' apikeys create --db '%s' 2>>'%s'", g.server_bin,
		    g.pg_url, g.log);
	else
		snprintf(cmd, sizeof(cmd), "'%s' apikeys create --create --db '%s' 2>>'%s'",
		    g.server_bin, g.db, g.log);
	if ((p = popen(cmd, "r")) == NULL || fgets(g.apikey, sizeof(g.apikey), p) == NULL)
		die("apikeys create failed");
	pclose(p);
	g.apikey[strcspn(g.apikey, "\r\n")] = 0;
}

/* A reusable pre-auth key of `user` (JSON array `tags` or NULL) into out. */
static void
create_key(const char *user, const char *tags, char *out, size_t outlen)
{
	char *body = NULL, req[256];
	json_t *j;
	const char *k;

	snprintf(req, sizeof(req), "{\"user\":\"%s\",\"reusable\":true,\"expiration\":\"24h\"%s%s}",
	    user, tags ? ",\"tags\":" : "", tags ? tags : "");
	if (api("POST", "/api/v1/preauthkeys", req, &body) / 100 != 2 || body == NULL)
		die("cannot create the pre-auth key");
	j = json_loads(body, 0, NULL);
	k = json_string_value(json_object_get(json_object_get(j, "preauthkey"), "key"));
	if (k == NULL)
		die("pre-auth key answer has no key");
	str_copy(out, k, outlen);
	json_decref(j);
	free(body);
}

static void
make_authkey(void)
{
	if (api("POST", "/api/v1/users", "{\"name\":\"bench\"}", NULL) != 201)
		die("cannot create the user");
	create_key("bench", NULL, g.authkey, sizeof(g.authkey));
}

static void
usage(void)
{
	fprintf(stderr, "usage: bench-control --nodes N [--server BIN] [--joins J] "
	    "[--endpoints E] [--idle-s S] [--policy-fanout] [--fanout-only] [--max-opening K] "
	    "[--keep]\n"
	    "       bench-control --ha --nodes N [--replicas R] [--server BIN] [--pg-script PATH]\n"
	    "                     [--group-size G] [--shared S] [--joins J] [--max-opening K]\n"
	    "                     [--log-level LEVEL] [--per-process P] [--keep]\n");
	exit(2);
}

static void
fmt_ms(char *out, size_t n, double v)
{
	if (v < 0)
		snprintf(out, n, "n/a");
	else
		snprintf(out, n, "%.1f", v);
}

/* PUTs `pol` and waits until every stream got its new filter; returns the
 * p99 in ms (-1 on failure). */
static double
policy_fanout(const char *what, const char *pol)
{
	double p99 = -1;
	int st;

	for (int i = 0; i < g.nnodes; i++)
		g.pol_ms[i] = -1;
	g.n_pol = 0;
	g.pol_active = true;
	g.pol_t0 = time_mono_ms();
	st = api("PUT", "/api/v1/policy", pol, NULL);
	if (st != 200) {
		fprintf(stderr, "bench-control: %s policy PUT: HTTP %d\n", what, st);
	} else if (!run_until(all_policy, 300 * 1000)) {
		fprintf(stderr, "bench-control: %s policy change reached only %d of %d streams\n",
		    what, g.n_pol, g.nnodes);
	} else {
		p99 = pct(g.pol_ms, g.nnodes, 0.99);
		fprintf(stderr, "bench-control: %s policy fan-out p50 %.0f ms, p90 %.0f ms, "
		    "p99 %.0f ms, max %.0f ms\n", what, pct(g.pol_ms, g.nnodes, 0.50),
		    pct(g.pol_ms, g.nnodes, 0.90), p99, pct(g.pol_ms, g.nnodes, 1.0));
	}
	g.pol_active = false;
	/* wait for the streams to be current again */
	run_until(all_current, 120 * 1000);
	return p99;
}

/* ---- --ha: replicas on PostgreSQL ---- */

static void
pg_start(void)
{
	char cmd[600], line[3][256];
	FILE *p;

	snprintf(cmd, sizeof(cmd), "bash '%s' start", g.pg_script);
	if ((p = popen(cmd, "r")) == NULL)
		die("cannot run pg.sh");
	for (int i = 0; i < 3; i++) {
		if (fgets(line[i], sizeof(line[i]), p) == NULL) {
			pclose(p);
			die("pg.sh start failed");
		}
		line[i][strcspn(line[i], "\r\n")] = 0;
	}
	pclose(p);
	str_copy(g.pg_dir, line[0], sizeof(g.pg_dir));
	g.pg_pid = (pid_t)atoi(line[1]);
	str_copy(g.pg_url, line[2], sizeof(g.pg_url));
}

static void
pg_stop(void)
{
	char cmd[700];

	snprintf(cmd, sizeof(cmd), "bash '%s' stop '%s' %d", g.pg_script, g.pg_dir, (int)g.pg_pid);
	if (system(cmd) == 0) {
		g.pg_pid = 0;
		g.pg_dir[0] = 0;
	}
}

/* Stream nodes plus registered joiners in group k. */
static int *group_count;

/* Sets what every stream should list: a group node its group and the shared
 * servers, a shared server every group node (not the other shared ones). */
static void
ha_expect(void)
{
	int members = 0;

	for (int k = 0; k < g.ngroups; k++)
		members += group_count[k];
	for (int i = 0; i < g.nnodes; i++) {
		struct node *n = &g.nodes[i];

		n->expected = n->group < 0 ? members : group_count[n->group] - 1 + g.nshared;
	}
	recount();
}

/* The generated policy: group:gK (user gK) sees its own group and every
 * tag:shared server; the shared servers (user bench, tagged) see whoever
 * may reach them. */
static char *
ha_policy(void)
{
	size_t cap = 256 + (size_t)g.ngroups * 160, len;
	char *p = malloc(cap);

	if (p == NULL)
		die("out of memory");
	len = (size_t)snprintf(p, cap, "{\"tagOwners\":{\"tag:shared\":[\"bench@\"]},\"groups\":{");
	for (int k = 0; k < g.ngroups; k++)
		len += (size_t)snprintf(p + len, cap - len, "%s\"group:g%d\":[\"g%d@\"]", k ? "," : "",
		    k, k);
	len += (size_t)snprintf(p + len, cap - len, "},\"acls\":[");
	for (int k = 0; k < g.ngroups; k++)
		len += (size_t)snprintf(p + len, cap - len, "%s{\"action\":\"accept\",\"src\":[\"group:g%d\"],"
		    "\"dst\":[\"group:g%d:*\",\"tag:shared:*\"]}", k ? "," : "", k, k);
	snprintf(p + len, cap - len, "]}");
	return p;
}

static long
ha_rss_kb(void)
{
	long sum = 0;

	for (int i = 0; i < g.nrep; i++) {
		long kb = g.pids[i] > 0 ? proc_rss_kb(g.pids[i]) : 0;

		fprintf(stderr, "bench-ha:   replica %d: rss %ld kB\n", i, kb);
		sum += kb > 0 ? kb : 0;
	}
	return sum;
}

/*
 * Helper processes. One process may hold only RLIMIT_NOFILE sockets (20,000
 * here, and raising the hard limit needs CAP_SYS_RESOURCE), so above
 * --per-process streams the nodes are split: this process holds the first
 * share (the shared servers, the groups that get the joins: every timed
 * stream) and forked helpers hold the others. Helpers enrol and hold their
 * nodes, move them at the failover like this process does, and report over
 * a pipe (CLOCK_MONOTONIC times are comparable across processes).
 */
enum wtype { W_ENROLLED = 1, W_CURRENT, W_RECOVERED, W_FINAL, C_OPEN, C_KILL, C_QUIT };

struct wmsg {
	int32_t type, arg;
	int64_t t, a, b;
};

static struct {
	int n;				/* helpers */
	pid_t pid[W_MAX];
	int to[W_MAX], from[W_MAX];	/* pipes: commands to, reports from */
	int got[W_MAX][C_OPEN];		/* reports received, by type */
	int64_t t[W_MAX][C_OPEN];	/* and their times */
	int64_t a[W_MAX][C_OPEN], b[W_MAX][C_OPEN];
	int cmd_fd, rep_fd;		/* in a helper */
	struct wmsg cmd;
	bool have_cmd;
	bool is_helper;
} w;

static char w_marker[W_MAX + 1];	/* epoll tags of the pipes */

static void
w_send(int fd, int type, int arg, int64_t t, int64_t a, int64_t b)
{
	struct wmsg m = { type, arg, t, a, b };

	if (write(fd, &m, sizeof(m)) != (ssize_t)sizeof(m))
		die("pipe to a helper process failed");
}

/* A pipe is readable (called from the loop). */
static void
w_input(char *tag)
{
	int k = (int)(tag - w_marker);
	struct wmsg m;
	ssize_t r = read(k == W_MAX ? w.cmd_fd : w.from[k], &m, sizeof(m));

	if (r == 0 || (r < 0 && errno != EAGAIN)) {
		if (w.is_helper)
			_exit(0);	/* the parent is gone */
		die("a helper process died");
	}
	if (r != (ssize_t)sizeof(m))
		return;
	if (w.is_helper) {
		w.cmd = m;
		w.have_cmd = true;
	} else if (m.type > 0 && m.type < C_OPEN) {
		w.got[k][m.type]++;
		w.t[k][m.type] = m.t;
		w.a[k][m.type] = m.a;
		w.b[k][m.type] = m.b;
	}
}

static bool
w_all(int type)
{
	for (int k = 0; k < w.n; k++)
		if (w.got[k][type] == 0)
			return false;
	return true;
}

static int64_t
w_latest(int type, int64_t own)
{
	for (int k = 0; k < w.n; k++)
		if (w.t[k][type] > own)
			own = w.t[k][type];
	return own;
}

static bool have_cmd(void) { return w.have_cmd; }
static bool all_registered_w(void) { return all_registered() && w_all(W_ENROLLED); }
static bool all_current_w(void) { return all_current() && w_all(W_CURRENT); }
static bool all_recovered_w(void) { return all_current() && w_all(W_RECOVERED); }
static bool all_final_w(void) { return w_all(W_FINAL); }

static void
epoll_tag(int fd, char *tag)
{
	struct epoll_event ev;

	memset(&ev, 0, sizeof(ev));
	ev.events = EPOLLIN;
	ev.data.ptr = tag;
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
	if (epoll_ctl(g.epfd, EPOLL_CTL_ADD, fd, &ev) != 0)
		die("epoll");
}

/* Moves this process's streams off the killed replica (round-robin over
 * the others); each resumes with the version it had. */
static int
move_streams(int victim)
{
	int moved = 0;

	for (int i = g.lo; i < g.hi; i++) {
		struct node *n = &g.nodes[i];

		if (n->rep != victim)
			continue;
		conn_close(&n->c);
		/* (a helper may have reopened it to the dead replica before
		 * it heard of the kill: that attempt no longer counts) */
		if (n->opening) {
			n->opening = false;
			g.n_opening--;
		}
		set_state(n, false, n->peers);
		n->rep = moved++ % (g.nrep - 1);
		n->backoff = 0;
		node_schedule_retry(n);
	}
	return moved;
}

static uint64_t
own_fulls(void)
{
	uint64_t f = 0;

	for (int i = g.lo; i < g.hi; i++)
		f += g.nodes[i].nfull;
	return f;
}

/* A helper: enrols and holds nodes lo..hi-1, as told. */
static void
helper_main(int k)
{
	uint64_t fulls = 0;
	int moved = 0;

	w.is_helper = true;
	signal(SIGINT, SIG_DFL);
	signal(SIGTERM, SIG_DFL);
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	g.is_helper = true;	/* the servers and PostgreSQL are the parent's */
	epoll_tag(w.cmd_fd, &w_marker[W_MAX]);
	g.nall = g.hi;
	g.reg_next = g.lo;
	g.open_next = g.lo;
	g.reg_on = true;
	if (!run_until(all_registered, 3600 * 1000))
		_exit(1);
	w_send(w.rep_fd, W_ENROLLED, k, time_mono_ms(), g.errors, 0);
	for (;;) {
		w.have_cmd = false;
		run_until(have_cmd, INT64_MAX / 4);
		switch (w.cmd.type) {
		case C_OPEN:
			g.open_on = true;
			ha_expect();
			run_until(all_current, 3600 * 1000);
			w_send(w.rep_fd, W_CURRENT, k, time_mono_ms(), g.reconnects, 0);
			break;
		case C_KILL:
			fulls = own_fulls();
			moved = move_streams((int)w.cmd.a);
			run_until(all_current, 600 * 1000);
			w_send(w.rep_fd, W_RECOVERED, k, all_current() ? time_mono_ms() : 0,
			    (int64_t)(own_fulls() - fulls), moved);
			break;
		case C_QUIT:
			w_send(w.rep_fd, W_FINAL, k, time_mono_ms(), (int64_t)g.regressions,
			    (int64_t)g.bytes);
			for (int i = g.lo; i < g.hi; i++)
				conn_close(&g.nodes[i].c);
			_exit(0);
		default:
			break;
		}
	}
}

static void
start_helpers(int per)
{
	int share = (g.nnodes + w.n) / (w.n + 1);

	(void)per;
	g.lo = 0;
	g.hi = share;
	for (int k = 0; k < w.n; k++) {
		int to[2], from[2];
		pid_t pid;

		if (pipe2(to, O_CLOEXEC) != 0 || pipe2(from, O_CLOEXEC) != 0)
			die("pipe");
		fflush(stderr);
		if ((pid = fork()) < 0)
			die("fork");
		if (pid == 0) {
			close(to[1]);
			close(from[0]);
			for (int j = 0; j < k; j++) {
				close(w.to[j]);
				close(w.from[j]);
			}
			close(g.epfd);
			if ((g.epfd = epoll_create1(EPOLL_CLOEXEC)) < 0)
				_exit(1);
			w.n = 0;
			w.cmd_fd = to[0];
			w.rep_fd = from[1];
			g.lo = share * (k + 1);
			g.hi = g.lo + share < g.nnodes ? g.lo + share : g.nnodes;
			helper_main(k);
			_exit(0);
		}
		close(to[0]);
		close(from[1]);
		w.pid[k] = pid;
		w.to[k] = to[1];
		w.from[k] = from[0];
		epoll_tag(w.from[k], &w_marker[k]);
	}
}

static int
ha_main(void)
{
	char name[64], b1[32], b2[32], b3[32] = "n/a", b4[32] = "-";
	char *pol;
	int64_t t0, t_reg, t_maps, t_rec;
	double enrol_per_s, maps_s, recover_s = -1;
	long rss, rss_after;
	uint64_t fulls_before, fulls_after, regressions;
	int nj = 0, victim = g.nrep - 1, moved = 0, kmax;

	/* node i: a shared server below nshared, else group (i - nshared) /
	 * group_size; replica i % R (so every group spans every replica) */
	g.nshared = g.nshared < g.nnodes / 2 ? g.nshared : g.nnodes / 2;
	g.ngroups = (g.nnodes - g.nshared + g.group_size - 1) / g.group_size;
	group_count = calloc((size_t)g.ngroups, sizeof(*group_count));
	g.group_keys = calloc((size_t)g.ngroups, sizeof(*g.group_keys));
	g.join_lat_cap = g.joins * (g.group_size + g.nshared + 1) + 1;
	g.join_lat = calloc((size_t)g.join_lat_cap, sizeof(*g.join_lat));
	if (group_count == NULL || g.group_keys == NULL || g.join_lat == NULL)
		die("out of memory");
	for (int i = 0; i < g.nall; i++) {
		struct node *n = &g.nodes[i];

		n->rep = i % g.nrep;
		n->group = i < g.nshared ? -1 : (i - g.nshared) / g.group_size;
		if (i < g.nnodes && n->group >= 0)
			group_count[n->group]++;
	}

	snprintf(g.dir, sizeof(g.dir), "%s/bench-ha.XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	if (mkdtemp(g.dir) == NULL) {
		g.dir[0] = 0;
		die("mkdtemp");
	}
	snprintf(g.log, sizeof(g.log), "%s/bootstrap.log", g.dir);
	fprintf(stderr, "bench-ha: starting PostgreSQL (%s)\n", g.pg_script);
	pg_start();
	bootstrap();
	for (int i = 0; i < g.nrep; i++) {
		g.ports[i] = free_port();
		start_server(i);
	}
	for (int i = 0; i < g.nrep; i++) {
		g.aux_rep = i;
		wait_healthy();
	}
	g.aux_rep = 0;
	fprintf(stderr, "bench-ha: PostgreSQL pid %d, %d replicas (pids", (int)g.pg_pid, g.nrep);
	for (int i = 0; i < g.nrep; i++)
		fprintf(stderr, " %d on :%d", (int)g.pids[i], g.ports[i]);
	fprintf(stderr, "), dir %s; %d shared servers, %d groups of up to %d\n", g.dir, g.nshared,
	    g.ngroups, g.group_size);

	/* users, policy, keys (REST on replica 0) */
	if (api("POST", "/api/v1/users", "{\"name\":\"bench\"}", NULL) != 201)
		die("cannot create the user");
	for (int k = 0; k < g.ngroups; k++) {
		char req[64];

		snprintf(req, sizeof(req), "{\"name\":\"g%d\"}", k);
		if (api("POST", "/api/v1/users", req, NULL) != 201)
			die("cannot create a group's user");
	}
	pol = ha_policy();
	if (api("PUT", "/api/v1/policy", pol, NULL) != 200)
		die("the generated policy was refused");
	free(pol);
	create_key("bench", "[\"tag:shared\"]", g.shared_key, sizeof(g.shared_key));
	for (int k = 0; k < g.ngroups; k++) {
		snprintf(name, sizeof(name), "g%d", k);
		create_key(name, NULL, g.group_keys[k], sizeof(g.group_keys[k]));
	}

	/* helpers (no connection is open here now) */
	w.n = (g.nnodes + g.per_process - 1) / g.per_process - 1;
	if (w.n >= W_MAX)
		die("too many nodes for the helper processes");
	start_helpers(g.per_process);
	kmax = (g.hi - g.nshared) / g.group_size;
	if (kmax < 1)
		kmax = 1;
	if (w.n > 0)
		fprintf(stderr, "bench-ha: %d helper processes; this one holds nodes 0-%d\n", w.n,
		    g.hi - 1);

	/* enrol the stream nodes over the replicas (all processes at once) */
	g.nall = g.hi;
	g.reg_next = g.lo;
	g.reg_on = true;
	t0 = time_mono_ms();
	if (!run_until(all_registered_w, 3600 * 1000))
		die("registration did not finish in 60 min");
	t_reg = w_latest(W_ENROLLED, time_mono_ms());
	enrol_per_s = g.nnodes * 1000.0 / (double)(t_reg - t0 > 0 ? t_reg - t0 : 1);
	fprintf(stderr, "bench-ha: %d registered in %.1f s (%.0f/s), %u errors here\n", g.nnodes,
	    (t_reg - t0) / 1000.0, enrol_per_s, g.errors);

	/* every node opens its stream on its replica */
	for (int k = 0; k < w.n; k++)
		w_send(w.to[k], C_OPEN, 0, 0, 0, 0);
	g.open_on = true;
	ha_expect();
	if (!run_until(all_current_w, 3600 * 1000)) {
		fprintf(stderr, "bench-ha: only %d of %d streams current after 60 min\n", g.n_current,
		    g.hi - g.lo);
		die("streams did not come up");
	}
	t_maps = w_latest(W_CURRENT, time_mono_ms());
	maps_s = (t_maps - t_reg) / 1000.0;
	fprintf(stderr, "bench-ha: %d streams current in %.1f s (%.1f MB read here), %u errors, "
	    "%u reconnects here\n", g.nnodes, maps_s, g.bytes / 1e6, g.errors, g.reconnects);
	run_until(never, 2000);
	rss = ha_rss_kb();
	fprintf(stderr, "bench-ha: rss of the replicas %ld kB (%.1f kB/node)\n", rss,
	    (double)rss / g.nnodes);

	/* cross-replica joins: node j registers on replica j % R; each stream
	 * of its group and each shared server held by another replica times its
	 * peer_added */
	for (int j = 0; j < g.joins; j++) {
		struct node *n = &g.nodes[g.nnodes + j];
		int k = (int)((j * 7919L) % kmax), a = j % g.nrep, st, watchers = 0;
		size_t len;
		char *r;

		n->group = k;
		n->rep = a;
		group_count[k]++;
		ha_expect();
		for (int i = g.lo; i < g.hi; i++) {
			struct node *x = &g.nodes[i];

			x->join_wait = x->rep != a && (x->group < 0 || x->group == k);
			watchers += x->join_wait;
		}
		r = register_request(n, g.nnodes + j, &len);
		g.aux_rep = a;
		g.join_t0 = time_mono_ms();
		st = aux_call(r, len, NULL, 60000);
		g.aux_rep = 0;
		if (st != 200 && st != 201) {
			fprintf(stderr, "bench-ha: join %d: HTTP %d\n", j, st);
			group_count[k]--;
			ha_expect();
			continue;
		}
		n->registered = true;
		if (!run_until(all_current, 60 * 1000)) {
			fprintf(stderr, "bench-ha: join %d (group %d via replica %d) reached only %d of %d "
			    "streams\n", j, k, a, g.n_current, g.hi - g.lo);
			continue;
		}
		nj++;
		fprintf(stderr, "bench-ha: join %d via replica %d: %d streams on other replicas, "
		    "last after %" PRId64 " ms\n", j, a, watchers, time_mono_ms() - g.join_t0);
		run_until(never, 100);
	}
	for (int i = g.lo; i < g.hi; i++)
		g.nodes[i].join_wait = false;

	/* failover: kill -9 the last replica; its streams move to the others
	 * (round-robin) and resume with the version they had */
	fulls_before = own_fulls();
	t0 = time_mono_ms();
	kill(g.pids[victim], SIGKILL);
	waitpid(g.pids[victim], NULL, 0);
	g.pids[victim] = 0;
	for (int k = 0; k < w.n; k++)
		w_send(w.to[k], C_KILL, 0, t0, victim, 0);
	moved = move_streams(victim);
	fprintf(stderr, "bench-ha: killed replica %d (kill -9); its streams move to the others\n",
	    victim);
	if (run_until(all_recovered_w, 600 * 1000)) {
		t_rec = time_mono_ms();
		fulls_after = own_fulls() - fulls_before;
		for (int k = 0; k < w.n; k++) {
			if (w.t[k][W_RECOVERED] == 0)
				t_rec = -1;
			else if (t_rec >= 0 && w.t[k][W_RECOVERED] > t_rec)
				t_rec = w.t[k][W_RECOVERED];
			fulls_after += (uint64_t)w.a[k][W_RECOVERED];
			moved += (int)w.b[k][W_RECOVERED];
		}
		if (t_rec >= 0) {
			recover_s = (t_rec - t0) / 1000.0;
			snprintf(b4, sizeof(b4), "%" PRIu64, fulls_after);
		} else
			fprintf(stderr, "bench-ha: a helper's streams did not all recover\n");
	} else
		fprintf(stderr, "bench-ha: after the failover only %d of %d streams current here\n",
		    g.n_current, g.hi - g.lo);
	run_until(never, 2000);
	rss_after = ha_rss_kb();
	fprintf(stderr, "bench-ha: rss of the %d replicas left %ld kB (%.1f kB/node)\n", g.nrep - 1,
	    rss_after, (double)rss_after / g.nnodes);
	regressions = g.regressions;
	for (int k = 0; k < w.n; k++)
		w_send(w.to[k], C_QUIT, 0, 0, 0, 0);
	run_until(all_final_w, 60 * 1000);
	for (int k = 0; k < w.n; k++) {
		regressions += (uint64_t)w.a[k][W_FINAL];
		g.bytes += (uint64_t)w.b[k][W_FINAL];
		waitpid(w.pid[k], NULL, 0);
		w.pid[k] = 0;
	}
	fprintf(stderr, "bench-ha: longest client loop stall %" PRId64 " ms (this process), %.1f GB "
	    "read, %u errors, %u reconnects here\n", g.max_stall_ms, g.bytes / 1e9, g.errors,
	    g.reconnects);

	fmt_ms(b1, sizeof(b1), pct(g.join_lat, g.n_join_lat, 0.50));
	fmt_ms(b2, sizeof(b2), pct(g.join_lat, g.n_join_lat, 0.99));
	if (recover_s >= 0)
		snprintf(b3, sizeof(b3), "%.1f", recover_s);
	printf("bench-ha: nodes=%d replicas=%d enrol_per_s=%.0f cross_join_p99_ms=%s "
	    "failover_recover_s=%s full_maps_after_failover=%s rss_kb_per_node=%.1f "
	    "cross_join_p50_ms=%s joins=%d/%d maps_all_s=%.1f streams_moved=%d "
	    "version_regressions=%" PRIu64 "\n", g.nnodes, g.nrep, enrol_per_s, b2, b3, b4,
	    (double)rss / g.nnodes, b1, nj, g.joins, maps_s, moved, regressions);
	fflush(stdout);

	for (int i = 0; i < g.nrep; i++)
		if (g.pids[i] > 0) {
			kill(g.pids[i], SIGTERM);
			waitpid(g.pids[i], NULL, 0);
			g.pids[i] = 0;
		}
	for (int i = 0; i < g.nall; i++) {
		conn_close(&g.nodes[i].c);
		free(g.nodes[i].c.body);
		free(g.nodes[i].ids.v);
		free(g.nodes[i].lids.v);
	}
	conn_close(&g.aux);
	free(g.aux.body);
	pg_stop();
	kill_all_now();		/* whatever is left, and the directories */
	free(g.nodes);
	free(g.pol_ms);
	free(g.join_lat);
	free(g.group_keys);
	free(group_count);
	close(g.epfd);
	return recover_s >= 0 && nj == g.joins ? 0 : 1;
}

int
main(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "nodes", required_argument, NULL, 'n' },
		{ "server", required_argument, NULL, 's' },
		{ "joins", required_argument, NULL, 'j' },
		{ "endpoints", required_argument, NULL, 'e' },
		{ "idle-s", required_argument, NULL, 'i' },
		{ "max-opening", required_argument, NULL, 'o' },
		{ "policy-fanout", no_argument, NULL, 'p' },
		{ "fanout-only", no_argument, NULL, 'f' },
		{ "keep", no_argument, NULL, 'k' },
		{ "ha", no_argument, NULL, 'H' },
		{ "replicas", required_argument, NULL, 'r' },
		{ "pg-script", required_argument, NULL, 'P' },
		{ "group-size", required_argument, NULL, 'G' },
		{ "shared", required_argument, NULL, 'S' },
		{ "log-level", required_argument, NULL, 'L' },
		{ "per-process", required_argument, NULL, 'W' },
		{ NULL, 0, NULL, 0 },
	};
	struct rlimit rl;
	int ch;
	bool keep = false, fanout_only = false, joins_set = false, opening_set = false;
	int64_t t0, t_reg, t_maps;
	long rss_base, rss;
	long long cpu0, cpu1;
	double enrol_per_s, maps_s, restart_s = -1, idle_pct;
	int64_t *joins, *eps;
	int nj = 0, ne = 0;
	char b1[32], b2[32], b3[32], b4[32], b5[32], b6[32];
	char b7[32] = "-", b8[32] = "-", b9[32] = "-";
	double fan_p99 = -1, fan_grants_p99 = -1, wire_mb = 0;
	uint64_t fulls_before = 0, fulls_after = 0, bytes_before = 0;
	long rss_after = 0;

	g.nnodes = 1000;
	g.joins = 5;
	g.endpoints = 5;
	g.idle_s = 10;
	g.max_opening = 32;
	g.max_reg = 64;
	g.server_bin = "bin/wiremesh-server";
	g.nrep = 1;
	g.pg_script = "tests/tools/pg.sh";
	g.group_size = 100;
	g.log_level = "warn";
	g.per_process = 15000;
	g.nshared = 10;
	while ((ch = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (ch) {
		case 'n': g.nnodes = atoi(optarg); break;
		case 's': g.server_bin = optarg; break;
		case 'j': g.joins = atoi(optarg); joins_set = true; break;
		case 'e': g.endpoints = atoi(optarg); break;
		case 'i': g.idle_s = atoi(optarg); break;
		case 'o': g.max_opening = atoi(optarg); opening_set = true; break;
		case 'p': g.policy_fanout = true; break;
		case 'k': keep = true; break;
		case 'f': fanout_only = g.policy_fanout = true; break;
		case 'H': g.ha = true; break;
		case 'r': g.nrep = atoi(optarg); break;
		case 'P': g.pg_script = optarg; break;
		case 'G': g.group_size = atoi(optarg); break;
		case 'S': g.nshared = atoi(optarg); break;
		case 'L': g.log_level = optarg; break;
		case 'W': g.per_process = atoi(optarg); break;
		default: usage();
		}
	}
	if (fanout_only)
		g.joins = g.endpoints = g.idle_s = 0;
	if (g.ha) {
		/* 20 joins; as many streams opening per replica as with one server */
		if (g.nrep == 1)
			g.nrep = 3;	/* the default of --replicas */
		if (!joins_set)
			g.joins = 20;
		if (!opening_set)
			g.max_opening *= g.nrep;
	}
	if (g.nnodes < 2 || g.joins < 0 || g.endpoints < 0 || g.max_opening < 1 ||
	    (g.ha && (g.nrep < 2 || g.nrep > REP_MAX || g.group_size < 2 || g.nshared < 0 ||
	    g.joins < 1 || g.per_process < 100)) || (!g.ha && g.nrep != 1))
		usage();
	if (sodium_init() < 0)
		die("libsodium");
	signal(SIGPIPE, SIG_IGN);
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
		rlim_t want = (rlim_t)g.nnodes * 2 + 8192;	/* the servers inherit it */

		rl.rlim_cur = rl.rlim_max;
		if (rl.rlim_max < want) {
			/* root may raise the hard limit (up to fs.nr_open) */
			struct rlimit more = { want, want };

			if (setrlimit(RLIMIT_NOFILE, &more) == 0)
				rl = more;
		}
		setrlimit(RLIMIT_NOFILE, &rl);
		/* --ha: each process holds at most --per-process streams */
		if (rl.rlim_cur < (rlim_t)(g.ha && g.per_process < g.nnodes ? g.per_process : g.nnodes) + 64) {
			fprintf(stderr, "bench-control: open file limit %llu is too low for %d nodes\n",
			    (unsigned long long)rl.rlim_cur, g.nnodes);
			return 1;
		}
	}
	g.nall = g.nnodes + g.joins;
	g.nodes = calloc((size_t)g.nall, sizeof(*g.nodes));
	g.pol_ms = calloc((size_t)g.nnodes, sizeof(*g.pol_ms));
	joins = calloc((size_t)g.joins + 1, sizeof(*joins));
	eps = calloc((size_t)g.endpoints + 1, sizeof(*eps));
	if (g.nodes == NULL || g.pol_ms == NULL || joins == NULL || eps == NULL)
		die("out of memory");
	for (int i = 0; i < g.nall; i++) {
		struct node *n = &g.nodes[i];

		sign_keypair(n->pk, n->sk);
		random_bytes(n->nk, KEY_LEN);
		random_bytes(n->dk, KEY_LEN);
		n->c.fd = -1;
		n->c.node = i;
		n->peers = -1;
	}
	g.aux.fd = -1;
	g.aux.node = -1;
	if ((g.epfd = epoll_create1(EPOLL_CLOEXEC)) < 0)
		die("epoll");
	g.keep = keep;
	g.lo = 0;
	g.hi = g.nnodes;
	if (g.ha)
		return ha_main();

	snprintf(g.dir, sizeof(g.dir), "%s/bench-control.XXXXXX",
	    getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	if (mkdtemp(g.dir) == NULL)
		die("mkdtemp");
	snprintf(g.db, sizeof(g.db), "%s/db.sqlite", g.dir);
	snprintf(g.log, sizeof(g.log), "%s/server.log", g.dir);
	bootstrap();
	g.ports[0] = free_port();
	start_server(0);
	wait_healthy();
	make_authkey();
	rss_base = proc_rss_kb(g.pids[0]);
	fprintf(stderr, "bench-control: server pid %d on 127.0.0.1:%d, dir %s, baseline rss %ld kB\n",
	    (int)g.pids[0], g.ports[0], g.dir, rss_base);

	/* enrol: register the N stream nodes (joiners are kept back) */
	g.nall = g.nnodes;
	g.reg_on = true;
	t0 = time_mono_ms();
	if (!run_until(all_registered, 1800 * 1000))
		die("registration did not finish in 30 min");
	t_reg = time_mono_ms();
	enrol_per_s = g.nnodes * 1000.0 / (double)(t_reg - t0 > 0 ? t_reg - t0 : 1);
	fprintf(stderr, "bench-control: %d registered in %.1f s (%.0f/s), %u errors\n",
	    g.nnodes, (t_reg - t0) / 1000.0, enrol_per_s, g.errors);

	/* open every stream; each must get a full map with all N-1 peers */
	g.expected = g.nnodes - 1;
	g.open_on = true;
	expect_all(g.expected);
	if (!run_until(all_current, 1800 * 1000)) {
		fprintf(stderr, "bench-control: only %d of %d streams current after 30 min\n",
		    g.n_current, g.nnodes);
		die("streams did not come up");
	}
	t_maps = time_mono_ms();
	maps_s = (t_maps - t_reg) / 1000.0;
	fprintf(stderr, "bench-control: %d streams with full maps in %.1f s (%.1f MB read), "
	    "%u errors, %u reconnects\n", g.nnodes, maps_s, g.bytes / 1e6, g.errors, g.reconnects);
	/* settle: the online deltas of the last streams */
	run_until(never, 2000);
	rss = proc_rss_kb(g.pids[0]);

	/* idle CPU */
	cpu0 = proc_cpu_ticks(g.pids[0]);
	t0 = time_mono_ms();
	run_until(never, (int64_t)g.idle_s * 1000);
	cpu1 = proc_cpu_ticks(g.pids[0]);
	idle_pct = g.idle_s == 0 ? 0 : (double)(cpu1 - cpu0) * 100.0 /
	    (double)sysconf(_SC_CLK_TCK) / ((time_mono_ms() - t0) / 1000.0);
	fprintf(stderr, "bench-control: rss %ld kB (%.1f kB/node), idle cpu %.2f %% of one core\n",
	    rss, (double)rss / g.nnodes, idle_pct);

	/* joins, one at a time */
	for (int j = 0; j < g.joins; j++) {
		struct node *n = &g.nodes[g.nnodes + j];
		size_t len;
		char *r = register_request(n, g.nnodes + j, &len);
		int st;

		g.expected++;
		expect_all(g.expected);
		t0 = time_mono_ms();
		st = aux_call(r, len, NULL, 60000);
		if (st != 200 && st != 201) {
			fprintf(stderr, "bench-control: join %d: HTTP %d\n", j, st);
			g.expected--;
			expect_all(g.expected);
			continue;
		}
		n->registered = true;
		if (!run_until(all_current, 120 * 1000)) {
			fprintf(stderr, "bench-control: join %d reached only %d of %d streams\n", j,
			    g.n_current, g.nnodes);
			continue;
		}
		joins[nj++] = time_mono_ms() - t0;
		run_until(never, 200);
	}

	/* endpoint changes */
	for (int e = 0; e < g.endpoints; e++) {
		struct node *n = &g.nodes[(size_t)e * (size_t)g.nnodes / (size_t)g.endpoints];
		char body[128];
		size_t len;
		char *r;
		int st;

		g.watch_round++;
		g.n_watch = 0;
		snprintf(g.watch, sizeof(g.watch), "\"192.0.2.1:%d\"", 20000 + g.watch_round);
		snprintf(body, sizeof(body), "{\"endpoints\":[%s],\"home_derp\":900}", g.watch);
		r = signed_request(n, "/machine/endpoints", body, &len);
		t0 = time_mono_ms();
		st = aux_call(r, len, NULL, 60000);
		if (st != 200) {
			fprintf(stderr, "bench-control: endpoints %d: HTTP %d\n", e, st);
			continue;
		}
		if (!run_until(all_watched, 120 * 1000)) {
			fprintf(stderr, "bench-control: endpoint change %d reached only %d of %d "
			    "streams\n", e, g.n_watch, g.nnodes);
			continue;
		}
		eps[ne++] = time_mono_ms() - t0;
		run_until(never, 200);
	}
	g.watch[0] = 0;

	/* policy change fan-out: every node's filter changes, first to an acls
	 * policy, then to the same access written as grants plus an app grant
	 * and a via grant (every node's filter gains a CapGrant and a Via entry) */
	if (g.policy_fanout) {
		fan_p99 = policy_fanout("acls", "{\"acls\":[{\"action\":\"accept\",\"src\":[\"*\"],"
		    "\"dst\":[\"*:22,443\"]}]}");
		fan_grants_p99 = policy_fanout("grants", "{\"tagOwners\":{\"tag:r\":[\"bench@\"]},"
		    "\"grants\":[{\"src\":[\"*\"],\"dst\":[\"*\"],\"ip\":[\"tcp:22\",\"tcp:443\"]},"
		    "{\"src\":[\"*\"],\"dst\":[\"*\"],\"app\":{\"example.com/cap/bench\":[{\"level\":\"full\"}]}},"
		    "{\"src\":[\"autogroup:member\"],\"dst\":[\"10.0.0.0/8\"],\"ip\":[\"*\"],\"via\":[\"tag:r\"]}]}");
	}

	/* restart: SIGKILL, start again on the same database */
	if (!fanout_only) {
		int status;

		for (int i = 0; i < g.nnodes; i++)
			fulls_before += g.nodes[i].nfull;
		bytes_before = g.bytes;
		t0 = time_mono_ms();
		kill(g.pids[0], SIGKILL);
		waitpid(g.pids[0], &status, 0);
		/* every stream sees its connection end (as a client would at once) */
		for (int i = 0; i < g.nnodes; i++) {
			struct node *n = &g.nodes[i];

			conn_close(&n->c);
			set_state(n, false, n->peers);
			n->backoff = 0;
			node_schedule_retry(n);
		}
		start_server(0);
		if (run_until(all_current, 600 * 1000)) {
			restart_s = (time_mono_ms() - t0) / 1000.0;
			for (int i = 0; i < g.nnodes; i++)
				fulls_after += g.nodes[i].nfull;
			fulls_after -= fulls_before;
			wire_mb = (double)(g.bytes - bytes_before) / 1e6;
		} else
			fprintf(stderr, "bench-control: after restart only %d of %d streams current\n",
			    g.n_current, g.nnodes);
		fprintf(stderr, "bench-control: restart: %u reconnect attempts, %u errors\n",
		    g.reconnects, g.errors);
		/* memory with the same nodes and every stream back (after the
		 * same settling as before the restart) */
		run_until(never, 2000);
		rss_after = proc_rss_kb(g.pids[0]);
		fprintf(stderr, "bench-control: rss after restart %ld kB (before %ld kB)\n",
		    rss_after, rss);
	}

	{
		/* the server's own view: full maps sent and collapsed queues */
		char *m = NULL, *p;
		int st = api("GET", "/metrics", NULL, &m);

		for (p = m; st == 200 && p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL) {
			if (strncmp(p, "wiremesh_map_full_total ", 24) == 0 ||
			    strncmp(p, "wiremesh_map_queue_collapses_total ", 35) == 0 ||
			    strncmp(p, "wiremesh_map_bytes_sent_total ", 30) == 0)
				fprintf(stderr, "bench-control: server at the end: %.*s\n",
				    (int)strcspn(p, "\n"), p);
		}
		free(m);
	}
	fprintf(stderr, "bench-control: longest client loop stall %" PRId64 " ms, %.1f GB read\n",
	    g.max_stall_ms, g.bytes / 1e9);
	fmt_ms(b1, sizeof(b1), pct(joins, nj, 0.50));
	fmt_ms(b2, sizeof(b2), pct(joins, nj, 0.99));
	fmt_ms(b3, sizeof(b3), pct(eps, ne, 0.99));
	fmt_ms(b4, sizeof(b4), restart_s);
	fmt_ms(b5, sizeof(b5), fan_p99);
	fmt_ms(b6, sizeof(b6), fan_grants_p99);
	if (restart_s >= 0) {
		snprintf(b7, sizeof(b7), "%" PRIu64, fulls_after);
		snprintf(b8, sizeof(b8), "%.1f", wire_mb);
	}
	if (rss_after > 0)
		snprintf(b9, sizeof(b9), "%.1f", (double)rss_after / g.nnodes);
	printf("bench-control: nodes=%d enrol_per_s=%.0f join_p50_ms=%s join_p99_ms=%s "
	    "endpoint_p99_ms=%s restart_recover_s=%s rss_kb_per_node=%.1f idle_cpu_pct=%.2f "
	    "rss_baseline_kb=%ld maps_all_s=%.1f full_maps_after_restart=%s "
	    "version_regressions=%" PRIu64 " wire_mb_after_restart=%s rss_after_restart_kb_per_node=%s"
	    "%s%s%s%s\n", g.nnodes, enrol_per_s, b1, b2, b3,
	    b4, (double)rss / g.nnodes, idle_pct, rss_base, maps_s, b7, g.regressions, b8, b9,
	    g.policy_fanout ? " change_fanout_p99_ms=" : "", g.policy_fanout ? b5 : "",
	    g.policy_fanout ? " change_fanout_grants_p99_ms=" : "", g.policy_fanout ? b6 : "");
	fflush(stdout);

	kill(g.pids[0], SIGTERM);
	waitpid(g.pids[0], NULL, 0);
	for (int i = 0; i < g.nnodes + g.joins; i++) {
		conn_close(&g.nodes[i].c);
		free(g.nodes[i].c.body);
	}
	conn_close(&g.aux);
	free(g.aux.body);
	free(g.nodes);
	free(g.pol_ms);
	free(joins);
	free(eps);
	close(g.epfd);
	if (!keep) {
		char p[400];

		snprintf(p, sizeof(p), "%s/db.sqlite-wal", g.dir);
		unlink(p);
		snprintf(p, sizeof(p), "%s/db.sqlite-shm", g.dir);
		unlink(p);
		unlink(g.db);
		unlink(g.log);
		rmdir(g.dir);
	}
	return 0;
}
