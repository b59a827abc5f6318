// SPDX-License-Identifier: MIT
/* client-agent/agent_netmap: map messages applied to the agent's peer table
 * and to a real WireGuard device (no TUN, no threads): a full map adds
 * peers, a later full map drops the missing ones, deltas add, change,
 * re-key, expire and remove peers, online flags follow, and the packet
 * filter is replaced (failing closed on a filter that does not parse).
 * Includes the agent's files to reach their statics. */
#include <check.h>

#include "client-agent/agent.c"
#include "client-agent/agent_cmd.c"
#include "client-agent/agent_login.c"
#include "client-agent/agent_disco.c"
#include "client-agent/agent_netmap.c"
#include "client-agent/agent_dns.c"
#include "client-agent/agent_routes.c"
#include "client-agent/control_client.c"
#include "client-agent/netcfg.c"

static struct agent *a;

static void
setup(void)
{
	uint8_t k[KEY_LEN];

	ck_assert_int_ge(sodium_init(), 0);
	a = calloc(1, sizeof(*a));
	pthread_mutex_init(&a->mu, NULL);
	pthread_mutex_init(&a->ctl_mu, NULL);
	pthread_mutex_init(&a->nc_mu, NULL);
	pthread_mutex_init(&a->in_mu, NULL);
	pthread_cond_init(&a->cond, NULL);
	pthread_cond_init(&a->in_cond, NULL);
	pthread_rwlock_init(&a->flock, NULL);
	a->tun_fd = -1;
	a->peers = calloc(AGENT_MAX_PEERS, sizeof(*a->peers));
	a->khash = calloc(KEY_HASH_SIZE, sizeof(*a->khash));
	a->ct = conntrack_new(0);
	ck_assert_int_eq(wg_device_new(-1, AGENT_MTU, 0, &a->dev), 0);
	crypto_box_keypair(a->cfg.node_pub, k);
	ck_assert_int_eq(wg_device_set_private_key(a->dev, k), 0);
}

static void
teardown(void)
{
	for (size_t i = 0; i < a->npeers; i++) {
		paths_free(a->peers[i]->paths);
		free(a->peers[i]);
	}
	wg_device_free(a->dev);
	free(a->peers);
	free(a->khash);
	free(a->derp_map_json);
	derp_map_free(a->dmap);
	free(a->filter_json);
	filter_free(a->filter);
	conntrack_free(a->ct);
	free(a);
}

static const char *
key(int n, const char *prefix)
{
	static char buf[4][KEY_STR_MAX];
	static int i;
	uint8_t k[KEY_LEN];

	memset(k, n, KEY_LEN);
	i = (i + 1) % 4;
	key_fmt(buf[i], prefix, k);
	return buf[i];
}

/* A peer object as server/nodeview.c writes it. */
static json_t *
peer(int id, int keyn, const char *ep, bool online, bool expired)
{
	char a4[32], name[16];

	snprintf(a4, sizeof(a4), "100.64.0.%d/32", id);
	snprintf(name, sizeof(name), "node%d", id);
	return json_pack("{s:i, s:s, s:s, s:[], s:[s], s:s, s:s, s:[s], s:[s], s:i, s:b, s:i, s:b}",
	    "id", id, "name", name, "user", "alice", "tags", "addresses", a4,
	    "node_key", key(keyn, "nodekey:"), "disco_key", key(keyn + 100, "discokey:"),
	    "allowed_ips", a4, "endpoints", ep, "home_derp", 0, "online", online,
	    "expires_at", 0, "expired", expired);
}

static void
full(json_t *peers, const char *filter)
{
	json_t *m = json_pack("{s:s, s:i, s:{s:i, s:s, s:s, s:[s]}, s:{s:{}}, s:o, s:o}",
	    "type", "full", "version", 1, "self", "id", 1, "name", "self", "user", "alice",
	    "addresses", "100.64.0.1/32", "derp_map", "Regions", "filter",
	    json_loads(filter, 0, NULL), "peers", peers);

	agent_on_message(a, m);
	json_decref(m);
}

