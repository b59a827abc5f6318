// SPDX-License-Identifier: MIT
/* client-agent/disco: seal/open round trips, authentication failures,
 * truncations and malformed payloads, and a known-answer vector computed
 * independently (tests/vectors/disco/kat.py: X25519 + HSalsa20 +
 * XSalsa20-Poly1305 written out from the specifications). */
#include <check.h>
#include <string.h>

#include <sodium.h>

#include "client-agent/disco.h"
#include "common/keys.h"

static uint8_t a_priv[KEY_LEN], a_pub[KEY_LEN], b_priv[KEY_LEN], b_pub[KEY_LEN];

static void
setup(void)
{
	ck_assert_int_ge(sodium_init(), 0);
	crypto_box_keypair(a_pub, a_priv);
	crypto_box_keypair(b_pub, b_priv);
}

static void
ep(struct endpoint *e, const char *s)
{
	ck_assert_int_eq(endpoint_parse(s, e), 0);
}

static void
sample(struct disco_msg *m, enum disco_type t)
{
	size_t i;

	memset(m, 0, sizeof(*m));
	m->type = t;
	for (i = 0; i < DISCO_TXID_LEN; i++)
		m->txid[i] = (uint8_t)(0x10 + i);
	memset(m->node_key, 0x42, KEY_LEN);
	ep(&m->src, "192.0.2.7:41641");
	ep(&m->endpoints[0], "198.51.100.1:1");
	ep(&m->endpoints[1], "[2001:db8::1]:65535");
	ep(&m->endpoints[2], "203.0.113.9:41641");
	m->n_endpoints = 3;
}

static void
check_same(const struct disco_msg *a, const struct disco_msg *b)
{
	size_t i;

	ck_assert_int_eq(a->type, b->type);
	switch (a->type) {
	case DISCO_PING:
		ck_assert_mem_eq(a->txid, b->txid, DISCO_TXID_LEN);
		ck_assert_mem_eq(a->node_key, b->node_key, KEY_LEN);
		break;
	case DISCO_PONG:
		ck_assert_mem_eq(a->txid, b->txid, DISCO_TXID_LEN);
		ck_assert_int_eq(a->src.addr.family, b->src.addr.family);
		ck_assert(addr_equal(&a->src.addr, &b->src.addr));
		ck_assert_int_eq(a->src.port, b->src.port);
		break;
	case DISCO_CALL_ME_MAYBE:
		ck_assert_uint_eq(a->n_endpoints, b->n_endpoints);
		for (i = 0; i < a->n_endpoints; i++) {
			ck_assert(addr_equal(&a->endpoints[i].addr, &b->endpoints[i].addr));
			ck_assert_int_eq(a->endpoints[i].port, b->endpoints[i].port);
		}
		break;
	}
}

START_TEST(test_round_trip)
{
	static const enum disco_type types[] = { DISCO_PING, DISCO_PONG, DISCO_CALL_ME_MAYBE };
	uint8_t pkt[DISCO_MAX_PACKET], sender[KEY_LEN];
	struct disco_msg m, got;
	size_t n, i;

	for (i = 0; i < 3; i++) {
		sample(&m, types[i]);
		ck_assert_int_eq(disco_seal(a_priv, a_pub, b_pub, &m, pkt, sizeof(pkt), &n), 0);
		ck_assert(disco_looks_like(pkt, n));
		ck_assert_int_eq(disco_open(b_priv, pkt, n, sender, &got), 0);
		ck_assert_mem_eq(sender, a_pub, KEY_LEN);
		check_same(&m, &got);
	}
	/* IPv6 pong source; an empty and a full call-me-maybe. */
	sample(&m, DISCO_PONG);
	ep(&m.src, "[2001:db8:1::5]:7");
	ck_assert_int_eq(disco_seal(a_priv, a_pub, b_pub, &m, pkt, sizeof(pkt), &n), 0);
	ck_assert_int_eq(disco_open(b_priv, pkt, n, sender, &got), 0);
	ck_assert_int_eq(got.src.addr.family, AF_INET6);
	check_same(&m, &got);
	sample(&m, DISCO_CALL_ME_MAYBE);
	m.n_endpoints = 0;
	ck_assert_int_eq(disco_seal(a_priv, a_pub, b_pub, &m, pkt, sizeof(pkt), &n), 0);
	ck_assert_int_eq(disco_open(b_priv, pkt, n, sender, &got), 0);
	ck_assert_uint_eq(got.n_endpoints, 0);
	for (i = 0; i < DISCO_MAX_ENDPOINTS; i++) {
		m.endpoints[i] = m.endpoints[0];
		m.endpoints[i].port = (uint16_t)(1000 + i);
	}
	m.n_endpoints = DISCO_MAX_ENDPOINTS;
	ck_assert_int_eq(disco_seal(a_priv, a_pub, b_pub, &m, pkt, sizeof(pkt), &n), 0);
	ck_assert_uint_le(n, DISCO_MAX_PACKET);
	ck_assert_int_eq(disco_open(b_priv, pkt, n, sender, &got), 0);
	check_same(&m, &got);
	/* Two seals of one message differ (random nonce). */
	{
		uint8_t p2[DISCO_MAX_PACKET];
		size_t n2;

		ck_assert_int_eq(disco_seal(a_priv, a_pub, b_pub, &m, p2, sizeof(p2), &n2), 0);
		ck_assert_uint_eq(n, n2);
		ck_assert(memcmp(pkt, p2, n) != 0);
	}
}
END_TEST

