/* SPDX-License-Identifier: MIT */
/* HTTP semantics applied to every response (server/httpsem.c). */
#ifndef WM_HTTPSEM_H
#define WM_HTTPSEM_H

#include <stdbool.h>
#include <strings.h>

#include "server/http.h"

/* The methods `path` allows ("GET, POST"), NULL for an unknown path. */
const char *httpsem_allow(const char *path);
/* 405 gets Allow, an admin-API 401 WWW-Authenticate: Bearer, 201 Location. */
void httpsem_finish(const struct http_request *req, struct http_response *resp);

#endif
