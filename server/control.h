/* SPDX-License-Identifier: MIT */
/*
 * The registration write that the node protocol (a pre-auth key), an
 * interactive login (server/enrol.c) and an admin's approval share: one
 * transaction that creates or updates the node of a machine key.
 */
#ifndef WM_CONTROL_H
#define WM_CONTROL_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "common/err.h"
#include "common/keys.h"
#include "server/store.h"

struct server;

/* What a node asked for in POST /machine/register. */
struct control_reg {
	uint8_t node_key[KEY_LEN];
	uint8_t disco_key[KEY_LEN];
	char hostname[STORE_NAME_MAX];
	bool has_routes;
	char routes[STORE_ROUTES_MAX];
	json_t *tags;		/* requested tags (borrowed from the body), NULL: none */
};

/* The owner of a node enrolled without a pre-auth key. resolve, when set,
 * runs inside the registration transaction to fill user_id and user (for
 * example by creating the user of a first OpenID Connect login), so that a
 * refused registration writes no user either. */
struct control_owner {
	int64_t user_id;
	char user[STORE_NAME_MAX];
	int64_t expires_at;	/* node key expiry, 0: never */
	int (*resolve)(void *ctx, struct server *s, struct control_owner *o, char *why,
		       size_t whylen);
	void *ctx;
};

/* Creates or updates the node of `mkey` for `o` in one transaction, then
 * tells the mapper. *created says whether the node is new. On failure
 * nothing was written and `why` says what went wrong. */
int control_register_owned(struct server *s, const uint8_t mkey[static KEY_LEN],
			   const struct control_reg *rg, struct control_owner *o,
			   struct store_node *out, bool *created, char *why, size_t whylen)
	WM_MUST_CHECK;

#endif
