/* SPDX-License-Identifier: MIT */
/*
 * The control server: configuration, the running state that ties the store,
 * address allocation, mapper and HTTP layer together, and the operations
 * both the REST API and the node protocol use. One plain config struct,
 * filled from defaults, a HuJSON file, the environment and flags, in that
 * order of precedence (lowest first).
 */
#ifndef WM_SERVER_H
#define WM_SERVER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "common/addr.h"
#include "common/err.h"
#include "server/dns_config.h"
#include "server/http.h"
#include "server/oidc.h"
#include "server/store.h"

struct server_config {
	char listen[128];
	char db_path[512];
	char tls_cert[512];
	char tls_key[512];
	char derp_map_path[512];
	char policy_file[512];
	char log_level[16];
	char log_format[16];		/* text | json */
	char metrics_listen[128];	/* "": /metrics on the main listener, loopback clients only */
	struct ip_prefix prefix4;
	struct ip_prefix prefix6;
	int64_t node_expiry_s;		/* 0: nodes never expire */
	int64_t ephemeral_timeout_s;	/* delete ephemeral nodes offline this long */
	int64_t keepalive_s;		/* map stream keepalive interval */
	int64_t sign_skew_s;		/* accepted clock difference for signatures */
	int64_t max_body;		/* request body limit, bytes */
	int64_t max_policy_body;
	int64_t threads;
	int64_t max_connections;
	int64_t queue_max;
	int64_t replay_per_machine;	/* live replay-cache entries per machine */
	int64_t max_unauth_body;	/* body limit without admin credentials
					 * (the node protocol, logins) */
	int64_t max_per_ip;		/* connections per client address (IPv6: /64) */
	int64_t request_timeout_s;	/* head and body must arrive within it */
	int64_t idle_timeout_s;		/* a silent connection is closed after it */
	char relay_secret_file[512];	/* shared secret of POST /relay/admit; "" : off */
	/* The embedded relay: DERP at /derp on the same listener (TLS when the
	 * server has TLS) and a STUN server; the region it is announced as in
	 * the generated DERP map (a --derp-map file wins over it). */
	bool derp;
	int64_t derp_region_id;
	char derp_region_code[32];
	char derp_region_name[64];
	char derp_hostname[256];	/* "" : the listen host, else the machine's name */
	int64_t derp_port;		/* 0 : the derp_listen port, else the listen port */
	char derp_listen[128];		/* "" : /derp only on the main listener; else also a
					 * listener of the relay's own (TLS with tls_cert) */
	char stun_listen[128];		/* "" : no STUN server */
	int64_t change_log_max_age_s;	/* retention of the change log, by age */
	int64_t change_log_max_changes;	/* and by count */
	char config_path[512];		/* the --config file, reread on SIGHUP */
	struct dns_config dns;		/* the "dns" block (MagicDNS) */
	/* Admin console sessions (server/session.c). */
	int64_t admin_session_idle_s;	/* ends after this long without a request */
	int64_t admin_session_max_s;	/* ends this long after sign-in, whatever */
	/* Interactive login (server/enrol.c, server/oidc.c). */
	char server_url[512];		/* public URL; "" : scheme and Host of the request */
	int64_t register_expiry_s;	/* a register URL works this long */
	struct oidc_config oidc;
	/* ACME certificates (common/acme.c, server/server_acme.c). */
	char acme_hostname[256];	/* "": no ACME */
	char acme_email[256];
	char acme_directory[512];	/* "": Let's Encrypt */
	char acme_http_listen[128];	/* HTTP-01 listener, default ":80" */
	char acme_challenge[16];	/* "http-01" (default) or "tls-alpn-01" */
	char acme_state_dir[512];	/* "": acme/ beside the database */
	char acme_ca_file[512];		/* CA bundle for the directory's TLS */
	int64_t acme_renew_before_s;	/* 0: a third of the lifetime */
};

