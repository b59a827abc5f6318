/* SPDX-License-Identifier: MIT */
/*
 * The Prometheus text format's "# HELP" lines: every metric family gets one
 * (promtool check metrics wants them). Producers write "# TYPE" and samples;
 * prom_add_help() inserts the HELP line of each family that has none, from
 * one table of descriptions (common/prom.c), so that the server and the
 * relay describe their families the same way.
 */
#ifndef WM_PROM_H
#define WM_PROM_H

#include "common/buf.h"

/* Rewrites b with a HELP line before every TYPE line of a family that has
 * none (an unknown family gets "wiremesh metric NAME (undocumented)."). 0 or
 * ERR_NOMEM. */
int prom_add_help(struct buf *b);
/* The description of a family, NULL if the table has none. */
const char *prom_help_text(const char *family);

#endif
