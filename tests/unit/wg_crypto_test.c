// SPDX-License-Identifier: MIT
/*
 * WireGuard engine crypto and protocol pieces against published vectors:
 * the Noise constants, wireguard-go's KDF vectors, RFC 8439 2.8.2, the
 * kernel's anti-replay counter sequence, keyed BLAKE2s-128 (not truncation),
 * a full handshake transcript between two of our instances with fixed keys,
 * and the cookie reply round trip.
 */
#include <check.h>
#include <string.h>

#include "client-agent/wg/cookie.h"
#include "client-agent/wg/crypto.h"
#include "client-agent/wg/noise.h"
#include "client-agent/wg/replay.h"
#include "common/keys.h"

static void
unhex(uint8_t *out, size_t n, const char *s)
{
	ck_assert_int_eq(strlen(s), 2 * n);
	ck_assert_int_eq(hex_decode(out, n, s, strlen(s)), 0);
}

static void
setup(void)
{
	ck_assert_int_eq(wg_crypto_init(), 0);
}

START_TEST(noise_constants)
{
	static const char construction[] = "Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s";
	static const char identifier[] = "WireGuard v1 zx2c4 Jason@zx2c4.com";
	uint8_t ci[32], hi[32], want[32];

	wg_hash3(ci, (const uint8_t *)construction, strlen(construction), NULL, 0, NULL, 0);
	unhex(want, 32, "60e26daef327efc02ec335e2a025d2d016eb4206f87277f52d38d1988b78cd36");
	ck_assert_mem_eq(ci, want, 32);
	wg_hash3(hi, ci, 32, (const uint8_t *)identifier, strlen(identifier), NULL, 0);
	unhex(want, 32, "2211b361081ac566691243db458ad5322d9c6c662293e8b70ee19c65ba079ef3");
	ck_assert_mem_eq(hi, want, 32);
}
END_TEST

/* The KDF vectors of wireguard-go's device/kdf_test.go (HMAC-BLAKE2s). */
START_TEST(kdf_vectors)
{
	static const struct {
		const char *key, *input, *t0, *t1, *t2;
	} v[] = {
		{ "746573742d6b6579", "746573742d696e707574",
		  "6f0e5ad38daba1bea8a0d213688736f19763239305e0f58aba697f9ffc41c633",
		  "df1194df20802a4fe594cde27e92991c8cae66c366e8106aaa937a55fa371e8a",
		  "fac6e2745a325f5dc5d11a5b165aad08b0ada28e7b4e666b7c077934a4d76c24" },
		{ "776972656775617264", "776972656775617264",
		  "491d43bbfdaa8750aaf535e334ecbfe5129967cd64635101c566d4caefda96e8",
		  "1e71a379baefd8a79aa4662212fcafe19a23e2b609a3db7d6bcba8f560e3d25f",
		  "31e1ae48bddfbe5de38f295e5452b1909a1b4e38e183926af3780b0c1e1f0160" },
		{ "", "",
		  "8387b46bf43eccfcf349552a095d8315c4055beb90208fb1be23b894bc2ed5d0",
		  "58a0e5f6faefccf4807bff1f05fa8a9217945762040bcec2f4b4a62bdfe0e86e",
		  "0ce6ea98ec548f8e281e93e32db65621c45eb18dc6f0a7ad94178610a2f7338e" },
	};
	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		uint8_t key[16], in[16], t[3][32], w[32];
		size_t kl = strlen(v[i].key) / 2, il = strlen(v[i].input) / 2;

		unhex(key, kl, v[i].key);
		unhex(in, il, v[i].input);
		wg_kdf(t[0], t[1], t[2], key, kl, in, il);
		unhex(w, 32, v[i].t0);
		ck_assert_mem_eq(t[0], w, 32);
		unhex(w, 32, v[i].t1);
		ck_assert_mem_eq(t[1], w, 32);
		unhex(w, 32, v[i].t2);
		ck_assert_mem_eq(t[2], w, 32);
	}
}
END_TEST

