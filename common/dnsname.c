// SPDX-License-Identifier: MIT
/* DNS names as text: validation, normalisation, suffix tests. */
#include <stdio.h>
#include <string.h>

#include "common/dnsname.h"
#include "common/util.h"

static bool
label_char(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	    c == '-' || c == '_';
}

bool
dnsname_valid(const char *name, char *why, size_t whylen)
{
	size_t len = strlen(name), lab = 0;

	if (len > 0 && name[len - 1] == '.')
		len--;
	if (len == 0) {
		snprintf(why, whylen, "empty name");
		return false;
	}
	if (len > DNSNAME_MAX - 1) {
		snprintf(why, whylen, "name longer than %d bytes", DNSNAME_MAX - 1);
		return false;
	}
	for (size_t i = 0; i <= len; i++) {
		unsigned char c = i < len ? (unsigned char)name[i] : '.';

		if (c == '.') {
			if (lab == 0) {
				snprintf(why, whylen, "empty label in \"%s\"", name);
				return false;
			}
			if (name[i - 1] == '-') {
				snprintf(why, whylen, "label ends with '-' in \"%s\"", name);
				return false;
			}
			lab = 0;
			continue;
		}
		if (!label_char(c)) {
			snprintf(why, whylen, "invalid character '%s%c' in \"%s\" (labels are "
			    "letters, digits, '-' and '_')", c < 0x20 || c >= 0x7f ? "\\" : "",
			    c < 0x20 || c >= 0x7f ? 'x' : (char)c, name);
			return false;
		}
		if (lab == 0 && c == '-') {
			snprintf(why, whylen, "label starts with '-' in \"%s\"", name);
			return false;
		}
		if (++lab > DNSLABEL_MAX) {
			snprintf(why, whylen, "label longer than %d bytes in \"%s\"", DNSLABEL_MAX,
			    name);
			return false;
		}
	}
	return true;
}

void
dnsname_norm(char out[static DNSNAME_MAX], const char *name)
{
	size_t n = str_copy(out, name, DNSNAME_MAX);

	if (n >= DNSNAME_MAX)
		n = DNSNAME_MAX - 1;
	if (n > 0 && out[n - 1] == '.')
		out[--n] = '\0';
	for (size_t i = 0; i < n; i++)
		if (out[i] >= 'A' && out[i] <= 'Z')
			out[i] = (char)(out[i] - 'A' + 'a');
}

bool
dnsname_under(const char *name, const char *domain)
{
	size_t n = strlen(name), d = strlen(domain);

	if (d == 0)
		return true;
	if (n < d || strcasecmp(name + n - d, domain) != 0)
		return false;
	return n == d || name[n - d - 1] == '.';
}
