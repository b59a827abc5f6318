/* SPDX-License-Identifier: MIT */
/*
 * The policy model shared by the loader (policy.c), the compiler
 * (compile.c) and the evaluator of tests and explain (evaluate.c). Not part
 * of the public API.
 */
#ifndef WM_POLICY_INT_H
#define WM_POLICY_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/addr.h"
#include "policy/policy.h"

enum sel_kind {
	SEL_ALL,	/* * */
	SEL_USER,	/* name@domain; `name` holds it as written */
	SEL_GROUP,	/* group:x; `idx` into groups */
	SEL_TAG,	/* tag:x; `name` */
	SEL_PREFIX,	/* an IP, a CIDR or a host name; `pfx` */
	SEL_MEMBER,	/* autogroup:member */
	SEL_TAGGED,	/* autogroup:tagged */
	SEL_SELF,	/* autogroup:self (dst only) */
	SEL_INTERNET,	/* autogroup:internet (dst only) */
	SEL_DANGER,	/* autogroup:danger-all (src only): every address */
	SEL_DOMAIN,	/* user:*@domain; `name` holds "@domain" */
};

struct selector {
	enum sel_kind kind;
	const char *name;	/* SEL_USER, SEL_TAG: points into the policy's strings */
	size_t idx;		/* SEL_GROUP */
	struct ip_prefix pfx;	/* SEL_PREFIX */
	int line, col;
};

struct port_range {
	uint16_t first, last;
};

struct dst {
	struct selector sel;
	struct port_range *ports;
	size_t nports;
};

enum { MAX_PROTOS = 8 };

/* One capability of an app grant: its name and its values as compact JSON
 * array text ("[{\"role\":\"admin\"}]"). */
struct cap {
	char *name;
	char *values;
};

/*
 * A rule of the model. An `acls` entry is one rule; a grant becomes one
 * rule per distinct protocol of its `ip` list (each destination carrying
 * that protocol's ports) plus one app rule when it has `app`. App rules
 * (nprotos == 0) add visibility and capabilities, never packet filter
 * entries. Rules with `via` reach IP/CIDR destinations and
 * autogroup:internet only through routers carrying one of the via tags.
 */
struct rule {
	int line, col;
	int grant;			/* 1-based grant number; 0 for an acls rule */
	uint8_t protos[MAX_PROTOS];	/* IANA numbers; default 6,17,1,58 */
	size_t nprotos;
	bool has_proto;
	struct selector *src;
	size_t nsrc;
	struct dst *dst;
	size_t ndst;
	bool has_self;
	struct cap *caps;		/* app rules */
	size_t ncaps;
	const char **via;		/* tags; strings kept by the policy */
	size_t nvia;
};

struct group {
	char *name;		/* group:x */
	char **users;		/* name@domain */
	size_t nusers;
	int line, col;
};

struct host {
	char *name;
	struct ip_prefix pfx;
};

struct tag_owner {
	char *tag;
	int line, col;
	char **owners;
	size_t nowners;
};

struct test_dst {
	char *text;		/* as written: "tag:server:22" */
	int line, col;
};

struct ptest {
	int line, col;
	char *src;
	int src_line, src_col;
	char *proto;		/* NULL: tcp */
	struct test_dst *accept, *deny;
	size_t naccept, ndeny;
};

struct approver {
	struct ip_prefix route;		/* for exitNode: family 0 */
	struct selector *who;
	size_t nwho;
};

struct policy {
	struct rule *rules;
	size_t nrules, caprules;
	size_t ngrants;
	struct group *groups;
	size_t ngroups;
	struct host *hosts;
	size_t nhosts;
	struct tag_owner *tags;
	size_t ntags;
	struct ptest *tests;
	size_t ntests;
	struct approver *approvers;	/* routes, then one for exitNode (family 0) */
	size_t napprovers;
	char **strings;			/* owned strings that selectors point into */
	size_t nstrings, capstrings;
	size_t items;			/* budget count against POLICY_MAX_ITEMS */
};

/* The string after "name@"-normalisation: "alice" -> "alice@". Writes into
 * buf (size n) and returns it. */
const char *user_norm(const char *u, char *buf, size_t n);
/* Does the policy user `pu` (name@domain as written) name node user `nu`? */
bool user_match(const char *pu, const char *nu);
bool group_has_user(const struct policy *p, size_t g, const char *nu);
const struct host *policy_host_find(const struct policy *p, const char *name);
bool policy_tag_defined(const struct policy *p, const char *tag);
int policy_proto_parse(const char *s, uint8_t *out);
int policy_ports_parse(const char *s, struct port_range **out, size_t *n,
		       char *why, size_t whylen);
/* Splits "selector:ports" at the last ':' ("[v6]:port" also). Returns 0 and
 * malloc'd parts, or ERR_INVALID. */
int policy_split_dst(const char *s, char **sel, char **ports);

#endif