/* RFC 8439 section 2.8.2 */
START_TEST(rfc8439_aead)
{
	static const char pt[] = "Ladies and Gentlemen of the class of '99: If I could offer you "
				 "only one tip for the future, sunscreen would be it.";
	uint8_t key[32], nonce[12], aad[12], want[114 + 16], out[114 + 16], back[114];
	struct wg_aead *a = wg_aead_new();

	ck_assert_ptr_nonnull(a);
	for (int i = 0; i < 32; i++)
		key[i] = (uint8_t)(0x80 + i);
	unhex(nonce, 12, "070000004041424344454647");
	unhex(aad, 12, "50515253c0c1c2c3c4c5c6c7");
	unhex(want, sizeof(want),
	      "d31a8d34648e60db7b86afbc53ef7ec2a4aded51296e08fea9e2b5a736ee62d6"
	      "3dbea45e8ca9671282fafb69da92728b1a71de0a9e060b2905d6a5b67ecd3b36"
	      "92ddbd7f2d778b8c9803aee328091b58fab324e4fad675945585808b4831d7bc"
	      "3ff4def08e4b7a9de576d26586cec64b6116"
	      "1ae10b594f09e26a7e902ecbd0600691");
	ck_assert_int_eq(wg_aead_seal_nonce(a, out, (const uint8_t *)pt, 114, key, nonce, aad, 12), 0);
	ck_assert_mem_eq(out, want, sizeof(want));
	/* second use of the cached key must give the same answer */
	ck_assert_int_eq(wg_aead_seal_nonce(a, out, (const uint8_t *)pt, 114, key, nonce, aad, 12), 0);
	ck_assert_mem_eq(out, want, sizeof(want));
	ck_assert_int_eq(wg_aead_open_nonce(a, back, out, sizeof(out), key, nonce, aad, 12), 0);
	ck_assert_mem_eq(back, pt, 114);
	out[3] ^= 1;
	ck_assert_int_eq(wg_aead_open_nonce(a, back, out, sizeof(out), key, nonce, aad, 12),
			 ERR_BAD_SIGNATURE);
	/* libsodium one-shot agrees with OpenSSL on the WireGuard nonce layout */
	ck_assert_int_eq(wg_aead_seal(a, out, (const uint8_t *)pt, 114, key, 7, NULL, 0), 0);
	memcpy(want, out, sizeof(out));
	wg_aead_seal_once(out, (const uint8_t *)pt, 114, key, 7, NULL, 0);
	ck_assert_mem_eq(out, want, sizeof(out));
	wg_aead_free(a);
}
END_TEST

/* The AEAD/XAEAD vectors used by WireGuard implementations' tests: key
 * "0123456789abcdef0123456789abcdef", ad "fedcba9876543210", "foobar". */
START_TEST(aead_counter_and_xaead)
{
	const uint8_t *key = (const uint8_t *)"0123456789abcdef0123456789abcdef";
	const uint8_t *ad = (const uint8_t *)"fedcba9876543210";
	uint8_t out[22], want[22], back[6];

	wg_aead_seal_once(out, (const uint8_t *)"foobar", 6, key, 42, ad, 16);
	unhex(want, 22, "3b97d40eb9a5a78385054b7be7027c9661a2031f4f91");
	ck_assert_mem_eq(out, want, 22);
	ck_assert_int_eq(wg_aead_open_once(back, out, 22, key, 42, ad, 16), 0);
	ck_assert_mem_eq(back, "foobar", 6);
	wg_xaead_seal(out, (const uint8_t *)"foobar", 6, key,
		      (const uint8_t *)"0123456789abcdef01234567", ad, 16);
	unhex(want, 22, "2f8312b423a80a32585bcf059fbcfeee8063d258f030");
	ck_assert_mem_eq(out, want, 22);
	ck_assert_int_eq(wg_xaead_open(back, out, 22, key,
				       (const uint8_t *)"0123456789abcdef01234567", ad, 16), 0);
	out[0] ^= 1;
	ck_assert_int_ne(wg_xaead_open(back, out, 22, key,
				       (const uint8_t *)"0123456789abcdef01234567", ad, 16), 0);
}
END_TEST

START_TEST(mac_is_blake2s_128)
{
	uint8_t key[32], mac[16], want[16];

	/* Python: hashlib.blake2s(b"abc", key=b"\x42"*32, digest_size=16); the
	 * 256-bit digest truncated would start f35e555a. */
	memset(key, 0x42, sizeof(key));
	wg_mac(mac, key, 32, (const uint8_t *)"abc", 3);
	unhex(want, 16, "d3ba79de9002265716b213296de1ecd0");
	ck_assert_mem_eq(mac, want, 16);
}
END_TEST

