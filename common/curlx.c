// SPDX-License-Identifier: MIT
/* The libcurl set-up every HTTP client of ours shares (curlx.h). */
#include "common/curlx.h"

CURL *
curlx_new(const char *url, curl_write_callback write, void *data, char *err,
	  const char *ca_file)
{
	CURL *k = curl_easy_init();

	if (k == NULL)
		return NULL;
	err[0] = 0;
	curl_easy_setopt(k, CURLOPT_URL, url);
	curl_easy_setopt(k, CURLOPT_WRITEFUNCTION, write);
	curl_easy_setopt(k, CURLOPT_WRITEDATA, data);
	curl_easy_setopt(k, CURLOPT_ERRORBUFFER, err);
	curl_easy_setopt(k, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(k, CURLOPT_PROTOCOLS_STR, "http,https");
	if (ca_file && *ca_file)
		curl_easy_setopt(k, CURLOPT_CAINFO, ca_file);
	return k;
}
