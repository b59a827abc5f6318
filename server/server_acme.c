/* SPDX-License-Identifier: MIT */
/*
 * ACME for wiremesh-server: the certificate of the main listener from an
 * ACME CA (common/acme.c), renewed in the background and swapped into the
 * running listener (http_reload_cert) without a restart.
 */
#include <libgen.h>
#include <stdio.h>
#include <string.h>

#include "common/acme.h"
#include "common/log.h"
#include "common/util.h"
#include "server/server.h"
#include "relay/derp_server.h"
#include "server/tlsreload.h"

static void
on_renew(void *arg)
{
	struct server *s = arg;
	char why[600];

	if (s->http == NULL)
		return;
	if (http_reload_cert(s->http, why, sizeof(why)) != 0)
		log_error("msg=\"acme: cannot load the renewed certificate; serving the previous "
		    "one\" err=\"%s\"", why);
	else
		log_info("msg=\"acme: the listener serves the renewed certificate\" hostname=%s",
		    s->cfg.acme_hostname);
	if (s->derp && s->cfg.derp_listen[0]) {
		if (derp_server_reload_cert(s->derp, s->cfg.tls_cert, s->cfg.tls_key) != 0)
			log_error("msg=\"acme: the relay listener (derp_listen) keeps its previous "
			    "certificate\"");
		else
			log_info("msg=\"acme: the relay listener (derp_listen) serves the renewed "
			    "certificate\" listen=%s", s->cfg.derp_listen);
	}
}

static void
on_alpn_cert(void *arg, X509 *cert, EVP_PKEY *key)
{
	struct server *s = arg;

	tlsreload_alpn_challenge(s->cfg.acme_hostname, cert, key);
}

/* The ACME client's configuration from the server's; state receives the
 * state directory. */
static int
acme_config_of(struct server *s, struct acme_config *ac, char *state, size_t statelen, char *why,
	       size_t whylen)
{
	memset(ac, 0, sizeof(*ac));
	if (s->cfg.acme_state_dir[0]) {
		str_copy(state, s->cfg.acme_state_dir, statelen);
	} else if (strstr(s->cfg.db_path, "://") || strncmp(s->cfg.db_path, "postgres", 8) == 0 ||
	    strchr(s->cfg.db_path, '=')) {
		snprintf(why, whylen, "acme_state_dir is needed with a PostgreSQL database");
		return ERR_INVALID;
	} else {
		char db[512];

		str_copy(db, s->cfg.db_path, sizeof(db));
		snprintf(state, statelen, "%s/acme", dirname(db));
	}
	if (acme_challenge_parse(s->cfg.acme_challenge, &ac->challenge) != 0) {
		snprintf(why, whylen, "acme_challenge must be http-01 or tls-alpn-01 (got %s)",
		    s->cfg.acme_challenge);
		return ERR_INVALID;
	}
	ac->hostname = s->cfg.acme_hostname;
	ac->email = s->cfg.acme_email;
	ac->directory = s->cfg.acme_directory;
	ac->state_dir = state;
	ac->http_listen = s->cfg.acme_http_listen[0] ? s->cfg.acme_http_listen : ":80";
	ac->ca_file = s->cfg.acme_ca_file;
	ac->renew_before_s = s->cfg.acme_renew_before_s;
	ac->on_renew = on_renew;
	if (ac->challenge == ACME_TLS_ALPN_01)
		ac->alpn_cert = on_alpn_cert;
	ac->arg = s;
	return 0;
}

int
server_acme_setup(struct server *s, char *why, size_t whylen)
{
	struct acme_config ac;
	char state[512];
	int r;

	if (s->cfg.tls_cert[0] || s->cfg.tls_key[0]) {
		snprintf(why, whylen, "acme_hostname and tls_cert/tls_key exclude each other");
		return ERR_INVALID;
	}
	if ((r = acme_config_of(s, &ac, state, sizeof(state), why, whylen)) != 0)
		return r;
	if (ac.challenge == ACME_TLS_ALPN_01) {
		/* the CA validates through the main listener: it starts first
		 * (server_acme_alpn_start), with the certificate on disk if any */
		s->acme_alpn = true;
		acme_state_paths(state, ac.hostname, s->cfg.tls_cert, sizeof(s->cfg.tls_cert),
		    s->cfg.tls_key, sizeof(s->cfg.tls_key));
		return 0;
	}
	if ((r = acme_start(&ac, &s->acme, why, whylen)) != 0)
		return r;
	str_copy(s->cfg.tls_cert, acme_cert_path(s->acme), sizeof(s->cfg.tls_cert));
	str_copy(s->cfg.tls_key, acme_key_path(s->acme), sizeof(s->cfg.tls_key));
	return 0;
}

int
server_acme_alpn_start(struct server *s, char *why, size_t whylen)
{
	struct acme_config ac;
	char state[512];
	int r;

	if (!s->acme_alpn)
		return 0;
	if ((r = acme_config_of(s, &ac, state, sizeof(state), why, whylen)) != 0 ||
	    (r = acme_start(&ac, &s->acme, why, whylen)) != 0)
		return r;
	if ((r = http_reload_cert(s->http, why, whylen)) != 0)
		return r;
	if (s->derp && s->cfg.derp_listen[0] &&
	    derp_server_reload_cert(s->derp, s->cfg.tls_cert, s->cfg.tls_key) != 0) {
		snprintf(why, whylen, "cannot load the ACME certificate for derp_listen");
		return ERR_IO;
	}
	log_info("msg=\"acme: the listener serves its certificate\" hostname=%s challenge=tls-alpn-01",
	    s->cfg.acme_hostname);
	return 0;
}

int
server_acme_run(struct server *s)
{
	return acme_run(s->acme);
}

void
server_acme_stop(struct server *s)
{
	acme_stop(s->acme);
	s->acme = NULL;
}
