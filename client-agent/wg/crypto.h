/* SPDX-License-Identifier: MIT */
/*
 * The primitives WireGuard is built from, as thin wrappers over OpenSSL 3
 * (BLAKE2s-256, keyed BLAKE2s-128 through EVP_MAC BLAKE2SMAC, HMAC-BLAKE2s,
 * ChaCha20-Poly1305) and libsodium (X25519, XChaCha20-Poly1305). Nothing here
 * implements a primitive itself. The data-path AEAD uses a caller-owned
 * context (one per thread) so no allocation happens per packet.
 */
#ifndef WG_CRYPTO_H
#define WG_CRYPTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "client-agent/wg/messages.h"
#include "common/err.h"

/* Must be called once before anything else (fetches the EVP algorithms).
 * Thread safe; returns 0 or ERR_INTERNAL when OpenSSL lacks an algorithm. */
int wg_crypto_init(void) WM_MUST_CHECK;

/* HASH: BLAKE2s-256 of the concatenation of up to three pieces (NULL/0 skips). */
void wg_hash3(uint8_t out[static WG_HASH_LEN], const uint8_t *a, size_t alen,
	      const uint8_t *b, size_t blen, const uint8_t *c, size_t clen);
/* MAC: keyed BLAKE2s with a 16-byte digest (not a truncation). key 1..32 bytes. */
void wg_mac(uint8_t out[static WG_MAC_LEN], const uint8_t *key, size_t keylen,
	    const uint8_t *in, size_t inlen);
/* HMAC-BLAKE2s-256. */
void wg_hmac(uint8_t out[static WG_HASH_LEN], const uint8_t *key, size_t keylen,
	     const uint8_t *in, size_t inlen);
/* HKDF with HMAC-BLAKE2s: fills t1, and t2/t3 when not NULL. */
void wg_kdf(uint8_t t1[static WG_HASH_LEN], uint8_t *t2, uint8_t *t3,
	    const uint8_t *key, size_t keylen, const uint8_t *in, size_t inlen);

/* X25519; returns ERR_INVALID on an all-zero shared secret. */
int wg_dh(uint8_t out[static WG_KEY_LEN], const uint8_t priv[static WG_KEY_LEN],
	  const uint8_t pub[static WG_KEY_LEN]) WM_MUST_CHECK;
void wg_pubkey(uint8_t pub[static WG_KEY_LEN], const uint8_t priv[static WG_KEY_LEN]);
/* Random clamped private key. */
void wg_genkey(uint8_t priv[static WG_KEY_LEN]);

/* AEAD context: one per thread; not thread safe itself. */
struct wg_aead;
struct wg_aead *wg_aead_new(void);
void wg_aead_free(struct wg_aead *a);
/* ChaCha20-Poly1305 with the WireGuard nonce (4 zero bytes + le64 counter).
 * out receives len bytes of ciphertext followed by the 16-byte tag; out may
 * equal in. */
int wg_aead_seal(struct wg_aead *a, uint8_t *out, const uint8_t *in, size_t len,
		 const uint8_t key[static WG_KEY_LEN], uint64_t counter,
		 const uint8_t *ad, size_t adlen) WM_MUST_CHECK;
/* Opens len bytes (ciphertext + tag) into out (len - 16 bytes). Returns 0 or
 * ERR_BAD_SIGNATURE. */
int wg_aead_open(struct wg_aead *a, uint8_t *out, const uint8_t *in, size_t len,
		 const uint8_t key[static WG_KEY_LEN], uint64_t counter,
		 const uint8_t *ad, size_t adlen) WM_MUST_CHECK;
/* Same with an explicit 12-byte nonce (for RFC 8439 vectors). */
int wg_aead_seal_nonce(struct wg_aead *a, uint8_t *out, const uint8_t *in, size_t len,
		       const uint8_t key[static WG_KEY_LEN], const uint8_t nonce[static 12],
		       const uint8_t *ad, size_t adlen) WM_MUST_CHECK;
int wg_aead_open_nonce(struct wg_aead *a, uint8_t *out, const uint8_t *in, size_t len,
		       const uint8_t key[static WG_KEY_LEN], const uint8_t nonce[static 12],
		       const uint8_t *ad, size_t adlen) WM_MUST_CHECK;

/* One-shot ChaCha20-Poly1305 with counter nonce (libsodium), for handshake
 * fields where no context is at hand. */
void wg_aead_seal_once(uint8_t *out, const uint8_t *in, size_t len,
		       const uint8_t key[static WG_KEY_LEN], uint64_t counter,
		       const uint8_t *ad, size_t adlen);
int wg_aead_open_once(uint8_t *out, const uint8_t *in, size_t len,
		      const uint8_t key[static WG_KEY_LEN], uint64_t counter,
		      const uint8_t *ad, size_t adlen) WM_MUST_CHECK;

/* XChaCha20-Poly1305 (libsodium) for cookie replies. */
void wg_xaead_seal(uint8_t *out, const uint8_t *in, size_t len,
		   const uint8_t key[static WG_KEY_LEN], const uint8_t nonce[static 24],
		   const uint8_t *ad, size_t adlen);
int wg_xaead_open(uint8_t *out, const uint8_t *in, size_t len,
		  const uint8_t key[static WG_KEY_LEN], const uint8_t nonce[static 24],
		  const uint8_t *ad, size_t adlen) WM_MUST_CHECK;

void wg_wipe(void *p, size_t n);
bool wg_equal(const void *a, const void *b, size_t n);	/* constant time */
void wg_random(void *p, size_t n);

#endif
