// SPDX-License-Identifier: MIT
/* OS DNS configuration: resolv.conf with a saved original, or resolvectl. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "client-agent/dns_os.h"
#include "common/log.h"
#include "common/proc.h"
#include "common/util.h"

#define RESOLV_CONF "/etc/resolv.conf"
#define RESOLVED_UPSTREAM "/run/systemd/resolve/resolv.conf"
#define MARKER "# resolv.conf written by wiremeshd (MagicDNS)"

enum { RESOLV_MAX = 64 * 1024 };

static char *
slurp(const char *path, size_t *len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	char *b;
	ssize_t n;
	size_t got = 0;

	if (fd < 0)
		return NULL;
	if ((b = malloc(RESOLV_MAX + 1)) == NULL) {
		close(fd);
		return NULL;
	}
	while (got < RESOLV_MAX && (n = read(fd, b + got, RESOLV_MAX - got)) > 0)
		got += (size_t)n;
	close(fd);
	b[got] = '\0';
	*len = got;
	return b;
}

/* Writes in place (a bind-mounted file cannot be renamed over). */
static int
write_file(const char *path, const char *data, size_t len, bool in_place)
{
	char tmp[1100];
	int fd;
	ssize_t n;

	if (!in_place) {
		snprintf(tmp, sizeof(tmp), "%s.tmp", path);
		if ((fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644)) < 0)
			return ERR_IO;
		n = write(fd, data, len);
		if (n != (ssize_t)len || fsync(fd) != 0) {
			close(fd);
			unlink(tmp);
			return ERR_IO;
		}
		close(fd);
		return rename(tmp, path) == 0 ? 0 : ERR_IO;
	}
	if ((fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644)) < 0)
		return ERR_IO;
	n = write(fd, data, len);
	close(fd);
	return n == (ssize_t)len ? 0 : ERR_IO;
}

static void
state_path(char out[static 1024], const char *dir, const char *name)
{
	snprintf(out, 1024, "%s/%s", dir, name);
}

enum dns_os_mode
dns_os_detect(void)
{
	size_t len;
	char *t;
	bool stub;

	if (access("/run/systemd/resolve", F_OK) != 0 || access("/usr/bin/resolvectl", X_OK) != 0)
		return DNS_OS_FILE;
	if ((t = slurp(RESOLV_CONF, &len)) == NULL)
		return DNS_OS_FILE;
	stub = strstr(t, "nameserver 127.0.0.53") != NULL;
	free(t);
	return stub ? DNS_OS_RESOLVED : DNS_OS_FILE;
}

const char *
dns_os_mode_name(enum dns_os_mode m)
{
	return m == DNS_OS_RESOLVED ? "systemd-resolved" : m == DNS_OS_FILE ? "resolv.conf" : "none";
}

bool
dns_os_wanted(const struct resolver_config *c)
{
	return c->magic_dns || c->nglobal > 0 || c->nsplit > 0 || c->nextra > 0;
}

static int
run(const char *const argv[], char *why, size_t whylen)
{
	char err[256];

	if (proc_run(argv, err, sizeof(err)) != 0) {
		snprintf(why, whylen, "%s %s: %s", argv[0], argv[1], err);
		return ERR_IO;
	}
	return 0;
}

