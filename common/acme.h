/* SPDX-License-Identifier: MIT */
/*
 * ACME client (RFC 8555) for wiremesh-server and wiremesh-derper: an ES256
 * account key, HTTP-01 challenges answered on a plain-HTTP listener of its
 * own or TLS-ALPN-01 (RFC 8737) through the caller's TLS listener, the
 * certificate and its key kept in a state directory (mode 0600),
 * renewal in a background thread before expiry.
 */
#ifndef WM_ACME_H
#define WM_ACME_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "common/err.h"

enum acme_challenge { ACME_HTTP_01 = 0, ACME_TLS_ALPN_01 };

struct acme_config {
	const char *hostname;		/* the certificate's name (required) */
	const char *email;		/* account contact; NULL or "": none */
	const char *directory;		/* directory URL; NULL: Let's Encrypt */
	const char *state_dir;		/* account.key, cert.key, cert.pem */
	const char *http_listen;	/* HTTP-01 listener, HOST:PORT; NULL: ":80" */
	const char *ca_file;		/* CA bundle for the directory's TLS; NULL: system */
	enum acme_challenge challenge;	/* default HTTP-01 */
	/* TLS-ALPN-01 (RFC 8737): called with the challenge certificate and its
	 * key when a challenge opens, with NULLs when it closes. The callee takes
	 * its own references; the TLS listener serves them to handshakes that
	 * offer ALPN "acme-tls/1" with SNI = hostname. */
	void (*alpn_cert)(void *arg, X509 *cert, EVP_PKEY *key);
	int64_t renew_before_s;		/* 0: a third of the certificate's lifetime */
	/* Called from the renewal thread after a new certificate is on disk. */
	void (*on_renew)(void *arg);
	void *arg;
};

#define ACME_DEFAULT_DIRECTORY "https://acme-v02.api.letsencrypt.org/directory"

struct acme;

/* "http-01" or "tls-alpn-01" into *out; -1 for anything else. */
int acme_challenge_parse(const char *s, enum acme_challenge *out) WM_MUST_CHECK;
/* Does an ALPN protocol name list (RFC 7301 wire format: 1-byte length,
 * name; ...) name "acme-tls/1"? The _ext_ form takes the ClientHello's
 * extension body (a 2-byte length, then the list). Untrusted input. */
int acme_alpn_list_offered(const unsigned char *p, size_t n);
int acme_alpn_ext_offered(const unsigned char *p, size_t n);
/* A self-signed certificate for hostname with the critical
 * id-pe-acmeIdentifier extension holding SHA-256(keyauth) (RFC 8737 3). */
int acme_alpn_cert_make(const char *hostname, const char *keyauth, X509 **cert,
			EVP_PKEY **key) WM_MUST_CHECK;

/* Starts the challenge listener and makes sure a valid certificate for the
 * hostname is on disk (the existing one if still valid, else a new one).
 * Blocks while issuing. On failure *why names the cause. */
int acme_start(const struct acme_config *cfg, struct acme **out, char *why, size_t whylen)
	WM_MUST_CHECK;
/* The certificate and key files acme_start keeps in state_dir for hostname. */
void acme_state_paths(const char *state_dir, const char *hostname, char *cert, size_t certlen,
		      char *key, size_t keylen);
/* Starts the renewal thread. */
int acme_run(struct acme *a) WM_MUST_CHECK;
const char *acme_cert_path(const struct acme *a);
const char *acme_key_path(const struct acme *a);
void acme_stop(struct acme *a);

#endif
