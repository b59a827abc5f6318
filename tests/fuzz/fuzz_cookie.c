// SPDX-License-Identifier: MIT
/*
 * libFuzzer target: the Cookie header parser of the admin console's
 * sessions (session_cookie_find). The input is a header value; the first
 * line, when there is one, is the cookie name to look for. Invariants: the
 * answer is 0, ERR_NOT_FOUND or ERR_TOO_LARGE; a found value fits its
 * buffer, is NUL-terminated and is a substring of the header that follows
 * "NAME=" at the start of a cookie.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "server/session.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text = malloc(size + 1), *name = "__Host-wm_session", *hdr, *nl, *at;
	char out[65], key[160];
	int r;

	if (text == NULL)
		return 0;
	memcpy(text, data, size);
	text[size] = 0;
	hdr = text;
	if ((nl = strchr(text, '\n')) != NULL && nl > text) {
		*nl = 0;
		name = text;
		hdr = nl + 1;
	}
	r = session_cookie_find(hdr, name, out, sizeof(out));
	if (r != 0 && r != ERR_NOT_FOUND && r != ERR_TOO_LARGE)
		abort();
	if (r != 0 && out[0] != 0)
		abort();
	if (r == 0) {
		if (strlen(out) >= sizeof(out))
			abort();
		if (strlen(name) + 2 < sizeof(key)) {
			strcpy(key, name);
			strcat(key, "=");
			strncat(key, out, sizeof(key) - strlen(key) - 1);
			if (strlen(name) + 1 + strlen(out) < sizeof(key) && (at = strstr(hdr, key)) == NULL)
				abort();
		}
	}
	free(text);
	return 0;
}
