/* SPDX-License-Identifier: MIT */
/*
 * The admin CLI of wiremesh-server: verbs that talk to the REST API with an
 * API key (--server/--api-key or WIREMESH_SERVER/WIREMESH_API_KEY), plus the
 * local bootstrap `apikeys create --db PATH`.
 */
#ifndef WM_CLI_H
#define WM_CLI_H

/* argv[0] is the noun ("users", "nodes", ...). Returns the exit status. */
int cli_main(int argc, char **argv);
void cli_usage(void);

#endif