/* Fills the defaults. */
void server_config_defaults(struct server_config *c);
/* Reads a HuJSON config file on top of c. Diagnostics to `why`. */
int server_config_file(struct server_config *c, const char *path, char *why, size_t whylen) WM_MUST_CHECK;
/* Applies WIREMESH_* environment variables. */
int server_config_env(struct server_config *c, char *why, size_t whylen) WM_MUST_CHECK;
/* Sets one option by its config-file name (also used for flags). */
int server_config_set(struct server_config *c, const char *key, const char *value,
		      char *why, size_t whylen) WM_MUST_CHECK;

struct server;

int server_new(const struct server_config *cfg, struct server **out) WM_MUST_CHECK;
/* Starts listening and the background timers. */
int server_start(struct server *s) WM_MUST_CHECK;
/* Blocks until SIGINT/SIGTERM; SIGHUP reloads the policy file and the dns block. */
void server_wait(struct server *s);
void server_free(struct server *s);
/* Why server_new or server_start failed, naming the real cause ("cannot
 * read the DERP map F: No such file or directory"); "" if unknown. */
const char *server_error(void);

/* server/server_acme.c: with acme_hostname, gets the certificate (blocks
 * while issuing) and points tls_cert/tls_key at it; then renews it. With
 * TLS-ALPN-01 setup only points tls_cert/tls_key at the state files and
 * server_acme_alpn_start, after the listener is up, gets the certificate
 * (the CA validates through that listener) and loads it. */
int server_acme_setup(struct server *s, char *why, size_t whylen) WM_MUST_CHECK;
int server_acme_alpn_start(struct server *s, char *why, size_t whylen) WM_MUST_CHECK;
int server_acme_run(struct server *s) WM_MUST_CHECK;
void server_acme_stop(struct server *s);

/* Shared internals for the handler files (api.c, control.c, metrics.c). */
struct mapper;
struct ipam;
struct replay;
struct policy_state;
struct derp_server;
struct stun_server;
struct events;
struct hostinfo;
struct enrol;

struct server_metrics {
	atomic_uint_fast64_t requests[600];	/* by status code 100..599, [0] other */
	atomic_uint_fast64_t latency_bucket[12];
	atomic_uint_fast64_t latency_sum_us;
	atomic_uint_fast64_t latency_count;
	atomic_uint_fast64_t registrations;
	atomic_uint_fast64_t registration_failures;
	atomic_uint_fast64_t endpoint_updates;
	atomic_uint_fast64_t bad_signatures;
};

struct acme;

struct server {
	struct acme *acme;		/* NULL: no ACME */
	bool acme_alpn;			/* TLS-ALPN-01: ACME starts after the listener */
	struct server_config cfg;
	struct store *store;
	struct ipam *ipam;
	struct mapper *mapper;
	struct http *http;
	struct http *metrics_http;	/* metrics_listen, or NULL */
	struct replay *replay;
	struct policy_state *policy;
	struct server_metrics metrics;
	char *derp_map_json;
	char *dns_json;			/* the map's "dns" section at start */
	char policy_etag_logged[48];	/* of the last POLICY change in the log at start */
	atomic_bool stopping;
	/* Held from a change's version assignment (inside its transaction)
	 * until the mapper has applied it: changes reach the mapper in version
	 * order. Lock order: policy, store, publish_lock, mapper. */
	pthread_mutex_t publish_lock;
	/* Embedded relay; derp is NULL once shutdown began (under derp_lock,
	 * which upgrades hold while handing a connection over). */
	pthread_mutex_t derp_lock;
	struct derp_server *derp;
	/* POST /relay/admit: SHA-256 of the shared secret of standalone relays. */
	bool relay_secret_set;
	uint8_t relay_secret_hash[32];
	struct stun_server *stun;
	struct events *events;		/* live updates for the console (events.c) */
	struct hostinfo *hostinfo;	/* OS and agent version per node (hostinfo.c) */
	struct enrol *enrol;		/* registrations waiting for a login */
	struct oidc *oidc;		/* NULL without an oidc block */
	struct replica *replica;	/* NULL on SQLite (replica.h) */
	/* The replica list (replica_list.h). */
	char *derp_base_json;		/* the configured DERP map ({"Regions":{}} none) */
	char *derp_region_json;		/* the embedded relay's region, NULL: none */
	char replica_name[600];		/* server_url, "derp:HOST:PORT", "run:...", or "" */
	int64_t replica_started_at;
	bool replica_beat_failing;	/* timer thread only */
	bool replica_recorded;		/* replica_list_start() succeeded */
	atomic_uint replica_list_size;	/* entries of the list in force here */
};

