/* SPDX-License-Identifier: MIT */
/* Time, randomness, durations and small string helpers. */
#ifndef WM_UTIL_H
#define WM_UTIL_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* Monotonic milliseconds / nanoseconds. */
int64_t time_mono_ms(void);
int64_t time_mono_ns(void);
/* Wall clock seconds since the epoch. */
int64_t time_now_s(void);
/* "2026-11-25T09:00:00Z" */
void time_fmt_rfc3339(char out[static 32], int64_t epoch_s);

void random_bytes(void *p, size_t n);
uint32_t random_u32(uint32_t upper);	/* uniform in [0, upper) */

/* "90s", "30m", "24h", "7d", or plain seconds. */
int duration_parse(const char *s, int64_t *seconds) WM_MUST_CHECK;
/* The longest duration duration_parse() takes: 100 years, so that now plus
 * any duration is a valid time (no overflow into negative timestamps). */
#define DURATION_MAX_S ((int64_t)100 * 366 * 86400)

/* Wipes and frees a NUL-terminated secret string. free_secret(NULL) is a no-op. */
void free_secret(char *s);
void wipe(void *p, size_t n);
/* A secret from a file (API or auth key, shared secret): the whole file,
 * trailing newline and blanks removed; refused (NULL, *err an errno value)
 * when missing, not a regular file, readable by group or others (EPERM),
 * empty (ENODATA) or over 4 KiB. Free it with free_secret(). */
char *secret_file_read(const char *path, int *err);

/* Copies at most size-1 bytes and terminates; returns strlen(src). */
size_t str_copy(char *dst, const char *src, size_t size);

#endif
