// SPDX-License-Identifier: MIT
/*
 * wiremesh: the node CLI. It talks to wiremeshd over the local API socket.
 *
 *   wiremesh [--socket PATH] [--json] COMMAND [ARGS]
 *
 * Every command is one row of `verbs` below (name, synopsis, help text,
 * handler); `wiremesh COMMAND --help`, `wiremesh help COMMAND`, the usage
 * summary and the shell completion (`wiremesh completion bash|zsh|fish`)
 * all come from that table. The flags of `up` and `set` are the rows of
 * `flags` (name, the request field they set, kind, which commands take
 * them). To add a command, add a row and a handler; to add a setting, add a
 * flag row (and the field to agent_cmd.c's prefs_*).
 *
 * Settings (`up`, `set`): a flag given sets that setting; `up` without any
 * setting flag keeps the settings in force; `up` with some of them must
 * mention every setting that is not at its default, or it refuses and
 * prints the command that keeps them (as `tailscale up` does); `up --reset`
 * puts the unmentioned ones back to their defaults; `set` changes only what
 * it mentions. Booleans take --flag, --flag=true or --flag=false; strings
 * and lists --flag=VALUE or --flag VALUE (--flag= clears).
 *
 *   up [--login-server URL] [--authkey KEY] [--reset] [settings]
 *       Registers (https verified against the system CAs or SSL_CERT_FILE;
 *       http allowed with a warning) and waits up to 10 s for the first
 *       netmap. Prints "Logged in to URL as NAME (100.64.0.1), N peers" and
 *       "# Health: ..." lines. Exit 1 with the reason on stderr when the
 *       login fails. Later `up` calls may omit the URL and key.
 *       Settings: --hostname NAME, --advertise-routes CIDR,...,
 *       --advertise-exit-node, --accept-routes, --exit-node PEER,
 *       --exit-node-allow-lan-access, --advertise-tags tag:A,..., --accept-dns
 *   set [settings]       change settings without the others
 *   down                 stop: disconnect, stay logged in ("Stopped")
 *   logout               expire the node key on the server ("NeedsLogin")
 *   status               "# Health:" lines, then ADDRESS NAME OWNER PATH per node
 *   ping PEER [-c N]     disco ping: "pong from web1 (100.64.0.2) via DERP(lon) in 28ms"
 *   netcheck             UDP, IPv4, IPv6, MappingVariesByDestIP, Nearest DERP, DERP latency
 *   ip [-4|-6]           this node's tailnet addresses
 *   whois IP             the node and user behind a tailnet address
 *   exit-node list       peers that offer an exit node
 *   version              CLI and daemon versions (also --version)
 *   dns status           MagicDNS settings, OS integration, resolver counters
 *   dns query NAME [TYPE]  asks the resolver at 100.100.100.100 (dns_cli.c)
 *   debug                JSON: netmap, paths, relays, counters
 *   completion SHELL     completion script for bash, zsh or fish
 *   help [COMMAND]
 *
 * --json prints the command's data object as JSON instead of text (ping:
 * one object per line). Errors go to stderr; exit 1 on failure, 2 on usage
 * (an unknown command or flag is named). The socket defaults to
 * $WIREMESH_SOCKET, else /run/wiremesh/wiremeshd.sock.
 *
 * Local API (one connection per request): send one JSON object and "\n",
 * read one JSON object. Requests: {"cmd":"up","login_server":U,"authkey":K,
 * "reset":B, settings...}, {"cmd":"set", settings...} (settings: "hostname",
 * "advertise_routes":[CIDR...], "advertise_exit_node":B, "accept_routes":B,
 * "exit_node":S, "exit_node_allow_lan_access":B, "advertise_tags":[S...], "accept_dns":B;
 * absent = not mentioned), {"cmd":"down"}, {"cmd":"logout"},
 * {"cmd":"status"}, {"cmd":"ping","peer":P}, {"cmd":"netcheck"},
 * {"cmd":"ip","family":"4"|"6"}, {"cmd":"debug"}, {"cmd":"version"},
 * {"cmd":"dns_status"} (data: magic_dns, base_domain, global, split,
 * search_domains, extra_records, host_resolvers, accept_dns, os_mode,
 * os_configured, os_error, stats{queries,local,forwarded,...}).
 * Replies: {"ok":true,"text":"...","data":{...}} or {"ok":false,"error":"..."}.
 * status data: {"backend_state" (Running|Starting|Stopped|NeedsLogin),
 * "health":["..."],"self":{id,name,user,ipv4,ipv6,home_derp,
 * home_derp_code},"peers":[{id,name,user,ipv4,ipv6,path,path_kind,endpoint,
 * online,home_derp,last_handshake,rx_bytes,tx_bytes,rtt_ms,primary_routes,exit_node,
 * exit_node_in_use,routes_accepted}], "control":{url,connected,error},
 * "derp":{home,connected}, "accept_routes":B, "exit_node":null|{name,id,in_use,
 * allow_lan_access,error}}; self also has advertised_routes, advertise_exit_node;
 * self and peers have dns_name (NAME.base_domain with MagicDNS on, else NAME).
 * ping data: {peer,ip,via,direct,latency_ms}.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "client-agent/dns_cli.h"
#include "client-agent/localapi.h"
#include "common/util.h"
#include "common/version.h"

static const char *sock_path;
static bool json_out;

/* ---- flags of up and set ---- */

