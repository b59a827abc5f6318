/* SPDX-License-Identifier: MIT */
/*
 * The server's side of the policy: the active policy (from the store or a
 * file), its compilation over the live node set, the hooks the mapper uses
 * for visibility and filters, and /api/v1/policy (GET with ETag, PUT with
 * If-Match, history, check without saving, explain one decision).
 */
#ifndef WM_POLICY_API_H
#define WM_POLICY_API_H

#include "common/err.h"
#include "server/http.h"
#include "server/store.h"

struct server;
struct polref;

/* Loads the active policy (file, else newest stored version) at start. */
int policy_state_init(struct server *s) WM_MUST_CHECK;
void policy_state_free(struct server *s);
/* Adds to node id's approved routes those of its advertised routes that the
 * policy's autoApprovers approve, in one transaction (server_node_edit).
 * Takes the policy lock, so never call it inside a store transaction. */
int policy_state_auto_approve(struct server *s, int64_t id) WM_MUST_CHECK;
/* A reference to the active policy (NULL: none loaded), usable without the
 * policy lock (so inside a store transaction); give it back with
 * policy_state_release. */
struct polref *policy_state_hold(struct server *s);
void policy_state_release(struct polref *p);
/* May a node of `user` take every tag in `tags` (array of "tag:NAME")
 * under policy p (NULL: none)? 0, or ERR_FORBIDDEN naming the first refused tag. */
int policy_tags_allowed(const struct polref *p, const char *user, json_t *tags, char *why,
			size_t whylen);
/* Nodes changed: recompile soon (on the next tick). */
void policy_state_dirty(struct server *s);
/* Called by the timer thread: recompiles when dirty. */
void policy_state_tick(struct server *s);
/* Logs and applies a recompiled policy waiting to reach the mapper (called
 * without the policy lock: by the timer thread and after a change). */
void policy_state_publish(struct server *s);
/* SIGHUP: reload the policy file with the same checks as PUT. */
/* Replicas: loads the policy another replica stored when its ETag differs
 * from this one's (timer thread; not with a policy file). */
void policy_state_follow_store(struct server *s);
/* Whether `etag` is the ETag of the policy installed here (any thread). */
bool policy_state_etag_is(struct server *s, const char *etag);
void policy_state_reload_file(struct server *s);
/* Replicas, the leader's job (every second; `force` when it takes the
 * role): when the policy file changed (stat), loads it and stores it for
 * every replica when it differs from the policy stored last. */
void policy_state_file_role(struct server *s, bool force);

/* The active policy's ETag ("\"hex\"", or "" with no policy). */
void policy_state_etag(struct server *s, char out[static 48]);

/* /api/v1/policy...: GET/PUT, history (and one version), check, explain.
 * `who` names the caller in the history ("apikey:PREFIX", "session:..."). */
void policy_api_handle(struct server *s, struct http_request *req,
		       struct http_response *resp, const char *rest, const char *who);

#endif
