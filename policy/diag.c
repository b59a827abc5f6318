// SPDX-License-Identifier: MIT
/* The bounded diagnostic list shared by the HuJSON parser and the policy loader. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "policy/diag.h"

void
policy_diags_init(struct policy_diags *d)
{
	memset(d, 0, sizeof(*d));
}

void
policy_diags_cleanup(struct policy_diags *d)
{
	if (d == NULL)
		return;
	free(d->v);
	memset(d, 0, sizeof(*d));
}

void
policy_diags_add(struct policy_diags *d, int line, int col, const char *fmt, ...)
{
	struct policy_diag *e;
	va_list ap;

	if (d == NULL)
		return;
	if (d->n >= POLICY_DIAGS_MAX) {
		d->dropped++;
		return;
	}
	if (d->n == d->cap) {
		size_t ncap = d->cap ? d->cap * 2 : 8;
		struct policy_diag *nv = realloc(d->v, ncap * sizeof(*nv));

		if (nv == NULL) {
			d->dropped++;
			return;
		}
		d->v = nv;
		d->cap = ncap;
	}
	e = &d->v[d->n++];
	e->line = line;
	e->col = col;
	va_start(ap, fmt);
	vsnprintf(e->msg, sizeof(e->msg), fmt, ap);
	va_end(ap);
}