enum { V_UP = 1, V_SET = 2 };
enum kind { K_BOOL, K_STRING, K_LIST };

struct flag {
	const char *name;	/* without "--" */
	const char *key;	/* request field */
	enum kind kind;
	const char *arg;	/* metavariable for help */
	unsigned verbs;		/* V_UP | V_SET */
	const char *help;
};

static const struct flag flags[] = {
	{ "login-server", "login_server", K_STRING, "URL", V_UP,
	  "control server URL(s), comma-separated (needed the first time)" },
	{ "authkey", "authkey", K_STRING, "KEY", V_UP,
	  "pre-auth key (needed the first time and after logout or expiry); file:PATH reads "
	  "it from a 0600 file; default $WIREMESH_AUTHKEY" },
	{ "auth-key", "authkey", K_STRING, "KEY", V_UP, "same as --authkey" },
	{ "reset", "reset", K_BOOL, NULL, V_UP,
	  "settings not mentioned go back to their defaults" },
	{ "force-reauth", "force_reauth", K_BOOL, NULL, V_UP,
	  "log in again (prints a login URL) although the node key is still valid" },
	{ "hostname", "hostname", K_STRING, "NAME", V_UP | V_SET,
	  "name to register (default: the system host name)" },
	{ "advertise-routes", "advertise_routes", K_LIST, "CIDR,...", V_UP | V_SET,
	  "offer these subnets to the tailnet (needs approval)" },
	{ "advertise-exit-node", "advertise_exit_node", K_BOOL, NULL, V_UP | V_SET,
	  "offer this node as an exit node (0.0.0.0/0, ::/0; needs approval)" },
	{ "accept-routes", "accept_routes", K_BOOL, NULL, V_UP | V_SET,
	  "use the subnets peers offer" },
	{ "exit-node", "exit_node", K_STRING, "PEER", V_UP | V_SET,
	  "send internet traffic through PEER (name or address; empty: none)" },
	{ "exit-node-allow-lan-access", "exit_node_allow_lan_access", K_BOOL, NULL, V_UP | V_SET,
	  "keep the local LAN direct while using an exit node" },
	{ "advertise-tags", "advertise_tags", K_LIST, "tag:A,...", V_UP | V_SET,
	  "ask for these tags (granted when the policy's tagOwners allow the user)" },
	{ "accept-dns", "accept_dns", K_BOOL, NULL, V_UP | V_SET,
	  "point the OS at the MagicDNS resolver (default true; false leaves it alone)" },
};

/* ---- calling the daemon ---- */

/* Calls the daemon; prints the error and returns NULL on failure. */
static json_t *
call(json_t *req, int timeout_ms, bool quiet_err)
{
	json_t *reply = NULL;
	char why[512];

	if (localapi_call(sock_path, req, timeout_ms, &reply, why, sizeof(why)) != 0) {
		fprintf(stderr, "wiremesh: %s\n", why);
		return NULL;
	}
	if (!json_is_true(json_object_get(reply, "ok"))) {
		const char *e = json_string_value(json_object_get(reply, "error"));

		if (!quiet_err)
			fprintf(stderr, "wiremesh: %s\n", e ? e : "request failed");
		return reply;
	}
	return reply;
}

static int
print_reply(json_t *reply)
{
	if (reply == NULL)
		return 1;
	if (!json_is_true(json_object_get(reply, "ok"))) {
		if (json_out) {
			json_t *e = json_pack("{s:O}", "error", json_object_get(reply, "error"));

			json_dumpf(e, stdout, JSON_INDENT(2));
			putchar('\n');
			json_decref(e);
		}
		json_decref(reply);
		return 1;
	}
	if (json_out) {
		json_dumpf(json_object_get(reply, "data"), stdout, JSON_INDENT(2) | JSON_SORT_KEYS);
		putchar('\n');
	} else {
		fputs(json_string_value(json_object_get(reply, "text")) ?: "", stdout);
	}
	json_decref(reply);
	return 0;
}

