// SPDX-License-Identifier: MIT
/*
 * wm-race: a node posting endpoints from several threads while an admin
 * changes the same node, to catch lost updates (issue 11, item 1).
 *
 *   wm-race --server URL --api-key KEY --authkey KEY [--rounds N] [--threads T]
 *
 * Registers one machine (advertising 10.77.0.0/24), starts T threads that
 * post /machine/endpoints (with advertised_routes) as fast as they can, and
 * then, N times: tags the node and removes the tags, approves its route and
 * revokes it, re-registers it and expires it. After each admin change has
 * answered, every thread completes two more posts (so any post that read the
 * row before the change has written it back), and the node is read through
 * the API: the change must still be there. Prints how many were reverted
 * and exits 1 when any was (or an admin call failed).
 */
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>
#include <sodium.h>

#include "common/buf.h"
#include "common/keys.h"
#include "common/sign.h"
#include "common/util.h"

enum { MAX_THREADS = 16 };

static const char *server_url, *api_key, *auth_key;
static uint8_t mpk[KEY_LEN], msk[ED25519_SK_LEN], npub[KEY_LEN], dpub[KEY_LEN];
static atomic_bool stop;
static atomic_long done[MAX_THREADS];
static int nthreads = 3;

static size_t
collect(char *p, size_t sz, size_t n, void *ctx)
{
	return buf_append(ctx, p, sz * n) == 0 ? sz * n : 0;
}

/* One request; returns the HTTP status (0 on a transport error) and the
 * body in *out (caller frees) when out is set. */
static long
request(const char *method, const char *path, const char *body, bool signed_req, char **out)
{
	char url[1024], hdr[4][160], mk[KEY_STR_MAX], sig[SIGN_HEX_LEN + 1];
	char nonce[SIGN_NONCE_LEN + 1];
	struct curl_slist *h = NULL;
	struct buf b;
	long status = 0;
	CURL *c = curl_easy_init();

	buf_init(&b, 1 << 20);
	if (signed_req) {
		int64_t ts = time_now_s();

		sign_nonce(nonce);
		if (sign_request(msk, method, path, ts, nonce, body, strlen(body), sig) != 0)
			return 0;
		key_fmt(mk, "mkey:", mpk);
		snprintf(hdr[0], sizeof(hdr[0]), SIGN_HDR_MACHINE ": %s", mk);
		snprintf(hdr[1], sizeof(hdr[1]), SIGN_HDR_TIMESTAMP ": %" PRId64, ts);
		snprintf(hdr[2], sizeof(hdr[2]), SIGN_HDR_SIGNATURE ": %s", sig);
		snprintf(hdr[3], sizeof(hdr[3]), SIGN_HDR_NONCE ": %s", nonce);
		for (int i = 0; i < 4; i++)
			h = curl_slist_append(h, hdr[i]);
	} else {
		snprintf(hdr[0], sizeof(hdr[0]), "Authorization: Bearer %s", api_key);
		h = curl_slist_append(h, hdr[0]);
	}
	h = curl_slist_append(h, "Content-Type: application/json");
	snprintf(url, sizeof(url), "%s%s", server_url, path);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
	if (body)
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
	curl_easy_setopt(c, CURLOPT_TIMEOUT, 30L);
	if (curl_easy_perform(c) == CURLE_OK)
		curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
	if (out) {
		*out = strndup(b.data ? (const char *)b.data : "", b.len);
	}
	buf_cleanup(&b);
	curl_slist_free_all(h);
	curl_easy_cleanup(c);
	return status;
}

static void *
poster(void *arg)
{
	long id = (long)(intptr_t)arg;
	char body[256];

	for (long i = 0; !atomic_load(&stop); i++) {
		snprintf(body, sizeof(body), "{\"endpoints\":[\"192.0.2.%ld:%ld\"],\"home_derp\":1,"
		    "\"advertised_routes\":[\"10.77.0.0/24\"]}", id + 1, 1024 + i % 60000);
		(void)request("POST", "/machine/endpoints", body, true, NULL);
		atomic_fetch_add(&done[id], 1);
	}
	return NULL;
}

/* Every poster completes two more requests, each started after now. */
static void
settle(void)
{
	long snap[MAX_THREADS];

	for (int i = 0; i < nthreads; i++)
		snap[i] = atomic_load(&done[i]);
	for (int i = 0; i < nthreads; i++)
		while (atomic_load(&done[i]) < snap[i] + 2)
			usleep(1000);
}

static json_t *
get_node(int64_t id)
{
	char path[64], *text = NULL;
	json_t *j, *n;

	snprintf(path, sizeof(path), "/api/v1/nodes/%" PRId64, id);
	if (request("GET", path, NULL, false, &text) != 200) {
		free(text);
		return NULL;
	}
	j = json_loads(text, 0, NULL);
	free(text);
	n = json_incref(json_object_get(j, "node"));
	json_decref(j);
	return n;
}

