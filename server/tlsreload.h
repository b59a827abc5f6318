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

#include "common/err.h"

/* Loads a PEM chain and its key; on success new handshakes use them. */
int tlsreload_load(const char *cert_path, const char *key_path, char *why, size_t whylen)
	WM_MUST_CHECK;
/* The gnutls_certificate_retrieve_function2 for MHD_OPTION_HTTPS_CERT_CALLBACK. */
void *tlsreload_callback(void);
/* Frees every certificate loaded (after the listener stopped). */
void tlsreload_free(void);

#endif
