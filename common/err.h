/* SPDX-License-Identifier: MIT */
/*
 * Project-wide error codes. Fallible functions return 0 or one of these
 * negative values; err_str() names them and err_http_status() maps them onto
 * the one HTTP status table the REST layer uses.
 */
#ifndef WM_ERR_H
#define WM_ERR_H

#define WM_MUST_CHECK __attribute__((warn_unused_result))

enum wm_err {
	ERR_OK = 0,
	ERR_INTERNAL = -1,     /* bug or unexpected library failure */
	ERR_NOMEM = -2,
	ERR_INVALID = -3,      /* malformed input */
	ERR_NOT_FOUND = -4,
	ERR_EXISTS = -5,       /* unique constraint, duplicate name */
	ERR_UNAUTHORIZED = -6, /* missing or bad credentials */
	ERR_FORBIDDEN = -7,    /* valid credentials, not allowed */
	ERR_EXPIRED = -8,
	ERR_USED = -9,         /* single-use secret already consumed */
	ERR_TOO_LARGE = -10,
	ERR_EXHAUSTED = -11,   /* address pool or table full */
	ERR_IO = -12,
	ERR_DB = -13,
	ERR_SCHEMA = -14,      /* database newer than this binary */
	ERR_BAD_SIGNATURE = -15,
	ERR_STALE = -16,       /* timestamp outside window */
	ERR_REPLAY = -17,
	ERR_PRECONDITION = -18,/* If-Match mismatch */
	ERR_UNPROCESSABLE = -19,/* well-formed but semantically rejected */
	ERR_TIMEOUT = -20,
	ERR_UNAVAILABLE = -21,
	ERR_PROTOCOL = -22,
	ERR_LAST = -23,
};

const char *err_str(int err);
int err_http_status(int err);

#endif