static int
simple(const char *cmd, int timeout_ms)
{
	json_t *req = json_pack("{s:s}", "cmd", cmd);
	json_t *r = call(req, timeout_ms, false);

	json_decref(req);
	return print_reply(r);
}

/* ---- the command table ---- */

struct verb {
	const char *name;
	const char *synopsis;	/* after "wiremesh NAME" */
	const char *summary;
	const char *help;	/* more text for NAME --help (may be NULL) */
	unsigned flagset;	/* V_UP / V_SET: takes those flags */
	const char *opts;	/* other flags and words, for completion */
	int (*run)(const struct verb *v, int argc, char **argv);
};

static const struct verb verbs[];
static const size_t nverbs;

static void
verb_help(const struct verb *v, FILE *f)
{
	fprintf(f, "usage: wiremesh %s%s%s\n\n%s\n", v->name, *v->synopsis ? " " : "", v->synopsis,
	    v->summary);
	if (v->help)
		fprintf(f, "\n%s", v->help);
	if (v->flagset) {
		fputs("\nflags:\n", f);
		for (size_t i = 0; i < sizeof(flags) / sizeof(flags[0]); i++) {
			char left[64];

			if (!(flags[i].verbs & v->flagset))
				continue;
			snprintf(left, sizeof(left), "--%s%s%s", flags[i].name, flags[i].arg ? " " : "",
			    flags[i].arg ? flags[i].arg : "");
			fprintf(f, "  %-32s %s\n", left, flags[i].help);
		}
	}
	fputs("\nglobal flags: --socket PATH, --json\n", f);
}

static void
usage(FILE *f)
{
	fputs("usage: wiremesh [--socket PATH] [--json] COMMAND [ARGS]\n\ncommands:\n", f);
	for (size_t i = 0; i < nverbs; i++)
		fprintf(f, "  %-12s %s\n", verbs[i].name, verbs[i].summary);
	fputs("\nRun 'wiremesh COMMAND --help' for a command's flags.\n", f);
}

