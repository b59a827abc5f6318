// SPDX-License-Identifier: MIT
/*
 * wm-node: a minimal node that speaks the control protocol, for tests and
 * for people writing their own agent (it is the reference client of
 * docs/protocol.md). Keys live in a state file (mode 0600).
 *
 *   wm-node --server URL --state FILE register --authkey KEY --hostname NAME
 *           [--routes CIDR,...]  (advertised routes; also taken by endpoints)
 *   wm-node --server URL --state FILE register --interactive --hostname NAME
 *           (no key: prints {"auth_url","auth_id",...})
 *   wm-node --server URL --state FILE wait AUTH_ID   (one long-poll of
 *           /machine/register/wait: prints its answer)
 *   wm-node --server URL --state FILE map [--since V] [--lines N] [--until-peers N] [--zstd]
 *           [--hostinfo JSON]   (sent as the request's "hostinfo")
 *   wm-node --server URL --state FILE endpoints 192.0.2.1:41641,... [--home-derp N]
 *   wm-node --server URL --state FILE logout
 *   --repeat N (endpoints, register): sends it N times, each signed anew, and
 *           prints "status=CODE count=K" per HTTP status
 *   wm-node --state FILE rotate      (new node key, kept in the state file)
 *   wm-node --state FILE sign PATH BODY   prints the three signature headers
 */
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>
#include <sodium.h>

#include "common/buf.h"
#include "common/keys.h"
#include "common/sign.h"
#include "common/util.h"

struct state {
	uint8_t mpk[KEY_LEN], msk[ED25519_SK_LEN];
	uint8_t node_pub[KEY_LEN], node_priv[KEY_LEN];
	uint8_t disco_pub[KEY_LEN];
};

static const char *server_url, *state_path;
static long max_lines = -1, until_peers = -1;
static int64_t ts_offset;
static long last_status;

static int
save(const struct state *st)
{
	char mk[2 * ED25519_SK_LEN + 1], nk[65], np[65], dk[65];
	FILE *f;
	int fd = open(state_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);

	if (fd < 0 || (f = fdopen(fd, "w")) == NULL)
		return -1;
	(void)hex_encode(mk, sizeof(mk), st->msk, ED25519_SK_LEN);
	(void)hex_encode(nk, sizeof(nk), st->node_priv, KEY_LEN);
	(void)hex_encode(np, sizeof(np), st->node_pub, KEY_LEN);
	(void)hex_encode(dk, sizeof(dk), st->disco_pub, KEY_LEN);
	fprintf(f, "{\"machine_private\":\"%s\",\"node_private\":\"%s\",\"node_public\":\"%s\","
	    "\"disco_public\":\"%s\"}\n", mk, nk, np, dk);
	fclose(f);
	wipe(mk, sizeof(mk));
	return 0;
}

static int
load(struct state *st)
{
	json_t *j = json_load_file(state_path, 0, NULL);
	const char *mk, *nk, *np, *dk;

	if (j == NULL) {
		/* First use: make keys. */
		sign_keypair(st->mpk, st->msk);
		crypto_box_keypair(st->node_pub, st->node_priv);
		random_bytes(st->disco_pub, KEY_LEN);
		return save(st);
	}
	mk = json_string_value(json_object_get(j, "machine_private"));
	nk = json_string_value(json_object_get(j, "node_private"));
	np = json_string_value(json_object_get(j, "node_public"));
	dk = json_string_value(json_object_get(j, "disco_public"));
	if (!mk || !nk || !np || !dk || hex_decode(st->msk, ED25519_SK_LEN, mk, strlen(mk)) ||
	    hex_decode(st->node_priv, KEY_LEN, nk, strlen(nk)) ||
	    hex_decode(st->node_pub, KEY_LEN, np, strlen(np)) ||
	    hex_decode(st->disco_pub, KEY_LEN, dk, strlen(dk))) {
		json_decref(j);
		return -1;
	}
	crypto_sign_ed25519_sk_to_pk(st->mpk, st->msk);
	json_decref(j);
	return 0;
}

struct sink {
	struct buf line;
	long lines;
	int done;
};

static size_t
on_data(char *p, size_t sz, size_t n, void *ctx)
{
	struct sink *s = ctx;

	for (size_t i = 0; i < sz * n; i++) {
		if (p[i] != '\n') {
			if (buf_append(&s->line, p + i, 1) != 0)
				return 0;
			continue;
		}
		fwrite(s->line.data, 1, s->line.len, stdout);
		fputc('\n', stdout);
		fflush(stdout);
		if (until_peers >= 0) {
			json_t *j = json_loadb((const char *)s->line.data, s->line.len, 0, NULL);
			json_t *peers = json_object_get(j, "peers");

			if (json_is_array(peers) && (long)json_array_size(peers) >= until_peers)
				s->done = 1;
			json_decref(j);
		}
		buf_reset(&s->line);
		if (++s->lines == max_lines)
			s->done = 1;
		if (s->done)
			return 0;	/* ends the transfer */
	}
	return sz * n;
}

