// SPDX-License-Identifier: MIT
/* policy/: loader diagnostics, tests block, explain, compiler golden output,
 * no-policy compile, hashes, autoApprovers. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "policy/policy.h"

#define S(...) #__VA_ARGS__

static const char *base_policy =
    "{\n"
    "  // who is who\n"
    "  \"groups\": {\"group:admins\": [\"alice@\"], \"group:dev\": [\"bob@example.com\", \"alice@\"]},\n"
    "  \"hosts\": {\"db\": \"100.64.0.9\", \"lan\": \"10.1.0.0/16\"},\n"
    "  \"tagOwners\": {\"tag:server\": [\"group:admins\"], \"tag:web\": [\"tag:server\"]},\n"
    "  \"acls\": [\n"
    "    {\"action\": \"accept\", \"src\": [\"group:admins\"], \"dst\": [\"*:*\"]},\n"
    "    {\"action\": \"accept\", \"src\": [\"bob@example.com\"], \"dst\": [\"tag:web:80,443\", \"db:5432\"]},\n"
    "    {\"action\": \"accept\", \"proto\": \"udp\", \"src\": [\"tag:server\"], \"dst\": [\"lan:53\"]},\n"
    "    {\"action\": \"accept\", \"src\": [\"autogroup:member\"], \"dst\": [\"autogroup:self:*\"]},\n"
    "  ],\n"
    "}\n";

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

/* Loads text that must fail with a diagnostic at line:col containing `part`. */
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
	ck_assert_uint_ge(d.n, 1);
	for (i = 0; i < d.n; i++)
		if (d.v[i].line == line && d.v[i].col == col && strstr(d.v[i].msg, part) != NULL)
			found = true;
	ck_assert_msg(found, "want %d:%d '%s', first is %d:%d '%s'", line, col, part,
	    d.v[0].line, d.v[0].col, d.v[0].msg);
	policy_diags_cleanup(&d);
}

START_TEST(test_load_ok)
{
	struct policy *p = load_ok(base_policy);

	ck_assert_uint_eq(policy_rule_count(p), 4);
	policy_free(p);
	policy_free(NULL);
	/* Case-insensitive keys and the legacy users/ports names. */
	p = load_ok("{\"ACLs\": [{\"Action\": \"accept\", \"users\": [\"*\"], \"ports\": [\"*:22\"]}]}");
	ck_assert_uint_eq(policy_rule_count(p), 1);
	policy_free(p);
	p = load_ok("{}");
	ck_assert_uint_eq(policy_rule_count(p), 0);
	policy_free(p);
}
END_TEST

