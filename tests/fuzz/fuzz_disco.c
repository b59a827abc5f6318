// SPDX-License-Identifier: MIT
/* libFuzzer target: disco_open on arbitrary bytes with a fixed recipient key,
 * and the payload parser behind the box: the input is also sealed as a raw
 * payload from a fixed sender, so the fuzzer reaches the parser even though
 * it cannot forge a MAC. Whatever opens must re-seal to the same message.
 * Keys: recipient private 0x11 x 32, sender private 0x22 x 32 (the seeds in
 * corpus/disco/ are sealed between them: tests/fuzz/corpus/disco/README). */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <sodium.h>

#include "client-agent/disco.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint8_t r_priv[KEY_LEN], r_pub[KEY_LEN], s_priv[KEY_LEN], s_pub[KEY_LEN];
static int ready;

static void
init(void)
{
	if (ready)
		return;
	if (sodium_init() < 0)
		__builtin_trap();
	memset(r_priv, 0x11, KEY_LEN);
	memset(s_priv, 0x22, KEY_LEN);
	if (crypto_scalarmult_base(r_pub, r_priv) != 0 || crypto_scalarmult_base(s_pub, s_priv) != 0)
		__builtin_trap();
	ready = 1;
}

static bool
same(const struct disco_msg *a, const struct disco_msg *b)
{
	size_t i;

	if (a->type != b->type)
		return false;
	switch (a->type) {
	case DISCO_PING:
		return memcmp(a->txid, b->txid, DISCO_TXID_LEN) == 0 &&
		       memcmp(a->node_key, b->node_key, KEY_LEN) == 0;
	case DISCO_PONG:
		return memcmp(a->txid, b->txid, DISCO_TXID_LEN) == 0 &&
		       a->src.port == b->src.port && addr_equal(&a->src.addr, &b->src.addr);
	case DISCO_CALL_ME_MAYBE:
		if (a->n_endpoints != b->n_endpoints)
			return false;
		for (i = 0; i < a->n_endpoints; i++)
			if (a->endpoints[i].port != b->endpoints[i].port ||
			    !addr_equal(&a->endpoints[i].addr, &b->endpoints[i].addr))
				return false;
		return true;
	}
	return false;
}

/* An opened message re-seals and re-opens to itself. */
static void
reseal(const struct disco_msg *m)
{
	static const uint8_t nonce[DISCO_NONCE_LEN];
	uint8_t pkt[DISCO_MAX_PACKET], sender[KEY_LEN];
	struct disco_msg back;
	size_t n;

	if (disco_seal_nonce(s_priv, s_pub, r_pub, nonce, m, pkt, sizeof(pkt), &n) != 0)
		__builtin_trap();
	if (disco_open(r_priv, pkt, n, sender, &back) != 0 || !same(m, &back) ||
	    memcmp(sender, s_pub, KEY_LEN) != 0)
		__builtin_trap();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t sender[KEY_LEN], pkt[DISCO_MAX_PACKET + 64];
	static const uint8_t magic[DISCO_MAGIC_LEN] = { 'W', 'M', 0xf0, 0x9f, 0x92, 0xac };
	struct disco_msg m;
	int r;

	init();
	r = disco_open(r_priv, data, size, sender, &m);
	if (r == 0)
		reseal(&m);
	else if (r != ERR_PROTOCOL && r != ERR_BAD_SIGNATURE)
		__builtin_trap();
	(void)disco_looks_like(data, size);

	/* The same bytes as a payload that authenticates. */
	if (size <= sizeof(pkt) - DISCO_HEADER_LEN - DISCO_MAC_LEN) {
		memcpy(pkt, magic, DISCO_MAGIC_LEN);
		memcpy(pkt + DISCO_MAGIC_LEN, s_pub, KEY_LEN);
		memset(pkt + DISCO_MAGIC_LEN + KEY_LEN, 0x5a, DISCO_NONCE_LEN);
		if (crypto_box_easy(pkt + DISCO_HEADER_LEN, data, size, pkt + DISCO_MAGIC_LEN + KEY_LEN,
				    r_pub, s_priv) != 0)
			__builtin_trap();
		r = disco_open(r_priv, pkt, DISCO_HEADER_LEN + DISCO_MAC_LEN + size, sender, &m);
		if (r == 0)
			reseal(&m);
		else if (r != ERR_PROTOCOL)
			__builtin_trap();	/* it authenticates, so only malformed */
	}
	return 0;
}
