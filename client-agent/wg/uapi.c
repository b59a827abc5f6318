// SPDX-License-Identifier: MIT
/*
 * UAPI text protocol. Keys are lowercase hex, endpoints numeric, allowed IPs
 * "addr/cidr". Device keys come first; each public_key line opens a peer
 * section. Numbers are parsed strictly. Every list is bounded: peers by
 * WG_MAX_PEERS, allowed IPs by WG_MAX_ALLOWED_IPS, the request by
 * WG_UAPI_MAX_REQUEST.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client-agent/wg/crypto.h"
#include "client-agent/wg/uapi.h"
#include "common/keys.h"

static int
parse_u64(const char *s, uint64_t max, uint64_t *out)
{
	uint64_t v = 0;

	if (*s == '\0')
		return -EINVAL;
	for (; *s; s++) {
		if (*s < '0' || *s > '9')
			return -EINVAL;
		if (v > (max - (uint64_t)(*s - '0')) / 10)
			return -EINVAL;
		v = v * 10 + (uint64_t)(*s - '0');
	}
	*out = v;
	return 0;
}

static int
parse_key(const char *s, uint8_t out[WG_KEY_LEN])
{
	if (strlen(s) != 2 * WG_KEY_LEN)
		return -EINVAL;
	return key_from_hex(out, s) == 0 ? 0 : -EINVAL;
}

static int
parse_bool_true(const char *v)
{
	if (strcmp(v, "true") == 0)
		return 1;
	if (strcmp(v, "false") == 0)
		return 0;
	return -EINVAL;
}

void
wg_uapi_set_cleanup(struct wg_uapi_set *s)
{
	for (size_t i = 0; i < s->n_peers; i++)
		free(s->peers[i].aips);
	free(s->peers);
	wg_wipe(s, sizeof(*s));
}

static int
peer_line(struct wg_uapi_set *s, struct wg_uapi_peer *p, size_t *total_aips, const char *k,
	  const char *v)
{
	uint64_t n;
	int b;

	if (strcmp(k, "remove") == 0 || strcmp(k, "update_only") == 0 ||
	    strcmp(k, "replace_allowed_ips") == 0) {
		if ((b = parse_bool_true(v)) < 0)
			return b;
		if (!b)
			return 0;
		p->cfg.flags |= k[0] == 'r' && k[2] == 'm' ? WG_PEER_REMOVE
			      : k[0] == 'u' ? WG_PEER_UPDATE_ONLY : WG_PEER_REPLACE_ALLOWED_IPS;
		return 0;
	}
	if (strcmp(k, "preshared_key") == 0) {
		p->cfg.flags |= WG_PEER_HAS_PSK;
		return parse_key(v, p->cfg.preshared_key);
	}
	if (strcmp(k, "endpoint") == 0) {
		p->cfg.flags |= WG_PEER_HAS_ENDPOINT;
		return endpoint_parse(v, &p->cfg.endpoint) == 0 ? 0 : -EINVAL;
	}
	if (strcmp(k, "persistent_keepalive_interval") == 0) {
		if (parse_u64(v, 65535, &n) != 0)
			return -EINVAL;
		p->cfg.flags |= WG_PEER_HAS_KEEPALIVE;
		p->cfg.persistent_keepalive = (uint16_t)n;
		return 0;
	}
	if (strcmp(k, "allowed_ip") == 0) {
		struct ip_prefix pf;

		if (prefix_parse(v, true, &pf) != 0)
			return -EINVAL;
		if (*total_aips >= WG_MAX_ALLOWED_IPS)
			return -ENOSPC;
		if (p->cfg.n_allowed_ips == p->cap) {
			size_t cap = p->cap ? p->cap * 2 : 8;
			struct ip_prefix *a = realloc(p->aips, cap * sizeof(*a));

			if (a == NULL)
				return -ENOMEM;
			p->aips = a;
			p->cap = cap;
		}
		p->aips[p->cfg.n_allowed_ips++] = pf;
		(*total_aips)++;
		return 0;
	}
	if (strcmp(k, "protocol_version") == 0)
		return strcmp(v, "1") == 0 ? 0 : -EPROTO;
	(void)s;
	return -EINVAL;
}

int
wg_uapi_parse_set(const char *body, size_t len, struct wg_uapi_set *out)
{
	struct wg_uapi_set s;
	size_t pos = 0, total_aips = 0;
	char line[512];
	int r = 0;

	memset(&s, 0, sizeof(s));
	if (len > WG_UAPI_MAX_REQUEST)
		return -EINVAL;
	while (pos < len) {
		const char *nl = memchr(body + pos, '\n', len - pos);
		size_t ll = nl ? (size_t)(nl - (body + pos)) : len - pos;
		char *eq, *k, *v;

		if (ll >= sizeof(line) || memchr(body + pos, '\0', ll)) {
			r = -EINVAL;
			goto out;
		}
		memcpy(line, body + pos, ll);
		line[ll] = '\0';
		pos += ll + 1;
		if (ll == 0)
			continue;
		eq = strchr(line, '=');
		if (eq == NULL) {
			r = -EPROTO;
			goto out;
		}
		*eq = '\0';
		k = line;
		v = eq + 1;
		if (strcmp(k, "public_key") == 0) {
			struct wg_uapi_peer *p;

			if (s.n_peers >= WG_MAX_PEERS) {
				r = -ENOSPC;
				goto out;
			}
			if (s.n_peers == s.cap_peers) {
				size_t cap = s.cap_peers ? s.cap_peers * 2 : 4;
				struct wg_uapi_peer *np = realloc(s.peers, cap * sizeof(*np));

				if (np == NULL) {
					r = -ENOMEM;
					goto out;
				}
				s.peers = np;
				s.cap_peers = cap;
			}
			p = &s.peers[s.n_peers++];
			memset(p, 0, sizeof(*p));
			if ((r = parse_key(v, p->cfg.public_key)) != 0)
				goto out;
			continue;
		}
		if (s.n_peers > 0) {
			if ((r = peer_line(&s, &s.peers[s.n_peers - 1], &total_aips, k, v)) != 0)
				goto out;
			continue;
		}
		if (strcmp(k, "private_key") == 0) {
			s.has_private_key = true;
			if ((r = parse_key(v, s.private_key)) != 0)
				goto out;
		} else if (strcmp(k, "listen_port") == 0) {
			uint64_t n;

			if (parse_u64(v, 65535, &n) != 0) {
				r = -EINVAL;
				goto out;
			}
			s.has_listen_port = true;
			s.listen_port = (uint16_t)n;
		} else if (strcmp(k, "fwmark") == 0) {
			uint64_t n;

			if (parse_u64(v, UINT32_MAX, &n) != 0) {
				r = -EINVAL;
				goto out;
			}
			s.has_fwmark = true;
			s.fwmark = (uint32_t)n;
		} else if (strcmp(k, "replace_peers") == 0) {
			int b = parse_bool_true(v);

			if (b < 0) {
				r = b;
				goto out;
			}
			s.replace_peers = b;
		} else {
			r = -EINVAL;
			goto out;
		}
	}
	for (size_t i = 0; i < s.n_peers; i++)
		s.peers[i].cfg.allowed_ips = s.peers[i].aips;
out:
	wg_wipe(line, sizeof(line));
	if (r != 0) {
		wg_uapi_set_cleanup(&s);
		return r;
	}
	*out = s;
	return 0;
}

static int
to_errno(int err)
{
	switch (err) {
	case 0:
		return 0;
	case ERR_EXISTS:
		return -EADDRINUSE;
	case ERR_NOMEM:
		return -ENOMEM;
	case ERR_EXHAUSTED:
		return -ENOSPC;
	case ERR_INVALID:
		return -EINVAL;
	default:
		return -EIO;
	}
}

int
wg_uapi_apply_set(struct wg_device *dev, const struct wg_uapi_set *s)
{
	int r;

	if (s->has_private_key &&
	    (r = wg_device_set_private_key(dev, s->private_key)) != 0)
		return to_errno(r);
	if (s->has_listen_port && (r = wg_device_set_listen_port(dev, s->listen_port)) != 0)
		return to_errno(r);
	if (s->has_fwmark && (r = wg_device_set_fwmark(dev, s->fwmark)) != 0)
		return to_errno(r);
	if (s->replace_peers)
		wg_device_peers_clear(dev);
	for (size_t i = 0; i < s->n_peers; i++)
		if ((r = wg_device_peer_set(dev, &s->peers[i].cfg)) != 0)
			return to_errno(r);
	return 0;
}

struct sbuf {
	char *p;
	size_t len, cap;
	bool oom;
};

static void
sb_printf(struct sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
sb_printf(struct sbuf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (b->oom)
		return;
	for (;;) {
		va_start(ap, fmt);
		n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
		va_end(ap);
		if (n < 0) {
			b->oom = true;
			return;
		}
		if ((size_t)n < b->cap - b->len) {
			b->len += (size_t)n;
			return;
		}
		size_t cap = b->cap * 2 + (size_t)n + 64;
		char *p = realloc(b->p, cap);

		if (p == NULL) {
			b->oom = true;
			return;
		}
		b->p = p;
		b->cap = cap;
	}
}

static void
sb_key(struct sbuf *b, const char *name, const uint8_t key[WG_KEY_LEN])
{
	char hex[2 * WG_KEY_LEN + 1];

	(void)hex_encode(hex, sizeof(hex), key, WG_KEY_LEN);
	sb_printf(b, "%s=%s\n", name, hex);
	wg_wipe(hex, sizeof(hex));
}

int
wg_uapi_format_get(struct wg_device *dev, char **out, size_t *len)
{
	struct wg_device_info *info = NULL;
	struct sbuf b = { 0 };
	int r;

	*out = NULL;
	if ((r = wg_device_get_info(dev, &info)) != 0)
		return -ENOMEM;
	b.cap = 1024;
	b.p = malloc(b.cap);
	if (b.p == NULL) {
		wg_device_info_free(info);
		return -ENOMEM;
	}
	if (info->has_private_key)
		sb_key(&b, "private_key", info->private_key);
	if (info->listen_port)
		sb_printf(&b, "listen_port=%u\n", info->listen_port);
	if (info->fwmark)
		sb_printf(&b, "fwmark=%u\n", info->fwmark);
	for (size_t i = 0; i < info->n_peers; i++) {
		const struct wg_peer_info *p = &info->peers[i];
		char s[ADDR_STR_MAX];

		sb_key(&b, "public_key", p->public_key);
		sb_key(&b, "preshared_key", p->preshared_key);
		sb_printf(&b, "protocol_version=1\n");
		if (p->has_endpoint) {
			endpoint_fmt(s, &p->endpoint);
			sb_printf(&b, "endpoint=%s\n", s);
		}
		sb_printf(&b, "last_handshake_time_sec=%lld\nlast_handshake_time_nsec=%lld\n",
			  (long long)p->last_handshake_sec, (long long)p->last_handshake_nsec);
		sb_printf(&b, "tx_bytes=%llu\nrx_bytes=%llu\n", (unsigned long long)p->tx_bytes,
			  (unsigned long long)p->rx_bytes);
		sb_printf(&b, "persistent_keepalive_interval=%u\n", p->persistent_keepalive);
		for (size_t j = 0; j < p->n_allowed_ips; j++) {
			prefix_fmt(s, &p->allowed_ips[j]);
			sb_printf(&b, "allowed_ip=%s\n", s);
		}
	}
	sb_printf(&b, "errno=0\n\n");
	wg_device_info_free(info);
	if (b.oom) {
		wg_wipe(b.p, b.len);
		free(b.p);
		return -ENOMEM;
	}
	*out = b.p;
	*len = b.len;
	return 0;
}

int
wg_uapi_handle(struct wg_device *dev, const char *req, size_t len, char **out, size_t *outlen)
{
	struct wg_uapi_set s;
	char buf[32];
	int r;

	*out = NULL;
	if (len >= 6 && memcmp(req, "get=1\n", 6) == 0) {
		if ((r = wg_uapi_format_get(dev, out, outlen)) == 0)
			return 0;
	} else if (len >= 6 && memcmp(req, "set=1\n", 6) == 0) {
		if ((r = wg_uapi_parse_set(req + 6, len - 6, &s)) == 0) {
			r = wg_uapi_apply_set(dev, &s);
			wg_uapi_set_cleanup(&s);
		}
	} else {
		r = -EINVAL;
	}
	snprintf(buf, sizeof(buf), "errno=%d\n\n", r);
	*out = strdup(buf);
	if (*out == NULL)
		return -ENOMEM;
	*outlen = strlen(buf);
	return 0;
}
