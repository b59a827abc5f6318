/* SPDX-License-Identifier: MIT */
/*
 * The agent's side of the node protocol (server/control.c): signed POSTs
 * over libcurl. Registration is a blocking call; the map stream and the
 * endpoint reports run on the client's own thread once started. The stream
 * resumes with the last version it saw, and every failure is retried with
 * exponential backoff (500 ms doubling to 8 s, +-25 % jitter), so the data
 * plane never depends on the server being up.
 *
 * https:// URLs are verified against the system CAs or SSL_CERT_FILE;
 * http:// is allowed (the caller warns).
 */
#ifndef WM_CONTROL_CLIENT_H
#define WM_CONTROL_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "common/err.h"
#include "common/keys.h"

enum {
	CONTROL_MAX_LINE = 32 << 20,	/* one map message */
	CONTROL_MAX_ENDPOINTS = 16,
	CONTROL_BACKOFF_MIN_MS = 500,
	CONTROL_BACKOFF_MAX_MS = 8000,
	CONTROL_STALL_S = 100,		/* no byte for this long: the stream is dead */
	CONTROL_STALL_MIN_S = 5,	/* 3 keepalive intervals, but at least this */
	CONTROL_WAIT_S = 40,		/* one interactive-login long-poll (server: 25 s) */
	CONTROL_URL_MAX = 512,
};

struct control_keys {
	uint8_t machine_sk[ED25519_SK_LEN];
	uint8_t machine_pk[KEY_LEN];
	uint8_t node_pub[KEY_LEN];
	uint8_t disco_pub[KEY_LEN];
};

struct control_callbacks {
	/* One map message (full, delta or keepalive); borrowed for the call.
	 * Runs on the client's stream thread. */
	void (*message)(void *ctx, json_t *msg);
	/* The stream connected, or failed with `why` (never NULL when !up). */
	void (*state)(void *ctx, bool up, const char *why);
	void *ctx;
};

struct control;

/* Copies url, keys and callbacks. NULL on ENOMEM. Nothing runs yet. */
struct control *control_new(const char *url, const struct control_keys *keys,
			    const struct control_callbacks *cb);
/* Stops the thread and wipes the keys. NULL is a no-op. */
void control_free(struct control *c);

/*
 * POST /machine/register (blocking, 15 s). authkey may be NULL (a machine
 * already registered). On success *node is the server's node object (new
 * reference). On failure fills why: the server's problem detail, or that
 * the server cannot be reached. ERR_UNAVAILABLE (unreachable) or the
 * mapped HTTP error.
 */
int control_register(struct control *c, const char *authkey, const char *hostname,
		     json_t **node, char *why, size_t whylen) WM_MUST_CHECK;

/*
 * Interactive login (docs/protocol.md): POST /machine/register without an
 * auth key and with "interactive" (and "force_reauth" when force). Either
 * the machine is still valid and *node is set, or the server wants a
 * person to log in: *auth_url (show it) and *auth_id (malloc'd) are set.
 */
int control_register_interactive(struct control *c, const char *hostname, bool force,
				 json_t **node, char **auth_url, char **auth_id, char *why,
				 size_t whylen) WM_MUST_CHECK;
/*
 * One long-poll of POST /machine/register/wait (blocking, at most
 * CONTROL_WAIT_S): 0 with *node and *login (malloc'd: who logged in) when
 * the login completed, ERR_TIMEOUT while it is still pending, else an
 * error with why (ERR_EXPIRED: the link expired; the server's refusal).
 */
int control_register_wait(struct control *c, const char *auth_id, json_t **node, char **login,
			  char *why, size_t whylen) WM_MUST_CHECK;

/* Starts the stream thread, resuming after `since` (0: full map). */
int control_start(struct control *c, uint64_t since) WM_MUST_CHECK;

/* Queues an endpoint report (latest wins; sent by the stream's thread
 * helper, retried until it succeeds). eps are "ip:port" strings. */
void control_set_endpoints(struct control *c, const char *const *eps, size_t n, int home_derp);

/* The "advertised_routes" sent with register and every endpoint report
 * (a JSON array, borrowed; NULL sends none). Call before control_register. */
void control_set_advertised(struct control *c, json_t *routes);

/* The "tags" (JSON array of "tag:NAME", borrowed; NULL: none) this node
 * asks for with register (`wiremesh up --advertise-tags`); the server
 * grants them when the policy's tagOwners let the node's user own them. */
void control_set_tags(struct control *c, json_t *tags);

/* POST /machine/logout: the server expires the node key (deletes an
 * ephemeral node). Blocking, at most 10 s. 0 or ERR_*. */
int control_logout(struct control *c, char *why, size_t whylen) WM_MUST_CHECK;

/* Tells the server at once (blocking, at most timeout_s) that this node
 * advertises no routes and has no endpoints, so that a router going down
 * hands its subnets to another router now rather than when the server
 * notices the stream is gone. Approvals are kept. 0 or ERR_*. */
int control_withdraw_routes(struct control *c, int timeout_s, char *why, size_t whylen)
	WM_MUST_CHECK;

/* SO_MARK for the client's sockets (0: none), so that policy routing can
 * keep control traffic off the tunnel (client-agent/routes.h). */
void control_set_fwmark(struct control *c, uint32_t mark);

/* The other replicas' URLs the map announced ("control_urls"): tried
 * after the URLs given to control_new(), in order, when the server in use
 * cannot be reached (or answers 502-504); duplicates of given URLs are
 * left out, and a trailing "/" is dropped. Replaces the previous list. */
void control_set_learned(struct control *c, const char *const *urls, size_t n);
/* The rotation (given URLs, then learned), copied into out (at most max);
 * *cur is the index of the one in use. Returns how many were copied. */
size_t control_urls(struct control *c, char (*out)[CONTROL_URL_MAX], size_t max, size_t *cur);

/* Last map version seen. */
uint64_t control_version(struct control *c);
/* The server's keepalive interval as measured on the map stream (the
 * longest gap between keepalives), ms; 0 until two were measured. A stream
 * silent for three of them is given up (CONTROL_STALL_MIN_S at least,
 * CONTROL_STALL_S before any was measured). */
int64_t control_keepalive_ms(struct control *c);

#endif
