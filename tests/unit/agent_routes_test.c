// SPDX-License-Identifier: MIT
/* client-agent/routes: route flags, which allowed IPs a peer gets, and the
 * host commands for routes, rules, forwarding and masquerading (recorded
 * through fake ops, nothing is changed on the host). */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "client-agent/routes.h"
#include "common/util.h"

/* ---- fake host ---- */

struct fake {
	char log[16384];
	size_t n;			/* commands run */
	char fwd4[8], fwd6[8];
	bool sysctl_ro;			/* writes fail with EROFS */
	const char *fail_prefix;	/* commands starting with this fail */
};

static int
fake_run(void *ctx, const char *const argv[], char *err, size_t errlen)
{
	struct fake *f = ctx;
	char line[512] = "";

	for (size_t i = 0; argv[i]; i++)
		snprintf(line + strlen(line), sizeof(line) - strlen(line), "%s%s", i ? " " : "",
		    argv[i]);
	snprintf(f->log + strlen(f->log), sizeof(f->log) - strlen(f->log), "%s\n", line);
	f->n++;
	if (f->fail_prefix && strncmp(line, f->fail_prefix, strlen(f->fail_prefix)) == 0) {
		snprintf(err, errlen, "Operation not permitted");
		return ERR_IO;
	}
	/* "rule del" succeeds once per call in a real host only while rules
	 * exist; here it always fails so the delete loops end at once. */
	if (strstr(line, " rule del ") || strstr(line, "nft delete"))
		return ERR_IO;
	return 0;
}

static int
fake_get(void *ctx, const char *path, char *val, size_t len)
{
	struct fake *f = ctx;

	str_copy(val, strstr(path, "ipv6") ? f->fwd6 : f->fwd4, len);
	return 0;
}

static int
fake_set(void *ctx, const char *path, const char *val)
{
	struct fake *f = ctx;

	if (f->sysctl_ro) {
		errno = EROFS;
		return ERR_IO;
	}
	str_copy(strstr(path, "ipv6") ? f->fwd6 : f->fwd4, val, sizeof(f->fwd4));
	return 0;
}

static struct fake F;
static struct routes_os st;

static void
setup(void)
{
	memset(&F, 0, sizeof(F));
	strcpy(F.fwd4, "0");
	strcpy(F.fwd6, "0");
	routes_os_init(&st, "wm0");
	st.ops.run = fake_run;
	st.ops.sysctl_get = fake_get;
	st.ops.sysctl_set = fake_set;
	st.ops.ctx = &F;
}

static void
clear_log(void)
{
	F.log[0] = 0;
	F.n = 0;
}

static struct ip_prefix
P(const char *s)
{
	struct ip_prefix p;

	ck_assert_int_eq(prefix_parse(s, false, &p), 0);
	return p;
}

static struct ip_addr
A(const char *s)
{
	struct ip_addr a;

	ck_assert_int_eq(addr_parse(s, &a), 0);
	return a;
}

/* ---- flags ---- */

START_TEST(parse_list)
{
	struct ip_prefix out[4];
	size_t n;
	char why[256];

	ck_assert_int_eq(routes_parse_list("192.0.2.0/24,2001:db8::/64", out, 4, &n, why,
	    sizeof(why)), 0);
	ck_assert_uint_eq(n, 2);
	ck_assert_int_eq(out[0].bits, 24);
	ck_assert_int_eq(out[1].addr.family, AF_INET6);
	ck_assert_int_eq(routes_parse_list("192.0.2.1/24", out, 4, &n, why, sizeof(why)),
	    ERR_INVALID);
	ck_assert_ptr_nonnull(strstr(why, "host bits"));
	ck_assert_int_eq(routes_parse_list("0.0.0.0/0", out, 4, &n, why, sizeof(why)), ERR_INVALID);
	ck_assert_ptr_nonnull(strstr(why, "--advertise-exit-node"));
	ck_assert_int_eq(routes_parse_list("192.0.2.0/24,192.0.2.0/24", out, 4, &n, why,
	    sizeof(why)), ERR_INVALID);
	ck_assert_ptr_nonnull(strstr(why, "twice"));
	ck_assert_int_eq(routes_parse_list("192.0.2.7", out, 4, &n, why, sizeof(why)), ERR_INVALID);
	ck_assert_int_eq(routes_parse_list("a,b,c,d,e", out, 4, &n, why, sizeof(why)), ERR_INVALID);
	ck_assert_int_eq(routes_parse_list("192.0.2.0/28,192.0.2.16/28,192.0.2.32/28,"
	    "192.0.2.48/28,192.0.2.64/28", out, 4, &n, why, sizeof(why)), ERR_INVALID);
	ck_assert_ptr_nonnull(strstr(why, "at most"));
	ck_assert_int_eq(routes_parse_list("", out, 4, &n, why, sizeof(why)), 0);
	ck_assert_uint_eq(n, 0);
}
END_TEST

