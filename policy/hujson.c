// SPDX-License-Identifier: MIT
/*
 * A recursive-descent HuJSON parser. Every value and key records where it
 * starts; nesting is limited to HUJSON_MAX_DEPTH so recursion is bounded, and
 * the input to HUJSON_MAX_SIZE bytes so the tree is bounded too (every value
 * consumes at least one byte of input).
 */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "policy/hujson.h"

struct parser {
	const char *s;
	size_t len, pos;
	int line;
	size_t line_start;
	struct policy_diag *diag;
	int err;
};

static int
col_of(const struct parser *p, size_t pos)
{
	return (int)(pos - p->line_start) + 1;
}

__attribute__((format(printf, 3, 4)))
static void
fail_at(struct parser *p, size_t pos, const char *fmt, ...)
{
	va_list ap;

	if (p->err != 0)
		return;
	p->err = ERR_INVALID;
	if (p->diag == NULL)
		return;
	p->diag->line = p->line;
	p->diag->col = col_of(p, pos);
	va_start(ap, fmt);
	vsnprintf(p->diag->msg, sizeof(p->diag->msg), fmt, ap);
	va_end(ap);
}

static void
describe(const struct parser *p, char *out, size_t n)
{
	unsigned char c;

	if (p->pos >= p->len) {
		snprintf(out, n, "end of input");
		return;
	}
	c = (unsigned char)p->s[p->pos];
	if (c >= 0x20 && c < 0x7f)
		snprintf(out, n, "'%c'", c);
	else
		snprintf(out, n, "byte 0x%02x", c);
}

static void
advance(struct parser *p)
{
	if (p->s[p->pos] == '\n') {
		p->line++;
		p->line_start = p->pos + 1;
	}
	p->pos++;
}

/* Skips whitespace and comments. */
static void
skip_ws(struct parser *p)
{
	while (p->pos < p->len && p->err == 0) {
		char c = p->s[p->pos];

		if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
			advance(p);
		} else if (c == '/' && p->pos + 1 < p->len && p->s[p->pos + 1] == '/') {
			while (p->pos < p->len && p->s[p->pos] != '\n')
				p->pos++;
		} else if (c == '/' && p->pos + 1 < p->len && p->s[p->pos + 1] == '*') {
			int line = p->line;
			size_t start = p->pos, ls = p->line_start;

			p->pos += 2;
			for (;;) {
				if (p->pos + 1 >= p->len) {
					p->line = line;
					p->line_start = ls;
					fail_at(p, start, "unterminated /* comment");
					return;
				}
				if (p->s[p->pos] == '*' && p->s[p->pos + 1] == '/') {
					p->pos += 2;
					break;
				}
				advance(p);
			}
		} else if (c == '/') {
			fail_at(p, p->pos, "unexpected '/' (comments are // or /* */)");
		} else {
			break;
		}
	}
}

static struct hujson_value *
new_value(struct parser *p, enum hujson_type t, size_t pos)
{
	struct hujson_value *v = calloc(1, sizeof(*v));

	if (v == NULL) {
		p->err = ERR_NOMEM;
		return NULL;
	}
	v->type = t;
	v->line = p->line;
	v->col = col_of(p, pos);
	return v;
}

