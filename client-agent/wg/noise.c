// SPDX-License-Identifier: MIT
/*
 * Noise IKpsk2 with prologue "WireGuard v1 zx2c4 Jason@zx2c4.com". The
 * chaining key C and hash H start from the precomputed Ci = HASH(construction)
 * and Hi = HASH(Ci || identifier). Each step mixes DH outputs into C with
 * KDF and transcript bytes into H, exactly in the order of whitepaper 5.4.
 * Consumers compute into locals and commit only on success, so a forged
 * message never damages a handshake in progress.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "client-agent/wg/crypto.h"
#include "client-agent/wg/noise.h"

static const uint8_t construction_hash[WG_HASH_LEN] = {
	0x60, 0xe2, 0x6d, 0xae, 0xf3, 0x27, 0xef, 0xc0, 0x2e, 0xc3, 0x35, 0xe2, 0xa0, 0x25,
	0xd2, 0xd0, 0x16, 0xeb, 0x42, 0x06, 0xf8, 0x72, 0x77, 0xf5, 0x2d, 0x38, 0xd1, 0x98,
	0x8b, 0x78, 0xcd, 0x36,
};
static const uint8_t identifier_hash[WG_HASH_LEN] = {
	0x22, 0x11, 0xb3, 0x61, 0x08, 0x1a, 0xc5, 0x66, 0x69, 0x12, 0x43, 0xdb, 0x45, 0x8a,
	0xd5, 0x32, 0x2d, 0x9c, 0x6c, 0x66, 0x22, 0x93, 0xe8, 0xb7, 0x0e, 0xe1, 0x9c, 0x65,
	0xba, 0x07, 0x9e, 0xf3,
};

void
wg_tai64n_now(uint8_t out[static WG_TAI64N_LEN])
{
	struct timespec ts;
	uint64_t secs;
	uint32_t nsec;

	clock_gettime(CLOCK_REALTIME, &ts);
	secs = 0x400000000000000aULL + (uint64_t)ts.tv_sec;
	nsec = (uint32_t)ts.tv_nsec & ~0xffffffu;
	for (int i = 0; i < 8; i++)
		out[i] = (uint8_t)(secs >> (56 - 8 * i));
	for (int i = 0; i < 4; i++)
		out[8 + i] = (uint8_t)(nsec >> (24 - 8 * i));
}

static void
mix_hash(uint8_t h[WG_HASH_LEN], const uint8_t *in, size_t len)
{
	wg_hash3(h, h, WG_HASH_LEN, in, len, NULL, 0);
}

/* C, k = KDF2(C, DH(priv, pub)); fails on a zero shared secret. */
static int
mix_dh(uint8_t c[WG_HASH_LEN], uint8_t *k, const uint8_t *priv, const uint8_t *pub)
{
	uint8_t ss[WG_KEY_LEN];

	if (wg_dh(ss, priv, pub) != 0)
		return ERR_INVALID;
	wg_kdf(c, k, NULL, c, WG_HASH_LEN, ss, WG_KEY_LEN);
	wg_wipe(ss, sizeof(ss));
	return 0;
}

