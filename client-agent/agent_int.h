/* SPDX-License-Identifier: MIT */
/*
 * Internals shared by the agent's files (not an API): the agent state, its
 * peers and relay connections, and the functions the files call across.
 * Locking rules are in agent.h; "_locked" functions want a->mu held.
 *
 *   agent.c         helpers, prefs, relay connections, engine hooks, TUN
 *                   reader, lifecycle, local API dispatch
 *   agent_disco.c   disco messages, the loop (path timers, relay cleanup),
 *                   endpoints and netcheck
 *   agent_netmap.c  map messages: self, peers, DERP map, filter
 *   agent_cmd.c     up/down/reconnect and the local API commands
 *   agent_login.c   interactive login (up without an auth key)
 */
#ifndef WM_AGENT_INT_H
#define WM_AGENT_INT_H

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <inttypes.h>
#include <net/if.h>
#include <poll.h>
#include <stdarg.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "client-agent/agent.h"
#include "client-agent/control_client.h"
#include "relay/derp_client.h"
#include "client-agent/disco.h"
#include "client-agent/filter.h"
#include "client-agent/netcfg.h"
#include "relay/netcheck.h"
#include "client-agent/paths.h"
#include "client-agent/resolver.h"
#include "client-agent/routes.h"
#include "client-agent/wg/device.h"
#include "client-agent/wg/tun.h"
#include "common/buf.h"
#include "common/log.h"
#include "common/util.h"
#include "relay/derp_map.h"
#include "relay/stun.h"

enum {
	MAX_EPS = 16,
	MAX_ALLOWED = 24,		/* addresses + up to 16 routes + exit routes */
	MAX_DERPS = 32,
	INBOX_LEN = 512,
	INBOX_PKT = 1024,
	MAX_WAITERS = 16,
	AGENT_LEARNED_MAX = 8,	/* control URLs learned from the map */
	NAME_MAX_LEN = 64,
	TICK_MS = 50,
	KEY_HASH_BITS = 13,		/* 8192 slots: at most half full */
	KEY_HASH_SIZE = 1 << KEY_HASH_BITS,
};
_Static_assert(KEY_HASH_SIZE >= 2 * AGENT_MAX_PEERS, "peer key hash too small");

struct apeer {
	int64_t id;
	char name[NAME_MAX_LEN], user[NAME_MAX_LEN];
	uint8_t node_key[KEY_LEN], disco_key[KEY_LEN];
	struct ip_addr addr4, addr6;
	struct ip_prefix allowed[MAX_ALLOWED];	/* as the netmap says */
	size_t nallowed;
	struct ip_prefix wg_allowed[MAX_ALLOWED];	/* given to WireGuard (routes.h) */
	size_t nwg_allowed;
	struct ip_prefix primary[MAX_ALLOWED];	/* subnets it serves as primary router */
	size_t nprimary;
	bool exit_node;				/* it offers an exit node */
	struct endpoint eps[MAX_EPS];
	size_t neps;
	struct endpoint cmm[MAX_EPS];
	size_t ncmm;
	int home_derp;
	bool online, expired, seen;
	struct paths *paths;
	bool direct;
	struct endpoint direct_ep;
	int rtt_ms;
	int64_t last_cmm_ms, last_derp_tx_ms, direct_since_ms, last_reprobe_ms;
	int64_t last_derp_disco_ms;	/* a disco message from it came over DERP */
	uint64_t tx_derp, tx_udp, disco_rx, disco_tx;
};

struct dctx {
	struct agent *a;
	int region;
};

struct dconn {
	int region;
	struct derp_client *c;
	struct dctx *ctx;
};

enum in_kind { IN_UDP, IN_DERP };

struct inbox_item {
	enum in_kind kind;
	struct endpoint from;
	uint8_t src[KEY_LEN];
	int region;
	size_t len;
	uint8_t pkt[INBOX_PKT];
};

struct waiter {
	bool active, done;
	uint8_t txid[DISCO_TXID_LEN];
	int64_t sent_ms;
	int rtt_ms;
	bool via_udp;
	struct endpoint from;
};

