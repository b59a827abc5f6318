// SPDX-License-Identifier: MIT
/*
 * wiremesh: the node CLI. It talks to wiremeshd over the local API socket.
 *
 *   wiremesh [--socket PATH] [--json] COMMAND [ARGS]
 *
 *   up --login-server URL --authkey KEY [--hostname H]
 *       Registers (https verified against the system CAs or SSL_CERT_FILE;
 *       http allowed with a warning) and waits up to 10 s for the first
 *       netmap. Prints "Logged in to URL as NAME (100.64.0.1), N peers" and
 *       "# Health: ..." lines when the control server or every relay is
 *       unreachable. Exit 1 with the reason on stderr when the login fails
 *       ("cannot reach the control server at URL: ...", or the server's
 *       refusal). Later `up` calls may omit the URL and key.
 *       Routes (docs/routes.md; every `up` states all of them, absent = off):
 *       --advertise-routes CIDR,...  offer these subnets (needs approval)
 *       --advertise-exit-node        offer 0.0.0.0/0 and ::/0 (needs approval)
 *       --accept-routes              use the subnets peers offer
 *       --exit-node PEER             send internet traffic through PEER
 *       --exit-node-allow-lan-access keep the local LAN direct meanwhile
 *       A router switches IP forwarding on; when it cannot, up and status
 *       say so in a "# Health:" line.
 *   down
 *       Disconnects from the control server and relays, removes peers and
 *       addresses; the node stays registered (a later `up` needs no key).
 *   status
 *       "# Health: ..." lines, then one line per node, self first:
 *       ADDRESS NAME OWNER PATH, with PATH one of `direct IP:PORT`,
 *       `relay "CODE"`, `idle`, `offline` (self shows "-"). Then
 *       "# Advertising: CIDR,..., exit node" (this node's offer),
 *       "# Routes: PEER offers CIDR,... (accepted|not used: ...), an exit node"
 *       and "# Exit node: PEER (in use)" or "# Exit node: PEER: why not".
 *   ping PEER [-c N]
 *       Disco ping (name or tailnet address), one per second, at most N
 *       (default 10), stopping after the first pong over a direct path when
 *       -c is not given. Each pong prints
 *         pong from web1 (100.64.0.2) via DERP(lon) in 28ms
 *         pong from web1 (100.64.0.2) via 192.0.2.10:41641 in 2ms
 *       and a lost one "timeout waiting for pong from PEER". Exit 0 if any
 *       pong came back.
 *   netcheck
 *       Runs netcheck on the agent's socket and prints the report
 *       (* UDP / * IPv4 / * MappingVariesByDestIP / * DERP latency).
 *   ip [-4|-6]
 *       This node's tailnet addresses, one per line.
 *   debug
 *       JSON: netmap, per-peer paths and candidates, relay connections,
 *       WireGuard counters (drops by reason), filter counters (drops).
 *
 * --json prints the command's data object as JSON instead of text (ping:
 * one object per line). Errors go to stderr; exit 1 on failure, 2 on usage.
 * The socket defaults to $WIREMESH_SOCKET, else /run/wiremesh/wiremeshd.sock.
 *
 * Local API (one connection per request): send one JSON object and "\n",
 * read one JSON object. Requests: {"cmd":"up","login_server":U,"authkey":K,
 * "hostname":H,"advertise_routes":["CIDR",...],"advertise_exit_node":B,
 * "accept_routes":B,"exit_node":"PEER","exit_node_allow_lan_access":B}, {"cmd":"down"}, {"cmd":"status"}, {"cmd":"ping","peer":P},
 * {"cmd":"netcheck"}, {"cmd":"ip","family":"4"|"6"}, {"cmd":"debug"}.
 * Replies: {"ok":true,"text":"...","data":{...}} or {"ok":false,"error":"..."}.
 * status data: {"backend_state","health":["..."],"self":{id,name,user,ipv4,ipv6,home_derp,
 * home_derp_code},"peers":[{id,name,user,ipv4,ipv6,path,path_kind,endpoint,
 * online,home_derp,last_handshake,rx_bytes,tx_bytes,rtt_ms,primary_routes,exit_node,
 * exit_node_in_use,routes_accepted}], "control":{url,connected,error},
 * "derp":{home,connected}, "accept_routes":B, "exit_node":null|{name,id,in_use,
 * allow_lan_access,error}}; self also has advertised_routes, advertise_exit_node.
 * ping data: {peer,ip,via,direct,latency_ms}.
 */
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "client-agent/localapi.h"
#include "common/util.h"

static const char *sock_path;
static bool json_out;