int
wg_noise_create_initiation(struct wg_handshake *hs, const struct wg_static_identity *local,
			   const uint8_t tai64n[static WG_TAI64N_LEN],
			   const uint8_t *fixed_eph, uint8_t msg[static WG_INITIATION_LEN])
{
	uint8_t c[WG_HASH_LEN], h[WG_HASH_LEN], k[WG_KEY_LEN], eph[WG_KEY_LEN];
	int r = ERR_INVALID;

	if (!local->has)
		return ERR_PRECONDITION;
	memset(msg, 0, WG_INITIATION_LEN);
	msg[0] = WG_MSG_INITIATION;
	wg_put_le32(msg + WG_OFF_SENDER, hs->local_index);
	memcpy(c, construction_hash, WG_HASH_LEN);
	wg_hash3(h, identifier_hash, WG_HASH_LEN, hs->remote_static, WG_KEY_LEN, NULL, 0);
	if (fixed_eph)
		memcpy(eph, fixed_eph, WG_KEY_LEN);
	else
		wg_genkey(eph);
	wg_pubkey(msg + WG_INIT_OFF_EPHEMERAL, eph);
	wg_kdf(c, NULL, NULL, c, WG_HASH_LEN, msg + WG_INIT_OFF_EPHEMERAL, WG_KEY_LEN);
	mix_hash(h, msg + WG_INIT_OFF_EPHEMERAL, WG_KEY_LEN);
	if (mix_dh(c, k, eph, hs->remote_static) != 0)
		goto out;
	wg_aead_seal_once(msg + WG_INIT_OFF_STATIC, local->pub, WG_KEY_LEN, k, 0, h, WG_HASH_LEN);
	mix_hash(h, msg + WG_INIT_OFF_STATIC, WG_KEY_LEN + WG_TAG_LEN);
	if (mix_dh(c, k, local->priv, hs->remote_static) != 0)
		goto out;
	wg_aead_seal_once(msg + WG_INIT_OFF_TIMESTAMP, tai64n, WG_TAI64N_LEN, k, 0, h,
			  WG_HASH_LEN);
	mix_hash(h, msg + WG_INIT_OFF_TIMESTAMP, WG_TAI64N_LEN + WG_TAG_LEN);
	memcpy(hs->eph_priv, eph, WG_KEY_LEN);
	memcpy(hs->hash, h, WG_HASH_LEN);
	memcpy(hs->chaining, c, WG_HASH_LEN);
	hs->state = WG_HS_CREATED_INITIATION;
	r = 0;
out:
	wg_wipe(c, sizeof(c));
	wg_wipe(k, sizeof(k));
	wg_wipe(eph, sizeof(eph));
	return r;
}

int
wg_noise_consume_initiation(const struct wg_static_identity *local,
			    const uint8_t msg[static WG_INITIATION_LEN], struct wg_init_result *out)
{
	uint8_t c[WG_HASH_LEN], h[WG_HASH_LEN], k[WG_KEY_LEN], s[WG_KEY_LEN];
	uint8_t ts[WG_TAI64N_LEN];
	const uint8_t *e = msg + WG_INIT_OFF_EPHEMERAL;
	int r = ERR_BAD_SIGNATURE;

	if (!local->has)
		return ERR_PRECONDITION;
	memcpy(c, construction_hash, WG_HASH_LEN);
	wg_hash3(h, identifier_hash, WG_HASH_LEN, local->pub, WG_KEY_LEN, NULL, 0);
	wg_kdf(c, NULL, NULL, c, WG_HASH_LEN, e, WG_KEY_LEN);
	mix_hash(h, e, WG_KEY_LEN);
	if (mix_dh(c, k, local->priv, e) != 0)
		goto out;
	if (wg_aead_open_once(s, msg + WG_INIT_OFF_STATIC, WG_KEY_LEN + WG_TAG_LEN, k, 0, h,
			      WG_HASH_LEN) != 0)
		goto out;
	mix_hash(h, msg + WG_INIT_OFF_STATIC, WG_KEY_LEN + WG_TAG_LEN);
	if (mix_dh(c, k, local->priv, s) != 0)
		goto out;
	if (wg_aead_open_once(ts, msg + WG_INIT_OFF_TIMESTAMP, WG_TAI64N_LEN + WG_TAG_LEN, k,
			      0, h, WG_HASH_LEN) != 0)
		goto out;
	mix_hash(h, msg + WG_INIT_OFF_TIMESTAMP, WG_TAI64N_LEN + WG_TAG_LEN);
	memcpy(out->remote_static, s, WG_KEY_LEN);
	memcpy(out->remote_eph, e, WG_KEY_LEN);
	memcpy(out->hash, h, WG_HASH_LEN);
	memcpy(out->chaining, c, WG_HASH_LEN);
	memcpy(out->timestamp, ts, WG_TAI64N_LEN);
	out->remote_index = wg_get_le32(msg + WG_OFF_SENDER);
	r = 0;
out:
	wg_wipe(c, sizeof(c));
	wg_wipe(k, sizeof(k));
	return r;
}

