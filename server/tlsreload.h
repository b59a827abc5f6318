/* SPDX-License-Identifier: MIT */
/*
 * A TLS certificate for the main listener that can be replaced while it
 * runs (ACME renewal): libmicrohttpd asks for the certificate at each
 * handshake (MHD_OPTION_HTTPS_CERT_CALLBACK, GnuTLS), and gets the one
 * loaded last. One per process.
 */
#ifndef WM_TLSRELOAD_H
#define WM_TLSRELOAD_H

#include <stddef.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "common/err.h"

/* Loads a PEM chain and its key; on success new handshakes use them. */
int tlsreload_load(const char *cert_path, const char *key_path, char *why, size_t whylen)
	WM_MUST_CHECK;
/* The gnutls_certificate_retrieve_function2 for MHD_OPTION_HTTPS_CERT_CALLBACK. */
void *tlsreload_callback(void);
/* TLS-ALPN-01 (RFC 8737; an acme_config.alpn_cert callback body): while
 * cert is set, new connections also offer ALPN "acme-tls/1", and a
 * handshake that negotiates it with SNI = host gets this certificate (and
 * nothing else does). NULLs close the challenge. Takes no reference. */
void tlsreload_alpn_challenge(const char *host, X509 *cert, EVP_PKEY *key);
/* Called with each new connection's gnutls_session_t before its handshake
 * (MHD_CONNECTION_NOTIFY_STARTED): offers acme-tls/1 while a challenge is open. */
void tlsreload_session_started(void *session);
/* Frees every certificate loaded (after the listener stopped). */
void tlsreload_free(void);

#endif
