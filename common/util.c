// SPDX-License-Identifier: MIT
/* Time, randomness, durations and small string helpers. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "common/util.h"

int64_t
time_mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t
time_mono_ms(void)
{
	return time_mono_ns() / 1000000;
}

int64_t
time_now_s(void)
{
	return (int64_t)time(NULL);
}

void
time_fmt_rfc3339(char out[static 32], int64_t epoch_s)
{
	time_t t = (time_t)epoch_s;
	struct tm tm;

	gmtime_r(&t, &tm);
	strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

void
random_bytes(void *p, size_t n)
{
	randombytes_buf(p, n);
}

uint32_t
random_u32(uint32_t upper)
{
	return upper ? randombytes_uniform(upper) : 0;
}

int
duration_parse(const char *s, int64_t *seconds)
{
	int64_t total = 0;
	const char *p = s;

	if (s == NULL || *s == 0)
		return ERR_INVALID;
	while (*p) {
		int64_t v = 0, mul;
		int digits = 0;

		while (*p >= '0' && *p <= '9') {
			if (v > (INT64_MAX - 9) / 10)
				return ERR_INVALID;
			v = v * 10 + (*p++ - '0');
			digits++;
		}
		if (digits == 0)
			return ERR_INVALID;
		switch (*p) {
		case 0: mul = 1; break;
		case 's': mul = 1; p++; break;
		case 'm': mul = 60; p++; break;
		case 'h': mul = 3600; p++; break;
		case 'd': mul = 86400; p++; break;
		default: return ERR_INVALID;
		}
		if (v > INT64_MAX / mul / 2)
			return ERR_INVALID;
		total += v * mul;
	}
	*seconds = total;
	return 0;
}

void
wipe(void *p, size_t n)
{
	if (p != NULL)
		sodium_memzero(p, n);
}

void
free_secret(char *s)
{
	if (s == NULL)
		return;
	sodium_memzero(s, strlen(s));
	free(s);
}

size_t
str_copy(char *dst, const char *src, size_t size)
{
	size_t n = strlen(src);

	if (size > 0) {
		size_t c = n < size - 1 ? n : size - 1;

		memcpy(dst, src, c);
		dst[c] = 0;
	}
	return n;
}