static void
delta(const char *kind, json_t *payload)
{
	json_t *m = json_pack("{s:s, s:i, s:o}", "type", "delta", "version", 2, kind, payload);

	agent_on_message(a, m);
	json_decref(m);
}

static size_t
wg_peers(int want_keyn)
{
	struct wg_device_info *info;
	uint8_t k[KEY_LEN];
	size_t n, found = 0;

	memset(k, want_keyn, KEY_LEN);
	ck_assert_int_eq(wg_device_get_info(a->dev, &info), 0);
	n = info->n_peers;
	for (size_t i = 0; i < n; i++)
		if (memcmp(info->peers[i].public_key, k, KEY_LEN) == 0)
			found++;
	wg_device_info_free(info);
	return want_keyn ? found : n;
}

START_TEST(full_then_deltas)
{
	struct apeer *p;

	full(json_pack("[o, o]", peer(2, 2, "192.0.2.2:41641", true, false),
	    peer(3, 3, "192.0.2.3:41641", false, false)), "[]");
	ck_assert_int_eq(a->npeers, 2);
	ck_assert_int_eq(wg_peers(0), 2);
	ck_assert(a->have_netmap);
	ck_assert_int_eq(a->self4.b[3], 1);
	ck_assert_ptr_nonnull(a->filter);
	p = agent_find_id_locked(a, 3, NULL);
	ck_assert(!p->online);
	ck_assert_str_eq(p->name, "node3");

	/* endpoints change: same WireGuard peer, new candidates */
	delta("peer_changed", peer(2, 2, "198.51.100.9:1234", true, false));
	p = agent_find_id_locked(a, 2, NULL);
	ck_assert_int_eq(p->neps, 1);
	ck_assert_int_eq(p->eps[0].port, 1234);
	ck_assert_int_eq(wg_peers(2), 1);

	/* online flag */
	delta("online", json_pack("{s:i, s:b}", "id", 3, "online", 1));
	ck_assert(agent_find_id_locked(a, 3, NULL)->online);
	/* many flags in one message (unknown ids ignored) */
	delta("online_flags", json_pack("{s:[i,i], s:[i]}", "on", 2, 99, "off", 3));
	ck_assert(agent_find_id_locked(a, 2, NULL)->online);
	ck_assert(!agent_find_id_locked(a, 3, NULL)->online);
	delta("online_flags", json_pack("{s:[i], s:[]}", "on", 3, "off"));
	ck_assert(agent_find_id_locked(a, 3, NULL)->online);

	/* a new node key replaces the WireGuard peer */
	delta("peer_changed", peer(2, 22, "198.51.100.9:1234", true, false));
	ck_assert_int_eq(wg_peers(2), 0);
	ck_assert_int_eq(wg_peers(22), 1);
	ck_assert_ptr_nonnull(agent_find_key_locked(a, agent_find_id_locked(a, 2, NULL)->node_key));

	/* added, expired, removed */
	delta("peer_added", peer(4, 4, "192.0.2.4:41641", true, false));
	ck_assert_int_eq(wg_peers(0), 3);
	delta("peer_changed", peer(4, 4, "192.0.2.4:41641", true, true));
	ck_assert_int_eq(wg_peers(4), 0);
	ck_assert_int_eq(a->npeers, 3);
	delta("peer_removed", json_integer(3));
	ck_assert_int_eq(a->npeers, 2);
	ck_assert_ptr_null(agent_find_id_locked(a, 3, NULL));
	ck_assert_int_eq(wg_peers(3), 0);

	/* a full map without a peer drops it */
	full(json_pack("[o]", peer(2, 22, "198.51.100.9:1234", true, false)), "[]");
	ck_assert_int_eq(a->npeers, 1);
	ck_assert_int_eq(wg_peers(0), 1);
	ck_assert_int_eq(wg_peers(22), 1);
}
END_TEST

START_TEST(bad_input)
{
	/* malformed peers are skipped, the rest applied */
	json_t *bad = json_pack("{s:s, s:s}", "id", "x", "node_key", "nope");

	full(json_pack("[o, o, i]", bad, peer(5, 5, "not-an-endpoint", true, false), 7), "[]");
	ck_assert_int_eq(a->npeers, 1);
	ck_assert_int_eq(agent_find_id_locked(a, 5, NULL)->neps, 0);
	delta("peer_removed", json_string("5"));
	delta("nonsense", json_null());
	ck_assert_int_eq(a->npeers, 1);
}
END_TEST

