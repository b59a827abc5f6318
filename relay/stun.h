/* SPDX-License-Identifier: MIT */
/*
 * STUN wire format (RFC 5389 binding, with enough of RFC 3489 to answer
 * classic clients): message layout, attribute numbers, limits, and a codec
 * that never trusts its input. Parsing is lenient the way Tailscale's is
 * (trailing bytes after the declared length are ignored, XOR-MAPPED-ADDRESS
 * also accepted under 0x8020, MAPPED-ADDRESS as a fallback) but bounded:
 * every attribute must fit inside the declared length. Nothing here does
 * I/O; the server (stun_server.h) and client (relay/stun_client.h)
 * are built on it.
 */
#ifndef WM_STUN_H
#define WM_STUN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/addr.h"
#include "common/err.h"

enum {
	STUN_HEADER_LEN = 20,
	STUN_TXID_LEN = 12,		/* RFC 5389; RFC 3489 used 16 incl. cookie */
	STUN_COOKIE = 0x2112A442,
	STUN_FINGERPRINT_XOR = 0x5354554E,
	STUN_MAX_MSG = 1500,		/* we never build or expect more */
	STUN_MAX_ATTRS = 64,		/* attributes walked before giving up */
	STUN_DEFAULT_PORT = 3478,
	STUN_BINDING_REQUEST_LEN = 40,	/* header 20 + SOFTWARE(8) 12 + FINGERPRINT 8 */
};

/* Message types (method binding, the four classes). */
enum {
	STUN_BINDING_REQUEST = 0x0001,
	STUN_BINDING_INDICATION = 0x0011,
	STUN_BINDING_SUCCESS = 0x0101,
	STUN_BINDING_ERROR = 0x0111,
};

/* Attribute types. */
enum {
	STUN_ATTR_MAPPED_ADDRESS = 0x0001,
	STUN_ATTR_CHANGE_REQUEST = 0x0003,	/* RFC 3489 / 5780 */
	STUN_ATTR_USERNAME = 0x0006,
	STUN_ATTR_MESSAGE_INTEGRITY = 0x0008,
	STUN_ATTR_ERROR_CODE = 0x0009,
	STUN_ATTR_XOR_MAPPED_ADDRESS = 0x0020,
	STUN_ATTR_XOR_MAPPED_ADDRESS_ALT = 0x8020,	/* common server mistake */
	STUN_ATTR_SOFTWARE = 0x8022,
	STUN_ATTR_FINGERPRINT = 0x8028,
};

enum { STUN_SOFTWARE_MAX = 128 };

/* What stun_parse() found in one message. Pointers borrow the input. */
struct stun_msg {
	uint16_t type;
	uint16_t length;		/* declared attribute length */
	bool rfc5389;			/* magic cookie present */
	uint8_t txid[16];		/* 12 bytes (5389) or 16 (3489, cookie slot incl.) */
	bool has_fingerprint;
	bool fingerprint_ok;		/* present, last, and the CRC matches */
	bool has_integrity;
	size_t integrity_off;		/* offset of the MESSAGE-INTEGRITY attribute */
	bool has_xor_mapped;
	struct endpoint xor_mapped;
	bool has_mapped;
	struct endpoint mapped;
	bool has_change_request;
	uint32_t change_flags;
	const uint8_t *software;
	size_t software_len;
	int unknown_required;		/* comprehension-required attrs we ignore */
	uint16_t error_code;		/* class*100+number, error responses only */
};

/*
 * Quick test for the demultiplexer on a shared UDP socket: top two bits zero,
 * the magic cookie, a binding-class method. No allocation, no full parse.
 */
bool stun_looks_like(const uint8_t *p, size_t n);

/*
 * Parses one STUN message (RFC 5389 or RFC 3489). Returns 0 and fills *out, or
 * ERR_INVALID when the header or any attribute is malformed. Bytes after the
 * declared length are ignored. Never reads outside [p, p+n).
 */
int stun_parse(const uint8_t *p, size_t n, struct stun_msg *out) WM_MUST_CHECK;

/* CRC-32 (IEEE 802.3) as used by FINGERPRINT, before the XOR. */
uint32_t stun_crc32(const uint8_t *p, size_t n);

/*
 * Checks MESSAGE-INTEGRITY (HMAC-SHA1, RFC 5389 §15.4) of a parsed message
 * against `key` (the short-term password, or MD5(user:realm:pass)). Returns 0
 * when it verifies, ERR_BAD_SIGNATURE when not, ERR_NOT_FOUND when absent.
 */
int stun_check_integrity(const uint8_t *p, size_t n, const struct stun_msg *m,
			 const uint8_t *key, size_t keylen) WM_MUST_CHECK;

/*
 * Builds the 40-byte binding request Tailscale sends (SOFTWARE "tailnode",
 * FINGERPRINT) with the given 12-byte transaction ID. Returns its length.
 */
size_t stun_build_request(uint8_t out[static STUN_BINDING_REQUEST_LEN],
			  const uint8_t txid[static STUN_TXID_LEN]);

/*
 * Builds a binding success response to `req` reporting `mapped`. For an RFC
 * 5389 request: XOR-MAPPED-ADDRESS, MAPPED-ADDRESS, SOFTWARE, FINGERPRINT. For
 * a classic RFC 3489 request: MAPPED-ADDRESS (and SOURCE-ADDRESS) only.
 * Returns the length written, or 0 if `cap` is too small.
 */
size_t stun_build_response(uint8_t *out, size_t cap, const struct stun_msg *req,
			   const struct endpoint *mapped);

/*
 * The reflexive address of a success response: XOR-MAPPED-ADDRESS (either
 * code), else MAPPED-ADDRESS; IPv4-mapped IPv6 is unmapped. 0 or ERR_NOT_FOUND.
 */
int stun_response_addr(const struct stun_msg *m, struct endpoint *out) WM_MUST_CHECK;

#endif
