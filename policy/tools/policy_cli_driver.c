// SPDX-License-Identifier: MIT
/* Test driver for the offline policy subcommands: policy-cli check|explain ... */
#include <stdio.h>
#include <string.h>

#include "policy/policy_cli.h"

int
main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: policy-cli check FILE | explain [--file F] SRC DST:PORT [--proto P]\n");
		return 2;
	}
	return policy_cli_main(argc - 1, argv + 1);
}
