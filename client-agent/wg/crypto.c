// SPDX-License-Identifier: MIT
/*
 * Primitive wrappers. The EVP algorithms are fetched once; hash, MAC and
 * HMAC contexts are made per call (handshakes only), while the AEAD keeps a
 * context per direction and only resets the nonce when the key is unchanged,
 * which is what makes OpenSSL's ChaCha20-Poly1305 fast per packet.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <sodium.h>

#include "client-agent/wg/crypto.h"

static EVP_MD *md_blake2s;
static EVP_MAC *mac_blake2s;
static EVP_MAC *mac_hmac;
static EVP_CIPHER *cipher_chapoly;
static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static int init_result = ERR_INTERNAL;

static void
do_init(void)
{
	if (sodium_init() < 0)
		return;
	md_blake2s = EVP_MD_fetch(NULL, "BLAKE2S-256", NULL);
	mac_blake2s = EVP_MAC_fetch(NULL, "BLAKE2SMAC", NULL);
	mac_hmac = EVP_MAC_fetch(NULL, "HMAC", NULL);
	cipher_chapoly = EVP_CIPHER_fetch(NULL, "ChaCha20-Poly1305", NULL);
	if (md_blake2s && mac_blake2s && mac_hmac && cipher_chapoly)
		init_result = 0;
}

int
wg_crypto_init(void)
{
	pthread_once(&init_once, do_init);
	return init_result;
}

/* The fetch above cannot fail on a working OpenSSL 3; failures of the calls
 * below mean memory exhaustion, where continuing with zeros would be silent
 * key damage, so they abort. None depends on remote input. */
static void
must(int ok)
{
	if (!ok)
		abort();
}

void
wg_hash3(uint8_t out[static WG_HASH_LEN], const uint8_t *a, size_t alen,
	 const uint8_t *b, size_t blen, const uint8_t *c, size_t clen)
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	unsigned int n = 0;

	must(ctx != NULL && wg_crypto_init() == 0);
	must(EVP_DigestInit_ex(ctx, md_blake2s, NULL));
	if (alen)
		must(EVP_DigestUpdate(ctx, a, alen));
	if (blen)
		must(EVP_DigestUpdate(ctx, b, blen));
	if (clen)
		must(EVP_DigestUpdate(ctx, c, clen));
	must(EVP_DigestFinal_ex(ctx, out, &n));
	EVP_MD_CTX_free(ctx);
}

void
wg_mac(uint8_t out[static WG_MAC_LEN], const uint8_t *key, size_t keylen,
       const uint8_t *in, size_t inlen)
{
	EVP_MAC_CTX *ctx;
	size_t size = WG_MAC_LEN, n = 0;
	OSSL_PARAM params[3];

	must(wg_crypto_init() == 0);
	ctx = EVP_MAC_CTX_new(mac_blake2s);
	must(ctx != NULL);
	params[0] = OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, (void *)key, keylen);
	params[1] = OSSL_PARAM_construct_size_t(OSSL_MAC_PARAM_SIZE, &size);
	params[2] = OSSL_PARAM_construct_end();
	must(EVP_MAC_CTX_set_params(ctx, params));
	must(EVP_MAC_init(ctx, NULL, 0, NULL));
	must(EVP_MAC_update(ctx, in, inlen));
	must(EVP_MAC_final(ctx, out, &n, WG_MAC_LEN) && n == WG_MAC_LEN);
	EVP_MAC_CTX_free(ctx);
}

void
wg_hmac(uint8_t out[static WG_HASH_LEN], const uint8_t *key, size_t keylen,
	const uint8_t *in, size_t inlen)
{
	static const uint8_t empty[1];
	EVP_MAC_CTX *ctx;
	size_t n = 0;
	OSSL_PARAM params[3];

	must(wg_crypto_init() == 0);
	ctx = EVP_MAC_CTX_new(mac_hmac);
	must(ctx != NULL);
	params[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, "BLAKE2S-256", 0);
	params[1] = OSSL_PARAM_construct_end();
	must(EVP_MAC_CTX_set_params(ctx, params));
	params[0] = OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY,
						      (void *)(keylen ? key : empty), keylen);
	params[1] = OSSL_PARAM_construct_end();
	must(EVP_MAC_init(ctx, NULL, 0, params));
	if (inlen)
		must(EVP_MAC_update(ctx, in, inlen));
	must(EVP_MAC_final(ctx, out, &n, WG_HASH_LEN) && n == WG_HASH_LEN);
	EVP_MAC_CTX_free(ctx);
}

