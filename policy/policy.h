/* SPDX-License-Identifier: MIT */
/*
 * The policy engine: loads an acls.hujson policy (Tailscale's language:
 * groups, hosts, tagOwners, acls, tests, autoApprovers), checks it with
 * line:column diagnostics, runs its tests, explains single decisions, and
 * compiles it over a node set into, per node, (a) the peers it may see and
 * (b) its inbound packet filter in Tailscale's shape
 *   [{"IPProto":[6,17,1,58],"Srcs":["100.64.0.1/32",...],
 *     "Dsts":[{"Net":"100.64.0.2/32","Ports":{"First":22,"Last":22}}]}]
 * The library does not print and does not depend on the server. A loaded
 * `struct policy` is immutable; it and a `struct policy_result` may be read
 * from several threads at once.
 *
 * Users: a policy names users as name@domain; a node owned by a local user
 * "alice" matches "alice@" (as Headscale does) and a node whose user is
 * "alice@example.com" matches exactly that.
 */
#ifndef WM_POLICY_POLICY_H
#define WM_POLICY_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <jansson.h>

#include "common/addr.h"
#include "common/buf.h"
#include "common/err.h"
#include "policy/diag.h"

enum {
	POLICY_MAX_SIZE = 1 << 20,	/* bytes of HuJSON (callers answer 413 above it) */
	POLICY_MAX_RULES = 10000,
	POLICY_MAX_ITEMS = 100000,	/* selectors, ports, group members, ... in total */
	POLICY_MAX_NODES = 1000000,
};

struct policy;
struct policy_result;

/* A node as the compiler sees it. Borrowed by policy_compile for the call only. */
struct policy_node {
	uint64_t id;
	const char *name;
	const char *user;		/* "alice" or "alice@example.com"; NULL if tagged */
	const char *const *tags;	/* "tag:x"; may be NULL when ntags == 0 */
	size_t ntags;
	struct ip_addr ipv4, ipv6;	/* family 0 when absent */
	const struct ip_prefix *routes;	/* approved and served routes (0.0.0.0/0, ::/0 = exit) */
	size_t nroutes;
	/* Routes the node advertises (approved or not). As in Tailscale, a node
	 * whose advertised subnet overlaps a rule's IP/CIDR selector becomes
	 * visible to the rule's other side; only approved routes carry traffic
	 * (are in `*` and in filters). May be NULL. */
	const struct ip_prefix *advertised;
	size_t nadvertised;
};

/* Parses and checks a policy. Returns 0 and a new policy in *out, or
 * ERR_INVALID / ERR_TOO_LARGE with one diagnostic per problem in *d (which
 * the caller initialised with policy_diags_init and must clean up). The
 * tests block is only checked for shape here; run it with policy_run_tests. */
int policy_load(const char *text, size_t len, struct policy **out,
		struct policy_diags *d) WM_MUST_CHECK;

/* Runs the policy's `tests`. With nodes == NULL (offline `policy check`),
 * users, tags and hosts are taken as they are written; with a node set, a
 * user's or tag's addresses are those of its nodes and an IP source is the
 * node that has it. Returns 0 when every test passes, else ERR_UNPROCESSABLE
 * with one diagnostic per failing destination, at the test's position. */
int policy_run_tests(const struct policy *p, const struct policy_node *nodes,
		     size_t n, struct policy_diags *d) WM_MUST_CHECK;

/* Frees a policy; NULL is a no-op. */
void policy_free(struct policy *p);

/* Number of acls rules / grants / tests (for status output). */
size_t policy_rule_count(const struct policy *p);
size_t policy_grant_count(const struct policy *p);
size_t policy_test_count(const struct policy *p);

/* Compiles `p` over `n` nodes (p == NULL: no policy, everything allowed:
 * every node sees every other and accepts everything from the mesh).
 * Returns a new result (free with policy_result_free) or NULL on allocation
 * failure or n > POLICY_MAX_NODES. Node indexes below are indexes into
 * `nodes`; the node array need not outlive the result. */
struct policy_result *policy_compile(const struct policy *p,
				     const struct policy_node *nodes, size_t n);
void policy_result_free(struct policy_result *r);

/* True when node i may see node j in its netmap: i may reach j or j may reach
 * i under some rule. Never true for i == j. */
bool policy_result_can_see(const struct policy_result *r, size_t i, size_t j);

/* Appends to `out` the indexes of the peers node i may see, ascending.
 * Returns the count or a negative ERR_* (ERR_NOMEM). *out is malloc'd (the
 * caller frees it; NULL when the count is 0). */
ssize_t policy_result_peers(const struct policy_result *r, size_t i, size_t **out);

/* Node i's inbound packet filter as a JSON array (new reference, NULL on
 * allocation failure). Built on demand; call it only for nodes whose hash
 * changed. Source prefixes are merged into the fewest CIDRs. */
json_t *policy_result_filter(const struct policy_result *r, size_t i);

/* A stable 64-bit digest of node i's filter and of its peer set (by node id).
 * Equal digests across two compilations mean no delta is needed. */
uint64_t policy_result_hash(const struct policy_result *r, size_t i);
uint64_t policy_result_filter_hash(const struct policy_result *r, size_t i);
uint64_t policy_result_peers_hash(const struct policy_result *r, size_t i);

/* Decides one packet offline: SRC is a user (alice@ / alice@example.com), a
 * tag, a group, a host name or an IP; DST is "host:port" with the same forms
 * (IPv6 as [addr]:port); proto is NULL for tcp or a name/number. Writes a
 * human-readable verdict ("accept" or "deny" and the rules by line) to `out`
 * and returns 1 for accept, 0 for deny, or ERR_INVALID for a bad SRC/DST
 * (with the reason in `out`). */
int policy_explain(const struct policy *p, const char *src, const char *dst_port,
		   const char *proto, struct buf *out) WM_MUST_CHECK;

/* policy_explain with the tailnet's nodes: an IP address of a node stands
 * for that node (its user or tags). */
int policy_explain_nodes(const struct policy *p, const char *src, const char *dst_port,
			 const char *proto, const struct policy_node *nodes, size_t nn,
			 struct buf *out) WM_MUST_CHECK;

/* tagOwners: may a node of `user` (already holding node_tags) take `tag`?
 * Owners are users, groups, or tags the node holds. */
bool policy_tag_owned(const struct policy *p, const char *tag, const char *user,
		      const char *const *node_tags, size_t nnode_tags);

/* autoApprovers: true when `route` (0.0.0.0/0 or ::/0 means exit node)
 * advertised by `node` is approved automatically by the policy. */
bool policy_auto_approves(const struct policy *p, const struct policy_node *node,
			  const struct ip_prefix *route);

#endif
