// SPDX-License-Identifier: MIT
/* libFuzzer target: the STUN codec (relay/stun.h) on arbitrary datagrams:
 * the demultiplexer test, the parser, MESSAGE-INTEGRITY and the reflexive
 * address; a parsed binding request must yield a response that parses back
 * to the address it reports (IPv4 and IPv6). */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "relay/stun.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char password[] = "VOkJxbRl1RmTxUk/WvJxBt";	/* RFC 5769's */

static void
answer(const struct stun_msg *req, const char *mapped_s)
{
	uint8_t out[STUN_MAX_MSG];
	struct endpoint mapped, got;
	struct stun_msg resp;
	size_t n;

	if (endpoint_parse(mapped_s, &mapped) != 0)
		__builtin_trap();
	n = stun_build_response(out, sizeof(out), req, &mapped);
	if (n == 0)
		return;
	if (n > sizeof(out) || stun_parse(out, n, &resp) != 0 || resp.type != STUN_BINDING_SUCCESS)
		__builtin_trap();
	if (memcmp(resp.txid, req->txid, req->rfc5389 ? STUN_TXID_LEN : 16) != 0)
		__builtin_trap();
	if (stun_response_addr(&resp, &got) != 0 || got.port != mapped.port ||
	    !addr_equal(&got.addr, &mapped.addr))
		__builtin_trap();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct stun_msg m;
	struct endpoint e;
	int r;

	(void)stun_looks_like(data, size);
	(void)stun_crc32(data, size);
	if (stun_parse(data, size, &m) != 0)
		return 0;
	if (m.software_len > 0 &&
	    (m.software < data || m.software + m.software_len > data + size))
		__builtin_trap();
	if (m.has_integrity && m.integrity_off >= size)
		__builtin_trap();
	r = stun_check_integrity(data, size, &m, (const uint8_t *)password, strlen(password));
	if (r != 0 && r != ERR_BAD_SIGNATURE && r != ERR_NOT_FOUND && r != ERR_INVALID)
		__builtin_trap();
	if (stun_response_addr(&m, &e) == 0 && e.addr.family != AF_INET &&
	    e.addr.family != AF_INET6)
		__builtin_trap();
	if (m.type == STUN_BINDING_REQUEST) {
		answer(&m, "192.0.2.1:32853");
		answer(&m, "[2001:db8:1234:5678:11:2233:4455:6677]:32853");
	}
	return 0;
}