START_TEST(prefs_json)
{
	struct routes_prefs p;
	char why[256], *s;
	json_t *j = json_loads("{\"advertise_routes\":[\"192.0.2.240/28\"],"
	    "\"advertise_exit_node\":true,\"accept_routes\":true,\"exit_node\":\"r1\","
	    "\"exit_node_allow_lan_access\":true}", 0, NULL), *adv, *back;

	ck_assert_int_eq(routes_prefs_from_json(j, &p, why, sizeof(why)), 0);
	ck_assert_uint_eq(p.nadvertise, 1);
	ck_assert(p.advertise_exit && p.accept_routes && p.exit_allow_lan);
	ck_assert_str_eq(p.exit_node, "r1");
	adv = routes_advertised_json(&p);
	s = json_dumps(adv, JSON_COMPACT);
	ck_assert_str_eq(s, "[\"192.0.2.240/28\",\"0.0.0.0/0\",\"::/0\"]");
	free(s);
	json_decref(adv);
	back = routes_prefs_to_json(&p);
	ck_assert(json_equal(back, j));
	json_decref(back);
	json_decref(j);

	j = json_loads("{\"exit_node_allow_lan_access\":true}", 0, NULL);
	ck_assert_int_eq(routes_prefs_from_json(j, &p, why, sizeof(why)), ERR_INVALID);
	ck_assert_ptr_nonnull(strstr(why, "needs --exit-node"));
	json_decref(j);
	j = json_loads("{\"advertise_routes\":\"192.0.2.0/24\"}", 0, NULL);
	ck_assert_int_eq(routes_prefs_from_json(j, &p, why, sizeof(why)), ERR_INVALID);
	json_decref(j);
	j = json_loads("{\"advertise_routes\":[\"192.0.2.0/24\",\"192.0.2.0/24\"]}", 0, NULL);
	ck_assert_int_eq(routes_prefs_from_json(j, &p, why, sizeof(why)), ERR_INVALID);
	json_decref(j);
	j = json_loads("{\"advertise_routes\":[7]}", 0, NULL);
	ck_assert_int_eq(routes_prefs_from_json(j, &p, why, sizeof(why)), ERR_INVALID);
	json_decref(j);
	/* nothing set: all off, nothing advertised */
	j = json_object();
	ck_assert_int_eq(routes_prefs_from_json(j, &p, why, sizeof(why)), 0);
	adv = routes_advertised_json(&p);
	ck_assert_uint_eq(json_array_size(adv), 0);
	json_decref(adv);
	json_decref(j);
}
END_TEST

/* ---- allowed IPs ---- */

START_TEST(peer_allowed)
{
	struct ip_prefix al[] = { P("100.64.0.2/32"), P("fd7a:115c:a1e0::2/128"), P("0.0.0.0/0"),
				  P("192.0.2.240/28"), P("::/0") };
	struct ip_addr addrs[] = { A("100.64.0.2"), A("fd7a:115c:a1e0::2") };
	struct ip_prefix out[8];
	size_t n;

	/* default: addresses only */
	n = routes_peer_allowed(al, 5, addrs, 2, false, false, out);
	ck_assert_uint_eq(n, 2);
	ck_assert_int_eq(out[0].bits, 32);
	ck_assert_int_eq(out[1].bits, 128);
	/* --accept-routes: + the subnet, not the exit routes */
	n = routes_peer_allowed(al, 5, addrs, 2, true, false, out);
	ck_assert_uint_eq(n, 3);
	ck_assert_int_eq(out[2].bits, 28);
	/* selected exit node without --accept-routes: + both defaults, no subnet */
	n = routes_peer_allowed(al, 5, addrs, 2, false, true, out);
	ck_assert_uint_eq(n, 4);
	ck_assert(routes_is_exit(&out[2]) && routes_is_exit(&out[3]));
	/* both */
	ck_assert_uint_eq(routes_peer_allowed(al, 5, addrs, 2, true, true, out), 5);
	/* a /32 that is not the peer's address is a route */
	{
		struct ip_prefix h[] = { P("100.64.0.2/32"), P("192.0.2.242/32") };

		ck_assert_uint_eq(routes_peer_allowed(h, 2, addrs, 2, false, true, out), 1);
		ck_assert_uint_eq(routes_peer_allowed(h, 2, addrs, 2, true, false, out), 2);
	}
}
END_TEST

