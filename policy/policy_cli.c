// SPDX-License-Identifier: MIT
/* The offline `policy check` and `policy explain` subcommands. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "policy/policy.h"
#include "policy/policy_cli.h"

/* Reads at most POLICY_MAX_SIZE + 1 bytes so that an oversized file is seen
 * as such without reading all of it. */
static int
read_file(const char *path, char **out, size_t *len, FILE *err)
{
	size_t cap = POLICY_MAX_SIZE + 1, n = 0, k;
	FILE *fp;
	char *b;

	*out = NULL;
	if ((fp = fopen(path, "rb")) == NULL) {
		fprintf(err, "%s: %s\n", path, strerror(errno));
		return -1;
	}
	if ((b = malloc(cap)) == NULL) {
		fclose(fp);
		fprintf(err, "%s: out of memory\n", path);
		return -1;
	}
	while (n < cap && (k = fread(b + n, 1, cap - n, fp)) > 0)
		n += k;
	if (ferror(fp)) {
		fprintf(err, "%s: read error\n", path);
		fclose(fp);
		free(b);
		return -1;
	}
	fclose(fp);
	*out = b;
	*len = n;
	return 0;
}

static void
print_diags(FILE *err, const char *name, const struct policy_diags *d)
{
	size_t i;

	for (i = 0; i < d->n; i++)
		fprintf(err, "%s:%d:%d: %s\n", name, d->v[i].line, d->v[i].col, d->v[i].msg);
	if (d->dropped > 0)
		fprintf(err, "%s: %zu more problems not shown\n", name, d->dropped);
}

int
policy_cli_check_text(const char *name, const char *text, size_t len, FILE *out, FILE *err)
{
	struct policy_diags d;
	struct policy *p = NULL;
	int r;

	policy_diags_init(&d);
	if ((r = policy_load(text, len, &p, &d)) == 0)
		r = policy_run_tests(p, NULL, 0, &d);
	if (r != 0) {
		print_diags(err, name, &d);
	} else {
		fprintf(out, "%s: ok: %zu rules, %zu grants, %zu tests passed\n", name,
		    policy_rule_count(p), policy_grant_count(p), policy_test_count(p));
	}
	policy_free(p);
	policy_diags_cleanup(&d);
	return r == 0 ? 0 : 1;
}

int
policy_cli_explain_text(const char *name, const char *text, size_t len, const char *src,
			const char *dst, const char *proto, FILE *out, FILE *err)
{
	struct policy_diags d;
	struct policy *p = NULL;
	struct buf b;
	int r, code = 2;

	policy_diags_init(&d);
	buf_init(&b, 64 * 1024);
	if (policy_load(text, len, &p, &d) != 0) {
		print_diags(err, name, &d);
		goto out;
	}
	r = policy_explain(p, src, dst, proto, &b);
	if (b.len > 0)
		fwrite(b.data, 1, b.len, r < 0 ? err : out);
	code = r == 1 ? 0 : r == 0 ? 1 : 2;
out:
	buf_cleanup(&b);
	policy_free(p);
	policy_diags_cleanup(&d);
	return code;
}

static int
usage(void)
{
	fprintf(stderr, "usage: policy check FILE\n"
	    "       policy explain [--file F] SRC DST:PORT [--proto P]\n");
	return 2;
}

int
policy_cli_main(int argc, char **argv)
{
	const char *file = NULL, *proto = NULL, *pos[2] = { NULL, NULL };
	char *text = NULL;
	size_t len = 0;
	int i, npos = 0, r;

	if (argc < 1)
		return usage();
	for (i = 0; i < argc; i++) {
		if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
			printf("usage: policy check FILE\n"
			    "       policy explain [--file F] SRC DST:PORT [--proto P]\n\n"
			    "check    validates FILE and runs its tests, offline; exit 0 when valid\n"
			    "         and every test passes, else one FILE:LINE:COL: message per problem.\n"
			    "explain  accept or deny for one packet, and the rules that decided it\n"
			    "         (--file defaults to $WIREMESH_POLICY_FILE).\n");
			return 0;
		}
	}
	if (strcmp(argv[0], "check") == 0) {
		if (argc != 2)
			return usage();
		if (read_file(argv[1], &text, &len, stderr) != 0)
			return 1;
		r = policy_cli_check_text(argv[1], text, len, stdout, stderr);
		free(text);
		return r;
	}
	if (strcmp(argv[0], "explain") != 0)
		return usage();
	for (i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--file") == 0 || strcmp(argv[i], "-f") == 0) {
			if (++i >= argc)
				return usage();
			file = argv[i];
		} else if (strcmp(argv[i], "--proto") == 0) {
			if (++i >= argc)
				return usage();
			proto = argv[i];
		} else if (npos < 2) {
			pos[npos++] = argv[i];
		} else {
			return usage();
		}
	}
	if (npos != 2)
		return usage();
	if (file == NULL)
		file = getenv("WIREMESH_POLICY_FILE");
	if (file == NULL) {
		fprintf(stderr, "policy explain: no policy file (use --file F)\n");
		return 2;
	}
	if (read_file(file, &text, &len, stderr) != 0)
		return 2;
	r = policy_cli_explain_text(file, text, len, pos[0], pos[1], proto, stdout, stderr);
	free(text);
	return r;
}
