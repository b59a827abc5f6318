/* SPDX-License-Identifier: MIT */
/*
 * The node agent's core: holds the netmap (self, peers, DERP map, filter),
 * configures the WireGuard device and the TUN interface from it, carries
 * WireGuard datagrams over DERP until path discovery proves a direct path,
 * runs netcheck on the WireGuard socket, reports endpoints to the control
 * server, and answers the local API (agent_handle).
 *
 * Threads: the control client's (netmap apply), an agent loop (disco,
 * path timers, DERP idle cleanup), a TUN reader, a netcheck thread, the
 * engine's and the DERP clients' (through hooks). One mutex guards the
 * agent state; it is never held while calling into the WireGuard device's
 * configuration functions, because the engine's hooks take it while holding
 * the device lock.
 */
#ifndef WM_AGENT_H
#define WM_AGENT_H

#include <stdint.h>

#include <jansson.h>

#include "common/err.h"
#include "common/keys.h"

enum {
	AGENT_MTU = 1280,
	AGENT_KEEPALIVE_S = 25,		/* WireGuard persistent keepalive */
	AGENT_MAX_PEERS = 4096,
	AGENT_NETCHECK_EVERY_MS = 30000,
	AGENT_NETCHECK_NO_UDP_MS = 3000,	/* while the last report saw no UDP */
	AGENT_CMM_EVERY_MS = 5000,	/* call-me-maybe while no direct path */
	AGENT_DERP_IDLE_MS = 60000,	/* non-home relay connections close after */
	AGENT_PING_TIMEOUT_MS = 5000,
};

struct agent_config {
	const char *state_dir;		/* prefs.json lives here (0600) */
	const char *tun_name;		/* "" or NULL: no TUN (tests) */
	uint16_t port;			/* WireGuard/disco UDP port */
	uint8_t machine_sk[ED25519_SK_LEN];
	uint8_t machine_pk[KEY_LEN];
	uint8_t node_priv[KEY_LEN];
	uint8_t node_pub[KEY_LEN];
	unsigned dns_rate;		/* resolver queries/s per source; 0: default */
};

struct agent;

/* Opens the TUN device and the WireGuard socket, starts the threads and,
 * when prefs.json says the node was up, reconnects to its control server.
 * The config is copied (keys included; wipe yours). */
int agent_new(const struct agent_config *cfg, struct agent **out) WM_MUST_CHECK;
/* Stops everything, wipes keys. NULL is a no-op. */
void agent_free(struct agent *a);

/*
 * One local API request (see client-agent/wiremesh.c for the commands).
 * Returns {"ok":true,"text":"...","data":{...}} or {"ok":false,"error":"..."}.
 * Thread safe; may block (up, ping, netcheck).
 */
json_t *agent_handle(void *agent, json_t *req);

#endif