/* "control_urls": learned from full maps and deltas (junk skipped), saved
 * in prefs.json and loaded again, handed to the control client after its
 * own URLs (duplicates and trailing slashes dropped), which stays on the
 * server in use when the list changes. */
START_TEST(learned_control_urls)
{
	char dir[] = "/tmp/wm-learn-XXXXXX", path[64], u[16][CONTROL_URL_MAX];
	struct control_keys k = { 0 };
	struct control_callbacks cb = { 0 };
	struct control *c;
	struct agent *b;
	size_t n, cur;

	ck_assert_ptr_nonnull(mkdtemp(dir));
	a->cfg.state_dir = dir;
	c = control_new("https://a.test,https://b.test/", &k, &cb);
	ck_assert_ptr_nonnull(c);
	a->ctl = c;
	full(json_array(), "[]");
	ck_assert_uint_eq(a->nlearned, 0);
	delta("control_urls", json_pack("[s, s, i, s, s, n]", "https://b.test", "https://c.test/", 5,
	    "ftp://x.test", "https://d.test"));
	ck_assert_uint_eq(a->nlearned, 3);
	n = control_urls(c, u, 16, &cur);
	ck_assert_uint_eq(n, 4);
	ck_assert_str_eq(u[0], "https://a.test");
	ck_assert_str_eq(u[1], "https://b.test");
	ck_assert_str_eq(u[2], "https://c.test");
	ck_assert_str_eq(u[3], "https://d.test");
	ck_assert_uint_eq(cur, 0);
	/* on the learned c.test; the list changes order: still on c.test */
	atomic_store(&c->cur, 2);
	delta("control_urls", json_pack("[s, s]", "https://d.test", "https://c.test"));
	n = control_urls(c, u, 16, &cur);
	ck_assert_uint_eq(n, 4);
	ck_assert_str_eq(u[cur], "https://c.test");
	/* saved, and a restarted agent has them */
	snprintf(path, sizeof(path), "%s/prefs.json", dir);
	b = calloc(1, sizeof(*b));
	b->cfg.state_dir = dir;
	prefs_load(b);
	ck_assert_uint_eq(b->nlearned, 2);
	ck_assert_str_eq(b->learned[0], "https://d.test");
	ck_assert_str_eq(b->learned[1], "https://c.test");
	free(b);
	/* another network's server: forgotten */
	agent_forget_learned_locked(a);
	ck_assert_uint_eq(a->nlearned, 0);
	a->ctl = NULL;
	control_free(c);
	unlink(path);
	rmdir(dir);
}
END_TEST

START_TEST(filter_fails_closed)
{
	uint8_t pkt[28] = { 0x45, 0, 0, 28, 0, 0, 0, 0, 64, 1, 0, 0, 100, 64, 0, 2, 100, 64, 0, 1,
			    8, 0, 0, 0, 0, 1, 0, 1 };

	full(json_pack("[]"), "[{\"Srcs\":[\"*\"],\"Dsts\":[{\"Net\":\"*\",\"Ports\":{\"First\":0,\"Last\":65535}}]}]");
	ck_assert_int_eq(filter_check_inbound(a->filter, a->ct, pkt, sizeof(pkt), 0), FILTER_ACCEPT);
	full(json_pack("[]"), "{\"not\":\"a filter\"}");
	ck_assert_ptr_nonnull(a->filter);
	ck_assert_int_eq(filter_check_inbound(a->filter, a->ct, pkt, sizeof(pkt), 0),
	    FILTER_DROP_POLICY);
}
END_TEST

Suite *agent_netmap_suite(void);

Suite *
agent_netmap_suite(void)
{
	Suite *s = suite_create("agent_netmap");
	TCase *tc = tcase_create("core");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, full_then_deltas);
	tcase_add_test(tc, bad_input);
	tcase_add_test(tc, filter_fails_closed);
	tcase_add_test(tc, learned_control_urls);
	suite_add_tcase(s, tc);
	return s;
}