static int usage_err(const struct verb *v, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static int
usage_err(const struct verb *v, const char *fmt, ...)
{
	va_list ap;

	fputs("wiremesh", stderr);
	if (v)
		fprintf(stderr, " %s", v->name);
	fputs(": ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, " (see 'wiremesh %s%s--help')\n", v ? v->name : "", v ? " " : "");
	if (v)
		fprintf(stderr, "usage: wiremesh %s %s\n", v->name, v->synopsis);
	return 2;
}

static bool
is_help(const char *a)
{
	return strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0 || strcmp(a, "-help") == 0;
}

/* argv[1..] hold only --help or nothing. */
static int
no_args(const struct verb *v, int argc, char **argv)
{
	for (int i = 1; i < argc; i++) {
		if (is_help(argv[i])) {
			verb_help(v, stdout);
			return 0;
		}
		return usage_err(v, argv[i][0] == '-' ? "unknown flag %s" : "unexpected argument %s",
		    argv[i]);
	}
	return -1;
}

/* ---- up, set ---- */

static json_t *
list_json(const char *s)
{
	json_t *arr = json_array();
	char *copy = strdup(s), *save = NULL;

	for (char *t = copy ? strtok_r(copy, ",", &save) : NULL; t; t = strtok_r(NULL, ",", &save))
		json_array_append_new(arr, json_string(t));
	free(copy);
	return arr;
}

/* `up` without an auth key for a machine that must log in: the daemon
 * answered with the login URL. Show it, then wait (the daemon holds the
 * server's long-poll) and return the final reply. */
static json_t *
wait_login(json_t *req, json_t *first)
{
	json_t *data = json_object_get(first, "data");

	if (json_out) {
		json_dumpf(data, stdout, JSON_COMPACT | JSON_SORT_KEYS);
		putchar('\n');
	} else {
		fputs(json_string_value(json_object_get(first, "text")) ?: "", stdout);
	}
	fflush(stdout);
	json_object_set_new(req, "cmd", json_string("up_wait"));
	json_object_set(req, "auth_id", json_object_get(data, "auth_id"));
	json_decref(first);
	return call(req, 21 * 60 * 1000, false);
}


/* --authkey KEY, --authkey file:PATH (the whole file, mode 0600) or, without
 * the flag, $WIREMESH_AUTHKEY. A key given on the command line is blanked in
 * argv once read, so /proc/PID/cmdline does not show it for the whole `up`;
 * file: and the environment never put it there. */
static int
set_authkey(json_t *req, char *val)
{
	char *key = NULL;

	if (strncmp(val, "file:", 5) == 0) {
		int e = 0;

		if ((key = secret_file_read(val + 5, &e)) == NULL) {
			fprintf(stderr, "wiremesh: cannot read the auth key from %s: %s%s\n", val + 5,
			    strerror(e), e == EPERM ? " (the file must not be readable by group or "
			    "others: chmod 600)" : "");
			return -1;
		}
		json_object_set_new(req, "authkey", json_string(key));
		free_secret(key);
		return 0;
	}
	json_object_set_new(req, "authkey", json_string(val));
	if (val != getenv("WIREMESH_AUTHKEY"))
		memset(val, 'x', strlen(val));
	return 0;
}

static int
run_settings(const struct verb *v, int argc, char **argv)
{
	json_t *req = json_pack("{s:s}", "cmd", v->name), *r;
	int timeout = 60000;

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *val = NULL;
		const struct flag *f = NULL;
		char name[64];
		size_t n;

		if (is_help(a)) {
			verb_help(v, stdout);
			json_decref(req);
			return 0;
		}
		if (strncmp(a, "--", 2) != 0 && !(a[0] == '-' && a[1] != 0)) {
			json_decref(req);
			return usage_err(v, "unexpected argument %s", a);
		}
		a += a[1] == '-' ? 2 : 1;
		n = strcspn(a, "=");
		if (n >= sizeof(name)) {
			json_decref(req);
			return usage_err(v, "unknown flag %s", argv[i]);
		}
		memcpy(name, a, n);
		name[n] = 0;
		if (a[n] == '=')
			val = a + n + 1;
		for (size_t k = 0; k < sizeof(flags) / sizeof(flags[0]); k++)
			if ((flags[k].verbs & v->flagset) && strcmp(flags[k].name, name) == 0)
				f = &flags[k];
		if (f == NULL) {
			json_decref(req);
			return usage_err(v, "unknown flag %s", argv[i]);
		}
		if (f->kind == K_BOOL) {
			bool b = true;

			if (val && (strcmp(val, "false") == 0 || strcmp(val, "0") == 0))
				b = false;
			else if (val && strcmp(val, "true") != 0 && strcmp(val, "1") != 0) {
				json_decref(req);
				return usage_err(v, "%s takes true or false", argv[i]);
			}
			json_object_set_new(req, f->key, json_boolean(b));
			continue;
		}
		if (val == NULL) {
			if (i + 1 >= argc) {
				json_decref(req);
				return usage_err(v, "flag %s needs a value", argv[i]);
			}
			val = argv[++i];
		}
		if (strcmp(f->key, "authkey") == 0) {
			if (set_authkey(req, (char *)val) != 0) {	/* argv: writable */
				json_decref(req);
				return 2;
			}
			continue;
		}
		json_object_set_new(req, f->key, f->kind == K_LIST ? list_json(val) : json_string(val));
	}
	if (json_object_get(req, "authkey") == NULL && getenv("WIREMESH_AUTHKEY") &&
	    (v->flagset & V_UP) && set_authkey(req, getenv("WIREMESH_AUTHKEY")) != 0) {
		json_decref(req);
		return 2;
	}
	r = call(req, timeout, false);
	if (json_is_true(json_object_get(json_object_get(r, "data"), "login_pending")))
		r = wait_login(req, r);
	json_decref(req);
	return print_reply(r);
}

/* ---- down, logout, status, netcheck, debug, version ---- */

static int
run_simple(const struct verb *v, int argc, char **argv)
{
	int r = no_args(v, argc, argv);

	if (r >= 0)
		return r;
	return simple(v->name, strcmp(v->name, "netcheck") == 0 ? 20000 : 30000);
}

static int
run_version(const struct verb *v, int argc, char **argv)
{
	int r = no_args(v, argc, argv);
	json_t *req, *reply = NULL;
	char why[256];
	const char *dv = NULL;

	if (r >= 0)
		return r;
	req = json_pack("{s:s}", "cmd", "version");
	if (localapi_call(sock_path, req, 3000, &reply, why, sizeof(why)) == 0)
		dv = json_string_value(json_object_get(json_object_get(reply, "data"), "version"));
	json_decref(req);
	if (json_out) {
		json_t *o = json_pack("{s:s, s:s?}", "client", WM_VERSION_LONG, "daemon", dv);

		json_dumpf(o, stdout, JSON_INDENT(2) | JSON_SORT_KEYS);
		putchar('\n');
		json_decref(o);
	} else {
		printf("wiremesh %s\n", WM_VERSION_LONG);
		if (dv)
			printf("wiremeshd %s\n", dv);
		else
			printf("wiremeshd: not reachable (%s)\n", why);
	}
	json_decref(reply);
	return 0;
}

/* ---- ip ---- */

static int
run_ip(const struct verb *v, int argc, char **argv)
{
	json_t *req = json_pack("{s:s}", "cmd", "ip"), *r;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "-4") == 0)
			json_object_set_new(req, "family", json_string("4"));
		else if (strcmp(argv[i], "-6") == 0)
			json_object_set_new(req, "family", json_string("6"));
		else if (is_help(argv[i])) {
			verb_help(v, stdout);
			json_decref(req);
			return 0;
		} else {
			json_decref(req);
			return usage_err(v, "unknown argument %s", argv[i]);
		}
	}
	r = call(req, 10000, false);
	json_decref(req);
	return print_reply(r);
}

