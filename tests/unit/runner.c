// SPDX-License-Identifier: MIT
/* The one Check runner: every suite from tests/unit/NAME_test.c. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <check.h>

#define SUITE(name) Suite *name##_suite(void);
#include "suites.inc"
#undef SUITE

int
main(int argc, char **argv)
{
	SRunner *sr = srunner_create(NULL);
	int failed;

#define SUITE(name) \
	if (argc < 2 || strcmp(argv[1], #name) == 0) \
		srunner_add_suite(sr, name##_suite());
#include "suites.inc"
#undef SUITE
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
