/* SPDX-License-Identifier: MIT */
/* Views of a node: as a peer in a netmap and as an admin sees it (JSON),
 * and what the policy compiler reads of it (its tags and advertised
 * routes, parsed from the stored JSON). */
#ifndef WM_NODEVIEW_H
#define WM_NODEVIEW_H

#include <stdbool.h>

#include <jansson.h>

#include "common/addr.h"
#include "server/store.h"

/* New references. */
/* `routes`: the routes this node carries for its peers (its primary subnet
 * routes and its exit routes), added to its allowed IPs. */
json_t *nodeview_peer(const struct store_node *n, bool online, int64_t now,
		      const struct ip_prefix *routes, size_t nroutes);
json_t *nodeview_admin(const struct store_node *n, bool online, int64_t now);

/* The policy compiler reads up to NODEVIEW_TAGS tags of up to
 * NODEVIEW_TAG_MAX bytes each, up to the first one that is not a string. */
enum { NODEVIEW_TAGS = 16, NODEVIEW_TAG_MAX = 64 };

/* Parses a node's stored tags (a JSON array) into a new block of
 * NUL-terminated strings back to back: *out (NULL when there are none),
 * its length in *bytes and the count in *ntags. Returns 0, or ERR_NOMEM
 * with no tags. */
int nodeview_tags(const char *tags_json, char **out, size_t *bytes, size_t *ntags)
    WM_MUST_CHECK;

/* Whether the node advertises any route. */
bool nodeview_advertises(const struct store_node *n);

#endif
