/* SPDX-License-Identifier: MIT */
/* docs/openapi.json, embedded at build time. */
#ifndef WM_OPENAPI_H
#define WM_OPENAPI_H

extern const char openapi_json[];

#endif