static const char usage[] =
"usage: wiremesh [--socket PATH] [--json] COMMAND\n"
"  up --login-server URL --authkey KEY [--hostname H]\n"
"     [--advertise-routes CIDR,...] [--advertise-exit-node] [--accept-routes]\n"
"     [--exit-node PEER [--exit-node-allow-lan-access]]\n"
"  down\n"
"  status\n"
"  ping PEER [-c N]\n"
"  netcheck\n"
"  ip [-4|-6]\n"
"  debug\n";

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

static int
cmd_up(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "login-server", required_argument, NULL, 'l' },
		{ "authkey", required_argument, NULL, 'a' },
		{ "auth-key", required_argument, NULL, 'a' },
		{ "hostname", required_argument, NULL, 'H' },
		{ "advertise-routes", required_argument, NULL, 'R' },
		{ "advertise-exit-node", no_argument, NULL, 'E' },
		{ "accept-routes", no_argument, NULL, 'A' },
		{ "exit-node", required_argument, NULL, 'X' },
		{ "exit-node-allow-lan-access", no_argument, NULL, 'L' },
		{ NULL, 0, NULL, 0 },
	};
	json_t *req = json_pack("{s:s}", "cmd", "up"), *adv = json_array();
	int ch;

	optind = 1;
	while ((ch = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (ch) {
		case 'l': json_object_set_new(req, "login_server", json_string(optarg)); break;
		case 'a': json_object_set_new(req, "authkey", json_string(optarg)); break;
		case 'H': json_object_set_new(req, "hostname", json_string(optarg)); break;
		case 'R': {	/* comma-separated; the daemon checks each prefix */
			char *copy = strdup(optarg), *save = NULL;

			for (char *t = copy ? strtok_r(copy, ",", &save) : NULL; t;
			     t = strtok_r(NULL, ",", &save))
				json_array_append_new(adv, json_string(t));
			free(copy);
			break;
		}
		case 'E': json_object_set_new(req, "advertise_exit_node", json_true()); break;
		case 'A': json_object_set_new(req, "accept_routes", json_true()); break;
		case 'X': json_object_set_new(req, "exit_node", json_string(optarg)); break;
		case 'L': json_object_set_new(req, "exit_node_allow_lan_access", json_true()); break;
		default: fputs(usage, stderr); json_decref(req); json_decref(adv); return 2;
		}
	}
	json_object_set_new(req, "advertise_routes", adv);
	{
		json_t *r = call(req, 60000, false);

		json_decref(req);
		return print_reply(r);
	}
}

static int
simple(const char *cmd, int timeout_ms)
{
	json_t *req = json_pack("{s:s}", "cmd", cmd);
	json_t *r = call(req, timeout_ms, false);

	json_decref(req);
	return print_reply(r);
}

static int
cmd_ip(int argc, char **argv)
{
	json_t *req = json_pack("{s:s}", "cmd", "ip"), *r;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "-4") == 0)
			json_object_set_new(req, "family", json_string("4"));
		else if (strcmp(argv[i], "-6") == 0)
			json_object_set_new(req, "family", json_string("6"));
		else {
			fputs(usage, stderr);
			json_decref(req);
			return 2;
		}
	}
	r = call(req, 10000, false);
	json_decref(req);
	return print_reply(r);
}

static int
cmd_ping(int argc, char **argv)
{
	const char *peer = NULL;
	long count = 10;
	bool until_direct = true;
	int pongs = 0;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "-c") == 0 && i + 1 < argc) {
			char *end;

			count = strtol(argv[++i], &end, 10);
			if (*end || count < 1) {
				fprintf(stderr, "wiremesh: -c needs a positive count\n");
				return 2;
			}
			until_direct = false;
		} else if (argv[i][0] != '-' && peer == NULL) {
			peer = argv[i];
		} else {
			fputs(usage, stderr);
			return 2;
		}
	}
	if (peer == NULL) {
		fputs(usage, stderr);
		return 2;
	}
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
		} else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
			fputs(usage, stdout);
			return 0;
		} else {
			fputs(usage, stderr);
			return 2;
		}
	}
	if (i >= argc) {
		fputs(usage, stderr);
		return 2;
	}
	argv += i;
	argc -= i;
	if (strcmp(argv[0], "up") == 0)
		return cmd_up(argc, argv);
	if (strcmp(argv[0], "down") == 0 && argc == 1)
		return simple("down", 30000);
	if (strcmp(argv[0], "status") == 0 && argc == 1)
		return simple("status", 10000);
	if (strcmp(argv[0], "netcheck") == 0 && argc == 1)
		return simple("netcheck", 20000);
	if (strcmp(argv[0], "debug") == 0 && argc == 1)
		return simple("debug", 10000);
	if (strcmp(argv[0], "ip") == 0)
		return cmd_ip(argc, argv);
	if (strcmp(argv[0], "ping") == 0)
		return cmd_ping(argc, argv);
	fputs(usage, stderr);
	return 2;
}