struct agent {
	struct agent_config cfg;
	uint8_t disco_priv[KEY_LEN], disco_pub[KEY_LEN];
	struct wg_device *dev;
	int tun_fd;
	char ifname[IFNAMSIZ];
	atomic_bool stop;

	pthread_mutex_t mu;		/* everything below unless noted */
	pthread_cond_t cond;		/* netmap arrived, ping answered, netcheck done */
	struct apeer **peers;
	size_t npeers;
	struct apeer **khash;		/* node key -> peer, open addressing */
	bool have_self;
	int64_t self_id;
	char self_name[NAME_MAX_LEN], self_user[NAME_MAX_LEN];
	struct ip_addr self4, self6;
	bool routes_done;
	char *derp_map_json;
	struct derp_map *dmap;
	struct dconn derps[MAX_DERPS];
	size_t nderps;
	int home_region;
	struct endpoint my_eps[MAX_EPS];
	size_t nmy_eps;
	char *reported;			/* last endpoint report sent */
	struct waiter waiters[MAX_WAITERS];

	/* control */
	pthread_mutex_t ctl_mu;		/* serialises up/down; taken before mu */
	struct control *ctl;
	char login_server[512], hostname[NAME_MAX_LEN];
	bool want_up, control_connected, have_netmap, needs_login;
	bool logged_in;			/* registered and not logged out (prefs.json) */
	bool hostname_set;		/* --hostname given (else the system's name) */
	char adv_tags[512];		/* --advertise-tags, comma-separated */
	bool user_acted;		/* an up or down came: the reconnect thread yields */
	char control_err[512];
	uint64_t netmaps, deltas;
	/* The replicas' URLs the map announced ("control_urls"), under mu;
	 * saved in prefs.json, tried after login_server's (control_client.h). */
	char learned[AGENT_LEARNED_MAX][CONTROL_URL_MAX];
	size_t nlearned;

	/* routes (agent_routes.c): prefs and route_err under mu; ros only on
	 * the control thread, or with the control client stopped */
	struct routes_prefs rprefs;
	bool rprefs_loaded;		/* from routes.json or an up request */
	struct routes_os ros;
	char route_err[512];
	struct routes_via via[ROUTES_MAX_VIA];	/* via grants, from the filter; under mu */
	size_t nvia;

	/* filter: read on the engine's receive path */
	pthread_rwlock_t flock;
	char *filter_json;
	struct wm_filter *filter;
	struct conntrack *ct;

	/* netcheck */
	pthread_mutex_t nc_mu;		/* guards nc_active only (fed by the loop) */
	struct netcheck *nc_active;
	struct netcheck_report report;	/* under mu */
	bool have_report, nc_want;
	uint64_t nc_gen;

	/* inbox (own lock) */
	pthread_mutex_t in_mu;
	pthread_cond_t in_cond;
	struct inbox_item *inbox;
	unsigned in_head, in_len;

	/* MagicDNS (agent_dns.c): accept_dns, dns_base, dns_os_set, dns_err
	 * under mu; OS changes serialised by dns_mu (taken before mu) */
	struct resolver *resolver;
	pthread_mutex_t dns_mu;
	bool accept_dns;
	char dns_base[DNSNAME_MAX];	/* base_domain while MagicDNS is on */
	int dns_mode;			/* enum dns_os_mode */
	bool dns_os_set;
	char dns_err[256];

	pthread_t loop_thr, tun_thr, nc_thr, resume_thr;
	bool tun_started, resume_started;

	atomic_uint_fast64_t c_inbox_drop, c_disco_bad, c_disco_unknown, c_derp_in, c_derp_out;
	atomic_uint_fast64_t c_disco_via_tunnel;	/* UDP disco from a tailnet address */
	atomic_uint_fast64_t c_derp_drop, c_tun_write_err, c_filter_drop;
};

