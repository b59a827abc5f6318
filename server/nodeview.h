/* SPDX-License-Identifier: MIT */
/* JSON views of a node: as a peer in a netmap, and as an admin sees it. */
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

#endif
