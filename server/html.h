/* SPDX-License-Identifier: MIT */
/*
 * Small HTML pages for people in a browser (the register page, login
 * results): one self-contained page, every dynamic string escaped.
 */
#ifndef WM_HTML_H
#define WM_HTML_H

#include "server/http.h"

/* Answers with a page: `title` (plain text, escaped) and `body_html`, an
 * HTML fragment the caller built with html_escape(). */
void html_page(struct http_response *resp, int status, const char *title, const char *body_html);
/* Escapes text for HTML into out (always terminated, truncated to fit). */
void html_escape(char *out, size_t n, const char *text);

#endif
