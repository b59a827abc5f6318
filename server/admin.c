// SPDX-License-Identifier: MIT
/*
 * Serves the embedded admin console (see admin.h). The files are compiled
 * in by scripts/embed-assets.sh; a lookup is a walk over a few names.
 */
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "server/admin.h"
#include "server/admin_assets.h"
#include "server/server.h"
#include "server/session.h"

/* Everything from this origin, nothing inline, no frames, no plugins. */
static const char csp[] =
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'none'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'";

static int
security_headers(struct http_response *resp)
{
	if (http_add_header(resp, "Content-Security-Policy", csp) != 0 ||
	    http_add_header(resp, "X-Frame-Options", "DENY") != 0 ||
	    http_add_header(resp, "X-Content-Type-Options", "nosniff") != 0 ||
	    http_add_header(resp, "Referrer-Policy", "no-referrer") != 0 ||
	    http_add_header(resp, "Cross-Origin-Opener-Policy", "same-origin") != 0)
		return ERR_NOMEM;
	return 0;
}

static const struct admin_asset *
find(const char *name)
{
	for (unsigned i = 0; i < admin_assets_count; i++)
		if (strcmp(admin_assets[i].name, name) == 0)
			return &admin_assets[i];
	return NULL;
}

void
admin_handle(struct server *s, struct http_request *req, struct http_response *resp)
{
	const struct admin_asset *a;
	const char *name;
	char *body;

	if (strcmp(req->method, "GET") != 0 && strcmp(req->method, "HEAD") != 0) {
		http_problem(resp, 405, NULL, "%s is not supported on %s", req->method, req->path);
		return;
	}
	if (strcmp(req->path, "/admin") == 0) {
		http_set_body(resp, 308, NULL, NULL, 0);
		if (http_add_header(resp, "Location", "/admin/") != 0)
			http_problem(resp, 500, NULL, "out of memory");
		return;
	}
	if (strcmp(req->path, "/admin/oidc") == 0) {
		session_oidc_start(s, req, resp);
		return;
	}
	name = req->path + strlen("/admin/");
	if (*name == 0)
		name = "index.html";
	if ((a = find(name)) == NULL) {
		http_problem(resp, 404, NULL, "no such page: %s", req->path);
		return;
	}
	if ((body = malloc(a->len + 1)) == NULL) {
		http_problem(resp, 500, NULL, "out of memory");
		return;
	}
	memcpy(body, a->data, a->len);
	http_set_body(resp, 200, a->type, body, a->len);
	/* Assets change only with the binary: revalidate, never serve stale. */
	if (security_headers(resp) != 0 || http_add_header(resp, "Cache-Control", "no-cache") != 0) {
		http_response_cleanup(resp);
		http_problem(resp, 500, NULL, "out of memory");
	}
}
