/* SPDX-License-Identifier: MIT */
/*
 * Logging to stderr in logfmt: `ts=… level=… msg="…" key=value …`. The level
 * is checked before anything is formatted. Never pass keys, tokens or auth
 * keys: identify nodes by id and name.
 */
#ifndef WM_LOG_H
#define WM_LOG_H

enum log_level { LOG_ERROR, LOG_WARN, LOG_INFO, LOG_DEBUG };

extern enum log_level log_threshold;

void log_set_level(enum log_level l);
/* Parses "error", "warn", "info", "debug"; returns 0 or ERR_INVALID. */
int log_level_parse(const char *s, enum log_level *out);
void log_set_prefix(const char *component);

/* text: logfmt (default); json: one object per line, the logfmt fields as
 * string members. */
enum log_format { LOG_FORMAT_TEXT, LOG_FORMAT_JSON };
void log_set_format(enum log_format f);
int log_format_parse(const char *s, enum log_format *out);
/* Lines start with "<N>" (syslog priority) for journald: stderr is the
 * journal, or WIREMESH_LOG_SYSLOG_PREFIX=1. */
#include <stdbool.h>
bool log_syslog_prefix(void);
/* The fields of the last error logged ("" if none): start-up failures quote
 * it so that the cause is named on the terminal too. */
const char *log_last_error(void);

void log_emit(enum log_level l, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

#define log_at(l, ...) do { if ((l) <= log_threshold) log_emit((l), __VA_ARGS__); } while (0)
#define log_error(...) log_at(LOG_ERROR, __VA_ARGS__)
#define log_warn(...)  log_at(LOG_WARN, __VA_ARGS__)
#define log_info(...)  log_at(LOG_INFO, __VA_ARGS__)
#define log_debug(...) log_at(LOG_DEBUG, __VA_ARGS__)

/*
 * Rate limiter for remote-triggered messages: returns 1 at most `burst`
 * times per `interval_s` seconds per limiter. Thread safe enough (racy
 * counters only let a few extra lines through).
 */
struct log_ratelimit {
	long window_start;
	int count;
};
int log_ratelimit_ok(struct log_ratelimit *rl, int interval_s, int burst);

#endif
