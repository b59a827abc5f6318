// SPDX-License-Identifier: MIT
/* /metrics in the Prometheus text format. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/prom.h"
#include "relay/derp_server.h"
#include "relay/stun_server.h"
#include "server/mapper.h"
#include "server/replica.h"
#include "server/server.h"

/* Upper bounds of the latency histogram, in microseconds. */
static const uint64_t bounds_us[] = { 500, 1000, 2500, 5000, 10000, 25000, 50000,
    100000, 250000, 500000, 1000000 };

void
metrics_observe(struct server *s, int status, int64_t elapsed_ns)
{
	uint64_t us = elapsed_ns > 0 ? (uint64_t)elapsed_ns / 1000 : 0;
	size_t i;

	atomic_fetch_add(&s->metrics.requests[status >= 100 && status <= 599 ? status : 0], 1);
	for (i = 0; i < sizeof(bounds_us) / sizeof(bounds_us[0]); i++)
		if (us <= bounds_us[i])
			break;
	atomic_fetch_add(&s->metrics.latency_bucket[i], 1);
	atomic_fetch_add(&s->metrics.latency_sum_us, us);
	atomic_fetch_add(&s->metrics.latency_count, 1);
}

void
metrics_handle(struct server *s, struct http_request *req, struct http_response *resp)
{
	struct mapper_stats ms;
	struct buf b;
	uint64_t cum = 0;
	int r = 0;

	mapper_stats(s->mapper, &ms);
	buf_init(&b, 1 << 20);
	r |= buf_printf(&b, "# HELP wiremesh_nodes Registered nodes.\n# TYPE wiremesh_nodes gauge\n"
	    "wiremesh_nodes %zu\n", ms.nodes);
	r |= buf_printf(&b, "# HELP wiremesh_nodes_online Nodes with an open map stream.\n"
	    "# TYPE wiremesh_nodes_online gauge\nwiremesh_nodes_online %zu\n", ms.online_nodes);
	r |= buf_printf(&b, "# HELP wiremesh_map_streams Open map streams.\n"
	    "# TYPE wiremesh_map_streams gauge\nwiremesh_map_streams %zu\n", ms.streams);
	r |= buf_printf(&b, "# HELP wiremesh_map_bytes_sent_total Netmap bytes written to streams.\n"
	    "# TYPE wiremesh_map_bytes_sent_total counter\nwiremesh_map_bytes_sent_total %" PRIu64 "\n",
	    ms.bytes_sent);
	r |= buf_printf(&b, "# TYPE wiremesh_map_full_total counter\nwiremesh_map_full_total %" PRIu64 "\n"
	    "# TYPE wiremesh_map_deltas_total counter\nwiremesh_map_deltas_total %" PRIu64 "\n"
	    "# HELP wiremesh_map_queue_collapses_total Slow streams whose queue was dropped (they resume by version).\n"
	    "# TYPE wiremesh_map_queue_collapses_total counter\n"
	    "wiremesh_map_queue_collapses_total %" PRIu64 "\n"
	    "# TYPE wiremesh_map_version gauge\nwiremesh_map_version %" PRIu64 "\n",
	    ms.full_maps, ms.deltas, ms.collapses, ms.version);
	r |= buf_printf(&b, "# HELP wiremesh_map_resumes_total Map streams opened by version without a full map.\n"
	    "# TYPE wiremesh_map_resumes_total counter\nwiremesh_map_resumes_total %" PRIu64 "\n"
	    "# HELP wiremesh_map_online_batches_total Online-flag changes published (one message per stream each).\n"
	    "# TYPE wiremesh_map_online_batches_total counter\nwiremesh_map_online_batches_total %" PRIu64 "\n"
	    "# HELP wiremesh_change_log_changes Changes kept in the change log for resuming streams.\n"
	    "# TYPE wiremesh_change_log_changes gauge\nwiremesh_change_log_changes %zu\n"
	    "# HELP wiremesh_change_log_floor Streams resuming from a version below this get a full map.\n"
	    "# TYPE wiremesh_change_log_floor gauge\nwiremesh_change_log_floor %" PRIu64 "\n",
	    ms.resumes, ms.online_batches, ms.log_len, ms.floor);
	r |= buf_printf(&b, "# TYPE wiremesh_registrations_total counter\n"
	    "wiremesh_registrations_total{result=\"ok\"} %" PRIu64 "\n"
	    "wiremesh_registrations_total{result=\"refused\"} %" PRIu64 "\n"
	    "# TYPE wiremesh_endpoint_updates_total counter\nwiremesh_endpoint_updates_total %" PRIu64 "\n"
	    "# TYPE wiremesh_bad_signatures_total counter\nwiremesh_bad_signatures_total %" PRIu64 "\n",
	    (uint64_t)atomic_load(&s->metrics.registrations),
	    (uint64_t)atomic_load(&s->metrics.registration_failures),
	    (uint64_t)atomic_load(&s->metrics.endpoint_updates),
	    (uint64_t)atomic_load(&s->metrics.bad_signatures));
	if (s->replica) {
		struct replica_stats rs;

		replica_stats(s->replica, &rs);
		r |= buf_printf(&b, "# HELP wiremesh_replica_version_applied Last change-log version "
		    "applied by this replica.\n# TYPE wiremesh_replica_version_applied gauge\n"
		    "wiremesh_replica_version_applied %" PRIu64 "\n"
		    "# HELP wiremesh_replica_version_announced Highest version the database announced.\n"
		    "# TYPE wiremesh_replica_version_announced gauge\n"
		    "wiremesh_replica_version_announced %" PRIu64 "\n"
		    "# HELP wiremesh_replica_foreign_changes_total Changes made through other replicas "
		    "applied here.\n# TYPE wiremesh_replica_foreign_changes_total counter\n"
		    "wiremesh_replica_foreign_changes_total %" PRIu64 "\n"
		    "# HELP wiremesh_replica_notify_lag_seconds From an announcement to its change "
		    "applied here (last, max).\n# TYPE wiremesh_replica_notify_lag_seconds gauge\n"
		    "wiremesh_replica_notify_lag_seconds{stat=\"last\"} %g\n"
		    "wiremesh_replica_notify_lag_seconds{stat=\"max\"} %g\n"
		    "# HELP wiremesh_replica_leader Roles this replica holds for the network (1 held).\n"
		    "# TYPE wiremesh_replica_leader gauge\n", rs.applied, rs.announced,
		    rs.foreign_applied, (double)rs.lag_ms_last / 1000.0, (double)rs.lag_ms_max / 1000.0);
		/* one leader holds them all (replica.h) */
		for (const char *p = REPLICA_ROLES; *p; ) {
			size_t l = strcspn(p, ",");

			r |= buf_printf(&b, "wiremesh_replica_leader{role=\"%.*s\"} %d\n", (int)l, p,
			    rs.leader ? 1 : 0);
			p += l + (p[l] == ',');
		}
		r |= buf_printf(&b, "# HELP wiremesh_replica_list_size Live replicas in the replica "
		    "list this replica announces (those with a URL or an embedded relay region).\n"
		    "# TYPE wiremesh_replica_list_size gauge\nwiremesh_replica_list_size %u\n",
		    atomic_load(&s->replica_list_size));
	}
	r |= buf_printf(&b, "# TYPE wiremesh_http_requests_total counter\n");
	for (int c = 100; c <= 599; c++) {	/* status codes as codes, as Prometheus' own */
		uint64_t v = (uint64_t)atomic_load(&s->metrics.requests[c]);

		if (v || c == 200)
			r |= buf_printf(&b, "wiremesh_http_requests_total{code=\"%d\"} %" PRIu64 "\n", c, v);
	}
	r |= buf_printf(&b, "# HELP wiremesh_http_request_duration_seconds Time to answer a request "
	    "(map streams excluded).\n# TYPE wiremesh_http_request_duration_seconds histogram\n");
	for (size_t i = 0; i <= sizeof(bounds_us) / sizeof(bounds_us[0]); i++) {
		cum += atomic_load(&s->metrics.latency_bucket[i]);
		if (i < sizeof(bounds_us) / sizeof(bounds_us[0]))
			r |= buf_printf(&b, "wiremesh_http_request_duration_seconds_bucket{le=\"%g\"} %"
			    PRIu64 "\n", (double)bounds_us[i] / 1e6, cum);
		else
			r |= buf_printf(&b, "wiremesh_http_request_duration_seconds_bucket{le=\"+Inf\"} %"
			    PRIu64 "\n", cum);
	}
	r |= buf_printf(&b, "wiremesh_http_request_duration_seconds_sum %g\n"
	    "wiremesh_http_request_duration_seconds_count %" PRIu64 "\n",
	    (double)atomic_load(&s->metrics.latency_sum_us) / 1e6,
	    (uint64_t)atomic_load(&s->metrics.latency_count));
	if (s->http) {
		struct http_stats hs;

		http_get_stats(s->http, &hs);
		r |= buf_printf(&b, "# HELP wiremesh_http_refused_total Connections or requests refused "
		    "by a limit.\n# TYPE wiremesh_http_refused_total counter\n"
		    "wiremesh_http_refused_total{reason=\"per_ip\"} %" PRIu64 "\n"
		    "wiremesh_http_refused_total{reason=\"request_timeout\"} %" PRIu64 "\n"
		    "wiremesh_http_refused_total{reason=\"body_too_large\"} %" PRIu64 "\n"
		    "wiremesh_http_refused_total{reason=\"bad_framing\"} %" PRIu64 "\n"
		    "# HELP wiremesh_http_library_messages_total Messages of libmicrohttpd (at most 5 "
		    "per 10 s are logged).\n# TYPE wiremesh_http_library_messages_total counter\n"
		    "wiremesh_http_library_messages_total %" PRIu64 "\n"
		    "# TYPE wiremesh_http_max_connections gauge\nwiremesh_http_max_connections %u\n",
		    hs.refused_per_ip, hs.slow_closed, hs.too_large, hs.bad_framing,
		    hs.library_messages, http_max_connections(s->http));
	}
	pthread_mutex_lock(&s->derp_lock);	/* the relay may be going away */
	if (s->derp)
		r |= derp_server_metrics(s->derp, &b);
	pthread_mutex_unlock(&s->derp_lock);
	if (s->stun)
		r |= stun_server_metrics(s->stun, &b);
	(void)req;
	if (r == 0)
		r = prom_add_help(&b);
	if (r != 0) {
		buf_cleanup(&b);
		http_problem(resp, 500, NULL, "metrics too large");
		return;
	}
	http_set_body(resp, 200, "text/plain; version=0.0.4", (char *)b.data, b.len);
}