void
wg_kdf(uint8_t t1[static WG_HASH_LEN], uint8_t *t2, uint8_t *t3,
       const uint8_t *key, size_t keylen, const uint8_t *in, size_t inlen)
{
	uint8_t prk[WG_HASH_LEN], buf[WG_HASH_LEN + 1];

	wg_hmac(prk, key, keylen, in, inlen);
	buf[0] = 1;
	wg_hmac(buf, prk, sizeof(prk), buf, 1);
	memcpy(t1, buf, WG_HASH_LEN);
	if (t2) {
		buf[WG_HASH_LEN] = 2;
		wg_hmac(buf, prk, sizeof(prk), buf, WG_HASH_LEN + 1);
		memcpy(t2, buf, WG_HASH_LEN);
	}
	if (t3) {
		buf[WG_HASH_LEN] = 3;
		wg_hmac(buf, prk, sizeof(prk), buf, WG_HASH_LEN + 1);
		memcpy(t3, buf, WG_HASH_LEN);
	}
	wg_wipe(prk, sizeof(prk));
	wg_wipe(buf, sizeof(buf));
}

int
wg_dh(uint8_t out[static WG_KEY_LEN], const uint8_t priv[static WG_KEY_LEN],
      const uint8_t pub[static WG_KEY_LEN])
{
	if (crypto_scalarmult_curve25519(out, priv, pub) != 0) {
		wg_wipe(out, WG_KEY_LEN);
		return ERR_INVALID;
	}
	return 0;
}

void
wg_pubkey(uint8_t pub[static WG_KEY_LEN], const uint8_t priv[static WG_KEY_LEN])
{
	crypto_scalarmult_curve25519_base(pub, priv);
}

void
wg_genkey(uint8_t priv[static WG_KEY_LEN])
{
	randombytes_buf(priv, WG_KEY_LEN);
	priv[0] &= 248;
	priv[31] = (priv[31] & 127) | 64;
}

struct aead_dir {
	EVP_CIPHER_CTX *ctx;
	uint8_t key[WG_KEY_LEN];
	bool keyed;
};

struct wg_aead {
	struct aead_dir enc, dec;
};

struct wg_aead *
wg_aead_new(void)
{
	struct wg_aead *a;

	if (wg_crypto_init() != 0)
		return NULL;
	a = calloc(1, sizeof(*a));
	if (a == NULL)
		return NULL;
	a->enc.ctx = EVP_CIPHER_CTX_new();
	a->dec.ctx = EVP_CIPHER_CTX_new();
	if (a->enc.ctx == NULL || a->dec.ctx == NULL ||
	    !EVP_EncryptInit_ex(a->enc.ctx, cipher_chapoly, NULL, NULL, NULL) ||
	    !EVP_DecryptInit_ex(a->dec.ctx, cipher_chapoly, NULL, NULL, NULL)) {
		wg_aead_free(a);
		return NULL;
	}
	return a;
}

void
wg_aead_free(struct wg_aead *a)
{
	if (a == NULL)
		return;
	EVP_CIPHER_CTX_free(a->enc.ctx);
	EVP_CIPHER_CTX_free(a->dec.ctx);
	wg_wipe(a, sizeof(*a));
	free(a);
}

static void
make_nonce(uint8_t nonce[12], uint64_t counter)
{
	memset(nonce, 0, 4);
	wg_put_le64(nonce + 4, counter);
}

/* Re-keys only when the key changed: per packet only the nonce is reset. */
static int
dir_init(struct aead_dir *d, bool enc, const uint8_t key[static WG_KEY_LEN],
	 const uint8_t nonce[12])
{
	const uint8_t *k = NULL;

	if (!d->keyed || memcmp(d->key, key, WG_KEY_LEN) != 0) {
		memcpy(d->key, key, WG_KEY_LEN);
		d->keyed = true;
		k = key;
	}
	/* EVP_CipherInit_ex2 and the tag through OSSL_PARAMs skip the legacy
	 * ctrl translation: about 15% of the per-packet cost. */
	return EVP_CipherInit_ex2(d->ctx, NULL, k, nonce, enc ? 1 : 0, NULL) ? 0 : ERR_INTERNAL;
}

int
wg_aead_seal_nonce(struct wg_aead *a, uint8_t *out, const uint8_t *in, size_t len,
		   const uint8_t key[static WG_KEY_LEN], const uint8_t nonce[static 12],
		   const uint8_t *ad, size_t adlen)
{
	int outl = 0, fl = 0;

	if (len > INT32_MAX || adlen > INT32_MAX)
		return ERR_TOO_LARGE;
	if (dir_init(&a->enc, true, key, nonce) != 0)
		return ERR_INTERNAL;
	if (adlen && !EVP_EncryptUpdate(a->enc.ctx, NULL, &outl, ad, (int)adlen))
		return ERR_INTERNAL;
	if (len && !EVP_EncryptUpdate(a->enc.ctx, out, &outl, in, (int)len))
		return ERR_INTERNAL;
	if (!EVP_EncryptFinal_ex(a->enc.ctx, out + outl, &fl))
		return ERR_INTERNAL;
	OSSL_PARAM tp[2] = {
		OSSL_PARAM_construct_octet_string(OSSL_CIPHER_PARAM_AEAD_TAG, out + len, WG_TAG_LEN),
		OSSL_PARAM_construct_end(),
	};
	if (!EVP_CIPHER_CTX_get_params(a->enc.ctx, tp))
		return ERR_INTERNAL;
	return 0;
}