/* Linux drivers/net/wireguard/selftest/counter.c */
START_TEST(replay_counter_vectors)
{
	struct wg_replay r;
	const uint64_t L = WG_COUNTER_WINDOW + 1, R = WG_REJECT_AFTER_MESSAGES;
#define T(n, v) ck_assert_msg(wg_replay_check(&r, (n)) == (v), "counter %llu", \
			      (unsigned long long)(n))
	wg_replay_init(&r);
	T(0, true); T(1, true); T(1, false); T(9, true); T(8, true); T(7, true); T(7, false);
	T(L, true); T(L - 1, true); T(L - 1, false); T(L - 2, true); T(2, true); T(2, false);
	T(L + 16, true); T(3, false); T(L + 16, false); T(L * 4, true);
	T(L * 4 - (L - 1), true); T(10, false); T(L * 4 - L, false); T(L * 4 - (L + 1), false);
	T(L * 4 - (L - 2), true); T(L * 4 + 1 - L, false); T(0, false);
	T(R, false); T(R - 1, true); T(R, false); T(R - 1, false); T(R - 2, true);
	T(R + 1, false); T(R + 2, false); T(R - 2, false); T(R - 3, true); T(0, false);

	wg_replay_init(&r);
	for (uint64_t i = 1; i <= WG_COUNTER_WINDOW; i++)
		T(i, true);
	T(0, true);
	T(0, false);

	wg_replay_init(&r);
	for (uint64_t i = 2; i <= WG_COUNTER_WINDOW + 1; i++)
		T(i, true);
	T(1, true);
	T(0, false);

	wg_replay_init(&r);
	for (int64_t i = WG_COUNTER_WINDOW + 1; i-- > 0;)
		T((uint64_t)i, true);

	wg_replay_init(&r);
	for (int64_t i = WG_COUNTER_WINDOW + 2; i-- > 1;)
		T((uint64_t)i, true);
	T(0, false);

	wg_replay_init(&r);
	for (int64_t i = WG_COUNTER_WINDOW + 1; i-- > 1;)
		T((uint64_t)i, true);
	T(WG_COUNTER_WINDOW + 1, true);
	T(0, false);

	wg_replay_init(&r);
	for (int64_t i = WG_COUNTER_WINDOW + 1; i-- > 1;)
		T((uint64_t)i, true);
	T(0, true);
	T(WG_COUNTER_WINDOW + 1, true);
#undef T
}
END_TEST

static void
make_identity(struct wg_static_identity *id, uint8_t seed)
{
	memset(id, 0, sizeof(*id));
	memset(id->priv, seed, 32);
	id->priv[0] &= 248;
	id->priv[31] = (id->priv[31] & 127) | 64;
	wg_pubkey(id->pub, id->priv);
	id->has = true;
}

/* Two of our instances, fixed static and ephemeral keys and timestamp: the
 * transcript is deterministic; both ends must derive mirrored keys, and the
 * messages must be stable (regression against tests/vectors/wg). */
