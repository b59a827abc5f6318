// SPDX-License-Identifier: MIT
/* HTML pages for browsers: the register page and the login results. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/html.h"

void
html_escape(char *out, size_t n, const char *text)
{
	size_t o = 0;

	if (n == 0)
		return;
	for (const char *p = text ? text : ""; *p; p++) {
		const char *rep = NULL;
		char one[2] = { *p, 0 };
		size_t l;

		switch (*p) {
		case '&': rep = "&amp;"; break;
		case '<': rep = "&lt;"; break;
		case '>': rep = "&gt;"; break;
		case '"': rep = "&quot;"; break;
		case '\'': rep = "&#39;"; break;
		default: rep = one; break;
		}
		l = strlen(rep);
		if (o + l >= n)
			break;
		memcpy(out + o, rep, l);
		o += l;
	}
	out[o] = 0;
}

void
html_page(struct http_response *resp, int status, const char *title, const char *body_html)
{
	static const char fmt[] =
	    "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
	    "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
	    "<title>%s - wiremesh</title><style>"
	    "body{font-family:system-ui,sans-serif;max-width:40em;margin:4em auto;padding:0 1em;"
	    "color:#222}h1{font-size:1.4em}code,pre{background:#f3f3f3;padding:.2em .4em;"
	    "border-radius:4px}pre{padding:.8em;overflow-x:auto}.ok{color:#176b2c}"
	    ".err{color:#a31b1b}</style></head>\n<body><h1 class=\"%s\">%s</h1>\n%s\n"
	    "</body></html>\n";
	char t[512];
	char *page;
	int len;

	html_escape(t, sizeof(t), title);
	len = snprintf(NULL, 0, fmt, t, status < 400 ? "ok" : "err", t, body_html);
	if (len < 0 || (page = malloc((size_t)len + 1)) == NULL) {
		http_problem(resp, 500, NULL, "out of memory");
		return;
	}
	snprintf(page, (size_t)len + 1, fmt, t, status < 400 ? "ok" : "err", t, body_html);
	http_set_body(resp, status, "text/html; charset=utf-8", page, (size_t)len);
	if (http_add_header(resp, "Cache-Control", "no-store") != 0 ||
	    http_add_header(resp, "X-Frame-Options", "DENY") != 0 ||
	    http_add_header(resp, "Content-Security-Policy", "default-src 'none'; "
	    "style-src 'unsafe-inline'") != 0)
		return;	/* the page goes out without them */
}