static int want_zstd;	/* --zstd: the map stream compressed */

static int
post(const struct state *st, const char *path, const char *body, int stream)
{
	char url[1024], mh[128], th[64], sh[256], nh[64], mk[KEY_STR_MAX], sig[SIGN_HEX_LEN + 1];
	char nonce[SIGN_NONCE_LEN + 1];
	struct curl_slist *h = NULL;
	struct sink sink;
	int64_t ts = time_now_s() + ts_offset;
	long status = 0;
	CURLcode cr;
	CURL *c = curl_easy_init();

	sign_nonce(nonce);
	if (sign_request(st->msk, "POST", path, ts, nonce, body, strlen(body), sig) != 0)
		return 1;
	key_fmt(mk, "mkey:", st->mpk);
	snprintf(url, sizeof(url), "%s%s", server_url, path);
	snprintf(mh, sizeof(mh), SIGN_HDR_MACHINE ": %s", mk);
	snprintf(th, sizeof(th), SIGN_HDR_TIMESTAMP ": %" PRId64, ts);
	snprintf(sh, sizeof(sh), SIGN_HDR_SIGNATURE ": %s", sig);
	snprintf(nh, sizeof(nh), SIGN_HDR_NONCE ": %s", nonce);
	h = curl_slist_append(h, nh);
	h = curl_slist_append(h, mh);
	h = curl_slist_append(h, th);
	h = curl_slist_append(h, sh);
	h = curl_slist_append(h, "Content-Type: application/json");
	memset(&sink, 0, sizeof(sink));
	buf_init(&sink.line, 64 << 20);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
	curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &sink);
	if (stream && want_zstd)	/* Accept-Encoding: zstd; libcurl decodes */
		curl_easy_setopt(c, CURLOPT_ACCEPT_ENCODING, "zstd");
	if (getenv("SSL_CERT_FILE"))
		curl_easy_setopt(c, CURLOPT_CAINFO, getenv("SSL_CERT_FILE"));
	if (!stream)
		curl_easy_setopt(c, CURLOPT_TIMEOUT, 30L);
	cr = curl_easy_perform(c);
	if (sink.line.len > 0) {	/* an answer without a final newline */
		fwrite(sink.line.data, 1, sink.line.len, stdout);
		fputc('\n', stdout);
	}
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
	last_status = status;
	buf_cleanup(&sink.line);
	curl_slist_free_all(h);
	curl_easy_cleanup(c);
	if (cr != CURLE_OK && !(cr == CURLE_WRITE_ERROR && sink.done)) {
		fprintf(stderr, "wm-node: %s: %s\n", path, curl_easy_strerror(cr));
		return 1;
	}
	if (status >= 400) {
		fprintf(stderr, "wm-node: %s: HTTP %ld\n", path, status);
		return 3;
	}
	return 0;
}

