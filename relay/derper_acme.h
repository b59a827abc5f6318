/* SPDX-License-Identifier: MIT */
#ifndef WM_DERPER_ACME_H
#define WM_DERPER_ACME_H

#include <openssl/ssl.h>

/* Loads a PEM chain and key for the handshakes from now on; -1 (logged) on error. */
int derper_tls_load(const char *cert, const char *key);
/* Makes ctx hand out the certificate derper_tls_load loaded last. */
void derper_tls_reloadable(SSL_CTX *ctx);
void derper_tls_free(void);
/* struct acme_config.alpn_cert for TLS-ALPN-01; arg is the hostname. */
void derper_tls_alpn_cert(void *arg, X509 *cert, EVP_PKEY *key);

#endif