/* The field as compact JSON text. */
static bool
field_is(int64_t id, const char *field, const char *want)
{
	json_t *n = get_node(id);
	char *t = n ? json_dumps(json_object_get(n, field), JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
	bool ok = t && strcmp(t, want) == 0;

	if (!ok)
		fprintf(stderr, "wm-race: node %" PRId64 " %s is %s, want %s\n", id, field,
		    t ? t : "(unreadable)", want);
	free(t);
	json_decref(n);
	return ok;
}

static int64_t
do_register(void)
{
	char body[512], nk[KEY_STR_MAX], dk[KEY_STR_MAX], *text = NULL;
	json_t *j;
	int64_t id = 0;
	long st;

	key_fmt(nk, "nodekey:", npub);
	key_fmt(dk, "discokey:", dpub);
	snprintf(body, sizeof(body), "{\"auth_key\":\"%s\",\"node_key\":\"%s\",\"disco_key\":\"%s\","
	    "\"hostname\":\"race\",\"advertised_routes\":[\"10.77.0.0/24\"]}", auth_key, nk, dk);
	st = request("POST", "/machine/register", body, true, &text);
	if ((st == 200 || st == 201) && (j = json_loads(text, 0, NULL)) != NULL) {
		id = json_integer_value(json_object_get(json_object_get(j, "node"), "id"));
		json_decref(j);
	} else {
		fprintf(stderr, "wm-race: register: HTTP %ld %s\n", st, text ? text : "");
	}
	free(text);
	return id;
}

static bool
admin(int64_t id, const char *verb, const char *body)
{
	char path[128];
	long st;

	snprintf(path, sizeof(path), "/api/v1/nodes/%" PRId64 "/%s", id, verb);
	if ((st = request("POST", path, body, false, NULL)) != 200) {
		fprintf(stderr, "wm-race: POST %s: HTTP %ld\n", path, st);
		return false;
	}
	return true;
}

int
main(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "server", required_argument, NULL, 's' },
		{ "api-key", required_argument, NULL, 'k' },
		{ "authkey", required_argument, NULL, 'a' },
		{ "rounds", required_argument, NULL, 'n' },
		{ "threads", required_argument, NULL, 't' },
		{ NULL, 0, NULL, 0 },
	};
	pthread_t th[MAX_THREADS];
	int rounds = 100, ch, failed = 0;
	int rev_expire = 0, rev_tags = 0, rev_routes = 0;
	uint8_t npriv[KEY_LEN];
	int64_t id;

	while ((ch = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (ch) {
		case 's': server_url = optarg; break;
		case 'k': api_key = optarg; break;
		case 'a': auth_key = optarg; break;
		case 'n': rounds = atoi(optarg); break;
		case 't': nthreads = atoi(optarg); break;
		default: return 2;
		}
	}
	if (!server_url || !api_key || !auth_key || rounds < 1 || nthreads < 1 ||
	    nthreads > MAX_THREADS) {
		fprintf(stderr, "usage: wm-race --server URL --api-key KEY --authkey KEY "
		    "[--rounds N] [--threads 1-%d]\n", MAX_THREADS);
		return 2;
	}
	if (sodium_init() < 0)
		return 1;
	curl_global_init(CURL_GLOBAL_DEFAULT);
	sign_keypair(mpk, msk);
	crypto_box_keypair(npub, npriv);
	random_bytes(dpub, KEY_LEN);
	if ((id = do_register()) == 0)
		return 1;
	for (int i = 0; i < nthreads; i++)
		pthread_create(&th[i], NULL, poster, (void *)(intptr_t)i);
	for (int i = 0; i < rounds && !failed; i++) {
		/* Tags: set, then remove. */
		if (!admin(id, "tags", "{\"tags\":[\"tag:race\"]}")) {
			failed = 1;
			break;
		}
		settle();
		rev_tags += !field_is(id, "tags", "[\"tag:race\"]");
		if (!admin(id, "tags", "{\"tags\":[]}")) {
			failed = 1;
			break;
		}
		settle();
		rev_tags += !field_is(id, "tags", "[]");
		/* Routes: approve, then revoke. */
		if (!admin(id, "routes", "{\"approved\":[\"10.77.0.0/24\"]}")) {
			failed = 1;
			break;
		}
		settle();
		rev_routes += !field_is(id, "approved_routes", "[\"10.77.0.0/24\"]");
		if (!admin(id, "routes", "{\"approved\":[]}")) {
			failed = 1;
			break;
		}
		settle();
		rev_routes += !field_is(id, "approved_routes", "[]");
		/* Expiry: log in again, then expire. */
		if (do_register() != id) {
			failed = 1;
			break;
		}
		settle();
		if (!admin(id, "expire", "{}")) {
			failed = 1;
			break;
		}
		settle();
		rev_expire += !field_is(id, "expired", "true");
		if (do_register() != id) {	/* the posters keep going for the next round */
			failed = 1;
			break;
		}
	}
	atomic_store(&stop, true);
	for (int i = 0; i < nthreads; i++)
		pthread_join(th[i], NULL);
	printf("rounds=%d threads=%d reverted: expire=%d/%d tags=%d/%d routes=%d/%d%s\n", rounds,
	    nthreads, rev_expire, rounds, rev_tags, 2 * rounds, rev_routes, 2 * rounds,
	    failed ? " (stopped: an admin call or registration failed)" : "");
	curl_global_cleanup();
	return failed || rev_expire || rev_tags || rev_routes ? 1 : 0;
}
