/* SPDX-License-Identifier: MIT */
/*
 * STUN codec: bounded parser for RFC 5389 / RFC 3489 messages, FINGERPRINT
 * and MESSAGE-INTEGRITY checks, and the few messages wiremesh builds (the
 * Tailscale-shaped binding request and binding success responses).
 */
#include <string.h>

#include <openssl/evp.h>
#include <openssl/params.h>
#include <openssl/crypto.h>

#include "relay/stun.h"

static uint16_t get16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }
static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}
static void put16(uint8_t *p, uint16_t v) { p[0] = v >> 8; p[1] = v & 0xff; }
static void put32(uint8_t *p, uint32_t v)
{
	p[0] = v >> 24; p[1] = (v >> 16) & 0xff; p[2] = (v >> 8) & 0xff; p[3] = v & 0xff;
}

bool stun_looks_like(const uint8_t *p, size_t n)
{
	return n >= STUN_HEADER_LEN && (p[0] & 0xc0) == 0 && p[1] == 0x01 &&
	       get32(p + 4) == STUN_COOKIE;
}

uint32_t stun_crc32(const uint8_t *p, size_t n)
{
	uint32_t c = 0xffffffffu;

	for (size_t i = 0; i < n; i++) {
		c ^= p[i];
		for (int k = 0; k < 8; k++)
			c = (c >> 1) ^ (0xedb88320u & (0u - (c & 1)));
	}
	return c ^ 0xffffffffu;
}

/* Decodes a (XOR-)MAPPED-ADDRESS value. */
static int parse_addr(const uint8_t *v, size_t len, bool xor, const uint8_t *magic_txid,
		      struct endpoint *out)
{
	struct endpoint e;
	size_t alen;

	if (len < 4)
		return ERR_INVALID;
	memset(&e, 0, sizeof(e));
	if (v[1] == 1) {
		e.addr.family = AF_INET;
		alen = 4;
	} else if (v[1] == 2) {
		e.addr.family = AF_INET6;
		alen = 16;
	} else {
		return ERR_INVALID;
	}
	if (len < 4 + alen)
		return ERR_INVALID;
	e.port = get16(v + 2);
	memcpy(e.addr.b, v + 4, alen);
	if (xor) {
		e.port ^= STUN_COOKIE >> 16;
		for (size_t i = 0; i < alen; i++)
			e.addr.b[i] ^= magic_txid[i];
	}
	*out = e;
	return 0;
}

int stun_parse(const uint8_t *p, size_t n, struct stun_msg *out)
{
	struct stun_msg m;
	size_t off, end;
	int nattrs = 0;

	memset(out, 0, sizeof(*out));
	if (n < STUN_HEADER_LEN || (p[0] & 0xc0) != 0)
		return ERR_INVALID;
	memset(&m, 0, sizeof(m));
	m.type = get16(p);
	m.length = get16(p + 2);
	if (m.length % 4 != 0 || (size_t)m.length > n - STUN_HEADER_LEN)
		return ERR_INVALID;
	m.rfc5389 = get32(p + 4) == STUN_COOKIE;
	memcpy(m.txid, p + 4, 16);
	end = STUN_HEADER_LEN + (size_t)m.length;
	for (off = STUN_HEADER_LEN; off < end;) {
		uint16_t at, alen;
		const uint8_t *v;
		size_t padded;

		if (++nattrs > STUN_MAX_ATTRS || end - off < 4)
			return ERR_INVALID;
		at = get16(p + off);
		alen = get16(p + off + 2);
		padded = ((size_t)alen + 3) & ~(size_t)3;
		if (padded > end - off - 4)
			return ERR_INVALID;
		v = p + off + 4;
		if (m.has_fingerprint)	/* FINGERPRINT must be last */
			m.fingerprint_ok = false;
		switch (at) {
		case STUN_ATTR_MAPPED_ADDRESS:
			if (parse_addr(v, alen, false, m.txid, &m.mapped) == 0)
				m.has_mapped = true;
			break;
		case STUN_ATTR_XOR_MAPPED_ADDRESS:
		case STUN_ATTR_XOR_MAPPED_ADDRESS_ALT:
			if (m.rfc5389 && !m.has_xor_mapped &&
			    parse_addr(v, alen, true, m.txid, &m.xor_mapped) == 0)
				m.has_xor_mapped = true;
			break;
		case STUN_ATTR_CHANGE_REQUEST:
			if (alen != 4)
				return ERR_INVALID;
			m.has_change_request = true;
			m.change_flags = get32(v);
			break;
		case STUN_ATTR_SOFTWARE:
			m.software = v;
			m.software_len = alen;
			break;
		case STUN_ATTR_ERROR_CODE:
			if (alen < 4)
				return ERR_INVALID;
			m.error_code = (uint16_t)((v[2] & 7) * 100 + (v[3] % 100));
			break;
		case STUN_ATTR_MESSAGE_INTEGRITY:
			if (alen != 20)
				return ERR_INVALID;
			if (!m.has_integrity) {
				m.has_integrity = true;
				m.integrity_off = off;
			}
			break;
		case STUN_ATTR_FINGERPRINT: {
			uint32_t want;

			if (alen != 4)
				return ERR_INVALID;
			want = stun_crc32(p, off) ^ STUN_FINGERPRINT_XOR;
			m.has_fingerprint = true;
			m.fingerprint_ok = get32(v) == want && off + 8 == end;
			break;
		}
		default:
			if (at < 0x8000)
				m.unknown_required++;
			break;
		}
		off += 4 + padded;
	}
	*out = m;
	return 0;
}

