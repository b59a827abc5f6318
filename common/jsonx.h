/* SPDX-License-Identifier: MIT */
/*
 * Small helpers over jansson for request bodies: typed field access that
 * reports which field was wrong.
 */
#ifndef WM_JSONX_H
#define WM_JSONX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "common/err.h"

/* Parses a complete JSON object of at most `max` bytes. On error fills
 * `why` (may be NULL) and returns NULL. New reference. */
json_t *jsonx_parse_object(const char *text, size_t len, size_t max,
			   char *why, size_t whylen);

/* Each returns 0, ERR_NOT_FOUND when absent (and `required` is false), or
 * ERR_INVALID when present with the wrong type; `field` names it in `why`. */
int jsonx_str(json_t *o, const char *field, bool required, const char **out,
	      char *why, size_t whylen) WM_MUST_CHECK;
int jsonx_bool(json_t *o, const char *field, bool *out,
	       char *why, size_t whylen) WM_MUST_CHECK;
int jsonx_int(json_t *o, const char *field, int64_t *out,
	      char *why, size_t whylen) WM_MUST_CHECK;

/* Serialises compactly; caller frees. */
char *jsonx_dump(const json_t *v);

#endif