START_TEST(test_load_errors)
{
	load_bad("{\"acl\": []}", 1, 2, "did you mean \"acls\"");
	load_bad("{\n  \"tagowners\": {}, \"hostz\": {}\n}", 2, 20, "did you mean \"hosts\"");
	load_bad("{\"frobnicate\": 1}", 1, 2, "unknown key \"frobnicate\"");
	load_bad("{\"acls\": [{\"action\": \"deny\", \"src\": [\"*\"], \"dst\": [\"*:*\"]}]}", 1, 22,
	    "action=\"deny\" is not supported");
	load_bad("{\"acls\": [\n {\"action\": \"accept\", \"src\": [\"group:nope\"], \"dst\": [\"*:*\"]}]}",
	    2, 31, "group not found: \"group:nope\"");
	load_bad("{\"acls\": [{\"action\": \"accept\", \"src\": [\"*\"], \"dst\": [\"tag:x:22\"]}]}", 1, 54,
	    "tag not found: \"tag:x\"");
	load_bad("{\"acls\": [{\"action\": \"accept\", \"src\": [\"*\"], \"dst\": [\"nohost:22\"]}]}", 1, 54,
	    "not a user");
	load_bad("{\"acls\": [{\"action\": \"accept\", \"src\": [\"*\"], \"dst\": [\"*:ssh\"]}]}", 1, 54,
	    "port range \"ssh\": invalid first integer");
	load_bad("{\"acls\": [{\"action\": \"accept\", \"src\": [\"*\"], \"dst\": [\"*:70000\"]}]}", 1, 54,
	    "invalid first integer");
	load_bad("{\"acls\": [{\"action\": \"accept\", \"src\": [\"*\"], \"dst\": [\"*:90-80\"]}]}", 1, 54,
	    "first is above last");
	load_bad("{\"acls\": [{\"action\": \"accept\", \"src\": [\"*\"], \"dst\": [\"10.0.0.0/33:22\"]}]}", 1, 54,
	    "invalid IP address or CIDR");
	load_bad("{\"acls\": [{\"action\": \"accept\", \"src\": [\"*\"], \"dst\": [\"10.0.0.1/8:22\"]}]}", 1, 54,
	    "invalid IP address or CIDR");
	load_bad("{\"acls\": [{\"action\": \"accept\", \"src\": [\"autogroup:self\"], \"dst\": [\"*:*\"]}]}", 1, 40,
	    "not valid on the src side");
	load_bad("{\"tagOwners\": {\"tag:c\": []}, \"acls\": [{\"action\": \"accept\", \"src\": [\"tag:c\"], "
	    "\"dst\": [\"autogroup:self:*\"]}]}", 1, 68, "autogroup:self can only be used");
	load_bad("{\"acls\": [{\"action\": \"accept\", \"proto\": \"icmp\", \"src\": [\"*\"], \"dst\": [\"*:22\"]}]}",
	    1, 71, "has no ports");
	load_bad("{\"acls\": [{\"action\": \"accept\", \"proto\": \"bogus\", \"src\": [\"*\"], \"dst\": [\"*:*\"]}]}",
	    1, 41, "unknown protocol");
	load_bad("{\"acls\": [{\"action\": \"accept\", \"src\": [\"*\"]}]}", 1, 11, "no \"dst\"");
	load_bad("{\"acls\": [{\"action\": \"accept\", \"src\": \"*\", \"dst\": [\"*:*\"]}]}", 1, 39,
	    "src must be an array");
	load_bad("{\"hosts\": {\"h\": \"300.1.1.1\"}}", 1, 17, "invalid IP address or CIDR");
	load_bad("{\"groups\": {\"admins\": []}}", 1, 13, "must be group:NAME");
	load_bad("{\"groups\": {\"group:a\": [\"alice\"]}}", 1, 25, "not a user");
	load_bad("{\"groups\": {\"group:a\": [\"group:b\"]}}", 1, 25, "cannot contain groups");
	load_bad("{\"tagOwners\": {\"tag:a\": [\"group:none\"]}}", 1, 26, "group not found");
	load_bad("{\"acls\": [}", 1, 11, "expected a value");
	load_bad("{\"tests\": [{\"src\": \"alice@\"}]}", 1, 12, "neither \"accept\" nor \"deny\"");
	load_bad("{\"tests\": [{\"accept\": [\"*:22\"]}]}", 1, 12, "no \"src\"");
	load_bad("{\"tests\": [{\"src\": \"\", \"accept\": [\"*:22\"]}]}", 1, 20, "empty");
	load_bad("{\"autoApprovers\": {\"routes\": {\"10.0.0.0/8\": [\"tag:nope\"]}}}", 1, 46, "tag not found");
	load_bad("[]", 1, 1, "must be an object");
}
END_TEST

START_TEST(test_many_problems_reported)
{
	struct policy_diags d;
	struct policy *p = NULL;
	const char *t = "{\"acls\": [{\"action\": \"accept\", \"src\": [\"group:a\", \"tag:b\"], "
	    "\"dst\": [\"x:1\", \"*:y\"]}], \"bogus\": 1}";

	policy_diags_init(&d);
	ck_assert_int_ne(policy_load(t, strlen(t), &p, &d), 0);
	ck_assert_uint_eq(d.n, 5);
	policy_diags_cleanup(&d);
}
END_TEST

static int
run_tests(const char *text, struct policy_diags *d)
{
	struct policy *p = load_ok(text);
	int r = policy_run_tests(p, NULL, 0, d);

	policy_free(p);
	return r;
}

