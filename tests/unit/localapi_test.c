// SPDX-License-Identifier: MIT
/* client-agent/localapi: a request/reply round trip over the unix socket,
 * concurrent clients, malformed and oversized requests answered with an
 * error (never a crash), a missing daemon reported clearly, and the
 * socket's mode and removal. */
#include <check.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "client-agent/localapi.c"

static char path[128];

static json_t *
echo(void *ctx, json_t *req)
{
	int *calls = ctx;

	__atomic_fetch_add(calls, 1, __ATOMIC_SEQ_CST);
	return json_pack("{s:b, s:O}", "ok", 1, "echo", json_object_get(req, "cmd"));
}

static void
mkpath(void)
{
	snprintf(path, sizeof(path), "/tmp/wm-localapi-%d-%u.sock", (int)getpid(),
	    (unsigned)random_u32(1u << 30));
}

/* Sends raw bytes and returns the reply's "error" (caller frees) or NULL. */
static char *
raw(const char *bytes, size_t n)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	char buf[4096];
	size_t got = 0;
	ssize_t r;
	json_t *j;
	char *e = NULL;
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);

	str_copy(sa.sun_path, path, sizeof(sa.sun_path));
	ck_assert_int_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	while (n > 0 && (r = send(fd, bytes, n > 65536 ? 65536 : n, MSG_NOSIGNAL)) > 0) {
		bytes += r;
		n -= (size_t)r;
	}
	shutdown(fd, SHUT_WR);
	while (got < sizeof(buf) - 1 && (r = read(fd, buf + got, sizeof(buf) - 1 - got)) > 0)
		got += (size_t)r;
	close(fd);
	buf[got] = 0;
	j = json_loads(buf, 0, NULL);
	if (json_string_value(json_object_get(j, "error")))
		e = strdup(json_string_value(json_object_get(j, "error")));
	json_decref(j);
	return e;
}

START_TEST(round_trip)
{
	struct localapi *l;
	json_t *req = json_pack("{s:s}", "cmd", "status"), *rep = NULL;
	char why[256];
	struct stat st;
	int calls = 0;

	mkpath();
	ck_assert_int_eq(localapi_new(path, (gid_t)-1, echo, &calls, &l), 0);
	ck_assert_int_eq(stat(path, &st), 0);
	ck_assert_int_eq(st.st_mode & 0777, 0660);
	ck_assert_int_eq(localapi_call(path, req, 5000, &rep, why, sizeof(why)), 0);
	ck_assert_str_eq(json_string_value(json_object_get(rep, "echo")), "status");
	json_decref(rep);
	json_decref(req);
	ck_assert_int_eq(calls, 1);
	localapi_free(l);
	ck_assert_int_ne(access(path, F_OK), 0);
}
END_TEST

struct client_arg {
	int ok;
};

static void *
client(void *arg)
{
	struct client_arg *c = arg;
	json_t *req = json_pack("{s:s}", "cmd", "ping"), *rep = NULL;
	char why[256];

	for (int i = 0; i < 20; i++) {
		if (localapi_call(path, req, 5000, &rep, why, sizeof(why)) == 0 &&
		    strcmp(json_string_value(json_object_get(rep, "echo")) ?: "", "ping") == 0)
			c->ok++;
		json_decref(rep);
		rep = NULL;
	}
	json_decref(req);
	return NULL;
}

START_TEST(concurrent)
{
	struct localapi *l;
	pthread_t t[8];
	struct client_arg a[8];
	int calls = 0, total = 0;

	mkpath();
	ck_assert_int_eq(localapi_new(path, (gid_t)-1, echo, &calls, &l), 0);
	for (int i = 0; i < 8; i++) {
		a[i].ok = 0;
		ck_assert_int_eq(pthread_create(&t[i], NULL, client, &a[i]), 0);
	}
	for (int i = 0; i < 8; i++) {
		pthread_join(t[i], NULL);
		total += a[i].ok;
	}
	localapi_free(l);
	/* Over the connection limit a client may be turned away; most get in. */
	ck_assert_int_gt(total, 100);
	ck_assert_int_eq(calls, total);
}
END_TEST

START_TEST(bad_requests)
{
	struct localapi *l;
	char *e, *big;
	int calls = 0;

	mkpath();
	ck_assert_int_eq(localapi_new(path, (gid_t)-1, echo, &calls, &l), 0);
	e = raw("not json\n", 9);
	ck_assert_ptr_nonnull(e);
	ck_assert_ptr_nonnull(strstr(e, "JSON"));
	free(e);
	e = raw("[1,2]\n", 6);
	ck_assert_ptr_nonnull(e);
	free(e);
	e = raw("", 0);
	ck_assert_ptr_nonnull(e);
	free(e);
	big = malloc(LOCALAPI_MAX_REQUEST * 2);
	memset(big, 'x', LOCALAPI_MAX_REQUEST * 2);
	e = raw(big, LOCALAPI_MAX_REQUEST * 2);
	free(big);
	ck_assert_ptr_nonnull(e);
	ck_assert_ptr_nonnull(strstr(e, "too large"));
	free(e);
	ck_assert_int_eq(calls, 0);
	localapi_free(l);
}
END_TEST

START_TEST(no_daemon)
{
	json_t *req = json_pack("{s:s}", "cmd", "status"), *rep = NULL;
	char why[256];

	mkpath();
	ck_assert_int_eq(localapi_call(path, req, 1000, &rep, why, sizeof(why)), ERR_UNAVAILABLE);
	ck_assert_ptr_null(rep);
	ck_assert_ptr_nonnull(strstr(why, "is the daemon running?"));
	json_decref(req);
}
END_TEST

START_TEST(others_refused)
{
	struct localapi *l;
	int calls = 0, st;
	pid_t pid;

	if (geteuid() != 0)
		return;	/* needs root to become another user */
	mkpath();
	ck_assert_int_eq(localapi_new(path, (gid_t)-1, echo, &calls, &l), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		json_t *req = json_pack("{s:s}", "cmd", "status"), *rep = NULL;
		char why[256];

		if (setgid(65534) != 0 || setuid(65534) != 0)
			_exit(2);
		_exit(localapi_call(path, req, 2000, &rep, why, sizeof(why)) == ERR_UNAVAILABLE &&
		      strstr(why, "ermission") ? 0 : 1);
	}
	ck_assert_int_eq(waitpid(pid, &st, 0), pid);
	ck_assert(WIFEXITED(st));
	ck_assert_int_eq(WEXITSTATUS(st), 0);
	ck_assert_int_eq(calls, 0);
	localapi_free(l);
}
END_TEST

Suite *localapi_suite(void);

Suite *
localapi_suite(void)
{
	Suite *s = suite_create("localapi");
	TCase *tc = tcase_create("core");

	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, round_trip);
	tcase_add_test(tc, concurrent);
	tcase_add_test(tc, bad_requests);
	tcase_add_test(tc, no_daemon);
	tcase_add_test(tc, others_refused);
	suite_add_tcase(s, tc);
	return s;
}
