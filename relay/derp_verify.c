/* SPDX-License-Identifier: MIT */
/*
 * The --verify-clients-url admission callback (contract in derp_server.h):
 * POST {"NodePublic":"nodekey:<hex>"} (with "Authorization: Bearer <secret>"
 * when a secret is set), admit only on HTTP 200 whose body is a JSON object
 * with "Allow": true. Anything else refuses: fails closed.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>
#include <jansson.h>

#include "common/log.h"
#include "common/util.h"
#include "relay/derp_server.h"

enum { VERIFY_BODY_MAX = 4096, VERIFY_TIMEOUT_MS = 5000 };

struct body {
	char data[VERIFY_BODY_MAX + 1];
	size_t len;
	bool overflow;
};

static size_t on_data(char *p, size_t size, size_t nmemb, void *arg)
{
	struct body *b = arg;
	size_t n = size * nmemb;

	if (n > VERIFY_BODY_MAX - b->len) {
		b->overflow = true;
		return 0;
	}
	memcpy(b->data + b->len, p, n);
	b->len += n;
	return n;
}

/* 0 only when the body is a JSON object whose "Allow" is true. */
static int body_allows(const struct body *b)
{
	json_t *o, *v = NULL;
	const char *k;
	json_t *m;
	int r = ERR_FORBIDDEN;

	if (b->len == 0)
		return ERR_FORBIDDEN;
	o = json_loadb(b->data, b->len, 0, NULL);
	if (o == NULL || !json_is_object(o)) {
		json_decref(o);
		return ERR_FORBIDDEN;
	}
	json_object_foreach(o, k, m) {
		if (strcasecmp(k, "Allow") == 0)
			v = m;
	}
	if (json_is_true(v))
		r = 0;
	json_decref(o);
	return r;
}

int derp_verify_url(void *ctx, const uint8_t nodekey[static KEY_LEN])
{
	const struct derp_verify_url_ctx *vc = ctx;
	const char *url = vc->url;
	char key[KEY_STR_MAX], req[KEY_STR_MAX + 32], auth[300];
	struct curl_slist *hdrs = NULL;
	struct body *b = NULL;
	long status = 0;
	CURL *h = NULL;
	CURLcode cr;
	int r = ERR_FORBIDDEN;

	key_fmt(key, "nodekey:", nodekey);
	snprintf(req, sizeof(req), "{\"NodePublic\":\"%s\"}", key);
	b = calloc(1, sizeof(*b));
	h = curl_easy_init();
	if (b == NULL || h == NULL)
		goto out;
	hdrs = curl_slist_append(hdrs, "Content-Type: application/json");
	if (vc->secret && vc->secret[0]) {
		snprintf(auth, sizeof(auth), "Authorization: Bearer %s", vc->secret);
		hdrs = curl_slist_append(hdrs, auth);
		wipe(auth, sizeof(auth));
	}
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_POSTFIELDS, req);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
	curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)VERIFY_TIMEOUT_MS);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_data);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, b);
	curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
	cr = curl_easy_perform(h);
	if (cr != CURLE_OK) {
		log_warn("msg=\"derp: admission check failed, refusing\" err=\"%s\"",
			 curl_easy_strerror(cr));
		goto out;
	}
	curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
	if (status == 200 && !b->overflow && body_allows(b) == 0)
		r = 0;
out:
	for (struct curl_slist *l = hdrs; l; l = l->next)
		wipe(l->data, strlen(l->data));
	curl_slist_free_all(hdrs);
	curl_easy_cleanup(h);
	free(b);
	return r;
}
