// SPDX-License-Identifier: MIT
/* libFuzzer target: filter_parse on arbitrary JSON, then a sequence of
 * packets through conntrack_note_outbound / filter_check_inbound.
 * Input: 2-byte big-endian JSON length, the JSON, then records of
 * flags (1: bit 0 = outbound, bit 1 = no filter) | length (2, BE) | packet. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "client-agent/filter.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct wm_filter *f = NULL;
	struct conntrack *ct;
	struct filter_stats st;
	char err[128];
	size_t jl, off, seen = 0;
	int64_t now = 0;

	if (size < 2)
		return 0;
	jl = (size_t)(data[0] << 8 | data[1]);
	if (jl > size - 2)
		jl = size - 2;
	if (filter_parse((const char *)data + 2, jl, &f, err, sizeof(err)) != 0) {
		if (f != NULL || memchr(err, '\0', sizeof(err)) == NULL)
			__builtin_trap();
	}
	if ((ct = conntrack_new(8)) == NULL)
		__builtin_trap();
	off = 2 + jl;
	while (off + 3 <= size) {
		uint8_t flags = data[off];
		size_t n = (size_t)(data[off + 1] << 8 | data[off + 2]);
		enum filter_verdict v;

		off += 3;
		if (n > size - off)
			n = size - off;
		now += flags >> 2;	/* time moves on */
		if (flags & 1) {
			conntrack_note_outbound(ct, data + off, n, now * 1000);
		} else {
			v = filter_check_inbound(flags & 2 ? NULL : f, ct, data + off, n, now * 1000);
			if (v > FILTER_DROP_MALFORMED)
				__builtin_trap();
			seen++;
		}
		off += n;
		if (conntrack_count(ct) > 8)
			__builtin_trap();
	}
	conntrack_stats(ct, &st);
	if (st.accepted + st.accepted_established + st.dropped_policy + st.dropped_malformed != seen)
		__builtin_trap();
	conntrack_free(ct);
	filter_free(f);
	return 0;
}
