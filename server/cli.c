// SPDX-License-Identifier: MIT
/*
 * Admin verbs over the REST API (libcurl). Output is a table for people or
 * the server's JSON with --json. Errors print the server's problem detail.
 */
#include <getopt.h>
#include <stdarg.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <strings.h>

#include <curl/curl.h>
#include <jansson.h>

#include "common/buf.h"
#include "common/util.h"
#include "policy/policy_cli.h"
#include "server/cli.h"
#include "server/server.h"
#include "server/store.h"

enum out_format { OUT_TABLE, OUT_JSON, OUT_YAML };

struct cli {
	const char *server;
	const char *api_key;
	bool json;		/* -o json or -o yaml: machine output */
	enum out_format out;
	bool force;		/* --force / --yes: no confirmation */
};

void
cli_usage(void)
{
	fputs(
"usage: wiremesh-server COMMAND [options]\n"
"\n"
"Server:\n"
"  serve [--config FILE] [--listen HOST:PORT] [--db PATH|URL] [--tls-cert FILE --tls-key FILE]\n"
"        [--server-url URL] [--derp-map FILE] [--policy-file FILE] [--log-level LEVEL]\n"
"        [--log-format text|json]\n"
"        [--node-expiry DUR] [--ephemeral-timeout DUR]\n"
"        [--derp [--derp-region-id N] [--derp-region-code CODE] [--derp-region-name NAME]\n"
"         [--derp-hostname HOST] [--derp-port PORT] [--derp-listen HOST:PORT]]\n"
"        [--stun-listen HOST:PORT] [--metrics-listen HOST:PORT]\n"
"        [--acme-hostname HOST [--acme-email ADDR] [--acme-directory URL]\n"
"         [--acme-http-listen HOST:PORT] [--acme-state-dir DIR] [--acme-ca-file FILE]\n"
"         [--acme-renew-before DUR] [--acme-challenge http-01|tls-alpn-01]]\n"
"        Runs the control server. Without --tls-cert it speaks plain HTTP (loopback or\n"
"        behind a TLS reverse proxy). --derp embeds the DERP relay at /derp on the same\n"
"        listener (TLS when the server has TLS); it admits only node keys of registered,\n"
"        unexpired nodes. Without --derp-map the DERP map sent to nodes is this one region\n"
"        (default 900 \"wiremesh\"; host and port from --derp-hostname/--derp-port, else the\n"
"        listen address). --derp-listen adds a listener of the relay's own (TLS with the\n"
"        server's certificate; plain without), much faster than /derp through the HTTP\n"
"        layer's TLS, and announced instead. --stun-listen (e.g. 0.0.0.0:3478; default off)\n"
"        runs a STUN server. --db postgres://... (or a libpq keyword string) keeps the\n"
"        state in PostgreSQL, which several servers (replicas) may share (docs/ha.md);\n"
"        --server-url is this server's public URL. /metrics is answered to loopback\n"
"        clients only, unless --metrics-listen HOST:PORT serves it (and /healthz) on a\n"
"        listener of its own. --acme-hostname gets the TLS certificate from an ACME CA\n"
"        (default Let's Encrypt; HTTP-01 on --acme-http-listen, default :80, or with\n"
"        --acme-challenge tls-alpn-01 on the TLS listener itself), keeps it in\n"
"        --acme-state-dir (default acme/ beside the database) and renews it before\n"
"        expiry without a restart (docs/acme.md).\n"
"        Every option can also be set in the HuJSON config\n"
"        file or as WIREMESH_<OPTION> in the environment (flags win over the environment,\n"
"        which wins over the file).\n"
"\n"
"Admin (talk to the REST API). Global flags, before or after the command:\n"
"  --server URL (WIREMESH_SERVER), --api-key KEY (WIREMESH_API_KEY),\n"
"  -o, --output table|json|yaml (--json = -o json), --force/--yes (no confirmation)\n"
"  apikeys create --db PATH|URL [--create] [--expiration DUR]   bootstrap: writes the database\n"
"  apikeys create [--expiration DUR] | list | expire PREFIX\n"
"  users create NAME | list | rename NAME NEW | delete NAME\n"
"  preauthkeys create --user NAME [--reusable] [--ephemeral] [--expiration DUR]\n"
"              [--tags tag:a,tag:b] | list [--user NAME] | expire ID\n"
"  nodes list [--user NAME] | show ID | delete ID | expire ID | rename ID NAME\n"
"        | move ID --user NAME | tag ID tag:a,tag:b | routes ID\n"
"        | approve-routes ID CIDR,CIDR,... (\"\" for none)\n"
"        | pending | register --user NAME KEY   (machines waiting after `wiremesh up`)\n"
"  routes list                                   every node's advertised/approved/served routes\n"
"  policy get | set -f FILE | history | check FILE\n"
"        | explain [--file F] SRC DST:PORT [--proto P]   SRC/DST: user, group, tag, host,\n"
"          IP, or a node name (against the server's active policy without --file)\n"
"  completion bash|zsh|fish                      shell completion script\n"
"Run 'wiremesh-server COMMAND --help' or 'wiremesh-server COMMAND VERB --help' for more.\n"
"Exit status: 0 ok, 1 failure (the server's answer on stderr), 2 usage error.\n"
"\n"
"Local (read the database file, no server needed):\n"
"  backup [--config FILE] [--db PATH] --out FILE     online copy, safe while serving\n"
"  restore [--config FILE] [--db PATH] --from FILE   replace the database (server stopped)\n"
"\n"
"  version                                      prints the version\n"
"Durations: 90s, 30m, 24h, 7d, or \"never\". Keys are printed once, alone on stdout.\n",
	    stdout);
}

static int __attribute__((format(printf, 1, 2)))
fail(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "wiremesh-server: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return 1;
}

static size_t
on_data(char *p, size_t sz, size_t n, void *ctx)
{
	return buf_append(ctx, p, sz * n) == 0 ? sz * n : 0;
}

/* Performs a request; on success *out is the parsed JSON (or NULL for a
 * non-JSON body, then *raw has it). Returns the exit status. */