START_TEST(test_tests_block)
{
	struct policy_diags d;
	char *t;

	policy_diags_init(&d);
	ck_assert(asprintf(&t, "%.*s\n\"tests\": [\n"
	    " {\"src\": \"alice@\", \"accept\": [\"tag:web:22\", \"100.64.0.9:5432\"]},\n"
	    " {\"src\": \"bob@example.com\", \"accept\": [\"tag:web:443\", \"db:5432\"], \"deny\": [\"tag:web:22\", \"tag:server:80\"]},\n"
	    " {\"src\": \"tag:server\", \"proto\": \"udp\", \"accept\": [\"10.1.2.3:53\"], \"deny\": [\"10.2.0.1:53\"]},\n"
	    " {\"src\": \"tag:server\", \"deny\": [\"10.1.2.3:53\"]},\n"
	    " {\"src\": \"group:dev\", \"accept\": [\"tag:web:80\"]},\n"
	    " {\"src\": \"carol@\", \"deny\": [\"tag:web:80\"], \"accept\": [\"carol@:22\"]},\n"
	    "]}", (int)(strrchr(base_policy, '}') - base_policy - 1), base_policy) > 0);
	ck_assert_int_eq(run_tests(t, &d), 0);
	ck_assert_uint_eq(d.n, 0);
	free(t);
	/* Failing tests: one diagnostic per failing destination at the test. */
	ck_assert(asprintf(&t, "%.*s\n\"tests\": [\n"
	    " {\"src\": \"bob@example.com\", \"accept\": [\"tag:web:22\", \"tag:web:80\"]},\n"
	    "  {\"src\": \"alice@\", \"deny\": [\"db:1\"]},\n"
	    " {\"src\": \"bob@example.com\", \"accept\": [\"tag:web:*\", \"10.1.0.0/16:53\", \"tag:nope:1\", \"ghost:1\"]},\n"
	    "]}", (int)(strrchr(base_policy, '}') - base_policy - 1), base_policy) > 0);
	ck_assert_int_eq(run_tests(t, &d), ERR_UNPROCESSABLE);
	ck_assert_uint_eq(d.n, 6);
	ck_assert_int_eq(d.v[0].line, 13);
	ck_assert_int_eq(d.v[0].col, 2);
	ck_assert(strstr(d.v[0].msg, "tag:web:22") != NULL);
	ck_assert(strstr(d.v[0].msg, "expected accept") != NULL);
	ck_assert_int_eq(d.v[1].line, 14);
	ck_assert_int_eq(d.v[1].col, 3);
	ck_assert(strstr(d.v[1].msg, "expected deny") != NULL);
	ck_assert(strstr(d.v[1].msg, "line 7") != NULL);
	ck_assert(strstr(d.v[2].msg, "port must be one number") != NULL);
	ck_assert(strstr(d.v[3].msg, "network") != NULL);
	ck_assert(strstr(d.v[4].msg, "tag not found") != NULL);
	ck_assert(strstr(d.v[5].msg, "not a user") != NULL);
	free(t);
	policy_diags_cleanup(&d);
}
END_TEST

START_TEST(test_explain)
{
	struct policy *p = load_ok(base_policy);
	struct buf b;

	buf_init(&b, 4096);
	ck_assert_int_eq(policy_explain(p, "bob@example.com", "tag:web:443", NULL, &b), 1);
	ck_assert_ptr_nonnull(strstr(buf_cstr(&b), "accept"));
	ck_assert_ptr_nonnull(strstr(buf_cstr(&b), "line 8"));
	buf_reset(&b);
	ck_assert_int_eq(policy_explain(p, "bob@example.com", "tag:web:22", NULL, &b), 0);
	ck_assert_ptr_nonnull(strstr(buf_cstr(&b), "deny"));
	buf_reset(&b);
	ck_assert_int_eq(policy_explain(p, "alice@", "tag:web:22", "udp", &b), 1);
	ck_assert_ptr_nonnull(strstr(buf_cstr(&b), "line 7"));
	buf_reset(&b);
	ck_assert_int_eq(policy_explain(p, "tag:server", "10.1.9.9:53", "tcp", &b), 0);
	buf_reset(&b);
	ck_assert_int_eq(policy_explain(p, "tag:server", "10.1.9.9:53", "17", &b), 1);
	buf_reset(&b);
	ck_assert_int_eq(policy_explain(p, "bob@example.com", "bob@example.com:22", NULL, &b), 1);
	ck_assert_ptr_nonnull(strstr(buf_cstr(&b), "autogroup:self"));
	buf_reset(&b);
	ck_assert_int_eq(policy_explain(p, "nobody", "tag:web:22", NULL, &b), ERR_INVALID);
	buf_reset(&b);
	ck_assert_int_eq(policy_explain(p, "alice@", "tag:web", NULL, &b), ERR_INVALID);
	buf_reset(&b);
	ck_assert_int_eq(policy_explain(NULL, "alice@", "tag:web:1", NULL, &b), 1);
	buf_cleanup(&b);
	policy_free(p);
}
END_TEST