int
main(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "server", required_argument, NULL, 's' },
		{ "state", required_argument, NULL, 'S' },
		{ "authkey", required_argument, NULL, 'a' },
		{ "hostname", required_argument, NULL, 'H' },
		{ "since", required_argument, NULL, 'v' },
		{ "lines", required_argument, NULL, 'n' },
		{ "until-peers", required_argument, NULL, 'p' },
		{ "home-derp", required_argument, NULL, 'd' },
		{ "clock-offset", required_argument, NULL, 'o' },
		{ "routes", required_argument, NULL, 'r' },
		{ "repeat", required_argument, NULL, 'R' },
		{ "hostinfo", required_argument, NULL, 'I' },
		{ "zstd", no_argument, NULL, 'z' },
		{ "interactive", no_argument, NULL, 'i' },
		{ NULL, 0, NULL, 0 },
	};
	const char *authkey = NULL, *hostname = "node", *since = "0", *home = NULL;
	const char *routes = NULL, *hostinfo = NULL;
	long repeat = 0;
	int interactive = 0;
	char nk[KEY_STR_MAX], dk[KEY_STR_MAX];
	struct state st;
	json_t *body = NULL;
	char *text;
	int ch, rc;

	if (sodium_init() < 0)
		return 1;
	while ((ch = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (ch) {
		case 's': server_url = optarg; break;
		case 'S': state_path = optarg; break;
		case 'a': authkey = optarg; break;
		case 'H': hostname = optarg; break;
		case 'v': since = optarg; break;
		case 'n': max_lines = atol(optarg); break;
		case 'p': until_peers = atol(optarg); break;
		case 'd': home = optarg; break;
		case 'o': ts_offset = atoll(optarg); break;
		case 'r': routes = optarg; break;
		case 'R': repeat = atol(optarg); break;
		case 'I': hostinfo = optarg; break;
		case 'z': want_zstd = 1; break;
		case 'i': interactive = 1; break;
		default: return 2;
		}
	}
	if (state_path == NULL || optind >= argc) {
		fprintf(stderr, "usage: wm-node --server URL --state FILE "
		    "register|map|endpoints|logout|wait|rotate ...\n");
		return 2;
	}
	if (load(&st) != 0) {
		fprintf(stderr, "wm-node: bad state file %s\n", state_path);
		return 1;
	}
	if (strcmp(argv[optind], "rotate") == 0) {
		crypto_box_keypair(st.node_pub, st.node_priv);
		return save(&st) == 0 ? 0 : 1;
	}
	if (strcmp(argv[optind], "sign") == 0 && optind + 2 < argc) {
		char sig[SIGN_HEX_LEN + 1], mk[KEY_STR_MAX], nonce[SIGN_NONCE_LEN + 1];
		int64_t ts = time_now_s() + ts_offset;
		const char *b = argv[optind + 2];

		sign_nonce(nonce);
		if (sign_request(st.msk, "POST", argv[optind + 1], ts, nonce, b, strlen(b), sig) != 0)
			return 1;
		key_fmt(mk, "mkey:", st.mpk);
		printf(SIGN_HDR_MACHINE ": %s\n" SIGN_HDR_TIMESTAMP ": %" PRId64 "\n"
		    SIGN_HDR_NONCE ": %s\n" SIGN_HDR_SIGNATURE ": %s\n", mk, ts, nonce, sig);
		return 0;
	}
	if (server_url == NULL) {
		fprintf(stderr, "wm-node: --server is required\n");
		return 2;
	}
	key_fmt(nk, "nodekey:", st.node_pub);
	key_fmt(dk, "discokey:", st.disco_pub);
	curl_global_init(CURL_GLOBAL_DEFAULT);
	if (strcmp(argv[optind], "register") == 0) {
		body = json_pack("{s:s, s:s, s:s}", "node_key", nk, "disco_key", dk,
		    "hostname", hostname);
		if (authkey)
			json_object_set_new(body, "auth_key", json_string(authkey));
		if (interactive)
			json_object_set_new(body, "interactive", json_true());
	} else if (strcmp(argv[optind], "wait") == 0 && optind + 1 < argc) {
		body = json_pack("{s:s}", "auth_id", argv[optind + 1]);
	} else if (strcmp(argv[optind], "map") == 0) {
		body = json_pack("{s:I}", "version", (json_int_t)strtoull(since, NULL, 10));
		if (hostinfo)	/* any JSON, to test the server's checks too */
			json_object_set_new(body, "hostinfo", json_loads(hostinfo, JSON_DECODE_ANY, NULL));
	} else if (strcmp(argv[optind], "endpoints") == 0 && optind + 1 < argc) {
		json_t *a = json_array();
		char *copy = strdup(argv[optind + 1]), *save_p = NULL;

		for (char *t = strtok_r(copy, ",", &save_p); t; t = strtok_r(NULL, ",", &save_p))
			json_array_append_new(a, json_string(t));
		free(copy);
		body = json_pack("{s:o}", "endpoints", a);
		if (home)
			json_object_set_new(body, "home_derp", json_integer(atoi(home)));
	} else if (strcmp(argv[optind], "logout") == 0) {
		body = json_object();
	} else {
		fprintf(stderr, "wm-node: unknown command %s\n", argv[optind]);
		return 2;
	}
	if (routes && body && strcmp(argv[optind], "map") != 0) {
		json_t *a = json_array();
		char *copy = strdup(routes), *save_r = NULL;

		for (char *t = strtok_r(copy, ",", &save_r); t; t = strtok_r(NULL, ",", &save_r))
			json_array_append_new(a, json_string(t));
		free(copy);
		json_object_set_new(body, "advertised_routes", a);
	}
	text = json_dumps(body, JSON_COMPACT);
	json_decref(body);
	if (repeat > 0) {
		long counts[600] = { 0 };
		const char *path = strcmp(argv[optind], "register") == 0 ? "/machine/register" :
		    "/machine/endpoints";

		if (freopen("/dev/null", "w", stdout) == NULL)
			return 1;
		for (long i = 0; i < repeat; i++) {
			last_status = 0;
			(void)post(&st, path, text, 0);
			counts[last_status >= 0 && last_status < 600 ? last_status : 0]++;
		}
		free(text);
		for (int i = 0; i < 600; i++)
			if (counts[i])
				fprintf(stderr, "status=%d count=%ld\n", i, counts[i]);
		return 0;
	}
	rc = post(&st, strcmp(argv[optind], "map") == 0 ? "/machine/map" :
	    strcmp(argv[optind], "register") == 0 ? "/machine/register" :
	    strcmp(argv[optind], "wait") == 0 ? "/machine/register/wait" :
	    strcmp(argv[optind], "endpoints") == 0 ? "/machine/endpoints" : "/machine/logout",
	    text, strcmp(argv[optind], "map") == 0);
	free(text);
	curl_global_cleanup();
	return rc;
}
