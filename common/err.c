// SPDX-License-Identifier: MIT
/* Error names and the single error → HTTP status table. */
#include "common/err.h"

static const struct {
	const char *str;
	int http;
} table[] = {
	[0] = { "success", 200 },
	[1] = { "internal error", 500 },
	[2] = { "out of memory", 500 },
	[3] = { "invalid input", 400 },
	[4] = { "not found", 404 },
	[5] = { "already exists", 409 },
	[6] = { "unauthorized", 401 },
	[7] = { "forbidden", 403 },
	[8] = { "expired", 401 },
	[9] = { "already used", 401 },
	[10] = { "too large", 413 },
	[11] = { "exhausted", 503 },
	[12] = { "i/o error", 500 },
	[13] = { "database error", 500 },
	[14] = { "database schema is newer than this binary", 500 },
	[15] = { "bad signature", 401 },
	[16] = { "timestamp outside the allowed window", 401 },
	[17] = { "replayed request", 401 },
	[18] = { "precondition failed", 412 },
	[19] = { "unprocessable", 422 },
	[20] = { "timed out", 504 },
	[21] = { "unavailable", 503 },
	[22] = { "protocol error", 400 },
};

const char *
err_str(int err)
{
	unsigned i = (unsigned)(-err);

	if (err > 0 || i >= sizeof(table) / sizeof(table[0]))
		return "unknown error";
	return table[i].str;
}

int
err_http_status(int err)
{
	unsigned i = (unsigned)(-err);

	if (err > 0 || i >= sizeof(table) / sizeof(table[0]))
		return 500;
	return table[i].http;
}