static int
request(const struct cli *c, const char *method, const char *path, const char *body,
	size_t blen, const char *extra_header, json_t **out, struct buf *raw)
{
	struct curl_slist *h = NULL;
	char url[1024], auth[256];
	struct buf b;
	long status = 0;
	CURL *cu;
	CURLcode cr;
	int rc = 1;

	*out = NULL;
	if (c->server == NULL)
		return fail("%s", "no server: use --server URL or set WIREMESH_SERVER");
	if (c->api_key == NULL)
		return fail("%s", "no API key: use --api-key KEY or set WIREMESH_API_KEY "
		    "(make one with: wiremesh-server apikeys create --db PATH)");
	if ((cu = curl_easy_init()) == NULL)
		return fail("%s", "cannot initialise libcurl");
	snprintf(url, sizeof(url), "%s%s", c->server, path);
	if (strlen(url) > 1 && url[strlen(c->server) - 1] == '/' && path[0] == '/')
		snprintf(url, sizeof(url), "%.*s%s", (int)strlen(c->server) - 1, c->server, path);
	snprintf(auth, sizeof(auth), "Authorization: Bearer %s", c->api_key);
	h = curl_slist_append(h, auth);
	if (body)
		h = curl_slist_append(h, "Content-Type: application/json");
	if (extra_header)
		h = curl_slist_append(h, extra_header);
	buf_init(&b, 64 << 20);
	curl_easy_setopt(cu, CURLOPT_URL, url);
	curl_easy_setopt(cu, CURLOPT_CUSTOMREQUEST, method);
	curl_easy_setopt(cu, CURLOPT_HTTPHEADER, h);
	curl_easy_setopt(cu, CURLOPT_WRITEFUNCTION, on_data);
	curl_easy_setopt(cu, CURLOPT_WRITEDATA, &b);
	curl_easy_setopt(cu, CURLOPT_TIMEOUT, 60L);
	curl_easy_setopt(cu, CURLOPT_NOSIGNAL, 1L);
	if (getenv("SSL_CERT_FILE"))
		curl_easy_setopt(cu, CURLOPT_CAINFO, getenv("SSL_CERT_FILE"));
	if (body) {
		curl_easy_setopt(cu, CURLOPT_POSTFIELDS, body);
		curl_easy_setopt(cu, CURLOPT_POSTFIELDSIZE, (long)blen);
	}
	cr = curl_easy_perform(cu);
	wipe(auth, sizeof(auth));
	if (cr != CURLE_OK) {
		fprintf(stderr, "wiremesh-server: cannot reach %s: %s\n", c->server,
		    curl_easy_strerror(cr));
		goto out;
	}
	curl_easy_getinfo(cu, CURLINFO_RESPONSE_CODE, &status);
	if (status >= 400) {
		json_t *p = json_loadb((const char *)b.data, b.len, 0, NULL);
		const char *d = json_string_value(json_object_get(p, "detail"));
		json_t *errs = json_object_get(p, "errors"), *e;
		size_t i;

		fprintf(stderr, "wiremesh-server: %ld: %s\n", status, d ? d : "request failed");
		json_array_foreach(errs, i, e)
			fprintf(stderr, "  %" JSON_INTEGER_FORMAT ":%" JSON_INTEGER_FORMAT ": %s\n",
			    json_integer_value(json_object_get(e, "line")),
			    json_integer_value(json_object_get(e, "column")),
			    json_string_value(json_object_get(e, "message")));
		json_decref(p);
		goto out;
	}
	if (raw) {
		*raw = b;
		buf_init(&b, 0);
		rc = 0;
		goto out;
	}
	if ((*out = json_loadb((const char *)b.data, b.len, 0, NULL)) == NULL) {
		fprintf(stderr, "wiremesh-server: the server's answer is not JSON\n");
		goto out;
	}
	rc = 0;
out:
	buf_cleanup(&b);
	curl_slist_free_all(h);
	curl_easy_cleanup(cu);
	return rc;
}

static int
call(const struct cli *c, const char *method, const char *path, json_t *body, json_t **out)
{
	char *t = body ? json_dumps(body, JSON_COMPACT) : NULL;
	int rc = request(c, method, path, t, t ? strlen(t) : 0, NULL, out, NULL);

	json_decref(body);
	free_secret(t);
	return rc;
}

static void
print_json(json_t *v)
{
	char *t = json_dumps(v, JSON_INDENT(2));

	if (t)
		puts(t);
	free(t);
}

/* ---- YAML output (block style; strings quoted when YAML would misread them) ---- */

static void
yaml_scalar(json_t *v)
{
	if (json_is_string(v)) {
		const char *t = json_string_value(v);
		bool plain = *t && strcspn(t, ":#{}[],&*!|>'\"%@`\n\t") == strlen(t) &&
		    t[0] != '-' && t[0] != ' ' && t[strlen(t) - 1] != ' ' &&
		    strcmp(t, "true") && strcmp(t, "false") && strcmp(t, "null") &&
		    strcmp(t, "yes") && strcmp(t, "no") && strcmp(t, "~") &&
		    strspn(t, "0123456789.+-eE") != strlen(t);

		if (plain) {
			fputs(t, stdout);
		} else {
			char *q = json_dumps(v, JSON_ENCODE_ANY);	/* JSON strings are YAML */

			fputs(q ? q : "\"\"", stdout);
			free(q);
		}
	} else if (json_is_null(v)) {
		fputs("null", stdout);
	} else {
		char *q = json_dumps(v, JSON_ENCODE_ANY);

		fputs(q ? q : "null", stdout);
		free(q);
	}
}

static void
yaml_emit(json_t *v, int ind, bool after_dash)
{
	const char *k;
	json_t *e;
	size_t i;
	bool first = true;

	if (json_is_object(v) && json_object_size(v) > 0) {
		json_object_foreach(v, k, e) {
			if (!(first && after_dash))
				printf("%*s", ind, "");
			first = false;
			printf("%s:", k);
			if ((json_is_object(e) && json_object_size(e)) ||
			    (json_is_array(e) && json_array_size(e))) {
				putchar('\n');
				yaml_emit(e, ind + 2, false);
			} else {
				putchar(' ');
				if (json_is_object(e))
					fputs("{}", stdout);
				else if (json_is_array(e))
					fputs("[]", stdout);
				else
					yaml_scalar(e);
				putchar('\n');
			}
		}
	} else if (json_is_array(v) && json_array_size(v) > 0) {
		json_array_foreach(v, i, e) {
			printf("%*s- ", ind, "");
			if ((json_is_object(e) && json_object_size(e)) ||
			    (json_is_array(e) && json_array_size(e)))
				yaml_emit(e, ind + 2, true);
			else {
				yaml_scalar(e);
				putchar('\n');
			}
		}
	} else {
		printf("%*s", after_dash ? 0 : ind, "");
		if (json_is_object(v))
			fputs("{}", stdout);
		else if (json_is_array(v))
			fputs("[]", stdout);
		else
			yaml_scalar(v);
		putchar('\n');
	}
}

/* Machine output (-o json|yaml) of v; false for tables (the caller prints). */
static bool
emit(const struct cli *c, json_t *v)
{
	if (c->out == OUT_JSON) {
		print_json(v);
		return true;
	}
	if (c->out == OUT_YAML) {
		yaml_emit(v, 0, false);
		return true;
	}
	return false;
}

/* An RFC 3339 time field (string; older servers sent Unix seconds), "-" for none. */
static const char *
tcol(json_t *o, const char *k, char out[32])
{
	json_t *v = json_object_get(o, k);

	if (json_is_string(v)) {
		str_copy(out, json_string_value(v), 32);
		return out;
	}
	if (json_is_integer(v) && json_integer_value(v) != 0) {
		time_fmt_rfc3339(out, (int64_t)json_integer_value(v));
		return out;
	}
	return "-";
}