static int
apply_resolved(const char *ifname, const struct resolver_config *c, char *why, size_t whylen)
{
	const char *dns[] = { "resolvectl", "dns", ifname, RESOLVER_ADDR4, RESOLVER_ADDR6, NULL };
	const char *dom[4 + 1 + RESOLVER_MAX_SPLIT + RESOLVER_MAX_SEARCH + 1];
	char names[1 + RESOLVER_MAX_SPLIT][DNSNAME_MAX + 1];
	const char *route[] = { "resolvectl", "default-route", ifname,
				c->nglobal ? "yes" : "no", NULL };
	size_t n = 0, k = 0;
	int r;

	dom[n++] = "resolvectl";
	dom[n++] = "domain";
	dom[n++] = ifname;
	if (c->magic_dns) {
		snprintf(names[k], sizeof(names[k]), "~%s", c->base_domain);
		dom[n++] = names[k++];
	}
	for (size_t i = 0; i < c->nsplit; i++) {
		snprintf(names[k], sizeof(names[k]), "~%s", c->split[i].domain);
		dom[n++] = names[k++];
	}
	for (size_t i = 0; i < c->nsearch; i++)
		dom[n++] = c->search[i];
	if (c->nglobal)
		dom[n++] = "~.";
	dom[n] = NULL;
	if ((r = run(dns, why, whylen)) != 0 || (r = run(dom, why, whylen)) != 0 ||
	    (r = run(route, why, whylen)) != 0)
		return r;
	return 0;
}

static int
apply_file(const char *state_dir, const struct resolver_config *c, char *why, size_t whylen)
{
	char orig[1024], link[1024], absent[1024], target[1024], *cur, text[8192];
	size_t len = 0, tl = 0;
	struct stat st;
	bool is_link = lstat(RESOLV_CONF, &st) == 0 && S_ISLNK(st.st_mode);
	int r;

	state_path(orig, state_dir, "resolv.conf.orig");
	state_path(link, state_dir, "resolv.conf.link");
	state_path(absent, state_dir, "resolv.conf.absent");
	cur = slurp(RESOLV_CONF, &len);
	if (access(orig, F_OK) != 0 && (cur == NULL || strncmp(cur, MARKER, strlen(MARKER)) != 0)) {
		/* No file at all: restoring removes ours. */
		if (cur == NULL && !is_link && access(RESOLV_CONF, F_OK) != 0 &&
		    write_file(absent, "", 0, false) != 0) {
			snprintf(why, whylen, "cannot write %s: %s", absent, strerror(errno));
			return ERR_IO;
		}
		/* Save the original first: exact bytes, or the link's target. */
		if (is_link) {
			ssize_t n = readlink(RESOLV_CONF, target, sizeof(target) - 1);

			if (n <= 0 || write_file(link, target, (size_t)n, false) != 0) {
				snprintf(why, whylen, "cannot save the resolv.conf link: %s",
				    strerror(errno));
				free(cur);
				return ERR_IO;
			}
		}
		if (write_file(orig, cur ? cur : "", cur ? len : 0, false) != 0) {
			snprintf(why, whylen, "cannot save %s to %s: %s", RESOLV_CONF, orig,
			    strerror(errno));
			free(cur);
			return ERR_IO;
		}
	}
	tl += (size_t)snprintf(text + tl, sizeof(text) - tl, MARKER "; the original is in\n"
	    "# %s and comes back on `wiremesh down` or when wiremeshd stops.\n"
	    "nameserver %s\n", orig, RESOLVER_ADDR4);
	if (c->magic_dns || c->nsearch) {
		tl += (size_t)snprintf(text + tl, sizeof(text) - tl, "search");
		if (c->magic_dns)
			tl += (size_t)snprintf(text + tl, sizeof(text) - tl, " %s", c->base_domain);
		for (size_t i = 0; i < c->nsearch && tl < sizeof(text) - DNSNAME_MAX - 4; i++)
			tl += (size_t)snprintf(text + tl, sizeof(text) - tl, " %s", c->search[i]);
		tl += (size_t)snprintf(text + tl, sizeof(text) - tl, "\n");
	}
	if (cur && len == tl && memcmp(cur, text, tl) == 0) {
		free(cur);
		return 0;
	}
	free(cur);
	if (is_link && unlink(RESOLV_CONF) != 0) {
		snprintf(why, whylen, "cannot replace the %s link: %s", RESOLV_CONF, strerror(errno));
		return ERR_IO;
	}
	if ((r = write_file(RESOLV_CONF, text, tl, true)) != 0) {
		snprintf(why, whylen, "cannot write %s: %s", RESOLV_CONF, strerror(errno));
		return r;
	}
	log_info("msg=\"dns: resolv.conf points at the resolver\" saved=%s", orig);
	return 0;
}

