/* SPDX-License-Identifier: MIT */
/*
 * The offline policy subcommands of `wiremesh-server policy`:
 *   check FILE                                   exit 0: valid and tests pass;
 *                                                 1: one FILE:LINE:COL: message per problem on stderr
 *   explain [--file F] SRC DST:PORT [--proto P]  exit 0: accept, 1: deny, 2: error
 * They need no server and no database; users named in the file are taken as
 * they are. These functions print (stdout for results, stderr for problems).
 */
#ifndef WM_POLICY_CLI_H
#define WM_POLICY_CLI_H

#include <stddef.h>
#include <stdio.h>

/* argv[0] is the subcommand ("check" or "explain"). Returns the exit code. */
int policy_cli_main(int argc, char **argv);

/* `check` over text already in memory; `name` prefixes the diagnostics. */
int policy_cli_check_text(const char *name, const char *text, size_t len,
			  FILE *out, FILE *err);

/* `explain` over text already in memory (e.g. fetched from the server). */
int policy_cli_explain_text(const char *name, const char *text, size_t len,
			    const char *src, const char *dst, const char *proto,
			    FILE *out, FILE *err);

#endif
