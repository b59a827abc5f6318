// SPDX-License-Identifier: MIT
/* Time, randomness, durations and small string helpers. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

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
		if (v > DURATION_MAX_S / mul)
			return ERR_INVALID;
		total += v * mul;
		if (total > DURATION_MAX_S)
			return ERR_INVALID;	/* "now + it" must stay a real date */
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

char *
secret_file_read(const char *path, int *err)
{
	char buf[4097];
	struct stat st;
	ssize_t n;
	size_t len = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	char *out = NULL;

	*err = 0;
	if (fd < 0) {
		*err = errno;
		return NULL;
	}
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		*err = EINVAL;
		goto done;
	}
	if (st.st_mode & 077) {
		*err = EPERM;	/* readable by others: refuse, as ssh does */
		goto done;
	}
	while (len < sizeof(buf) - 1 && (n = read(fd, buf + len, sizeof(buf) - 1 - len)) > 0)
		len += (size_t)n;
	if (len == sizeof(buf) - 1) {
		*err = EFBIG;
		goto done;
	}
	while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r' || buf[len - 1] == ' ' ||
	    buf[len - 1] == '\t'))
		len--;
	buf[len] = 0;
	if (len == 0 || memchr(buf, 0, len) != NULL) {
		*err = ENODATA;
		goto done;
	}
	out = strdup(buf);
	if (out == NULL)
		*err = ENOMEM;
done:
	sodium_memzero(buf, sizeof(buf));
	close(fd);
	return out;
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
