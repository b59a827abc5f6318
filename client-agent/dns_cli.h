/* SPDX-License-Identifier: MIT */
/* `wiremesh dns ...`: the CLI verbs of MagicDNS (dns_cli.c). */
#ifndef WM_DNS_CLI_H
#define WM_DNS_CLI_H

#include <stdbool.h>

/* `wiremesh dns status` and `wiremesh dns query NAME [TYPE] [--tcp] [-6]`;
 * argv[0] is "dns". Returns the exit code. */
int dns_cli_main(const char *sock_path, bool json_out, int argc, char **argv);

#endif