/* agent.c: helpers, prefs, relay connections, hooks, lifecycle */
bool agent_ep_equal(const struct endpoint *a, const struct endpoint *b);
void agent_timespec_in(struct timespec *ts, int64_t ms);
json_t *agent_reply_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
json_t *agent_reply_ok(const char *text, json_t *data);
struct apeer *agent_find_key_locked(struct agent *a, const uint8_t key[static KEY_LEN]);
void agent_rehash_locked(struct agent *a);
struct apeer *agent_find_disco_locked(struct agent *a, const uint8_t key[static KEY_LEN]);
struct apeer *agent_find_id_locked(struct agent *a, int64_t id, size_t *idx);
const char *agent_region_code_locked(struct agent *a, int region, char buf[static 16]);
void agent_prefs_save(struct agent *a);
/* A map's "control_urls" (JSON array): remembered, saved and handed to the
 * control client when they changed. */
void agent_learn_urls(struct agent *a, json_t *urls);
/* With mu held: gives c the learned URLs. */
void agent_apply_learned_locked(struct agent *a, struct control *c);
/* With mu held: forgets them (another network's server). */
void agent_forget_learned_locked(struct agent *a);
struct derp_client *agent_derp_get_locked(struct agent *a, int region, bool create);
int agent_derp_send_locked(struct agent *a, int region, const uint8_t key[static KEY_LEN],
		 const uint8_t *pkt, size_t len);
size_t agent_derps_take_locked(struct agent *a, struct dconn *out, bool keep_home);
void agent_derps_free(struct dconn *d, size_t n);
void agent_set_home_locked(struct agent *a, int region);
int agent_first_region_locked(struct agent *a);

/* agent_disco.c: path discovery loop, endpoints, netcheck */
int agent_seal_to(struct agent *a, const uint8_t peer_disco[static KEY_LEN],
		  const struct disco_msg *m, uint8_t out[static DISCO_MAX_PACKET], size_t *len);
void agent_update_candidates_locked(struct apeer *p, int64_t now);
void *agent_loop_main(void *arg);
void agent_report_endpoints(struct agent *a);
void *agent_nc_main(void *arg);

/* agent_netmap.c: applying map messages */
void agent_on_message(void *ctx, json_t *msg);
void agent_on_state(void *ctx, bool up, const char *why);

/* agent_routes.c: subnet routes and exit nodes */
void agent_routes_peer_locked(struct agent *a, struct apeer *np);
bool agent_routes_via_set(struct agent *a, json_t *filter);
void agent_routes_sync(struct agent *a);
void agent_routes_reset(struct agent *a);
void agent_routes_withdraw(struct agent *a, struct control *c);
void agent_routes_prefs_load(struct agent *a);
void agent_routes_prefs_save(struct agent *a);
void agent_routes_status_locked(struct agent *a, struct buf *b, json_t *self, json_t *data);
json_t *agent_routes_peer_json_locked(struct agent *a, const struct apeer *p);

/* agent_dns.c: MagicDNS resolver and OS DNS settings */
void agent_dns_start(struct agent *a);
void agent_dns_stop(struct agent *a);
void agent_dns_on_message(struct agent *a, json_t *msg);
void agent_dns_down(struct agent *a);
void agent_dns_set_accept(struct agent *a, bool accept);
json_t *agent_cmd_dns_status(struct agent *a);
const char *agent_dns_fqdn_locked(struct agent *a, const char *name, char buf[static DNSNAME_MAX]);
bool agent_dns_strip_locked(struct agent *a, const char *s, char out[static NAME_MAX_LEN]);

/* agent_cmd.c: up/down and the local API commands */
void agent_stop_control(struct agent *a);
json_t *agent_cmd_up(struct agent *a, json_t *req);
json_t *agent_cmd_down(struct agent *a);
json_t *agent_cmd_set(struct agent *a, json_t *req);
json_t *agent_cmd_logout(struct agent *a);
void *agent_resume_main(void *arg);
json_t *agent_cmd_status(struct agent *a);
json_t *agent_cmd_ip(struct agent *a, json_t *req);
json_t *agent_cmd_ping(struct agent *a, json_t *req);
json_t *agent_cmd_netcheck(struct agent *a);
json_t *agent_cmd_debug(struct agent *a);

/* agent_login.c: interactive login. begin: NULL when no login is needed
 * (the usual `up` goes on), else the reply with the URL (ctl_mu held). */
json_t *agent_login_begin(struct agent *a, const char *url, const char *host, bool force);
json_t *agent_cmd_up_wait(struct agent *a, json_t *req);

#endif
