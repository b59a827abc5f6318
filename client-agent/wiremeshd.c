// SPDX-License-Identifier: MIT
/*
 * wiremeshd: the node agent daemon, in the foreground (for systemd).
 *
 *   wiremeshd --state-dir DIR [--socket PATH] [--tun NAME] [--port N]
 *             [--socket-group GROUP] [--log-level LEVEL]
 *
 * DIR (made mode 0700) keeps machine.key (Ed25519 machine key, hex) and
 * node.key (X25519 WireGuard key, hex), both mode 0600, and prefs.json (the
 * login server and whether the node is up, so a restart reconnects). The
 * disco key is made fresh at every start. SSL_CERT_FILE, when set, is the
 * CA bundle for the control server and the relays. The local API and the
 * CLI commands are described in client-agent/wiremesh.c.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <grp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "client-agent/agent.h"
#include "client-agent/localapi.h"
#include "common/log.h"
#include "common/sign.h"
#include "common/util.h"

static const char usage[] =
"usage: wiremeshd --state-dir DIR [--socket PATH] [--tun NAME] [--port N]\n"
"                 [--socket-group GROUP] [--log-level LEVEL] [--dns-rate-limit N]\n"
"\n"
"  --state-dir DIR      keys and preferences (default /var/lib/wiremesh)\n"
"  --socket PATH        local API socket (default /run/wiremesh/wiremeshd.sock)\n"
"  --tun NAME           TUN interface (default wm0; \"userspace-networking\" for none)\n"
"  --port N             UDP port for WireGuard and path discovery (default 41641; 0 random)\n"
"  --socket-group GROUP members may use the local API besides root\n"
"  --log-level LEVEL    error, warn, info (default), debug\n"
"  --log-format FORMAT  text (logfmt, default) or json (one object per line);\n"
"                       under systemd lines carry journald priorities (<3>..<7>)\n"
"  --dns-rate-limit N   MagicDNS resolver: queries per second per source (default 10000;\n"
"                       bursts of twice that; more are dropped and counted)\n";

/* Reads a hex secret of n bytes from path, or makes one with gen and saves it. */
static int
load_or_make(const char *path, uint8_t *out, size_t n, void (*gen)(uint8_t *, uint8_t *),
	     uint8_t *pub)
{
	char hex[2 * ED25519_SK_LEN + 2];
	ssize_t got;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat st;

	if (fd >= 0) {
		if (fstat(fd, &st) == 0 && (st.st_mode & 077))
			log_warn("msg=\"key file is readable by others; fixing\" path=%s", path);
		if (fchmod(fd, 0600) != 0)
			log_warn("msg=\"cannot chmod key file\" path=%s", path);
		got = read(fd, hex, sizeof(hex) - 1);
		close(fd);
		if (got < (ssize_t)(2 * n) || hex_decode(out, n, hex, 2 * n) != 0) {
			wipe(hex, sizeof(hex));
			log_error("msg=\"key file is malformed\" path=%s", path);
			return ERR_INVALID;
		}
		wipe(hex, sizeof(hex));
		gen(NULL, out);	/* derive the public half */
		(void)pub;
		return 0;
	}
	if (errno != ENOENT) {
		log_error("msg=\"cannot read key file\" path=%s err=\"%s\"", path, strerror(errno));
		return ERR_IO;
	}
	gen(out, NULL);
	(void)hex_encode(hex, sizeof(hex), out, n);
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0 || write(fd, hex, 2 * n) != (ssize_t)(2 * n) || write(fd, "\n", 1) != 1 ||
	    fsync(fd) != 0) {
		log_error("msg=\"cannot write key file\" path=%s err=\"%s\"", path, strerror(errno));
		if (fd >= 0)
			close(fd);
		wipe(hex, sizeof(hex));
		return ERR_IO;
	}
	close(fd);
	wipe(hex, sizeof(hex));
	return 0;
}

static struct agent_config cfg;

/* gen(out, NULL): make a new secret into out; gen(NULL, in): derive public. */
static void
gen_machine(uint8_t *out, uint8_t *in)
{
	if (out)
		sign_keypair(cfg.machine_pk, out);
	else
		crypto_sign_ed25519_sk_to_pk(cfg.machine_pk, in);
}

static void
gen_node(uint8_t *out, uint8_t *in)
{
	if (out)
		crypto_box_keypair(cfg.node_pub, out);
	else
		crypto_scalarmult_base(cfg.node_pub, in);
}