static const char *
jstr(json_t *o, const char *k)
{
	const char *v = json_string_value(json_object_get(o, k));

	return v ? v : "";
}

static int64_t
jint(json_t *o, const char *k)
{
	return (int64_t)json_integer_value(json_object_get(o, k));
}

static void
join_tags(json_t *tags, char *out, size_t n)
{
	json_t *t;
	size_t i, used = 0;

	out[0] = 0;
	json_array_foreach(tags, i, t) {
		int w = snprintf(out + used, n - used, "%s%s", i ? "," : "",
		    json_string_value(t) ? json_string_value(t) : "");
		if (w < 0 || (size_t)w >= n - used)
			break;
		used += (size_t)w;
	}
	if (used == 0)
		str_copy(out, "-", n);
}

/* ---- options of the verbs ---- */

enum { O_DB = 256, O_USER, O_REUSABLE, O_EPHEMERAL, O_EXPIRATION, O_TAGS, O_FILE, O_CREATE,
       O_PROTO };

struct opts {
	const char *db, *user, *expiration, *tags, *file, *proto;
	bool reusable, ephemeral, create;
};

static json_t *
list_array(const char *s)
{
	json_t *a = json_array();
	char *copy = strdup(s ? s : ""), *save = NULL, *t;

	for (t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save))
		if (*t)
			json_array_append_new(a, json_string(t));
	free(copy);
	return a;
}

static int
check_expiration(const char *e)
{
	int64_t s;

	if (e == NULL || strcmp(e, "never") == 0 || duration_parse(e, &s) == 0)
		return 0;
	fail("bad --expiration \"%s\" (use 90s, 30m, 24h, 7d or never)", e);
	return 2;
}

/* Asks before deleting (stdin: y or yes), unless --force/--yes. */
static bool
confirm(const struct cli *c, const char *what)
{
	char line[32];

	if (c->force)
		return true;
	fprintf(stderr, "Delete %s? This cannot be undone. [y/N] ", what);
	fflush(stderr);
	if (fgets(line, sizeof(line), stdin) == NULL) {
		fputs("\nwiremesh-server: not deleted (no answer; add --force to skip the question)\n",
		    stderr);
		return false;
	}
	line[strcspn(line, "\r\n")] = 0;
	if (strcasecmp(line, "y") == 0 || strcasecmp(line, "yes") == 0)
		return true;
	fputs("wiremesh-server: not deleted\n", stderr);
	return false;
}

/* ---- the verbs ---- */

struct verb;
typedef int (*verb_fn)(struct cli *c, struct opts *o, int n, char **pos);

struct verb {
	const char *noun, *verb;
	const char *args;	/* synopsis after "NOUN VERB" */
	const char *summary;
	int min, max;		/* positional arguments */
	const char *flags;	/* the verb's own flags, for help and completion */
	verb_fn run;
};

static int
apikeys_create(struct cli *c, struct opts *o, int n, char **pos)
{
	json_t *out = NULL;
	int r;

	if ((r = check_expiration(o->expiration)) != 0)
		return r;
	if (o->db) {
		struct store *st;
		int64_t exp = 90 * 86400, secs;
		char *key = NULL;

		/* a file path (not a postgres:// URI or key=value string) must exist */
		if (!o->create && !strstr(o->db, "://") && !strchr(o->db, '=') &&
		    access(o->db, F_OK) != 0)
			return fail("no database at %s (a typo? the server's database is the one "
			    "its config names; add --create to make a new, empty one)", o->db);
		if (o->expiration && strcmp(o->expiration, "never") == 0)
			exp = 0;
		else if (o->expiration && duration_parse(o->expiration, &secs) == 0)
			exp = secs;
		if ((r = store_open(o->db, &st)) != 0)
			return fail("cannot open the database %s: %s", o->db, err_str(r));
		r = server_apikey_create(st, exp ? time_now_s() + exp : 0, &key);
		store_close(st);
		if (r != 0)
			return fail("cannot create the API key: %s", err_str(r));
		puts(key);
		free_secret(key);
		return 0;
	}
	if (call(c, "POST", "/api/v1/apikeys", o->expiration ?
	    json_pack("{s:s}", "expiration", o->expiration) : json_object(), &out))
		return 1;
	if (!emit(c, out))
		puts(jstr(json_object_get(out, "apikey"), "key"));
	json_decref(out);
	return 0;
}

static int
apikeys_list(struct cli *c, struct opts *o, int n, char **pos)
{
	json_t *out = NULL, *k;
	size_t i;
	char t1[32], t2[32], t3[32];

	if (call(c, "GET", "/api/v1/apikeys", NULL, &out))
		return 1;
	if (!emit(c, out)) {
		printf("%-4s %-14s %-21s %-30s %s\n", "ID", "PREFIX", "CREATED", "EXPIRES",
		    "LAST USED");
		json_array_foreach(json_object_get(out, "apikeys"), i, k) {
			char exp[48];

			/* an expired key shows when it stopped working, not a future date */
			if (json_string_value(json_object_get(k, "revoked_at")))
				snprintf(exp, sizeof(exp), "expired %s", tcol(k, "revoked_at", t2));
			else if (json_is_true(json_object_get(k, "expired")))
				snprintf(exp, sizeof(exp), "expired %s", tcol(k, "expires_at", t2));
			else
				snprintf(exp, sizeof(exp), "%s", json_string_value(json_object_get(k,
				    "expires_at")) ? tcol(k, "expires_at", t2) : "never");
			printf("%-4" PRId64 " %-14s %-21s %-30s %s\n", jint(k, "id"), jstr(k, "prefix"),
			    tcol(k, "created_at", t1), exp, tcol(k, "last_used_at", t3));
		}
	}
	json_decref(out);
	return 0;
}

static int
apikeys_expire(struct cli *c, struct opts *o, int n, char **pos)
{
	json_t *out = NULL;
	char path[256];

	snprintf(path, sizeof(path), "/api/v1/apikeys/%.64s/expire", pos[0]);
	if (call(c, "POST", path, json_object(), &out))
		return 1;
	if (!emit(c, out))
		printf("API key %s expired\n", pos[0]);
	json_decref(out);
	return 0;
}

static int
users_create(struct cli *c, struct opts *o, int n, char **pos)
{
	json_t *out = NULL;

	if (call(c, "POST", "/api/v1/users", json_pack("{s:s}", "name", pos[0]), &out))
		return 1;
	if (!emit(c, out))
		printf("user %s created\n", pos[0]);
	json_decref(out);
	return 0;
}

