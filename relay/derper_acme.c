/* SPDX-License-Identifier: MIT */
/*
 * The derper's certificate, replaceable while it runs (ACME renewal): the
 * SSL_CTX's certificate callback hands each new handshake the chain and key
 * loaded last.
 */
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "common/log.h"
#include "common/acme.h"
#include "relay/derper_acme.h"

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static X509 *cur_cert;
static STACK_OF(X509) *cur_chain;
static EVP_PKEY *cur_key;
/* TLS-ALPN-01: the open challenge's certificate and its name */
static X509 *alpn_cert;
static EVP_PKEY *alpn_key;
static char alpn_host[256];
static int alpn_idx = -1;	/* SSL ex_data: the hello offered acme-tls/1 */

static const unsigned char acme_tls_1[] = "acme-tls/1";
#define ACME_TLS_1_LEN (sizeof(acme_tls_1) - 1)

/* Runs before the certificate callback: notes whether the hello asks for
 * acme-tls/1 (the ALPN callback may come later than the certificate's). */
static int hello_cb(SSL *ssl, int *al, void *arg)
{
	const unsigned char *p;
	size_t n;

	(void)al;
	(void)arg;
	if (SSL_client_hello_get0_ext(ssl, TLSEXT_TYPE_application_layer_protocol_negotiation,
	    &p, &n) == 1 && acme_alpn_ext_offered(p, n))
		SSL_set_ex_data(ssl, alpn_idx, (void *)1);
	return SSL_CLIENT_HELLO_SUCCESS;
}

static int alpn_cb(SSL *ssl, const unsigned char **out, unsigned char *outlen,
		   const unsigned char *in, unsigned int inlen, void *arg)
{
	int open;

	(void)ssl;
	(void)arg;
	pthread_mutex_lock(&lock);
	open = alpn_cert != NULL;
	pthread_mutex_unlock(&lock);
	if (!open || !acme_alpn_list_offered(in, inlen))
		return SSL_TLSEXT_ERR_NOACK;
	*out = acme_tls_1;
	*outlen = (unsigned char)ACME_TLS_1_LEN;
	return SSL_TLSEXT_ERR_OK;
}

void derper_tls_alpn_cert(void *arg, X509 *cert, EVP_PKEY *key)
{
	const char *host = arg;

	pthread_mutex_lock(&lock);
	X509_free(alpn_cert);
	EVP_PKEY_free(alpn_key);
	alpn_cert = NULL;
	alpn_key = NULL;
	if (cert && key && X509_up_ref(cert) == 1) {
		if (EVP_PKEY_up_ref(key) == 1) {
			alpn_cert = cert;
			alpn_key = key;
			snprintf(alpn_host, sizeof(alpn_host), "%s", host ? host : "");
		} else {
			X509_free(cert);
		}
	}
	pthread_mutex_unlock(&lock);
}


/* Replaces the certificate served (owned from now on). Called with `lock`. */
static void
cur_set(X509 *leaf, STACK_OF(X509) *chain, EVP_PKEY *k)
{
	X509_free(cur_cert);
	sk_X509_pop_free(cur_chain, X509_free);
	EVP_PKEY_free(cur_key);
	cur_cert = leaf;
	cur_chain = chain;
	cur_key = k;
}

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
	cur_set(leaf, chain, k);
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
	if (alpn_cert && SSL_get_ex_data(ssl, alpn_idx) != NULL) {
		const char *sni = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);

		/* RFC 8737 3: only the challenge certificate, only for its name */
		ok = sni && strcasecmp(sni, alpn_host) == 0 &&
		    SSL_use_cert_and_key(ssl, alpn_cert, alpn_key, NULL, 1) == 1;
		pthread_mutex_unlock(&lock);
		return ok ? 1 : 0;
	}
	/* SSL_use_cert_and_key takes its own references */
	ok = cur_cert && SSL_use_cert_and_key(ssl, cur_cert, cur_key, cur_chain, 1) == 1;
	pthread_mutex_unlock(&lock);
	return ok ? 1 : 0;
}

void derper_tls_reloadable(SSL_CTX *ctx)
{
	SSL_CTX_set_cert_cb(ctx, cert_cb, NULL);
	if (alpn_idx < 0)
		alpn_idx = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
	SSL_CTX_set_client_hello_cb(ctx, hello_cb, NULL);
	SSL_CTX_set_alpn_select_cb(ctx, alpn_cb, NULL);
}

void derper_tls_free(void)
{
	pthread_mutex_lock(&lock);
	cur_set(NULL, NULL, NULL);
	X509_free(alpn_cert);
	EVP_PKEY_free(alpn_key);
	alpn_cert = NULL;
	alpn_key = NULL;
	pthread_mutex_unlock(&lock);
}
