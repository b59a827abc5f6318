/* SPDX-License-Identifier: MIT */
/*
 * Request signing for the node protocol. The agent signs every control
 * request with its Ed25519 machine key over this exact byte string:
 *
 *   "wiremesh-v1\n" METHOD "\n" PATH "\n" TIMESTAMP "\n" NONCE "\n" hex(SHA-256(body))
 *
 * PATH is the request path without a query string; TIMESTAMP is decimal Unix
 * seconds; NONCE is 32 random hex digits, new for every request, so two
 * identical requests in one second still differ. The four headers are
 * Wiremesh-Machine (mkey:<hex>), Wiremesh-Timestamp, Wiremesh-Nonce and
 * Wiremesh-Signature (128 hex digits). docs/protocol.md has the details.
 */
#ifndef WM_SIGN_H
#define WM_SIGN_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "common/keys.h"

enum { SIGN_HEX_LEN = 2 * ED25519_SIG_LEN, SIGN_MAX_PATH = 1024, SIGN_NONCE_LEN = 32 };

#define SIGN_HDR_MACHINE   "Wiremesh-Machine"
#define SIGN_HDR_TIMESTAMP "Wiremesh-Timestamp"
#define SIGN_HDR_SIGNATURE "Wiremesh-Signature"
#define SIGN_HDR_NONCE     "Wiremesh-Nonce"

/* Makes a new Ed25519 machine key pair. */
void sign_keypair(uint8_t pk[static KEY_LEN], uint8_t sk[static ED25519_SK_LEN]);

/* Makes a fresh nonce: 32 hex digits and a NUL. */
void sign_nonce(char nonce[static SIGN_NONCE_LEN + 1]);

/* Signs; `sig_hex` receives 128 hex digits and a NUL. */
int sign_request(const uint8_t sk[static ED25519_SK_LEN], const char *method,
		 const char *path, int64_t ts, const char *nonce, const void *body,
		 size_t len, char sig_hex[static SIGN_HEX_LEN + 1]) WM_MUST_CHECK;

/* Verifies; ERR_BAD_SIGNATURE when it does not match. */
int sign_verify(const uint8_t pk[static KEY_LEN], const char *method,
		const char *path, int64_t ts, const char *nonce, const void *body,
		size_t len, const char *sig_hex) WM_MUST_CHECK;

#endif