/* ---- ping ---- */

static int
run_ping(const struct verb *v, int argc, char **argv)
{
	const char *peer = NULL;
	long count = 10;
	bool until_direct = true;
	int pongs = 0;

	for (int i = 1; i < argc; i++) {
		if (is_help(argv[i])) {
			verb_help(v, stdout);
			return 0;
		} else if (strcmp(argv[i], "-c") == 0 && i + 1 < argc) {
			char *end;

			count = strtol(argv[++i], &end, 10);
			if (*end || count < 1) {
				fprintf(stderr, "wiremesh ping: -c needs a positive count\n");
				return 2;
			}
			until_direct = false;
		} else if (argv[i][0] != '-' && peer == NULL) {
			peer = argv[i];
		} else {
			return usage_err(v, "unexpected argument %s", argv[i]);
		}
	}
	if (peer == NULL)
		return usage_err(v, "%s", "needs a peer name or address");
	for (long n = 0; n < count; n++) {
		json_t *req = json_pack("{s:s, s:s}", "cmd", "ping", "peer", peer);
		int64_t t0 = time_mono_ms();
		json_t *r = call(req, 15000, true);
		bool direct = false;

		json_decref(req);
		if (r == NULL)
			return 1;
		if (json_is_true(json_object_get(r, "ok"))) {
			pongs++;
			direct = json_is_true(json_object_get(json_object_get(r, "data"), "direct"));
			if (json_out) {
				json_dumpf(json_object_get(r, "data"), stdout, JSON_COMPACT | JSON_SORT_KEYS);
				putchar('\n');
			} else {
				fputs(json_string_value(json_object_get(r, "text")) ?: "", stdout);
			}
		} else {
			const char *e = json_string_value(json_object_get(r, "error"));
			json_t *d = json_object_get(r, "data");

			if (!json_is_true(json_object_get(d, "timeout"))) {
				fprintf(stderr, "wiremesh: %s\n", e ? e : "ping failed");
				json_decref(r);
				return 1;
			}
			if (json_out)
				printf("{\"peer\":\"%s\",\"timeout\":true}\n", peer);
			else
				printf("timeout waiting for pong from %s\n", peer);
		}
		fflush(stdout);
		json_decref(r);
		if (direct && until_direct)
			break;
		if (n + 1 < count) {
			int64_t left = 1000 - (time_mono_ms() - t0);

			if (left > 0)
				usleep((useconds_t)left * 1000);
		}
	}
	return pongs > 0 ? 0 : 1;
}

/* ---- whois, exit-node list: from the status data ---- */

static json_t *
status_data(void)
{
	json_t *req = json_pack("{s:s}", "cmd", "status");
	json_t *r = call(req, 10000, false), *d;

	json_decref(req);
	if (r == NULL)
		return NULL;
	if (!json_is_true(json_object_get(r, "ok"))) {
		json_decref(r);
		return NULL;
	}
	d = json_incref(json_object_get(r, "data"));
	json_decref(r);
	return d;
}

