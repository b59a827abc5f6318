/* SPDX-License-Identifier: MIT */
/*
 * Subnet and exit routes: validation of what nodes advertise and admins
 * approve, the routes a node serves (advertised and approved), and the
 * choice of one primary router per subnet prefix among several (high
 * availability). Exit routes (0.0.0.0/0, ::/0) have no primary: every exit
 * node serves them and each client picks one.
 */
#ifndef WM_ROUTES_H
#define WM_ROUTES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "common/addr.h"
#include "common/err.h"
#include "server/store.h"

enum { ROUTES_MAX = 16 };	/* routes per node, advertised or approved */

/* Parses stored JSON text (an array of CIDRs). Bad entries are skipped.
 * Returns how many were written to out (at most max). */
size_t routes_from_json(const char *text, struct ip_prefix *out, size_t max);

/*
 * Checks a request's route list (a JSON array of CIDR strings, at most
 * ROUTES_MAX, host bits clear, no duplicates) and writes its canonical,
 * sorted JSON text to out. NULL means an empty list. Returns 0 or
 * ERR_INVALID with the reason in why.
 */
int routes_normalize(const json_t *arr, const char *field, char *out, size_t outlen,
		     char *why, size_t whylen) WM_MUST_CHECK;

bool route_is_exit(const struct ip_prefix *p);

/* Routes the node serves: advertised and approved. Returns the count. */
size_t routes_served(const struct store_node *n, struct ip_prefix out[static ROUTES_MAX]);

/* Adds `p` to the node's approved list (no-op if present). ERR_EXHAUSTED
 * when the list is full. */
int routes_approve(struct store_node *n, const struct ip_prefix *p) WM_MUST_CHECK;

#endif
