/* SPDX-License-Identifier: MIT */
/*
 * Bounded growable byte buffer. Every buffer has a hard maximum; appends past
 * it fail with ERR_TOO_LARGE and leave the buffer as it was.
 */
#ifndef WM_BUF_H
#define WM_BUF_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

struct buf {
	uint8_t *data;
	size_t len;
	size_t cap;
	size_t max;
};

void buf_init(struct buf *b, size_t max);
/* Frees the storage; wipes it first (buffers may have held secrets). */
void buf_cleanup(struct buf *b);
void buf_reset(struct buf *b);
int buf_append(struct buf *b, const void *p, size_t n) WM_MUST_CHECK;
int buf_printf(struct buf *b, const char *fmt, ...)
	__attribute__((format(printf, 2, 3))) WM_MUST_CHECK;
/* Ensures data[len] == 0 without counting it; returns data or NULL. */
char *buf_cstr(struct buf *b);

#endif