START_TEST(test_seal_rejects)
{
	uint8_t pkt[DISCO_MAX_PACKET];
	struct disco_msg m;
	size_t n = 12345;

	sample(&m, DISCO_CALL_ME_MAYBE);
	m.n_endpoints = DISCO_MAX_ENDPOINTS + 1;
	ck_assert_int_eq(disco_seal(a_priv, a_pub, b_pub, &m, pkt, sizeof(pkt), &n), ERR_INVALID);
	sample(&m, DISCO_PONG);
	m.src.addr.family = 0;
	ck_assert_int_eq(disco_seal(a_priv, a_pub, b_pub, &m, pkt, sizeof(pkt), &n), ERR_INVALID);
	sample(&m, DISCO_PING);
	m.type = (enum disco_type)9;
	ck_assert_int_eq(disco_seal(a_priv, a_pub, b_pub, &m, pkt, sizeof(pkt), &n), ERR_INVALID);
	sample(&m, DISCO_PING);
	ck_assert_int_eq(disco_seal(a_priv, a_pub, b_pub, &m, pkt, 100, &n), ERR_TOO_LARGE);
	ck_assert_uint_eq(n, 12345);
}
END_TEST

START_TEST(test_wrong_key)
{
	uint8_t pkt[DISCO_MAX_PACKET], sender[KEY_LEN], c_pub[KEY_LEN], c_priv[KEY_LEN];
	struct disco_msg m, got;
	size_t n, i;

	crypto_box_keypair(c_pub, c_priv);
	sample(&m, DISCO_PING);
	ck_assert_int_eq(disco_seal(a_priv, a_pub, b_pub, &m, pkt, sizeof(pkt), &n), 0);
	/* Opened by the wrong recipient. */
	memset(sender, 0xee, sizeof(sender));
	memset(&got, 0xee, sizeof(got));
	ck_assert_int_eq(disco_open(c_priv, pkt, n, sender, &got), ERR_BAD_SIGNATURE);
	ck_assert_uint_eq(sender[0], 0xee);	/* out-parameters untouched */
	ck_assert_uint_eq(got.txid[0], 0xee);
	/* A claimed sender that did not seal it. */
	memcpy(pkt + DISCO_MAGIC_LEN, c_pub, KEY_LEN);
	ck_assert_int_eq(disco_open(b_priv, pkt, n, sender, &got), ERR_BAD_SIGNATURE);
	memcpy(pkt + DISCO_MAGIC_LEN, a_pub, KEY_LEN);
	/* Any flipped bit after the magic. */
	for (i = DISCO_MAGIC_LEN; i < n; i++) {
		pkt[i] ^= 0x01;
		ck_assert_int_eq(disco_open(b_priv, pkt, n, sender, &got), ERR_BAD_SIGNATURE);
		pkt[i] ^= 0x01;
	}
	ck_assert_int_eq(disco_open(b_priv, pkt, n, sender, &got), 0);
	/* A low-order (all-zero) sender key. */
	memset(pkt + DISCO_MAGIC_LEN, 0, KEY_LEN);
	ck_assert_int_eq(disco_open(b_priv, pkt, n, sender, &got), ERR_BAD_SIGNATURE);
}
END_TEST

/* Payload lengths a valid message can have (see docs/disco.md). */
static bool
possible_payload(size_t n)
{
	return n == 46 || n == 32 || (n >= 2 && n <= 2 + 16 * 18 && (n - 2) % 18 == 0);
}

