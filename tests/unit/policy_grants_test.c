// SPDX-License-Identifier: MIT
/* policy/ grants: each `ip` form, app grants (CapGrant entries), via
 * (filters only on via routers, directives for sources), autogroups and
 * user:*@domain in grants, every grant validation error with its position,
 * tests and explain over grants, and acls == the same grants. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "policy/policy.h"

static const char *tag_srv[] = { "tag:server" };
static const char *tag_ra[] = { "tag:ra" };
static const char *tag_rb[] = { "tag:rb" };
static const char *tag_c[] = { "tag:client" };

#define HEAD \
	"{\"tagOwners\": {\"tag:server\": [\"alice@\"], \"tag:ra\": [\"alice@\"], " \
	"\"tag:rb\": [\"alice@\"], \"tag:client\": [\"alice@\"]},\n" \
	"\"hosts\": {\"lan\": \"10.1.0.0/16\"},\n"

static struct policy *
load_ok(const char *text)
{
	struct policy_diags d;
	struct policy *p = NULL;
	int r;

	policy_diags_init(&d);
	r = policy_load(text, strlen(text), &p, &d);
	ck_assert_msg(r == 0, "load failed: %s at %d:%d", d.n ? d.v[0].msg : "?",
	    d.n ? d.v[0].line : 0, d.n ? d.v[0].col : 0);
	policy_diags_cleanup(&d);
	return p;
}

static void
load_bad(const char *text, int line, int col, const char *part)
{
	struct policy_diags d;
	struct policy *p = (void *)1;
	size_t i;
	bool found = false;

	policy_diags_init(&d);
	ck_assert_int_ne(policy_load(text, strlen(text), &p, &d), 0);
	ck_assert_ptr_null(p);
	for (i = 0; i < d.n; i++)
		if (d.v[i].line == line && d.v[i].col == col && strstr(d.v[i].msg, part) != NULL)
			found = true;
	ck_assert_msg(found, "want %d:%d '%s', first is %d:%d '%s'", line, col, part,
	    d.n ? d.v[0].line : 0, d.n ? d.v[0].col : 0, d.n ? d.v[0].msg : "(none)");
	policy_diags_cleanup(&d);
}

/*
 * The tailnet: 0 alice (user alice@example.com), 1 bob (bob@example.org),
 * 2 srv (tag:server), 3 ra (tag:ra, routes 10.1.0.0/16 and 0.0.0.0/0),
 * 4 rb (tag:rb, routes 10.1.0.0/16), 5 cli (tag:client).
 */
static struct ip_prefix routes_a[2], routes_b[1];

static void
mknodes(struct policy_node *n)
{
	static const char *ips[] = { "100.64.0.1", "100.64.0.2", "100.64.0.3", "100.64.0.4",
	    "100.64.0.5", "100.64.0.6" };
	size_t i;

	memset(n, 0, 6 * sizeof(*n));
	for (i = 0; i < 6; i++) {
		n[i].id = i + 1;
		ck_assert_int_eq(addr_parse(ips[i], &n[i].ipv4), 0);
	}
	n[0].name = "alice"; n[0].user = "alice@example.com";
	n[1].name = "bob"; n[1].user = "bob@example.org";
	n[2].name = "srv"; n[2].tags = tag_srv; n[2].ntags = 1;
	n[3].name = "ra"; n[3].tags = tag_ra; n[3].ntags = 1;
	n[4].name = "rb"; n[4].tags = tag_rb; n[4].ntags = 1;
	n[5].name = "cli"; n[5].tags = tag_c; n[5].ntags = 1;
	ck_assert_int_eq(prefix_parse("10.1.0.0/16", false, &routes_a[0]), 0);
	ck_assert_int_eq(prefix_parse("0.0.0.0/0", false, &routes_a[1]), 0);
	routes_b[0] = routes_a[0];
	n[3].routes = routes_a; n[3].nroutes = 2;
	n[4].routes = routes_b; n[4].nroutes = 1;
}

