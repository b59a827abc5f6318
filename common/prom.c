// SPDX-License-Identifier: MIT
/* HELP lines for /metrics (common/prom.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "common/prom.h"

static const struct {
	const char *name, *help;
} helps[] = {
	{ "wiremesh_map_full_total", "Full netmaps written to map streams." },
	{ "wiremesh_map_deltas_total", "Delta messages written to map streams." },
	{ "wiremesh_map_version", "Latest map version (store-assigned, durable)." },
	{ "wiremesh_registrations_total", "Node registrations, by result (ok or refused)." },
	{ "wiremesh_endpoint_updates_total", "Endpoint reports accepted from nodes." },
	{ "wiremesh_bad_signatures_total", "Node requests refused for a bad or missing signature." },
	{ "wiremesh_http_requests_total", "HTTP requests answered, by status code." },
	{ "wiremesh_http_max_connections", "Connection limit of the HTTP listener." },
	{ "wiremesh_derp_clients", "DERP clients connected now." },
	{ "wiremesh_derp_sockets", "Relay sockets open now (clients and handshakes)." },
	{ "wiremesh_derp_home_clients_total", "DERP clients that said this relay is their home." },
	{ "wiremesh_derp_accepts_total", "TCP connections accepted by the relay." },
	{ "wiremesh_derp_clients_total", "DERP clients that completed the handshake." },
	{ "wiremesh_derp_packets_forwarded_total", "Packets relayed to a connected peer." },
	{ "wiremesh_derp_bytes_forwarded_total", "Bytes of packets relayed to a connected peer." },
	{ "wiremesh_derp_packets_dropped_total", "Packets the relay dropped, by reason." },
	{ "wiremesh_derp_conns_refused_total", "Relay connections refused, by reason (limit, admission)." },
	{ "wiremesh_derp_frames_bad_total", "Malformed DERP frames (the connection is closed)." },
	{ "wiremesh_derp_handshakes_failed_total", "Relay connections that failed the DERP handshake." },
	{ "wiremesh_derp_http_requests_total", "Plain HTTP requests to the relay (probe, generate_204, metrics)." },
	{ "wiremesh_derp_pings_total", "DERP ping frames answered." },
	{ "wiremesh_stun_requests_total", "STUN binding requests answered, by kind." },
	{ "wiremesh_stun_dropped_total", "STUN datagrams dropped, by reason." },
};

const char *
prom_help_text(const char *family)
{
	for (size_t i = 0; i < sizeof(helps) / sizeof(helps[0]); i++)
		if (strcmp(helps[i].name, family) == 0)
			return helps[i].help;
	return NULL;
}

int
prom_add_help(struct buf *b)
{
	struct buf out;
	const char *p, *end;
	char prev[128] = "";	/* family of the last HELP line */

	if (b->len == 0)
		return 0;
	buf_init(&out, b->len * 2 + 65536);
	p = (const char *)b->data;
	end = p + b->len;
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t len = nl ? (size_t)(nl - p) + 1 : (size_t)(end - p);

		if (len > 9 && strncmp(p, "# HELP ", 7) == 0) {
			size_t n = strcspn(p + 7, " \n");

			snprintf(prev, sizeof(prev), "%.*s", (int)(n < 127 ? n : 127), p + 7);
		} else if (len > 9 && strncmp(p, "# TYPE ", 7) == 0) {
			size_t n = strcspn(p + 7, " \n");
			char fam[128];

			snprintf(fam, sizeof(fam), "%.*s", (int)(n < 127 ? n : 127), p + 7);
			if (strcmp(fam, prev) != 0) {
				const char *h = prom_help_text(fam);

				if ((h ? buf_printf(&out, "# HELP %s %s\n", fam, h) :
				    buf_printf(&out, "# HELP %s wiremesh metric %s (undocumented).\n", fam,
				    fam)) != 0) {
					buf_cleanup(&out);
					return ERR_NOMEM;
				}
			}
		}
		if (buf_append(&out, p, len) != 0) {
			buf_cleanup(&out);
			return ERR_NOMEM;
		}
		p += len;
	}
	buf_cleanup(b);
	*b = out;
	return 0;
}
