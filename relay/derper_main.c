/* SPDX-License-Identifier: MIT */
/*
 * wiremesh-derper: the standalone DERP relay (HTTPS, TCP 443) and STUN
 * server (UDP 3478). Parses flags, loads the TLS certificate, starts the
 * relay and STUN threads and waits for SIGINT/SIGTERM. `wiremesh-derper
 * debug ...` runs the client-side diagnostic tools (see derper_debug.c).
 */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "common/acme.h"
#include "common/log.h"
#include "common/util.h"
#include "relay/derp_server.h"
#include "relay/derper_acme.h"
#include "relay/stun_server.h"

int derper_debug_main(int argc, char **argv);

static void usage(FILE *f)
{
	fprintf(f,
		"usage: wiremesh-derper [options]\n"
		"       wiremesh-derper debug {stun|netcheck|client|hold} ... (diagnostics)\n"
		"\n"
		"  --addr HOST:PORT          HTTPS listen address (default :443; \"off\" disables)\n"
		"  --http-port PORT          plain HTTP port: /generate_204 and redirect to HTTPS\n"
		"                            (default 80; -1 disables)\n"
		"  --stun-addr HOST:PORT     STUN listen address (default :3478; -1 or off disables)\n"
		"  --tls-cert FILE           PEM certificate chain\n"
		"  --tls-key FILE            PEM private key\n"
		"  --verify-clients-url URL  admit only node keys this URL approves (POST\n"
		"                            {\"NodePublic\":\"nodekey:<hex>\"}; only HTTP 200 with\n"
		"                            {\"Allow\":true} admits); the control server's is\n"
		"                            https://SERVER/relay/admit\n"
		"  --verify-clients-secret-file FILE  shared secret sent to that URL as\n"
		"                            \"Authorization: Bearer\" (the server's\n"
		"                            relay_admission_secret_file)\n"
		"  --insecure-plain-http     serve /derp without TLS on --addr (only behind a\n"
		"                            TLS-terminating proxy or for tests)\n"
		"  --acme-hostname HOST      get the certificate from an ACME CA (instead of\n"
		"                            --tls-cert/--tls-key), renewed before expiry\n"
		"                            without a restart; HTTP-01 is answered on the\n"
		"                            --http-port listener, TLS-ALPN-01 on --addr\n"
		"  --acme-challenge TYPE     http-01 (default) or tls-alpn-01\n"
		"  --acme-email ADDR         ACME account contact\n"
		"  --acme-directory URL      ACME directory (default Let's Encrypt)\n"
		"  --acme-http-addr HOST:PORT  HTTP-01 listener (default: --addr's host, --http-port)\n"
		"  --acme-ca-file FILE       CA bundle for the directory's TLS (default: system)\n"
		"  --acme-renew-before DUR   renew this long before expiry (default: a third of\n"
		"                            the lifetime)\n"
		"  --state-dir DIR           ACME account key, certificate and key (mode 0600;\n"
		"                            default /var/lib/wiremesh-derper)\n"
		"  --max-conns N             connection limit (default %d)\n"
		"  --log-level LEVEL         error, warn, info (default), debug\n"
		"  --log-format FORMAT       text (logfmt, default) or json; under systemd lines\n"
		"                            carry journald priorities (<3>..<7>)\n"
		"  --help                    this text\n",
		DERP_DEFAULT_MAX_CONNS);
}

static SSL_CTX *tls_server_ctx(const char *cert, const char *key)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());

	if (ctx == NULL)
		return NULL;
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1 ||
	    SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1 ||
	    SSL_CTX_check_private_key(ctx) != 1) {
		unsigned long e = ERR_get_error();
		char msg[256];

		ERR_error_string_n(e, msg, sizeof(msg));
		log_error("msg=\"cannot load TLS certificate\" cert=%s err=\"%s\"", cert, msg);
		SSL_CTX_free(ctx);
		return NULL;
	}
	return ctx;
}

/* The ACME renewal thread: new handshakes get the new certificate. */
static const char *acme_cert, *acme_key;

static void acme_renewed(void *arg)
{
	(void)arg;
	if (derper_tls_load(acme_cert, acme_key) == 0)
		log_info("msg=\"acme: serving the renewed certificate\"");
}

static int stun_metrics(void *ctx, struct buf *out)
{
	return ctx ? stun_server_metrics(ctx, out) : 0;
}

/* "HOST:PORT" with the host of `addr` and another port. */
static void same_host(char *out, size_t cap, const char *addr, long port)
{
	const char *colon = strrchr(addr, ':');
	int hl = colon ? (int)(colon - addr) : 0;

	snprintf(out, cap, "%.*s:%ld", hl, addr, port);
}

