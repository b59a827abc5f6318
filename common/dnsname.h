/* SPDX-License-Identifier: MIT */
/*
 * DNS names as text: the checks both the server (its `dns` config) and the
 * agent (its resolver) apply. A name is dot-separated labels of 1..63 bytes
 * of letters, digits, '-' and '_' (no '-' at either end of a label), at most
 * 253 bytes without the optional final dot. Comparison ignores ASCII case.
 */
#ifndef WM_DNSNAME_H
#define WM_DNSNAME_H

#include <stdbool.h>
#include <stddef.h>

enum {
	DNSNAME_MAX = 254,	/* 253 bytes and the NUL */
	DNSLABEL_MAX = 63,
};

/* Checks `name` (final dot allowed). On failure fills `why` with the reason
 * and returns false. */
bool dnsname_valid(const char *name, char *why, size_t whylen);

/* Copies `name` lower-cased and without a final dot into out[DNSNAME_MAX]. */
void dnsname_norm(char out[static DNSNAME_MAX], const char *name);

/* Whether `name` equals `domain` or lies under it (both normalised). */
bool dnsname_under(const char *name, const char *domain);

#endif
