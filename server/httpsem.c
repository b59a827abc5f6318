// SPDX-License-Identifier: MIT
/*
 * HTTP semantics the handlers leave to one place (RFC 9110): a 405 names
 * the methods the resource allows (Allow), a 401 from the admin API says
 * how to authenticate (WWW-Authenticate: Bearer), and a 201 says where the
 * new resource is (Location). Runs on every response before it is sent.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "server/httpsem.h"

/* Path patterns ("*" is one segment) and the methods each allows. */
static const struct {
	const char *pattern;
	const char *allow;
} routes[] = {
	{ "/api/v1/users", "GET, POST" },
	{ "/api/v1/users/*", "GET, DELETE" },
	{ "/api/v1/users/*/rename", "POST" },
	{ "/api/v1/preauthkeys", "GET, POST" },
	{ "/api/v1/preauthkeys/*", "GET" },
	{ "/api/v1/preauthkeys/*/expire", "POST" },
	{ "/api/v1/nodes", "GET" },
	{ "/api/v1/nodes/pending", "GET" },
	{ "/api/v1/nodes/register", "POST" },
	{ "/api/v1/nodes/*", "GET, DELETE" },
	{ "/api/v1/nodes/*/routes", "GET, POST" },
	{ "/api/v1/nodes/*/expire", "POST" },
	{ "/api/v1/nodes/*/rename", "POST" },
	{ "/api/v1/nodes/*/tags", "POST" },
	{ "/api/v1/nodes/*/user", "POST" },
	{ "/api/v1/apikeys", "GET, POST" },
	{ "/api/v1/apikeys/*", "GET" },
	{ "/api/v1/apikeys/*/expire", "POST" },
	{ "/api/v1/routes", "GET" },
	{ "/api/v1/policy", "GET, PUT" },
	{ "/api/v1/policy/check", "POST" },
	{ "/api/v1/policy/explain", "POST" },
	{ "/api/v1/policy/history", "GET" },
	{ "/api/v1/policy/history/*", "GET" },
	{ "/api/v1/session", "GET, POST, DELETE" },
	{ "/api/v1/session/signin-links", "POST" },
	{ "/api/v1/events", "GET" },
	{ "/api/v1/openapi.json", "GET" },
	{ "/machine/*", "POST" },
	{ "/healthz", "GET" },
	{ "/metrics", "GET" },
	{ "/derp", "GET" },
};

static bool
match(const char *pat, const char *path)
{
	while (*pat && *path) {
		if (*pat == '*') {
			const char *slash = strchr(path, '/');

			path = slash ? slash : path + strlen(path);
			pat++;
			continue;
		}
		if (*pat != *path)
			return false;
		pat++;
		path++;
	}
	return *pat == 0 && *path == 0;
}

const char *
httpsem_allow(const char *path)
{
	for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++)
		if (match(routes[i].pattern, path))
			return routes[i].allow;
	return NULL;
}

static bool
has_header(const struct http_response *resp, const char *name)
{
	for (int i = 0; i < resp->nhdr; i++)
		if (strcasecmp(resp->hdr_name[i], name) == 0)
			return true;
	return false;
}

/* Location of what a 201 created, from its body. */
static void
location(const struct http_request *req, struct http_response *resp)
{
	json_t *b = resp->body ? json_loadb(resp->body, resp->len, 0, NULL) : NULL, *o;
	char loc[512] = "";

	if ((o = json_object_get(b, "user")) && json_is_string(json_object_get(o, "name")))
		snprintf(loc, sizeof(loc), "/api/v1/users/%s", json_string_value(json_object_get(o,
		    "name")));
	else if ((o = json_object_get(b, "preauthkey")) && json_is_integer(json_object_get(o, "id")))
		snprintf(loc, sizeof(loc), "/api/v1/preauthkeys/%" JSON_INTEGER_FORMAT,
		    json_integer_value(json_object_get(o, "id")));
	else if ((o = json_object_get(b, "apikey")) && json_is_string(json_object_get(o, "prefix")))
		snprintf(loc, sizeof(loc), "/api/v1/apikeys/%s", json_string_value(json_object_get(o,
		    "prefix")));
	else if ((o = json_object_get(b, "node")) && json_is_integer(json_object_get(o, "id")) &&
	    strncmp(req->path, "/api/", 5) == 0)
		snprintf(loc, sizeof(loc), "/api/v1/nodes/%" JSON_INTEGER_FORMAT,
		    json_integer_value(json_object_get(o, "id")));
	json_decref(b);
	if (loc[0] && strcspn(loc, "\r\n") == strlen(loc))
		(void)http_add_header(resp, "Location", loc);
}

void
httpsem_finish(const struct http_request *req, struct http_response *resp)
{
	if (resp->stream_ops != NULL || resp->upgrade != NULL)
		return;
	if (resp->status == 405 && !has_header(resp, "Allow")) {
		const char *allow = httpsem_allow(req->path);

		(void)http_add_header(resp, "Allow", allow ? allow : "");
	}
	if (resp->status == 401 && strncmp(req->path, "/api/", 5) == 0 &&
	    !has_header(resp, "WWW-Authenticate")) {
		const char *auth = http_header((struct http_request *)req, "Authorization");

		(void)http_add_header(resp, "WWW-Authenticate", auth ?
		    "Bearer realm=\"wiremesh\", error=\"invalid_token\"" : "Bearer realm=\"wiremesh\"");
	}
	if (resp->status == 201 && !has_header(resp, "Location"))
		location(req, resp);
}
