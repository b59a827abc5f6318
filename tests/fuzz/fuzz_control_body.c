// SPDX-License-Identifier: MIT
/*
 * libFuzzer target: the JSON request bodies the server accepts, through the
 * real handlers of server/control.c (/machine/register, map, endpoints,
 * logout) and server/api.c (/api/v1/...), against a live server state with
 * an in-memory database. The handlers are static, so their files are
 * included here; everything before them (signature check, Bearer key) is
 * skipped. A map stream that opens is read to its end.
 *
 * Input: byte 0 picks the request, byte 1 the machine (one of 8 fixed
 * machine keys); the rest is the body. For the REST API the body starts
 * with "METHOD /api/v1/PATH\n". Seeds may use the fixed auth key below, so
 * registrations succeed.
 *
 * Oracles: no crash or sanitizer report; every answer is a 2xx/4xx (never a
 * 5xx: bad input is the client's fault); every JSON answer and every map
 * line parses as JSON.
 */
#include <sodium.h>

#include "server/api.c"
#include "server/control.c"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_AUTHKEY "wm-auth-0123456789ab-000102030405060708090a0b0c0d0e0f1011121314151617"
#define FUZZ_EPHKEY  "wm-auth-ba9876543210-000102030405060708090a0b0c0d0e0f1011121314151617"

static struct server *srv;

static void
add_key(const char *key, int64_t user_id, bool ephemeral)
{
	struct store_preauthkey k;

	memset(&k, 0, sizeof(k));
	if (secret_parse(SECRET_AUTH, key, k.prefix, k.hash) != 0)
		abort();
	k.user_id = user_id;
	str_copy(k.user, "fuzz", sizeof(k.user));
	str_copy(k.tags, ephemeral ? "[\"tag:fuzz\"]" : "[]", sizeof(k.tags));
	k.reusable = true;
	k.ephemeral = ephemeral;
	k.created_at = time_now_s();
	if (store_preauthkey_insert(srv->store, &k) != 0)
		abort();
}

static void
setup(void)
{
	struct server_config cfg;
	struct store_user u;

	log_set_level(LOG_ERROR);
	if (sodium_init() < 0)
		abort();
	server_config_defaults(&cfg);
	str_copy(cfg.db_path, ":memory:", sizeof(cfg.db_path));
	if (server_new(&cfg, &srv) != 0 || store_user_create(srv->store, "fuzz", &u) != 0)
		abort();
	add_key(FUZZ_AUTHKEY, u.id, false);
	add_key(FUZZ_EPHKEY, u.id, true);
}

static void
check_json(const char *what, const char *p, size_t n)
{
	json_t *j = json_loadb(p, n, JSON_DECODE_ANY, NULL);

	if (j == NULL) {
		fprintf(stderr, "%s is not JSON: %.*s\n", what, (int)(n > 300 ? 300 : n), p);
		__builtin_trap();
	}
	json_decref(j);
}

/* Reads a map stream to its end (it ends when nothing more is queued). */
static void
drain(struct http_response *resp)
{
	struct buf line;
	char chunk[4096];

	buf_init(&line, 64 << 20);
	for (int i = 0; i < 10000; i++) {
		ssize_t n = resp->stream_ops->read(resp->stream_ctx, chunk, sizeof(chunk));

		if (n <= 0)
			break;
		for (ssize_t k = 0; k < n; k++) {
			if (chunk[k] != '\n') {
				if (buf_append(&line, chunk + k, 1) != 0)
					abort();
				continue;
			}
			check_json("a map line", (const char *)line.data, line.len);
			buf_reset(&line);
		}
	}
	buf_cleanup(&line);
	resp->stream_ops->close(resp->stream_ctx);
}

