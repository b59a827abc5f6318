// SPDX-License-Identifier: MIT
/* jansson helpers with field-named errors. */
#include <stdio.h>
#include <string.h>

#include "common/jsonx.h"

json_t *
jsonx_parse_object(const char *text, size_t len, size_t max, char *why,
		   size_t whylen)
{
	json_error_t e;
	json_t *v;

	if (len > max) {
		if (why)
			snprintf(why, whylen, "body is larger than %zu bytes", max);
		return NULL;
	}
	v = json_loadb(text, len, JSON_REJECT_DUPLICATES, &e);
	if (v == NULL) {
		if (why)
			snprintf(why, whylen, "malformed JSON at line %d column %d: %s",
			    e.line, e.column, e.text);
		return NULL;
	}
	if (!json_is_object(v)) {
		if (why)
			snprintf(why, whylen, "body must be a JSON object");
		json_decref(v);
		return NULL;
	}
	return v;
}

int
jsonx_str(json_t *o, const char *field, bool required, const char **out,
	  char *why, size_t whylen)
{
	json_t *v = json_object_get(o, field);

	if (v == NULL || json_is_null(v)) {
		if (required) {
			if (why)
				snprintf(why, whylen, "field \"%s\" is required", field);
			return ERR_INVALID;
		}
		return ERR_NOT_FOUND;
	}
	if (!json_is_string(v)) {
		if (why)
			snprintf(why, whylen, "field \"%s\" must be a string", field);
		return ERR_INVALID;
	}
	*out = json_string_value(v);
	return 0;
}

int
jsonx_bool(json_t *o, const char *field, bool *out, char *why, size_t whylen)
{
	json_t *v = json_object_get(o, field);

	if (v == NULL || json_is_null(v))
		return ERR_NOT_FOUND;
	if (!json_is_boolean(v)) {
		if (why)
			snprintf(why, whylen, "field \"%s\" must be true or false", field);
		return ERR_INVALID;
	}
	*out = json_is_true(v);
	return 0;
}

int
jsonx_int(json_t *o, const char *field, int64_t *out, char *why, size_t whylen)
{
	json_t *v = json_object_get(o, field);

	if (v == NULL || json_is_null(v))
		return ERR_NOT_FOUND;
	if (!json_is_integer(v)) {
		if (why)
			snprintf(why, whylen, "field \"%s\" must be an integer", field);
		return ERR_INVALID;
	}
	*out = (int64_t)json_integer_value(v);
	return 0;
}

char *
jsonx_dump(const json_t *v)
{
	return json_dumps(v, JSON_COMPACT | JSON_ENSURE_ASCII);
}
