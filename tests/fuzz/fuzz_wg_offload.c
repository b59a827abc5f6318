// SPDX-License-Identifier: MIT
/*
 * libFuzzer target: the TUN offload code (client-agent/wg/offload.h). The
 * first 10 bytes are a virtio_net_hdr for TSO splitting of the rest; then
 * the rest is cut into packets (a length byte before each) for GRO, whose
 * merged groups are prepared and read back. Decrypted packets from a peer
 * reach GRO, so its parser sees remote input.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "client-agent/wg/offload.h"

enum { MAXP = 64 };

static uint8_t out[70000];
static uint8_t bufs[MAXP][16 + 512];
static struct wg_gro_pkt pkts[MAXP];
static struct wg_gro_group groups[MAXP];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct wg_vnet_hdr h;
	struct wg_tso t;
	struct wg_gro g;
	uint8_t *base[WG_GRO_MAX_SEGS + 1];
	size_t lens[WG_GRO_MAX_SEGS + 1], off;
	volatile uint8_t sink = 0;

	if (size < WG_VNET_HDR_LEN || size > 65535 + WG_VNET_HDR_LEN)
		return 0;
	wg_vnet_hdr_get(&h, data);
	if (wg_tso_begin(&t, &h, data + WG_VNET_HDR_LEN, size - WG_VNET_HDR_LEN) > 0) {
		size_t n;

		while ((n = wg_tso_next(&t, out, sizeof(out))) != 0)
			sink ^= out[n - 1];
	}
	wg_gro_init(&g, pkts, groups, MAXP);
	off = WG_VNET_HDR_LEN;
	for (unsigned i = 0; i < MAXP && off < size; i++) {
		size_t len = data[off++] * 2u;

		if (len > size - off)
			len = size - off;
		memcpy(bufs[i] + 16, data + off, len);
		off += len;
		if (!wg_gro_add(&g, bufs[i] + 16, len))
			break;
	}
	for (unsigned i = 0; i < g.ngroups; i++) {
		unsigned n = wg_gro_prepare(&g, i, base, lens);

		for (unsigned k = 0; k < n; k++)
			if (lens[k])
				sink ^= base[k][lens[k] - 1];
	}
	(void)sink;
	return 0;
}