START_TEST(test_truncations)
{
	static const enum disco_type types[] = { DISCO_PING, DISCO_PONG, DISCO_CALL_ME_MAYBE };
	uint8_t pkt[DISCO_MAX_PACKET + 8], sender[KEY_LEN];
	struct disco_msg m, got;
	size_t n, len, t;

	for (t = 0; t < 3; t++) {
		sample(&m, types[t]);
		ck_assert_int_eq(disco_seal(a_priv, a_pub, b_pub, &m, pkt, sizeof(pkt), &n), 0);
		for (len = 0; len < n; len++) {
			int r = disco_open(b_priv, pkt, len, sender, &got);

			/* Malformed, unless the cut length is one a valid
			 * message could have: then it fails to authenticate. */
			if (len >= DISCO_HEADER_LEN + DISCO_MAC_LEN &&
			    possible_payload(len - DISCO_HEADER_LEN - DISCO_MAC_LEN))
				ck_assert_int_eq(r, ERR_BAD_SIGNATURE);
			else
				ck_assert_msg(r == ERR_PROTOCOL, "len %zu: %d", len, r);
		}
		/* One byte more is malformed as well. */
		pkt[n] = 0;
		ck_assert_int_eq(disco_open(b_priv, pkt, n + 1, sender, &got), ERR_PROTOCOL);
	}
	ck_assert_int_eq(disco_open(b_priv, NULL, 0, sender, &got), ERR_PROTOCOL);
	memset(pkt, 0, sizeof(pkt));
	ck_assert_int_eq(disco_open(b_priv, pkt, sizeof(pkt), sender, &got), ERR_PROTOCOL);
}
END_TEST

/* Seals a raw payload (bypassing the encoder) so the parser sees it. */
static size_t
seal_raw(const uint8_t *pt, size_t ptlen, uint8_t *pkt)
{
	static const uint8_t magic[] = { 'W', 'M', 0xf0, 0x9f, 0x92, 0xac };

	memcpy(pkt, magic, 6);
	memcpy(pkt + 6, a_pub, KEY_LEN);
	randombytes_buf(pkt + 38, 24);
	ck_assert_int_eq(crypto_box_easy(pkt + DISCO_HEADER_LEN, pt, ptlen, pkt + 38, b_pub,
					 a_priv), 0);
	return DISCO_HEADER_LEN + DISCO_MAC_LEN + ptlen;
}

START_TEST(test_payload_truncations)
{
	uint8_t pt[400], pkt[DISCO_MAX_PACKET + 64], sender[KEY_LEN];
	struct disco_msg got;
	size_t full[3] = { 46, 32, 2 + 3 * 18 }, t, len, n;

	memset(pt, 0x33, sizeof(pt));
	for (t = 0; t < 3; t++) {
		pt[0] = (uint8_t)(t + 1);
		pt[1] = 0;
		n = seal_raw(pt, full[t], pkt);
		ck_assert_int_eq(disco_open(b_priv, pkt, n, sender, &got), 0);
		ck_assert_int_eq(got.type, (int)t + 1);
		/* Every authentic but truncated (or extended) payload. */
		for (len = 0; len <= full[t] + 20; len++) {
			if (len == full[t] || (t == 2 && len >= 2 && (len - 2) % 18 == 0))
				continue;
			n = seal_raw(pt, len, pkt);
			ck_assert_msg(disco_open(b_priv, pkt, n, sender, &got) == ERR_PROTOCOL,
				      "type %zu len %zu", t + 1, len);
		}
	}
	/* Wrong version, unknown types. */
	pt[0] = DISCO_PING;
	pt[1] = 1;
	n = seal_raw(pt, 46, pkt);
	ck_assert_int_eq(disco_open(b_priv, pkt, n, sender, &got), ERR_PROTOCOL);
	pt[1] = 0;
	pt[0] = 0;
	n = seal_raw(pt, 20, pkt);
	ck_assert_int_eq(disco_open(b_priv, pkt, n, sender, &got), ERR_PROTOCOL);
	pt[0] = 4;
	n = seal_raw(pt, 20, pkt);
	ck_assert_int_eq(disco_open(b_priv, pkt, n, sender, &got), ERR_PROTOCOL);
	/* 17 endpoints: over the limit, and over DISCO_MAX_PACKET. */
	pt[0] = DISCO_CALL_ME_MAYBE;
	n = seal_raw(pt, 2 + 17 * 18, pkt);
	ck_assert_int_eq(disco_open(b_priv, pkt, n, sender, &got), ERR_PROTOCOL);
}
END_TEST

static void
unhex(uint8_t *out, size_t n, const char *s)
{
	ck_assert_uint_eq(strlen(s), 2 * n);
	ck_assert_int_eq(hex_decode(out, n, s, 2 * n), 0);
}