static int
run_whois(const struct verb *v, int argc, char **argv)
{
	const char *ip = NULL;
	json_t *d, *p, *hit = NULL;
	size_t i;
	bool self = false;

	for (int k = 1; k < argc; k++) {
		if (is_help(argv[k])) {
			verb_help(v, stdout);
			return 0;
		}
		if (argv[k][0] == '-' || ip)
			return usage_err(v, "unexpected argument %s", argv[k]);
		ip = argv[k];
	}
	if (ip == NULL)
		return usage_err(v, "%s", "needs a tailnet address");
	{	/* "100.64.0.2:22" and "[fd7a::2]:22" name the same node */
		static char host[128];

		str_copy(host, ip[0] == '[' ? ip + 1 : ip, sizeof(host));
		if (ip[0] == '[' && strchr(host, ']'))
			*strchr(host, ']') = 0;
		else if (strchr(host, ':') == strrchr(host, ':') && strchr(host, ':'))
			*strchr(host, ':') = 0;
		ip = host;
	}
	if ((d = status_data()) == NULL)
		return 1;
	p = json_object_get(d, "self");
	if (strcmp(json_string_value(json_object_get(p, "ipv4")) ?: "", ip) == 0 ||
	    strcmp(json_string_value(json_object_get(p, "ipv6")) ?: "", ip) == 0) {
		hit = p;
		self = true;
	}
	json_array_foreach(json_object_get(d, "peers"), i, p)
		if (!hit && (strcmp(json_string_value(json_object_get(p, "ipv4")) ?: "", ip) == 0 ||
		    strcmp(json_string_value(json_object_get(p, "ipv6")) ?: "", ip) == 0))
			hit = p;
	if (hit == NULL) {
		fprintf(stderr, "wiremesh whois: no node in this tailnet has the address %s\n", ip);
		json_decref(d);
		return 1;
	}
	if (json_out) {
		json_t *o = json_pack("{s:{s:O, s:O, s:[O,O], s:b}, s:{s:O}}", "node", "id",
		    json_object_get(hit, "id"), "name", json_object_get(hit, "name"), "addresses",
		    json_object_get(hit, "ipv4"), json_object_get(hit, "ipv6"), "self", self,
		    "user", "name", json_object_get(hit, "user"));

		json_dumpf(o, stdout, JSON_INDENT(2) | JSON_SORT_KEYS);
		putchar('\n');
		json_decref(o);
	} else {
		printf("Machine:\n  Name:      %s%s\n  ID:        %lld\n  Addresses: %s %s\n",
		    json_string_value(json_object_get(hit, "name")) ?: "", self ? " (this node)" : "",
		    (long long)json_integer_value(json_object_get(hit, "id")),
		    json_string_value(json_object_get(hit, "ipv4")) ?: "",
		    json_string_value(json_object_get(hit, "ipv6")) ?: "");
		printf("User:\n  Name:      %s\n", json_string_value(json_object_get(hit, "user")) ?: "");
	}
	json_decref(d);
	return 0;
}

static int
run_exit_node(const struct verb *v, int argc, char **argv)
{
	json_t *d, *p, *list;
	size_t i;

	if (argc >= 2 && is_help(argv[1])) {
		verb_help(v, stdout);
		return 0;
	}
	if (argc < 2)
		return usage_err(v, "%s", "needs a sub-command: list");
	if (strcmp(argv[1], "list") != 0)
		return usage_err(v, "unknown sub-command %s (known: list)", argv[1]);
	for (int k = 2; k < argc; k++) {
		if (is_help(argv[k])) {
			verb_help(v, stdout);
			return 0;
		}
		return usage_err(v, "unexpected argument %s", argv[k]);
	}
	if ((d = status_data()) == NULL)
		return 1;
	list = json_array();
	json_array_foreach(json_object_get(d, "peers"), i, p)
		if (json_is_true(json_object_get(p, "exit_node")))
			json_array_append_new(list, json_pack("{s:O, s:O, s:O, s:O, s:b, s:b}", "ip",
			    json_object_get(p, "ipv4"), "name", json_object_get(p, "name"), "user",
			    json_object_get(p, "user"), "id", json_object_get(p, "id"), "online",
			    json_is_true(json_object_get(p, "online")), "selected",
			    json_is_true(json_object_get(p, "exit_node_in_use"))));
	if (json_out) {
		json_dumpf(list, stdout, JSON_INDENT(2) | JSON_SORT_KEYS);
		putchar('\n');
	} else if (json_array_size(list) == 0) {
		puts("No peer offers an exit node (a node offers one with "
		    "wiremesh up --advertise-exit-node, and an admin approves it).");
	} else {
		printf("%-16s %-20s %-16s %s\n", "IP", "NAME", "OWNER", "STATUS");
		json_array_foreach(list, i, p)
			printf("%-16s %-20s %-16s %s\n", json_string_value(json_object_get(p, "ip")) ?: "-",
			    json_string_value(json_object_get(p, "name")) ?: "",
			    json_string_value(json_object_get(p, "user")) ?: "",
			    json_is_true(json_object_get(p, "selected")) ? "selected" :
			    json_is_true(json_object_get(p, "online")) ? "online" : "offline");
		puts("\n# To use an exit node: wiremesh set --exit-node NAME");
	}
	json_decref(list);
	json_decref(d);
	return 0;
}

/* ---- completion ---- */

static void
words_of(const struct verb *v, char *out, size_t cap)
{
	out[0] = 0;
	for (size_t i = 0; i < sizeof(flags) / sizeof(flags[0]); i++)
		if (flags[i].verbs & v->flagset)
			snprintf(out + strlen(out), cap - strlen(out), "--%s ", flags[i].name);
	if (v->opts)
		snprintf(out + strlen(out), cap - strlen(out), "%s ", v->opts);
	snprintf(out + strlen(out), cap - strlen(out), "--help");
}