int
main(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "state-dir", required_argument, NULL, 'd' },
		{ "socket", required_argument, NULL, 's' },
		{ "tun", required_argument, NULL, 't' },
		{ "port", required_argument, NULL, 'p' },
		{ "socket-group", required_argument, NULL, 'g' },
		{ "log-level", required_argument, NULL, 'l' },
		{ "log-format", required_argument, NULL, 'F' },
		{ "dns-rate-limit", required_argument, NULL, 'D' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *dir = "/var/lib/wiremesh", *sock = "/run/wiremesh/wiremeshd.sock";
	const char *tun = "wm0", *group = NULL;
	char path[1024];
	gid_t gid = (gid_t)-1;
	struct agent *a = NULL;
	struct localapi *api = NULL;
	enum log_level lvl;
	sigset_t set;
	long port = 41641;
	int ch, sig, r;

	log_set_prefix("wiremeshd");
	while ((ch = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
		char *end;

		switch (ch) {
		case 'd': dir = optarg; break;
		case 's': sock = optarg; break;
		case 't': tun = optarg; break;
		case 'g': group = optarg; break;
		case 'p':
			port = strtol(optarg, &end, 10);
			if (*optarg == 0 || *end || port < 0 || port > 65535) {
				fprintf(stderr, "wiremeshd: --port must be 0..65535\n");
				return 2;
			}
			break;
		case 'l':
			if (log_level_parse(optarg, &lvl) != 0) {
				fprintf(stderr, "wiremeshd: unknown log level %s\n", optarg);
				return 2;
			}
			log_set_level(lvl);
			break;
		case 'F': {
			enum log_format lf;

			if (log_format_parse(optarg, &lf) != 0) {
				fprintf(stderr, "wiremeshd: --log-format must be text or json\n");
				return 2;
			}
			log_set_format(lf);
			break;
		}
		case 'D': {
			long v = strtol(optarg, &end, 10);

			if (*optarg == 0 || *end || v < 1 || v > 10000000) {
				fprintf(stderr, "wiremeshd: --dns-rate-limit must be 1..10000000\n");
				return 2;
			}
			cfg.dns_rate = (unsigned)v;
			break;
		}
		case 'h': fputs(usage, stdout); return 0;
		default: fputs(usage, stderr); return 2;
		}
	}
	if (optind != argc) {
		fputs(usage, stderr);
		return 2;
	}
	if (sodium_init() < 0)
		return 1;
	if (group) {
		struct group *g = getgrnam(group);

		if (g == NULL) {
			fprintf(stderr, "wiremeshd: no group %s\n", group);
			return 2;
		}
		gid = g->gr_gid;
	}
	if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
		log_error("msg=\"cannot create state directory\" dir=%s err=\"%s\"", dir, strerror(errno));
		return 1;
	}
	snprintf(path, sizeof(path), "%s/machine.key", dir);
	if (load_or_make(path, cfg.machine_sk, ED25519_SK_LEN, gen_machine, cfg.machine_pk) != 0)
		return 1;
	snprintf(path, sizeof(path), "%s/node.key", dir);
	if (load_or_make(path, cfg.node_priv, KEY_LEN, gen_node, cfg.node_pub) != 0)
		return 1;
	cfg.state_dir = dir;
	cfg.tun_name = strcmp(tun, "userspace-networking") == 0 ? "" : tun;
	cfg.port = (uint16_t)port;

	/* Signals are taken synchronously below; threads inherit the mask. */
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);

	if ((r = agent_new(&cfg, &a)) != 0) {
		wipe(&cfg, sizeof(cfg));
		log_error("msg=\"cannot start\" err=%s", err_str(r));
		return 1;
	}
	wipe(&cfg, sizeof(cfg));
	{
		char d[1024];
		char *slash;

		str_copy(d, sock, sizeof(d));
		if ((slash = strrchr(d, '/')) != NULL && slash != d) {
			*slash = 0;
			if (mkdir(d, 0755) != 0 && errno != EEXIST)
				log_warn("msg=\"cannot create socket directory\" dir=%s", d);
		}
	}
	if ((r = localapi_new(sock, gid, agent_handle, a, &api)) != 0) {
		agent_free(a);
		log_error("msg=\"cannot open the local API socket\" path=%s", sock);
		return 1;
	}
	log_info("msg=\"ready\" socket=%s", sock);
	for (;;) {
		if (sigwait(&set, &sig) != 0)
			continue;
		if (sig != SIGHUP)
			break;
	}
	log_info("msg=\"shutting down\" signal=%d", sig);
	localapi_free(api);
	agent_free(a);
	return 0;
}
