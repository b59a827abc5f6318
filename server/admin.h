/* SPDX-License-Identifier: MIT */
/*
 * The admin console's pages: /admin/ serves the files embedded from
 * server/console/ (plain HTML, CSS and ES modules, no CDN) with a strict
 * Content-Security-Policy (scripts, styles and connections from this origin
 * only; no inline script), X-Frame-Options: DENY and no-sniff. The pages
 * use only the public REST API plus the session endpoints (session.h) and
 * the event stream (events.h).
 */
#ifndef WM_ADMIN_H
#define WM_ADMIN_H

#include "server/http.h"

struct server;

/* GET or HEAD /admin and /admin/... */
void admin_handle(struct server *s, struct http_request *req, struct http_response *resp);

#endif
