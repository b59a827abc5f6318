// SPDX-License-Identifier: MIT
/* libFuzzer target: server/http.c's request handling with the control
 * server's limits: a real libmicrohttpd listener on 127.0.0.1, body limits
 * decided before the body (8 KiB without credentials, 64 KiB for /api/v1/
 * with "Authorization: Bearer fuzz", none for GET), the request-smuggling
 * checks, the %00-keeping URL decoding, a 2 s request deadline. Each input
 * is sent as the bytes of one TCP connection, which is then half-closed;
 * the answer is read until the server closes or goes quiet. A crash or sanitizer report in
 * the server's threads fails the run. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <jansson.h>

#include "common/log.h"
#include "server/http.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct http *srv;
static int port;

static size_t
limit(void *ctx, struct http_request *req)
{
	const char *a = http_header(req, "Authorization");

	(void)ctx;
	if (strcmp(req->method, "GET") == 0 || strcmp(req->method, "HEAD") == 0)
		return 0;
	if (strncmp(req->path, "/api/v1/", 8) == 0 && a && strcmp(a, "Bearer fuzz") == 0)
		return 64 * 1024;
	return 8 * 1024;
}

static void
dispatch(void *ctx, struct http_request *req, struct http_response *resp)
{
	char *b = NULL;
	int n;

	(void)ctx;
	if (req->too_large) {
		http_problem(resp, 413, NULL, "too large");
		return;
	}
	(void)http_query(req, "user");
	n = asprintf(&b, "{\"path_len\":%zu,\"body_len\":%zu}", strlen(req->path), req->body.len);
	if (n < 0) {
		http_problem(resp, 500, NULL, "oom");
		return;
	}
	http_set_body(resp, 200, "application/json", b, (size_t)n);
}

static void
init(void)
{
	struct http_config hc;

	if (srv)
		return;
	log_set_level(LOG_ERROR);
	memset(&hc, 0, sizeof(hc));
	hc.listen = "127.0.0.1:0";
	hc.max_body = 8 * 1024;
	hc.body_limit = limit;
	hc.threads = 2;
	hc.max_connections = 256;
	hc.max_per_ip = 64;
	hc.request_timeout_s = 2;
	hc.idle_timeout_s = 5;
	hc.dispatch = dispatch;
	if (http_start(&hc, &srv) != 0)
		__builtin_trap();
	port = http_port(srv);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sockaddr_in sa;
	struct timeval tv = { 0, 50 * 1000 };
	char sink[4096];
	int fd;

	init();
	if ((fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0)
		return 0;
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_port = htons((uint16_t)port);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
		size_t off = 0;

		while (off < size) {
			ssize_t w = send(fd, data + off, size - off, MSG_NOSIGNAL);

			if (w <= 0)
				break;
			off += (size_t)w;
		}
		shutdown(fd, SHUT_WR);
		/* Until the server closes, or is quiet for 50 ms after answering
		 * (it may keep the connection for the next request), or 100 ms. */
		for (int quiet = 0, got = 0; quiet < 2;) {
			ssize_t r = recv(fd, sink, sizeof(sink), 0);

			if (r == 0)
				break;
			if (r > 0) {
				got = 1;
				continue;
			}
			if (got)
				break;
			quiet++;
		}
	}
	close(fd);
	(void)http_reap_slow(srv);
	return 0;
}