int
wg_aead_open_nonce(struct wg_aead *a, uint8_t *out, const uint8_t *in, size_t len,
		   const uint8_t key[static WG_KEY_LEN], const uint8_t nonce[static 12],
		   const uint8_t *ad, size_t adlen)
{
	uint8_t tag[WG_TAG_LEN];
	int outl = 0, fl = 0;
	size_t plen;

	if (len < WG_TAG_LEN || len > INT32_MAX || adlen > INT32_MAX)
		return ERR_BAD_SIGNATURE;
	plen = len - WG_TAG_LEN;
	memcpy(tag, in + plen, WG_TAG_LEN);
	if (dir_init(&a->dec, false, key, nonce) != 0)
		return ERR_INTERNAL;
	if (adlen && !EVP_DecryptUpdate(a->dec.ctx, NULL, &outl, ad, (int)adlen))
		return ERR_INTERNAL;
	if (plen && !EVP_DecryptUpdate(a->dec.ctx, out, &outl, in, (int)plen))
		return ERR_INTERNAL;
	OSSL_PARAM tp[2] = {
		OSSL_PARAM_construct_octet_string(OSSL_CIPHER_PARAM_AEAD_TAG, tag, WG_TAG_LEN),
		OSSL_PARAM_construct_end(),
	};
	if (!EVP_CIPHER_CTX_set_params(a->dec.ctx, tp))
		return ERR_INTERNAL;
	if (EVP_DecryptFinal_ex(a->dec.ctx, out + outl, &fl) <= 0)
		return ERR_BAD_SIGNATURE;
	return 0;
}

int
wg_aead_seal(struct wg_aead *a, uint8_t *out, const uint8_t *in, size_t len,
	     const uint8_t key[static WG_KEY_LEN], uint64_t counter,
	     const uint8_t *ad, size_t adlen)
{
	uint8_t nonce[12];

	make_nonce(nonce, counter);
	return wg_aead_seal_nonce(a, out, in, len, key, nonce, ad, adlen);
}

int
wg_aead_open(struct wg_aead *a, uint8_t *out, const uint8_t *in, size_t len,
	     const uint8_t key[static WG_KEY_LEN], uint64_t counter,
	     const uint8_t *ad, size_t adlen)
{
	uint8_t nonce[12];

	make_nonce(nonce, counter);
	return wg_aead_open_nonce(a, out, in, len, key, nonce, ad, adlen);
}

void
wg_aead_seal_once(uint8_t *out, const uint8_t *in, size_t len,
		  const uint8_t key[static WG_KEY_LEN], uint64_t counter,
		  const uint8_t *ad, size_t adlen)
{
	uint8_t nonce[12];
	unsigned long long clen = 0;

	make_nonce(nonce, counter);
	crypto_aead_chacha20poly1305_ietf_encrypt(out, &clen, in, len, ad, adlen, NULL,
						  nonce, key);
}

int
wg_aead_open_once(uint8_t *out, const uint8_t *in, size_t len,
		  const uint8_t key[static WG_KEY_LEN], uint64_t counter,
		  const uint8_t *ad, size_t adlen)
{
	uint8_t nonce[12];
	unsigned long long mlen = 0;

	make_nonce(nonce, counter);
	if (crypto_aead_chacha20poly1305_ietf_decrypt(out, &mlen, NULL, in, len, ad, adlen,
						      nonce, key) != 0)
		return ERR_BAD_SIGNATURE;
	return 0;
}

void
wg_xaead_seal(uint8_t *out, const uint8_t *in, size_t len,
	      const uint8_t key[static WG_KEY_LEN], const uint8_t nonce[static 24],
	      const uint8_t *ad, size_t adlen)
{
	unsigned long long clen = 0;

	crypto_aead_xchacha20poly1305_ietf_encrypt(out, &clen, in, len, ad, adlen,
						   NULL, nonce, key);
}

int
wg_xaead_open(uint8_t *out, const uint8_t *in, size_t len,
	      const uint8_t key[static WG_KEY_LEN], const uint8_t nonce[static 24],
	      const uint8_t *ad, size_t adlen)
{
	unsigned long long mlen = 0;

	if (crypto_aead_xchacha20poly1305_ietf_decrypt(out, &mlen, NULL, in, len, ad,
						       adlen, nonce, key) != 0)
		return ERR_BAD_SIGNATURE;
	return 0;
}

void
wg_wipe(void *p, size_t n)
{
	OPENSSL_cleanse(p, n);
}

bool
wg_equal(const void *a, const void *b, size_t n)
{
	return CRYPTO_memcmp(a, b, n) == 0;
}

void
wg_random(void *p, size_t n)
{
	randombytes_buf(p, n);
}