static char *
filter_of(const char *policy_text, size_t node)
{
	struct policy *p = load_ok(policy_text);
	struct policy_node n[6];
	struct policy_result *r;
	json_t *f;
	char *s;

	mknodes(n);
	r = policy_compile(p, n, 6);
	ck_assert_ptr_nonnull(r);
	f = policy_result_filter(r, node);
	ck_assert_ptr_nonnull(f);
	s = json_dumps(f, JSON_COMPACT);
	json_decref(f);
	policy_result_free(r);
	policy_free(p);
	return s;
}

static void
filter_is(const char *grants, size_t node, const char *want)
{
	char text[4096], *s;

	snprintf(text, sizeof(text), HEAD "\"grants\": [%s]}", grants);
	s = filter_of(text, node);
	ck_assert_msg(strcmp(s, want) == 0, "grants %s node %zu:\n got  %s\n want %s", grants, node,
	    s, want);
	free(s);
}

#define SRC_CLI "\"Srcs\":[\"100.64.0.6/32\"]"
#define DST_SRV(f, l) "{\"Net\":\"100.64.0.3/32\",\"Ports\":{\"First\":" #f ",\"Last\":" #l "}}"

START_TEST(test_ip_forms)
{
	char buf[512];
#define g "{\"src\": [\"tag:client\"], \"dst\": [\"tag:server\"], \"ip\": [%s]}"

	/* "*": every default protocol, every port */
	snprintf(buf, sizeof(buf), g, "\"*\"");
	filter_is(buf, 2, "[{\"IPProto\":[6,17,1,58]," SRC_CLI ",\"Dsts\":[" DST_SRV(0, 65535) "]}]");
	/* "tcp:443" */
	snprintf(buf, sizeof(buf), g, "\"tcp:443\"");
	filter_is(buf, 2, "[{\"IPProto\":[6]," SRC_CLI ",\"Dsts\":[" DST_SRV(443, 443) "]}]");
	/* "udp:53" */
	snprintf(buf, sizeof(buf), g, "\"udp:53\"");
	filter_is(buf, 2, "[{\"IPProto\":[17]," SRC_CLI ",\"Dsts\":[" DST_SRV(53, 53) "]}]");
	/* "icmp:*" */
	snprintf(buf, sizeof(buf), g, "\"icmp:*\"");
	filter_is(buf, 2, "[{\"IPProto\":[1]," SRC_CLI ",\"Dsts\":[" DST_SRV(0, 65535) "]}]");
	/* a range, and a bare port (every default protocol) */
	snprintf(buf, sizeof(buf), g, "\"tcp:8000-8100\", \"22\"");
	filter_is(buf, 2, "[{\"IPProto\":[6]," SRC_CLI ",\"Dsts\":[" DST_SRV(8000, 8100) "]},"
	    "{\"IPProto\":[6,17,1,58]," SRC_CLI ",\"Dsts\":[" DST_SRV(22, 22) "]}]");
	/* protocol numbers and names; ports of one protocol together */
	snprintf(buf, sizeof(buf), g, "\"47:*\", \"tcp:80\", \"sctp:9\", \"tcp:443\"");
	filter_is(buf, 2, "[{\"IPProto\":[47]," SRC_CLI ",\"Dsts\":[" DST_SRV(0, 65535) "]},"
	    "{\"IPProto\":[6]," SRC_CLI ",\"Dsts\":[" DST_SRV(80, 80) "," DST_SRV(443, 443) "]},"
	    "{\"IPProto\":[132]," SRC_CLI ",\"Dsts\":[" DST_SRV(9, 9) "]}]");
	snprintf(buf, sizeof(buf), g, "\"gre:*\"");
	filter_is(buf, 2, "[{\"IPProto\":[47]," SRC_CLI ",\"Dsts\":[" DST_SRV(0, 65535) "]}]");
	/* nothing for other nodes */
	snprintf(buf, sizeof(buf), g, "\"*\"");
	filter_is(buf, 0, "[]");
#undef g
}
END_TEST

