/* SPDX-License-Identifier: MIT */
/* The libcurl set-up every HTTP client of ours shares. */
#ifndef WM_CURLX_H
#define WM_CURLX_H

#include <curl/curl.h>

/*
 * A new handle for one request to `url`: the answer's body to
 * write(data), libcurl's reason for a failure in err (CURL_ERROR_SIZE
 * bytes, kept by the caller until the handle is cleaned up), no signals
 * (the callers are threaded), HTTP and HTTPS only, and `ca_file` trusted
 * when set (else the system's store). Timeouts and headers are the
 * caller's. NULL when out of memory.
 */
CURL *curlx_new(const char *url, curl_write_callback write, void *data, char *err,
		const char *ca_file);

#endif
