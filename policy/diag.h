/* SPDX-License-Identifier: MIT */
/*
 * Diagnostics for the policy library: a bounded list of {line, col, message}
 * entries. The library never prints; callers format them (the CLI as
 * FILE:LINE:COL: message, the REST layer as JSON). Lines and columns are
 * 1-based; columns count bytes. line 0 means "no position".
 */
#ifndef WM_POLICY_DIAG_H
#define WM_POLICY_DIAG_H

#include <stddef.h>

enum {
	POLICY_DIAG_MSG_MAX = 256,
	POLICY_DIAGS_MAX = 200,	/* more problems than this are dropped, and counted */
};

struct policy_diag {
	int line, col;
	char msg[POLICY_DIAG_MSG_MAX];
};

struct policy_diags {
	struct policy_diag *v;
	size_t n, cap;
	size_t dropped;		/* problems past POLICY_DIAGS_MAX */
};

/* Zeroes the list. */
void policy_diags_init(struct policy_diags *d);
/* Frees the entries; the list is empty and reusable afterwards. */
void policy_diags_cleanup(struct policy_diags *d);
/* Appends one diagnostic (printf-style message, truncated to fit). A NULL list
 * is allowed and ignores the call. Never fails: on allocation failure or past
 * the maximum the entry is counted in `dropped`. */
void policy_diags_add(struct policy_diags *d, int line, int col, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

#endif