START_TEST(test_acl_equals_grant)
{
	struct policy_node n[6];
	struct policy *pa, *pg;
	struct policy_result *ra, *rg;
	size_t i;

	mknodes(n);
	pa = load_ok(HEAD "\"acls\": [{\"action\": \"accept\", \"src\": [\"autogroup:member\", \"tag:client\"], "
	    "\"dst\": [\"tag:server:22,80-90\", \"lan:443\"]},"
	    "{\"action\": \"accept\", \"src\": [\"autogroup:member\"], \"dst\": [\"autogroup:self:*\"]},"
	    "{\"action\": \"accept\", \"proto\": \"udp\", \"src\": [\"*\"], \"dst\": [\"tag:server:53\"]}]}");
	pg = load_ok(HEAD "\"grants\": [{\"src\": [\"autogroup:member\", \"tag:client\"], "
	    "\"dst\": [\"tag:server\", \"lan\"], \"ip\": [\"22\", \"80-90\", \"443\"]},"
	    "{\"src\": [\"autogroup:member\"], \"dst\": [\"autogroup:self\"], \"ip\": [\"*\"]},"
	    "{\"src\": [\"*\"], \"dst\": [\"tag:server\"], \"ip\": [\"udp:53\"]}]}");
	ra = policy_compile(pa, n, 6);
	rg = policy_compile(pg, n, 6);
	ck_assert_ptr_nonnull(ra);
	ck_assert_ptr_nonnull(rg);
	for (i = 0; i < 6; i++) {
		size_t j;

		for (j = 0; j < 6; j++)
			ck_assert_int_eq(policy_result_can_see(ra, i, j), policy_result_can_see(rg, i, j));
	}
	/* The grant spells the same access: srv accepts the same packets (the
	 * grant gives lan:22 and tag:server:443 too, so compare srv's ports). */
	{
		json_t *fa = policy_result_filter(ra, 2), *fg = policy_result_filter(rg, 2);
		char *sa = json_dumps(fa, JSON_COMPACT), *sg = json_dumps(fg, JSON_COMPACT);

		ck_assert_ptr_nonnull(strstr(sa, DST_SRV(22, 22)));
		ck_assert_ptr_nonnull(strstr(sg, DST_SRV(22, 22)));
		ck_assert_ptr_nonnull(strstr(sg, DST_SRV(80, 90)));
		ck_assert_ptr_nonnull(strstr(sg, "{\"IPProto\":[17],\"Srcs\":[\"10.1.0.0/16\",\"100.64.0.0/11\""));
		ck_assert_ptr_nonnull(strstr(sa, "{\"IPProto\":[17],\"Srcs\":[\"10.1.0.0/16\",\"100.64.0.0/11\""));
		free(sa);
		free(sg);
		json_decref(fa);
		json_decref(fg);
	}
	policy_result_free(ra);
	policy_result_free(rg);
	policy_free(pa);
	policy_free(pg);
}
END_TEST

START_TEST(test_app_grant)
{
	/* The capability lands on the destination as a CapGrant entry; no
	 * packet filter entry; the source sees the destination. */
	filter_is("{\"src\": [\"tag:client\"], \"dst\": [\"tag:server\"], "
	    "\"app\": {\"example.com/cap/x\": [{\"role\": \"admin\", \"n\": 2}, {}]}}", 2,
	    "[{\"Srcs\":[\"100.64.0.6/32\"],\"CapGrant\":[{\"Dsts\":[\"100.64.0.3/32\"],"
	    "\"CapMap\":{\"example.com/cap/x\":[{\"n\":2,\"role\":\"admin\"},{}]}}]}]");
	/* ip and app together: both */
	filter_is("{\"src\": [\"tag:client\"], \"dst\": [\"tag:server\"], \"ip\": [\"tcp:443\"], "
	    "\"app\": {\"tailscale.com/cap/drive\": [{\"access\": \"ro\"}]}}", 2,
	    "[{\"IPProto\":[6]," SRC_CLI ",\"Dsts\":[" DST_SRV(443, 443) "]},"
	    "{\"Srcs\":[\"100.64.0.6/32\"],\"CapGrant\":[{\"Dsts\":[\"100.64.0.3/32\"],"
	    "\"CapMap\":{\"tailscale.com/cap/drive\":[{\"access\":\"ro\"}]}}]}]");
	{
		struct policy *p = load_ok(HEAD "\"grants\": [{\"src\": [\"tag:client\"], "
		    "\"dst\": [\"tag:server\"], \"app\": {\"example.com/cap/x\": [{}]}}]}");
		struct policy_node n[6];
		struct policy_result *r;
		struct buf b;

		mknodes(n);
		r = policy_compile(p, n, 6);
		ck_assert(policy_result_can_see(r, 5, 2));
		ck_assert(policy_result_can_see(r, 2, 5));
		ck_assert(!policy_result_can_see(r, 0, 2));
		/* app grants allow no packets */
		buf_init(&b, 1024);
		ck_assert_int_eq(policy_explain(p, "tag:client", "tag:server:443", NULL, &b), 0);
		buf_cleanup(&b);
		policy_result_free(r);
		policy_free(p);
	}
}
END_TEST