/* api.c: /api/v1/... with Bearer auth. */
void api_handle(struct server *s, struct http_request *req, struct http_response *resp);
/* True when the request carries valid admin credentials (before its body
 * is read: it decides the body limit). */
bool api_authorized(struct server *s, struct http_request *req);
/* control.c: /machine/... signed node protocol. */
void control_handle(struct server *s, struct http_request *req, struct http_response *resp);
/* metrics.c */
void metrics_handle(struct server *s, struct http_request *req, struct http_response *resp);
void metrics_observe(struct server *s, int status, int64_t elapsed_ns);

/* Node operations shared by the API and the node protocol; each is one
 * transaction that tells the mapper before it commits. */
/* Marks every address the database holds as taken in this replica's
 * allocator (another replica allocated them). */
void server_ipam_resync(struct server *s);
int server_node_delete(struct server *s, int64_t id) WM_MUST_CHECK;
/* Changes node `id` in one transaction: reads the current row, lets `edit`
 * change it (a non-zero return aborts and is returned), and writes back only
 * the column groups in `fields` (STORE_NODE_*), so a concurrent change of
 * other fields is never undone. `out` (may be NULL) gets the saved row.
 * Lock order: the policy lock (if taken) before the store before the mapper;
 * `edit` runs with the store locked and must not take the policy lock. */
typedef int (*server_node_edit_fn)(void *ctx, struct store_node *n);
int server_node_edit(struct server *s, int64_t id, unsigned fields, server_node_edit_fn edit,
		     void *ctx, struct store_node *out) WM_MUST_CHECK;
/* server_node_edit() that copies the `fields` groups from `src` (id src->id). */
int server_node_set(struct server *s, const struct store_node *src, unsigned fields,
		    struct store_node *out) WM_MUST_CHECK;
/* Enforces expiry by time (timer thread, every second): every node whose
 * expiry fell in (*checked_until, now] is published as expired. */
void server_expire_due(struct server *s, int64_t *checked_until);
/* Replicas: the stored route primaries (malloc'd array in *out). */
struct mapper_primary;
int server_route_primaries_load(struct server *s, struct mapper_primary **out, size_t *n)
	WM_MUST_CHECK;
/* Inside an open store transaction: appends one change, commits, and
 * returns its version with publish_lock held; the caller applies it to the
 * mapper, then calls server_publish_done(). On error the transaction is
 * rolled back and nothing is held. */
struct mapper_ids;
int server_commit_change(struct server *s, int kind, int64_t node_id, const char *payload,
			 uint64_t *version) WM_MUST_CHECK;
/* Releases publish_lock, then logs and applies a ROUTES change for each
 * router in `routers` (frees the list; may be NULL). */
void server_publish_done(struct server *s, struct mapper_ids *routers);
/* A change in a transaction of its own (tx begin + server_commit_change). */
int server_publish_change(struct server *s, int kind, int64_t node_id, const char *payload,
			  uint64_t *version) WM_MUST_CHECK;

/* The embedded relay admits keys at connect time: drops the connections of
 * a key that stopped being good (node deleted, expired, key replaced). */
void server_relay_forget(struct server *s, const uint8_t key[static KEY_LEN]);

/* Responds with a JSON value (takes ownership). */
void server_reply_json(struct http_response *resp, int status, json_t *v);

/* Creates an API key in the store; *key_out is shown once. */
int server_apikey_create(struct store *st, int64_t expires_at, char **key_out) WM_MUST_CHECK;

/* A positive decimal id at the start of `p`: digits only (no sign, no
 * space), no overflow. Returns the id and sets *end after it, or 0. */
int64_t server_parse_id(const char *p, const char **end);

/* DNS-safe label from a hostname ("My Laptop!" -> "my-laptop"). */
void server_dns_label(char out[static STORE_NAME_MAX], const char *hostname);

#endif
