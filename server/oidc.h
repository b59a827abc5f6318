/* SPDX-License-Identifier: MIT */
/*
 * OpenID Connect relying party (docs/oidc.md): discovery, the
 * authorization-code flow with PKCE (S256), state and nonce, the code
 * exchange at the token endpoint, the ID token checked by oidc_token.c
 * against the provider's cached JWKS, and the allowed_* rules.
 *
 * A login is started for a purpose with a reference (the registration id
 * for node enrolment, a return path for the admin console); the callback
 * gives both back with the verified identity, so any part of the server can
 * sign people in:
 *
 *   oidc_login_start(o, OIDC_FOR_ADMIN, "/admin/", &url, ...) -> 302 to url
 *   ... the provider redirects to SERVER/oidc/callback ...
 *   oidc_callback(o, req, &login, ...) -> login.purpose, login.ref, login.id
 *
 * Threads: every function may be called from any HTTP thread; one mutex
 * guards the login table and the provider metadata. Network calls (libcurl,
 * with the configured timeout) run without the lock.
 */
#ifndef WM_OIDC_H
#define WM_OIDC_H

#include <stdbool.h>
#include <stdint.h>

#include "common/err.h"
#include "server/http.h"

enum {
	OIDC_LIST_MAX = 32,		/* entries in each allowed_* list */
	OIDC_ITEM_MAX = 256,		/* one entry, one claim value */
	OIDC_GROUPS_MAX = 64,		/* groups kept from the token */
	OIDC_REF_MAX = 256,
	OIDC_LOGINS_MAX = 4096,		/* logins in flight */
	OIDC_LOGIN_TTL_S = 600,		/* a started login must end within this */
	OIDC_DEFAULT_TIMEOUT_S = 10,	/* each call to the provider */
	OIDC_DEFAULT_SKEW_S = 60,	/* accepted clock difference for exp/iat/nbf */
};

struct oidc_config {
	bool enabled;
	char issuer[512];
	char client_id[256];
	char client_secret[512];	/* inline secret (prefer client_secret_path) */
	char client_secret_path[512];
	char scope[256];		/* default "openid profile email" */
	char extra_params[1024];	/* "&k=v..." URL-encoded, added to the authorize URL */
	char allowed_domains[OIDC_LIST_MAX][OIDC_ITEM_MAX];
	int n_allowed_domains;
	char allowed_users[OIDC_LIST_MAX][OIDC_ITEM_MAX];
	int n_allowed_users;
	char allowed_groups[OIDC_LIST_MAX][OIDC_ITEM_MAX];
	int n_allowed_groups;
	/* Who may sign in to the admin console (server/session.c): these users
	 * (email, preferred_username or wiremesh user name) or members of these
	 * groups, after the allowed_* checks. Both empty: no console login. */
	char admin_users[OIDC_LIST_MAX][OIDC_ITEM_MAX];
	int n_admin_users;
	char admin_groups[OIDC_LIST_MAX][OIDC_ITEM_MAX];
	int n_admin_groups;
	char groups_claim[64];		/* default "groups" */
	int64_t expiry_s;		/* node key expiry after a login; -1: node_expiry */
	bool expiry_from_token;		/* the ID token's exp instead */
	bool strip_email_domain;	/* user "alice" instead of "alice@example.com" */
	bool require_email_verified;	/* default true */
	int64_t timeout_s;		/* each call to the provider */
	int64_t skew_s;
};

enum oidc_purpose {
	OIDC_FOR_REGISTER = 1,	/* ref: the registration id (server/enrol.c) */
	OIDC_FOR_ADMIN = 2,	/* ref: a path under /admin/ to return to */
};

/* Who logged in, after every check passed. */
struct oidc_identity {
	char issuer[512];
	char subject[OIDC_ITEM_MAX];
	char email[OIDC_ITEM_MAX];	/* "" unless verified (or not required) */
	char display_name[OIDC_ITEM_MAX];
	char preferred_username[OIDC_ITEM_MAX];
	char user[64];			/* the wiremesh user name for this identity */
	char groups[OIDC_GROUPS_MAX][OIDC_ITEM_MAX];
	int ngroups;
	int64_t expires_at;		/* the ID token's exp */
};

struct oidc_login {
	int purpose;
	char ref[OIDC_REF_MAX];
	struct oidc_identity id;
};

struct oidc;

/* Defaults of the `oidc` block (disabled). */
void oidc_config_defaults(struct oidc_config *c);
/* Reads the `oidc` object of server.hujson; `why` names the bad field. */
int oidc_config_parse(struct oidc_config *c, const void *json_object, char *why, size_t whylen)
	WM_MUST_CHECK;

/* redirect_uri is SERVER/oidc/callback. Reads client_secret_path. Does no
 * network I/O: discovery happens at the first login and is cached. */
int oidc_new(const struct oidc_config *cfg, const char *redirect_uri, struct oidc **out,
	     char *why, size_t whylen) WM_MUST_CHECK;
/* Wipes the client secret. NULL is a no-op. */
void oidc_free(struct oidc *o);

/*
 * Starts a login: fetches the discovery document if needed, records a new
 * state, nonce and PKCE verifier, and returns the provider's authorization
 * URL to redirect the browser to (*url: malloc'd). On failure fills
 * *status (502/503/504) and why (fit for the page and the log).
 */
int oidc_login_start(struct oidc *o, int purpose, const char *ref, char **url, int *status,
		     char *why, size_t whylen) WM_MUST_CHECK;

/*
 * Finishes a login at GET /oidc/callback: checks and consumes the state,
 * exchanges the code (with the PKCE verifier), verifies the ID token and
 * applies allowed_domains/users/groups. 0 with *login filled, or an error
 * with *status (400, 401, 403, 502, 504) and why (no secrets or tokens).
 * A state is consumed by its first callback, good or bad.
 */
int oidc_callback(struct oidc *o, struct http_request *req, struct oidc_login *login,
		  int *status, char *why, size_t whylen) WM_MUST_CHECK;

/* The node key expiry a login gives (0: never), given the server's
 * node_expiry and the identity. */
int64_t oidc_node_expiry(const struct oidc *o, int64_t node_expiry_s,
			 const struct oidc_identity *id, int64_t now);

#endif