START_TEST(test_via)
{
	const char *g = "{\"src\": [\"tag:client\"], \"dst\": [\"lan\"], \"ip\": [\"tcp:80\"], "
	    "\"via\": [\"tag:rb\"]}";
	char text[2048], *s;
	struct policy *p;
	struct policy_node n[6];
	struct policy_result *r;

	/* Only router B gets the filter entry; router A nothing. */
	filter_is(g, 4, "[{\"IPProto\":[6]," SRC_CLI ",\"Dsts\":[{\"Net\":\"10.1.0.0/16\","
	    "\"Ports\":{\"First\":80,\"Last\":80}}]}]");
	filter_is(g, 3, "[]");
	/* The source learns which router carries the prefix for it. */
	filter_is(g, 5, "[{\"Via\":{\"Dst\":\"10.1.0.0/16\",\"Routers\":[{\"Addrs\":[\"100.64.0.5/32\"],"
	    "\"Route\":\"10.1.0.0/16\"}]}}]");
	/* A narrower destination: the router carries only that part. */
	filter_is("{\"src\": [\"tag:client\"], \"dst\": [\"10.1.2.0/24\"], \"ip\": [\"*\"], "
	    "\"via\": [\"tag:ra\", \"tag:rb\"]}", 5,
	    "[{\"Via\":{\"Dst\":\"10.1.2.0/24\",\"Routers\":[{\"Addrs\":[\"100.64.0.4/32\"],"
	    "\"Route\":\"10.1.2.0/24\"},{\"Addrs\":[\"100.64.0.5/32\"],\"Route\":\"10.1.2.0/24\"}]}}]");
	/* autogroup:internet via tag:ra: the exit node ra only. */
	filter_is("{\"src\": [\"tag:client\"], \"dst\": [\"autogroup:internet\"], \"ip\": [\"*\"], "
	    "\"via\": [\"tag:ra\"]}", 5,
	    "[{\"Via\":{\"Dst\":\"autogroup:internet\",\"Routers\":[{\"Addrs\":[\"100.64.0.4/32\"],"
	    "\"Route\":\"0.0.0.0/0\"}]}}]");
	/* Visibility: the source sees router B, not router A. */
	snprintf(text, sizeof(text), HEAD "\"grants\": [%s]}", g);
	p = load_ok(text);
	mknodes(n);
	r = policy_compile(p, n, 6);
	ck_assert(policy_result_can_see(r, 5, 4));
	ck_assert(!policy_result_can_see(r, 5, 3));
	policy_result_free(r);
	/* explain says via decides */
	{
		struct buf b;

		buf_init(&b, 2048);
		ck_assert_int_eq(policy_explain(p, "tag:client", "10.1.9.9:80", NULL, &b), 1);
		ck_assert_ptr_nonnull(strstr(buf_cstr(&b), "grant #1 at line 3"));
		ck_assert_ptr_nonnull(strstr(buf_cstr(&b), "via decides the router"));
		ck_assert_ptr_nonnull(strstr(buf_cstr(&b), "tag:rb"));
		buf_cleanup(&b);
	}
	policy_free(p);
	/* Without via, both routers get it. */
	s = filter_of(HEAD "\"grants\": [{\"src\": [\"tag:client\"], \"dst\": [\"lan\"], \"ip\": [\"tcp:80\"]}]}", 3);
	ck_assert_ptr_nonnull(strstr(s, "10.1.0.0/16"));
	free(s);
}
END_TEST