START_TEST(want_from_peers)
{
	struct routes_want w;
	struct ip_prefix p1[] = { P("100.64.0.2/32"), P("192.0.2.240/28"), P("0.0.0.0/0") };
	struct ip_prefix p2[] = { P("100.64.0.3/32"), P("192.0.2.240/28"), P("2001:db8::/64") };
	struct ip_addr a1[] = { A("100.64.0.2") }, a2[] = { A("100.64.0.3") };

	memset(&w, 0, sizeof(w));
	routes_want_add_peer(&w, p1, 3, a1, 1);
	routes_want_add_peer(&w, p2, 3, a2, 1);
	ck_assert_uint_eq(w.nsubnets, 2);	/* deduplicated, no addresses */
	ck_assert(w.exit4);
	ck_assert(!w.exit6);
}
END_TEST

/* ---- host commands ---- */

START_TEST(apply_subnets)
{
	struct routes_want w;

	memset(&w, 0, sizeof(w));
	w.subnets[0] = P("192.0.2.240/28");
	w.nsubnets = 1;
	ck_assert_int_eq(routes_os_apply(&st, &w), 0);
	/* the first apply clears what an earlier run may have left */
	ck_assert_ptr_nonnull(strstr(F.log, "ip -4 rule del pref 5710\n"));
	ck_assert_ptr_nonnull(strstr(F.log, "ip -4 route flush table 57\n"));
	ck_assert_ptr_nonnull(strstr(F.log, "nft delete table inet wiremesh\n"));
	ck_assert_ptr_nonnull(strstr(F.log, "ip -4 route replace 192.0.2.240/28 dev wm0 table 57\n"));
	ck_assert_ptr_nonnull(strstr(F.log, "ip -4 rule add pref 5710 fwmark 0x570000/0xff0000 "
	    "lookup main\n"));
	ck_assert_ptr_nonnull(strstr(F.log, "ip -4 rule add pref 5730 lookup main "
	    "suppress_prefixlength 0\n"));
	ck_assert_ptr_nonnull(strstr(F.log, "ip -4 rule add pref 5770 lookup 57\n"));
	ck_assert_ptr_null(strstr(F.log, "ip -6 rule add"));
	ck_assert_ptr_null(strstr(F.log, "ip_forward"));
	ck_assert_str_eq(F.fwd4, "0");
	/* the same again: nothing to do */
	clear_log();
	ck_assert_int_eq(routes_os_apply(&st, &w), 0);
	ck_assert_uint_eq(F.n, 0);
	/* route withdrawn: deleted, rules go */
	w.nsubnets = 0;
	ck_assert_int_eq(routes_os_apply(&st, &w), 0);
	ck_assert_ptr_nonnull(strstr(F.log, "ip -4 route del 192.0.2.240/28 dev wm0 table 57\n"));
	ck_assert_ptr_nonnull(strstr(F.log, "ip -4 rule del pref 5770\n"));
	ck_assert_ptr_null(strstr(F.log, "rule add"));
}
END_TEST

