// SPDX-License-Identifier: MIT
/* policy/hujson: every syntax rule, positions, limits, conversion to jansson. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "policy/hujson.h"

static struct hujson_value *
ok_parse(const char *s)
{
	struct hujson_value *v = NULL;
	struct policy_diag d;

	ck_assert_msg(hujson_parse(s, strlen(s), &v, &d) == 0, "%s: %d:%d %s", s, d.line, d.col,
	    d.msg);
	return v;
}

static void
bad_parse(const char *s, int line, int col, const char *msgpart)
{
	struct hujson_value *v = (void *)1;
	struct policy_diag d;

	ck_assert_int_ne(hujson_parse(s, strlen(s), &v, &d), 0);
	ck_assert_ptr_null(v);
	ck_assert_msg(d.line == line && d.col == col, "%s: got %d:%d (%s), want %d:%d", s,
	    d.line, d.col, d.msg, line, col);
	ck_assert_msg(strstr(d.msg, msgpart) != NULL, "%s: msg '%s' lacks '%s'", s, d.msg, msgpart);
}

START_TEST(test_plain_json)
{
	struct hujson_value *v = ok_parse("{\"a\": [1, -2.5e3, true, false, null, \"x\"]}");
	const struct hujson_value *a = hujson_get(v, "a");

	ck_assert_int_eq(v->type, HUJSON_OBJECT);
	ck_assert_ptr_nonnull(a);
	ck_assert_int_eq(a->type, HUJSON_ARRAY);
	ck_assert_uint_eq(a->len, 6);
	ck_assert(a->items[0]->is_int);
	ck_assert(!a->items[1]->is_int);
	ck_assert(a->items[1]->num == -2500.0);
	ck_assert(a->items[2]->b);
	ck_assert_int_eq(a->items[4]->type, HUJSON_NULL);
	ck_assert_str_eq(a->items[5]->str, "x");
	ck_assert_ptr_null(hujson_get(v, "missing"));
	hujson_free(v);
}
END_TEST

START_TEST(test_comments_and_trailing_commas)
{
	struct hujson_value *v = ok_parse(
	    "// leading comment\n"
	    "{\n"
	    "  /* block\n   comment */ \"a\": [1, 2,], // trailing\n"
	    "  \"b\": {\"c\": \"/* not a comment */\",},\n"
	    "}\n// end");
	const struct hujson_value *a = hujson_get(v, "a"), *b = hujson_get(v, "b");

	ck_assert_uint_eq(a->len, 2);
	ck_assert_str_eq(hujson_get(b, "c")->str, "/* not a comment */");
	hujson_free(v);
}
END_TEST

START_TEST(test_positions)
{
	struct hujson_value *v = ok_parse("{\n  \"k\": [\n    \"x\",\n\t7\n  ]\n}");
	const struct hujson_value *k = hujson_get(v, "k");

	ck_assert_int_eq(v->line, 1);
	ck_assert_int_eq(v->col, 1);
	ck_assert_int_eq(v->members[0].key_line, 2);
	ck_assert_int_eq(v->members[0].key_col, 3);
	ck_assert_int_eq(k->line, 2);
	ck_assert_int_eq(k->col, 8);
	ck_assert_int_eq(k->items[0]->line, 3);
	ck_assert_int_eq(k->items[0]->col, 5);
	ck_assert_int_eq(k->items[1]->line, 4);
	ck_assert_int_eq(k->items[1]->col, 2);
	hujson_free(v);
}
END_TEST

START_TEST(test_strings)
{
	struct hujson_value *v = ok_parse("\"a\\n\\t\\\"\\\\\\/\\u00e9\\ud83d\\ude00\"");

	ck_assert_str_eq(v->str, "a\n\t\"\\/\xc3\xa9\xf0\x9f\x98\x80");
	hujson_free(v);
	v = ok_parse("\"caf\xc3\xa9\"");
	ck_assert_uint_eq(v->len, 5);
	hujson_free(v);
}
END_TEST