static int
users_list(struct cli *c, struct opts *o, int n, char **pos)
{
	json_t *out = NULL, *u;
	size_t i;
	char t[32];

	if (call(c, "GET", "/api/v1/users", NULL, &out))
		return 1;
	if (!emit(c, out)) {
		printf("%-4s %-32s %s\n", "ID", "NAME", "CREATED");
		json_array_foreach(json_object_get(out, "users"), i, u)
			printf("%-4" PRId64 " %-32s %s\n", jint(u, "id"), jstr(u, "name"),
			    tcol(u, "created_at", t));
	}
	json_decref(out);
	return 0;
}

static int
users_rename(struct cli *c, struct opts *o, int n, char **pos)
{
	json_t *out = NULL;
	char path[256];

	snprintf(path, sizeof(path), "/api/v1/users/%.128s/rename", pos[0]);
	if (call(c, "POST", path, json_pack("{s:s}", "new_name", pos[1]), &out))
		return 1;
	if (!emit(c, out))
		printf("user %s renamed to %s\n", pos[0], pos[1]);
	json_decref(out);
	return 0;
}

static int
users_delete(struct cli *c, struct opts *o, int n, char **pos)
{
	json_t *out = NULL;
	char path[256], what[160];

	snprintf(what, sizeof(what), "user %.128s", pos[0]);
	if (!confirm(c, what))
		return 1;
	snprintf(path, sizeof(path), "/api/v1/users/%.128s", pos[0]);
	if (call(c, "DELETE", path, NULL, &out))
		return 1;
	if (!emit(c, out))
		printf("user %s deleted\n", pos[0]);
	json_decref(out);
	return 0;
}

static int
pak_create(struct cli *c, struct opts *o, int n, char **pos)
{
	json_t *out = NULL, *body;
	int r;

	if (o->user == NULL) {
		fail("%s", "preauthkeys create needs --user NAME");
		return 2;
	}
	if ((r = check_expiration(o->expiration)) != 0)
		return r;
	body = json_pack("{s:s, s:b, s:b, s:o}", "user", o->user, "reusable", o->reusable,
	    "ephemeral", o->ephemeral, "tags", list_array(o->tags));
	if (o->expiration)
		json_object_set_new(body, "expiration", json_string(o->expiration));
	if (call(c, "POST", "/api/v1/preauthkeys", body, &out))
		return 1;
	if (!emit(c, out))
		puts(jstr(json_object_get(out, "preauthkey"), "key"));
	json_decref(out);
	return 0;
}

static int
pak_list(struct cli *c, struct opts *o, int n, char **pos)
{
	json_t *out = NULL, *k;
	char path[256], t1[32], tags[256];
	size_t i;

	snprintf(path, sizeof(path), "/api/v1/preauthkeys%s%.128s", o->user ? "?user=" : "",
	    o->user ? o->user : "");
	if (call(c, "GET", path, NULL, &out))
		return 1;
	if (!emit(c, out)) {
		printf("%-4s %-14s %-16s %-8s %-9s %-5s %-30s %s\n", "ID", "PREFIX", "USER",
		    "REUSABLE", "EPHEMERAL", "USED", "EXPIRES", "TAGS");
		json_array_foreach(json_object_get(out, "preauthkeys"), i, k) {
			char exp[48];

			join_tags(json_object_get(k, "tags"), tags, sizeof(tags));
			if (json_string_value(json_object_get(k, "revoked_at")))
				snprintf(exp, sizeof(exp), "expired %s", tcol(k, "revoked_at", t1));
			else if (json_is_true(json_object_get(k, "expired")))
				snprintf(exp, sizeof(exp), "expired %s", tcol(k, "expires_at", t1));
			else
				snprintf(exp, sizeof(exp), "%s", json_string_value(json_object_get(k,
				    "expires_at")) ? tcol(k, "expires_at", t1) : "never");
			printf("%-4" PRId64 " %-14s %-16s %-8s %-9s %-5s %-30s %s\n",
			    jint(k, "id"), jstr(k, "prefix"), jstr(k, "user"),
			    json_is_true(json_object_get(k, "reusable")) ? "yes" : "no",
			    json_is_true(json_object_get(k, "ephemeral")) ? "yes" : "no",
			    json_is_true(json_object_get(k, "used")) ? "yes" : "no", exp, tags);
		}
	}
	json_decref(out);
	return 0;
}

static int
pak_expire(struct cli *c, struct opts *o, int n, char **pos)
{
	json_t *out = NULL;
	char path[256];

	snprintf(path, sizeof(path), "/api/v1/preauthkeys/%.32s/expire", pos[0]);
	if (call(c, "POST", path, json_object(), &out))
		return 1;
	if (!emit(c, out))
		printf("pre-auth key %s expired\n", pos[0]);
	json_decref(out);
	return 0;
}

static void
node_header(void)
{
	printf("%-5s %-20s %-16s %-15s %-26s %-8s %-21s %s\n", "ID", "NAME", "USER",
	    "IPV4", "IPV6", "STATUS", "LAST SEEN", "TAGS");
}

static void
print_node_row(json_t *n)
{
	char t1[32], tags[256];

	join_tags(json_object_get(n, "tags"), tags, sizeof(tags));
	printf("%-5" PRId64 " %-20s %-16s %-15s %-26s %-8s %-21s %s\n", jint(n, "id"),
	    jstr(n, "name"), jstr(n, "user"), jstr(n, "ipv4"), jstr(n, "ipv6"),
	    json_is_true(json_object_get(n, "expired")) ? "expired" :
	    json_is_true(json_object_get(n, "online")) ? "online" : "offline",
	    tcol(n, "last_seen", t1), tags);
}

static bool
valid_id(const char *s)
{
	return *s && strspn(s, "0123456789") == strlen(s) && strlen(s) < 19;
}

static int
nodes_list(struct cli *c, struct opts *o, int n, char **pos)
{
	json_t *out = NULL, *nd;
	char path[256];
	size_t i;

	snprintf(path, sizeof(path), "/api/v1/nodes%s%.128s", o->user ? "?user=" : "",
	    o->user ? o->user : "");
	if (call(c, "GET", path, NULL, &out))
		return 1;
	if (!emit(c, out)) {
		node_header();
		json_array_foreach(json_object_get(out, "nodes"), i, nd)
			print_node_row(nd);
	}
	json_decref(out);
	return 0;
}

static int
nodes_show(struct cli *c, struct opts *o, int n, char **pos)
{
	json_t *out = NULL;
	char path[256];

	if (!valid_id(pos[0]))
		return fail("node ID must be a number, not \"%s\" (see nodes list)", pos[0]), 2;
	snprintf(path, sizeof(path), "/api/v1/nodes/%.32s", pos[0]);
	if (call(c, "GET", path, NULL, &out))
		return 1;
	if (!emit(c, out))
		print_json(json_object_get(out, "node"));
	json_decref(out);
	return 0;
}

