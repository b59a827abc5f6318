/* SPDX-License-Identifier: MIT */
/*
 * Interactive enrolment (docs/protocol.md "interactive login", docs/oidc.md):
 * registrations waiting for a person. A machine that registers without an
 * auth key and with "interactive" gets SERVER/register/ID; its agent then
 * holds POST /machine/register/wait open. The registration completes when
 * someone logs in at that URL with OpenID Connect, or when an admin runs
 * `nodes register --user U ID`; the waiting request answers at once.
 *
 * A registration id is 128 random bits, lives register_url_expiry (default
 * 15 min), and completes once. The table is in memory and bounded
 * (ENROL_MAX, and ENROL_PER_ADDR from one client address, so that one
 * source minting machine keys cannot lock everyone out); a server restart
 * forgets it and the agent asks again. Replicas on PostgreSQL also keep
 * each registration in the database (migration 0011), so that any replica
 * lists and completes it and an agent's long-poll may move to another.
 *
 * Threads: one mutex over the table and the waiting streams; the
 * registration write (control_register_owned) runs without it, with the
 * entry marked busy so that no second login can complete it meanwhile.
 */
#ifndef WM_ENROL_H
#define WM_ENROL_H

#include <jansson.h>

#include "common/keys.h"
#include "server/control.h"
#include "server/http.h"
#include "server/oidc.h"

enum {
	ENROL_MAX = 4096,		/* waiting registrations */
	ENROL_PER_ADDR = 64,		/* of them from one client address */
	ENROL_WAITERS_MAX = 4096,	/* held /machine/register/wait requests */
	ENROL_ID_LEN = 32,		/* hex characters */
	ENROL_WAIT_S = 25,		/* one long-poll */
};

struct enrol;
struct server;

int enrol_new(struct enrol **out) WM_MUST_CHECK;
/* Ends every waiting request. NULL is a no-op. */
void enrol_free(struct enrol *e);
/* Timer thread, about every 100 ms: answers long-polls that reached their
 * deadline and drops expired registrations. */
void enrol_tick(struct server *s);

/* POST /machine/register (interactive, machine needs a login): 202 with
 * {"auth_url","auth_id","expires_at"}. */
void enrol_begin(struct server *s, struct http_request *req, struct http_response *resp,
		 const uint8_t mkey[static KEY_LEN], const struct control_reg *rg);
/* POST /machine/register/wait {"auth_id"}: 200 with {"state":"pending"}
 * after ENROL_WAIT_S, {"state":"done","node":{...},"login":"..."} or
 * {"state":"failed"|"expired","error":"..."}; 404 for an unknown id or
 * another machine's. */
void enrol_wait(struct server *s, struct http_response *resp, const uint8_t mkey[static KEY_LEN],
		json_t *body);
/* Has this machine a registration here (waiting, or ended within the
 * hour)? Such a machine may use /machine/register/wait before it has a node. */
bool enrol_has_machine(struct server *s, const uint8_t mkey[static KEY_LEN]);
/* GET /register/ID (HTML), and GET /oidc/callback for registrations. */
void enrol_page(struct server *s, struct http_request *req, struct http_response *resp);
void enrol_oidc_done(struct server *s, const struct oidc_login *login, struct http_response *resp);

/* Admin: the waiting registrations (JSON array, new reference; with
 * replicas, every replica's); NULL when they cannot be read. */
json_t *enrol_pending_json(struct server *s);
/* Admin: completes registration `id` for user `user` (who must exist).
 * ERR_NOT_FOUND, ERR_EXPIRED, ERR_USED (already completed or in progress),
 * or the registration's error; why says which. */
int enrol_approve(struct server *s, const char *id, const char *user, struct store_node *out,
		  char *why, size_t whylen) WM_MUST_CHECK;

#endif
