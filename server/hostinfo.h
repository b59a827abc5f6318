/* SPDX-License-Identifier: MIT */
/*
 * What each node's agent says about its host: operating system and agent
 * version, sent with every map request ("hostinfo" in docs/protocol.md) and
 * shown by the admin API and console. Kept in memory only: every agent
 * opens a map stream at start and after each server restart, so the table
 * refills by itself within a reconnect. Thread-safe (one mutex).
 */
#ifndef WM_HOSTINFO_H
#define WM_HOSTINFO_H

#include <stdint.h>

#include <jansson.h>

#include "common/err.h"

enum {
	HOSTINFO_FIELD_MAX = 64,	/* bytes of each string, NUL included */
	HOSTINFO_MAX_NODES = 1 << 20,	/* entries; more are not recorded */
};

struct hostinfo;

int hostinfo_new(struct hostinfo **out) WM_MUST_CHECK;
void hostinfo_free(struct hostinfo *h);

/* Reads the optional "hostinfo" object of a map request ({"os",
 * "os_version", "client_version"}: short printable strings) and records it
 * for the node. 0 when absent or recorded; ERR_INVALID with `why` when it
 * is malformed (the request is then refused). */
int hostinfo_update(struct hostinfo *h, int64_t node_id, json_t *request, char *why,
		    size_t whylen) WM_MUST_CHECK;

/* Adds "os" ("linux 6.1.0") and "version" (the agent's) to a node's admin
 * JSON when known. */
void hostinfo_annotate(struct hostinfo *h, int64_t node_id, json_t *node);

/* The node was deleted. */
void hostinfo_forget(struct hostinfo *h, int64_t node_id);

#endif