START_TEST(apply_exit)
{
	struct routes_want w;

	memset(&w, 0, sizeof(w));
	w.exit4 = w.exit6 = true;
	ck_assert_int_eq(routes_os_apply(&st, &w), 0);
	ck_assert_ptr_nonnull(strstr(F.log, "ip -4 route replace default dev wm0 table 57\n"));
	ck_assert_ptr_nonnull(strstr(F.log, "ip -6 route replace default dev wm0 table 57\n"));
	ck_assert_ptr_nonnull(strstr(F.log, "ip -6 rule add pref 5710 fwmark"));
	/* without LAN access the LAN goes through the exit node: no main rule */
	ck_assert_ptr_null(strstr(F.log, "suppress_prefixlength"));
	clear_log();
	w.allow_lan = true;
	ck_assert_int_eq(routes_os_apply(&st, &w), 0);
	ck_assert_ptr_nonnull(strstr(F.log, "ip -4 rule add pref 5730 lookup main "
	    "suppress_prefixlength 0\n"));
	ck_assert_ptr_nonnull(strstr(F.log, "ip -6 rule add pref 5730"));
	ck_assert_ptr_null(strstr(F.log, "route replace"));	/* routes unchanged */
	ck_assert_ptr_null(strstr(F.log, "pref 5770"));	/* only the main rule changes */
	ck_assert_ptr_null(strstr(F.log, "pref 5710"));
	clear_log();
	routes_os_reset(&st);
	ck_assert_ptr_nonnull(strstr(F.log, "ip -4 route flush table 57\n"));
	ck_assert_ptr_nonnull(strstr(F.log, "ip -6 rule del pref 5770\n"));
	ck_assert(!st.exit4 && !st.exit6 && !st.rules4 && !st.rules6);
}
END_TEST

START_TEST(apply_router)
{
	struct routes_want w;

	memset(&w, 0, sizeof(w));
	w.forward4 = true;
	ck_assert_int_eq(routes_os_apply(&st, &w), 0);
	ck_assert_str_eq(F.fwd4, "1");
	ck_assert_str_eq(F.fwd6, "0");	/* only the families routed */
	ck_assert_ptr_nonnull(strstr(F.log, "nft add chain inet wiremesh postrouting { type nat "
	    "hook postrouting priority srcnat; policy accept; }\n"));
	ck_assert_ptr_nonnull(strstr(F.log, "nft add rule inet wiremesh postrouting iifname "
	    "\"wm0\" oifname != \"wm0\" masquerade\n"));
	ck_assert_ptr_null(strstr(F.log, "rule add pref"));	/* a router needs no rules */
	/* stop routing: forwarding back to what it was, NAT table gone */
	clear_log();
	w.forward4 = false;
	ck_assert_int_eq(routes_os_apply(&st, &w), 0);
	ck_assert_str_eq(F.fwd4, "0");
	ck_assert_ptr_nonnull(strstr(F.log, "nft delete table inet wiremesh\n"));
	/* forwarding already on: left on afterwards */
	strcpy(F.fwd6, "1");
	w.forward6 = true;
	ck_assert_int_eq(routes_os_apply(&st, &w), 0);
	routes_os_reset(&st);
	ck_assert_str_eq(F.fwd6, "1");
}
END_TEST

START_TEST(router_errors)
{
	struct routes_want w;

	memset(&w, 0, sizeof(w));
	w.forward4 = w.forward6 = true;
	F.sysctl_ro = true;
	F.fail_prefix = "nft add";
	ck_assert_int_eq(routes_os_apply(&st, &w), ERR_IO);
	ck_assert_ptr_nonnull(strstr(st.err, "cannot enable IPv4 forwarding "
	    "(/proc/sys/net/ipv4/ip_forward: Read-only file system)"));
	ck_assert_ptr_nonnull(strstr(st.err, "cannot enable IPv6 forwarding"));
	ck_assert_ptr_nonnull(strstr(st.err, "cannot install the nftables masquerade table "
	    "(Operation not permitted)"));
	/* fixed: the next apply succeeds and clears the error */
	F.sysctl_ro = false;
	F.fail_prefix = NULL;
	ck_assert_int_eq(routes_os_apply(&st, &w), 0);
	ck_assert_str_eq(st.err, "");
	ck_assert_str_eq(F.fwd4, "1");
	/* a failing route add is reported and retried next time */
	F.fail_prefix = "ip -4 route replace";
	memset(&w, 0, sizeof(w));
	w.subnets[0] = P("192.0.2.240/28");
	w.nsubnets = 1;
	ck_assert_int_eq(routes_os_apply(&st, &w), ERR_IO);
	ck_assert_uint_eq(st.nsubnets, 0);
	F.fail_prefix = NULL;
	clear_log();
	ck_assert_int_eq(routes_os_apply(&st, &w), 0);
	ck_assert_ptr_nonnull(strstr(F.log, "route replace 192.0.2.240/28"));
}
END_TEST