int stun_check_integrity(const uint8_t *p, size_t n, const struct stun_msg *m,
			 const uint8_t *key, size_t keylen)
{
	uint8_t hdr[STUN_HEADER_LEN], mac[EVP_MAX_MD_SIZE];
	unsigned int maclen = 0;
	size_t off = m->integrity_off;
	EVP_MAC *emac = NULL;
	EVP_MAC_CTX *ctx = NULL;
	OSSL_PARAM params[2];
	size_t outl = 0;
	int r = ERR_INTERNAL;

	if (!m->has_integrity)
		return ERR_NOT_FOUND;
	if (off < STUN_HEADER_LEN || off + 24 > n)
		return ERR_INVALID;
	memcpy(hdr, p, STUN_HEADER_LEN);
	put16(hdr + 2, (uint16_t)(off + 24 - STUN_HEADER_LEN));
	emac = EVP_MAC_fetch(NULL, "HMAC", NULL);
	if (!emac || !(ctx = EVP_MAC_CTX_new(emac)))
		goto out;
	params[0] = OSSL_PARAM_construct_utf8_string("digest", (char *)"SHA1", 0);
	params[1] = OSSL_PARAM_construct_end();
	if (!EVP_MAC_init(ctx, key, keylen, params) ||
	    !EVP_MAC_update(ctx, hdr, sizeof(hdr)) ||
	    !EVP_MAC_update(ctx, p + STUN_HEADER_LEN, off - STUN_HEADER_LEN) ||
	    !EVP_MAC_final(ctx, mac, &outl, sizeof(mac)))
		goto out;
	maclen = (unsigned int)outl;
	r = maclen == 20 && CRYPTO_memcmp(mac, p + off + 4, 20) == 0 ? 0 : ERR_BAD_SIGNATURE;
out:
	EVP_MAC_CTX_free(ctx);
	EVP_MAC_free(emac);
	return r;
}

static void put_fingerprint(uint8_t *msg, size_t *len)
{
	uint32_t crc;

	put16(msg + 2, (uint16_t)(*len + 8 - STUN_HEADER_LEN));
	crc = stun_crc32(msg, *len) ^ STUN_FINGERPRINT_XOR;
	put16(msg + *len, STUN_ATTR_FINGERPRINT);
	put16(msg + *len + 2, 4);
	put32(msg + *len + 4, crc);
	*len += 8;
}

size_t stun_build_request(uint8_t out[static STUN_BINDING_REQUEST_LEN],
			  const uint8_t txid[static STUN_TXID_LEN])
{
	size_t len = STUN_HEADER_LEN;

	put16(out, STUN_BINDING_REQUEST);
	put16(out + 2, 0);
	put32(out + 4, STUN_COOKIE);
	memcpy(out + 8, txid, STUN_TXID_LEN);
	put16(out + len, STUN_ATTR_SOFTWARE);
	put16(out + len + 2, 8);
	memcpy(out + len + 4, "tailnode", 8);
	len += 12;
	put_fingerprint(out, &len);
	return len;
}

static size_t put_addr(uint8_t *out, uint16_t type, const struct endpoint *e,
		       const uint8_t *xor_key)
{
	size_t alen = e->addr.family == AF_INET ? 4 : 16;
	uint16_t port = e->port;

	put16(out, type);
	put16(out + 2, (uint16_t)(4 + alen));
	out[4] = 0;
	out[5] = e->addr.family == AF_INET ? 1 : 2;
	if (xor_key)
		port ^= STUN_COOKIE >> 16;
	put16(out + 6, port);
	for (size_t i = 0; i < alen; i++)
		out[8 + i] = e->addr.b[i] ^ (xor_key ? xor_key[i] : 0);
	return 8 + alen;
}

size_t stun_build_response(uint8_t *out, size_t cap, const struct stun_msg *req,
			   const struct endpoint *mapped)
{
	static const char sw[] = "wiremesh";	/* 8 bytes: no padding */
	size_t len = STUN_HEADER_LEN;

	/* header + two addresses (28 each at most) + SOFTWARE + FINGERPRINT */
	if (cap < STUN_HEADER_LEN + 2 * 24 + 12 + 8)
		return 0;
	put16(out, STUN_BINDING_SUCCESS);
	memcpy(out + 4, req->txid, 16);
	if (req->rfc5389) {
		len += put_addr(out + len, STUN_ATTR_XOR_MAPPED_ADDRESS, mapped, req->txid);
		put16(out + len, STUN_ATTR_SOFTWARE);
		put16(out + len + 2, 8);
		memcpy(out + len + 4, sw, 8);
		len += 12;
		put_fingerprint(out, &len);
	} else {
		len += put_addr(out + len, STUN_ATTR_MAPPED_ADDRESS, mapped, NULL);
		put16(out + 2, (uint16_t)(len - STUN_HEADER_LEN));
	}
	return len;
}

int stun_response_addr(const struct stun_msg *m, struct endpoint *out)
{
	static const uint8_t v4mapped[12] = { 0,0,0,0,0,0,0,0,0,0,0xff,0xff };
	struct endpoint e;

	if (m->has_xor_mapped)
		e = m->xor_mapped;
	else if (m->has_mapped)
		e = m->mapped;
	else
		return ERR_NOT_FOUND;
	if (e.addr.family == AF_INET6 && memcmp(e.addr.b, v4mapped, 12) == 0) {
		memmove(e.addr.b, e.addr.b + 12, 4);
		memset(e.addr.b + 4, 0, 12);
		e.addr.family = AF_INET;
	}
	*out = e;
	return 0;
}