int
dns_os_apply(enum dns_os_mode m, const char *state_dir, const char *ifname,
	     const struct resolver_config *c, char *why, size_t whylen)
{
	if (m == DNS_OS_RESOLVED)
		return apply_resolved(ifname, c, why, whylen);
	if (m == DNS_OS_FILE)
		return apply_file(state_dir, c, why, whylen);
	return 0;
}

bool
dns_os_restore(enum dns_os_mode m, const char *state_dir, const char *ifname)
{
	char orig[1024], link[1024], absent[1024], target[1024], *saved, *cur;
	size_t len = 0, clen = 0, tlen = 0;
	bool restored = false;

	if (m == DNS_OS_RESOLVED) {
		const char *argv[] = { "resolvectl", "revert", ifname, NULL };
		char err[256];

		if (ifname[0] && proc_run(argv, err, sizeof(err)) != 0)
			log_debug("msg=\"resolvectl revert failed\" err=\"%s\"", err);
		return ifname[0] != '\0';
	}
	state_path(orig, state_dir, "resolv.conf.orig");
	state_path(link, state_dir, "resolv.conf.link");
	state_path(absent, state_dir, "resolv.conf.absent");
	if ((saved = slurp(orig, &len)) == NULL)
		return false;
	cur = slurp(RESOLV_CONF, &clen);
	if (cur != NULL && strncmp(cur, MARKER, strlen(MARKER)) != 0) {
		/* Someone else wrote it since: theirs wins; our copy is stale. */
		log_warn("msg=\"dns: resolv.conf was changed by someone else; not restoring\" "
		    "saved=%s", orig);
	} else {
		char *t = slurp(link, &tlen);

		if (access(absent, F_OK) == 0) {
			restored = unlink(RESOLV_CONF) == 0 || errno == ENOENT;
		} else if (t != NULL && tlen > 0 && tlen < sizeof(target)) {
			memcpy(target, t, tlen);
			target[tlen] = '\0';
			if ((unlink(RESOLV_CONF) == 0 || errno == ENOENT) &&
			    symlink(target, RESOLV_CONF) == 0)
				restored = true;
		} else if (write_file(RESOLV_CONF, saved, len, true) == 0) {
			restored = true;
		}
		free(t);
		if (!restored) {
			log_error("msg=\"dns: cannot restore resolv.conf\" saved=%s err=\"%s\"", orig,
			    strerror(errno));
			free(saved);
			free(cur);
			return false;
		}
		log_info("msg=\"dns: resolv.conf restored\"");
	}
	unlink(orig);
	unlink(link);
	unlink(absent);
	free(saved);
	free(cur);
	return restored;
}

size_t
dns_os_host_resolvers(enum dns_os_mode m, const char *state_dir, struct ip_addr *out, size_t max)
{
	char orig[1024], *t, *save = NULL;
	size_t len, n = 0;

	state_path(orig, state_dir, "resolv.conf.orig");
	if (m == DNS_OS_RESOLVED)
		t = slurp(RESOLVED_UPSTREAM, &len);
	else if ((t = slurp(orig, &len)) == NULL)
		t = slurp(RESOLV_CONF, &len);
	if (t == NULL)
		return 0;
	for (char *line = strtok_r(t, "\n", &save); line && n < max; line = strtok_r(NULL, "\n", &save)) {
		char word[32], val[128];
		struct ip_addr a;

		if (sscanf(line, " %31s %127s", word, val) != 2 || strcmp(word, "nameserver") != 0)
			continue;
		if (strchr(val, '%'))
			*strchr(val, '%') = '\0';	/* link-local zone: not supported */
		if (addr_parse(val, &a) != 0 || strcmp(val, RESOLVER_ADDR4) == 0 ||
		    strcmp(val, RESOLVER_ADDR6) == 0)
			continue;
		out[n++] = a;
	}
	free(t);
	return n;
}
