/* SPDX-License-Identifier: MIT */
/* Running helper programs without a shell. */
#ifndef WM_PROC_H
#define WM_PROC_H

#include <stddef.h>

#include "common/err.h"

/*
 * Runs argv[0] (looked up in PATH) with argv, waits for it, and returns 0
 * when it exits 0, else ERR_IO with the first line of its stderr (or
 * "command not found") in err. Thread safe; the child inherits no
 * descriptors but stderr's pipe (the caller's are close-on-exec).
 */
int proc_run(const char *const argv[], char *err, size_t errlen) WM_MUST_CHECK;

#endif
