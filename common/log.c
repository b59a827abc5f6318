// SPDX-License-Identifier: MIT
/*
 * Logging to stderr, one write per line so threads do not interleave:
 * logfmt (text) or one JSON object per line (json). When stderr is the
 * systemd journal (JOURNAL_STREAM names it) every line starts with its
 * syslog priority, "<3>" error .. "<7>" debug, which journald strips and
 * keeps as the entry's priority (SyslogLevelPrefix=, on by default);
 * WIREMESH_LOG_SYSLOG_PREFIX=1 or 0 forces it on or off.
 */
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/err.h"
#include "common/log.h"

enum log_level log_threshold = LOG_INFO;
static char prefix[32] = "wiremesh";
static enum log_format format = LOG_FORMAT_TEXT;
static int syslog_prefix = -1;	/* -1: not decided yet */
static char last_error[512];	/* log_last_error() */

const char *
log_last_error(void)
{
	return last_error;
}

/* Is stderr the journal? JOURNAL_STREAM is "DEVICE:INODE" of its socket. */
static bool
stderr_is_journal(void)
{
	const char *js = getenv("JOURNAL_STREAM"), *force = getenv("WIREMESH_LOG_SYSLOG_PREFIX");
	unsigned long long dev, ino;
	struct stat st;

	if (force && *force)
		return strcmp(force, "0") != 0 && strcmp(force, "false") != 0 &&
		    strcmp(force, "no") != 0;
	if (js == NULL || sscanf(js, "%llu:%llu", &dev, &ino) != 2 ||
	    fstat(STDERR_FILENO, &st) != 0)
		return false;
	return (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino;
}

bool
log_syslog_prefix(void)
{
	if (syslog_prefix < 0)
		syslog_prefix = stderr_is_journal();
	return syslog_prefix == 1;
}

void
log_set_format(enum log_format f)
{
	format = f;
}

int
log_format_parse(const char *s, enum log_format *out)
{
	if (strcmp(s, "text") == 0 || strcmp(s, "logfmt") == 0)
		*out = LOG_FORMAT_TEXT;
	else if (strcmp(s, "json") == 0)
		*out = LOG_FORMAT_JSON;
	else
		return ERR_INVALID;
	return 0;
}

/* Appends s to out (cap) as JSON string content; returns the new length. */
static size_t
json_esc(char *out, size_t n, size_t cap, const char *s, size_t len)
{
	static const char hex[] = "0123456789abcdef";

	for (size_t i = 0; i < len && n + 7 < cap; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c == '"' || c == '\\') {
			out[n++] = '\\';
			out[n++] = (char)c;
		} else if (c < 0x20) {
			out[n++] = '\\';
			out[n++] = 'u';
			out[n++] = '0';
			out[n++] = '0';
			out[n++] = hex[c >> 4];
			out[n++] = hex[c & 15];
		} else {
			out[n++] = (char)c;
		}
	}
	return n;
}

/* The logfmt body (key=value key="quoted value" ...) as JSON members. */
static size_t
logfmt_to_json(char *out, size_t n, size_t cap, const char *p)
{
	while (*p && n + 16 < cap) {
		const char *k, *v;
		size_t kl, vl;
		char val[1024];

		while (*p == ' ')
			p++;
		if (*p == 0)
			break;
		k = p;
		kl = strcspn(p, "= ");
		p += kl;
		if (*p != '=') {	/* a bare word: keep it as a flag */
			n += (size_t)snprintf(out + n, cap - n, ",\"");
			n = json_esc(out, n, cap, k, kl);
			n += (size_t)snprintf(out + n, cap - n, "\":true");
			continue;
		}
		p++;
		if (*p == '"') {	/* quoted: \" and \\ escapes */
			vl = 0;
			for (p++; *p && *p != '"' && vl < sizeof(val) - 1; p++) {
				if (*p == '\\' && p[1])
					p++;
				val[vl++] = *p;
			}
			if (*p == '"')
				p++;
			v = val;
		} else {
			v = p;
			vl = strcspn(p, " ");
			p += vl;
		}
		n += (size_t)snprintf(out + n, cap - n, ",\"");
		n = json_esc(out, n, cap, k, kl);
		n += (size_t)snprintf(out + n, cap - n, "\":\"");
		n = json_esc(out, n, cap, v, vl);
		if (n + 2 < cap)
			out[n++] = '"';
	}
	return n;
}

void
log_set_level(enum log_level l)
{
	log_threshold = l;
}

void
log_set_prefix(const char *component)
{
	snprintf(prefix, sizeof(prefix), "%s", component);
	(void)log_syslog_prefix();	/* decide once, at start */
}

int
log_level_parse(const char *s, enum log_level *out)
{
	static const char *names[] = { "error", "warn", "info", "debug" };

	for (int i = 0; i < 4; i++) {
		if (strcmp(s, names[i]) == 0) {
			*out = (enum log_level)i;
			return 0;
		}
	}
	return ERR_INVALID;
}

void
log_emit(enum log_level l, const char *fmt, ...)
{
	static const char *names[] = { "error", "warn", "info", "debug" };
	static const char prio[] = { '3', '4', '6', '7' };	/* syslog err, warning, info, debug */
	char line[2048], body[1600], ts[96];
	struct timespec ts_now;
	struct tm tm;
	va_list ap;
	int n = 0, m;

	clock_gettime(CLOCK_REALTIME, &ts_now);
	gmtime_r(&ts_now.tv_sec, &tm);
	snprintf(ts, sizeof(ts), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900,
	    tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts_now.tv_nsec / 1000000);
	va_start(ap, fmt);
	m = vsnprintf(body, sizeof(body), fmt, ap);
	va_end(ap);
	if (m < 0)
		body[0] = 0;
	if (l == LOG_ERROR)
		snprintf(last_error, sizeof(last_error), "%.*s", (int)sizeof(last_error) - 1, body);
	if (log_syslog_prefix()) {
		line[n++] = '<';
		line[n++] = prio[l];
		line[n++] = '>';
	}
	if (format == LOG_FORMAT_JSON) {
		size_t k = (size_t)n;

		k += (size_t)snprintf(line + k, sizeof(line) - k,
		    "{\"ts\":\"%s\",\"level\":\"%s\",\"app\":\"%s\"", ts, names[l], prefix);
		k = logfmt_to_json(line, k, sizeof(line) - 2, body);
		line[k++] = '}';
		n = (int)k;
	} else {
		m = snprintf(line + n, sizeof(line) - (size_t)n - 1, "ts=%s level=%s app=%s %s", ts,
		    names[l], prefix, body);
		if (m < 0)
			m = 0;
		n += m;
		if (n > (int)sizeof(line) - 2)
			n = (int)sizeof(line) - 2;
	}
	line[n++] = '\n';
	if (write(STDERR_FILENO, line, (size_t)n) < 0) {
		/* nowhere left to report it */
	}
}

int
log_ratelimit_ok(struct log_ratelimit *rl, int interval_s, int burst)
{
	long now = (long)time(NULL);

	if (now - rl->window_start >= interval_s) {
		rl->window_start = now;
		rl->count = 0;
	}
	return rl->count++ < burst;
}
