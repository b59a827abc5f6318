// SPDX-License-Identifier: MIT
/* wiremesh-server: `serve` runs the control server; other verbs are the admin CLI. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <sodium.h>

#include "common/log.h"
#include "server/backup.h"
#include "server/cli.h"
#include "server/server.h"

#include "common/version.h"
#define WIREMESH_VERSION WM_VERSION_LONG

static int
serve(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "listen", required_argument, NULL, 'l' },
		{ "db", required_argument, NULL, 'd' },
		{ "tls-cert", required_argument, NULL, 'C' },
		{ "tls-key", required_argument, NULL, 'K' },
		{ "derp-map", required_argument, NULL, 'M' },
		{ "policy-file", required_argument, NULL, 'P' },
		{ "log-level", required_argument, NULL, 'L' },
		{ "log-format", required_argument, NULL, 'F' },
		{ "metrics-listen", required_argument, NULL, 'm' },
		{ "node-expiry", required_argument, NULL, 'E' },
		{ "ephemeral-timeout", required_argument, NULL, 'T' },
		{ "derp", no_argument, NULL, 'D' },
		{ "derp-region-id", required_argument, NULL, 'I' },
		{ "derp-region-code", required_argument, NULL, 'R' },
		{ "derp-region-name", required_argument, NULL, 'N' },
		{ "derp-hostname", required_argument, NULL, 'H' },
		{ "derp-port", required_argument, NULL, 'p' },
		{ "stun-listen", required_argument, NULL, 'S' },
		{ "derp-listen", required_argument, NULL, 'A' },
		{ "server-url", required_argument, NULL, 'U' },
		{ "acme-hostname", required_argument, NULL, 'a' },
		{ "acme-email", required_argument, NULL, 'e' },
		{ "acme-directory", required_argument, NULL, 'r' },
		{ "acme-http-listen", required_argument, NULL, 'w' },
		{ "acme-state-dir", required_argument, NULL, 's' },
		{ "acme-ca-file", required_argument, NULL, 'f' },
		{ "acme-renew-before", required_argument, NULL, 'b' },
		{ "acme-challenge", required_argument, NULL, 'G' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	static const char *keys[128] = {
		['l'] = "listen", ['d'] = "db", ['C'] = "tls_cert", ['K'] = "tls_key",
		['M'] = "derp_map", ['P'] = "policy_file", ['L'] = "log_level", ['F'] = "log_format", ['m'] = "metrics_listen",
		['E'] = "node_expiry", ['T'] = "ephemeral_inactivity_timeout",
		['D'] = "derp", ['I'] = "derp_region_id", ['R'] = "derp_region_code",
		['N'] = "derp_region_name", ['H'] = "derp_hostname", ['p'] = "derp_port",
		['S'] = "stun_listen", ['A'] = "derp_listen", ['U'] = "server_url",
		['a'] = "acme_hostname", ['e'] = "acme_email", ['r'] = "acme_directory",
		['w'] = "acme_http_listen", ['s'] = "acme_state_dir", ['f'] = "acme_ca_file",
		['b'] = "acme_renew_before", ['G'] = "acme_challenge",
	};
	struct { int key; const char *val; } flags[32];
	struct server_config cfg;
	struct server *s = NULL;
	const char *config = NULL;
	enum log_level lvl;
	char why[512];
	int ch, nflags = 0, r;

	optind = 1;
	while ((ch = getopt_long(argc, argv, "c:h", lo, NULL)) != -1) {
		if (ch == 'h') {
			cli_usage();
			return 0;
		}
		if (ch == 'c') {
			config = optarg;
			continue;
		}
		if (ch < 0 || ch >= 128 || keys[ch] == NULL || nflags == 32) {
			fprintf(stderr, "run 'wiremesh-server --help' for usage\n");
			return 2;
		}
		flags[nflags].key = ch;
		flags[nflags++].val = optarg ? optarg : "true";	/* --derp */
	}
	if (optind < argc) {
		fprintf(stderr, "wiremesh-server serve: unexpected argument \"%s\"\n", argv[optind]);
		return 2;
	}
	server_config_defaults(&cfg);
	if (config && server_config_file(&cfg, config, why, sizeof(why)) != 0) {
		fprintf(stderr, "wiremesh-server: %s\n", why);
		return 1;
	}
	if (server_config_env(&cfg, why, sizeof(why)) != 0) {
		fprintf(stderr, "wiremesh-server: environment: %s\n", why);
		return 1;
	}
	for (int i = 0; i < nflags; i++) {
		if (server_config_set(&cfg, keys[flags[i].key], flags[i].val, why, sizeof(why)) != 0) {
			fprintf(stderr, "wiremesh-server: %s\n", why);
			return 2;
		}
	}
	if (log_level_parse(cfg.log_level, &lvl) != 0) {
		fprintf(stderr, "wiremesh-server: log level must be error, warn, info or debug\n");
		return 2;
	}
	log_set_level(lvl);
	{
		enum log_format lf;

		if (log_format_parse(cfg.log_format, &lf) != 0) {
			fprintf(stderr, "wiremesh-server: log_format must be text or json\n");
			return 2;
		}
		log_set_format(lf);
	}
	if ((cfg.tls_cert[0] != 0) != (cfg.tls_key[0] != 0)) {
		fprintf(stderr, "wiremesh-server: --tls-cert and --tls-key go together\n");
		return 2;
	}
	if ((r = server_new(&cfg, &s)) != 0) {
		fprintf(stderr, "wiremesh-server: cannot start: %s\n", server_error()[0] ?
		    server_error() : log_last_error()[0] ? log_last_error() : err_str(r));
		return 1;
	}
	if ((r = server_start(s)) != 0) {
		if (server_error()[0])
			fprintf(stderr, "wiremesh-server: %s\n", server_error());
		else
			fprintf(stderr, "wiremesh-server: cannot listen on %s: %s\n", cfg.listen,
			    err_str(r));
		server_free(s);
		return 1;
	}
	server_wait(s);
	server_free(s);
	return 0;
}

int
main(int argc, char **argv)
{
	log_set_prefix("wiremesh-server");
	if (sodium_init() < 0) {
		fprintf(stderr, "wiremesh-server: cannot initialise libsodium\n");
		return 1;
	}
	if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
	    strcmp(argv[1], "help") == 0) {
		cli_usage();
		return argc < 2 ? 2 : 0;
	}
	if (strcmp(argv[1], "version") == 0 || strcmp(argv[1], "--version") == 0) {
		printf("wiremesh-server %s\n", WIREMESH_VERSION);
		return 0;
	}
	if (strcmp(argv[1], "serve") == 0)
		return serve(argc - 1, argv + 1);
	if (strcmp(argv[1], "backup") == 0 || strcmp(argv[1], "restore") == 0)
		return backup_main(argc - 1, argv + 1);
	return cli_main(argc - 1, argv + 1);
}