static bool is_off(const char *v)
{
	return strcmp(v, "-1") == 0 || strcmp(v, "off") == 0 || strcmp(v, "") == 0;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "addr", required_argument, NULL, 'a' },
		{ "http-port", required_argument, NULL, 'p' },
		{ "stun-addr", required_argument, NULL, 's' },
		{ "tls-cert", required_argument, NULL, 'c' },
		{ "tls-key", required_argument, NULL, 'k' },
		{ "verify-clients-url", required_argument, NULL, 'v' },
		{ "verify-clients-secret-file", required_argument, NULL, 'V' },
		{ "insecure-plain-http", no_argument, NULL, 'P' },
		{ "max-conns", required_argument, NULL, 'm' },
		{ "log-level", required_argument, NULL, 'l' },
		{ "log-format", required_argument, NULL, 'F' },
		{ "acme-hostname", required_argument, NULL, 1 },
		{ "acme-email", required_argument, NULL, 2 },
		{ "acme-directory", required_argument, NULL, 3 },
		{ "acme-http-addr", required_argument, NULL, 4 },
		{ "acme-ca-file", required_argument, NULL, 5 },
		{ "acme-renew-before", required_argument, NULL, 6 },
		{ "state-dir", required_argument, NULL, 7 },
		{ "acme-challenge", required_argument, NULL, 8 },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *addr = ":443", *stun_addr = ":3478", *cert = NULL, *key = NULL;
	const char *verify_url = NULL, *verify_secret_file = NULL;
	struct derp_verify_url_ctx vctx = { NULL, NULL };
	char *verify_secret = NULL;
	long http_port = 80, max_conns = DERP_DEFAULT_MAX_CONNS;
	bool plain = false, alpn = false;
	struct derp_server_config cfg;
	struct derp_server *ds = NULL;
	struct stun_server *ss = NULL;
	SSL_CTX *ctx = NULL;
	struct acme_config ac = { .state_dir = "/var/lib/wiremesh-derper" };
	struct acme *acme = NULL;
	char acme_http[128];
	char http_addr[128];
	sigset_t sigs;
	int opt, sig, r = 1;

	if (argc > 1 && strcmp(argv[1], "debug") == 0)
		return derper_debug_main(argc - 1, argv + 1);
	log_set_prefix("derper");
	while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		enum log_level lv;

		switch (opt) {
		case 'a': addr = optarg; break;
		case 'p': http_port = strtol(optarg, NULL, 10); break;
		case 's': stun_addr = optarg; break;
		case 'c': cert = optarg; break;
		case 'k': key = optarg; break;
		case 'v': verify_url = optarg; break;
		case 'V': verify_secret_file = optarg; break;
		case 'P': plain = true; break;
		case 'm': max_conns = strtol(optarg, NULL, 10); break;
		case 'l':
			if (log_level_parse(optarg, &lv) != 0) {
				fprintf(stderr, "wiremesh-derper: bad --log-level %s\n", optarg);
				return 2;
			}
			log_set_level(lv);
			break;
		case 'F': {
			enum log_format lf;

			if (log_format_parse(optarg, &lf) != 0) {
				fprintf(stderr, "wiremesh-derper: --log-format must be text or json\n");
				return 2;
			}
			log_set_format(lf);
			break;
		}
		case 1: ac.hostname = optarg; break;
		case 2: ac.email = optarg; break;
		case 3: ac.directory = optarg; break;
		case 4: ac.http_listen = optarg; break;
		case 5: ac.ca_file = optarg; break;
		case 6:
			if (duration_parse(optarg, &ac.renew_before_s) != 0) {
				fprintf(stderr, "wiremesh-derper: bad --acme-renew-before %s\n", optarg);
				return 2;
			}
			break;
		case 7: ac.state_dir = optarg; break;
		case 8:
			if (acme_challenge_parse(optarg, &ac.challenge) != 0) {
				fprintf(stderr, "wiremesh-derper: --acme-challenge must be http-01 or "
					"tls-alpn-01\n");
				return 2;
			}
			break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind != argc || max_conns < 1 || max_conns > 1000000 || http_port < -1 ||
	    http_port > 65535) {
		usage(stderr);
		return 2;
	}
	if (is_off(addr))
		addr = NULL;
	if (is_off(stun_addr))
		stun_addr = NULL;
	if (ac.hostname && (cert || key || plain || addr == NULL)) {
		fprintf(stderr, "wiremesh-derper: --acme-hostname needs --addr and excludes "
			"--tls-cert, --tls-key and --insecure-plain-http\n");
		return 2;
	}
	if (ac.hostname && ac.challenge == ACME_HTTP_01 && ac.http_listen == NULL) {
		if (http_port < 0) {
			fprintf(stderr, "wiremesh-derper: --acme-hostname needs --http-port or "
				"--acme-http-addr for HTTP-01\n");
			return 2;
		}
		same_host(acme_http, sizeof(acme_http), addr, http_port);
		ac.http_listen = acme_http;
	}
	if (addr && !plain && !ac.hostname && (cert == NULL || key == NULL)) {
		fprintf(stderr, "wiremesh-derper: --tls-cert and --tls-key are required "
			"(or --addr off for STUN only)\n");
		return 2;
	}
	if (addr == NULL && stun_addr == NULL) {
		fprintf(stderr, "wiremesh-derper: nothing to serve\n");
		return 2;
	}
	/* signals are taken with sigwait; threads inherit the mask */
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	signal(SIGPIPE, SIG_IGN);
	curl_global_init(CURL_GLOBAL_DEFAULT);

	if (stun_addr) {
		ss = stun_server_new(stun_addr);
		if (ss == NULL || stun_server_start(ss) != 0) {
			log_error("msg=\"cannot start STUN server\" addr=%s", stun_addr);
			goto out;
		}
	}
	alpn = addr && ac.hostname && ac.challenge == ACME_TLS_ALPN_01;
	if (addr && ac.hostname && !alpn) {
		char why[600];

		ac.on_renew = acme_renewed;
		if (acme_start(&ac, &acme, why, sizeof(why)) != 0) {
			log_error("msg=\"acme: no certificate\" err=\"%s\"", why);
			fprintf(stderr, "wiremesh-derper: %s\n", why);
			goto out;
		}
		cert = acme_cert = acme_cert_path(acme);
		key = acme_key = acme_key_path(acme);
	}
	if (addr) {
		if (alpn) {
			/* the listener answers the CA's validation, so it starts
			 * first, with no certificate until the first one is issued */
			if ((ctx = SSL_CTX_new(TLS_server_method())) == NULL)
				goto out;
			SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
			derper_tls_reloadable(ctx);
		} else if (!plain && (ctx = tls_server_ctx(cert, key)) == NULL) {
			goto out;
		}
		if (acme) {
			if (derper_tls_load(cert, key) != 0)
				goto out;
			derper_tls_reloadable(ctx);
		}
		memset(&cfg, 0, sizeof(cfg));
		cfg.https_addr = addr;
		cfg.ssl_ctx = ctx;
		cfg.plain_derp = plain;
		/* with HTTP-01 the ACME listener answers */
		if (http_port >= 0 && (ac.hostname == NULL || alpn)) {
			same_host(http_addr, sizeof(http_addr), addr, http_port);
			cfg.http_addr = http_addr;
		}
		cfg.max_conns = (unsigned)max_conns;
		cfg.metrics_extra = stun_metrics;
		cfg.metrics_ctx = ss;
		if (verify_url) {
			int e = 0;

			if (verify_secret_file &&
			    (verify_secret = secret_file_read(verify_secret_file, &e)) == NULL) {
				log_error("msg=\"cannot read --verify-clients-secret-file (a non-empty "
				    "file of mode 0600)\" path=%s err=\"%s\"", verify_secret_file,
				    strerror(e));
				goto out;
			}
			vctx.url = verify_url;
			vctx.secret = verify_secret;
			cfg.verify = derp_verify_url;
			cfg.verify_ctx = &vctx;
		} else {
			log_warn("msg=\"no --verify-clients-url: relaying for any node key\"");
		}
		ds = derp_server_new(&cfg);
		if (ds == NULL || derp_server_start(ds) != 0) {
			log_error("msg=\"cannot start DERP server\" addr=%s", addr);
			goto out;
		}
	}
	if (alpn) {
		char why[600];

		ac.on_renew = acme_renewed;
		ac.alpn_cert = derper_tls_alpn_cert;
		ac.arg = (void *)ac.hostname;
		if (acme_start(&ac, &acme, why, sizeof(why)) != 0) {
			log_error("msg=\"acme: no certificate\" err=\"%s\"", why);
			fprintf(stderr, "wiremesh-derper: %s\n", why);
			goto out;
		}
		acme_cert = acme_cert_path(acme);
		acme_key = acme_key_path(acme);
		if (derper_tls_load(acme_cert, acme_key) != 0)
			goto out;
	}
	if (acme && acme_run(acme) != 0)
		goto out;
	log_info("msg=\"ready\"");
	if (sigwait(&sigs, &sig) == 0)
		log_info("msg=\"shutting down\" signal=%d", sig);
	r = 0;
out:
	acme_stop(acme);
	derp_server_free(ds);
	free_secret(verify_secret);
	stun_server_free(ss);
	SSL_CTX_free(ctx);
	derper_tls_free();
	curl_global_cleanup();
	return r;
}