/* A small tailnet for the compiler. */
static const char *tags_srv[] = { "tag:server" };
static const char *tags_web[] = { "tag:web" };

static void
mknodes(struct policy_node *n, struct ip_prefix *route)
{
	memset(n, 0, 5 * sizeof(*n));
	n[0].id = 1; n[0].name = "alice-laptop"; n[0].user = "alice";
	n[1].id = 2; n[1].name = "alice-phone"; n[1].user = "alice";
	n[2].id = 3; n[2].name = "bob"; n[2].user = "bob@example.com";
	n[3].id = 4; n[3].name = "srv"; n[3].tags = tags_srv; n[3].ntags = 1;
	n[4].id = 5; n[4].name = "web"; n[4].tags = tags_web; n[4].ntags = 1;
	ck_assert_int_eq(addr_parse("100.64.0.1", &n[0].ipv4), 0);
	ck_assert_int_eq(addr_parse("100.64.0.2", &n[1].ipv4), 0);
	ck_assert_int_eq(addr_parse("100.64.0.3", &n[2].ipv4), 0);
	ck_assert_int_eq(addr_parse("100.64.0.4", &n[3].ipv4), 0);
	ck_assert_int_eq(addr_parse("100.64.0.9", &n[4].ipv4), 0);
	ck_assert_int_eq(addr_parse("fd7a:115c:a1e0::1", &n[0].ipv6), 0);
	ck_assert_int_eq(addr_parse("fd7a:115c:a1e0::4", &n[3].ipv6), 0);
	ck_assert_int_eq(prefix_parse("10.1.0.0/16", false, route), 0);
	n[3].routes = route;
	n[3].nroutes = 1;
}

static char *
filter_str(const struct policy_result *r, size_t i)
{
	json_t *f = policy_result_filter(r, i);
	char *s = json_dumps(f, JSON_COMPACT);

	json_decref(f);
	return s;
}

START_TEST(test_compile_golden)
{
	struct policy *p = load_ok(base_policy);
	struct policy_node n[5];
	struct ip_prefix route;
	struct policy_result *r;
	size_t *peers;
	char *s;

	mknodes(n, &route);
	r = policy_compile(p, n, 5);
	ck_assert_ptr_nonnull(r);
	/* alice (admins) reaches everything; bob reaches web and db (= web's IP). */
	ck_assert(policy_result_can_see(r, 0, 3));
	ck_assert(policy_result_can_see(r, 3, 0));
	ck_assert(policy_result_can_see(r, 2, 4));
	ck_assert(!policy_result_can_see(r, 2, 3));
	ck_assert(!policy_result_can_see(r, 3, 4));
	ck_assert(!policy_result_can_see(r, 0, 0));
	ck_assert_int_eq(policy_result_peers(r, 2, &peers), 3);	/* alice x2 (admins), web */
	ck_assert_uint_eq(peers[0], 0);
	ck_assert_uint_eq(peers[1], 1);
	ck_assert_uint_eq(peers[2], 4);
	free(peers);
	/* web: admins' rule (dst *), bob's two dsts (tag:web ports + db host). */
	s = filter_str(r, 4);
	ck_assert_str_eq(s,
	    "[{\"IPProto\":[6,17,1,58],\"Srcs\":[\"100.64.0.1/32\",\"100.64.0.2/32\",\"fd7a:115c:a1e0::1/128\"],"
	    "\"Dsts\":[{\"Net\":\"0.0.0.0/0\",\"Ports\":{\"First\":0,\"Last\":65535}},"
	    "{\"Net\":\"::/0\",\"Ports\":{\"First\":0,\"Last\":65535}}]},"
	    "{\"IPProto\":[6,17,1,58],\"Srcs\":[\"100.64.0.3/32\"],"
	    "\"Dsts\":[{\"Net\":\"100.64.0.9/32\",\"Ports\":{\"First\":80,\"Last\":80}},"
	    "{\"Net\":\"100.64.0.9/32\",\"Ports\":{\"First\":443,\"Last\":443}},"
	    "{\"Net\":\"100.64.0.9/32\",\"Ports\":{\"First\":5432,\"Last\":5432}}]}]");
	free(s);
	/* srv routes 10.1.0.0/16: gets the udp rule from itself (tag:server src). */
	s = filter_str(r, 3);
	ck_assert_ptr_nonnull(strstr(s, "{\"IPProto\":[17],\"Srcs\":[\"100.64.0.4/32\",\"fd7a:115c:a1e0::4/128\"],"
	    "\"Dsts\":[{\"Net\":\"10.1.0.0/16\",\"Ports\":{\"First\":53,\"Last\":53}}]}"));
	free(s);
	/* alice's laptop: autogroup:self from both her devices, adjacent /32s merged. */
	s = filter_str(r, 0);
	ck_assert_ptr_nonnull(strstr(s, "{\"IPProto\":[6,17,1,58],\"Srcs\":[\"100.64.0.1/32\",\"100.64.0.2/32\","
	    "\"fd7a:115c:a1e0::1/128\"],\"Dsts\":[{\"Net\":\"100.64.0.1/32\",\"Ports\":{\"First\":0,\"Last\":65535}},"
	    "{\"Net\":\"fd7a:115c:a1e0::1/128\""));
	free(s);
	/* bob: only self (his only device) and admins' rule. */
	ck_assert(policy_result_can_see(r, 0, 1));
	policy_result_free(r);
	policy_free(p);
}
END_TEST