static int
nodes_delete(struct cli *c, struct opts *o, int n, char **pos)
{
	json_t *out = NULL, *cur = NULL;
	char path[256], what[160];

	if (!valid_id(pos[0]))
		return fail("node ID must be a number, not \"%s\" (see nodes list)", pos[0]), 2;
	snprintf(path, sizeof(path), "/api/v1/nodes/%.32s", pos[0]);
	if (!c->force) {	/* name it in the question */
		if (call(c, "GET", path, NULL, &cur))
			return 1;
		snprintf(what, sizeof(what), "node %s (%.64s, user %.64s)", pos[0],
		    jstr(json_object_get(cur, "node"), "name"),
		    jstr(json_object_get(cur, "node"), "user"));
		json_decref(cur);
		if (!confirm(c, what))
			return 1;
	}
	if (call(c, "DELETE", path, NULL, &out))
		return 1;
	if (!emit(c, out))
		printf("node %s deleted\n", pos[0]);
	json_decref(out);
	return 0;
}

static int
nodes_routes(struct cli *c, struct opts *o, int n, char **pos)
{
	bool approve = n == 2;
	json_t *out = NULL;
	char path[256];

	if (!valid_id(pos[0]))
		return fail("node ID must be a number, not \"%s\" (see nodes list)", pos[0]), 2;
	snprintf(path, sizeof(path), "/api/v1/nodes/%.32s/routes", pos[0]);
	if (call(c, approve ? "POST" : "GET", path,
	    approve ? json_pack("{s:o}", "approved", list_array(pos[1])) : NULL, &out))
		return 1;
	if (!emit(c, out)) {
		char a[512], b[512], v[512];

		join_tags(json_object_get(out, "advertised"), a, sizeof(a));
		join_tags(json_object_get(out, "approved"), b, sizeof(b));
		join_tags(json_object_get(out, "serving"), v, sizeof(v));
		printf("node %s (%s)\n  advertised: %s\n  approved:   %s\n  serving:    %s\n",
		    pos[0], jstr(out, "name"), a, b, v);
	}
	json_decref(out);
	return 0;
}

/* expire, rename, tag, move: POST /api/v1/nodes/ID/ACTION, the node back */
static int
node_action(struct cli *c, const char *id, const char *action, json_t *body)
{
	json_t *out = NULL;
	char path[256];

	if (!valid_id(id)) {
		json_decref(body);
		return fail("node ID must be a number, not \"%s\" (see nodes list)", id), 2;
	}
	snprintf(path, sizeof(path), "/api/v1/nodes/%.32s/%s", id, action);
	if (call(c, "POST", path, body, &out))
		return 1;
	if (!emit(c, out)) {
		node_header();
		print_node_row(json_object_get(out, "node"));
	}
	json_decref(out);
	return 0;
}

static int
nodes_expire(struct cli *c, struct opts *o, int n, char **pos)
{
	return node_action(c, pos[0], "expire", json_object());
}

static int
nodes_rename(struct cli *c, struct opts *o, int n, char **pos)
{
	return node_action(c, pos[0], "rename", json_pack("{s:s}", "name", pos[1]));
}

static int
nodes_tag(struct cli *c, struct opts *o, int n, char **pos)
{
	return node_action(c, pos[0], "tags", json_pack("{s:o}", "tags", list_array(pos[1])));
}

static int
nodes_move(struct cli *c, struct opts *o, int n, char **pos)
{
	const char *user = o->user ? o->user : n > 1 ? pos[1] : NULL;

	if (user == NULL) {
		fail("%s", "nodes move needs --user NAME");
		return 2;
	}
	return node_action(c, pos[0], "user", json_pack("{s:s}", "user", user));
}

/* nodes pending | nodes register --user U KEY: machines waiting for a login. */
static int
nodes_pending(struct cli *c, struct opts *o, int n, char **pos)
{
	json_t *out = NULL, *p;
	size_t i;
	char t[32];

	if (call(c, "GET", "/api/v1/nodes/pending", NULL, &out))
		return 1;
	if (!emit(c, out)) {
		printf("%-32s %-24s %-21s %s\n", "KEY", "HOSTNAME", "EXPIRES", "MACHINE");
		json_array_foreach(json_object_get(out, "pending"), i, p)
			printf("%-32s %-24s %-21s %.17s...\n", jstr(p, "key"), jstr(p, "hostname"),
			    tcol(p, "expires_at", t), jstr(p, "machine_key"));
	}
	json_decref(out);
	return 0;
}

static int
nodes_register(struct cli *c, struct opts *o, int n, char **pos)
{
	json_t *out = NULL;

	if (o->user == NULL) {
		fail("%s", "usage: nodes register --user NAME KEY  (KEY: from the register URL or "
		    "nodes pending)");
		return 2;
	}
	if (call(c, "POST", "/api/v1/nodes/register", json_pack("{s:s, s:s}", "user", o->user,
	    "key", pos[0]), &out))
		return 1;
	if (!emit(c, out)) {
		node_header();
		print_node_row(json_object_get(out, "node"));
	}
	json_decref(out);
	return 0;
}

static int
routes_list(struct cli *c, struct opts *o, int n, char **pos)
{
	json_t *out = NULL, *r;
	size_t i;

	if (call(c, "GET", "/api/v1/routes", NULL, &out))
		return 1;
	if (!emit(c, out)) {
		printf("%-5s %-20s %-16s %-22s %-9s %s\n", "ID", "NODE", "USER", "ROUTE", "APPROVED",
		    "SERVING");
		json_array_foreach(json_object_get(out, "routes"), i, r) {
			json_t *adv = json_object_get(r, "advertised"), *all = json_deep_copy(adv), *x;
			size_t k;

			/* every advertised route, and approved ones no longer advertised */
			json_array_foreach(json_object_get(r, "approved"), k, x) {
				bool seen = false;
				json_t *y;
				size_t m;

				json_array_foreach(adv, m, y)
					seen |= json_equal(x, y);
				if (!seen)
					json_array_append(all, x);
			}
			json_array_foreach(all, k, x) {
				bool ap = false, sv = false;
				json_t *y;
				size_t m;

				json_array_foreach(json_object_get(r, "approved"), m, y)
					ap |= json_equal(x, y);
				json_array_foreach(json_object_get(r, "serving"), m, y)
					sv |= json_equal(x, y);
				printf("%-5" PRId64 " %-20s %-16s %-22s %-9s %s\n", jint(r, "id"),
				    jstr(r, "name"), jstr(r, "user"), json_string_value(x) ?: "",
				    ap ? "yes" : "no", sv ? "yes" : "no");
			}
			json_decref(all);
		}
	}
	json_decref(out);
	return 0;
}

static char *
read_all(const char *path, size_t *len)
{
	FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
	struct buf b;
	char tmp[8192];
	size_t n;

	if (f == NULL)
		return NULL;
	buf_init(&b, 16 << 20);
	while ((n = fread(tmp, 1, sizeof(tmp), f)) > 0)
		if (buf_append(&b, tmp, n) != 0)
			break;
	if (f != stdin)
		fclose(f);
	*len = b.len;
	return buf_cstr(&b);
}

