/* SPDX-License-Identifier: MIT */
/*
 * The cross-platform configuration protocol spoken by `wg` over
 * /var/run/wireguard/IFNAME.sock: `get=1` and `set=1` requests of key=value
 * lines ending in a blank line, answered with `errno=N` (negative errno on
 * failure, as wireguard-go). Parsing is separate from applying so the parser
 * can be fuzzed without a device.
 */
#ifndef WG_UAPI_H
#define WG_UAPI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "client-agent/wg/device.h"

enum {
	WG_UAPI_MAX_REQUEST = 64 << 20,	/* bytes of one request */
};

struct wg_uapi_peer {
	struct wg_peer_config cfg;
	struct ip_prefix *aips;		/* owned; cfg.allowed_ips points here */
	size_t cap;
};

/* A parsed set=1 request. */
struct wg_uapi_set {
	bool has_private_key;
	uint8_t private_key[WG_KEY_LEN];
	bool has_listen_port;
	uint16_t listen_port;
	bool has_fwmark;
	uint32_t fwmark;
	bool replace_peers;
	struct wg_uapi_peer *peers;
	size_t n_peers, cap_peers;
};

/* Parses the lines of a set request (after "set=1\n", up to but without the
 * blank line). Returns 0 or a negative errno (-EINVAL, -EPROTO, -ENOMEM);
 * on failure `out` is cleaned up. */
int wg_uapi_parse_set(const char *body, size_t len, struct wg_uapi_set *out);
void wg_uapi_set_cleanup(struct wg_uapi_set *s);
/* Applies a parsed request; 0 or a negative errno (-EADDRINUSE, -EIO, ...). */
int wg_uapi_apply_set(struct wg_device *dev, const struct wg_uapi_set *s);
/* Formats the answer to get=1, including "errno=0\n\n". Caller frees *out. */
int wg_uapi_format_get(struct wg_device *dev, char **out, size_t *len);
/* Handles one whole request (first line included, blank line excluded) and
 * returns the response text to send. Caller frees *out. */
int wg_uapi_handle(struct wg_device *dev, const char *req, size_t len, char **out,
		   size_t *outlen);

#endif