START_TEST(test_compile_no_policy)
{
	struct policy_node n[5];
	struct ip_prefix route;
	struct policy_result *r;
	size_t i, j;
	char *s;

	mknodes(n, &route);
	r = policy_compile(NULL, n, 5);
	ck_assert_ptr_nonnull(r);
	for (i = 0; i < 5; i++)
		for (j = 0; j < 5; j++)
			ck_assert(policy_result_can_see(r, i, j) == (i != j));
	s = filter_str(r, 2);
	ck_assert_str_eq(s,
	    "[{\"IPProto\":[6,17,1,58],\"Srcs\":[\"10.1.0.0/16\",\"100.64.0.0/11\",\"100.96.0.0/12\","
	    "\"100.112.0.0/15\",\"100.114.0.0/16\",\"100.115.0.0/18\",\"100.115.64.0/20\",\"100.115.80.0/21\","
	    "\"100.115.88.0/22\",\"100.115.94.0/23\",\"100.115.96.0/19\",\"100.115.128.0/17\",\"100.116.0.0/14\","
	    "\"100.120.0.0/13\",\"fd7a:115c:a1e0::/48\"],"
	    "\"Dsts\":[{\"Net\":\"0.0.0.0/0\",\"Ports\":{\"First\":0,\"Last\":65535}},"
	    "{\"Net\":\"::/0\",\"Ports\":{\"First\":0,\"Last\":65535}}]}]");
	free(s);
	policy_result_free(r);
	r = policy_compile(NULL, NULL, 0);
	ck_assert_ptr_nonnull(r);
	ck_assert(!policy_result_can_see(r, 0, 1));
	policy_result_free(r);
	policy_result_free(NULL);
}
END_TEST

START_TEST(test_hash_changes)
{
	struct policy *p = load_ok(base_policy), *p2;
	struct policy_node n[5];
	struct ip_prefix route;
	struct policy_result *a, *b;
	char *t;
	size_t i;

	mknodes(n, &route);
	a = policy_compile(p, n, 5);
	b = policy_compile(p, n, 5);
	for (i = 0; i < 5; i++)
		ck_assert_uint_eq(policy_result_hash(a, i), policy_result_hash(b, i));
	policy_result_free(b);
	/* bob may now also reach srv on 22: srv's and bob's results change, the
	 * others' do not. */
	ck_assert(asprintf(&t, "%.*s,\n\"acls\": [{\"action\": \"accept\", \"src\": [\"bob@example.com\"], "
	    "\"dst\": [\"tag:server:22\"]}]}", (int)(strstr(base_policy, ",\n  \"acls\"") - base_policy),
	    base_policy) > 0);
	p2 = load_ok(t);
	b = policy_compile(p2, n, 5);
	ck_assert_uint_ne(policy_result_hash(a, 3), policy_result_hash(b, 3));
	ck_assert_uint_ne(policy_result_hash(a, 2), policy_result_hash(b, 2));
	ck_assert_uint_ne(policy_result_filter_hash(a, 3), policy_result_filter_hash(b, 3));
	policy_result_free(b);
	/* Same policy, web's address changes: only nodes whose filter names it
	 * (web itself, by its own address) or who see web change. */
	b = policy_compile(p, n, 5);
	ck_assert_int_eq(addr_parse("100.64.0.10", &n[4].ipv4), 0);
	policy_result_free(b);
	b = policy_compile(p, n, 5);
	ck_assert_uint_ne(policy_result_filter_hash(a, 4), policy_result_filter_hash(b, 4));
	ck_assert_uint_eq(policy_result_filter_hash(a, 2), policy_result_filter_hash(b, 2));
	policy_result_free(a);
	policy_result_free(b);
	policy_free(p2);
	policy_free(p);
	free(t);
}
END_TEST

