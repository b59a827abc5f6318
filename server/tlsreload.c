/* SPDX-License-Identifier: MIT */
#include "server/tlsreload.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <stdbool.h>

#include <gnutls/abstract.h>
#include <gnutls/gnutls.h>
#include <openssl/bio.h>
#include <openssl/pem.h>

#include "common/log.h"
#include "common/util.h"

enum { MAX_CHAIN = 8 };

struct certset {
	struct certset *older;	/* kept until tlsreload_free: a handshake may use it */
	gnutls_pcert_st pcert[MAX_CHAIN];
	unsigned n;
	gnutls_privkey_t key;
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct certset *current;
/* TLS-ALPN-01 (RFC 8737): the open challenge's certificate, for handshakes
 * that negotiated acme-tls/1 with SNI = challenge_host; NULL outside one.
 * Replaced sets go to the same "older" list as current's. */
static struct certset *challenge;
static struct certset *retired;
static char challenge_host[256];

static const unsigned char acme_tls_1[] = "acme-tls/1";
#define ACME_TLS_1_LEN (sizeof(acme_tls_1) - 1)

static char *
slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "r");
	char *p = NULL;
	long n;

	if (f == NULL)
		return NULL;
	if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) > 0 && n < (1 << 20) &&
	    fseek(f, 0, SEEK_SET) == 0 && (p = malloc((size_t)n + 1)) != NULL) {
		if (fread(p, 1, (size_t)n, f) != (size_t)n) {
			free(p);
			p = NULL;
		} else {
			p[n] = 0;
			*len = (size_t)n;
		}
	}
	fclose(f);
	if (p == NULL && errno == 0)
		errno = ENODATA;
	return p;
}

static void
certset_free(struct certset *c)
{
	for (unsigned i = 0; i < c->n; i++)
		gnutls_pcert_deinit(&c->pcert[i]);
	if (c->key)
		gnutls_privkey_deinit(c->key);
	free(c);
}

/* Imports a PEM chain and key into c; on failure says why. */
static int
certset_import(struct certset *c, char *cp, size_t cl, char *kp, size_t kl, const char *cert_name,
	       const char *key_name, char *why, size_t whylen)
{
	gnutls_datum_t d;
	int e;

	d.data = (unsigned char *)cp;
	d.size = (unsigned)cl;
	c->n = MAX_CHAIN;
	if ((e = gnutls_pcert_list_import_x509_raw(c->pcert, &c->n, &d, GNUTLS_X509_FMT_PEM,
	    0)) < 0) {
		c->n = 0;
		snprintf(why, whylen, "TLS certificate %s: %s", cert_name, gnutls_strerror(e));
		return ERR_INVALID;
	}
	d.data = (unsigned char *)kp;
	d.size = (unsigned)kl;
	if ((e = gnutls_privkey_init(&c->key)) < 0 ||
	    (e = gnutls_privkey_import_x509_raw(c->key, &d, GNUTLS_X509_FMT_PEM, NULL, 0)) < 0) {
		snprintf(why, whylen, "TLS key %s: %s", key_name, gnutls_strerror(e));
		return ERR_INVALID;
	}
	return 0;
}

int
tlsreload_load(const char *cert_path, const char *key_path, char *why, size_t whylen)
{
	struct certset *c = calloc(1, sizeof(*c));
	size_t cl = 0, kl = 0;
	char *cp = NULL, *kp = NULL;

	if (c == NULL)
		return ERR_NOMEM;
	errno = 0;
	if ((cp = slurp(cert_path, &cl)) == NULL) {
		snprintf(why, whylen, "cannot read the TLS certificate %s: %s", cert_path,
		    strerror(errno));
		goto fail;
	}
	errno = 0;
	if ((kp = slurp(key_path, &kl)) == NULL) {
		snprintf(why, whylen, "cannot read the TLS key %s: %s", key_path, strerror(errno));
		goto fail;
	}
	if (certset_import(c, cp, cl, kp, kl, cert_path, key_path, why, whylen) != 0)
		goto fail;
	wipe(kp, kl);
	free(kp);
	free(cp);
	pthread_mutex_lock(&lock);
	c->older = current;
	current = c;
	pthread_mutex_unlock(&lock);
	return 0;
fail:
	if (kp)
		wipe(kp, kl);
	free(kp);
	free(cp);
	certset_free(c);
	return ERR_IO;
}

