/* SPDX-License-Identifier: MIT */
/* The admin console's files (server/console/), embedded at build time by
 * scripts/embed-assets.sh. */
#ifndef WM_ADMIN_ASSETS_H
#define WM_ADMIN_ASSETS_H

#include <stddef.h>

struct admin_asset {
	const char *name;	/* path under /admin/, e.g. "js/app.js" */
	const char *type;	/* Content-Type */
	const char *data;
	size_t len;
};

extern const struct admin_asset admin_assets[];
extern const unsigned admin_assets_count;

#endif