START_TEST(test_auto_approvers)
{
	struct policy *p = load_ok(
	    "{\"groups\": {\"group:net\": [\"alice@\"]}, \"tagOwners\": {\"tag:router\": [], \"tag:exit\": []},"
	    " \"autoApprovers\": {\"routes\": {\"10.0.0.0/8\": [\"tag:router\", \"group:net\"]},"
	    " \"exitNode\": [\"tag:exit\"]}}");
	const char *tr[] = { "tag:router" }, *te[] = { "tag:exit" };
	struct policy_node a = { .id = 1, .user = "alice" }, r = { .id = 2, .tags = tr, .ntags = 1 },
	    e = { .id = 3, .tags = te, .ntags = 1 }, b = { .id = 4, .user = "bob" };
	struct ip_prefix sub, wide, ex;

	ck_assert_int_eq(prefix_parse("10.1.0.0/16", false, &sub), 0);
	ck_assert_int_eq(prefix_parse("0.0.0.0/1", false, &wide), 0);
	ck_assert_int_eq(prefix_parse("0.0.0.0/0", false, &ex), 0);
	ck_assert(policy_auto_approves(p, &r, &sub));
	ck_assert(policy_auto_approves(p, &a, &sub));
	ck_assert(!policy_auto_approves(p, &b, &sub));
	ck_assert(!policy_auto_approves(p, &r, &wide));
	ck_assert(!policy_auto_approves(p, &r, &ex));
	ck_assert(policy_auto_approves(p, &e, &ex));
	ck_assert(!policy_auto_approves(NULL, &e, &ex));
	policy_free(p);
}
END_TEST

START_TEST(test_bounded_inputs)
{
	/* A /8 destination and a giant port list stay cheap. */
	struct policy_diags d;
	struct policy *p;
	char *t, *ports;
	size_t i, at = 0;

	ports = malloc(1001 * 7);
	for (i = 0; i < 1001; i++)
		at += (size_t)sprintf(ports + at, "%s%zu", i ? "," : "", i + 1);
	ck_assert(asprintf(&t, "{\"acls\": [{\"action\": \"accept\", \"src\": [\"*\"], \"dst\": [\"10.0.0.0/8:%s\"]}]}",
	    ports) > 0);
	policy_diags_init(&d);
	ck_assert_int_ne(policy_load(t, strlen(t), &p, &d), 0);
	ck_assert_ptr_nonnull(strstr(d.v[0].msg, "too many ports"));
	policy_diags_cleanup(&d);
	free(t);
	p = load_ok("{\"acls\": [{\"action\": \"accept\", \"src\": [\"0.0.0.0/0\"], \"dst\": [\"0.0.0.0/0:*\", \"::/0:*\"]}]}");
	{
		struct policy_node n[5];
		struct ip_prefix route;
		struct policy_result *r;
		char *s;

		mknodes(n, &route);
		r = policy_compile(p, n, 5);
		s = filter_str(r, 0);
		ck_assert_str_eq(s, "[{\"IPProto\":[6,17,1,58],\"Srcs\":[\"0.0.0.0/0\"],"
		    "\"Dsts\":[{\"Net\":\"0.0.0.0/0\",\"Ports\":{\"First\":0,\"Last\":65535}},"
		    "{\"Net\":\"::/0\",\"Ports\":{\"First\":0,\"Last\":65535}}]}]");
		free(s);
		policy_result_free(r);
	}
	policy_free(p);
	free(ports);
}
END_TEST

Suite *
policy_suite(void)
{
	Suite *s = suite_create("policy");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, test_load_ok);
	tcase_add_test(tc, test_load_errors);
	tcase_add_test(tc, test_many_problems_reported);
	tcase_add_test(tc, test_tests_block);
	tcase_add_test(tc, test_explain);
	tcase_add_test(tc, test_compile_golden);
	tcase_add_test(tc, test_compile_no_policy);
	tcase_add_test(tc, test_hash_changes);
	tcase_add_test(tc, test_auto_approvers);
	tcase_add_test(tc, test_bounded_inputs);
	suite_add_tcase(s, tc);
	return s;
}
