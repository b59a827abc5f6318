/* SPDX-License-Identifier: MIT */
/*
 * Live updates for the admin console: GET /api/v1/events, a Server-Sent
 * Events stream. It is fed by the map's change stream: the timer thread
 * looks at the mapper's version (which every committed node change and every
 * online/offline transition advances) and at the active policy's ETag, and
 * when either moved it wakes every subscriber, which sends one `change`
 * event with the new figures; the console then re-reads what it shows
 * through the REST API. Changes between two ticks (100 ms) coalesce into one
 * event, so a burst of a thousand nodes coming online costs each console one
 * refresh. The only coupling to the mapper is mapper_stats(); the stream
 * ends when its session does (checked at every event and keepalive).
 */
#ifndef WM_EVENTS_H
#define WM_EVENTS_H

#include "common/err.h"
#include "server/http.h"

struct events;
struct server;
struct session_auth;

enum {
	EVENTS_MAX_STREAMS = 64,	/* open event streams; more answer 503 */
	EVENTS_KEEPALIVE_S = 15,
};

int events_new(struct events **out) WM_MUST_CHECK;
/* Call after the HTTP layer stopped (no stream is left). */
void events_free(struct events *ev);

/* GET /api/v1/events for an authenticated caller. */
void events_handle(struct server *s, struct http_request *req, struct http_response *resp,
		   const struct session_auth *a);

/* Timer thread, every tick: notices changes and wakes the streams. */
void events_tick(struct server *s);

#endif