START_TEST(test_selectors)
{
	/* user:*@domain: alice (example.com), not bob (example.org) */
	filter_is("{\"src\": [\"user:*@example.com\"], \"dst\": [\"tag:server\"], \"ip\": [\"22\"]}", 2,
	    "[{\"IPProto\":[6,17,1,58],\"Srcs\":[\"100.64.0.1/32\"],\"Dsts\":[" DST_SRV(22, 22) "]}]");
	/* autogroup:danger-all: every address */
	filter_is("{\"src\": [\"autogroup:danger-all\"], \"dst\": [\"tag:server\"], \"ip\": [\"tcp:22\"]}", 2,
	    "[{\"IPProto\":[6],\"Srcs\":[\"0.0.0.0/0\",\"::/0\"],\"Dsts\":[" DST_SRV(22, 22) "]}]");
	/* autogroup:tagged / member */
	filter_is("{\"src\": [\"autogroup:member\"], \"dst\": [\"autogroup:tagged\"], \"ip\": [\"tcp:1\"]}", 2,
	    "[{\"IPProto\":[6],\"Srcs\":[\"100.64.0.1/32\",\"100.64.0.2/32\"],\"Dsts\":[" DST_SRV(1, 1) "]}]");
	/* autogroup:self */
	filter_is("{\"src\": [\"autogroup:member\"], \"dst\": [\"autogroup:self\"], \"ip\": [\"tcp:2\"]}", 0,
	    "[{\"IPProto\":[6],\"Srcs\":[\"100.64.0.1/32\"],\"Dsts\":[{\"Net\":\"100.64.0.1/32\","
	    "\"Ports\":{\"First\":2,\"Last\":2}}]}]");
	/* autogroup:internet: on the exit node */
	{
		char *s = filter_of(HEAD "\"grants\": [{\"src\": [\"tag:client\"], \"dst\": [\"autogroup:internet\"], "
		    "\"ip\": [\"tcp:443\"]}]}", 3);

		ck_assert_ptr_nonnull(strstr(s, "{\"Net\":\"8.0.0.0/7\",\"Ports\":{\"First\":443,\"Last\":443}}"));
		free(s);
	}
}
END_TEST

