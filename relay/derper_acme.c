/* SPDX-License-Identifier: MIT */
/*
 * The derper's certificate, replaceable while it runs (ACME renewal): the
 * SSL_CTX's certificate callback hands each new handshake the chain and key
 * loaded last.
 */
#include <pthread.h>
#include <stdio.h>

#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "common/log.h"
#include "relay/derper_acme.h"

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static X509 *cur_cert;
static STACK_OF(X509) *cur_chain;
static EVP_PKEY *cur_key;

int derper_tls_load(const char *cert, const char *key)
{
	FILE *f = fopen(cert, "r");
	X509 *leaf = NULL, *x;
	STACK_OF(X509) *chain = sk_X509_new_null();
	EVP_PKEY *k = NULL;

	if (f == NULL || chain == NULL)
		goto fail;
	leaf = PEM_read_X509(f, NULL, NULL, NULL);
	while ((x = PEM_read_X509(f, NULL, NULL, NULL)) != NULL)
		sk_X509_push(chain, x);
	fclose(f);
	f = NULL;
	if (leaf == NULL || (f = fopen(key, "r")) == NULL ||
	    (k = PEM_read_PrivateKey(f, NULL, NULL, NULL)) == NULL ||
	    X509_check_private_key(leaf, k) != 1)
		goto fail;
	fclose(f);
	pthread_mutex_lock(&lock);
	X509_free(cur_cert);
	sk_X509_pop_free(cur_chain, X509_free);
	EVP_PKEY_free(cur_key);
	cur_cert = leaf;
	cur_chain = chain;
	cur_key = k;
	pthread_mutex_unlock(&lock);
	return 0;
fail:
	if (f)
		fclose(f);
	X509_free(leaf);
	sk_X509_pop_free(chain, X509_free);
	EVP_PKEY_free(k);
	log_error("msg=\"cannot load the TLS certificate\" cert=%s key=%s", cert, key);
	return -1;
}

static int cert_cb(SSL *ssl, void *arg)
{
	int ok;

	(void)arg;
	pthread_mutex_lock(&lock);
	/* SSL_use_cert_and_key takes its own references */
	ok = cur_cert && SSL_use_cert_and_key(ssl, cur_cert, cur_key, cur_chain, 1) == 1;
	pthread_mutex_unlock(&lock);
	return ok ? 1 : 0;
}

void derper_tls_reloadable(SSL_CTX *ctx)
{
	SSL_CTX_set_cert_cb(ctx, cert_cb, NULL);
}

void derper_tls_free(void)
{
	pthread_mutex_lock(&lock);
	X509_free(cur_cert);
	sk_X509_pop_free(cur_chain, X509_free);
	EVP_PKEY_free(cur_key);
	cur_cert = NULL;
	cur_chain = NULL;
	cur_key = NULL;
	pthread_mutex_unlock(&lock);
}