int
wg_noise_accept_initiation(struct wg_handshake *hs, const struct wg_init_result *r, int64_t now)
{
	if (memcmp(r->timestamp, hs->latest_timestamp, WG_TAI64N_LEN) <= 0)
		return ERR_REPLAY;
	if (hs->last_initiation_consumed != 0 &&
	    now - hs->last_initiation_consumed < WG_INITIATIONS_MIN_INTERVAL_MS * WG_NS_PER_MS)
		return ERR_STALE;
	memcpy(hs->latest_timestamp, r->timestamp, WG_TAI64N_LEN);
	hs->last_initiation_consumed = now ? now : 1;
	memcpy(hs->remote_eph, r->remote_eph, WG_KEY_LEN);
	memcpy(hs->hash, r->hash, WG_HASH_LEN);
	memcpy(hs->chaining, r->chaining, WG_HASH_LEN);
	hs->remote_index = r->remote_index;
	hs->state = WG_HS_CONSUMED_INITIATION;
	return 0;
}

int
wg_noise_create_response(struct wg_handshake *hs, const uint8_t *fixed_eph,
			 uint8_t msg[static WG_RESPONSE_LEN])
{
	uint8_t c[WG_HASH_LEN], h[WG_HASH_LEN], k[WG_KEY_LEN], tau[WG_HASH_LEN];
	uint8_t eph[WG_KEY_LEN];
	int r = ERR_INVALID;

	if (hs->state != WG_HS_CONSUMED_INITIATION)
		return ERR_PRECONDITION;
	memcpy(c, hs->chaining, WG_HASH_LEN);
	memcpy(h, hs->hash, WG_HASH_LEN);
	memset(msg, 0, WG_RESPONSE_LEN);
	msg[0] = WG_MSG_RESPONSE;
	wg_put_le32(msg + WG_OFF_SENDER, hs->local_index);
	wg_put_le32(msg + WG_RESP_OFF_RECEIVER, hs->remote_index);
	if (fixed_eph)
		memcpy(eph, fixed_eph, WG_KEY_LEN);
	else
		wg_genkey(eph);
	wg_pubkey(msg + WG_RESP_OFF_EPHEMERAL, eph);
	wg_kdf(c, NULL, NULL, c, WG_HASH_LEN, msg + WG_RESP_OFF_EPHEMERAL, WG_KEY_LEN);
	mix_hash(h, msg + WG_RESP_OFF_EPHEMERAL, WG_KEY_LEN);
	if (mix_dh(c, NULL, eph, hs->remote_eph) != 0 ||
	    mix_dh(c, NULL, eph, hs->remote_static) != 0)
		goto out;
	wg_kdf(c, tau, k, c, WG_HASH_LEN, hs->psk, WG_KEY_LEN);
	mix_hash(h, tau, WG_HASH_LEN);
	wg_aead_seal_once(msg + WG_RESP_OFF_EMPTY, eph, 0, k, 0, h, WG_HASH_LEN);
	mix_hash(h, msg + WG_RESP_OFF_EMPTY, WG_TAG_LEN);
	memcpy(hs->chaining, c, WG_HASH_LEN);
	memcpy(hs->hash, h, WG_HASH_LEN);
	hs->state = WG_HS_CREATED_RESPONSE;
	r = 0;
out:
	wg_wipe(c, sizeof(c));
	wg_wipe(k, sizeof(k));
	wg_wipe(tau, sizeof(tau));
	wg_wipe(eph, sizeof(eph));
	return r;
}

