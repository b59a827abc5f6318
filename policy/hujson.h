/* SPDX-License-Identifier: MIT */
/*
 * HuJSON ("human JSON"): JSON plus // line comments, block comments and
 * trailing commas in arrays and objects. The parser keeps the position
 * (line, column) of every value and object key so that later checks can
 * point at the offending text. Input is bounded (HUJSON_MAX_SIZE bytes,
 * HUJSON_MAX_DEPTH levels of nesting); duplicate keys in one object, invalid
 * UTF-8, raw control characters in strings and \u0000 are errors. Errors are
 * reported as one diagnostic with line:column; the parser never prints.
 */
#ifndef WM_POLICY_HUJSON_H
#define WM_POLICY_HUJSON_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "common/err.h"
#include "policy/diag.h"

enum {
	HUJSON_MAX_SIZE = 1 << 20,	/* 1 MiB of text */
	HUJSON_MAX_DEPTH = 64,
};

enum hujson_type {
	HUJSON_NULL,
	HUJSON_BOOL,
	HUJSON_NUMBER,
	HUJSON_STRING,
	HUJSON_ARRAY,
	HUJSON_OBJECT,
};

struct hujson_value;

struct hujson_member {
	char *key;			/* NUL-terminated, UTF-8 */
	int key_line, key_col;
	struct hujson_value *value;
};

/* Read-only for callers; owned by the document. */
struct hujson_value {
	enum hujson_type type;
	int line, col;			/* where the value starts */
	bool b;				/* HUJSON_BOOL */
	double num;			/* HUJSON_NUMBER */
	bool is_int;			/* HUJSON_NUMBER written without fraction/exponent */
	char *str;			/* HUJSON_STRING (NUL-terminated) and HUJSON_NUMBER (its text) */
	size_t len;			/* string length in bytes / array or object count */
	struct hujson_value **items;	/* HUJSON_ARRAY */
	struct hujson_member *members;	/* HUJSON_OBJECT, in source order */
};

/* Parses `len` bytes of HuJSON. On success stores a new tree in *out (free
 * with hujson_free) and returns 0. On failure returns ERR_INVALID (or
 * ERR_TOO_LARGE / ERR_NOMEM), leaves *out NULL and fills *diag (may be NULL). */
int hujson_parse(const char *text, size_t len, struct hujson_value **out,
		 struct policy_diag *diag) WM_MUST_CHECK;

/* Frees a tree returned by hujson_parse; NULL is a no-op. */
void hujson_free(struct hujson_value *v);

/* The member named `key` of an object, or NULL (also when v is not an object).
 * Borrowed, valid as long as the tree. */
const struct hujson_value *hujson_get(const struct hujson_value *v, const char *key);

/* Name of a type for messages ("string", "array", ...). */
const char *hujson_type_name(enum hujson_type t);

/* Converts a parsed value into a plain jansson value (new reference, NULL on
 * allocation failure). Integers become json_integer, others json_real. */
json_t *hujson_value_to_json(const struct hujson_value *v);

/* Parses HuJSON text and returns a plain jansson tree in *out (new reference).
 * Used for the server's HuJSON config file. Same errors as hujson_parse. */
int hujson_to_json(const char *text, size_t len, json_t **out,
		   struct policy_diag *diag) WM_MUST_CHECK;

#endif