static int
run_completion(const struct verb *v, int argc, char **argv)
{
	char w[2048];

	if (argc != 2 || is_help(argv[1])) {
		if (argc == 2) {
			verb_help(v, stdout);
			return 0;
		}
		return usage_err(v, "%s", "needs a shell: bash, zsh or fish");
	}
	if (strcmp(argv[1], "bash") == 0 || strcmp(argv[1], "zsh") == 0) {
		if (strcmp(argv[1], "zsh") == 0)
			puts("#compdef wiremesh\nautoload -U +X bashcompinit && bashcompinit");
		puts("# wiremesh completion: source this file, or put it in\n"
		    "# /usr/share/bash-completion/completions/wiremesh (bash) or a $fpath\n"
		    "# folder as _wiremesh (zsh)\n_wiremesh() {\n"
		    "\tlocal cur=${COMP_WORDS[COMP_CWORD]} verb= i\n"
		    "\tfor ((i = 1; i < COMP_CWORD; i++)); do\n"
		    "\t\tcase ${COMP_WORDS[i]} in --socket) ((i++));; -*) ;; *) verb=${COMP_WORDS[i]}; break;; esac\n"
		    "\tdone\n\tlocal words\n\tcase $verb in");
		fputs("\t'')\twords='--socket --json --help --version", stdout);
		for (size_t i = 0; i < nverbs; i++)
			printf(" %s", verbs[i].name);
		puts("';;");
		for (size_t i = 0; i < nverbs; i++) {
			words_of(&verbs[i], w, sizeof(w));
			printf("\t%s)\twords='%s --json';;\n", verbs[i].name, w);
		}
		puts("\t*)\twords='--help';;\n\tesac\n"
		    "\tCOMPREPLY=($(compgen -W \"$words\" -- \"$cur\"))\n}\n"
		    "complete -F _wiremesh wiremesh");
		return 0;
	}
	if (strcmp(argv[1], "fish") == 0) {
		puts("# wiremesh completion for fish: save as ~/.config/fish/completions/wiremesh.fish");
		puts("complete -c wiremesh -f");
		puts("complete -c wiremesh -l socket -r -d 'agent socket'");
		puts("complete -c wiremesh -l json -d 'print JSON'");
		for (size_t i = 0; i < nverbs; i++)
			printf("complete -c wiremesh -n __fish_use_subcommand -a %s -d '%s'\n",
			    verbs[i].name, verbs[i].summary);
		for (size_t i = 0; i < nverbs; i++) {
			for (size_t k = 0; k < sizeof(flags) / sizeof(flags[0]); k++)
				if (flags[k].verbs & verbs[i].flagset)
					printf("complete -c wiremesh -n '__fish_seen_subcommand_from %s' "
					    "-l %s%s -d '%s'\n", verbs[i].name, flags[k].name,
					    flags[k].arg ? " -r" : "", flags[k].help);
			if (verbs[i].opts)
				printf("complete -c wiremesh -n '__fish_seen_subcommand_from %s' -a '%s'\n",
				    verbs[i].name, verbs[i].opts);
		}
		return 0;
	}
	return usage_err(v, "unknown shell %s (bash, zsh or fish)", argv[1]);
}

/* `dns status`, `dns query NAME [TYPE]`: dns_cli.c */
static int
run_dns(const struct verb *v, int argc, char **argv)
{
	for (int i = 1; i < argc; i++)
		if (is_help(argv[i])) {
			verb_help(v, stdout);
			return 0;
		}
	if (argc < 2 || (strcmp(argv[1], "status") != 0 && strcmp(argv[1], "query") != 0))
		return usage_err(v, "%s", "needs a sub-command: status or query");
	return dns_cli_main(sock_path, json_out, argc, argv);
}

static int
run_help(const struct verb *v, int argc, char **argv)
{
	if (argc < 2) {
		usage(stdout);
		return 0;
	}
	if (is_help(argv[1])) {
		verb_help(v, stdout);
		return 0;
	}
	for (size_t i = 0; i < nverbs; i++)
		if (strcmp(verbs[i].name, argv[1]) == 0) {
			verb_help(&verbs[i], stdout);
			return 0;
		}
	fprintf(stderr, "wiremesh help: unknown command \"%s\"\n", argv[1]);
	return 2;
}