int
wg_noise_consume_response(struct wg_handshake *hs, const struct wg_static_identity *local,
			  const uint8_t msg[static WG_RESPONSE_LEN])
{
	uint8_t c[WG_HASH_LEN], h[WG_HASH_LEN], k[WG_KEY_LEN], tau[WG_HASH_LEN];
	const uint8_t *e = msg + WG_RESP_OFF_EPHEMERAL;
	uint8_t empty[1];
	int r = ERR_BAD_SIGNATURE;

	if (hs->state != WG_HS_CREATED_INITIATION || !local->has)
		return ERR_PRECONDITION;
	memcpy(c, hs->chaining, WG_HASH_LEN);
	memcpy(h, hs->hash, WG_HASH_LEN);
	wg_kdf(c, NULL, NULL, c, WG_HASH_LEN, e, WG_KEY_LEN);
	mix_hash(h, e, WG_KEY_LEN);
	if (mix_dh(c, NULL, hs->eph_priv, e) != 0 || mix_dh(c, NULL, local->priv, e) != 0)
		goto out;
	wg_kdf(c, tau, k, c, WG_HASH_LEN, hs->psk, WG_KEY_LEN);
	mix_hash(h, tau, WG_HASH_LEN);
	if (wg_aead_open_once(empty, msg + WG_RESP_OFF_EMPTY, WG_TAG_LEN, k, 0, h,
			      WG_HASH_LEN) != 0)
		goto out;
	mix_hash(h, msg + WG_RESP_OFF_EMPTY, WG_TAG_LEN);
	memcpy(hs->chaining, c, WG_HASH_LEN);
	memcpy(hs->hash, h, WG_HASH_LEN);
	hs->remote_index = wg_get_le32(msg + WG_OFF_SENDER);
	hs->state = WG_HS_CONSUMED_RESPONSE;
	r = 0;
out:
	wg_wipe(c, sizeof(c));
	wg_wipe(k, sizeof(k));
	wg_wipe(tau, sizeof(tau));
	return r;
}

int
wg_noise_derive_keypair(struct wg_handshake *hs, struct wg_keypair *kp, int64_t now)
{
	uint8_t t1[WG_HASH_LEN], t2[WG_HASH_LEN];
	bool initiator;

	if (hs->state == WG_HS_CONSUMED_RESPONSE)
		initiator = true;
	else if (hs->state == WG_HS_CREATED_RESPONSE)
		initiator = false;
	else
		return ERR_PRECONDITION;
	wg_kdf(t1, t2, NULL, hs->chaining, WG_HASH_LEN, NULL, 0);
	memset(kp, 0, sizeof(*kp));
	memcpy(kp->send_key, initiator ? t1 : t2, WG_KEY_LEN);
	memcpy(kp->recv_key, initiator ? t2 : t1, WG_KEY_LEN);
	atomic_init(&kp->send_counter, 0);
	atomic_init(&kp->refs, 1);
	pthread_mutex_init(&kp->recv_lock, NULL);
	wg_replay_init(&kp->replay);
	kp->birth = now;
	kp->initiator = initiator;
	kp->local_index = hs->local_index;
	kp->remote_index = hs->remote_index;
	wg_wipe(t1, sizeof(t1));
	wg_wipe(t2, sizeof(t2));
	wg_noise_handshake_clear(hs);
	return 0;
}

void
wg_noise_handshake_clear(struct wg_handshake *hs)
{
	wg_wipe(hs->eph_priv, sizeof(hs->eph_priv));
	wg_wipe(hs->remote_eph, sizeof(hs->remote_eph));
	wg_wipe(hs->hash, sizeof(hs->hash));
	wg_wipe(hs->chaining, sizeof(hs->chaining));
	hs->state = WG_HS_ZEROED;
	hs->local_index = 0;
	hs->remote_index = 0;
}

void
wg_keypair_get(struct wg_keypair *kp)
{
	atomic_fetch_add(&kp->refs, 1);
}

void
wg_keypair_put(struct wg_keypair *kp)
{
	if (kp == NULL)
		return;
	if (atomic_fetch_sub(&kp->refs, 1) != 1)
		return;
	pthread_mutex_destroy(&kp->recv_lock);
	wg_wipe(kp, sizeof(*kp));
	free(kp);
}