/* Via directives from a filter move a prefix to the chosen router. */
START_TEST(via_apply)
{
	json_t *f = json_loads("[{\"IPProto\":[6],\"Srcs\":[\"*\"],\"Dsts\":[]},"
	    "{\"Via\":{\"Dst\":\"10.1.0.0/16\",\"Routers\":["
	    "{\"Addrs\":[\"100.64.0.5/32\",\"fd7a:115c:a1e0::5/128\"],\"Route\":\"10.1.0.0/16\"}]}},"
	    "{\"Via\":{\"Dst\":\"autogroup:internet\",\"Routers\":["
	    "{\"Addrs\":[\"100.64.0.5/32\"],\"Route\":\"0.0.0.0/0\"}]}},"
	    "{\"Via\":{\"Dst\":\"bogus\",\"Routers\":[]}}]", 0, NULL);
	struct routes_via v[4];
	struct ip_prefix a_in[4], out[8];
	struct ip_addr a_addr, b_addr;
	size_t n;
	char s[64];

	ck_assert_ptr_nonnull(f);
	ck_assert_uint_eq(routes_via_from_filter(f, v, 4), 2);
	json_decref(f);
	ck_assert(!v[0].internet);
	ck_assert(v[1].internet);
	ck_assert_uint_eq(v[0].nr, 1);
	v[0].chosen = 0;
	ck_assert_int_eq(addr_parse("100.64.0.4", &a_addr), 0);	/* router A: primary */
	ck_assert_int_eq(addr_parse("100.64.0.5", &b_addr), 0);	/* router B: via */
	ck_assert(routes_via_is_router(&v[0], 0, &b_addr, 1));
	ck_assert(!routes_via_is_router(&v[0], 0, &a_addr, 1));
	ck_assert_int_eq(prefix_parse("100.64.0.4/32", false, &a_in[0]), 0);
	ck_assert_int_eq(prefix_parse("10.1.0.0/16", false, &a_in[1]), 0);
	ck_assert_int_eq(prefix_parse("10.2.0.0/16", false, &a_in[2]), 0);
	ck_assert_int_eq(prefix_parse("0.0.0.0/0", false, &a_in[3]), 0);
	/* Router A loses 10.1.0.0/16 and its exit route, keeps the rest. */
	n = routes_via_apply(a_in, 4, v, 2, &a_addr, 1, out, 8);
	ck_assert_uint_eq(n, 2);
	prefix_fmt(s, &out[0]);
	ck_assert_str_eq(s, "100.64.0.4/32");
	prefix_fmt(s, &out[1]);
	ck_assert_str_eq(s, "10.2.0.0/16");
	/* Router B (which the server did not make primary) gains the prefix. */
	ck_assert_int_eq(prefix_parse("100.64.0.5/32", false, &a_in[0]), 0);
	ck_assert_int_eq(prefix_parse("0.0.0.0/0", false, &a_in[1]), 0);
	n = routes_via_apply(a_in, 2, v, 2, &b_addr, 1, out, 8);
	ck_assert_uint_eq(n, 3);
	prefix_fmt(s, &out[1]);
	ck_assert_str_eq(s, "0.0.0.0/0");
	prefix_fmt(s, &out[2]);
	ck_assert_str_eq(s, "10.1.0.0/16");
	/* No directives: unchanged. */
	ck_assert_uint_eq(routes_via_apply(a_in, 2, v, 0, &b_addr, 1, out, 8), 2);
}
END_TEST

Suite *
agent_routes_suite(void)
{
	Suite *s = suite_create("agent_routes");
	TCase *tc = tcase_create("core");

	tcase_add_checked_fixture(tc, setup, NULL);
	tcase_add_test(tc, parse_list);
	tcase_add_test(tc, prefs_json);
	tcase_add_test(tc, peer_allowed);
	tcase_add_test(tc, want_from_peers);
	tcase_add_test(tc, apply_subnets);
	tcase_add_test(tc, apply_exit);
	tcase_add_test(tc, apply_router);
	tcase_add_test(tc, router_errors);
	tcase_add_test(tc, via_apply);
	suite_add_tcase(s, tc);
	return s;
}