START_TEST(handshake_transcript)
{
	struct wg_static_identity a, b;
	struct wg_handshake ha, hb;
	struct wg_init_result res;
	struct wg_keypair ka, kb;
	uint8_t m1[WG_INITIATION_LEN], m1b[WG_INITIATION_LEN], m2[WG_RESPONSE_LEN];
	uint8_t tai[12], ea[32], eb[32], psk[32];

	make_identity(&a, 0x11);
	make_identity(&b, 0x22);
	memset(ea, 0x33, 32);
	memset(eb, 0x44, 32);
	memset(psk, 0x55, 32);
	memset(tai, 0, 12);
	tai[0] = 0x40;
	tai[7] = 0x0a;
	memset(&ha, 0, sizeof(ha));
	memset(&hb, 0, sizeof(hb));
	memcpy(ha.remote_static, b.pub, 32);
	memcpy(hb.remote_static, a.pub, 32);
	memcpy(ha.psk, psk, 32);
	memcpy(hb.psk, psk, 32);
	ha.local_index = 0x01020304;
	hb.local_index = 0x0a0b0c0d;

	ck_assert_int_eq(wg_noise_create_initiation(&ha, &a, tai, ea, m1), 0);
	ck_assert_int_eq(m1[0], 1);
	ck_assert_int_eq(wg_get_le32(m1 + 4), 0x01020304);
	/* same inputs, same bytes */
	{
		struct wg_handshake h2 = ha;

		ck_assert_int_eq(wg_noise_create_initiation(&h2, &a, tai, ea, m1b), 0);
		ck_assert_mem_eq(m1, m1b, WG_INITIATION_LEN);
	}
	/* the responder with another static key cannot read it */
	{
		struct wg_static_identity c;

		make_identity(&c, 0x66);
		ck_assert_int_ne(wg_noise_consume_initiation(&c, m1, &res), 0);
	}
	ck_assert_int_eq(wg_noise_consume_initiation(&b, m1, &res), 0);
	ck_assert_mem_eq(res.remote_static, a.pub, 32);
	ck_assert_mem_eq(res.timestamp, tai, 12);
	ck_assert_int_eq(wg_noise_accept_initiation(&hb, &res, 1000 * WG_NS_PER_MS), 0);
	/* same timestamp again: replay */
	ck_assert_int_eq(wg_noise_accept_initiation(&hb, &res, 2000 * WG_NS_PER_MS), ERR_REPLAY);
	/* newer timestamp but within 20 ms: flood */
	res.timestamp[11] = 1;
	ck_assert_int_eq(wg_noise_accept_initiation(&hb, &res, 1010 * WG_NS_PER_MS), ERR_STALE);
	res.timestamp[11] = 0;

	ck_assert_int_eq(wg_noise_create_response(&hb, eb, m2), 0);
	ck_assert_int_eq(wg_get_le32(m2 + 8), 0x01020304);
	/* a tampered response leaves the initiator's handshake intact */
	m2[50] ^= 1;
	ck_assert_int_ne(wg_noise_consume_response(&ha, &a, m2), 0);
	ck_assert_int_eq(ha.state, WG_HS_CREATED_INITIATION);
	m2[50] ^= 1;
	ck_assert_int_eq(wg_noise_consume_response(&ha, &a, m2), 0);
	ck_assert_int_eq(ha.remote_index, 0x0a0b0c0d);
	ck_assert_int_eq(wg_noise_derive_keypair(&ha, &ka, 5), 0);
	ck_assert_int_eq(wg_noise_derive_keypair(&hb, &kb, 5), 0);
	ck_assert(ka.initiator);
	ck_assert(!kb.initiator);
	ck_assert_mem_eq(ka.send_key, kb.recv_key, 32);
	ck_assert_mem_eq(ka.recv_key, kb.send_key, 32);
	ck_assert_mem_ne(ka.send_key, ka.recv_key, 32);
	ck_assert_int_eq(ka.remote_index, kb.local_index);
	ck_assert_int_eq(kb.remote_index, ka.local_index);

	/* transport: 0x41.. padded to 16, counter 0 */
	{
		struct wg_aead *x = wg_aead_new();
		uint8_t pt[16] = "ping", ct[32], back[16];

		ck_assert_int_eq(wg_aead_seal(x, ct, pt, 16, ka.send_key, 0, NULL, 0), 0);
		ck_assert_int_eq(wg_aead_open(x, back, ct, 32, kb.recv_key, 0, NULL, 0), 0);
		ck_assert_mem_eq(back, pt, 16);
		ck_assert_int_ne(wg_aead_open(x, back, ct, 32, kb.recv_key, 1, NULL, 0), 0);
		wg_aead_free(x);
	}
	pthread_mutex_destroy(&ka.recv_lock);
	pthread_mutex_destroy(&kb.recv_lock);
	/* PSK mismatch: the response does not authenticate */
	{
		struct wg_handshake h1, h2;

		memset(&h1, 0, sizeof(h1));
		memset(&h2, 0, sizeof(h2));
		memcpy(h1.remote_static, b.pub, 32);
		memcpy(h2.remote_static, a.pub, 32);
		h2.psk[0] = 1;
		ck_assert_int_eq(wg_noise_create_initiation(&h1, &a, tai, NULL, m1), 0);
		ck_assert_int_eq(wg_noise_consume_initiation(&b, m1, &res), 0);
		ck_assert_int_eq(wg_noise_accept_initiation(&h2, &res, 1), 0);
		ck_assert_int_eq(wg_noise_create_response(&h2, NULL, m2), 0);
		ck_assert_int_ne(wg_noise_consume_response(&h1, &a, m2), 0);
	}
}
END_TEST

