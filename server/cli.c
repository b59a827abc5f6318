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

#include <curl/curl.h>
#include <jansson.h>

#include "common/buf.h"
#include "common/util.h"
#include "policy/policy_cli.h"
#include "server/cli.h"
#include "server/server.h"
#include "server/store.h"

struct cli {
	const char *server;
	const char *api_key;
	bool json;
};

void
cli_usage(void)
{
	fputs(
"usage: wiremesh-server COMMAND [options]\n"
"\n"
"Server:\n"
"  serve [--config FILE] [--listen HOST:PORT] [--db PATH] [--tls-cert FILE --tls-key FILE]\n"
"        [--derp-map FILE] [--policy-file FILE] [--log-level LEVEL]\n"
"        [--node-expiry DUR] [--ephemeral-timeout DUR]\n"
"        [--derp [--derp-region-id N] [--derp-region-code CODE] [--derp-region-name NAME]\n"
"         [--derp-hostname HOST] [--derp-port PORT] [--derp-listen HOST:PORT]]\n"
"        [--stun-listen HOST:PORT]\n"
"        Runs the control server. Without --tls-cert it speaks plain HTTP (loopback or\n"
"        behind a TLS reverse proxy). --derp embeds the DERP relay at /derp on the same\n"
"        listener (TLS when the server has TLS); it admits only node keys of registered,\n"
"        unexpired nodes. Without --derp-map the DERP map sent to nodes is this one region\n"
"        (default 900 \"wiremesh\"; host and port from --derp-hostname/--derp-port, else the\n"
"        listen address). --derp-listen adds a listener of the relay's own (TLS with the\n"
"        server's certificate; plain without), much faster than /derp through the HTTP\n"
"        layer's TLS, and announced instead. --stun-listen (e.g. 0.0.0.0:3478; default off)\n"
"        runs a STUN server.\n"
"        Every option can also be set in the HuJSON config\n"
"        file or as WIREMESH_<OPTION> in the environment (flags win over the environment,\n"
"        which wins over the file).\n"
"\n"
"Admin (talk to the REST API; --server URL and --api-key KEY, or WIREMESH_SERVER and\n"
"WIREMESH_API_KEY; every verb takes --json):\n"
"  apikeys create --db PATH [--expiration DUR]   bootstrap: writes the database directly\n"
"  apikeys create [--expiration DUR] | list | expire PREFIX\n"
"  users create NAME | list | delete NAME\n"
"  preauthkeys create --user NAME [--reusable] [--ephemeral] [--expiration DUR]\n"
"              [--tags tag:a,tag:b] | list [--user NAME] | expire ID\n"
"  nodes list [--user NAME] | show ID | delete ID | expire ID | rename ID NAME\n"
"        | tag ID tag:a,tag:b | routes ID | approve-routes ID CIDR,CIDR,... (\"\" for none)\n"
"        | pending | register --user NAME KEY   (machines waiting after `wiremesh up`)\n"
"  policy get | set -f FILE | history | check FILE | explain [--file F] SRC DST:PORT [--proto P]\n"
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

static const char *
fmt_time(int64_t t, char out[32])
{
	if (t == 0)
		return "-";
	time_fmt_rfc3339(out, t);
	return out;
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

/* Parses the common options; leaves positional arguments in argv[optind..]. */
enum { O_SERVER = 256, O_APIKEY, O_JSON, O_DB, O_USER, O_REUSABLE, O_EPHEMERAL,
       O_EXPIRATION, O_TAGS, O_FILE, O_HELP };

struct opts {
	const char *db, *user, *expiration, *tags, *file;
	bool reusable, ephemeral;
};

static int
parse_opts(int argc, char **argv, struct cli *c, struct opts *o)
{
	static const struct option lo[] = {
		{ "server", required_argument, NULL, O_SERVER },
		{ "api-key", required_argument, NULL, O_APIKEY },
		{ "json", no_argument, NULL, O_JSON },
		{ "db", required_argument, NULL, O_DB },
		{ "user", required_argument, NULL, O_USER },
		{ "reusable", no_argument, NULL, O_REUSABLE },
		{ "ephemeral", no_argument, NULL, O_EPHEMERAL },
		{ "expiration", required_argument, NULL, O_EXPIRATION },
		{ "tags", required_argument, NULL, O_TAGS },
		{ "file", required_argument, NULL, 'f' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int ch;

	memset(o, 0, sizeof(*o));
	optind = 1;
	while ((ch = getopt_long(argc, argv, "f:h", lo, NULL)) != -1) {
		switch (ch) {
		case O_SERVER: c->server = optarg; break;
		case O_APIKEY: c->api_key = optarg; break;
		case O_JSON: c->json = true; break;
		case O_DB: o->db = optarg; break;
		case O_USER: o->user = optarg; break;
		case O_REUSABLE: o->reusable = true; break;
		case O_EPHEMERAL: o->ephemeral = true; break;
		case O_EXPIRATION: o->expiration = optarg; break;
		case O_TAGS: o->tags = optarg; break;
		case 'f': o->file = optarg; break;
		case 'h': cli_usage(); exit(0);
		default: return 2;
		}
	}
	return 0;
}

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
	return fail("bad --expiration \"%s\" (use 90s, 30m, 24h, 7d or never)", e);
}

static int
cmd_apikeys(struct cli *c, int argc, char **argv, struct opts *o)
{
	const char *verb = optind < argc ? argv[optind] : "list";
	json_t *out = NULL;

	if (strcmp(verb, "create") == 0) {
		if (check_expiration(o->expiration))
			return 2;
		if (o->db) {
			struct store *st;
			int64_t exp = 90 * 86400, secs;
			char *key = NULL;
			int r;

			if (o->expiration && strcmp(o->expiration, "never") == 0)
				exp = 0;
			else if (o->expiration && duration_parse(o->expiration, &secs) == 0)
				exp = secs;
			if ((r = store_open(o->db, &st)) != 0)
				return fail("cannot open the database: %s", err_str(r));
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
		if (c->json)
			print_json(out);
		else
			puts(jstr(json_object_get(out, "apikey"), "key"));
	} else if (strcmp(verb, "list") == 0) {
		json_t *k;
		size_t i;
		char t1[32], t2[32], t3[32];

		if (call(c, "GET", "/api/v1/apikeys", NULL, &out))
			return 1;
		if (c->json) {
			print_json(out);
		} else {
			printf("%-4s %-14s %-21s %-21s %-21s %s\n", "ID", "PREFIX", "CREATED",
			    "EXPIRES", "LAST USED", "EXPIRED");
			json_array_foreach(json_object_get(out, "apikeys"), i, k)
				printf("%-4" PRId64 " %-14s %-21s %-21s %-21s %s\n", jint(k, "id"),
				    jstr(k, "prefix"), fmt_time(jint(k, "created_at"), t1),
				    fmt_time(jint(k, "expires_at"), t2),
				    fmt_time(jint(k, "last_used_at"), t3),
				    json_is_true(json_object_get(k, "expired")) ? "yes" : "no");
		}
	} else if (strcmp(verb, "expire") == 0 && optind + 1 < argc) {
		char path[256];

		snprintf(path, sizeof(path), "/api/v1/apikeys/%.64s/expire", argv[optind + 1]);
		if (call(c, "POST", path, json_object(), &out))
			return 1;
		if (c->json)
			print_json(out);
		else
			printf("API key %s expired\n", argv[optind + 1]);
	} else {
		return fail("%s", "usage: apikeys create [--db PATH] | list | expire PREFIX");
	}
	json_decref(out);
	return 0;
}

static int
cmd_users(struct cli *c, int argc, char **argv)
{
	const char *verb = optind < argc ? argv[optind] : "list";
	const char *name = optind + 1 < argc ? argv[optind + 1] : NULL;
	json_t *out = NULL, *u;
	char path[256], t[32];
	size_t i;

	if (strcmp(verb, "create") == 0 && name) {
		if (call(c, "POST", "/api/v1/users", json_pack("{s:s}", "name", name), &out))
			return 1;
		if (!c->json)
			printf("user %s created\n", name);
	} else if (strcmp(verb, "list") == 0) {
		if (call(c, "GET", "/api/v1/users", NULL, &out))
			return 1;
		if (!c->json) {
			printf("%-4s %-32s %s\n", "ID", "NAME", "CREATED");
			json_array_foreach(json_object_get(out, "users"), i, u)
				printf("%-4" PRId64 " %-32s %s\n", jint(u, "id"), jstr(u, "name"),
				    jstr(u, "created_at"));
		}
	} else if ((strcmp(verb, "delete") == 0 || strcmp(verb, "destroy") == 0) && name) {
		snprintf(path, sizeof(path), "/api/v1/users/%.128s", name);
		if (call(c, "DELETE", path, NULL, &out))
			return 1;
		if (!c->json)
			printf("user %s deleted\n", name);
	} else {
		return fail("%s", "usage: users create NAME | list | delete NAME");
	}
	if (c->json)
		print_json(out);
	(void)t;
	json_decref(out);
	return 0;
}

static int
cmd_preauthkeys(struct cli *c, int argc, char **argv, struct opts *o)
{
	const char *verb = optind < argc ? argv[optind] : "list";
	json_t *out = NULL, *k;
	char path[256], t1[32], tags[256];
	size_t i;

	if (strcmp(verb, "create") == 0) {
		json_t *body;

		if (o->user == NULL)
			return fail("%s", "preauthkeys create needs --user NAME");
		if (check_expiration(o->expiration))
			return 2;
		body = json_pack("{s:s, s:b, s:b, s:o}", "user", o->user, "reusable", o->reusable,
		    "ephemeral", o->ephemeral, "tags", list_array(o->tags));
		if (o->expiration)
			json_object_set_new(body, "expiration", json_string(o->expiration));
		if (call(c, "POST", "/api/v1/preauthkeys", body, &out))
			return 1;
		if (c->json)
			print_json(out);
		else
			puts(jstr(json_object_get(out, "preauthkey"), "key"));
	} else if (strcmp(verb, "list") == 0) {
		snprintf(path, sizeof(path), "/api/v1/preauthkeys%s%.128s", o->user ? "?user=" : "",
		    o->user ? o->user : "");
		if (call(c, "GET", path, NULL, &out))
			return 1;
		if (c->json) {
			print_json(out);
		} else {
			printf("%-4s %-14s %-16s %-8s %-9s %-5s %-21s %s\n", "ID", "PREFIX", "USER",
			    "REUSABLE", "EPHEMERAL", "USED", "EXPIRES", "TAGS");
			json_array_foreach(json_object_get(out, "preauthkeys"), i, k) {
				join_tags(json_object_get(k, "tags"), tags, sizeof(tags));
				printf("%-4" PRId64 " %-14s %-16s %-8s %-9s %-5s %-21s %s\n",
				    jint(k, "id"), jstr(k, "prefix"), jstr(k, "user"),
				    json_is_true(json_object_get(k, "reusable")) ? "yes" : "no",
				    json_is_true(json_object_get(k, "ephemeral")) ? "yes" : "no",
				    json_is_true(json_object_get(k, "used")) ? "yes" : "no",
				    json_is_true(json_object_get(k, "expired")) ? "expired" :
				    fmt_time(jint(k, "expires_at"), t1), tags);
			}
		}
	} else if (strcmp(verb, "expire") == 0 && optind + 1 < argc) {
		snprintf(path, sizeof(path), "/api/v1/preauthkeys/%.32s/expire", argv[optind + 1]);
		if (call(c, "POST", path, json_object(), &out))
			return 1;
		if (c->json)
			print_json(out);
		else
			printf("pre-auth key %s expired\n", argv[optind + 1]);
	} else {
		return fail("%s", "usage: preauthkeys create --user NAME [...] | list | expire ID");
	}
	json_decref(out);
	return 0;
}

static void
print_node_row(json_t *n)
{
	char t1[32], tags[256];

	join_tags(json_object_get(n, "tags"), tags, sizeof(tags));
	printf("%-5" PRId64 " %-20s %-16s %-15s %-26s %-7s %-21s %s\n", jint(n, "id"),
	    jstr(n, "name"), jstr(n, "user"), jstr(n, "ipv4"), jstr(n, "ipv6"),
	    json_is_true(json_object_get(n, "online")) ? "online" : "offline",
	    json_is_true(json_object_get(n, "expired")) ? "expired" :
	    fmt_time(jint(n, "last_seen"), t1), tags);
}

/* nodes pending | nodes register --user U KEY: machines waiting for a login. */
static int
cmd_nodes_enrol(struct cli *c, int argc, char **argv, struct opts *o)
{
	const char *verb = argv[optind];
	const char *key = optind + 1 < argc ? argv[optind + 1] : NULL;
	json_t *out = NULL, *p;
	size_t i;

	if (strcmp(verb, "pending") == 0) {
		if (call(c, "GET", "/api/v1/nodes/pending", NULL, &out))
			return 1;
		if (c->json) {
			print_json(out);
		} else {
			printf("%-32s %-24s %-21s %s\n", "KEY", "HOSTNAME", "EXPIRES", "MACHINE");
			json_array_foreach(json_object_get(out, "pending"), i, p)
				printf("%-32s %-24s %-21s %.17s...\n", jstr(p, "key"), jstr(p, "hostname"),
				    jstr(p, "expires_at"), jstr(p, "machine_key"));
		}
		json_decref(out);
		return 0;
	}
	if (key == NULL || o->user == NULL)
		return fail("%s", "usage: nodes register --user NAME KEY  (KEY: from the register "
		    "URL or nodes pending)");
	if (call(c, "POST", "/api/v1/nodes/register", json_pack("{s:s, s:s}", "user", o->user,
	    "key", key), &out))
		return 1;
	if (c->json) {
		print_json(out);
	} else {
		printf("%-5s %-20s %-16s %-15s %-26s %-7s %-21s %s\n", "ID", "NAME", "USER",
		    "IPV4", "IPV6", "STATUS", "LAST SEEN", "TAGS");
		print_node_row(json_object_get(out, "node"));
	}
	json_decref(out);
	return 0;
}

static int
cmd_nodes(struct cli *c, int argc, char **argv, struct opts *o)
{
	const char *verb = optind < argc ? argv[optind] : "list";
	const char *id = optind + 1 < argc ? argv[optind + 1] : NULL;
	const char *arg = optind + 2 < argc ? argv[optind + 2] : NULL;
	json_t *out = NULL, *n;
	char path[256];
	size_t i;

	if (strcmp(verb, "pending") == 0 || strcmp(verb, "register") == 0)
		return cmd_nodes_enrol(c, argc, argv, o);
	if (strcmp(verb, "list") == 0) {
		snprintf(path, sizeof(path), "/api/v1/nodes%s%.128s", o->user ? "?user=" : "",
		    o->user ? o->user : "");
		if (call(c, "GET", path, NULL, &out))
			return 1;
		if (c->json) {
			print_json(out);
		} else {
			printf("%-5s %-20s %-16s %-15s %-26s %-7s %-21s %s\n", "ID", "NAME", "USER",
			    "IPV4", "IPV6", "STATUS", "LAST SEEN", "TAGS");
			json_array_foreach(json_object_get(out, "nodes"), i, n)
				print_node_row(n);
		}
		json_decref(out);
		return 0;
	}
	if (id == NULL)
		return fail("%s", "usage: nodes list | show ID | delete ID | expire ID | "
		    "rename ID NAME | tag ID tag:a,tag:b | routes ID | approve-routes ID CIDR,...");
	if (strcmp(verb, "show") == 0) {
		snprintf(path, sizeof(path), "/api/v1/nodes/%.32s", id);
		if (call(c, "GET", path, NULL, &out))
			return 1;
		print_json(c->json ? out : json_object_get(out, "node"));
	} else if (strcmp(verb, "delete") == 0) {
		snprintf(path, sizeof(path), "/api/v1/nodes/%.32s", id);
		if (call(c, "DELETE", path, NULL, &out))
			return 1;
		if (c->json)
			print_json(out);
		else
			printf("node %s deleted\n", id);
	} else if (strcmp(verb, "routes") == 0 ||
	    (strcmp(verb, "approve-routes") == 0 && optind + 2 < argc)) {
		bool approve = strcmp(verb, "approve-routes") == 0;

		snprintf(path, sizeof(path), "/api/v1/nodes/%.32s/routes", id);
		if (call(c, approve ? "POST" : "GET", path,
		    approve ? json_pack("{s:o}", "approved", list_array(arg)) : NULL, &out))
			return 1;
		if (c->json) {
			print_json(out);
		} else {
			char a[512], b[512], v[512];

			join_tags(json_object_get(out, "advertised"), a, sizeof(a));
			join_tags(json_object_get(out, "approved"), b, sizeof(b));
			join_tags(json_object_get(out, "serving"), v, sizeof(v));
			printf("node %s (%s)\n  advertised: %s\n  approved:   %s\n  serving:    %s\n",
			    id, jstr(out, "name"), a[0] ? a : "-", b[0] ? b : "-", v[0] ? v : "-");
		}
	} else if (strcmp(verb, "expire") == 0 || (strcmp(verb, "rename") == 0 && arg) ||
	    (strcmp(verb, "tag") == 0 && arg)) {
		json_t *body = strcmp(verb, "rename") == 0 ? json_pack("{s:s}", "name", arg) :
		    strcmp(verb, "tag") == 0 ? json_pack("{s:o}", "tags", list_array(arg)) :
		    json_object();

		snprintf(path, sizeof(path), "/api/v1/nodes/%.32s/%s", id,
		    strcmp(verb, "tag") == 0 ? "tags" : verb);
		if (call(c, "POST", path, body, &out))
			return 1;
		if (c->json) {
			print_json(out);
		} else {
			printf("%-5s %-20s %-16s %-15s %-26s %-7s %-21s %s\n", "ID", "NAME", "USER",
			    "IPV4", "IPV6", "STATUS", "LAST SEEN", "TAGS");
			print_node_row(json_object_get(out, "node"));
		}
	} else {
		return fail("unknown nodes verb \"%s\"", verb);
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
cmd_policy(struct cli *c, int argc, char **argv, struct opts *o)
{
	const char *verb = optind < argc ? argv[optind] : "";
	json_t *out = NULL;
	struct buf raw;

	if (strcmp(verb, "get") == 0) {
		if (request(c, "GET", "/api/v1/policy", NULL, 0, NULL, &out, &raw))
			return 1;
		fwrite(raw.data, 1, raw.len, stdout);
		buf_cleanup(&raw);
		return 0;
	}
	if (strcmp(verb, "set") == 0) {
		size_t len = 0;
		char *text;
		int rc;

		if (o->file == NULL && optind + 1 < argc)
			o->file = argv[optind + 1];
		if (o->file == NULL)
			return fail("%s", "usage: policy set -f FILE");
		if ((text = read_all(o->file, &len)) == NULL)
			return fail("cannot read %s", o->file);
		rc = request(c, "PUT", "/api/v1/policy", text, len,
		    "Content-Type: application/hujson", &out, NULL);
		free(text);
		if (rc)
			return rc;
		if (c->json)
			print_json(out);
		else
			printf("policy updated (ETag %s)\n", jstr(out, "etag"));
		json_decref(out);
		return 0;
	}
	if (strcmp(verb, "history") == 0) {
		json_t *v;
		size_t i;

		if (call(c, "GET", "/api/v1/policy/history", NULL, &out))
			return 1;
		if (c->json) {
			print_json(out);
		} else {
			printf("%-5s %-36s %-21s %s\n", "ID", "ETAG", "CREATED", "BY");
			json_array_foreach(json_object_get(out, "history"), i, v)
				printf("%-5" PRId64 " %-36s %-21s %s\n", jint(v, "id"), jstr(v, "etag"),
				    jstr(v, "created_at"), jstr(v, "created_by"));
		}
		json_decref(out);
		return 0;
	}
	return fail("%s", "usage: policy get | set -f FILE | history | check FILE | explain ...");
}

int
cli_main(int argc, char **argv)
{
	struct cli c = { getenv("WIREMESH_SERVER"), getenv("WIREMESH_API_KEY"), false };
	const char *noun = argv[0];
	struct opts o;
	int rc;

	if (strcmp(noun, "policy") == 0 && argc > 1 &&
	    (strcmp(argv[1], "check") == 0 || strcmp(argv[1], "explain") == 0))
		return policy_cli_main(argc - 1, argv + 1);
	if ((rc = parse_opts(argc, argv, &c, &o)) != 0) {
		fprintf(stderr, "run 'wiremesh-server --help' for usage\n");
		return rc;
	}
	curl_global_init(CURL_GLOBAL_DEFAULT);
	if (strcmp(noun, "apikeys") == 0)
		rc = cmd_apikeys(&c, argc, argv, &o);
	else if (strcmp(noun, "users") == 0)
		rc = cmd_users(&c, argc, argv);
	else if (strcmp(noun, "preauthkeys") == 0)
		rc = cmd_preauthkeys(&c, argc, argv, &o);
	else if (strcmp(noun, "nodes") == 0)
		rc = cmd_nodes(&c, argc, argv, &o);
	else if (strcmp(noun, "policy") == 0)
		rc = cmd_policy(&c, argc, argv, &o);
	else
		rc = fail("unknown command \"%s\" (try --help)", noun);
	curl_global_cleanup();
	return rc;
}
