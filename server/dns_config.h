/* SPDX-License-Identifier: MIT */
/*
 * The server's `dns` config block (MagicDNS): read from server.hujson with
 * positions for errors, overridden by WIREMESH_DNS_* variables, checked
 * against the server's own names, and encoded once as the `dns` section of
 * every map (docs/dns.md, docs/protocol.md). Plain struct, fixed limits.
 */
#ifndef WM_SERVER_DNS_CONFIG_H
#define WM_SERVER_DNS_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

#include "common/addr.h"
#include "common/dnsname.h"
#include "common/err.h"

enum {
	DNSCONF_MAX_NS = 8,		/* nameservers per list */
	DNSCONF_MAX_SPLIT = 32,		/* split domains */
	DNSCONF_MAX_SEARCH = 16,
	DNSCONF_MAX_EXTRA = 256,	/* extra records */
};

struct dns_split {
	char domain[DNSNAME_MAX];
	struct ip_addr ns[DNSCONF_MAX_NS];
	size_t nns;
};

struct dns_extra {
	char name[DNSNAME_MAX];
	int type;			/* 1 (A) or 28 (AAAA) */
	struct ip_addr value;
};

struct dns_config {
	bool magic_dns;
	char base_domain[DNSNAME_MAX];	/* "" : none */
	int base_line, base_col;	/* where base_domain was set (0: env/flag) */
	char base_file[512];
	struct ip_addr global[DNSCONF_MAX_NS];
	size_t nglobal;
	struct dns_split split[DNSCONF_MAX_SPLIT];
	size_t nsplit;
	char search[DNSCONF_MAX_SEARCH][DNSNAME_MAX];
	size_t nsearch;
	struct dns_extra extra[DNSCONF_MAX_EXTRA];
	size_t nextra;
};

struct hujson_value;

/* Reads the `dns` object `v` of config file `path` into *c (replacing what
 * it held). Errors: ERR_INVALID with "PATH:LINE:COL: reason" in `why`. */
int dns_config_parse(struct dns_config *c, const struct hujson_value *v, const char *path,
		     char *why, size_t whylen) WM_MUST_CHECK;

/* Applies WIREMESH_DNS_MAGIC_DNS, _BASE_DOMAIN, _NAMESERVERS (comma list of
 * global nameservers), _SEARCH_DOMAINS (comma list). */
int dns_config_env(struct dns_config *c, char *why, size_t whylen) WM_MUST_CHECK;

/* Final checks that need the whole config: magic_dns needs base_domain, and
 * base_domain must not equal or contain one of the server's own names
 * (`own`, NULL-terminated list; empty strings and IP literals are skipped). */
int dns_config_check(const struct dns_config *c, const char *const *own,
		     char *why, size_t whylen) WM_MUST_CHECK;

/* The map's `dns` section as compact JSON (malloc'd; NULL on no memory). */
char *dns_config_json(const struct dns_config *c);

#endif
