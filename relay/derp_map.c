/* SPDX-License-Identifier: MIT */
/* DERP map JSON parsing and serialisation (Tailscale's DERPMap shape). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/util.h"
#include "relay/derp_map.h"

/* Case-insensitive member lookup; an exact match wins. */
static json_t *member(json_t *o, const char *name)
{
	json_t *v = json_object_get(o, name), *m;
	const char *k;

	if (v)
		return v;
	json_object_foreach(o, k, m) {
		if (strcasecmp(k, name) == 0)
			return m;
	}
	return NULL;
}

static int get_str(json_t *o, const char *name, char *out, size_t cap, const char *where,
		   char *why, size_t whylen)
{
	json_t *v = member(o, name);

	out[0] = 0;
	if (v == NULL || json_is_null(v))
		return 0;
	if (!json_is_string(v) || json_string_length(v) >= cap) {
		snprintf(why, whylen, "%s: %s must be a string of at most %zu bytes", where, name,
			 cap - 1);
		return ERR_INVALID;
	}
	str_copy(out, json_string_value(v), cap);
	return 0;
}

static int get_int(json_t *o, const char *name, long long lo, long long hi, long long *out,
		   const char *where, char *why, size_t whylen)
{
	json_t *v = member(o, name);

	*out = 0;
	if (v == NULL || json_is_null(v))
		return 0;
	if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi) {
		snprintf(why, whylen, "%s: %s must be an integer in [%lld, %lld]", where, name, lo, hi);
		return ERR_INVALID;
	}
	*out = json_integer_value(v);
	return 0;
}

static int get_bool(json_t *o, const char *name, bool *out, const char *where, char *why,
		    size_t whylen)
{
	json_t *v = member(o, name);

	*out = false;
	if (v == NULL || json_is_null(v))
		return 0;
	if (!json_is_boolean(v)) {
		snprintf(why, whylen, "%s: %s must be a boolean", where, name);
		return ERR_INVALID;
	}
	*out = json_is_true(v);
	return 0;
}

static int parse_node(json_t *o, int region_id, struct derp_node *n, const char *where,
		      char *why, size_t whylen)
{
	long long v;
	int r;

	if (!json_is_object(o)) {
		snprintf(why, whylen, "%s: node must be an object", where);
		return ERR_INVALID;
	}
	if ((r = get_str(o, "Name", n->name, sizeof(n->name), where, why, whylen)) != 0 ||
	    (r = get_str(o, "HostName", n->host, sizeof(n->host), where, why, whylen)) != 0 ||
	    (r = get_str(o, "IPv4", n->ipv4, sizeof(n->ipv4), where, why, whylen)) != 0 ||
	    (r = get_str(o, "IPv6", n->ipv6, sizeof(n->ipv6), where, why, whylen)) != 0 ||
	    (r = get_str(o, "STUNTestIP", n->stun_test_ip, sizeof(n->stun_test_ip), where, why,
			 whylen)) != 0 ||
	    (r = get_bool(o, "STUNOnly", &n->stun_only, where, why, whylen)) != 0 ||
	    (r = get_bool(o, "CanPort80", &n->can_port80, where, why, whylen)) != 0 ||
	    (r = get_bool(o, "InsecureForTests", &n->insecure_for_tests, where, why, whylen)) != 0)
		return r;
	if ((r = get_int(o, "DERPPort", 0, 65535, &v, where, why, whylen)) != 0)
		return r;
	n->derp_port = (int)v;
	if ((r = get_int(o, "STUNPort", -1, 65535, &v, where, why, whylen)) != 0)
		return r;
	n->stun_port = (int)v;
	if ((r = get_int(o, "RegionID", 0, INT32_MAX, &v, where, why, whylen)) != 0)
		return r;
	if (v != 0 && v != region_id) {
		snprintf(why, whylen, "%s: RegionID %lld differs from its region %d", where, v,
			 region_id);
		return ERR_INVALID;
	}
	n->region_id = region_id;
	if (n->host[0] == 0 && n->ipv4[0] == 0 && n->ipv6[0] == 0) {
		snprintf(why, whylen, "%s: HostName (or IPv4/IPv6) is required", where);
		return ERR_INVALID;
	}
	return 0;
}

