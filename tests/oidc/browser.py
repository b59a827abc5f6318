#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""A cookie-keeping HTTP client that logs in as a browser would: it opens a
wiremesh register URL, follows the redirect to the identity provider, fills
the provider's login form (login = USER, any password) and its consent
form, and follows redirects back to SERVER/oidc/callback.

  browser.py login URL USER          prints "STATUS" then the final page
  browser.py login URL USER --stop-at-callback
                                     prints the callback URL, not opened
  browser.py get URL                 prints "STATUS" then the page
  browser.py start URL               prints the provider URL the register
                                     page redirects to (login not done)

Certificates are checked against SSL_CERT_FILE (the test CA)."""
import html.parser
import http.cookiejar
import os
import ssl
import sys
import urllib.error
import urllib.parse
import urllib.request


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *a, **k):
        return None


class Forms(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.forms = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "form":
            self.forms.append({"action": a.get("action", ""), "fields": {}})
        elif tag in ("input", "button") and self.forms and a.get("name"):
            self.forms[-1]["fields"][a["name"]] = a.get("value") or ""


ctx = ssl.create_default_context(cafile=os.environ.get("SSL_CERT_FILE"))
jar = http.cookiejar.CookieJar()
opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar),
                                     urllib.request.HTTPSHandler(context=ctx),
                                     NoRedirect())


def fetch(url, data=None):
    """One request, no redirect following: (status, location, body)."""
    req = urllib.request.Request(url, data=urllib.parse.urlencode(data).encode() if data
                                 is not None else None)
    try:
        with opener.open(req, timeout=30) as r:
            return r.status, r.headers.get("Location"), r.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Location"), e.read().decode("utf-8", "replace")


def follow(url, data=None, stop=None):
    """Follows redirects; stops before opening a URL that starts with stop."""
    for _ in range(20):
        if stop and url.startswith(stop):
            return 0, url, ""
        status, loc, body = fetch(url, data)
        data = None
        if status in (301, 302, 303, 307, 308) and loc:
            url = urllib.parse.urljoin(url, loc)
            continue
        return status, url, body
    raise SystemExit("too many redirects")


def main():
    cmd, url = sys.argv[1], sys.argv[2]
    if cmd == "get":
        status, _, body = fetch(url)
        print(status)
        print(body)
        return
    if cmd == "start":
        status, loc, body = fetch(url)
        print(loc if status == 302 else f"status {status}: {body}")
        return
    user = sys.argv[3]
    stop_cb = "--stop-at-callback" in sys.argv
    base = urllib.parse.urlsplit(url)
    callback = f"{base.scheme}://{base.netloc}/oidc/callback"
    status, where, body = follow(url, stop=callback)
    for _ in range(4):	# the login form, then the consent form
        if status == 0 or not where.startswith("https://") or where.startswith(callback):
            break
        p = Forms()
        p.feed(body)
        if not p.forms:
            raise SystemExit(f"no form at {where} (status {status}): {body[:300]}")
        f = p.forms[0]
        fields = dict(f["fields"])
        if "login" in fields:
            fields["login"] = user
            fields["password"] = "any"
        status, where, body = follow(urllib.parse.urljoin(where, f["action"]), fields,
                                     stop=callback)
    if status != 0:
        print(status)
        print(body)
        return
    if stop_cb:
        print(where)
        return
    status, _, body = follow(where)
    print(status)
    print(body)


main()
