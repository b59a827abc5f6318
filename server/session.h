/* SPDX-License-Identifier: MIT */
/*
 * Admin console sessions. A browser signs in once with an API key (or a
 * one-time sign-in link) and gets a random session token in an HttpOnly,
 * SameSite=Strict cookie (Secure and `__Host-` named under TLS); only the
 * token's SHA-256 is stored (table admin_sessions, migration 0007), so
 * sessions survive restarts and a stolen database holds no usable token.
 * A session ends at its absolute expiry, after being idle too long, at
 * sign-out, or when the API key it was opened with expires.
 *
 * The cookie is accepted by /api/v1 in place of a Bearer key; every request
 * that changes something (any method but GET and HEAD) must also carry the
 * session's CSRF token in `X-CSRF-Token`. The CSRF token is derived from the
 * session token (a hash of it), so it needs no storage and dies with it.
 *
 * Endpoints (docs/openapi.json): POST/GET/DELETE /api/v1/session (sign in,
 * who am I, sign out) and POST /api/v1/session/signin-links (a one-time
 * sign-in link, for `make demo` and for handing the console to someone).
 */
#ifndef WM_SESSION_H
#define WM_SESSION_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "server/http.h"

struct server;

enum {
	SESSION_MAX = 1000,		/* live sessions and links; sign-in answers 429 above */
	SESSION_WHO_MAX = 128,
	SESSION_LINK_TTL_S = 15 * 60,	/* default lifetime of a sign-in link */
};

/* Who made an authenticated /api/v1 request. */
struct session_auth {
	char who[SESSION_WHO_MAX];	/* "apikey:PREFIX" or "session:SUBJECT" */
	char apikey_prefix[16];		/* the API key behind it, "" for none */
	int64_t session_id;		/* 0: Bearer key */
	uint8_t token_hash[32];		/* the session's, for session_live() */
};

/* /api/v1/session: POST signs in (no credentials needed), GET and DELETE
 * need the cookie (DELETE also the CSRF header). */
void session_handle(struct server *s, struct http_request *req, struct http_response *resp);

/* Authenticates a request by its session cookie. 0 and *out filled, or
 * ERR_UNAUTHORIZED (no cookie, unknown or expired session) or ERR_FORBIDDEN
 * (a change without the right X-CSRF-Token), with the reason in `why`. */
int session_authenticate(struct server *s, struct http_request *req,
			 struct session_auth *out, char *why, size_t whylen) WM_MUST_CHECK;

/* True when the request carries a session cookie (and no Authorization). */
int session_has_cookie(struct http_request *req);

/* Whether the session of `a` is still live now (for long-lived event
 * streams); always true for a Bearer key. */
int session_live(struct server *s, const struct session_auth *a);

/* POST /api/v1/session/signin-links, already authenticated as `a`. */
void session_links_handle(struct server *s, struct http_request *req,
			  struct http_response *resp, const struct session_auth *a);

/* Finds cookie `name` in a Cookie header value ("a=1; b=2"; NULL is
 * allowed) and copies its value into out. 0, ERR_NOT_FOUND, or
 * ERR_TOO_LARGE when the value does not fit (out is then ""). */
int session_cookie_find(const char *header, const char *name, char *out,
			size_t outlen) WM_MUST_CHECK;

/* GET /admin/oidc: starts an OpenID Connect sign-in for the console
 * (302 to the provider), when the server's oidc block names admin_users or
 * admin_groups; 404 otherwise. */
void session_oidc_start(struct server *s, struct http_request *req, struct http_response *resp);

/* The provider sent an admin-console login back (GET /oidc/callback with
 * purpose OIDC_FOR_ADMIN): opens a session if the identity is one of the
 * configured admins (303 to /admin/), else a 403 page. */
struct oidc_login;
void session_oidc_done(struct server *s, const struct oidc_login *login,
		       struct http_response *resp);

/* Timer thread: deletes expired sessions about once a minute. */
void session_tick(struct server *s);

#endif
