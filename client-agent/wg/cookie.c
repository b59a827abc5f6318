// SPDX-License-Identifier: MIT
/*
 * mac1 is keyed with HASH("mac1----" || receiver public key) over everything
 * before it; mac2 with the cookie over everything before it. The cookie is
 * MAC(secret, source address bytes || big-endian port) and travels encrypted
 * with XChaCha20-Poly1305 under HASH("cookie--" || responder public key),
 * bound to the mac1 of the message it answers.
 */
#include <string.h>

#include "client-agent/wg/cookie.h"
#include "client-agent/wg/crypto.h"

static const uint8_t label_mac1[8] = "mac1----";
static const uint8_t label_cookie[8] = "cookie--";

void
wg_cookie_checker_init(struct wg_cookie_checker *c)
{
	memset(c, 0, sizeof(*c));
	pthread_mutex_init(&c->lock, NULL);
}

void
wg_cookie_checker_cleanup(struct wg_cookie_checker *c)
{
	pthread_mutex_destroy(&c->lock);
	wg_wipe(c->secret, sizeof(c->secret));
}

void
wg_cookie_checker_set_key(struct wg_cookie_checker *c, const uint8_t pub[static WG_KEY_LEN])
{
	pthread_mutex_lock(&c->lock);
	wg_hash3(c->mac1_key, label_mac1, 8, pub, WG_KEY_LEN, NULL, 0);
	wg_hash3(c->cookie_key, label_cookie, 8, pub, WG_KEY_LEN, NULL, 0);
	pthread_mutex_unlock(&c->lock);
}

void
wg_cookie_maker_init(struct wg_cookie_maker *m, const uint8_t peer_pub[static WG_KEY_LEN])
{
	memset(m, 0, sizeof(*m));
	wg_hash3(m->mac1_key, label_mac1, 8, peer_pub, WG_KEY_LEN, NULL, 0);
	wg_hash3(m->cookie_key, label_cookie, 8, peer_pub, WG_KEY_LEN, NULL, 0);
}

void
wg_cookie_add_macs(struct wg_cookie_maker *m, uint8_t *msg, size_t len, int64_t now)
{
	size_t off1 = len - 2 * WG_MAC_LEN, off2 = len - WG_MAC_LEN;

	wg_mac(msg + off1, m->mac1_key, WG_HASH_LEN, msg, off1);
	memcpy(m->last_mac1, msg + off1, WG_MAC_LEN);
	m->have_last_mac1 = true;
	if (m->cookie_birth == 0 ||
	    now - m->cookie_birth >= (int64_t)WG_COOKIE_SEND_MAX_AGE * WG_NS_PER_S) {
		memset(msg + off2, 0, WG_MAC_LEN);
		return;
	}
	wg_mac(msg + off2, m->cookie, WG_COOKIE_LEN, msg, off2);
}

/* Cookie for a source; rotates the secret every two minutes. Locked. */
static void
make_cookie(struct wg_cookie_checker *c, uint8_t out[static WG_COOKIE_LEN],
	    const struct endpoint *src, int64_t now)
{
	uint8_t in[18];
	size_t n = addr_len(&src->addr);

	if (c->secret_birth == 0 ||
	    now - c->secret_birth >= (int64_t)WG_COOKIE_SECRET_MAX_AGE * WG_NS_PER_S) {
		wg_random(c->secret, sizeof(c->secret));
		c->secret_birth = now ? now : 1;
	}
	memcpy(in, src->addr.b, n);
	in[n] = (uint8_t)(src->port >> 8);
	in[n + 1] = (uint8_t)src->port;
	wg_mac(out, c->secret, sizeof(c->secret), in, n + 2);
}

enum wg_mac_result
wg_cookie_validate(struct wg_cookie_checker *c, const uint8_t *msg, size_t len,
		   const struct endpoint *src, bool check_mac2, int64_t now)
{
	size_t off1 = len - 2 * WG_MAC_LEN, off2 = len - WG_MAC_LEN;
	uint8_t mac[WG_MAC_LEN], cookie[WG_COOKIE_LEN];
	enum wg_mac_result r = WG_MAC_INVALID;

	if (len != WG_INITIATION_LEN && len != WG_RESPONSE_LEN)
		return WG_MAC_INVALID;
	pthread_mutex_lock(&c->lock);
	wg_mac(mac, c->mac1_key, WG_HASH_LEN, msg, off1);
	if (!wg_equal(mac, msg + off1, WG_MAC_LEN))
		goto out;
	r = WG_MAC_VALID_NO_COOKIE;
	if (!check_mac2)
		goto out;
	make_cookie(c, cookie, src, now);
	wg_mac(mac, cookie, WG_COOKIE_LEN, msg, off2);
	if (wg_equal(mac, msg + off2, WG_MAC_LEN))
		r = WG_MAC_VALID_COOKIE;
out:
	pthread_mutex_unlock(&c->lock);
	return r;
}

void
wg_cookie_reply_create(struct wg_cookie_checker *c, uint8_t out[static WG_COOKIE_REPLY_LEN],
		       const uint8_t *msg, size_t len, const struct endpoint *src, int64_t now)
{
	uint8_t cookie[WG_COOKIE_LEN];

	memset(out, 0, WG_COOKIE_REPLY_LEN);
	out[0] = WG_MSG_COOKIE;
	memcpy(out + WG_COOKIE_OFF_RECEIVER, msg + WG_OFF_SENDER, 4);
	wg_random(out + WG_COOKIE_OFF_NONCE, WG_COOKIE_NONCE_LEN);
	pthread_mutex_lock(&c->lock);
	make_cookie(c, cookie, src, now);
	wg_xaead_seal(out + WG_COOKIE_OFF_COOKIE, cookie, WG_COOKIE_LEN, c->cookie_key,
		      out + WG_COOKIE_OFF_NONCE, msg + len - 2 * WG_MAC_LEN, WG_MAC_LEN);
	pthread_mutex_unlock(&c->lock);
	wg_wipe(cookie, sizeof(cookie));
}

int
wg_cookie_reply_consume(struct wg_cookie_maker *m,
			const uint8_t reply[static WG_COOKIE_REPLY_LEN], int64_t now)
{
	uint8_t cookie[WG_COOKIE_LEN];

	if (!m->have_last_mac1)
		return ERR_PROTOCOL;
	if (wg_xaead_open(cookie, reply + WG_COOKIE_OFF_COOKIE, WG_COOKIE_LEN + WG_TAG_LEN,
			  m->cookie_key, reply + WG_COOKIE_OFF_NONCE, m->last_mac1,
			  WG_MAC_LEN) != 0)
		return ERR_BAD_SIGNATURE;
	memcpy(m->cookie, cookie, WG_COOKIE_LEN);
	m->cookie_birth = now ? now : 1;
	m->have_last_mac1 = false;
	wg_wipe(cookie, sizeof(cookie));
	return 0;
}