/* Keys a = 01..20, b = 21..40, nonce = 64..7b; ping txid a0..ab, node key 55*32. */
static const char kat_pkt[] =
	"574df09f92ac07a37cbc142093c8b755dc1b10e86cb426374ad16aa853ed0bdfc0b2b86d1c7c"
	"6465666768696a6b6c6d6e6f707172737475767778797a7b8b79465186e5e9f996449249f454"
	"0145ff350f53cf7a056525e36e61c8998a457762ed9348f119071efd6a7692ed0864a964cd20"
	"7a433f7398f030ed1a55";

START_TEST(test_known_answer)
{
	uint8_t kap[KEY_LEN], kapub[KEY_LEN], kbp[KEY_LEN], kbpub[KEY_LEN], nonce[24];
	uint8_t want[124], pkt[DISCO_MAX_PACKET], sender[KEY_LEN];
	struct disco_msg m, got;
	size_t i, n;

	for (i = 0; i < KEY_LEN; i++) {
		kap[i] = (uint8_t)(1 + i);
		kbp[i] = (uint8_t)(33 + i);
	}
	for (i = 0; i < 24; i++)
		nonce[i] = (uint8_t)(100 + i);
	unhex(kapub, KEY_LEN, "07a37cbc142093c8b755dc1b10e86cb426374ad16aa853ed0bdfc0b2b86d1c7c");
	unhex(kbpub, KEY_LEN, "5869aff450549732cbaaed5e5df9b30a6da31cb0e5742bad5ad4a1a768f1a67b");
	{
		uint8_t p[KEY_LEN];

		ck_assert_int_eq(crypto_scalarmult_base(p, kap), 0);
		ck_assert_mem_eq(p, kapub, KEY_LEN);
	}
	unhex(want, sizeof(want), kat_pkt);
	memset(&m, 0, sizeof(m));
	m.type = DISCO_PING;
	for (i = 0; i < DISCO_TXID_LEN; i++)
		m.txid[i] = (uint8_t)(0xa0 + i);
	memset(m.node_key, 0x55, KEY_LEN);
	ck_assert_int_eq(disco_seal_nonce(kap, kapub, kbpub, nonce, &m, pkt, sizeof(pkt), &n), 0);
	ck_assert_uint_eq(n, sizeof(want));
	ck_assert_mem_eq(pkt, want, n);
	ck_assert_int_eq(disco_open(kbp, want, sizeof(want), sender, &got), 0);
	ck_assert_mem_eq(sender, kapub, KEY_LEN);
	check_same(&m, &got);
}
END_TEST

START_TEST(test_looks_like)
{
	uint8_t pkt[DISCO_MAX_PACKET];
	struct disco_msg m;
	size_t n;

	sample(&m, DISCO_PONG);
	ck_assert_int_eq(disco_seal(a_priv, a_pub, b_pub, &m, pkt, sizeof(pkt), &n), 0);
	ck_assert(disco_looks_like(pkt, n));
	ck_assert(!disco_looks_like(pkt, DISCO_HEADER_LEN + DISCO_MAC_LEN + 1));
	ck_assert(!disco_looks_like(NULL, 0));
	pkt[0] = 1;		/* WireGuard handshake initiation */
	ck_assert(!disco_looks_like(pkt, n));
	pkt[0] = 0;		/* STUN */
	ck_assert(!disco_looks_like(pkt, n));
}
END_TEST

START_TEST(test_endpoint_wire)
{
	uint8_t w[DISCO_EP_LEN];
	struct endpoint e, g;

	ep(&e, "192.0.2.1:41641");
	disco_ep_put(w, &e);
	ck_assert_uint_eq(w[10], 0xff);
	ck_assert_uint_eq(w[11], 0xff);
	ck_assert_uint_eq(w[12], 192);
	ck_assert_uint_eq(w[16], 41641 >> 8);
	ck_assert_uint_eq(w[17], 41641 & 0xff);
	disco_ep_get(w, &g);
	ck_assert_int_eq(g.addr.family, AF_INET);
	ck_assert(addr_equal(&e.addr, &g.addr));
	ck_assert_int_eq(g.port, 41641);
}
END_TEST

Suite *
disco_suite(void)
{
	Suite *s = suite_create("disco");
	TCase *tc = tcase_create("core");

	tcase_add_checked_fixture(tc, setup, NULL);
	tcase_add_test(tc, test_round_trip);
	tcase_add_test(tc, test_seal_rejects);
	tcase_add_test(tc, test_wrong_key);
	tcase_add_test(tc, test_truncations);
	tcase_add_test(tc, test_payload_truncations);
	tcase_add_test(tc, test_known_answer);
	tcase_add_test(tc, test_looks_like);
	tcase_add_test(tc, test_endpoint_wire);
	suite_add_tcase(s, tc);
	return s;
}
