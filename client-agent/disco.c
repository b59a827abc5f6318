/* SPDX-License-Identifier: MIT */
/*
 * Disco message codec: builds and parses ping, pong and call-me-maybe and
 * seals them with crypto_box (X25519 + XSalsa20-Poly1305) between the two
 * nodes' disco keys. Parsing is strict: exact lengths per type, version 0
 * only, and every length is checked before a byte is read. The ciphertext
 * length is checked against the lengths a valid message can have before any
 * public-key work is done, so junk costs almost nothing.
 */
#include "client-agent/disco.h"

#include <pthread.h>
#include <string.h>

#include <sodium.h>

#include "common/util.h"

static const uint8_t magic[DISCO_MAGIC_LEN] = { 'W', 'M', 0xf0, 0x9f, 0x92, 0xac };

enum {
	OFF_PUB = DISCO_MAGIC_LEN,
	OFF_NONCE = DISCO_MAGIC_LEN + KEY_LEN,
	OFF_BOX = DISCO_HEADER_LEN,
	PAYLOAD_HDR = 2,			/* type, version */
	PING_BODY = DISCO_TXID_LEN + KEY_LEN,
	PONG_BODY = DISCO_TXID_LEN + DISCO_EP_LEN,
	MAX_PAYLOAD = PAYLOAD_HDR + DISCO_MAX_ENDPOINTS * DISCO_EP_LEN,
	MIN_PACKET = DISCO_HEADER_LEN + DISCO_MAC_LEN + PAYLOAD_HDR,
};

_Static_assert(DISCO_HEADER_LEN + DISCO_MAC_LEN + MAX_PAYLOAD <= DISCO_MAX_PACKET,
	       "largest disco message must fit DISCO_MAX_PACKET");
_Static_assert(crypto_box_NONCEBYTES == DISCO_NONCE_LEN, "nonce size");
_Static_assert(crypto_box_MACBYTES == DISCO_MAC_LEN, "mac size");
_Static_assert(crypto_box_PUBLICKEYBYTES == KEY_LEN, "key size");

static pthread_once_t sodium_once = PTHREAD_ONCE_INIT;
static int sodium_ok;

static void
init_sodium(void)
{
	sodium_ok = sodium_init() >= 0;
}

static bool
sodium_ready(void)
{
	return pthread_once(&sodium_once, init_sodium) == 0 && sodium_ok;
}

bool
disco_looks_like(const uint8_t *pkt, size_t n)
{
	return pkt != NULL && n >= MIN_PACKET && memcmp(pkt, magic, DISCO_MAGIC_LEN) == 0;
}

void
disco_ep_put(uint8_t out[static DISCO_EP_LEN], const struct endpoint *e)
{
	memset(out, 0, DISCO_EP_LEN);
	if (e->addr.family == AF_INET) {
		out[10] = 0xff;
		out[11] = 0xff;
		memcpy(out + 12, e->addr.b, 4);
	} else {
		memcpy(out, e->addr.b, 16);
	}
	out[16] = (uint8_t)(e->port >> 8);
	out[17] = (uint8_t)e->port;
}

void
disco_ep_get(const uint8_t in[static DISCO_EP_LEN], struct endpoint *e)
{
	static const uint8_t v4mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };

	memset(e, 0, sizeof(*e));
	if (memcmp(in, v4mapped, sizeof(v4mapped)) == 0) {
		e->addr.family = AF_INET;
		memcpy(e->addr.b, in + 12, 4);
	} else {
		e->addr.family = AF_INET6;
		memcpy(e->addr.b, in, 16);
	}
	e->port = (uint16_t)(in[16] << 8 | in[17]);
}

static bool
ep_family_ok(const struct endpoint *e)
{
	return e->addr.family == AF_INET || e->addr.family == AF_INET6;
}

/* Writes the plaintext payload; returns its length or a negative error. */
static int
build_payload(const struct disco_msg *m, uint8_t out[static MAX_PAYLOAD])
{
	size_t n = PAYLOAD_HDR, i;

	out[0] = (uint8_t)m->type;
	out[1] = DISCO_VERSION;
	switch (m->type) {
	case DISCO_PING:
		memcpy(out + n, m->txid, DISCO_TXID_LEN);
		n += DISCO_TXID_LEN;
		memcpy(out + n, m->node_key, KEY_LEN);
		n += KEY_LEN;
		break;
	case DISCO_PONG:
		if (!ep_family_ok(&m->src))
			return ERR_INVALID;
		memcpy(out + n, m->txid, DISCO_TXID_LEN);
		n += DISCO_TXID_LEN;
		disco_ep_put(out + n, &m->src);
		n += DISCO_EP_LEN;
		break;
	case DISCO_CALL_ME_MAYBE:
		if (m->n_endpoints > DISCO_MAX_ENDPOINTS)
			return ERR_INVALID;
		for (i = 0; i < m->n_endpoints; i++) {
			if (!ep_family_ok(&m->endpoints[i]))
				return ERR_INVALID;
			disco_ep_put(out + n, &m->endpoints[i]);
			n += DISCO_EP_LEN;
		}
		break;
	default:
		return ERR_INVALID;
	}
	return (int)n;
}