static int parse_region(const char *key, json_t *o, struct derp_region *rg, char *why,
			size_t whylen)
{
	char where[96], *end;
	long long id, kid;
	json_t *nodes;
	size_t i;
	int r;

	snprintf(where, sizeof(where), "Regions.%.40s", key);
	if (!json_is_object(o)) {
		snprintf(why, whylen, "%s: region must be an object", where);
		return ERR_INVALID;
	}
	errno = 0;
	kid = strtoll(key, &end, 10);
	if (*key == 0 || *end != 0 || errno || kid < 1 || kid > INT32_MAX) {
		snprintf(why, whylen, "%s: region keys must be positive decimal IDs", where);
		return ERR_INVALID;
	}
	if ((r = get_int(o, "RegionID", 0, INT32_MAX, &id, where, why, whylen)) != 0)
		return r;
	if (id != 0 && id != kid) {
		snprintf(why, whylen, "%s: RegionID %lld does not match its key", where, id);
		return ERR_INVALID;
	}
	rg->id = (int)kid;
	if ((r = get_str(o, "RegionCode", rg->code, sizeof(rg->code), where, why, whylen)) != 0 ||
	    (r = get_str(o, "RegionName", rg->name, sizeof(rg->name), where, why, whylen)) != 0 ||
	    (r = get_bool(o, "NoMeasureNoHome", &rg->no_measure_no_home, where, why, whylen)) != 0)
		return r;
	if (rg->code[0] == 0) {
		snprintf(why, whylen, "%s: RegionCode is required", where);
		return ERR_INVALID;
	}
	nodes = member(o, "Nodes");
	if (nodes == NULL || json_is_null(nodes))
		return 0;
	if (!json_is_array(nodes) || json_array_size(nodes) > DERP_MAP_MAX_NODES) {
		snprintf(why, whylen, "%s: Nodes must be an array of at most %d nodes", where,
			 DERP_MAP_MAX_NODES);
		return ERR_INVALID;
	}
	rg->nodes = calloc(json_array_size(nodes) + 1, sizeof(*rg->nodes));
	if (rg->nodes == NULL)
		return ERR_NOMEM;
	for (i = 0; i < json_array_size(nodes); i++) {
		char nw[128];

		snprintf(nw, sizeof(nw), "%s.Nodes[%zu]", where, i);
		if ((r = parse_node(json_array_get(nodes, i), rg->id, &rg->nodes[i], nw, why,
				    whylen)) != 0)
			return r;
		rg->nnodes++;
	}
	return 0;
}

static int cmp_region(const void *a, const void *b)
{
	const struct derp_region *x = a, *y = b;

	return (x->id > y->id) - (x->id < y->id);
}

int derp_map_parse(const char *text, size_t len, struct derp_map **out, char *why, size_t whylen)
{
	struct derp_map *m = NULL;
	json_t *root = NULL, *regions, *v, *hp;
	json_error_t je;
	const char *k;
	int r = ERR_INVALID;

	*out = NULL;
	if (whylen)
		why[0] = 0;
	if (len > DERP_MAP_MAX_BYTES) {
		snprintf(why, whylen, "DERP map larger than %d bytes", DERP_MAP_MAX_BYTES);
		return ERR_TOO_LARGE;
	}
	root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
	if (root == NULL) {
		snprintf(why, whylen, "%d:%d: %s", je.line, je.column, je.text);
		return ERR_INVALID;
	}
	if (!json_is_object(root)) {
		snprintf(why, whylen, "DERP map must be a JSON object");
		goto out;
	}
	m = calloc(1, sizeof(*m));
	if (m == NULL) {
		r = ERR_NOMEM;
		goto out;
	}
	if ((r = get_bool(root, "OmitDefaultRegions", &m->omit_default_regions, "map", why,
			  whylen)) != 0)
		goto out;
	r = ERR_INVALID;
	regions = member(root, "Regions");
	if (regions == NULL || !json_is_object(regions)) {
		snprintf(why, whylen, "Regions must be an object keyed by region ID");
		goto out;
	}
	if (json_object_size(regions) > DERP_MAP_MAX_REGIONS) {
		snprintf(why, whylen, "more than %d regions", DERP_MAP_MAX_REGIONS);
		goto out;
	}
	m->regions = calloc(json_object_size(regions) + 1, sizeof(*m->regions));
	if (m->regions == NULL) {
		r = ERR_NOMEM;
		goto out;
	}
	json_object_foreach(regions, k, v) {
		if ((r = parse_region(k, v, &m->regions[m->nregions], why, whylen)) != 0) {
			m->nregions++;	/* so its nodes are freed */
			goto out;
		}
		m->nregions++;
	}
	qsort(m->regions, m->nregions, sizeof(*m->regions), cmp_region);
	for (size_t i = 1; i < m->nregions; i++) {
		if (m->regions[i].id == m->regions[i - 1].id) {
			snprintf(why, whylen, "region %d appears twice", m->regions[i].id);
			r = ERR_INVALID;
			goto out;
		}
	}
	hp = member(root, "HomeParams");
	if (hp && json_is_object(hp) && (v = member(hp, "RegionScore")) && json_is_object(v)) {
		json_t *sv;

		json_object_foreach(v, k, sv) {
			struct derp_region *rg = (struct derp_region *)derp_map_region(m, atoi(k));

			if (rg && json_is_number(sv) && json_number_value(sv) > 0)
				rg->score = json_number_value(sv);
		}
	}
	*out = m;
	m = NULL;
	r = 0;
out:
	derp_map_free(m);
	json_decref(root);
	return r;
}