static int
policy_get(struct cli *c, struct opts *o, int n, char **pos)
{
	json_t *out = NULL;
	struct buf raw;

	if (request(c, "GET", "/api/v1/policy", NULL, 0, NULL, &out, &raw))
		return 1;
	fwrite(raw.data, 1, raw.len, stdout);
	buf_cleanup(&raw);
	return 0;
}

static int
policy_set(struct cli *c, struct opts *o, int n, char **pos)
{
	json_t *out = NULL;
	size_t len = 0;
	char *text;
	int rc;

	if (o->file == NULL && n > 0)
		o->file = pos[0];
	if (o->file == NULL) {
		fail("%s", "policy set needs -f FILE");
		return 2;
	}
	if ((text = read_all(o->file, &len)) == NULL)
		return fail("cannot read %s", o->file);
	rc = request(c, "PUT", "/api/v1/policy", text, len, "Content-Type: application/hujson",
	    &out, NULL);
	free(text);
	if (rc)
		return rc;
	if (!emit(c, out))
		printf("policy updated (ETag %s)\n", jstr(out, "etag"));
	json_decref(out);
	return 0;
}

static int
policy_history(struct cli *c, struct opts *o, int n, char **pos)
{
	json_t *out = NULL, *v;
	size_t i;
	char t[32];

	if (call(c, "GET", "/api/v1/policy/history", NULL, &out))
		return 1;
	if (!emit(c, out)) {
		printf("%-5s %-36s %-21s %s\n", "ID", "ETAG", "CREATED", "BY");
		json_array_foreach(json_object_get(out, "history"), i, v)
			printf("%-5" PRId64 " %-36s %-21s %s\n", jint(v, "id"), jstr(v, "etag"),
			    tcol(v, "created_at", t), jstr(v, "created_by"));
	}
	json_decref(out);
	return 0;
}

static int
policy_check(struct cli *c, struct opts *o, int n, char **pos)
{
	char *argv[3] = { "check", pos[0], NULL };

	return policy_cli_main(2, argv);
}

/* explain: offline with --file; else the server decides with its active
 * policy and its nodes (names and addresses resolve to their owners/tags). */
static int
policy_explain(struct cli *c, struct opts *o, int n, char **pos)
{
	json_t *out = NULL, *body;
	const char *verdict;

	if (o->file) {
		char *argv[8];
		int k = 0;

		argv[k++] = "explain";
		argv[k++] = "--file";
		argv[k++] = (char *)o->file;
		if (o->proto) {
			argv[k++] = "--proto";
			argv[k++] = (char *)o->proto;
		}
		argv[k++] = pos[0];
		argv[k++] = pos[1];
		argv[k] = NULL;
		return policy_cli_main(k, argv);
	}
	body = json_pack("{s:s, s:s}", "src", pos[0], "dst", pos[1]);
	if (o->proto)
		json_object_set_new(body, "proto", json_string(o->proto));
	if (call(c, "POST", "/api/v1/policy/explain", body, &out))
		return 2;
	verdict = jstr(out, "verdict");
	if (!emit(c, out))
		fputs(jstr(out, "explanation"), stdout);
	n = strcmp(verdict, "accept") == 0 ? 0 : strcmp(verdict, "deny") == 0 ? 1 : 2;
	json_decref(out);
	return n;
}

static int run_completion(struct cli *c, struct opts *o, int n, char **pos);

static const struct verb verbs[] = {
	{ "apikeys", "create", "[--db PATH [--create]] [--expiration DUR]",
	  "Make an API key (printed once). With --db, write the server's database directly "
	  "(bootstrap); a missing database is refused unless --create.", 0, 0,
	  "--db --create --expiration", apikeys_create },
	{ "apikeys", "list", "", "List API keys.", 0, 0, "", apikeys_list },
	{ "apikeys", "expire", "PREFIX", "Expire an API key now.", 1, 1, "", apikeys_expire },
	{ "users", "create", "NAME", "Create a user.", 1, 1, "", users_create },
	{ "users", "list", "", "List users.", 0, 0, "", users_list },
	{ "users", "rename", "NAME NEW_NAME", "Rename a user (its nodes follow).", 2, 2, "",
	  users_rename },
	{ "users", "delete", "NAME", "Delete a user without nodes (asks unless --force).", 1, 1,
	  "--force --yes", users_delete },
	{ "preauthkeys", "create", "--user NAME [--reusable] [--ephemeral] [--expiration DUR] "
	  "[--tags tag:a,...]", "Make a pre-auth key (printed once).", 0, 0,
	  "--user --reusable --ephemeral --expiration --tags", pak_create },
	{ "preauthkeys", "list", "[--user NAME]", "List pre-auth keys.", 0, 0, "--user", pak_list },
	{ "preauthkeys", "expire", "ID", "Expire a pre-auth key now.", 1, 1, "", pak_expire },
	{ "nodes", "list", "[--user NAME]", "List nodes.", 0, 0, "--user", nodes_list },
	{ "nodes", "show", "ID", "Show one node.", 1, 1, "", nodes_show },
	{ "nodes", "delete", "ID", "Delete a node (asks unless --force).", 1, 1, "--force --yes",
	  nodes_delete },
	{ "nodes", "expire", "ID", "Expire a node's key now (it must log in again).", 1, 1, "",
	  nodes_expire },
	{ "nodes", "rename", "ID NAME", "Rename a node (a DNS label).", 2, 2, "", nodes_rename },
	{ "nodes", "move", "ID --user NAME", "Give a node to another user.", 1, 2, "--user",
	  nodes_move },
	{ "nodes", "tag", "ID tag:a,tag:b", "Set a node's tags (\"\" for none).", 2, 2, "",
	  nodes_tag },
	{ "nodes", "routes", "ID", "A node's advertised, approved and served routes.", 1, 1, "",
	  nodes_routes },
	{ "nodes", "approve-routes", "ID CIDR,CIDR,...", "Set a node's approved routes "
	  "(\"\" for none).", 2, 2, "", nodes_routes },
	{ "nodes", "pending", "", "Machines waiting for a login after `wiremesh up` without a key.",
	  0, 0, "", nodes_pending },
	{ "nodes", "register", "--user NAME KEY", "Log a waiting machine in as NAME (KEY: from "
	  "its register URL or nodes pending).", 1, 1, "--user", nodes_register },
	{ "routes", "list", "", "Every route of every node: approved, serving.", 0, 0, "",
	  routes_list },
	{ "policy", "get", "", "Print the active policy.", 0, 0, "", policy_get },
	{ "policy", "set", "-f FILE", "Replace the policy (checked first).", 0, 1, "-f --file",
	  policy_set },
	{ "policy", "history", "", "Stored policy versions.", 0, 0, "", policy_history },
	{ "policy", "check", "FILE", "Check a policy file offline (exit 1: problems, with "
	  "FILE:LINE:COL).", 1, 1, "", policy_check },
	{ "policy", "explain", "[--file F] SRC DST:PORT [--proto P]", "Accept or deny one packet "
	  "and the rules that decide (exit 0 accept, 1 deny, 2 error). Without --file the "
	  "server's active policy decides, and SRC/DST may be node names or addresses.", 2, 2,
	  "--file --proto", policy_explain },
	{ "completion", "", "bash|zsh|fish", "Print a shell completion script.", 1, 1, "",
	  run_completion },
};
static const size_t nverbs = sizeof(verbs) / sizeof(verbs[0]);

