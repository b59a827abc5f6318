// SPDX-License-Identifier: MIT
/* The HuJSON config file of `wiremesh-server serve --config FILE`. Keys are
 * the option names of server_config_set(); values are strings, numbers or,
 * for "prefixes", an object {"v4": ..., "v6": ...}; "dns" is the MagicDNS
 * block (dns_config.c). Unknown keys are errors. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "policy/hujson.h"
#include "common/util.h"
#include "server/server.h"

int
server_config_file(struct server_config *c, const char *path, char *why, size_t whylen)
{
	struct policy_diag diag;
	struct hujson_value *doc = NULL;
	json_t *root = NULL, *v;
	const char *key;
	FILE *f = fopen(path, "rb");
	char *text;
	size_t len;
	int r = ERR_INVALID;

	if (f == NULL) {
		snprintf(why, whylen, "cannot open config file %s", path);
		return ERR_IO;
	}
	if ((text = malloc(HUJSON_MAX_SIZE + 1)) == NULL) {
		fclose(f);
		return ERR_NOMEM;
	}
	len = fread(text, 1, HUJSON_MAX_SIZE + 1, f);
	fclose(f);
	if (len > HUJSON_MAX_SIZE) {
		snprintf(why, whylen, "%s: config file is larger than %d bytes", path, HUJSON_MAX_SIZE);
		goto out;
	}
	memset(&diag, 0, sizeof(diag));
	if (hujson_parse(text, len, &doc, &diag) != 0) {
		snprintf(why, whylen, "%s:%d:%d: %s", path, diag.line, diag.col, diag.msg);
		goto out;
	}
	if (doc->type != HUJSON_OBJECT || (root = hujson_value_to_json(doc)) == NULL) {
		snprintf(why, whylen, "%s: the config must be an object", path);
		goto out;
	}
	str_copy(c->config_path, path, sizeof(c->config_path));
	json_object_foreach(root, key, v) {
		char val[600], err[400];

		if (strcmp(key, "dns") == 0) {
			if (dns_config_parse(&c->dns, hujson_get(doc, "dns"), path, why, whylen) != 0)
				goto out;
			continue;
		}
		if (strcmp(key, "oidc") == 0) {
			const struct hujson_value *hv = hujson_get(doc, "oidc");

			if (!json_is_object(v) || oidc_config_parse(&c->oidc, v, err, sizeof(err)) != 0) {
				snprintf(why, whylen, "%s:%d:%d: oidc: %s", path, hv ? hv->line : 0,
				    hv ? hv->col : 0, json_is_object(v) ? err : "must be an object");
				goto out;
			}
			continue;
		}
		if (strcmp(key, "prefixes") == 0 && json_is_object(v)) {
			const char *v4 = json_string_value(json_object_get(v, "v4"));
			const char *v6 = json_string_value(json_object_get(v, "v6"));

			if ((v4 && server_config_set(c, "prefix_v4", v4, err, sizeof(err)) != 0) ||
			    (v6 && server_config_set(c, "prefix_v6", v6, err, sizeof(err)) != 0)) {
				snprintf(why, whylen, "%s: %s", path, err);
				goto out;
			}
			continue;
		}
		if (json_is_string(v))
			snprintf(val, sizeof(val), "%s", json_string_value(v));
		else if (json_is_boolean(v))
			snprintf(val, sizeof(val), "%s", json_is_true(v) ? "true" : "false");
		else if (json_is_integer(v))
			snprintf(val, sizeof(val), "%" JSON_INTEGER_FORMAT, json_integer_value(v));
		else {
			snprintf(why, whylen, "%s: \"%s\" must be a string, an integer or a boolean", path, key);
			goto out;
		}
		if (server_config_set(c, key, val, err, sizeof(err)) != 0) {
			snprintf(why, whylen, "%s: %s", path, err);
			goto out;
		}
	}
	r = 0;
out:
	json_decref(root);
	hujson_free(doc);
	free(text);
	return r;
}