/* api_handle after authentication. */
static void
rest(struct http_request *req, struct http_response *resp, const uint8_t *p, size_t n)
{
	static const char *methods[] = { "GET", "POST", "PUT", "DELETE" };
	const uint8_t *nl = memchr(p, '\n', n);
	static char path[256];
	char why[512];
	const char *sp, *r;
	json_t *body = NULL;

	req->method = "POST";
	str_copy(path, "/api/v1/users", sizeof(path));
	if (nl != NULL && (size_t)(nl - p) < sizeof(path)) {
		memcpy(path, p, (size_t)(nl - p));
		path[nl - p] = 0;
		n -= (size_t)(nl - p) + 1;
		p = nl + 1;
		if ((sp = strchr(path, ' ')) != NULL) {
			for (size_t i = 0; i < ARRAY_SIZE(methods); i++)
				if (strncmp(path, methods[i], (size_t)(sp - path)) == 0 &&
				    strlen(methods[i]) == (size_t)(sp - path))
					req->method = methods[i];
			memmove(path, sp + 1, strlen(sp + 1) + 1);
		}
	}
	req->path = path;
	req->body.data = (uint8_t *)p;
	req->body.len = n;
	if ((r = under(req->path, "/api/v1/policy")) != NULL) {
		policy_api_handle(srv, req, resp, r, "apikey:fuzz");
		return;
	}
	if (strcmp(req->method, "POST") == 0 || strcmp(req->method, "PUT") == 0) {
		body = n == 0 ? json_object() : jsonx_parse_object((const char *)p, n,
		    (size_t)srv->cfg.max_body, why, sizeof(why));
		if (body == NULL) {
			http_problem(resp, 400, NULL, "%s", why);
			return;
		}
	}
	if ((r = under(req->path, "/api/v1/users")) != NULL)
		users(srv, req, resp, r, body);
	else if ((r = under(req->path, "/api/v1/preauthkeys")) != NULL)
		preauthkeys(srv, req, resp, r, body);
	else if ((r = under(req->path, "/api/v1/nodes")) != NULL)
		nodes(srv, req, resp, r, body);
	else if ((r = under(req->path, "/api/v1/apikeys")) != NULL)
		apikeys(srv, req, resp, r, body);
	else
		http_problem(resp, 404, NULL, "no such endpoint: %s", req->path);
	json_decref(body);
}

/* control_handle after the signature check. */
static void
machine(struct http_request *req, struct http_response *resp, int op, int who,
	const uint8_t *p, size_t n)
{
	static const char *paths[] = { "/machine/register", "/machine/map", "/machine/endpoints",
	    "/machine/logout" };
	uint8_t mkey[KEY_LEN];
	char why[512];
	json_t *body;

	memset(mkey, 0, sizeof(mkey));
	mkey[0] = (uint8_t)(who + 1);
	req->method = "POST";
	req->path = paths[op];
	req->body.data = (uint8_t *)p;
	req->body.len = n;
	body = jsonx_parse_object((const char *)p, n, (size_t)srv->cfg.max_body, why, sizeof(why));
	if (body == NULL) {
		http_problem(resp, 400, NULL, "%s", why);
		return;
	}
	switch (op) {
	case 0: {
		struct signed_req sr;	/* the signature and replay checks passed */

		memset(&sr, 0, sizeof(sr));
		memcpy(sr.mkey, mkey, KEY_LEN);
		sr.ts = time_now_s();
		handle_register(srv, req, resp, &sr, true, body);
		break;
	}
	case 1: handle_map(srv, req, resp, mkey, body); break;
	case 2: handle_endpoints(srv, resp, mkey, body); break;
	default: handle_logout(srv, resp, mkey); break;
	}
	json_decref(body);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct http_request req;
	struct http_response resp;
	int op;

	if (srv == NULL)
		setup();
	if (size < 2 || size > 70000)
		return 0;
	memset(&req, 0, sizeof(req));
	memset(&resp, 0, sizeof(resp));
	str_copy(req.client, "fuzz", sizeof(req.client));
	op = data[0] % 5;
	if (op == 4)
		rest(&req, &resp, data + 2, size - 2);
	else
		machine(&req, &resp, op, data[1] % 8, data + 2, size - 2);
	if (resp.status >= 500 || resp.status < 200) {
		fprintf(stderr, "status %d for %s %s: %.*s\n", resp.status, req.method, req.path,
		    (int)resp.len, resp.body ? resp.body : "");
		__builtin_trap();
	}
	if (resp.stream_ops)
		drain(&resp);
	else if (resp.body && resp.content_type &&
	    (strcmp(resp.content_type, "application/json") == 0 ||
	    strcmp(resp.content_type, "application/problem+json") == 0))
		check_json("an answer", resp.body, resp.len);
	http_response_cleanup(&resp);
	return 0;
}