START_TEST(test_grant_errors)
{
#define G(x) HEAD "\"grants\": [\n" x "]}"
	load_bad(G("{\"src\": [\"*\"], \"dst\": [\"*\"]}"), 4, 1, "ip and app can not both be empty");
	load_bad(G("{\"src\": [\"*\"], \"dst\": [\"*\"], \"ip\": []}"), 4, 1, "ip and app can not both be empty");
	load_bad(G("{\"src\": [\"*\"], \"dst\": [\"*\"], \"app\": {}}"), 4, 1, "ip and app can not both be empty");
	load_bad(G("{\"src\": [\"*\"], \"dst\": [\"*\"], \"ip\": [\"icmp\"]}"), 4, 37,
	    "port range \"icmp\": invalid first integer");
	load_bad(G("{\"src\": [\"*\"], \"dst\": [\"*\"], \"ip\": [\"tcp:0\"]}"), 4, 37,
	    "first port must be >0, or use '*' for wildcard");
	load_bad(G("{\"src\": [\"*\"], \"dst\": [\"*\"], \"ip\": [\"tcp:80:90\"]}"), 4, 37,
	    "expected only one colon");
	load_bad(G("{\"src\": [\"*\"], \"dst\": [\"*\"], \"ip\": [\"icmp:22\"]}"), 4, 37,
	    "does not support specific ports");
	load_bad(G("{\"src\": [\"*\"], \"dst\": [\"*\"], \"ip\": [\"bogus:22\"]}"), 4, 37, "invalid protocol");
	load_bad(G("{\"src\": [\"*\"], \"dst\": [\"0.0.0.0/0\"], \"ip\": [\"*\"]}"), 4, 24,
	    "to allow all IP addresses, use \"*\" or \"autogroup:internet\"");
	load_bad(G("{\"src\": [\"*\"], \"dst\": [\"::/0\"], \"ip\": [\"*\"]}"), 4, 24, "to allow all IP addresses");
	load_bad(G("{\"src\": [\"*\"], \"dst\": [\"tag:server:22\"], \"ip\": [\"*\"]}"), 4, 24, "a grant's dst has no ports");
	load_bad(G("{\"src\": [\"*\"], \"dst\": [\"tag:nope\"], \"ip\": [\"*\"]}"), 4, 24, "tag not found");
	load_bad(G("{\"src\": [\"*\"], \"dst\": [\"lan:22\"], \"ip\": [\"*\"]}"), 4, 24, "a grant's dst has no ports");
	load_bad(G("{\"src\": [\"*\"], \"dst\": [\"autogroup:self\"], \"ip\": [\"*\"]}"), 4, 10,
	    "autogroup:self can only be used with users, groups, or supported autogroups");
	load_bad(G("{\"src\": [\"autogroup:self\"], \"dst\": [\"*\"], \"ip\": [\"*\"]}"), 4, 10,
	    "not valid on the src side");
	load_bad(G("{\"src\": [\"*\"], \"dst\": [\"autogroup:danger-all\"], \"ip\": [\"*\"]}"), 4, 24,
	    "cannot use autogroup:danger-all as a dst");
	load_bad(G("{\"src\": [\"tag:nope\"], \"dst\": [\"*\"], \"ip\": [\"*\"]}"), 4, 10,
	    "src=tag not found: \"tag:nope\"");
	load_bad(G("{\"src\": [\"*\"], \"dst\": [\"lan\"], \"ip\": [\"*\"], \"via\": [\"autogroup:tagged\"]}"), 4, 53,
	    "via can only be a tag");
	load_bad(G("{\"src\": [\"*\"], \"dst\": [\"lan\"], \"ip\": [\"*\"], \"via\": [\"tag:nope\"]}"), 4, 53,
	    "tag \"tag:nope\" not found");
	load_bad(G("{\"src\": [\"*\"], \"dst\": [\"*\"], \"app\": {\"https://x.com/cap\": [{}]}}"), 4, 38,
	    "capability name must have the form {domain}/{path}");
	load_bad(G("{\"src\": [\"*\"], \"dst\": [\"*\"], \"app\": {\"nocap\": [{}]}}"), 4, 38,
	    "must have the form");
	load_bad(G("{\"src\": [\"*\"], \"dst\": [\"*\"], \"app\": {\"tailscale.com/cap/funnel\": [{}]}}"), 4, 38,
	    "capability name must not be in the tailscale.com domain");
	load_bad(G("{\"src\": [\"*\"], \"dst\": [\"*\"], \"app\": {\"example.com/cap/x\": [1]}}"), 4, 60,
	    "each value must be a JSON object");
	load_bad(G("{\"src\": [\"*\"], \"dst\": [\"autogroup:internet\"], \"app\": {\"example.com/c\": [{}]}}"), 4, 54,
	    "cannot use app grants with autogroup:internet");
	load_bad(G("{\"src\": [\"*\"], \"dst\": [\"*\"], \"ip\": [\"*\"], \"srcPosture\": [\"posture:x\"]}"), 4, 43,
	    "srcPosture is not supported");
	load_bad(G("{\"src\": [\"*\"], \"dst\": [\"*\"], \"ip\": [\"*\"], \"dts\": []}"), 4, 43,
	    "unknown key \"dts\" in a grant (did you mean \"dst\"?)");
	load_bad(G("{\"dst\": [\"*\"], \"ip\": [\"*\"]}"), 4, 1, "grant has no \"src\"");
	load_bad(G("\"x\""), 4, 1, "a grant must be an object");
	load_bad(HEAD "\"grants\": {}}", 3, 11, "grants must be an array");
#undef G
	/* Accepted forms Tailscale accepts too. */
	policy_free(load_ok(HEAD "\"grants\": [{\"src\": [], \"dst\": [\"*\"], \"app\": {\"example.com/cap/x\": []}},"
	    "{\"src\": [\"*\"], \"dst\": [], \"ip\": [\"*\"]},"
	    "{\"src\": [\"*\"], \"dst\": [\"*\"], \"app\": {\"tailscale.com/cap/webui\": [{}], "
	    "\"my-co.internal/a/b/c\": [{\"deep\": {\"x\": [1, 2]}}]}}]}"));
	policy_free(load_ok("{\"grants\": []}"));
	{
		struct policy *p = load_ok(HEAD "\"acls\": [{\"action\": \"accept\", \"src\": [\"*\"], "
		    "\"dst\": [\"*:22\"]}], \"grants\": [{\"src\": [\"*\"], \"dst\": [\"*\"], "
		    "\"ip\": [\"tcp:1\", \"udp:2\"], \"app\": {\"example.com/c\": [{}]}}]}");

		ck_assert_uint_eq(policy_rule_count(p), 1);
		ck_assert_uint_eq(policy_grant_count(p), 1);
		policy_free(p);
	}
}
END_TEST