START_TEST(cookie_round_trip)
{
	struct wg_static_identity r;
	struct wg_cookie_checker chk;
	struct wg_cookie_maker mk;
	struct endpoint src;
	uint8_t msg[WG_INITIATION_LEN], reply[WG_COOKIE_REPLY_LEN];
	int64_t now = 10 * WG_NS_PER_S;

	make_identity(&r, 0x77);
	wg_cookie_checker_init(&chk);
	wg_cookie_checker_set_key(&chk, r.pub);
	wg_cookie_maker_init(&mk, r.pub);
	memset(&src, 0, sizeof(src));
	ck_assert_int_eq(endpoint_parse("192.0.2.7:51820", &src), 0);
	memset(msg, 0xab, sizeof(msg));
	msg[0] = 1;
	wg_cookie_add_macs(&mk, msg, sizeof(msg), now);
	ck_assert_int_eq(wg_cookie_validate(&chk, msg, sizeof(msg), &src, false, now),
			 WG_MAC_VALID_NO_COOKIE);
	ck_assert_int_eq(wg_cookie_validate(&chk, msg, sizeof(msg), &src, true, now),
			 WG_MAC_VALID_NO_COOKIE);
	/* no cookie, so mac2 is zero */
	for (int i = 0; i < 16; i++)
		ck_assert_int_eq(msg[WG_INIT_OFF_MAC2 + i], 0);
	wg_cookie_reply_create(&chk, reply, msg, sizeof(msg), &src, now);
	ck_assert_int_eq(reply[0], 3);
	ck_assert_int_eq(wg_cookie_reply_consume(&mk, reply, now), 0);
	/* a second copy of the same reply is refused (mac1 consumed) */
	ck_assert_int_ne(wg_cookie_reply_consume(&mk, reply, now), 0);
	wg_cookie_add_macs(&mk, msg, sizeof(msg), now + WG_NS_PER_S);
	ck_assert_int_eq(wg_cookie_validate(&chk, msg, sizeof(msg), &src, true, now + WG_NS_PER_S),
			 WG_MAC_VALID_COOKIE);
	/* another source port gets a different cookie */
	src.port++;
	ck_assert_int_eq(wg_cookie_validate(&chk, msg, sizeof(msg), &src, true, now + WG_NS_PER_S),
			 WG_MAC_VALID_NO_COOKIE);
	/* a bad mac1 is invalid */
	msg[5] ^= 1;
	ck_assert_int_eq(wg_cookie_validate(&chk, msg, sizeof(msg), &src, false, now),
			 WG_MAC_INVALID);
	/* the cookie is not used after 115 s */
	msg[5] ^= 1;
	wg_cookie_add_macs(&mk, msg, sizeof(msg), now + 116 * WG_NS_PER_S);
	for (int i = 0; i < 16; i++)
		ck_assert_int_eq(msg[WG_INIT_OFF_MAC2 + i], 0);
	wg_cookie_checker_cleanup(&chk);
}
END_TEST

START_TEST(tai64n_monotonic)
{
	uint8_t a[12], b[12];

	wg_tai64n_now(a);
	ck_assert_int_eq(a[0], 0x40);
	ck_assert_int_eq(a[11] & 0xff, 0);	/* low 24 bits of ns are zero */
	ck_assert_int_eq(a[10], 0);
	wg_tai64n_now(b);
	ck_assert_int_le(memcmp(a, b, 12), 0);
}
END_TEST

Suite *
wg_crypto_suite(void)
{
	Suite *s = suite_create("wg_crypto");
	TCase *tc = tcase_create("core");

	tcase_add_checked_fixture(tc, setup, NULL);
	tcase_add_test(tc, noise_constants);
	tcase_add_test(tc, kdf_vectors);
	tcase_add_test(tc, rfc8439_aead);
	tcase_add_test(tc, aead_counter_and_xaead);
	tcase_add_test(tc, mac_is_blake2s_128);
	tcase_add_test(tc, replay_counter_vectors);
	tcase_add_test(tc, handshake_transcript);
	tcase_add_test(tc, cookie_round_trip);
	tcase_add_test(tc, tai64n_monotonic);
	suite_add_tcase(s, tc);
	return s;
}