static int
retrieve(gnutls_session_t s, const gnutls_datum_t *req_ca_dn, int nreqs,
	 const gnutls_pk_algorithm_t *algos, int nalgos, gnutls_pcert_st **pcert,
	 unsigned int *pcert_length, gnutls_privkey_t *pkey)
{
	gnutls_datum_t proto;

	(void)req_ca_dn;
	(void)nreqs;
	(void)algos;
	(void)nalgos;
	pthread_mutex_lock(&lock);
	/* the extensions are parsed by now: acme-tls/1 was negotiated only if
	 * tlsreload_session_started offered it (a challenge is open) */
	if (gnutls_alpn_get_selected_protocol(s, &proto) == 0 && proto.size == ACME_TLS_1_LEN &&
	    memcmp(proto.data, acme_tls_1, ACME_TLS_1_LEN) == 0) {
		char sni[256];
		size_t sl = sizeof(sni) - 1;
		unsigned type;
		int ok;

		memset(sni, 0, sizeof(sni));
		/* RFC 8737 3: only the challenge certificate, only for its name */
		ok = challenge != NULL && gnutls_server_name_get(s, sni, &sl, &type, 0) == 0 &&
		    type == GNUTLS_NAME_DNS && strcasecmp(sni, challenge_host) == 0;
		if (ok) {
			*pcert = challenge->pcert;
			*pcert_length = challenge->n;
			*pkey = challenge->key;
		}
		pthread_mutex_unlock(&lock);
		if (ok)
			log_info("msg=\"acme: tls-alpn-01 validation handshake\"");
		return ok ? 0 : -1;
	}
	if (current == NULL) {
		pthread_mutex_unlock(&lock);
		return -1;
	}
	*pcert = current->pcert;
	*pcert_length = current->n;
	*pkey = current->key;
	pthread_mutex_unlock(&lock);
	return 0;
}

void
tlsreload_alpn_challenge(const char *host, X509 *cert, EVP_PKEY *key)
{
	struct certset *c = NULL;
	BIO *cb = NULL, *kb = NULL;
	char *cp, *kp, why[256];
	long cl, kl;

	if (cert && key && host && (c = calloc(1, sizeof(*c))) != NULL) {
		if ((cb = BIO_new(BIO_s_mem())) == NULL || (kb = BIO_new(BIO_s_mem())) == NULL ||
		    PEM_write_bio_X509(cb, cert) != 1 ||
		    PEM_write_bio_PrivateKey(kb, key, NULL, NULL, 0, NULL, NULL) != 1 ||
		    (cl = BIO_get_mem_data(cb, &cp)) <= 0 || (kl = BIO_get_mem_data(kb, &kp)) <= 0 ||
		    certset_import(c, cp, (size_t)cl, kp, (size_t)kl, "(tls-alpn-01 challenge)",
		    "(tls-alpn-01 challenge)", why, sizeof(why)) != 0) {
			log_error("msg=\"acme: cannot use the tls-alpn-01 challenge certificate\"");
			certset_free(c);
			c = NULL;
		}
		if (kb) {
			char *p;
			long n = BIO_get_mem_data(kb, &p);

			if (n > 0)
				wipe(p, (size_t)n);
		}
		BIO_free(cb);
		BIO_free(kb);
	}
	pthread_mutex_lock(&lock);
	if (challenge) {	/* a handshake may still hold it */
		challenge->older = retired;
		retired = challenge;
	}
	challenge = c;
	str_copy(challenge_host, c && host ? host : "", sizeof(challenge_host));
	pthread_mutex_unlock(&lock);
}

void
tlsreload_session_started(void *session)
{
	/* RFC 7301 wire order does not matter here: GnuTLS picks by the
	 * client's preference, and only an ACME CA offers acme-tls/1 */
	static const gnutls_datum_t protos[] = {
		{ (unsigned char *)"http/1.1", 8 },
		{ (unsigned char *)"http/1.0", 8 },
		{ (unsigned char *)acme_tls_1, ACME_TLS_1_LEN },
	};
	bool open;

	if (session == NULL)
		return;
	pthread_mutex_lock(&lock);
	open = challenge != NULL;
	pthread_mutex_unlock(&lock);
	/* libmicrohttpd has set its own list (http/1.1, http/1.0) on the new
	 * session; the handshake has not started: offer acme-tls/1 as well
	 * while a challenge is open */
	if (open && gnutls_alpn_set_protocols((gnutls_session_t)session, protos, 3, 0) < 0)
		log_warn("msg=\"acme: cannot offer acme-tls/1 on a connection\"");
}

void *
tlsreload_callback(void)
{
	return (void *)retrieve;
}

void
tlsreload_free(void)
{
	pthread_mutex_lock(&lock);
	while (current) {
		struct certset *o = current->older;

		certset_free(current);
		current = o;
	}
	if (challenge) {
		challenge->older = retired;
		retired = challenge;
		challenge = NULL;
	}
	while (retired) {
		struct certset *o = retired->older;

		certset_free(retired);
		retired = o;
	}
	pthread_mutex_unlock(&lock);
}