int derp_map_load(const char *path, struct derp_map **out, char *why, size_t whylen)
{
	FILE *f = fopen(path, "r");
	char *buf;
	size_t n;
	int r;

	*out = NULL;
	if (f == NULL) {
		snprintf(why, whylen, "%s: %s", path, strerror(errno));
		return ERR_IO;
	}
	buf = malloc(DERP_MAP_MAX_BYTES + 1);
	if (buf == NULL) {
		fclose(f);
		return ERR_NOMEM;
	}
	n = fread(buf, 1, DERP_MAP_MAX_BYTES + 1, f);
	fclose(f);
	r = derp_map_parse(buf, n, out, why, whylen);
	free(buf);
	return r;
}

const struct derp_region *derp_map_region(const struct derp_map *m, int id)
{
	for (size_t i = 0; m && i < m->nregions; i++)
		if (m->regions[i].id == id)
			return &m->regions[i];
	return NULL;
}

uint16_t derp_node_derp_port(const struct derp_node *n)
{
	return n->derp_port ? (uint16_t)n->derp_port : DERP_DEFAULT_DERP_PORT;
}

uint16_t derp_node_stun_port(const struct derp_node *n)
{
	if (n->stun_port < 0)
		return 0;
	return n->stun_port ? (uint16_t)n->stun_port : DERP_DEFAULT_STUN_PORT;
}

json_t *derp_map_to_json(const struct derp_map *m)
{
	json_t *root = json_object(), *regions = json_object();

	if (root == NULL || regions == NULL)
		goto fail;
	json_object_set_new(root, "Regions", regions);
	if (m->omit_default_regions)
		json_object_set_new(root, "OmitDefaultRegions", json_true());
	for (size_t i = 0; i < m->nregions; i++) {
		const struct derp_region *rg = &m->regions[i];
		json_t *o = json_object(), *nodes = json_array();
		char key[16];

		if (o == NULL || nodes == NULL) {
			json_decref(o);
			json_decref(nodes);
			goto fail;
		}
		snprintf(key, sizeof(key), "%d", rg->id);
		json_object_set_new(o, "RegionID", json_integer(rg->id));
		json_object_set_new(o, "RegionCode", json_string(rg->code));
		json_object_set_new(o, "RegionName", json_string(rg->name));
		if (rg->no_measure_no_home)
			json_object_set_new(o, "NoMeasureNoHome", json_true());
		for (size_t j = 0; j < rg->nnodes; j++) {
			const struct derp_node *n = &rg->nodes[j];
			json_t *no = json_object();

			if (no == NULL)
				break;
			json_object_set_new(no, "Name", json_string(n->name));
			json_object_set_new(no, "RegionID", json_integer(n->region_id));
			json_object_set_new(no, "HostName", json_string(n->host));
			if (n->ipv4[0])
				json_object_set_new(no, "IPv4", json_string(n->ipv4));
			if (n->ipv6[0])
				json_object_set_new(no, "IPv6", json_string(n->ipv6));
			if (n->derp_port)
				json_object_set_new(no, "DERPPort", json_integer(n->derp_port));
			if (n->stun_port)
				json_object_set_new(no, "STUNPort", json_integer(n->stun_port));
			if (n->stun_only)
				json_object_set_new(no, "STUNOnly", json_true());
			if (n->can_port80)
				json_object_set_new(no, "CanPort80", json_true());
			if (n->insecure_for_tests)
				json_object_set_new(no, "InsecureForTests", json_true());
			if (n->stun_test_ip[0])
				json_object_set_new(no, "STUNTestIP", json_string(n->stun_test_ip));
			json_array_append_new(nodes, no);
		}
		json_object_set_new(o, "Nodes", nodes);
		json_object_set_new(regions, key, o);
	}
	return root;
fail:
	json_decref(root);
	return NULL;
}

void derp_map_free(struct derp_map *m)
{
	if (m == NULL)
		return;
	for (size_t i = 0; i < m->nregions; i++)
		free(m->regions[i].nodes);
	free(m->regions);
	free(m);
}