START_TEST(test_tests_block)
{
	struct policy_diags d;
	struct policy *p = NULL;
	const char *ok = HEAD "\"grants\": [{\"src\": [\"tag:client\"], \"dst\": [\"tag:server\"], \"ip\": [\"tcp:22\"]}],"
	    "\"tests\": [{\"src\": \"tag:client\", \"accept\": [\"tag:server:22\"], \"deny\": [\"tag:server:23\"]}]}";
	const char *bad = HEAD "\"grants\": [{\"src\": [\"tag:client\"], \"dst\": [\"tag:server\"], \"ip\": [\"tcp:22\"]}],"
	    "\"tests\": [{\"src\": \"tag:client\", \"accept\": [\"tag:server:80\"]}]}";

	p = load_ok(ok);
	policy_diags_init(&d);
	ck_assert_int_eq(policy_run_tests(p, NULL, 0, &d), 0);
	policy_diags_cleanup(&d);
	policy_free(p);
	p = load_ok(bad);
	policy_diags_init(&d);
	ck_assert_int_eq(policy_run_tests(p, NULL, 0, &d), ERR_UNPROCESSABLE);
	ck_assert_uint_ge(d.n, 1);
	ck_assert_ptr_nonnull(strstr(d.v[0].msg, "cannot reach \"tag:server:80\""));
	policy_diags_cleanup(&d);
	policy_free(p);
}
END_TEST

START_TEST(test_hash_follows_caps_and_via)
{
	struct policy_node n[6];
	struct policy *p1, *p2;
	struct policy_result *r1, *r2;

	mknodes(n);
	p1 = load_ok(HEAD "\"grants\": [{\"src\": [\"tag:client\"], \"dst\": [\"tag:server\"], "
	    "\"app\": {\"example.com/cap/x\": [{\"v\": 1}]}}]}");
	p2 = load_ok(HEAD "\"grants\": [{\"src\": [\"tag:client\"], \"dst\": [\"tag:server\"], "
	    "\"app\": {\"example.com/cap/x\": [{\"v\": 2}]}}]}");
	r1 = policy_compile(p1, n, 6);
	r2 = policy_compile(p2, n, 6);
	ck_assert_uint_ne(policy_result_filter_hash(r1, 2), policy_result_filter_hash(r2, 2));
	policy_result_free(r1);
	policy_result_free(r2);
	policy_free(p1);
	policy_free(p2);
	/* the via router set changes the source's hash */
	p1 = load_ok(HEAD "\"grants\": [{\"src\": [\"tag:client\"], \"dst\": [\"lan\"], \"ip\": [\"*\"], \"via\": [\"tag:ra\"]}]}");
	p2 = load_ok(HEAD "\"grants\": [{\"src\": [\"tag:client\"], \"dst\": [\"lan\"], \"ip\": [\"*\"], \"via\": [\"tag:rb\"]}]}");
	r1 = policy_compile(p1, n, 6);
	r2 = policy_compile(p2, n, 6);
	ck_assert_uint_ne(policy_result_filter_hash(r1, 5), policy_result_filter_hash(r2, 5));
	policy_result_free(r1);
	policy_result_free(r2);
	policy_free(p1);
	policy_free(p2);
}
END_TEST

Suite *
policy_grants_suite(void)
{
	Suite *s = suite_create("policy_grants");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, test_ip_forms);
	tcase_add_test(tc, test_acl_equals_grant);
	tcase_add_test(tc, test_app_grant);
	tcase_add_test(tc, test_via);
	tcase_add_test(tc, test_selectors);
	tcase_add_test(tc, test_grant_errors);
	tcase_add_test(tc, test_tests_block);
	tcase_add_test(tc, test_hash_follows_caps_and_via);
	suite_add_tcase(s, tc);
	return s;
}
