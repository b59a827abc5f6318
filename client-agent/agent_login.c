// SPDX-License-Identifier: MIT
/*
 * Interactive login (`wiremesh up` without an auth key, `up --force-reauth`):
 * the daemon asks the server for a login URL and answers the CLI at once
 * with it; the CLI prints it and calls "up_wait", which holds the server's
 * long-poll (POST /machine/register/wait) until someone logs in at the URL
 * or an admin approves the machine, then brings the node up as `up` does.
 * The running connection, if any, is left alone until the login succeeded.
 */
#include "client-agent/agent_int.h"

enum { LOGIN_WAIT_MAX_S = 20 * 60 };	/* longer than any register URL lives */

static struct control *
login_control(struct agent *a, const char *url)
{
	struct control_keys k;
	struct control_callbacks cb = { .message = agent_on_message, .state = agent_on_state,
	    .ctx = a };
	struct control *c;

	memcpy(k.machine_sk, a->cfg.machine_sk, ED25519_SK_LEN);
	memcpy(k.machine_pk, a->cfg.machine_pk, KEY_LEN);
	memcpy(k.node_pub, a->cfg.node_pub, KEY_LEN);
	memcpy(k.disco_pub, a->disco_pub, KEY_LEN);
	c = control_new(url, &k, &cb);
	wipe(&k, sizeof(k));
	if (c)
		control_set_fwmark(c, ROUTES_FWMARK);
	return c;
}

json_t *
agent_login_begin(struct agent *a, const char *url, const char *host, bool force)
{
	char why[1024], text[1400];
	char *auth_url = NULL, *auth_id = NULL;
	json_t *node = NULL, *resp;
	struct control *c = login_control(a, url);
	int r;

	if (c == NULL)
		return agent_reply_err("out of memory");
	r = control_register_interactive(c, host, force, &node, &auth_url, &auth_id, why,
	    sizeof(why));
	control_free(c);
	json_decref(node);
	if (r != 0 || auth_url == NULL)
		return NULL;	/* still valid, or an error the usual `up` reports */
	log_info("msg=\"interactive login needed\" force=%s", force ? "true" : "false");
	snprintf(text, sizeof(text), "To authenticate, visit:\n\n\t%s\n\n", auth_url);
	resp = agent_reply_ok(text, json_pack("{s:b, s:s, s:s}", "login_pending", 1, "auth_url",
	    auth_url, "auth_id", auth_id));
	free(auth_url);
	free(auth_id);
	return resp;
}

json_t *
agent_cmd_up_wait(struct agent *a, json_t *req)
{
	const char *id = json_string_value(json_object_get(req, "auth_id"));
	const char *url = json_string_value(json_object_get(req, "login_server"));
	char why[1024], lurl[512];
	char *login = NULL;
	json_t *node = NULL, *up, *again;
	struct control *c;
	int64_t deadline = time_mono_ms() + LOGIN_WAIT_MAX_S * 1000;
	int r = ERR_TIMEOUT;

	if (id == NULL)
		return agent_reply_err("up_wait needs auth_id");
	if (url == NULL || *url == 0) {
		pthread_mutex_lock(&a->ctl_mu);
		str_copy(lurl, a->login_server, sizeof(lurl));
		pthread_mutex_unlock(&a->ctl_mu);
		url = lurl;
	}
	if (*url == 0)
		return agent_reply_err("--login-server is required the first time");
	if ((c = login_control(a, url)) == NULL)
		return agent_reply_err("out of memory");
	while (!atomic_load(&a->stop) && time_mono_ms() < deadline) {
		r = control_register_wait(c, id, &node, &login, why, sizeof(why));
		if (r == 0 || (r != ERR_TIMEOUT && r != ERR_UNAVAILABLE))
			break;
		if (r == ERR_UNAVAILABLE)	/* the server restarts: try again */
			usleep(1000 * 1000);
	}
	control_free(c);
	json_decref(node);
	if (r != 0) {
		free(login);
		if (r == ERR_TIMEOUT)
			snprintf(why, sizeof(why), "nobody logged in in time: run wiremesh up again");
		log_warn("msg=\"interactive login failed\" why=\"%s\"", why);
		return agent_reply_err("%s", why);
	}
	log_info("msg=\"interactive login done\"");
	/* The machine is registered now: an ordinary `up` without a key. */
	again = json_deep_copy(req);
	json_object_del(again, "auth_id");
	json_object_del(again, "force_reauth");
	json_object_del(again, "authkey");
	json_object_set_new(again, "cmd", json_string("up"));
	up = agent_cmd_up(a, again);
	json_decref(again);
	if (json_is_true(json_object_get(up, "ok"))) {
		const char *t = json_string_value(json_object_get(up, "text"));
		struct buf b;

		buf_init(&b, 1 << 16);
		(void)!buf_printf(&b, "Success. Logged in as %s.\n%s", login, t ? t : "");
		if (buf_cstr(&b))
			json_object_set_new(up, "text", json_string(buf_cstr(&b)));
		json_object_set_new(json_object_get(up, "data"), "login", json_string(login));
		buf_cleanup(&b);
	}
	free(login);
	return up;
}