static const char *const nouns_local[] = { "serve", "backup", "restore", "version", "help" };

static void
verb_help(const struct verb *v, FILE *f)
{
	if (strcmp(v->noun, "completion") == 0)
		fprintf(f, "usage: wiremesh-server completion %s\n\n%s\n", v->args, v->summary);
	else
		fprintf(f, "usage: wiremesh-server %s %s%s%s\n\n%s\n", v->noun, v->verb,
		    *v->args ? " " : "", v->args, v->summary);
	fputs("\nglobal flags: --server URL, --api-key KEY, -o table|json|yaml (--json), "
	    "--force/--yes\n", f);
}

static void
noun_help(const char *noun, FILE *f)
{
	fprintf(f, "usage: wiremesh-server %s VERB [flags]\n\nverbs:\n", noun);
	for (size_t i = 0; i < nverbs; i++)
		if (strcmp(verbs[i].noun, noun) == 0)
			fprintf(f, "  %-15s %s%s%s\n", verbs[i].verb, verbs[i].args,
			    *verbs[i].args ? "\n                  " : "", verbs[i].summary);
	fprintf(f, "\nRun 'wiremesh-server %s VERB --help' for one verb.\n", noun);
}

static int
run_completion(struct cli *c, struct opts *o, int n, char **pos)
{
	const char *sh = pos[0];
	const char *globals = "--server --api-key --output -o --json --force --yes --help";

	if (strcmp(sh, "bash") == 0 || strcmp(sh, "zsh") == 0) {
		if (strcmp(sh, "zsh") == 0)
			puts("#compdef wiremesh-server\nautoload -U +X bashcompinit && bashcompinit");
		puts("# wiremesh-server completion (bash; zsh through bashcompinit)\n"
		    "__wmserver_complete() {\n"
		    "\tlocal cur=${COMP_WORDS[COMP_CWORD]} noun= verb= i w\n"
		    "\tfor ((i = 1; i < COMP_CWORD; i++)); do\n"
		    "\t\tw=${COMP_WORDS[i]}\n"
		    "\t\tcase $w in --server|--api-key|-o|--output|--db|--user|--expiration|--tags|-f|--file|--proto) ((i++));;\n"
		    "\t\t-*) ;;\n"
		    "\t\t*) if [ -z \"$noun\" ]; then noun=$w; elif [ -z \"$verb\" ]; then verb=$w; fi;;\n"
		    "\t\tesac\n\tdone\n\tlocal words\n\tcase \"$noun/$verb\" in");
		fputs("\t/)\twords='", stdout);
		for (size_t i = 0; i < sizeof(nouns_local) / sizeof(nouns_local[0]); i++)
			printf("%s ", nouns_local[i]);
		for (size_t i = 0; i < nverbs; i++)
			if (i == 0 || strcmp(verbs[i].noun, verbs[i - 1].noun) != 0)
				printf("%s ", verbs[i].noun);
		printf("%s';;\n", globals);
		for (size_t i = 0; i < nverbs; i++) {
			if (strcmp(verbs[i].noun, "completion") == 0)
				continue;
			if (i == 0 || strcmp(verbs[i].noun, verbs[i - 1].noun) != 0) {
				printf("\t%s/)\twords='", verbs[i].noun);
				for (size_t k = i; k < nverbs && strcmp(verbs[k].noun, verbs[i].noun) == 0;
				     k++)
					printf("%s ", verbs[k].verb);
				printf("--help';;\n");
			}
			printf("\t%s/%s)\twords='%s %s';;\n", verbs[i].noun, verbs[i].verb,
			    verbs[i].flags, globals);
		}
		puts("\tcompletion/*)\twords='bash zsh fish';;\n"
		    "\t*)\twords='--help';;\n\tesac\n"
		    "\tCOMPREPLY=($(compgen -W \"$words\" -- \"$cur\"))\n}\n"
		    "complete -F __wmserver_complete wiremesh-server");
		return 0;
	}
	if (strcmp(sh, "fish") == 0) {
		puts("# wiremesh-server completion for fish");
		puts("complete -c wiremesh-server -f");
		puts("complete -c wiremesh-server -l server -r -d 'server URL'");
		puts("complete -c wiremesh-server -l api-key -r -d 'API key'");
		puts("complete -c wiremesh-server -s o -l output -xa 'table json yaml' -d 'output'");
		puts("complete -c wiremesh-server -l force -d 'no confirmation'");
		for (size_t i = 0; i < sizeof(nouns_local) / sizeof(nouns_local[0]); i++)
			printf("complete -c wiremesh-server -n __fish_use_subcommand -a %s\n",
			    nouns_local[i]);
		for (size_t i = 0; i < nverbs; i++) {
			if (i == 0 || strcmp(verbs[i].noun, verbs[i - 1].noun) != 0)
				printf("complete -c wiremesh-server -n __fish_use_subcommand -a %s\n",
				    verbs[i].noun);
			printf("complete -c wiremesh-server -n '__fish_seen_subcommand_from %s' -a %s "
			    "-d '%.60s'\n", verbs[i].noun, strcmp(verbs[i].noun, "completion") ?
			    verbs[i].verb : "'bash zsh fish'", verbs[i].summary);
		}
		return 0;
	}
	fail("unknown shell \"%s\" (bash, zsh or fish)", sh);
	return 2;
}

/* Takes the global flags out of argv, wherever they are. */
static int
strip_globals(struct cli *c, int *argcp, char **argv, bool *help)
{
	int k = 0, argc = *argcp;

	for (int i = 0; i < argc; i++) {
		const char *a = argv[i], *v = NULL;

		if (strcmp(a, "--") == 0) {
			while (i < argc)
				argv[k++] = argv[i++];
			break;
		}
		if (strcmp(a, "--json") == 0) {
			c->out = OUT_JSON;
			continue;
		}
		if (strcmp(a, "--force") == 0 || strcmp(a, "--yes") == 0 || strcmp(a, "-y") == 0) {
			c->force = true;
			continue;
		}
		if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
			*help = true;
			continue;
		}
#define VALUE(name) \
		(strcmp(a, name) == 0 ? (i + 1 < argc ? (v = argv[++i], 1) : -1) : \
		 strncmp(a, name "=", strlen(name) + 1) == 0 ? (v = a + strlen(name) + 1, 1) : 0)
		int m;

		if ((m = VALUE("--server")) != 0) {
			if (m < 0)
				return fail("%s needs a value", a), 2;
			c->server = v;
			continue;
		}
		if ((m = VALUE("--api-key")) != 0) {
			if (m < 0)
				return fail("%s needs a value", a), 2;
			c->api_key = v;
			continue;
		}
		if ((m = VALUE("--output")) != 0 || (m = VALUE("-o")) != 0) {
			if (m < 0)
				return fail("%s needs table, json or yaml", a), 2;
			if (strcmp(v, "json") == 0)
				c->out = OUT_JSON;
			else if (strcmp(v, "yaml") == 0)
				c->out = OUT_YAML;
			else if (strcmp(v, "table") == 0)
				c->out = OUT_TABLE;
			else
				return fail("unknown output format \"%s\" (table, json or yaml)", v), 2;
			continue;
		}
#undef VALUE
		argv[k++] = argv[i];
	}
	argv[k] = NULL;
	*argcp = k;
	c->json = c->out != OUT_TABLE;
	return 0;
}

