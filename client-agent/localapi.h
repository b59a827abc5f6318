/* SPDX-License-Identifier: MIT */
/*
 * The agent's local API: a unix stream socket for the `wiremesh` CLI. One
 * request per connection: the client writes one JSON object and a newline
 * (at most LOCALAPI_MAX_REQUEST bytes), the agent answers one JSON object
 * and a newline, then closes. Only root, the daemon's own user or members
 * of the configured group may connect (socket mode 0660 and SO_PEERCRED).
 * Each connection is served on its own thread (at most LOCALAPI_MAX_CONNS
 * at once), so a slow `up` does not block `status`.
 */
#ifndef WM_LOCALAPI_H
#define WM_LOCALAPI_H

#include <sys/types.h>

#include <jansson.h>

#include "common/err.h"

enum { LOCALAPI_MAX_REQUEST = 1 << 16, LOCALAPI_MAX_CONNS = 16 };

/* Handles one request (borrowed); returns the reply (new reference, never NULL). */
typedef json_t *(*localapi_handler)(void *ctx, json_t *req);

struct localapi;

/* Binds `path` (replacing a stale socket), owned by `group` when it is not
 * (gid_t)-1, and starts serving. */
int localapi_new(const char *path, gid_t group, localapi_handler h, void *ctx,
		 struct localapi **out) WM_MUST_CHECK;
/* Stops accepting, waits for running requests, removes the socket. */
void localapi_free(struct localapi *l);

/* Client side (the CLI): sends req, waits up to timeout_ms for the reply. */
int localapi_call(const char *path, json_t *req, int timeout_ms, json_t **reply,
		  char *why, size_t whylen) WM_MUST_CHECK;

#endif