static const struct verb verbs[] = {
	{ "up", "[--login-server URL] [--authkey KEY] [--reset] [settings]",
	  "Log in (the first time) and connect to the tailnet.",
	  "Without setting flags, up keeps the settings in force. With some, it must mention\n"
	  "every setting that is not at its default, else it refuses and prints the command\n"
	  "that keeps them; --reset puts the unmentioned ones back to their defaults. To\n"
	  "change one setting alone, use 'wiremesh set'. Booleans take --flag=false.\n",
	  V_UP, NULL, run_settings },
	{ "set", "[settings]", "Change settings without touching the others.",
	  "Applies at once when the node is up (it logs in again to announce them), else at\n"
	  "the next 'wiremesh up'.\n", V_SET, NULL, run_settings },
	{ "down", "", "Disconnect; stay logged in (status: Stopped; 'up' reconnects).", NULL, 0,
	  NULL, run_simple },
	{ "logout", "", "Expire this node's key on the server and forget the login.",
	  "The next 'wiremesh up' logs in again (an auth key, or the login URL it prints).\n"
	  "An ephemeral node is deleted.\n", 0, NULL,
	  run_simple },
	{ "status", "", "Health, then one line per node: ADDRESS NAME OWNER PATH.", NULL, 0, NULL,
	  run_simple },
	{ "ping", "PEER [-c N]", "Disco ping a peer by name or address.",
	  "One ping a second, at most N (default 10), stopping at the first pong over a\n"
	  "direct path when -c is not given. Exit 0 if any pong came back.\n", 0, "-c",
	  run_ping },
	{ "netcheck", "", "Report UDP, IPv4/IPv6, NAT mapping and DERP latencies.", NULL, 0, NULL,
	  run_simple },
	{ "ip", "[-4|-6]", "Print this node's tailnet addresses.", NULL, 0, "-4 -6", run_ip },
	{ "whois", "IP[:PORT]", "Show the node and user behind a tailnet address.", NULL, 0, NULL,
	  run_whois },
	{ "exit-node", "list", "List the peers that offer an exit node.", NULL, 0, "list",
	  run_exit_node },
	{ "dns", "status | query NAME [TYPE] [--tcp] [-6]", "MagicDNS: show the settings, or ask the resolver.",
	  "status: MagicDNS, base domain, nameservers, split domains, search domains, extra\n"
	  "records, how the OS uses the resolver, and query counters.\n"
	  "query: asks the resolver at 100.100.100.100 (-6: fd7a:115c:a1e0::53) over UDP, then\n"
	  "TCP when the answer is truncated (--tcp: TCP at once); TYPE defaults to A. Exit 0\n"
	  "on NOERROR, 1 otherwise.\n", 0, "status query --tcp -6", run_dns },
	{ "version", "", "Print the CLI's and the daemon's versions.", NULL, 0, NULL, run_version },
	{ "debug", "", "JSON: netmap, paths, relays, WireGuard and filter counters.", NULL, 0, NULL,
	  run_simple },
	{ "completion", "bash|zsh|fish", "Print a shell completion script.", NULL, 0,
	  "bash zsh fish", run_completion },
	{ "help", "[COMMAND]", "Help for wiremesh or one command.", NULL, 0, NULL, run_help },
};
static const size_t nverbs = sizeof(verbs) / sizeof(verbs[0]);

/* Takes --json from anywhere in argv (it is global). */
static int
strip_json(int argc, char **argv)
{
	int k = 0;

	for (int i = 0; i < argc; i++) {
		if (strcmp(argv[i], "--json") == 0) {
			json_out = true;
			continue;
		}
		argv[k++] = argv[i];
	}
	argv[k] = NULL;
	return k;
}

int
main(int argc, char **argv)
{
	int i = 1;

	sock_path = getenv("WIREMESH_SOCKET");
	if (sock_path == NULL || *sock_path == 0)
		sock_path = "/run/wiremesh/wiremeshd.sock";
	argc = strip_json(argc, argv);
	while (i < argc && argv[i][0] == '-') {
		if (strcmp(argv[i], "--socket") == 0 && i + 1 < argc) {
			sock_path = argv[i + 1];
			i += 2;
		} else if (strncmp(argv[i], "--socket=", 9) == 0) {
			sock_path = argv[i] + 9;
			i++;
		} else if (is_help(argv[i])) {
			usage(stdout);
			return 0;
		} else if (strcmp(argv[i], "--version") == 0 || strcmp(argv[i], "-V") == 0) {
			printf("wiremesh %s\n", WM_VERSION_LONG);
			return 0;
		} else {
			fprintf(stderr, "wiremesh: unknown flag %s (see 'wiremesh --help')\n", argv[i]);
			return 2;
		}
	}
	if (i >= argc) {
		usage(stderr);
		return 2;
	}
	argv += i;
	argc -= i;
	for (size_t k = 0; k < nverbs; k++)
		if (strcmp(verbs[k].name, argv[0]) == 0)
			return verbs[k].run(&verbs[k], argc, argv);
	fprintf(stderr, "wiremesh: unknown command \"%s\" (see 'wiremesh --help')\n", argv[0]);
	return 2;
}