static int
parse_verb_opts(const struct verb *v, int argc, char **argv, struct opts *o)
{
	static const struct option lo[] = {
		{ "db", required_argument, NULL, O_DB },
		{ "user", required_argument, NULL, O_USER },
		{ "reusable", no_argument, NULL, O_REUSABLE },
		{ "ephemeral", no_argument, NULL, O_EPHEMERAL },
		{ "expiration", required_argument, NULL, O_EXPIRATION },
		{ "tags", required_argument, NULL, O_TAGS },
		{ "file", required_argument, NULL, 'f' },
		{ "create", no_argument, NULL, O_CREATE },
		{ "proto", required_argument, NULL, O_PROTO },
		{ NULL, 0, NULL, 0 },
	};
	int ch;

	memset(o, 0, sizeof(*o));
	optind = 1;
	opterr = 0;
	while ((ch = getopt_long(argc, argv, "+f:", lo, NULL)) != -1) {
		const char *name = NULL;

		for (size_t i = 0; lo[i].name; i++)
			if (lo[i].val == ch)
				name = lo[i].name;
		if (ch == 'f')
			name = "f";
		if (ch == '?' || ch == ':' || name == NULL ||
		    (strstr(v->flags, name) == NULL)) {
			fprintf(stderr, "wiremesh-server %s %s: unknown or misused flag %s\n", v->noun,
			    v->verb, argv[optind - 1]);
			fprintf(stderr, "usage: wiremesh-server %s %s %s\n", v->noun, v->verb, v->args);
			return 2;
		}
		switch (ch) {
		case O_DB: o->db = optarg; break;
		case O_USER: o->user = optarg; break;
		case O_REUSABLE: o->reusable = true; break;
		case O_EPHEMERAL: o->ephemeral = true; break;
		case O_EXPIRATION: o->expiration = optarg; break;
		case O_TAGS: o->tags = optarg; break;
		case 'f': o->file = optarg; break;
		case O_CREATE: o->create = true; break;
		case O_PROTO: o->proto = optarg; break;
		}
		if (optind >= argc)
			break;
		/* flags after positional arguments: keep scanning */
	}
	return 0;
}

/* Moves flags (and their values) before positionals so that "nodes move 3
 * --user bob" parses; positionals keep their order. */
static void
flags_first(int argc, char **argv)
{
	static const char *const with_value[] = { "--db", "--user", "--expiration", "--tags",
		"--file", "-f", "--proto", NULL };
	char **tmp = calloc((size_t)argc + 1, sizeof(*tmp));
	int k = 0;

	if (tmp == NULL)
		return;
	tmp[k++] = argv[0];
	for (int i = 1; i < argc; i++) {
		if (argv[i][0] != '-' || argv[i][1] == 0)
			continue;
		tmp[k++] = argv[i];
		for (size_t w = 0; with_value[w]; w++)
			if (strcmp(argv[i], with_value[w]) == 0 && i + 1 < argc) {
				tmp[k++] = argv[++i];
				break;
			}
	}
	for (int i = 1; i < argc; i++) {
		bool isflag = argv[i][0] == '-' && argv[i][1] != 0;

		if (isflag) {
			for (size_t w = 0; with_value[w]; w++)
				if (strcmp(argv[i], with_value[w]) == 0) {
					i++;
					break;
				}
			continue;
		}
		tmp[k++] = argv[i];
	}
	memcpy(argv, tmp, (size_t)argc * sizeof(*argv));
	free(tmp);
}

int
cli_main(int argc, char **argv)
{
	struct cli c = { getenv("WIREMESH_SERVER"), getenv("WIREMESH_API_KEY"), false, OUT_TABLE,
		false };
	const struct verb *v = NULL;
	bool help = false, noun_known = false;
	struct opts o;
	int rc, npos;
	char **pos;

	if ((rc = strip_globals(&c, &argc, argv, &help)) != 0)
		return rc;
	if (argc == 0) {
		cli_usage();
		return help ? 0 : 2;
	}
	for (size_t i = 0; i < nverbs; i++)
		noun_known |= strcmp(verbs[i].noun, argv[0]) == 0;
	if (!noun_known) {
		fprintf(stderr, "wiremesh-server: unknown command \"%s\" (see 'wiremesh-server "
		    "--help')\n", argv[0]);
		return 2;
	}
	if (strcmp(argv[0], "completion") == 0) {
		v = &verbs[nverbs - 1];
		if (help) {
			verb_help(v, stdout);
			return 0;
		}
		if (argc != 2) {
			verb_help(v, stderr);
			return 2;
		}
		return run_completion(&c, &o, 1, argv + 1);
	}
	if (argc < 2 || argv[1][0] == '-') {
		noun_help(argv[0], help ? stdout : stderr);
		return help ? 0 : 2;
	}
	for (size_t i = 0; i < nverbs; i++)
		if (strcmp(verbs[i].noun, argv[0]) == 0 && strcmp(verbs[i].verb, argv[1]) == 0)
			v = &verbs[i];
	if (v == NULL) {
		fprintf(stderr, "wiremesh-server: unknown %s verb \"%s\"\n\n", argv[0], argv[1]);
		noun_help(argv[0], stderr);
		return 2;
	}
	if (help) {
		verb_help(v, stdout);
		return 0;
	}
	argc -= 1;
	argv += 1;	/* argv[0] is the verb */
	flags_first(argc, argv);
	if ((rc = parse_verb_opts(v, argc, argv, &o)) != 0)
		return rc;
	pos = argv + optind;
	npos = argc - optind;
	if (npos < v->min || npos > v->max) {
		fprintf(stderr, "wiremesh-server %s %s: %s\nusage: wiremesh-server %s %s %s\n",
		    v->noun, v->verb, npos < v->min ? "missing arguments" : "too many arguments",
		    v->noun, v->verb, v->args);
		return 2;
	}
	curl_global_init(CURL_GLOBAL_DEFAULT);
	rc = v->run(&c, &o, npos, pos);
	curl_global_cleanup();
	return rc;
}
