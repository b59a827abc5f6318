// SPDX-License-Identifier: MIT
/*
 * libFuzzer target: the ALPN parsers of TLS-ALPN-01 (acme_alpn_ext_offered
 * on the ClientHello's extension body, acme_alpn_list_offered on the name
 * list), which see what any TLS client sends to the derper. Invariants: no
 * read outside the input; a "yes" means the input holds the length byte 10
 * followed by "acme-tls/1"; the extension form agrees with the list form on
 * the list after a correct 2-byte length.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/acme.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int
holds(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i + 11 <= n; i++)
		if (p[i] == 10 && memcmp(p + i + 1, "acme-tls/1", 10) == 0)
			return 1;
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* exact-size copies so that ASan sees any over-read */
	uint8_t *buf = malloc(size ? size : 1);
	int l, e;

	if (buf == NULL)
		return 0;
	memcpy(buf, data, size);
	l = acme_alpn_list_offered(buf, size);
	e = acme_alpn_ext_offered(buf, size);
	if ((l != 0 && l != 1) || (e != 0 && e != 1))
		abort();
	if (l && !holds(buf, size))
		abort();
	if (e && (size < 2 || (size_t)((buf[0] << 8) | buf[1]) != size - 2 ||
	    acme_alpn_list_offered(buf + 2, size - 2) != 1))
		abort();
	free(buf);
	return 0;
}
