// SPDX-License-Identifier: MIT
/* libFuzzer target: the HuJSON parser and its conversion to jansson. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "policy/hujson.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct hujson_value *v = NULL;
	struct policy_diag d;
	json_t *j = NULL;

	if (hujson_parse((const char *)data, size, &v, &d) == 0) {
		if (v == NULL)
			__builtin_trap();
		j = hujson_value_to_json(v);
		json_decref(j);
		hujson_free(v);
	} else if (v != NULL || d.line < 1 || d.col < 1 || memchr(d.msg, '\0', sizeof(d.msg)) == NULL) {
		__builtin_trap();
	}
	return 0;
}