int
disco_seal_nonce(const uint8_t my_priv[static KEY_LEN], const uint8_t my_pub[static KEY_LEN],
		 const uint8_t peer_pub[static KEY_LEN],
		 const uint8_t nonce[static DISCO_NONCE_LEN], const struct disco_msg *m,
		 uint8_t *out, size_t cap, size_t *out_len)
{
	uint8_t pt[MAX_PAYLOAD];
	size_t total;
	int n, r = ERR_INTERNAL;

	if (!sodium_ready())
		return ERR_INTERNAL;
	if ((n = build_payload(m, pt)) < 0)
		return n;
	total = DISCO_HEADER_LEN + DISCO_MAC_LEN + (size_t)n;
	if (out == NULL || cap < total) {
		r = ERR_TOO_LARGE;
		goto out;
	}
	memcpy(out, magic, DISCO_MAGIC_LEN);
	memcpy(out + OFF_PUB, my_pub, KEY_LEN);
	memcpy(out + OFF_NONCE, nonce, DISCO_NONCE_LEN);
	if (crypto_box_easy(out + OFF_BOX, pt, (unsigned long long)n, nonce, peer_pub,
			    my_priv) != 0)
		goto out;	/* e.g. a low-order peer key */
	*out_len = total;
	r = 0;
out:
	wipe(pt, sizeof(pt));
	return r;
}

int
disco_seal(const uint8_t my_priv[static KEY_LEN], const uint8_t my_pub[static KEY_LEN],
	   const uint8_t peer_pub[static KEY_LEN], const struct disco_msg *m,
	   uint8_t *out, size_t cap, size_t *out_len)
{
	uint8_t nonce[DISCO_NONCE_LEN];

	if (!sodium_ready())
		return ERR_INTERNAL;
	random_bytes(nonce, sizeof(nonce));
	return disco_seal_nonce(my_priv, my_pub, peer_pub, nonce, m, out, cap, out_len);
}

/* Payload lengths a valid message can have (ping, pong, call-me-maybe with
 * 0..DISCO_MAX_ENDPOINTS endpoints); the sets do not overlap. */
static bool
payload_len_possible(size_t n)
{
	if (n == PAYLOAD_HDR + PING_BODY || n == PAYLOAD_HDR + PONG_BODY)
		return true;
	return n >= PAYLOAD_HDR && n <= MAX_PAYLOAD && (n - PAYLOAD_HDR) % DISCO_EP_LEN == 0;
}

static int
parse_payload(const uint8_t *pt, size_t n, struct disco_msg *m)
{
	size_t body = n - PAYLOAD_HDR, i;
	const uint8_t *b = pt + PAYLOAD_HDR;

	if (n < PAYLOAD_HDR || pt[1] != DISCO_VERSION)
		return ERR_PROTOCOL;
	memset(m, 0, sizeof(*m));
	switch (pt[0]) {
	case DISCO_PING:
		if (body != PING_BODY)
			return ERR_PROTOCOL;
		m->type = DISCO_PING;
		memcpy(m->txid, b, DISCO_TXID_LEN);
		memcpy(m->node_key, b + DISCO_TXID_LEN, KEY_LEN);
		return 0;
	case DISCO_PONG:
		if (body != PONG_BODY)
			return ERR_PROTOCOL;
		m->type = DISCO_PONG;
		memcpy(m->txid, b, DISCO_TXID_LEN);
		disco_ep_get(b + DISCO_TXID_LEN, &m->src);
		return 0;
	case DISCO_CALL_ME_MAYBE:
		if (body % DISCO_EP_LEN != 0 || body / DISCO_EP_LEN > DISCO_MAX_ENDPOINTS)
			return ERR_PROTOCOL;
		m->type = DISCO_CALL_ME_MAYBE;
		m->n_endpoints = body / DISCO_EP_LEN;
		for (i = 0; i < m->n_endpoints; i++)
			disco_ep_get(b + i * DISCO_EP_LEN, &m->endpoints[i]);
		return 0;
	default:
		return ERR_PROTOCOL;
	}
}

int
disco_open(const uint8_t my_priv[static KEY_LEN], const uint8_t *pkt, size_t n,
	   uint8_t sender_pub[static KEY_LEN], struct disco_msg *m)
{
	uint8_t pt[MAX_PAYLOAD];
	struct disco_msg tmp;
	size_t ptlen;
	int r;

	if (!disco_looks_like(pkt, n) || n > DISCO_MAX_PACKET)
		return ERR_PROTOCOL;
	ptlen = n - DISCO_HEADER_LEN - DISCO_MAC_LEN;
	if (!payload_len_possible(ptlen))
		return ERR_PROTOCOL;
	if (!sodium_ready())
		return ERR_INTERNAL;
	if (crypto_box_open_easy(pt, pkt + OFF_BOX, ptlen + DISCO_MAC_LEN, pkt + OFF_NONCE,
				 pkt + OFF_PUB, my_priv) != 0) {
		r = ERR_BAD_SIGNATURE;
		goto out;
	}
	if ((r = parse_payload(pt, ptlen, &tmp)) != 0)
		goto out;
	memcpy(sender_pub, pkt + OFF_PUB, KEY_LEN);
	*m = tmp;
out:
	wipe(pt, sizeof(pt));
	return r;
}
