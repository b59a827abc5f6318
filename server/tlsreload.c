/* SPDX-License-Identifier: MIT */
#include "server/tlsreload.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <gnutls/abstract.h>
#include <gnutls/gnutls.h>

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

int
tlsreload_load(const char *cert_path, const char *key_path, char *why, size_t whylen)
{
	struct certset *c = calloc(1, sizeof(*c));
	size_t cl = 0, kl = 0;
	char *cp = NULL, *kp = NULL;
	gnutls_datum_t d;
	int e;

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
	d.data = (unsigned char *)cp;
	d.size = (unsigned)cl;
	c->n = MAX_CHAIN;
	if ((e = gnutls_pcert_list_import_x509_raw(c->pcert, &c->n, &d, GNUTLS_X509_FMT_PEM,
	    0)) < 0) {
		c->n = 0;
		snprintf(why, whylen, "TLS certificate %s: %s", cert_path, gnutls_strerror(e));
		goto fail;
	}
	d.data = (unsigned char *)kp;
	d.size = (unsigned)kl;
	if ((e = gnutls_privkey_init(&c->key)) < 0 ||
	    (e = gnutls_privkey_import_x509_raw(c->key, &d, GNUTLS_X509_FMT_PEM, NULL, 0)) < 0) {
		snprintf(why, whylen, "TLS key %s: %s", key_path, gnutls_strerror(e));
		goto fail;
	}
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
	(void)s;
	(void)req_ca_dn;
	(void)nreqs;
	(void)algos;
	(void)nalgos;
	pthread_mutex_lock(&lock);
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
	pthread_mutex_unlock(&lock);
}