/* Length of the UTF-8 sequence at s (>= 1), or 0 when it is not valid UTF-8. */
static size_t
utf8_len(const unsigned char *s, size_t n)
{
	uint32_t cp;
	size_t k, i;

	if (s[0] < 0x80)
		return 1;
	if (s[0] >= 0xc2 && s[0] <= 0xdf)
		k = 2, cp = s[0] & 0x1f;
	else if (s[0] >= 0xe0 && s[0] <= 0xef)
		k = 3, cp = s[0] & 0x0f;
	else if (s[0] >= 0xf0 && s[0] <= 0xf4)
		k = 4, cp = s[0] & 0x07;
	else
		return 0;
	if (k > n)
		return 0;
	for (i = 1; i < k; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (s[i] & 0x3f);
	}
	if ((k == 3 && cp < 0x800) || (k == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
	    (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return k;
}

static size_t
put_utf8(char *out, uint32_t cp)
{
	if (cp < 0x80) {
		out[0] = (char)cp;
		return 1;
	}
	if (cp < 0x800) {
		out[0] = (char)(0xc0 | (cp >> 6));
		out[1] = (char)(0x80 | (cp & 0x3f));
		return 2;
	}
	if (cp < 0x10000) {
		out[0] = (char)(0xe0 | (cp >> 12));
		out[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
		out[2] = (char)(0x80 | (cp & 0x3f));
		return 3;
	}
	out[0] = (char)(0xf0 | (cp >> 18));
	out[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
	out[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
	out[3] = (char)(0x80 | (cp & 0x3f));
	return 4;
}

static int
hex4(const char *s, uint32_t *out)
{
	uint32_t v = 0;
	int i;

	for (i = 0; i < 4; i++) {
		char c = s[i];

		v <<= 4;
		if (c >= '0' && c <= '9')
			v |= (uint32_t)(c - '0');
		else if (c >= 'a' && c <= 'f')
			v |= (uint32_t)(c - 'a' + 10);
		else if (c >= 'A' && c <= 'F')
			v |= (uint32_t)(c - 'A' + 10);
		else
			return -1;
	}
	*out = v;
	return 0;
}

/* Parses a string starting at the opening quote; returns a malloc'd copy. */
static char *
parse_string(struct parser *p, size_t *lenp)
{
	size_t start = p->pos, i, n = 0;
	char *out;

	/* The decoded form is never longer than the source. */
	p->pos++;
	for (i = p->pos; i < p->len && p->s[i] != '"'; i++) {
		if (p->s[i] == '\\' && i + 1 < p->len)
			i++;
		if (p->s[i] == '\n')
			break;
	}
	if (i >= p->len || p->s[i] != '"') {
		fail_at(p, start, "unterminated string");
		return NULL;
	}
	if ((out = malloc(i - p->pos + 1)) == NULL) {
		p->err = ERR_NOMEM;
		return NULL;
	}
	while (p->s[p->pos] != '"') {
		unsigned char c = (unsigned char)p->s[p->pos];

		if (c < 0x20) {
			fail_at(p, p->pos, "control character in string");
			goto bad;
		}
		if (c == '\\') {
			char e = p->s[p->pos + 1];
			uint32_t cp, lo;

			switch (e) {
			case '"': out[n++] = '"'; break;
			case '\\': out[n++] = '\\'; break;
			case '/': out[n++] = '/'; break;
			case 'b': out[n++] = '\b'; break;
			case 'f': out[n++] = '\f'; break;
			case 'n': out[n++] = '\n'; break;
			case 'r': out[n++] = '\r'; break;
			case 't': out[n++] = '\t'; break;
			case 'u':
				if (p->pos + 6 > p->len || hex4(p->s + p->pos + 2, &cp) != 0) {
					fail_at(p, p->pos, "invalid \\u escape");
					goto bad;
				}
				if (cp >= 0xd800 && cp <= 0xdbff) {
					if (p->pos + 12 > p->len || p->s[p->pos + 6] != '\\' ||
					    p->s[p->pos + 7] != 'u' ||
					    hex4(p->s + p->pos + 8, &lo) != 0 ||
					    lo < 0xdc00 || lo > 0xdfff) {
						fail_at(p, p->pos, "unpaired UTF-16 surrogate in \\u escape");
						goto bad;
					}
					cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
					p->pos += 6;
				} else if (cp >= 0xdc00 && cp <= 0xdfff) {
					fail_at(p, p->pos, "unpaired UTF-16 surrogate in \\u escape");
					goto bad;
				}
				if (cp == 0) {
					fail_at(p, p->pos, "\\u0000 is not allowed in strings");
					goto bad;
				}
				n += put_utf8(out + n, cp);
				p->pos += 4;
				break;
			default:
				fail_at(p, p->pos, "invalid escape sequence");
				goto bad;
			}
			p->pos += 2;
		} else {
			size_t k = utf8_len((const unsigned char *)p->s + p->pos, p->len - p->pos);

			if (k == 0) {
				fail_at(p, p->pos, "invalid UTF-8 in string");
				goto bad;
			}
			memcpy(out + n, p->s + p->pos, k);
			n += k;
			p->pos += k;
		}
	}
	p->pos++;	/* closing quote */
	out[n] = '\0';
	*lenp = n;
	return out;
bad:
	free(out);
	return NULL;
}

static bool
is_digit(char c)
{
	return c >= '0' && c <= '9';
}

static void
parse_number(struct parser *p, struct hujson_value *v)
{
	size_t start = p->pos, i = p->pos;
	char buf[64];

	v->is_int = true;
	if (i < p->len && p->s[i] == '-')
		i++;
	if (i >= p->len || !is_digit(p->s[i]))
		goto bad;
	if (p->s[i] == '0') {
		i++;
	} else {
		while (i < p->len && is_digit(p->s[i]))
			i++;
	}
	if (i < p->len && p->s[i] == '.') {
		v->is_int = false;
		i++;
		if (i >= p->len || !is_digit(p->s[i]))
			goto bad;
		while (i < p->len && is_digit(p->s[i]))
			i++;
	}
	if (i < p->len && (p->s[i] == 'e' || p->s[i] == 'E')) {
		v->is_int = false;
		i++;
		if (i < p->len && (p->s[i] == '+' || p->s[i] == '-'))
			i++;
		if (i >= p->len || !is_digit(p->s[i]))
			goto bad;
		while (i < p->len && is_digit(p->s[i]))
			i++;
	}
	if (i - start >= sizeof(buf)) {
		fail_at(p, start, "number too long");
		return;
	}
	memcpy(buf, p->s + start, i - start);
	buf[i - start] = '\0';
	errno = 0;
	v->num = strtod(buf, NULL);
	if (!isfinite(v->num)) {
		fail_at(p, start, "number out of range");
		return;
	}
	if ((v->str = strdup(buf)) == NULL) {
		p->err = ERR_NOMEM;
		return;
	}
	v->len = i - start;
	p->pos = i;
	return;
bad:
	fail_at(p, start, "invalid number");
}

static bool
match_word(struct parser *p, const char *w)
{
	size_t n = strlen(w);
	char c;

	if (p->len - p->pos < n || memcmp(p->s + p->pos, w, n) != 0)
		return false;
	c = p->pos + n < p->len ? p->s[p->pos + n] : ' ';
	if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || is_digit(c) || c == '_')
		return false;
	p->pos += n;
	return true;
}

static struct hujson_value *parse_value(struct parser *p, int depth);

static int
push_item(struct parser *p, struct hujson_value *arr, size_t *cap, struct hujson_value *item)
{
	if (arr->len == *cap) {
		size_t ncap = *cap ? *cap * 2 : 4;
		struct hujson_value **n = realloc(arr->items, ncap * sizeof(*n));

		if (n == NULL) {
			p->err = ERR_NOMEM;
			return -1;
		}
		arr->items = n;
		*cap = ncap;
	}
	arr->items[arr->len++] = item;
	return 0;
}

static void
parse_array(struct parser *p, struct hujson_value *v, int depth)
{
	size_t cap = 0;
	char what[32];

	p->pos++;	/* [ */
	for (;;) {
		struct hujson_value *item;

		skip_ws(p);
		if (p->err)
			return;
		if (p->pos < p->len && p->s[p->pos] == ']') {
			p->pos++;
			return;
		}
		if ((item = parse_value(p, depth + 1)) == NULL)
			return;
		if (push_item(p, v, &cap, item) != 0) {
			hujson_free(item);
			return;
		}
		skip_ws(p);
		if (p->err)
			return;
		if (p->pos < p->len && p->s[p->pos] == ',') {
			p->pos++;
			continue;
		}
		if (p->pos < p->len && p->s[p->pos] == ']') {
			p->pos++;
			return;
		}
		describe(p, what, sizeof(what));
		fail_at(p, p->pos, "expected ',' or ']' in array, found %s", what);
		return;
	}
}

static void
parse_object(struct parser *p, struct hujson_value *v, int depth)
{
	size_t cap = 0, i;
	char what[32];

	p->pos++;	/* { */
	for (;;) {
		struct hujson_member m;
		size_t klen;

		skip_ws(p);
		if (p->err)
			return;
		if (p->pos < p->len && p->s[p->pos] == '}') {
			p->pos++;
			return;
		}
		if (p->pos >= p->len || p->s[p->pos] != '"') {
			describe(p, what, sizeof(what));
			fail_at(p, p->pos, "expected a string key or '}' in object, found %s", what);
			return;
		}
		m.key_line = p->line;
		m.key_col = col_of(p, p->pos);
		if ((m.key = parse_string(p, &klen)) == NULL)
			return;
		if (strlen(m.key) != klen) {
			free(m.key);
			p->err = ERR_INVALID;
			return;
		}
		for (i = 0; i < v->len; i++) {
			if (strcmp(v->members[i].key, m.key) == 0) {
				p->line = m.key_line;
				fail_at(p, p->line_start + (size_t)m.key_col - 1,
				    "duplicate key \"%.100s\" (first at line %d)", m.key,
				    v->members[i].key_line);
				free(m.key);
				return;
			}
		}
		skip_ws(p);
		if (p->err == 0 && (p->pos >= p->len || p->s[p->pos] != ':')) {
			describe(p, what, sizeof(what));
			fail_at(p, p->pos, "expected ':' after object key, found %s", what);
		}
		if (p->err) {
			free(m.key);
			return;
		}
		p->pos++;
		skip_ws(p);
		if (p->err || (m.value = parse_value(p, depth + 1)) == NULL) {
			free(m.key);
			return;
		}
		if (v->len == cap) {
			size_t ncap = cap ? cap * 2 : 4;
			struct hujson_member *n = realloc(v->members, ncap * sizeof(*n));

			if (n == NULL) {
				p->err = ERR_NOMEM;
				free(m.key);
				hujson_free(m.value);
				return;
			}
			v->members = n;
			cap = ncap;
		}
		v->members[v->len++] = m;
		skip_ws(p);
		if (p->err)
			return;
		if (p->pos < p->len && p->s[p->pos] == ',') {
			p->pos++;
			continue;
		}
		if (p->pos < p->len && p->s[p->pos] == '}') {
			p->pos++;
			return;
		}
		describe(p, what, sizeof(what));
		fail_at(p, p->pos, "expected ',' or '}' in object, found %s", what);
		return;
	}
}

static struct hujson_value *
parse_value(struct parser *p, int depth)
{
	struct hujson_value *v = NULL;
	size_t start;
	char what[32];

	skip_ws(p);
	if (p->err)
		return NULL;
	start = p->pos;
	if (p->pos >= p->len) {
		fail_at(p, p->pos, "unexpected end of input, expected a value");
		return NULL;
	}
	if (depth > HUJSON_MAX_DEPTH) {
		fail_at(p, p->pos, "nesting deeper than %d levels", HUJSON_MAX_DEPTH);
		return NULL;
	}
	switch (p->s[p->pos]) {
	case '{':
		if ((v = new_value(p, HUJSON_OBJECT, start)) != NULL)
			parse_object(p, v, depth);
		break;
	case '[':
		if ((v = new_value(p, HUJSON_ARRAY, start)) != NULL)
			parse_array(p, v, depth);
		break;
	case '"':
		if ((v = new_value(p, HUJSON_STRING, start)) != NULL)
			v->str = parse_string(p, &v->len);
		break;
	case 't':
	case 'f':
	case 'n':
		if (match_word(p, "true")) {
			if ((v = new_value(p, HUJSON_BOOL, start)) != NULL)
				v->b = true;
		} else if (match_word(p, "false")) {
			v = new_value(p, HUJSON_BOOL, start);
		} else if (match_word(p, "null")) {
			v = new_value(p, HUJSON_NULL, start);
		} else {
			fail_at(p, start, "unexpected word (expected true, false or null)");
		}
		break;
	default:
		if (p->s[p->pos] == '-' || is_digit(p->s[p->pos])) {
			if ((v = new_value(p, HUJSON_NUMBER, start)) != NULL)
				parse_number(p, v);
		} else {
			describe(p, what, sizeof(what));
			fail_at(p, start, "unexpected %s, expected a value", what);
		}
	}
	if (p->err) {
		hujson_free(v);
		return NULL;
	}
	return v;
}

int
hujson_parse(const char *text, size_t len, struct hujson_value **out,
	     struct policy_diag *diag)
{
	struct parser p = { .s = text, .len = len, .line = 1, .diag = diag };
	struct hujson_value *v;
	char what[32];

	*out = NULL;
	if (diag != NULL)
		memset(diag, 0, sizeof(*diag));
	if (len > HUJSON_MAX_SIZE) {
		if (diag != NULL) {
			diag->line = 1;
			diag->col = 1;
			snprintf(diag->msg, sizeof(diag->msg),
			    "input is larger than %d bytes", HUJSON_MAX_SIZE);
		}
		return ERR_TOO_LARGE;
	}
	/* A UTF-8 byte order mark is tolerated. */
	if (len >= 3 && memcmp(text, "\xef\xbb\xbf", 3) == 0) {
		p.pos = 3;
		p.line_start = 3;
	}
	v = parse_value(&p, 1);
	if (v != NULL) {
		skip_ws(&p);
		if (p.err == 0 && p.pos < p.len) {
			describe(&p, what, sizeof(what));
			fail_at(&p, p.pos, "unexpected %s after the top-level value", what);
		}
	}
	if (p.err != 0) {
		hujson_free(v);
		if (p.err == ERR_NOMEM && diag != NULL)
			snprintf(diag->msg, sizeof(diag->msg), "out of memory");
		return p.err;
	}
	*out = v;
	return 0;
}

void
hujson_free(struct hujson_value *v)
{
	size_t i;

	if (v == NULL)
		return;
	if (v->type == HUJSON_ARRAY) {
		for (i = 0; i < v->len; i++)
			hujson_free(v->items[i]);
	} else if (v->type == HUJSON_OBJECT) {
		for (i = 0; i < v->len; i++) {
			free(v->members[i].key);
			hujson_free(v->members[i].value);
		}
	}
	free(v->items);
	free(v->members);
	free(v->str);
	free(v);
}

const struct hujson_value *
hujson_get(const struct hujson_value *v, const char *key)
{
	size_t i;

	if (v == NULL || v->type != HUJSON_OBJECT)
		return NULL;
	for (i = 0; i < v->len; i++)
		if (strcmp(v->members[i].key, key) == 0)
			return v->members[i].value;
	return NULL;
}

const char *
hujson_type_name(enum hujson_type t)
{
	switch (t) {
	case HUJSON_NULL: return "null";
	case HUJSON_BOOL: return "boolean";
	case HUJSON_NUMBER: return "number";
	case HUJSON_STRING: return "string";
	case HUJSON_ARRAY: return "array";
	case HUJSON_OBJECT: return "object";
	}
	return "?";
}

json_t *
hujson_value_to_json(const struct hujson_value *v)
{
	json_t *j = NULL, *c;
	size_t i;

	switch (v->type) {
	case HUJSON_NULL:
		return json_null();
	case HUJSON_BOOL:
		return json_boolean(v->b);
	case HUJSON_NUMBER:
		if (v->is_int && fabs(v->num) < 9.0e18)
			return json_integer((json_int_t)strtoll(v->str, NULL, 10));
		return json_real(v->num);
	case HUJSON_STRING:
		return json_stringn(v->str, v->len);
	case HUJSON_ARRAY:
		if ((j = json_array()) == NULL)
			return NULL;
		for (i = 0; i < v->len; i++) {
			if ((c = hujson_value_to_json(v->items[i])) == NULL ||
			    json_array_append_new(j, c) != 0)
				goto fail;
		}
		return j;
	case HUJSON_OBJECT:
		if ((j = json_object()) == NULL)
			return NULL;
		for (i = 0; i < v->len; i++) {
			if ((c = hujson_value_to_json(v->members[i].value)) == NULL ||
			    json_object_set_new(j, v->members[i].key, c) != 0)
				goto fail;
		}
		return j;
	}
fail:
	json_decref(j);
	return NULL;
}

int
hujson_to_json(const char *text, size_t len, json_t **out, struct policy_diag *diag)
{
	struct hujson_value *v = NULL;
	int r;

	*out = NULL;
	if ((r = hujson_parse(text, len, &v, diag)) != 0)
		return r;
	*out = hujson_value_to_json(v);
	hujson_free(v);
	if (*out == NULL) {
		if (diag != NULL)
			snprintf(diag->msg, sizeof(diag->msg), "out of memory");
		return ERR_NOMEM;
	}
	return 0;
}