START_TEST(test_errors)
{
	bad_parse("", 1, 1, "end of input");
	bad_parse("{", 1, 2, "expected a string key");
	bad_parse("{\"a\" 1}", 1, 6, "expected ':'");
	bad_parse("{\"a\": 1 \"b\": 2}", 1, 9, "expected ',' or '}'");
	bad_parse("[1 2]", 1, 4, "expected ',' or ']'");
	bad_parse("[1,,2]", 1, 4, "expected a value");
	bad_parse("{,}", 1, 2, "expected a string key");
	bad_parse("{\n  \"a\": tru\n}", 2, 8, "unexpected word");
	bad_parse("\"abc", 1, 1, "unterminated string");
	bad_parse("\"a\nb\"", 1, 1, "unterminated string");
	bad_parse("\"\\x\"", 1, 2, "invalid escape");
	bad_parse("\"\\u12\"", 1, 2, "invalid \\u escape");
	bad_parse("\"\\ud800\"", 1, 2, "surrogate");
	bad_parse("\"\\u0000\"", 1, 2, "\\u0000");
	bad_parse("\"\xff\"", 1, 2, "UTF-8");
	bad_parse("\"\xc0\xaf\"", 1, 2, "UTF-8");
	bad_parse("\"a\tb\"", 1, 3, "control character");
	bad_parse("01", 1, 2, "after the top-level value");
	bad_parse("-", 1, 1, "invalid number");
	bad_parse("1.", 1, 1, "invalid number");
	bad_parse("1e", 1, 1, "invalid number");
	bad_parse("1e999", 1, 1, "out of range");
	bad_parse("{} {}", 1, 4, "after the top-level value");
	bad_parse("/* open", 1, 1, "unterminated /* comment");
	bad_parse("{\n\n  /* x\n", 3, 3, "unterminated");
	bad_parse("[1] / 2", 1, 5, "unexpected '/'");
	bad_parse("{\"a\": 1,\n \"a\": 2}", 2, 2, "duplicate key \"a\"");
	bad_parse("'x'", 1, 1, "unexpected");
	bad_parse("[1,]]", 1, 5, "after the top-level value");
}
END_TEST

START_TEST(test_limits)
{
	char *s;
	size_t i, n = HUJSON_MAX_DEPTH + 1;
	struct hujson_value *v = NULL;
	struct policy_diag d;

	s = malloc(2 * n + 1);
	for (i = 0; i < n; i++) {
		s[i] = '[';
		s[n + i] = ']';
	}
	s[2 * n] = '\0';
	ck_assert_int_eq(hujson_parse(s, 2 * n, &v, &d), ERR_INVALID);
	ck_assert(strstr(d.msg, "nesting") != NULL);
	/* One level less is fine. */
	ck_assert_int_eq(hujson_parse(s + 1, 2 * n - 2, &v, &d), 0);
	hujson_free(v);
	free(s);
	s = malloc(HUJSON_MAX_SIZE + 2);
	memset(s, ' ', HUJSON_MAX_SIZE + 1);
	s[0] = '1';
	ck_assert_int_eq(hujson_parse(s, HUJSON_MAX_SIZE + 1, &v, &d), ERR_TOO_LARGE);
	ck_assert_ptr_null(v);
	ck_assert_int_eq(hujson_parse(s, HUJSON_MAX_SIZE, &v, &d), 0);
	hujson_free(v);
	free(s);
	hujson_free(NULL);
}
END_TEST

START_TEST(test_to_json)
{
	const char *t = "{ // config\n \"listen\": \":8080\", \"n\": 42, \"f\": 1.5, \"l\": [true, null,],\n}";
	struct policy_diag d;
	json_t *j = NULL;
	char *dump;

	ck_assert_int_eq(hujson_to_json(t, strlen(t), &j, &d), 0);
	dump = json_dumps(j, JSON_SORT_KEYS | JSON_COMPACT);
	ck_assert_str_eq(dump, "{\"f\":1.5,\"l\":[true,null],\"listen\":\":8080\",\"n\":42}");
	free(dump);
	json_decref(j);
	ck_assert_int_eq(hujson_to_json("{\"a\":}", 6, &j, &d), ERR_INVALID);
	ck_assert_ptr_null(j);
	ck_assert_int_eq(d.line, 1);
	ck_assert_int_eq(d.col, 6);
}
END_TEST

START_TEST(test_bom)
{
	struct hujson_value *v = ok_parse("\xef\xbb\xbf{\"a\": 1}");

	ck_assert_int_eq(v->col, 1);
	hujson_free(v);
}
END_TEST

Suite *
hujson_suite(void)
{
	Suite *s = suite_create("hujson");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, test_plain_json);
	tcase_add_test(tc, test_comments_and_trailing_commas);
	tcase_add_test(tc, test_positions);
	tcase_add_test(tc, test_strings);
	tcase_add_test(tc, test_errors);
	tcase_add_test(tc, test_limits);
	tcase_add_test(tc, test_to_json);
	tcase_add_test(tc, test_bom);
	suite_add_tcase(s, tc);
	return s;
}
